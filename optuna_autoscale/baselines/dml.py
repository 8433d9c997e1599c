"""Data Mixing Laws (Ye et al. 2024, arXiv 2403.16952).

Per validation domain ``i`` the loss of a model trained on mixture ``r`` (weights on the
simplex, one per training domain ``j``) is modelled as

    ``L_i(r) = c_i + k_i * exp(sum_j t_ij * r_j)``

and the mixture is chosen by minimising an aggregate ``sum_i omega_i L_i(r)`` over the simplex.

Because ``sum_j r_j = 1``, adding a constant ``delta`` to every ``t_ij`` of a row and dividing
``k_i`` by ``exp(delta)`` leaves ``L_i`` unchanged. The fit removes that redundancy by
reporting each row of ``t`` with mean zero (the canonical form); the fitted *function* is the
same either way.

The fit is a variable projection: for fixed ``t_i`` the law is linear in ``(c_i, k_i)``, which
are solved exactly by least squares, and ``t_i`` is refined by ``scipy.optimize.least_squares``
from several starts (the log-linear fit at several trial offsets, and ``t = 0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
from typing import Any

import numpy as np
from scipy import optimize

from optuna_autoscale.laws.dml import centering_basis
from optuna_autoscale.laws.dml import EXP_CLIP
from optuna_autoscale.laws.dml import fit_exponential_law
from optuna_autoscale.mixture import validate_domains


__all__ = ["DataMixingLaw", "fit_data_mixing_law"]



def _as_weight_matrix(weights: Any, m: int | None, what: str = "weights") -> np.ndarray:
    arr = np.asarray(weights, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (runs x training domains), got shape {arr.shape}.")
    if m is not None and arr.shape[1] != m:
        raise ValueError(f"{what} has {arr.shape[1]} columns but the law has {m} training domains.")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{what} must be finite and non-negative (mixture weights).")
    sums = arr.sum(axis=1)
    if np.any(sums <= 0):
        raise ValueError(f"Every row of {what} needs a positive sum; got an all-zero mixture.")
    return arr / sums[:, None]


@dataclasses.dataclass(frozen=True)
class DataMixingLaw:
    """A fitted Data Mixing Law, one exponential law per validation domain.

    Attributes:
        domains: Training domains (the mixture's components, columns of ``t``).
        targets: Validation domains (rows of ``c``, ``k``, ``t``).
        c: Per-target offset (loss units), shape ``(T,)``.
        k: Per-target scale, shape ``(T,)``.
        t: Per-target, per-training-domain exponent coefficients, shape ``(T, m)``; rows have
            mean zero (canonical form).
        rmse: Per-target root-mean-square residual of the fit (loss units).
    """

    domains: tuple[str, ...]
    targets: tuple[str, ...]
    c: np.ndarray
    k: np.ndarray
    t: np.ndarray
    rmse: dict[str, float]

    def predict(self, weights: Any) -> np.ndarray:
        """Predicted per-target losses.

        Args:
            weights: One mixture (a mapping domain -> weight, or a length-``m`` vector in
                ``domains`` order) or a 2-D array of mixtures (rows). Rows are normalised.

        Returns:
            Shape ``(T,)`` for one mixture, ``(n, T)`` for a 2-D input.
        """
        single = isinstance(weights, Mapping) or np.ndim(weights) == 1
        if isinstance(weights, Mapping):
            missing = [d for d in self.domains if d not in weights]
            if missing:
                raise ValueError(f"The mixture has no weight for training domains {missing!r}.")
            weights = [float(weights[d]) for d in self.domains]
        r = _as_weight_matrix(weights, len(self.domains))
        z = np.clip(r @ self.t.T, -EXP_CLIP, EXP_CLIP)
        out = self.c[None, :] + self.k[None, :] * np.exp(z)
        return out[0] if single else out

    def _omega(self, target_weights: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
        if target_weights is None:
            return np.full(len(self.targets), 1.0 / len(self.targets))
        if isinstance(target_weights, Mapping):
            unknown = [k for k in target_weights if k not in self.targets]
            if unknown:
                raise ValueError(f"target_weights names unknown validation domains {unknown!r}; known: {self.targets!r}.")
            om = np.array([float(target_weights.get(k, 0.0)) for k in self.targets])
        else:
            om = np.asarray(target_weights, dtype=float)
            if om.shape != (len(self.targets),):
                raise ValueError(f"target_weights needs {len(self.targets)} entries, got shape {om.shape}.")
        if not np.all(np.isfinite(om)) or np.any(om < 0) or om.sum() <= 0:
            raise ValueError("target_weights must be finite, non-negative and not all zero.")
        return om

    def aggregate(self, weights: Any, target_weights: Mapping[str, float] | Sequence[float] | None = None) -> Any:
        """Weighted sum ``sum_i omega_i L_i(r)`` (equal ``omega`` by default) of predicted losses."""
        om = self._omega(target_weights)
        pred = self.predict(weights)
        return pred @ om if pred.ndim == 2 else float(pred @ om)

    def optimum(
        self,
        *,
        target_weights: Mapping[str, float] | Sequence[float] | None = None,
        lower: Mapping[str, float] | None = None,
        upper: Mapping[str, float] | None = None,
        n_starts: int = 8,
        seed: int | None = 0,
    ) -> dict[str, float]:
        """The mixture minimising the aggregate predicted loss over the simplex.

        SLSQP from ``n_starts`` starting points (uniform, then Dirichlet(1) draws); the best
        local optimum is returned.

        Args:
            target_weights: Weight ``omega_i`` per validation domain (default equal).
            lower: Optional lower bound on each training domain's weight.
            upper: Optional upper bound on each training domain's weight.
            n_starts: Number of SLSQP starts (>= 1).
            seed: Seed for the random starts.

        Returns:
            Domain -> weight.
        """
        om = self._omega(target_weights)
        m = len(self.domains)
        lo = np.array([float((lower or {}).get(d, 0.0)) for d in self.domains])
        hi = np.array([float((upper or {}).get(d, 1.0)) for d in self.domains])
        if np.any(lo < 0) or np.any(hi > 1) or np.any(lo > hi) or lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12:
            raise ValueError("Infeasible bounds: need 0 <= lower <= upper <= 1, sum(lower) <= 1 <= sum(upper).")
        if n_starts < 1:
            raise ValueError(f"n_starts must be >= 1, got {n_starts}.")

        ok = om > 0
        c, k, t, omk = self.c[ok], self.k[ok], self.t[ok], om[ok]

        def f(r: np.ndarray) -> float:
            z = np.clip(t @ r, -EXP_CLIP, EXP_CLIP)
            return float(omk @ (c + k * np.exp(z)))

        def g(r: np.ndarray) -> np.ndarray:
            z = np.clip(t @ r, -EXP_CLIP, EXP_CLIP)
            return (omk * k * np.exp(z)) @ t

        rng = np.random.default_rng(seed)
        starts = [np.clip(np.full(m, 1.0 / m), lo, hi)]
        starts += [np.clip(rng.dirichlet(np.ones(m)), lo, hi) for _ in range(n_starts - 1)]
        cons = [{"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones_like(r)}]
        best_x, best_f = None, np.inf
        for x0 in starts:
            x0 = x0 / x0.sum()
            res = optimize.minimize(
                f, x0, jac=g, method="SLSQP", bounds=list(zip(lo, hi)), constraints=cons,
                options={"maxiter": 500, "ftol": 1e-12},
            )
            x = np.clip(res.x, lo, hi)
            x = x / x.sum()
            fx = f(x)
            if fx < best_f:
                best_x, best_f = x, fx
        assert best_x is not None
        return dict(zip(self.domains, best_x.tolist()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {
            "domains": list(self.domains),
            "targets": list(self.targets),
            "c": self.c.tolist(),
            "k": self.k.tolist(),
            "t": self.t.tolist(),
            "rmse": dict(self.rmse),
        }


def fit_data_mixing_law(
    weights: Any,
    losses: Any,
    *,
    domains: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    n_starts: int = 4,
) -> DataMixingLaw:
    """Fit ``L_i(r) = c_i + k_i exp(sum_j t_ij r_j)`` per validation domain.

    Args:
        weights: Mixtures of the observed runs, shape ``(n, m)`` (rows are normalised).
        losses: Observed validation losses, shape ``(n,)`` for one target or ``(n, T)``.
        domains: Names of the ``m`` training domains (default ``d0, d1, ...``).
        targets: Names of the ``T`` validation domains (default ``v0, v1, ...``).
        n_starts: Starts of the nonlinear fit per target (>= 1).

    Returns:
        The fitted :class:`DataMixingLaw`.

    Raises:
        ValueError: on mismatched shapes, non-finite values or too few runs (need > m + 1).

    Example:
        .. code-block:: python

            import numpy as np
            from optuna_autoscale.baselines import fit_data_mixing_law

            rng = np.random.default_rng(0)
            r = rng.dirichlet(np.ones(3), size=40)
            y = 2.0 + 0.5 * np.exp(r @ np.array([-1.0, 0.5, 0.5]))
            law = fit_data_mixing_law(r, y, domains=["a", "b", "c"])
            assert abs(law.predict({"a": 1, "b": 0, "c": 0})[0] - (2 + 0.5 * np.exp(-1))) < 1e-4
    """
    r = _as_weight_matrix(weights, None)
    n, m = r.shape
    y = np.asarray(losses, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"losses must have shape ({n},) or ({n}, T) to match weights; got {y.shape}.")
    if not np.all(np.isfinite(y)):
        raise ValueError("losses must be finite; drop failed runs before fitting.")
    if n <= m + 1:
        raise ValueError(f"A Data Mixing Law over {m} domains has {m + 1} parameters per target; got only {n} runs.")
    doms = validate_domains(domains) if domains is not None else tuple(f"d{j}" for j in range(m))
    if len(doms) != m:
        raise ValueError(f"domains has {len(doms)} names but weights has {m} columns.")
    tgts = tuple(targets) if targets is not None else tuple(f"v{i}" for i in range(y.shape[1]))
    if len(tgts) != y.shape[1] or len(set(tgts)) != len(tgts):
        raise ValueError(f"targets must be {y.shape[1]} unique names (one per losses column).")
    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}.")
    basis = centering_basis(m)
    cs, ks, ts, rmse = [], [], [], {}
    for i, name in enumerate(tgts):
        c, k, t, e = fit_exponential_law(r, y[:, i], basis, n_starts)
        cs.append(c)
        ks.append(k)
        ts.append(t)
        rmse[name] = e
    return DataMixingLaw(doms, tgts, np.array(cs), np.array(ks), np.vstack(ts), rmse)
