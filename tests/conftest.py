"""Every storage test runs on both engines: `store` is parametrized over SQLite and PostgreSQL.

PostgreSQL comes from BASTION_TEST_DATABASE_URL or a throwaway cluster this session starts
(tests/pg_cluster.py). When neither is possible the run stops with an error: the PostgreSQL half
is never skipped.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))

from pg_cluster import PostgresUnavailable, test_database_url  # noqa: E402

from bastion.store import migrate  # noqa: E402
from bastion.store.store import Store  # noqa: E402

ENGINES = ("sqlite", "postgresql")
_names = itertools.count()


class _Postgres:
    """One server per test process; one fresh database per test, cloned from a migrated template."""

    def __init__(self, stack: ExitStack):
        self.admin_url = make_url(stack.enter_context(test_database_url()))
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.prefix = f"bastion_test_{worker}_{os.getpid()}"
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=None)
        stack.callback(self.admin.dispose)
        self.template = f"{self.prefix}_template"
        self._create(self.template)
        engine = create_engine(self.url(self.template))
        migrate.upgrade(engine)
        engine.dispose()
        stack.callback(self._drop, self.template)

    def url(self, database: str) -> str:
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def _create(self, name: str, template: str | None = None) -> None:
        clause = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))

    def _drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def fresh(self, migrated: bool = True) -> tuple[str, str]:
        name = f"{self.prefix}_{next(_names)}"
        self._create(name, self.template if migrated else None)
        return name, self.url(name)


@pytest.fixture(scope="session")
def postgres():
    with ExitStack() as stack:
        try:
            yield _Postgres(stack)
        except PostgresUnavailable as exc:
            pytest.exit(f"PostgreSQL is required for the test suite: {exc}", returncode=3)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    store = Store(f"sqlite:///{path}")
    migrate.upgrade(store.engine)
    store.close()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(params=ENGINES)
def engine_name(request) -> str:
    return request.param


@pytest.fixture
def database_url(engine_name, request, tmp_path):
    """URL of a fresh, empty database on the engine under test (migrated unless the test is
    marked `unmigrated`)."""
    migrated = request.node.get_closest_marker("unmigrated") is None
    if engine_name == "sqlite":
        path = tmp_path / "bastion.db"
        if migrated:
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        pg: _Postgres = request.getfixturevalue("postgres")
        name, url = pg.fresh(migrated)
        yield url
        pg._drop(name)


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    yield s
    s.close()


@pytest.fixture
def tenant(store):
    store.ensure_tenant("default")
    return store.tenant("default")


def pytest_configure(config):
    config.addinivalue_line("markers", "unmigrated: the database starts empty (no migrations)")


def pytest_sessionstart(session):
    # Fail at once, before any test, when PostgreSQL cannot be had (never a silent skip).
    if os.environ.get("BASTION_TEST_DATABASE_URL"):
        return
    from pg_cluster import find_pg_bindir

    if find_pg_bindir() is None:
        raise pytest.UsageError(
            "PostgreSQL is required for the test suite: no server binaries found. Run "
            "scripts/ensure-postgres (make test does) or set BASTION_TEST_DATABASE_URL."
        )
