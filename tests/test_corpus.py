"""Tests of proxy/corpus.py on tiny fixture corpora (no network: HF offline, see conftest)."""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")

from optuna_autoscale.proxy.corpus import (  # noqa: E402
    EOS_TOKEN,
    Corpus,
    CorpusCacheError,
    DomainSource,
    build_corpus,
    domain_sources_from_column,
    is_validation_document,
    load_domain_texts,
    train_bpe_tokenizer,
)
from optuna_autoscale.proxy.corpus import _dtype_for  # noqa: E402

VOCAB = 300


def _rows(n: int, tag: str) -> list[dict]:
    return [{"text": f"{tag} document {i}: " + " ".join(f"w{(i * j) % 17}" for j in range(12))} for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# Loading every format
# ------------------------------------------------------------------------------------------------


def test_load_each_local_format(tmp_path: Path) -> None:
    import datasets

    rows = _rows(12, "fmt")
    texts = [r["text"] for r in rows]
    jsonl = _write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "b.json").write_text(json.dumps(rows), encoding="utf-8")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    (tmp_path / "e.txt").write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "f_saved"))
    folder = tmp_path / "g_folder"
    folder.mkdir()
    _write_jsonl(folder / "part-0.jsonl", rows[:6])
    _write_jsonl(folder / "part-1.jsonl", rows[6:])

    out = load_domain_texts({
        "jsonl": jsonl, "json": str(tmp_path / "b.json"), "gz": tmp_path / "c.jsonl.gz",
        "parquet": tmp_path / "d.parquet", "txt": tmp_path / "e.txt",
        "saved": tmp_path / "f_saved", "folder": DomainSource(str(folder)),
        "streamed": DomainSource(str(jsonl), streaming=True),
        "data_files": DomainSource(str(folder), data_files=str(folder / "part-1.jsonl")),
    })
    for name in ("jsonl", "json", "gz", "parquet", "txt", "saved", "streamed"):
        assert out[name] == texts, name
    assert sorted(out["folder"]) == sorted(texts)
    assert out["data_files"] == texts[6:]


def test_text_file_sample_by(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_text("para one\nline two\n\npara two\n", encoding="utf-8")
    assert load_domain_texts({"p": path})["p"] == ["para one\nline two", "para two"]
    lines = load_domain_texts({"l": DomainSource(str(path), sample_by="line")})["l"]
    assert lines == ["para one", "line two", "para two"]
    whole = load_domain_texts({"d": DomainSource(str(path), sample_by="document")})["d"]
    assert len(whole) == 1 and "para two" in whole[0]


def test_max_docs_and_text_field(tmp_path: Path) -> None:
    rows = [{"body": {"content": f"doc {i}"}, "text": "ignored"} for i in range(10)]
    path = _write_jsonl(tmp_path / "n.jsonl", rows)
    out = load_domain_texts({"n": DomainSource(str(path), text_field="body.content", max_docs=4)})
    assert out["n"] == [f"doc {i}" for i in range(4)]
    out = load_domain_texts({"n": path}, max_docs=3)
    assert out["n"] == ["ignored"] * 3


def test_domain_column_dataset_nested(tmp_path: Path) -> None:
    sets = ["RedPajamaGithub", "RedPajamaWikipedia", "RedPajamaBook"]
    rows = [{"text": f"{sets[i % 3]} text {i}", "meta": {"redpajama_set_name": sets[i % 3]}} for i in range(30)]
    path = _write_jsonl(tmp_path / "slim.jsonl", rows)
    srcs = domain_sources_from_column(path, "meta.redpajama_set_name",
                                      values={"github": "RedPajamaGithub", "wiki": "RedPajamaWikipedia"})
    out = load_domain_texts(srcs)
    assert list(out) == ["github", "wiki"]
    assert out["github"] == [f"RedPajamaGithub text {i}" for i in range(0, 30, 3)]
    assert out["wiki"] == [f"RedPajamaWikipedia text {i}" for i in range(1, 30, 3)]
    scanned = domain_sources_from_column(path, "meta.redpajama_set_name", max_docs=2)
    assert sorted(scanned) == sorted(sets)
    out = load_domain_texts(scanned)
    assert all(len(v) == 2 for v in out.values())
    assert out["RedPajamaBook"] == ["RedPajamaBook text 2", "RedPajamaBook text 5"]


def test_domain_column_flat_and_mixed_with_plain(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "source": "a" if i % 2 else "b"} for i in range(8)]
    path = _write_jsonl(tmp_path / "flat.jsonl", rows)
    srcs = {**domain_sources_from_column(path, "source", values=["a", "b"]), "all": DomainSource(str(path))}
    out = load_domain_texts(srcs)
    assert out["a"] == ["t1", "t3", "t5", "t7"] and out["b"] == ["t0", "t2", "t4", "t6"]
    assert len(out["all"]) == 8


