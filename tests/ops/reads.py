"""What a tenant answers through the library's reads, in one comparable value: two databases
holding the same tenant must give equal `reads()`, whatever their engines."""

from __future__ import annotations

from typing import Any

from bastion.coverage import history
from bastion.schema.kinds import REGISTRY
from bastion.store import catalog as catalog_store
from bastion.store.store import Store


def reads(store: Store, name: str) -> dict[str, Any]:
    t = store.tenant(name)
    out: dict[str, Any] = {"counts": t.counts(), "settings": t.settings()}
    keys = []
    for kind in REGISTRY.node_kinds:
        records = [r.as_dict() for r in t.iterate(kind)]
        out[f"list {kind}"] = records
        keys += [r["key"] for r in records]
    out["links"] = {k: sorted((lk.relationship, lk.source, lk.target, repr(lk.properties),
                               lk.first_seen, lk.last_seen) for lk in t.links(k)) for k in keys}
    out["history"] = {k: [e.as_dict() for e in t.history(k)] for k in keys}
    events, after = [], 0
    while batch := t.events(after_seq=after, limit=500):
        events += [e.as_dict() for e in batch]
        after = batch[-1].seq
    out["events"] = events
    # As the entities were before the newest event (history folded from the log).
    if events:
        before = events[-1]["occurred_at"]
        out["as_of"] = {k: (r.as_dict() if (r := t.get(k, as_of=before)) else None) for k in keys}
    out["runs"] = [r.as_dict() for r in t.runs.list(1000)]
    out["coverage snapshots"] = t.coverage.snapshots()
    out["detection snapshots"] = t.coverage.detection_snapshots(with_detections=True)
    out["accounts"] = [repr(a) for a in t.coverage.accounts()]
    out["gap decisions"] = [repr(g) for g in t.coverage.gap_decisions()]
    out["coverage history"] = history.history(t)
    catalog = catalog_store.load(store.engine)
    out["catalog"] = (catalog.version, len(catalog.techniques)) if catalog else None
    return out
