"""nuclei results: JSON lines (`-jsonl`, `-json` before v3) or one JSON array (`-je FILE`).

Each result becomes one finding on the host the template ran against (docs/_formats/nuclei.md):

- `host`, else `matched-at`/`matched`, else `url`, else `ip` → the target asset: the DNS name or
  address of the host part (`https://X.com:8443`, `x.com:8443`, `[v6]:443`, `x.com.` → `x.com`).
- `ip` → IP asset; `RESOLVES_TO` target → IP when the target is a DNS name.
- `template-id` (v3) / `templateID` (v2) → finding name (unless a CVE names it) and property
  `template_id`.
- `info.name` → title; `info.severity` → severity (`unknown` or missing → `info`).
- `info.classification.cve-id` (string, list or null; any case) → the finding's CVE (the first;
  the risk is then named by it); several → property `cves`. A template id that is itself a CVE
  id is used when no `cve-id` is given.
- `info.classification.cvss-score` → CVSS; `cvss-metrics` → `cvss_vector`; `cwe-id` → `cwe`.
- `info.tags` (list or comma string) → `tags`; `info.reference` (list or string) →
  `references`; `info.description` → `description`; `type` → `type`.
- `matched-at`/`matched`, else `url` (+ `matcher-name`/`matcher_name`) → evidence `URL` or
  `URL (matcher: NAME)`.

Skipped: `timestamp`, `curl-command`, `request`, `response`, `extracted-results`,
`template-url`, `template-path`, `matcher-status`, `info.author`, `info.metadata` — they change
from run to run or restate the template; `port`/`scheme` of newer versions (ports are left to
the port scanners). The matcher name goes into the evidence, not the properties: one template
(`tech-detect`) reports many matchers on one host, which are one risk.
"""

from __future__ import annotations

import re
from typing import Any, Iterator
from urllib.parse import urlsplit

from bastion.errors import InvalidValue, ValidationFailed
from bastion.ingest.records import (
    Invalid,
    Malformed,
    Record,
    Sample,
    as_object,
    build,
    json_lines,
)
from bastion.schema import normalize as norm

NAME = "nuclei"
DESCRIPTION = "nuclei JSON lines or JSON array (-je), v2 and v3 keys"

_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]{4,}", re.IGNORECASE)


def sniff(sample: Sample) -> bool:
    first = sample.first
    return isinstance(first, dict) and ("template-id" in first or "templateID" in first)


def parse(stream) -> Iterator[Record | Invalid]:
    for where, value in json_lines(stream):
        yield deduplicated(build(where, value, _fill))


# -- helpers shared by the JSON-lines formats (httpx, naabu and subfinder import them) --------


def deduplicated(record: Record | Invalid) -> Record | Invalid:
    """The record with each entity (by key) and each edge listed once: the first mention of an
    entity is kept (a host named by `host` and again by `matched-at` is one asset)."""
    if isinstance(record, Record):
        seen: set[str] = set()
        entities = []
        for entity in record.entities:
            key = entity.prepared[1]
            if key not in seen:
                seen.add(key)
                entities.append(entity)
        record.entities = entities
        edges = {}
        for edge in record.relationships:
            edges.setdefault((edge.kind, edge.source, edge.target), edge)
        record.relationships = list(edges.values())
    return record


def host_of(value: Any) -> str | None:
    """The host part of a URL (`https://x:8443/p`), `host:port`, `[v6]:port`, `host/path` or a
    bare host or address; None when `value` is empty. Case and trailing dots are left to the
    normalizers."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"expected a host name or URL, got {type(value).__name__} {value!r}")
    text = value.strip()
    if not text:
        return None
    if "://" in text:
        try:
            host = urlsplit(text).hostname
        except ValueError as exc:
            raise Malformed(f"invalid URL {value!r}: {exc}") from None
        if not host:
            raise Malformed(f"URL {value!r} has no host")
        return host
    text = text.split("/", 1)[0]
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise Malformed(f"unbalanced '[' in {value!r}")
        return text[1:end]
    if text.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        text = text.split(":", 1)[0]
    return text or None


def add_host(record: Record, member: str, value: Any) -> str | None:
    """Add the asset named by the host part of `value` (read from input member `member`) and
    return its key; None when `value` is empty. A bad name fails the record naming the member."""
    host = host_of(value)
    if host is None:
        return None
    return add_asset(record, member, host)


def add_asset(record: Record, member: str, identifier: str) -> str:
    """`record.add("asset", identifier=…)` with errors that name the input member."""
    try:
        return record.add("asset", identifier=identifier)
    except ValidationFailed as exc:
        reason = "; ".join(p.reason for p in exc.problems)
        raise Malformed(f"member {member!r}: {reason}") from None


def add_ip(record: Record, member: str, value: Any) -> str | None:
    """Add the IP asset of member `member` (which must hold an address) and return its key."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise Malformed(f"member {member!r} is not an IP address: {value!r}")
    try:
        address = norm.ip_address(value)
    except InvalidValue as exc:
        raise Malformed(f"member {member!r}: {exc}") from None
    return add_asset(record, member, address)


