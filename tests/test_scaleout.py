"""Scale-out on the real PostgreSQL: many worker processes, SIGKILLed workers, restarts.

Every test drives the real CLI (``run`` / ``worker`` subcommands in their own processes) on a
simulated objective that sleeps a little per trial, and checks the design in storage:
every design point completed (0 missing), none completed twice (0 duplicated), and the fitted
result equal to a reference run of the same config without workers or faults.
"""
from __future__ import annotations

from collections import Counter
import functools
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState
import pytest

from _autoscale_helpers import POSTGRES_URL
from _autoscale_helpers import REPO
from _autoscale_helpers import sim_config
from _autoscale_helpers import unique_name
from optuna_autoscale import AutoScaleResult
from optuna_autoscale.commands import build_objective
from optuna_autoscale.commands import build_sampler
from optuna_autoscale.config import load_config
from optuna_autoscale.design import CONFIG_ATTR
from optuna_autoscale.design import POINT_ATTR
from optuna_autoscale.design import Design
from optuna_autoscale.design import Ledger
from optuna_autoscale.storage import create_storage


pytestmark = [pytest.mark.postgres, pytest.mark.slow]
optuna.logging.set_verbosity(optuna.logging.WARNING)

# trust auth ignores the password: it is there to prove that no output ever shows it
SECRET = "pw-must-not-leak-7731"
URL_WITH_PASSWORD = POSTGRES_URL.replace("://postgres@", f"://postgres:{SECRET}@")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OPTUNA_AUTOSCALE_STORAGE"] = URL_WITH_PASSWORD
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(*args: str, log: Path) -> subprocess.Popen:
    fh = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "optuna_autoscale.commands", *args], cwd=REPO, env=_env(),
                            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


@functools.lru_cache(maxsize=1)
def _reader() -> optuna.storages.BaseStorage:
    # One storage (one connection pool) for every read: the tests poll every 0.1 s, and a new
    # storage per poll left an engine, with its open connection, per poll until the garbage
    # collector ran, which exhausted PostgreSQL's 100 connections ("too many clients") mid-test.
    return create_storage(POSTGRES_URL, heartbeat_interval=None)


def _study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=_reader())


def _design_counts(study: optuna.Study) -> tuple[Design, Ledger, Counter]:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    design = Design.from_config(attrs[CONFIG_ATTR])
    ledger = Ledger(design, study.get_trials(deepcopy=False))
    keys = [p.key for p in design.points] + list(design.dynamic_keys)
    completed = Counter({k: len(ledger.done.get(k, [])) for k in keys})
    return design, ledger, completed


def _assert_exactly_once(study: optuna.Study) -> Counter:
    design, ledger, completed = _design_counts(study)
    missing = [k for k, n in completed.items() if n == 0]
    duplicated = [k for k, n in completed.items() if n > 1]
    assert missing == [], f"design points never completed: {missing}"
    assert duplicated == [], f"design points completed more than once: {duplicated}"
    return completed


def _reference(config: Path) -> AutoScaleResult:
    cfg = load_config(config)
    cfg.simulate.sleep = 0.0
    objective, domains, unique = build_objective(cfg)
    study = optuna.create_study(sampler=build_sampler(cfg, domains, unique_tokens=unique))
    study.optimize(objective)
    return AutoScaleResult.from_study(study, write_summary=False)


def _assert_same_result(study: optuna.Study, reference: AutoScaleResult) -> None:
    got = AutoScaleResult.from_study(study, write_summary=False)
    assert sorted(got.optima) == sorted(reference.optima)
    for b, mix in reference.optima.items():
        for d, w in mix.weights.items():
            assert got.optima[b].weights[d] == pytest.approx(w, rel=1e-9, abs=1e-12)
    for method in ("joint", "paper"):
        want = reference.extrapolate(1e10, method=method).weights
        have = got.extrapolate(1e10, method=method).weights
        for d in want:
            assert have[d] == pytest.approx(want[d], rel=1e-6, abs=1e-9), method
    assert len(got.verification()) == len(reference.verification())
    for a, b in zip(got.verification(), reference.verification()):
        assert a["check"] == b["check"] and a["observed"] == pytest.approx(b["observed"])


def _cleanup(name: str) -> None:
    try:
        optuna.delete_study(study_name=name, storage=create_storage(POSTGRES_URL, heartbeat_interval=None))
    except KeyError:
        pass


def _no_secret(*logs: Path) -> None:
    for log in logs:
        if log.exists():
            text = log.read_text(encoding="utf-8")
            assert SECRET not in text, f"password leaked in {log.name}"


