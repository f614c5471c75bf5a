"""Scalar quantizers behind one interface, with NumPy and numba kernels for inference.

Two quantizers, both producing small non-negative integer symbols for the entropy coder:

* ``SoftmaxQuantizer``: the papers' soft-to-hard scalar quantizer (Agustsson et al. →
  Kankanahalli → Zhen). Learned centroids, soft assignment ``softmax(α·|h − b|)`` in training,
  nearest centroid at inference, a penalty pushing assignments to one-hot, and the entropy of
  the batch's soft histogram as the rate.
* ``NoiseQuantizer``: the standard learned-compression recipe (Ballé et al.): additive uniform
  noise stands in for rounding when estimating the rate, the decoder sees straight-through
  rounded values, and a per-channel Laplace entropy model gives a differentiable bit count.

At inference both reduce to a numpy function over the latents (``to_symbols``) and a table
lookup back (``from_symbols``); those run in NumPy, not torch. Each has a numba twin (same
symbols, tested) for large arrays; the coding path avoids numba's start-up cost.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import nn

LN2 = math.log(2.0)


@numba.njit(cache=True, fastmath=False)
def round_clip_symbols(y: np.ndarray, half: int) -> np.ndarray:
    """Round latents to integers in [-half, half] and shift to symbols in [0, 2·half]."""
    flat = y.ravel()
    out = np.empty(flat.shape[0], dtype=np.int32)
    for i in range(flat.shape[0]):
        v = flat[i]
        if not np.isfinite(v):
            v = 0.0
        r = int(np.rint(v))
        if r < -half:
            r = -half
        elif r > half:
            r = half
        out[i] = r + half
    return out.reshape(y.shape)


@numba.njit(cache=True)
def nearest_centroid_symbols(y: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for every latent (centroids sorted ascending)."""
    flat = y.ravel()
    k = centroids.shape[0]
    mids = (centroids[1:] + centroids[:-1]) * 0.5
    out = np.empty(flat.shape[0], dtype=np.int32)
    for i in range(flat.shape[0]):
        v = flat[i]
        if not np.isfinite(v):
            v = 0.0
        out[i] = np.searchsorted(mids, v) if k > 1 else 0
    return out.reshape(y.shape)


def round_clip_np(y: np.ndarray, half: int) -> np.ndarray:
    """NumPy twin of ``round_clip_symbols``, the same symbols for every finite latent.

    The coding path uses this one: a packet's few thousand latents take microseconds either
    way, but the first call of a numba kernel costs each ``nwc`` process 0.4-0.5 s (loading
    the cached machine code and numba's runtime), longer than encoding a minute of audio.
    """
    v = np.where(np.isfinite(y), y, np.float32(0.0))
    return (np.clip(np.rint(v), -half, half) + half).astype(np.int32)


