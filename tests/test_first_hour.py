"""A new user's first hour: paths relative to the config, read-only commands, next steps, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_autoscale import commands
from optuna_autoscale.config import load_config

from _autoscale_helpers import sim_config


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = commands.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_storage_in_a_config_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own"
    own.mkdir()
    cfg = sim_config(own / "mymix.toml", storage="sqlite:///my-mixture.db", name="m", budgets=(1e8, 4e8), verify=False)
    assert load_config(cfg).study.storage == f"sqlite:///{own / 'my-mixture.db'}"
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    assert load_config(Path("..") / "own" / "mymix.toml").study.storage == f"sqlite:///{own / 'my-mixture.db'}"
    # absolute paths, in-memory and server URLs are kept as written
    for url in ("sqlite:////abs/x.db", "sqlite:///:memory:", "postgresql://u@h:5432/db"):
        cfg2 = sim_config(own / "abs.toml", storage=url, name="m", budgets=(1e8, 4e8), verify=False)
        assert load_config(cfg2).study.storage == url


def test_read_only_commands_never_create_storage(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own"
    own.mkdir()
    cfg = sim_config(own / "mymix.toml", storage="sqlite:///my-mixture.db", name="m", budgets=(1e8, 4e8), verify=False)
    monkeypatch.chdir(tmp_path)
    for argv in (("status", "--config", str(cfg)), ("show", "--config", str(cfg)),
                 ("extrapolate", "--config", str(cfg), "--tokens", "1e9"),
                 ("status", "--storage", "sqlite:///nothing.db", "--study", "m")):
        code, _, err = _main(capsys, *argv)
        assert code == 2 and "no storage file at" in err and "only reads" in err, err
    assert not list(tmp_path.rglob("*.db"))


def test_run_ends_with_next_steps_and_resumes_from_any_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own"
    own.mkdir()
    cfg = sim_config(own / "mymix.toml", storage="sqlite:///my-mixture.db", name="m", budgets=(1e8, 4e8), verify=False)
    monkeypatch.chdir(tmp_path)
    code, out, _ = _main(capsys, "run", str(cfg))
    assert code == 0 and (own / "my-mixture.db").exists() and not (tmp_path / "my-mixture.db").exists()
    assert "Best is trial" not in out  # Optuna's cross-budget "best" lines are replaced by one line per design run
    assert "next: optuna-autoscale extrapolate --config" in out.splitlines()[-1]
    monkeypatch.chdir(own)
    code, out, _ = _main(capsys, "status", "--config", "mymix.toml")
    assert code == 0, out


def test_a_changed_design_names_the_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    cfg = sim_config(tmp_path / "a.toml", storage=db, name="d", budgets=(1e8, 4e8), verify=False)
    assert _main(capsys, "run", str(cfg))[0] == 0
    cfg2 = sim_config(tmp_path / "b.toml", storage=db, name="d", budgets=(1e8, 8e8), verify=False)
    code, _, err = _main(capsys, "run", str(cfg2))
    assert code == 2
    assert "budgets = [100000000.0, 400000000.0] -> [100000000.0, 800000000.0]" in err
    assert "--max-epochs" in err


def test_cli_prints_our_warnings_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from optuna_autoscale.cli import _words_for_warnings
    from optuna_autoscale.laws import DDOWarning

    saved = warnings.formatwarning
    try:
        _words_for_warnings()
        text = warnings.formatwarning(DDOWarning("DDO fit at 3e5 tokens: 1 questionable domain"), DDOWarning,
                                      "optuna-autoscale", 0)
        assert text == "warning: DDO fit at 3e5 tokens: 1 questionable domain\n"
        other = warnings.formatwarning(UserWarning("x"), UserWarning, "/some/file.py", 3)
        assert "/some/file.py:3" in other  # other libraries' warnings keep Python's format
    finally:
        warnings.formatwarning = saved
