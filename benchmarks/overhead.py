"""Sampler overhead: mean ask+tell time per trial, AutoScaleSampler against TPESampler.

Both samplers run a study of about 1,000 trials on the same simulated objective (100 domains
by default). AutoScaleSampler runs its full design at 5 budgets (5 x (1 + 2 x 100) design runs,
one held-out uniform run and 6 verification runs, whose DDO fits and joint-law fit happen
inside ``ask``); TPESampler searches the same 100 ``weight_<domain>`` parameters at a fixed
budget for the same number of trials. The time measured per trial is ``study.ask()`` plus
``suggest_mixture`` (where the sampling happens) plus ``study.tell()``; the objective's own
work (the simulator) is excluded. In-memory storage, one process, one thread. Both the wall
time and the process's CPU time are reported: on a shared machine (or under ``nice``) the wall
time of either sampler grows with the other jobs' load, the CPU time much less.

With ``--per-domain`` the objective also records the per-domain losses (user attrs
``loss_<domain>``, inside the untimed objective, for both samplers) and returns their mean, so
the held-out verification point's joint law is the per-domain transfer law (one fit per domain)
instead of the separable law. ``--quick`` is a seconds-long run (10 domains, 3 budgets).

Run:  python benchmarks/overhead.py [--domains 100] [--budgets 5] [--trials N] [--per-domain] [--quick]
"""

from __future__ import annotations

import argparse
import os


# One BLAS thread: on a small, busy machine OpenBLAS's threads fight each other (a 1000 x 300
# SVD in the joint-law fit took 25 times longer with the default). Same setting for both samplers.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics
import time
from typing import Any

import optuna

from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import suggest_mixture
from optuna_autoscale.design import DEFAULT_REACH
from optuna_autoscale.mixture import LOSS_PREFIX
from optuna_autoscale.simulate import separable


def _run(
    sampler: optuna.samplers.BaseSampler, land: Any, n_trials: int, tokens: float | None, per_domain: bool = False
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ask + suggest_mixture + tell, per trial."""
    study = optuna.create_study(sampler=sampler)
    times, cpu = [], []
    for _ in range(n_trials):
        c0 = time.process_time()
        t0 = time.perf_counter()
        trial = study.ask()
        mix = suggest_mixture(trial, land.domains) if tokens is None else suggest_mixture(trial, land.domains, tokens=tokens)
        t1 = time.perf_counter()
        c1 = time.process_time()
        if per_domain:  # the objective: not timed
            losses = land.per_domain_loss(mix.allocation, seed=mix.seed)
            for d, v in losses.items():
                trial.set_user_attr(f"{LOSS_PREFIX}{d}", float(v))
            value = float(statistics.fmean(losses.values()))
        else:
            value = land.loss(mix.allocation, seed=mix.seed)
        c2 = time.process_time()
        t2 = time.perf_counter()
        study.tell(trial, value)
        t3 = time.perf_counter()
        c3 = time.process_time()
        times.append((t1 - t0) + (t3 - t2))
        cpu.append((c1 - c0) + (c3 - c2))
    return times, cpu


def main(argv: list[str] | None = None) -> float:
    """Run the comparison and print its table; returns the ratio AutoScale / TPE (mean per trial)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--budgets", type=int, default=5)
    parser.add_argument("--trials", type=int, default=None, help="default: the AutoScale design's size")
    parser.add_argument("--per-domain", action="store_true",
                        help="record loss_<domain> and return their mean (the joint law is the per-domain transfer law)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 domains, 3 budgets")
    parser.add_argument("--reach", type=float, default=DEFAULT_REACH,
                        help="the design's reach (design.DEFAULT_REACH; 0: the multipliers as given)")
    args = parser.parse_args(argv)
    if args.quick:
        args.domains, args.budgets = 10, 3
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    land = separable(args.domains, seed=0)
    budgets = [1e8 * 2**i for i in range(args.budgets)]
    sampler = AutoScaleSampler(land.domains, budgets, seed=0, reach=args.reach or None)
    n_design = len(sampler.design.points) + len(sampler.design.dynamic_keys)
    n_trials = args.trials or n_design
    print(f"{args.domains} domains, {args.budgets} budgets, {n_trials} trials per sampler "
          f"(AutoScale design: {n_design} runs); objective records per-domain losses: {args.per_domain}")

    t = time.perf_counter()
    auto, auto_cpu = _run(sampler, land, n_trials, None, args.per_domain)
    auto_wall = time.perf_counter() - t
    t = time.perf_counter()
    tpe, tpe_cpu = _run(optuna.samplers.TPESampler(seed=0), land, n_trials, budgets[0], args.per_domain)
    tpe_wall = time.perf_counter() - t

    def row(name: str, xs: list[float], cs: list[float], wall: float) -> str:
        return (f"| {name:<16} | {1e3 * statistics.fmean(xs):>9.2f} | {1e3 * statistics.median(xs):>9.2f} "
                f"| {1e3 * max(xs):>9.1f} | {1e3 * statistics.fmean(cs):>11.2f} | {wall:>8.1f} |")

    print()
    print("| sampler          | mean (ms) | median ms |  max (ms) | CPU mean ms | wall (s) |")
    print("|------------------|-----------|-----------|-----------|-------------|----------|")
    print(row("AutoScaleSampler", auto, auto_cpu, auto_wall))
    print(row("TPESampler", tpe, tpe_cpu, tpe_wall))
    ratio = statistics.fmean(auto) / statistics.fmean(tpe)
    ratio_cpu = statistics.fmean(auto_cpu) / statistics.fmean(tpe_cpu)
    print(f"\nratio AutoScale / TPE (mean ask+tell per trial): {ratio:.3f} wall, {ratio_cpu:.3f} CPU  (goal <= 1.0)")
    fits = sorted(auto)[-(len(sampler.design.dynamic_keys)):]
    print(f"AutoScale's {len(fits)} slowest trials (verification points: DDO fits, joint law): "
          f"{sum(fits):.1f} s in all; mean of the other trials {1e3 * statistics.fmean(sorted(auto)[:-len(fits)]):.2f} ms")
    return ratio


if __name__ == "__main__":
    main()
