"""Caps at extrapolation time (issue 15): a recommendation on caps says so, caps can be raised, lowered or dropped
without touching the study, every command owned by ``cli.inspect`` / ``report`` / ``fit`` ends with a next step,
and ``--format megatron`` refuses whitespace."""
from __future__ import annotations

import json
import math
from pathlib import Path
import types
import warnings

import optuna
import pytest

from optuna_autoscale import AutoScaleResult
from optuna_autoscale import commands
from optuna_autoscale.cli._common import RUN_CONFIG_ATTR


optuna.logging.set_verbosity(optuna.logging.WARNING)

# web and code capped at 1e8 tokens, books at 4e8: the caps sum to 6e8.
CONFIG = """
[study]
name = "caps"
storage = "sqlite:///{db}"
objective = "simulate"
workers = 1

[design]
budgets = [1e8, 4e8]
verify = false
bounds = {{web = [0, 1e8], code = [0, 1e8], books = [0, 4e8]}}

[simulate]
domains = ["web", "code", "books"]
"""


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = commands.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AutoScaleResult]:
    tmp = tmp_path_factory.mktemp("caps")
    cfg = tmp / "caps.toml"
    cfg.write_text(CONFIG.format(db=tmp / "caps.db"), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert commands.main(["run", str(cfg)]) == 0
        study = optuna.load_study(study_name="caps", storage=f"sqlite:///{tmp / 'caps.db'}")
        return cfg, AutoScaleResult.from_study(study, write_summary=False)


def test_recommendation_on_caps_says_which_and_the_mixture_without(capped) -> None:  # type: ignore[no-untyped-def]
    _, res = capped
    assert res.target_caps() == {"web": 1e8, "code": 1e8, "books": 4e8}
    for method in ("joint", "paper"):
        rec = res.recommend(5e8, method=method)
        assert rec.capped == {"web": 1e8, "code": 1e8}, method
        assert rec.mixture.allocation["web"] == pytest.approx(1e8, rel=1e-3)
        assert rec.uncapped is not None and rec.uncapped.tokens == pytest.approx(5e8)
        assert rec.uncapped.allocation["web"] > 1.1e8  # the law alone wants more web than the cap allows
        text = [w for w in rec.warnings if "sit at their caps" in w]
        assert text and "web 1e8 tokens" in text[0] and "without caps: web" in text[0], rec.warnings
        assert any("sit at their caps" in w for w in res.warnings)  # recorded on the result too
    free = res.recommend(5e8, caps={"web": math.inf, "code": math.inf, "books": math.inf}, replace_caps=True)
    assert free.capped == {} and free.uncapped is None
    assert free.mixture.weights == pytest.approx(res.recommend(5e8).uncapped.weights)
    summary = res.to_dict()["recommendations"]
    assert any(r["capped"] == {"web": 1e8, "code": 1e8} and r["uncapped"] for r in summary)


def test_caps_can_be_raised_lowered_or_dropped_without_touching_the_design(capped) -> None:  # type: ignore[no-untyped-def]
    _, res = capped
    with pytest.raises(ValueError) as info:
        res.extrapolate(4e9)
    msg = str(info.value)
    for part in ("the caps sum to 6e8 tokens, less than the target 4e9", "web 1e8, code 1e8, books 4e8",
                 "replace_caps=True", "--max-epochs E", "--cap DOMAIN=TOKENS", "--no-caps", "at most 6e8 tokens"):
        assert part in msg, (part, msg)
    # By default caps only lower the design's; replace_caps raises them.
    low = res.extrapolate(5e8, caps={"books": 3e8})
    assert low.allocation["books"] <= 3e8 * (1 + 1e-6)
    assert res.extrapolate(5e8, caps={"web": 1e9}).allocation["web"] <= 1e8 * (1 + 1e-3)
    high = res.recommend(4e9, caps={"web": 2e9, "code": 2e9, "books": 2e9}, replace_caps=True)
    assert high.mixture.tokens == pytest.approx(4e9) and max(high.mixture.allocation.values()) <= 2e9 * (1 + 1e-3)
    assert res.target_caps() == {"web": 1e8, "code": 1e8, "books": 4e8}  # the stored design is unchanged
    assert res.design is not None and res.design.upper_bounds() == {"web": 1e8, "code": 1e8, "books": 4e8}
    with pytest.raises(ValueError, match="caps must be numbers of tokens > 0"):
        res.extrapolate(5e8, caps={"web": -1.0})
    with pytest.raises(ValueError, match="caps names unknown domains"):
        res.extrapolate(5e8, caps={"nope": 1.0}, replace_caps=True)


def test_extrapolate_cli_caps_flags_and_messages(capped, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = capped
    c = ["--config", str(cfg)]
    code, out, err = _main(capsys, "extrapolate", *c, "--tokens", "4e9")
    assert code == 2 and "the caps sum to 6e8 tokens, less than the target 4e9" in err and "--no-caps" in err
    assert err.count("\n") == 1
    code, out, err = _main(capsys, "extrapolate", *c, "--tokens", "5e8")
    assert code == 0, err
    assert "at caps: web 1e8 tokens, code 1e8 tokens; without caps: web" in out
    assert out.rstrip().splitlines()[-1].startswith("next: export it with --format megatron")
    code, out, err = _main(capsys, "extrapolate", *c, "--tokens", "4e9", "--no-caps", "--format", "hf")
    assert code == 0, err
    assert json.loads(out)["domains"] == ["web", "code", "books"]  # stdout stays machine-readable
    assert err.rstrip().splitlines()[-1].startswith(f"next: optuna-autoscale report --config {cfg} --target 4e9")
    code, out, err = _main(capsys, "extrapolate", *c, "--tokens", "4e9", "--cap", "web=2e9", "--cap", "code=2e9",
                           "--cap", "books=2e9", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert sum(data["4e9 tokens (joint)"]["allocation"].values()) == pytest.approx(4e9)
    code, out, err = _main(capsys, "extrapolate", *c, "--tokens", "5e8", "--format", "json")
    assert code == 0 and json.loads(out)["capped"] == {"web": 1e8, "code": 1e8}
    code, _, err = _main(capsys, "extrapolate", *c, "--tokens", "5e8", "--cap", "nope=1e9")
    assert code == 2 and "unknown domain 'nope'; the domains are web, code, books" in err
    code, _, err = _main(capsys, "extrapolate", *c, "--tokens", "5e8", "--cap", "web")
    assert code == 2 and "write DOMAIN=TOKENS" in err
    code, _, err = _main(capsys, "extrapolate", *c, "--tokens", "5e8", "--max-epochs", "8")
    assert code == 2 and "--max-epochs needs the corpus's unique tokens" in err and "--cap DOMAIN=TOKENS" in err


def test_max_epochs_reads_unique_tokens_from_the_stored_design(capped, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = capped
    db = cfg.parent / "caps.db"
    study = optuna.load_study(study_name="caps", storage=f"sqlite:///{db}")
    raw = study._storage.get_study_system_attrs(study._study_id)[RUN_CONFIG_ATTR]
    try:
        # As a proxy study stores it: upper bounds = max_epochs (8) x unique tokens, no [design] bounds.
        stored = json.loads(raw)
        stored["design"]["bounds"] = {}
        stored["design"]["max_epochs"] = 8
        study._storage.set_study_system_attr(study._study_id, RUN_CONFIG_ATTR, json.dumps(stored))
        code, out, err = _main(capsys, "extrapolate", "--config", str(cfg), "--tokens", "4e9", "--max-epochs", "80",
                               "--format", "json")
        assert code == 0, err
        alloc = json.loads(out)["4e9 tokens (joint)"]["allocation"]
        caps = {"web": 1e9, "code": 1e9, "books": 4e9}  # 80 epochs = 10x the design's 8
        assert all(alloc[d] <= caps[d] * (1 + 1e-3) for d in caps)
    finally:
        study._storage.set_study_system_attr(study._study_id, RUN_CONFIG_ATTR, raw)


def test_show_status_report_print_caps_and_next_steps(capped, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = capped
    c = ["--config", str(cfg)]
    code, out, err = _main(capsys, "show", *c)
    assert code == 0, err
    assert "at 4e8 tokens the optimum sits at the cap of web 1e8, code 1e8 tokens" in out
    last = out.rstrip().splitlines()[-1]
    # The suggested target is one the caps allow (10x would be 4e9 > 6e8).
    assert last.startswith(f"next: optuna-autoscale extrapolate --config {cfg} --tokens 5.4e8"), last
    code, out, err = _main(capsys, "status", *c)
    assert code == 0 and out.rstrip().splitlines()[-1].startswith(f"next: optuna-autoscale show --config {cfg}")
    code, out, err = _main(capsys, "status", *c, "--format", "json")
    assert code == 0 and json.loads(out)["complete"] == 14 and err.startswith("next: optuna-autoscale show")
    html = tmp_path / "r.html"
    code, out, err = _main(capsys, "report", *c, "--out", str(html))
    assert code == 0, err
    assert out.rstrip().splitlines()[-1].startswith(f"next: open {html} in a browser; explore the study interactively: "
                                                    f"optuna-autoscale dashboard --config {cfg}")
    text = html.read_text(encoding="utf-8")
    # 10x and 100x (4e9, 4e10) exceed the caps: their columns stay, with the reason.
    for col in ("4e9 (joint)", "4e9 (paper)", "4e10 (joint)", "4e10 (paper)"):
        assert col in text, col
    assert "not computed: the caps sum to 6e8 tokens" in text
    code, out, err = _main(capsys, "report", *c, "--out", str(html), "--target", "5e8")
    assert code == 0, err
    assert "at cap: web 1e8, code 1e8; without caps: web" in html.read_text(encoding="utf-8")
    # The dashboard note shows the same caps row and reasons (one table shared with the report).
    from optuna_autoscale import dashboard as dash

    study = optuna.load_study(study_name="caps", storage=f"sqlite:///{cfg.parent / 'caps.db'}")
    note = dash.summary_markdown(study, targets=[5e8, 4e9])
    assert "| caps (the design's upper bounds) |" in note
    assert "at cap: web 1e8, code 1e8; without caps: web" in note
    assert "not computed: the caps sum to 6e8 tokens" in note


def test_fit_ends_with_next_step(capped, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = capped
    study = optuna.load_study(study_name="caps", storage=f"sqlite:///{cfg.parent / 'caps.db'}")
    runs = tmp_path / "runs.csv"
    study.trials_dataframe().to_csv(runs, index=False)
    code, out, err = _main(capsys, "fit", str(runs), "--tokens", "1e9")
    assert code == 0, err
    assert out.rstrip().splitlines()[-1].startswith("next: train the recommended mixture at 1e+09 tokens")
    code, out, err = _main(capsys, "fit", str(runs), "--tokens", "1e9", "--format", "json")
    assert code == 0 and json.loads(out)["tokens"] == 1e9 and err.startswith("next: ")


def test_megatron_refuses_whitespace() -> None:
    from optuna_autoscale import Mixture
    from optuna_autoscale.cli.inspect import format_mixtures

    mix = {"x": Mixture({"code": 0.3, "prose": 0.7}, 1e9)}
    assert format_mixtures(mix, "megatron", data_paths={"code": "/d/code_text", "prose": "prose"}) == (
        "0.30000000 /d/code_text 0.70000000 prose")
    with pytest.raises(ValueError, match=r"the data path '/d/my code' of domain 'code' contains whitespace"):
        format_mixtures(mix, "megatron", data_paths={"code": "/d/my code"})
    # A domain name with whitespace (refused by Mixture today; an older study or a hand-made object may hold one).
    spaced = {"x": types.SimpleNamespace(weights={"my code": 0.3, "prose": 0.7}, tokens=1e9)}
    with pytest.raises(ValueError, match=r"domain 'my code' contains whitespace.*data_path without spaces"):
        format_mixtures(spaced, "megatron")
    assert json.loads(format_mixtures(spaced, "hf"))["domains"] == ["my code", "prose"]  # other formats are fine


def test_extrapolate_help_names_the_default_law_and_the_caps_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        commands.main(["extrapolate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: the per-domain transfer law" in text and "in-box recommendation" in text
    assert "joint separable law (default" not in text
    for flag in ("--max-epochs E", "--cap DOMAIN=TOKENS", "--no-caps"):
        assert flag in text
    assert "--tokens 2e7" in text  # the example study's caps allow 4.4e7 tokens; see tests/test_cli_examples.py
