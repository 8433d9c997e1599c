"""Concurrent workers share one design: no point is run twice, none is lost."""

from __future__ import annotations

from collections import Counter
import os
import subprocess
import sys
import textwrap
import uuid

import optuna
from optuna.trial import TrialState
import pytest

from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale.design import Design
from optuna_autoscale.design import DesignPoint
from optuna_autoscale.design import POINT_ATTR


optuna.logging.set_verbosity(optuna.logging.WARNING)

DOMS = ["web", "code", "books", "news"]
BUDGETS = [1e8, 4e8]
ARGS = dict(replicates=1, seed=3)

_WORKER = textwrap.dedent(
    """
    import sys, time, zlib
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna_autoscale import AutoScaleSampler, suggest_mixture
    from optuna_autoscale.simulate import separable

    url, name, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
    land = separable(domains={doms!r}, seed=1)
    sampler = AutoScaleSampler(land.domains, {budgets!r}, **{args!r})
    study = optuna.load_study(study_name=name, storage=url, sampler=sampler)

    def objective(trial):
        mix = suggest_mixture(trial, land.domains)
        time.sleep((zlib.crc32(repr(mix.allocation).encode()) % 20) / 1000)  # uneven run times
        return land.loss(mix.allocation, seed=mix.seed)

    study.optimize(objective, n_trials=200)
    """
).format(doms=DOMS, budgets=BUDGETS, args=ARGS)


def _check_no_collision(study: optuna.Study, workers: int = 2) -> None:
    design = Design(DOMS, BUDGETS, **ARGS)
    wanted = {p.key for p in design.points} | set(design.dynamic_keys)
    done = Counter(
        DesignPoint.from_json(t.system_attrs[POINT_ATTR]).key
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )
    duplicated = {k: n for k, n in done.items() if n > 1}
    missing = wanted - set(done)
    assert duplicated == {} and missing == set()
    assert all("/replicate/t" in k for k in set(done) - wanted)  # only fresh-seed fillers beyond the design
    # Workers that found nothing to claim waited; once the design was complete each pruned its
    # last trial, which claimed nothing. Runs beyond the design: at most one per worker.
    others = [t for t in study.trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.PRUNED and t.system_attrs.get(POINT_ATTR) is None for t in others)
    assert len(others) + sum(done.values()) - len(wanted) <= workers
    result = AutoScaleResult.from_study(study, write_summary=False)
    assert set(result.optima) == set(BUDGETS)


def _run_workers(url: str, name: str, n: int = 2) -> None:
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, url, name, str(i)], env=env, stderr=subprocess.PIPE)
        for i in range(n)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]


@pytest.mark.parametrize("n_jobs", [2, 4])
def test_threads_share_the_design(n_jobs: int) -> None:
    from optuna_autoscale.simulate import separable

    land = separable(domains=DOMS, seed=1)
    sampler = AutoScaleSampler(DOMS, BUDGETS, **ARGS)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        import time

        from optuna_autoscale import suggest_mixture

        mix = suggest_mixture(trial, DOMS)
        time.sleep(0.002 * (trial.number % 5))
        return land.loss(mix.allocation, seed=mix.seed)

    study.optimize(objective, n_trials=300, n_jobs=n_jobs)
    assert sampler.is_complete(study)
    _check_no_collision(study, workers=n_jobs)


@pytest.mark.slow
def test_two_processes_share_one_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="shared", storage=url)
    _run_workers(url, "shared")
    _check_no_collision(optuna.load_study(study_name="shared", storage=url))


