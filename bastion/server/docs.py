"""The route table of docs/api.md, generated from the app's routes (`python -m bastion.server.docs`
rewrites the part between the markers; a test fails when it is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

from bastion.schema import roles

BEGIN, END = "<!-- routes:begin -->", "<!-- routes:end -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def route_table_markdown() -> str:
    from bastion.server.app import route_table

    lines = ["| Method | Path | Needs | Roles | What |", "|---|---|---|---|---|"]
    for method, path, permission, route in route_table():
        who = ", ".join(r for r in roles.ROLES if roles.allowed(r, permission))
        lines.append(f"| {method} | `{path}` | {permission.replace('|', ' or ')} | {who} | "
                     f"{(route.summary or '').replace('|', '/')} |")
    return "\n".join(lines)


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{route_table_markdown()}\n{END}{tail}"


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
    sys.stdout.write(f"wrote the route table of {DOC}\n")
