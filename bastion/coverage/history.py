"""Coverage history (snapshots, each tagged with its ATT&CK release) and drift between two
detection inventories. docs/coverage.md#history-and-drift.

A coverage snapshot stores the overall and per-tactic figures and the score of every covered
technique of one account (or of the tenant, account `*`), with the method and the ATT&CK domain
and version it was measured on, and the detection snapshot (inventory) it was computed from.

Drift compares two detection snapshots of one account from the same import source — like with
like (by default its newest and the one before it from that source: each source keeps its own
inventory). A detection snapshot maps each detection key to [content hash, status, health,
technique ids it counts through]:

- added / removed: keys only in the newer / older inventory;
- modified: the content hash changed;
- disabled: enabled before, disabled or deprecated now; enabled: the reverse;
- health: the health changed (e.g. healthy → broken).

Two coverage deltas, per tactic and overall:

- `source_delta`, like with like: the coverage the source's inventory alone gives at each of the
  two instants (from the technique ids each snapshot keeps, measured on the given catalog and the
  account's platforms). Unavailable for snapshots taken before those ids were kept.
- `coverage_delta`: the account's coverage at the two instants — the coverage snapshot taken
  with each inventory (the latest tied to it, same method and ATT&CK domain — an import ties
  one per domain its detections map into — taken before the account's next
  inventory). When the newer inventory is the account's latest and has no coverage snapshot,
  its side is computed now (given a catalog); a side with neither is unavailable and the delta
  omitted. It includes what the account's other sources changed in between: those inventories
  are listed in `between`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bastion.coverage.attack import normalize_domain
from bastion.coverage.catalog import Catalog
from bastion.coverage.compute import (DEFAULT_MIN_CONFIDENCE, TENANT, Coverage, _account_arg, _Plan,
                                      compute)
from bastion.errors import InvalidValue, NotFound


def _tactics_json(cov: Coverage) -> dict[str, Any]:
    return {t.id: {"shortname": t.shortname, "name": t.name, "covered": t.covered,
                   "total": t.total, "percent": t.percent} for t in cov.tactics}


def snapshot(tenant, catalog: Catalog, account=None, detection_snapshot_id: int | None = None, *,
             method: str = "default", aggregation: str = "count",
             coverage: Coverage | None = None, at: datetime | None = None) -> int:
    """Compute (or take `coverage`) and store a coverage snapshot; returns its id. For an
    account without `detection_snapshot_id`, the account's latest detection snapshot is tied."""
    acct = _account_arg(tenant, account)
    cov = coverage or compute(tenant, catalog, account=acct, method=method, aggregation=aggregation)
    key = acct.key if acct is not None else TENANT
    if detection_snapshot_id is None and acct is not None:
        snaps = tenant.coverage.detection_snapshots(account=key)
        detection_snapshot_id = snaps[-1]["id"] if snaps else None
    techniques = {t.id: t.score for t in cov.techniques.values() if t.covered}
    return tenant.coverage.add_snapshot(
        account=key, taken_at=at or datetime.now(timezone.utc), method=cov.method,
        attack_domain=cov.domain, attack_version=cov.version,
        detection_snapshot_id=detection_snapshot_id, overall=cov.overall,
        tactics=_tactics_json(cov), techniques=techniques)


def history(tenant, account=None, *, method: str | None = None, domain: str = "enterprise",
            techniques: bool = True) -> list[dict[str, Any]]:
    """The coverage snapshots of one account (tenant-level without one) measured on one ATT&CK
    domain, oldest first: a series never mixes domains."""
    acct = _account_arg(tenant, account)
    return tenant.coverage.snapshots(account=acct.key if acct else TENANT, method=method,
                                     attack_domain=normalize_domain(domain),
                                     with_techniques=techniques)


