"""List rows as CSV or NDJSON, streamed: one row at a time from a paged read, so an export of any
size holds one page in memory (`--format csv|ndjson` of every list command, and the HTTP API
later).

Entities come from `TenantStore.iterate` and are written in their `Record.as_dict` form
(`write`). Lists whose rows are not entities (import runs, events, coverage rows …) are written
from their rows' dict form with the stable columns their `filters.Rows` declares (`write_rows`);
the `Rows` below are those lists, with the fields `--where` filters them on.
"""

from __future__ import annotations

import csv
import dataclasses
from datetime import datetime
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import orjson

from bastion.errors import InvalidValue
from bastion.schema.roles import mask_record
from bastion.schema.kinds import GAP_STATES, REGISTRY, SEVERITIES
from bastion.schema.registry import Field, FieldType
from bastion.store.catalog import Release
from bastion.store.filters import Rows
from bastion.store.runs import KINDS as IMPORT_KINDS, ImportRun

FORMATS = ("csv", "ndjson")
PAGE_SIZE = 1000  # rows read per page (one short read transaction each) when exporting
JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS  # the CLI's --json uses the same

T = TypeVar("T")


def json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    """One JSON value on one line, as `--json` writes it (datetimes in ISO 8601, Z for UTC)."""
    return orjson.dumps(value, option=JSON_OPTIONS, default=json_default).decode()


def columns(kind: str) -> list[str]:
    """The CSV header of a kind: what `Record.as_dict` holds, in that order."""
    return ["key", "kind", "entity_version", *REGISTRY.entity(kind).field_names, "properties",
            "first_seen", "last_seen", "updated_at"]


