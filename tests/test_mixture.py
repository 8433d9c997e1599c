"""Tests of :mod:`optuna_autoscale.mixture`: the mapping, the value type and the trial parameters."""
from __future__ import annotations

from collections.abc import Callable
import copy
import dataclasses
import json
import math
import pickle
from typing import Any
import warnings

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import optuna
import pytest
from scipy import stats

from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import enqueue_mixture
from optuna_autoscale import Mixture
from optuna_autoscale import suggest_mixture
from optuna_autoscale.mixture import DEFAULT_SEED
from optuna_autoscale.mixture import param_name
from optuna_autoscale.mixture import params_to_weights
from optuna_autoscale.mixture import ReadOnlyDict
from optuna_autoscale.mixture import ROLE_ATTR
from optuna_autoscale.mixture import SEED_ATTR
from optuna_autoscale.mixture import TOKENS_PARAM
from optuna_autoscale.mixture import validate_domains
from optuna_autoscale.mixture import WEIGHT_PREFIX
from optuna_autoscale.mixture import weights_to_params


optuna.logging.set_verbosity(optuna.logging.WARNING)

DOMS = ("web", "code", "books")
TARGET = {"web": 0.5, "code": 0.3, "books": 0.2}


# ------------------------------------------------------------------------- the mapping
@pytest.mark.parametrize("m", [2, 4, 7])
def test_uniform_parameters_give_the_flat_dirichlet_on_the_simplex(m: int) -> None:
    """iid U(0, 1) parameters through params_to_weights are Dirichlet(1, ..., 1)."""
    rng = np.random.default_rng(12345 + m)
    n = 20_000
    w = np.array([params_to_weights(u) for u in rng.uniform(0.0, 1.0, size=(n, m))])
    assert w.shape == (n, m)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(w >= 0.0)
    # Mean vector 1/m (each marginal has sd sqrt((m-1)/(m^2 (m+1))) / sqrt(n) per mean).
    sd = math.sqrt((m - 1) / (m * m * (m + 1)) / n)
    np.testing.assert_allclose(w.mean(axis=0), 1.0 / m, rtol=0, atol=5 * sd)
    # Every marginal is Beta(1, m - 1) ...
    for i in range(m):
        assert stats.kstest(w[:, i], stats.beta(1, m - 1).cdf).pvalue > 0.01
    # ... and (aggregation property of the Dirichlet) so is the sum of two shares Beta(2, m - 2).
    if m >= 3:
        assert stats.kstest(w[:, 0] + w[:, 1], stats.beta(2, m - 2).cdf).pvalue > 0.01
        # Independent of the rest: the split of the first two shares is uniform.
        assert stats.kstest(w[:, 0] / (w[:, 0] + w[:, 1]), stats.uniform(0, 1).cdf).pvalue > 0.01


def test_the_uniformity_check_detects_a_wrong_mapping() -> None:
    """The KS test above has power: plain normalisation u / sum(u) is not flat on the simplex."""
    rng = np.random.default_rng(0)
    u = rng.uniform(0.0, 1.0, size=(20_000, 4))
    w = u / u.sum(axis=1, keepdims=True)
    assert stats.kstest(w[:, 0], stats.beta(1, 3).cdf).pvalue < 1e-6


_simplex_points = st.integers(min_value=2, max_value=12).flatmap(
    lambda m: st.lists(
        st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=m, max_size=m
    ).filter(lambda xs: sum(xs) > 0.0)
)