@pytest.mark.slow
def test_two_processes_share_one_journal_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = str(tmp_path / "journal.log")
    optuna.create_study(study_name="journal", storage=JournalStorage(JournalFileBackend(path)))
    worker = _WORKER.replace(
        "study = optuna.load_study(study_name=name, storage=url, sampler=sampler)",
        "from optuna.storages import JournalStorage\n"
        "from optuna.storages.journal import JournalFileBackend\n"
        "study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(url)), sampler=sampler)",
    )
    procs = [subprocess.Popen([sys.executable, "-c", worker, path, "journal", str(i)], stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    _check_no_collision(optuna.load_study(study_name="journal", storage=JournalStorage(JournalFileBackend(path))))


def _racing_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[optuna.Study, AutoScaleSampler, optuna.Trial, optuna.Trial, str]:
    """Two trials whose claims raced: ``first`` claimed earlier, but ``second`` read the ledger before that claim
    landed, so both computed the same point. ``first`` has stored it; ``second`` is about to."""
    import datetime

    from optuna_autoscale.ledger import CLAIM_ATTR
    from optuna_autoscale.ledger import Ledger

    sampler = AutoScaleSampler(DOMS, BUDGETS, **ARGS)
    study = optuna.create_study(sampler=sampler)
    first, second = study.ask(), study.ask()
    key = sampler.design.points[0].key
    storage = study._storage
    storage.set_trial_system_attr(first._trial_id, CLAIM_ATTR, (datetime.datetime.now() - datetime.timedelta(seconds=1)).isoformat())
    storage.set_trial_system_attr(first._trial_id, POINT_ATTR, sampler.design.points[0].to_json())
    stale = iter([key])  # the second trial's first read misses the first claim; later reads see it

    real = Ledger.next_key

    def next_key(self: Ledger, number: int, claimed_at: object = None) -> str | None:
        return next(stale, None) or real(self, number, claimed_at)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "next_key", next_key)
    return study, sampler, first, second, key


def test_a_raced_claim_gives_the_point_to_the_earlier_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_autoscale import suggest_mixture

    study, sampler, first, second, key = _racing_pair(monkeypatch)
    suggest_mixture(second, DOMS)
    points = {t.number: DesignPoint.from_json(t.system_attrs[POINT_ATTR]).key for t in study.get_trials(deepcopy=False)}
    assert points[first.number] == key
    assert points[second.number] != key  # released and claimed again: the next open point
    assert points[second.number] == sampler.design.points[1].key


def test_claim_standing_orders_claims_by_time_then_number() -> None:
    import datetime

    from optuna.trial import create_trial

    from optuna_autoscale.ledger import CLAIM_ATTR
    from optuna_autoscale.ledger import claim_standing

    design = Design(DOMS, BUDGETS, **ARGS)
    p0, p1 = design.points[0], design.points[1]
    t0 = datetime.datetime(2026, 1, 1, 12, 0, 0)

    def trial(number: int, when: datetime.datetime | None, point: DesignPoint | None, state: TrialState = TrialState.RUNNING):
        attrs = {} if when is None else {CLAIM_ATTR: when.isoformat()}
        if point is not None:
            attrs[POINT_ATTR] = point.to_json()
        t = create_trial(state=state, system_attrs=attrs)
        t.number = number
        return t

    now = t0 + datetime.timedelta(seconds=1)
    earlier, later = t0 - datetime.timedelta(milliseconds=5), t0 + datetime.timedelta(milliseconds=5)
    me = trial(7, t0, p0)
    stand = lambda others: claim_standing([me, *others], design, 7, t0, p0.key, now=now)  # noqa: E731
    assert stand([]) == "kept"
    assert stand([trial(3, earlier, p0)]) == "lost"
    assert stand([trial(3, later, p0)]) == "kept"  # the other trial loses (it sees us)
    assert stand([trial(3, t0, p0)]) == "lost" and claim_standing([trial(3, t0, p0), me], design, 3, t0, p0.key, now=now) == "kept"
    assert stand([trial(9, t0, p0)]) == "kept"  # a tie goes to the smaller number
    assert stand([trial(3, earlier, p1)]) == "kept"  # another point
    assert stand([trial(3, earlier, None)]) == "pending"  # may be taking ours right now
    assert stand([trial(3, later, None)]) == "kept"
    assert stand([trial(3, None, p0)]) == "kept"  # not claiming (waiting, or an enqueued trial)
    assert stand([trial(3, earlier, p0, TrialState.FAIL)]) == "kept"  # a failed run re-opens its point
    stale = t0 - datetime.timedelta(minutes=5)
    assert claim_standing([me, trial(3, stale, None)], design, 7, t0, p0.key, now=now) == "kept"  # a dead claimant


PG_URL = os.environ.get("AUTOSCALE_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _postgres_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(PG_URL.replace("+psycopg2", ""), connect_timeout=3).close()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_share_postgresql() -> None:
    if not _postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    name = f"autoscale-concurrency-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=PG_URL)
    try:
        _run_workers(PG_URL, name)
        _check_no_collision(optuna.load_study(study_name=name, storage=PG_URL))
    finally:
        optuna.delete_study(study_name=name, storage=PG_URL)


@pytest.mark.postgres
@pytest.mark.slow
def test_four_workers_one_killed_waste_at_most_one_run_each() -> None:
    """benchmarks/idle_workers.py's setting: 4 workers on PostgreSQL, one SIGKILLed mid-trial."""
    if not _postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "idle_workers.py"
    spec = importlib.util.spec_from_file_location("idle_workers_bench", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = mod.run_setting(PG_URL, 0, 4, 4.0)
    assert row["missing"] == 0 and row["duplicated"] == 0  # the killed worker's point was re-run
    assert row["fillers"] == 0
    assert row["pruned (idle)"] <= 4  # runs beyond the design: at most one (untrained) per worker


def test_a_long_wait_is_not_a_dead_worker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A trial waiting for a point keeps its heartbeat: it is never failed as stale."""
    import time

    from optuna_autoscale import suggest_mixture
    from optuna_autoscale.simulate import separable
    from optuna_autoscale.storage import create_storage

    land = separable(domains=["a", "b"], seed=1)
    storage = create_storage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_interval=1, grace_period=2)
    sampler = AutoScaleSampler(land.domains, [1e6, 4e6], verify=False, seed=0)
    study = optuna.create_study(storage=storage, sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        mix = suggest_mixture(trial, land.domains)
        if trial.number == 0:
            time.sleep(5.0)  # the others run out of points and wait longer than the grace period
        return land.loss(mix.allocation, seed=mix.seed)

    study.optimize(objective, n_trials=30, n_jobs=2)
    states = Counter(t.state for t in study.trials)
    assert states[TrialState.FAIL] == 0
    assert states[TrialState.COMPLETE] == len(sampler.design.points)
    assert states[TrialState.PRUNED] <= 2
