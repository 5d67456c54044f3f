"""The JSON graph format (docs/graph.md): what `bastion import --format graph` reads and
`bastion graph export --format json` writes.

Reading is two steps. `parse_document` checks one document on its own (shape, kinds, field
values, relationship pairs) and resolves every node and node reference to a key; every problem is
reported with the document's name and the position of the bad item (`graph.json:
nodes[3].name: …`). `plan_batch` then combines documents into one `Batch` against a tenant:
references to nodes outside the documents must already be stored, and (unless replacing) nodes
and edges are merged with what is stored, so a CMDB export that only names an asset does not reset
what the scanners recorded about it. `import_documents` applies that batch all-or-nothing.

Writing (`export_document`) lists a subgraph's entities with their stored values and its edges
with their properties, plus the entities their keys reference (a port's asset, a risk's target),
so that importing the export into an empty tenant reproduces exactly those nodes and edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import orjson

from bastion.errors import InvalidValue, Problem, ValidationFailed
from bastion.schema.batch import Batch, Entity, Relationship, prepare_values
from bastion.schema.keys import build_key, kind_of, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import EntityKind, FieldType

if TYPE_CHECKING:  # only for annotations: the format itself needs no store
    from bastion.store.store import Record, TenantStore
    from bastion.store.traversal import Subgraph
    from bastion.store.writer import ApplyResult

FORMAT = "bastion-graph"
VERSION = 1
SOURCE = "import:graph"  # the default `source` of the events an import writes
TAG = "tag"  # tags are attribute entities with this name
# "name" stands for the identifying field of kinds whose identifier is not called "name"
# (when that field is not given as well: an asset's "name" is otherwise its display name).
NAME_ALIASES = {"asset": "identifier", "seed": "identifier"}
MAX_PROBLEMS = 50  # reported per import; a file of 10 000 bad lines needs no 10 000 lines back

_TOP_KEYS = ("format", "version", "root", "depth", "nodes", "edges")
_NODE_META = ("kind", "key", "properties", "tags", "distance")
_EDGE_KEYS = ("kind", "from", "to", "properties")
_TEXT_TYPES = (FieldType.STR, FieldType.KEY, FieldType.DATETIME)
# Required fields the kinds' `prepare` derives from others (kinds.py): when the field they come
# from is missing they are missing too, and saying so would only add noise.
_DERIVED = {"asset": ("class", "group"), "risk": ("group",), "seed": ("class",)}

# The format mixes a node's fields with these member names, so no kind may declare a field so named.
assert not {f.name for k in REGISTRY.node_kinds.values() for f in k.fields} & set(_NODE_META)


# -- problems -----------------------------------------------------------------------------------


class _Problems:
    """Problems of one import, each placed as `NAME: pointer`; raised together at the end."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.dropped = 0

    def add(self, where: str, message: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(where, None, message))
        else:
            self.dropped += 1

    def check(self) -> None:
        if not self.items:
            return
        items = list(self.items)
        if self.dropped:
            items.append(Problem(f"(and {self.dropped} more problems)", None,
                                 "fix the ones above and import again"))
        raise ValidationFailed(items)


def _at(where: str, member: str | int | None) -> str:
    if member is None:
        return where
    if isinstance(member, int):
        return f"{where}[{member}]"
    return f"{where}.{member}"


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- parsed documents ---------------------------------------------------------------------------


@dataclass
class NodeSpec:
    """One node a document defines (a tag is one too: an attribute on its node)."""

    where: str  # "graph.json: nodes[3]"
    kind: str
    key: str
    values: dict[str, Any]  # as given, with aliases and nested references resolved
    prepared: dict[str, Any]  # normalized, as the store will hold them
    properties: dict[str, Any] | None
    has_properties: bool  # the document said something about properties (maybe null)
    # Field name as the document spelled it, where that differs ("name" for an asset's identifier).
    spelled: dict[str, str] = field(default_factory=dict)


@dataclass
class EdgeSpec:
    where: str  # "graph.json: edges[0]"
    kind: str
    source: str
    target: str
    properties: dict[str, Any] | None
    has_properties: bool


@dataclass
class GraphDocument:
    name: str
    nodes: list[NodeSpec]
    edges: list[EdgeSpec]


