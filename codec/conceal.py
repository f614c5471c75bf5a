"""Packet-loss concealment: a lost stretch continues the signal instead of cutting to silence.

At the start of a gap each channel's last 40 ms are searched for a pitch period (2.5–20 ms,
the lag of highest normalised autocorrelation); the gap repeats that last period (pitch
repetition), held for 20 ms and then faded out over 80 ms into comfort noise 30 dB below the
signal, as speech codecs' PLC do. The decoded frame's fading overlap tail and the
concealment cross-fade over the overlap at the gap's start.

A gap is only known once the packet after it arrives, so its end can look ahead, as a
jitter buffer's merge does: the decoder holds back the gap's last ``TAIL_S`` (``tail``),
and ``bridge`` cross-fades it into the next packet's first pitch period repeated backwards,
so the signal also grows back into the packet instead of jumping out of noise; that
extension also completes the packet's fade-in. Deterministic: the noise has a fixed seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONCEAL_CHOICES", "Concealer"]

CONCEAL_CHOICES = ("auto", "silence")
HISTORY_S = 0.04
MIN_PITCH_S, MAX_PITCH_S = 0.0025, 0.02
HOLD_S, FADE_S = 0.02, 0.08  # repetition at full level, then a fade to comfort noise
TAIL_S = HOLD_S + FADE_S     # the end of a gap that grows back into the next packet
NOISE_DB = -30.0


def _rise(n: int) -> np.ndarray:
    """Half-Hann from 0 to 1 over ``n`` samples."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / max(n, 1))).astype(np.float32)


def pitch_period(h: np.ndarray, lo: int, hi: int) -> int:
    """The lag in [lo, hi] at which ``h`` best matches itself (normalised correlation)."""
    w = h.shape[0] - hi
    a = h[-w:].astype(np.float64)
    best, lag = -np.inf, hi
    for t in range(lo, hi + 1):
        b = h[-w - t: h.shape[0] - t].astype(np.float64)
        c = float(a @ b) / (np.sqrt(float(a @ a) * float(b @ b)) + 1e-12)
        if c > best:
            best, lag = c, t
    return lag


class Concealer:
    """Remembers the decoded output and fills gaps with its continuation (samples, channels)."""

    def __init__(self, rate: int, channels: int, overlap: int = 32) -> None:
        self.rate = rate
        self.overlap = overlap
        self.hist = np.zeros((int(HISTORY_S * rate), channels), np.float32)
        self._lo = max(1, int(MIN_PITCH_S * rate))
        self._hi = min(int(MAX_PITCH_S * rate), self.hist.shape[0] // 2)
        self._cycles: list[np.ndarray] | None = None  # per channel; None: not in a gap
        self._levels = np.zeros(channels, np.float32)
        self._t = 0  # samples concealed in the current gap
        self._rng = np.random.default_rng(0)
        self._lead: np.ndarray | None = None  # bridge's extension over the packet's fade-in

    def _start(self) -> None:
        self._cycles = []
        for c in range(self.hist.shape[1]):
            h = self.hist[:, c]
            t = pitch_period(h, self._lo, self._hi) if h.any() else self._hi
            self._cycles.append(h[-t:].copy())
            self._levels[c] = float(np.sqrt(np.mean(np.square(h[-t:], dtype=np.float64))))
        self._t = 0

    def _next(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the concealment."""
        assert self._cycles is not None
        i = self._t + np.arange(n)
        hold, fade = int(HOLD_S * self.rate), int(FADE_S * self.rate)
        g = np.clip(1.0 - (i - hold) / fade, 0.0, 1.0)
        g = (0.5 - 0.5 * np.cos(np.pi * g)).astype(np.float32)
        noise = self._rng.standard_normal((n + 1, len(self._cycles))).astype(np.float32)
        noise = 0.5 * (noise[1:] + noise[:-1])  # a little low-passed
        out = np.empty((n, len(self._cycles)), np.float32)
        cn = 10 ** (NOISE_DB / 20) * np.sqrt(2.0)  # the averaged noise has rms 1/sqrt(2)
        for c, cyc in enumerate(self._cycles):
            out[:, c] = cyc[i % cyc.shape[0]] * g + noise[:, c] * (1 - g) * cn * self._levels[c]
        self._t += n
        return out

    def _remember(self, x: np.ndarray) -> None:
        n = self.hist.shape[0]
        self.hist = np.concatenate([self.hist, x])[-n:] if x.shape[0] < n else x[-n:].copy()

    def fill(self, block: np.ndarray) -> np.ndarray:
        """Conceal a gap block; ``block`` holds the fading tail of the last decoded frame."""
        first = self._cycles is None
        if first:
            self._start()
        cont = self._next(block.shape[0])
        if first:
            n = min(self.overlap, block.shape[0])
            cont[:n] = block[:n] + cont[:n] * _rise(n)[:, None]
        self._remember(cont)
        return cont

    def tail(self, gap: int) -> int:
        """How many samples at the end of a ``gap``-sample loss to hold for ``bridge``."""
        return min(gap, int(TAIL_S * self.rate))

    def bridge(self, held: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """The gap's held end (``fill``'s output) cross-faded into the next packet's decoded
        samples ``nxt`` extended backwards by its first pitch period (after the fade-in).

        ``nxt`` starts with the ``overlap``-sample fade-in of a frame that lost its partner;
        the period is taken after it, and the extension's continuation over those samples
        completes the fade-in in ``resume``. Too short a packet: ``held`` unchanged.
        """
        ov, w = self.overlap, self.hist.shape[0]
        n = held.shape[0]
        if n == 0 or nxt.shape[0] < ov + w:
            return held
        j = np.arange(-n, ov)   # positions relative to the packet's first sample
        ext = np.empty((j.shape[0], held.shape[1]), np.float32)
        for c in range(held.shape[1]):
            h = nxt[ov:ov + w, c][::-1]   # read backwards, the start is the "past"
            t = pitch_period(h, self._lo, self._hi) if h.any() else self._hi
            ext[:, c] = nxt[ov + (j - ov) % t, c]
        rise = _rise(n)[:, None]
        self._lead = ext[n:]
        return held * (1 - rise) + ext[:n] * rise

    def resume(self, out: np.ndarray) -> np.ndarray:
        """The first packet after a gap fades in over the concealment (or over ``bridge``'s
        extension); every packet is kept as history."""
        if self._cycles is not None:
            n = min(self.overlap, out.shape[0])
            fill = self._next(n) if self._lead is None else self._lead[:n]
            out = out.copy()
            out[:n] += fill * (1 - _rise(n))[:, None]
            self._cycles = None
            self._lead = None
        self._remember(out)
        return out
