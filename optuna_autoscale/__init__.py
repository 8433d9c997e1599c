"""optuna-autoscale: AutoScale data-mixture optimisation as an Optuna plugin.

Public names: :class:`Mixture`, :func:`suggest_mixture`, :func:`enqueue_mixture`,
:class:`AutoScaleSampler`, :class:`AutoScaleResult`, :func:`fit_power_laws`,
:func:`fit_separable`, :func:`fit_transfer`, :func:`fit_eval_law`, :func:`fit_evidence`,
:func:`load_runs`, :func:`objective_weights`, :func:`extrapolate`, :func:`solve_separable`.
Importing the package loads only optuna, numpy and scipy (no torch; pandas only when runs are read).

Runs you already have (any sampler, any older study, a CSV)::

    result = AutoScaleResult.from_runs("runs.csv")   # weight_<domain>, tokens, value, loss_<name>
    rec = result.recommend(1e10)                      # inside the tested shares by default
    print(rec.mixture.weights, rec.gain_over_best, rec.best_interval, rec.warnings)

Example:
    .. code-block:: python

        import optuna
        from optuna_autoscale import AutoScaleResult, AutoScaleSampler
        from optuna_autoscale.simulate import separable

        land = separable(3)
        study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8]))
        study.optimize(land.objective(), n_trials=100)  # stops when the design is complete
        print(AutoScaleResult.from_study(study).extrapolate(4e9).weights)
"""
from __future__ import annotations

from optuna_autoscale.allocation import solve_separable
from optuna_autoscale.evidence import fit_eval_law
from optuna_autoscale.evidence import fit_evidence
from optuna_autoscale.extrapolation import extrapolate
from optuna_autoscale.laws import fit_power_laws
from optuna_autoscale.laws import fit_separable
from optuna_autoscale.laws import fit_transfer
from optuna_autoscale.laws import objective_weights
from optuna_autoscale.mixture import enqueue_mixture
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.mixture import suggest_mixture
from optuna_autoscale.results import AutoScaleResult
from optuna_autoscale.runs import load_runs
from optuna_autoscale.runs import Runs
from optuna_autoscale.sampler import AutoScaleSampler
from optuna_autoscale.version import __version__  # noqa: F401  (defined once, there)


__all__ = [
    "AutoScaleResult",
    "AutoScaleSampler",
    "Mixture",
    "enqueue_mixture",
    "Runs",
    "extrapolate",
    "fit_eval_law",
    "fit_evidence",
    "fit_power_laws",
    "fit_separable",
    "fit_transfer",
    "load_runs",
    "objective_weights",
    "solve_separable",
    "suggest_mixture",
]