def read_document(path: str | Path, data: bytes | None = None) -> GraphDocument:
    """Read and parse a file (`-`: the bytes given as `data`, e.g. standard input)."""
    name = "<stdin>" if str(path) == "-" else str(path)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidValue(f"cannot read {name}: {exc.strerror or exc}") from None
    return parse_document(data, name)


def parse_document(data: bytes | str | dict, name: str = "<graph>") -> GraphDocument:
    """Check one document and resolve its nodes and references to keys.

    Raises ValidationFailed listing every problem as `NAME: pointer: reason`.
    """
    problems = _Problems()
    doc = _parse(data, name, problems)
    problems.check()
    return doc


def _parse(data: bytes | str | dict, name: str, problems: _Problems) -> GraphDocument:
    out = GraphDocument(name, [], [])
    if isinstance(data, (bytes, str)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            problems.add(name, f"not valid JSON: {exc}")
            return out
    if not isinstance(data, dict):
        problems.add(name, f"a graph document is a JSON object, not {_type_name(data)}")
        return out
    for member in data:
        if member not in _TOP_KEYS:
            problems.add(f"{name}: {member}", "unknown member; a graph document has: "
                         + ", ".join(_TOP_KEYS))
    if "format" in data and data["format"] != FORMAT:
        problems.add(f"{name}: format", f"expected {FORMAT!r}, got {data['format']!r}")
    if "version" in data and (data["version"] != VERSION or isinstance(data["version"], bool)):
        problems.add(f"{name}: version", f"this Bastion reads version {VERSION}, "
                                         f"not {data['version']!r}")
    if "nodes" not in data and "edges" not in data:
        problems.add(name, "a graph document has a 'nodes' list, an 'edges' list or both")
    for member in ("nodes", "edges"):
        items = data.get(member, [])
        if not isinstance(items, list):
            problems.add(f"{name}: {member}", f"expected a list, got {_type_name(items)}")
            continue
        for i, item in enumerate(items):
            where = f"{name}: {member}[{i}]"
            if member == "nodes":
                out.nodes.extend(_node(item, where, problems))
            else:
                spec = _edge(item, where, problems)
                if spec is not None:
                    out.edges.append(spec)
    return out


def _node(item: Any, where: str, problems: _Problems) -> list[NodeSpec]:
    """The node an item of `nodes` defines, followed by its tags; [] if it is invalid."""
    if not isinstance(item, dict):
        problems.add(where, f"a node is an object, not {_type_name(item)}")
        return []
    given_key = item.get("key")
    kind = _kind_of_item(item, where, problems)
    if kind is None:
        return []
    fields = {k: v for k, v in item.items() if k not in _NODE_META}
    if given_key is not None and not fields:
        # A node named by its key alone: its values are the key's parts.
        try:
            fields = dict(parse_key(given_key).parts)
        except InvalidValue as exc:
            problems.add(_at(where, "key"), str(exc))
            return []
    resolved = _entity(kind, fields, where, problems)
    properties = item.get("properties")
    ok = resolved is not None
    if properties is not None and not isinstance(properties, dict):
        problems.add(_at(where, "properties"), f"expected an object, got {_type_name(properties)}")
        ok = False
    tags = item.get("tags", [])
    if not isinstance(tags, list):
        problems.add(_at(where, "tags"), f"expected a list of text, got {_type_name(tags)}")
        tags, ok = [], False
    if not ok:
        return []
    values, prepared, key, spelled = resolved
    if given_key is not None and given_key != key:
        problems.add(_at(where, "key"), f"does not match the node's fields, which make the key "
                                        f"{key}")
        return []
    specs = [NodeSpec(where, kind.name, key, values, prepared, properties or None,
                      "properties" in item, spelled)]
    for j, tag in enumerate(tags):
        tag_where = _at(_at(where, "tags"), j)
        if not isinstance(tag, str):
            problems.add(tag_where, f"a tag is text, not {_type_name(tag)}")
            continue
        if not tag.strip():
            problems.add(tag_where, "a tag cannot be empty")
            continue
        attribute = _entity(REGISTRY.entity("attribute"),
                            {"name": TAG, "value": tag, "parent": key}, tag_where, problems)
        if attribute is not None:
            a_values, a_prepared, a_key, _ = attribute
            specs.append(NodeSpec(tag_where, "attribute", a_key, a_values, a_prepared, None, False))
    return specs


def _kind_of_item(item: dict, where: str, problems: _Problems) -> EntityKind | None:
    """The entity kind an item names with "kind" and/or "key" (which must agree)."""
    name, key = item.get("kind"), item.get("key")
    from_key = None
    if key is not None:
        if not isinstance(key, str):
            problems.add(_at(where, "key"), f"a key is text, not {_type_name(key)}")
            return None
        try:
            from_key = kind_of(key)
        except InvalidValue as exc:
            problems.add(_at(where, "key"), str(exc))
            return None
    if name is None:
        if from_key is None:
            problems.add(where, "needs a 'kind' (one of: " + ", ".join(REGISTRY.node_kinds)
                         + ") or a 'key'")
            return None
        return REGISTRY.entity(from_key)
    kind = REGISTRY.node_kinds.get(name) if isinstance(name, str) else None
    if kind is None:
        problems.add(_at(where, "kind"), f"unknown entity kind {name!r}; kinds: "
                     + ", ".join(REGISTRY.node_kinds))
        return None
    if from_key is not None and from_key != kind.name:
        problems.add(_at(where, "key"), f"names a {from_key}, but the kind is {kind.name}")
        return None
    return kind


def _entity(kind: EntityKind, given: dict[str, Any], where: str, problems: _Problems):
    """Resolve, normalize and key one entity's fields: (values, prepared, key, spelled) or None."""
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    ok = True
    alias = NAME_ALIASES.get(kind.name)
    for member, raw in given.items():
        name = member
        if member == "name" and alias and alias not in given:
            name = alias
            spelled[alias] = member
        try:
            f = kind.field(name)
        except KeyError:
            problems.add(_at(where, member), f"unknown field of {kind.name}; fields: "
                         + ", ".join(kind.field_names))
            ok = False
            continue
        if f.type is FieldType.KEY and isinstance(raw, dict):
            raw = _ref(raw, _at(where, member), problems)  # a nested reference to another node
            if raw is None:
                ok = False
                continue
        elif raw is not None and f.type in _TEXT_TYPES and not isinstance(raw, str):
            problems.add(_at(where, member), f"expected text, got {_type_name(raw)}")
            ok = False
            continue
        values[name] = raw
    if not ok:
        return None
    try:
        prepared = prepare_values(kind, values)
        key = build_key(kind, prepared)
    except ValidationFailed as exc:
        found = exc.problems
        derived = _DERIVED.get(kind.name, ())
        if any(p.field not in derived for p in found):
            found = [p for p in found if p.field not in derived
                     or p.reason != "required field is missing"]
        for p in found:
            problems.add(_at(where, spelled.get(p.field, p.field) if p.field else None), p.reason)
        return None
    except InvalidValue as exc:
        problems.add(_at(where, spelled.get(exc.field, exc.field) if exc.field else None), str(exc))
        return None
    return values, prepared, key, spelled


def _ref(ref: Any, where: str, problems: _Problems) -> str | None:
    """The key a node reference names: a key, {"key": …}, or {"kind": …, fields…}."""
    if isinstance(ref, str):
        try:
            parse_key(ref)
        except InvalidValue as exc:
            problems.add(where, str(exc))
            return None
        return ref
    if not isinstance(ref, dict):
        problems.add(where, f"a node reference is a key or an object, not {_type_name(ref)}")
        return None
    kind = _kind_of_item(ref, where, problems)
    if kind is None:
        return None
    if "key" in ref:
        extra = [m for m in ref if m not in ("key", "kind")]
        if extra:
            problems.add(_at(where, extra[0]), "a reference by key has only 'key' (and 'kind')")
            return None
        try:
            parse_key(ref["key"])
        except InvalidValue as exc:
            problems.add(_at(where, "key"), str(exc))
            return None
        return ref["key"]
    meta = [m for m in ref if m in _NODE_META and m != "kind"]
    if meta:
        problems.add(_at(where, meta[0]), "a reference only names a node; give properties and "
                                          "tags where the node is defined, under 'nodes'")
        return None
    resolved = _entity(kind, {k: v for k, v in ref.items() if k != "kind"}, where, problems)
    return resolved[2] if resolved is not None else None


def _edge(item: Any, where: str, problems: _Problems) -> EdgeSpec | None:
    if not isinstance(item, dict):
        problems.add(where, f"an edge is an object, not {_type_name(item)}")
        return None
    ok = True
    for member in item:
        if member not in _EDGE_KEYS:
            problems.add(_at(where, member), "unknown member; an edge has: " + ", ".join(_EDGE_KEYS))
            ok = False
    missing = [m for m in ("kind", "from", "to") if m not in item]
    for m in missing:
        problems.add(_at(where, m), "required member is missing")
    if missing:
        return None
    rel = item["kind"]
    rk = REGISTRY.relationships.get(rel.strip().upper()) if isinstance(rel, str) else None
    if rk is None:
        problems.add(_at(where, "kind"), f"unknown relationship {rel!r}; relationships: "
                     + ", ".join(REGISTRY.relationships))
        ok = False
    source = _ref(item["from"], _at(where, "from"), problems)
    target = _ref(item["to"], _at(where, "to"), problems)
    properties = item.get("properties")
    if properties is not None and not isinstance(properties, dict):
        problems.add(_at(where, "properties"), f"expected an object, got {_type_name(properties)}")
        ok = False
    if not ok or rk is None or source is None or target is None:
        return None
    pair = (kind_of(source), kind_of(target))
    if pair not in rk.pairs:
        sources = " or ".join(sorted({s for s, _ in rk.pairs}))
        targets = " or ".join(sorted({t for _, t in rk.pairs}))
        problems.add(_at(where, "kind"), f"{rk.name} cannot join {_a(pair[0])} to {_a(pair[1])}: "
                                         f"it goes from {sources} to {targets}")
        return None
    return EdgeSpec(where, rk.name, source, target, properties or None, "properties" in item)


# -- planning and applying ----------------------------------------------------------------------


@dataclass
class ImportReport:
    documents: list[str]
    nodes: int  # distinct nodes the documents define (tags included)
    edges: int  # distinct edges the documents give
    result: "ApplyResult"
    run_id: int | None = None  # the import run that recorded it (import_paths)


def plan_batch(documents: Sequence[GraphDocument], tenant: "TenantStore | None" = None, *,
               merge: bool = True) -> Batch:
    """One batch for all documents.

    With a tenant: every reference to a node the documents do not define (an edge's end, a
    port's asset, a tag's node …) must be stored in it, and with `merge` (the default) a node
    that is already stored keeps the fields and properties the documents leave out, an edge
    keeps its properties unless the documents give some (given ones are merged over stored).
    Without `merge`, nodes are replaced: fields not given take their defaults, as `bastion add`
    does. Raises ValidationFailed naming each problem's document and position.
    """
    problems = _Problems()
    # The same node or edge may be given more than once (documents that overlap), but not with
    # different values; properties only count where they are given.
    nodes: dict[str, NodeSpec] = {}
    for doc in documents:
        for spec in doc.nodes:
            first = nodes.setdefault(spec.key, spec)
            if first is spec:
                continue
            if first.prepared != spec.prepared or _clash(first, spec):
                problems.add(spec.where, f"defines {spec.key} again, differently from "
                                         f"{first.where}")
            elif spec.has_properties:
                nodes[spec.key] = spec
    edges: dict[tuple[str, str, str], EdgeSpec] = {}
    for doc in documents:
        for e in doc.edges:
            first = edges.setdefault((e.source, e.kind, e.target), e)
            if first is e:
                continue
            if _clash(first, e):
                problems.add(e.where, f"gives the {e.kind} edge {e.source} -> {e.target} again "
                                      f"with other properties than {first.where}")
            elif e.has_properties:
                edges[(e.source, e.kind, e.target)] = e
    problems.check()

    stored: dict[str, Record] = {}
    if tenant is not None:
        # References outside the documents: the store refuses an edge to a missing node, but
        # only this step knows where in which document the reference was written.
        outside: dict[str, list[str]] = {}
        for spec in nodes.values():
            implied = REGISTRY.entity(spec.kind).implies
            parent = spec.prepared.get(implied.field) if implied else None
            if parent is not None and parent not in nodes:
                member = spec.spelled.get(implied.field, implied.field)
                outside.setdefault(parent, []).append(_at(spec.where, member))
        for e in edges.values():
            for end, key in (("from", e.source), ("to", e.target)):
                if key not in nodes:
                    outside.setdefault(key, []).append(_at(e.where, end))
        stored = stored_records(tenant, [*outside, *(nodes if merge else ())])
        for key, places in outside.items():
            if key not in stored:
                for place in places:
                    problems.add(place, f"{key} is neither defined in the import nor stored in "
                                        f"tenant {tenant.name!r}")
    problems.check()

    batch = Batch()
    for key, spec in nodes.items():
        values, prepared, properties = spec.values, spec.prepared, spec.properties
        version = None
        current = stored.get(key) if merge else None
        if current is not None:
            kept = {k: v for k, v in current.values.items() if v is not None}
            values = {**kept, **spec.values}
            try:
                prepared = prepare_values(REGISTRY.entity(spec.kind), values)
            except ValidationFailed as exc:
                for p in exc.problems:
                    problems.add(_at(spec.where, p.field), f"{p.reason} (with the stored values)")
                continue
            if spec.has_properties:
                properties = {**(current.properties or {}), **(spec.properties or {})} or None
            else:
                properties = current.properties
            version = current.version  # nobody may change it between this read and the write
        batch.entities.append(Entity(spec.kind, values, properties, version, (prepared, key)))
    problems.check()

    stored_links: dict[str, dict[tuple[str, str], Any]] = {}
    for (source, rel, target), e in edges.items():
        properties = e.properties
        if merge and stored.get(source) is not None and stored.get(target) is not None:
            # Both ends existed before: the edge may too, with properties to keep.
            if source not in stored_links:
                stored_links[source] = {(l.relationship, l.target): l.properties or {}
                                        for l in tenant.links(source, "out")}
            before = stored_links[source].get((rel, target))
            if before is not None:
                properties = ({**before, **(e.properties or {})} if e.has_properties
                              else before) or None
        batch.relationships.append(Relationship(rel, source, target, properties or None))
    return batch


def _clash(first: NodeSpec | EdgeSpec, again: NodeSpec | EdgeSpec) -> bool:
    return first.has_properties and again.has_properties and first.properties != again.properties


def import_documents(tenant: "TenantStore", documents: Sequence[GraphDocument], *, actor: str,
                     source: str = SOURCE, merge: bool = True,
                     correlation_id: str | None = None) -> ImportReport:
    """Apply the documents to the tenant in one all-or-nothing batch."""
    batch = plan_batch(documents, tenant, merge=merge)
    result = tenant.apply(batch, actor=actor, source=source, correlation_id=correlation_id)
    return ImportReport([d.name for d in documents], len(batch.entities),
                        len(batch.relationships), result)


def import_paths(tenant: "TenantStore", paths: list[str], *, actor: str, source: str = SOURCE,
                 merge: bool = True, progress=None) -> ImportReport:
    """Import the documents the paths name (files, every file below a directory, `-` for
    standard input, gzip or plain) in one all-or-nothing batch, recorded as an import run of
    kind `graph` (bastion.ingest.files), a refused one too: its files are then rejected and the
    problems are its errors. Raises ValidationFailed naming every problem of every file."""
    from bastion.ingest.files import FileResult, Run

    with Run(tenant, "graph", actor=actor, source=source, paths=paths, progress=progress,
             options={"format": "graph", "source": source, "replace": not merge}) as run:
        docs: list[GraphDocument] = []
        problems: list[Problem] = []
        invalid: list[FileResult] = []  # read, but not a valid document
        for item in run.inputs(paths):
            fr = run.add(FileResult(item.name, format="graph"))
            with run.open(item, fr) as opened:
                data = opened.stream.read()
            if fr.status != "imported":  # it could not be read: rejected with the reason
                continue
            try:
                docs.append(parse_document(data, item.name))
            except ValidationFailed as exc:
                fr.status = "rejected"
                fr.errors = [str(p) for p in exc.problems]
                invalid.append(fr)
                problems.extend(exc.problems)
        # First the inputs that could not be read or named no file ("NAME: reason").
        problems[:0] = [Problem(fr.name, None, e.removeprefix(f"{fr.name}: "))
                        for fr in run.rejected if all(fr is not x for x in invalid)
                        for e in fr.errors]
        try:
            if problems:
                raise ValidationFailed(problems[:MAX_PROBLEMS + 1])
            report = import_documents(tenant, docs, actor=actor, source=source, merge=merge,
                                      correlation_id=run.correlation_id)
        except Exception:
            for fr in run.files:  # all or nothing: no document was imported
                fr.status = "rejected"
            raise
        r = report.result
        run.counts = {**run.totals(), "records": report.nodes + report.edges,
                      "created": r.created, "updated": r.updated, "unchanged": r.unchanged}
    report.run_id = run.id
    return report


def stored_records(tenant: "TenantStore", keys: Iterable[str]) -> dict[str, "Record"]:
    """The stored entities among `keys`, read in bulk by primary key (TenantStore.get_many)."""
    return tenant.get_many(list(dict.fromkeys(keys)))


# -- export -------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return value


def export_document(tenant: "TenantStore", subgraph: "Subgraph", *, root: str | None = None,
                    depth: int | None = None) -> dict[str, Any]:
    """The subgraph's nodes with their stored values, and its edges with their properties.

    Entities a node's key references (a port's asset, a risk's target) are included even when
    they lie beyond the subgraph, with `"distance": null`, so the document imports on its own.
    """
    distance = {h.key: h.distance for h in subgraph.nodes}
    records: dict[str, Record] = {}
    seen = set(distance)
    wanted_keys = list(distance)
    while wanted_keys:  # the subgraph, then what its keys reference, level by level
        level = stored_records(tenant, wanted_keys)  # a key deleted since then drops out
        records.update(level)
        wanted_keys = []
        for rec in level.values():
            for f in REGISTRY.entity(rec.kind).fields:
                ref = rec.values.get(f.name) if f.type is FieldType.KEY else None
                if ref is not None and ref not in seen:
                    seen.add(ref)
                    wanted_keys.append(ref)
    wanted = {(e.source, e.relationship, e.target) for e in subgraph.edges
              if e.source in records and e.target in records}
    for key, rec in records.items():
        implied = REGISTRY.entity(rec.kind).implies
        parent = rec.values.get(implied.field) if implied else None
        if parent in records:
            wanted.add((parent, implied.relationship, key))
    properties: dict[tuple[str, str, str], Any] = {}
    for source in sorted({s for s, _, _ in wanted}):
        for link in tenant.links(source, "out"):
            ident = (source, link.relationship, link.target)
            if ident in wanted:
                properties[ident] = link.properties
    nodes = []
    for key in sorted(records, key=lambda k: (distance.get(k) is None, distance.get(k, 0), k)):
        rec = records[key]
        item: dict[str, Any] = {"key": key, "kind": rec.kind, "distance": distance.get(key)}
        item.update((k, _jsonable(v)) for k, v in rec.values.items() if v is not None)
        if rec.properties:
            item["properties"] = rec.properties
        nodes.append(item)
    edges = []
    for ident in sorted(properties):  # edges deleted since the subgraph was read drop out here
        source, rel, target = ident
        item = {"kind": rel, "from": {"key": source}, "to": {"key": target}}
        if properties[ident]:
            item["properties"] = properties[ident]
        edges.append(item)
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if root is not None:
        doc["root"] = root
    if depth is not None:
        doc["depth"] = depth
    doc["nodes"] = nodes
    doc["edges"] = edges
    return doc


def dumps(document: dict[str, Any]) -> str:
    """A document as indented JSON text, ending in a newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z,
                        default=_jsonable).decode() + "\n"


def documents_from(paths: Iterable[str], stdin: bytes | None = None) -> list[GraphDocument]:
    """Parse every file (`-` is standard input, given as `stdin`); all problems of all files are
    reported together."""
    docs: list[GraphDocument] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            docs.append(read_document(path, stdin if path == "-" else None))
        except ValidationFailed as exc:
            problems.extend(exc.problems)
    if problems:
        raise ValidationFailed(problems[:MAX_PROBLEMS + 1])
    return docs
