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


def test_simulated_quick_uses_per_domain_noise(tmp_path: Path) -> None:
    import simulated as bench

    report = bench.main(["--quick", "--out", str(tmp_path)])
    assert report["domain_share"] == bench.DOMAIN_SHARE == 0.5
    (res,) = report["results"]
    for name in ("AutoScale (joint)", "AutoScale (separable law)", "direct transfer", "Optuna TPE"):
        assert math.isfinite(res["methods"][name]["share"])
    assert (tmp_path / "simulated_quick.json").exists()


def test_overhead_quick_with_per_domain_losses(capsys: pytest.CaptureFixture[str]) -> None:
    import overhead as bench

    ratio = bench.main(["--quick", "--per-domain"])
    out = capsys.readouterr().out
    assert math.isfinite(ratio) and ratio > 0
    assert "objective records per-domain losses: True" in out and "| AutoScaleSampler |" in out
