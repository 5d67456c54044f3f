"""Edits a person (the CLI, later the server) makes: put one entity (merging with what is stored),
delete with or without its dependents, and update many entities at once.

Each is one transaction through the write path (bastion.store.writer), so every change is an
event, and priorities follow: a changed asset exposure re-ranks the risks on it (the write path
does that), a risk whose own inputs change gets its priority recomputed here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

import orjson

from bastion.errors import InvalidValue, NotFound
from bastion.risks.lifecycle import check_transition
from bastion.risks.priority import asset_of, priority
from bastion.schema.batch import Batch, Entity, key_for
from bastion.schema.keys import kind_of, parse_key
from bastion.schema.kinds import REGISTRY, RISK_STATES
from bastion.schema.registry import EntityKind, FieldType
from bastion.store import writer

PAGE = 5000


# -- put: one entity, merged or replaced ----------------------------------------------------------


def key_of_partial(kind: EntityKind, values: dict[str, Any]) -> str:
    """The key named by the values given for a merge. Required fields outside the key that were
    not given take their declared default just for this: the key does not depend on them, but
    key_for validates the whole entity."""
    probe = {f.name: f.default for f in kind.fields
             if f.required and f.default is not None and f.name not in kind.key}
    return key_for(kind.name, **{**probe, **values})


def merged(current, values: dict[str, Any], properties: dict[str, Any] | None
           ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The values and properties of an entity after a merge: the stored ones (a Record, or
    None), with those given replacing them; a property given as None is removed."""
    if current is None:
        props = {k: v for k, v in (properties or {}).items() if v is not None}
        return dict(values), props or None
    kept = {k: v for k, v in current.values.items() if v is not None}
    props = {**(current.properties or {}), **(properties or {})}
    props = {k: v for k, v in props.items() if v is not None}
    return {**kept, **values}, props or None


def put_batch(tenant, kind: str, values: dict[str, Any], properties: dict[str, Any] | None = None,
              *, replace: bool = False, expected_version: int | None = None,
              note: str | None = None, batch: Batch | None = None) -> tuple[Batch, str]:
    """The batch (`batch` with the item added, or a new one) that writes one entity, and its key.

    By default the given fields and properties are merged into the stored entity: fields not
    given keep their stored values. `replace=True` writes exactly what is given (fields not given
    take their defaults, properties not given are dropped). A merge expects the version it read
    (unless `expected_version` says otherwise), so a concurrent change is a ConflictError, never
    a lost update."""
    ek = REGISTRY.node_kinds.get(kind)
    if ek is None:
        raise InvalidValue(f"unknown kind {kind!r}; kinds: {', '.join(REGISTRY.node_kinds)}")
    if kind == "risk" and str(values.get("status")).strip().lower() in RISK_STATES:
        # as `risk set-status`: a reason only with a closed state, none kept from before (an
        # unknown state is the write path's validation error, as for any field)
        values = {**values}
        values["status"], values["reason"] = check_transition(values["status"], values.get("reason"))
    if not replace:
        current = tenant.get(key_of_partial(ek, values))
        values, properties = merged(current, values, properties)
        if current is not None and expected_version is None:
            expected_version = current.version
    batch = batch if batch is not None else Batch()
    key = batch.add(kind, properties, expected_version=expected_version, note=note, **values)
    return batch, key


def put(tenant, kind: str, values: dict[str, Any], properties: dict[str, Any] | None = None, *,
        actor: str, source: str, replace: bool = False, expected_version: int | None = None,
        note: str | None = None) -> tuple[str, writer.ApplyResult]:
    """Write one entity (see put_batch); returns its key and the write's result."""
    batch, key = put_batch(tenant, kind, values, properties, replace=replace,
                           expected_version=expected_version, note=note)
    return key, tenant.apply(batch, actor=actor, source=source)


# -- delete ---------------------------------------------------------------------------------------


