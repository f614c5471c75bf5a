"""AUDIO packet extension records (format 1.1): typed bytes after a packet's last layer.

Format 1.0 readers ignore everything after the last layer (SPEC §4.2), so information a
decoder can do without travels there as records ``type u8, length u8, data``; a reader keeps
the records it knows and skips the others, and a record cut short ends the list (what came
before it stands). Defined types:

* ``BAND_LIMIT`` (1): one byte per channel of the stream, in channel order. ``v = 0``: no
  limit; ``1 ≤ v ≤ 255``: the encoder's input had no content above ``v / 256`` of the Nyquist
  frequency in this packet, so the decoder may remove what its coding noise put there.
"""

from __future__ import annotations

from collections.abc import Sequence

BAND_LIMIT = 1
BAND_STEPS = 256  # a band-limit code v stands for v / BAND_STEPS of the Nyquist frequency


def pack_records(records: Sequence[tuple[int, bytes]]) -> bytes:
    """Serialise ``(type, data)`` records (types 0..255, data up to 255 bytes each)."""
    out = bytearray()
    for kind, data in records:
        if not 0 <= kind <= 255 or len(data) > 255:
            raise ValueError(f"extension record type {kind} with {len(data)} bytes")
        out += bytes([kind, len(data)]) + data
    return bytes(out)


def parse_records(ext: bytes) -> dict[int, bytes]:
    """The records of an extension area (the first of each type); never raises."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 2 <= len(ext):
        kind, n = ext[pos], ext[pos + 1]
        if pos + 2 + n > len(ext):
            break
        out.setdefault(kind, bytes(ext[pos + 2: pos + 2 + n]))
        pos += 2 + n
    return out


def pack_band_limits(codes: Sequence[int]) -> bytes:
    """The extension area of a packet whose channels have these band-limit codes (``b""``
    when no channel is limited: such a packet is byte-identical to a 1.0 writer's)."""
    if not any(codes):
        return b""
    return pack_records([(BAND_LIMIT, bytes(codes))])


def band_limits(ext: bytes, channels: int) -> list[int] | None:
    """Each channel's band-limit code, or None when the packet carries none (or a record of
    the wrong size, which a decoder treats as absent)."""
    data = parse_records(ext).get(BAND_LIMIT)
    if data is None or len(data) != channels:
        return None
    return list(data)
