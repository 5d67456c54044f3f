"""BBOT event streams (the `json` output module's NDJSON), BBOT 1.x/2.x (`data`, ISO timestamps,
`siem_friendly` wrapping) and 3.0 (`data_json`, epoch timestamps). Each line is one record.

The mapping, event type by event type, and the types skipped: docs/formats.md#bbot.

Parent links become DISCOVERED edges: the parser keeps a map from each valid record's event id
to the key of its asset, so memory grows with the number of events (a few hundred bytes each).
The scan's seeds (the SCAN event's target seeds; the events whose parent is the scan) become
`seed` entities with a DISCOVERED edge to what they seeded.
"""

from __future__ import annotations

import re
from typing import Any, Iterator
from urllib.parse import urlsplit

from bastion.errors import BastionError
from bastion.ingest.records import Invalid, Malformed, Record, Sample, as_object, build, json_lines
from bastion.schema import normalize as norm

NAME = "bbot"
DESCRIPTION = "BBOT NDJSON events (json output module; 1.x/2.x data, 3.0 data_json)"

_HANDLED = ("SCAN", "IP_RANGE", "DNS_NAME", "IP_ADDRESS", "OPEN_TCP_PORT", "OPEN_UDP_PORT",
            "URL", "TECHNOLOGY", "FINDING", "VULNERABILITY")
_PARENTS = ("parent", "parent_uuid", "source")
_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
_URLISH = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_TEMPLATE = re.compile(r"template:\s*\[([^\]]+)\]", re.IGNORECASE)
_STOP = {"at", "on", "for", "in", "of", "to", "from", "with", "via", "by", "and", "or", "the", "a"}
_SLUG_MAX = 100


def sniff(sample: Sample) -> bool:
    first = sample.first
    return (isinstance(first, dict) and "type" in first
            and ("data" in first or "data_json" in first)
            and any(k in first for k in ("module", "scope_distance", "parent", "source")))


def parse(stream) -> Iterator[Record | Invalid]:
    assets: dict[str, str] = {}  # event id / uuid → key of the event's asset (an IP_RANGE: its seed)
    for where, value in json_lines(stream):
        if not isinstance(value, Invalid) and isinstance(value, dict):
            kind = value.get("type")
            if isinstance(kind, str) and kind not in _HANDLED:
                continue  # a type Bastion does not model
            if kind == "IP_RANGE" and not _seeded(value):
                continue  # only a scan target is modelled (as a seed)
        produced: list[str] = []

        def fill(rec: Record, raw: Any) -> None:
            produced.append(_fill(rec, as_object(where, raw), assets))

        record = build(where, value, fill)
        if isinstance(record, Record) and not record.entities:
            continue  # a SCAN event that names no seed
        if isinstance(record, Record) and produced and produced[0]:
            for member in ("id", "uuid"):
                ident = value.get(member)
                if isinstance(ident, str) and ident:
                    assets[ident] = produced[0]
        yield record


def _seeded(event: dict[str, Any]) -> bool:
    """Whether the event is one of the scan's targets: its parent is the scan."""
    parents = [event.get(m) for m in _PARENTS]
    return event.get("type") != "SCAN" and any(
        isinstance(p, str) and p.startswith("SCAN:") for p in parents)


def _seed(rec: Record, identifier: Any) -> str | None:
    """A seed for a scan target (a DNS name, an IP, a CIDR; a URL or host:port by its host), or
    None for a target Bastion cannot hold as a seed (an ORG_STUB, an e-mail address …)."""
    if not isinstance(identifier, str) or not identifier.strip():
        return None
    text = identifier.strip()
    if "://" in text:
        text = urlsplit(text).hostname or ""
    elif text.count(":") == 1 or (text.startswith("[") and "]:" in text):
        host, _sep, port = text.rpartition(":")
        text = host.strip("[]") if port.isdigit() else text
    try:
        return rec.add("seed", identifier=text)
    except BastionError:
        return None


def _scan(rec: Record, data: Any) -> str:
    """The SCAN event: a seed per seed of its target (`target.seeds`)."""
    target = data.get("target") if isinstance(data, dict) else None
    seeds = target.get("seeds") if isinstance(target, dict) else None
    for seed in seeds if isinstance(seeds, list) else []:
        _seed(rec, seed)
    return ""


