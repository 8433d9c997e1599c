"""The ``Mixture`` value type and the trial parameters that encode it.

A mixture is a weight per domain (summing to one) plus a total token budget. Inside an Optuna
trial it is encoded as one float parameter per domain, ``weight_<domain>`` in ``[0, 1]``, and
(under :class:`~optuna_autoscale.AutoScaleSampler`) a ``tokens`` parameter.

The single mapping from parameters to weights is the one in Optuna's FAQ for searching a
simplex: ``x_i = -log(u_i)`` and ``w_i = x_i / sum_j x_j``. With ``u_i`` uniform on ``(0, 1]``
the ``x_i`` are Exp(1), so ``w`` is uniform on the simplex (Dirichlet(1, ..., 1)). Every Optuna
sampler (TPE, GP, CMA-ES, QMC, Random) therefore searches the simplex sensibly. The inverse,
``u_i = exp(-w_i)``, is exact up to rounding, and :class:`AutoScaleSampler` proposes exactly
that inverse; :func:`suggest_mixture` then returns the sampler's proposal itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np

from optuna_autoscale._validation import check_tokens


if TYPE_CHECKING:
    import optuna


WEIGHT_PREFIX = "weight_"
"""Prefix of the per-domain trial parameters and user attrs (``weight_<domain>``)."""
TOKENS_PARAM = "tokens"
"""Name of the trial parameter / user attr holding the total training tokens."""
LOSS_PREFIX = "loss_"
"""Prefix of the per-domain validation-loss user attrs written by objectives."""
ROLE_ATTR = "autoscale_role"
"""User attr naming a trial's design role (base / perturb / replicate / verify / user / search)."""
SEED_ATTR = "seed"
"""User attr holding the seed the objective should use."""
DEFAULT_SEED = 0
"""Seed used when the sampler does not choose one: common random numbers across trials."""

_SUM_TOL = 1e-6


def param_name(domain: str) -> str:
    """The trial parameter (and user attr) name of ``domain``'s weight."""
    return f"{WEIGHT_PREFIX}{domain}"


def validate_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """Check that ``domains`` is a non-empty sequence of unique, non-empty strings.

    Raises:
        ValueError: naming the offending domain and how to fix it.
    """
    if isinstance(domains, str):
        raise ValueError(
            f"domains must be a sequence of domain names, got the single string {domains!r}; "
            f"wrap it in a list, e.g. [{domains!r}]."
        )
    out = tuple(domains)
    if len(out) < 2:
        raise ValueError(f"A mixture needs at least 2 domains, got {list(out)!r}.")
    seen: set[str] = set()
    for d in out:
        if not isinstance(d, str) or not d:
            raise ValueError(f"Domain names must be non-empty strings, got {d!r}.")
        if any(c.isspace() for c in d):
            fixed = "_".join(d.split()) or "name"
            raise ValueError(
                f"Domain name {d!r} contains whitespace, which exports such as Megatron's --data-path list "
                f"('0.3 {d} 0.7 ...') would misread; name it without spaces, e.g. {fixed!r}."
            )
        if d in seen:
            raise ValueError(f"Duplicate domain {d!r} in {list(out)!r}; each domain must appear once.")
        seen.add(d)
    return out


