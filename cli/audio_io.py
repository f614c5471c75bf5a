"""Audio and byte I/O for the command line: files, pipes, raw PCM, atomic outputs.

soundfile reads any file format but needs a seekable file, so WAV and raw PCM arriving
through a pipe are parsed here, incrementally. WAV written to a pipe gets a streaming header
(RIFF and data sizes 0xFFFFFFFF, as ffmpeg writes), which libsndfile, sox and ffmpeg accept.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import soundfile as sf

BLOCK = 1 << 15  # frames per read block


class InputError(ValueError):
    """Input audio that cannot be read."""


@dataclass
class AudioSource:
    """An open audio input: rate, channels, known length (or None) and a block iterator."""

    rate: int
    channels: int
    frames: int | None
    blocks: Iterator[np.ndarray]
    name: str


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
                       name)


def open_audio(path: str, raw: bool = False, raw_rate: int = 16000, raw_channels: int = 1,
               raw_format: str = "s16") -> AudioSource:
    """Open a file (any soundfile format) or ``-`` (WAV or raw PCM on stdin)."""
    if path == "-":
        from .stdio import std_binary

        stdin = std_binary("stdin")
        if raw:
            return AudioSource(raw_rate, raw_channels, None,
                               _pcm_blocks(stdin, raw_channels, raw_format, None), "stdin")
        return read_wav_stream(stdin)
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

    def blocks() -> Iterator[np.ndarray]:
        with sfile:
            while True:
                b = sfile.read(BLOCK, dtype="float32", always_2d=True)
                if b.shape[0] == 0:
                    return
                yield b

    return AudioSource(sfile.samplerate, sfile.channels, sfile.frames, blocks(), path)


def wav_header(rate: int, channels: int, bits: str, frames: int | None) -> bytes:
    """RIFF/WAVE header; ``frames=None`` writes the streaming sizes 0xFFFFFFFF."""
    width = {"16": 2, "24": 3, "float": 4}[bits]
    tag = 3 if bits == "float" else 1
    data = 0xFFFFFFFF if frames is None else frames * width * channels
    riff = 0xFFFFFFFF if frames is None else 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, tag, channels, rate, rate * width * channels,
                          width * channels, width * 8)
            + b"data" + struct.pack("<I", data))


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


class AtomicOutput:
    """An output file written under a temporary name and renamed into place on success.

    ``-`` means stdout (never refused, never renamed). Refuses to replace an existing file
    unless ``force``; on failure the temporary file is removed, so no half-written output stays.
    """

    def __init__(self, path: str, force: bool) -> None:
        self.path = path
        self.force = force
        self.tmp: str | None = None
        self.f: BinaryIO | None = None

    def check(self) -> None:
        if self.path != "-" and os.path.exists(self.path) and not self.force:
            raise FileExistsError(f"{self.path} exists; use -f/--force to overwrite")

    def __enter__(self) -> BinaryIO:
        if self.path == "-":
            from .stdio import std_binary

            self.f = cast(BinaryIO, _Flushing(std_binary("stdout")))
            return self.f
        self.check()
        d = Path(self.path).resolve().parent
        if not d.is_dir():
            raise FileNotFoundError(f"output folder {d} does not exist")
        fd, self.tmp = tempfile.mkstemp(prefix=f".{Path(self.path).name}.", suffix=".part",
                                        dir=d)
        umask = os.umask(0o022)  # mkstemp makes 0600 files; outputs get the usual mode
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path == "-":
            if exc_type is None:
                self.f.flush()
            return
        self.f.close()
        if exc_type is None:
            from .stdio import publish

            try:  # no-clobber: a file that appeared at the target meanwhile is kept
                publish(self.tmp, self.path, self.force)
                return
            except BaseException:
                self._discard()
                raise
        self._discard()

    def _discard(self) -> None:
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
