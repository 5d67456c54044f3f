"""The schema reference (docs/schema.md), rendered from the registry so it cannot drift.

Regenerate with `python -m bastion.schema.docs > docs/schema.md`; tests/test_schema_docs.py
fails when the committed file differs from what this renders.
"""

from __future__ import annotations

import sys

from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import Classification, EntityKind, Field, FieldType, Registry

REGENERATE = "python -m bastion.schema.docs > docs/schema.md"

# What each level means for whoever handles the data; the fields carrying each level are
# listed from the registry below these.
CLASSIFICATION_MEANING = {
    Classification.PUBLIC: "Not sensitive: facts anyone could observe or look up (port "
                           "numbers and states, CVE ids, CPE names, tool names). May be shared "
                           "outside the tenant.",
    Classification.INTERNAL: "The tenant's own operational data (identifiers, asset groups, "
                             "finding names and severities). Visible to everyone with access "
                             "to the tenant; not for publication.",
    Classification.CONFIDENTIAL: "Reveals how the tenant is organized or what analysts "
                                 "concluded (cloud accounts, internal endpoints, free-text "
                                 "comments). Limit to people who need it and leave it out of "
                                 "reports shared outside the security team.",
    Classification.RESTRICTED: "Points at secrets or could help an attacker directly. Never "
                               "copy into tickets, exports or logs; the value itself is only a "
                               "reference (e.g. a secret's name), never the secret.",
}


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(value: object) -> str:
    return f"`{value}`"


def key_recipe(kind: EntityKind) -> str:
    """The natural-key template, e.g. `#port#{protocol}#{number}{asset}`: plain parts are
    '#'-prefixed, a key-reference part embeds the referenced entity's whole key."""
    parts = [f"#{kind.name}"]
    for name in kind.key:
        ref = kind.field(name).type is FieldType.KEY
        parts.append(f"{{{name}}}" if ref else f"#{{{name}}}")
    return "".join(parts)


def _type(f: Field) -> str:
    if f.type is FieldType.KEY:
        return "key → " + ", ".join(f.ref_kinds)
    return f.type.value


def _bounds(f: Field) -> str:
    if f.ge is not None and f.le is not None:
        return f"{f.ge:g} – {f.le:g}"
    if f.ge is not None:
        return f"≥ {f.ge:g}"
    if f.le is not None:
        return f"≤ {f.le:g}"
    if f.max_length and f.type is FieldType.STR:
        return f"≤ {f.max_length} chars"
    return ""


def _field_row(f: Field) -> str:
    cells = [
        _code(f.name),
        _type(f),
        "yes" if f.required else "no",
        _code(f.default) if f.default is not None else "",
        ", ".join(_code(v) for v in f.domain) if f.domain else "",
        _bounds(f),
        f.classification.value,
        f.description,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _entity(kind: EntityKind) -> list[str]:
    out = [f"### {kind.name}", "", kind.description, ""]
    if kind.node:
        out.append(f"- **Natural key:** `{key_recipe(kind)}`")
    else:
        unique = ", ".join(_code(p) for p in kind.key)
        out.append(f"- **Stored as:** the `{kind.name}` table, not a graph node; unique on {unique}.")
    if kind.implies:
        ref = kind.field(kind.implies.field)
        sources = ", ".join(_code(k) for k in ref.ref_kinds)
        out.append(f"- **Implied edge:** `{kind.implies.relationship}` from the entity its "
                   f"`{kind.implies.field}` field names ({sources}) to the {kind.name}.")
    else:
        out.append("- **Implied edge:** none.")
    indexed = [f.name for f in kind.fields if f.indexed]
    if indexed:
        out.append("- **Indexed fields:** " + ", ".join(_code(n) for n in indexed) + ".")
    out += [
        "",
        "| Field | Type | Required | Default | Allowed values | Range / max length "
        "| Classification | Description |",
        "|---|---|---|---|---|---|---|---|",
        *(_field_row(f) for f in kind.fields),
        "",
    ]
    return out


def _relationships(registry: Registry) -> list[str]:
    implied_by = {}
    for ek in registry.entities.values():
        if ek.implies:
            implied_by.setdefault(ek.implies.relationship, []).append(
                f"`{ek.name}.{ek.implies.field}`")
    out = ["## Relationship kinds", "",
           "An edge joins a source entity to a target entity; the database refuses any "
           "(relationship, source kind, target kind) triple not listed here.", ""]
    for rel in registry.relationships.values():
        out += [f"### {rel.name}", "", rel.description, ""]
        if rel.name in implied_by:
            out += ["Implied by " + ", ".join(implied_by[rel.name]) + ".", ""]
        targets: dict[str, list[str]] = {}
        for s, t in sorted(rel.pairs):
            targets.setdefault(s, []).append(t)
        out += ["| Source | → Targets |", "|---|---|"]
        out += [f"| {_code(s)} | {', '.join(_code(t) for t in ts)} |" for s, ts in targets.items()]
        out.append("")
    return out


def _classification(registry: Registry) -> list[str]:
    out = ["## Data classification", "",
           "Every field carries one of four levels, from least to most sensitive:", ""]
    for level in Classification:
        out.append(f"- **{level.value}**: {CLASSIFICATION_MEANING[level]}")
    out.append("")
    for level in (Classification.CONFIDENTIAL, Classification.RESTRICTED):
        fields = [(k, f) for k in registry.entities.values() for f in k.fields
                  if f.classification is level]
        out += [f"### {level.value.capitalize()} fields", ""]
        if not fields:
            out += ["None.", ""]
            continue
        out += ["| Field | Description |", "|---|---|"]
        out += [f"| `{k.name}.{f.name}` | {_cell(f.description)} |" for k, f in fields]
        out.append("")
    out += ["### Properties and values classified by record", "",
            "The free-form `properties` of an entity take their kind's class; named members may "
            "differ. An attribute whose name says it holds a secret (password, token, API key, "
            "cookie …) has a restricted `value`.", "",
            "| Kind | `properties` | Members that differ |", "|---|---|---|"]
    for k in registry.entities.values():
        if k.properties_classification is Classification.INTERNAL and not k.property_classes:
            continue
        members = ", ".join(f"`{n}` {c.value}" for n, c in k.property_classes) or "none"
        out.append(f"| `{k.name}` | {k.properties_classification.value} | {members} |")
    out += ["", "Every other kind's properties are internal. Who sees which class: "
            "[api.md](api.md#masking).", ""]
    return out


def render_markdown(registry: Registry = REGISTRY) -> str:
    """docs/schema.md: every entity kind, relationship kind and classification, from `registry`."""
    out = [
        "# Bastion schema reference",
        "",
        "<!-- Generated from bastion/schema/kinds.py; do not edit by hand. "
        f"Regenerate with: {REGENERATE} -->",
        "",
        "Every entity kind and relationship kind Bastion stores. Keys, tables, CHECK "
        "constraints, validation and CLI options are all derived from the same declarations "
        "(see docs/design.md).",
        "",
        "## Entity kinds",
        "",
        "Natural keys: `#kind` followed by each key part; a plain part is `#` and the "
        "normalized value (`%` and `#` percent-escaped), a part in braces without `#` embeds the "
        "referenced entity's whole key.",
        "",
    ]
    out += [f"- [{k}](#{k.lower()})" for k in registry.entities]
    out.append("")
    for kind in registry.entities.values():
        out += _entity(kind)
    out += _relationships(registry)
    out += _classification(registry)
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
