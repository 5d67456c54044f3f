"""The normalized batch: what parsers and the CLI hand to the store, and its validation.

Validation is derived from the registry: one Pydantic model per entity kind checks types,
required fields, value domains, ranges and lengths; kind-specific preparation normalizes values
and derives key parts. `validate()` returns a `PreparedBatch` or raises `ValidationFailed`
naming every bad item's position, field and reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import Any, Literal, Optional

import orjson
from pydantic import BaseModel, ConfigDict, Field as PydField, ValidationError, create_model

from bastion.errors import InvalidValue, Problem, ValidationFailed
from bastion.schema.keys import build_key, kind_of, node_id, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import EntityKind, FieldType

_PY_TYPES = {
    FieldType.STR: str,
    FieldType.INT: int,
    FieldType.FLOAT: float,
    FieldType.BOOL: bool,
    FieldType.DATETIME: datetime,
    FieldType.JSON: Any,
    FieldType.KEY: str,
}


@cache
def model_for(kind: EntityKind) -> type[BaseModel]:
    """The Pydantic model of one entity kind, built from its declaration."""
    fields: dict[str, Any] = {}
    for f in kind.fields:
        py = Literal[f.domain] if f.domain else _PY_TYPES[f.type]
        constraints = {}
        if f.max_length and f.type is FieldType.STR:
            constraints["max_length"] = f.max_length
        if f.ge is not None:
            constraints["ge"] = f.ge
        if f.le is not None:
            constraints["le"] = f.le
        if f.required and f.default is None:
            fields[f.name] = (py, PydField(**constraints))
        elif f.required:  # always stored, but filled in when not given
            fields[f.name] = (py, PydField(default=f.default, **constraints))
        else:
            fields[f.name] = (Optional[py], PydField(default=f.default, **constraints))
    return create_model(
        f"{kind.name.title()}Values",
        __config__=ConfigDict(extra="forbid", str_strip_whitespace=True),
        **fields,
    )


@dataclass
class Entity:
    kind: str
    values: dict[str, Any]
    properties: dict[str, Any] | None = None
    expected_version: int | None = None  # optimistic concurrency: fail unless current
    # (normalized values, key) when Batch.add already prepared them; saves doing it twice.
    prepared: tuple[dict[str, Any], str] | None = field(default=None, repr=False, compare=False)
    note: str | None = None  # why it changed, kept on the event (e.g. "re-opened: seen again by nuclei")
    # When the source saw it (a scan's own time): a new node's first_seen is the earlier of this
    # and the write's `at`, so a backlog import dates it (and its SLA) from the scan, not today.
    first_seen: datetime | None = None


@dataclass
class Relationship:
    kind: str
    source: str  # entity key
    target: str
    properties: dict[str, Any] | None = None


@dataclass
class Batch:
    """Entities and relationships for one tenant, applied all-or-nothing."""

    entities: list[Entity] = field(default_factory=list)
    relationships: list[Relationship] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # keys of entities to delete
    unlinks: list[Relationship] = field(default_factory=list)  # edges to remove

    def add(self, kind: str, properties: dict | None = None, *, expected_version: int | None = None,
            note: str | None = None, **values: Any) -> str:
        """Add an entity and return its key; raises ValidationFailed for invalid values."""
        ek = _entity_kind(kind)
        prepared = prepare_values(ek, values)
        key = build_key(ek, prepared)
        self.entities.append(Entity(kind, values, properties, expected_version, (prepared, key), note))
        return key

    def link(self, kind: str, source: str, target: str, **properties: Any) -> None:
        self.relationships.append(Relationship(kind, source, target, properties or None))

    def __len__(self) -> int:
        return len(self.entities) + len(self.relationships) + len(self.deletes) + len(self.unlinks)


@dataclass(slots=True)
class PreparedEntity:
    kind: EntityKind
    key: str
    id: int
    values: dict[str, Any]
    properties: dict[str, Any] | None
    content_hash: bytes
    expected_version: int | None
    note: str | None = None
    first_seen: datetime | None = None  # Entity.first_seen


@dataclass(slots=True)
class PreparedEdge:
    kind: str
    source: str
    target: str
    source_id: int
    target_id: int
    source_kind: str
    target_kind: str
    properties: dict[str, Any] | None

    @property
    def ident(self) -> tuple[int, str, int]:
        return (self.source_id, self.kind, self.target_id)


@dataclass
class PreparedBatch:
    entities: dict[str, PreparedEntity]  # by key; a key given twice keeps the last values
    edges: dict[tuple[int, str, int], PreparedEdge]
    deletes: list[str]
    unlinks: dict[tuple[int, str, int], PreparedEdge]


def _json_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def content_hash(values: dict[str, Any], properties: dict[str, Any] | None) -> bytes:
    return _hash(_canonical(values, properties))


def _canonical(values: dict[str, Any], properties: dict[str, Any] | None) -> bytes:
    return orjson.dumps([values, properties], option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
                        | orjson.OPT_NAIVE_UTC, default=_json_default)


def _hash(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


NUL_REASON = "contains a NUL character (U+0000), which Bastion does not store"


def nul_fields(value: Any, path: str = "") -> list[str]:
    """Where text (a string, or a key of a mapping) holds a NUL character: PostgreSQL refuses
    it in text and JSON, SQLite would keep it, so both engines refuse the item alike."""
    if isinstance(value, str):
        return [path or "value"] if "\x00" in value else []
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and "\x00" in k:
                out.append(sub.replace("\x00", "\\u0000"))
            out.extend(nul_fields(v, sub))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out.extend(nul_fields(v, f"{path}[{i}]"))
    return out


def _nul_problems(where: str, values, props, note, blob: bytes | None = None) -> list[Problem]:
    """NUL characters in an item's values, properties or note (`blob`, its canonical JSON, has
    `\\u0000` wherever one could be: the exact walk runs only then)."""
    if blob is not None and b"u0000" not in blob and not (note and "\x00" in note):
        return []
    fields = nul_fields(values) + [f"properties.{f}" for f in nul_fields(props or {})]
    if note and "\x00" in note:
        fields.append("note")
    return [Problem(where, f, NUL_REASON) for f in fields]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@cache
def _plan(kind: EntityKind) -> tuple[tuple, tuple, tuple]:
    """Per kind, once: the fields to normalize, the key references to check, the datetimes."""
    return (tuple((f.name, f.normalize) for f in kind.fields if f.normalize is not None),
            tuple(f for f in kind.fields if f.type is FieldType.KEY),
            tuple(f.name for f in kind.fields if f.type is FieldType.DATETIME))


def prepare_values(kind: EntityKind, values: dict[str, Any]) -> dict[str, Any]:
    """Normalize, derive and validate one entity's values; raises ValidationFailed('item')."""
    problems: list[Problem] = []
    v = dict(values)
    normalizers, refs, datetimes = _plan(kind)
    for name, normalize in normalizers:
        raw = v.get(name)
        if raw is not None:
            try:
                v[name] = normalize(raw)
            except InvalidValue as exc:
                problems.append(Problem("item", name, str(exc)))
    for f in refs:
        raw = v.get(f.name)
        if raw is None:
            continue
        try:
            ref = parse_key(raw).kind
        except InvalidValue as exc:
            problems.append(Problem("item", f.name, str(exc)))
            continue
        if ref not in f.ref_kinds:
            allowed = ", ".join(f.ref_kinds)
            problems.append(Problem("item", f.name, f"must name a {allowed}, not a {ref}"))
    problems.extend(_nul_problems("item", v, None, None))
    if problems:
        raise ValidationFailed(problems)
    if kind.prepare is not None:
        try:
            v = kind.prepare(v)
        except InvalidValue as exc:
            raise ValidationFailed([Problem("item", exc.field, str(exc))]) from None
    try:
        out = model_for(kind).model_validate(v).__dict__.copy()
    except ValidationError as exc:
        raise ValidationFailed([_problem(kind, err) for err in exc.errors()]) from None
    for name in datetimes:
        if out.get(name) is not None:
            out[name] = _utc(out[name])
    return out


