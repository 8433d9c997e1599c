"""Storage URLs: build Optuna storages that survive crashed workers, and never leak passwords.

One URL names where a study lives. :func:`create_storage` understands:

================================================  =============================================
URL                                               storage
================================================  =============================================
``sqlite:///study.db``                            :class:`optuna.storages.RDBStorage` (one machine)
``postgresql://user:pw@host:5432/db``             :class:`~optuna.storages.RDBStorage` with heartbeats
``mysql+pymysql://user:pw@host/db``               :class:`~optuna.storages.RDBStorage` with heartbeats
``journal:///abs/path/study.log`` or              :class:`~optuna.storages.JournalStorage` on a
``journal:relative/path.log``                     :class:`~optuna.storages.journal.JournalFileBackend`
``redis://:pw@host:6379/0[?prefix=name]``         :class:`~optuna.storages.JournalStorage` on a
                                                  :class:`~optuna.storages.journal.JournalRedisBackend`
================================================  =============================================

RDB storages get Optuna's heartbeat (``heartbeat_interval``, ``grace_period``): a worker that
dies in the middle of a trial (SIGKILL, preemption, power loss) stops beating, and the next
worker to start a trial marks the stale trial FAIL. The retry callback
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, formerly ``RetryFailedTrialCallback``)
then enqueues a WAITING copy carrying the same system attrs, so
:class:`~optuna_autoscale.AutoScaleSampler` re-runs the same design point. Journal storages
have no heartbeat in Optuna; a killed worker's trial stays RUNNING there (use
``optuna_autoscale.storage.fail_running_trials`` after making sure no worker is alive).

Passwords never reach logs or the CLI's output: every message that shows a URL goes through
:func:`redact_url` (and :func:`redact_text` for free text such as driver errors).

Example:
    .. code-block:: python

        import optuna
        from optuna_autoscale.storage import create_storage, redact_url

        storage = create_storage("sqlite:///example.db", heartbeat_interval=60)
        study = optuna.create_study(storage=storage, study_name="demo", load_if_exists=True)
        print(redact_url("postgresql://me:secret@db:5432/x"))  # postgresql://me:***@db:5432/x
"""

from __future__ import annotations

from collections.abc import Iterable
import inspect
import logging
import os
from pathlib import Path
import re
from typing import Any
from typing import TYPE_CHECKING
import urllib.parse
import warnings


if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage


__all__ = [
    "STORAGE_ENV",
    "StorageUnreachableError",
    "RedactingFilter",
    "create_storage",
    "fail_running_trials",
    "install_log_redaction",
    "redact_text",
    "redact_url",
    "retry_callback",
    "storage_kind",
]

STORAGE_ENV = "OPTUNA_AUTOSCALE_STORAGE"
"""Environment variable read when no ``--storage`` is given (keeps passwords off command lines)."""

DEFAULT_HEARTBEAT_INTERVAL = 60
"""Seconds between heartbeats of a running trial on RDB storages."""
DEFAULT_GRACE_PERIOD = 180
"""Seconds without a heartbeat after which a RUNNING trial is considered dead."""
DEFAULT_MAX_RETRY = 3
"""How many times a trial whose worker died is re-queued."""

_MASK = "***"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
# scheme://user:password@  -- the password may contain anything but '@' followed by host text.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|secret|token)=)(?P<pw>[^&#\s]*)", re.I)


