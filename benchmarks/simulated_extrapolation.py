"""Share of the uniform -> oracle loss gain recovered at 10x the larger budget, on simulated landscapes.

For each simulator family (:mod:`optuna_autoscale.simulate`: ``separable``, ``transfer``,
``mixing_law``), seed and signal-to-noise ratio, this script runs DDO designs directly on the
landscape (no Optuna, no training): at each budget a uniform base run and one-domain
perturbations at multipliers 0.2 and 3, all with one seed per budget (common random numbers).
The noise of each budget's runs is set so that the mean absolute x3 effect at that budget over
the noise sd is the given SNR (half of the noise variance seed-shared, removed by the common
seed; :meth:`Landscape.with_snr`). The objective is the mean of the per-domain losses, and half of
its noise variance is drawn independently per validation domain (:data:`DOMAIN_SHARE`,
``Landscape.domain_share``; real per-domain losses are correlated, not identical), the same for
every row. Budgets 1e8 and 4e8 tokens, target 4e9.

Each method proposes an allocation for the target, scored by the true (noiseless) loss as

    share = (L(uniform) - L(method)) / (L(uniform) - L(oracle))   at 4e9 tokens

(1 = the whole gain, 0 = no better than uniform, < 0 = worse than uniform). Rows:

- ``joint (robust, default)``: what :class:`AutoScaleResult` does (:data:`DEFAULT_LAW`,
  :data:`TRANSFER_FORMS`), i.e. one of the rows below (now ``per-domain, form by CV (robust)``);
- ``joint separable (robust)``: :func:`fit_separable` over both budgets on the scalar objective,
  ``optimal_allocation(robust=True)`` anchored at the 4e8 DDO optimum;
- ``joint separable (non-robust)``: that law's point optimum at the target;
- ``per-domain transfer (robust)`` / ``(non-robust)``: :func:`optuna_autoscale.transfer.fit_transfer`
  on the per-domain losses (one transfer law per validation domain), the same robust rule and anchor;
- ``per-domain, form by CV (robust)`` / ``(non-robust)``: the same with ``forms="auto"``: per
  validation domain the power-law transfer form or the exponential (Data Mixing Laws) form,
  whichever has the smaller leave-one-run-out error;
- ``paper (DDO + extrapolate)``: :func:`fit_power_laws` per budget, each budget's optimum
  (lower bound 0.2x, the paper's), then :func:`extrapolation.extrapolate`;
- ``direct transfer``: the 4e8 DDO optimum's weights reused at 4e9;
- ``oracle transfer (reference)``: the *true* 4e8 optimum reused (the best any transfer can do);
- design options, all with the robust joint *separable* law: ``+ shared gamma``, ``+ multipliers 0.5, 2``
  (4 per domain), ``+ replicated design`` (each budget's design run with 2 seeds),
  ``+ third budget 2e8``; and two of them with the default per-domain law (``default + ...``, forms as
  :data:`TRANSFER_FORMS`).

Usage::

    python benchmarks/simulated_extrapolation.py            # full table (about 10 minutes with --jobs 1)
    python benchmarks/simulated_extrapolation.py --quick    # smoke run, seconds
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import math
import multiprocessing
import sys
import time
import warnings

import numpy as np


BUDGETS = (1e8, 4e8)
TARGET = 4e9
THIRD = 2e8
M = 7
FAMILIES = ("separable", "transfer", "mixing_law")
SNRS = (math.inf, 30.0, 6.0)
DOMAIN_SHARE = 0.5
"""Share of the mean loss's noise variance drawn independently per domain (``Landscape.domain_share``), every row."""
DEFAULT_LAW = "transfer"
"""The law behind the ``joint (robust, default)`` row: what :class:`AutoScaleResult` uses ("separable" / "transfer")."""
TRANSFER_FORMS = "auto"
"""Its per-domain forms (``results.TRANSFER_FORMS``): "auto" = the ``form by CV`` row, "power" = ``per-domain transfer``."""
ROWS = (
    "joint (robust, default)",
    "joint separable (robust)",
    "joint separable (non-robust)",
    "per-domain transfer (robust)",
    "per-domain transfer (non-robust)",
    "per-domain, form by CV (robust)",
    "per-domain, form by CV (non-robust)",
    "paper (DDO + extrapolate)",
    "direct transfer",
    "oracle transfer (reference)",
    "joint + shared gamma",
    "joint + multipliers 0.5, 2",
    "joint + replicated design",
    "joint + third budget 2e8",
    "default + multipliers 0.5, 2",
    "default + replicated design",
)
QUICK_ROWS = ("joint (robust, default)", "per-domain transfer (robust)", "paper (DDO + extrapolate)", "direct transfer")

