"""Ground-truth loss landscapes with known optima at every budget.

The simulator stands in for proxy training runs in tests, benchmarks and examples. A
:class:`Landscape` maps an *allocation* (domain -> training tokens) to a validation loss in
nats-like units (about 2 to 7), per validation domain and as their unweighted mean. Three
families are provided:

- :func:`separable`: the model AutoScale assumes, a separable power law in absolute tokens,
  ``L(N) = E + sum_i beta_i (N_i + N0_i)^(-gamma_i)``, with offsets ``N0_i`` of 2 to 7 base
  shares at a reference budget (as in the authors' fits).
- :func:`transfer` (misspecified): domain ``j``'s loss term sees the *effective* tokens
  ``N_j + sum_k T_jk N_k``, so data from one domain helps another.
- :func:`mixing_law` (misspecified): the exponential law of Data Mixing Laws (Ye et al., 2024),
  ``L_i(r, N) = c_i + k_i (N / N_ref)^(-alpha_i) exp(sum_j t_ij r_j)`` in the proportions
  ``r = N / sum(N)``; the per-domain power law in the budget makes the optimum move with scale.

Every family has per-domain losses, and the total loss is their unweighted mean.

Noise. :meth:`Landscape.loss` adds ``seed_noise * z(seed) + noise * z(seed, allocation)``
to the true loss, with standard normal draws that are deterministic functions of the
landscape's own ``seed``, the run's ``seed`` and the allocation. All runs with one seed share
``z(seed)`` (common random numbers, like a shared model initialisation and data order), while
``z(seed, allocation)`` differs per mixture. Calling twice with the same inputs returns the
same value. :meth:`Landscape.with_snr` sets both sigmas from a target signal-to-noise ratio on
the x3 effects of a DDO design. By default every domain of a run is shifted by the same draw;
``domain_share`` (keyword, in [0, 1]) draws that fraction of the mean loss's noise variance
independently per domain instead, as real per-domain validation losses are correlated but not
identical (the mean's sd and its seed-shared part are unchanged, so the SNR keeps its meaning).

Optima. :meth:`Landscape.oracle` minimises the true loss over allocations with a given total
(tokens) and optional per-domain bounds (tokens) by SLSQP from several deterministic starts,
with analytic gradients. Every family is convex in the allocation, so the optimum is global.
The separable family uses the exact bounded water-filling of
:func:`optuna_autoscale.allocation.solve_separable` instead.

Example:
    .. code-block:: python

        import optuna
        from optuna_autoscale.simulate import separable

        land = separable(7, seed=0)
        best = land.oracle(1e8)                      # tokens per domain, summing to 1e8
        assert land.true_loss(best) <= land.true_loss({d: 1e8 / 7 for d in land.domains})

        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(land.objective(tokens=1e8), n_trials=5)
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import hashlib
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np

from optuna_autoscale._validation import check_allocation
from optuna_autoscale._validation import check_known_domains
from optuna_autoscale._validation import check_number


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.config import SimulateConfig


__all__ = [
    "landscape_from_config",
    "Landscape",
    "SeparableLandscape",
    "TransferLandscape",
    "MixingLawLandscape",
    "separable",
    "transfer",
    "mixing_law",
    "REDPAJAMA_DOMAINS",
    "REFERENCE_TOKENS",
]

REDPAJAMA_DOMAINS: tuple[str, ...] = (
    "common_crawl",
    "github",
    "books",
    "wikipedia",
    "c4",
    "stackexchange",
    "arxiv",
)
"""The paper's seven RedPajama domains, in its order (e.g. ``separable(domains=REDPAJAMA_DOMAINS)``)."""

REFERENCE_TOKENS = 1e8
"""Reference budget (tokens) at which the random landscapes are calibrated."""

METRICS = ("loss", "mean_ppl")
"""Supported metrics: mean per-domain loss (nats-like), or mean per-domain ``exp(loss)``."""

_MIN_EFFECTIVE_TOKENS = 1.0
"""Power-law families floor the effective tokens ``N_d + N0_d`` at one token (finite losses at zero)."""

_KEY_DIGITS = 10  # significant digits of token counts that identify an allocation for the run noise


def default_domains(m: int) -> tuple[str, ...]:
    """Domain names used when none are given: ``d0, d1, ..., d{m-1}``."""
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 2:
        raise ValueError(f"m (the number of domains) must be an integer >= 2, got {m!r}.")
    return tuple(f"d{i}" for i in range(int(m)))


def _resolve_domains(m: int | None, domains: Sequence[str] | None) -> tuple[str, ...]:
    from optuna_autoscale.mixture import validate_domains

    if domains is not None:
        doms = validate_domains(domains)
        if m is not None and m != len(doms):
            raise ValueError(f"m={m} does not match the {len(doms)} domains given; pass only one of them.")
        return doms
    return default_domains(7 if m is None else m)


def _vector(name: str, values: Sequence[float], m: int, *, positive: bool = False, nonneg: bool = False) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=float)
    if arr.shape != (m,):
        raise ValueError(f"{name} must have one value per domain ({m}), got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()!r}.")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0 for every domain, got {arr.tolist()!r}.")
    if nonneg and np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 for every domain, got {arr.tolist()!r}.")
    return tuple(float(x) for x in arr)


