from __future__ import annotations

from collections import Counter
import math
import pickle
import warnings

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.testing.pytest_samplers import BasicSamplerTestCase
from optuna.testing.pytest_samplers import SingleOnlySamplerTestCase
from optuna.trial import TrialState
import pytest

from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import enqueue_mixture
from optuna_autoscale import Mixture
from optuna_autoscale import suggest_mixture
from optuna_autoscale.design import CONFIG_ATTR
from optuna_autoscale.design import DesignPoint
from optuna_autoscale.design import POINT_ATTR
from optuna_autoscale.mixture import params_to_weights
from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)

DOMS = ("web", "code", "books")
BUDGETS = (1e8, 4e8)
# 2 budgets x (base + 3 domains x 2 multipliers) + held-out uniform + 2 optima + predicted
N_POINTS = 2 * 7 + 1 + 3


def _loss(mix: Mixture) -> float:
    """A tiny separable landscape of our own (noiseless)."""
    beta = {"web": 3.0, "code": 1.5, "books": 2.0}
    gamma = {"web": 0.5, "code": 0.35, "books": 0.45}
    off = {"web": 1e7, "code": 2e7, "books": 5e6}
    return 2.0 + sum(beta[d] * ((mix.allocation[d] + off[d]) / 1e8) ** (-gamma[d]) for d in DOMS)


def objective(trial: optuna.Trial) -> float:
    return _loss(suggest_mixture(trial, DOMS))


def _keys(study: optuna.Study, states: tuple[TrialState, ...] = (TrialState.COMPLETE,)) -> Counter:
    return Counter(
        DesignPoint.from_json(t.system_attrs[POINT_ATTR]).key
        for t in study.get_trials(deepcopy=False, states=states)
        if POINT_ATTR in t.system_attrs
    )


def _design_keys(sampler: AutoScaleSampler) -> set[str]:
    return {p.key for p in sampler.design.points} | set(sampler.design.dynamic_keys)


def test_end_to_end_stops_when_complete() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=1)
    study = optuna.create_study(sampler=sampler)
    assert not sampler.is_complete(study)
    study.optimize(objective, n_trials=200)
    assert sampler.is_complete(study)
    assert len(study.trials) == N_POINTS  # stopped itself, nothing wasted
    keys = _keys(study)
    assert set(keys) == _design_keys(sampler) and max(keys.values()) == 1
    roles = Counter(t.user_attrs["autoscale_role"] for t in study.trials)
    assert roles == {"base": 2, "perturb": 12, "verify_uniform": 1, "verify_optimum": 2, "verify_predicted": 1}
    for t in study.trials:
        pt = DesignPoint.from_json(t.system_attrs[POINT_ATTR])
        # Common random numbers: one seed per budget's design.
        assert t.user_attrs["seed"] == pt.seed
        assert t.user_attrs["tokens"] == pytest.approx(pt.tokens, rel=1e-12)
        assert t.user_attrs["autoscale_budget"] == pt.budget
        for d in DOMS:
            assert t.user_attrs[f"weight_{d}"] == pytest.approx(pt.allocation[d] / pt.tokens, rel=1e-12)
    seeds = {t.user_attrs["seed"] for t in study.trials if t.user_attrs["autoscale_budget"] == 1e8}
    assert len(seeds) == 1


def test_suggest_mixture_returns_the_exact_proposal() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(N_POINTS):
        trial = study.ask()
        mix = suggest_mixture(trial, list(reversed(DOMS)))  # any order of the same domains
        pt = DesignPoint.from_json(study._storage.get_trial_system_attrs(trial._trial_id)[POINT_ATTR])
        assert mix == pt.mixture(DOMS)
        assert tuple(mix.weights) == DOMS
        # The parameters are inside their distributions and map back onto the weights.
        params = trial.params
        for name, dist in trial.distributions.items():
            assert isinstance(params[name], float)
            assert dist._contains(dist.to_internal_repr(params[name]))
        w = params_to_weights([params[f"weight_{d}"] for d in DOMS])
        np.testing.assert_allclose(w, [mix.weights[d] for d in DOMS], rtol=1e-12)
        study.tell(trial, _loss(mix))
    assert sampler.is_complete(study)
    # After completion there is nothing to claim: suggest_mixture prunes the trial at once.
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="design is complete"):
        suggest_mixture(trial, DOMS)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert sampler.is_complete(study)


