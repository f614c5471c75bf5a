"""The ``.nwc`` bitstream container (format version 1): a stream header followed by packets.

Bytes only: no torch, no audio maths. The container frames what the codec produces (per-packet
side info and one sub-payload per quality layer), protects every header and packet with a
CRC-32C, and lets a reader survive damage by resynchronising on a 4-byte sync marker. Both the
writer and the reader work strictly sequentially, so either end may be a pipe. The byte layout
is specified in ``formats/SPEC.md``; this module is the reference implementation of it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import crc32c

from .crcrange import STEP, CrcIndex
from .version import FORMAT_MINOR, FORMAT_VERSION  # in their own file for `nwc --version`

__all__ = [
    "AUDIO",
    "END",
    "FLAG_ORIGINAL_SAMPLES",
    "FORMAT_MINOR",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_PACKET_BYTES",
    "MIN_PACKET_BODY",
    "PREAMBLE_BYTES",
    "SYNC",
    "ContainerReader",
    "ContainerWriter",
    "Damage",
    "FormatError",
    "Packet",
    "StreamHeader",
    "UnsupportedVersionError",
    "encode_header",
    "encode_packet",
    "header_length",
    "read_all",
]

# 0x89 first (as in PNG): a high-bit byte catches 7-bit channels and text-mode mangling.
MAGIC = b"\x89NWC"
# 0xA5 is 10100101: not ASCII, not a common fill byte, and its bit pattern is unlike runs.
SYNC = b"\xa5NWP"
MAX_PACKET_BYTES = 1 << 22  # upper bound of a packet's body length field (DoS guard)
MAX_HEADER_BYTES = 1 << 20  # upper bound of the header body length field (DoS guard)

AUDIO, END = 0, 1
FLAG_ORIGINAL_SAMPLES = 0x01  # packet carries the u64 original_samples field

# Damage.reason values (informative; see SPEC.md section 6).
CRC_MISMATCH = "crc mismatch"
BAD_LENGTH = "bad length"
GARBAGE = "garbage"
TRUNCATED_PACKET = "truncated packet"
TRUNCATED_STREAM = "truncated stream"
MALFORMED_PACKET = "malformed packet"
SEQUENCE_GAP = "sequence gap"
OUT_OF_ORDER = "out of order"

_U16, _U32, _U64 = 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF
_UNKNOWN_SAMPLES = _U64  # total_samples = None on the wire

_PREAMBLE = struct.Struct("<4sBBI")  # magic, major, minor, header body length
_HEADER_FIXED = struct.Struct("<IIQIIIIBBB")
_FRAME = struct.Struct("<4sI")  # sync, body length
_PREFIX = struct.Struct("<BBIQ")  # kind, flags, seq, granule: common to every kind
_AUDIO_FIXED = struct.Struct("<HB")  # side length, layer count (AUDIO and END)
_CRC = struct.Struct("<I")
_U64S = struct.Struct("<Q")
PREAMBLE_BYTES = _PREAMBLE.size  # 10: magic, version, header body length
MIN_PACKET_BODY = _PREFIX.size  # 14: shortest body any kind may have

_CHUNK = 1 << 16  # read granularity; also how far the scanner looks ahead per step


class FormatError(ValueError):
    """The input is not an nwc stream, or its header is damaged or invalid."""


class UnsupportedVersionError(FormatError):
    """The stream uses a major format version this reader does not implement."""


class SupportsRead(Protocol):
    """A binary file object with ``read``; short reads are fine, ``b""`` means EOF."""

    def read(self, size: int = -1, /) -> bytes | None: ...


class SupportsWrite(Protocol):
    """A binary file object with ``write``; may accept fewer bytes than offered (raw I/O)."""

    def write(self, data: bytes | memoryview, /) -> int | None: ...


@dataclass
class StreamHeader:
    """Stream-wide parameters, written once at the start of the stream."""

    sample_rate: int  # rate the audio is coded at (Hz)
    original_rate: int  # rate of the input (Hz), restored on decode
    channels: int  # 1..255
    total_samples: int | None  # per channel at original_rate; None = unknown (live streams)
    codec_delay: int  # samples per channel at sample_rate to drop at decode start
    tier: str  # tier name, e.g. "speech-16k"
    model_id: str  # e.g. "nwc-speech-16k-v1"
    weights_hash: str  # hex prefix of the weights file's sha256
    frame_size: int  # analysis frame length in samples
    hop_size: int  # samples per frame advance
    num_layers: int  # layer sub-payloads per AUDIO packet, at most (1..255)
    packet_frames: int  # frames per AUDIO packet
    gain_bits: int  # side-info bits per channel per packet; meaning defined by the codec
    coder: str  # entropy-coder id
    tags: dict[str, str] = field(default_factory=dict)  # user KEY=VALUE tags

    @property
    def packet_samples(self) -> int:
        """Samples per channel (at sample_rate) carried by one full AUDIO packet."""
        return self.packet_frames * self.hop_size

    @property
    def packet_duration(self) -> float:
        """Seconds of audio in one full AUDIO packet."""
        return self.packet_samples / self.sample_rate

    @property
    def duration(self) -> float | None:
        """Length in seconds, if the header knows it (see also the END packet)."""
        if self.total_samples is None:
            return None
        return self.total_samples / self.original_rate

    def validate(self) -> None:
        """Raise ValueError unless every field fits its wire field and documented range."""
        for name, lo, hi in (
            ("sample_rate", 1, _U32),
            ("original_rate", 1, _U32),
            ("channels", 1, 255),
            ("codec_delay", 0, _U32),
            ("frame_size", 1, _U32),
            ("hop_size", 1, _U32),
            ("num_layers", 1, 255),
            ("packet_frames", 1, _U32),
            ("gain_bits", 0, 255),
        ):
            _check_int(name, getattr(self, name), lo, hi)
        if self.total_samples is not None:
            # The all-ones value is reserved for "unknown".
            _check_int("total_samples", self.total_samples, 0, _U64 - 1)
        for name in ("tier", "model_id", "weights_hash", "coder"):
            _check_str(name, getattr(self, name))
        if not isinstance(self.tags, dict):
            raise ValueError("tags must be a dict[str, str]")
        if len(self.tags) > _U16:
            raise ValueError(f"too many tags ({len(self.tags)} > {_U16})")
        for key, value in self.tags.items():
            if not isinstance(key, str) or not key or "=" in key:
                raise ValueError(f"tag key must be a non-empty str without '=': {key!r}")
            if not isinstance(value, str):
                raise ValueError(f"tag value must be a str: {key}={value!r}")
            _check_str(f"tag {key!r}", f"{key}={value}")


@dataclass
class Packet:
    """One packet: AUDIO (coded audio) or END (exact length, last packet of the stream)."""

    kind: int  # AUDIO, END, or a future kind (0..255)
    seq: int  # u32 sequence number, +1 per packet of any kind, starting at 0
    granule: int  # AUDIO: end position in samples at sample_rate; END: exact total there
    side: bytes  # AUDIO: side info (per-channel gains); END: usually empty
    layers: list[bytes]  # AUDIO: one sub-payload per layer, layer 0 first; END: []
    original_samples: int | None = None  # END only: exact total samples at original_rate
    extension: bytes = b""  # bytes after the last layer (1.1: records, ``extension.py``)


@dataclass
class Damage:
    """A damaged stretch of the stream (or a sequence discontinuity) found while reading."""

    offset: int  # absolute byte offset where the damage was detected
    skipped: int  # bytes discarded while resynchronising (0 for sequence events)
    reason: str  # one of the reason constants, e.g. "crc mismatch"


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    # bool is an int subclass; True as a channel count is a bug, not a 1.
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    if len(value.encode("utf-8")) > _U16:
        raise ValueError(f"{name} is longer than {_U16} UTF-8 bytes")


def _pack_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<H", len(raw)) + raw


def encode_header(h: StreamHeader) -> bytes:
    """Serialise a header: preamble, body, CRC-32C (raises ValueError on invalid fields)."""
    h.validate()
    total = _UNKNOWN_SAMPLES if h.total_samples is None else h.total_samples
    parts = [
        _HEADER_FIXED.pack(
            h.sample_rate,
            h.original_rate,
            total,
            h.codec_delay,
            h.frame_size,
            h.hop_size,
            h.packet_frames,
            h.channels,
            h.num_layers,
            h.gain_bits,
        ),
        _pack_str(h.tier),
        _pack_str(h.model_id),
        _pack_str(h.weights_hash),
        _pack_str(h.coder),
        struct.pack("<H", len(h.tags)),
    ]
    parts.extend(_pack_str(f"{k}={v}") for k, v in h.tags.items())
    body = b"".join(parts)
    if len(body) > MAX_HEADER_BYTES:
        raise ValueError(f"header body is {len(body)} bytes, limit {MAX_HEADER_BYTES}")
    pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, FORMAT_MINOR, len(body))
    # CRC covers everything after the magic, so a damaged version or length is caught too.
    crc = crc32c.crc32c(body, crc32c.crc32c(pre[len(MAGIC) :]))
    return pre + body + _CRC.pack(crc)


def _decode_header_body(body: bytes) -> StreamHeader:
    """Parse a CRC-checked header body; trailing bytes are a newer minor's fields: ignored."""
    try:
        fixed = _HEADER_FIXED.unpack_from(body, 0)
        pos = _HEADER_FIXED.size

        def take_str() -> str:
            nonlocal pos
            (n,) = struct.unpack_from("<H", body, pos)
            if pos + 2 + n > len(body):
                raise FormatError("header string runs past the header body")
            raw = body[pos + 2 : pos + 2 + n]
            pos += 2 + n
            return raw.decode("utf-8")

        tier, model_id, weights_hash, coder = (take_str() for _ in range(4))
        (ntags,) = struct.unpack_from("<H", body, pos)
        pos += 2
        tags: dict[str, str] = {}
        for _ in range(ntags):
            key, sep, value = take_str().partition("=")
            if not sep or not key or key in tags:
                raise FormatError(f"bad or duplicate header tag {key!r}")
            tags[key] = value
    except struct.error as exc:
        raise FormatError("header body too short") from exc
    except UnicodeDecodeError as exc:
        raise FormatError("header string is not valid UTF-8") from exc
    (sr, orate, total, delay, frame, hop, pframes, channels, layers, gain_bits) = fixed
    header = StreamHeader(
        sample_rate=sr,
        original_rate=orate,
        channels=channels,
        total_samples=None if total == _UNKNOWN_SAMPLES else total,
        codec_delay=delay,
        tier=tier,
        model_id=model_id,
        weights_hash=weights_hash,
        frame_size=frame,
        hop_size=hop,
        num_layers=layers,
        packet_frames=pframes,
        gain_bits=gain_bits,
        coder=coder,
        tags=tags,
    )
    try:
        header.validate()
    except ValueError as exc:
        raise FormatError(f"invalid header: {exc}") from exc
    return header


