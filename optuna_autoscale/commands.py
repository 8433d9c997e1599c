"""Deprecated home of the study subcommands; they live in :mod:`optuna_autoscale.cli` now.

The names old code imports from here stay importable, and ``python -m optuna_autoscale.commands``
still runs the command line (:func:`optuna_autoscale.cli.main`).
"""

from __future__ import annotations

import sys
from typing import Any

from optuna_autoscale.cli import main
from optuna_autoscale.cli import mount
from optuna_autoscale.cli._common import CommandError
from optuna_autoscale.cli._common import RUN_CONFIG_ATTR
from optuna_autoscale.cli.build import build_objective
from optuna_autoscale.cli.build import build_sampler
from optuna_autoscale.cli.build import sampler_bounds as _bounds  # noqa: F401  (old private name)
from optuna_autoscale.cli.build import storage_for as _storage_for  # noqa: F401  (old private name)
from optuna_autoscale.cli.build import usable_unique_tokens
from optuna_autoscale.cli.inspect import EXTRAPOLATE
from optuna_autoscale.cli.inspect import format_mixtures
from optuna_autoscale.cli.inspect import FORMATS
from optuna_autoscale.cli.inspect import SHOW
from optuna_autoscale.cli.inspect import STATUS
from optuna_autoscale.cli.report import DASHBOARD
from optuna_autoscale.cli.report import REPORT
from optuna_autoscale.cli.report import write_report
from optuna_autoscale.cli.run import design_size
from optuna_autoscale.cli.run import join_workers
from optuna_autoscale.cli.run import open_study
from optuna_autoscale.cli.run import progress_callback
from optuna_autoscale.cli.run import RUN
from optuna_autoscale.cli.run import start_workers
from optuna_autoscale.cli.run import WORKER
from optuna_autoscale.cli.run import work as _work  # noqa: F401  (old private name)


__all__ = [
    "FORMATS", "RUN_CONFIG_ATTR", "CommandError", "register", "main", "build_objective", "build_sampler",
    "design_size", "format_mixtures", "join_workers", "open_study", "progress_callback", "start_workers",
    "usable_unique_tokens", "write_report",
]


def register(subparsers: Any) -> None:
    """Add ``run``, ``worker``, ``status``, ``show``, ``extrapolate``, ``report`` and ``dashboard`` to
    an ``argparse`` subparsers object; each sets ``func`` (returns the exit status) and ``command``."""
    mount(subparsers, (RUN, WORKER, STATUS, SHOW, EXTRAPOLATE, REPORT, DASHBOARD))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
