"""``AutoScaleSampler``: the AutoScale design (DDO per budget + verification) as an Optuna sampler."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import datetime
import json
import logging
import math
import threading
import time
import warnings
import weakref
from typing import Any
from typing import TYPE_CHECKING

import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import FloatDistribution
from optuna.samplers import BaseSampler
from optuna.samplers import RandomSampler
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_autoscale._validation import check_tokens
from optuna_autoscale import fits
from optuna_autoscale.design import CONFIG_ATTR
from optuna_autoscale.design import Design
from optuna_autoscale.design import DesignPoint
from optuna_autoscale.design import HELDOUT_PREDICTED_KEY
from optuna_autoscale.design import is_filler_key
from optuna_autoscale.design import DEFAULT_MULTIPLIERS
from optuna_autoscale.design import DEFAULT_REACH
from optuna_autoscale.design import POINT_ATTR
from optuna_autoscale.ledger import CLAIM_ATTR
from optuna_autoscale.ledger import claim_standing
from optuna_autoscale.ledger import is_user_trial
from optuna_autoscale.ledger import Ledger
from optuna_autoscale.ledger import study_system_attrs
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.mixture import param_name
from optuna_autoscale.mixture import params_to_weights
from optuna_autoscale.mixture import TOKENS_PARAM
from optuna_autoscale.mixture import validate_domains
from optuna_autoscale.mixture import weights_to_params
from optuna_autoscale.mixture import WEIGHT_PREFIX


if TYPE_CHECKING:
    from optuna.study import Study


_logger = logging.getLogger(__name__)

BUDGET_ATTR = "autoscale_budget"
"""User attr: the nominal budget (tokens) of the design a trial belongs to."""

_UNIT = FloatDistribution(0.0, 1.0)
_POLL_FIRST = 1.0  # seconds before an idle claim polls storage again; doubles up to _POLL_MAX
_POLL_MAX = 30.0
_SETTLE_FIRST = 0.01  # seconds before re-checking a stored claim while an earlier claim holds no point yet
_SETTLE_MAX = 5.0  # ... at most this long (it takes milliseconds unless that worker died mid-claim)
_SAY_EVERY = 120.0  # seconds between "waits for a design point" messages
_MULTI_OBJECTIVE_MESSAGE = (
    "AutoScaleSampler supports single-objective studies only: the DDO fits and the joint law model "
    "one scalar loss. Create the study with a single direction (e.g. direction='minimize') and "
    "return one number, such as the mean validation loss, from the objective."
)


@dataclasses.dataclass
class _StudyState:
    storage: Any  # weakref.ref to the study's storage
    finished: Ledger  # finished trials only (they never change in storage)
    config_checked: bool = False
    checked_trials: set[int] = dataclasses.field(default_factory=set)


def _check_budget_count(budgets: Sequence[float], verify: bool) -> None:
    """AutoScale needs two budgets; one is only a DDO fit at that budget, and must say so (``verify=False``).

    With one budget nothing extrapolates (neither the joint law nor the paper's rule) and the
    held-out verification cannot be predicted, so a default study would run its design and then
    fail at the end. Refuse it here, with both ways out.
    """
    if len(budgets) >= 2 or not verify:
        return
    b = float(budgets[0])
    raise ValueError(
        f"AutoScale needs at least two budgets, got [{b:.3g}]: the extrapolation and the held-out verification "
        f"fit how the optimum moves between budgets. Add a second budget, e.g. budgets=[{b:.3g}, {4 * b:.3g}] "
        "([design] budgets in a run config), or pass verify=False (verify = false) to fit only the DDO optimum "
        "at this one budget."
    )


class AutoScaleSampler(BaseSampler):
    """Sampler running the AutoScale design: DDO at each budget, then verification runs.

    AutoScale (Kang et al., 2024, arXiv 2407.20177) finds the compute-optimal data mixture at a
    large budget from small-budget proxy runs. At each budget ``N_b`` this sampler proposes the
    *Direct Data Optimization* (DDO) design: one base run (uniform shares unless ``base`` says
    otherwise) and, for every domain and multiplier, a run where only that domain's tokens are
    scaled (so the total changes, as in the paper), plus ``replicates`` base runs with other
    seeds. Every run of one budget's design uses one seed (common random numbers). With
    ``design_seeds=k`` the base run and perturbations of every budget run ``k`` times, each
    copy with its own seed and its own offset in the joint law. All budgets' points can run at
    once, in any number of workers.

    With ``verify`` it then runs one trial at each budget's fitted optimum (once that budget's
    design, every copy included, has completed) and, at the held-out
    budget ``sqrt(N_min N_max)``, a uniform run and a run at the joint law's predicted optimum
    (same seed), so that the predicted gain over uniform can be checked against the observed
    one (:meth:`optuna_autoscale.AutoScaleResult.verification`). The joint law is the one
    :class:`~optuna_autoscale.AutoScaleResult` fits: the per-domain transfer law when the design
    runs record per-domain losses (user attrs ``loss_<domain>``) whose fixed weighting is the
    objective, else the separable law.

    Everything the sampler knows comes from the trials in storage (system attr
    ``autoscale:point`` holds each trial's design point as JSON) and its own arguments, so
    ``n_jobs > 1`` and several processes on one RDB storage share the design without
    collisions. A FAIL, PRUNED or NaN trial re-opens its point; a ``WAITING`` copy made by
    :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` (``RetryFailedTrialCallback``
    before Optuna 4.9) carries the point's system attr, keeps the claim and reruns the same
    point; a point that ran twice (possible only after a failure) is averaged as one
    observation, never lost or double-counted.

    A trial claims its design point when its objective calls
    :func:`~optuna_autoscale.suggest_mixture`, before any training starts. A trial that never
    calls it is an ordinary trial: its parameters come from ``independent_sampler`` and it never
    enters a fit. Claims are ordered by when they started; a trial re-reads the claims after
    storing its point and yields it to an earlier claim that holds it (two workers whose reads
    crossed), so no point runs twice. When every open point is running or waits on a fit, ``suggest_mixture`` waits,
    polling storage with back-off (and failing dead workers' stale trials, so their points
    re-open), and says what it waits for; once the design is complete the waiting trial is
    pruned and the study stops. ``filler_replicates=k`` instead lets up to ``k`` such trials run
    an extra base run with a fresh seed. Under :meth:`~optuna.study.Study.optimize` the study
    stops once :meth:`is_complete`.

    The objective reads its mixture with :func:`optuna_autoscale.suggest_mixture`, which
    returns exactly the proposal (weights, total tokens and seed). The relative search space is
    explicit from trial 0: ``weight_<domain>`` in ``[0, 1]`` (Optuna FAQ's ``-log(u)`` simplex
    mapping, exact inverse for the proposals) and ``tokens`` (log scale, covering every
    proposal). Other parameters go to ``independent_sampler``.

    Example:
        .. code-block:: python

            import optuna
            from optuna_autoscale import AutoScaleSampler, AutoScaleResult
            from optuna_autoscale.simulate import separable

            land = separable(3)
            sampler = AutoScaleSampler(land.domains, [1e8, 4e8], seed=0)
            study = optuna.create_study(sampler=sampler)
            study.optimize(land.objective(), n_trials=100)  # stops once the design is complete
            assert sampler.is_complete(study)
            result = AutoScaleResult.from_study(study)
            print(result.extrapolate(4e9).weights)

    Args:
        domains: Domain names, unique (at least two).
        budgets: Training budgets of the DDO designs, in tokens (each > 0).
        base: Domain -> share of the base run (normalised; every share > 0). Uniform when None.
        multipliers: Factors by which a perturbation run scales one domain's tokens (> 0, != 1,
            at least two). Default :data:`~optuna_autoscale.design.DEFAULT_MULTIPLIERS`, ``(0.02, 3)``:
            a near-removal run and x3; the paper uses 0.2 and 3 for causal LMs.
        reach: Each domain's largest multiplier is raised, where it falls short, until its run gives the
            domain this share of the tokens (default :data:`~optuna_autoscale.design.DEFAULT_REACH`, 0.5:
            x6 for 7 uniform domains, unchanged for 4 or fewer); recommendations stay inside the shares
            tested, so the design must test the shares an optimum may need. ``None``: the multipliers as
            given (the paper's design: ``multipliers=(0.2, 3.0), reach=None``).
        bounds: Domain -> ``(lower, upper)`` tokens (None for no bound) for the optimal
            allocations, e.g. ``upper = unique tokens x allowed epochs``. Used by the per-budget
            optima, the joint law's optimum and as caps when extrapolating. The design runs
            themselves are not clipped.
        replicates: Extra base runs per budget, each with its own seed (noise estimate).
        design_seeds: How many seeds each budget's whole design (base run and every
            perturbation) runs with; an integer >= 1. ``k`` costs ``k`` times the design runs
            (``k (1 + m * len(multipliers))`` per budget for ``m`` domains) and buys signal for
            the joint law, which fits one offset per (budget, seed) group (measured gains:
            ``benchmarks/RESULTS.md``, "Measurements cited by the code"). Copy 0 is the design of
            ``design_seeds=1`` (same trial keys and seed); copies ``c >= 1`` have keys
            ``b{i}/s{c}/...``. Their base runs with distinct seeds also give the noise estimate. The
            per-budget DDO fit (the paper's, and the joint law's shrinkage anchor) uses copy 0's runs.
        verify: Add the verification runs described above.
        seed: Seed of the design's training seeds and of the default independent sampler. With
            None the training seeds derive from 0, so that independent workers agree.
        independent_sampler: Sampler for parameters other than the mixture's
            (default: :class:`~optuna.samplers.RandomSampler` with ``seed``).
        filler_replicates: At most this many extra base runs (fresh seeds, smallest budget) for
            workers that find no open point; 0 (the default): such workers wait instead.
    """

    def __init__(
        self,
        domains: Sequence[str],
        budgets: Sequence[float],
        *,
        base: Mapping[str, float] | None = None,
        multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        replicates: int = 0,
        design_seeds: int = 1,
        verify: bool = True,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
        filler_replicates: int = 0,
        reach: float | None = DEFAULT_REACH,
    ) -> None:
        self._design = Design(
            domains,
            budgets,
            base=base,
            multipliers=multipliers,
            bounds=bounds,
            replicates=replicates,
            verify=verify,
            seed=seed,
            design_seeds=design_seeds,
            reach=reach,
        )
        _check_budget_count(self._design.budgets, verify)
        if independent_sampler is not None and not isinstance(independent_sampler, BaseSampler):
            raise TypeError(f"independent_sampler must be an optuna sampler, got {independent_sampler!r}.")
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        if isinstance(filler_replicates, bool) or not isinstance(filler_replicates, int) or filler_replicates < 0:
            raise ValueError(f"filler_replicates must be an integer >= 0, got {filler_replicates!r}.")
        self._filler_replicates = filler_replicates
        lo, hi = self._design.tokens_range
        self._search_space: dict[str, BaseDistribution] = {param_name(d): _UNIT for d in self._design.domains}
        self._search_space[TOKENS_PARAM] = FloatDistribution(lo, hi, log=True)
        self._init_caches()

    # ----------------------------------------------------------------------------- plumbing
    def _init_caches(self) -> None:
        self._lock = threading.RLock()
        self._parsed: dict[str, DesignPoint] = {}
        self._fit_cache: dict[Any, DesignPoint] = {}
        self._states: dict[tuple[int, int], _StudyState] = {}
        self._optima_cache: dict[Any, Any] = {}
        self._own_cache: dict[int, tuple[DesignPoint, dict[str, float]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for k in ("_lock", "_parsed", "_fit_cache", "_states", "_optima_cache", "_own_cache"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_caches()

    def __str__(self) -> str:
        return "AutoScaleSampler"

    @property
    def design(self) -> Design:
        """The design (domains, budgets, points, seeds)."""
        return self._design

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains, in order."""
        return self._design.domains

    @property
    def budgets(self) -> tuple[float, ...]:
        """The design budgets in tokens, ascending."""
        return self._design.budgets

    def reseed_rng(self) -> None:
        # The design is deterministic; only the independent sampler draws random numbers.
        self._independent_sampler.reseed_rng()

    def _parse(self, raw: str) -> DesignPoint:
        pt = self._parsed.get(raw)
        if pt is None:
            pt = DesignPoint.from_json(raw)
            if len(self._parsed) > 100_000:
                self._parsed.clear()
            self._parsed[raw] = pt
        return pt

    def _trials(self, study: Study, *, use_cache: bool = False) -> list[FrozenTrial]:
        # Optuna's per-trial cache is fresh only right after ``ask`` (``before_trial``); anywhere
        # else it may hold a stale snapshot, so it is used there only.
        return study._get_trials(deepcopy=False, use_cache=use_cache)

    def _ledger(
        self,
        study: Study,
        override: tuple[int, TrialState, float | None] | None = None,
        *,
        use_cache: bool = False,
    ) -> Ledger:
        trials = self._trials(study, use_cache=use_cache)
        with self._lock:
            base = self._state(study).finished
            base.absorb_finished(trials)
            return Ledger(self._design, trials, parse=self._parse, override=override, base=base)

    def _state(self, study: Study) -> _StudyState:
        """Per-study caches, guarded by a weak reference to the storage (ids get reused)."""
        key = self._study_key(study)
        entry = self._states.get(key)
        if entry is not None and entry.storage() is study._storage:
            return entry
        entry = _StudyState(weakref.ref(study._storage), Ledger(self._design, parse=self._parse))
        if len(self._states) > 16:
            self._states.clear()
        self._states[key] = entry
        return entry

    @staticmethod
    def _study_key(study: Study) -> tuple[int, int]:
        return (id(study._storage), study._study_id)

    def _raise_if_multi_objective(self, study: Study) -> None:
        if study._is_multi_objective():
            raise ValueError(_MULTI_OBJECTIVE_MESSAGE)

    # ----------------------------------------------------------------------------- checks
    def _check_study(self, study: Study, *, use_cache: bool = False) -> None:
        """Refuse a study run with other domains (stored config or the trials' parameters)."""
        with self._lock:
            state = self._state(study)
        if not state.config_checked:
            cfg = study_system_attrs(study).get(CONFIG_ATTR)
            mine = self._design.to_config()
            if cfg is None:
                study._storage.set_study_system_attr(study._study_id, CONFIG_ATTR, mine)
            else:
                if list(cfg.get("domains", [])) != list(self._design.domains):
                    raise ValueError(
                        f"This study was run by an AutoScaleSampler with domains {cfg.get('domains')!r}, but this "
                        f"sampler has {list(self._design.domains)!r}. Use a new study (or the same domains)."
                    )
                if cfg != mine:
                    _logger.warning(
                        "This study was started by an AutoScaleSampler with another configuration (%s); this "
                        "sampler's (%s) takes over. Points already run keep their stored allocations.",
                        json.dumps(cfg, sort_keys=True),
                        json.dumps(mine, sort_keys=True),
                    )
            state.config_checked = True
        checked = state.checked_trials
        mine_names = set(self._search_space)
        for t in self._trials(study, use_cache=use_cache):
            if t.number in checked or not t.state.is_finished():
                continue
            names = {
                n
                for n, dist in t.distributions.items()
                if (n.startswith(WEIGHT_PREFIX) and dist == _UNIT) or n == TOKENS_PARAM
            }
            other = sorted(n[len(WEIGHT_PREFIX) :] for n in names - mine_names if n != TOKENS_PARAM)
            if other:
                raise ValueError(
                    f"Trial {t.number} of this study used the mixture domains {other!r}, which this "
                    f"AutoScaleSampler does not know (domains {list(self._design.domains)!r}). Use a new study, "
                    "or build the sampler with the study's domains."
                )
            checked.add(t.number)

    # ----------------------------------------------------------------------------- assignment
    def _stored_point(self, study: Study, trial: FrozenTrial) -> DesignPoint | None:
        raw = trial.system_attrs.get(POINT_ATTR)
        if raw is None:
            raw = study._storage.get_trial_system_attrs(trial._trial_id).get(POINT_ATTR)
            if raw is not None:
                trial.system_attrs[POINT_ATTR] = raw
        return None if raw is None else self._parse(raw)

    def _assign(self, study: Study, trial: FrozenTrial) -> DesignPoint:
        """Claim ``trial``'s point from storage and write it to the trial's system attrs.

        Waits (polling storage with back-off) while every open point is running or waits on a
        fit, unless a filler replicate is allowed; prunes the trial once the design is complete.
        """
        delay, waited, said = _POLL_FIRST, 0.0, -math.inf
        while True:
            now = datetime.datetime.now()
            study._storage.set_trial_system_attr(trial._trial_id, CLAIM_ATTR, now.isoformat())
            ledger = self._ledger(study)
            key = ledger.next_key(trial.number, now)
            if key is not None:
                point = self._design.point(key)
                # Stored before a verification point's fits (they may take a while: other workers must see
                # it taken meanwhile), and checked against claims whose write landed after our read.
                self._store(study, trial, point or self._design.dynamic_point(key, None))
                if not self._keeps(study, trial, key, now):
                    continue
                if point is None:
                    point = self._verification_point(key, ledger, study)
                break
            if sum(1 for k in ledger.taken if is_filler_key(k)) < self._filler_replicates:
                point = self._design.filler(trial.number)
                break
            study._storage.set_trial_system_attr(trial._trial_id, CLAIM_ATTR, "")  # waiting claims nothing
            if ledger.is_complete():
                _logger.info("Trial %d: the AutoScale design is complete; nothing left to run.", trial.number)
                try:
                    study.stop()
                except RuntimeError:
                    pass  # outside study.optimize
                raise optuna.TrialPruned("The AutoScale design is complete: no design point is left to run.")
            if waited - said >= _SAY_EVERY or said == -math.inf:
                running = sorted(k for k in ledger.taken if k not in ledger.done)
                _logger.warning(
                    "Trial %d waits for a design point: every open point is running or waits on their fits "
                    "(%d running: %s). Polling storage every <= %.0f s (waited %.0f s). Set "
                    "AutoScaleSampler(filler_replicates=k) to run extra base replicates instead; with ask-and-tell "
                    "in one process, tell the running trials first (nobody else will finish them).",
                    trial.number, len(running), ", ".join(running[:6]) + (" ..." if len(running) > 6 else ""),
                    _POLL_MAX, waited,
                )
                said = waited
            time.sleep(delay)
            waited += delay
            delay = min(_POLL_MAX, 2 * delay)
            with warnings.catch_warnings():  # experimental in Optuna; its warning would repeat every poll
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's point re-opens
        if trial.system_attrs.get(POINT_ATTR) != point.to_json():  # a filler, or the verification's allocation
            self._store(study, trial, point)
        return point

    def _keeps(self, study: Study, trial: FrozenTrial, key: str, claimed_at: datetime.datetime) -> bool:
        """Whether ``trial`` keeps ``key`` after storing it (:func:`~optuna_autoscale.ledger.claim_standing`);
        a lost point is released (the trial then claims again, later than the winner)."""
        delay, deadline = _SETTLE_FIRST, time.monotonic() + _SETTLE_MAX
        while True:
            standing = claim_standing(self._trials(study), self._design, trial.number, claimed_at, key,
                                      parse=self._parse)
            if standing == "lost":
                _logger.debug("Trial %d: an earlier claim holds %s; claiming again.", trial.number, key)
                study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, None)
                trial.system_attrs.pop(POINT_ATTR, None)
                return False
            if standing == "kept" or time.monotonic() > deadline:
                return True
            time.sleep(delay)
            delay = min(4 * delay, 0.25)

    def _store(self, study: Study, trial: FrozenTrial, point: DesignPoint) -> None:
        raw = point.to_json()
        study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, raw)
        trial.system_attrs[POINT_ATTR] = raw
        self._parsed.setdefault(raw, point)

    def _verification_point(self, key: str, ledger: Ledger, study: Study) -> DesignPoint:
        # Content-addressed: the runs (trial numbers, values) and, for the held-out prediction,
        # their per-domain losses, which decide between the transfer and the separable law.
        losses = ledger.losses
        with_losses = key == HELDOUT_PREDICTED_KEY
        data = tuple(
            sorted(
                (
                    k,
                    tuple(
                        (n, v, tuple(losses[n].items()) if with_losses and n in losses else None) for n, v in runs
                    ),
                )
                for k, runs in ledger.done.items()
            )
        )
        if with_losses:  # the held-out recommendation fits every completed mixture trial, design point or not
            data += (tuple(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),)
        cached = self._fit_cache.get((key, data))
        if cached is not None:
            return cached
        # No lock while fitting: other workers' threads keep sampling (the caches are
        # content-addressed, so a concurrent duplicate fit only costs time). The held-out point is
        # AutoScaleResult's default recommendation at the held-out budget (inside the tested shares,
        # guarded), fitted on the same runs: what `extrapolate` would tell the user is what gets verified.
        if key == HELDOUT_PREDICTED_KEY:
            from optuna_autoscale.results import AutoScaleResult

            assert self._design.heldout is not None
            result = AutoScaleResult._from_design(study, self._design, ledger, check=False)
            alloc = dict(result.recommend(self._design.heldout, _record=False).mixture.allocation)
        else:
            alloc = fits.verification_allocation(self._design, ledger, key, self._optima_cache)
        point = self._design.dynamic_point(key, alloc)
        with self._lock:
            if len(self._fit_cache) > 64:
                self._fit_cache.clear()
            if len(self._optima_cache) > 64:
                self._optima_cache.clear()
            self._fit_cache[(key, data)] = point
        return point

    def _point_for(self, study: Study, trial: FrozenTrial) -> DesignPoint:
        point = self._stored_point(study, trial)
        if point is None:
            point = self._assign(study, trial)
        elif point.allocation is None:  # A reservation whose fit failed: retry here.
            point = self._verification_point(point.key, self._ledger(study), study)
            self._store(study, trial, point)
        return point

    def _own_param(self, point: DesignPoint, name: str) -> float | None:
        """The value the point gives the sampler's parameter ``name`` (None for other parameters)."""
        # Every parameter of a point at once, kept for the point object: a trial asks for m + 1 of them.
        hit = self._own_cache.get(id(point))
        if hit is None or hit[0] is not point:
            mix = point.mixture(self._design.domains)
            tok = self._search_space[TOKENS_PARAM]
            assert isinstance(tok, FloatDistribution)
            values = {TOKENS_PARAM: min(tok.high, max(tok.low, float(mix.tokens)))}
            u = weights_to_params([mix.weights[d] for d in self._design.domains])
            values.update((param_name(d), min(1.0, max(0.0, float(ud)))) for d, ud in zip(self._design.domains, u))
            with self._lock:
                if len(self._own_cache) > 64:
                    self._own_cache.clear()
                self._own_cache[id(point)] = hit = (point, values)
        return hit[1].get(name)

    # ----------------------------------------------------------------------------- BaseSampler
    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # No claim here: a trial claims its point when the objective calls suggest_mixture.
        self._independent_sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._raise_if_multi_objective(study)
        return dict(self._search_space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._raise_if_multi_objective(study)
        if not search_space or is_user_trial(trial, self._design.domains):
            return {}
        point = self._stored_point(study, trial)
        if point is None or point.allocation is None:
            return {}  # not claimed (yet): suggest_mixture claims, then sample_independent answers
        params: dict[str, Any] = {}
        for name, dist in search_space.items():
            if dist == self._search_space.get(name):
                value = self._own_param(point, name)
                if value is not None:
                    params[name] = value
        return params

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._raise_if_multi_objective(study)
        if param_distribution == self._search_space.get(param_name) and not is_user_trial(trial, self._design.domains):
            point = self._stored_point(study, trial)
            if point is not None and point.allocation is not None:
                value = self._own_param(point, param_name)
                if value is not None:
                    return value
        return self._independent_sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)
        if study._is_multi_objective():
            return
        if trial.system_attrs.get(POINT_ATTR) is None:
            return  # an ordinary trial (no suggest_mixture): it never completes the design
        value = None
        if state == TrialState.COMPLETE and values is not None and len(values) == 1:
            value = float(values[0])
        if self.is_complete(study, _override=(trial.number, state, value)):
            try:
                study.stop()
            except RuntimeError:
                pass  # Outside study.optimize (ask-and-tell): nothing to stop.

    # ----------------------------------------------------------------------------- public API
    def is_complete(self, study: Study, *, _override: tuple[int, TrialState, float | None] | None = None) -> bool:
        """Whether every design (and verification) point of ``study`` has completed.

        Args:
            study: A study run with this sampler's configuration.

        Returns:
            True once every point has a COMPLETE trial with a finite value.
        """
        return self._ledger(study, override=_override).is_complete()

    def autoscale_suggest(self, trial: optuna.trial.Trial, domains: Sequence[str]) -> tuple[Mixture, str]:
        """The hook behind :func:`optuna_autoscale.suggest_mixture`: this trial's mixture and role.

        Suggests ``weight_<domain>`` and ``tokens`` with the sampler's distributions (so the trial
        records them as parameters) and returns the exact proposal from the trial's
        ``autoscale:point`` system attr. An enqueued trial with fixed mixture parameters (e.g.
        :func:`optuna_autoscale.enqueue_mixture`) is validated and renormalised instead; its role
        is ``"user"`` and its seed that of the nearest design budget.

        Args:
            trial: The running trial.
            domains: The objective's domains; must be this sampler's (any order).

        Returns:
            ``(mixture, role)``; the mixture's weights are in the sampler's domain order.
        """
        doms = validate_domains(domains)
        mine = self._design.domains
        if set(doms) != set(mine):
            unknown = sorted(set(doms) - set(mine))
            missing = sorted(set(mine) - set(doms))
            raise ValueError(
                f"suggest_mixture got domains {list(doms)!r} but the AutoScaleSampler was built for "
                f"{list(mine)!r} (unknown: {unknown!r}, missing: {missing!r}). Pass the sampler's domains."
            )
        study = trial.study
        self._raise_if_multi_objective(study)
        # The storage API (as everywhere in this module), not the Trial's private frozen-trial cache.
        frozen = study._storage.get_trial(trial._trial_id)
        tok_dist = self._search_space[TOKENS_PARAM]
        fixed = frozen.system_attrs.get("fixed_params") or {}
        if is_user_trial(frozen, mine):
            missing = [param_name(d) for d in mine if param_name(d) not in fixed]
            if TOKENS_PARAM not in fixed:
                missing.append(TOKENS_PARAM)
            if missing:
                raise ValueError(
                    f"Trial {trial.number} was enqueued with some mixture parameters but not {missing!r}. "
                    "Enqueue whole mixtures with optuna_autoscale.enqueue_mixture(study, Mixture(...))."
                )
            u = [trial.suggest_float(param_name(d), 0.0, 1.0) for d in mine]
            tokens = check_tokens(trial.suggest_float(TOKENS_PARAM, tok_dist.low, tok_dist.high, log=True))
            w = params_to_weights(u)
            mix = Mixture(dict(zip(mine, w.tolist())), tokens, self._design.seed_for_tokens(tokens))
            return mix, "user"
        self._check_study(study)
        point = self._point_for(study, frozen)
        for d in mine:
            trial.suggest_float(param_name(d), 0.0, 1.0)
        trial.suggest_float(TOKENS_PARAM, tok_dist.low, tok_dist.high, log=True)
        trial.set_user_attr(BUDGET_ATTR, point.budget)
        return point.mixture(mine), point.role

    def point_of(self, trial: FrozenTrial) -> DesignPoint | None:
        """The design point a trial holds (None for user trials and trials of other samplers)."""
        raw = trial.system_attrs.get(POINT_ATTR)
        return None if raw is None else self._parse(raw)

