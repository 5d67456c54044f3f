"""Every query pattern of docs/query-patterns.md still uses its index on both engines (the plan
of the exact statement the library sends, with its parameters, bound to the tenant)."""

from __future__ import annotations

import pytest

from bastion.store import patterns
from bastion.schema.batch import Batch

from reliability.test_migration_roundtrip import populate


@pytest.fixture
def sampled(store):
    populate(store)
    t = store.tenant("acme")
    b = Batch()
    asset = b.add("asset", identifier="www.acme.example")
    port = b.add("port", asset=asset, number=443, service="https")
    b.add("risk", target=asset, name="weak tls", severity="high")
    b.link("HAS_PORT", asset, port)
    t.apply(b, actor="tester", source="import:nmap")
    assert {asset, port} == {patterns.ASSET, patterns.PORT}
    # Enough rows, in two tenants, for the planners' statistics to mean something (a plan on a
    # table of ten rows is a full scan on any engine).
    store.add_tenant("other")
    for name in ("acme", "other"):
        b = Batch()
        for i in range(3000):
            a = b.add("asset", identifier=f"h{i}.{name}.example")
            p = b.add("port", asset=a, number=8000 + i % 50, state="open" if i % 7 else "filtered")
            b.add("risk", target=p, name=f"finding {i % 40}", severity=("low", "high", "critical")[i % 3],
                  status=("open", "triage", "remediated")[i % 3], priority=i % 100)
            b.link("HAS_PORT", a, p)
        store.tenant(name).apply(b, actor="tester", source="import:nmap")
    patterns.analyze(store)
    last = t.events(after_seq=0, limit=100000)[-1]
    keys = {"cursor": t.list("asset", limit=1).next_cursor, "seq": 1,
            "correlation_id": last.correlation_id}
    return store, t, keys


def test_there_are_25_patterns_with_distinct_names():
    assert len(patterns.PATTERNS) == 25
    assert len({p.name for p in patterns.PATTERNS}) == 25


def test_each_pattern_uses_its_index(sampled):
    """One setup per engine, every pattern checked; the failure lists each pattern off its index."""
    store, t, keys = sampled
    off = []
    for pattern in patterns.PATTERNS:
        captured = patterns.statement_of(store, t, pattern, keys)
        used, plan = patterns.explain(store, t.tenant_id, captured, no_seqscan=True)
        if not used & set(pattern.indexes):
            off.append(f"{pattern.name}: uses {sorted(used)} not {pattern.indexes}\n{plan}")
    assert not off, "\n\n".join(off)


def test_query_patterns_doc_lists_every_pattern_and_its_index():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).parent.parent.parent
    spec = importlib.util.spec_from_file_location("gen_docs", root / "scripts" / "gen_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    doc = (root / "docs" / "query-patterns.md").read_text()
    assert gen.pattern_table() in doc, \
        "docs/query-patterns.md is stale: bench/query_patterns.py, then scripts/gen_docs.py"
    for p in patterns.PATTERNS:  # measured at scale on both engines
        assert doc.count(f"### {patterns.PATTERNS.index(p) + 1}. {p.name}\n") == 1
