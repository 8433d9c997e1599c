"""Reading a corpus's domains through HF ``datasets``: :class:`DomainSource` and :func:`load_domain_texts`."""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Union


_logger = logging.getLogger("optuna_autoscale.proxy.corpus")  # one logger for the corpus

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
