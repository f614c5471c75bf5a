"""The `nwc` command line, run as a subprocess with the tiny tier installed."""

from __future__ import annotations

import json
import os
import select
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import LPC_TIER_NAME, TIER_NAME, nwc_env, speech_like, write_wav
from nwc import __version__
from nwc.codec.api import StreamEncoder, header_for
from nwc.formats.container import ContainerReader, ContainerWriter

T = ("--tier", TIER_NAME)


def write_stream(codec_tier, path: Path, x: np.ndarray, rate: int, tags: dict | None = None,
                 **header_changes) -> Path:
    """Write an .nwc stream in-process, exactly as `nwc encode` does (optionally altered)."""
    x = x if x.ndim == 2 else x[:, None]
    h = header_for(codec_tier, rate, x.shape[1], x.shape[0], tags)
    for k, v in header_changes.items():
        setattr(h, k, v)
    enc = StreamEncoder(codec_tier, rate, x.shape[1])
    with open(path, "wb") as f:
        w = ContainerWriter(f, h)
        for p in enc.push(x) + enc.finish():
            w.write(p)
        w.write_end(enc.next_seq, enc.coded_samples, enc.input_samples)
    return path


def assert_clean_failure(r, code: int = 1, *, one_line: bool = True) -> str:
    """Failed as a CLI should: the exit code, no traceback, a short message on stderr."""
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err
    if one_line:
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("nwc: error: ")
    return err


def no_partial_files(d: Path) -> bool:
    return not [p for p in d.iterdir() if p.name.endswith(".part")]


def default_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@pytest.fixture(scope="module")
def stream(tiny_tier, tmp_path_factory) -> tuple[Path, int]:
    """A 1.5 s 16 kHz mono stream with tags, and its length in samples."""
    d = tmp_path_factory.mktemp("stream")
    x = speech_like(1.5, 16000, 1, seed=21)
    return write_stream(tiny_tier, d / "s.nwc", x, 16000, {"artist": "A=B", "k": "v"}), len(x)


def test_version(run_nwc) -> None:
    r = run_nwc("--version")
    assert r.returncode == 0 and r.stdout.decode().startswith(f"nwc {__version__}")


@pytest.mark.parametrize("rate,channels,seconds", [(16000, 1, 1.0), (44100, 2, 0.7),
                                                   (8000, 1, 0.9)])
def test_file_round_trip(run_nwc, tmp_path, rate: int, channels: int, seconds: float) -> None:
    src = write_wav(tmp_path / "a.wav", seconds, rate, channels, seed=rate)
    n = sf.info(str(src)).frames
    r = run_nwc("encode", src, tmp_path / "a.nwc", *T)
    assert r.returncode == 0, r.stderr
    assert b"encoded" in r.stderr and r.stdout == b""
    assert (b"resampling" in r.stderr) == (rate != 16000)
    r = run_nwc("decode", tmp_path / "a.nwc", tmp_path / "b.wav")
    assert r.returncode == 0, r.stderr
    info = sf.info(str(tmp_path / "b.wav"))
    assert (info.frames, info.samplerate, info.channels) == (n, rate, channels)
    y, _ = sf.read(str(tmp_path / "b.wav"))
    assert np.isfinite(y).all() and np.abs(y).max() > 0
    for name in ("a.nwc", "b.wav"):  # outputs get the usual permissions, not mkstemp's 0600
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == default_mode()
    assert no_partial_files(tmp_path)


def test_stdin_stdout_pipeline(run_shell, tmp_path) -> None:
    write_wav(tmp_path / "a.wav", 1.3, 16000, 1, seed=4)
    r = run_shell("cat a.wav | nwc encode - - --tier tiny -q | nwc decode - - -q > b.wav",
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    assert sf.info(str(tmp_path / "b.wav")).frames == sf.info(str(tmp_path / "a.wav")).frames


def test_raw_pcm_input(run_shell, tmp_path) -> None:
    x = speech_like(0.8, 8000, 2, seed=8)
    np.clip(np.rint(x * 32767), -32768, 32767).astype("<i2").tofile(tmp_path / "a.raw")
    r = run_shell("cat a.raw | nwc encode --raw --raw-rate 8000 --raw-channels 2 -t tiny - a.nwc"
                  " && nwc info --json a.nwc > info.json && nwc decode a.nwc b.wav",
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "info.json").read_text())
    assert (d["original_rate"], d["channels"], d["total_samples"]) == (8000, 2, len(x))
    info = sf.info(str(tmp_path / "b.wav"))
    assert (info.frames, info.samplerate, info.channels) == (len(x), 8000, 2)


