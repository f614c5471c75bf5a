"""Tests for the nwc bitstream container (nwc.formats.container)."""

from __future__ import annotations

import contextlib
import io
import random
import signal
import struct
import time
from collections.abc import Iterator

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nwc.formats import container as c
from nwc.formats.container import (
    AUDIO,
    END,
    FORMAT_VERSION,
    MAGIC,
    MAX_PACKET_BYTES,
    SYNC,
    ContainerReader,
    ContainerWriter,
    Damage,
    FormatError,
    Packet,
    StreamHeader,
    UnsupportedVersionError,
    encode_header,
    encode_packet,
    read_all,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ShortPipe:
    """Pipe-like reader: no seek/tell/read1, and read(n) returns at most `step` bytes."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self._data = data
        self._pos = 0
        self._step = step
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        n = self._step if n is None or n < 0 else min(n, self._step)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        self.bytes_read += len(out)
        return out


class TrickleSink:
    """Raw-I/O-like writer that accepts at most 5 bytes per call and reports the count."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += bytes(b[:5])
        return min(5, len(b))


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a runaway reader."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"reader took longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def make_header(**overrides: object) -> StreamHeader:
    fields: dict[str, object] = dict(
        sample_rate=16000,
        original_rate=44100,
        channels=2,
        total_samples=441000,
        codec_delay=32,
        tier="speech-16k",
        model_id="nwc-speech-16k-v1",
        weights_hash="0123456789abcdef",
        frame_size=512,
        hop_size=480,
        num_layers=8,
        packet_frames=10,
        gain_bits=8,
        coder="constriction-0.5.0:range:u32:categorical:perfect=false",
        tags={"title": "Ünïcødé ☃", "x": "a=b"},
    )
    fields.update(overrides)
    return StreamHeader(**fields)  # type: ignore[arg-type]


def write_stream(header: StreamHeader, packets: list[Packet]) -> bytes:
    buf = io.BytesIO()
    w = ContainerWriter(buf, header)
    for p in packets:
        w.write(p)
    assert w.bytes_written == len(buf.getvalue())
    return buf.getvalue()


def read_events(data: bytes, step: int | None = 3) -> tuple[ContainerReader, list]:
    src = io.BytesIO(data) if step is None else ShortPipe(data, step)
    with time_limit(5):
        reader = ContainerReader(src)
        return reader, list(reader)


def only_packets(events: list) -> list[Packet]:
    return [e for e in events if isinstance(e, Packet)]


def only_damage(events: list) -> list[Damage]:
    return [e for e in events if isinstance(e, Damage)]


# A fixed stream for the damage tests: 12 AUDIO packets + END, random payloads free of SYNC
# (so a resync can only land on a real packet and the expected events are exact).
def _fixed_stream() -> tuple[bytes, int, list[Packet], list[tuple[int, int]]]:
    rng = random.Random(1234)
    header = make_header()
    packets = []
    for i in range(12):
        layers = [rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(0, 9))]
        packets.append(Packet(AUDIO, i, (i + 1) * 4800, rng.randbytes(4), layers))
    packets.append(Packet(END, 12, 12 * 4800 - 100, b"", [], 1_000_000))
    hdr = encode_header(header)
    spans, pos = [], len(hdr)
    for p in packets:
        n = len(encode_packet(p))
        spans.append((pos, pos + n))
        pos += n
    data = write_stream(header, packets)
    assert data.count(SYNC) == len(packets)
    return data, len(hdr), packets, spans


STREAM, HDR_LEN, PACKETS, SPANS = _fixed_stream()


# --------------------------------------------------------------------------- round trips

texts = st.text(max_size=24)
headers = st.builds(
    StreamHeader,
    sample_rate=st.integers(1, 2**32 - 1),
    original_rate=st.integers(1, 2**32 - 1),
    channels=st.integers(1, 255),
    total_samples=st.none() | st.integers(0, 2**64 - 2),
    codec_delay=st.integers(0, 2**32 - 1),
    tier=texts,
    model_id=texts,
    weights_hash=st.text("0123456789abcdef", max_size=64),
    frame_size=st.integers(1, 2**32 - 1),
    hop_size=st.integers(1, 2**32 - 1),
    num_layers=st.integers(8, 255),  # >= the most layers the packet strategy produces
    packet_frames=st.integers(1, 2**32 - 1),
    gain_bits=st.integers(0, 255),
    coder=texts,
    tags=st.dictionaries(st.text(min_size=1).filter(lambda k: "=" not in k), texts, max_size=5),
)
audio_bodies = st.tuples(
    st.integers(0, 2**64 - 1),
    st.binary(max_size=32),
    st.lists(st.binary(max_size=64), max_size=8),
)


