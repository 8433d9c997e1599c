"""Tests of the ``optuna-autoscale`` command line (corpus build / info, parser structure)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from optuna_autoscale import cli


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "corpus" in out and "examples:" in out and "demo" in out


def test_corpus_build_help_has_options_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["corpus", "build", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--domains", "--cache-dir", "--vocab-size", "--no-apt", "--cap-mb", "--json"):
        assert opt in out
    assert "examples:\n  optuna-autoscale corpus build" in out


def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert [c.path for c in cli.COMMANDS][:2] == [("corpus", "build"), ("corpus", "info")]
    for cmd in cli.COMMANDS:
        with pytest.raises(SystemExit):
            cli.main([*cmd.path, "--help"])
        out = capsys.readouterr().out
        assert "examples:" in out and cmd.examples


def test_group_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["corpus"]) == 2
    assert "build" in capsys.readouterr().out
    assert cli.main([]) == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from optuna_autoscale import __version__

    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"optuna-autoscale {__version__}"


def test_registry_adds_a_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "COMMANDS", list(cli.COMMANDS))

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", default="world")

    @cli.command("hello", help="say hello", description="Say hello.", examples=["optuna-autoscale hello"],
                 arguments=add)
    def _hello(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 3

    assert cli.main(["hello", "--name", "autoscale"]) == 3
    assert capsys.readouterr().out == "hello autoscale\n"
    # registering the same path again replaces it
    cli.register(cli.Command(("hello",), "h", "d", (), lambda p: None, lambda a: 0))
    assert cli.main(["hello"]) == 0 and sum(c.path == ("hello",) for c in cli.COMMANDS) == 1


def test_bad_options_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["corpus", "build", "--cache-dir", str(tmp_path), "--vocab-size", "10"]) == 1
    assert "--vocab-size must be at least 258" in capsys.readouterr().err
    assert cli.main(["corpus", "build", "--cache-dir", str(tmp_path), "--domains", "nope"]) == 1
    assert "Unknown embedded domain" in capsys.readouterr().err
    assert cli.main(["corpus", "build", "--cache-dir", str(tmp_path), "--cap-mb", "0"]) == 1
    assert "--cap-mb must be positive" in capsys.readouterr().err


def test_corpus_info_without_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["corpus", "info", "--cache-dir", str(tmp_path)]) == 1
    assert "no built corpus" in capsys.readouterr().out
    assert cli.main(["corpus", "info", str(tmp_path / "missing")]) == 1
    assert "No built corpus" in capsys.readouterr().err


def test_corpus_build_and_info_on_fake_packages(fake_package_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("datasets")
    args = ["corpus", "build", "--cache-dir", str(fake_package_cache), "--domains", "legal", "literature",
            "code_c", "--no-apt", "--vocab-size", "300"]
    assert cli.main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["domains"] == ["legal", "literature"] and summary["cache_hit"] is False
    assert summary["unique_tokens"]["legal"] > 0 and "code_c" in summary["skipped"]
    assert "warning: domain code_c skipped" in captured.err
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "corpus cache hit" in out and "code_c        SKIPPED" in out
    assert cli.main(["corpus", "info", "--cache-dir", str(fake_package_cache)]) == 0
    assert "legal" in capsys.readouterr().out
    # --min-domains turns missing domains into a failure
    assert cli.main([*args, "--min-domains", "3"]) == 1
    assert "need 3" in capsys.readouterr().err


def test_console_script_module_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "optuna_autoscale.cli", "corpus", "build", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--no-apt" in proc.stdout
