"""DoReMi (Xie et al. 2023, arXiv 2305.10429) on the project's GPT-2 proxy trainer.

1. **Reference model.** Train a proxy on the reference weights (natural shares by default).
2. **Group DRO proxy.** Train a second proxy of the same size on the same data stream. At each
   optimizer step:

   - per-token excess loss ``max(proxy - reference, 0)`` (the reference forward runs without
     gradients);
   - per domain, its mean over that domain's tokens in the batch; a domain absent from the
     batch keeps its previous value (0 before its first appearance);
   - exponentiated-gradient step in log space ``log a <- log a + eta * lambda``, then softmax,
     then smoothing ``a <- (1 - c) a + c / m`` (``eta = 1``, ``c = 1e-3``) — :func:`doremi_step`;
   - the proxy's training loss weights each token by ``a[domain] / p[domain]`` (``p`` the
     sampling shares), normalised over the batch.

3. **Output.** The **average** of ``a`` over all steps (not its last value).
4. Optionally iterate: the next round's reference weights are this round's output.

The data schedule (which sequences, in which order), the model presets, the learning-rate
schedule and the optimizer are those of :func:`optuna_autoscale.proxy.train_proxy`, reused from
:mod:`optuna_autoscale.proxy.train`.

**Search compute** is counted in *tokens x parameters* of training: per round, the reference
training (``N P``), the proxy training (``N P``) and the reference forward pass on every proxy
batch (``N P / 3``: a forward pass is about a third of a training step's FLOPs). The 6 FLOPs per
token-parameter factor is common to every method and left out.

Differences from the authors' code (sangmichaelxie/doremi, ``doremiv1``), all deliberate:
the proxy's sampling shares and initial ``a`` default to the reference weights (theirs: the
config's training weights, uniform in the paper's runs); a domain's score before its first
appearance is 0 (theirs: ``log |V|``, which pushes weight toward a domain merely absent from
the first batch).
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import math
import time
from typing import Any

import numpy as np

from optuna_autoscale.baselines.simple import _positive_shares
from optuna_autoscale.mixture import Mixture
from optuna_autoscale.mixture import validate_domains


__all__ = ["DoReMiResult", "doremi_step", "run_doremi"]

REFERENCE_FORWARD_COST = 1.0 / 3.0
"""A forward pass's share of a training step's FLOPs (forward 2, backward 4 per token-parameter)."""


def doremi_step(
    weights: Any,
    excess: Any,
    *,
    present: Any = None,
    previous: Any = None,
    eta: float = 1.0,
    smoothing: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """One DoReMi domain-weight update (pure; numpy).

    Args:
        weights: Current domain weights ``a`` (positive, summing to 1), shape ``(m,)``.
        excess: Per-domain mean clipped excess loss ``lambda`` of this batch (nats/token),
            shape ``(m,)``; entries of absent domains are ignored.
        present: Boolean mask of domains present in the batch (default: all).
        previous: Previous per-domain scores, used for absent domains (default: zeros).
        eta: Step size of the exponentiated-gradient update.
        smoothing: Mixing weight ``c`` of the uniform distribution.

    Returns:
        ``(new_weights, scores)``: ``softmax(log a + eta * scores)`` smoothed toward uniform,
        and the scores used (``excess`` where present, ``previous`` elsewhere).

    Example:
        .. code-block:: python

            import numpy as np
            from optuna_autoscale.baselines import doremi_step

            a, s = doremi_step([0.5, 0.5], [1.0, 0.0], eta=1.0, smoothing=0.0)
            assert np.allclose(a, [np.e / (np.e + 1), 1 / (np.e + 1)])
    """
    a = np.asarray(weights, dtype=float)
    lam = np.asarray(excess, dtype=float)
    m = a.shape[0] if a.ndim == 1 else -1
    if a.ndim != 1 or m < 2 or lam.shape != (m,):
        raise ValueError(f"weights and excess must be vectors of the same length >= 2; got {a.shape}, {lam.shape}.")
    if not np.all(np.isfinite(a)) or np.any(a <= 0) or abs(a.sum() - 1.0) > 1e-6:
        raise ValueError("weights must be positive and sum to 1 (smoothing > 0 keeps them positive).")
    mask = np.ones(m, dtype=bool) if present is None else np.asarray(present, dtype=bool)
    prev = np.zeros(m) if previous is None else np.asarray(previous, dtype=float)
    if mask.shape != (m,) or prev.shape != (m,):
        raise ValueError("present and previous must have one entry per domain.")
    if not (math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be finite and >= 0, got {eta!r}.")
    if not (0.0 <= smoothing <= 1.0):
        raise ValueError(f"smoothing must lie in [0, 1], got {smoothing!r}.")
    scores = np.where(mask, lam, prev)
    if not np.all(np.isfinite(scores)):
        raise ValueError("excess / previous scores must be finite.")
    z = np.log(a) + eta * scores
    z = z - z.max()
    new = np.exp(z)
    new = new / new.sum()
    new = (1.0 - smoothing) * new + smoothing / m
    return new, scores


@dataclasses.dataclass(frozen=True)
class DoReMiResult:
    """What a DoReMi run produced.

    Attributes:
        weights: The output mixture weights: the average of ``a`` over all steps of the last
            round.
        final_weights: ``a`` after the last step of the last round.
        rounds: Per round, the average weights it produced (``rounds[-1] == weights``).
        reference_weights: Per round, the reference weights it trained the reference on.
        history: ``a`` after each step of the last round, shape ``(steps, m)``.
        scores: The per-domain scores (clipped excess loss, nats/token) after the last step.
        tokens: Training tokens of each model (tokens).
        n_params: Parameters of each proxy.
        compute: Search compute in tokens x parameters: ``reference_train``, ``proxy_train``,
            ``reference_forward`` (all rounds together) and ``total``.
        steps: Optimizer steps per model.
        seconds: Wall-clock seconds.
    """

    weights: dict[str, float]
    final_weights: dict[str, float]
    rounds: list[dict[str, float]]
    reference_weights: list[dict[str, float]]
    history: np.ndarray
    scores: dict[str, float]
    tokens: int
    n_params: int
    compute: dict[str, float]
    steps: int
    seconds: float

    def mixture(self, tokens: float) -> Mixture:
        """The output weights at a training budget (tokens)."""
        return Mixture.normalised(self.weights, tokens)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the history is left out)."""
        return {
            "weights": dict(self.weights),
            "final_weights": dict(self.final_weights),
            "rounds": [dict(r) for r in self.rounds],
            "reference_weights": [dict(r) for r in self.reference_weights],
            "scores": dict(self.scores),
            "tokens": self.tokens,
            "n_params": self.n_params,
            "compute": dict(self.compute),
            "steps": self.steps,
            "seconds": self.seconds,
        }


