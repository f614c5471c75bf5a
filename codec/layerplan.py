"""A tier's layers as data: what ``model.py``'s ``nn.Sequential``s hold, for the NumPy engine.

The plans are built from the tier's ``NWCConfig`` alone (state-dict keys relative to the
module); a test walks the torch modules and checks they list the same layers, so the
topology keeps one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import NWCConfig


@dataclass(frozen=True)
class Conv:
    """``nn.Conv1d`` at state-dict ``key`` (kernel, channels and groups from its weight)."""

    key: str
    stride: int = 1
    padding: int = 0
    dilation: int = 1


@dataclass(frozen=True)
class ConvT:
    """``nn.ConvTranspose1d`` at ``key``."""

    key: str
    stride: int
    padding: int


@dataclass(frozen=True)
class LReLU:
    """``nn.LeakyReLU(0.2)``."""


@dataclass(frozen=True)
class SubPixel:
    """``SubPixel1d(r)``: (T, C·r) → (T·r, C)."""

    r: int


@dataclass(frozen=True)
class Gated:
    """``GatedBlock`` at ``key``: squeeze, gated depthwise conv, expand, residual."""

    key: str
    kernel: int
    dilation: int
    activate: bool


Layer = Conv | ConvT | LReLU | SubPixel | Gated


def _stack(key: str, kernel: int) -> list[Layer]:
    return [Gated(f"{key}.0", kernel, 1, True), Gated(f"{key}.1", kernel, 2, False)]


def encoder_plan(cfg: NWCConfig) -> list[Layer]:
    """The encoder's layers (``NWC.encoder``), state-dict keys relative to the module."""
    if cfg.plan == "fast":
        pad = (cfg.fb_kernel - cfg.fb_stride) // 2
        return [Conv("encoder.0", cfg.fb_stride, pad), LReLU(), *_stack("encoder.2", cfg.kernel),
                Conv("encoder.3", 2, 1), LReLU(), *_stack("encoder.5", cfg.kernel),
                Conv("encoder.6")]
    if cfg.plan == "paper":
        return [Conv("encoder.0", 1, 27), LReLU(), *_stack("encoder.2", 15),
                Conv("encoder.3", 2, 4), LReLU(), *_stack("encoder.5", 15),
                Conv("encoder.6", 1, 27)]
    raise ValueError(f"unknown layer plan {cfg.plan!r}; use 'fast' or 'paper'")


def decoder_plan(cfg: NWCConfig) -> list[Layer]:
    """The decoder's layers (``NWC.decoder``)."""
    if cfg.plan == "fast":
        pad = (cfg.fb_kernel - cfg.fb_stride) // 2
        return [Conv("decoder.0", 1, 1), LReLU(), *_stack("decoder.2", cfg.kernel),
                Conv("decoder.3.0", 1, 4), Conv("decoder.3.1"), LReLU(), SubPixel(2),
                *_stack("decoder.6", cfg.kernel), ConvT("decoder.7", cfg.fb_stride, pad)]
    if cfg.plan == "paper":
        return [*_stack("decoder.0", 15), Conv("decoder.1.0", 1, 4), Conv("decoder.1.1"),
                LReLU(), SubPixel(2), *_stack("decoder.4", 15), Conv("decoder.5", 1, 27)]
    raise ValueError(f"unknown layer plan {cfg.plan!r}; use 'fast' or 'paper'")


# Fast plan with HARP-Net skips (model.py): the skip leaves the encoder after its first
# residual stack and joins the decoder after its sub-pixel shuffle.
ENC_TAP, DEC_TAP = 4, 8   # indices into the flat plans above (after encoder[:3], decoder[:6])
SKIP_ENC = Conv("skip_enc", 2, 1)
SKIP_DEC: list[Layer] = [Conv("skip_dec.0", 1, 1), LReLU(), SubPixel(2)]
