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
from collections.abc import Callable
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

    def __init__(self, framing: Framing, spill: int = 0) -> None:
        self.f = framing
        # Filtered frames (``push(..., shape=...)``) reach ``spill`` samples past their end;
        # the pending tail is then ``overlap + spill`` long (zeros past the overlap until a
        # filtered frame has written there).
        self.spill = spill
        self._tail = np.zeros(framing.overlap + spill, dtype=np.float32)
        self._spilled = False  # whether the tail holds anything past the overlap
        self._started = False
        # The four windows (first/last or not), built once: push() is on the decode hot path.
        self._windows = {(a, b): framing.window(a, b) for a in (False, True) for b in (False, True)}

    def push(self, frames: np.ndarray, last: bool,
             shape: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Window and overlap-add (n, frame) frames; ``shape`` maps the windowed frames to
        (n, frame + spill) (a causal filter's full output) before they are added."""
        f = self.f
        n = frames.shape[0]
        if shape is None and not self._spilled:
            return self._push_plain(frames, last)
        ov = f.overlap + self.spill
        wins = np.stack([self._windows[(not self._started and j == 0, last and j == n - 1)]
                         for j in range(n)])
        y = frames * wins
        if shape is not None:
            y = shape(y)
        else:
            y = np.pad(y, ((0, 0), (0, self.spill)))
        acc = np.zeros(n * f.hop + ov, np.float32)
        acc[:ov] = self._tail
        for j in range(n):
            acc[j * f.hop: j * f.hop + y.shape[1]] += y[j]
        self._started = True
        if last:  # the spill past the stream's last sample is dropped
            self._tail = np.zeros(ov, np.float32)
            self._spilled = False
            return acc[: n * f.hop + f.overlap]
        self._tail = acc[n * f.hop:].copy()
        self._spilled = shape is not None or bool(self._tail[f.overlap:].any())
        return acc[: n * f.hop]

    def _push_plain(self, frames: np.ndarray, last: bool) -> np.ndarray:
        """The unfiltered overlap-add (bit for bit what every 1.0 stream decodes to)."""
        f = self.f
        n = frames.shape[0]
        out = np.empty(n * f.hop + (f.overlap if last else 0), dtype=np.float32)
        tail = self._tail[: f.overlap]
        for j in range(n):
            first = not self._started and j == 0
            is_last = last and j == n - 1
            y = frames[j] * self._windows[(first, is_last)]
            y[: f.overlap] += tail
            seg = y[: f.hop] if not is_last else y
            out[j * f.hop : j * f.hop + seg.shape[0]] = seg
            tail = np.zeros(f.overlap, np.float32) if is_last else y[f.hop :].copy()
        self._tail = np.concatenate([tail, np.zeros(self.spill, np.float32)]) if self.spill \
            else tail
        self._started = True
        return out

    @property
    def pending(self) -> np.ndarray:
        """The samples still waiting for the next frame (``overlap + spill``)."""
        return self._tail

    @pending.setter
    def pending(self, tail: np.ndarray) -> None:
        # Overlap-add is linear: a stereo decoder re-expresses the tails of L/R in M/S.
        self._tail = np.asarray(tail, dtype=np.float32).reshape(self.f.overlap + self.spill).copy()
        self._spilled = bool(self._tail[self.f.overlap:].any())

    def reset(self) -> None:
        """Forget the pending tail after lost frames (the next frame fades in from silence)."""
        self._tail = np.zeros(self.f.overlap + self.spill, np.float32)
        self._spilled = False
