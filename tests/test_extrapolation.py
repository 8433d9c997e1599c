"""Tests of the paper's scale extrapolation (``optuna_autoscale.extrapolation``)."""

from __future__ import annotations

import math

from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from optuna_autoscale import Mixture
from optuna_autoscale.extrapolation import extrapolate
from optuna_autoscale.extrapolation import fit_path
from optuna_autoscale.simulate import SeparableLandscape


def _names(m: int) -> list[str]:
    return [f"d{i}" for i in range(m)]


@st.composite
def two_optima(draw: st.DrawFn) -> tuple[dict[str, float], dict[str, float]]:
    """Two positive allocations whose total grows (ratios may be below 1)."""
    m = draw(st.integers(2, 7))
    log_n1 = draw(st.lists(st.floats(math.log(1e5), math.log(1e9)), min_size=m, max_size=m))
    log_r = draw(st.lists(st.floats(math.log(0.3), math.log(20.0)), min_size=m, max_size=m))
    n1 = np.exp(np.array(log_n1))
    n2 = n1 * np.exp(np.array(log_r))
    assume(n2.sum() > n1.sum() * 1.01)
    names = _names(m)
    return dict(zip(names, n1.tolist())), dict(zip(names, n2.tolist()))


def _close(a: dict[str, float], b: dict[str, float], rel: float) -> None:
    assert list(a) == list(b)
    for d in a:
        assert a[d] == pytest.approx(b[d], rel=rel, abs=1e-12 * max(b.values())), d


@settings(max_examples=150, deadline=None)
@given(two_optima())
def test_two_budgets_reproduce_inputs_and_paper_rule(pair) -> None:
    n1, n2 = pair
    b1, b2 = sum(n1.values()), sum(n2.values())
    _close(extrapolate([n1, n2], b1), n1, 1e-9)
    _close(extrapolate([n2, n1], b2), n2, 1e-9)  # order of the optima does not matter
    paper = {d: n2[d] ** 2 / n1[d] for d in n1}
    out = extrapolate([n1, n2], sum(paper.values()))
    _close(out, paper, 1e-9)
    assert sum(out.values()) == pytest.approx(sum(paper.values()), rel=1e-12)


@settings(max_examples=150, deadline=None)
@given(two_optima(), st.floats(-1.0, 4.0))
def test_result_sums_to_target_or_clear_error(pair, log10_factor) -> None:
    n1, n2 = pair
    target = sum(n1.values()) * 10.0**log10_factor
    try:
        out = extrapolate([n1, n2], target)
    except ValueError as e:
        # Only a target below the path's reach may fail, never one above the larger budget.
        assert "No point on the extrapolation path" in str(e)
        assert target < sum(n2.values())
        return
    assert sum(out.values()) == pytest.approx(target, rel=1e-12)
    assert all(v >= 0 for v in out.values())
    # The result lies on the path: log N_i = log N1_i + s log r_i with one s for all domains.
    # (Domains whose tokens underflow to 0 far down the path are skipped.)
    s = [
        math.log(out[d] / n1[d]) / math.log(n2[d] / n1[d])
        for d in n1
        if abs(math.log(n2[d] / n1[d])) > 1e-3 and out[d] > 1e-300
    ]
    if len(s) >= 2:
        assert np.ptp(s) < 1e-6 * max(1.0, np.max(np.abs(s)))


@settings(max_examples=150, deadline=None)
@given(two_optima(), st.floats(0.0, 3.0), st.lists(st.floats(0.05, 1.0), min_size=7, max_size=7))
def test_caps_respected_and_excess_moves_to_uncapped(pair, log10_factor, cap_fracs) -> None:
    n1, n2 = pair
    target = sum(n2.values()) * 10.0**log10_factor
    free = extrapolate([n1, n2], target)
    caps = {d: free[d] * f for d, f in zip(free, cap_fracs)}
    if sum(caps.values()) < target:
        with pytest.raises(ValueError, match="Infeasible caps"):
            extrapolate([n1, n2], target, caps)
        return
    out = extrapolate([n1, n2], target, caps)
    assert sum(out.values()) == pytest.approx(target, rel=1e-9)
    for d in out:
        assert out[d] <= caps[d] * (1 + 1e-9)
        assert out[d] >= 0
    capped = [d for d in out if caps[d] < free[d]]
    if capped and len(capped) < len(out):
        # Some uncapped domain took up the excess.
        assert any(out[d] > free[d] * (1 + 1e-9) for d in out if d not in capped)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(3, 5),
    st.data(),
)
def test_rank1_path_reproduced_exactly(m, k, data) -> None:
    a = np.array(data.draw(st.lists(st.floats(math.log(1e6), math.log(1e8)), min_size=m, max_size=m)))
    b = np.array(data.draw(st.lists(st.floats(0.1, 2.0), min_size=m, max_size=m)))
    steps = data.draw(st.lists(st.floats(0.2, 1.5), min_size=k - 1, max_size=k - 1))
    t = np.concatenate([[0.0], np.cumsum(steps)])
    optima = [dict(zip(_names(m), np.exp(a + b * tj).tolist())) for tj in t]
    path = fit_path(optima[::-1])
    assert path.residual < 1e-9
    np.testing.assert_allclose(path.t, (t - t[0]) / (t[-1] - t[0]), atol=1e-9)
    for opt in optima:
        _close(extrapolate(optima, sum(opt.values())), opt, 1e-7)
    beyond = np.exp(a + b * (t[-1] + 1.0))
    _close(extrapolate(optima, float(beyond.sum())), dict(zip(_names(m), beyond.tolist())), 1e-7)


