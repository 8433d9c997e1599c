"""Bad inputs, each with its clear error: the table in docs/errors.md, tested row by row.

:data:`CASES` is the single source of the table: each case has an id, the bad input, where the
error is raised, the exception type and a fragment of its message. ``test_docs_table_matches``
checks that docs/errors.md lists exactly these rows (regenerate it with
``python tests/test_hardening.py > docs/errors.md``).
"""
from __future__ import annotations

from collections.abc import Callable
import dataclasses
import json
import math
import os
from pathlib import Path
import shutil
import subprocess
import sys
import warnings

import optuna
from optuna.trial import TrialState
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _autoscale_helpers import cli  # noqa: E402
from _autoscale_helpers import completed_study  # noqa: E402,F401  (session fixture)
from _autoscale_helpers import DOMAINS  # noqa: E402
from _autoscale_helpers import REPO  # noqa: E402
from _autoscale_helpers import sim_config  # noqa: E402


optuna.logging.set_verbosity(optuna.logging.ERROR)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    bad_input: str
    where: str
    error: str
    fragment: str
    run: Callable[[Path, tuple[str, str]], None]
    cli: bool = False


def _sampler(*args: object, **kwargs: object) -> object:
    from optuna_autoscale import AutoScaleSampler

    kwargs.setdefault("verify", False)  # these cases use one budget: a DDO fit only (E42 is the default's error)
    return AutoScaleSampler(*args, **kwargs)


def _other_domains(tmp: Path, study: tuple[str, str]) -> None:
    from optuna_autoscale.simulate import separable

    s = optuna.create_study()
    s.optimize(separable(domains=["x", "y"]).objective(tokens=1e8), n_trials=1)
    s.sampler = _sampler(["a", "b"], [1e8])
    s.optimize(separable(domains=["a", "b"]).objective(), n_trials=1)


def _mixture(weights: dict[str, float]) -> None:
    from optuna_autoscale import Mixture

    Mixture(weights, 1e8)


def _mixture_list() -> None:
    from optuna_autoscale import Mixture

    Mixture([0.5, 0.5], 1e8)  # type: ignore[arg-type]


def _megatron(paths: dict[str, str]) -> None:
    from optuna_autoscale import Mixture
    from optuna_autoscale.cli.inspect import format_mixtures

    format_mixtures({"x": Mixture({"code": 0.3, "prose": 0.7}, 1e9)}, "megatron", data_paths=paths)


def _config(text: str) -> Callable[[Path, tuple[str, str]], None]:
    def run(tmp: Path, study: tuple[str, str]) -> None:
        from optuna_autoscale.config import load_config

        path = tmp / "bad.toml"
        path.write_text(text)
        load_config(path)

    return run


_SIM = '[study]\nobjective = "simulate"\n[design]\nbudgets = [1e8]\n[simulate]\ndomains = ["a", "b"]\n'


