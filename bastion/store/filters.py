"""One filter syntax for every list (the CLI's `--where`, later the HTTP API).

`parse(kind, ["severity>=high", "status=open,triage", "~ssh", "first_seen>=-7d"])` turns
expressions into a `Filter`: a conjunction of typed conditions, checked against the schema
registry (unknown field or bad value → one `InvalidValue` naming the expression and the field).
The store applies a filter in SQL (`Filter.clause`); `Filter.matches` is the same test in Python.

Lists whose rows are not entities (import runs, events, coverage rows …) declare their filterable
fields as a `Rows` and filter with the same syntax in Python: `parse_rows(rows, expressions)`
gives a `RowFilter` whose `matches(row)` tests one row's dict form.

Grammar (docs/cli.md#filters):

    expression = ["!"] ( field op value | "~" text | "q=" text )
    op         = "=" | "!=" | ">" | ">=" | "<" | "<=" | "~"

- `field=a,b` is any of the values (`\\,` for a comma inside a value); the same field given
  twice with `=` also means any of them;
- `>`, `>=`, `<`, `<=` compare numbers, times, and fields with a declared domain in the
  domain's order (`severity>=high` is high or critical);
- `field~text` is a case-insensitive substring of a text field; `~text` / `q=text` searches the
  kind's title and name (its key when it has neither);
- times are ISO 8601 dates or times (UTC when no zone is given) or relative to now: `-7d`,
  `-12h`, `-30m`, `-2w`;
- values are normalized as the write path normalizes them (`cve=cve-2018-15473` finds
  CVE-2018-15473, keys are canonicalized);
- `!` negates an expression; a missing (NULL) value never matches a condition, so it matches
  its negation (`cvss!=5` includes risks without a CVSS score).

Case-insensitive means ASCII letters on both engines (SQLite's LIKE folds only those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import and_, false, func, not_, or_, true
from sqlalchemy.sql import ColumnElement

from bastion.errors import InvalidValue
from bastion.schema import normalize as norm
from bastion.schema.keys import build_key, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import EntityKind, Field, FieldType

NODE_FIELDS = {"key": FieldType.KEY, "first_seen": FieldType.DATETIME,
               "last_seen": FieldType.DATETIME, "updated_at": FieldType.DATETIME}
TEXT_FIELDS = ("title", "name")  # what `~text` searches, when the kind has them
ORDER_OPS = (">=", "<=", ">", "<")

_EXPR = re.compile(r"^\s*(?P<neg>!)?\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)?\s*"
                   r"(?P<op>>=|<=|!=|=|>|<|~)(?P<value>.*)$", re.DOTALL)
_RELATIVE = re.compile(r"^-\s*(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Condition:
    """One test: `field op values`; op is in, lt, le, gt, ge, contains or text (title/name
    search, `field` None). `negated` turns it into its complement, NULLs included."""

    field: str | None
    op: str
    values: tuple[Any, ...]
    negated: bool = False
    source: str = ""  # the expression it was parsed from, for messages


@dataclass(frozen=True)
class Filter:
    kind: str
    conditions: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions)

    # -- SQL ------------------------------------------------------------------------------

    def clause(self, table, node, postgres: bool) -> ColumnElement[bool]:
        """The WHERE condition over the kind's typed table joined with `node`."""
        return and_(true(), *(_sql(c, self.kind, table, node, postgres) for c in self.conditions))

    # -- Python ---------------------------------------------------------------------------

    def matches(self, record) -> bool:
        """The same test on a `Record` (bastion.store.store.Record)."""
        ek = REGISTRY.entity(self.kind)
        return all(_test(c, ek, lambda name: _get(record, name)) != c.negated
                   for c in self.conditions)


# -- parsing ----------------------------------------------------------------------------------


def parse(kind: str, expressions: Iterable[str] | Mapping[str, Any] | Filter | None, *,
          now: datetime | None = None) -> Filter:
    """Expressions (or the older `{field: value or [values]}` mapping) into a Filter of `kind`."""
    if isinstance(expressions, Filter):
        if expressions.kind != kind:
            raise InvalidValue(f"a filter of {expressions.kind} cannot select {kind} entities")
        return expressions
    ek = REGISTRY.node_kinds.get(kind)
    if ek is None:
        raise InvalidValue(f"unknown kind {kind!r}; kinds: {', '.join(REGISTRY.node_kinds)}")
    now = now or datetime.now(timezone.utc)
    conditions: list[Condition] = []
    if isinstance(expressions, Mapping):
        for name, value in expressions.items():
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            ftype, f = _field(ek, name, f"{name}=…")
            conditions.append(Condition(name, "in", tuple(
                x for v in values for x in _values(ek, name, ftype, f, v, now)), source=f"{name}=…"))
    else:
        for expr in expressions or ():
            conditions.append(_parse_one(ek, expr, now))
    return Filter(kind, _merge(conditions))