@FAST
@given(
    header=headers,
    bodies=st.lists(audio_bodies, max_size=8),
    end=st.none() | st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    step=st.sampled_from([1, 3, 7, None]),
)
def test_round_trip(header, bodies, end, step) -> None:
    packets = [Packet(AUDIO, i, g, s, ls) for i, (g, s, ls) in enumerate(bodies)]
    if end is not None:
        packets.append(Packet(END, len(packets), end[0], b"", [], end[1]))
    data = write_stream(header, packets)
    reader, events = read_events(data, step)
    assert reader.header == header
    assert reader.header_bytes == len(encode_header(header))
    assert reader.version == (FORMAT_VERSION, c.FORMAT_MINOR)
    if end is None:
        # Without END the stream looks cut at a packet boundary.
        assert events == [*packets, Damage(len(data), 0, c.TRUNCATED_STREAM)]
        assert not reader.ended
    else:
        assert events == packets
        assert reader.ended


def test_header_helpers_and_read_all() -> None:
    h = make_header()
    assert h.packet_samples == 4800
    assert h.packet_duration == pytest.approx(0.3)
    assert h.duration == pytest.approx(10.0)
    assert make_header(total_samples=None).duration is None
    header, events = read_all(STREAM)
    assert header == h and events == PACKETS


def test_header_length_and_packet_offsets_split_a_stream() -> None:
    """Tools that split a stream's bytes (bench/speed.py) ask the format where parts end."""
    head = encode_header(make_header())
    assert c.header_length(STREAM[: c.PREAMBLE_BYTES]) == len(head)
    with pytest.raises(FormatError):
        c.header_length(b"\x00" * c.PREAMBLE_BYTES)
    with pytest.raises(FormatError):
        c.header_length(STREAM[:4])
    reader = ContainerReader(io.BytesIO(STREAM))
    ends = [reader.offset for item in reader if isinstance(item, Packet)]
    sizes = [len(encode_packet(p)) for p in PACKETS]
    assert ends == [len(head) + sum(sizes[: i + 1]) for i in range(len(sizes))]
    assert ends[-1] == len(STREAM)


def test_writer_handles_partial_writes_and_rules() -> None:
    sink = TrickleSink()
    w = ContainerWriter(sink, make_header(num_layers=2))
    assert w.write(Packet(AUDIO, 0, 10, b"g", [b"base"])) > 0
    with pytest.raises(ValueError, match="layers"):
        w.write(Packet(AUDIO, 1, 20, b"g", [b"a", b"b", b"c"]))
    n = w.write_end(1, 10, 28)
    assert w.ended and n == len(encode_packet(Packet(END, 1, 10, b"", [], 28)))
    with pytest.raises(ValueError, match="ended"):
        w.write(Packet(AUDIO, 2, 30, b"", []))
    assert w.bytes_written == len(sink.data)
    header, events = read_all(bytes(sink.data))
    assert header.num_layers == 2
    assert [p.kind for p in events] == [AUDIO, END] and events[1].original_samples == 28


@pytest.mark.parametrize(
    "bad",
    [
        {"channels": 0},
        {"channels": 256},
        {"num_layers": 0},
        {"sample_rate": 0},
        {"total_samples": 2**64 - 1},
        {"tags": {"": "x"}},
        {"tags": {"a=b": "x"}},
        {"tier": "x" * 70000},
    ],
)
def test_invalid_header_rejected_by_encoder(bad: dict) -> None:
    with pytest.raises(ValueError):
        encode_header(make_header(**bad))


@pytest.mark.parametrize(
    "bad",
    [
        Packet(END, 0, 0, b"", [b"x"]),
        Packet(AUDIO, 0, 0, b"", [], original_samples=5),
        Packet(AUDIO, 2**32, 0, b"", []),
        Packet(AUDIO, 0, -1, b"", []),
        Packet(AUDIO, 0, 0, b"x" * 65536, []),
        Packet(AUDIO, 0, 0, b"", [b"x" * MAX_PACKET_BYTES]),
    ],
)
def test_invalid_packet_rejected_by_encoder(bad: Packet) -> None:
    with pytest.raises(ValueError):
        encode_packet(bad)


# --------------------------------------------------------------------------- header errors


@pytest.mark.parametrize("data", [b"", b"\x89", b"\x89NW", MAGIC, STREAM[: HDR_LEN - 1]])
def test_truncated_header(data: bytes) -> None:
    with pytest.raises(FormatError, match="empty or truncated header"):
        ContainerReader(ShortPipe(data))


