"""Decoder fuzzing: mutated real streams of the tiny tier, in-process and through the CLI.

The mutation engine and the per-input invariants live in ``bench/fuzz.py`` (whose long
campaign runs the same checks 100 000 times); here a few hundred fixed-seed inputs run on
every test run.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf

from bench import fuzz

MAX_SECONDS = 5.0  # per input, on a busy machine; typical is ~10 ms


@pytest.fixture(scope="module")
def refs(tiny_tier) -> list:
    return fuzz.references(tiny_tier)


def test_clean_streams_decode_cleanly(refs) -> None:
    for ref in refs:
        out = fuzz.decode(ref, ref.data)
        assert out.kind == "clean" and not out.problems
        assert np.array_equal(out.y, ref.clean) and out.y.shape == (ref.n, ref.channels)
        assert out.stats.packets == len(ref.packets) - 1


def test_harness_predicts_lost_and_reordered_packets(refs) -> None:
    ref = refs[0]
    (a, b), (c, d) = ref.spans[1], ref.spans[2]
    dropped = ref.data[:a] + ref.data[b:]
    out = fuzz.decode(ref, dropped)
    assert out.kind == "damaged" and not out.problems
    assert out.stats.lost_samples == ref.tier.framing.packet_hop
    assert fuzz._expected(ref, dropped) == ([0, 2, 3, 4], True)
    swapped = ref.data[:a] + ref.data[c:d] + ref.data[a:b] + ref.data[d:]
    assert fuzz._expected(ref, swapped) == ([0, 2, 3, 4], True)
    out = fuzz.decode(ref, swapped)
    assert out.kind == "damaged" and not out.problems and out.y.shape == ref.clean.shape
    truncated = ref.data[: ref.spans[-1][0] + 5]  # cut inside END: header length still holds
    assert fuzz._expected(ref, truncated) == ([0, 1, 2, 3, 4], False)
    out = fuzz.decode(ref, truncated)
    assert not out.problems and not out.stats.ended and out.y.shape == ref.clean.shape
    np.testing.assert_array_equal(out.y, ref.clean)  # all audio was there


def test_header_damage_is_rejected_with_documented_errors(refs) -> None:
    ref = refs[0]
    for i in (0, 4, 6, 12, 40, ref.header_len - 1):
        d = bytearray(ref.data)
        d[i] ^= 0x10
        out = fuzz.decode(ref, bytes(d))
        assert out.kind == "rejected", (i, out.error)
        assert out.error.split(":")[0] in ("FormatError", "UnsupportedVersionError")


@pytest.mark.parametrize("mutator", sorted(fuzz.MUTATORS))
def test_fuzz_each_mutation(refs, mutator: str) -> None:
    rng = random.Random(f"nwc-{mutator}")
    kinds = set()
    for i in range(30):
        ref = refs[i % len(refs)]
        d = fuzz.MUTATORS[mutator](rng, ref, ref.data)
        out = fuzz.decode(ref, d, crc_only=mutator != "reframe")
        assert out.kind != "crash", out.error
        assert not out.problems, (i, ref.name, out.problems)
        assert out.seconds < MAX_SECONDS
        kinds.add(out.kind)
    assert kinds & {"damaged", "clean"}  # the decoder got past the header


def test_fuzz_campaign(refs) -> None:
    rep = fuzz.campaign(refs, 240, seed=1234)
    assert rep.tried == 240
    assert not rep.crashes, (rep.crashes, rep.examples)
    assert not rep.problems, (rep.problems, rep.examples)
    assert rep.max_seconds < MAX_SECONDS
    assert set(rep.outcomes) == {"clean", "damaged", "rejected"}  # every path exercised
    assert rep.outcomes["damaged"] > rep.outcomes["clean"]


def test_bench_main_reports_and_exits_zero(tiny_tier, capsys, monkeypatch) -> None:
    monkeypatch.setattr(fuzz, "random_tier", lambda: tiny_tier)
    assert fuzz.main(["--n", "30", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "tried 30 mutated inputs" in out and "crashes" in out and "max time" in out


# --------------------------------------------------------------------------- CLI level


def _cli_case(name: str, ref) -> bytes:
    rng = random.Random(name)
    d = ref.data
    body = ref.header_len
    if name == "bitflips":
        b = bytearray(d)
        for _ in range(6):
            i = rng.randrange(body, len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if name == "truncated":
        return d[: (ref.spans[2][0] + ref.spans[2][1]) // 2]
    if name == "garbage":
        i = ref.spans[1][0] + 17
        return d[:i] + rng.randbytes(200) + fuzz.SYNC + b"\x40\x00\x00\x00" + d[i:]
    raise ValueError(name)


@pytest.mark.parametrize("case", ["bitflips", "truncated", "garbage"])
def test_cli_decodes_damaged_streams(run_nwc, refs, tmp_path, case: str) -> None:
    ref = refs[0]
    src = tmp_path / "in.nwc"
    src.write_bytes(_cli_case(case, ref))
    r = run_nwc("decode", src, tmp_path / "out.wav")
    err = r.stderr.decode()
    assert "Traceback" not in err
    assert r.returncode == 1 and "warning" in err, err  # damage is reported, not hidden
    # The partial decode is kept, at the announced length, with silence for what was lost; a
    # stream cut short stops where its audio stops unless --pad asks for that length.
    info = sf.info(str(tmp_path / "out.wav"))
    if case == "truncated":
        assert 0 < info.frames < ref.n and info.samplerate == 16000
        r = run_nwc("decode", src, tmp_path / "pad.wav", "--pad", "-q")
        assert r.returncode == 1 and "Traceback" not in r.stderr.decode()
        info = sf.info(str(tmp_path / "pad.wav"))
    assert (info.frames, info.samplerate) == (ref.n, 16000)


def test_cli_rejects_damaged_header(run_nwc, refs, tmp_path) -> None:
    d = bytearray(refs[0].data)
    d[20] ^= 0xFF
    (tmp_path / "in.nwc").write_bytes(bytes(d))
    r = run_nwc("decode", tmp_path / "in.nwc", tmp_path / "out.wav")
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err
    assert err.startswith("nwc: error: header crc mismatch") and len(err.splitlines()) == 1
    assert not (tmp_path / "out.wav").exists()


def test_fuzz_campaign_lpc_tier_judges_filter_memory(lpc_tier) -> None:
    # After a loss, an LPC tier's intact packets match the clean decode once the synthesis
    # memory has recovered (within one packet); the campaign measures it in samples.
    rep = fuzz.campaign(fuzz.references(lpc_tier), 120, seed=20)
    assert not rep.crashes, (rep.crashes, rep.examples)
    assert not rep.problems, (rep.problems, rep.examples)
    assert 0 < rep.max_recovery <= lpc_tier.framing.packet_hop
