"""What a format parser hands to the importer: one `Record` per input record.

A parser turns one input record (a JSON line, an nmap `<host>`, a SARIF result) into a `Record`:
the entities it names (assets, ports, technologies …), the relationships between them, and the
findings (risk observations) it reports. Values are normalized and keys built as the record is
filled, so a bad value fails *this* record, which the importer reports by its place
("line 12", "host 3", "runs[0].results[5]") and either rejects the file or skips (`--skip-invalid`).

Findings are not entities yet: the importer merges repeated observations of one risk (same asset
group and finding name) and combines them with the stored risk's lifecycle before writing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import orjson

from bastion.errors import BastionError, Malformed, ValidationFailed
from bastion.schema.batch import Entity, Relationship, prepare_values
from bastion.schema.keys import build_key
from bastion.schema.kinds import REGISTRY, SEVERITIES
from bastion.schema import normalize as norm

MAX_EVIDENCE = 20  # distinct evidence items kept per risk (matched URLs, file locations …)


class Unplaced(Malformed):
    """A record read whole that names nothing Bastion can file what it says under (no target
    host, URL or address). The importer skips and lists it and imports the rest of the file
    (unless `strict`): a scanner writes such results (a DNS template run without a host) in
    otherwise good output."""


@dataclass(slots=True)
class Invalid:
    """A record that could not be read, or (`unplaced`) was read but cannot be placed: where it
    is and why."""

    where: str
    reason: str
    unplaced: bool = False


@dataclass(slots=True)
class Finding:
    """One observation of a risk on an entity (an asset, a port or a technology)."""

    target: str  # key of the entity the finding sits on
    name: str  # normalized finding name: the CVE when the finding has one, else the rule's id
    severity: str
    title: str | None = None
    cve: str | None = None
    cvss: float | None = None
    evidence: list[str] = field(default_factory=list)
    properties: dict[str, Any] | None = None  # tool-specific details (cwe, tags, references …)


class Record:
    """Everything one input record says, already normalized and keyed."""

    __slots__ = ("where", "entities", "relationships", "findings", "seen", "_keys", "_edges")

    def __init__(self, where: str):
        self.where = where
        # When the tool saw what the record says (the scan's own time): new entities and risks
        # are first seen then, not at the import (a backlog import keeps its SLA dates).
        self.seen: datetime | None = None
        self.entities: list[Entity] = []
        self.relationships: list[Relationship] = []
        self.findings: list[Finding] = []
        self._keys: set[str] = set()
        self._edges: set[tuple[str, str, str]] = set()

    def add(self, kind: str, properties: dict[str, Any] | None = None, **values: Any) -> str:
        """Add an entity (None values are left out) and return its key; a bad value raises.
        An entity the record already has keeps its first mention (a host named by `host` and
        again by `matched-at` is one asset)."""
        given = {k: v for k, v in values.items() if v is not None}
        prepared, key = _prepared(kind, given)
        if key not in self._keys:
            self._keys.add(key)
            self.entities.append(Entity(kind, given, properties or None, None, (prepared, key)))
        return key

    def link(self, kind: str, source: str, target: str, **properties: Any) -> None:
        if (kind, source, target) not in self._edges:
            self._edges.add((kind, source, target))
            self.relationships.append(Relationship(kind, source, target, properties or None))

    def finding(self, target: str, name: str | None, *, severity: str | None, title: str | None = None,
                cve: str | None = None, cvss: float | str | None = None,
                evidence: Iterable[str | None] = (), properties: dict[str, Any] | None = None) -> None:
        """Report a finding on `target` (a key this record added). With a CVE the finding is
        named by it, so every tool that reports that CVE on one asset group adds to one risk."""
        if cve:
            cve = norm.cve(cve)
        label = cve or name
        if not label:
            raise Malformed("finding has neither a name nor a CVE")
        sev = severity_of(severity)
        score = None
        if cvss not in (None, ""):
            try:
                score = float(cvss)
            except (TypeError, ValueError):
                raise Malformed(f"CVSS score {cvss!r} is not a number") from None
            if not 0 <= score <= 10:
                raise Malformed(f"CVSS score {score} is outside 0-10")
        self.findings.append(Finding(
            target, norm.risk_name(label), sev, (title or None) and str(title)[:1000], cve, score,
            [str(e)[:2000] for e in dict.fromkeys(e for e in evidence if e)][:MAX_EVIDENCE],
            properties or None))


_PREPARED: dict[tuple, tuple[dict[str, Any], str]] = {}
_PREPARED_MAX = 100_000


def _prepared(kind: str, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(normalized values, key), remembered: a scan names the same hosts, ports and
    technologies over and over, and validating each mention again was most of the parse time."""
    try:
        memo = (kind, *sorted(given.items()))
        hit = _PREPARED.get(memo)
    except TypeError:  # an unhashable value (a list): no memo
        memo = hit = None
    if hit is None:
        ek = REGISTRY.node_kinds[kind]
        values = prepare_values(ek, given)
        hit = (values, build_key(ek, values))
        if memo is not None:
            if len(_PREPARED) >= _PREPARED_MAX:
                _PREPARED.clear()
            _PREPARED[memo] = hit
    return dict(hit[0]), hit[1]


