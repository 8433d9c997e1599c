"""Release hygiene: the version is defined once, ``python -m build`` makes an sdist and a wheel, and
the wheel installs into a fresh virtual environment and runs the quickstart from there, without the
repository on the path.

The build runs without build isolation (``--no-isolation``: the test environment's setuptools) and
the wheel is installed with ``--no-deps --no-index``, so nothing is downloaded; the fresh venv sees
this environment's site-packages through a ``.pth`` file (optuna, numpy, scipy are reused, torch is
never resolved), while the package itself can only come from the wheel.
"""
from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile

import pytest

import optuna_autoscale


ROOT = Path(__file__).resolve().parents[1]
# What a release is built from (the sdist's MANIFEST.in adds examples/ and tests/).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in", "optuna_autoscale", "examples",
           "tests")


def _version_of_sources() -> str:
    text = (ROOT / "optuna_autoscale" / "version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    assert match, text
    return match.group(1)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would put the repository on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(OPENBLAS_NUM_THREADS="1", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def test_version_is_defined_once() -> None:
    version = _version_of_sources()
    assert optuna_autoscale.__version__ == version
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert 'attr = "optuna_autoscale.version.__version__"' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M), "a static version in pyproject.toml"
    others = [p for p in (ROOT / "optuna_autoscale").rglob("*.py")
              if p.name != "version.py" and re.search(r"^__version__\s*=", p.read_text(encoding="utf-8"), re.M)]
    assert others == [], f"__version__ assigned outside version.py: {others}"
    assert (ROOT / "optuna_autoscale" / "py.typed").is_file()
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "Keep a Changelog" in changelog and re.search(r"^## \[(Unreleased|\d+\.\d+\.\d+)\]", changelog, re.M)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """``python -m build`` (sdist, then the wheel from the sdist) on a copy of the release sources,
    so the build's egg-info and build/ folders never land in the working tree."""
    work = tmp_path_factory.mktemp("release")
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.db", ".hypothesis", ".pytest_cache", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = work / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600, env=_clean_env(), cwd=work)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    version = _version_of_sources()
    sdists = list(out.glob("*.tar.gz"))
    wheels = list(out.glob("*.whl"))
    assert [p.name for p in sdists] == [f"optuna_autoscale-{version}.tar.gz"]
    assert [p.name for p in wheels] == [f"optuna_autoscale-{version}-py3-none-any.whl"]
    # setuptools' own deprecation notices (e.g. a TOML-table license) mean the metadata needs updating.
    assert "deprecated" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    yield sdists[0], wheels[0]


@pytest.mark.slow
def test_build_makes_an_sdist_and_a_wheel(dist: tuple[Path, Path]) -> None:
    sdist, wheel = dist
    version = _version_of_sources()
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"optuna_autoscale-{version}.dist-info/METADATA").decode()
        entry_points = zf.read(f"optuna_autoscale-{version}.dist-info/entry_points.txt").decode()
    assert {"optuna_autoscale/__init__.py", "optuna_autoscale/py.typed", "optuna_autoscale/version.py",
            "optuna_autoscale/sampler.py", "optuna_autoscale/proxy/__init__.py",
            "optuna_autoscale/baselines/__init__.py", f"optuna_autoscale-{version}.dist-info/licenses/LICENSE"} <= names
    assert not [n for n in names if n.startswith(("tests/", "package/", "benchmarks/", "examples/"))]
    assert f"\nVersion: {version}\n" in metadata and "License-Expression: MIT" in metadata
    assert "Requires-Dist: optuna>=" in metadata and 'Requires-Dist: torch>=2.6; extra == "proxy"' in metadata
    assert "optuna-autoscale = optuna_autoscale.cli:main" in entry_points
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    assert {"CHANGELOG.md", "LICENSE", "README.md", "pyproject.toml", "optuna_autoscale/py.typed",
            "optuna_autoscale/version.py", "tests/conftest.py", "tests/_autoscale_helpers.py",
            "examples/quickstart.py"} <= members


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_the_quickstart(dist: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip())
    # The dependencies come from this environment's site-packages (plain path entries: the .pth files
    # in them, such as an editable install of this repository, are not processed).
    (purelib / "_outer_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "--ignore-installed",
         str(wheel)],
        capture_output=True, text=True, timeout=300, env=_clean_env(), cwd=tmp_path,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr

    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    probe = subprocess.run(
        [str(py), "-c",
         "import sys, importlib.resources as r, optuna_autoscale as oa; "
         "print(oa.__file__); print(oa.__version__); print(r.files('optuna_autoscale').joinpath('py.typed').is_file()); "
         "print(any(p.rstrip('/') == sys.argv[1] for p in sys.path))", str(ROOT)],
        capture_output=True, text=True, timeout=120, env=_clean_env(), cwd=run_dir, check=True,
    ).stdout.split("\n")
    assert Path(probe[0]).resolve().is_relative_to(venv.resolve()), probe
    assert probe[1:4] == [optuna_autoscale.__version__, "True", "False"], probe
    cli = subprocess.run([str(venv / "bin" / "optuna-autoscale"), "--version"], capture_output=True, text=True,
                         timeout=120, env=_clean_env(), cwd=run_dir, check=True)
    assert cli.stdout.strip() == f"optuna-autoscale {optuna_autoscale.__version__}"

    # The quickstart, copied out of the repository and run from there (sys.path[0] is its folder).
    script = run_dir / "quickstart.py"
    shutil.copy2(ROOT / "examples" / "quickstart.py", script)
    out = subprocess.run([str(py), str(script), "--db", str(run_dir / "q.db")], capture_output=True, text=True,
                         timeout=900, env=_clean_env(), cwd=run_dir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "complete: True" in out.stdout
    assert "Extrapolated mixture at 4e+09 tokens" in out.stdout and "verify_predicted" in out.stdout