@pytest.mark.parametrize("data", [b"RIFF\x24\x00\x00\x00WAVEfmt ", b"NWC1" + STREAM[4:], b"x"])
def test_bad_magic(data: bytes) -> None:
    with pytest.raises(FormatError, match="magic"):
        ContainerReader(io.BytesIO(data))


@pytest.mark.parametrize("major", [2, 7, 255])
def test_future_major_version(major: int) -> None:
    # A newer major may change everything after the version byte: use junk to prove it
    # is rejected on the version alone.
    data = MAGIC + bytes([major, 0]) + b"\xff" * 40
    with pytest.raises(UnsupportedVersionError, match=rf"\b{major}\.0\b"):
        ContainerReader(io.BytesIO(data))


def test_future_minor_version_extra_header_fields_ignored() -> None:
    h = make_header()
    enc = encode_header(h)
    body = enc[10:-4] + b"new minor-version fields"
    pre = MAGIC + struct.pack("<BBI", FORMAT_VERSION, 9, len(body))
    data = pre + body + struct.pack("<I", crc32c.crc32c(pre[4:] + body)) + STREAM[HDR_LEN:]
    reader, events = read_events(data)
    assert reader.header == h and reader.version == (FORMAT_VERSION, 9)
    assert events == PACKETS


def test_every_header_bit_flip_is_a_format_error() -> None:
    for i in range(HDR_LEN):
        for bit in range(8):
            data = bytearray(STREAM)
            data[i] ^= 1 << bit
            with pytest.raises(FormatError):
                ContainerReader(io.BytesIO(bytes(data)))


# --------------------------------------------------------------------------- damage


def expected_with(index: int, damage: Damage) -> list:
    return [*PACKETS[:index], damage, *PACKETS[index + 1 :]]


@FAST
@given(k=st.integers(0, len(PACKETS) - 1), data=st.data())
def test_bit_flip_inside_packet(k: int, data) -> None:
    start, end = SPANS[k]
    pos = data.draw(st.integers(start, end - 1), label="byte")
    stream = bytearray(STREAM)
    stream[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    reader, events = read_events(bytes(stream))
    if k == len(PACKETS) - 1:  # the END packet itself: everything before it survives
        assert events[:-1] == PACKETS[:-1]
        assert events[-1].offset == start and events[-1].skipped == end - start
        assert not reader.ended
    else:
        (damage,) = only_damage(events)
        assert (damage.offset, damage.skipped) == (start, end - start)
        assert damage.reason in {c.GARBAGE, c.CRC_MISMATCH, c.BAD_LENGTH}
        assert events == expected_with(k, damage)
        assert reader.ended


@FAST
@given(cut=st.integers(HDR_LEN, len(STREAM) - 1))
def test_stream_cut_reports_truncation(cut: int) -> None:
    reader, events = read_events(STREAM[:cut])
    whole = [p for p, (_, end) in zip(PACKETS, SPANS, strict=True) if end <= cut]
    assert events[:-1] == whole and not reader.ended
    last = events[-1]
    starts = [s for s, _ in SPANS]
    if cut in starts:
        assert last == Damage(cut, 0, c.TRUNCATED_STREAM)
    else:
        start = max(s for s in starts if s < cut)
        assert last == Damage(start, cut - start, c.TRUNCATED_PACKET)


garbage = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=64),
        st.just(SYNC),
        st.builds(lambda n: SYNC + struct.pack("<I", n), st.integers(0, 2**32 - 1)),
        st.builds(
            lambda n, rest: SYNC + struct.pack("<I", n) + rest,
            st.integers(0, 200),
            st.binary(max_size=200),
        ),
    ),
    min_size=1,
    max_size=12,
).map(b"".join)


@FAST
@given(k=st.integers(0, len(PACKETS) - 1), junk=garbage)
def test_garbage_between_packets(k: int, junk: bytes) -> None:
    at = SPANS[k][0]
    reader, events = read_events(STREAM[:at] + junk + STREAM[at:])
    (damage,) = only_damage(events)
    assert (damage.offset, damage.skipped) == (at, len(junk))
    assert only_packets(events) == PACKETS and reader.ended


@FAST
@given(i=st.integers(0, len(PACKETS) - 3))
def test_swapped_packets(i: int) -> None:
    (a0, a1), (b0, b1) = SPANS[i], SPANS[i + 1]
    stream = STREAM[:a0] + STREAM[b0:b1] + STREAM[a0:a1] + STREAM[b1:]
    reader, events = read_events(stream)
    order = [*PACKETS[:i], PACKETS[i + 1], PACKETS[i], *PACKETS[i + 2 :]]
    assert only_packets(events) == order and reader.ended
    reasons = [d.reason for d in only_damage(events)]
    assert reasons == [c.SEQUENCE_GAP, c.OUT_OF_ORDER, c.SEQUENCE_GAP]
    assert all(d.skipped == 0 for d in only_damage(events))