def delete(tenant, keys: list[str], *, actor: str, source: str, cascade: bool = False,
           note: str | None = None) -> writer.ApplyResult:
    """Delete entities and their links in one transaction. The entities that depend on them
    (their key or a required reference names a deleted one: the ports of an asset, the risks on
    it or its ports, attributes, jobs …, transitively) are deleted too when `cascade`, each with
    its `<kind>.deleted` event noting why; otherwise the delete raises writer.DependentsExist
    listing them and writes nothing. Keys that do not exist are ignored (result.deleted counts)."""
    for key in keys:
        parse_key(key)
    batch = Batch(deletes=list(keys))
    return writer.apply(tenant.scope, batch, actor=actor, source=source, cascade=cascade)


# -- bulk update ----------------------------------------------------------------------------------


@dataclass
class UpdateResult:
    kind: str
    matched: int = 0  # entities the filter selected
    updated: int = 0  # of them, those whose values changed (one event each)
    reranked: int = 0  # risks whose priority followed an exposure change
    correlation_id: str = ""
    keys: list[str] = field(default_factory=list, repr=False)  # the updated ones

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "keys"} | {"keys": self.keys}


def in_network(kind: str, network: str) -> "callable":
    """A predicate on records: whose IP address lies in `network` (assets whose identifier is an
    address or a network inside it, ports on such assets)."""
    try:
        net = ipaddress.ip_network(network.strip(), strict=False)
    except ValueError:
        raise InvalidValue(f"invalid CIDR {network!r}") from None
    if kind not in ("asset", "port"):
        raise InvalidValue(f"a CIDR selects assets or ports, not {kind} entities")

    def ip_of(asset_key: str) -> str | None:
        parsed = parse_key(asset_key)
        return parsed.parts.get("identifier") if kind_of(asset_key) == "asset" else None

    def inside(rec) -> bool:
        ident = rec.values.get("identifier") if kind == "asset" else ip_of(rec.values["asset"])
        if ident is None:
            return False
        try:
            other = ipaddress.ip_network(ident, strict=False)
        except ValueError:  # a DNS name or URL: not an address
            return False
        return other.version == net.version and other.subnet_of(net)

    return inside


def matching(tenant, kind: str, where=None, cidr: str | None = None) -> Iterator[Any]:
    """The stored entities of `kind` that the where-expressions select, in key order, page by
    page: the one place a bulk operation's filter is evaluated. `where` is what
    `TenantStore.list(where=…)` takes (filter expressions such as `status=open` or `priority>50`,
    see bastion.store.filters, or FIELD → value); `cidr` keeps the assets/ports whose address
    lies in that network."""
    inside = in_network(kind, cidr) if cidr else None
    # parsed once (TenantStore.iterate): a relative time (`first_seen>=-7d`) stays one instant
    for rec in tenant.iterate(kind, where=where or None, page_size=PAGE):
        if inside is None or inside(rec):
            yield rec


def parse_assignments(kind: str, items: list[str]) -> dict[str, Any]:
    """`FIELD=VALUE` texts (a command line's --set) into field → value of the field's type; an
    empty VALUE is None (clears the field). JSON fields take JSON text."""
    ek = REGISTRY.node_kinds[kind]
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidValue(f"--set expects FIELD=VALUE, got {item!r}")
        if name not in ek.field_names:
            raise InvalidValue(f"{kind} has no field {name!r}; fields: " + ", ".join(ek.field_names))
        out[name] = None if text == "" else _typed(ek.field(name), text, f"{kind}.{name}")
    return out


def _typed(f, text: str, where: str) -> Any:
    try:
        if f.type is FieldType.INT:
            return int(text)
        if f.type is FieldType.FLOAT:
            return float(text)
    except ValueError:
        raise InvalidValue(f"{where}: {text!r} is not a number") from None
    if f.type is FieldType.BOOL:
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return low in ("true", "yes", "1", "on")
        raise InvalidValue(f"{where}: {text!r} is not true or false")
    if f.type is FieldType.DATETIME:
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidValue(f"{where}: {text!r} is not an ISO 8601 time") from None
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    if f.type is FieldType.JSON:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise InvalidValue(f"{where}: not valid JSON") from None
    return text


