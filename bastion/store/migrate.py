"""Alembic, driven from the library and the CLI (`bastion db upgrade|downgrade|current`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from bastion.errors import NotFound

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(conn=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _run(engine: Engine, fn, revision: str) -> None:
    with engine.begin() as conn:
        try:
            fn(_config(conn), revision)
        except Exception as exc:  # alembic reports unknown revisions with its own errors
            if type(exc).__name__ in ("CommandError", "ResolutionError"):
                raise NotFound(f"migration: {exc}") from None
            raise


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str = "-1") -> None:
    _run(engine, command.downgrade, revision)


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def revisions() -> list[str]:
    """All revisions, oldest first."""
    script = ScriptDirectory.from_config(_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]
