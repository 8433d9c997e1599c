"""Shared MAP machinery of the joint laws: priors, parameter bounds, groups, the MAP problem, pooling.

Both joint laws (:mod:`~optuna_autoscale.laws.separable`, :mod:`~optuna_autoscale.laws.transfer`)
are MAP fits in log-parameters with one offset per group (a budget's design sharing one seed),
profiled out by centring, and a Laplace posterior.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any

import numpy as np
from scipy.optimize import least_squares



__all__ = [
    "BOUNDS",
    "DEFAULT_RISK",
    "JointObservation",
    "MapProblem",
    "POOL_SD_FLOOR",
    "PRIOR_LOG_GAMMA",
    "PRIOR_LOG_N0",
    "center",
    "group_design",
    "pooled_prior",
]

JointObservation = tuple[Mapping[str, float], float, str]
"""``(allocation in tokens per domain, objective value, group key)``."""

PRIOR_LOG_GAMMA = (math.log(0.5), 0.7)  # prior on log gamma: mean, sd (data exponents of LM scaling laws)
PRIOR_LOG_N0 = (math.log(2.0), 1.5)  # prior on log(N0 / scale), scale = mean base share: mean, sd
BOUNDS = {"lb": (-60.0, 60.0), "lu": (math.log(1e-5), math.log(1e3)), "lg": (math.log(0.03), math.log(3.0))}
"""Box on the log-parameters of both joint laws: ``lb`` log beta', ``lu`` log(N0 / scale), ``lg`` log gamma."""
DEFAULT_RISK = 1.0
"""Default risk aversion of the robust allocation (mean + risk * sd of the loss change), chosen with
``benchmarks/simulated_extrapolation.py`` (see ``benchmarks/RESULTS.md``)."""


def center(v: np.ndarray, gidx: np.ndarray, ng: int) -> np.ndarray:
    """Subtract group means (rows of v)."""
    if ng == 1:
        return v - v.mean(axis=0)
    out = np.array(v, dtype=float, copy=True)
    for g in range(ng):
        rows = gidx == g
        out[rows] -= v[rows].mean(axis=0)
    return out


def group_design(
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


class MapProblem:
    """A joint law's MAP fit as bounded least squares; the separable and per-domain laws share it.

    The residuals are the model's errors with each group's mean removed (the per-group offsets
    profiled out), then the Gaussian priors as extra residuals ``sigma * (theta - mu) / tau`` (MAP
    under Gaussian noise). ``sigma`` starts as a tenth of the data's sd; :meth:`polish`
    re-estimates it from the residuals and refits.

    ``model`` needs ``f_and_jac(theta, u) -> (values, jacobian)``, ``prior() -> (mu, precision)``
    and ``bounds() -> (lower, upper)``; ``prior`` replaces the model's prior (e.g. a pooled one,
    :func:`pooled_prior`). The Laplace covariance and the effective residual dof
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
        self.yc = center(y, gidx, ng)
        self.ysd = float(np.std(self.yc)) or 1.0
        self.mu, self.prec = model.prior() if prior is None else (np.asarray(prior[0]), np.asarray(prior[1]))
        self.lo, self.hi = model.bounds()
        self.sigma = 0.1 * self.ysd

    def resid(self, theta: np.ndarray) -> np.ndarray:
        f, _ = self.model.f_and_jac(theta, self.u)
        return np.r_[center(f - self.y, self.gidx, self.ng), self.sigma * np.sqrt(self.prec) * (theta - self.mu)]

    def jac(self, theta: np.ndarray) -> np.ndarray:
        _, j = self.model.f_and_jac(theta, self.u)
        return np.vstack([center(j, self.gidx, self.ng), np.diag(self.sigma * np.sqrt(self.prec))])

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
            r0 = center(f0 - self.y, self.gidx, self.ng)
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


def pooled_prior(
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
