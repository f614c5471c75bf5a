"""The NumPy engine against the torch engine: same layer plans, same symbols (but for latents
within float rounding of a quantization boundary), audio within 1e-4, streams cross-decodable,
layered truncation byte-exact; and the CPU commands never import torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, build_tiny_cascade, nwc_env, speech_like
from nwc.codec import api, engine, npengine
from nwc.codec import tier as tiers
from nwc.codec.cascade import Cascade, CascadeConfig
from nwc.codec.entropy import CodeTables
from nwc.codec.framing import Framing
from nwc.codec.model import NWC, GatedBlock, NWCConfig, SeparableConv1d, SubPixel1d
from nwc.formats.container import ContainerReader, ContainerWriter

SHIPPED = sorted(p.stem for p in tiers.SHIPPED_DIR.glob("*.json"))
BOUNDARY = 1e-4   # latents this close to a rounding boundary may round either way


def _torch_layers(seq: torch.nn.Module, key: str) -> list:
    """The leaf layers of an nn.Sequential as ``npengine`` plan entries (what it must list)."""
    out: list = []
    for i, layer in enumerate(seq):
        k = f"{key}.{i}"
        if isinstance(layer, GatedBlock):
            out.append(npengine.Gated(k, layer.depthwise.kernel_size[0],
                                      layer.depthwise.dilation[0], layer.activate))
            assert layer.depthwise.padding[0] == layer.depthwise.dilation[0] * (
                layer.depthwise.kernel_size[0] - 1) // 2
        elif isinstance(layer, (torch.nn.Sequential, SeparableConv1d)):
            out += _torch_layers(layer, k)
        elif isinstance(layer, torch.nn.ConvTranspose1d):
            out.append(npengine.ConvT(k, layer.stride[0], layer.padding[0]))
        elif isinstance(layer, torch.nn.Conv1d):
            out.append(npengine.Conv(k, layer.stride[0], layer.padding[0], layer.dilation[0]))
        elif isinstance(layer, torch.nn.LeakyReLU):
            assert layer.negative_slope == pytest.approx(0.2)
            out.append(npengine.LReLU())
        elif isinstance(layer, SubPixel1d):
            out.append(npengine.SubPixel(layer.r))
        else:
            raise AssertionError(f"layer {type(layer).__name__} unknown to npengine")
    return out


CONFIGS = {
    "fast": NWCConfig(**TINY_CONFIG),
    "paper": NWCConfig(plan="paper", **TINY_CONFIG),
    "harp": NWCConfig(harp=2, **TINY_CONFIG),
    "softmax": NWCConfig(**{**TINY_CONFIG, "quantizer": "softmax", "levels": 8}),
    "shipped": NWCConfig(),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_layer_plans_list_the_torch_modules_layers(name: str) -> None:
    cfg = CONFIGS[name]
    m = NWC(cfg)
    assert npengine.encoder_plan(cfg) == _torch_layers(m.encoder, "encoder")
    assert npengine.decoder_plan(cfg) == _torch_layers(m.decoder, "decoder")
    if cfg.harp:
        (skip,) = _torch_layers(torch.nn.Sequential(m.skip_enc), "x")
        assert npengine.SKIP_ENC == dataclasses.replace(skip, key="skip_enc")
        assert npengine.SKIP_DEC == _torch_layers(m.skip_dec, "skip_dec")
        # The taps: after the first residual stack, after the sub-pixel shuffle.
        assert npengine.encoder_plan(cfg)[: npengine.ENC_TAP] == _torch_layers(
            m.encoder[: m.ENC_TAP], "encoder")
        assert npengine.decoder_plan(cfg)[: npengine.DEC_TAP] == _torch_layers(
            m.decoder[: m.DEC_TAP], "decoder")


def _near_boundary(lat: np.ndarray, quantizer) -> np.ndarray:
    """Where a latent lies within rounding of a symbol boundary (either engine may differ)."""
    if hasattr(quantizer, "half"):
        return np.abs(np.abs(lat - np.floor(lat)) - 0.5) < BOUNDARY
    c = quantizer._sorted() if hasattr(quantizer, "_sorted") else quantizer.centroids
    mids = (c[1:] + c[:-1]) / 2
    return (np.abs(np.tanh(lat)[..., None] - mids) < BOUNDARY).any(-1)


def _tier(name: str, cfg: NWCConfig, stages: int, tmp_path: Path, seed: int = 0,
          lpc: bool = False):
    """A random-initialised torch tier saved to ``tmp_path`` (codes spread over the levels)."""
    torch.manual_seed(seed)
    ccfg = CascadeConfig(nwc=cfg, stages=stages, lpc=lpc)
    model = Cascade(ccfg).eval()
    with torch.no_grad():
        for st in model.stages:
            st.encoder[-1].weight.mul_(16.0 if cfg.quantizer == "noise" else 2.0)
    n = model.stages[0].quantizer.n_symbols
    tables = [CodeTables(np.ones((model.symbol_channels, n), np.int64))] * stages
    lsf = CodeTables(np.ones((16, 127), np.int64)) if lpc else None
    t = tiers.build(name, 16000, Framing(), ccfg, tables, state=model.state_dict(),
                    lsf_tables=lsf)
    t.save(tmp_path / name)
    return tiers.load_path(tmp_path / f"{name}.json"), engine.load_path(tmp_path / f"{name}.json")


@pytest.mark.parametrize("name", ["fast", "paper", "harp", "softmax"])
def test_engines_agree_on_latents_symbols_and_audio(name: str, tmp_path: Path) -> None:
    tt, nt = _tier(name, CONFIGS[name], 2, tmp_path)
    assert nt.hash == tt.hash
    frames = speech_like(1.0, seed=3)[:, 0]
    frames = np.stack([frames[i * 480:i * 480 + 512] for i in range(24)]) * 3.0
    with torch.inference_mode():
        lat_t = tt.model.stages[0].encode(torch.from_numpy(frames)).numpy()
    lat_n = nt.model.stages[0].encode(frames)
    np.testing.assert_allclose(lat_n, lat_t, rtol=1e-5, atol=1e-4)
    sym_t = tt.model.encode_frames(frames, 2)
    sym_n = nt.model.encode_frames(frames, 2)
    differ = sym_t[0] != sym_n[0]
    assert not (differ & ~_near_boundary(lat_t, tt.model.stages[0].quantizer)).any()
    assert len(np.unique(sym_n[0])) > 2  # the test codes more than one or two levels
    # Decoding the same symbols: audio within 1e-4 (the bound; measured ~1e-6).
    np.testing.assert_allclose(nt.model.decode_frames(sym_n), tt.model.decode_frames(sym_n),
                               atol=1e-4, rtol=0)


def _stream(tier, pcm: np.ndarray, layers: int | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    w = ContainerWriter(buf, api.header_for(tier, 16000, pcm.shape[1], pcm.shape[0],
                                            layers=layers))
    enc = api.StreamEncoder(tier, 16000, pcm.shape[1], layers)
    for p in enc.push(pcm) + enc.finish():
        w.write(p)
    w.write_end(enc.next_seq, enc.coded_samples, enc.input_samples)
    return buf.getvalue()


def _decode(tier, data: bytes) -> np.ndarray:
    import io

    r = ContainerReader(io.BytesIO(data))
    return api.decode_packets(tier, r.header, list(r))


def _truncate(data: bytes, k: int) -> bytes:
    import io

    from nwc.formats.container import AUDIO

    r = ContainerReader(io.BytesIO(data))
    buf = io.BytesIO()
    w = ContainerWriter(buf, dataclasses.replace(r.header, num_layers=k))
    for p in r:
        w.write(dataclasses.replace(p, layers=p.layers[:k]) if p.kind == AUDIO else p)
    return buf.getvalue()


@pytest.mark.parametrize("lpc", [False, True], ids=["plain", "lpc"])
@pytest.mark.parametrize("channels", [1, 2])
def test_streams_cross_decode_and_truncate_byte_exact(tmp_path: Path, lpc: bool,
                                                      channels: int) -> None:
    t_torch = build_tiny_cascade("xe", seed=5, lpc=lpc)
    t_torch.save(tmp_path / "xe")
    t_torch = tiers.load_path(tmp_path / "xe.json")
    t_np = engine.load_path(tmp_path / "xe.json")
    pcm = speech_like(1.3, channels=channels, seed=11)
    s_np, s_torch = _stream(t_np, pcm), _stream(t_torch, pcm)
    # Each engine's stream decodes with the other to within 1e-4 of its own decode.
    for s in (s_np, s_torch):
        a, b = _decode(t_np, s), _decode(t_torch, s)
        assert a.shape == pcm.shape
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    # The NumPy engine's closed loop: a stream cut to k layers is a k-layer encode, bit for bit.
    assert _truncate(s_np, 1) == _stream(t_np, pcm, layers=1)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tiers_agree_across_engines(name: str) -> None:
    tt, nt = tiers.load(name), engine.load_numpy(name)
    assert nt.hash == tt.hash and nt.layers == tt.layers
    rate = tt.sample_rate
    x = speech_like(1.0, rate=rate, seed=2)[:, 0]
    frames = np.stack([x[i * 480:i * 480 + 512] for i in range(32)]) / np.sqrt(np.mean(x * x))
    sym_t = tt.model.encode_frames(frames, tt.layers)
    sym_n = nt.model.encode_frames(frames, nt.layers)
    with torch.inference_mode():
        lat = tt.model.stages[0].encode(torch.from_numpy(frames.astype(np.float32))).numpy()
    # The base layer differs only where a latent sits within rounding of a boundary; upper
    # layers also where a lower one's decoded frames moved by float noise: rare either way.
    differ = sym_t[0] != sym_n[0]
    assert not (differ & ~_near_boundary(lat, tt.model.stages[0].quantizer)).any()
    for a, b in zip(sym_t, sym_n, strict=True):
        assert np.mean(a != b) <= 1e-3
    pcm = speech_like(0.8, rate=rate, channels=2 if rate > 16000 else 1, seed=2)
    s_np, s_torch = _stream(nt, pcm), _stream(tt, pcm)
    for s in (s_np, s_torch):  # either engine's stream decodes with either
        np.testing.assert_allclose(_decode(nt, s), _decode(tt, s), atol=1e-4, rtol=0)
    if nt.layers > 1:
        assert _truncate(s_np, nt.layers - 1) == _stream(nt, pcm, layers=nt.layers - 1)


def test_numpy_tier_load_is_strict(tmp_path: Path) -> None:
    """As torch's strict load: a tensor too many (or missing) is a damaged tier."""
    import hashlib
    import json

    from nwc.codec.catalog import TierError
    from safetensors.numpy import load_file, save_file

    _tier("strict", CONFIGS["fast"], 1, tmp_path)
    path = tmp_path / "strict.safetensors"
    w = load_file(str(path))
    for change in ("extra", "missing"):
        v = dict(w)
        if change == "extra":
            v["stages.0.encoder.9.weight"] = np.zeros((1, 1, 1), np.float32)
        else:
            del v["stages.0.decoder.0.bias"]
        save_file(v, str(path))
        doc = json.loads((tmp_path / "strict.json").read_text())
        doc["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (tmp_path / "strict.json").write_text(json.dumps(doc))
        with pytest.raises(TierError, match="damaged"):
            engine.load_path(tmp_path / "strict.json")
        with pytest.raises(TierError, match="damaged"):
            tiers.load_path(tmp_path / "strict.json")


CPU_COMMANDS = '''
import sys
from nwc.cli.main import cli

def run(*args):
    try:
        cli.main(list(args), prog_name="nwc", standalone_mode=False)
    except SystemExit as e:
        assert e.code in (0, None), (args, e.code)

d = sys.argv[1]
run("encode", f"{d}/in.wav", f"{d}/a.nwc", "-t", "speech-layered", "-q")
run("decode", f"{d}/a.nwc", f"{d}/a.wav", "-q")
run("decode", f"{d}/a.nwc", f"{d}/b.wav", "-q", "--device", "cpu")
run("info", f"{d}/a.nwc")
run("tiers")
run("truncate", f"{d}/a.nwc", f"{d}/t.nwc", "-l", "1", "-q")
run("encode", f"{d}/in.wav", f"{d}/l.nwc", "-t", "speech-low", "-q")
run("decode", f"{d}/l.nwc", f"{d}/l.wav", "-q")
print("NUMBA:", sorted(m for m in sys.modules if m.split(".")[0] == "numba"))
run("eval", f"{d}/in.wav", f"{d}/t.nwc", "--json")  # its ViSQOL package may bring numba
print("TORCH:", sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
'''


def test_cpu_commands_never_import_torch(tmp_path: Path, weights_dir: Path) -> None:
    """Nor numba (coding; the eval extra's ViSQOL imports it): the base install has neither."""
    from conftest import write_wav

    write_wav(tmp_path / "in.wav", seconds=1.0)
    env = nwc_env(weights_dir)
    r = subprocess.run([sys.executable, "-c", CPU_COMMANDS, str(tmp_path)], capture_output=True,
                       env=env, timeout=300, text=True)
    assert r.returncode == 0, r.stderr
    assert "TORCH: []" in r.stdout and "NUMBA: []" in r.stdout, r.stdout
    for f in ("a.nwc", "a.wav", "b.wav", "t.nwc", "l.wav"):
        assert (tmp_path / f).stat().st_size > 100


def test_speed_bench_startup_table(weights_dir: Path, tmp_path: Path) -> None:
    """bench/speed.py --startup: whole commands on one core, the NumPy engine's row."""
    import shutil

    from conftest import write_wav

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(2):
        write_wav(corpus / f"c{i}.wav", seconds=1.5, seed=i)
    opus = bool(shutil.which("opusenc") and shutil.which("opusdec"))
    args = [sys.executable, str(Path(__file__).resolve().parents[1] / "bench" / "speed.py"),
            "--startup", "--startup-lengths", "1,2", "--reps", "1", "--engines", "numpy",
            "--tiers", "tiny", "--corpus", str(corpus), "--anchors", "opus" if opus else "none",
            "--anchor-kbps", "16"]
    r = subprocess.run(args, capture_output=True, text=True, env=nwc_env(weights_dir),
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| system | engine | encode 1 s clip (s) | decode 1 s clip (s) |" in r.stdout
    assert "| nwc tiny | numpy |" in r.stdout and "`nwc --version`:" in r.stdout
    assert "tiny: meets the targets" in r.stdout or "tiny: MISSES the targets" in r.stdout
    if opus:
        assert "| Opus VBR 16k | – |" in r.stdout