def _merge(conditions: list[Condition]) -> tuple[Condition, ...]:
    """`f=a` and `f=b` mean either (as `--where` always did): one `in` per field."""
    out: list[Condition] = []
    at: dict[str, int] = {}
    for c in conditions:
        if c.op == "in" and not c.negated and c.field in at:
            prev = out[at[c.field]]
            out[at[c.field]] = Condition(c.field, "in", prev.values + c.values, False, prev.source)
            continue
        if c.op == "in" and not c.negated:
            at[c.field] = len(out)
        out.append(c)
    return tuple(out)


def _parse_one(ek: EntityKind, expr: str, now: datetime) -> Condition:
    if not isinstance(expr, str):
        raise InvalidValue(f"filter {expr!r}: expected text such as severity>=high")
    m = _EXPR.match(expr)
    if m is None:
        raise InvalidValue(f"filter {expr!r}: expected FIELD=VALUE, FIELD>VALUE, FIELD~TEXT or ~TEXT")
    negated, name, op, raw = bool(m["neg"]), m["field"], m["op"], m["value"]
    if name is None or (name == "q" and op == "=" and "q" not in ek.field_names):
        if op not in ("~", "="):
            raise InvalidValue(f"filter {expr!r}: expected FIELD=VALUE, FIELD>VALUE, FIELD~TEXT or ~TEXT")
        text = raw.strip()
        if not text:
            raise InvalidValue(f"filter {expr!r}: nothing to search for")
        if isinstance(ek, Rows) and not ek.text:
            raise InvalidValue(f"filter {expr!r}: {ek.name} rows have no text to search; "
                               "name a field: " + ", ".join(ek.field_names))
        return Condition(None, "text", (text,), negated, expr)
    ftype, f = _field(ek, name, expr)
    if op == "!=":
        negated, op = not negated, "="
    if op == "~":
        if ftype not in (FieldType.STR, FieldType.KEY):
            raise InvalidValue(f"filter {expr!r}: {ek.name}.{name} is not text; ~ searches text")
        text = raw.strip()
        if not text:
            raise InvalidValue(f"filter {expr!r}: nothing to search for")
        return Condition(name, "contains", (text,), negated, expr)
    if op == "=":
        values = tuple(x for v in _split(raw) for x in _values(ek, name, ftype, f, v, now))
        return Condition(name, "in", values, negated, expr)
    ordered = ftype in (FieldType.INT, FieldType.FLOAT, FieldType.DATETIME) or (f and f.domain)
    if not ordered:
        raise InvalidValue(f"filter {expr!r}: {ek.name}.{name} cannot be compared with {op}; "
                           "only numbers, times and fields with a list of values can")
    value = _value(ek, name, ftype, f, raw, now)
    return Condition(name, {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}[op], (value,), negated, expr)


def _split(raw: str) -> list[str]:
    parts = re.split(r"(?<!\\),", raw)
    return [p.replace("\\,", ",") for p in parts]


def _field(ek: EntityKind, name: str, expr: str) -> tuple[FieldType, Field | None]:
    if name in ek.field_names:
        f = ek.field(name)
        if f.type is FieldType.JSON:
            raise InvalidValue(f"filter {expr!r}: {ek.name}.{name} holds lists or objects and "
                               "cannot be filtered on")
        return f.type, f
    node_fields = NODE_FIELDS if isinstance(ek, EntityKind) else {}
    if name in node_fields:
        return node_fields[name], None
    filterable = [n for n in ek.field_names if ek.field(n).type is not FieldType.JSON]
    raise InvalidValue(f"{ek.name} has no field {name!r}; fields: "
                       + ", ".join([*filterable, *node_fields]))


def _values(ek: EntityKind, name: str, ftype: FieldType, f: Field | None, raw: Any,
            now: datetime) -> list[Any]:
    """The stored forms one `=` value can match: a key as given and as the write path spells
    it (a key is matched as given too: an opaque cloud id may look like a DNS name)."""
    if ftype is FieldType.KEY:
        key = str(raw).strip()
        return list(dict.fromkeys([key, canonical_key(key)]))
    return [_value(ek, name, ftype, f, raw, now)]


