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
METHODS = ("AutoScale (default)", "AutoScale (current)", "AutoScale (guarded, z=1)", "AutoScale (x0.02 design)",
           "AutoScale (paper)",
           "direct transfer", "uniform", "natural", "UniMax", "DoReMi", "RegMix", "DML", "TPE")


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
def test_quick_run_reports_every_method(quick: tuple[Any, dict[str, Any], Path]) -> None:
    mod, report, out = quick
    assert tuple(report["methods"]) == METHODS
    text = mod.table(report)
    for m in METHODS:
        assert sum(line.startswith(f"| {m} |") for line in text.splitlines()) == 2  # loss row + per-domain row
    domains = report["domains"]
    assert len(domains) == 4
    for m, info in report["methods"].items():
        assert [r["seed"] for r in info["runs"]] == [0, 1], m  # two paired seeds
        assert abs(sum(info["weights"].values()) - 1.0) < 1e-6, m
        for r in info["runs"]:
            assert set(r["losses"]) == set(domains)
            assert all(math.isfinite(v) and v > 0 for v in r["losses"].values()), m
            assert abs(r["tokens_seen"] - report["target"]) <= 4 * 32 * 2  # the target budget, to a few sequences
            assert len(r["history"]) >= 3  # evaluations along every target run
    saved = json.loads((out / "proxy_real_quick.json").read_text())
    assert set(saved["methods"]) == set(METHODS)
    assert (out / "proxy_real_quick.html").exists()
    # paired differences: uniform against itself is exactly zero, and each row pairs both seeds
    assert report["paired"]["uniform"]["uniform"]["mean"] == 0.0
    assert all(p["n"] == 2 for p in report["paired"]["uniform"].values())


@pytest.mark.slow
def test_quick_run_compute_accounting(quick: tuple[Any, dict[str, Any], Path]) -> None:
    _, report, _ = quick
    methods = report["methods"]
    ddo = methods["AutoScale (default)"]["compute"]
    assert ddo > 0
    assert methods["AutoScale (paper)"]["compute"] == ddo == methods["direct transfer"]["compute"]
    assert methods["AutoScale (current)"]["compute"] == ddo
    # RegMix and DML share one swarm, TPE runs as many trials: each spends the DDO's compute to within a run.
    for m in ("RegMix", "DML", "TPE"):
        assert abs(methods[m]["compute"] - ddo) / ddo < 0.15, m
    assert methods["RegMix"]["compute"] == methods["DML"]["compute"]
    assert methods["DoReMi"]["compute"] > 0
    for m in ("uniform", "natural", "UniMax"):
        assert methods[m]["compute"] == 0.0


@pytest.mark.slow
def test_quick_run_speedup_is_consistent(quick: tuple[Any, dict[str, Any], Path]) -> None:
    mod, report, _ = quick
    for m, row in report["speedup"].items():
        curve = row["curve"]
        assert len(curve) >= 3, m  # intermediate evaluations plus the final one
        assert [t for t, _ in curve] == sorted(t for t, _ in curve)
        for ref in ("uniform", "DoReMi"):
            s = row[ref]
            assert s["level"] == pytest.approx(sum(r["mean_loss"] for r in report["methods"][ref]["runs"]) / 2)
            if s["share"] is None:
                assert min(v for _, v in curve) > s["level"]
            else:
                assert 0 < s["share"] <= 1.0 + 1e-9
                assert s["tokens"] == pytest.approx(mod._crossing(curve, s["level"]))
    assert report["speedup"]["uniform"]["uniform"]["share"] == pytest.approx(1.0)


@pytest.mark.slow
def test_quick_run_resumes_without_training_again(quick: tuple[Any, dict[str, Any], Path]) -> None:
    import optuna

    mod, report, out = quick
    storage = f"sqlite:///{(out / 'proxy_real_quick.db').resolve()}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    before = {n: len(optuna.load_study(study_name=n, storage=storage).trials) for n in names}
    again = mod.main(["--quick", "--out", str(out)])
    after = {n: len(optuna.load_study(study_name=n, storage=storage).trials) for n in names}
    assert after == before  # every run was found in storage
    assert again["methods"] == report["methods"]


@pytest.mark.slow
def test_quick_run_ladder_is_in_the_runs_format(quick: tuple[Any, dict[str, Any], Path]) -> None:
    import csv

    _, report, out = quick
    rows = list(csv.DictReader((out / "ladder_quick.csv").open()))
    assert len(rows) == report["ladder_rows"] > 16
    domains = report["domains"]
    for row in rows:
        assert abs(sum(float(row[f"weight_{d}"]) for d in domains) - 1.0) < 1e-4
        assert all(math.isfinite(float(row[f"loss_{d}"])) for d in domains)
        mean = sum(float(row[f"loss_{d}"]) for d in domains) / len(domains)
        assert float(row["value"]) == pytest.approx(mean, abs=1e-5)
    budgets = {row["tokens"] for row in rows if row["source"] in ("target", "ladder")}
    assert len(budgets) >= 3
    curves = list(csv.DictReader((out / "ladder_quick_curves.csv").open()))
    assert {c["run_id"] for c in curves} <= {r["run_id"] for r in rows}


def test_dead_claims_are_run_again(tmp_path: Path) -> None:
    mod = _module()
    assert mod._owner_alive(mod._owner())
    host = mod._owner().split(":")[0]
    assert not mod._owner_alive(f"{host}:999999999:0")  # no such process: its claim is stale


def test_paired_interval() -> None:
    mod = _module()
    mu, lo, hi = mod.paired_interval([0.1, 0.2, 0.3])
    assert mu == pytest.approx(0.2) and lo < 0.2 < hi
    assert math.isnan(mod.paired_interval([0.1])[1])


def test_crossing_interpolates() -> None:
    mod = _module()
    curve = [(10.0, 5.0), (20.0, 4.0), (30.0, 3.0)]
    assert mod._crossing(curve, 3.5) == pytest.approx(25.0)
    assert mod._crossing(curve, 6.0) == 10.0
    assert mod._crossing(curve, 2.0) is None
    # A curve that rises again: the first crossing counts.
    assert mod._crossing([(1.0, 3.0), (2.0, 1.0), (3.0, 4.0)], 2.0) == pytest.approx(1.5)
