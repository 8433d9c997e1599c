"""Deprecated location of the per-domain (transfer) joint law: see :mod:`optuna_autoscale.laws.transfer`."""

from optuna_autoscale.laws.transfer import fit_transfer
from optuna_autoscale.laws.transfer import objective_weights
from optuna_autoscale.laws.transfer import TransferLaw
from optuna_autoscale.laws.transfer import TransferObservation


__all__ = ["TransferLaw", "TransferObservation", "fit_transfer", "objective_weights"]
