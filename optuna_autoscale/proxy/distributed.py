"""One study, many ranks: proxy training under ``torchrun``.

Under ``torchrun --nproc_per_node=N`` every rank runs the same script, but an Optuna study must
see *one* process: if each rank called ``study.optimize`` it would ask the sampler for its own
trial, train another mixture than its peers, and the ranks' DDP collectives would not match.
The protocol here:

* **rank 0** runs ``study.optimize`` (asks and tells every trial). Its objective, built by
  :func:`~optuna_autoscale.proxy.make_objective`, sends each trial's mixture (weights, tokens,
  seed) to the other ranks with :func:`share_mixture` before training; when the optimize loop
  ends (normally or by an exception) :func:`lead` sends a stop sentinel.
* **the other ranks** :func:`follow`: receive a mixture, call
  :func:`~optuna_autoscale.proxy.train_proxy` on it together with rank 0 (DDP splits every
  optimizer step and all-reduces the validation losses), repeat until the stop sentinel.

The messages travel on a gloo process group of their own (created once, collectively, by
:func:`init`), whatever the training backend: a follower may wait a long time for the next
mixture while rank 0 talks to the storage, so that group's timeout is long (a day); torchrun
ends the other ranks when one fails.

Example:
    .. code-block:: python

        # torchrun --nproc_per_node=2 search.py
        import optuna
        from optuna_autoscale import AutoScaleSampler
        from optuna_autoscale.proxy import ProxyConfig, make_objective
        from optuna_autoscale.proxy import distributed
        from optuna_autoscale.proxy.corpus import build_corpus

        corpus = distributed.rank0_first(lambda: build_corpus({"code": "code.jsonl", "prose": "prose.jsonl"}))
        objective = make_objective(corpus, ProxyConfig(preset="tiny"))
        study = None
        if distributed.rank() == 0:
            study = optuna.create_study(storage="sqlite:///s.db", study_name="s", load_if_exists=True,
                                        sampler=AutoScaleSampler(corpus.domains, budgets=(5e5, 1e6)))
        distributed.optimize(study, objective)  # rank 0 optimizes, the others train with it
"""

from __future__ import annotations

from collections.abc import Callable
import datetime
import logging
import os
import sys
from typing import Any
from typing import TYPE_CHECKING
from typing import TypeVar

from optuna_autoscale.mixture import Mixture


if TYPE_CHECKING:
    import optuna


__all__ = ["world_size", "rank", "init", "share_mixture", "receive_mixture", "lead", "follow", "optimize",
           "rank0_first", "CONTROL_TIMEOUT"]

_logger = logging.getLogger(__name__)
T = TypeVar("T")

CONTROL_TIMEOUT = datetime.timedelta(days=1)
"""Timeout of the control group's collectives (a follower waiting for the next mixture)."""

_control: Any = None  # the gloo group the mixtures travel on, once init() made it


def _dist_initialised() -> bool:
    # Without importing torch: if torch.distributed was never imported, no group exists.
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes of this job: torch.distributed's world once initialised, else ``$WORLD_SIZE``
    (set by torchrun), else 1. Does not import torch."""
    if _dist_initialised():
        return int(sys.modules["torch.distributed"].get_world_size())
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def rank() -> int:
    """This process's rank (0 when not distributed). Does not import torch."""
    if _dist_initialised():
        return int(sys.modules["torch.distributed"].get_rank())
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def init(device: str = "auto") -> tuple[int, int]:
    """Initialise the process group (if it is not yet) and the control group; ``(rank, world)``.

    Collective: every rank must call it (the first call creates the control group). A no-op
    returning ``(0, 1)`` outside torchrun.

    Args:
        device: The training device of :class:`~optuna_autoscale.proxy.ProxyConfig`; a CUDA
            device (or "auto" with CUDA present) initialises the default group with NCCL, as
            :func:`~optuna_autoscale.proxy.train_proxy` would, else gloo.
    """
    global _control
    if world_size() <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if _control is None:
        _control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def _send(payload: Any) -> None:
    import torch.distributed as dist

    if _control is None:
        raise RuntimeError("optuna_autoscale.proxy.distributed.init() must run on every rank first.")
    dist.broadcast_object_list([payload], src=0, group=_control)


