"""A short soak (scripts/soak.py): broker outages and camera stalls, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_soak_loses_no_event(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(REPO / "scripts" / "soak.py"), "--cameras", "2", "--minutes", "2"]
    cmd += ["--seed", "3", "--outage-every", "30", "--json", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {f["kind"] for f in report["faults"]} >= {"broker"}, report["faults"]  # the seed has an outage
    assert report["produced"] > 0 and report["produced_by_type"].get("end", 0) > 0, report
    assert report["missing"] == 0, report["missing_keys"]
    assert report["daemon_exit_code"] == 0
    assert report["fds_end"] <= report["fds_start"] + 5, report["per_minute"]
    assert run.returncode == 0, run.stdout[-3000:]