def _natural_weights(corpus: Any, domains: tuple[str, ...]) -> dict[str, float]:
    counts = {d: float(len(corpus.train_tokens(d))) for d in domains}
    total = sum(counts.values())
    if total <= 0:
        raise ValueError("The corpus has no training tokens.")
    return {d: c / total for d, c in counts.items()}


def run_doremi(
    corpus: Any,
    tokens: float,
    config: Any = None,
    *,
    domains: tuple[str, ...] | list[str] | None = None,
    reference_weights: Mapping[str, float] | None = None,
    eta: float = 1.0,
    smoothing: float = 1e-3,
    rounds: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> DoReMiResult:
    """Run DoReMi (optionally iterated) with GPT-2 proxies; see the module docstring.

    Args:
        corpus: A tokenised corpus (:class:`~optuna_autoscale.proxy.train.CorpusLike`).
        tokens: Training tokens of each of the two models per round (tokens).
        config: A :class:`~optuna_autoscale.proxy.ProxyConfig` (model preset, context, batch,
            optimizer, device); default ``ProxyConfig()``.
        domains: Domains to mix (default: all of the corpus's).
        reference_weights: Weights of the first reference model (default: natural shares,
            proportional to each domain's training tokens).
        eta: Step size of the domain-weight update.
        smoothing: Uniform smoothing ``c`` of the domain weights.
        rounds: DoReMi rounds (> 1: iterated DoReMi).
        seed: Seed of model init and data order (shared by reference and proxy).
        progress: Show progress bars.

    Returns:
        A :class:`DoReMiResult`; ``result.weights`` is the mixture to train on.

    Example:
        .. code-block:: python

            import dataclasses
            import numpy as np
            from optuna_autoscale.baselines import run_doremi
            from optuna_autoscale.proxy import ProxyConfig

            @dataclasses.dataclass
            class ArrayCorpus:
                data: dict
                vocab_size: int = 64
                eos_id: int = 0

                @property
                def domains(self):
                    return tuple(self.data)

                def train_tokens(self, d):
                    return self.data[d]

                def val_tokens(self, d):
                    return self.data[d][:1000]

            rng = np.random.default_rng(0)
            corpus = ArrayCorpus({"noise": rng.integers(0, 64, 8000), "zeros": np.zeros(8000, dtype=np.int64)})
            config = ProxyConfig(preset="micro", context=32, batch_size=8, eval_tokens=256)
            result = run_doremi(corpus, 4096, config)
            assert abs(sum(result.weights.values()) - 1) < 1e-9
    """
    import torch
    import torch.nn.functional as F

    from optuna_autoscale.proxy import model as proxy_model
    from optuna_autoscale.proxy import train as proxy_train

    t_start = time.perf_counter()
    config = proxy_train.ProxyConfig() if config is None else config
    if not isinstance(config, proxy_train.ProxyConfig):
        raise TypeError(f"config must be a ProxyConfig, got {type(config).__name__}.")
    doms = validate_domains(corpus.domains if domains is None else domains)
    proxy_train.check_domains(corpus, doms, what="domains")
    budget = Mixture.uniform(doms, tokens).tokens
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}.")
    if not (math.isfinite(eta) and eta >= 0) or not (0.0 < smoothing <= 1.0):
        raise ValueError("Need eta >= 0 and 0 < smoothing <= 1 (smoothing keeps every weight positive).")
    ref = _positive_shares(
        reference_weights if reference_weights is not None else _natural_weights(corpus, doms),
        doms,
        "reference_weights",
        why=" (DoReMi divides by them)",
    )

    device = proxy_train.resolve_device(config.device, 0, 1)
    dtype = proxy_train.resolve_dtype(config.dtype, device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype != torch.float32
        else torch.autocast(device_type=device.type, enabled=False)
    )
    ctx, vocab, m = config.context, int(corpus.vocab_size), len(doms)
    arrays_cache: dict[str, Any] = {}

    def arrays_for(plan: Any) -> list[Any]:
        out = []
        for d in plan.domains:
            if d not in arrays_cache:
                arrays_cache[d] = corpus.train_tokens(d)
            out.append(arrays_cache[d])
        return out

    def plan_for(weights: np.ndarray) -> Any:
        mix = Mixture(dict(zip(doms, weights.tolist())), budget, seed)
        plan = proxy_train.plan_sequences(corpus, mix, context=ctx)
        if len(plan.rows) < config.batch_size:
            raise ValueError(
                f"{budget:.6g} tokens give {len(plan.rows)} sequences of {ctx} tokens, below one batch of "
                f"{config.batch_size}; raise tokens or lower batch_size."
            )
        return plan

    def train(plan: Any, reference: Any | None, a0: np.ndarray | None) -> tuple[Any, list[np.ndarray], np.ndarray, int]:
        model = proxy_train.build_proxy_model(corpus, config, seed=seed, device=device)
        optimizer = proxy_train.make_optimizer(model, config, device)
        arrays = arrays_for(plan)
        n_seq = len(plan.rows)
        steps = math.ceil(n_seq / config.batch_size)
        samp = np.array([plan.sequences[d] for d in doms], dtype=float)
        samp = samp / samp.sum()
        a = None if a0 is None else a0.copy()
        scores = np.zeros(m)
        history: list[np.ndarray] = []
        bar = proxy_train.progress_bar(steps, Mixture(dict(zip(doms, samp.tolist())), budget, seed), config,
                                        enabled=progress)
        for step in range(steps):
            proxy_train.set_lr(optimizer, step, steps, config)
            rows = plan.rows[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = proxy_train.get_batch(arrays, rows, ctx, vocab, device)  # (b, ctx) each
            dom_idx = torch.as_tensor(rows[:, 0], device=device)  # (b,)
            with autocast:
                logits = model(input_ids=x, use_cache=False).logits  # (b, ctx, V)
            pertoken = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1), reduction="none")
            pertoken = pertoken.view(y.shape)  # (b, ctx)
            if reference is None:
                loss = pertoken.mean()
            else:
                with torch.no_grad(), autocast:
                    ref_logits = reference(input_ids=x, use_cache=False).logits
                ref_pertoken = F.cross_entropy(
                    ref_logits.float().reshape(-1, vocab), y.reshape(-1), reduction="none"
                ).view(y.shape)
                excess = (pertoken.detach() - ref_pertoken).clamp(min=0.0).mean(dim=1)  # (b,) per sequence
                # Per-domain mean over tokens = mean over that domain's sequences (equal lengths).
                sums = torch.zeros(m, device=device, dtype=torch.float64).index_add_(0, dom_idx, excess.double())
                counts = torch.bincount(dom_idx, minlength=m).cpu().numpy()
                present = counts > 0
                lam = np.where(present, sums.cpu().numpy() / np.maximum(counts, 1), 0.0)
                assert a is not None
                a, scores = doremi_step(a, lam, present=present, previous=scores, eta=eta, smoothing=smoothing)
                history.append(a.copy())
                ratio = np.where(samp > 0, a / np.maximum(samp, 1e-300), 0.0)
                tok_w = torch.as_tensor(ratio, device=device, dtype=torch.float32)[dom_idx]  # (b,)
                loss = (pertoken.mean(dim=1) * tok_w).sum() / tok_w.sum()
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
        bar.close()
        model.eval()
        return model, history, scores, steps

    tokens_done: list[int] = []

    def run_rounds() -> DoReMiResult:
        round_out: list[dict[str, float]] = []
        round_ref: list[dict[str, float]] = []
        history: list[np.ndarray] = []
        scores = np.zeros(m)
        steps = 0
        n_params = 0
        ref_w = ref
        for _ in range(int(rounds)):
            plan = plan_for(ref_w)
            samp = np.array([plan.sequences[d] for d in doms], dtype=float)
            samp = samp / samp.sum()
            reference, _, _, steps = train(plan, None, None)
            tokens_done.append(int(len(plan.rows) * ctx))
            for p in reference.parameters():
                p.requires_grad_(False)
            n_params = proxy_model.count_parameters(reference)
            # a starts at the proxy's sampling shares, smoothed so that it is positive.
            a0 = (1.0 - smoothing) * samp + smoothing / m
            _, history, scores, _ = train(plan, reference, a0)
            avg = np.mean(np.stack(history), axis=0)
            avg = avg / avg.sum()
            round_ref.append(dict(zip(doms, ref_w.tolist())))
            round_out.append(dict(zip(doms, avg.tolist())))
            ref_w = avg
            del reference

        n_tok = tokens_done[-1]
        all_tokens = float(sum(tokens_done)) * float(n_params)
        compute = {
            "reference_train": all_tokens,
            "proxy_train": all_tokens,
            "reference_forward": all_tokens * REFERENCE_FORWARD_COST,
        }
        compute["total"] = sum(compute.values())
        hist = np.stack(history) if history else np.zeros((0, m))
        return DoReMiResult(
            weights=round_out[-1],
            final_weights=dict(zip(doms, hist[-1].tolist())) if len(hist) else dict(round_out[-1]),
            rounds=round_out,
            reference_weights=round_ref,
            history=hist,
            scores=dict(zip(doms, scores.tolist())),
            tokens=n_tok,
            n_params=n_params,
            compute=compute,
            steps=steps,
            seconds=time.perf_counter() - t_start,
        )

    saved_threads = torch.get_num_threads()
    if config.num_threads is not None and device.type == "cpu":
        torch.set_num_threads(int(config.num_threads))
    try:
        return run_rounds()
    finally:
        torch.set_num_threads(saved_threads)
