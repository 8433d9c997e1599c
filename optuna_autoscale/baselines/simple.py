"""Closed-form baseline mixtures: uniform, natural and UniMax.

Every function returns **weights**: a ``dict`` domain -> share, non-negative and summing to 1,
in the order the domains were given. Build a :class:`~optuna_autoscale.mixture.Mixture` from
them with ``Mixture(weights, tokens)`` when a budget is known. (UniMax needs the budget to
decide its weights, the other two do not.)
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import math

import numpy as np

from optuna_autoscale._validation import check_tokens
from optuna_autoscale.mixture import validate_domains


__all__ = ["natural", "uniform", "unimax"]


def uniform(domains: Iterable[str]) -> dict[str, float]:
    """Equal share ``1/m`` for each of the ``m`` domains.

    Args:
        domains: Domain names, unique.

    Returns:
        Domain -> weight.

    Example:
        .. code-block:: python

            from optuna_autoscale.baselines import uniform

            assert uniform(["web", "code"]) == {"web": 0.5, "code": 0.5}
    """
    doms = validate_domains(domains)
    return {d: 1.0 / len(doms) for d in doms}


def _check_counts(counts: Mapping[str, float], what: str) -> dict[str, float]:
    if not isinstance(counts, Mapping):
        raise TypeError(f"{what} must be a mapping domain -> number of tokens, got {type(counts).__name__}.")
    doms = validate_domains(counts.keys())
    out: dict[str, float] = {}
    for d in doms:
        try:
            v = float(counts[d])
        except (TypeError, ValueError):
            raise ValueError(f"{what}[{d!r}] must be a number of tokens, got {counts[d]!r}.") from None
        if not math.isfinite(v) or v < 0.0:
            raise ValueError(f"{what}[{d!r}] must be a finite, non-negative number of tokens, got {v!r}.")
        out[d] = v
    if sum(out.values()) <= 0.0:
        raise ValueError(f"{what} sums to 0 tokens; at least one domain needs data.")
    return out


def _positive_shares(w: Mapping[str, float], domains: tuple[str, ...], what: str, *, why: str = "") -> np.ndarray:
    """``w`` (shares or token counts naming exactly ``domains``, all > 0) as a normalised vector."""
    if not isinstance(w, Mapping):
        raise TypeError(f"{what} must be a mapping domain -> share (or token count), got {type(w).__name__}.")
    missing = [d for d in domains if d not in w]
    extra = [d for d in w if d not in domains]
    if missing or extra:
        raise ValueError(f"{what} must name exactly the domains; missing {missing!r}, unknown {extra!r}.")
    arr = np.array([float(w[d]) for d in domains])
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"{what} must be finite and positive for every domain{why}, got {dict(zip(domains, arr.tolist()))!r}."
        )
    return arr / arr.sum()


def natural(unique_tokens: Mapping[str, float]) -> dict[str, float]:
    """Shares proportional to each domain's unique (available) training tokens.

    Args:
        unique_tokens: Domain -> number of unique training tokens available (tokens).

    Returns:
        Domain -> weight.

    Example:
        .. code-block:: python

            from optuna_autoscale.baselines import natural

            assert natural({"web": 3e9, "code": 1e9}) == {"web": 0.75, "code": 0.25}
    """
    counts = _check_counts(unique_tokens, "unique_tokens")
    total = sum(counts.values())
    return {d: v / total for d, v in counts.items()}


def unimax(
    unique_tokens: Mapping[str, float],
    tokens: float,
    max_epochs: float | Mapping[str, float],
) -> dict[str, float]:
    """UniMax (Chung et al. 2023): a uniform budget, capped at ``max_epochs`` epochs per domain.

    Each domain ``i`` may receive at most ``cap_i = max_epochs * unique_tokens[i]`` tokens. The
    budget is spread as evenly as the caps allow ("water-filling"): domains are visited from the
    smallest cap up; each gets ``min(cap_i, remaining budget / remaining domains)``, so what a
    capped domain cannot take is shared equally by the others.

    Args:
        unique_tokens: Domain -> unique training tokens available (tokens).
        tokens: Total training budget (tokens).
        max_epochs: Maximum number of passes over a domain's data; a number, or a mapping
            domain -> number for per-domain limits.

    Returns:
        Domain -> weight (allocation / ``tokens``).

    Raises:
        ValueError: if the caps cannot absorb the budget (``sum_i cap_i < tokens``), or on
            invalid counts, budget or epochs.

    Example:
        .. code-block:: python

            from optuna_autoscale.baselines import unimax

            # Budget 100, caps 10 / 40 / 200: "a" is capped at 10, the other 90 is split
            # 45 / 45, but "b" can only take 40, so "c" gets 50.
            w = unimax({"a": 10, "b": 40, "c": 200}, tokens=100, max_epochs=1)
            assert w == {"a": 0.1, "b": 0.4, "c": 0.5}
    """
    counts = _check_counts(unique_tokens, "unique_tokens")
    budget = check_tokens(tokens)
    if isinstance(max_epochs, Mapping):
        missing = [d for d in counts if d not in max_epochs]
        if missing:
            raise ValueError(f"max_epochs has no entry for domains {missing!r}; give one per domain or a number.")
        epochs = {d: float(max_epochs[d]) for d in counts}
    else:
        epochs = {d: float(max_epochs) for d in counts}
    bad = {d: e for d, e in epochs.items() if not math.isfinite(e) or e <= 0.0}
    if bad:
        raise ValueError(f"max_epochs must be finite and positive, got {bad!r}.")
    caps = {d: epochs[d] * counts[d] for d in counts}
    capacity = sum(caps.values())
    if capacity < budget * (1.0 - 1e-12):
        raise ValueError(
            f"UniMax cannot place {budget:.6g} tokens: the domains hold only {capacity:.6g} tokens at "
            f"max_epochs ({epochs!r}). Raise max_epochs, add data or lower the budget."
        )
    order = sorted(caps, key=lambda d: caps[d])
    alloc: dict[str, float] = {}
    remaining = budget
    for k, d in enumerate(order):
        share = remaining / (len(order) - k)
        alloc[d] = min(caps[d], share)
        remaining -= alloc[d]
    arr = np.array([alloc[d] for d in counts])
    arr = arr / arr.sum()
    return dict(zip(counts, arr.tolist()))
