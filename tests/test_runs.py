"""The runs table (issue 11, point 1): every input kind, and one clear error per bad input."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest

from optuna_autoscale import suggest_mixture
from optuna_autoscale.mixture import params_to_weights
from optuna_autoscale.runs import load_runs
from optuna_autoscale.runs import Runs
from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rows(n: int = 6, budgets: tuple[float, ...] = (1e8, 4e8)) -> list[dict[str, float]]:
    rng = np.random.default_rng(0)
    out = []
    for b in budgets:
        for w in rng.dirichlet(np.ones(3), size=n):
            out.append({"weight_a": w[0], "weight_b": w[1], "weight_c": w[2], "tokens": b, "value": 3.0 - w[0],
                        "loss_x": 3.1 - w[0], "loss_y": 2.9 - w[0]})
    return out


def test_list_of_dicts_and_default_groups() -> None:
    runs = load_runs(_rows())
    assert isinstance(runs, Runs)
    assert runs.domains == ("a", "b", "c")
    assert runs.loss_names == ("x", "y")
    assert runs.weights.shape == (12, 3) and np.allclose(runs.weights.sum(axis=1), 1.0)
    assert runs.group_names == ["1e+08", "4e+08"]  # one group per distinct tokens
    assert np.allclose(runs.allocations.sum(axis=1), runs.tokens)
    with pytest.raises(ValueError):
        runs.weights[0, 0] = 1.0  # read-only


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_files(tmp_path, suffix: str) -> None:
    df = pd.DataFrame(_rows())
    path = tmp_path / f"runs{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".json":
        df.to_json(path, orient="records")
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        pytest.importorskip("pyarrow")
        df.to_parquet(path)
    runs = load_runs(path)
    assert runs.n == 12 and np.allclose(runs.value, df["value"])


def test_tokens_columns_and_explicit_group() -> None:
    df = pd.DataFrame(_rows())
    for d in "abc":
        df[f"tokens_{d}"] = df[f"weight_{d}"] * df["tokens"]
    df = df.drop(columns=["weight_a", "weight_b", "weight_c"])
    df["g"] = ["s0", "s1"] * 6
    runs = load_runs(df, group="g", objective="mean")
    assert runs.group_names == ["s0", "s1"]
    assert np.allclose(runs.value, (df["loss_x"] + df["loss_y"]) / 2)


def test_trials_dataframe_any_sampler() -> None:
    land = separable(3, seed=0)

    def objective(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, land.domains, tokens=1e8 if trial.number % 2 else 4e8)
        per = land.per_domain_loss(dict(mix.allocation), seed=0)
        for d, v in per.items():
            trial.set_user_attr(f"loss_{d}", v)
        return float(np.mean(list(per.values())))

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=8)
    df = study.trials_dataframe()
    runs = load_runs(df)
    assert runs.n == 8 and runs.domains == land.domains
    assert set(runs.loss_names) == set(land.domains)
    # Normalised user-attr weights are preferred; the raw params map the same way (suggest_mixture's mapping).
    raw = load_runs(df.drop(columns=[c for c in df.columns if c.startswith("user_attrs_weight_")]))
    assert np.allclose(raw.weights, runs.weights)
    u = df[[f"params_weight_{d}" for d in land.domains]].to_numpy()[0]
    assert np.allclose(raw.weights[0], params_to_weights(u))
    # The study itself, and FAIL trials left out.
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    assert load_runs(study).n == 8
    assert load_runs(study.trials_dataframe()).n == 8


def test_autoscale_study_groups_by_design_budget_and_seed() -> None:
    from optuna_autoscale import AutoScaleSampler

    land = separable(3, seed=0)
    study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8, 4e8], verify=False))
    study.optimize(land.objective(), n_trials=40)
    runs = load_runs(study)
    assert runs.n == 14
    assert len(runs.group_names) == 2  # one group per budget and seed, though x3/x0.2 change the totals
    df_runs = load_runs(study.trials_dataframe())
    assert len(df_runs.group_names) == 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns=["tokens"]), "missing column 'tokens'"),
        (lambda df: df.drop(columns=["value"]), "missing column 'value'"),
        (lambda df: df.assign(weight_a=df["weight_a"] + 0.2), "sum to"),
        (lambda df: df.assign(loss_x=[np.nan] + [1.0] * (len(df) - 1)), "column 'loss_x'"),
        (lambda df: df.assign(weight_b=[-0.1] + list(df["weight_b"][1:])), ">= 0"),
        (lambda df: df.assign(tokens=[0.0] + list(df["tokens"][1:])), "must be > 0"),
        (lambda df: df.assign(group=["lonely"] + ["g"] * (len(df) - 1)), "group 'lonely' has one run"),
        (lambda df: df.drop(columns=["weight_a", "weight_b", "weight_c"]), "no weight_<domain>"),
    ],
)
def test_bad_inputs_name_the_column_or_row(mutate, message: str) -> None:
    df = mutate(pd.DataFrame(_rows()))
    with pytest.raises(ValueError, match=message):
        load_runs(df)


def test_bad_row_is_named() -> None:
    df = pd.DataFrame(_rows())
    df.loc[3, "loss_y"] = np.inf
    with pytest.raises(ValueError, match=r"row 3: column 'loss_y'"):
        load_runs(df)


def test_too_few_runs_for_a_fit() -> None:
    from optuna_autoscale.evidence import fit_eval_law

    runs = load_runs(_rows(n=2))
    with pytest.raises(ValueError, match="parameters plus 2 group offsets but only 4 runs"):
        fit_eval_law(runs)


def test_wrong_kinds() -> None:
    with pytest.raises(TypeError):
        load_runs(42)
    with pytest.raises(ValueError, match="does not exist"):
        load_runs("/nonexistent/runs.csv")
    with pytest.raises(ValueError, match="unknown format"):
        load_runs(__file__)
    assert json  # the module is used by the file fixtures
