"""The quickstart example (`make quickstart`) runs end to end and prints what it promises."""

from __future__ import annotations

import os
from pathlib import Path
import re
import subprocess
import sys

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_prints_optima_extrapolations_and_verification(tmp_path: Path) -> None:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--db", str(tmp_path / "q.db")],
        capture_output=True, text=True, timeout=600, env=env, check=True,
    ).stdout
    assert "complete: True" in out
    # The optimal weights per budget, one row per design budget, 7 weights summing to 1.
    for budget in ("1e+08", "4e+08"):
        row = re.search(rf"^{re.escape(budget)} tokens\s+((?:[\d.]+\s+){{6}}[\d.]+)$", out, re.M)
        assert row is not None, out
        assert sum(float(v) for v in row.group(1).split()) == pytest.approx(1.0, abs=4e-3)
    # The extrapolated mixtures at 4e9 and 4e10 by both methods, judged by the simulator.
    for target in ("4e+09", "4e+10"):
        block = out.split(f"Extrapolated mixture at {target} tokens")[1].split("\n\n")[0]
        gains = {name: int(g) for name, g in re.findall(r"^(joint law \(default\)|paper's rule)\s.*?(-?\d+)%$", block, re.M)}
        assert set(gains) == {"joint law (default)", "paper's rule"}, block
        assert gains["joint law (default)"] >= 90  # the default recovers most of the gain on this easy landscape
    # The verification table: predicted and observed, absolute and as gains, for every check.
    table = out.split("Verification")[1]
    assert "predicted" in table and "pred gain" in table and "obs gain" in table
    checks = re.findall(r"^(verify_optimum|verify_predicted)\s+\S+\s+uniform\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)$",
                        table, re.M)
    assert [c[0] for c in checks].count("verify_optimum") == 2 and [c[0] for c in checks].count("verify_predicted") == 1
    assert "autoscale:summary" in out
