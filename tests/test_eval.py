"""`nwc eval`, `nwc encode --verify`, the metrics behind them, and the bench's anchor wrappers."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import TIER_NAME, speech_like, write_wav
from nwc.cli.main import cli
from nwc.evaluation import metrics

RATE = 16000
have_metrics = not metrics.missing_packages()
needs_metrics = pytest.mark.skipif(not have_metrics, reason='needs pip install "nwc[eval]"')


def band_limited(seconds: float, delay: float = 0.0, seed: int = 1) -> np.ndarray:
    """Sum of random partials (80 Hz-7 kHz) under a slow AM, sampled ``delay`` samples late.

    Evaluated in closed form at t - delay, so a fractional delay is exact, not interpolated.
    """
    rng = np.random.default_rng(seed)
    f = rng.uniform(80, 7000, 60)
    ph = rng.uniform(0, 2 * np.pi, 60)
    amp = 1 / np.sqrt(f / 80)
    t = (np.arange(int(seconds * RATE)) - delay) / RATE
    x = (amp[:, None] * np.sin(2 * np.pi * f[:, None] * t + ph[:, None])).sum(0)
    return 0.1 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 3.3 * t))


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """x plus white noise orthogonal to x at exactly ``snr_db`` (so SI-SNR is exactly it)."""
    n = np.random.default_rng(seed).standard_normal(len(x))
    xc = x - x.mean()
    n -= n.mean()
    n -= np.dot(n, xc) / np.dot(xc, xc) * xc
    n *= math.sqrt(np.dot(xc, xc) / np.dot(n, n) / 10 ** (snr_db / 10))
    return x + n


# --------------------------------------------------------------------------------------
# Alignment and SI-SNR (numpy only)


def test_xcorr_convention_matches_direct_sum() -> None:
    rng = np.random.default_rng(3)
    ref, deg = rng.standard_normal(50), rng.standard_normal(70)
    got = metrics.xcorr(ref, deg, 10)
    norm = math.sqrt(np.dot(ref, ref) * np.dot(deg, deg))
    for k in range(-10, 11):  # c[k] = sum_n deg[n + k] ref[n]
        want = sum(deg[n + k] * ref[n] for n in range(50) if 0 <= n + k < 70) / norm
        assert got[k + 10] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("delay", [0.0, 37.3, -12.6, 94.5, 0.25, 1500.8])
def test_alignment_recovers_fractional_delay(delay: float) -> None:
    ref = band_limited(2.0)
    deg = band_limited(2.0, delay)
    al = metrics.align(ref, deg, RATE)
    assert al.method == "waveform"
    assert al.delay == pytest.approx(delay, abs=0.01)  # brief: within 0.1 sample
    # Common span only, and the aligned copy matches the reference closely.
    assert len(al.ref) == len(al.deg) >= len(ref) - math.ceil(abs(delay)) - 1
    assert metrics.si_snr(al.ref, al.deg) > 50


def test_shift_integer_is_exact_and_fractional_round_trips() -> None:
    x = np.arange(10, dtype=float)
    assert list(metrics.shift(x, 3)) == [3, 4, 5, 6, 7, 8, 9, 0, 0, 0]
    assert list(metrics.shift(x, -2, 5)) == [0, 0, 0, 1, 2]
    y = band_limited(0.5)
    back = metrics.shift(metrics.shift(y, 0.4), -0.4)
    assert np.abs(back - y)[200:-200].max() < 1e-3 * np.abs(y).max()


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_si_snr_of_known_noise(snr: float) -> None:
    ref = speech_like(2.0, seed=5)[:, 0].astype(np.float64)
    rep, al = metrics.evaluate(ref, with_noise(ref, snr), RATE, metrics=())
    assert abs(rep["delay_samples"]) < 0.05
    assert rep["si_snr_db"] == pytest.approx(snr, abs=0.1)


def test_envelope_fallback_for_incoherent_output() -> None:
    # Same envelope, unrelated fine structure (as Codec2 makes): waveform peak < 0.3.
    rng = np.random.default_rng(0)
    t = np.arange(2 * RATE) / RATE
    env = np.maximum(0, np.sin(2 * np.pi * 2.5 * t)) ** 2
    ref = env * rng.standard_normal(len(t))
    deg = np.roll(env, 200) * rng.standard_normal(len(t))
    al = metrics.align(ref, deg, RATE)
    assert al.method == "envelope" and al.peak < metrics.WAVEFORM_PEAK_MIN
    assert al.delay == pytest.approx(200, abs=8)


# --------------------------------------------------------------------------------------
# Metrics (the eval extra)


@needs_metrics
def test_signal_against_itself_hits_the_ceilings() -> None:
    x = speech_like(2.0, seed=7)[:, 0].astype(np.float64)
    rep, _ = metrics.evaluate(x, x, RATE)
    assert rep["skipped"] == {}
    assert rep["delay_samples"] == pytest.approx(0, abs=1e-6)
    assert rep["pesq_wb"] == pytest.approx(4.64, abs=0.01)
    assert rep["stoi"] == pytest.approx(1.0, abs=1e-3)
    assert rep["si_snr_db"] > 100
    assert rep["visqol"] > 4.0  # the lattice mapper tops out near 4.2-4.3
    assert rep["visqol_mode"] == "speech" and rep["visqol_rate"] == 16000
    assert rep["visqol_mapper"] in ("deep-lattice", "polynomial")


@needs_metrics
def test_delayed_copy_scores_like_the_original() -> None:
    ref = band_limited(2.0)
    rep, _ = metrics.evaluate(ref, band_limited(2.0, 20.7), RATE, metrics=("pesq_wb", "stoi"))
    assert rep["delay_samples"] == pytest.approx(20.7, abs=0.1)
    assert rep["pesq_wb"] > 4.5 and rep["stoi"] > 0.99


# --------------------------------------------------------------------------------------
# The command line


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A 1.5 s reference and a copy 40 samples late with noise at 20 dB, as 16-bit WAVs."""
    ref = speech_like(1.5, seed=11)[:, 0].astype(np.float64)
    deg = with_noise(np.concatenate([np.zeros(40), ref]), 20.0)
    return (write_wav(tmp_path / "ref.wav", data=ref),
            write_wav(tmp_path / "deg.wav", data=np.clip(deg, -1, 1)))


