from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest
from scipy.optimize import minimize

from _autoscale_helpers import shared_data_dir
from optuna_autoscale.allocation import separable_objective
from optuna_autoscale.allocation import solve_multipliers
from optuna_autoscale.allocation import solve_separable


def _data_file() -> Path:
    path = shared_data_dir() / "autoscale_gpt2_large_ddo_1.2B.json"
    if not path.exists():
        pytest.skip(f"shared paper data not found at {path}")
    return path


@st.composite
def problems(draw: st.DrawFn) -> dict[str, np.ndarray | float]:
    m = draw(st.integers(2, 6))
    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    coef = np.array([10 ** draw(floats(-2, 2)) for _ in range(m)])
    exponent = np.array([draw(floats(0.1, 3.0)) for _ in range(m)])
    offset = np.array([draw(floats(-0.5, 3.0)) for _ in range(m)])
    # Lower bounds keep x + offset >= 0.05 so the objective is finite on the feasible set.
    lower = np.array([max(0.0, -o + 0.05) + draw(floats(0.0, 0.5)) for o in offset])
    bounded = [draw(st.booleans()) for _ in range(m)]
    width = np.array([draw(floats(0.1, 5.0)) for _ in range(m)])
    upper = np.where(bounded, lower + width, np.inf)
    slack = draw(floats(0.05, 0.95))
    if np.all(np.isfinite(upper)):
        total = float(lower.sum() + slack * (upper.sum() - lower.sum()))
    else:
        total = float(lower.sum() + 10 * slack)
    return {"coef": coef, "offset": offset, "exponent": exponent, "lower": lower, "upper": upper, "total": total}


def _grad(x: np.ndarray, p: dict) -> np.ndarray:
    return -p["coef"] * p["exponent"] * (x + p["offset"]) ** (-p["exponent"] - 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**31 - 1))
def test_agrees_with_slsqp(p: dict, seed: int) -> None:
    x = solve_separable(p["coef"], p["offset"], p["exponent"], p["total"], p["lower"], p["upper"])
    ours = separable_objective(x, p["coef"], p["offset"], p["exponent"])
    assert np.isfinite(ours)
    rng = np.random.default_rng(seed)
    lo, hi, total = p["lower"], p["upper"], p["total"]
    hi_fin = np.where(np.isfinite(hi), hi, lo + 2 * total + 1.0)
    fun = lambda z: separable_objective(z, p["coef"], p["offset"], p["exponent"])  # noqa: E731
    for _ in range(3):
        # A random feasible start: a random point of the box, projected on the total.
        # A random feasible start: a random direction inside the box, scaled onto the total
        # (starts that overshoot an upper bound are skipped).
        z0 = lo + rng.uniform(0.01, 1.0, size=lo.size) * (hi_fin - lo)
        z0 = lo + (total - lo.sum()) / (z0 - lo).sum() * (z0 - lo)
        if np.any(z0 > hi):
            continue
        res = minimize(
            fun,
            z0,
            jac=lambda z: _grad(z, p),
            method="SLSQP",
            bounds=list(zip(lo, np.where(np.isfinite(hi), hi, None))),
            constraints=[{"type": "eq", "fun": lambda z: z.sum() - total, "jac": lambda z: np.ones_like(z)}],
            options={"maxiter": 1000, "ftol": 1e-14},
        )
        z = res.x
        feasible = abs(z.sum() - total) <= 1e-8 * total and np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9)
        if res.success and feasible:
            theirs = fun(z)
            # One-sided: ours is never worse than SLSQP by more than 1e-6 relative.
            assert ours <= theirs + 1e-6 * abs(theirs), (ours, theirs)


@settings(max_examples=80, deadline=None)
@given(problems())
def test_kkt_conditions(p: dict) -> None:
    x = solve_separable(p["coef"], p["offset"], p["exponent"], p["total"], p["lower"], p["upper"])
    lo, hi = p["lower"], p["upper"]
    assert x.sum() == pytest.approx(p["total"], rel=1e-12, abs=1e-12)
    assert np.all(x >= lo) and np.all(x <= hi)
    benefit = -_grad(x, p)  # marginal loss reduction per unit, > 0
    tol = 1e-9 * np.maximum(1.0, np.abs(x))
    at_lo = x <= lo + tol
    at_hi = x >= hi - tol
    free = ~at_lo & ~at_hi
    if np.any(free):
        lam = benefit[free]
        assert np.allclose(lam, lam.mean(), rtol=1e-6)
        lam_v = lam.mean()
        # At a lower bound the domain would not pay its way; at an upper bound it would want more.
        assert np.all(benefit[at_lo & ~at_hi] <= lam_v * (1 + 1e-6))
        assert np.all(benefit[at_hi & ~at_lo] >= lam_v * (1 - 1e-6))
    else:
        # Everything at a bound: some lambda must separate the lower-bound and upper-bound groups.
        if np.any(at_lo) and np.any(at_hi):
            assert benefit[at_lo & ~at_hi].max(initial=0.0) <= benefit[at_hi & ~at_lo].min(initial=np.inf) * (1 + 1e-6)


