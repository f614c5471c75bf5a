"""Streaming encoder and decoder: PCM chunks in, container packets out, and back.

This is the glue between the model, the quantizer's symbol mapping, the range coder and the
container's ``Packet`` objects. It knows nothing about files: the CLI feeds it arrays and
writes what it returns. Memory is bounded by one packet (plus the resampler's state), and
because frames and gains depend only on a packet's own samples at fixed positions, any
chunking of the input gives the same bytes as whole-file encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from ..formats.container import AUDIO, Damage, Packet, StreamHeader
from . import entropy, lpc
from .framing import OverlapAdd, split_frames
from .gain import GAIN_BITS, gain_code, gain_value
from .tier import Tier, TierError

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
        sym = tier.model.lsf.to_symbols(lsf)
        aq = lpc.lsf_to_lpc(tier.model.lsf.from_symbols(sym))
        sets = np.vstack([aq[:1] if st.prev is None else st.prev[None], aq])
        res[c] = lpc.residual(np.concatenate([st.hist, xc]), sets, idx)
        if n_frames == f.packet_frames:  # the next packet filters on from here
            st.hist = xc[f.packet_hop - lpc.ORDER: f.packet_hop].copy()
        st.prev = aq[-1]
        symbols.append(sym)
    return res, np.concatenate(symbols)


def encode_payload(tier: Tier, x: np.ndarray, n_frames: int,
                   states: list[lpc.LPCEncoderState] | None = None,
                   n_layers: int | None = None) -> tuple[bytes, list[bytes]]:
    """Code one packet: ``x`` is (channels, ≥span) at the tier rate (pre-processed for LPC
    tiers, whose per-channel ``states`` carry filter memory between packets).
    Returns (side, layers), the first ``n_layers`` layers (default: all)."""
    f = tier.framing
    span = f.packet_span(n_frames)
    x = x[:, :span]
    if x.shape[1] < span:
        x = np.pad(x, ((0, 0), (0, span - x.shape[1])))
    lsf_symbols = None
    if tier.lpc:
        if states is None:
            raise CodecError("an LPC tier needs encoder states")
        x, lsf_symbols = _lpc_analyze(tier, x, n_frames, states)
    codes = [gain_code(ch) for ch in x]
    gains = np.array([gain_value(c) for c in codes], dtype=np.float32)[:, None]
    frames = split_frames(x / gains, f, n_frames).reshape(-1, f.frame)
    symbols = tier.model.encode_frames(frames, n_layers or tier.layers)
    layers = []
    for k, sym in enumerate(symbols):
        parts = [(sym, tier.tables[k])]
        if k == 0 and lsf_symbols is not None:  # the LSFs travel in the base layer
            parts.insert(0, (lsf_symbols, tier.lsf_tables))
        layers.append(entropy.encode_many(parts))
    return bytes(codes), layers


def decode_payload(tier: Tier, side: bytes, layers: list[bytes], channels: int,
                   n_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of ``encode_payload`` for the layers present (extra ones are ignored).

    Returns decoded frames (channels, n_frames, frame) — LPC residual frames for LPC tiers —
    and, for LPC tiers, the quantized LPC sets (channels, n_frames, ORDER+1).
    """
    if len(side) != channels * GAIN_BITS // 8:
        raise CodecError(f"packet side info has {len(side)} bytes, expected {channels}")
    if not layers:
        raise CodecError("packet carries no layers")
    m = tier.model
    rows = channels * n_frames
    decoded = [entropy.decode_many(layers[k], layer_parts(tier, k, rows))
               for k in range(min(len(layers), tier.layers))]
    frames = m.decode_frames([d[-1] for d in decoded])
    frames = frames.reshape(channels, n_frames, tier.framing.frame)
    gains = np.array([gain_value(c) for c in side], dtype=np.float32)
    sets = None
    if tier.lpc:
        sets = lpc.lsf_to_lpc(m.lsf.from_symbols(decoded[0][0])).reshape(channels, n_frames, -1)
    return frames * gains[:, None, None], sets


def layer_parts(tier: Tier, k: int, rows: int) -> list[tuple[entropy.CodeTables, tuple]]:
    """(tables, shape) of each symbol array range-coded in layer ``k`` of a packet with
    ``rows`` frames (channels × frames), in coding order."""
    parts = [(tier.tables[k], (rows, tier.model.symbol_channels, tier.model.code_steps))]
    if k == 0 and tier.lpc:  # the base layer also carries the LSF symbols
        parts.insert(0, (tier.lsf_tables, (rows, lpc.ORDER, 1)))
    return parts


def layer_ideal_bits(tier: Tier, k: int, payload: bytes, rows: int) -> float:
    """Information content of layer ``k``'s symbols under the tier's tables."""
    parts = layer_parts(tier, k, rows)
    symbols = entropy.decode_many(payload, parts)
    return sum(t.ideal_bits(s) for (t, _), s in zip(parts, symbols, strict=True))


