from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import Mixture
from optuna_autoscale import suggest_mixture
from optuna_autoscale.results import read_summary
from optuna_autoscale.results import SUMMARY_ATTR
from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run(land, budgets=(1e8, 4e8), **kwargs):  # type: ignore[no-untyped-def]
    sampler = AutoScaleSampler(land.domains, list(budgets), seed=0, **kwargs)
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=400)
    assert sampler.is_complete(study)
    return study


@pytest.fixture(scope="module")
def noiseless():  # type: ignore[no-untyped-def]
    land = separable(4, seed=2)
    study = _run(land)
    return land, study, AutoScaleResult.from_study(study)


def _gain(land, alloc, tokens):  # type: ignore[no-untyped-def]
    uni = land.true_loss({d: tokens / land.m for d in land.domains})
    best = land.true_loss(land.oracle(tokens))
    return (uni - land.true_loss(alloc)) / (uni - best)


def test_fits_optima_and_joint_extrapolation(noiseless) -> None:  # type: ignore[no-untyped-def]
    land, study, result = noiseless
    assert set(result.fits) == set(result.optima) == {1e8, 4e8}
    assert result.law is not None and result.warnings == []
    for budget, mix in result.optima.items():
        assert isinstance(mix, Mixture) and mix.tokens == pytest.approx(budget)
        assert sum(mix.weights.values()) == pytest.approx(1.0)
        # The paper's lower bound: never below the smallest multiplier tested.
        assert min(mix.weights.values()) >= 0.2 / land.m - 1e-9
    # Noiseless separable landscape: the joint law recovers (nearly) all of the gain at 10x.
    target = 4e9
    joint = result.extrapolate(target)
    assert joint.tokens == pytest.approx(target)
    assert _gain(land, joint.allocation, target) > 0.95
    paper = result.extrapolate(target, method="paper")
    assert paper.tokens == pytest.approx(target) and set(paper.weights) == set(land.domains)


def test_verification_verdict() -> None:
    from optuna_autoscale.results import verification_verdict

    assert "cannot judge" in verification_verdict(0.1, 0.1, None)
    assert "cannot judge" in verification_verdict(0.1, 0.1, 0.0)
    # band = 2 sqrt(2) * 0.01 = 0.028
    assert "neither confirm nor refute" in verification_verdict(0.02, -0.05, 0.01)
    assert "agrees" in verification_verdict(0.10, 0.08, 0.01)
    assert "distrust the fit" in verification_verdict(0.10, 0.0, 0.01)
    assert "distrust the fit" in verification_verdict(-0.10, 0.0, 0.01)


def test_verification_table_predicts_observed_gains(noiseless) -> None:  # type: ignore[no-untyped-def]
    land, study, result = noiseless
    rows = result.verification()
    assert [r["check"] for r in rows] == ["verify_optimum", "verify_optimum", "verify_predicted"]
    held = rows[-1]
    assert held["budget"] == pytest.approx(2e8) and held["reference"] == "uniform"
    for r in rows:
        assert r["observed_gain"] == pytest.approx(r["observed_reference"] - r["observed"])
        assert r["predicted_gain"] == pytest.approx(r["observed_gain"], rel=0.05, abs=1e-5)
        assert r["observed_gain"] > 0  # the optimum beats uniform, same seed
        assert sum(r["weights"].values()) == pytest.approx(1.0)
        assert isinstance(r["verdict"], str) and r["verdict"]
    # The held-out run is the joint law's optimum at 2e8.
    t = study.trials[rows[-1]["trials"][0]]
    assert t.user_attrs["autoscale_role"] == "verify_predicted"


def test_export_and_summary(noiseless) -> None:  # type: ignore[no-untyped-def]
    land, study, result = noiseless
    data = json.loads(result.to_json())
    assert set(data) >= {"config", "fits", "optima", "law", "verification", "noise", "noise_source", "warnings"}
    assert data["config"]["domains"] == list(land.domains)
    short = study.user_attrs[SUMMARY_ATTR]  # what a person reads: one line
    assert isinstance(short, str) and "\n" not in short and len(short) < 400, short
    assert short.startswith("2/2 budgets fitted; mixture at 4e8 tokens: ") and "verification:" in short
    summary = read_summary(study)  # what a machine reads: the full JSON (system attr autoscale:result)
    json.dumps(summary, allow_nan=False)
    assert summary["verification"] == data["verification"]
    # A study written before the split kept the full dict in the user attr; read_summary still reads it.
    old = optuna.create_study()
    old.set_user_attr(SUMMARY_ATTR, data)
    assert read_summary(old) == data and read_summary(optuna.create_study()) is None
    # Noiseless and no replicates: the noise comes from the law's residual (or is absent).
    assert result.noise_source in ("joint law residual", None)
    assert (result.noise is None) == (result.noise_source is None)


