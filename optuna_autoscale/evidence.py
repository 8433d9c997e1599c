"""Evidence-anchored predictions and recommendations from training runs (issue 11).

A joint law fitted to runs ranks mixtures worse than the runs themselves on real data, and its
optimum can sit far outside the mixtures that were tried. This module keeps the law for what it
is good at, the *change* of the loss with scale and the direction of improvement, and keeps the
observations for the rest.

* :func:`fit_eval_law`: the per-evaluation-column law for any evaluation sets
  ``L_v = E_{v,g} + beta_v (sum_j A_vj N_j + N0_v)^(-gamma_v)``, ``A_vj >= 0`` (every training
  domain's tokens as inputs; ``A_v`` is normalised to sum to 1, which loses nothing: the scale of
  ``A_v`` trades against ``N0_v`` and ``beta_v``), MAP fit with a Laplace posterior.
* :func:`fit_evidence` -> :class:`Evidence`: the default joint law on every run (the per-domain
  transfer law of :func:`optuna_autoscale.transfer.fit_transfer` with ``results.TRANSFER_FORMS``
  and ``results.TRANSFER_POOL`` when the evaluation columns are the training domains; else
  :func:`fit_eval_law`; else the separable law on the objective), plus:

  - **anchored predictions**: a tested mixture's loss at ``T`` is its own observed loss at the
    nearest budget, plus the common change (uniform's), plus the law's mixture-specific change
    shrunk by its posterior uncertainty (positive-part James-Stein:
    ``max(0, 1 - z^2 sd^2 / s^2) s``), so the tested mixtures rank as the runs do unless the law's
    differential change is clearly larger than its uncertainty. A mixture never run is anchored at
    the nearest tested mixture (total variation) plus the law's difference between the two.
  - :meth:`Evidence.predict_gain` / :meth:`Evidence.gain_interval`: predicted loss reduction
    of a mixture over a reference at the mixture's tokens, with a prediction interval for the
    difference two runs sharing a seed would show (law posterior + seed noise of the anchors and
    of the two new runs). Away from the tested mixtures the law's own misfit counts too
    (:attr:`Evidence.law_error_sd`, where the runs show one), growing with the distance from the
    nearest tested mixture, and past the tested shares it keeps growing.
  - :meth:`Evidence.recommend`: from the best tested mixture toward the law's optimum inside the
    **tested region**, only as far as the predicted gain exceeds ``risk`` posterior sds; never
    outside the region unless ``allow_outside=True`` (with a warning).
  - :meth:`Evidence.guard`: on the line from a base mixture to a candidate, the point whose predicted gain over
    the base has the best lower bound at a level (the expected gain's: law posterior, shrinkage bias, anchors'
    noise, misfit); the base unless that bound is above 0. :meth:`Evidence.recommend` and :meth:`AutoScaleResult.recommend` apply it by default (``guard=False``:
    the unguarded step).
  - :meth:`Evidence.calibration`: leave one group out, predict the held-out group's differences,
    count how often the observed ones fall inside the intervals.

Tested region: per domain, the range ``[min, max]`` of the shares the runs used (a box
intersected with the simplex). A box, not the convex hull: a DDO design (uniform base and one-domain
perturbations) spans a thin hull around the base, while its per-domain ranges are what the runs
measured for each domain's share; a mixture inside the box never sets a domain to a share no run
had. The hull would forbid every combination of two measured moves.

Absolute losses at a budget never run: with three or more distinct budgets, uniform's level
(group offset plus the law at the uniform mixture) is fitted as ``E(N) = E_inf + A N^-alpha``;
with fewer, only differences are predicted (:attr:`Evidence.absolute` is False and predictions
are relative to uniform at the same tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
from typing import Any
from typing import NamedTuple
import warnings as _warnings

import numpy as np
from scipy import optimize
from scipy import stats

from optuna_autoscale._validation import check_known_domains
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.runs import Runs


__all__ = [
    "EvalLaw",
    "fit_eval_law",
    "Evidence",
    "Recommendation",
    "Calibration",
    "Guard",
    "fit_evidence",
    "tested_region",
    "LAWS",
    "DEFAULT_SHRINK",
]

LAWS = ("auto", "transfer", "eval", "separable")
"""Laws :func:`fit_evidence` can use: ``"auto"`` = ``"transfer"`` when the evaluation columns are the
training domains and reproduce the objective, else ``"eval"`` when there are evaluation columns
reproducing it, else ``"separable"`` (the objective alone)."""
DEFAULT_SHRINK = "auto"
"""``z`` of the anchored shrinkage ``max(0, 1 - z^2 sd^2 / s^2)`` of the law's mixture-specific change:
``"auto"`` = chosen from :data:`SHRINK_GRID` by leave-one-budget-out ranking error (one budget: ``inf``, i.e.
the runs' differences carried unchanged, since no run tests the law's change with scale)."""
SHRINK_GRID = (0.0, 0.5, 1.0, 2.0, math.inf)
"""Candidate ``z`` for ``shrink="auto"`` (``inf``: no law change at all, direct transfer of the anchors)."""
DEFAULT_DRAWS = 64
"""Laplace posterior draws used for every uncertainty."""

_PRIOR_LOG_GAMMA = (math.log(0.5), 0.7)
_PRIOR_LOG_U0 = (math.log(2.0), 1.5)
_PRIOR_S_SD = 2.0
_LB = (-60.0, 60.0)
_LU = (math.log(1e-5), math.log(1e3))
_LG = (math.log(0.03), math.log(3.0))
_S_MAX = 15.0


# ------------------------------------------------------------------------------ the per-eval-column law
def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _center(v: np.ndarray, gidx: np.ndarray, ng: int) -> np.ndarray:
    out = np.array(v, dtype=float, copy=True)
    for g in range(ng):
        rows = gidx == g
        out[rows] -= v[rows].mean(axis=0)
    return out


def _eval_f(theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One column's law part at scaled tokens ``u`` (n, m); theta (p,) or draws (K, p) -> (n,) or (K, n)."""
    th = np.atleast_2d(theta)
    beta, u0, g = np.exp(th[:, 0]), np.exp(th[:, 1]), np.exp(th[:, 2])
    a = _softmax(th[:, 3:])  # (K, m)
    z = a @ u.T + u0[:, None]  # (K, n)
    f = beta[:, None] * np.maximum(z, 1e-300) ** (-g[:, None])
    return f[0] if np.ndim(theta) == 1 else f


