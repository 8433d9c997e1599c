"""``AutoScaleResult``: read an AutoScale study, give fits, optima, extrapolations and checks."""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import inspect
import json
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np

from optuna_autoscale.design import CONFIG_ATTR
from optuna_autoscale.design import Design
from optuna_autoscale.design import Ledger
from optuna_autoscale.mixture import _check_tokens
from optuna_autoscale.mixture import DEFAULT_SEED
from optuna_autoscale.mixture import Mixture


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.laws import DDOFit
    from optuna_autoscale.laws import SeparableLaw
    from optuna_autoscale.transfer import TransferLaw


__all__ = ["AutoScaleResult", "SUMMARY_ATTR"]

SUMMARY_ATTR = "autoscale:summary"
"""Study user attr holding :meth:`AutoScaleResult.to_dict` (JSON)."""

_RTOL = 1e-6

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


# --------------------------------------------------------------------------------- shared fits
def group_key(index: int, seed: int) -> str:
    """The joint law's offset group of the runs of budget ``index`` with ``seed``."""
    return f"b{index}/s{seed}"


def fit_budget(design: Design, ledger: Ledger, index: int) -> DDOFit:
    """The paper's DDO fit of budget ``index`` (same-seed base and perturbation runs).

    Replicates with other seeds are left out: pairing runs that share a seed is what cancels
    the seed noise (common random numbers). They inform the noise estimate and the joint law.
    """
    from optuna_autoscale.laws import fit_power_laws

    seed = design.budget_seed(index)
    obs = [
        (dict(pt.allocation or {}), value)
        for pt, value, _ in ledger.observations(roles=("base", "perturb"))
        if pt.budget_index == index and pt.seed == seed
    ]
    return fit_power_laws(obs, design.base_allocation(index))


def _lower_for(design: Design, fit: DDOFit, total: float) -> dict[str, float]:
    """The paper's lower bound (smallest multiplier tested x base tokens) joined with ``bounds``."""
    user = design.lower_bounds()
    hi = design.upper_bounds()
    paper = {
        d: min(hi[d], max(user[d], min(fit.multipliers[d]) * fit.base[d] * total / fit.total)) for d in design.domains
    }
    return paper if sum(paper.values()) <= total * (1 - 1e-9) else user


def _upper(design: Design, caps: Mapping[str, float] | None = None) -> dict[str, float] | None:
    hi = design.upper_bounds()
    if caps:
        for d, c in caps.items():
            hi[d] = min(hi[d], float(c))
    return hi if any(math.isfinite(v) for v in hi.values()) else None


def ddo_optimum(design: Design, fit: DDOFit, index: int) -> dict[str, float]:
    """Budget ``index``'s optimal allocation (tokens) under the fit, with the paper's lower bound."""
    total = design.budgets[index]
    return fit.optimal_allocation(total, lower=_lower_for(design, fit, total), upper=_upper(design))


def domain_losses(design: Design, trials: Any) -> DomainLosses:
    """Per-domain losses (user attrs ``loss_<domain>``) of the trials that record all of them, finite.

    :attr:`~optuna_autoscale.design.Ledger.losses` holds the same rows for the completed design
    runs; that is what the sampler and :class:`AutoScaleResult` use.
    """
    from optuna_autoscale.mixture import LOSS_PREFIX

    out: DomainLosses = {}
    for t in trials:
        attrs = getattr(t, "user_attrs", None) or {}
        row = {}
        for d in design.domains:
            v = attrs.get(f"{LOSS_PREFIX}{d}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                break
            row[d] = float(v)
        else:
            out[int(t.number)] = row
    return out


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
) -> SeparableLaw | TransferLaw:
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
            (:func:`~optuna_autoscale.transfer.fit_transfer`, per domain the power-law transfer
            form or the exponential Data Mixing Laws form by held-out error: :data:`TRANSFER_FORMS`)
            when every run has per-domain losses
            and the objective is a fixed non-negative weighting of them (the mean for metric
            ``"loss"``; :func:`~optuna_autoscale.transfer.objective_weights`), else the separable
            law (:func:`~optuna_autoscale.laws.fit_separable`). ``"transfer"`` or ``"separable"``
            force one.

    Raises:
        ValueError: for an unknown ``kind``, or ``kind="transfer"`` without usable per-domain losses.
    """
    from optuna_autoscale.laws import fit_separable

    if kind not in JOINT_LAWS:
        raise ValueError(f"kind must be one of {JOINT_LAWS!r}, got {kind!r}.")
    if losses is None:
        losses = ledger.losses
    obs, per = _joint_rows(design, ledger, losses if kind != "separable" else None)
    if kind != "separable" and per is not None:
        from optuna_autoscale.transfer import fit_transfer
        from optuna_autoscale.transfer import objective_weights

        weights = objective_weights([v for _, v, _ in obs], per, design.domains)
        if weights is not None:
            try:
                return fit_transfer(
                    [(a, p, g) for (a, _, g), p in zip(obs, per)], weights=weights, forms=TRANSFER_FORMS,
                    pool_exponents=TRANSFER_POOL,
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


def joint_optimum(
    design: Design,
    law: SeparableLaw | TransferLaw,
    tokens: float,
    *,
    anchor: Mapping[str, float] | None = None,
    caps: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The joint law's robust optimal allocation at ``tokens``, within bounds and caps."""
    return law.optimal_allocation(
        tokens,
        lower=design.lower_bounds(),
        upper=_upper(design, caps),
        robust=True,
        anchor=None if anchor is None else {d: float(v) for d, v in anchor.items()},
    )


