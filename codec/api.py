"""The runtime codec's public face: streaming encoder and decoder, whole-signal helpers.

What callers (the CLI, bench, training's evaluation, tests) import lives here; the work is
split by concern:

    options.py   EncodeOptions: an encoder's choices, checked once
    frontend.py  plain and LPC front ends: analysis, side symbols, filter state, synthesis
    payload.py   one packet's side info and range-coded layers, and back
    encoder.py   StreamEncoder: PCM chunks → packets
    decoder.py   StreamDecoder: packets and damage → PCM blocks, gaps filled (conceal.py)
"""

from __future__ import annotations

from ..formats.container import StreamHeader
from .catalog import header_for
from .decoder import DecodeStats, StreamDecoder, check_compatible, decode_packets
from .encoder import StreamEncoder, encode_array
from .errors import CodecError
from .options import EncodeOptions
from .payload import decode_payload, encode_payload, layer_ideal_bits, layer_parts, layer_rows

__all__ = ["CodecError", "DecodeStats", "EncodeOptions", "StreamDecoder", "StreamEncoder",
           "StreamHeader", "check_compatible", "decode_packets", "decode_payload",
           "encode_array", "encode_payload", "header_for", "layer_ideal_bits", "layer_parts",
           "layer_rows"]
