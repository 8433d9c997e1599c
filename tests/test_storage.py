"""Storage URLs: RDB (SQLite, real PostgreSQL) with heartbeats, journal file, real Redis; redaction."""
from __future__ import annotations

import base64
import json
import logging
import pickle
import sqlite3
from pathlib import Path

from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import optuna
import pytest

from _autoscale_helpers import completed_study  # noqa: F401  (session fixture)
from _autoscale_helpers import POSTGRES_URL
from _autoscale_helpers import REDIS_URL
from _autoscale_helpers import run_sim_study
from _autoscale_helpers import unique_name
from optuna_autoscale.storage import create_storage
from optuna_autoscale.storage import fail_running_trials
from optuna_autoscale.storage import install_log_redaction
from optuna_autoscale.storage import redact_text
from optuna_autoscale.storage import redact_url
from optuna_autoscale.storage import resolve_storage_url
from optuna_autoscale.storage import retry_callback
from optuna_autoscale.storage import storage_kind
from optuna_autoscale.storage import StorageUnreachableError


optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------------------ redaction
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://alice:s3cret@db:5432/optuna", "postgresql://alice:***@db:5432/optuna"),
        ("postgresql+psycopg2://alice:p%40ss@db/optuna", "postgresql+psycopg2://alice:***@db/optuna"),
        ("mysql+pymysql://root:pw@127.0.0.1/x?charset=utf8", "mysql+pymysql://root:***@127.0.0.1/x?charset=utf8"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379/0?password=hunter2&prefix=a", "redis://127.0.0.1:6379/0?password=***&prefix=a"),
        ("sqlite:///study.db", "sqlite:///study.db"),
        ("postgresql://bob@db/optuna", "postgresql://bob@db/optuna"),
        ("journal:///tmp/x.log", "journal:///tmp/x.log"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@settings(max_examples=200, deadline=None)
@given(
    user=st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=8),
    password=st.text(alphabet=st.characters(blacklist_characters="@/ \n\t\r", min_codepoint=33, max_codepoint=126),
                     min_size=4, max_size=24),
)
def test_password_never_survives_redaction(user: str, password: str) -> None:
    # (a password that is also the user name or part of the fixed text is masked there too, by design)
    assume(password not in user and password not in "connect to postgresql://db.example:5432/optuna failed; password was")
    url = f"postgresql://{user}:{password}@db.example:5432/optuna"
    assert redact_url(url) == f"postgresql://{user}:***@db.example:5432/optuna"
    text = f"connect to {url} failed; password was {password}"
    assert redact_text(text, [url]) == f"connect to postgresql://{user}:***@db.example:5432/optuna failed; password was ***"


def test_log_filter_redacts(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://me:topsecret42@db/x"
    filt = install_log_redaction([url])
    logger = logging.getLogger("optuna_autoscale.test")
    with caplog.at_level(logging.INFO, logger="optuna_autoscale.test"):
        caplog.handler.addFilter(filt)
        logger.info("opening %s (pw %s)", url, "topsecret42")
    assert "topsecret42" not in caplog.text
    assert "me:***@db/x" in caplog.text


def test_storage_kind_and_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage_kind("sqlite:///a.db") == "rdb"
    assert storage_kind("postgresql+psycopg2://u@h/d") == "rdb"
    assert storage_kind("journal:///tmp/a.log") == "journal-file"
    assert storage_kind("redis://h:6379/0") == "journal-redis"
    with pytest.raises(ValueError, match="scheme 'ftp' is not one of"):
        storage_kind("ftp://u:pw@h")
    with pytest.raises(ValueError, match="empty"):
        storage_kind("")
    monkeypatch.delenv("OPTUNA_AUTOSCALE_STORAGE", raising=False)
    with pytest.raises(ValueError, match="OPTUNA_AUTOSCALE_STORAGE"):
        resolve_storage_url(None)
    monkeypatch.setenv("OPTUNA_AUTOSCALE_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url(None) == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///flag.db") == "sqlite:///flag.db"


def test_bad_heartbeat_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with pytest.raises(ValueError, match="heartbeat_interval must be a positive integer"):
        create_storage(url, heartbeat_interval=0)
    with pytest.raises(ValueError, match="grace_period must be an integer number of seconds larger"):
        create_storage(url, heartbeat_interval=10, grace_period=5)
    with pytest.raises(ValueError, match="max_retry"):
        retry_callback(-1)


# ------------------------------------------------------------------------------------ SQLite / journal
def test_sqlite_storage_has_heartbeat_and_retry(tmp_path: Path) -> None:
    storage = create_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat_interval=5, grace_period=20, max_retry=2)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.heartbeat_interval == 5 and storage.grace_period == 20
    cb = storage.get_heartbeat_stale_trial_callback() if hasattr(storage, "get_heartbeat_stale_trial_callback") \
        else storage.get_failed_trial_callback()
    assert cb is not None and cb._max_retry == 2


def test_journal_file_round_trip(tmp_path: Path) -> None:
    url = f"journal://{tmp_path / 'study.log'}"
    name = unique_name("journal")
    storage = create_storage(url)
    assert isinstance(storage, optuna.storages.JournalStorage)
    study = optuna.create_study(storage=storage, study_name=name)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name=name, storage=create_storage(f"journal:{tmp_path / 'study.log'}"))
    assert len(again.trials) == 3


def test_fail_running_trials_requeues(tmp_path: Path) -> None:
    storage = create_storage(f"journal:{tmp_path / 'j.log'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    assert fail_running_trials(study) == [trial.number]
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]


