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
from optuna_autoscale.cli._next import print_next
from optuna_autoscale.cli._next import study_flags
from optuna_autoscale.cli._next import tokens_arg
from optuna_autoscale.cli._common import Command
from optuna_autoscale.cli._common import CommandError
from optuna_autoscale.cli._common import design_config_of
from optuna_autoscale.cli._common import float_tokens
from optuna_autoscale.cli._common import handled
from optuna_autoscale.cli._common import load_study
from optuna_autoscale.cli._common import positive_number
from optuna_autoscale.cli._common import resolve
from optuna_autoscale.cli._common import run_config_of
from optuna_autoscale.cli._common import text_table


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.config import RunConfig


__all__ = ["EXTRAPOLATE", "FORMATS", "SHOW", "STATUS", "extrapolation_caps", "fitted_result", "format_mixtures",
           "print_show", "suggested_target"]

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
    else:
        print(f"study {name!r}: {done}/{total} design runs complete; trials: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print(text_table(["budget", "complete", "running", "waiting", "failed", "open", "total", "extra"],
                     [[r["label"], r["complete"], r["running"], r["waiting"], r["failed"], r["open"], r["total"], r["extra"]]
                      for r in rows]))
    flags = study_flags(args)
    if done >= total:
        text = f"optuna-autoscale show {flags}   (the fitted mixture at each budget)"
    else:
        run = f"optuna-autoscale run {args.config}" if getattr(args, "config", None) else "optuna-autoscale run CONFIG.toml"
        text = (f"{total - done} design runs left: {run} resumes them (workers: optuna-autoscale worker); "
                f"optuna-autoscale show {flags} prints the budgets already fitted")
    print_next(text, machine=args.format == "json")
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
        for d in domains:
            p = str(paths.get(d, d))
            if any(ch.isspace() for ch in p) or not p:
                what = f"domain {d!r}" if p == d else f"the data path {p!r} of domain {d!r}"
                raise ValueError(
                    f"--format megatron: {what} contains whitespace, which Megatron's --data-path "
                    "(weight path weight path ...) splits on; set a data_path without spaces for it under "
                    "[[domains]] in the run config (or rename the file), or use --format json / hf."
                )
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
                tolerant: bool = False) -> Any:
    """Print the fitted optimum of each design budget (or of ``budget``) in ``fmt``; ``tolerant``: print, not raise, why there is none.

    Returns the fitted :class:`~optuna_autoscale.AutoScaleResult` (None when there is none), for the caller's next line.
    """
    from optuna_autoscale.visualization import format_tokens

    try:
        res = fitted_result(study)
    except CommandError as e:
        if not tolerant:
            raise
        print(str(e))
        return None
    optima = dict(res.optima)
    if not optima:
        print("no budget's design has completed yet.")
        return res
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
    notes = []
    upper = res.target_caps() if res.design is not None else {}
    for b in keys:
        at = [f"{d} {format_tokens(upper[d])}" for d in domains
              if math.isfinite(upper.get(d, math.inf)) and optima[b].allocation[d] >= upper[d] * (1 - 1e-3)]
        if at:
            notes.append(f"at {format_tokens(float(b))} tokens the optimum sits at the cap of {', '.join(at)} tokens "
                         "(the design's upper bounds: [design] max_epochs x unique tokens or [design] bounds): the cap, "
                         "not the fit, sets that share")
    if notes:
        import sys

        print("\n".join(notes), file=sys.stdout if fmt == "table" else sys.stderr)
    return res


def _cmd_show(args: argparse.Namespace) -> int:
    url, name = resolve(args)
    study = load_study(url, name)
    print_show(study, fmt=args.format, budget=args.budget, cfg=run_config_of(study))
    res = fitted_result(study)
    flags = study_flags(args)
    if res.optima:
        t = suggested_target(res)
        text = (f"optuna-autoscale extrapolate {flags} --tokens {tokens_arg(t)}   (the mixture at your target budget; "
                f"{tokens_arg(t)} is {t / max(res.optima):.3g}x the largest budget)")
    else:
        text = f"optuna-autoscale status {flags}   (what is left to run)"
    print_next(text, machine=args.format != "table")
    return 0


