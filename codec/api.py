"""Streaming encoder and decoder: PCM chunks in, container packets out, and back.

This is the glue between the model, the quantizer's symbol mapping, the range coder and the
container's ``Packet`` objects. It knows nothing about files: the CLI feeds it arrays and
writes what it returns. Memory is bounded by one packet (plus the resampler's state), and
because frames and gains depend only on a packet's own samples at fixed positions, any
chunking of the input gives the same bytes as whole-file encoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import soxr

from ..formats.container import AUDIO, Damage, Packet, StreamHeader
from . import entropy, limits, lpc
from . import stereo as sc
from .catalog import header_for, packet_framing  # noqa: F401 - header_for: re-exported
from .conceal import CONCEAL_CHOICES, Concealer
from .framing import MAX_PACKET_FRAMES, Framing, OverlapAdd, split_frames
from .gain import GAIN_BITS, gain_code, gain_value
from .tierfile import TierError

if TYPE_CHECKING:  # torch-free: either engine's tier (tier.Tier, engine.NpTier) codes
    from .engine import NpTier
    from .tier import Tier as TorchTier

    Tier = TorchTier | NpTier

_IDENTITY = np.eye(1, lpc.ORDER + 1)[0]   # A(z) = 1: before any decoded filter


class CodecError(ValueError):
    """Input the codec cannot code, or a stream it cannot decode."""


def _lpc_analyze(tier: Tier, x: np.ndarray, n_frames: int,
                 states: list[lpc.LPCEncoderState]) -> tuple[np.ndarray, np.ndarray]:
    """Pre-processed packet samples (channels, span) → (LPC residual, LSF symbols)."""
    f = tier.framing
    span = f.packet_span(n_frames)
    idx = lpc.set_index(span, f.hop, f.overlap, n_frames)
    res = np.empty((x.shape[0], span), dtype=np.float32)
    symbols = []
    for c, st in enumerate(states):
        xc = x[c].astype(np.float64)
        lsf = lpc.lpc_to_lsf(lpc.lpc_analysis(split_frames(xc, f, n_frames), tier.sample_rate))
        lsf_q = tier.model.lsf
        assert lsf_q is not None  # an LPC tier
        sym = lsf_q.to_symbols(lsf)
        aq = lpc.lsf_to_lpc(lsf_q.from_symbols(sym))
        sets = np.vstack([aq[:1] if st.prev is None else st.prev[None], aq])
        res[c] = lpc.residual(np.concatenate([st.hist, xc]), sets, idx)
        # The next packet (if any) starts n_frames hops on and filters on from there.
        st.hist = xc[n_frames * f.hop - lpc.ORDER: n_frames * f.hop].copy()
        st.prev = aq[-1]
        symbols.append(sym)
    return res, np.concatenate(symbols)


def encode_payload(tier: Tier, x: np.ndarray, n_frames: int,
                   states: list[lpc.LPCEncoderState] | None = None,
                   n_layers: int | None = None, stereo: str = "auto",
                   side_layers: int | None = None) -> tuple[bytes, list[bytes]]:
    """Code one packet: ``x`` is (channels, ≥span) at the tier rate (pre-processed for LPC
    tiers, whose per-channel ``states`` carry filter memory between packets).
    Returns (side, layers), the first ``n_layers`` layers (default: all).

    Two channels are coded as L/R or M/S (``stereo``: auto, lr, ms), the second coded channel
    with ``side_layers`` layers (default ``stereo.default_side_layers``); see ``stereo.py``.
    """
    f = tier.framing
    span = f.packet_span(n_frames)
    x = x[:, :span]
    if x.shape[1] < span:
        x = np.pad(x, ((0, 0), (0, span - x.shape[1])))
    n_layers = n_layers or tier.layers
    info = sc.Stereo()
    if x.shape[0] == 2:
        if side_layers is None:
            side_layers = sc.default_side_layers(tier.layers)
        # LPC tiers do not switch: a packet's leading overlap is filtered with the previous
        # packet's set per channel, which cannot be carried across an L/R <-> M/S change.
        mode = sc.choose(x, "lr" if tier.lpc and stereo == "auto" else stereo)
        # The byte depends on the tier only, never on n_layers: a stream cut to k layers
        # stays byte-identical to a k-layer encode. R always carries every layer.
        info = sc.Stereo(mode, 0 if mode == sc.LR or side_layers >= tier.layers
                         else side_layers)
        x = sc.to_coded(x, info.mode)
    lsf_symbols = None
    if tier.lpc:
        if states is None:
            raise CodecError("an LPC tier needs encoder states")
        if x.shape[0] == 2:  # filter memory stays L/R between packets; code in this mode
            _set_hist(states, sc.to_coded(np.stack([s.hist for s in states]), info.mode))
        x, lsf_symbols = _lpc_analyze(tier, x, n_frames, states)
        if x.shape[0] == 2:
            _set_hist(states, sc.to_lr(np.stack([s.hist for s in states]), info.mode))
    codes = [gain_code(ch) for ch in x]
    if x.shape[0] == 2:
        codes = sc.gain_codes(codes, info, skip=not tier.lpc)
    counts = sc.layer_counts(bytes(codes), info, n_layers)
    active = [c for c, n in enumerate(counts) if n]  # a silent channel is not coded at all
    gains = np.array([gain_value(c) for c in codes], dtype=np.float32)[:, None]
    frames = split_frames(x[active] / gains[active], f, n_frames).reshape(-1, f.frame)
    # Active channels through every stage (the closed loop of a row depends on its row
    # only), then each layer keeps the rows of the channels that carry it.
    symbols = tier.model.encode_frames(frames, n_layers) if active else [np.zeros(
        (0, tier.model.symbol_channels, tier.model.code_steps), np.int32)] * n_layers
    layers = []
    for k, sym in enumerate(symbols):
        parts = [(_rows(sym, active, [c for c in active if counts[c] > k], n_frames),
                  tier.tables[k])]
        if k == 0 and lsf_symbols is not None:  # the LSFs travel in the base layer
            assert tier.lsf_tables is not None
            parts.insert(0, (lsf_symbols, tier.lsf_tables))
        layers.append(entropy.encode_many(parts))
    side = bytes(codes) + (bytes([info.to_byte()]) if x.shape[0] == 2 else b"")
    return side, layers


def _set_hist(states: list[lpc.LPCEncoderState], hist: np.ndarray) -> None:
    for s, h in zip(states, hist, strict=True):
        s.hist = np.ascontiguousarray(h, dtype=np.float64)


def decode_payload(tier: Tier, side: bytes, layers: list[bytes], channels: int,
                   n_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of ``encode_payload`` for the layers present (extra ones are ignored).

    Returns decoded frames (channels, n_frames, frame) of the coded channels (M and S in an
    M/S packet; ``stereo.to_lr`` maps them back) — LPC residual frames for LPC tiers — and,
    for LPC tiers, the quantized LPC sets (channels, n_frames, ORDER+1).
    """
    split = sc.split_side(side, channels)
    if split is None:
        raise CodecError(f"packet side info has {len(side)} bytes, expected "
                         f"{sc.side_bytes(channels)}")
    codes, info = split
    if not layers:
        raise CodecError("packet carries no layers")
    m = tier.model
    counts = sc.layer_counts(codes, info, min(len(layers), tier.layers))
    if tier.lpc and min(counts) == 0:  # LPC synthesis needs every channel's filters
        raise CodecError("silent channel in a packet of an LPC tier")
    carrying = [[c for c, n in enumerate(counts) if n > k] for k in range(max(counts))]
    decoded = [entropy.decode_many(layers[k], layer_parts(tier, k, len(cs) * n_frames))
               for k, cs in enumerate(carrying)]
    frames = np.zeros((channels, n_frames, tier.framing.frame), np.float32)
    # Channels with the same depth are decoded together (all of them, unless the second
    # channel of a stereo packet carries fewer layers, or none: silence).
    for depth in sorted(set(counts) - {0}):
        group = [c for c, n in enumerate(counts) if n == depth]
        syms = [_rows(decoded[k][-1], carrying[k], group, n_frames) for k in range(depth)]
        frames[group] = m.decode_frames(syms).reshape(len(group), n_frames, -1)
    gains = np.array([gain_value(c) for c in codes], dtype=np.float32)
    sets = None
    if tier.lpc:
        assert m.lsf is not None
        sets = lpc.lsf_to_lpc(m.lsf.from_symbols(decoded[0][0])).reshape(channels, n_frames, -1)
    return frames * gains[:, None, None], sets