def test_hub_name_offline_gives_clear_error() -> None:
    with pytest.raises(ValueError, match="not a local file or directory.*OFFLINE"):
        load_domain_texts({"x": "no-such-org/no-such-dataset-autoscale"})
    with pytest.raises(ValueError, match="name the domains' values"):
        domain_sources_from_column("cerebras/SlimPajama-627B", "meta.redpajama_set_name")


# ------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------


def test_bad_inputs(tmp_path: Path) -> None:
    good = _write_jsonl(tmp_path / "good.jsonl", _rows(20, "g"))
    blank = _write_jsonl(tmp_path / "blank.jsonl", [{"text": "   "}, {"text": ""}])
    with pytest.raises(ValueError, match="non-empty mapping"):
        load_domain_texts({})
    with pytest.raises(ValueError, match="'blank'.*no non-empty document"):
        load_domain_texts({"good": good, "blank": blank})
    with pytest.raises(ValueError, match="Column 'body' not found.*columns \\['text'\\]"):
        load_domain_texts({"g": DomainSource(str(good), text_field="body")})
    _write_jsonl(tmp_path / "num.jsonl", [{"text": 3}])
    with pytest.raises(ValueError, match="holds int, not text"):
        load_domain_texts({"n": tmp_path / "num.jsonl"})
    (tmp_path / "x.weird").write_text("hello")
    with pytest.raises(ValueError, match="Cannot tell the format"):
        load_domain_texts({"w": tmp_path / "x.weird"})
    with pytest.raises(TypeError, match="DomainSource, a path or a dataset name"):
        load_domain_texts({"w": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="domain_field and domain_value go together"):
        DomainSource(str(good), domain_field="meta.x")
    with pytest.raises(ValueError, match="max_docs"):
        DomainSource(str(good), max_docs=0)
    with pytest.raises(ValueError, match="sample_by"):
        DomainSource(str(good), sample_by="sentence")
    with pytest.raises(ValueError, match="val_fraction"):
        build_corpus({"g": good}, val_fraction=0.9)
    with pytest.raises(ValueError, match="vocab_size"):
        build_corpus({"g": good}, vocab_size=100)
    with pytest.raises(ValueError, match="max_docs"):
        build_corpus({"g": good}, max_docs=1)
    one = _write_jsonl(tmp_path / "one.jsonl", [{"text": "only one document here"}])
    with pytest.raises(ValueError, match="'one' has 1 document"):
        build_corpus({"g": good, "one": one}, vocab_size=VOCAB, cache_dir=tmp_path / "c")


def test_unknown_tokenizer_path_and_missing_eos(tmp_path: Path) -> None:
    good = _write_jsonl(tmp_path / "good.jsonl", _rows(20, "g"))
    with pytest.raises(FileNotFoundError, match="No tokenizer at.*tokenizer='bpe'"):
        build_corpus({"g": good}, tokenizer=tmp_path / "nope.json", cache_dir=tmp_path / "c")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable tokenizers JSON"):
        build_corpus({"g": good}, tokenizer=bad, cache_dir=tmp_path / "c")
    tok = train_bpe_tokenizer({"g": ["hello world"] * 10}, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="no end-of-text token '</s>'"):
        build_corpus({"g": good}, tokenizer=tok, eos_token="</s>", cache_dir=tmp_path / "c")
    with pytest.raises(TypeError, match="tokenizer must be"):
        build_corpus({"g": good}, tokenizer=42, cache_dir=tmp_path / "c")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------


def test_bpe_training_is_deterministic_and_balanced() -> None:
    texts = {"a": ["alpha beta gamma " * 20] * 5, "b": ["zzz yyy xxx " * 20] * 5}
    t1 = train_bpe_tokenizer(texts, vocab_size=VOCAB)
    t2 = train_bpe_tokenizer(texts, vocab_size=VOCAB)
    assert t1.to_str() == t2.to_str()
    assert t1.token_to_id(EOS_TOKEN) == 0
    assert t1.get_vocab_size() <= VOCAB
    vocab = t1.get_vocab()
    # both domains' frequent words were learned as merges
    assert any("alpha" in tok for tok in vocab) and any("zzz" in tok for tok in vocab)


_TOK = train_bpe_tokenizer({"a": ["Some text, with ünïcödé — and code: x = f(y) ** 2\n"] * 20}, vocab_size=VOCAB)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_byte_level_bpe_round_trips_any_text(text: str) -> None:
    ids = _TOK.encode(text, add_special_tokens=False).ids
    assert all(0 <= i < _TOK.get_vocab_size() for i in ids)
    assert _TOK.decode(ids) == text


def test_given_tokenizer_file_dir_and_object(tmp_path: Path, text_domains: dict[str, Path]) -> None:
    first = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=tmp_path / "c1")
    by_file = build_corpus(text_domains, tokenizer=first.tokenizer_path, cache_dir=tmp_path / "c2")
    by_dir = build_corpus(text_domains, tokenizer=first.root, cache_dir=tmp_path / "c2")
    by_obj = build_corpus(text_domains, tokenizer=first.tokenizer, cache_dir=tmp_path / "c2")
    assert by_file.manifest["tokenizer"]["kind"] == "given"
    assert by_dir.root == by_file.root == by_obj.root and by_dir.cache_hit and by_obj.cache_hit
    for d in first.domains:
        np.testing.assert_array_equal(first.train_tokens(d), by_file.train_tokens(d))
        np.testing.assert_array_equal(first.val_tokens(d), by_file.val_tokens(d))


