"""Idle workers: runs beyond the design and wall time, waiting (the default) against filler replicates.

Four worker processes share one study on PostgreSQL (or SQLite with ``--storage``): 7 domains,
budgets 1e8 and 4e8 tokens, verification on, ``n_trials=60`` each. The objective is the
simulator's loss after a sleep proportional to the run's tokens (0.25 s per 1e8 tokens), so
runs take time the way proxy trainings do and the verification points wait on the fits. One
worker is SIGKILLed in the middle of a trial; heartbeats (1 s, grace 3 s) fail its trial and
the retry callback re-queues it.

Two settings, same seeds and same kill:

- ``wait`` (default, ``filler_replicates=0``): a worker with nothing to claim polls storage
  with back-off until a point opens or the design is complete, then prunes its last trial and
  stops;
- ``fillers`` (the old behaviour, ``filler_replicates`` unbounded): such a worker runs an extra
  base replicate (``b0/replicate/t<N>``) instead.

Printed per setting: design points, runs per design point (duplicates), runs beyond the design
(fillers, and pruned idle trials, which train nothing), the compute spent (simulated seconds of
training) and the wall time.

Run:  python benchmarks/idle_workers.py [--storage URL] [--workers 4]
"""

from __future__ import annotations

import argparse
from collections import Counter
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import optuna
from optuna.trial import TrialState


DOMS = ["web", "code", "books", "news", "wiki", "arxiv", "legal"]
BUDGETS = [1e8, 4e8]
PG_URL = os.environ.get("AUTOSCALE_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
SECONDS_PER_1E8 = 0.25

_WORKER = textwrap.dedent(
    """
    import sys, time
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from optuna_autoscale import AutoScaleSampler, suggest_mixture
    from optuna_autoscale.simulate import separable
    from optuna_autoscale.storage import create_storage

    url, name, fillers, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    land = separable(domains={doms!r}, seed=1)
    sampler = AutoScaleSampler(land.domains, {budgets!r}, replicates=1, seed=3, filler_replicates=fillers)
    storage = create_storage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)

    def objective(trial):
        mix = suggest_mixture(trial, land.domains)
        trial.set_user_attr("sleep", per * mix.tokens / 1e8)
        time.sleep(per * mix.tokens / 1e8)  # "training"
        return land.loss(mix.allocation, seed=mix.seed)

    study.optimize(objective, n_trials=60)
    """
).format(doms=DOMS, budgets=BUDGETS)


def run_setting(url: str, fillers: int, workers: int, kill_after: float) -> dict[str, Any]:
    """One study with ``workers`` processes; worker 0 is SIGKILLed ``kill_after`` seconds in."""
    from optuna_autoscale.design import Design
    from optuna_autoscale.design import DesignPoint
    from optuna_autoscale.design import POINT_ATTR

    name = f"idle-workers-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=url)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, url, name, str(fillers), str(SECONDS_PER_1E8)],
                              stderr=subprocess.DEVNULL) for _ in range(workers)]
    time.sleep(kill_after)
    procs[0].send_signal(signal.SIGKILL)
    # the killed worker's trial is failed by the others once its heartbeat is stale; its point re-opens
    for p in procs[1:]:
        p.wait(timeout=900)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=url)
    design = Design(DOMS, BUDGETS, replicates=1, seed=3)
    wanted = {p.key for p in design.points} | set(design.dynamic_keys)
    done = Counter(DesignPoint.from_json(t.system_attrs[POINT_ATTR]).key
                   for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    states = Counter(t.state.name for t in study.trials)
    compute = sum(float(t.user_attrs.get("sleep", 0.0)) for t in study.trials)
    design_compute = sum(SECONDS_PER_1E8 * p.tokens / 1e8 for p in design.points)
    out = {
        "setting": "wait" if fillers == 0 else "fillers",
        "design points": len(wanted),
        "missing": len(wanted - set(done)),
        "duplicated": sum(n - 1 for k, n in done.items() if k in wanted and n > 1),
        "fillers": sum(n for k, n in done.items() if k not in wanted),
        "pruned (idle)": states.get("PRUNED", 0),
        "trials": len(study.trials),
        "compute (s)": compute,
        "design compute (s)": design_compute,
        "wall (s)": wall,
    }
    optuna.delete_study(study_name=name, storage=url)
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default=PG_URL, help="storage URL (default: the local PostgreSQL test database)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-after", type=float, default=4.0, help="seconds before worker 0 is SIGKILLed")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = [run_setting(args.storage, f, args.workers, args.kill_after) for f in (10**6, 0)]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|---" * len(keys) + "|")
    for r in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    old, new = rows
    print(f"\nruns beyond the design: {old['fillers']} fillers (old) -> {new['fillers']} fillers + "
          f"{new['pruned (idle)']} pruned idle trials that train nothing (new, at most one per worker); "
          f"compute {old['compute (s)']:.0f} -> {new['compute (s)']:.0f} s; wall {old['wall (s)']:.0f} -> {new['wall (s)']:.0f} s")
    return rows


if __name__ == "__main__":
    main()
