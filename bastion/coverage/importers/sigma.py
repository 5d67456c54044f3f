"""Sigma rules (YAML): one detection per rule document.

- A file may hold several rules separated by `---` lines; each document is a rule of its own
  (its `raw` is that document's text; a one-rule file's `raw` is the whole file). Collection
  documents (`action: global|reset|repeat`) are skipped with a note: Bastion stores rules as
  written, it does not expand Sigma v1 collections.
- `id` is required (it is the detection's rule id); `title` becomes the name.
- `tags`: `attack.tNNNN[.NNN]` → a mapping (method tag, confidence 1.0, mapped_by sigma:tags);
  tactic tags (`attack.initial-access`, `attack.ta0001`), groups, software, CVEs and other tags
  are kept in `rule_tags` but map nothing. A tag repeated in one rule is one mapping.
- `author` stays in `raw` (the Detection Rule License asks to keep it); `owner` is not set.
- `status`: stable/test/experimental → enabled, deprecated → deprecated, unsupported → disabled.
- `level` is kept; `logsource` is kept and its `service` (else `product`) becomes the service.
- `logsource.product` naming a cloud provider (aws, azure, gcp, m365, okta, github, kubernetes)
  is the provider the rule runs in: the importer skips rules of another provider than the account's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from bastion.coverage.importers import Invalid, Mapped, Note, Parsed, cloud_provider
from bastion.ingest import limits

NAME = "sigma"
DESCRIPTION = "Sigma rules: YAML files or directories (multi-document files allowed)"
SUFFIXES = (".yml", ".yaml")

TECHNIQUE_TAG = re.compile(r"attack\.(t\d{4}(?:\.\d{3})?)", re.IGNORECASE)
STATUS = {"stable": "enabled", "test": "enabled", "experimental": "enabled",
          "deprecated": "deprecated", "unsupported": "disabled"}
LEVELS = ("informational", "low", "medium", "high", "critical")
_SEPARATOR = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)


def sniff(name: str, head: bytes) -> bool:
    if name.lower().endswith(SUFFIXES):
        return True
    text = head.decode("utf-8", "replace")
    return bool(re.search(r"^(logsource|detection):", text, re.MULTILINE))


def documents(text: str) -> list[str]:
    """The file's YAML documents as text (a file without separators is one document)."""
    parts = _SEPARATOR.split(text)
    return [p for p in parts if p.strip() and not all(
        ln.strip().startswith("#") or not ln.strip() for ln in p.splitlines())]


def parse(path: Path, text: str, where: str) -> Iterator[Parsed | Invalid | Note]:
    docs = documents(text)
    many = len(docs) > 1
    for n, doc in enumerate(docs, start=1):
        place = f"document {n}" if many else ""
        try:  # the safe loader, refusing aliases (a "billion laughs" bomb) and deep nesting
            rule = limits.load_yaml(doc)
        except limits.LimitExceeded as exc:
            yield Invalid(place, str(exc))
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            yield Invalid(place, f"invalid YAML{at}: {problem}")
            continue
        if rule is None:
            continue
        if not isinstance(rule, dict):
            yield Invalid(place, f"not a Sigma rule (a YAML {type(rule).__name__}, not a mapping)")
            continue
        if rule.get("action") in ("global", "reset", "repeat"):
            yield Note(place, f"skipped: Sigma collection document (action: {rule['action']}) is not expanded")
            continue
        yield _rule(rule, doc if many else text, place, where)


def _rule(rule: dict[str, Any], raw: str, place: str, where: str) -> Parsed | Invalid:
    rule_id = rule.get("id")
    if rule_id is None or not str(rule_id).strip():
        title = rule.get("title")
        return Invalid(place or (f"rule {title!r}" if title else ""), "rule has no id")
    if "detection" not in rule and "correlation" not in rule:
        return Invalid(place or f"rule {rule_id}", "not a Sigma rule (no detection section)")
    tags = rule.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return Invalid(place or f"rule {rule_id}", "tags: must be a list of strings")
    status = str(rule.get("status") or "experimental").strip().lower()
    if status not in STATUS:
        return Invalid(place or f"rule {rule_id}",
                       f"status: {status!r} is not a Sigma status ({', '.join(STATUS)})")
    level = rule.get("level")
    if level is not None:
        level = str(level).strip().lower()
        if level not in LEVELS:
            return Invalid(place or f"rule {rule_id}", f"level: {level!r} is not one of {', '.join(LEVELS)}")
    logsource = rule.get("logsource") if isinstance(rule.get("logsource"), dict) else None
    service = None
    if logsource:
        service = logsource.get("service") or logsource.get("product")
    seen: dict[str, Mapped] = {}
    for tag in tags:
        m = TECHNIQUE_TAG.fullmatch(tag.strip())
        if m:
            technique = m.group(1).upper()
            seen.setdefault(technique, Mapped(technique, 1.0, "tag", "sigma:tags",
                                              f"Sigma tag {tag.strip()}"))
    return Parsed(
        where=place, rule_id=str(rule_id).strip(), raw=raw, type="sigma_rule",
        name=str(rule.get("title") or "")[:500] or None,
        service=str(service)[:100] if service else None, status=STATUS[status], level=level,
        rule_tags=list(tags) or None,
        logsource=_plain(logsource), source_path=where,
        provider=cloud_provider(logsource.get("product")) if logsource else None,
        mappings=list(seen.values()))


def _plain(value: Any) -> Any:
    """YAML values as JSON-able values (dates become ISO text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
