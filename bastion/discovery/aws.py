"""`bastion discover aws`: one AWS account's detections, read through boto3, as a snapshot.

boto3 is used as it is configured: the standard credential chain, `--profile`, the region
settings and `AWS_ENDPOINT_URL` (so the same command runs against a local emulator). Retries:
boto3's own settings when the user gave some (`AWS_RETRY_MODE`, `AWS_MAX_ATTEMPTS`, the profile),
else the `standard` mode with 10 attempts, which retries throttling with exponential backoff
and jitter. Every list call pages through everything; each (service, region) is read once. An
API error of one service in one region makes that part of the snapshot failed: recorded in
the import run (`bastion imports show`), its detections of the previous snapshot kept, and the
run partial — never silently dropped.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from bastion.coverage.importers import Parsed
from bastion.errors import InvalidValue

SERVICES = ("cloudtrail", "logs", "cloudwatch", "events", "guardduty", "config", "securityhub")
DEFAULT_ATTEMPTS = 10


@dataclass
class Collected:
    """What discovery read from one account, per region (the raw API shapes, volatile fields
    left in: the service modules choose what a detection's raw keeps)."""

    account_id: str
    regions: list[str]
    trails: dict[str, dict[str, Any]] = field(default_factory=dict)  # ARN → trail (+ Status, selectors)
    trail_regions: dict[str, set[str]] = field(default_factory=dict)  # ARN → regions it was listed in
    filters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    alarms: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # with "Targets"
    detectors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    recorders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # with "Status"
    config_rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hubs: dict[str, dict[str, Any]] = field(default_factory=dict)  # region → hub (+ standards)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # (service, region) → error
    notes: list[str] = field(default_factory=list)

    def fails(self, service: str, region: str) -> str | None:
        return self.failed.get((service, region))


class Clients:
    """boto3 clients per (service, region) of one session, with the calls they made counted:
    `calls` per operation, `requests` HTTP requests sent (retries included)."""

    def __init__(self, session=None, *, profile: str | None = None):
        import boto3

        self.session = session or boto3.Session(profile_name=profile)
        self.calls: Counter[str] = Counter()
        self.requests = 0
        self._clients: dict[tuple[str, str], Any] = {}
        self._config = _retry_config(self.session)
        events = self.session.events
        events.register("before-call", self._on_call)
        events.register("before-send", self._on_send)

    def _on_call(self, model=None, **_):
        if model is not None:
            self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def _on_send(self, **_):
        self.requests += 1

    def client(self, service: str, region: str):
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self.session.client(service, region_name=region, config=self._config)
        return self._clients[key]

    @property
    def region(self) -> str | None:
        return self.session.region_name


def _retry_config(session):
    from botocore.config import Config

    scoped = session._session.get_scoped_config() if hasattr(session, "_session") else {}
    given = any(os.environ.get(v) for v in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS")) or any(
        k in scoped for k in ("retry_mode", "max_attempts"))
    extra = {"user_agent_extra": "bastion-discovery"}
    if given:  # the user's own retry settings win
        return Config(**extra)
    return Config(retries={"mode": "standard", "max_attempts": DEFAULT_ATTEMPTS}, **extra)


def pages(client, operation: str, key: str, **params) -> Iterator[Any]:
    """Every item under `key` of every page of `operation`."""
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**params):
            yield from page.get(key) or ()
        return
    token_name = "NextToken"
    while True:
        page = getattr(client, operation)(**params)
        yield from page.get(key) or ()
        token = page.get(token_name)
        if not token:
            return
        params[token_name] = token


def error_text(exc: BaseException) -> str:
    """One line for an API error: its code and message (never credentials)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        op = getattr(exc, "operation_name", "")
        return f"{op + ': ' if op else ''}{err.get('Code')}: {err.get('Message')}"
    return f"{type(exc).__name__}: {exc}"


def guarded(collected: Collected, service: str, region: str, fn: Callable[[], None]) -> None:
    """Run one part's collection; an API error fails that part only, with its reason kept."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        fn()
    except (ClientError, BotoCoreError) as exc:
        collected.failed[(service, region)] = error_text(exc)


# -- account and regions ---------------------------------------------------------------------