def share_mixture(mixture: Mixture) -> None:
    """Rank 0: send ``mixture`` to the other ranks (which are in :func:`follow`). No-op alone."""
    if world_size() <= 1:
        return
    if rank() != 0:
        raise RuntimeError(
            "Under torchrun only rank 0 may run study.optimize (it asks the sampler for the trials); the other ranks "
            "must follow it: use optuna_autoscale.proxy.distributed.optimize(study, objective) on every rank, or "
            "objective.follow() on ranks > 0."
        )
    init()
    _send({"weights": dict(mixture.weights), "tokens": float(mixture.tokens), "seed": int(mixture.seed)})


def receive_mixture() -> Mixture | None:
    """Ranks > 0: the next mixture from rank 0, or None when rank 0 has stopped."""
    import torch.distributed as dist

    if _control is None:
        raise RuntimeError("optuna_autoscale.proxy.distributed.init() must run on every rank first.")
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0, group=_control)
    payload = box[0]
    if payload is None:
        return None
    return Mixture(payload["weights"], tokens=payload["tokens"], seed=payload["seed"])


def lead(run: Callable[[], T]) -> T:
    """Rank 0: ``run()`` (the optimize loop), then send the stop sentinel, also when it raises."""
    try:
        return run()
    finally:
        if world_size() > 1:
            try:
                _send(None)
            except Exception:  # pragma: no cover - a broken group; torchrun ends the job
                _logger.exception("rank 0 could not send the stop sentinel to the other ranks")


def follow(train: Callable[[Mixture], Any]) -> int:
    """Ranks > 0: train every mixture rank 0 sends until it stops; returns the mixtures trained.

    A training that raises on a follower (a bad input raises on rank 0 as well; a pruned trial
    is pruned on every rank) is logged and the loop goes on, so that rank 0's next collective
    finds its peers.
    """
    import optuna

    n = 0
    while True:
        mixture = receive_mixture()
        if mixture is None:
            return n
        try:
            train(mixture)
            n += 1
        except optuna.TrialPruned:
            pass
        except Exception:
            _logger.exception("rank %d: training %s failed (rank 0 reports the trial)", rank(), mixture)


def optimize(study: optuna.Study | None, objective: Any, **kwargs: Any) -> int | None:
    """``study.optimize(objective, **kwargs)`` under torchrun: call it on every rank.

    Rank 0 optimizes (``study`` may be None elsewhere); the other ranks follow, training each of
    rank 0's mixtures with it. Outside torchrun it is plain ``study.optimize``.

    Args:
        study: The study (needed on rank 0 only).
        objective: An objective from :func:`~optuna_autoscale.proxy.make_objective`.
        kwargs: Passed to ``study.optimize``.

    Returns:
        None on rank 0 (and alone); the number of mixtures trained on the other ranks.
    """

    def run() -> None:
        if study is None:
            raise ValueError("distributed.optimize needs the study on rank 0.")
        study.optimize(objective, **kwargs)

    return run_ranked(run, objective)


def run_ranked(run: Callable[[], T], objective: Any) -> T | int:
    """Rank 0 (or a single process): ``run()``; the other ranks: ``objective.follow()``.

    ``run`` is whatever drives ``study.optimize`` with ``objective``. An objective without a
    ``follow`` method (one that trains no proxy) runs on rank 0 only; the other ranks return 0.
    """
    if world_size() <= 1:
        return run()
    follower = getattr(objective, "follow", None)
    if follower is None:
        if rank() == 0:
            return run()
        _logger.info("rank %d: the objective trains no proxy; only rank 0 runs the study", rank())
        return 0
    config = getattr(objective, "config", None)
    r, _ = init(getattr(config, "device", "auto"))
    if r == 0:
        return lead(run)
    return int(follower())


def rank0_first(build: Callable[[], T], device: str = "auto") -> T:
    """``build()`` on rank 0, then on the other ranks (e.g. a corpus: they then hit its cache).

    Collective under torchrun (every rank calls it); plain ``build()`` otherwise.
    """
    if world_size() <= 1:
        return build()
    import torch.distributed as dist

    r, _ = init(device)
    if r == 0:
        try:
            return build()
        finally:
            dist.barrier(group=_control)
    dist.barrier(group=_control)
    return build()
