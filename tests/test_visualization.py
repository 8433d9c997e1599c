"""Plotly figures of an AutoScale study (optuna.visualization style)."""
from __future__ import annotations

import math

import numpy as np
import optuna
import plotly.graph_objects as go
import pytest

from _autoscale_helpers import BUDGETS
from _autoscale_helpers import completed_study  # noqa: F401  (session fixture)
from _autoscale_helpers import DOMAINS
from optuna_autoscale.design import DEFAULT_MULTIPLIERS
from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale.simulate import separable
from optuna_autoscale.visualization import CachedResult
from optuna_autoscale.visualization import design_progress
from optuna_autoscale.visualization import fit_fingerprint
from optuna_autoscale.visualization import NO_FIT
from optuna_autoscale.visualization import plot_design_progress
from optuna_autoscale.visualization import plot_domain_fits
from optuna_autoscale.visualization import plot_mixture_weights
from optuna_autoscale.visualization import plot_verification


optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def study(completed_study: tuple[str, str]) -> optuna.Study:  # noqa: F811
    url, name = completed_study
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture(scope="module")
def result(study: optuna.Study) -> CachedResult:
    return CachedResult(AutoScaleResult.from_study(study, write_summary=False))


def test_mixture_weights_points_are_the_optima_and_x_is_log(study: optuna.Study, result: CachedResult) -> None:
    fig = plot_mixture_weights(study, result=result, targets=[1e10])
    assert isinstance(fig, go.Figure)
    assert fig.layout.xaxis.type == "log"
    points = {t.name: t for t in fig.data if t.mode == "markers" and t.name and t.name.endswith("(fitted optimum)")}
    curves = {t.name: t for t in fig.data if t.mode == "lines" and t.name and t.name.endswith("(joint)")}
    assert len(points) == len(DOMAINS) and len(curves) == len(DOMAINS)
    for d in DOMAINS:
        pt = points[f"{d} (fitted optimum)"]
        assert list(pt.x) == sorted(BUDGETS)
        for b, w in zip(pt.x, pt.y):
            assert w == pytest.approx(result.optima[b].weights[d])
        curve = curves[f"{d} (joint)"]
        assert min(curve.x) == pytest.approx(min(BUDGETS)) and max(curve.x) >= 1e10
        # the curve is the extrapolation itself at the target
        i = int(np.argmin([abs(math.log(x / 1e10)) for x in curve.x]))
        assert curve.y[i] == pytest.approx(result.extrapolate(1e10).weights[d])
    # at every budget the curve's weights form a mixture
    xs = list(curves[f"{DOMAINS[0]} (joint)"].x)
    for j in range(len(xs)):
        assert sum(curves[f"{d} (joint)"].y[j] for d in DOMAINS) == pytest.approx(1.0)


def test_mixture_weights_paper_method(study: optuna.Study, result: CachedResult) -> None:
    fig = plot_mixture_weights(study, result=result, method="paper")
    names = {t.name for t in fig.data}
    assert f"{DOMAINS[0]} (paper)" in names
    with pytest.raises(ValueError, match="method must be 'joint' or 'paper'"):
        plot_mixture_weights(study, result=result, method="magic")


def test_mixture_weights_show_the_gap_to_the_optima_and_the_caps(study: optuna.Study, result: CachedResult) -> None:
    """The curve (joint law) and the points (each budget's DDO fit) disagree: a segment joins them and the
    title gives the largest gap; a capped domain gets its cap drawn and its capped budgets marked."""
    fig = plot_mixture_weights(study, result=result, targets=[1e10])
    curve = {t.name: t for t in fig.data if t.name and t.name.endswith("(joint)")}
    gaps = []
    for d in DOMAINS:
        for b in BUDGETS:
            c = curve[f"{d} (joint)"]
            gaps.append(abs(c.y[list(c.x).index(b)] - result.optima[b].weights[d]))
    segments = [t for t in fig.data if t.mode == "lines" and t.showlegend is False]
    assert len(segments) == len(DOMAINS) * len(BUDGETS)
    assert f"largest gap {max(gaps):.3f}" in fig.layout.title.text

    class Capped:  # the same result with a cap on the first domain, the way bounds= gives one
        def __init__(self, res: CachedResult, cap: float) -> None:
            self._res, self.cap = res, cap

        def __getattr__(self, name: str) -> object:
            return getattr(self._res, name)

        @property
        def design(self) -> object:
            d = self._res.design
            bounds = dict(d.bounds)
            bounds[DOMAINS[0]] = (bounds[DOMAINS[0]][0], self.cap)

            class D:
                def upper_bounds(self_inner) -> dict:  # noqa: N805
                    return {k: v[1] for k, v in bounds.items()}

            return D()

    cap = 0.5 * result.extrapolate(1e10).weights[DOMAINS[0]] * 1e10  # binding at 1e10
    capped = Capped(result, cap)
    fig = plot_mixture_weights(study, result=capped, targets=[1e10])
    names = {t.name for t in fig.data}
    assert any(n and n.startswith(f"{DOMAINS[0]} cap (") for n in names)
    assert f"{DOMAINS[0]} at its cap" in names
    assert "at the cap" in fig.layout.title.text and DOMAINS[0] in fig.layout.title.text


def test_domain_fits_show_every_budget_with_noise(study: optuna.Study, result: CachedResult) -> None:
    fig = plot_domain_fits(study, result=result)
    for b in BUDGETS:
        label = f"{b:.0e}".replace("e+0", "e") + " tokens"
        assert any(t.name == f"{label}: fit" for t in fig.data), label
    assert "1e8, 4e8" in fig.layout.title.text
    if result.noise is not None:
        runs = [t for t in fig.data if t.name and ": runs" in t.name]
        assert all(t.error_y.value == pytest.approx(result.noise / result.fits[max(BUDGETS)].base_value, rel=0.5)
                   for t in runs)
        assert "seed noise sd" in fig.layout.title.text


