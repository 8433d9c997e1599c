"""Scaling laws of the loss in the tokens per domain: the per-budget DDO fit and the two joint laws.

One concept per module:

- :mod:`~optuna_autoscale.laws.ddo`: the paper's per-budget DDO fit (:func:`fit_power_laws`);
- :mod:`~optuna_autoscale.laws._map`: the MAP machinery both joint laws share (priors, bounds,
  groups, pooling);
- :mod:`~optuna_autoscale.laws.separable`: the joint separable law (:func:`fit_separable`);
- :mod:`~optuna_autoscale.laws.transfer`: the per-domain (transfer) joint law (:func:`fit_transfer`);
- :mod:`~optuna_autoscale.laws.dml`: the Data Mixing Laws exponential form;
- :mod:`~optuna_autoscale.laws.protocol`: :class:`JointLaw`, what both joint laws answer.
"""

from typing import Any

from optuna_autoscale.laws._map import DEFAULT_RISK
from optuna_autoscale.laws._map import JointObservation
from optuna_autoscale.laws._map import POOL_SD_FLOOR
from optuna_autoscale.laws.ddo import DDOFit
from optuna_autoscale.laws.ddo import DDOWarning
from optuna_autoscale.laws.ddo import fit_power_laws
from optuna_autoscale.laws.ddo import Observation
from optuna_autoscale.laws.ddo import PowerLaw
from optuna_autoscale.laws.protocol import JointLaw
from optuna_autoscale.laws.separable import fit_separable
from optuna_autoscale.laws.separable import SeparableLaw
from optuna_autoscale.laws.transfer import fit_transfer
from optuna_autoscale.laws.transfer import objective_weights
from optuna_autoscale.laws.transfer import TransferLaw


__all__ = [
    "DDOFit",
    "DDOWarning",
    "DEFAULT_RISK",
    "JointLaw",
    "JointObservation",
    "Observation",
    "POOL_SD_FLOOR",
    "PowerLaw",
    "SeparableLaw",
    "TransferLaw",
    "fit_power_laws",
    "fit_separable",
    "fit_transfer",
    "objective_weights",
]

_MOVED = {
    "_pooled_prior": ("optuna_autoscale.laws._map", "pooled_prior"),
    "_group_design": ("optuna_autoscale.laws._map", "group_design"),
    "_project_box_total": ("optuna_autoscale.extrapolation.robust", "project_box_total"),
}


def __getattr__(name: str) -> Any:
    # Deprecated: private names of the former laws.py, for code that still imports them from here.
    if name in _MOVED:
        import importlib

        module, attr = _MOVED[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
