"""``run`` and ``worker``: create or join a study and run its trials, in this process and local worker processes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any
from typing import TYPE_CHECKING

from optuna_autoscale.cli._common import add_study_args
from optuna_autoscale.cli._common import Command
from optuna_autoscale.cli._common import CommandError
from optuna_autoscale.cli._common import handled
from optuna_autoscale.cli._common import load_study
from optuna_autoscale.cli._common import resolve
from optuna_autoscale.cli._common import RUN_CONFIG_ATTR
from optuna_autoscale.cli._common import run_config_of
from optuna_autoscale.cli.build import build_objective
from optuna_autoscale.cli.build import build_sampler
from optuna_autoscale.cli.build import storage_for
from optuna_autoscale.cli.inspect import print_show
from optuna_autoscale.proxy import distributed  # rank logic only: imports no torch


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.config import RunConfig


__all__ = ["RUN", "WORKER", "design_size", "join_workers", "open_study", "progress_callback", "start_workers", "work"]

_logger = logging.getLogger("optuna_autoscale")


def _callbacks(cfg: RunConfig, *, dashboard: bool = True) -> list[Any]:
    if not (cfg.study.dashboard and dashboard):
        return []
    try:
        import optuna_dashboard  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        _logger.warning("dashboard = true but plotly/optuna-dashboard are missing; figures are not refreshed.")
        return []
    from optuna_autoscale.dashboard import DashboardCallback

    return [DashboardCallback(every=1, min_interval=5.0)]


def _build_objective_ranked(cfg: RunConfig) -> tuple[Callable[[Any], float], tuple[str, ...], dict[str, int] | None]:
    """:func:`build_objective`; under torchrun rank 0 builds (the corpus) first, the others then hit its cache."""
    if distributed.world_size() > 1 and cfg.study.objective == "proxy":
        return distributed.rank0_first(lambda: build_objective(cfg), device=str(cfg.proxy.get("device", "auto")))
    return build_objective(cfg)


def work(study: optuna.Study, objective: Callable[[Any], float], cfg: RunConfig, n_trials: int | None,
         *, dashboard: bool = True, progress: bool = False) -> int:
    """Run trials until the design is complete (or ``n_trials``); returns the trials run here.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank calls this: rank 0 runs the study and
    shares each trial's mixture; the other ranks train those mixtures with it (DDP) until rank 0
    stops, and return the number of mixtures they trained. See
    :mod:`optuna_autoscale.proxy.distributed`.
    """
    if distributed.world_size() > 1:
        return int(distributed.run_ranked(
            lambda: _optimize(study, objective, cfg, n_trials, dashboard=dashboard, progress=progress), objective))
    return _optimize(study, objective, cfg, n_trials, dashboard=dashboard, progress=progress)


def _optimize(study: optuna.Study, objective: Callable[[Any], float], cfg: RunConfig, n_trials: int | None,
              *, dashboard: bool = True, progress: bool = False) -> int:
    sampler = study.sampler
    if getattr(sampler, "is_complete", None) is not None and sampler.is_complete(study):
        return 0
    callbacks = _callbacks(cfg, dashboard=dashboard)
    if progress:
        callbacks = [progress_callback(design_size(sampler))] + callbacks
    ran = [0]

    def count(study: optuna.Study, trial: Any) -> None:
        ran[0] += 1

    import optuna

    # Optuna's own "Trial N finished ... Best is trial M" lines compare runs across budgets and show
    # the raw weight_* parameters; the progress callback prints each run's design point instead.
    verbosity = optuna.logging.get_verbosity()
    if progress:
        optuna.logging.set_verbosity(min(max(verbosity, optuna.logging.WARNING), optuna.logging.WARNING))
    try:
        study.optimize(
            objective,
            n_trials=n_trials,
            callbacks=[count] + callbacks,
            catch=(),
            gc_after_trial=False,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    # The last trial to finish the design refreshes the dashboard (the callback throttles).
    if callbacks and sampler.is_complete(study):
        with contextlib.suppress(Exception):
            from optuna_autoscale.dashboard import refresh

            refresh(study)
    return ran[0]


def open_study(cfg: RunConfig, url: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or resume the config's study and store the run config in it, for ``worker`` processes.

    Raises:
        CommandError: the study exists with another ``[design]``.
    """
    import optuna

    from optuna_autoscale.ledger import study_system_attrs
    from optuna_autoscale.storage import redact_url

    study = optuna.create_study(storage=storage_for(url, cfg), study_name=cfg.study.name, sampler=sampler,
                                direction="minimize", load_if_exists=True)
    stored = study_system_attrs(study).get(RUN_CONFIG_ATTR)
    mine = cfg.to_json()
    if stored is not None and json.loads(stored).get("design") != json.loads(mine).get("design"):
        old, new = json.loads(stored).get("design") or {}, json.loads(mine).get("design") or {}
        changed = ", ".join(f"{k} = {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                            if old.get(k) != new.get(k))
        raise CommandError(
            f"study {cfg.study.name!r} in {redact_url(url)} was started with another [design] ({changed}); "
            "use a new [study] name or restore those keys. Caps for extrapolation need no new design: "
            "`optuna-autoscale extrapolate --max-epochs E` or `--cap DOMAIN=TOKENS` change them at extrapolate time."
        )
    study._storage.set_study_system_attr(study._study_id, RUN_CONFIG_ATTR, mine)
    return study


def start_workers(study_name: str, url: str, n: int, *, n_trials: int | None = None,
                  progress: bool = False) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` local ``worker`` processes on a study that :func:`open_study` prepared.

    Processes, not threads: each run gets its own torch state (RNG, thread count) and its own GIL
    (what was measured: ``benchmarks/RESULTS.md``, "Measurements cited by the code"). The workers
    leave the dashboard figures to the caller.
    """
    from optuna_autoscale.storage import STORAGE_ENV

    env = dict(os.environ)
    env[STORAGE_ENV] = url
    cmd = [sys.executable, "-m", "optuna_autoscale", "worker", "--study", study_name, "--no-dashboard"]
    if n_trials:
        cmd += ["--n-trials", str(n_trials)]
    if progress:
        cmd += ["--progress"]
    return [subprocess.Popen(cmd, env=env) for _ in range(n)]


def join_workers(procs: Sequence[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for the worker processes; return the non-zero exit statuses (reported on stderr)."""
    bad = [c for c in (p.wait() for p in procs) if c != 0]
    if bad:
        print(f"warning: {len(bad)} worker process(es) exited with status {bad}", file=sys.stderr)
    return bad


def progress_callback(n_runs: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """An Optuna callback printing one line per finished run: its design point, tokens, loss and time."""
    from optuna.trial import TrialState

    from optuna_autoscale.design import POINT_ATTR
    from optuna_autoscale.mixture import ROLE_ATTR
    from optuna_autoscale.mixture import TOKENS_PARAM

    start = time.perf_counter()

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.PRUNED and trial.system_attrs.get(POINT_ATTR) is None:
            return  # a trial that found nothing left to claim: it trained nothing
        done = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
        value = "failed" if trial.value is None else f"loss {trial.value:.4f}"
        point = trial.system_attrs.get(POINT_ATTR)
        role = json.loads(point)["key"] if isinstance(point, str) else trial.user_attrs.get(ROLE_ATTR, "?")
        tokens = trial.user_attrs.get(TOKENS_PARAM)
        size = "" if tokens is None else f"{float(tokens):>10,.0f} tokens"
        secs = trial.user_attrs.get("train_seconds")
        speed = "" if secs is None else f"  {secs:5.0f} s"
        # Past the design's size: replicates a process ran instead of waiting on a running point.
        print(f"      run {done:>2}/{max(done, n_runs)}  {role:<28}{size}  {value}{speed}"
              f"  (elapsed {time.perf_counter() - start:.0f} s)", flush=True)

    return callback


def design_size(sampler: Any) -> int:
    """Runs in an AutoScaleSampler's design, verification included."""
    return len(sampler.design.points) + len(sampler.design.dynamic_keys)


def _cmd_run(args: argparse.Namespace) -> int:
    from optuna_autoscale.config import load_config
    from optuna_autoscale.storage import install_log_redaction
    from optuna_autoscale.storage import redact_url
    from optuna_autoscale.storage import STORAGE_ENV

    cfg = load_config(args.config_file)
    url = args.storage or os.environ.get(STORAGE_ENV) or cfg.study.storage
    install_log_redaction([url])
    workers = args.workers or cfg.study.workers
    if distributed.world_size() > 1 and workers > 1:
        raise CommandError(
            f"under torchrun (WORLD_SIZE={distributed.world_size()}) `run` trains each proxy on all the ranks and starts no "
            "other worker processes: use workers = 1 (or --workers 1), and start more workers as separate jobs"
        )
    objective, domains, unique = _build_objective_ranked(cfg)
    if distributed.rank() > 0:  # torchrun: rank 0 runs the study; this rank trains its mixtures with it
        ran = work(None, objective, cfg, None)  # type: ignore[arg-type]
        print(f"rank {distributed.rank()}: trained {ran} mixture(s) with rank 0", flush=True)
        return 0
    sampler = build_sampler(cfg, domains, unique_tokens=unique)
    study = open_study(cfg, url, sampler)
    print(f"study {cfg.study.name!r} on {redact_url(url)}: {len(domains)} domains, budgets "
          f"{', '.join(f'{b:.3g}' for b in cfg.design.budgets)} tokens, {workers} worker(s)", flush=True)
    procs = start_workers(cfg.study.name, url, workers - 1, n_trials=args.n_trials, progress=True)
    try:
        ran = work(study, objective, cfg, args.n_trials or cfg.study.n_trials, progress=True)
    finally:
        bad = join_workers(procs)
    complete = sampler.is_complete(study)
    print(f"this process ran {ran} trial(s); design complete: {complete}", flush=True)
    res = print_show(study, fmt="table", budget=None, cfg=cfg, tolerant=True)
    from optuna_autoscale.cli._next import print_next
    from optuna_autoscale.cli._next import tokens_arg

    conf = args.config_file
    target = None
    if complete and res is not None:
        with contextlib.suppress(Exception):  # no fit (e.g. one budget): the line without a target
            from optuna_autoscale.cli.inspect import suggested_target

            target = suggested_target(res)
    if target is not None:
        print_next(f"optuna-autoscale extrapolate --config {conf} --tokens {tokens_arg(target)} (the mixture at "
                   f"the target), optuna-autoscale report --config {conf} (the HTML report), "
                   f"optuna-dashboard {redact_url(url)} (the dashboard)")
    elif complete:
        print_next(f"optuna-autoscale show --config {conf} (the fitted optima), "
                   f"optuna-dashboard {redact_url(url)} (the dashboard)")
    else:
        print_next(f"optuna-autoscale run {conf} again resumes the design; "
                   f"optuna-autoscale status --config {conf} shows what is left")
    return 0 if not bad else 1


def _cmd_worker(args: argparse.Namespace) -> int:
    import optuna

    url, name = resolve(args)
    probe = load_study(url, name)
    cfg = run_config_of(probe)
    if cfg is None:
        raise CommandError(
            f"study {name!r} has no run config ({RUN_CONFIG_ATTR!r}); start it with `optuna-autoscale run CONFIG.toml` first."
        )
    objective, domains, unique = _build_objective_ranked(cfg)
    if distributed.rank() > 0:  # torchrun: rank 0 runs the study; this rank trains its mixtures with it
        ran = work(None, objective, cfg, None)  # type: ignore[arg-type]
        print(f"worker {os.getpid()} rank {distributed.rank()}: trained {ran} mixture(s) with rank 0", flush=True)
        return 0
    sampler = build_sampler(cfg, domains, unique_tokens=unique)
    study = optuna.load_study(study_name=name, storage=storage_for(url, cfg), sampler=sampler)
    ran = work(study, objective, cfg, args.n_trials or cfg.study.n_trials, dashboard=not args.no_dashboard,
               progress=args.progress)
    print(f"worker {os.getpid()}: ran {ran} trial(s); design complete: {sampler.is_complete(study)}", flush=True)
    return 0


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", metavar="CONFIG.toml", help="the run config (see examples/config.toml)")
    p.add_argument("--storage", metavar="URL", help="override the config's storage URL (or set $OPTUNA_AUTOSCALE_STORAGE)")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: the config's)")
    p.add_argument("--n-trials", type=int, metavar="N", help="cap on the trials each worker runs")


def _worker_args(p: argparse.ArgumentParser) -> None:
    add_study_args(p)
    p.add_argument("--n-trials", type=int, metavar="N", help="stop after N trials")
    p.add_argument("--no-dashboard", action="store_true", help="do not refresh the dashboard figures from this worker")
    p.add_argument("--progress", action="store_true", help="print one line per finished run (as the demo does)")


RUN = Command(
    ("run",),
    help="run a study from a TOML config (design, proxy training, workers)",
    description="Create (or resume) the study of CONFIG.toml and run trials until the AutoScale design and its "
    "verification runs are complete, in this process and `workers - 1` local worker processes. "
    "Prints the fitted optima at the end. Re-running the same config resumes the study.",
    examples=(
        "optuna-autoscale run examples/config.toml",
        "optuna-autoscale run my.toml --workers 4",
        "OPTUNA_AUTOSCALE_STORAGE=postgresql://user:pw@db:5432/optuna optuna-autoscale run my.toml",
    ),
    add_arguments=_run_args,
    run=handled(_cmd_run),
)
WORKER = Command(
    ("worker",),
    help="join a running study from another process or machine",
    description="Run trials of an existing study until its design is complete. The worker reads the run config "
    "stored in the study by `run`, so data paths must be valid on this machine too. Start one per "
    "machine (each proxy may itself use torchrun across the machine's GPUs).",
    examples=(
        "optuna-autoscale worker --storage postgresql://user@db:5432/optuna --study my-mixture",
        "OPTUNA_AUTOSCALE_STORAGE=postgresql://user:pw@db/optuna optuna-autoscale worker --study my-mixture",
    ),
    add_arguments=_worker_args,
    run=handled(_cmd_worker),
)
