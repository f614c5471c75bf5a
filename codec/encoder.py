"""The stream encoder: PCM chunks in, container packets out.

It knows nothing about files: the CLI feeds it arrays and writes what it returns. Memory is
bounded by one packet (plus the resampler's state), and because frames and gains depend only
on a packet's own samples at fixed positions, any chunking of the input gives the same bytes
as whole-file encoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import soxr

from ..formats.container import AUDIO, Packet
from ..formats.extension import pack_band_limits
from . import bandlimit
from .errors import CodecError
from .frontend import front_end
from .options import EncodeOptions
from .payload import encode_payload

if TYPE_CHECKING:
    from .anytier import Tier


class StreamEncoder:
    """Buffers PCM (samples, channels) at any rate and emits packets as they complete.

    >>> enc = StreamEncoder(tier, 44100, 2)
    >>> packets = enc.push(chunk) + enc.push(chunk2) + enc.finish()

    Two channels: ``stereo`` (auto, lr, ms) picks L/R or M/S per packet and ``side_layers``
    is how many layers S carries in M/S packets (default ``stereo.default_side_layers``).
    Other channel counts ignore both.

    ``packet_frames`` (default: the tier's) sets the packet size, and with it the algorithmic
    latency (``catalog.latency_ms``) and the container overhead; the stream header must say
    the same (``header_for(..., packet_frames=...)``). The choices are checked once into
    ``options`` (``options.EncodeOptions``), which every packet is coded with.

    ``band_limit`` (tiers whose frames are audio): each packet says where each channel's
    content ends (a 1.1 extension record), and the decoder removes coding noise above it.
    """

    def __init__(self, tier: Tier, input_rate: int, channels: int,
                 layers: int | None = None, stereo: str = "auto",
                 side_layers: int | None = None, packet_frames: int | None = None,
                 band_limit: bool = True) -> None:
        if channels < 1 or channels > 255:
            raise CodecError(f"cannot code {channels} channels (1 to 255)")
        self.options = EncodeOptions(layers, stereo, side_layers, packet_frames,
                                     band_limit).checked(tier)
        self.framing = self.options.framing(tier)
        self.tier = tier
        self.layers = self.options.layers or tier.layers
        fe = front_end(tier)
        self._front = fe.encoder(channels, self.framing)
        self._band_limits = self.options.band_limit and fe.band_limits  # decided once
        self.channels = channels
        self.input_rate = input_rate
        self._rs = None if input_rate == tier.sample_rate else soxr.ResampleStream(
            input_rate, tier.sample_rate, channels, dtype="float32", quality="VHQ")
        self._buf = np.zeros((channels, 0), dtype=np.float32)  # front-end output, not coded
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
        self._buf = np.concatenate([self._buf, self._front.take(pcm.T)], axis=1)
        return self._drain(final=False)

    def finish(self) -> list[Packet]:
        """Flush the resampler and the last partial packet."""
        out = self._feed(np.zeros((0, self.channels), np.float32), last=True) \
            if self._rs is not None else []
        self._buf = np.concatenate([self._buf, self._front.flush()], axis=1)
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
        side, layers = encode_payload(self.tier, self._buf, n_frames, self._front, self.options)
        ext = b""
        if self._band_limits:
            span = self._buf[:, : self.framing.packet_span(n_frames)]
            ext = pack_band_limits(bandlimit.measure(span, self.tier.sample_rate))
        p = Packet(kind=AUDIO, seq=self._seq, granule=granule, side=side, layers=layers,
                   extension=ext)
        self._seq += 1
        return p

    @property
    def next_seq(self) -> int:
        return self._seq

    def warm_up(self) -> None:
        """Code a packet of noise and drop it (no state changes): the first real packet then
        does not pay for one-off set-up (kernel choice, coder tables; ~50 ms, measured)."""
        _noise_packet(self.tier, self.channels, self.framing.packet_frames, self.options)


def _noise_packet(tier: Tier, channels: int, n_frames: int,
                 options: EncodeOptions | None = None) -> tuple[bytes, list[bytes]]:
    """A packet coding noise, with a throwaway front end: for warming up."""
    x = np.random.default_rng(0).standard_normal(
        (channels, tier.framing.packet_span(n_frames))).astype(np.float32) * 0.1
    return encode_payload(tier, x, n_frames, None, options)


def encode_array(tier: Tier, pcm: np.ndarray, rate: int, layers: int | None = None,
                 stereo: str = "auto", side_layers: int | None = None,
                 packet_frames: int | None = None, band_limit: bool = True) -> list[Packet]:
    """Whole-signal helper: (samples, channels) → audio packets (no END packet)."""
    enc = StreamEncoder(tier, rate, 1 if pcm.ndim == 1 else pcm.shape[1], layers,
                        stereo=stereo, side_layers=side_layers, packet_frames=packet_frames,
                        band_limit=band_limit)
    return enc.push(pcm) + enc.finish()
