"""Throughput of the proxy trainer against a minimal plain-PyTorch GPT loop of the same shape.

CPU (default): for each CPU preset, ``train_proxy`` (HF ``GPT2LMHeadModel``, SDPA) and a
hand-written GPT with ``F.scaled_dot_product_attention``, the same parameter count, the same
AdamW (decay on matrices, clipping) and the same batch, run alternately in one process on random
tokens. Prints steady-state tokens/s of both and their ratio (goal >= 0.9). Other processes on the
machine shift absolute figures; the ratio within one run is the number to read.

GPU (``--gpu``): MFU of the 124M ``gpt2`` preset (GPT-2's vocabulary padded to 50304, context 1024)
with bf16 autocast, fused AdamW and ``torch.compile``: the trainer compiled, the trainer eager,
and the plain GPT compiled. One script, a few minutes on one H200. The goal is an MFU of at least
0.40 for the compiled trainer; on a GPU missing from ``PEAK_BF16_FLOPS`` pass ``--peak-tflops``
(its dense bf16 peak), else the MFU is printed as n/a.

Usage::

    python benchmarks/throughput.py                # every CPU preset: micro, mini, tiny, small
    python benchmarks/throughput.py --presets micro tiny
    python benchmarks/throughput.py --quick        # seconds-long smoke run
    python benchmarks/throughput.py --gpu          # CUDA: MFU of the 124M preset (goal >= 0.40)
    python benchmarks/throughput.py --gpu --peak-tflops 312   # a GPU whose peak is not built in
    python benchmarks/throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from optuna_autoscale.mixture import Mixture
from optuna_autoscale.proxy import model as pm
from optuna_autoscale.proxy.train import ProxyConfig
from optuna_autoscale.proxy.train import train_proxy


# ------------------------------------------------------------------ synthetic corpus


@dataclasses.dataclass
class RandomCorpus:
    """Random tokens (throughput does not depend on the text)."""

    vocab_size: int
    n_tokens: int
    eos_id: int = 0
    domains: tuple[str, ...] = ("x", "y")

    def __post_init__(self) -> None:
        rng = np.random.default_rng(0)
        dtype = np.uint16 if self.vocab_size <= 65536 else np.uint32
        self._data = {d: rng.integers(0, self.vocab_size, self.n_tokens).astype(dtype) for d in self.domains}

    def train_tokens(self, domain: str) -> np.ndarray:
        return self._data[domain]

    def val_tokens(self, domain: str) -> np.ndarray:
        return self._data[domain][:4096]


# ------------------------------------------------------------------ minimal plain-PyTorch GPT


class Block(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))  # (b, h, t, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class PlainGPT(nn.Module):
    def __init__(self, vocab: int, ctx: int, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.wte(x) + self.wpe(torch.arange(x.size(1), device=x.device))
        for block in self.blocks:
            h = block(h)
        logits = self.lm_head(self.ln_f(h))  # (b, t, vocab)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="sum")


def plain_loop(
    corpus: RandomCorpus, config: ProxyConfig, steps: int, device: torch.device, *, compile: bool = False
) -> tuple[float, int]:
    """nanoGPT-style loop; returns (steady tokens/s after the same warm-up as train_proxy, params)."""
    shape = pm.get_preset(config.preset)
    torch.manual_seed(0)
    model = PlainGPT(corpus.vocab_size, config.context, shape.n_embd, shape.n_layer, shape.n_head).to(device)
    n_params = sum(p.numel() for p in model.parameters())  # tied weight counted once by parameters()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.peak_lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )
    step_fn: Any = torch.compile(model, mode=config.compile_mode) if compile else model
    use_bf16 = device.type == "cuda"
    data = torch.from_numpy(corpus.train_tokens(corpus.domains[0]).astype(np.int64))
    rng = np.random.default_rng(0)
    b, t = config.batch_size, config.context
    warm = min(5, steps // 4)
    t0 = time.perf_counter()
    for step in range(steps):
        if step == warm:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        ix = rng.integers(0, len(data) - t - 1, b)
        xy = torch.stack([data[i : i + t + 1] for i in ix])  # (b, t + 1)
        xy = xy.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else xy
        x, y = xy[:, :-1], xy[:, 1:]
        for group in opt.param_groups:
            group["lr"] = config.peak_lr
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = step_fn(x, y)
        (loss / (b * t)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (steps - warm) * b * t / (time.perf_counter() - t0), n_params


def ours(corpus: RandomCorpus, config: ProxyConfig, steps: int) -> tuple[float, int, float | None]:
    """train_proxy on exactly ``steps`` full batches; (steady tokens/s, params, mfu)."""
    per_domain = steps * config.batch_size // len(corpus.domains)
    tokens = per_domain * len(corpus.domains) * config.context
    mix = Mixture.uniform(corpus.domains, tokens=tokens)
    res = train_proxy(corpus, mix, config, progress=False)
    assert res.steps == steps, (res.steps, steps)
    return res.steady_tokens_per_second, res.n_params, res.mfu


def interleaved(corpus: RandomCorpus, config: ProxyConfig, steps: int) -> tuple[float, float]:
    """The trainer's model + loss + optimizer step against the plain GPT's, alternating step by step.

    Load from other processes then hits both alike, so the ratio holds on a busy machine. Returns
    the median tokens/s of (trainer step, plain step) over ``steps`` pairs after 2 warm-up pairs.
    """
    from optuna_autoscale.proxy import train as tr

    shape = pm.get_preset(config.preset)
    torch.manual_seed(0)
    hf = tr._LossModel(pm.build_model(config.preset, vocab_size=corpus.vocab_size, context=config.context, eos_id=0))
    plain = PlainGPT(corpus.vocab_size, config.context, shape.n_embd, shape.n_layer, shape.n_head)
    device = torch.device("cpu")
    opts = {"hf": tr.make_optimizer(hf, config, device), "plain": tr.make_optimizer(plain, config, device)}
    models = {"hf": hf, "plain": plain}
    data = corpus.train_tokens(corpus.domains[0])
    rng = np.random.default_rng(0)
    b, t = config.batch_size, config.context
    times: dict[str, list[float]] = {"hf": [], "plain": []}
    for i in range(steps + 2):
        rows = np.stack([np.zeros(b, dtype=np.int64), rng.integers(0, (len(data) - 1) // t, b) * t], axis=1)
        for name, model in models.items():
            t0 = time.perf_counter()
            x, y = tr.get_batch([data], rows, t, corpus.vocab_size, device)
            (model(x, y) / (b * t)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    return b * t / statistics.median(times["hf"]), b * t / statistics.median(times["plain"])


# ------------------------------------------------------------------ modes


def run_cpu(presets: list[str], *, steps: int, batch: int, context: int, vocab: int, threads: int, repeats: int) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    corpus = RandomCorpus(vocab_size=vocab, n_tokens=max(steps * batch * context, 200_000))
    rows = []
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} threads, "
          f"batch {batch} x context {context}, vocab {vocab}, {steps} steps per measurement, {repeats} repeats")
    print(f"{'preset':8} {'params':>9} {'ours tok/s':>11} {'plain tok/s':>12} {'ratio':>6}  "
          f"{'run pairs':>16}  step-interleaved (ours/plain tok/s, ratio)")
    for preset in presets:
        config = ProxyConfig(
            preset=preset, context=context, batch_size=batch, eval_tokens=context, num_threads=threads, device="cpu"
        )
        a_runs, b_runs = [], []
        for _ in range(repeats):  # alternate, so that load from other processes hits both alike
            a, n_ours, _ = ours(corpus, config, steps)
            b, n_plain = plain_loop(corpus, config, steps, torch.device("cpu"))
            a_runs.append(a)
            b_runs.append(b)
        assert n_ours == n_plain, (n_ours, n_plain)  # same shape
        a_med, b_med = statistics.median(a_runs), statistics.median(b_runs)
        pairs = [round(x / y, 3) for x, y in zip(a_runs, b_runs)]
        ia, ib = interleaved(corpus, config, steps)
        row = {"preset": preset, "params": n_ours, "ours_tokens_per_s": a_med, "plain_tokens_per_s": b_med,
               "ratio": a_med / b_med, "pair_ratios": pairs, "interleaved_ours_tokens_per_s": ia,
               "interleaved_plain_tokens_per_s": ib, "interleaved_ratio": ia / ib}
        rows.append(row)
        print(f"{preset:8} {n_ours / 1e6:8.2f}M {a_med:11.0f} {b_med:12.0f} {a_med / b_med:6.3f}  {str(pairs):>16}  "
              f"{ia:.0f} / {ib:.0f}, {ia / ib:.3f}")
        sys.stdout.flush()
    return rows


MFU_GOAL = 0.40
"""The GPU goal: MFU of the compiled trainer on the 124M preset."""


def format_mfu(mfu: float | None) -> str:
    """``0.412``, or n/a when the GPU's peak is unknown."""
    return "n/a (unknown peak; pass --peak-tflops)" if mfu is None else f"{mfu:.3f}"


