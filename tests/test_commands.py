"""The CLI subcommands (run in-process through ``commands.main``; the installed ``optuna-autoscale``
script mounts the same parsers)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import re
from typing import Any

import optuna
import pytest
import yaml

from _autoscale_helpers import BUDGETS
from _autoscale_helpers import completed_study  # noqa: F401  (session fixture)
from _autoscale_helpers import DOMAINS
from _autoscale_helpers import sim_config
from optuna_autoscale import AutoScaleResult
from optuna_autoscale import commands
from optuna_autoscale import Mixture


optuna.logging.set_verbosity(optuna.logging.WARNING)
SUBCOMMANDS = ("run", "worker", "status", "show", "extrapolate", "report", "dashboard")


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = commands.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def result(completed_study: tuple[str, str]) -> AutoScaleResult:  # noqa: F811
    url, name = completed_study
    return AutoScaleResult.from_study(optuna.load_study(study_name=name, storage=url), write_summary=False)


def test_register_mounts_every_subcommand_with_examples() -> None:
    parser = argparse.ArgumentParser(prog="optuna-autoscale")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)
    for name in SUBCOMMANDS:
        p = sub.choices[name]
        text = p.format_help()
        assert "examples:" in text and f"optuna-autoscale {name}" in text, name
    args = parser.parse_args(["extrapolate", "--storage", "sqlite:///x.db", "--study", "s", "--tokens", "1e10",
                              "--format", "hf"])
    assert args.tokens == 1e10 and args.format == "hf" and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["extrapolate", "--study", "s", "--tokens", "-5"])
    with pytest.raises(SystemExit):
        parser.parse_args(["show", "--study", "s", "--format", "csv"])


def test_installed_cli_mounts_our_subcommands() -> None:
    from optuna_autoscale import cli

    parser = cli.build_parser()
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names |= set(action.choices)
    assert set(SUBCOMMANDS) <= names


def test_status(completed_study: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    url, name = completed_study
    code, out, _ = _main(capsys, "status", "--storage", url, "--study", name)
    assert code == 0
    assert "18/18 design runs complete" in out
    assert re.search(r"b0: 1e8 tokens\s+8\s+0\s+0\s+0\s+0\s+8", out)
    code, out, _ = _main(capsys, "status", "--storage", url, "--study", name, "--format", "json")
    data = json.loads(out)
    assert data["complete"] == data["total"] == 18


def test_show_formats(completed_study: tuple[str, str], result: AutoScaleResult,  # noqa: F811
                      capsys: pytest.CaptureFixture[str]) -> None:
    url, name = completed_study
    args = ("show", "--storage", url, "--study", name)
    code, out, _ = _main(capsys, *args)
    assert code == 0 and "1e8 tokens" in out and "4e8 tokens" in out
    for d in DOMAINS:
        row = next(line for line in out.splitlines() if line.startswith(d))
        assert [float(x) for x in row.split()[1:]] == pytest.approx([result.optima[b].weights[d] for b in BUDGETS], abs=1e-6)
    _, out, _ = _main(capsys, *args, "--format", "json")
    data = json.loads(out)
    assert data["4e8 tokens"]["weights"] == pytest.approx(result.optima[4e8].weights)
    _, out, _ = _main(capsys, *args, "--format", "yaml")
    assert yaml.safe_load(out)["1e8 tokens"]["weights"] == pytest.approx(result.optima[1e8].weights)
    _, out, _ = _main(capsys, *args, "--format", "megatron", "--budget", "1e8")
    toks = out.split()
    assert toks[1::2] == list(DOMAINS)
    assert [float(x) for x in toks[0::2]] == pytest.approx([result.optima[1e8].weights[d] for d in DOMAINS], abs=1e-8)
    code, _, err = _main(capsys, *args, "--budget", "3e8")
    assert code == 2 and "no fitted optimum at 3e+08 tokens" in err


def test_extrapolate_formats(completed_study: tuple[str, str], result: AutoScaleResult,  # noqa: F811
                             capsys: pytest.CaptureFixture[str]) -> None:
    url, name = completed_study
    base = ("extrapolate", "--storage", url, "--study", name, "--tokens", "1e10")
    for method in ("joint", "paper"):
        want = result.extrapolate(1e10, method=method)
        _, out, _ = _main(capsys, *base, "--method", method, "--format", "hf")
        hf = json.loads(out)
        assert hf["domains"] == list(DOMAINS)
        assert sum(hf["probabilities"]) == pytest.approx(1.0, abs=1e-12)
        assert hf["probabilities"] == pytest.approx([want.weights[d] for d in DOMAINS], abs=1e-9)
        _, out, _ = _main(capsys, *base, "--method", method, "--format", "json")
        got = Mixture.from_dict(next(iter(json.loads(out).values())))
        assert got.tokens == pytest.approx(1e10)
        assert got.weights == pytest.approx(want.weights)
    cap = 0.5 * result.extrapolate(1e10).allocation["web"]
    _, out, _ = _main(capsys, *base, "--cap", f"web={cap}", "--format", "json")
    capped = next(iter(json.loads(out).values()))
    assert capped["allocation"]["web"] <= cap * (1 + 1e-6)
    _, out, _ = _main(capsys, *base)
    assert "1e10 tokens (joint)" in out


def test_format_mixtures_megatron_paths() -> None:
    mix = Mixture({"web": 0.25, "code": 0.75}, 1e9)
    text = commands.format_mixtures({"m": mix}, "megatron", data_paths={"web": "/d/web_text_document"})
    assert text == "0.25000000 /d/web_text_document 0.75000000 code"
    with pytest.raises(ValueError, match="Unknown format 'csv'"):
        commands.format_mixtures({"m": mix}, "csv")


def test_report_is_self_contained(completed_study: tuple[str, str], tmp_path: Path,  # noqa: F811
                                  capsys: pytest.CaptureFixture[str]) -> None:
    url, name = completed_study
    out_path = tmp_path / "sub" / "report.html"
    code, out, _ = _main(capsys, "report", "--storage", url, "--study", name, "--out", str(out_path), "--target", "1e10")
    assert code == 0 and "wrote" in out
    html = out_path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # plotly.js is inlined once; nothing is fetched from the network
    assert html.count("plotly.js v") >= 1
    assert not re.search(r"<script[^>]+src=\"https?://", html)
    for title in ("Design progress", "Fitted optimal weights", "Extrapolated mixtures", "DDO fits", "Verification"):
        assert f"<h2>{title}" in html, title
    for fig in ("progress", "weights", "fits", "verification"):
        assert f'id="fig-{fig}"' in html
    assert "1e10 (joint)" in html and "1e10 (paper)" in html


def test_run_resumes_and_a_second_run_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = sim_config(tmp_path / "run.toml", storage=f"sqlite:///{tmp_path / 'r.db'}", name="r", budgets=(1e8,),
                     verify=False, dashboard=True)
    code, out, _ = _main(capsys, "run", str(cfg))
    assert code == 0 and "design complete: True" in out
    assert "1e8 tokens" in out  # the fitted optimum is printed at the end
    n = len(optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'r.db'}").trials)
    assert n == 7  # base + 3 domains x 2 multipliers
    code, out, _ = _main(capsys, "run", str(cfg))
    assert code == 0 and "this process ran 0 trial(s)" in out
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'r.db'}")
    assert len(study.trials) == n
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert "autoscale:run_config" in attrs
    assert any(k.startswith("dashboard:plot_data:autoscale-mixture-weights") for k in attrs)
    # the stored config rebuilds the same run config (a worker elsewhere reads it)
    from optuna_autoscale.config import config_from_json

    assert config_from_json(attrs["autoscale:run_config"]).design.budgets == [1e8]


_EPOCHS_CONFIG = """
[study]
name = "epochs"
[design]
budgets = [4096]
verify = false
max_epochs = {max_epochs}
bounds = {{code = [0, 100]}}
[corpus]
vocab_size = 300
cache_dir = "{cache}"
[[domains]]
name = "prose"
path = "{prose}"
[[domains]]
name = "code"
path = "{code}"
[[domains]]
name = "legal"
path = "{legal}"
[proxy]
preset = "micro"
context = 16
batch_size = 4
eval_tokens = 64
device = "cpu"
"""


def _epochs_config(tmp_path: Path, text_domains: dict[str, Path], max_epochs: str, proxy: str = "") -> Any:
    from optuna_autoscale.config import parse_config

    text = _EPOCHS_CONFIG.format(max_epochs=max_epochs, cache=tmp_path / "cache", **{k: str(v) for k, v in text_domains.items()})
    return parse_config(text + proxy)


def test_design_max_epochs_bounds_the_sampler_and_is_the_trainers_limit(
    tmp_path: Path, text_domains: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """[design] max_epochs x unique tokens is the sampler's upper bound, and the trainer warns at the same cap."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import warnings

    from optuna_autoscale.config import ConfigError
    from optuna_autoscale.proxy import train as tr

    cfg = _epochs_config(tmp_path, text_domains, "2.5")
    objective, domains, unique = commands.build_objective(cfg)
    corpus, ctx = objective.corpus, 16
    assert domains == ("prose", "code", "legal")
    # whole training sequences of the corpus's unique tokens (what the trainer counts epochs in)
    assert unique == {d: ((n - 1) // ctx) * ctx for d, n in corpus.unique_tokens().items()}
    assert all(0 < unique[d] <= corpus.unique_tokens()[d] < unique[d] + ctx + 1 for d in domains)
    expected = {"prose": 2.5 * unique["prose"], "code": min(100.0, 2.5 * unique["code"]), "legal": 2.5 * unique["legal"]}
    assert commands._bounds(cfg, unique) == {d: (0.0 if d == "code" else None, expected[d]) for d in domains}
    sampler = commands.build_sampler(cfg, domains, unique_tokens=unique)
    assert {d: sampler.design.bounds[d][1] for d in domains} == pytest.approx(expected)
    assert objective.config.max_epochs == 2.5 == cfg.proxy_config().max_epochs  # not the trainer's default 4

    # The trainer's warning agrees with the sampler's cap: an allocation at the bound is not
    # warned about, one sequence past it is. (Stop before the model is built: no training.)
    class Planned(Exception):
        pass

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise Planned

    monkeypatch.setattr(tr, "build_proxy_model", stop)
    cap = expected["legal"]
    for extra, warns in ((0, False), (ctx, True)):
        mix = Mixture.from_allocation({"prose": 512.0, "code": 64.0, "legal": cap + extra})
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(Planned):
                tr.train_proxy(corpus, mix, objective.config, progress=False)
        assert any("'legal' is repeated" in str(w.message) for w in seen) is warns, [str(w.message) for w in seen]

    # A per-domain cap reaches both too; a different [proxy] max_epochs is refused.
    cfg = _epochs_config(tmp_path, text_domains, "{legal = 1.5}")
    assert cfg.proxy_config().max_epochs == {"legal": 1.5}
    assert commands._bounds(cfg, unique) == {"code": (0.0, 100.0), "legal": (None, 1.5 * unique["legal"])}
    assert _epochs_config(tmp_path, text_domains, "3", "max_epochs = 3\n").proxy_config().max_epochs == 3.0
    with pytest.raises(ConfigError, match="proxy.max_epochs: is 4 but design.max_epochs is 3.0"):
        _epochs_config(tmp_path, text_domains, "3", "max_epochs = 4\n")
