"""Argument checks shared by the package: numbers, domain -> tokens mappings, bound vectors."""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import numpy as np


__all__ = ["bound_vector", "check_allocation", "check_tokens", "check_value"]


def check_allocation(alloc: Any, domains: tuple[str, ...], what: str) -> np.ndarray:
    """``alloc`` (domain -> tokens, exactly ``domains``) as a vector in ``domains`` order."""
    if not isinstance(alloc, Mapping):
        raise TypeError(f"{what} must be a mapping domain -> tokens, got {type(alloc).__name__}.")
    if set(alloc) != set(domains):
        unknown = sorted(set(alloc) - set(domains))
        missing = [d for d in domains if d not in alloc]
        raise ValueError(
            f"{what} must give tokens for exactly the domains {list(domains)!r}; unknown: {unknown!r}, missing: {missing!r}."
        )
    try:
        x = np.array([float(alloc[d]) for d in domains])
    except (TypeError, ValueError):
        raise TypeError(f"{what} token counts must be numbers, got {dict(alloc)!r}.") from None
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{what} token counts must be finite and >= 0, got {dict(alloc)!r}.")
    return x


def check_value(v: Any, what: str) -> float:
    """``v`` as a finite float."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {v!r}.") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {v!r}; drop failed or NaN runs before fitting.")
    return f


def bound_vector(
    bound: float | Mapping[str, float] | None, domains: tuple[str, ...], default: np.ndarray, name: str
) -> np.ndarray:
    """A scalar or per-domain bound as a vector over ``domains`` (``default`` where not given)."""
    if bound is None:
        return default.copy()
    if isinstance(bound, Mapping):
        unknown = [d for d in bound if d not in domains]
        if unknown:
            raise ValueError(f"{name} names unknown domains {unknown!r}; the domains are {list(domains)!r}.")
        out = default.copy()
        for i, d in enumerate(domains):
            if d in bound:
                out[i] = float(bound[d])
        return out
    return np.full(len(domains), float(bound))


def check_tokens(tokens: float, what: str = "tokens") -> float:
    """``tokens`` as a finite, positive float (a number of training tokens)."""
    try:
        t = float(tokens)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of training tokens, got {tokens!r}.") from None
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"{what} must be a finite, positive number of training tokens, got {tokens!r}.")
    return t
