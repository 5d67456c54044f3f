"""BBOT event streams: the `json` output module's NDJSON (`output.json` / `output.ndjson`).

Accepted: BBOT 1.x/2.x events (`data` a string or an object, `timestamp` ISO 8601 text or epoch
seconds, parent in `parent` or older `source`), the same with `siem_friendly` on (`data` wrapped
as `{"DNS_NAME": "example.com"}`), and BBOT 3.0 events (`data_json` object for structured
events, `data` string otherwise, `timestamp` epoch seconds, `parent`/`parent_uuid`). Each line
is one record, placed as `line N`. Timestamps are not used.

| BBOT event (`type`, payload)                                 | Bastion |
|--------------------------------------------------------------|---------|
| `DNS_NAME` `"www.example.com"`                               | DNS-name asset |
| `DNS_NAME` `resolved_hosts` (IP addresses)                   | IP assets; `RESOLVES_TO` name → each IP |
| `IP_ADDRESS` `"192.0.2.1"`                                   | IP asset |
| `OPEN_TCP_PORT` `"host:443"`, `"[2001:db8::1]:443"`          | host asset (DNS name or IP) + `tcp` port on it |
| `OPEN_UDP_PORT` (same shape)                                 | host asset + `udp` port on it |
| `URL` `"https://…"` or `{"url": …}`                          | URL asset; host asset (`host`, else the URL's host); `RESOLVES_TO` URL → host |
| `TECHNOLOGY` `{host, url, technology}`                       | technology `name` = `technology` (a `cpe:` value is used as the CPE); `HAS_TECHNOLOGY` from the host asset (from the URL asset when there is no host) |
| `FINDING` `{host, description, url, name?, severity?, confidence?, cves?}` | finding on the host asset; name = `name` when given (3.0), else the nuclei template id of a `Template: [id]` description, else a slug of the description's first sentence (URLs, `(…)` and `[…]` removed); severity = `severity` or `info`; title = description; evidence = `url`/`full_url`/`path`; properties `module`, `confidence` |
| `VULNERABILITY` `{host, severity, description, url, cves?}` (2.x) | as `FINDING`, with its severity |
| CVEs: `cves` list, else CVE ids in the description           | one finding per CVE, named by it |
| `parent` / `parent_uuid` / `source` naming an earlier event  | `DISCOVERED` parent's asset → this event's asset (not when they are the same asset) |

Parent links: the parser keeps a map from each valid record's event `id` and `uuid` to the key
of its asset (the asset it produced or, for TECHNOLOGY/FINDING/VULNERABILITY, the asset it sits
on), so memory grows with the number of events (a few hundred bytes each). A parent that is
not in the file before its child (skipped types such as `SCAN`, `URL_UNVERIFIED`, a parent
written later, an invalid line) gives no edge.

Skipped without a record: `SCAN`, `FINISHED`, `ASN`, `ORG_STUB`, `STORAGE_BUCKET`, `PROTOCOL`,
`WAF`, `CODE_REPOSITORY`, `EMAIL_ADDRESS`, `URL_UNVERIFIED` (not visited: may not exist),
`URL_HINT`, `HTTP_RESPONSE`, `RAW_DNS_RECORD`, `DNS_NAME_UNRESOLVED`, `IP_RANGE`,
`WEB_PARAMETER`, `SOCIAL`, `AZURE_TENANT`, `GEOLOCATION`, `VIRTUAL_HOST`, `PASSWORD`,
`HASHED_PASSWORD`, `USERNAME`, `FILESYSTEM`, `WEBSCREENSHOT`, `MOBILE_APP` and any other type:
they are not attack-surface entities Bastion models, or carry secrets. Also not mapped:
`tags`, `scope_distance`, `module_sequence`, `discovery_context`, `discovery_path`,
`dns_children`, `web_spider_distance`, `timestamp`, `scan` (per-run values).
"""

from __future__ import annotations

import re
from typing import Any, Iterator
from urllib.parse import urlsplit

from bastion.ingest.records import Invalid, Malformed, Record, Sample, as_object, build, json_lines
from bastion.schema import normalize as norm

NAME = "bbot"
DESCRIPTION = "BBOT NDJSON events (json output module; 1.x/2.x data, 3.0 data_json)"

_HANDLED = ("DNS_NAME", "IP_ADDRESS", "OPEN_TCP_PORT", "OPEN_UDP_PORT", "URL", "TECHNOLOGY",
            "FINDING", "VULNERABILITY")
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
    assets: dict[str, str] = {}  # event id / uuid → key of the event's asset
    for where, value in json_lines(stream):
        if not isinstance(value, Invalid) and isinstance(value, dict):
            kind = value.get("type")
            if isinstance(kind, str) and kind not in _HANDLED:
                continue  # a type Bastion does not model
        produced: list[str] = []

        def fill(rec: Record, raw: Any) -> None:
            produced.append(_fill(rec, as_object(where, raw), assets))

        record = build(where, value, fill)
        if isinstance(record, Record) and produced:
            for member in ("id", "uuid"):
                ident = value.get(member)
                if isinstance(ident, str) and ident:
                    assets[ident] = produced[0]
        yield record


def _fill(rec: Record, event: dict[str, Any], assets: dict[str, str]) -> str:
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise Malformed("event has no 'type'")
    data = _payload(event, kind)
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

    for member in ("parent", "parent_uuid", "source"):
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
