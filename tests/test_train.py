"""train_proxy: data plan, optimisation, determinism, validation, pruning and bad inputs (tiny, CPU)."""

from __future__ import annotations

from collections import Counter
import math
import warnings

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import optuna
import pytest


torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from optuna_autoscale.mixture import Mixture  # noqa: E402
from optuna_autoscale.proxy import train as tr  # noqa: E402
from optuna_autoscale.proxy.train import plan_sequences  # noqa: E402
from optuna_autoscale.proxy.train import ProxyConfig  # noqa: E402
from optuna_autoscale.proxy.train import train_proxy  # noqa: E402

from _proxy_helpers import ArrayCorpus  # noqa: E402
from _proxy_helpers import stride_corpus  # noqa: E402
from _proxy_helpers import VOCAB  # noqa: E402


pytestmark = pytest.mark.torch

CTX = 16


def make_corpus(n_train: int = 6000, n_val: int = 1200, domains: tuple[str, ...] = ("a", "b", "c")) -> ArrayCorpus:
    """Each domain a learnable stride pattern with 10% random tokens."""
    return stride_corpus(n_train=n_train, n_val=n_val, domains=domains, seed=0)


def cfg(**kw: object) -> ProxyConfig:
    base = dict(preset="micro", context=CTX, batch_size=8, eval_tokens=256, num_threads=1, warmup=0.1)
    base.update(kw)
    return ProxyConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def corpus() -> ArrayCorpus:
    return make_corpus()


# ------------------------------------------------------------------ data plan


def test_plan_has_exact_per_domain_counts_and_no_repeats_within_an_epoch(corpus: ArrayCorpus) -> None:
    mix = Mixture({"a": 0.5, "b": 0.3, "c": 0.2}, tokens=40_000, seed=7)
    plan = plan_sequences(corpus, mix, context=CTX)
    avail = (6000 - 1) // CTX
    for i, d in enumerate(mix.domains):
        n = round(mix.weights[d] * mix.tokens / CTX)
        starts = plan.rows[plan.rows[:, 0] == i, 1]
        assert plan.sequences[d] == n == len(starts)
        assert plan.available[d] == avail
        assert plan.epochs[d] == pytest.approx(n / avail)
        assert np.all(starts % CTX == 0) and np.all(starts + CTX + 1 <= 6000)
        counts = Counter(starts.tolist())
        full, rest = divmod(n, avail)
        # Without replacement within an epoch: every sequence `full` or `full + 1` times.
        assert set(counts.values()) <= {full, full + 1}
        assert sum(1 for c in counts.values() if c == full + 1) == (rest if full else n)
    assert len(plan.rows) == sum(plan.sequences.values())


@settings(max_examples=40, deadline=None)
@given(
    w=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4).filter(lambda v: sum(v) > 0.05),
    tokens=st.floats(1e3, 2e5),
    seed=st.integers(0, 2**31),
)
def test_plan_counts_property(w: list[float], tokens: float, seed: int) -> None:
    doms = tuple("abcd"[: len(w)])
    corpus = make_corpus(n_train=500, n_val=100, domains=doms)
    mix = Mixture.normalised(dict(zip(doms, w)), tokens, seed)
    plan = plan_sequences(corpus, mix, context=CTX)
    got = Counter(plan.rows[:, 0].tolist())
    for i, d in enumerate(doms):
        assert got.get(i, 0) == plan.sequences[d] == int(round(mix.weights[d] * tokens / CTX))


def test_plan_is_deterministic_and_domains_keep_their_draws(corpus: ArrayCorpus) -> None:
    base = Mixture({"a": 0.4, "b": 0.3, "c": 0.3}, tokens=20_000, seed=1)
    p1, p2 = plan_sequences(corpus, base, context=CTX), plan_sequences(corpus, base, context=CTX)
    assert np.array_equal(p1.rows, p2.rows)
    other_seed = plan_sequences(corpus, Mixture(dict(base.weights), 20_000, seed=2), context=CTX)
    assert not np.array_equal(p1.rows, other_seed.rows)
    # Perturb only "a": the sequences of "b" and "c" are the same multiset (common random numbers).
    pert = Mixture.from_allocation({"a": 0.4 * 20_000 * 3, "b": 6000, "c": 6000}, seed=1)
    p3 = plan_sequences(corpus, pert, context=CTX)
    for i in (1, 2):
        assert sorted(p1.rows[p1.rows[:, 0] == i, 1]) == sorted(p3.rows[p3.rows[:, 0] == i, 1])


