from __future__ import annotations

from pathlib import Path
from typing import Any

import math

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import optuna
import pytest

from _autoscale_helpers import shared_data_dir
from optuna_autoscale.baselines import dirichlet_swarm
from optuna_autoscale.baselines import fit_data_mixing_law
from optuna_autoscale.baselines import fit_regressor
from optuna_autoscale.baselines import lightgbm_available
from optuna_autoscale.baselines import natural
from optuna_autoscale.baselines import regmix_optimum
from optuna_autoscale.baselines import RegMixSampler
from optuna_autoscale.baselines import uniform
from optuna_autoscale.baselines import unimax
from optuna_autoscale.baselines.regmix import ROLE_SYSTEM_ATTR
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.mixture import suggest_mixture


optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---------------------------------------------------------------- uniform / natural / UniMax


def test_uniform_and_natural() -> None:
    assert uniform(["a", "b", "c", "d"]) == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    assert natural({"a": 1.0, "b": 3.0}) == {"a": 0.25, "b": 0.75}
    with pytest.raises(ValueError, match="Duplicate"):
        uniform(["a", "a"])
    with pytest.raises(ValueError, match="non-negative"):
        natural({"a": -1.0, "b": 1.0})
    with pytest.raises(ValueError, match="sums to 0"):
        natural({"a": 0.0, "b": 0.0})


def test_unimax_hand_computed() -> None:
    # Budget 1000 tokens over 4 domains, 2 epochs allowed.
    # caps: a 2*50=100, b 2*150=300, c 2*1000=2000, d 2*5000=10000.
    # Level 250 each: a capped at 100 -> 900 left for 3 -> 300 each: b takes exactly its cap 300,
    # c and d get 300 each. Allocation 100 / 300 / 300 / 300.
    w = unimax({"a": 50, "b": 150, "c": 1000, "d": 5000}, 1000, 2)
    assert w == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.3, "d": 0.3}, abs=1e-12)
    # Tighter: budget 1200 -> a 100, then 1100/3 = 366.7 > b cap 300 -> b 300, then 800/2 = 400.
    w = unimax({"a": 50, "b": 150, "c": 1000, "d": 5000}, 1200, 2)
    assert w == pytest.approx({"a": 100 / 1200, "b": 300 / 1200, "c": 400 / 1200, "d": 400 / 1200}, abs=1e-12)
    # Nobody capped: uniform.
    assert unimax({"a": 1e9, "b": 1e9}, 1e6, 1) == pytest.approx({"a": 0.5, "b": 0.5})
    # Per-domain epochs.
    w = unimax({"a": 100, "b": 100}, 150, {"a": 0.5, "b": 4})
    assert w == pytest.approx({"a": 50 / 150, "b": 100 / 150})


def test_unimax_errors() -> None:
    with pytest.raises(ValueError, match="cannot place"):
        unimax({"a": 10, "b": 10}, 100, 4)
    with pytest.raises(ValueError, match="max_epochs"):
        unimax({"a": 10, "b": 10}, 10, 0)
    with pytest.raises(ValueError, match="no entry"):
        unimax({"a": 10, "b": 10}, 10, {"a": 1})
    with pytest.raises(ValueError, match="tokens"):
        unimax({"a": 10, "b": 10}, -5, 1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(1.0, 1e6), min_size=2, max_size=8),
    st.floats(0.5, 8.0),
    st.floats(0.01, 1.0),
)
def test_unimax_properties(sizes: list[float], epochs: float, frac: float) -> None:
    counts = {f"d{i}": s for i, s in enumerate(sizes)}
    budget = frac * epochs * sum(sizes)
    w = unimax(counts, budget, epochs)
    alloc = {d: w[d] * budget for d in counts}
    assert math.isclose(sum(w.values()), 1.0, rel_tol=1e-9)
    level = max(alloc.values())
    for d in counts:
        cap = epochs * counts[d]
        assert alloc[d] <= cap * (1 + 1e-9)
        # Water-filling: a domain below the common level must be at its cap.
        if alloc[d] < level * (1 - 1e-9):
            assert math.isclose(alloc[d], cap, rel_tol=1e-9)
    Mixture(w, budget)  # a valid mixture


# ---------------------------------------------------------------- Data Mixing Laws


def _synthetic_law() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.array([2.0, 1.5, 3.0])
    k = np.array([1.2, 0.8, 0.5])
    t = np.array([[-2.0, 1.0, 0.5, 0.5], [0.5, -1.5, 1.5, -0.5], [1.0, 0.0, -2.5, 1.5]])
    t = t - t.mean(axis=1, keepdims=True)
    return c, k, t


