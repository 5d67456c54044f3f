"""naabu JSON lines: open ports on addresses. `host` is left out when it equals the IP, and the
same port may repeat on several lines (repeats are skipped here; the importer dedups by key too).

The mapping: docs/formats.md#naabu.
"""

from __future__ import annotations

from typing import Any, Iterator

from bastion.ingest.hosts import add_host, add_ip
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

NAME = "naabu"
DESCRIPTION = "naabu JSON lines"

_PROTOCOLS = {0: "tcp", 1: "udp", "tcp": "tcp", "udp": "udp", "sctp": "sctp"}


def sniff(sample: Sample) -> bool:
    first = sample.first
    return (isinstance(first, dict) and "ip" in first and "port" in first and "url" not in first
            and "template-id" not in first and "templateID" not in first)


def parse(stream) -> Iterator[Record | Invalid]:
    seen: set[tuple] = set()  # one entry per distinct open port: bounded by the scan's result
    for where, value in json_lines(stream):
        record = build(where, value, _fill)
        if isinstance(record, Record):
            identity = tuple(e.prepared[1] for e in record.entities)
            if identity in seen:
                continue
            seen.add(identity)
        yield record


def _protocol(value: Any) -> str:
    word = value.strip().lower() if isinstance(value, str) else value
    if isinstance(word, bool) or word not in _PROTOCOLS:
        raise Malformed(f"member 'protocol': unknown protocol {value!r} (expected tcp or udp)")
    return _PROTOCOLS[word]


def _fill(record: Record, raw: Any) -> None:
    obj = as_object(record.where, raw)
    record.seen = seen_time(obj.get("timestamp"))
    if not obj.get("ip"):
        raise Unplaced("no 'ip' member: nothing to place the result on")
    port = obj.get("port")
    protocol = obj.get("protocol")
    if isinstance(port, dict):  # {"Port": 80, "Protocol": 0, "TLS": false}
        if protocol is None:
            protocol = port.get("Protocol", port.get("protocol"))
        port = port.get("Port", port.get("port"))
    if port is None or port == "":
        raise Malformed("no 'port' member")
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        raise Malformed(f"member 'port' is not a port number: {port!r}")
    try:
        number = int(str(port).strip())
    except ValueError:
        raise Malformed(f"member 'port' is not a port number: {port!r}") from None
    if not 0 < number <= 65535:
        raise Malformed(f"member 'port': {number} is outside 1-65535")
    proto = _protocol(protocol) if protocol not in (None, "") else "tcp"

    ip = add_ip(record, "ip", obj["ip"])
    host = add_host(record, "host", obj.get("host"))
    if host is not None and host != ip:
        record.link("RESOLVES_TO", host, ip)
    record.add("port", asset=ip, protocol=proto, number=number, state="open")
