"""`bastion coverage …`: coverage reports, gaps, overlaps, drift, history, Navigator layers and
the CI gate."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="ATT&CK coverage of your detections, per account and tactic.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="coverage", rich_help_panel="Coverage")