def test_rank1_least_squares_with_noise() -> None:
    rng = np.random.default_rng(0)
    m, k = 6, 5
    a = rng.uniform(14, 17, m)
    b = rng.uniform(0.3, 1.5, m)
    t = np.linspace(0, 1, k)
    logs = a[:, None] + b[:, None] * t + rng.normal(0, 0.01, (m, k))
    optima = [dict(zip(_names(m), np.exp(logs[:, j]).tolist())) for j in range(k)]
    path = fit_path(optima)
    assert 0 < path.residual < 0.02
    np.testing.assert_allclose(path.t, t, atol=0.05)
    out = extrapolate(optima, float(np.exp(a + b * 3.0).sum()))
    truth = np.exp(a + b * 3.0)
    np.testing.assert_allclose([out[d] for d in _names(m)], truth, rtol=0.1)


def test_paper_rule_is_exact_on_offset_free_power_laws() -> None:
    # For L = sum beta_i N_i^-gamma_i the optima lie exactly on the path (the paper's premise).
    land = SeparableLandscape(
        ("a", "b", "c", "d"),
        (2.0, 2.0, 2.0, 2.0),
        (3e2, 8e2, 1.5e2, 5e2),
        (0.0, 0.0, 0.0, 0.0),
        (0.3, 0.45, 0.25, 0.4),
    )
    o1, o2, o3 = land.oracle(1e8), land.oracle(4e8), land.oracle(4e9)
    out = extrapolate([o1, o2], 4e9)
    for d in land.domains:
        assert out[d] == pytest.approx(o3[d], rel=1e-4)
    # Three budgets: the rank-1 path is exact too.
    out3 = extrapolate([o1, o2, land.oracle(1.5e9)], 4e10)
    o4 = land.oracle(4e10)
    for d in land.domains:
        assert out3[d] == pytest.approx(o4[d], rel=1e-4)
    # With a binding cap the water-filling gives the capped optimum of the same law.
    caps = {"c": 0.5 * o3["c"]}
    capped = extrapolate([o1, o2], 4e9, caps)
    exact = land.oracle(4e9, upper=caps)
    for d in land.domains:
        assert capped[d] == pytest.approx(exact[d], rel=1e-4)
    assert land.true_loss(capped) == pytest.approx(land.true_loss(exact), rel=1e-9)


def test_authors_notebook_numbers() -> None:
    # The authors' AutoScale example: 0.3B and 1.2B optima of GPT-2 Large -> next scale ~5B.
    doms = ["cc", "github", "books", "wiki", "c4", "se", "arxiv"]
    n03 = np.array([1.55818971, 0.2, 1.1645966, 1.42333261, 1.49550525, 0.68184781, 0.47652801]) / 7 * 0.3
    n12 = np.array([1.63121445, 0.2, 1.30180479, 1.21425702, 1.83266187, 0.62006189, 0.2]) / 7 * 1.2
    nnext = n12 * n12 / n03
    pinned = {"github": True, "arxiv": True}
    out = extrapolate([dict(zip(doms, n03)), dict(zip(doms, n12))], float(nnext.sum()), pinned=pinned)
    np.testing.assert_allclose([out[d] for d in doms], nnext, rtol=1e-9)
    np.testing.assert_allclose(float(nnext.sum()), 5.000487243200733, rtol=1e-9)


