"""httpx JSON lines: web applications (URL assets), their ports, technologies and DNS answers.
`host` is the address httpx connected to, not the name; `port` is a string.

The mapping and what is skipped: docs/formats.md#httpx.
"""

from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import urlsplit

from bastion.errors import ValidationFailed
from bastion.ingest.hosts import add_host, add_ip, is_ip_key, string_list
from bastion.ingest.records import (
    Invalid,
    Malformed,
    Record,
    Sample,
    Unplaced,
    as_object,
    build,
    json_lines,
    seen_time,
)
from bastion.schema import normalize as norm

NAME = "httpx"
DESCRIPTION = "httpx JSON lines"

_PROBE_KEYS = ("status_code", "status-code", "webserver", "tech", "title", "input")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def sniff(sample: Sample) -> bool:
    first = sample.first
    return (isinstance(first, dict) and "url" in first
            and any(k in first for k in _PROBE_KEYS)
            and "template-id" not in first and "templateID" not in first)


def parse(stream) -> Iterator[Record | Invalid]:
    for where, value in json_lines(stream):
        yield build(where, value, _fill)


def _port_number(value: Any, member: str) -> int:
    if isinstance(value, bool):
        raise Malformed(f"member {member!r} is not a port number: {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Malformed(f"member {member!r} is not a port number: {value!r}") from None
    if not 0 < number <= 65535:
        raise Malformed(f"member {member!r}: port {number} is outside 1-65535")
    return number


def _technology(record: Record, name: str, version: str | None, member: str) -> str | None:
    name, version = name.strip(), (version or "").strip() or None
    if not name:
        return None
    try:
        return record.add("technology", name=name, version=version)
    except ValidationFailed as exc:
        reason = "; ".join(p.reason for p in exc.problems)
        raise Malformed(f"member {member!r}: technology {name!r}: {reason}") from None


def _webserver(text: str) -> tuple[str, str | None]:
    """`nginx/1.19.0` → (nginx, 1.19.0); `Apache/2.4.41 (Ubuntu)` → (Apache, 2.4.41);
    `Microsoft-IIS/10.0` → (Microsoft-IIS, 10.0); `cloudflare` → (cloudflare, None)."""
    product = text.strip().split(" ", 1)[0] if "/" in text.split(" ", 1)[0] else text.strip()
    name, _, version = product.partition("/")
    return name, version or None


def _fill(record: Record, raw: Any) -> None:
    obj = as_object(record.where, raw)
    record.seen = seen_time(obj.get("timestamp"))
    if obj.get("failed") is True:
        return  # the probe got no answer: nothing to say about the URL
    url = obj.get("url")
    if not url or not isinstance(url, str):
        raise Unplaced("no 'url' member: nothing to place the result on")
    try:
        parts = urlsplit(url.strip())
        url_port = parts.port
    except ValueError as exc:
        raise Malformed(f"member 'url': invalid URL {url!r}: {exc}") from None
    status = obj.get("status_code", obj.get("status-code"))
    webserver = obj.get("webserver") if isinstance(obj.get("webserver"), str) else None
    properties = {
        "title": " ".join(str(obj.get("title") or "").split())[:1000] or None,
        "status_code": status if isinstance(status, int) and not isinstance(status, bool) else None,
        "webserver": webserver or None,
    }
    try:
        site = record.add("asset", {k: v for k, v in properties.items() if v is not None},
                          identifier=url)
    except ValidationFailed as exc:
        raise Malformed("member 'url': " + "; ".join(p.reason for p in exc.problems)) from None

    # The host named by the URL (a DNS name or an address), and the DNS name behind it.
    url_host = add_host(record, "url", url)
    record.link("RESOLVES_TO", site, url_host)
    name = url_host if not is_ip_key(url_host) else None
    if name is None:
        given = add_host(record, "input", obj.get("input"))
        if given is not None and not is_ip_key(given):
            name = given

    # Addresses: the one httpx connected to (`host`), then the A/AAAA answers.
    connected = None
    host = obj.get("host")
    if isinstance(host, str) and norm.ip_version(host.strip()):
        connected = add_ip(record, "host", host)
    elif host and name is None:  # some versions put the host name there
        other = add_host(record, "host", host)
        if not is_ip_key(other):
            name = other
    addresses = [connected] if connected else []
    for member in ("a", "aaaa"):
        for i, value in enumerate(string_list(obj.get(member))):
            addresses.append(add_ip(record, f"{member}[{i}]", value))
    addresses = list(dict.fromkeys(a for a in addresses if a))
    if name is not None:
        for address in addresses:
            record.link("RESOLVES_TO", name, address)
        for i, target in enumerate(string_list(obj.get("cname"))):
            alias = add_host(record, f"cname[{i}]", target)
            if alias and alias != name:
                record.link("RESOLVES_TO", name, alias)

    # The port, on the address httpx connected to.
    scheme = str(obj.get("scheme") or parts.scheme or "").strip().lower()
    if obj.get("port") not in (None, ""):
        number = _port_number(obj["port"], "port")
    else:
        number = url_port or _DEFAULT_PORTS.get(parts.scheme.lower())
    on = connected or (url_host if is_ip_key(url_host) else None) or \
        (addresses[0] if addresses else None) or name or url_host
    if number and on:
        record.add("port", asset=on, protocol="tcp", number=number,
                   service=scheme if scheme in _DEFAULT_PORTS else None)

    # Technologies, on the web application.
    techs: list[str | None] = []
    named: list[str] = []
    for i, entry in enumerate(string_list(obj.get("tech"), split=None)):
        tname, _, version = entry.partition(":")
        named.append(tname.strip().lower())
        techs.append(_technology(record, tname, version, f"tech[{i}]"))
    if webserver and webserver.strip():
        wname, wversion = _webserver(webserver)
        # `tech` usually names the server already ("Nginx:1.19.0", "Apache HTTP Server:2.4.41"):
        # the header then adds nothing, and a second spelling would be a second technology.
        if not any(n.startswith(wname.strip().lower()) for n in named):
            techs.append(_technology(record, wname, wversion, "webserver"))
    for tech in dict.fromkeys(t for t in techs if t):
        record.link("HAS_TECHNOLOGY", site, tech)