def test_training_sees_exactly_the_plan(corpus: ArrayCorpus, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: Counter[int] = Counter()
    real = tr.get_batch

    def spy(arrays, rows, ctx, vocab, device):  # type: ignore[no-untyped-def]
        if len(arrays) > 1:  # training batches (evaluation passes one array)
            seen.update(rows[:, 0].tolist())
        return real(arrays, rows, ctx, vocab, device)

    monkeypatch.setattr(tr, "get_batch", spy)
    mix = Mixture({"a": 0.6, "b": 0.25, "c": 0.15}, tokens=3000, seed=0)
    res = train_proxy(corpus, mix, cfg(batch_size=7), progress=False)
    expected = {d: round(mix.weights[d] * 3000 / CTX) for d in mix.domains}
    assert res.sequences == expected
    assert {mix.domains[i]: c for i, c in seen.items()} == expected
    assert res.tokens_seen == sum(expected.values()) * CTX
    assert res.steps == math.ceil(sum(expected.values()) / 7)  # the last, partial batch is trained on too


# ------------------------------------------------------------------ training


def test_loss_falls(corpus: ArrayCorpus) -> None:
    mix = Mixture.uniform(corpus.domains, tokens=8 * CTX * 42, seed=0)  # 112 sequences per domain
    res = train_proxy(corpus, mix, cfg(eval_interval=6), progress=False)
    assert res.steps == 42 and len(res.history) == 6
    first = res.history[0]["mean_loss"]
    assert res.mean_loss < first - 0.2
    assert res.mean_loss < math.log(VOCAB) - 0.5
    assert set(res.losses) == set(corpus.domains)
    assert res.mean_loss == pytest.approx(np.mean(list(res.losses.values())))
    assert res.mean_ppl == pytest.approx(np.mean([math.exp(v) for v in res.losses.values()]))
    assert res.tokens_per_second > 0 and res.n_params > 0 and res.mfu is None


def test_same_seed_same_losses_other_seed_differs(corpus: ArrayCorpus) -> None:
    mix = Mixture({"a": 0.5, "b": 0.3, "c": 0.2}, tokens=2000, seed=5)
    r1 = train_proxy(corpus, mix, cfg(), progress=False)
    r2 = train_proxy(corpus, mix, cfg(), progress=False)
    assert r1.losses == r2.losses and r1.train_loss == r2.train_loss
    r3 = train_proxy(corpus, Mixture(dict(mix.weights), 2000, seed=6), cfg(), progress=False)
    assert r3.losses != r1.losses


def test_validation_set_is_fixed_and_independent_of_the_mixture(
    corpus: ArrayCorpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[dict[str, list[int]]] = []
    real = tr._evaluate

    def spy(model, corpus_, eval_sets, *args):  # type: ignore[no-untyped-def]
        used.append({d: s.tolist() for d, s in eval_sets.items()})
        return real(model, corpus_, eval_sets, *args)

    monkeypatch.setattr(tr, "_evaluate", spy)
    train_proxy(corpus, Mixture({"a": 0.8, "b": 0.1, "c": 0.1}, 1500, seed=0), cfg(), progress=False)
    train_proxy(corpus, Mixture({"a": 0.0, "b": 0.5, "c": 0.5}, 3000, seed=9), cfg(), progress=False)
    k = 256 // CTX
    expected = {d: [i * CTX for i in range(k)] for d in corpus.domains}
    assert used == [expected, expected]  # the first K validation sequences, whatever the mixture


def test_zero_weight_and_extra_eval_domains_are_evaluated(corpus: ArrayCorpus) -> None:
    mix = Mixture({"a": 1.0, "b": 0.0}, tokens=1000, seed=0)
    res = train_proxy(corpus, mix, cfg(eval_domains=("a", "b", "c")), progress=False)
    assert res.sequences["b"] == 0 and res.epochs["b"] == 0.0
    assert set(res.losses) == {"a", "b", "c"}


def test_lr_schedule_warms_up_and_anneals_to_the_floor() -> None:
    c = ProxyConfig(preset="micro", lr=1e-2, warmup=0.1, min_lr_ratio=0.1)
    lrs = [tr._lr_at(s, 50, c) for s in range(50)]
    assert lrs[0] == pytest.approx(1e-2 / 5) and lrs[4] == pytest.approx(1e-2)
    assert lrs[-1] == pytest.approx(1e-3)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[4:], lrs[5:]))
    assert ProxyConfig(preset="small").peak_lr == 2e-3