# ------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------


def test_cache_miss_then_hit(tmp_path: Path, text_domains: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="optuna_autoscale.proxy.corpus"):
        c1 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c1.cache_hit and "cache miss" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="optuna_autoscale.proxy.corpus"):
        c2 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert c2.cache_hit and "cache hit" in caplog.text and c2.root == c1.root
    # a different tokenizer configuration or different content is a different entry
    c3 = build_corpus(text_domains, vocab_size=VOCAB + 20, cache_dir=cache)
    assert not c3.cache_hit and c3.root != c1.root
    with open(text_domains["prose"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "one more prose document"}) + "\n")
    c4 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c4.cache_hit and c4.root not in (c1.root, c3.root)
    entries = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))  # not the source index
    assert entries == sorted({c1.root.name, c3.root.name, c4.root.name})
    reopened = Corpus.load(c1.root)
    assert reopened.domains == c1.domains and reopened.unique_tokens() == c1.unique_tokens()


def test_corpus_contract(tmp_path: Path, text_domains: dict[str, Path]) -> None:
    c = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=tmp_path / "cache")
    assert c.domains == ("prose", "code", "legal")
    assert c.dtype == np.uint16 and c.vocab_size <= VOCAB and c.eos_id == 0
    for d in c.domains:
        tr, va = c.train_tokens(d), c.val_tokens(d)
        assert isinstance(tr, np.memmap) and tr.dtype == np.uint16 and va.size > 0
        assert int(tr.max()) < c.vocab_size and tr[-1] == c.eos_id and va[-1] == c.eos_id
        with pytest.raises((ValueError, OSError)):
            tr[0] = 1  # read-only
    with pytest.raises(KeyError, match="Unknown domain 'nope'"):
        c.train_tokens("nope")
    assert "prose" in c.summary()
    assert _dtype_for(65535) == np.uint16 and _dtype_for(65536) == np.uint32