@needs_metrics
def test_eval_text_report(run_nwc, pair) -> None:
    r = run_nwc("eval", *pair)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "delay +40.00 samples" in out
    for label in ("PESQ-WB", "STOI", "ViSQOL", "SI-SNR"):
        assert f"\n{label} " in out
    assert "speech mode, 16 kHz" in out and r.stderr == b""
    si_snr = float(out.split("\nSI-SNR")[1].split()[0])
    assert si_snr == pytest.approx(20.0, abs=0.3)  # 16-bit WAVs add a little noise


@needs_metrics
def test_eval_json_and_plot(run_nwc, pair, tmp_path) -> None:
    plot = [] if metrics_missing("matplotlib") else ["--plot", tmp_path / "p.png"]
    r = run_nwc("eval", "--json", *pair, *plot)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["delay_samples"] == pytest.approx(40, abs=0.1) and d["alignment"] == "waveform"
    assert d["si_snr_db"] == pytest.approx(20.0, abs=0.3)
    assert 3.0 < d["pesq_wb"] <= 4.64 and 0.7 < d["stoi"] <= 1 and 1 <= d["visqol"] <= 5
    assert d["visqol_mode"] == "speech" and d["bitrate_kbps"] is None and d["skipped"] == {}
    assert d["reference"] == {"path": str(pair[0]), "rate": RATE, "channels": 1,
                              "duration_s": 1.5}
    if plot:
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        r = run_nwc("eval", *pair, *plot)  # an existing plot is kept without -f
        assert r.returncode == 1 and b"exists; use -f/--force" in r.stderr


