"""optuna-dashboard: our figures and note, read back through optuna-dashboard's own WSGI app and
shown in a real headless Chromium."""
from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest

from _autoscale_helpers import BUDGETS
from _autoscale_helpers import completed_study  # noqa: F401  (session fixture)
from _autoscale_helpers import DOMAINS
from _autoscale_helpers import REPO
from optuna_autoscale import AutoScaleSampler
from optuna_autoscale import dashboard as dash
from optuna_autoscale.simulate import separable


optuna.logging.set_verbosity(optuna.logging.WARNING)


def _wsgi_get(app: object, path: str) -> tuple[str, dict]:
    environ: dict = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "wsgi.input": io.BytesIO(b"")}
    setup_testing_defaults(environ)
    out: dict = {}

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        out["status"] = status
        out["headers"] = dict(headers)

    body = b"".join(app(environ, start_response))  # type: ignore[operator]
    return out["status"], json.loads(body)


@pytest.fixture(scope="module")
def refreshed(completed_study: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:  # noqa: F811
    """A copy of the completed study with our figures and note saved into it."""
    url, name = completed_study
    src = Path(url.split(":///", 1)[1])
    dst = tmp_path_factory.mktemp("dash") / "study.db"
    shutil.copy(src, dst)
    copy_url = f"sqlite:///{dst}"
    study = optuna.load_study(study_name=name, storage=copy_url)
    ids = dash.refresh(study, targets=[1e10])
    assert ids == list(dash.FIGURE_IDS.values())
    return copy_url, name


def test_wsgi_app_serves_our_figures_note_and_sortable_attrs(refreshed: tuple[str, str]) -> None:
    url, name = refreshed
    storage = optuna.storages.RDBStorage(url)
    app = optuna_dashboard.wsgi(storage)
    status, studies = _wsgi_get(app, "/api/studies")
    assert status.startswith("200")
    study_id = next(s["study_id"] for s in studies["study_summaries"] if s["study_name"] == name)
    status, detail = _wsgi_get(app, f"/api/studies/{study_id}")
    assert status.startswith("200")
    graphs = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    assert set(dash.FIGURE_IDS.values()) <= set(graphs)
    weights = graphs["autoscale-mixture-weights"]
    assert weights["layout"]["xaxis"]["type"] == "log"
    assert {t["name"] for t in weights["data"]} >= {f"{d} (fitted optimum)" for d in DOMAINS}
    progress = graphs["autoscale-design-progress"]
    assert "18/18" in progress["layout"]["title"]["text"]
    assert graphs["autoscale-domain-fits"]["data"], "per-domain fits are drawn"
    assert any(t["name"] == "predicted = observed" for t in graphs["autoscale-verification"]["data"])
    # the markdown note summarises the result
    note = detail["note"]["body"]
    assert note.startswith(f"# AutoScale: {name}")
    assert "Fitted optimal weights" in note and "Extrapolated mixtures" in note and "Verification" in note
    # weights, tokens and per-domain losses are numeric, so their columns sort
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    for d in DOMAINS:
        assert sortable[f"weight_{d}"] is True
        assert sortable[f"loss_{d}"] is True
    assert sortable["tokens"] is True


def test_refresh_replaces_rather_than_accumulates(refreshed: tuple[str, str]) -> None:
    url, name = refreshed
    study = optuna.load_study(study_name=name, storage=url)
    dash.save_figures(study)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    ids = optuna_dashboard._custom_plot_data.list_graph_object_ids(attrs)
    assert sorted(ids) == sorted([*dash.FIGURE_IDS.values(), dash.SUMMARY_CARD_ID])


def test_callback_refreshes_as_trials_finish(tmp_path: Path) -> None:
    land = separable(domains=list(DOMAINS), seed=3)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'cb.db'}", study_name="cb",
                                sampler=AutoScaleSampler(land.domains, list(BUDGETS), seed=0))
    cb = dash.DashboardCallback(every=1)
    study.optimize(land.objective(), n_trials=2, callbacks=[cb])
    attrs = study._storage.get_study_system_attrs(study._study_id)
    ids = optuna_dashboard._custom_plot_data.list_graph_object_ids(attrs)
    assert "autoscale-design-progress" in ids
    progress = json.loads(optuna_dashboard._custom_plot_data.get_plotly_graph_objects(attrs)["autoscale-design-progress"])
    assert "2/18" in progress["layout"]["title"]["text"]
    assert cb.refreshes == 2 and cb.refits == 0  # no budget complete yet: nothing to fit
    study.optimize(land.objective(), callbacks=[cb])  # to the end of the design
    assert study.sampler.is_complete(study)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    graphs = optuna_dashboard._custom_plot_data.get_plotly_graph_objects(attrs)
    assert "18/18" in json.loads(graphs["autoscale-design-progress"])["layout"]["title"]["text"]
    weights = json.loads(graphs["autoscale-mixture-weights"])
    assert len([t for t in weights["data"] if t["mode"] == "markers"]) == len(DOMAINS)
    verification = json.loads(graphs["autoscale-verification"])
    assert len([t for t in verification["data"] if t["mode"] == "markers+text"]) == 2  # verify_optimum, verify_predicted
    # refits happen only when what the fits depend on changed: far fewer than trials
    assert 2 <= cb.refits < len(study.trials) / 2
    assert "Fitted optimal weights" in optuna_dashboard.get_note(study)


