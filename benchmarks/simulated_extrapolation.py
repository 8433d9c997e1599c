"""Share of the uniform -> oracle loss gain recovered at 10x the larger budget, on simulated landscapes.

For each simulator family (:mod:`optuna_autoscale.simulate`: ``separable``, ``transfer``,
``mixing_law``), seed and signal-to-noise ratio, this script runs DDO designs directly on the
landscape (no Optuna, no training): at each budget a uniform base run and one-domain
perturbations at multipliers 0.2 and 3, all with one seed per budget (common random numbers).
The noise of each budget's runs is set so that the mean absolute x3 effect at that budget over
the noise sd is the given SNR (half of the noise variance seed-shared, removed by the common
seed; :meth:`Landscape.with_snr`). The objective is the mean of the per-domain losses, and half of
its noise variance is drawn independently per validation domain (:data:`DOMAIN_SHARE`,
``Landscape.domain_share``; real per-domain losses are correlated, not identical), the same for
every row. Budgets 1e8 and 4e8 tokens, target 4e9.

Each method proposes an allocation for the target, scored by the true (noiseless) loss as

    share = (L(uniform) - L(method)) / (L(uniform) - L(oracle))   at 4e9 tokens

(1 = the whole gain, 0 = no better than uniform, < 0 = worse than uniform). Rows:

- ``joint (robust, default)``: the default joint law's robust optimum with no region and no guard (:data:`DEFAULT_LAW`,
  :data:`TRANSFER_FORMS`, :data:`TRANSFER_POOL`; ``extrapolate(..., allow_outside=True, guard=False)``), the default
  before issue 11 and the law behind the two issue-11 rows at the end; the row name is kept for comparison with
  earlier tables. **The current default is the last row, ``x0.02 design, inside the box, guarded``**;
- ``joint separable (robust)``: :func:`fit_separable` over both budgets on the scalar objective,
  ``optimal_allocation(robust=True)`` anchored at the 4e8 DDO optimum;
- ``joint separable (non-robust)``: that law's point optimum at the target;
- ``per-domain transfer (robust)`` / ``(non-robust)``: :func:`optuna_autoscale.transfer.fit_transfer`
  on the per-domain losses (one transfer law per validation domain), the same robust rule and anchor;
- ``per-domain, form by CV (robust)`` / ``(non-robust)``: the same with ``forms="auto"``: per
  validation domain the power-law transfer form or the exponential (Data Mixing Laws) form,
  whichever has the smaller leave-one-run-out error;
- ``paper (DDO + extrapolate)``: :func:`fit_power_laws` per budget, each budget's optimum
  (lower bound 0.2x, the paper's), then :func:`extrapolation.extrapolate`;
- ``direct transfer``: the 4e8 DDO optimum's weights reused at 4e9;
- ``oracle transfer (reference)``: the *true* 4e8 optimum reused (the best any transfer can do);
- design options, all with the robust joint *separable* law: ``+ shared gamma``, ``+ multipliers 0.5, 2``
  (4 per domain), ``+ replicated design`` (each budget's design run with 2 seeds),
  ``+ third budget 2e8``; and with the default per-domain law (``default + ...``, forms as
  :data:`TRANSFER_FORMS`, pooling as :data:`TRANSFER_POOL`): ``+ multipliers 0.5, 2``,
  ``+ replicated design`` (the sampler's ``design_seeds=2``), ``+ third budget 2e8``, and
  ``+ replicated design, multipliers 0.5, 2`` (4x the runs of the paper's design);
- posterior-draw rules on the ``form by CV`` law (the default before pooling; :func:`posterior_allocation`,
  not adopted; see RESULTS.md):
  ``default law, posterior expected loss`` = the allocation on the whole simplex minimising the mean,
  over 256 Laplace posterior draws per validation domain, of the objective's change from the anchor;
  ``default law, posterior mean + 0.5 sd (line)`` = mean + 0.5 sd over the draws, on the
  anchor -> point-optimum line (the best of the posterior-draw variants on the tuning seeds);
- partial pooling of the exponents across validation domains on the ``form by CV`` law:
  ``default + pooled exponents (auto)`` = ``fit_transfer(..., forms="auto", pool_exponents="auto")``
  (empirical-Bayes pooling sd from the spread of the unpooled fits; the default since it was tuned),
  ``(sd 0.2)`` = a fixed pooling sd of 0.2;
- ``default, inside the tested box (issue 11)``: what :meth:`AutoScaleResult.extrapolate` does since issue 11:
  the default law's robust rule with every domain's share bounded by the range of shares the design's runs
  used (:func:`~optuna_autoscale.extrapolation.robust.region_bounds`, :data:`results.DEFAULT_REGION`) and
  :data:`results.REGION_RISK` (0.5) posterior sds; ``risk 1``: the same with the unbounded rule's risk (measured,
  not adopted);
- ``default, inside the box, guarded (issue 11 guard)``: what :meth:`AutoScaleResult.extrapolate` does by default
  now: the in-box row's mixture cut back toward uniform by :meth:`Evidence.guard` (the point on the line uniform ->
  that mixture whose expected gain over uniform has the best 80% lower bound, uniform unless that bound is above 0),
  with the evidence :class:`AutoScaleResult` fits on the same runs (:func:`fit_evidence` with the fitted law and
  :func:`~optuna_autoscale.results.design_shrink`'s shrinkage);
- ``x0.02 design, inside the tested box`` / ``..., guarded (session 8's default)``: the two rows above on a design
  whose small perturbation is x0.02 instead of x0.2 (:data:`NEAR_ZERO_MULTIPLIERS`, ``design.DEFAULT_MULTIPLIERS``
  since session 8; same seeds, same number of runs, its own DDO anchor);
- ``default design (x0.02, reach 0.5), inside the tested box`` / ``..., guarded (the default)``: the same, with the
  large perturbation raised until it gives its domain half the run's tokens (``design.DEFAULT_REACH``, session 9:
  x6 for these 7 domains, 19% more design compute). **The last row is what the product does by default**; every
  other row keeps its design for comparison with earlier tables;
- information ceilings (:func:`ceiling_law`), the family's own per-domain law with shape parameters
  fixed at the simulator's true values: ``ceiling: true N0, gamma`` (power form; ``alpha`` for the
  exponential form of ``mixing_law``) fits the rest (``beta`` and the transfer coefficients, or ``k``
  and the interaction row) with the default robust rule / its point optimum; ``ceiling: only beta
  fitted`` fixes everything but the linear coefficient (``beta`` / ``k``) and the offsets.

Rules are tuned on other landscape seeds than the reported ones: ``--seed-offset 100`` runs seeds
100-107 (the tables in RESULTS.md use the default, seeds 0-7).

Usage::

    python benchmarks/simulated_extrapolation.py            # full table (about 10 minutes with --jobs 1)
    python benchmarks/simulated_extrapolation.py --seed-offset 100 --rows ...   # tuning seeds
    python benchmarks/simulated_extrapolation.py --quick    # smoke run, seconds
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import math
import multiprocessing
import sys
import time
from typing import Any
import warnings

import numpy as np


BUDGETS = (1e8, 4e8)
TARGET = 4e9
THIRD = 2e8
M = 7
FAMILIES = ("separable", "transfer", "mixing_law")
SNRS = (math.inf, 30.0, 6.0)
DOMAIN_SHARE = 0.5
"""Share of the mean loss's noise variance drawn independently per domain (``Landscape.domain_share``), every row."""
DEFAULT_LAW = "transfer"
"""The law behind the ``joint (robust, default)`` row: what :class:`AutoScaleResult` uses ("separable" / "transfer")."""
TRANSFER_FORMS = "auto"
"""Its per-domain forms (``results.TRANSFER_FORMS``): "auto" = the ``form by CV`` row, "power" = ``per-domain transfer``."""
REGION_RISK = 0.5
"""The risk of the in-box rule (``results.REGION_RISK``)."""
TRANSFER_POOL = "auto"
"""Its pooling of the exponents (``results.TRANSFER_POOL``): "auto" = the ``default + pooled exponents (auto)`` row."""
ROWS = (
    "joint (robust, default)",
    "joint separable (robust)",
    "joint separable (non-robust)",
    "per-domain transfer (robust)",
    "per-domain transfer (non-robust)",
    "per-domain, form by CV (robust)",
    "per-domain, form by CV (non-robust)",
    "paper (DDO + extrapolate)",
    "direct transfer",
    "oracle transfer (reference)",
    "joint + shared gamma",
    "joint + multipliers 0.5, 2",
    "joint + replicated design",
    "joint + third budget 2e8",
    "default + multipliers 0.5, 2",
    "default + replicated design",
    "default + third budget 2e8",
    "default + replicated design, multipliers 0.5, 2",
    "default law, posterior expected loss",
    "default law, posterior mean + 0.5 sd (line)",
    "default + pooled exponents (auto)",
    "default + pooled exponents (sd 0.2)",
    "ceiling: true N0, gamma (robust)",
    "ceiling: true N0, gamma (non-robust)",
    "ceiling: only beta fitted (robust)",
    "default, inside the tested box (issue 11)",
    "default, inside the tested box, risk 1",
    "default, inside the box, guarded (issue 11 guard)",
    "x0.02 design, inside the tested box",
    "x0.02 design, inside the box, guarded (session 8's default)",
    "default design (x0.02, reach 0.5), inside the tested box",
    "default design (x0.02, reach 0.5), inside the box, guarded (the default)",
)
PAPER_MULTIPLIERS = (0.2, 3.0)
"""The design of every row but the last two: the paper's perturbations (x0.2 and x3)."""
NEAR_ZERO_MULTIPLIERS = (0.02, 3.0)
"""The x0.02 rows' multipliers (``design.DEFAULT_MULTIPLIERS`` since session 8); the last two rows raise the largest by
``design.DEFAULT_REACH`` as the product's design does (:func:`~optuna_autoscale.design.reach_multipliers`)."""
QUICK_ROWS = ("joint (robust, default)", "per-domain transfer (robust)", "paper (DDO + extrapolate)", "direct transfer")

