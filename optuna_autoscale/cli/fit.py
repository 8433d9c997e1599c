"""``fit``: fit runs you already have (a CSV / Parquet / JSON runs table) and recommend a mixture at a budget."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from optuna_autoscale.cli._common import Command
from optuna_autoscale.cli._common import float_tokens
from optuna_autoscale.cli._common import handled
from optuna_autoscale.cli._common import text_table
from optuna_autoscale.cli._next import print_next
from optuna_autoscale.cli._next import tokens_arg


__all__ = ["FIT", "fit_report"]


def _interval(iv: Any) -> str:
    if iv is None or any(not math.isfinite(float(v)) for v in iv):
        return "–"
    return f"{iv[0]:+.4f} to {iv[1]:+.4f}"


def fit_report(result: Any, tokens: float, *, allow_outside: bool = False, top: int = 10) -> dict[str, Any]:
    """What ``fit`` prints, as a dict: the recommendation, its gains with intervals, the ranking, the warnings."""
    rec = result.recommend(tokens, allow_outside=allow_outside)
    ranked = result.rank_tested(tokens)
    ev = result.evidence
    return {
        "tokens": tokens,
        "law": ev.kind,
        "runs": ev.runs.n,
        "budgets": [float(b) for b in ev.runs.budgets],
        "noise": ev.noise,
        "noise_source": ev.noise_source,
        # Per budget where the runs show the noise falling with scale ({} when one pooled sd fits every budget).
        "noise_by_budget": {f"{b:.6g}": v for b, v in sorted(ev.noise_by_budget.items())},
        "noise_at_tokens": ev.noise_at(tokens),
        "recommendation": dict(rec.mixture.weights),
        "inside_tested_region": rec.inside,
        "gain_over_best_tested": rec.gain_over_best,
        "gain_over_best_tested_interval": rec.best_interval,
        "gain_over_uniform": rec.gain_over_uniform,
        "gain_over_uniform_interval": rec.uniform_interval,
        "level": rec.level,
        "predicted": "absolute loss" if ev.absolute else "loss relative to uniform at the same tokens",
        "ranked": [{"rank": i + 1, **r} for i, r in enumerate(ranked[:top])],
        "n_tested": len(ranked),
        "warnings": list(result.warnings),
        "notes": list(result.notes),
    }


def _cmd_fit(args: argparse.Namespace) -> int:
    import warnings

    from optuna_autoscale.results import AutoScaleResult

    domains = args.domains.split(",") if args.domains else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = AutoScaleResult.from_runs(args.runs, domains=domains, objective=args.objective, checks=False)
        out = fit_report(res, args.tokens, allow_outside=args.allow_outside, top=args.top)
    nxt = (f"train the recommended mixture at {args.tokens:.3g} tokens (--format json for machines); add each new run "
           f"to {args.runs} and refit: optuna-autoscale fit {args.runs} --tokens {tokens_arg(args.tokens)}")
    if args.format == "json":
        print(json.dumps(out, indent=2, default=float))
        print_next(nxt, machine=True)
        return 0
    lvl = f"{out['level']:.0%}"
    doms = list(out["recommendation"])
    noise = f"seed noise sd {out['noise']:.4g} ({out['noise_source']})"
    if out["noise_by_budget"]:
        (b0, v0), *_, (b1, v1) = out["noise_by_budget"].items()
        noise += (f", falling with scale: {out['noise_at_tokens']:.4g} at {args.tokens:.4g} tokens (over the runs "
                  f"{v0:.4g} at {b0} to {v1:.4g} at {b1}; per budget in --format json)")
    print(f"{out['runs']} runs at {len(out['budgets'])} budget(s); law: {out['law']}; {noise}")
    print(f"\nRecommended mixture at {args.tokens:.4g} tokens"
          + (" (inside the tested shares)" if out["inside_tested_region"] else " (OUTSIDE the tested shares)") + ":")
    print(text_table(["domain", "weight"], [[d, round(out["recommendation"][d], 4)] for d in doms]))
    print(f"\npredicted gain over the best tested mixture: {out['gain_over_best_tested']:+.4f} "
          f"({lvl} interval {_interval(out['gain_over_best_tested_interval'])})")
    print(f"predicted gain over uniform: {out['gain_over_uniform']:+.4f} ({lvl} interval "
          f"{_interval(out['gain_over_uniform_interval'])})")
    print(f"\nTested mixtures ranked at {args.tokens:.4g} tokens ({out['predicted']}; best first, "
          f"{min(args.top, out['n_tested'])} of {out['n_tested']}):")
    rows = [[r["rank"], round(r["predicted"], 4), round(r["sd"], 4)] + [round(r["weights"][d], 3) for d in doms]
            for r in out["ranked"]]
    print(text_table(["rank", "predicted", "sd"] + doms, rows))
    if out["warnings"]:
        print("\nWarnings:")
        for w in out["warnings"]:
            print(f"- {w}")
    if out["notes"]:
        print("\nNotes:")
        for n in out["notes"]:
            print(f"- {n}")
    print()
    print_next(nxt)
    return 0


def _fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", metavar="RUNS", help="runs table: .csv, .tsv, .parquet, .json or .jsonl (columns weight_<domain> "
                   "or tokens_<domain>, tokens, optional group, value, any loss_<name>; or study.trials_dataframe())")
    p.add_argument("--tokens", type=float_tokens, required=True, metavar="TOKENS", help="target budget, e.g. 1e10")
    p.add_argument("--objective", default="value", help="objective column (default value), or mean (of the loss_<name> columns)")
    p.add_argument("--domains", metavar="A,B,...", help="training domains, in order (default: every weight_<d> column)")
    p.add_argument("--allow-outside", action="store_true",
                   help="let the recommendation leave the range of shares the runs used (with a warning)")
    p.add_argument("--top", type=int, default=10, help="tested mixtures to list (default 10)")
    p.add_argument("--format", choices=("table", "json"), default="table")


FIT = Command(
    ("fit",),
    help="fit a table of runs you already have and recommend a mixture at a budget",
    description="Fit the default joint law to every run of RUNS, anchor its predictions in the observations, and "
    "print the recommended mixture at --tokens (inside the range of shares the runs used unless --allow-outside), "
    "its predicted gain over the best tested mixture and over uniform with 80% intervals, the tested mixtures "
    "ranked at --tokens, and the warnings.",
    examples=(
        "optuna-autoscale fit runs.csv --tokens 1e10",
        "optuna-autoscale fit trials.parquet --tokens 3e11 --objective mean --format json",
    ),
    add_arguments=_fit_args,
    run=handled(_cmd_fit),
)