@settings(max_examples=200, deadline=None)
@given(_simplex_points)
def test_mapping_is_exactly_invertible(raw: list[float]) -> None:
    w = np.asarray(raw) / sum(raw)
    u = weights_to_params(w)
    assert np.all((u >= 0.0) & (u <= 1.0))
    back = params_to_weights(u)
    np.testing.assert_allclose(back, w, rtol=0, atol=1e-12)
    assert np.all(back >= 0.0) and not np.any(np.signbit(back))  # no -0.0
    assert abs(back.sum() - 1.0) <= 1e-12
    # And a Mixture built from those parameters carries the same weights.
    mix = Mixture(dict(zip([f"d{i}" for i in range(len(w))], back.tolist())), 1e6)
    np.testing.assert_allclose(list(mix.weights.values()), w, rtol=0, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=2, max_size=8),
    st.floats(min_value=0.1, max_value=10.0),
)
def test_mapping_is_scale_invariant_in_log_space(u: list[float], k: float) -> None:
    """u -> u**k scales every -log(u_i) by k, so the weights do not change."""
    a = params_to_weights(u)
    b = params_to_weights(np.asarray(u) ** k)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_mapping_edge_cases_and_bad_parameters() -> None:
    assert params_to_weights([1.0, 1.0, 1.0]).tolist() == pytest.approx([1 / 3] * 3)  # all zero -> uniform
    w = params_to_weights([1.0, math.exp(-1.0)])
    assert w.tolist() == [0.0, 1.0] and not np.signbit(w[0])  # -log(1) is -0.0; stored as 0.0
    assert params_to_weights([0.0, 0.5])[0] == pytest.approx(1.0, abs=1e-2)  # u = 0 is clipped, finite
    assert np.all(np.isfinite(params_to_weights([0.0, 0.0])))
    for bad in ([1.5, 0.5], [-0.1, 0.5], [float("nan"), 0.5], [float("inf"), 0.5]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            params_to_weights(bad)


# ------------------------------------------------------------------- the value type
def test_mixture_is_immutable_hashable_and_picklable() -> None:
    m = Mixture({"a": 0.25, "b": 0.75}, 1e8, seed=3)
    with pytest.raises(TypeError, match="read-only"):
        m.weights["a"] = 0.9  # type: ignore[index]
    with pytest.raises(TypeError):
        m.allocation["a"] = 1.0  # type: ignore[index]
    for mutate in (
        lambda d: d.update(a=0.9),
        lambda d: d.pop("a"),
        lambda d: d.popitem(),
        lambda d: d.setdefault("c", 0.1),
        lambda d: d.clear(),
        lambda d: d.__delitem__("a"),
        lambda d: d.__ior__({"a": 0.9}),
    ):
        for mapping in (m.weights, m.allocation):
            with pytest.raises(TypeError):
                mutate(mapping)
    m.weights.__init__({"a": 0.9})  # type: ignore[misc]  # re-initialising does nothing
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.tokens = 2e8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.weights = {"a": 0.9, "b": 0.1}  # type: ignore[misc]
    assert dict(m.weights) == {"a": 0.25, "b": 0.75} and m.tokens == 1e8
    # Mutable copies are ordinary dicts.
    c = m.weights.copy()
    c["a"] = 0.9
    assert type(c) is dict and m.weights["a"] == 0.25
    assert type(m.weights | {"c": 0.0}) is dict

    # Hash consistent with equality (domain order does not matter for either).
    same = Mixture({"b": 0.75, "a": 0.25}, 1e8, seed=3)
    assert m == same and hash(m) == hash(same)
    assert len({m, same, Mixture({"a": 0.25, "b": 0.75}, 1e8, seed=4)}) == 2
    assert m != Mixture({"a": 0.5, "b": 0.5}, 1e8, seed=3)
    assert m != Mixture({"a": 0.25, "b": 0.75}, 2e8, seed=3)
    assert hash(m.weights) == hash(same.weights) and hash(m.allocation) == hash(same.allocation)

    # Pickle (every protocol) and copy round trips: equal, hash equal, still read-only.
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(m, protocol=proto))
        assert back == m and hash(back) == hash(m) and back.seed == 3
        assert isinstance(back.weights, ReadOnlyDict)
        with pytest.raises(TypeError):
            back.weights["a"] = 0.9  # type: ignore[index]
    assert pickle.loads(pickle.dumps(m.allocation)) == m.allocation
    assert copy.copy(m) == m and copy.deepcopy(m) == m


