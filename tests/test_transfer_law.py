"""Tests of the per-domain joint transfer law (``optuna_autoscale.transfer``) and its use by the results layer."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optuna
import pytest

from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import suggest_mixture
from optuna_autoscale.laws import SeparableLaw
from optuna_autoscale.simulate import mixing_law
from optuna_autoscale.simulate import separable
from optuna_autoscale.simulate import transfer
from optuna_autoscale.transfer import fit_transfer
from optuna_autoscale.transfer import objective_weights
from optuna_autoscale.transfer import TransferLaw


optuna.logging.set_verbosity(optuna.logging.WARNING)

BUDGETS = (1e8, 4e8)
TARGET = 4e9


def _design(land, budgets=BUDGETS, snr=math.inf, domain_share=0.5):  # type: ignore[no-untyped-def]
    """DDO designs (uniform base, x0.2 and x3 per domain), one seed per budget: (alloc, losses, group) rows."""
    obs = []
    for j, b in enumerate(budgets):
        noisy = land.with_snr(snr, b, domain_share=domain_share)
        base = {d: b / land.m for d in land.domains}
        allocs = [base] + [{**base, d: base[d] * x} for d in land.domains for x in (0.2, 3.0)]
        obs += [(a, noisy.per_domain_loss(a, seed=100 + j), f"b{j}") for a in allocs]
    return obs


def _share(land, alloc, tokens=TARGET):  # type: ignore[no-untyped-def]
    uni = land.true_loss({d: tokens / land.m for d in land.domains})
    best = land.true_loss(land.oracle(tokens))
    return (uni - land.true_loss(alloc)) / (uni - best)


def test_recovers_transfer_landscape_parameters() -> None:
    land = transfer(4, seed=3)
    law = fit_transfer(_design(land))
    m = land.m
    t = np.array(land.transfer_matrix)
    for k, d in enumerate(land.domains):
        p = law.params[d]
        # Landscape: l_d = E_d + m beta_d (N_d + sum_j T_dj N_j + N0_d)^-gamma_d.
        assert p["gamma"] == pytest.approx(land.gamma[k], rel=1e-3)
        assert p["n0"] == pytest.approx(land.offset[k], rel=1e-2)
        assert p["beta"] == pytest.approx(m * land.beta[k], rel=1e-2)
        for j, e in enumerate(land.domains):
            if j != k:
                assert p["transfer"][e] == pytest.approx(t[k, j], abs=1e-4)
    assert law.weights == pytest.approx({d: 1 / m for d in land.domains})
    # Loss differences between mixtures at another budget are predicted.
    a = {d: 1e9 / m for d in land.domains}
    b = dict(a)
    b[land.domains[0]] *= 2.0
    assert law.predict(b) - law.predict(a) == pytest.approx(land.true_loss(b) - land.true_loss(a), rel=1e-4)
    per = law.predict_domains(b, group="b1")
    assert np.mean(list(per.values())) == pytest.approx(law.predict(b, group="b1"))


@pytest.mark.parametrize("seed", [0, 1])
def test_optimum_at_target_recovers_the_gain_on_noiseless_transfer(seed: int) -> None:
    land = transfer(7, seed=seed)
    law = fit_transfer(_design(land))
    point = law.optimal_allocation(TARGET, robust=False)
    assert sum(point.values()) == pytest.approx(TARGET)
    assert _share(land, point) >= 0.95
    # The robust step from direct transfer of the 4e8 optimum: no noise, so it goes (nearly) all the way.
    anchor = {d: v * 10 for d, v in land.oracle(4e8).items()}
    robust = law.optimal_allocation(TARGET, anchor=anchor)
    assert _share(land, robust) >= 0.95
    assert _share(land, robust) > _share(land, anchor)


def test_bounds_are_respected_and_robust_shrinks_under_noise() -> None:
    land = transfer(5, seed=2)
    law = fit_transfer(_design(land, snr=6.0))
    assert law.noise is not None and law.noise > 0 and law.covariances is not None
    lo = {d: 0.05 * TARGET for d in land.domains}
    hi = {d: 0.4 * TARGET for d in land.domains}
    alloc = law.optimal_allocation(TARGET, lower=lo, upper=hi)
    assert sum(alloc.values()) == pytest.approx(TARGET)
    for d in land.domains:
        assert lo[d] * (1 - 1e-9) <= alloc[d] <= hi[d] * (1 + 1e-9)
    # Infinite risk aversion keeps the anchor; zero risk gives the point optimum.
    anchor = {d: TARGET / land.m for d in land.domains}
    assert law.optimal_allocation(TARGET, anchor=anchor, risk=1e9) == pytest.approx(anchor)
    assert law.optimal_allocation(TARGET, anchor=anchor, risk=0.0) == pytest.approx(
        law.optimal_allocation(TARGET, robust=False), rel=1e-6
    )


def test_exponential_form_is_recovered_from_noiseless_mixing_law_data() -> None:
    land = mixing_law(4, seed=3)
    law = fit_transfer(_design(land), forms="exp")
    assert law.forms == ("exp",) * land.m
    t = np.array(land.interaction)
    for k, d in enumerate(land.domains):
        p = law.params[d]
        assert p["form"] == "exp"
        # Landscape: l_d = c_d + k_d (N / N_ref)^-alpha_d exp(t_d . r); the fit's rows have mean zero.
        assert p["alpha"] == pytest.approx(land.alpha[k], rel=1e-4)
        row = t[k] - t[k].mean()
        assert [p["interaction"][e] for e in land.domains] == pytest.approx(row, abs=1e-4)
        expected_k = land.scale[k] * land.reference_tokens ** land.alpha[k] * math.exp(t[k].mean())
        assert p["k"] == pytest.approx(expected_k, rel=1e-3)
    a = {d: 1e9 / land.m for d in land.domains}
    b = {**a, land.domains[1]: 3 * a[land.domains[1]]}
    assert law.predict(b) - law.predict(a) == pytest.approx(land.true_loss(b) - land.true_loss(a), rel=1e-5)
    assert law.to_dict()["forms"] == ["exp"] * land.m
    # Its optimum at the target is the landscape's (the power form alone gets much less).
    exp_share = _share(land, law.optimal_allocation(TARGET, robust=False))
    assert exp_share >= 0.99
    assert _share(land, fit_transfer(_design(land)).optimal_allocation(TARGET, robust=False)) < exp_share - 0.03


@pytest.mark.parametrize("seed", [0, 1])
def test_form_selection_by_held_out_error(seed: int) -> None:
    land_t = transfer(5, seed=seed)
    law_t = fit_transfer(_design(land_t), forms="auto")
    assert law_t.forms == ("power",) * land_t.m
    assert all(p["exp"] > 10 * p["power"] for p in law_t.press.values())
    land_m = mixing_law(5, seed=seed)
    law_m = fit_transfer(_design(land_m), forms="auto")
    assert law_m.forms == ("exp",) * land_m.m
    assert all(p["power"] > 10 * p["exp"] for p in law_m.press.values())
    anchor = {d: v * 10 for d, v in land_m.oracle(4e8).items()}
    assert _share(land_m, law_m.optimal_allocation(TARGET, anchor=anchor)) >= 0.95
    # Under noise both forms are fitted and the robust step still works on the mix.
    noisy = fit_transfer(_design(land_m, snr=6.0), forms="auto")
    assert set(noisy.forms) <= {"power", "exp"} and noisy.covariances is not None
    alloc = noisy.optimal_allocation(TARGET, anchor=anchor)
    assert sum(alloc.values()) == pytest.approx(TARGET)
    with pytest.raises(ValueError, match="forms must be one of"):
        fit_transfer(_design(land_m), forms="bogus")


def test_pooled_exponents_pull_an_outlying_domain_toward_the_others() -> None:
    # Every domain has gamma = 0.5; at SNR 6 two domains' exponents are fitted far off (0.37 and
    # 0.30 in log units). Pooling (a common mean fitted across domains) pulls them toward the rest.
    land = dataclasses.replace(transfer(6, seed=2), gamma=(0.5,) * 6)
    obs = _design(land, snr=6.0)
    free = fit_transfer(obs)

    def log_gamma(law: TransferLaw) -> np.ndarray:
        return np.log([law.params[d]["gamma"] for d in land.domains])

    err_free = np.abs(log_gamma(free) - math.log(0.5))
    assert err_free.max() > 0.25  # the setting is a poorly identified outlier
    for pool in (0.1, "auto"):
        pooled = fit_transfer(obs, pool_exponents=pool)
        lg = log_gamma(pooled)
        assert np.abs(lg - math.log(0.5)).max() < 0.5 * err_free.max()
        assert np.std(lg) < 0.5 * np.std(log_gamma(free))
        assert pooled.covariances is not None and pooled.noise is not None
    # Noiseless data identify every exponent: pooling leaves them (nearly) where they are.
    clean = transfer(5, seed=1)
    law = fit_transfer(_design(clean), pool_exponents="auto", pool_offsets="auto")
    for k, d in enumerate(clean.domains):
        assert law.params[d]["gamma"] == pytest.approx(clean.gamma[k], rel=1e-2)
    with pytest.raises(ValueError, match="pool_exponents"):
        fit_transfer(obs, pool_exponents=0.0)
    with pytest.raises(ValueError, match="pool_exponents"):
        fit_transfer(obs, pool_offsets="yes")


@pytest.mark.parametrize("snr", [math.inf, 6.0])
def test_a_refit_from_a_superset_fit_matches_a_full_refit(snr: float) -> None:
    # Three budgets, pooled exponents, both forms: leaving a budget out and refitting from the full fit (one solve
    # per domain, its form and pooled prior) lands where a full refit of the remaining runs lands.
    land = transfer(4, seed=3)
    budgets = (1e8, 3e8, 1e9)
    obs = _design(land, budgets=budgets, snr=snr)
    full = fit_transfer(obs, forms="auto", pool_exponents="auto")
    assert full.pooled_priors and all("exponent" in v for v in full.pooled_priors.values())
    rest = [o for o in obs if o[2] != "b2"]  # the largest budget left out: the token scale changes
    cold = fit_transfer(rest, forms="auto", pool_exponents="auto")
    warm = fit_transfer(rest, start=full)
    assert warm.forms == full.forms and warm.scale != full.scale
    assert warm.scale == pytest.approx(cold.scale)
    assert all(warm.form_thetas[f][k] == warm.thetas[k] for k, f in enumerate(warm.forms))  # its own, to refit from
    if snr == math.inf:  # under noise the exponents are weakly identified and the pooled prior differs
        for d in land.domains:
            if cold.params[d]["form"] == warm.params[d]["form"] == "power":
                assert warm.params[d]["gamma"] == pytest.approx(cold.params[d]["gamma"], rel=0.1)
    grid = [{d: 1e9 * w for d, w in zip(land.domains, row)} for row in np.random.default_rng(0).dirichlet(np.ones(4), 20)]
    d_cold = np.array([cold.predict(a) for a in grid])
    d_warm = np.array([warm.predict(a) for a in grid])
    assert np.corrcoef(d_cold, d_warm)[0, 1] > 0.99  # they rank mixtures alike at a budget the refit never saw
    # Refitting the very runs from their own fit changes nothing.
    same = fit_transfer(obs, start=full)
    assert same.forms == full.forms
    for a in grid[:5]:
        assert same.predict(a) == pytest.approx(full.predict(a), abs=1e-4)
    # A domain whose two forms were close in the full fit gets both again (the left-out runs may have decided it).
    land_m = mixing_law(4, seed=1)
    mixes = np.vstack([np.full(4, 0.25), np.random.default_rng(1).dirichlet(np.full(4, 2.0), size=15)])
    obs_m = []
    for j, b in enumerate(budgets):  # uniform and 15 random mixtures per budget: the forms are close here
        noisy = land_m.with_snr(6.0, b, domain_share=0.5)
        for w in mixes:
            a = {d: float(v * b) for d, v in zip(land_m.domains, w)}
            obs_m.append((a, noisy.per_domain_loss(a, seed=1000 + j), f"b{j}"))
    full_m = fit_transfer(obs_m, forms="auto", pool_exponents="auto")
    warm_m = fit_transfer([o for o in obs_m if o[2] != "b0"], start=full_m)
    from optuna_autoscale.laws.transfer import _FORM_RECHECK

    n_close = 0
    for k, d in enumerate(land_m.domains):
        p = full_m.press[d]
        close = max(p.values()) <= _FORM_RECHECK * min(p.values())
        assert set(warm_m.press[d]) == ({"power", "exp"} if close else {full_m.forms[k]})
        assert warm_m.forms[k] == min(warm_m.press[d], key=warm_m.press[d].get)
        n_close += close
    assert n_close >= 1
    with pytest.raises(ValueError, match="start must be a TransferLaw of the domains"):
        fit_transfer(_design(transfer(3, seed=0)), start=full)


def test_long_fits_show_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from optuna_autoscale import _progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    obs = _design(transfer(3, seed=0), snr=6.0)
    monkeypatch.setattr(_progress, "PROGRESS_DELAY", 0.0)
    desc = "fitting the transfer law (3 domains, 14 runs)"
    for pool, fits in ((None, 6), ("auto", 12)):  # 3 domains x 2 forms, twice when pooled
        term = Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        with _progress.terminal_progress(desc) as progress:
            fit_transfer(obs, forms="auto", pool_exponents=pool, progress=progress)
        assert f" 0/{fits} " in term.getvalue() and desc in term.getvalue()
    # Not a terminal (logs, CI): silent.
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    with _progress.terminal_progress(desc) as progress:
        fit_transfer(obs, forms="auto", pool_exponents="auto", progress=progress)
    assert quiet.getvalue() == ""
    # The maths alone report through the callback, and draw nothing.
    seen: list[tuple[int, int]] = []
    fit_transfer(obs, forms="auto", pool_exponents="auto", progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)


def test_pooled_prior() -> None:
    from optuna_autoscale.laws import _pooled_prior
    from optuna_autoscale.laws import POOL_SD_FLOOR

    base = (math.log(0.5), 0.7)
    vals = np.log([0.4, 0.5, 0.6, 0.45])
    mu, sd = _pooled_prior(vals, np.zeros(4), base, 0.2)
    # Common mean: the estimates' mean, shrunk slightly toward the fixed prior's mean.
    w = 4 / 0.2**2
    assert mu == pytest.approx((w * vals.mean() + base[0] / 0.7**2) / (w + 0.7**-2))
    assert sd == pytest.approx(math.sqrt(0.2**2 + 1 / (w + 0.7**-2)))
    # "auto": the estimates' own sd (their variances ignored), floored.
    tau = float(np.std(vals, ddof=1))
    assert tau > POOL_SD_FLOOR
    mu_auto, sd_auto = _pooled_prior(vals, np.full(4, 1.0), base, "auto")
    assert sd_auto == pytest.approx(math.sqrt(tau**2 + 1 / (4 / tau**2 + 0.7**-2)))
    assert mu_auto == pytest.approx((4 / tau**2 * vals.mean() + base[0] / 0.7**2) / (4 / tau**2 + 0.7**-2))
    _, sd_floor = _pooled_prior(np.zeros(4), None, base, "auto")
    assert sd_floor == pytest.approx(math.sqrt(POOL_SD_FLOOR**2 + 1 / (4 / POOL_SD_FLOOR**2 + 0.7**-2)))
    with pytest.raises(ValueError, match="pool"):
        _pooled_prior(vals, None, base, "bad")


def test_objective_weights() -> None:
    rng = np.random.default_rng(0)
    doms = ["a", "b", "c"]
    losses = [dict(zip(doms, rng.uniform(2, 4, 3))) for _ in range(8)]
    mean = [float(np.mean(list(r.values()))) for r in losses]
    assert objective_weights(mean, losses, doms) == pytest.approx({d: 1 / 3 for d in doms})
    w = {"a": 0.5, "b": 0.5, "c": 0.0}
    assert objective_weights([0.5 * r["a"] + 0.5 * r["b"] for r in losses], losses, doms) == pytest.approx(w)
    ppl = [float(np.mean(np.exp(list(r.values())))) for r in losses]
    assert objective_weights(ppl, losses, doms) is None
    assert objective_weights(mean[:2], losses[:2], doms) is None  # fewer runs than domains


def _study(land, objective):  # type: ignore[no-untyped-def]
    sampler = AutoScaleSampler(land.domains, list(BUDGETS), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=200)
    assert sampler.is_complete(study)
    return study


def test_results_use_the_transfer_law_when_per_domain_losses_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_autoscale import fits

    calls: list[dict] = []
    fit = fits.fit_transfer

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return fit(*args, **kwargs)

    monkeypatch.setattr(fits, "fit_transfer", spy)
    land = transfer(4, seed=1)
    result = AutoScaleResult.from_study(_study(land, land.objective()))
    assert isinstance(result.law, TransferLaw)
    # The default law pools the exponents across validation domains (results.TRANSFER_POOL).
    assert calls and all(c.get("pool_exponents") == "auto" and c.get("forms") == "auto" for c in calls)
    assert result.law.forms == ("power",) * land.m  # chosen by held-out error (results.TRANSFER_FORMS)
    joint = result.extrapolate(TARGET)
    assert _share(land, joint.allocation) >= 0.95
    sep = result.extrapolate(TARGET, method="separable")
    assert set(sep.weights) == set(land.domains)
    assert result.extrapolate(TARGET, method="transfer").weights == pytest.approx(joint.weights)
    assert result.to_dict()["law"]["kind"] == "transfer"


def test_fallback_without_per_domain_losses() -> None:
    land = separable(3, seed=0)

    def scalar(trial: optuna.Trial) -> float:
        return land.loss(suggest_mixture(trial, land.domains).allocation)

    result = AutoScaleResult.from_study(_study(land, scalar))
    assert isinstance(result.law, SeparableLaw)
    # The fallback law's own (in-box) optimum; the guard on top of it is tested below.
    assert _share(land, result.extrapolate(TARGET, guard=False).allocation) >= 0.95
    with pytest.raises(ValueError, match="loss_<domain>"):
        result.extrapolate(TARGET, method="transfer")
    with pytest.raises(ValueError, match="method must be"):
        result.extrapolate(TARGET, method="bogus")


def test_guarded_default_follows_a_noiseless_fallback_law() -> None:
    """A noiseless scalar-objective study: the guarded default takes the fallback law's gain (the two-budget design's
    evidence trusts the law's change with scale beyond one posterior sd, z = 1)."""
    land = separable(3, seed=0)

    def scalar(trial: optuna.Trial) -> float:
        return land.loss(suggest_mixture(trial, land.domains).allocation)

    result = AutoScaleResult.from_study(_study(land, scalar))
    assert _share(land, result.extrapolate(TARGET).allocation) >= 0.95


