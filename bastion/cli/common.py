"""What every command shares: the session (database, tenant, actor), consoles, parsing and output
helpers. No SQL here either: everything goes through `bastion.store.store`."""

from __future__ import annotations

import getpass
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Callable, Iterable, Mapping, Optional, Sequence

import orjson
import typer
from rich.console import Console, RenderHook
from rich.progress import Progress
from rich.table import Column, Table
from rich.text import Text
from sqlalchemy.engine import make_url

from bastion.errors import ConfigError, InvalidValue
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import EntityKind
from bastion.store import export, filters
from bastion.store.engine import default_url
from bastion.store.store import DEFAULT_TENANT, Store, TenantStore

SOURCE = "cli"  # the `source` of every event the CLI writes


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (e.g. a container without a passwd entry)
        return "unknown"


def safe_url(url: str) -> str:
    """A URL fit for messages: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


@dataclass
class Session:
    """The root options, opened lazily: `--help` and usage errors never touch the database."""

    url: str | None
    tenant_name: str = DEFAULT_TENANT
    actor: str = field(default_factory=default_actor)
    _store: Store | None = field(default=None, repr=False)
    _ready: bool = field(default=False, repr=False)

    @property
    def display_url(self) -> str:
        return safe_url(self.url or default_url())

    def store(self, create: bool = True) -> Store:
        """The store, without checking the schema (for init and db commands). `create=False`:
        a SQLite file that is not there is an error, not a new empty database."""
        if self._store is None:
            try:
                self._store = Store(self.url, create=create, on_wait=waiting_message)
            except OSError as exc:  # SQLite: the directory of the file cannot be created
                reason = exc.strerror or exc
                raise ConfigError(f"cannot open database {self.display_url}: {reason}") from None
        return self._store

    def ready_store(self) -> Store:
        """The store of an initialized database at the schema this code expects (never
        creates a database file)."""
        store = self.store(create=False)
        if not self._ready:
            store.require_head(self.display_url)
            self._ready = True
        return store

    def tenant(self) -> TenantStore:
        return self.ready_store().tenant(self.tenant_name)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def waiting_message(holder, timeout: float) -> None:
    """Told by the store when a write starts to wait for the tenant's write lock (a running
    import holds it): one line on stderr; after BASTION_LOCK_TIMEOUT the write fails (Busy)."""
    who = f"import {holder.run_id} by {holder.actor}, running since {fmt_time(holder.started_at)}" \
        if holder else "another writer"
    if holder and holder.kind != "scan":
        who = f"{holder.kind} {who}"
    console(stderr=True).print(Text(f"waiting for {who} (at most {timeout:g} s; "
                                    "BASTION_LOCK_TIMEOUT)", style="yellow"), soft_wrap=True)


def session(ctx: typer.Context) -> Session:
    obj = ctx.find_root().obj
    if not isinstance(obj, Session):  # a command invoked without the root callback (tests)
        obj = ctx.find_root().obj = Session(None)
    return obj


# -- consoles -----------------------------------------------------------------------------------


def console(stderr: bool = False) -> Console:
    """A console on the current stdout/stderr (created per call, so redirection in tests and
    pipes is honoured). Piped output gets a wide page so tables do not wrap keys mid-way."""
    out = SafeConsole(stderr=stderr, highlight=False)  # user data escaped: safe_text
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200
    return out


def print_error(message: str) -> None:
    err = console(stderr=True)
    for line in message.splitlines() or [""]:
        err.print(Text("error: ", style="bold red") + Text(line, style="red"), soft_wrap=True)


def echo_json(value: Any) -> None:
    """JSON on stdout: datetimes as ISO 8601 strings, keys in a stable order (NDJSON exports
    write each row with the same options, on one line)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | export.JSON_OPTIONS,
                                  default=export.json_default).decode())
    sys.stdout.write("\n")


# -- list output: one --format, one --where for every list command --------------------------------

LIST_FORMATS = ("table", "json", *export.FORMATS)

FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", metavar="FORMAT",
    help="table (default), json (the same as --json), or csv / ndjson: EVERY row, all pages, "
         "streamed (CSV with a header row, NDJSON one JSON object a line).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (the same as --format json).")]