def encode_packet(p: Packet) -> bytes:
    """Serialise a packet: SYNC, body length, body, CRC-32C (raises ValueError if invalid).

    Any kind 0..255 is encoded with the version-1 AUDIO/END body layout; END must have no
    layers, and only END may carry ``original_samples``.
    """
    _check_int("kind", p.kind, 0, 255)
    _check_int("seq", p.seq, 0, _U32)
    _check_int("granule", p.granule, 0, _U64)
    side, layers = bytes(p.side), [bytes(x) for x in p.layers]
    if len(side) > _U16:
        raise ValueError(f"side info is {len(side)} bytes, limit {_U16}")
    if len(layers) > 255:
        raise ValueError(f"{len(layers)} layers, limit 255")
    if p.kind == END and layers:
        raise ValueError("END packets carry no layers")
    flags = 0
    aux = b""
    if p.original_samples is not None:
        if p.kind != END:
            raise ValueError("original_samples is only valid on END packets")
        _check_int("original_samples", p.original_samples, 0, _U64)
        flags |= FLAG_ORIGINAL_SAMPLES
        aux = _U64S.pack(p.original_samples)
    body = b"".join(
        [
            _PREFIX.pack(p.kind, flags, p.seq, p.granule),
            _AUDIO_FIXED.pack(len(side), len(layers)),
            struct.pack(f"<{len(layers)}I", *map(len, layers)) if layers else b"",
            aux,
            side,
            *layers,
            bytes(p.extension),
        ]
    )
    if len(body) > MAX_PACKET_BYTES:
        raise ValueError(f"packet body is {len(body)} bytes, limit {MAX_PACKET_BYTES}")
    length = struct.pack("<I", len(body))
    crc = crc32c.crc32c(body, crc32c.crc32c(length))  # covers length + body, not the sync
    return SYNC + length + body + _CRC.pack(crc)


