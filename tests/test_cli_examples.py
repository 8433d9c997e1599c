"""Every example line of the CLI's ``--help`` that reads a study runs as written on the example study.

The example study (``examples/config.toml``: micro GPT-2 proxies on two embedded domains) is run once,
with ``optuna-autoscale run``, in a scratch copy; then every example of the commands that read a study
(status, show, extrapolate, fit, report; ``dashboard`` serves forever and ``run``/``worker``/``corpus``/
``demo`` write) runs there with its study options pointed at that copy: ``examples/config.toml`` and
``my.toml`` at the copied config, ``--storage`` at its database, ``--study`` at its name, and ``fit``'s
runs tables exported from the study. Each must exit 0 without a traceback.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys

import pytest


pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
READS = ("status", "show", "extrapolate", "fit", "report")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OPTUNA_AUTOSCALE_STORAGE", None)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import optuna

    from optuna_autoscale.config import load_config

    tmp = tmp_path_factory.mktemp("example")
    cfg_path = tmp / "config.toml"
    shutil.copy(REPO / "examples" / "config.toml", cfg_path)
    proc = subprocess.run([sys.executable, "-m", "optuna_autoscale", "run", str(cfg_path)], cwd=tmp, env=_env(),
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "design complete: True" in proc.stdout, proc.stdout[-3000:]
    dbs = sorted(tmp.glob("*.db"))
    assert len(dbs) == 1, dbs
    url = f"sqlite:///{dbs[0]}"
    name = load_config(cfg_path).study.name
    with contextlib.chdir(tmp):
        frame = optuna.load_study(study_name=name, storage=url).trials_dataframe()
    frame.to_csv(tmp / "runs.csv", index=False)
    frame.to_parquet(tmp / "trials.parquet", index=False)
    return {"dir": str(tmp), "config": str(cfg_path), "url": url, "name": name}


def _examples() -> list[tuple[str, str]]:
    from optuna_autoscale.cli import COMMANDS

    out = [(" ".join(c.path), e) for c in COMMANDS if c.path[0] in READS for e in c.examples]
    assert {p for p, _ in out} == set(READS), "every command that reads a study has --help examples"
    return out


def _argv(line: str, example: dict[str, str]) -> list[str]:
    words = shlex.split(line)
    assert words[0] == "optuna-autoscale", line
    argv = [sys.executable, "-m", "optuna_autoscale"]
    it = iter(words[1:])
    for w in it:
        if w in ("examples/config.toml", "my.toml"):
            argv.append(example["config"])
        elif w == "--storage":
            next(it)
            argv += [w, example["url"]]
        elif w == "--study":
            next(it)
            argv += [w, example["name"]]
        else:
            argv.append(w)
    return argv


@pytest.mark.parametrize(("command", "line"), _examples(), ids=[e for _, e in _examples()])
def test_help_example_runs_on_the_example_study(command: str, line: str, example: dict[str, str]) -> None:
    argv = _argv(line, example)
    proc = subprocess.run(argv, cwd=example["dir"], env=_env(), capture_output=True, text=True, timeout=600)
    both = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{line}\n-> {argv}\n{both[-4000:]}"
    assert "Traceback" not in both, both[-4000:]
    assert "next: " in both.strip().splitlines()[-1] or any(l.startswith("next: ") for l in both.splitlines()), both
