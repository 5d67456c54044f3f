"""`bastion add KIND`: one command per entity kind, generated from the registry.

Each field of a kind becomes an option whose Python type follows the field's type; domains,
ranges, formats and required fields are checked by the library (`Batch.add`), never here, so the
CLI cannot drift from the schema.
"""

from __future__ import annotations

import inspect
import keyword
from typing import Annotated, Any, Callable, Optional

import orjson
import typer
from rich.text import Text

from bastion.errors import InvalidValue
from bastion.schema.batch import Batch, key_for
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import EntityKind, Field, FieldType
from bastion.store import edits
from bastion.cli.common import (
    SOURCE,
    Session,
    console,
    parse_pairs,
    parse_time,
    session,
)

app = typer.Typer(
    help="Add or update an entity (one subcommand per kind).",
    no_args_is_help=True,
)

_PY_TYPES: dict[FieldType, type] = {
    FieldType.STR: str,
    FieldType.INT: int,
    FieldType.FLOAT: float,
    FieldType.BOOL: bool,
    FieldType.DATETIME: str,  # parsed as ISO 8601 below, validated by the library
    FieldType.JSON: str,  # parsed as JSON below
    FieldType.KEY: str,
}

# Seeds of these classes name an asset directly: adding the seed adds that asset too, with a
# DISCOVERED edge from the seed (the asset's provenance is the seed).
SEED_ASSET_CLASSES = {"domain": "domain", "cidr": "cidr", "ip": None}  # None: inferred v4/v6

# Shown under each command's help; one line per kind keeps `--help` concrete.
EXAMPLES = {
    "asset": "bastion add asset --identifier www.acme.example --exposure external",
    "port": "bastion add port --asset '#asset#203.0.113.10#203.0.113.10' --number 443 "
            "--service https",
    "technology": "bastion add technology --cpe 'cpe:2.3:a:apache:http_server:2.4.49'",
    "attribute": "bastion add attribute --parent '#asset#acme.example#acme.example' "
                 "--name owner --value payments-team",
    "risk": "bastion add risk --target '#port#tcp#443#asset#203.0.113.10#203.0.113.10' "
            "--cve CVE-2021-41773 --severity high --status open",
    "seed": "bastion add seed --identifier acme.example",
    "capability": "bastion add capability --name nuclei --category scanner",
    "job": "bastion add job --target '#seed#domain#acme.example' --capability subfinder",
    "integration": "bastion add integration --type aws --name prod-account",
}


def option_name(f: Field) -> str:
    return "--" + f.name.replace("_", "-")


def param_name(f: Field) -> str:
    # Prefixed so that fields named like Python keywords (`class`) or like the command's own
    # options (`properties`) cannot collide.
    name = f"field_{f.name}"
    assert name.isidentifier() and not keyword.iskeyword(name)
    return name


def field_help(kind: EntityKind, f: Field) -> str:
    parts = []
    if f.description:
        parts.append(f.description.rstrip(".") + ".")
    if f.type is FieldType.KEY:
        parts.append("Key of the " + " / ".join(f.ref_kinds) + " it refers to.")
    if f.domain:
        parts.append("One of: " + ", ".join(f.domain) + ".")
    if f.ge is not None and f.le is not None:
        parts.append(f"From {f.ge:g} to {f.le:g}.")
    if f.type is FieldType.DATETIME:
        parts.append("ISO 8601 time, e.g. 2026-01-01T12:00:00Z.")
    if f.type is FieldType.JSON:
        parts.append("JSON text.")
    if f.default is not None:
        parts.append(f"Default: {f.default}.")
    return " ".join(parts)


def _metavar(f: Field) -> str | None:
    if f.type is FieldType.KEY:
        return "KEY"
    if f.domain:
        return f.name.upper()  # the values are listed in the help text
    return {FieldType.STR: "TEXT", FieldType.INT: "INTEGER", FieldType.FLOAT: "NUMBER",
            FieldType.DATETIME: "TIME", FieldType.JSON: "JSON"}.get(f.type)


def _field_parameter(kind: EntityKind, f: Field) -> inspect.Parameter:
    decls = [option_name(f)]
    if f.type is FieldType.BOOL:
        decls = [f"{option_name(f)}/--no-{f.name.replace('_', '-')}"]
    option = typer.Option(
        *decls,
        help=field_help(kind, f),
        metavar=_metavar(f),
        show_default=False,
        rich_help_panel="Key fields" if f.name in kind.key else "Fields",
    )
    annotation = Annotated[Optional[_PY_TYPES[f.type]], option]
    return inspect.Parameter(param_name(f), inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=annotation)