def _decode_packet_body(body: bytes, num_layers: int) -> Packet:
    """Parse a CRC-checked AUDIO/END body; raise ValueError if its sizes are inconsistent."""
    kind, flags, seq, granule = _PREFIX.unpack_from(body, 0)
    pos = _PREFIX.size
    try:
        side_len, nlayers = _AUDIO_FIXED.unpack_from(body, pos)
        pos += _AUDIO_FIXED.size
        lengths = struct.unpack_from(f"<{nlayers}I", body, pos)
        pos += 4 * nlayers
        original = None
        if flags & FLAG_ORIGINAL_SAMPLES:
            (original,) = _U64S.unpack_from(body, pos)
            pos += _U64S.size
    except struct.error as exc:
        raise ValueError("packet fields run past the body") from exc
    if pos + side_len + sum(lengths) > len(body):
        raise ValueError("payload sizes exceed the body length")
    if nlayers > num_layers or (kind == END and nlayers):
        raise ValueError("more layers than the header allows")
    if kind != END and original is not None:
        raise ValueError("original_samples on a non-END packet")
    side = body[pos : pos + side_len]
    pos += side_len
    layers = []
    for n in lengths:
        layers.append(body[pos : pos + n])
        pos += n
    # Bytes after the last layer: 1.1's extension records, or a newer minor's (kept as they
    # are, so a tool that rewrites packets, like `nwc truncate`, passes them on).
    return Packet(kind, seq, granule, side, layers, original, body[pos:])


