"""Bastion's per-technique Sigma rule counts equal those of sigma-cli's `sigma analyze attack count`
on a fixture rule set (tests/fixtures/sigma: sub-technique and tactic tags, several rules per
technique, a deprecated rule, a multi-document file, an untagged rule).

sigma-cli (a test extra, requirements/test.txt) downloads the ATT&CK STIX bundle from GitHub the
first time it needs it; offline, this test points pySigma at a small STIX file of the fixture's
techniques (tests/fixtures/attack-mini-stix.json) through `sigma.data.mitre_attack.set_url` and a
private cache directory, then runs the unmodified `sigma analyze attack` command. sigma-cli's
layer lists only techniques its ATT&CK data knows, so the comparison is over those.

The counting rule both follow: a rule counts once for each technique it is tagged with
(`attack.tNNNN[.NNN]`, case-insensitive), sub-techniques on their own (no roll-up to the parent),
every status (deprecated included) and level. Bastion counts detections with a `tag` mapping.
(One known difference, not in the fixture: sigma-cli counts a rule twice when it repeats a tag.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bastion.coverage.inventory import Options, import_detections

pytest.importorskip("sigma.cli", reason="sigma-cli is a test extra (requirements/test.txt)")

FIXTURES = Path(__file__).parent / "fixtures"
RUN = """
import sys
from sigma.data import mitre_attack
mitre_attack.set_cache_dir(sys.argv[1]); mitre_attack.set_url(sys.argv[2])
from sigma.cli.main import main
sys.argv = ["sigma", "analyze", "attack", "--file-pattern", "*.y*ml", "count", sys.argv[3], sys.argv[4]]
main()
"""


def sigma_cli_counts(tmp_path: Path) -> dict[str, int]:
    out = tmp_path / "layer.json"
    proc = subprocess.run([sys.executable, "-c", RUN, str(tmp_path / "cache"),
                           str(FIXTURES / "attack-mini-stix.json"), str(out), str(FIXTURES / "sigma")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    layer = json.loads(out.read_text())
    return {t["techniqueID"]: t["score"] for t in layer["techniques"]}  # one entry per tactic: same score


def test_counts_match_sigma_cli(tenant, tmp_path):
    theirs = sigma_cli_counts(tmp_path)
    r = import_detections(tenant, [str(FIXTURES / "sigma")], Options(actor="tester"))
    assert not r.rejected
    ours = Counter(m.values["technique"] for m in tenant.list("mapping", limit=10000).records
                   if m.values["method"] == "tag")
    known = set(theirs)
    assert {t: n for t, n in ours.items() if t in known} == theirs
    assert theirs["T1685.002"] == 3 and theirs["T1078.004"] == 2 and theirs["T1098.003"] == 2
    assert set(ours) <= known  # the fixture's techniques are all in the mini bundle
