"""AutoScale quickstart on a simulated 7-domain landscape (no GPU, about 10 seconds on a laptop).

The objective is a ground-truth loss landscape from :mod:`optuna_autoscale.simulate` (the
separable power law AutoScale assumes, with small seed noise), standing in for proxy training
runs. AutoScaleSampler runs the DDO design at 1e8 and 4e8 tokens, in two worker threads, on a
SQLite file, and stops the study when its design and verification runs are complete. Then:

- the fitted optimal weights per budget;
- the extrapolated mixture for 4e9 and 4e10 tokens by the joint law (default) and by the
  paper's rule, with the true loss of each (the simulator knows it) against uniform and the
  oracle;
- the verification table: predicted against observed loss, absolute and as the gain over uniform.

Run:  python examples/quickstart.py [--db PATH] [--n-jobs N]   (or `make quickstart`; `make demo`
is the real-text demo with GPT-2 proxies)
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile

import optuna

from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale.simulate import separable


BUDGETS = (1e8, 4e8)
TARGETS = (4e9, 4e10)


def _weights_row(name: str, weights: dict[str, float], domains: tuple[str, ...], extra: str = "") -> str:
    return f"{name:<22}" + "".join(f"{weights[d]:>9.3f}" for d in domains) + extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=None,
                        help="SQLite file to keep the study in (default: a temporary file, deleted at exit)")
    parser.add_argument("--n-jobs", type=int, default=2, help="worker threads (default 2)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    land = separable(7, seed=0, noise=0.0005, seed_noise=0.02)
    domains = land.domains
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "autoscale-quickstart.db"
        storage = f"sqlite:///{db}"
        sampler = AutoScaleSampler(domains, BUDGETS, replicates=1, seed=0)
        study = optuna.create_study(study_name="quickstart", storage=storage, sampler=sampler, load_if_exists=True)
        print(f"AutoScale quickstart: {len(domains)} simulated domains, budgets {BUDGETS}, storage {storage}")
        print(f"design: {len(sampler.design.points) + len(sampler.design.dynamic_keys)} runs "
              f"(held-out verification budget {sampler.design.heldout:.3g} tokens)")
        study.optimize(land.objective(), n_trials=500, n_jobs=args.n_jobs)
        print(f"study stopped itself after {len(study.trials)} trials; complete: {sampler.is_complete(study)}\n")

        result = AutoScaleResult.from_study(study)
        header = f"{'':<22}" + "".join(f"{d[:8]:>9}" for d in domains)
        print("Optimal weights per budget (DDO fit, the paper's method)")
        print(header)
        for budget, mix in sorted(result.optima.items()):
            print(_weights_row(f"{budget:.0e} tokens", dict(mix.weights), domains))
        print()

        for target in TARGETS:
            uniform = {d: target / len(domains) for d in domains}
            oracle = land.oracle(target)
            lu, lo = land.true_loss(uniform), land.true_loss(oracle)
            print(f"Extrapolated mixture at {target:.0e} tokens (true loss; share of the uniform->oracle gain)")
            print(header + f"{'loss':>9}{'gain':>8}")
            rows = [
                ("joint law (default)", result.extrapolate(target).allocation),
                ("paper's rule", result.extrapolate(target, method="paper").allocation),
                ("4e8 optimum reused", result.optima[max(result.optima)].with_tokens(target).allocation),
                ("uniform", uniform),
                ("oracle (simulator)", oracle),
            ]
            for name, alloc in rows:
                loss = land.true_loss(alloc)
                gain = (lu - loss) / (lu - lo)
                print(_weights_row(name, {d: alloc[d] / target for d in domains}, domains, f"{loss:>9.4f}{gain:>8.0%}"))
            print()

        print("Verification (same seed as the reference run; gain = reference loss - run loss)")
        print(f"{'check':<18}{'budget':>9}{'reference':>11}{'predicted':>11}{'observed':>10}"
              f"{'pred gain':>11}{'obs gain':>10}")

        def fmt(v: float | None, width: int) -> str:
            return f"{'n/a' if v is None else format(v, '.4f'):>{width}}"

        for row in result.verification():
            print(
                f"{row['check']:<18}{row['budget']:>9.2g}{row['reference']:>11}{fmt(row['predicted'], 11)}"
                f"{row['observed']:>10.4f}{fmt(row['predicted_gain'], 11)}{row['observed_gain']:>10.4f}"
            )
        print("(predicted loss at the held-out budget: up to the law's per-budget offset; compare the gains)")
        for row in result.verification():
            print(f"  {row['check']} at {row['budget']:.2g}: {row['verdict']}")
        src = result.noise_source or "none available"
        noise = "n/a" if result.noise is None else f"{result.noise:.4f}"
        print(f"\nnoise estimate (sd of the loss): {noise} ({src})")
        for w in result.warnings:
            print(f"warning: {w}")
        if args.db is None:
            print("the study lived in a temporary file; pass --db autoscale.db to keep it, then "
                  "`optuna-dashboard sqlite:///autoscale.db` shows its figures and summary note")
        else:
            print(f"summary stored in the study (user attr 'autoscale:summary'); next: optuna-dashboard {storage}")


if __name__ == "__main__":
    main()