def _write_all(fileobj: SupportsWrite, data: bytes) -> None:
    """Write every byte: raw file objects and pipes may accept only part of a buffer."""
    n = fileobj.write(data)
    # None: a duck-typed sink that does not report counts; take it as having written it all.
    view = memoryview(data)[len(data) if n is None else n :]
    while view:
        n = fileobj.write(view)
        if n == 0:  # a blocking sink that accepts nothing would otherwise loop forever
            raise OSError("file object accepted no data")
        view = view[len(view) if n is None else n :]


class ContainerWriter:
    """Writes header then packets strictly sequentially to a binary file object (works on pipes).

    The header is written by the constructor. Packets are written in the order given; the
    caller assigns ``seq`` (0, 1, 2, ...) and finishes the stream with :meth:`write_end`.
    A packet may carry fewer layers than ``header.num_layers`` (upper layers dropped), never
    more. Nothing is flushed or closed here: that is the caller's file object's business.
    """

    def __init__(self, fileobj: SupportsWrite, header: StreamHeader) -> None:
        self.fileobj = fileobj
        self.header = header
        self.bytes_written = 0
        self.ended = False
        self._put(encode_header(header))

    def _put(self, data: bytes) -> int:
        _write_all(self.fileobj, data)
        self.bytes_written += len(data)
        return len(data)

    def write(self, packet: Packet) -> int:
        """Write one packet; return the number of bytes written."""
        if self.ended:
            raise ValueError("stream already ended")
        if len(packet.layers) > self.header.num_layers:
            raise ValueError(
                f"packet has {len(packet.layers)} layers, header allows {self.header.num_layers}"
            )
        n = self._put(encode_packet(packet))
        self.ended = packet.kind == END
        return n

    def write_end(self, seq: int, coded_samples: int, original_samples: int) -> int:
        """Write the END packet with the exact lengths at sample_rate and original_rate."""
        return self.write(Packet(END, seq, coded_samples, b"", [], original_samples))


