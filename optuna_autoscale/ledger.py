"""The ledger: what the trials in storage say about a design (claims, completions, next point).

A :class:`Ledger` reads the trials of a study (their ``autoscale:point`` system attrs and
states) and assigns the next point. The assignment is a deterministic function of the trial
number and the trials in storage, so several workers on one storage agree without talking to
each other; see :meth:`Ledger.next_key`. :func:`read_design` is the one reader of a study's
:class:`~optuna_autoscale.design.Design`.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import datetime
import json
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_autoscale.design import CONFIG_ATTR
from optuna_autoscale.design import Design
from optuna_autoscale.design import DESIGN_ROLES
from optuna_autoscale.design import DesignPoint
from optuna_autoscale.design import HELDOUT_PREDICTED_KEY
from optuna_autoscale.design import POINT_ATTR
from optuna_autoscale.design import verify_optimum_index
from optuna_autoscale.mixture import LOSS_PREFIX
from optuna_autoscale.mixture import param_name
from optuna_autoscale.mixture import TOKENS_PARAM


if TYPE_CHECKING:
    import optuna


__all__ = ["CLAIM_ATTR", "Ledger", "UNATTRIBUTED_GRACE_SECONDS", "is_user_trial", "read_design", "stored_design_config", "study_system_attrs"]

UNATTRIBUTED_GRACE_SECONDS = 60.0
"""A RUNNING trial that started claiming a point less than this ago, and holds none yet, is
assumed to be taking the next point.

A trial claims its point when the objective calls ``suggest_mixture``: it writes
:data:`CLAIM_ATTR`, reads the ledger and writes its point, milliseconds later. An older claim
without a point is a crashed worker's; counting it forever would leave a point unrun."""

CLAIM_ATTR = "autoscale:claiming"
"""Trial system attr: when the trial started claiming a design point (ISO time); "" while it waits."""


def claim_time(trial: FrozenTrial) -> datetime.datetime | None:
    """When ``trial`` started claiming a point, or None (not claiming, or waiting)."""
    raw = trial.system_attrs.get(CLAIM_ATTR)
    return datetime.datetime.fromisoformat(raw) if raw else None


def claim_standing(
    trials: Sequence[FrozenTrial],
    design: Design,
    number: int,
    claimed_at: datetime.datetime,
    key: str,
    *,
    parse: Any = None,
    now: datetime.datetime | None = None,
) -> str:
    """Whether trial ``number``, which claimed ``key`` at ``claimed_at`` and stored it, keeps it.

    A claim's time is taken before its write lands, so two workers can both read a ledger
    without the other's claim and take the same point. Each checks again after storing it:
    ``"lost"`` when a RUNNING trial that claimed earlier (ties: a smaller number) holds ``key``
    (this trial gives the point up and claims again); ``"pending"`` when an earlier claim holds
    no point yet (it may be about to take ``key``: check again shortly); else ``"kept"``. The
    order is total, so of two trials holding one point exactly one loses.
    """
    parse = parse or DesignPoint.from_json
    now = now or datetime.datetime.now()
    grace = datetime.timedelta(seconds=UNATTRIBUTED_GRACE_SECONDS)
    me = (claimed_at, number)
    pending = False
    for t in trials:
        if t.number == number or t.state not in (TrialState.RUNNING, TrialState.WAITING):
            continue
        when = claim_time(t)
        if when is None or (when, t.number) > me:
            continue
        raw = t.system_attrs.get(POINT_ATTR)
        if raw is None:
            pending |= now - when < grace and not is_user_trial(t, design.domains)
        elif parse(raw).key == key:
            return "lost"
    return "pending" if pending else "kept"


def _finite_value(t: FrozenTrial) -> float | None:
    vals = t.values
    if t.state != TrialState.COMPLETE or not vals or len(vals) != 1:
        return None
    v = float(vals[0])
    return v if math.isfinite(v) else None


def _domain_losses(attrs: Mapping[str, Any] | None, names: Sequence[tuple[str, str]]) -> dict[str, float] | None:
    """The per-domain losses (user attrs ``loss_<domain>``) of a trial, if it records all, finite."""
    if not attrs:
        return None
    row = {}
    for d, name in names:
        v = attrs.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        f = float(v)
        if not math.isfinite(f):
            return None
        row[d] = f
    return row


