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
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

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

#: Bumped whenever the on-disk layout or the split/tokenisation rule changes (invalidates caches).
CACHE_FORMAT = 1
#: The end-of-text special token of trained tokenizers (GPT-2's spelling).
EOS_TOKEN = "<|endoftext|>"
_MANIFEST = "manifest.json"
_TOKENIZER = "tokenizer.json"
_LOCAL_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".csv": "csv",
    ".arrow": "arrow",
}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4")


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
# Sources
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainSource:
    """Where one domain's documents come from.

    Args:
        path: a local file (``.json``/``.jsonl``/``.parquet``/``.txt``/``.csv``/``.arrow``, optionally
            compressed), a local directory (one saved with ``Dataset.save_to_disk`` or a folder of data
            files), or the name of a dataset on the hub (for machines with network access).
        text_field: column (dotted for nested, e.g. ``"content.text"``) that holds the document text.
        split: dataset split to read.
        config: dataset configuration name (hub datasets with several configurations).
        data_files: explicit data files or glob patterns (passed to ``datasets.load_dataset``).
        revision: hub revision (commit, tag or branch) to pin.
        domain_field: column (dotted for nested, e.g. ``"meta.redpajama_set_name"``) whose value says
            which domain a row belongs to; rows whose value differs from ``domain_value`` are skipped.
        domain_value: the value of ``domain_field`` that selects this domain.
        streaming: stream instead of downloading/converting the whole dataset. ``None`` streams hub
            datasets and converts local files.
        max_docs: keep at most this many documents (the first ones in dataset order).
        sample_by: for plain-text files: ``"paragraph"`` (blank-line separated; the default),
            ``"line"`` or ``"document"`` (one whole file per document).

    Example:
        >>> from optuna_autoscale.proxy.corpus import DomainSource
        >>> DomainSource("cerebras/SlimPajama-627B", domain_field="meta.redpajama_set_name",
        ...              domain_value="RedPajamaGithub", max_docs=10_000).is_local
        False
    """

    path: str
    text_field: str = "text"
    split: str = "train"
    config: str | None = None
    data_files: str | tuple[str, ...] | None = None
    revision: str | None = None
    domain_field: str | None = None
    domain_value: Any = None
    streaming: bool | None = None
    max_docs: int | None = None
    sample_by: str = "paragraph"

    def __post_init__(self) -> None:
        path = os.fspath(self.path) if isinstance(self.path, os.PathLike) else self.path
        if not isinstance(path, str) or not path:
            raise TypeError(f"DomainSource.path must be a non-empty str or path, got {self.path!r}.")
        object.__setattr__(self, "path", path)
        if isinstance(self.data_files, list):
            object.__setattr__(self, "data_files", tuple(self.data_files))
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ValueError(f"text_field must be a non-empty column name, got {self.text_field!r}.")
        if (self.domain_field is None) != (self.domain_value is None):
            raise ValueError(
                "domain_field and domain_value go together: give both to select the rows of one domain "
                f"(got domain_field={self.domain_field!r}, domain_value={self.domain_value!r})."
            )
        if self.max_docs is not None and (not isinstance(self.max_docs, int) or self.max_docs < 1):
            raise ValueError(f"max_docs must be a positive int or None, got {self.max_docs!r}.")
        if self.sample_by not in ("paragraph", "line", "document"):
            raise ValueError(
                f"sample_by must be 'paragraph', 'line' or 'document', got {self.sample_by!r}."
            )

    @property
    def is_local(self) -> bool:
        """True when ``path`` names an existing local file or directory."""
        return Path(self.path).expanduser().exists()

    def loader_key(self) -> tuple[Any, ...]:
        """Identity of the underlying dataset read (sources differing only in the domain share one read)."""
        return (
            self.path, self.split, self.config, self.data_files, self.revision,
            self.streaming, self.sample_by,
        )

    def describe(self) -> str:
        """A one-line human description used in manifests and error messages."""
        out = self.path
        if self.config:
            out += f" [{self.config}]"
        if self.domain_field is not None:
            out += f" where {self.domain_field} == {self.domain_value!r}"
        return out


SourceLike = Union[DomainSource, str, "os.PathLike[str]"]