Obs = tuple[dict[str, float], float, str]
Run = tuple[dict[str, float], float, str, dict[str, float]]


def _landscape(family: str, seed: int) -> object:
    from optuna_autoscale import simulate

    return getattr(simulate, family)(M, seed=seed)


def design_runs(
    land: object, budget: float, snr: float, seed: int, multipliers: Sequence[float] = PAPER_MULTIPLIERS
) -> list[Run]:
    """One budget's DDO design on ``land``: uniform base + one-domain perturbations, one seed.

    Rows are ``(allocation, objective, group, per-domain losses)``; the objective is the mean of
    the per-domain losses, whose noise is half shared by the run's domains and half independent
    per domain (:data:`DOMAIN_SHARE`).
    """
    noisy = land.with_snr(snr, budget, domain_share=DOMAIN_SHARE)  # type: ignore[attr-defined]
    domains = land.domains  # type: ignore[attr-defined]
    base = {d: budget / len(domains) for d in domains}
    group = f"{budget:.3g}/seed{seed}"
    allocs = [base]
    for d in domains:
        for x in multipliers:
            alloc = dict(base)
            alloc[d] = base[d] * x
            allocs.append(alloc)
    runs = []
    for alloc in allocs:
        per = noisy.per_domain_loss(alloc, seed=seed)
        runs.append((alloc, float(np.mean(list(per.values()))), group, per))
    return runs