def _rows(sym: np.ndarray, carrying: list[int], group: list[int], n_frames: int
          ) -> np.ndarray:
    """The rows of channels ``group`` in a layer's symbols, which hold ``carrying``'s."""
    if group == carrying:
        return sym
    sym = sym.reshape(len(carrying), n_frames, *sym.shape[1:])
    return sym[[carrying.index(c) for c in group]].reshape(-1, *sym.shape[2:])


def layer_rows(side: bytes, channels: int, n_frames: int, n_layers: int) -> list[int]:
    """Frames coded in each of a packet's ``n_layers`` layers (``n_frames`` × the coded
    channels that carry the layer): the ``rows`` of ``layer_parts``."""
    split = sc.split_side(side, channels)
    if split is None:
        raise CodecError(f"packet side info has {len(side)} bytes")
    counts = sc.layer_counts(split[0], split[1], n_layers)
    return [n_frames * sum(n > k for n in counts) for k in range(n_layers)]


def layer_parts(tier: Tier, k: int, rows: int) -> list[tuple[entropy.CodeTables, tuple]]:
    """(tables, shape) of each symbol array range-coded in layer ``k`` of a packet with
    ``rows`` frames (frames × coded channels carrying layer k: ``layer_rows``), in coding
    order."""
    parts = [(tier.tables[k], (rows, tier.model.symbol_channels, tier.model.code_steps))]
    if k == 0 and tier.lpc:  # the base layer also carries the LSF symbols
        assert tier.lsf_tables is not None
        parts.insert(0, (tier.lsf_tables, (rows, lpc.ORDER, 1)))
    return parts


