"""User-supplied and exported graphs: the JSON graph format (`jsonformat`) and drawings of a
subgraph (`render`). The queries themselves live in the store (bastion.store.traversal)."""

from bastion.graph.jsonformat import (
    FORMAT,
    VERSION,
    GraphDocument,
    ImportReport,
    dumps,
    export_document,
    import_documents,
    parse_document,
    plan_batch,
)
from bastion.graph.render import to_dot, to_mermaid

__all__ = [
    "FORMAT",
    "VERSION",
    "GraphDocument",
    "ImportReport",
    "dumps",
    "export_document",
    "import_documents",
    "parse_document",
    "plan_batch",
    "to_dot",
    "to_mermaid",
]
