from __future__ import annotations

import json
import math
from pathlib import Path
import warnings

import numpy as np
import pytest

from _autoscale_helpers import shared_data_dir
from optuna_autoscale.allocation import solve_multipliers
from optuna_autoscale.laws import DDOWarning
from optuna_autoscale.laws import fit_power_laws
from optuna_autoscale.laws import fit_separable
from optuna_autoscale.laws import PowerLaw


def _paper() -> dict:
    path = shared_data_dir() / "autoscale_gpt2_large_ddo_1.2B.json"
    if not path.exists():
        pytest.skip(f"shared paper data not found at {path}")
    return json.loads(path.read_text())


def _paper_obs(data: dict) -> tuple[list[tuple[dict[str, float], float]], dict[str, float]]:
    n = data["budget_tokens"]
    doms = data["domains"]
    base = {d: n / len(doms) for d in doms}
    obs = [({d: r["multipliers"][d] * n / len(doms) for d in doms}, r["mean_ppl"]) for r in data["runs"]]
    return obs, base


def test_reproduces_paper_fit_and_optimum() -> None:
    data = _paper()
    obs, base = _paper_obs(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DDOWarning)
        fit = fit_power_laws(obs, base)
    for d in data["domains"]:
        ref = data["reference_fit"]["params"][d]
        got = fit.params[d]
        np.testing.assert_allclose([got.a, got.b, got.c], ref, rtol=1e-3)
        assert fit.residuals[d] is None  # three points: exact interpolation
        assert fit.multipliers[d] == (0.2, 1.0, 3.0)
    assert fit.warnings == ()
    assert fit.base_value == pytest.approx(data["runs"][0]["mean_ppl"])
    ref_opt = data["reference_optimum"]["multipliers"]
    opt = fit.optimal_multipliers()  # default lower bound: the smallest multiplier tested (0.2)
    for d in data["domains"]:
        assert opt[d] == pytest.approx(ref_opt[d], abs=1e-3)
    opt0 = fit.optimal_multipliers(lower=0.0)
    note = {"common_crawl": 1.6664, "github": 0.0, "books": 1.3081, "wikipedia": 1.2079, "c4": 1.8956,
            "stackexchange": 0.6632, "arxiv": 0.2587}
    for d in data["domains"]:
        assert opt0[d] == pytest.approx(note[d], abs=1.5e-3)
    alloc = fit.optimal_allocation()
    assert sum(alloc.values()) == pytest.approx(data["budget_tokens"], rel=1e-12)
    for d in data["domains"]:
        assert alloc[d] == pytest.approx(ref_opt[d] * base[d], rel=1e-3, abs=1e-3 * base[d])
    json.dumps(fit.to_dict())


def _ddo_obs(f, base: dict[str, float], mults=(0.2, 3.0)) -> list[tuple[dict[str, float], float]]:
    obs = [(dict(base), f(base))]
    for d in base:
        for x in mults:
            a = dict(base)
            a[d] = base[d] * x
            obs.append((a, f(a)))
    return obs


def _true_ddo(params: dict[str, tuple[float, float]], base: dict[str, float], value: float = 3.0):
    # In the paper's model class: changing one domain gives y = (x + a)^-b + c exactly
    # (x = tokens / base tokens, y = objective / base objective).
    return lambda alloc: value * (
        1.0 + sum((alloc[d] / base[d] + a) ** -b - (1.0 + a) ** -b for d, (a, b) in params.items())
    )


def test_nonuniform_base_and_more_points() -> None:
    base = {"x": 2e6, "y": 5e6, "z": 3e6}
    true = {"x": (1.5, 1.2), "y": (3.0, 0.8), "z": (2.0, 2.0)}
    f = _true_ddo(true, base)
    fit = fit_power_laws(_ddo_obs(f, base, (0.2, 0.5, 2.0, 3.0)), base)
    v0 = f(base)
    for d, (a, b) in true.items():
        law = fit.params[d]
        xs = np.array([0.2, 0.5, 1.0, 2.0, 3.0])
        # the fitted law reproduces y = objective / base objective on the tested range
        ys = np.array([f({**base, d: base[d] * x}) / v0 for x in xs])
        np.testing.assert_allclose(law(xs), ys, atol=1e-7)
        assert fit.residuals[d] is not None and fit.residuals[d] < 1e-7
        assert (law.a, law.b) == pytest.approx((a, b), rel=1e-4)
    p = np.array(list(base.values())) / sum(base.values())
    expect = solve_multipliers([fit.params[d].a for d in base], [fit.params[d].b for d in base], p, lower=0.2)
    got = fit.optimal_multipliers()
    np.testing.assert_allclose([got[d] for d in base], expect, rtol=1e-9)
    assert float(p @ np.array([got[d] for d in base])) == pytest.approx(1.0)


