"""A tokenised, cached, multi-domain text corpus for proxy training.

Domains are read through HF ``datasets`` (local json / jsonl / parquet / text files, a directory
saved with ``save_to_disk``, a dataset name on the hub, or one dataset split into domains by a
column such as SlimPajama's ``meta.redpajama_set_name``), tokenised once with a byte-level BPE
(trained on a sample of every domain, or loaded from a local path) and stored as flat, memory-mapped
``uint16``/``uint32`` token arrays in a cache directory keyed by a content hash of the documents and
the tokenizer configuration.

Each domain gets a fixed validation split by document: a document goes to validation when a hash of
its text falls below ``val_fraction``. The split depends on nothing else (not on a mixture, a seed or
the other domains), so every trial of a study is evaluated on the same held-out text.

Layout of one cache entry (``<cache_dir>/<key>/``)::

    manifest.json      domains, dtype, vocabulary, token/document counts, sha256 of every file
    tokenizer.json     the tokenizer (``tokenizers.Tokenizer``)
    d000.train.bin     domain 0 training tokens: documents joined by (and ended with) eos
    d000.val.bin       domain 0 validation tokens
    ...

Example:
    >>> import json, tempfile, pathlib
    >>> from optuna_autoscale.proxy.corpus import build_corpus
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("prose", "code"):
    ...     rows = [{"text": f"{name} document number {i} " * 5} for i in range(40)]
    ...     _ = (tmp / f"{name}.jsonl").write_text("\\n".join(json.dumps(r) for r in rows))
    >>> corpus = build_corpus({"prose": tmp / "prose.jsonl", "code": tmp / "code.jsonl"},
    ...                       vocab_size=300, cache_dir=tmp / "cache")  # doctest: +SKIP
    >>> corpus.domains  # doctest: +SKIP
    ('prose', 'code')

The parts live in their own modules: reading (:mod:`~optuna_autoscale.proxy.corpus_read`), the
validation split and tokenizer (:mod:`~optuna_autoscale.proxy.corpus_tokenizer`) and the cache with
:class:`Corpus` (:mod:`~optuna_autoscale.proxy.corpus_cache`); this module builds, and every public
name stays importable from here.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_autoscale.proxy.corpus_read import (  # noqa: F401  (re-exported: the names stay importable from here)
    DomainSource,
    domain_sources_from_column,
    load_domain_texts,
)
from optuna_autoscale.proxy.corpus_tokenizer import (  # noqa: F401  (re-exported: the names stay importable from here)
    EOS_TOKEN,
    is_validation_document,
    train_bpe_tokenizer,
)
from optuna_autoscale.proxy.corpus_cache import (  # noqa: F401  (re-exported: the names stay importable from here)
    CACHE_FORMAT,
    Corpus,
    CorpusCacheError,
    default_cache_dir,
)
from optuna_autoscale.proxy.corpus_cache import _dtype_for  # noqa: F401  (tests import it from here)
from optuna_autoscale.proxy.corpus_cache import _MANIFEST
from optuna_autoscale.proxy.corpus_cache import _TOKENIZER
from optuna_autoscale.proxy.corpus_cache import _fingerprint
from optuna_autoscale.proxy.corpus_cache import _read_source_index
from optuna_autoscale.proxy.corpus_cache import _sha256_file
from optuna_autoscale.proxy.corpus_cache import _source_index_key
from optuna_autoscale.proxy.corpus_cache import _write_source_index
from optuna_autoscale.proxy.corpus_cache import _write_tokens
from optuna_autoscale.proxy.corpus_read import SourceLike
from optuna_autoscale.proxy.corpus_read import _as_source
from optuna_autoscale.proxy.corpus_tokenizer import _eos_id
from optuna_autoscale.proxy.corpus_tokenizer import _load_tokenizer_file
from optuna_autoscale.proxy.corpus_tokenizer import _split_documents

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

    from optuna_autoscale.config import DomainConfig, RunConfig

__all__ = [
    "CACHE_FORMAT",
    "Corpus",
    "CorpusCacheError",
    "DomainSource",
    "EOS_TOKEN",
    "build_corpus",
    "corpus_from_config",
    "default_cache_dir",
    "domain_source",
    "domain_sources_from_column",
    "is_validation_document",
    "load_domain_texts",
    "train_bpe_tokenizer",
]

_logger = logging.getLogger(__name__)

# Seconds within which a file's modification time is too recent to trust for the source index:
# a file rewritten in the same (coarse) mtime tick with the same size would look unchanged.
_RACY_SECONDS = 2.0


def build_corpus(
    sources: Mapping[str, SourceLike],
    *,
    tokenizer: str | os.PathLike[str] | Tokenizer = "bpe",
    vocab_size: int = 8192,
    eos_token: str = EOS_TOKEN,
    cache_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.05,
    max_docs: int | None = None,
    tokenizer_sample_chars: int = 1_000_000,
    verify: bool = True,
    extra_manifest: Mapping[str, Any] | None = None,
    refresh: bool = False,
) -> Corpus:
    """Load, split, tokenise and cache a multi-domain corpus (or open the cached one).

    The cache key is a sha256 of every domain's documents (after ``max_docs``), the validation
    fraction and the tokenizer configuration (``"bpe"`` settings, or the content of a given
    tokenizer). A hit skips tokenizer training and tokenisation; ``corpus.cache_hit`` says which
    happened (also logged at INFO). A corrupt entry (missing files, wrong sizes or checksums) is
    rebuilt with a warning.

    Sources are not read again while they are unchanged: a source index in the cache maps their
    identity (local files: path, size and modification time; hub datasets: name, config, split,
    revision, data_files, max_docs and the other options) to the content key, so a second build
    opens the entry without reading or hashing anything, and a hub corpus built once reopens on
    an offline machine. A hub source without a pinned ``revision`` is taken as unchanged while
    its options are; pass ``refresh=True`` to read every source again (files modified in the
    last 2 seconds are never indexed, so a quick rewrite is still seen). ``Corpus.load(path)``
    opens a built entry directly.

    Args:
        sources: ``{domain: DomainSource | local path | hub dataset name}``, in the corpus's domain order.
        tokenizer: ``"bpe"`` to train a byte-level BPE on a sample of every domain's training split, a
            path to a ``tokenizer.json`` (or a directory holding one), or a ``tokenizers.Tokenizer``.
        vocab_size: vocabulary of a trained tokenizer (ignored for a given tokenizer).
        eos_token: the end-of-text token appended to every document.
        cache_dir: where cache entries live (default: ``default_cache_dir() / "corpora"``).
        val_fraction: expected fraction of each domain's documents held out for validation, in [0, 0.5].
        max_docs: cap on documents per domain.
        tokenizer_sample_chars: characters per domain used to train the BPE.
        verify: check token-file checksums when opening an existing entry.
        extra_manifest: JSON-ready metadata stored in the manifest (e.g. attribution).
        refresh: read and hash every source even if the source index says they are unchanged.

    Returns:
        The :class:`Corpus`.

    Raises:
        ValueError: empty/missing domains, unknown format, bad options.
        FileNotFoundError: a tokenizer path that does not exist.

    Example:
        >>> from optuna_autoscale.proxy.corpus import build_corpus, DomainSource
        >>> corpus = build_corpus({"web": "data/web.jsonl", "code": DomainSource("data/code.parquet",
        ...                        text_field="content")}, vocab_size=4096)  # doctest: +SKIP
        >>> corpus.cache_hit, corpus.unique_tokens()  # doctest: +SKIP
        (False, {'web': 812345, 'code': 645112})
    """
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not (0.0 < val_fraction <= 0.5):
        raise ValueError(f"val_fraction must be a number in (0, 0.5], got {val_fraction!r}.")
    if max_docs is not None and (not isinstance(max_docs, int) or max_docs < 2):
        raise ValueError(f"max_docs must be an int >= 2 or None, got {max_docs!r}.")
    val_fraction = float(val_fraction)

    # Resolve the tokenizer configuration first: a bad tokenizer path fails before any loading.
    given_tok: Tokenizer | None = None
    if isinstance(tokenizer, str) and tokenizer == "bpe":
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 258:
            raise ValueError(f"vocab_size must be an int >= 258, got {vocab_size!r}.")
        tok_config: dict[str, Any] = {
            "kind": "bpe", "vocab_size": vocab_size, "sample_chars": tokenizer_sample_chars,
            "eos_token": eos_token, "min_frequency": 2,
        }
    else:
        if isinstance(tokenizer, (str, os.PathLike)):
            given_tok, _ = _load_tokenizer_file(tokenizer)
        elif hasattr(tokenizer, "to_str") and hasattr(tokenizer, "encode_batch"):
            given_tok = tokenizer
        else:
            raise TypeError(
                f"tokenizer must be 'bpe', a path to tokenizer.json or a tokenizers.Tokenizer, got {tokenizer!r}."
            )
        _eos_id(given_tok, eos_token)
        tok_config = {
            "kind": "given", "eos_token": eos_token,
            "sha256": hashlib.sha256(given_tok.to_str().encode("utf-8")).hexdigest(),
        }

    t0 = time.perf_counter()
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "corpora"
    # The source index: unchanged sources (local: same files, sizes and mtimes; hub: same name,
    # revision, split, max_docs, ...) map straight to their entry, without reading or hashing
    # them again, so a hub corpus reopens offline and a big local one in milliseconds.
    fast = None
    if isinstance(sources, Mapping) and sources and all(isinstance(n, str) and n for n in sources):
        try:
            fast = _source_index_key({n: _as_source(v, max_docs=max_docs) for n, v in sources.items()},
                                     tok_config, val_fraction)
        except (TypeError, ValueError):
            fast = None  # load_domain_texts reports the bad source
    if fast is not None and not refresh:
        known = _read_source_index(base, fast[0])
        if known is not None and (base / known / _MANIFEST).exists():
            try:
                corpus = Corpus.load(base / known, verify=verify)
                corpus.cache_hit = True
                _logger.info("corpus cache hit (unchanged sources, not re-read): %s", base / known)
                return corpus
            except CorpusCacheError as exc:
                _logger.warning("corpus cache entry %s is corrupt (%s); re-reading the sources", base / known, exc)

    def remember(key: str) -> None:
        # Not for files modified in the last seconds: a rewrite within the same mtime tick and
        # of the same size would be taken for the old content (git's "racily clean" case).
        if fast is not None and fast[1] < time.time() - _RACY_SECONDS:
            _write_source_index(base, fast[0], key)

    texts = load_domain_texts(sources, max_docs=max_docs)
    key = _fingerprint(texts, tok_config, val_fraction)
    _logger.debug("corpus: read %d domains and hashed them in %.1fs", len(texts), time.perf_counter() - t0)
    entry = base / key

    if (entry / _MANIFEST).exists():
        try:
            corpus = Corpus.load(entry, verify=verify)
            corpus.cache_hit = True
            _logger.info("corpus cache hit: %s", entry)
            remember(key)
            return corpus
        except CorpusCacheError as exc:
            _logger.warning("corpus cache entry %s is corrupt (%s); rebuilding it", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    elif entry.exists():
        _logger.warning("corpus cache entry %s has no manifest (interrupted build?); rebuilding it", entry)
        shutil.rmtree(entry, ignore_errors=True)

    _logger.info("corpus cache miss: building %s", entry)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{key}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir(parents=True)
    try:
        splits = {name: _split_documents(name, docs, val_fraction) for name, docs in texts.items()}
        if given_tok is None:
            t1 = time.perf_counter()
            tok = train_bpe_tokenizer(
                {n: s[0] for n, s in splits.items()}, vocab_size=vocab_size, sample_chars=tokenizer_sample_chars,
            )
            _logger.info("corpus: trained a %d-token BPE in %.1fs", tok.get_vocab_size(), time.perf_counter() - t1)
        else:
            tok = given_tok
        eos_id = _eos_id(tok, eos_token)
        real_vocab = int(tok.get_vocab_size(with_added_tokens=True))
        dtype = _dtype_for(real_vocab)
        tok.save(str(tmp / _TOKENIZER))
        domains_meta = []
        for i, (name, (train, val)) in enumerate(splits.items()):
            meta: dict[str, Any] = {"name": name, "source": _as_source(sources[name], max_docs=max_docs).describe()}
            for part, docs in (("train", train), ("val", val)):
                fname = f"d{i:03d}.{part}.bin"
                n, digest = _write_tokens(tmp / fname, tok, docs, eos_id, dtype)
                meta[part] = {"file": fname, "tokens": n, "docs": len(docs), "sha256": digest,
                              "chars": sum(len(d) for d in docs)}
            domains_meta.append(meta)
            _logger.info("corpus: domain %s: %d train + %d validation tokens", name, meta["train"]["tokens"],
                         meta["val"]["tokens"])
        manifest = {
            "format": CACHE_FORMAT,
            "key": key,
            "domains": domains_meta,
            "vocab_size": real_vocab,
            "eos_id": eos_id,
            "eos_token": eos_token,
            "dtype": dtype.name,
            "val_fraction": val_fraction,
            "max_docs": max_docs,
            "tokenizer": tok_config,
            "tokenizer_sha256": _sha256_file(tmp / _TOKENIZER),
            "build_seconds": round(time.perf_counter() - t0, 3),
            "extra": dict(extra_manifest or {}),
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        try:
            os.replace(tmp, entry)
        except OSError:
            # Another process finished the same entry first; use theirs.
            if not (entry / _MANIFEST).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    corpus = Corpus.load(entry, verify=False)
    corpus.cache_hit = False
    remember(key)
    _logger.info("built corpus %s in %.1fs", entry, time.perf_counter() - t0)
    return corpus


def domain_source(config: DomainConfig) -> DomainSource:
    """The :class:`DomainSource` that a run config's ``[[domains]]`` entry describes."""
    return DomainSource(
        config.path, text_field=config.text_field, split=config.split, config=config.subset,
        data_files=None if config.data_files is None else tuple(config.data_files),
        revision=config.revision, domain_field=config.domain_field, domain_value=config.domain_value,
        streaming=config.streaming, max_docs=config.max_docs, sample_by=config.sample_by,
    )


