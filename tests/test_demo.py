"""The demo's config, effects table and printed report (the real run is `make demo`)."""

from __future__ import annotations

import optuna
import pytest

from optuna_autoscale import AutoScaleResult
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale.cli import main as cli_main
from optuna_autoscale.demo import demo_config
from optuna_autoscale.demo import perturbation_effects
from optuna_autoscale.demo import report
from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def finished():  # type: ignore[no-untyped-def]
    land = separable(3, seed=1, noise=0.001, seed_noise=0.01)
    sampler = AutoScaleSampler(land.domains, [1e8, 4e8], replicates=1, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(land.objective(), n_trials=200)
    assert sampler.is_complete(study)
    return land, study, AutoScaleResult.from_study(study, write_summary=False)


def test_demo_config_is_valid_and_real() -> None:
    cfg = demo_config(storage="sqlite:////tmp/x.db", cache_dir="/tmp/cache")
    assert cfg.study.objective == "proxy" and cfg.corpus.embedded and not cfg.corpus.apt
    assert len(cfg.corpus.embedded_domains) == 4
    assert cfg.study.storage == "sqlite:////tmp/x.db" and cfg.corpus.cache_dir == "/tmp/cache"
    assert list(cfg.design.budgets) == sorted(cfg.design.budgets) and cfg.design.replicates >= 1
    assert cfg.proxy_config().device == "cpu"


def test_effects_are_same_seed_differences(finished) -> None:  # type: ignore[no-untyped-def]
    land, study, _ = finished
    rows = perturbation_effects(study)
    # 2 budgets x 3 domains x 2 multipliers.
    assert len(rows) == 12
    for r in rows:
        base = [t for t in study.trials if t.user_attrs.get("autoscale_role") == "base"
                and t.user_attrs["tokens"] == pytest.approx(r["budget"])]
        assert len(base) == 1
        d, b = f"weight_{r['domain']}", base[0].user_attrs

        def tokens_of(t):  # type: ignore[no-untyped-def]
            return t.user_attrs[d] * t.user_attrs["tokens"]

        pert = [t for t in study.trials if t.user_attrs.get("autoscale_role") == "perturb"
                and t.user_attrs["seed"] == b["seed"]
                and tokens_of(t) == pytest.approx(r["multiplier"] * tokens_of(base[0]))]
        assert len(pert) == 1
        assert r["effect"] == pytest.approx(pert[0].value - base[0].value)
        # More data for a domain lowers the loss on this landscape; less raises it.
        assert (r["effect"] < 0) == (r["multiplier"] > 1)


def test_report_prints_every_section(finished) -> None:  # type: ignore[no-untyped-def]
    land, study, result = finished
    text = report(study, result, storage="sqlite:///demo.db")
    assert "seed noise (sd of the loss)" in text and "base replicates" in text
    assert "seed noise at 1e8 tokens: sd" in text and "/ budget sd" in text
    assert "verify_predicted at " in text  # the verdict on what the verification can say
    assert "Optimal weights per budget" in text
    assert "4e9 joint" in text and "4e10 paper" in text
    assert "verify_predicted" in text
    assert "optuna-autoscale dashboard --storage sqlite:///demo.db" in text


def test_budget_noise_is_the_sd_of_each_budgets_base_runs(finished) -> None:  # type: ignore[no-untyped-def]
    import statistics

    from optuna_autoscale.demo import budget_noise

    _, study, _ = finished
    noise = budget_noise(study)
    assert set(noise) == {1e8, 4e8}
    for budget, (sd, n) in noise.items():
        runs = [t.value for t in study.trials if t.user_attrs.get("autoscale_role") in ("base", "replicate")
                and t.user_attrs["tokens"] == pytest.approx(budget)]
        assert n == len(runs) >= 2 and sd == pytest.approx(statistics.stdev(runs))


def test_demo_help(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as e:
        cli_main(["demo", "--help"])
    assert e.value.code == 0
    assert "--fresh" in capsys.readouterr().out


def test_run_demo_pipeline_with_a_worker_process(tmp_path, capfd) -> None:  # type: ignore[no-untyped-def]
    """The demo's own code path end to end (open the study, a second `worker` process with progress
    lines, the report), on a simulated objective instead of the real proxies."""
    from _autoscale_helpers import sim_config

    from optuna_autoscale.config import load_config
    from optuna_autoscale.demo import run_demo

    path = sim_config(tmp_path / "demo.toml", storage="sqlite:///unused.db", name="demo-sim", sleep=0.05,
                      budgets=(1e8, 4e8), verify=True)
    path.write_text(path.read_text().replace("verify = true", "verify = true\nreplicates = 1"))
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = run_demo(config=load_config(path), storage=url, n_jobs=2)
    out = capfd.readouterr().out  # capfd: the worker process writes to the inherited stdout
    study = optuna.load_study(study_name="demo-sim", storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 2 * (2 * 3 + 1 + 1) + 4  # both designs with a replicate each, and 4 verification runs
    assert set(result.optima) == {1e8, 4e8}
    assert "2 at a time" in out and "design complete: True" in out
    assert out.count("      run ") == len(done)  # one progress line per run, from this process or the worker
    assert "worker " in out and "ran " in out  # the worker process took part and said so
    assert "seed noise (sd of the loss)" in out and "verify_predicted" in out
    assert "autoscale:run_config" in study._storage.get_study_system_attrs(study._study_id)


def test_verification_verdict_bands() -> None:
    from optuna_autoscale.results import verification_verdict

    # band = 2 sqrt(2) x 0.05 = 0.141
    assert "neither confirm nor refute" in verification_verdict(0.1, -0.3, 0.05)
    assert "agrees" in verification_verdict(0.3, 0.2, 0.05)
    assert "distrust" in verification_verdict(0.3, -0.1, 0.05)
    assert "cannot judge" in verification_verdict(0.3, 0.3, None)