def params_to_weights(u: Sequence[float]) -> np.ndarray:
    """Map per-domain parameters ``u_i`` in ``[0, 1]`` to simplex weights (Optuna FAQ mapping).

    ``w_i = -log(u_i) / sum_j -log(u_j)``. A ``u_i`` of 0 is clipped to the smallest positive
    float; if every ``u_i`` is 1 the weights are uniform.

    Raises:
        ValueError: if a value is not finite or lies outside ``[0, 1]``.
    """
    arr = np.asarray(u, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ValueError(
            f"Mixture parameters must be finite numbers in [0, 1], got {arr.tolist()!r}. "
            "Use enqueue_mixture() to enqueue a mixture by its weights."
        )
    # ``+ 0.0`` turns the ``-0.0`` that ``-log(1)`` gives (an enqueued zero weight) into 0.0.
    x = -np.log(np.clip(arr, np.finfo(float).tiny, 1.0)) + 0.0
    total = x.sum()
    if total <= 0.0:
        return np.full(len(arr), 1.0 / len(arr))
    return x / total


def weights_to_params(weights: Sequence[float]) -> np.ndarray:
    """Inverse of :func:`params_to_weights`: ``u_i = exp(-w_i)`` (weights already normalised)."""
    w = np.asarray(weights, dtype=float)
    return np.exp(-w)


class ReadOnlyDict(dict[str, float]):
    """A read-only ``dict``: the weights and allocation of a :class:`Mixture`.

    It is a ``dict`` subclass so that everything that takes a mixture's mapping keeps working
    unchanged: ``json.dumps``, Optuna user attrs, ``dataclasses.asdict``, ``dict(...)``, equality
    with plain dicts, pickling and ``copy``. Every mutating method raises ``TypeError``; it is
    hashable (by its items, order-independent, consistent with ``dict`` equality). ``copy()``
    and ``dict(m)`` give an ordinary, mutable ``dict``.
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> ReadOnlyDict:
        self = super().__new__(cls)
        dict.update(self, *args, **kwargs)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # filled in __new__; re-init is a no-op
        pass

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "A Mixture's weights and allocation are read-only; build a new Mixture instead "
            "(e.g. Mixture.normalised(new_weights, tokens) or dict(mixture.weights) for a mutable copy)."
        )

    __setitem__ = _read_only
    __delitem__ = _read_only
    __ior__ = _read_only
    clear = _read_only
    pop = _read_only
    popitem = _read_only
    setdefault = _read_only
    update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __copy__(self) -> ReadOnlyDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ReadOnlyDict:
        return self

    def copy(self) -> dict[str, float]:  # type: ignore[override]
        """A mutable ``dict`` copy."""
        return dict(self)

    @classmethod
    def fromkeys(cls, iterable: Iterable[Any], value: Any = None) -> ReadOnlyDict:  # type: ignore[override]
        return cls(dict.fromkeys(iterable, value))


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A data mixture: per-domain weights and a total training budget in tokens.

    Mixtures are immutable and hashable: ``weights`` and ``allocation`` are read-only mappings
    (:class:`ReadOnlyDict`, a ``dict`` subclass whose mutating methods raise ``TypeError``), so
    equal mixtures hash equal and a mixture can be a dict key or set member.

    Attributes:
        weights: Domain -> share of the training tokens. Non-negative, finite, summing to 1
            (renormalised on construction; a ``-0.0`` is stored as ``0.0``).
        tokens: Total training tokens.
        seed: The seed the objective should use for model init and data order. Runs sharing a
            seed share their seed noise (common random numbers).

    Example:
        .. code-block:: python

            from optuna_autoscale import Mixture

            mix = Mixture({"web": 0.75, "code": 0.25}, tokens=1e8)
            assert mix.allocation == {"web": 7.5e7, "code": 2.5e7}
    """

    weights: Mapping[str, float]
    tokens: float
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Mapping):
            raise TypeError(
                f"Mixture weights must be a mapping domain -> share, e.g. {{'web': 0.7, 'code': 0.3}}, got "
                f"{type(self.weights).__name__} {self.weights!r}; pair names and shares with dict(zip(domains, shares))."
            )
        validate_domains(self.weights.keys())
        w = {str(k): float(v) for k, v in self.weights.items()}
        bad = {k: v for k, v in w.items() if not math.isfinite(v) or v < 0.0}
        if bad:
            raise ValueError(f"Mixture weights must be finite and non-negative; bad entries: {bad!r}.")
        total = sum(w.values())
        if abs(total - 1.0) > _SUM_TOL:
            raise ValueError(
                f"Mixture weights must sum to 1, got {total!r}. Use Mixture.normalised(...) or "
                "Mixture.from_allocation(...) to build one from unnormalised values."
            )
        # ``+ 0.0`` maps -0.0 to 0.0 so that a zero weight is stored (and exported) as 0.0.
        object.__setattr__(self, "weights", ReadOnlyDict({k: v / total + 0.0 for k, v in w.items()}))
        object.__setattr__(self, "tokens", check_tokens(self.tokens))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"Mixture seed must be an integer, got {self.seed!r}.")
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains, in the order given."""
        return tuple(self.weights)

    @property
    def allocation(self) -> Mapping[str, float]:
        """Domain -> training tokens (``weight * tokens``), read-only (``dict(...)`` to copy)."""
        return ReadOnlyDict({d: w * self.tokens for d, w in self.weights.items()})

    @classmethod
    def normalised(cls, weights: Mapping[str, float], tokens: float, seed: int = DEFAULT_SEED) -> Mixture:
        """Build a mixture from non-negative weights of any positive sum."""
        w = {k: float(v) for k, v in weights.items()}
        bad = {k: v for k, v in w.items() if not math.isfinite(v) or v < 0.0}
        if bad:
            raise ValueError(f"Mixture weights must be finite and non-negative; bad entries: {bad!r}.")
        total = sum(w.values())
        if total <= 0.0:
            raise ValueError(f"Mixture weights sum to {total!r}; at least one must be positive.")
        return cls({k: v / total for k, v in w.items()}, tokens, seed)

    @classmethod
    def from_allocation(cls, allocation: Mapping[str, float], seed: int = DEFAULT_SEED) -> Mixture:
        """Build a mixture from per-domain token counts (the budget is their sum)."""
        total = sum(float(v) for v in allocation.values())
        return cls.normalised(allocation, check_tokens(total, "the allocation's total"), seed)

    @classmethod
    def uniform(cls, domains: Iterable[str], tokens: float, seed: int = DEFAULT_SEED) -> Mixture:
        """Equal weight ``1/m`` on each of the ``m`` domains."""
        doms = validate_domains(domains)
        return cls({d: 1.0 / len(doms) for d in doms}, tokens, seed)

    def with_tokens(self, tokens: float) -> Mixture:
        """The same weights at another budget."""
        return Mixture(dict(self.weights), tokens, self.seed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``weights``, ``tokens``, ``seed``, ``allocation``)."""
        return {
            "weights": dict(self.weights),
            "tokens": self.tokens,
            "seed": self.seed,
            "allocation": dict(self.allocation),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Mixture:
        """Inverse of :meth:`to_dict` (``allocation`` is ignored: it is derived)."""
        try:
            return cls(dict(data["weights"]), data["tokens"], int(data.get("seed", DEFAULT_SEED)))
        except KeyError as e:
            raise ValueError(f"A mixture dict needs 'weights' and 'tokens'; missing {e}.") from None


def _autoscale_proposal(trial: optuna.trial.BaseTrial) -> Any:
    """The sampler hook, if the study's sampler proposes mixtures itself (AutoScaleSampler)."""
    study = getattr(trial, "study", None)
    sampler = getattr(study, "sampler", None)
    return getattr(sampler, "autoscale_suggest", None)


def record_mixture(trial: optuna.trial.BaseTrial, mixture: Mixture, role: str | None = None) -> None:
    """Store a mixture on a trial as numeric user attrs (sortable in optuna-dashboard)."""
    for d, w in mixture.weights.items():
        trial.set_user_attr(param_name(d), w)
    trial.set_user_attr(TOKENS_PARAM, mixture.tokens)
    trial.set_user_attr(SEED_ATTR, mixture.seed)
    if role is not None:
        trial.set_user_attr(ROLE_ATTR, role)


def suggest_mixture(
    trial: optuna.trial.BaseTrial,
    domains: Sequence[str],
    tokens: float | None = None,
) -> Mixture:
    """Suggest a data mixture in an Optuna objective.

    Under :class:`~optuna_autoscale.AutoScaleSampler` the weights, tokens and seed are the
    sampler's proposal, exactly; passing ``tokens`` is then an error. Under any other sampler
    the per-domain parameters ``weight_<domain>`` in ``[0, 1]`` are mapped to the simplex with
    :func:`params_to_weights` (uniform on the simplex for uniform parameters), ``tokens`` is
    required, and the seed is :data:`DEFAULT_SEED` (common random numbers).

    The trial records its normalised weights, tokens, seed and role as user attrs.

    Args:
        trial: The trial.
        domains: Domain names, unique.
        tokens: Total training tokens; required unless the sampler chooses the budget.

    Returns:
        The mixture to train on.

    Example:
        .. code-block:: python

            import optuna
            from optuna_autoscale import suggest_mixture

            def objective(trial):
                mix = suggest_mixture(trial, ["web", "code", "books"], tokens=1e6)
                return sum((w - 0.3) ** 2 for w in mix.weights.values())

            optuna.create_study().optimize(objective, n_trials=5)
    """
    doms = validate_domains(domains)
    hook = _autoscale_proposal(trial)
    if hook is not None:
        if tokens is not None:
            raise ValueError(
                "suggest_mixture(..., tokens=...) was given under AutoScaleSampler, which chooses "
                "each trial's budget itself; drop the tokens argument."
            )
        mixture, role = hook(trial, doms)
    else:
        if tokens is None:
            raise ValueError(
                "suggest_mixture needs tokens=... (the training budget in tokens) under a sampler "
                "other than AutoScaleSampler, which is the only one that chooses budgets."
            )
        budget = check_tokens(tokens)
        u = [trial.suggest_float(param_name(d), 0.0, 1.0) for d in doms]
        mixture = Mixture(dict(zip(doms, params_to_weights(u).tolist())), budget, DEFAULT_SEED)
        role = "search"
    record_mixture(trial, mixture, role)
    return mixture


def enqueue_mixture(study: optuna.Study, mixture: Mixture) -> None:
    """Enqueue a mixture by its weights, for samplers that use :func:`suggest_mixture`'s mapping.

    The ``tokens`` budget is stored as the ``tokens`` parameter so that AutoScaleSampler can
    validate it; other samplers ignore it (pass ``tokens=`` to :func:`suggest_mixture`).
    """
    params: dict[str, Any] = {
        param_name(d): float(u) for d, u in zip(mixture.domains, weights_to_params(list(mixture.weights.values())))
    }
    params[TOKENS_PARAM] = mixture.tokens
    study.enqueue_trial(params, skip_if_exists=False)
