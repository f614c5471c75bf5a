"""Front ends: what stands between a tier's PCM and its cascade's frames.

A plain tier codes the samples themselves. An LPC tier (``lpc.py``) pre-filters its input,
codes the residual under quantized LPC filters whose LSF symbols travel in the base layer, and
its decoder runs the synthesis filter. Everything that differs between the two lives here, so
the payload coder and the stream encoder and decoder ask the tier's front end (``front_end``)
instead of testing ``tier.lpc``; a new front end is one more class.

A ``FrontEnd`` holds the stateless part (side symbols, stereo rules) and makes the per-stream
state: a ``FrontEncoder`` (input filtering, analysis memory) and a ``FrontDecoder`` (synthesis
memory, re-expressed when the stereo mode switches).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import entropy, lpc
from . import stereo as sc
from .errors import CodecError
from .framing import Framing, split_frames

if TYPE_CHECKING:
    from .anytier import Tier

Part = tuple[entropy.CodeTables, tuple[int, ...]]   # a symbol array's tables and shape
Coded = tuple[np.ndarray, entropy.CodeTables]       # a symbol array and its tables
# Re-expresses a pair of L/R-or-M/S memories in the new stereo mode's channels.
Convert = Callable[[np.ndarray, np.ndarray], np.ndarray]

_IDENTITY = np.eye(1, lpc.ORDER + 1)[0]   # A(z) = 1: before any decoded filter


class FrontEncoder(ABC):
    """One stream's encoder-side front end: input filtering and analysis memory."""

    @abstractmethod
    def take(self, pcm: np.ndarray) -> np.ndarray:
        """Input samples (channels, n) at the tier rate → those now ready for packets."""

    @abstractmethod
    def flush(self) -> np.ndarray:
        """The samples still held back, at the end of the input."""

    @abstractmethod
    def analyze(self, x: np.ndarray, n_frames: int, mode: int
                ) -> tuple[np.ndarray, list[Coded]]:
        """A packet's coded channels (channels, span) in stereo ``mode`` → (what the cascade
        codes, the side symbols the base layer carries ahead of the cascade's)."""


class FrontDecoder(ABC):
    """One stream's decoder-side front end: synthesis memory."""

    @abstractmethod
    def synthesize(self, x: np.ndarray, filters: np.ndarray | None, n_frames: int
                   ) -> np.ndarray:
        """Overlap-added samples (samples, channels) that start a packet → output samples.
        Without ``filters`` (gaps, the final flush) the last decoded ones continue."""

    @abstractmethod
    def switch(self, convert: Convert) -> None:
        """Re-express the (linear) memory of a channel pair in a new stereo mode."""


class FrontEnd(ABC):
    """A tier's front end: its stateless rules, and the factories of per-stream state."""

    name = "plain"
    #: A silent channel may go uncoded (gain code ``stereo.SILENT``).
    skips_silence = True
    #: The decoded frames are audio, so packets carry band limits (``bandlimit.py``).
    band_limits = True

    def __init__(self, tier: Tier) -> None:
        self.tier = tier

    def mode(self, x: np.ndarray, stereo: str) -> int:
        """The stereo mode of a packet's L/R samples (2, n) under the ``stereo`` choice."""
        return sc.choose(x, stereo)

    def check_counts(self, counts: list[int]) -> None:
        """Refuse a packet with a silent channel (``counts``: layers per coded channel)
        unless this front end sends them."""
        if not self.skips_silence and min(counts) == 0:
            raise CodecError(f"silent channel in a packet of an {self.name} tier")

    def side_parts(self, rows: int) -> list[Part]:
        """(tables, shape) of the side symbol arrays in a base layer of ``rows`` frames."""
        return []

    def filters(self, side: list[np.ndarray], channels: int, n_frames: int
                ) -> np.ndarray | None:
        """A packet's decoded synthesis parameters from its side symbols, if any."""
        return None

    @abstractmethod
    def encoder(self, channels: int, framing: Framing) -> FrontEncoder:
        """Fresh encoder state for a stream cut into packets by ``framing``."""

    @abstractmethod
    def decoder(self, channels: int) -> FrontDecoder:
        """Fresh decoder state."""


