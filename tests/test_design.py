from __future__ import annotations

import datetime
import json
import math

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import optuna
from optuna.trial import TrialState
import pytest

from _autoscale_helpers import frozen_trial as _trial
from optuna_autoscale.design import Design
from optuna_autoscale.design import DesignPoint
from optuna_autoscale.design import derive_seed
from optuna_autoscale.design import Ledger
from optuna_autoscale.design import POINT_ATTR
from optuna_autoscale.design import DEFAULT_MULTIPLIERS
from optuna_autoscale.design import UNATTRIBUTED_GRACE_SECONDS
from optuna_autoscale.ledger import CLAIM_ATTR


DOMS = ("web", "code", "books")


def test_design_points_and_seeds() -> None:
    d = Design(DOMS, [4e8, 1e8], multipliers=(3.0, 0.2), replicates=2)
    assert d.budgets == (1e8, 4e8)
    assert d.multipliers == (0.2, 3.0)  # sorted
    assert Design(DOMS, [1e8, 4e8]).multipliers == DEFAULT_MULTIPLIERS == (0.02, 3.0)
    per_budget = 1 + len(DOMS) * 2 + 2
    assert len(d.points) == 2 * per_budget + 1  # + held-out uniform run
    assert len({p.key for p in d.points}) == len(d.points)
    assert d.dynamic_keys == ("b0/verify_optimum", "b1/verify_optimum", "heldout/verify_predicted")
    assert d.heldout == pytest.approx(2e8)
    for i, n in enumerate(d.budgets):
        pts = [p for p in d.points if p.budget_index == i]
        base = d.base_allocation(i)
        assert sum(base.values()) == pytest.approx(n)
        # Common random numbers: base and perturbations share the budget's seed.
        shared = {p.seed for p in pts if p.role in ("base", "perturb")}
        assert shared == {d.budget_seed(i)}
        reps = [p for p in pts if p.role == "replicate"]
        assert len({p.seed for p in reps} | shared) == 3
        for p in pts:
            assert p.allocation is not None
            changed = [k for k in DOMS if p.allocation[k] != base[k]]
            if p.role == "perturb":
                assert changed == [p.domain]
                assert p.allocation[p.domain] == pytest.approx(base[p.domain] * p.multiplier)
            else:
                assert changed == []
    assert d.budget_seed(0) != d.budget_seed(1) != d.budget_seed(2)
    lo, hi = d.tokens_range
    assert all(lo <= p.tokens <= hi for p in d.points)
    assert lo <= d.filler(7).tokens <= hi


def test_single_budget_has_no_heldout_and_no_verify() -> None:
    d = Design(DOMS, [1e8])
    assert d.heldout is None
    assert d.dynamic_keys == ("b0/verify_optimum",)
    d2 = Design(DOMS, [1e8, 4e8], verify=False)
    assert d2.heldout is None and d2.dynamic_keys == ()
    assert all(p.role in ("base", "perturb") for p in d2.points)


def test_nonuniform_base_is_normalised() -> None:
    d = Design(DOMS, [1e8], base={"web": 2, "code": 1, "books": 1})
    assert d.base == {"web": 0.5, "code": 0.25, "books": 0.25}
    assert d.base_allocation(0)["web"] == pytest.approx(5e7)


def test_config_roundtrip_and_seed_derivation() -> None:
    d = Design(DOMS, [1e8, 4e8], bounds={"web": (0, 5e7), "code": (1e6, None)}, replicates=1, seed=3)
    cfg = json.loads(json.dumps(d.to_config()))
    assert Design.from_config(cfg) == d
    assert Design(DOMS, [1e8, 4e8], seed=None).seed == 0
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert derive_seed(1, 2, 3) != derive_seed(2, 2, 3)
    assert 0 <= derive_seed(-5, 10**12) < 2**31