def test_filler_replicates_are_capped() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0, filler_replicates=2)
    study = optuna.create_study(sampler=sampler)
    for _ in range(N_POINTS):
        trial = study.ask()
        study.tell(trial, _loss(suggest_mixture(trial, DOMS)))
    roles = []
    for _ in range(2):
        trial = study.ask()
        mix = suggest_mixture(trial, DOMS)
        roles.append(trial.user_attrs["autoscale_role"])
        study.tell(trial, _loss(mix))
    assert roles == ["replicate", "replicate"]
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        suggest_mixture(trial, DOMS)
    with pytest.raises(ValueError, match="filler_replicates"):
        AutoScaleSampler(DOMS, BUDGETS, filler_replicates=-1)


def test_relative_search_space_is_explicit_and_sample_relative_respects_it() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    frozen = study._storage.get_trial(trial._trial_id)
    space = sampler.infer_relative_search_space(study, frozen)
    assert set(space) == {"weight_web", "weight_code", "weight_books", "tokens"}
    assert space["tokens"].log and all(space[f"weight_{d}"] == FloatDistribution(0, 1) for d in DOMS)
    # Before suggest_mixture claims a point, the trial is an ordinary one: nothing relative.
    assert sampler.sample_relative(study, frozen, space) == {}
    suggest_mixture(trial, DOMS)
    frozen = study._storage.get_trial(trial._trial_id)
    params = sampler.sample_relative(study, frozen, space)
    assert set(params) == set(space)
    assert params == {n: trial.params[n] for n in space}
    for name, value in params.items():
        assert type(value) is float and space[name]._contains(value)
    sub = {"weight_web": space["weight_web"], "x": FloatDistribution(-1, 1)}
    assert set(sampler.sample_relative(study, frozen, sub)) == {"weight_web"}
    assert sampler.sample_relative(study, frozen, {}) == {}
    # A same-named parameter with another distribution is not ours to fill.
    assert sampler.sample_relative(study, frozen, {"weight_web": FloatDistribution(0, 2)}) == {}


def test_other_parameters_use_the_independent_sampler() -> None:
    class Spy(optuna.samplers.RandomSampler):
        calls = 0

        def sample_independent(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            Spy.calls += 1
            return super().sample_independent(*args, **kwargs)

    sampler = AutoScaleSampler(DOMS, BUDGETS, independent_sampler=Spy(seed=0))
    study = optuna.create_study(sampler=sampler)

    def obj(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 4)
        return _loss(suggest_mixture(trial, DOMS)) + lr + layers

    study.optimize(obj, n_trials=5)
    assert Spy.calls == 10
    with pytest.raises(TypeError, match="independent_sampler"):
        AutoScaleSampler(DOMS, BUDGETS, independent_sampler="random")  # type: ignore[arg-type]


def test_multi_objective_is_refused_with_an_explanation() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    with pytest.raises(ValueError, match="single-objective"):
        study.optimize(lambda t: (objective(t), 0.0), n_trials=1)
    assert study.trials[0].state == TrialState.FAIL  # failed cleanly, not left RUNNING


def test_fail_nan_and_pruned_reopen_their_point() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0)
    study = optuna.create_study(sampler=sampler)
    seen: Counter = Counter()

    def flaky(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, DOMS)
        role = trial.user_attrs["autoscale_role"]
        seen[role] += 1
        if role == "perturb" and seen[role] == 2:
            raise RuntimeError("preempted")
        if role == "perturb" and seen[role] == 3:
            return float("nan")
        if role == "perturb" and seen[role] == 4:
            raise optuna.TrialPruned()
        return _loss(mix)

    study.optimize(flaky, n_trials=100, catch=(RuntimeError,))
    states = Counter(t.state for t in study.trials)
    assert states[TrialState.FAIL] == 2 and states[TrialState.PRUNED] == 1
    assert sampler.is_complete(study)
    keys = _keys(study)
    assert set(keys) == _design_keys(sampler) and max(keys.values()) == 1
    # The three failed points were re-run, each exactly once.
    failed = _keys(study, (TrialState.FAIL, TrialState.PRUNED))
    assert all(keys[k] == 1 for k in failed)
    assert len(study.trials) == N_POINTS + 3


def _retry_callback(max_retry: int = 2):  # type: ignore[no-untyped-def]
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (cls or optuna.storages.RetryFailedTrialCallback)(max_retry=max_retry)


