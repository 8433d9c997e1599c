"""The corpus's validation split by document hash and its byte-level BPE tokenizer."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from optuna_autoscale.proxy.corpus_cache import _TOKENIZER

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

#: The end-of-text special token of trained tokenizers (GPT-2's spelling).
EOS_TOKEN = "<|endoftext|>"

# --------------------------------------------------------------------------------------------------
# Validation split and tokenizer
# --------------------------------------------------------------------------------------------------


def _doc_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def is_validation_document(text: str, val_fraction: float) -> bool:
    """Whether a document belongs to the held-out validation split.

    The rule depends on the document's text only (a sha256 of it read as a number in [0, 1)), so the
    split is fixed: the same for every mixture, seed, budget and choice of other domains, and exact
    duplicates always fall on the same side.

    Example:
        >>> from optuna_autoscale.proxy.corpus import is_validation_document
        >>> is_validation_document("hello", 0.0), is_validation_document("hello", 1.0)
        (False, True)
    """
    u = int.from_bytes(_doc_hash(text)[:8], "big") / 2.0**64
    return u < val_fraction


def _split_documents(name: str, texts: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    train: list[str] = []
    val: list[str] = []
    for t in texts:
        (val if is_validation_document(t, val_fraction) else train).append(t)
    if val_fraction > 0 and not val:
        # Small domains: hold out the document with the smallest hash so validation is never empty.
        if len(texts) < 2:
            raise ValueError(
                f"Domain {name!r} has {len(texts)} document; it needs at least 2 to hold one out for "
                "validation (split text files by paragraph, or add documents)."
            )
        pick = min(range(len(texts)), key=lambda i: _doc_hash(texts[i]))
        val = [texts[pick]]
        train = [t for i, t in enumerate(texts) if i != pick]
    if not train:
        raise ValueError(
            f"Domain {name!r}: every one of its {len(texts)} documents fell into validation; lower "
            f"val_fraction (now {val_fraction}) or add documents."
        )
    return train, val


def _tokenizer_sample(texts: Sequence[str], max_chars: int) -> list[str]:
    out: list[str] = []
    used = 0
    for t in texts:
        if used >= max_chars:
            break
        piece = t[: max_chars - used]
        out.append(piece)
        used += len(piece)
    return out


def train_bpe_tokenizer(
    texts_by_domain: Mapping[str, Sequence[str]],
    *,
    vocab_size: int = 8192,
    sample_chars: int = 1_000_000,
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer (GPT-2 style) on an equal-size sample of every domain.

    Args:
        texts_by_domain: documents per domain (the training split).
        vocab_size: target vocabulary size, special token included (at least 257 + 1).
        sample_chars: characters taken from the start of each domain's documents.
        min_frequency: minimum pair frequency of a merge.

    Returns:
        A ``tokenizers.Tokenizer`` whose special token :data:`EOS_TOKEN` has id 0.

    Example:
        >>> from optuna_autoscale.proxy.corpus import train_bpe_tokenizer, EOS_TOKEN
        >>> tok = train_bpe_tokenizer({"a": ["hello world"] * 20}, vocab_size=300)
        >>> tok.token_to_id(EOS_TOKEN)
        0
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 258:
        raise ValueError(
            f"vocab_size must be an int >= 258 (256 bytes + end-of-text + one merge), got {vocab_size!r}."
        )
    if vocab_size > 2**32 - 1:
        raise ValueError(f"vocab_size must be below 2**32, got {vocab_size}.")
    if sample_chars < 1:
        raise ValueError(f"sample_chars must be positive, got {sample_chars}.")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    sample: list[str] = []
    for texts in texts_by_domain.values():
        sample.extend(_tokenizer_sample(texts, sample_chars))
    tok.train_from_iterator(sample, trainer=trainer, length=len(sample))
    return tok


def _load_tokenizer_file(path: str | os.PathLike[str]) -> tuple[Tokenizer, Path]:
    from tokenizers import Tokenizer

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / _TOKENIZER
    if not p.is_file():
        raise FileNotFoundError(
            f"No tokenizer at {os.fspath(path)!r}: pass tokenizer='bpe' to train one, or the path of a "
            "tokenizer.json file (or of a directory holding one, as saved by tokenizers/transformers)."
        )
    try:
        return Tokenizer.from_file(str(p)), p
    except Exception as exc:
        raise ValueError(f"{str(p)!r} is not a readable tokenizers JSON file: {exc}") from exc


def _eos_id(tok: Tokenizer, eos_token: str) -> int:
    eid = tok.token_to_id(eos_token)
    if eid is None:
        raise ValueError(
            f"The tokenizer has no end-of-text token {eos_token!r}; pass eos_token= naming its document "
            "separator (e.g. '</s>' or '<|endoftext|>')."
        )
    return int(eid)