def check_settable(kind: EntityKind, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes in the spelling the write path stores (`HIGH` → `high`), so what is compared
    and scored (a risk's priority) is what will be stored; InvalidValue naming a bad field."""
    if not changes:
        raise InvalidValue("nothing to set: give at least one FIELD=VALUE")
    out: dict[str, Any] = {}
    for name in changes:
        if name not in kind.field_names:
            raise InvalidValue(f"{kind.name} has no field {name!r}; fields: "
                               + ", ".join(kind.field_names))
        if name in kind.key:
            raise InvalidValue(f"cannot set {kind.name}.{name}: it is part of the key "
                               f"({', '.join(kind.key)}); add the entity under its new key instead")
        f = kind.field(name)
        value = changes[name]
        if value is not None and f.normalize is not None:
            try:
                value = f.normalize(value)
            except InvalidValue as exc:
                raise InvalidValue(f"{kind.name}.{name}: {exc}") from None
        if f.domain and value is not None and value not in f.domain:
            raise InvalidValue(f"{kind.name}.{name} cannot be {value!r}; one of: "
                               + ", ".join(f.domain))
        out[name] = value
    return out


def update(tenant, kind: str, changes: dict[str, Any], *, where=None,
           cidr: str | None = None, actor: str, source: str, note: str | None = None,
           dry_run: bool = False) -> UpdateResult:
    """Set `changes` (field → value; None clears) on every entity `matching` selects, in one
    transaction: each entity whose values change gets its event (carrying `note`), each expects
    the version it was read at (a concurrent change is a ConflictError and nothing is written).
    A risk whose own scoring inputs change gets its priority recomputed; an asset whose exposure
    changes re-ranks its risks (the write path). `dry_run` counts without writing."""
    ek = REGISTRY.node_kinds.get(kind)
    if ek is None:
        raise InvalidValue(f"unknown kind {kind!r}; kinds: {', '.join(REGISTRY.node_kinds)}")
    changes = check_settable(ek, changes)
    if kind == "risk" and "status" in changes:
        # as `risk set-status`: a reason only with a closed state, none kept from before
        changes["status"], changes["reason"] = check_transition(changes["status"] or "",
                                                                changes.get("reason"))
    result = UpdateResult(kind)
    selected = [(r.key, r.version) for r in matching(tenant, kind, where, cidr)]
    result.matched = len(selected)
    if dry_run or not selected:
        return result
    with tenant.writing(actor=actor, source=source) as session:
        result.correlation_id = session.correlation_id
        for start in range(0, len(selected), PAGE):
            chunk = dict(selected[start:start + PAGE])
            stored = session.get_many(list(chunk))
            exposure = _exposures(session, stored.values()) if kind == "risk" else {}
            batch = Batch()
            for key, version in chunk.items():
                rec = stored.get(key)
                if rec is None or rec.version != version:
                    raise NotFound(f"{key} was deleted or changed during the update; run it again")
                values = {**rec.values, **changes}
                if kind == "risk" and "reason" in changes and "status" not in changes:
                    try:
                        check_transition(values["status"], values["reason"])
                    except InvalidValue as exc:
                        raise InvalidValue(f"{key}: {exc}") from None
                if kind == "risk":
                    values["priority"] = priority(values, exposure.get(asset_of(values.get("target"))))
                if values == rec.values:
                    continue
                batch.entities.append(Entity(kind, values, rec.properties, rec.version, note=note))
                result.keys.append(key)
            if batch.entities:
                res = session.apply(batch, observed=False)
                result.updated += res.updated
                result.reranked += len(res.reranked)
    return result


def _exposures(session, risks) -> dict[str, str | None]:
    assets = sorted({a for r in risks if (a := asset_of(r.values.get("target")))})
    return {k: rec.values.get("exposure") for k, rec in session.get_many(assets).items()}