class PlainEncoder(FrontEncoder):
    def __init__(self, channels: int) -> None:
        self.channels = channels

    def take(self, pcm: np.ndarray) -> np.ndarray:
        return pcm

    def flush(self) -> np.ndarray:
        return np.zeros((self.channels, 0), np.float32)

    def analyze(self, x: np.ndarray, n_frames: int, mode: int
                ) -> tuple[np.ndarray, list[Coded]]:
        return x, []


class PlainDecoder(FrontDecoder):
    def synthesize(self, x: np.ndarray, filters: np.ndarray | None, n_frames: int
                   ) -> np.ndarray:
        return x

    def switch(self, convert: Convert) -> None:
        pass


class PlainFrontEnd(FrontEnd):
    """The cascade codes the samples: no side symbols, no memory."""

    def encoder(self, channels: int, framing: Framing) -> FrontEncoder:
        return PlainEncoder(channels)

    def decoder(self, channels: int) -> FrontDecoder:
        return PlainDecoder()


class LPCEncoder(FrontEncoder):
    """Pre-filter, then per packet: LPC analysis, LSF quantization and the residual."""

    def __init__(self, tier: Tier, channels: int, framing: Framing) -> None:
        self.tier = tier
        self.framing = framing
        self.states = [lpc.LPCEncoderState() for _ in range(channels)]
        self._raw = np.zeros((channels, 0), dtype=np.float32)  # input not yet pre-filtered
        self._filtered = 0                                     # input samples pre-filtered

    def take(self, pcm: np.ndarray) -> np.ndarray:
        self._raw = np.concatenate([self._raw, pcm], axis=1)
        return self._prefilter(final=False)

    def flush(self) -> np.ndarray:
        return self._prefilter(final=True)

    def _prefilter(self, final: bool) -> np.ndarray:
        """Pre-filter in blocks that end where packets' spans end (and, with ``final``, the
        rest): the block-wise filter's rounding depends on where its blocks start
        (``codec/iir.py``), and this way never on how the input was chunked. A packet still
        goes out as soon as its last sample is in."""
        f = self.framing
        out = [np.zeros((len(self.states), 0), np.float32)]
        while self._raw.shape[1]:
            size = f.packet_hop + (f.overlap if self._filtered == 0 else 0)
            if self._raw.shape[1] < size and not final:
                break
            block, self._raw = self._raw[:, :size], self._raw[:, size:]
            self._filtered += block.shape[1]
            y = np.stack([st.pre(ch) for st, ch in zip(self.states, block, strict=True)])
            out.append(y.astype(np.float32))
        return np.concatenate(out, axis=1)

    def analyze(self, x: np.ndarray, n_frames: int, mode: int
                ) -> tuple[np.ndarray, list[Coded]]:
        # Filter memory stays L/R between packets; the packet is analysed in its own mode.
        if x.shape[0] == 2:
            self._set_hist(sc.to_coded(np.stack([s.hist for s in self.states]), mode))
        res, symbols = self._residual(x, n_frames)
        if x.shape[0] == 2:
            self._set_hist(sc.to_lr(np.stack([s.hist for s in self.states]), mode))
        assert self.tier.lsf_tables is not None  # an LPC tier
        return res, [(symbols, self.tier.lsf_tables)]

    def _set_hist(self, hist: np.ndarray) -> None:
        for s, h in zip(self.states, hist, strict=True):
            s.hist = np.ascontiguousarray(h, dtype=np.float64)

    def _residual(self, x: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Pre-processed packet samples (channels, span) → (LPC residual, LSF symbols)."""
        tier = self.tier
        f = tier.framing
        span = f.packet_span(n_frames)
        idx = lpc.set_index(span, f.hop, f.overlap, n_frames)
        res = np.empty((x.shape[0], span), dtype=np.float32)
        lsf_q = tier.model.lsf
        assert lsf_q is not None  # an LPC tier
        symbols = []
        for c, st in enumerate(self.states):
            xc = x[c].astype(np.float64)
            lsf = lpc.lpc_to_lsf(lpc.lpc_analysis(split_frames(xc, f, n_frames),
                                                  tier.sample_rate))
            sym = lsf_q.to_symbols(lsf)
            aq = lpc.lsf_to_lpc(lsf_q.from_symbols(sym))
            sets = np.vstack([aq[:1] if st.prev is None else st.prev[None], aq])
            res[c] = lpc.residual(np.concatenate([st.hist, xc]), sets, idx)
            # The next packet (if any) starts n_frames hops on and filters on from there.
            st.hist = xc[n_frames * f.hop - lpc.ORDER: n_frames * f.hop].copy()
            st.prev = aq[-1]
            symbols.append(sym)
        return res, np.concatenate(symbols)


class LPCDecoder(FrontDecoder):
    """Synthesis filter and de-emphasis per channel, carried across packets."""

    def __init__(self, tier: Tier, channels: int) -> None:
        self.tier = tier
        self.states = [lpc.LPCDecoderState() for _ in range(channels)]

    def synthesize(self, x: np.ndarray, filters: np.ndarray | None, n_frames: int
                   ) -> np.ndarray:
        """``filters`` (channels, n_frames, ORDER+1) are the packet's quantized LPC sets."""
        f = self.tier.framing
        idx = lpc.set_index(x.shape[0], f.hop, f.overlap, n_frames)
        out = np.empty_like(x)
        for c, st in enumerate(self.states):
            # The stream's first frame has no predecessor: the encoder used its own set.
            prev = st.prev if st.prev is not None else \
                (filters[c, 0] if filters is not None else _IDENTITY)
            own = filters[c] if filters is not None else np.zeros((0, prev.shape[0]))
            out[:, c] = st.synthesize(x[:, c], np.vstack([prev[None], own]), idx)
            if filters is not None:
                st.prev = filters[c, -1]
        return out

    def switch(self, convert: Convert) -> None:
        # The LPC sets stay with their channel slot, as they do in the encoder.
        a, b = self.states
        a.mem[:], b.mem[:] = convert(a.mem, b.mem)
        a.de[:], b.de[:] = convert(a.de, b.de)


class LPCFrontEnd(FrontEnd):
    """Residual coding under quantized LPC filters; the LSFs travel in the base layer.

    ``auto`` stereo stays L/R and no channel goes silent: a packet's leading overlap is
    filtered with the previous packet's set per channel, which cannot follow an L/R <-> M/S
    change, and synthesis needs every channel's filters.
    """

    name = "LPC"
    skips_silence = False
    band_limits = False  # its frames are the residual, before synthesis

    def mode(self, x: np.ndarray, stereo: str) -> int:
        return sc.choose(x, "lr" if stereo == "auto" else stereo)

    def side_parts(self, rows: int) -> list[Part]:
        assert self.tier.lsf_tables is not None
        return [(self.tier.lsf_tables, (rows, lpc.ORDER, 1))]

    def filters(self, side: list[np.ndarray], channels: int, n_frames: int
                ) -> np.ndarray | None:
        lsf_q = self.tier.model.lsf
        assert lsf_q is not None
        return lpc.lsf_to_lpc(lsf_q.from_symbols(side[0])).reshape(channels, n_frames, -1)

    def encoder(self, channels: int, framing: Framing) -> FrontEncoder:
        return LPCEncoder(self.tier, channels, framing)

    def decoder(self, channels: int) -> FrontDecoder:
        return LPCDecoder(self.tier, channels)


def front_end(tier: Tier) -> FrontEnd:
    """The front end ``tier`` was trained with."""
    return LPCFrontEnd(tier) if tier.lpc else PlainFrontEnd(tier)
