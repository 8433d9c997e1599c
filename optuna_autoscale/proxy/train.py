"""Train a GPT-2 proxy on a data mixture and measure its validation loss per domain.

The whole recipe, nanoGPT style:

1. **Data plan.** Domain ``i`` contributes exactly ``round(w_i * N / context)`` training sequences
   of ``context`` tokens (``N`` = the mixture's budget in tokens; Python's ``round``, half to even).
   A domain's token array is cut into non-overlapping sequences; they are drawn without
   replacement within an epoch, each epoch a fresh permutation. Each domain draws from its own
   random stream (seeded by the mixture's seed and the domain's name), so a domain's sequences do
   not change when only another domain's weight does: DDO perturbation runs share their data with
   the base run. All sequences are then shuffled together, from the seed. Epochs are counted per
   domain, with a warning past ``max_epochs``.
2. **Model.** A GPT-2 preset from :mod:`optuna_autoscale.proxy.model`, initialised from the seed.
3. **Optimisation.** AdamW (weight decay on matrices only), linear warmup and cosine decay to
   ``min_lr_ratio * lr`` over this run's own steps, so every budget's run is annealed; gradient
   clipping. The last batch may be partial: every sequence of the plan is trained on exactly once.
4. **Evaluation.** The first ``eval_tokens // context`` sequences of each domain's validation
   split, the same for every mixture; the loss is the mean cross-entropy in nats per token.

CPU runs in float32. CUDA runs in bf16 autocast with fused AdamW and optional ``torch.compile``.
Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised once and kept, each
optimizer step's sequences are split across ranks, and the gradient is exactly the mean over
the global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import dataclasses
import math
import os
import threading
import time
from typing import Any
from typing import Protocol
from typing import TYPE_CHECKING
import warnings
import zlib

import numpy as np
import optuna
import torch
import torch.nn.functional as F

from optuna_autoscale._validation import check_int
from optuna_autoscale._validation import check_range
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.proxy import model as proxy_model


if TYPE_CHECKING:
    from numpy.typing import NDArray

    from optuna_autoscale.config import RunConfig


class CorpusLike(Protocol):
    """What :func:`train_proxy` needs from a corpus (:class:`~optuna_autoscale.proxy.corpus.Corpus` has it).

    Any object with these members works, e.g. a small dataclass holding numpy arrays.
    """

    @property
    def domains(self) -> tuple[str, ...]: ...  # noqa: D102

    @property
    def vocab_size(self) -> int: ...  # noqa: D102

    @property
    def eos_id(self) -> int: ...  # noqa: D102

    def train_tokens(self, domain: str) -> NDArray[Any]: ...  # noqa: D102

    def val_tokens(self, domain: str) -> NDArray[Any]: ...  # noqa: D102


_DTYPES = ("auto", "float32", "bfloat16")

# torch's default RNG and its intra-op thread count are process-wide. Under ``study.optimize(n_jobs=2)``
# two runs share them: one run's seeding could interleave with the other's init draws, and the first
# run to finish would restore the thread count under the other. The lock makes seed+init atomic; the
# counter keeps the requested thread count until the last concurrent run ends, so a run's numbers do
# not depend on what else runs in the process.
_INIT_LOCK = threading.Lock()
_THREADS_LOCK = threading.Lock()
_threads_users = 0
_threads_saved = 0


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Any:
    """Set torch's intra-op thread count for the block; restore it when no run needs it any more."""
    global _threads_users, _threads_saved
    if threads is None:
        yield
        return
    with _THREADS_LOCK:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
        _threads_users += 1
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


