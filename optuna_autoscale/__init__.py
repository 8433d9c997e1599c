"""optuna-autoscale: AutoScale data-mixture optimisation as an Optuna plugin."""
from __future__ import annotations

__version__ = "0.1.0"