def test_unique_tokens_accounting(tmp_path: Path, text_domains: dict[str, Path]) -> None:
    c = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=tmp_path / "cache")
    texts = load_domain_texts(text_domains)
    counts = c.unique_tokens()
    for d in c.domains:
        train_docs = [t for t in texts[d] if not is_validation_document(t, 0.05)]
        val_docs = [t for t in texts[d] if is_validation_document(t, 0.05)]
        if not val_docs:  # fallback rule for tiny domains: one document held out
            continue
        expected = sum(len(c.encode(t)) + 1 for t in train_docs)  # + eos per document
        assert counts[d] == expected == c.train_tokens(d).size
        assert int((c.train_tokens(d) == c.eos_id).sum()) == len(train_docs)
        assert c.document_counts()[d] == (len(train_docs), len(val_docs))
        assert c.val_token_counts()[d] == sum(len(c.encode(t)) + 1 for t in val_docs)
    assert sum(counts.values()) > 0


def test_corrupt_cache_detected_and_rebuilt(tmp_path: Path, text_domains: dict[str, Path],
                                            caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    c1 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    good = {d: np.array(c1.train_tokens(d)) for d in c1.domains}
    f = c1.root / c1.manifest["domains"][0]["train"]["file"]
    data = bytearray(f.read_bytes())
    # same size, flipped content: only the checksum can tell
    data[4] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CorpusCacheError, match="checksum"):
        Corpus.load(c1.root)
    with caplog.at_level(logging.WARNING, logger="optuna_autoscale.proxy.corpus"):
        c2 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c2.cache_hit and "corrupt" in caplog.text
    for d in c2.domains:
        np.testing.assert_array_equal(c2.train_tokens(d), good[d])
    # truncated file: size check
    f = c2.root / c2.manifest["domains"][1]["val"]["file"]
    f.write_bytes(f.read_bytes()[:-2])
    with pytest.raises(CorpusCacheError, match="bytes, the manifest says"):
        Corpus.load(c2.root, verify=False)
    f.unlink()
    with pytest.raises(CorpusCacheError, match="missing"):
        Corpus.load(c2.root)
    (c2.root / "manifest.json").write_text("{broken")
    with pytest.raises(CorpusCacheError, match="Unreadable corpus manifest"):
        Corpus.load(c2.root)
    with pytest.raises(FileNotFoundError, match="No built corpus"):
        Corpus.load(tmp_path / "nowhere")
    c3 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c3.cache_hit and Corpus.load(c3.root).unique_tokens() == c1.unique_tokens()


