"""Who may do what, and what each role may see: the roles of API keys, the permissions routes
require, and the masking of field values by their declared classification.

The server checks permissions per route and masks every entity and event it returns with
`mask_record` / `mask_event`; the CLI's JSON output uses the same functions (`--as-role`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from bastion.errors import InvalidValue
from bastion.schema.kinds import REGISTRY
from bastion.schema.keys import escape, parse_key
from bastion.schema.registry import Classification as C, FieldType

ROLES = ("admin", "analyst", "uploader", "reader")

# Permissions, from least to most: what a route needs.
READ = "read"  # every read (entities, coverage, graph, events, runs)
IMPORT = "import"  # upload scanner files, inventories, catalogs, KEV/EPSS
TRIAGE = "triage"  # risk status and comments, mapping validation, gap decisions, edits
ADMIN = "admin"  # keys, tenant settings
PERMISSIONS = (READ, IMPORT, TRIAGE, ADMIN)

GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    "analyst": frozenset((READ, IMPORT, TRIAGE)),
    "uploader": frozenset((IMPORT,)),
    "reader": frozenset((READ,)),
}

# The classes a role sees in clear; the others are masked.
VISIBLE: dict[str, frozenset[C]] = {
    "admin": frozenset(C),
    "analyst": frozenset((C.PUBLIC, C.INTERNAL, C.CONFIDENTIAL)),
    "uploader": frozenset((C.PUBLIC, C.INTERNAL)),
    "reader": frozenset((C.PUBLIC, C.INTERNAL)),
}

# Record members that are no field of the kind: always shown.
_RECORD_MEMBERS = frozenset(("key", "kind", "entity_version", "first_seen", "last_seen",
                             "updated_at", "masked"))


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidValue(f"unknown role {role!r}: choose one of {', '.join(ROLES)}", "role")
    return role


def allowed(role: str, permission: str) -> bool:
    """`permission` may name alternatives: `read|import` (a run's status, for its uploader)."""
    grants = GRANTS.get(role, frozenset())
    return any(p in grants for p in permission.split("|"))


def sees_everything(role: str | None) -> bool:
    return role is None or role == "admin"


def check_filterable(kind: str, conditions, role: str | None) -> None:
    """Refuse a filter on a field the role sees masked: which entities it selects would tell the
    value (`comment~password`). `conditions`: objects with `field` and `source` (a parsed
    bastion.store.filters.Filter's)."""
    if sees_everything(role):
        return
    ek = REGISTRY.entities.get(kind)
    if ek is None:
        return
    classes = ek.classes({})
    for c in conditions:
        cls = classes.get(c.field) if c.field else None
        if cls is not None and cls not in VISIBLE[role]:
            raise InvalidValue(f"{c.source}: the {role} role may not filter on {c.field} "
                               f"({cls.value})", c.field)


def mask_record(values: Mapping[str, Any], role: str | None) -> dict[str, Any]:
    """An entity as `Record.as_dict()` gives it, with each value the role may not see replaced
    by None and its name listed under `masked` (fields, and `properties.<name>` for members of
    the free-form properties). `role` None or admin: returned unchanged."""
    out = dict(values)
    if sees_everything(role):
        return out
    visible = VISIBLE[role]
    kind = REGISTRY.entities.get(out.get("kind") or "")
    if kind is None:
        return out
    masked: list[str] = []
    for name, cls in kind.classes(out).items():
        if cls not in visible and out.get(name) is not None:
            out[name] = None
            masked.append(name)
    if out.get("properties"):
        out["properties"] = _mask_properties(kind, out["properties"], visible, masked)
    if masked:
        out["masked"] = masked
    # Keys name other entities (and embed them): masked wherever they appear.
    out["key"] = mask_key(out.get("key"), role)
    for f in kind.fields:
        if f.type is FieldType.KEY and isinstance(out.get(f.name), str):
            out[f.name] = mask_key(out[f.name], role)
    return out


def _mask_key(key: str | None, kind, masked: list[str]) -> str | None:
    """A key whose own components include a masked value (an attribute's key holds its value)
    shows `***` in that component's place: a role that may not see the value cannot read it
    from the key either."""
    hidden = [f for f in kind.key if f in masked and kind.field(f).type is not FieldType.KEY]
    if not key or not hidden:
        return key
    try:
        parts = parse_key(key).parts
    except InvalidValue:
        return key
    for name in hidden:
        component = escape(str(parts.get(name, "")))
        if component:
            key = key.replace(f"#{component}#", "#***#", 1) if not key.endswith(f"#{component}") \
                else key[: -len(component)] + "***"
    return key


def mask_key(key: str, role: str | None) -> str:
    """Any entity key as the role may see it (edges, links and graph nodes name other entities
    by key): the components of values it may not see become `***`."""
    if sees_everything(role) or not isinstance(key, str) or not key.startswith("#"):
        return key
    try:
        parsed = parse_key(key)
    except InvalidValue:
        return key
    kind = REGISTRY.entities.get(parsed.kind)
    if kind is None:
        return key
    visible = VISIBLE[role]
    hidden = [n for n, c in kind.classes(parsed.parts).items() if c not in visible and n in kind.key]
    if parsed.ref is not None:  # the key it embeds (a detection's account, a port's asset …)
        inner = _ref_key(key, parsed)
        if inner:
            masked_inner = mask_key(inner, role)
            if masked_inner != inner:
                key = key.replace(inner, masked_inner, 1)
    return _mask_key(key, kind, hidden) if hidden else key


def _ref_key(key: str, parsed) -> str | None:
    """The embedded key's text, as it appears inside `key`."""
    inner = _render(parsed.ref)
    return inner if inner and inner in key else None


def _render(parsed) -> str | None:
    kind = REGISTRY.entities.get(parsed.kind)
    if kind is None:
        return None
    text = f"#{parsed.kind}"
    for name in kind.key:
        if kind.field(name).type is FieldType.KEY:
            inner = _render(parsed.ref) if parsed.ref is not None else None
            if inner is None:
                return None
            text += inner
        else:
            text += "#" + escape(str(parsed.parts.get(name, "")))
    return text


_KEY_IN_TEXT = re.compile(r"#[a-z_]+#[^\s,;()\[\]\"'<>]+")


def mask_deep(value: Any, role: str | None) -> Any:
    """Any answer (dicts, lists, text) with every entity key in it masked as `mask_key` masks it,
    also keys quoted inside text (a rule label, an error message): for answers that are not
    records, such as a Navigator layer or a drift report."""
    if sees_everything(role):
        return value
    if isinstance(value, str):
        if value.startswith("#"):
            value = mask_key(value, role)
        return _KEY_IN_TEXT.sub(lambda m: mask_key(m.group(0), role), value) if "#" in value else value
    if isinstance(value, dict):
        return {k: mask_deep(v, role) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_deep(v, role) for v in value]
    return value


def _mask_keys_in(value: Any, role: str) -> Any:
    if isinstance(value, str):
        return mask_key(value, role)
    if isinstance(value, list):
        return [_mask_keys_in(v, role) for v in value]
    return value


def mask_event(values: Mapping[str, Any], role: str | None) -> dict[str, Any]:
    """An event as `Event.as_dict()` gives it, its diff masked like the entity's fields (a
    diff's `[old, new]` of a field the role may not see becomes None)."""
    out = dict(values)
    if sees_everything(role):
        return out
    visible = VISIBLE[role]
    kind = REGISTRY.entities.get(out.get("entity_kind") or "")
    diff = out.get("diff")
    if not isinstance(diff, dict):
        return out
    if kind is None:  # settings, keys: no fields to classify, but keys they name
        out["diff"] = {k: _mask_keys_in(v, role) for k, v in diff.items()}
        out["entity_key"] = mask_key(out.get("entity_key"), role)
        return out
    names = set(kind.field_names)
    values_now = {k: (v[1] if isinstance(v, list) and len(v) == 2 else v) for k, v in diff.items()}
    classes = kind.classes({**values_now, **_key_values(out)})
    masked, clean = [], {}
    for name, change in diff.items():
        if name in names:
            cls = classes[name]
        elif name == "properties" and isinstance(change, (list, dict)):
            clean[name], hidden = _mask_properties_change(kind, change, visible)
            masked += hidden
            continue
        else:
            cls = C.INTERNAL
        if cls in visible:
            clean[name] = _mask_keys_in(change, role)
        else:
            clean[name] = None
            masked.append(name)
    out["diff"] = clean
    if masked and out.get("note"):
        # A change of a masked field is often explained with it (a status change's note is the
        # analyst's comment): the note goes with it.
        out["note"] = None
        masked.append("note")
    if masked:
        out["masked"] = masked
    out["entity_key"] = mask_key(out.get("entity_key"), role)
    return out


def _key_values(ev: Mapping[str, Any]) -> dict[str, Any]:
    """The name of an attribute from its key, so a secret's value is masked in its events."""
    if ev.get("entity_kind") == "attribute":
        try:
            return dict(parse_key(ev["entity_key"]).parts)
        except InvalidValue:  # an unparsable key: the declared classes only
            return {}
    return {}


def _mask_properties(kind, props, visible, masked: list[str]):
    """Free-form properties with the members the role may not see as None (named in `masked`)."""
    if not isinstance(props, dict):
        return props
    out = {}
    for name, value in props.items():
        if kind.property_class(name) in visible:
            out[name] = value
        else:
            out[name] = None
            masked.append(f"properties.{name}")
    return out


def _mask_properties_change(kind, change, visible):
    masked: list[str] = []
    if isinstance(change, list):
        return [_mask_properties(kind, p, visible, masked) for p in change], sorted(set(masked))
    return _mask_properties(kind, change, visible, masked), sorted(set(masked))
