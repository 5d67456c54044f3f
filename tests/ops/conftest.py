"""Second databases for the operations tests: a restore or import target on the same engine as
the one under test, or on the other engine."""

from __future__ import annotations

import itertools
from typing import Callable

import pytest

from bastion.store import migrate
from bastion.store.store import Store
from cli_harness import cli, runner
from reliability.test_app_role import owned  # a database of a non-superuser owner

__all__ = ["cli", "runner", "owned", "make_database", "other_engine"]  # fixtures

_n = itertools.count()


@pytest.fixture
def make_database(request, tmp_path) -> Callable[[str, bool], str]:
    """make_database(engine, migrated) → URL of a fresh database, dropped after the test."""
    dropped = []

    def make(engine: str, migrated: bool = True) -> str:
        if engine == "sqlite":
            url = f"sqlite:///{tmp_path / f'other-{next(_n)}.db'}"
            if migrated:
                s = Store(url)
                migrate.upgrade(s.engine)
                s.close()
            return url
        pg = request.getfixturevalue("postgres")
        name, url = pg.fresh(migrated)
        dropped.append((pg, name))
        return url

    yield make
    for pg, name in dropped:
        pg._drop(name)


@pytest.fixture
def other_engine(engine_name) -> str:
    return "postgresql" if engine_name == "sqlite" else "sqlite"
