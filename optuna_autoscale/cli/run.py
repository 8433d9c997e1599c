"""The ``optuna-autoscale`` subcommands: run, worker, status, show, extrapolate, report, dashboard.

:func:`register` adds them to the CLI's subparsers (``optuna_autoscale.cli``); this module also
runs on its own: ``python -m optuna_autoscale.commands run examples/config.toml``.

Storage URLs with passwords: pass them through the ``OPTUNA_AUTOSCALE_STORAGE`` environment
variable rather than ``--storage`` (command lines are visible to other users of a machine).
Every message redacts them either way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import html
import json
import logging
import math
import os
from pathlib import Path
import subprocess
import sys
import textwrap
import time
from typing import Any
from typing import TYPE_CHECKING

from optuna_autoscale.proxy import distributed  # rank logic only: imports no torch


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.config import RunConfig


__all__ = ["FORMATS", "RUN_CONFIG_ATTR", "register", "main", "build_objective", "build_sampler", "format_mixtures"]

_logger = logging.getLogger("optuna_autoscale")

RUN_CONFIG_ATTR = "autoscale:run_config"
"""Study system attr holding the run config as JSON (storage password redacted)."""
FORMATS = ("table", "json", "yaml", "megatron", "hf")
"""Output formats of ``show`` and ``extrapolate``."""


def _study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    from optuna_autoscale.ledger import study_system_attrs

    return study_system_attrs(study)


class CommandError(Exception):
    """A user-facing error of a subcommand (printed without a traceback, exit status 2)."""


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


def _float_tokens(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens such as 1e10, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"tokens must be a finite number > 0, got {text!r}")
    return v


def _add_study_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("study")
    g.add_argument("--storage", metavar="URL", help="storage URL (default: $OPTUNA_AUTOSCALE_STORAGE, or the config's)")
    g.add_argument("--study", metavar="NAME", help="study name (default: the config's [study] name)")
    g.add_argument("--config", metavar="CONFIG.toml", help="read the storage and study name from this run config")


def _redaction_urls(args: argparse.Namespace) -> list[str]:
    urls = [getattr(args, "storage", None) or "", os.environ.get("OPTUNA_AUTOSCALE_STORAGE", "")]
    return [u for u in urls if u]


def _resolve(args: argparse.Namespace) -> tuple[str, str]:
    """``(storage URL, study name)`` from the flags, the environment and ``--config``."""
    from optuna_autoscale.config import load_config
    from optuna_autoscale.storage import STORAGE_ENV

    url = getattr(args, "storage", None) or os.environ.get(STORAGE_ENV) or None
    name = getattr(args, "study", None)
    cfg_path = getattr(args, "config", None)
    if cfg_path and (url is None or name is None):
        cfg = load_config(cfg_path)
        url = url or cfg.study.storage
        name = name or cfg.study.name
    if not url:
        raise CommandError(
            f"no storage given: pass --storage URL, set {STORAGE_ENV} (keeps passwords off the command line) "
            "or pass --config CONFIG.toml."
        )
    if not name:
        raise CommandError("no study given: pass --study NAME or --config CONFIG.toml.")
    return url, name


def _load_study(url: str, name: str, *, sampler: Any = None, storage: Any = None) -> optuna.Study:
    import optuna

    from optuna_autoscale.storage import create_storage
    from optuna_autoscale.storage import redact_url

    storage = storage or create_storage(url, heartbeat_interval=None)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        raise CommandError(
            f"no study named {name!r} in {redact_url(url)}; studies there: {', '.join(names) or '(none)'}."
        ) from None


def _run_config_of(study: optuna.Study) -> RunConfig | None:
    from optuna_autoscale.config import config_from_json

    raw = _study_system_attrs(study).get(RUN_CONFIG_ATTR)
    return None if raw is None else config_from_json(raw)


def _design_config_of(study: optuna.Study) -> dict[str, Any]:
    from optuna_autoscale.design import CONFIG_ATTR
    from optuna_autoscale.ledger import stored_design_config

    config = stored_design_config(study)
    if config is None:
        raise CommandError(
            f"study {study.study_name!r} has no AutoScale design yet (no {CONFIG_ATTR!r} attr): start it with "
            "`optuna-autoscale run CONFIG.toml` (or study.optimize with AutoScaleSampler)."
        )
    return config


def _handler(fn: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    """Run a subcommand: known errors become one redacted line on stderr and exit status 2."""
    from optuna_autoscale.config import ConfigError
    from optuna_autoscale.storage import install_log_redaction
    from optuna_autoscale.storage import redact_text
    from optuna_autoscale.storage import StorageUnreachableError

    def run(args: argparse.Namespace) -> int:
        urls = _redaction_urls(args)
        install_log_redaction(urls)
        try:
            return int(fn(args) or 0)
        except (CommandError, ConfigError, StorageUnreachableError, FileNotFoundError, ValueError, ImportError) as e:
            print(f"optuna-autoscale {args.command}: error: {redact_text(str(e), urls)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"optuna-autoscale {args.command}: interrupted", file=sys.stderr)
            return 130

    run.__name__ = fn.__name__
    return run


def _sub(subparsers: Any, name: str, help_: str, description: str, examples: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help_,
        description=description,
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --------------------------------------------------------------------------------------------
# Building the sampler and the objective from a config
# --------------------------------------------------------------------------------------------


def _bounds(cfg: RunConfig, unique_tokens: Mapping[str, int] | None) -> dict[str, tuple[float | None, float | None]] | None:
    bounds: dict[str, tuple[float | None, float | None]] = {d: (lu[0], lu[1]) for d, lu in cfg.design.bounds.items()}
    caps = cfg.design.max_epochs
    if caps is not None:
        if unique_tokens is None:
            raise CommandError("design.max_epochs needs the corpus's unique tokens: it applies to objective = \"proxy\" only")
        per = caps if isinstance(caps, Mapping) else {d: caps for d in unique_tokens}
        for d, epochs in per.items():
            cap = float(epochs) * float(unique_tokens[d])
            lo, hi = bounds.get(d, (None, None))
            bounds[d] = (lo, cap if hi is None else min(float(hi), cap))
    return bounds or None


def build_sampler(cfg: RunConfig, domains: Sequence[str], *, unique_tokens: Mapping[str, int] | None = None) -> Any:
    """The :class:`~optuna_autoscale.AutoScaleSampler` of a run config."""
    from optuna_autoscale.sampler import AutoScaleSampler

    return AutoScaleSampler(
        list(domains),
        list(cfg.design.budgets),
        base=cfg.design.base,
        multipliers=tuple(cfg.design.multipliers),
        bounds=_bounds(cfg, unique_tokens),
        replicates=cfg.design.replicates,
        design_seeds=cfg.design.design_seeds,
        verify=cfg.design.verify,
        seed=cfg.design.seed,
    )


def _metric_value(metric: Any, losses: Mapping[str, float]) -> float:
    import numpy as np

    if metric == "mean_loss":
        return float(np.mean(list(losses.values())))
    if metric == "mean_ppl":
        return float(np.mean(np.exp(list(losses.values()))))
    total = sum(metric.values())
    return float(sum(w * losses[d] for d, w in metric.items()) / total)


def _simulate_objective(cfg: RunConfig) -> tuple[Callable[[Any], float], tuple[str, ...]]:
    from optuna_autoscale.mixture import LOSS_PREFIX
    from optuna_autoscale.mixture import suggest_mixture

    assert cfg.simulate is not None
    land = cfg.simulate.landscape()
    domains = tuple(land.domains)
    metric = cfg.study.metric
    sleep = cfg.simulate.sleep

    def objective(trial: Any) -> float:
        mix = suggest_mixture(trial, domains)
        losses = land.per_domain_loss(mix.allocation, seed=mix.seed)
        for d, v in losses.items():
            trial.set_user_attr(f"{LOSS_PREFIX}{d}", float(v))
        if sleep:
            time.sleep(sleep)
        return _metric_value(metric, losses)

    return objective, domains


def build_objective(cfg: RunConfig) -> tuple[Callable[[Any], float], tuple[str, ...], dict[str, int] | None]:
    """``(objective, domains, unique tokens per domain or None)`` of a run config.

    ``objective = "simulate"`` evaluates the configured landscape; ``"proxy"`` builds (or opens
    from its cache) the corpus and trains a GPT-2 proxy per trial.
    """
    if cfg.study.objective == "simulate":
        obj, domains = _simulate_objective(cfg)
        return obj, domains, None
    from optuna_autoscale.proxy.objective import make_objective

    corpus = cfg.build_corpus()
    proxy_config = cfg.proxy_config()
    metric = cfg.study.metric
    if isinstance(metric, Mapping):
        metric = dict(metric)
    # No tqdm bars: the CLI prints one line per run (--progress), and workers share a terminal.
    obj = make_objective(corpus, proxy_config, metric=metric, progress=False)
    return obj, tuple(corpus.domains), usable_unique_tokens(corpus, proxy_config.context)


def usable_unique_tokens(corpus: Any, context: int) -> dict[str, int]:
    """Unique training tokens per domain that the trainer can use: its whole non-overlapping
    sequences of ``context`` tokens (each needs ``context + 1`` tokens for its targets).

    ``[design] max_epochs`` times these is the sampler's upper bound of a domain, and the trainer
    (whose ``max_epochs`` is the same cap) counts epochs in these sequences, so an allocation at
    the bound is exactly ``max_epochs`` epochs for both.
    """
    return {d: max(0, (int(len(corpus.train_tokens(d))) - 1) // context) * context for d in corpus.domains}


def _storage_for(url: str, cfg: RunConfig | None) -> Any:
    from optuna_autoscale.storage import create_storage

    if cfg is None:
        return create_storage(url)
    hb = cfg.study.heartbeat_interval or None
    return create_storage(url, heartbeat_interval=hb, grace_period=cfg.study.grace_period if hb else None,
                          max_retry=cfg.study.max_retry)


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


def _work(study: optuna.Study, objective: Callable[[Any], float], cfg: RunConfig, n_trials: int | None,
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

    study.optimize(
        objective,
        n_trials=n_trials,
        callbacks=[count] + callbacks,
        catch=(),
        gc_after_trial=False,
    )
    # The last trial to finish the design refreshes the dashboard (the callback throttles).
    if callbacks and sampler.is_complete(study):
        with contextlib.suppress(Exception):
            from optuna_autoscale.dashboard import refresh

            refresh(study)
    return ran[0]


# --------------------------------------------------------------------------------------------
# run / worker
# --------------------------------------------------------------------------------------------


def open_study(cfg: RunConfig, url: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or resume the config's study and store the run config in it, for ``worker`` processes.

    Raises:
        CommandError: the study exists with another ``[design]``.
    """
    import optuna

    from optuna_autoscale.storage import redact_url

    study = optuna.create_study(storage=_storage_for(url, cfg), study_name=cfg.study.name, sampler=sampler,
                                direction="minimize", load_if_exists=True)
    stored = _study_system_attrs(study).get(RUN_CONFIG_ATTR)
    mine = cfg.to_json()
    if stored is not None and json.loads(stored).get("design") != json.loads(mine).get("design"):
        raise CommandError(
            f"study {cfg.study.name!r} in {redact_url(url)} was started with another [design]; "
            "use a new [study] name, or restore the original design."
        )
    study._storage.set_study_system_attr(study._study_id, RUN_CONFIG_ATTR, mine)
    return study