def suggested_target(res: Any) -> float:
    """A target budget for the next-step line: 10x the largest fitted budget, lowered to what the caps allow."""
    top = float(max(res.optima))
    target = 10 * top
    caps = res.target_caps() if res.design is not None else {}
    total = sum(caps.values()) if caps else math.inf
    if math.isfinite(total) and total < target:
        target = max(top, float(f"{0.9 * total:.2g}"))
    return target


def extrapolation_caps(args: argparse.Namespace, study: optuna.Study, res: Any) -> tuple[dict[str, float] | None, bool]:
    """``(caps, replace_caps)`` of ``extrapolate``'s --no-caps, --max-epochs and --cap (in that order; later win)."""
    domains = list(res.domains)
    caps: dict[str, float] = {}
    if args.no_caps:
        caps = {d: math.inf for d in domains}
    if args.max_epochs is not None:
        unique = _unique_tokens(study, res)
        caps.update({d: args.max_epochs * unique[d] for d in domains})
    for item in args.cap or ():
        d, sep, v = item.partition("=")
        if not sep:
            raise CommandError(f"--cap {item!r}: write DOMAIN=TOKENS, e.g. {domains[0]}=5e10")
        if d not in domains:
            raise CommandError(f"--cap {item!r}: unknown domain {d!r}; the domains are {', '.join(domains)}")
        try:
            caps[d] = float_tokens(v)
        except argparse.ArgumentTypeError as e:
            raise CommandError(f"--cap {item!r}: {e}; write DOMAIN=TOKENS, e.g. {domains[0]}=5e10") from None
    return (caps or None), bool(caps)


def _unique_tokens(study: optuna.Study, res: Any) -> dict[str, float]:
    """Unique training tokens per domain, read back from the stored design: its upper bound is
    ``[design] max_epochs`` x unique tokens wherever ``[design] bounds`` sets no lower upper bound."""
    from collections.abc import Mapping as _Mapping

    cfg = run_config_of(study)
    how = "pass --cap DOMAIN=TOKENS (unique tokens x epochs) for each domain, or --no-caps"
    if cfg is None or cfg.design.max_epochs is None or res.design is None:
        raise CommandError("--max-epochs needs the corpus's unique tokens, which this study does not record (its run "
                           f"config sets no [design] max_epochs); {how}")
    per = cfg.design.max_epochs
    upper = res.design.upper_bounds()
    unique: dict[str, float] = {}
    for d in res.domains:
        epochs = per.get(d) if isinstance(per, _Mapping) else per
        hi = (cfg.design.bounds.get(d) or [None, None])[1]
        if epochs is None or not math.isfinite(upper[d]) or (hi is not None and math.isclose(float(hi), upper[d])):
            raise CommandError(f"--max-epochs: the unique tokens of domain {d!r} are not known from the study (its "
                               f"upper bound is not [design] max_epochs x unique tokens); {how}")
        unique[d] = upper[d] / float(epochs)
    return unique