def _as_source(value: SourceLike, *, max_docs: int | None) -> DomainSource:
    if isinstance(value, DomainSource):
        src = value
    elif isinstance(value, (str, os.PathLike)):
        src = DomainSource(os.fspath(value))
    else:
        raise TypeError(
            f"A domain source must be a DomainSource, a path or a dataset name, got {type(value).__name__}: "
            f"{value!r}."
        )
    if max_docs is not None and (src.max_docs is None or src.max_docs > max_docs):
        src = dataclasses.replace(src, max_docs=max_docs)
    return src


def domain_sources_from_column(
    path: str | os.PathLike[str],
    field: str,
    *,
    values: Mapping[str, Any] | Sequence[Any] | None = None,
    **kwargs: Any,
) -> dict[str, DomainSource]:
    """Split one dataset into domains by the value of a column.

    Args:
        path: local file/directory or hub dataset name (see :class:`DomainSource`).
        field: the (dotted, for nested) column holding the domain label, e.g.
            ``"meta.redpajama_set_name"``.
        values: either a mapping ``{domain_name: column_value}``, a sequence of column values (each
            becomes a domain named after it), or ``None`` to scan the dataset for its distinct values
            (local or non-streamed datasets only: a hub dataset should name its values).
        **kwargs: further :class:`DomainSource` fields (``text_field``, ``split``, ``max_docs`` ...).

    Returns:
        ``{domain: DomainSource}`` ready for :func:`build_corpus`.

    Example:
        >>> from optuna_autoscale.proxy.corpus import domain_sources_from_column
        >>> srcs = domain_sources_from_column(
        ...     "cerebras/SlimPajama-627B", "meta.redpajama_set_name",
        ...     values={"github": "RedPajamaGithub", "wikipedia": "RedPajamaWikipedia"}, max_docs=5000)
        >>> sorted(srcs)
        ['github', 'wikipedia']
    """
    path = os.fspath(path)
    if values is None:
        probe = DomainSource(path, **kwargs)
        if not probe.is_local:
            raise ValueError(
                f"{path!r} is not a local dataset: name the domains' values of {field!r} (values={{name: value}}) "
                "instead of scanning a hub dataset for them."
            )
        found: set[Any] = set()
        for row in _iter_rows(probe):
            found.add(_get_field(row, field, probe))
        if not found:
            raise ValueError(f"{path!r} has no rows, so column {field!r} names no domain.")
        values = sorted(found, key=str)
    if isinstance(values, Mapping):
        mapping = dict(values)
    else:
        mapping = {str(v): v for v in values}
    if not mapping:
        raise ValueError(f"values must name at least one domain of column {field!r}.")
    return {
        name: DomainSource(path, domain_field=field, domain_value=value, **kwargs)
        for name, value in mapping.items()
    }


def _get_field(row: Mapping[str, Any], field_name: str, src: DomainSource) -> Any:
    if field_name in row:
        return row[field_name]
    cur: Any = row
    for part in field_name.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            cols = sorted(row) if isinstance(row, Mapping) else type(row).__name__
            raise ValueError(
                f"Column {field_name!r} not found in {src.describe()}; its rows have the columns {cols}. "
                "Pass text_field=/domain_field= naming an existing (dotted, for nested) column."
            )
    return cur


def _local_builder(path: Path) -> str | None:
    name = path.name.lower()
    for comp in _COMPRESSION_SUFFIXES:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    return _LOCAL_BUILDERS.get(Path(name).suffix)


