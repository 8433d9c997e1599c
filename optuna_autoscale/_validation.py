"""Argument checks shared by the package: numbers, domain -> tokens mappings, bound vectors."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any

import numpy as np


__all__ = [
    "bound_vector", "check_allocation", "check_int", "check_known_domains", "check_number", "check_range", "check_tokens",
    "check_value",
]


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


def number_problem(
    value: Any, *, positive: bool = False, nonneg: bool = False, strict: bool = False, kind: str = "a number",
    nonfinite: str = "must be finite",
) -> tuple[float | None, str | None]:
    """``(value as a float, None)``, or ``(float or None, what is wrong)``; the float is None when ``value`` is no number.

    Args:
        value: The value to check.
        positive: It must be > 0.
        nonneg: It must be >= 0.
        strict: Only ``int`` and ``float`` (numpy's too) count as numbers, not ``bool`` or strings.
        kind: The noun of the type message, ``"must be {kind}, got ..."``.
        nonfinite: The message for NaN and infinities.
    """
    if strict and (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))):
        return None, f"must be {kind}, got {value!r}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None, f"must be {kind}, got {value!r}"
    if not math.isfinite(v):
        return v, f"{nonfinite}, got {value!r}"
    if positive and v <= 0:
        return v, f"must be > 0, got {value!r}"
    if nonneg and v < 0:
        return v, f"must be >= 0, got {value!r}"
    return v, None


def check_number(
    value: Any, what: str, *, positive: bool = False, nonneg: bool = False, strict: bool = False,
    kind: str = "a number", nonfinite: str = "must be finite", hint: str = "",
) -> float:
    """``value`` as a finite float (see :func:`number_problem`); ``TypeError`` for no number, else ``ValueError``.

    The message reads ``"{what} {problem}{hint}."``, e.g. ``"noise must be >= 0, got -1."``.
    """
    v, problem = number_problem(value, positive=positive, nonneg=nonneg, strict=strict, kind=kind, nonfinite=nonfinite)
    if problem is None:
        assert v is not None
        return v
    raise (TypeError if v is None else ValueError)(f"{what} {problem}{hint}.")


def check_value(v: Any, what: str) -> float:
    """``v`` as a finite float (a measured value: a loss, an objective)."""
    return check_number(v, what, hint="; drop failed or NaN runs before fitting")


def check_range(
    value: Any, what: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` (an ``int`` or ``float``, not a ``bool``) finite and inside ``[low, high]`` (``(`` / ``)`` where open)."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        rng = f"{lo}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{hi}"
        raise ValueError(f"{what} must be a finite number in {rng}, got {value!r}.")
    return float(value)


def check_int(value: Any, what: str, *, minimum: int) -> int:
    """``value`` as an ``int`` >= ``minimum`` (numpy integers count; ``bool`` and floats do not)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_known_domains(names: Any, domains: Sequence[str], what: str) -> None:
    """Raise a ``ValueError`` if ``names`` (the keys of a mapping ``what``) include one outside ``domains``."""
    unknown = [d for d in names if d not in domains]
    if unknown:
        raise ValueError(f"{what} names unknown domains {unknown!r}; the domains are {list(domains)!r}.")


def bound_vector(
    bound: float | Mapping[str, float] | None, domains: tuple[str, ...], default: np.ndarray, name: str
) -> np.ndarray:
    """A scalar or per-domain bound as a vector over ``domains`` (``default`` where not given)."""
    if bound is None:
        return default.copy()
    if isinstance(bound, Mapping):
        check_known_domains(bound, domains, name)
        out = default.copy()
        for i, d in enumerate(domains):
            if d in bound:
                out[i] = float(bound[d])
        return out
    return np.full(len(domains), float(bound))


def check_tokens(
    tokens: Any, what: str = "tokens", *, unit: str = "training tokens", type_error: type[Exception] = ValueError
) -> float:
    """``tokens`` as a finite, positive float (a number of ``unit``); ``type_error`` when it is no number."""
    try:
        t = float(tokens)
    except (TypeError, ValueError):
        raise type_error(f"{what} must be a number of {unit}, got {tokens!r}.") from None
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"{what} must be a finite, positive number of {unit}, got {tokens!r}.")
    return t