def test_retried_waiting_copy_counts_as_a_claim() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    suggest_mixture(trial, DOMS)  # the claim
    key = DesignPoint.from_json(study._storage.get_trial_system_attrs(trial._trial_id)[POINT_ATTR]).key
    study.tell(trial, state=TrialState.FAIL)  # e.g. a stale heartbeat
    _retry_callback()(study, study.trials[-1])  # what the storage does for a stale trial
    assert study.trials[-1].state == TrialState.WAITING
    # A new trial (created directly, so the queue is not popped) must not take the copy's point.
    tid = study._storage.create_new_trial(study._study_id)
    suggest_mixture(optuna.trial.Trial(study, tid), DOMS)
    other_pt = DesignPoint.from_json(study._storage.get_trial_system_attrs(tid)[POINT_ATTR])
    assert other_pt.key != key
    study.tell(tid, _loss(other_pt.mixture(DOMS)))
    # The copy is popped next and reruns its own point, with the same parameters.
    t2 = study.ask()
    mix = suggest_mixture(t2, DOMS)
    assert t2.number == 1 and DesignPoint.from_json(t2._cached_frozen_trial.system_attrs[POINT_ATTR]).key == key
    study.tell(t2, _loss(mix))
    study.optimize(objective, n_trials=100)
    keys = _keys(study)
    assert set(keys) == _design_keys(sampler) and keys[key] == 1


@pytest.mark.slow
def test_retry_callback_with_heartbeat_storage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import inspect
    import time

    url = f"sqlite:///{tmp_path / 'hb.db'}"
    kw = "heartbeat_stale_trial_callback"
    if kw not in inspect.signature(optuna.storages.RDBStorage).parameters:
        kw = "failed_trial_callback"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1, **{kw: _retry_callback()})
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0)
    study = optuna.create_study(storage=storage, sampler=sampler, study_name="hb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dead = study.ask()  # a worker that claims a point, then dies without telling
        suggest_mixture(dead, DOMS)
    storage.record_heartbeat(dead._trial_id)
    key = DesignPoint.from_json(storage.get_trial_system_attrs(dead._trial_id)[POINT_ATTR]).key
    time.sleep(2.5)
    # The next optimize fails the stale trial; its WAITING copy is popped and reruns the point.
    study.optimize(objective, n_trials=1)
    assert study.trials[dead.number].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert DesignPoint.from_json(retried[0].system_attrs[POINT_ATTR]).key == key
    # A few more trials on the same file (without heartbeats, which cost ~1 s per trial).
    plain = optuna.load_study(study_name="hb", storage=url, sampler=sampler)
    plain.optimize(objective, n_trials=3)
    keys = _keys(plain)
    assert len(keys) == 4 and max(keys.values()) == 1 and keys[key] == 1


def test_filler_replicates_when_every_point_is_taken() -> None:
    # The trials that find every point taken (the verification points wait on fits) run base replicates
    # instead of waiting, up to filler_replicates of them.
    n_rest = N_POINTS + 2 - len(AutoScaleSampler(DOMS, BUDGETS).design.points)
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0, filler_replicates=n_rest)
    study = optuna.create_study(sampler=sampler)
    trials = [study.ask() for _ in range(N_POINTS + 2)]  # nothing told yet
    mixes = [suggest_mixture(t, DOMS) for t in trials]
    keys = [DesignPoint.from_json(t._cached_frozen_trial.system_attrs[POINT_ATTR]).key for t in trials]
    n_static = len(sampler.design.points)
    assert len(set(keys[:n_static])) == n_static
    # Verification waits on fits, so the rest are base replicates with fresh seeds.
    rest = trials[n_static:]
    assert all(t.user_attrs["autoscale_role"] == "replicate" for t in rest)
    assert len({m.seed for m in mixes[n_static:]} | {mixes[0].seed}) == len(rest) + 1
    assert all(m.weights == mixes[0].weights and m.tokens == 1e8 for m in mixes[n_static:])
    for t, m in zip(trials, mixes):
        study.tell(t, _loss(m))
    study.optimize(objective, n_trials=10)
    assert sampler.is_complete(study)


