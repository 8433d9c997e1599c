"""GPT-2 proxy presets: shapes, parameter counts, config, MFU, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest


torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from optuna_autoscale.proxy import model as pm  # noqa: E402


pytestmark = pytest.mark.torch


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("micro", 291_712), ("mini", 632_576), ("tiny", 1_461_760), ("small", 5_289_472)],
)
def test_cpu_presets_build_with_expected_parameter_counts(preset: str, expected: int) -> None:
    model = pm.build_model(preset, vocab_size=8192, context=128, eos_id=0)
    assert pm.count_parameters(model) == expected
    assert pm.preset_parameters(preset, vocab_size=8192, context=128) == expected


def test_closed_form_matches_build_on_odd_sizes() -> None:
    model = pm.build_model("micro", vocab_size=777, context=48, eos_id=776)
    assert pm.count_parameters(model) == pm.preset_parameters("micro", vocab_size=777, context=48)


def test_gpt2_preset_is_124m_at_gpt2_vocab_and_presets_span_the_range() -> None:
    assert round(pm.preset_parameters("gpt2", vocab_size=50257, context=1024) / 1e6) == 124
    sizes = [pm.preset_parameters(p, vocab_size=8192, context=128) for p in pm.PRESETS]
    assert sizes == sorted(sizes)
    assert sizes[0] < 0.35e6


def test_config_uses_sdpa_eos_vocab_and_tied_head() -> None:
    model = pm.build_model("micro", vocab_size=300, context=32, eos_id=299)
    cfg = model.config
    assert cfg._attn_implementation == "sdpa"
    assert cfg.bos_token_id == cfg.eos_token_id == 299
    assert cfg.vocab_size == 300 and cfg.n_positions == 32
    assert cfg.use_cache is False
    assert model.lm_head.weight is model.transformer.wte.weight
    x = torch.randint(0, 300, (3, 32))
    assert model(input_ids=x).logits.shape == (3, 32, 300)


def test_same_seed_same_init() -> None:
    torch.manual_seed(3)
    a = pm.build_model("micro", vocab_size=64, context=16, eos_id=0)
    torch.manual_seed(3)
    b = pm.build_model("micro", vocab_size=64, context=16, eos_id=0)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="Unknown proxy preset 'huge'.*tiny"):
        pm.build_model("huge", vocab_size=64, context=16, eos_id=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 1, "context": 16, "eos_id": 0}, "vocab_size"),
        ({"vocab_size": 64, "context": 0, "eos_id": 0}, "context"),
        ({"vocab_size": 64, "context": 16, "eos_id": 64}, "eos_id"),
        ({"vocab_size": 64, "context": 16, "eos_id": 0, "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_sizes_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pm.build_config("micro", **kwargs)


def test_estimate_mfu_follows_nanogpt_formula() -> None:
    model = pm.build_model("tiny", vocab_size=8192, context=128, eos_id=0)
    n = pm.count_parameters(model) - 128 * 128  # minus position embeddings
    per_token = 6 * n + 12 * 2 * 4 * 32 * 128
    assert pm.flops_per_token(model, 128) == per_token
    assert pm.estimate_mfu(model, 1e5, context=128, peak_flops=1e12) == pytest.approx(per_token * 1e5 / 1e12)
    h200 = pm.estimate_mfu(model, 1e5, context=128, device_name="NVIDIA H200")
    assert h200 == pytest.approx(per_token * 1e5 / 989.4e12)
    assert pm.estimate_mfu(model, 1e5, context=128) is None
    assert pm.estimate_mfu(model, 1e5, context=128, device_name="Some CPU") is None
    with pytest.raises(ValueError, match="peak_flops"):
        pm.estimate_mfu(model, 1e5, context=128, peak_flops=0.0)


def test_importing_the_proxy_package_does_not_import_torch() -> None:
    code = (
        "import sys, optuna_autoscale.proxy as p, optuna_autoscale.proxy.model as m, "
        "optuna_autoscale.proxy.objective as o\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
        "assert 'tiny' in m.PRESETS and callable(o.make_objective)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
