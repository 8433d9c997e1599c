"""make_objective: real study.optimize with tiny proxies, metrics, user attrs, failure handling."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState
import pytest


pytest.importorskip("torch")
pytest.importorskip("transformers")

from optuna_autoscale.proxy import objective as obj_mod  # noqa: E402
from optuna_autoscale.proxy.objective import make_objective  # noqa: E402
from optuna_autoscale.proxy.train import ProxyConfig  # noqa: E402
from optuna_autoscale.proxy.train import ProxyResult  # noqa: E402

from _proxy_helpers import ArrayCorpus  # noqa: E402
from _proxy_helpers import stride_corpus  # noqa: E402


pytestmark = pytest.mark.torch

CTX = 16


def make_corpus(domains: tuple[str, ...] = ("a", "b", "c"), n: int = 5000) -> ArrayCorpus:
    return stride_corpus(n_train=n, n_val=800, domains=domains, seed=1)


CONFIG = ProxyConfig(preset="micro", context=CTX, batch_size=8, eval_tokens=128, num_threads=1)


@pytest.fixture(scope="module")
def corpus() -> ArrayCorpus:
    return make_corpus()


def test_random_sampler_study_records_losses(corpus: ArrayCorpus) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(make_objective(corpus, CONFIG, tokens=2048), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        losses = [t.user_attrs[f"loss_{d}"] for d in corpus.domains]
        assert t.value == pytest.approx(np.mean(losses))
        assert t.value == pytest.approx(t.user_attrs["mean_loss"])
        for d in corpus.domains:
            assert t.user_attrs[f"ppl_{d}"] == pytest.approx(math.exp(t.user_attrs[f"loss_{d}"]))
            assert isinstance(t.user_attrs[f"weight_{d}"], float)
        assert t.user_attrs["tokens"] == 2048.0 and t.user_attrs["autoscale_role"] == "search"
        assert t.user_attrs["tokens_per_second"] > 0 and t.user_attrs["n_params"] > 0
        assert abs(t.user_attrs["tokens_seen"] - 2048) <= len(corpus.domains) * CTX
    assert study.trials[0].value != study.trials[1].value  # different mixtures


def test_mean_ppl_and_target_metrics(corpus: ArrayCorpus) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(make_objective(corpus, CONFIG, "mean_ppl", tokens=1024), n_trials=1)
    t = study.trials[0]
    assert t.value == pytest.approx(np.mean([math.exp(t.user_attrs[f"loss_{d}"]) for d in corpus.domains]))

    # Train on a and b only; target c (never trained on) with weight 3 and a with weight 1.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    objective = make_objective(corpus, CONFIG, {"c": 3.0, "a": 1.0}, domains=("a", "b"), tokens=1024)
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert "weight_c" not in t.params and "loss_c" in t.user_attrs
    assert t.value == pytest.approx(0.75 * t.user_attrs["loss_c"] + 0.25 * t.user_attrs["loss_a"])


@pytest.mark.parametrize(
    ("metric", "err", "match"),
    [
        ("median_loss", ValueError, "Unknown metric"),
        ({"web": 1.0}, ValueError, "Target domain 'web'"),
        ({"a": -1.0}, ValueError, "non-negative"),
        ({"a": 0.0}, ValueError, "positive sum"),
        (3, TypeError, "metric must be"),
    ],
)
def test_bad_metric(corpus: ArrayCorpus, metric: object, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        make_objective(corpus, CONFIG, metric, tokens=1024)  # type: ignore[arg-type]


def test_bad_domains_and_config(corpus: ArrayCorpus) -> None:
    with pytest.raises(ValueError, match=r"\['web'\] are not in the corpus"):
        make_objective(corpus, CONFIG, domains=("a", "web"), tokens=1024)
    with pytest.raises(TypeError, match="ProxyConfig"):
        make_objective(corpus, {"preset": "tiny"}, tokens=1024)  # type: ignore[arg-type]
    study = optuna.create_study()
    with pytest.raises(ValueError, match="needs tokens"):
        study.optimize(make_objective(corpus, CONFIG), n_trials=1)


def test_non_finite_loss_fails_the_trial_and_the_study_goes_on(
    corpus: ArrayCorpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna_autoscale.proxy.train as tr

    def diverged(corpus_, mixture, config, **kw):  # type: ignore[no-untyped-def]
        losses = {d: float("nan") for d in mixture.domains}
        nan = float("nan")
        return ProxyResult(
            losses=losses, mean_loss=nan, tokens_seen=0, seconds=0.0, train_seconds=0.0, tokens_per_second=0.0,
            steady_tokens_per_second=0.0, sequences={}, epochs={}, steps=0, n_params=1, train_loss=nan,
        )

    monkeypatch.setattr(tr, "train_proxy", diverged)
    study = optuna.create_study()
    study.optimize(make_objective(corpus, CONFIG, tokens=1024), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert "diverged" in study.trials[0].user_attrs["fail_reason"]
    assert study.trials[0].user_attrs["loss_a"] is None
    assert obj_mod.PPL_PREFIX == "ppl_"


@pytest.mark.slow
def test_autoscale_sampler_study_with_tiny_proxies() -> None:
    sampler_mod = pytest.importorskip("optuna_autoscale.sampler")
    corpus = make_corpus(("a", "b"), n=8000)
    sampler = sampler_mod.AutoScaleSampler(corpus.domains, (1024.0, 2048.0), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(make_objective(corpus, CONFIG), n_trials=40)
    assert sampler.is_complete(study)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) >= 10  # 2 budgets x (base + 2 domains x 2 multipliers), plus verification
    roles = {t.user_attrs["autoscale_role"] for t in done}
    assert {"base", "perturb"} <= roles
    for t in done:
        assert math.isfinite(t.value)
        assert t.value == pytest.approx(np.mean([t.user_attrs["loss_a"], t.user_attrs["loss_b"]]))
        # The sampler chose budget and seed; the proxy trained on that budget.
        assert abs(t.user_attrs["tokens_seen"] - t.user_attrs["tokens"]) <= 2 * CTX


@pytest.mark.slow
def test_with_a_built_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus_mod = pytest.importorskip("optuna_autoscale.proxy.corpus")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import json

    rng = np.random.default_rng(0)
    words = {
        "prose": ["the", "cat", "sat", "on", "a", "mat", "and", "dog"],
        "code": ["def", "f", "(", ")", ":", "x", "=", "1"],
    }
    sources = {}
    for name, vocab in words.items():
        rows = [json.dumps({"text": " ".join(rng.choice(vocab, 60))}) for _ in range(300)]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(rows))
        sources[name] = path
    corpus = corpus_mod.build_corpus(sources, vocab_size=300, cache_dir=tmp_path / "cache", val_fraction=0.2)
    assert corpus.vocab_size <= 300 and set(corpus.domains) == {"prose", "code"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    config = dataclasses.replace(CONFIG, eval_tokens=64)
    study.optimize(make_objective(corpus, config, tokens=2048), n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE
    assert {"loss_prose", "loss_code"} <= set(t.user_attrs)


def test_progress_bar_by_default_only_on_a_terminal(corpus: ArrayCorpus, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_objective's default is tqdm's disable=None: a bar when stderr is a terminal, none in logs/CI."""
    import io
    import sys

    from optuna_autoscale.proxy import train as tr

    assert make_objective(corpus, CONFIG, tokens=1024).progress is None
    seen: list[tuple[object, bool]] = []
    real = tr.progress_bar

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        bar = real(*args, **kwargs)
        seen.append((kwargs["enabled"], bool(bar.disable)))
        return bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(tr, "progress_bar", spy)
    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(make_objective(corpus, CONFIG, tokens=1024), n_trials=1)
        assert seen[-1] == (None, not shown)
        assert ("proxy micro" in stream.getvalue()) is shown
    study.optimize(make_objective(corpus, CONFIG, tokens=1024, progress=False), n_trials=1)
    assert seen[-1] == (False, True)


def test_small_validation_split_warns_with_domain_and_numbers(caplog: pytest.LogCaptureFixture) -> None:
    """A validation split much smaller than eval_tokens is named when the objective is built."""
    import dataclasses

    small = make_corpus()
    small = dataclasses.replace(small, val={**small.val, "b": small.val["b"][:609]})
    with caplog.at_level("WARNING", logger="optuna_autoscale.proxy.objective"):
        make_objective(small, dataclasses.replace(CONFIG, eval_tokens=1600), tokens=1024)
    msgs = [r.getMessage() for r in caplog.records]
    assert any("'b' has 609 validation tokens" in m and "eval_tokens=1,600" in m for m in msgs), msgs
    assert not any("'a'" in m or "'c'" in m for m in msgs)  # 800 >= 1600 / 2
    caplog.clear()
    with caplog.at_level("WARNING", logger="optuna_autoscale.proxy.objective"):
        make_objective(make_corpus(), CONFIG, tokens=1024)  # 800 validation tokens >= 128
    assert not caplog.records