class _Input:
    """Sequential buffered reader over a file object; never seeks, tolerates short reads.

    ``buf[pos:]`` is unconsumed data and ``base`` is the absolute offset of ``buf[0]``.
    Consumed bytes are dropped once they are at least half the buffer, so compaction costs
    amortised O(1) per byte however the position advances.
    """

    def __init__(self, fileobj: SupportsRead) -> None:
        # read1 returns whatever is buffered/available, so a live pipe is not stalled waiting
        # for a full chunk; without it, read() is asked only for what is actually needed.
        self._read1 = getattr(fileobj, "read1", None)
        self._read = fileobj.read
        self.buf = bytearray()
        self.pos = 0
        self.base = 0
        self.eof = False

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def available(self) -> int:
        return len(self.buf) - self.pos

    def more(self, want: int) -> bool:
        """Append at least one byte (up to about ``want``); False at EOF."""
        if self.eof:
            return False
        data = self._read1(max(want, _CHUNK)) if self._read1 else self._read(want)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def fill(self, n: int) -> bool:
        """Ensure ``n`` unconsumed bytes are buffered; False if EOF comes first."""
        while self.available < n:
            if not self.more(n - self.available):
                return False
        return True

    def advance(self, n: int) -> None:
        self.pos += n
        if self.pos >= _CHUNK and self.pos * 2 >= len(self.buf):
            del self.buf[: self.pos]
            self.base += self.pos
            self.pos = 0

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[self.pos : self.pos + n])
        self.advance(n)
        return data

    def find_sync(self) -> bool:
        """Advance to the next SYNC at or after pos; at EOF consume everything and return False.

        Each byte is searched once (plus a 3-byte overlap for a marker split across reads).
        """
        while True:
            i = self.buf.find(SYNC, self.pos)
            if i >= 0:
                self.advance(i - self.pos)
                return True
            self.advance(max(0, self.available - (len(SYNC) - 1)))
            if not self.more(_CHUNK):
                self.advance(self.available)
                return False