_SEVERITY_ALIASES = {
    "informational": "info", "information": "info", "none": "info", "unknown": "info", "note": "info",
    "moderate": "medium", "warning": "medium", "important": "high", "error": "high",
    "severe": "high", "crit": "critical",
}


def severity_of(value: Any) -> str:
    """A tool's severity word as one of Bastion's (info … critical); missing means info."""
    if value is None or value == "":
        return "info"
    word = str(value).strip().lower()
    word = _SEVERITY_ALIASES.get(word, word)
    if word not in SEVERITIES:
        raise Malformed(f"unknown severity {value!r}")
    return word


def severity_from_cvss(score: float | None) -> str | None:
    """CVSS v3 qualitative rating of a score."""
    if score is None:
        return None
    return ("critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4
            else "low" if score > 0 else "info")


# -- reading records -------------------------------------------------------------------------

# What a malformed record can raise while a parser reads it: our own errors, and the errors of
# code that meets an unexpected shape (a string where an object was expected …).
RECORD_ERRORS = (BastionError, KeyError, TypeError, AttributeError, ValueError)


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, ValidationFailed):
        return "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason for p in exc.problems)
    if isinstance(exc, KeyError):
        return f"missing member {exc.args[0]!r}"
    if isinstance(exc, (TypeError, AttributeError)):
        return f"unexpected structure ({exc})"
    return str(exc)


def build(where: str, raw: Any, fill: Callable[[Record, Any], None]) -> Record | Invalid:
    """Run a parser's `fill(record, raw)`; a bad record becomes an `Invalid` naming its place."""
    rec = Record(where)
    try:
        fill(rec, raw)
    except Unplaced as exc:
        return Invalid(where, str(exc), unplaced=True)
    except RECORD_ERRORS as exc:
        return Invalid(where, reason_of(exc))
    return rec


def json_lines(stream: io.BufferedReader) -> Iterator[tuple[str, Any]]:
    """(`line N`, decoded value) for each non-blank line; an undecodable line yields an
    `Invalid` as its value. A file that is one JSON array (nuclei `-je`) is streamed element by
    element (`item N`) instead."""
    from bastion.ingest import limits

    if stream.peek(256).lstrip()[:1] == b"[":
        yield from json_array(stream)
        return
    for number, line in limits.lines(stream):  # a line beyond the line limit rejects the file
        if not line.strip():
            continue
        try:
            yield f"line {number}", orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield f"line {number}", Invalid(f"line {number}", f"not valid JSON ({exc})")


def json_array(stream: BinaryIO, prefix: str = "item") -> Iterator[tuple[str, Any]]:
    """Elements of a top-level JSON array, streamed (bounded memory), as (`[N]`, value)."""
    import ijson

    from bastion.ingest import limits

    i = 0
    try:  # nesting beyond the depth limit rejects the file (LimitExceeded)
        for i, item in enumerate(limits.json_items(stream, "item", use_float=True), start=1):
            yield f"{prefix} {i}", item
    except ijson.JSONError as exc:
        yield "end of file", Invalid("file", f"not valid JSON ({limits.excerpt(exc)})")
    except limits.LimitExceeded as exc:
        raise limits.LimitExceeded(f"{prefix} {i + 1}: {exc}") from None


def as_object(where: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Invalid):
        raise Malformed(value.reason)
    if not isinstance(value, dict):
        raise Malformed(f"expected a JSON object, got {type(value).__name__}")
    return value


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text or epoch seconds as an aware UTC datetime (None when missing)."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value).strip().replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"invalid timestamp {value!r}") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def seen_time(value: Any) -> datetime | None:
    """A scanner's own timestamp for `Record.seen`; None when missing or unreadable (it only
    dates what is new, so a bad one is no reason to refuse the record)."""
    try:
        return parse_time(value)
    except (Malformed, ValueError, OverflowError, OSError, TypeError):
        return None


@dataclass(frozen=True)
class Sample:
    """The start of an input, for format detection: its first bytes (decompressed) and, when
    the input is JSON lines or a JSON array, its first value."""

    head: bytes
    first: Any = None
