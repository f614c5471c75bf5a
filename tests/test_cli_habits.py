"""The command line behaves as users of opusenc, flac, lame and ffmpeg expect (issue 19).

Subprocess round trips with the tiny tier; special files and links live in tmp_path only.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest
import soundfile as sf
from conftest import LPC_TIER_NAME, TIER_NAME, nwc_env, speech_like, write_wav
from test_cli import assert_clean_failure, no_partial_files, write_stream

T = ("--tier", TIER_NAME)


@pytest.fixture(scope="module")
def stream(tiny_tier, tmp_path_factory) -> tuple[Path, int]:
    d = tmp_path_factory.mktemp("habits")
    x = speech_like(1.5, 16000, 1, seed=3)
    return write_stream(tiny_tier, d / "s.nwc", x, 16000, {"TITLE": "Song", "X": "y"}), len(x)


# --- outputs that must not destroy things -------------------------------------------------

def test_fifo_gets_the_audio(run_nwc, stream, tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = run_nwc("decode", stream[0], fifo, "-q")
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a FIFO, not a regular file
    assert got and got[0][:4] == b"RIFF" and len(got[0]) > 2 * stream[1]


def test_character_device_is_written_not_replaced(run_nwc, stream, tmp_path) -> None:
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a null device in tmp_path
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    r = run_nwc("decode", stream[0], dev, "-q")  # no -f needed: nothing is replaced
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(dev.lstat().st_mode) and no_partial_files(tmp_path)


def test_dev_stdout_is_stdout(run_nwc, stream) -> None:
    r = run_nwc("decode", stream[0], "/dev/stdout", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout[:4] == b"RIFF" and len(r.stdout) > 2 * stream[1]


def test_symlink_mode_and_hard_links_survive(run_nwc, stream, tmp_path) -> None:
    target = tmp_path / "real.wav"
    target.write_bytes(b"old")
    target.chmod(0o600)
    (tmp_path / "link.wav").symlink_to("real.wav")
    os.link(target, tmp_path / "hard.wav")
    r = run_nwc("decode", stream[0], tmp_path / "link.wav", "-f", "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link.wav").is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_nlink == 2
    assert (tmp_path / "hard.wav").read_bytes() == target.read_bytes()
    assert sf.info(str(target)).frames == stream[1] and no_partial_files(tmp_path)


def test_same_input_and_output_is_refused(run_nwc, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 0.3)
    before = src.read_bytes()
    os.link(src, tmp_path / "b.wav")
    for out in (src, tmp_path / "b.wav"):
        err = assert_clean_failure(run_nwc("encode", src, out, "-f", *T))
        assert "same file" in err
    assert src.read_bytes() == before


def test_folder_as_out_points_to_out_dir(run_nwc, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 0.3)
    (tmp_path / "coded").mkdir()
    err = assert_clean_failure(run_nwc("encode", src, f"{tmp_path}/coded/", "-f", *T))
    assert "-o" in err and "folder" in err
    assert no_partial_files(tmp_path) and not list((tmp_path / "coded").iterdir())


# --- formats by extension, pipes ----------------------------------------------------------

def test_encode_refuses_an_audio_name(run_nwc, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 0.3)
    r = run_nwc("encode", src, tmp_path / "out.wav", *T)
    assert_clean_failure(r, 2, one_line=False)
    assert "out.nwc" in r.stderr.decode() and not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("suffix,fmt", [(".mp3", "MP3"), (".ogg", "OGG"), (".aiff", "AIFF"),
                                        (".flac", "FLAC")])
def test_decode_format_follows_the_suffix(run_nwc, stream, tmp_path, suffix, fmt) -> None:
    out = tmp_path / f"o{suffix}"
    r = run_nwc("decode", stream[0], out, "-q")
    assert r.returncode == 0, r.stderr
    assert sf.info(str(out)).format == fmt


def test_decode_unknown_suffix_is_a_usage_error(run_nwc, stream, tmp_path) -> None:
    r = run_nwc("decode", stream[0], tmp_path / "o.m4a")
    assert_clean_failure(r, 2, one_line=False)
    assert "ffmpeg" in r.stderr.decode() and not list(tmp_path.iterdir())


def test_piped_wav_header_leaves_with_audio(weights_dir, stream) -> None:
    p = subprocess.Popen([sys.executable, "-m", "nwc", "decode", str(stream[0]), "-", "-q"],
                         stdout=subprocess.PIPE, env=nwc_env(weights_dir))
    first = os.read(p.stdout.fileno(), 1 << 20)
    rest = p.stdout.read()
    assert p.wait(60) == 0
    head = first.index(b"data") + 8
    assert len(first) > head  # not the header alone: `sox -` reads it as one piece
    assert len(first) + len(rest) == head + 2 * stream[1]


def test_redirected_stdout_gets_real_wav_sizes(run_shell, stream, tmp_path) -> None:
    shutil.copy(stream[0], tmp_path / "s.nwc")
    r = run_shell("nwc decode - - -q < s.nwc > b.wav && nwc decode s.nwc c.wav -q", tmp_path)
    assert r.returncode == 0, r.stderr
    b = (tmp_path / "b.wav").read_bytes()
    assert struct.unpack("<I", b[b.index(b"data") + 4:][:4])[0] == 2 * stream[1]
    assert sf.info(str(tmp_path / "b.wav")).frames == stream[1]


def test_flac_on_stdin(run_shell, tmp_path) -> None:
    x = speech_like(0.5, 16000, 1, seed=4)
    with sf.SoundFile(str(tmp_path / "a.flac"), "w", 16000, 1, format="FLAC") as f:
        f.title = "From FLAC"
        f.write(x)
    r = run_shell(f"cat a.flac | nwc encode - a.nwc -q -t {TIER_NAME} && nwc info --json a.nwc",
                  tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["total_samples"] == len(x) and d["tags"]["TITLE"] == "From FLAC"


def test_truncated_stream_decodes_what_is_there(run_nwc, tiny_tier, tmp_path) -> None:
    full = write_stream(tiny_tier, tmp_path / "full.nwc", speech_like(6.0, seed=5), 16000)
    cut = tmp_path / "cut.nwc"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    r = run_nwc("decode", cut, tmp_path / "a.wav")
    assert r.returncode == 1 and b"ends early" in r.stderr and b"--pad" in r.stderr
    n = sf.info(str(tmp_path / "a.wav")).frames
    assert 0 < n < 4 * 16000
    r = run_nwc("decode", cut, tmp_path / "b.wav", "--pad", "-q")
    assert r.returncode == 1 and sf.info(str(tmp_path / "b.wav")).frames == 6 * 16000
    r = run_nwc("info", cut)
    assert r.returncode == 1 and b"present of 6.000 s announced" in r.stdout
    d = json.loads(run_nwc("info", "--json", cut).stdout)
    assert d["present_s"] < 4 and not d["ended"]


# --- tags ---------------------------------------------------------------------------------

def test_tags_travel_from_input_to_output(run_nwc, tmp_path) -> None:
    with sf.SoundFile(str(tmp_path / "in.flac"), "w", 16000, 1, format="FLAC") as f:
        f.artist = "Input Artist"
        f.album = "Old"
        f.write(speech_like(0.4, seed=6))
    r = run_nwc("encode", tmp_path / "in.flac", tmp_path / "a.nwc", *T, "--title", "T",
                "--album", "New", "--tag", "mood=calm", "--tag", "Mood=warm", "-q")
    assert r.returncode == 0, r.stderr
    tags = json.loads(run_nwc("info", "--json", tmp_path / "a.nwc").stdout)["tags"]
    assert tags == {"ARTIST": "Input Artist", "ALBUM": "New", "TITLE": "T",
                    "MOOD": "calm; warm"}
    for name in ("o.flac", "o.wav"):
        assert run_nwc("decode", tmp_path / "a.nwc", tmp_path / name, "-q").returncode == 0
        with sf.SoundFile(str(tmp_path / name)) as f:
            assert (f.title, f.artist, f.album) == ("T", "Input Artist", "New")
    r = run_nwc("encode", tmp_path / "in.flac", tmp_path / "b.nwc", *T, "--no-input-tags", "-q")
    assert json.loads(run_nwc("info", "--json", tmp_path / "b.nwc").stdout)["tags"] == {}


def test_tag_command_rewrites_only_the_header(run_nwc, stream, tmp_path) -> None:
    p = tmp_path / "s.nwc"
    shutil.copy(stream[0], p)
    p.chmod(0o640)
    before = p.read_bytes()
    r = run_nwc("tag", p, "--set", "artist=Me", "--remove", "x", "-q")
    assert r.returncode == 0, r.stderr
    after = p.read_bytes()
    assert run_nwc("tag", p).stdout.decode().splitlines() == ["TITLE=Song", "ARTIST=Me"]
    old_head = 14 + struct.unpack("<I", before[6:10])[0] + 4
    new_head = 14 + struct.unpack("<I", after[6:10])[0] + 4
    assert before[old_head:] == after[new_head:]  # every packet byte unchanged
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert run_nwc("decode", p, tmp_path / "o.wav", "-q").returncode == 0
    assert_clean_failure(run_nwc("tag", "-", "--set", "a=b"), 2, one_line=False)


def test_info_takes_several_files(run_nwc, stream, tmp_path) -> None:
    bad = tmp_path / "bad.nwc"
    bad.write_bytes(b"nope")
    r = run_nwc("info", stream[0], stream[0])
    assert r.returncode == 0 and r.stdout.decode().count("tier:") == 2
    r = run_nwc("info", "--json", stream[0], bad, stream[0])
    assert r.returncode == 1 and len(json.loads(r.stdout)) == 2 and b"bad.nwc" in r.stderr


# --- bitrate and tier choice --------------------------------------------------------------

def test_bitrate_is_the_whole_stream(run_nwc, lpc_tier, tmp_path) -> None:
    """tiny-lpc records 2.0 / 3.0 kbps a channel: 4.5 kbps fits 2 layers of mono but only
    one of stereo (2 + 2), and truncate --bitrate means the same."""
    mono = write_wav(tmp_path / "m.wav", 0.5, 16000, 1)
    stereo = write_wav(tmp_path / "s.wav", 0.5, 16000, 2)
    for src, k in ((mono, 2), (stereo, 1)):
        full = tmp_path / f"{src.stem}.nwc"
        assert run_nwc("encode", src, full, "-t", LPC_TIER_NAME, "-q").returncode == 0
        cut = tmp_path / f"{src.stem}-cut.nwc"
        r = run_nwc("truncate", full, cut, "--bitrate", "4.5", "-q")  # bare: kbit/s
        assert r.returncode == 0, r.stderr
        assert json.loads(run_nwc("info", "--json", cut).stdout)["num_layers"] == k


def test_choice_uses_the_shipped_ladder() -> None:
    """The policy on the shipped tiers' JSON (no model needed)."""
    from nwc.codec import catalog, choose, tierfile

    shipped = [tierfile.read(p) for p in sorted(catalog.SHIPPED_DIR.glob("*.json"))]
    names = {t.name for t in shipped}
    if not {"speech-lpc-16k", "speech-layered", "music", "music-48k"} <= names:
        pytest.skip("the shipped ladder changed")
    c = choose.choose(16, 16000, 1, tiers=shipped)
    assert (c.rung.tier.name, c.warning) == ("speech-lpc-16k", None)  # scores best at 16k
    c = choose.choose(500, 16000, 1, tiers=shipped)
    assert c.rung.tier.sample_rate == 16000 and "far above" in c.warning
    c = choose.choose(1, 16000, 1, tiers=shipped)
    assert "below the lowest" in c.warning
    c = choose.choose(96, 44100, 2, tiers=shipped)  # music-48k outscores music L1/L2 there
    assert c.rung.tier.name == "music-48k" and c.rung.kbps <= 96 * choose.FIT_SLACK
    c = choose.choose(64, 44100, 2, tiers=shipped)  # too dear for two channels of music-48k
    assert c.rung.tier.name == "music-32k" and c.rung.kbps <= 64 * choose.FIT_SLACK
    c = choose.choose(12, 16000, 1, tiers=shipped)  # the 12 kbit/s LPC layer
    assert (c.rung.tier.name, c.rung.layers) == ("speech-lpc-12k", 3)
    assert choose.default_tier(44100, shipped).name == "music"
    assert choose.default_tier(16000, shipped).name == "speech-lpc-16k"
    assert choose.parse_kbps("20") == choose.parse_kbps("20k") == choose.parse_kbps("20000bps")
    with pytest.raises(ValueError, match="24k"):
        choose.parse_kbps("24000")


