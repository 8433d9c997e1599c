from __future__ import annotations

import math
from pathlib import Path
import sys

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_simulated_extrapolation_quick(capsys: pytest.CaptureFixture[str]) -> None:
    import simulated_extrapolation as bench

    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| joint (robust, default) |" in out and "separable SNR inf" in out


def test_simulated_extrapolation_noiseless_separable_scores() -> None:
    import simulated_extrapolation as bench

    res = bench.scenario(("separable", math.inf, 0, ("joint (robust, default)", "direct transfer"), 50))
    # Noiseless separable landscape: the joint law recovers (essentially) the whole gain.
    assert res["joint (robust, default)"] > 0.95
    assert res["joint (robust, default)"] > res["direct transfer"]