def test_interrupted_entry_without_manifest_is_rebuilt(tmp_path: Path, text_domains: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    c1 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    (c1.root / "manifest.json").unlink()
    c2 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c2.cache_hit and c2.root == c1.root and (c2.root / "manifest.json").exists()


# ------------------------------------------------------------------------------------------------
# Validation split
# ------------------------------------------------------------------------------------------------


def _val_texts(c: Corpus, d: str) -> set[str]:
    toks = np.array(c.val_tokens(d))
    cuts = np.flatnonzero(toks == c.eos_id)
    out, start = set(), 0
    for end in cuts:
        out.add(c.decode(toks[start:end]))
        start = end + 1
    return out


def test_validation_split_fixed_and_independent(tmp_path: Path) -> None:
    a = _write_jsonl(tmp_path / "a.jsonl", [{"text": f"alpha {i} " * 6} for i in range(400)])
    b = _write_jsonl(tmp_path / "b.jsonl", [{"text": f"beta {i} " * 6} for i in range(400)])
    c = _write_jsonl(tmp_path / "c.jsonl", [{"text": f"gamma {i} " * 6} for i in range(400)])
    ab = build_corpus({"a": a, "b": b}, vocab_size=VOCAB, cache_dir=tmp_path / "x", val_fraction=0.1)
    ac = build_corpus({"c": c, "a": a}, vocab_size=VOCAB + 10, cache_dir=tmp_path / "x", val_fraction=0.1)
    few = build_corpus({"a": a, "b": b}, vocab_size=VOCAB, cache_dir=tmp_path / "x", val_fraction=0.1, max_docs=200)
    va = _val_texts(ab, "a")
    # the same documents are held out whatever the other domains, the tokenizer or the order
    assert va == _val_texts(ac, "a")
    # a subset of documents holds out exactly the held-out members of that subset
    first = {f"alpha {i} " * 6 for i in range(200)}
    assert _val_texts(few, "a") == va & first
    assert 20 <= len(va) <= 60  # about 10% of 400
    # validation documents never appear in training
    train_text = ab.decode(np.array(ab.train_tokens("a")))
    assert all(t not in train_text.split("<|endoftext|>") for t in va)


@given(st.text(min_size=1, max_size=50), st.floats(0.0, 1.0))
def test_is_validation_document_monotone_in_fraction(text: str, frac: float) -> None:
    # held out at fraction f => held out at any larger fraction (the split is a threshold on a hash)
    if is_validation_document(text, frac):
        assert is_validation_document(text, min(1.0, frac + 0.1))
    assert is_validation_document(text, frac) == is_validation_document(text, frac)


def test_empty_jsonl_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optuna_autoscale.proxy.corpus import load_domain_texts

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    full = tmp_path / "full.txt"
    full.write_text("some text\n\nmore text\n")
    with pytest.raises(ValueError, match="'code'.*is empty; a domain needs documents"):
        load_domain_texts({"code": empty, "prose": full})


def _age(paths: list[Path], seconds: float) -> None:
    import os
    import time

    t = time.time() - seconds
    for p in paths:
        os.utime(p, (t, t))


def test_unchanged_local_sources_are_not_read_again(tmp_path: Path, text_domains: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from optuna_autoscale.proxy import corpus as corpus_mod
    from optuna_autoscale.proxy import corpus_read

    _age(list(text_domains.values()), 60)  # not "racily" fresh: the source index may trust them
    cache = tmp_path / "cache"
    c1 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c1.cache_hit

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a source was read")

    with monkeypatch.context() as m:
        m.setattr(corpus_read, "_load_dataset", no_reading)
        m.setattr(corpus_mod, "load_domain_texts", no_reading)
        with caplog.at_level(logging.INFO, logger="optuna_autoscale.proxy.corpus"):
            c2 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
        assert c2.cache_hit and c2.root == c1.root and "unchanged sources, not re-read" in caplog.text
        assert np.array_equal(c2.train_tokens("code"), c1.train_tokens("code"))
        with pytest.raises(AssertionError, match="a source was read"):
            build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache, refresh=True)
        with pytest.raises(AssertionError, match="a source was read"):  # another tokenizer setting
            build_corpus(text_domains, vocab_size=VOCAB + 10, cache_dir=cache)
        # same size, another mtime: read again
        _age([text_domains["code"]], 20)
        with pytest.raises(AssertionError, match="a source was read"):
            build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
        # a changed file (size and mtime) is read again
        with open(text_domains["prose"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"text": "one more prose document"}) + "\n")
        _age([text_domains["prose"]], 30)
        with pytest.raises(AssertionError, match="a source was read"):
            build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    c3 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c3.cache_hit and c3.root != c1.root  # the appended document is in
    text = text_domains["legal"].read_text(encoding="utf-8")
    text_domains["legal"].write_text(text.replace("licensee", "licensor"), encoding="utf-8")  # same size, now
    c4 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not c4.cache_hit and c4.root != c3.root


