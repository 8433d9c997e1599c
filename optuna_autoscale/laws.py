"""Scaling-law fits: the paper's per-budget DDO power laws and our joint separable law.

Two fits live here.

**The paper's DDO fit** (:func:`fit_power_laws`). At one budget, a base run and runs that scale
a single domain's tokens by a multiplier ``x`` (the others unchanged) are fitted per domain by

    y(x) = (x + a)^(-b) + c,       x = domain tokens / base tokens,  y = objective / base objective.

With exactly three points per domain (the base and two multipliers) the law interpolates and
there can be two exact solutions. **Root rule:** as the authors' code does, the solver
(:func:`scipy.optimize.least_squares`, unbounded, Levenberg-Marquardt) starts from
``(a, b, c) = (1, 1, 1)`` and the root it converges to is taken. This reproduces the published
GPT-2 Large fits. With more points per domain the fit is bounded least squares
(``a > -min x``, ``b > 0``) from several starts, and the rms residual is reported.

**The joint separable law** (:func:`fit_separable`). All runs at all budgets are fitted together by

    L(N) = E_g + sum_i beta_i (N_i + N0_i)^(-gamma_i)        (N_i in tokens)

with one offset ``E_g`` per group (a group is one budget's design sharing one seed: common
random numbers, so ``E_g`` absorbs the shared seed noise). The law predicts loss differences at
any budget and its bounded optimum is solved directly at the target by
:func:`~optuna_autoscale.allocation.solve_separable`. Parameter uncertainty is quantified by a
Laplace (Gaussian) posterior over the log-parameters; :meth:`SeparableLaw.optimal_allocation`
with ``robust=True`` picks the mixture minimising the posterior expected loss and shrinks the
shift away from an anchor (the small-scale optimum) to what the data support.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
from typing import Any
import warnings

import numpy as np
from scipy.optimize import least_squares

from optuna_autoscale.allocation import solve_separable


__all__ = [
    "Observation",
    "PowerLaw",
    "DDOFit",
    "fit_power_laws",
    "SeparableLaw",
    "fit_separable",
    "DDOWarning",
]

Observation = tuple[Mapping[str, float], float]
"""``(allocation in tokens per domain, objective value)``."""

_RTOL = 1e-6
_FLAT_TOL = 1e-4  # relative change of the objective over the tested range below which a domain is "flat"


class DDOWarning(UserWarning):
    """A DDO fit is questionable (flat or wrong-way response, a fit that does not interpolate)."""


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """The paper's per-domain law ``y(x) = (x + a)^(-b) + c``.

    ``x`` is the domain's tokens over its base-run tokens, ``y`` the objective over the base
    run's objective.

    Example:
        >>> law = PowerLaw(a=1.0, b=1.0, c=0.5)
        >>> law(1.0)
        1.0
    """

    a: float
    b: float
    c: float

    def __call__(self, x: float | np.ndarray) -> Any:
        return (np.asarray(x, dtype=float) + self.a) ** (-self.b) + self.c if np.ndim(x) else float(
            (float(x) + self.a) ** (-self.b) + self.c
        )


def _check_allocation(alloc: Any, domains: tuple[str, ...], what: str) -> np.ndarray:
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


def _check_value(v: Any, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {v!r}.") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {v!r}; drop failed or NaN runs before fitting.")
    return f


def _bound_vector(
    bound: float | Mapping[str, float] | None, domains: tuple[str, ...], default: np.ndarray, name: str
) -> np.ndarray:
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


def _fit_three(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, bool]:
    """The authors' root: unbounded LM least squares from (1, 1, 1). Returns (params, ok)."""

    def res(t: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return (x + t[0]) ** (-t[1]) + t[2] - y

    try:
        sol = least_squares(res, np.ones(3), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=20000)
    except (ValueError, FloatingPointError):
        return np.ones(3), False
    t = sol.x
    r = res(t)
    ok = bool(
        np.all(np.isfinite(r))
        and np.max(np.abs(r)) <= 1e-9 * max(1.0, float(np.max(np.abs(y))))
        and t[1] > 0
        and np.min(x) + t[0] > 0
    )
    return t, ok


def _fit_bounded(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bounded least squares with a > -min x, b > 0, from several starts; best cost wins."""
    amin = -float(np.min(x)) + 1e-6

    def res(t: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = (x + t[0]) ** (-t[1]) + t[2] - y
        return np.where(np.isfinite(r), r, 1e6)

    lo = np.array([amin, 1e-6, -np.inf])
    hi = np.array([np.inf, 50.0, np.inf])
    best: np.ndarray | None = None
    best_cost = math.inf
    for a0, b0 in ((1.0, 1.0), (0.1, 0.5), (3.0, 2.0), (10.0, 1.0), (0.5, 3.0)):
        a0 = max(a0, amin + 1e-3)
        c0 = float(np.min(y)) - (float(np.max(x)) + a0) ** (-b0)
        try:
            sol = least_squares(res, [a0, b0, c0], bounds=(lo, hi), method="trf", xtol=1e-14, ftol=1e-14, gtol=1e-14,
                                max_nfev=5000)
        except ValueError:
            continue
        if sol.cost < best_cost:
            best_cost, best = float(sol.cost), sol.x
    assert best is not None
    return best


@dataclasses.dataclass(frozen=True)
class DDOFit:
    """The paper's DDO fit at one budget.

    Attributes:
        domains: Domain names, in the base allocation's order.
        base: The base allocation (tokens per domain).
        base_value: The base run's objective (mean over its replicates).
        params: Per-domain :class:`PowerLaw` in multiplier units.
        multipliers: Per domain, the multipliers tested (base 1.0 included), sorted.
        residuals: Per domain, the rms residual of the fit in units of ``y`` (relative
            objective); ``None`` when the law interpolates its points exactly.
        warnings: Human-readable warnings (flat or wrong-way responses, poor fits).
        noise: Standard deviation of the base replicates, relative to ``base_value`` (``None``
            without replicates).
    """

    domains: tuple[str, ...]
    base: dict[str, float]
    base_value: float
    params: dict[str, PowerLaw]
    multipliers: dict[str, tuple[float, ...]]
    residuals: dict[str, float | None]
    warnings: tuple[str, ...] = ()
    noise: float | None = None

    @property
    def total(self) -> float:
        """The base run's total tokens."""
        return float(sum(self.base.values()))

    def optimal_multipliers(
        self,
        *,
        lower: float | Mapping[str, float] | None = None,
        upper: float | Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """The paper's optimum over multipliers of the base shares.

        Minimises ``sum_i (n_i + a_i)^(-b_i)`` s.t. ``sum_i p_i n_i = 1`` (``p`` = base shares).

        Args:
            lower: Lower bound on the multipliers (scalar or per domain). Default: the smallest
                multiplier tested for each domain, so the fit is never extrapolated below what
                was measured (the paper's rule).
            upper: Upper bound on the multipliers (default: none).

        Returns:
            Domain -> optimal multiplier.
        """
        b = np.array([self.base[d] for d in self.domains])
        tot = b.sum()
        lo = _bound_vector(lower, self.domains, np.array([min(self.multipliers[d]) for d in self.domains]), "lower")
        hi = _bound_vector(upper, self.domains, np.full(len(self.domains), np.inf), "upper")
        x = self._solve(tot, lo * b, hi * b)
        return {d: float(v) for d, v in zip(self.domains, x / b)}

    def optimal_allocation(
        self,
        total: float | None = None,
        *,
        lower: float | Mapping[str, float] | None = None,
        upper: float | Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """The optimum in tokens per domain.

        Args:
            total: Total tokens (default: the base run's total). A total other than the base's
                extrapolates the per-budget laws; prefer :mod:`optuna_autoscale.extrapolation`
                or the joint law for other budgets.
            lower: Lower bound in tokens (scalar or per domain). Default: smallest multiplier
                tested times the base tokens.
            upper: Upper bound in tokens (default: none).

        Returns:
            Domain -> tokens, summing to ``total``.
        """
        b = np.array([self.base[d] for d in self.domains])
        tot = float(b.sum() if total is None else _check_value(total, "total"))
        if tot <= 0:
            raise ValueError(f"total must be > 0 tokens, got {total!r}.")
        lo = _bound_vector(lower, self.domains, np.array([min(self.multipliers[d]) for d in self.domains]) * b, "lower")
        hi = _bound_vector(upper, self.domains, np.full(len(self.domains), np.inf), "upper")
        x = self._solve(tot, lo, hi)
        return {d: float(v) for d, v in zip(self.domains, x)}

    def _solve(self, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        b = np.array([self.base[d] for d in self.domains])
        a = np.array([self.params[d].a for d in self.domains])
        e = np.array([self.params[d].b for d in self.domains])
        # (x/b_i + a_i)^-e_i in units of u = x / total: coef = (b_i/total)^e_i, offset = a_i b_i / total.
        r = b / total
        u = solve_separable(r**e, a * r, e, 1.0, lo / total, hi / total)
        return u * total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "domains": list(self.domains),
            "base": dict(self.base),
            "base_value": self.base_value,
            "params": {d: dataclasses.asdict(p) for d, p in self.params.items()},
            "multipliers": {d: list(v) for d, v in self.multipliers.items()},
            "residuals": dict(self.residuals),
            "warnings": list(self.warnings),
            "noise": self.noise,
        }


def fit_power_laws(observations: Sequence[Observation], base: Mapping[str, float]) -> DDOFit:
    """Fit the paper's per-domain power laws to the DDO runs of one budget.

    Args:
        observations: ``(allocation, objective)`` pairs; allocations map every domain to tokens.
            One (or more, averaged) must equal ``base`` (rtol 1e-6); every other must differ
            from ``base`` in exactly one domain. Replicates of a point are averaged.
        base: The base allocation (tokens per domain, all > 0).

    Returns:
        A :class:`DDOFit`. The three-point rule: start from ``(a, b, c) = (1, 1, 1)``
        (the authors' root). With more points: bounded least squares and rms residuals.

    Raises:
        ValueError: no base run, an observation that changes several domains (named), a domain
            with fewer than two distinct multipliers besides the base, or bad values.

    Example:
        >>> base = {"a": 1e6, "b": 1e6}
        >>> f = lambda na, nb: (na / 1e6 + 2) ** -1.5 + (nb / 1e6 + 3) ** -1.0
        >>> obs = [(base, f(1e6, 1e6))]
        >>> for x in (0.2, 3.0):
        ...     obs += [({"a": x * 1e6, "b": 1e6}, f(x * 1e6, 1e6)), ({"a": 1e6, "b": x * 1e6}, f(1e6, x * 1e6))]
        >>> fit = fit_power_laws(obs, base)
        >>> sorted(fit.optimal_multipliers())
        ['a', 'b']
    """
    if not isinstance(base, Mapping) or len(base) < 2:
        raise ValueError("base must be a mapping with at least 2 domains -> tokens.")
    domains = tuple(base)
    b = _check_allocation(base, domains, "base")
    if np.any(b <= 0):
        raise ValueError(f"Every domain needs base tokens > 0 (multipliers are relative to them), got {dict(base)!r}.")
    if isinstance(observations, (str, bytes)) or not isinstance(observations, Sequence):
        raise TypeError("observations must be a sequence of (allocation, objective) pairs.")
    base_vals: list[float] = []
    points: dict[tuple[int, float], list[float]] = {}
    for k, obs in enumerate(observations):
        if not isinstance(obs, (tuple, list)) or len(obs) < 2:
            raise TypeError(f"observation {k} must be an (allocation, objective) pair, got {obs!r}.")
        alloc, val = obs[0], obs[1]
        x = _check_allocation(alloc, domains, f"observation {k}")
        v = _check_value(val, f"observation {k}'s objective")
        changed = np.flatnonzero(~np.isclose(x, b, rtol=_RTOL, atol=0.0))
        if changed.size == 0:
            base_vals.append(v)
        elif changed.size == 1:
            i = int(changed[0])
            mult = float(x[i] / b[i])
            key = (i, round(mult, 9))
            points.setdefault(key, []).append(v)
        else:
            raise ValueError(
                f"observation {k} ({dict(alloc)!r}) changes {changed.size} domains "
                f"({[domains[i] for i in changed]!r}) relative to the base; a DDO design changes exactly one "
                "domain per run. Fit each budget's design separately and leave other runs out."
            )
    if not base_vals:
        raise ValueError(f"No observation equals the base allocation {dict(base)!r} (rtol 1e-6); add the base run.")
    base_value = float(np.mean(base_vals))
    if base_value == 0:
        raise ValueError("The base run's objective is 0; the relative objective y = value / base is undefined.")
    noise = float(np.std(base_vals, ddof=1) / abs(base_value)) if len(base_vals) > 1 else None

    params: dict[str, PowerLaw] = {}
    mults: dict[str, tuple[float, ...]] = {}
    resid: dict[str, float | None] = {}
    warns: list[str] = []
    for i, d in enumerate(domains):
        xs = [1.0] + [key[1] for key in points if key[0] == i]
        ys = [1.0] + [float(np.mean(points[key])) / base_value for key in points if key[0] == i]
        if len(xs) < 3:
            raise ValueError(
                f"Domain {d!r} has {len(xs) - 1} tested multiplier(s) besides the base; the power law "
                "(x + a)^-b + c needs at least two (e.g. 0.2 and 3)."
            )
        order = np.argsort(xs)
        x = np.array(xs)[order]
        y = np.array(ys)[order]
        mults[d] = tuple(float(v) for v in x)
        span = float(y[0] - y[-1])  # loss at the smallest minus at the largest multiplier
        slope = float(np.polyfit(np.log(x), y, 1)[0])
        if abs(span) < _FLAT_TOL and float(np.ptp(y)) < _FLAT_TOL:
            warns.append(
                f"Domain {d!r}: flat response (objective changes by {float(np.ptp(y)):.2e} relative over multipliers "
                f"{mults[d]}); its fitted law is unreliable and the optimiser will treat it as nearly irrelevant."
            )
        elif span <= 0 or slope >= 0:
            warns.append(
                f"Domain {d!r}: wrong-way response (more of this domain gave a higher objective: y = "
                f"{np.round(y, 5).tolist()} at multipliers {mults[d]}); the fit is constrained to a decreasing law, so "
                "the optimiser will push this domain to its lower bound. Check the runs or add replicates."
            )
        if len(x) == 3:
            t, ok = _fit_three(x, y)
            if ok:
                params[d] = PowerLaw(float(t[0]), float(t[1]), float(t[2]))
                resid[d] = None
                continue
            t = _fit_bounded(x, y)
            r = (x + t[0]) ** (-t[1]) + t[2] - y
            rms = float(np.sqrt(np.mean(r**2)))
            if not any(w.startswith(f"Domain {d!r}:") for w in warns):
                warns.append(
                    f"Domain {d!r}: no decreasing power law interpolates y = {np.round(y, 5).tolist()} at multipliers "
                    f"{mults[d]} (the response is not convex-decreasing); used the bounded least-squares fit "
                    f"(rms residual {rms:.2e})."
                )
        else:
            t = _fit_bounded(x, y)
            r = (x + t[0]) ** (-t[1]) + t[2] - y
            rms = float(np.sqrt(np.mean(r**2)))
        params[d] = PowerLaw(float(t[0]), float(t[1]), float(t[2]))
        resid[d] = rms
    for w in warns:
        warnings.warn(w, DDOWarning, stacklevel=2)
    return DDOFit(
        domains=domains,
        base={d: float(v) for d, v in zip(domains, b)},
        base_value=base_value,
        params=params,
        multipliers=mults,
        residuals=resid,
        warnings=tuple(warns),
        noise=noise,
    )
