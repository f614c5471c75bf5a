"""Hostile and unlucky streams (issue 20): every case is bounded and ends in one line.

Streams here are written by a second, independent writer (``_header``/``_packet``: struct and
crc32c straight from formats/SPEC.md, not nwc's container code) around payloads the codec
coded, so the decoder is checked against the SPEC, not against its own writer.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import crc32c
import numpy as np
import pytest
from conftest import nwc_env, speech_like
from nwc.codec import api, limits
from nwc.codec.api import CodecError, StreamDecoder, StreamEncoder, decode_packets
from nwc.formats.container import AUDIO, END, ContainerReader, Packet

SECONDS = 2.0
RATE = 16000
MEM_CAP = 3 << 30  # address space of a decode under test: a regression fails, not the machine


# ----------------------------------------------------------------- an independent writer


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def _header(h: api.StreamHeader, **over: int) -> bytes:
    """SPEC section 3 from the fields of ``h`` (``over`` replaces some)."""
    f = {k: getattr(h, k) for k in ("sample_rate", "original_rate", "total_samples",
                                     "codec_delay", "frame_size", "hop_size", "packet_frames",
                                     "channels", "num_layers", "gain_bits")}
    f.update(over)
    total = 0xFFFF_FFFF_FFFF_FFFF if f["total_samples"] is None else f["total_samples"]
    body = struct.pack("<IIQIIIIBBB", f["sample_rate"], f["original_rate"], total,
                       f["codec_delay"], f["frame_size"], f["hop_size"], f["packet_frames"],
                       f["channels"], f["num_layers"], f["gain_bits"])
    body += _str(h.tier) + _str(h.model_id) + _str(h.weights_hash) + _str(h.coder)
    body += struct.pack("<H", 0)
    pre = b"\x89NWC" + bytes([1, 0]) + struct.pack("<I", len(body))
    return pre + body + struct.pack("<I", crc32c.crc32c(pre[4:] + body))


def _packet(kind: int, seq: int, granule: int, side: bytes = b"",
            layers: list[bytes] | tuple = (), original: int | None = None) -> bytes:
    """SPEC section 4: sync, length, body, CRC-32C of length and body."""
    body = struct.pack("<BBIQ", kind, 0 if original is None else 1, seq, granule)
    body += struct.pack("<HB", len(side), len(layers))
    body += b"".join(struct.pack("<I", len(x)) for x in layers)
    body += b"" if original is None else struct.pack("<Q", original)
    body += side + b"".join(layers)
    length = struct.pack("<I", len(body))
    return b"\xa5NWP" + length + body + struct.pack("<I", crc32c.crc32c(length + body))


def _audio(p: Packet, **over: int) -> bytes:
    return _packet(AUDIO, over.get("seq", p.seq), over.get("granule", p.granule), p.side,
                   p.layers)


@pytest.fixture(scope="module")
def coded(tiny_tier) -> tuple[api.StreamHeader, list[Packet], int]:
    """Header, AUDIO packets and length of 2 s of speech-like audio."""
    x = speech_like(SECONDS, RATE, 1, seed=20)
    enc = StreamEncoder(tiny_tier, RATE, 1)
    packets = enc.push(x) + enc.finish()
    return api.header_for(tiny_tier, RATE, 1, x.shape[0]), packets, x.shape[0]


def _stream(coded, end: tuple[int, int, int] | None = "auto", header: dict | None = None,
            audio: list[bytes] | None = None) -> bytes:
    h, packets, n = coded
    body = audio if audio is not None else [_audio(p) for p in packets]
    if end == "auto":
        end = (len(packets), n, n)
    tail = [] if end is None else [_packet(END, end[0], end[1], original=end[2])]
    return _header(h, **(header or {})) + b"".join(body + tail)


def _decode_bytes(tier, data: bytes, **kw) -> tuple[np.ndarray, api.DecodeStats]:
    reader = ContainerReader(io.BytesIO(data))
    dec = StreamDecoder(tier, reader.header, **kw)
    blocks = [b for item in reader for b in dec.feed(item)] + list(dec.drain())
    assert all(b.shape[0] <= 4 * limits.BLOCK for b in blocks)  # bounded pieces
    y = np.concatenate(blocks)
    return y[: y.shape[0] - dec.stats.cut], dec.stats


# ----------------------------------------------------------------- capped CLI runs


_WRAP = """
import resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(r.returncode)
"""


def _capped(weights: Path, *args: str | Path, cwd: Path) -> tuple[int, str, int]:
    """``nwc ARGS`` under the memory cap: (exit code, stderr without the rss line, KiB)."""
    r = subprocess.run([sys.executable, "-c", _WRAP.format(cap=MEM_CAP), sys.executable,
                        "-m", "nwc", *map(str, args)], capture_output=True, env=nwc_env(weights),
                       cwd=cwd, timeout=300)
    lines = r.stderr.decode().strip().splitlines()
    return r.returncode, "\n".join(lines[:-1]), int(lines[-1])


def _one_line_errors(err: str) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert all(line.startswith("nwc: ") for line in err.splitlines()), err


@pytest.fixture(scope="module")
def normal_rss(weights_dir: Path, coded, tmp_path_factory) -> int:
    d = tmp_path_factory.mktemp("normal")
    (d / "a.nwc").write_bytes(_stream(coded))
    rc, err, rss = _capped(weights_dir, "decode", "a.nwc", "a.wav", cwd=d)
    assert rc == 0, err
    return rss


HOSTILE = {
    # an AUDIO packet with seq 2**16 (was a 1.0 GB WAV and 6.07 GB of memory)
    "seq-2^16": lambda c: _stream(c, audio=[_audio(c[1][0]), _audio(
        c[1][1], seq=1 << 16, granule=((1 << 16) + 1) * c[0].packet_frames * c[0].hop_size)]),
    "seq-2^31": lambda c: _stream(c, audio=[_audio(c[1][0]), _audio(
        c[1][1], seq=1 << 31, granule=((1 << 31) + 1) * c[0].packet_frames * c[0].hop_size)]),
    # header only, total_samples 10**8 (was 200 MB) and 2**63
    "header-total-1e8": lambda c: _stream(c, end=None, audio=[],
                                          header={"total_samples": 10**8}),
    "header-total-2^63": lambda c: _stream(c, end=None, audio=[],
                                           header={"total_samples": 1 << 63}),
    # a forged END whose own seq vouches for its length (was 126 MB)
    "end-seq-2^13": lambda c: _stream(c, end=(1 << 13, (1 << 13) * 7680, (1 << 13) * 7680)),
    "end-seq-2^31": lambda c: _stream(c, end=((1 << 31) - 1, ((1 << 31) - 1) * 7680,
                                              ((1 << 31) - 1) * 7680)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_lengths_are_bounded(case: str, weights_dir: Path, coded, normal_rss: int,
                                     tmp_path: Path) -> None:
    (tmp_path / "h.nwc").write_bytes(HOSTILE[case](coded))
    rc, err, rss = _capped(weights_dir, "decode", "h.nwc", "h.wav", cwd=tmp_path)
    assert rc == 1, err
    _one_line_errors(err)
    assert "gap limit" in err
    assert rss <= 2 * normal_rss, (rss, normal_rss)
    # Output: at most the audio the packets carry plus the limit (16-bit mono WAV).
    justified = SECONDS * RATE + limits.MAX_GAP_SECONDS * RATE + RATE
    assert (tmp_path / "h.wav").stat().st_size <= 44 + 2 * justified
    r = subprocess.run([sys.executable, "-m", "nwc", "info", "--json", "h.nwc"],
                       capture_output=True, env=nwc_env(weights_dir), cwd=tmp_path, timeout=120)
    _one_line_errors(r.stderr.decode())
    d = json.loads(r.stdout)
    assert d["duration_s"] is None or d["duration_s"] <= SECONDS + limits.MAX_GAP_SECONDS * 2


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_lengths_in_process(case: str, tiny_tier, coded) -> None:
    y, st = _decode_bytes(tiny_tier, HOSTILE[case](coded))
    assert st.refused >= 1 and st.damaged >= 1
    assert y.shape[0] <= SECONDS * RATE + limits.max_gap(RATE) + RATE
    assert np.isfinite(y).all()


@pytest.mark.parametrize("rate", [1, 999, 768_001, 10**9])
def test_header_rates_outside_limits_are_refused(rate: int, tiny_tier, coded, run_nwc,
                                                 tmp_path: Path) -> None:
    data = _stream(coded, header={"original_rate": rate})
    with pytest.raises(CodecError, match="outside"):
        _decode_bytes(tiny_tier, data)
    (tmp_path / "r.nwc").write_bytes(data)
    for args in (("decode", "r.nwc", "r.wav"), ("info", "r.nwc")):
        r = run_nwc(*args, cwd=tmp_path)
        assert r.returncode == 1
        err = r.stderr.decode()
        _one_line_errors(err)
        assert len(err.splitlines()) == 1 and "outside" in err
    assert not (tmp_path / "r.wav").exists()


def test_info_does_not_print_absurd_durations(run_nwc, coded, tmp_path: Path) -> None:
    # Was: 288,230,376,151,711 s and exit 0.
    (tmp_path / "e.nwc").write_bytes(_stream(coded, end=(4, 1 << 62, (1 << 62))))
    r = run_nwc("info", "e.nwc", cwd=tmp_path)
    assert r.returncode == 1 and b"length refused" in r.stderr
    assert b"duration:    2.000 s" in r.stdout


def test_long_gap_is_filled_only_when_allowed(tiny_tier, coded) -> None:
    h, packets, n = coded
    hop = h.packet_frames * h.hop_size
    jump = (limits.MAX_GAP_SECONDS * RATE) // hop + 8  # a gap just over the limit
    audio = [_audio(packets[0])] + [_audio(p, seq=p.seq + jump, granule=p.granule + jump * hop)
                                    for p in packets[1:]]
    data = _stream(coded, audio=audio, end=None, header={"total_samples": None})
    y, st = _decode_bytes(tiny_tier, data)
    assert st.refused == len(packets) - 1 and st.packets == 1
    y, st = _decode_bytes(tiny_tier, data, allow_long_gaps=True)
    assert st.refused == 0 and st.packets == len(packets)
    assert y.shape[0] == n + jump * hop


# ----------------------------------------------------------------- SPEC: END and codec_delay


def test_end_shorter_than_audio_cuts(tiny_tier, coded, run_nwc, tmp_path: Path) -> None:
    h, packets, n = coded
    short = n - 5000
    data = _stream(coded, end=(len(packets), short, short))
    y, st = _decode_bytes(tiny_tier, data)
    full, _ = _decode_bytes(tiny_tier, _stream(coded))
    assert y.shape == (short, 1) and st.cut == n - short and st.notes
    np.testing.assert_array_equal(y, full[:short])
    (tmp_path / "s.nwc").write_bytes(data)
    for fmt_ in ("wav", "flac", "raw"):
        r = run_nwc("decode", "s.nwc", f"s.{fmt_}", "--format", fmt_, cwd=tmp_path)
        assert r.returncode == 0 and b"cut" in r.stderr, r.stderr
        _one_line_errors(r.stderr.decode())
        size = (tmp_path / f"s.{fmt_}").stat().st_size
        if fmt_ == "raw":
            assert size == 2 * short
        else:
            import soundfile as sf

            assert sf.info(str(tmp_path / f"s.{fmt_}")).frames == short
    d = json.loads(run_nwc("info", "--json", "s.nwc", cwd=tmp_path).stdout)
    assert d["total_samples"] == short
    r = run_nwc("decode", "s.nwc", "-", "--format", "raw", cwd=tmp_path)  # a pipe: can't cut
    assert r.returncode == 1 and len(r.stdout) == 2 * n and b"pipe" in r.stderr


def test_codec_delay_is_dropped_at_the_start(tiny_tier, coded) -> None:
    h, packets, n = coded
    delay = 123
    plain, _ = _decode_bytes(tiny_tier, _stream(coded, header={"total_samples": None}))
    # The writer says: drop 123 samples; the exact length after dropping is n - 123.
    data = _stream(coded, end=(len(packets), n - delay, n - delay),
                   header={"codec_delay": delay, "total_samples": n - delay})
    y, st = _decode_bytes(tiny_tier, data)
    assert y.shape == (n - delay, 1) and st.damaged == 0 and st.lost_samples == 0
    np.testing.assert_array_equal(y, plain[delay:])
    with pytest.raises(CodecError, match="codec_delay"):
        _decode_bytes(tiny_tier, _stream(coded, header={"codec_delay": 2 * RATE}))


# ----------------------------------------------------------------- integrity: nwc test, --strict


def test_nwc_test_and_strict(run_nwc, coded, tmp_path: Path) -> None:
    clean = _stream(coded)
    (tmp_path / "ok.nwc").write_bytes(clean)
    h_len = len(_header(coded[0]))
    cut = h_len + len(_audio(coded[1][0]))
    (tmp_path / "junk.nwc").write_bytes(clean[:cut] + b"garbage!" + clean[cut:])
    (tmp_path / "lost.nwc").write_bytes(clean[:cut] + clean[cut + len(_audio(coded[1][1])):])
    (tmp_path / "noend.nwc").write_bytes(_stream(coded, end=None))
    r = run_nwc("test", "ok.nwc", cwd=tmp_path)
    assert r.returncode == 0 and b"ok.nwc: ok" in r.stderr and not r.stdout
    for bad in ("junk.nwc", "lost.nwc", "noend.nwc"):
        r = run_nwc("test", "ok.nwc", bad, cwd=tmp_path)
        assert r.returncode == 1 and f"{bad}: FAILED".encode() in r.stderr, r.stderr
        _one_line_errors(r.stderr.decode().replace("ok.nwc: ok", "nwc: ok")
                         .replace(f"{bad}: FAILED", "nwc: FAILED"))
    # Inserted garbage costs no audio: decode passes, --strict does not.
    assert run_nwc("decode", "junk.nwc", "a.wav", cwd=tmp_path).returncode == 0
    r = run_nwc("decode", "--strict", "junk.nwc", "b.wav", cwd=tmp_path)
    assert r.returncode == 1 and b"damaged stream" in r.stderr


# ----------------------------------------------------------------- concealment


def _snr(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - y) ** 2), 1e-20)))


@pytest.mark.parametrize("tier_name", ["tiny", "tiny-lpc"])
def test_concealment_continues_the_signal(tier_name: str, tiny_tier, lpc_tier) -> None:
    tier = tiny_tier if tier_name == "tiny" else lpc_tier
    x = speech_like(3.0, RATE, 1, seed=21)
    enc = StreamEncoder(tier, RATE, 1)
    packets = enc.push(x) + enc.finish()
    h = api.header_for(tier, RATE, 1, x.shape[0])
    clean = decode_packets(tier, h, packets)
    lossy = [p for i, p in enumerate(packets) if i != 2]
    auto = decode_packets(tier, h, lossy)
    silence = decode_packets(tier, h, lossy, conceal="silence")
    f = tier.framing
    hop = f.packet_hop
    gap = slice(2 * hop, 2 * hop + int(0.02 * RATE))  # the first 20 ms of the loss
    assert auto.shape == silence.shape == clean.shape
    assert np.sqrt(np.mean(auto[gap] ** 2)) > 0.3 * np.sqrt(np.mean(clean[gap] ** 2))
    whole = slice(2 * hop, 3 * hop + f.overlap)
    assert _snr(clean[whole], auto[whole]) > _snr(clean[whole], silence[whole])
    # Outside the loss (and the next packet's fade-in) nothing changes.
    np.testing.assert_array_equal(auto[: 2 * hop], clean[: 2 * hop])
    after = 3 * hop + f.overlap + (2000 if tier.lpc else 0)  # LPC memory: < one packet
    np.testing.assert_allclose(auto[after:], silence[after:], atol=1e-4)
    np.testing.assert_allclose(auto[after:], clean[after:], atol=1e-3)


def test_concealment_grows_back_into_the_next_packet() -> None:
    """A gap's end looks ahead: on a steady voiced tone, the last 20 ms of a lost 480 ms
    packet follow the clean decode (the next packet's period extended backwards)."""
    from nwc.codec import engine
    tier = engine.load_numpy("speech-16k")
    t = np.arange(3 * RATE) / RATE
    x = (0.2 * sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8)))
    x = x.astype(np.float32)[:, None]
    packets = api.encode_array(tier, x, RATE)
    h = api.header_for(tier, RATE, 1, x.shape[0])
    clean = decode_packets(tier, h, packets)
    lossy = [p for i, p in enumerate(packets) if i != 2]
    hop = tier.framing.packet_hop
    end = slice(3 * hop - int(0.02 * RATE), 3 * hop)
    assert _snr(clean[end], decode_packets(tier, h, lossy)[end]) > 15
    assert _snr(clean[end], decode_packets(tier, h, lossy, conceal="silence")[end]) < 1


