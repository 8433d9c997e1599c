"""The Data Mixing Laws form (Ye et al. 2024): ``L(r) = c + k exp(sum_j t_j r_j)`` in the mixture weights ``r``.

The per-domain transfer law's exponential form starts from this fit and
:mod:`optuna_autoscale.baselines.dml` is built on it.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize


__all__ = ["EXP_CLIP", "centering_basis", "fit_exponential_law"]

EXP_CLIP = 60.0
"""Clip of the exponent (overflow guard)."""


def centering_basis(m: int) -> np.ndarray:
    """An orthonormal basis (m x m-1) of the mean-zero subspace of R^m."""
    q, _ = np.linalg.qr(np.eye(m) - 1.0 / m)
    return q[:, : m - 1]


def fit_exponential_law(r: np.ndarray, y: np.ndarray, basis: np.ndarray, n_starts: int) -> tuple[float, float, np.ndarray, float]:
    """Fit ``y = c + k exp(r @ t)`` (``t`` in the mean-zero subspace spanned by ``basis``) by variable projection.

    For fixed ``t`` the law is linear in ``(c, k)``, solved exactly; ``t`` is refined by
    ``scipy.optimize.least_squares`` from ``t = 0`` and log-linear fits at several trial offsets.

    Returns:
        ``(c, k, t, rmse)``.
    """
    n, m = r.shape

    def project(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = basis @ s
        e = np.exp(np.clip(r @ t, -EXP_CLIP, EXP_CLIP))
        a = np.column_stack([np.ones(n), e])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        return coef, y - a @ coef

    def resid(s: np.ndarray) -> np.ndarray:
        return project(s)[1]

    rb = r @ basis

    def jac(s: np.ndarray) -> np.ndarray:
        # Variable projection with Kaufman's Jacobian: the derivative of the residual with the
        # linear coefficients held at their optimum, projected off the span of the linear columns.
        # Exact at the minimum's first order; one QR instead of m lstsq solves for finite differences.
        z = r @ (basis @ s)
        e = np.exp(np.clip(z, -EXP_CLIP, EXP_CLIP))
        a = np.column_stack([np.ones(n), e])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        d = (coef[1] * e * (np.abs(z) < EXP_CLIP))[:, None] * rb
        q, _ = np.linalg.qr(a)
        return -(d - q @ (q.T @ d))

    starts = [np.zeros(m - 1)]
    span = float(y.max() - y.min()) or 1.0
    for frac in np.linspace(0.05, 1.0, max(n_starts - 1, 1)):
        c0 = float(y.min()) - frac * span
        lt, *_ = np.linalg.lstsq(r, np.log(y - c0), rcond=None)
        starts.append(basis.T @ lt)
    best: tuple[float, np.ndarray] | None = None
    for s0 in starts:
        try:
            res = optimize.least_squares(resid, s0, jac=jac, method="trf", x_scale="jac", max_nfev=200 * m)
        except (ValueError, np.linalg.LinAlgError):
            continue
        cost = float(np.sum(res.fun**2))
        if np.isfinite(cost) and (best is None or cost < best[0]):
            best = (cost, res.x)
    if best is None:
        raise RuntimeError("The Data Mixing Law fit failed from every start.")
    coef, res_vec = project(best[1])
    return float(coef[0]), float(coef[1]), basis @ best[1], float(np.sqrt(np.mean(res_vec**2)))
