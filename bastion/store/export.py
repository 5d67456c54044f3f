"""Entities as CSV or NDJSON, streamed: one record at a time from `TenantStore.iterate`, so an
export of any size holds one page in memory (`bastion list KIND --format csv|ndjson`, and the
HTTP API later)."""

from __future__ import annotations

import csv
from datetime import datetime
from typing import IO, Any, Iterable

import orjson

from bastion.errors import InvalidValue
from bastion.schema.kinds import REGISTRY

FORMATS = ("csv", "ndjson")


def columns(kind: str) -> list[str]:
    """The CSV header of a kind: what `Record.as_dict` holds, in that order."""
    return ["key", "kind", "entity_version", *REGISTRY.entity(kind).field_names, "properties",
            "first_seen", "last_seen", "updated_at"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode().strip('"')
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def write(kind: str, records: Iterable, out: IO[str], fmt: str) -> int:
    """Write `records` (of `kind`) to `out` as `fmt`; returns how many. CSV has a header row
    even when nothing matched; NDJSON is one JSON object per line, datetimes in ISO 8601 (Z)."""
    n = 0
    if fmt == "csv":
        names = columns(kind)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for rec in records:
            row = rec.as_dict()
            writer.writerow([_cell(row.get(c)) for c in names])
            n += 1
    elif fmt == "ndjson":
        for rec in records:
            out.write(orjson.dumps(rec.as_dict(), option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
                      .decode())
            out.write("\n")
            n += 1
    else:
        raise InvalidValue(f"unknown export format {fmt!r}; formats: " + ", ".join(FORMATS))
    return n