def test_bitrate_choice_is_printed_and_warned(run_nwc, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 0.3)
    r = run_nwc("encode", src, tmp_path / "a.nwc", "-b", "500")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "layer(s), about" in err and "warning: 500 kbps is far above" in err
    assert "resampling" not in err  # stays on a 16 kHz tier


def test_default_tier_follows_the_input(run_nwc, tmp_path) -> None:
    src = write_wav(tmp_path / "song.wav", 0.3, 44100, 2)
    r = run_nwc("encode", src, tmp_path / "song.nwc")
    assert r.returncode == 0, r.stderr
    assert json.loads(run_nwc("info", "--json", tmp_path / "song.nwc").stdout)[
        "sample_rate"] == 44100
    assert b"default for 44100 Hz input" in r.stderr


def test_tier_json_path(weights_dir, tmp_path) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    for ext in (".json", ".safetensors"):
        shutil.copy(weights_dir / f"{TIER_NAME}{ext}", d / f"{TIER_NAME}{ext}")
    env = nwc_env(weights_dir)
    del env["NWC_WEIGHTS"]
    src = write_wav(tmp_path / "a.wav", 0.3)
    r = subprocess.run([sys.executable, "-m", "nwc", "encode", str(src), str(tmp_path / "a.nwc"),
                        "-t", str(d / f"{TIER_NAME}.json"), "-q"], capture_output=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(subprocess.run([sys.executable, "-m", "nwc", "info", "--json",
                                      str(tmp_path / "a.nwc")], capture_output=True,
                                     env=env).stdout)["tier"] == TIER_NAME


# --- smaller ------------------------------------------------------------------------------

def test_summary_names_files_and_counts_start_up(run_nwc, tmp_path) -> None:
    src = write_wav(tmp_path / "a.wav", 0.5)
    t0 = time.perf_counter()
    r = run_nwc("encode", src, tmp_path / "a.nwc", *T)
    waited = time.perf_counter() - t0
    line = r.stderr.decode().strip().splitlines()[-1]
    assert f"encoded {src}" in line and "a.nwc" in line and "x real time" in line
    wall = float(line.rsplit(", ", 1)[1].split(" s ")[0])
    # Start-up (interpreter, imports, model) is part of what the user waited: the summary
    # counts nearly all of the process's life, not just the coding.
    assert 0.5 * waited <= wall <= waited + 0.05


def test_jobs_on_short_files_use_one_process(run_nwc, tmp_path) -> None:
    (tmp_path / "in").mkdir()
    for k in range(3):
        write_wav(tmp_path / "in" / f"{k}.wav", 0.3, seed=k)
    r = run_nwc("encode", tmp_path / "in", "-o", tmp_path / "out", *T, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert b"using 1 process(es), not 2" in r.stderr


def test_every_option_has_help() -> None:
    from nwc.cli.main import cli

    for name, cmd in cli.commands.items():
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden:
                assert p.help, f"nwc {name} {p.opts[0]} has no help"


def test_encode_help_shows_the_default_tier(run_nwc) -> None:
    assert b"speech-lpc-16k" in run_nwc("encode", "--help").stdout


def test_train_on_an_empty_folder(run_nwc, tmp_path) -> None:
    (tmp_path / "data").mkdir()
    err = assert_clean_failure(run_nwc("train", tmp_path / "data", "--out", tmp_path / "x",
                                       "--max-steps", "1"))
    assert "no audio" in err and "ValueError" not in err


def test_shell_completion_knows_tiers(weights_dir) -> None:
    env = {**nwc_env(weights_dir), "_NWC_COMPLETE": "bash_complete",
           "COMP_WORDS": "nwc encode -t ti", "COMP_CWORD": "3"}
    r = subprocess.run([sys.executable, "-m", "nwc"], capture_output=True, env=env)
    assert TIER_NAME.encode() in r.stdout and LPC_TIER_NAME.encode() in r.stdout


def test_man_page_lists_every_command_and_option(run_nwc) -> None:
    from nwc.cli.main import cli

    page = run_nwc("man").stdout.decode()
    assert page.startswith(".TH NWC 1")
    for name, cmd in cli.commands.items():
        assert f".SS nwc {name}" in page
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.opts[-1].replace("-", "\\-") in page, (name, p.opts)