def test_enqueued_user_mixture_is_validated_and_takes_no_point() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0)
    study = optuna.create_study(sampler=sampler)
    user = Mixture({"web": 0.5, "code": 0.3, "books": 0.2}, 4e8)
    enqueue_mixture(study, user)
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.user_attrs["autoscale_role"] == "user" and POINT_ATTR not in t.system_attrs
    assert t.user_attrs["tokens"] == 4e8
    for d in DOMS:
        assert t.user_attrs[f"weight_{d}"] == pytest.approx(user.weights[d], rel=1e-9)
    assert t.user_attrs["seed"] == sampler.design.budget_seed(1)  # the 4e8 design's seed
    study.optimize(objective, n_trials=100)
    assert len(study.trials) == N_POINTS + 1
    # Partly enqueued mixtures and values outside [0, 1] are refused with a clear message.
    study.enqueue_trial({"weight_web": 0.5})
    with pytest.raises(ValueError, match="enqueue_mixture"):
        study.optimize(objective, n_trials=1)
    study.enqueue_trial({"weight_web": 1.5, "weight_code": 0.5, "weight_books": 0.5, "tokens": 1e8})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            study.optimize(objective, n_trials=1)


def test_other_domains_and_tokens_misuse_are_clear_errors() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS)
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match="built for"):
        study.optimize(lambda t: _loss(suggest_mixture(t, ["web", "code", "news"])), n_trials=1)
    with pytest.raises(ValueError, match="Duplicate domain"):
        study.optimize(lambda t: _loss(suggest_mixture(t, ["web", "web", "code"])), n_trials=1)
    with pytest.raises(ValueError, match="tokens"):
        study.optimize(lambda t: _loss(suggest_mixture(t, DOMS, tokens=1e8)), n_trials=1)
    assert all(t.state == TrialState.FAIL for t in study.trials)


def test_study_run_with_other_domains_is_refused() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: sum(suggest_mixture(t, ["a", "b"], tokens=1e8).weights.values()), n_trials=2)
    study.sampler = AutoScaleSampler(DOMS, BUDGETS)
    with pytest.raises(ValueError, match=r"used the mixture domains \['a', 'b'\]"):
        study.optimize(objective, n_trials=1)
    # A stored AutoScale config with other domains is refused too.
    s2 = optuna.create_study(sampler=AutoScaleSampler(DOMS, BUDGETS))
    s2.optimize(objective, n_trials=1)
    assert s2._storage.get_study_system_attrs(s2._study_id)[CONFIG_ATTR]["domains"] == list(DOMS)
    s2.sampler = AutoScaleSampler(["web", "code"], BUDGETS)
    with pytest.raises(ValueError, match="run by an AutoScaleSampler with domains"):
        s2.optimize(lambda t: _loss(suggest_mixture(t, ["web", "code"]).with_tokens(1) and Mixture.uniform(DOMS, 1e8)), n_trials=1)


def test_weight_decay_like_params_are_not_mistaken_for_domains() -> None:
    sampler = AutoScaleSampler(DOMS, BUDGETS)
    study = optuna.create_study(sampler=sampler)

    def obj(trial: optuna.Trial) -> float:
        wd = trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True)
        return objective(trial) + wd

    study.optimize(obj, n_trials=4)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def _proposals(sampler: AutoScaleSampler, n: int) -> list[tuple]:
    study = optuna.create_study(sampler=sampler)
    out = []

    def obj(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, DOMS)
        lr = trial.suggest_float("lr", 0, 1)
        out.append((tuple(mix.weights.values()), mix.tokens, mix.seed, lr))
        return _loss(mix)

    study.optimize(obj, n_trials=n)
    return out


