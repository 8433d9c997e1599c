"""Shared fits of a design's runs: per-budget DDO fits, the joint law, its optimum, verification points.

The sampler (its verification points) and :class:`~optuna_autoscale.results.AutoScaleResult` both
build on these, so they live below both.
"""

from __future__ import annotations

from typing import Any
from typing import TYPE_CHECKING

import numpy as np

from optuna_autoscale._progress import terminal_progress
from optuna_autoscale.design import Design
from optuna_autoscale.design import group_key
from optuna_autoscale.design import verify_optimum_index
from optuna_autoscale.extrapolation.robust import target_upper
from optuna_autoscale.laws import DDOFit
from optuna_autoscale.laws import fit_power_laws
from optuna_autoscale.laws import fit_separable
from optuna_autoscale.laws import fit_transfer
from optuna_autoscale.laws import JointLaw
from optuna_autoscale.laws import objective_weights


if TYPE_CHECKING:
    from optuna_autoscale.ledger import Ledger


__all__ = [
    "DEFAULT_JOINT_LAW",
    "DomainLosses",
    "JOINT_LAWS",
    "TRANSFER_FORMS",
    "TRANSFER_POOL",
    "ddo_optimum",
    "fit_budget",
    "fit_joint",
    "group_key",
    "paper_lower",
    "verification_allocation",
]

JOINT_LAWS = ("auto", "transfer", "separable")
"""Joint laws :func:`fit_joint` can fit: ``"auto"`` = the per-domain transfer law when every run
has per-domain losses that reproduce the objective as a fixed weighting, else the separable law."""
DEFAULT_JOINT_LAW = "auto"
"""The joint law behind ``AutoScaleResult.law`` and ``extrapolate(method="joint")``."""
TRANSFER_FORMS = "auto"
"""Per-domain forms of the transfer law :func:`fit_joint` fits (``fit_transfer(..., forms=)``):
per validation domain the power-law transfer form or the exponential (Data Mixing Laws) form,
whichever has the smaller leave-one-run-out error."""
TRANSFER_POOL = "auto"
"""Partial pooling of the per-domain exponents across validation domains in :func:`fit_joint`'s
transfer law (``fit_transfer(..., pool_exponents=)``): ``"auto"`` = an empirical-Bayes prior
(common mean and sd from the unpooled fits); ``None`` = the fixed independent priors. Chosen on
``benchmarks/simulated_extrapolation.py``'s tuning seeds (``benchmarks/RESULTS.md``)."""

DomainLosses = dict[int, dict[str, float]]
"""Trial number -> per-domain validation losses (user attrs ``loss_<domain>``)."""


def fit_budget(design: Design, ledger: Ledger, index: int) -> DDOFit:
    """The paper's DDO fit of budget ``index`` (same-seed base and perturbation runs).

    Replicates with other seeds are left out: pairing runs that share a seed is what cancels
    the seed noise (common random numbers). They inform the noise estimate and the joint law.
    """
    seed = design.budget_seed(index)
    obs = [
        (dict(pt.allocation or {}), value)
        for pt, value, _ in ledger.observations(roles=("base", "perturb"))
        if pt.budget_index == index and pt.seed == seed
    ]
    return fit_power_laws(obs, design.base_allocation(index))


def paper_lower(design: Design, fit: DDOFit, total: float) -> dict[str, float]:
    """The paper's lower bound (smallest multiplier tested x base tokens) joined with ``bounds``."""
    user = design.lower_bounds()
    hi = design.upper_bounds()
    paper = {
        d: min(hi[d], max(user[d], min(fit.multipliers[d]) * fit.base[d] * total / fit.total)) for d in design.domains
    }
    return paper if sum(paper.values()) <= total * (1 - 1e-9) else user


def ddo_optimum(design: Design, fit: DDOFit, index: int) -> dict[str, float]:
    """Budget ``index``'s optimal allocation (tokens) under the fit, with the paper's lower bound."""
    total = design.budgets[index]
    return fit.optimal_allocation(total, lower=paper_lower(design, fit, total), upper=target_upper(design))


