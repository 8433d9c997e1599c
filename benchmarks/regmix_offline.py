"""Offline benchmark on RegMix's released proxy runs: how well does each loss model rank mixtures?

Data: ``../shared/data/regmix`` (relative to the repository root; see its README). 512 proxy runs
of about 1M parameters on random mixtures of 17 Pile domains (training), 256 held-out 1M runs,
the same 256 mixtures at 60M parameters, and 64 mixtures at 1B parameters (about 25B tokens);
validation losses on 13 Pile domains.

Every model is fitted per validation domain on the 512 training runs only, and scored on

- the 256 held-out 1M runs: Spearman rank correlation and R^2 of predicted vs actual loss;
- rank transfer: Spearman of the 1M model's predictions vs the actual losses at 60M and 1B.

Models (mixture weights ``w``, fixed budget):

- **AutoScale transfer law** (ours): the AutoScale power law with data transfer between
  domains, ``L = c + sum_k beta_k (sum_j A_kj w_j + n0_k)^(-gamma_k)``, ``A >= 0``, with ``K``
  components. ``K = m`` and ``A = I`` is the separable AutoScale law; each component is a
  "skill" fed by several domains at different exchange rates. Bounds ``n0 >= 0.01``,
  ``gamma <= 1``; predictions clipped to the training-loss range +-25% (see
  :func:`fit_transfer_law`).
- **AutoScale separable law**: ``L = c + sum_j beta_j (w_j + n0_j)^(-gamma_j)`` (the paper's
  per-domain power law, all domains at once).
- **Data Mixing Law** (Ye et al. 2024): ``L = c + k exp(sum_j t_j w_j)``.
- **LightGBM** (RegMix's regressor, its hyper-parameters; early stopping on 10% of the
  *training* runs) and **ridge** (RegMix's linear baseline, penalty by leave-one-out).
- **LightGBM, RegMix protocol**: as in RegMix's notebook, early stopping on the test runs
  themselves (optimistic; shown only to reproduce their 0.989 on Pile-CC).

Usage::

    python benchmarks/regmix_offline.py                 # full run (several minutes on 2 cores)
    python benchmarks/regmix_offline.py --quick         # smoke run (seconds)
    python benchmarks/regmix_offline.py --data /path/to/regmix --components 4

Prints markdown tables, writes ``benchmarks/results/regmix_offline.json`` and plotly figures
(HTML; PNG too when kaleido is installed).
"""

from __future__ import annotations

import os


# One BLAS thread: the fits are many small problems; threads only contend on small machines.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402
from collections.abc import Sequence  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy import optimize  # noqa: E402
from scipy import stats  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._figures import save_figure  # noqa: E402
from optuna_autoscale.baselines import fit_data_mixing_law  # noqa: E402
from optuna_autoscale.baselines import fit_regressor  # noqa: E402
from optuna_autoscale.baselines import lightgbm_available  # noqa: E402


# ------------------------------------------------------------------------------ the K-component transfer law
def _least_squares(fun: Any, jac: Any, p0: np.ndarray, lo: np.ndarray, hi: np.ndarray, nfev: int) -> Any:
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return optimize.least_squares(fun, np.clip(p0, lo + 1e-9, hi - 1e-9), jac=jac, bounds=(lo, hi),
                                      method="trf", max_nfev=nfev)