class StorageUnreachableError(ConnectionError):
    """The storage URL names a server or file that cannot be reached or opened."""


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    Handles ``scheme://user:password@host``, ``redis://:password@host`` and query parameters
    such as ``?password=...``. Strings that are not URLs come back unchanged.

    Example:
        >>> redact_url("postgresql://alice:s3cr%40t@db.example:5432/optuna")
        'postgresql://alice:***@db.example:5432/optuna'
        >>> redact_url("redis://:pw@127.0.0.1:6379/0")
        'redis://:***@127.0.0.1:6379/0'
        >>> redact_url("sqlite:///study.db")
        'sqlite:///study.db'
    """
    if not isinstance(url, str):
        return url
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{_MASK}@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{_MASK}", out)


def _passwords(url: str) -> list[str]:
    """The secrets inside ``url`` (raw and percent-decoded), longest first."""
    found: list[str] = []
    for m in _USERINFO.finditer(url):
        if m["pw"]:
            found.append(m["pw"])
    for m in _QUERY_SECRET.finditer(url):
        if m["pw"]:
            found.append(m["pw"])
    more = [urllib.parse.unquote(p) for p in found]
    more += [urllib.parse.quote(urllib.parse.unquote(p), safe="") for p in found]
    return sorted({p for p in found + more if p}, key=len, reverse=True)


def redact_text(text: str, urls: Iterable[str] = ()) -> str:
    """Redact URLs inside ``text`` and every occurrence of the passwords of ``urls``.

    Use it on messages that may quote a password outside a URL (driver errors, tracebacks).

    Example:
        >>> redact_text("login failed (pw=hunter2)", ["postgresql://u:hunter2@h/db"])
        'login failed (pw=***)'
    """
    out = redact_url(str(text))
    for url in urls:
        for pw in _passwords(url):
            # Only where the password stands alone: a short password such as "post" must not
            # mangle "postgresql://" (the URLs themselves are already redacted above).
            out = re.sub(rf"(?<![A-Za-z0-9]){re.escape(pw)}(?![A-Za-z0-9])", _MASK, out)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that redacts storage passwords from every record it sees.

    Args:
        urls: URLs whose passwords must never be printed, in addition to any
            ``scheme://user:password@`` pattern, which is always redacted.
    """

    def __init__(self, urls: Iterable[str] = ()) -> None:
        super().__init__()
        self.urls = list(urls)

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover - a broken record; leave it to logging
            return True
        clean = redact_text(msg, self.urls)
        if clean != msg:
            record.msg = clean
            record.args = None
        return True


def install_log_redaction(urls: Iterable[str] = ()) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to the root, ``optuna`` and ``sqlalchemy`` loggers'
    handlers (and to the loggers themselves), so that no log line shows a storage password.

    Returns:
        The filter (call ``filter.urls.append(url)`` to protect more URLs).
    """
    filt = RedactingFilter(urls)
    for name in ("", "optuna", "sqlalchemy", "optuna_autoscale"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(filt)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(filt)
    return filt


# --------------------------------------------------------------------------------------------
# Building storages
# --------------------------------------------------------------------------------------------


def storage_kind(url: str) -> str:
    """Classify a storage URL: ``"rdb"``, ``"journal-file"`` or ``"journal-redis"``.

    Raises:
        ValueError: for an empty URL or an unknown scheme, listing the supported ones.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(
            "The storage URL is empty; give one such as sqlite:///study.db, "
            "postgresql://user@host:5432/db, journal:///path/study.log or redis://host:6379/0."
        )
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    base = scheme.split("+", 1)[0]
    if base in _RDB_SCHEMES:
        return "rdb"
    if scheme in ("journal", "journal+file", "file"):
        return "journal-file"
    if base in _REDIS_SCHEMES or scheme in ("journal+redis",):
        return "journal-redis"
    raise ValueError(
        f"Unsupported storage URL {redact_url(url)!r}: the scheme {scheme or '(none)'!r} is not one "
        f"of sqlite, postgresql, mysql (RDB), journal (journal file) or redis (journal on Redis)."
    )


def retry_callback(max_retry: int | None = DEFAULT_MAX_RETRY) -> Any:
    """Optuna's callback that re-queues a trial whose worker died (WAITING copy, same attrs).

    It is :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` where Optuna has it (>= 4.9)
    and :class:`optuna.storages.RetryFailedTrialCallback` before.
    """
    import optuna

    if max_retry is not None and (isinstance(max_retry, bool) or int(max_retry) != max_retry or max_retry < 0):
        raise ValueError(f"max_retry must be a non-negative integer or None, got {max_retry!r}.")
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if cls is None:  # pragma: no cover - optuna < 4.9
        cls = optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():  # experimental in Optuna; deprecations stay visible
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=max_retry)


def _journal_path(url: str) -> Path:
    rest = url.split(":", 1)[1]
    if rest.startswith("//"):
        rest = rest[2:]
        # journal:///abs/path -> "/abs/path"; journal://relative is not allowed (host part).
        if not rest.startswith("/"):
            raise ValueError(
                f"Journal storage URL {url!r} has a host part; write journal:///absolute/path.log "
                "or journal:relative/path.log."
            )
    if not rest:
        raise ValueError(f"Journal storage URL {url!r} names no file; write journal:///path/to/study.log.")
    return Path(rest).expanduser()


