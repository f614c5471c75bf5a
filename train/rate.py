"""Rate control and schedules: per-layer bit targets, the λ controllers and the run's
learning-rate and rate-target curves.

Each layer's rate weight λ_k is driven by its own controller toward a target number of bits
per symbol; the target starts high and ramps down to the bitrate's value (a sudden drop
destroys quality: prototype-lessons §2), and it is corrected after every dev evaluation by the
ratio of the really entropy-coded rate to the estimate (``rate_fix``).
"""

from __future__ import annotations

import math

import numpy as np


class RateController:
    """Multiplicative controller of the rate weight λ toward a bits-per-symbol target."""

    def __init__(self, log_lam: float = math.log(0.01), gain: float = 0.02) -> None:
        self.log_lam = log_lam
        self.gain = gain
        self.ema: float | None = None

    @property
    def lam(self) -> float:
        return math.exp(self.log_lam)

    def update(self, bits: float, target: float) -> None:
        self.ema = bits if self.ema is None else 0.9 * self.ema + 0.1 * bits
        err = (self.ema - target) / max(target, 1e-3)
        self.log_lam = float(np.clip(self.log_lam + self.gain * np.clip(err, -1, 1), -12, 4))

    def state(self) -> list[float | None]:
        return [self.log_lam, self.ema]

    def load(self, state: list[float | None]) -> None:
        log_lam, self.ema = state
        self.log_lam = float(log_lam) if log_lam is not None else self.log_lam


def layer_targets(rates: list[float], side_bps: float, symbols_per_second: float
                  ) -> list[float]:
    """Code bits per symbol of each layer for cumulative ``rates`` (bits/s). Coder flushes and
    packet headers are folded into ``rate_fix``; the base layer also pays the gain side info
    (and carries the LSFs)."""
    targets = [((r - lo) - (side_bps if k == 0 else 0.0)) / symbols_per_second
               for k, (lo, r) in enumerate(zip([0.0] + rates[:-1], rates, strict=False))]
    if min(targets) <= 0:
        raise ValueError("a layer's bitrate is too low for its side information")
    return targets


def learning_rate(progress: float, lr: float, lr_final: float, schedule: str = "cosine",
                  step: int = 0, cycle_steps: int = 1) -> float:
    """Cosine decay from ``lr`` to ``lr_final`` over the run's progress (0..1). An open
    schedule keeps ``lr`` (a run extended again and again has no end to decay toward);
    ``restarts`` repeats the cosine every ``cycle_steps`` steps (SGDR warm restarts), so an
    open-ended run still anneals, and the end of every cycle is an annealed model. Both
    depend on the step alone, so a resumed run continues the same curve."""
    if schedule == "open":
        return lr
    if schedule == "restarts":
        progress = (step % cycle_steps) / cycle_steps
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * progress))


def goals(targets: list[float], rate_fix: list[float], progress: float,
          ramp_fraction: float, ramp_start: float) -> list[float]:
    """This step's bits-per-symbol goal of each layer: the ramped target over ``rate_fix``."""
    ramp = min(1.0, progress / ramp_fraction) if ramp_fraction > 0 else 1.0
    return [t * (ramp_start + (1.0 - ramp_start) * ramp) / fix
            for t, fix in zip(targets, rate_fix, strict=False)]