@settings(max_examples=50, deadline=None)
@given(
    role=st.sampled_from(["base", "perturb", "replicate", "verify_optimum", "verify_uniform", "verify_predicted"]),
    budget=st.floats(1.0, 1e13),
    seed=st.integers(0, 2**31 - 1),
    alloc=st.lists(st.floats(0.0, 1e12), min_size=2, max_size=5),
)
def test_point_json_roundtrip(role: str, budget: float, seed: int, alloc: list[float]) -> None:
    pt = DesignPoint("k", role, budget, 1, "d0", 3.0, seed, {f"d{i}": v for i, v in enumerate(alloc)})
    again = DesignPoint.from_json(pt.to_json())
    assert again == pt
    if sum(alloc) > 0:
        assert again.mixture() == pt.mixture()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(budgets=[1e8, -1.0]), "positive"),
        (dict(budgets=[0.0]), "positive"),
        (dict(budgets=[1e8, 1e8]), "Duplicate budgets"),
        (dict(budgets=[]), "empty"),
        (dict(budgets=[float("nan")]), "positive"),
        (dict(multipliers=(0.0, 3.0)), "> 0"),
        (dict(multipliers=(-0.2, 3.0)), "> 0"),
        (dict(multipliers=(1.0, 3.0)), "multiplier of 1"),
        (dict(multipliers=(3.0,)), "at least two"),
        (dict(multipliers=(3.0, 3.0)), "Duplicate multipliers"),
        (dict(base={"web": 1.0, "code": 1.0}), "no share"),
        (dict(base={"web": 1.0, "code": 1.0, "books": 1.0, "news": 1.0}), "unknown domains"),
        (dict(base={"web": 1.0, "code": 0.0, "books": 1.0}), "> 0"),
        (dict(bounds={"news": (0, 1e8)}), "unknown domains"),
        (dict(bounds={"web": (5e7, 1e7)}), "upper < lower"),
        (dict(bounds={"web": (-1.0, 1e7)}), "lower bound"),
        (dict(bounds={"web": (9e7, None), "code": (2e7, None)}), "lower bounds sum"),
        (dict(bounds={d: (0, 1e7) for d in DOMS}), "upper bounds sum"),
        (dict(replicates=-1), "replicates"),
    ],
)
def test_bad_design_inputs(kwargs: dict, match: str) -> None:
    args = dict(budgets=[1e8, 4e8])
    args.update(kwargs)
    budgets = args.pop("budgets")
    with pytest.raises(ValueError, match=match):
        Design(DOMS, budgets, **args)


