"""Exact bounded water-filling for separable power-law objectives.

The AutoScale optimisation problems are all of one form: choose non-negative amounts ``x_i``
(tokens, or multipliers of a base share) that sum to a total, to minimise a separable sum of
convex decreasing power laws,

    minimise    sum_i coef_i * (x_i + offset_i) ** (-exponent_i)
    subject to  sum_i x_i == total,   lower_i <= x_i <= upper_i.

The objective is strictly convex on its domain ``x_i > -offset_i`` (``coef_i > 0``,
``exponent_i > 0``), so the KKT conditions characterise the unique minimum: with one multiplier
``lam > 0`` for the total,

    x_i(lam) = clip((coef_i * exponent_i / lam) ** (1 / (exponent_i + 1)) - offset_i, lower_i, upper_i)

and ``sum_i x_i(lam)`` is continuous and non-increasing in ``lam``. :func:`solve_separable` finds
``log lam`` by bracketing and :func:`scipy.optimize.brentq`, then polishes it so the total is
met to rounding. Everything is computed in logs and in units of ``total``, so token counts of
1e12 and exponents of 5 neither overflow nor lose precision.

:func:`solve_multipliers` is the paper's DDO problem over multipliers ``n_i`` of base shares
``p_i`` (``sum_i p_i n_i == 1``; with a uniform base this is ``sum_i n_i == m``).
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np
from scipy.optimize import brentq


ArrayLike = float | Sequence[float] | np.ndarray

__all__ = ["solve_separable", "solve_multipliers", "separable_objective"]


def _as_vector(value: ArrayLike | None, m: int, name: str, default: float) -> np.ndarray:
    if value is None:
        return np.full(m, default, dtype=float)
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(m, float(arr), dtype=float)
    if arr.shape != (m,):
        raise ValueError(f"{name} must be a scalar or have one entry per domain ({m}), got shape {arr.shape}.")
    return arr.astype(float, copy=True)


def separable_objective(
    x: ArrayLike, coef: ArrayLike, offset: ArrayLike, exponent: ArrayLike
) -> float:
    """Evaluate ``sum_i coef_i * (x_i + offset_i) ** (-exponent_i)``.

    Args:
        x: Amounts per domain (tokens or multipliers).
        coef: Positive coefficients.
        offset: Offsets added to ``x`` (same units as ``x``).
        exponent: Positive exponents.

    Returns:
        The objective, ``inf`` where some ``x_i + offset_i <= 0``.

    Example:
        >>> round(separable_objective([1.0, 3.0], 1.0, 0.0, 1.0), 6)
        1.333333
    """
    xa = np.atleast_1d(np.asarray(x, dtype=float))
    m = xa.shape[0]
    c = _as_vector(coef, m, "coef", 1.0)
    o = _as_vector(offset, m, "offset", 0.0)
    e = _as_vector(exponent, m, "exponent", 1.0)
    z = xa + o
    if np.any(z <= 0):
        return math.inf
    return float(np.sum(c * z ** (-e)))


def solve_separable(
    coef: ArrayLike,
    offset: ArrayLike,
    exponent: ArrayLike,
    total: float,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
) -> np.ndarray:
    """Minimise a separable sum of power laws under a total and box constraints, exactly.

    Solves ``min sum_i coef_i (x_i + offset_i)^(-exponent_i)`` s.t. ``sum_i x_i = total`` and
    ``lower_i <= x_i <= upper_i`` by water-filling on the KKT multiplier (see the module
    docstring). The result is the unique global minimiser (the problem is strictly convex).

    Args:
        coef: Positive coefficient per domain (array of length m; scalars broadcast).
        offset: Offset per domain, in the units of ``x`` (tokens or multipliers).
        exponent: Positive exponent per domain.
        total: The amount to distribute (same units as ``x``), positive.
        lower: Lower bound per domain (default 0). Must satisfy ``lower_i + offset_i >= 0``
            (at equality the objective is infinite at the bound, so the bound never binds).
        upper: Upper bound per domain (default ``inf``).

    Returns:
        ``x``, a float array of length m with ``sum(x) == total`` up to rounding.

    Raises:
        ValueError: for non-finite or non-positive ``coef``/``exponent``/``total``, bounds that
            cross, ``lower + offset < 0`` (objective undefined at the bound) or infeasible
            bounds (``sum(lower) > total`` or ``sum(upper) < total``).

    Example:
        >>> x = solve_separable([1.0, 1.0], [0.0, 0.0], [1.0, 1.0], 2.0)
        >>> [round(float(v), 6) for v in x]
        [1.0, 1.0]
        >>> x = solve_separable([1.0, 4.0], 0.0, 1.0, 3.0)
        >>> [round(float(v), 6) for v in x]
        [1.0, 2.0]
    """
    c = np.atleast_1d(np.asarray(coef, dtype=float))
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"coef must be a non-empty 1-D array (one entry per domain), got shape {c.shape}.")
    m = c.size
    o = _as_vector(offset, m, "offset", 0.0)
    e = _as_vector(exponent, m, "exponent", 1.0)
    lo = _as_vector(lower, m, "lower", 0.0)
    hi = _as_vector(upper, m, "upper", math.inf)
    total = float(total)

    if not math.isfinite(total) or total <= 0:
        raise ValueError(f"total must be a positive finite number, got {total!r}.")
    for name, arr in (("coef", c), ("exponent", e)):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be positive and finite for every domain, got {arr.tolist()}.")
    if not np.all(np.isfinite(o)):
        raise ValueError(f"offset must be finite, got {o.tolist()}.")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(np.isinf(lo)):
        raise ValueError(f"lower must be finite and upper must not be NaN, got lower={lo.tolist()}, upper={hi.tolist()}.")
    if np.any(lo > hi):
        bad = np.flatnonzero(lo > hi).tolist()
        raise ValueError(f"lower > upper for domain index(es) {bad}: lower={lo.tolist()}, upper={hi.tolist()}.")
    if np.any(lo + o < 0):
        bad = np.flatnonzero(lo + o < 0).tolist()
        raise ValueError(
            f"lower + offset must be >= 0 (the objective is undefined below x = -offset) for domain "
            f"index(es) {bad}: lower={lo[bad].tolist()}, offset={o[bad].tolist()}. Raise the lower bound."
        )
    slo, shi = float(np.sum(lo)), float(np.sum(hi))
    scale_tol = 1e-12 * max(total, abs(slo), 1.0)
    if slo > total + scale_tol:
        raise ValueError(
            f"Infeasible bounds: the lower bounds sum to {slo:.6g} > total {total:.6g}. Lower them or raise the total."
        )
    if shi < total - scale_tol:
        raise ValueError(
            f"Infeasible bounds: the upper bounds sum to {shi:.6g} < total {total:.6g}. Raise them or lower the total."
        )
    if slo >= total - scale_tol:
        return lo * (total / slo) if slo > 0 else lo
    if shi <= total + scale_tol:
        return hi * (total / shi)

    # Work in units of `total`: u = x / s, coef' = coef * s^-e, all in logs.
    s = total
    uo, ulo, uhi = o / s, lo / s, hi / s
    logk = np.log(c) + np.log(e) - e * math.log(s)  # log(coef' * exponent)
    ep1 = e + 1.0

    def alloc(loglam: float) -> np.ndarray:
        with np.errstate(over="ignore"):
            u = np.exp((logk - loglam) / ep1) - uo
        return np.clip(u, ulo, uhi)

    def gap(loglam: float) -> float:
        return float(np.sum(alloc(loglam))) - 1.0

    # At loglam >= max_i loglam_at_lower every domain sits at its lower bound (gap <= 0).
    # (lower + offset == 0 is allowed: the objective is infinite there, so the bound never binds.)
    with np.errstate(divide="ignore"):
        at_lower = logk - ep1 * np.log(np.maximum(ulo + uo, 0.0))
    hi_ll = float(np.max(at_lower[np.isfinite(at_lower)])) if np.any(np.isfinite(at_lower)) else float(np.max(logk))
    # At loglam <= every domain's "hits upper" level (or, unbounded, x_i >= 1) gap >= 0.
    cap = np.where(np.isfinite(uhi), uhi, 1.0 + np.maximum(ulo, 0.0))
    lo_ll = float(np.min(logk - ep1 * np.log(cap + uo)))
    lo_ll -= 1.0
    hi_ll += 1.0
    for _ in range(200):
        if gap(lo_ll) >= 0:
            break
        lo_ll -= 10.0
    for _ in range(200):
        if gap(hi_ll) <= 0:
            break
        hi_ll += 10.0
    loglam = brentq(gap, lo_ll, hi_ll, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    u = alloc(loglam)
    # Polish: distribute the (tiny) remaining gap over the free coordinates along the KKT path,
    # i.e. proportionally to du_i/dloglam = -(u_i + uo_i)/(e_i + 1).
    for _ in range(3):
        r = 1.0 - float(np.sum(u))
        if r == 0.0:
            break
        free = (u > ulo) & (u < uhi)
        if not np.any(free):
            break
        w = np.where(free, (u + uo) / ep1, 0.0)
        u = np.clip(u + r * w / np.sum(w), ulo, uhi)
    x = u * s
    # Coordinates at a bound get the bound exactly (u * s can round past it).
    x = np.where(u >= uhi, hi, np.where(u <= ulo, lo, x))
    return np.clip(x, lo, hi)


def solve_multipliers(
    a: ArrayLike,
    b: ArrayLike,
    p: ArrayLike | None = None,
    *,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
) -> np.ndarray:
    """Solve the AutoScale/DDO multiplier problem exactly.

    ``minimise sum_i (n_i + a_i)^(-b_i)`` over multipliers ``n_i`` of the base shares ``p_i``,
    subject to ``sum_i p_i n_i = 1`` (the total budget is unchanged; with a uniform base,
    ``sum_i n_i = m``) and ``lower_i <= n_i <= upper_i``. The KKT solution is
    ``n_i = clip((b_i / (lam p_i))^(1/(b_i+1)) - a_i, lower_i, upper_i)``; it is found by
    :func:`solve_separable` on tokens-per-budget ``x_i = p_i n_i`` (``coef_i = p_i^b_i``,
    ``offset_i = a_i p_i``).

    Args:
        a: Fitted offsets ``a_i`` (multiplier units).
        b: Fitted exponents ``b_i > 0``.
        p: Base shares (positive; normalised to sum 1). Default: uniform ``1/m``.
        lower: Lower bound on ``n_i`` (scalar or per domain, multiplier units). Default 0.
            The paper uses the smallest multiplier tested (0.2).
        upper: Upper bound on ``n_i`` (default ``inf``), e.g. unique tokens x epochs / base tokens.

    Returns:
        The optimal multipliers ``n`` (array of length m).

    Example:
        >>> n = solve_multipliers([1.0, 1.0], [1.0, 1.0])
        >>> [round(float(v), 6) for v in n]
        [1.0, 1.0]
    """
    av = np.atleast_1d(np.asarray(a, dtype=float))
    m = av.size
    bv = _as_vector(b, m, "b", 1.0)
    pv = _as_vector(p, m, "p", 1.0 / m)
    if not np.all(np.isfinite(pv)) or np.any(pv <= 0):
        raise ValueError(f"Base shares p must be positive and finite, got {pv.tolist()}.")
    pv = pv / pv.sum()
    lo = _as_vector(lower, m, "lower", 0.0)
    hi = _as_vector(upper, m, "upper", math.inf)
    if np.any(lo + av < 0):
        bad = np.flatnonzero(lo + av < 0).tolist()
        raise ValueError(
            f"lower + a must be >= 0 (the power law (n + a)^-b is undefined below n = -a) for domain index(es) "
            f"{bad}: lower={lo[bad].tolist()}, a={av[bad].tolist()}. Raise the lower bound."
        )
    if not np.all(np.isfinite(bv)) or np.any(bv <= 0):
        raise ValueError(
            f"Exponents b must be positive (a decreasing power law) for every domain, got {bv.tolist()}."
        )
    x = solve_separable(pv**bv, av * pv, bv, 1.0, lo * pv, hi * pv)
    return x / pv