def _ddo_optimum(runs: list[Run]) -> dict[str, float]:
    from optuna_autoscale.laws import fit_power_laws

    fit = fit_power_laws([(r[0], r[1]) for r in runs], runs[0][0])
    return fit.optimal_allocation()


def _rescale(alloc: Mapping[str, float], tokens: float) -> dict[str, float]:
    tot = sum(alloc.values())
    return {d: v * tokens / tot for d, v in alloc.items()}


def _laplace_draws(law: Any, n: int, seed: int) -> list[np.ndarray]:
    """``n`` draws per validation domain from a :class:`TransferLaw`'s Laplace posteriors (clipped to
    the parameter bounds), correlated across domains, coordinate by coordinate, by the residual
    correlation."""
    models = law._models()
    m = len(models)
    pmax = max(mod.n_params for mod in models)
    xi = np.random.default_rng(seed).standard_normal((n, m, pmax))
    try:
        c = np.linalg.cholesky(np.asarray(law.correlation, dtype=float) + 1e-9 * np.eye(m))
    except np.linalg.LinAlgError:
        c = np.eye(m)
    z = np.einsum("kl,slp->skp", c, xi)
    out = []
    for k, mod in enumerate(models):
        w, v = np.linalg.eigh(law.covariances[k])
        root = v * np.sqrt(np.maximum(w, 0.0))
        lo, hi = mod.bounds()
        out.append(np.clip(np.asarray(law.thetas[k]) + z[:, k, : mod.n_params] @ root.T, lo, hi))
    return out


