"""Real runs (issue 11): does each method rank tested mixtures like the evidence, and recommend inside it?

Run sets:

- **RegMix** (``../shared/data/regmix``, MIT; read at run time, never copied): 17 Pile training
  domains, 13 Pile validation losses (``loss_<name>``; the objective is their mean). Scale there is
  model size as well as tokens, so the runs table's ``tokens`` column is the training compute
  ``6 x params x tokens`` (1M params x 1B tokens = 6e15, 60M x 1B = 3.6e17, 1B x 25B = 1.5e20):
  a monotone scale axis on which a power law in "effective tokens" is a power law in compute.

  - ``regmix 1M -> 60M``: fitted on the 768 runs at 1M (one group), ranked at 60M's compute: the
    256 mixtures trained at both scales.
  - ``regmix 1M+60M -> 1B``: fitted on 1M and 60M (two groups), ranked at 1B's compute: the 64
    mixtures trained only at 1B (never tested below; "direct" is n/a, the anchored rows anchor each
    at its nearest tested mixture).
- **ladder** (``benchmarks/data/ladder.csv``, when present): a real multi-budget ladder in the runs
  format; fitted on every budget but the largest, ranked at the largest.
- **simulator** (:mod:`optuna_autoscale.simulate`: separable / transfer / mixing_law, 4 domains):
  uniform plus 15 Dirichlet mixtures at 1e8, 3e8 and 1e9 tokens (one seed per budget, SNR 6),
  ranked at 1e10 by the true (noiseless) loss.

Methods: ``direct`` (rank as observed at the nearest fitted budget), ``law`` (the default law's own
prediction: :func:`~optuna_autoscale.transfer.fit_transfer` with ``TRANSFER_FORMS``/``TRANSFER_POOL``
when the evaluation sets are the training domains, else :func:`~optuna_autoscale.evidence.fit_eval_law`),
``anchored`` (:class:`~optuna_autoscale.evidence.Evidence`, the default), ``separable``
(:func:`~optuna_autoscale.laws.fit_separable` on the objective), ``DML`` (Data Mixing Law fitted at the
nearest budget). Columns: Spearman with the observed ranking at the target; regret of the method's pick
(observed loss of its pick minus the best candidate's); 80% interval coverage (leave one group out,
:meth:`Evidence.calibration`; anchored only); whether the method's recommendation lies inside the tested
region (anchored: :meth:`Evidence.recommend`; laws: their optimum on the simplex).

``--simextrap`` instead scores ``Evidence.recommend`` on ``benchmarks/simulated_extrapolation.py``'s DDO designs
(share of the uniform -> oracle gain at 4e9), next to that script's default row.

Usage::

    python benchmarks/real_runs.py                # every run set (a few minutes on 2 cores)
    python benchmarks/real_runs.py --quick        # RegMix 1M -> 60M and one simulator seed
    python benchmarks/real_runs.py --simextrap --families separable --snrs inf --seeds 2
"""

from __future__ import annotations

import os


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
from collections.abc import Sequence  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from optuna_autoscale.evidence import fit_evidence  # noqa: E402
from optuna_autoscale.evidence import tested_region  # noqa: E402
from optuna_autoscale.runs import load_runs  # noqa: E402
from optuna_autoscale.runs import Runs  # noqa: E402


LADDER = REPO / "benchmarks" / "data" / "ladder.csv"
METHODS = ("direct", "law", "anchored", "separable", "DML")