@dataclasses.dataclass
class ProxyConfig:
    """How to train a proxy. The mixture (weights, budget, seed) comes separately.

    Example:
        .. code-block:: python

            from optuna_autoscale.proxy import ProxyConfig

            config = ProxyConfig(preset="micro", batch_size=8, eval_tokens=1024)
            assert config.tokens_per_step == 8 * 128
    """

    preset: str = "tiny"
    """Model shape, a name in :data:`optuna_autoscale.proxy.model.PRESETS`."""
    context: int = 128
    """Sequence length in tokens."""
    batch_size: int = 32
    """Sequences per optimizer step, all processes together (``batch_size * context`` tokens)."""
    micro_batch_size: int | None = None
    """Sequences per forward pass per process (gradient accumulation); None: the whole local batch."""
    lr: float | None = None
    """Peak learning rate; None: the preset's default (``PRESETS[preset].lr``)."""
    min_lr_ratio: float = 0.1
    """The cosine decay ends at ``min_lr_ratio * lr`` on the run's last step."""
    warmup: float = 0.05
    """Fraction of the run's optimizer steps spent in linear warmup, in ``[0, 1)``."""
    weight_decay: float = 0.1
    """AdamW weight decay, applied to weight matrices and embeddings only."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Clip the gradient's global norm to this; 0 disables clipping."""
    dropout: float = 0.0
    """Dropout probability (0 suits short, under-one-epoch proxy runs)."""
    eval_tokens: int = 32768
    """Validation tokens per domain: the first ``eval_tokens // context`` validation sequences."""
    eval_batch_size: int | None = None
    """Sequences per evaluation forward pass; None: twice the micro batch."""
    eval_domains: tuple[str, ...] | None = None
    """Domains to evaluate; None: the mixture's domains. May include domains with no training weight."""
    eval_interval: int = 0
    """Optimizer steps between intermediate evaluations, reported with ``trial.report(value, step)``
    so that pruners work; 0 disables them. Off by default: Optuna's default MedianPruner would
    prune DDO perturbation runs, and AutoScale's design needs every one of them."""
    max_epochs: float | Mapping[str, float] = 4.0
    """Warn when a domain's training sequences are repeated more than this many epochs (half a
    sequence of rounding allowed): a number for every domain, or ``{domain: epochs}`` (domains
    not in it are not checked). ``optuna-autoscale run`` sets it from ``[design] max_epochs``,
    the same cap that bounds the sampler's allocations, so the two never disagree."""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:<i>"."""
    dtype: str = "auto"
    """"auto" (bf16 autocast on CUDA, float32 on CPU), "float32" or "bfloat16"."""
    compile: bool = False
    """``torch.compile`` the model and its loss (worth it on CUDA for runs of more than a few hundred steps)."""
    compile_mode: str | None = None
    """``torch.compile`` mode, e.g. "max-autotune"; None: the default."""
    num_threads: int | None = None
    """CPU threads for torch during the run (restored after); None: torch's default, split
    between the local ranks under ``torchrun``."""

    def __post_init__(self) -> None:
        proxy_model.get_preset(self.preset)
        for name in ("context", "batch_size", "eval_tokens"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("micro_batch_size", "eval_batch_size", "num_threads"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, minimum=1)
        check_int(self.eval_interval, "eval_interval", minimum=0)
        if self.eval_tokens < self.context:
            raise ValueError(
                f"eval_tokens ({self.eval_tokens}) must be at least one sequence of context={self.context} tokens."
            )
        if self.lr is not None:
            check_range(self.lr, "lr", low=0.0, low_open=True)
        check_range(self.min_lr_ratio, "min_lr_ratio", low=0.0, high=1.0)
        check_range(self.warmup, "warmup", low=0.0, high=1.0, high_open=True)
        check_range(self.weight_decay, "weight_decay", low=0.0)
        check_range(self.grad_clip, "grad_clip", low=0.0)
        check_range(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        if isinstance(self.max_epochs, Mapping):
            caps = {}
            for d, e in self.max_epochs.items():
                if not isinstance(d, str) or not d:
                    raise ValueError(f"max_epochs keys must be domain names, got {d!r}.")
                check_range(e, f"max_epochs[{d!r}]", low=0.0, low_open=True)
                caps[d] = float(e)
            self.max_epochs = caps
        else:
            check_range(self.max_epochs, "max_epochs", low=0.0, low_open=True)
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}.")
        self.betas = (float(betas[0]), float(betas[1]))
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}.")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
        ):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:<i>' or 'mps', got {self.device!r}.")
        if self.eval_domains is not None:
            if isinstance(self.eval_domains, str):
                raise ValueError(f"eval_domains must be a sequence of names; wrap it: [{self.eval_domains!r}].")
            self.eval_domains = tuple(self.eval_domains)
            if not self.eval_domains or len(set(self.eval_domains)) != len(self.eval_domains):
                raise ValueError(f"eval_domains must be non-empty and unique, got {list(self.eval_domains)!r}.")

    @property
    def peak_lr(self) -> float:
        """The peak learning rate in effect (``lr`` or the preset's default)."""
        return float(self.lr) if self.lr is not None else proxy_model.get_preset(self.preset).lr

    def epoch_limit(self, domain: str) -> float | None:
        """The ``max_epochs`` of ``domain`` (None: not checked)."""
        if isinstance(self.max_epochs, Mapping):
            return self.max_epochs.get(domain)
        return float(self.max_epochs)

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per optimizer step (``batch_size * context``)."""
        return self.batch_size * self.context

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        if self.eval_domains is not None:
            d["eval_domains"] = list(self.eval_domains)
        return d


@dataclasses.dataclass
class ProxyResult:
    """What a proxy run measured.

    Attributes:
        losses: Domain -> validation loss (mean cross-entropy, nats per token).
        mean_loss: Unweighted mean of ``losses``.
        tokens_seen: Training tokens (predicted positions), all processes together.
        seconds: Wall-clock seconds of the whole call (model build, training and evaluation).
        train_seconds: Seconds spent in training steps (intermediate evaluations excluded).
        tokens_per_second: ``tokens_seen / train_seconds``.
        steady_tokens_per_second: Training throughput after the first ``min(5, steps // 4)`` steps
            (compilation and allocator warm-up excluded); MFU uses it.
        sequences: Domain -> training sequences drawn (exactly ``round(w * N / context)``).
        epochs: Domain -> passes over its unique training sequences.
        steps: Optimizer steps.
        n_params: Model parameters.
        train_loss: Training loss of the last optimizer step.
        mfu: Model FLOPs utilisation (steady state, per device) on a known GPU, else None.
        history: Intermediate evaluations: dicts with ``step``, ``tokens`` and ``mean_loss``.
    """

    losses: dict[str, float]
    mean_loss: float
    tokens_seen: int
    seconds: float
    train_seconds: float
    tokens_per_second: float
    steady_tokens_per_second: float
    sequences: dict[str, int]
    epochs: dict[str, float]
    steps: int
    n_params: int
    train_loss: float
    mfu: float | None = None
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)

    @property
    def perplexities(self) -> dict[str, float]:
        """Domain -> validation perplexity ``exp(loss)``."""
        return {d: _safe_exp(v) for d, v in self.losses.items()}

    @property
    def mean_ppl(self) -> float:
        """Mean of the per-domain perplexities (the AutoScale paper's objective)."""
        return float(np.mean(list(self.perplexities.values())))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["perplexities"] = self.perplexities
        d["mean_ppl"] = self.mean_ppl
        return d


# --------------------------------------------------------------------------------------------
# data plan


@dataclasses.dataclass(frozen=True)
class DataPlan:
    """Which training sequences a run sees, in order.

    Attributes:
        domains: The mixture's domains; ``rows[:, 0]`` indexes them.
        rows: ``(S, 2)`` int64 array of (domain index, start offset in the domain's train tokens).
        sequences: Domain -> sequences drawn.
        available: Domain -> unique non-overlapping sequences in its training tokens.
        epochs: Domain -> ``sequences / available``.
    """

    domains: tuple[str, ...]
    rows: NDArray[np.int64]
    sequences: dict[str, int]
    available: dict[str, int]
    epochs: dict[str, float]


def proxy_config_from(config: RunConfig) -> ProxyConfig:
    """The :class:`ProxyConfig` of a run config's ``[proxy]`` table.

    ``[design] max_epochs``, when set, is the trainer's ``max_epochs`` too: the cap that
    bounds the sampler's allocations is the repetition limit the trainer warns at.

    Raises:
        ConfigError: for a bad ``[proxy]`` value, naming the file and key.
    """
    from optuna_autoscale.config import ConfigError

    kwargs = dict(config.proxy)
    caps = config.design.max_epochs
    if caps is not None:
        kwargs["max_epochs"] = dict(caps) if isinstance(caps, Mapping) else caps
    try:
        return ProxyConfig(**kwargs)
    except (TypeError, ValueError) as e:
        msg = str(e)
        key = next((k for k in config.proxy if k in msg), "(table)")
        raise ConfigError(f"proxy.{key}", msg, file=config.path) from None


def plan_sequences(corpus: CorpusLike, mixture: Mixture, *, context: int) -> DataPlan:
    """Draw the training sequences of a run (see the module docstring).

    Args:
        corpus: The corpus.
        mixture: Weights, budget in tokens, and seed.
        context: Sequence length in tokens.

    Raises:
        ValueError: if a domain is not in the corpus, or has too few tokens for one sequence.
    """
    check_domains(corpus, mixture.domains, what="mixture")
    rows: list[NDArray[np.int64]] = []
    sequences: dict[str, int] = {}
    available: dict[str, int] = {}
    epochs: dict[str, float] = {}
    for i, d in enumerate(mixture.domains):
        n = int(round(mixture.weights[d] * mixture.tokens / context))
        avail = (len(corpus.train_tokens(d)) - 1) // context  # need context + 1 tokens for (x, y)
        sequences[d], available[d] = n, avail
        if n == 0:
            epochs[d] = 0.0
            continue
        if avail < 1:
            raise ValueError(
                f"Domain {d!r} has {len(corpus.train_tokens(d))} training tokens, fewer than one sequence of "
                f"{context + 1}; give it weight 0, add data, or lower context."
            )
        epochs[d] = n / avail
        # The domain's own stream: its draws do not depend on the other domains' weights.
        rng = np.random.default_rng([mixture.seed, zlib.crc32(d.encode())])
        n_epochs = math.ceil(n / avail)
        idx = np.concatenate([rng.permutation(avail) for _ in range(n_epochs)])[:n]
        rows.append(np.stack([np.full(n, i, dtype=np.int64), idx.astype(np.int64) * context], axis=1))
    all_rows = np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)
    order = np.random.default_rng([mixture.seed, 0x5EED]).permutation(len(all_rows))
    return DataPlan(tuple(mixture.domains), all_rows[order], sequences, available, epochs)


# --------------------------------------------------------------------------------------------
# training


def train_proxy(
    corpus: CorpusLike,
    mixture: Mixture,
    config: ProxyConfig | None = None,
    *,
    trial: optuna.trial.BaseTrial | None = None,
    progress: bool | None = True,
    metric: Callable[[Mapping[str, float]], float] | None = None,
) -> ProxyResult:
    """Train a GPT-2 proxy on ``mixture`` and evaluate it on every domain.

    Args:
        corpus: Tokenised multi-domain corpus (see :class:`CorpusLike`).
        mixture: Domain weights, the budget in training tokens, and the seed (model init and data
            order). The same seed gives the same losses on the CPU.
        config: Training configuration; default :class:`ProxyConfig()`.
        trial: If given and ``config.eval_interval > 0``, intermediate validation values are
            reported with ``trial.report(value, step)`` (``step`` = optimizer step), and
            :class:`optuna.TrialPruned` is raised when ``trial.should_prune()``. Under ``torchrun``
            pass it on rank 0 only.
        progress: Show a tqdm progress bar (rank 0 only); None: only when stderr is a terminal
            (tqdm's ``disable=None``).
        metric: Maps per-domain losses to the reported value; default: their mean.

    Returns:
        The :class:`ProxyResult`.

    Raises:
        ValueError: for a domain missing from the corpus, a budget below one batch, or a token id
            outside the vocabulary.
        optuna.TrialPruned: when the trial's pruner says so.

    Example:
        .. code-block:: python

            import dataclasses
            import numpy as np
            from optuna_autoscale.mixture import Mixture
            from optuna_autoscale.proxy import ProxyConfig, train_proxy

            @dataclasses.dataclass
            class ArrayCorpus:
                data: dict
                vocab_size: int = 64
                eos_id: int = 0

                @property
                def domains(self):
                    return tuple(self.data)

                def train_tokens(self, d):
                    return self.data[d][:-2000]

                def val_tokens(self, d):
                    return self.data[d][-2000:]

            rng = np.random.default_rng(0)
            corpus = ArrayCorpus({d: rng.integers(0, 64, 20_000) for d in ("a", "b")})
            config = ProxyConfig(preset="micro", context=32, batch_size=8, eval_tokens=512)
            result = train_proxy(corpus, Mixture({"a": 0.5, "b": 0.5}, tokens=8192), config, progress=False)
            assert result.sequences == {"a": 128, "b": 128}
    """
    t_start = time.perf_counter()
    config = ProxyConfig() if config is None else config
    if not isinstance(config, ProxyConfig):
        raise TypeError(f"config must be a ProxyConfig, got {type(config).__name__}.")
    if not isinstance(mixture, Mixture):
        raise TypeError(f"mixture must be an optuna_autoscale.Mixture, got {type(mixture).__name__}.")
    metric = _mean if metric is None else metric
    ctx = config.context
    check_domains(corpus, mixture.domains, what="mixture")
    eval_domains = config.eval_domains if config.eval_domains is not None else tuple(mixture.domains)
    check_domains(corpus, eval_domains, what="eval_domains")

    rank, local_rank, world = _setup_distributed(config)
    device = resolve_device(config.device, local_rank, world)
    dtype = resolve_dtype(config.dtype, device)

    # ---- data
    plan = plan_sequences(corpus, mixture, context=ctx)
    n_seq = len(plan.rows)
    if n_seq < config.batch_size:
        raise ValueError(
            f"The budget of {mixture.tokens:.6g} tokens gives {n_seq} sequences of {ctx} tokens, below one batch "
            f"of batch_size={config.batch_size} ({config.tokens_per_step} tokens). Raise the budget or lower "
            "batch_size."
        )
    if config.batch_size < world:
        raise ValueError(f"batch_size={config.batch_size} is smaller than the {world} processes; raise it.")
    for d in plan.domains:
        cap = config.epoch_limit(d)
        # Half a sequence of slack: the plan rounds each domain's tokens to whole sequences.
        if cap is not None and plan.sequences[d] > cap * plan.available[d] + 0.5:
            warnings.warn(
                f"Domain {d!r} is repeated {plan.epochs[d]:.2f} epochs (> max_epochs={cap:g}): "
                f"{plan.sequences[d]} sequences of {ctx} tokens from {plan.available[d]} unique ones. Lower its "
                "weight or the budget, add data, or raise max_epochs.",
                UserWarning,
                stacklevel=2,
            )
    train_arrays = [corpus.train_tokens(d) for d in plan.domains]
    vocab = int(corpus.vocab_size)
    steps = math.ceil(n_seq / config.batch_size)

    threads = config.num_threads
    if threads is None and device.type == "cpu" and world > 1:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        threads = max(1, torch.get_num_threads() // local_world)
    with _torch_threads(threads):
        # ---- model and optimizer
        raw_model = build_proxy_model(corpus, config, seed=mixture.seed, device=device)
        n_params = proxy_model.count_parameters(raw_model)
        optimizer = make_optimizer(raw_model, config, device)
        loss_model = _LossModel(raw_model)  # model + loss, so that compile fuses the loss in
        core: Any = torch.compile(loss_model, mode=config.compile_mode) if config.compile else loss_model
        model: Any = core
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [device.index] if device.type == "cuda" else None
            model = DistributedDataParallel(core, device_ids=device_ids, broadcast_buffers=False)
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if dtype == torch.bfloat16
            else contextlib.nullcontext()
        )
        eval_sets = {d: _eval_starts(corpus, d, ctx, config.eval_tokens) for d in eval_domains}
        eval_bs = config.eval_batch_size or 2 * (config.micro_batch_size or max(1, config.batch_size // world))

        def evaluate() -> dict[str, float]:
            # Uncompiled and unwrapped: no recompilation for eval mode, no DDP collectives.
            return _evaluate(loss_model, corpus, eval_sets, ctx, eval_bs, vocab, device, autocast, rank, world)

        # ---- training loop
        history: list[dict[str, float]] = []
        tokens_seen = 0
        train_loss = float("nan")
        train_seconds = 0.0
        warm_steps = min(5, steps // 4)
        warm_seconds, warm_tokens = 0.0, 0
        bar = progress_bar(steps, mixture, config, enabled=progress if rank == 0 else False)
        t0 = time.perf_counter()
        for step in range(steps):
            lr = set_lr(optimizer, step, steps, config)
            rows = plan.rows[step * config.batch_size : (step + 1) * config.batch_size]
            step_tokens = len(rows) * ctx  # every rank's loss is divided by the global token count
            local = rows[rank::world]
            weight = 1.0
            if len(local) == 0:  # a short last step: keep this rank in the all-reduce, contribute nothing
                local, weight = rows[:1], 0.0
            micro = config.micro_batch_size or len(local)
            chunks = [local[i : i + micro] for i in range(0, len(local), micro)]
            loss_sum = torch.zeros((), device=device)
            for k, chunk in enumerate(chunks):
                x, y = get_batch(train_arrays, chunk, ctx, vocab, device)  # (b, ctx) each
                sync = world == 1 or k == len(chunks) - 1
                with contextlib.nullcontext() if sync else model.no_sync():
                    with autocast:
                        loss = model(x, y)  # summed cross-entropy over the b * ctx targets
                    (loss * (weight * world / step_tokens)).backward()  # DDP averages over ranks
                loss_sum += loss.detach() * weight
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens_seen += step_tokens
            if step + 1 == warm_steps:  # throughput after warm-up (compilation, allocator) excludes these
                _sync(device)
                warm_seconds, warm_tokens = train_seconds + time.perf_counter() - t0, tokens_seen

            if step % 10 == 0 or step == steps - 1:
                train_loss = _all_reduce_sum(loss_sum, world).item() / step_tokens
                bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", refresh=False)
                if not math.isfinite(train_loss):
                    warnings.warn(
                        f"Training loss became {train_loss} at step {step}; stopping this run early. Lower lr or "
                        "check the data.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    bar.update(1)
                    break
            bar.update(1)

            if config.eval_interval > 0 and (step + 1) % config.eval_interval == 0 and step + 1 < steps:
                _sync(device)
                train_seconds += time.perf_counter() - t0
                value = float(metric(evaluate()))
                history.append({"step": step + 1, "tokens": tokens_seen, "mean_loss": value})
                prune = False
                if trial is not None:
                    trial.report(value, step + 1)
                    prune = trial.should_prune()
                if _broadcast_flag(prune, device, world):
                    bar.close()
                    raise optuna.TrialPruned(f"Pruned at step {step + 1} of {steps} with value {value:.4f}.")
                t0 = time.perf_counter()
        _sync(device)
        train_seconds += time.perf_counter() - t0
        bar.close()

        losses = evaluate()

    tokens_per_second = tokens_seen / max(train_seconds, 1e-9)
    steady = (tokens_seen - warm_tokens) / max(train_seconds - warm_seconds, 1e-9)
    mfu = None
    if device.type == "cuda":
        mfu = proxy_model.estimate_mfu(
            raw_model, steady / world, context=ctx, device_name=torch.cuda.get_device_name(device)
        )
    return ProxyResult(
        losses=losses,
        mean_loss=_mean(losses),
        tokens_seen=tokens_seen,
        seconds=time.perf_counter() - t_start,
        train_seconds=train_seconds,
        tokens_per_second=tokens_per_second,
        steady_tokens_per_second=steady,
        sequences=dict(plan.sequences),
        epochs=dict(plan.epochs),
        steps=steps,
        n_params=n_params,
        train_loss=train_loss,
        mfu=mfu,
        history=history,
    )


class _LossModel(torch.nn.Module):
    """A causal LM and its loss in one module: (x, y) -> summed next-token cross-entropy."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.lm(input_ids=x, use_cache=False).logits  # (b, ctx, vocab)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="sum")


def build_proxy_model(
    corpus: CorpusLike, config: ProxyConfig, *, seed: int, device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """A freshly initialised GPT-2 proxy for ``corpus`` on ``device``, its init seeded by ``seed``.

    :func:`train_proxy` and DoReMi both build their models here, so one seed gives one init.

    Args:
        corpus: Supplies ``vocab_size`` and ``eos_id``.
        config: Supplies ``preset``, ``context`` (tokens) and ``dropout``.
        seed: Seed of the weight init (sets ``torch.manual_seed``).
        device: Where the model goes.

    Returns:
        The model (a ``transformers`` GPT-2 LM head model).

    Example:
        .. code-block:: python

            import dataclasses
            from optuna_autoscale.proxy import ProxyConfig
            from optuna_autoscale.proxy.train import build_proxy_model

            @dataclasses.dataclass
            class Vocab:
                vocab_size: int = 64
                eos_id: int = 0

            model = build_proxy_model(Vocab(), ProxyConfig(preset="micro", context=32), seed=0)
            assert model.config.n_positions >= 32
    """
    with _INIT_LOCK:  # seed + init atomically: another thread's run must not draw in between
        torch.manual_seed(seed)
        model = proxy_model.build_model(
            config.preset,
            vocab_size=int(corpus.vocab_size),
            context=config.context,
            eos_id=int(corpus.eos_id),
            dropout=config.dropout,
        )
    return model.to(device)


def set_lr(optimizer: torch.optim.Optimizer, step: int, steps: int, config: ProxyConfig) -> float:
    """Set the schedule's learning rate (:func:`_lr_at`) on every parameter group; return it."""
    lr = _lr_at(step, steps, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def make_optimizer(model: torch.nn.Module, config: ProxyConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on tensors of 2+ dims (matrices, embeddings), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.peak_lr, betas=config.betas, fused=fused)


def _lr_at(step: int, steps: int, config: ProxyConfig) -> float:
    """Linear warmup, then cosine decay reaching ``min_lr_ratio * lr`` on the last step."""
    peak = config.peak_lr
    warmup = round(config.warmup * steps)
    if step < warmup:
        return peak * (step + 1) / warmup
    min_lr = config.min_lr_ratio * peak
    span = steps - warmup - 1
    ratio = (step - warmup) / span if span > 0 else 1.0
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (peak - min_lr)


def get_batch(
    arrays: Sequence[NDArray[Any]], rows: NDArray[np.int64], ctx: int, vocab: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, (b, ctx) int64 each, for rows of (domain index, start)."""
    xy = np.stack([np.asarray(arrays[d][s : s + ctx + 1], dtype=np.int64) for d, s in rows])  # (b, ctx + 1)
    if xy.size and (xy.max() >= vocab or xy.min() < 0):
        raise ValueError(f"Token id {int(xy.max())} is outside the corpus vocabulary [0, {vocab}).")
    t = torch.from_numpy(xy)
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    return t[:, :-1], t[:, 1:]


def _eval_starts(corpus: CorpusLike, domain: str, ctx: int, eval_tokens: int) -> NDArray[np.int64]:
    """Starts of the first ``eval_tokens // ctx`` validation sequences: fixed, mixture-independent."""
    available = (len(corpus.val_tokens(domain)) - 1) // ctx
    if available < 1:
        raise ValueError(
            f"Domain {domain!r} has {len(corpus.val_tokens(domain))} validation tokens, fewer than one sequence of "
            f"{ctx + 1}; give it a larger validation split or lower context."
        )
    return np.arange(min(eval_tokens // ctx, available), dtype=np.int64) * ctx


@torch.no_grad()
def _evaluate(
    model: Any,
    corpus: CorpusLike,
    eval_sets: Mapping[str, NDArray[np.int64]],
    ctx: int,
    batch: int,
    vocab: int,
    device: torch.device,
    autocast: Any,
    rank: int,
    world: int,
) -> dict[str, float]:
    """Mean validation cross-entropy (nats/token) per domain; ranks split the sequences."""
    model.eval()
    out: dict[str, float] = {}
    for d, starts in eval_sets.items():
        arrays = [corpus.val_tokens(d)]
        mine = starts[rank::world]
        total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, tokens)
        for i in range(0, len(mine), batch):
            rows = np.stack([np.zeros(len(mine[i : i + batch]), dtype=np.int64), mine[i : i + batch]], axis=1)
            x, y = get_batch(arrays, rows, ctx, vocab, device)
            with autocast:
                total[0] += model(x, y).double()
            total[1] += y.numel()
        total = _all_reduce_sum(total, world)
        out[d] = float(total[0] / total[1])
    model.train()
    return out


# --------------------------------------------------------------------------------------------
# devices, processes, helpers


def _setup_distributed(config: ProxyConfig) -> tuple[int, int, int]:
    """(rank, local rank, world size); initialises the process group once under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        use_cuda = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size()


def resolve_device(name: str, local_rank: int, world: int) -> torch.device:
    """The device ``name`` ("auto", "cpu", "cuda", "cuda:N") names for this rank, checked to exist."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} was asked for but CUDA is not available; use device='cpu'.")
        if name == "cuda":
            name = f"cuda:{local_rank if world > 1 else torch.cuda.current_device()}"
        device = torch.device(name)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return device
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: bfloat16 where asked (or "auto" on a CUDA device that supports it), else float32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def _all_reduce_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _broadcast_flag(flag: bool, device: torch.device, world: int) -> bool:
    """Rank 0's decision, on every rank."""
    if world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def progress_bar(steps: int, mixture: Mixture, config: ProxyConfig, *, enabled: bool | None) -> Any:
    """A tqdm bar; ``enabled=None``: only on a terminal (tqdm's ``disable=None``)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=steps,
        desc=f"proxy {config.preset} {mixture.tokens / 1e6:.3g}M tok",
        unit="step",
        disable=None if enabled is None else not enabled,
        leave=False,
        dynamic_ncols=True,
    )


def check_domains(corpus: CorpusLike, domains: Sequence[str], *, what: str) -> None:
    """Raise a ``ValueError`` naming ``what`` if ``domains`` name one the corpus does not have."""
    known = tuple(corpus.domains)
    missing = [d for d in domains if d not in known]
    if missing:
        raise ValueError(
            f"Domain(s) {missing} of the {what} are not in the corpus, whose domains are {list(known)}. "
            "Rename them or rebuild the corpus with them."
        )


def _mean(losses: Mapping[str, float]) -> float:
    return float(np.mean(list(losses.values())))


def _safe_exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf
