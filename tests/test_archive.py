"""Streams outlive retrainings: a tier's superseded weights stay in ``weights/archive/`` and
the decoder picks the version a stream's header names."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speech_like
from nwc.codec import api, catalog, engine, tierfile
from nwc.formats.container import ContainerReader, ContainerWriter

ARCHIVED = sorted((catalog.SHIPPED_DIR / catalog.ARCHIVE).glob("*.json"))


def _nwc(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nwc", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def _write_stream(path: Path, tier, x: np.ndarray, rate: int, weights_hash: str | None = None
                  ) -> None:
    header = api.header_for(tier, rate, 1, x.shape[0])
    if weights_hash:
        header = dataclasses.replace(header, weights_hash=weights_hash)
    enc = api.StreamEncoder(tier, rate, 1)
    packets = enc.push(x) + enc.finish()
    with open(path, "wb") as f:
        w = ContainerWriter(f, header)
        for p in packets:
            w.write(p)
        w.write_end(len(packets), x.shape[0], x.shape[0])


@pytest.mark.skipif(not ARCHIVED, reason="no archived tier is shipped")
@pytest.mark.parametrize("archived", ARCHIVED, ids=lambda p: p.stem)
def test_a_stream_of_superseded_weights_still_decodes(archived: Path, tmp_path: Path) -> None:
    old = engine.load_path(archived)
    assert old.name in catalog.available() and catalog.find(old.name) != archived
    assert tierfile.read(catalog.find(old.name)).hash != old.hash   # retrained since
    x = speech_like(1.2, old.sample_rate, seed=4)
    stream = tmp_path / "old.nwc"
    _write_stream(stream, old, x, old.sample_rate)
    r = _nwc("decode", stream, tmp_path / "old.wav")
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(tmp_path / "old.wav", dtype="float32", always_2d=True)
    with open(stream, "rb") as f:   # the same weights through the API
        rd = ContainerReader(f)
        want = api.decode_packets(old, rd.header, list(rd))
    assert y.shape == want.shape == (x.shape[0], 1)
    np.testing.assert_allclose(y, want, atol=1 / 32768 + 1e-6)
    assert _nwc("test", stream).returncode == 0


def test_a_stream_of_unknown_weights_is_a_one_line_error(tmp_path: Path) -> None:
    tier = engine.load_numpy("speech-16k")
    x = speech_like(0.5, 16000, seed=5)
    stream = tmp_path / "odd.nwc"
    _write_stream(stream, tier, x, 16000, weights_hash="0123456789abcdef")
    r = _nwc("decode", stream, tmp_path / "odd.wav")
    assert r.returncode == 1 and "0123456789abcdef" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "odd.wav").exists()


def test_archived_versions_are_not_listed_as_tiers() -> None:
    names = [tierfile.peek_name(p) for p in ARCHIVED]
    listing = _nwc("tiers").stdout
    for name in set(names):
        assert sum(line.split()[0] == name for line in listing.splitlines() if line) == 1