def _problem(kind: EntityKind, err: dict[str, Any]) -> Problem:
    loc = err.get("loc") or ()
    fieldname = str(loc[0]) if loc else None
    error = err.get("type")
    if error == "missing":
        reason = "required field is missing"
    elif error == "extra_forbidden":
        reason = "unknown field"
    elif error == "literal_error" and fieldname:
        allowed = ", ".join(kind.field(fieldname).domain or ())
        reason = f"value {err.get('input')!r} is not one of: {allowed}"
    else:
        reason = err.get("msg", "invalid value")
    return Problem("item", fieldname, reason)


def key_for(kind: str, **values: Any) -> str:
    """The key of the entity these values describe (normalized as the store would)."""
    ek = _entity_kind(kind)
    return build_key(ek, prepare_values(ek, values))


def _entity_kind(name: str) -> EntityKind:
    kind = REGISTRY.node_kinds.get(name)
    if kind is None:
        raise ValidationFailed([Problem("item", "kind", f"unknown entity kind {name!r}")])
    return kind


def _prepare_edge(rel: Relationship, known: dict[str, Any] | None = None) -> PreparedEdge:
    """`known`: keys this batch already built and validated (no need to parse them again)."""
    rk = REGISTRY.relationships.get(rel.kind)
    if rk is None:
        raise InvalidValue(f"unknown relationship kind {rel.kind!r}")
    sk, tk = kind_of(rel.source), kind_of(rel.target)
    ids = []
    for key in (rel.source, rel.target):
        entity = known.get(key) if known is not None else None
        if entity is None:
            parse_key(key)
            ids.append(node_id(key))
        else:
            ids.append(entity.id)
    if (sk, tk) not in rk.pairs:
        raise InvalidValue(f"{rel.kind} cannot join a {sk} to a {tk}")
    return PreparedEdge(rel.kind, rel.source, rel.target, ids[0], ids[1], sk, tk,
                        rel.properties or None)


