"""`bastion account …`, `bastion detections …`, `bastion map …`: cloud accounts, their detection
inventories and the detections' ATT&CK mappings."""

from __future__ import annotations

import typer

account_app = typer.Typer(no_args_is_help=True, help="Cloud accounts whose detections are measured.")
detections_app = typer.Typer(no_args_is_help=True, help="Detection inventories: import, list, show, health.")
map_app = typer.Typer(no_args_is_help=True, help="Detection → ATT&CK technique mappings.")


def register(root: typer.Typer) -> None:
    root.add_typer(account_app, name="account", rich_help_panel="Coverage")
    root.add_typer(detections_app, name="detections", rich_help_panel="Coverage")
    root.add_typer(map_app, name="map", rich_help_panel="Coverage")