def layer_ideal_bits(tier: Tier, k: int, payload: bytes, rows: int) -> float:
    """Information content of layer ``k``'s symbols under the tier's tables."""
    parts = layer_parts(tier, k, rows)
    symbols = entropy.decode_many(payload, parts)
    return sum(t.ideal_bits(s) for (t, _), s in zip(parts, symbols, strict=True))


class StreamEncoder:
    """Buffers PCM (samples, channels) at any rate and emits packets as they complete.

    >>> enc = StreamEncoder(tier, 44100, 2)
    >>> packets = enc.push(chunk) + enc.push(chunk2) + enc.finish()

    Two channels: ``stereo`` (auto, lr, ms) picks L/R or M/S per packet and ``side_layers``
    is how many layers S carries in M/S packets (default ``stereo.default_side_layers``).
    Other channel counts ignore both.

    ``packet_frames`` (default: the tier's) sets the packet size, and with it the algorithmic
    latency (``catalog.latency_ms``) and the container overhead; the stream header must say
    the same (``header_for(..., packet_frames=...)``).
    """

    def __init__(self, tier: Tier, input_rate: int, channels: int,
                 layers: int | None = None, stereo: str = "auto",
                 side_layers: int | None = None, packet_frames: int | None = None) -> None:
        if channels < 1 or channels > 255:
            raise CodecError(f"cannot code {channels} channels (1 to 255)")
        try:
            self.framing = packet_framing(tier, packet_frames)
        except ValueError as e:
            raise CodecError(str(e)) from None
        if layers is not None and not 1 <= layers <= tier.layers:
            raise CodecError(f"tier {tier.name!r} has {tier.layers} layer(s), not {layers}")
        if stereo not in sc.STEREO_CHOICES:
            raise CodecError(f"stereo must be one of {', '.join(sc.STEREO_CHOICES)}, "
                             f"not {stereo!r}")
        if side_layers is not None and not (
                1 <= side_layers <= min(tier.layers - 1, sc.MAX_SIDE_LAYERS)
                or side_layers == tier.layers):
            raise CodecError(f"side layers must be 1 to {tier.layers} for tier {tier.name!r}, "
                             f"not {side_layers}")
        self.stereo = stereo
        self.side_layers = side_layers
        self.tier = tier
        self.layers = layers or tier.layers
        self._lpc = [lpc.LPCEncoderState() for _ in range(channels)] if tier.lpc else None
        self.channels = channels
        self.input_rate = input_rate
        self._rs = None if input_rate == tier.sample_rate else soxr.ResampleStream(
            input_rate, tier.sample_rate, channels, dtype="float32", quality="VHQ")
        self._buf = np.zeros((channels, 0), dtype=np.float32)
        self._raw = np.zeros((channels, 0), dtype=np.float32)  # LPC input not yet pre-filtered
        self._filtered = 0        # LPC input samples pre-filtered so far
        self._seq = 0
        self.input_samples = 0    # at input_rate
        self.coded_samples = 0    # at the tier rate

    def _check(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.asarray(pcm, dtype=np.float32)
        if pcm.ndim == 1:
            pcm = pcm[:, None]
        if pcm.shape[1] != self.channels:
            raise CodecError(f"expected {self.channels} channels, got {pcm.shape[1]}")
        if not np.isfinite(pcm).all():
            raise CodecError("input contains NaN or infinite samples")
        return pcm

    def push(self, pcm: np.ndarray) -> list[Packet]:
        """Add PCM (samples, channels) or (samples,); returns the packets it completed."""
        return self._feed(self._check(pcm), last=False)

    def _feed(self, pcm: np.ndarray, last: bool) -> list[Packet]:
        self.input_samples += pcm.shape[0]
        if self._rs is not None:
            pcm = self._rs.resample_chunk(pcm, last=last)
        self.coded_samples += pcm.shape[0]
        if self._lpc is None:
            self._buf = np.concatenate([self._buf, pcm.T], axis=1)
        else:
            self._raw = np.concatenate([self._raw, pcm.T], axis=1)
            self._prefilter(final=False)
        return self._drain(final=False)

    def _prefilter(self, final: bool) -> None:
        """Pre-filter the LPC input in blocks that end where packets' spans end (and, with
        ``final``, the rest): the block-wise filter's rounding depends on where its blocks
        start (``codec/iir.py``), and this way never on how the input was chunked. A packet
        still goes out as soon as its last sample is in."""
        assert self._lpc is not None
        f = self.framing
        while self._raw.shape[1]:
            size = f.packet_hop + (f.overlap if self._filtered == 0 else 0)
            if self._raw.shape[1] < size and not final:
                break
            block, self._raw = self._raw[:, :size], self._raw[:, size:]
            self._filtered += block.shape[1]
            y = np.stack([st.pre(ch) for st, ch in zip(self._lpc, block, strict=True)])
            self._buf = np.concatenate([self._buf, y.astype(np.float32)], axis=1)

    def finish(self) -> list[Packet]:
        """Flush the resampler and the last partial packet."""
        out = self._feed(np.zeros((0, self.channels), np.float32), last=True) \
            if self._rs is not None else []
        if self._lpc is not None:
            self._prefilter(final=True)
        return out + self._drain(final=True)

    def _drain(self, final: bool) -> list[Packet]:
        f = self.framing
        out = []
        need = f.packet_span(f.packet_frames)
        while self._buf.shape[1] >= need:
            out.append(self._packet(f.packet_frames, (self._seq + 1) * f.packet_hop))
            self._buf = self._buf[:, f.packet_hop:]
        if final and self._buf.shape[1] > 0:
            rest = self._buf.shape[1]
            start = self._seq * f.packet_hop
            out.append(self._packet(f.frames_for(rest), start + rest))
            self._buf = self._buf[:, :0]
        return out

    def _packet(self, n_frames: int, granule: int) -> Packet:
        side, layers = encode_payload(self.tier, self._buf, n_frames, self._lpc, self.layers,
                                      self.stereo, self.side_layers)
        p = Packet(kind=AUDIO, seq=self._seq, granule=granule, side=side, layers=layers)
        self._seq += 1
        return p

    @property
    def next_seq(self) -> int:
        return self._seq

    def warm_up(self) -> None:
        """Code a packet of noise and drop it (no state changes): the first real packet then
        does not pay for one-off set-up (kernel choice, coder tables; ~50 ms, measured)."""
        _noise_packet(self.tier, self.channels, self.framing.packet_frames, self.layers,
                      self.stereo, self.side_layers)


def _noise_packet(tier: Tier, channels: int, n_frames: int, n_layers: int,
                  stereo: str = "auto", side_layers: int | None = None
                  ) -> tuple[bytes, list[bytes]]:
    """A packet coding noise, with throwaway LPC states: for warming up."""
    x = np.random.default_rng(0).standard_normal(
        (channels, tier.framing.packet_span(n_frames))).astype(np.float32) * 0.1
    states = [lpc.LPCEncoderState() for _ in range(channels)] if tier.lpc else None
    return encode_payload(tier, x, n_frames, states, n_layers, stereo, side_layers)


@dataclass
class DecodeStats:
    """What a decode met: packets decoded, damage events, samples filled for lost audio."""

    packets: int = 0
    damaged: int = 0
    lost_samples: int = 0      # at the tier rate
    ended: bool = False
    refused: int = 0           # gaps or lengths beyond the limits (codec/limits.py), not filled
    cut: int = 0               # samples (output rate) emitted past a shorter END: cut them
    notes: list[str] = field(default_factory=list)  # one line each, for the user

    def note(self, msg: str) -> None:
        if msg not in self.notes:
            self.notes.append(msg)


def _join(blocks: Iterator[np.ndarray], channels: int) -> np.ndarray:
    return np.concatenate([np.zeros((0, channels), np.float32), *blocks])


class StreamDecoder:
    """Turns packets (and damage reports) back into PCM (samples, channels) at ``out_rate``.

    Lost or damaged packets are filled to the right length (the frames around the gap fade
    out and in through their overlap tapers), so the output keeps its timing: with silence,
    or (``conceal="auto"``) with a continuation of the signal (``conceal.py``).

    Bounded by design: ``feed``/``drain`` emit gaps in blocks of ``limits.BLOCK`` samples,
    and all fills together stay within ``limits.gap_allowed`` unless ``allow_long_gaps``;
    a packet or length beyond that is damage, not filled (``stats.refused``).

    Overlap-add and LPC synthesis run on the coded channels (M/S in M/S packets); their memory
    is linear, so a change of stereo mode re-expresses it in the new channels (``_switch``).
    """

    def __init__(self, tier: Tier, header: StreamHeader, out_rate: int | None = None,
                 pad_truncated: bool = True, allow_long_gaps: bool = False,
                 conceal: str = "auto") -> None:
        check_compatible(tier, header)
        if conceal not in CONCEAL_CHOICES:
            raise CodecError(f"conceal must be one of {', '.join(CONCEAL_CHOICES)}")
        self.tier = tier
        self.h = header
        # The encoder chose the packet size; frame and hop are the tier's (checked).
        self.framing = Framing(header.frame_size, header.hop_size, header.packet_frames)
        self.out_rate = out_rate or header.original_rate
        if not limits.MIN_RATE <= self.out_rate <= limits.MAX_RATE:
            raise CodecError(f"output rate {self.out_rate} Hz is outside "
                             f"{limits.MIN_RATE}..{limits.MAX_RATE} Hz")
        self._ola = [OverlapAdd(self.framing) for _ in range(header.channels)]
        self._lpc = [lpc.LPCDecoderState() for _ in range(header.channels)] \
            if tier.lpc else None
        self._layers = max(1, min(header.num_layers, tier.layers))
        self._mode = sc.LR         # stereo mode of the decoder's memory
        self._pos = 0              # samples emitted at the tier rate (final ones)
        self._expect = 0           # next expected packet sequence number
        self._rs = None if self.out_rate == tier.sample_rate else soxr.ResampleStream(
            tier.sample_rate, self.out_rate, header.channels, dtype="float32", quality="VHQ")
        self._coded_total: int | None = None
        self._out_total: int | None = None
        self._emitted = 0          # samples returned at out_rate
        self._skip = header.codec_delay  # leading samples (tier rate) still to drop
        self._decoded = 0          # samples (tier rate) that came from packets
        self._long_gaps = allow_long_gaps
        self._conceal = Concealer(tier.sample_rate, header.channels, self.framing.overlap) \
            if conceal == "auto" else None
        self._held: np.ndarray | None = None  # a gap's end, waiting for the next packet
        self.stats = DecodeStats()
        self._done = False
        self._closed = False       # the final (short) packet has been decoded
        # A stream cut short (no END packet): pad to the header's length with silence, or
        # (False) stop where the audio stops, trimmed to that length at most.
        self.pad_truncated = pad_truncated

    def warm_up(self) -> None:
        """Run the networks once on a packet of zero codes and drop the result (no state
        changes): the first real packet then does not pay for one-off kernel set-up."""
        rows = self.h.channels * self.framing.packet_frames
        self.tier.model.decode_frames([np.zeros(layer_parts(self.tier, k, rows)[-1][1],
                                                np.int32) for k in range(self._layers)])

    def push(self, item: Packet | Damage) -> np.ndarray:
        """The samples ``item`` completes (all of ``feed(item)``'s blocks joined)."""
        return _join(self.feed(item), self.h.channels)

    def feed(self, item: Packet | Damage) -> Iterator[np.ndarray]:
        """``push`` as blocks: a gap comes out in pieces of at most ``limits.BLOCK``."""
        if self._done:
            return
        if isinstance(item, Damage):
            self.stats.damaged += 1
        elif item.kind != AUDIO:
            self._end(item)
        else:
            yield from self._audio(item)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.h.channels), np.float32)

    def _allowed(self, gap: int) -> bool:
        return self._long_gaps or limits.gap_allowed(self.stats.lost_samples, gap,
                                                     self._decoded, self.tier.sample_rate)

    def _refuse(self, what: str) -> None:
        self.stats.damaged += 1
        self.stats.refused += 1
        self.stats.note(f"{what}: not filled, over the {limits.MAX_GAP_SECONDS} s gap limit "
                        "(--allow-long-gaps fills it)")

    def _audio(self, p: Packet) -> Iterator[np.ndarray]:
        f = self.framing
        start = p.seq * f.packet_hop
        # Frames the encoder cut from this packet's own samples (as in StreamEncoder._drain).
        n_frames = f.frames_for(p.granule - start)
        if p.seq < self._expect or n_frames > f.packet_frames or p.granule <= start:
            self.stats.damaged += 1  # duplicate, out-of-order or inconsistent packet
            return
        gap = start - self._pos
        if gap > 0 and not self._allowed(gap):
            self._refuse(f"packet {p.seq} jumps {gap / self.tier.sample_rate:.0f} s ahead")
            return
        try:
            frames, sets = decode_payload(self.tier, p.side, p.layers[: self._layers],
                                          self.h.channels, n_frames)
        except (CodecError, entropy.EntropyError):
            self.stats.damaged += 1
            return
        held = None
        if gap > 0:
            # With concealment the gap's end waits for this packet (conceal.bridge).
            keep = self._conceal.tail(gap) if self._conceal is not None else 0
            yield from self._gap(gap, keep)
            held, self._held = self._held, None
        split = sc.split_side(p.side, self.h.channels)
        assert split is not None  # decode_payload checked it
        mode = split[1].mode
        if mode != self._mode:
            self._switch(mode)
        # Only the final packet differs from a full one (its granule is the signal length);
        # its last frame has a flat end.
        last = p.granule != start + f.packet_hop
        out = np.stack([ola.push(frames[c], last) for c, ola in enumerate(self._ola)], axis=1)
        if sets is not None:
            out = self._synthesize(out, sets, n_frames)
        out = self._to_lr(out)
        if last:
            out = out[: p.granule - start]
        if held is not None and self._conceal is not None:
            yield self._emit(self._conceal.bridge(held, out))
        if self._conceal is not None:
            out = self._conceal.resume(out)
        self._pos = p.granule if last else start + n_frames * f.hop
        self._decoded += out.shape[0]
        self._closed = last
        self._expect = p.seq + 1
        self.stats.packets += 1
        yield self._emit(out)

    def _gap(self, n: int, keep: int = 0) -> Iterator[np.ndarray]:
        """Fill for ``n`` lost samples, in blocks: the pending taper of the last good frame
        fades out into silence or the concealment. The last ``keep`` samples come as a block
        of their own, kept in ``_held`` instead of emitted."""
        self.stats.lost_samples += n
        self._pos += n
        first = True
        while n > 0:
            k = min(n - keep, limits.BLOCK) if n > keep else keep
            n -= k
            out = np.zeros((k, self.h.channels), np.float32)
            if first:
                for c, ola in enumerate(self._ola):
                    out[: min(k, ola.pending.shape[0]), c] = ola.pending[:k]
                    ola.reset()
                first = False
            out = self._to_lr(self._synthesize(out, None, 0) if self._lpc is not None
                              else out)
            if self._conceal is not None:
                out = self._conceal.fill(out)
            if keep and n == 0:
                self._held = out
            else:
                yield self._emit(out)

    def _to_lr(self, x: np.ndarray) -> np.ndarray:
        """Samples (n, channels) of the coded channels → L/R."""
        return x if self._mode == sc.LR else np.ascontiguousarray(sc.to_lr(x.T, self._mode).T)

    def _switch(self, mode: int) -> None:
        """Re-express the linear decoder memory (overlap tails, LPC synthesis and de-emphasis
        state) in the coded channels of ``mode``. The LPC sets stay with their channel slot,
        as they do in the encoder."""
        def conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return sc.to_coded(sc.to_lr(np.stack([a, b]), self._mode), mode)

        for ola, tail in zip(self._ola, conv(*(o.pending for o in self._ola)), strict=True):
            ola.pending = tail
        if self._lpc is not None:
            a, b = self._lpc
            a.mem[:], b.mem[:] = conv(a.mem, b.mem)
            a.de[:], b.de[:] = conv(a.de, b.de)
        self._mode = mode

    def _synthesize(self, res: np.ndarray, sets: np.ndarray | None, n_frames: int
                    ) -> np.ndarray:
        """LPC synthesis of residual samples (samples, channels) that start a packet.

        ``sets`` (channels, n_frames, ORDER+1) are the packet's filters; without them (gaps,
        the final flush) the last decoded filter continues.
        """
        assert self._lpc is not None
        f = self.tier.framing
        idx = lpc.set_index(res.shape[0], f.hop, f.overlap, n_frames)
        out = np.empty_like(res)
        for c, st in enumerate(self._lpc):
            # The stream's first frame has no predecessor: the encoder used its own set.
            prev = st.prev if st.prev is not None else \
                (sets[c, 0] if sets is not None else _IDENTITY)
            own = sets[c] if sets is not None else np.zeros((0, prev.shape[0]))
            out[:, c] = st.synthesize(res[:, c], np.vstack([prev[None], own]), idx)
            if sets is not None:
                st.prev = sets[c, -1]
        return out

    def _end(self, p: Packet) -> None:
        # A genuine END follows at most `seq` audio packets, and its two lengths agree with
        # the rate ratio; anything else is a forged length that could force huge outputs.
        f = self.framing
        h = self.h
        expect = None if p.original_samples is None else \
            p.granule * h.original_rate / h.sample_rate
        if p.granule > p.seq * f.packet_hop + f.overlap or (
                expect is not None and p.original_samples is not None
                and abs(p.original_samples - expect) > 1 + expect * 1e-6):
            self.stats.damaged += 1
            return
        self.stats.ended = True
        self._coded_total = p.granule
        if p.original_samples is not None:
            self._out_total = round(p.original_samples * self.out_rate / self.h.original_rate)

    def _emit(self, x: np.ndarray, flush: bool = False) -> np.ndarray:
        if self._skip and x.shape[0]:  # SPEC 5.2: codec_delay samples drop at the start
            k = min(self._skip, x.shape[0])
            x, self._skip = x[k:], self._skip - k
        if self._rs is not None:
            x = self._rs.resample_chunk(x, last=flush)
        if self._out_total is not None:
            x = x[: max(0, self._out_total - self._emitted)]
        self._emitted += x.shape[0]
        return x

    def finish(self) -> np.ndarray:
        """Flush pending samples; pad or trim to the exact length the stream announced."""
        return _join(self.drain(), self.h.channels)

    def drain(self) -> Iterator[np.ndarray]:
        """``finish`` as blocks of at most ``limits.BLOCK`` samples (padding included).

        A length (END's, else the header's) shorter than what was already emitted sets
        ``stats.cut``: the caller cuts that many samples off the end of its output.
        """
        if self._done:
            return
        self._done = True
        h = self.h
        sr = self.tier.sample_rate
        lengths = []  # (coded, output, from END): END's first, the header's as fallback
        if self._coded_total is not None:
            lengths.append((self._coded_total, self._out_total, True))
        if h.total_samples is not None:
            lengths.append((round(h.total_samples * sr / h.original_rate),
                            round(h.total_samples * self.out_rate / h.original_rate), False))
        if self._closed:
            x = self._empty()
        else:  # the stream stopped on a packet boundary: the last overlap is still pending
            x = np.stack([ola.pending for ola in self._ola], axis=1)
            if self._lpc is not None:
                x = self._synthesize(x, None, 0)
            x = self._to_lr(x)
            self._pos += x.shape[0]
        missing = 0
        self._out_total = None
        for total, out_total, from_end in lengths:
            missing = total + h.codec_delay - self._pos  # lengths count after the delay
            if missing <= 0 or self._allowed(missing):
                self._out_total = out_total
                break
            self._refuse(f"the stream says it is {missing / sr:.0f} s longer than its packets")
            if from_end:
                self.stats.ended = False  # an END with that length is forged: not an end
            missing = 0
        if missing < 0:
            x = x[: max(0, x.shape[0] + missing)]
            missing = 0
        elif missing > 0 and not (self.stats.ended or self.pad_truncated):
            missing, self._out_total = 0, None  # cut short: decode what is there
        yield self._emit(x)
        self.stats.lost_samples += max(0, missing)
        while missing > 0:  # lost packets at the end
            k = min(missing, limits.BLOCK)
            missing -= k
            yield self._emit(np.zeros((k, h.channels), np.float32))
        yield self._emit(self._empty(), flush=True)
        if self._out_total is not None:
            self.stats.cut = max(0, self._emitted - self._out_total)
            if self.stats.cut:
                self.stats.note(f"the stream's length ends {self.stats.cut} samples before "
                                "its audio: cut")
            pad = self._out_total - self._emitted  # resampler rounding: a few samples
            while pad > 0:
                k = min(pad, limits.BLOCK)
                pad -= k
                self._emitted += k
                yield np.zeros((k, h.channels), np.float32)