def _draw_values(law: Any, draws: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The objective of allocation ``x`` (tokens) under every draw, and its gradient in tokens: ``(S,)``, ``(S, m)``.

    Vectorised copies of the two forms' ``grad_u`` (checked against them on the first draw).
    """
    u = np.asarray(x, dtype=float) / law.scale
    m = len(u)
    val, grad = np.zeros(len(draws[0])), np.zeros((len(draws[0]), m))
    for k, (wk, mod) in enumerate(zip(law._w(), law._models())):
        th = draws[k]
        if mod.form == "power":
            beta, u0, g = np.exp(th[:, 0]), np.exp(th[:, 1]), np.exp(th[:, 2])
            a = np.ones((len(th), m))
            a[:, mod.others] = th[:, 3:]
            z = a @ u + u0
            f = beta * z ** (-g)
            df = (-g * f / z)[:, None] * a
        else:
            al = np.exp(th[:, 1])
            t = th[:, 2:] @ mod._basis().T
            tot = float(u.sum())
            tr = t @ (u / tot)
            f = np.exp(th[:, 0]) * tot ** (-al) * np.exp(np.clip(tr, -60.0, 60.0))
            df = f[:, None] * (-al[:, None] + t - tr[:, None]) / tot
        f1, df1 = mod.grad_u(th[0], u)
        assert np.isclose(f[0], f1, rtol=1e-9) and np.allclose(df[0], df1, rtol=1e-9, atol=0.0)
        val += wk * f
        grad += wk * df / law.scale
    return val, grad


def posterior_allocation(
    law: Any,
    total: float,
    anchor: Mapping[str, float],
    *,
    risk: float,
    line: bool,
    n_draws: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Minimise mean + ``risk`` x sd, over Laplace posterior draws, of the objective's change from ``anchor``.

    ``line``: on the anchor -> point-optimum line (41 steps, like the default robust rule); else on
    the whole simplex (SLSQP from the anchor and from the point optimum, the better kept). Without
    a posterior (no noise estimate) the point optimum.
    """
    from scipy import optimize

    from optuna_autoscale.extrapolation.robust import project_box_total as _project_box_total

    domains = law.domains
    m = len(domains)
    lo, hi = np.zeros(m), np.full(m, np.inf)
    point = law._point(total, lo, hi)
    if law.covariances is None:
        return dict(zip(domains, point.tolist()))
    draws = _laplace_draws(law, n_draws, seed)
    a_map = _rescale(anchor, total)
    a_vec = np.array([a_map[d] for d in domains])
    fa, _ = _draw_values(law, draws, a_vec)

    def crit(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = _draw_values(law, draws, x)
        d = f - fa
        mean, gm = float(d.mean()), g.mean(axis=0)
        dc = d - mean
        sd = math.sqrt(float(dc @ dc) / len(d))
        gsd = (dc @ (g - gm)) / (len(d) * sd) if sd > 0 else np.zeros(m)
        return mean + risk * sd, gm + risk * gsd

    if line:
        ts = np.linspace(0.0, 1.0, 41)
        cands = a_vec[None, :] + ts[:, None] * (point - a_vec)[None, :]
        best = cands[int(np.argmin([crit(c)[0] for c in cands]))]
    else:
        f0 = abs(float(fa.mean())) or 1.0

        def fun(sh: np.ndarray) -> tuple[float, np.ndarray]:
            v, gr = crit(np.maximum(sh, 0.0) * total)
            return v / f0, gr * total / f0

        cons = [{"type": "eq", "fun": lambda sh: sh.sum() - 1.0, "jac": lambda sh: np.ones_like(sh)}]
        best, best_v = a_vec, 0.0
        for start in (a_vec / total, point / total):
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                res = optimize.minimize(fun, start, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                                        constraints=cons, options={"ftol": 1e-12, "maxiter": 300})
            sh = np.asarray(res.x, dtype=float)
            if np.all(np.isfinite(sh)) and sh.sum() > 0:
                x = _project_box_total(np.clip(sh, 0.0, 1.0), total, lo, hi)
                v = crit(x)[0]
                if v < best_v:
                    best, best_v = x, v
    return dict(zip(domains, (best * total / best.sum()).tolist()))


class _FixedShape:
    """A per-domain law of :mod:`optuna_autoscale.transfer` with the parameters outside ``free``
    fixed at ``theta`` (the first, ``log beta'`` / ``log k'``, must be free)."""

    def __init__(self, base: object, theta: np.ndarray, free: np.ndarray) -> None:
        self.base, self.theta, self.free = base, np.asarray(theta, dtype=float), np.asarray(free)
        self.n_params = len(self.free)

    def full(self, t: np.ndarray) -> np.ndarray:
        out = self.theta.copy()
        out[self.free] = t
        return out

    def f_and_jac(self, t: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, j = self.base.f_and_jac(self.full(t), u)  # type: ignore[attr-defined]
        return f, j[:, self.free]

    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        mu, prec = self.base.prior()  # type: ignore[attr-defined]
        return mu[self.free], prec[self.free]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.base.bounds()  # type: ignore[attr-defined]
        return lo[self.free], hi[self.free]

    def starts(self, u: np.ndarray, y: np.ndarray, gidx: np.ndarray) -> list[np.ndarray]:
        return [st[self.free] for st in self.base.starts(u, y, gidx)]  # type: ignore[attr-defined]


def ceiling_law(land: object, family: str, obs: list[Run], *, only_linear: bool) -> object:
    """The family's own per-domain law with shape parameters fixed at the simulator's true values.

    Fixed: ``N0`` and ``gamma`` (power form; ``separable`` and ``transfer``) or ``alpha``
    (exponential form; ``mixing_law``); with ``only_linear`` also the transfer coefficients
    ``A_kj`` / the interaction row, so only the linear coefficient (``beta`` / ``k``) and the group
    offsets are fitted. The rest is fitted as :func:`fit_transfer` does (MAP, Laplace posterior),
    so the robust rule sees only the noise on the parameters left free: an information ceiling.
    """
    from optuna_autoscale.laws import transfer as tr
    from optuna_autoscale.laws._map import group_design as _group_design

    domains = tuple(land.domains)  # type: ignore[attr-defined]
    m = len(domains)
    x = np.array([[r[0][d] for d in domains] for r in obs])
    ymat = np.array([[r[3][d] for d in domains] for r in obs])
    gnames, gidx, budgets, scale = _group_design(x, [r[2] for r in obs], domains)
    ng = len(gnames)
    u = x / scale
    form = "exp" if family == "mixing_law" else "power"
    fits, thetas, covs = [], [], []
    for k in range(m):
        base = tr._model(form, m, k)
        if form == "power":
            t_mat = np.array(getattr(land, "transfer_matrix", np.zeros((m, m))))
            true = np.r_[0.0, math.log(land.offset[k] / scale), math.log(land.gamma[k]),  # type: ignore[attr-defined]
                         t_mat[k, base.others]]
            free = np.array([0]) if only_linear else np.r_[0, np.arange(3, base.n_params)]
        else:
            t_row = np.array(land.interaction[k])  # type: ignore[attr-defined]
            true = np.r_[0.0, math.log(land.alpha[k]), base._basis().T @ t_row]  # type: ignore[attr-defined]
            free = np.array([0]) if only_linear else np.r_[0, np.arange(2, base.n_params)]
        fixed = _FixedShape(base, true, free)
        fit = tr._fit_domain(fixed, u, ymat[:, k], gidx, ng, None)  # type: ignore[arg-type]
        fits.append(fit)
        thetas.append(tuple(fixed.full(fit.theta).tolist()))
        cov = np.zeros((base.n_params, base.n_params))
        if fit.covariance is not None:
            cov[np.ix_(free, free)] = fit.covariance
        covs.append(cov)
    res = np.column_stack([f.residuals for f in fits])
    norms = np.sqrt((res**2).sum(axis=0))
    corr = (res.T @ res) / np.outer(norms, norms) if np.all(norms > 0) else np.ones((m, m))
    have_cov = all(f.covariance is not None for f in fits)
    return tr.TransferLaw(
        domains=domains,
        weights={d: 1.0 / m for d in domains},
        params={},
        offsets={},
        domain_offsets={},
        noise=None,
        domain_noise={},
        correlation=corr,
        scale=scale,
        budgets=budgets,
        n_obs=len(obs),
        thetas=tuple(thetas),
        covariances=tuple(covs) if have_cov else None,
        forms=(form,) * m,
    )


def scenario(args: tuple[str, float, int, tuple[str, ...], int]) -> dict[str, float]:
    """Shares recovered by every row for one (family, snr, seed)."""
    from optuna_autoscale.extrapolation import extrapolate_paper as extrapolate
    from optuna_autoscale.laws import fit_separable
    from optuna_autoscale.transfer import fit_transfer

    family, snr, seed, rows, n_samples = args
    warnings.simplefilter("ignore")
    land = _landscape(family, seed)
    domains = land.domains  # type: ignore[attr-defined]
    uniform = {d: TARGET / len(domains) for d in domains}
    oracle = land.oracle(TARGET)  # type: ignore[attr-defined]
    l_u = land.true_loss(uniform)  # type: ignore[attr-defined]
    l_o = land.true_loss(oracle)  # type: ignore[attr-defined]

    def share(alloc: Mapping[str, float]) -> float:
        return (l_u - land.true_loss(dict(alloc))) / (l_u - l_o)  # type: ignore[attr-defined]

    run_seed = 1000 * seed
    designs = [design_runs(land, b, snr, run_seed + j) for j, b in enumerate(BUDGETS)]
    optima = [_ddo_optimum(r) for r in designs]
    anchor = _rescale(optima[-1], TARGET)
    base_obs = [o for r in designs for o in r]

    def joint(obs: list[Run], *, robust: bool = True, **kw: object) -> dict[str, float]:
        law = fit_separable([r[:3] for r in obs], n_bootstrap=n_samples, seed=seed, **kw)  # type: ignore[arg-type]
        return law.optimal_allocation(TARGET, robust=robust, anchor=anchor)

    def per_domain(obs: list[Run], *, robust: bool = True, forms: str = "power", **kw: Any) -> dict[str, float]:
        law = fit_transfer([(r[0], r[3], r[2]) for r in obs], forms=forms, **kw)
        return law.optimal_allocation(TARGET, robust=robust, anchor=anchor)

    cache: dict[str, Mapping[str, float]] = {}
    laws: dict[str, Any] = {}

    def once(key: str, make: Callable[[], Mapping[str, float]]) -> Mapping[str, float]:
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def separable_robust() -> Mapping[str, float]:
        return once("separable", lambda: joint(base_obs))

    def transfer_robust() -> Mapping[str, float]:
        return once("transfer", lambda: per_domain(base_obs))

    def forms_law() -> Any:
        if "forms_law" not in laws:
            laws["forms_law"] = fit_transfer([(r[0], r[3], r[2]) for r in base_obs], forms="auto")
        return laws["forms_law"]

    def forms_robust() -> Mapping[str, float]:
        return once("forms", lambda: forms_law().optimal_allocation(TARGET, anchor=anchor))

    def ceiling(only_linear: bool) -> Any:
        key = f"ceiling{only_linear}"
        if key not in laws:
            laws[key] = ceiling_law(land, family, base_obs, only_linear=only_linear)
        return laws[key]

    def default_law() -> Mapping[str, float]:
        if DEFAULT_LAW == "separable":
            return separable_robust()
        if TRANSFER_POOL is not None:
            return once("default", lambda: per_domain(base_obs, forms=TRANSFER_FORMS, pool_exponents=TRANSFER_POOL))
        return forms_robust() if TRANSFER_FORMS == "auto" else transfer_robust()

    def design_of(design: str) -> tuple[list[Run], dict[str, float]]:
        """A design's runs and DDO anchor: ``"paper"`` (x0.2, x3), ``"near"`` (x0.02, x3; same seeds, its own
        anchor) or ``"reach"`` (the product's default: x0.02 and the largest raised by ``design.DEFAULT_REACH``)."""
        from optuna_autoscale.design import DEFAULT_REACH
        from optuna_autoscale.design import reach_multipliers

        if design == "paper":
            return base_obs, anchor
        if design not in laws:
            mults = reach_multipliers(1.0 / len(domains), NEAR_ZERO_MULTIPLIERS,
                                      DEFAULT_REACH if design == "reach" else None)
            runs = [design_runs(land, b, snr, run_seed + j, mults) for j, b in enumerate(BUDGETS)]
            laws[design] = ([o for r in runs for o in r], _rescale(_ddo_optimum(runs[-1]), TARGET))
        return laws[design]

    def in_box(risk: float | None = None, *, design: str = "paper") -> Mapping[str, float]:
        from optuna_autoscale.extrapolation.robust import region_bounds

        obs, anc = design_of(design)
        law = once_law(f"{design}_law", lambda: fit_transfer([(r[0], r[3], r[2]) for r in obs], forms=TRANSFER_FORMS,
                                                 pool_exponents=TRANSFER_POOL))
        w = np.array([[r[0][d] for d in domains] for r in obs])
        w = w / w.sum(axis=1, keepdims=True)
        lower, upper, _ = region_bounds(domains, TARGET, {d: 0.0 for d in domains}, None, w.min(axis=0), w.max(axis=0))
        return law.optimal_allocation(TARGET, lower=lower, upper=upper, anchor=anc, risk=risk)

    def guarded(design: str = "paper") -> Mapping[str, float]:
        from optuna_autoscale.evidence import fit_evidence
        from optuna_autoscale.results import design_shrink
        from optuna_autoscale.runs import load_runs

        cand = in_box(REGION_RISK, design=design)
        obs = design_of(design)[0]
        table = []
        for r in obs:
            tot = sum(r[0].values())
            row: dict[str, Any] = {f"weight_{d}": r[0][d] / tot for d in domains}
            row.update({"tokens": tot, "group": r[2], "value": r[1]})
            row.update({f"loss_{d}": v for d, v in r[3].items()})
            table.append(row)
        runs = load_runs(table, domains=domains)
        shrink, span = design_shrink(runs)  # as AutoScaleResult does for a DDO study
        ev = fit_evidence(runs, fitted=laws[f"{design}_law"], shrink=shrink, shrink_span=span)
        g = ev.guard(np.full(len(domains), 1.0 / len(domains)), [cand[d] for d in domains], TARGET, level=0.8)
        return dict(zip(domains, (g.shares * TARGET).tolist()))

    def once_law(key: str, make: Callable[[], Any]) -> Any:
        if key not in laws:
            laws[key] = make()
        return laws[key]

    makers: dict[str, Callable[[], Mapping[str, float]]] = {
        "joint (robust, default)": default_law,
        "joint separable (robust)": separable_robust,
        "joint separable (non-robust)": lambda: joint(base_obs, robust=False),
        "per-domain transfer (robust)": transfer_robust,
        "per-domain transfer (non-robust)": lambda: per_domain(base_obs, robust=False),
        "per-domain, form by CV (robust)": forms_robust,
        "per-domain, form by CV (non-robust)": lambda: forms_law().optimal_allocation(TARGET, robust=False),
        "paper (DDO + extrapolate)": lambda: extrapolate(optima, TARGET),
        "direct transfer": lambda: anchor,
        "oracle transfer (reference)": lambda: _rescale(land.oracle(BUDGETS[-1]), TARGET),  # type: ignore[attr-defined]
        "joint + shared gamma": lambda: joint(base_obs, shared_gamma=True),
        "joint + multipliers 0.5, 2": lambda: joint(
            [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + j, (0.2, 0.5, 2.0, 3.0))]
        ),
        "joint + replicated design": lambda: joint(
            base_obs + [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + 100 + j)]
        ),
        "joint + third budget 2e8": lambda: joint(base_obs + design_runs(land, THIRD, snr, run_seed + 50)),
        "default + multipliers 0.5, 2": lambda: per_domain(
            [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + j, (0.2, 0.5, 2.0, 3.0))],
            forms=TRANSFER_FORMS,
            pool_exponents=TRANSFER_POOL,
        ),
        "default + replicated design": lambda: per_domain(
            base_obs + [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + 100 + j)],
            forms=TRANSFER_FORMS,
            pool_exponents=TRANSFER_POOL,
        ),
        "default + third budget 2e8": lambda: per_domain(
            base_obs + design_runs(land, THIRD, snr, run_seed + 50), forms=TRANSFER_FORMS, pool_exponents=TRANSFER_POOL
        ),
        "default + replicated design, multipliers 0.5, 2": lambda: per_domain(
            [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + j, (0.2, 0.5, 2.0, 3.0))]
            + [o for j, b in enumerate(BUDGETS) for o in design_runs(land, b, snr, run_seed + 100 + j, (0.2, 0.5, 2.0, 3.0))],
            forms=TRANSFER_FORMS,
            pool_exponents=TRANSFER_POOL,
        ),
        "default law, posterior expected loss": lambda: posterior_allocation(
            forms_law(), TARGET, anchor, risk=0.0, line=False
        ),
        "default law, posterior mean + 0.5 sd (line)": lambda: posterior_allocation(
            forms_law(), TARGET, anchor, risk=0.5, line=True
        ),
        "default + pooled exponents (auto)": lambda: once(
            "default", lambda: per_domain(base_obs, forms="auto", pool_exponents="auto")
        ),
        "default + pooled exponents (sd 0.2)": lambda: per_domain(base_obs, forms="auto", pool_exponents=0.2),
        "ceiling: true N0, gamma (robust)": lambda: ceiling(False).optimal_allocation(TARGET, anchor=anchor),
        "ceiling: true N0, gamma (non-robust)": lambda: ceiling(False).optimal_allocation(TARGET, robust=False),
        "ceiling: only beta fitted (robust)": lambda: ceiling(True).optimal_allocation(TARGET, anchor=anchor),
        "default, inside the tested box (issue 11)": lambda: in_box(REGION_RISK),
        "default, inside the tested box, risk 1": lambda: in_box(1.0),
        "default, inside the box, guarded (issue 11 guard)": guarded,
        "x0.02 design, inside the tested box": lambda: in_box(REGION_RISK, design="near"),
        "x0.02 design, inside the box, guarded (session 8's default)": lambda: guarded("near"),
        "default design (x0.02, reach 0.5), inside the tested box": lambda: in_box(REGION_RISK, design="reach"),
        "default design (x0.02, reach 0.5), inside the box, guarded (the default)": lambda: guarded("reach"),
    }
    out: dict[str, float] = {}
    for row in rows:
        try:
            out[row] = float(share(makers[row]()))
        except Exception as exc:  # a failing method scores nothing; report it, do not hide it
            print(f"[{family} snr={snr} seed={seed}] {row}: {type(exc).__name__}: {exc}", file=sys.stderr)
            out[row] = math.nan
    return out


