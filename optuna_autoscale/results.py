"""``AutoScaleResult``: read an AutoScale study, give fits, optima, extrapolations and checks."""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import json
import math
from typing import Any
from typing import TYPE_CHECKING
import warnings as _warnings

import numpy as np

from optuna_autoscale._validation import check_known_domains
from optuna_autoscale._validation import check_tokens
from optuna_autoscale.design import base_key
from optuna_autoscale.design import Design
from optuna_autoscale.design import HELDOUT_PREDICTED_KEY
from optuna_autoscale.design import HELDOUT_UNIFORM_KEY
from optuna_autoscale.design import verify_optimum_key
from optuna_autoscale.extrapolation import extrapolate_joint
from optuna_autoscale.extrapolation import extrapolate_paper
from optuna_autoscale.extrapolation.robust import anchor_allocation
from optuna_autoscale.extrapolation.robust import region_bounds
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
from optuna_autoscale.runs import load_runs
from optuna_autoscale.runs import Runs
from optuna_autoscale.runs import runs_from_study


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.evidence import Evidence
    from optuna_autoscale.evidence import Recommendation
    from optuna_autoscale.laws import DDOFit
    from optuna_autoscale.laws import JointLaw


__all__ = ["AutoScaleResult", "RESULT_ATTR", "SUMMARY_ATTR", "read_summary", "DEFAULT_REGION", "LEVEL", "REGION_RISK",
           "TWO_BUDGET_SHRINK", "design_shrink"]

DEFAULT_REGION = "box"
"""Where :meth:`AutoScaleResult.extrapolate` may recommend by default: ``"box"`` = every domain's
share within the range of shares the runs used (:func:`~optuna_autoscale.evidence.tested_region`).
Chosen by measurement over the convex hull of the tested shares (``benchmarks/RESULTS.md``, "Real runs
(issue 11)"): on DDO designs the hull excluded the true optimum in every transfer and mixing_law landscape
and most separable ones, the box in none of the separable ones. ``None`` (or ``allow_outside=True``) lets
the recommendation leave the tested region, with a warning."""
REGION_RISK = 0.5
"""Posterior sds the predicted gain must exceed on the anchor -> optimum line when the search is bounded by the
tested region (the joint laws' ``DEFAULT_RISK`` is 1.0 on the unbounded simplex): the region already keeps the
step within the evidence. Chosen on ``simulated_extrapolation.py``'s tuning seeds 100-107 (mean share at least
risk 1.0's in every cell), reported on seeds 0-7 (``benchmarks/RESULTS.md``, "Real runs (issue 11)")."""
TWO_BUDGET_SHRINK = 0.6
"""James-Stein ``z`` per unit of extrapolation ratio of the anchored predictions of a study with two design budgets
``lo < hi``, where leaving a budget out cannot validate the law's change with scale: at a target ``T`` the change is
kept only where it exceeds ``0.6 log(T / hi) / log(hi / lo)`` posterior sds (:attr:`Evidence.shrink_span`). The
posterior sd alone does not grow with the law's misspecification, which grows with how far past the runs it is
carried, counted in the span the runs cover. Measured (``benchmarks/RESULTS.md``, "The guard"): on the real 10x
benchmark (budgets 3e5 and 6e5, target 6e6: ratio 3.3, ``z = 2``) ``z = 1`` moved the guarded default 65% toward the
law's mixture and lost 0.044 nats to uniform over 3 paired seeds, where ``z = 2`` gives the mixture that tied uniform;
on the simulator (budgets 1e8 and 4e8, target 4e9: ratio 1.7, ``z = 1``) a fixed ``z = 2`` cost 5-8 points at SNR 6."""


def design_shrink(runs: Runs | None) -> tuple[float | str, tuple[float, float] | None]:
    """The anchored shrinkage of a DDO study's runs: ``(shrink, shrink_span)`` for
    :func:`~optuna_autoscale.evidence.fit_evidence`. Two budgets: :data:`TWO_BUDGET_SHRINK` per unit of
    extrapolation ratio over their span; three or more: ``"auto"`` (leave one budget out)."""
    budgets = [] if runs is None else sorted({runs.group_budget(g) for g in runs.group_names})
    if len(budgets) == 2:
        return TWO_BUDGET_SHRINK, (budgets[0], budgets[-1])
    return "auto", None


LEVEL = 0.8
"""Level of the intervals shown beside every recommendation (:meth:`AutoScaleResult.gain_interval`)."""
_AGREE_TV = 0.05
"""Total variation above which a per-budget optimum and the joint law's recommendation at that budget
are reported as disagreeing when their predicted difference's interval also excludes 0."""

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
    if d is None:
        r = result.runs
        parts = [f"{0 if r is None else r.n} runs at {0 if r is None else len(r.budgets)} budgets, no DDO design"]
    else:
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


def _tok(v: float) -> str:
    """A token count as ``4.4e7``."""
    return f"{float(v):.3g}".replace("e+0", "e").replace("e+", "e")