def test_bad_design_types_and_domains() -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        Design(DOMS, 1e8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Duplicate domain"):
        Design(["web", "web"], [1e8])
    with pytest.raises(ValueError, match="at least 2 domains"):
        Design(["web"], [1e8])
    with pytest.raises(TypeError, match="seed"):
        Design(DOMS, [1e8], seed=1.5)  # type: ignore[arg-type]


def test_bounds_checked_at_heldout_budget() -> None:
    # Feasible at 1e8 and 4e8 is not enough: the held-out budget 2e8 must be feasible too.
    ok = {d: (0, 1.5e8) for d in DOMS}
    Design(DOMS, [1e8, 4e8], bounds=ok)
    with pytest.raises(ValueError, match="upper bounds sum"):
        Design(DOMS, [1e8, 4e8], bounds={d: (0, 1e8) for d in DOMS})


# ------------------------------------------------------------------------------------ ledger


def test_ledger_claims_fail_waiting_and_unattributed() -> None:
    d = Design(DOMS, [1e8, 4e8], verify=True)
    p = d.points
    trials = [
        _trial(0, TrialState.COMPLETE, p[0]),
        _trial(1, TrialState.FAIL, p[1]),  # re-opens p[1]
        _trial(2, TrialState.WAITING, p[2]),  # retried copy: a claim
        _trial(3, TrialState.RUNNING, p[3]),
        _trial(4, TrialState.PRUNED, p[4]),  # re-opens
        _trial(5, TrialState.RUNNING, None, sys={CLAIM_ATTR: datetime.datetime.now().isoformat()}),  # claiming now
        _trial(7, TrialState.RUNNING, None),  # an ordinary trial (never called suggest_mixture): claims nothing
    ]
    led = Ledger(d, trials)
    assert led.open_sequence()[:3] == [p[1].key, p[4].key, p[5].key]
    assert led.next_key(5) == p[1].key
    assert led.next_key(6) == p[4].key  # trial 5 is simulated as taking p[1]
    assert led.is_done(p[0].key) and not led.is_done(p[2].key)
    # An old un-attributed RUNNING trial (crashed worker) is not simulated forever.
    old = datetime.datetime.now() - datetime.timedelta(seconds=UNATTRIBUTED_GRACE_SECONDS + 5)
    led2 = Ledger(d, trials[:5] + [_trial(5, TrialState.RUNNING, None, sys={CLAIM_ATTR: old.isoformat()})])
    assert led2.next_key(6) == p[1].key
    # A waiting trial ("" claim) holds nothing either.
    led3 = Ledger(d, trials[:5] + [_trial(5, TrialState.RUNNING, None, sys={CLAIM_ATTR: ""})])
    assert led3.next_key(6) == p[1].key


def test_ledger_verification_waits_on_its_design_and_duplicates_count_once() -> None:
    d = Design(DOMS, [1e8, 4e8])
    b0 = [k for k in d.budget_keys(0)]
    statics = [pt for pt in d.points]
    trials = [_trial(i, TrialState.COMPLETE, pt, value=float(i)) for i, pt in enumerate(statics)]
    # b1's base is still running: only b0's optimum is ready.
    b1_base = d.point("b1/base")
    trials = [t for t in trials if t.system_attrs[POINT_ATTR] != b1_base.to_json()]
    trials.append(_trial(len(trials), TrialState.RUNNING, b1_base))
    led = Ledger(d, trials)
    assert led.open_sequence() == ["b0/verify_optimum"]
    assert led.next_key(10**6) == "b0/verify_optimum"
    assert led.next_key(10**6 + 1) == "b0/verify_optimum"  # nobody un-attributed ahead
    # A point that completed twice is one observation at the mean value.
    dup = d.point(b0[0])
    trials.append(_trial(len(trials), TrialState.COMPLETE, dup, value=100.0))
    led = Ledger(d, trials)
    obs = {pt.key: (v, n) for pt, v, n in led.observations()}
    assert obs[b0[0]] == (pytest.approx((0.0 + 100.0) / 2), 2)
    assert not led.is_complete()


def test_ledger_nonfinite_complete_reopens_and_override() -> None:
    d = Design(DOMS, [1e8], verify=False)
    p = d.points
    trials = [_trial(0, TrialState.COMPLETE, p[0], value=math.inf)]
    assert Ledger(d, trials).next_key(1) == p[0].key
    done = [_trial(i, TrialState.COMPLETE, pt) for i, pt in enumerate(p[:-1])]
    last = _trial(len(p) - 1, TrialState.RUNNING, p[-1])
    assert not Ledger(d, done + [last]).is_complete()
    assert Ledger(d, done + [last], override=(last.number, TrialState.COMPLETE, 1.0)).is_complete()
    assert not Ledger(d, done + [last], override=(last.number, TrialState.COMPLETE, None)).is_complete()


def test_reach_raises_the_largest_multiplier_where_it_falls_short() -> None:
    """With more than 4 uniform domains x3 gives a domain less than half a run's tokens; the default design raises
    the largest multiplier per domain until it does (recommendations stay inside the tested shares)."""
    from optuna_autoscale.design import DEFAULT_REACH
    from optuna_autoscale.design import reach_multipliers

    seven = [f"d{i}" for i in range(7)]
    d = Design(seven, [1e8, 4e8])
    assert d.reach == DEFAULT_REACH == 0.5 and d.multipliers == DEFAULT_MULTIPLIERS
    assert {d.domain_multipliers(x) for x in seven} == {(0.02, 6.0)}
    for p in d.points:
        if p.role == "perturb" and p.multiplier > 1:
            assert p.key.startswith("b") and "/x6.0/" in p.key
            assert p.allocation[p.domain] / sum(p.allocation.values()) == pytest.approx(0.5)
    assert Design.from_config(d.to_config()).domain_multipliers("d0") == (0.02, 6.0)
    # A base share that already reaches it, a design of 3 or 4 domains, and reach=None: the multipliers as given,
    # and the config (so a stored study's design) as before the option existed.
    skew = Design(seven, [1e8, 4e8], base={"d0": 6.0, **{x: 1.0 for x in seven[1:]}})
    assert skew.domain_multipliers("d0") == (0.02, 3.0) and skew.domain_multipliers("d1") == (0.02, 11.0)
    assert "reach" not in Design(DOMS, [1e8, 4e8]).to_config()
    assert Design(["a", "b", "c", "d"], [1e8, 4e8]).domain_multipliers("a") == (0.02, 3.0)
    paper = Design(seven, [1e8, 4e8], multipliers=(0.2, 3.0), reach=None)
    assert {paper.domain_multipliers(x) for x in seven} == {(0.2, 3.0)} and "reach" not in paper.to_config()
    assert Design.from_config(paper.to_config()) == paper
    assert reach_multipliers(0.1, (0.2, 0.5), 0.5) == (0.2, 0.5)  # only downward perturbations: nothing to raise
    for bad in (0.0, 1.0, -0.5, True, "half"):
        with pytest.raises(ValueError, match="reach must be a share"):
            Design(seven, [1e8, 4e8], reach=bad)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(share=st.floats(0.001, 0.999), reach=st.floats(0.05, 0.95), top=st.floats(1.5, 20.0))
def test_reach_multipliers_property(share: float, reach: float, top: float) -> None:
    """The raised multiplier gives the domain at least ``reach`` of its run's tokens, is never lowered, and is
    within 1% (3 significant digits) of the smallest multiplier that does."""
    from optuna_autoscale.design import reach_multipliers

    out = reach_multipliers(share, (0.02, top), reach)
    k = out[1]
    assert out[0] == 0.02 and k >= top
    got = k * share / (1 - share + k * share)
    assert got >= reach - 1e-9
    if k > top:
        exact = reach * (1 - share) / (share * (1 - reach))
        assert exact <= k <= exact * 1.01 + 1e-9
