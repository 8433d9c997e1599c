"""Figure output shared by the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Any


def save_figure(fig: Any, stem: Path) -> list[str]:
    """Write a plotly figure to ``<stem>.html`` and, when kaleido works, ``<stem>.png``; return the paths."""
    paths = [str(stem.with_suffix(".html"))]
    fig.write_html(paths[0], include_plotlyjs="cdn")
    try:
        fig.write_image(str(stem.with_suffix(".png")), scale=2)
        paths.append(str(stem.with_suffix(".png")))
    except Exception as e:  # kaleido missing or unable to start a browser
        print(f"PNG not written ({type(e).__name__}); HTML only.", file=sys.stderr)
    return paths
