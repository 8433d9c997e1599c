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
Laplace (Gaussian) posterior over the log-parameters (weak priors on the exponents and offsets);
:meth:`SeparableLaw.optimal_allocation` with ``robust=True`` shrinks the shift away from an anchor
(the small-scale optimum) to what that posterior supports.
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


_DDO_WARNED: set[str] = set()


def _ddo_action(text: str) -> str:
    """The action of the first warnings filter that matches a DDOWarning with ``text`` ("default" if none)."""
    for action, msg, cat, mod, lineno in warnings.filters:
        if issubclass(DDOWarning, cat) and (msg is None or msg.match(text)) and (mod is None or mod.match("optuna_autoscale.laws")) and lineno == 0:
            return action
    return "default"


def _warn_ddo(notes: Sequence[str], total: float) -> None:
    """Emit one :class:`DDOWarning` for a whole fit: its notes in words, without a source line.

    ``warnings.warn`` would print the caller's source line under every note (12 times in the
    example run). One warning per fit, located nowhere (so no source line is shown), and
    deduplicated per process like any "default" warning: the same fit warns once. The notes
    themselves stay in :attr:`DDOFit.warnings` (and ``AutoScaleResult.warnings``).
    """
    n = len(notes)
    tokens = f"{total:.3g}".replace("e+0", "e").replace("e+", "e")
    head = f"DDO fit at {tokens} tokens: {n} questionable domain{'s' if n != 1 else ''}"
    text = head + ":\n" + "\n".join(f"  - {w}" for w in notes)
    # Python's own once-per-location registry is reset whenever any code changes the filters (the
    # fits do, in catch_warnings blocks), so the same fit would warn on every refit; keep our own.
    if text in _DDO_WARNED and _ddo_action(text) not in ("always", "error"):
        return
    _DDO_WARNED.add(text)
    warnings.warn_explicit(text, DDOWarning, filename="optuna-autoscale", lineno=0, module="optuna_autoscale.laws")


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


