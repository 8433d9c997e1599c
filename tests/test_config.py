"""The TOML run config: defaults, every section, and errors naming file, key and allowed values."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from optuna_autoscale.config import config_from_json
from optuna_autoscale.config import ConfigError
from optuna_autoscale.config import CorpusConfig
from optuna_autoscale.config import DesignConfig
from optuna_autoscale.config import DomainConfig
from optuna_autoscale.config import load_config
from optuna_autoscale.config import parse_config
from optuna_autoscale.config import RunConfig
from optuna_autoscale.config import SimulateConfig
from optuna_autoscale.config import StudyConfig


REPO = Path(__file__).resolve().parents[1]

SIM = """
[study]
name = "s"
objective = "simulate"
[design]
budgets = [1e8, 4e8]
[simulate]
domains = ["a", "b", "c"]
"""

PROXY = """
[study]
name = "p"
storage = "sqlite:///p.db"
metric = {a = 1.0, b = 2.0}
[design]
budgets = [2e5, 6e5]
multipliers = [0.25, 4.0]
bounds = {a = [0, 1e6]}
max_epochs = 3
[corpus]
vocab_size = 512
[[domains]]
name = "a"
path = "a.jsonl"
[[domains]]
name = "b"
path = "some/hub-dataset"
subset = "en"
text_field = "content"
data_path = "/data/b_text_document"
[proxy]
preset = "micro"
context = 64
"""


def _err(text: str, path: str = "run.toml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path=path)
    return info.value


def test_simulate_config_defaults() -> None:
    cfg = parse_config(SIM)
    assert cfg.domain_names == ("a", "b", "c")
    assert cfg.design.multipliers == [0.02, 3.0] and cfg.design.reach == 0.5
    assert cfg.design.verify is True and cfg.design.replicates == 0
    assert cfg.study.workers == 1 and cfg.study.metric == "mean_loss"
    land = cfg.simulate.landscape()
    assert tuple(land.domains) == ("a", "b", "c")


def test_proxy_config_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    path = tmp_path / "run.toml"
    path.write_text(PROXY)
    cfg = load_config(path)
    assert cfg.domain_names == ("a", "b")
    # an existing local path is resolved against the config's folder; a dataset id is kept
    assert cfg.domains[0].path == str(tmp_path / "a.jsonl")
    assert cfg.domains[1].path == "some/hub-dataset"
    assert cfg.domains[1].subset == "en" and cfg.domains[1].text_field == "content"
    assert cfg.study.metric == {"a": 1.0, "b": 2.0}
    assert cfg.design.bounds == {"a": [0.0, 1e6]}
    assert cfg.design.max_epochs == 3.0
    assert cfg.proxy == {"preset": "micro", "context": 64}
    src = cfg.domains[1].source()
    assert src.config == "en" and src.text_field == "content"


def test_json_round_trip_redacts_password() -> None:
    cfg = parse_config(SIM.replace('name = "s"', 'name = "s"\nstorage = "postgresql://u:hunter2@db:5432/x"'))
    text = cfg.to_json()
    assert "hunter2" not in text
    back = config_from_json(text)
    assert back.domain_names == cfg.domain_names
    assert back.design == cfg.design
    assert json.loads(text)["study"]["storage"] == "postgresql://u:***@db:5432/x"


def test_every_field_is_documented() -> None:
    for cls in (StudyConfig, DesignConfig, CorpusConfig, DomainConfig, SimulateConfig):
        doc = cls.__doc__ or ""
        for f in dataclasses.fields(cls):
            assert f"{f.name}:" in doc, f"{cls.__name__}.{f.name} is not documented"
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no metadata doc"


def test_example_config_is_valid() -> None:
    cfg = load_config(REPO / "examples" / "config.toml")
    assert len(cfg.design.budgets) >= 2
    assert cfg.study.storage.startswith("sqlite:")


@pytest.mark.parametrize(
    ("text", "key", "fragment", "allowed"),
    [
        (SIM.replace("budgets", "budget"), "design.budget", "did you mean 'budgets'", "budgets"),
        (SIM + "\n[extra]\nx = 1\n", "extra", "unknown table or key", "study"),
        (SIM.replace('objective = "simulate"', 'objective = "simulated"'), "study.objective", "did you mean 'simulate'", "proxy"),
        (SIM.replace("[1e8, 4e8]", "[0, 4e8]"), "design.budgets[0]", "must be > 0", None),
        (SIM.replace("[1e8, 4e8]", "[-1e8]"), "design.budgets[0]", "must be > 0", None),
        (SIM.replace("[1e8, 4e8]", "[]"), "design.budgets", "non-empty list", None),
        (SIM.replace("[1e8, 4e8]", "[1e8, 1e8]"), "design.budgets", "repeated", None),
        (SIM.replace("[1e8, 4e8]", '["big"]'), "design.budgets[0]", "number of tokens", None),
        (SIM.replace("budgets = [1e8, 4e8]", "budgets = [1e8]\nmultipliers = [1.0, 3.0]"), "design.multipliers", "base run", None),
        (SIM.replace("budgets = [1e8, 4e8]", "budgets = [1e8]\nmultipliers = [0.0]"), "design.multipliers[0]", "> 0", None),
        (SIM.replace("budgets = [1e8, 4e8]", "budgets = [1e8]\nreach = 1.5"), "design.reach", "[0, 1)", None),
        (SIM.replace("budgets = [1e8, 4e8]", "budgets = [1e8]\nbounds = {a = [5, 1]}"), "design.bounds.a", "exceeds", None),
        (SIM.replace("budgets = [1e8, 4e8]", "budgets = [1e8]\nbounds = {z = [0, 1]}"), "design.bounds.z", "not a configured domain", "a, b, c"),
        (SIM.replace("budgets = [1e8, 4e8]", "budgets = [1e8]\nreplicates = -1"), "design.replicates", ">= 0", None),
        (SIM.replace("budgets = [1e8, 4e8]", "budgets = [1e8]\nverify = 1"), "design.verify", "true or false", None),
        (SIM.replace('name = "s"', 'name = "s"\nworkers = 0'), "study.workers", ">= 1", None),
        (SIM.replace('name = "s"', 'name = "s"\nmetric = "accuracy"'), "study.metric", "unknown value", "mean_loss"),
        (SIM.replace('name = "s"', 'name = "s"\nstorage = "ftp://x"'), "study.storage", "unsupported", "sqlite"),
        (SIM.replace('name = "s"', 'name = "s"\nheartbeat_interval = 60\ngrace_period = 30'), "study.grace_period", "larger than", None),
        (SIM.replace('["a", "b", "c"]', '["a", "a"]'), "simulate.domains", "Duplicate domain", None),
        (SIM.replace('["a", "b", "c"]', "1"), "simulate.domains", "at least 2", None),
        (SIM.replace('domains = ["a", "b", "c"]', 'family = "cubic"'), "simulate.family", "unknown value", "separable"),
        (PROXY.replace("preset = \"micro\"", "preset = \"huge\""), "proxy.preset", "unknown value", "tiny"),
        (PROXY.replace("context = 64", "contxt = 64"), "proxy.contxt", "did you mean 'context'", "context"),
        (PROXY.replace("[corpus]", "[corpus]\ntokenizer = \"gpt-17\""), "corpus.tokenizer", "unknown tokenizer", "bpe"),
        (PROXY.replace("[corpus]", "[corpus]\nval_fraction = 0.9"), "corpus.val_fraction", "(0, 0.5]", None),
        (PROXY.replace('name = "b"', 'name = "a"'), "domains", "duplicate domain names", None),
        (PROXY.replace('path = "a.jsonl"\n', ""), "domains.a.path", "must name", None),
        (PROXY.replace('name = "a"\n', "", 1), "domains[0].name", "is missing", None),
        (PROXY.replace("[corpus]", "[corpus]\nembedded_domains = [\"nope\", \"legal\"]"), "corpus.embedded_domains", "unknown embedded domain", "code_python"),
        ("[design]\nbudgets = [1e8]\n", "domains", "needs [[domains]]", None),
        ("this is = not toml =", "(syntax)", "not valid TOML", None),
    ],
)
def test_bad_config_names_file_key_and_allowed(text: str, key: str, fragment: str, allowed: str | None) -> None:
    err = _err(text)
    msg = str(err)
    assert msg.startswith("run.toml: "), msg
    assert err.file == "run.toml"
    assert err.key == key, msg
    assert fragment in msg, msg
    if allowed is not None:
        assert "allowed:" in msg and allowed in msg, msg


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config("/nonexistent/run.toml")


def test_dataclass_validation_without_file() -> None:
    with pytest.raises(ConfigError, match=r"^design.budgets\[0\]: must be > 0"):
        DesignConfig(budgets=[-5])
    with pytest.raises(ConfigError, match="study.objective"):
        StudyConfig(objective="train")
    assert isinstance(RunConfig(study=StudyConfig(objective="simulate")).simulate, SimulateConfig)


DOMAIN_COLUMN = """
[study]
name = "cols"
[design]
budgets = [1e5]
[corpus]
vocab_size = 300
cache_dir = "cache"
[[domains]]
name = "code"
path = "mixed.jsonl"
domain_field = "meta.redpajama_set_name"
domain_value = "RedPajamaGithub"
streaming = false
[[domains]]
name = "books"
path = "mixed.jsonl"
domain_field = "meta.redpajama_set_name"
domain_value = "RedPajamaBook"
revision = "main"
"""


def test_domain_column_tables_select_rows_and_build_a_corpus(tmp_path: Path) -> None:
    """[[domains]] with domain_field/domain_value: one jsonl holding two domains, built offline."""
    pytest.importorskip("datasets")
    pytest.importorskip("tokenizers")
    sets = {"RedPajamaGithub": "def return import class self lambda yield", "RedPajamaBook": "the river ran past the mill"}
    with open(tmp_path / "mixed.jsonl", "w", encoding="utf-8") as fh:
        for i in range(90):
            name = ("RedPajamaGithub", "RedPajamaBook", "RedPajamaWikipedia")[i % 3]
            words = sets.get(name, "encyclopedia article about a topic").split()
            text = " ".join(words[(i + j) % len(words)] for j in range(25)) + f" {i}"
            fh.write(json.dumps({"text": text, "meta": {"redpajama_set_name": name}}) + "\n")
    path = tmp_path / "run.toml"
    path.write_text(DOMAIN_COLUMN)
    cfg = load_config(path)
    code, books = cfg.domains
    assert (code.domain_field, code.domain_value, code.streaming) == ("meta.redpajama_set_name", "RedPajamaGithub", False)
    assert books.revision == "main" and books.streaming is None
    src = code.source()
    assert (src.domain_field, src.domain_value, src.streaming, src.path) == (
        "meta.redpajama_set_name", "RedPajamaGithub", False, str(tmp_path / "mixed.jsonl"))
    assert books.source().revision == "main"
    assert config_from_json(cfg.to_json()).domains == cfg.domains  # what a worker rebuilds

    corpus = cfg.build_corpus()
    assert corpus.domains == ("code", "books")
    assert {d: sum(n) for d, n in corpus.document_counts().items()} == {"code": 30, "books": 30}
    code_text = corpus.decode(corpus.train_tokens("code")[:400].tolist())
    books_text = corpus.decode(corpus.train_tokens("books")[:400].tolist())
    assert "lambda" in code_text and "river" not in code_text and "encyclopedia" not in code_text
    assert "river" in books_text and "lambda" not in books_text


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ('domain_field = "meta.set"', "domains.a.domain_value", "is missing"),
        ('domain_value = "x"', "domains.a.domain_field", "is missing"),
        ('domain_field = ""\ndomain_value = "x"', "domains.a.domain_field", "non-empty string"),
        ('domain_field = "meta.set"\ndomain_value = [1, 2]', "domains.a.domain_value", "must be a string"),
        ("streaming = 1", "domains.a.streaming", "true or false"),
        ("revision = 3", "domains.a.revision", "non-empty string"),
        ("domian_field = \"x\"", "domains[0].domian_field", "did you mean 'domain_field'"),
    ],
)
def test_bad_domain_column_keys(extra: str, key: str, fragment: str) -> None:
    err = _err(PROXY.replace('path = "a.jsonl"\n', f'path = "a.jsonl"\n{extra}\n'))
    assert err.key == key, str(err)
    assert fragment in str(err), str(err)
