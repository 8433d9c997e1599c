"""``report`` and ``dashboard``: the study's HTML report, and optuna-dashboard with the AutoScale figures and note."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import html
from pathlib import Path
import sys
import time
from typing import Any
from typing import TYPE_CHECKING

from optuna_autoscale.cli._common import add_study_args
from optuna_autoscale.cli._common import cell
from optuna_autoscale.cli._common import Command
from optuna_autoscale.cli._common import design_config_of
from optuna_autoscale.cli._common import float_tokens
from optuna_autoscale.cli._common import handled
from optuna_autoscale.cli._common import load_study
from optuna_autoscale.cli._common import resolve
from optuna_autoscale.cli._next import print_next
from optuna_autoscale.cli._next import study_flags


if TYPE_CHECKING:
    import optuna


__all__ = ["DASHBOARD", "REPORT", "write_report"]


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(study: optuna.Study, out: str | Path, *, targets: Sequence[float] = (), method: str = "joint") -> Path:
    """Write a self-contained HTML report (figures with plotly.js inlined, and tables).

    Args:
        study: The study.
        out: The ``.html`` file to write.
        targets: Budgets (tokens) to extrapolate to (default 10x and 100x the largest budget).
        method: Extrapolation method for the weights-vs-budget figure.

    Returns:
        The path written.
    """
    from optuna_autoscale import dashboard as dash
    from optuna_autoscale import visualization as vis
    from optuna_autoscale.storage import redact_text

    res, why = vis.load_result(study)
    res = vis.CachedResult(res) if res is not None else None
    parts = [f"<h1>AutoScale report: {html.escape(study.study_name)}</h1>",
             f"<p>Generated {html.escape(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}.</p>"]
    try:
        progress = vis.design_progress(study)
        parts.append("<h2>Design progress</h2>")
        parts.append(_html_table(["budget", "complete", "running", "waiting", "failed", "open", "total"],
                                 [[r["label"], r["complete"], r["running"], r["waiting"], r["failed"], r["open"], r["total"]]
                                  for r in progress]))
    except ValueError as e:
        parts.append(f"<p>{html.escape(str(e))}</p>")
    if res is None:
        parts.append(f"<p>No fit yet: {html.escape(str(why))}</p>")
    else:
        optima = dict(res.optima)
        if optima:
            budgets = sorted(optima)
            domains = list(optima[budgets[0]].weights)
            tgts = list(targets) or [10 * max(budgets), 100 * max(budgets)]
            parts.append("<h2>Fitted optimal weights</h2>")
            parts.append(_html_table(["domain"] + [f"{vis.format_tokens(b)} tokens" for b in budgets],
                                     [[d] + [optima[b].weights[d] for b in budgets] for d in domains]
                                     + _consistency_rows(res, budgets)))
            if len(optima) < 2:
                parts.append(f"<p>Extrapolation needs fitted optima at two or more budgets; have {len(optima)}.</p>")
                tgts = []
            head, rows = dash.extrapolation_table(res, tgts, domains)
            if head:
                parts.append("<h2>Extrapolated mixtures</h2>")
                rows = [[c.replace("**no**", "NO") for c in r] for r in rows]
                parts.append(_html_table(head, rows).replace("<table>", '<table class="extrapolated">'))
            fit_rows = []
            for b in sorted(getattr(res, "fits", {}) or {}):
                fit = res.fits[b]
                for d in fit.domains:
                    law = fit.params[d]
                    r = fit.residuals.get(d)
                    fit_rows.append([vis.format_tokens(b), d, law.a, law.b, law.c, "exact" if r is None else r])
            if fit_rows:
                parts.append("<h2>DDO fits: y(x) = (x + a)<sup>-b</sup> + c</h2>")
                parts.append(_html_table(["budget", "domain", "a", "b", "c", "rms residual"], fit_rows))
        noise_line, warns = dash.result_notes(res)
        rows = dash.verification_table(res)
        if rows:
            parts.append("<h2>Verification</h2>")
            parts.append(_html_table(dash.VERIFICATION_COLUMNS, rows).replace("<table>", '<table class="verification">'))
        parts.append(f"<h2>Noise and warnings</h2><p>{html.escape(noise_line)}</p>")
        if warns:
            parts.append("<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warns) + "</ul>")
    figs = dash.figures(study, result=res if res is not None else vis.NO_FIT, targets=targets)
    parts.append("<h2>Figures</h2>")
    first = True
    for name, fig in figs.items():
        parts.append(f'<div class="figure" id="fig-{name}">')
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False, default_height="520px"))
        parts.append("</div>")
        first = False
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}"
             "table{max-width:100%}td{overflow-wrap:anywhere}"
             "table.verification td:last-child{text-align:left;min-width:22em}"
             "table.extrapolated tr:last-child td{text-align:left;font-size:90%}"
             ".figure{max-width:100%;overflow:hidden}")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>AutoScale report: {html.escape(study.study_name)}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact_text(doc), encoding="utf-8")
    return path


def _cmd_report(args: argparse.Namespace) -> int:
    url, name = resolve(args)
    study = load_study(url, name)
    design_config_of(study)
    path = write_report(study, args.out, targets=args.target or ())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print_next(f"open {path} in a browser; explore the study interactively: optuna-autoscale dashboard {study_flags(args)}")
    return 0


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from optuna_autoscale.storage import create_storage
    from optuna_autoscale.storage import redact_url

    url, name = resolve(args)
    storage = create_storage(url, heartbeat_interval=None)
    study = load_study(url, name, storage=storage)
    if not args.no_refresh:
        from optuna_autoscale.dashboard import refresh

        try:
            refresh(study)
        except Exception as e:  # noqa: BLE001 - still serve the dashboard
            print(f"warning: could not refresh the AutoScale figures: {e}", file=sys.stderr)
    if args.host not in _LOOPBACK:
        print(f"warning: serving on {args.host}: anyone who can reach this machine can read and edit the study.",
              file=sys.stderr)
    print(f"optuna-dashboard for {redact_url(url)} at http://{args.host}:{args.port}/dashboard/studies/{study._study_id}",
          flush=True)
    print_next(f"open http://{args.host}:{args.port}/dashboard/studies/{study._study_id} in a browser (the AutoScale "
               "note and figures are on the study's Note and Plot tabs); Ctrl-C stops the server")
    run_server(storage, host=args.host, port=args.port)
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    add_study_args(p)
    p.add_argument("--out", default="report.html", metavar="FILE.html")
    p.add_argument("--target", action="append", type=float_tokens, metavar="TOKENS", help="budget to extrapolate to")


def _dashboard_args(p: argparse.ArgumentParser) -> None:
    add_study_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-refresh", action="store_true", help="serve without refreshing the figures first")


REPORT = Command(
    ("report",),
    help="write a self-contained HTML report with figures and tables",
    description="Write one HTML file (plotly.js inlined, no network needed to view it) with the design progress, "
    "fitted optima, extrapolations, fit parameters, verification table and the figures.",
    examples=(
        "optuna-autoscale report --config examples/config.toml --out report.html",
        "optuna-autoscale report --storage sqlite:///autoscale-example.db --study autoscale-example --out r.html "
        "--target 2e7",
    ),
    add_arguments=_report_args,
    run=handled(_cmd_report),
)
DASHBOARD = Command(
    ("dashboard",),
    help="launch optuna-dashboard on the study's storage",
    description="Refresh the AutoScale figures and summary note stored in the study, then serve optuna-dashboard "
    "(bound to 127.0.0.1 unless --host says otherwise). Stop it with Ctrl-C.",
    examples=(
        "optuna-autoscale dashboard --config examples/config.toml",
        "optuna-autoscale dashboard --storage sqlite:///autoscale-example.db --study autoscale-example --port 8081",
    ),
    add_arguments=_dashboard_args,
    run=handled(_cmd_dashboard),
)


def _consistency_rows(res: Any, budgets: list[float]) -> list[list[Any]]:
    """Rows under the fitted optima: each optimum's predicted gain over uniform, and the joint law's mixture there."""
    from optuna_autoscale import dashboard as dash

    cons = {r["budget"]: r for r in dash.consistency_of(res)}
    if not cons:
        return []
    return [
        ["predicted gain over uniform (80% interval)"]
        + [dash.gain_cell(cons[b]["optimum_gain_over_uniform"], cons[b]["optimum_uniform_interval"]) if b in cons else "–"
           for b in budgets],
        ["joint law's mixture there: TV distance, its gain over this (80%)"]
        + [f"{cons[b]['tv']:.2f}, {dash.gain_cell(cons[b]['gain'], cons[b]['interval'])}" if b in cons else "–"
           for b in budgets],
    ]