WHERE_SYNTAX = (
    "FIELD=VALUE (VALUE,VALUE… any of), FIELD!=VALUE, FIELD>N, >=, <, <= (numbers, times, and "
    "ordered values: severity>=high), FIELD~TEXT (contains), ~TEXT or q=TEXT (text search), "
    "times as 2026-01-01 or -7d; ! in front negates. Repeatable: all must hold. See docs/cli.md.")


def where_option(fields: str) -> Any:
    """The `--where` option of a list command; `fields` says what it may name."""
    return Annotated[Optional[list[str]], typer.Option(
        "--where", "-w", metavar="EXPR", help=f"Filter on {fields}: {WHERE_SYNTAX}")]


def rows_where_option(rows: filters.Rows) -> Any:
    """`--where` of a list whose rows are not entities: the fields come from its `Rows`."""
    text = f"; ~TEXT searches {', '.join(rows.text)}" if rows.text else ""
    return where_option(", ".join(rows.field_names) + text)


def list_format(fmt: str | None, as_json: bool = False, **paging: Any) -> str:
    """table, json, csv or ndjson, from --format and its alias --json. csv and ndjson export
    every row, so the paging options given (option name → value, None when not given, e.g.
    `limit=limit`) are refused with them."""
    if fmt is None:
        return "json" if as_json else "table"
    chosen = fmt.strip().lower()
    if chosen not in LIST_FORMATS:
        raise InvalidValue(f"--format {fmt!r}: one of " + ", ".join(LIST_FORMATS))
    if as_json and chosen != "json":
        raise InvalidValue(f"--json means --format json: leave out one of them")
    given = [name for name, value in paging.items() if value is not None]
    if chosen in export.FORMATS and given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InvalidValue(f"--format {chosen} exports every row: leave out {options}")
    return chosen


def exporting(fmt: str) -> bool:
    return fmt in export.FORMATS


def entity_records(tenant: TenantStore, kind: str, fmt: str, where: list[str] | None, *,
                   limit: int, **equal: Any) -> Iterable[Any]:
    """The records of an entity list command: those its --where selects and whose fields equal
    the values of the command's own options that were given (`account=…`); every one, page by
    page, when exporting, else at most `limit`."""
    exprs = [*(where or []), *(f"{name}=" + str(value).replace(",", "\\,")
                               for name, value in equal.items() if value is not None)]
    if exporting(fmt):
        return tenant.iterate(kind, where=exprs or None, page_size=export.PAGE_SIZE)
    return tenant.list(kind, where=exprs or None, limit=limit).records


def emit(fmt: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *,
         json: Callable[[list], Any] | None = None,
         table: Callable[[list], None] | None = None) -> None:
    """Write a list's rows (dict form) in `fmt`: csv/ndjson streamed from `rows` (never held
    whole), json as `json(rows)` (default: the list of rows), table as `table(rows)`."""
    if exporting(fmt):
        export.write_rows(rows, sys.stdout, fmt, columns)
        return
    rows = list(rows)
    if fmt == "json":
        echo_json(json(rows) if json else rows)
        return
    table(rows)


# -- parsing ------------------------------------------------------------------------------------


def kind_named(name: str) -> EntityKind:
    """An entity kind by its singular or plural name (`asset`, `assets`, `technologies`)."""
    wanted = name.strip().lower()
    for kind in REGISTRY.node_kinds.values():
        if wanted in plural_forms(kind.name):
            return kind
    raise InvalidValue(f"unknown kind {name!r}; kinds: {', '.join(REGISTRY.node_kinds)}")


def plural_forms(name: str) -> set[str]:
    forms = {name, name + "s"}
    if name.endswith("y"):
        forms.add(name[:-1] + "ies")
    return forms