def run(
    *,
    families: Sequence[str],
    snrs: Sequence[float],
    seeds: int,
    rows: Sequence[str],
    n_samples: int,
    jobs: int,
    seed_offset: int = 0,
) -> dict[tuple[str, float], list[dict[str, float]]]:
    tasks = [
        (f, s, k, tuple(rows), n_samples)
        for f in families
        for s in snrs
        for k in range(seed_offset, seed_offset + seeds)
    ]
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(scenario, tasks, chunksize=1)
    else:
        results = [scenario(t) for t in tasks]
    table: dict[tuple[str, float], list[dict[str, float]]] = {}
    for t, r in zip(tasks, results):
        table.setdefault((t[0], t[1]), []).append(r)
    return table


def _snr_label(s: float) -> str:
    return "inf" if math.isinf(s) else f"{s:g}"


def format_table(
    table: dict[tuple[str, float], list[dict[str, float]]], rows: Sequence[str], *, stat: str = "mean"
) -> str:
    cols = list(table)
    head = "| method | " + " | ".join(f"{f} SNR {_snr_label(s)}" for f, s in cols) + " | mean |"
    sep = "|---" * (len(cols) + 2) + "|"
    lines = [head, sep]
    for row in rows:
        vals = []
        for c in cols:
            v = np.array([r[row] for r in table[c]])
            vals.append(float(np.nanmean(v)) if stat == "mean" else float(np.nanmin(v)))
        cells = " | ".join(f"{100 * v:.0f}%" for v in vals)
        lines.append(f"| {row} | {cells} | {100 * float(np.nanmean(vals)):.0f}% |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 family, 1 seed, 4 rows (seconds)")
    parser.add_argument("--seeds", type=int, default=8, help="landscape seeds per cell (default 8)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="first landscape seed (default 0; tune rules on other seeds, e.g. 100, and report on 0)")
    parser.add_argument("--samples", type=int, default=None,
                        help="Laplace posterior draws kept by the joint separable law (fit_separable's n_bootstrap)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--rows", nargs="*", default=None, help="rows to compute (default: all)")
    args = parser.parse_args(argv)
    if args.quick:
        families, snrs, seeds, rows, n_samples, jobs = ["separable"], [math.inf, 6.0], 1, QUICK_ROWS, 100, 1
    else:
        families, snrs, seeds, jobs = args.families, SNRS, args.seeds, args.jobs
        rows = tuple(args.rows) if args.rows else ROWS
        unknown = [r for r in rows if r not in ROWS]
        if unknown:
            parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
        n_samples = 200 if args.samples is None else args.samples
    t0 = time.perf_counter()
    offset = 0 if args.quick else args.seed_offset
    table = run(
        families=families, snrs=snrs, seeds=seeds, rows=rows, n_samples=n_samples, jobs=jobs, seed_offset=offset
    )
    print(f"Share of the uniform->oracle gain recovered at {TARGET:.0e} tokens (budgets "
          f"{BUDGETS[0]:.0e}, {BUDGETS[1]:.0e}; m={M}; {seeds} seed(s) per cell, landscape seeds "
          f"{offset}-{offset + seeds - 1}), mean over seeds:\n")
    print(format_table(table, rows))
    print("\nWorst seed per cell:\n")
    print(format_table(table, rows, stat="min"))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
