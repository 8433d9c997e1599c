"""No FutureWarning or DeprecationWarning from our own calls on the installed Optuna.

A study goes through the project's own storage factory (:func:`optuna_autoscale.storage.create_storage`
with heartbeats and the retry callback), the ``run`` command of the installed CLI entry point
(:func:`optuna_autoscale.cli.main`), a ``worker`` that finishes the design, the read-only commands,
and the retry of a dead worker's trial. Every warning is recorded; the ones that count are
deprecations raised from a file of ``optuna_autoscale`` or naming an Optuna API that we call under
its old name (``failed_trial_callback`` and ``RetryFailedTrialCallback`` are deprecated since Optuna
4.9). Third-party deprecations inside other libraries (SQLAlchemy, plotly, ...) are not ours.
"""
from __future__ import annotations

from collections.abc import Iterable
import inspect
from pathlib import Path
import warnings

import optuna
import pytest

from _autoscale_helpers import sim_config
import optuna_autoscale
from optuna_autoscale import cli
from optuna_autoscale import commands
from optuna_autoscale.storage import create_storage
from optuna_autoscale.storage import fail_running_trials
from optuna_autoscale.storage import retry_callback


PACKAGE = Path(optuna_autoscale.__file__).resolve().parent
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# Optuna APIs that have a newer name; a warning naming one of them means we still call the old name.
OLD_NAMES = ("failed_trial_callback", "RetryFailedTrialCallback")
HAS_NEW_NAMES = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")


def ours(records: Iterable[warnings.WarningMessage]) -> list[str]:
    """The deprecation warnings that come from our code or name an API we use under an old name."""
    found = []
    for w in records:
        if not issubclass(w.category, DEPRECATIONS):
            continue
        try:
            in_package = Path(w.filename).resolve().is_relative_to(PACKAGE)
        except (OSError, ValueError):
            in_package = False
        if in_package or any(name in str(w.message) for name in OLD_NAMES):
            found.append(f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}")
    return found


def test_the_filter_catches_the_old_callback_names(tmp_path: Path) -> None:
    """The check below would see a regression to the deprecated names (Optuna >= 4.9)."""
    if not HAS_NEW_NAMES:
        pytest.skip(f"Optuna {optuna.__version__} has no RetryHeartbeatStaleTrialCallback: the old names are current")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        old = optuna.storages.RetryFailedTrialCallback(max_retry=1)
        optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'old.db'}", heartbeat_interval=5, failed_trial_callback=old)
    found = ours(rec)
    assert any("RetryFailedTrialCallback" in f for f in found), found
    assert any("failed_trial_callback" in f and "heartbeat_stale_trial_callback" in f for f in found), found


def test_storage_factory_uses_the_current_callback_names(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        storage = create_storage(f"sqlite:///{tmp_path / 'f.db'}", heartbeat_interval=5)
        callback = retry_callback(2)
    assert ours(rec) == []
    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    if HAS_NEW_NAMES:
        assert "heartbeat_stale_trial_callback" in params
        assert isinstance(callback, optuna.storages.RetryHeartbeatStaleTrialCallback)
        assert isinstance(storage.heartbeat_stale_trial_callback, optuna.storages.RetryHeartbeatStaleTrialCallback)
    else:  # pragma: no cover - Optuna < 4.9
        assert isinstance(storage.failed_trial_callback, optuna.storages.RetryFailedTrialCallback)
    assert storage.heartbeat_interval == 5 and storage.grace_period == 15


def test_a_study_through_factory_cli_and_worker_emits_no_deprecation(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'dep.db'}"
    cfg = sim_config(tmp_path / "dep.toml", storage=url, name="dep", verify=False, heartbeat=5)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        # `run` through the installed CLI entry point, stopped early so that a worker has work left.
        assert cli.main(["run", str(cfg), "--n-trials", "3"]) == 0
        assert "this process ran 3 trial(s); design complete: False" in capsys.readouterr().out
        assert commands.main(["worker", "--storage", url, "--study", "dep", "--no-dashboard"]) == 0
        assert "design complete: True" in capsys.readouterr().out
        for argv in (["status"], ["show"], ["extrapolate", "--tokens", "1e10"]):
            assert cli.main([*argv, "--storage", url, "--study", "dep"]) == 0
        # A dead worker's trial: failed and re-queued by the factory's retry callback.
        study = optuna.load_study(study_name="dep", storage=create_storage(url, heartbeat_interval=5))
        trial = study.ask()
        assert fail_running_trials(study) == [trial.number]
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        assert len(waiting) == 1
    capsys.readouterr()
    assert ours(rec) == []
