"""``design_seeds``: every budget's whole design (base run and perturbations) run with k seeds."""

from __future__ import annotations

from collections import Counter
import json
import math

import numpy as np
import optuna
from optuna.trial import TrialState
import pytest

from _autoscale_helpers import frozen_trial as _trial
from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import suggest_mixture
from optuna_autoscale.commands import build_sampler
from optuna_autoscale.config import config_from_json
from optuna_autoscale.config import ConfigError
from optuna_autoscale.config import DesignConfig
from optuna_autoscale.config import parse_config
from optuna_autoscale.design import CONFIG_ATTR
from optuna_autoscale.design import derive_seed
from optuna_autoscale.design import Design
from optuna_autoscale.design import DesignPoint
from optuna_autoscale.design import Ledger
from optuna_autoscale.design import POINT_ATTR
from optuna_autoscale.results import group_key
from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)

DOMS = ("web", "code", "books")
BUDGETS = (1e8, 4e8)
PER_COPY = 1 + len(DOMS) * 2  # base + one perturbation per domain and multiplier

SIM = """
[study]
name = "s"
objective = "simulate"
[design]
budgets = [1e8, 4e8]
{extra}
[simulate]
domains = ["a", "b", "c"]
"""




def _keys(study: optuna.Study) -> Counter[str]:
    return Counter(
        DesignPoint.from_json(t.system_attrs[POINT_ATTR]).key
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if POINT_ATTR in t.system_attrs
    )


def _all_keys(design: Design) -> set[str]:
    return {p.key for p in design.points} | set(design.dynamic_keys)


# --------------------------------------------------------------------------------- the design
def test_design_size_keys_and_seeds() -> None:
    d = Design(DOMS, BUDGETS, design_seeds=3, replicates=1, seed=7)
    assert d.design_seeds == 3
    # Per budget: 3 copies of (base + perturbations) + 1 replicate; + the held-out uniform run.
    assert len(d.points) == 2 * (3 * PER_COPY + 1) + 1
    assert len({p.key for p in d.points}) == len(d.points)
    assert d.dynamic_keys == ("b0/verify_optimum", "b1/verify_optimum", "heldout/verify_predicted")
    every_seed: list[int] = []
    for i in range(len(d.budgets)):
        seeds = d.copy_seeds(i)
        assert len(seeds) == 3 and seeds[0] == d.budget_seed(i)
        groups: dict[int, list[DesignPoint]] = {}
        for p in d.points:
            if p.budget_index == i and p.role in ("base", "perturb"):
                groups.setdefault(p.seed, []).append(p)
        assert sorted(groups) == sorted(seeds)  # one CRN group per copy
        for c, s in enumerate(seeds):
            pts = groups[s]
            prefix = f"b{i}/" if c == 0 else f"b{i}/s{c}/"
            assert all(p.key.startswith(prefix) for p in pts)
            if c == 0:
                assert not any(p.key.startswith(f"b{i}/s") for p in pts)
            assert Counter(p.role for p in pts) == {"base": 1, "perturb": PER_COPY - 1}
            # Every copy runs the same allocations as copy 0.
            assert sorted(json.dumps(p.allocation, sort_keys=True) for p in pts) == sorted(
                json.dumps(p.allocation, sort_keys=True) for p in groups[seeds[0]]
            )
        assert set(d.budget_keys(i)) == {p.key for p in d.points if p.budget_index == i}
        every_seed += list(seeds) + [d.replicate_seed(i, 1)]
    every_seed.append(d.budget_seed(len(d.budgets)))  # held out
    assert len(set(every_seed)) == len(every_seed)  # no copy shares a replicate's or budget's seed
    assert d.copy_seed(1, 2) == derive_seed(7, 3, 1, 2)
    with pytest.raises(ValueError, match=r"copy must be in \[0, 3\)"):
        d.copy_seed(0, 3)
    lo, hi = d.tokens_range
    assert all(lo <= p.tokens <= hi for p in d.points)