@FAST
@given(junk=st.one_of(st.binary(max_size=4096), garbage), step=st.sampled_from([3, None]))
def test_garbage_after_header_only_yields_damage(junk: bytes, step) -> None:
    t0 = time.perf_counter()
    reader, events = read_events(STREAM[:HDR_LEN] + junk, step)
    assert time.perf_counter() - t0 < 2
    assert events and all(isinstance(e, Damage) for e in events)
    assert sum(d.skipped for d in events) == len(junk)
    assert not reader.ended


def test_lost_and_damaged_packets_mixed() -> None:
    # Drop packet 3 entirely (seq gap), corrupt packet 7's CRC, cut into END.
    s = bytearray(STREAM)
    s[SPANS[7][1] - 1] ^= 0xFF
    stream = bytes(s[: SPANS[3][0]] + s[SPANS[4][0] : SPANS[-1][0] + 5])
    _, events = read_events(stream)
    removed = SPANS[4][0] - SPANS[3][0]
    assert only_packets(events) == PACKETS[:3] + PACKETS[4:7] + PACKETS[8:12]
    assert only_damage(events) == [
        Damage(SPANS[3][0], 0, c.SEQUENCE_GAP),
        Damage(SPANS[7][0] - removed, SPANS[7][1] - SPANS[7][0], c.CRC_MISMATCH),
        Damage(SPANS[-1][0] - removed, 5, c.TRUNCATED_PACKET),
    ]


def test_unknown_kind_skipped_without_damage() -> None:
    h = make_header()
    future = Packet(7, 1, 9600, b"whatever", [b"new", b"kind"])
    packets = [Packet(AUDIO, 0, 4800, b"", [b"a"]), future, Packet(AUDIO, 2, 14400, b"", [b"b"])]
    data = write_stream(h, [*packets, Packet(END, 3, 14000, b"", [], 38000)])
    reader, events = read_events(data)
    assert events == [packets[0], packets[2], Packet(END, 3, 14000, b"", [], 38000)]


def test_packet_with_more_layers_than_header_is_malformed() -> None:
    hdr = encode_header(make_header(num_layers=1))
    bad = encode_packet(Packet(AUDIO, 0, 1, b"", [b"a", b"b"]))
    good = encode_packet(Packet(AUDIO, 1, 2, b"", [b"a"]))
    _, events = read_events(hdr + bad + good)
    assert events == [
        Damage(len(hdr), len(bad), c.MALFORMED_PACKET),
        Packet(AUDIO, 1, 2, b"", [b"a"]),
        Damage(len(hdr) + len(bad) + len(good), 0, c.TRUNCATED_STREAM),
    ]


def test_huge_length_field_is_damage_without_reading_ahead() -> None:
    bogus = SYNC + struct.pack("<I", MAX_PACKET_BYTES + 1)
    at = SPANS[2][0]
    stream = STREAM[:at] + bogus + STREAM[at:]
    pipe = ShortPipe(stream + bytes(20 << 20), step=1 << 20)  # 20 MiB of trailing zeros
    reader = ContainerReader(pipe)
    events = list(reader)
    assert events == [*PACKETS[:2], Damage(at, len(bogus), c.BAD_LENGTH), *PACKETS[2:]]
    # Stopped at END: only the bytes it needed were read, not the trailing 20 MiB.
    assert pipe.bytes_read <= len(stream) + c._CHUNK


def test_corrupt_length_within_limit_recovers_following_packets() -> None:
    s = bytearray(STREAM)
    start, end = SPANS[4]
    s[start + 4 : start + 8] = struct.pack("<I", MAX_PACKET_BYTES - 1)  # claims ~4 MiB
    _, events = read_events(bytes(s) + bytes(5 << 20), step=None)
    assert events == expected_with(4, Damage(start, end - start, c.CRC_MISMATCH))


def test_resync_is_linear_in_hostile_input() -> None:
    # 2 MiB of candidates: every 64 bytes a SYNC with a plausible length but a wrong CRC.
    rng = random.Random(5)
    chunk = b"".join(
        SYNC + struct.pack("<I", rng.randrange(14, 200)) + rng.randbytes(56) for _ in range(1 << 15)
    )
    t0 = time.perf_counter()
    _, events = read_events(STREAM[:HDR_LEN] + chunk + STREAM[HDR_LEN:], step=None)
    assert time.perf_counter() - t0 < 3
    assert only_packets(events) == PACKETS
    assert only_damage(events) == [Damage(HDR_LEN, len(chunk), c.CRC_MISMATCH)]