def validate(batch: Batch) -> PreparedBatch:
    """Validate and normalize a whole batch; collects every problem before failing."""
    problems: list[Problem] = []
    entities: dict[str, PreparedEntity] = {}
    edges: dict[tuple[int, str, int], PreparedEdge] = {}

    def fail(where: str, exc: Exception) -> None:
        if isinstance(exc, ValidationFailed):
            problems.extend(Problem(where, p.field, p.reason) for p in exc.problems)
        else:
            problems.append(Problem(where, None, str(exc)))

    for i, item in enumerate(batch.entities):
        where = f"item {i + 1} ({item.kind})"
        try:
            kind = _entity_kind(item.kind)
            if item.prepared is not None:
                values, key = item.prepared
            else:
                values = prepare_values(kind, item.values)
                key = build_key(kind, values)
        except (ValidationFailed, InvalidValue) as exc:
            fail(where, exc)
            continue
        props = item.properties or None
        blob = _canonical(values, props)
        nul = _nul_problems(where, values, props, item.note, blob)
        if nul:
            problems.extend(nul)
            continue
        entities[key] = PreparedEntity(kind, key, node_id(key), values, props,
                                       _hash(blob), item.expected_version, item.note,
                                       item.first_seen)
        if kind.implies is not None:  # both ends already validated: no parsing needed
            parent = values[kind.implies.field]
            edge = PreparedEdge(kind.implies.relationship, parent, key, node_id(parent),
                                entities[key].id, kind_of(parent), kind.name, None)
            edges.setdefault(edge.ident, edge)
    for i, rel in enumerate(batch.relationships):
        where = f"relationship {i + 1} ({rel.kind})"
        if rel.properties and nul_fields(rel.properties):
            problems.extend(Problem(where, f"properties.{f}", NUL_REASON)
                            for f in nul_fields(rel.properties))
            continue
        try:
            edge = _prepare_edge(rel, entities)
        except InvalidValue as exc:
            fail(where, exc)
            continue
        edges[edge.ident] = edge
    unlinks: dict[tuple[int, str, int], PreparedEdge] = {}
    for i, rel in enumerate(batch.unlinks):
        try:
            edge = _prepare_edge(rel)
        except InvalidValue as exc:
            fail(f"unlink {i + 1} ({rel.kind})", exc)
            continue
        unlinks[edge.ident] = edge
    for i, key in enumerate(batch.deletes):
        try:
            parse_key(key)
        except InvalidValue as exc:
            fail(f"delete {i + 1}", exc)
    if problems:
        raise ValidationFailed(problems)
    return PreparedBatch(entities, edges, list(dict.fromkeys(batch.deletes)), unlinks)