def test_callback_never_stops_the_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("dashboard down for postgresql://u:sekrit99@h/db")

    monkeypatch.setattr(dash, "save_summary_note", boom)
    land = separable(domains=["a", "b"], seed=0)
    study = optuna.create_study(sampler=AutoScaleSampler(land.domains, [1e8], seed=0, verify=False))
    with caplog.at_level(logging.WARNING, logger="optuna_autoscale.dashboard"):
        study.optimize(land.objective(), n_trials=3, callbacks=[dash.DashboardCallback()])
    assert len(study.trials) == 3
    assert "Could not refresh the AutoScale dashboard figures" in caplog.text
    assert "sekrit99" not in caplog.text


def test_callback_arguments() -> None:
    with pytest.raises(ValueError, match="every must be a positive integer"):
        dash.DashboardCallback(every=0)
    with pytest.raises(ValueError, match="min_interval"):
        dash.DashboardCallback(min_interval=-1)


# ------------------------------------------------------------------------------------ Chromium
def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None and os.geteuid() == 0 and shutil.which("apt-get"):
        # The test setup installs Debian's chromium when .ci/run has not.
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False, capture_output=True, timeout=900)
        exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is needed for the browser test: apt-get install -y chromium")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chromium_args(exe: str, profile: Path) -> list[str]:
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--disable-quic",
            f"--user-data-dir={profile}", "--window-size=1400,2400", "--hide-scrollbars",
            "--virtual-time-budget=20000"]


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_in_headless_chromium(refreshed: tuple[str, str], tmp_path: Path) -> None:
    exe = _chromium()
    url, name = refreshed
    port = _free_port()
    env = dict(os.environ)
    env["OPTUNA_AUTOSCALE_STORAGE"] = url
    server = subprocess.Popen(
        [sys.executable, "-m", "optuna_autoscale.commands", "dashboard", "--study", name, "--port", str(port),
         "--no-refresh"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=2) as r:
                    studies = json.loads(r.read())
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"dashboard exited: {server.stdout.read() if server.stdout else ''}")
                time.sleep(0.2)
        else:
            pytest.fail("dashboard did not start")
        study_id = next(s["study_id"] for s in studies["study_summaries"] if s["study_name"] == name)
        page = f"{base}/dashboard/studies/{study_id}"
        dom = subprocess.run(_chromium_args(exe, tmp_path / "profile-dom") + ["--dump-dom", page],
                             capture_output=True, text=True, timeout=180)
        assert 'id="user-defined-plot:autoscale-mixture-weights"' in dom.stdout, dom.stderr[-2000:]
        assert "Optimal mixture weights vs budget" in dom.stdout, "plotly drew the figure's title"
        assert "main-svg" in dom.stdout, "plotly rendered SVG"
        shot = tmp_path / "dashboard.png"
        subprocess.run(_chromium_args(exe, tmp_path / "profile-shot") + [f"--screenshot={shot}", page],
                       capture_output=True, text=True, timeout=180)
        assert shot.exists() and shot.stat().st_size > 20_000, "a screenshot of the rendered page"
        keep = os.environ.get("AUTOSCALE_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, Path(keep) / "dashboard.png")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


# ------------------------------------------------------------------------------ issue 15: what a person reads
def test_metric_name_comes_from_the_run_config_or_the_objective() -> None:
    study = optuna.create_study()
    assert dash.set_metric_name(study) is None and study.metric_names is None  # nothing to go by: no guess
    study._storage.set_study_system_attr(study._study_id, "autoscale:run_config",
                                         json.dumps({"study": {"objective": "proxy", "metric": "mean_ppl"}}))
    assert dash.set_metric_name(study) == "mean validation perplexity" == study.metric_names[0]
    assert dash.set_metric_name(study, "other") == "mean validation perplexity"  # a name, once set, stays
    assert dash.metric_label("mean_loss") == "mean validation loss"
    assert dash.metric_label({"code": 1.0, "web": 3.0}) == "weighted validation loss (code 0.25, web 0.75)"
    assert dash.metric_label("mean_loss", "simulate") == "simulated loss"


def test_study_page_points_to_the_note(refreshed: tuple[str, str]) -> None:
    url, name = refreshed
    study = optuna.load_study(study_name=name, storage=url)
    graphs = optuna_dashboard._custom_plot_data.get_plotly_graph_objects(
        study._storage.get_study_system_attrs(study._study_id))
    note_link = f"/dashboard/studies/{study._study_id}/note"
    for gid in dash.FIGURE_IDS.values():
        assert note_link in json.loads(graphs[gid])["layout"]["title"]["text"], gid
    card = json.loads(graphs[dash.SUMMARY_CARD_ID])
    text = card["layout"]["annotations"][0]["text"]
    assert note_link in text and "budgets fitted" in text and "ignore them" in text
    # the user attr is one short line; the full JSON is kept for machines
    from optuna_autoscale.results import read_summary

    assert isinstance(study.user_attrs["autoscale:summary"], str) and len(study.user_attrs["autoscale:summary"]) < 400
    assert read_summary(study)["optima"]


def test_note_and_report_show_verdicts_noise_and_warnings(refreshed: tuple[str, str], tmp_path: Path) -> None:
    from optuna_autoscale.commands import write_report

    url, name = refreshed
    study = optuna.load_study(study_name=name, storage=url)
    note = dash.summary_markdown(study)
    assert "| check | budget | predicted gain | observed gain | verdict |" in note
    assert "Noise estimate" in note or "No noise estimate" in note
    html = write_report(study, tmp_path / "r.html").read_text()
    assert "<th>verdict</th>" in html and 'class="verification"' in html
    assert "<h2>Noise and warnings</h2>" in html
    assert "table{max-width:100%}" in html