class ContainerReader:
    """Reads an nwc stream from a binary file object without seeking (works on pipes).

    The constructor reads and validates the header. Iterating yields :class:`Packet` objects
    in stream order, interleaved with :class:`Damage` events, and stops after the END packet
    (which is yielded) or at EOF. Damage never raises: the reader skips to the next SYNC whose
    packet passes its CRC. Packets of unknown kinds are skipped silently. Valid packets are
    never dropped or reordered, even if their ``seq`` says they are out of order.
    """

    def __init__(self, fileobj: SupportsRead) -> None:
        self._in = _Input(fileobj)
        self._crcs = CrcIndex()
        self.ended = False
        self._events: Iterator[Packet | Damage] | None = None
        self.header, self.version, self.header_bytes = self._read_header()

    @property
    def offset(self) -> int:
        """Stream bytes consumed so far: right after a packet is yielded, where it ends."""
        return self._in.offset

    def _read_header(self) -> tuple[StreamHeader, tuple[int, int], int]:
        inp = self._in
        complete = inp.fill(_PREAMBLE.size)
        head = bytes(inp.buf[: len(MAGIC)])
        if not MAGIC.startswith(head) or (len(head) == len(MAGIC) and head != MAGIC):
            raise FormatError("not an nwc stream (bad magic)")
        if not complete:
            raise FormatError("empty or truncated header")
        _, major, minor, length = _PREAMBLE.unpack_from(inp.buf, 0)
        if major != FORMAT_VERSION:
            # Checked before the CRC: another major may lay out even the CRC differently.
            raise UnsupportedVersionError(
                f"unsupported nwc format version {major}.{minor}; "
                f"this reader implements version {FORMAT_VERSION}"
            )
        if length > MAX_HEADER_BYTES:
            raise FormatError(f"header length {length} exceeds {MAX_HEADER_BYTES}")
        total = _PREAMBLE.size + length + _CRC.size
        if not inp.fill(total):
            raise FormatError("empty or truncated header")
        data = inp.take(total)
        body = data[_PREAMBLE.size : -_CRC.size]
        if crc32c.crc32c(data[len(MAGIC) : -_CRC.size]) != _CRC.unpack_from(data, total - 4)[0]:
            raise FormatError("header crc mismatch")
        return _decode_header_body(body), (major, minor), total

    def __iter__(self) -> Iterator[Packet | Damage]:
        # One shared generator: iterating again resumes where the previous loop stopped.
        if self._events is None:
            self._events = self._run()
        return self._events

    def _check_candidate(self) -> tuple[int, str]:
        """Judge the would-be packet at the read position.

        Returns ``(length, "")`` for a packet whose framing and CRC check out, where
        ``length`` is its total size, otherwise ``(0, reason)``. Never consumes input.
        """
        inp = self._in
        if not inp.fill(_FRAME.size):
            tail = bytes(inp.buf[inp.pos :])
            started = tail[: len(SYNC)] == SYNC[: len(tail)]
            return 0, TRUNCATED_PACKET if started else GARBAGE
        sync, length = _FRAME.unpack_from(inp.buf, inp.pos)
        if sync != SYNC:
            return 0, GARBAGE
        if not MIN_PACKET_BODY <= length <= MAX_PACKET_BYTES:
            return 0, BAD_LENGTH  # rejected before reading a single byte of the claimed body
        total = _FRAME.size + length + _CRC.size
        if not inp.fill(total):
            return 0, TRUNCATED_PACKET
        start = inp.pos + len(SYNC)
        end = start + 4 + length
        if length > 2 * STEP:  # from running CRCs: a sync flood costs linear time (6.2)
            crc = self._crcs.crc(inp.buf, inp.base, inp.base + start, inp.base + end)
        else:
            with memoryview(inp.buf) as view, view[start:end] as covered:
                crc = crc32c.crc32c(covered)
        if crc != _CRC.unpack_from(inp.buf, end)[0]:
            return 0, CRC_MISMATCH
        return total, ""

    def _run(self) -> Iterator[Packet | Damage]:
        inp = self._in
        expected_seq = 0
        region_start: int | None = None  # start offset of the damaged stretch being skipped
        region_reason = ""
        quiet = False  # a Damage was just reported: don't report its knock-on effects again
        while not self.ended:
            if inp.available == 0 and not inp.fill(1):
                if region_start is not None:
                    yield Damage(region_start, inp.offset - region_start, region_reason)
                else:  # cut at a packet boundary, or the writer never finished
                    yield Damage(inp.offset, 0, TRUNCATED_STREAM)
                return
            length, reason = self._check_candidate()
            if reason:
                if region_start is None:
                    region_start, region_reason = inp.offset, reason
                inp.advance(1)
                inp.find_sync()
                continue
            if region_start is not None:
                if region_reason == TRUNCATED_PACKET:
                    region_reason = BAD_LENGTH  # a valid packet follows, so it was no EOF cut
                yield Damage(region_start, inp.offset - region_start, region_reason)
                region_start, quiet = None, True
            offset = inp.offset
            body = inp.take(length)[_FRAME.size : -_CRC.size]
            kind, _, seq, _ = _PREFIX.unpack_from(body, 0)
            gap = (seq - expected_seq) & _U32
            expected_seq = (seq + 1) & _U32
            if gap and not quiet:
                yield Damage(offset, 0, SEQUENCE_GAP if gap < 1 << 31 else OUT_OF_ORDER)
            quiet = False
            if kind not in (AUDIO, END):
                continue  # a future kind: framed and checked, so skipping it is safe
            try:
                packet = _decode_packet_body(body, self.header.num_layers)
            except ValueError:
                yield Damage(offset, length, MALFORMED_PACKET)
                continue
            self.ended = packet.kind == END
            yield packet


def header_length(preamble: bytes) -> int:
    """Bytes a stream's header occupies (preamble, body, CRC) from its first
    ``PREAMBLE_BYTES`` bytes: where the packets start, for tools that split a stream's bytes
    without parsing them. Checks the magic and the length bound, nothing else."""
    if len(preamble) < _PREAMBLE.size:
        raise FormatError("empty or truncated header")
    magic, _, _, length = _PREAMBLE.unpack_from(preamble, 0)
    if magic != MAGIC:
        raise FormatError("not an nwc stream (bad magic)")
    if length > MAX_HEADER_BYTES:
        raise FormatError(f"header length {length} exceeds {MAX_HEADER_BYTES}")
    return _PREAMBLE.size + length + _CRC.size


def read_all(data: bytes) -> tuple[StreamHeader, list[Packet | Damage]]:
    """Parse a whole in-memory stream: its header and every packet and Damage event."""
    reader = ContainerReader(io.BytesIO(data))
    return reader.header, list(reader)
