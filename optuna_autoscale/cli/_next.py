"""The last line of a command's output: what to do next, with the study options the user gave."""

from __future__ import annotations

import argparse
import shlex
import sys


__all__ = ["print_next", "study_flags", "tokens_arg"]


def study_flags(args: argparse.Namespace) -> str:
    """The options that name the study again: ``--config FILE``, else ``--storage URL --study NAME``.

    The URL is left out when it came from ``$OPTUNA_AUTOSCALE_STORAGE`` and shown redacted otherwise
    (a password never reaches the terminal).
    """
    from optuna_autoscale.storage import redact_url

    parts: list[str] = []
    config = getattr(args, "config", None)
    if config:
        parts += ["--config", str(config)]
    storage = getattr(args, "storage", None)
    if storage:
        parts += ["--storage", redact_url(storage)]
    study = getattr(args, "study", None)
    if study:
        parts += ["--study", study]
    return " ".join(shlex.quote(p) for p in parts)


def tokens_arg(tokens: float) -> str:
    """``1e10``-style text of a token count for a command line."""
    return f"{float(tokens):.3g}".replace("e+0", "e").replace("e+", "e")


def print_next(text: str, *, machine: bool = False) -> None:
    """Print ``next: text`` as the command's last line: on stdout for a table, on stderr when stdout
    holds a machine format (json, yaml, megatron, hf) so that it stays parseable."""
    print(f"next: {text}", file=sys.stderr if machine else sys.stdout, flush=True)
