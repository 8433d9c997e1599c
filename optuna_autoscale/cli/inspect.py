"""``status``, ``show`` and ``extrapolate``: read a study's progress and its fitted and extrapolated mixtures."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from collections.abc import Sequence
import json
import math
from typing import Any
from typing import TYPE_CHECKING

from optuna_autoscale.cli._common import add_study_args
from optuna_autoscale.cli._common import Command
from optuna_autoscale.cli._common import CommandError
from optuna_autoscale.cli._common import design_config_of
from optuna_autoscale.cli._common import float_tokens
from optuna_autoscale.cli._common import handled
from optuna_autoscale.cli._common import load_study
from optuna_autoscale.cli._common import resolve
from optuna_autoscale.cli._common import run_config_of
from optuna_autoscale.cli._common import text_table


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.config import RunConfig


__all__ = ["EXTRAPOLATE", "FORMATS", "SHOW", "STATUS", "fitted_result", "format_mixtures", "print_show"]

FORMATS = ("table", "json", "yaml", "megatron", "hf")
"""Output formats of ``show`` and ``extrapolate``."""


def _cmd_status(args: argparse.Namespace) -> int:
    from optuna_autoscale.visualization import design_progress

    url, name = resolve(args)
    study = load_study(url, name)
    design_config_of(study)
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
    print(text_table(["budget", "complete", "running", "waiting", "failed", "open", "total", "extra"],
                 [[r["label"], r["complete"], r["running"], r["waiting"], r["failed"], r["open"], r["total"], r["extra"]]
                  for r in rows]))
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
        return text_table(["domain"] + labels, rows)
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


def fitted_result(study: optuna.Study) -> Any:
    """The study's :class:`~optuna_autoscale.AutoScaleResult`; a :class:`CommandError` if it cannot be fitted yet."""
    from optuna_autoscale.results import AutoScaleResult

    design_config_of(study)
    try:
        return AutoScaleResult.from_study(study)
    except ValueError as e:
        raise CommandError(f"study {study.study_name!r} cannot be fitted yet: {e}") from None


def print_show(study: optuna.Study, *, fmt: str, budget: float | None, cfg: RunConfig | None,
                tolerant: bool = False) -> None:
    """Print the fitted optimum of each design budget (or of ``budget``) in ``fmt``; ``tolerant``: print, not raise, why there is none."""
    from optuna_autoscale.visualization import format_tokens

    try:
        res = fitted_result(study)
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
    url, name = resolve(args)
    study = load_study(url, name)
    print_show(study, fmt=args.format, budget=args.budget, cfg=run_config_of(study))
    return 0


def _cmd_extrapolate(args: argparse.Namespace) -> int:
    url, name = resolve(args)
    study = load_study(url, name)
    res = fitted_result(study)
    caps = None
    if args.cap:
        caps = {}
        for item in args.cap:
            d, _, v = item.partition("=")
            try:
                caps[d] = float_tokens(v)
            except argparse.ArgumentTypeError as e:
                raise CommandError(f"--cap {item!r}: {e}; write DOMAIN=TOKENS, e.g. code=5e10") from None
    mix = res.extrapolate(args.tokens, method=args.method, caps=caps)
    from optuna_autoscale.visualization import format_tokens

    cfg = run_config_of(study)
    print(format_mixtures({f"{format_tokens(args.tokens)} tokens ({args.method})": mix}, args.format,
                          data_paths=_data_paths(cfg, list(mix.weights))))
    # The predicted gains beside the mixture: on stdout for the table, on stderr for machine formats.
    import sys

    from optuna_autoscale.cli.fit import _interval

    try:
        rec = res.recommend(args.tokens, method=args.method, caps=caps)
    except (ValueError, RuntimeError):
        rec = None
    if rec is not None:
        lvl = f"{rec.level:.0%}"
        lines = [f"predicted gain over uniform: {rec.gain_over_uniform:+.4f} ({lvl} interval {_interval(rec.uniform_interval)})"]
        if rec.gain_over_best is not None:
            lines.append(f"predicted gain over the best tested mixture: {rec.gain_over_best:+.4f} ({lvl} interval "
                         f"{_interval(rec.best_interval)})")
        lines.append("inside the tested shares" if rec.inside else "OUTSIDE the tested shares")
        lines += [f"warning: {w}" for w in rec.warnings]
        print("\n".join(lines), file=sys.stdout if args.format == "table" else sys.stderr)
    return 0


def _status_args(p: argparse.ArgumentParser) -> None:
    add_study_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")


_FORMAT_HELP = ("table; json; yaml; megatron (the weight/path list for Megatron's --data-path); "
                "hf (probabilities for datasets.interleave_datasets)")


def _show_args(p: argparse.ArgumentParser) -> None:
    add_study_args(p)
    p.add_argument("--format", choices=FORMATS, default="table", help=_FORMAT_HELP)
    p.add_argument("--budget", type=float_tokens, metavar="TOKENS", help="only this design budget")


def _extrapolate_args(p: argparse.ArgumentParser) -> None:
    add_study_args(p)
    p.add_argument("--tokens", type=float_tokens, required=True, metavar="TOKENS", help="target budget, e.g. 1e10")
    p.add_argument("--method", choices=("joint", "paper"), default="joint")
    p.add_argument("--cap", action="append", metavar="DOMAIN=TOKENS", help="max tokens of a domain (repeatable)")
    p.add_argument("--format", choices=FORMATS, default="table", help=_FORMAT_HELP)


STATUS = Command(
    ("status",),
    help="show the design's progress per budget",
    description="Count the design runs per budget by state (complete, running, waiting, failed, open).",
    examples=(
        "optuna-autoscale status --storage sqlite:///autoscale.db --study my-mixture",
        "optuna-autoscale status --config examples/config.toml --format json",
    ),
    add_arguments=_status_args,
    run=handled(_cmd_status),
)
SHOW = Command(
    ("show",),
    help="print the fitted optimal mixture at each design budget",
    description="Fit the study's DDO runs and print the optimal weights per budget.",
    examples=(
        "optuna-autoscale show --config examples/config.toml",
        "optuna-autoscale show --storage sqlite:///autoscale.db --study my-mixture --format yaml",
        "optuna-autoscale show --config my.toml --format megatron --budget 6e6",
    ),
    add_arguments=_show_args,
    run=handled(_cmd_show),
)
EXTRAPOLATE = Command(
    ("extrapolate",),
    help="print the mixture extrapolated to a target budget",
    description="Extrapolate the optimal mixture to --tokens with the joint law (default; inside the range of shares "
    "the runs used) or the paper's rule, with its predicted gain over uniform and over the best tested mixture "
    "(80% intervals) and its warnings.",
    examples=(
        "optuna-autoscale extrapolate --config examples/config.toml --tokens 1e10",
        "optuna-autoscale extrapolate --config my.toml --tokens 1e10 --format hf",
        "optuna-autoscale extrapolate --config my.toml --tokens 3e11 --method paper --cap code=5e10 --format megatron",
    ),
    add_arguments=_extrapolate_args,
    run=handled(_cmd_extrapolate),
)
