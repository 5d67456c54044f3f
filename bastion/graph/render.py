"""Drawings of a subgraph: Mermaid flowcharts and Graphviz DOT.

Node ids are derived from the key (`n` + the node id in hex), so the same entity has the same id
in every drawing and a diff of two exports shows only what changed. Labels show the kind and the
key; edges are labelled with the relationship. Nodes are listed by (distance, key) and edges by
(source, relationship, target), so output is deterministic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.schema.keys import node_id

if TYPE_CHECKING:
    from bastion.store.traversal import Subgraph

# Fill colours per kind, shared by both renderers (light, so black text stays readable).
COLOURS = {
    "asset": "#dbeafe", "port": "#e0f2fe", "technology": "#ede9fe", "attribute": "#f3f4f6",
    "risk": "#fee2e2", "seed": "#dcfce7", "capability": "#fef9c3", "job": "#fef3c7",
    "integration": "#fce7f3",
}


def graph_id(key: str) -> str:
    """A stable identifier for a key, safe in Mermaid and DOT."""
    return f"n{node_id(key):016x}"


def _ordered(sub: "Subgraph"):
    nodes = sorted(sub.nodes, key=lambda h: (h.distance, h.key))
    edges = sorted(sub.edges, key=lambda e: (e.source, e.relationship, e.target))
    return nodes, edges


def _mermaid_text(text: str) -> str:
    # Mermaid reads `#name;` as an entity code: write '#' itself as one, and quotes and angle
    # brackets too (labels may be rendered as HTML). Control characters would break the line.
    out = []
    for ch in text:
        if ch == "#":
            out.append("#35;")
        elif ch == '"':
            out.append("#quot;")
        elif ch == "<":
            out.append("#lt;")
        elif ch == ">":
            out.append("#gt;")
        elif ch < " " or ch == "\x7f":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def to_mermaid(sub: "Subgraph", *, root: str | None = None) -> str:
    """A Mermaid flowchart (left to right) of the subgraph."""
    nodes, edges = _ordered(sub)
    lines = ["flowchart LR"]
    for h in nodes:
        label = f"{_mermaid_text(h.kind)}<br/>{_mermaid_text(h.key)}"
        lines.append(f'    {graph_id(h.key)}["{label}"]')
    for e in edges:
        lines.append(f"    {graph_id(e.source)} -->|{_mermaid_text(e.relationship)}| "
                     f"{graph_id(e.target)}")
    kinds = sorted({h.kind for h in nodes})
    for kind in kinds:
        lines.append(f"    classDef {kind} fill:{COLOURS.get(kind, '#ffffff')},stroke:#6b7280")
    for kind in kinds:
        members = ",".join(graph_id(h.key) for h in nodes if h.kind == kind)
        lines.append(f"    class {members} {kind}")
    if root is not None and any(h.key == root for h in nodes):
        lines.append("    classDef root stroke:#111827,stroke-width:3px")
        lines.append(f"    class {graph_id(root)} root")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    # Inside a DOT double-quoted string only '"' and '\' are special ('\' also starts label
    # escapes such as \N or \l); newlines are written as the \n escape.
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch < " " or ch == "\x7f":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def to_dot(sub: "Subgraph", *, root: str | None = None) -> str:
    """A Graphviz digraph (left to right) of the subgraph."""
    nodes, edges = _ordered(sub)
    lines = [
        "digraph bastion {",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    for h in nodes:
        label = f"{_dot_text(h.kind)}\\n{_dot_text(h.key)}"
        extra = ", penwidth=3" if h.key == root else ""
        colour = COLOURS.get(h.kind, "#ffffff")
        lines.append(f'    {graph_id(h.key)} [label="{label}", fillcolor="{colour}"{extra}];')
    for e in edges:
        lines.append(f'    {graph_id(e.source)} -> {graph_id(e.target)} '
                     f'[label="{_dot_text(e.relationship)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