def parse_scalar(text: str) -> Any:
    """A property value: JSON when it parses as JSON (numbers, true/false, lists, objects),
    otherwise the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def parse_pairs(items: Iterable[str] | None, option: str, *,
                json_values: bool = True) -> dict[str, Any]:
    """`NAME=VALUE` pairs into a dict; a name given more than once collects its values in a
    list (for `--where`: any of them)."""
    seen: dict[str, list[Any]] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidValue(f"{option} expects NAME=VALUE, got {item!r}")
        seen.setdefault(name, []).append(parse_scalar(value) if json_values else value)
    return {name: values[0] if len(values) == 1 else values for name, values in seen.items()}


def parse_time(value: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidValue(f"{what}: {value!r} is not an ISO 8601 time "
                           "(e.g. 2026-01-01T00:00:00Z)") from None


# -- formatting ---------------------------------------------------------------------------------


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.utcoffset() is not None and not value.utcoffset():
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return value.isoformat(sep=" ", timespec="seconds")


def fmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


class ProgressBar:
    """A transient Rich progress display on stderr, drawn only when stderr is a terminal and the
    output is not JSON; otherwise `active` is False and callers pass no progress at all."""

    def __init__(self, *columns, enabled: bool = True):
        err = console(stderr=True)
        self.active = enabled and err.is_terminal
        self.progress = Progress(*columns, console=err, transient=True) if self.active else None
        self.task = None

    def __enter__(self) -> "ProgressBar":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    @property
    def callback(self):
        """The object to hand to the library as its progress reporter, or None when not shown."""
        return self if self.active else None


def key_column(header: str = "Key") -> Column:
    """A table column for keys: a key is copied and pasted, so it wraps inside its cell when the
    terminal is narrow and is never cut short with '…'."""
    return Column(header, overflow="fold", min_width=20)


def short_label(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def files_table(title: str, files, columns: tuple[str, ...], totals: dict[str, int],
                shown=lambda f: True) -> Table:
    """An import's per-file table (files with a name, format, status and `columns` counts) with
    a total row when there are several; `shown` picks the rows of a long list."""
    table = Table("File", "Format", *(c.title() for c in columns), "Status", title=title,
                  title_justify="left")
    for f in files:
        if not shown(f):
            continue
        status = Text(f.status, style="green" if f.status == "imported"
                      else "dim" if f.status == "ignored" else "bold red")
        table.add_row(f.name, f.format or "-", *(f"{getattr(f, c):,}" for c in columns), status)
    if len(files) > 1:
        table.add_row(Text("total", style="bold"), "", *(f"{totals[c]:,}" for c in columns), "",
                      end_section=True)
    return table


def print_notes_and_problems(notes: list[str], files, problems: str, more: str) -> None:
    """An import's notes, then each file's listed problems (attribute `problems` of the file
    results) and how many more were not listed (attribute `more`): yellow where the file was
    still imported or ignored, red where it was rejected."""
    out = console()
    for note in notes:
        out.print(Text(note, style="yellow"), soft_wrap=True)
    for f in files:
        style = "yellow" if f.status in ("imported", "ignored") else "red"
        for line in getattr(f, problems):
            out.print(Text(line, style=style), soft_wrap=True)
        if getattr(f, more):
            out.print(Text(f"{f.name}: … and {getattr(f, more)} more", style=style), soft_wrap=True)


# -- control characters in user data (issue 11 point 8) ----------------------------------------

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                     "\u2066-\u2069\ufeff]")


def safe_text(text: str) -> str:
    """User data as a terminal shows it: control characters (an escape sequence, a carriage
    return) and bidirectional or invisible formatting characters (U+202E RIGHT-TO-LEFT OVERRIDE
    …) escaped as `\\uXXXX`, so a name cannot reorder, hide or restyle what a table shows.
    Every console of the CLI applies it to every string and top-level text it prints."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _UNSAFE.search(text) else text


class SafeConsole(Console):
    """A console printing user data through `safe_text`: strings (table cells, printed
    strings) and top-level `Text`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.push_render_hook(_Escaping())

    def render_str(self, text: str, *args: Any, **kwargs: Any) -> Text:
        return super().render_str(safe_text(text), *args, **kwargs)


class _Escaping(RenderHook):
    def process_renderables(self, renderables: list) -> list:
        return [Text(safe_text(r.plain), style=r.style, end=r.end)
                if isinstance(r, Text) and _UNSAFE.search(r.plain) else r for r in renderables]