def _joint_rows(
    design: Design, ledger: Ledger, losses: DomainLosses | None
) -> tuple[list[tuple[dict[str, float], float, str]], list[dict[str, float]] | None]:
    """The joint law's observations (groups with >= 2 allocations) and, when every run has them,
    their per-domain losses (mean over a point's runs)."""
    groups: dict[str, list[tuple[dict[str, float], float, str, str]]] = {}
    for pt, value, _ in ledger.observations():
        g = group_key(pt.budget_index, pt.seed)
        groups.setdefault(g, []).append((dict(pt.allocation or {}), value, g, pt.key))
    rows = [o for rs in groups.values() if len(rs) >= 2 for o in rs]
    obs = [(a, v, g) for a, v, g, _ in rows]
    per: list[dict[str, float]] | None = None
    if losses:
        per = []
        for *_, key in rows:
            runs = [losses.get(n) for n, _ in ledger.done.get(key, ())]
            if not runs or any(r is None for r in runs):
                per = None
                break
            per.append({d: float(np.mean([r[d] for r in runs if r is not None])) for d in design.domains})
    return obs, per


def fit_joint(
    design: Design, ledger: Ledger, losses: DomainLosses | None = None, *, kind: str = DEFAULT_JOINT_LAW
) -> JointLaw:
    """The joint law over every design run, one offset per (budget, seed) group.

    Groups with a single allocation (extra base runs with their own seed) only fit their own
    offset, so they are left out.

    Args:
        design: The study's design.
        ledger: Its completed runs.
        losses: Per-domain losses by trial number; default the ledger's own
            (:attr:`~optuna_autoscale.design.Ledger.losses`, read from the trials' user attrs
            ``loss_<domain>``). Without them (``{}``) only the separable law can be fitted.
        kind: ``"auto"`` (default): the per-domain transfer law
            (:func:`~optuna_autoscale.laws.fit_transfer`, per domain the power-law transfer
            form or the exponential Data Mixing Laws form by held-out error: :data:`TRANSFER_FORMS`)
            when every run has per-domain losses
            and the objective is a fixed non-negative weighting of them (the mean for metric
            ``"loss"``; :func:`~optuna_autoscale.laws.objective_weights`), else the separable
            law (:func:`~optuna_autoscale.laws.fit_separable`). ``"transfer"`` or ``"separable"``
            force one.

    Raises:
        ValueError: for an unknown ``kind``, or ``kind="transfer"`` without usable per-domain losses.
    """
    if kind not in JOINT_LAWS:
        raise ValueError(f"kind must be one of {JOINT_LAWS!r}, got {kind!r}.")
    if losses is None:
        losses = ledger.losses
    obs, per = _joint_rows(design, ledger, losses if kind != "separable" else None)
    if kind != "separable" and per is not None:
        weights = objective_weights([v for _, v, _ in obs], per, design.domains)
        if weights is not None:
            try:
                # A fit of many domains takes a minute or more (inside one sampler ask): a bar on a terminal.
                desc = f"fitting the transfer law ({len(design.domains)} domains, {len(obs)} runs)"
                with terminal_progress(desc) as progress:
                    return fit_transfer(
                        [(a, p, g) for (a, _, g), p in zip(obs, per)], weights=weights, forms=TRANSFER_FORMS,
                        pool_exponents=TRANSFER_POOL, progress=progress,
                    )
            except (ValueError, np.linalg.LinAlgError):
                if kind == "transfer":
                    raise
    if kind == "transfer":
        raise ValueError(
            "The per-domain transfer law needs every design run to record loss_<domain> for every domain, with "
            "the objective a fixed weighting of them (e.g. their mean); these runs do not. Set the user attrs in "
            "the objective (optuna_autoscale.simulate and the proxy objective do) or use kind='separable'."
        )
    return fit_separable(obs)


def verification_allocation(
    design: Design,
    ledger: Ledger,
    key: str,
    cache: dict[Any, Any] | None = None,
) -> dict[str, float]:
    """The allocation of the per-budget verification point ``key`` (a budget's DDO optimum), fitted from the
    ledger's runs (tokens).

    ``cache`` (optional) keeps per-budget optima keyed by the runs they were fitted on. The held-out
    prediction is not here: it is :class:`~optuna_autoscale.AutoScaleResult`'s default recommendation at the
    held-out budget (the sampler asks it), which needs the evidence above these fits.
    """
    cache = {} if cache is None else cache
    index = verify_optimum_index(key)
    if index is None:
        raise KeyError(f"{key!r} is not a per-budget verification point.")
    runs = tuple(sorted((k, tuple(v for _, v in ledger.done.get(k, ()))) for k in design.budget_keys(index)))
    ck = ("ddo", index, runs)
    if ck not in cache:
        cache[ck] = ddo_optimum(design, fit_budget(design, ledger, index), index)
    return cache[ck]
