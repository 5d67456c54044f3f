"""The `bastion` command driven in-process, against the engine under test (`cli` fixture)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    # Nothing from the developer's environment may pick another database, tenant or width.
    for name in ("BASTION_DATABASE_URL", "BASTION_TENANT", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner(env={"BASTION_HOME": str(tmp_path / "home"), "BASTION_ACTOR": "tester"})


class Cli:
    def __init__(self, runner: CliRunner, url: str):
        self.runner, self.url = runner, url

    def __call__(self, *args: str, tenant: str | None = None, code: int = 0, input=None):
        argv = ["--db", self.url, *(["--tenant", tenant] if tenant else []), *args]
        result = self.runner.invoke(app, argv, input=input)
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    def json(self, *args: str, tenant: str | None = None, input=None):
        return json.loads(self(*args, "--json", tenant=tenant, input=input).stdout)


@pytest.fixture
def cli(runner, database_url) -> Cli:
    c = Cli(runner, database_url)
    c("init")  # the migrated fixture database has no tenant yet
    return c


def one_error_line(result) -> str:
    """The single `error: …` line a user mistake prints on stderr (and nothing on stdout)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    return lines[0]
