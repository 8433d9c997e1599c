"""Proxy training under torchrun: rank 0 runs the study, every rank trains each trial's mixture."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import optuna
from optuna.trial import TrialState
import pytest

from _autoscale_helpers import write_text_domains


pytest.importorskip("torch")
pytest.importorskip("transformers")

from optuna_autoscale import Mixture  # noqa: E402
from optuna_autoscale.proxy import distributed  # noqa: E402


pytestmark = pytest.mark.torch

_TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


def test_single_process_is_plain_optimize(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in _TORCHRUN_VARS:
        monkeypatch.delenv(k, raising=False)
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.run_ranked(lambda: "ran", object()) == "ran"
    assert distributed.rank0_first(lambda: 7) == 7
    distributed.share_mixture(Mixture({"a": 0.5, "b": 0.5}, tokens=10))  # a no-op alone


def test_objective_on_a_follower_rank_refuses_to_run_the_study(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank > 0 that calls study.optimize itself would train another mixture than rank 0."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RuntimeError, match="only rank 0 may run study.optimize"):
        distributed.share_mixture(Mixture({"a": 0.5, "b": 0.5}, tokens=10))


def test_simulated_objective_runs_on_rank_0_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.run_ranked(lambda: pytest.fail("rank 1 ran the study"), lambda trial: 0.0) == 0


_CONFIG = """
[study]
name = "ddp"
storage = "{url}"
objective = "proxy"
dashboard = false
heartbeat_interval = 0

[design]
budgets = [4096]
verify = false

[corpus]
vocab_size = 300
cache_dir = "{cache}"

[[domains]]
name = "prose"
path = "{prose}"

[[domains]]
name = "code"
path = "{code}"

[proxy]
preset = "micro"
context = 32
batch_size = 8
eval_tokens = 256
device = "cpu"
"""


def _torchrun(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "optuna_autoscale.commands", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_run_and_worker_under_torchrun_train_each_trial_on_both_ranks(tmp_path: Path) -> None:
    doms = write_text_domains(tmp_path, docs=200, names=("prose", "code"))
    db = tmp_path / "ddp.db"
    url = f"sqlite:///{db}"
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(_CONFIG.format(url=url, cache=tmp_path / "cache", prose=doms["prose"], code=doms["code"]))
    env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

    # `run` under torchrun: rank 0 creates the study and runs 2 trials, rank 1 trains them with it.
    out = _torchrun(["run", str(cfg), "--n-trials", "2"], env, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "rank 1: trained 2 mixture(s) with rank 0" in out.stdout
    # `worker` under torchrun, on the study `run` prepared: 2 more trials.
    out = _torchrun(["worker", "--storage", url, "--study", "ddp", "--n-trials", "2"], env, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "rank 1: trained 2 mixture(s) with rank 0" in out.stdout
    assert "ran 2 trial(s)" in out.stdout
    assert "mismatch" not in out.stderr.lower()

    study = optuna.load_study(study_name="ddp", storage=url)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # one trial per mixture: no rank asked its own
    mixtures = set()
    for t in trials:
        assert t.user_attrs["world_size"] == 2  # trained by both ranks (DDP)
        budget = t.user_attrs["tokens"]
        assert abs(t.user_attrs["tokens_seen"] - budget) <= 2 * 32  # the whole budget, once (rounding per domain)
        assert {"loss_prose", "loss_code"} <= set(t.user_attrs)
        mixtures.add((budget, tuple(sorted((k, v) for k, v in t.user_attrs.items() if k.startswith("weight_")))))
    assert len(mixtures) == 4  # four different design points, none trained twice
