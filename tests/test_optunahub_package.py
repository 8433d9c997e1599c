"""The OptunaHub package ``package/samplers/autoscale``: the registry's layout and front matter, it
loads with ``optunahub.load_local_module`` (no network), and its example and README example run on
the simulator."""
from __future__ import annotations

from pathlib import Path
import re
import runpy
import types

import optuna
import optunahub
import pytest
import yaml

import optuna_autoscale


REGISTRY_ROOT = Path(__file__).resolve().parents[1] / "package"
PACKAGE = REGISTRY_ROOT / "samplers" / "autoscale"
EXPORTS = ("AutoScaleResult", "AutoScaleSampler", "Mixture", "enqueue_mixture", "suggest_mixture")


@pytest.fixture(scope="module")
def hub_module() -> types.ModuleType:
    return optunahub.load_local_module(package="samplers/autoscale", registry_root=str(REGISTRY_ROOT))


@pytest.fixture()
def local_hub(monkeypatch: pytest.MonkeyPatch, hub_module: types.ModuleType) -> types.ModuleType:
    """``optunahub.load_module("samplers/autoscale")`` answered from this repository (no network)."""

    def load_module(package: str, **kwargs: object) -> types.ModuleType:
        assert package == "samplers/autoscale", package
        return hub_module

    monkeypatch.setattr(optunahub, "load_module", load_module)
    return hub_module


def _readme() -> tuple[dict[str, object], str]:
    text = (PACKAGE / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match, "README.md must start with the registry's front matter between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def test_layout_of_a_registry_package() -> None:
    for name in ("__init__.py", "README.md", "LICENSE", "example.py", "requirements.txt"):
        assert (PACKAGE / name).is_file(), name
    assert (PACKAGE / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    requirements = (PACKAGE / "requirements.txt").read_text(encoding="utf-8").split()
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}
    assert {"optuna", "optunahub", "optuna-autoscale"} <= names


def test_readme_front_matter_and_sections() -> None:
    meta, body = _readme()
    assert set(meta) == {"author", "title", "description", "tags", "optuna_versions", "license"}
    for key in ("author", "title", "description", "license"):
        assert isinstance(meta[key], str) and meta[key].strip() and "Please fill" not in meta[key], key
    assert meta["license"] == "MIT License"
    assert isinstance(meta["tags"], list) and "sampler" in meta["tags"]  # required under package/samplers/
    assert all(isinstance(t, str) for t in meta["tags"])
    versions = meta["optuna_versions"]
    assert isinstance(versions, list) and versions
    assert all(isinstance(v, str) and re.fullmatch(r"\d+\.\d+\.\d+", v) for v in versions), versions
    headings = re.findall(r"^## (.+)$", body, re.M)
    assert headings == ["Abstract", "APIs", "Installation", "Example", "Others"]
    assert not re.search(r"<[A-Za-z/!][^>]*>", body), "the registry strips HTML tags from README.md"
    for name in EXPORTS:
        assert f"`{name}(" in body or f"`{name}." in body, name


def test_loads_with_optunahub_and_exports_the_library(hub_module: types.ModuleType) -> None:
    assert hub_module.__name__ == "optunahub_registry.package.samplers.autoscale"
    assert sorted(hub_module.__all__) == sorted(EXPORTS)
    for name in EXPORTS:
        assert getattr(hub_module, name) is getattr(optuna_autoscale, name)
    assert issubclass(hub_module.AutoScaleSampler, optuna.samplers.BaseSampler)


def test_example_runs_on_the_simulator(local_hub: types.ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    ns = runpy.run_path(str(PACKAGE / "example.py"), run_name="__main__")
    out = capsys.readouterr().out
    study, sampler, land = ns["study"], ns["sampler"], ns["land"]
    assert isinstance(sampler, local_hub.AutoScaleSampler) and sampler.is_complete(study)
    assert "design complete: True" in out
    assert set(ns["result"].optima) == {1e8, 4e8}
    # The extrapolated mixture is at least as good as uniform on the simulator's true loss.
    match = re.search(r"true loss at 4e\+09: extrapolated ([\d.]+), uniform ([\d.]+), oracle ([\d.]+)", out)
    assert match, out
    extrapolated, uniform, oracle = map(float, match.groups())
    assert oracle <= extrapolated + 1e-9 and extrapolated <= uniform
    assert len(re.findall(r"^verify_(optimum|predicted) at ", out, re.M)) == 3
    assert len(land.domains) == 5


def test_readme_example_runs(local_hub: types.ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    _, body = _readme()
    blocks = re.findall(r"^```python\n(.*?)^```$", body.split("## Example", 1)[1], re.M | re.S)
    assert len(blocks) == 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ns: dict[str, object] = {"__name__": "__main__"}
    exec(compile(blocks[0], str(PACKAGE / "README.md"), "exec"), ns)  # noqa: S102 - our own README
    assert ns["sampler"].is_complete(ns["study"])  # type: ignore[attr-defined]
    assert "verify_predicted" in capsys.readouterr().out
