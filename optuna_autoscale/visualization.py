"""Plotly figures of an AutoScale study, in the style of :mod:`optuna.visualization`.

Every function takes a study (run with :class:`~optuna_autoscale.AutoScaleSampler`) and returns
a :class:`plotly.graph_objects.Figure`. Figures that need fits accept an already computed
:class:`~optuna_autoscale.AutoScaleResult` as ``result=`` to avoid refitting; without one they
compute it. A study without enough data yet gives an empty figure whose title says what is
missing (as Optuna's own plots do), never an exception.

- :func:`plot_mixture_weights`: the optimal weight of each domain against the budget (log x):
  the fitted optima at the design budgets as points, the extrapolated mixture as a curve, the gap
  between them and each domain's cap.
- :func:`plot_domain_fits`: each domain's fitted power law ``y(x) = (x + a)^(-b) + c`` against
  its token multiplier at every budget, with the observed runs, the seed noise and other seeds.
- :func:`plot_verification`: predicted against observed loss of the verification runs, with the
  seed noise as error bars and each run's budget.
- :func:`plot_design_progress`: the design's runs per budget by state.

Example:
    .. code-block:: python

        import optuna
        from optuna_autoscale import AutoScaleSampler
        from optuna_autoscale.simulate import separable
        from optuna_autoscale.visualization import plot_mixture_weights

        land = separable(4, seed=0)
        study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8]))
        study.optimize(land.objective(), n_trials=60)
        plot_mixture_weights(study).show()
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import logging
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go


__all__ = [
    "plot_design_progress",
    "plot_domain_fits",
    "plot_mixture_weights",
    "plot_verification",
    "load_result",
    "design_progress",
]

_logger = logging.getLogger(__name__)

# Optuna's own plots use plotly's default qualitative palette; so do we.
_STATES = ("complete", "running", "waiting", "failed", "open")
_STATE_COLORS = {
    "complete": "#2ca02c",
    "running": "#1f77b4",
    "waiting": "#9467bd",
    "failed": "#d62728",
    "open": "#c7c7c7",
}


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:  # pragma: no cover - the viz extra is missing
        raise ImportError(
            "optuna_autoscale.visualization needs plotly: pip install 'optuna-autoscale[viz]'."
        ) from None
    return go


def _empty(title: str, why: str) -> go.Figure:
    go = _go()
    fig = go.Figure()
    fig.update_layout(
        title=f"{title} ({why})",
        annotations=[dict(text=why, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)],
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
    )
    return fig


def format_tokens(t: float) -> str:
    """Tokens for a label: ``3e5`` style, the input itself when not a positive finite number."""
    if t <= 0 or not math.isfinite(t):
        return str(t)
    exp = int(math.floor(math.log10(t)))
    mant = t / 10**exp
    return f"{mant:.3g}e{exp}" if abs(mant - round(mant)) > 1e-9 else f"{int(round(mant))}e{exp}"


NO_FIT = object()
"""Pass as ``result=`` to draw the figures without fitting (they then show "no fit yet")."""


def load_result(study: optuna.Study, result: Any = None) -> tuple[Any, str | None]:
    """``(result, None)`` or ``(None, why)`` when the study cannot be fitted yet.

    Args:
        study: The study.
        result: A precomputed :class:`~optuna_autoscale.AutoScaleResult` (returned as is), or
            :data:`NO_FIT` to skip fitting.
    """
    if result is NO_FIT:
        return None, "no completed budget to fit"
    if result is not None:
        return result, None
    from optuna_autoscale.results import AutoScaleResult

    try:
        return AutoScaleResult.from_study(study), None
    except (ValueError, KeyError, RuntimeError) as e:
        return None, str(e).splitlines()[0] if str(e) else type(e).__name__


def _design_and_ledger(study: optuna.Study) -> tuple[Any, Any]:
    from optuna_autoscale.ledger import Ledger
    from optuna_autoscale.ledger import read_design

    design = read_design(study)
    return design, Ledger(design, study.get_trials(deepcopy=False))


def design_progress(study: optuna.Study) -> list[dict[str, Any]]:
    """Progress of the design per budget: one row per budget (and the held-out budget).

    Each row has ``budget`` (tokens), ``label``, ``total`` (points of the design, verification
    included), and counts ``complete``, ``running``, ``waiting``, ``failed`` (points whose
    latest run failed and that are not claimed again) and ``open`` (not started). ``extra``
    counts the filler/duplicate runs (replicates beyond the design).

    Raises:
        ValueError: when the study was not run with AutoScaleSampler.
    """
    from optuna.trial import TrialState

    from optuna_autoscale.design import key_budget_index

    design, ledger = _design_and_ledger(study)
    keys_by_budget: dict[int, list[str]] = {}
    for p in design.points:
        keys_by_budget.setdefault(p.budget_index, []).append(p.key)
    for k in design.dynamic_keys:
        keys_by_budget.setdefault(key_budget_index(k, len(design.budgets)), []).append(k)
    state_of: dict[str, str] = {}
    extra: dict[int, int] = {}
    from optuna_autoscale.design import DesignPoint
    from optuna_autoscale.design import POINT_ATTR

    parsed: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False):
        raw = t.system_attrs.get(POINT_ATTR)
        if raw is None:
            continue
        pt = parsed.get(raw)
        if pt is None:
            pt = parsed[raw] = DesignPoint.from_json(raw)
        if design.point(pt.key) is None and pt.key not in design.dynamic_keys:
            extra[pt.budget_index] = extra.get(pt.budget_index, 0) + 1
            continue
        rank = {"complete": 4, "running": 3, "waiting": 2, "failed": 1}
        if pt.key in ledger.done:
            s = "complete"
        elif t.state == TrialState.RUNNING:
            s = "running"
        elif t.state == TrialState.WAITING:
            s = "waiting"
        else:
            s = "failed"
        if rank[s] > rank.get(state_of.get(pt.key, ""), 0):
            state_of[pt.key] = s
    rows = []
    for idx in sorted(keys_by_budget):
        keys = keys_by_budget[idx]
        if idx < len(design.budgets):
            budget = float(design.budgets[idx])
            label = f"b{idx}: {format_tokens(budget)} tokens"
        else:
            budget = float(design.heldout or 0.0)
            label = f"held-out: {format_tokens(budget)} tokens"
        row: dict[str, Any] = {"budget": budget, "label": label, "total": len(keys)}
        for s in _STATES:
            row[s] = 0
        for k in keys:
            row[state_of.get(k, "open")] += 1
        row["extra"] = extra.get(idx, 0)
        rows.append(row)
    return rows


def plot_design_progress(study: optuna.Study) -> go.Figure:
    """Stacked bars of the design's runs per budget: complete, running, waiting, failed, open.

    Args:
        study: A study run with :class:`~optuna_autoscale.AutoScaleSampler`.

    Returns:
        The figure (empty, with the reason in its title, for a study without a design).
    """
    go = _go()
    title = "AutoScale design progress"
    try:
        rows = design_progress(study)
    except ValueError as e:
        return _empty(title, str(e))
    labels = [r["label"] for r in rows]
    fig = go.Figure()
    for s in _STATES:
        fig.add_trace(
            go.Bar(
                name=s,
                x=labels,
                y=[r[s] for r in rows],
                marker_color=_STATE_COLORS[s],
                hovertemplate=f"%{{x}}<br>{s}: %{{y}}<extra></extra>",
            )
        )
    done = sum(r["complete"] for r in rows)
    total = sum(r["total"] for r in rows)
    fig.update_layout(
        title=f"{title}: {done}/{total} runs complete",
        barmode="stack",
        xaxis_title="budget",
        yaxis_title="design runs",
        legend_title="state",
    )
    return fig


def fit_fingerprint(study: optuna.Study) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """What the fits depend on, and what the verification table depends on.

    Returns ``(fits, verification)``: the completed runs (key, trial numbers) of completed
    budgets' designs, and those of verification runs. Equal values give equal fits (and
    verification rows), so a caller may reuse its last result (the dashboard callback does).
    """
    try:
        design, ledger = _design_and_ledger(study)
    except ValueError:
        return (), ()
    complete = {i for i in range(len(design.budgets)) if ledger.budget_done(i)}
    fits, verify = [], []
    for key, runs in ledger.done.items():
        pt = ledger.points.get(key)
        if pt is None:
            continue
        item = (key, tuple(sorted(n for n, _ in runs)))
        if pt.role.startswith("verify"):
            verify.append(item)
        elif pt.budget_index in complete:
            fits.append(item)
    return tuple(sorted(fits)), tuple(sorted(verify))


class CachedResult:
    """An :class:`~optuna_autoscale.AutoScaleResult` whose ``extrapolate`` calls are memoised.

    Figures and notes ask for the same extrapolations; the joint law's robust solve is not
    free. Every other attribute is the wrapped result's.

    Args:
        result: The result.
        cache: A dict shared by wrappers of results with the same fits (optional).
    """

    def __init__(self, result: Any, cache: dict[Any, Any] | None = None) -> None:
        self._result = result
        self._cache: dict[Any, Any] = {} if cache is None else cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)

    def extrapolate(self, tokens: float, method: str = "joint", caps: Any = None) -> Any:
        key = (float(tokens), method, None if caps is None else tuple(sorted(dict(caps).items())))
        if key not in self._cache:
            try:
                self._cache[key] = self._result.extrapolate(tokens, method=method, caps=caps)
            except (ValueError, RuntimeError) as e:
                self._cache[key] = e
        hit = self._cache[key]
        if isinstance(hit, Exception):
            raise hit
        return hit


def _budget_grid(budgets: Sequence[float], targets: Sequence[float], n_points: int) -> np.ndarray:
    lo = min(budgets)
    hi = max(list(budgets) + list(targets) + [10.0 * max(budgets)])
    grid = np.geomspace(lo, hi, n_points)
    return np.unique(np.concatenate([grid, np.asarray(list(budgets) + list(targets), dtype=float)]))


def plot_mixture_weights(
    study: optuna.Study,
    *,
    result: Any = None,
    method: str = "joint",
    targets: Sequence[float] = (),
    n_points: int = 8,
) -> go.Figure:
    """Optimal weight of each domain against the training budget (log x).

    Points: the fitted optimum at each design budget. Curve: the mixture extrapolated by
    ``method`` over budgets from the smallest design budget to ten times the largest (and any
    ``targets``). Each domain has one colour for its points and curve.

    Args:
        study: A study run with :class:`~optuna_autoscale.AutoScaleSampler`.
        result: A precomputed :class:`~optuna_autoscale.AutoScaleResult`.
        method: ``"joint"`` (the joint separable law) or ``"paper"`` (the paper's rule).
        targets: Extra budgets (tokens) to mark on the curve, e.g. the target training run.
        n_points: Budgets on the extrapolated curve.

    Returns:
        The figure.
    """
    go = _go()
    if method not in ("joint", "paper"):
        raise ValueError(f"method must be 'joint' or 'paper', got {method!r}.")
    title = "Optimal mixture weights vs budget"
    res, why = load_result(study, result)
    if res is None:
        return _empty(title, f"not enough data yet: {why}")
    optima: Mapping[float, Any] = dict(getattr(res, "optima", {}) or {})
    if not optima:
        return _empty(title, "no budget's design has completed yet")
    budgets = sorted(float(b) for b in optima)
    domains = list(next(iter(optima.values())).weights)
    palette = _palette()
    fig = go.Figure()
    curve: dict[float, Mapping[str, float]] = {}
    curve_error = None
    if len(budgets) >= 2:
        for t in _budget_grid(budgets, targets, n_points):
            try:
                curve[float(t)] = res.extrapolate(float(t), method=method).weights
            except (ValueError, RuntimeError) as e:
                curve_error = str(e).splitlines()[0]
                break
    for i, d in enumerate(domains):
        color = palette[i % len(palette)]
        if curve:
            xs = sorted(curve)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[curve[x][d] for x in xs],
                    mode="lines",
                    name=f"{d} ({method})",
                    legendgroup=d,
                    line=dict(color=color, dash="dash"),
                    hovertemplate=f"{d}<br>%{{x:.3g}} tokens<br>weight %{{y:.4f}}<extra>extrapolated</extra>",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=budgets,
                y=[optima[b].weights[d] for b in budgets],
                mode="markers",
                name=f"{d} (fitted optimum)",
                legendgroup=d,
                marker=dict(color=color, size=10),
                hovertemplate=f"{d}<br>%{{x:.3g}} tokens<br>weight %{{y:.4f}}<extra>DDO optimum</extra>",
            )
        )
    notes = _weights_marks(fig, res, optima, curve, domains, palette)
    for t in targets:
        fig.add_vline(x=float(t), line_dash="dot", line_color="gray")
    if len(budgets) < 2:
        suffix = " (curve: needs two fitted budgets)"
    elif curve_error and not curve:
        short = curve_error if len(curve_error) <= 80 else curve_error[:77] + "..."
        suffix = f" (extrapolation failed: {short})"
    else:
        suffix = ""
    fig.update_layout(
        title=title + suffix + "".join(f"<br><sup>{n}</sup>" for n in notes),
        margin=dict(t=70 + 18 * len(notes)) if notes else None,
        xaxis=dict(title="training budget (tokens)", type="log"),
        yaxis=dict(title="weight", rangemode="tozero"),
        legend_title="domain",
    )
    return fig


def _weights_marks(
    fig: Any, res: Any, optima: Mapping[float, Any], curve: Mapping[float, Mapping[str, float]],
    domains: Sequence[str], palette: Sequence[str],
) -> list[str]:
    """Draw how far the curve is from the fitted optima, and where each domain sits at its cap.

    The extrapolated curve comes from the joint law over all budgets; the points are each budget's
    own DDO fit. They need not agree: a thin segment joins each optimum to the curve at its budget,
    and the largest gap is returned for the title. A domain whose curve weight is at its cap
    (``bounds`` upper / tokens) gets the cap drawn (dotted) and its capped budgets marked, since past
    the cap the curve follows the cap, not the law. Returns the subtitle lines (none when nothing to say).
    """
    go = _go()
    notes: list[str] = []
    if curve:
        gaps = []
        for b, mix in optima.items():
            at = curve.get(float(b))
            if at is None:
                continue
            for i, d in enumerate(domains):
                gap = float(at[d]) - float(mix.weights[d])
                gaps.append((abs(gap), d, float(b)))
                fig.add_trace(go.Scatter(
                    x=[float(b), float(b)], y=[float(mix.weights[d]), float(at[d])], mode="lines",
                    line=dict(color=palette[i % len(palette)], width=1), legendgroup=d, showlegend=False,
                    name=f"{d} gap at {format_tokens(float(b))}",
                    hovertemplate=f"{d} at %{{x:.3g}} tokens: curve - fitted optimum = {gap:+.3f}<extra></extra>",
                ))
        if gaps:
            g, d, b = max(gaps)
            notes.append(f"curve vs fitted optima: largest gap {g:.3f} ({d} at {format_tokens(b)} tokens)")
    upper = {}
    try:
        upper = {d: float(v) for d, v in res.design.upper_bounds().items() if math.isfinite(float(v))}
    except (AttributeError, TypeError, ValueError):
        upper = {}
    capped_names = []
    xs = sorted(curve)
    for i, d in enumerate(domains):
        cap = upper.get(d)
        if cap is None or not xs:
            continue
        color = palette[i % len(palette)]
        at_cap = [x for x in xs if curve[x][d] * x >= cap * (1 - 1e-3)]
        cx = [x for x in xs if cap / x <= 1.0]
        fig.add_trace(go.Scatter(
            x=cx, y=[cap / x for x in cx], mode="lines", name=f"{d} cap ({format_tokens(cap)} tokens)",
            legendgroup=d, line=dict(color=color, dash="dot", width=1),
            hovertemplate=f"{d} cap {format_tokens(cap)} tokens<br>%{{x:.3g}} tokens: weight <= %{{y:.4f}}<extra>cap</extra>",
        ))
        if at_cap:
            capped_names.append(f"{d} from {format_tokens(at_cap[0])}")
            fig.add_trace(go.Scatter(
                x=at_cap, y=[curve[x][d] for x in at_cap], mode="markers", name=f"{d} at its cap",
                legendgroup=d, marker=dict(color=color, symbol="triangle-down-open", size=11, line=dict(width=2)),
                hovertemplate=f"{d} at its cap<br>%{{x:.3g}} tokens: weight %{{y:.4f}}<extra>capped</extra>",
            ))
    if capped_names:
        notes.append("at the cap (the cap decides, not the law): " + ", ".join(capped_names))
    return notes


def _palette() -> list[str]:
    import plotly.colors

    return list(plotly.colors.qualitative.Plotly) + list(plotly.colors.qualitative.D3)


def plot_domain_fits(study: optuna.Study, *, result: Any = None, budget: float | None = None) -> go.Figure:
    """Each domain's fitted power law against its token multiplier, with the observed runs.

    One panel per domain: ``y = objective / base objective`` against ``x = tokens / base
    tokens`` of that domain (log x); one colour per budget. The curve is the fitted
    ``(x + a)^(-b) + c``, the points the design's runs (base run at ``x = 1``) with error bars of
    the measured seed noise (``result.noise``), and open circles the base run's other seeds.
    Three points fit a three-parameter curve exactly, so the noise, not the curve, says how far
    to trust it; each point's residual is in its hover.

    Args:
        study: A study run with :class:`~optuna_autoscale.AutoScaleSampler`.
        result: A precomputed :class:`~optuna_autoscale.AutoScaleResult`.
        budget: The design budget (tokens) to show; default every budget that has a fit.

    Returns:
        The figure.
    """
    go = _go()
    from plotly.subplots import make_subplots

    title = "Per-domain DDO fits"
    res, why = load_result(study, result)
    if res is None:
        return _empty(title, f"not enough data yet: {why}")
    fits: Mapping[float, Any] = dict(getattr(res, "fits", {}) or {})
    if not fits:
        return _empty(title, "no budget's design has completed yet")
    if budget is None:
        shown = sorted(fits)
    else:
        match = [b for b in fits if math.isclose(float(b), float(budget), rel_tol=1e-6)]
        if not match:
            raise ValueError(
                f"No fit at budget {budget!r} tokens; fitted budgets: {sorted(float(b) for b in fits)}."
            )
        shown = [match[0]]
    try:
        design, _ = _design_and_ledger(study)
    except ValueError:
        design = None
    noise = getattr(res, "noise", None)
    noise = float(noise) if isinstance(noise, (int, float)) and math.isfinite(noise) and noise > 0 else None
    domains = list(fits[shown[0]].domains)
    cols = min(3, len(domains))
    rows = int(math.ceil(len(domains) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=domains, shared_yaxes=False)
    palette = _palette()
    for j, b in enumerate(shown):
        fit = fits[b]
        color = palette[j % len(palette)]
        label = f"{format_tokens(float(b))} tokens"
        observed, seeds = _budget_runs(study, design, float(b))
        base_value = float(fit.base_value)
        err = None if noise is None else noise / abs(base_value)
        for i, d in enumerate(domains):
            r, c = i // cols + 1, i % cols + 1
            first = i == 0
            law = fit.params[d]
            xs_tested = [float(x) for x in fit.multipliers.get(d, (1.0,))]
            grid = np.geomspace(min(xs_tested + [1.0]) * 0.5, max(xs_tested + [1.0]) * 2.0, 60)
            with np.errstate(all="ignore"):
                ys = np.asarray(law(grid), dtype=float)
            resid = fit.residuals.get(d) if getattr(fit, "residuals", None) else None
            fit_note = "exact (3 points, 3 parameters)" if resid is None else f"rms residual {resid:.2g}"
            fig.add_trace(
                go.Scatter(
                    x=grid.tolist(), y=ys.tolist(), mode="lines", name=f"{label}: fit", legendgroup=label,
                    showlegend=first, line=dict(color=color),
                    hovertemplate=(
                        f"{label}<br>{d}: (x+{law.a:.3g})^-{law.b:.3g} + {law.c:.3g}<br>{fit_note}"
                        "<br>x=%{x:.3g}, y=%{y:.4f}<extra>fit</extra>"
                    ),
                ),
                row=r, col=c,
            )
            pts = [(1.0, base_value)] + observed.get(d, [])
            with np.errstate(all="ignore"):
                res_pts = [p[1] / base_value - float(law(p[0])) for p in pts]
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in pts], y=[p[1] / base_value for p in pts], mode="markers",
                    name=f"{label}: runs" + (" (+-1 sd seed noise)" if err is not None else ""),
                    legendgroup=label, showlegend=first,
                    marker=dict(color=color, size=9, line=dict(color="black", width=1)),
                    error_y=dict(type="constant", value=err, visible=True, color=color) if err is not None else None,
                    customdata=res_pts,
                    hovertemplate=(
                        f"{label}<br>{d}<br>multiplier %{{x:.3g}}<br>relative objective %{{y:.4f}}"
                        "<br>residual %{customdata:+.2e}<extra>observed</extra>"
                    ),
                ),
                row=r, col=c,
            )
            if seeds:
                fig.add_trace(
                    go.Scatter(
                        x=[1.0] * len(seeds), y=[v / base_value for v in seeds], mode="markers",
                        name=f"{label}: base run, other seeds", legendgroup=label, showlegend=first,
                        marker=dict(color=color, size=8, symbol="circle-open", line=dict(width=2)),
                        hovertemplate=f"{label}<br>base run, another seed<br>relative objective %{{y:.4f}}<extra>seed</extra>",
                    ),
                    row=r, col=c,
                )
            fig.update_xaxes(type="log", title_text="multiplier" if r == rows else None, row=r, col=c)
            fig.update_yaxes(title_text="objective / base" if c == 1 else None, row=r, col=c)
    budgets_txt = ", ".join(format_tokens(float(b)) for b in shown)
    sub = (f"error bars: seed noise sd {noise:.3g} ({getattr(res, 'noise_source', None) or '?'})" if noise is not None
           else "no noise estimate (add replicates): a 3-point fit is exact, so the curve alone says nothing of the noise")
    fig.update_layout(
        title=f"{title} at {budgets_txt} tokens<br><sup>{sub}</sup>",
        margin=dict(t=100, b=140),
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0),
    )
    return fig


def _budget_runs(study: optuna.Study, design: Any, budget: float) -> tuple[dict[str, list[tuple[float, float]]], list[float]]:
    """One budget's perturbation runs ``{domain: [(multiplier, value)]}`` (the fit's seed) and the values
    of its base runs with other seeds (replicates, other design copies): what shows the seed noise."""
    if design is None:
        return {}, []
    idx = [i for i, b in enumerate(design.budgets) if math.isclose(b, budget, rel_tol=1e-6)]
    if not idx:
        return {}, []
    i = idx[0]
    try:
        _, ledger = _design_and_ledger(study)
    except ValueError:
        return {}, []
    seed = design.budget_seed(i)
    base = design.base_allocation(i)
    perturb: dict[str, list[tuple[float, float]]] = {d: [] for d in design.domains}
    seeds: list[float] = []
    for pt, value, _ in ledger.observations():
        if pt.budget_index != i:
            continue
        if pt.role == "perturb" and pt.domain is not None and pt.multiplier is not None and pt.seed == seed:
            perturb[pt.domain].append((float(pt.multiplier), value))
        elif pt.role in ("base", "replicate") and pt.seed != seed and pt.allocation is not None and all(
            abs(pt.allocation[d] - base[d]) <= 1e-6 * max(abs(base[d]), 1.0) for d in design.domains
        ):
            seeds.append(value)
    return perturb, seeds


def _row_number(row: Mapping[str, Any], *names: str) -> float | None:
    for n in names:
        v = row.get(n)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            return float(v)
    return None


def plot_verification(study: optuna.Study, *, result: Any = None) -> go.Figure:
    """Predicted against observed loss of the verification runs, with the identity line.

    Each point is a verification run (the fitted optimum at each budget, and the held-out
    budget's uniform and predicted-optimum runs). Points on the diagonal were predicted exactly.

    Args:
        study: A study run with :class:`~optuna_autoscale.AutoScaleSampler` and ``verify=True``.
        result: A precomputed :class:`~optuna_autoscale.AutoScaleResult`.

    Returns:
        The figure.
    """
    go = _go()
    title = "Verification: predicted vs observed"
    res, why = load_result(study, result)
    if res is None:
        return _empty(title, f"not enough data yet: {why}")
    try:
        rows = list(res.verification())
    except (ValueError, RuntimeError) as e:
        return _empty(title, str(e).splitlines()[0])
    pts = []
    for row in rows:
        pred = _row_number(row, "predicted", "predicted_loss", "predicted_value")
        obs = _row_number(row, "observed", "observed_loss", "observed_value", "value")
        if pred is None or obs is None:
            continue
        label = str(row.get("check") or row.get("role") or row.get("key") or "run")
        tokens = _row_number(row, "tokens", "budget")
        pts.append((pred, obs, label, tokens))
    if not pts:
        return _empty(title, "no verification run has completed yet")
    palette = _palette()
    noise = getattr(res, "noise", None)
    noise = float(noise) if isinstance(noise, (int, float)) and math.isfinite(noise) and noise > 0 else None
    fig = go.Figure()
    for j, label in enumerate(sorted({p[2] for p in pts})):
        sel = [p for p in pts if p[2] == label]
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in sel],
                y=[p[1] for p in sel],
                mode="markers+text",
                name=label + (" (+-2 sd seed noise)" if noise is not None else ""),
                marker=dict(size=11, color=palette[j % len(palette)]),
                error_y=dict(type="constant", value=2 * noise, visible=True) if noise is not None else None,
                text=[format_tokens(p[3]) if p[3] else "" for p in sel],
                textposition="middle right",
                cliponaxis=False,
                hovertemplate="%{text} tokens<br>predicted %{x:.4f}<br>observed %{y:.4f}<extra>" + label + "</extra>",
            )
        )
    lo = min(min(p[0], p[1]) for p in pts)
    hi = max(max(p[0], p[1]) for p in pts)
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    fig.add_trace(
        go.Scatter(
            x=[lo - pad, hi + pad],
            y=[lo - pad, hi + pad],
            mode="lines",
            name="predicted = observed",
            line=dict(color="gray", dash="dash"),
            hoverinfo="skip",
        )
    )
    sub = (f"error bars: +-2 sd of one run's seed noise ({noise:.3g}, {getattr(res, 'noise_source', None) or '?'})"
           if noise is not None else "no noise estimate (add replicates)")
    fig.update_layout(title=f"{title}<br><sup>{sub}</sup><br><sup>labels: budget in tokens</sup>", margin=dict(t=110),
                      xaxis_title="predicted objective", yaxis_title="observed objective")
    return fig
