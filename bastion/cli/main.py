"""The `bastion` command: a thin layer over the library (bastion.store), no SQL.

User mistakes (any BastionError, bad options, an unreachable or uninitialized database) print one
red `error: …` line on stderr and exit with the error's exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup

from bastion.errors import BastionError, ValidationFailed
from bastion.store.engine import database_error
from bastion.store.store import DEFAULT_TENANT
from bastion.cli import add as add_cmd
from bastion.cli import attack as attack_cmd
from bastion.cli import changes as changes_cmd
from bastion.cli import coverage as coverage_cmd
from bastion.cli import detections as detections_cmd
from bastion.cli import discover as discover_cmd
from bastion.cli import enrich as enrich_cmd
from bastion.cli import exposures as exposures_cmd
from bastion.cli import graph as graph_cmd
from bastion.cli import ingest as ingest_cmd
from bastion.cli import ops as ops_cmd
from bastion.cli import read as read_cmd
from bastion.cli import server as server_cmd
from bastion.cli import setup as setup_cmd
from bastion.cli import update as update_cmd
from bastion.cli import write as write_cmd
from bastion.cli import relay as relay_cmd
from bastion.cli import webhook as webhook_cmd
from bastion.cli.common import Session, default_actor, print_error


class BastionGroup(TyperGroup):
    """The root group: turns user mistakes into one `error: …` line and an exit code."""

    ORDER = ("init", "demo", "tenant", "db", "schema", "add", "import", "imports", "risk", "enrich",
             "link", "unlink", "update", "delete", "changes", "get", "list", "history", "stats",
             "graph", "attack", "account", "detections", "map", "coverage", "serve", "key", "webhook", "relay")

    def list_commands(self, ctx) -> list[str]:
        # Help lists commands in workflow order (Typer would put sub-groups such as `add` last).
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError, DatabaseError) as exc:
            sess = ctx.obj if isinstance(ctx.obj, Session) else Session(None)
            error = database_error(exc, sess.display_url)
            if error is exc:  # not the user's doing: keep the traceback
                raise
            raise error from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller that handles errors itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(exc.exit_code)
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            print_error(exc.format_message() + where)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except ValidationFailed as exc:
            print_error("\n".join(_problem_line(p) for p in exc.problems))
            sys.exit(exc.exit_code)
        except BastionError as exc:
            print_error(str(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _problem_line(p) -> str:
    # A one-item batch from `bastion add` reports its problems at "item": name the field alone.
    if p.where == "item" and p.field:
        return f"{p.field}: {p.reason}"
    return str(p)


app = typer.Typer(
    cls=BastionGroup,
    name="bastion",
    help="Bastion: attack-surface and detection-coverage data platform.\n\n"
         "Start with `bastion init` (or `bastion demo` for a sample attack surface).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option(
        "--db", metavar="URL",
        help="Database URL (sqlite:///path or postgresql://…). Default: $BASTION_DATABASE_URL, "
             "else $BASTION_HOME/bastion.db (BASTION_HOME defaults to ~/.bastion).")] = None,
    tenant: Annotated[str, typer.Option(
        "--tenant", metavar="NAME", envvar="BASTION_TENANT",
        help="Tenant to read and write.")] = DEFAULT_TENANT,
    actor: Annotated[Optional[str], typer.Option(
        "--actor", metavar="NAME", envvar="BASTION_ACTOR",
        help="Who is making changes, recorded in every event. Default: the OS user.")] = None,
) -> None:
    sess = Session(db, (tenant or DEFAULT_TENANT).strip().lower(), actor or default_actor())
    ctx.obj = sess
    ctx.call_on_close(sess.close)


# Commands, by module; `BastionGroup.ORDER` sorts them in the help.
setup_cmd.register(app)  # `bastion init|demo|db|tenant|schema` (Set up)
app.add_typer(add_cmd.app, name="add", rich_help_panel="Write")
write_cmd.register(app)  # `bastion link|unlink|delete` (Write)
update_cmd.register(app)  # `bastion update KIND --where … --set …` (Write)
ingest_cmd.register(app)  # `bastion import`, `imports`, `risk`
enrich_cmd.register(app)  # `bastion enrich kev|epss`
read_cmd.register(app)  # `bastion get|list|history|stats` (Read)
changes_cmd.register(app)  # `bastion changes` (Read)
graph_cmd.register(app)  # `bastion graph` (Read)
attack_cmd.register(app)  # `bastion attack …` (Coverage)
detections_cmd.register(app)  # `bastion account|detections|map …` (Coverage)
coverage_cmd.register(app)  # `bastion coverage …` (Coverage)
ops_cmd.register(app)  # `bastion backup|restore|retention`, `tenant export|import`, `db health`
discover_cmd.register(app)  # `bastion discover aws|reference` (Coverage)
exposures_cmd.register(app)  # `bastion exposures` (Coverage)
server_cmd.register(app)  # `bastion serve`, `bastion key …` (Serve)
webhook_cmd.register(app)  # `bastion webhook …` (Feed)
relay_cmd.register(app)  # `bastion relay` (Feed)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