def _split_redis_prefix(url: str) -> tuple[str, str]:
    parsed = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    prefix = ""
    kept = []
    for k, v in query:
        if k == "prefix":
            prefix = v
        else:
            kept.append((k, v))
    scheme = parsed.scheme
    if scheme == "journal+redis":
        scheme = "redis"
    clean = urllib.parse.urlunsplit((scheme, parsed.netloc, parsed.path, urllib.parse.urlencode(kept), ""))
    return clean, prefix


def _unreachable(url: str, exc: BaseException, hint: str) -> StorageUnreachableError:
    text = str(exc).strip()
    detail = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
    detail = redact_text(detail, [url]).rstrip(".")
    return StorageUnreachableError(f"Cannot reach the storage {redact_url(url)}: {detail}. {hint}")


def create_storage(
    url: str,
    *,
    heartbeat_interval: int | None = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: int | None = None,
    max_retry: int | None = DEFAULT_MAX_RETRY,
    connect_timeout: float = 10.0,
) -> BaseStorage:
    """Build the Optuna storage named by ``url``, checking that it can be reached.

    Args:
        url: Storage URL (see the module docstring). ``journal:`` and ``redis://`` give a
            :class:`~optuna.storages.JournalStorage`; anything SQLAlchemy knows gives an
            :class:`~optuna.storages.RDBStorage`.
        heartbeat_interval: Seconds between heartbeats of running trials (RDB only; ``None``
            turns heartbeats and the retry of dead workers' trials off).
        grace_period: Seconds without a heartbeat after which a trial is failed and retried
            (RDB only). Default: three heartbeat intervals.
        max_retry: How many times a dead worker's trial is re-queued (``None``: no limit).
        connect_timeout: Seconds to wait for a database or Redis server to answer.

    Returns:
        The storage.

    Raises:
        ValueError: for an unsupported URL or invalid heartbeat settings.
        StorageUnreachableError: when the server does not answer or the file cannot be opened;
            the message shows the URL with its password redacted.

    Example:
        .. code-block:: python

            from optuna_autoscale.storage import create_storage

            storage = create_storage("sqlite:///autoscale.db", heartbeat_interval=30, grace_period=90)
    """
    import optuna

    kind = storage_kind(url)
    if heartbeat_interval is not None:
        if isinstance(heartbeat_interval, bool) or int(heartbeat_interval) != heartbeat_interval or heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be a positive integer (seconds), got {heartbeat_interval!r}.")
        heartbeat_interval = int(heartbeat_interval)
        if grace_period is None:
            grace_period = 3 * heartbeat_interval
        if isinstance(grace_period, bool) or int(grace_period) != grace_period or grace_period <= heartbeat_interval:
            raise ValueError(
                f"grace_period must be an integer number of seconds larger than heartbeat_interval "
                f"({heartbeat_interval}), got {grace_period!r}."
            )
        grace_period = int(grace_period)

    if kind == "journal-file":
        from optuna.storages.journal import JournalFileBackend

        path = _journal_path(url)
        if not path.parent.exists():
            raise StorageUnreachableError(
                f"Cannot open the journal storage {url}: the folder {str(path.parent)!r} does not exist; "
                "create it first."
            )
        try:
            backend = JournalFileBackend(str(path))
        except OSError as e:
            raise _unreachable(url, e, "Check that the file is writable.") from None
        return optuna.storages.JournalStorage(backend)

    if kind == "journal-redis":
        try:
            import redis
        except ImportError:  # pragma: no cover - the storage extra is missing
            raise ImportError(
                "Redis storage needs the redis package: pip install 'optuna-autoscale[storage]'."
            ) from None
        from optuna.storages.journal import JournalRedisBackend

        clean, prefix = _split_redis_prefix(url)
        try:
            client = redis.Redis.from_url(clean, socket_connect_timeout=connect_timeout, socket_timeout=connect_timeout)
            client.ping()
            client.close()
        except (redis.exceptions.RedisError, OSError, ValueError) as e:
            raise _unreachable(
                url, e, "Check that the Redis server is running and the host, port, database and password are right."
            ) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            backend = JournalRedisBackend(clean, prefix=prefix)
        return optuna.storages.JournalStorage(backend)

    # RDB
    import sqlalchemy.exc

    shown = url
    url = _with_available_pg_driver(url)

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("postgresql", "postgres")):
        engine_kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
    elif scheme.startswith(("mysql", "mariadb")):
        engine_kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
    elif scheme.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": max(1.0, float(connect_timeout))}
        db = url.split(":///", 1)[1] if ":///" in url else ""
        if db and db != ":memory:" and not Path(db).expanduser().resolve().parent.exists():
            raise StorageUnreachableError(
                f"Cannot open the storage {url}: the folder {str(Path(db).parent)!r} does not exist; create it first."
            )
    kwargs: dict[str, Any] = {"engine_kwargs": engine_kwargs}
    if heartbeat_interval is not None:
        kwargs["heartbeat_interval"] = heartbeat_interval
        kwargs["grace_period"] = grace_period
        params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
        cb_name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
        kwargs[cb_name] = retry_callback(max_retry)
    try:
        with warnings.catch_warnings():  # heartbeats are experimental; deprecations stay visible
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, **kwargs)
    except sqlalchemy.exc.ArgumentError as e:
        raise ValueError(f"Invalid storage URL {redact_url(shown)}: {redact_text(str(e), [url])}") from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DatabaseError, OSError) as e:
        raise _unreachable(shown, getattr(e, "orig", None) or e, _rdb_hint(shown, getattr(e, "orig", None) or e)) from None
    except ModuleNotFoundError as e:
        raise ImportError(
            f"The storage {redact_url(shown)} needs the database driver {e.name!r}; for PostgreSQL "
            "install optuna-autoscale[storage] (psycopg2-binary)."
        ) from None


