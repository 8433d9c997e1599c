"""RegMix (Liu et al. 2024, arXiv 2407.01492): data mixture as regression.

1. **Swarm.** Train many small proxies on random mixtures. The mixtures are Dirichlet draws
   around the natural prior raised to the power 0.5 (renormalised); each draw's concentration
   is one of 15 log-spaced strengths in ``[0.1, 5]``, picked at random; a draw that gives a
   domain more than ``15x`` its natural share is rejected.
2. **Regression.** Regress the validation loss on the mixture weights: LightGBM when it is
   installed, ridge regression (numpy, with the penalty chosen by leave-one-out error)
   otherwise.
3. **Optimum.** Predict 100,000 further swarm mixtures and return the mean of the 128 with the
   lowest predicted loss.

:class:`RegMixSampler` runs step 1 inside ``study.optimize`` through
:func:`~optuna_autoscale.mixture.suggest_mixture`'s parameters, and proposes the regression
optimum (step 3) once the swarm is done; :func:`regmix_optimum` is steps 2-3 on any data.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.samplers import BaseSampler
from optuna.samplers import RandomSampler
from optuna.trial import TrialState

from optuna_autoscale.baselines.simple import _positive_shares
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.mixture import param_name
from optuna_autoscale.mixture import params_to_weights
from optuna_autoscale.mixture import validate_domains
from optuna_autoscale.mixture import weights_to_params


if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial


__all__ = [
    "RegMixSampler",
    "dirichlet_swarm",
    "fit_regressor",
    "lightgbm_available",
    "regmix_optimum",
]

ROLE_SYSTEM_ATTR = "autoscale:regmix_role"
"""System attr on each trial proposed by :class:`RegMixSampler`: ``"swarm"`` or ``"optimum"``."""

Predictor = Callable[[np.ndarray], np.ndarray]


def lightgbm_available() -> bool:
    """Whether LightGBM can be imported (the optional ``baselines`` extra)."""
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


def _prior_vector(natural: Mapping[str, float] | None, domains: tuple[str, ...]) -> np.ndarray:
    if natural is None:
        return np.full(len(domains), 1.0 / len(domains))
    return _positive_shares(natural, domains, "natural")


def dirichlet_swarm(
    natural: Sequence[float] | np.ndarray,
    n: int,
    *,
    seed: int | np.random.Generator | None = None,
    temperature: float = 0.5,
    min_strength: float = 0.1,
    max_strength: float = 5.0,
    n_strengths: int = 15,
    max_usage: float = 15.0,
) -> np.ndarray:
    """RegMix's swarm of random mixtures.

    Each mixture is ``Dirichlet(alpha * q)`` with ``q = natural**temperature`` (renormalised)
    and ``alpha`` drawn uniformly from ``n_strengths`` log-spaced values in
    ``[min_strength, max_strength]``. Draws that put more than ``max_usage * natural_i`` on
    some domain ``i`` (or that underflow to all zeros) are rejected and redrawn.

    Args:
        natural: Natural shares (any positive scale), one per domain.
        n: Number of mixtures.
        seed: Seed or generator.
        temperature: Exponent applied to the natural prior (RegMix: 0.5).
        min_strength: Smallest Dirichlet concentration.
        max_strength: Largest Dirichlet concentration.
        n_strengths: Number of log-spaced concentrations.
        max_usage: Rejection bound, as a multiple of each domain's natural share.

    Returns:
        Array of shape ``(n, m)``; rows sum to 1.

    Example:
        .. code-block:: python

            from optuna_autoscale.baselines import dirichlet_swarm

            w = dirichlet_swarm([0.5, 0.3, 0.2], 10, seed=0)
            assert w.shape == (10, 3)
    """
    p = np.asarray(natural, dtype=float)
    if p.ndim != 1 or len(p) < 2 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("natural must be a vector of >= 2 positive shares.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if not (0 < min_strength <= max_strength) or n_strengths < 1 or max_usage <= 0 or temperature <= 0:
        raise ValueError("Need 0 < min_strength <= max_strength, n_strengths >= 1, max_usage > 0, temperature > 0.")
    p = p / p.sum()
    bound = np.minimum(p * max_usage, 1.0)
    if bound.sum() < 1.0:
        raise ValueError(f"max_usage={max_usage} leaves no feasible mixture: sum of bounds {bound.sum():.3g} < 1.")
    q = p**temperature
    q = q / q.sum()
    strengths = np.logspace(math.log10(min_strength), math.log10(max_strength), n_strengths)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out: list[np.ndarray] = []
    have = 0
    for _ in range(10_000):
        if have >= n:
            break
        batch = max(2 * (n - have), 64)
        alpha = strengths[rng.integers(0, n_strengths, size=batch)]
        g = rng.standard_gamma(alpha[:, None] * q[None, :])
        s = g.sum(axis=1)
        ok = s > 0
        w = g[ok] / s[ok, None]
        w = w[np.all(w <= bound[None, :], axis=1)]
        out.append(w)
        have += len(w)
    else:  # pragma: no cover - astronomically unlikely with a feasible bound
        raise RuntimeError("Rejection sampling of the RegMix swarm did not converge; loosen max_usage.")
    return np.concatenate(out, axis=0)[:n] if out else np.zeros((0, len(p)))


# ----------------------------------------------------------------------------------------------
# Regression


def _ridge(x: np.ndarray, y: np.ndarray, alphas: Sequence[float] | None = None) -> Predictor:
    """Ridge on standardised features; penalty by exact leave-one-out error (SVD)."""
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu) / sd
    ym = y.mean()
    yc = y - ym
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ yc
    grid = np.logspace(-4, 4, 33) if alphas is None else np.asarray(alphas, dtype=float)
    best_alpha, best_err = float(grid[0]), np.inf
    n = len(y)
    for a in grid:
        f = s**2 / (s**2 + a)
        fitted = u @ (f * uty)
        h = (u**2) @ f + 1.0 / n  # leverage, incl. the intercept
        loo = (yc - fitted) / np.clip(1.0 - h, 1e-9, None)
        err = float(np.mean(loo**2))
        if err < best_err:
            best_alpha, best_err = float(a), err
    beta = vt.T @ ((s / (s**2 + best_alpha)) * uty)

    def predict(xn: np.ndarray) -> np.ndarray:
        return ym + ((np.asarray(xn, dtype=float) - mu) / sd) @ beta

    return predict


def _lightgbm(x: np.ndarray, y: np.ndarray, seed: int) -> Predictor:
    import lightgbm as lgb  # native API: lightgbm.sklearn would need scikit-learn

    n = len(y)
    params: dict[str, Any] = {
        # RegMix's settings (regression notebook): gbdt, learning rate 1e-2, up to 1000 rounds.
        "objective": "regression",
        "boosting_type": "gbdt",
        "learning_rate": 1e-2,
        "seed": seed,
        "verbosity": -1,
        "num_threads": 1,
        "deterministic": True,
        "force_col_wise": True,
        # Small swarms: let leaves hold few runs, or the model is a constant.
        "min_data_in_leaf": int(max(2, min(20, n // 10))),
        "min_data_in_bin": 1,
    }
    rounds = 1000
    if n >= 64:
        # Early stopping on an internal 10% split of the training runs (RegMix stopped on its
        # test set; here the test set stays unseen), then refit on all runs at that length.
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n)
        n_val = max(8, n // 10)
        val, tr = perm[:n_val], perm[n_val:]
        dtr = lgb.Dataset(x[tr], y[tr], params={"verbosity": -1, "min_data_in_bin": 1})
        dval = lgb.Dataset(x[val], y[val], reference=dtr)
        probe = lgb.train(
            params, dtr, num_boost_round=rounds, valid_sets=[dval],
            callbacks=[lgb.early_stopping(stopping_rounds=50, verbose=False)],
        )
        rounds = int(max(50, probe.best_iteration or rounds))
    else:
        rounds = 300
    booster = lgb.train(params, lgb.Dataset(x, y, params={"verbosity": -1, "min_data_in_bin": 1}), num_boost_round=rounds)

    def predict(xn: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(np.asarray(xn, dtype=float)), dtype=float)

    return predict


def fit_regressor(x: Any, y: Any, *, method: str = "auto", seed: int = 0) -> Predictor:
    """Fit RegMix's regression of loss on mixture weights.

    Args:
        x: Mixture weights, shape ``(n, m)``.
        y: Losses, shape ``(n,)``.
        method: ``"lightgbm"``, ``"ridge"`` or ``"auto"`` (LightGBM when installed).
        seed: Seed of LightGBM and its early-stopping split.

    Returns:
        A function mapping an ``(k, m)`` array of weights to ``(k,)`` predicted losses.

    Raises:
        ValueError: on bad shapes or values, fewer than 3 runs, or an unknown method.
        ImportError: for ``method="lightgbm"`` when LightGBM is missing.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.ndim != 2 or ya.shape != (xa.shape[0],):
        raise ValueError(f"x must be (n, m) and y (n,); got {xa.shape} and {ya.shape}.")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite; drop failed runs before fitting.")
    if len(ya) < 3:
        raise ValueError(f"RegMix regression needs at least 3 completed runs, got {len(ya)}.")
    if method == "auto":
        method = "lightgbm" if lightgbm_available() else "ridge"
    if method == "lightgbm":
        if not lightgbm_available():
            raise ImportError("method='lightgbm' needs LightGBM: pip install 'optuna-autoscale[baselines]'.")
        return _lightgbm(xa, ya, seed)
    if method == "ridge":
        return _ridge(xa, ya)
    raise ValueError(f"Unknown regression method {method!r}; use 'auto', 'lightgbm' or 'ridge'.")


