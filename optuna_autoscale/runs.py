"""The runs table: training runs people already have, as arrays the joint laws can fit.

:func:`load_runs` reads runs from a pandas DataFrame, a list of dicts, a CSV / Parquet / JSON
file, ``study.trials_dataframe()`` as it is, or an Optuna study, and returns a frozen
:class:`Runs`. It is the one place where a study's trials or a user's table become fit data:
weights are normalised shares, every run has a total token count, a group (runs sharing a seed
or an offset) and an objective, and the evaluation losses are a matrix.

Columns of a plain runs table (one row per run):

- ``weight_<domain>``: the run's share of each training domain (summing to 1), or
  ``tokens_<domain>``: the tokens drawn from each domain (the shares and total follow);
- ``tokens``: the run's total training tokens (any positive scale axis: see
  ``benchmarks/real_runs.py`` for RegMix, whose runs differ in model size, with ``6 x params x
  tokens``);
- ``group`` (optional): runs sharing a seed or an offset (a budget's design, a seed, a checkpoint
  series). Default: one group per distinct ``tokens`` (and ``seed``, when there is a ``seed`` column);
- ``value``: the objective (the name is ``objective=``; ``objective="mean"`` takes the mean of the
  ``loss_<name>`` columns);
- ``loss_<name>``: any evaluation losses (they need not be the training domains).

Columns of ``study.trials_dataframe()`` (studies whose trials used
:func:`~optuna_autoscale.suggest_mixture`): ``user_attrs_weight_<d>`` (normalised weights;
preferred), else ``params_weight_<d>`` (raw parameters, normalised as ``suggest_mixture`` does:
:func:`~optuna_autoscale.mixture.params_to_weights`); ``user_attrs_tokens`` or ``params_tokens``;
``user_attrs_loss_<name>``; ``value``; only ``state == COMPLETE`` rows. Groups: the design budget
(``user_attrs_autoscale_budget``) or the tokens, with the seed (``user_attrs_seed``), like
:func:`optuna_autoscale.design.group_key` (one offset per budget and seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from optuna_autoscale.design import group_key
from optuna_autoscale.mixture import params_to_weights


__all__ = ["Runs", "load_runs", "runs_from_study", "SHARE_TOL"]

SHARE_TOL = 1e-2
"""Largest allowed ``|sum of weight_<d> - 1|`` in a runs table (RegMix prints 17 shares to 3 decimals: sums 0.995-1.005 pass); rows are renormalised."""

_WEIGHT = "weight_"
_TOKENS = "tokens_"
_LOSS = "loss_"
_TRIAL_PREFIXES = ("user_attrs_", "params_")


@dataclasses.dataclass(frozen=True)
class Runs:
    """Training runs as arrays: shares, totals, groups, objective and evaluation losses.

    Build it with :func:`load_runs`. Arrays are read-only.

    Attributes:
        domains: Training domain names (``m``).
        weights: Shares per run, ``(n, m)``, rows summing to 1.
        tokens: Total training tokens per run, ``(n,)`` (or the scale axis the table uses).
        groups: Group label per run (runs sharing a seed or an offset), ``(n,)`` strings.
        value: Objective per run, ``(n,)``.
        losses: Evaluation losses, ``(n, V)`` (``V`` may be 0).
        loss_names: Names of the evaluation columns (``V``; the part after ``loss_``).
        labels: Row labels for messages (the table's row index or the trial number), ``(n,)``.
        seeds: Seed per run when the table has one, else ``None``.
    """

    domains: tuple[str, ...]
    weights: np.ndarray
    tokens: np.ndarray
    groups: tuple[str, ...]
    value: np.ndarray
    losses: np.ndarray
    loss_names: tuple[str, ...]
    labels: tuple[Any, ...]
    seeds: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("weights", "tokens", "value", "losses"):
            arr = np.array(getattr(self, name), dtype=float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    # ------------------------------------------------------------------ views
    @property
    def n(self) -> int:
        """Number of runs."""
        return len(self.value)

    @property
    def m(self) -> int:
        """Number of training domains."""
        return len(self.domains)

    @property
    def allocations(self) -> np.ndarray:
        """Tokens per domain per run, ``(n, m)``."""
        return self.weights * self.tokens[:, None]

    @property
    def group_names(self) -> list[str]:
        """Distinct groups, in order of first appearance."""
        return list(dict.fromkeys(self.groups))

    @property
    def budgets(self) -> np.ndarray:
        """Distinct totals (tokens), ascending."""
        return np.unique(self.tokens)

    def group_budget(self, group: str) -> float:
        """A group's nominal budget: the median total of its runs (tokens)."""
        return float(np.median(self.tokens[np.array(self.groups) == group]))

    def mixture_ids(self, tol: float = 1e-6) -> np.ndarray:
        """An integer per run, the same for runs with the same shares (within ``tol``), ``(n,)``."""
        keys = np.round(self.weights / tol).astype(np.int64)
        _, inv = np.unique(keys, axis=0, return_inverse=True)
        return inv.reshape(-1)

    def subset(self, mask: Any) -> Runs:
        """The runs selected by a boolean mask or an index array."""
        idx = np.arange(self.n)[np.asarray(mask)]
        return dataclasses.replace(
            self,
            weights=self.weights[idx],
            tokens=self.tokens[idx],
            groups=tuple(self.groups[i] for i in idx),
            value=self.value[idx],
            losses=self.losses[idx],
            labels=tuple(self.labels[i] for i in idx),
            seeds=None if self.seeds is None else tuple(self.seeds[i] for i in idx),
        )

    def observations(self) -> list[tuple[dict[str, float], float, str]]:
        """``(allocation, value, group)`` triples, as :func:`~optuna_autoscale.laws.fit_separable` takes them."""
        alloc = self.allocations
        return [
            ({d: float(v) for d, v in zip(self.domains, alloc[i])}, float(self.value[i]), self.groups[i])
            for i in range(self.n)
        ]

    def loss_observations(self) -> list[tuple[dict[str, float], dict[str, float], str]]:
        """``(allocation, losses, group)`` triples, as :func:`~optuna_autoscale.transfer.fit_transfer` takes them.

        Raises:
            ValueError: when the evaluation columns are not exactly the training domains (``fit_transfer``
                needs validation domain = training domain; :func:`optuna_autoscale.evidence.fit_eval_law`
                takes any columns).
        """
        if set(self.loss_names) != set(self.domains):
            raise ValueError(
                f"fit_transfer needs one loss_<domain> column per training domain {list(self.domains)!r}; "
                f"these runs have {list(self.loss_names)!r}. Use optuna_autoscale.evidence.fit_eval_law for "
                "other evaluation sets."
            )
        alloc = self.allocations
        j = [self.loss_names.index(d) for d in self.domains]
        return [
            (
                {d: float(v) for d, v in zip(self.domains, alloc[i])},
                {d: float(self.losses[i, k]) for d, k in zip(self.domains, j)},
                self.groups[i],
            )
            for i in range(self.n)
        ]

    def check_enough(self, n_params: int, what: str) -> None:
        """Raise when there are fewer runs than a fit's parameters plus group offsets.

        Args:
            n_params: The fit's shape parameters (per evaluation column).
            what: The fit's name, for the message.
        """
        ng = len(self.group_names)
        if self.n < n_params + ng:
            raise ValueError(
                f"{what} has {n_params} parameters plus {ng} group offsets but only {self.n} runs; "
                f"add at least {n_params + ng - self.n} runs or use fewer domains."
            )


# ------------------------------------------------------------------------------ loading
def _read_table(runs: Any) -> Any:
    import pandas as pd

    if isinstance(runs, pd.DataFrame):
        return runs.copy()
    if isinstance(runs, (str, os.PathLike)):
        path = Path(runs)
        if not path.exists():
            raise ValueError(f"runs file {str(path)!r} does not exist.")
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".json", ".jsonl"):
            try:
                return pd.read_json(path, lines=suffix == ".jsonl")
            except ValueError:
                return pd.read_json(path, lines=True)
        raise ValueError(f"runs file {str(path)!r}: unknown format {suffix!r}; allowed: .csv, .tsv, .parquet, .json, .jsonl.")
    if isinstance(runs, Sequence) and not isinstance(runs, (str, bytes)):
        if len(runs) == 0:
            raise ValueError("runs is empty; give at least one run (a row with weight_<domain>, tokens and value).")
        if not all(isinstance(r, Mapping) for r in runs):
            raise TypeError("runs as a list must hold one dict per run (column -> value).")
        return pd.DataFrame([dict(r) for r in runs])
    raise TypeError(
        f"runs must be a pandas DataFrame, a list of dicts, a CSV/Parquet/JSON path or an Optuna study, got {type(runs).__name__}."
    )