def start_workers(study_name: str, url: str, n: int, *, n_trials: int | None = None,
                  progress: bool = False) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` local ``worker`` processes on a study that :func:`open_study` prepared.

    Processes, not threads: each run gets its own torch state (RNG, thread count) and its own GIL.
    With two runs as threads of one process, the demo's process used about 1.1 of the 2 cores during
    its short runs (``top``); the two-process demo took the same 324 s on a machine shared with other
    jobs, so the wall-time gain is not measured. The workers leave the dashboard figures to the caller.
    """
    from optuna_autoscale.storage import STORAGE_ENV

    env = dict(os.environ)
    env[STORAGE_ENV] = url
    cmd = [sys.executable, "-m", "optuna_autoscale.commands", "worker", "--study", study_name, "--no-dashboard"]
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
    from optuna_autoscale.design import POINT_ATTR
    from optuna_autoscale.mixture import ROLE_ATTR
    from optuna_autoscale.mixture import TOKENS_PARAM

    start = time.perf_counter()

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
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
        ran = _work(None, objective, cfg, None)  # type: ignore[arg-type]
        print(f"rank {distributed.rank()}: trained {ran} mixture(s) with rank 0", flush=True)
        return 0
    sampler = build_sampler(cfg, domains, unique_tokens=unique)
    study = open_study(cfg, url, sampler)
    print(f"study {cfg.study.name!r} on {redact_url(url)}: {len(domains)} domains, budgets "
          f"{', '.join(f'{b:.3g}' for b in cfg.design.budgets)} tokens, {workers} worker(s)", flush=True)
    procs = start_workers(cfg.study.name, url, workers - 1, n_trials=args.n_trials)
    try:
        ran = _work(study, objective, cfg, args.n_trials or cfg.study.n_trials)
    finally:
        bad = join_workers(procs)
    print(f"this process ran {ran} trial(s); design complete: {sampler.is_complete(study)}", flush=True)
    _print_show(study, fmt="table", budget=None, cfg=cfg, tolerant=True)
    return 0 if not bad else 1


def _cmd_worker(args: argparse.Namespace) -> int:
    import optuna

    url, name = _resolve(args)
    probe = _load_study(url, name)
    cfg = _run_config_of(probe)
    if cfg is None:
        raise CommandError(
            f"study {name!r} has no run config ({RUN_CONFIG_ATTR!r}); start it with `optuna-autoscale run CONFIG.toml` first."
        )
    objective, domains, unique = _build_objective_ranked(cfg)
    if distributed.rank() > 0:  # torchrun: rank 0 runs the study; this rank trains its mixtures with it
        ran = _work(None, objective, cfg, None)  # type: ignore[arg-type]
        print(f"worker {os.getpid()} rank {distributed.rank()}: trained {ran} mixture(s) with rank 0", flush=True)
        return 0
    sampler = build_sampler(cfg, domains, unique_tokens=unique)
    study = optuna.load_study(study_name=name, storage=_storage_for(url, cfg), sampler=sampler)
    ran = _work(study, objective, cfg, args.n_trials or cfg.study.n_trials, dashboard=not args.no_dashboard,
                progress=args.progress)
    print(f"worker {os.getpid()}: ran {ran} trial(s); design complete: {sampler.is_complete(study)}", flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# status / show / extrapolate
# --------------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        out.append("  ".join(c.rjust(w) if j and _numeric(c) else c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _cmd_status(args: argparse.Namespace) -> int:
    import optuna

    from optuna_autoscale.visualization import design_progress

    url, name = _resolve(args)
    study = _load_study(url, name)
    _design_config_of(study)
    rows = design_progress(study)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    done = sum(r["complete"] for r in rows)
    total = sum(r["total"] for r in rows)
    if args.format == "json":
        print(json.dumps({"study": name, "complete": done, "total": total, "budgets": rows, "trials": counts}, indent=2))
        return 0
    print(f"study {name!r}: {done}/{total} design runs complete; trials: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(_table(["budget", "complete", "running", "waiting", "failed", "open", "total", "extra"],
                 [[r["label"], r["complete"], r["running"], r["waiting"], r["failed"], r["open"], r["total"], r["extra"]]
                  for r in rows]))
    del optuna
    return 0


def _data_paths(cfg: RunConfig | None, domains: Sequence[str]) -> dict[str, str]:
    paths = {d: d for d in domains}
    if cfg is not None:
        for dom in cfg.domains:
            if dom.data_path and dom.name in paths:
                paths[dom.name] = dom.data_path
    return paths


def format_mixtures(
    mixtures: Mapping[str, Any],
    fmt: str,
    *,
    data_paths: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render ``{label: Mixture}`` in one of :data:`FORMATS`.

    - ``table``: one column per mixture, one row per domain (weights), then tokens.
    - ``json`` / ``yaml``: ``{label: {"tokens", "weights", "allocation", "seed"}}`` plus ``extra``.
    - ``megatron``: per mixture, the ``--data-path`` value ``w1 path1 w2 path2 ...``.
    - ``hf``: per mixture, ``{"domains": [...], "probabilities": [...]}`` for
      ``datasets.interleave_datasets(datasets, probabilities=...)`` (same order; sums to 1).

    Args:
        mixtures: Label -> :class:`~optuna_autoscale.Mixture`.
        fmt: One of :data:`FORMATS`.
        data_paths: Domain -> Megatron data prefix (``megatron``; default the domain name).
        extra: More JSON-ready fields for ``json``/``yaml``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    labels = list(mixtures)
    if not labels:
        return ""
    domains = list(mixtures[labels[0]].weights)
    if fmt == "table":
        rows = [[d] + [float(mixtures[k].weights[d]) for k in labels] for d in domains]
        rows.append(["(tokens)"] + [float(mixtures[k].tokens) for k in labels])
        return _table(["domain"] + labels, rows)
    if fmt in ("json", "yaml"):
        data: dict[str, Any] = {k: {"tokens": m.tokens, "weights": dict(m.weights), "allocation": dict(m.allocation), "seed": m.seed}
                                for k, m in mixtures.items()}
        if extra:
            data.update(extra)
        if fmt == "json":
            return json.dumps(data, indent=2)
        import yaml

        return yaml.safe_dump(data, sort_keys=False).rstrip("\n")
    paths = dict(data_paths or {d: d for d in domains})
    if fmt == "megatron":
        out = []
        for k, m in mixtures.items():
            line = " ".join(f"{m.weights[d]:.8f} {paths.get(d, d)}" for d in domains)
            out.append(line if len(labels) == 1 else f"# {k}\n{line}")
        return "\n".join(out)
    # hf
    import numpy as np

    res = {}
    for k, m in mixtures.items():
        p = np.asarray([m.weights[d] for d in domains], dtype=float)
        p = p / p.sum()
        res[k] = {"domains": domains, "probabilities": [float(x) for x in p]}
    return json.dumps(res[labels[0]] if len(labels) == 1 else res, indent=2)


def _result(study: optuna.Study) -> Any:
    from optuna_autoscale.results import AutoScaleResult

    _design_config_of(study)
    try:
        return AutoScaleResult.from_study(study)
    except ValueError as e:
        raise CommandError(f"study {study.study_name!r} cannot be fitted yet: {e}") from None


def _print_show(study: optuna.Study, *, fmt: str, budget: float | None, cfg: RunConfig | None,
                tolerant: bool = False) -> None:
    from optuna_autoscale.visualization import format_tokens

    try:
        res = _result(study)
    except CommandError as e:
        if not tolerant:
            raise
        print(str(e))
        return
    optima = dict(res.optima)
    if not optima:
        print("no budget's design has completed yet.")
        return
    keys = sorted(optima)
    if budget is not None:
        keys = [b for b in keys if math.isclose(float(b), budget, rel_tol=1e-6)]
        if not keys:
            raise CommandError(f"no fitted optimum at {budget:g} tokens; fitted budgets: {sorted(float(b) for b in optima)}")
    elif fmt in ("megatron", "hf"):
        keys = keys[-1:]
    mixtures = {f"{format_tokens(float(b))} tokens": optima[b] for b in keys}
    domains = list(next(iter(mixtures.values())).weights)
    print(format_mixtures(mixtures, fmt, data_paths=_data_paths(cfg, domains)))


def _cmd_show(args: argparse.Namespace) -> int:
    url, name = _resolve(args)
    study = _load_study(url, name)
    _print_show(study, fmt=args.format, budget=args.budget, cfg=_run_config_of(study))
    return 0


def _cmd_extrapolate(args: argparse.Namespace) -> int:
    url, name = _resolve(args)
    study = _load_study(url, name)
    res = _result(study)
    caps = None
    if args.cap:
        caps = {}
        for item in args.cap:
            d, _, v = item.partition("=")
            try:
                caps[d] = _float_tokens(v)
            except argparse.ArgumentTypeError as e:
                raise CommandError(f"--cap {item!r}: {e}; write DOMAIN=TOKENS, e.g. code=5e10") from None
    mix = res.extrapolate(args.tokens, method=args.method, caps=caps)
    from optuna_autoscale.visualization import format_tokens

    cfg = _run_config_of(study)
    print(format_mixtures({f"{format_tokens(args.tokens)} tokens ({args.method})": mix}, args.format,
                          data_paths=_data_paths(cfg, list(mix.weights))))
    return 0


# --------------------------------------------------------------------------------------------
# report / dashboard
# --------------------------------------------------------------------------------------------


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>" for r in rows)
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
                                     [[d] + [optima[b].weights[d] for b in budgets] for d in domains]))
            cols, ext = [], []
            if len(optima) < 2:
                parts.append(f"<p>Extrapolation needs fitted optima at two or more budgets; have {len(optima)}.</p>")
                tgts = []
            for t in tgts:
                for m in ("joint", "paper"):
                    try:
                        ext.append(res.extrapolate(float(t), method=m).weights)
                        cols.append(f"{vis.format_tokens(t)} ({m})")
                    except (ValueError, RuntimeError) as e:
                        parts.append(f"<p>Extrapolation to {vis.format_tokens(t)} by {m} failed: {html.escape(str(e))}</p>")
            if cols:
                parts.append("<h2>Extrapolated mixtures</h2>")
                parts.append(_html_table(["domain"] + cols, [[d] + [e[d] for e in ext] for d in domains]))
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
             ".figure{max-width:100%;overflow:hidden}")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>AutoScale report: {html.escape(study.study_name)}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact_text(doc), encoding="utf-8")
    return path


def _cmd_report(args: argparse.Namespace) -> int:
    url, name = _resolve(args)
    study = _load_study(url, name)
    _design_config_of(study)
    path = write_report(study, args.out, targets=args.target or ())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from optuna_autoscale.storage import create_storage
    from optuna_autoscale.storage import redact_url

    url, name = _resolve(args)
    storage = create_storage(url, heartbeat_interval=None)
    study = _load_study(url, name, storage=storage)
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
    run_server(storage, host=args.host, port=args.port)
    return 0


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``run``, ``worker``, ``status``, ``show``, ``extrapolate``, ``report`` and
    ``dashboard`` to an ``argparse`` subparsers object. Each sets ``func`` (returns the exit
    status) and ``command``.

    Example:
        .. code-block:: python

            import argparse
            from optuna_autoscale import commands

            parser = argparse.ArgumentParser(prog="optuna-autoscale")
            commands.register(parser.add_subparsers(dest="command", required=True))
            args = parser.parse_args(["status", "--storage", "sqlite:///a.db", "--study", "s"])
            # exit_code = args.func(args)
    """
    p = _sub(subparsers, "run", "run a study from a TOML config (design, proxy training, workers)",
             "Create (or resume) the study of CONFIG.toml and run trials until the AutoScale design and its "
             "verification runs are complete, in this process and `workers - 1` local worker processes. "
             "Prints the fitted optima at the end. Re-running the same config resumes the study.",
             """
             optuna-autoscale run examples/config.toml
             optuna-autoscale run my.toml --workers 4
             OPTUNA_AUTOSCALE_STORAGE=postgresql://user:pw@db:5432/optuna optuna-autoscale run my.toml
             """)
    p.add_argument("config_file", metavar="CONFIG.toml", help="the run config (see examples/config.toml)")
    p.add_argument("--storage", metavar="URL", help="override the config's storage URL (or set $OPTUNA_AUTOSCALE_STORAGE)")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: the config's)")
    p.add_argument("--n-trials", type=int, metavar="N", help="cap on the trials each worker runs")
    p.set_defaults(func=_handler(_cmd_run), command="run")

    p = _sub(subparsers, "worker", "join a running study from another process or machine",
             "Run trials of an existing study until its design is complete. The worker reads the run config "
             "stored in the study by `run`, so data paths must be valid on this machine too. Start one per "
             "machine (each proxy may itself use torchrun across the machine's GPUs).",
             """
             optuna-autoscale worker --storage postgresql://user@db:5432/optuna --study my-mixture
             OPTUNA_AUTOSCALE_STORAGE=postgresql://user:pw@db/optuna optuna-autoscale worker --study my-mixture
             """)
    _add_study_args(p)
    p.add_argument("--n-trials", type=int, metavar="N", help="stop after N trials")
    p.add_argument("--no-dashboard", action="store_true", help="do not refresh the dashboard figures from this worker")
    p.add_argument("--progress", action="store_true", help="print one line per finished run (as the demo does)")
    p.set_defaults(func=_handler(_cmd_worker), command="worker")

    p = _sub(subparsers, "status", "show the design's progress per budget",
             "Count the design runs per budget by state (complete, running, waiting, failed, open).",
             """
             optuna-autoscale status --storage sqlite:///autoscale.db --study my-mixture
             optuna-autoscale status --config examples/config.toml --format json
             """)
    _add_study_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_handler(_cmd_status), command="status")

    fmt_help = ("table; json; yaml; megatron (the weight/path list for Megatron's --data-path); "
                "hf (probabilities for datasets.interleave_datasets)")
    p = _sub(subparsers, "show", "print the fitted optimal mixture at each design budget",
             "Fit the study's DDO runs and print the optimal weights per budget.",
             """
             optuna-autoscale show --config examples/config.toml
             optuna-autoscale show --storage sqlite:///autoscale.db --study my-mixture --format yaml
             optuna-autoscale show --config my.toml --format megatron --budget 6e6
             """)
    _add_study_args(p)
    p.add_argument("--format", choices=FORMATS, default="table", help=fmt_help)
    p.add_argument("--budget", type=_float_tokens, metavar="TOKENS", help="only this design budget")
    p.set_defaults(func=_handler(_cmd_show), command="show")

    p = _sub(subparsers, "extrapolate", "print the mixture extrapolated to a target budget",
             "Extrapolate the optimal mixture to --tokens with the joint separable law (default) or the "
             "paper's rule.",
             """
             optuna-autoscale extrapolate --config examples/config.toml --tokens 1e10
             optuna-autoscale extrapolate --config my.toml --tokens 1e10 --format hf
             optuna-autoscale extrapolate --config my.toml --tokens 3e11 --method paper --cap code=5e10 --format megatron
             """)
    _add_study_args(p)
    p.add_argument("--tokens", type=_float_tokens, required=True, metavar="TOKENS", help="target budget, e.g. 1e10")
    p.add_argument("--method", choices=("joint", "paper"), default="joint")
    p.add_argument("--cap", action="append", metavar="DOMAIN=TOKENS", help="max tokens of a domain (repeatable)")
    p.add_argument("--format", choices=FORMATS, default="table", help=fmt_help)
    p.set_defaults(func=_handler(_cmd_extrapolate), command="extrapolate")

    p = _sub(subparsers, "report", "write a self-contained HTML report with figures and tables",
             "Write one HTML file (plotly.js inlined, no network needed to view it) with the design progress, "
             "fitted optima, extrapolations, fit parameters, verification table and the figures.",
             """
             optuna-autoscale report --config examples/config.toml --out report.html
             optuna-autoscale report --storage sqlite:///autoscale.db --study my-mixture --out r.html --target 1e10
             """)
    _add_study_args(p)
    p.add_argument("--out", default="report.html", metavar="FILE.html")
    p.add_argument("--target", action="append", type=_float_tokens, metavar="TOKENS", help="budget to extrapolate to")
    p.set_defaults(func=_handler(_cmd_report), command="report")

    p = _sub(subparsers, "dashboard", "launch optuna-dashboard on the study's storage",
             "Refresh the AutoScale figures and summary note stored in the study, then serve optuna-dashboard "
             "(bound to 127.0.0.1 unless --host says otherwise). Stop it with Ctrl-C.",
             """
             optuna-autoscale dashboard --config examples/config.toml
             optuna-autoscale dashboard --storage sqlite:///autoscale.db --study my-mixture --port 8081
             """)
    _add_study_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-refresh", action="store_true", help="serve without refreshing the figures first")
    p.set_defaults(func=_handler(_cmd_dashboard), command="dashboard")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m optuna_autoscale.commands`` (the same subcommands as the CLI)."""
    parser = argparse.ArgumentParser(prog="optuna-autoscale", description="AutoScale data-mixture optimisation.")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