def is_ip_key(key: str | None) -> bool:
    """Whether an asset key names an IP address (`#asset#192.0.2.1#192.0.2.1`)."""
    return key is not None and norm.ip_version(key.rsplit("#", 1)[-1]) is not None


def string_list(value: Any, split: str | None = ",") -> list[str]:
    """A list of strings from a list, a `split`-separated string (one item when `split` is
    None) or None; blanks dropped, order kept, duplicates removed."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(split) if split else [value]
    elif isinstance(value, list):
        items = [v for v in value if v is not None]
    else:
        items = [value]
    return list(dict.fromkeys(s for s in (str(i).strip() for i in items) if s))


# -- nuclei --------------------------------------------------------------------------------------


def _object(obj: dict[str, Any], member: str) -> dict[str, Any]:
    value = obj.get(member)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"member {member!r} is not an object")
    return value


def _references(value: Any) -> list[str]:
    # v2 templates often give one string of "- URL" lines.
    if isinstance(value, str):
        return [t for t in re.split(r"[\s,]+", value) if t and t != "-"]
    return string_list(value)


def _fill(record: Record, raw: Any) -> None:
    obj = as_object(record.where, raw)
    template = obj.get("template-id") or obj.get("templateID")
    if not template or not isinstance(template, str):
        raise Malformed("no template id: neither 'template-id' nor 'templateID' is given")
    info = _object(obj, "info")
    classification = _object(info, "classification")
    matched = obj.get("matched-at") or obj.get("matched") or obj.get("url")

    target = None
    for member in ("host", "matched-at", "matched", "url"):
        target = add_host(record, member, obj.get(member))
        if target:
            break
    ip = add_ip(record, "ip", obj.get("ip"))
    if target is None:
        target = ip
    if target is None:
        raise Malformed("no target: none of 'host', 'matched-at', 'matched', 'url', 'ip' is given")
    if ip is not None and ip != target and not is_ip_key(target):
        record.link("RESOLVES_TO", target, ip)

    cves = string_list(classification.get("cve-id"))
    cves = [c for part in cves for c in part.split()]  # "CVE-1 CVE-2" in a single string
    if not cves and _CVE.fullmatch(template.strip()):
        cves = [template.strip()]
    try:
        cves = list(dict.fromkeys(norm.cve(c) for c in cves))
    except InvalidValue as exc:
        raise Malformed(f"member 'info.classification.cve-id': {exc}") from None

    properties = {
        "template_id": template,
        "type": obj.get("type"),
        "cves": cves if len(cves) > 1 else None,
        "cwe": [c.upper() for c in string_list(classification.get("cwe-id"))] or None,
        "cvss_vector": classification.get("cvss-metrics") or None,
        "tags": string_list(info.get("tags")) or None,
        "references": _references(info.get("reference")) or None,
        "description": (str(info["description"]).strip()[:4000] or None)
        if info.get("description") else None,
    }
    matcher = obj.get("matcher-name") or obj.get("matcher_name")
    evidence = matched
    if matched and matcher:
        evidence = f"{matched} (matcher: {matcher})"
    elif matcher:
        evidence = f"matcher: {matcher}"
    record.finding(
        target, template, severity=info.get("severity"), title=info.get("name"),
        cve=cves[0] if cves else None, cvss=classification.get("cvss-score"),
        evidence=[evidence], properties={k: v for k, v in properties.items() if v is not None})
