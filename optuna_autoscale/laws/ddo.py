"""The paper's per-budget DDO fit: per domain a power law of the objective in that domain's multiplier.

a single domain's tokens by a multiplier ``x`` (the others unchanged) are fitted per domain by

    y(x) = (x + a)^(-b) + c,       x = domain tokens / base tokens,  y = objective / base objective.

With exactly three points per domain (the base and two multipliers) the law interpolates and
there can be two exact solutions. **Root rule:** as the authors' code does, the solver
(:func:`scipy.optimize.least_squares`, unbounded, Levenberg-Marquardt) starts from
``(a, b, c) = (1, 1, 1)`` and the root it converges to is taken. This reproduces the published
GPT-2 Large fits. With more points per domain the fit is bounded least squares
(``a > -min x``, ``b > 0``) from several starts, and the rms residual is reported.
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

from optuna_autoscale._validation import bound_vector
from optuna_autoscale._validation import check_allocation
from optuna_autoscale._validation import check_value
from optuna_autoscale.allocation import solve_separable


__all__ = ["DDOFit", "DDOWarning", "Observation", "PowerLaw", "fit_power_laws"]

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

    ``warnings.warn`` would print the caller's source line under every note. One warning per
    fit, located nowhere (so no source line is shown), and deduplicated per process like any
    "default" warning: the same fit warns once. The notes themselves stay in
    :attr:`DDOFit.warnings` (and ``AutoScaleResult.warnings``).
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
        lo = bound_vector(lower, self.domains, np.array([min(self.multipliers[d]) for d in self.domains]), "lower")
        hi = bound_vector(upper, self.domains, np.full(len(self.domains), np.inf), "upper")
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
        tot = float(b.sum() if total is None else check_value(total, "total"))
        if tot <= 0:
            raise ValueError(f"total must be > 0 tokens, got {total!r}.")
        lo = bound_vector(lower, self.domains, np.array([min(self.multipliers[d]) for d in self.domains]) * b, "lower")
        hi = bound_vector(upper, self.domains, np.full(len(self.domains), np.inf), "upper")
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
    b = check_allocation(base, domains, "base")
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
        x = check_allocation(alloc, domains, f"observation {k}")
        v = check_value(val, f"observation {k}'s objective")
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