Obs = tuple[dict[str, float], float, str]
Run = tuple[dict[str, float], float, str, dict[str, float]]


def _landscape(family: str, seed: int) -> object:
    from optuna_autoscale import simulate

    return getattr(simulate, family)(M, seed=seed)


def design_runs(
    land: object, budget: float, snr: float, seed: int, multipliers: Sequence[float] = (0.2, 3.0)
) -> list[Run]:
    """One budget's DDO design on ``land``: uniform base + one-domain perturbations, one seed.

    Rows are ``(allocation, objective, group, per-domain losses)``; the objective is the mean of
    the per-domain losses, whose noise is half shared by the run's domains and half independent
    per domain (:data:`DOMAIN_SHARE`).
    """
    noisy = land.with_snr(snr, budget, domain_share=DOMAIN_SHARE)  # type: ignore[attr-defined]
    domains = land.domains  # type: ignore[attr-defined]
    base = {d: budget / len(domains) for d in domains}
    group = f"{budget:.3g}/seed{seed}"
    allocs = [base]
    for d in domains:
        for x in multipliers:
            alloc = dict(base)
            alloc[d] = base[d] * x
            allocs.append(alloc)
    runs = []
    for alloc in allocs:
        per = noisy.per_domain_loss(alloc, seed=seed)
        runs.append((alloc, float(np.mean(list(per.values()))), group, per))
    return runs


def _ddo_optimum(runs: list[Run]) -> dict[str, float]:
    from optuna_autoscale.laws import fit_power_laws

    fit = fit_power_laws([(r[0], r[1]) for r in runs], runs[0][0])
    return fit.optimal_allocation()


def _rescale(alloc: Mapping[str, float], tokens: float) -> dict[str, float]:
    tot = sum(alloc.values())
    return {d: v * tokens / tot for d, v in alloc.items()}


def scenario(args: tuple[str, float, int, tuple[str, ...], int]) -> dict[str, float]:
    """Shares recovered by every row for one (family, snr, seed)."""
    from optuna_autoscale.extrapolation import extrapolate
    from optuna_autoscale.laws import fit_separable
    from optuna_autoscale.transfer import fit_transfer

    family, snr, seed, rows, n_samples = args
    warnings.simplefilter("ignore")
    land = _landscape(family, seed)
    domains = land.domains  # type: ignore[attr-defined]
    uniform = {d: TARGET / len(domains) for d in domains}
    oracle = land.oracle(TARGET)  # type: ignore[attr-defined]
    l_u = land.true_loss(uniform)  # type: ignore[attr-defined]
    l_o = land.true_loss(oracle)  # type: ignore[attr-defined]

    def share(alloc: Mapping[str, float]) -> float:
        return (l_u - land.true_loss(dict(alloc))) / (l_u - l_o)  # type: ignore[attr-defined]

    run_seed = 1000 * seed
    designs = [design_runs(land, b, snr, run_seed + j) for j, b in enumerate(BUDGETS)]
    optima = [_ddo_optimum(r) for r in designs]
    anchor = _rescale(optima[-1], TARGET)
    base_obs = [o for r in designs for o in r]

    def joint(obs: list[Run], *, robust: bool = True, **kw: object) -> dict[str, float]:
        law = fit_separable([r[:3] for r in obs], n_bootstrap=n_samples, seed=seed, **kw)  # type: ignore[arg-type]
        return law.optimal_allocation(TARGET, robust=robust, anchor=anchor)

    def per_domain(obs: list[Run], *, robust: bool = True, forms: str = "power") -> dict[str, float]:
        law = fit_transfer([(r[0], r[3], r[2]) for r in obs], forms=forms)
        return law.optimal_allocation(TARGET, robust=robust, anchor=anchor)

    cache: dict[str, Mapping[str, float]] = {}

    def once(key: str, make: Callable[[], Mapping[str, float]]) -> Mapping[str, float]:
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def separable_robust() -> Mapping[str, float]:
        return once("separable", lambda: joint(base_obs))

    def transfer_robust() -> Mapping[str, float]:
        return once("transfer", lambda: per_domain(base_obs))

    def forms_robust() -> Mapping[str, float]:
        return once("forms", lambda: per_domain(base_obs, forms="auto"))

    def default_law() -> Mapping[str, float]:
        if DEFAULT_LAW == "separable":
            return separable_robust()
        return forms_robust() if TRANSFER_FORMS == "auto" else transfer_robust()

    makers: dict[str, Callable[[], Mapping[str, float]]] = {
        "joint (robust, default)": default_law,
        "joint separable (robust)": separable_robust,
        "joint separable (non-robust)": lambda: joint(base_obs, robust=False),
        "per-domain transfer (robust)": transfer_robust,
        "per-domain transfer (non-robust)": lambda: per_domain(base_obs, robust=False),
        "per-domain, form by CV (robust)": forms_robust,
        "per-domain, form by CV (non-robust)": lambda: per_domain(base_obs, robust=False, forms="auto"),
        "paper (DDO + extrapolate)": lambda: extrapolate(optima, TARGET),
        "direct transfer": lambda: anchor,
        "oracle transfer (reference)": lambda: _rescale(land.oracle(BUDGETS[-1]), TARGET),  # type: ignore[attr-defined]
        "joint + shared gamma": lambda: joint(base_obs, shared_gamma=True),
        "joint + multipliers 0.5, 2": lambda: joint(
            [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + j, (0.2, 0.5, 2.0, 3.0))]
        ),
        "joint + replicated design": lambda: joint(
            base_obs + [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + 100 + j)]
        ),
        "joint + third budget 2e8": lambda: joint(base_obs + design_runs(land, THIRD, snr, run_seed + 50)),
        "default + multipliers 0.5, 2": lambda: per_domain(
            [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + j, (0.2, 0.5, 2.0, 3.0))],
            forms=TRANSFER_FORMS,
        ),
        "default + replicated design": lambda: per_domain(
            base_obs + [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + 100 + j)],
            forms=TRANSFER_FORMS,
        ),
    }
    out: dict[str, float] = {}
    for row in rows:
        try:
            out[row] = float(share(makers[row]()))
        except Exception as exc:  # a failing method scores nothing; report it, do not hide it
            print(f"[{family} snr={snr} seed={seed}] {row}: {type(exc).__name__}: {exc}", file=sys.stderr)
            out[row] = math.nan
    return out


