"""The paper's extrapolation rule: follow the path of per-budget optima (log-affine in one scalar) to a target.

For a separable power law ``L = sum_i beta_i N_i^(-gamma_i)`` without offsets or active bounds,
the optimal ``log N_i*`` at every budget is affine in one shared scalar (the log of the
Lagrange multiplier). Given optimal allocations (tokens per domain) at several budgets, this
module fits that path and follows it to a target budget:

- **Two budgets** ``N^(1) < N^(2)``: ``N_i(s) = N_i^(1) (N_i^(2) / N_i^(1))^s``, and ``s`` solves
  ``sum_i N_i(s) = tokens``. ``s = 0`` and ``s = 1`` reproduce the inputs and ``s = 2`` is the
  paper's ``N^(3) = N^(2)^2 / N^(1)`` rule (the authors apply it step by step).
- **Three or more budgets**: a rank-1 least-squares fit ``log N_ij = A_i + B_i t_j`` with one
  shared ``t`` per budget (SVD of the row-centred log matrix), normalised so that ``t = 0`` at
  the smallest budget and ``t = 1`` at the largest; then ``t`` is solved at the target.

The total ``sum_i exp(A_i + B_i t)`` is convex in ``t``. When some ratio is below 1 it need not
be monotone: the root is taken on the monotone branch through the measured budget nearest the
target (in log tokens). When the path is monotone over the measured budgets (the usual case:
the total grows from ``t = 0`` to ``t = 1``) that is the branch containing ``t`` in ``[0, 1]``
and beyond, so every measured optimum is reproduced at its own budget. A target that no ``t``
on that branch reaches (below the branch's smallest total) is a clear error.

Special domains:

- A domain with zero tokens at the largest budget stays at zero.
- A domain with zero tokens at a smaller budget only has no finite ratio; it keeps its share
  of the total measured at the largest budget (never a division by zero).
- A *pinned* domain (one the DDO optimum put on a bound) keeps its measured ratio, as the
  authors' notebook does: with two budgets this is the rule above; with three or more it does
  not enter the estimate of the shared ``t`` and its own ``A_i, B_i`` are regressed on it.

Caps (maximum tokens per domain, e.g. unique tokens times allowed epochs) are applied by
water-filling: capped domains are held at their cap and the shared scalar is solved again for
the others, so the excess moves to the uncapped domains along their own paths (for the
offset-free power law this is exactly the capped optimum). This repeats until no cap is
exceeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
from typing import Any

import numpy as np

from optuna_autoscale._validation import check_known_domains
from optuna_autoscale._validation import check_tokens


__all__ = ["ScalePath", "extrapolate_paper", "fit_path"]

_BUDGET_RTOL = 1e-9


def _as_allocation(item: Any, index: int) -> Mapping[str, float]:
    if isinstance(item, Mapping):
        return item
    alloc = getattr(item, "allocation", None)  # a Mixture
    if isinstance(alloc, Mapping):
        return alloc
    raise TypeError(
        f"optima[{index}] must be a mapping domain -> tokens (or a Mixture), got {type(item).__name__}."
    )


def _logsumexp(x: np.ndarray) -> float:
    top = float(np.max(x))
    return top + math.log(float(np.sum(np.exp(x - top))))


def _log_total(a: np.ndarray, b: np.ndarray, s: float) -> float:
    """``log sum_i exp(a_i + b_i s)``."""
    return _logsumexp(a + b * s)


def _slope_sign(a: np.ndarray, b: np.ndarray, s: float) -> float:
    """Sign-exact scaled derivative of ``sum_i exp(a_i + b_i s)`` with respect to ``s``."""
    x = a + b * s
    return float(np.sum(b * np.exp(x - np.max(x))))


def _bracket(fun: Any, start: float, direction: float, *, what: str) -> float:
    """A point from ``start`` in ``direction`` where ``fun`` changes sign against ``fun(start)``."""
    f0 = fun(start)
    step = 1.0
    for _ in range(80):
        s = start + direction * step
        if np.sign(fun(s)) != np.sign(f0):
            return s
        step *= 2.0
    raise ValueError(f"Could not bracket {what}; the optima look degenerate.")


def _branch_root(a: np.ndarray, b: np.ndarray, log_target: float, s_ref: float, direction: float) -> float:
    """Root of ``log sum exp(a + b s) = log_target`` on the monotone branch through ``s_ref``.

    ``direction`` (+1 or -1) is the way the total increases on that branch at ``s_ref``.
    """
    from scipy import optimize

    def g(s: float) -> float:
        return _log_total(a, b, s) - log_target

    g_ref = g(s_ref)
    if g_ref == 0.0:
        return s_ref
    if g_ref < 0:  # need more: move along `direction`, where the total grows without bound
        hi = _bracket(g, s_ref, direction, what="the target budget")
        lo_, hi_ = sorted((s_ref, hi))
        return float(optimize.brentq(g, lo_, hi_, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))
    # Need less: move against `direction`, at most to the turning point (the minimum of the
    # convex total) or, without one, towards the limit of the terms that do not shrink.
    if np.any(b * direction < 0):
        turn = _bracket(lambda s: _slope_sign(a, b, s) * direction, s_ref, -direction, what="the turning point")
        lo_, hi_ = sorted((s_ref, turn))
        far = float(
            optimize.brentq(lambda s: _slope_sign(a, b, s), lo_, hi_, xtol=1e-15, rtol=4 * np.finfo(float).eps)
        )
        smallest = math.exp(_log_total(a, b, far))
    else:
        const = b == 0
        smallest = float(np.exp(a[const]).sum()) if const.any() else 0.0
        far = math.nan
    if smallest >= math.exp(log_target) * (1 - 1e-12):
        raise ValueError(
            f"No point on the extrapolation path has a total of {math.exp(log_target):.6g} tokens: on the "
            f"branch through the measured optima the totals only come down to {smallest:.6g} "
            "(some domains shrink while others grow, or do not shrink at all). Choose a larger target budget."
        )
    if math.isnan(far):
        far = _bracket(g, s_ref, -direction, what="the target budget")
    lo_, hi_ = sorted((s_ref, far))
    return float(optimize.brentq(g, lo_, hi_, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


@dataclasses.dataclass(frozen=True)
class ScalePath:
    """A fitted extrapolation path ``log N_i(t) = A_i + B_i t`` through optimal allocations.

    Attributes:
        domains: Domain names, in the order of the first optimum.
        budgets: The measured budgets (tokens), ascending.
        t: The shared scalar at each measured budget (0 at the smallest, 1 at the largest).
        intercept: ``A_i`` per domain on the path (``log`` tokens); ``None`` for domains that are
            not on the path (zero, or share-held).
        slope: ``B_i`` per domain (``log`` of the per-unit-``t`` growth ratio); ``None`` likewise.
        zero: Domains held at zero tokens (zero at the largest budget).
        share_held: Domain -> share of the total it keeps (zero at a smaller budget only).
        pinned: Domains treated as pinned at a bound.
        residual: Root-mean-square residual of the rank-1 fit in ``log`` tokens (0 for two
            budgets, which the path always interpolates).
    """

    domains: tuple[str, ...]
    budgets: tuple[float, ...]
    t: tuple[float, ...]
    intercept: dict[str, float | None]
    slope: dict[str, float | None]
    zero: tuple[str, ...]
    share_held: dict[str, float]
    pinned: tuple[str, ...]
    residual: float

    def allocation(self, tokens: float, caps: Mapping[str, float] | None = None) -> dict[str, float]:
        """Tokens per domain on the path at a total of ``tokens`` (after caps).

        Args:
            tokens: Target total training tokens.
            caps: Optional maximum tokens per domain; the excess moves to uncapped domains.

        Returns:
            Domain -> tokens, summing to ``tokens``.

        Raises:
            ValueError: if ``tokens`` is not positive, the path never reaches it, or the caps of
                the domains that can receive tokens sum below it.
        """
        total = check_tokens(tokens, "tokens", unit="tokens", type_error=TypeError)
        cap = self._caps(caps, total)
        on_path = [d for d in self.domains if self.intercept[d] is not None]
        held = list(self.share_held)
        names = on_path + held
        # Share-held domains are constants (slope 0) proportional to the target.
        a = np.array(
            [float(self.intercept[d]) for d in on_path] + [math.log(self.share_held[d] * total) for d in held]  # type: ignore[arg-type]
        )
        b = np.array([float(self.slope[d]) for d in on_path] + [0.0] * len(held))  # type: ignore[arg-type]
        c = np.array([cap[d] for d in names])
        # The monotone branch of the path through the measured budget nearest the target (in
        # log tokens): with a monotone path (the usual case) that is the branch containing
        # t in [0, 1] and beyond, and each measured optimum is reproduced at its own budget.
        nearest = int(np.argmin(np.abs(np.log(np.array(self.budgets)) - math.log(total))))
        s_ref = self.t[nearest]
        direction = np.sign(_slope_sign(a, b, s_ref))
        if direction == 0 and np.any(b != 0):
            direction = 1.0  # at the turning point itself: continue towards larger budgets
        if direction == 0:
            x = np.exp(a - np.max(a))
            x *= total / x.sum()
            s = s_ref
            proportional = True
        else:
            s = _branch_root(a, b, math.log(total), s_ref, float(direction))
            x = np.exp(a + b * s)
            proportional = False
        free = np.ones(len(names), dtype=bool)
        for _ in range(len(names) + 1):
            over = free & (x > c)
            if not over.any():
                break
            free &= ~over
            x[~free] = c[~free]
            need = total - float(x[~free].sum())
            if not free.any():
                break
            af, bf = a[free], b[free]
            current = float(np.exp(af + bf * s).sum()) if not proportional else float(x[free].sum())
            step_dir = np.sign(_slope_sign(af, bf, s)) if not proportional else 0.0
            if step_dir == 0 or need <= 0 or current <= 0:
                proportional = True
                x[free] = x[free] * (need / current) if current > 0 else need / free.sum()
                continue
            s = _branch_root(af, bf, math.log(need), s, float(step_dir))
            x[free] = np.exp(af + bf * s)
        # Exact total: rescale the uncapped part (capped domains sit exactly at their caps).
        fixed = float(x[~free].sum())
        rest = float(x[free].sum())
        if rest > 0:
            x[free] *= (total - fixed) / rest
        out = {d: 0.0 for d in self.domains}
        out.update({d: float(v) for d, v in zip(names, x)})
        return out

    def _caps(self, caps: Mapping[str, float] | None, total: float) -> dict[str, float]:
        cap = {d: math.inf for d in self.domains}
        if caps is None:
            return cap
        if not isinstance(caps, Mapping):
            raise TypeError(f"caps must be a mapping domain -> maximum tokens, got {type(caps).__name__}.")
        check_known_domains(caps, self.domains, "caps")
        for d, v in caps.items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"caps[{d!r}] must be a number of tokens, got {v!r}.") from None
            if math.isnan(value) or value < 0:
                raise ValueError(f"caps[{d!r}] must be >= 0 tokens, got {v!r}.")
            cap[d] = value
        receiving = [d for d in self.domains if d not in self.zero]
        room = sum(cap[d] for d in receiving)
        if room < total * (1 - 1e-12):
            raise ValueError(
                f"Infeasible caps: the domains that can receive tokens ({receiving!r}; domains at zero stay at "
                f"zero) are capped at {room:.6g} tokens in total, below the target {total:.6g}. Raise the caps "
                "(e.g. allow more epochs) or lower the target."
            )
        return cap


def fit_path(
    optima: Sequence[Mapping[str, float]],
    *,
    pinned: Mapping[str, bool] | None = None,
) -> ScalePath:
    """Fit the AutoScale extrapolation path through optimal allocations at two or more budgets.

    Args:
        optima: Optimal allocations (domain -> tokens, or :class:`~optuna_autoscale.Mixture`)
            at two or more distinct budgets (a budget is an allocation's sum), in any order.
        pinned: Domain -> ``True`` for domains the DDO optimum put on a bound.

    Returns:
        The fitted :class:`ScalePath`.

    Raises:
        ValueError: on fewer than two optima, differing domains, negative or non-finite
            tokens, repeated budgets, or no domain with tokens at every budget.

    Example:
        .. code-block:: python

            from optuna_autoscale.extrapolation import fit_path

            path = fit_path([{"a": 10.0, "b": 10.0}, {"a": 30.0, "b": 20.0}])
            print(path.allocation(130.0))  # the N2^2/N1 point: {'a': 90.0, 'b': 40.0}
    """
    if isinstance(optima, Mapping) or not isinstance(optima, Sequence):
        raise TypeError("optima must be a sequence of allocations (domain -> tokens), one per budget.")
    allocs = [_as_allocation(o, i) for i, o in enumerate(optima)]
    if len(allocs) < 2:
        raise ValueError(f"Extrapolation needs optimal allocations at >= 2 budgets, got {len(allocs)}.")
    from optuna_autoscale.mixture import validate_domains

    domains = validate_domains(list(allocs[0]))
    for i, a in enumerate(allocs):
        if set(a) != set(domains):
            raise ValueError(
                f"optima[{i}] has domains {sorted(a)!r}, but optima[0] has {sorted(domains)!r}; every optimum "
                "must give tokens for the same domains."
            )
    mat = np.array([[float(a[d]) for d in domains] for a in allocs])  # (k budgets, m domains)
    if not np.all(np.isfinite(mat)) or np.any(mat < 0):
        raise ValueError("optima token counts must be finite and >= 0.")
    budgets = mat.sum(axis=1)
    if np.any(budgets <= 0):
        raise ValueError("Every optimum must have a positive total number of tokens.")
    order = np.argsort(budgets, kind="stable")
    mat, budgets = mat[order], budgets[order]
    for j in range(1, len(budgets)):
        if budgets[j] - budgets[j - 1] <= _BUDGET_RTOL * budgets[j]:
            raise ValueError(
                f"Two optima share the budget {budgets[j]:.6g} tokens; average them or drop one "
                "(extrapolation needs distinct budgets)."
            )
    pin = _pinned(pinned, domains)

    last = mat[-1]
    zero = tuple(d for i, d in enumerate(domains) if last[i] == 0)
    positive_all = np.all(mat > 0, axis=0)
    share_held = {
        d: float(last[i] / budgets[-1]) for i, d in enumerate(domains) if last[i] > 0 and not positive_all[i]
    }
    path_idx = [i for i in range(len(domains)) if positive_all[i]]
    if not path_idx:
        raise ValueError(
            "No domain has tokens at every budget, so no extrapolation path can be fitted; check the optima."
        )
    logs = np.log(mat[:, path_idx]).T  # (m_path, k)
    k = logs.shape[1]
    intercept: dict[str, float | None] = {d: None for d in domains}
    slope: dict[str, float | None] = {d: None for d in domains}
    if k == 2:
        t = np.array([0.0, 1.0])
        a_vals, b_vals = logs[:, 0], logs[:, 1] - logs[:, 0]
        residual = 0.0
    else:
        names = [domains[i] for i in path_idx]
        fit_rows = [r for r, d in enumerate(names) if d not in pin] or list(range(len(names)))
        sub = logs[fit_rows]
        centred = sub - sub.mean(axis=1, keepdims=True)
        _, sing, vt = np.linalg.svd(centred, full_matrices=False)
        v = vt[0]
        if sing[0] <= 0 or abs(v[-1] - v[0]) <= 1e-12 * np.max(np.abs(v)):
            raise ValueError(
                "The optima do not move along one direction between the smallest and largest budget; "
                "a rank-1 extrapolation path is undefined."
            )
        t = (v - v[0]) / (v[-1] - v[0])
        design = np.column_stack([np.ones(k), t])
        coef, *_ = np.linalg.lstsq(design, logs.T, rcond=None)  # (2, m_path)
        a_vals, b_vals = coef[0], coef[1]
        fitted = design @ coef
        residual = float(np.sqrt(np.mean((fitted - logs.T) ** 2)))
    for r, i in enumerate(path_idx):
        intercept[domains[i]] = float(a_vals[r])
        slope[domains[i]] = float(b_vals[r])
    return ScalePath(
        domains=domains,
        budgets=tuple(float(x) for x in budgets),
        t=tuple(float(x) for x in t),
        intercept=intercept,
        slope=slope,
        zero=zero,
        share_held=share_held,
        pinned=tuple(d for d in domains if d in pin),
        residual=residual,
    )


def _pinned(pinned: Mapping[str, bool] | None, domains: tuple[str, ...]) -> set[str]:
    if pinned is None:
        return set()
    if not isinstance(pinned, Mapping):
        raise TypeError(f"pinned must be a mapping domain -> bool, got {type(pinned).__name__}.")
    check_known_domains(pinned, domains, "pinned")
    return {d for d, flag in pinned.items() if bool(flag)}


def extrapolate_paper(
    optima: Sequence[Mapping[str, float]],
    tokens: float,
    caps: Mapping[str, float] | None = None,
    *,
    pinned: Mapping[str, bool] | None = None,
) -> dict[str, float]:
    """Extrapolate optimal allocations at two or more budgets to a target budget (paper's rule).

    With two budgets ``N^(1) < N^(2)`` the result is ``N_i(s) = N_i^(1) (N_i^(2)/N_i^(1))^s``
    with ``s`` such that it sums to ``tokens`` (``s = 2`` is ``N^(2)^2 / N^(1)``); with three or
    more, the rank-1 path ``log N_ij = A_i + B_i t_j`` fitted by least squares. See the module
    docstring for zero, share-held and pinned domains and for caps.

    Args:
        optima: Optimal allocations (domain -> tokens, or Mixtures) at >= 2 distinct budgets.
        tokens: Target total training tokens.
        caps: Optional maximum tokens per domain (e.g. unique tokens times allowed epochs).
        pinned: Domain -> ``True`` for domains the DDO optimum put on a bound.

    Returns:
        Domain -> tokens at the target, summing to ``tokens``.

    Raises:
        ValueError: on bad optima (see :func:`fit_path`), a target no point of the path
            reaches, or caps that sum below the target.

    Example:
        .. code-block:: python

            from optuna_autoscale.extrapolation import extrapolate_paper

            n1 = {"web": 60.0, "code": 40.0}
            n2 = {"web": 240.0, "code": 240.0}
            out = extrapolate_paper([n1, n2], 240.0**2 / 60.0 + 240.0**2 / 40.0)
            assert abs(out["web"] - 960.0) < 1e-6   # N2^2 / N1
            assert abs(out["code"] - 1440.0) < 1e-6
    """
    return fit_path(optima, pinned=pinned).allocation(tokens, caps)
