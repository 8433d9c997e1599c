"""The joint separable law: ``L(N) = E_g + sum_i beta_i (N_i + N0_i)^(-gamma_i)`` over all budgets.

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
from typing import ClassVar
import warnings

import numpy as np

from optuna_autoscale._validation import check_allocation
from optuna_autoscale._validation import check_value
from optuna_autoscale.allocation import solve_separable
from optuna_autoscale.extrapolation.robust import RobustAllocator
from optuna_autoscale.laws._map import BOUNDS
from optuna_autoscale.laws._map import center
from optuna_autoscale.laws._map import DEFAULT_RISK
from optuna_autoscale.laws._map import group_design
from optuna_autoscale.laws._map import JointObservation
from optuna_autoscale.laws._map import MapProblem
from optuna_autoscale.laws._map import PRIOR_LOG_GAMMA
from optuna_autoscale.laws._map import PRIOR_LOG_N0
from optuna_autoscale.laws.ddo import fit_power_laws


__all__ = ["SeparableLaw", "fit_separable"]


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
        lo = np.r_[np.full(m, BOUNDS["lb"][0]), np.full(m, BOUNDS["lu"][0]), np.full(ng, BOUNDS["lg"][0])]
        hi = np.r_[np.full(m, BOUNDS["lb"][1]), np.full(m, BOUNDS["lu"][1]), np.full(ng, BOUNDS["lg"][1])]
        return lo, hi

    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Prior mean and precision (0 = flat) per parameter."""
        m = self.m
        ng = 1 if self.shared_gamma else m
        mu = np.r_[np.zeros(m), np.full(m, PRIOR_LOG_N0[0]), np.full(ng, PRIOR_LOG_GAMMA[0])]
        prec = np.r_[np.zeros(m), np.full(m, PRIOR_LOG_N0[1] ** -2), np.full(ng, PRIOR_LOG_GAMMA[1] ** -2)]
        return mu, prec


@dataclasses.dataclass(frozen=True)
class SeparableLaw(RobustAllocator):
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

    kind: ClassVar[str] = "separable"

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

    def predict_domains(self, allocation: Mapping[str, float], group: str | None = None) -> dict[str, float]:
        """Per domain, its term ``beta_i (N_i + N0_i)^(-gamma_i)`` at ``allocation`` (no offset; ``group`` unused).

        They sum to :meth:`predict` less the offset: the separable law knows no per-domain losses.
        """
        x = self._vec(allocation)
        p = self.params
        return {d: float(p[d]["beta"] * (xi + p[d]["n0"]) ** (-p[d]["gamma"])) for d, xi in zip(self.domains, x)}

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
        returns ``P``. (Alternatives measured against this rule: ``benchmarks/RESULTS.md``,
        "Measurements cited by the code".)

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
    # Only the largest group (budget) is used: its DDO fit is the closest to the target.
    sizes = [float(np.median(x[gidx == g].sum(axis=1))) for g in range(ng)]
    g = int(np.argmax(sizes))
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
        return []
    V = fit.base_value
    lb, lu, lg = [], [], []
    for i, d in enumerate(domains):
        p = fit.params[d]
        bi = base_row[i] / scale
        gam = float(np.clip(p.b, 0.02, 4.0))
        lg.append(math.log(gam))
        lu.append(math.log(float(np.clip(p.a * bi, 1e-5, 1e3))))
        lb.append(math.log(abs(V)) + gam * math.log(bi))
    return [np.array(lb + lu + lg)]


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
        rows.append(check_allocation(obs[0], domains, f"observation {k}"))
        ys.append(check_value(obs[1], f"observation {k}'s objective"))
        groups.append(str(obs[2]) if len(obs) == 3 else "default")
    x = np.array(rows)
    y = np.array(ys)
    if np.any(x.sum(axis=1) <= 0):
        raise ValueError("Every observation needs a positive total number of tokens.")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}.")
    if noise is not None and (not math.isfinite(float(noise)) or float(noise) < 0):
        raise ValueError(f"noise must be a finite sd >= 0 (loss units), got {noise!r}.")
    gnames, gidx, budgets, scale = group_design(x, groups, domains)
    ng = len(gnames)
    model = _Model(m, bool(shared_gamma))
    p = model.n_params
    n = len(y)
    dof = n - p - ng
    u = x / scale
    prob = MapProblem(model, u, y, gidx, ng)
    yc, prec = prob.yc, prob.prec
    lo_b, hi_b = prob.lo, prob.hi

    def relinearise_beta(theta: np.ndarray) -> np.ndarray:
        """Given u0, gamma: least-squares beta' (kept positive) for a consistent start."""
        _, u0, gam = model.unpack(theta)
        h = (u + u0) ** (-gam)
        hc = center(h, gidx, ng)
        coef, *_ = np.linalg.lstsq(hc, yc, rcond=None)
        coef = np.where(coef > 0, coef, np.abs(coef) * 0.1 + 1e-12)
        out = theta.copy()
        out[:m] = np.log(coef)
        return out

    starts = _group_starts(x, y, gidx, ng, domains, scale)
    shares = np.median(x / x.sum(axis=1, keepdims=True), axis=0)
    starts.append(np.r_[np.zeros(m), np.full(m, PRIOR_LOG_N0[0]) + np.log(shares * m), np.full(m, PRIOR_LOG_GAMMA[0])])
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
    r = center(f - y, gidx, ng)
    offsets = {g: float(np.mean((y - f)[gidx == i])) for i, g in enumerate(gnames)}
    rss = float(r @ r)
    jc = center(j, gidx, ng)
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