def fit_component_law(x: np.ndarray, y: np.ndarray, *, components: int = 4, starts: int = 2, nfev: int = 1000,
                      seed: int = 0, n0_min: float = 1e-2, gamma_max: float = 1.0,
                      clip: float = 0.25) -> Callable[[np.ndarray], np.ndarray]:
    """Transfer law in mixture weights with ``K`` components, ``c + sum_k beta_k (A_k . w + n0_k)^(-gamma_k)``.

    One validation domain at one budget (``benchmarks/regmix_offline.py``). ``A >= 0``; ``K = m``
    and ``A = I`` is the separable law; each component is a "skill" fed by several domains at
    different exchange rates. Log-parametrised (beta, n0, gamma, A > 0) with box bounds that keep
    extrapolation tame: ``n0 >= n0_min`` and ``gamma <= gamma_max``. Several random starts for
    ``A``; the lowest training error wins. A power law diverges as a component's effective data
    goes to zero, while real losses saturate; predictions are therefore clipped to the training
    losses' range widened by ``clip`` times its width on each side.

    Args:
        x: Mixture weights, ``(n, m)``.
        y: Losses, ``(n,)``.
        components: ``K``.
        starts: Random starts for ``A``.
        nfev: Function evaluations per start.
        seed: Seed of the starts.
        n0_min: Lower bound of ``n0``.
        gamma_max: Upper bound of ``gamma``.
        clip: Widening of the prediction clip range (fraction of the training range).

    Returns:
        A predictor: weights ``(n', m)`` -> losses ``(n',)``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"x must be (n, m) and y (n,), got {x.shape} and {y.shape}.")
    n, m = x.shape
    k = int(components)
    if k < 1:
        raise ValueError(f"components must be >= 1, got {components!r}.")

    def unpack(p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (p[0], np.exp(p[1 : 1 + k]), np.exp(p[1 + k : 1 + 2 * k]), np.exp(p[1 + 2 * k : 1 + 3 * k]),
                np.exp(p[1 + 3 * k :]).reshape(k, m))

    def predict(p: np.ndarray, xn: np.ndarray) -> np.ndarray:
        c, b, n0, g, a = unpack(p)
        z = xn @ a.T + n0  # (n, K) effective data per component
        return c + (b * z ** (-g)).sum(axis=1)

    def jac(p: np.ndarray) -> np.ndarray:
        c, b, n0, g, a = unpack(p)
        z = x @ a.T + n0
        t = b * z ** (-g)
        dz = -t * g / z
        j = np.empty((n, 1 + 3 * k + k * m))
        j[:, 0] = 1.0
        j[:, 1 : 1 + k] = t
        j[:, 1 + k : 1 + 2 * k] = dz * n0
        j[:, 1 + 2 * k : 1 + 3 * k] = -t * np.log(z) * g
        j[:, 1 + 3 * k :] = (dz[:, :, None] * x[:, None, :] * a[None, :, :]).reshape(n, k * m)
        return j

    lo = np.concatenate([[-np.inf], np.full(k, -20.0), np.full(k, np.log(n0_min)), np.full(k, np.log(1e-2)),
                         np.full(k * m, -20.0)])
    hi = np.concatenate([[np.inf], np.full(k, 5.0), np.full(k, np.log(10.0)), np.full(k, np.log(gamma_max)),
                         np.full(k * m, 5.0)])
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        a0 = np.log(rng.uniform(0.05, 1.0, size=(k, m)))
        p0 = np.concatenate([[y.min() - 0.3], np.full(k, np.log(0.3)), np.full(k, np.log(max(0.02, 2 * n0_min))),
                             np.full(k, np.log(min(0.3, gamma_max / 2))), a0.ravel()])
        res = _least_squares(lambda p: predict(p, x) - y, jac, p0, lo, hi, nfev)
        if np.isfinite(res.cost) and (best is None or res.cost < best.cost):
            best = res
    assert best is not None
    span = float(np.ptp(y))
    lo_y, hi_y = float(y.min()) - clip * span, float(y.max()) + clip * span
    return lambda xn: np.clip(predict(best.x, np.asarray(xn, dtype=float)), lo_y, hi_y)


DEFAULT_DATA = REPO / ".." / "shared" / "data" / "regmix"
RESULTS = REPO / "benchmarks" / "results"
HEADLINE = "pile_cc"
REGMIX_PILE_CC_SPEARMAN = 0.989

Predictor = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------ data


def default_data_dir() -> Path:
    """``$AUTOSCALE_SHARED_DATA/regmix`` if set, else ``../shared/data/regmix`` next to the repo."""
    env = os.environ.get("AUTOSCALE_SHARED_DATA")
    return (Path(env) / "regmix") if env else DEFAULT_DATA.resolve()


def _read(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    head = rows[0]
    arr = np.array([[float(v) for v in r] for r in rows[1:]])
    return head[1:], arr[:, 0].astype(int), arr[:, 1:]


def _short(name: str) -> str:
    for prefix in ("metric/the_pile_", "train_the_pile_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.removesuffix("_val_loss")


def load_split(data: Path, mixture_file: str, loss_file: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Mixtures and losses of one split, rows matched by the index column."""
    dom, midx, x = _read(data / mixture_file)
    tgt, lidx, y = _read(data / loss_file)
    pos = {int(i): k for k, i in enumerate(midx)}
    missing = [int(i) for i in lidx if int(i) not in pos]
    if missing:
        raise ValueError(f"{loss_file} has runs {missing[:5]} with no mixture in {mixture_file}.")
    x = x[[pos[int(i)] for i in lidx]]
    return [_short(d) for d in dom], [_short(t) for t in tgt], x / x.sum(axis=1, keepdims=True), y


