"""Bastion's simple detection format, CSV or JSON (docs/coverage.md#simple-format).

CSV: a header row with the columns `rule_id,name,type,service,status,technique,confidence,owner`
(`rule_id` required; optional extra columns `level`, `raw`), one row per mapping, several rows per
rule; a row with an empty `technique` is a detection without a stated mapping.

JSON: a list of objects (or `{"detections": [...]}`) with the same fields, where `technique` may
be a string or `techniques` a list of ids or of `{"id", "confidence", "rationale"}` objects, and
`raw` may be text or any JSON value (an EventBridge event pattern, a query …). The output of
`aws events list-rules` (`{"Rules": [{"Name", "Arn", "EventPattern", "State"}]}`) is read too:
one event_pattern detection per rule.

Stated mappings: method analyst, confidence as given (default 1.0), mapped_by `import:simple`.
`raw` is the `raw` value when given, else the canonical JSON of the rule's rows.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterator

import orjson

from bastion.coverage.importers import Invalid, Malformed, Mapped, Parsed
from bastion.ingest import limits

NAME = "simple"
DESCRIPTION = "Bastion's simple CSV/JSON detection format"
SUFFIXES = (".csv", ".json")
COLUMNS = ("rule_id", "name", "type", "service", "status", "technique", "confidence", "owner")
OPTIONAL = ("level", "raw")
TYPES = ("sigma_rule", "cloud_control", "log_query", "event_pattern", "metric_alarm", "other")


def sniff(name: str, head: bytes) -> bool:
    text = head.lstrip()
    if text[:1] in (b"[", b"{"):
        return b'"rule_id"' in head or b'"Rules"' in head or b'"detections"' in head
    first = text.split(b"\n", 1)[0].decode("utf-8", "replace").lower()
    return "rule_id" in [c.strip() for c in first.split(",")]


def parse(path: Path, text: str, where: str) -> Iterator[Parsed | Invalid]:
    stripped = text.lstrip()
    if stripped[:1] in ("[", "{"):
        rows = list(_json_rows(stripped))
    else:
        rows = list(_csv_rows(text))
    grouped: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for place, row in rows:
        if isinstance(row, Invalid):
            yield row
            continue
        rule_id = str(row.get("rule_id") or "").strip()
        if not rule_id:
            yield Invalid(place, "rule_id is missing")
            continue
        grouped.setdefault(rule_id, []).append((place, row))
    for rule_id, items in grouped.items():
        yield _detection(rule_id, items, where)


def _csv_rows(text: str) -> Iterator[tuple[str, Any]]:
    reader = limits.csv_reader(io.StringIO(text), dicts=True)
    try:
        yield from _csv_dicts(reader)
    except csv.Error as exc:  # a field beyond the limit, a bad quote: the file, not a traceback
        raise limits.csv_error(exc, reader.reader.line_num) from None


def _csv_dicts(reader) -> Iterator[tuple[str, Any]]:
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in COLUMNS + OPTIONAL]
    if "rule_id" not in header:
        raise Malformed("CSV without a rule_id column (columns: " + ",".join(COLUMNS) + ")")
    if unknown:
        raise Malformed(f"unknown CSV column(s): {', '.join(unknown)} (columns: "
                        + ",".join(COLUMNS + OPTIONAL) + ")")
    for row in reader:
        place = f"line {reader.line_num}"
        clean = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
        clean = {k: v for k, v in clean.items() if v not in (None, "")}
        if None in row:
            yield place, Invalid(place, "more values than columns")
            continue
        yield place, clean


def _json_rows(text: str) -> Iterator[tuple[str, Any]]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("Rules"), list):
        for i, rule in enumerate(doc["Rules"]):
            place = f"Rules[{i}]"
            if not isinstance(rule, dict):
                yield place, Invalid(place, "not a JSON object")
                continue
            yield place, _eventbridge(rule)
        return
    if isinstance(doc, dict) and isinstance(doc.get("detections"), list):
        doc = doc["detections"]
    if not isinstance(doc, list):
        kind = doc.get("type") if isinstance(doc, dict) else None
        raise Malformed("not a simple detection file: expected a list of detections"
                        + (f" (found a {kind!r} document)" if kind else ""))
    for i, item in enumerate(doc):
        place = f"item {i + 1}"
        if not isinstance(item, dict):
            yield place, Invalid(place, "not a JSON object")
            continue
        yield place, item


def _eventbridge(rule: dict[str, Any]) -> dict[str, Any]:
    pattern = rule.get("EventPattern")
    if isinstance(pattern, str):
        try:
            pattern = orjson.loads(pattern)
        except orjson.JSONDecodeError:
            pass
    state = str(rule.get("State") or "ENABLED").upper()
    return {"rule_id": rule.get("Arn") or rule.get("Name"), "name": rule.get("Name"),
            "type": "event_pattern", "service": "eventbridge",
            "status": "enabled" if state.startswith("ENABLED") else "disabled",
            "raw": pattern if pattern is not None else rule}


def _detection(rule_id: str, items: list[tuple[str, dict[str, Any]]], where: str) -> Parsed | Invalid:
    place = items[0][0]
    first: dict[str, Any] = {}
    for _p, row in items:
        for k, v in row.items():
            if v not in (None, "") and k not in first:
                first[k] = v
    kind = str(first.get("type") or "other").strip().lower()
    if kind not in TYPES:
        return Invalid(place, f"type: {kind!r} is not one of {', '.join(TYPES)}")
    mappings: dict[str, Mapped] = {}
    for p, row in items:
        stated: list[Any] = []
        if row.get("technique"):
            stated.append({"id": row["technique"], "confidence": row.get("confidence"),
                           "rationale": row.get("rationale")})
        techniques = row.get("techniques") or []
        if not isinstance(techniques, list):
            return Invalid(p, "techniques: must be a list")
        stated.extend(t if isinstance(t, dict) else {"id": t} for t in techniques)
        for t in stated:
            tid = str(t.get("id") or "").strip()
            if not tid:
                return Invalid(p, "technique without an id")
            conf = t.get("confidence")
            try:
                conf = 1.0 if conf in (None, "") else float(conf)
            except (TypeError, ValueError):
                return Invalid(p, f"confidence {conf!r} is not a number")
            if not 0 <= conf <= 1:
                return Invalid(p, f"confidence {conf} is outside 0-1")
            mappings[tid.upper()] = Mapped(tid, conf, "analyst", "import:simple",
                                           (str(t["rationale"])[:2000] if t.get("rationale") else None))
    raw = first.get("raw")
    if raw is None:
        raw = orjson.dumps([row for _p, row in items], option=orjson.OPT_SORT_KEYS).decode()
    elif not isinstance(raw, str):
        raw = orjson.dumps(raw).decode()
    status = str(first.get("status") or "enabled").strip().lower()
    return Parsed(where=f"rule {rule_id}", rule_id=rule_id, raw=raw, type=kind,
                  name=str(first["name"])[:500] if first.get("name") else None,
                  service=str(first["service"])[:100] if first.get("service") else None,
                  status=status, level=str(first["level"]).lower() if first.get("level") else None,
                  owner=str(first["owner"])[:200] if first.get("owner") else None,
                  source_path=where, mappings=list(mappings.values()))
