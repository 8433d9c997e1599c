"""The guard on recommendations (issue 11): leave the base only as far as the evidence supports.

On real proxies every recommendation that moved away from uniform on a gain whose interval included 0 lost
0.04-0.2 nats at 10x (DESIGN.md, "The demo's mixtures at 10x, measured").
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
import warnings

import numpy as np
import optuna
import pytest
from scipy import stats

from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import Mixture
from optuna_autoscale.evidence import Guard
from optuna_autoscale.evidence import fit_evidence
from optuna_autoscale.simulate import mixing_law
from optuna_autoscale.simulate import transfer


REPO = Path(__file__).resolve().parents[1]
T = 4e9


def _study(land):  # type: ignore[no-untyped-def]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = AutoScaleSampler(land.domains, [1e8, 4e8], seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=400)
    assert sampler.is_complete(study)
    return study


@pytest.fixture(scope="module")
def noisy() -> AutoScaleResult:
    """transfer, 3 domains, SNR 3 at 4e8: the in-box step's expected gain over uniform has a lower bound <= 0.

    (Of the 8 separable and transfer landscapes, seeds 0-3, at SNR 3, the guard stays on this one and moves on the
    others, 6 of them to a true gain and one to a true loss of 0.0012.)"""
    warnings.simplefilter("ignore")
    return AutoScaleResult.from_study(_study(transfer(3, seed=3).with_snr(3.0, 4e8)), write_summary=False)


@pytest.fixture(scope="module")
def clear() -> AutoScaleResult:
    """mixing_law, 4 domains, noiseless: a clear predicted gain."""
    warnings.simplefilter("ignore")
    return AutoScaleResult.from_study(_study(mixing_law(4, seed=0)), write_summary=False)


def test_interval_includes_zero_stays_at_uniform(noisy: AutoScaleResult) -> None:
    rec = noisy.recommend(T)
    assert rec.guard == 0.0 and rec.candidate is not None
    assert rec.mixture.weights == pytest.approx({d: 1 / 3 for d in noisy.domains}, abs=1e-9)
    lo, _ = noisy.evidence.expected_gain_interval(rec.candidate.with_tokens(T), {d: 1 / 3 for d in noisy.domains})
    assert lo <= 0  # the evidence does not support the step
    assert any(w.startswith("stayed at uniform") and "guard=False" in w for w in rec.warnings)
    assert any("stayed at uniform" in w for w in noisy.warnings)
    # guard=False: today's in-box rule, the candidate the guard started from.
    free = noisy.recommend(T, guard=False)
    assert free.guard is None and free.candidate is None
    assert free.mixture.weights == pytest.approx(rec.candidate.weights, abs=1e-9)
    assert noisy.extrapolate(T, guard=False).weights == pytest.approx(rec.candidate.weights, abs=1e-9)
    assert noisy.extrapolate(T).weights == pytest.approx(rec.mixture.weights, abs=1e-12)
    d = noisy.to_dict()["recommendations"]
    assert any(r["guard"] == 0.0 and r["candidate"] for r in d)


def test_clear_gain_moves(clear: AutoScaleResult) -> None:
    rec = clear.recommend(T)
    assert rec.guard is not None and rec.guard > 0
    assert max(abs(rec.mixture.weights[d] - 0.25) for d in clear.domains) > 0.05
    assert clear.evidence.expected_gain_interval(rec.mixture)[0] > 0  # its 80% lower bound over uniform is above 0
    assert not any(w.startswith("stayed at") for w in rec.warnings)


def test_guard_decides_on_the_expected_gain(noisy: AutoScaleResult) -> None:
    """The guard's interval is the expected gain's (law posterior + the anchors' seed noise); gain_interval, what
    one new pair of runs would show, adds the two new runs' seed noise and is wider."""
    ev = noisy.evidence
    cand = noisy.recommend(T).candidate
    base = {d: 1 / 3 for d in noisy.domains}
    g = ev.guard(base, cand, T, level=0.8)
    exp_iv = ev.expected_gain_interval(Mixture(cand.weights, T), base, level=0.8)
    run_iv = ev.gain_interval(Mixture(cand.weights, T), base, level=0.8)
    assert g.candidate_interval == pytest.approx(exp_iv, abs=1e-12)
    assert g.candidate_gain == pytest.approx(ev.predict_gain(Mixture(cand.weights, T), base), abs=1e-12)
    z = stats.norm.ppf(0.9)
    # A new pair's seed noise at least, at the target's budget (the per-budget noise, where the runs show one).
    assert (run_iv[1] - run_iv[0]) / (2 * z) >= math.sqrt(2.0) * ev.noise_at(T) - 1e-12
    assert ev.noise_by_budget and ev.noise_at(T) < ev.noise  # this design's noise falls with scale (its SNR is fixed)
    assert run_iv[0] <= exp_iv[0] and run_iv[1] >= exp_iv[1]
    # Every point on the line has an expected-gain lower bound <= 0, so it stays.
    for f in (0.25, 0.5, 0.75, 1.0):
        x = {d: base[d] + f * (cand.weights[d] - base[d]) for d in base}
        assert ev.expected_gain_interval(Mixture(x, T), base, level=0.8)[0] <= 0


def test_guard_note_texts() -> None:
    b, c = np.full(2, 0.5), np.array([0.8, 0.2])
    stay = Guard(shares=b, base=b, candidate=c, fraction=0.0, gain=0.0, interval=(0.0, 0.0), candidate_gain=0.07,
                 candidate_interval=(-0.043, 0.183), level=0.8)
    text = stay.note("uniform", "the in-box recommendation", ("a", "b"))
    assert text is not None and text.startswith("stayed at uniform: the predicted gain +0.070")
    assert "80% interval (-0.043, +0.183) that includes 0" in text
    moved = Guard(shares=0.6 * c + 0.4 * b, base=b, candidate=c, fraction=0.4, gain=0.05, interval=(0.01, 0.09),
                  candidate_gain=0.07, candidate_interval=(-0.01, 0.15), level=0.8)
    assert moved.note("uniform", "the in-box recommendation", ("a", "b")).startswith("moved 40% of the way from uniform")
    whole = Guard(shares=c, base=b, candidate=c, fraction=1.0, gain=0.07, interval=(0.01, 0.13), candidate_gain=0.07,
                  candidate_interval=(0.01, 0.13), level=0.8)
    assert whole.note("uniform", "x", ("a", "b")) is None


def test_from_runs_guard_from_best_tested() -> None:
    """Without a design the base is the best tested mixture: the guarded step's lower bound over it is above 0,
    or the recommendation is the best tested mixture."""
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_runs import simulated_runs

    runs, _ = simulated_runs("transfer", 1, budgets=(1e8, 3e8, 1e9), snr=6.0)
    ev = fit_evidence(runs)
    rec = ev.recommend(1e10)
    free = ev.recommend(1e10, guard=False)
    assert rec.guard is not None and free.guard is None
    moved = 0.5 * sum(abs(rec.mixture.weights[d] - rec.anchor.weights[d]) for d in runs.domains)
    if moved > 1e-9:
        assert ev.expected_gain_interval(rec.mixture, rec.anchor, level=0.8)[0] > 0
    if rec.guard < 1:
        assert any(w.startswith(("stayed at the best tested", "moved")) for w in rec.warnings)
    assert rec.step <= free.step + 1e-12


def test_two_budget_shrinkage_grows_with_the_distance_extrapolated(noisy: AutoScaleResult) -> None:
    from optuna_autoscale.results import TWO_BUDGET_SHRINK
    from optuna_autoscale.results import design_shrink

    ev = noisy.evidence
    assert noisy._shrink_span == (1e8, 4e8) and ev.shrink_span == (1e8, 4e8)
    assert ev.shrink_at(4e8) == 0.0 and ev.shrink_at(2e8) == 0.0  # up to the largest budget: the law's change in full
    assert ev.shrink_at(4e9) == pytest.approx(TWO_BUDGET_SHRINK * math.log(10) / math.log(4))
    assert ev.shrink_at(1.6e9) == pytest.approx(TWO_BUDGET_SHRINK)  # one span past the runs
    # A larger z keeps less of the law's change: the predicted gain of the in-box step moves from the full law's
    # toward the anchors' alone (z = inf; here it crosses 0 on the way, so its size need not shrink).
    cand = noisy.recommend(T, guard=False).mixture
    u = {d: 1.0 / len(ev.domains) for d in ev.domains}
    far = fit_evidence(noisy.runs, fitted=noisy.law, shrink=TWO_BUDGET_SHRINK, shrink_span=(1e8, 1.01e8))
    full = fit_evidence(noisy.runs, fitted=noisy.law, shrink=0.0)
    direct = fit_evidence(noisy.runs, fitted=noisy.law, shrink=math.inf)
    gains = [e.predict_gain(cand, u, tokens=T) for e in (full, ev, far, direct)]
    dist = [abs(g - gains[-1]) for g in gains]
    assert dist[0] > dist[1] >= dist[2] >= dist[3] == 0.0, gains
    # Three budgets choose z by leaving one out.
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_runs import simulated_runs

    assert design_shrink(noisy.runs) == (TWO_BUDGET_SHRINK, (1e8, 4e8))
    assert design_shrink(simulated_runs("transfer", 0)[0]) == ("auto", None) and design_shrink(None) == ("auto", None)
    with pytest.raises(ValueError, match="shrink_span must be"):
        fit_evidence(noisy.runs, fitted=noisy.law, shrink="auto", shrink_span=(1e8, 4e8))
    with pytest.raises(ValueError, match="shrink_span must be"):
        fit_evidence(noisy.runs, fitted=noisy.law, shrink=1.0, shrink_span=(4e8, 1e8))