def test_determinism_pickle_and_reseed() -> None:
    a = _proposals(AutoScaleSampler(DOMS, BUDGETS, seed=7), 10)
    b = _proposals(AutoScaleSampler(DOMS, BUDGETS, seed=7), 10)
    c = _proposals(AutoScaleSampler(DOMS, BUDGETS, seed=8), 10)
    assert a == b
    assert [x[2] for x in a] != [x[2] for x in c]  # other training seeds
    assert [x[:2] for x in a] == [x[:2] for x in c]  # same design
    # Pickling mid-study: the copy continues the same design from storage.
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=7)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=5)
    study.sampler = pickle.loads(pickle.dumps(sampler))
    study.optimize(objective, n_trials=100)
    assert study.sampler.is_complete(study) and len(study.trials) == N_POINTS
    # reseed_rng changes the independent sampler's draws, not the design.
    s1 = AutoScaleSampler(DOMS, BUDGETS, seed=7)
    s1.reseed_rng()
    d = _proposals(s1, 3)
    assert [x[:3] for x in d] == [x[:3] for x in a[:3]]
    assert [x[3] for x in d] != [x[3] for x in a[:3]]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_simulator_objective_end_to_end(n_jobs: int) -> None:
    land = separable(7, seed=0)
    sampler = AutoScaleSampler(land.domains, [1e8, 4e8], replicates=1, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=300, n_jobs=n_jobs)
    assert sampler.is_complete(study)
    keys = _keys(study)
    design = _design_keys(sampler)
    assert design <= set(keys)
    assert all(keys[k] == 1 for k in design)
    extra = set(keys) - design
    assert all("/replicate/t" in k for k in extra)  # only fresh-seed base replicates
    # trials that found nothing left to claim were pruned (they trained nothing)
    assert all(math.isfinite(t.value) for t in study.trials if t.state == TrialState.COMPLETE)


class TestBasicSamplerContract(BasicSamplerTestCase):
    # Optuna's generic cases run up to 20 trials and expect all of them; the sampler stops a
    # study once its design is complete, so give it a design larger than that.
    @pytest.fixture
    def sampler(self):  # type: ignore[no-untyped-def]
        return lambda: AutoScaleSampler(["a", "b", "c", "d", "e"], BUDGETS, replicates=1, seed=0)


class TestSingleObjectiveContract(SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self):  # type: ignore[no-untyped-def]
        return lambda: AutoScaleSampler(DOMS, BUDGETS, seed=0)


def test_failed_verification_fit_fails_the_trial_cleanly_and_reopens(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from optuna_autoscale import fits

    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=len(sampler.design.points))  # every static point
    real = fits.verification_allocation

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("fit exploded")

    monkeypatch.setattr(fits, "verification_allocation", broken)
    with pytest.raises(RuntimeError, match="fit exploded"):
        study.optimize(objective, n_trials=1)
    last = study.trials[-1]
    assert last.state == TrialState.FAIL
    reservation = DesignPoint.from_json(last.system_attrs[POINT_ATTR])
    assert reservation.role == "verify_optimum" and reservation.allocation is None
    monkeypatch.setattr(fits, "verification_allocation", real)
    study.optimize(objective, n_trials=100)
    keys = _keys(study)
    assert set(keys) == _design_keys(sampler) and max(keys.values()) == 1
    from optuna_autoscale import AutoScaleResult

    rows = AutoScaleResult.from_study(study, write_summary=False).verification()
    assert len(rows) == 3 and all(r["predicted"] is not None for r in rows)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, optuna_autoscale as oa; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'; "
        "print(sorted(oa.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("AutoScaleResult", "AutoScaleSampler", "Mixture", "enqueue_mixture", "suggest_mixture"):
        assert name in out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.sampled_from(["ask", "ask", "complete", "fail", "nan"]), st.integers(0, 10**6)), max_size=60))
def test_interleaved_ask_tell_never_double_claims(ops: list[tuple[str, int]]) -> None:
    """Any interleaving of asks, completions, failures and NaNs: no point is held twice."""
    sampler = AutoScaleSampler(DOMS, BUDGETS, seed=0)
    study = optuna.create_study(sampler=sampler)
    running: list[tuple[optuna.Trial, Mixture]] = []

    def held() -> Counter:
        return _keys(study, (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))

    for op, pick in ops:
        if op == "ask" or not running:
            trial = study.ask()
            running.append((trial, suggest_mixture(trial, DOMS)))
        else:
            trial, mix = running.pop(pick % len(running))
            if op == "complete":
                study.tell(trial, _loss(mix))
            elif op == "fail":
                study.tell(trial, state=TrialState.FAIL)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "The value nan is not acceptable"
                    study.tell(trial, float("nan"))
        counts = held()
        assert all(n == 1 for k, n in counts.items() if "/replicate/t" not in k)
    for trial, mix in running:
        study.tell(trial, _loss(mix))
    study.optimize(objective, n_trials=100)
    keys = _keys(study)
    assert set(_design_keys(sampler)) <= set(keys)
    assert all(keys[k] == 1 for k in _design_keys(sampler))


