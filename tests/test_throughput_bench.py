"""benchmarks/throughput.py: the GPU report's MFU formatting, goal line and CUDA check (no GPU needed)."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Any

import pytest


torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import throughput as bench  # noqa: E402


pytestmark = pytest.mark.torch


def test_format_mfu_and_goal_line() -> None:
    assert bench.format_mfu(None) == "n/a (unknown peak; pass --peak-tflops)"
    assert bench.format_mfu(0.41234) == "0.412"
    assert bench.MFU_GOAL == 0.40
    rows = [{"run": "trainer, compiled", "mfu": 0.42}, {"run": "trainer, eager", "mfu": 0.1}]
    assert bench.goal_line(rows).endswith("0.420, met") and ">= 0.40" in bench.goal_line(rows)
    assert bench.goal_line([{"run": "trainer, compiled", "mfu": 0.35}]).endswith("0.350, NOT met")
    assert "cannot judge, n/a (unknown peak; pass --peak-tflops)" in bench.goal_line([{"run": "trainer, compiled", "mfu": None}])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_flag_without_cuda_exits_with_a_clear_message() -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(["--gpu"])
    assert "--gpu needs a CUDA GPU" in str(info.value.code) and "without --gpu" in str(info.value.code)


def test_peak_tflops_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--gpu", "--peak-tflops", "-3"])
    assert "--peak-tflops must be a positive number" in capsys.readouterr().err


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A CUDA machine with GPU ``name``, whose runs are stubs (the report is what is tested)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    monkeypatch.setattr(bench, "RandomCorpus", lambda **kw: None)
    real_build = bench.pm.build_model
    monkeypatch.setattr(bench.pm, "build_model", lambda preset, **kw: real_build("micro", vocab_size=64, context=16, eos_id=0))
    monkeypatch.setattr(bench, "ours", lambda corpus, config, steps: (1e6, 1_000_000, None))
    monkeypatch.setattr(bench, "plain_loop", lambda corpus, config, steps, device, compile=False: (1e6, 1_000_000))


@pytest.fixture()
def keep_tf32() -> Any:
    before = torch.backends.cuda.matmul.allow_tf32  # run_gpu turns it on
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def test_unknown_gpu_prints_na_and_peak_tflops_gives_an_mfu(monkeypatch: pytest.MonkeyPatch, keep_tf32: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _fake_gpu(monkeypatch, "Some Future GPU 9000")
    rows = bench.run_gpu(steps=2, batch=2, compile_mode=None)
    out = capsys.readouterr().out
    assert all(r["mfu"] is None for r in rows)
    assert "peak bf16 unknown: pass --peak-tflops" in out
    assert out.count("MFU n/a (unknown peak; pass --peak-tflops)") == 3
    assert "goal: MFU >= 0.40 for the compiled trainer: cannot judge" in out

    rows = bench.run_gpu(steps=2, batch=2, compile_mode=None, peak_tflops=500.0)
    out = capsys.readouterr().out
    assert all(isinstance(r["mfu"], float) and r["mfu"] > 0 for r in rows)
    assert "peak bf16 500 TFLOP/s" in out
    mfu = rows[0]["mfu"]
    assert mfu < 0.40 and f"goal: MFU >= 0.40 for the compiled trainer: {mfu:.3f}, NOT met" in out
    assert "n/a" not in out