def test_repetition_past_max_epochs_warns(corpus: ArrayCorpus) -> None:
    mix = Mixture({"a": 0.9, "b": 0.1}, tokens=60 * CTX * 4, seed=0)  # "a": 216 seqs of 374 avail
    with pytest.warns(UserWarning, match=r"Domain 'a' is repeated .* epochs"):
        plan_then_train = train_proxy(corpus, mix, cfg(max_epochs=0.5, batch_size=64), progress=False)
    assert plan_then_train.epochs["a"] > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_proxy(corpus, mix, cfg(batch_size=64), progress=False)


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_reports_and_prunes(corpus: ArrayCorpus) -> None:
    mix = Mixture.uniform(corpus.domains, tokens=8 * CTX * 12, seed=0)

    def objective(trial: optuna.Trial) -> float:
        return train_proxy(corpus, mix, cfg(eval_interval=4), trial=trial, progress=False).mean_loss

    study = optuna.create_study(pruner=_AlwaysPrune())
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.PRUNED
    assert list(t.intermediate_values) == [4]
    # Without a pruner that fires, every interval is reported and the run completes.
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)
    assert list(study.trials[0].intermediate_values) == [4, 8]
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


# ------------------------------------------------------------------ bad inputs


def test_domain_missing_from_corpus(corpus: ArrayCorpus) -> None:
    with pytest.raises(ValueError, match=r"\['web'\] of the mixture are not in the corpus"):
        train_proxy(corpus, Mixture({"a": 0.5, "web": 0.5}, 5000), cfg(), progress=False)
    with pytest.raises(ValueError, match=r"\['web'\] of the eval_domains"):
        train_proxy(corpus, Mixture({"a": 0.5, "b": 0.5}, 5000), cfg(eval_domains=["web"]), progress=False)