def test_mixture_mappings_still_serialise_and_compare_like_dicts() -> None:
    m = Mixture({"web": 0.75, "code": 0.25}, tokens=1e8)
    assert m.allocation == {"web": 7.5e7, "code": 2.5e7}
    assert m.weights == {"web": 0.75, "code": 0.25}
    assert isinstance(m.weights, dict) and isinstance(m.allocation, dict)
    assert json.loads(json.dumps(m.weights)) == {"web": 0.75, "code": 0.25}
    assert json.loads(json.dumps(m.allocation)) == {"web": 7.5e7, "code": 2.5e7}
    d = m.to_dict()
    assert all(type(d[k]) is dict for k in ("weights", "allocation"))
    assert json.loads(json.dumps(d)) == {
        "weights": {"web": 0.75, "code": 0.25},
        "tokens": 1e8,
        "seed": DEFAULT_SEED,
        "allocation": {"web": 7.5e7, "code": 2.5e7},
    }
    assert Mixture.from_dict(json.loads(json.dumps(d))) == m
    asd = dataclasses.asdict(m)
    assert json.loads(json.dumps(asd)) == {"weights": {"web": 0.75, "code": 0.25}, "tokens": 1e8, "seed": 0}
    assert m.domains == ("web", "code")
    assert repr(m) == "Mixture(weights={'web': 0.75, 'code': 0.25}, tokens=100000000.0, seed=0)"
    # A Mixture passes through Optuna's storages as user attrs (JSON in the RDB storage).
    study = optuna.create_study(storage="sqlite:///:memory:")
    study.set_user_attr("mix", m.to_dict())
    study.set_user_attr("w", m.weights)
    assert Mixture.from_dict(study.user_attrs["mix"]) == m and study.user_attrs["w"] == dict(m.weights)


