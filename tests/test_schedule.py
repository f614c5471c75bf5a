"""Learning-rate schedules: cosine over a known budget, constant, and warm restarts."""

from __future__ import annotations

import pytest
from nwc.train.rate import learning_rate


def test_cosine_runs_from_lr_to_lr_final_over_the_budget() -> None:
    assert learning_rate(0.0, 3e-4, 1e-4) == pytest.approx(3e-4)
    assert learning_rate(0.5, 3e-4, 1e-4) == pytest.approx(2e-4)
    assert learning_rate(1.0, 3e-4, 1e-4) == pytest.approx(1e-4)


def test_open_keeps_the_learning_rate() -> None:
    assert learning_rate(0.7, 3e-4, 1e-4, "open", step=12345) == 3e-4


def test_restarts_repeat_the_cosine_every_cycle_whatever_the_budget() -> None:
    def at(step: int, progress: float = 0.3) -> float:
        return learning_rate(progress, 3e-4, 1e-4, "restarts", step=step, cycle_steps=100)
    assert at(0) == pytest.approx(3e-4) and at(50) == pytest.approx(2e-4)
    assert at(99) == pytest.approx(1e-4, rel=1e-3)
    assert at(100) == pytest.approx(3e-4) and at(250, 0.9) == pytest.approx(2e-4)
    assert [at(s) for s in range(100, 200)] == [at(s) for s in range(0, 100)]