def _pl_jac(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        z = x + t[0]
        p = z ** (-t[1])
        j = np.column_stack([-t[1] * p / z, -p * np.log(z), np.ones_like(x)])
    return np.where(np.isfinite(j), j, 0.0)


def _fit_three(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, bool]:
    """The authors' root: unbounded LM least squares from (1, 1, 1). Returns (params, ok)."""

    def res(t: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = (x + t[0]) ** (-t[1]) + t[2] - y
        return np.where(np.isfinite(r), r, 1e6)

    try:
        sol = least_squares(res, np.ones(3), jac=lambda t: _pl_jac(x, t), method="lm", xtol=1e-14, ftol=1e-14,
                            gtol=1e-14, max_nfev=400)
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

    def jac(t: np.ndarray) -> np.ndarray:
        return _pl_jac(x, t)

    lo = np.array([amin, 1e-6, -np.inf])
    hi = np.array([1e4, 50.0, np.inf])
    best: np.ndarray | None = None
    best_cost = math.inf
    starts = []
    t_lm, _ = _fit_three(x, y)  # the unbounded (authors') solution, if it is admissible
    if np.all(np.isfinite(t_lm)) and lo[0] < t_lm[0] < hi[0] and lo[1] < t_lm[1] < hi[1]:
        starts.append(tuple(t_lm))
    for a0, b0 in ((1.0, 1.0), (0.1, 0.5), (5.0, 2.0)):
        a0 = max(a0, amin + 1e-3)
        starts.append((a0, b0, float(np.min(y)) - (float(np.max(x)) + a0) ** (-b0)))
    for start in starts:
        try:
            sol = least_squares(res, start, jac=jac, bounds=(lo, hi), method="trf", xtol=1e-12, ftol=1e-13,
                                gtol=1e-12, max_nfev=200)
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
        >>> f = lambda na, nb: 3.0 * (1 + (na / 1e6 + 2) ** -1.5 - 3**-1.5 + (nb / 1e6 + 3) ** -1.0 - 4**-1.0)
        >>> obs = [(base, f(1e6, 1e6))]
        >>> for x in (0.2, 3.0):
        ...     obs += [({"a": x * 1e6, "b": 1e6}, f(x * 1e6, 1e6)), ({"a": 1e6, "b": x * 1e6}, f(1e6, x * 1e6))]
        >>> fit = fit_power_laws(obs, base)
        >>> round(fit.params["a"].a, 6), round(fit.params["a"].b, 6)
        (2.0, 1.5)
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
    if warns:
        _warn_ddo(warns, float(b.sum()))
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


# =====================================================================================
# The joint separable law
# =====================================================================================

JointObservation = tuple[Mapping[str, float], float, str]
"""``(allocation in tokens per domain, objective value, group key)``."""

_PRIOR_LOG_GAMMA = (math.log(0.5), 0.7)  # prior on log gamma: mean, sd (data exponents of LM scaling laws)
_PRIOR_LOG_N0 = (math.log(2.0), 1.5)  # prior on log(N0 / scale), scale = mean base share: mean, sd
_BOUNDS = {"lb": (-60.0, 60.0), "lu": (math.log(1e-5), math.log(1e3)), "lg": (math.log(0.03), math.log(3.0))}
DEFAULT_RISK = 1.0
"""Default risk aversion of the robust allocation (mean + risk * sd of the loss change), chosen with
``benchmarks/simulated_extrapolation.py`` (see ``benchmarks/RESULTS.md``)."""


@dataclasses.dataclass(frozen=True)
class _Model:
    """Internal parameterisation: theta = [log beta' (m), log u0 (m), log gamma (m or 1)], u = N / scale."""

    m: int
    shared_gamma: bool

    @property
    def n_params(self) -> int:
        return 2 * self.m + (1 if self.shared_gamma else self.m)

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """theta (..., p) -> beta' (..., m), u0 (..., m), gamma (..., m)."""
        m = self.m
        lb, lu, lg = theta[..., :m], theta[..., m : 2 * m], theta[..., 2 * m :]
        if self.shared_gamma:
            lg = np.broadcast_to(lg, lb.shape)
        return np.exp(lb), np.exp(lu), np.exp(lg)

    def f_and_jac(self, theta: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        beta, u0, g = self.unpack(theta)
        z = u + u0  # (n, m)
        t = beta * z ** (-g)
        f = t.sum(axis=1)
        jb = t
        ju = -g * t * u0 / z
        jg = -t * np.log(z) * g
        if self.shared_gamma:
            jg = jg.sum(axis=1, keepdims=True)
        return f, np.hstack([jb, ju, jg])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.m
        ng = 1 if self.shared_gamma else m
        lo = np.r_[np.full(m, _BOUNDS["lb"][0]), np.full(m, _BOUNDS["lu"][0]), np.full(ng, _BOUNDS["lg"][0])]
        hi = np.r_[np.full(m, _BOUNDS["lb"][1]), np.full(m, _BOUNDS["lu"][1]), np.full(ng, _BOUNDS["lg"][1])]
        return lo, hi

    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Prior mean and precision (0 = flat) per parameter."""
        m = self.m
        ng = 1 if self.shared_gamma else m
        mu = np.r_[np.zeros(m), np.full(m, _PRIOR_LOG_N0[0]), np.full(ng, _PRIOR_LOG_GAMMA[0])]
        prec = np.r_[np.zeros(m), np.full(m, _PRIOR_LOG_N0[1] ** -2), np.full(ng, _PRIOR_LOG_GAMMA[1] ** -2)]
        return mu, prec


def _center(v: np.ndarray, gidx: np.ndarray, ng: int) -> np.ndarray:
    """Subtract group means (rows of v)."""
    if ng == 1:
        return v - v.mean(axis=0)
    out = np.array(v, dtype=float, copy=True)
    for g in range(ng):
        rows = gidx == g
        out[rows] -= v[rows].mean(axis=0)
    return out


def _group_design(
    x: np.ndarray, groups: Sequence[str], domains: Sequence[str]
) -> tuple[list[str], np.ndarray, dict[str, float], float]:
    """A joint fit's groups, each run's group index, each group's nominal budget, and the token scale.

    A group's nominal budget is its median run's total tokens; the scale is the geometric mean over
    groups of that budget per domain, so the fitted parameters are of order one.

    Raises:
        ValueError: a domain never changes within any group (its effect would be confounded with
            the group offsets).
    """
    gnames = list(dict.fromkeys(groups))
    gidx = np.array([gnames.index(g) for g in groups])
    # Each domain must vary within some group, else its law is not identified.
    varies = np.zeros(x.shape[1], dtype=bool)
    for g in range(len(gnames)):
        xs = x[gidx == g]
        if len(xs) > 1:
            varies |= np.ptp(xs, axis=0) > 1e-9 * np.maximum(np.abs(xs).max(axis=0), 1.0)
    if not np.all(varies):
        raise ValueError(
            f"Domains {[d for d, v in zip(domains, varies) if not v]!r} never change within a group, so their "
            "effect cannot be separated from the group offsets; add runs that vary them (a DDO design)."
        )
    budgets = {g: float(np.median(x[gidx == i].sum(axis=1))) for i, g in enumerate(gnames)}
    scale = float(np.exp(np.mean(np.log(np.array(list(budgets.values())) / x.shape[1]))))
    return gnames, gidx, budgets, scale


class _MapProblem:
    """A joint law's MAP fit as bounded least squares; the separable and per-domain laws share it.

    The residuals are the model's errors with each group's mean removed (the per-group offsets
    profiled out), then the Gaussian priors as extra residuals ``sigma * (theta - mu) / tau`` (MAP
    under Gaussian noise). ``sigma`` starts as a tenth of the data's sd; :meth:`polish`
    re-estimates it from the residuals and refits.

    ``model`` needs ``f_and_jac(theta, u) -> (values, jacobian)``, ``prior() -> (mu, precision)``
    and ``bounds() -> (lower, upper)``; ``prior`` replaces the model's prior (e.g. a pooled one,
    :func:`_pooled_prior`). The Laplace covariance and the effective residual dof
    (:meth:`noise_sd`) use whichever prior the fit used.
    """

    def __init__(
        self,
        model: Any,
        u: np.ndarray,
        y: np.ndarray,
        gidx: np.ndarray,
        ng: int,
        prior: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.model, self.u, self.y, self.gidx, self.ng = model, u, y, gidx, ng
        self.yc = _center(y, gidx, ng)
        self.ysd = float(np.std(self.yc)) or 1.0
        self.mu, self.prec = model.prior() if prior is None else (np.asarray(prior[0]), np.asarray(prior[1]))
        self.lo, self.hi = model.bounds()
        self.sigma = 0.1 * self.ysd

    def resid(self, theta: np.ndarray) -> np.ndarray:
        f, _ = self.model.f_and_jac(theta, self.u)
        return np.r_[_center(f - self.y, self.gidx, self.ng), self.sigma * np.sqrt(self.prec) * (theta - self.mu)]

    def jac(self, theta: np.ndarray) -> np.ndarray:
        _, j = self.model.f_and_jac(theta, self.u)
        return np.vstack([_center(j, self.gidx, self.ng), np.diag(self.sigma * np.sqrt(self.prec))])

    def solve(self, start: np.ndarray, nfev: int, *, coarse: bool = False) -> Any:
        """Bounded trust-region least squares from ``start``.

        ``coarse`` stops at relative cost changes of 1e-9 instead of 1e-12: for a first pass
        whose optimum only seeds a refit (which converges tightly), it saves the last creeping
        steps.
        """
        tol = (1e-7, 1e-9, 1e-9) if coarse else (1e-10, 1e-12, 1e-12)
        with np.errstate(all="ignore"):
            return least_squares(self.resid, start, jac=self.jac, bounds=(self.lo, self.hi), method="trf",
                                 xtol=tol[0], ftol=tol[1], gtol=tol[2], max_nfev=nfev)

    def polish(self, theta: np.ndarray, noise: float | None, dof: int, rounds: int, *, coarse: bool = False) -> np.ndarray:
        """Re-estimate ``sigma`` (or take the known ``noise``) and refit, ``rounds`` times (``coarse``: see :meth:`solve`)."""
        for _ in range(rounds):
            f0, _ = self.model.f_and_jac(theta, self.u)
            r0 = _center(f0 - self.y, self.gidx, self.ng)
            if noise is not None:
                self.sigma = max(float(noise), 1e-12 * self.ysd)
            else:
                self.sigma = max(math.sqrt(float(r0 @ r0) / max(dof, 1)), 1e-9 * self.ysd)
            theta = self.solve(theta, 200, coarse=coarse).x
        return theta

    def noise_sd(self, a_mat: np.ndarray, rss: float, noise: float | None, dof: int) -> float | None:
        """The residual noise sd: ``noise`` if known, else the RSS over the effective residual dof.

        The dof count the priors' shrinkage: runs - groups - tr(hat matrix), not n - p.
        """
        if noise is not None:
            return float(noise)
        if dof <= 0:
            return None
        p = a_mat.shape[0]
        reg = a_mat + np.diag(self.prec) * self.sigma**2
        p_eff = float(np.trace(np.linalg.solve(reg, a_mat))) if np.all(np.isfinite(reg)) else float(p)
        return math.sqrt(rss / max(len(self.y) - self.ng - p_eff, 1.0))


POOL_SD_FLOOR = 0.1
"""Smallest pooling sd ``pool=\"auto\"`` estimates (log units)."""


def _pooled_prior(
    values: np.ndarray, variances: np.ndarray | None, base: tuple[float, float], pool: float | str
) -> tuple[float, float]:
    """Partial pooling of one log-parameter across domains (empirical Bayes): the prior each domain gets.

    Hierarchical model: ``theta_k ~ N(mu, tau^2)`` for the domains ``k``, ``mu ~ N(base)`` (the
    fixed prior's mean and sd). ``values`` are the per-domain estimates of a fit under the fixed
    prior and ``variances`` their posterior variances (``None``: unknown, taken as 0). ``mu`` is
    its posterior mean given those estimates (weights ``1 / (tau^2 + variance_k)``).

    ``pool`` a number: ``tau = pool``. ``pool="auto"``: ``tau`` is the sd of the estimates
    themselves, floored at :data:`POOL_SD_FLOOR` and capped at the fixed prior's sd, and the
    estimates are weighted equally (``variances`` ignored). Their spread includes their noise,
    so this pools less than the method-of-moments spread ``sqrt(var(values) -
    mean(variances))``, which measured worse (it hits the floor at low SNR, where the fixed
    prior has already shrunk the estimates; ``benchmarks/RESULTS.md``).

    Returns:
        ``(mu, sd)`` with ``sd = sqrt(tau^2 + var(mu))``: the pooled prior of each domain,
        including the common mean's own uncertainty, used in the MAP refit and its Laplace
        covariance.
    """
    v = np.asarray(values, dtype=float)
    var = np.zeros_like(v) if variances is None else np.maximum(np.asarray(variances, dtype=float), 0.0)
    mu0, s0 = base
    if isinstance(pool, str):
        if pool != "auto":
            raise ValueError(f"pool must be a positive sd, None or 'auto', got {pool!r}.")
        var = np.zeros_like(v)
        tau = min(max(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, POOL_SD_FLOOR), s0)
    else:
        tau = float(pool)
        if not math.isfinite(tau) or tau <= 0:
            raise ValueError(f"pool must be a positive sd, None or 'auto', got {pool!r}.")
    wts = 1.0 / (tau**2 + var)
    prec_mu = float(wts.sum()) + s0**-2
    mu = (float(wts @ v) + mu0 / s0**2) / prec_mu
    return mu, math.sqrt(tau**2 + 1.0 / prec_mu)


def _project_box_total(v: np.ndarray, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Scale ``v`` to ``total`` and, if that breaks the bounds, move it (Euclidean) into them."""
    x = v * (total / v.sum())
    if np.all(x >= lo) and np.all(x <= hi):
        return x

    def s(tau: float) -> float:
        return float(np.clip(x - tau, lo, hi).sum())

    a = float(np.min(x - np.where(np.isfinite(hi), hi, x + total))) - 1.0
    b = float(np.max(x - lo)) + 1.0
    for _ in range(200):
        mid = 0.5 * (a + b)
        if s(mid) > total:
            a = mid
        else:
            b = mid
    return np.clip(x - 0.5 * (a + b), lo, hi)


class _RobustAllocator:
    """Bounded optimum and robust (lower-confidence-bound) shrinkage shared by the joint laws.

    A subclass provides ``domains``, ``budgets``, ``risk``, :meth:`_point` (the law's exact
    bounded optimum at a total), :meth:`_change` (posterior mean and sd of the loss change from
    the first of several allocations, linearised) and :meth:`_has_uncertainty`.
    """

    domains: tuple[str, ...]
    budgets: dict[str, float]
    risk: float
    _fit_name = "fit_separable"

    def _vec(self, allocation: Mapping[str, float]) -> np.ndarray:
        return _check_allocation(allocation, self.domains, "allocation")

    def _point(self, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _change(self, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _has_uncertainty(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _bounds(
        self, total: float, lower: float | Mapping[str, float] | None, upper: float | Mapping[str, float] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = len(self.domains)
        lo = _bound_vector(lower, self.domains, np.zeros(m), "lower")
        hi = _bound_vector(upper, self.domains, np.full(m, np.inf), "upper")
        if np.any(~np.isfinite(lo)) or np.any(lo < 0) or np.any(np.isnan(hi)):
            raise ValueError(f"lower must be finite and >= 0 tokens, upper not NaN; got lower={lo}, upper={hi}.")
        if np.any(lo > hi):
            raise ValueError(f"lower > upper for {[d for d, a, b in zip(self.domains, lo, hi) if a > b]!r}.")
        if lo.sum() > total * (1 + 1e-12):
            raise ValueError(
                f"Infeasible bounds: the lower bounds sum to {lo.sum():.6g} tokens > total {total:.6g}; lower them."
            )
        if hi.sum() < total * (1 - 1e-12):
            raise ValueError(
                f"Infeasible bounds: the upper bounds sum to {hi.sum():.6g} tokens < total {total:.6g}; raise them."
            )
        return lo, hi

    def _robust_optimum(
        self,
        total: float,
        lower: float | Mapping[str, float] | None,
        upper: float | Mapping[str, float] | None,
        robust: bool,
        anchor: Mapping[str, float] | None,
        risk: float | None,
    ) -> dict[str, float]:
        """The point optimum, or (``robust``) the LCB step from the anchor toward it; see SeparableLaw."""
        total = _check_value(total, "total")
        if total <= 0:
            raise ValueError(f"total must be > 0 tokens, got {total!r}.")
        lo, hi = self._bounds(total, lower, upper)
        point = self._point(total, lo, hi)
        if robust and not self._has_uncertainty():
            warnings.warn(
                "The joint law has no noise estimate (no spare degree of freedom and no noise= given), so the "
                "robust allocation cannot weigh the evidence; returning the law's point optimum. Add replicates, "
                f"multipliers or a budget, or pass noise= (e.g. the seed-to-seed sd of base runs) to {self._fit_name}.",
                UserWarning,
                stacklevel=3,
            )
        if not robust or not self._has_uncertainty():
            return dict(zip(self.domains, point.tolist()))
        kappa = self.risk if risk is None else float(risk)
        if not math.isfinite(kappa) or kappa < 0:
            raise ValueError(f"risk must be a finite number >= 0, got {risk!r}.")
        if anchor is None:
            bmax = max(self.budgets.values())
            lo_b = np.minimum(lo * bmax / total, bmax / len(self.domains))
            a_vec = self._point(bmax, lo_b, np.full(len(self.domains), np.inf))
        else:
            a_vec = self._vec(anchor)
            if a_vec.sum() <= 0:
                raise ValueError("anchor must have a positive total.")
        a_vec = _project_box_total(a_vec, total, lo, hi)
        best = self._lcb_path(a_vec, point, kappa)
        best = np.clip(best, lo, hi)
        best *= total / best.sum()
        return dict(zip(self.domains, best.tolist()))

    def _lcb_path(self, a_vec: np.ndarray, b_vec: np.ndarray, kappa: float) -> np.ndarray:
        """On A + t (B - A): minimise the linearised posterior mean + kappa sd of the loss change from A."""
        ts = np.linspace(0.0, 1.0, 41)
        cands = a_vec[None, :] + ts[:, None] * (b_vec - a_vec)[None, :]
        d, sd = self._change(cands)
        return cands[int(np.argmin(d + kappa * sd))]


@dataclasses.dataclass(frozen=True)
class SeparableLaw(_RobustAllocator):
    """A joint separable scaling law ``L(N) = E_g + sum_i beta_i (N_i + N0_i)^(-gamma_i)``.

    Tokens ``N_i`` are absolute. One offset ``E_g`` per group (a budget's design sharing one
    seed) absorbs the shared seed noise, so the law predicts loss *differences* between mixtures
    at any budget; absolute losses are predicted up to the offset.

    Attributes:
        domains: Domain names.
        params: Per domain ``{"beta", "n0", "gamma"}`` (``n0`` in tokens, ``beta`` in loss x tokens^gamma).
        offsets: ``E_g`` per group key.
        noise: Residual standard deviation (loss units); ``None`` when the fit has no spare degree of
            freedom (and no noise was given to :func:`fit_separable`).
        stderr: Per-parameter standard errors from the Jacobian (``nan`` where not identifiable),
            ``None`` without a noise estimate.
        scale: Internal token unit (tokens).
        budgets: Nominal budget (median total tokens) per group.
        shared_gamma: Whether one exponent is shared by all domains.
        n_obs: Number of observations fitted.
        dof: Spare degrees of freedom (observations minus parameters minus offsets).
        risk: Default risk aversion of the robust allocation (posterior sds of loss change).
        theta: The fitted internal log-parameters ``[log beta', log N0/scale, log gamma]``.
        samples: ``n_bootstrap`` draws of ``theta`` from the Laplace posterior (for uncertainty
            bands; ``None`` without a noise estimate).
        covariance: Laplace posterior covariance of ``theta`` (``None`` without a noise estimate).
    """

    domains: tuple[str, ...]
    params: dict[str, dict[str, float]]
    offsets: dict[str, float]
    noise: float | None
    stderr: dict[str, dict[str, float]] | None
    scale: float
    budgets: dict[str, float]
    shared_gamma: bool = False
    n_obs: int = 0
    dof: int = 0
    risk: float = DEFAULT_RISK
    theta: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    samples: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    covariance: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    # ----------------------------------------------------------------- evaluation
    @property
    def _model(self) -> _Model:
        return _Model(len(self.domains), self.shared_gamma)

    def predict(self, allocation: Mapping[str, float], group: str | None = None) -> float:
        """Predicted objective of an allocation (tokens per domain).

        Args:
            allocation: Domain -> tokens.
            group: The group whose offset ``E_g`` to use; ``None`` uses the mean offset.

        Returns:
            The predicted objective (absolute up to the offset; differences are what the law knows).
        """
        x = self._vec(allocation)
        if group is None:
            e = float(np.mean(list(self.offsets.values())))
        else:
            if str(group) not in self.offsets:
                raise ValueError(f"Unknown group {group!r}; the groups are {list(self.offsets)!r}.")
            e = self.offsets[str(group)]
        p = self.params
        return e + float(
            sum(p[d]["beta"] * (xi + p[d]["n0"]) ** (-p[d]["gamma"]) for d, xi in zip(self.domains, x))
        )

    def _arrays(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._model.unpack(theta)

    def _point_optimum(self, theta: np.ndarray, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        beta, u0, g = self._arrays(theta)
        s = total / self.scale
        # in units of the total: coef = beta' * s^-g, offset = u0 / s
        return solve_separable(beta * s ** (-g), u0 / s, g, 1.0, lo / total, hi / total) * total

    def optimal_allocation(
        self,
        total: float,
        lower: float | Mapping[str, float] | None = None,
        upper: float | Mapping[str, float] | None = None,
        *,
        robust: bool = True,
        anchor: Mapping[str, float] | None = None,
        risk: float | None = None,
    ) -> dict[str, float]:
        """The law's optimal allocation at a total of ``total`` tokens, solved directly there.

        With ``robust=False`` this is ``P``, the exact bounded optimum of the fitted law
        (:func:`~optuna_autoscale.allocation.solve_separable`).

        With ``robust=True`` (default) the shift away from an anchor ``A`` is shrunk to what the
        data support. ``A`` is ``anchor`` rescaled to ``total`` (direct transfer of the
        small-scale optimum; :class:`~optuna_autoscale.results.AutoScaleResult` passes the
        largest budget's DDO optimum), by default the law's own optimum at its largest fitted
        budget, rescaled. Along ``A + t (P - A)``, ``t`` in [0, 1], it picks the ``t``
        minimising ``E[dL(t)] + risk * sd[dL(t)]``, where ``dL(t)`` is the loss change from
        ``A`` at the target under the Laplace posterior of the law's parameters (linearised:
        mean and sd from the parameter covariance; :attr:`covariance`). ``t = 0`` has
        ``dL = 0``, so the choice is never predicted to be worse than the anchor, and it moves
        only as far as the expected gain outweighs ``risk`` standard deviations. With no noise
        the covariance vanishes and the result is ``P``. Without a noise estimate (no spare
        degree of freedom and no ``noise=`` given to :func:`fit_separable`) it warns and
        returns ``P``.

        (Choosing the expected-loss optimum over posterior samples was tried and measured
        worse in ``benchmarks/simulated_extrapolation.py``: with about 20 parameters the
        Laplace samples wander into regions the data exclude and importance re-weighting
        degenerates to a handful of samples.)

        Args:
            total: Total tokens at the target budget.
            lower: Lower bounds in tokens (scalar or per domain; default 0).
            upper: Upper bounds in tokens (default none), e.g. unique tokens x epochs.
            robust: Shrink toward the anchor as above.
            anchor: Allocation (tokens or weights; only its shares matter) to shrink toward.
            risk: Risk aversion (default :attr:`risk`, set by :func:`fit_separable`).

        Returns:
            Domain -> tokens, summing to ``total``.

        Raises:
            ValueError: for a non-positive total, infeasible bounds or a bad ``risk``/``anchor``.
        """
        return self._robust_optimum(total, lower, upper, robust, anchor, risk)

    def _point(self, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return self._point_optimum(np.asarray(self.theta, dtype=float), total, lo, hi)

    def _has_uncertainty(self) -> bool:
        return self.covariance is not None

    def _change(self, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linearised posterior mean and sd of the loss change from ``cands[0]`` (tokens, rows)."""
        theta = np.asarray(self.theta, dtype=float)
        f, j = self._model.f_and_jac(theta, cands / self.scale)
        d = f - f[0]
        g = j - j[0]
        cov = self.covariance if self.covariance is not None else np.zeros((len(theta), len(theta)))
        sd = np.sqrt(np.maximum(np.einsum("tp,pq,tq->t", g, cov, g), 0.0))
        return d, sd

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (posterior samples omitted)."""
        return {
            "domains": list(self.domains),
            "params": {d: dict(v) for d, v in self.params.items()},
            "offsets": dict(self.offsets),
            "noise": self.noise,
            "stderr": None if self.stderr is None else {d: dict(v) for d, v in self.stderr.items()},
            "scale": self.scale,
            "budgets": dict(self.budgets),
            "shared_gamma": self.shared_gamma,
            "n_obs": self.n_obs,
            "dof": self.dof,
            "risk": self.risk,
        }


def _group_starts(
    x: np.ndarray, y: np.ndarray, gidx: np.ndarray, ng: int, domains: tuple[str, ...], scale: float
) -> list[np.ndarray]:
    """Per-group DDO fits converted to (log beta', log u0, log gamma) starts."""
    starts = []
    # Only the largest group (budget) is used: its DDO fit is the closest to the target.
    sizes = [float(np.median(x[gidx == g].sum(axis=1))) for g in range(ng)]
    for g in [int(np.argmax(sizes))]:
        rows = np.flatnonzero(gidx == g)
        xs = x[rows]
        # base = the most frequent allocation of the group
        keys = [tuple(np.round(r / r.sum(), 9)) + (round(float(r.sum()), -3),) for r in xs]
        counts: dict[tuple, int] = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        base_key = max(counts, key=lambda k: counts[k])
        base_row = xs[keys.index(base_key)]
        obs = [({d: float(v) for d, v in zip(domains, r)}, float(y[i])) for r, i in zip(xs, rows)]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_power_laws(obs, {d: float(v) for d, v in zip(domains, base_row)})
        except (ValueError, TypeError):
            continue
        V = fit.base_value
        lb, lu, lg = [], [], []
        for i, d in enumerate(domains):
            p = fit.params[d]
            bi = base_row[i] / scale
            gam = float(np.clip(p.b, 0.02, 4.0))
            lg.append(math.log(gam))
            lu.append(math.log(float(np.clip(p.a * bi, 1e-5, 1e3))))
            lb.append(math.log(abs(V)) + gam * math.log(bi))
        starts.append(np.array(lb + lu + lg))
    return starts


def fit_separable(
    observations: Sequence[JointObservation],
    *,
    shared_gamma: bool = False,
    n_bootstrap: int = 200,
    seed: int | None = 0,
    noise: float | None = None,
    risk: float = DEFAULT_RISK,
) -> SeparableLaw:
    """Fit the joint separable law to runs at any number of budgets/groups.

    ``L = E_g + sum_i beta_i (N_i + N0_i)^(-gamma_i)``. The offsets ``E_g`` are profiled out
    (within-group centring), the rest is fitted in log-parameters by
    :func:`scipy.optimize.least_squares` from several starts (the largest group's DDO fit
    converted to absolute tokens, plus a generic one), as a MAP fit with priors ``log gamma ~ N(log 0.5, 0.7)``
    and ``log(N0 / s) ~ N(log 2, 1.5)`` (``s`` the mean base share) whose weight scales with
    the residual noise, so they matter only where the data are silent. Parameter uncertainty:
    the Laplace posterior ``N(theta_hat, (J^T J / sigma^2 + prior precision)^-1)``, used by
    :meth:`SeparableLaw.optimal_allocation` (``robust=True``); ``n_bootstrap`` draws from it
    are kept in :attr:`SeparableLaw.samples`.

    Args:
        observations: ``(allocation tokens per domain, objective, group key)`` triples. A group is
            one budget's design run with one seed (common random numbers); ``(allocation,
            objective)`` pairs all go to one group.
        shared_gamma: Share one exponent across domains (a prior that buys signal under noise).
        n_bootstrap: Number of Laplace posterior draws kept in ``samples`` (0: none).
        seed: Seed of the posterior samples.
        noise: Known noise sd (loss units) of runs sharing a seed. The seed-to-seed sd of base
            replicates also contains the seed-shared part, so it over-estimates this and only makes
            the robust mode more cautious. Default: the residual estimate (needs spare degrees
            of freedom).
        risk: Default risk aversion of the robust allocation.

    Returns:
        A :class:`SeparableLaw`.

    Example:
        >>> import numpy as np
        >>> true = lambda n: 2.0 + sum(b * (x + n0) ** -g for b, x, n0, g in zip((30.0, 60.0), n, (1e6, 3e6), (0.3, 0.35)))
        >>> obs = []
        >>> for B in (1e7, 4e7):
        ...     base = np.array([B / 2, B / 2])
        ...     for i, mult in [(None, 1.0), (0, 0.2), (0, 3.0), (1, 0.2), (1, 3.0)]:
        ...         n = base.copy()
        ...         if i is not None:
        ...             n[i] *= mult
        ...         obs.append(({"a": n[0], "b": n[1]}, true(n), f"B{B:.0e}"))
        >>> law = fit_separable(obs)
        >>> sorted(law.optimal_allocation(4e8))
        ['a', 'b']
    """
    if isinstance(observations, (str, bytes)) or not isinstance(observations, Sequence) or len(observations) == 0:
        raise TypeError("observations must be a non-empty sequence of (allocation, objective, group) triples.")
    first = observations[0]
    if not isinstance(first, (tuple, list)) or not isinstance(first[0], Mapping):
        raise TypeError(f"observation 0 must be an (allocation, objective, group) triple, got {first!r}.")
    domains = tuple(first[0])
    if len(domains) < 2:
        raise ValueError("The joint law needs at least 2 domains.")
    m = len(domains)
    rows, ys, groups = [], [], []
    for k, obs in enumerate(observations):
        if not isinstance(obs, (tuple, list)) or len(obs) not in (2, 3):
            raise TypeError(f"observation {k} must be an (allocation, objective, group) triple, got {obs!r}.")
        rows.append(_check_allocation(obs[0], domains, f"observation {k}"))
        ys.append(_check_value(obs[1], f"observation {k}'s objective"))
        groups.append(str(obs[2]) if len(obs) == 3 else "default")
    x = np.array(rows)
    y = np.array(ys)
    if np.any(x.sum(axis=1) <= 0):
        raise ValueError("Every observation needs a positive total number of tokens.")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}.")
    if noise is not None and (not math.isfinite(float(noise)) or float(noise) < 0):
        raise ValueError(f"noise must be a finite sd >= 0 (loss units), got {noise!r}.")
    gnames, gidx, budgets, scale = _group_design(x, groups, domains)
    ng = len(gnames)
    model = _Model(m, bool(shared_gamma))
    p = model.n_params
    n = len(y)
    dof = n - p - ng
    u = x / scale
    prob = _MapProblem(model, u, y, gidx, ng)
    yc, prec = prob.yc, prob.prec
    lo_b, hi_b = prob.lo, prob.hi

    def relinearise_beta(theta: np.ndarray) -> np.ndarray:
        """Given u0, gamma: least-squares beta' (kept positive) for a consistent start."""
        _, u0, gam = model.unpack(theta)
        h = (u + u0) ** (-gam)
        hc = _center(h, gidx, ng)
        coef, *_ = np.linalg.lstsq(hc, yc, rcond=None)
        coef = np.where(coef > 0, coef, np.abs(coef) * 0.1 + 1e-12)
        out = theta.copy()
        out[:m] = np.log(coef)
        return out

    starts = _group_starts(x, y, gidx, ng, domains, scale)
    shares = np.median(x / x.sum(axis=1, keepdims=True), axis=0)
    starts.append(np.r_[np.zeros(m), np.full(m, _PRIOR_LOG_N0[0]) + np.log(shares * m), np.full(m, _PRIOR_LOG_GAMMA[0])])
    prepared = []
    for st in starts:
        if shared_gamma:
            st = np.r_[st[: 2 * m], [float(np.median(st[2 * m :]))]]
        st = np.clip(relinearise_beta(np.clip(st, lo_b + 1e-6, hi_b - 1e-6)), lo_b + 1e-6, hi_b - 1e-6)
        r0 = prob.resid(st)
        prepared.append((float(r0 @ r0) if np.all(np.isfinite(r0)) else math.inf, st))
    prepared.sort(key=lambda item: item[0])
    # Large problems (many domains) refine only the most promising start: each trust-region step
    # is an SVD of the (runs + parameters) x parameters Jacobian.
    n_refine = len(prepared) if p <= 60 else 1
    best: np.ndarray | None = None
    best_cost = math.inf
    for _, st in prepared[:n_refine]:
        try:
            sol = prob.solve(st, 100)
        except (ValueError, FloatingPointError):
            continue
        if np.isfinite(sol.cost) and sol.cost < best_cost:
            best_cost, best = float(sol.cost), sol.x
    if best is None:
        raise ValueError("The joint law could not be fitted (every start failed); check the observations.")
    theta = prob.polish(best, noise, dof, 2 if p <= 60 else 1)
    f, j = model.f_and_jac(theta, u)
    r = _center(f - y, gidx, ng)
    offsets = {g: float(np.mean((y - f)[gidx == i])) for i, g in enumerate(gnames)}
    rss = float(r @ r)
    jc = _center(j, gidx, ng)
    sigma = prob.noise_sd(jc.T @ jc, rss, noise, dof)
    beta, u0, gam = model.unpack(theta)
    params = {
        d: {"beta": float(beta[i] * scale ** gam[i]), "n0": float(u0[i] * scale), "gamma": float(gam[i])}
        for i, d in enumerate(domains)
    }
    stderr = None
    samples = None
    covariance = None
    if sigma is not None:
        jtj = jc.T @ jc
        cov_ml = np.linalg.pinv(jtj, rcond=1e-10) * sigma**2
        null = np.diag(np.eye(p) - np.linalg.pinv(jtj, rcond=1e-10) @ jtj)
        se = np.sqrt(np.maximum(np.diag(cov_ml), 0.0))
        se[null > 1e-6] = np.nan
        stderr = {}
        logs = math.log(scale)
        for i, d in enumerate(domains):
            ig = 2 * m + (0 if shared_gamma else i)
            # log beta_abs = log beta' + gamma log(scale): delta method with the covariance
            gvec = np.zeros(p)
            gvec[i] = 1.0
            gvec[ig] = gam[i] * logs
            var_lb = float(gvec @ cov_ml @ gvec)
            stderr[d] = {
                "beta": params[d]["beta"] * math.sqrt(max(var_lb, 0.0)) if np.all(np.isfinite(se[[i, ig]])) else math.nan,
                "n0": params[d]["n0"] * float(se[m + i]),
                "gamma": params[d]["gamma"] * float(se[ig]),
            }
        if sigma > 0:
            precision = jtj / sigma**2 + np.diag(prec)
            w, v = np.linalg.eigh(precision)
            w = np.maximum(w, 1e-12 * max(float(w.max()), 1e-300))
            covariance = (v / w) @ v.T
        if sigma > 0 and n_bootstrap > 0:
            rng = np.random.default_rng(seed)
            z = rng.standard_normal((n_bootstrap, p))
            samples = theta + (z / np.sqrt(w)) @ v.T
            samples = np.clip(samples, lo_b, hi_b)
        elif sigma == 0:
            covariance = np.zeros((p, p))
    return SeparableLaw(
        domains=domains,
        params=params,
        offsets=offsets,
        noise=sigma,
        stderr=stderr,
        scale=scale,
        budgets=budgets,
        shared_gamma=bool(shared_gamma),
        n_obs=n,
        dof=dof,
        risk=float(risk),
        theta=tuple(float(t) for t in theta),
        samples=samples,
        covariance=covariance,
    )
