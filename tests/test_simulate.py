"""Tests of the ground-truth landscapes in ``optuna_autoscale.simulate``."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from optuna_autoscale import simulate
from optuna_autoscale.simulate import mixing_law
from optuna_autoscale.simulate import separable
from optuna_autoscale.simulate import transfer


FAMILIES = [separable, transfer, mixing_law]


def _uniform(land: simulate.Landscape, tokens: float) -> dict[str, float]:
    return {d: tokens / land.m for d in land.domains}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_beats_uniform_and_random(family, seed) -> None:
    land = family(6, seed=seed)
    rng = np.random.default_rng(seed)
    for tokens in (1e8, 4e9):
        best = land.oracle(tokens)
        assert sum(best.values()) == pytest.approx(tokens, rel=1e-9)
        assert all(v >= 0 for v in best.values())
        f_best = land.true_loss(best)
        assert f_best <= land.true_loss(_uniform(land, tokens)) + 1e-12
        for _ in range(30):
            w = rng.dirichlet(np.ones(land.m))
            assert f_best <= land.true_loss(dict(zip(land.domains, w * tokens))) + 1e-12


@pytest.mark.parametrize("family", FAMILIES)
def test_optimum_shifts_with_budget(family) -> None:
    land = family(7, seed=0)
    small, large = land.oracle(1e8), land.oracle(4e9)
    w_small = np.array([small[d] / 1e8 for d in land.domains])
    w_large = np.array([large[d] / 4e9 for d in land.domains])
    assert 0.5 * np.abs(w_small - w_large).sum() > 0.05
    # Reusing the small-scale optimum at the large budget is worse than the oracle there.
    reused = {d: small[d] * 40 for d in land.domains}
    assert land.true_loss(reused) > land.true_loss(large) + 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_losses_are_nats_like(family) -> None:
    for seed in range(3):
        land = family(7, seed=seed)
        for tokens in (1e8, 4e9):
            per = land.per_domain_true_loss(_uniform(land, tokens))
            assert all(1.0 < v < 9.0 for v in per.values())
            assert 2.0 < land.true_loss(_uniform(land, tokens)) < 7.0
            assert land.true_loss(_uniform(land, tokens)) == pytest.approx(np.mean(list(per.values())))


def test_separable_oracle_matches_its_construction() -> None:
    # The unbounded optimum at the reference budget is the drawn interior mixture, and it
    # satisfies KKT: equal marginal gains beta g (N + N0)^(-g-1).
    land = separable(7, seed=3)
    best = land.oracle(simulate.REFERENCE_TOKENS)
    x = np.array([best[d] for d in land.domains])
    assert np.all(x > 0)
    beta, n0, g = (np.array(v) for v in (land.beta, land.offset, land.gamma))
    marginal = beta * g * (x + n0) ** (-g - 1)
    assert np.ptp(marginal) / marginal.mean() < 1e-5


def test_separable_oracle_matches_water_filling_with_bounds() -> None:
    land = separable(5, seed=2)
    tokens = 4e8
    lower = {d: 0.2 * tokens / 5 for d in land.domains}
    upper = {d: 0.3 * tokens for d in land.domains}
    best = land.oracle(tokens, lower=lower, upper=upper)
    x = np.array([best[d] for d in land.domains])
    lo, hi = np.array(list(lower.values())), np.array(list(upper.values()))
    assert np.all(x >= lo * (1 - 1e-9)) and np.all(x <= hi * (1 + 1e-9))
    beta, n0, g = (np.array(v) for v in (land.beta, land.offset, land.gamma))
    marginal = beta * g * (x + n0) ** (-g - 1)
    free = (x > lo * (1 + 1e-6)) & (x < hi * (1 - 1e-6))
    assert free.sum() >= 2
    lam = marginal[free].mean()
    assert np.ptp(marginal[free]) / lam < 1e-4
    # KKT at bounds: a domain held at its lower bound has a smaller marginal gain, at its upper a larger one.
    assert np.all(marginal[x <= lo * (1 + 1e-6)] <= lam * (1 + 1e-4))
    assert np.all(marginal[x >= hi * (1 - 1e-6)] >= lam * (1 - 1e-4))


@pytest.mark.parametrize("seed", [0, 4])
def test_separable_exact_oracle_agrees_with_slsqp(seed) -> None:
    land = separable(7, seed=seed)
    for tokens, lower in ((2e9, None), (1e8, {d: 0.2e8 / 7 for d in land.domains})):
        exact = land.oracle(tokens, lower=lower)
        numeric = simulate.Landscape.oracle(land, tokens, lower=lower)  # the generic SLSQP oracle
        assert sum(exact.values()) == pytest.approx(tokens, rel=1e-12)
        f_exact, f_num = land.true_loss(exact), land.true_loss(numeric)
        assert f_exact <= f_num + 1e-12
        assert f_num - f_exact < 1e-9
        for d in land.domains:
            assert numeric[d] == pytest.approx(exact[d], rel=1e-3, abs=1e-6 * tokens)


@pytest.mark.parametrize("family", FAMILIES)
def test_noise_is_reproducible_and_crn_shared(family) -> None:
    land = family(5, seed=1, noise=0.02, seed_noise=0.05)
    a = _uniform(land, 1e8)
    b = dict(a)
    b[land.domains[0]] *= 3
    # Deterministic.
    assert land.loss(a, seed=7) == land.loss(a, seed=7)
    assert land.loss(a, seed=7) == family(5, seed=1, noise=0.02, seed_noise=0.05).loss(dict(a), seed=7)
    # Different seeds and allocations give different draws.
    assert land.loss(a, seed=7) != land.loss(a, seed=8)
    # Seed-shared part: with run noise off, the noise of a and b is identical for one seed.
    crn = land.with_noise(0.0)
    eps_a = crn.loss(a, seed=3) - crn.true_loss(a)
    eps_b = crn.loss(b, seed=3) - crn.true_loss(b)
    assert eps_a == pytest.approx(eps_b, abs=1e-12)
    assert eps_a != 0.0
    # Seed None is the default seed 0.
    assert land.loss(a) == land.loss(a, seed=0)
    # Per-domain noisy losses average to the noisy loss.
    per = land.per_domain_loss(a, seed=5)
    assert np.mean(list(per.values())) == pytest.approx(land.loss(a, seed=5))


def test_noise_sigmas_are_as_given() -> None:
    land = separable(4, seed=0, noise=0.03, seed_noise=0.05)
    a = _uniform(land, 1e8)
    true = land.true_loss(a)
    # Across seeds, one allocation: variance is seed_noise^2 + noise^2.
    draws = np.array([land.loss(a, seed=s) - true for s in range(4000)])
    assert draws.std() == pytest.approx(math.hypot(0.03, 0.05), rel=0.06)
    assert abs(draws.mean()) < 0.005
    # Within one seed, across allocations: the seed part cancels in differences.
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(2000):
        w = rng.dirichlet(np.ones(4))
        alloc = dict(zip(land.domains, w * 1e8))
        diffs.append((land.loss(alloc, seed=1) - land.true_loss(alloc)) - (land.loss(a, seed=1) - true))
    assert np.std(diffs) == pytest.approx(0.03, rel=0.08)


@pytest.mark.parametrize("family", FAMILIES)
def test_with_snr(family) -> None:
    land = family(7, seed=0)
    effects = land.x3_effects(1e8)
    signal = np.mean(np.abs(list(effects.values())))
    noisy = land.with_snr(6.0, 1e8, seed_share=0.25)
    assert math.hypot(noisy.noise, noisy.seed_noise) == pytest.approx(signal / 6.0)
    assert noisy.seed_noise**2 == pytest.approx(0.25 * (signal / 6.0) ** 2)
    assert land.with_snr(math.inf, 1e8).noise == 0.0
    with pytest.raises(ValueError, match="snr"):
        land.with_snr(0.0, 1e8)
    with pytest.raises(ValueError, match="seed_share"):
        land.with_snr(6.0, 1e8, seed_share=1.5)


def test_x3_effects_sign_for_power_laws() -> None:
    for family in (separable, transfer):
        effects = family(7, seed=0).x3_effects(1e8)
        assert all(v < 0 for v in effects.values())  # more data never hurts in these families


@pytest.mark.parametrize("family", FAMILIES)
def test_objective_in_study_optimize(family) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    land = family(4, seed=0, noise=0.01)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(land.objective(tokens=1e8), n_trials=8)
    assert len(study.trials) == 8
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        losses = [t.user_attrs[f"loss_{d}"] for d in land.domains]
        assert np.mean(losses) == pytest.approx(t.value)
        weights = {d: t.user_attrs[f"weight_{d}"] for d in land.domains}
        assert sum(weights.values()) == pytest.approx(1.0)
        alloc = {d: w * 1e8 for d, w in weights.items()}
        assert t.value == pytest.approx(land.loss(alloc, seed=t.user_attrs["seed"]))
        assert t.user_attrs["sim_true_loss"] == pytest.approx(land.true_loss(alloc))
    # Rerunning gives the same values (deterministic noise).
    again = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    again.optimize(land.objective(tokens=1e8), n_trials=8)
    assert [t.value for t in again.trials] == [t.value for t in study.trials]


def test_objective_needs_tokens_under_other_samplers() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(ValueError, match="tokens"):
        study.optimize(separable(3).objective(), n_trials=1, catch=())


def test_mean_ppl_metric() -> None:
    land = mixing_law(3, seed=0)
    a = _uniform(land, 1e8)
    per = land.per_domain_true_loss(a)
    assert land.true_loss(a, metric="mean_ppl") == pytest.approx(np.mean(np.exp(list(per.values()))))
    best = land.oracle(1e8, metric="mean_ppl")
    assert land.true_loss(best, metric="mean_ppl") <= land.true_loss(a, metric="mean_ppl")
    with pytest.raises(ValueError, match="metric"):
        land.true_loss(a, metric="accuracy")


def test_params_and_default_domains() -> None:
    assert separable().domains == tuple(f"d{i}" for i in range(7))
    assert separable(12).domains[-1] == "d11"
    assert separable(domains=simulate.REDPAJAMA_DOMAINS).m == 7
    assert separable(domains=["a", "b"]).domains == ("a", "b")
    for family in FAMILIES:
        land = family(4, seed=5)
        p = land.params()
        assert p["domains"] == list(land.domains)
        assert family(4, seed=5) == land  # deterministic given the seed
        assert family(4, seed=6) != land


def test_bad_inputs() -> None:
    land = separable(3)
    a = _uniform(land, 1e8)
    with pytest.raises(ValueError, match="missing"):
        land.true_loss({"d0": 1.0, "d1": 1.0})
    with pytest.raises(ValueError, match="unknown"):
        land.true_loss({**a, "nope": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        land.true_loss({**a, "d1": -1.0})
    with pytest.raises(TypeError, match="mapping"):
        land.true_loss([1.0, 2.0, 3.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lower bounds sum"):
        land.oracle(1e8, lower={d: 5e7 for d in land.domains})
    with pytest.raises(ValueError, match="upper bounds sum"):
        land.oracle(1e8, upper={d: 1e7 for d in land.domains})
    with pytest.raises(ValueError, match="unknown domains"):
        land.oracle(1e8, lower={"nope": 1.0})
    with pytest.raises(ValueError, match="tokens"):
        land.oracle(-1.0)
    with pytest.raises(ValueError, match="m"):
        separable(1)
    with pytest.raises(ValueError, match="Duplicate"):
        separable(domains=["a", "a"])
    with pytest.raises(ValueError, match="noise"):
        separable(3, noise=-1.0)
    with pytest.raises(ValueError, match="beta"):
        simulate.SeparableLandscape(("a", "b"), (2.0, 2.0), (1.0, -1.0), (0.0, 0.0), (0.5, 0.5))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # noisy DDO fits may warn; not what this test checks
def test_objective_under_autoscale_sampler() -> None:
    from optuna_autoscale.sampler import AutoScaleSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    land = separable(3, seed=0, noise=0.01, seed_noise=0.02)
    sampler = AutoScaleSampler(land.domains, [1e8, 4e8], seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=60)
    assert sampler.is_complete(study)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.user_attrs["tokens"] for t in done} >= {1e8, 4e8}
    for t in done:
        alloc = {d: t.user_attrs[f"weight_{d}"] * t.user_attrs["tokens"] for d in land.domains}
        assert t.value == pytest.approx(land.loss(alloc, seed=t.user_attrs["seed"]), rel=1e-9)
    # tokens= is an error under AutoScaleSampler, which chooses budgets itself.
    other = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8], seed=0))
    with pytest.raises(ValueError, match="tokens"):
        other.optimize(land.objective(tokens=1e8), n_trials=1, catch=())


@pytest.mark.parametrize("family", FAMILIES)
def test_domain_share_keeps_the_mean_noise_and_splits_it_per_domain(family) -> None:
    land = family(4, seed=0, noise=0.03, seed_noise=0.04, domain_share=0.5)
    a = _uniform(land, 1e8)
    true = land.per_domain_true_loss(a)
    draws = np.array([[v - true[d] for d, v in land.per_domain_loss(a, seed=s).items()] for s in range(3000)])
    total = math.hypot(0.03, 0.04)
    # The mean loss keeps its sd; each domain's sd is sqrt((1 - s) + s m) times it; domains are
    # correlated (shared part) but not identical.
    assert draws.mean(axis=1).std() == pytest.approx(total, rel=0.06)
    assert draws[:, 0].std() == pytest.approx(total * math.sqrt(0.5 + 0.5 * 4), rel=0.06)
    corr = np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]
    assert corr == pytest.approx(0.5 / (0.5 + 2.0), abs=0.06)
    # The objective is still the mean of the per-domain losses, and the seed-shared part cancels
    # in same-seed differences of every domain.
    assert land.loss(a, seed=3) == pytest.approx(np.mean(list(land.per_domain_loss(a, seed=3).values())))
    crn = land.with_noise(0.0)
    b = dict(a)
    b[land.domains[0]] *= 3
    ea = np.array(list(crn.per_domain_loss(a, seed=2).values())) - np.array(list(crn.per_domain_true_loss(a).values()))
    eb = np.array(list(crn.per_domain_loss(b, seed=2).values())) - np.array(list(crn.per_domain_true_loss(b).values()))
    assert ea == pytest.approx(eb, abs=1e-12)
    # with_snr keeps or sets the share; the default (0) shifts every domain by the same draw.
    assert land.with_snr(6.0, 1e8).domain_share == 0.5
    assert land.with_snr(6.0, 1e8, domain_share=0.0).domain_share == 0.0
    same = family(4, seed=0, noise=0.03)
    per = list(same.per_domain_loss(a, seed=1).values())
    shifts = np.array(per) - np.array(list(same.per_domain_true_loss(a).values()))
    assert np.ptp(shifts) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="domain_share"):
        family(4, seed=0, domain_share=1.5)