def test_design_seeds_one_is_todays_design() -> None:
    for kwargs in ({}, {"replicates": 2, "seed": 3}, {"verify": False}):
        plain = Design(DOMS, BUDGETS, **kwargs)  # type: ignore[arg-type]
        one = Design(DOMS, BUDGETS, design_seeds=1, **kwargs)  # type: ignore[arg-type]
        assert [p.to_dict() for p in one.points] == [p.to_dict() for p in plain.points]
        assert one.to_config() == plain.to_config() and "design_seeds" not in one.to_config()
        assert one == plain and hash(one) == hash(plain)
    # Today's keys and seeds, spelled out (what stored studies hold).
    d = Design(["a", "b"], [1e8], verify=False)
    assert [p.key for p in d.points] == [
        "b0/base",
        "b0/perturb/x0.02/a",
        "b0/perturb/x3.0/a",
        "b0/perturb/x0.02/b",
        "b0/perturb/x3.0/b",
    ]
    assert {p.seed for p in d.points} == {derive_seed(0, 0, 0)}
    # Copy 0 of a replicated design is exactly that design, in the same order, first.
    two = Design(DOMS, BUDGETS, design_seeds=2, replicates=1)
    plain = Design(DOMS, BUDGETS, replicates=1)
    copy0 = [p.to_dict() for p in two.points if "/s1/" not in p.key]
    assert copy0 == [p.to_dict() for p in plain.points]
    assert two.dynamic_keys == plain.dynamic_keys


def test_config_round_trip_and_old_configs() -> None:
    d = Design(DOMS, BUDGETS, design_seeds=2, replicates=1, seed=4)
    cfg = d.to_config()
    assert cfg["design_seeds"] == 2
    back = Design.from_config(json.loads(json.dumps(cfg)))
    assert back == d and back.design_seeds == 2
    assert [p.to_dict() for p in back.points] == [p.to_dict() for p in d.points]
    # A config stored before the option existed has no key: one seed.
    old = {k: v for k, v in Design(DOMS, BUDGETS).to_config().items() if k != "design_seeds"}
    assert Design.from_config(old).design_seeds == 1
    with pytest.raises(ValueError, match="design_seeds must be an integer >= 1"):
        Design.from_config({**old, "design_seeds": 0})


def test_sampler_stores_config_with_design_seeds() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS, design_seeds=2)
    assert sampler.design.design_seeds == 2
    study = optuna.create_study(sampler=sampler)
    suggest_mixture(study.ask(), DOMS)  # the first claim stores the design
    stored = study._storage.get_study_system_attrs(study._study_id)[CONFIG_ATTR]
    assert stored["design_seeds"] == 2
    assert Design.from_config(stored) == sampler.design


def test_run_config_design_seeds() -> None:
    cfg = parse_config(SIM.format(extra="design_seeds = 2"))
    assert cfg.design.design_seeds == 2
    assert build_sampler(cfg, ["a", "b", "c"]).design.design_seeds == 2
    back = config_from_json(cfg.to_json())
    assert back.design == cfg.design
    # Without the key: the default, and the stored [design] is what it was before the option.
    plain = parse_config(SIM.format(extra=""))
    assert plain.design.design_seeds == 1
    assert "design_seeds" not in plain.to_dict()["design"]
    assert build_sampler(plain, ["a", "b", "c"]).design == Design(["a", "b", "c"], BUDGETS, seed=0)
    assert config_from_json(plain.to_json()).design.design_seeds == 1