@needs_metrics
def test_eval_of_an_nwc_stream(tiny_tier, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 1.2, 16000, 2, seed=3)
    r = CliRunner().invoke(cli, ["encode", str(src), str(tmp_path / "a.nwc"), "--tier",
                                 TIER_NAME, "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["eval", "--json", str(src), str(tmp_path / "a.nwc")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    size = (tmp_path / "a.nwc").stat().st_size
    assert d["bitrate_kbps"] == pytest.approx(size * 8 / 1.2 / 1000)
    assert d["degraded"]["nwc"]["tier"] == TIER_NAME and d["degraded"]["channels"] == 2
    assert d["degraded"]["duration_s"] == pytest.approx(1.2) and d["mode"] == "speech"
    for k in ("pesq_wb", "stoi", "visqol", "si_snr_db", "delay_samples", "skipped"):
        assert k in d


def metrics_missing(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return True
    return False


def test_eval_without_the_extra_is_one_clean_line(pair, monkeypatch) -> None:
    for module in ("pesq", "pystoi", "visqol"):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    r = CliRunner().invoke(cli, ["eval", *map(str, pair)])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        'nwc: error: eval needs the metric packages pesq, pystoi, visqol-python: '
        'pip install "nwc[eval]"']


@pytest.mark.skipif(metrics_missing("pesq") or metrics_missing("pystoi"), reason="no pesq/pystoi")
def test_eval_reports_a_missing_metric_and_runs_the_rest(pair, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "visqol", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = CliRunner().invoke(cli, ["eval", *map(str, pair)])
    assert r.exit_code == 0, r.output
    assert "ViSQOL      -       skipped: visqol-python not installed" in r.stdout
    assert "PESQ-WB" in r.stdout and r.stderr == ""
    r = CliRunner().invoke(cli, ["eval", "--json", *map(str, pair)])
    d = json.loads(r.stdout)
    assert r.stderr.startswith("nwc: warning: ViSQOL skipped: visqol-python not installed")
    assert d["visqol"] is None and "visqol" in d["skipped"] and d["pesq_wb"] > 2
    r = CliRunner().invoke(cli, ["eval", *map(str, pair), "--plot", str(pair[0].parent / "p.png")])
    assert r.exit_code == 1 and "--plot needs matplotlib" in r.stderr


@needs_metrics
def test_eval_of_a_too_short_clip_reports_each_failure(tmp_path) -> None:
    src = write_wav(tmp_path / "s.wav", 0.1)
    r = CliRunner().invoke(cli, ["eval", "--json", str(src), str(src)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["pesq_wb"] is None and "1/4 of a second" in d["skipped"]["pesq_wb"]
    assert d["stoi"] is None and "too little" in d["skipped"]["stoi"]
    assert d["si_snr_db"] is None  # infinite: JSON has no inf


def test_eval_bad_input_is_one_clean_line(tmp_path, pair) -> None:
    (tmp_path / "t.wav").write_text("not audio")
    for args in ([str(pair[0]), str(tmp_path / "none.wav")], [str(tmp_path / "t.wav"),
                                                                str(pair[0])]):
        r = CliRunner().invoke(cli, ["eval", *args])
        assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("nwc: error: ")


def test_encode_verify(tiny_tier, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 1.0, 22050, 1, seed=9)
    out = tmp_path / "a.nwc"
    r = CliRunner().invoke(cli, ["encode", str(src), str(out), "--tier", TIER_NAME, "--verify"])
    assert r.exit_code == 0, r.output
    assert "nwc: encoded" in r.stderr and f"nwc: verify: decoded {out} again" in r.stderr
    assert "SI-SNR" in r.stderr and r.stdout == ""
    assert f"bitrate     {out.stat().st_size * 8 / 1.0 / 1000:.2f} kbps" in r.stderr
    r = CliRunner().invoke(cli, ["encode", str(src), "-", "--tier", TIER_NAME, "--verify"])
    assert r.exit_code == 2 and "--verify needs OUT to be a file" in r.stderr


# --------------------------------------------------------------------------------------
# bench/quality.py: parsing and the anchor wrappers (skipped where a tool is absent)


FFMPEG_ENCODERS_SAMPLE = """Encoders:
 V..... = Video
 A..... = Audio
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC (codec h264)
 A..... aac                  AAC (Advanced Audio Coding)
 A....D g722                 G.722 ADPCM (codec adpcm_g722)
 A....D libvorbis            libvorbis (codec vorbis)
"""


def test_parse_ffmpeg_encoders(quality) -> None:
    assert quality.parse_ffmpeg_encoders(FFMPEG_ENCODERS_SAMPLE) == {"libx264", "aac", "g722",
                                                                     "libvorbis"}
    assert quality.parse_ffmpeg_encoders("") == set()
    assert quality.lag_span([576.0, 576.02]) == "576.0"
    assert quality.lag_span([93.6, 94.5]) == "93.6..94.5"
    assert quality.lag_span([-0.01, 0.02]) == "0.0"


ANCHORS = {  # anchor -> (factory call, tools, least waveform correlation)
    "mp3": (lambda q: q.mp3_system(32), ("lame",), 0.8),
    "lc3": (lambda q: q.lc3_system(32), ("elc3", "dlc3"), 0.8),
    "aac": (lambda q: q.aac_system(32), ("ffmpeg",), 0.8),
    "g722": (lambda q: q.g722_system(), ("ffmpeg",), 0.95),
    "vorbis": (lambda q: q.vorbis_system(32), ("ffmpeg",), 0.5),
}


@pytest.mark.parametrize("anchor", list(ANCHORS))
def test_anchor_wrapper_codes_a_tiny_clip(quality, tmp_path, anchor: str) -> None:
    make, tools, min_peak = ANCHORS[anchor]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (bench/install.sh)")
    if anchor in quality.FFMPEG_ENCODERS and \
            quality.FFMPEG_ENCODERS[anchor] not in quality.ffmpeg_encoders():
        pytest.skip(f"ffmpeg has no {quality.FFMPEG_ENCODERS[anchor]} encoder")
    pcm = np.clip(np.round(speech_like(1.0, seed=2)[:, 0] * 32768), -32768, 32767)
    pcm = pcm.astype(np.int16)
    ref_wav = tmp_path / "ref.wav"
    sf.write(str(ref_wav), pcm, RATE, subtype="PCM_16")
    s = make(quality)
    nbytes, dec = s.run(ref_wav, pcm, tmp_path)
    assert nbytes > 0 and dec.ndim == 1 and len(dec) >= 0.9 * RATE
    ref = pcm / 32768.0
    al = metrics.align(ref, dec, RATE)
    assert al.method == "waveform" and al.peak > min_peak, (al.peak, al.delay)
    assert -1 < al.delay < 0.25 * RATE  # dlc3 removes LC3's own delay
    if anchor == "mp3":  # the delay `lame --decode` leaves at 16 kHz
        assert al.delay == pytest.approx(576, abs=1)
    kbps = nbytes * 8 / 1000
    assert 0.3 * s.nominal_kbps < kbps < 4 * s.nominal_kbps  # headers weigh on a 1 s clip


@needs_metrics
def test_quality_bench_end_to_end_on_one_clip(quality, tmp_path, capsys) -> None:
    if shutil.which("ffmpeg") is None or "g722" not in quality.ffmpeg_encoders():
        pytest.skip("ffmpeg with a g722 encoder not installed")
    data = tmp_path / "data"
    data.mkdir()
    write_wav(data / "a.wav", 1.5, RATE, 1, seed=4)
    rc = quality.main([str(data), "--tiers", "none", "--anchors", "g722", "--clips", "1",
                       "--no-visqol", "--out-csv", str(tmp_path / "r.csv")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| G.722 (FFmpeg) | 64k | 64.00 |" in out
    (row,) = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert float(row["real_kbps"]) == pytest.approx(64, abs=1)
    assert float(row["pesq_wb"]) > 3.5 and float(row["si_snr_db"]) > 15
    assert row["align"] == "clip" and abs(float(row["lag_samples"])) < 30