def _resolve_pair(tenant, account, from_id, to_id) -> tuple[str, dict, dict]:
    if from_id is not None or to_id is not None:
        wanted = [i for i in (from_id, to_id) if i is not None]
        found = {s["id"]: s for s in tenant.coverage.detection_snapshots(ids=wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"no detection snapshot {missing[0]}")
        accounts = {s["account"] for s in found.values()}
        if account is not None:
            acct = _account_arg(tenant, account)
            if accounts != {acct.key}:
                raise InvalidValue(f"detection snapshot {wanted[0]} is not of account {acct.key}")
        if len(accounts) > 1:
            raise InvalidValue("the two detection snapshots are of different accounts")
        key = accounts.pop()
        listing = tenant.coverage.detection_snapshots(account=key)
        ids = [s["id"] for s in listing]
        if to_id is None:
            to_id = ids[-1]
        if from_id is None:
            source = next(s["source"] for s in listing if s["id"] == to_id)
            older = [s["id"] for s in listing if s["id"] < to_id and s["source"] == source]
            if not older:
                raise NotFound(f"no detection snapshot of {key} before {to_id}")
            from_id = older[-1]
    else:
        if account is not None:
            key = _account_arg(tenant, account).key
        else:
            keys = {s["account"] for s in tenant.coverage.detection_snapshots()}
            if len(keys) != 1:
                raise InvalidValue("name the account (--account): "
                                   + ("no account has detection snapshots" if not keys
                                      else f"{len(keys)} accounts have detection snapshots"))
            key = keys.pop()
        listing = tenant.coverage.detection_snapshots(account=key)
        # the newest inventory and the one before it from the same import source
        same = [s["id"] for s in listing if listing and s["source"] == listing[-1]["source"]]
        if len(same) < 2:
            raise NotFound(f"drift needs two detection snapshots of {key} from one source; it "
                           f"has {len(same)} (each detection import takes one)")
        from_id, to_id = same[-2], same[-1]
    snaps = {s["id"]: s for s in tenant.coverage.detection_snapshots(ids=[from_id, to_id],
                                                                     with_detections=True)}
    return key, snaps[from_id], snaps[to_id]


def diff_inventories(old: dict[str, list], new: dict[str, list]) -> dict[str, list]:
    """added / removed / modified / disabled / enabled / health between two inventories."""
    out: dict[str, list] = {"added": [], "removed": [], "modified": [], "disabled": [],
                            "enabled": [], "health": []}
    for key in sorted(new.keys() - old.keys()):
        out["added"].append({"key": key, "status": new[key][1], "health": new[key][2]})
    for key in sorted(old.keys() - new.keys()):
        out["removed"].append({"key": key, "status": old[key][1], "health": old[key][2]})
    for key in sorted(old.keys() & new.keys()):
        (h0, s0, x0), (h1, s1, x1) = (list(old[key]) + [None] * 3)[:3], (list(new[key]) + [None] * 3)[:3]
        if h0 != h1:
            out["modified"].append({"key": key, "from": h0, "to": h1})
        if s0 == "enabled" and s1 != "enabled":
            out["disabled"].append({"key": key, "from": s0, "to": s1})
        elif s0 != "enabled" and s1 == "enabled":
            out["enabled"].append({"key": key, "from": s0, "to": s1})
        if x0 != x1:
            out["health"].append({"key": key, "from": x0, "to": x1})
    return out


def source_coverage(tenant, catalog: Catalog, account: str,
                    inventory: dict[str, list]) -> dict[str, Any] | None:
    """The coverage one inventory (a detection snapshot's `detections`) gives on its own, from the
    technique ids each detection counted through when it was taken; None when the snapshot
    predates those ids."""
    if any(len(v) < 4 for v in inventory.values()):
        return None
    plan = _Plan(catalog, "default", "count", DEFAULT_MIN_CONFIDENCE, None, None)
    targets: dict[str, set[str]] = {}
    for raw, target in plan.pairs:
        targets.setdefault(raw, set()).add(target)
    hits: dict[str, list[int]] = {}
    for entry in inventory.values():
        for tid in set().union(*(targets.get(t, ()) for t in entry[3] or ())):
            hits.setdefault(tid, [0, 1, 0])[0] += 1
    acct = _account_arg(tenant, account)
    platforms = plan.platforms_of(acct)
    counted = plan.applicable(platforms)
    cov = plan.build(account, [account], platforms, counted,
                     {t: [h[0], h[1], h[0]] for t, h in hits.items() if t in counted})
    return {"id": None, "overall": cov.overall, "tactics": _tactics_json(cov),
            "attack_version": cov.version}


def _at_instant(covs: list[dict], listing: list[dict], snap: dict) -> dict | None:
    """The account's coverage snapshot at an inventory's instant: the latest tied to it that was
    taken before the account's next inventory (of any source)."""
    later = [s["taken_at"] for s in listing if s["id"] > snap["id"]]
    tied = [c for c in covs if c["detection_snapshot"] == snap["id"]
            and (not later or c["taken_at"] < later[0])]
    return tied[-1] if tied else None


def drift(tenant, account=None, from_snapshot: int | None = None, to_snapshot: int | None = None,
          *, catalog: Catalog | None = None, method: str = "default",
          domain: str = "enterprise") -> dict[str, Any]:
    """Drift between two detection snapshots of an account (the same source), with the coverage
    delta of that source alone and the account's coverage at the two instants, both measured
    on one ATT&CK domain (`catalog`'s when given): the coverage snapshots of that domain only."""
    domain = catalog.domain if catalog is not None else normalize_domain(domain)
    key, old, new = _resolve_pair(tenant, account, from_snapshot, to_snapshot)
    if old["source"] != new["source"]:
        raise InvalidValue(f"detection snapshots {old['id']} and {new['id']} are of different sources "
                           f"({old['source']}, {new['source']}): drift compares one source's inventories")
    if old["id"] > new["id"]:
        old, new = new, old
    changes = diff_inventories(old["detections"] or {}, new["detections"] or {})
    covs = tenant.coverage.snapshots(account=key, method=method, attack_domain=domain,
                                     detection_snapshot_ids=[old["id"], new["id"]],
                                     with_techniques=False)
    listing = tenant.coverage.detection_snapshots(account=key)
    before, after = _at_instant(covs, listing, old), _at_instant(covs, listing, new)
    recomputed = False
    if after is None and new["id"] == listing[-1]["id"] and catalog is not None:
        cov = compute(tenant, catalog, account=key, method=method)
        after = {"id": None, "overall": cov.overall, "tactics": _tactics_json(cov),
                 "attack_version": cov.version}
        recomputed = True
    own = None
    if catalog is not None and method == "default":
        own = [source_coverage(tenant, catalog, key, s["detections"] or {}) for s in (old, new)]
    between = [{"id": s["id"], "source": s["source"], "taken_at": s["taken_at"]}
               for s in listing if old["id"] < s["id"] < new["id"] and s["source"] != old["source"]]
    return {
        "account": key,
        "source": new["source"],
        "attack_domain": domain,
        "from": {"id": old["id"], "taken_at": old["taken_at"], "source": old["source"],
                 "coverage_snapshot": before["id"] if before else None,
                 "attack_version": before["attack_version"] if before else None},
        "to": {"id": new["id"], "taken_at": new["taken_at"], "source": new["source"],
               "coverage_snapshot": after["id"] if after else None,
               "attack_version": after["attack_version"] if after else None,
               "recomputed": recomputed},
        "changes": changes,
        "counts": {k: len(v) for k, v in changes.items()},
        "source_delta": _coverage_delta(*own) if own else None,
        "coverage_delta": _coverage_delta(before, after),
        "between": between,
    }


def _coverage_delta(before: dict | None, after: dict | None) -> dict[str, Any] | None:
    """Overall and per-tactic figures before → after (None when a side is unavailable)."""
    if before is None or after is None:
        return None
    delta = {"overall": _delta(before["overall"], after["overall"]), "tactics": []}
    for tid in list(after["tactics"]) + [t for t in before["tactics"] if t not in after["tactics"]]:
        a = after["tactics"].get(tid) or {"covered": 0, "total": 0, "percent": 0.0}
        b = before["tactics"].get(tid) or {"covered": 0, "total": 0, "percent": 0.0}
        delta["tactics"].append({"id": tid, "shortname": a.get("shortname") or b.get("shortname"),
                                 **_delta(b, a)})
    return delta


def _delta(before: dict, after: dict) -> dict[str, Any]:
    return {"covered_before": before["covered"], "covered_after": after["covered"],
            "total_before": before["total"], "total_after": after["total"],
            "percent_before": before["percent"], "percent_after": after["percent"],
            "percent_delta": round(after["percent"] - before["percent"], 2)}