def corpus_from_config(config: RunConfig) -> Corpus:
    """Build (or open from its cache) the corpus that a run config's ``[corpus]`` and ``[[domains]]`` describe.

    Raises:
        ConfigError: a domain's file or folder is empty.
    """
    from optuna_autoscale.config import ConfigError

    if config.corpus.embedded:
        from optuna_autoscale.proxy.sources import build_default_corpus

        return build_default_corpus(
            config.corpus.embedded_domains, cache_dir=config.corpus.cache_dir, vocab_size=config.corpus.vocab_size,
            apt=config.corpus.apt, val_fraction=config.corpus.val_fraction, min_domains=2,
        ).corpus
    for d in config.domains:
        p = Path(d.path).expanduser()
        if p.is_file() and p.stat().st_size == 0:
            raise ConfigError(f"domains.{d.name}.path", f"the file {str(p)!r} is empty; a domain needs documents",
                              file=config.path)
        if p.is_dir() and not any(p.iterdir()):
            raise ConfigError(f"domains.{d.name}.path", f"the folder {str(p)!r} is empty; a domain needs documents",
                              file=config.path)
    return build_corpus(
        {d.name: domain_source(d) for d in config.domains},
        tokenizer=config.corpus.tokenizer, vocab_size=config.corpus.vocab_size,
        cache_dir=config.corpus.cache_dir, val_fraction=config.corpus.val_fraction, max_docs=config.corpus.max_docs,
    )
