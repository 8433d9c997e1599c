"""Smoke run of benchmarks/proxy_real.py (--quick: a fixture corpus, micro proxies, a few thousand tokens)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
import sys
from typing import Any

import pytest


pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

REPO = Path(__file__).resolve().parents[1]
METHODS = ("AutoScale (joint)", "AutoScale (paper)", "direct transfer", "uniform", "natural", "UniMax", "DoReMi",
           "RegMix")


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("proxy_real_bench", REPO / "benchmarks" / "proxy_real.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["proxy_real_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Path]:
    mod = _module()
    out = tmp_path_factory.mktemp("proxy_real")
    report = mod.main(["--quick", "--out", str(out)])
    return mod, report, out


@pytest.mark.slow
def test_quick_run_reports_every_method(quick: tuple[Any, dict[str, Any], Path], capsys: pytest.CaptureFixture[str]) -> None:
    mod, report, out = quick
    assert tuple(report["methods"]) == METHODS
    text = mod.table(report)
    for m in METHODS:
        assert sum(line.startswith(f"| {m} |") for line in text.splitlines()) == 2  # loss row + weights row
    domains = report["domains"]
    assert len(domains) == 4
    for m, info in report["methods"].items():
        assert len(info["runs"]) == 2, m  # two seeds
        assert abs(sum(info["weights"].values()) - 1.0) < 1e-6, m
        for r in info["runs"]:
            assert set(r["losses"]) == set(domains)
            assert all(math.isfinite(v) and v > 0 for v in r["losses"].values()), m
            assert math.isfinite(r["mean_loss"])
            assert abs(r["tokens_seen"] - report["target"]) <= 4 * 32 * 2  # the target budget, to a few sequences
    saved = json.loads((out / "proxy_real_quick.json").read_text())
    assert set(saved["methods"]) == set(METHODS)
    assert (out / "proxy_real_quick.html").exists()


@pytest.mark.slow
def test_quick_run_compute_accounting(quick: tuple[Any, dict[str, Any], Path]) -> None:
    _, report, _ = quick
    methods = report["methods"]
    ddo = methods["AutoScale (joint)"]["compute"]
    assert ddo > 0
    assert methods["AutoScale (paper)"]["compute"] == ddo == methods["direct transfer"]["compute"]
    # RegMix spends the DDO's compute on runs at the smallest budget, to within one run.
    one_run = report["config"]["budgets"][0] * report["n_params"]
    assert abs(methods["RegMix"]["compute"] - ddo) <= 1.1 * one_run
    assert abs(methods["RegMix"]["compute"] - ddo) / ddo < 0.1
    assert len(report["regmix"]["losses"]) == report["regmix"]["swarm"]
    # DoReMi: reference + proxy training + a third for the reference forward passes, at the smallest budget.
    dr = report["doremi"]
    assert methods["DoReMi"]["compute"] == pytest.approx(dr["compute"]["total"])
    assert dr["compute"]["total"] == pytest.approx((2 + 1 / 3) * dr["tokens"] * dr["n_params"], rel=1e-6)
    for m in ("uniform", "natural", "UniMax"):
        assert methods[m]["compute"] == 0.0


@pytest.mark.slow
def test_quick_run_speedup_is_consistent(quick: tuple[Any, dict[str, Any], Path]) -> None:
    mod, report, _ = quick
    sp = report["speedup"]
    curve = sp["curve"]
    assert len(curve) >= 3  # intermediate checkpoints plus the final evaluation
    assert [t for t, _ in curve] == sorted(t for t, _ in curve)
    for ref in ("uniform", "DoReMi"):
        level = sp[ref]["level"]
        assert level == pytest.approx(sum(r["mean_loss"] for r in report["methods"][ref]["runs"]) / 2)
        if sp[ref]["share"] is None:
            assert min(v for _, v in curve) > level
        else:
            assert 0 < sp[ref]["share"] <= 1.0 + 1e-9
            assert sp[ref]["tokens"] == pytest.approx(mod._crossing(curve, level))


def test_crossing_interpolates() -> None:
    mod = _module()
    curve = [(10.0, 5.0), (20.0, 4.0), (30.0, 3.0)]
    assert mod._crossing(curve, 3.5) == pytest.approx(25.0)
    assert mod._crossing(curve, 6.0) == 10.0
    assert mod._crossing(curve, 2.0) is None
    # A curve that rises again: the first crossing counts.
    assert mod._crossing([(1.0, 3.0), (2.0, 1.0), (3.0, 4.0)], 2.0) == pytest.approx(1.5)
