"""bench/diagnose.py: the unquantized ceiling and one system's row, on the tiny tiers."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import speech_like


@pytest.fixture(scope="module")
def diagnose():
    from bench import diagnose as d

    return d


class NoVisqol:
    note = ""

    def __call__(self, ref: np.ndarray, deg: np.ndarray) -> float:
        return math.nan


@pytest.mark.parametrize("which", ["tiny_tier", "lpc_tier"])
def test_unquantized_ceiling_keeps_the_stream_and_decodes_closer(diagnose, which, request
                                                                 ) -> None:
    tier = request.getfixturevalue(which)
    x = speech_like(1.2, seed=7)[:, 0].astype(np.float64)
    size, y = diagnose.nwc_coder(tier)(x, Path("."))
    ceiling = dataclasses.replace(tier, model=diagnose.Unquantized(tier.model))
    size_u, y_u = diagnose.nwc_coder(ceiling)(x, Path("."))
    assert size_u == size and y_u.shape == y.shape == x.shape
    assert not np.array_equal(y_u, y)  # the decoder saw other values ...
    assert not ceiling.model.queue     # ... one queued packet per decoded packet


def test_measure_reports_every_column(diagnose, tiny_tier) -> None:
    clips = [speech_like(1.5, seed=s)[:, 0].astype(np.float64) for s in (1, 2)]
    row = diagnose.measure(diagnose.nwc_coder(tiny_tier), clips, NoVisqol())
    assert row["kbps"] > 0 and 0 <= row["stoi"] <= 1
    assert all(k in row for k, _, _ in diagnose.COLUMNS)
    table = diagnose.markdown([("nwc tiny", row)])
    assert table.count("\n") == 2 and "| nwc tiny |" in table
