"""bench/quality.py speech mode: 16 kHz tiers at every layer prefix, and the verdict against
AMR-WB (Opus beside it) read off synthetic table rows: no audio is coded."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import write_wav


def fake_tiers(tmp_path: Path) -> list[dict]:
    """`nwc tiers --json` rows: a one-layer and a two-layer 16 kHz tier, a three-layer one
    whose JSON records per-layer targets, and a 44.1 kHz music tier."""
    return [
        {"name": "music", "sample_rate": 44100, "target_kbps": 64.0, "kbps": 62.6,
         "layers": [{"kbps": 62.6}], "path": str(tmp_path / "music.json")},
        {"name": "speech-low", "sample_rate": 16000, "target_kbps": 32.0, "kbps": 33.0,
         "stages": 3, "target_layer_kbps": [8, 16, 32],
         "layers": [{"kbps": 9.0}, {"kbps": 17.0}, {"kbps": 33.0}]},
        {"name": "speech-layered", "sample_rate": 16000, "target_kbps": 24.0, "kbps": 26.5,
         "layers": [{"kbps": 16.2}, {"kbps": 26.5}], "path": str(tmp_path / "gone.json")},
        {"name": "speech-16k", "sample_rate": 16000, "target_kbps": 16.0, "kbps": 16.2,
         "layers": [{"kbps": 16.2}], "path": str(tmp_path / "gone.json")},
    ]


# --------------------------------------------------------------------------------------
# Tiers and their prefix systems


def test_select_tiers_keeps_the_profiles_rate(quality, tmp_path) -> None:
    tiers = fake_tiers(tmp_path)
    notes: list[str] = []
    got = quality.select_tiers(tiers, "", quality.SPEECH, notes)
    assert [t["name"] for t in got] == ["speech-16k", "speech-layered", "speech-low"]
    assert notes == ["nwc: not 16 kHz, skipped in speech mode: music."]
    notes = []
    got = quality.select_tiers(tiers, "", quality.MUSIC, notes)
    assert [t["name"] for t in got] == ["music"]
    assert notes == ["nwc: not 44.1 kHz, skipped in music mode: "
                     "speech-16k, speech-layered, speech-low."]
    notes = []
    got = quality.select_tiers(tiers, "speech-low,gone,music", quality.SPEECH, notes)
    assert [t["name"] for t in got] == ["speech-low"]
    assert notes == ["nwc: tier(s) not installed, skipped: gone.",
                     "nwc: not 16 kHz, skipped in speech mode: music."]
    notes = []
    assert quality.select_tiers(tiers, "music", quality.SPEECH, notes) == []
    assert notes[-1] == "nwc: no 16 kHz tier installed; table has anchors only."


def test_nwc_systems_code_every_prefix_at_the_profiles_rate(quality, tmp_path) -> None:
    low = fake_tiers(tmp_path)[1]
    systems = quality.nwc_systems(["nwc"], low, quality.SPEECH)
    assert [s.mode for s in systems] == ["speech-low L1", "speech-low L2", "speech-low L3"]
    assert [s.nominal_kbps for s in systems] == [8.0, 16.0, 32.0]
    assert {s.tier for s in systems} == {"speech-low"} and [s.layers for s in systems] == [1, 2, 3]
    work = tmp_path / "work"
    work.mkdir()
    coding = systems[1].plan(tmp_path / "ref.wav", np.zeros(16, np.int16), work)
    (enc,), (dec,) = coding.encode, coding.decode
    assert enc.argv[enc.argv.index("--layers") + 1] == "2" and "speech-low" in enc.argv
    assert dec.argv[dec.argv.index("--rate") + 1] == "16000"
    write_wav(work / "out.wav", 0.1, 16000, 2)  # a stereo decode is read back mono at 16 kHz
    assert coding.read().shape == (1600,)
    (one,) = quality.nwc_systems(["nwc"], fake_tiers(tmp_path)[3])
    assert (one.mode, one.nominal_kbps, one.layers) == ("speech-16k", 16.0, 1)
    (music,) = quality.nwc_systems(["nwc"], fake_tiers(tmp_path)[0], quality.MUSIC)
    coding = music.plan(tmp_path / "ref.wav", np.zeros(16, np.int16), work)
    assert coding.decode[0].argv[coding.decode[0].argv.index("--rate") + 1] == "44100"
    assert coding.read().shape == (4410, 2)
    (ms,) = quality.nwc_systems(["nwc"], fake_tiers(tmp_path)[0], quality.MUSIC, "ms")
    argv = ms.plan(tmp_path / "ref.wav", np.zeros(16, np.int16), work).encode[0].argv
    assert argv[argv.index("--stereo") + 1] == "ms" and ms.mode.endswith(" MS")
    assert "--stereo" not in coding.encode[0].argv


def test_build_systems_speech_mode_has_a_row_per_rung(quality, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(quality, "find_nwc", lambda explicit: ["nwc"])
    monkeypatch.setattr(quality, "nwc_tiers", lambda nwc, notes: fake_tiers(tmp_path))
    notes: list[str] = []
    args = SimpleNamespace(tiers="", anchors="none", nwc=None)
    systems = quality.build_systems(args, notes)
    assert [s.label for s in systems] == [
        "nwc speech-16k", "nwc speech-layered L1", "nwc speech-layered L2",
        "nwc speech-low L1", "nwc speech-low L2", "nwc speech-low L3"]
    # No target per layer in speech-layered's JSON: its first prefix takes the dev kbps.
    assert [s.nominal_kbps for s in systems[1:3]] == [16.2, 24.0]
    assert notes == ["nwc: not 16 kHz, skipped in speech mode: music."]


def test_extra_csv_keys(quality) -> None:
    assert quality.SPEECH.extra_keys == ["tier", "layers", "amrwb_pesq_wb_same_kbps",
                                         "amrwb_visqol_same_kbps", "opus_pesq_wb_same_kbps"]
    assert quality.MUSIC.extra_keys == ["tier", "layers", "mp3_visqol_same_kbps",
                                        "mp3_si_snr_db_same_kbps"]


# --------------------------------------------------------------------------------------
# The speech verdict


def row(codec: str, mode: str, nominal: float, real: float, pesq: float,
        visqol: float = math.nan, **kw) -> dict:
    return {"codec": codec, "mode": mode, "nominal_kbps": nominal, "real_kbps": real,
            "pesq_wb": pesq, "visqol": visqol, "si_snr_db": 5.0, **kw}


def ladder_rows(with_32: bool = True) -> list[dict]:
    nwc = [
        row("nwc", "speech-16k", 16.0, 13.0, 3.0, 3.5, tier="speech-16k", layers=1),
        row("nwc", "speech-low L1", 8.0, 10.0, 2.6, 3.2, tier="speech-low", layers=1),
        row("nwc", "speech-low L2", 16.0, 16.0, 3.5, 3.7, tier="speech-low", layers=2),
        row("nwc", "speech-low L3", 32.0 if with_32 else 24.0, 32.9, 4.05, 4.0,
            tier="speech-low", layers=3),
    ]
    amr = [row("AMR-WB", f"mode {m}", k, real, p, v)
           for m, k, real, p, v in ((0, 6.6, 7.0, 2.0, 3.0), (2, 12.65, 13.0, 3.0, 3.5),
                                    (8, 23.85, 24.3, 3.6, 3.9))]
    opus = [row("Opus", f"VBR {k}k", k, real, p, 3.0)
            for k, real, p in ((6, 7.0, 1.8), (16, 17.0, 3.2), (32, 33.0, 4.1))]
    return nwc + amr + opus


def test_speech_verdict_reads_the_bar(quality) -> None:
    rows = ladder_rows()
    quality.add_references(rows, quality.SPEECH.references)
    l1 = rows[1]
    assert l1["amrwb_pesq_wb_same_kbps"] == pytest.approx(2.5)  # halfway from 7.0 to 13.0
    assert l1["amrwb_visqol_same_kbps"] == pytest.approx(3.25)
    assert l1["opus_pesq_wb_same_kbps"] == pytest.approx(1.8 + 0.3 * 1.4)
    assert math.isnan(rows[3]["amrwb_pesq_wb_same_kbps"])  # 32.9 kbps: above AMR-WB's span
    assert "amrwb_pesq_wb_same_kbps" not in rows[4]  # anchors get no reference
    text = quality.speech_verdict(rows)
    lines = text.splitlines()
    assert lines[0] == "## Verdict"
    assert "(AMR-WB 7.0-24.3 kbps, Opus 7.0-33.0 kbps)" in text
    assert ("| nwc | nominal kbps | real kbps | PESQ-WB | AMR-WB PESQ-WB at that kbps | "
            "Δ PESQ-WB | PESQ-WB ≥ AMR-WB | ViSQOL | AMR-WB ViSQOL at that kbps | Δ ViSQOL | "
            "ViSQOL ≥ AMR-WB | Opus PESQ-WB at that kbps |") in lines
    # A tie at least matches; above in PESQ-WB but below in ViSQOL; outside the span.
    assert "| speech-16k | 16.00 | 13.00 | 3.00 | 3.00 | +0.00 | yes | 3.50 | 3.50 | +0.00 " \
           "| yes | 2.64 |" in lines
    assert "| speech-low L1 | 8.00 | 10.00 | 2.60 | 2.50 | +0.10 | yes | 3.20 | 3.25 | -0.05 " \
           "| no | 2.22 |" in lines
    assert "| speech-low L3 | 32.00 | 32.90 | 4.05 | n/a | n/a | n/a | 4.00 | n/a | n/a | n/a " \
           "| 4.09 |" in lines
    assert ("- **speech-16k**: rungs at least matching AMR-WB at their own real kbps: "
            "PESQ-WB 1 of 1: **yes**; ViSQOL 1 of 1: **yes**; in both: **yes**.") in lines
    assert ("- **speech-low**: rungs at least matching AMR-WB at their own real kbps: "
            "PESQ-WB 2 of 3 (not: `speech-low L3` n/a): **n/a**; ViSQOL 1 of 3 "
            "(not: `speech-low L1` no, `speech-low L3` n/a): **no**; in both: **no**.") in lines
    assert lines[-1] == ("- **32 kbps rung** `speech-low L3` (32.9 kbps real): PESQ-WB 4.05 "
                         "vs 4.0, reaches it: **yes**.")


def test_speech_verdict_without_a_32_kbps_rung_or_visqol(quality) -> None:
    rows = ladder_rows(with_32=False)
    for r in rows:
        r["visqol"] = math.nan
    rows[3]["pesq_wb"] = 3.9
    quality.add_references(rows, quality.SPEECH.references)
    text = quality.speech_verdict(rows)
    assert "ViSQOL was not measured: its columns are n/a." in text
    assert "ViSQOL 0 of 1 (not: `speech-16k` n/a): **n/a**; in both: **n/a**." in text
    assert text.splitlines()[-1] == ("- **32 kbps rung**: none (no nwc rung has a nominal "
                                     "32 kbps), so PESQ-WB ≥ 4.0 is untested.")
    rows[3]["nominal_kbps"] = 32.4  # within half a kbps of the bar's rung
    assert quality.speech_verdict(rows).endswith("PESQ-WB 3.90 vs 4.0, reaches it: **no**.")


def test_speech_verdict_needs_amrwb_and_nwc(quality) -> None:
    rows = ladder_rows()
    no_amr = [r for r in rows if r["codec"] != "AMR-WB"]
    quality.add_references(no_amr, quality.SPEECH.references)
    assert "No verdict: it needs nwc rungs and AMR-WB" in quality.speech_verdict(no_amr)
    anchors = [r for r in rows if r["codec"] != "nwc"]
    assert "No verdict" in quality.speech_verdict(anchors)