def test_from_study_loaded_without_the_sampler() -> None:
    land = separable(3, seed=5)
    storage = optuna.storages.InMemoryStorage()
    sampler = AutoScaleSampler(land.domains, [1e8, 4e8], verify=False)
    study = optuna.create_study(storage=storage, study_name="r", sampler=sampler)
    study.optimize(land.objective(), n_trials=100)
    loaded = optuna.load_study(study_name="r", storage=storage)  # default sampler: config from storage
    assert not isinstance(loaded.sampler, AutoScaleSampler)
    result = AutoScaleResult.from_study(loaded)
    assert set(result.optima) == {1e8, 4e8}
    assert result.verification() == []
    assert SUMMARY_ATTR in optuna.load_study(study_name="r", storage=storage).user_attrs


def test_noise_from_base_replicates() -> None:
    land = separable(3, seed=1, noise=0.002, seed_noise=0.02)
    result = AutoScaleResult.from_study(_run(land, replicates=2, verify=False), write_summary=False)
    assert result.noise_source == "base replicates"
    assert 0.002 < result.noise < 0.2


def test_bounds_and_caps_are_respected() -> None:
    land = separable(3, seed=3)
    d0 = land.domains[0]
    study = _run(land, bounds={d0: (None, 2.5e7)}, verify=False)
    result = AutoScaleResult.from_study(study, write_summary=False)
    assert result.optima[1e8].allocation[d0] <= 2.5e7 * (1 + 1e-6)
    assert result.optima[4e8].allocation[d0] <= 2.5e7 * (1 + 1e-6)
    for method in ("joint", "paper"):
        mix = result.extrapolate(4e9, method=method, caps={land.domains[1]: 1e8})
        assert mix.allocation[d0] <= 2.5e7 * (1 + 1e-6)
        assert mix.allocation[land.domains[1]] <= 1e8 * (1 + 1e-6)
        assert mix.tokens == pytest.approx(4e9)


def test_bad_inputs(noiseless) -> None:  # type: ignore[no-untyped-def]
    land, study, result = noiseless
    with pytest.raises(ValueError, match="method"):
        result.extrapolate(4e9, method="magic")
    with pytest.raises(ValueError, match="positive"):
        result.extrapolate(-1.0)
    with pytest.raises(ValueError, match="unknown domains"):
        result.extrapolate(4e9, caps={"nope": 1.0})
    plain = optuna.create_study()
    plain.optimize(lambda t: sum(suggest_mixture(t, ["a", "b"], tokens=1e6).weights.values()), n_trials=1)
    with pytest.raises(ValueError, match="not run with AutoScaleSampler"):
        AutoScaleResult.from_study(plain)


def test_single_budget_and_incomplete_designs() -> None:
    land = separable(3, seed=4)
    with pytest.raises(ValueError, match="AutoScale needs at least two budgets"):
        AutoScaleSampler(land.domains, [1e8])  # the default verify=True needs two budgets
    one = AutoScaleResult.from_study(_run(land, budgets=(1e8,), verify=False), write_summary=False)
    assert set(one.optima) == {1e8} and one.law is None
    with pytest.raises(ValueError, match="two or more budgets"):
        one.extrapolate(1e9)
    with pytest.raises(ValueError, match="two or more budgets"):
        one.extrapolate(1e9, method="paper")
    rows = one.verification()
    assert rows == []
    # A study stopped half-way says which budgets are incomplete.
    study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8]))
    study.optimize(land.objective(), n_trials=5)
    part = AutoScaleResult.from_study(study, write_summary=False)
    assert part.optima == {} and part.law is None
    assert any("design incomplete" in w for w in part.warnings)
    assert math.isfinite(json.loads(part.to_json())["n_trials"])
    assert np.isclose(part.n_trials, 5)


def test_nonuniform_base() -> None:
    land = separable(3, seed=6)
    base = dict(zip(land.domains, (0.5, 0.3, 0.2)))
    study = _run(land, base=base)
    first = study.trials[0]
    assert first.user_attrs["autoscale_role"] == "base"
    for d, w in base.items():
        assert first.user_attrs[f"weight_{d}"] == pytest.approx(w)
    result = AutoScaleResult.from_study(study, write_summary=False)
    rows = result.verification()
    assert [r["reference"] for r in rows] == ["base", "base", "uniform"]
    for mix in result.optima.values():  # the paper's lower bound scales with the base share
        for d, w in base.items():
            assert mix.weights[d] >= 0.2 * w - 1e-9
