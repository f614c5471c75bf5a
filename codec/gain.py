"""Per-packet, per-channel gain: the side information that lets the codec see unit-level frames.

The encoder divides each packet's samples by their RMS, quantized to 1/8 octave (0.75 dB) in
one byte, and the decoder multiplies back. The code only depends on the packet's own samples,
so streaming and whole-file encoding agree.
"""

from __future__ import annotations

import numpy as np

GAIN_BITS = 8
_OFFSET = 160  # code 160 = RMS 1.0; code 1 ≈ -120 dBFS, code 255 ≈ +72 dB headroom
_FLOOR = 2.0 ** ((1 - _OFFSET) / 8)


def gain_code(x: np.ndarray) -> int:
    """Quantized log-RMS of ``x`` (0..255)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if not np.isfinite(rms):
        rms = 1.0
    rms = max(rms, _FLOOR)
    return int(np.clip(np.rint(8.0 * np.log2(rms)) + _OFFSET, 1, 255))


def gain_value(code: int) -> float:
    """Linear gain of a code."""
    return float(2.0 ** ((int(code) - _OFFSET) / 8.0))
