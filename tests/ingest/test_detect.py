"""Format detection over every parser fixture: exactly the fixture's own format recognises it,
through the same sampling `bastion import` uses (first 64 KiB, first JSON value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.ingest import formats
from bastion.ingest.inputs import Input, Opened

SCANS = Path(__file__).parent.parent / "fixtures" / "scans"
# SARIF that is not version 2.1.0 is no SARIF this importer reads: nothing claims it.
CLAIMED_BY_NONE = {"sarif/wrong-version.sarif"}


@pytest.mark.parametrize("fixture", sorted(str(p.relative_to(SCANS)) for p in SCANS.glob("*/*")))
def test_exactly_its_own_format_recognises_each_fixture(fixture):
    opened = Opened(Input(fixture, SCANS / fixture))
    try:
        sample = opened.sample()
    finally:
        opened.close()
    claimed = {name for name, module in formats().items() if module.sniff(sample)}
    assert claimed == (set() if fixture in CLAIMED_BY_NONE else {fixture.split("/")[0]})


@pytest.mark.parametrize("head, graph", [
    (b'{"version": "2.1.0", "runs": []}', False),  # SARIF that starts with "version"
    (b'{"version": "2.1.0", "$schema": "https://x/sarif-2.1.0.json", "runs": [', False),
    (b'{"version": 1, "nodes": [{"kind": "asset", "name": "a.example"}', True),
    (b'{"edges": [], "version": 1}', True),
    (b'{"format": "bastion-graph", "version": 1', True),
    (b'{"format": "other", "nodes": []}', False),
    (b'{"version": 1}', False),  # nothing only a graph document has
    (b'{"nodes": [], "runs": []}', False),
    (b'{"nodes": [], "edge": []}', True),  # its reader names the typo
    (b'[{"template-id": "x"}]', False),
])
def test_graph_documents_are_recognised_by_their_own_members(head, graph):
    from bastion.ingest.inputs import looks_like_graph

    assert looks_like_graph(head) is graph