def is_user_trial(t: FrozenTrial, domains: Iterable[str]) -> bool:
    """Whether ``t`` was enqueued with fixed mixture parameters (role ``"user"``)."""
    fixed = t.system_attrs.get("fixed_params")
    if not fixed:
        return False
    if TOKENS_PARAM in fixed:
        return True
    return any(param_name(d) in fixed for d in domains)


class Ledger:
    """What the trials in storage say about the design: claims, completions, open points.

    Args:
        design: The design.
        trials: The study's trials (any order; not modified).
        parse: A function from the ``autoscale:point`` JSON to a :class:`DesignPoint`
            (the sampler passes a cached parser).
        override: Optional ``(number, state, value)`` for a trial whose state is being told
            right now (``after_trial`` sees the trial before storage does).
        now: The current time, for the age of un-attributed RUNNING trials.
        base: A ledger of finished trials to start from (see :meth:`absorb_finished`); its
            trials are skipped, so building a ledger per trial costs only the new trials.

    Attributes:
        done: Key -> ``(trial number, value)`` of each completed run of that point.
        losses: Trial number -> per-domain validation losses (user attrs ``loss_<domain>``), for
            the completed runs in :attr:`done` that record every domain's loss, finite. Finished
            trials never change in storage, so this is a function of the completed runs (workers
            reading the same runs agree); the joint law uses them
            (:func:`optuna_autoscale.results.fit_joint`).
    """

    def __init__(
        self,
        design: Design,
        trials: Sequence[FrozenTrial] = (),
        *,
        parse: Any = DesignPoint.from_json,
        override: tuple[int, TrialState, float | None] | None = None,
        now: datetime.datetime | None = None,
        base: Ledger | None = None,
    ) -> None:
        self.design = design
        self._parse = parse
        if base is None:
            self.taken: set[str] = set()
            self.done: dict[str, list[tuple[int, float]]] = {}
            self.points: dict[str, DesignPoint] = {}
            self.failed: dict[str, int] = {}
            self.losses: dict[int, dict[str, float]] = {}
            self.seen: set[int] = set()
        else:
            self.taken = set(base.taken)
            self.done = dict(base.done)
            self.points = dict(base.points)
            self.failed = dict(base.failed)
            self.losses = dict(base.losses)  # rows are never modified, only added
            self.seen = base.seen  # read only here
        self._loss_names = tuple((d, f"{LOSS_PREFIX}{d}") for d in design.domains)
        # (claim time, number) of RUNNING trials claiming a point right now
        self.unattributed: list[tuple[datetime.datetime, int]] = []
        now = now or datetime.datetime.now()
        grace = datetime.timedelta(seconds=UNATTRIBUTED_GRACE_SECONDS)
        seen = self.seen
        for t in trials:
            if t.number in seen:
                continue
            state = t.state
            if override is not None and t.number == override[0]:
                state, value = override[1], override[2]
                if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
                    state, value = TrialState.FAIL, None
            else:
                value = _finite_value(t) if state == TrialState.COMPLETE else None
            raw = t.system_attrs.get(POINT_ATTR)
            if raw is None:
                when = claim_time(t) if state == TrialState.RUNNING else None
                if when is not None and now - when < grace and not is_user_trial(t, design.domains):
                    self.unattributed.append((when, t.number))
                continue
            self._record(t.number, state, value, parse(raw), t.user_attrs)
        self.unattributed.sort()

    def _record(
        self,
        number: int,
        state: TrialState,
        value: float | None,
        pt: DesignPoint,
        user_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        completed = state == TrialState.COMPLETE and value is not None
        cur = self.points.get(pt.key)
        # The point of the first completed run wins; a reservation (no allocation) never does.
        if cur is None or (cur.allocation is None and pt.allocation is not None) or (
            completed and pt.key not in self.done and pt.allocation is not None
        ):
            self.points[pt.key] = pt
        if completed:
            self.taken.add(pt.key)
            runs = self.done.get(pt.key)
            # Copy on write: a list may be shared with the base ledger.
            self.done[pt.key] = [(number, value)] if runs is None else runs + [(number, value)]
            row = _domain_losses(user_attrs, self._loss_names)
            if row is not None:
                self.losses[number] = row
        elif state in (TrialState.RUNNING, TrialState.WAITING):
            self.taken.add(pt.key)
        else:  # FAIL, PRUNED, or COMPLETE with a non-finite value: the point re-opens.
            self.failed[pt.key] = self.failed.get(pt.key, 0) + 1

    def absorb_finished(self, trials: Sequence[FrozenTrial]) -> None:
        """Add the finished trials not seen yet (finished trials never change in storage).

        A ledger fed only this way holds no transient claims and serves as ``base`` for the
        per-trial ledgers of one study.
        """
        for t in trials:
            if t.number in self.seen or not t.state.is_finished():
                continue
            self.seen.add(t.number)
            raw = t.system_attrs.get(POINT_ATTR)
            if raw is not None:
                self._record(t.number, t.state, _finite_value(t), self._parse(raw), t.user_attrs)

    # ----------------------------------------------------------------------------- queries
    def is_done(self, key: str) -> bool:
        """Whether ``key`` has at least one completed run with a finite value."""
        return key in self.done

    def budget_done(self, index: int) -> bool:
        """Whether every design run of budget ``index`` has completed."""
        return all(k in self.done for k in self.design.budget_keys(index))

    def ready(self, key: str) -> bool:
        """Whether a verification point can be proposed (its fits have their data)."""
        index = verify_optimum_index(key)
        if index is not None:
            return self.budget_done(index)
        if key == HELDOUT_PREDICTED_KEY:
            return all(self.budget_done(i) for i in range(len(self.design.budgets)))
        return True

    def open_sequence(self) -> list[str]:
        """Unclaimed points in priority order: static design points, then ready verifications."""
        seq = [p.key for p in self.design.points if p.key not in self.taken]
        seq += [k for k in self.design.dynamic_keys if k not in self.taken and self.ready(k)]
        return seq

    def next_key(self, number: int, claimed_at: datetime.datetime | None = None) -> str | None:
        """The point trial ``number`` takes, or None when every open point is taken.

        Every trial that started claiming before ``claimed_at`` (ties: a smaller number) and
        holds no point yet is taken to hold the next open point in priority order (its worker is
        computing exactly that right now), so trial ``number`` takes the one after them. Claims
        of attributed trials count; FAIL / PRUNED / NaN trials do not, so their points re-open.
        """
        me = (claimed_at or datetime.datetime.max, number)
        ahead = sum(1 for c in self.unattributed if c < me and c[1] != number)
        seq = self.open_sequence()
        return seq[ahead] if ahead < len(seq) else None

    def is_complete(self) -> bool:
        """Whether every design and verification point has completed."""
        return all(p.key in self.done for p in self.design.points) and all(
            k in self.done for k in self.design.dynamic_keys
        )

    def observations(self, *, roles: Iterable[str] = DESIGN_ROLES) -> list[tuple[DesignPoint, float, int]]:
        """``(point, mean value, runs)`` per completed key with one of ``roles``, in key order of storage.

        A point that ran more than once (a collision after a failure, or a retried copy that
        also finished) counts once, at the mean of its runs.
        """
        want = set(roles)
        out = []
        for key, runs in self.done.items():
            pt = self.points[key]
            if pt.role in want and pt.allocation is not None:
                out.append((pt, float(np.mean([v for _, v in runs])), len(runs)))
        return out


# --------------------------------------------------------------------------------- a study's design
def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attrs (``Study.system_attrs`` is gone in Optuna 5)."""
    return study._storage.get_study_system_attrs(study._study_id)


def stored_design_config(study: optuna.Study) -> dict[str, Any] | None:
    """The design configuration stored in the study system attr :data:`CONFIG_ATTR`, or None."""
    raw = study_system_attrs(study).get(CONFIG_ATTR)
    if raw is None:
        return None
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def read_design(study: optuna.Study) -> Design:
    """The study's design: the one its sampler holds (it takes over a stored one), else the stored one.

    Raises:
        ValueError: If the study was not run with AutoScaleSampler (no stored design).
    """
    held = getattr(getattr(study, "sampler", None), "design", None)
    if isinstance(held, Design):
        return held
    config = stored_design_config(study)
    if config is None:
        raise ValueError(
            f"Study {study.study_name!r} was not run with AutoScaleSampler (no {CONFIG_ATTR!r} system attr); "
            "run it with AutoScaleSampler first: sampler=AutoScaleSampler(domains, budgets)."
        )
    return Design.from_config(config)
