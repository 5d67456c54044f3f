"""Against real scanner output in ../shared/datasets (run by `make datasets-check` when the folder
exists): every host, address and URL those tools print normalizes to a stable key, and the whole
set loads through the store on both engines, twice, with the second load changing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.schema.batch import Batch, key_for

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
pytestmark = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} not present")

# JSON fields that hold an asset identifier, per tool (BBOT's data is typed by event type).
FIELDS = ("host", "ip", "url", "matched-at", "matched", "input")
BBOT_TYPES = {"DNS_NAME", "IP_ADDRESS", "URL"}


def _records(path: Path):
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        return
    if text.startswith("["):
        yield from json.loads(text)
        return
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def _identifiers() -> set[str]:
    found: set[str] = set()
    for path in sorted((DATASETS / "scans").glob("*/*.json*")) + sorted((DATASETS / "bbot").glob("*.log")):
        for rec in _records(path):
            for name in FIELDS:
                value = rec.get(name)
                if isinstance(value, str) and value and " " not in value:
                    found.add(value)
            data = rec.get("data")
            if rec.get("type") in BBOT_TYPES:
                value = data.get(rec["type"]) if isinstance(data, dict) else data
                if isinstance(value, str):
                    found.add(value)
    return found


def _asset_value(raw: str) -> str:
    # nuclei prints "host:port" for network templates; the asset is the host.
    if "://" not in raw and raw.count(":") == 1:
        return raw.split(":")[0]
    return raw


def test_every_real_identifier_has_one_stable_key():
    identifiers = _identifiers()
    assert len(identifiers) >= 50, "the shared datasets name some 65 hosts, addresses and URLs"
    for raw in identifiers:
        key = key_for("asset", identifier=_asset_value(raw))
        ident = key.split("#", 3)[3]
        assert key_for("asset", identifier=ident) == key, raw  # normalization is idempotent
    # the same web app as nuclei and httpx spell it
    assert key_for("asset", identifier="https://nuclei-example.com") == key_for(
        "asset", identifier="https://nuclei-example.com/")


def test_real_identifiers_load_twice_without_changes(tenant):
    b = Batch()
    for raw in sorted(_identifiers()):
        b.add("asset", identifier=_asset_value(raw))
    first = tenant.apply(b, actor="datasets", source="shared")
    assert first.created == len({e.prepared[1] for e in b.entities}) >= 50
    again = tenant.apply(b, actor="datasets", source="shared")
    assert (again.created, again.updated, again.events) == (0, 0, 0)
