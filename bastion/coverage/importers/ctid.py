"""CTID Mappings Explorer JSON (the MapEx unified schema: `metadata` + `mapping_objects`):
native cloud security controls and the ATT&CK techniques they protect, detect or respond to.

One detection per capability (`capability_id` is the rule id, `capability_description` the
name, `capability_group` the service, type cloud_control); its `raw` is the canonical JSON of
the capability's mapping objects, so a changed score is a new revision. One mapping per
(capability, technique), method vendor, mapped_by `ctid:<framework>`, attack_version from
`metadata.attack_version`. When a capability scores one technique in several categories
(protect and detect …) the highest score sets the confidence and the rationale lists each
category with its comment. Confidence: significant 1.0, partial 0.6, minimal 0.3.
Rows without a score (`non_mappable` status or mapping type, a null score) map nothing: they are
counted and listed as notes; a capability with only such rows is still a detection.

The file maps one platform's controls (`metadata.mapping_framework`: aws, azure, gcp …): it
yields an `Origin` first — source `ctid:<framework>` (the inventory it belongs to) and, when the
framework is a cloud provider, that provider (the importer refuses it for another provider's
account).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import orjson

from bastion.coverage.importers import Invalid, Malformed, Mapped, Note, Origin, Parsed, cloud_provider

NAME = "ctid"
DESCRIPTION = "CTID Mappings Explorer JSON (cloud controls → ATT&CK, with scores)"
SUFFIXES = (".json",)
CONFIDENCE = {"significant": 1.0, "partial": 0.6, "minimal": 0.3}
INVALID_ITEM = "mapping"  # a bad row is a skipped mapping, not a skipped detection


def sniff(name: str, head: bytes) -> bool:
    return head.lstrip()[:1] == b"{" and b'"mapping_objects"' in head or (
        b'"mapping_framework"' in head and b'"metadata"' in head)


def load(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON ({exc})") from None


def parse(path: Path, text: str, where: str) -> Iterator[Origin | Parsed | Invalid | Note]:
    doc = load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("mapping_objects"), list):
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise Malformed(f"not a CTID mappings file: no mapping_objects list (found {kind or 'another JSON document'})")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    framework = str(meta.get("mapping_framework") or "ctid")
    if meta.get("mapping_framework"):
        stated = str(meta["mapping_framework"]).strip()
        yield Origin(f"ctid:{stated.lower()}"[:100], cloud_provider(stated),
                     "metadata.mapping_framework", stated)
    version = meta.get("attack_version")
    version = str(version) if version else None
    capabilities: dict[str, dict[str, Any]] = {}
    skipped = 0
    for i, row in enumerate(doc["mapping_objects"]):
        place = f"mapping_objects[{i}]"
        if not isinstance(row, dict):
            yield Invalid(place, "not a JSON object")
            continue
        cap = row.get("capability_id")
        if not cap or not isinstance(cap, str):
            yield Invalid(place, "capability_id is missing")
            continue
        entry = capabilities.setdefault(cap, {"where": place, "rows": [], "first": row})
        entry["rows"].append(row)
        status, score = row.get("status"), row.get("score_value")
        if status == "non_mappable" or row.get("mapping_type") == "non_mappable" or score is None:
            skipped += 1
            continue
        technique = row.get("attack_object_id")
        if not technique:
            yield Invalid(place, "attack_object_id is missing")
            continue
        if str(score).lower() not in CONFIDENCE:
            yield Invalid(place, f"score_value {score!r} is not minimal, partial or significant")
            continue
    for cap, entry in capabilities.items():
        rows = entry["rows"]
        first = entry["first"]
        by_technique: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            score = row.get("score_value")
            if (row.get("status") == "non_mappable" or row.get("mapping_type") == "non_mappable"
                    or score is None or not row.get("attack_object_id")
                    or str(score).lower() not in CONFIDENCE):
                continue
            by_technique.setdefault(str(row["attack_object_id"]).strip(), []).append(row)
        mappings = []
        for technique, trows in by_technique.items():
            best = max(CONFIDENCE[str(r["score_value"]).lower()] for r in trows)
            parts = []
            for r in trows:
                part = f"{r.get('score_category') or 'score'}/{str(r['score_value']).lower()}"
                if r.get("comments"):
                    part += f": {r['comments']}"
                parts.append(part)
            mappings.append(Mapped(technique, best, "vendor", f"ctid:{framework}"[:200],
                                   "; ".join(parts)[:2000], version))
        raw = orjson.dumps(sorted(rows, key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)),
                           option=orjson.OPT_SORT_KEYS).decode()
        yield Parsed(where=f"capability {cap}", rule_id=cap, raw=raw, type="cloud_control",
                     name=str(first.get("capability_description") or cap)[:500],
                     service=str(first.get("capability_group") or "")[:100] or None,
                     source_path=where, mappings=mappings)
    if skipped:
        yield Note("", f"{skipped} mapping object(s) without a score (non_mappable or null score) map nothing")