def _wait(predicate: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_four_workers_complete_the_design_exactly_once(tmp_path: Path) -> None:
    name = unique_name("scale4")
    config = sim_config(tmp_path / "run.toml", storage="sqlite:///unused.db", name=name, workers=4, sleep=0.2,
                        heartbeat=5, grace=20)
    log = tmp_path / "run.log"
    try:
        proc = _spawn("run", str(config), log=log)
        assert proc.wait(timeout=600) == 0, log.read_text()
        study = _study(name)
        completed = _assert_exactly_once(study)
        assert sum(completed.values()) == 18
        # four processes did share the work
        text = log.read_text()
        assert text.count("worker ") == 3 and "design complete: True" in text
        # idle workers prune their last trial (it claimed and trained nothing): at most one per worker
        others = [t for t in study.trials if t.state != TrialState.COMPLETE]
        assert all(t.state == TrialState.PRUNED for t in others) and len(others) <= 4
        _assert_same_result(study, _reference(config))
        _no_secret(log)
        assert "postgres:***@" in text or "postgres@" in text
    finally:
        _cleanup(name)


def test_sigkilled_worker_point_is_rerun_and_result_unchanged(tmp_path: Path) -> None:
    name = unique_name("kill")
    config = sim_config(tmp_path / "run.toml", storage="sqlite:///unused.db", name=name, workers=1, sleep=1.0,
                        heartbeat=1, grace=3)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    try:
        a = _spawn("run", str(config), log=log_a)

        def running_with_point() -> bool:
            try:
                s = _study(name)
            except (KeyError, Exception):
                return False
            done = [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
            run = [t for t in s.get_trials(deepcopy=False)
                   if t.state == TrialState.RUNNING and "autoscale:point" in t.system_attrs]
            return len(done) >= 2 and bool(run)

        _wait(running_with_point, 300, "a running trial of worker A")
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        study = _study(name)
        killed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        assert len(killed) == 1
        killed_point = killed[0].system_attrs["autoscale:point"]

        b = _spawn("worker", "--study", name, log=log_b)
        assert b.wait(timeout=600) == 0, log_b.read_text()
        study = _study(name)
        _assert_exactly_once(study)
        dead = study.trials[killed[0].number]
        assert dead.state == TrialState.FAIL, "the heartbeat marked the killed trial FAIL"
        retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0].number]
        assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
        assert retried[0].system_attrs["autoscale:point"] == killed_point, "the same design point was re-run"
        _assert_same_result(study, _reference(config))
        _no_secret(log_a, log_b)
    finally:
        _cleanup(name)


def test_study_resumes_after_every_worker_restarts(tmp_path: Path) -> None:
    name = unique_name("resume")
    # Trials sleep 2 s so that, at the kill, a worker is almost surely inside a trial (the check
    # below needs a RUNNING trial to turn stale; with short trials a loaded machine may catch
    # both workers between trials).
    config = sim_config(tmp_path / "run.toml", storage="sqlite:///unused.db", name=name, workers=2, sleep=2.0,
                        heartbeat=1, grace=3)
    log1, log2 = tmp_path / "first.log", tmp_path / "second.log"
    try:
        first = _spawn("run", str(config), log=log1)

        def some_done() -> bool:
            try:
                s = _study(name)
            except Exception:
                return False
            trials = s.get_trials(deepcopy=False)
            return (sum(t.state == TrialState.COMPLETE for t in trials) >= 5
                    and any(t.state == TrialState.RUNNING and POINT_ATTR in t.system_attrs for t in trials))

        _wait(some_done, 300, "five completed trials and one running")
        os.killpg(first.pid, signal.SIGKILL)  # the run process and its worker process
        first.wait(timeout=30)
        time.sleep(0.5)
        before = _study(name).trials  # a snapshot: Study.trials reads storage on every access
        n_done_before = sum(t.state == TrialState.COMPLETE for t in before)
        assert 5 <= n_done_before < 18

        second = _spawn("run", str(config), log=log2)  # every worker restarted: the study resumes
        assert second.wait(timeout=600) == 0, log2.read_text()
        study = _study(name)
        _assert_exactly_once(study)
        # the completed work was kept, not redone
        after = study.trials
        for t in before:
            if t.state == TrialState.COMPLETE:
                assert after[t.number].state == TrialState.COMPLETE and after[t.number].values == t.values
        # A trial killed mid-run (it holds a design point and was beating) is failed as stale. A trial
        # killed in the instant between its creation and its first heartbeat never beat, so Optuna
        # cannot tell it is stale; it holds no point, and the sampler ignores it (exactly-once above).
        stale = [t for t in before if t.state == TrialState.RUNNING and POINT_ATTR in t.system_attrs]
        assert stale, "the kill left running trials behind"
        for t in stale:
            assert study.trials[t.number].state == TrialState.FAIL
        _assert_same_result(study, _reference(config))
        _no_secret(log1, log2)
    finally:
        _cleanup(name)