def test_recently_modified_files_are_not_indexed(tmp_path: Path, text_domains: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A file modified in the last seconds could be rewritten within the same mtime tick: always re-read it."""
    from optuna_autoscale.proxy import corpus as corpus_mod

    monkeypatch.setattr(corpus_mod, "_RACY_SECONDS", 3600.0)
    cache = tmp_path / "cache"
    c1 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert not (cache / ".source-index").exists() or not any((cache / ".source-index").iterdir())
    calls = []
    real = corpus_mod.load_domain_texts
    monkeypatch.setattr(corpus_mod, "load_domain_texts", lambda *a, **k: calls.append(1) or real(*a, **k))
    c2 = build_corpus(text_domains, vocab_size=VOCAB, cache_dir=cache)
    assert c2.cache_hit and c2.root == c1.root and calls == [1]  # a hit, but through reading and hashing


def test_hub_corpus_reopens_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub source built once (here: _load_dataset stubbed as the network) reopens with the network gone."""
    from optuna_autoscale.proxy import corpus as corpus_mod
    from optuna_autoscale.proxy import corpus_read

    rows = {name: [{"text": f"{name} document number {i} " + " ".join([name] * (i % 7 + 3))} for i in range(40)]
            for name in ("org/alpha", "org/beta")}
    sources = {"alpha": DomainSource("org/alpha", revision="v1", max_docs=30),
               "beta": DomainSource("org/beta", revision="v1", max_docs=30)}
    cache = tmp_path / "cache"
    with monkeypatch.context() as m:
        m.setattr(corpus_read, "_load_dataset", lambda src: iter(rows[src.path]))
        c1 = build_corpus(sources, vocab_size=VOCAB, cache_dir=cache)
    assert not c1.cache_hit and sum(c1.document_counts()["alpha"]) == 30
    # offline now: the real loader refuses hub names (HF_HUB_OFFLINE=1 in the test session)
    with pytest.raises(Exception):
        corpus_mod.load_domain_texts({"alpha": sources["alpha"]})
    c2 = build_corpus(sources, vocab_size=VOCAB, cache_dir=cache)
    assert c2.cache_hit and c2.root == c1.root
    # another revision is another source: it is read (and fails offline)
    with pytest.raises(Exception):
        build_corpus({**sources, "beta": DomainSource("org/beta", revision="v2", max_docs=30)}, vocab_size=VOCAB,
                     cache_dir=cache)


def test_missing_local_file_fails_fast_with_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path that can only be local never reaches the hub (25 s of retries): the error names where it looked."""
    import datasets

    def no_hub(*a: object, **k: object) -> None:
        raise AssertionError("the hub was asked for a local path")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    for path in ("data/code.jsonl", "code.jsonl", "./code", str(tmp_path / "abs.txt.gz")):
        with pytest.raises(ValueError, match="no file or folder at") as info:
            load_domain_texts({"code": path})
        assert str((tmp_path / path).absolute()) in str(info.value) and "\n" not in str(info.value)


def test_unreadable_local_files_name_the_file_and_the_fix(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Garbage JSON lines or Latin-1 text: one line naming the file, its cause and the fix; no progress bar."""
    (tmp_path / "bad.jsonl").write_text('not json at all\n{"text": "x"\n')
    (tmp_path / "latin.txt").write_bytes("caf\u00e9 cr\u00e8me\n\nmore\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"Cannot read '.*bad\.jsonl' \(json\): .*one JSON object with a 'text' field"):
        load_domain_texts({"a": tmp_path / "bad.jsonl"})
    with pytest.raises(ValueError, match=r"latin\.txt': it is not UTF-8 text \(byte 0xe9 at offset 3\); .*iconv"):
        load_domain_texts({"a": tmp_path / "latin.txt"})
    _write_jsonl(tmp_path / "good.jsonl", _rows(5, "g"))
    assert len(load_domain_texts({"g": tmp_path / "good.jsonl"})["g"]) == 5
    err = capfd.readouterr().err
    assert "Generating train split" not in err and "Failed to load JSON" not in err, err
    import datasets

    assert datasets.is_progress_bar_enabled()  # restored: only our loading is quiet
