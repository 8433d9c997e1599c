"""Evidence-anchored predictions, intervals, recommendations and calibration (issue 11, points 2-5)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
import warnings

import numpy as np
import pytest
from scipy import stats

from _autoscale_helpers import shared_data_dir
from optuna_autoscale import Mixture
from optuna_autoscale.evidence import fit_eval_law
from optuna_autoscale.evidence import fit_evidence
from optuna_autoscale.evidence import tested_region as region_of
from optuna_autoscale.runs import load_runs


REPO = Path(__file__).resolve().parents[1]


def _sim(family: str = "transfer", seed: int = 1, snr: float = 6.0, budgets=(1e8, 3e8, 1e9)):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_runs import simulated_runs

    return simulated_runs(family, seed, budgets=budgets, snr=snr)


@pytest.fixture(scope="module")
def sim():
    warnings.simplefilter("ignore")
    runs, land = _sim()
    return runs, land, fit_evidence(runs)


def test_eval_law_any_evaluation_columns() -> None:
    """Evaluation sets that are not the training domains: A_v >= 0 over every training domain, summing to 1."""
    rng = np.random.default_rng(0)
    rows = []
    for j, b in enumerate((1e8, 4e8)):
        for w in rng.dirichlet(np.ones(3), size=12):
            n = w * b
            held = 2.0 + 40.0 * (0.7 * n[0] + 0.3 * n[1] + 0.0 * n[2] + 1e7) ** -0.2
            chat = 2.5 + 30.0 * (0.1 * n[0] + 0.1 * n[1] + 0.8 * n[2] + 1e7) ** -0.25
            rows.append({"weight_web": w[0], "weight_code": w[1], "weight_books": w[2], "tokens": b, "group": f"g{j}",
                         "loss_heldout": held + 0.01 * j, "loss_chat": chat + 0.01 * j, "value": 0.5 * (held + chat) + 0.01 * j})
    runs = load_runs(rows)
    law = fit_eval_law(runs)
    assert set(law.columns) == {"heldout", "chat"}
    assert law.weights == pytest.approx({"heldout": 0.5, "chat": 0.5}, abs=1e-6)  # detected from value
    for v, p in law.params.items():
        assert all(a >= 0 for a in p["transfer"].values())
        assert sum(p["transfer"].values()) == pytest.approx(1.0)
    # It fits: the in-sample differences within a group are reproduced.
    f = law.f(runs.allocations)
    g0 = np.array(runs.groups) == "g0"
    assert np.corrcoef(f[g0], runs.value[g0])[0, 1] > 0.99
    ev = fit_evidence(runs)
    assert ev.kind == "eval"


def test_one_budget_anchored_ranking_is_direct_transfer() -> None:
    """When no run tests the law's change with scale, the tested mixtures keep their observed ranking."""
    warnings.simplefilter("ignore")
    runs, land = _sim(budgets=(3e8,), snr=30.0)
    ev = fit_evidence(runs)
    assert math.isinf(ev.shrink) and not ev.absolute
    assert any("only loss differences" in w for w in ev.warnings)
    ranked = ev.rank_tested(1e10)
    order = [tuple(np.round([r["weights"][d] for d in runs.domains], 6)) for r in ranked]
    direct = [tuple(np.round(runs.weights[i], 6)) for i in np.argsort(runs.value)]
    assert order == direct


def test_law_adds_nothing_shrink_inf_equals_direct(sim) -> None:
    runs, land, _ = sim
    ev = fit_evidence(runs, shrink=math.inf)
    ev.misfit_sd = None  # observations kept whole
    ev._options = {k: v for k, v in ev._options.items() if k in ("draws", "objective_weights")}
    top = runs.subset(np.array(runs.groups) == "b2")
    pred = np.array([ev._point(w, 1e10).value for w in top.weights])
    assert stats.spearmanr(pred, top.value)[0] == pytest.approx(1.0)


