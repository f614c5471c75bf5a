"""Band limits: 1.1 extension records, the encoder's measurement, the decoder's filter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
from conftest import reference_decode, speech_like
from hypothesis import given
from hypothesis import strategies as st
from nwc.codec import api, bandlimit
from nwc.formats import container as fmt
from nwc.formats import extension as ext

RATE = 16000


def _lowpassed_noise(n: int, edge: float, seed: int = 0) -> np.ndarray:
    """White noise with nothing above ``edge`` (a fraction of Nyquist): an FFT brick wall."""
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spec[int(edge * (n // 2)):] = 0
    return np.fft.irfft(spec, n) * 0.1


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=255)), max_size=6))
def test_records_round_trip(records: list[tuple[int, bytes]]) -> None:
    parsed = ext.parse_records(ext.pack_records(records))
    first: dict[int, bytes] = {}
    for kind, data in records:
        first.setdefault(kind, data)
    assert parsed == first


@given(st.binary(max_size=600), st.integers(1, 8))
def test_any_extension_bytes_parse_without_raising(data: bytes, channels: int) -> None:
    ext.parse_records(data)
    codes = ext.band_limits(data, channels)
    assert codes is None or len(codes) == channels


def test_band_limit_record_and_packet_round_trip() -> None:
    assert ext.pack_band_limits([0, 0]) == b""  # nothing limited: a 1.0 packet
    area = ext.pack_band_limits([0, 120])
    assert ext.band_limits(area, 2) == [0, 120]
    assert ext.band_limits(area, 1) is None  # the wrong size is treated as absent
    p = fmt.Packet(fmt.AUDIO, 0, 4800, b"\x01", [b"ab", b""], extension=area + b"\x09\x01z")
    h = fmt.StreamHeader(sample_rate=RATE, original_rate=RATE, total_samples=None,
                         codec_delay=0, frame_size=512, hop_size=480, packet_frames=10,
                         channels=2, num_layers=2, gain_bits=8, tier="t", model_id="m",
                         weights_hash="", coder="c", tags={})
    _, items = fmt.read_all(fmt.encode_header(h) + fmt.encode_packet(p))
    (q,) = [x for x in items if isinstance(x, fmt.Packet)]  # (and the missing END's report)
    assert q == p and ext.band_limits(q.extension, 2) == [0, 120]


def test_measure_finds_where_the_content_ends() -> None:
    n = 7712
    x = np.stack([_lowpassed_noise(n, 0.5), np.random.default_rng(1).standard_normal(n) * 0.1,
                  np.zeros(n)])
    lo, full, silent = bandlimit.measure(x, RATE)
    assert 128 <= lo <= 128 + 12 and full == 0 and silent == 0


def test_the_filter_passes_below_and_stops_above_its_edge() -> None:
    for code in (40, 128, 200):
        h = np.abs(np.fft.rfft(bandlimit.taps(code), 8192))
        f = np.linspace(0.0, 1.0, h.shape[0])
        edge = code / ext.BAND_STEPS
        assert np.allclose(h[f < edge - 0.005], 1.0, atol=0.01)
        assert 20 * np.log10(h[f > edge + bandlimit.TRANSITION + 0.01].max()) < -40


def test_a_limited_stream_decodes_to_the_filtered_overlap_add(tiny_tier) -> None:
    """A constant limit: the decoder's output is exactly the plain overlap-add through the
    causal FIR (the spill crosses frame and packet boundaries), to float rounding."""
    x = speech_like(1.4, RATE, seed=4)
    packets = api.encode_array(tiny_tier, x, RATE, band_limit=False)
    assert all(p.extension == b"" for p in packets)
    code = 100
    limited = [dataclasses.replace(p, extension=ext.pack_band_limits([code])) for p in packets]
    h = api.header_for(tiny_tier, RATE, 1, x.shape[0])
    y = api.decode_packets(tiny_tier, h, limited)
    ref = reference_decode(tiny_tier, packets, 1, x.shape[0])[:, 0]
    want = np.convolve(ref, bandlimit.taps(code))[: x.shape[0]]
    assert y.shape == x.shape
    assert np.max(np.abs(y[:, 0] - want)) < 1e-5 * max(1.0, float(np.abs(want).max()))
    # and without the records, the plain decode
    plain = api.decode_packets(tiny_tier, h, packets)
    assert np.max(np.abs(plain[:, 0] - ref)) < 1e-5


def test_band_limit_removes_what_the_coder_adds_above_the_input(tiny_tier) -> None:
    n = RATE * 2
    x = _lowpassed_noise(n, 0.4, seed=2).astype(np.float32)[:, None]
    h = api.header_for(tiny_tier, RATE, 1, n)
    out = {}
    for on in (False, True):
        packets = api.encode_array(tiny_tier, x, RATE, band_limit=on)
        assert any(p.extension for p in packets) == on
        y = api.decode_packets(tiny_tier, h, packets)[:, 0]
        spec = np.abs(np.fft.rfft(y)) ** 2
        f = np.linspace(0.0, 1.0, spec.shape[0])
        out[on] = spec[f > 0.5].sum()
    assert out[True] < 0.01 * out[False]


def test_lpc_tiers_write_no_band_limits(lpc_tier) -> None:
    x = _lowpassed_noise(RATE, 0.3).astype(np.float32)
    assert all(p.extension == b"" for p in api.encode_array(lpc_tier, x, RATE))


@pytest.mark.parametrize("flag", [[], ["--full-band"]])
def test_cli_band_limit_flag_and_truncate_keep_records(run_nwc, tmp_path, flag) -> None:
    src = tmp_path / "a.wav"
    sf.write(str(src), _lowpassed_noise(RATE, 0.4, seed=3), RATE, subtype="PCM_16")
    r = run_nwc("encode", src, tmp_path / "a.nwc", "-t", "tiny", *flag, "-q")
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "a.nwc").read_bytes()
    assert data[5] == fmt.FORMAT_MINOR == 1  # the preamble's minor version byte
    packets = [p for p in fmt.read_all(data)[1]
               if isinstance(p, fmt.Packet) and p.kind == fmt.AUDIO]
    assert packets and all(bool(p.extension) == (not flag) for p in packets)
    r = run_nwc("truncate", tmp_path / "a.nwc", tmp_path / "b.nwc", "-l", "1", "-q")
    assert r.returncode == 0, r.stderr
    cut = [p for p in fmt.read_all((tmp_path / "b.nwc").read_bytes())[1]
           if isinstance(p, fmt.Packet) and p.kind == fmt.AUDIO]
    assert [p.extension for p in cut] == [p.extension for p in packets]
    r = run_nwc("decode", tmp_path / "a.nwc", tmp_path / "a.out.wav", "-q")
    assert r.returncode == 0, r.stderr
    assert sf.info(str(tmp_path / "a.out.wav")).frames == RATE