def _corpus(tmp: Path, kind: str) -> None:
    from optuna_autoscale.config import load_config
    from optuna_autoscale.proxy.corpus import build_corpus

    (tmp / "a.jsonl").write_text("\n".join(json.dumps({"text": f"alpha beta gamma {i} " * 6}) for i in range(40)))
    if kind == "empty":
        (tmp / "b.jsonl").write_text("")
        (tmp / "c.toml").write_text(
            '[design]\nbudgets = [1e5]\n[[domains]]\nname = "a"\npath = "a.jsonl"\n'
            '[[domains]]\nname = "b"\npath = "b.jsonl"\n'
        )
        load_config(tmp / "c.toml").build_corpus()
    elif kind == "missing":
        build_corpus({"a": tmp / "a.jsonl", "b": tmp / "missing.jsonl"}, vocab_size=300, cache_dir=tmp / "cache")
    elif kind == "tokenizer":
        build_corpus({"a": tmp / "a.jsonl", "b": tmp / "a.jsonl"}, tokenizer=str(tmp / "nope.json"),
                     cache_dir=tmp / "cache")
    elif kind == "garbage":
        (tmp / "b.jsonl").write_text('not json at all\n{"text": "x"\n')
        build_corpus({"a": tmp / "a.jsonl", "b": tmp / "b.jsonl"}, vocab_size=300, cache_dir=tmp / "cache")
    elif kind == "latin1":
        (tmp / "b.txt").write_bytes("café crème brûlée\n\nmore text here\n".encode("latin-1"))
        build_corpus({"a": tmp / "a.jsonl", "b": tmp / "b.txt"}, vocab_size=300, cache_dir=tmp / "cache")
    elif kind == "corrupt":
        (tmp / "b.jsonl").write_text("\n".join(json.dumps({"text": f"def f{i}(): return {i} " * 6}) for i in range(40)))
        corpus = build_corpus({"a": tmp / "a.jsonl", "b": tmp / "b.jsonl"}, vocab_size=300, cache_dir=tmp / "cache")
        root = Path(corpus.root)
        shard = sorted(root.glob("*.train.bin"))[0]
        shard.write_bytes(shard.read_bytes()[: len(shard.read_bytes()) // 2])
        type(corpus).load(root)


def _corrupt_sqlite(tmp: Path, study: tuple[str, str]) -> None:
    from optuna_autoscale.storage import create_storage

    (tmp / "study.db").write_bytes(bytes(range(256)) * 12)
    create_storage(f"sqlite:///{tmp / 'study.db'}", connect_timeout=2)


def _proxy_preset(tmp: Path, study: tuple[str, str]) -> None:
    from optuna_autoscale.proxy.train import ProxyConfig

    ProxyConfig(preset="huge")


def _fit(obs: list) -> None:
    from optuna_autoscale.laws import fit_power_laws

    fit_power_laws(obs, {"a": 1.0, "b": 1.0})


def _multi_objective(tmp: Path, study: tuple[str, str]) -> None:
    from optuna_autoscale import suggest_mixture

    s = optuna.create_study(directions=["minimize", "minimize"], sampler=_sampler(["a", "b"], [1e8]))
    s.optimize(lambda t: (suggest_mixture(t, ["a", "b"]).tokens, 2.0), n_trials=1)


def _storage(url: str) -> Callable[[Path, tuple[str, str]], None]:
    def run(tmp: Path, study: tuple[str, str]) -> None:
        from optuna_autoscale.storage import create_storage

        create_storage(url, connect_timeout=2)

    return run


def _suggest(tokens: float | None, autoscale: bool) -> Callable[[Path, tuple[str, str]], None]:
    def run(tmp: Path, study: tuple[str, str]) -> None:
        from optuna_autoscale import suggest_mixture

        s = optuna.create_study(sampler=_sampler(["a", "b"], [1e8]) if autoscale else None)
        s.optimize(lambda t: suggest_mixture(t, ["a", "b"], tokens=tokens).tokens, n_trials=1)

    return run


def _result(tmp: Path, study: tuple[str, str]) -> object:
    from optuna_autoscale import AutoScaleResult

    url, name = study
    return AutoScaleResult.from_study(optuna.load_study(study_name=name, storage=url), write_summary=False)


def _extrapolate(tokens: float, caps: dict | None = None) -> Callable[[Path, tuple[str, str]], None]:
    def run(tmp: Path, study: tuple[str, str]) -> None:
        _result(tmp, study).extrapolate(tokens, caps=caps)  # type: ignore[attr-defined]

    return run


class CLIError(Exception):
    """A CLI run that exited with status 2; the message is its stderr."""


def _cli(*args: str, env: dict[str, str] | None = None, setup: Callable[[Path, tuple[str, str]], list[str]] | None = None
         ) -> Callable[[Path, tuple[str, str]], None]:
    def run(tmp: Path, study: tuple[str, str]) -> None:
        url, name = study
        extra = setup(tmp, study) if setup else []
        argv = [a.replace("{url}", url).replace("{name}", name).replace("{tmp}", str(tmp)) for a in args] + extra
        proc = cli(*argv, env=env, timeout=120)
        assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        raise CLIError(proc.stderr.strip())

    return run


def _plain_study(tmp: Path, study: tuple[str, str]) -> list[str]:
    url = f"sqlite:///{tmp / 'plain.db'}"
    s = optuna.create_study(storage=url, study_name="plain")
    s.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    return ["--storage", url, "--study", "plain"]


def _changed_design(tmp: Path, study: tuple[str, str]) -> list[str]:
    db = tmp / "changed.db"
    first = sim_config(tmp / "first.toml", storage=f"sqlite:///{db}", name="changed", budgets=(1e8,), verify=False)
    from optuna_autoscale import commands

    assert commands.main(["run", str(first)]) == 0  # in-process: only the failing run needs a CLI process
    second = sim_config(tmp / "second.toml", storage=f"sqlite:///{db}", name="changed", budgets=(1e8, 4e8))
    return [str(second)]


CASES: list[Case] = [
    Case("E01", "a study whose trials use other domains than the sampler's", "AutoScaleSampler", "ValueError",
         "which this AutoScaleSampler does not know", _other_domains),
    Case("E02", "duplicate domains", "validate_domains / AutoScaleSampler", "ValueError",
         "Duplicate domain 'a'", lambda t, s: _sampler(["a", "a"], [1e8])),
    Case("E03", "a NaN weight", "Mixture", "ValueError", "must be finite and non-negative",
         lambda t, s: _mixture({"a": math.nan, "b": 1.0})),
    Case("E04", "a negative weight", "Mixture", "ValueError", "bad entries: {'a': -0.5}",
         lambda t, s: _mixture({"a": -0.5, "b": 1.5})),
    Case("E05", "weights that do not sum to 1", "Mixture", "ValueError", "Use Mixture.normalised",
         lambda t, s: _mixture({"a": 0.5, "b": 0.4})),
    Case("E06", "a budget <= 0", "AutoScaleSampler", "ValueError", "finite, positive number of tokens",
         lambda t, s: _sampler(["a", "b"], [0.0])),
    Case("E07", "a budget <= 0 in the run config", "config", "ConfigError", "design.budgets[0]: must be > 0",
         _config(_SIM.replace("[1e8]", "[-1e8]"))),
    Case("E08", "a multiplier <= 0", "AutoScaleSampler", "ValueError", "Every multiplier must be a finite number > 0",
         lambda t, s: _sampler(["a", "b"], [1e8], multipliers=(0.0, 3.0))),
    Case("E09", "infeasible bounds (lower bounds above the budget)", "AutoScaleSampler", "ValueError",
         "Infeasible bounds", lambda t, s: _sampler(["a", "b"], [1e8], bounds={"a": (8e7, None), "b": (8e7, None)})),
    Case("E10", "an empty domain file", "config (corpus)", "ConfigError", "is empty; a domain needs documents",
         lambda t, s: _corpus(t, "empty")),
    Case("E11", "a missing domain source", "build_corpus", "ValueError",
         "no file or folder at", lambda t, s: _corpus(t, "missing")),
    Case("E12", "a corrupt token cache", "Corpus.load", "CorpusCacheError", "delete", lambda t, s: _corpus(t, "corrupt")),
    Case("E13", "an unknown tokenizer path", "build_corpus", "FileNotFoundError", "No tokenizer at",
         lambda t, s: _corpus(t, "tokenizer")),
    Case("E14", "an unknown tokenizer in the run config", "config", "ConfigError", "corpus.tokenizer: unknown tokenizer",
         _config('[design]\nbudgets = [1e5]\n[corpus]\ntokenizer = "gpt-17"\n[[domains]]\nname = "a"\npath = "x"\n'
                 '[[domains]]\nname = "b"\npath = "y"\n')),
    Case("E15", "an unknown proxy preset", "ProxyConfig", "ValueError", "Unknown proxy preset 'huge'", _proxy_preset),
    Case("E16", "an unknown proxy preset in the run config", "config", "ConfigError", "proxy.preset: unknown value 'huge'",
         _config('[design]\nbudgets = [1e5]\n[[domains]]\nname = "a"\npath = "x"\n[[domains]]\nname = "b"\npath = "y"\n'
                 '[proxy]\npreset = "huge"\n')),
    Case("E17", "a non-finite loss in a DDO fit", "fit_power_laws", "ValueError", "objective must be finite, got nan",
         lambda t, s: _fit([({"a": 1.0, "b": 1.0}, math.nan), ({"a": 3.0, "b": 1.0}, 0.9)])),
    Case("E18", "a DDO run that changes two domains", "fit_power_laws", "ValueError", "changes 2 domains",
         lambda t, s: _fit([({"a": 1.0, "b": 1.0}, 1.0), ({"a": 3.0, "b": 3.0}, 0.9)])),
    Case("E19", "a multi-objective study", "AutoScaleSampler", "ValueError", "supports single-objective studies only",
         _multi_objective),
    Case("E20", "a storage URL that cannot be reached", "create_storage", "StorageUnreachableError",
         "Cannot reach the storage postgresql://postgres:***@127.0.0.1:1/test",
         _storage("postgresql://postgres:hunter2@127.0.0.1:1/test")),
    Case("E21", "a storage URL with an unknown scheme", "create_storage", "ValueError", "is not one of sqlite, postgresql",
         _storage("ftp://user:hunter2@host/x")),
    Case("E22", "a config with an unknown key", "config", "ConfigError", "design.budget: unknown key in [design]; did you mean 'budgets'?",
         _config(_SIM.replace("budgets", "budget"))),
    Case("E23", "a config with an unknown table", "config", "ConfigError", "trainer: unknown table or key",
         _config(_SIM + "[trainer]\nlr = 1\n")),
    Case("E24", "suggest_mixture(tokens=...) under AutoScaleSampler", "suggest_mixture", "ValueError",
         "drop the tokens argument", _suggest(1e8, True)),
    Case("E25", "suggest_mixture without tokens under another sampler", "suggest_mixture", "ValueError",
         "suggest_mixture needs tokens=", _suggest(None, False)),
    Case("E26", "extrapolating to a budget <= 0", "AutoScaleResult.extrapolate", "ValueError",
         "finite, positive number of training tokens", _extrapolate(-1.0)),
    Case("E27", "extrapolation caps naming an unknown domain", "AutoScaleResult.extrapolate", "ValueError",
         "caps names unknown domains", _extrapolate(1e10, {"nope": 1e9})),
    Case("E28", "a study name that does not exist", "CLI", "CLIError", "no study named 'nope'",
         _cli("status", "--storage", "{url}", "--study", "nope"), cli=True),
    Case("E29", "a study not run with AutoScaleSampler", "CLI", "CLIError", "has no AutoScale design yet",
         _cli("show", setup=_plain_study), cli=True),
    Case("E30", "a worker for a study that `run` did not start", "CLI", "CLIError", "has no run config",
         _cli("worker", "--storage", "{url}", "--study", "{name}"), cli=True),
    Case("E31", "re-running a study name with another [design]", "CLI", "CLIError", "was started with another [design]",
         _cli("run", setup=_changed_design), cli=True),
    Case("E32", "no storage given", "CLI", "CLIError", "no storage given", _cli("status", "--study", "x"), cli=True),
    Case("E33", "an unreachable storage on the command line (password redacted)", "CLI", "CLIError",
         "Cannot reach the storage postgresql://u:***@127.0.0.1:1/db",
         _cli("status", "--storage", "postgresql://u:hunter2@127.0.0.1:1/db", "--study", "x"), cli=True),
    Case("E34", "a bad run config on the command line", "CLI", "CLIError", "bad.toml: design.budgets[0]: must be > 0",
         _cli("run", "{tmp}/bad.toml",
              setup=lambda t, s: ((t / "bad.toml").write_text(_SIM.replace("[1e8]", "[0]")) and [])), cli=True),
    Case("E35", "a .jsonl file that is not JSON lines", "build_corpus", "ValueError",
         "b.jsonl' (json): ArrowInvalid: JSON parse error", lambda t, s: _corpus(t, "garbage")),
    Case("E36", "a .txt file that is not UTF-8 (Latin-1)", "build_corpus", "ValueError",
         "b.txt': it is not UTF-8 text (byte 0xe9 at offset 3); convert it to UTF-8", lambda t, s: _corpus(t, "latin1")),
    Case("E37", "a SQLite storage file that is not a database", "create_storage", "StorageUnreachableError",
         "is not a SQLite database (or is damaged)", _corrupt_sqlite),
    Case("E38", "Mixture given a list of weights", "Mixture", "TypeError",
         "Mixture weights must be a mapping domain -> share", lambda t, s: _mixture_list()),
    Case("E39", "a domain name with whitespace", "validate_domains / AutoScaleSampler", "ValueError",
         "Domain name 'my code' contains whitespace", lambda t, s: _sampler(["my code", "prose"], [1e8, 4e8])),
    Case("E40", "a [simulate] domain name with whitespace in the run config", "config", "ConfigError",
         "contains whitespace", _config(_SIM.replace('["a", "b"]', '["my code", "b"]'))),
    Case("E41", "a [[domains]] name with whitespace in the run config", "config", "ConfigError",
         "domains[0].name: 'my code' contains whitespace",
         _config('[design]\nbudgets = [1e5, 2e5]\n[[domains]]\nname = "my code"\npath = "x.jsonl"\n'
                 '[[domains]]\nname = "b"\npath = "y.jsonl"\n')),
    Case("E42", "a single budget (with the default verify=True)", "AutoScaleSampler", "ValueError",
         "AutoScale needs at least two budgets", lambda t, s: _sampler(["a", "b"], [1e8], verify=True)),
    Case("E43", "a Megatron data path with whitespace (show / extrapolate --format megatron)", "format_mixtures",
         "ValueError", "the data path '/data/my code' of domain 'code' contains whitespace",
         lambda t, s: _megatron({"code": "/data/my code"})),
    Case("E44", "extrapolating beyond the caps (they sum to less than the target)", "AutoScaleResult.extrapolate",
         "ValueError", "the caps sum to 3e8 tokens, less than the target 1e10: web 1e8, code 1e8, books 1e8",
         _extrapolate(1e10, {"web": 1e8, "code": 1e8, "books": 1e8})),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_its_clear_error(case: Case, tmp_path: Path, completed_study: tuple[str, str]) -> None:  # noqa: F811
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:
            case.run(tmp_path, completed_study)
    err = info.value
    names = {cls.__name__ for cls in type(err).__mro__}
    assert case.error in names, f"{case.id}: expected {case.error}, got {type(err).__name__}: {err}"
    assert case.fragment in str(err), f"{case.id}: {case.fragment!r} not in {str(err)!r}"
    assert "hunter2" not in str(err)


def test_non_finite_loss_fails_the_trial_and_reopens_its_point() -> None:
    """A NaN loss is not an exception: Optuna marks the trial FAIL and the point runs again."""
    from optuna_autoscale import suggest_mixture

    calls = []

    def objective(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, ["a", "b"])
        calls.append(trial.number)
        return math.nan if trial.number == 0 else mix.tokens / 1e8

    study = optuna.create_study(sampler=_sampler(["a", "b"], [1e8], verify=False))
    study.optimize(objective, n_trials=2)
    t0, t1 = study.trials
    assert t0.state == TrialState.FAIL
    assert t1.state == TrialState.COMPLETE
    assert t1.system_attrs["autoscale:point"] == t0.system_attrs["autoscale:point"]


def test_objective_exception_propagates_and_the_point_is_rerun() -> None:
    from optuna_autoscale import suggest_mixture

    def failing(trial: optuna.Trial) -> float:
        suggest_mixture(trial, ["a", "b"])
        raise RuntimeError("CUDA out of memory (simulated)")

    study = optuna.create_study(sampler=_sampler(["a", "b"], [1e8], verify=False))
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        study.optimize(failing, n_trials=1)
    assert study.trials[0].state == TrialState.FAIL
    study.optimize(lambda t: suggest_mixture(t, ["a", "b"]).tokens / 1e8, n_trials=1)
    assert study.trials[1].system_attrs["autoscale:point"] == study.trials[0].system_attrs["autoscale:point"]


def test_cli_never_prints_the_password() -> None:
    secret_url = "postgresql://admin:TopSecret123@127.0.0.1:1/optuna"
    outputs = []
    for args in (["status", "--study", "pw"], ["worker", "--study", "pw"]):
        proc = cli(*args, env={"OPTUNA_AUTOSCALE_STORAGE": secret_url})
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 2
    proc = cli("show", "--storage", secret_url, "--study", "pw")
    outputs.append(proc.stdout + proc.stderr)
    joined = "\n".join(outputs)
    assert "TopSecret123" not in joined
    assert joined.count("admin:***@") == 3


def render_table() -> str:
    lines = [
        "# Bad inputs and their errors",
        "",
        "Every row is tested by `tests/test_hardening.py` (which also checks that this table lists",
        "exactly its cases). The message column is a fragment of the actual message; the full",
        "messages also say how to fix the input. Passwords in storage URLs are always shown as `***`.",
        "",
        "| id | bad input | raised by | error | message contains |",
        "|---|---|---|---|---|",
    ]
    for c in CASES:
        err = "exit status 2, one line on stderr" if c.error == "CLIError" else f"`{c.error}`"
        frag = c.fragment.replace("|", "\\|")
        lines.append(f"| {c.id} | {c.bad_input} | {c.where} | {err} | `{frag}` |")
    lines += [
        "",
        "Behaviours that are not exceptions, also tested there:",
        "",
        "- a non-finite loss returned by the objective: Optuna marks the trial FAIL (with a warning) and",
        "  AutoScaleSampler re-opens its design point, so the next trial runs it again;",
        "- an exception raised by the objective: it propagates out of `study.optimize` (and out of",
        "  `optuna-autoscale run/worker`), the trial is FAIL, and the next run of any worker re-runs its point;",
        "- a worker killed in the middle of a trial (RDB storages): its heartbeat stops, the trial is",
        "  failed after `grace_period` and re-queued with the same design point (`tests/test_scaleout.py`).",
        "",
    ]
    return "\n".join(lines)


def test_docs_table_matches() -> None:
    doc = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    assert doc == render_table(), "docs/errors.md is stale: python tests/test_hardening.py > docs/errors.md"
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


if __name__ == "__main__":
    print(render_table(), end="")