def load(data: Path) -> dict[str, Any]:
    if not (data / "train_mixture_1m.csv").is_file():
        raise FileNotFoundError(
            f"RegMix data not found in {data}; pass --data DIR (the folder holding train_mixture_1m.csv) or set "
            "AUTOSCALE_SHARED_DATA."
        )
    domains, targets, x_tr, y_tr = load_split(data, "train_mixture_1m.csv", "train_pile_loss_1m.csv")
    splits = {"1M": load_split(data, "test_mixture_1m.csv", "test_pile_loss_1m.csv")}
    for scale, tag in (("60M", "60m"), ("1B", "1B")):
        if (data / f"test_pile_loss_{tag}.csv").is_file():
            splits[scale] = load_split(data, f"test_mixture_{tag}.csv", f"test_pile_loss_{tag}.csv")
    for s in splits.values():
        if s[0] != domains or s[1] != targets:
            raise ValueError("The RegMix splits disagree on domain / target columns.")
    return {"domains": domains, "targets": targets, "train": (x_tr, y_tr), "test": {k: (v[2], v[3]) for k, v in splits.items()}}


# ------------------------------------------------------------------------------------ models


def fit_transfer_law(x: np.ndarray, y: np.ndarray, *, components: int = 4, starts: int = 2, nfev: int = 1000,
                     seed: int = 0, n0_min: float = 1e-2, gamma_max: float = 1.0,
                     clip: float = 0.25) -> Predictor:
    """AutoScale transfer law ``c + sum_k beta_k (A_k . w + n0_k)^(-gamma_k)``, ``A >= 0``.

    This script's own model (it lived in ``optuna_autoscale.transfer`` for a while; this is its only user).
    """
    return fit_component_law(x, y, components=components, starts=starts, nfev=nfev, seed=seed, n0_min=n0_min,
                             gamma_max=gamma_max, clip=clip)


def fit_separable_law(x: np.ndarray, y: np.ndarray, *, nfev: int = 1000) -> Predictor:
    """AutoScale separable law ``c + sum_j beta_j (w_j + n0_j)^(-gamma_j)``."""
    n, m = x.shape

    def unpack(p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        return p[0], np.exp(p[1 : 1 + m]), np.exp(p[1 + m : 1 + 2 * m]), np.exp(p[1 + 2 * m :])

    def predict(p: np.ndarray, xn: np.ndarray) -> np.ndarray:
        c, b, n0, g = unpack(p)
        return c + (b * (xn + n0) ** (-g)).sum(axis=1)

    def jac(p: np.ndarray) -> np.ndarray:
        c, b, n0, g = unpack(p)
        z = x + n0
        t = b * z ** (-g)
        j = np.empty((n, 1 + 3 * m))
        j[:, 0] = 1.0
        j[:, 1 : 1 + m] = t
        j[:, 1 + m : 1 + 2 * m] = -t * g / z * n0
        j[:, 1 + 2 * m :] = -t * np.log(z) * g
        return j

    lo = np.concatenate([[-np.inf], np.full(m, -20.0), np.full(m, np.log(1e-3)), np.full(m, np.log(1e-2))])
    hi = np.concatenate([[np.inf], np.full(m, 5.0), np.full(m, np.log(10.0)), np.full(m, np.log(3.0))])
    p0 = np.concatenate([[y.min() - 0.5], np.full(m, np.log(0.05)), np.full(m, np.log(1e-2)), np.full(m, np.log(0.3))])
    res = _least_squares(lambda p: predict(p, x) - y, jac, p0, lo, hi, nfev)
    return lambda xn: predict(res.x, np.asarray(xn, dtype=float))


def fit_dml(x: np.ndarray, y: np.ndarray) -> Predictor:
    law = fit_data_mixing_law(x, y)
    return lambda xn: law.predict(np.asarray(xn, dtype=float))[:, 0]


def fit_lightgbm_regmix_protocol(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> Predictor:
    """RegMix notebook: LGBMRegressor(lr 1e-2, 1000 rounds), early stopping (3 rounds) on the test set."""
    import lightgbm as lgb

    params = {"objective": "regression", "boosting_type": "gbdt", "learning_rate": 1e-2, "seed": 42,
              "verbosity": -1, "num_threads": 1, "deterministic": True, "force_col_wise": True}
    dtr = lgb.Dataset(x, y)
    booster = lgb.train(params, dtr, num_boost_round=1000, valid_sets=[lgb.Dataset(x_test, y_test, reference=dtr)],
                        callbacks=[lgb.early_stopping(stopping_rounds=3, verbose=False)])
    return lambda xn: np.asarray(booster.predict(np.asarray(xn, dtype=float), num_iteration=booster.best_iteration))


# ------------------------------------------------------------------------------------ scoring


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1.0 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))


