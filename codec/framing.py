"""Frame and packet geometry shared by the encoder, the decoder and training.

Frames are ``F`` samples long and start every ``H`` samples, so neighbours share ``F - H``
samples (32 at 512/480). Each frame is coded independently; the decoder multiplies each
decoded frame by a flat-top window whose ends are half-Hann tapers of length ``F - H`` and
overlap-adds::

    frame j    |<taper>|=========== flat ===========|<taper>|
    frame j+1                                  |<taper>|=========== flat ...
               ^ j*H                            ^ (j+1)*H  ^ j*H + F

The tapers of neighbours sum to one, so a perfect decoder reconstructs the input exactly.
The first frame has a flat start and the last a flat end (nothing overlaps them there).
A packet groups ``P`` consecutive frames; packet ``k`` holds frames ``[kP, kP + P)`` and its
granule (end sample) is ``(k+1)·P·H``, except the last packet whose granule is the signal
length. Encoding packet ``k`` needs ``F - H`` samples of look-ahead past its granule.

``P`` is the encoder's choice (the stream header records it; a tier only suggests one):
frames do not depend on it, but the per-packet gain does, and the algorithmic latency is
``P·H + F − H`` samples (a packet's first sample waits for its last frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Most frames an encoder may put in a packet (1.9 s at 480/16 kHz, 4x the shipped tiers'):
# a decoder runs a packet's frames in one forward, so this bounds what a forged header can
# make it allocate (per channel) to 4x what a default stream needs.
MAX_PACKET_FRAMES = 64


@dataclass(frozen=True)
class Framing:
    """Frame size, hop and frames per packet; all geometry is derived from these."""

    frame: int = 512
    hop: int = 480
    packet_frames: int = 16

    @property
    def overlap(self) -> int:
        return self.frame - self.hop

    @property
    def packet_hop(self) -> int:
        """Samples a full packet advances the stream by."""
        return self.packet_frames * self.hop

    def frames_for(self, samples: int) -> int:
        """Frames needed to cover ``samples`` samples (at least one)."""
        return max(1, math.ceil((samples - self.overlap) / self.hop))

    def packet_span(self, n_frames: int) -> int:
        """Input samples that ``n_frames`` consecutive frames read."""
        return (n_frames - 1) * self.hop + self.frame

    def taper(self) -> np.ndarray:
        """Rising half-Hann of ``overlap`` samples; ``t + t[::-1] == 1``."""
        n = self.overlap
        return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)

    def window(self, first: bool, last: bool) -> np.ndarray:
        """Synthesis window of one frame (flat at the stream's ends)."""
        w = np.ones(self.frame, dtype=np.float32)
        t = self.taper()
        if not first:
            w[: self.overlap] = t
        if not last:
            w[self.frame - self.overlap :] = t[::-1]
        return w


def split_frames(x: np.ndarray, framing: Framing, n_frames: int) -> np.ndarray:
    """Cut ``n_frames`` frames from ``x`` (..., samples), zero-padding past its end."""
    need = framing.packet_span(n_frames)
    if x.shape[-1] < need:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, need - x.shape[-1])]
        x = np.pad(x, pad)
    idx = np.arange(n_frames)[:, None] * framing.hop + np.arange(framing.frame)[None, :]
    return x[..., idx]


class OverlapAdd:
    """Streaming overlap-add of decoded frames; emits samples as soon as they are final.

    ``push(frames, first, last)`` takes (n, frame) frames in stream order and returns the
    samples completed by them; the tail of ``overlap`` samples waits for the next frame.
    """

    def __init__(self, framing: Framing) -> None:
        self.f = framing
        self._tail = np.zeros(framing.overlap, dtype=np.float32)
        self._started = False
        # The four windows (first/last or not), built once: push() is on the decode hot path.
        self._windows = {(a, b): framing.window(a, b) for a in (False, True) for b in (False, True)}

    def push(self, frames: np.ndarray, last: bool) -> np.ndarray:
        f = self.f
        n = frames.shape[0]
        out = np.empty(n * f.hop + (f.overlap if last else 0), dtype=np.float32)
        for j in range(n):
            first = not self._started and j == 0
            is_last = last and j == n - 1
            y = frames[j] * self._windows[(first, is_last)]
            y[: f.overlap] += self._tail
            seg = y[: f.hop] if not is_last else y
            out[j * f.hop : j * f.hop + seg.shape[0]] = seg
            self._tail = np.zeros(f.overlap, np.float32) if is_last else y[f.hop :].copy()
        self._started = True
        return out

    @property
    def pending(self) -> np.ndarray:
        """The overlap samples still waiting for the next frame."""
        return self._tail

    @pending.setter
    def pending(self, tail: np.ndarray) -> None:
        # Overlap-add is linear: a stereo decoder re-expresses the tails of L/R in M/S.
        self._tail = np.asarray(tail, dtype=np.float32).reshape(self.f.overlap).copy()

    def reset(self) -> None:
        """Forget the pending tail after lost frames (the next frame fades in from silence)."""
        self._tail = np.zeros(self.f.overlap, np.float32)
