"""Baseline mixture methods AutoScale is compared against.

- :mod:`~optuna_autoscale.baselines.simple`: uniform, natural and UniMax weights.
- :mod:`~optuna_autoscale.baselines.dml`: Data Mixing Laws (fit and optimum).
- :mod:`~optuna_autoscale.baselines.regmix`: RegMix (swarm, regression, optimum) and
  :class:`RegMixSampler`.
- :mod:`~optuna_autoscale.baselines.doremi`: DoReMi on the proxy trainer (needs torch; imported
  lazily).

Every method returns weights (a dict domain -> share summing to 1); wrap them in
:class:`~optuna_autoscale.mixture.Mixture` with a budget to train on them.
"""

from __future__ import annotations

from typing import Any

from optuna_autoscale.baselines.dml import DataMixingLaw
from optuna_autoscale.baselines.dml import fit_data_mixing_law
from optuna_autoscale.baselines.regmix import dirichlet_swarm
from optuna_autoscale.baselines.regmix import fit_regressor
from optuna_autoscale.baselines.regmix import lightgbm_available
from optuna_autoscale.baselines.regmix import regmix_optimum
from optuna_autoscale.baselines.regmix import RegMixSampler
from optuna_autoscale.baselines.simple import natural
from optuna_autoscale.baselines.simple import uniform
from optuna_autoscale.baselines.simple import unimax


__all__ = [
    "DataMixingLaw",
    "DoReMiResult",
    "RegMixSampler",
    "dirichlet_swarm",
    "doremi_step",
    "fit_data_mixing_law",
    "fit_regressor",
    "lightgbm_available",
    "natural",
    "regmix_optimum",
    "run_doremi",
    "uniform",
    "unimax",
]

_DOREMI_NAMES = ("DoReMiResult", "doremi_step", "run_doremi")


def __getattr__(name: str) -> Any:
    # DoReMi imports torch; load it only when asked for.
    if name in _DOREMI_NAMES:
        from optuna_autoscale.baselines import doremi as _doremi_module

        return getattr(_doremi_module, name)
    raise AttributeError(f"module 'optuna_autoscale.baselines' has no attribute {name!r}")