def test_domain_fits_curve_is_the_fitted_law_and_points_the_runs(study: optuna.Study, result: CachedResult) -> None:
    budget = max(BUDGETS)
    fig = plot_domain_fits(study, result=result, budget=budget)
    fit = result.fits[budget]
    panels = {t.xaxis for t in fig.data}
    assert len(panels) == len(DOMAINS)
    for i, d in enumerate(DOMAINS):
        axis = "x" if i == 0 else f"x{i + 1}"
        curve = next(t for t in fig.data if t.name.endswith(": fit") and t.xaxis == axis)
        runs = next(t for t in fig.data if ": runs" in t.name and t.xaxis == axis)
        law = fit.params[d]
        for x, y in zip(curve.x, curve.y):
            assert y == pytest.approx(law(x))
        # base run at x = 1 (relative objective 1) and the two perturbations (the default design's)
        assert sorted(runs.x) == sorted([1.0, *DEFAULT_MULTIPLIERS])
        assert runs.y[list(runs.x).index(1.0)] == pytest.approx(1.0)
        # a three-point fit interpolates its points
        for x, y in zip(runs.x, runs.y):
            assert law(x) == pytest.approx(y, rel=1e-4)
    # choosing a budget works, an unknown one is a clear error
    assert "1e8" in plot_domain_fits(study, result=result, budget=1e8).layout.title.text
    with pytest.raises(ValueError, match="No fit at budget"):
        plot_domain_fits(study, result=result, budget=123.0)


def test_verification_points_match_the_table(study: optuna.Study, result: CachedResult) -> None:
    fig = plot_verification(study, result=result)
    rows = result.verification()
    assert rows
    pts = [t for t in fig.data if t.mode == "markers+text"]
    xs = sorted(x for t in pts for x in t.x)
    ys = sorted(y for t in pts for y in t.y)
    assert xs == pytest.approx(sorted(r["predicted"] for r in rows if r["predicted"] is not None))
    assert ys == pytest.approx(sorted(r["observed"] for r in rows if r["predicted"] is not None))
    assert any(t.name == "predicted = observed" for t in fig.data)
    # each point is labelled with its budget; error bars are the measured seed noise
    labels = sorted(x for t in pts for x in t.text)
    assert labels == sorted(f"{r['budget']:.0e}".replace("e+0", "e") for r in rows if r["predicted"] is not None)
    if result.noise is not None:
        assert all(t.error_y.value == pytest.approx(2 * result.noise) for t in pts)


def test_design_progress_counts(study: optuna.Study) -> None:
    rows = design_progress(study)
    assert [r["label"].split(":")[0] for r in rows] == ["b0", "b1", "held-out"]
    # per budget: base + 3 domains x 2 multipliers + verify_optimum; held-out: uniform + predicted
    assert [r["total"] for r in rows] == [8, 8, 2]
    assert all(r["complete"] == r["total"] and r["open"] == 0 for r in rows)
    fig = plot_design_progress(study)
    assert fig.layout.barmode == "stack"
    complete = next(t for t in fig.data if t.name == "complete")
    assert list(complete.y) == [8, 8, 2]
    assert "18/18" in fig.layout.title.text


def test_partial_and_empty_studies_give_figures_not_errors() -> None:
    land = separable(domains=list(DOMAINS), seed=1)
    study = optuna.create_study(sampler=AutoScaleSampler(land.domains, list(BUDGETS), seed=0))
    for f in (plot_mixture_weights, plot_domain_fits, plot_verification):
        fig = f(study)
        assert "not enough data yet" in fig.layout.title.text or "no " in fig.layout.title.text
    study.optimize(land.objective(), n_trials=3)
    rows = design_progress(study)
    assert sum(r["complete"] for r in rows) == 3 and sum(r["open"] for r in rows) == 15
    assert "no budget's design has completed yet" in plot_mixture_weights(study).layout.title.text
    assert plot_mixture_weights(study, result=NO_FIT).data == ()
    # a study not run with AutoScaleSampler
    plain = optuna.create_study()
    assert "AutoScaleSampler" in plot_design_progress(plain).layout.title.text
    with pytest.raises(ValueError, match="run it with AutoScaleSampler"):
        design_progress(plain)


def test_fingerprint_changes_only_with_fit_inputs() -> None:
    land = separable(domains=["a", "b"], seed=2)
    study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8], seed=0))
    seen = []
    study.optimize(land.objective(), n_trials=4)
    seen.append(fit_fingerprint(study))
    study.optimize(land.objective(), n_trials=1)  # b0 (5 runs) is now complete
    seen.append(fit_fingerprint(study))
    assert seen[0] == ((), ())
    assert len(seen[1][0]) == 5 and seen[1][1] == ()


def test_cached_result_memoises(result: CachedResult) -> None:
    calls = []

    class Spy:
        def extrapolate(self, tokens: float, method: str = "joint", caps: object = None) -> float:
            calls.append((tokens, method))
            if tokens < 0:
                raise ValueError("negative")
            return tokens

    cached = CachedResult(Spy())
    assert cached.extrapolate(1e9) == cached.extrapolate(1e9) == 1e9
    with pytest.raises(ValueError):
        cached.extrapolate(-1)
    with pytest.raises(ValueError):
        cached.extrapolate(-1)
    assert calls == [(1e9, "joint"), (-1, "joint")]
