"""nmap XML (`-oX`), read as a stream: each `<host>` is one record, placed as `host N (line L)`.

The mapping, element by element, and what is skipped: docs/formats.md#nmap.

Security: parsed with defusedxml. A `<!DOCTYPE nmaprun>` line as nmap writes it is accepted, but
any entity declaration (internal: "billion laughs" expansion; external: XXE) refuses the whole
file. Memory stays bounded: the document is fed to the parser in chunks and only the `<host>`
being read is built as a tree, dropped as soon as its record is made — which is also how each
host's line number is known (iterparse cannot say it).
"""

from __future__ import annotations

import re
from typing import Any, Iterator
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from bastion.ingest import limits
from bastion.ingest.records import (Invalid, Malformed, Record, Sample, Unplaced, build,
                                    seen_time, severity_from_cvss)
from bastion.schema import normalize as norm

NAME = "nmap"
DESCRIPTION = "nmap XML (-oX); DTD entity declarations are refused"

CHUNK = 1 << 20
_PROTOCOLS = ("tcp", "udp", "sctp")
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$", re.IGNORECASE)
_CVE_LINE = re.compile(r"(CVE-\d{4}-\d{4,})\s+(\d+(?:\.\d+)?)", re.IGNORECASE)
_REFUSED = "DTD entity declarations are refused (possible XXE / entity expansion attack)"


def sniff(sample: Sample) -> bool:
    # Any XML goes here: nmap is the only XML format, and a hostile document must meet the
    # parser that refuses it clearly rather than "unknown format".
    head = sample.head
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head.lstrip()[:1] == b"<"


def parse(stream) -> Iterator[Record | Invalid]:
    target = _HostCollector()
    parser = DefusedXMLParser(target=target, forbid_dtd=False, forbid_entities=True,
                              forbid_external=True)
    target.parser = parser
    # A tag or text beyond the string limit is refused before expat rescans it feed by feed.
    stream = limits.tokens(stream, b"<", "an XML tag or text")
    try:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            parser.feed(chunk)
            yield from _drain(target)
        parser.close()
        yield from _drain(target)
    except DefusedXmlException as exc:
        raise Malformed(f"{_refusal(exc)}: {_REFUSED}") from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        msg = str(exc).split(":", 1)[0]  # expat's reason without its own position suffix
        raise Malformed(f"not well-formed XML at line {line}, column {column}: {msg}") from None
    if target.root is None:
        raise Malformed("no XML element found")


def _refusal(exc: DefusedXmlException) -> str:
    name = getattr(exc, "name", None)
    system_id = getattr(exc, "sysid", None) or getattr(exc, "system_id", None)
    if isinstance(exc, EntitiesForbidden):
        return f"refused XML: the document type declares the entity {name!r}"
    if isinstance(exc, ExternalReferenceForbidden):
        return f"refused XML: external reference to {system_id!r}"
    return f"refused XML ({type(exc).__name__})"


def _drain(target: _HostCollector) -> Iterator[Record | Invalid]:
    while target.done:
        number, line, host = target.done.pop(0)
        where = f"host {number} (line {line})" if line else f"host {number}"
        status = host.find("status")
        if status is not None and status.get("state") == "down":
            continue
        yield build(where, host, lambda rec, h: _fill(rec, h, target.started))


class _HostCollector:
    """Parser target that builds a tree for each `<host>` only, remembering its line."""

    def __init__(self) -> None:
        self.parser: DefusedXMLParser | None = None
        self.root: str | None = None
        self.started: str | None = None  # <nmaprun start>: epoch seconds
        self.depth = 0
        self.hosts = 0
        self.builder: TreeBuilder | None = None
        self.host_depth = 0
        self.line: int | None = None
        self.done: list[tuple[int, int | None, Element]] = []

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.root is None:
            self.root = tag
            self.started = attrs.get("start")
            if tag != "nmaprun":
                raise Malformed(f"not nmap XML output: the root element is <{tag}>, "
                                "expected <nmaprun>")
        if self.builder is None and tag == "host":
            self.hosts += 1
            self.builder = TreeBuilder()
            self.host_depth = self.depth
            try:
                self.line = self.parser.parser.CurrentLineNumber  # type: ignore[union-attr]
            except AttributeError:
                self.line = None
        if self.builder is not None:
            self.builder.start(tag, attrs)

    def end(self, tag: str) -> None:
        if self.builder is not None:
            self.builder.end(tag)
            if self.depth == self.host_depth:
                self.done.append((self.hosts, self.line, self.builder.close()))
                self.builder = None
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.builder is not None:
            self.builder.data(text)

    def close(self) -> None:
        return None


def _epoch(value: str | None):
    return seen_time(int(value)) if value and value.strip().isdigit() else None


