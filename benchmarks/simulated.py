"""Benchmark 1: every method on simulated landscapes, at equal search compute.

For each simulator family (:mod:`optuna_autoscale.simulate`: ``separable`` — the family
AutoScale assumes — and the misspecified ``transfer`` and ``mixing_law``), 7 domains, several
landscape seeds, with noise (per-run plus seed-shared, at a given signal-to-noise ratio on the
x3 effects at the smallest budget; half of the mean loss's noise variance drawn independently per
validation domain, :data:`DOMAIN_SHARE`, as in ``simulated_extrapolation.py``):

- **AutoScale** runs its DDO design at two proxy budgets through Optuna
  (:class:`~optuna_autoscale.AutoScaleSampler`, ``study.optimize``), then
  :meth:`AutoScaleResult.extrapolate` gives the target mixture (``joint``, the default: the
  per-domain transfer law, since the simulator records ``loss_<domain>``; ``separable``, the
  separable joint law forced; and ``paper``, the paper's rule). **Direct transfer** reuses the
  larger budget's DDO optimum.
- Every search baseline gets the **same search compute**: proxy tokens x proxy parameters; the
  simulated proxies all have the same size, so it is the total training tokens of AutoScale's
  trials. Each baseline spends it on runs at the smallest proxy budget (RegMix's recipe: many
  small runs), ``n = compute / budget`` trials, and its mixture is used unchanged at the target:

  - **RegMix**: :class:`~optuna_autoscale.baselines.RegMixSampler` (swarm + regression optimum);
  - **Data Mixing Law**: fitted on the same swarm's per-domain losses, optimum of their mean;
  - **Optuna samplers** on the simplex through ``suggest_mixture``: TPE, GP, CMA-ES, QMC,
    Random; the best trial's mixture.
- **Uniform** costs nothing. (Natural and UniMax need data sizes the simulator does not have;
  DoReMi needs per-token losses: both are in ``proxy_real.py``.)

Scores at the target budget (10x the largest proxy budget by default), by the true noiseless
loss: **regret** ``L(method) - L(oracle)`` and the **share of the uniform -> oracle gain
recovered** ``(L(uniform) - L(method)) / (L(uniform) - L(oracle))``.

Usage::

    python benchmarks/simulated.py            # 3 families x 5 seeds (a few minutes on 2 cores; GP is the slow one)
    python benchmarks/simulated.py --quick    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import json
import math
from pathlib import Path
import sys
import time
from typing import Any
import warnings

import numpy as np


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._figures import save_figure  # noqa: E402


RESULTS = REPO / "benchmarks" / "results"
FAMILIES = ("separable", "transfer", "mixing_law")
BUDGETS = (1e8, 4e8)
M = 7
SAMPLERS = ("TPE", "GP", "CMA-ES", "QMC", "Random")
DOMAIN_SHARE = 0.5
"""Default share of the mean loss's noise variance drawn independently per domain (``Landscape.domain_share``):
real per-domain losses are correlated, not identical. 0 is the simulator's old noise (one draw for every domain)."""


def _sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "TPE":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "GP":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "CMA-ES":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "QMC":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if name == "Random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"Unknown sampler {name!r}; choose from {SAMPLERS}.")


def _weights(trial: Any, domains: Sequence[str]) -> dict[str, float]:
    return {d: float(trial.user_attrs[f"weight_{d}"]) for d in domains}


def _at(weights: Mapping[str, float], tokens: float) -> dict[str, float]:
    tot = sum(weights.values())
    return {d: tokens * w / tot for d, w in weights.items()}