def _eval_f_jac(theta: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    beta, u0, g = np.exp(theta[:3])
    a = _softmax(theta[3:])
    au = u @ a
    z = au + u0
    f = beta * z ** (-g)
    dz = -g * f / z
    ds = dz[:, None] * a[None, :] * (u - au[:, None])
    return f, np.column_stack([f, dz * u0, -f * np.log(z) * g, ds])


@dataclasses.dataclass(frozen=True)
class EvalLaw:
    """Per-evaluation-column laws ``L_v = E_{v,g} + beta_v (sum_j A_vj N_j + N0_v)^(-gamma_v)``.

    Build it with :func:`fit_eval_law`. ``A_v`` sums to 1 over the training domains (a softmax of
    free parameters with a ``N(0, 2)`` prior), ``N0_v > 0``, ``gamma_v`` with the prior
    ``log gamma ~ N(log 0.5, 0.7)``. The objective is ``sum_v weights_v L_v``.

    Attributes:
        domains: Training domains (``m``).
        columns: Evaluation columns (``V``).
        weights: Objective weight per column.
        thetas: Internal parameters per column ``[log beta', log N0/scale, log gamma, s_1..s_m]``, ``(V, 3+m)``.
        covariances: Laplace posterior covariance per column, ``(V, p, p)`` (None without spare dof).
        offsets: Objective offset ``sum_v w_v E_{v,g}`` per group.
        noise: Residual sd of the objective (loss units), None without spare dof.
        correlation: Residual correlation across columns (``V x V``).
        scale: Internal token unit (tokens).
        budgets: Nominal budget (median total tokens) per group.
        n_obs: Runs fitted.
    """

    domains: tuple[str, ...]
    columns: tuple[str, ...]
    weights: dict[str, float]
    thetas: np.ndarray = dataclasses.field(repr=False)
    covariances: np.ndarray | None = dataclasses.field(repr=False)
    offsets: dict[str, float]
    noise: float | None
    correlation: np.ndarray = dataclasses.field(repr=False)
    scale: float
    budgets: dict[str, float]
    n_obs: int

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        """Per column: ``beta`` (loss x tokens^gamma), ``n0`` (tokens), ``gamma``, ``transfer`` (domain -> A_vj)."""
        out = {}
        for v, th in zip(self.columns, self.thetas):
            g = math.exp(th[2])
            a = _softmax(th[3:])
            out[v] = {"beta": math.exp(th[0]) * self.scale**g, "n0": math.exp(th[1]) * self.scale, "gamma": g,
                      "transfer": {d: float(x) for d, x in zip(self.domains, a)}}
        return out

    def _wvec(self) -> np.ndarray:
        return np.array([self.weights[v] for v in self.columns])

    def columns_f(self, x: np.ndarray) -> np.ndarray:
        """Each column's law part (no offset) at allocations ``x`` (tokens, ``(n, m)``): ``(n, V)``."""
        u = np.atleast_2d(np.asarray(x, dtype=float)) / self.scale
        return np.column_stack([_eval_f(th, u) for th in self.thetas])

    def f(self, x: np.ndarray) -> np.ndarray:
        """The objective's law part (no offset) at allocations ``x`` (tokens, ``(n, m)``): ``(n,)``."""
        return self.columns_f(x) @ self._wvec()

    def predict(self, allocation: Mapping[str, float], group: str | None = None) -> float:
        """Predicted objective of an allocation (domain -> tokens), with ``group``'s offset (default: mean)."""
        x = np.array([[float(allocation[d]) for d in self.domains]])
        e = float(np.mean(list(self.offsets.values()))) if group is None else self.offsets[str(group)]
        return e + float(self.f(x)[0])

    def draws(self, k: int, seed: int = 0) -> np.ndarray:
        """``k`` Laplace posterior draws of :attr:`thetas`, correlated across columns by the residual
        correlation: ``(k, V, p)`` (the MAP repeated when there is no covariance)."""
        th = np.asarray(self.thetas)
        if self.covariances is None:
            return np.repeat(th[None], k, axis=0)
        nv, p = th.shape
        xi = np.random.default_rng(seed).standard_normal((k, nv, p))
        try:
            c = np.linalg.cholesky(np.asarray(self.correlation) + 1e-9 * np.eye(nv))
        except np.linalg.LinAlgError:
            c = np.eye(nv)
        z = np.einsum("vl,klp->kvp", c, xi)
        out = np.empty((k, nv, p))
        for v in range(nv):
            w, vec = np.linalg.eigh(self.covariances[v])
            root = vec * np.sqrt(np.maximum(w, 0.0))
            out[:, v] = th[v] + z[:, v] @ root.T
        out[..., 2] = np.clip(out[..., 2], *_LG)
        out[..., 1] = np.clip(out[..., 1], *_LU)
        out[..., 3:] = np.clip(out[..., 3:], -_S_MAX, _S_MAX)
        return out

    def f_draws(self, x: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """The objective's law part under each draw (:meth:`draws`): ``(K, n)``."""
        u = np.atleast_2d(np.asarray(x, dtype=float)) / self.scale
        w = self._wvec()
        out = np.zeros((draws.shape[0], len(u)))
        for v in range(len(self.columns)):
            if w[v] != 0:
                out += w[v] * _eval_f(draws[:, v], u)
        return out

    def optimal_allocation(
        self, total: float, lower: Mapping[str, float] | None = None, upper: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """The law's optimal allocation at ``total`` tokens within per-domain token bounds (convex; SLSQP)."""
        m = len(self.domains)
        lo = np.zeros(m) if lower is None else np.array([float(lower[d]) for d in self.domains]) / total
        hi = np.ones(m) if upper is None else np.minimum(np.array([float(upper[d]) for d in self.domains]) / total, 1.0)
        s = _solve_simplex(lambda w: float(self.f(w[None, :] * total)[0]), lo, hi)
        return dict(zip(self.domains, (s * total).tolist()))


def _project_box_simplex(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{lo <= w <= hi, sum w = 1}`` (bisection on the shift)."""
    a, b = float((v - hi).min()) - 1.0, float((v - lo).max()) + 1.0
    for _ in range(100):
        t = 0.5 * (a + b)
        if np.clip(v - t, lo, hi).sum() > 1.0:
            a = t
        else:
            b = t
    return np.clip(v - 0.5 * (a + b), lo, hi)


def _solve_simplex(fun: Any, lo: np.ndarray, hi: np.ndarray, starts: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Minimise ``fun(shares)`` on the box-bounded simplex from the box centre and ``starts``."""
    m = len(lo)
    cands = [_project_box_simplex(np.full(m, 1.0 / m), lo, hi)] + [_project_box_simplex(np.asarray(s), lo, hi) for s in starts]
    best, best_v = cands[0], fun(cands[0])
    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}]
    for x0 in cands:
        with _warnings.catch_warnings(), np.errstate(all="ignore"):
            _warnings.simplefilter("ignore")
            res = optimize.minimize(fun, x0, method="SLSQP", bounds=list(zip(lo, hi)), constraints=cons,
                                    options={"ftol": 1e-12, "maxiter": 300})
        w = _project_box_simplex(np.asarray(res.x, dtype=float), lo, hi)
        v = fun(w)
        if np.isfinite(v) and v < best_v:
            best, best_v = w, v
    return best


def _fit_column(u: np.ndarray, y: np.ndarray, gidx: np.ndarray, ng: int, w0: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """MAP fit of one column (offsets profiled out); its theta, Laplace covariance and residuals."""
    n, m = u.shape
    p = 3 + m
    mu = np.r_[0.0, _PRIOR_LOG_U0[0], _PRIOR_LOG_GAMMA[0], np.zeros(m)]
    prec = np.r_[0.0, _PRIOR_LOG_U0[1] ** -2, _PRIOR_LOG_GAMMA[1] ** -2, np.full(m, _PRIOR_S_SD**-2)]
    lo = np.r_[_LB[0], _LU[0], _LG[0], np.full(m, -_S_MAX)]
    hi = np.r_[_LB[1], _LU[1], _LG[1], np.full(m, _S_MAX)]
    yc = _center(y, gidx, ng)
    sigma = [0.1 * (float(np.std(yc)) or 1.0)]

    def resid(t: np.ndarray) -> np.ndarray:
        f = _eval_f(t, u)
        return np.r_[_center(f - y, gidx, ng), sigma[0] * np.sqrt(prec) * (t - mu)]

    def jac(t: np.ndarray) -> np.ndarray:
        _, j = _eval_f_jac(t, u)
        return np.vstack([_center(j, gidx, ng), np.diag(sigma[0] * np.sqrt(prec))])

    def with_beta(t: np.ndarray) -> np.ndarray:
        t = t.copy()
        t[0] = 0.0
        h = _center(_eval_f(t, u), gidx, ng)
        den = float(h @ h)
        c = float(h @ yc) / den if den > 0 else 1.0
        t[0] = math.log(c if c > 0 else abs(c) * 0.1 + 1e-12)
        return np.clip(t, lo, hi)

    # Starts: shares' linear effect on the column (more of a helpful domain -> larger A), and flat.
    try:
        coef = np.linalg.lstsq(_center(w0, gidx, ng), yc, rcond=None)[0]
        s_lin = np.clip(-coef / (np.std(coef) or 1.0), -3.0, 3.0)
    except np.linalg.LinAlgError:
        s_lin = np.zeros(m)
    starts = [with_beta(np.r_[0.0, lu, math.log(g0), s0]) for g0 in (0.3, 0.7) for lu in (math.log(0.5), math.log(3.0))
              for s0 in (s_lin, np.zeros(m))]
    scored = sorted(starts, key=lambda t: float(np.sum(resid(t) ** 2)))[:3]
    best = None
    for st in scored:
        with np.errstate(all="ignore"):
            r = optimize.least_squares(resid, st, jac=jac, bounds=(lo, hi), method="trf", max_nfev=200)
        if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    assert best is not None
    theta = best.x
    ng_dof = n - p - ng
    f = _eval_f(theta, u)
    r0 = _center(f - y, gidx, ng)
    if ng_dof > 0:
        sigma[0] = max(math.sqrt(float(r0 @ r0) / ng_dof), 1e-9)
        with np.errstate(all="ignore"):
            theta = optimize.least_squares(resid, theta, jac=jac, bounds=(lo, hi), method="trf", max_nfev=200).x
    f, j = _eval_f_jac(theta, u)
    r = _center(f - y, gidx, ng)
    cov = None
    if ng_dof > 0:
        s2 = max(float(r @ r) / ng_dof, 1e-18)
        jc = _center(j, gidx, ng)
        a = jc.T @ jc / s2 + np.diag(prec)
        wv, vec = np.linalg.eigh(a)
        wv = np.maximum(wv, 1e-12 * max(float(wv.max()), 1e-300))
        cov = (vec / wv) @ vec.T
    return theta, cov, r


def fit_eval_law(runs: Runs, *, weights: Mapping[str, float] | None = None) -> EvalLaw:
    """Fit :class:`EvalLaw` to every run: one law per evaluation column, any columns.

    Args:
        runs: The runs (:func:`~optuna_autoscale.runs.load_runs`), with ``loss_<name>`` columns.
        weights: Objective weight per column; default the weighting that reproduces ``runs.value``
            (:func:`~optuna_autoscale.transfer.objective_weights`), else the mean.

    Raises:
        ValueError: without evaluation columns, with fewer runs than parameters plus offsets, or when
            a domain's share never changes within a group.
    """
    if not runs.loss_names:
        raise ValueError("fit_eval_law needs loss_<name> evaluation columns; these runs have none.")
    m = runs.m
    runs.check_enough(3 + m - 1, "The per-evaluation-column law")
    gnames = runs.group_names
    gidx = np.array([gnames.index(g) for g in runs.groups])
    ng = len(gnames)
    x = runs.allocations
    varies = np.zeros(m, dtype=bool)
    for g in range(ng):
        xs = runs.weights[gidx == g]
        if len(xs) > 1:
            varies |= np.ptp(xs, axis=0) > 1e-9
    if not varies.all():
        raise ValueError(
            f"domains {[d for d, v in zip(runs.domains, varies) if not v]!r} never change share within a group, so their "
            "effect cannot be separated from the group offsets; add runs that vary them."
        )
    w = _objective_weights(runs) if weights is None else {str(k): float(v) for k, v in weights.items()}
    if w is None:
        w = {v: 1.0 / len(runs.loss_names) for v in runs.loss_names}
    budgets = {g: runs.group_budget(g) for g in gnames}
    scale = float(np.exp(np.mean(np.log(np.array(list(budgets.values())) / m))))
    u = x / scale
    thetas, covs, res = [], [], []
    for k in range(len(runs.loss_names)):
        th, cov, r = _fit_column(u, runs.losses[:, k], gidx, ng, runs.weights)
        thetas.append(th)
        covs.append(cov)
        res.append(r)
    res_m = np.column_stack(res)
    norms = np.sqrt((res_m**2).sum(axis=0))
    corr = (res_m.T @ res_m) / np.outer(norms, norms) if np.all(norms > 0) else np.ones((len(res), len(res)))
    wv = np.array([w.get(v, 0.0) for v in runs.loss_names])
    law = EvalLaw(
        domains=runs.domains, columns=runs.loss_names, weights={v: float(a) for v, a in zip(runs.loss_names, wv)},
        thetas=np.array(thetas), covariances=None if any(c is None for c in covs) else np.array(covs),
        offsets={}, noise=None, correlation=corr, scale=scale, budgets=budgets, n_obs=runs.n,
    )
    f = law.f(x)
    offsets = {g: float(np.mean((runs.losses @ wv - f)[gidx == i])) for i, g in enumerate(gnames)}
    r_obj = res_m @ wv
    dof = runs.n - ng - (3 + m)
    noise = math.sqrt(float(r_obj @ r_obj) / dof) if dof > 0 else None
    return dataclasses.replace(law, offsets=offsets, noise=noise)


def _objective_weights(runs: Runs) -> dict[str, float] | None:
    from optuna_autoscale.transfer import objective_weights

    if not runs.loss_names:
        return None
    rows = [dict(zip(runs.loss_names, r)) for r in runs.losses.tolist()]
    return objective_weights(runs.value.tolist(), rows, list(runs.loss_names))


# ------------------------------------------------------------------------------ law views
class _View:
    """What :class:`Evidence` needs of a law: its objective part (no offset) at allocations, the same
    under posterior draws, group offsets, residual noise and the bounded point optimum."""

    kind: str
    law: Any
    offsets: dict[str, float]
    noise: float | None

    def f(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fk(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def optimum(self, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        domains = self.law.domains
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            a = self.law.optimal_allocation(total, lower=dict(zip(domains, (lo * total).tolist())),
                                            upper=dict(zip(domains, (hi * total).tolist())), robust=False)
        return np.array([a[d] for d in domains]) / total


class _EvalView(_View):
    kind = "eval"

    def __init__(self, law: EvalLaw, k: int, seed: int) -> None:
        self.law, self.offsets, self.noise = law, dict(law.offsets), law.noise
        self._draws = law.draws(k, seed)

    def f(self, x: np.ndarray) -> np.ndarray:
        return self.law.f(x)

    def fk(self, x: np.ndarray) -> np.ndarray:
        return self.law.f_draws(x, self._draws)

    def optimum(self, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        s = _solve_simplex(lambda w: float(self.law.f(w[None, :] * total)[0]), lo, hi)
        return s


class _TransferView(_View):
    """A :class:`~optuna_autoscale.transfer.TransferLaw` (its per-domain models and Laplace posteriors)."""

    kind = "transfer"

    def __init__(self, law: Any, k: int, seed: int) -> None:
        self.law, self.noise = law, law.noise
        self.offsets = dict(law.offsets)
        self._models = law._models()
        self._w = np.array([law.weights[d] for d in law.domains])
        self._draws = None
        if law.covariances is not None:
            m = len(self._models)
            pmax = max(mod.n_params for mod in self._models)
            xi = np.random.default_rng(seed).standard_normal((k, m, pmax))
            try:
                c = np.linalg.cholesky(np.asarray(law.correlation, dtype=float) + 1e-9 * np.eye(m))
            except np.linalg.LinAlgError:
                c = np.eye(m)
            z = np.einsum("kl,slp->skp", c, xi)
            self._draws = []
            for j, mod in enumerate(self._models):
                w, v = np.linalg.eigh(law.covariances[j])
                root = v * np.sqrt(np.maximum(w, 0.0))
                lo, hi = mod.bounds()
                self._draws.append(np.clip(np.asarray(law.thetas[j]) + z[:, j, : mod.n_params] @ root.T, lo, hi))

    def f(self, x: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(x) / self.law.scale
        out = np.zeros(len(u))
        for j, mod in enumerate(self._models):
            if self._w[j]:
                out += self._w[j] * mod.values(np.asarray(self.law.thetas[j]), u)[0]
        return out

    def fk(self, x: np.ndarray) -> np.ndarray:
        if self._draws is None:
            return self.f(x)[None, :]
        u = np.atleast_2d(x) / self.law.scale
        k = len(self._draws[0])
        out = np.zeros((k, len(u)))
        with np.errstate(all="ignore"):
            for j, mod in enumerate(self._models):
                if self._w[j]:
                    out += self._w[j] * mod.values(self._draws[j], u)
        return out


class _SeparableView(_View):
    kind = "separable"

    def __init__(self, law: Any, k: int, seed: int) -> None:
        self.law, self.noise, self.offsets = law, law.noise, dict(law.offsets)
        self._p = np.array([[law.params[d]["beta"], law.params[d]["n0"], law.params[d]["gamma"]] for d in law.domains])
        self._draws = None
        if law.covariance is not None:
            rng = np.random.default_rng(seed)
            th = np.asarray(law.theta, dtype=float)
            self._draws = rng.multivariate_normal(th, law.covariance, size=k, method="eigh")

    def f(self, x: np.ndarray) -> np.ndarray:
        b, n0, g = self._p.T
        return (b * (np.atleast_2d(x) + n0) ** (-g)).sum(axis=1)

    def fk(self, x: np.ndarray) -> np.ndarray:
        if self._draws is None:
            return self.f(x)[None, :]
        beta, u0, g = self.law._model.unpack(self._draws)  # (K, m) each, in scaled units
        u = np.atleast_2d(x) / self.law.scale
        with np.errstate(all="ignore"):
            return (beta[:, None, :] * (u[None, :, :] + u0[:, None, :]) ** (-g[:, None, :])).sum(axis=2)


# ------------------------------------------------------------------------------ results
@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What :meth:`Evidence.recommend` returns.

    Attributes:
        mixture: The recommended mixture (weights, ``tokens``).
        anchor: The best tested mixture (by anchored prediction at ``tokens``), where the step starts.
        optimum: The law's optimum at ``tokens`` inside the region searched (inside the tested region
            unless ``allow_outside``).
        step: How far along anchor -> optimum the recommendation went (0 = the anchor, 1 = the optimum).
        gain: Predicted loss reduction over the anchor (loss units, >= 0).
        interval: Prediction interval of that reduction for a pair of runs sharing a seed.
        gain_over_uniform: Predicted loss reduction over uniform at ``tokens`` (negative = worse).
        uniform_interval: Its interval.
        inside: Whether the mixture lies in the tested region.
        predicted_loss: Predicted loss at ``tokens`` (absolute when :attr:`Evidence.absolute`, else
            relative to uniform at ``tokens``).
        warnings: Notes the caller must show (outside the evidence, worse than uniform, ...).
        best_tested: The best tested mixture at ``tokens`` by anchored prediction (None when unknown).
        gain_over_best: Predicted loss reduction over :attr:`best_tested` (None when unknown).
        best_interval: Its interval.
        guard: How far the guard (:meth:`Evidence.guard`) went from the base toward :attr:`candidate`
            (0 = stayed at the base, 1 = the whole way), or None when no guard was applied (``guard=False``).
        candidate: The recommendation without the guard (the in-region rule's mixture), or None when unguarded.
        level: Level of every interval.
        capped: Domain -> its cap (tokens) for every domain the mixture sits at: there the caps, not the fitted
            law, decide its share (empty when no cap binds).
        uncapped: The mixture the same rule gives without any caps, when :attr:`capped` is not empty (else None).
    """

    mixture: Mixture
    anchor: Mixture
    optimum: Mixture
    step: float
    gain: float
    interval: tuple[float, float]
    gain_over_uniform: float
    uniform_interval: tuple[float, float]
    inside: bool
    predicted_loss: float
    warnings: tuple[str, ...] = ()
    best_tested: Mixture | None = None
    gain_over_best: float | None = None
    best_interval: tuple[float, float] | None = None
    guard: float | None = None
    candidate: Mixture | None = None
    level: float = 0.8
    capped: dict[str, float] = dataclasses.field(default_factory=dict)
    uncapped: Mixture | None = None


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Leave-one-group-out coverage of the gain intervals (:meth:`Evidence.calibration`).

    Attributes:
        level: Nominal level of the intervals.
        coverage: Share of held-out differences inside their intervals (nan when none).
        n: Number of held-out differences.
        by_group: Group -> (inside, total).
        mean_abs_error: Mean absolute error of the predicted differences (loss units).
        inside: (inside, total) over the pairs whose two mixtures both lie in the tested region of the runs
            refitted (interpolation; where recommendations are made by default).
        outside: (inside, total) over the other pairs (extrapolation past every refitted run's shares).
    """

    level: float
    coverage: float
    n: int
    by_group: dict[str, tuple[int, int]]
    mean_abs_error: float
    inside: tuple[int, int] = (0, 0)
    outside: tuple[int, int] = (0, 0)


@dataclasses.dataclass(frozen=True)
class Guard:
    """What :meth:`Evidence.guard` chose on the line from a base mixture to a candidate.

    Attributes:
        shares: The chosen shares ``(m,)``: the base, the candidate, or a point between them.
        base: The base's shares.
        candidate: The candidate's shares.
        fraction: How far it went (0 = the base, 1 = the candidate).
        gain: Predicted (expected) loss reduction of the chosen point over the base.
        interval: Its confidence interval at :attr:`level`: the uncertainty of the expected gain (law
            posterior, shrinkage bias, the anchors' seed noise). The guard decides on its lower bound.
        candidate_gain: The candidate's predicted loss reduction over the base.
        candidate_interval: Its confidence interval.
        level: Level of the intervals (the lower bound used is the ``(1 - level) / 2`` quantile).
        run_interval: The chosen point's prediction interval for what one new pair of runs sharing a seed
            would show (:meth:`Evidence.gain_interval`: the new runs' seed noise added).
    """

    shares: np.ndarray
    base: np.ndarray
    candidate: np.ndarray
    fraction: float
    gain: float
    interval: tuple[float, float]
    candidate_gain: float
    candidate_interval: tuple[float, float]
    level: float
    run_interval: tuple[float, float] = (0.0, 0.0)

    def note(self, base: str, candidate: str, domains: Sequence[str], undo: str = "guard=False") -> str | None:
        """The warning saying what the guard did, or None when it kept the candidate whole."""
        if self.fraction >= 1.0 - 1e-9:
            return None
        lo, hi = self.candidate_interval
        cw = ", ".join(f"{d} {v:.3f}" for d, v in zip(domains, self.candidate))
        if self.fraction <= 1e-9:
            why = "that includes 0" if hi >= 0 else "entirely below 0 (predicted worse)"
            return (f"stayed at {base}: the predicted gain {self.candidate_gain:+.3f} of {candidate} ({cw}) over it has "
                    f"an {self.level:.0%} interval ({lo:+.3f}, {hi:+.3f}) {why}, and no point between them has a "
                    f"lower bound above 0: the evidence does not support leaving {base} ({undo}: {candidate})")
        glo, ghi = self.interval
        rlo, rhi = self.run_interval
        return (f"moved {self.fraction:.0%} of the way from {base} toward {candidate} ({cw}): there the expected gain "
                f"over {base} {self.gain:+.3f} has the best {self.level:.0%} lower bound (interval {glo:+.3f} to "
                f"{ghi:+.3f}; one pair of runs at the target, seed noise included: {rlo:+.3f} to {rhi:+.3f}); the whole "
                f"way's gain {self.candidate_gain:+.3f} has the interval ({lo:+.3f}, {hi:+.3f}) ({undo}: {candidate})")


class _Point(NamedTuple):
    """One anchored prediction (:meth:`Evidence._point`)."""

    value: float  # offset-free predicted loss
    draws: np.ndarray  # the law part's posterior draws (K,)
    bias: float  # shrinkage bias of the law's change with scale
    anchor: int  # the nearest tested mixture
    rho: float  # correlation of the law's error here with the anchor's (1 at the anchor itself)
    n: float  # anchor runs at the anchor budget
    kappa: float  # share of the anchor runs' mean residual kept
    shares: np.ndarray
    tokens: float  # where the prediction is made
    anchor_tokens: float  # the anchor runs' budget


def tested_region(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """The tested region: per-domain ``(min, max)`` of the shares the runs used, ``(m,)`` each.

    A mixture is inside when every share lies in its domain's range (the box intersected with the
    simplex; see the module docstring for why a box and not the convex hull).
    """
    return runs.weights.min(axis=0), runs.weights.max(axis=0)


@dataclasses.dataclass
class Evidence:
    """A joint law fitted to every run, with predictions anchored in the runs. Build it with :func:`fit_evidence`.

    Predicted losses at ``tokens`` are in *offset-free* units internally (law part plus the
    observation's residual); public methods return gains (differences, valid everywhere) or,
    for :meth:`predict`, absolute losses when :attr:`absolute` (three or more budgets) else
    losses relative to uniform at the same tokens.

    Attributes:
        runs: The runs fitted.
        law: The fitted law (:class:`~optuna_autoscale.transfer.TransferLaw`, :class:`EvalLaw` or
            :class:`~optuna_autoscale.laws.SeparableLaw`).
        kind: ``"transfer"``, ``"eval"`` or ``"separable"``.
        noise: Seed-noise sd of one run's objective (loss units), pooled over the runs.
        noise_source: ``"replicates"`` (same mixture and tokens in several groups, i.e. seeds; the normal sd their
            median absolute deviation implies), ``"law residual"`` (less the misfit shared across groups when a
            mixture was run in several), or ``"given"`` / ``"given per budget"`` (:func:`fit_evidence`'s ``noise``).
        noise_by_budget: Seed-noise sd at each distinct run total, from a power law in tokens fitted to the
            replicate deviations or law residuals, where the runs show the noise falling with tokens (a one-sided
            likelihood-ratio test at 5%, :func:`_budget_noise`); empty when one pooled :attr:`noise` fits every
            budget. :meth:`noise_at` reads it.
        shrink: ``z`` of the anchored shrinkage (per unit of extrapolation ratio with :attr:`shrink_span`).
        shrink_span: ``(smallest, largest)`` budget when ``z`` grows with the distance extrapolated: at ``T``
            tokens the shrinkage uses ``shrink * log(T / largest) / log(largest / smallest)`` (0 up to the largest
            budget); None: ``shrink`` at every ``T``.
        risk: Posterior sds the recommendation's predicted gain must exceed.
        misfit_sd: sd of the law's residuals that persists across groups for the same mixture (the part of an
            observation the law misses and the runs measure), from the residuals' covariance across groups;
            None when no mixture was run in two groups (then observations are kept whole).
        law_error_sd: sd of the law's error at a mixture no run anchors, where the runs show one: the larger of
            :attr:`misfit_sd` and the residual sd less the seed noise, each counted when it passes a 5% test
            (else 0). A prediction's uncertainty grows
            from the anchor's toward it with the distance from the nearest tested mixture (see :meth:`_point`).
        absolute: Whether absolute losses are predicted (uniform's level fitted over >= 3 budgets).
        level: ``(E_inf, A, alpha)`` of uniform's level ``E(N) = E_inf + A N^-alpha``, or None.
        warnings: Notes from the fit.
    """

    runs: Runs
    law: Any
    kind: str
    noise: float
    noise_source: str
    shrink: float
    risk: float
    misfit_sd: float | None
    law_error_sd: float
    absolute: bool
    level: tuple[float, float, float] | None
    warnings: list[str]
    _view: _View = dataclasses.field(repr=False)
    shrink_span: tuple[float, float] | None = None
    noise_by_budget: dict[float, float] = dataclasses.field(default_factory=dict)
    _options: dict[str, Any] = dataclasses.field(repr=False, default_factory=dict)

    # ----------------------------------------------------------------- internals
    @property
    def domains(self) -> tuple[str, ...]:
        return self.runs.domains

    def _uniform(self) -> np.ndarray:
        return np.full(self.runs.m, 1.0 / self.runs.m)

    def noise_at(self, tokens: float) -> float:
        """Seed-noise sd of one run at ``tokens``: :attr:`noise_by_budget` interpolated log-linearly between
        budgets and held at the nearest end outside them (seed noise shrinks with scale, so holding it past the
        largest budget errs wide); :attr:`noise` when there is no per-budget estimate."""
        return _noise_at(self.noise_by_budget, self.noise, tokens)

    def _level(self, tokens: float) -> float:
        if self.level is None:
            return 0.0
        e, a, al = self.level
        return float(e + a * tokens ** (-al))

    def _anchors(self) -> dict[str, Any]:
        """Per tested mixture: shares, its runs' tokens, de-offset values (y - E_g) and residual-free parts."""
        if "anchors" in self._options:
            return self._options["anchors"]
        r = self.runs
        ids = r.mixture_ids()
        off = np.array([self._view.offsets[g] for g in r.groups])
        res = r.value - off - self._view.f(r.allocations)  # each run's residual from the law
        mix = {}
        for i in np.unique(ids):
            rows = np.flatnonzero(ids == i)
            mix[int(i)] = {"w": r.weights[rows[0]], "tokens": r.tokens[rows], "res": res[rows]}
        self._options["anchors"] = mix
        return mix

    def _anchor_terms(self, tokens: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """At ``tokens``, per tested mixture: shares W (k, m), offset-free anchored prediction F (k,),
        law-part draws L (K, k) of the shrunk change, its MAP value, the anchor noise count, and the
        anchor budget."""
        key = ("terms", float(tokens), float(self.shrink), self.misfit_sd)
        if key in self._options:
            return self._options[key]
        # The law's evaluations do not depend on the shrinkage or the anchor mode: cached by tokens alone (the
        # shrinkage choice re-reads them for every z and mode).
        law_key = ("law terms", float(tokens))
        if law_key not in self._options:
            self._options[law_key] = self._law_terms(tokens)
        w, anchor_n, n_anchor, obs, f, fk, s, sk, sd = self._options[law_key]
        k = len(w)
        lam = self._lambda(s, sd, tokens)
        # Offset-free prediction at T: the anchor observation (the law at the anchor budget plus the
        # part kappa of the residual that persists across groups) moved by uniform's change and the
        # shrunk mixture-specific change.
        kappa = self._kappa(n_anchor, anchor_n)
        base = f[2 * k:3 * k] + kappa * obs - f[3 * k:] + f[k:2 * k]
        pred = base + lam * s
        lk = lam[None, :] * sk + (fk[:, k:2 * k] - fk[:, 3 * k:]) - (f[k:2 * k] - f[3 * k:])[None, :]
        bias = (1.0 - lam) * s
        out = (w, pred, lk, bias, n_anchor, anchor_n)
        self._options[key] = out
        self._options[("resid",) + key[1:]] = kappa * obs
        self._options[("kappa",) + key[1:]] = kappa
        return out

    def _law_terms(self, tokens: float) -> tuple[np.ndarray, ...]:
        """The shrinkage-free part of :meth:`_anchor_terms`: anchors and the law at ``tokens`` and at their budgets."""
        mix = self._anchors()
        ids = sorted(mix)
        w = np.array([mix[i]["w"] for i in ids])
        k = len(ids)
        lt = math.log(tokens)
        anchor_n = np.zeros(k)
        n_anchor = np.zeros(k)
        obs = np.zeros(k)
        for j, i in enumerate(ids):
            tk, res = mix[i]["tokens"], mix[i]["res"]
            d = np.abs(np.log(tk) - lt)
            near = d <= d.min() + 1e-9
            anchor_n[j] = float(np.median(tk[near]))
            obs[j] = float(np.mean(res[near]))  # the anchor runs' mean residual
            n_anchor[j] = int(near.sum())
        u = self._uniform()
        # Allocations: the mixture and uniform at T and at the anchor budget.
        xa = np.vstack([w * tokens, u[None, :] * tokens * np.ones((k, 1)), w * anchor_n[:, None], u[None, :] * anchor_n[:, None]])
        f = self._view.f(xa)
        fk = self._view.fk(xa)
        s = (f[:k] - f[k:2 * k]) - (f[2 * k:3 * k] - f[3 * k:])
        sk = (fk[:, :k] - fk[:, k:2 * k]) - (fk[:, 2 * k:3 * k] - fk[:, 3 * k:])
        sd = sk.std(axis=0) if len(sk) > 1 else np.zeros(k)
        return w, anchor_n, n_anchor, obs, f, fk, s, sk, sd

    def _kappa(self, n_anchor: np.ndarray, anchor_n: np.ndarray) -> np.ndarray:
        """The share of an anchor's mean residual kept: persistent misfit over misfit plus seed noise (at the
        anchor budgets ``anchor_n``)."""
        if self.misfit_sd is None:
            return np.ones_like(n_anchor, dtype=float)
        t2 = self.misfit_sd**2
        noise2 = _noise_at(self.noise_by_budget, self.noise, np.asarray(anchor_n, dtype=float)) ** 2
        return t2 / np.maximum(t2 + noise2 / n_anchor, 1e-300)

    def _point(self, shares: np.ndarray, tokens: float) -> _Point:
        """Offset-free prediction of ``shares`` at ``tokens``: anchored at the nearest tested mixture (total
        variation), plus the law's difference from it."""
        return self._points(np.asarray(shares, dtype=float)[None, :], tokens)[0]

    def _points(self, shares: np.ndarray, tokens: float) -> list[_Point]:
        """:meth:`_point` for each row of ``shares`` (n, m), with one law evaluation per anchor used (a line of
        candidates costs about as much as one point: the law's posterior draws dominate the time)."""
        w, pred, lk, bias, n_anchor, anchor_n = self._anchor_terms(tokens)
        key = (float(tokens), float(self.shrink), self.misfit_sd)
        kappas, resid = self._options[("kappa",) + key], self._options[("resid",) + key]
        tv = 0.5 * np.abs(w[None, :, :] - shares[:, None, :]).sum(axis=2)
        js = np.argmin(tv, axis=1)
        out: list[_Point | None] = [None] * len(shares)
        for j in np.unique(js):
            j = int(j)
            rows = np.flatnonzero(js == j)
            kappa = float(kappas[j])
            away = [i for i in rows if tv[i, j] > 1e-6]
            for i in rows:
                if tv[i, j] <= 1e-6:
                    out[i] = _Point(float(pred[j]), lk[:, j], float(bias[j]), j, 1.0, float(n_anchor[j]), kappa, shares[i],
                                    float(tokens), float(anchor_n[j]))
            if not away:
                continue
            v, dev, b = self._relative(shares[away], j, tokens)
            for k, i in enumerate(away):
                # The anchor's own residual belongs to the anchor: it fades out over the typical distance between
                # tested mixtures (median nearest-neighbour total variation), beyond which the law speaks alone.
                rho = self._rho(float(tv[i, j]))
                out[i] = _Point(float(pred[j] - (1.0 - rho) * resid[j] + v[k]), lk[:, j] + dev[:, k], float(bias[j] + b[k]),
                                j, rho, float(n_anchor[j]), kappa, shares[i], float(tokens), float(anchor_n[j]))
        return out  # type: ignore[return-value]

    def _rho(self, tv: float) -> float:
        """Correlation of the law's errors at two mixtures ``tv`` apart (total variation): 1 at the same mixture,
        falling linearly to 0 at the typical spacing of the tested mixtures."""
        return max(0.0, 1.0 - tv / self._spacing())

    def _anchor_var(self, p: _Point) -> float:
        """Variance of the part of ``p``'s prediction that the anchor and the law's misfit leave uncertain.

        At a tested mixture it is the anchor runs' seed noise (the share kappa of it that the kept residual
        carries); away from every tested mixture it grows to the law's own error (:attr:`law_error_sd`): a
        prediction far from the evidence is as uncertain as the law's misfit, not only as its posterior.
        """
        return p.rho**2 * self._seed_var(p) + self.law_error_sd**2 * (1.0 - p.rho**2) + self._outside_var(p.shares)

    def _outside_var(self, shares: np.ndarray) -> float:
        """Variance for leaving the tested region: no run bounds the law's error there, so it grows with the
        distance outside (total variation), one spread of the tested mixtures' losses per typical spacing."""
        if "box" not in self._options:
            ids = self.runs.mixture_ids()
            off = np.array([self._view.offsets[g] for g in self.runs.groups])
            yo = self.runs.value - off
            per = np.array([yo[ids == i].mean() for i in np.unique(ids)])
            self._options["box"] = (*tested_region(self.runs), float(np.std(per)) if len(per) > 1 else 0.0)
        lo, hi, spread = self._options["box"]
        out = 0.5 * float(np.maximum(lo - shares, 0.0).sum() + np.maximum(shares - hi, 0.0).sum())
        return (spread * out / self._spacing()) ** 2 if out > 1e-9 else 0.0

    def _seed_var(self, p: _Point) -> float:
        """Variance that the anchor runs' seed noise leaves in the anchor's kept residual."""
        return (p.kappa if self.misfit_sd is not None else 1.0) * self.noise_at(p.anchor_tokens) ** 2 / p.n

    def _noise_spec(self) -> float | dict[float, float]:
        """This fit's seed noise as :func:`fit_evidence`'s ``noise`` takes it, for refits on a subset of the runs
        (a held-out budget keeps its own noise)."""
        return dict(self.noise_by_budget) if self.noise_by_budget else self.noise

    def _anchor_cov(self, a: _Point, b: _Point) -> float:
        """Covariance of the anchor-and-misfit parts of two predictions (see :meth:`_anchor_var`)."""
        common = self._rho(0.5 * float(np.abs(a.shares - b.shares).sum())) - a.rho * b.rho
        c = self.law_error_sd**2 * common
        if a.anchor == b.anchor:
            return c + a.rho * b.rho * self._seed_var(a)
        return max(c, 0.0)

    def _spacing(self) -> float:
        if "spacing" not in self._options:
            w = np.array([m["w"] for m in self._anchors().values()])
            if len(w) < 2:
                self._options["spacing"] = 1.0
            else:
                tv = 0.5 * np.abs(w[:, None, :] - w[None, :, :]).sum(axis=2)
                np.fill_diagonal(tv, np.inf)
                self._options["spacing"] = max(float(np.median(tv.min(axis=1))), 1e-6)
        return self._options["spacing"]

    def _relative(self, shares: np.ndarray, j: int, tokens: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Law difference of mixtures ``shares`` (n, m) from tested mixture ``j`` at ``tokens``, anchored like the
        tested mixtures: the difference at ``j``'s anchor budget plus the shrunk change from there to ``tokens``.

        Returns the values (n,), their posterior deviations under the draws (K, n) and the shrinkage bias (n,).
        """
        key = ("relative", float(tokens), j, shares.tobytes())
        if key not in self._options:  # the law's part does not depend on the shrinkage (see _anchor_terms)
            w, _, _, _, _, anchor_n = self._anchor_terms(tokens)
            a, na = w[j], float(anchor_n[j])
            n = len(shares)
            x = np.vstack([shares * tokens, a[None, :] * tokens, shares * na, a[None, :] * na])
            f = self._view.f(x)
            fk = self._view.fk(x)
            d_t, d_n = f[:n] - f[n], f[n + 1:2 * n + 1] - f[2 * n + 1]
            dk_t, dk_n = fk[:, :n] - fk[:, n:n + 1], fk[:, n + 1:2 * n + 1] - fk[:, 2 * n + 1:]
            s, sk = d_t - d_n, dk_t - dk_n
            self._options[key] = (d_n, dk_n, s, sk, sk.std(axis=0) if len(sk) > 1 else np.zeros(n))
        d_n, dk_n, s, sk, sd = self._options[key]
        lam = self._lambda(s, sd, tokens)
        dev = (dk_n - d_n[None, :]) + lam[None, :] * (sk - s[None, :])
        return d_n + lam * s, dev, (1.0 - lam) * s

    def shrink_at(self, tokens: float) -> float:
        """The shrinkage ``z`` of predictions at ``tokens`` (see :attr:`shrink` and :attr:`shrink_span`)."""
        if self.shrink_span is None or math.isinf(self.shrink):
            return float(self.shrink)
        lo, hi = self.shrink_span
        return float(self.shrink) * max(math.log(tokens / hi), 0.0) / math.log(hi / lo)

    def _lambda(self, s: np.ndarray, sd: np.ndarray, tokens: float) -> np.ndarray:
        """Positive-part James-Stein factor of a law change ``s`` with posterior sd ``sd`` at ``tokens``."""
        z = self.shrink_at(tokens)
        if math.isinf(z):
            return np.zeros_like(s)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(np.abs(s) > 0, np.maximum(0.0, 1.0 - (z * sd) ** 2 / np.maximum(s**2, 1e-300)), 0.0)

    def _diff(self, a: np.ndarray, b: np.ndarray, tokens: float, *, new_runs: bool = True,
              tokens_b: float | None = None) -> tuple[float, float]:
        """Predicted offset-free loss of ``a`` (at ``tokens``) minus ``b`` (at ``tokens_b``, default the same)
        and its prediction sd: the law's posterior, the shrinkage bias, the anchors' noise and the law's misfit
        away from them, and with ``new_runs`` the seed noise of the two runs that would show the difference."""
        pa = self._point(a, tokens)
        pb = self._point(b, tokens if tokens_b is None else tokens_b)
        return pa.value - pb.value, math.sqrt(self._pair_var(pa, pb, new_runs=new_runs))

    def _diffs(self, cands: np.ndarray, b: np.ndarray, tokens: float, *, new_runs: bool = True) -> np.ndarray:
        """:meth:`_diff` of each row of ``cands`` against ``b``: an (n, 2) array of (difference, sd)."""
        pts = self._points(np.vstack([np.asarray(b, dtype=float)[None, :], cands]), tokens)
        pb = pts[0]
        return np.array([(p.value - pb.value, math.sqrt(self._pair_var(p, pb, new_runs=new_runs))) for p in pts[1:]])

    def _pair_var(self, pa: _Point, pb: _Point, *, new_runs: bool) -> float:
        va, vb = self._anchor_var(pa), self._anchor_var(pb)
        c = min(self._anchor_cov(pa, pb), math.sqrt(max(va * vb, 0.0)))
        var = float(np.var(pa.draws - pb.draws)) + (pa.bias - pb.bias) ** 2 + va + vb - 2.0 * c
        if new_runs:  # one new run of each mixture, each with its budget's seed noise
            var += self.noise_at(pa.tokens) ** 2 + self.noise_at(pb.tokens) ** 2
        return max(var, 0.0)

    def _shares(self, mixture: Mixture | Mapping[str, float] | Sequence[float]) -> np.ndarray:
        if isinstance(mixture, Mixture):
            mixture = mixture.weights
        if isinstance(mixture, Mapping):
            check_known_domains(mixture, self.domains, "mixture")
            v = np.array([float(mixture.get(d, 0.0)) for d in self.domains])
        else:
            v = np.asarray(mixture, dtype=float)
            if v.shape != (self.runs.m,):
                raise ValueError(f"mixture must have {self.runs.m} shares, got shape {v.shape}.")
        if np.any(v < 0) or not np.all(np.isfinite(v)) or v.sum() <= 0:
            raise ValueError(f"mixture shares must be finite, >= 0 and not all 0, got {v.tolist()!r}.")
        return v / v.sum()

    # ----------------------------------------------------------------- public
    def predict(self, mixture: Mixture | Mapping[str, float], tokens: float | None = None, *, anchored: bool = True) -> float:
        """Predicted loss of ``mixture`` at ``tokens`` (default: the mixture's own).

        Absolute when :attr:`absolute`, else relative to uniform at the same tokens. ``anchored=False``
        gives the law's own prediction (same units), for comparison.
        """
        tokens = self._tokens(mixture, tokens)
        w = self._shares(mixture)
        u = self._uniform()
        if anchored:
            v = self._point(w, tokens).value - self._point(u, tokens).value
            if self.level is not None:
                # Absolute: uniform's anchored value + level; the level model is of uniform.
                v += self._level(tokens)
            return float(v)
        f = self._view.f(np.vstack([w * tokens, u * tokens]))
        return float(f[0] - f[1] + self._level(tokens))

    def _tokens(self, mixture: Any, tokens: float | None) -> float:
        if tokens is None:
            if not isinstance(mixture, Mixture):
                raise ValueError("tokens= is required unless the mixture is a Mixture (which carries its tokens).")
            tokens = mixture.tokens
        t = float(tokens)
        if not math.isfinite(t) or t <= 0:
            raise ValueError(f"tokens must be a finite number > 0, got {tokens!r}.")
        return t

    def predict_gain(self, mixture: Mixture | Mapping[str, float], reference: Mixture | Mapping[str, float] | None = None,
                     tokens: float | None = None) -> float:
        """Predicted loss reduction of ``mixture`` over ``reference`` (default uniform) at the mixture's tokens.

        Positive = the mixture is predicted better. Anchored predictions (see the module docstring).
        """
        t = self._tokens(mixture, tokens)
        ref = self._uniform() if reference is None else self._shares(reference)
        d, _ = self._diff(self._shares(mixture), ref, t)
        return float(-d)

    def gain_interval(self, mixture: Mixture | Mapping[str, float], reference: Mixture | Mapping[str, float] | None = None,
                      level: float = 0.8, tokens: float | None = None) -> tuple[float, float]:
        """Prediction interval of the loss reduction of ``mixture`` over ``reference`` at the mixture's tokens.

        For the difference two runs sharing a seed would show: the law's posterior (draws), the
        anchors' seed noise and the two new runs' noise (:attr:`noise`).
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}.")
        t = self._tokens(mixture, tokens)
        ref = self._uniform() if reference is None else self._shares(reference)
        d, sd = self._diff(self._shares(mixture), ref, t)
        z = float(stats.norm.ppf(0.5 + level / 2))
        return float(-d - z * sd), float(-d + z * sd)

    def expected_gain_interval(self, mixture: Mixture | Mapping[str, float],
                               reference: Mixture | Mapping[str, float] | None = None, level: float = 0.8,
                               tokens: float | None = None) -> tuple[float, float]:
        """Confidence interval of the *expected* loss reduction of ``mixture`` over ``reference``.

        :meth:`gain_interval` without the new runs' seed noise: how sure the evidence is that one
        mixture is better in expectation (what :meth:`guard` decides on), not what one pair of runs
        would show.
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}.")
        t = self._tokens(mixture, tokens)
        ref = self._uniform() if reference is None else self._shares(reference)
        d, sd = self._diff(self._shares(mixture), ref, t, new_runs=False)
        z = float(stats.norm.ppf(0.5 + level / 2))
        return float(-d - z * sd), float(-d + z * sd)

    def rank_tested(self, tokens: float, *, anchored: bool = True) -> list[dict[str, Any]]:
        """The tested mixtures ranked at ``tokens`` (best first): ``weights``, ``predicted`` (absolute when
        :attr:`absolute`, else relative to uniform), ``sd`` (of the prediction), ``anchor_tokens``."""
        t = self._tokens(None, tokens)
        w, pred, lk, bias, n_anchor, anchor_n = self._anchor_terms(t)
        u = self._uniform()
        if anchored:
            vals = pred - self._point(u, t).value
            sds = np.sqrt(lk.var(axis=0) + bias**2 + np.array([self._anchor_var(self._point(x, t)) for x in w]))
        else:
            f = self._view.f(np.vstack([w * t, u[None, :] * t]))
            vals = f[:-1] - f[-1]
            sds = self._view.fk(w * t).std(axis=0)
        vals = vals + self._level(t)
        order = np.argsort(vals)
        return [{"weights": dict(zip(self.domains, w[i].tolist())), "predicted": float(vals[i]), "sd": float(sds[i]),
                 "anchor_tokens": float(anchor_n[i])} for i in order]

    def guard(self, base: Mixture | Mapping[str, float] | Sequence[float], candidate: Mixture | Mapping[str, float] | Sequence[float],
              tokens: float, *, level: float = 0.8, steps: int = 41) -> Guard:
        """How far to go from ``base`` toward ``candidate`` at ``tokens``: the point of the line whose expected gain
        over ``base`` has the best lower bound at ``level`` (its ``(1 - level) / 2`` quantile), or ``base`` itself
        when no point's lower bound is above 0.

        The bound is on the *expected* gain: the law's posterior (draws), the shrinkage bias of its change with
        scale and the anchors' seed noise. The seed noise of the runs one would train at the target is not part
        of the decision (it does not change which mixture is better in expectation; with it, a gain of about
        one run's seed noise could never be acted on), but it is in :attr:`Guard.run_interval` and in
        :meth:`gain_interval`, which predict what one pair of runs would show. Ties go to the point nearer ``base``.
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}.")
        t = self._tokens(None, tokens)
        b, c = self._shares(base), self._shares(candidate)
        z = float(stats.norm.ppf(0.5 + level / 2))
        ts = np.linspace(0.0, 1.0, max(int(steps), 2))
        line = b[None, :] + ts[1:, None] * (c - b)[None, :]
        diffs = np.vstack([[0.0, math.inf], self._diffs(line / line.sum(axis=1, keepdims=True), b, t, new_runs=False)])
        gain, sd = -diffs[:, 0], diffs[:, 1]
        lcb = gain - z * sd
        i = int(np.argmax(lcb))
        if not lcb[i] > 0:
            i = 0
        gc, sc = float(gain[-1]), float(sd[-1])
        x = b + ts[i] * (c - b)
        if i == 0:
            g, iv, riv = 0.0, (0.0, 0.0), (0.0, 0.0)
        else:
            g, iv = float(gain[i]), (float(gain[i] - z * sd[i]), float(gain[i] + z * sd[i]))
            rd, rsd = self._diff(x / x.sum(), b, t)
            riv = (float(-rd - z * rsd), float(-rd + z * rsd))
        return Guard(shares=x / x.sum(), base=b, candidate=c, fraction=float(ts[i]), gain=g, interval=iv,
                     candidate_gain=gc, candidate_interval=(gc - z * sc, gc + z * sc), level=float(level),
                     run_interval=riv)

    def recommend(self, tokens: float, *, allow_outside: bool = False, risk: float | None = None,
                  guard: bool = True, level: float = 0.8) -> Recommendation:
        """The mixture to train at ``tokens``: the best tested one, moved toward the law's optimum as far as
        the predicted gain exceeds ``risk`` (default :attr:`risk`) posterior sds; inside the tested region
        unless ``allow_outside`` (then the law's optimum may lie anywhere on the simplex, with a warning).

        With ``guard`` (default) the step is then cut back by :meth:`guard`: from the best tested mixture only as
        far as the expected gain's ``level`` lower bound is above 0 (a warning says how far it went). ``guard=False``: the step as the ``risk`` rule takes it.
        """
        t = self._tokens(None, tokens)
        kappa = self.risk if risk is None else float(risk)
        w, pred, lk, bias, n_anchor, _ = self._anchor_terms(t)
        j = int(np.argmin(pred))
        a = w[j]
        lo, hi = tested_region(self.runs)
        if allow_outside:
            lo, hi = np.zeros(self.runs.m), np.ones(self.runs.m)
        p = self._view.optimum(t, lo, hi)
        ts = np.linspace(0.0, 1.0, 41)
        cands = a[None, :] + ts[:, None] * (p - a)[None, :]
        # The gain as reported (anchored predictions of the candidate and the anchor) and its whole uncertainty (law
        # posterior, shrinkage bias, the anchors' seed noise when a candidate is anchored elsewhere), not only the
        # posterior's: the step must beat what the runs cannot tell apart.
        diffs = self._diffs(cands / cands.sum(axis=1, keepdims=True), a, t, new_runs=False)
        gain, sd = -diffs[:, 0], diffs[:, 1]
        lcb = gain - kappa * sd
        i = int(np.argmax(lcb))
        if lcb[i] <= 0:
            i = 0
        rec = cands[i] / cands[i].sum()
        notes: list[str] = []
        step = float(ts[i])
        fraction: float | None = None
        candidate: Mixture | None = None
        if guard:
            candidate = Mixture(dict(zip(self.domains, rec.tolist())), t)
            fraction = 1.0
            if i > 0:
                g = self.guard(a, rec, t, level=level)
                text = g.note("the best tested mixture", "the in-region recommendation", self.domains)
                if text:
                    notes.append(text)
                rec, step, fraction = g.shares, step * g.fraction, g.fraction
                if g.fraction <= 1e-9:
                    i = 0
        blo, bhi = tested_region(self.runs)
        inside = bool(np.all(rec >= blo - 1e-9) and np.all(rec <= bhi + 1e-9))
        if not inside:
            out = [f"{d} {v:.3f} (tested {a_:.3f}-{b_:.3f})" for d, v, a_, b_ in zip(self.domains, rec, blo, bhi)
                   if v < a_ - 1e-9 or v > b_ + 1e-9]
            notes.append("outside the tested region (allow_outside=True): " + ", ".join(out)
                         + "; no run supports these shares, verify before training at scale")
        d_a, sd_a = self._diff(rec, a, t)
        z = float(stats.norm.ppf(0.5 + level / 2))
        d_u, sd_u = self._diff(rec, self._uniform(), t)
        if d_u > 0:
            notes.append(f"predicted worse than uniform by {d_u:.4f} ({level:.0%} interval of the gain {-d_u - z * sd_u:+.4f} to "
                         f"{-d_u + z * sd_u:+.4f}); the tested mixtures do not beat uniform here")
        if d_a > 1e-12:  # pragma: no cover - the LCB step never goes uphill in the mean
            notes.append(f"predicted worse than its anchor by {d_a:.4f}; returning the anchor")
            rec, i = a, 0
            d_a, sd_a = 0.0, math.sqrt(2.0) * self.noise_at(t)
        if i > 0 and kappa == 0:
            notes.append("risk=0: the step is the law's point estimate, not supported beyond its mean")
        u = self._uniform()
        return Recommendation(
            mixture=Mixture(dict(zip(self.domains, rec.tolist())), t),
            anchor=Mixture(dict(zip(self.domains, (a / a.sum()).tolist())), t),
            optimum=Mixture(dict(zip(self.domains, (p / p.sum()).tolist())), t),
            step=step,
            gain=float(-d_a),
            interval=(float(-d_a - z * sd_a), float(-d_a + z * sd_a)),
            gain_over_uniform=float(-d_u),
            uniform_interval=(float(-d_u - z * sd_u), float(-d_u + z * sd_u)),
            inside=inside,
            predicted_loss=float(self._point(rec, t).value - self._point(u, t).value + self._level(t)),
            warnings=tuple(notes),
            best_tested=Mixture(dict(zip(self.domains, (a / a.sum()).tolist())), t),
            gain_over_best=float(-d_a),
            best_interval=(float(-d_a - z * sd_a), float(-d_a + z * sd_a)),
            guard=fraction,
            candidate=candidate,
            level=level,
        )

    def calibration(self, level: float = 0.8, *, max_pairs: int = 400) -> Calibration:
        """Leave each group out in turn, refit on the rest, and predict the held-out group's differences.

        In each held-out group, every run is compared with the group's run closest to uniform (the
        pair shares the group's seed/offset); the interval is :meth:`gain_interval`'s for that pair
        (at each run's own tokens). Groups whose removal leaves nothing to fit are skipped.
        """
        z = float(stats.norm.ppf(0.5 + level / 2))
        by: dict[str, tuple[int, int]] = {}
        split: dict[bool, list[int]] = {True: [], False: []}
        errs: list[float] = []
        r = self.runs
        u = self._uniform()
        for g in r.group_names:
            mask = np.array([x != g for x in r.groups])
            rest = r.subset(mask)
            held = r.subset(~mask)
            if rest.n < 3 or len(rest.group_names) < 1:
                continue
            try:
                with _warnings.catch_warnings():
                    _warnings.simplefilter("ignore")
                    ev = fit_evidence(rest, law=self.kind, shrink=self.shrink, risk=self.risk,
                                      objective_weights=self._options.get("objective_weights"),
                                      draws=self._options.get("draws", DEFAULT_DRAWS), noise=self._noise_spec(),
                                      shrink_span=self.shrink_span)
            except (ValueError, RuntimeError, np.linalg.LinAlgError):
                continue
            ref = int(np.argmin(np.abs(held.weights - u).sum(axis=1)))
            idx = [i for i in range(held.n) if i != ref][:max_pairs]
            lo, hi = tested_region(rest)
            inside = 0
            for i in idx:
                pred, sd = ev._diff(held.weights[i], held.weights[ref], float(held.tokens[i]),
                                    tokens_b=float(held.tokens[ref]))
                obs = float(held.value[i] - held.value[ref])
                errs.append(abs(pred - obs))
                hit = int(abs(pred - obs) <= z * sd)
                inside += hit
                pair = held.weights[[i, ref]]
                split[bool(np.all(pair >= lo - 1e-9) and np.all(pair <= hi + 1e-9))].append(hit)
            by[g] = (inside, len(idx))
        n = sum(b for _, b in by.values())
        cov = sum(a for a, _ in by.values()) / n if n else math.nan
        return Calibration(level=level, coverage=float(cov), n=n, by_group=by,
                           mean_abs_error=float(np.mean(errs)) if errs else math.nan,
                           inside=(sum(split[True]), len(split[True])), outside=(sum(split[False]), len(split[False])))


# ------------------------------------------------------------------------------ fitting
def fit_law(runs: Runs, law: str, weights: Mapping[str, float] | None, *,
            start: Any = None) -> tuple[Any, str, list[str]]:
    """The joint law :data:`LAWS` names fitted to ``runs``: ``(law, kind, notes)`` (see :func:`fit_evidence`).

    ``start``: a per-domain transfer law fitted to a superset of ``runs``; a transfer law is then refitted from it
    (``fit_transfer(..., start=)``, one solve per domain), the cheap refit of a leave-one-budget-out check.
    """
    notes: list[str] = []
    if law not in LAWS:
        raise ValueError(f"law must be one of {LAWS!r}, got {law!r}.")
    w = dict(weights) if weights is not None else _objective_weights(runs)
    same = bool(runs.loss_names) and set(runs.loss_names) == set(runs.domains)
    if law in ("auto", "transfer") and same and (w is not None or law == "transfer"):
        from optuna_autoscale.results import TRANSFER_FORMS
        from optuna_autoscale.results import TRANSFER_POOL
        from optuna_autoscale.transfer import fit_transfer
        from optuna_autoscale.transfer import TransferLaw

        runs.check_enough(3 + runs.m - 1, "The per-domain transfer law")
        try:
            fitted = fit_transfer(runs.loss_observations(), weights=w, forms=TRANSFER_FORMS, pool_exponents=TRANSFER_POOL,
                                  start=start if isinstance(start, TransferLaw) else None)
            return fitted, "transfer", notes
        except (ValueError, np.linalg.LinAlgError) as e:
            if law == "transfer":
                raise
            notes.append(f"per-domain transfer law failed ({e}); trying the per-column law")
    elif law == "transfer":
        raise ValueError(
            "law='transfer' needs one loss_<domain> column per training domain; use law='eval' for other evaluation sets."
        )
    if law in ("auto", "eval") and runs.loss_names and (w is not None or law == "eval"):
        return fit_eval_law(runs, weights=w), "eval", notes
    if law == "eval":
        raise ValueError("law='eval' needs loss_<name> columns.")
    if law == "auto" and runs.loss_names:
        notes.append("the loss_<name> columns do not reproduce the objective as a fixed weighting; "
                     "fitted the separable law on the objective")
    from optuna_autoscale.laws import fit_separable

    runs.check_enough(3 * runs.m, "The separable law")
    return fit_separable(runs.observations()), "separable", notes


def _law_kind(fitted: Any) -> str:
    if isinstance(fitted, EvalLaw):
        return "eval"
    name = type(fitted).__name__
    if name == "TransferLaw":
        return "transfer"
    if name == "SeparableLaw":
        return "separable"
    raise TypeError(f"fitted must be a TransferLaw, EvalLaw or SeparableLaw, got {name}.")


def _fit_level(points: Sequence[tuple[float, float]]) -> tuple[float, float, float] | None:
    """``E(N) = E_inf + A N^-alpha`` through (budget, uniform level) points (>= 3 budgets), else None."""
    if len(points) < 3:
        return None
    n = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    s = float(np.exp(np.mean(np.log(n))))

    def model(x: np.ndarray, e: float, la: float, al: float) -> np.ndarray:
        return e + np.exp(la) * (x / s) ** (-al)

    best = None
    for al0 in (0.1, 0.3, 0.6):
        try:
            with np.errstate(all="ignore"), _warnings.catch_warnings():
                _warnings.simplefilter("ignore")
                p, _ = optimize.curve_fit(model, n, y, p0=[max(float(y.min()) - 0.1, 0.0), math.log(max(float(np.ptp(y)), 1e-3)), al0],
                                          bounds=([0.0, -30.0, 0.02], [np.inf, 30.0, 3.0]), maxfev=5000)
        except (RuntimeError, ValueError):
            continue
        err = float(np.sum((model(n, *p) - y) ** 2))
        if best is None or err < best[0]:
            best = (err, p)
    if best is None:
        return None
    e, la, al = best[1]
    return float(e), float(math.exp(la) * s**al), float(al)


def _persistent_misfit(res: np.ndarray, ids: np.ndarray, groups: Sequence[str]) -> tuple[float, float, float] | None:
    """(covariance of the residuals of the same mixture in different groups, residual variance, the
    covariance's standard error), or None.

    Seed noise is independent across groups; a law's misfit for a mixture persists. So the mean
    cross-product of a mixture's residuals in two groups estimates the misfit's variance.
    """
    cross, tot = [], float(np.mean(res**2))
    g = np.array(groups)
    for i in np.unique(ids):
        rows = np.flatnonzero(ids == i)
        if len(rows) < 2:
            continue
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                if g[rows[a]] != g[rows[b]]:
                    cross.append(res[rows[a]] * res[rows[b]])
    if len(cross) < 3:
        return None
    se = float(np.std(cross, ddof=1) / math.sqrt(len(cross)))
    return float(min(max(np.mean(cross), 0.0), tot)), tot, se


def _noise_at(by_budget: Mapping[float, float], pooled: float, tokens: Any) -> Any:
    """:meth:`Evidence.noise_at` on a budget -> sd mapping (``pooled`` when it is empty); ``tokens`` a number
    (returns a float) or an array (returns an array)."""
    if not by_budget:
        return pooled if np.ndim(tokens) == 0 else np.full(np.shape(tokens), pooled)
    b = sorted(by_budget)
    sd = [max(by_budget[k], 1e-300) for k in b]
    out = np.exp(np.interp(np.log(tokens), np.log(b), np.log(sd)))
    return float(out) if np.ndim(tokens) == 0 else out


def _budget_noise(dev: np.ndarray, tokens: np.ndarray, *, scale: float = 1.0, shared: float = 0.0) -> dict[float, float]:
    """Seed-noise sd at each of ``tokens``' distinct values, from a power law in tokens, or ``{}`` when the
    deviations show no decrease with tokens (a one-sided likelihood-ratio test at 5%).

    ``dev`` are deviations whose variance measures the noise of a run at ``tokens`` (replicate deviations or
    the law's residuals). Their variance is fitted as ``v(N) = c (N / N_mid)^(-2a)`` by maximum likelihood: two
    parameters, so a budget with a handful of runs borrows from the others (a per-budget estimate from a few
    replicates swings by a factor of ten on the real ladder). A run's noise is then ``scale x v(N)`` (a
    degrees-of-freedom correction of residuals), or with ``shared`` (a misfit's variance common to every
    budget, in the residuals but not seed noise) ``v(N) - shared``, floored at a quarter of ``v(N)`` as the
    pooled estimate is.

    One-sided, because more tokens average more data and seed noise falls with scale; deviations that grow with
    tokens are read as some mixtures being noisier than others (the real ladder's x3 perturbations at its second
    budget), not as a scale trend to extrapolate, and the pooled sd is kept.

    Why: seed noise changes with scale (RegMix's residuals: sd 0.065 at 1M parameters, 0.051 at 60M), and one
    pooled sd makes the intervals too wide at one end and too narrow at the other (``benchmarks/RESULTS.md``,
    "Per-budget seed noise").
    """
    x = np.log(np.asarray(tokens, dtype=float))
    d2 = np.asarray(dev, dtype=float) ** 2
    if len(d2) < 6 or np.ptp(x) < 1e-9 or not np.any(d2 > 0):
        return {}
    xc = x - x.mean()
    floor = 1e-12 * float(d2.mean())

    def nll(p: np.ndarray) -> float:
        lv = p[0] + p[1] * xc
        return float(np.sum(lv + (d2 + floor) * np.exp(-lv)))

    c0 = math.log(float(d2.mean()) + floor)
    fit = optimize.minimize(nll, np.array([c0, 0.0]), method="BFGS")
    if not np.isfinite(fit.fun):  # BFGS may stop short of its tolerance; a finite optimum is still the fit
        return {}
    lr = 2.0 * (nll(np.array([c0, 0.0])) - float(fit.fun))
    if not (fit.x[1] < 0 and lr > float(stats.chi2.ppf(0.90, 1))):
        return {}
    out = {}
    for t in np.unique(np.asarray(tokens, dtype=float)):
        v = math.exp(float(fit.x[0] + fit.x[1] * (math.log(t) - x.mean())))
        out[float(t)] = math.sqrt(max(v - shared, 0.25 * v) if shared > 0 else scale * v)
    return out


def _law_error_var(res: np.ndarray, misfit: tuple[float, float, float] | None, noise: float, dof: int) -> float:
    """Variance of the law's error away from the anchors, counted only where the runs show it (tests at 5%).

    Two signs of a misfit: the residuals of the same mixture agree across groups (their mean cross-product is
    more than 1.645 standard errors above 0), or the residuals are larger than the replicates' seed noise (a
    lack-of-fit F test against the ``dof`` degrees of freedom of pure error). Where neither shows, the law is
    taken at its word (0): a misfit estimated from noise alone would make every step away from a tested mixture
    look unsupported.
    """
    out = 0.0
    if misfit is not None and misfit[0] > float(stats.norm.ppf(0.95)) * misfit[2]:
        out = misfit[0]
    if dof >= 2 and noise > 0:
        ms = float(np.mean(res**2))
        if ms / noise**2 > float(stats.f.ppf(0.95, len(res), dof)):
            out = max(out, ms - noise**2)
    return out


def fit_evidence(
    runs: Runs,
    *,
    law: str = "auto",
    objective_weights: Mapping[str, float] | None = None,
    shrink: float | str = DEFAULT_SHRINK,
    risk: float | None = None,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    noise: float | Mapping[float, float] | None = None,
    fitted: Any = None,
    shrink_span: tuple[float, float] | None = None,
) -> Evidence:
    """Fit the default joint law to every run and anchor its predictions in them.

    Args:
        runs: The runs (:func:`~optuna_autoscale.runs.load_runs`).
        law: :data:`LAWS`; ``"auto"`` (default) picks as described there.
        objective_weights: Weight per evaluation column; default detected (least squares reproducing ``value``).
        shrink: ``z`` of the anchored shrinkage (0 = the law's change in full, ``inf`` = direct transfer), or
            ``"auto"`` (:data:`DEFAULT_SHRINK`): the grid value whose anchored predictions best rank each held-out
            budget's runs within their groups, leaving one budget out at a time (refits the law once per budget;
            ``inf`` with one budget),
            chosen jointly with whether anchors keep their observation whole or only its persistent part
            (:attr:`Evidence.misfit_sd`).
        risk: Posterior sds the recommendation's gain must exceed (default the joint laws' ``DEFAULT_RISK``).
        draws: Laplace posterior draws for the uncertainties.
        seed: Seed of the draws.
        noise: Seed-noise sd of one run's objective, or a ``{budget: sd}`` mapping (interpolated as
            :meth:`Evidence.noise_at` does); default from replicates or the law's residuals, per budget where the
            budgets differ (:attr:`Evidence.noise_by_budget`).
        shrink_span: ``(smallest, largest)`` budget: a numeric ``shrink`` is then ``z`` per unit of the
            extrapolation ratio ``log(T / largest) / log(largest / smallest)`` (:attr:`Evidence.shrink_span`): the
            further past the runs, the more of the law's change with scale must stand out of its posterior.
        fitted: A law already fitted to exactly these runs (a ``TransferLaw``, :class:`EvalLaw` or
            ``SeparableLaw``; e.g. :attr:`AutoScaleResult.law`), used instead of fitting one.

    Returns:
        An :class:`Evidence`.

    Raises:
        ValueError: when no law can be fitted (with the reason), e.g. fewer runs than parameters.
    """
    from optuna_autoscale.laws import DEFAULT_RISK

    if not isinstance(runs, Runs):
        raise TypeError(f"runs must be a Runs (optuna_autoscale.runs.load_runs), got {type(runs).__name__}.")
    auto = isinstance(shrink, str)
    if auto and shrink != "auto":
        raise ValueError(f"shrink must be 'auto' or a number >= 0, got {shrink!r}.")
    if not auto and (math.isnan(float(shrink)) or float(shrink) < 0):
        raise ValueError(f"shrink must be 'auto' or a number >= 0 (inf allowed), got {shrink!r}.")
    if shrink_span is not None:
        lo, hi = (float(v) for v in shrink_span)
        if auto or not (0 < lo < hi and math.isfinite(hi)):
            raise ValueError(f"shrink_span must be (smallest, largest) budget with 0 < smallest < largest, and shrink a "
                             f"number; got shrink_span={shrink_span!r}, shrink={shrink!r}.")
        shrink_span = (lo, hi)
    if fitted is None:
        fitted, kind, notes = fit_law(runs, law, objective_weights)
    else:
        kind = _law_kind(fitted)
        notes = []
    view: _View
    if kind == "transfer":
        view = _TransferView(fitted, draws, seed)
    elif kind == "eval":
        view = _EvalView(fitted, draws, seed)
    else:
        view = _SeparableView(fitted, draws, seed)
    # Seed noise: replicates (same mixture and tokens in several groups, offsets removed), else residuals.
    ids = runs.mixture_ids()
    off = np.array([view.offsets[g] for g in runs.groups])
    yo = runs.value - off
    res = yo - view.f(runs.allocations)
    misfit = _persistent_misfit(res, ids, runs.groups)
    ss, dof = 0.0, 0
    # Replicates: the same mixture and tokens in different groups (different seeds). Runs of one mixture and
    # tokens within a group share its seed, so they are one observation (the real ladder's swarm holds ten
    # identical copies of one run); they are averaged first.
    rep_dev: list[float] = []
    rep_tok: list[float] = []
    gidx = np.array([runs.group_names.index(g) for g in runs.groups])
    for key in set(zip(ids.tolist(), runs.tokens.tolist())):
        rows = np.flatnonzero((ids == key[0]) & (runs.tokens == key[1]))
        per = np.array([yo[rows[gidx[rows] == g]].mean() for g in np.unique(gidx[rows])])
        if len(per) >= 2:
            d = per - per.mean()
            ss += float((d**2).sum())
            dof += len(per) - 1
            rep_dev.extend((d * math.sqrt(len(per) / (len(per) - 1))).tolist())
            rep_tok.extend([float(key[1])] * len(per))
    per_budget: dict[float, float] = {}
    if isinstance(noise, Mapping):
        per_budget = {float(b): float(v) for b, v in noise.items()}
        if not per_budget or any(not (math.isfinite(v) and v >= 0) for v in per_budget.values()):
            raise ValueError(f"noise must map budgets to finite sds >= 0, got {dict(noise)!r}.")
        sig = math.sqrt(float(np.mean(_noise_at(per_budget, 0.0, runs.tokens) ** 2)))
        src = "given per budget"
    elif noise is not None:
        sig, src = float(noise), "given"
    elif dof >= 2:
        # The normal sd that the replicates' median absolute deviation implies: the intervals are central (80%), and
        # a few seed-sensitive runs (on the real ladder two x3 pairs at 6e5 tokens differ by 0.13 and 0.23 nats,
        # against a typical 0.02) would otherwise set every interval's width (ladder coverage 0.93 with the root
        # mean square, 0.89 with this; benchmarks/RESULTS.md, "Per-budget seed noise").
        rms = math.sqrt(ss / dof)
        sig = float(np.median(np.abs(rep_dev))) / float(stats.norm.ppf(0.75)) or rms
        src = "replicates"
        per_budget = _budget_noise(np.array(rep_dev), np.array(rep_tok), scale=(sig / rms) ** 2 if rms > 0 else 1.0)
    elif misfit is not None:
        sig, src = math.sqrt(max(misfit[1] - misfit[0], 0.25 * misfit[1])), "law residual, less the misfit shared across groups"
        per_budget = _budget_noise(res, runs.tokens, shared=misfit[0])
    elif view.noise is not None:
        sig, src = float(view.noise), "law residual"
        per_budget = _budget_noise(res, runs.tokens, scale=sig**2 / max(float(np.mean(res**2)), 1e-300))
    else:
        resid = yo - view.f(runs.allocations)
        resid = resid - resid.mean()
        sig, src = float(np.std(resid)) or 0.0, "law residual (no spare dof)"
        notes.append("no replicate runs and no spare degrees of freedom: the noise estimate is the raw residual sd")
    # Uniform's level per group (offset + law at uniform), averaged per distinct budget.
    u = np.full(runs.m, 1.0 / runs.m)
    by_budget: dict[float, list[float]] = {}
    for g in runs.group_names:
        b = runs.group_budget(g)
        by_budget.setdefault(b, []).append(view.offsets[g] + float(view.f((u * b)[None, :])[0]))
    level = _fit_level([(b, float(np.mean(v))) for b, v in sorted(by_budget.items())])
    if level is None:
        notes.append(f"{len(by_budget)} budget(s): only loss differences are predicted (absolute losses need 3 or more)")
    ev = Evidence(
        runs=runs, law=fitted, kind=kind, noise=sig, noise_source=src, shrink=math.inf if auto else float(shrink),
        risk=DEFAULT_RISK if risk is None else float(risk),
        misfit_sd=None if misfit is None else math.sqrt(misfit[0]),
        law_error_sd=math.sqrt(_law_error_var(res, misfit, sig, dof if src == "replicates" else 0)),
        absolute=level is not None, level=level,
        warnings=notes, _view=view, _options={"draws": draws, "objective_weights": objective_weights},
        shrink_span=shrink_span, noise_by_budget=per_budget,
    )
    if auto:
        scores = _shrink_scores(ev) if len(by_budget) >= 2 else {}
        if scores:
            best = min(scores.values())
            # Ties (within 1%) go to the more conservative choice: observations whole, then the larger z.
            near = [k for k, v in scores.items() if v <= best * 1.01 + 1e-15]
            mode, z = max(near, key=lambda k: (k[0] == "whole", k[1]))
            ev.shrink = z
            if mode == "whole":
                ev.misfit_sd = None
            ev._options["shrink_scores"] = scores
        else:
            notes.append("one budget: the law's change with scale is untested by the runs, so tested mixtures keep "
                         "their observed differences (shrink=inf)")
    return ev


def _shrink_scores(ev: Evidence) -> dict[tuple[str, float], float]:
    """Leave-one-budget-out ranking error, per anchor mode and shrinkage ``z``: over the held-out budget's groups
    of three or more anchored runs, ``sum (1 - Spearman(predicted, observed)) x runs``.

    A rank score, because ranking the tested mixtures is what the choice is for, and because squared errors let
    a few extreme runs decide: with the near-removal perturbations of the default design (a domain's loss up
    0.4 nats, and more at the larger budget) they chose a small ``z`` that ranked the real ladder's 24 target
    mixtures at 0.877 (direct transfer 0.890); ranks give 0.941 there, 0.921 instead of 0.868 on the simulator's
    ``transfer`` sets, and the same elsewhere (``benchmarks/RESULTS.md``, "The near-zero design").

    Modes: ``"misfit"`` keeps the share of an anchor's residual that persists across groups
    (:attr:`Evidence.misfit_sd`); ``"whole"`` keeps the observation whole. ``z`` in :data:`SHRINK_GRID`.
    """
    r = ev.runs
    gb = {g: r.group_budget(g) for g in r.group_names}
    out = {(mode, z): 0.0 for mode in ("misfit", "whole") for z in SHRINK_GRID}
    used = 0
    for b in sorted(set(gb.values())):
        mask = np.array([gb[g] != b for g in r.groups])
        rest, held = r.subset(mask), r.subset(~mask)
        try:
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore")
                weights = ev._options.get("objective_weights")
                # Refitted from the full fit (one solve per domain): five budgets cost five refits of the law.
                law, _, _ = fit_law(rest, ev.kind, weights, start=ev.law)
                sub = fit_evidence(rest, fitted=law, shrink=math.inf, risk=ev.risk, noise=ev._noise_spec(),
                                   objective_weights=weights, draws=ev._options.get("draws", DEFAULT_DRAWS))
        except (ValueError, RuntimeError, np.linalg.LinAlgError):
            continue
        # Only mixtures tested outside the held-out budget have an anchor there.
        ids_rest = {tuple(np.round(w, 6)) for w in rest.weights}
        keep = np.array([tuple(np.round(w, 6)) in ids_rest for w in held.weights])
        if keep.sum() < 3:
            continue
        used += 1
        own = sub.misfit_sd
        for mode, z in out:
            sub.shrink = z
            sub.misfit_sd = own if mode == "misfit" else None
            for g in held.group_names:
                rows = np.flatnonzero(keep & (np.array(held.groups) == g))
                if len(rows) < 3:
                    continue
                pred = np.array([sub._point(held.weights[i], float(held.tokens[i])).value for i in rows])
                with _warnings.catch_warnings():  # equal predictions rank nothing: counted as rho = 0, not warned
                    _warnings.simplefilter("ignore", stats.ConstantInputWarning)
                    rho = float(stats.spearmanr(pred, held.value[rows])[0])
                out[(mode, z)] += (1.0 - (rho if math.isfinite(rho) else 0.0)) * len(rows)
    return out if used else {}