def test_replicates_are_averaged() -> None:
    base = {"x": 1e6, "y": 1e6}
    f = _true_ddo({"x": (1.0, 1.0), "y": (2.0, 1.5)}, base)
    obs = _ddo_obs(f, base)
    v = f(base)
    obs += [(dict(base), v + 0.01), (dict(base), v - 0.01)]
    a = {"x": 3e6, "y": 1e6}
    obs += [(a, f(a) + 0.02), (a, f(a) - 0.02)]
    fit = fit_power_laws(obs, base)
    assert fit.base_value == pytest.approx(v)
    assert fit.noise == pytest.approx(0.01 / v, rel=1e-9)
    assert fit.params["x"](3.0) == pytest.approx(f(a) / v, rel=1e-9)


def test_observation_changing_two_domains_is_named() -> None:
    base = {"x": 1e6, "y": 1e6, "z": 1e6}
    obs = _ddo_obs(_true_ddo({d: (1.0, 1.0) for d in base}, base), base)
    obs.append(({"x": 2e6, "y": 2e6, "z": 1e6}, 1.0))
    with pytest.raises(ValueError, match=r"observation 7 .* changes 2 domains"):
        fit_power_laws(obs, base)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda obs: obs[1:], "No observation equals the base"),
        (lambda obs: [o for o in obs if o[0]["x"] != 3e6], "needs at least two"),
        (lambda obs: obs + [({"x": 1e6, "q": 1e6}, 1.0)], "exactly the domains"),
        (lambda obs: obs + [({"x": 1e6, "y": 2e6}, math.nan)], "finite"),
    ],
)
def test_bad_observations(mutate, match: str) -> None:
    base = {"x": 1e6, "y": 1e6}
    obs = _ddo_obs(_true_ddo({d: (1.0, 1.0) for d in base}, base), base)
    with pytest.raises(ValueError, match=match):
        fit_power_laws(mutate(obs), base)


def test_bad_base() -> None:
    with pytest.raises(ValueError, match="base tokens > 0"):
        fit_power_laws([({"x": 0.0, "y": 1.0}, 1.0)], {"x": 0.0, "y": 1.0})


def test_flat_and_wrong_way_domains_warn() -> None:
    base = {"x": 1e6, "y": 1e6, "z": 1e6}

    def f(alloc: dict[str, float]) -> float:
        x, y, z = (alloc[d] / 1e6 for d in ("x", "y", "z"))
        return 3.0 + (x + 1.0) ** -1.0 + 0.0 * y + 0.05 * math.log(z)  # y flat, z wrong way

    with pytest.warns(DDOWarning) as rec:
        fit = fit_power_laws(_ddo_obs(f, base), base)
    msgs = [str(w.message) for w in rec]
    assert any("'y'" in msg and "flat" in msg for msg in msgs)
    assert any("'z'" in msg and "wrong-way" in msg for msg in msgs)
    assert len(fit.warnings) == 2
    assert fit.params["z"].b > 0 and fit.params["y"].b > 0
    opt = fit.optimal_multipliers()
    assert opt["z"] == pytest.approx(0.2)  # pushed to its lower bound
    assert opt["x"] > 1.0


