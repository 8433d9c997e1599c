"""optuna-dashboard glue: AutoScale's figures and a summary note, stored in the study.

optuna-dashboard shows plotly figures saved with
:func:`optuna_dashboard.save_plotly_graph_object` and a markdown note saved with
:func:`optuna_dashboard.save_note` on the study's page. :func:`refresh` saves the figures of
:mod:`optuna_autoscale.visualization` under fixed ids (so each refresh replaces the last one) and
the summary note; :class:`DashboardCallback` calls it as trials finish.

Everything is written as study system attrs (JSON strings), so it works with every storage
and any process (a worker, the CLI, a notebook) can refresh it.

Example:
    .. code-block:: python

        import optuna
        from optuna_autoscale import AutoScaleSampler
        from optuna_autoscale.dashboard import DashboardCallback
        from optuna_autoscale.simulate import separable

        land = separable(4, seed=0)
        study = optuna.create_study(
            storage="sqlite:///autoscale.db",
            sampler=AutoScaleSampler(land.domains, [1e8, 4e8]),
        )
        study.optimize(land.objective(), callbacks=[DashboardCallback(every=5)])
        # then: optuna-dashboard sqlite:///autoscale.db   (or: optuna-autoscale dashboard ...)
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
import math
import threading
import time
from typing import Any
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


__all__ = [
    "FIGURE_IDS",
    "SUMMARY_CARD_ID",
    "metric_label",
    "set_metric_name",
    "summary_card",
    "link_note",
    "DashboardCallback",
    "refresh",
    "save_figures",
    "save_summary_note",
    "summary_markdown",
]

_logger = logging.getLogger(__name__)

FIGURE_IDS: dict[str, str] = {
    "progress": "autoscale-design-progress",
    "weights": "autoscale-mixture-weights",
    "fits": "autoscale-domain-fits",
    "verification": "autoscale-verification",
}
"""Graph object id of each figure in optuna-dashboard (fixed: a refresh replaces the figure)."""

SUMMARY_CARD_ID = "autoscale-summary"
"""Graph object id of :func:`summary_card`, saved before the figures so that it leads them."""


def metric_label(metric: Any, objective: str = "proxy") -> str:
    """What the study's value is, in words, for Optuna's panels (``study.set_metric_names``).

    ``"mean_loss"`` -> "mean validation loss", ``"mean_ppl"`` -> "mean validation perplexity", a
    mapping of domain weights -> "weighted validation loss (code 0.5, web 0.5)"; a simulated study
    -> "simulated loss".
    """
    if objective == "simulate":
        return "simulated loss"
    if isinstance(metric, dict) and metric:
        total = sum(float(v) for v in metric.values()) or 1.0
        return "weighted validation loss (" + ", ".join(f"{d} {float(w) / total:.2g}" for d, w in metric.items()) + ")"
    return {"mean_loss": "mean validation loss", "mean_ppl": "mean validation perplexity"}.get(str(metric), str(metric))


def set_metric_name(study: optuna.Study, name: str | None = None) -> str | None:
    """Name the study's objective (``study.set_metric_names``) unless it already has a name.

    Args:
        study: A single-objective study.
        name: The name; default from the stored run config (``[study] metric`` and ``objective``),
            and nothing when there is none.

    Returns:
        The study's metric name afterwards (None when it has none).
    """
    import json

    try:
        if len(study.directions) != 1:
            return None
        current = study.metric_names
        if current and current[0]:
            return current[0]
        if name is None:
            raw = study._storage.get_study_system_attrs(study._study_id).get("autoscale:run_config")
            if not raw:
                return None
            cfg = json.loads(raw) if isinstance(raw, str) else raw
            sec = cfg.get("study", {}) if isinstance(cfg, dict) else {}
            name = metric_label(sec.get("metric", "mean_loss"), str(sec.get("objective", "proxy")))
        study.set_metric_names([name])
        return name
    except Exception as e:  # noqa: BLE001 - a name is a nicety; never fail a study for it
        _logger.debug("could not set the study's metric name: %s", e)
        return None


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def figures(study: optuna.Study, *, result: Any = None, targets: Sequence[float] = ()) -> dict[str, Any]:
    """All AutoScale figures of ``study``: ``{name: plotly Figure}`` (names of :data:`FIGURE_IDS`)."""
    from optuna_autoscale import visualization as vis

    res, _ = vis.load_result(study, result)
    res = res if res is not None else (result if result is not None else vis.NO_FIT)
    return {
        "progress": vis.plot_design_progress(study),
        "weights": vis.plot_mixture_weights(study, result=res, targets=targets),
        "fits": vis.plot_domain_fits(study, result=res),
        "verification": vis.plot_verification(study, result=res),
    }


def save_figures(study: optuna.Study, *, result: Any = None, targets: Sequence[float] = ()) -> list[str]:
    """Save the AutoScale figures into the study for optuna-dashboard.

    Args:
        study: The study.
        result: A precomputed :class:`~optuna_autoscale.AutoScaleResult` (fitted if None).
        targets: Budgets (tokens) to mark on the mixture-weights figure.

    Returns:
        The graph object ids written.
    """
    from optuna_dashboard import save_plotly_graph_object

    set_metric_name(study)
    ids = []
    save_plotly_graph_object(study, summary_card(study, result=result), graph_object_id=SUMMARY_CARD_ID)
    for name, fig in figures(study, result=result, targets=targets).items():
        ids.append(save_plotly_graph_object(study, link_note(study, fig), graph_object_id=FIGURE_IDS[name]))
    return ids


def link_note(study: optuna.Study, fig: Any) -> Any:
    """Add a link to the study's AutoScale note (its Note tab) at the top right of ``fig``.

    optuna-dashboard shows saved figures in no fixed order, after its own panels; every AutoScale
    figure carries the pointer so that none can be read without the note's verdicts and warnings.
    """
    link = f"<a href='/dashboard/studies/{study._study_id}/note'>read the AutoScale note first</a>"
    title = fig.layout.title.text or ""
    if link not in title:
        top = fig.layout.margin.t
        fig.update_layout(title_text=f"{title}<br><sup>{link}</sup>", margin_t=(top if top is not None else 80) + 18)
    return fig


VERIFICATION_COLUMNS = ("check", "budget", "predicted gain", "observed gain", "verdict")
"""The verification table a person reads (the note and the report): gains, and the verdict last."""


def verification_table(result: Any) -> list[list[str]]:
    """The verification rows of ``result`` as :data:`VERIFICATION_COLUMNS`, formatted once for the note
    (Markdown) and the report (HTML): gains to 4 significant digits (losses stay in ``result.verification()``)."""
    from optuna_autoscale import visualization as vis

    try:
        rows = list(result.verification())
    except (ValueError, RuntimeError):
        return []
    return [
        [_fmt(v) if isinstance(v, float) else str(v) for v in (
            r.get("check"), f"{vis.format_tokens(float(r['budget']))} tokens" if r.get("budget") else "–",
            r.get("predicted_gain"), r.get("observed_gain"), r.get("verdict"))]
        for r in rows
    ]


def result_notes(result: Any) -> tuple[str, list[str]]:
    """``(noise sentence, warnings)`` of ``result``: what the note and the report say beside the tables."""
    from optuna_autoscale import visualization as vis

    noise = getattr(result, "noise", None)
    if isinstance(noise, (int, float)):
        line = f"Noise estimate (sd of the objective): {_fmt(float(noise))} from {getattr(result, 'noise_source', None) or '?'}."
    else:
        line = "No noise estimate: no base replicates and no spare degrees of freedom in the fits."
    warns = []
    for b, fit in sorted((getattr(result, "fits", {}) or {}).items()):
        warns += [f"{vis.format_tokens(b)} tokens: {w}" for w in getattr(fit, "warnings", ())]
    warns += [w for w in (getattr(result, "warnings", None) or []) if not w.startswith("budget ")
              or "DDO fit failed" in w or "design incomplete" in w]
    return line, warns


def summary_card(study: optuna.Study, *, result: Any = None) -> Any:
    """A small figure that leads AutoScale's panels on the study page: the key numbers, and where to read more.

    optuna-dashboard puts its own panels (History, importance, Best Trial) first; across budgets
    they mislead. This card says so and links to the AutoScale note (the study's Note tab).
    """
    import html

    import plotly.graph_objects as go

    from optuna_autoscale.results import short_summary

    res, why = _load(study, result)
    body = short_summary(res).split("; ") if res is not None else [f"no fit yet: {why}"]
    body = [b for b in body if not b.startswith("details:")]
    link = f"/dashboard/studies/{study._study_id}/note"
    lines = [f"<b>AutoScale: read the note first</b> (<a href='{link}'>Note tab</a>): progress, mixtures, "
             "verification verdicts, noise and warnings"] + [html.escape(b) for b in body] + [
        "Optuna's History 'best' line and Best Trial compare runs across budgets, and its importance "
        "ranks 'tokens' first: ignore them here."]
    import textwrap

    lines = [w for line in lines for w in (textwrap.wrap(line, 80, break_on_hyphens=False) if "<a " not in line
                                          else [line[: line.index(")") + 1], line[line.index(")") + 2:]])]
    fig = go.Figure()
    fig.add_annotation(text="<br>".join(lines), showarrow=False, xref="paper", yref="paper", x=0, y=1,
                       xanchor="left", yanchor="top", align="left", font=dict(size=13))
    fig.update_layout(title="AutoScale summary", xaxis=dict(visible=False), yaxis=dict(visible=False),
                      height=360, margin=dict(l=20, r=20, t=50, b=10), plot_bgcolor="white")
    return fig


def _load(study: optuna.Study, result: Any) -> tuple[Any, Any]:
    from optuna_autoscale import visualization as vis

    return vis.load_result(study, result)


def summary_markdown(study: optuna.Study, *, result: Any = None, targets: Sequence[float] = ()) -> str:
    """A markdown summary of the current result: progress, optima, extrapolations, verification.

    Args:
        study: The study.
        result: A precomputed :class:`~optuna_autoscale.AutoScaleResult` (fitted if None).
        targets: Budgets (tokens) to extrapolate to; default 10x and 100x the largest budget.
    """
    from optuna_autoscale import visualization as vis

    lines = [f"# AutoScale: {study.study_name}", ""]
    lines.append(f"_Updated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}._")
    lines.append("")
    try:
        progress = vis.design_progress(study)
    except ValueError as e:
        lines += [str(e), ""]
        progress = []
    if progress:
        lines += ["## Design progress", "", "| budget | complete | running | waiting | failed | open | total |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in progress:
            lines.append(
                f"| {r['label']} | {r['complete']} | {r['running']} | {r['waiting']} | {r['failed']} | {r['open']} | {r['total']} |"
            )
        lines.append("")
    res, why = vis.load_result(study, result)
    if res is None:
        lines += [f"No fit yet: {why}.", ""]
        return "\n".join(lines)
    optima = dict(getattr(res, "optima", {}) or {})
    if optima:
        domains = list(next(iter(optima.values())).weights)
        budgets = sorted(optima)
        lines += ["## Fitted optimal weights", "", "| domain | " + " | ".join(f"{vis.format_tokens(b)} tokens" for b in budgets) + " |",
                  "|---|" + "---:|" * len(budgets)]
        for d in domains:
            lines.append(f"| {d} | " + " | ".join(f"{optima[b].weights[d]:.4f}" for b in budgets) + " |")
        cons = {r["budget"]: r for r in consistency_of(res)}
        if cons:
            lines.append("| predicted gain over uniform (80% interval) | " + " | ".join(
                gain_cell(cons[b]["optimum_gain_over_uniform"], cons[b]["optimum_uniform_interval"]) if b in cons else "–"
                for b in budgets) + " |")
            lines.append("| joint law's mixture there: TV distance, its gain over this (80%) | " + " | ".join(
                f"{cons[b]['tv']:.2f}, {gain_cell(cons[b]['gain'], cons[b]['interval'])}" if b in cons else "–"
                for b in budgets) + " |")
        lines.append("")
        tgts = list(targets) or [10 * max(budgets), 100 * max(budgets)]
        head, rows = extrapolation_table(res, tgts, domains)
        if head:
            lines += ["## Extrapolated mixtures", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
    noise_line, warnings_ = result_notes(res)
    lines += [noise_line, ""]
    rows = verification_table(res)
    if rows:
        lines += ["## Verification", "", "| " + " | ".join(VERIFICATION_COLUMNS) + " |", "|---|---|---:|---:|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    if warnings_:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings_] + [""]
    return "\n".join(lines)


def caps_cell(rec: Any) -> str:
    """One extrapolated column's caps: which domains sit at their caps, and the mixture without them."""
    from optuna_autoscale.visualization import format_tokens

    if rec is None or not getattr(rec, "capped", None):
        return "none binding"
    text = "at cap: " + ", ".join(f"{d} {format_tokens(c)}" for d, c in rec.capped.items())
    if rec.uncapped is not None:
        text += "; without caps: " + ", ".join(f"{d} {w:.3f}" for d, w in rec.uncapped.weights.items())
    return text


def extrapolation_table(res: Any, targets: Sequence[float], domains: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The extrapolated mixtures, one column per target and rule (joint law, paper), as text cells: the weights, the
    predicted gains with their 80% intervals, whether inside the tested shares, and the caps. A column that cannot be
    computed (e.g. caps below the target) stays, saying why. Shared by the dashboard note and the HTML report.

    Returns:
        ``(headers, rows)``; empty when there are no targets.
    """
    from optuna_autoscale import visualization as vis

    cols, recs, why = [], [], []
    for t in targets:
        for m in ("joint", "paper"):
            cols.append(f"{vis.format_tokens(t)} ({m})")
            try:
                recs.append(res.recommend(float(t), method=m))
                why.append(caps_cell(recs[-1]))
            except (ValueError, RuntimeError) as e:
                recs.append(None)
                why.append(f"not computed: {e}")
    if not cols:
        return [], []
    rows = [[d] + [f"{r.mixture.weights[d]:.4f}" if r else "–" for r in recs] for d in domains]
    if any(r is not None for r in recs):
        rows += [
            ["predicted gain over uniform (80% interval)"]
            + [gain_cell(r.gain_over_uniform, r.uniform_interval) if r else "–" for r in recs],
            ["over the largest budget's optimum (80%)"] + [gain_cell(r.gain, r.interval) if r else "–" for r in recs],
            ["inside the tested shares"] + [("yes" if r.inside else "**no**") if r else "–" for r in recs],
        ]
    rows.append(["caps (the design's upper bounds)"] + why)
    return ["domain"] + cols, rows


def gain_cell(gain: float, interval: Sequence[float]) -> str:
    """``+0.0123 (+0.0050 to +0.0190)``: a predicted loss reduction and its interval."""
    if gain is None or not math.isfinite(float(gain)):
        return "–"
    return f"{gain:+.4f} ({interval[0]:+.4f} to {interval[1]:+.4f})"


def consistency_of(res: Any) -> list[dict[str, Any]]:
    """``res.consistency()`` (per-budget optimum against the joint law there), or [] when it cannot be computed."""
    try:
        return list(res.consistency()) if hasattr(res, "consistency") else []
    except (ValueError, RuntimeError):
        return []


def save_summary_note(study: optuna.Study, *, result: Any = None, targets: Sequence[float] = ()) -> str:
    """Save :func:`summary_markdown` as the study's note in optuna-dashboard; returns the markdown."""
    from optuna_dashboard import save_note

    body = summary_markdown(study, result=result, targets=targets)
    save_note(study, body)
    return body


def refresh(study: optuna.Study, *, targets: Sequence[float] = ()) -> list[str]:
    """Fit once, then save every figure and the summary note. Returns the graph object ids."""
    from optuna_autoscale import visualization as vis

    res, _ = vis.load_result(study)
    res = vis.CachedResult(res) if res is not None else vis.NO_FIT
    ids = save_figures(study, result=res, targets=targets)
    save_summary_note(study, result=res, targets=targets)
    return ids


class DashboardCallback:
    """An Optuna callback that refreshes the dashboard figures and note as trials finish.

    After every ``every``-th finished trial (any state) it saves the design-progress figure and
    the note. The figures that need fits (weights, per-domain fits, verification) are refitted
    only when what they depend on changed (a budget's design completed, a replicate or a
    verification run finished), and always when the design completes, so the last refresh
    shows the final result. Errors while refreshing are logged as warnings and never stop the
    study.

    Args:
        every: Refresh after this many finished trials (>= 1).
        targets: Budgets (tokens) to mark and extrapolate to in the figures and note.
        min_interval: Seconds to wait at least between two refreshes by this callback (the
            refits and the final refresh always run).

    Example:
        .. code-block:: python

            import optuna
            from optuna_autoscale import AutoScaleSampler
            from optuna_autoscale.dashboard import DashboardCallback
            from optuna_autoscale.simulate import separable

            land = separable(3)
            study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8], seed=0))
            study.optimize(land.objective(), n_trials=100, callbacks=[DashboardCallback(every=5)])
    """

    def __init__(self, every: int = 1, *, targets: Sequence[float] = (), min_interval: float = 0.0) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}.")
        if isinstance(min_interval, bool) or not isinstance(min_interval, (int, float)) or min_interval < 0:
            raise ValueError(f"min_interval must be a non-negative number of seconds, got {min_interval!r}.")
        self.every = every
        self.targets = tuple(float(t) for t in targets)
        self.min_interval = float(min_interval)
        self._seen = 0
        self._last = -math.inf
        self._lock = threading.Lock()
        self._fingerprint: tuple[Any, Any] = (None, None)
        self._result: Any = None
        self._cache: dict[Any, Any] = {}
        self.refreshes = 0
        self.refits = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        from optuna_dashboard import save_plotly_graph_object

        from optuna_autoscale import visualization as vis

        with self._lock:
            self._seen += 1
            try:
                fits_fp, verify_fp = vis.fit_fingerprint(study)
                refit = fits_fp != self._fingerprint[0]
                reverify = verify_fp != self._fingerprint[1]
                due = self._seen % self.every == 0 and time.monotonic() - self._last >= self.min_interval
                if not (due or refit or reverify):
                    return
                if refit or reverify:
                    if refit:
                        self._cache = {}
                    self._result = None
                    if fits_fp or verify_fp:  # something to fit
                        res, _ = vis.load_result(study)
                        self._result = vis.CachedResult(res, self._cache) if res is not None else None
                        self.refits += 1
                    self._fingerprint = (fits_fp, verify_fp)
                arg = self._result if self._result is not None else vis.NO_FIT
                if refit:
                    save_figures(study, result=arg, targets=self.targets)
                else:
                    save_plotly_graph_object(
                        study, link_note(study, vis.plot_design_progress(study)), graph_object_id=FIGURE_IDS["progress"]
                    )
                    if reverify:
                        save_plotly_graph_object(
                            study, link_note(study, vis.plot_verification(study, result=arg)),
                            graph_object_id=FIGURE_IDS["verification"],
                        )
                        save_plotly_graph_object(study, summary_card(study, result=arg), graph_object_id=SUMMARY_CARD_ID)
                save_summary_note(study, result=arg, targets=self.targets)
                self.refreshes += 1
            except Exception as e:  # noqa: BLE001 - the dashboard must never stop a study
                from optuna_autoscale.storage import redact_text

                _logger.warning("Could not refresh the AutoScale dashboard figures: %s", redact_text(str(e)))
            self._last = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
