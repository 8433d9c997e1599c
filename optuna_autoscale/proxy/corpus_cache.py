"""The corpus cache: one entry per content key (manifest, tokenizer, memory-mapped token arrays), the source index and :class:`Corpus`."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
import numpy as np
from optuna_autoscale.proxy.corpus_read import DomainSource

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

_logger = logging.getLogger("optuna_autoscale.proxy.corpus")  # one logger for the corpus

#: Bumped whenever the on-disk layout or the split/tokenisation rule changes (invalidates caches).
CACHE_FORMAT = 1
_MANIFEST = "manifest.json"
_TOKENIZER = "tokenizer.json"


class CorpusCacheError(ValueError):
    """A cache entry is missing files, has files of the wrong size or checksum, or an unreadable manifest."""


def default_cache_dir() -> Path:
    """The root of optuna-autoscale's caches: ``$OPTUNA_AUTOSCALE_CACHE`` or ``~/.cache/optuna-autoscale``.

    Example:
        >>> from optuna_autoscale.proxy.corpus import default_cache_dir
        >>> default_cache_dir().name in ("optuna-autoscale",) or True
        True
    """
    env = os.environ.get("OPTUNA_AUTOSCALE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "optuna-autoscale"


# --------------------------------------------------------------------------------------------------
# Cache entries
# --------------------------------------------------------------------------------------------------


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _write_tokens(path: Path, tok: Tokenizer, texts: Sequence[str], eos_id: int, dtype: np.dtype) -> tuple[int, str]:
    """Tokenise ``texts`` into ``path`` (each document followed by eos); returns (n_tokens, sha256)."""
    h = hashlib.sha256()
    n = 0
    eos = np.array([eos_id], dtype=dtype)
    # encode_batch_fast (tokenizers >= 0.21) skips offset tracking, which we do not need.
    encode = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    with open(path, "wb") as fh:
        for start in range(0, len(texts), 512):
            batch = encode(list(texts[start : start + 512]), add_special_tokens=False)
            parts: list[np.ndarray] = []
            for enc in batch:
                parts.append(np.asarray(enc.ids, dtype=dtype))
                parts.append(eos)
            arr = np.concatenate(parts)
            buf = arr.tobytes()
            fh.write(buf)
            h.update(buf)
            n += int(arr.size)
    return n, h.hexdigest()


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)


def _fingerprint(
    texts: Mapping[str, Sequence[str]],
    tokenizer_config: Mapping[str, Any],
    val_fraction: float,
) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "val_fraction": val_fraction,
                         "tokenizer": tokenizer_config}, sort_keys=True).encode())
    for name, docs in texts.items():
        h.update(b"\x00domain\x00" + name.encode("utf-8") + b"\x00")
        h.update(len(docs).to_bytes(8, "big"))
        for d in docs:
            b = d.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "big"))
            h.update(b)
    return h.hexdigest()[:24]


_INDEX_DIR = ".source-index"


def _file_stat(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path), int(st.st_size), int(st.st_mtime_ns)]


def _source_identity(src: DomainSource) -> tuple[Any, float] | None:
    """What identifies ``src``'s documents without reading them, and the newest local mtime (s).

    Local files: every option plus each file's absolute path, size and modification time (a
    folder: all the files under it). Hub datasets: every option (name, config, split, revision,
    data_files, max_docs, ...): a hub source is taken as unchanged while these are; pin
    ``revision`` to make that exact. None when the source cannot be identified so (data files
    outside a local folder, an unreadable tree): it is then always read.
    """
    options = dataclasses.asdict(src)
    options["domain_value"] = repr(src.domain_value)
    p = Path(src.path).expanduser()
    if not p.exists():
        return {"hub": options}, 0.0
    try:
        p = p.resolve()
        if p.is_file():
            files = [p]
        else:
            if src.data_files is not None:
                patterns = [src.data_files] if isinstance(src.data_files, str) else list(src.data_files)
                if any("://" in pat or Path(pat).expanduser().is_absolute() for pat in patterns):
                    return None
            files = sorted(f for f in p.rglob("*") if f.is_file())
        stats = [_file_stat(f) for f in files]
    except OSError:
        return None
    newest = max((st[2] for st in stats), default=0) / 1e9
    return {"local": options, "files": stats}, newest


def _source_index_key(
    sources: Mapping[str, DomainSource], tokenizer_config: Mapping[str, Any], val_fraction: float,
) -> tuple[str, float] | None:
    """The fast key of a build (from the sources' identity, not their content) and the newest mtime."""
    parts = []
    newest = 0.0
    for name, src in sources.items():
        ident = _source_identity(src)
        if ident is None:
            return None
        parts.append([name, ident[0]])
        newest = max(newest, ident[1])
    blob = json.dumps({"format": CACHE_FORMAT, "val_fraction": val_fraction, "tokenizer": tokenizer_config,
                       "sources": parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24], newest


def _read_source_index(base: Path, fast: str) -> str | None:
    try:
        key = json.loads((base / _INDEX_DIR / f"{fast}.json").read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) and key.isalnum() else None


def _write_source_index(base: Path, fast: str, key: str) -> None:
    folder = base / _INDEX_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{fast}.tmp-{os.getpid()}-{time.time_ns()}"
        tmp.write_text(json.dumps({"key": key}), encoding="utf-8")
        os.replace(tmp, folder / f"{fast}.json")
    except OSError as exc:  # a read-only cache still works, just without the shortcut
        _logger.debug("corpus: could not write the source index (%s)", exc)


@dataclass
class Corpus:
    """A built, tokenised, cached multi-domain corpus (open one with :meth:`load` or :func:`build_corpus`).

    Attributes:
        root: the cache entry directory.
        domains: domain names, in build order.
        vocab_size: tokenizer vocabulary size (ids are below it).
        eos_id: id of the end-of-text token that ends every document.
        dtype: ``uint16`` when the vocabulary fits, else ``uint32``.
        manifest: the parsed ``manifest.json``.
        cache_hit: True when :func:`build_corpus` found this entry already built.

    Example:
        >>> from optuna_autoscale.proxy.corpus import Corpus
        >>> corpus = Corpus.load("/path/to/cache/entry")  # doctest: +SKIP
        >>> corpus.unique_tokens()  # doctest: +SKIP
        {'code_python': 3101234, 'encyclopedia': 2890012, ...}
    """

    root: Path
    domains: tuple[str, ...]
    vocab_size: int
    eos_id: int
    dtype: np.dtype
    manifest: dict[str, Any] = field(repr=False)
    cache_hit: bool = False
    _tokenizer: Any = field(default=None, repr=False)
    _arrays: dict[tuple[str, str], np.memmap] = field(default_factory=dict, repr=False)

    # -- opening ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True) -> Corpus:
        """Open a built corpus directory.

        Args:
            path: the cache entry directory (holding ``manifest.json``).
            verify: check every token file's sha256 against the manifest (sizes are always checked).

        Raises:
            FileNotFoundError: no corpus at ``path``.
            CorpusCacheError: missing/short files, checksum mismatch, unreadable manifest.
        """
        root = Path(path).expanduser()
        mpath = root / _MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(
                f"No built corpus at {os.fspath(path)!r} (no {_MANIFEST}); build one with build_corpus() "
                "or `optuna-autoscale corpus build`."
            )
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
            if manifest.get("format") != CACHE_FORMAT:
                raise CorpusCacheError(
                    f"{mpath} has cache format {manifest.get('format')!r}, this version reads {CACHE_FORMAT}; "
                    "rebuild the corpus."
                )
            domains = tuple(d["name"] for d in manifest["domains"])
            dtype = np.dtype(manifest["dtype"])
            vocab_size = int(manifest["vocab_size"])
            eos_id = int(manifest["eos_id"])
        except CorpusCacheError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusCacheError(f"Unreadable corpus manifest {mpath}: {exc}; delete {root} and rebuild.") from exc
        for d in manifest["domains"]:
            for part in ("train", "val"):
                info = d[part]
                fpath = root / info["file"]
                if not fpath.is_file():
                    raise CorpusCacheError(f"Corpus file {fpath} is missing; delete {root} and rebuild.")
                expect = int(info["tokens"]) * dtype.itemsize
                size = fpath.stat().st_size
                if size != expect:
                    raise CorpusCacheError(
                        f"Corpus file {fpath} has {size} bytes, the manifest says {expect}; the cache is "
                        f"corrupt: delete {root} and rebuild."
                    )
                if verify and _sha256_file(fpath) != info["sha256"]:
                    raise CorpusCacheError(
                        f"Corpus file {fpath} does not match its checksum; the cache is corrupt: delete "
                        f"{root} and rebuild."
                    )
        tpath = root / _TOKENIZER
        if not tpath.is_file():
            raise CorpusCacheError(f"Corpus tokenizer {tpath} is missing; delete {root} and rebuild.")
        if verify and manifest.get("tokenizer_sha256") and _sha256_file(tpath) != manifest["tokenizer_sha256"]:
            raise CorpusCacheError(f"Corpus tokenizer {tpath} does not match its checksum; delete {root} and rebuild.")
        return cls(root=root, domains=domains, vocab_size=vocab_size, eos_id=eos_id, dtype=dtype, manifest=manifest)

    # -- data -------------------------------------------------------------------------------------
    def _domain_info(self, domain: str) -> dict[str, Any]:
        for d in self.manifest["domains"]:
            if d["name"] == domain:
                return dict(d)
        raise KeyError(f"Unknown domain {domain!r}; this corpus has {list(self.domains)}.")

    def _array(self, domain: str, part: str) -> np.memmap:
        key = (domain, part)
        if key not in self._arrays:
            info = self._domain_info(domain)[part]
            n = int(info["tokens"])
            if n == 0:
                self._arrays[key] = np.zeros(0, dtype=self.dtype).view(np.memmap)
            else:
                self._arrays[key] = np.memmap(self.root / info["file"], dtype=self.dtype, mode="r", shape=(n,))
        return self._arrays[key]

    def train_tokens(self, domain: str) -> np.memmap:
        """Training token ids of ``domain`` (read-only memmap; documents joined by, and ended with, eos)."""
        return self._array(domain, "train")

    def val_tokens(self, domain: str) -> np.memmap:
        """Validation token ids of ``domain`` (read-only memmap; a fixed, mixture-independent split)."""
        return self._array(domain, "val")

    def unique_tokens(self) -> dict[str, int]:
        """Training tokens per domain (eos separators included): the data one epoch of a domain holds."""
        return {d["name"]: int(d["train"]["tokens"]) for d in self.manifest["domains"]}

    def val_token_counts(self) -> dict[str, int]:
        """Validation tokens per domain."""
        return {d["name"]: int(d["val"]["tokens"]) for d in self.manifest["domains"]}

    def document_counts(self) -> dict[str, tuple[int, int]]:
        """``{domain: (train documents, validation documents)}``."""
        return {d["name"]: (int(d["train"]["docs"]), int(d["val"]["docs"])) for d in self.manifest["domains"]}

    # -- tokenizer --------------------------------------------------------------------------------
    @property
    def tokenizer_path(self) -> Path:
        """Path of the corpus's ``tokenizer.json``."""
        return self.root / _TOKENIZER

    @property
    def tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` the corpus was encoded with (loaded on first use)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        tok: Tokenizer = self._tokenizer
        return tok

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no eos added)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids."""
        return str(self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False))

    def summary(self) -> str:
        """A small table: domain, documents, train and validation tokens."""
        lines = [f"corpus {self.root} (vocab {self.vocab_size}, {self.dtype.name})",
                 f"{'domain':<16} {'docs':>8} {'train tokens':>14} {'val tokens':>12}"]
        for d in self.manifest["domains"]:
            docs = int(d["train"]["docs"]) + int(d["val"]["docs"])
            lines.append(f"{d['name']:<16} {docs:>8} {int(d['train']['tokens']):>14,} {int(d['val']['tokens']):>12,}")
        total = sum(self.unique_tokens().values())
        lines.append(f"{'total':<16} {'':>8} {total:>14,}")
        return "\n".join(lines)
