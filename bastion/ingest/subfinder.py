"""subfinder results: JSON lines (`subfinder -oJ` / `-json`), one subdomain per line.

Mapping (docs/_formats/subfinder.md):

- `host` → DNS name asset (the subdomain).
- `input` → DNS name asset (the domain searched); `DISCOVERED` input → host; `SUBDOMAIN_OF`
  host → input when the host lies below the input.
- `ip` (`-active -ip`) → IP asset; `RESOLVES_TO` host → IP.

Edges carry no properties. Skipped: `source` / `sources` (the passive source differs from run
to run, and a property that changes with it would look like a change on every import) and
`timestamp`. A host equal to its input gets no edge to itself; a host that is not below its
input (some sources return related names) gets `DISCOVERED` but no `SUBDOMAIN_OF`.
"""

from __future__ import annotations

from typing import Any, Iterator

from bastion.ingest.nuclei import add_host, add_ip, deduplicated
from bastion.ingest.records import (
    Invalid,
    Malformed,
    Record,
    Sample,
    as_object,
    build,
    json_lines,
)

NAME = "subfinder"
DESCRIPTION = "subfinder JSON lines"


def sniff(sample: Sample) -> bool:
    first = sample.first
    return (isinstance(first, dict) and "host" in first and "input" in first
            and ("source" in first or "sources" in first) and "port" not in first)


def parse(stream) -> Iterator[Record | Invalid]:
    for where, value in json_lines(stream):
        yield deduplicated(build(where, value, _fill))


def _name(key: str) -> str:
    return key.rsplit("#", 1)[-1]


def _fill(record: Record, raw: Any) -> None:
    obj = as_object(record.where, raw)
    if not obj.get("host"):
        raise Malformed("no 'host' member")
    host = add_host(record, "host", obj["host"])
    domain = add_host(record, "input", obj.get("input"))
    if domain is not None and domain != host:
        record.link("DISCOVERED", domain, host)
        if _name(host).endswith("." + _name(domain)):
            record.link("SUBDOMAIN_OF", host, domain)
    ip = add_ip(record, "ip", obj.get("ip"))
    if ip is not None and ip != host:
        record.link("RESOLVES_TO", host, ip)
