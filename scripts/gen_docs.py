#!/usr/bin/env python
"""Generate the database team's documents:

    python scripts/gen_docs.py er > docs/er-diagram.md
    python scripts/gen_docs.py query-patterns BENCH.json > docs/query-patterns.md

BENCH.json is what `bench/query_patterns.py --json` wrote (the plans and times at scale); the
list of patterns and the indexes they must use come from bastion/store/patterns.py and are
checked fresh by tests/ops/test_query_patterns.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.ops import erd  # noqa: E402
from bastion.store import patterns  # noqa: E402

BEGIN, END = "<!-- patterns: generated from bastion/store/patterns.py -->", "<!-- /patterns -->"


def pattern_table() -> str:
    """The checked part: every pattern, what it is for, the library call's statement match and
    the index(es) the test requires on both engines."""
    lines = [BEGIN, "", "| # | Pattern | What for | Statement (the library's, matched by) | Must use |",
             "|---|---|---|---|---|"]
    for i, p in enumerate(patterns.PATTERNS, 1):
        must = " or ".join(f"`{x}`" for x in p.indexes)
        lines.append(f"| {i} | {p.name} | {p.what} | `{p.match}` | {must} |")
    return "\n".join([*lines, "", END])


def query_patterns(bench: list[dict]) -> str:
    by_engine = {r["engine"]: {p["name"]: p for p in r["patterns"]} for r in bench}
    runs = ", ".join(f"{r['engine']}: {r['entities']:,} entities per tenant loaded in "
                     f"{r['load_seconds']} s, floor (`SELECT 1` round trip) {r['floor_ms']:.3f} ms"
                     for r in bench)
    out = ["# Query patterns", "",
           "The 25 most common queries the store issues, each captured from the library call that "
           "sends it (`bastion/store/patterns.py`: a cursor listener records the statement, which is "
           "EXPLAINed with its own parameters in a transaction bound to the tenant, as the "
           "application role on PostgreSQL). `tests/ops/test_query_patterns.py` fails, on either "
           "engine, when a pattern's statement no longer uses one of the indexes listed under "
           "\"Must use\" (on PostgreSQL with sequential scans disabled, so that its small tables "
           "show which index the statement can use; SQLite plans with ANALYZE statistics of "
           "6,000 entities in two tenants).", "",
           "Regenerate: `python bench/query_patterns.py --json BENCH.json` then "
           "`python scripts/gen_docs.py query-patterns BENCH.json > docs/query-patterns.md`.", "",
           pattern_table(), "",
           "## At scale", "",
           f"Measured by `bench/query_patterns.py` ({runs}; 3 entities per row of the asset → port "
           "→ risk chain, so about 1M nodes, 1M typed rows, 0.67M edges and 1.67M events in the "
           "measured tenant, plus a second tenant a tenth its size). Plans with real statistics "
           "(ANALYZE) and default planner settings; time is the median of the library call "
           "(statement, transaction, tenant binding, row decoding), ratio is that over the floor.",
           "", "| # | Pattern | SQLite index | SQLite ms | PostgreSQL index | PostgreSQL ms |",
           "|---|---|---|---|---|---|"]
    for i, p in enumerate(patterns.PATTERNS, 1):
        cells = []
        for engine in ("sqlite", "postgresql"):
            m = by_engine.get(engine, {}).get(p.name)
            cells += (["not measured", ""] if m is None else
                      [", ".join(f"`{x}`" for x in m["indexes"]) or "none (scan)",
                       f"{m['ms']:.2f} (×{m['ratio']:,.0f})"])
        out.append(f"| {i} | {p.name} | {' | '.join(cells)} |")
    out += ["", "## The statements and their plans at scale", ""]
    for i, p in enumerate(patterns.PATTERNS, 1):
        out.append(f"### {i}. {p.name}")
        out.append("")
        for engine in ("sqlite", "postgresql"):
            m = by_engine.get(engine, {}).get(p.name)
            if m is None:
                continue
            out += [f"{engine}:", "", "```sql", m["statement"], "```", "", "```", m["plan"], "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["er"]:
        sys.stdout.write(erd.render())
    elif sys.argv[1:2] == ["query-patterns"] and len(sys.argv) == 3:
        sys.stdout.write(query_patterns(json.loads(Path(sys.argv[2]).read_text())))
    else:
        sys.exit(__doc__)