def header_for(tier: Tier, input_rate: int, channels: int, total_samples: int | None,
               tags: dict[str, str] | None = None, layers: int | None = None) -> StreamHeader:
    """The stream header for coding ``channels`` channels of ``input_rate`` audio."""
    f = tier.framing
    return StreamHeader(
        sample_rate=tier.sample_rate, original_rate=input_rate, channels=channels,
        total_samples=total_samples, codec_delay=0, tier=tier.name, model_id=tier.model_id,
        weights_hash=tier.hash, frame_size=f.frame, hop_size=f.hop,
        num_layers=layers or tier.layers,
        packet_frames=f.packet_frames, gain_bits=GAIN_BITS, coder=entropy.CODER_ID,
        tags=dict(tags or {}))


class StreamEncoder:
    """Buffers PCM (samples, channels) at any rate and emits packets as they complete.

    >>> enc = StreamEncoder(tier, 44100, 2)
    >>> packets = enc.push(chunk) + enc.push(chunk2) + enc.finish()
    """

    def __init__(self, tier: Tier, input_rate: int, channels: int,
                 layers: int | None = None) -> None:
        if channels < 1 or channels > 255:
            raise CodecError(f"cannot code {channels} channels (1 to 255)")
        if layers is not None and not 1 <= layers <= tier.layers:
            raise CodecError(f"tier {tier.name!r} has {tier.layers} layer(s), not {layers}")
        self.tier = tier
        self.layers = layers or tier.layers
        self._lpc = [lpc.LPCEncoderState() for _ in range(channels)] if tier.lpc else None
        self.channels = channels
        self.input_rate = input_rate
        self._rs = None if input_rate == tier.sample_rate else soxr.ResampleStream(
            input_rate, tier.sample_rate, channels, dtype="float32", quality="VHQ")
        self._buf = np.zeros((channels, 0), dtype=np.float32)
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
        chunk = pcm.T
        if self._lpc is not None:  # pre-filter as samples arrive: chunking cannot change it
            chunk = np.stack([st.pre(ch) for st, ch in zip(self._lpc, chunk, strict=True)]
                             ).astype(np.float32)
        self._buf = np.concatenate([self._buf, chunk], axis=1)
        return self._drain(final=False)

    def finish(self) -> list[Packet]:
        """Flush the resampler and the last partial packet."""
        out = self._feed(np.zeros((0, self.channels), np.float32), last=True) \
            if self._rs is not None else []
        return out + self._drain(final=True)

    def _drain(self, final: bool) -> list[Packet]:
        f = self.tier.framing
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
        side, layers = encode_payload(self.tier, self._buf, n_frames, self._lpc, self.layers)
        p = Packet(kind=AUDIO, seq=self._seq, granule=granule, side=side, layers=layers)
        self._seq += 1
        return p

    @property
    def next_seq(self) -> int:
        return self._seq


@dataclass
class DecodeStats:
    """What a decode met: packets decoded, damage events, samples filled with silence."""

    packets: int = 0
    damaged: int = 0
    lost_samples: int = 0      # at the tier rate
    ended: bool = False


