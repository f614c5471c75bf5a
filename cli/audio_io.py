"""Audio and byte I/O for the command line: files, pipes, raw PCM, atomic outputs.

soundfile reads any file format but needs a seekable file, so WAV and raw PCM arriving
through a pipe are parsed here, incrementally. WAV written to a pipe gets a streaming header
(RIFF and data sizes 0xFFFFFFFF, as ffmpeg writes), which libsndfile, sox and ffmpeg accept.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import soundfile as sf

from .errors import InputError  # noqa: F401 - re-exported: callers catch it from here
from .tags import from_soundfile, parse_riff_info, riff_info
from .target import keep_attributes, same_file
from .target import resolve as resolve_target

BLOCK = 1 << 15  # frames per read block


@dataclass
class AudioSource:
    """An open audio input: rate, channels, known length (or None) and a block iterator."""

    rate: int
    channels: int
    frames: int | None
    blocks: Iterator[np.ndarray]
    name: str
    tags: list[tuple[str, str]] = field(default_factory=list)  # read from the input file


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


_RAW_FORMATS = {"s16": ("<i2", 32768.0), "s24": (None, 8388608.0), "s32": ("<i4", 2147483648.0),
                "f32": ("<f4", 1.0), "u8": ("u1", 128.0)}


def _pcm_blocks(f: BinaryIO, channels: int, fmt: str, limit: int | None) -> Iterator[np.ndarray]:
    """Decode interleaved PCM from a byte stream in blocks of (frames, channels) float32.

    A block is whatever whole frames the stream holds now, up to ``BLOCK`` (``read1``): a live
    pipe (``arecord | nwc encode``) flows on at once instead of waiting for a full block, and
    the encoder's output does not depend on how its input was chunked.
    """
    width = {"s16": 2, "s24": 3, "s32": 4, "f32": 4, "f64": 8, "u8": 1}[fmt]
    frame_bytes = width * channels
    left = limit
    read_some = getattr(f, "read1", None)
    pending = b""  # a partial frame carried to the next block
    while left is None or left > 0:
        want = BLOCK if left is None else min(BLOCK, left)
        if read_some is None:
            raw = _read_exactly(f, want * frame_bytes)
            eof = len(raw) < want * frame_bytes
        else:
            parts, got, eof = [pending], len(pending), False
            while got < frame_bytes:
                b = read_some(want * frame_bytes - got)
                if not b:
                    eof = True
                    break
                parts.append(b)
                got += len(b)
            raw = b"".join(parts)
        n = len(raw) // frame_bytes
        if n == 0:
            return
        pending = raw[n * frame_bytes:]
        raw = raw[: n * frame_bytes]
        if fmt == "s24":
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
            v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
            v = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float32) / 8388608.0
        elif fmt == "f64":
            v = np.frombuffer(raw, "<f8").astype(np.float32)
        elif fmt == "u8":
            v = (np.frombuffer(raw, "u1").astype(np.float32) - 128.0) / 128.0
        else:
            dt, scale = _RAW_FORMATS[fmt]
            v = np.frombuffer(raw, dt).astype(np.float32) / scale
        yield v.reshape(n, channels)
        if left is not None:
            left -= n
        if eof:
            return


def read_wav_stream(f: BinaryIO, name: str = "stdin") -> AudioSource:
    """Parse a WAV header from a non-seekable stream; sizes of 0 or 0xFFFFFFFF mean 'to EOF'."""
    head = _read_exactly(f, 12)
    if len(head) == 0:
        raise InputError(f"{name}: empty input (expected WAV audio)")
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise InputError(f"{name}: not a WAV stream (use --raw for headerless PCM)")
    if head[:4] == b"RIFX":
        raise InputError(f"{name}: big-endian WAV (RIFX) is not supported")
    fmt = None
    tags: list[tuple[str, str]] = []
    while True:
        ch = _read_exactly(f, 8)
        if len(ch) < 8:
            raise InputError(f"{name}: WAV stream ends before its data chunk")
        cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
        if cid == b"fmt ":
            if size < 16 or size > 1024:
                raise InputError(f"{name}: bad WAV fmt chunk")
            body = _read_exactly(f, size + (size & 1))
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and size >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            break
        elif cid == b"LIST" and size <= 1 << 16:
            tags += parse_riff_info(_read_exactly(f, size + (size & 1)))
        else:
            if size > 1 << 24:
                raise InputError(f"{name}: oversized WAV chunk {cid!r}")
            _read_exactly(f, size + (size & 1))
    if fmt is None:
        raise InputError(f"{name}: WAV stream has no fmt chunk")
    tag, channels, rate, bits = fmt
    kinds = {(1, 8): "u8", (1, 16): "s16", (1, 24): "s24", (1, 32): "s32", (3, 32): "f32",
             (3, 64): "f64"}
    if (tag, bits) not in kinds or channels < 1 or rate < 1:
        raise InputError(f"{name}: unsupported WAV encoding (format {tag}, {bits} bits)")
    width = bits // 8
    frames = None if size in (0, 0xFFFFFFFF) else size // (width * channels)
    return AudioSource(rate, channels, frames, _pcm_blocks(f, channels, kinds[(tag, bits)], frames),
                       name, tags)


def open_audio(path: str, raw: bool = False, raw_rate: int = 16000, raw_channels: int = 1,
               raw_format: str = "s16") -> AudioSource:
    """Open a file (any soundfile format) or ``-`` (WAV or raw PCM on stdin)."""
    if path == "-":
        from .stdio import std_binary

        stdin = std_binary("stdin")
        if raw:
            return AudioSource(raw_rate, raw_channels, None,
                               _pcm_blocks(stdin, raw_channels, raw_format, None), "stdin")
        if cast(io.BufferedReader, stdin).peek(4)[:4] in (b"RIFF", b"RIFX", b""):
            return read_wav_stream(stdin)
        return _open_spooled(stdin)
    if raw:
        f = open(path, "rb")  # noqa: SIM115 - closed by the generator
        return AudioSource(raw_rate, raw_channels, None,
                           _pcm_blocks(f, raw_channels, raw_format, None), path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        sfile = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise InputError(f"{path}: not an audio file soundfile can read ({e})") from None
    return _sf_source(sfile, path)


def _open_spooled(stdin: BinaryIO) -> AudioSource:
    """FLAC, Ogg, AIFF, ... on stdin: libsndfile needs to seek, so the input is copied to a
    temporary file first (in memory up to 32 MiB); WAV and raw PCM stream without this."""
    spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115 - closed by sf
    shutil.copyfileobj(stdin, spool, 1 << 20)
    spool.seek(0)
    try:
        sfile = sf.SoundFile(spool)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise InputError("stdin: not a WAV stream nor another format soundfile reads (FLAC, "
                         "Ogg, AIFF, ...); use --raw for headerless PCM") from None
    return _sf_source(sfile, "stdin")


def _sf_source(sfile: sf.SoundFile, path: str) -> AudioSource:
    def blocks() -> Iterator[np.ndarray]:
        with sfile:
            while True:
                b = sfile.read(BLOCK, dtype="float32", always_2d=True)
                if b.shape[0] == 0:
                    return
                yield b

    return AudioSource(sfile.samplerate, sfile.channels, sfile.frames, blocks(), path,
                       from_soundfile(sfile))


def wav_header(rate: int, channels: int, bits: str, frames: int | None,
               tags: dict[str, str] | None = None) -> bytes:
    """RIFF/WAVE header (a LIST INFO chunk for ``tags`` before the data); ``frames=None``
    writes the streaming sizes 0xFFFFFFFF. The data size is always the last 4 bytes."""
    width = {"16": 2, "24": 3, "float": 4}[bits]
    tag = 3 if bits == "float" else 1
    info = riff_info(tags or {})
    data = 0xFFFFFFFF if frames is None else frames * width * channels
    riff = 0xFFFFFFFF if frames is None else 36 + len(info) + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, tag, channels, rate, rate * width * channels,
                          width * channels, width * 8)
            + info + b"data" + struct.pack("<I", data))


def pcm_ints(x: np.ndarray, bits: str) -> np.ndarray:
    """Float samples to integers: int16, or int32 holding 24-bit values in the low bits.

    One conversion for every output path, so a pipe and a file carry identical samples.
    """
    if bits == "16":
        return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2")
    return np.clip(np.rint(x * 8388608.0), -8388608, 8388607).astype("<i4")


def pcm_bytes(x: np.ndarray, bits: str) -> bytes:
    """Interleave float (frames, channels) as little-endian PCM."""
    if bits == "float":
        return np.ascontiguousarray(x, "<f4").tobytes()
    v = pcm_ints(x, bits)
    if bits == "16":
        return v.tobytes()
    return v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


class _Flushing:
    """stdout that flushes after every write: each packet (or decoded block) leaves at once,
    so a live pipe is not held back by an 8 KiB buffer (4 s of a 16 kbps stream)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        self._f.flush()
        return n

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def regular_file(self) -> BinaryIO | None:
        """The underlying file if it is a regular (seekable) one: ``> out.wav`` on stdout."""
        try:
            regular = stat.S_ISREG(os.fstat(self._f.fileno()).st_mode)
        except (OSError, AttributeError, ValueError):
            return None
        return self._f if regular else None