def caller_account(clients: Clients, region: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return clients.client("sts", region).get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as exc:
        raise InvalidValue(f"cannot read the AWS account of these credentials: {error_text(exc)}") from None


def regions(clients: Clients, given: list[str] | None, all_regions: bool) -> list[str]:
    """The regions to read: those given, every region enabled for the account, or the
    session's region."""
    from botocore.exceptions import BotoCoreError, ClientError

    if given:
        return sorted({r.strip() for r in given if r.strip()})
    home = clients.region
    if all_regions:
        try:
            found = clients.client("ec2", home or "us-east-1").describe_regions(AllRegions=False)
        except (ClientError, BotoCoreError) as exc:
            raise InvalidValue(f"cannot list the account's regions: {error_text(exc)}") from None
        return sorted(r["RegionName"] for r in found["Regions"]
                      if r.get("OptInStatus") in (None, "opt-in-not-required", "opted-in"))
    if not home:
        raise InvalidValue("no AWS region: give --region R (repeatable) or --all-regions, or set "
                           "AWS_REGION / a profile region")
    return [home]


# -- the run ---------------------------------------------------------------------------------


def collect(clients: Clients, account_id: str, region_list: list[str]) -> Collected:
    """Read every service of every region."""
    from bastion.discovery import awsconfig, cloudtrail, cloudwatch, eventbridge, guardduty, securityhub

    collected = Collected(account_id, region_list)
    for region in region_list:
        for module in (cloudtrail, cloudwatch, eventbridge, guardduty, awsconfig, securityhub):
            module.collect(clients, region, collected)
    cloudtrail.statuses(clients, collected)
    return collected


def detections(collected: Collected, reference: dict | None) -> Iterator[tuple[str, str, Parsed]]:
    """(service, region, parsed detection) for everything collected."""
    from bastion.discovery import awsconfig, cloudtrail, cloudwatch, eventbridge, guardduty, securityhub

    for module in (cloudtrail, cloudwatch, eventbridge, guardduty, awsconfig, securityhub):
        yield from module.detections(collected, reference)


def canonical(value: Any) -> str:
    """A configuration as canonical JSON (sorted keys): its content hash changes only when it
    does."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def without(obj: dict[str, Any], *volatile: str) -> dict[str, Any]:
    """A configuration without its volatile fields (states, timestamps, request metadata)."""
    return {k: v for k, v in obj.items() if k not in volatile and k != "ResponseMetadata"}


def detection(*, region: str, rule_id: str, name: str, type: str, service: str, config: Any,
              chain, mappings=(), status: str = "enabled") -> Parsed:
    from bastion.discovery.chain import deprecated_apis

    raw = canonical(config)
    deprecated_apis(chain, raw)
    health, issues = chain.health
    return Parsed(where=f"{region} {service} {name}", rule_id=rule_id, raw=raw, type=type,
                  name=name[:500], service=service, status=status, provider="aws",
                  source_path=f"aws:{region}", mappings=list(mappings), health=health,
                  health_issues=issues)


def discover(tenant, *, account: str, actor: str, regions_given: list[str] | None = None,
             all_regions: bool = False, profile: str | None = None, session=None):
    """Read the AWS account `account` (`aws:ID` or its key) and write its inventory as one
    snapshot (bastion.discovery.snapshot). The credentials must be the account's. The account
    is created when it is not stored yet. Returns a DiscoveryResult."""
    from bastion.coverage import inventory
    from bastion.coverage.detections import add_account
    from bastion.discovery import reference, snapshot
    from bastion.schema.keys import parse_key

    key = inventory.account_key(account)
    parts = parse_key(key).parts
    if parts["provider"] != "aws":
        raise InvalidValue(f"{account} is not an AWS account (aws:ACCOUNT_ID)")
    wanted = parts["identifier"]
    clients = Clients(session, profile=profile)
    region_list = regions(clients, regions_given, all_regions)
    actual = caller_account(clients, region_list[0])
    if actual != wanted:
        raise InvalidValue(f"these AWS credentials are for account {actual}, not {wanted}: "
                           "use the account's profile (--profile) or credentials")
    if tenant.get(key) is None:
        add_account(tenant, actor=actor, provider="aws", identifier=wanted, regions=region_list)
    ref = reference.load(tenant, "aws")
    collected = collect(clients, wanted, region_list)
    notes = list(collected.notes)
    if ref is None:
        notes.append("managed services are not mapped: import the CTID AWS mappings once "
                     "(`bastion discover reference FILE`)")
    found = list(detections(collected, ref))
    out = snapshot.write(tenant, account=key, account_id=wanted, regions=region_list, services=SERVICES,
                         found=found, failed=collected.failed, source="discovery:aws", actor=actor,
                         notes=notes)
    out.calls, out.requests = dict(clients.calls), clients.requests
    return out