def test_fallback_when_the_objective_is_not_a_weighting_of_the_losses() -> None:
    land = separable(3, seed=1)
    result = AutoScaleResult.from_study(_study(land, land.objective(metric="mean_ppl")))
    assert isinstance(result.law, SeparableLaw)


def test_bad_inputs() -> None:
    land = transfer(3, seed=0)
    obs = _design(land)
    a, losses, g = obs[0]
    with pytest.raises(TypeError, match="non-empty sequence"):
        fit_transfer([])
    with pytest.raises(TypeError, match="triple"):
        fit_transfer([(a, losses)])
    with pytest.raises(ValueError, match="name exactly the domains"):
        fit_transfer([(a, {"d0": 1.0}, g)] + obs[1:])
    with pytest.raises(TypeError, match="mapping domain -> loss"):
        fit_transfer([(a, 3.0, g)] + obs[1:])
    with pytest.raises(ValueError, match="finite"):
        fit_transfer([(a, {**losses, "d1": math.nan}, g)] + obs[1:])
    with pytest.raises(ValueError, match="at least 2 domains"):
        fit_transfer([({"x": 1.0}, {"x": 1.0}, "g")])
    with pytest.raises(ValueError, match="never change within a group"):
        fit_transfer([(a, losses, g), (a, losses, g)])
    with pytest.raises(ValueError, match="weights"):
        fit_transfer(obs, weights={"d0": 1.0})
    with pytest.raises(ValueError, match="weights must be >= 0"):
        fit_transfer(obs, weights={"d0": -1.0, "d1": 1.0, "d2": 1.0})
    with pytest.raises(ValueError, match="noise"):
        fit_transfer(obs, noise=-1.0)
    law = fit_transfer(obs)
    with pytest.raises(ValueError, match="Unknown group"):
        law.predict(a, group="nope")
    with pytest.raises(ValueError, match="Infeasible bounds"):
        law.optimal_allocation(TARGET, lower=TARGET)
    with pytest.raises(ValueError, match="total must be > 0"):
        law.optimal_allocation(-1.0)