def test_decode_formats_and_rate(run_nwc, stream, tmp_path) -> None:
    path, n = stream
    r = run_nwc("decode", path, "-", "--format", "raw", "--rate", "8000", "-q")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == round(n * 8000 / 16000) * 2  # s16 mono
    r = run_nwc("decode", path, tmp_path / "o.flac", "--bits", "24")
    assert r.returncode == 0, r.stderr
    info = sf.info(str(tmp_path / "o.flac"))
    assert (info.format, info.subtype, info.frames, info.samplerate) == ("FLAC", "PCM_24", n,
                                                                          16000)
    r = run_nwc("decode", path, tmp_path / "o.bin", "--format", "raw", "--bits", "float")
    assert r.returncode == 0, r.stderr
    raw = np.fromfile(tmp_path / "o.bin", "<f4")
    flac, _ = sf.read(str(tmp_path / "o.flac"), dtype="float32")
    assert raw.shape == (n,) and np.abs(raw - flac).max() < 1e-4


def test_info_json(run_nwc, stream) -> None:
    path, n = stream
    r = run_nwc("info", "--json", path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["tier"] == TIER_NAME and d["tags"] == {"artist": "A=B", "k": "v"}
    assert d["total_samples"] == n and d["duration_s"] == pytest.approx(n / 16000)
    assert d["bytes"] == path.stat().st_size and d["ended"] and d["damaged"] == 0
    assert d["packets"] == 4 and d["channels"] == 1
    assert d["kbps"] == pytest.approx(8 * path.stat().st_size / (n / 16000) / 1000)
    r = run_nwc("info", path)
    assert r.returncode == 0 and b"tag:         artist=A=B" in r.stdout


def test_encode_tags_reach_info(run_nwc, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 0.3)
    r = run_nwc("encode", src, tmp_path / "a.nwc", *T, "--tag", "title=x y", "--tag", "n=1")
    assert r.returncode == 0, r.stderr
    r = run_nwc("info", "--json", tmp_path / "a.nwc")
    # Keys are case-insensitive and stored upper-case, as Vorbis comments are.
    assert json.loads(r.stdout)["tags"] == {"TITLE": "x y", "N": "1"}


def test_tiers_json(run_nwc, weights_dir) -> None:
    r = run_nwc("tiers", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows[TIER_NAME]["path"] == str(weights_dir / f"{TIER_NAME}.json")
    assert rows[TIER_NAME]["kbps"] == 1.0 and rows[TIER_NAME]["sample_rate"] == 16000


def test_refuses_to_overwrite_without_force(run_nwc, stream, tmp_path) -> None:
    path, n = stream
    out = tmp_path / "b.wav"
    out.write_bytes(b"precious")
    err = assert_clean_failure(run_nwc("decode", path, out))
    assert "exists" in err and out.read_bytes() == b"precious"
    r = run_nwc("decode", path, out, "-f")
    assert r.returncode == 0, r.stderr
    assert sf.info(str(out)).frames == n and no_partial_files(tmp_path)


def test_zero_sample_wav_round_trips(run_nwc, tmp_path) -> None:
    sf.write(str(tmp_path / "z.wav"), np.zeros((0, 2), np.float32), 22050, subtype="PCM_16")
    r = run_nwc("encode", tmp_path / "z.wav", tmp_path / "z.nwc", *T)
    assert r.returncode == 0, r.stderr
    r = run_nwc("decode", tmp_path / "z.nwc", tmp_path / "o.wav")
    assert r.returncode == 0, r.stderr
    info = sf.info(str(tmp_path / "o.wav"))
    assert (info.frames, info.samplerate, info.channels) == (0, 22050, 2)


def _nan_wav(p: Path) -> None:
    x = speech_like(0.3)
    x[1000, 0] = np.nan
    sf.write(str(p), x, 16000, subtype="FLOAT")


BAD_ENCODE_INPUTS = {
    "empty file": lambda p: p.write_bytes(b""),
    "text file": lambda p: p.write_text("this is not audio\n" * 30),
    "NaN samples": _nan_wav,
    "truncated WAV header": lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "),
}


@pytest.mark.parametrize("case", list(BAD_ENCODE_INPUTS))
def test_bad_encode_input(run_nwc, tmp_path, case: str) -> None:
    src = tmp_path / "in.wav"
    BAD_ENCODE_INPUTS[case](src)
    assert_clean_failure(run_nwc("encode", src, tmp_path / "out.nwc", *T))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_bad_wav_on_stdin(run_shell, tmp_path) -> None:
    (tmp_path / "t.txt").write_text("hello\n")
    r = run_shell("nwc encode - out.nwc -t tiny < t.txt", cwd=tmp_path)
    assert "not a WAV stream" in assert_clean_failure(r)
    assert not (tmp_path / "out.nwc").exists()


def _future_version(tier, p: Path) -> None:
    write_stream(tier, p, speech_like(0.2), 16000)
    data = bytearray(p.read_bytes())
    data[4] = 2  # major version 2; header otherwise valid
    p.write_bytes(bytes(data))


BAD_STREAMS = {
    "not a stream": (lambda t, p: p.write_text("hello world\n"), "bad magic"),
    "empty": (lambda t, p: p.write_bytes(b""), "empty or truncated"),
    "truncated header": (lambda t, p: p.write_bytes(
        write_stream(t, p, speech_like(0.2), 16000).read_bytes()[:40]), "truncated header"),
    "tier not installed": (lambda t, p: write_stream(t, p, speech_like(0.2), 16000,
                                                     tier="ghost-tier"), "'ghost-tier'"),
    "other weights": (lambda t, p: write_stream(t, p, speech_like(0.2), 16000,
                                                weights_hash="0123456789abcdef"), "weights"),
    "future version": (_future_version, "format version 2."),
}


@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_bad_decode_input(run_nwc, tiny_tier, tmp_path, case: str) -> None:
    make, message = BAD_STREAMS[case]
    src = tmp_path / "in.nwc"
    make(tiny_tier, src)
    err = assert_clean_failure(run_nwc("decode", src, tmp_path / "out.wav"))
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nwc"]


USAGE_ERRORS = [
    ("encode",),
    ("encode", "a.wav", "o.nwc", "--raw-format", "s8"),
    ("encode", "a.wav", "o.nwc", "--tag", "novalue"),
    ("encode", "a.wav", "o.nwc", "--tier", "tiny", "--bitrate", "8k"),
    ("decode", "s.nwc", "o.flac", "--bits", "float"),
    ("encode", "a.wav", "o.nwc", "--packet-frames", "0"),
    ("encode", "a.wav", "o.nwc", "--packet-frames", "2", "--max-delay", "100"),
    ("encode", "a.wav", "o.nwc", "--max-delay", "20"),  # under one frame's 32 ms
    ("frobnicate",),
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_usage_errors_exit_2(run_nwc, stream, tmp_path, args) -> None:
    write_wav(tmp_path / "a.wav", 0.2)
    (tmp_path / "s.nwc").write_bytes(stream[0].read_bytes())
    r = run_nwc(*args, cwd=tmp_path)
    err = assert_clean_failure(r, 2, one_line=False)
    assert "Error" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "s.nwc"]


def test_broken_pipe_is_quiet(run_shell, tiny_tier, tmp_path) -> None:
    write_stream(tiny_tier, tmp_path / "long.nwc", speech_like(5.0, seed=2), 16000)
    r = run_shell("nwc decode long.nwc - 2> err.txt | head -c 100 > head.bin; "
                  "echo ${PIPESTATUS[0]}", cwd=tmp_path)
    assert r.stdout.decode().strip() == "0", (tmp_path / "err.txt").read_text()
    assert (tmp_path / "head.bin").stat().st_size == 100
    assert (tmp_path / "err.txt").read_text() == ""


def test_wav_header_on_stdout_is_streaming(run_nwc, stream) -> None:
    path, n = stream
    r = run_nwc("decode", path, "-", "-q")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out[:4] == b"RIFF" and out[8:16] == b"WAVEfmt "
    head = out.index(b"data") + 8  # the stream's ARTIST tag rides in a LIST INFO chunk before
    assert b"IART" in out[36:head]
    assert struct.unpack("<I", out[head - 4:head])[0] == 0xFFFFFFFF  # unknown: pipe-friendly
    assert len(out) == head + 2 * n


def _packets(path: Path) -> bytes:
    """A stream's bytes after its header (a pipe's header has no length, a file's has)."""
    data = path.read_bytes()
    return data[14 + struct.unpack("<I", data[6:10])[0]:]


@pytest.mark.parametrize("pf", [1, 3])
def test_packet_frames_round_trip(run_nwc, run_shell, tiny_tier, tmp_path, pf: int) -> None:
    x = speech_like(1.1, 16000, 1, seed=pf)
    write_wav(tmp_path / "a.wav", data=x)
    r = run_nwc("encode", tmp_path / "a.wav", tmp_path / "a.nwc", *T, "--packet-frames", pf)
    assert r.returncode == 0, r.stderr
    d = json.loads(run_nwc("info", "--json", tmp_path / "a.nwc").stdout)
    assert d["packet_frames"] == pf and d["ended"] and d["damaged"] == 0
    assert d["algorithmic_latency_ms"] == pytest.approx((pf * 480 + 32) / 16)
    assert d["packets"] == -(-((len(x) - 32 + 479) // 480) // pf)
    assert f"({pf} frame(s))".encode() in run_nwc("info", tmp_path / "a.nwc").stdout
    # The CLI writes what the API writes, and a pipe the same packets as a file.
    pcm = sf.read(str(tmp_path / "a.wav"), dtype="float32", always_2d=True)[0]
    enc = StreamEncoder(tiny_tier, 16000, 1, packet_frames=pf)
    with open(tmp_path / "api.nwc", "wb") as f:
        w = ContainerWriter(f, header_for(tiny_tier, 16000, 1, len(x), packet_frames=pf))
        for p in enc.push(pcm) + enc.finish():
            w.write(p)
        w.write_end(enc.next_seq, enc.coded_samples, enc.input_samples)
    assert (tmp_path / "api.nwc").read_bytes() == (tmp_path / "a.nwc").read_bytes()
    r = run_shell(f"cat a.wav | nwc encode - - -t tiny -q --packet-frames {pf} > p.nwc"
                  " && nwc decode p.nwc p.wav -q && nwc decode a.nwc b.wav -q", tmp_path)
    assert r.returncode == 0, r.stderr
    assert _packets(tmp_path / "p.nwc") == _packets(tmp_path / "a.nwc")
    assert (tmp_path / "p.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert sf.info(str(tmp_path / "b.wav")).frames == len(x)


def test_max_delay_picks_the_packet_size(run_nwc, tmp_path) -> None:
    write_wav(tmp_path / "a.wav", 0.5)
    for ms, pf in (("100", 3), ("482", 16), ("5000", 16), ("32", 1)):
        r = run_nwc("encode", tmp_path / "a.wav", tmp_path / "a.nwc", *T, "--max-delay", ms,
                    "-f", "-q")
        assert r.returncode == 0, r.stderr
        assert json.loads(run_nwc("info", "--json", tmp_path / "a.nwc").stdout)[
            "packet_frames"] == pf, ms


def test_truncate_keeps_packet_frames(run_nwc, tmp_path) -> None:
    write_wav(tmp_path / "a.wav", 0.9, seed=5)
    lpc = ("-t", LPC_TIER_NAME, "--packet-frames", "3", "-q")
    assert run_nwc("encode", tmp_path / "a.wav", tmp_path / "full.nwc", *lpc).returncode == 0
    assert run_nwc("encode", tmp_path / "a.wav", tmp_path / "one.nwc", *lpc,
                   "--layers", "1").returncode == 0
    r = run_nwc("truncate", tmp_path / "full.nwc", tmp_path / "cut.nwc", "--bitrate", "2.5k")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cut.nwc").read_bytes() == (tmp_path / "one.nwc").read_bytes()
    d = json.loads(run_nwc("info", "--json", tmp_path / "cut.nwc").stdout)
    assert (d["packet_frames"], d["num_layers"]) == (3, 1)
    assert run_nwc("decode", tmp_path / "cut.nwc", tmp_path / "cut.wav", "-q").returncode == 0
    assert sf.info(str(tmp_path / "cut.wav")).frames == sf.info(str(tmp_path / "a.wav")).frames


def test_stream_header_comes_before_any_audio(weights_dir, tmp_path) -> None:
    """`nwc encode - -` writes its header once it knows the input format (here from --raw),
    before any audio arrives: a live pipe learns the stream's shape at once."""
    p = subprocess.Popen([sys.executable, "-m", "nwc", "encode", "--raw", "-", "-", *T, "-q",
                          "--packet-frames", "1"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=nwc_env(weights_dir))
    try:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        assert ready, "no header within 60 s"
        head = os.read(p.stdout.fileno(), 4)
        assert head == b"\x89NWC"
        pcm = (speech_like(0.2, seed=3)[:, 0] * 32767).astype("<i2").tobytes()
        out, err = p.communicate(pcm, timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0, err
    (tmp_path / "s.nwc").write_bytes(head + out)
    with open(tmp_path / "s.nwc", "rb") as f:
        r = ContainerReader(f)
        assert r.header.packet_frames == 1 and r.header.total_samples is None
        assert sum(1 for _ in r) == -(-(3200 - 32) // 480) + 1  # one packet a frame, and END
