"""A ready Optuna objective: suggest a mixture, train a GPT-2 proxy on it, return a loss.

torch loads on the first trial, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import logging
import math
from typing import Any
from typing import TYPE_CHECKING

from optuna_autoscale.mixture import LOSS_PREFIX
from optuna_autoscale.mixture import suggest_mixture
from optuna_autoscale.mixture import validate_domains


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.mixture import Mixture
    from optuna_autoscale.proxy.train import CorpusLike
    from optuna_autoscale.proxy.train import ProxyConfig
    from optuna_autoscale.proxy.train import ProxyResult


_logger = logging.getLogger(__name__)

PPL_PREFIX = "ppl_"
"""Prefix of the per-domain validation-perplexity user attrs (``ppl_<domain>``)."""
METRICS = ("mean_loss", "mean_ppl")
"""Named metrics; a mapping of domain -> weight is also accepted."""


def make_objective(
    corpus: CorpusLike,
    config: ProxyConfig | None = None,
    metric: str | Mapping[str, float] = "mean_loss",
    *,
    domains: Sequence[str] | None = None,
    tokens: float | None = None,
    progress: bool | None = None,
) -> ProxyObjective:
    """An objective for ``study.optimize`` that trains a proxy on each trial's mixture.

    Each trial calls :func:`~optuna_autoscale.suggest_mixture` (under
    :class:`~optuna_autoscale.AutoScaleSampler` the sampler chooses weights, budget and seed),
    trains with :func:`~optuna_autoscale.proxy.train_proxy` and stores numeric user attrs:
    ``loss_<d>`` and ``ppl_<d>`` per evaluated domain, ``mean_loss``, ``mean_ppl``,
    ``tokens_seen``, ``tokens_per_second``, ``train_seconds``, ``steps``, ``n_params`` and
    ``epochs_<d>`` per trained domain, and ``world_size`` (the processes that trained the
    proxy together under ``torchrun``; 1 otherwise). A non-finite result is logged, recorded in the user attr
    ``fail_reason`` and returned as NaN, so Optuna marks the trial FAIL and the study goes on.

    Args:
        corpus: The tokenised corpus (:class:`~optuna_autoscale.proxy.corpus.Corpus` or any
            :class:`~optuna_autoscale.proxy.train.CorpusLike`).
        config: Training configuration; default ``ProxyConfig()``.
        metric: What the trial returns (lower is better):
            ``"mean_loss"``: mean of the per-domain validation losses (nats/token; the default);
            ``"mean_ppl"``: mean of the per-domain perplexities (the AutoScale paper's objective);
            a mapping domain -> non-negative weight: the weighted mean loss over those target
            domains (they are evaluated even if they are not trained on).
        domains: The mixture's domains; default all of ``corpus.domains``. Under AutoScaleSampler
            they must be the sampler's domains.
        tokens: Training budget in tokens, for samplers other than AutoScaleSampler (which choose
            none); must be None under AutoScaleSampler.
        progress: Show a tqdm progress bar per trial: True, False, or None (the default): only
            when stderr is a terminal (tqdm's ``disable=None``), so that logs and CI output stay
            free of bars.

    Returns:
        A :class:`ProxyObjective`: ``objective(trial) -> float``. Under ``torchrun`` run it with
        :func:`optuna_autoscale.proxy.distributed.optimize` on every rank: rank 0 runs the study
        and shares each trial's mixture, the other ranks train it with rank 0 (DDP).

    Raises:
        ValueError: for an unknown metric, bad target weights, or domains not in the corpus.

    Example:
        .. code-block:: python

            import optuna
            from optuna_autoscale.proxy import ProxyConfig, make_objective
            from optuna_autoscale.proxy.corpus import build_corpus

            corpus = build_corpus({"code": "code.jsonl", "prose": "prose.jsonl"})
            objective = make_objective(corpus, ProxyConfig(preset="tiny"), "mean_ppl", tokens=1e6)
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
            study.optimize(objective, n_trials=4)
            print(study.best_trial.user_attrs)
    """
    from optuna_autoscale.proxy.train import ProxyConfig

    # Resolve transformers' lazy attributes here, in the calling thread: its lazy module is not
    # thread-safe, and `study.optimize(..., n_jobs=2)` would otherwise import it from two threads
    # at once ("cannot import name 'GPT2LMHeadModel'").
    from transformers import GPT2Config  # noqa: F401
    from transformers import GPT2LMHeadModel  # noqa: F401

    config = ProxyConfig() if config is None else config
    if not isinstance(config, ProxyConfig):
        raise TypeError(f"config must be a ProxyConfig, got {type(config).__name__}.")
    known = tuple(corpus.domains)
    doms = validate_domains(known if domains is None else domains)
    missing = [d for d in doms if d not in known]
    if missing:
        raise ValueError(f"Domain(s) {missing} are not in the corpus, whose domains are {list(known)}.")
    score, targets = _make_score(metric, known)
    if targets is not None:
        # Evaluate the target domains too (they may carry no training weight).
        evaluated = tuple(config.eval_domains or doms)
        extra = tuple(d for d in targets if d not in evaluated)
        if extra:
            config = dataclasses.replace(config, eval_domains=evaluated + extra)
    warn_small_validation(corpus, config, tuple(config.eval_domains or doms))
    objective = ProxyObjective(corpus, config, score, doms, tokens=tokens, progress=progress)
    from optuna_autoscale.dashboard import metric_label

    objective.metric_name = metric_label(dict(metric) if isinstance(metric, Mapping) else metric)
    return objective


def warn_small_validation(corpus: CorpusLike, config: ProxyConfig, domains: Sequence[str]) -> list[str]:
    """Log a warning for each domain whose validation split is much smaller than ``eval_tokens``.

    Each trial measures a domain's loss on its first ``eval_tokens`` validation tokens; a split
    of a few hundred tokens makes that loss (and the fits on it) noisy, silently. Returns the
    messages (also logged once, here, when the objective is built).
    """
    out = []
    for d in domains:
        try:
            n = int(len(corpus.val_tokens(d)))
        except (KeyError, ValueError, AttributeError):
            continue
        if n < config.eval_tokens / 2:
            out.append(
                f"Domain {d!r} has {n:,} validation tokens, much fewer than eval_tokens={config.eval_tokens:,}: "
                f"its loss is measured on {n:,} tokens only and will be noisy. Give {d!r} more documents or a "
                "larger val_fraction, or lower eval_tokens."
            )
    for msg in out:
        _logger.warning(msg)
    return out


class ProxyObjective:
    """The objective :func:`make_objective` returns: ``objective(trial) -> float``.

    Attributes:
        corpus: The tokenised corpus.
        config: The :class:`~optuna_autoscale.proxy.ProxyConfig` every trial trains with.
        domains: The mixture's domains.
        tokens: The fixed budget (samplers other than AutoScaleSampler), or None.
        progress: The progress-bar setting passed to ``train_proxy``.
    """

    def __init__(
        self,
        corpus: CorpusLike,
        config: ProxyConfig,
        score: Callable[[Mapping[str, float]], float],
        domains: tuple[str, ...],
        *,
        tokens: float | None,
        progress: bool | None,
    ) -> None:
        self.corpus = corpus
        self.config = config
        self.score = score
        self.domains = domains
        self.tokens = tokens
        self.progress = progress

    def train(self, mixture: Mixture, trial: optuna.Trial | None = None) -> ProxyResult:
        """Train one proxy on ``mixture`` (what every rank does for a trial)."""
        from optuna_autoscale.proxy.train import train_proxy

        return train_proxy(self.corpus, mixture, self.config, trial=trial, progress=self.progress, metric=self.score)

    def follow(self) -> int:
        """Ranks > 0 under ``torchrun``: train each mixture rank 0's trials send, until it stops.

        Returns the number of mixtures trained. See :mod:`optuna_autoscale.proxy.distributed`.
        """
        from optuna_autoscale.proxy import distributed

        distributed.init(self.config.device)
        return distributed.follow(self.train)

    def __call__(self, trial: optuna.Trial) -> float:
        from optuna_autoscale.proxy import distributed

        if getattr(self, "metric_name", None) and not getattr(self, "_named", False):
            from optuna_autoscale.dashboard import set_metric_name

            set_metric_name(trial.study, self.metric_name)  # Optuna's panels say "mean validation loss"
            self._named = True
        mixture = suggest_mixture(trial, self.domains, tokens=self.tokens)
        world = distributed.world_size()
        if world > 1:
            distributed.init(self.config.device)
            distributed.share_mixture(mixture)  # the other ranks train the same mixture with us
        result = self.train(mixture, trial)
        for d, loss in result.losses.items():
            trial.set_user_attr(f"{LOSS_PREFIX}{d}", _finite_or_none(loss))
        for d, ppl in result.perplexities.items():
            trial.set_user_attr(f"{PPL_PREFIX}{d}", _finite_or_none(ppl))
        for d, ep in result.epochs.items():
            trial.set_user_attr(f"epochs_{d}", float(ep))
        for key in ("mean_loss", "mean_ppl", "tokens_per_second", "steady_tokens_per_second", "train_seconds",
                    "train_loss", "mfu"):
            trial.set_user_attr(key, _finite_or_none(getattr(result, key)))
        trial.set_user_attr("tokens_seen", int(result.tokens_seen))
        trial.set_user_attr("steps", int(result.steps))
        trial.set_user_attr("n_params", int(result.n_params))
        trial.set_user_attr("world_size", int(world))
        value = float(self.score(result.losses))
        if not math.isfinite(value):
            reason = (
                f"The proxy's validation metric is {value} (losses {result.losses}); the run diverged. "
                f"Lower the learning rate (peak {self.config.peak_lr:g}) or check the data."
            )
            _logger.warning("Trial %d: %s", trial.number, reason)
            trial.set_user_attr("fail_reason", reason)
            return float("nan")  # Optuna marks the trial FAIL and goes on
        return value


def _make_score(
    metric: str | Mapping[str, float], known: Sequence[str]
) -> tuple[Callable[[Mapping[str, float]], float], tuple[str, ...] | None]:
    """The reduction of per-domain losses to one value, and the target domains (if a mapping)."""
    if isinstance(metric, str):
        if metric == "mean_loss":
            return _mean_loss, None
        if metric == "mean_ppl":
            return _mean_ppl, None
        raise ValueError(f"Unknown metric {metric!r}; use one of {METRICS} or a mapping domain -> weight.")
    if not isinstance(metric, Mapping):
        raise TypeError(f"metric must be one of {METRICS} or a mapping domain -> weight, got {metric!r}.")
    weights: dict[str, float] = {}
    for d, w in metric.items():
        if d not in known:
            raise ValueError(f"Target domain {d!r} is not in the corpus, whose domains are {list(known)}.")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"Target weight of {d!r} must be a finite, non-negative number, got {w!r}.")
        weights[d] = float(w)
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"Target weights must have a positive sum, got {dict(metric)!r}.")
    normalised = {d: w / total for d, w in weights.items()}

    def weighted(losses: Mapping[str, float]) -> float:
        return float(sum(w * losses[d] for d, w in normalised.items()))

    return weighted, tuple(normalised)


def _mean_loss(losses: Mapping[str, float]) -> float:
    return float(sum(losses.values()) / len(losses))


def _mean_ppl(losses: Mapping[str, float]) -> float:
    return float(sum(math.exp(min(v, 700.0)) for v in losses.values()) / len(losses))


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
