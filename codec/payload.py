"""One packet's payload: side info (gains, stereo byte) and range-coded layers, and back.

The glue between the model, the quantizer's symbol mapping, the range coder and the front end
(``frontend.py``). Stateless apart from the front end's per-stream memory, which the caller
passes in: the stream encoder and decoder (``encoder.py``, ``decoder.py``) own it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import entropy
from . import stereo as sc
from .errors import CodecError
from .framing import split_frames
from .frontend import FrontEncoder, Part, front_end
from .gain import gain_code, gain_value
from .options import EncodeOptions

if TYPE_CHECKING:
    from .anytier import Tier


def encode_payload(tier: Tier, x: np.ndarray, n_frames: int,
                   front: FrontEncoder | None = None,
                   options: EncodeOptions | None = None) -> tuple[bytes, list[bytes]]:
    """Code one packet: ``x`` is (channels, ≥span) at the tier rate, as ``front`` (the
    stream's front-end state, default: a fresh stream's) expects it.
    Returns (side, layers): ``options.layers`` layers (default: all).

    Two channels are coded as L/R or M/S (``options.stereo``: auto, lr, ms), the second coded
    channel with ``options.side_layers`` layers (default ``stereo.default_side_layers``); see
    ``stereo.py``.
    """
    opts = options or EncodeOptions()
    fe = front_end(tier)
    f = tier.framing
    span = f.packet_span(n_frames)
    x = x[:, :span]
    if x.shape[1] < span:
        x = np.pad(x, ((0, 0), (0, span - x.shape[1])))
    n_layers = opts.layers or tier.layers
    info = sc.Stereo()
    if x.shape[0] == 2:
        side_layers = opts.side_layers
        if side_layers is None:
            side_layers = sc.default_side_layers(tier.layers)
        mode = fe.mode(x, opts.stereo)
        # The byte depends on the tier only, never on n_layers: a stream cut to k layers
        # stays byte-identical to a k-layer encode. R always carries every layer.
        info = sc.Stereo(mode, 0 if mode == sc.LR or side_layers >= tier.layers
                         else side_layers)
        x = sc.to_coded(x, info.mode)
    if front is None:
        front = fe.encoder(x.shape[0], f)
    x, side_symbols = front.analyze(x, n_frames, info.mode)
    codes = [gain_code(ch) for ch in x]
    if x.shape[0] == 2:
        codes = sc.gain_codes(codes, info, skip=fe.skips_silence)
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
        if k == 0:  # the front end's side symbols travel in the base layer
            parts = side_symbols + parts
        layers.append(entropy.encode_many(parts))
    side = bytes(codes) + (bytes([info.to_byte()]) if x.shape[0] == 2 else b"")
    return side, layers


def decode_payload(tier: Tier, side: bytes, layers: list[bytes], channels: int,
                   n_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of ``encode_payload`` for the layers present (extra ones are ignored).

    Returns decoded frames (channels, n_frames, frame) of the coded channels (M and S in an
    M/S packet; ``stereo.to_lr`` maps them back) — LPC residual frames for LPC tiers — and
    the front end's synthesis parameters (LPC tiers: the quantized LPC sets, (channels,
    n_frames, ORDER+1); plain tiers: None).
    """
    split = sc.split_side(side, channels)
    if split is None:
        raise CodecError(f"packet side info has {len(side)} bytes, expected "
                         f"{sc.side_bytes(channels)}")
    codes, info = split
    if not layers:
        raise CodecError("packet carries no layers")
    fe = front_end(tier)
    counts = sc.layer_counts(codes, info, min(len(layers), tier.layers))
    fe.check_counts(counts)
    carrying = [[c for c, n in enumerate(counts) if n > k] for k in range(max(counts))]
    decoded = [entropy.decode_many(layers[k], layer_parts(tier, k, len(cs) * n_frames))
               for k, cs in enumerate(carrying)]
    frames = np.zeros((channels, n_frames, tier.framing.frame), np.float32)
    # Channels with the same depth are decoded together (all of them, unless the second
    # channel of a stereo packet carries fewer layers, or none: silence).
    for depth in sorted(set(counts) - {0}):
        group = [c for c, n in enumerate(counts) if n == depth]
        syms = [_rows(decoded[k][-1], carrying[k], group, n_frames) for k in range(depth)]
        frames[group] = tier.model.decode_frames(syms).reshape(len(group), n_frames, -1)
    gains = np.array([gain_value(c) for c in codes], dtype=np.float32)
    filters = fe.filters(decoded[0][:-1], channels, n_frames) if decoded else None
    return frames * gains[:, None, None], filters


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


def layer_parts(tier: Tier, k: int, rows: int) -> list[Part]:
    """(tables, shape) of each symbol array range-coded in layer ``k`` of a packet with
    ``rows`` frames (frames × coded channels carrying layer k: ``layer_rows``), in coding
    order: the base layer carries the front end's side symbols first."""
    parts: list[Part] = [(tier.tables[k], (rows, tier.model.symbol_channels,
                                           tier.model.code_steps))]
    return front_end(tier).side_parts(rows) + parts if k == 0 else parts


def layer_ideal_bits(tier: Tier, k: int, payload: bytes, rows: int) -> float:
    """Information content of layer ``k``'s symbols under the tier's tables."""
    parts = layer_parts(tier, k, rows)
    symbols = entropy.decode_many(payload, parts)
    return sum(t.ideal_bits(s) for (t, _), s in zip(parts, symbols, strict=True))
