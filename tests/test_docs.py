"""The documentation's code runs as written: the README's Python blocks and every module's examples.

Each block runs in a fresh interpreter, in a scratch folder holding the files the examples name
(``code.jsonl``, ``prose.jsonl``, ``data/...`` and a copy of ``examples/``). Two things are made
cheaper, never skipped: ``study.optimize`` with a proxy objective runs at most 3 trials, and a proxy trains on at most
4,096 tokens (its mixture's weights and seed unchanged), so a block that trains GPT-2 proxies on
1e6 tokens per run still builds its corpus, model and study and trains for real. The README's
Hub-dataset block needs the Hugging Face Hub, which CI cannot reach; it is the one block listed in
:data:`NEEDS_NETWORK`.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re
import shutil
import subprocess
import sys
import textwrap

import pytest


ROOT = Path(__file__).resolve().parents[1]
NEEDS_NETWORK = ("DomainSource(\"wikimedia/wikipedia\"",)

PRELUDE = textwrap.dedent(
    '''
    import dataclasses, os
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import optuna

    _optimize = optuna.study.Study.optimize

    def _capped(self, func, n_trials=None, *args, **kwargs):
        if type(func).__name__ == "ProxyObjective" and n_trials is not None:
            n_trials = min(int(n_trials), 3)  # real proxy training: 3 trials show it works
        return _optimize(self, func, n_trials, *args, **kwargs)

    optuna.study.Study.optimize = _capped

    import optuna_autoscale.proxy.train as _train
    from optuna_autoscale.mixture import Mixture as _Mixture

    _train_proxy = _train.train_proxy

    def _small(corpus, mixture, config=None, **kwargs):
        config = config or _train.ProxyConfig()
        if float(mixture.tokens) <= 65536:
            return _train_proxy(corpus, mixture, config, **kwargs)  # already small: as written
        small = _Mixture(dict(mixture.weights), min(float(mixture.tokens), 4096.0), mixture.seed)
        config = dataclasses.replace(config, batch_size=min(config.batch_size, 4),
                                     eval_tokens=max(config.context, min(config.eval_tokens, 512)))
        return _train_proxy(corpus, small, config, **kwargs)

    _train.train_proxy = _small
    '''
)


def _docstring_blocks() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "optuna_autoscale").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node, clean=True)
            if not doc or "code-block:: python" not in doc:
                continue
            for k, m in enumerate(re.finditer(r"\.\. code-block:: python\n\n((?:(?:[ \t]+.*)?\n)+)", doc + "\n")):
                name = f"{path.relative_to(ROOT)}:{getattr(node, 'name', 'module')}:{k}"
                out.append((name, textwrap.dedent(m.group(1))))
    return out


def _readme_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return [(f"README.md:block{k}", m.group(1)) for k, m in enumerate(re.finditer(r"```python\n(.*?)```", text, re.S))]


def _scratch(tmp: Path) -> Path:
    # Enough text per domain for a validation split of several sequences at context 128, and for the
    # README's 4-epoch caps to allow its 6e5-token budget (about 1e5 unique tokens per domain).
    n = 6000
    lines = {
        "code": [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(n)],
        "prose": [f"The {i}th story tells of a river that ran {i % 5} miles to the sea, past {i % 11} mills."
                  for i in range(n)],
        "web": [f"Click here to read post number {i} about cats and the {i % 9} best tips." for i in range(n)],
        "books": [f"Chapter {i}. It was a dark and stormy night, the {i % 4}th of its kind." for i in range(n)],
    }
    import json

    import pandas as pd

    (tmp / "data").mkdir()
    for name in ("code", "prose"):
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines[name]))
    (tmp / "data" / "code.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines["code"]))
    pd.DataFrame({"text": lines["web"]}).to_parquet(tmp / "data" / "web.parquet")
    (tmp / "data" / "books.txt").write_text("\n\n".join(lines["books"]) + "\n")
    shutil.copytree(ROOT / "examples", tmp / "examples")
    shutil.copytree(ROOT / "package", tmp / "package")
    return tmp


BLOCKS = _readme_blocks() + _docstring_blocks()

RUNNER = textwrap.dedent(
    """
    import json, os, shutil, sys, tempfile, traceback
    blocks = json.load(open(sys.argv[1]))
    scratch = sys.argv[2]
    out = {}
    for name, code in blocks:
        cwd = tempfile.mkdtemp(prefix="doc-")
        shutil.copytree(scratch, cwd, dirs_exist_ok=True)
        os.chdir(cwd)
        try:
            exec(compile(code, name, "exec"), {"__name__": "__main__"})
            out[name] = None
        except BaseException:  # an example that calls sys.exit or raises anything fails
            out[name] = traceback.format_exc()[-4000:]
    json.dump(out, open(sys.argv[3], "w"))
    """
)


@pytest.fixture(scope="module")
def doc_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Run every block once, in one interpreter (each in its own scratch folder); name -> traceback or None."""
    import json

    tmp = tmp_path_factory.mktemp("docs")
    scratch = tmp / "scratch"
    scratch.mkdir()
    _scratch(scratch)
    runnable = [(n, c) for n, c in BLOCKS if not any(m in c for m in NEEDS_NETWORK)]
    (tmp / "blocks.json").write_text(json.dumps(runnable))
    (tmp / "runner.py").write_text(PRELUDE + "\n" + RUNNER)
    proc = subprocess.run([sys.executable, str(tmp / "runner.py"), str(tmp / "blocks.json"), str(scratch),
                           str(tmp / "out.json")], cwd=tmp, capture_output=True, text=True, timeout=1500,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "PYTHONPATH": str(ROOT),
                               "OPENBLAS_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "out.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name,code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_example_runs_as_written(name: str, code: str, doc_results: dict[str, str | None]) -> None:
    if any(marker in code for marker in NEEDS_NETWORK):
        pytest.skip("needs the Hugging Face Hub (no network in CI)")
    assert doc_results[name] is None, f"{name} failed:\n{code}\n--- traceback ---\n{doc_results[name]}"
