"""GPT-2 proxy models built from transformers' ``GPT2Config`` (no download, random init).

The presets fix the shape (layers, width, heads); the vocabulary and context come from the
corpus and the training config, so the parameter count depends on them. With a vocabulary of
8192 and a context of 128 tokens:

=========  ========  =====  =====  ==========
preset     layers    width  heads  parameters
=========  ========  =====  =====  ==========
micro      2         32     2      0.29M
mini       2         64     2      0.63M
tiny       2         128    4      1.46M
small      4         256    4      5.29M
medium     6         384    6      13.8M
base       8         512    8      29.5M
gpt2       12        768    12     91.4M (124M with GPT-2's 50257-token vocabulary, context 1024)
=========  ========  =====  =====  ==========

``micro``, ``mini``, ``tiny`` and ``small`` are CPU-sized; the rest want a GPU.

torch and transformers are imported inside the functions, so :data:`PRESETS` is cheap to read.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from typing import Any
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel


@dataclasses.dataclass(frozen=True)
class Preset:
    """The shape of a GPT-2 proxy.

    Attributes:
        n_layer: Transformer blocks.
        n_embd: Residual width.
        n_head: Attention heads (``n_embd`` must be divisible by it).
        lr: Default peak AdamW learning rate for short proxy runs (smaller models take larger ones).
    """

    n_layer: int
    n_embd: int
    n_head: int
    lr: float


PRESETS: Mapping[str, Preset] = {
    "micro": Preset(n_layer=2, n_embd=32, n_head=2, lr=1e-2),
    # The demo's proxy: about as fast as micro on a CPU (the LM head dominates both), but it keeps
    # learning for longer, so DDO perturbation effects stand clear of the seed noise.
    "mini": Preset(n_layer=2, n_embd=64, n_head=2, lr=5e-3),
    "tiny": Preset(n_layer=2, n_embd=128, n_head=4, lr=3e-3),
    "small": Preset(n_layer=4, n_embd=256, n_head=4, lr=2e-3),
    "medium": Preset(n_layer=6, n_embd=384, n_head=6, lr=1e-3),
    "base": Preset(n_layer=8, n_embd=512, n_head=8, lr=8e-4),
    "gpt2": Preset(n_layer=12, n_embd=768, n_head=12, lr=6e-4),
}
"""Preset name -> shape. See the module docstring for parameter counts."""

CPU_PRESETS: tuple[str, ...] = ("micro", "mini", "tiny", "small")
"""Presets small enough to train on a laptop CPU."""

# Peak dense bf16 tensor-core FLOP/s by GPU name fragment (vendor datasheets, SXM parts).
PEAK_BF16_FLOPS: Mapping[str, float] = {
    "H200": 989.4e12,
    "H100": 989.4e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "RTX 4090": 165.2e12,
    "V100": 125e12,
}
"""Peak bf16 (fp16 on V100) dense FLOP/s used by :func:`estimate_mfu` when given a GPU name."""


def get_preset(name: str) -> Preset:
    """Look up a preset by name.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown proxy preset {name!r}; choose one of {sorted(PRESETS)} "
            f"(CPU-sized: {list(CPU_PRESETS)})."
        ) from None


def build_config(
    preset: str,
    *,
    vocab_size: int,
    context: int,
    eos_id: int,
    dropout: float = 0.0,
) -> Any:
    """The ``transformers.GPT2Config`` of a preset.

    Args:
        preset: A name in :data:`PRESETS`.
        vocab_size: Tokenizer vocabulary size.
        context: Maximum sequence length in tokens (``n_positions``).
        eos_id: The end-of-text token id, used as both bos and eos.
        dropout: Residual, embedding and attention dropout.

    Returns:
        A ``GPT2Config`` using SDPA attention and no KV cache.

    Raises:
        ValueError: for an unknown preset or a non-positive size.
    """
    from transformers import GPT2Config

    shape = get_preset(preset)
    if int(vocab_size) < 2:
        raise ValueError(f"vocab_size must be at least 2, got {vocab_size!r}.")
    if int(context) < 1:
        raise ValueError(f"context must be a positive number of tokens, got {context!r}.")
    if not 0 <= int(eos_id) < int(vocab_size):
        raise ValueError(f"eos_id {eos_id!r} is outside the vocabulary [0, {vocab_size}).")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}.")
    return GPT2Config(
        vocab_size=int(vocab_size),
        n_positions=int(context),
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        resid_pdrop=float(dropout),
        embd_pdrop=float(dropout),
        attn_pdrop=float(dropout),
        bos_token_id=int(eos_id),
        eos_token_id=int(eos_id),
        use_cache=False,
        tie_word_embeddings=True,
        # GPT-2's tanh GELU as one fused PyTorch op (transformers' "gelu_new" is the same function as
        # five elementwise ops).
        activation_function="gelu_pytorch_tanh",
        attn_implementation="sdpa",
    )