def test_budget_below_one_batch(corpus: ArrayCorpus) -> None:
    with pytest.raises(ValueError, match="below one batch"):
        train_proxy(corpus, Mixture({"a": 0.5, "b": 0.5}, tokens=6 * CTX), cfg(batch_size=8), progress=False)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match=r"Unknown proxy preset 'gpt5'.*micro"):
        ProxyConfig(preset="gpt5")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"context": 2.5}, "context"),
        ({"lr": -1.0}, "lr"),
        ({"warmup": 1.0}, "warmup"),
        ({"eval_tokens": 8}, "eval_tokens"),
        ({"betas": (0.9, 1.2)}, "betas"),
        ({"dtype": "float16"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"eval_domains": "a"}, "eval_domains"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"eval_interval": -1}, "eval_interval"),
    ],
)
def test_bad_config_values(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cfg(**kw)


def test_bad_data(corpus: ArrayCorpus) -> None:
    small = ArrayCorpus({"a": corpus.train["a"], "b": corpus.train["b"][:CTX]}, dict(corpus.val))
    with pytest.raises(ValueError, match="fewer than one sequence"):
        train_proxy(small, Mixture({"a": 0.5, "b": 0.5}, 5000), cfg(), progress=False)
    tiny_val = ArrayCorpus(dict(corpus.train), {**corpus.val, "b": corpus.val["b"][:5]})
    with pytest.raises(ValueError, match="validation tokens"):
        train_proxy(tiny_val, Mixture({"a": 0.5, "b": 0.5}, 5000), cfg(), progress=False)
    bad_ids = ArrayCorpus({d: a.astype(np.int64) + VOCAB for d, a in corpus.train.items()}, dict(corpus.val))
    with pytest.raises(ValueError, match="outside the corpus vocabulary"):
        train_proxy(bad_ids, Mixture({"a": 0.5, "b": 0.5}, 5000), cfg(), progress=False)
    with pytest.raises(TypeError, match="Mixture"):
        train_proxy(corpus, {"a": 1.0}, cfg(), progress=False)  # type: ignore[arg-type]


def test_cuda_request_without_cuda_is_clear(corpus: ArrayCorpus) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        train_proxy(corpus, Mixture({"a": 0.5, "b": 0.5}, 5000), cfg(device="cuda"), progress=False)


# ------------------------------------------------------------------ torchrun / DDP, benchmark smoke

_DDP_SCRIPT = r"""
import json, os, sys
import numpy as np
sys.path.insert(0, {tests_dir!r})
from test_train import cfg, make_corpus
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.proxy.train import train_proxy

corpus = make_corpus()
mix = Mixture({{"a": 0.5, "b": 0.3, "c": 0.2}}, tokens=CTX_TOKENS, seed=3)
res = train_proxy(corpus, mix, cfg(batch_size=8, micro_batch_size=3), progress=False)
if int(os.environ.get("RANK", "0")) == 0:
    with open(sys.argv[1], "w") as f:
        json.dump({{"losses": res.losses, "train_loss": res.train_loss, "tokens": res.tokens_seen}}, f)
"""


@pytest.mark.slow
def test_torchrun_ddp_matches_single_process(tmp_path: pytest.TempPathFactory) -> None:
    import json
    from pathlib import Path
    import subprocess
    import sys

    tokens = 8 * CTX * 10 + 5 * CTX  # 10 full steps and a partial one of 5 sequences (split 3 + 2)
    script = Path(str(tmp_path)) / "ddp_run.py"
    script.write_text(_DDP_SCRIPT.format(tests_dir=str(Path(__file__).parent)).replace("CTX_TOKENS", str(tokens)))
    multi = Path(str(tmp_path)) / "multi.json"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(multi)],
        check=True,
        env=env,
        timeout=300,
    )
    mix = Mixture({"a": 0.5, "b": 0.3, "c": 0.2}, tokens=tokens, seed=3)
    res = train_proxy(make_corpus(), mix, cfg(batch_size=8), progress=False)  # one process, no accumulation
    a = {"losses": res.losses, "train_loss": res.train_loss, "tokens": res.tokens_seen}
    b = json.loads(multi.read_text())
    assert a["tokens"] == b["tokens"] == tokens
    for d in a["losses"]:
        assert b["losses"][d] == pytest.approx(a["losses"][d], abs=2e-3)
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=2e-3)


@pytest.mark.slow
def test_throughput_benchmark_quick_smoke() -> None:
    from pathlib import Path
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    out = subprocess.run(
        [sys.executable, str(script), "--quick", "--threads", "1"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ratio" in out.stdout and "micro" in out.stdout


def test_concurrent_runs_in_threads_match_sequential_runs(corpus: ArrayCorpus, monkeypatch: pytest.MonkeyPatch) -> None:
    """study.optimize(n_jobs=2) runs two trainings in one process: neither may disturb the other's
    seeded init (torch's default RNG is process-wide) or its thread count (also process-wide)."""
    import threading
    import time

    short = Mixture({"a": 0.5, "b": 0.3, "c": 0.2}, tokens=800, seed=5)
    long = Mixture({"a": 0.2, "b": 0.3, "c": 0.5}, tokens=4000, seed=6)
    config = cfg(num_threads=1)
    expected = {m.seed: train_proxy(corpus, m, config, progress=False).losses for m in (short, long)}

    real_build = tr.proxy_model.build_model

    def slow_build(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # widen the window between a run's manual_seed and its init draws
        return real_build(*args, **kwargs)

    threads_seen: dict[int, set[int]] = {5: set(), 6: set()}
    real_batch = tr.get_batch
    local = threading.local()

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        threads_seen[local.seed].add(torch.get_num_threads())
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(tr.proxy_model, "build_model", slow_build)
    monkeypatch.setattr(tr, "get_batch", spy)
    before = torch.get_num_threads()
    got: dict[int, dict[str, float]] = {}

    def work(m: Mixture) -> None:
        local.seed = m.seed
        got[m.seed] = train_proxy(corpus, m, config, progress=False).losses

    workers = [threading.Thread(target=work, args=(m,)) for m in (short, long)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert got == expected
    assert threads_seen == {5: {1}, 6: {1}}  # the long run kept 1 thread after the short one ended
    assert torch.get_num_threads() == before
