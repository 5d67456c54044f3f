"""ATT&CK Navigator layers (JSON, layer format 4.x; unknown keys are ignored).

A technique entry counts when it is not disabled (`enabled: false`) and either has a score > 0
or names rules in its `metadata`. Entries whose metadata names rules — items named `rule`,
`rule_id`, `detection`, `analytic` or `sigma` (any case) — give one detection per named rule;
the other counting entries belong to one detection for the whole layer (rule id = the layer's
`name`). Mappings: method analyst, confidence 1.0, mapped_by `navigator:<layer name>`, the
entry's comment as rationale, attack_version from `versions.attack`. A detection's `raw` is
the canonical JSON of the entries it stands for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import orjson

from bastion.coverage.importers import Invalid, Malformed, Mapped, Parsed

NAME = "navigator"
DESCRIPTION = "ATT&CK Navigator layer JSON (4.x)"
SUFFIXES = (".json",)
INVALID_ITEM = "mapping"  # a bad row is a skipped mapping, not a skipped detection
RULE_NAMES = ("rule", "rule_id", "detection", "analytic", "sigma")


def sniff(name: str, head: bytes) -> bool:
    return head.lstrip()[:1] == b"{" and b'"techniques"' in head and (
        b'"versions"' in head or b'"domain"' in head or b'"layer"' in head)


def parse(path: Path, text: str, where: str) -> Iterator[Parsed | Invalid]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("techniques"), list):
        raise Malformed("not an ATT&CK Navigator layer: no techniques list")
    layer = str(doc.get("name") or path.stem).strip() or path.stem
    versions = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
    version = str(versions["attack"]) if versions.get("attack") else None
    by_rule: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for i, entry in enumerate(doc["techniques"]):
        place = f"techniques[{i}]"
        if not isinstance(entry, dict):
            yield Invalid(place, "not a JSON object")
            continue
        technique = entry.get("techniqueID")
        if not technique or not isinstance(technique, str):
            yield Invalid(place, "techniqueID is missing")
            continue
        if entry.get("enabled") is False:
            continue
        rules = []
        for item in entry.get("metadata") or []:
            if isinstance(item, dict) and str(item.get("name", "")).strip().lower() in RULE_NAMES \
                    and str(item.get("value") or "").strip():
                rules.append(str(item["value"]).strip())
        score = entry.get("score")
        try:
            scored = score is not None and float(score) > 0
        except (TypeError, ValueError):
            yield Invalid(place, f"score {score!r} is not a number")
            continue
        if not rules and not scored:
            continue
        for rule in dict.fromkeys(rules or [layer]):
            by_rule.setdefault(rule, []).append((technique.strip(), entry))
    for rule, entries in by_rule.items():
        mappings: dict[str, Mapped] = {}
        for technique, entry in entries:
            comment = entry.get("comment")
            mappings.setdefault(technique.upper(), Mapped(
                technique, 1.0, "analyst", f"navigator:{layer}"[:200],
                (str(comment)[:2000] if comment else f"in layer {layer!r}"), version))
        raw = orjson.dumps({"layer": layer, "rule": rule,
                            "techniques": sorted((e for _t, e in entries),
                                                 key=lambda e: orjson.dumps(e, option=orjson.OPT_SORT_KEYS))},
                           option=orjson.OPT_SORT_KEYS).decode()
        yield Parsed(where=f"rule {rule}" if rule != layer else f"layer {layer}", rule_id=rule, raw=raw,
                     name=layer if rule == layer else rule, service=None, source_path=where,
                     mappings=list(mappings.values()))