def test_anchored_ranks_at_least_like_direct_on_simulator(sim) -> None:
    runs, land, ev = sim
    top = runs.subset(np.array(runs.groups) == "b2")
    true = np.array([land.true_loss({d: float(x * 1e10) for d, x in zip(runs.domains, w)}) for w in top.weights])
    anch = np.array([ev._point(w, 1e10).value for w in top.weights])
    assert stats.spearmanr(anch, true)[0] >= stats.spearmanr(top.value, true)[0] - 0.01


def test_gain_and_interval(sim) -> None:
    runs, _, ev = sim
    a = Mixture(dict(zip(runs.domains, runs.weights[3].tolist())), 1e10)
    b = Mixture(dict(zip(runs.domains, runs.weights[5].tolist())), 1e10)
    g = ev.predict_gain(a, b)
    lo, hi = ev.gain_interval(a, b, level=0.8)
    assert lo < g < hi
    lo9, hi9 = ev.gain_interval(a, b, level=0.95)
    assert lo9 < lo and hi < hi9
    assert ev.predict_gain(b, a) == pytest.approx(-g)
    assert ev.predict_gain(a, a) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="level"):
        ev.gain_interval(a, b, level=1.5)
    # Absolute losses with three budgets: near the true loss at a budget in range.
    assert ev.absolute


def test_recommendation_inside_the_evidence(sim) -> None:
    runs, land, ev = sim
    rec = ev.recommend(1e10)
    lo, hi = region_of(runs)
    w = np.array(list(rec.mixture.weights.values()))
    assert rec.inside and np.all(w >= lo - 1e-9) and np.all(w <= hi + 1e-9)
    assert rec.gain >= 0 and rec.interval[0] <= rec.gain <= rec.interval[1]
    assert 0.0 <= rec.step <= 1.0
    # Never predicted worse than its anchor; worse than uniform only with a warning.
    assert ev.predict_gain(rec.mixture, rec.anchor) >= -1e-9
    if rec.gain_over_uniform < 0:
        assert any("worse than uniform" in m for m in rec.warnings)
    out = ev.recommend(1e10, allow_outside=True)
    if not out.inside:
        assert any("outside the tested region" in m for m in out.warnings)


def test_calibration_coverage_on_simulator(sim) -> None:
    _, _, ev = sim
    cal = ev.calibration(level=0.8)
    assert cal.n >= 30
    assert 0.6 <= cal.coverage <= 0.98


def test_regmix_real_runs() -> None:
    """RegMix's released runs: 1M fitted, ranked at 60M's compute; the ranking is the 1M runs' (one budget)."""
    path = shared_data_dir() / "regmix"
    if not (path / "test_mixture_60m.csv").exists():
        pytest.skip(f"RegMix data not found at {path}")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_runs import C_1M
    from real_runs import C_60M
    from real_runs import regmix_table

    t1 = regmix_table(path, "test_mixture_1m.csv", "test_pile_loss_1m.csv", C_1M, "1M")
    t60 = regmix_table(path, "test_mixture_60m.csv", "test_pile_loss_60m.csv", C_60M, "60M")
    runs = load_runs(t1)
    assert runs.m == 17 and len(runs.loss_names) == 13
    ev = fit_evidence(runs)
    assert ev.kind == "eval"
    common = t1.index.intersection(t60.index)
    target = load_runs(t60.loc[common], domains=runs.domains)
    pred = np.array([ev._point(w, C_60M).value for w in target.weights])
    direct = load_runs(t1.loc[common], domains=runs.domains).value
    assert stats.spearmanr(pred, direct)[0] == pytest.approx(1.0)
    assert stats.spearmanr(pred, target.value)[0] > 0.9
    rec = ev.recommend(C_60M)
    assert rec.inside