def _fill(rec: Record, host: Element, started: str | None = None) -> None:
    rec.seen = _epoch(host.get("starttime")) or _epoch(started)  # the host's scan, else the run's
    ips: list[str] = []
    for addr in host.findall("address"):
        kind = (addr.get("addrtype") or "").lower()
        if kind not in ("ipv4", "ipv6"):
            continue  # mac
        value = addr.get("addr")
        if not value:
            raise Malformed(f"<address addrtype=\"{kind}\"> has no addr attribute")
        if norm.ip_version(value) is None:
            raise Malformed(f"<address addrtype=\"{kind}\"> addr {value!r} is not an IP address")
        key = rec.add("asset", identifier=value)
        if key not in ips:
            ips.append(key)
    if not ips:
        raise Unplaced("host has no <address> with addrtype ipv4 or ipv6")

    names: list[str] = []
    for hn in host.iterfind("hostnames/hostname"):
        name = hn.get("name")
        if not name:
            continue
        key = rec.add("asset", identifier=name)
        if key not in names:
            names.append(key)
            for ip in ips:
                rec.link("RESOLVES_TO", key, ip)

    ip = ips[0]
    for port in host.iterfind("ports/port"):
        state = port.find("state")
        if state is None or state.get("state") != "open":
            continue
        proto = (port.get("protocol") or "").lower()
        if proto not in _PROTOCOLS:
            continue
        number = port.get("portid")
        if number is None or not number.strip().isdigit():
            raise Malformed(f"<port protocol=\"{proto}\"> has no numeric portid (got {number!r})")
        _port(rec, ip, proto, int(number), port)


def _port(rec: Record, ip: str, proto: str, number: int, port: Element) -> None:
    svc = port.find("service")
    name = product = version = extrainfo = None
    cpes: list[str] = []
    if svc is not None:
        name = svc.get("name") or None
        if name and name.lower() == "unknown":
            name = None
        product = svc.get("product") or None
        version = svc.get("version") or None
        extrainfo = svc.get("extrainfo") or None
        cpes = [c.text.strip() for c in svc.findall("cpe") if c.text and c.text.strip()]
    props = {k: v for k, v in (("product", product), ("version", version),
                               ("extrainfo", extrainfo)) if v}
    port_key = rec.add("port", props or None, asset=ip, protocol=proto, number=number,
                       service=name)

    app_tech = False
    for cpe in cpes:
        tech = rec.add("technology", cpe=cpe)
        part = cpe[5:6] if cpe.startswith("cpe:/") else (cpe.split(":")[2:3] or [""])[0]
        if part in ("o", "h"):
            rec.link("HAS_TECHNOLOGY", ip, tech)
        else:
            rec.link("HAS_TECHNOLOGY", port_key, tech)
            app_tech = True
    if not app_tech and product:
        tech = rec.add("technology", name=product, version=version)
        rec.link("HAS_TECHNOLOGY", port_key, tech)

    for script in port.findall("script"):
        if script.get("id") == "vulners":
            _vulners(rec, port_key, f"{proto}/{number}", script,
                     " ".join(p for p in (product, version) if p) or None)


def _vulners(rec: Record, port_key: str, where: str, script: Element,
             software: str | None = None) -> None:
    """CVEs the vulners script lists for the port's software, each a finding titled
    "CVE-… in <product version>" (else the CPE vulners named, else the port)."""
    found: dict[str, tuple[float | None, str | None, Any]] = {}  # CVE → (cvss, cpe, is_exploit)
    tables = script.findall("table")
    for outer in tables:
        cpe = outer.get("key")
        for entry in outer.findall("table"):
            elems = {e.get("key"): (e.text or "").strip() for e in entry.findall("elem")}
            ident = elems.get("id", "")
            kind = elems.get("type", "cve").lower()
            if kind != "cve" or not _CVE.match(ident):
                continue
            cvss = _score(elems.get("cvss"))
            exploit = {"true": True, "false": False}.get(elems.get("is_exploit", "").lower())
            _keep(found, ident.upper(), cvss, cpe, exploit)
    if not tables:  # older vulners.nse: text output only
        for ident, score in _CVE_LINE.findall(script.get("output") or ""):
            _keep(found, ident.upper(), _score(score), None, None)
    for cve, (cvss, cpe, exploit) in found.items():
        props: dict[str, Any] = {"source": "vulners"}
        if cpe:
            props["cpe"] = cpe
        if exploit is not None:
            props["is_exploit"] = exploit
        title = f"{cve} in {software or cpe}" if (software or cpe) else f"{cve} on {where}"
        rec.finding(port_key, cve, severity=severity_from_cvss(cvss), cve=cve, cvss=cvss,
                    title=title, evidence=[f"{cpe} on {where}" if cpe else where], properties=props)


def _keep(found: dict, cve: str, cvss: float | None, cpe: str | None, exploit: Any) -> None:
    old = found.get(cve)
    if old is None or (cvss is not None and (old[0] is None or cvss > old[0])):
        found[cve] = (cvss, cpe, exploit)


def _score(text: str | None) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise Malformed(f"vulners cvss {text!r} is not a number") from None
    if not 0 <= value <= 10:
        raise Malformed(f"vulners cvss {value} is outside 0-10")
    return value
