"""The one filter syntax (bastion.store.filters): parsing, errors, and the invariant that the SQL
filter selects exactly the rows the Python predicate selects, on both engines."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bastion.errors import InvalidValue
from bastion.schema.batch import Batch
from bastion.schema.kinds import RISK_STATES, SEVERITIES
from bastion.store import export, filters
from cli_harness import Cli, cli, one_error_line, runner  # noqa: F401 (fixtures)

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
TITLES = ["Weak SSH ciphers", "weak ssh MAC", "Apache path traversal", "Ünicode ÜBER title",
          "über lower", "100% CPU_load", "under_score", "back\\slash", None]


def load(tenant, n=48, seed=7):
    """Risks with every kind of value (NULLs too) over three imports at different times."""
    rnd = random.Random(seed)
    keys = []
    for day in range(3):
        b = Batch()
        host = b.add("asset", identifier=f"h{day}.acme.example")
        for i in range(n // 3):
            keys.append(b.add(
                "risk", target=host, name=f"finding {day}-{i}", title=rnd.choice(TITLES),
                severity=rnd.choice(SEVERITIES), status=rnd.choice(RISK_STATES),
                cvss=rnd.choice([None, 0.0, 2.5, 5.0, 7.0, 7.5, 9.8, 10.0]),
                kev=rnd.choice([None, True, False]),
                cve=rnd.choice([None, "CVE-2018-15473", "CVE-2021-41773"])))
        tenant.apply(b, actor="a", source="s", at=T0 + timedelta(days=day))
    return keys


def cased(text: str) -> st.SearchStrategy[str]:
    return st.sampled_from([text, text.upper(), text.title()])


NEG = st.sampled_from(["", "!"])
EXPRESSIONS = st.one_of(
    st.builds(lambda n, op, v: f"{n}severity{op}{v}", NEG,
              st.sampled_from(["=", "!=", ">", ">=", "<", "<="]), st.sampled_from(SEVERITIES).flatmap(cased)),
    st.builds(lambda n, vs: f"{n}status={','.join(vs)}", NEG,
              st.lists(st.sampled_from(RISK_STATES), min_size=1, max_size=3)),
    st.builds(lambda n, op, v: f"{n}cvss{op}{v}", NEG, st.sampled_from(["=", "!=", ">", ">=", "<", "<="]),
              st.sampled_from(["0", "2.5", "5", "7", "7.5", "9.8", "10"])
              | st.floats(0, 10, allow_nan=False).map(lambda f: f"{f:.3f}")),
    st.builds(lambda n, v: f"{n}kev={v}", NEG, st.sampled_from(["true", "false", "yes", "0"])),
    st.builds(lambda n, v: f"{n}cve={v}", NEG, st.sampled_from(["cve-2018-15473", "CVE-2021-41773"])),
    st.builds(lambda n, f, v: f"{n}{f}{v}", NEG, st.sampled_from(["~", "q=", "title~", "name~"]),
              st.sampled_from(["ssh", "SSH", "über", "ÜBER", "%", "_", "\\", "finding 1", "1-"])
              .map(lambda v: v.replace(" ", "-") if v.startswith("finding") else v)),
    st.builds(lambda n, f, op, d, h: f"{n}{f}{op}{(T0 + timedelta(days=d, hours=h)).isoformat()}", NEG,
              st.sampled_from(["first_seen", "last_seen"]), st.sampled_from(["=", ">", ">=", "<", "<="]),
              st.integers(-1, 3), st.sampled_from([0, 12])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exprs=st.lists(EXPRESSIONS, min_size=1, max_size=3))
def test_sql_filter_selects_exactly_what_the_python_predicate_selects(tenant, exprs):
    if not tenant.count("risk"):
        load(tenant)
    everything = list(tenant.iterate("risk", page_size=500))
    flt = filters.parse("risk", exprs)
    expected = sorted(r.key for r in everything if flt.matches(r))
    got = [r.key for r in tenant.iterate("risk", where=flt, page_size=7)]
    assert got == expected, exprs
    assert tenant.count("risk", where=flt) == len(expected)


def test_severity_compares_in_declared_order_not_alphabetically(tenant):
    keys = load(tenant)
    high = {r.key for r in tenant.iterate("risk", where=["severity>=high"])}
    assert high == {k for k in keys if tenant.get(k).values["severity"] in ("high", "critical")}
    assert tenant.count("risk", where=["severity<low"]) == tenant.count("risk", where={"severity": "info"})
    assert tenant.count("risk", where=["severity>critical"]) == 0


def test_relative_times_and_dates(tenant):
    load(tenant)
    now = T0 + timedelta(days=2, hours=1)
    recent = filters.parse("risk", ["first_seen>=-1d"], now=now)
    assert tenant.count("risk", where=recent) == 16
    assert tenant.count("risk", where=["first_seen>=2026-03-02", "first_seen<2026-03-03"]) == 16
    assert tenant.count("risk", where=["first_seen<2026-03-01T00:00:01Z"]) == 16


def test_negation_includes_missing_values(tenant):
    load(tenant)
    total = tenant.count("risk")
    with_cvss = tenant.count("risk", where=["cvss>=0"])
    assert tenant.count("risk", where=["cvss=5"]) + tenant.count("risk", where=["cvss!=5"]) == total
    assert tenant.count("risk", where=["!cvss>=0"]) == total - with_cvss > 0


@pytest.mark.parametrize("expr, message", [
    ("colour=red", "risk has no field 'colour'; fields: target, group, name"),
    ("cvss>=high", "risk.cvss: 'high' is not a number"),
    ("severity>=urgent", "risk.severity cannot be 'urgent'; one of: info, low, medium, high, critical"),
    ("cve=nope", "risk.cve: invalid CVE id 'nope'"),
    ("title>abc", "filter 'title>abc': risk.title cannot be compared with >"),
    ("evidence=x", "filter 'evidence=x': risk.evidence holds lists or objects"),
    ("first_seen>=yesterday", "risk.first_seen: 'yesterday' is not a time"),
    ("kev=maybe", "risk.kev: 'maybe' is not true or false"),
    ("cvss", "filter 'cvss': expected FIELD=VALUE"),
    ("~  ", "filter '~  ': nothing to search for"),
])
def test_bad_filters_are_one_clear_error_naming_the_field(expr, message):
    with pytest.raises(InvalidValue) as exc:
        filters.parse("risk", [expr])
    assert str(exc.value).startswith(message), str(exc.value)


def test_parse_merges_equalities_of_one_field_and_splits_lists():
    flt = filters.parse("risk", ["status=open", "status=triage,ACCEPTED", "severity=high"])
    assert [(c.field, c.op, c.values) for c in flt.conditions] == [
        ("status", "in", ("open", "triage", "accepted")), ("severity", "in", ("high",))]
    assert filters.parse("asset", ["name=a\\,b"]).conditions[0].values == ("a,b",)


def test_canonical_key_spells_keys_like_the_write_path():
    assert filters.canonical_key("#asset#WWW.Example.com.#WWW.Example.com.") == \
        "#asset#www.example.com#www.example.com"
    assert filters.canonical_key("#risk#WWW.example.com#cve-2018-15473") == \
        "#risk#www.example.com#CVE-2018-15473"
    assert filters.canonical_key("#port#TCP#443#asset#10.0.0.1#10.0.0.1") == \
        "#port#tcp#443#asset#10.0.0.1#10.0.0.1"
    assert filters.canonical_key("#asset#example.com#HTTPS://Example.com:443/a") == \
        "#asset#example.com#https://example.com/a"
    # Parts that cannot be normalized (an opaque cloud id) are kept as spelled.
    assert filters.canonical_key("#asset#123456789012#arn:aws:s3:::Bucket") == \
        "#asset#123456789012#arn:aws:s3:::Bucket"
    with pytest.raises(InvalidValue, match="unknown kind 'x'"):
        filters.canonical_key("#mapping#t1078#x")


# -- export ---------------------------------------------------------------------------------------


def test_iterate_streams_every_page_in_order(tenant):
    keys = load(tenant)
    assert [r.key for r in tenant.iterate("risk", page_size=5)] == sorted(keys)
    by_cvss = list(tenant.iterate("risk", order_by="cvss", descending=True, page_size=4))
    assert len(by_cvss) == len(keys)
    scored = [r.values["cvss"] for r in by_cvss if r.values["cvss"] is not None]
    assert scored == sorted(scored, reverse=True)


def test_export_csv_and_ndjson_round_trip(tenant):
    keys = load(tenant, n=6)
    out = io.StringIO()
    assert export.write("risk", tenant.iterate("risk", page_size=2), out, "csv") == 6
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["key"] for r in rows] == sorted(keys)
    assert list(rows[0]) == export.columns("risk")
    assert rows[0]["first_seen"] == "2026-03-01T00:00:00Z"
    out = io.StringIO()
    export.write("risk", tenant.iterate("risk"), out, "ndjson")
    items = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [i["key"] for i in items] == sorted(keys) and items[0]["kind"] == "risk"


def test_cli_list_filters_and_exports_every_page(cli):
    cli("add", "asset", "--identifier", "app.acme.example")
    host = "#asset#app.acme.example#app.acme.example"
    for i, (sev, cvss) in enumerate([("low", 3.1), ("high", 7.5), ("critical", 9.8), ("high", 5.0)]):
        cli("add", "risk", "--target", host, "--name", f"finding {i}", "--title", f"Weak SSH {i}",
            "--severity", sev, "--cvss", str(cvss))
    listed = cli.json("list", "risks", "--where", "severity>=high", "--where", "cvss>=7")["items"]
    assert [r["name"] for r in listed] == ["finding-1", "finding-2"]
    assert cli("list", "risks", "--count", "--where", "~ssh 2", "--where", "!severity=high").stdout.strip() == "1"
    text = cli("list", "risks", "--format", "csv", "--where", "severity!=low").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows] == ["finding-1", "finding-2", "finding-3"]
    lines = cli("list", "risks", "--format", "ndjson", "--sort", "cvss").stdout.splitlines()
    assert [json.loads(line)["cvss"] for line in lines] == [9.8, 7.5, 5.0, 3.1]
    header = cli("list", "ports", "--format", "csv").stdout
    assert header.splitlines() == [",".join(export.columns("port"))]
    msg = one_error_line(cli("list", "risks", "--where", "priority>=lots", code=1))
    assert msg == "error: risk.priority: 'lots' is not a number"
    msg = one_error_line(cli("list", "risks", "--format", "csv", "--limit", "5", code=1))
    assert msg == "error: --format csv exports every row: leave out --limit"
