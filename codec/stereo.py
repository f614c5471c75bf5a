"""Stereo coding of two-channel streams: L/R or mid/side, chosen per packet, with the second
coded channel (S, or R) allowed fewer cascade layers than the first.

Side info of an AUDIO packet of a 2-channel stream (3 bytes)::

    byte 0   gain code of coded channel 0 (L, or M)
    byte 1   gain code of coded channel 1 (R, or S)
    byte 2   stereo byte: bit 0 = mode (0 = L/R, 1 = M/S with M = (L+R)/2, S = (L-R)/2),
             bits 1..7 = layers coded channel 1 carries in this packet (0 = all of them)

Streams written before stereo coding have 2 bytes (L/R, all layers); the length tells them
apart. In 2-channel streams a gain code of 0 (``SILENT``; real gains are 1..255) means the
channel carries no layers and decodes as silence: mono in stereo costs what mono costs. Layer
k's payload holds the symbols of the coded channels that carry layer k, channel 0's frames
first. When S carries every layer the encoder normalises it by M's gain (byte 1 = byte 0)
unless S is louder, so S's coding noise sits at M's absolute level and a quiet side costs few
bits; S carrying fewer layers keeps its own gain (both measured, README "Stereo"). The decoder
only ever reads byte 1 as S's gain, never infers it. LPC tiers code ``auto`` as L/R and never
send a silent channel: their analysis/synthesis pairing cannot follow a switch.

No torch here: ``nwc info`` reads side info with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LR, MS = 0, 1
MODES = {"lr": LR, "ms": MS}
STEREO_CHOICES = ("auto", "lr", "ms")
MAX_SIDE_LAYERS = 127           # seven bits of the stereo byte
# auto: M/S when the side's energy is below this fraction of the quieter of L and R
# (measured on the music dev set, README "Stereo").
MS_THRESHOLD = 0.1
SILENT = 0          # gain code of a coded channel that carries no layers: decoded as silence
SKIP_CODES = 40     # ... sent for an S 30 dB (40 gain steps) below its M


@dataclass(frozen=True)
class Stereo:
    """What one packet's stereo byte says."""

    mode: int = LR
    side_layers: int = 0        # layers coded channel 1 carries; 0 = all

    def to_byte(self) -> int:
        return (self.side_layers << 1) | self.mode

    @classmethod
    def from_byte(cls, b: int) -> Stereo:
        return cls(b & 1, b >> 1)


def side_bytes(channels: int) -> int:
    """Side-info length a current encoder writes for ``channels`` channels."""
    return 3 if channels == 2 else channels


def split_side(side: bytes, channels: int) -> tuple[bytes, Stereo] | None:
    """(gain codes, stereo) of a packet's side info, or None if its length is wrong."""
    if len(side) == channels:       # mono, >2 channels, and 2-channel streams before stereo
        return bytes(side), Stereo()
    if channels == 2 and len(side) == 3:
        return bytes(side[:2]), Stereo.from_byte(side[2])
    return None


def layer_counts(codes: bytes, stereo: Stereo, n_layers: int) -> list[int]:
    """Layers each coded channel carries in a packet holding ``n_layers`` layers, from its
    gain ``codes`` (one per channel) and stereo byte."""
    counts = [n_layers] * len(codes)
    if len(codes) == 2:
        if stereo.side_layers:
            counts[1] = min(n_layers, stereo.side_layers)
        counts = [0 if g == SILENT else n for g, n in zip(codes, counts, strict=True)]
    return counts


def gain_codes(own: list[int], stereo: Stereo, skip: bool = True) -> list[int]:
    """Side-info gain codes of a packet's two coded channels from their own gain codes.

    S carrying every layer is normalised by M's gain (``side_gain``); S carrying fewer keeps
    its own, so its coarser coding stays relative to its own level (measured best each way,
    README "Stereo"). With ``skip``, a channel of digital silence, or an S ``SKIP_CODES``
    below its M, is sent as ``SILENT`` (no layers). A quiet L or R is still coded: alone in
    one ear of a headphone it is audible.
    """
    shared = stereo.mode == MS and not stereo.side_layers
    out = [own[0], side_gain(own[0], own[1]) if shared else own[1]]
    if skip:
        for c in (0, 1):
            if own[c] <= 1:  # gain_code's floor
                out[c] = SILENT
        if stereo.mode == MS and own[0] - own[1] >= SKIP_CODES:
            out[1] = SILENT  # dropping S adds an error 30 dB below M: far under its noise
    return out


def default_side_layers(layers: int) -> int:
    """Layers S carries by default: the lower half, rounded up (all of a 1-layer tier, 1 of
    2). S's top layer bought the least SI-SNR per bit on the music dev set (README "Stereo")."""
    return (layers + 1) // 2


def to_coded(x: np.ndarray, mode: int) -> np.ndarray:
    """(2, ...) L/R → the coded channels of ``mode``."""
    if mode == LR:
        return x
    return np.stack([(x[0] + x[1]) * 0.5, (x[0] - x[1]) * 0.5])


def to_lr(y: np.ndarray, mode: int) -> np.ndarray:
    """(2, ...) coded channels of ``mode`` → L/R (inverse of ``to_coded``)."""
    if mode == LR:
        return y
    return np.stack([y[0] + y[1], y[0] - y[1]])


def side_gain(mid_code: int, side_code: int) -> int:
    """Gain code S is normalised by in an M/S packet: M's, or S's own if S is louder."""
    return max(mid_code, side_code)


def choose(x: np.ndarray, stereo: str, threshold: float | None = None) -> int:
    """The mode for a packet's L/R samples (2, n): forced, or M/S when the side is quiet."""
    if stereo != "auto":
        return MODES[stereo]
    if threshold is None:
        threshold = MS_THRESHOLD
    e = np.mean(np.square(x, dtype=np.float64), axis=1)
    side = float(np.mean(np.square(x[0].astype(np.float64) - x[1], dtype=np.float64))) / 4
    return MS if side < threshold * float(e.min()) else LR
