"""``demo``: the main job end to end on embedded defaults (the job itself is :mod:`optuna_autoscale.demo`)."""
from __future__ import annotations

import argparse

from optuna_autoscale.cli._common import Command


__all__ = ["DEMO"]


def _demo_args(p: argparse.ArgumentParser) -> None:
    from optuna_autoscale.demo import add_arguments

    add_arguments(p)


def _demo(args: argparse.Namespace) -> int:
    from optuna_autoscale.demo import main as demo_main

    return demo_main(args)


DEMO = Command(
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
)