def build_model(
    preset: str,
    *,
    vocab_size: int,
    context: int,
    eos_id: int,
    dropout: float = 0.0,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 proxy (``GPT2LMHeadModel``), built without any download.

    Seed torch (``torch.manual_seed``) before calling for a reproducible init.

    Args:
        preset: A name in :data:`PRESETS`.
        vocab_size: Tokenizer vocabulary size.
        context: Maximum sequence length in tokens.
        eos_id: The end-of-text token id (bos = eos).
        dropout: Dropout probability (0 for the short proxy runs).

    Returns:
        The model, in training mode, on the CPU, in float32.

    Example:
        .. code-block:: python

            from optuna_autoscale.proxy.model import build_model, count_parameters

            model = build_model("tiny", vocab_size=8192, context=128, eos_id=0)
            assert count_parameters(model) == 1_461_760
    """
    from transformers import GPT2LMHeadModel

    config = build_config(preset, vocab_size=vocab_size, context=context, eos_id=eos_id, dropout=dropout)
    model = GPT2LMHeadModel(config)
    model.train()
    return model


def count_parameters(model: torch.nn.Module, *, non_embedding: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once).

    Args:
        model: Any torch module.
        non_embedding: Subtract the position embeddings, as nanoGPT does for its FLOP count (the
            token embedding stays: it is also the output projection).
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    if non_embedding:
        wpe = getattr(getattr(model, "transformer", None), "wpe", None)
        if wpe is not None:
            total -= wpe.weight.numel()
    return total


def preset_parameters(preset: str, *, vocab_size: int, context: int) -> int:
    """Parameter count of a preset without building it (closed form for tied-embedding GPT-2).

    Example:
        .. code-block:: python

            from optuna_autoscale.proxy.model import preset_parameters

            assert preset_parameters("small", vocab_size=8192, context=128) == 5_289_472
            assert round(preset_parameters("gpt2", vocab_size=50257, context=1024) / 1e6) == 124
    """
    s = get_preset(preset)
    d = s.n_embd
    per_block = 12 * d * d + 13 * d  # qkv + proj + 2 MLP matrices, their biases, 2 LayerNorms
    return vocab_size * d + context * d + s.n_layer * per_block + 2 * d


def flops_per_token(model: torch.nn.Module, context: int) -> float:
    """Training FLOPs per token (forward + backward), as in nanoGPT / the PaLM paper appendix B.

    ``6 N + 12 L H Q T`` with ``N`` the non-embedding parameters, ``L`` layers, ``H`` heads, ``Q``
    the head dimension and ``T`` the context.
    """
    cfg = model.config
    n = count_parameters(model, non_embedding=True)
    head_dim = cfg.n_embd // cfg.n_head
    return 6.0 * n + 12.0 * cfg.n_layer * cfg.n_head * head_dim * context


def peak_flops_for(device_name: str) -> float | None:
    """Peak bf16 FLOP/s of a GPU from its name (``torch.cuda.get_device_name()``), if known."""
    for key, flops in PEAK_BF16_FLOPS.items():
        if key.lower() in device_name.lower():
            return flops
    return None


def estimate_mfu(
    model: torch.nn.Module,
    tokens_per_second: float,
    *,
    context: int,
    peak_flops: float | None = None,
    device_name: str | None = None,
) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the hardware's peak (nanoGPT).

    Args:
        model: A GPT-2 model (``model.config`` has ``n_layer``, ``n_head``, ``n_embd``).
        tokens_per_second: Training throughput in tokens/s (all processes together, if ``peak_flops``
            is the total of all devices).
        context: Sequence length in tokens the throughput was measured at.
        peak_flops: Peak FLOP/s of the hardware. Default: looked up from ``device_name`` in
            :data:`PEAK_BF16_FLOPS`.
        device_name: GPU name, e.g. ``"NVIDIA H200"``.

    Returns:
        The MFU in ``[0, 1]`` (a fraction), or ``None`` if the peak is unknown (e.g. on a CPU).

    Example:
        .. code-block:: python

            from optuna_autoscale.proxy.model import build_model, estimate_mfu

            model = build_model("tiny", vocab_size=8192, context=128, eos_id=0)
            mfu = estimate_mfu(model, 1e6, context=128, peak_flops=1e14)  # 1M tokens/s on 100 TFLOP/s
            assert 0 < mfu < 1
    """
    if peak_flops is None and device_name is not None:
        peak_flops = peak_flops_for(device_name)
    if peak_flops is None:
        return None
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops!r}.")
    return flops_per_token(model, context) * float(tokens_per_second) / float(peak_flops)