def _verify_predicted(study: optuna.Study) -> DesignPoint:
    pts = [
        DesignPoint.from_json(t.system_attrs[POINT_ATTR])
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if POINT_ATTR in t.system_attrs
    ]
    (pt,) = [p for p in pts if p.key == "heldout/verify_predicted"]
    assert pt.allocation is not None
    return pt


@pytest.mark.parametrize("recorded", ["per-domain mean", "scalar", "mean perplexity"])
def test_heldout_verification_is_the_results_recommendation(recorded: str) -> None:
    """The held-out verification run sits at AutoScaleResult's default recommendation at that budget (inside the
    tested shares, guarded), fitted on the same runs: what ``extrapolate`` tells the user is what gets verified.

    Its joint law: with per-domain losses that reproduce the objective (the simulator's mean loss) the
    per-domain transfer law; without them (a scalar objective), or when the objective is not a fixed
    weighting of them (mean perplexity), the separable law.
    """
    from optuna_autoscale import AutoScaleResult
    from optuna_autoscale.design import Ledger
    from optuna_autoscale.laws import SeparableLaw
    from optuna_autoscale.simulate import transfer
    from optuna_autoscale.transfer import TransferLaw

    land = transfer(4, seed=1).with_snr(6.0, BUDGETS[0], domain_share=0.5)
    if recorded == "scalar":

        def obj(trial: optuna.Trial) -> float:
            mix = suggest_mixture(trial, land.domains)
            return land.loss(mix.allocation, seed=mix.seed)

    else:
        obj = land.objective(metric="loss" if recorded == "per-domain mean" else "mean_ppl")
    sampler = AutoScaleSampler(land.domains, BUDGETS, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(obj, n_trials=200)
    assert sampler.is_complete(study)
    design = sampler.design
    assert design.heldout is not None
    pt = _verify_predicted(study)
    result = AutoScaleResult.from_study(study, write_summary=False)

    # The ledger reads the per-domain losses from storage, exactly as the trials recorded them.
    trials = study.get_trials(deepcopy=False)
    ledger = Ledger(design, trials)
    by_number = {t.number: t for t in trials}
    if recorded == "scalar":
        assert ledger.losses == {}
    else:
        assert set(ledger.losses) == {n for runs in ledger.done.values() for n, _ in runs}
        for n, row in ledger.losses.items():
            assert row == {d: by_number[n].user_attrs[f"loss_{d}"] for d in land.domains}

    kind = "transfer" if recorded == "per-domain mean" else "separable"
    assert isinstance(result.law, TransferLaw if kind == "transfer" else SeparableLaw)
    rec = result.recommend(design.heldout)
    assert pt.allocation == pytest.approx(rec.mixture.allocation, rel=1e-9, abs=1e-3)
    assert rec.guard is not None  # the guarded default, not the law's bare optimum
    (row,) = [r for r in result.verification() if r["check"] == "verify_predicted"]
    assert row["predicted_gain"] == pytest.approx(result.predict_gain(pt.mixture(design.domains)), rel=1e-9)


def test_reach_in_a_seven_domain_study_end_to_end() -> None:
    """7 domains: the default design's x3 becomes x6 (half a run's tokens); the study runs it, the per-budget DDO
    fits see x6 for every domain, and the result's recommendation may use the shares it tested."""
    import warnings as _w

    from optuna_autoscale import AutoScaleResult

    land = separable(7, seed=3)
    sampler = AutoScaleSampler(land.domains, BUDGETS, seed=0, verify=False)
    study = optuna.create_study(sampler=sampler)
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        study.optimize(land.objective(), n_trials=200)
        assert sampler.is_complete(study) and len(study.trials) == 2 * (1 + 7 * 2)
        ups = [t for t in study.trials if t.user_attrs.get("autoscale_role") == "perturb"
               and t.user_attrs["tokens"] > 1.5 * t.user_attrs["autoscale_budget"]]
        assert len(ups) == 14
        for t in ups:
            assert max(t.user_attrs[f"weight_{d}"] for d in land.domains) == pytest.approx(0.5)
        result = AutoScaleResult.from_study(study, write_summary=False)
    assert {tuple(result.fits[max(result.fits)].multipliers[d]) for d in land.domains} == {(0.02, 1.0, 6.0)}
    rec = result.recommend(4e9)
    assert rec.inside and max(rec.mixture.weights.values()) <= 0.5 + 1e-9