def _positive(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return f > 0 and not math.isnan(f)


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

    Build it with :meth:`from_study` (an AutoScale study, or any study whose trials used
    :func:`~optuna_autoscale.suggest_mixture`) or :meth:`from_runs` (runs you already have).

    Attributes:
        design: The study's design (domains, budgets, bounds, seeds); None for a result built from
            runs without a DDO design (then :attr:`fits` and :attr:`optima` are empty).
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
        n_trials: Completed trials holding a design point (without a design: runs fitted).
        runs: Every completed mixture run the evidence is fitted to (:class:`~optuna_autoscale.runs.Runs`),
            design points or not (verification runs left out), or None.
        notes: Informational notes (e.g. "only loss differences are predicted").

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

    design: Design | None
    fits: dict[float, DDOFit]
    optima: dict[float, Mixture]
    law: JointLaw | None
    noise: float | None
    noise_source: str | None
    warnings: list[str]
    n_trials: int
    _ledger: Ledger | None = dataclasses.field(repr=False)
    _losses: DomainLosses | None = dataclasses.field(default=None, repr=False)
    _laws: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    runs: Runs | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    _evidence: Any = dataclasses.field(default=None, repr=False)
    _shrink: float | str = dataclasses.field(default="auto", repr=False)
    _shrink_span: tuple[float, float] | None = dataclasses.field(default=None, repr=False)
    _cache: dict[Any, Any] = dataclasses.field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------------------- build
    @classmethod
    def from_runs(
        cls,
        runs: Any,
        *,
        domains: Any = None,
        objective: str = "value",
        law: str = "auto",
        checks: bool = True,
    ) -> AutoScaleResult:
        """Fit runs you already have: the default joint law on every run, anchored in the observations.

        Args:
            runs: A :class:`~optuna_autoscale.runs.Runs`, or what :func:`~optuna_autoscale.load_runs`
                reads: a pandas DataFrame, a list of dicts, a CSV / Parquet / JSON path,
                ``study.trials_dataframe()`` as it is, or an Optuna study (columns ``weight_<domain>``
                or ``tokens_<domain>``, ``tokens``, optional ``group``, ``value``, any ``loss_<name>``).
            domains: Training domains, in order (default: every ``weight_<d>`` column).
            objective: The objective column (default ``"value"``) or ``"mean"`` (of the ``loss_<name>`` columns).
            law: :data:`optuna_autoscale.evidence.LAWS` (``"auto"``: the per-domain transfer law when the
                evaluation columns are the training domains, else the per-column law, else the separable law).
            checks: Compute the warnings about the recommendation at the largest budget run (default True).

        Returns:
            A result without a DDO design: :meth:`extrapolate`, :meth:`recommend`, :meth:`predict_gain`,
            :meth:`gain_interval`, :meth:`rank_tested` and :attr:`warnings` work; :attr:`fits` and
            :attr:`optima` are empty.

        Raises:
            ValueError: one line naming the column or row and what is allowed (missing columns, shares not
                summing to 1, a group with one run, NaN losses, fewer runs than parameters).
        """
        from optuna_autoscale.evidence import fit_evidence

        if not isinstance(runs, Runs):
            runs = load_runs(runs, domains=domains, objective=objective)
        ev = fit_evidence(runs, law=law)
        result = cls(
            design=None, fits={}, optima={}, law=ev.law, noise=ev.noise, noise_source=ev.noise_source,
            warnings=[], n_trials=runs.n, _ledger=None, runs=runs, notes=list(ev.warnings), _evidence=ev,
        )
        if checks:
            result._check()
        return result

    @classmethod
    def from_study(cls, study: optuna.Study, *, write_summary: bool = True) -> AutoScaleResult:
        """Read ``study`` (run with :class:`~optuna_autoscale.AutoScaleSampler`).

        The design is :func:`~optuna_autoscale.design.read_design`'s: the one the study's sampler
        holds, else the one stored in the study system attr ``autoscale:config``.

        Args:
            study: The study.
            write_summary: Store a short readable summary in the study user attr ``autoscale:summary``
                and :meth:`to_dict` as JSON in the system attr ``autoscale:result`` (:func:`read_summary`).

        Every completed mixture trial (design point or not, e.g. from TPE or an earlier study;
        verification runs left out) is in :attr:`runs` and in the joint law (:attr:`law`); the
        per-budget DDO fits and optima use the design's points. A study without an AutoScale design
        is read as :meth:`from_runs` does (with a note).

        Returns:
            The result.

        Raises:
            ValueError: If the study has neither an AutoScale design nor completed mixture trials.
        """
        try:
            design = read_design(study)
        except ValueError as e:
            try:
                runs = runs_from_study(study)
            except ValueError as e2:
                raise ValueError(f"{e} Nor can its trials be fitted as runs: {e2}") from None
            result = cls.from_runs(runs)
            result.notes.insert(0, "no AutoScale design in the study: every completed mixture trial fitted as runs "
                                   "(AutoScaleResult.from_runs); no per-budget DDO optima")
            result.n_trials = runs.n
            if write_summary:
                study.set_user_attr(SUMMARY_ATTR, short_summary(result))
                study._storage.set_study_system_attr(study._study_id, RESULT_ATTR, result.to_json(indent=None))
            return result
        result = cls._from_design(study, design, Ledger(design, study.get_trials(deepcopy=False)))
        if write_summary:
            study.set_user_attr(SUMMARY_ATTR, short_summary(result))
            study._storage.set_study_system_attr(study._study_id, RESULT_ATTR, result.to_json(indent=None))
        return result

    @classmethod
    def _from_design(cls, study: Any, design: Design, ledger: Ledger, *, check: bool = True) -> AutoScaleResult:
        """The result of ``study`` run with ``design``: the design's fits from ``ledger``, the joint law and the
        evidence from every completed mixture trial (verification runs left out). The sampler's held-out
        verification point is this result's default recommendation, so both give one answer (``check=False``: without
        the consistency warnings, which only a person reads)."""
        from optuna_autoscale.design import VERIFY_ROLES

        try:
            runs: Runs | None = runs_from_study(study, domains=design.domains, exclude_roles=VERIFY_ROLES)
        except ValueError:
            runs = None
        return cls._from_ledger(design, ledger, runs=runs, check=check)

    @classmethod
    def _from_ledger(
        cls, design: Design, ledger: Ledger, losses: DomainLosses | None = None, runs: Runs | None = None,
        *, check: bool = True,
    ) -> AutoScaleResult:
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
        notes: list[str] = []
        if runs is not None and law is not None:
            extra = _extra_runs(design, ledger, runs, law)
            if extra:
                # Every completed mixture trial counts: refit the joint law on all of them.
                from optuna_autoscale.evidence import fit_law

                try:
                    law = fit_law(runs, "auto", None)[0]
                    notes.append(f"joint law fitted to all {runs.n} completed mixture runs ({extra} outside the design)")
                except (ValueError, RuntimeError, np.linalg.LinAlgError) as e:
                    warnings.append(f"joint law on all runs: fit failed ({e}); kept the design's")
                    runs = None
        noise, source = _noise(design, ledger, law)
        n_trials = sum(len(v) for v in ledger.done.values())
        # Budgets as the groups have them (a DDO perturbation run changes its total, not its budget).
        shrink, span = design_shrink(runs)
        result = cls(design, fits, optima, law, noise, source, warnings, n_trials, ledger, losses, runs=runs,
                     notes=notes, _shrink=shrink, _shrink_span=span)
        if check and law is not None and runs is not None:
            try:
                result._check()
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as e:
                result.warnings.append(f"evidence checks failed: {e}")
        return result

    # ----------------------------------------------------------------------------- evidence
    @property
    def evidence(self) -> Evidence:
        """The joint law anchored in the runs (:class:`~optuna_autoscale.evidence.Evidence`): the
        predictions behind :meth:`predict_gain`, :meth:`gain_interval`, :meth:`rank_tested` and the
        checks of every recommendation.

        With a DDO design and two budgets the law's change with scale cannot be validated by leaving a
        budget out (one budget is left), so it is kept where it exceeds ``z`` posterior sds, ``z`` growing with
        the distance extrapolated (James-Stein, :data:`TWO_BUDGET_SHRINK` per unit of ``log(T / hi) / log(hi /
        lo)``); with three or more budgets, and for :meth:`from_runs`, ``z`` is chosen by
        leave-one-budget-out ranking (``shrink="auto"``).

        Raises:
            ValueError: without a joint law or runs (see :attr:`warnings`).
        """
        if self._evidence is None:
            if self.law is None or self.runs is None:
                raise ValueError(
                    "No evidence to predict from: it needs a joint law fitted to runs at two or more budgets "
                    f"({'; '.join(self.warnings) or 'none'}). Run more trials, or fit the runs you have with "
                    "AutoScaleResult.from_runs(runs) (optuna_autoscale.load_runs, fit_evidence, fit_transfer, fit_separable)."
                )
            from optuna_autoscale.evidence import fit_evidence

            self._evidence = fit_evidence(self.runs, fitted=self.law, shrink=self._shrink, shrink_span=self._shrink_span)
            self.notes.extend(n for n in self._evidence.warnings if n not in self.notes)
        return self._evidence

    def _check(self) -> None:
        """Warnings a person must see: per-budget optima predicted worse than uniform, optima that disagree
        with the joint law's recommendation at their budget, and the recommendation at the largest budget run."""
        ev = self.evidence
        z_note = f"{LEVEL:.0%}"
        for rowd in self.consistency():
            b = rowd["budget"]
            lo_u, hi_u = rowd["optimum_uniform_interval"]
            if rowd["optimum_gain_over_uniform"] < 0:
                self._warn(f"budget {b:.4g}: the fitted optimum is predicted worse than uniform by "
                           f"{-rowd['optimum_gain_over_uniform']:.4f} ({z_note} interval of its gain {lo_u:+.4f} to {hi_u:+.4f}); "
                           "train uniform there unless a verification run says otherwise")
            if rowd["disagree"]:
                lo, hi = rowd["interval"]
                self._warn(f"budget {b:.4g}: the per-budget optimum and the joint law's recommendation differ by "
                           f"{rowd['tv']:.2f} total variation; the joint law's is predicted {rowd['gain']:+.4f} better "
                           f"({z_note} interval {lo:+.4f} to {hi:+.4f})")
        if self.design is None:
            top = float(ev.runs.budgets.max())
            self.recommend(top)

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def consistency(self) -> list[dict[str, Any]]:
        """One model, one answer: at every design budget, the per-budget DDO optimum against the joint law's
        recommendation there (:meth:`recommend`), both judged by the anchored predictions.

        Rows: ``budget``; ``optimum`` and ``joint`` (weights); ``tv`` (their total variation);
        ``gain`` / ``interval`` (the joint recommendation's predicted loss reduction over the optimum, with
        its :data:`LEVEL` interval); ``optimum_gain_over_uniform`` / ``optimum_uniform_interval``;
        ``disagree`` (``tv`` above 0.05 and the interval excluding 0). Empty without a design or law.
        """
        if "consistency" in self._cache:
            return self._cache["consistency"]
        rows: list[dict[str, Any]] = []
        if self.design is not None and self.law is not None and self.runs is not None:
            ev = self.evidence
            for b in sorted(self.optima):
                opt = self.optima[b]
                rec = self.recommend(b, guard=False, _record=False)  # the law's answer, not the guard's
                lo, hi = ev.gain_interval(rec.mixture, opt, level=LEVEL)
                g = ev.predict_gain(rec.mixture, opt)
                gu = ev.predict_gain(opt)
                tv = 0.5 * sum(abs(rec.mixture.weights[d] - opt.weights[d]) for d in self.design.domains)
                rows.append({
                    "budget": b, "optimum": dict(opt.weights), "joint": dict(rec.mixture.weights), "tv": float(tv),
                    "gain": float(g), "interval": (float(lo), float(hi)),
                    "optimum_gain_over_uniform": float(gu), "optimum_uniform_interval": ev.gain_interval(opt, level=LEVEL),
                    "disagree": bool(tv > _AGREE_TV and (lo > 0 or hi < 0)),
                })
        self._cache["consistency"] = rows
        return rows

    # ----------------------------------------------------------------------------- queries
    def extrapolate(
        self,
        tokens: float,
        method: str = "joint",
        caps: Mapping[str, float] | None = None,
        *,
        replace_caps: bool = False,
        allow_outside: bool = False,
        guard: bool = True,
    ) -> Mixture:
        """The mixture to train at ``tokens``: :meth:`recommend`'s mixture (see there).

        Its predicted gain and interval are :meth:`recommend`'s; its warnings (outside the tested
        region, predicted worse than uniform or than its anchor) are added to :attr:`warnings`.

        Args:
            tokens: Target training budget in tokens.
            method: ``"joint"`` (default), ``"transfer"``, ``"separable"`` or ``"paper"`` (see :meth:`recommend`).
            caps: Domain -> maximum tokens at the target (e.g. unique tokens x epochs). By default they
                only lower the design's upper bounds (the sampler's ``bounds``, e.g. ``[design] max_epochs``
                x unique tokens); with ``replace_caps=True`` they replace them (``math.inf``: no cap).
            replace_caps: Replace the design's upper bound of every domain named in ``caps`` (raise or lower
                it) instead of keeping the smaller of the two. The stored design is not changed.
            allow_outside: Let the recommendation leave the tested region (with a warning).
            guard: Leave the base mixture only as far as the evidence supports (default; see :meth:`recommend`).
                ``guard=False``: the in-region rule's mixture as it is (the default before the guard).

        Returns:
            The mixture (weights, ``tokens``, seed 0). When it sits on caps, :meth:`recommend`'s
            ``capped`` / ``uncapped`` say which domains and what the mixture would be without caps
            (also in its warnings, added to :attr:`warnings`).

        Example:
            .. code-block:: python

                import math
                import optuna
                from optuna_autoscale import AutoScaleResult, AutoScaleSampler
                from optuna_autoscale.simulate import separable

                land = separable(3)  # domains d0, d1, d2
                sampler = AutoScaleSampler(land.domains, [1e8, 4e8], bounds={"d0": (None, 2e9)}, seed=0)
                study = optuna.create_study(sampler=sampler)
                study.optimize(land.objective(), n_trials=100)
                result = AutoScaleResult.from_study(study)
                result.extrapolate(1e10)                                              # the design's caps
                result.extrapolate(1e10, caps={"d0": 5e9}, replace_caps=True)         # d0: 5e9 tokens
                result.extrapolate(1e10, caps={d: math.inf for d in result.domains}, replace_caps=True)  # none
        """
        return self.recommend(tokens, method=method, caps=caps, replace_caps=replace_caps,
                              allow_outside=allow_outside, guard=guard).mixture

    def recommend(
        self,
        tokens: float,
        *,
        method: str = "joint",
        caps: Mapping[str, float] | None = None,
        replace_caps: bool = False,
        allow_outside: bool = False,
        region: str | None = DEFAULT_REGION,
        guard: bool = True,
        _record: bool = True,
    ) -> Recommendation:
        """The recommended mixture at ``tokens``, with its predicted gain, interval and warnings.

        Inside the evidence by default (``region="box"``, :data:`DEFAULT_REGION`): every domain's share
        within the range of shares the runs used. It moves from an anchor toward the joint law's optimum
        inside that region only as far as the predicted gain exceeds its uncertainty (a lower confidence
        bound on the anchor -> optimum line):

        - with a DDO design (``method="joint"`` / ``"transfer"`` / ``"separable"``): the anchor is the largest
          budget's DDO optimum (moved into the region), the law's posterior gives the uncertainty (the robust
          rule of :func:`~optuna_autoscale.extrapolation.extrapolate_joint`, with the region as bounds and
          :data:`REGION_RISK` posterior sds; outside the region, the laws' default risk);
        - from runs without a design (:meth:`from_runs`): the anchor is the best tested mixture at ``tokens``
          and the anchored predictions give the uncertainty (:meth:`Evidence.recommend`).

        The guard (``guard=True``, the default): the mixture must not leave the base further than the evidence
        supports. On the line from the base (the design's ``base``, uniform unless one was given, moved into the
        bounds and caps; from runs without a design: the best tested mixture) to the mixture above, it takes the
        point whose predicted gain over the base has the best lower bound at :data:`LEVEL` (the 10% quantile of
        :meth:`Evidence.expected_gain_interval`'s 80% interval: law posterior, shrinkage bias, the anchors' seed noise and
        the law's misfit away from tested mixtures; the new runs' seed noise is in :meth:`gain_interval`), and stays at the base unless that bound is above 0 (:meth:`Evidence.guard`). A warning says
        when it stayed or how far it moved; ``candidate`` and ``guard`` on the returned recommendation hold the
        unguarded mixture and the fraction of the way taken. Why: on real proxies, every recommendation that
        moved away from uniform on a gain whose interval included 0 lost 0.04-0.2 nats at 10x (``DESIGN.md``,
        "The demo's mixtures at 10x, measured"). ``guard=False`` returns the unguarded mixture (the default
        before the guard).

        ``method="paper"`` is AutoScale's rule over the per-budget optima, unbounded by the region and unguarded.
        Every recommendation is then judged by the anchored predictions (:attr:`evidence`): its gain over its
        anchor, over uniform and over the best tested mixture, each with a :data:`LEVEL` interval; a mixture
        predicted worse than uniform or than its anchor, or outside the tested region, carries a warning
        (added to :attr:`warnings`).

        Caps: the design's upper bounds (``bounds``, e.g. ``[design] max_epochs`` x unique tokens) joined with
        ``caps`` (:meth:`target_caps`). A recommendation with a domain at its cap says so: the returned
        ``capped`` (domain -> cap tokens) and ``uncapped`` (the mixture the same rule gives without caps),
        and a warning naming both. Caps that sum to less than ``tokens`` are an error naming each cap and how
        to raise it.

        Args:
            tokens: Target budget (tokens).
            method: As :meth:`extrapolate`.
            caps: Domain -> maximum tokens at the target (see :meth:`extrapolate`).
            replace_caps: ``caps`` replace the design's upper bounds of the domains they name (see :meth:`extrapolate`).
            allow_outside: Same as ``region=None``: search the whole simplex (within bounds and caps), with a warning.
            region: ``"box"`` (default) or ``None``.
            guard: Leave the base only as far as the evidence supports (default True; see above).

        Raises:
            ValueError: for a bad ``tokens``, ``method``, ``caps`` or ``region``, or when no joint law could be
                fitted (the message says what to run or call instead).
        """
        total = check_tokens(tokens)
        if region not in ("box", None):
            raise ValueError(f"region must be 'box' or None, got {region!r}.")
        outside = allow_outside or region is None
        domains = self.domains
        if caps is not None:
            check_known_domains(caps, domains, "caps")
            bad = {d: v for d, v in caps.items() if not _positive(v)}
            if bad:
                raise ValueError(f"caps must be numbers of tokens > 0 (math.inf: no cap), got {bad!r}.")
            caps = {d: float(v) for d, v in caps.items()}
        key = ("rec", total, method, None if caps is None else tuple(sorted(caps.items())), outside, bool(replace_caps),
               bool(guard))
        if key in self._cache:
            rec = self._cache[key]
        else:
            rec = self._recommend(total, method, caps, outside, replace_caps, guard)
            if rec.capped and not (caps and replace_caps and all(math.isinf(v) for v in caps.values())
                                   and len(caps) == len(domains)):
                rec = self._with_uncapped(rec, total, method, outside, guard)
            self._cache[key] = rec
        if _record:
            for w in rec.warnings:
                self._warn(f"at {total:.4g} tokens ({method}): {w}")
        return rec

    def target_caps(self, caps: Mapping[str, float] | None = None, *, replace_caps: bool = False) -> dict[str, float]:
        """Domain -> the maximum tokens a recommendation may give it (``math.inf``: none): the design's upper
        bounds joined with ``caps`` (the smaller of the two; ``replace_caps=True``: ``caps`` replace them)."""
        upper = {d: math.inf for d in self.domains}
        if self.design is not None:
            upper.update({d: float(v) for d, v in self.design.upper_bounds().items()})
        for d, c in (caps or {}).items():
            upper[d] = float(c) if replace_caps else min(upper[d], float(c))
        return upper

    def _with_uncapped(self, rec: Recommendation, total: float, method: str, outside: bool,
                       guard: bool = True) -> Recommendation:
        """``rec`` with the mixture the same rule gives without caps and a warning naming the binding caps."""
        try:
            free = self.recommend(total, method=method, caps={d: math.inf for d in self.domains}, replace_caps=True,
                                  allow_outside=outside, guard=guard, _record=False).mixture
        except (ValueError, RuntimeError):
            free = None
        at = ", ".join(f"{d} {_tok(c)} tokens (share {rec.mixture.weights[d]:.3f})" for d, c in rec.capped.items())
        text = (f"{len(rec.capped)} of {len(self.domains)} domains sit at their caps, so the caps, not the fitted law, "
                f"decide their shares: {at}")
        if free is not None:
            text += "; without caps: " + ", ".join(f"{d} {free.weights[d]:.3f}" for d in self.domains)
        text += (" (raise or drop caps: caps=..., replace_caps=True; optuna-autoscale extrapolate --max-epochs E, "
                 "--cap DOMAIN=TOKENS or --no-caps)")
        return dataclasses.replace(rec, uncapped=free, warnings=(*rec.warnings, text))

    def _check_caps(self, total: float, upper: Mapping[str, float]) -> None:
        if all(math.isfinite(v) for v in upper.values()) and sum(upper.values()) < total * (1 - 1e-9):
            s = sum(upper.values())
            each = ", ".join(f"{d} {_tok(v)}" for d, v in upper.items())
            raise ValueError(
                f"the caps sum to {_tok(s)} tokens, less than the target {_tok(total)}: {each} (the design's upper bounds, "
                "e.g. [design] max_epochs x unique tokens, joined with caps). Raise them without changing the study: "
                "caps={domain: tokens}, replace_caps=True (optuna-autoscale extrapolate --max-epochs E, "
                f"--cap DOMAIN=TOKENS or --no-caps), or extrapolate to at most {_tok(s)} tokens."
            )

    @property
    def domains(self) -> tuple[str, ...]:
        """Training domains, in order."""
        if self.design is not None:
            return tuple(self.design.domains)
        assert self.runs is not None
        return tuple(self.runs.domains)

    def _recommend(self, total: float, method: str, caps: Mapping[str, float] | None, outside: bool,
                   replace_caps: bool = False, guard: bool = True) -> Recommendation:
        from optuna_autoscale.evidence import Recommendation
        from optuna_autoscale.evidence import tested_region

        if method not in ("joint", "transfer", "separable", "paper"):
            raise ValueError(f"method must be 'joint', 'transfer', 'separable' or 'paper', got {method!r}.")
        domains = self.domains
        if self.design is None:
            if method == "paper":
                raise ValueError("method='paper' needs per-budget DDO optima (a study run with AutoScaleSampler); "
                                 "these runs have no design. Use method='joint'.")
            ev = self.evidence
            if caps:
                raise ValueError("caps are not supported for a result from runs without a design yet; "
                                 "the recommendation stays inside the tested shares (see recommend()).")
            return ev.recommend(total, allow_outside=outside, guard=guard, level=LEVEL)
        notes: list[str] = []
        anchor = anchor_allocation(self.design, self.optima, total)
        caps_at = self.target_caps(caps, replace_caps=replace_caps)
        if method == "paper":
            self._check_caps(total, caps_at)
            alloc = self._paper(total, caps_at)
            step = math.nan
            opt = alloc
        else:
            law = self._joint_law(method)
            self._check_caps(total, caps_at)
            lower = self.design.lower_bounds()
            upper = dict(caps_at)
            if not outside and self.runs is not None:
                lo, hi = tested_region(self.runs)
                lower, upper, ok = region_bounds(domains, total, lower, upper, lo, hi)
                if not ok:
                    notes.append("the tested region does not meet the bounds and caps at this budget; searched within "
                                 "the bounds and caps only")
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore")
                alloc = law.optimal_allocation(total, lower=lower, upper=upper, robust=True, anchor=anchor,
                                               risk=None if outside else REGION_RISK)
                opt = law.optimal_allocation(total, lower=lower, upper=upper, robust=False)
            if anchor is not None:
                a = np.array([anchor[d] for d in domains])
                p = np.array([opt[d] for d in domains])
                x = np.array([alloc[d] for d in domains])
                den = float((p - a) @ (p - a))
                step = float(np.clip((x - a) @ (p - a) / den, 0.0, 1.0)) if den > 0 else 0.0
            else:
                step = math.nan
        fraction: float | None = None
        candidate: Mixture | None = None
        if guard and method != "paper":
            alloc, fraction, candidate, text = self._guard(total, alloc, caps_at)
            if text:
                notes.append(text)
        w = np.array([max(0.0, float(alloc[d])) for d in domains])
        mix = Mixture.from_allocation(dict(zip(domains, w.tolist())), seed=DEFAULT_SEED)
        optimum = Mixture.from_allocation({d: max(0.0, float(opt[d])) for d in domains}, seed=DEFAULT_SEED)
        anchor_mix = mix if anchor is None else Mixture.from_allocation(anchor, seed=DEFAULT_SEED)
        inside = True
        if self.runs is not None:
            lo, hi = tested_region(self.runs)
            sh = w / w.sum()
            inside = bool(np.all(sh >= lo - 1e-6) and np.all(sh <= hi + 1e-6))
            if not inside:
                out = [f"{d} {v:.3f} (tested {a_:.3f}-{b_:.3f})" for d, v, a_, b_ in zip(domains, sh, lo, hi)
                       if v < a_ - 1e-6 or v > b_ + 1e-6]
                why = "allow_outside=True" if outside else f"method={method!r}" if method == "paper" else "bounds and caps"
                notes.append(f"outside the tested region ({why}): " + ", ".join(out)
                             + "; no run supports these shares, verify before training at scale")
        try:
            ev = self.evidence
        except ValueError:
            ev = None
        nan2 = (math.nan, math.nan)
        gain = gu = math.nan
        iv = iu = nan2
        best = None
        gb = None
        ib = None
        if ev is not None:
            gain, iv = ev.predict_gain(mix, anchor_mix), ev.gain_interval(mix, anchor_mix, level=LEVEL)
            gu, iu = ev.predict_gain(mix), ev.gain_interval(mix, level=LEVEL)
            top = ev.rank_tested(total)[0]
            best = Mixture(top["weights"], total)
            gb, ib = ev.predict_gain(mix, best), ev.gain_interval(mix, best, level=LEVEL)
            if gu < 0:
                notes.append(f"predicted worse than uniform by {-gu:.4f} ({LEVEL:.0%} interval of the gain {iu[0]:+.4f} to "
                             f"{iu[1]:+.4f}): the evidence does not support leaving uniform here")
            if anchor is not None and gain < 0 and (fraction is None or fraction >= 1.0 - 1e-9) and 0.5 * sum(abs(mix.weights[d] - anchor_mix.weights[d]) for d in domains) > 1e-6:
                notes.append(f"predicted worse than its anchor (the largest budget's DDO optimum) by {-gain:.4f} "
                             f"({LEVEL:.0%} interval {iv[0]:+.4f} to {iv[1]:+.4f})")
        capped = {d: float(caps_at[d]) for d in domains
                  if math.isfinite(caps_at[d]) and float(alloc[d]) >= caps_at[d] * (1 - 1e-3)}
        return Recommendation(
            mixture=mix, anchor=anchor_mix, optimum=optimum, step=step, gain=float(gain), interval=iv,
            gain_over_uniform=float(gu), uniform_interval=iu, inside=inside,
            predicted_loss=math.nan if ev is None else float(ev.predict(mix)), warnings=tuple(notes),
            best_tested=best, gain_over_best=None if gb is None else float(gb), best_interval=ib, level=LEVEL,
            capped=capped, guard=fraction, candidate=candidate,
        )

    def _guard(self, total: float, alloc: Mapping[str, float], caps_at: Mapping[str, float]
               ) -> tuple[Mapping[str, float], float | None, Mixture | None, str | None]:
        """``alloc`` cut back toward the design's base by :meth:`Evidence.guard`: ``(alloc, fraction, candidate, note)``."""
        from optuna_autoscale.extrapolation.robust import project_box_total

        assert self.design is not None
        try:
            ev = self.evidence
        except ValueError:
            return alloc, None, None, None
        domains = self.domains
        cand = np.array([max(0.0, float(alloc[d])) for d in domains])
        candidate = Mixture.from_allocation(dict(zip(domains, cand.tolist())), seed=DEFAULT_SEED)
        base = np.array([float(self.design.base[d]) for d in domains])
        lo = np.array([float(self.design.lower_bounds()[d]) for d in domains])
        hi = np.array([float(caps_at[d]) for d in domains])
        base = project_box_total(base / base.sum(), total, lo, hi) / total
        uniform = bool(np.allclose(base, 1.0 / len(domains), atol=1e-9))
        name = "uniform" if uniform else "the base mixture"
        if 0.5 * float(np.abs(base - cand / cand.sum()).sum()) <= 1e-9:
            return alloc, 1.0, candidate, None
        g = ev.guard(base, cand, total, level=LEVEL)
        text = g.note(name, "the in-box recommendation", domains)
        return dict(zip(domains, (g.shares * total).tolist())), g.fraction, candidate, text

    def _joint_law(self, method: str) -> JointLaw:
        if self.law is None:
            raise ValueError(
                "No joint law: it needs completed designs at two or more budgets "
                f"({'; '.join(self.warnings) or 'none completed'}). Use method='paper', run more trials, or fit "
                "the runs you have: AutoScaleResult.from_runs(runs) (or optuna_autoscale.fit_transfer / fit_separable)."
            )
        if method in ("joint", self.law.kind):
            return self.law
        if method not in self._laws:
            assert self.design is not None and self._ledger is not None
            self._laws[method] = fit_joint(self.design, self._ledger, self._losses, kind=method)
        return self._laws[method]


    def _paper(self, total: float, upper: Mapping[str, float]) -> dict[str, float]:
        if len(self.optima) < 2:
            raise ValueError(
                f"The paper's extrapolation needs optima at two or more budgets; have {sorted(self.optima)}."
            )
        budgets = sorted(self.optima)
        optima = [self.optima[b].allocation for b in budgets]
        cap = {d: v for d, v in upper.items() if math.isfinite(v)}
        pinned = {
            d: all(
                self.optima[b].allocation[d] <= paper_lower(self.design, self.fits[b], b)[d] * (1 + 1e-6) + 1e-12
                for b in budgets
            )
            for d in self.design.domains
        }
        return extrapolate_paper(optima, total, caps=cap or None, pinned=pinned)

    def predict_gain(
        self, mixture: Mixture, reference: Mixture | None = None, *, tokens: float | None = None
    ) -> float:
        """Predicted loss reduction of ``mixture`` over ``reference`` (uniform by default) at the mixture's tokens.

        Anchored predictions (:attr:`evidence`): a tested mixture starts from its own observed loss at the
        nearest budget, plus the law's predicted change; an untested one from the nearest tested mixture plus
        the law's difference. Positive = ``mixture`` is predicted better.
        """
        self._need_law()
        return self.evidence.predict_gain(mixture, reference, tokens=tokens)

    def gain_interval(
        self, mixture: Mixture, reference: Mixture | None = None, level: float = LEVEL, *, tokens: float | None = None
    ) -> tuple[float, float]:
        """``(low, high)``: prediction interval of :meth:`predict_gain` at ``level`` (default 0.8), for the
        difference two runs sharing a seed would show at the mixture's tokens (law posterior + seed noise)."""
        self._need_law()
        return self.evidence.gain_interval(mixture, reference, level=level, tokens=tokens)

    def rank_tested(self, tokens: float) -> list[dict[str, Any]]:
        """The tested mixtures ranked at ``tokens`` by anchored prediction, best first
        (:meth:`Evidence.rank_tested`: ``weights``, ``predicted``, ``sd``, ``anchor_tokens``)."""
        self._need_law()
        return self.evidence.rank_tested(check_tokens(tokens))

    def predict_loss(self, mixture: Mixture, tokens: float | None = None) -> float:
        """Predicted absolute loss of ``mixture`` at ``tokens`` (default its own).

        Raises:
            ValueError: when the runs span fewer than three budgets: the offsets are then not modelled as a
                function of tokens, so only differences are predicted (:meth:`predict_gain`).
        """
        ev = self.evidence
        if not ev.absolute:
            raise ValueError(
                f"only loss differences are predicted: the runs span {len(ev.runs.budgets)} budget(s), and absolute "
                "losses at a budget never run need the offsets modelled as E(N) = E_inf + A N^-alpha (3 or more "
                "budgets). Use predict_gain / gain_interval."
            )
        return float(ev.predict(mixture, tokens))

    def _need_law(self) -> None:
        if self.law is None or self.runs is None:
            self._joint_law("joint")
            raise ValueError("No runs to anchor predictions in; see AutoScaleResult.warnings.")


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
        law; at the held-out budget up to the law's offset), ``predicted_gain`` (:meth:`predict_gain`'s anchored
        gain, as every recommendation states it; the law's difference without runs), ``gain_interval`` (its
        :data:`LEVEL` interval, or None),
        ``verdict`` (:func:`verification_verdict` with :attr:`noise`: whether this one pair of runs
        confirms, refutes or cannot judge the predicted gain) and ``trials`` (numbers of the run and
        of the reference).
        """
        d = self.design
        led = self._ledger
        if d is None or led is None:
            return []
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
            interval = None
            if pred_gain is not None and self.runs is not None:
                # One model, one answer: the gain the user was told (anchored, the verification runs left out).
                try:
                    m, r = pt.mixture(d.domains), ref.mixture(d.domains)
                    pred_gain = self.evidence.predict_gain(m, r)
                    interval = self.evidence.gain_interval(m, r, level=LEVEL)
                except (ValueError, RuntimeError, np.linalg.LinAlgError):
                    pass
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
                    "gain_interval": interval,
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
                verify_optimum_key(i),
                base_key(i),
                group_key(i, d.budget_seed(i)),
                "uniform" if uniform_base else "base",
            )
        if d.heldout is not None:
            row("verify_predicted", d.heldout, HELDOUT_PREDICTED_KEY, HELDOUT_UNIFORM_KEY, None, "uniform")
        return rows

    # ----------------------------------------------------------------------------- export
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: config, fits, optima, law, verification, noise, warnings."""
        law = None
        if self.law is not None:
            law = self.law.to_dict()
        return _jsonable(
            {
                "config": None if self.design is None else self.design.to_config(),
                "heldout_budget": None if self.design is None else self.design.heldout,
                "n_trials": self.n_trials,
                "fits": {repr(b): f.to_dict() for b, f in self.fits.items()},
                "optima": {repr(b): m.to_dict() for b, m in self.optima.items()},
                "law": law,
                "verification": self.verification(),
                "noise": self.noise,
                "noise_source": self.noise_source,
                "warnings": list(self.warnings),
                "notes": list(self.notes),
                "runs": None if self.runs is None else self.runs.n,
                "consistency": self._cache.get("consistency", []),
                "recommendations": [
                    {"tokens": k[1], "method": k[2], "allow_outside": k[4], "weights": dict(r.mixture.weights),
                     "gain_over_anchor": r.gain, "interval": r.interval, "gain_over_uniform": r.gain_over_uniform,
                     "uniform_interval": r.uniform_interval, "gain_over_best": r.gain_over_best,
                     "best_interval": r.best_interval, "level": r.level, "inside": r.inside, "warnings": list(r.warnings),
                     "capped": dict(r.capped), "uncapped": None if r.uncapped is None else dict(r.uncapped.weights),
                     "guard": r.guard, "candidate": None if r.candidate is None else dict(r.candidate.weights)}
                    for k, r in self._cache.items() if isinstance(k, tuple) and k and k[0] == "rec"
                ],
            }
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _extra_runs(design: Design, ledger: Ledger, runs: Runs, law: Any) -> int:
    """How many of ``runs`` the design's joint law was not fitted to (runs outside the design's groups)."""
    groups: dict[str, list[int]] = {}
    for pt, _, k in ledger.observations():
        groups.setdefault(group_key(pt.budget_index, pt.seed), []).append(k)
    n_design = sum(sum(v) for v in groups.values() if len(v) >= 2)
    offsets = getattr(law, "offsets", {}) or {}
    missing = any(g not in offsets for g in runs.group_names)
    return max(runs.n - n_design, 1 if missing else 0)


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
