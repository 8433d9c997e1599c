"""What the subcommands share: the :class:`Command` record, user errors, the study options and text tables.

Storage URLs with passwords: pass them through the ``OPTUNA_AUTOSCALE_STORAGE`` environment
variable rather than ``--storage`` (command lines are visible to other users of a machine).
Every message redacts them either way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import math
import os
import sys
from typing import Any
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import optuna

    from optuna_autoscale.config import RunConfig


RUN_CONFIG_ATTR = "autoscale:run_config"
"""Study system attr holding the run config as JSON (storage password redacted)."""


@dataclass(frozen=True)
class Command:
    """One subcommand (``path`` may be nested, e.g. ``("corpus", "build")``).

    Attributes:
        path: the words that select it, e.g. ``("corpus", "build")``.
        help: one line for the parent's list of subcommands.
        description: the paragraph at the top of its ``--help``.
        examples: example command lines shown at the end of its ``--help``.
        add_arguments: adds its options to an ``argparse.ArgumentParser``.
        run: runs it with the parsed arguments and returns the exit status.
    """

    path: tuple[str, ...]
    help: str
    description: str
    examples: tuple[str, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A user-facing error of a subcommand (printed without a traceback, exit status 2)."""


def handled(fn: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    """Run a study subcommand: known errors become one redacted line on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from optuna_autoscale.config import ConfigError
        from optuna_autoscale.storage import install_log_redaction
        from optuna_autoscale.storage import redact_text
        from optuna_autoscale.storage import StorageUnreachableError

        urls = _redaction_urls(args)
        install_log_redaction(urls)
        try:
            return int(fn(args) or 0)
        except (CommandError, ConfigError, StorageUnreachableError, FileNotFoundError, ValueError, ImportError) as e:
            print(f"optuna-autoscale {args.command}: error: {redact_text(str(e), urls)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"optuna-autoscale {args.command}: interrupted", file=sys.stderr)
            return 130

    run.__name__ = fn.__name__
    return run


def _redaction_urls(args: argparse.Namespace) -> list[str]:
    urls = [getattr(args, "storage", None) or "", os.environ.get("OPTUNA_AUTOSCALE_STORAGE", "")]
    return [u for u in urls if u]


def positive_number(what: str, example: str) -> Callable[[str], float]:
    """An ``argparse`` type for a finite number > 0 of ``what`` (e.g. ``"tokens"``, shown with ``example``)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {what} such as {example}, got {text!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be a finite number > 0, got {text!r}")
        return v

    parse.__name__ = what  # argparse names the type in its own messages
    return parse


float_tokens = positive_number("tokens", "1e10")
"""``argparse`` type of a token count such as ``1e10`` (finite, > 0)."""


def add_study_args(p: argparse.ArgumentParser) -> None:
    """``--storage``, ``--study`` and ``--config``: which study a command reads."""
    g = p.add_argument_group("study")
    g.add_argument("--storage", metavar="URL", help="storage URL (default: $OPTUNA_AUTOSCALE_STORAGE, or the config's)")
    g.add_argument("--study", metavar="NAME", help="study name (default: the config's [study] name)")
    g.add_argument("--config", metavar="CONFIG.toml", help="read the storage and study name from this run config")


def resolve(args: argparse.Namespace) -> tuple[str, str]:
    """``(storage URL, study name)`` from the flags, the environment and ``--config``."""
    from optuna_autoscale.config import load_config
    from optuna_autoscale.storage import STORAGE_ENV

    url = getattr(args, "storage", None) or os.environ.get(STORAGE_ENV) or None
    name = getattr(args, "study", None)
    cfg_path = getattr(args, "config", None)
    if cfg_path and (url is None or name is None):
        cfg = load_config(cfg_path)
        url = url or cfg.study.storage
        name = name or cfg.study.name
    if not url:
        raise CommandError(
            f"no storage given: pass --storage URL, set {STORAGE_ENV} (keeps passwords off the command line) "
            "or pass --config CONFIG.toml."
        )
    if not name:
        raise CommandError("no study given: pass --study NAME or --config CONFIG.toml.")
    return url, name


def load_study(url: str, name: str, *, sampler: Any = None, storage: Any = None) -> optuna.Study:
    """The study ``name`` in ``url``; a :class:`CommandError` listing the studies there if it is missing."""
    import optuna

    from optuna_autoscale.storage import create_storage
    from optuna_autoscale.storage import redact_url

    if storage is None:
        missing = _missing_storage_file(url)
        if missing is not None:
            raise CommandError(
                f"no storage file at {missing}: nothing has run there yet, and this command only reads. Start the "
                "study with `optuna-autoscale run CONFIG.toml` (a relative SQLite path in a config is relative to "
                "the config file's folder; on the command line, to the working directory)."
            )
        storage = create_storage(url, heartbeat_interval=None)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        raise CommandError(
            f"no study named {name!r} in {redact_url(url)}; studies there: {', '.join(names) or '(none)'}."
        ) from None


def _missing_storage_file(url: str) -> str | None:
    """The absolute path of a SQLite / journal file that ``url`` names and that does not exist, else None.

    Opening such a URL would create an empty database: a read-only command must not leave one behind.
    """
    from pathlib import Path

    for prefix in ("sqlite:///", "journal:///", "journal:"):
        if url.startswith(prefix):
            rest = url[len(prefix):].split("?", 1)[0]
            if not rest or rest == ":memory:" or rest.startswith("file:"):
                return None
            path = Path(("/" + rest) if prefix == "journal:///" else rest).expanduser().resolve()
            return None if path.exists() else str(path)
    return None


def run_config_of(study: optuna.Study) -> RunConfig | None:
    """The run config that ``run`` stored in the study, or None."""
    from optuna_autoscale.config import config_from_json
    from optuna_autoscale.ledger import study_system_attrs

    raw = study_system_attrs(study).get(RUN_CONFIG_ATTR)
    return None if raw is None else config_from_json(raw)


def design_config_of(study: optuna.Study) -> dict[str, Any]:
    """The study's stored AutoScale design config; a :class:`CommandError` if it has none yet."""
    from optuna_autoscale.design import CONFIG_ATTR
    from optuna_autoscale.ledger import stored_design_config

    config = stored_design_config(study)
    if config is None:
        raise CommandError(
            f"study {study.study_name!r} has no AutoScale design yet (no {CONFIG_ATTR!r} attr): start it with "
            "`optuna-autoscale run CONFIG.toml` (or study.optimize with AutoScaleSampler)."
        )
    return config


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: left-aligned text, right-aligned numbers, a dashed rule under the header."""
    cells = [[str(h) for h in headers]] + [[cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        out.append("  ".join(c.rjust(w) if j and _numeric(c) else c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def cell(v: Any) -> str:
    """A table cell: floats to 6 significant digits (small ones in e-notation)."""
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