def _load_dataset(src: DomainSource) -> Any:
    """Open ``src`` with HF ``datasets``; returns an (iterable) dataset of rows."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - exercised only without the proxy extra
        raise ImportError(
            "Building a corpus needs HF datasets: pip install 'optuna-autoscale[proxy]'."
        ) from exc

    p = Path(src.path).expanduser()
    if p.exists():
        streaming = bool(src.streaming)
        if p.is_dir() and ((p / "state.json").exists() or (p / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if src.split not in ds:
                    raise ValueError(
                        f"{src.path!r} has the splits {sorted(ds)}, not {src.split!r}; pass split=..."
                    )
                ds = ds[src.split]
            return ds
        kwargs: dict[str, Any] = {"split": src.split, "streaming": streaming}
        if p.is_file():
            builder = _local_builder(p)
            if builder is None:
                raise ValueError(
                    f"Cannot tell the format of {src.path!r} from its suffix; use one of "
                    f"{sorted(_LOCAL_BUILDERS)} (optionally compressed), or pass a directory."
                )
            if builder == "text":
                kwargs["sample_by"] = src.sample_by
            return datasets.load_dataset(builder, data_files=str(p), **kwargs)
        if src.data_files is not None:
            kwargs["data_files"] = list(src.data_files) if isinstance(src.data_files, tuple) else src.data_files
        return datasets.load_dataset(str(p), src.config, **kwargs)

    # Not a local path: a dataset on the hub.
    streaming = True if src.streaming is None else src.streaming
    if streaming and src.max_docs is None:
        _logger.warning("reading all of hub dataset %s (no max_docs); this may take very long", src.describe())
    kwargs = {"split": src.split, "streaming": streaming}
    if src.revision is not None:
        kwargs["revision"] = src.revision
    if src.data_files is not None:
        kwargs["data_files"] = list(src.data_files) if isinstance(src.data_files, tuple) else src.data_files
    offline = any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    try:
        return datasets.load_dataset(src.path, src.config, **kwargs)
    except Exception as exc:
        hint = (
            "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set, so only cached hub datasets load"
            if offline
            else "check the name, your network access and (for gated sets) HF_TOKEN"
        )
        raise ValueError(
            f"{src.path!r} is not a local file or directory and could not be loaded from the hub "
            f"({hint}): {type(exc).__name__}: {exc}"
        ) from exc


def _looks_local(path: str) -> bool:
    """True when ``path`` can only mean a local file (so a missing one is not looked up on the hub).

    Hub ids are ``name`` or ``namespace/name``; a path that is absolute, starts with ``.`` or
    ``~``, has more than one separator, or ends in a data-file suffix is a local path.
    """
    if path.startswith((".", "~", "/")) or "\\" in path or os.path.isabs(path) or path.count("/") > 1:
        return True
    return _local_builder(Path(path)) is not None


def _missing_local_error(name: str, path: str) -> ValueError:
    resolved = Path(path).expanduser().absolute()
    return ValueError(
        f"Domain {name!r}: no file or folder at {str(resolved)!r} (given as {path!r}); check the path"
        + (" (relative paths are relative to the working directory)." if not Path(path).expanduser().is_absolute()
           else ".")
    )


def _read_error(src: DomainSource, exc: BaseException) -> ValueError | None:
    """A one-line error naming the local file ``datasets`` could not read, its cause and the fix.

    ``datasets`` wraps a parse or decode failure in a long ``DatasetGenerationError`` that never
    names the file. None for errors that are not a local file's read failure (kept as they are).
    """
    p = Path(src.path).expanduser()
    if not p.exists():
        return None
    if not (isinstance(exc, UnicodeDecodeError) or type(exc).__module__.split(".")[0] in ("datasets", "pyarrow", "json")):
        return None  # our own errors (already clear) and anything unexpected stay as they are
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    where = str(p.absolute())
    builder = _local_builder(p) if p.is_file() else None
    if isinstance(cause, UnicodeDecodeError):
        bad = cause.object[cause.start:cause.start + 1].hex() if isinstance(cause.object, bytes) else "?"
        return ValueError(
            f"Cannot read {where!r}: it is not UTF-8 text (byte 0x{bad} at offset {cause.start}); convert it to "
            f"UTF-8, e.g. iconv -f latin1 -t utf-8 {p.name} > utf8-{p.name}"
        )
    detail = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}".rstrip(": ")
    if builder == "json":
        fix = f"each line must be one JSON object with a {src.text_field!r} field (JSON lines), or a JSON array of them"
    elif builder is not None:
        fix = f"check that it is a valid {builder} file (the format comes from its suffix)"
    else:
        fix = "check the files in it, or pass data_files= naming them"
    return ValueError(f"Cannot read {where!r} ({builder or 'folder'}): {detail}; {fix}.")


class _QuietDatasets:
    """Silence HF ``datasets`` progress bars and its error log while we read sources, unless asked for.

    Asked for: ``HF_DATASETS_DISABLE_PROGRESS_BARS`` set to a false value, or ``datasets``'
    verbosity at INFO or below. Restores the previous state on exit (scoped to our loading code).
    """

    def __enter__(self) -> _QuietDatasets:
        self._undo: list[Any] = []
        try:
            import datasets
            from datasets.utils import logging as dlog
        except ImportError:  # pragma: no cover - the proxy extra is missing; _load_dataset says so
            return self
        env = os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS", "").strip().lower()
        if env in ("0", "false", "no", "off") or dlog.get_verbosity() <= logging.INFO:
            return self
        if datasets.is_progress_bar_enabled():
            datasets.disable_progress_bars()
            self._undo.append(datasets.enable_progress_bars)
        level = dlog.get_verbosity()
        dlog.set_verbosity(logging.CRITICAL)  # "Failed to load JSON from file ...": our error says it in one line
        self._undo.append(lambda: dlog.set_verbosity(level))
        return self

    def __exit__(self, *exc: Any) -> None:
        for undo in reversed(self._undo):
            undo()


def _iter_rows(src: DomainSource) -> Iterator[Mapping[str, Any]]:
    with _QuietDatasets():
        try:
            yield from _load_dataset(src)
        except Exception as exc:
            err = _read_error(src, exc)
            if err is None:
                raise
            raise err from exc


def load_domain_texts(sources: Mapping[str, SourceLike], *, max_docs: int | None = None) -> dict[str, list[str]]:
    """Read every domain's documents (non-empty texts, in dataset order).

    Sources that read the same dataset (e.g. several domains of one dataset selected by a column)
    share one pass over it.

    Args:
        sources: ``{domain: DomainSource | path | hub name}``.
        max_docs: cap on documents per domain (applied on top of each source's own ``max_docs``).

    Returns:
        ``{domain: [text, ...]}`` in the order of ``sources``.

    Raises:
        ValueError: a domain with no (non-empty) document, a missing column, an unreadable source.

    Example:
        >>> import tempfile, pathlib
        >>> from optuna_autoscale.proxy.corpus import load_domain_texts
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = p.write_text("first paragraph\\n\\nsecond paragraph\\n")
        >>> load_domain_texts({"a": p})["a"]  # doctest: +SKIP
        ['first paragraph', 'second paragraph']
    """
    if not isinstance(sources, Mapping) or not sources:
        raise ValueError("sources must be a non-empty mapping {domain: DomainSource | path | dataset name}.")
    resolved = {}
    for name, value in sources.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"Domain names must be non-empty strings, got {name!r}.")
        resolved[name] = _as_source(value, max_docs=max_docs)
        local = Path(resolved[name].path).expanduser()
        if not local.exists() and _looks_local(resolved[name].path):
            # Not a hub id: fail now, naming the resolved path, instead of after HF Hub retries.
            raise _missing_local_error(name, resolved[name].path)
        if local.is_file() and local.stat().st_size == 0:
            # `datasets` fails on an empty json/jsonl file with a bare StopIteration; say what is wrong.
            raise ValueError(f"Domain {name!r}: the file {str(local)!r} is empty; a domain needs documents.")
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, src in resolved.items():
        groups.setdefault(src.loader_key(), []).append(name)

    out: dict[str, list[str]] = {name: [] for name in resolved}
    for names in groups.values():
        first = resolved[names[0]]
        plain = [n for n in names if resolved[n].domain_field is None]
        by_field: dict[str, dict[Any, list[str]]] = {}
        for n in names:
            s = resolved[n]
            if s.domain_field is not None:
                by_field.setdefault(s.domain_field, {}).setdefault(s.domain_value, []).append(n)
        open_domains = set(names)
        # Plain-text files: datasets keeps the file's final newline on the last paragraph/document.
        fp = Path(first.path).expanduser()
        strip_nl = fp.is_file() and _local_builder(fp) == "text"
        for row in _iter_rows(first):
            targets = list(plain)
            for fld, lookup in by_field.items():
                targets.extend(lookup.get(_get_field(row, fld, first), ()))
            for n in targets:
                if n not in open_domains:
                    continue
                s = resolved[n]
                text = _get_field(row, s.text_field, s)
                if text is None:
                    continue
                if not isinstance(text, str):
                    raise ValueError(
                        f"Column {s.text_field!r} of {s.describe()} holds {type(text).__name__}, not text; "
                        "pass text_field= naming the text column."
                    )
                if strip_nl:
                    text = text.strip("\n")
                if not text.strip():
                    continue
                out[n].append(text)
                if s.max_docs is not None and len(out[n]) >= s.max_docs:
                    open_domains.discard(n)
            if not open_domains:
                break
    for name, texts in out.items():
        if not texts:
            raise ValueError(
                f"Domain {name!r} ({resolved[name].describe()}) has no non-empty document; check the path, "
                "text_field and, for a domain column, domain_value."
            )
    return out


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


# Seconds within which a file's modification time is too recent to trust for the source index:
# a file rewritten in the same (coarse) mtime tick with the same size would look unchanged.
_RACY_SECONDS = 2.0
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