def regmix_optimum(
    weights: Any,
    losses: Any,
    *,
    domains: Sequence[str] | None = None,
    natural: Mapping[str, float] | Sequence[float] | None = None,
    method: str = "auto",
    n_candidates: int = 100_000,
    top_k: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """RegMix's optimum: fit the regression, predict a large swarm, average the best ``top_k``.

    Args:
        weights: Observed mixtures, shape ``(n, m)``.
        losses: Observed losses (lower is better), shape ``(n,)``.
        domains: Names of the ``m`` domains (default ``d0, d1, ...``).
        natural: Natural shares (mapping by domain or vector) for the candidate swarm; uniform
            by default.
        method: Regression method, see :func:`fit_regressor`.
        n_candidates: Number of candidate mixtures to score (RegMix: 100,000).
        top_k: Number of best-predicted candidates to average (RegMix: 128).
        seed: Seed of the candidates and the regressor.

    Returns:
        Domain -> weight.

    Example:
        .. code-block:: python

            import numpy as np
            from optuna_autoscale.baselines import dirichlet_swarm, regmix_optimum

            w = dirichlet_swarm([1, 1, 1], 64, seed=0)
            y = (w[:, 0] - 0.6) ** 2 + (w[:, 1] - 0.3) ** 2
            opt = regmix_optimum(w, y, domains=["a", "b", "c"], method="ridge", n_candidates=5000)
            assert set(opt) == {"a", "b", "c"}
    """
    xa = np.asarray(weights, dtype=float)
    if xa.ndim != 2:
        raise ValueError(f"weights must be a 2-D array (runs x domains), got shape {xa.shape}.")
    m = xa.shape[1]
    doms = validate_domains(domains) if domains is not None else tuple(f"d{j}" for j in range(m))
    if len(doms) != m:
        raise ValueError(f"domains has {len(doms)} names but weights has {m} columns.")
    if n_candidates < 1 or not (1 <= top_k <= n_candidates):
        raise ValueError(f"Need n_candidates >= 1 and 1 <= top_k <= n_candidates; got {n_candidates}, {top_k}.")
    if natural is None or isinstance(natural, Mapping):
        prior = _prior_vector(natural, doms)  # type: ignore[arg-type]
    else:
        prior = np.asarray(natural, dtype=float)
        if prior.shape != (m,) or np.any(prior <= 0):
            raise ValueError(f"natural must hold {m} positive shares.")
        prior = prior / prior.sum()
    predictor = fit_regressor(xa, losses, method=method, seed=seed)
    cand = dirichlet_swarm(prior, n_candidates, seed=np.random.default_rng([seed, 1]))
    pred = predictor(cand)
    best = np.argsort(pred, kind="stable")[:top_k]
    w = cand[best].mean(axis=0)
    w = w / w.sum()
    return dict(zip(doms, w.tolist()))


# ----------------------------------------------------------------------------------------------
# Sampler


class RegMixSampler(BaseSampler):
    """RegMix as an Optuna sampler.

    Trial ``i < n_swarm`` proposes the ``i``-th mixture of a seeded Dirichlet swarm (see
    :func:`dirichlet_swarm`); later trials propose the regression optimum of the completed
    swarm trials (:func:`regmix_optimum`). Proposals are made through
    :func:`~optuna_autoscale.mixture.suggest_mixture`'s parameters ``weight_<domain>`` (each a
    ``FloatDistribution(0, 1)`` holding ``exp(-w)``), so ``suggest_mixture(trial, domains,
    tokens=...)`` returns exactly the proposed weights. The swarm is a function of the seed
    and trial number only: workers sharing a storage and a seed agree.

    Args:
        domains: Domain names, unique (the same as passed to ``suggest_mixture``).
        tokens: Optional training budget (tokens) of the proxies, used by
            :meth:`best_mixture` when no budget is passed there.
        natural: Natural shares (or unique token counts) per domain: the swarm's prior and
            its 15x rejection bound. Uniform by default.
        n_swarm: Number of swarm trials before the sampler proposes the regression optimum.
        method: Regression method (``"auto"``: LightGBM if installed, else ridge).
        n_candidates: Candidates scored for the optimum (RegMix: 100,000).
        top_k: Best candidates averaged (RegMix: 128).
        seed: Seed of the swarm, the candidates and the regressor. Pass one when several
            workers share a study.
        independent_sampler: Sampler for any other parameter (default ``RandomSampler``).

    Example:
        .. code-block:: python

            import optuna
            from optuna_autoscale import suggest_mixture
            from optuna_autoscale.baselines import RegMixSampler

            domains = ["web", "code", "books"]

            def objective(trial):
                mix = suggest_mixture(trial, domains, tokens=1e6)
                return (mix.weights["web"] - 0.5) ** 2 + (mix.weights["code"] - 0.3) ** 2

            sampler = RegMixSampler(domains, n_swarm=16, method="ridge", n_candidates=2000, seed=0)
            study = optuna.create_study(sampler=sampler)
            study.optimize(objective, n_trials=18)
            print(sampler.optimum(study))
    """

    def __init__(
        self,
        domains: Sequence[str],
        tokens: float | None = None,
        *,
        natural: Mapping[str, float] | None = None,
        n_swarm: int = 64,
        method: str = "auto",
        n_candidates: int = 100_000,
        top_k: int = 128,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
    ) -> None:
        self._domains = validate_domains(domains)
        if tokens is not None:
            tokens = Mixture.uniform(self._domains, tokens).tokens  # validates the budget
        self._tokens = tokens
        self._prior = _prior_vector(natural, self._domains)
        if n_swarm < 3:
            raise ValueError(f"n_swarm must be >= 3 (the regression needs runs), got {n_swarm}.")
        if method not in ("auto", "lightgbm", "ridge"):
            raise ValueError(f"Unknown regression method {method!r}; use 'auto', 'lightgbm' or 'ridge'.")
        if n_candidates < 1 or not (1 <= top_k <= n_candidates):
            raise ValueError("Need n_candidates >= 1 and 1 <= top_k <= n_candidates.")
        self._n_swarm = int(n_swarm)
        self._method = method
        self._n_candidates = int(n_candidates)
        self._top_k = int(top_k)
        self._seed = int(np.random.SeedSequence().entropy % (2**31)) if seed is None else int(seed)
        self._swarm = dirichlet_swarm(self._prior, self._n_swarm, seed=np.random.default_rng([self._seed, 0]))
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._search_space = {param_name(d): FloatDistribution(0.0, 1.0) for d in self._domains}
        self._cache: tuple[tuple[int, ...], dict[str, float]] | None = None

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains, in order."""
        return self._domains

    @property
    def swarm(self) -> np.ndarray:
        """The swarm mixtures, shape ``(n_swarm, m)``."""
        return self._swarm.copy()

    def reseed_rng(self) -> None:
        self._independent_sampler.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._search_space)

    def _completed(self, study: Study) -> tuple[list[FrozenTrial], np.ndarray, np.ndarray]:
        if study._is_multi_objective():
            raise ValueError("RegMixSampler supports single-objective studies only.")
        names = [param_name(d) for d in self._domains]
        trials = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)
            and (all(n in t.user_attrs for n in names) or all(n in t.params for n in names))
        ]
        rows = []
        for t in trials:
            if all(n in t.user_attrs for n in names):
                rows.append([float(t.user_attrs[n]) for n in names])
            else:  # parameters only: map them as suggest_mixture does
                rows.append(params_to_weights([float(t.params[n]) for n in names]).tolist())
        x = np.array(rows, dtype=float).reshape(len(trials), len(names))
        y = np.array([float(t.value) for t in trials])  # type: ignore[arg-type]
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            y = -y
        keep = np.all(np.isfinite(x), axis=1)
        return [t for t, k in zip(trials, keep) if k], x[keep], y[keep]

    def optimum(self, study: Study) -> dict[str, float]:
        """RegMix's optimum from the study's completed trials (weights, domain -> share).

        Raises:
            ValueError: with fewer than 3 completed trials that recorded their mixture.
        """
        trials, x, y = self._completed(study)
        key = tuple(sorted(t.number for t in trials))
        if self._cache is not None and self._cache[0] == key:
            return dict(self._cache[1])
        if len(y) < 3:
            raise ValueError(
                f"RegMixSampler.optimum needs at least 3 completed trials with a mixture, found {len(y)}."
            )
        opt = regmix_optimum(
            x, y, domains=self._domains, natural=self._prior, method=self._method,
            n_candidates=self._n_candidates, top_k=self._top_k, seed=self._seed,
        )
        self._cache = (key, opt)
        return dict(opt)

    def best_mixture(self, study: Study, tokens: float | None = None) -> Mixture:
        """:meth:`optimum` as a :class:`~optuna_autoscale.mixture.Mixture` at ``tokens``."""
        budget = tokens if tokens is not None else self._tokens
        if budget is None:
            raise ValueError("best_mixture needs tokens=... (or pass tokens to RegMixSampler).")
        return Mixture.normalised(self.optimum(study), budget)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if trial.number < self._n_swarm:
            w = self._swarm[trial.number]
            role = "swarm"
        else:
            try:
                opt = self.optimum(study)
            except ValueError:
                # Too few completed swarm trials yet (failures / parallel workers): keep exploring.
                rng = np.random.default_rng([self._seed, 2, trial.number])
                w = dirichlet_swarm(self._prior, 1, seed=rng)[0]
                role = "swarm"
            else:
                w = np.array([opt[d] for d in self._domains])
                role = "optimum"
        study._storage.set_trial_system_attr(trial._trial_id, ROLE_SYSTEM_ATTR, role)
        u = np.clip(weights_to_params(w / w.sum()), 0.0, 1.0)
        return {param_name(d): float(v) for d, v in zip(self._domains, u) if param_name(d) in search_space}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent_sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)