def nearest_centroid_np(y: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """NumPy twin of ``nearest_centroid_symbols`` (for the same reason as ``round_clip_np``)."""
    if centroids.shape[0] < 2:
        return np.zeros(y.shape, dtype=np.int32)
    mids = (centroids[1:] + centroids[:-1]) * np.float32(0.5)
    v = np.where(np.isfinite(y), y, np.float32(0.0))
    return np.searchsorted(mids, v).astype(np.int32)


@numba.njit(cache=True)
def channel_histogram(symbols: np.ndarray, n_symbols: int) -> np.ndarray:
    """Per-channel symbol counts of ``symbols`` shaped (batch, channels, time)."""
    b, c, t = symbols.shape
    hist = np.zeros((c, n_symbols), dtype=np.int64)
    for i in range(b):
        for j in range(c):
            for k in range(t):
                hist[j, symbols[i, j, k]] += 1
    return hist


class Quantizer(nn.Module):
    """Interface: ``forward`` for training, ``to_symbols``/``from_symbols`` for coding."""

    n_symbols: int

    def forward(self, y: torch.Tensor, quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor,
                                                                       torch.Tensor]:
        """Return (decoder input, estimated bits per symbol (scalar), auxiliary penalty)."""
        raise NotImplementedError

    def to_symbols(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def hard_bits(self, y: torch.Tensor) -> torch.Tensor:
        """Bits per symbol of the hard-quantized latents under the training entropy model."""
        raise NotImplementedError


class NoiseQuantizer(Quantizer):
    """Uniform-noise proxy in training, rounding at inference, per-channel Laplace rate model."""

    def __init__(self, channels: int, half: int = 15) -> None:
        super().__init__()
        self.max_level = half  # not `half`: that would shadow nn.Module.half()
        self.n_symbols = 2 * half + 1
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.loc = nn.Parameter(torch.zeros(channels))

    def _bits(self, v: torch.Tensor) -> torch.Tensor:
        scale = (torch.nn.functional.softplus(self.log_scale) + 0.02)[None, :, None]
        loc = self.loc[None, :, None]
        z = v - loc
        # Laplace mass of the unit interval around v, computed on the tail side for precision.
        a = torch.abs(z)
        upper = torch.exp(-torch.clamp(a - 0.5, min=0.0) / scale)
        lower = torch.exp(-(a + 0.5) / scale)
        # Both branches of a where are evaluated and differentiated: unclamped, the inner one
        # overflows to inf for tails (|z| - 0.5 > 88·scale) and its zero-weighted gradient
        # is inf·0 = NaN, which once stopped a long music run (every encoder gradient NaN).
        centre = torch.exp(-torch.clamp(0.5 - a, min=0.0) / scale)
        inner = torch.where(a < 0.5, 1.0 - 0.5 * (centre + lower), 0.5 * (upper - lower))
        return -torch.log(torch.clamp(inner, min=1e-9)) / LN2

    def forward(self, y: torch.Tensor, quantize: bool = True):
        y = torch.clamp(y, -self.max_level - 0.49, self.max_level + 0.49)
        if not quantize:
            return y, self._bits(y).mean(), y.new_zeros(())
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        hard = y + (torch.round(y) - y).detach()
        return hard, self._bits(noisy).mean(), y.new_zeros(())

    def hard_bits(self, y: torch.Tensor) -> torch.Tensor:
        return self._bits(torch.round(torch.clamp(y, -self.max_level, self.max_level))).mean()

    def to_symbols(self, y: np.ndarray) -> np.ndarray:
        return round_clip_np(np.asarray(y, dtype=np.float32), self.max_level)

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        return (s.astype(np.float32) - self.max_level)


class SoftmaxQuantizer(Quantizer):
    """Soft-to-hard scalar quantizer with learned centroids (the papers' quantizer)."""

    def __init__(self, channels: int, levels: int = 32, alpha: float = -300.0) -> None:
        super().__init__()
        self.n_symbols = levels
        self.centroids = nn.Parameter(torch.linspace(-1.0, 1.0, levels))
        self.alpha = nn.Parameter(torch.tensor(alpha))

    def _assign(self, y: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.alpha * torch.abs(y[..., None] - self.centroids), dim=-1)

    def forward(self, y: torch.Tensor, quantize: bool = True):
        y = torch.tanh(y)
        if not quantize:
            return y, y.new_zeros(()), y.new_zeros(())
        a = self._assign(y)
        soft = (a * self.centroids).sum(-1)
        hist = a.reshape(-1, a.shape[-1]).mean(0)
        bits = -(hist * torch.log2(hist + 1e-12)).sum()
        # Penalty is zero for one-hot assignments (Kankanahalli/PAM form).
        penalty = (torch.sqrt(a + 1e-20).sum(-1) - 1.0).mean()
        return soft, bits, penalty

    def hard_bits(self, y: torch.Tensor) -> torch.Tensor:
        idx = torch.argmin(torch.abs(torch.tanh(y)[..., None] - self.centroids), dim=-1)
        counts = torch.bincount(idx.flatten(), minlength=self.n_symbols).float()
        p = counts / counts.sum()
        return -(p * torch.log2(p + 1e-12)).sum()

    def _sorted(self) -> np.ndarray:
        return np.sort(self.centroids.detach().cpu().numpy().astype(np.float32))

    def to_symbols(self, y: np.ndarray) -> np.ndarray:
        return nearest_centroid_np(np.tanh(y).astype(np.float32), self._sorted())

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        return self._sorted()[s]


def make_quantizer(kind: str, channels: int, levels: int) -> Quantizer:
    """Build the quantizer named in a tier config."""
    if kind == "noise":
        return NoiseQuantizer(channels, half=levels // 2)
    if kind == "softmax":
        return SoftmaxQuantizer(channels, levels=levels)
    raise ValueError(f"unknown quantizer {kind!r}; use 'noise' or 'softmax'")