def _cmd_extrapolate(args: argparse.Namespace) -> int:
    url, name = resolve(args)
    study = load_study(url, name)
    res = fitted_result(study)
    caps, replace = extrapolation_caps(args, study, res)
    rec = res.recommend(args.tokens, method=args.method, caps=caps, replace_caps=replace)
    mix = rec.mixture
    from optuna_autoscale.visualization import format_tokens

    cfg = run_config_of(study)
    extra = None
    if rec.capped:
        extra = {"capped": dict(rec.capped), "uncapped": None if rec.uncapped is None else dict(rec.uncapped.weights)}
    print(format_mixtures({f"{format_tokens(args.tokens)} tokens ({args.method})": mix}, args.format,
                          data_paths=_data_paths(cfg, list(mix.weights)), extra=extra))
    # The predicted gains beside the mixture: on stdout for the table, on stderr for machine formats.
    import sys

    from optuna_autoscale.cli.fit import _interval

    machine = args.format != "table"
    lvl = f"{rec.level:.0%}"
    lines = [f"predicted gain over uniform: {rec.gain_over_uniform:+.4f} ({lvl} interval {_interval(rec.uniform_interval)})"]
    if rec.gain_over_best is not None:
        lines.append(f"predicted gain over the best tested mixture: {rec.gain_over_best:+.4f} ({lvl} interval "
                     f"{_interval(rec.best_interval)})")
    lines.append("inside the tested shares" if rec.inside else "OUTSIDE the tested shares")
    if rec.capped:
        lines.append("at caps: " + ", ".join(f"{d} {format_tokens(c)} tokens" for d, c in rec.capped.items())
                     + ("" if rec.uncapped is None else "; without caps: "
                        + ", ".join(f"{d} {w:.3f}" for d, w in rec.uncapped.weights.items())))
    lines += [f"warning: {w}" for w in rec.warnings]
    print("\n".join(lines), file=sys.stderr if machine else sys.stdout)
    flags = study_flags(args)
    report = f"optuna-autoscale report {flags} --target {tokens_arg(args.tokens)} --out report.html"
    if args.format in ("megatron", "hf"):
        text = f"{report}   (this mixture beside the fits, checks and figures)"
    else:
        text = (f"export it with --format megatron (Megatron's --data-path) or --format hf (datasets.interleave_datasets), "
                f"or see it beside the fits and checks: {report}")
    print_next(text, machine=machine)
    return 0


_positive_float = positive_number("epochs", "8")


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
    p.add_argument("--method", choices=("joint", "paper"), default="joint",
                   help="joint (default): the per-domain transfer law's recommendation inside the tested shares; "
                   "paper: AutoScale's rule over the per-budget optima")
    g = p.add_argument_group("caps at the target (the stored design is not changed)")
    g.add_argument("--max-epochs", type=_positive_float, metavar="E",
                   help="cap every domain at E epochs of its unique tokens (replaces the design's max_epochs caps)")
    g.add_argument("--cap", action="append", metavar="DOMAIN=TOKENS",
                   help="cap this domain at TOKENS, replacing its cap from the design (repeatable; raises or lowers it)")
    g.add_argument("--no-caps", action="store_true", help="drop every cap (--cap still applies on top)")
    p.add_argument("--format", choices=FORMATS, default="table", help=_FORMAT_HELP)


STATUS = Command(
    ("status",),
    help="show the design's progress per budget",
    description="Count the design runs per budget by state (complete, running, waiting, failed, open).",
    examples=(
        "optuna-autoscale status --storage sqlite:///autoscale-example.db --study autoscale-example",
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
        "optuna-autoscale show --storage sqlite:///autoscale-example.db --study autoscale-example --format yaml",
        "optuna-autoscale show --config examples/config.toml --format megatron --budget 1.5e5",
    ),
    add_arguments=_show_args,
    run=handled(_cmd_show),
)
EXTRAPOLATE = Command(
    ("extrapolate",),
    help="print the mixture extrapolated to a target budget",
    description="Extrapolate the optimal mixture to --tokens with the study's joint law (default: the per-domain "
    "transfer law when every run recorded per-domain losses, else the joint separable law) with the in-box recommendation "
    "(every share inside the range of shares the runs used) or the paper's rule (--method paper), with its predicted gain over uniform "
    "and over the best tested mixture (80% intervals) and its warnings.\n\n"
    "Caps: each domain's tokens at the target are capped by the design's upper bounds ([design] max_epochs x unique "
    "tokens, [design] bounds). A mixture that sits on caps says which and what it would be without them. Change the "
    "caps here without touching the study: --max-epochs E, --cap DOMAIN=TOKENS (replaces that domain's cap) or "
    "--no-caps.",
    examples=(
        "optuna-autoscale extrapolate --config examples/config.toml --tokens 2e7",
        "optuna-autoscale extrapolate --config examples/config.toml --tokens 1e10 --no-caps --format hf",
        "optuna-autoscale extrapolate --config examples/config.toml --tokens 1e8 --max-epochs 32",
        "optuna-autoscale extrapolate --config examples/config.toml --tokens 3e7 --method paper "
        "--cap code_python=2e7 --format megatron",
    ),
    add_arguments=_extrapolate_args,
    run=handled(_cmd_extrapolate),
)