def _anchor(design: Design, optima: Mapping[float, Mixture], tokens: float) -> dict[str, float] | None:
    """The largest budget's DDO optimum, rescaled to ``tokens`` (the joint law's shrinkage target)."""
    if not optima:
        return None
    top = optima[max(optima)]
    return {d: top.weights[d] * tokens for d in design.domains}


def verification_allocation(
    design: Design,
    ledger: Ledger,
    key: str,
    cache: dict[Any, Any] | None = None,
    losses: DomainLosses | None = None,
) -> dict[str, float]:
    """The allocation of verification point ``key``, fitted from the ledger's runs (tokens).

    ``cache`` (optional) keeps per-budget optima keyed by the runs they were fitted on.
    The held-out prediction uses the same joint law as :class:`AutoScaleResult`
    (:func:`fit_joint` with ``kind="auto"``): the per-domain transfer law when the runs record
    per-domain losses that reproduce the objective, else the separable law. ``losses``
    (per-domain losses by trial number) defaults to the ledger's
    (:attr:`~optuna_autoscale.design.Ledger.losses`); ``{}`` forces the separable law.
    """
    cache = {} if cache is None else cache

    def optimum(i: int) -> dict[str, float]:
        runs = tuple(
            sorted((k, tuple(v for _, v in ledger.done.get(k, ()))) for k in design.budget_keys(i))
        )
        ck = ("ddo", i, runs)
        if ck not in cache:
            cache[ck] = ddo_optimum(design, fit_budget(design, ledger, i), i)
        return cache[ck]

    if key.endswith("/verify_optimum"):
        return optimum(int(key.split("/")[0][1:]))
    if key.endswith("/verify_predicted"):
        assert design.heldout is not None
        optima = {}
        for i, n in enumerate(design.budgets):
            try:
                optima[n] = Mixture.from_allocation(optimum(i))
            except (ValueError, RuntimeError):
                continue
        law = fit_joint(design, ledger, losses)
        return joint_optimum(design, law, design.heldout, anchor=_anchor(design, optima, design.heldout))
    raise KeyError(f"{key!r} is not a verification point.")


# --------------------------------------------------------------------------------- result
def verification_verdict(predicted_gain: float, observed_gain: float, noise: float | None) -> str:
    """What one verification pair (a run and its reference, one seed each) can say about a predicted gain.

    A gain is the difference of two runs, so its noise sd is about ``sqrt(2) * noise``; two of those
    (``2.8 * noise``) is the band inside which a single pair cannot tell a gain from zero or from
    the prediction.

    Args:
        predicted_gain: The law's predicted gain of the run over its reference (loss units).
        observed_gain: The observed gain (reference loss minus run loss).
        noise: The seed noise sd of one run (e.g. :attr:`AutoScaleResult.noise`), ``None`` if unknown.

    Returns:
        One sentence: cannot judge, agrees, or misses the prediction (distrust the fit).
    """
    if noise is None or not math.isfinite(noise) or noise <= 0:
        return "no noise estimate: cannot judge"
    band = 2.0 * math.sqrt(2.0) * noise
    if abs(predicted_gain) < band:
        return (f"predicted gain within the noise of one pair of runs (+-{band:.3f}): "
                "this check can neither confirm nor refute it")
    if abs(observed_gain - predicted_gain) <= band:
        return f"observed gain agrees with the prediction (within +-{band:.3f})"
    return f"observed gain misses the prediction by more than the noise (+-{band:.3f}): distrust the fit"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    return obj


