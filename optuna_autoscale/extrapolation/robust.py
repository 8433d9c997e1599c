"""The robust default rule: the joint law's bounded optimum at the target, reached from an anchor by a lower confidence bound.

:class:`RobustAllocator` is what both joint laws' ``optimal_allocation`` run;
:func:`extrapolate_joint` applies it to a study's design (bounds, caps, the anchor).
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import TYPE_CHECKING
import warnings

import numpy as np

from optuna_autoscale._validation import bound_vector
from optuna_autoscale._validation import check_allocation
from optuna_autoscale._validation import check_value


if TYPE_CHECKING:
    from optuna_autoscale.design import Design
    from optuna_autoscale.laws import JointLaw
    from optuna_autoscale.mixture import Mixture


__all__ = [
    "RobustAllocator", "anchor_allocation", "extrapolate_joint", "project_box_total", "region_bounds", "target_upper",
]

def project_box_total(v: np.ndarray, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Scale ``v`` to ``total`` and, if that breaks the bounds, move it (Euclidean) into them."""
    x = v * (total / v.sum())
    if np.all(x >= lo) and np.all(x <= hi):
        return x

    def s(tau: float) -> float:
        return float(np.clip(x - tau, lo, hi).sum())

    a = float(np.min(x - np.where(np.isfinite(hi), hi, x + total))) - 1.0
    b = float(np.max(x - lo)) + 1.0
    for _ in range(200):
        mid = 0.5 * (a + b)
        if s(mid) > total:
            a = mid
        else:
            b = mid
    return np.clip(x - 0.5 * (a + b), lo, hi)


