"""Range CRCs from running CRCs, and the linear-time sync-marker scan they give the reader."""

from __future__ import annotations

import io
import struct
import time

import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st
from nwc.formats.container import SYNC, ContainerReader, Damage, StreamHeader, encode_header
from nwc.formats.crcrange import STEP, CrcIndex, zero_shift


@given(st.integers(0, 0xFFFF_FFFF), st.integers(0, 3 * STEP))
@settings(max_examples=60, deadline=None)
def test_zero_shift_is_crc_over_zero_bytes(s: int, n: int) -> None:
    assert zero_shift(s, n) == ~crc32c.crc32c(bytes(n), ~s & 0xFFFF_FFFF) & 0xFFFF_FFFF


@given(st.binary(min_size=1, max_size=5 * STEP), st.data())
@settings(max_examples=40, deadline=None)
def test_range_crc_matches_direct_crc(data: bytes, draw) -> None:
    base = draw.draw(st.integers(0, len(data) - 1))
    buf = bytearray(data[base:])
    idx = CrcIndex()
    a = base
    for _ in range(5):  # increasing starts, as a scanner asks
        a = draw.draw(st.integers(a, len(data)))
        b = draw.draw(st.integers(a, len(data)))
        assert idx.crc(buf, base, a, b) == crc32c.crc32c(data[a:b])


def _header() -> bytes:
    return encode_header(StreamHeader(
        sample_rate=16000, original_rate=16000, channels=1, total_samples=16000,
        codec_delay=0, tier="t", model_id="m", weights_hash="00", frame_size=512,
        hop_size=480, num_layers=1, packet_frames=16, gain_bits=8, coder="c"))


def _flood(n: int) -> bytes:
    """Sync markers every 8 bytes, each claiming a body up to the end of the input."""
    out = bytearray()
    while len(out) < n:
        out += SYNC + struct.pack("<I", max(14, min(1 << 22, n - len(out) - 12)))
    return bytes(out[:n])


def _scan_seconds(n: int) -> float:
    data = _header() + _flood(n)
    t = time.process_time()
    events = list(ContainerReader(io.BytesIO(data)))
    assert len(events) == 1 and isinstance(events[0], Damage)
    return time.process_time() - t


def test_sync_flood_scan_is_linear() -> None:
    # Measured: 256 KiB 0.17 s, 1 MiB 0.70 s (was 0.21 s and 2.56 s: quadratic).
    small, big = _scan_seconds(1 << 16), _scan_seconds(1 << 18)
    assert big < 8 * small + 0.2, (small, big)  # 4x the input: ~4x the time, not 16x
    assert big < 3.0
