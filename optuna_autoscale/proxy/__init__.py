"""The objective side: train GPT-2 proxies on a data mixture and measure per-domain losses.

Importing this package is cheap: torch, transformers, datasets and tokenizers load only when
one of the names below is first used (PEP 562 lazy attributes).

Example:
    .. code-block:: python

        import optuna
        from optuna_autoscale import AutoScaleSampler
        from optuna_autoscale.proxy import ProxyConfig, make_objective
        from optuna_autoscale.proxy.corpus import build_corpus

        corpus = build_corpus({"code": "code.jsonl", "prose": "prose.jsonl"})
        sampler = AutoScaleSampler(corpus.domains, budgets=(5e5, 1e6))
        study = optuna.create_study(sampler=sampler)
        study.optimize(make_objective(corpus, ProxyConfig(preset="tiny")), n_trials=100)
"""

from __future__ import annotations

import importlib
from typing import Any
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from optuna_autoscale.proxy.corpus import Corpus
    from optuna_autoscale.proxy.model import build_model
    from optuna_autoscale.proxy.model import count_parameters
    from optuna_autoscale.proxy.model import estimate_mfu
    from optuna_autoscale.proxy.model import PRESETS
    from optuna_autoscale.proxy.objective import make_objective
    from optuna_autoscale.proxy.train import CorpusLike
    from optuna_autoscale.proxy.train import plan_sequences
    from optuna_autoscale.proxy.train import ProxyConfig
    from optuna_autoscale.proxy.train import ProxyResult
    from optuna_autoscale.proxy.train import train_proxy


_LAZY: dict[str, str] = {
    "Corpus": "optuna_autoscale.proxy.corpus",
    "PRESETS": "optuna_autoscale.proxy.model",
    "build_model": "optuna_autoscale.proxy.model",
    "count_parameters": "optuna_autoscale.proxy.model",
    "estimate_mfu": "optuna_autoscale.proxy.model",
    "CorpusLike": "optuna_autoscale.proxy.train",
    "ProxyConfig": "optuna_autoscale.proxy.train",
    "ProxyResult": "optuna_autoscale.proxy.train",
    "plan_sequences": "optuna_autoscale.proxy.train",
    "train_proxy": "optuna_autoscale.proxy.train",
    "make_objective": "optuna_autoscale.proxy.objective",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
