"""docs/schema.md is rendered from the registry and can never drift from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bastion.schema.docs import REGENERATE, key_recipe, render_markdown
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import Classification, EntityKind, Field, FieldType, Registry, RelationshipKind

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_MD = ROOT / "docs" / "schema.md"


def test_committed_schema_doc_matches_the_registry():
    assert SCHEMA_MD.exists(), f"docs/schema.md is missing; generate it with `{REGENERATE}`"
    assert SCHEMA_MD.read_text(encoding="utf-8") == render_markdown(), (
        f"docs/schema.md is out of date with bastion/schema/kinds.py; regenerate it with "
        f"`{REGENERATE}`"
    )


def test_main_writes_the_rendered_doc_to_stdout():
    out = subprocess.run([sys.executable, "-m", "bastion.schema.docs"], cwd=ROOT, check=True,
                         capture_output=True, text=True, encoding="utf-8").stdout
    assert out == render_markdown()


def test_key_recipes_embed_references_without_a_separator():
    assert key_recipe(REGISTRY.entity("port")) == "#port#{protocol}#{number}{asset}"
    assert key_recipe(REGISTRY.entity("job")) == "#job{target}#{capability}"
    assert key_recipe(REGISTRY.entity("asset")) == "#asset#{group}#{identifier}"


def _section(doc: str, heading: str) -> str:
    start = doc.index(heading + "\n")
    nxt = doc.find("\n#", start + len(heading))
    return doc[start:] if nxt == -1 else doc[start:nxt]


def test_every_declaration_is_documented():
    doc = render_markdown()
    for kind in REGISTRY.entities.values():
        section = _section(doc, f"### {kind.name}")
        assert kind.description in section
        if kind.node:
            assert f"`{key_recipe(kind)}`" in section
        for f in kind.fields:
            row = next(line for line in section.splitlines() if line.startswith(f"| `{f.name}` |"))
            cells = [c.strip() for c in row.strip("|").split(" | ")]
            assert cells[2] == ("yes" if f.required else "no"), row
            assert cells[3] == (f"`{f.default}`" if f.default is not None else ""), row
            for value in f.domain or ():
                assert f"`{value}`" in cells[4], row
            assert cells[6] == f.classification.value, row
            assert f.description in row
    for rel in REGISTRY.relationships.values():
        section = _section(doc, f"### {rel.name}")
        assert rel.description in section
        rows = {line.split(" | ")[0].strip("| `"): line for line in section.splitlines()
                if line.startswith("| `")}
        for s, t in rel.pairs:
            assert f"`{t}`" in rows[s], (rel.name, s, t)
        assert set(rows) == {s for s, _ in rel.pairs}


def test_classification_section_lists_confidential_and_restricted_fields():
    doc = render_markdown()
    section = doc[doc.index("## Data classification"):]
    for level in Classification:
        assert f"- **{level.value}**:" in section
    sensitive = [(k.name, f) for k in REGISTRY.entities.values() for f in k.fields
                 if f.classification in (Classification.CONFIDENTIAL, Classification.RESTRICTED)]
    assert sensitive, "the registry declares confidential and restricted fields"
    for kind, f in sensitive:
        listed = _section(section, f"### {f.classification.value.capitalize()} fields")
        assert f"| `{kind}.{f.name}` |" in listed
    public = [f"`{k.name}.{f.name}`" for k in REGISTRY.entities.values() for f in k.fields
              if f.classification is Classification.PUBLIC]
    assert not any(p in section for p in public)


def test_rendering_follows_the_registry_it_is_given():
    # A registry of one's own: what it declares appears, table cells stay intact.
    reg = Registry()
    reg.add(
        EntityKind("widget", "A test | kind.", key=("name",), fields=(
            Field("name", required=True, max_length=10, description="Pipe | inside."),
            Field("size", FieldType.INT, ge=1, le=9, classification=Classification.RESTRICTED),
            Field("owner", FieldType.KEY, ref_kinds=("widget",)),
        )),
        RelationshipKind("PART_OF", "Nesting.", RelationshipKind.between(("widget",), ("widget",))),
    )
    doc = render_markdown(reg)
    assert "### widget" in doc and "`#widget#{name}`" in doc
    assert "| `name` | str | yes |  |  | ≤ 10 chars | internal | Pipe \\| inside. |" in doc
    assert "| `size` | int | no |  |  | 1 – 9 | restricted |  |" in doc
    assert "| `owner` | key → widget | no |" in doc
    assert "| `widget` | `widget` |" in _section(doc, "### PART_OF")
    assert "| `widget.size` |" in _section(doc, "### Restricted fields")
    assert "None." in _section(doc, "### Confidential fields")
    assert "### asset" not in doc and "HAS_PORT" not in doc