class RobustAllocator:
    """Bounded optimum and robust (lower-confidence-bound) shrinkage shared by the joint laws.

    A subclass provides ``domains``, ``budgets``, ``risk``, :meth:`_point` (the law's exact
    bounded optimum at a total), :meth:`_change` (posterior mean and sd of the loss change from
    the first of several allocations, linearised) and :meth:`_has_uncertainty`.
    """

    domains: tuple[str, ...]
    budgets: dict[str, float]
    risk: float
    _fit_name = "fit_separable"

    def _vec(self, allocation: Mapping[str, float]) -> np.ndarray:
        return check_allocation(allocation, self.domains, "allocation")

    def _point(self, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _change(self, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _has_uncertainty(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _bounds(
        self, total: float, lower: float | Mapping[str, float] | None, upper: float | Mapping[str, float] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = len(self.domains)
        lo = bound_vector(lower, self.domains, np.zeros(m), "lower")
        hi = bound_vector(upper, self.domains, np.full(m, np.inf), "upper")
        if np.any(~np.isfinite(lo)) or np.any(lo < 0) or np.any(np.isnan(hi)):
            raise ValueError(f"lower must be finite and >= 0 tokens, upper not NaN; got lower={lo}, upper={hi}.")
        if np.any(lo > hi):
            raise ValueError(f"lower > upper for {[d for d, a, b in zip(self.domains, lo, hi) if a > b]!r}.")
        if lo.sum() > total * (1 + 1e-12):
            raise ValueError(
                f"Infeasible bounds: the lower bounds sum to {lo.sum():.6g} tokens > total {total:.6g}; lower them."
            )
        if hi.sum() < total * (1 - 1e-12):
            raise ValueError(
                f"Infeasible bounds: the upper bounds sum to {hi.sum():.6g} tokens < total {total:.6g}; raise them."
            )
        return lo, hi

    def _robust_optimum(
        self,
        total: float,
        lower: float | Mapping[str, float] | None,
        upper: float | Mapping[str, float] | None,
        robust: bool,
        anchor: Mapping[str, float] | None,
        risk: float | None,
    ) -> dict[str, float]:
        """The point optimum, or (``robust``) the LCB step from the anchor toward it; see SeparableLaw."""
        total = check_value(total, "total")
        if total <= 0:
            raise ValueError(f"total must be > 0 tokens, got {total!r}.")
        lo, hi = self._bounds(total, lower, upper)
        point = self._point(total, lo, hi)
        if robust and not self._has_uncertainty():
            warnings.warn(
                "The joint law has no noise estimate (no spare degree of freedom and no noise= given), so the "
                "robust allocation cannot weigh the evidence; returning the law's point optimum. Add replicates, "
                f"multipliers or a budget, or pass noise= (e.g. the seed-to-seed sd of base runs) to {self._fit_name}.",
                UserWarning,
                stacklevel=3,
            )
        if not robust or not self._has_uncertainty():
            return dict(zip(self.domains, point.tolist()))
        kappa = self.risk if risk is None else float(risk)
        if not math.isfinite(kappa) or kappa < 0:
            raise ValueError(f"risk must be a finite number >= 0, got {risk!r}.")
        if anchor is None:
            bmax = max(self.budgets.values())
            lo_b = np.minimum(lo * bmax / total, bmax / len(self.domains))
            a_vec = self._point(bmax, lo_b, np.full(len(self.domains), np.inf))
        else:
            a_vec = self._vec(anchor)
            if a_vec.sum() <= 0:
                raise ValueError("anchor must have a positive total.")
        a_vec = project_box_total(a_vec, total, lo, hi)
        best = self._lcb_path(a_vec, point, kappa)
        best = np.clip(best, lo, hi)
        best *= total / best.sum()
        return dict(zip(self.domains, best.tolist()))

    def _lcb_path(self, a_vec: np.ndarray, b_vec: np.ndarray, kappa: float) -> np.ndarray:
        """On A + t (B - A): minimise the linearised posterior mean + kappa sd of the loss change from A."""
        ts = np.linspace(0.0, 1.0, 41)
        cands = a_vec[None, :] + ts[:, None] * (b_vec - a_vec)[None, :]
        d, sd = self._change(cands)
        return cands[int(np.argmin(d + kappa * sd))]


def target_upper(design: Design, caps: Mapping[str, float] | None = None) -> dict[str, float] | None:
    """The design's upper bounds joined with ``caps`` (tokens), or None when all are infinite."""
    hi = design.upper_bounds()
    if caps:
        for d, c in caps.items():
            hi[d] = min(hi[d], float(c))
    return hi if any(math.isfinite(v) for v in hi.values()) else None


def extrapolate_joint(
    design: Design,
    law: JointLaw,
    tokens: float,
    *,
    anchor: Mapping[str, float] | None = None,
    caps: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The default rule: the joint law's robust optimal allocation at ``tokens``, within the design's bounds and ``caps``."""
    return law.optimal_allocation(
        tokens,
        lower=design.lower_bounds(),
        upper=target_upper(design, caps),
        robust=True,
        anchor=None if anchor is None else {d: float(v) for d, v in anchor.items()},
    )


def anchor_allocation(design: Design, optima: Mapping[float, Mixture], tokens: float) -> dict[str, float] | None:
    """The largest budget's DDO optimum, rescaled to ``tokens`` (the joint law's shrinkage target)."""
    if not optima:
        return None
    top = optima[max(optima)]
    return {d: top.weights[d] * tokens for d in design.domains}


def region_bounds(
    domains: tuple[str, ...] | list[str],
    total: float,
    lower: Mapping[str, float],
    upper: Mapping[str, float] | None,
    lo_shares: np.ndarray,
    hi_shares: np.ndarray,
) -> tuple[dict[str, float], dict[str, float], bool]:
    """Token bounds at ``total`` joining ``lower`` / ``upper`` (tokens) with the tested region's shares.

    Returns ``(lower, upper, ok)``; when the region does not meet the bounds (infeasible), the bounds
    alone and ``ok=False``.
    """
    up = {d: math.inf for d in domains} if upper is None else dict(upper)
    blo = {d: max(float(lower[d]), float(lo_shares[i]) * total) for i, d in enumerate(domains)}
    bhi = {d: min(float(up[d]), float(hi_shares[i]) * total) for i, d in enumerate(domains)}
    ok = (sum(blo.values()) <= total * (1 - 1e-9) and sum(bhi.values()) >= total * (1 + 1e-9)
          and all(blo[d] <= bhi[d] for d in domains))
    return (blo, bhi, True) if ok else (dict(lower), up, False)
