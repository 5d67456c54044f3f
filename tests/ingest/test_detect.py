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
