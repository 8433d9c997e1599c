"""``AutoScaleResult``: read an AutoScale study, give fits, optima, extrapolations and checks."""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import json
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np

from optuna_autoscale._validation import check_tokens
from optuna_autoscale.design import Design
from optuna_autoscale.extrapolation import extrapolate_joint
from optuna_autoscale.extrapolation import extrapolate_paper
from optuna_autoscale.extrapolation.robust import anchor_allocation
from optuna_autoscale.extrapolation.robust import target_upper
from optuna_autoscale.fits import DEFAULT_JOINT_LAW  # noqa: F401  (re-exported: optuna_autoscale.results.*)
from optuna_autoscale.fits import ddo_optimum
from optuna_autoscale.fits import DomainLosses
from optuna_autoscale.fits import fit_budget
from optuna_autoscale.fits import fit_joint
from optuna_autoscale.fits import group_key
from optuna_autoscale.fits import JOINT_LAWS  # noqa: F401
from optuna_autoscale.fits import paper_lower
from optuna_autoscale.fits import TRANSFER_FORMS  # noqa: F401
from optuna_autoscale.fits import TRANSFER_POOL  # noqa: F401
from optuna_autoscale.fits import verification_allocation  # noqa: F401
from optuna_autoscale.ledger import Ledger
from optuna_autoscale.ledger import read_design
from optuna_autoscale.mixture import DEFAULT_SEED
from optuna_autoscale.mixture import Mixture


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.laws import DDOFit
    from optuna_autoscale.laws import JointLaw


__all__ = ["AutoScaleResult", "RESULT_ATTR", "SUMMARY_ATTR", "read_summary"]

SUMMARY_ATTR = "autoscale:summary"
"""Study user attr holding a short summary a person reads (one line: budgets fitted, the mixture,
the noise, the verification verdicts, warnings). Before 0.x it held the full :meth:`AutoScaleResult.to_dict`;
:func:`read_summary` reads either."""

RESULT_ATTR = "autoscale:result"
"""Study system attr holding :meth:`AutoScaleResult.to_dict` as JSON, for machines (:func:`read_summary`)."""


def read_summary(study: optuna.Study) -> dict[str, Any] | None:
    """The full result summary (:meth:`AutoScaleResult.to_dict`) stored in ``study``, or None.

    Reads the system attr ``autoscale:result``; studies written by older versions kept it in the
    user attr ``autoscale:summary``, which is read as a fallback.
    """
    raw = study._storage.get_study_system_attrs(study._study_id).get(RESULT_ATTR)
    if isinstance(raw, str):
        return json.loads(raw)
    old = study.user_attrs.get(SUMMARY_ATTR)
    return dict(old) if isinstance(old, Mapping) and "optima" in old else None


def short_summary(result: AutoScaleResult) -> str:
    """One readable line: budgets fitted, the largest budget's mixture, the noise, verdicts, warnings."""
    d = result.design
    parts = [f"{len(result.fits)}/{len(d.budgets)} budgets fitted"]
    if result.optima:
        b = max(result.optima)
        w = result.optima[b].weights
        tokens = f"{b:.3g}".replace("e+0", "e").replace("e+", "e")
        parts.append(f"mixture at {tokens} tokens: " + ", ".join(f"{k} {v:.3f}" for k, v in w.items()))
    if result.noise is not None:
        parts.append(f"noise sd {result.noise:.3g} ({result.noise_source})")
    else:
        parts.append("no noise estimate")
    try:
        verdicts = [str(r["verdict"]) for r in result.verification()]
    except (ValueError, RuntimeError):
        verdicts = []
    if verdicts:
        kinds = {"agrees": 0, "misses": 0, "cannot judge": 0}
        for v in verdicts:
            k = "agrees" if "agrees" in v else "misses" if "misses" in v else "cannot judge"
            kinds[k] += 1
        parts.append("verification: " + ", ".join(f"{n} {k}" for k, n in kinds.items() if n))
    if result.warnings:
        parts.append(f"{len(result.warnings)} warning{'s' if len(result.warnings) != 1 else ''}")
    parts.append("details: the study's Note (optuna-dashboard) or optuna-autoscale show")
    return "; ".join(parts)

_RTOL = 1e-6


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
            :class:`~optuna_autoscale.laws.TransferLaw` when every run recorded per-domain
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
    law: JointLaw | None
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

        The design is :func:`~optuna_autoscale.design.read_design`'s: the one the study's sampler
        holds, else the one stored in the study system attr ``autoscale:config``.

        Args:
            study: The study.
            write_summary: Store a short readable summary in the study user attr ``autoscale:summary``
                and :meth:`to_dict` as JSON in the system attr ``autoscale:result`` (:func:`read_summary`).

        Returns:
            The result.

        Raises:
            ValueError: If the study was not run with AutoScaleSampler.
        """
        design = read_design(study)
        trials = study.get_trials(deepcopy=False)
        ledger = Ledger(design, trials)
        result = cls._from_ledger(design, ledger)
        if write_summary:
            study.set_user_attr(SUMMARY_ATTR, short_summary(result))
            study._storage.set_study_system_attr(study._study_id, RESULT_ATTR, result.to_json(indent=None))
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
        total = check_tokens(tokens)
        if caps is not None:
            unknown = [d for d in caps if d not in self.design.domains]
            if unknown:
                raise ValueError(f"caps names unknown domains {unknown!r}; the domains are {list(self.design.domains)!r}.")
        if method in ("joint", "transfer", "separable"):
            law = self._joint_law(method)
            alloc = extrapolate_joint(self.design, law, total, anchor=anchor_allocation(self.design, self.optima, total), caps=caps)
        elif method == "paper":
            alloc = self._paper(total, caps)
        else:
            raise ValueError(f"method must be 'joint', 'transfer', 'separable' or 'paper', got {method!r}.")
        return Mixture.from_allocation({d: max(0.0, float(alloc[d])) for d in self.design.domains}, seed=DEFAULT_SEED)

    def _joint_law(self, method: str) -> JointLaw:
        if self.law is None:
            raise ValueError(
                "No joint law: it needs completed designs at two or more budgets "
                f"({'; '.join(self.warnings) or 'none completed'}). Use method='paper' or run more trials."
            )
        if method in ("joint", self.law.kind):
            return self.law
        if method not in self._laws:
            self._laws[method] = fit_joint(self.design, self._ledger, self._losses, kind=method)
        return self._laws[method]

    def _paper(self, total: float, caps: Mapping[str, float] | None) -> dict[str, float]:
        if len(self.optima) < 2:
            raise ValueError(
                f"The paper's extrapolation needs optima at two or more budgets; have {sorted(self.optima)}."
            )
        budgets = sorted(self.optima)
        optima = [self.optima[b].allocation for b in budgets]
        upper = target_upper(self.design, caps)
        cap = None if upper is None else {d: v for d, v in upper.items() if math.isfinite(v)}
        pinned = {
            d: all(
                self.optima[b].allocation[d] <= paper_lower(self.design, self.fits[b], b)[d] * (1 + 1e-6) + 1e-12
                for b in budgets
            )
            for d in self.design.domains
        }
        return extrapolate_paper(optima, total, caps=cap or None, pinned=pinned)

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
            law = self.law.to_dict()
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
    design: Design, ledger: Ledger, law: JointLaw | None
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
    if law is not None and law.noise is not None:
        return float(law.noise), "joint law residual"
    return None, None