def test_zero_domains() -> None:
    n1 = {"a": 10.0, "b": 10.0, "c": 5.0, "d": 0.0, "e": 0.0}
    n2 = {"a": 30.0, "b": 20.0, "c": 0.0, "d": 10.0, "e": 0.0}
    path = fit_path([n1, n2])
    assert path.zero == ("c", "e")
    assert path.share_held == {"d": pytest.approx(10.0 / 60.0)}
    out = extrapolate([n1, n2], 600.0)
    assert out["c"] == 0.0 and out["e"] == 0.0
    assert out["d"] == pytest.approx(100.0)  # keeps its share at the largest budget
    assert sum(out.values()) == pytest.approx(600.0)
    assert out["a"] / n2["a"] > out["b"] / n2["b"]  # a grows faster than b, as measured
    _close(extrapolate([n1, n2], 60.0), n2, 1e-9)
    # A zero domain cannot absorb the excess from caps.
    with pytest.raises(ValueError, match="Infeasible caps"):
        extrapolate([n1, n2], 600.0, caps={"a": 100.0, "b": 100.0, "d": 100.0})
    # No domain on a path at all.
    with pytest.raises(ValueError, match="No domain has tokens at every budget"):
        extrapolate([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 3.0}], 10.0)


def test_pinned_domain_does_not_bend_the_shared_t() -> None:
    m, k = 5, 4
    rng = np.random.default_rng(1)
    a = rng.uniform(15, 17, m)
    b = rng.uniform(0.5, 1.5, m)
    t = np.array([0.0, 0.3, 0.55, 1.0])
    logs = a[:, None] + b[:, None] * t
    logs[0] = np.log(0.2 * np.exp(logs).sum(axis=0) / m)  # domain 0 sits on a 0.2x-share bound
    optima = [dict(zip(_names(m), np.exp(logs[:, j]).tolist())) for j in range(k)]
    free_fit = fit_path(optima)
    pinned_fit = fit_path(optima, pinned={"d0": True})
    assert pinned_fit.pinned == ("d0",)
    # The shared t comes from the unpinned domains only, where the law holds exactly.
    np.testing.assert_allclose(pinned_fit.t, t, atol=1e-9)
    assert np.max(np.abs(np.array(free_fit.t) - t)) > 1e-4
    # The pinned domain keeps its measured growth per unit t.
    slope = pinned_fit.slope["d0"]
    expected = np.polyfit(t, logs[0], 1)[0]
    assert slope == pytest.approx(expected, rel=1e-9)
    # With two budgets the pinned flag keeps the measured ratio, as the authors' notebook does.
    two = [optima[0], optima[-1]]
    assert extrapolate(two, 1e9, pinned={"d0": True}) == extrapolate(two, 1e9)


def test_non_monotone_path_and_unreachable_target() -> None:
    a = {"x": 50.0, "y": 50.0}
    b = {"x": 150.0, "y": 40.0}
    out = extrapolate([a, b], 1e4)
    assert sum(out.values()) == pytest.approx(1e4)
    assert out["y"] < 40.0  # the shrinking domain keeps shrinking along the path
    with pytest.raises(ValueError, match="No point on the extrapolation path has a total of 20"):
        extrapolate([a, b], 20.0)


def test_accepts_mixtures() -> None:
    m1 = Mixture({"a": 0.5, "b": 0.5}, 100.0)
    m2 = Mixture({"a": 0.6, "b": 0.4}, 400.0)
    out = extrapolate([m1, m2], 400.0)
    assert out == pytest.approx({"a": 240.0, "b": 160.0})


def test_bad_inputs() -> None:
    n1, n2 = {"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}
    with pytest.raises(ValueError, match=">= 2 budgets"):
        extrapolate([n1], 10.0)
    with pytest.raises(TypeError, match="sequence"):
        extrapolate(n1, 10.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same domains"):
        extrapolate([n1, {"a": 3.0, "c": 4.0}], 10.0)
    with pytest.raises(ValueError, match="share the budget"):
        extrapolate([n1, {"a": 2.0, "b": 1.0}], 10.0)
    with pytest.raises(ValueError, match="finite and >= 0"):
        extrapolate([n1, {"a": -3.0, "b": 4.0}], 10.0)
    with pytest.raises(ValueError, match="positive"):
        extrapolate([n1, n2], 0.0)
    with pytest.raises(ValueError, match="positive"):
        extrapolate([n1, n2], math.inf)
    with pytest.raises(ValueError, match="unknown domains"):
        extrapolate([n1, n2], 10.0, caps={"z": 1.0})
    with pytest.raises(ValueError, match=">= 0 tokens"):
        extrapolate([n1, n2], 10.0, caps={"a": -1.0})
    with pytest.raises(ValueError, match="Infeasible caps"):
        extrapolate([n1, n2], 10.0, caps={"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match="unknown domains"):
        extrapolate([n1, n2], 10.0, pinned={"z": True})
    with pytest.raises(TypeError, match="mapping"):
        extrapolate([n1, [1.0, 2.0]], 10.0)  # type: ignore[list-item]