# ----------------------------------------------------------------- signals and outputs


def _foreground() -> None:
    """As a command typed at a terminal: SIGINT not ignored (a shell's background job, such
    as a CI runner started with &, passes SIGINT on ignored, and Python keeps it so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _live_decode(weights: Path, cwd: Path, coded, out: str = "o.wav") -> subprocess.Popen:
    """``nwc decode - OUT`` fed the start of a stream; returns once OUT's .part exists."""
    p = subprocess.Popen([sys.executable, "-m", "nwc", "decode", "-", out], cwd=cwd,
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=nwc_env(weights),
                         preexec_fn=_foreground)
    h, packets, _ = coded
    p.stdin.write(_header(h) + b"".join(_audio(q) for q in packets[:2]))
    p.stdin.flush()
    deadline = time.time() + 120
    while not list(cwd.glob(f".{out}.*.part")):
        assert p.poll() is None and time.time() < deadline, p.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)  # the first blocks are written
    return p


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                      (signal.SIGINT, 130)])
def test_signals_clean_up(sig: int, code: int, weights_dir: Path, coded, tmp_path: Path
                          ) -> None:
    p = _live_decode(weights_dir, tmp_path, coded)
    p.send_signal(sig)
    p.wait(timeout=60)  # stdin stays open: closing it first races the signal (an EOF is a cut)
    err = p.stderr.read()
    assert p.stdin is not None
    p.stdin.close()
    assert p.returncode == code, err
    _one_line_errors(err.decode())
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())  # no .part, no output


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_batch_signal_stops_the_workers(sig: int, code: int, tmp_path: Path) -> None:
    """``--jobs``: SIGTERM to nwc, or Ctrl-C to the whole process group, stops the batch at
    once: the files not started are dropped, the workers remove their temporary outputs."""
    import soundfile as sf

    x = np.tile(speech_like(20.0, RATE, 1, seed=3), (15, 1))   # 300 s: seconds per file
    for i in range(3):
        sf.write(tmp_path / f"in{i}.wav", x, RATE)
    out = tmp_path / "out"
    env = dict(os.environ, NWC_AUDIO_PER_WORKER="0", PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "nwc", "encode", "-t", "speech-low", "in0.wav",
                          "in1.wav", "in2.wav", "-o", "out", "--jobs", "2"], cwd=tmp_path,
                         stderr=subprocess.PIPE, env=env, start_new_session=True,
                         preexec_fn=_foreground)
    deadline = time.time() + 120
    while not list(out.glob(".*.part")):
        assert p.poll() is None and time.time() < deadline, p.stderr.read()
        time.sleep(0.05)
    time.sleep(1.0)  # the workers are coding (as in _live_decode)
    if sig == signal.SIGINT:
        os.killpg(p.pid, sig)   # a terminal's Ctrl-C reaches every process of the group
    else:
        p.send_signal(sig)
    t0 = time.time()
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert time.time() - t0 < 10   # not after the workers finished their files
    _one_line_errors(err.decode())
    assert not list(out.glob(".*.part")), list(out.iterdir())


def test_output_that_appears_during_the_run_is_kept(weights_dir: Path, coded,
                                                    tmp_path: Path) -> None:
    p = _live_decode(weights_dir, tmp_path, coded)
    (tmp_path / "o.wav").write_bytes(b"precious")
    h, packets, n = coded
    _, err = p.communicate(b"".join(_audio(q) for q in packets[2:])
                           + _packet(END, len(packets), n, original=n), timeout=60)
    assert p.returncode == 1 and b"appeared" in err, err
    _one_line_errors(err.decode())
    assert (tmp_path / "o.wav").read_bytes() == b"precious"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["o.wav"]


def test_closed_std_streams_are_one_line_errors(run_shell, coded, tmp_path: Path) -> None:
    (tmp_path / "a.nwc").write_bytes(_stream(coded))
    for script in ("nwc decode - o.wav <&-", "nwc decode a.nwc - >&-", "nwc info - <&-",
                   "nwc encode - o.nwc <&-"):
        r = run_shell(script, cwd=tmp_path)
        err = r.stderr.decode()
        assert r.returncode == 1 and "closed" in err, (script, err)
        _one_line_errors(err)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.nwc"]
