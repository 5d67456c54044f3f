"""Known-exploited and exploit-probability data on risks (docs/formats.md#enrichment-kev-and-epss).

`read_kev` reads the CISA Known Exploited Vulnerabilities catalog (JSON, streamed with ijson),
`read_epss` FIRST's EPSS scores (CSV); both accept gzip. A file that cannot be read as what it
claims to be is refused with one line naming the file, the line or entry, and the reason
(InvalidValue); nothing is written then.

`apply_kev` / `apply_epss` set the fields on every risk of a tenant that names a CVE, recompute
its priority (bastion.risks.priority) and write the risks whose values changed, page by page, in
one transaction through the store's write path: each change is a `risk.updated` event with its
diff, source `enrich:kev` or `enrich:epss`. The KEV catalog is complete: a CVE it does not list is
not known exploited (kev false). An EPSS file may not score every CVE: a risk whose CVE it lacks
keeps the scores it had.

`import_file` is what `bastion enrich` runs: it reads a file (or standard input; gzip or plain)
through the file-import framework (bastion.ingest.files) and applies it, recorded as an import
run of kind `kev` or `epss` — a refused file too — whose correlation id the events carry.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import IO, Any, Callable, Iterator, Union

from bastion.errors import InvalidValue
from bastion.ingest import limits
from bastion.risks.priority import asset_of as _asset_of, priority
from bastion.schema import normalize as norm
from bastion.schema.batch import Batch, Entity

KEV_SOURCE = "enrich:kev"
EPSS_SOURCE = "enrich:epss"
PAGE = 5000  # risks read, compared and written at a time
EPSS_COLUMNS = ("cve", "epss", "percentile")
_SNIFF = 4096
_KEV_FIELDS = {f"vulnerabilities.item.{f}": f for f in ("cveID", "dueDate", "knownRansomwareCampaignUse")}

Source = Union[str, "os.PathLike[str]", IO[bytes]]


class Catalog(dict):
    """CVE → values read from one file, with the file's name and the publisher's version/date."""

    def __init__(self, name: str, version: str | None = None, date: str | None = None):
        super().__init__()
        self.name, self.version, self.date = name, version, date


# -- reading ----------------------------------------------------------------------------------------


def _fail(name: str, where: str | None, reason: str) -> InvalidValue:
    return InvalidValue(f"{name}: {where}: {reason}" if where else f"{name}: {reason}")


def _one_line(text: Any, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


@contextmanager
def _opened(source: Source, label: str | None = None) -> Iterator[tuple[str, io.BufferedIOBase]]:
    """(display name, binary stream of the content), gunzipped when it starts with 1f 8b."""
    if isinstance(source, (str, os.PathLike)):
        name = label or os.fspath(source)
        try:
            raw: Any = open(source, "rb")
        except OSError as exc:
            raise _fail(name, None, f"cannot open: {exc.strerror or exc}") from None
        owned = True
    else:
        raw, owned = source, False
        name = label or getattr(source, "name", None)
        name = name if isinstance(name, str) else "<stream>"
    wrapper = None
    try:
        if not hasattr(raw, "peek"):  # e.g. BytesIO: add a buffer to look at the first bytes
            raw = wrapper = io.BufferedReader(raw)
        stream: Any = raw
        if raw.peek(2)[:2] == b"\x1f\x8b":  # read through the limits on size and ratio
            stream = limits.gunzip(raw)
        try:
            yield name, stream
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # a cut-off or corrupt gzip
            raise _fail(name, None, f"cannot read: {_one_line(exc) or type(exc).__name__}") from None
        except limits.LimitExceeded as exc:  # too deep, a line or field too long, a gzip bomb
            raise _fail(name, None, str(exc)) from None
    finally:
        if owned:
            raw.close()
        elif wrapper is not None:
            wrapper.detach()  # the caller's stream stays open


def _head(name: str, stream, what: str) -> bytes:
    """The first bytes of the content: refuses an empty or a binary file."""
    try:
        head = stream.peek(_SNIFF)[:_SNIFF]
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise _fail(name, None, f"cannot read: {_one_line(exc) or type(exc).__name__}") from None
    if not head.strip():
        raise _fail(name, None, f"empty file, expected {what}")
    if b"\x00" in head:
        raise _fail(name, None, f"binary file, expected {what}")
    return head


KEV_CSV_COLUMNS = ("cveID", "dueDate", "knownRansomwareCampaignUse")


def read_kev(source: Source, name: str | None = None) -> Catalog:
    """CVE → (due date as a UTC datetime or None, known ransomware use) from a KEV catalog:
    CISA's JSON (`{"catalogVersion", "dateReleased", "count", "vulnerabilities": [{"cveID",
    "dueDate", "knownRansomwareCampaignUse", …}]}`) or CSV (a header row naming at least
    `cveID`, `dueDate`, `knownRansomwareCampaignUse`, then one row per vulnerability), streamed:
    memory holds the result, not the file. `name` names the input in errors (default: the
    path)."""
    import ijson

    with _opened(source, name) as (name, stream):
        head = _head(name, stream, "a KEV catalog (JSON or CSV)")
        if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b"["):
            return _read_kev_csv(name, stream)
        catalog = Catalog(name)
        meta: dict[str, Any] = {}
        found = False  # a `vulnerabilities` array at the top level
        entry: dict[str, Any] | None = None
        count = 0
        scalars = ("string", "number", "boolean", "null")
        try:
            events = limits.json_events(stream, use_float=True)
            for prefix, event, value in events:
                if prefix == "":
                    if event not in ("start_map", "map_key", "end_map"):
                        raise _fail(name, None, "not a KEV catalog: expected a JSON object with a "
                                                "'vulnerabilities' array")
                elif prefix == "vulnerabilities":
                    if event == "start_array":
                        found = True
                    elif event != "end_array":
                        raise _fail(name, None, "not a KEV catalog: 'vulnerabilities' is not an array")
                elif prefix == "vulnerabilities.item":
                    if event == "start_map":
                        count += 1
                        entry = {}
                    elif event == "end_map":
                        _kev_entry(catalog, name, count, entry or {})
                        entry = None
                    elif event != "map_key":
                        raise _fail(name, f"vulnerability {count + 1}", "not a JSON object")
                elif entry is not None and event in scalars and prefix in _KEV_FIELDS:
                    entry[_KEV_FIELDS[prefix]] = value
                elif event in scalars and prefix in ("catalogVersion", "dateReleased", "count"):
                    meta[prefix] = value
        except ijson.JSONError as exc:
            raise _fail(name, None, f"not valid JSON: {_json_reason(exc)}") from None
        except UnicodeDecodeError:
            raise _fail(name, None, "not UTF-8 text, expected a KEV catalog (JSON)") from None
    if not found:
        raise _fail(name, None, "not a KEV catalog: no 'vulnerabilities' array")
    if not catalog:
        raise _fail(name, None, "the catalog lists no vulnerabilities")
    version = meta.get("catalogVersion")
    catalog.version = str(version) if version is not None else None
    released = meta.get("dateReleased")
    catalog.date = str(released) if released is not None else None
    return catalog


def _read_kev_csv(name: str, stream) -> Catalog:
    """The KEV catalog as CISA's CSV (known_exploited_vulnerabilities.csv). The CSV carries no
    catalog version or release date."""
    import csv

    catalog = Catalog(name)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        reader = limits.csv_reader(text)
        header = next(reader, None)
        columns = [c.strip() for c in header or []]
        missing = [c for c in KEV_CSV_COLUMNS if c not in columns]
        if missing:
            raise _fail(name, "line 1", "not a KEV catalog: expected JSON, or CSV with the "
                        f"columns {', '.join(KEV_CSV_COLUMNS)} (missing {', '.join(missing)})")
        index = {c: columns.index(c) for c in KEV_CSV_COLUMNS}
        count = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            count += 1
            where = f"line {reader.line_num}"
            if len(row) != len(columns):
                raise _fail(name, where, f"expected {len(columns)} columns, got {len(row)}")
            _kev_entry(catalog, name, count, {c: row[i] for c, i in index.items()}, where)
    except UnicodeDecodeError:
        raise _fail(name, None, "not UTF-8 text, expected a KEV catalog (JSON or CSV)") from None
    except csv.Error as exc:
        raise _fail(name, None, str(limits.csv_error(exc, reader.line_num))) from None
    finally:
        text.detach()
    if not catalog:
        raise _fail(name, None, "the catalog lists no vulnerabilities")
    return catalog


def _json_reason(exc: Exception) -> str:
    """The parser's message without its excerpt of the input (yajl gives bytes, several lines)."""
    msg = exc.args[0] if exc.args else exc
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    first = str(msg).strip().splitlines()
    return _one_line(first[0] if first else type(exc).__name__)


def _kev_entry(catalog: Catalog, name: str, n: int, entry: dict[str, Any],
               place: str | None = None) -> None:
    cve = entry.get("cveID")
    where = (place or f"vulnerability {n}") + (
        f" ({_one_line(cve, 40)})" if isinstance(cve, str) and cve.strip() else "")
    if not isinstance(cve, str) or not cve.strip():
        raise _fail(name, where, "no cveID")
    try:
        cve = norm.cve(cve)
    except InvalidValue:
        raise _fail(name, where,
                    f"invalid CVE id {_one_line(cve, 40)!r} (expected CVE-YYYY-NNNN)") from None
    raw_due = entry.get("dueDate")
    due = None
    if raw_due not in (None, ""):
        try:
            day = date.fromisoformat(str(raw_due).strip())
        except ValueError:
            raise _fail(name, where,
                        f"dueDate {_one_line(raw_due, 40)!r} is not a date (YYYY-MM-DD)") from None
        due = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    ransomware = str(entry.get("knownRansomwareCampaignUse") or "").strip().lower() == "known"
    catalog[cve] = (due, ransomware)


def read_epss(source: Source, name: str | None = None) -> Catalog:
    """CVE → (epss, percentile) from an EPSS CSV: an optional first line
    `#model_version:…,score_date:…`, the header `cve,epss,percentile`, then one row per CVE.
    `name` names the input in errors (default: the path)."""
    with _opened(source, name) as (name, stream):
        _head(name, stream, "EPSS scores (CSV)")
        catalog = Catalog(name)
        columns: tuple[int, int, int] | None = None
        width = 0
        n = 0
        for n, raw in limits.lines(stream):  # bytes, decoded per line: errors name their line
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise _fail(name, f"line {n}", "not UTF-8 text (a binary file?)") from None
            if not line.strip():
                continue
            if columns is None:
                if line.startswith("#"):
                    if n == 1:
                        meta = _epss_meta(line)
                        catalog.version = meta.get("model_version")
                        catalog.date = meta.get("score_date")
                    continue
                header = [c.strip().strip('"').lower() for c in line.split(",")]
                if any(c not in header for c in EPSS_COLUMNS):
                    raise _fail(name, f"line {n}", "expected the header 'cve,epss,percentile', got "
                                                    f"{_one_line(line, 80)!r}")
                columns = tuple(header.index(c) for c in EPSS_COLUMNS)  # type: ignore[assignment]
                width = len(header)
                continue
            row = [c.strip().strip('"') for c in line.split(",")]
            if len(row) != width:
                raise _fail(name, f"line {n}", f"expected {width} columns, got {len(row)}")
            cve, epss, pct = (row[i] for i in columns)
            try:
                cve = norm.cve(cve)
            except InvalidValue:
                raise _fail(name, f"line {n}",
                            f"invalid CVE id {_one_line(cve, 40)!r} (expected CVE-YYYY-NNNN)") from None
            catalog[cve] = (_score(name, n, "epss", epss), _score(name, n, "percentile", pct))
    if columns is None:
        raise _fail(name, None, "no header line 'cve,epss,percentile'")
    if not catalog:
        raise _fail(name, None, "no scores after the header")
    return catalog


def _epss_meta(line: str) -> dict[str, str]:
    out = {}
    for part in line.lstrip("#").split(","):
        key, sep, value = part.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _score(name: str, n: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _fail(name, f"line {n}", f"{column} {_one_line(text, 40)!r} is not a number")
    if not 0 <= value <= 1:
        raise _fail(name, f"line {n}", f"{column} {_one_line(text, 40)} is outside 0-1")
    return value


# -- applying ---------------------------------------------------------------------------------------


@dataclass
class EnrichResult:
    catalog: str  # kev | epss
    file: str
    version: str | None  # KEV catalogVersion; EPSS model_version
    date: str | None  # KEV dateReleased; EPSS score_date
    entries: int  # CVEs in the file
    risks: int  # risks that name a CVE
    matched: int  # of them, those the file lists
    updated: int  # risks written (one event each)
    correlation_id: str = ""
    run_id: int | None = None  # the import run that recorded it (import_file)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_file(tenant, catalog: str, path: str, actor: str, *, progress=None,
                events_source: str | None = None) -> EnrichResult:
    """Read `path` (a file, `-` for standard input) as the KEV catalog (`catalog` "kev") or
    EPSS scores ("epss") and apply it to every risk of `tenant` with a CVE, recorded as an
    import run of that kind. A file that cannot be read as one is refused (InvalidValue, one
    line naming it) and the run records why. `events_source`: the source of the events
    written (default enrich:kev or enrich:epss; the server's is api)."""
    from pathlib import Path

    from bastion.ingest.files import FileResult, Run

    if catalog not in ("kev", "epss"):
        raise InvalidValue(f"unknown catalog {catalog!r}; one of: kev, epss")
    if path != "-" and not Path(path).is_file():
        what = "Is a directory" if Path(path).is_dir() else "No such file or directory"
        raise _fail(path, None, f"cannot open: {what}")
    read, apply = (read_kev, apply_kev) if catalog == "kev" else (read_epss, apply_epss)
    with Run(tenant, catalog, actor=actor, source=KEV_SOURCE if catalog == "kev" else EPSS_SOURCE,
             paths=[path], progress=progress, options={"format": catalog}) as run:
        for item in run.inputs([path]):
            fr = run.add(FileResult(item.name, format=catalog))
            with run.open(item, fr) as opened:
                try:
                    data = read(opened.stream, item.name)
                except InvalidValue as exc:
                    fr.reject(str(exc).removeprefix(f"{item.name}: "))
                    raise
            if fr.status != "imported":  # it could not be read
                raise InvalidValue(fr.errors[0])
            result = apply(tenant, data, actor, at=run.at, correlation_id=run.correlation_id,
                           events_source=events_source)
            result.run_id = run.id
            run.counts = {**run.totals(), "records": len(data), "matched": result.matched,
                          "updated": result.updated}
            return result
    raise InvalidValue(f"cannot read {path}: not a file")


def apply_kev(tenant, kev: Catalog, actor: str, *, at: datetime | None = None,
              correlation_id: str | None = None, events_source: str | None = None) -> EnrichResult:
    """Set kev, kev_due and kev_ransomware (and priority) on every risk of `tenant` (a
    TenantStore) that names a CVE; a CVE not in the catalog gets kev false, no due date."""

    def update(values: dict[str, Any], cve: str) -> bool:
        hit = kev.get(cve)
        due, ransomware = hit if hit is not None else (None, False)
        values.update(kev=hit is not None, kev_due=due, kev_ransomware=ransomware)
        return hit is not None

    label = f"KEV catalog {kev.version}" if kev.version else f"KEV catalog {kev.name}"
    return _enrich(tenant, "kev", kev, actor, events_source or KEV_SOURCE, label, update, at,
                   correlation_id)


def apply_epss(tenant, epss: Catalog, actor: str, *, at: datetime | None = None,
               correlation_id: str | None = None, events_source: str | None = None) -> EnrichResult:
    """Set epss and epss_percentile (and priority) on every risk of `tenant` whose CVE the
    scores list; the others keep theirs (their priority is still brought up to date)."""

    def update(values: dict[str, Any], cve: str) -> bool:
        hit = epss.get(cve)
        if hit is not None:
            values.update(epss=hit[0], epss_percentile=hit[1])
        return hit is not None

    label = " ".join(["EPSS scores", *(p for p in (epss.version, epss.date) if p)])
    if not (epss.version or epss.date):
        label += f" {epss.name}"
    return _enrich(tenant, "epss", epss, actor, events_source or EPSS_SOURCE, label, update, at,
                   correlation_id)


def _enrich(tenant, kind: str, catalog: Catalog, actor: str, source: str, note: str,
            update: Callable[[dict[str, Any], str], bool], at: datetime | None,
            correlation_id: str | None = None) -> EnrichResult:
    result = EnrichResult(kind, catalog.name, catalog.version, catalog.date, len(catalog), 0, 0, 0)
    with tenant.writing(actor=actor, source=source, at=at,
                        correlation_id=correlation_id) as session:
        result.correlation_id = session.correlation_id
        for page in pages_with_cve(session):
            assets = {a for rec in page if (a := _asset_of(rec.values.get("target")))}
            stored = session.get_many(sorted(assets)) if assets else {}
            exposure = {key: rec.values.get("exposure") for key, rec in stored.items()}
            batch = Batch()
            for rec in page:
                values = dict(rec.values)
                result.risks += 1
                result.matched += update(values, values["cve"])
                values["priority"] = priority(values, exposure.get(_asset_of(values.get("target"))))
                if values != rec.values:
                    batch.entities.append(Entity("risk", values, rec.properties, None,
                                                 (values, rec.key), note))
            if batch.entities:
                session.apply(batch, observed=False)  # data about the CVE, not a sighting
                result.updated += len(batch.entities)
    return result


def pages_with_cve(session) -> Iterator[list]:
    """The stored risks with a CVE, a page at a time, in a write session (enrichment of every
    kind reads them so, under the tenant's write lock)."""
    after = None
    while True:
        page = session.risks_with_cve(after, PAGE)
        if page:
            yield page
        if len(page) < PAGE:
            return
        after = page[-1].key
