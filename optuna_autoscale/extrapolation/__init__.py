"""Extrapolation: the optimal mixture at a target budget larger than the ones run.

"Extrapolate" means one thing here: predict the optimal allocation at a target budget from the
runs at the design's budgets. Two rules do it:

- :func:`extrapolate_joint` (the default): the joint law's bounded optimum at the target, reached
  from an anchor (the largest budget's DDO optimum) only as far as the law's posterior supports
  (:mod:`~optuna_autoscale.extrapolation.robust`);
- :func:`extrapolate_paper`: the AutoScale paper's rule, the path of the per-budget optima
  followed to the target (:mod:`~optuna_autoscale.extrapolation.paper`).

``extrapolate`` is the paper's rule under its former name.
"""

from optuna_autoscale.extrapolation.paper import extrapolate_paper
from optuna_autoscale.extrapolation.paper import fit_path
from optuna_autoscale.extrapolation.paper import ScalePath
from optuna_autoscale.extrapolation.robust import extrapolate_joint


extrapolate = extrapolate_paper
"""The paper's rule (:func:`extrapolate_paper`), under its former name."""

__all__ = ["ScalePath", "extrapolate", "extrapolate_joint", "extrapolate_paper", "fit_path"]