def cell(value: Any) -> str:
    """A CSV cell: empty for missing, true/false, ISO 8601 times, lists and objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return dumps(value).strip('"')
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return dumps(value)
    return str(value)


def write_rows(rows: Iterable[Mapping[str, Any]], out: IO[str], fmt: str,
               names: Sequence[str]) -> int:
    """Write dict rows to `out` as `fmt`; returns how many. CSV has the header `names` (and
    those cells, in that order) even when there is no row; NDJSON is each row whole, one JSON
    object per line."""
    n = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in names])
            n += 1
    elif fmt == "ndjson":
        for row in rows:
            out.write(dumps(row))
            out.write("\n")
            n += 1
    else:
        raise InvalidValue(f"unknown export format {fmt!r}; formats: " + ", ".join(FORMATS))
    return n


def write(kind: str, records: Iterable, out: IO[str], fmt: str, *, role: str | None = None) -> int:
    """Write entity `records` (of `kind`) to `out` as `fmt`; returns how many. `role`: values
    masked as that role sees them (bastion.schema.roles)."""
    return write_rows((mask_record(rec.as_dict(), role) for rec in records), out, fmt, columns(kind))


def pages(fetch: Callable[[Any, int], Sequence[T]], cursor: Callable[[T], Any], *,
          start: Any = None, page_size: int | None = None) -> Iterator[T]:
    """Every row of a keyset-paged read, one page in memory at a time: `fetch(after, n)` returns
    at most `n` rows after the cursor `after` (`start` for the first page); the last row's
    `cursor(row)` continues; a short page is the last."""
    n = page_size or PAGE_SIZE
    after = start
    while True:
        page = fetch(after, n)
        yield from page
        if len(page) < n:
            return
        after = cursor(page[-1])


# -- lists that are not entities: their columns and the fields --where filters them on -------------


def _fields(*specs: Field | str) -> tuple[Field, ...]:
    return tuple(Field(s) if isinstance(s, str) else s for s in specs)


def _upper(value: Any) -> str:
    return str(value).strip().upper()


def _lower(value: Any) -> str:
    return str(value).strip().lower()


INT, FLOAT, BOOL, TIME = FieldType.INT, FieldType.FLOAT, FieldType.BOOL, FieldType.DATETIME
CRITICALITIES = ("low", "medium", "high", "critical")
LEVELS = ("informational", "low", "medium", "high", "critical")

IMPORT_RUNS = Rows(
    "import_run",
    columns=(*(f.name for f in dataclasses.fields(ImportRun)), "kind"),
    fields=_fields(Field("id", INT), Field("kind", domain=IMPORT_KINDS, normalize=_lower),
                   "source", Field("status", domain=("running", "succeeded", "partial", "failed", "interrupted"),
                                   normalize=_lower),
                   "actor", Field("started_at", TIME), Field("finished_at", TIME), "correlation_id"),
    text=("source",))

EVENTS = Rows(
    "event",
    columns=("seq", "occurred_at", "entity_key", "entity_kind", "entity_version", "event_type",
             "diff", "actor", "source", "correlation_id", "note"),
    fields=_fields(Field("seq", INT), Field("occurred_at", TIME), "entity_key",
                   Field("entity_kind", normalize=_lower), Field("entity_version", INT),
                   Field("event_type", normalize=_lower), "actor", "source", "correlation_id",
                   "note"),
    text=("entity_key", "note"))

TECHNIQUES = Rows(
    "technique",
    columns=("id", "name", "parent", "tactics", "groups", "covered", "score", "count",
             "max_level", "weighted", "detections"),
    fields=_fields(Field("id", normalize=_upper), "name", Field("parent", normalize=_upper),
                   Field("tactics", normalize=_lower), Field("groups", INT),
                   Field("covered", BOOL), Field("score", FLOAT), Field("count", INT),
                   Field("max_level", domain=LEVELS, normalize=_lower), Field("weighted", INT)),
    text=("id", "name"))

GAPS = Rows(
    "gap",
    columns=("risk", "severity", "account", "account_name", "criticality", "technique", "name",
             "tactics", "groups", "status", "stored_status", "comment", "note"),
    fields=_fields("account", "account_name",
                   Field("criticality", domain=CRITICALITIES, normalize=_lower),
                   Field("technique", normalize=_upper), "name",
                   Field("tactics", normalize=_lower), Field("groups", INT), Field("risk", INT),
                   Field("severity", domain=SEVERITIES, normalize=_lower),
                   Field("status", domain=GAP_STATES, normalize=_lower),
                   Field("stored_status", domain=GAP_STATES, normalize=_lower), "comment", "note"),
    text=("technique", "name"))

OVERLAPS = Rows(
    "overlap",
    columns=("account", "technique", "name", "classification", "reason", "detections"),
    fields=_fields("account", Field("technique", normalize=_upper), "name",
                   Field("classification", domain=("conflicting", "excessive", "beneficial"),
                         normalize=_lower), "reason"),
    text=("technique", "name", "reason"))

COVERAGE_HISTORY = Rows(
    "coverage_snapshot",
    columns=("id", "account", "taken_at", "method", "attack_domain", "attack_version",
             "detection_snapshot", "overall", "tactics", "techniques"),
    fields=_fields(Field("id", INT), "account", Field("taken_at", TIME),
                   Field("method", normalize=_lower), Field("attack_domain", normalize=_lower),
                   "attack_version", Field("detection_snapshot", INT)))

ATTACK_RELEASES = Rows(
    "attack_release",
    columns=tuple(f.name for f in dataclasses.fields(Release)),
    fields=_fields(Field("domain", normalize=_lower), "version", "name", "source", "released",
                   "sha256", "spec_version", Field("active", BOOL), Field("imported_at", TIME)),
    text=("name", "version"))

TENANTS = Rows(
    "tenant",
    columns=("name", "display_name", "created_at"),
    fields=_fields("name", "display_name", Field("created_at", TIME)),
    text=("name", "display_name"))

# `bastion risk overdue`: risk entities (its --where takes the risk's fields, in SQL), shown as
# these columns.
OVERDUE_COLUMNS = ("key", "severity", "status", "first_seen", "due", "days_overdue")