def _rdb_hint(url: str, exc: BaseException) -> str:
    """How to fix an RDB storage that did not open: a SQLite file's own problem, or the server's."""
    if url.split(":", 1)[0].lower().startswith("sqlite"):
        db = url.split(":///", 1)[1] if ":///" in url else ""
        where = repr(str(Path(db).expanduser().absolute())) if db else "the file"
        text = str(exc).lower()
        if "not a database" in text or "malformed" in text or "encrypted" in text:
            return (f"The file {where} is not a SQLite database (or is damaged): point --storage at the study's "
                    "database, or move this file away to start a new one.")
        if "locked" in text or "busy" in text:
            return f"The file {where} is locked by another process; retry, or raise connect_timeout."
        return f"Check that {where} is a SQLite database you can read and write."
    return ("Check that the database server is running and that the host, port, database, user "
            "and password are right.")


def _with_available_pg_driver(url: str) -> str:
    """SQLAlchemy >= 2.1 maps ``postgresql://`` to psycopg 3; fall back to psycopg2 if only it is installed."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("postgresql", "postgres") or not sep:
        return url
    import sqlalchemy

    major_minor = tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2] if p.isdigit())
    default_is_psycopg3 = major_minor >= (2, 1)
    has3 = importlib.util.find_spec("psycopg") is not None
    has2 = importlib.util.find_spec("psycopg2") is not None
    if scheme.lower() == "postgres":
        scheme = "postgresql"
    if default_is_psycopg3 and not has3 and has2:
        return f"postgresql+psycopg2://{rest}"
    return f"{scheme}://{rest}"


def fail_running_trials(study: optuna.Study, *, retry: bool = True, max_retry: int | None = DEFAULT_MAX_RETRY) -> list[int]:
    """Mark every RUNNING trial FAIL (and re-queue it) after every worker has stopped.

    Storages without heartbeats (journal) cannot tell a dead worker from a slow one; call this
    only when you know that no worker is alive, e.g. before restarting all of them.

    Returns:
        The numbers of the trials that were failed.
    """
    import optuna

    cb = retry_callback(max_retry) if retry else None
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
            failed.append(t.number)
            if cb is not None:
                cb(study, study._storage.get_trial(t._trial_id))
    return failed


def resolve_storage_url(url: str | None) -> str:
    """``url`` or, if it is None/empty, the ``OPTUNA_AUTOSCALE_STORAGE`` environment variable.

    Raises:
        ValueError: when neither is set.
    """
    if url:
        return url
    env = os.environ.get(STORAGE_ENV, "")
    if env:
        return env
    raise ValueError(
        f"No storage given: pass --storage URL (or set {STORAGE_ENV}, which keeps passwords off "
        "the command line), e.g. sqlite:///autoscale.db or postgresql://user@host:5432/db."
    )
