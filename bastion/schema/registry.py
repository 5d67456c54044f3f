"""The building blocks of Bastion's one declared schema.

`kinds.py` declares every entity and relationship kind with these classes; tables, validation,
keys, CLI options and docs are all derived from those declarations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping


class Classification(str, enum.Enum):
    """How sensitive a field's values are (drives docs, exports and redaction)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class FieldType(str, enum.Enum):
    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"
    JSON = "json"  # lists/objects kept verbatim
    KEY = "key"  # a reference to another entity, stored as its key


@dataclass(frozen=True)
class Field:
    """One typed field of an entity kind."""

    name: str
    type: FieldType = FieldType.STR
    required: bool = False
    domain: tuple[str, ...] | None = None  # allowed values (becomes a CHECK constraint)
    classification: Classification = Classification.INTERNAL
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None
    indexed: bool = False
    default: Any = None
    normalize: Callable[[Any], Any] | None = None  # applied before validation of the domain
    ref_kinds: tuple[str, ...] = ()  # for KEY fields: which kinds the key may name
    description: str = ""

    def __post_init__(self) -> None:
        if self.type is FieldType.KEY and not self.ref_kinds:
            raise TypeError(f"key field {self.name!r} must name ref_kinds")
        if self.default is not None and self.domain and self.default not in self.domain:
            raise TypeError(f"default of {self.name!r} is outside its domain")


@dataclass(frozen=True)
class ImpliedEdge:
    """An edge every entity of a kind has: from the entity its `field` names, to itself."""

    field: str
    relationship: str


@dataclass(frozen=True, eq=False)  # identity hash: kinds are cache keys on the hot path
class EntityKind:
    """An entity kind: its fields, natural-key recipe and derived behaviour.

    `key` lists the fields that make the natural key, in order. A KEY-typed field is embedded
    as the referenced entity's whole key; other fields are escaped components. See docs/keys.md.
    """

    name: str
    description: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    # Cross-field normalization and derived values (e.g. an asset's group from its identifier);
    # takes and returns the item's values, raises InvalidValue on bad input.
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    implies: ImpliedEdge | None = None
    # The tenant kind describes the tenant table itself and is not stored as a graph node.
    node: bool = True
    # How sensitive the free-form `properties` are (a scanner's extra output), and the class of
    # named members that differ (credentials a template matched, request and response bodies).
    properties_classification: Classification = Classification.INTERNAL
    property_classes: tuple[tuple[str, Classification], ...] = ()
    # Fields whose class depends on the record (the value of an attribute named `password`):
    # values → {field: class}, over the declared classes.
    classify: Callable[[Mapping[str, Any]], Mapping[str, Classification]] | None = None

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise TypeError(f"{self.name}: duplicate field names")
        for part in self.key:
            if part not in names:
                raise TypeError(f"{self.name}: key part {part!r} is not a field")
        refs = [p for p in self.key if self.field(p).type is FieldType.KEY]
        if len(refs) > 1:
            raise TypeError(f"{self.name}: at most one key part may be a key reference")

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def has_status(self) -> bool:
        return any(f.name == "status" for f in self.fields)

    def classes(self, values: Mapping[str, Any]) -> dict[str, Classification]:
        """Each field's class for one record (declared, raised by `classify`)."""
        out = {f.name: f.classification for f in self.fields}
        if self.classify is not None:
            out.update(self.classify(values))
        return out

    def property_class(self, name: str) -> Classification:
        return dict(self.property_classes).get(name, self.properties_classification)


@dataclass(frozen=True)
class RelationshipKind:
    """A relationship kind and the (source kind, target kind) pairs it may join."""

    name: str
    description: str
    pairs: frozenset[tuple[str, str]]

    @staticmethod
    def between(sources: Iterable[str], targets: Iterable[str]) -> frozenset[tuple[str, str]]:
        targets = tuple(targets)
        return frozenset((s, t) for s in sources for t in targets)


@dataclass
class Registry:
    """Every declared kind, looked up by name."""

    entities: dict[str, EntityKind] = field(default_factory=dict)
    relationships: dict[str, RelationshipKind] = field(default_factory=dict)

    def add(self, *kinds: EntityKind | RelationshipKind) -> None:
        for kind in kinds:
            table = self.entities if isinstance(kind, EntityKind) else self.relationships
            if kind.name in self.entities or kind.name in self.relationships:
                raise TypeError(f"kind {kind.name!r} declared twice")
            table[kind.name] = kind
        self.__dict__.pop("_node_kinds", None)
        self._check()

    def _check(self) -> None:
        for rel in self.relationships.values():
            for s, t in rel.pairs:
                for k in (s, t):
                    if k not in self.entities:
                        raise TypeError(f"{rel.name}: unknown kind {k!r}")
        for ek in self.entities.values():
            if ek.implies and ek.implies.relationship not in self.relationships:
                raise TypeError(f"{ek.name}: implies unknown relationship")

    @property
    def node_kinds(self) -> dict[str, EntityKind]:
        """Kinds stored as graph nodes (all but tenant). Cached: it sits on the key hot path."""
        cached = self.__dict__.get("_node_kinds")
        if cached is None:
            cached = self.__dict__["_node_kinds"] = {n: k for n, k in self.entities.items() if k.node}
        return cached

    def entity(self, name: str) -> EntityKind:
        return self.entities[name]

    def relationship(self, name: str) -> RelationshipKind:
        return self.relationships[name]

    def triples(self) -> list[tuple[str, str, str]]:
        """(relationship, source kind, target kind) for every allowed edge, sorted."""
        return sorted((r.name, s, t) for r in self.relationships.values() for s, t in r.pairs)

    def domains(self) -> Mapping[tuple[str, str], tuple[str, ...]]:
        return {
            (k.name, f.name): f.domain
            for k in self.entities.values()
            for f in k.fields
            if f.domain
        }
