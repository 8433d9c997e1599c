"""OptunaHub package ``samplers/autoscale``: AutoScale data-mixture optimisation for LLM pre-training.

The sampler and its helpers live in the ``optuna-autoscale`` library (``requirements.txt``); this
package re-exports the names an Optuna user needs: :class:`AutoScaleSampler`, :func:`suggest_mixture`
(call it in the objective), :class:`AutoScaleResult` (fits, optima, extrapolation, verification),
:class:`Mixture` and :func:`enqueue_mixture`.
"""

from __future__ import annotations


try:
    from optuna_autoscale import AutoScaleResult
    from optuna_autoscale import AutoScaleSampler
    from optuna_autoscale import enqueue_mixture
    from optuna_autoscale import Mixture
    from optuna_autoscale import suggest_mixture
except ImportError as e:  # pragma: no cover - the requirement is missing
    raise ImportError(
        "The OptunaHub package samplers/autoscale needs the optuna-autoscale library: "
        "pip install -r https://hub.optuna.org/samplers/autoscale/requirements.txt"
    ) from e


__all__ = ["AutoScaleResult", "AutoScaleSampler", "Mixture", "enqueue_mixture", "suggest_mixture"]