def test_constructors() -> None:
    m = Mixture.normalised({"a": 1.0, "b": 3.0}, 400.0, seed=2)
    assert m.weights == {"a": 0.25, "b": 0.75} and m.tokens == 400.0 and m.seed == 2
    f = Mixture.from_allocation({"a": 100.0, "b": 300.0}, seed=5)
    assert f.weights == {"a": 0.25, "b": 0.75} and f.tokens == 400.0 and f.seed == 5
    assert dict(f.allocation) == pytest.approx({"a": 100.0, "b": 300.0})
    u = Mixture.uniform(["a", "b", "c", "d"], 8.0)
    assert u.weights == {d: 0.25 for d in "abcd"} and u.allocation == {d: 2.0 for d in "abcd"}
    w = m.with_tokens(800.0)
    assert w.weights == m.weights and w.tokens == 800.0 and w.seed == 2
    assert isinstance(w.weights, ReadOnlyDict)
    # A mixture's own read-only weights can build another one.
    assert Mixture(m.weights, 400.0, seed=2) == m
    # Within-tolerance sums are renormalised exactly; integer-like inputs are coerced.
    r = Mixture({"a": 0.5 + 4e-7, "b": 0.5}, 10, seed=np.int64(1))
    assert sum(r.weights.values()) == pytest.approx(1.0, abs=1e-15)
    assert type(r.tokens) is float and type(r.seed) is int
    # Zero weights are allowed, and -0.0 is stored as 0.0.
    z = Mixture({"a": -0.0, "b": 1.0}, 1e6)
    assert z.weights["a"] == 0.0 and not math.copysign(1.0, z.weights["a"]) < 0
    zn = Mixture.normalised({"a": -0.0, "b": 2.0}, 1e6)
    assert not math.copysign(1.0, zn.weights["a"]) < 0


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Mixture({"a": 0.5, "b": 0.6}, 1e6), "sum to 1"),
        (lambda: Mixture({"a": -0.1, "b": 1.1}, 1e6), "non-negative"),
        (lambda: Mixture({"a": float("nan"), "b": 1.0}, 1e6), "finite"),
        (lambda: Mixture({"a": 1.0}, 1e6), "at least 2 domains"),
        (lambda: Mixture({"a": 0.5, "": 0.5}, 1e6), "non-empty strings"),
        (lambda: Mixture({"a": 0.5, "b": 0.5}, 0), "positive"),
        (lambda: Mixture({"a": 0.5, "b": 0.5}, -1e6), "positive"),
        (lambda: Mixture({"a": 0.5, "b": 0.5}, float("inf")), "finite"),
        (lambda: Mixture({"a": 0.5, "b": 0.5}, "lots"), "number of training tokens"),
        (lambda: Mixture({"a": 0.5, "b": 0.5}, 1e6, seed=1.5), "seed must be an integer"),
        (lambda: Mixture({"a": 0.5, "b": 0.5}, 1e6, seed=True), "seed must be an integer"),
        (lambda: Mixture.normalised({"a": 0.0, "b": 0.0}, 1e6), "at least one must be positive"),
        (lambda: Mixture.normalised({"a": -1.0, "b": 2.0}, 1e6), "non-negative"),
        (lambda: Mixture.from_allocation({"a": 0.0, "b": 0.0}), "allocation's total"),
        (lambda: Mixture.from_allocation({"a": -5.0, "b": 2.0}), "allocation's total"),
        (lambda: Mixture.uniform("web", 1e6), "single string"),
        (lambda: Mixture.uniform(["a", "a"], 1e6), "Duplicate domain"),
        (lambda: Mixture.from_dict({"weights": {"a": 0.5, "b": 0.5}}), "needs 'weights' and 'tokens'"),
    ],
)
def test_bad_inputs_are_clear_errors(build: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_validate_domains() -> None:
    assert validate_domains(["a", "b"]) == ("a", "b")
    assert validate_domains(iter(["x", "y", "z"])) == ("x", "y", "z")
    with pytest.raises(ValueError, match="wrap it in a list"):
        validate_domains("ab")
    with pytest.raises(ValueError, match="Duplicate"):
        validate_domains(["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty strings"):
        validate_domains(["a", 3])  # type: ignore[list-item]


# ------------------------------------------------------- suggest_mixture under Optuna samplers
def _tpe() -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=0, n_startup_trials=4)


def _gp() -> optuna.samplers.BaseSampler:
    pytest.importorskip("torch", reason="Optuna's GPSampler needs torch")
    return optuna.samplers.GPSampler(seed=0, n_startup_trials=4)


def _cmaes() -> optuna.samplers.BaseSampler:
    pytest.importorskip("cmaes", reason="Optuna's CmaEsSampler needs the cmaes package")
    return optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=2)


def _qmc() -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=0, scramble=True)


def _random() -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=0)


SAMPLERS = {"tpe": _tpe, "gp": _gp, "cmaes": _cmaes, "qmc": _qmc, "random": _random}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_suggest_mixture_under_optuna_samplers(name: str) -> None:
    sampler = SAMPLERS[name]()
    study = optuna.create_study(sampler=sampler)
    seen: dict[int, Mixture] = {}

    def objective(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, DOMS, tokens=1e6)
        seen[trial.number] = mix
        return sum((mix.weights[d] - TARGET[d]) ** 2 for d in DOMS)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature and independent-sampling warnings
        study.optimize(objective, n_trials=10)

    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 10
    for t in trials:
        mix = seen[t.number]
        w = np.array([mix.weights[d] for d in DOMS])
        assert np.all(w >= 0.0) and abs(w.sum() - 1.0) <= 1e-12
        assert mix.domains == DOMS and mix.tokens == 1e6 and mix.seed == DEFAULT_SEED
        # Parameters: one float in [0, 1] per domain, named weight_<domain>; no tokens param.
        assert set(t.params) == {param_name(d) for d in DOMS}
        assert all(name_.startswith(WEIGHT_PREFIX) for name_ in t.params)
        u = [t.params[param_name(d)] for d in DOMS]
        assert all(0.0 <= x <= 1.0 for x in u)
        np.testing.assert_allclose(params_to_weights(u), w, rtol=0, atol=1e-15)
        # User attrs: the normalised weights, tokens, seed and role.
        for d in DOMS:
            assert t.user_attrs[param_name(d)] == mix.weights[d]
        assert t.user_attrs[TOKENS_PARAM] == 1e6
        assert t.user_attrs[SEED_ATTR] == DEFAULT_SEED
        assert t.user_attrs[ROLE_ATTR] == "search"
    # The samplers really explore: the mixtures are not all the same.
    assert len({seen[t.number] for t in trials}) == len(trials)


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_suggest_mixture_without_tokens_is_a_clear_error(name: str) -> None:
    study = optuna.create_study(sampler=SAMPLERS[name]())
    trial = study.ask()
    with pytest.raises(ValueError, match=r"tokens=.*other than AutoScaleSampler"):
        suggest_mixture(trial, DOMS)
    with pytest.raises(ValueError, match="positive"):
        suggest_mixture(trial, DOMS, tokens=-5)
    with pytest.raises(ValueError, match="single string"):
        suggest_mixture(trial, "web", tokens=1e6)