class StreamDecoder:
    """Turns packets (and damage reports) back into PCM (samples, channels) at ``out_rate``.

    Lost or damaged packets become silence of the right length (the frames around the gap fade
    out and in through their overlap tapers), so the output keeps its timing.
    """

    def __init__(self, tier: Tier, header: StreamHeader, out_rate: int | None = None) -> None:
        check_compatible(tier, header)
        self.tier = tier
        self.h = header
        self.out_rate = out_rate or header.original_rate
        self._ola = [OverlapAdd(tier.framing) for _ in range(header.channels)]
        self._lpc = [lpc.LPCDecoderState() for _ in range(header.channels)] \
            if tier.lpc else None
        self._layers = max(1, min(header.num_layers, tier.layers))
        self._pos = 0              # samples emitted at the tier rate (final ones)
        self._expect = 0           # next expected packet sequence number
        self._rs = None if self.out_rate == tier.sample_rate else soxr.ResampleStream(
            tier.sample_rate, self.out_rate, header.channels, dtype="float32", quality="VHQ")
        self._coded_total: int | None = None
        self._out_total: int | None = None
        self._emitted = 0          # samples returned at out_rate
        self.stats = DecodeStats()
        self._done = False
        self._closed = False       # the final (short) packet has been decoded

    def push(self, item: Packet | Damage) -> np.ndarray:
        if self._done:
            return self._empty()
        if isinstance(item, Damage):
            self.stats.damaged += 1
            return self._empty()
        if item.kind != AUDIO:
            return self._end(item)
        return self._audio(item)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.h.channels), np.float32)

    def _audio(self, p: Packet) -> np.ndarray:
        f = self.tier.framing
        start = p.seq * f.packet_hop
        # Frames the encoder cut from this packet's own samples (as in StreamEncoder._drain).
        n_frames = f.frames_for(p.granule - start)
        if p.seq < self._expect or n_frames > f.packet_frames or p.granule <= start:
            self.stats.damaged += 1  # duplicate, out-of-order or inconsistent packet
            return self._empty()
        try:
            frames, sets = decode_payload(self.tier, p.side, p.layers[: self._layers],
                                          self.h.channels, n_frames)
        except (CodecError, entropy.EntropyError):
            self.stats.damaged += 1
            return self._empty()
        pieces = []
        if start > self._pos:
            pieces.append(self._gap(start - self._pos))
        # Only the final packet differs from a full one (its granule is the signal length);
        # its last frame has a flat end.
        last = p.granule != start + f.packet_hop
        out = np.stack([ola.push(frames[c], last) for c, ola in enumerate(self._ola)], axis=1)
        if sets is not None:
            out = self._synthesize(out, sets, n_frames)
        if last:
            out = out[: p.granule - start]
        pieces.append(out)
        self._pos = p.granule if last else start + n_frames * f.hop
        self._closed = last
        self._expect = p.seq + 1
        self.stats.packets += 1
        return self._emit(np.concatenate(pieces))

    def _gap(self, n: int) -> np.ndarray:
        """Silence for lost packets; the pending taper of the last good frame fades out."""
        self.stats.lost_samples += n
        out = np.zeros((n, self.h.channels), np.float32)
        for c, ola in enumerate(self._ola):
            out[: min(n, ola.pending.shape[0]), c] = ola.pending[:n]
            ola.reset()
        return self._synthesize(out, None, 0) if self._lpc is not None else out

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

    def _end(self, p: Packet) -> np.ndarray:
        # A genuine END follows at most `seq` audio packets, and its two lengths agree with
        # the rate ratio; anything else is a forged length that could force huge outputs.
        f = self.tier.framing
        h = self.h
        expect = None if p.original_samples is None else \
            p.granule * h.original_rate / h.sample_rate
        if p.granule > p.seq * f.packet_hop + f.overlap or (
                expect is not None and abs(p.original_samples - expect) > 1 + expect * 1e-6):
            self.stats.damaged += 1
            return self._empty()
        self.stats.ended = True
        self._coded_total = p.granule
        if p.original_samples is not None:
            self._out_total = round(p.original_samples * self.out_rate / self.h.original_rate)
        return self._empty()

    def _emit(self, x: np.ndarray, flush: bool = False) -> np.ndarray:
        if self._rs is not None:
            x = self._rs.resample_chunk(x, last=flush)
        if self._out_total is not None:
            x = x[: max(0, self._out_total - self._emitted)]
        self._emitted += x.shape[0]
        return x

    def finish(self) -> np.ndarray:
        """Flush pending samples; pad or trim to the exact length the stream announced."""
        if self._done:
            return self._empty()
        self._done = True
        h = self.h
        total = self._coded_total
        if total is None and h.total_samples is not None:
            total = round(h.total_samples * self.tier.sample_rate / h.original_rate)
            self._out_total = round(h.total_samples * self.out_rate / h.original_rate)
        if self._closed:
            x = self._empty()
        else:  # the stream stopped on a packet boundary: the last overlap is still pending
            x = np.stack([ola.pending for ola in self._ola], axis=1)
            if self._lpc is not None:
                x = self._synthesize(x, None, 0)
            self._pos += x.shape[0]
        if total is not None:
            if self._pos > total:
                x = x[: max(0, x.shape[0] - (self._pos - total))]
            elif self._pos < total:
                missing = total - self._pos
                self.stats.lost_samples += missing
                x = np.concatenate([x, np.zeros((missing, h.channels), np.float32)])
        out = self._emit(x, flush=True)
        if self._out_total is not None and self._emitted < self._out_total:
            pad = np.zeros((self._out_total - self._emitted, h.channels), np.float32)
            self._emitted += pad.shape[0]
            out = np.concatenate([out, pad])
        return out


def check_compatible(tier: Tier, h: StreamHeader) -> None:
    """Refuse streams made with other weights or an incompatible geometry."""
    if h.weights_hash != tier.hash:
        raise TierError(f"stream needs tier {h.tier!r} with weights {h.weights_hash}, but the "
                        f"installed {tier.name!r} has {tier.hash}")
    f = tier.framing
    if (h.sample_rate, h.frame_size, h.hop_size, h.packet_frames) != (
            tier.sample_rate, f.frame, f.hop, f.packet_frames):
        raise CodecError("stream geometry does not match its tier")
    if h.coder != entropy.CODER_ID:
        raise CodecError(f"stream was entropy-coded as {h.coder!r}; this nwc codes "
                         f"{entropy.CODER_ID!r}")
    if h.gain_bits != GAIN_BITS:
        raise CodecError(f"unsupported gain side info ({h.gain_bits} bits)")


def encode_array(tier: Tier, pcm: np.ndarray, rate: int, layers: int | None = None
                 ) -> list[Packet]:
    """Whole-signal helper: (samples, channels) → audio packets (no END packet)."""
    enc = StreamEncoder(tier, rate, 1 if pcm.ndim == 1 else pcm.shape[1], layers)
    return enc.push(pcm) + enc.finish()


def decode_packets(tier: Tier, header: StreamHeader, packets: list[Packet | Damage],
                   out_rate: int | None = None) -> np.ndarray:
    """Whole-stream helper: packets → (samples, channels)."""
    dec = StreamDecoder(tier, header, out_rate)
    parts = [dec.push(p) for p in packets]
    parts.append(dec.finish())
    return np.concatenate(parts)

