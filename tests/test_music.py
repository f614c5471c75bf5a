"""General-audio pieces: HARP-Net skip codes, the psychoacoustic training loss, 44.1 kHz tiers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speech_like, write_wav
from nwc.codec import infer
from nwc.codec import tier as tiers
from nwc.codec.api import decode_packets, encode_array, header_for
from nwc.codec.model import NWC, NWCConfig
from test_train import TINY_ARGS, train_cli

HARP = NWCConfig(channels=8, narrow=4, code_channels=2, levels=7, harp=1)


def test_harp_codes_are_extra_symbol_channels() -> None:
    m = NWC(HARP).eval()
    assert m.symbol_channels == 3 and m.quantizer.log_scale.shape == (3,)
    x = torch.randn(4, 512)
    with torch.no_grad():
        lat = m.encode(x)
        rec = m.decode(lat)
    assert lat.shape == (4, 3, m.code_steps) and rec.shape == (4, 512)
    # The skip codes reach the decoder: changing only them changes the output.
    lat2 = lat.clone()
    lat2[:, 2] += 1.0
    with torch.no_grad():
        assert not torch.allclose(m.decode(lat2), rec)


def test_harp_inference_kernels_match_the_modules() -> None:
    m = NWC(HARP).eval()
    x = torch.randn(6, 512)
    with torch.no_grad():
        lat, rec = m.encode(x), m.decode(m.encode(x))
    with torch.inference_mode():
        lat_i = infer.encode(m, x)
        assert torch.equal(lat_i, lat)  # the encoder's codes are bit-identical
        assert torch.equal(infer.decode(m, lat_i, exact=True), rec)
        assert torch.allclose(infer.decode(m, lat_i), rec, atol=1e-5)


def test_plain_config_dict_has_no_harp_key() -> None:
    # Tiers from before HARP-Net hash their config dict: it must not change.
    assert "harp" not in NWCConfig().to_dict()
    assert NWCConfig.from_dict(NWCConfig(harp=2).to_dict()).harp == 2


@pytest.fixture(scope="module")
def music_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("music")
    (d / "dev").mkdir()
    for i in range(3):
        write_wav(d / f"t{i}.wav", 1.2, 44100, 2, seed=i)
    write_wav(d / "dev" / "d0.wav", 1.1, 44100, 2, seed=9)
    return d


def test_train_psychoacoustic_harp_44k_tier(music_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mus"
    r = train_cli(music_dir, "--out", out, "--max-steps", "12", "--sample-rate", "44100",
                  "--loss", "psychoacoustic", "--harp", "1", "--bitrate", "48k,64k",
                  *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["sample_rate"] == 44100 and doc["cascade"]["nwc"]["harp"] == 1
    assert doc["meta"]["training"]["config"]["loss"] == "psychoacoustic"
    layers = doc["meta"]["dev_layers"]
    # General-audio tiers report SI-SNR (and ViSQOL when installed), not PESQ/STOI.
    assert len(layers) == 2 and all("si_snr" in m and "pesq_wb" not in m for m in layers)
    t = tiers.load_path(out.with_suffix(".json"))
    x = speech_like(0.7, 44100, 2, seed=4)
    packets = encode_array(t, x, 44100)
    y = decode_packets(t, header_for(t, 44100, 2, x.shape[0]), packets)
    assert y.shape == x.shape and np.isfinite(y).all()


def test_psychoacoustic_loss_trains_an_lpc_tier(music_dir: Path, tmp_path: Path) -> None:
    # The LPC tiers' loss is measured after synthesis, on the signal at its playback level,
    # so the masking threshold applies to them as to plain tiers.
    r = train_cli(music_dir, "--out", tmp_path / "x", "--max-steps", "2", "--lpc",
                  "--loss", "psychoacoustic", "--warmup-steps", "0", *TINY_ARGS[2:])
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["meta"]["training"]["loss_weights"]["nmr"] > 0 and doc["cascade"]["lpc"]


def test_psychoacoustic_terms_fall_with_noise_level() -> None:
    from nwc.train import psychoacoustic
    from nwc.train.losses import noise_to_mask_loss, priority_weighted_loss

    ref = torch.from_numpy(speech_like(0.5, 44100, 1, seed=2)[:, 0] * 3)
    frames = ref.unfold(0, 512, 256)
    mask = psychoacoustic.masking_threshold(frames, 44100, gain_db=-10.0)
    losses = []
    for snr in (5.0, 20.0, 40.0):
        noise = torch.randn_like(ref) * ref.pow(2).mean().sqrt() * 10 ** (-snr / 20)
        rec = (ref + noise).unfold(0, 512, 256)
        losses.append((priority_weighted_loss(rec, frames, mask).item(),
                       noise_to_mask_loss(rec, frames, mask, log_ratio=True).item()))
    assert losses[0][0] > losses[1][0] > losses[2][0]
    assert losses[0][1] > losses[1][1] >= losses[2][1]