def _matrix(name: str, values: Sequence[Sequence[float]], m: int) -> tuple[tuple[float, ...], ...]:
    arr = np.asarray(values, dtype=float)
    if arr.shape != (m, m):
        raise ValueError(f"{name} must be an {m}x{m} matrix (one row and column per domain), got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite.")
    return tuple(tuple(float(x) for x in row) for row in arr)


def _seed_int(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}.")
    return int(seed) % (1 << 63)


def _normal(*words: int) -> float:
    """A standard normal draw that is a deterministic function of non-negative integer words."""
    return float(np.random.default_rng(np.random.SeedSequence(list(words))).standard_normal())


def _project_box_simplex(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` onto ``{lo <= w <= hi, sum w = 1}`` (assumed non-empty)."""
    def total(tau: float) -> float:
        return float(np.clip(v - tau, lo, hi).sum())

    a, b = float(np.min(v - hi)) - 1.0, float(np.max(v - lo)) + 1.0  # total(a) >= 1 >= total(b)
    for _ in range(200):
        mid = 0.5 * (a + b)
        if total(mid) > 1.0:
            a = mid
        else:
            b = mid
    w = np.clip(v - 0.5 * (a + b), lo, hi)
    return w


class Landscape(abc.ABC):
    """A ground-truth loss landscape over allocations (domain -> training tokens).

    Subclasses are frozen dataclasses with the attributes below and implement
    :meth:`_per_domain` (values and Jacobian in the shares at a fixed total).

    Attributes:
        domains: Domain names; allocations map exactly these to tokens.
        seed: The landscape's own seed; it enters every noise draw.
        noise: Standard deviation (loss units) of the per-run noise ``z(seed, allocation)``.
        seed_noise: Standard deviation (loss units) of the noise ``z(seed)`` shared by every run
            with the same run seed (common random numbers).
        domain_share: Fraction in [0, 1] of the noise variance *of the mean loss* that comes from
            independent per-domain draws (0, the default: every domain of a run is shifted by the
            same draw). The total sd of the mean loss and its seed-shared part stay as given.
    """

    domains: tuple[str, ...]
    seed: int
    noise: float
    seed_noise: float
    domain_share: float

    # ----------------------------------------------------------------- family-specific part
    @abc.abstractmethod
    def _per_domain(self, w: np.ndarray, tokens: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-domain true losses at shares ``w`` (not necessarily normalised) of ``tokens``.

        Returns:
            ``(l, J)``: the ``m`` per-domain losses and their Jacobian ``J[d, k] = dl_d / dw_k``
            with ``tokens`` held fixed.
        """

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The landscape's parameters as a JSON-ready dict (family name included)."""

    # ----------------------------------------------------------------- helpers
    def _validate_noise(self) -> None:
        object.__setattr__(self, "seed", _seed_int(self.seed))
        object.__setattr__(self, "noise", check_number(self.noise, "noise", nonneg=True))
        object.__setattr__(self, "seed_noise", check_number(self.seed_noise, "seed_noise", nonneg=True))
        share = check_number(self.domain_share, "domain_share", nonneg=True)
        if share > 1:
            raise ValueError(f"domain_share must be in [0, 1], got {self.domain_share!r}.")
        object.__setattr__(self, "domain_share", share)

    def _validate_domains(self) -> int:
        """Normalise ``domains`` in place (frozen) and return their number."""
        from optuna_autoscale.mixture import validate_domains

        doms = validate_domains(self.domains)
        object.__setattr__(self, "domains", doms)
        return len(doms)

    def _validate_power_law(self) -> int:
        """Check ``irreducible``, ``beta``, ``offset``, ``gamma`` (power-law families); return ``m``."""
        m = self._validate_domains()
        object.__setattr__(self, "irreducible", _vector("irreducible", getattr(self, "irreducible"), m))
        object.__setattr__(self, "beta", _vector("beta", getattr(self, "beta"), m, positive=True))
        object.__setattr__(self, "offset", _vector("offset", getattr(self, "offset"), m, nonneg=True))
        object.__setattr__(self, "gamma", _vector("gamma", getattr(self, "gamma"), m, positive=True))
        return m

    def _params_dict(self, family: str, **fields: Any) -> dict[str, Any]:
        """``params()`` layout: family, domains, the family's ``fields``, then seed and noise."""
        return {
            "family": family,
            "domains": list(self.domains),
            **fields,
            "seed": self.seed,
            "noise": self.noise,
            "seed_noise": self.seed_noise,
            "domain_share": self.domain_share,
        }

    def _power_law_fields(self) -> dict[str, Any]:
        """The power-law families' parameters in ``params()`` form."""
        return {
            "irreducible": list(getattr(self, "irreducible")),
            "beta": list(getattr(self, "beta")),
            "offset": list(getattr(self, "offset")),
            "gamma": list(getattr(self, "gamma")),
        }

    def _split(self, allocation: Mapping[str, float]) -> tuple[np.ndarray, float]:
        """Check an allocation and return (shares in domain order, total tokens)."""
        if not isinstance(allocation, Mapping):
            raise TypeError(
                f"allocation must be a mapping domain -> tokens, got {type(allocation).__name__}; "
                "use Mixture.allocation to convert a Mixture."
            )
        x = check_allocation(allocation, tuple(self.domains), "allocation")
        total = float(x.sum())
        if total <= 0:
            raise ValueError("allocation must have a positive total number of tokens.")
        return x / total, total

    @staticmethod
    def _check_metric(metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS!r}, got {metric!r}.")
        return metric

    def _noise_draw(self, allocation: Mapping[str, float], seed: int | None) -> np.ndarray:
        """Per-domain noise of one run (length ``m``); zeros when both sigmas are 0.

        Domain ``d`` gets ``sqrt(1 - s) e + sqrt(s m) e_d`` with ``s`` = :attr:`domain_share`,
        ``e = seed_noise * z(seed) + noise * z(seed, allocation)`` shared by all domains and ``e_d``
        an independent draw of the same form per domain. The mean over domains then has the sd
        ``sqrt(seed_noise^2 + noise^2)`` and seed-shared variance ``seed_noise^2`` whatever ``s``.
        """
        m = len(self.domains)
        if self.noise == 0.0 and self.seed_noise == 0.0:
            return np.zeros(m)
        from optuna_autoscale.mixture import DEFAULT_SEED

        run_seed = _seed_int(DEFAULT_SEED if seed is None else seed)
        digest = 0
        if self.noise:
            key = ";".join(f"{d}={float(allocation[d]):.{_KEY_DIGITS - 1}e}" for d in self.domains)
            digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")

        def draw(*extra: int) -> float:
            eps = 0.0
            if self.seed_noise:
                eps += self.seed_noise * _normal(self.seed, 1, run_seed, *extra)
            if self.noise:
                eps += self.noise * _normal(self.seed, 2, run_seed, digest, *extra)
            return eps

        share = self.domain_share
        shared = draw() if share < 1 else 0.0
        out = np.full(m, math.sqrt(1.0 - share) * shared)
        if share > 0:
            # Word 3 marks the per-domain stream, so it never collides with the shared draws.
            out += math.sqrt(share * m) * np.array([draw(3, i) for i in range(m)])
        return out

    # ----------------------------------------------------------------- public API
    @property
    def m(self) -> int:
        """Number of domains."""
        return len(self.domains)

    def per_domain_true_loss(self, allocation: Mapping[str, float]) -> dict[str, float]:
        """Noiseless per-domain validation losses (nats-like) of an allocation (tokens per domain)."""
        w, total = self._split(allocation)
        values, _ = self._per_domain(w, total)
        return dict(zip(self.domains, values.tolist()))

    def true_loss(self, allocation: Mapping[str, float], *, metric: str = "loss") -> float:
        """Noiseless objective of an allocation (tokens per domain).

        Args:
            allocation: Domain -> training tokens.
            metric: ``"loss"`` (mean per-domain loss) or ``"mean_ppl"`` (mean of ``exp`` of the
                per-domain losses, the authors' objective).
        """
        self._check_metric(metric)
        w, total = self._split(allocation)
        values, _ = self._per_domain(w, total)
        return float(np.mean(values) if metric == "loss" else np.mean(np.exp(values)))

    def per_domain_loss(self, allocation: Mapping[str, float], *, seed: int | None = None) -> dict[str, float]:
        """Noisy per-domain losses: the true ones plus the noise of :meth:`_noise_draw`.

        With ``domain_share=0`` (default) every domain is shifted by the same draw; otherwise part
        of the noise is independent per domain. The mean of these is :meth:`loss` (metric "loss").
        ``seed=None`` means the default seed of :mod:`optuna_autoscale.mixture` (0).
        """
        eps = self._noise_draw(allocation, seed)
        return {d: v + float(e) for (d, v), e in zip(self.per_domain_true_loss(allocation).items(), eps)}

    def loss(self, allocation: Mapping[str, float], *, seed: int | None = None, metric: str = "loss") -> float:
        """Noisy objective of an allocation (tokens per domain), as a training run would report it.

        The noise is ``seed_noise * z(seed) + noise * z(seed, allocation)`` added to each
        per-domain loss (part of it drawn per domain when :attr:`domain_share` > 0); ``z(seed)`` is shared by all runs with the run ``seed`` (common random
        numbers). The result is a deterministic function of the landscape's seed, the run seed
        and the allocation. ``seed=None`` means seed 0, the default of ``suggest_mixture``.
        """
        self._check_metric(metric)
        losses = np.array(list(self.per_domain_loss(allocation, seed=seed).values()))
        return float(np.mean(losses) if metric == "loss" else np.mean(np.exp(losses)))

    def oracle(
        self,
        tokens: float,
        *,
        lower: Mapping[str, float] | None = None,
        upper: Mapping[str, float] | None = None,
        metric: str = "loss",
    ) -> dict[str, float]:
        """The allocation minimising the true objective at a total of ``tokens``.

        SLSQP with analytic gradients over the shares, started from the uniform mixture and
        from four seeded random mixtures (projected into the bounds); the best is returned.
        The families here are convex in the allocation, so this is the global optimum.

        Args:
            tokens: Total training tokens.
            lower: Optional per-domain minimum tokens (missing domains: 0).
            upper: Optional per-domain maximum tokens (missing domains: no limit).
            metric: ``"loss"`` or ``"mean_ppl"``.

        Returns:
            Domain -> tokens, summing to ``tokens``.

        Raises:
            ValueError: if the bounds are infeasible (``sum(lower) > tokens``,
                ``sum(upper) < tokens`` or ``lower > upper``) or name unknown domains.
        """
        from scipy import optimize

        self._check_metric(metric)
        total = check_number(tokens, "tokens", positive=True)
        lo, hi = self._bounds(total, lower, upper)
        m = self.m

        def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
            values, jac = self._per_domain(w, total)
            if metric == "loss":
                return float(values.mean()), jac.mean(axis=0)
            e = np.exp(values)
            return float(e.mean()), (e[:, None] * jac).mean(axis=0)

        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 3, int(total) % (1 << 63)]))
        starts = [np.full(m, 1.0 / m)] + [rng.dirichlet(np.ones(m)) for _ in range(4)]
        best_w: np.ndarray | None = None
        best_f = math.inf
        cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}]
        for x0 in starts:
            x0 = _project_box_simplex(x0, lo, hi)
            res = optimize.minimize(
                fun,
                x0,
                jac=True,
                method="SLSQP",
                bounds=list(zip(lo, hi)),
                constraints=cons,
                options={"ftol": 1e-14, "maxiter": 1000},
            )
            w = _project_box_simplex(np.asarray(res.x, dtype=float), lo, hi)
            f = fun(w)[0]
            if f < best_f:
                best_f, best_w = f, w
        assert best_w is not None
        # Snap shares within rounding of a bound onto it, then restore the total on the rest.
        at_lo, at_hi = best_w - lo < 1e-12, hi - best_w < 1e-12
        w = np.where(at_lo, lo, np.where(at_hi, hi, best_w))
        free = ~(at_lo | at_hi)
        if free.any() and w[free].sum() > 0:
            w[free] *= (1.0 - w[~free].sum()) / w[free].sum()
            if fun(w)[0] <= best_f + 1e-12 and np.all(w >= lo) and np.all(w <= hi):
                best_w = w
        return dict(zip(self.domains, (best_w * total).tolist()))

    def _bounds(
        self, total: float, lower: Mapping[str, float] | None, upper: Mapping[str, float] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        lo = np.zeros(self.m)
        hi = np.full(self.m, np.inf)
        for name, bound, arr in (("lower", lower, lo), ("upper", upper, hi)):
            if bound is None:
                continue
            if not isinstance(bound, Mapping):
                raise TypeError(f"{name} must be a mapping domain -> tokens or None, got {type(bound).__name__}.")
            check_known_domains(bound, self.domains, name)
            for i, d in enumerate(self.domains):
                if d in bound:
                    arr[i] = check_number(bound[d], f"{name}[{d!r}]", nonneg=True)
        if np.any(lo > hi):
            bad = [d for d, a, b in zip(self.domains, lo, hi) if a > b]
            raise ValueError(f"lower bound exceeds upper bound for {bad!r}.")
        if lo.sum() > total * (1 + 1e-12):
            raise ValueError(
                f"Infeasible bounds: the lower bounds sum to {lo.sum():.6g} tokens, more than the total {total:.6g}; "
                "lower them or raise the budget."
            )
        if hi.sum() < total * (1 - 1e-12):
            raise ValueError(
                f"Infeasible bounds: the upper bounds sum to {hi.sum():.6g} tokens, less than the total {total:.6g}; "
                "raise them (e.g. allow more epochs) or lower the budget."
            )
        return lo / total, np.minimum(hi / total, 1.0)

    def x3_effects(
        self, tokens: float, *, base: Mapping[str, float] | None = None, multiplier: float = 3.0
    ) -> dict[str, float]:
        """True loss change when one domain's tokens are multiplied (the others fixed), per domain.

        Args:
            tokens: Budget of the base run (tokens); the base is uniform unless ``base`` is given.
            base: Optional base allocation (tokens per domain); overrides ``tokens``' uniform base.
            multiplier: The DDO multiplier (default 3, the paper's).
        """
        mult = check_number(multiplier, "multiplier", positive=True)
        if base is None:
            total = check_number(tokens, "tokens", positive=True)
            base = {d: total / self.m for d in self.domains}
        ref = self.true_loss(base)
        out = {}
        for d in self.domains:
            alloc = dict(base)
            alloc[d] = alloc[d] * mult
            out[d] = self.true_loss(alloc) - ref
        return out

    def with_noise(
        self, noise: float | None = None, *, seed_noise: float | None = None, domain_share: float | None = None
    ) -> Landscape:
        """A copy with other noise sigmas (loss units) or per-domain share; ``None`` keeps the current one."""
        changes: dict[str, float] = {}
        if noise is not None:
            changes["noise"] = noise
        if seed_noise is not None:
            changes["seed_noise"] = seed_noise
        if domain_share is not None:
            changes["domain_share"] = domain_share
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def with_snr(
        self,
        snr: float,
        tokens: float,
        *,
        seed_share: float = 0.5,
        multiplier: float = 3.0,
        domain_share: float | None = None,
    ) -> Landscape:
        """A copy whose noise gives a target signal-to-noise ratio on the x3 effects.

        The signal is the mean absolute x3 effect (:meth:`x3_effects`) at a uniform base of
        ``tokens``; the noise is the total per-run standard deviation
        ``sqrt(seed_noise^2 + noise^2) = signal / snr``. ``seed_share`` is the fraction of that
        variance shared by all runs with one seed (removed by common random numbers).

        Args:
            snr: Target ratio, > 0; ``math.inf`` gives a noiseless copy.
            tokens: Budget (tokens) at which the effects are measured.
            seed_share: Fraction in [0, 1] of the noise variance that is seed-shared.
            multiplier: The DDO multiplier whose effects define the signal.
            domain_share: Fraction in [0, 1] of the mean loss's noise variance drawn independently
                per domain (:attr:`domain_share`; ``None`` keeps the current one). It leaves the
                SNR of the objective unchanged.

        Example:
            .. code-block:: python

                from optuna_autoscale.simulate import separable

                noisy = separable(7).with_snr(6.0, 1e8)
                assert noisy.noise > 0 and noisy.seed_noise > 0
        """
        ratio = float(snr)
        if not ratio > 0:
            raise ValueError(f"snr must be > 0 (use math.inf for no noise), got {snr!r}.")
        share = check_number(seed_share, "seed_share", nonneg=True)
        if share > 1:
            raise ValueError(f"seed_share must be in [0, 1], got {seed_share!r}.")
        if math.isinf(ratio):
            return self.with_noise(0.0, seed_noise=0.0, domain_share=domain_share)
        signal = float(np.mean(np.abs(list(self.x3_effects(tokens, multiplier=multiplier).values()))))
        sigma = signal / ratio
        return self.with_noise(
            sigma * math.sqrt(1.0 - share), seed_noise=sigma * math.sqrt(share), domain_share=domain_share
        )

    def objective(
        self, *, tokens: float | None = None, metric: str = "loss"
    ) -> Callable[[optuna.trial.Trial], float]:
        """An Optuna objective that trains "a model" on this landscape.

        The objective calls :func:`~optuna_autoscale.mixture.suggest_mixture` (with
        ``tokens`` when given: required under samplers other than AutoScaleSampler, and an
        error under it), sets user attrs ``loss_<domain>`` (noisy per-domain losses) and
        ``sim_true_loss`` (the noiseless objective, for benchmarks), and returns the noisy
        objective at the trial's seed.

        Args:
            tokens: Total training tokens per trial, or ``None`` under AutoScaleSampler.
            metric: ``"loss"`` or ``"mean_ppl"``.
        """
        from optuna_autoscale.mixture import LOSS_PREFIX
        from optuna_autoscale.mixture import suggest_mixture

        self._check_metric(metric)
        budget = None if tokens is None else check_number(tokens, "tokens", positive=True)
        domains = self.domains

        def objective(trial: optuna.trial.Trial) -> float:
            mix = suggest_mixture(trial, domains) if budget is None else suggest_mixture(trial, domains, tokens=budget)
            alloc = mix.allocation
            losses = self.per_domain_loss(alloc, seed=mix.seed)
            for d, v in losses.items():
                trial.set_user_attr(f"{LOSS_PREFIX}{d}", float(v))
            trial.set_user_attr("sim_true_loss", self.true_loss(alloc, metric=metric))
            values = np.array(list(losses.values()))
            return float(np.mean(values) if metric == "loss" else np.mean(np.exp(values)))

        return objective


@dataclasses.dataclass(frozen=True)
class SeparableLandscape(Landscape):
    """``L(N) = mean_d l_d``, ``l_d = E_d + m beta_d (N_d + N0_d)^(-gamma_d)``, tokens ``N_d``.

    The total is therefore ``E + sum_d beta_d (N_d + N0_d)^(-gamma_d)`` with ``E = mean(E_d)``:
    the separable law AutoScale assumes, with per-domain offsets ``N0_d`` (tokens).

    Attributes:
        domains: Domain names.
        irreducible: ``E_d`` per domain (loss units).
        beta: ``beta_d`` per domain (> 0).
        offset: ``N0_d`` per domain (tokens, >= 0).
        gamma: ``gamma_d`` per domain (> 0).
    """

    domains: tuple[str, ...]
    irreducible: tuple[float, ...]
    beta: tuple[float, ...]
    offset: tuple[float, ...]
    gamma: tuple[float, ...]
    seed: int = dataclasses.field(default=0, kw_only=True)
    noise: float = dataclasses.field(default=0.0, kw_only=True)
    seed_noise: float = dataclasses.field(default=0.0, kw_only=True)
    domain_share: float = dataclasses.field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        self._validate_power_law()
        self._validate_noise()

    def _per_domain(self, w: np.ndarray, tokens: float) -> tuple[np.ndarray, np.ndarray]:
        m = self.m
        beta, n0, g = np.array(self.beta), np.array(self.offset), np.array(self.gamma)
        eff = np.maximum(w * tokens + n0, _MIN_EFFECTIVE_TOKENS)
        term = m * beta * eff ** (-g)
        values = np.array(self.irreducible) + term
        jac = np.diag(-g * term / eff * tokens)
        return values, jac

    def oracle(
        self,
        tokens: float,
        *,
        lower: Mapping[str, float] | None = None,
        upper: Mapping[str, float] | None = None,
        metric: str = "loss",
    ) -> dict[str, float]:
        """The exact optimum for ``metric="loss"`` (bounded water-filling), else SLSQP.

        Uses :func:`optuna_autoscale.allocation.solve_separable` on ``beta``, ``offset`` and
        ``gamma``; see :meth:`Landscape.oracle` for the arguments.
        """
        self._check_metric(metric)
        if metric == "loss":
            from optuna_autoscale.allocation import solve_separable

            total = check_number(tokens, "tokens", positive=True)
            lo, hi = self._bounds(total, lower, upper)
            x = solve_separable(
                np.array(self.beta), np.array(self.offset), np.array(self.gamma), total, lo * total, hi * total
            )
            return dict(zip(self.domains, np.asarray(x, dtype=float).tolist()))
        return super().oracle(tokens, lower=lower, upper=upper, metric=metric)

    @property
    def total_irreducible(self) -> float:
        """``E``, the irreducible part of the mean loss."""
        return float(np.mean(self.irreducible))

    def law_params(self) -> dict[str, dict[str, float]]:
        """Per-domain ``{"beta", "n0", "gamma"}`` of the total loss (same form as ``laws.SeparableLaw.params``)."""
        return {
            d: {"beta": b, "n0": n0, "gamma": g}
            for d, b, n0, g in zip(self.domains, self.beta, self.offset, self.gamma)
        }

    def params(self) -> dict[str, Any]:
        return self._params_dict("separable", **self._power_law_fields())


@dataclasses.dataclass(frozen=True)
class TransferLandscape(Landscape):
    """Cross-domain transfer: ``l_d = E_d + m beta_d (N_d + sum_k T_dk N_k + N0_d)^(-gamma_d)``.

    Tokens of domain ``k`` count for a fraction ``T_dk`` toward domain ``d``'s loss (``T_dd`` is
    ignored: a domain counts fully for itself). The total is the mean of the ``l_d``. A DDO
    perturbation of one domain then moves several terms, which the separable law cannot express.

    Attributes:
        domains: Domain names.
        irreducible: ``E_d`` per domain (loss units).
        beta: ``beta_d`` (> 0).
        offset: ``N0_d`` (tokens, >= 0).
        gamma: ``gamma_d`` (> 0).
        transfer_matrix: ``T`` (``m x m``, off-diagonal entries >= 0).
    """

    domains: tuple[str, ...]
    irreducible: tuple[float, ...]
    beta: tuple[float, ...]
    offset: tuple[float, ...]
    gamma: tuple[float, ...]
    transfer_matrix: tuple[tuple[float, ...], ...]
    seed: int = dataclasses.field(default=0, kw_only=True)
    noise: float = dataclasses.field(default=0.0, kw_only=True)
    seed_noise: float = dataclasses.field(default=0.0, kw_only=True)
    domain_share: float = dataclasses.field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        m = self._validate_power_law()
        t = np.array(_matrix("transfer_matrix", self.transfer_matrix, m))
        np.fill_diagonal(t, 0.0)
        if np.any(t < 0):
            raise ValueError("transfer_matrix entries must be >= 0 (a fraction of tokens that counts for another domain).")
        object.__setattr__(self, "transfer_matrix", tuple(tuple(float(x) for x in row) for row in t))
        self._validate_noise()

    def _per_domain(self, w: np.ndarray, tokens: float) -> tuple[np.ndarray, np.ndarray]:
        m = self.m
        beta, n0, g = np.array(self.beta), np.array(self.offset), np.array(self.gamma)
        a = np.eye(m) + np.array(self.transfer_matrix)
        eff = np.maximum(a @ (w * tokens) + n0, _MIN_EFFECTIVE_TOKENS)
        term = m * beta * eff ** (-g)
        values = np.array(self.irreducible) + term
        jac = (-g * term / eff)[:, None] * a * tokens
        return values, jac

    def params(self) -> dict[str, Any]:
        return self._params_dict(
            "transfer",
            **self._power_law_fields(),
            transfer_matrix=[list(r) for r in self.transfer_matrix],
        )


@dataclasses.dataclass(frozen=True)
class MixingLawLandscape(Landscape):
    """Data Mixing Laws style: ``l_d = c_d + k_d (N / N_ref)^(-alpha_d) exp(sum_j t_dj r_j)``.

    ``r = allocation / N`` are the proportions and ``N`` the total tokens. Validation domain
    ``d`` gains from training domain ``j`` when ``t_dj < 0``. The budget enters through a power
    law per validation domain, so domains with larger ``alpha_d`` matter less at larger budgets
    and the optimal proportions move with scale.

    Attributes:
        domains: Domain names (training and validation domains are the same).
        floor: ``c_d`` per domain (loss units).
        scale: ``k_d`` per domain (> 0, loss units at ``reference_tokens``).
        alpha: ``alpha_d`` per domain (>= 0).
        interaction: ``t`` (``m x m``): row = validation domain, column = training domain.
        reference_tokens: ``N_ref`` (tokens).
    """

    domains: tuple[str, ...]
    floor: tuple[float, ...]
    scale: tuple[float, ...]
    alpha: tuple[float, ...]
    interaction: tuple[tuple[float, ...], ...]
    reference_tokens: float = REFERENCE_TOKENS
    seed: int = dataclasses.field(default=0, kw_only=True)
    noise: float = dataclasses.field(default=0.0, kw_only=True)
    seed_noise: float = dataclasses.field(default=0.0, kw_only=True)
    domain_share: float = dataclasses.field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        m = self._validate_domains()
        object.__setattr__(self, "floor", _vector("floor", self.floor, m))
        object.__setattr__(self, "scale", _vector("scale", self.scale, m, positive=True))
        object.__setattr__(self, "alpha", _vector("alpha", self.alpha, m, nonneg=True))
        object.__setattr__(self, "interaction", _matrix("interaction", self.interaction, m))
        object.__setattr__(
            self, "reference_tokens", check_number(self.reference_tokens, "reference_tokens", positive=True)
        )
        self._validate_noise()

    def _per_domain(self, w: np.ndarray, tokens: float) -> tuple[np.ndarray, np.ndarray]:
        t = np.array(self.interaction)
        size = np.array(self.scale) * (tokens / self.reference_tokens) ** (-np.array(self.alpha))
        term = size * np.exp(t @ w)
        values = np.array(self.floor) + term
        jac = term[:, None] * t
        return values, jac

    def params(self) -> dict[str, Any]:
        return self._params_dict(
            "mixing_law",
            floor=list(self.floor),
            scale=list(self.scale),
            alpha=list(self.alpha),
            interaction=[list(r) for r in self.interaction],
            reference_tokens=self.reference_tokens,
        )


# --------------------------------------------------------------------------- random families
def _rng(seed: int, family: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([_seed_int(seed), 1000 + family]))


def _power_law_params(
    rng: np.random.Generator, k: int, ref: float, mixing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw (gamma, N0, beta, E) for the power-law families, calibrated at ``ref`` tokens.

    A target optimum is drawn first: multipliers ``n_d ~ U(0.3, 2)`` of the base share
    ``ref / k`` (renormalised to sum to ``k``; the authors' 1.2B optimum spans 0.2 to 1.85). The
    ``beta_d`` equalise the marginal gains ``beta_d gamma_d M_d^(-gamma_d - 1)`` there (``M`` the
    effective tokens), so for the separable family that mixture is the exact unbounded optimum
    at ``ref``. They are then scaled so the reducible part of the mean loss at a uniform mixture
    of ``ref`` is 2 nats.
    """
    gamma = rng.uniform(0.3, 0.9, k)
    offset = rng.uniform(2.0, 7.0, k) * ref / k
    mult = rng.uniform(0.3, 2.0, k)
    mult *= k / mult.sum()
    eff_opt = mixing @ (mult * ref / k) + offset
    beta = eff_opt ** (gamma + 1.0) / gamma
    eff_uniform = mixing @ np.full(k, ref / k) + offset
    beta *= 2.0 / float(np.sum(beta * eff_uniform ** (-gamma)))
    irreducible = rng.uniform(1.5, 3.0, k)
    return gamma, offset, beta, irreducible


def separable(
    m: int | None = None,
    *,
    domains: Sequence[str] | None = None,
    seed: int = 0,
    noise: float = 0.0,
    seed_noise: float = 0.0,
    domain_share: float = 0.0,
    reference_tokens: float = REFERENCE_TOKENS,
) -> SeparableLandscape:
    """A random, realistic separable power-law landscape (the model AutoScale assumes).

    Parameters are drawn from ``seed``: exponents ``gamma_d ~ U(0.3, 0.9)``, offsets ``N0_d``
    of ``U(2, 7)`` base shares ``reference_tokens / m`` (the range of the authors' fitted
    ``a``), irreducible losses ``E_d ~ U(1.5, 3)``. The ``beta_d`` are chosen so that the
    unbounded optimum at ``reference_tokens`` is a drawn interior mixture with ``U(0.3, 2)``
    base shares per domain (renormalised), and so that the reducible part of the mean loss at a
    uniform mixture of ``reference_tokens`` is 2 nats. With the default reference of 1e8 tokens
    the mean loss is about 4.3 nats at 1e8 and about 3 at 4e9, mean |x3 effect| at 1e8 is about
    0.05, and the optimum moves by a total-variation distance of about 0.17 between 1e8 and 4e9
    (reusing the 4e8 optimum at 4e9 keeps about two thirds of the uniform-to-oracle gain).

    Args:
        m: Number of domains (default 7); or give ``domains``.
        domains: Domain names (default: ``d0, d1, ...``; see :func:`default_domains`).
        seed: Seed of the parameters and of the noise.
        noise: Per-run noise sigma (loss units).
        seed_noise: Seed-shared noise sigma (loss units).
        domain_share: Fraction of the mean loss's noise variance drawn independently per domain
            (:attr:`Landscape.domain_share`; default 0: every domain shifted by the same draw).
        reference_tokens: Budget (tokens) the parameters are calibrated at.

    Example:
        .. code-block:: python

            from optuna_autoscale.simulate import separable

            land = separable(7, seed=1)
            small, large = land.oracle(1e8), land.oracle(4e9)
            print({d: round(large[d] / 4e9 - small[d] / 1e8, 3) for d in land.domains})
    """
    doms = _resolve_domains(m, domains)
    k = len(doms)
    ref = check_number(reference_tokens, "reference_tokens", positive=True)
    rng = _rng(seed, 1)
    gamma, offset, beta, irreducible = _power_law_params(rng, k, ref, np.eye(k))
    return SeparableLandscape(
        doms, irreducible, beta, offset, gamma, seed=seed, noise=noise, seed_noise=seed_noise, domain_share=domain_share
    )


def transfer(
    m: int | None = None,
    *,
    domains: Sequence[str] | None = None,
    seed: int = 0,
    noise: float = 0.0,
    seed_noise: float = 0.0,
    domain_share: float = 0.0,
    reference_tokens: float = REFERENCE_TOKENS,
    density: float = 0.5,
    strength: float = 0.25,
) -> TransferLandscape:
    """A random cross-domain transfer landscape (misspecified for the separable law).

    Like :func:`separable`, but each off-diagonal ``T_dk`` is, with probability ``density``,
    drawn from ``U(0, strength)`` (else 0): that fraction of domain ``k``'s tokens counts for
    domain ``d``'s loss term. The ``beta_d`` equalise each domain's *own* marginal gain at a drawn
    interior mixture (with the transfer counted in the effective tokens), so the optimum at the
    reference budget is near, not at, that mixture. With the defaults (7 domains, seeds 0-9) the
    mean loss is about 4.4 nats at 1e8 tokens and 2.9 at 4e9, mean |x3 effect| at 1e8 is about
    0.06, the 1e8 optimum leaves one or two domains at zero, and the optimum moves by a
    total-variation distance of about 0.33 between 1e8 and 4e9 (reusing the 4e8 optimum at
    4e9 keeps about 70% of the uniform-to-oracle gain).

    Args:
        m: Number of domains (default 7); or give ``domains``.
        domains: Domain names.
        seed: Seed of the parameters and of the noise.
        noise: Per-run noise sigma (loss units).
        seed_noise: Seed-shared noise sigma (loss units).
        domain_share: Fraction of the mean loss's noise variance drawn independently per domain
            (:attr:`Landscape.domain_share`; default 0: every domain shifted by the same draw).
        reference_tokens: Budget (tokens) the parameters are calibrated at.
        density: Probability in [0, 1] that a pair of domains transfers.
        strength: Largest transfer fraction (>= 0).

    Example:
        .. code-block:: python

            from optuna_autoscale.simulate import transfer

            land = transfer(5, seed=0)
            print(land.oracle(1e8))
    """
    doms = _resolve_domains(m, domains)
    k = len(doms)
    ref = check_number(reference_tokens, "reference_tokens", positive=True)
    dens = check_number(density, "density", nonneg=True)
    if dens > 1:
        raise ValueError(f"density must be in [0, 1], got {density!r}.")
    stren = check_number(strength, "strength", nonneg=True)
    rng = _rng(seed, 2)
    t = np.where(rng.random((k, k)) < dens, rng.uniform(0.0, stren, (k, k)), 0.0)
    np.fill_diagonal(t, 0.0)
    gamma, offset, beta, irreducible = _power_law_params(rng, k, ref, np.eye(k) + t)
    return TransferLandscape(
        doms, irreducible, beta, offset, gamma, t, seed=seed, noise=noise, seed_noise=seed_noise, domain_share=domain_share
    )


def mixing_law(
    m: int | None = None,
    *,
    domains: Sequence[str] | None = None,
    seed: int = 0,
    noise: float = 0.0,
    seed_noise: float = 0.0,
    domain_share: float = 0.0,
    reference_tokens: float = REFERENCE_TOKENS,
) -> MixingLawLandscape:
    """A random Data-Mixing-Laws landscape (exponential in proportions, misspecified).

    ``l_d = c_d + k_d (N / N_ref)^(-alpha_d) exp(sum_j t_dj r_j)`` with ``c_d ~ U(1.5, 3)``,
    ``alpha_d ~ U(0.05, 0.5)``, self-interaction ``t_dd ~ -U(1.5, 4)`` (more of a domain lowers
    its own loss), off-diagonal ``t_dj ~ U(-0.6, 0.3)``, and ``k_d`` set so that the
    reducible part at a uniform mixture of ``N_ref`` is ``U(0.8, 2)`` nats. With the defaults
    (7 domains, seeds 0-9) the mean loss is about 3.6 nats at 1e8 tokens and 2.8 at 4e9, and
    the optimum moves by a total-variation distance of about 0.39 between them (reusing the 4e8
    optimum at 4e9 keeps about 75% of the uniform-to-oracle gain). Some x3 effects are
    positive: more of one domain dilutes the others.

    Args:
        m: Number of domains (default 7); or give ``domains``.
        domains: Domain names.
        seed: Seed of the parameters and of the noise.
        noise: Per-run noise sigma (loss units).
        seed_noise: Seed-shared noise sigma (loss units).
        domain_share: Fraction of the mean loss's noise variance drawn independently per domain
            (:attr:`Landscape.domain_share`; default 0: every domain shifted by the same draw).
        reference_tokens: ``N_ref`` (tokens).

    Example:
        .. code-block:: python

            from optuna_autoscale.simulate import mixing_law

            land = mixing_law(4, seed=0)
            print(land.oracle(1e8), land.oracle(1e10))
    """
    doms = _resolve_domains(m, domains)
    k = len(doms)
    ref = check_number(reference_tokens, "reference_tokens", positive=True)
    rng = _rng(seed, 3)
    floor = rng.uniform(1.5, 3.0, k)
    alpha = rng.uniform(0.05, 0.5, k)
    t = rng.uniform(-0.6, 0.3, (k, k))
    np.fill_diagonal(t, -rng.uniform(1.5, 4.0, k))
    value = rng.uniform(0.8, 2.0, k)
    scale = value / np.exp(t @ np.full(k, 1.0 / k))
    return MixingLawLandscape(
        doms, floor, scale, alpha, t, ref, seed=seed, noise=noise, seed_noise=seed_noise, domain_share=domain_share
    )


def landscape_from_config(config: SimulateConfig) -> Landscape:
    """The landscape that a run config's ``[simulate]`` table describes (its ``family`` is a factory of this module)."""
    factory = globals()[config.family]
    if isinstance(config.domains, int):
        return factory(config.domains, seed=config.seed, noise=config.noise, seed_noise=config.seed_noise)
    return factory(domains=list(config.domains), seed=config.seed, noise=config.noise, seed_noise=config.seed_noise)
