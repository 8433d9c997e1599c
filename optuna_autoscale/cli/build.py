"""The sampler, objective and storage of a run config, as ``run``, ``worker`` and the demo use them."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import time
from typing import Any
from typing import TYPE_CHECKING

from optuna_autoscale.cli._common import CommandError


if TYPE_CHECKING:
    from optuna_autoscale.config import RunConfig


__all__ = ["build_objective", "build_sampler", "storage_for", "usable_unique_tokens"]


def sampler_bounds(cfg: RunConfig, unique_tokens: Mapping[str, int] | None) -> dict[str, tuple[float | None, float | None]] | None:
    """The sampler's per-domain token bounds: ``[design] bounds``, capped at ``max_epochs`` times the unique tokens."""
    bounds: dict[str, tuple[float | None, float | None]] = {d: (lu[0], lu[1]) for d, lu in cfg.design.bounds.items()}
    caps = cfg.design.max_epochs
    if caps is not None:
        if unique_tokens is None:
            raise CommandError("design.max_epochs needs the corpus's unique tokens: it applies to objective = \"proxy\" only")
        per = caps if isinstance(caps, Mapping) else {d: caps for d in unique_tokens}
        for d, epochs in per.items():
            cap = float(epochs) * float(unique_tokens[d])
            lo, hi = bounds.get(d, (None, None))
            bounds[d] = (lo, cap if hi is None else min(float(hi), cap))
    return bounds or None


def build_sampler(cfg: RunConfig, domains: Sequence[str], *, unique_tokens: Mapping[str, int] | None = None) -> Any:
    """The :class:`~optuna_autoscale.AutoScaleSampler` of a run config."""
    from optuna_autoscale.sampler import AutoScaleSampler

    return AutoScaleSampler(
        list(domains),
        list(cfg.design.budgets),
        base=cfg.design.base,
        multipliers=tuple(cfg.design.multipliers),
        bounds=sampler_bounds(cfg, unique_tokens),
        replicates=cfg.design.replicates,
        design_seeds=cfg.design.design_seeds,
        verify=cfg.design.verify,
        seed=cfg.design.seed,
        reach=cfg.design.reach or None,
    )


def _metric_value(metric: Any, losses: Mapping[str, float]) -> float:
    import numpy as np

    if metric == "mean_loss":
        return float(np.mean(list(losses.values())))
    if metric == "mean_ppl":
        return float(np.mean(np.exp(list(losses.values()))))
    total = sum(metric.values())
    return float(sum(w * losses[d] for d, w in metric.items()) / total)


def _simulate_objective(cfg: RunConfig) -> tuple[Callable[[Any], float], tuple[str, ...]]:
    from optuna_autoscale.mixture import LOSS_PREFIX
    from optuna_autoscale.mixture import suggest_mixture

    assert cfg.simulate is not None
    land = cfg.simulate.landscape()
    domains = tuple(land.domains)
    metric = cfg.study.metric
    sleep = cfg.simulate.sleep

    def objective(trial: Any) -> float:
        mix = suggest_mixture(trial, domains)
        losses = land.per_domain_loss(mix.allocation, seed=mix.seed)
        for d, v in losses.items():
            trial.set_user_attr(f"{LOSS_PREFIX}{d}", float(v))
        if sleep:
            time.sleep(sleep)
        return _metric_value(metric, losses)

    return objective, domains


def build_objective(cfg: RunConfig) -> tuple[Callable[[Any], float], tuple[str, ...], dict[str, int] | None]:
    """``(objective, domains, unique tokens per domain or None)`` of a run config.

    ``objective = "simulate"`` evaluates the configured landscape; ``"proxy"`` builds (or opens
    from its cache) the corpus and trains a GPT-2 proxy per trial.
    """
    if cfg.study.objective == "simulate":
        obj, domains = _simulate_objective(cfg)
        return obj, domains, None
    from optuna_autoscale.proxy.objective import make_objective

    corpus = cfg.build_corpus()
    proxy_config = cfg.proxy_config()
    metric = cfg.study.metric
    if isinstance(metric, Mapping):
        metric = dict(metric)
    # No tqdm bars: the CLI prints one line per run (--progress), and workers share a terminal.
    obj = make_objective(corpus, proxy_config, metric=metric, progress=False)
    return obj, tuple(corpus.domains), usable_unique_tokens(corpus, proxy_config.context)


def usable_unique_tokens(corpus: Any, context: int) -> dict[str, int]:
    """Unique training tokens per domain that the trainer can use: its whole non-overlapping
    sequences of ``context`` tokens (each needs ``context + 1`` tokens for its targets).

    ``[design] max_epochs`` times these is the sampler's upper bound of a domain, and the trainer
    (whose ``max_epochs`` is the same cap) counts epochs in these sequences, so an allocation at
    the bound is exactly ``max_epochs`` epochs for both.
    """
    return {d: max(0, (int(len(corpus.train_tokens(d))) - 1) // context) * context for d in corpus.domains}


def storage_for(url: str, cfg: RunConfig | None) -> Any:
    """The Optuna storage of ``url`` with the config's heartbeat, grace period and retries."""
    from optuna_autoscale.storage import create_storage

    if cfg is None:
        return create_storage(url)
    hb = cfg.study.heartbeat_interval or None
    return create_storage(url, heartbeat_interval=hb, grace_period=cfg.study.grace_period if hb else None,
                          max_retry=cfg.study.max_retry)
