"""Range coding of quantizer symbols with constriction and integer frequency tables.

Each tier ships, per code channel, an integer frequency table (one count per symbol, every
count ≥ 1 so any symbol stays encodable). Probabilities are formed as ``count / total`` in
float64 and cast to float32: exact IEEE arithmetic on integers, so every machine builds the
same float table, and constriction turns it into the same fixed-point model (``perfect=False``,
24-bit precision). One range-coded stream covers all symbols of one layer in one packet
(several frames), which amortises the coder's 32–64-bit flush.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import constriction
import numpy as np

# Recorded in every stream header; a decoder refuses streams coded with other settings.
CODER_ID = "constriction-0.5:range:u32:categorical:perfect=false"
TABLE_TOTAL = 1 << 16


class EntropyError(ValueError):
    """A payload could not be range-decoded with the given tables."""


@dataclass
class CodeTables:
    """Integer frequency tables, shape (channels, n_symbols), all entries ≥ 1."""

    freqs: np.ndarray  # or anything np.asarray takes (a tier file's nested lists)
    _models: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.freqs = np.asarray(self.freqs, dtype=np.int64)
        if self.freqs.ndim != 2 or (self.freqs < 1).any():
            raise ValueError("frequency tables must be 2-D with every count >= 1")
        probs = (self.freqs / self.freqs.sum(axis=1, keepdims=True)).astype(np.float32)
        self._models = [constriction.stream.model.Categorical(p, perfect=False) for p in probs]

    @property
    def channels(self) -> int:
        return self.freqs.shape[0]

    @property
    def n_symbols(self) -> int:
        return self.freqs.shape[1]

    def ideal_bits(self, symbols: np.ndarray) -> float:
        """Information content of ``symbols`` (..., channels, time) under these tables."""
        p = self.freqs / self.freqs.sum(axis=1, keepdims=True)
        s = symbols.reshape(-1, self.channels, symbols.shape[-1])
        bits = -np.log2(p[np.arange(self.channels)[None, :, None], s])
        return float(bits.sum())

    def to_list(self) -> list[list[int]]:
        return self.freqs.tolist()


def tables_from_histogram(hist: np.ndarray, total: int = TABLE_TOTAL) -> CodeTables:
    """Scale symbol counts (channels, n_symbols) to integer tables summing to ~``total``.

    Every symbol keeps a count of at least 1; the rest of the mass follows the histogram.
    """
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.shape[1]
    spare = total - n
    p = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
    freqs = 1 + np.floor(p * spare).astype(np.int64)
    return CodeTables(freqs)


def encode_many(parts: list[tuple[np.ndarray, CodeTables]]) -> bytes:
    """Range-code several symbol arrays, each (..., channels, time) with its own tables, into
    one stream (one flush), channel by channel; little-endian 32-bit words."""
    enc = constriction.stream.queue.RangeEncoder()
    for symbols, tables in parts:
        s = np.ascontiguousarray(symbols, dtype=np.int32)
        s = s.reshape(-1, tables.channels, s.shape[-1])
        for c in range(tables.channels):
            enc.encode(np.ascontiguousarray(s[:, c, :].ravel()), tables._models[c])
    return enc.get_compressed().astype("<u4").tobytes()


def decode_many(data: bytes, parts: list[tuple[CodeTables, tuple[int, ...]]]
                ) -> list[np.ndarray]:
    """Inverse of ``encode_many``: one (tables, shape) per coded array, in order."""
    if len(data) % 4:
        raise EntropyError("payload is not a whole number of 32-bit words")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    outs = []
    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        for tables, shape in parts:
            lead = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            t = shape[-1]
            out = np.empty((lead, tables.channels, t), dtype=np.int32)
            for c in range(tables.channels):
                out[:, c, :] = np.asarray(dec.decode(tables._models[c], lead * t)).reshape(lead, t)
            outs.append(out.reshape(shape))
    except Exception as e:  # constriction raises plain errors on invalid data
        raise EntropyError(f"range decoding failed: {e}") from None
    return outs


def encode(symbols: np.ndarray, tables: CodeTables) -> bytes:
    """Range-code symbols shaped (..., channels, time) channel by channel; little-endian words."""
    return encode_many([(symbols, tables)])


def decode(data: bytes, tables: CodeTables, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``encode``: ``shape`` is (..., channels, time) of the coded symbols."""
    return decode_many(data, [(tables, shape)])[0]
