"""Helpers shared by the CLI / dashboard / storage / scale-out tests (not a test module).

A *completed* simulated AutoScale study (3 domains, budgets 1e8 and 4e8 tokens, verification
on) is built once per session in a SQLite file and reused read-only by the tests that only
read it (figures, dashboard, CLI output).
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
import subprocess
import sys
import uuid

import optuna
from optuna.trial import TrialState
import pytest

from optuna_autoscale.design import DesignPoint
from optuna_autoscale.design import POINT_ATTR


REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("web", "code", "books")
BUDGETS = (1e8, 4e8)
POSTGRES_URL = os.environ.get("AUTOSCALE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AUTOSCALE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def frozen_trial(
    number: int, state: TrialState, point: DesignPoint | None, value: float | None = 1.0, **kw: object
) -> optuna.trial.FrozenTrial:
    """A finished or running trial carrying design point ``point`` (``None``: no point), for ledger tests.

    ``start=`` sets its start time, ``sys=`` adds system attrs.
    """
    now = datetime.datetime.now()
    return optuna.trial.FrozenTrial(
        number=number,
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        values=None,
        datetime_start=kw.get("start", now),  # type: ignore[arg-type]
        datetime_complete=now if state.is_finished() else None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs=({} if point is None else {POINT_ATTR: point.to_json()}) | dict(kw.get("sys", {})),  # type: ignore[arg-type]
        intermediate_values={},
        trial_id=number,
    )


def shared_data_dir() -> Path:
    """The published measurements (``../shared/data``), read at run time, never copied into the repo.

    ``$AUTOSCALE_SHARED_DATA`` if set; else ``shared/data`` next to this checkout; else next to the
    checkout it was cloned from (a CI clone of a local repository lives elsewhere, its ``origin``
    remote is that repository's path). Tests that need a file in it skip, naming the path, when it
    is absent.
    """
    env = os.environ.get("AUTOSCALE_SHARED_DATA")
    if env:
        return Path(env)
    here = REPO.parent / "shared" / "data"
    if here.is_dir():
        return here
    try:
        origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and Path(origin).is_dir():
        cand = Path(origin).resolve().parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return here


def write_text_domains(root: Path, docs: int = 60, names: tuple[str, ...] = ("prose", "code", "legal")) -> dict[str, Path]:
    """Tiny domains on disk as jsonl files (``docs`` documents each, distinct vocabularies)."""
    words = {
        "prose": "the river runs past the old mill where the miller sings".split(),
        "code": "def return for in range if else while import class self".split(),
        "legal": "licensee shall hereby grant warranty liability notice copies".split(),
    }
    out: dict[str, Path] = {}
    for name in names:
        vocab = words[name]
        path = root / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(docs):
                text = " ".join(vocab[(i * 7 + j * 3) % len(vocab)] for j in range(20 + i % 9)) + f" {i}"
                fh.write(json.dumps({"text": text}) + "\n")
        out[name] = path
    return out


def unique_name(prefix: str = "t") -> str:
    """A study name no other test (or concurrent CI run) uses."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def sim_config(path: Path, *, storage: str, name: str, workers: int = 1, sleep: float = 0.0,
               extra_study: str = "", dashboard: bool = False, heartbeat: int = 0, grace: int | None = None,
               budgets: tuple[float, ...] = BUDGETS, verify: bool = True) -> Path:
    """Write a simulate-objective run config and return its path."""
    hb = f"heartbeat_interval = {heartbeat}\n" + (f"grace_period = {grace}\n" if grace else "")
    path.write_text(
        f"""
[study]
name = "{name}"
storage = "{storage}"
objective = "simulate"
workers = {workers}
dashboard = {str(dashboard).lower()}
{hb}{extra_study}
[design]
budgets = [{", ".join(repr(float(b)) for b in budgets)}]
verify = {str(verify).lower()}

[simulate]
domains = [{", ".join(f'"{d}"' for d in DOMAINS)}]
sleep = {sleep}
""",
        encoding="utf-8",
    )
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m optuna_autoscale.commands ARGS`` and capture its output."""
    full_env = dict(os.environ)
    full_env.pop("OPTUNA_AUTOSCALE_STORAGE", None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "optuna_autoscale.commands", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"command {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_sim_study(storage: object, name: str) -> optuna.Study:
    """Run a complete simulated AutoScale study in-process."""
    from optuna_autoscale import AutoScaleSampler
    from optuna_autoscale.simulate import separable

    land = separable(domains=list(DOMAINS), seed=0)
    study = optuna.create_study(storage=storage, study_name=name,
                                sampler=AutoScaleSampler(land.domains, list(BUDGETS), seed=0))
    study.optimize(land.objective())
    return study


_BUILT: dict[str, tuple[str, str]] = {}


@pytest.fixture(scope="session")
def completed_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(storage URL, study name)`` of a completed simulated study in SQLite.

    Test modules import this fixture, so pytest registers it once per module; the module-level
    cache makes the whole session build the study once.
    """
    if "completed" not in _BUILT:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        db = tmp_path_factory.mktemp("completed") / "study.db"
        url = f"sqlite:///{db}"
        run_sim_study(url, "completed")
        _BUILT["completed"] = (url, "completed")
    return _BUILT["completed"]