# ---------------------------------------------------------------- enqueued mixtures
def test_enqueued_mixture_round_trips_and_zero_weight_is_positive_zero() -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    exact = Mixture({"web": 0.5, "code": 0.3, "books": 0.2}, 1e6)
    zero = Mixture({"web": 0.0, "code": 0.6, "books": 0.4}, 1e6)
    enqueue_mixture(study, exact)
    enqueue_mixture(study, zero)
    got: list[Mixture] = []

    def objective(trial: optuna.Trial) -> float:
        got.append(suggest_mixture(trial, DOMS, tokens=1e6))
        return 0.0

    study.optimize(objective, n_trials=2)
    for mix, want in zip(got, (exact, zero)):
        for d in DOMS:
            assert mix.weights[d] == pytest.approx(want.weights[d], abs=1e-12)
    t = study.trials[1]
    assert t.params[param_name("web")] == 1.0
    for w in (got[1].weights["web"], t.user_attrs[param_name("web")]):
        assert w == 0.0 and math.copysign(1.0, w) == 1.0  # not -0.0
    assert json.dumps(t.user_attrs[param_name("web")]) == "0.0"


def test_enqueued_zero_weight_under_autoscale_sampler_is_positive_zero() -> None:
    study = optuna.create_study(sampler=AutoScaleSampler(DOMS, (1e8, 4e8), seed=0))
    enqueue_mixture(study, Mixture({"web": 0.0, "code": 0.6, "books": 0.4}, 4e8))
    got: list[Mixture] = []
    study.optimize(lambda t: got.append(suggest_mixture(t, DOMS)) or 1.0, n_trials=1)
    t = study.trials[0]
    assert t.user_attrs[ROLE_ATTR] == "user"
    for w in (got[0].weights["web"], t.user_attrs[param_name("web")]):
        assert w == 0.0 and math.copysign(1.0, w) == 1.0


def test_hand_enqueued_values_are_renormalised_or_refused() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    # Any parameters in [0, 1] map onto the simplex: renormalised, not trusted as weights.
    study.enqueue_trial({param_name("web"): 0.2, param_name("code"): 0.2, param_name("books"): 0.2})
    # Outside [0, 1] is refused with a pointer to enqueue_mixture.
    study.enqueue_trial({param_name("web"): 1.5, param_name("code"): 0.5, param_name("books"): 0.5})
    got: list[Mixture] = []

    def objective(trial: optuna.Trial) -> float:
        got.append(suggest_mixture(trial, DOMS, tokens=1e6))
        return 0.0

    study.optimize(objective, n_trials=1)
    assert dict(got[0].weights) == pytest.approx({d: 1 / 3 for d in DOMS}, abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns that the fixed value is out of range
        with pytest.raises(ValueError, match=r"\[0, 1\].*enqueue_mixture"):
            study.optimize(objective, n_trials=1)
