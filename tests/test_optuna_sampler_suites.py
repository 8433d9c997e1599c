"""Optuna's own generic sampler test suites, run against AutoScaleSampler.

Their objectives never call ``suggest_mixture``: such trials are ordinary trials (parameters from
the independent sampler), never claim a design point, never enter a fit and never stop the study.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import BasicSamplerTestCase
from optuna.testing.pytest_samplers import SingleOnlySamplerTestCase

from optuna_autoscale import AutoScaleSampler


def _make() -> BaseSampler:
    return AutoScaleSampler(["a", "b", "c"], [1e6, 4e6], seed=0)


class TestAutoScaleBasic(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return _make


class TestAutoScaleSingleOnly(SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return _make
