"""DDO design points per budget, identified deterministically.

A :class:`Design` lists every run AutoScale needs, from its constructor arguments alone:

- per budget ``N_b`` (tokens): one *base* run at the base shares ``p`` (uniform by default),
  one *perturb* run per domain and multiplier (only that domain's tokens scaled, so the total
  changes, as in the paper), and ``replicates`` extra base runs with other seeds;
- with ``design_seeds = k > 1``: every budget's base run and perturbations again, as *copies*
  ``1 .. k-1``, each copy with its own seed (keys ``b{i}/s{c}/base``,
  ``b{i}/s{c}/perturb/x{k}/{domain}``; copy 0 keeps the keys ``b{i}/base`` ... and the seed of
  ``design_seeds=1``);
- with ``verify``: after a budget's design completes, a *verify_optimum* run at its fitted
  optimum; at the held-out budget ``sqrt(N_min N_max)`` (only with two or more budgets) a
  *verify_uniform* run and, once every budget's design is complete, a *verify_predicted* run
  at the joint law's optimum, with the same seed as the uniform run.

Every run of one budget's design (one copy of it, with ``design_seeds``) shares one seed
(common random numbers), so that differences between its runs cancel the seed's noise; the
joint law fits one offset per such (budget, seed) group.

What the trials in storage say about the design (claims, completions, the next point) is
:class:`~optuna_autoscale.ledger.Ledger`'s job; this module imports no Optuna.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import json
import math
from typing import Any

import numpy as np

from optuna_autoscale._validation import check_known_domains
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.mixture import validate_domains


__all__ = [
    "CONFIG_ATTR",
    "DEFAULT_MULTIPLIERS",
    "DEFAULT_REACH",
    "POINT_ATTR",
    "ROLES",
    "DESIGN_ROLES",
    "VERIFY_ROLES",
    "Design",
    "DesignPoint",
    "HELDOUT_PREDICTED_KEY",
    "HELDOUT_UNIFORM_KEY",
    "derive_seed",
    "key_budget_index",
    "reach_multipliers",
    "verify_optimum_index",
    "verify_optimum_key",
]

POINT_ATTR = "autoscale:point"
"""Trial system attr holding the trial's :class:`DesignPoint` as JSON."""
CONFIG_ATTR = "autoscale:config"
"""Study system attr holding the :class:`Design` configuration as JSON-ready dict."""

DEFAULT_MULTIPLIERS: tuple[float, ...] = (0.02, 3.0)
"""Default perturbations: one domain's tokens x0.02 (nearly removed) and x3.

The paper uses x0.2 and x3. A near-removal run measures what a domain's loss is without the
domain: the offset ``N0`` and the transfer from the other domains that the per-domain law needs,
the parameters two budgets identify worst. It also widens the tested region, inside which
recommendations stay, down to shares near 0. Measured (``benchmarks/RESULTS.md``, "The near-zero
design"), with the same number of runs: on the simulator the guarded default recovers 74 / 77 / 96%
of the gain at SNR 6 (63 / 79 / 88% with x0.2), 86% on the tuning seeds (84%); on the real
proxies its recommendation at 10x stays at uniform, where x0.2's ties uniform (+0.006).

With more than four domains the largest multiplier is raised per domain by :data:`DEFAULT_REACH`."""

DEFAULT_REACH: float | None = 0.5
"""Default reach of the largest perturbation: the share of a run's tokens it gives its domain at least.

A domain's largest multiplier is raised, where it falls short, to ``reach (1 - w) / (w (1 - reach))``
for a domain of base share ``w`` (:func:`reach_multipliers`): x3 gives a domain a third of the tokens
among 7 uniform domains and a seventh among 17, while recommendations stay inside the shares the runs
tested, and a landscape's optimum may give one domain more. With 4 uniform domains or fewer x3
already reaches half, so nothing changes there. Measured on the simulator's 7 domains (x6 instead
of x3; ``benchmarks/RESULTS.md``, "Reaching half the tokens"): the guarded default recovers 96% of
the oracle's gain on the tuning seeds (91% with x3) and 97% on the reported ones, for 19% more
design compute. ``None``: the multipliers as given (the paper's design: ``multipliers=(0.2, 3.0),
reach=None``)."""