def shared_data_dir() -> Path:
    """``$AUTOSCALE_SHARED_DATA``, else ``../shared/data`` (the tests' locator, ``tests/_autoscale_helpers.py``)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from _autoscale_helpers import shared_data_dir as locate

        return locate()
    except ImportError:  # pragma: no cover - the tests folder is always shipped
        return Path(os.environ.get("AUTOSCALE_SHARED_DATA", REPO.parent / "shared" / "data"))


# ------------------------------------------------------------------------------ run sets
def regmix_table(path: Path, mix: str, loss: str, compute: float, group: str) -> Any:
    """One RegMix file pair as a runs table (weight_<domain>, loss_<name>, tokens = compute, group, value)."""
    import pandas as pd

    a = pd.read_csv(path / mix).set_index("index")
    b = pd.read_csv(path / loss).set_index("index")
    df = a.join(b, how="inner")
    out = pd.DataFrame(index=df.index)
    for c in a.columns:
        out["weight_" + c.replace("train_the_pile_", "")] = df[c]
    for c in b.columns:
        out["loss_" + c.replace("metric/the_pile_", "").replace("_val_loss", "")] = df[c]
    out["tokens"] = compute
    out["group"] = group
    out["value"] = out[[c for c in out.columns if c.startswith("loss_")]].mean(axis=1)
    return out


C_1M, C_60M, C_1B = 6 * 1e6 * 1e9, 6 * 60e6 * 1e9, 6 * 1e9 * 25e9


def regmix_sets(path: Path, quick: bool) -> list[dict[str, Any]]:
    import pandas as pd

    t1 = regmix_table(path, "test_mixture_1m.csv", "test_pile_loss_1m.csv", C_1M, "1M")
    tr = regmix_table(path, "train_mixture_1m.csv", "train_pile_loss_1m.csv", C_1M, "1M")
    t60 = regmix_table(path, "test_mixture_60m.csv", "test_pile_loss_60m.csv", C_60M, "60M")
    t1b = regmix_table(path, "test_mixture_1B.csv", "test_pile_loss_1B.csv", C_1B, "1B")
    tr.index = tr.index + 100000
    one = load_runs(pd.concat([t1, tr]))
    common = t1.index.intersection(t60.index)
    tgt = load_runs(t60.loc[common], domains=one.domains)
    sets = [{"name": "regmix 1M -> 60M", "fit": one, "target": C_60M, "cand": tgt.weights, "obs": tgt.value,
             "noise": None}]
    if not quick:
        both = load_runs(pd.concat([t1, tr, t60]), domains=one.domains)
        big = load_runs(t1b, domains=one.domains)
        sets.append({"name": "regmix 1M+60M -> 1B", "fit": both, "target": C_1B, "cand": big.weights, "obs": big.value,
                     "noise": None})
    return sets


def ladder_sets() -> list[dict[str, Any]]:
    if not LADDER.exists():
        return []
    runs = load_runs(LADDER)
    top = float(runs.budgets.max())
    fit = runs.subset(runs.tokens < top)
    held = runs.subset(runs.tokens == top)
    ids = held.mixture_ids()
    cand, obs = [], []
    for i in np.unique(ids):
        rows = np.flatnonzero(ids == i)
        cand.append(held.weights[rows[0]])
        obs.append(float(held.value[rows].mean()))
    # Seed noise at the target: sd of replicate runs (same mixture, other seeds), if any.
    sd = [float(np.std(held.value[ids == i], ddof=1)) for i in np.unique(ids) if (ids == i).sum() > 1]
    return [{"name": f"ladder -> {top:.3g}", "fit": fit, "target": top, "cand": np.array(cand), "obs": np.array(obs),
             "noise": float(np.sqrt(np.mean(np.square(sd)))) if sd else None}]


def simulated_runs(family: str, seed: int, m: int = 4, k: int = 15, budgets: Sequence[float] = (1e8, 3e8, 1e9),
                   snr: float = 6.0) -> tuple[Runs, Any]:
    """Uniform plus ``k`` Dirichlet mixtures at each budget on a simulated landscape, one seed per budget."""
    from optuna_autoscale import simulate

    land = getattr(simulate, family)(m, seed=seed)
    rng = np.random.default_rng(seed)
    w = np.vstack([np.full(m, 1.0 / m), rng.dirichlet(np.full(m, 2.0), size=k)])
    rows = []
    for j, b in enumerate(budgets):
        noisy = land.with_snr(snr, b, domain_share=0.5)
        for x in w:
            per = noisy.per_domain_loss({d: float(v * b) for d, v in zip(land.domains, x)}, seed=1000 * seed + j)
            row: dict[str, Any] = {f"weight_{d}": float(v) for d, v in zip(land.domains, x)}
            row.update({"tokens": b, "group": f"b{j}", "value": float(np.mean(list(per.values())))})
            row.update({f"loss_{d}": v for d, v in per.items()})
            rows.append(row)
    return load_runs(rows, domains=land.domains), land


def simulator_sets(seeds: int, families: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    target = 1e10
    for fam in families:
        for s in range(seeds):
            runs, land = simulated_runs(fam, s)
            cand = runs.subset(np.array(runs.groups) == "b0").weights
            obs = np.array([land.true_loss({d: float(v * target) for d, v in zip(land.domains, x)}) for x in cand])
            noise = None
            out.append({"name": f"sim {fam} seed {s}", "family": fam, "fit": runs, "target": target, "cand": cand,
                        "obs": obs, "noise": noise, "land": land})
    return out


# ------------------------------------------------------------------------------ scoring
def _direct(runs: Runs, cand: np.ndarray, target: float) -> np.ndarray | None:
    """Observed value at each candidate's nearest fitted budget (offset-free within that budget's groups)."""
    out = []
    key = {tuple(np.round(w, 6)): i for i, w in enumerate(runs.weights)}
    for w in cand:
        if tuple(np.round(w, 6)) not in key:
            return None
        rows = np.flatnonzero(np.all(np.abs(runs.weights - w) < 1e-6, axis=1))
        d = np.abs(np.log(runs.tokens[rows]) - math.log(target))
        near = rows[d <= d.min() + 1e-9]
        out.append(float(runs.value[near].mean()))
    return np.array(out)


def _inside(w: np.ndarray, runs: Runs) -> bool:
    lo, hi = tested_region(runs)
    return bool(np.all(w >= lo - 1e-6) and np.all(w <= hi + 1e-6))


def score_set(s: dict[str, Any], *, calibrate: bool = True) -> dict[str, dict[str, Any]]:
    runs, target, cand, obs = s["fit"], s["target"], s["cand"], s["obs"]
    res: dict[str, dict[str, Any]] = {}

    def add(name: str, pred: np.ndarray | None, **kw: Any) -> None:
        if pred is None:
            res[name] = {"spearman": math.nan, "regret": math.nan, **kw}
            return
        rho = float(stats.spearmanr(pred, obs)[0])
        res[name] = {"spearman": rho, "regret": float(obs[int(np.argmin(pred))] - obs.min()), **kw}

    add("direct", _direct(runs, cand, target), inside=math.nan)
    t0 = time.perf_counter()
    ev = fit_evidence(runs)
    u = np.full(runs.m, 1.0 / runs.m)
    law_pred = ev._view.f(cand * target)
    opt = ev._view.optimum(target, np.zeros(runs.m), np.ones(runs.m))
    add("law", law_pred, inside=float(_inside(opt, runs)))
    anch = np.array([ev._point(w, target).value for w in cand]) - ev._point(u, target).value
    rec = ev.recommend(target)
    cov = ev.calibration() if calibrate else None
    add("anchored", anch, inside=float(rec.inside), coverage=None if cov is None else cov.coverage,
        n_cov=None if cov is None else cov.n, cov_split=None if cov is None else (cov.inside, cov.outside), shrink=ev.shrink, kind=ev.kind, seconds=time.perf_counter() - t0,
        rec=rec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sep = fit_evidence(runs, law="separable", shrink=math.inf)
        add("separable", sep._view.f(cand * target),
            inside=float(_inside(sep._view.optimum(target, np.zeros(runs.m), np.ones(runs.m)), runs)))
    except (ValueError, RuntimeError) as e:
        print(f"[{s['name']}] separable: {e}", file=sys.stderr)
        add("separable", None, inside=math.nan)
    try:
        from optuna_autoscale.baselines import fit_data_mixing_law

        top = runs.subset(runs.tokens == runs.tokens[np.argmin(np.abs(np.log(runs.tokens) - math.log(target)))])
        dml = fit_data_mixing_law(top.weights, top.value, domains=runs.domains)
        add("DML", dml.predict(cand)[:, 0], inside=math.nan)
    except (ValueError, RuntimeError) as e:
        print(f"[{s['name']}] DML: {e}", file=sys.stderr)
        add("DML", None, inside=math.nan)
    if "land" in s:  # simulator: the recommendation's true gain over the best tested mixture
        land = s["land"]
        true = land.true_loss({d: float(v * target) for d, v in zip(runs.domains, rec.mixture.weights.values())})
        res["anchored"]["rec_vs_best"] = float(obs.min() - true)
    return res


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, spec)


def _split(split: Any) -> str:
    """'; inside the tested region 0.93 (n=..), outside 0.57 (n=..)' when some pairs lie outside, else ''."""
    if not split or not split[1][1]:
        return ""
    (a, n), (b, m) = split
    ins = f"{a / n:.2f} (n={n})" if n else "–"
    return f"; inside the refitted runs' shares {ins}, outside {b / m:.2f} (n={m})"


def table(name: str, res: dict[str, dict[str, Any]], noise: float | None) -> str:
    lines = [f"**{name}**" + (f" (seed noise sd at the target {noise:.4f})" if noise else ""), "",
             "| method | Spearman at target | regret of pick | 80% coverage (LOGO) | recommendation inside |", "|---|---|---|---|---|"]
    for mth in METHODS:
        r = res.get(mth)
        if r is None:
            continue
        cov = r.get("coverage")
        cov_s = f"{cov:.2f} (n={r['n_cov']}{_split(r.get('cov_split'))})" if cov is not None and not math.isnan(cov) else "–"
        ins = r.get("inside", math.nan)
        ins_s = "–" if ins is None or math.isnan(ins) else ("yes" if ins else "no")
        lines.append(f"| {mth} | {_fmt(r['spearman'])} | {_fmt(r['regret'], '.4f')} | {cov_s} | {ins_s} |")
    a = res["anchored"]
    rec = a["rec"]
    lines.append("")
    lines.append(f"anchored: law {a['kind']}, shrink z={a['shrink']}, {a['seconds']:.1f} s; recommendation step {rec.step:.2f} "
                 f"toward the law's optimum, predicted gain over the best tested {rec.gain:+.4f} "
                 f"(80% {rec.interval[0]:+.4f} to {rec.interval[1]:+.4f}), over uniform {rec.gain_over_uniform:+.4f}"
                 + (f"; true gain over the best tested {a['rec_vs_best']:+.4f}" if "rec_vs_best" in a else "")
                 + ("; warnings: " + "; ".join(rec.warnings) if rec.warnings else ""))
    return "\n".join(lines)


def summary(results: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]) -> str:
    lines = ["| method | mean Spearman | mean regret | mean coverage | share inside |", "|---|---|---|---|---|"]
    for mth in METHODS:
        rows = [r[mth] for _, r in results if mth in r]
        sp = np.nanmean([r["spearman"] for r in rows]) if rows else math.nan
        rg = np.nanmean([r["regret"] for r in rows]) if rows else math.nan
        cv = [r["coverage"] for r in rows if r.get("coverage") is not None]
        ins = [r["inside"] for r in rows if not math.isnan(r.get("inside", math.nan))]
        lines.append(f"| {mth} | {_fmt(float(sp))} | {_fmt(float(rg), '.4f')} | {_fmt(float(np.mean(cv)) if cv else math.nan, '.2f')} | "
                     f"{_fmt(float(np.mean(ins)) if ins else math.nan, '.2f')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ simulated extrapolation
def simextrap(families: Sequence[str], snrs: Sequence[float], seeds: int) -> str:
    """``Evidence.recommend`` on ``simulated_extrapolation.py``'s DDO designs, beside its default row."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import simulated_extrapolation as se

    from optuna_autoscale.results import TRANSFER_FORMS
    from optuna_autoscale.results import TRANSFER_POOL
    from optuna_autoscale.transfer import fit_transfer

    lines = ["| family | SNR | recommend() mean | min | inside | default row (robust joint law) mean | min |", "|---|---|---|---|---|---|---|"]
    for fam in families:
        for snr in snrs:
            got, ref, ins = [], [], []
            for seed in range(seeds):
                warnings.simplefilter("ignore")
                land = se._landscape(fam, seed)
                doms = land.domains
                l_u = land.true_loss({d: se.TARGET / len(doms) for d in doms})
                l_o = land.true_loss(land.oracle(se.TARGET))
                share = lambda a: (l_u - land.true_loss(dict(a))) / (l_u - l_o)  # noqa: E731
                designs = [se.design_runs(land, b, snr, 1000 * seed + j) for j, b in enumerate(se.BUDGETS)]
                rows = []
                for r in (o for d in designs for o in d):
                    tot = sum(r[0].values())
                    row = {f"weight_{d}": r[0][d] / tot for d in doms}
                    row.update({"tokens": tot, "group": r[2], "value": r[1]})
                    row.update({f"loss_{d}": v for d, v in r[3].items()})
                    rows.append(row)
                runs = load_runs(rows, domains=doms)
                ev = fit_evidence(runs)
                rec = ev.recommend(se.TARGET)
                got.append(share(rec.mixture.allocation))
                ins.append(rec.inside)
                anchor = se._rescale(se._ddo_optimum(designs[-1]), se.TARGET)
                law = fit_transfer([(o[0], o[3], o[2]) for d in designs for o in d], forms=TRANSFER_FORMS,
                                   pool_exponents=TRANSFER_POOL)
                ref.append(share(law.optimal_allocation(se.TARGET, anchor=anchor)))
            lines.append(f"| {fam} | {se._snr_label(snr)} | {100 * np.mean(got):.0f}% | {100 * np.min(got):.0f}% | "
                         f"{np.mean(ins):.2f} | {100 * np.mean(ref):.0f}% | {100 * np.min(ref):.0f}% |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="RegMix 1M -> 60M and one simulator seed per family")
    parser.add_argument("--data", type=Path, default=None, help="RegMix folder (default: the shared data's regmix/)")
    parser.add_argument("--seeds", type=int, default=3, help="simulator seeds per family (default 3)")
    parser.add_argument("--families", nargs="*", default=["separable", "transfer", "mixing_law"])
    parser.add_argument("--sets", nargs="*", default=["regmix", "ladder", "sim"], help="run sets to score")
    parser.add_argument("--no-calibration", action="store_true", help="skip the leave-one-group-out coverage")
    parser.add_argument("--simextrap", action="store_true", help="score recommend() on simulated_extrapolation's designs")
    parser.add_argument("--snrs", nargs="*", type=float, default=[math.inf, 6.0])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if args.simextrap:
        print(simextrap(args.families, args.snrs, args.seeds))
        print(f"\n({time.perf_counter() - t0:.0f} s)")
        return 0
    sets: list[dict[str, Any]] = []
    if "regmix" in args.sets:
        path = args.data or shared_data_dir() / "regmix"
        if (path / "test_mixture_60m.csv").exists():
            sets += regmix_sets(path, args.quick)
        else:
            print(f"RegMix data not found at {path}; skipped.", file=sys.stderr)
    if "ladder" in args.sets:
        lad = ladder_sets()
        if not lad:
            print(f"{LADDER} not present; ladder skipped.", file=sys.stderr)
        sets += lad
    if "sim" in args.sets:
        sets += simulator_sets(1 if args.quick else args.seeds, args.families)
    results = []
    for s in sets:
        res = score_set(s, calibrate=not args.no_calibration)
        results.append((s, res))
        if not s["name"].startswith("sim"):
            print(table(s["name"], res, s["noise"]) + "\n", flush=True)
    sims = [(s, r) for s, r in results if s["name"].startswith("sim")]
    for fam in args.families:
        part = [(s, r) for s, r in sims if s.get("family") == fam]
        if part:
            print(f"**simulator {fam}** ({len(part)} seeds, 4 domains, 16 mixtures at 1e8/3e8/1e9, SNR 6, target 1e10; "
                  "regret in true loss)\n")
            print(summary(part))
            gains = [r["anchored"].get("rec_vs_best", math.nan) for _, r in part]
            print(f"\nrecommendation's true gain over the best tested mixture: mean {np.nanmean(gains):+.4f}, "
                  f"min {np.nanmin(gains):+.4f}\n", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
