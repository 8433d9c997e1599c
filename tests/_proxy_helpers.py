"""Helpers shared by the proxy-training tests (``test_train.py``, ``test_objective.py``; not a test module)."""

from __future__ import annotations

import dataclasses

import numpy as np


VOCAB = 64


@dataclasses.dataclass
class ArrayCorpus:
    """A tiny in-memory corpus with the Corpus duck type."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    vocab_size: int = VOCAB
    eos_id: int = 0

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.train)

    def train_tokens(self, domain: str) -> np.ndarray:
        return self.train[domain]

    def val_tokens(self, domain: str) -> np.ndarray:
        return self.val[domain]

    def unique_tokens(self) -> dict[str, int]:
        return {d: len(a) for d, a in self.train.items()}


def stride_corpus(*, n_train: int, n_val: int, domains: tuple[str, ...], seed: int) -> ArrayCorpus:
    """Each domain a learnable stride pattern with 10% random tokens (``n_train`` + ``n_val`` tokens)."""
    rng = np.random.default_rng(seed)
    train, val = {}, {}
    for i, d in enumerate(domains):
        n = n_train + n_val
        x = (np.arange(n) * (2 * i + 3) + i) % VOCAB
        noise = rng.random(n) < 0.1
        x[noise] = rng.integers(0, VOCAB, noise.sum())
        x = x.astype(np.uint16)
        train[d], val[d] = x[:n_train], x[n_train:]
    return ArrayCorpus(train, val)