def test_ddo_warnings_grouped_once_per_fit_without_source_line() -> None:
    """One DDOWarning per fit, in words (the budget and every domain's note), no source line."""
    import subprocess
    import sys

    base = {"x": 1e6, "y": 1e6, "z": 1e6}

    def f(alloc: dict[str, float]) -> float:
        x, y, z = (alloc[d] / 1e6 for d in ("x", "y", "z"))
        return 3.0 + (x + 1.0) ** -1.0 + 0.0 * y + 0.05 * math.log(z)

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = fit_power_laws(_ddo_obs(f, base), base)
    ddo = [w for w in rec if issubclass(w.category, DDOWarning)]
    assert len(ddo) == 1
    msg = str(ddo[0].message)
    assert msg.startswith("DDO fit at 3e6 tokens: 2 questionable domains")
    assert all(note in msg for note in fit.warnings)
    w = ddo[0]
    shown = warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
    assert "fit_power_laws" not in shown and "warn" not in shown.replace("DDOWarning", "")
    # In a fresh process with Python's default filters, refitting the same data warns once.
    code = (
        "import math, sys; sys.path.insert(0, 'tests'); from test_laws import _ddo_obs; "
        "from optuna_autoscale.laws import fit_power_laws\n"
        "base = {'x': 1e6, 'y': 1e6, 'z': 1e6}\n"
        "f = lambda a: 3.0 + (a['x'] / 1e6 + 1.0) ** -1.0 + 0.05 * math.log(a['z'] / 1e6)\n"
        "import warnings\n"
        "for _ in range(3):\n"
        "    fit_power_laws(_ddo_obs(f, base), base)\n"
        "    with warnings.catch_warnings():\n"  # other code changing the filters resets Python's registry
        "        warnings.simplefilter('ignore', RuntimeWarning)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("DDOWarning") == 1, proc.stderr
    assert "warn" not in proc.stderr.replace("DDOWarning", ""), proc.stderr


def test_power_law_call() -> None:
    law = PowerLaw(1.0, 2.0, 0.5)
    assert law(1.0) == pytest.approx(0.75)
    np.testing.assert_allclose(law(np.array([0.0, 1.0])), [1.5, 0.75])


# ----------------------------------------------------------------------------- joint law


def _design(loss, domains, budget: float, group: str, mults=(0.2, 3.0)):
    base = {d: budget / len(domains) for d in domains}
    obs = [(base, loss(base), group)]
    for d in domains:
        for x in mults:
            a = dict(base)
            a[d] *= x
            obs.append((a, loss(a), group))
    return obs


TRUE = {"a": (40.0, 2e7, 0.35), "b": (900.0, 6e7, 0.55), "c": (150.0, 1e7, 0.45), "d": (3000.0, 4e7, 0.7)}


def _true_loss(alloc: dict[str, float]) -> float:
    return 2.0 + sum(beta * (alloc[d] + n0) ** -g for d, (beta, n0, g) in TRUE.items())


def _optimum(total: float) -> np.ndarray:
    from optuna_autoscale.allocation import solve_separable

    p = np.array(list(TRUE.values()))
    return solve_separable(p[:, 0] * total ** -p[:, 2], p[:, 1] / total, p[:, 2], 1.0) * total


def test_joint_law_recovers_noiseless_optimum_at_10x() -> None:
    doms = tuple(TRUE)
    obs = _design(_true_loss, doms, 1e8, "g1") + _design(_true_loss, doms, 4e8, "g2")
    law = fit_separable(obs)
    assert law.dof == len(obs) - 3 * len(doms) - 2
    target = 4e9
    got = np.array([law.optimal_allocation(target, robust=False)[d] for d in doms])
    opt = _optimum(target)
    uni = {d: target / len(doms) for d in doms}
    gain = (_true_loss(uni) - _true_loss(dict(zip(doms, got)))) / (_true_loss(uni) - _true_loss(dict(zip(doms, opt))))
    assert gain > 0.99
    robust = law.optimal_allocation(target)
    assert sum(robust.values()) == pytest.approx(target)
    gain_r = (_true_loss(uni) - _true_loss(robust)) / (_true_loss(uni) - _true_loss(dict(zip(doms, opt))))
    assert gain_r > 0.98
    # optimal_allocation(total, lower=None, upper=None): the bounds may be passed by position.
    lower = {d: 0.2 * target / len(doms) for d in doms}
    upper = {d: 0.3 * target for d in doms}
    by_position = law.optimal_allocation(target, lower, upper)
    assert by_position == law.optimal_allocation(target, lower=lower, upper=upper)
    assert all(lower[d] * (1 - 1e-9) <= by_position[d] <= upper[d] * (1 + 1e-9) for d in doms)
    # predictions of differences, within and beyond the data
    a1, a2 = dict(zip(doms, opt)), uni
    assert law.predict(a1) - law.predict(a2) == pytest.approx(_true_loss(a1) - _true_loss(a2), rel=0.05)
    json.dumps(law.to_dict())


def test_joint_law_any_number_of_groups_shared_gamma_and_pairs() -> None:
    doms = tuple(TRUE)
    obs = (
        _design(_true_loss, doms, 5e7, "g0")
        + _design(_true_loss, doms, 1e8, "g1")
        + _design(_true_loss, doms, 4e8, "g2", (0.2, 0.5, 2.0, 3.0))
    )
    law = fit_separable(obs, shared_gamma=True)
    assert set(law.offsets) == {"g0", "g1", "g2"}
    gammas = {law.params[d]["gamma"] for d in doms}
    assert len(gammas) == 1
    assert law.budgets["g2"] == pytest.approx(4e8)
    pairs = [(a, v) for a, v, _ in _design(_true_loss, doms, 1e8, "x")]
    law2 = fit_separable(pairs)  # one group
    assert list(law2.offsets) == ["default"]


def test_joint_law_noise_stderr_and_robust_shrinkage() -> None:
    doms = tuple(TRUE)
    rng = np.random.default_rng(0)
    sigma = 0.003
    obs = []
    for k, budget in enumerate((1e8, 4e8, 1e8, 4e8)):
        seed_shift = rng.normal(0, 0.05)
        obs += [(a, v + seed_shift + rng.normal(0, sigma), g) for a, v, g in _design(_true_loss, doms, budget, f"g{k}")]
    law = fit_separable(obs, n_bootstrap=300, seed=1)
    assert law.noise is not None and 0.3 * sigma < law.noise < 3 * sigma
    assert law.stderr is not None
    assert all(np.isfinite(law.stderr[d]["gamma"]) and law.stderr[d]["gamma"] > 0 for d in doms)
    target = 4e9
    anchor = {d: 1.0 for d in doms}  # uniform shares
    robust = np.array([law.optimal_allocation(target, anchor=anchor)[d] for d in doms])
    # With an extreme risk aversion the robust choice stays at the anchor (rescaled to the target).
    stay = np.array([law.optimal_allocation(target, anchor=anchor, risk=1e6)[d] for d in doms])
    np.testing.assert_allclose(stay, target / len(doms), rtol=1e-9)
    # With risk 0 it moves all the way to the expected-loss optimum; the default lies between.
    full = np.array([law.optimal_allocation(target, anchor=anchor, risk=0.0)[d] for d in doms])
    uni = np.full(len(doms), target / len(doms))
    t = np.dot(robust - uni, full - uni) / np.dot(full - uni, full - uni)
    assert -1e-9 <= t <= 1 + 1e-9
    np.testing.assert_allclose(robust, uni + t * (full - uni), rtol=1e-6, atol=1e-6 * target)


def test_joint_law_bounds_and_errors() -> None:
    doms = tuple(TRUE)
    obs = _design(_true_loss, doms, 1e8, "g1") + _design(_true_loss, doms, 4e8, "g2")
    law = fit_separable(obs, n_bootstrap=50)
    upper = {"b": 5e8}
    alloc = law.optimal_allocation(4e9, upper=upper, lower=1e8)
    assert alloc["b"] <= 5e8 * (1 + 1e-12)
    assert min(alloc.values()) >= 1e8 * (1 - 1e-12)
    assert sum(alloc.values()) == pytest.approx(4e9)
    with pytest.raises(ValueError, match="Infeasible"):
        law.optimal_allocation(4e9, lower=2e9)
    with pytest.raises(ValueError, match="Unknown group"):
        law.predict(obs[0][0], group="nope")
    with pytest.raises(ValueError, match="never change within a group"):
        fit_separable([({"a": 1.0, "b": 2.0}, 1.0, "g"), ({"a": 1.0, "b": 3.0}, 0.9, "g")])
    with pytest.raises(TypeError, match="triples"):
        fit_separable([])
    with pytest.raises(ValueError, match="noise"):
        fit_separable(obs, noise=-1.0)


def test_joint_law_without_spare_dof_warns_and_returns_point_optimum() -> None:
    doms = tuple(TRUE)
    obs = _design(_true_loss, doms, 1e8, "g1")  # 9 runs, 12 parameters + 1 offset: no spare dof
    law = fit_separable(obs)
    assert law.dof < 0 and law.noise is None and law.stderr is None and law.covariance is None
    with pytest.warns(UserWarning, match="no noise estimate"):
        robust = law.optimal_allocation(1e9)
    assert robust == law.optimal_allocation(1e9, robust=False)
    # a known noise makes it usable
    law2 = fit_separable(obs, noise=0.01)
    assert law2.noise == 0.01 and law2.covariance is not None
