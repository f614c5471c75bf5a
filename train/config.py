"""What one training run is: ``TrainConfig`` (recorded in the tier JSON) and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import STEREO_VIEWS
from .kernels import KERNELS, PRECISIONS
from .objective import PRESETS, weights_for

SCHEDULES = ("cosine", "open", "restarts")


class ConfigError(ValueError):
    """A training configuration that cannot run."""


@dataclass
class TrainConfig:
    """Everything one training run needs (recorded in the tier JSON)."""

    data: str
    out: str
    bitrate: float = 16000.0           # target real bitrate of the full stream, bits/s (mono)
    layer_bitrates: list = field(default_factory=list)  # cumulative per layer; [] = [bitrate]
    lpc: bool = False                  # LPC front end (module 0 of the cascade)
    freeze: int = 0                    # lower stages kept fixed (greedy layer-wise training)
    res_scale: float = 4.0
    loss: str = "plain"                # a preset of objective.PRESETS
    loss_weights: dict = field(default_factory=dict)  # term -> weight, over the preset's
    w_lsd: float = 0.002               # LSF quantizer's distortion weight, per dB²
    name: str = ""
    sample_rate: int = 16000
    max_steps: int = 0                 # 0 = no step limit
    max_minutes: float = 0.0           # 0 = no time limit (wall clock, the run's total)
    max_cpu_minutes: float = 0.0       # 0 = no CPU-time limit (the run's total process CPU)
    batch: int = 8                     # packets per step
    lr: float = 1e-3
    lr_final: float = 1e-4
    warmup_steps: int = 200            # steps without quantization
    ramp_fraction: float = 0.4         # part of the run over which the rate target falls
    ramp_start: float = 2.0            # initial target as a multiple of the final one
    schedule: str = "cosine"           # "cosine": over the budget; "open"/"restarts": no end
    ramp_steps: int = 2000             # "open"/"restarts": steps over which the rate target falls
    cycle_steps: int = 10000           # "restarts": steps of one cosine cycle, lr → lr_final
    w_penalty: float = 0.1
    eval_minutes: float = 10.0
    eval_clips: int = 16
    checkpoint_minutes: float = 3.0
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    kernels: str = "auto"              # kernels.KERNELS: fast (CPU default) or the modules
    precision: str = "auto"            # kernels.PRECISIONS: bf16 autocast where native
    resume: bool = False
    init_from: str = ""
    run_dir: str = ""
    model: dict = field(default_factory=dict)   # NWCConfig overrides
    stereo_data: str = "mix"           # data.STEREO_VIEWS: mono mixes, or the coded channels
    packet_frames: int = 16

    @property
    def rates(self) -> list[float]:
        """Cumulative bitrate of each layer, bits/s."""
        return [float(r) for r in self.layer_bitrates] or [float(self.bitrate)]

    @property
    def weights(self) -> dict[str, float]:
        """The objective's term weights: the preset's, with this run's overrides."""
        return weights_for(self.loss, self.loss_weights)

    def check(self) -> None:
        """Refuse configurations that cannot train, with a one-line reason."""
        if self.loss not in PRESETS:
            raise ConfigError(f"unknown loss {self.loss!r}; use one of {', '.join(PRESETS)}")
        try:
            self.weights  # noqa: B018 - raises on unknown terms
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
        if self.kernels not in KERNELS:
            raise ConfigError(f"unknown kernels {self.kernels!r}; use {', '.join(KERNELS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; use "
                              f"{', '.join(PRECISIONS)}")
        if self.stereo_data not in STEREO_VIEWS:
            raise ConfigError(f"unknown stereo view {self.stereo_data!r}; use "
                              f"{', '.join(STEREO_VIEWS)}")
        if self.cycle_steps < 1:
            raise ConfigError("--cycle-steps must be at least 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; use "
                              f"{', '.join(SCHEDULES)}")
        rates = self.rates
        if any(b <= a for a, b in zip(rates, rates[1:], strict=False)):
            raise ConfigError("layer bitrates must increase")
        if self.freeze and not self.init_from:
            raise ConfigError("--freeze needs --init-from")
        if not self.max_steps and not self.max_minutes and not self.max_cpu_minutes:
            raise ConfigError("give --max-steps, --max-minutes or --max-cpu-minutes")


def model_options(quantizer: str, plan: str, channels: int, code_channels: int,
                  harp: int) -> dict:
    """NWCConfig overrides from the command line's architecture options: the noise
    quantizer's odd level count keeps a zero symbol, and the bottleneck of each gated block
    is half its width (prior-art §A)."""
    return {"quantizer": quantizer, "levels": 31 if quantizer == "noise" else 32,
            "plan": plan, "channels": channels, "narrow": channels // 2,
            "code_channels": code_channels, "harp": harp}
