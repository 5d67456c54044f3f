"""nuclei results: JSON lines (`-jsonl`, `-json` before v3, v2 and v3 keys) or one JSON array
(`-je FILE`). Each result is one finding on the host the template ran against.

The mapping, member by member, and what is skipped: docs/formats.md#nuclei. Helpers shared by
the JSON-lines formats (host parts, asset keys) live here too.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from bastion.errors import InvalidValue
from bastion.ingest.hosts import add_host, add_ip, is_ip_key, string_list
from bastion.ingest.records import (
    Invalid,
    Malformed,
    Record,
    Unplaced,
    Sample,
    as_object,
    build,
    json_lines,
    seen_time,
)
from bastion.schema import normalize as norm

NAME = "nuclei"
DESCRIPTION = "nuclei JSON lines or JSON array (-je), v2 and v3 keys"

_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]{4,}", re.IGNORECASE)
# Where nuclei has written the target across versions, the host first: `host` (v2.5+, v3),
# `matched-at` (v2.5+), `matched` (v2), `url` (v3; sometimes the only one, at times with a stray
# leading '/'), `input` (the target as given, some v3 exports), then `ip`.
_TARGETS = ("host", "matched-at", "matched", "url", "input")
_MATCHED = ("matched-at", "matched", "url")


def sniff(sample: Sample) -> bool:
    first = sample.first
    return isinstance(first, dict) and ("template-id" in first or "templateID" in first)


def parse(stream) -> Iterator[Record | Invalid]:
    for where, value in json_lines(stream):
        yield build(where, value, _fill)


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
    record.seen = seen_time(obj.get("timestamp"))
    template = obj.get("template-id") or obj.get("templateID")
    if not template or not isinstance(template, str):
        raise Malformed("no template id: neither 'template-id' nor 'templateID' is given")
    info = _object(obj, "info")
    classification = _object(info, "classification")
    matched = next((v for m in _MATCHED if isinstance(v := obj.get(m), str) and v.strip()), None)

    target = None
    for member in _TARGETS:
        target = add_host(record, member, obj.get(member))
        if target:
            break
    ip = add_ip(record, "ip", obj.get("ip"))
    if target is None:
        target = ip
    if target is None:
        raise Unplaced("no target: none of " + ", ".join(f"'{m}'" for m in (*_TARGETS, "ip"))
                       + " names a host")
    if ip is not None and ip != target and not is_ip_key(target):
        record.link("RESOLVES_TO", target, ip)

    cves, properties = _template_facts(template, info, classification)
    properties = {**properties, "type": obj.get("type")} if obj.get("type") else dict(properties)
    matcher = obj.get("matcher-name") or obj.get("matcher_name")
    evidence = matched
    if matched and matcher:
        evidence = f"{matched} (matcher: {matcher})"
    elif matcher:
        evidence = f"matcher: {matcher}"
    record.finding(
        target, template, severity=info.get("severity"), title=info.get("name"),
        cve=cves[0] if cves else None, cvss=classification.get("cvss-score"),
        evidence=[evidence], properties=properties)


_TEMPLATES: dict[str, tuple[dict, list[str], dict[str, Any]]] = {}


def _template_facts(template: str, info: dict, classification: dict) -> tuple[list[str], dict[str, Any]]:
    """(CVE ids, properties) of a template's `info`, remembered per template: a scan repeats the
    same few thousand templates' info on every result."""
    hit = _TEMPLATES.get(template)
    if hit is not None and hit[0] == info:
        return hit[1], hit[2]
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
        "cves": cves if len(cves) > 1 else None,
        "cwe": [c.upper() for c in string_list(classification.get("cwe-id"))] or None,
        "cvss_vector": classification.get("cvss-metrics") or None,
        "tags": string_list(info.get("tags")) or None,
        "references": _references(info.get("reference")) or None,
        "description": (str(info["description"]).strip()[:4000] or None)
        if info.get("description") else None,
    }
    properties = {k: v for k, v in properties.items() if v is not None}
    if len(_TEMPLATES) >= 20_000:
        _TEMPLATES.clear()
    _TEMPLATES[template] = (info, cves, properties)
    return cves, properties