@dataclasses.dataclass
class AutoScaleResult:
    """What an AutoScale study found: per-budget fits and optima, the joint law, and checks.

    Build it with :meth:`from_study`.

    Attributes:
        design: The study's design (domains, budgets, bounds, seeds).
        fits: Budget (tokens) -> the paper's :class:`~optuna_autoscale.laws.DDOFit`, for every
            budget whose design has completed.
        optima: Budget (tokens) -> the fitted optimal :class:`~optuna_autoscale.Mixture`.
        law: The joint law over all budgets (one offset per budget and seed), or None when it
            could not be fitted: the per-domain
            :class:`~optuna_autoscale.transfer.TransferLaw` when every run recorded per-domain
            losses (``loss_<domain>``) whose fixed weighting is the objective, else the
            :class:`~optuna_autoscale.laws.SeparableLaw` (see :func:`fit_joint`).
        noise: Seed-noise estimate of the objective (standard deviation), or None.
        noise_source: Where :attr:`noise` comes from: ``"base replicates"`` (pooled sd of base
            runs with different seeds), ``"joint law residual"``, or None when neither exists.
        warnings: Human-readable notes (incomplete budgets, failed fits, fit warnings).
        n_trials: Completed trials holding a design point.

    Example:
        .. code-block:: python

            import optuna
            from optuna_autoscale import AutoScaleResult, AutoScaleSampler
            from optuna_autoscale.simulate import separable

            land = separable(3)
            study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8]))
            study.optimize(land.objective(), n_trials=100)
            result = AutoScaleResult.from_study(study)
            big = result.extrapolate(4e9)            # joint law (default)
            paper = result.extrapolate(4e9, method="paper")
            for row in result.verification():
                print(row["check"], row["predicted_gain"], row["observed_gain"])
    """

    design: Design
    fits: dict[float, DDOFit]
    optima: dict[float, Mixture]
    law: SeparableLaw | TransferLaw | None
    noise: float | None
    noise_source: str | None
    warnings: list[str]
    n_trials: int
    _ledger: Ledger = dataclasses.field(repr=False)
    _losses: DomainLosses | None = dataclasses.field(default=None, repr=False)
    _laws: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------------------- build
    @classmethod
    def from_study(cls, study: optuna.Study, *, write_summary: bool = True) -> AutoScaleResult:
        """Read ``study`` (run with :class:`~optuna_autoscale.AutoScaleSampler`).

        The design comes from the study's sampler or, for a study loaded with another sampler,
        from the study system attr ``autoscale:config``.

        Args:
            study: The study.
            write_summary: Store :meth:`to_dict` in the study user attr ``autoscale:summary``.

        Returns:
            The result.

        Raises:
            ValueError: If the study was not run with AutoScaleSampler.
        """
        from optuna_autoscale.sampler import AutoScaleSampler

        sampler = getattr(study, "sampler", None)
        if isinstance(sampler, AutoScaleSampler):
            design = sampler.design
        else:
            cfg = study._storage.get_study_system_attrs(study._study_id).get(CONFIG_ATTR)
            if cfg is None:
                raise ValueError(
                    f"Study {study.study_name!r} was not run with AutoScaleSampler (no {CONFIG_ATTR!r} system "
                    "attr); create it with sampler=AutoScaleSampler(domains, budgets)."
                )
            design = Design.from_config(cfg)
        trials = study.get_trials(deepcopy=False)
        ledger = Ledger(design, trials)
        result = cls._from_ledger(design, ledger)
        if write_summary:
            study.set_user_attr(SUMMARY_ATTR, result.to_dict())
        return result

    @classmethod
    def _from_ledger(cls, design: Design, ledger: Ledger, losses: DomainLosses | None = None) -> AutoScaleResult:
        if losses is None:
            losses = ledger.losses  # the same per-domain losses the sampler's verification point uses
        warnings: list[str] = []
        fits: dict[float, DDOFit] = {}
        optima: dict[float, Mixture] = {}
        for i, n in enumerate(design.budgets):
            if not ledger.budget_done(i):
                missing = [k for k in design.budget_keys(i) if not ledger.is_done(k)]
                warnings.append(f"budget {n:.4g}: design incomplete ({len(missing)} runs missing), no fit")
                continue
            try:
                fit = fit_budget(design, ledger, i)
                optima[n] = Mixture.from_allocation(ddo_optimum(design, fit, i), seed=design.budget_seed(i))
            except (ValueError, RuntimeError) as e:
                warnings.append(f"budget {n:.4g}: DDO fit failed: {e}")
                continue
            fits[n] = fit
            warnings.extend(f"budget {n:.4g}: {w}" for w in fit.warnings)
        law = None
        if len(fits) >= 2:
            try:
                law = fit_joint(design, ledger, losses)
            except (ValueError, RuntimeError, ImportError) as e:
                warnings.append(f"joint law: fit failed: {e}")
        elif len(design.budgets) < 2:
            warnings.append("joint law: needs at least two budgets")
        noise, source = _noise(design, ledger, law)
        n_trials = sum(len(v) for v in ledger.done.values())
        return cls(design, fits, optima, law, noise, source, warnings, n_trials, ledger, losses)

    # ----------------------------------------------------------------------------- queries
    def extrapolate(
        self,
        tokens: float,
        method: str = "joint",
        caps: Mapping[str, float] | None = None,
    ) -> Mixture:
        """The predicted optimal mixture at ``tokens``.

        Args:
            tokens: Target training budget in tokens.
            method: ``"joint"`` (default): the joint law's (:attr:`law`) robust bounded optimum,
                shrunk towards the largest budget's DDO optimum as far as the data supports.
                ``"transfer"`` / ``"separable"``: the same with that joint law forced
                (:func:`fit_joint`). ``"paper"``: AutoScale's rule over the per-budget optima
                (:func:`optuna_autoscale.extrapolate`).
            caps: Domain -> maximum tokens at the target (e.g. unique tokens x epochs), on top of
                the sampler's ``bounds``.

        Returns:
            The mixture (weights, ``tokens``, seed 0).
        """
        total = _check_tokens(tokens)
        if caps is not None:
            unknown = [d for d in caps if d not in self.design.domains]
            if unknown:
                raise ValueError(f"caps names unknown domains {unknown!r}; the domains are {list(self.design.domains)!r}.")
        if method in ("joint", "transfer", "separable"):
            law = self._joint_law(method)
            alloc = joint_optimum(self.design, law, total, anchor=_anchor(self.design, self.optima, total), caps=caps)
        elif method == "paper":
            alloc = self._paper(total, caps)
        else:
            raise ValueError(f"method must be 'joint', 'transfer', 'separable' or 'paper', got {method!r}.")
        return Mixture.from_allocation({d: max(0.0, float(alloc[d])) for d in self.design.domains}, seed=DEFAULT_SEED)

    def _joint_law(self, method: str) -> SeparableLaw | TransferLaw:
        if self.law is None:
            raise ValueError(
                "No joint law: it needs completed designs at two or more budgets "
                f"({'; '.join(self.warnings) or 'none completed'}). Use method='paper' or run more trials."
            )
        from optuna_autoscale.transfer import TransferLaw

        current = "transfer" if isinstance(self.law, TransferLaw) else "separable"
        if method in ("joint", current):
            return self.law
        if method not in self._laws:
            self._laws[method] = fit_joint(self.design, self._ledger, self._losses, kind=method)
        return self._laws[method]

    def _paper(self, total: float, caps: Mapping[str, float] | None) -> dict[str, float]:
        from optuna_autoscale.extrapolation import extrapolate

        if len(self.optima) < 2:
            raise ValueError(
                f"The paper's extrapolation needs optima at two or more budgets; have {sorted(self.optima)}."
            )
        budgets = sorted(self.optima)
        optima = [self.optima[b].allocation for b in budgets]
        upper = _upper(self.design, caps)
        cap = None if upper is None else {d: v for d, v in upper.items() if math.isfinite(v)}
        kwargs: dict[str, Any] = {}
        if "pinned" in inspect.signature(extrapolate).parameters:
            pinned = {}
            for d in self.design.domains:
                at_lower = []
                for b in budgets:
                    fit = self.fits[b]
                    lo = _lower_for(self.design, fit, b)[d]
                    at_lower.append(self.optima[b].allocation[d] <= lo * (1 + 1e-6) + 1e-12)
                pinned[d] = all(at_lower)
            kwargs["pinned"] = pinned
        return extrapolate(optima, total, caps=cap or None, **kwargs)

    def predict_gain(self, mixture: Mixture, reference: Mixture | None = None) -> float:
        """The joint law's predicted loss reduction of ``mixture`` over ``reference`` (uniform by default)."""
        if self.law is None:
            raise ValueError("No joint law was fitted; see AutoScaleResult.warnings.")
        ref = reference or Mixture.uniform(self.design.domains, mixture.tokens)
        return float(self.law.predict(ref.allocation) - self.law.predict(mixture.allocation))

    def _predict(self, alloc: Mapping[str, float], group: str | None) -> float | None:
        if self.law is None:
            return None
        try:
            return float(self.law.predict(alloc, group=group))
        except (KeyError, ValueError):
            return float(self.law.predict(alloc))

    def verification(self) -> list[dict[str, Any]]:
        """Predicted against observed for each verification run that completed.

        Rows (dicts): ``check`` (``"verify_optimum"`` at a design budget, or
        ``"verify_predicted"`` at the held-out budget), ``budget`` (tokens), ``reference``
        (``"uniform"``, or ``"base"`` for a non-uniform base), ``weights``, ``observed`` /
        ``observed_reference`` (losses of the run and of the same-seed reference run),
        ``observed_gain`` (reference minus run), ``predicted`` / ``predicted_reference`` (joint
        law; at the held-out budget up to the law's offset), ``predicted_gain``,
        ``verdict`` (:func:`verification_verdict` with :attr:`noise`: whether this one pair of runs
        confirms, refutes or cannot judge the predicted gain) and ``trials`` (numbers of the run and
        of the reference).
        """
        d = self.design
        led = self._ledger
        uniform_base = all(abs(w - 1.0 / len(d.domains)) <= 1e-12 for w in d.base.values())
        rows: list[dict[str, Any]] = []

        def row(check: str, budget: float, key: str, ref_key: str, group: str | None, reference: str) -> None:
            if not (led.is_done(key) and led.is_done(ref_key)):
                return
            pt, ref = led.points[key], led.points[ref_key]
            obs = float(np.mean([v for _, v in led.done[key]]))
            obs_ref = float(np.mean([v for _, v in led.done[ref_key]]))
            pred = self._predict(pt.allocation or {}, group)
            pred_ref = self._predict(ref.allocation or {}, group)
            pred_gain = None if pred is None or pred_ref is None else pred_ref - pred
            rows.append(
                {
                    "check": check,
                    "budget": budget,
                    "reference": reference,
                    "weights": pt.mixture(d.domains).weights,
                    "observed": obs,
                    "observed_reference": obs_ref,
                    "observed_gain": obs_ref - obs,
                    "predicted": pred,
                    "predicted_reference": pred_ref,
                    "predicted_gain": pred_gain,
                    "verdict": (
                        "no prediction" if pred_gain is None
                        else verification_verdict(pred_gain, obs_ref - obs, self.noise)
                    ),
                    "trials": [led.done[key][0][0], led.done[ref_key][0][0]],
                }
            )

        for i, n in enumerate(d.budgets):
            row(
                "verify_optimum",
                n,
                f"b{i}/verify_optimum",
                f"b{i}/base",
                group_key(i, d.budget_seed(i)),
                "uniform" if uniform_base else "base",
            )
        if d.heldout is not None:
            row("verify_predicted", d.heldout, "heldout/verify_predicted", "heldout/verify_uniform", None, "uniform")
        return rows

    # ----------------------------------------------------------------------------- export
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: config, fits, optima, law, verification, noise, warnings."""
        law = None
        if self.law is not None:
            law = self.law.to_dict() if hasattr(self.law, "to_dict") else dataclasses.asdict(self.law)
        return _jsonable(
            {
                "config": self.design.to_config(),
                "heldout_budget": self.design.heldout,
                "n_trials": self.n_trials,
                "fits": {repr(b): f.to_dict() for b, f in self.fits.items()},
                "optima": {repr(b): m.to_dict() for b, m in self.optima.items()},
                "law": law,
                "verification": self.verification(),
                "noise": self.noise,
                "noise_source": self.noise_source,
                "warnings": list(self.warnings),
            }
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _noise(
    design: Design, ledger: Ledger, law: SeparableLaw | TransferLaw | None
) -> tuple[float | None, str | None]:
    """Pooled sd of base runs with different seeds per budget; else the law's residual sd."""
    ss, dof = 0.0, 0
    for i in range(len(design.budgets)):
        base = design.base_allocation(i)
        by_seed: dict[int, list[float]] = {}
        for pt, value, _ in ledger.observations():
            if pt.budget_index != i or pt.role not in ("base", "replicate") or pt.allocation is None:
                continue
            if all(abs(pt.allocation[d] - base[d]) <= _RTOL * max(abs(base[d]), 1.0) for d in design.domains):
                by_seed.setdefault(pt.seed, []).append(value)
        vals = np.array([np.mean(v) for v in by_seed.values()])
        if len(vals) >= 2:
            ss += float(((vals - vals.mean()) ** 2).sum())
            dof += len(vals) - 1
    if dof > 0:
        return math.sqrt(ss / dof), "base replicates"
    if law is not None and getattr(law, "noise", None) is not None:
        return float(law.noise), "joint law residual"
    return None, None
