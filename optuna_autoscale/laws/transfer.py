"""The per-domain (transfer) joint law: one power law per validation domain, other domains' tokens counting for it.

**The per-domain joint transfer law** (:func:`fit_transfer`). A scalar objective gives one
number per run; the per-domain validation losses every trial records (user attrs
``loss_<domain>``) give ``m``, which identifies cross-domain terms. Per validation domain ``k``

    L_k(N) = E_{k,g} + beta_k (N_k + sum_{j != k} A_kj N_j + N0_k)^(-gamma_k),   0 <= A_kj <= 1,

in absolute tokens, fitted jointly over all budgets with one offset ``E_{k,g}`` per group (a
budget's design sharing one seed: common random numbers), like the separable joint law of
:mod:`optuna_autoscale.laws`. The objective is a fixed non-negative weighting of the ``L_k``
(the mean for metric ``"loss"``). Each domain is a MAP fit (weak priors: ``log gamma ~ N(log 0.5,
0.7)``, ``log(N0 / s) ~ N(log 2, 1.5)``, ``A_kj ~ N(0, 0.3)`` truncated at 0) with a Laplace
posterior; ``pool_exponents`` / ``pool_offsets`` optionally replace the fixed priors of the
exponents / offsets by an empirical-Bayes prior pooled across the validation domains (off in
this function by default; :func:`optuna_autoscale.results.fit_joint`, which the sampler and
:class:`~optuna_autoscale.results.AutoScaleResult` use, pools the exponents: ``results.TRANSFER_POOL``,
chosen on ``benchmarks/RESULTS.md``'s tuning seeds). The per-domain posteriors are combined for the
objective with the correlation of the fits' residuals across domains (the noise of one run is
correlated across its validation domains). The bounded optimum at any budget is a convex
problem (each term is a convex decreasing function of an affine map of the allocation), solved
by SLSQP; the robust step toward it from an anchor is the lower-confidence-bound rule of
:class:`~optuna_autoscale.laws.SeparableLaw` (the same code).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import functools
import math
from typing import Any
from typing import ClassVar
import warnings

import numpy as np
from scipy import optimize

from optuna_autoscale._validation import check_allocation
from optuna_autoscale._validation import check_value
from optuna_autoscale.extrapolation.robust import project_box_total
from optuna_autoscale.extrapolation.robust import RobustAllocator
from optuna_autoscale.laws._map import BOUNDS
from optuna_autoscale.laws._map import center
from optuna_autoscale.laws._map import DEFAULT_RISK
from optuna_autoscale.laws._map import group_design
from optuna_autoscale.laws._map import MapProblem
from optuna_autoscale.laws._map import pooled_prior
from optuna_autoscale.laws._map import PRIOR_LOG_GAMMA
from optuna_autoscale.laws._map import PRIOR_LOG_N0
from optuna_autoscale.laws.dml import centering_basis
from optuna_autoscale.laws.dml import fit_exponential_law


__all__ = ["Progress", "TransferLaw", "TransferObservation", "fit_transfer", "objective_weights"]

TransferObservation = tuple[Mapping[str, float], Mapping[str, float], str]
"""``(allocation in tokens per domain, per-domain validation losses, group key)``."""

TRANSFER_MAX = 1.0
"""Upper bound of ``A_kj``: a token of another domain counts at most as much as one of the domain itself."""

_PRIOR_TRANSFER_SD = 0.3
_PRIOR_LOG_ALPHA = (math.log(0.3), 1.0)
_PRIOR_EXP_T_SD = 3.0
_EXP_ALPHA_RANGE = (0.005, 3.0)
_EXP_T_MAX = 30.0
_EXP_CLIP = 60.0
_BOUNDS = (BOUNDS["lb"], BOUNDS["lu"], BOUNDS["lg"])  # log beta', log(N0 / scale), log gamma
_WEIGHT_RTOL = 1e-6
Progress = Callable[[int, int], Any]
"""A progress callback: ``progress(done, total)`` with ``done`` of ``total`` domain fits finished."""
_START_RTOL = 1e-6


# ------------------------------------------------------------------------------ one domain
FORMS = ("power", "exp", "auto")
"""Per-domain law forms of :func:`fit_transfer`: the power law in effective tokens, the exponential
(Data Mixing Laws) form with a power law in total tokens, or ``"auto"``: per domain, the one with
the smaller leave-one-run-out error."""


@dataclasses.dataclass(frozen=True)
class _DomainModel:
    """Power form. theta = [log beta', log u0, log gamma, A_kj for j != k], u = N / scale."""

    m: int
    k: int
    form = "power"
    pool_index = {"exponent": 2, "offset": 1}  # the log-parameters fit_transfer can pool across domains

    @property
    def n_params(self) -> int:
        return 3 + self.m - 1

    @property
    def others(self) -> np.ndarray:
        return np.array([j for j in range(self.m) if j != self.k], dtype=int)

    def transfer_row(self, theta: np.ndarray) -> np.ndarray:
        a = np.ones(self.m)
        a[self.others] = theta[3:]
        return a

    def f_and_jac(self, theta: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        beta, u0, g = np.exp(theta[:3])
        a = self.transfer_row(theta)
        z = u @ a + u0  # (n,) effective tokens of domain k
        f = beta * z ** (-g)
        dz = -g * f / z
        j = np.column_stack([f, dz * u0, -f * np.log(z) * g, dz[:, None] * u[:, self.others]])
        return f, j

    def values(self, thetas: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The law under each parameter row of ``thetas`` (k, p) at each allocation of ``u`` (n, m): (k, n).

        One matrix product for every row (posterior draws), without the Jacobian :meth:`f_and_jac` builds.
        """
        th = np.atleast_2d(thetas)
        a = np.ones((len(th), self.m))
        a[:, self.others] = th[:, 3:]
        z = u @ a.T + np.exp(th[:, 1])[None, :]
        return (np.exp(th[:, 0])[None, :] * z ** (-np.exp(th[:, 2]))[None, :]).T

    def grad_u(self, theta: np.ndarray, u: np.ndarray) -> tuple[float, np.ndarray]:
        """The law and its gradient in the tokens ``u`` (one allocation, ``(m,)``)."""
        a = self.transfer_row(theta)
        z = float(u @ a) + math.exp(theta[1])
        f = math.exp(theta[0]) * z ** (-math.exp(theta[2]))
        return f, (-math.exp(theta[2]) * f / z) * a

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.r_[[b[0] for b in _BOUNDS], np.zeros(self.m - 1)]
        hi = np.r_[[b[1] for b in _BOUNDS], np.full(self.m - 1, TRANSFER_MAX)]
        return lo, hi

    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        mu = np.r_[0.0, PRIOR_LOG_N0[0], PRIOR_LOG_GAMMA[0], np.zeros(self.m - 1)]
        prec = np.r_[0.0, PRIOR_LOG_N0[1] ** -2, PRIOR_LOG_GAMMA[1] ** -2, np.full(self.m - 1, _PRIOR_TRANSFER_SD**-2)]
        return mu, prec

    def starts(self, u: np.ndarray, y: np.ndarray, gidx: np.ndarray) -> list[np.ndarray]:
        out = []
        for g0 in (0.3, 0.7):
            for lu0 in (math.log(0.5), math.log(2.0), math.log(6.0)):
                for a0 in (0.0, 0.1):
                    out.append(np.r_[0.0, lu0, math.log(g0), np.full(self.m - 1, a0)])
        return out

    def params(self, theta: np.ndarray, scale: float, domains: Sequence[str]) -> dict[str, Any]:
        gam = math.exp(theta[2])
        row = self.transfer_row(theta)
        return {
            "form": "power",
            "beta": math.exp(theta[0]) * scale**gam,
            "n0": math.exp(theta[1]) * scale,
            "gamma": gam,
            "transfer": {domains[j]: float(row[j]) for j in range(self.m) if j != self.k},
        }


@dataclasses.dataclass(frozen=True)
class _ExpDomainModel:
    """Exponential (Data Mixing Laws) form with a power law in total tokens.

    ``f = k' S^(-alpha) exp(t . r)``, ``S = sum_j u_j`` (total tokens / scale), ``r = u / S``;
    theta = [log k', log alpha, s], ``t = B s`` with ``B`` the orthonormal basis of mean-zero
    rows (:func:`optuna_autoscale.baselines.dml._centering_basis`: a constant added to ``t`` is
    ``k'`` again, since ``sum r = 1``).
    """

    m: int
    k: int
    form = "exp"
    pool_index = {"exponent": 1}

    @property
    def n_params(self) -> int:
        return 2 + self.m - 1

    def _basis(self) -> np.ndarray:
        return _centering_basis_cached(self.m)

    def interaction(self, theta: np.ndarray) -> np.ndarray:
        return self._basis() @ np.asarray(theta[2:])

    def _design(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Totals, log totals and the shares in the basis ``r @ B`` of ``u``: fixed during a fit, so kept for the
        last ``u`` seen (an (n, m) x (m, m-1) product per call was the form's main cost at 100 domains)."""
        hit = _EXP_DESIGN.get(self.m)
        if hit is not None and hit[0] is u:
            return hit[1]
        tot = u.sum(axis=1)
        out = (tot, np.log(tot), (u / tot[:, None]) @ self._basis())
        _EXP_DESIGN[self.m] = (u, out)
        return out

    def f_and_jac(self, theta: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kk, a = np.exp(theta[:2])
        tot, log_tot, rb = self._design(u)
        f = kk * np.exp(-a * log_tot) * np.exp(np.clip(rb @ theta[2:], -_EXP_CLIP, _EXP_CLIP))
        j = np.column_stack([f, -f * log_tot * a, f[:, None] * rb])
        return f, j

    def values(self, thetas: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The law under each parameter row of ``thetas`` (k, p) at each allocation of ``u`` (n, m): (k, n)."""
        th = np.atleast_2d(thetas)
        tot = u.sum(axis=1)
        e = (u / tot[:, None]) @ (th[:, 2:] @ self._basis().T).T  # (n, k)
        f = np.exp(th[:, 0])[None, :] * tot[:, None] ** (-np.exp(th[:, 1]))[None, :] * np.exp(np.clip(e, -_EXP_CLIP, _EXP_CLIP))
        return f.T

    def grad_u(self, theta: np.ndarray, u: np.ndarray) -> tuple[float, np.ndarray]:
        """The law and its gradient in the tokens ``u`` (one allocation, ``(m,)``)."""
        a = math.exp(theta[1])
        t = self.interaction(theta)
        tot = float(u.sum())
        r = u / tot
        f = math.exp(theta[0]) * tot ** (-a) * math.exp(float(np.clip(r @ t, -_EXP_CLIP, _EXP_CLIP)))
        return f, f * (-a + t - float(r @ t)) / tot

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.r_[-60.0, math.log(_EXP_ALPHA_RANGE[0]), np.full(self.m - 1, -_EXP_T_MAX)]
        hi = np.r_[60.0, math.log(_EXP_ALPHA_RANGE[1]), np.full(self.m - 1, _EXP_T_MAX)]
        return lo, hi

    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        mu = np.r_[0.0, _PRIOR_LOG_ALPHA[0], np.zeros(self.m - 1)]
        prec = np.r_[0.0, _PRIOR_LOG_ALPHA[1] ** -2, np.full(self.m - 1, _PRIOR_EXP_T_SD**-2)]
        return mu, prec

    def starts(self, u: np.ndarray, y: np.ndarray, gidx: np.ndarray) -> list[np.ndarray]:
        # The Data Mixing Law fit (c, k, t in the proportions) of the largest group's runs.
        g = int(np.argmax([u[gidx == i].sum(axis=1).mean() for i in range(int(gidx.max()) + 1)]))
        sel = gidx == g
        s_dml = np.zeros(self.m - 1)
        if int(sel.sum()) > self.m + 1:
            try:
                _, _, t, _ = fit_exponential_law(u[sel] / u[sel].sum(axis=1, keepdims=True), y[sel], self._basis(), 2)
                s_dml = np.clip(self._basis().T @ t, -_EXP_T_MAX, _EXP_T_MAX)
            except (RuntimeError, ValueError, np.linalg.LinAlgError):
                pass
        return [np.r_[0.0, math.log(a0), s0] for a0 in (0.1, 0.3) for s0 in (s_dml, np.zeros(self.m - 1))]

    def params(self, theta: np.ndarray, scale: float, domains: Sequence[str]) -> dict[str, Any]:
        a = math.exp(theta[1])
        t = self.interaction(theta)
        return {
            "form": "exp",
            "k": math.exp(theta[0]) * scale**a,
            "alpha": a,
            "interaction": {domains[j]: float(t[j]) for j in range(self.m)},
        }


_EXP_DESIGN: dict[int, tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
"""The exponential form's per-``u`` design (:meth:`_ExpDomainModel._design`), the last ``u`` per domain count."""

_DomainLaw = _DomainModel | _ExpDomainModel


def _model(form: str, m: int, k: int) -> _DomainLaw:
    return _ExpDomainModel(m, k) if form == "exp" else _DomainModel(m, k)


@functools.lru_cache(maxsize=64)
def _centering_basis_cached(m: int) -> np.ndarray:
    b = centering_basis(m)
    b.setflags(write=False)
    return b


@dataclasses.dataclass(frozen=True)
class _DomainFit:
    theta: np.ndarray
    sigma: float | None
    covariance: np.ndarray | None
    residuals: np.ndarray
    offsets: np.ndarray
    press: float
    """Leave-one-run-out squared error (linearised: residuals over one minus their leverage)."""


def _fit_domain(
    model: _DomainLaw,
    u: np.ndarray,
    y: np.ndarray,
    gidx: np.ndarray,
    ng: int,
    noise: float | None,
    prior: tuple[np.ndarray, np.ndarray] | None = None,
    start: np.ndarray | None = None,
    sigma0: float | None = None,
    rounds: int = 2,
    coarse: bool = False,
) -> _DomainFit:
    """MAP fit of one validation domain's law (offsets profiled out), with its Laplace posterior.

    ``prior`` replaces the model's prior (mean, precision). ``start`` (a refit's previous optimum)
    is then the only start: a refit under a nearby prior continues from there, at the cost of one
    solve instead of the two or more the multi-start search needs; ``sigma0`` (that fit's noise
    sd) is then the working noise scale of the prior terms. ``rounds`` is the number of sigma
    polish rounds (:meth:`~optuna_autoscale.laws._MapProblem.polish`). ``coarse`` solves to a
    looser tolerance: a first pass whose optimum only seeds a tight refit.
    """
    n = len(y)
    p = model.n_params
    prob = MapProblem(model, u, y, gidx, ng, prior)
    if sigma0 is not None and sigma0 > 0:
        prob.sigma = float(sigma0)
    yc, prec = prob.yc, prob.prec
    lo_b, hi_b = prob.lo, prob.hi

    def with_beta(theta: np.ndarray) -> np.ndarray:
        """Given u0, gamma, A: the least-squares beta' (kept positive)."""
        t = theta.copy()
        t[0] = 0.0
        h, _ = model.f_and_jac(t, u)
        hc = center(h, gidx, ng)
        den = float(hc @ hc)
        coef = float(hc @ yc) / den if den > 0 else 1.0
        t[0] = math.log(coef if coef > 0 else abs(coef) * 0.1 + 1e-12)
        return t

    starts = model.starts(u, y, gidx) if start is None else [np.asarray(start, dtype=float)]
    prepared = []
    for st in starts:
        st = np.clip(with_beta(np.clip(st, lo_b, hi_b)), lo_b, hi_b)
        r0 = prob.resid(st)
        prepared.append((float(r0 @ r0) if np.all(np.isfinite(r0)) else math.inf, st))
    prepared.sort(key=lambda item: item[0])

    # Up to 6 starts, most promising first; stop once two of them reach the same minimum (their
    # costs agree to _START_RTOL). Each start costs an SVD of the Jacobian per step, O(m^3) for m
    # domains (why two agreeing starts suffice: benchmarks/RESULTS.md, "Measurements cited by the code").
    best: np.ndarray | None = None
    best_cost = math.inf
    costs: list[float] = []
    for _, st in prepared[:6]:
        try:
            sol = prob.solve(st, 100, coarse=coarse)
        except (ValueError, FloatingPointError):
            continue
        if not np.isfinite(sol.cost):
            continue
        cost = float(sol.cost)
        if cost < best_cost:
            best_cost, best = cost, sol.x
        costs.append(cost)
        if sum(1 for c in costs if c - best_cost <= _START_RTOL * best_cost) >= 2:
            break  # the best minimum found twice
    if best is None:
        raise ValueError("The transfer law could not be fitted (every start failed); check the per-domain losses.")
    dof = n - p - ng
    theta = prob.polish(best, noise, dof, rounds, coarse=coarse)
    f, j = model.f_and_jac(theta, u)
    r = center(f - y, gidx, ng)
    offsets = np.array([float(np.mean((y - f)[gidx == g])) for g in range(ng)])
    jc = center(j, gidx, ng)
    a_mat = jc.T @ jc
    # Leave-one-run-out error of the MAP fit, linearised: r_i / (1 - h_ii), the leverage h_ii of
    # the (prior-regularised) Gauss-Newton hat matrix plus that of the group offset (1 / n_g).
    reg_h = a_mat + np.diag(prec) * prob.sigma**2
    try:
        lev = np.einsum("ip,ip->i", jc, np.linalg.solve(reg_h, jc.T).T)
    except np.linalg.LinAlgError:
        lev = np.full(n, p / max(n, 1))
    lev = lev + 1.0 / np.bincount(gidx, minlength=ng)[gidx]
    press = float(np.sum((r / np.maximum(1.0 - lev, 1e-3)) ** 2))
    sigma = prob.noise_sd(a_mat, float(r @ r), noise, dof)
    covariance = None
    if sigma is not None:
        if sigma > 0:
            w, v = np.linalg.eigh(a_mat / sigma**2 + np.diag(prec))
            w = np.maximum(w, 1e-12 * max(float(w.max()), 1e-300))
            covariance = (v / w) @ v.T
        else:
            covariance = np.zeros((p, p))
    return _DomainFit(theta=theta, sigma=sigma, covariance=covariance, residuals=r, offsets=offsets, press=press)


def _fit_form(
    form: str,
    m: int,
    u: np.ndarray,
    ymat: np.ndarray,
    gidx: np.ndarray,
    ng: int,
    noises: Sequence[float | None],
    pool: Mapping[str, float | str | None],
    tick: Callable[[], Any] = lambda: None,
) -> tuple[list[_DomainFit], dict[str, tuple[float, float]]]:
    """Every validation domain's fit in one form, with the shape parameters named in ``pool`` pooled.

    Fitted first under the fixed priors; then each pooled log-parameter gets the empirical-Bayes
    prior of :func:`~optuna_autoscale.laws._pooled_prior` (common mean and sd from those fits)
    and every domain is refitted under it, from its unpooled optimum. ``tick`` is called after
    each domain's fit (progress).

    With pooling, the first pass only supplies the pooled prior's statistics and the refit's
    start and noise scale, so it solves to a looser tolerance (its multi-start search and its
    sigma polish rounds); the refit then converges tightly (the time saved and the optima's
    movement: ``benchmarks/RESULTS.md``, "Measurements cited by the code").

    Returns the fits and the pooled priors, ``{name: (mean, sd)}`` of each pooled log-parameter.
    """

    def fit(k: int, **kwargs: Any) -> _DomainFit:
        out = _fit_domain(models[k], u, ymat[:, k], gidx, ng, noises[k], **kwargs)
        tick()
        return out

    models = [_model(form, m, k) for k in range(m)]
    idx = {name: i for name, i in models[0].pool_index.items() if pool.get(name) is not None}
    if not idx:
        return [fit(k) for k in range(m)], {}
    fits = [fit(k, coarse=True) for k in range(m)]
    pooled: dict[str, tuple[float, float]] = {}
    mu, prec = models[0].prior()
    mu, prec = np.array(mu, dtype=float), np.array(prec, dtype=float)
    for name, i in idx.items():
        vals = np.array([f.theta[i] for f in fits])
        var = None
        if all(f.covariance is not None for f in fits):
            var = np.array([f.covariance[i, i] for f in fits])  # type: ignore[index]
        base = (float(mu[i]), float(prec[i]) ** -0.5)
        mean_i, sd_i = pooled_prior(vals, var, base, pool[name])  # type: ignore[arg-type]
        mu[i], prec[i] = mean_i, sd_i**-2
        pooled[name] = (float(mean_i), float(sd_i))
    return [fit(k, prior=(mu, prec), start=fits[k].theta, sigma0=fits[k].sigma, rounds=0) for k in range(m)], pooled


_FORM_RECHECK = 1.3
"""A refit from a superset's fit (:func:`fit_transfer` ``start=``) fits both forms again for a domain whose two forms'
leave-one-run-out errors were within this factor of each other in that fit (the left-out runs may have decided it)."""


@dataclasses.dataclass
class _Refit:
    """What :func:`_refit_from` returns: per domain its fit, form and leave-one-run-out errors, and per form the
    parameters to start a later refit from and the pooled priors, all in this fit's token scale."""

    fits: list[_DomainFit]
    chosen: list[str]
    press: dict[str, dict[str, float]]
    form_thetas: dict[str, tuple[tuple[float, ...], ...]]
    pooled_priors: dict[str, dict[str, tuple[float, float]]]


def _refit_from(start: TransferLaw, m: int, u: np.ndarray, ymat: np.ndarray, gidx: np.ndarray, ng: int,
                noises: Sequence[float | None], scale: float, tick: Callable[[], Any]) -> _Refit:
    """Every domain refitted once per form from ``start``'s optimum in that form, under its pooled prior.

    One solve per form, no multi-start search and no sigma polish rounds: the cost of a leave-one-group-out
    refit (the start was fitted to a superset of these runs, so its optimum is close). A domain keeps its form
    unless the two forms were close in ``start`` (:data:`_FORM_RECHECK`); then both are refitted and the one
    with the smaller leave-one-run-out error is taken, as in a full fit. The token scale may differ between
    the two fits: ``log(N0 / scale)`` (and a pooled prior on it) is moved to this fit's scale.
    """
    shift = math.log(start.scale / scale)

    def rescaled(form: str, theta: Sequence[float]) -> np.ndarray:
        out = np.array(theta, dtype=float)
        if form == "power":
            out[1] += shift
        return out

    pooled = {f: {name: (mean + (shift if (f, name) == ("power", "offset") else 0.0), sd) for name, (mean, sd) in v.items()}
              for f, v in start.pooled_priors.items()}
    priors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for form in start.form_thetas:
        model = _model(form, m, 0)
        mu, prec = (np.array(v, dtype=float) for v in model.prior())
        for name, (mean, sd) in pooled.get(form, {}).items():
            mu[model.pool_index[name]], prec[model.pool_index[name]] = mean, sd**-2
        priors[form] = (mu, prec)
    thetas = {f: [rescaled(f, t) for t in v] for f, v in start.form_thetas.items()}
    out = _Refit([], [], {}, {}, pooled)
    for k, d in enumerate(start.domains):
        p = start.press.get(d, {})
        forms = [f for f in start.form_thetas if f == start.forms[k] or (
            start.forms[k] in p and f in p and p[f] <= _FORM_RECHECK * p[start.forms[k]])]
        cand = {}
        for form in forms:
            cand[form] = _fit_domain(_model(form, m, k), u, ymat[:, k], gidx, ng, noises[k], prior=priors[form],
                                     start=thetas[form][k], sigma0=start.domain_noise[d], rounds=0, coarse=True)
            thetas[form][k] = cand[form].theta
        best = min(cand, key=lambda f: cand[f].press)
        out.fits.append(cand[best])
        out.chosen.append(best)
        out.press[d] = {f: c.press for f, c in cand.items()}
        tick()
    out.form_thetas = {f: tuple(tuple(float(t) for t in th) for th in v) for f, v in thetas.items()}
    return out


# ------------------------------------------------------------------------------ the law
@dataclasses.dataclass(frozen=True)
class TransferLaw(RobustAllocator):
    """Per-domain laws ``L_k = E_{k,g} + beta_k (N_k + sum_j A_kj N_j + N0_k)^(-gamma_k)`` (power form).

    With ``forms="exp"`` or ``"auto"`` in :func:`fit_transfer` a domain may instead follow the
    exponential (Data Mixing Laws) form ``L_k = E_{k,g} + k_k N^(-alpha_k) exp(sum_j t_kj r_j)``
    (``N`` total tokens, ``r = N_j / N``); :attr:`forms` says which.

    The objective is ``sum_k weights_k L_k``. Build it with :func:`fit_transfer`. Like
    :class:`~optuna_autoscale.laws.SeparableLaw` it predicts loss differences between mixtures
    at any budget (absolute values up to the group offset) and solves the bounded (robust)
    optimum at a target budget.

    Attributes:
        domains: Domain names (training and validation domains are the same).
        weights: Objective weight per validation domain (non-negative).
        params: Per domain, power form: ``{"form": "power", "beta", "n0", "gamma", "transfer"}``:
            ``n0`` in tokens, ``beta`` in loss x tokens^gamma, ``transfer`` = ``{j: A_kj}`` for
            the other domains; exponential form: ``{"form": "exp", "k", "alpha", "interaction"}``:
            ``k`` in loss x tokens^alpha, ``interaction`` = ``{j: t_kj}`` (mean zero over ``j``).
        offsets: Objective offset ``sum_k weights_k E_{k,g}`` per group key.
        domain_offsets: ``E_{k,g}`` per domain and group.
        noise: Residual sd of the objective (loss units; per-domain sds combined with their
            residual correlation), ``None`` without spare degrees of freedom.
        domain_noise: Residual sd per domain (``None`` entries without spare degrees of freedom).
        correlation: Residual correlation across domains (``m x m``; ones when unknown).
        scale: Internal token unit (tokens).
        budgets: Nominal budget (median total tokens) per group.
        n_obs: Number of runs fitted.
        dof: Spare degrees of freedom per domain fit (runs minus parameters minus offsets).
        risk: Default risk aversion of the robust allocation.
        thetas: Internal parameters per domain (power: ``[log beta', log N0/scale, log gamma,
            A_kj...]``; exponential: ``[log k', log alpha, s]``, ``t = B s``).
        covariances: Laplace posterior covariance per domain (``None`` without a noise estimate).
        forms: Form per domain, ``"power"`` or ``"exp"``.
        press: Leave-one-run-out squared error per domain and form fitted (linearised).
        pooled_priors: Per form, the empirical-Bayes prior ``{name: (mean, sd)}`` of each pooled
            log-parameter (``"exponent"``, ``"offset"``), in this fit's token scale; empty without pooling.
        form_thetas: Per form fitted, every domain's internal parameters in that form (the chosen form's are
            :attr:`thetas`); a refit from this law (``fit_transfer(..., start=)``) starts from them.
    """

    domains: tuple[str, ...]
    weights: dict[str, float]
    params: dict[str, dict[str, Any]]
    offsets: dict[str, float]
    domain_offsets: dict[str, dict[str, float]]
    noise: float | None
    domain_noise: dict[str, float | None]
    correlation: np.ndarray = dataclasses.field(repr=False, compare=False)
    scale: float = 1.0
    budgets: dict[str, float] = dataclasses.field(default_factory=dict)
    n_obs: int = 0
    dof: int = 0
    risk: float = DEFAULT_RISK
    thetas: tuple[tuple[float, ...], ...] = dataclasses.field(default=(), repr=False)
    covariances: tuple[np.ndarray, ...] | None = dataclasses.field(default=None, repr=False, compare=False)
    forms: tuple[str, ...] = ()
    press: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    pooled_priors: dict[str, dict[str, tuple[float, float]]] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )
    form_thetas: dict[str, tuple[tuple[float, ...], ...]] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )

    kind: ClassVar[str] = "transfer"
    _fit_name = "fit_transfer"

    def _models(self) -> list[_DomainLaw]:
        m = len(self.domains)
        forms = self.forms or ("power",) * m
        return [_model(forms[k], m, k) for k in range(m)]

    def _w(self) -> np.ndarray:
        return np.array([self.weights[d] for d in self.domains])

    def predict_domains(self, allocation: Mapping[str, float], group: str | None = None) -> dict[str, float]:
        """Predicted per-domain losses of an allocation (tokens per domain).

        Args:
            allocation: Domain -> tokens.
            group: The group whose offsets to use; ``None`` uses the mean offset per domain.

        Returns:
            Domain -> predicted loss (absolute up to the offset).
        """
        x = self._vec(allocation)
        if group is not None and str(group) not in self.offsets:
            raise ValueError(f"Unknown group {group!r}; the groups are {list(self.offsets)!r}.")
        out = {}
        for k, (d, model) in enumerate(zip(self.domains, self._models())):
            f = model.values(np.asarray(self.thetas[k]), x[None, :] / self.scale)[0]
            offs = self.domain_offsets[d]
            e = float(np.mean(list(offs.values()))) if group is None else offs[str(group)]
            out[d] = e + float(f[0])
        return out

    def predict(self, allocation: Mapping[str, float], group: str | None = None) -> float:
        """Predicted objective ``sum_k weights_k L_k`` of an allocation (tokens per domain).

        Args:
            allocation: Domain -> tokens.
            group: The group whose offsets to use; ``None`` uses the mean offsets.

        Returns:
            The predicted objective (absolute up to the offset; differences are what the law knows).
        """
        per = self.predict_domains(allocation, group)
        return float(sum(self.weights[d] * per[d] for d in self.domains))

    def _objective_and_grad(self, shares: np.ndarray, total: float) -> tuple[float, np.ndarray]:
        u = (shares * total / self.scale)[None, :]
        val, grad = 0.0, np.zeros(len(self.domains))
        for k, (wk, model) in enumerate(zip(self._w(), self._models())):
            if wk == 0:
                continue
            f, df = model.grad_u(np.asarray(self.thetas[k]), u[0])
            val += wk * f
            grad += wk * df * total / self.scale
        return val, grad

    def _point(self, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        m = len(self.domains)
        slo, shi = lo / total, np.minimum(hi / total, 1.0)
        uni = project_box_total(np.full(m, total / m), total, lo, hi) / total
        f0 = abs(self._objective_and_grad(uni, total)[0]) or 1.0

        def fun(s: np.ndarray) -> tuple[float, np.ndarray]:
            v, gr = self._objective_and_grad(np.maximum(s, 0.0), total)
            return v / f0, gr / f0

        cons = [{"type": "eq", "fun": lambda s: s.sum() - 1.0, "jac": lambda s: np.ones_like(s)}]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = optimize.minimize(fun, uni, jac=True, method="SLSQP", bounds=list(zip(slo, shi)),
                                    constraints=cons, options={"ftol": 1e-15, "maxiter": 500})
        s = np.clip(np.asarray(res.x, dtype=float), slo, shi)
        if not np.all(np.isfinite(s)) or s.sum() <= 0 or fun(s / s.sum())[0] > fun(uni)[0]:
            s = uni
        s = project_box_total(s, 1.0, slo, shi)
        return s * total

    def _has_uncertainty(self) -> bool:
        return self.covariances is not None

    def _change(self, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of the objective change from ``cands[0]``, linearised per domain."""
        w = self._w()
        m = len(self.domains)
        d = np.zeros(len(cands))
        sds = np.zeros((len(cands), m))
        for k, model in enumerate(self._models()):
            f, j = model.f_and_jac(np.asarray(self.thetas[k]), cands / self.scale)
            d += w[k] * (f - f[0])
            if self.covariances is not None:
                g = j - j[0]
                sds[:, k] = np.sqrt(np.maximum(np.einsum("tp,pq,tq->t", g, self.covariances[k], g), 0.0))
        ws = sds * w[None, :]
        var = np.einsum("tk,kl,tl->t", ws, self.correlation, ws)
        return d, np.sqrt(np.maximum(var, 0.0))

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
        """The law's optimal allocation at ``total`` tokens, solved directly there.

        Same rule as :meth:`optuna_autoscale.laws.SeparableLaw.optimal_allocation` (and the same
        code): ``robust=False`` gives ``P``, the bounded optimum of the fitted objective (SLSQP;
        the problem is convex); ``robust=True`` moves from the anchor toward ``P`` only as far as
        the linearised posterior mean + ``risk`` sd of the objective change is lowest.
        (Alternatives measured against this rule: ``benchmarks/RESULTS.md``, "Measurements cited
        by the code".)

        Args:
            total: Total tokens at the target budget.
            lower: Lower bounds in tokens (scalar or per domain; default 0).
            upper: Upper bounds in tokens (default none).
            robust: Shrink toward the anchor.
            anchor: Allocation (only its shares matter) to shrink toward; default the law's own
                optimum at its largest fitted budget.
            risk: Risk aversion (default :attr:`risk`).

        Returns:
            Domain -> tokens, summing to ``total``.

        Raises:
            ValueError: for a non-positive total, infeasible bounds or a bad ``risk``/``anchor``.
        """
        return self._robust_optimum(total, lower, upper, robust, anchor, risk)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (covariances omitted)."""
        return {
            "kind": "transfer",
            "domains": list(self.domains),
            "weights": dict(self.weights),
            "params": {d: {k: (dict(v) if isinstance(v, dict) else v) for k, v in p.items()} for d, p in self.params.items()},
            "offsets": dict(self.offsets),
            "domain_offsets": {d: dict(v) for d, v in self.domain_offsets.items()},
            "noise": self.noise,
            "domain_noise": dict(self.domain_noise),
            "scale": self.scale,
            "budgets": dict(self.budgets),
            "n_obs": self.n_obs,
            "dof": self.dof,
            "risk": self.risk,
            "forms": list(self.forms),
        }


def objective_weights(
    values: Sequence[float], losses: Sequence[Mapping[str, float]], domains: Sequence[str]
) -> dict[str, float] | None:
    """The fixed non-negative weights with ``value = sum_d w_d loss_d`` for every run, if any.

    Solved by non-negative least squares; accepted when every run is reproduced within a
    relative 1e-6. The mean (metric ``"loss"``) gives ``1/m`` each; an objective that is not a
    weighting of the per-domain losses (e.g. mean perplexity) gives ``None``.

    Args:
        values: The runs' objective values.
        losses: The runs' per-domain losses (each must name every domain).
        domains: Domain order.

    Returns:
        Domain -> weight, or ``None`` when no weighting reproduces the objective (or too few runs).
    """
    doms = list(domains)
    if len(values) != len(losses) or len(values) < len(doms) or len(doms) == 0:
        return None
    try:
        mat = np.array([[float(row[d]) for d in doms] for row in losses])
        y = np.array([float(v) for v in values])
    except (KeyError, TypeError, ValueError):
        return None
    if not (np.all(np.isfinite(mat)) and np.all(np.isfinite(y))):
        return None
    w, _ = optimize.nnls(mat, y)
    tol = _WEIGHT_RTOL * max(1.0, float(np.max(np.abs(y))))
    if float(np.max(np.abs(mat @ w - y))) > tol or w.sum() <= 0:
        return None
    return {d: float(v) for d, v in zip(doms, w)}


def fit_transfer(
    observations: Sequence[TransferObservation],
    *,
    weights: Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] | None = None,
    risk: float = DEFAULT_RISK,
    forms: str = "power",
    pool_exponents: float | str | None = None,
    pool_offsets: float | str | None = None,
    progress: Progress | None = None,
    start: TransferLaw | None = None,
) -> TransferLaw:
    """Fit the per-domain transfer law to runs at any number of budgets/groups.

    Args:
        observations: ``(allocation tokens per domain, per-domain losses, group key)`` triples.
            The losses must name exactly the allocation's domains (validation domain = training
            domain). A group is one budget's design run with one seed.
        weights: Objective weight per domain (non-negative, not all 0); default the mean (``1/m``).
            :func:`objective_weights` recovers them from runs.
        noise: Known noise sd of the per-domain losses of runs sharing a seed (scalar or per
            domain); default the residual estimate.
        risk: Default risk aversion of the robust allocation.
        forms: Per-domain law form (:data:`FORMS`): ``"power"`` (default), the transfer law
            above; ``"exp"``, the exponential (Data Mixing Laws) form with a power law in total
            tokens, ``E_{k,g} + k_k N^(-alpha_k) exp(sum_j t_kj r_j)``; ``"auto"``, per domain
            the form with the smaller leave-one-run-out squared error (linearised, so no refits).
            The objective's optimum and robust step use whichever forms were chosen.
        pool_exponents: Partial pooling of the exponents across validation domains (each
            domain's ``log gamma_k``, or ``log alpha_k`` in the exponential form, shrunk toward
            a fitted common mean; empirical Bayes, :func:`optuna_autoscale.laws._pooled_prior`):
            ``None`` (default) keeps the fixed independent priors; a number is the pooling sd
            (log units); ``"auto"`` takes it from the spread of the unpooled fits. Each
            form's domains are fitted under the fixed priors, then refitted under the pooled
            prior, whose sd includes the common mean's uncertainty (so the Laplace covariances
            and the effective residual dof count it).
        pool_offsets: The same for the power form's offsets ``log N0_k``.
        progress: Called as ``progress(done, total)`` before the first and after every domain fit
            (a fit of 100 domains takes a minute or more); e.g.
            :func:`optuna_autoscale._progress.terminal_progress`.
        start: A law this function fitted to a superset of these runs (the same domains), e.g.
            before one budget was left out. Each domain is then refitted once from ``start``'s optimum
            in ``start``'s form, and in its other form too where the two were close in ``start``
            (leave-one-run-out errors within a factor 1.3; the smaller one is taken), under ``start``'s
            pooled priors (``forms`` and the pooling options are ignored): no multi-start search and
            no sigma polish rounds. About a fifth of a full fit's cost
            (:func:`~optuna_autoscale.evidence.fit_evidence`'s leave-one-budget-out refits use it).

    Returns:
        A :class:`TransferLaw`.

    Raises:
        TypeError: for malformed observations.
        ValueError: for losses naming other domains than the allocation, non-finite values,
            fewer than 2 domains, a domain never varied within a group, or bad weights/noise.

    Example:
        >>> from optuna_autoscale.simulate import transfer
        >>> land = transfer(3, seed=0)
        >>> obs = []
        >>> for budget in (1e8, 4e8):
        ...     base = {d: budget / 3 for d in land.domains}
        ...     runs = [base] + [{**base, d: base[d] * x} for d in land.domains for x in (0.2, 3.0)]
        ...     obs += [(a, land.per_domain_true_loss(a), f"{budget:g}") for a in runs]
        >>> law = fit_transfer(obs)
        >>> sorted(law.optimal_allocation(4e9))
        ['d0', 'd1', 'd2']
    """
    if isinstance(observations, (str, bytes)) or not isinstance(observations, Sequence) or len(observations) == 0:
        raise TypeError("observations must be a non-empty sequence of (allocation, per-domain losses, group) triples.")
    first = observations[0]
    if not isinstance(first, (tuple, list)) or len(first) != 3 or not isinstance(first[0], Mapping):
        raise TypeError(f"observation 0 must be an (allocation, per-domain losses, group) triple, got {first!r}.")
    domains = tuple(first[0])
    m = len(domains)
    if m < 2:
        raise ValueError("The transfer law needs at least 2 domains.")
    if forms not in FORMS:
        raise ValueError(f"forms must be one of {FORMS!r}, got {forms!r}.")
    rows, ys, groups = [], [], []
    for k, obs in enumerate(observations):
        if not isinstance(obs, (tuple, list)) or len(obs) != 3:
            raise TypeError(f"observation {k} must be an (allocation, per-domain losses, group) triple, got {obs!r}.")
        rows.append(check_allocation(obs[0], domains, f"observation {k}"))
        losses = obs[1]
        if not isinstance(losses, Mapping):
            raise TypeError(f"observation {k}'s per-domain losses must be a mapping domain -> loss, got {losses!r}.")
        if set(losses) != set(domains):
            raise ValueError(
                f"observation {k}'s per-domain losses must name exactly the domains {list(domains)!r} (validation "
                f"domain = training domain); got {sorted(losses)!r}. Record loss_<domain> for every domain."
            )
        ys.append([check_value(losses[d], f"observation {k}'s loss of {d!r}") for d in domains])
        groups.append(str(obs[2]))
    x = np.array(rows)
    ymat = np.array(ys)
    if np.any(x.sum(axis=1) <= 0):
        raise ValueError("Every observation needs a positive total number of tokens.")
    if weights is None:
        w = np.full(m, 1.0 / m)
    else:
        if not isinstance(weights, Mapping) or set(weights) != set(domains):
            raise ValueError(f"weights must map exactly the domains {list(domains)!r} to weights >= 0, got {weights!r}.")
        w = np.array([check_value(weights[d], f"weight of {d!r}") for d in domains])
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be >= 0 and not all 0, got {dict(weights)!r}.")
    if isinstance(noise, Mapping):
        if set(noise) != set(domains):
            raise ValueError(f"noise must be one sd or map exactly the domains {list(domains)!r}, got {noise!r}.")
        noises: list[float | None] = [float(noise[d]) for d in domains]
    else:
        noises = [None if noise is None else float(noise)] * m
    for v in noises:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"noise must be a finite sd >= 0 (loss units), got {noise!r}.")
    gnames, gidx, budgets, scale = group_design(x, groups, domains)
    ng = len(gnames)
    u = x / scale
    tried = ("power", "exp") if forms == "auto" else (forms,)
    pool = {"exponent": pool_exponents, "offset": pool_offsets}
    for v in pool.values():
        if v is not None and v != "auto" and (isinstance(v, str) or not (math.isfinite(float(v)) and float(v) > 0)):
            raise ValueError(f"pool_exponents / pool_offsets must be None, 'auto' or a positive sd, got {v!r}.")
    passes = sum(2 if any(pool.get(name) is not None for name in _model(f, m, 0).pool_index) else 1 for f in tried)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], m * passes)

    if start is not None:
        if not isinstance(start, TransferLaw) or start.domains != domains:
            raise ValueError(f"start must be a TransferLaw of the domains {list(domains)!r}, got {start!r}.")
        passes = 1
    if progress is not None:
        progress(0, m * passes)
    fits, chosen, press = [], [], {}
    pooled_priors: dict[str, dict[str, tuple[float, float]]] = {}
    if start is not None:
        refit = _refit_from(start, m, u, ymat, gidx, ng, noises, scale, tick)
        fits, chosen, press = refit.fits, refit.chosen, refit.press
        form_thetas, pooled_priors = refit.form_thetas, refit.pooled_priors
    else:
        by_form = {f: _fit_form(f, m, u, ymat, gidx, ng, noises, pool, tick=tick) for f in tried}
        pooled_priors = {f: by_form[f][1] for f in tried if by_form[f][1]}
        form_thetas = {f: tuple(tuple(float(t) for t in fit.theta) for fit in by_form[f][0]) for f in tried}
        for k in range(m):
            cand = {f: by_form[f][0][k] for f in tried}
            best_form = min(tried, key=lambda f: cand[f].press)
            fits.append(cand[best_form])
            chosen.append(best_form)
            press[domains[k]] = {f: c.press for f, c in cand.items()}
    n = len(ymat)
    dof = n - _DomainModel(m, 0).n_params - ng
    res = np.column_stack([f.residuals for f in fits])
    norms = np.sqrt((res**2).sum(axis=0))
    if np.all(norms > 0) and n - ng > 1:
        corr = (res.T @ res) / np.outer(norms, norms)
    else:
        corr = np.ones((m, m))  # unknown: assume fully correlated (the cautious choice)
    sig = [f.sigma for f in fits]
    obj_noise = None
    if all(s is not None for s in sig):
        sv = np.array(sig, dtype=float) * w
        obj_noise = math.sqrt(max(float(sv @ corr @ sv), 0.0))
    covs = tuple(f.covariance for f in fits) if all(f.covariance is not None for f in fits) else None
    params = {d: _model(chosen[k], m, k).params(f.theta, scale, domains) for k, (d, f) in enumerate(zip(domains, fits))}
    domain_offsets = {d: {g: float(f.offsets[i]) for i, g in enumerate(gnames)} for d, f in zip(domains, fits)}
    offsets = {g: float(sum(w[k] * fits[k].offsets[i] for k in range(m))) for i, g in enumerate(gnames)}
    return TransferLaw(
        domains=domains,
        weights={d: float(v) for d, v in zip(domains, w)},
        params=params,
        offsets=offsets,
        domain_offsets=domain_offsets,
        noise=obj_noise,
        domain_noise={d: s for d, s in zip(domains, sig)},
        correlation=corr,
        scale=scale,
        budgets=budgets,
        n_obs=n,
        dof=dof,
        risk=float(risk),
        thetas=tuple(tuple(float(t) for t in f.theta) for f in fits),
        covariances=covs,
        forms=tuple(chosen),
        press=press,
        pooled_priors=pooled_priors,
        form_thetas=form_thetas,
    )
