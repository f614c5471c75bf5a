"""The stream decoder: container packets (and damage reports) in, PCM blocks out.

It knows nothing about files: the CLI reads packets and writes what it returns. Lost or
damaged packets become fills of the right length (``conceal.py``), all bounded by
``limits.py``; the front end's synthesis memory and the overlap tails follow the packets'
stereo modes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import soxr

from ..formats.container import AUDIO, Damage, Packet, StreamHeader
from ..formats.extension import band_limits
from . import bandlimit, entropy, limits
from . import stereo as sc
from .conceal import CONCEAL_CHOICES, Concealer
from .errors import CodecError
from .framing import MAX_PACKET_FRAMES, Framing, OverlapAdd
from .frontend import front_end
from .gain import GAIN_BITS
from .payload import decode_payload, layer_parts
from .tierfile import TierError

if TYPE_CHECKING:
    from .anytier import Tier


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
        # Band limits (1.1 extension records) shape the frames of front ends whose frames
        # are audio (not an LPC residual); their encoders write none otherwise.
        self._shapes = front_end(tier).band_limits
        spill = bandlimit.SPILL if self._shapes else 0
        self._ola = [OverlapAdd(self.framing, spill) for _ in range(header.channels)]
        self._front = front_end(tier).decoder(header.channels)
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
            frames, filters = decode_payload(self.tier, p.side, p.layers[: self._layers],
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
        codes = self._band_codes(p, mode)
        out = np.stack([ola.push(frames[c], last, _shaper(codes[c]))
                        for c, ola in enumerate(self._ola)], axis=1)
        out = self._to_lr(self._front.synthesize(out, filters, n_frames))
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

    def _band_codes(self, p: Packet, mode: int) -> list[int]:
        """Each coded channel's band-limit code for this packet (0: none)."""
        if not self._shapes or not p.extension:
            return [0] * self.h.channels
        return bandlimit.channel_codes(band_limits(p.extension, self.h.channels),
                                       self.h.channels, mode != sc.LR)

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
            out = self._to_lr(self._front.synthesize(out, None, 0))
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
        """Re-express the linear decoder memory (overlap tails, the front end's synthesis
        state) in the coded channels of ``mode``."""
        def conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return sc.to_coded(sc.to_lr(np.stack([a, b]), self._mode), mode)

        for ola, tail in zip(self._ola, conv(*(o.pending for o in self._ola)), strict=True):
            ola.pending = tail
        self._front.switch(conv)
        self._mode = mode

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
            # (a filter's spill past the last frame lies past the coded audio: dropped)
            x = np.stack([ola.pending[: self.framing.overlap] for ola in self._ola], axis=1)
            x = self._to_lr(self._front.synthesize(x, None, 0))
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


def _shaper(code: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """The frame filter of band-limit ``code`` (None: full band)."""
    if not code:
        return None
    return functools.partial(bandlimit.filter_frames, code=code)


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


def decode_packets(tier: Tier, header: StreamHeader, packets: list[Packet | Damage],
                   out_rate: int | None = None, conceal: str = "auto") -> np.ndarray:
    """Whole-stream helper: packets → (samples, channels), cut to the stream's length."""
    dec = StreamDecoder(tier, header, out_rate, conceal=conceal)
    parts = [dec.push(p) for p in packets]
    parts.append(dec.finish())
    y = np.concatenate(parts)
    return y[: y.shape[0] - dec.stats.cut]