def test_closed_form_unbounded() -> None:
    # offset 0, equal exponents: x_i proportional to coef_i^(1/(e+1)).
    coef = np.array([1.0, 8.0, 27.0])
    x = solve_separable(coef, 0.0, 2.0, 6.0)
    np.testing.assert_allclose(x, [1.0, 2.0, 3.0], rtol=1e-12)


def test_large_token_scales_do_not_overflow() -> None:
    x = solve_separable([1e20, 1e25, 1e15], [1e8, 5e8, 2e8], [2.5, 3.0, 1.5], 4e10)
    assert x.sum() == pytest.approx(4e10, rel=1e-12)
    assert np.all(np.isfinite(x)) and np.all(x >= 0)


def test_zero_lower_bound_with_positive_offset() -> None:
    # A weak domain goes to exactly zero.
    x = solve_separable([1.0, 1e-6], [1.0, 1.0], [1.0, 1.0], 1.0, lower=0.0)
    assert x[1] == 0.0 and x[0] == pytest.approx(1.0)


def test_bounds_active_and_exact_totals() -> None:
    x = solve_separable([1.0, 1.0], 0.5, 1.0, 3.0, lower=[0.0, 0.0], upper=[1.0, 10.0])
    np.testing.assert_allclose(x, [1.0, 2.0])
    # total equal to sum of lower / upper bounds
    np.testing.assert_allclose(solve_separable([1.0, 1.0], 1.0, 1.0, 1.0, lower=[0.25, 0.75]), [0.25, 0.75])
    np.testing.assert_allclose(solve_separable([1.0, 1.0], 1.0, 1.0, 3.0, upper=[1.0, 2.0]), [1.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lower": [2.0, 2.0]}, "lower bounds sum"),
        ({"upper": [0.5, 0.5]}, "upper bounds sum"),
        ({"lower": [1.0, 0.0], "upper": [0.5, 5.0]}, "lower > upper"),
    ],
)
def test_infeasible_bounds(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        solve_separable([1.0, 1.0], 1.0, 1.0, 3.0, **kwargs)


@pytest.mark.parametrize(
    ("coef", "offset", "exponent", "total", "match"),
    [
        ([1.0, 0.0], 1.0, 1.0, 1.0, "coef must be positive"),
        ([1.0, 1.0], 1.0, [1.0, -1.0], 1.0, "exponent must be positive"),
        ([1.0, 1.0], 1.0, 1.0, 0.0, "total must be a positive"),
        ([1.0, 1.0], [-1.0, 1.0], 1.0, 1.0, "lower \\+ offset"),
        ([1.0, 1.0], 1.0, [1.0, 1.0, 1.0], 1.0, "one entry per domain"),
        ([1.0, math.nan], 1.0, 1.0, 1.0, "coef must be positive"),
    ],
)
def test_invalid_parameters(coef: list, offset: float, exponent: float, total: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        solve_separable(coef, offset, exponent, total)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_multipliers_nonuniform_base_kkt(m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 5.0, m)
    b = rng.uniform(0.3, 2.5, m)
    p = rng.dirichlet(np.ones(m))
    n = solve_multipliers(a, b, p, lower=0.0)
    assert float(p @ n) == pytest.approx(1.0, rel=1e-12)
    free = n > 1e-12
    # The paper's KKT form: n_i = (b_i / (lam p_i))^(1/(b_i+1)) - a_i on free coordinates.
    lam = b[free] * (n[free] + a[free]) ** (-b[free] - 1) / p[free]
    assert np.allclose(lam, lam[0], rtol=1e-6)
    if np.any(~free):
        assert np.all(b[~free] * a[~free] ** (-b[~free] - 1) / p[~free] <= lam[0] * (1 + 1e-6))


def test_multipliers_uniform_base_sums_to_m() -> None:
    n = solve_multipliers([1.0, 2.0, 3.0], [1.0, 1.5, 2.0], lower=0.2, upper=3.0)
    assert n.sum() == pytest.approx(3.0, rel=1e-12)


def test_multipliers_errors() -> None:
    with pytest.raises(ValueError, match="Base shares"):
        solve_multipliers([1.0, 1.0], [1.0, 1.0], [0.5, -0.5])
    with pytest.raises(ValueError, match="Exponents b"):
        solve_multipliers([1.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="lower \\+ a"):
        solve_multipliers([-0.5, 1.0], [1.0, 1.0], lower=0.2)


def test_reproduces_paper_reference_optimum() -> None:
    data = json.loads(_data_file().read_text())
    domains = data["domains"]
    params = np.array([data["reference_fit"]["params"][d] for d in domains])
    n = solve_multipliers(params[:, 0], params[:, 1], lower=0.2)
    ref = data["reference_optimum"]["multipliers"]
    np.testing.assert_allclose(n, [ref[d] for d in domains], atol=1e-3)
    # The note's lower bound 0 values (github goes to 0).
    n0 = solve_multipliers(params[:, 0], params[:, 1], lower=0.0)
    note = {"common_crawl": 1.6664, "github": 0.0, "books": 1.3081, "wikipedia": 1.2079, "c4": 1.8956,
            "stackexchange": 0.6632, "arxiv": 0.2587}
    np.testing.assert_allclose(n0, [note[d] for d in domains], atol=1e-3)