def test_interval_widens_away_from_tested_mixtures(sim) -> None:
    """At a tested mixture only the anchors' noise and the law's posterior count; between tested mixtures the law's
    misfit (law_error_sd) enters; past the tested shares the interval keeps widening with the distance."""
    runs, _, ev = sim
    ev.law_error_sd = 0.01  # as if the runs had shown a misfit
    ev._options = {k: v for k, v in ev._options.items() if k in ("draws", "objective_weights")}
    a = runs.weights[3]
    lo, hi = region_of(runs)
    far = np.zeros(runs.m)
    far[int(np.argmax(hi))] = 1.0  # a corner outside the tested shares
    assert not np.all(far <= hi + 1e-9)
    widths = []
    for f in (0.0, 0.5, 1.0):
        x = (1 - f) * a + f * far
        lo_, hi_ = ev.gain_interval(Mixture(dict(zip(runs.domains, x.tolist())), 1e10), Mixture(dict(zip(runs.domains, a.tolist())), 1e10))
        widths.append(hi_ - lo_)
    assert widths[0] < widths[1] < widths[2]
    assert ev._anchor_var(ev._point(a, 1e10)) < 0.01**2  # at the tested mixture: its anchor noise, not the misfit


def test_no_misfit_shown_no_law_error() -> None:
    """A well-specified, noiseless landscape: the runs show no misfit, so the law is taken at its word."""
    warnings.simplefilter("ignore")
    runs, _ = _sim(family="separable", seed=2, snr=math.inf)
    assert fit_evidence(runs).law_error_sd < 1e-3


def test_calibration_on_the_real_ladder() -> None:
    """The shipped real ladder (benchmarks/data/ladder.csv): leave-one-group-out 80% intervals cover 70-90% of the
    held-out differences (in whole percent, as the goal is stated), inside the refitted runs' shares and past them."""
    path = REPO / "benchmarks" / "data" / "ladder.csv"
    warnings.simplefilter("ignore")
    runs = load_runs(path)
    top = float(runs.budgets.max())
    ev = fit_evidence(runs.subset(runs.tokens < top))
    cal = ev.calibration(level=0.8)
    assert cal.n >= 100
    assert 0.70 <= round(cal.coverage, 2) <= 0.90, cal
    (a, n), (b, m) = cal.inside, cal.outside
    assert n + m == cal.n and n > 0 and m > 0
    assert 0.70 <= round(a / n, 2) <= 0.95 and 0.70 <= round(b / m, 2) <= 0.95, cal


def test_anchored_ranking_on_the_real_ladder_matches_direct_transfer() -> None:
    """The shipped real ladder: fitted on every run below 6e6 tokens, the default evidence ranks the mixtures run at
    6e6 at least as well as their own observed losses at the largest budget each was run below it (direct transfer;
    issue 11's goal: Spearman >= direct's - 0.01). With squared errors choosing the shrinkage, the x0.02 design's
    runs made it 0.877 against 0.890."""
    warnings.simplefilter("ignore")
    runs = load_runs(REPO / "benchmarks" / "data" / "ladder.csv")
    top = float(runs.budgets.max())
    fit, held = runs.subset(runs.tokens < top), runs.subset(runs.tokens == top)
    ev = fit_evidence(fit)
    ids = held.mixture_ids()
    direct, anchored, observed = [], [], []
    for i in np.unique(ids):
        w = held.weights[ids == i][0]
        below = np.flatnonzero(np.all(np.abs(fit.weights - w) < 1e-6, axis=1))
        assert len(below), "every mixture at the target was also run below it"
        nearest = below[fit.tokens[below] == fit.tokens[below].max()]
        direct.append(float(fit.value[nearest].mean()))
        anchored.append(ev.predict(dict(zip(runs.domains, w.tolist())), top))
        observed.append(float(held.value[ids == i].mean()))
    assert len(observed) >= 20
    rho_direct = stats.spearmanr(direct, observed)[0]
    rho = stats.spearmanr(anchored, observed)[0]
    assert rho >= rho_direct - 0.01, (rho, rho_direct)


