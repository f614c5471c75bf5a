"""CRC-32C of any byte range in time independent of its length: a linear sync-marker scan.

A damaged stretch full of sync markers, each claiming a length of megabytes, would make a
reader that CRCs every candidate's claimed body do quadratic work (SPEC section 6.2). CRC is
linear over GF(2), so with the running CRC ``P(x)`` of the input up to offset ``x`` known,
``crc(data[a:b]) = P(b) ^ Z_{b-a}(P(a))``, where ``Z_n`` advances a CRC register over ``n``
zero bytes: a 32x32 bit matrix applied with byte tables, one per power of two. ``CrcIndex``
keeps ``P`` at every ``STEP`` bytes, so a candidate costs two short CRCs and ``log2(L)`` table
look-ups instead of ``L`` bytes, and every input byte is CRC'd once.
"""

from __future__ import annotations

import crc32c

__all__ = ["STEP", "CrcIndex", "zero_shift"]

STEP = 4096  # bytes between stored running CRCs: a candidate CRCs at most 2 * STEP bytes
_MASK = 0xFFFF_FFFF
_BITS = 24  # lengths up to 2**24 - 1 bytes (packets are at most 2**22 + 12)
_tables: list[tuple[list[int], list[int], list[int], list[int]]] = []


def _apply(cols: list[int], s: int) -> int:
    """The 32x32 GF(2) matrix with columns ``cols`` times the vector ``s``."""
    out = 0
    i = 0
    while s:
        if s & 1:
            out ^= cols[i]
        s >>= 1
        i += 1
    return out


def _byte_tables(cols: list[int]) -> tuple[list[int], list[int], list[int], list[int]]:
    out = []
    for j in range(4):
        t = [0] * 256
        for b in range(1, 256):
            low = b & -b
            t[b] = t[b ^ low] ^ cols[8 * j + low.bit_length() - 1]
        out.append(t)
    return out[0], out[1], out[2], out[3]


def _build() -> None:
    # One zero byte, column by column: Z_1(s) = ~crc32c(b"\0", ~s).
    cols = [~crc32c.crc32c(b"\0", ~(1 << i) & _MASK) & _MASK for i in range(32)]
    for _ in range(_BITS):
        _tables.append(_byte_tables(cols))
        cols = [_apply(cols, c) for c in cols]  # Z_{2n} = Z_n . Z_n


def zero_shift(s: int, n: int) -> int:
    """Advance the CRC register ``s`` over ``n`` zero bytes (``n < 2**24``)."""
    if not _tables:
        _build()
    k = 0
    while n:
        if n & 1:
            t0, t1, t2, t3 = _tables[k]
            s = t0[s & 255] ^ t1[(s >> 8) & 255] ^ t2[(s >> 16) & 255] ^ t3[s >> 24]
        n >>= 1
        k += 1
    return s


class CrcIndex:
    """Running CRC-32Cs of a sequential input, every ``STEP`` bytes from an origin.

    The input is a buffer that grows at the end and drops consumed bytes at the front
    (``buf[0]`` is absolute offset ``base``); ranges asked for must lie in it. Each input byte
    is CRC'd once while ranges are asked for in increasing order, as a reader scans.
    """

    def __init__(self) -> None:
        self.origin = 0
        self.states: list[int] = []  # states[i] = crc32c(input[origin : origin + i*STEP])

    def _running(self, buf: bytearray, base: int, x: int) -> int:
        """crc32c(input[origin:x]); the stored state below ``x`` must lie in ``buf``."""
        i = (x - self.origin) // STEP
        with memoryview(buf) as view:
            while len(self.states) <= i:
                at = self.origin + (len(self.states) - 1) * STEP - base
                self.states.append(crc32c.crc32c(view[at : at + STEP], self.states[-1]))
            at = self.origin + i * STEP - base
            return crc32c.crc32c(view[at : x - base], self.states[i])

    def crc(self, buf: bytearray, base: int, a: int, b: int) -> int:
        """crc32c(input[a:b]) for absolute offsets ``base <= a <= b <= base + len(buf)``."""
        i = (a - self.origin) // STEP
        if not self.states or a < self.origin or \
                self.origin + min(i, len(self.states) - 1) * STEP < base:
            self.origin, self.states = a, [0]  # bytes before base are gone: start afresh
        elif i > 64:  # forget states that lie before the range
            k = min(i, len(self.states) - 1)
            del self.states[:k]
            self.origin += k * STEP
        pa = self._running(buf, base, a)
        return self._running(buf, base, b) ^ zero_shift(pa, b - a)