def check_compatible(tier: Tier, h: StreamHeader) -> None:
    """Refuse streams made with other weights or an incompatible geometry."""
    if h.weights_hash != tier.hash:
        raise TierError(f"stream needs tier {h.tier!r} with weights {h.weights_hash}, but the "
                        f"installed {tier.name!r} has {tier.hash}")
    problem = limits.header_problem(h)
    if problem:
        raise CodecError(f"stream header out of bounds: {problem}")
    f = tier.framing
    if (h.sample_rate, h.frame_size, h.hop_size) != (tier.sample_rate, f.frame, f.hop):
        raise CodecError("stream geometry does not match its tier")
    if not 1 <= h.packet_frames <= MAX_PACKET_FRAMES:  # the encoder's choice, within bounds
        raise CodecError(f"stream has {h.packet_frames} frames per packet "
                         f"(at most {MAX_PACKET_FRAMES})")
    if h.coder != entropy.CODER_ID:
        raise CodecError(f"stream was entropy-coded as {h.coder!r}; this nwc codes "
                         f"{entropy.CODER_ID!r}")
    if h.gain_bits != GAIN_BITS:
        raise CodecError(f"unsupported gain side info ({h.gain_bits} bits)")


def encode_array(tier: Tier, pcm: np.ndarray, rate: int, layers: int | None = None,
                 stereo: str = "auto", side_layers: int | None = None,
                 packet_frames: int | None = None) -> list[Packet]:
    """Whole-signal helper: (samples, channels) → audio packets (no END packet)."""
    enc = StreamEncoder(tier, rate, 1 if pcm.ndim == 1 else pcm.shape[1], layers,
                        stereo=stereo, side_layers=side_layers, packet_frames=packet_frames)
    return enc.push(pcm) + enc.finish()


def decode_packets(tier: Tier, header: StreamHeader, packets: list[Packet | Damage],
                   out_rate: int | None = None, conceal: str = "auto") -> np.ndarray:
    """Whole-stream helper: packets → (samples, channels), cut to the stream's length."""
    dec = StreamDecoder(tier, header, out_rate, conceal=conceal)
    parts = [dec.push(p) for p in packets]
    parts.append(dec.finish())
    y = np.concatenate(parts)
    return y[: y.shape[0] - dec.stats.cut]