def test_budget_noise_power_law_one_sided() -> None:
    """The per-budget seed noise is a power law in tokens fitted to the deviations, used only when they shrink with
    tokens (one-sided test at 5%); flat or growing deviations keep the pooled sd."""
    from optuna_autoscale.evidence import _budget_noise
    from optuna_autoscale.evidence import _noise_at

    rng = np.random.default_rng(0)
    tok = np.repeat([1e6, 1e7, 1e8], 200)
    sd = 0.05 * (tok / 1e6) ** -0.25  # 0.05, 0.028, 0.016
    by = _budget_noise(rng.normal(0.0, sd), tok)
    assert sorted(by) == [1e6, 1e7, 1e8]
    for t, want in ((1e6, 0.05), (1e7, 0.05 * 10**-0.25), (1e8, 0.05 * 100**-0.25)):
        assert by[t] == pytest.approx(want, rel=0.12)
    assert _noise_at(by, 0.03, 1e9) == pytest.approx(by[1e8])  # held at the nearest end past the budgets
    assert _noise_at(by, 0.03, 1e5) == pytest.approx(by[1e6])
    assert by[1e7] < _noise_at(by, 0.03, 3e6) < by[1e6]
    assert _budget_noise(rng.normal(0.0, 0.03, tok.size), tok) == {}  # no trend
    assert _budget_noise(rng.normal(0.0, sd[::-1]), tok) == {}  # growing with tokens: not a scale trend
    assert _budget_noise(rng.normal(0.0, sd[:4]), tok[:4]) == {}  # too few to tell
    # A misfit shared by every budget is in the residuals but is not seed noise.
    res = rng.normal(0.0, np.sqrt(sd**2 + 0.02**2))
    shared = _budget_noise(res, tok, shared=0.02**2)
    assert shared[1e6] == pytest.approx(0.05, rel=0.15) and shared[1e8] < shared[1e6]


def test_same_group_copies_are_not_replicates() -> None:
    """Runs of one mixture at one budget within one group share its seed: one observation, not a replicate (the
    real ladder's swarm group holds ten identical copies of one run, which made the noise look smaller)."""
    warnings.simplefilter("ignore")
    runs, _ = _sim(family="separable", seed=3)
    rows = [dict(zip([f"weight_{d}" for d in runs.domains], w.tolist())) | {"tokens": t, "group": g, "value": v}
            for w, t, g, v in zip(runs.weights, runs.tokens, runs.groups, runs.value)]
    copies = load_runs(rows + [dict(rows[1]) for _ in range(5)] + [dict(rows[2]) for _ in range(5)])
    ev, ev_copies = fit_evidence(runs), fit_evidence(copies)
    assert ev_copies.noise_source == ev.noise_source != "replicates"  # the copies were counted as 10 dof of 0


def test_regmix_noise_per_budget_and_calibration() -> None:
    """RegMix 1M + 60M parameters: the law's residuals are smaller at 60M's compute, so each budget gets its own
    seed noise, and the leave-one-group-out 80% intervals cover 70-90% (one pooled sd: 0.91, too wide at 60M)."""
    path = shared_data_dir() / "regmix"
    if not (path / "test_mixture_60m.csv").exists():
        pytest.skip(f"RegMix data not found at {path}")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_runs import C_1M
    from real_runs import C_60M
    from real_runs import regmix_sets

    warnings.simplefilter("ignore")
    both = next(s for s in regmix_sets(path, quick=False) if "1B" in s["name"])["fit"]
    ev = fit_evidence(both)
    assert set(ev.noise_by_budget) == {C_1M, C_60M}
    assert ev.noise_at(C_60M) < 0.8 * ev.noise_at(C_1M)
    assert ev.noise_at(C_60M) < ev.noise < ev.noise_at(C_1M)
    cal = ev.calibration(level=0.8)
    assert cal.n >= 600
    assert 0.70 <= round(cal.coverage, 2) <= 0.90, cal
    with pytest.raises(ValueError, match="noise must map budgets"):
        fit_evidence(both, noise={C_1M: float("nan")})
