"""`nwc train` end to end, through the real command line: a tiny model for a few steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speech_like, write_wav
from nwc.codec import tier as tiers
from nwc.codec.api import decode_packets, encode_array, header_for

TINY_ARGS = ["--warmup-steps", "5", "--channels", "8", "--code-channels", "2",
             "--eval-clips", "2", "--batch", "4", "--threads", "1", "-q"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


def train_cli(*args: str | Path, launcher: list[str] | None = None,
              timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *(launcher or []), "-m", "nwc", "train", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    (d / "dev").mkdir()
    (d / "speaker1").mkdir()
    for i in range(3):
        write_wav(d / f"a{i}.wav", 1.2, 16000, 1, seed=i)
    write_wav(d / "speaker1" / "b.wav", 1.0, 22050, 2, seed=5)  # resampled and mixed down
    for i in range(2):
        write_wav(d / "dev" / f"d{i}.wav", 1.1, 16000, 1, seed=10 + i)
    return d


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "mini"
    r = train_cli(data_dir, "--out", out, "--max-steps", "20", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    return out


def test_train_writes_a_loadable_tier(trained: Path) -> None:
    weights, meta_file = trained.with_suffix(".safetensors"), trained.with_suffix(".json")
    assert weights.stat().st_size > 0 and meta_file.stat().st_size > 0
    doc = json.loads(meta_file.read_text())
    assert doc["name"] == "mini" and doc["cascade"]["nwc"]["channels"] == 8
    assert doc["cascade"]["nwc"]["code_channels"] == 2
    dev = doc["meta"]["dev"]
    assert dev["clips"] == 2 and np.isfinite(dev["kbps"]) and dev["kbps"] > 0
    assert 0 < dev["ideal_kbps"] <= dev["kbps"]  # the real rate includes coder and framing
    assert doc["meta"]["training"]["steps"] == 20
    t = tiers.load_path(meta_file)
    assert t.kbps == dev["kbps"] and t.name == "mini"
    # The exported tier codes audio with the exact length.
    x = speech_like(0.9, seed=3)
    packets = encode_array(t, x, 16000)
    y = decode_packets(t, header_for(t, 16000, 1, x.shape[0]), packets)
    assert y.shape == x.shape and np.isfinite(y).all()


def test_resume_continues_from_checkpoint(trained: Path, data_dir: Path) -> None:
    run_dir = trained.parent / f".{trained.name}.run"
    assert (run_dir / "ckpt-20.safetensors").exists() and (run_dir / "ckpt.json").exists()
    assert json.loads((run_dir / "ckpt.json").read_text())["step"] == 20
    r = train_cli(data_dir, "--out", trained, "--max-steps", "26", "--resume", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr and "step 20" in r.stderr
    doc = json.loads(trained.with_suffix(".json").read_text())
    assert doc["meta"]["training"]["steps"] == 26
    assert json.loads((run_dir / "ckpt.json").read_text())["step"] == 26
    tiers.load_path(trained.with_suffix(".json"))


def test_a_cpu_budget_stops_the_run_and_its_final_point_is_kept(data_dir: Path,
                                                                 tmp_path: Path) -> None:
    """--max-cpu-minutes counts the process's CPU time (the budget recipes are compared at);
    the point the tier was exported at is in the checkpoint's history as well."""
    out, run_dir = tmp_path / "cpu", tmp_path / "run"
    r = train_cli(data_dir, "--out", out, "--run-dir", run_dir, "--max-cpu-minutes", "0.04",
                  *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    training = json.loads(out.with_suffix(".json").read_text())["meta"]["training"]
    ckpt = json.loads((run_dir / "ckpt.json").read_text())
    assert training["steps"] == ckpt["step"] > 0
    assert 0.04 * 60 <= ckpt["cpu_seconds"] < 0.04 * 60 + 30  # stopped at the first step after
    assert ckpt["history"][-1]["step"] == ckpt["step"]
    assert ckpt["history"][-1]["layers"][0]["kbps"] > 0


def test_train_usage_errors(data_dir: Path, tmp_path: Path) -> None:
    r = train_cli(data_dir, "--out", tmp_path / "x")  # neither --max-steps nor --max-minutes
    assert r.returncode == 2 and "max-steps" in r.stderr
    r = train_cli(data_dir, "--out", tmp_path / "x", "--max-steps", "1", "-b", "0.3")
    assert r.returncode == 2 and "bitrate" in r.stderr
    assert not list(tmp_path.iterdir())


def test_ddp_two_processes_on_cpu(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    r = train_cli(data_dir, "--out", out, "--max-steps", "6", "--device", "cpu",
                  *TINY_ARGS, launcher=launcher)
    assert r.returncode == 0, r.stderr[-3000:]
    t = tiers.load_path(out.with_suffix(".json"))
    training = t.meta["training"]
    assert training["world_size"] == 2 and training["steps"] == 6
    assert training["device"] == "cpu"


def test_train_layered_lpc_then_add_a_layer(data_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "lpc2"
    r = train_cli(data_dir, "--out", base, "--lpc", "--bitrate", "6k,10k", "--max-steps", "6",
                  *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    doc = json.loads(base.with_suffix(".json").read_text())
    assert doc["cascade"]["lpc"] and doc["cascade"]["stages"] == 2
    assert len(doc["tables"]) == 2 and len(doc["lsf_tables"]) == 16
    layers = doc["meta"]["dev_layers"]
    assert [m["layers"] for m in layers] == [1, 2] and layers[0]["kbps"] < layers[1]["kbps"]
    # Greedy growth: a third stage on top of the frozen two.
    top = tmp_path / "lpc3"
    r = train_cli(data_dir, "--out", top, "--lpc", "--bitrate", "6k,10k,14k", "--init-from",
                  base.with_suffix(".json"), "--freeze", "2", "--max-steps", "4", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    assert "nwc: started from" in r.stderr  # a short run's scores shown beside its start's
    from safetensors.torch import load_file

    a = load_file(str(base.with_suffix(".safetensors")))
    b = load_file(str(top.with_suffix(".safetensors")))
    assert all(torch.equal(a[k], b[k]) for k in a)  # frozen stages and LSF quantizer kept
    assert any(k.startswith("stages.2.") for k in b)
    r = train_cli(data_dir, "--out", tmp_path / "x", "--freeze", "1", "--max-steps", "1",
                  *TINY_ARGS)
    assert r.returncode == 2 and "--init-from" in r.stderr


def test_new_stages_start_as_copies_of_the_top_stage() -> None:
    from nwc.codec.cascade import Cascade, CascadeConfig
    from nwc.codec.model import NWCConfig
    from nwc.train.export import seed_from

    nwc = NWCConfig(channels=8, narrow=4, code_channels=2, levels=7)
    torch.manual_seed(0)
    src = Cascade(CascadeConfig(nwc=nwc, stages=2))
    torch.manual_seed(1)
    model = Cascade(CascadeConfig(nwc=nwc, stages=4))
    seed_from(model, src)
    for k, want in enumerate([0, 1, 1, 1]):
        got, ref = model.stages[k].state_dict(), src.stages[want].state_dict()
        assert all(torch.equal(got[n], ref[n]) for n in ref)


def test_loss_weights_are_recorded_and_checked(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "w"
    r = train_cli(data_dir, "--out", out, "--max-steps", "2", "--loss-weight", "mel=0.25",
                  "--loss-weight", "time=0.5", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    training = json.loads(out.with_suffix(".json").read_text())["meta"]["training"]
    assert training["loss_weights"] == {"time": 0.5, "mel": 0.25}
    assert training["config"]["loss_weights"] == {"time": 0.5, "mel": 0.25}
    r = train_cli(data_dir, "--out", tmp_path / "x", "--max-steps", "1", "--loss-weight",
                  "bogus=1", *TINY_ARGS)
    assert r.returncode == 2 and "unknown loss term" in r.stderr
    r = train_cli(tmp_path / "x", "--out", tmp_path / "y", "--max-steps", "1", *TINY_ARGS)
    assert r.returncode == 2  # DATA_DIR must exist
    (tmp_path / "empty").mkdir()
    r = train_cli(tmp_path / "empty", "--out", tmp_path / "y", "--max-steps", "1", *TINY_ARGS)
    assert r.returncode == 1 and "holds no audio files" in r.stderr
    assert "Traceback" not in r.stderr


def _weights(stem: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(stem.with_suffix(".safetensors")))


@pytest.mark.parametrize("schedule", ["open", "restarts"])
def test_resume_continues_exactly(data_dir: Path, tmp_path: Path, schedule: str) -> None:
    """12 steps straight, or 6 then a resume for 6 more: the same weights bit for bit (model,
    optimizer, rate controllers, sampler and torch RNG all come back; with restarts, the
    learning-rate cycles of 5 steps restart at 5 and 10, across the resume)."""
    args = [*TINY_ARGS, "--schedule", schedule, "--ramp-steps", "8", "--warmup-steps", "3",
            "--cycle-steps", "5", "--eval-minutes", "1000"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_cli(data_dir, "--out", straight, "--max-steps", "12", *args).returncode == 0
    assert train_cli(data_dir, "--out", split, "--max-steps", "6", *args).returncode == 0
    r = train_cli(data_dir, "--out", split, "--max-steps", "12", "--resume", *args)
    assert r.returncode == 0 and "step 6" in r.stderr, r.stderr
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _wait_for_checkpoint(run_dir: Path, step: int, timeout: float = 120) -> None:
    """Until the run folder holds a checkpoint of at least ``step`` steps (or the timeout)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = run_dir / "ckpt.json"
        if state.exists() and json.loads(state.read_text())["step"] >= step:
            return
        time.sleep(0.2)


def test_a_killed_run_resumes_from_its_last_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "nwc", "train", str(data_dir), "--out", str(out),
           "--run-dir", str(run_dir), "--max-steps", "100000", "--schedule", "open",
           "--checkpoint-minutes", "0.002", *TINY_ARGS]  # every ~0.1 s: a kill finds one
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_checkpoint(run_dir, 5)
        p.send_signal(signal.SIGKILL)  # no chance to clean up
    finally:
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    step = json.loads((run_dir / "ckpt.json").read_text())["step"]
    assert step >= 5  # the JSON names a whole tensors file:
    assert (run_dir / json.loads((run_dir / "ckpt.json").read_text())["tensors"]).exists()
    r = train_cli(data_dir, "--out", out, "--run-dir", run_dir, "--max-steps", str(step + 3),
                  "--resume", "--schedule", "open", *TINY_ARGS)
    assert r.returncode == 0 and f"step {step}" in r.stderr, r.stderr
    assert json.loads((run_dir / "ckpt.json").read_text())["step"] == step + 3


@pytest.mark.parametrize("kernels,precision", [("module", "bf16"), ("fast", "fp32")])
def test_every_kernel_and_precision_trains(data_dir: Path, tmp_path: Path, kernels: str,
                                           precision: str) -> None:
    """The GPU's configuration (modules under bf16 autocast) and the float32 fast path run
    here too, shapes and all, and record their choice in the tier."""
    out = tmp_path / "k"
    r = train_cli(data_dir, "--out", out, "--max-steps", "8", "--lpc", "--kernels", kernels,
                  "--precision", precision, *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(out.with_suffix(".json").read_text())["meta"]["training"]["config"]
    assert (cfg["kernels"], cfg["precision"]) == (kernels, precision)


def test_sigterm_checkpoints_the_last_whole_step(data_dir: Path, tmp_path: Path) -> None:
    """A polite stop (SIGTERM, as `kill` or a session's end sends) finishes the step,
    writes its checkpoint and exits 143: the relay loses nothing."""
    out, run_dir = tmp_path / "stopped", tmp_path / "run"
    cmd = [sys.executable, "-m", "nwc", "train", str(data_dir), "--out", str(out),
           "--run-dir", str(run_dir), "--max-steps", "100000", "--schedule", "open",
           "--checkpoint-minutes", "0.002", *TINY_ARGS]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    try:
        _wait_for_checkpoint(run_dir, 3)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if "stopped by SIGTERM" in x)
    step = int(line.split(" at step ")[1].split(":")[0])
    assert json.loads((run_dir / "ckpt.json").read_text())["step"] == step >= 3
    assert not out.with_suffix(".json").exists()  # no half-finished tier


def test_a_continued_tier_carries_its_lineage(trained: Path, data_dir: Path,
                                              tmp_path: Path) -> None:
    src = json.loads(trained.with_suffix(".json").read_text())["meta"]
    out = tmp_path / "more"
    r = train_cli(data_dir, "--out", out, "--init-from", trained.with_suffix(".json"),
                  "--max-steps", "3", *TINY_ARGS)
    assert r.returncode == 0, r.stderr
    meta = json.loads(out.with_suffix(".json").read_text())["meta"]
    t = meta["training"]
    assert t["steps"] == 3 and t["total_steps"] == src["training"]["steps"] + 3
    assert t["init_from"] == "mini"
    assert t["total_cpu_minutes"] >= src["training"]["cpu_minutes"]
    steps = [p["total_steps"] for p in meta["history"]]
    assert steps == sorted(steps) and steps[-1] == t["total_steps"]
    assert len(meta["history"]) == len(src["history"]) + 1
    r = subprocess.run([sys.executable, "-m", "nwc", "tiers", "--history",
                        str(out.with_suffix(".json"))], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.strip().splitlines()[2:]
    assert len(rows) == len(meta["history"]) and rows[-1].split()[0] == str(t["total_steps"])


def test_history_plot_is_a_png_and_never_clobbers(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"

    def tiers(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nwc", "tiers", *args],
                              capture_output=True, text=True, env=_env(), timeout=120)

    r = tiers("--history", "speech-lpc-layered", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "L3 kbps" in r.stdout
    before = png.read_bytes()
    r = tiers("--history", "speech-lpc-layered", "--plot", str(png))
    assert r.returncode == 1 and "exists" in r.stderr and png.read_bytes() == before
    r = tiers("--plot", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "--history" in r.stderr and not (tmp_path / "x.png").exists()


def test_dev_evaluation_leaves_training_with_its_threads() -> None:
    """ViSQOL's numba code set torch's thread count to the core count during training's dev
    evaluation, and every later step of a one-thread run went 2-15x slower (issue 15)."""
    from nwc.evaluation import metrics
    from nwc.train.evaluate import evaluate
    from test_quality_music import build_tiny_music_tier

    if metrics.missing_packages(("visqol",)):
        pytest.skip("visqol-python is not installed")
    torch.set_num_threads(1)
    rows = evaluate(build_tiny_music_tier(), [speech_like(2.0, 44100, 1, seed=5)[:, 0]])
    assert [r["layers"] for r in rows] == [1, 2] and all(np.isfinite(r["visqol"]) for r in rows)
    assert torch.get_num_threads() == 1


def test_dev_evaluation_restores_threads_whatever_a_metric_does(monkeypatch) -> None:
    from nwc.train import evaluate as ev
    from test_quality_music import build_tiny_music_tier

    def greedy(x: np.ndarray, y: np.ndarray, sr: int) -> dict[str, float]:
        torch.set_num_threads(3)
        return {"si_snr": 0.0}

    monkeypatch.setattr(ev, "clip_scores", greedy)
    torch.set_num_threads(1)
    ev.evaluate(build_tiny_music_tier(), [speech_like(0.5, 44100, 1, seed=6)[:, 0]])
    assert torch.get_num_threads() == 1