def reach_multipliers(share: float, multipliers: Sequence[float], reach: float | None) -> tuple[float, ...]:
    """The multipliers of a domain of base ``share``: ``multipliers`` with the largest raised, where needed, so
    that its perturbation run gives the domain at least ``reach`` of the run's tokens (rounded up to 3
    significant digits).

    Example:
        .. code-block:: python

            from optuna_autoscale.design import reach_multipliers

            assert reach_multipliers(1 / 7, (0.02, 3.0), 0.5) == (0.02, 6.0)  # 6 / (6 + 6) = half
            assert reach_multipliers(1 / 4, (0.02, 3.0), 0.5) == (0.02, 3.0)  # x3 already reaches half
            assert reach_multipliers(1 / 7, (0.02, 3.0), None) == (0.02, 3.0)
    """
    ks = tuple(float(k) for k in multipliers)
    top = max(ks)
    if reach is None or top <= 1.0 or not 0.0 < share < 1.0:
        return ks
    need = reach * (1.0 - share) / (share * (1.0 - reach))
    if need <= top:
        return ks
    # Rounded up to 3 significant digits (readable trial keys such as ``x6.0``), so the share is never below reach;
    # the tolerance keeps a float error such as 6.000000000000001 at 6.
    step = 10.0 ** (math.floor(math.log10(need)) - 2)
    need = round(math.ceil(need / step - 1e-9) * step, 12)
    return tuple(need if k == top else k for k in ks)


def _check_reach(reach: Any) -> float | None:
    if reach is None:
        return None
    if isinstance(reach, bool) or not isinstance(reach, (int, float, np.integer, np.floating)) or not 0 < reach < 1:
        raise ValueError(f"reach must be a share strictly between 0 and 1 (e.g. 0.5), or None for the multipliers as "
                         f"given, got {reach!r}.")
    return float(reach)

ROLES = ("base", "perturb", "replicate", "verify_optimum", "verify_uniform", "verify_predicted")
DESIGN_ROLES = ("base", "perturb", "replicate")
VERIFY_ROLES = ("verify_optimum", "verify_uniform", "verify_predicted")

_HELDOUT = "heldout"

# Design-point keys: ``b{i}/...`` for budget ``i``'s points, ``heldout/...`` for the held-out budget's.
HELDOUT_PREDICTED_KEY = f"{_HELDOUT}/verify_predicted"
"""Key of the run at the mixture predicted for the held-out budget."""
HELDOUT_UNIFORM_KEY = f"{_HELDOUT}/verify_uniform"
"""Key of the uniform-mixture run at the held-out budget (the reference of the prediction)."""


def base_key(index: int) -> str:
    """Key of budget ``index``'s base run: ``b{index}/base``."""
    return f"b{index}/base"


def group_key(index: int, seed: int) -> str:
    """The joint law's offset group of the runs of budget ``index`` with ``seed``: ``b{index}/s{seed}``."""
    return f"b{index}/s{seed}"


def verify_optimum_key(index: int) -> str:
    """Key of the run at budget ``index``'s fitted optimum: ``b{index}/verify_optimum``."""
    return f"b{index}/verify_optimum"


def verify_optimum_index(key: str) -> int | None:
    """The budget index of a ``b{i}/verify_optimum`` key; None for every other key."""
    return int(key.split("/")[0][1:]) if key.endswith("/verify_optimum") else None


def filler_key(number: int) -> str:
    """Key of the extra base-run replicate that trial ``number`` runs when it found no open point."""
    return f"b0/replicate/t{number}"


def is_filler_key(key: str) -> bool:
    """Whether ``key`` is a filler replicate's (:func:`filler_key`)."""
    return key.startswith("b0/replicate/t")


def key_budget_index(key: str, n_budgets: int) -> int:
    """The budget index of a point key: ``i`` for ``b{i}/...``, ``n_budgets`` (the held-out budget) for ``heldout/...``."""
    return int(key.split("/")[0][1:]) if key.startswith("b") else n_budgets


def derive_seed(base_seed: int, *words: int) -> int:
    """A deterministic seed in ``[0, 2**31)`` from ``base_seed`` and integer words.

    Every process computes the same value, so workers agree on the seeds of design points.
    """
    ss = np.random.SeedSequence([int(base_seed) % (1 << 32), *[int(w) % (1 << 32) for w in words]])
    return int(ss.generate_state(1, dtype=np.uint32)[0] >> 1)