def scenario(family: str, seed: int, *, snr: float, target: float, samplers: Sequence[str],
             quick: bool, search_budget: float = BUDGETS[0], domain_share: float = DOMAIN_SHARE) -> dict[str, Any]:
    """All methods on one landscape; returns per-method target allocation scores."""
    import optuna

    from optuna_autoscale import AutoScaleResult
    from optuna_autoscale import AutoScaleSampler
    from optuna_autoscale import simulate
    from optuna_autoscale.baselines import fit_data_mixing_law
    from optuna_autoscale.baselines import RegMixSampler
    from optuna_autoscale.baselines import uniform

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    land = getattr(simulate, family)(M, seed=seed)
    noisy = land if math.isinf(snr) else land.with_snr(snr, BUDGETS[0], domain_share=domain_share)
    domains = tuple(land.domains)
    oracle = land.oracle(target)
    l_o = land.true_loss(oracle)
    l_u = land.true_loss(_at(uniform(domains), target))
    out: dict[str, Any] = {"family": family, "seed": seed, "oracle_loss": l_o, "uniform_loss": l_u, "methods": {}}

    def score(name: str, weights: Mapping[str, float] | None, compute: float, seconds: float) -> None:
        if weights is None:
            out["methods"][name] = {"regret": math.nan, "share": math.nan, "compute": compute, "seconds": seconds}
            return
        loss = land.true_loss(_at(weights, target))
        out["methods"][name] = {
            "regret": loss - l_o,
            "share": (l_u - loss) / (l_u - l_o),
            "compute": compute,
            "seconds": seconds,
            "weights": dict(weights),
        }

    # ---- AutoScale through Optuna
    t0 = time.perf_counter()
    sampler = AutoScaleSampler(domains, list(BUDGETS), seed=seed, verify=False)
    study = optuna.create_study(sampler=sampler)
    objective = noisy.objective()
    for _ in range(20):
        if sampler.is_complete(study):
            break
        study.optimize(objective, n_trials=2 * (2 * M + 1) * len(BUDGETS))
    compute = float(sum(t.user_attrs.get("tokens", 0.0) for t in study.trials if t.state.is_finished()))
    res = AutoScaleResult.from_study(study, write_summary=False)
    secs = time.perf_counter() - t0
    for name, method in (("AutoScale (joint)", "joint"), ("AutoScale (separable law)", "separable"),
                         ("AutoScale (paper rule)", "paper")):
        try:
            score(name, dict(res.extrapolate(target, method=method).weights), compute, secs)
        except Exception as e:  # a failing method scores nothing; say so
            print(f"[{family} seed={seed}] {name}: {type(e).__name__}: {e}", file=sys.stderr)
            score(name, None, compute, secs)
    top = res.optima[max(res.optima)] if res.optima else None
    score("direct transfer", None if top is None else dict(top.weights), compute, secs)
    score("uniform", uniform(domains), 0.0, 0.0)

    # ---- search baselines at equal compute, at one proxy budget (default the smallest)
    budget = float(search_budget)
    n = max(4, int(compute // budget))
    if quick:
        n = min(n, 24)
    t0 = time.perf_counter()
    rs = RegMixSampler(domains, budget, n_swarm=n, seed=seed, n_candidates=20_000 if quick else 100_000)
    study = optuna.create_study(sampler=rs)
    study.optimize(noisy.objective(tokens=budget), n_trials=n)
    try:
        opt = rs.optimum(study)
    except Exception as e:
        print(f"[{family} seed={seed}] RegMix: {type(e).__name__}: {e}", file=sys.stderr)
        opt = None
    score("RegMix", opt, n * budget, time.perf_counter() - t0)
    t0 = time.perf_counter()
    done = [t for t in study.trials if t.state.is_finished() and t.value is not None]
    x = np.array([[t.user_attrs[f"weight_{d}"] for d in domains] for t in done])
    y = np.array([[t.user_attrs[f"loss_{d}"] for d in domains] for t in done])
    try:
        law = fit_data_mixing_law(x, y, domains=domains, targets=domains)
        score("Data Mixing Law", law.optimum(), n * budget, time.perf_counter() - t0)
    except Exception as e:
        print(f"[{family} seed={seed}] DML: {type(e).__name__}: {e}", file=sys.stderr)
        score("Data Mixing Law", None, n * budget, 0.0)
    for name in samplers:
        t0 = time.perf_counter()
        study = optuna.create_study(sampler=_sampler(name, seed))
        try:
            study.optimize(noisy.objective(tokens=budget), n_trials=n)
        except ImportError as e:  # e.g. CMA-ES needs the optional `cmaes` package
            print(f"[{family} seed={seed}] Optuna {name} skipped: {e}", file=sys.stderr)
            continue
        score(f"Optuna {name}", _weights(study.best_trial, domains), n * budget, time.perf_counter() - t0)
    return out


def table(results: list[dict[str, Any]]) -> str:
    families = list(dict.fromkeys(r["family"] for r in results))
    methods = list(dict.fromkeys(m for r in results for m in r["methods"]))
    lines = []
    for metric, label, fmt in (("share", "Share of the uniform -> oracle gain recovered (mean over seeds)",
                                lambda v: f"{100 * v:.0f}%"),
                               ("regret", "Regret at the target, true loss minus oracle loss (mean over seeds)",
                                lambda v: f"{v:.4f}")):
        lines.append(f"\n**{label}**\n")
        lines.append("| method | " + " | ".join(families) + " | mean |")
        lines.append("|---" * (len(families) + 2) + "|")
        for m in methods:
            vals = []
            for f in families:
                v = [r["methods"][m][metric] for r in results if r["family"] == f and m in r["methods"]]
                vals.append(float(np.nanmean(v)) if v and not all(math.isnan(x) for x in v) else math.nan)
            cells = " | ".join("–" if math.isnan(v) else fmt(v) for v in vals)
            mean = float(np.nanmean(vals)) if not all(math.isnan(v) for v in vals) else math.nan
            lines.append(f"| {m} | {cells} | {'–' if math.isnan(mean) else fmt(mean)} |")
    comp = {m: float(np.mean([r["methods"][m]["compute"] for r in results if m in r["methods"]])) for m in methods}
    lines.append("\nSearch compute (proxy tokens; all proxies have one size): "
                 + ", ".join(f"{m} {c:.3g}" for m, c in comp.items() if c > 0) + ".")
    return "\n".join(lines)


def figures(results: list[dict[str, Any]], out: Path, suffix: str) -> list[str]:
    try:
        import plotly.graph_objects as go
    except ImportError:
        return []
    families = list(dict.fromkeys(r["family"] for r in results))
    methods = list(dict.fromkeys(m for r in results for m in r["methods"]))
    fig = go.Figure()
    for f in families:
        ys, xs = [], []
        for m in methods:
            for r in results:
                if r["family"] == f and m in r["methods"]:
                    xs.append(m)
                    ys.append(100 * r["methods"][m]["share"])
        fig.add_trace(go.Box(x=xs, y=ys, name=f, boxpoints="all"))
    fig.update_layout(boxmode="group", title="Share of the uniform -> oracle gain recovered at the target (%)",
                      yaxis_title="% of gain", height=550)
    return save_figure(fig, out / f"simulated_share{suffix}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 family, 1 seed, TPE and Random only")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--snr", type=float, default=6.0, help="signal/noise of the x3 effects at the smallest budget")
    parser.add_argument("--target-multiple", type=float, default=10.0, help="target = this x the largest budget")
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS))
    parser.add_argument("--search-budget", choices=("smallest", "largest"), default="smallest",
                        help="proxy budget at which the search baselines spend their compute")
    parser.add_argument("--domain-share", type=float, default=DOMAIN_SHARE,
                        help="share of the mean loss's noise variance drawn independently per domain (0: one draw for all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    search_budget = BUDGETS[0] if args.search_budget == "smallest" else BUDGETS[-1]
    families = args.families[:1] if args.quick else args.families
    seeds = 1 if args.quick else args.seeds
    samplers = [s for s in args.samplers if s in ("TPE", "Random")] if args.quick else args.samplers
    target = args.target_multiple * BUDGETS[-1]
    runner: Callable[..., dict[str, Any]] = scenario
    results = []
    partial = args.out / "simulated_partial.json"
    for f in families:
        for s in range(seeds):
            t0 = time.perf_counter()
            results.append(runner(f, s, snr=args.snr, target=target, samplers=samplers, quick=args.quick,
                                  search_budget=search_budget, domain_share=args.domain_share))
            print(f"[{f} seed={s}] {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            args.out.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted run
            partial.write_text(json.dumps(results, indent=1, default=float))
    report = {"families": families, "seeds": seeds, "snr": args.snr, "budgets": list(BUDGETS), "target": target,
              "m": M, "search_budget": search_budget, "domain_share": args.domain_share, "results": results}
    print(f"{M} domains, proxy budgets {BUDGETS[0]:.3g} and {BUDGETS[1]:.3g} tokens, target {target:.3g} tokens, "
          f"SNR {args.snr:g} (domain share {args.domain_share:g}), {seeds} seed(s) per family; search baselines at "
          f"{search_budget:.3g} tokens.")
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + ("_largest" if args.search_budget == "largest" else "")
    (args.out / f"simulated{suffix}.json").write_text(json.dumps(report, indent=1, default=float))
    partial.unlink(missing_ok=True)
    report["figures"] = figures(results, args.out, suffix)
    return report


if __name__ == "__main__":
    main()
