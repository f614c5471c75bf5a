"""Many files per command (`-o DIR`, folders, `--jobs`), `--device`, and live pipes."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from conftest import TIER_NAME, nwc_env, speech_like, write_wav
from test_cli import assert_clean_failure, no_partial_files

T = ("--tier", TIER_NAME)


def _inputs(d: Path) -> list[Path]:
    d.mkdir()
    (d / "sub").mkdir()
    files = [write_wav(d / "a.wav", 0.6, seed=1), write_wav(d / "b.flac", 0.5, 22050, 2, seed=2),
             write_wav(d / "sub" / "c.wav", 0.7, seed=3)]
    (d / "sub" / "bad.wav").write_text("this is not audio\n" * 20)
    return files


def _error_lines(err: bytes) -> list[str]:
    return [ln for ln in err.decode().splitlines() if ln.startswith("nwc: error: ")]


def test_batch_encode_and_decode_with_a_failing_file(run_nwc, tmp_path) -> None:
    _inputs(tmp_path / "in")
    extra = write_wav(tmp_path / "extra.wav", 0.4, seed=4)
    r = run_nwc("encode", tmp_path / "in", extra, tmp_path / "missing.wav", "-o",
                tmp_path / "out", *T)
    assert r.returncode == 1, r.stderr
    errors = _error_lines(r.stderr)
    assert len(errors) == 2, r.stderr  # one line per failed file, at the end
    assert "bad.wav" in errors[0] and "not an audio file" in errors[0]
    assert "missing.wav" in errors[1] and "no such file" in errors[1]
    assert r.stderr.decode().strip().splitlines()[-2:] == errors
    assert "Traceback" not in r.stderr.decode()
    out = tmp_path / "out"
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == ["a.nwc", "b.nwc", "extra.nwc", "sub/c.nwc"]
    assert no_partial_files(out) and no_partial_files(out / "sub")

    r = run_nwc("decode", out, tmp_path / "junk.nwc", "-o", tmp_path / "dec", "-q")
    assert r.returncode == 1
    errors = _error_lines(r.stderr)
    assert len(errors) == 1 and "junk.nwc" in errors[0]
    (tmp_path / "junk.nwc").write_bytes(b"not a stream at all")
    r = run_nwc("decode", out, tmp_path / "junk.nwc", "-o", tmp_path / "dec", "-q", "-f")
    assert r.returncode == 1
    assert len(_error_lines(r.stderr)) == 1 and "bad magic" in r.stderr.decode()
    info = sf.info(str(tmp_path / "dec" / "b.wav"))
    assert (info.samplerate, info.channels) == (22050, 2)
    assert sf.info(str(tmp_path / "dec" / "sub" / "c.wav")).frames == 11200
    assert no_partial_files(tmp_path / "dec")


def test_batch_jobs_give_the_same_files(run_nwc, weights_dir, tmp_path) -> None:
    files = _inputs(tmp_path / "in")
    (tmp_path / "in" / "sub" / "bad.wav").unlink()
    r1 = run_nwc("encode", *files, "-o", tmp_path / "o1", *T, "-q")
    # Short files would get one worker; NWC_AUDIO_PER_WORKER=0 keeps the two asked for.
    env = {**nwc_env(weights_dir), "NWC_AUDIO_PER_WORKER": "0"}
    r2 = subprocess.run([sys.executable, "-m", "nwc", "encode", tmp_path / "in", "-o",
                         tmp_path / "o2", *T, "-q", "--jobs", "2"], capture_output=True, env=env)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    assert r1.stderr == b"" and r2.stderr == b""
    for name in ("a.nwc", "b.nwc"):
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    assert (tmp_path / "o1" / "c.nwc").read_bytes() == (tmp_path / "o2/sub/c.nwc").read_bytes()
    r = run_nwc("decode", tmp_path / "o2", "-o", tmp_path / "d", "-j", "2", "--format", "raw",
                "--bits", "float")
    assert r.returncode == 0, r.stderr
    assert "decoded 3 of 3 file(s)" in r.stderr.decode()
    assert (tmp_path / "d" / "sub" / "c.raw").stat().st_size == 11200 * 4
    # Existing outputs are kept unless -f, reported per file.
    r = run_nwc("encode", *files, "-o", tmp_path / "o1", *T, "-q")
    assert r.returncode == 1 and len(_error_lines(r.stderr)) == 3
    assert "exists" in r.stderr.decode()


def test_batch_usage_errors(run_nwc, tmp_path) -> None:
    a = write_wav(tmp_path / "a.wav", 0.2)
    b = write_wav(tmp_path / "b.wav", 0.2)
    for args in [("encode", a, b, tmp_path / "c.nwc"),   # several inputs need -o
                 ("encode", "-", a, "-o", tmp_path / "o"),  # stdin cannot join a batch
                 ("encode", a, "-o", tmp_path / "o", "--jobs", "-1")]:
        assert_clean_failure(run_nwc(*args, *T), 2, one_line=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]


def test_device_cpu_is_identical(run_nwc, tmp_path) -> None:
    if torch.cuda.is_available():
        return  # auto would pick the GPU
    src = write_wav(tmp_path / "a.wav", 1.1, seed=7)
    outs = []
    for i, extra in enumerate([(), ("--device", "cpu")]):  # the default is auto: CPU here
        r = run_nwc("encode", src, tmp_path / f"{i}.nwc", *T, *extra)
        assert r.returncode == 0, r.stderr
        r = run_nwc("decode", tmp_path / f"{i}.nwc", tmp_path / f"{i}.wav", *extra)
        assert r.returncode == 0, r.stderr
        outs.append(((tmp_path / f"{i}.nwc").read_bytes(), (tmp_path / f"{i}.wav").read_bytes()))
    assert all(o == outs[0] for o in outs)


def test_device_cuda_unavailable_is_one_clean_line(run_nwc, tmp_path) -> None:
    if torch.cuda.is_available():
        return
    src = write_wav(tmp_path / "a.wav", 0.3)
    for args in [("encode", src, tmp_path / "a.nwc", *T), ("encode", src, "-o", tmp_path / "o",
                                                             *T)]:
        err = assert_clean_failure(run_nwc(*args, "--device", "cuda"))
        assert "CUDA is not available" in err and "--device cpu" in err
    err = assert_clean_failure(run_nwc("encode", src, tmp_path / "a.nwc", *T, "--device", "npu"))
    assert "device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_live_pipe_emits_packets_before_input_ends(weights_dir, tmp_path) -> None:
    """A live source (input still open) gets its packets at once: no input block to fill,
    no stdout buffer to fill. The bytes equal those of the whole file."""
    x = speech_like(1.2, seed=9)
    src = write_wav(tmp_path / "a.wav", data=x)
    ref = tmp_path / "ref.nwc"
    env = nwc_env(weights_dir)
    subprocess.run([sys.executable, "-m", "nwc", "encode", str(src), str(ref), *T, "-q"],
                   env=env, check=True, timeout=120)
    data = src.read_bytes()
    p = subprocess.Popen([sys.executable, "-m", "nwc", "encode", "-", "-", *T, "-q"], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        head = 44 + 2 * 9000  # WAV header + 0.56 s: one whole packet (7712 samples)
        p.stdin.write(data[:head])
        p.stdin.flush()
        got = b""
        deadline = time.monotonic() + 60
        while b"\xa5NWP" not in got and time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 1.0)
            if ready:
                got += os.read(p.stdout.fileno(), 1 << 16)
        assert b"\xa5NWP" in got, "no packet while the input was still open"
        p.stdin.write(data[head:])
        p.stdin.close()
        got += p.stdout.read()
        assert p.wait(60) == 0
    finally:
        p.kill()
    want = ref.read_bytes()
    # Same packets; the header differs only in its length field (unknown on a pipe).
    assert got[got.index(b"\xa5NWP"):] == want[want.index(b"\xa5NWP"):]
    assert np.isfinite(x).all()
