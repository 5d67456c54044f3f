"""Threat indicators: pattern rules that map a raw cloud detection naming an API call or an
operation (a CloudTrail `eventName`, an Azure `operationName`, a GCP `methodName`) to the ATT&CK
technique it detects, for detections that state no technique themselves.

Shipped rules: bastion/coverage/data/indicators.yaml; users add theirs (`--indicators FILE`,
same shape). A rule matches a detection when the account's provider is the rule's (or the
account is of provider `other`), the rule's field name appears in the detection's raw text and
its value appears there as a whole token (case-insensitive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from bastion.errors import InvalidValue
from bastion.schema import normalize as norm

CONFIDENCE = 0.7
MAPPED_BY = "bastion:indicators"
FIELDS = ("eventName", "operationName", "methodName", "api")


@dataclass(frozen=True)
class Indicator:
    provider: str
    service: str | None
    field: str
    value: str
    techniques: tuple[str, ...]  # the same technique's id in successive ATT&CK releases, newest first
    rationale: str

    @property
    def technique(self) -> str:
        return self.techniques[0]

    def technique_in(self, catalog) -> str | None:
        """The id to map to in `catalog` (the first it knows, resolved through revocations);
        the first id when there is no catalog; None when the catalog knows none of them."""
        if catalog is None:
            return self.techniques[0]
        for tid in self.techniques:
            if tid in catalog.techniques:
                return catalog.resolve(tid) or tid
        return None

    @property
    def pattern(self) -> re.Pattern:
        return _token(self.value)


@cache
def _token(value: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_])", re.IGNORECASE)


def parse(text: str, origin: str) -> list[Indicator]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidValue(f"{origin}: invalid YAML ({str(exc).splitlines()[0]})") from None
    items = doc.get("indicators") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InvalidValue(f"{origin}: expected a list under `indicators:`")
    out = []
    for i, item in enumerate(items):
        where = f"{origin}: indicators[{i}]"
        if not isinstance(item, dict):
            raise InvalidValue(f"{where}: not a mapping")
        missing = [k for k in ("provider", "field", "value", "technique") if not item.get(k)]
        if missing:
            raise InvalidValue(f"{where}: missing {', '.join(missing)}")
        if item["field"] not in FIELDS:
            raise InvalidValue(f"{where}: field {item['field']!r} is not one of {', '.join(FIELDS)}")
        given = item["technique"] if isinstance(item["technique"], list) else [item["technique"]]
        try:
            techniques = tuple(norm.attack_technique(t) for t in given)
        except InvalidValue as exc:
            raise InvalidValue(f"{where}: {exc}") from None
        if not techniques:
            raise InvalidValue(f"{where}: missing technique")
        out.append(Indicator(str(item["provider"]).lower(), item.get("service"), item["field"],
                             str(item["value"]), techniques, str(item.get("rationale") or "")))
    return out


@cache
def shipped() -> tuple[Indicator, ...]:
    text = resources.files("bastion.coverage").joinpath("data/indicators.yaml").read_text("utf-8")
    return tuple(parse(text, "indicators.yaml"))


def load(extra: list[str] | None = None) -> list[Indicator]:
    """The shipped indicators plus those of the given files."""
    out = list(shipped())
    for path in extra or ():
        p = Path(path)
        if not p.is_file():
            raise InvalidValue(f"--indicators: no such file {path}")
        out.extend(parse(p.read_text("utf-8"), path))
    return out


def match(raw: str, provider: str, indicators: list[Indicator]) -> list[Indicator]:
    """The indicators a detection's raw text matches."""
    lowered = raw.lower()
    return [ind for ind in indicators
            if provider in (ind.provider, "other") and ind.field.lower() in lowered
            and ind.pattern.search(raw)]