def goal_line(rows: list[dict[str, Any]]) -> str:
    """Whether the compiled trainer meets :data:`MFU_GOAL`."""
    mfu = next((r["mfu"] for r in rows if r["run"] == "trainer, compiled"), None)
    if mfu is None:
        return f"goal: MFU >= {MFU_GOAL:.2f} for the compiled trainer: cannot judge, {format_mfu(None)}"
    verdict = "met" if mfu >= MFU_GOAL else "NOT met"
    return f"goal: MFU >= {MFU_GOAL:.2f} for the compiled trainer: {mfu:.3f}, {verdict}"


def run_gpu(*, steps: int, batch: int, compile_mode: str | None, peak_tflops: float | None = None) -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        raise SystemExit(
            f"--gpu needs a CUDA GPU, and torch {torch.__version__} sees none here "
            f"(CUDA build: {torch.version.cuda or 'no'}); run the CPU benchmark without --gpu."
        )
    name = torch.cuda.get_device_name()
    peak = peak_tflops * 1e12 if peak_tflops is not None else pm.peak_flops_for(name)
    shown = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown: pass --peak-tflops"
    print(f"GPU: {name} (peak bf16 {shown}), torch {torch.__version__}")
    torch.backends.cuda.matmul.allow_tf32 = True
    context, vocab = 1024, 50304  # GPT-2's 50257, padded to a multiple of 64 as nanoGPT does
    corpus = RandomCorpus(vocab_size=vocab, n_tokens=steps * batch * context // 2 + 2 * context)
    ref = pm.build_model("gpt2", vocab_size=vocab, context=context, eos_id=0)
    rows = []
    for label, compiled in (("trainer, compiled", True), ("trainer, eager", False)):
        config = ProxyConfig(preset="gpt2", context=context, batch_size=batch, eval_tokens=context, device="cuda",
                             compile=compiled, compile_mode=compile_mode)
        t0 = time.perf_counter()
        tps, n, _ = ours(corpus, config, steps)
        mfu = pm.estimate_mfu(ref, tps, context=context, peak_flops=peak)
        rows.append({"run": label, "params": n, "tokens_per_s": tps, "mfu": mfu, "seconds": time.perf_counter() - t0})
        print(f"{label:20} {n / 1e6:6.1f}M {tps:12.0f} tok/s  MFU {format_mfu(mfu)}")
        sys.stdout.flush()
    config = ProxyConfig(preset="gpt2", context=context, batch_size=batch, eval_tokens=context, device="cuda",
                         compile_mode=compile_mode)
    t0 = time.perf_counter()
    tps, n = plain_loop(corpus, config, steps, torch.device("cuda"), compile=True)
    mfu = pm.estimate_mfu(ref, tps, context=context, peak_flops=peak)
    rows.append({"run": "plain GPT, compiled", "params": n, "tokens_per_s": tps, "mfu": mfu,
                 "seconds": time.perf_counter() - t0})
    print(f"{'plain GPT, compiled':20} {n / 1e6:6.1f}M {tps:12.0f} tok/s  MFU {format_mfu(mfu)}")
    print(goal_line(rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="measure MFU of the 124M preset on CUDA")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (micro preset)")
    p.add_argument("--presets", nargs="+", default=list(pm.CPU_PRESETS))
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per measurement")
    p.add_argument("--batch", type=int, default=None, help="sequences per step")
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--compile-mode", default=None)
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="--gpu: the GPU's dense bf16 peak in TFLOP/s, for a GPU not in PEAK_BF16_FLOPS")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.peak_tflops is not None and not (math.isfinite(args.peak_tflops) and args.peak_tflops > 0):
        p.error(f"--peak-tflops must be a positive number, got {args.peak_tflops}")
    t0 = time.perf_counter()
    if args.gpu:
        rows = run_gpu(steps=args.steps or 60, batch=args.batch or 32, compile_mode=args.compile_mode,
                       peak_tflops=args.peak_tflops)
    elif args.quick:
        rows = run_cpu(["micro"], steps=args.steps or 8, batch=args.batch or 8, context=64, vocab=512,
                       threads=args.threads, repeats=1)
    else:
        rows = run_cpu(args.presets, steps=args.steps or 40, batch=args.batch or 32, context=args.context,
                       vocab=args.vocab, threads=args.threads, repeats=args.repeats)
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, "rows": rows}, f, indent=2, default=float)
    bad = [r for r in rows if "ratio" in r and not math.isfinite(r["ratio"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