class AtomicOutput:
    """An output file written under a temporary name and renamed into place on success.

    ``-`` means stdout (never refused, never renamed). Refuses to replace an existing file
    unless ``force``; on failure the temporary file is removed, so no half-written output stays.
    Devices, FIFOs and symlinks are handled as ``target.py`` describes.
    """

    def __init__(self, path: str, force: bool) -> None:
        self.path = path
        self.force = force
        self.tmp: str | None = None
        self.f: BinaryIO | None = None
        self.target = resolve_target(path)

    @property
    def streaming(self) -> bool:
        """Written front to back without seeking (stdout, a pipe or a device)."""
        return self.target.streaming

    def check(self, inp: str | None = None) -> None:
        """Refuse before any work: an existing file without ``force``, or OUT being IN."""
        if inp is not None and same_file(inp, self.path):
            raise InputError(f"{inp}: input and output are the same file")
        if self.target.existing is not None and not self.force:
            raise FileExistsError(f"{self.path} exists; use -f/--force to overwrite")

    def __enter__(self) -> BinaryIO:
        t = self.target
        if t.kind == "stdout":
            from .stdio import std_binary

            self.f = cast(BinaryIO, _Flushing(std_binary("stdout")))
            return self.f
        if t.kind == "direct":
            self.f = cast(BinaryIO, _Flushing(open(t.path, "wb")))  # noqa: SIM115
            return self.f
        self.check()
        d = Path(t.path).parent
        if not d.is_dir():
            raise FileNotFoundError(f"output folder {d} does not exist")
        fd, self.tmp = tempfile.mkstemp(prefix=f".{Path(t.path).name}.", suffix=".part",
                                        dir=d)
        keep_attributes(fd, t.existing)
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, exc, tb) -> None:
        t = self.target
        assert self.f is not None  # entered
        if t.kind != "file":
            if exc_type is None:
                self.f.flush()
            if t.kind == "direct":
                self.f.close()
            return
        self.f.close()
        assert self.tmp is not None  # a file target writes a temporary file
        try:
            if exc_type is None:
                if t.existing is not None and t.existing.st_nlink > 1:
                    # A rename would split the hard links: rewrite the shared inode instead.
                    shutil.copyfile(self.tmp, t.path)
                else:  # no-clobber: a file that appeared at the target meanwhile is kept
                    from .stdio import publish

                    publish(self.tmp, t.path, self.force)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