def run(
    *, families: Sequence[str], snrs: Sequence[float], seeds: int, rows: Sequence[str], n_samples: int, jobs: int
) -> dict[tuple[str, float], list[dict[str, float]]]:
    tasks = [(f, s, k, tuple(rows), n_samples) for f in families for s in snrs for k in range(seeds)]
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(scenario, tasks, chunksize=1)
    else:
        results = [scenario(t) for t in tasks]
    table: dict[tuple[str, float], list[dict[str, float]]] = {}
    for t, r in zip(tasks, results):
        table.setdefault((t[0], t[1]), []).append(r)
    return table


def _snr_label(s: float) -> str:
    return "inf" if math.isinf(s) else f"{s:g}"


def format_table(
    table: dict[tuple[str, float], list[dict[str, float]]], rows: Sequence[str], *, stat: str = "mean"
) -> str:
    cols = list(table)
    head = "| method | " + " | ".join(f"{f} SNR {_snr_label(s)}" for f, s in cols) + " | mean |"
    sep = "|---" * (len(cols) + 2) + "|"
    lines = [head, sep]
    for row in rows:
        vals = []
        for c in cols:
            v = np.array([r[row] for r in table[c]])
            vals.append(float(np.nanmean(v)) if stat == "mean" else float(np.nanmin(v)))
        cells = " | ".join(f"{100 * v:.0f}%" for v in vals)
        lines.append(f"| {row} | {cells} | {100 * float(np.nanmean(vals)):.0f}% |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 family, 1 seed, 4 rows (seconds)")
    parser.add_argument("--seeds", type=int, default=8, help="landscape seeds per cell (default 8)")
    parser.add_argument("--samples", type=int, default=None, help="posterior samples of the joint law")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--rows", nargs="*", default=None, help="rows to compute (default: all)")
    args = parser.parse_args(argv)
    if args.quick:
        families, snrs, seeds, rows, n_samples, jobs = ["separable"], [math.inf, 6.0], 1, QUICK_ROWS, 100, 1
    else:
        families, snrs, seeds, jobs = args.families, SNRS, args.seeds, args.jobs
        rows = tuple(args.rows) if args.rows else ROWS
        unknown = [r for r in rows if r not in ROWS]
        if unknown:
            parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
        n_samples = 200 if args.samples is None else args.samples
    t0 = time.perf_counter()
    table = run(families=families, snrs=snrs, seeds=seeds, rows=rows, n_samples=n_samples, jobs=jobs)
    print(f"Share of the uniform->oracle gain recovered at {TARGET:.0e} tokens (budgets "
          f"{BUDGETS[0]:.0e}, {BUDGETS[1]:.0e}; m={M}; {seeds} seed(s) per cell), mean over seeds:\n")
    print(format_table(table, rows))
    print("\nWorst seed per cell:\n")
    print(format_table(table, rows, stat="min"))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
