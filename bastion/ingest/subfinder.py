"""subfinder JSON lines: subdomains DISCOVERED from the input domain, SUBDOMAIN_OF it when they
lie below it, RESOLVES_TO their address when given.

The mapping: docs/formats.md#subfinder.
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

NAME = "subfinder"
DESCRIPTION = "subfinder JSON lines"


def sniff(sample: Sample) -> bool:
    first = sample.first
    return (isinstance(first, dict) and "host" in first and "input" in first
            and ("source" in first or "sources" in first) and "port" not in first)


def parse(stream) -> Iterator[Record | Invalid]:
    for where, value in json_lines(stream):
        yield build(where, value, _fill)


def _name(key: str) -> str:
    return key.rsplit("#", 1)[-1]


def _fill(record: Record, raw: Any) -> None:
    obj = as_object(record.where, raw)
    record.seen = seen_time(obj.get("timestamp"))
    if not obj.get("host"):
        raise Unplaced("no 'host' member: nothing to place the result on")
    host = add_host(record, "host", obj["host"])
    domain = add_host(record, "input", obj.get("input"))
    if domain is not None and domain != host:
        record.link("DISCOVERED", domain, host)
        if _name(host).endswith("." + _name(domain)):
            record.link("SUBDOMAIN_OF", host, domain)
    ip = add_ip(record, "ip", obj.get("ip"))
    if ip is not None and ip != host:
        record.link("RESOLVES_TO", host, ip)