def _common_parameters() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("properties", kw, default=None, annotation=Annotated[
            Optional[list[str]], typer.Option(
                "--property", "-p", metavar="NAME=VALUE", rich_help_panel="Options",
                help="Free-form property (repeatable). VALUE is JSON when it parses as JSON "
                     "(numbers, true/false, lists), otherwise text.")]),
        inspect.Parameter("replace", kw, default=False, annotation=Annotated[
            bool, typer.Option(
                "--replace", rich_help_panel="Options",
                help="Replace the stored entity: fields not given take their defaults (or are "
                     "cleared) and properties not given are dropped. Without it only the fields "
                     "and properties given change.")]),
        inspect.Parameter("merge", kw, default=False, annotation=Annotated[
            bool, typer.Option("--merge", hidden=True,
                               help="Change only the fields given (the default).")]),
        inspect.Parameter("expected_version", kw, default=None, annotation=Annotated[
            Optional[int], typer.Option(
                "--expected-version", metavar="N", rich_help_panel="Options",
                help="Fail unless the stored entity is at this version (0: must not exist yet).")]),
    ]


def _field_values(kind: EntityKind, given: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in kind.fields:
        value = given.get(param_name(f))
        if value is None:
            continue
        if f.type is FieldType.DATETIME:
            value = parse_time(value, option_name(f))
        elif f.type is FieldType.JSON:
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise InvalidValue(f"{option_name(f)}: not valid JSON", f.name) from None
        values[f.name] = value
    return values


def make_add_command(kind: EntityKind) -> Callable[..., None]:
    """Build the `bastion add <kind>` callback with one option per field of the kind."""

    def command(ctx: typer.Context, **given: Any) -> None:
        values = _field_values(kind, given)
        props = parse_pairs(given.get("properties"), "--property") or None
        if given.get("replace") and given.get("merge"):
            raise InvalidValue("--merge and --replace exclude each other")
        add_entity(session(ctx), kind, values, props, given.get("expected_version"),
                   merge=not given.get("replace", False))

    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)]
    # Key fields first: they say which entity is meant.
    ordered = sorted(kind.fields, key=lambda f: kind.key.index(f.name) if f.name in kind.key
                     else len(kind.key))
    params += [_field_parameter(kind, f) for f in ordered]
    params += _common_parameters()
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = f"add_{kind.name}"
    key = ", ".join(kind.key)
    command.__doc__ = (
        f"{kind.description}\n\n"
        f"The {kind.name}'s key is built from: {key}. Adding an existing key changes only the "
        "fields and properties given; the others keep their stored values (--replace replaces "
        "the entity). Applying the same values again changes nothing."
    )
    return command


def add_entity(sess: Session, kind: EntityKind, values: dict[str, Any],
               properties: dict[str, Any] | None, expected_version: int | None,
               *, merge: bool = True) -> None:
    """Apply a one-item batch (plus a seed's asset) and report each key's outcome. The values
    are merged into the stored entity unless `merge` is false (bastion.store.edits.put_batch)."""
    tenant = sess.tenant()
    batch, key = edits.put_batch(tenant, kind.name, values, properties, replace=not merge,
                                 expected_version=expected_version)
    lines: list[Any] = [key]
    if kind.name == "seed":
        lines += _seed_asset(tenant, batch, key)
    result = tenant.apply(batch, actor=sess.actor, source=SOURCE)
    out = console()
    for item in lines:
        if isinstance(item, tuple):  # (asset key, note) of a seed's asset
            asset_key, note = item
            outcome = result.outcome.get(asset_key, "linked")
            out.print(_outcome_line(outcome, asset_key, note), soft_wrap=True)
        else:
            out.print(_outcome_line(result.outcome[item], item), soft_wrap=True)


def _seed_asset(tenant, batch: Batch, seed_key: str) -> list[tuple[str, str]]:
    prepared = batch.entities[-1].prepared
    assert prepared is not None  # Batch.add always prepares
    seed_values = prepared[0]
    if seed_values["class"] not in SEED_ASSET_CLASSES:
        return []
    asset: dict[str, Any] = {"identifier": seed_values["identifier"]}
    cls = SEED_ASSET_CLASSES[seed_values["class"]]
    if cls is not None:
        asset["class"] = cls
    asset_key = key_for("asset", **asset)
    # An asset that already exists keeps its values (criticality, exposure …): only the
    # provenance edge is added. A new one is created with the defaults.
    if tenant.get(asset_key) is None:
        batch.add("asset", **asset)
        note = "(found from the seed)"
    else:
        note = "(existing asset, linked to the seed)"
    batch.link("DISCOVERED", seed_key, asset_key)
    return [(asset_key, note)]


_STYLES = {"created": "green", "updated": "yellow", "unchanged": "dim", "linked": "cyan"}


def _outcome_line(outcome: str, key: str, note: str = "") -> Text:
    text = Text(f"{outcome:<9} ", style=_STYLES.get(outcome, "")) + Text(key, style="bold")
    if note:
        text += Text(" " + note, style="dim")
    return text


for _kind in REGISTRY.node_kinds.values():
    app.command(
        _kind.name,
        help=None,  # from the docstring
        epilog=f"Example: {EXAMPLES[_kind.name]}" if _kind.name in EXAMPLES else None,
        no_args_is_help=True,
    )(make_add_command(_kind))