def test_dml_recovers_synthetic_law() -> None:
    c, k, t = _synthetic_law()
    rng = np.random.default_rng(1)
    r = rng.dirichlet(np.ones(4), size=80)
    y = c[None, :] + k[None, :] * np.exp(r @ t.T) + rng.normal(0, 1e-4, size=(80, 3))
    law = fit_data_mixing_law(r, y, domains=["a", "b", "c", "d"], targets=["x", "y", "z"])
    np.testing.assert_allclose(law.c, c, atol=0.02)
    np.testing.assert_allclose(law.k, k, rtol=0.03)
    np.testing.assert_allclose(law.t, t, atol=0.05)
    assert max(law.rmse.values()) < 5e-4
    # The fitted optimum of the aggregate is the true one.
    grid = rng.dirichlet(np.ones(4), size=200_000)
    true_agg = (c[None, :] + k[None, :] * np.exp(grid @ t.T)).mean(axis=1)
    opt = law.optimum()
    w = np.array([opt[d] for d in "abcd"])
    true_at_opt = float((c + k * np.exp(t @ w)).mean())
    assert true_at_opt <= true_agg.min() + 1e-4
    assert law.aggregate(opt) == pytest.approx(true_at_opt, abs=1e-3)


def test_dml_bounds_and_errors() -> None:
    c, k, t = _synthetic_law()
    rng = np.random.default_rng(2)
    r = rng.dirichlet(np.ones(4), size=40)
    y = c[None, :] + k[None, :] * np.exp(r @ t.T)
    law = fit_data_mixing_law(r, y, domains=["a", "b", "c", "d"])
    opt = law.optimum(upper={"a": 0.1}, lower={"d": 0.2}, target_weights=[1.0, 0.0, 0.0])
    assert opt["a"] <= 0.1 + 1e-9 and opt["d"] >= 0.2 - 1e-9
    assert math.isclose(sum(opt.values()), 1.0, rel_tol=1e-9)
    with pytest.raises(ValueError, match="runs"):
        fit_data_mixing_law(r[:4], y[:4])
    with pytest.raises(ValueError, match="shape"):
        fit_data_mixing_law(r, y[:10])
    with pytest.raises(ValueError, match="Infeasible"):
        law.optimum(upper={"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1})


# ---------------------------------------------------------------- RegMix


def test_dirichlet_swarm_respects_bound() -> None:
    p = np.array([0.6, 0.3, 0.05, 0.03, 0.02])
    w = dirichlet_swarm(p, 2000, seed=0)
    assert w.shape == (2000, 5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert np.all(w <= np.minimum(15 * p, 1.0) + 1e-12)
    # Without the bound the swarm is centred on the tempered prior p^0.5 (renormalised);
    # the bound trims the small domains.
    q = np.sqrt(p) / np.sqrt(p).sum()
    free = dirichlet_swarm(p, 4000, seed=0, max_usage=1e9)
    np.testing.assert_allclose(free.mean(axis=0), q, atol=0.02)
    assert np.all(np.diff(w.mean(axis=0)) < 0)
    np.testing.assert_array_equal(w, dirichlet_swarm(p, 2000, seed=0))


@pytest.mark.parametrize("method", ["ridge", pytest.param("lightgbm", marks=pytest.mark.skipif(
    not lightgbm_available(), reason="LightGBM not installed"))])
def test_regressor_ranks_and_optimum(method: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), size=256)
    target = np.array([0.5, 0.3, 0.1, 0.1])
    y = ((x - target) ** 2).sum(axis=1) + rng.normal(0, 1e-3, size=256)
    pred = fit_regressor(x[:200], y[:200], method=method)(x[200:])
    assert np.corrcoef(pred, y[200:])[0, 1] > 0.8
    opt = regmix_optimum(x, y, method=method, n_candidates=20_000, domains=list("abcd"))
    w = np.array([opt[d] for d in "abcd"])
    if method == "lightgbm":
        assert ((w - target) ** 2).sum() < ((np.full(4, 0.25) - target) ** 2).sum()
    else:
        # A linear model of a quadratic bowl: its optimum is the best-predicted corner region,
        # the one nearest the target's largest weight.
        assert int(np.argmax(w)) == 0


def test_regmix_optimum_linear_truth() -> None:
    rng = np.random.default_rng(4)
    x = rng.dirichlet(np.ones(3), size=64)
    y = x @ np.array([3.0, 1.0, 2.0])
    opt = regmix_optimum(x, y, method="ridge", n_candidates=10_000, top_k=16, domains=list("abc"))
    assert opt["b"] > 0.9


def test_ridge_fallback_is_linear_exact() -> None:
    rng = np.random.default_rng(3)
    x = rng.dirichlet(np.ones(5), size=100)
    beta = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    y = x @ beta
    pred = fit_regressor(x, y, method="ridge")(x)
    np.testing.assert_allclose(pred, y, atol=1e-2)
    with pytest.raises(ValueError, match="Unknown regression"):
        fit_regressor(x, y, method="svm")


def test_regmix_sampler_in_study_optimize() -> None:
    domains = ["web", "code", "books", "wiki"]
    target = {"web": 3.0, "code": 1.0, "books": 2.5, "wiki": 2.0}

    def objective(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, domains, tokens=1e6)
        return objective_value(mix.weights, target)

    natural_shares = {"web": 0.4, "code": 0.3, "books": 0.2, "wiki": 0.1}
    sampler = RegMixSampler(domains, 1e6, natural=natural_shares, n_swarm=24, method="ridge", n_candidates=5000, seed=1)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=26)
    trials = study.trials
    # The swarm proposals arrive exactly, in order, through suggest_mixture's parameters.
    for tr in trials[:24]:
        got = np.array([tr.user_attrs[f"weight_{d}"] for d in domains])
        np.testing.assert_allclose(got, sampler.swarm[tr.number], atol=1e-9)
        assert tr.system_attrs[ROLE_SYSTEM_ATTR] == "swarm"
        assert all(0.0 <= v <= 1.0 for v in tr.params.values())
    # After the swarm, the regression optimum is proposed.
    assert trials[24].system_attrs[ROLE_SYSTEM_ATTR] == "optimum"
    opt = sampler.optimum(study)
    got = {d: trials[25].user_attrs[f"weight_{d}"] for d in domains}
    # trial 25's fit includes trial 24, so compare against the study's current optimum loosely.
    assert got == pytest.approx(opt, abs=0.05)
    assert objective_value(opt, target) < np.min([t.value for t in trials[:24]])
    assert opt["code"] > 0.5
    mix = sampler.best_mixture(study)
    assert mix.tokens == 1e6


def objective_value(w: dict[str, float], coef: dict[str, float]) -> float:
    return sum(w[d] * coef[d] for d in coef)


def test_regmix_sampler_seed_determinism_and_errors() -> None:
    a = RegMixSampler(["x", "y", "z"], n_swarm=8, seed=5)
    b = RegMixSampler(["x", "y", "z"], n_swarm=8, seed=5)
    np.testing.assert_array_equal(a.swarm, b.swarm)
    with pytest.raises(ValueError, match="n_swarm"):
        RegMixSampler(["x", "y"], n_swarm=1)
    with pytest.raises(ValueError, match="natural"):
        RegMixSampler(["x", "y"], natural={"x": 1.0})
    with pytest.raises(ValueError, match="at least 3"):
        a.optimum(optuna.create_study(sampler=a))


# ---------------------------------------------------------------- benchmark smoke run


def _shared_regmix() -> Path | None:
    path = shared_data_dir() / "regmix"
    return path if (path / "train_mixture_1m.csv").is_file() else None


def _load_benchmark(filename: str, module_name: str) -> Any:
    """Import ``benchmarks/<filename>`` (not a package) as module ``module_name``."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / filename
    spec = importlib.util.spec_from_file_location(module_name, script)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_regmix_offline_benchmark_quick(tmp_path: Path) -> None:
    data = _shared_regmix()
    if data is None:
        pytest.skip("RegMix data (../shared/data/regmix) is absent")
    mod = _load_benchmark("regmix_offline.py", "regmix_offline")
    result = mod.main([str(data), "--quick", "--out", str(tmp_path)])
    rows = {(r["target"], r["model"]): r for r in result["rows"]}
    law = rows[("pile_cc", "AutoScale transfer law (K=2)")]
    assert law["spearman_1M"] > 0.95 and law["r2_1M"] > 0.8
    assert {"spearman_60M", "spearman_1B"} <= set(law)
    assert rows[("pile_cc", "Data Mixing Law")]["spearman_1M"] > 0.9
    assert (tmp_path / "regmix_offline_quick.json").is_file()
    assert (tmp_path / "regmix_offline_spearman_quick.html").is_file()


@pytest.mark.slow
def test_simulated_benchmark_quick(tmp_path: Path) -> None:
    mod = _load_benchmark("simulated.py", "simulated_benchmark")
    report = mod.main(["--quick", "--out", str(tmp_path)])
    (res,) = report["results"]
    methods = res["methods"]
    assert {"AutoScale (joint)", "direct transfer", "uniform", "RegMix", "Data Mixing Law", "Optuna TPE"} <= set(methods)
    assert methods["uniform"]["share"] == pytest.approx(0.0, abs=1e-12)
    for m in methods.values():
        if not math.isnan(m["regret"]):
            assert m["regret"] >= -1e-9  # nobody beats the oracle
    assert methods["RegMix"]["compute"] <= methods["AutoScale (joint)"]["compute"]
    assert (tmp_path / "simulated_quick.json").is_file()