def _is_trials_frame(df: Any) -> bool:
    return any(str(c).startswith(("params_weight_", "user_attrs_weight_")) for c in df.columns)


def _from_trials_frame(df: Any, domains: Sequence[str] | None, objective: str) -> tuple[Any, str, list[str]]:
    """Rename a ``study.trials_dataframe()`` to the runs-table columns; COMPLETE rows only."""
    import pandas as pd

    notes: list[str] = []
    if "state" in df.columns:
        keep = df["state"].astype(str).str.upper().str.endswith("COMPLETE")
        if int((~keep).sum()):
            notes.append(f"{int((~keep).sum())} trials not COMPLETE left out")
        df = df[keep]
    cols = [str(c) for c in df.columns]
    found = sorted({c[len(p) + len(_WEIGHT):] for c in cols for p in _TRIAL_PREFIXES if c.startswith(p + _WEIGHT)})
    doms = list(domains) if domains is not None else found
    out: dict[str, Any] = {}  # columns, made a frame once at the end (inserting one by one fragments it)
    raw = [f"params_{_WEIGHT}{d}" for d in doms]
    norm = [f"user_attrs_{_WEIGHT}{d}" for d in doms]
    if all(c in df.columns for c in norm):
        for d, c in zip(doms, norm):
            out[_WEIGHT + d] = df[c].astype(float)
    elif all(c in df.columns for c in raw):
        u = df[raw].to_numpy(dtype=float)
        bad = ~np.all(np.isfinite(u) & (u >= 0) & (u <= 1), axis=1)
        if bad.any():
            row = df.index[int(np.argmax(bad))]
            raise ValueError(f"row {row!r}: params_weight_<d> must be finite numbers in [0, 1] (suggest_mixture's parameters).")
        w = np.array([params_to_weights(r) for r in u]) if len(u) else np.zeros((0, len(doms)))
        for k, d in enumerate(doms):
            out[_WEIGHT + d] = w[:, k]
    else:
        missing = [c for c in norm if c not in df.columns]
        raise ValueError(
            f"trials dataframe: missing columns {missing[:3]!r}{'...' if len(missing) > 3 else ''}; a mixture trial has "
            "user_attrs_weight_<domain> (or params_weight_<domain>) for every domain (suggest_mixture records them)."
        )
    for c in ("user_attrs_tokens", "params_tokens"):
        if c in df.columns:
            out["tokens"] = df[c].astype(float)
            break
    if "value" in df.columns:
        out["value"] = df["value"]
    else:
        # A study with metric names (study.set_metric_names) names the column value_<metric name>.
        named = [c for c in cols if str(c).startswith("value_")]
        if len(named) == 1:
            out["value"] = df[named[0]]
    for c in cols:
        if c.startswith("user_attrs_" + _LOSS):
            out[c[len("user_attrs_"):]] = df[c]
    if objective not in ("value", "mean") and f"user_attrs_{objective}" in df.columns:
        out[objective] = df[f"user_attrs_{objective}"]
    seed = df["user_attrs_seed"] if "user_attrs_seed" in df.columns else None
    budget = df["user_attrs_autoscale_budget"] if "user_attrs_autoscale_budget" in df.columns else None
    if "group" not in df.columns:
        base = budget if budget is not None else out.get("tokens")
        if base is not None:
            lab = base.map(lambda v: f"{float(v):.6g}" if v == v else "nan")
            if seed is not None:
                lab = lab + "/s" + seed.astype(str)
            out["group"] = lab
    else:
        out["group"] = df["group"]
    if seed is not None:
        out["seed"] = seed
    frame = pd.DataFrame(out, index=df.index)
    if "number" in df.columns:
        frame.index = pd.Index(df["number"].to_numpy(), name="trial")
    return frame, "trial", notes


