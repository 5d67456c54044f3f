"""`bastion attack …`: the ATT&CK catalog (import, update, versions, use)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="The MITRE ATT&CK catalog: releases side by side, one active per domain.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="attack", rich_help_panel="Coverage")