def _fill(rec: Record, event: dict[str, Any], assets: dict[str, str]) -> str:
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise Malformed("event has no 'type'")
    data = _payload(event, kind)
    if kind == "SCAN":
        return _scan(rec, data)
    if kind == "IP_RANGE":
        return rec.add("seed", identifier=_string(kind, data), **{"class": "cidr"})
    if kind == "DNS_NAME":
        main = rec.add("asset", identifier=_string(kind, data))
        for ip in event.get("resolved_hosts") or []:
            if isinstance(ip, str) and norm.ip_version(ip):
                rec.link("RESOLVES_TO", main, rec.add("asset", identifier=ip))
    elif kind == "IP_ADDRESS":
        value = _string(kind, data)
        if not norm.ip_version(value):
            raise Malformed(f"IP_ADDRESS {value!r} is not an IP address")
        main = rec.add("asset", identifier=value)
    elif kind in ("OPEN_TCP_PORT", "OPEN_UDP_PORT"):
        host, number = _host_port(kind, _string(kind, data))
        main = rec.add("asset", identifier=host)
        rec.add("port", asset=main, protocol="tcp" if kind == "OPEN_TCP_PORT" else "udp",
                number=number)
    elif kind == "URL":
        url = data.get("url") if isinstance(data, dict) else data
        url = _string(kind, url)
        main = rec.add("asset", identifier=url)
        host = event.get("host") or urlsplit(url).hostname
        if host:
            rec.link("RESOLVES_TO", main, rec.add("asset", identifier=str(host)))
    elif kind == "TECHNOLOGY":
        data = _object(kind, data)
        tech = data.get("technology")
        if not isinstance(tech, str) or not tech.strip():
            raise Malformed("TECHNOLOGY event has no 'technology'")
        main = _host_asset(rec, kind, event, data, allow_url=True)
        key = (rec.add("technology", cpe=tech.strip()) if tech.strip().lower().startswith("cpe:")
               else rec.add("technology", name=tech.strip()))
        rec.link("HAS_TECHNOLOGY", main, key)
    else:  # FINDING, VULNERABILITY
        data = _object(kind, data)
        main = _host_asset(rec, kind, event, data, allow_url=False)
        _finding(rec, kind, event, data, main)

    if _seeded(event):
        seed = _seed(rec, data if kind in ("DNS_NAME", "IP_ADDRESS") else event.get("host"))
        if seed is not None:
            rec.link("DISCOVERED", seed, main)
    for member in _PARENTS:
        parent = event.get(member)
        if isinstance(parent, str) and parent in assets:
            if assets[parent] != main:
                rec.link("DISCOVERED", assets[parent], main)
            break
    return main


def _payload(event: dict[str, Any], kind: str) -> Any:
    if "data_json" in event and event["data_json"] is not None:
        data = event["data_json"]
    elif "data" in event:
        data = event["data"]
    else:
        raise Malformed(f"{kind} event has neither 'data' nor 'data_json'")
    if isinstance(data, dict) and len(data) == 1 and kind in data:
        data = data[kind]  # siem_friendly output wraps the payload in {TYPE: payload}
    return data


def _string(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"{kind} event data is not a non-empty string (got {type(value).__name__})")
    return value.strip()


def _object(kind: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{kind} event data is not an object (got {type(value).__name__})")
    return value


def _host_port(kind: str, text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise Malformed(f"{kind} {text!r} is not host:port or [IPv6]:port")
    return host, int(port)


def _host_asset(rec: Record, kind: str, event: dict, data: dict, *, allow_url: bool) -> str:
    host = data.get("host") or event.get("host")
    url = data.get("url")
    if host:
        return rec.add("asset", identifier=str(host))
    if url and allow_url:
        return rec.add("asset", identifier=str(url))
    if url and urlsplit(str(url)).hostname:
        return rec.add("asset", identifier=urlsplit(str(url)).hostname)
    raise Malformed(f"{kind} event has no 'host' (nor a 'url' with a host)")


def _finding(rec: Record, kind: str, event: dict, data: dict, target: str) -> None:
    description = str(data.get("description") or "").strip()
    name = data.get("name") or _template(description) or _slug(description)
    if not name and not data.get("cves"):
        raise Malformed(f"{kind} event has no 'name' and no 'description' to name it by")
    cves = data.get("cves")
    if isinstance(cves, str):
        cves = [cves]
    if not isinstance(cves, list) or not cves:
        cves = _CVE.findall(description)
    cves = list(dict.fromkeys(norm.cve(c) for c in cves if isinstance(c, str) and c.strip()))
    props: dict[str, Any] = {}
    if event.get("module"):
        props["module"] = str(event["module"])
    if data.get("confidence"):
        props["confidence"] = str(data["confidence"]).lower()
    if data.get("name") and cves:
        props["bbot_name"] = str(data["name"])
    evidence = [data.get("url"), data.get("full_url"), data.get("path")]
    evidence = [str(e) for e in evidence if e]
    for cve in cves or [None]:
        rec.finding(target, str(name) if name else None, severity=data.get("severity"),
                    title=description or (str(name) if name else None), cve=cve,
                    evidence=evidence, properties=props)


def _template(description: str) -> str | None:
    m = _TEMPLATE.search(description)
    return m.group(1).strip() if m else None


def _slug(description: str) -> str | None:
    """A stable name from the description's first sentence, without its per-target details."""
    text = _URLISH.sub(" ", description)
    text = _BRACKETED.sub(" ", text)
    first = re.split(r"(?<=[.!?])\s|\n|:\s", text.strip(), maxsplit=1)[0]
    words = re.findall(r"[a-z0-9]+", first.lower())
    while words and words[-1] in _STOP:
        words.pop()
    slug = "-".join(words)[:_SLUG_MAX].strip("-")
    return slug or None