@pytest.mark.parametrize("bad", [0, -1, True, False, 1.5, 2.0, "2", None])
def test_bad_design_seeds(bad: object) -> None:
    pattern = r"design_seeds must be an integer >= 1 .*got " + repr(bad).replace(".", r"\.")
    with pytest.raises(ValueError, match=pattern):
        Design(DOMS, BUDGETS, design_seeds=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="design_seeds must be an integer >= 1"):
        AutoScaleSampler(DOMS, BUDGETS, design_seeds=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "fragment"), [(0, ">= 1"), (-1, ">= 1"), (True, "must be an integer"), (1.5, "must be an integer")]
)
def test_bad_design_seeds_in_config(bad: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as err:
        DesignConfig(budgets=[1e8], design_seeds=bad)  # type: ignore[arg-type]
    assert err.value.key == "design.design_seeds"
    text = SIM.format(extra=f"design_seeds = {json.dumps(bad)}")
    with pytest.raises(ConfigError, match="design.design_seeds"):
        parse_config(text)


# --------------------------------------------------------------------------------- the ledger
def test_verification_waits_for_every_copy() -> None:
    d = Design(DOMS, BUDGETS, design_seeds=2)
    copy1_b0 = [p for p in d.points if p.key.startswith("b0/s1/")]
    assert len(copy1_b0) == PER_COPY
    done = [p for p in d.points if p not in copy1_b0]
    trials = [_trial(n, TrialState.COMPLETE, p) for n, p in enumerate(done)]
    led = Ledger(d, trials)
    assert not led.budget_done(0) and led.budget_done(1)
    assert not led.ready("b0/verify_optimum") and not led.ready("heldout/verify_predicted")
    assert led.open_sequence() == [p.key for p in copy1_b0] + ["b1/verify_optimum"]
    # A failed copy point re-opens; a running one is claimed.
    n = len(trials)
    trials += [_trial(n, TrialState.FAIL, copy1_b0[0]), _trial(n + 1, TrialState.RUNNING, copy1_b0[1])]
    led = Ledger(d, trials)
    assert led.next_key(n + 2) == copy1_b0[0].key
    assert copy1_b0[1].key not in led.open_sequence()
    # Once copy 1 completes, budget 0 is done and its verifications open.
    trials += [_trial(n + 2 + k, TrialState.COMPLETE, p) for k, p in enumerate(copy1_b0)]
    led = Ledger(d, trials)
    assert led.budget_done(0)
    assert led.open_sequence() == ["b0/verify_optimum", "b1/verify_optimum", "heldout/verify_predicted"]
    assert not led.is_complete()


# --------------------------------------------------------------------------------- end to end
def _noisy_land() -> object:
    return separable(3, seed=1).with_snr(30.0, 1e8)


def test_end_to_end_two_seeds() -> None:
    land = _noisy_land()
    sampler = AutoScaleSampler(land.domains, BUDGETS, design_seeds=2, seed=0)  # type: ignore[attr-defined]
    design = sampler.design
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=200)  # type: ignore[attr-defined]
    assert sampler.is_complete(study)
    n_points = 2 * 2 * PER_COPY + 1 + 3  # 2 budgets x 2 copies, held-out uniform, 3 verifications
    assert len(study.trials) == n_points  # stopped itself
    keys = _keys(study)
    assert set(keys) == _all_keys(design) and max(keys.values()) == 1
    number_of = {DesignPoint.from_json(t.system_attrs[POINT_ATTR]).key: t.number for t in study.trials}
    for t in study.trials:
        pt = DesignPoint.from_json(t.system_attrs[POINT_ATTR])
        assert t.user_attrs["seed"] == pt.seed  # the objective trained with the copy's seed
    for i in range(len(BUDGETS)):
        # The budget's optimum ran after every copy of its design.
        assert number_of[f"b{i}/verify_optimum"] > max(number_of[k] for k in design.budget_keys(i))
    assert number_of["heldout/verify_predicted"] > max(
        number_of[k] for i in range(len(BUDGETS)) for k in design.budget_keys(i)
    )

    result = AutoScaleResult.from_study(study)
    assert result.law is not None
    groups = {group_key(i, s) for i in range(len(BUDGETS)) for s in design.copy_seeds(i)}
    assert len(groups) == 4
    assert set(result.law.offsets) == groups  # one offset per (budget, copy)
    per_budget = Counter(g.split("/")[0] for g in result.law.offsets)
    assert per_budget == {"b0": 2, "b1": 2}
    assert set(result.fits) == set(BUDGETS) and set(result.optima) == set(BUDGETS)
    # The copies' base runs (same allocation, other seeds) give the noise estimate.
    assert result.noise_source == "base replicates" and result.noise is not None and result.noise > 0
    checks = Counter(r["check"] for r in result.verification())
    assert checks == {"verify_optimum": 2, "verify_predicted": 1}
    mix = result.extrapolate(4e9)
    assert math.isclose(sum(mix.weights.values()), 1.0) and all(np.isfinite(list(mix.weights.values())))
    assert json.loads(result.to_json())["config"]["design_seeds"] == 2


def test_end_to_end_n_jobs_2_no_collision() -> None:
    land = separable(3, seed=2)
    sampler = AutoScaleSampler(land.domains, BUDGETS, design_seeds=2, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=200, n_jobs=2)
    assert sampler.is_complete(study)
    keys = _keys(study)
    design = _all_keys(sampler.design)
    assert design <= set(keys)
    assert all(keys[k] == 1 for k in design)  # no design point ran twice
    assert all("/replicate/t" in k for k in set(keys) - design)  # only fillers beyond the design


def test_failed_copy_point_reopens() -> None:
    land = separable(3, seed=3)
    inner = land.objective()
    sampler = AutoScaleSampler(land.domains, BUDGETS, design_seeds=2, verify=False, seed=0)
    target = [p.key for p in sampler.design.points if p.key.startswith("b1/s1/perturb/")][-1]
    failed: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        value = inner(trial)
        key = DesignPoint.from_json(trial._cached_frozen_trial.system_attrs[POINT_ATTR]).key
        if key == target and not failed:
            failed.append(key)
            raise RuntimeError("simulated crash")
        return value

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=100, catch=(RuntimeError,))
    assert failed and sampler.is_complete(study)
    states = Counter(
        (DesignPoint.from_json(t.system_attrs[POINT_ATTR]).key, t.state)
        for t in study.trials
        if POINT_ATTR in t.system_attrs
    )
    assert states[(failed[0], TrialState.FAIL)] == 1 and states[(failed[0], TrialState.COMPLETE)] == 1