# ------------------------------------------------------------------------------------ unreachable
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql://postgres:hunter2@127.0.0.1:1/test", "Cannot reach the storage postgresql://postgres:***@127.0.0.1:1/test"),
        ("redis://:hunter2@127.0.0.1:1/0", "Cannot reach the storage redis://:***@127.0.0.1:1/0"),
        ("sqlite:////nonexistent-dir/x.db", "folder '/nonexistent-dir' does not exist"),
        ("journal:///nonexistent-dir/x.log", "folder '/nonexistent-dir' does not exist"),
    ],
)
def test_unreachable_storage_is_clear_and_redacted(url: str, fragment: str) -> None:
    with pytest.raises(StorageUnreachableError) as info:
        create_storage(url, connect_timeout=2)
    assert fragment in str(info.value)
    assert "hunter2" not in str(info.value)


# ------------------------------------------------------------------------------------ PostgreSQL
@pytest.mark.postgres
def test_postgres_storage_round_trip_with_heartbeat() -> None:
    name = unique_name("pg")
    storage = create_storage(POSTGRES_URL, heartbeat_interval=1, grace_period=3)
    assert isinstance(storage, optuna.storages.RDBStorage)
    try:
        study = optuna.create_study(storage=storage, study_name=name)
        study.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=4)
        again = optuna.load_study(study_name=name, storage=create_storage(POSTGRES_URL, heartbeat_interval=None))
        assert len(again.trials) == 4
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in again.trials)
    finally:
        optuna.delete_study(study_name=name, storage=storage)


@pytest.mark.postgres
def test_postgres_wrong_database_and_role_are_clear() -> None:
    base = POSTGRES_URL.rsplit("/", 1)[0]
    with pytest.raises(StorageUnreachableError, match='database "no_such_db_autoscale" does not exist'):
        create_storage(base + "/no_such_db_autoscale")
    host = POSTGRES_URL.split("@", 1)[1]
    with pytest.raises(StorageUnreachableError, match='role "no_such_role" does not exist') as info:
        create_storage(f"postgresql://no_such_role:pw123456@{host}")
    assert "pw123456" not in str(info.value)


@pytest.mark.postgres
def test_postgres_holds_json_only() -> None:
    """Every attr an AutoScale study writes is JSON in the database, never a pickle."""
    import sqlalchemy

    name = unique_name("pgjson")
    storage = create_storage(POSTGRES_URL, heartbeat_interval=None)
    try:
        run_sim_study(storage, name)
        from optuna_autoscale.dashboard import refresh

        refresh(optuna.load_study(study_name=name, storage=storage))
        url = storage.url
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            sid = conn.execute(sqlalchemy.text("select study_id from studies where study_name = :n"), {"n": name}).scalar()
            rows = []
            for table in ("study_user_attributes", "study_system_attributes"):
                rows += conn.execute(sqlalchemy.text(f"select key, value_json from {table} where study_id = :s"), {"s": sid}).all()
            for table in ("trial_user_attributes", "trial_system_attributes"):
                rows += conn.execute(
                    sqlalchemy.text(f"select a.key, a.value_json from {table} a join trials t on a.trial_id = t.trial_id "
                                    "where t.study_id = :s"), {"s": sid}).all()
        engine.dispose()
        assert len(rows) > 50
        assert any(k == "autoscale:point" for k, _ in rows)
        assert any(k.startswith("dashboard:plot_data:autoscale-") for k, _ in rows)
        for key, value in rows:
            _assert_json_not_pickle(key, json.loads(value))
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def _assert_json_not_pickle(key: str, value: object) -> None:
    if isinstance(value, str):
        assert not value.startswith(("gASV", "gAN", "\x80")), f"{key} looks like a pickle"
        try:
            raw = base64.b64decode(value, validate=True)
        except Exception:
            return
        if raw[:1] == b"\x80":
            with pytest.raises(Exception):
                pickle.loads(raw)  # noqa: S301 - proving it is not a pickle
    elif isinstance(value, dict):
        for k, v in value.items():
            _assert_json_not_pickle(f"{key}.{k}", v)
    elif isinstance(value, list):
        for v in value:
            _assert_json_not_pickle(key, v)


def test_sqlite_holds_json_only(completed_study: tuple[str, str]) -> None:  # noqa: F811
    url, _ = completed_study
    path = url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        rows = []
        for table in ("study_user_attributes", "study_system_attributes", "trial_user_attributes",
                      "trial_system_attributes"):
            rows += conn.execute(f"select key, value_json from {table}").fetchall()
    assert any(k == "autoscale:point" for k, _ in rows)
    for key, value in rows:
        _assert_json_not_pickle(key, json.loads(value))


# ------------------------------------------------------------------------------------ Redis
@pytest.fixture()
def redis_prefix() -> str:
    import redis

    prefix = unique_name("autoscale-test") + ":"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.redis
def test_redis_journal_round_trip(redis_prefix: str) -> None:
    import redis

    url = f"{REDIS_URL}?prefix={redis_prefix}"
    storage = create_storage(url)
    assert isinstance(storage, optuna.storages.JournalStorage)
    name = unique_name("redis")
    study = optuna.create_study(storage=storage, study_name=name)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    again = optuna.load_study(study_name=name, storage=create_storage(url))
    assert len(again.trials) == 5
    client = redis.Redis.from_url(REDIS_URL)
    assert list(client.scan_iter(match=f"{redis_prefix}*")), "the journal lives under our own prefix"
    client.close()


@pytest.mark.redis
def test_redis_autoscale_study(redis_prefix: str) -> None:
    storage = create_storage(f"{REDIS_URL}?prefix={redis_prefix}")
    study = run_sim_study(storage, unique_name("redis-as"))
    assert study.sampler.is_complete(study)
