"""Progress of long fits on a terminal: a callback that draws a delayed tqdm bar."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
from typing import Any


__all__ = ["PROGRESS_DELAY", "terminal_progress"]

PROGRESS_DELAY = 2.0
"""Seconds a fit runs before its progress bar appears (on a terminal only)."""


@contextlib.contextmanager
def terminal_progress(desc: str, unit: str = "domain fit") -> Iterator[Callable[[int, int], Any]]:
    """A ``progress(done, total)`` callback drawing a bar on a terminal (none in logs or CI).

    The bar appears once the fit has run :data:`PROGRESS_DELAY` seconds and is removed at the end.
    """
    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            from tqdm.auto import tqdm

            bars.append(tqdm(total=total, desc=desc, unit=unit, delay=PROGRESS_DELAY, disable=None, leave=False))
        bar = bars[0]
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()
