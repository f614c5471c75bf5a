"""Resumable run state: safetensors for tensors, JSON for the rest, no pickle.

A checkpoint holds the model's and the optimizer's ``state_dict()`` (any optimizer: its
tensors by parameter index and key, its scalars and parameter groups in JSON), torch's RNG
state and the trainer's own JSON state (step, time, rate controllers, sampler RNG, history).
The tensors go to a file named by the step, then the JSON that names that file replaces the
previous JSON (a rename), then older tensor files are removed: a kill at any moment leaves one
whole checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT = 3
TENSORS = "ckpt.safetensors"
STATE = "ckpt.json"


def exists(path: Path) -> bool:
    return (path / STATE).exists()


def _tensors_file(path: Path, state: dict[str, Any]) -> Path:
    return path / state.get("tensors", TENSORS)


def save(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
         state: dict[str, Any]) -> None:
    """Write the run folder ``path`` atomically (tensors, then the JSON that names them)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in osd["state"].items():
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{key}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = v
    tensors["rng.torch"] = torch.get_rng_state()
    name = f"ckpt-{int(state.get('step', 0))}.safetensors"
    doc = dict(state, format=FORMAT, tensors=name, opt_groups=osd["param_groups"],
               opt_scalars=scalars)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / (name + ".tmp")))
    os.replace(path / (name + ".tmp"), path / name)
    (path / (STATE + ".tmp")).write_text(json.dumps(doc))
    os.replace(path / (STATE + ".tmp"), path / STATE)
    for old in path.glob("ckpt*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def set_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Replace the learning curve in the run folder's JSON (atomically), tensors untouched."""
    doc = json.loads((path / STATE).read_text())
    doc["history"] = history
    (path / (STATE + ".tmp")).write_text(json.dumps(doc))
    os.replace(path / (STATE + ".tmp"), path / STATE)


def load(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and torch RNG from ``path``; returns the trainer's state."""
    state = json.loads((path / STATE).read_text())
    tensors = load_file(str(_tensors_file(path, state)))
    if state.get("format") != FORMAT:
        return _load_legacy(tensors, state, model, opt)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                          strict=True)
    per_param: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            per_param.setdefault(int(pid), {})[key] = v
    for pid, values in state["opt_scalars"].items():
        per_param.setdefault(int(pid), {}).update(values)
    opt.load_state_dict({"state": per_param, "param_groups": state["opt_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return state


def _load_legacy(tensors: dict[str, torch.Tensor], state: dict[str, Any],
                 model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Runs written before format 3 (Adam's moments by group and index)."""
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if not any(k.startswith("stages.") for k in weights):  # a single-module run (format 1)
        weights = {f"stages.0.{k}": v for k, v in weights.items()}
    model.load_state_dict(weights, strict=True)
    if "ctrl" not in state:  # single-layer controller state of format-1 runs
        state["ctrl"] = [[state["log_lam"], state["ema"]]]
        state["rate_fix"] = [state.get("rate_fix", 1.0)]
    for i, group in enumerate(opt.param_groups):
        for j, p in enumerate(group["params"]):
            key = f"opt.{i}.{j}"
            if f"{key}.exp_avg" in tensors:
                opt.state[p] = {
                    "step": torch.tensor(state["opt_steps"][f"{i}.{j}"]),
                    "exp_avg": tensors[f"{key}.exp_avg"].to(p.device),
                    "exp_avg_sq": tensors[f"{key}.exp_avg_sq"].to(p.device),
                }
    return state
