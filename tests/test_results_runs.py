"""AutoScaleResult on runs (issue 11, points 1-4): from_runs, every completed trial in from_study, anchored gains
with intervals, recommendations inside the tested region, warnings, and clear errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest

from _autoscale_helpers import shared_data_dir
import optuna_autoscale as oa
from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import Mixture
from optuna_autoscale import suggest_mixture
from optuna_autoscale.evidence import tested_region as region_of
from optuna_autoscale.simulate import mixing_law
from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)


def _inside(weights: dict[str, float], runs) -> bool:  # type: ignore[no-untyped-def]
    lo, hi = region_of(runs)
    w = np.array([weights[d] for d in runs.domains])
    return bool(np.all(w >= lo - 1e-6) and np.all(w <= hi + 1e-6))


def test_fitting_functions_are_exported() -> None:
    for name in ("load_runs", "Runs", "fit_evidence", "fit_eval_law", "fit_transfer", "fit_separable", "objective_weights"):
        assert name in oa.__all__ and getattr(oa, name) is not None


@pytest.fixture(scope="module")
def regmix():  # type: ignore[no-untyped-def]
    path = shared_data_dir() / "regmix"
    if not (path / "test_mixture_1m.csv").exists():
        pytest.skip(f"RegMix data not at {path}")
    import pandas as pd

    a = pd.read_csv(path / "test_mixture_1m.csv").set_index("index")
    b = pd.read_csv(path / "test_pile_loss_1m.csv").set_index("index")
    a60 = pd.read_csv(path / "test_mixture_60m.csv").set_index("index")
    b60 = pd.read_csv(path / "test_pile_loss_60m.csv").set_index("index")

    def table(mix, loss, tokens, group):  # type: ignore[no-untyped-def]
        df = mix.join(loss, how="inner").iloc[:60]
        out = pd.DataFrame(index=df.index)
        for c in mix.columns:
            out["weight_" + c.replace("train_the_pile_", "")] = df[c]
        for c in loss.columns[:4]:
            out["loss_" + c.replace("metric/the_pile_", "").replace("_val_loss", "")] = df[c]
        out["tokens"] = tokens
        out["group"] = group
        out["value"] = out[[c for c in out.columns if c.startswith("loss_")]].mean(axis=1)
        return out

    df = pd.concat([table(a, b, 6e15, "1M"), table(a60, b60, 3.6e17, "60M")])
    warnings.simplefilter("ignore")
    return df, AutoScaleResult.from_runs(df)


def test_from_runs_on_regmix(regmix) -> None:  # type: ignore[no-untyped-def]
    """Real shipped runs (RegMix, 1M and 60M): every query works, the recommendation stays inside the evidence,
    and its gain is given with an interval."""
    df, res = regmix
    assert res.design is None and res.fits == {} and res.optima == {}
    assert res.runs is not None and res.runs.n == len(df) and res.law is not None
    target = 1.5e20
    rec = res.recommend(target)
    assert rec.inside and _inside(rec.mixture.weights, res.runs)
    assert res.extrapolate(target).weights == rec.mixture.weights
    lo, hi = rec.best_interval
    assert lo <= rec.gain_over_best <= hi
    assert rec.gain_over_best >= 0  # it moves from the best tested mixture only where the gain exceeds its uncertainty
    ranked = res.rank_tested(target)
    assert len(ranked) == len(np.unique(res.runs.mixture_ids())) and ranked[0]["predicted"] <= ranked[-1]["predicted"]
    best = Mixture(ranked[0]["weights"], target)
    g = res.predict_gain(rec.mixture, best)
    a, b = res.gain_interval(rec.mixture, best, level=0.8)
    assert a <= g <= b and res.gain_interval(rec.mixture, best, level=0.5)[1] - res.gain_interval(rec.mixture, best, level=0.5)[0] < b - a
    # Two budgets: only differences are predicted, and the result says so.
    with pytest.raises(ValueError, match="only loss differences are predicted"):
        res.predict_loss(rec.mixture)
    assert any("only loss differences" in n for n in res.notes)
    # Leaving the region is explicit and warned about.
    out = res.recommend(target, allow_outside=True)
    if not out.inside:
        assert any("outside the tested region" in w for w in out.warnings)
    res.extrapolate(target, allow_outside=True)
    if not out.inside:
        assert any("outside the tested region" in w for w in res.warnings)


def test_from_runs_paper_method_and_bad_region(regmix) -> None:  # type: ignore[no-untyped-def]
    _, res = regmix
    with pytest.raises(ValueError, match="per-budget DDO optima"):
        res.extrapolate(1e20, method="paper")
    with pytest.raises(ValueError, match="region must be"):
        res.recommend(1e20, region="hull")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda rows: [{k: v for k, v in r.items() if k != "tokens"} for r in rows], "missing column 'tokens'"),
        (lambda rows: [dict(r, weight_a=0.9) if i == 2 else r for i, r in enumerate(rows)], "sum to"),
        (lambda rows: rows + [dict(rows[0], group="lonely")], "has one run"),
        (lambda rows: [dict(r, loss_a=math.nan) if i == 1 else r for i, r in enumerate(rows)], "'loss_a'"),
        (lambda rows: rows[:5], "parameters"),
    ],
)
def test_from_runs_bad_inputs(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    rows = []
    for j, tok in enumerate((1e8, 4e8)):
        for w in rng.dirichlet(np.ones(3), size=8):
            la, lb, lc = (3.0 + 10 * (x * tok + 1e6) ** -0.2 for x in w)
            rows.append({"weight_a": w[0], "weight_b": w[1], "weight_c": w[2], "tokens": tok, "group": f"g{j}",
                         "loss_a": la, "loss_b": lb, "loss_c": lc, "value": (la + lb + lc) / 3})
    AutoScaleResult.from_runs(rows, checks=False)  # the clean table fits
    with pytest.raises(ValueError, match=message):
        AutoScaleResult.from_runs(mutate(rows))


def _mixture_study(land, sampler, n: int, budgets=(1e8, 4e8)):  # type: ignore[no-untyped-def]
    """A study whose trials call suggest_mixture (any sampler) and record per-domain losses."""
    study = optuna.create_study(sampler=sampler)
    rng = np.random.default_rng(0)

    def objective(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, land.domains, tokens=float(budgets[trial.number % len(budgets)]))
        per = land.per_domain_loss(mix.allocation, seed=trial.number % len(budgets))
        for d, v in per.items():
            trial.set_user_attr(f"loss_{d}", float(v))
        return float(np.mean(list(per.values())) + 0 * rng.random())

    study.optimize(objective, n_trials=n)
    return study


def test_from_study_without_design_uses_every_mixture_trial() -> None:
    """A TPE/random study of mixture trials: not 0 trials and an error, but a result from its runs."""
    warnings.simplefilter("ignore")
    land = separable(3, seed=1)
    study = _mixture_study(land, optuna.samplers.RandomSampler(seed=0), 30)
    res = AutoScaleResult.from_study(study)
    assert res.design is None and res.n_trials == 30 and res.runs.n == 30
    assert any("no AutoScale design" in n for n in res.notes)
    rec = res.recommend(4e9)
    assert rec.inside
    assert math.isfinite(rec.gain_over_best) and rec.best_interval[0] <= rec.gain_over_best <= rec.best_interval[1]


def _autoscale(land, budgets=(1e8, 4e8), extra: int = 0, **kw):  # type: ignore[no-untyped-def]
    sampler = AutoScaleSampler(land.domains, list(budgets), seed=0, **kw)
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=400)
    assert sampler.is_complete(study)
    if extra:
        rs = optuna.samplers.RandomSampler(seed=1)
        for i in range(extra):
            t = study.ask()
            w = rs.sample_independent(study, t, "x", optuna.distributions.FloatDistribution(0, 1))
            shares = {d: (1.0 + w * (k == i % land.m)) for k, d in enumerate(land.domains)}
            tot = sum(shares.values())
            for d in land.domains:
                t.set_user_attr(f"weight_{d}", shares[d] / tot)
            t.set_user_attr("tokens", 4e8)
            alloc = {d: 4e8 * shares[d] / tot for d in land.domains}
            for d, v in land.per_domain_loss(alloc, seed=7).items():
                t.set_user_attr(f"loss_{d}", float(v))
            study.tell(t, land.loss(alloc, seed=7))
    return study


def test_from_study_design_extrapolates_inside_the_box_and_reports_gain() -> None:
    """mixing_law's optimum starves domains (share 0), outside every run's shares: the default stays inside
    the tested box; allow_outside=True may leave it, with a warning."""
    warnings.simplefilter("ignore")
    land = mixing_law(4, seed=0)
    res = AutoScaleResult.from_study(_autoscale(land))
    assert res.runs is not None
    rec = res.recommend(4e9)
    assert rec.inside and _inside(rec.mixture.weights, res.runs)
    assert rec.level == 0.8 and rec.interval[0] <= rec.gain <= rec.interval[1]
    assert rec.uniform_interval[0] <= rec.gain_over_uniform <= rec.uniform_interval[1]
    free = res.recommend(4e9, allow_outside=True)
    assert free.inside or any("outside the tested region" in w for w in free.warnings)
    # One model, one answer: every design budget is compared with the joint law there.
    rows = res.consistency()
    assert [r["budget"] for r in rows] == sorted(res.optima)
    for r in rows:
        assert 0 <= r["tv"] <= 1 and r["interval"][0] <= r["gain"] <= r["interval"][1]
        if r["disagree"]:
            assert any(f"budget {r['budget']:.4g}" in w and "differ" in w for w in res.warnings)
        if r["optimum_gain_over_uniform"] < 0:
            assert any(f"budget {r['budget']:.4g}" in w and "worse than uniform" in w for w in res.warnings)
    d = res.to_dict()
    assert d["consistency"] and d["recommendations"]


def test_from_study_fits_trials_outside_the_design() -> None:
    warnings.simplefilter("ignore")
    land = separable(3, seed=2)
    plain = AutoScaleResult.from_study(_autoscale(land))
    more = AutoScaleResult.from_study(_autoscale(land, extra=6))
    assert more.runs.n == plain.runs.n + 6
    assert any("outside the design" in n for n in more.notes)
    assert more.law.n_obs == more.runs.n
    assert set(more.optima) == set(plain.optima)  # the per-budget DDO optima still come from the design


def test_clear_error_when_no_joint_law() -> None:
    """One budget: extrapolate cannot work, and says what to do instead."""
    warnings.simplefilter("ignore")
    land = separable(3, seed=0)
    res = AutoScaleResult.from_study(_autoscale(land, budgets=(1e8,), verify=False))
    with pytest.raises(ValueError, match="from_runs"):
        res.extrapolate(1e9)
    with pytest.raises(ValueError, match="from_runs"):
        res.predict_gain(Mixture.uniform(land.domains, 1e9))


def test_dashboard_note_shows_gains_with_intervals() -> None:
    from optuna_autoscale.dashboard import summary_markdown

    warnings.simplefilter("ignore")
    land = separable(3, seed=3)
    study = _autoscale(land)
    res = AutoScaleResult.from_study(study, write_summary=False)
    note = summary_markdown(study, result=res, targets=[4e9])
    assert "predicted gain over uniform (80% interval)" in note
    assert "inside the tested shares" in note and "joint law's mixture there" in note


def _simulated_frame(family: str, seed: int):  # type: ignore[no-untyped-def]
    """benchmarks/real_runs.py's simulated run set as a runs table (weights, tokens, group, value, losses)."""
    import sys
    from pathlib import Path

    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from real_runs import simulated_runs

    runs, _ = simulated_runs(family, seed)
    df = pd.DataFrame({f"weight_{d}": runs.weights[:, i] for i, d in enumerate(runs.domains)})
    df["tokens"], df["group"], df["value"] = runs.tokens, list(runs.groups), runs.value
    for k, v in enumerate(runs.loss_names):
        df[f"loss_{v}"] = runs.losses[:, k]
    return df


