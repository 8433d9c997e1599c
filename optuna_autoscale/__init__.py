"""optuna-autoscale: AutoScale data-mixture optimisation as an Optuna plugin.

Public names: :class:`Mixture`, :func:`suggest_mixture`, :func:`enqueue_mixture`,
:class:`AutoScaleSampler`, :class:`AutoScaleResult`, :func:`fit_power_laws`,
:func:`fit_separable`, :func:`extrapolate`, :func:`solve_separable`. Importing the package loads
only optuna, numpy and scipy (no torch).
"""
from __future__ import annotations

from optuna_autoscale.mixture import enqueue_mixture
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.mixture import suggest_mixture
from optuna_autoscale.results import AutoScaleResult
from optuna_autoscale.sampler import AutoScaleSampler


__version__ = "0.1.0"

__all__ = [
    "AutoScaleResult",
    "AutoScaleSampler",
    "Mixture",
    "enqueue_mixture",
    "suggest_mixture",
]

# Modules written in parallel: export what exists.
try:
    from optuna_autoscale.allocation import solve_separable  # noqa: F401

    __all__.append("solve_separable")
except ImportError:  # pragma: no cover
    pass
try:
    from optuna_autoscale.laws import fit_power_laws  # noqa: F401

    __all__.append("fit_power_laws")
except ImportError:  # pragma: no cover
    pass
try:
    from optuna_autoscale.laws import fit_separable  # noqa: F401

    __all__.append("fit_separable")
except ImportError:  # pragma: no cover
    pass
try:
    from optuna_autoscale.extrapolation import extrapolate  # noqa: F401

    __all__.append("extrapolate")
except ImportError:  # pragma: no cover
    pass