@dataclasses.dataclass(frozen=True)
class DesignPoint:
    """One run of the AutoScale design.

    Attributes:
        key: Unique id of the point within a study (e.g. ``"b0/perturb/web/x3"``).
        role: One of :data:`ROLES`.
        budget: Nominal budget (tokens) of the design the point belongs to. The point's own
            total (``sum(allocation)``) differs for perturbations.
        budget_index: Index of ``budget`` in the sorted budgets; the held-out budget has index
            ``len(budgets)``.
        domain: The perturbed domain (``perturb`` points) or None.
        multiplier: The multiplier applied to ``domain``'s tokens (``perturb``), else None.
        seed: The seed the objective should use.
        allocation: Tokens per domain.
    """

    key: str
    role: str
    budget: float
    budget_index: int
    domain: str | None = None
    multiplier: float | None = None
    seed: int = 0
    allocation: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Unknown design role {self.role!r}; expected one of {ROLES}.")

    @property
    def tokens(self) -> float:
        """Total tokens of the run (``sum(allocation)``)."""
        if self.allocation is None:
            raise ValueError(f"Design point {self.key!r} has no allocation yet.")
        return float(sum(self.allocation.values()))

    def mixture(self, domains: Sequence[str] | None = None) -> Mixture:
        """The point as a :class:`~optuna_autoscale.Mixture` (deterministic, bit for bit)."""
        if self.allocation is None:
            raise ValueError(f"Design point {self.key!r} has no allocation yet.")
        doms = tuple(domains) if domains is not None else tuple(self.allocation)
        return Mixture.from_allocation({d: float(self.allocation[d]) for d in doms}, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {
            "key": self.key,
            "role": self.role,
            "budget": float(self.budget),
            "budget_index": int(self.budget_index),
            "domain": self.domain,
            "multiplier": None if self.multiplier is None else float(self.multiplier),
            "seed": int(self.seed),
        }
        if self.allocation is not None:
            out["allocation"] = {d: float(v) for d, v in self.allocation.items()}
        return out

    def to_json(self) -> str:
        """Compact JSON (stored in the trial system attr :data:`POINT_ATTR`)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesignPoint:
        """Inverse of :meth:`to_dict`."""
        try:
            alloc = data.get("allocation")
            return cls(
                key=str(data["key"]),
                role=str(data["role"]),
                budget=float(data["budget"]),
                budget_index=int(data["budget_index"]),
                domain=data.get("domain"),
                multiplier=None if data.get("multiplier") is None else float(data["multiplier"]),
                seed=int(data.get("seed", 0)),
                allocation=None if alloc is None else {str(k): float(v) for k, v in alloc.items()},
            )
        except KeyError as e:
            raise ValueError(f"A design point dict needs {e}; got keys {sorted(data)}.") from None

    @classmethod
    def from_json(cls, text: str) -> DesignPoint:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _check_budgets(budgets: Any) -> tuple[float, ...]:
    if isinstance(budgets, (int, float, np.integer, np.floating)) and not isinstance(budgets, bool):
        raise TypeError(
            f"budgets must be a sequence of token budgets, got the single number {budgets!r}; "
            f"wrap it in a list, e.g. [{budgets!r}]."
        )
    try:
        raw = list(budgets)
    except TypeError:
        raise TypeError(f"budgets must be a sequence of token budgets, got {budgets!r}.") from None
    if not raw:
        raise ValueError("budgets is empty; give at least one training budget in tokens, e.g. [1e8, 4e8].")
    out = []
    for b in raw:
        try:
            v = float(b)
        except (TypeError, ValueError):
            raise ValueError(f"budgets must be numbers of training tokens, got {b!r}.") from None
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"Every budget must be a finite, positive number of tokens; got {b!r} in {raw!r}.")
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"Duplicate budgets in {raw!r}; each budget must appear once.")
    return tuple(sorted(out))


def _check_multipliers(multipliers: Any) -> tuple[float, ...]:
    try:
        raw = list(multipliers)
    except TypeError:
        raise TypeError(f"multipliers must be a sequence of numbers, got {multipliers!r}.") from None
    out = []
    for k in raw:
        try:
            v = float(k)
        except (TypeError, ValueError):
            raise ValueError(f"multipliers must be numbers, got {k!r}.") from None
        if not math.isfinite(v) or v <= 0:
            raise ValueError(
                f"Every multiplier must be a finite number > 0 (a domain's tokens are scaled by it); "
                f"got {k!r} in {raw!r}."
            )
        if v == 1.0:
            raise ValueError(
                f"A multiplier of 1 repeats the base run; drop it from {raw!r} (the base run is always in the design)."
            )
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"Duplicate multipliers in {raw!r}; each multiplier must appear once.")
    if len(out) < 2:
        raise ValueError(
            f"Give at least two multipliers (got {raw!r}): the per-domain law (x + a)^-b + c has three "
            "parameters, so each domain needs the base run plus two perturbations, e.g. (0.2, 3.0)."
        )
    return tuple(sorted(out))


def _check_base(base: Mapping[str, float] | None, domains: tuple[str, ...]) -> dict[str, float]:
    if base is None:
        return {d: 1.0 / len(domains) for d in domains}
    if isinstance(base, Mixture):
        base = base.weights
    if not isinstance(base, Mapping):
        raise TypeError(f"base must map each domain to its share of the base run, got {base!r}.")
    check_known_domains(base, domains, "base")
    missing = [d for d in domains if d not in base]
    if missing:
        raise ValueError(f"base has no share for domains {missing!r}; give a positive share for every domain.")
    vals = {}
    for d in domains:
        try:
            v = float(base[d])
        except (TypeError, ValueError):
            raise ValueError(f"base share of {d!r} must be a number, got {base[d]!r}.") from None
        if not math.isfinite(v) or v <= 0:
            raise ValueError(
                f"base share of {d!r} must be finite and > 0 (a perturbation of zero tokens measures nothing), "
                f"got {base[d]!r}."
            )
        vals[d] = v
    total = sum(vals.values())
    if abs(total - 1.0) <= 1e-12:  # already shares: kept as given, so that a stored design reads back equal
        return vals
    return {d: v / total for d, v in vals.items()}


def _check_bounds(
    bounds: Mapping[str, tuple[float | None, float | None]] | None, domains: tuple[str, ...]
) -> dict[str, tuple[float, float]]:
    out = {d: (0.0, math.inf) for d in domains}
    if bounds is None:
        return out
    if not isinstance(bounds, Mapping):
        raise TypeError(f"bounds must map a domain to (lower, upper) tokens, got {bounds!r}.")
    check_known_domains(bounds, domains, "bounds")
    for d, pair in bounds.items():
        try:
            lo_raw, hi_raw = pair
        except (TypeError, ValueError):
            raise ValueError(
                f"bounds[{d!r}] must be a (lower, upper) pair of tokens (None for no bound), got {pair!r}."
            ) from None
        try:
            lo = 0.0 if lo_raw is None else float(lo_raw)
            hi = math.inf if hi_raw is None else float(hi_raw)
        except (TypeError, ValueError):
            raise ValueError(f"bounds[{d!r}] must hold numbers of tokens, got {pair!r}.") from None
        if math.isnan(lo) or math.isnan(hi) or lo < 0 or math.isinf(lo):
            raise ValueError(f"bounds[{d!r}] = {pair!r}: the lower bound must be a finite number of tokens >= 0.")
        if hi < lo:
            raise ValueError(f"bounds[{d!r}] = {pair!r} is infeasible: upper < lower.")
        if hi <= 0:
            raise ValueError(f"bounds[{d!r}] = {pair!r}: the upper bound must be > 0 tokens.")
        out[d] = (lo, hi)
    return out


def _check_design_seeds(design_seeds: Any) -> int:
    if isinstance(design_seeds, bool) or not isinstance(design_seeds, (int, np.integer)) or design_seeds < 1:
        raise ValueError(
            f"design_seeds must be an integer >= 1 (how many seeds each budget's whole design runs with; "
            f"1 = one seed, the plain design), got {design_seeds!r}."
        )
    return int(design_seeds)


class Design:
    """The full AutoScale design, from the sampler's constructor arguments alone.

    Args:
        domains: Domain names, unique.
        budgets: Training budgets in tokens (sorted ascending internally).
        base: Domain -> share of the base run (normalised); uniform when None.
        multipliers: Factors applied to one domain's tokens in the perturbation runs.
        reach: The largest multiplier is raised per domain, where needed, until its run gives the domain at
            least this share of the tokens (:data:`DEFAULT_REACH`, :func:`reach_multipliers`; ``None``: the
            multipliers as given). :meth:`domain_multipliers` gives each domain's.
        bounds: Domain -> (lower, upper) tokens for the optimal allocations (None for no bound).
        replicates: Extra base runs per budget, each with its own seed.
        verify: Add the verification runs.
        seed: Base of every derived seed (``0`` when None, so that workers agree).
        design_seeds: How many times each budget's base run and perturbations run, each copy
            with its own seed (integer >= 1). Copy 0 is the design of ``design_seeds=1``
            (same keys and seed); copies ``c >= 1`` have keys ``b{i}/s{c}/...`` and seed
            :meth:`copy_seed`. Each copy is its own common-random-numbers group.

    Example:
        .. code-block:: python

            from optuna_autoscale.design import Design

            design = Design(["web", "code"], [1e8, 4e8])
            assert len(design.points) == 2 * (1 + 2 * 2) + 1  # base + 2x2 perturbations, + uniform
            twice = Design(["web", "code"], [1e8, 4e8], design_seeds=2)  # each budget's design, 2 seeds
            assert len(twice.points) == 2 * 2 * (1 + 2 * 2) + 1
    """

    def __init__(
        self,
        domains: Sequence[str],
        budgets: Sequence[float],
        *,
        base: Mapping[str, float] | None = None,
        multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        replicates: int = 0,
        verify: bool = True,
        seed: int | None = None,
        design_seeds: int = 1,
        reach: float | None = DEFAULT_REACH,
    ) -> None:
        self.domains = validate_domains(domains)
        self.budgets = _check_budgets(budgets)
        self.multipliers = _check_multipliers(multipliers)
        self.base = _check_base(base, self.domains)
        self.reach = _check_reach(reach)
        self.bounds = _check_bounds(bounds, self.domains)
        if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 0:
            raise ValueError(f"replicates must be an integer >= 0, got {replicates!r}.")
        self.replicates = int(replicates)
        self.verify = bool(verify)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an integer or None, got {seed!r}.")
        self.seed = 0 if seed is None else int(seed)
        self.design_seeds = _check_design_seeds(design_seeds)
        self.heldout: float | None = (
            math.sqrt(self.budgets[0] * self.budgets[-1]) if self.verify and len(self.budgets) >= 2 else None
        )
        self._check_feasible()
        self._check_seeds()
        self.points: tuple[DesignPoint, ...] = self._static_points()
        self.dynamic_keys: tuple[str, ...] = self._dynamic_keys()
        self._by_key = {p.key: p for p in self.points}
        self._budget_keys: dict[int, tuple[str, ...]] = {
            i: tuple(p.key for p in self.points if p.budget_index == i and p.role in DESIGN_ROLES)
            for i in range(len(self.budgets))
        }
        totals = [p.tokens for p in self.points] + list(self.budgets)
        lo, hi = min(totals), max(totals)
        # A hair of slack so that every proposal lies inside, whatever the rounding.
        self.tokens_range: tuple[float, float] = (lo * (1 - 1e-9), hi * (1 + 1e-9))

    # ----------------------------------------------------------------------------- validation
    def _check_feasible(self) -> None:
        lo = sum(b[0] for b in self.bounds.values())
        hi = sum(b[1] for b in self.bounds.values())
        checks = [(b, "budget") for b in self.budgets]
        if self.heldout is not None:
            checks.append((self.heldout, "held-out verification budget"))
        for n, what in checks:
            if lo > n * (1 + 1e-12):
                raise ValueError(
                    f"Infeasible bounds: the lower bounds sum to {lo:.6g} tokens, more than the {what} {n:.6g}. "
                    "Lower some lower bounds or raise the budget."
                )
            if hi < n * (1 - 1e-12):
                raise ValueError(
                    f"Infeasible bounds: the upper bounds sum to {hi:.6g} tokens, less than the {what} {n:.6g}. "
                    "Raise some upper bounds (e.g. allow more epochs) or lower the budget."
                )

    def _check_seeds(self) -> None:
        """Every design group's seed differs from every other run seed of the design.

        Copies (tag 3), replicates (tag 1) and budgets (tag 0) derive their seeds with distinct
        tags, so a clash has probability ~1e-9; this makes it a guarantee (the joint law groups
        runs by budget and seed, so a replicate sharing a copy's seed would join its group).
        Checked only with copies, so that a design of ``design_seeds=1`` is exactly the one it was.
        """
        if self.design_seeds == 1:
            return
        seen: dict[int, str] = {}
        n = len(self.budgets) + (1 if self.heldout is not None else 0)
        runs = [(self.budget_seed(i), f"budget {i}") for i in range(n)]
        runs += [
            (self.copy_seed(i, c), f"budget {i} copy {c}")
            for i in range(len(self.budgets))
            for c in range(1, self.design_seeds)
        ]
        runs += [
            (self.replicate_seed(i, r), f"budget {i} replicate {r}")
            for i in range(len(self.budgets))
            for r in range(1, self.replicates + 1)
        ]
        for s, what in runs:
            if s in seen:
                raise ValueError(
                    f"The derived seeds of {seen[s]} and {what} coincide ({s}) for seed={self.seed}; "
                    "use another seed."
                )
            seen[s] = what

    # ----------------------------------------------------------------------------- seeds
    def budget_seed(self, index: int) -> int:
        """The seed shared by every run of budget ``index``'s design (``len(budgets)``: held out).

        With ``design_seeds > 1`` this is the seed of copy 0; see :meth:`copy_seed`.
        """
        return derive_seed(self.seed, 0, index)

    def copy_seed(self, index: int, copy: int) -> int:
        """The seed of copy ``copy`` (0-based, ``< design_seeds``) of budget ``index``'s design.

        Copy 0 has :meth:`budget_seed`; the others derive with their own tag, so they never
        equal a replicate's or a filler's seed.
        """
        if not 0 <= copy < self.design_seeds:
            raise ValueError(
                f"copy must be in [0, {self.design_seeds}) (design_seeds={self.design_seeds}), got {copy!r}."
            )
        return self.budget_seed(index) if copy == 0 else derive_seed(self.seed, 3, index, copy)

    def copy_seeds(self, index: int) -> tuple[int, ...]:
        """The seeds of budget ``index``'s design copies, copy 0 first (one per CRN group)."""
        return tuple(self.copy_seed(index, c) for c in range(self.design_seeds))

    def replicate_seed(self, index: int, replicate: int) -> int:
        """The seed of the ``replicate``-th extra base run (1-based) of budget ``index``."""
        return derive_seed(self.seed, 1, index, replicate)

    # ----------------------------------------------------------------------------- points
    def base_allocation(self, index: int) -> dict[str, float]:
        """Tokens per domain of budget ``index``'s base run."""
        n = self.budgets[index]
        return {d: self.base[d] * n for d in self.domains}

    def lower_bounds(self) -> dict[str, float]:
        """Domain -> lower bound (tokens)."""
        return {d: b[0] for d, b in self.bounds.items()}

    def upper_bounds(self) -> dict[str, float]:
        """Domain -> upper bound (tokens; ``inf`` when unbounded)."""
        return {d: b[1] for d, b in self.bounds.items()}

    def _static_points(self) -> tuple[DesignPoint, ...]:
        pts: list[DesignPoint] = []
        for i, n in enumerate(self.budgets):
            base = self.base_allocation(i)
            # Copy 0 first (the keys of design_seeds=1), then the other copies, then replicates.
            for c in range(self.design_seeds):
                seed = self.copy_seed(i, c)
                prefix = f"b{i}" if c == 0 else f"b{i}/s{c}"
                pts.append(DesignPoint(f"{prefix}/base", "base", n, i, seed=seed, allocation=dict(base)))
                for d in self.domains:
                    for k in self.domain_multipliers(d):
                        alloc = dict(base)
                        alloc[d] = base[d] * k
                        pts.append(
                            DesignPoint(f"{prefix}/perturb/x{k!r}/{d}", "perturb", n, i, d, k, seed, alloc)
                        )
            for r in range(1, self.replicates + 1):
                pts.append(
                    DesignPoint(
                        f"b{i}/replicate/{r}", "replicate", n, i, seed=self.replicate_seed(i, r), allocation=dict(base)
                    )
                )
        if self.heldout is not None:
            h = self.heldout
            pts.append(
                DesignPoint(
                    HELDOUT_UNIFORM_KEY,
                    "verify_uniform",
                    h,
                    len(self.budgets),
                    seed=self.budget_seed(len(self.budgets)),
                    allocation={d: h / len(self.domains) for d in self.domains},
                )
            )
        return tuple(pts)

    def _dynamic_keys(self) -> tuple[str, ...]:
        if not self.verify:
            return ()
        keys = [verify_optimum_key(i) for i in range(len(self.budgets))]
        if self.heldout is not None:
            keys.append(HELDOUT_PREDICTED_KEY)
        return tuple(keys)

    def point(self, key: str) -> DesignPoint | None:
        """The static point with ``key`` (None for dynamic or filler keys)."""
        return self._by_key.get(key)

    def budget_keys(self, index: int) -> tuple[str, ...]:
        """Keys of budget ``index``'s design runs (base, perturbations of every copy, replicates)."""
        return self._budget_keys[index]

    def dynamic_point(self, key: str, allocation: Mapping[str, float] | None) -> DesignPoint:
        """The verification point ``key`` at ``allocation`` (tokens per domain).

        With ``allocation=None`` it is a *reservation*: the claim a worker stores before it
        fits the laws that give the allocation, so that other workers see the point taken.
        """
        alloc = None if allocation is None else {d: float(allocation[d]) for d in self.domains}
        if key == HELDOUT_PREDICTED_KEY:
            assert self.heldout is not None
            return DesignPoint(
                key, "verify_predicted", self.heldout, len(self.budgets), seed=self.budget_seed(len(self.budgets)),
                allocation=alloc,
            )
        i = verify_optimum_index(key)
        if i is not None:
            return DesignPoint(
                key, "verify_optimum", self.budgets[i], i, seed=self.budget_seed(i), allocation=alloc
            )
        raise KeyError(f"{key!r} is not a verification key of this design.")

    def filler(self, number: int) -> DesignPoint:
        """The extra base-run replicate (smallest budget, fresh seed) given to trial ``number``.

        Used, up to ``AutoScaleSampler(filler_replicates=k)``, when every open point is running or
        waits on a fit.
        """
        return DesignPoint(
            filler_key(number),
            "replicate",
            self.budgets[0],
            0,
            seed=derive_seed(self.seed, 2, number),
            allocation=self.base_allocation(0),
        )

    def seed_for_tokens(self, tokens: float) -> int:
        """The seed of the design budget nearest ``tokens`` in log scale (user-enqueued trials)."""
        cands = list(self.budgets) + ([self.heldout] if self.heldout is not None else [])
        j = int(np.argmin([abs(math.log(tokens / c)) for c in cands]))
        return self.budget_seed(j)

    def domain_multipliers(self, domain: str) -> tuple[float, ...]:
        """The multipliers of ``domain``'s perturbation runs (:attr:`multipliers`, the largest raised by
        :attr:`reach` where the domain's base share needs it)."""
        return reach_multipliers(self.base[domain], self.multipliers, self.reach)

    # ----------------------------------------------------------------------------- config
    def to_config(self) -> dict[str, Any]:
        """JSON-ready constructor arguments (stored in the study system attr :data:`CONFIG_ATTR`).

        ``design_seeds`` appears only when it is not 1, and ``reach`` only when it raises some domain's
        multiplier, so a design that these options do not change has the config (and equality, hash) it
        had before they existed.
        """
        out: dict[str, Any] = {
            "domains": list(self.domains),
            "budgets": list(self.budgets),
            "base": dict(self.base),
            "multipliers": list(self.multipliers),
            "bounds": {d: [lo, None if math.isinf(hi) else hi] for d, (lo, hi) in self.bounds.items()},
            "replicates": self.replicates,
            "verify": self.verify,
            "seed": self.seed,
        }
        if self.design_seeds != 1:
            out["design_seeds"] = self.design_seeds
        if any(self.domain_multipliers(d) != self.multipliers for d in self.domains):
            out["reach"] = self.reach  # only where it changes a point: older designs keep their config
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Design:
        """Inverse of :meth:`to_config` (a config without ``design_seeds``, as stored before the
        option existed, has ``design_seeds=1``)."""
        return cls(
            config["domains"],
            config["budgets"],
            base=config.get("base"),
            multipliers=config.get("multipliers", DEFAULT_MULTIPLIERS),
            bounds={d: (v[0], v[1]) for d, v in (config.get("bounds") or {}).items()},
            replicates=int(config.get("replicates", 0)),
            verify=bool(config.get("verify", True)),
            seed=config.get("seed"),
            design_seeds=config.get("design_seeds", 1),
            reach=config.get("reach"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Design) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_config(), sort_keys=True))


def __getattr__(name: str) -> Any:
    # Deprecated aliases: the Optuna-reading half of the design moved to optuna_autoscale.ledger.
    if name in ("Ledger", "UNATTRIBUTED_GRACE_SECONDS", "is_user_trial", "read_design"):
        from optuna_autoscale import ledger

        return getattr(ledger, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