def spearman(pred: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(pred) == 0:
        return float("nan")
    return float(stats.spearmanr(pred, y)[0])


def run(
    data: Path,
    *,
    quick: bool = False,
    components: int = 4,
    targets: Sequence[str] | None = None,
    out: Path | None = RESULTS,
    figures: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit every model on every requested validation domain and score it; see the module docstring."""
    ds = load(data)
    x_tr, y_tr = ds["train"]
    all_targets: list[str] = ds["targets"]
    if targets is None:
        targets = [HEADLINE, "arxiv"] if quick else all_targets
    unknown = [t for t in targets if t not in all_targets]
    if unknown:
        raise ValueError(f"Unknown validation domains {unknown}; choose from {all_targets}.")
    if quick:
        components, starts, nfev = min(components, 2), 1, 150
    else:
        starts, nfev = 2, 1000

    models: dict[str, Callable[[np.ndarray, np.ndarray], Predictor]] = {
        f"AutoScale transfer law (K={components})": lambda x, y: fit_transfer_law(
            x, y, components=components, starts=starts, nfev=nfev, seed=seed),
        "AutoScale separable law": lambda x, y: fit_separable_law(x, y, nfev=nfev),
        "Data Mixing Law": fit_dml,
        "ridge": lambda x, y: fit_regressor(x, y, method="ridge"),
    }
    if lightgbm_available():
        models["LightGBM"] = lambda x, y: fit_regressor(x, y, method="lightgbm", seed=seed)
    family = {name: ("parametric" if not name.startswith(("LightGBM", "ridge")) else "regressor") for name in models}

    rows: list[dict[str, Any]] = []
    preds_cc: dict[str, dict[str, list[float]]] = {}
    for tgt in targets:
        ti = all_targets.index(tgt)
        for name, fit in models.items():
            t0 = time.perf_counter()
            predictor = fit(x_tr, y_tr[:, ti])
            seconds = time.perf_counter() - t0
            row: dict[str, Any] = {"target": tgt, "model": name, "family": family[name], "fit_seconds": seconds}
            for scale, (x_te, y_te) in ds["test"].items():
                p = predictor(x_te)
                row[f"spearman_{scale}"] = spearman(p, y_te[:, ti])
                if scale == "1M":
                    row["r2_1M"] = r2(p, y_te[:, ti])
                if tgt == HEADLINE:
                    preds_cc.setdefault(name, {})[scale] = p.tolist()
            rows.append(row)
        if lightgbm_available():
            x_te, y_te = ds["test"]["1M"]
            p = fit_lightgbm_regmix_protocol(x_tr, y_tr[:, ti], x_te, y_te[:, ti])(x_te)
            rows.append({"target": tgt, "model": "LightGBM, RegMix protocol (stops on test)", "family": "reference",
                         "spearman_1M": spearman(p, y_te[:, ti]), "r2_1M": r2(p, y_te[:, ti])})
        done = [r for r in rows if r["target"] == tgt]
        print(f"[{tgt}] " + ", ".join(f"{r['model']}: {r['spearman_1M']:.4f}" for r in done), file=sys.stderr)

    result = {
        "data": str(data),
        "quick": quick,
        "components": components,
        "n_train": int(len(y_tr)),
        "n_test": {k: int(len(v[1])) for k, v in ds["test"].items()},
        "rows": rows,
        "regmix_reported_pile_cc_spearman": REGMIX_PILE_CC_SPEARMAN,
    }
    print(markdown(result))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        suffix = "_quick" if quick else ""
        (out / f"regmix_offline{suffix}.json").write_text(json.dumps(result, indent=1))
        if figures:
            result["figures"] = write_figures(result, ds, preds_cc, out, suffix)
    return result


def _fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    scales = [s for s in ("60M", "1B") if any(f"spearman_{s}" in r for r in rows)]
    out = []
    out.append(f"Fitted on {result['n_train']} RegMix 1M runs; held-out: {result['n_test']}.\n")
    out.append("**Mean over validation domains** (Spearman / R² on the held-out 1M runs; rank transfer = Spearman "
               "of the 1M model's predictions vs actual losses at larger scale)\n")
    head = "| model | family | Spearman 1M | R² 1M | " + " | ".join(f"Spearman {s}" for s in scales) + " |"
    out.append(head)
    out.append("|" + "---|" * (head.count("|") - 1))
    for m in models:
        rs = [r for r in rows if r["model"] == m]
        cells = [_fmt(float(np.nanmean([r["spearman_1M"] for r in rs]))), _fmt(float(np.nanmean([r["r2_1M"] for r in rs])))]
        for s in scales:
            vals = [r[f"spearman_{s}"] for r in rs if f"spearman_{s}" in r]
            cells.append(_fmt(float(np.nanmean(vals))) if vals else "–")
        out.append(f"| {m} | {rs[0]['family']} | " + " | ".join(cells) + " |")
    for metric, label in (("spearman_1M", "Spearman, held-out 1M runs"), ("r2_1M", "R², held-out 1M runs")) + tuple(
        (f"spearman_{s}", f"Spearman, rank transfer to {s}") for s in scales
    ):
        out.append(f"\n**{label}, per validation domain**\n")
        head = "| model | " + " | ".join(targets) + " |"
        out.append(head)
        out.append("|" + "---|" * (len(targets) + 1))
        for m in models:
            cells = []
            for t in targets:
                r = next((r for r in rows if r["model"] == m and r["target"] == t), None)
                cells.append(_fmt(r.get(metric)) if r is not None else "–")
            if all(c == "–" for c in cells):
                continue
            out.append(f"| {m} | " + " | ".join(cells) + " |")
    out.append(f"\nRegMix's reported LightGBM Spearman on Pile-CC (held-out 1M): {REGMIX_PILE_CC_SPEARMAN}.")
    return "\n".join(out)


def write_figures(result: dict[str, Any], ds: dict[str, Any], preds_cc: dict[str, dict[str, list[float]]],
                  out: Path, suffix: str) -> list[str]:
    """Spearman per domain and model (bars), and predicted vs actual Pile-CC loss (scatter)."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        print("plotly is not installed: no figures.", file=sys.stderr)
        return []
    rows = [r for r in result["rows"] if r["family"] != "reference"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    written: list[str] = []
    scales = [s for s in ("1M", "60M", "1B") if any(f"spearman_{s}" in r for r in rows)]
    fig = make_subplots(rows=len(scales), cols=1, shared_xaxes=True,
                        subplot_titles=[f"Spearman, {'held-out' if s == '1M' else 'rank transfer to'} {s}" for s in scales])
    for si, s in enumerate(scales, start=1):
        for mi, m in enumerate(models):
            vals = [next((r.get(f"spearman_{s}") for r in rows if r["model"] == m and r["target"] == t), None) for t in targets]
            fig.add_trace(go.Bar(name=m, x=targets, y=vals, legendgroup=m, showlegend=si == 1,
                                 marker_color=_COLORS[mi % len(_COLORS)]), row=si, col=1)
        fig.update_yaxes(range=[0.5, 1.0], row=si, col=1)
    fig.update_layout(barmode="group", height=300 * len(scales) + 120, title="RegMix offline: rank correlation per validation domain")
    written += save_figure(fig, out / f"regmix_offline_spearman{suffix}")

    if preds_cc:
        ti = ds["targets"].index(HEADLINE)
        fig = make_subplots(rows=1, cols=len(scales), subplot_titles=[f"Pile-CC, {s} runs" for s in scales])
        for ci, s in enumerate(scales, start=1):
            y = ds["test"][s][1][:, ti]
            for mi, (m, p) in enumerate(preds_cc.items()):
                if s not in p:
                    continue
                fig.add_trace(go.Scatter(x=p[s], y=y, mode="markers", name=m, legendgroup=m, showlegend=ci == 1,
                                         marker={"size": 5, "color": _COLORS[mi % len(_COLORS)], "opacity": 0.7}),
                              row=1, col=ci)
            fig.update_xaxes(title_text="predicted loss (1M model)", row=1, col=ci)
            fig.update_yaxes(title_text="actual loss", row=1, col=ci)
        fig.update_layout(height=450, width=450 * len(scales) + 200, title="Predicted vs actual Pile-CC loss")
        written += save_figure(fig, out / f"regmix_offline_pile_cc{suffix}")
    return written


_COLORS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#8c564b"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=None,
                        help="folder with RegMix's CSVs (default: ../shared/data/regmix next to the repo, or "
                             "$AUTOSCALE_SHARED_DATA/regmix)")
    parser.add_argument("--data", dest="data_opt", type=Path, default=None, help="same as the positional argument")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 validation domains, short fits")
    parser.add_argument("--components", type=int, default=4, help="components K of the AutoScale transfer law")
    parser.add_argument("--targets", nargs="*", default=None, help="validation domains (default: all 13)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder for JSON and figures")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = args.data_opt or args.data or default_data_dir()
    return run(data, quick=args.quick, components=args.components, targets=args.targets, out=args.out,
               figures=not args.no_figures, seed=args.seed)


if __name__ == "__main__":
    main()
