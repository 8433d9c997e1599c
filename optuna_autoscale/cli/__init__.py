"""The ``optuna-autoscale`` command line: one registry of subcommands, :data:`COMMANDS`, and one entry point, :func:`main`.

Each subcommand is a :class:`Command`: the words that select it, help texts with examples, a function
that adds its arguments and a function that runs it and returns the exit status. The modules of this
package hold them by job:

- :mod:`~optuna_autoscale.cli.corpus`: ``corpus build``, ``corpus info``;
- :mod:`~optuna_autoscale.cli.demo`: ``demo``;
- :mod:`~optuna_autoscale.cli.run`: ``run``, ``worker`` (with :mod:`~optuna_autoscale.cli.build`, the
  sampler, objective and storage of a run config);
- :mod:`~optuna_autoscale.cli.inspect`: ``status``, ``show``, ``extrapolate``;
- :mod:`~optuna_autoscale.cli.report`: ``report``, ``dashboard``.

To add a subcommand, write its ``run(args) -> int`` (wrapped in :func:`handled` if it reads a study:
errors then print as one redacted line with exit status 2) and its ``add_arguments(parser)`` in one of
these modules (or a new one), define its ``Command(...)`` there, and add that to :data:`COMMANDS` below.
Heavy imports happen inside the run functions, so ``optuna-autoscale --help`` stays fast.

``optuna-autoscale``, ``python -m optuna_autoscale`` and ``python -m optuna_autoscale.cli`` all run
:func:`main`.

Example:
    >>> from optuna_autoscale.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    optuna-autoscale 0.1.0
    0
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
import logging
import sys
import textwrap
from typing import Any

from optuna_autoscale.cli import corpus as _corpus
from optuna_autoscale.cli import demo as _demo
from optuna_autoscale.cli import fit as _fit
from optuna_autoscale.cli import inspect as _inspect
from optuna_autoscale.cli import report as _report
from optuna_autoscale.cli import run as _run
from optuna_autoscale.cli._common import Command
from optuna_autoscale.cli._common import CommandError
from optuna_autoscale.cli._common import handled


__all__ = ["COMMANDS", "Command", "CommandError", "GROUPS", "build_parser", "command", "handled", "main", "mount",
           "register"]

#: The registry, in the order shown by ``--help``.
COMMANDS: list[Command] = [
    _corpus.BUILD,
    _corpus.INFO,
    _demo.DEMO,
    _run.RUN,
    _run.WORKER,
    _inspect.STATUS,
    _inspect.SHOW,
    _inspect.EXTRAPOLATE,
    _fit.FIT,
    _report.REPORT,
    _report.DASHBOARD,
]
#: Help lines of command groups (``corpus`` ...), for nested commands.
GROUPS: dict[tuple[str, ...], str] = {
    ("corpus",): "build and inspect the embedded multi-domain text corpus",
}


def register(cmd: Command) -> Command:
    """Add a subcommand to :data:`COMMANDS` at run time (replacing one with the same path)."""
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
    """Decorator registering ``run(args) -> int`` as the subcommand ``path`` (see :func:`register`).

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


def mount(subparsers: Any, commands: Iterable[Command]) -> None:
    """Add ``commands`` to an ``argparse`` subparsers object (with a group parser per nested path).

    Each parsed command sets ``_run`` and ``func`` (the run function), ``_parser`` (its parser, for
    help) and ``command`` (its words, for error messages).
    """
    subparsers_of: dict[tuple[str, ...], Any] = {(): subparsers}

    def group(path: tuple[str, ...]) -> Any:
        if path in subparsers_of:
            return subparsers_of[path]
        p = group(path[:-1]).add_parser(path[-1], help=GROUPS.get(path, ""), description=GROUPS.get(path, ""),
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_run=None, _parser=p)
        subparsers_of[path] = p.add_subparsers(title="commands", metavar="COMMAND")
        return subparsers_of[path]

    for cmd in commands:
        sp = group(cmd.path[:-1]).add_parser(
            cmd.path[-1], help=cmd.help, description=_fill(cmd.description), epilog=_epilog(cmd.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_arguments(sp)
        sp.set_defaults(_run=cmd.run, func=cmd.run, _parser=sp, command=" ".join(cmd.path))


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
    mount(parser.add_subparsers(title="commands", metavar="COMMAND"), COMMANDS)
    return parser


def _words_for_warnings() -> Any:
    """Print the package's warnings (DDO fits, caps, guard) as ``warning: <text>``, without Python's
    ``file:line: Category:`` prefix and source line; other libraries' warnings keep Python's format.

    Returns the formatter it replaced, which :func:`main` puts back when the command ends (so calling
    ``main`` in a process, as tests and notebooks do, changes nothing after it)."""
    import warnings

    default = warnings.formatwarning

    def fmt(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
        if category.__module__.startswith("optuna_autoscale") or filename == "optuna-autoscale":
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt  # type: ignore[assignment]
    return default


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
    if args._run is None:
        args._parser.print_help()
        return 2
    import warnings

    previous = _words_for_warnings()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"optuna-autoscale: error: {exc}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = previous
