"""The training objective's registry, presets and checkpoint state, on tiny synthetic cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nwc.train import checkpoint
from nwc.train.config import ConfigError, TrainConfig
from nwc.train.objective import PRESETS, TERMS, Pair, Reference, distortion, weights_for


def _pair(noise: float, seed: int = 0) -> Pair:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(4096, dtype=torch.float32) / 16000
    ref = torch.sin(2 * torch.pi * 440 * t).repeat(2, 1)
    rec = ref + noise * torch.randn(ref.shape, generator=g)
    return Pair(rec, Reference(ref, 16000, torch.full((2, 1), 0.1)))


@pytest.mark.parametrize("name", list(TERMS))
def test_each_term_is_zero_for_a_perfect_decode_and_grows_with_noise(name: str) -> None:
    fn = TERMS[name][0]
    exact, small, large = (float(fn(_pair(n))) for n in (0.0, 0.01, 0.1))
    assert exact == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < small < large


def test_distortion_is_the_weighted_sum_of_the_named_terms() -> None:
    p = _pair(0.05)
    w = {"time": 1.0, "mel": 0.1}
    want = float(TERMS["time"][0](p)) + 0.1 * float(TERMS["mel"][0](p))
    assert float(distortion(p, w)) == pytest.approx(want, rel=1e-6)
    assert float(distortion(p, {"time": 0.0, "mel": 0.0})) == 0.0


def test_presets_and_overrides() -> None:
    assert weights_for("plain") == PRESETS["plain"]
    assert weights_for("plain", {"mel": 0.5, "nmr": 0.2}) == {"time": 1.0, "mel": 0.5,
                                                              "nmr": 0.2}
    with pytest.raises(KeyError, match="unknown loss term"):
        weights_for("plain", {"bogus": 1.0})


@pytest.mark.parametrize(("kw", "message"), [
    ({"loss": "nope"}, "unknown loss"),
    ({"loss_weights": {"bogus": 1}}, "unknown loss term"),
    ({"layer_bitrates": [8000, 6000]}, "increase"),
    ({"freeze": 1}, "--init-from"),
    ({"max_steps": 0}, "--max-steps"),
])
def test_config_check_refuses_what_cannot_train(kw: dict, message: str) -> None:
    cfg = TrainConfig(data="d", out="o", **{"max_steps": 1, **kw})
    with pytest.raises(ConfigError, match=message):
        cfg.check()


def test_checkpoint_restores_model_optimizer_and_rng(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    checkpoint.save(tmp_path, model, opt, {"step": 3})
    after = torch.rand(2)
    twin = torch.nn.Linear(4, 3)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    state = checkpoint.load(tmp_path, twin, twin_opt)
    assert state["step"] == 3
    assert torch.equal(torch.rand(2), after)  # the RNG continues where the run was
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
        sa, sb = opt.state[a], twin_opt.state[b]
        assert all(torch.equal(sa[k], sb[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert not list(tmp_path.glob("*.tmp"))


def test_train_help_names_every_loss_term() -> None:
    from nwc.cli.train_cmd import LOSS_TERMS
    assert set(LOSS_TERMS) == set(TERMS)