def runs_from_study(
    study: Any, *, domains: Sequence[str] | None = None, objective: str = "value", singletons: str = "drop",
    exclude_roles: Sequence[str] = (),
) -> Runs:
    """Every completed mixture trial of an Optuna study, as :class:`Runs`.

    Uses the normalised weights, tokens and ``loss_<name>`` user attrs that
    :func:`~optuna_autoscale.suggest_mixture` and the proxy objective record. Groups: the design
    point's budget and seed (``autoscale:point``, as the joint law of :mod:`optuna_autoscale.results`
    uses), else the tokens and seed. So runs from AutoScaleSampler, TPE, RegMix or an older study
    all count, design points or not. Trials without ``weight_<d>`` (ordinary trials) are left out.
    A group with one run (an extra base run with its own seed, a held-out verification run)
    only fits its own offset, so by default (``singletons="drop"``) it is left out, as the
    design's joint law does; ``singletons="error"`` raises as :func:`load_runs` does.
    ``exclude_roles``: design roles (``autoscale:point``'s ``role``, e.g. the verification roles) left out.
    """
    import json

    import pandas as pd
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row: dict[str, Any] = {"number": t.number, "value": t.value, "state": "COMPLETE"}
        for k, v in t.params.items():
            row[f"params_{k}"] = v
        for k, v in t.user_attrs.items():
            if isinstance(v, (int, float, str)) and not isinstance(v, bool):
                row[f"user_attrs_{k}"] = v
        pt = t.system_attrs.get("autoscale:point")
        if pt:
            try:
                p = json.loads(pt)
                if p.get("role") in exclude_roles:
                    continue
                row["group"] = group_key(int(p["budget_index"]), int(p["seed"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        if any(k.startswith(("user_attrs_weight_", "params_weight_")) for k in row):
            rows.append(row)
    if not rows:
        raise ValueError(
            f"study {getattr(study, 'study_name', '')!r} has no COMPLETE mixture trials (trials that called "
            "suggest_mixture, with weight_<domain> and tokens)."
        )
    df = pd.DataFrame(rows)
    if "group" in df.columns and df["group"].isna().any():
        tok = df.get("user_attrs_tokens")
        seed = df.get("user_attrs_seed")
        fill = tok.map(lambda v: f"{float(v):.6g}") if tok is not None else pd.Series("all", index=df.index)
        if seed is not None:
            fill = fill + "/s" + seed.astype(str)
        df["group"] = df["group"].fillna(fill)
    return load_runs(df, domains=domains, objective=objective, singletons=singletons)


def load_runs(
    runs: Any,
    *,
    domains: Sequence[str] | None = None,
    objective: str = "value",
    group: str | Sequence[Any] | None = None,
    singletons: str = "error",
) -> Runs:
    """Read training runs into :class:`Runs`.

    Args:
        runs: A pandas DataFrame, a list of dicts (one per run), a path to a CSV / TSV / Parquet /
            JSON / JSONL file, ``study.trials_dataframe()`` as it is, or an Optuna study.
        domains: Training domains, in order (default: every ``weight_<d>`` / ``tokens_<d>`` column,
            sorted by name).
        objective: The column holding each run's objective (default ``"value"``), or ``"mean"``: the
            mean of the ``loss_<name>`` columns.
        group: A column name to group runs by, or one label per run (overrides a ``group`` column).
        singletons: ``"error"`` (default): a group with one run is an error; ``"drop"``: such runs are left out.

    Returns:
        The runs.

    Raises:
        ValueError: one line naming the column or row and what is allowed: a missing column, shares not
            summing to 1 (within :data:`SHARE_TOL`), non-positive tokens, a NaN or infinite loss or
            objective, a group with one run, fewer than 2 domains.
        TypeError: for an input of another kind.
    """
    if hasattr(runs, "get_trials") and hasattr(runs, "study_name"):
        return runs_from_study(runs, domains=domains, objective=objective)
    df = _read_table(runs)
    df.columns = [str(c) for c in df.columns]
    notes: list[str] = []
    label_kind = "row"
    if _is_trials_frame(df):
        df, label_kind, notes = _from_trials_frame(df, domains, objective)
    cols = list(df.columns)
    wcols = sorted(c[len(_WEIGHT):] for c in cols if c.startswith(_WEIGHT))
    tcols = sorted(c[len(_TOKENS):] for c in cols if c.startswith(_TOKENS))
    if domains is not None:
        doms = [str(d) for d in domains]
        if len(set(doms)) != len(doms):
            raise ValueError(f"domains {doms!r} repeat a name; each domain must appear once.")
        use_w = all(_WEIGHT + d in cols for d in doms)
        if not use_w and not all(_TOKENS + d in cols for d in doms):
            missing = [_WEIGHT + d for d in doms if _WEIGHT + d not in cols]
            raise ValueError(f"missing column {missing[0]!r}: each domain needs weight_<domain> (share) or tokens_<domain>.")
    else:
        use_w = bool(wcols)
        doms = wcols if use_w else tcols
        if not doms:
            raise ValueError(
                f"no weight_<domain> or tokens_<domain> columns among {cols[:8]!r}{'...' if len(cols) > 8 else ''}; "
                "a runs table has weight_<domain> (shares) or tokens_<domain> per training domain."
            )
    if len(doms) < 2:
        raise ValueError(f"only one training domain ({doms!r}); a mixture needs at least 2 weight_<domain> columns.")
    n = len(df)
    if n == 0:
        raise ValueError("no runs (no rows" + (", or no COMPLETE trials" if label_kind == "trial" else "") + ").")
    labels = tuple(df.index.tolist())

    def numeric(col: str) -> np.ndarray:
        import pandas as pd

        vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{label_kind} {labels[i]!r}: column {col!r} is {df[col].iloc[i]!r}; it must be a finite number.")
        return vals

    if use_w:
        w = np.column_stack([numeric(_WEIGHT + d) for d in doms])
        if np.any(w < 0):
            i, j = np.argwhere(w < 0)[0]
            raise ValueError(f"{label_kind} {labels[i]!r}: column {_WEIGHT + doms[j]!r} is {w[i, j]!r}; shares must be >= 0.")
        s = w.sum(axis=1)
        bad = np.abs(s - 1.0) > SHARE_TOL
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{label_kind} {labels[i]!r}: the weight_<domain> shares sum to {s[i]:.6g}; they must sum to 1 "
                f"(within {SHARE_TOL:g}), or give tokens_<domain> columns instead."
            )
        w = w / s[:, None]
        if "tokens" not in cols:
            raise ValueError("missing column 'tokens' (each run's total training tokens, > 0).")
        tok = numeric("tokens")
    else:
        alloc = np.column_stack([numeric(_TOKENS + d) for d in doms])
        if np.any(alloc < 0):
            i, j = np.argwhere(alloc < 0)[0]
            raise ValueError(f"{label_kind} {labels[i]!r}: column {_TOKENS + doms[j]!r} is {alloc[i, j]!r}; tokens must be >= 0.")
        tok = alloc.sum(axis=1)
        if "tokens" in cols:
            given = numeric("tokens")
            bad = np.abs(given - tok) > 1e-6 * np.maximum(given, 1.0)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{label_kind} {labels[i]!r}: column 'tokens' is {given[i]:.6g} but the tokens_<domain> columns sum "
                    f"to {tok[i]:.6g}; they must agree."
                )
        w = alloc / np.where(tok > 0, tok, 1.0)[:, None]
    bad = ~(tok > 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{label_kind} {labels[i]!r}: total tokens {tok[i]!r}; it must be > 0.")

    lnames = [c[len(_LOSS):] for c in cols if c.startswith(_LOSS)]
    losses = np.column_stack([numeric(_LOSS + v) for v in lnames]) if lnames else np.zeros((n, 0))
    if objective == "mean":
        if not lnames:
            raise ValueError("objective='mean' needs loss_<name> columns; there are none.")
        value = losses.mean(axis=1)
    else:
        if objective not in cols:
            raise ValueError(
                f"missing column {objective!r} (the objective); name it with objective=..., or use objective='mean' "
                "for the mean of the loss_<name> columns."
            )
        value = numeric(objective)

    seeds = tuple(df["seed"].tolist()) if "seed" in cols else None
    if group is not None:
        if isinstance(group, str):
            if group not in cols:
                raise ValueError(f"missing column {group!r} (group=); the columns are {cols!r}.")
            glab = [str(g) for g in df[group].tolist()]
        else:
            glab = [str(g) for g in group]
            if len(glab) != n:
                raise ValueError(f"group= has {len(glab)} labels for {n} runs; give one per run.")
    elif "group" in cols:
        glab = [str(g) for g in df["group"].tolist()]
    else:
        glab = [f"{t:.6g}" for t in tok]
        if seeds is not None:
            glab = [f"{g}/s{s}" for g, s in zip(glab, seeds)]
    counts: dict[str, int] = {}
    for g in glab:
        counts[g] = counts.get(g, 0) + 1
    single = [i for i, g in enumerate(glab) if counts[g] == 1]
    if singletons not in ("error", "drop"):
        raise ValueError(f"singletons must be 'error' or 'drop', got {singletons!r}.")
    if single and singletons == "drop" and len(single) < n:
        keep = np.array([counts[g] > 1 for g in glab])
        idx = np.flatnonzero(keep)
        w, tok, value, losses = w[idx], tok[idx], value[idx], losses[idx]
        glab = [glab[i] for i in idx]
        labels = tuple(labels[i] for i in idx)
        seeds = None if seeds is None else tuple(seeds[i] for i in idx)
        n = len(idx)
        single = []
    if single:
        i = single[0]
        raise ValueError(
            f"{label_kind} {labels[i]!r}: group {glab[i]!r} has one run; a group's offset needs at least 2 runs "
            "(give a 'group' column joining runs that share a seed or budget, or drop the run)."
        )
    if any(not math.isfinite(float(t)) for t in tok):  # pragma: no cover - numeric() already checked
        raise ValueError("tokens must be finite.")
    return Runs(
        domains=tuple(doms),
        weights=w,
        tokens=tok,
        groups=tuple(glab),
        value=value,
        losses=losses,
        loss_names=tuple(lnames),
        labels=labels,
        seeds=seeds,
    )