def _value(ek: EntityKind, name: str, ftype: FieldType, f: Field | None, raw: Any,
           now: datetime) -> Any:
    """A filter value in the stored form of the field; InvalidValue naming the field if bad."""
    where = f"{ek.name}.{name}"
    text = raw.strip() if isinstance(raw, str) else raw
    try:
        if ftype is FieldType.INT:
            return text if isinstance(text, int) and not isinstance(text, bool) else int(str(text))
        if ftype is FieldType.FLOAT:
            if isinstance(text, bool):
                raise ValueError
            return float(text)
    except ValueError:
        raise InvalidValue(f"{where}: {raw!r} is not a number") from None
    if ftype is FieldType.BOOL:
        if isinstance(text, bool):
            return text
        low = str(text).lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise InvalidValue(f"{where}: {raw!r} is not true or false")
    if ftype is FieldType.DATETIME:
        return parse_time(text, where, now)
    value = normalize_value(ek, name, text)
    if f is not None and f.domain and value not in f.domain:
        raise InvalidValue(f"{where} cannot be {value!r}; one of: " + ", ".join(f.domain))
    return value


def parse_time(value: Any, where: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or time (UTC unless it names a zone), or `-7d`/`-12h`/`-30m`/`-2w`/`-10s`
    before `now`."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).strip()
    m = _RELATIVE.match(text)
    if m:
        return (now or datetime.now(timezone.utc)) - timedelta(**{_UNITS[m[2]]: int(m[1])})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise InvalidValue(f"{where}: {value!r} is not a time (2026-01-01, 2026-01-01T12:00:00Z "
                           "or relative: -7d, -12h)") from None
    if len(text) == 10:  # a date: its midnight, UTC
        when = datetime.combine(when.date(), time(), timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# -- normalization like the write path ---------------------------------------------------------


def _group(value: str) -> str:
    """An asset group as the write path spells it: a canonical address or DNS name, else
    lower-case (cloud accounts, repository owners)."""
    if norm.ip_version(value):
        return norm.ip_address(value)
    try:
        return norm.dns_name(value)
    except InvalidValue:
        return norm.lower(value)


def normalize_value(ek: EntityKind, name: str, value: Any) -> Any:
    """`value` of field `name` as the write path would store it: the field's normalizer, then
    the kind's preparation given that field alone (e.g. a risk's `cve` upper-cased)."""
    f = ek.field(name)
    try:
        if f.normalize is not None:
            value = f.normalize(value)
        if name == "group" and isinstance(ek, EntityKind):
            return _group(str(value))
        if ek.prepare is not None:
            prepared = ek.prepare({name: value})
            if name in prepared:
                value = prepared[name]
    except InvalidValue as exc:
        raise InvalidValue(f"{ek.name}.{name}: {exc}") from None
    return value


def canonical_key(key: str) -> str:
    """The key the write path would have built for the entity `key` names (`#asset#WWW.Example
    .com#WWW.Example.com` → `#asset#www.example.com#www.example.com`); a key whose parts cannot
    be normalized comes back unchanged. Raises InvalidValue for a malformed key."""
    parsed = parse_key(key)
    try:
        return _canonical(parsed)
    except (InvalidValue, KeyError, ValueError, TypeError):
        return key


def _canonical(parsed) -> str:
    ek = REGISTRY.entity(parsed.kind)
    values: dict[str, Any] = {}
    for name, part in parsed.parts.items():
        f = ek.field(name)
        if f.type is FieldType.KEY:
            values[name] = _canonical(parsed.ref)
        elif f.type is FieldType.INT:
            values[name] = int(part)
        elif name == "group":
            values[name] = _group(part)
        else:
            values[name] = f.normalize(part) if f.normalize is not None else part
    if ek.prepare is not None:
        derived = ek.prepare(dict(values))
        # Derived parts (an asset's group from its identifier) follow the identifier; a part the
        # key spells out and the preparation does not derive keeps its normalized spelling.
        values = {n: derived.get(n, values[n]) for n in values}
    return build_key(ek, values)


# -- SQL and Python evaluation -----------------------------------------------------------------


def _column(name: str, table, node):
    return node.c[name] if name in NODE_FIELDS and name not in table.c else table.c[name]


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + _ascii_lower(escaped) + "%"


def _ascii_lower(text: str) -> str:
    return text.translate(str.maketrans(_UPPER, _LOWER))


def _contains(col, text: str, postgres: bool) -> ColumnElement[bool]:
    # SQLite's LIKE folds ASCII letters only; PostgreSQL folds the same letters via translate(),
    # so both engines (and Filter.matches) agree on every text.
    folded = func.translate(col, _UPPER, _LOWER) if postgres else col
    return and_(col.is_not(None), folded.like(_like_pattern(text), escape="\\"))


def _slice(domain: tuple[str, ...], op: str, value: str) -> list[str]:
    """The values of an ordered domain that `op value` selects."""
    i = domain.index(value)
    return list({"gt": domain[i + 1:], "ge": domain[i:], "lt": domain[:i], "le": domain[:i + 1]}[op])


def _domain(ek, name: str) -> tuple[str, ...] | None:
    return ek.field(name).domain if name in ek.field_names else None


def _text_fields(ek) -> tuple[str, ...]:
    if isinstance(ek, Rows):
        return ek.text
    return tuple(n for n in TEXT_FIELDS if n in ek.field_names) or ("key",)


def _sql(c: Condition, kind: str, table, node, postgres: bool) -> ColumnElement[bool]:
    ek = REGISTRY.entity(kind)
    if c.op == "text":
        cols = [_column(n, table, node) for n in _text_fields(ek)]
        cond = or_(*(_contains(col, c.values[0], postgres) for col in cols))
    else:
        col = _column(c.field, table, node)
        if c.op == "contains":
            cond = _contains(col, c.values[0], postgres)
        elif c.op == "in":
            cond = and_(col.is_not(None), col.in_(list(c.values)))
        elif domain := _domain(ek, c.field):
            allowed = _slice(domain, c.op, c.values[0])
            cond = and_(col.is_not(None), col.in_(allowed)) if allowed else false()
        else:
            v = c.values[0]
            cmp = {"gt": col > v, "ge": col >= v, "lt": col < v, "le": col <= v}[c.op]
            cond = and_(col.is_not(None), cmp)
    return not_(cond) if c.negated else cond


def _get(record, name: str) -> Any:
    if name in record.values:
        return record.values[name]
    return record.key if name == "key" else getattr(record, name)


def _each(value: Any) -> list[Any]:
    """The values a condition is tested on: a list-valued row field (a technique's tactics)
    matches when one of its elements does."""
    return [v for v in value if v is not None] if isinstance(value, (list, tuple)) else \
        ([] if value is None else [value])


def _test(c: Condition, ek, get) -> bool:
    """Condition `c` (not negated) on one row: `get(name)` is a field's value."""
    if c.op == "text":
        needle = _ascii_lower(c.values[0])
        return any(needle in _ascii_lower(str(v)) for n in _text_fields(ek) for v in _each(get(n)))
    values = _each(get(c.field))
    if c.op == "contains":
        return any(_ascii_lower(c.values[0]) in _ascii_lower(str(v)) for v in values)
    if c.op == "in":
        return any(v in c.values for v in values)
    if domain := _domain(ek, c.field):
        allowed = _slice(domain, c.op, c.values[0])
        return any(v in allowed for v in values)
    w = c.values[0]
    return any({"gt": v > w, "ge": v >= w, "lt": v < w, "le": v <= w}[c.op] for v in values)


# -- rows that are not entities -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rows:
    """The shape of a list whose rows are not entities (import runs, events, coverage rows …):
    its CSV `columns` in order, the `fields` a filter may name (registry `Field`s: their type;
    a domain lists the allowed values in order, so `severity>=high` compares in that order;
    `normalize` spells a value as the rows do) and the fields `~text` searches."""

    name: str
    columns: tuple[str, ...]
    fields: tuple[Field, ...]
    text: tuple[str, ...] = ()
    prepare = None  # the parser treats a Rows like an EntityKind without a preparation

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


@dataclass(frozen=True)
class RowFilter:
    rows: Rows
    conditions: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether `row` (a list row's dict form) passes every condition."""
        return all(_test(c, self.rows, row.get) != c.negated for c in self.conditions)

    def select(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        """The rows that match, lazily (a streamed list stays streamed)."""
        return (row for row in rows if self.matches(row))


def parse_rows(rows: Rows, expressions: Iterable[str] | None, *,
               now: datetime | None = None) -> RowFilter:
    """Expressions in the one syntax into a filter of `rows` (InvalidValue naming the
    expression and the field when one does not fit)."""
    now = now or datetime.now(timezone.utc)
    return RowFilter(rows, _merge([_parse_one(rows, expr, now) for expr in expressions or ()]))
