"""The protocol both joint laws answer: predict, predict per domain, optimal allocation, export."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import Protocol
from typing import runtime_checkable


__all__ = ["JointLaw"]


@runtime_checkable
class JointLaw(Protocol):
    """A law of the loss in absolute tokens per domain, fitted over all budgets (one offset per group).

    :class:`~optuna_autoscale.laws.SeparableLaw` and :class:`~optuna_autoscale.laws.TransferLaw`
    answer it; :func:`~optuna_autoscale.fits.fit_joint` returns one.
    """

    kind: str
    """``"separable"`` or ``"transfer"``."""
    domains: tuple[str, ...]
    noise: float | None

    def predict(self, allocation: Mapping[str, float], group: str | None = None) -> float:
        """The objective at ``allocation`` (tokens per domain), up to the group offset."""

    def predict_domains(self, allocation: Mapping[str, float], group: str | None = None) -> dict[str, float]:
        """Per domain, the law's term at ``allocation`` (for the transfer law: that domain's loss)."""

    def optimal_allocation(
        self,
        total: float,
        lower: float | Mapping[str, float] | None = None,
        upper: float | Mapping[str, float] | None = None,
        *,
        robust: bool = True,
        anchor: Mapping[str, float] | None = None,
        risk: float | None = None,
    ) -> dict[str, float]:
        """The (robust) bounded optimal allocation at ``total`` tokens."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready representation."""