def test_cli_fit_prints_recommendation_gain_ranking_warnings(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from optuna_autoscale.cli import main

    df = _simulated_frame("transfer", 0)
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    assert main(["fit", str(path), "--tokens", "1e10"]) == 0
    out = capsys.readouterr().out
    assert "Recommended mixture at 1e+10 tokens (inside the tested shares)" in out
    assert "predicted gain over the best tested mixture" in out and "80% interval" in out
    assert "Tested mixtures ranked" in out
    assert main(["fit", str(path), "--tokens", "1e10", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inside_tested_region"] and len(data["gain_over_best_tested_interval"]) == 2 and data["ranked"]
    bad = tmp_path / "bad.csv"
    df.drop(columns=["tokens"]).to_csv(bad, index=False)
    assert main(["fit", str(bad), "--tokens", "1e10"]) == 2
    assert "missing column 'tokens'" in capsys.readouterr().err


def test_cli_fit_shows_the_noise_per_budget(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Where the runs show the seed noise falling with scale, ``fit`` says so and uses the target's own."""
    import json

    from optuna_autoscale.cli import main

    path = tmp_path / "runs.csv"
    _simulated_frame("mixing_law", 0).to_csv(path, index=False)  # SNR 6 at every budget: the noise falls as the gains do
    assert main(["fit", str(path), "--tokens", "1e10", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by = {float(k): v for k, v in data["noise_by_budget"].items()}
    assert sorted(by) == [1e8, 3e8, 1e9] and by[1e9] < by[3e8] < by[1e8]
    assert data["noise_at_tokens"] == pytest.approx(by[1e9])  # held at the largest budget past it
    assert main(["fit", str(path), "--tokens", "1e10"]) == 0
    assert "falling with scale" in capsys.readouterr().out
