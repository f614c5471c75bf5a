"""The coding path's inference engine in NumPy: a tier's networks without torch.

The same weights (read from the tier's safetensors with ``safetensors.numpy``) and the same
layer plans as ``model.py`` (``layerplan.py``: built from the tier's ``NWCConfig``; a test
walks the torch modules and checks they list the same layers, so the topology keeps one
definition). Activations are channels-last ``(N, T, C)`` float32 arrays:
1x1 convolutions are single matmuls, wider ones one matmul over an im2col view (or one per
tap where that view would be large), depthwise ones one einsum over a sliding window, and
the transposed filterbank one matmul plus ``kernel / stride`` shifted adds.

torch remains the training engine and the ``--device cuda`` path. The two engines' latents
differ by float rounding (summation order), so their symbols agree except for latents within
rounding of a quantization boundary, and their decoded audio within ~1e-6; a stream written by
either decodes with either. A cascade's closed loop runs this engine's own decoder, so a
stream it writes truncates to exactly what a shorter encode by it writes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .config import CascadeConfig, NWCConfig
from .layerplan import (
    DEC_TAP,
    ENC_TAP,
    SKIP_DEC,
    SKIP_ENC,
    Conv,
    ConvT,
    Gated,
    Layer,
    LReLU,
    SubPixel,
    decoder_plan,
    encoder_plan,
)

_SLOPE = np.float32(0.2)  # the leaky ReLU slope of model.py
_IM2COL_MAX = 1 << 22     # im2col views up to this many floats (16 MB); above, a matmul per tap


# --- kernels on channels-last (N, T, C) float32 arrays -----------------------------------

class _ConvW:
    """A convolution's weights, laid out once for the kernels below."""

    def __init__(self, w: np.ndarray, b: np.ndarray | None) -> None:
        self.cout, self.cin_g, self.k = w.shape
        self.b = None if b is None else np.ascontiguousarray(b, np.float32)
        w = np.asarray(w, np.float32)
        self.depth = np.ascontiguousarray(w[:, 0, :].T)                 # (K, Cout), groups
        self.mat = np.ascontiguousarray(w.transpose(2, 1, 0).reshape(self.k * self.cin_g,
                                                                      self.cout))  # (K·Cin, Cout)
        self.taps = np.ascontiguousarray(w.transpose(2, 1, 0))          # (K, Cin, Cout)


def _pad_t(x: np.ndarray, pad: int) -> np.ndarray:
    if not pad:
        return x
    n, t, c = x.shape
    out = np.zeros((n, t + 2 * pad, c), np.float32)
    out[:, pad:pad + t] = x
    return out


def conv1d(x: np.ndarray, w: _ConvW, stride: int = 1, padding: int = 0,
           dilation: int = 1) -> np.ndarray:
    """``F.conv1d`` on (N, T, Cin) → (N, Tout, Cout); dense or depthwise (groups = Cin)."""
    n, t, cin = x.shape
    groups = cin // w.cin_g
    if w.k == 1 and stride == 1 and padding == 0 and groups == 1:
        y = x.reshape(n * t, cin) @ w.mat
        y = y.reshape(n, t, w.cout)
    else:
        xp = _pad_t(x, padding)
        tout = (xp.shape[1] - dilation * (w.k - 1) - 1) // stride + 1
        span = (tout - 1) * stride + 1
        if groups == 1:
            if n * tout * w.k * cin <= _IM2COL_MAX:
                s = xp.strides
                view = np.lib.stride_tricks.as_strided(
                    xp, (n, tout, w.k, cin), (s[0], s[1] * stride, s[1] * dilation, s[2]),
                    writeable=False)
                y = (view.reshape(n * tout, w.k * cin) @ w.mat).reshape(n, tout, w.cout)
            else:
                y = np.zeros((n * tout, w.cout), np.float32)
                for k in range(w.k):
                    o = k * dilation
                    y += np.ascontiguousarray(xp[:, o:o + span:stride]).reshape(-1, cin) \
                        @ w.taps[k]
                y = y.reshape(n, tout, w.cout)
        elif groups == cin and w.cin_g == 1:
            mult = w.cout // cin
            xr = np.repeat(xp, mult, axis=2) if mult > 1 else xp   # output o reads input o//mult
            view = np.lib.stride_tricks.sliding_window_view(xr, dilation * (w.k - 1) + 1, axis=1)
            view = view[:, : span : stride, :, ::dilation]          # (N, Tout, Cout, K)
            y = np.einsum("ntck,kc->ntc", view, w.depth)  # one C loop: ~3x the tap-by-tap adds
        else:
            raise ValueError(f"unsupported grouped convolution ({cin} -> {w.cout}, "
                             f"{groups} groups)")
    if w.b is not None:
        y += w.b
    return y


def conv_transpose1d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int,
                     padding: int) -> np.ndarray:
    """``F.conv_transpose1d`` on (N, T, Cin) with weight (Cin, Cout, K), K a multiple of
    stride: one matmul, then tap block j of input step i lands on output block i + j."""
    cin, cout, k = w.shape
    n, t, _ = x.shape
    q = k // stride
    z = (x.reshape(n * t, cin) @ w.reshape(cin, cout * k)).reshape(n, t, cout, q, stride)
    out = np.zeros((n, t + q - 1, stride, cout), np.float32)
    for j in range(q):
        out[:, j:j + t] += z[:, :, :, j, :].transpose(0, 1, 3, 2)
    out = out.reshape(n, (t + q - 1) * stride, cout)[:, padding:(t + q - 1) * stride - padding]
    return out if b is None else out + b


def _lrelu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x * _SLOPE, out=x)   # slope < 1: max(x, 0.2x) is the leaky ReLU


def _subpixel(x: np.ndarray, r: int) -> np.ndarray:
    n, t, c = x.shape   # out[t·r + i, c'] = in[t, c'·r + i], as SubPixel1d on (N, C, T)
    return x.reshape(n, t, c // r, r).transpose(0, 1, 3, 2).reshape(n, t * r, c // r)


class Network:
    """One NWC module's weights and its runnable encoder and decoder."""

    def __init__(self, cfg: NWCConfig, weights: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        self.w = weights
        self._convs: dict[str, _ConvW] = {}
        self.enc = encoder_plan(cfg)
        self.dec = decoder_plan(cfg)
        if cfg.harp and cfg.plan != "fast":
            raise ValueError("HARP-Net skips are built for the fast layer plan")
        for layer in self._all_layers():
            self._prepare(layer)

    def _all_layers(self) -> list[Layer]:
        return self.enc + self.dec + ([SKIP_ENC, *SKIP_DEC] if self.cfg.harp else [])

    def _conv_w(self, key: str) -> _ConvW:
        if key not in self._convs:
            w = self.w[f"{key}.weight"]
            if w.ndim != 3:
                raise ValueError(f"{key}.weight is not a 1-D convolution's weight")
            self._convs[key] = _ConvW(w, self.w.get(f"{key}.bias"))
        return self._convs[key]

    def _prepare(self, layer: Layer) -> None:
        if isinstance(layer, Conv):
            self._conv_w(layer.key)
        elif isinstance(layer, ConvT):
            self.w[f"{layer.key}.weight"]  # noqa: B018 - present, or KeyError now
        elif isinstance(layer, Gated):
            for part in ("squeeze", "depthwise", "expand"):
                self._conv_w(f"{layer.key}.{part}")
            if f"{layer.key}.skip.weight" in self.w:
                self._conv_w(f"{layer.key}.skip")

    def keys(self) -> set[str]:
        """State-dict keys the plan reads (a tier's file must hold exactly these)."""
        out: set[str] = set()
        for layer in self._all_layers():
            if isinstance(layer, Conv | ConvT):
                out |= {f"{layer.key}.weight", f"{layer.key}.bias"}
            elif isinstance(layer, Gated):
                parts = ["squeeze", "depthwise", "expand"]
                if f"{layer.key}.skip.weight" in self.w:
                    parts.append("skip")
                out |= {f"{layer.key}.{p}.{s}" for p in parts for s in ("weight", "bias")}
        return out

    def _gated(self, g: Gated, x: np.ndarray) -> np.ndarray:
        h = _lrelu(conv1d(x, self._conv_w(f"{g.key}.squeeze")))
        d = conv1d(h, self._conv_w(f"{g.key}.depthwise"), 1, g.dilation * (g.kernel - 1) // 2,
                   g.dilation)
        half = d.shape[2] // 2
        y = conv1d(d[:, :, :half] * np.tanh(d[:, :, half:]), self._conv_w(f"{g.key}.expand"))
        skip = f"{g.key}.skip"
        y += conv1d(x, self._conv_w(skip)) if skip in self._convs else x
        return _lrelu(y) if g.activate else y

    def run(self, layers: list[Layer], x: np.ndarray) -> np.ndarray:
        for layer in layers:
            if isinstance(layer, Gated):
                x = self._gated(layer, x)
            elif isinstance(layer, Conv):
                x = conv1d(x, self._conv_w(layer.key), layer.stride, layer.padding,
                           layer.dilation)
            elif isinstance(layer, LReLU):
                x = _lrelu(x)
            elif isinstance(layer, SubPixel):
                x = _subpixel(x, layer.r)
            else:
                x = conv_transpose1d(x, self.w[f"{layer.key}.weight"],
                                     self.w.get(f"{layer.key}.bias"), layer.stride,
                                     layer.padding)
        return x

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(B, frame) → latents (B, symbol_channels, steps), before quantization."""
        x = np.ascontiguousarray(frames, np.float32)[:, :, None]
        if not self.cfg.harp:
            y = self.run(self.enc, x)
        else:
            h = self.run(self.enc[:ENC_TAP], x)
            y = np.concatenate([self.run(self.enc[ENC_TAP:], h), self.run([SKIP_ENC], h)],
                               axis=2)
        return y.transpose(0, 2, 1)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(B, symbol_channels, steps) dequantized latents → (B, frame)."""
        x = np.ascontiguousarray(np.asarray(latents, np.float32).transpose(0, 2, 1))
        if not self.cfg.harp:
            return self.run(self.dec, x)[:, :, 0]
        c = self.cfg.code_channels
        h = self.run(self.dec[:DEC_TAP], np.ascontiguousarray(x[:, :, :c])) \
            + self.run(SKIP_DEC, np.ascontiguousarray(x[:, :, c:]))
        return self.run(self.dec[DEC_TAP:], h)[:, :, 0]


# --- quantizers: symbols as quantize.py's to_symbols/from_symbols --------------------------

def round_clip(y: np.ndarray, half: int) -> np.ndarray:
    """Round latents to integers in [-half, half], shifted to symbols 0..2·half (NaN → 0)."""
    v = np.where(np.isfinite(y), y, np.float32(0.0))
    return (np.clip(np.rint(v), -half, half) + half).astype(np.int32)


class NoiseSymbols:
    """``NoiseQuantizer`` at inference: rounding."""

    def __init__(self, levels: int) -> None:
        self.half = levels // 2
        self.n_symbols = 2 * self.half + 1

    def to_symbols(self, y: np.ndarray) -> np.ndarray:
        return round_clip(np.asarray(y, np.float32), self.half)

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        return s.astype(np.float32) - self.half


class CentroidSymbols:
    """``SoftmaxQuantizer`` at inference: nearest learned centroid of tanh(latent)."""

    def __init__(self, centroids: np.ndarray) -> None:
        self.centroids = np.sort(np.asarray(centroids, np.float32))
        self.n_symbols = self.centroids.shape[0]

    def to_symbols(self, y: np.ndarray) -> np.ndarray:
        c = self.centroids
        if c.shape[0] < 2:
            return np.zeros(np.shape(y), np.int32)
        mids = (c[1:] + c[:-1]) * np.float32(0.5)
        v = np.tanh(np.asarray(y, np.float32))
        return np.searchsorted(mids, np.where(np.isfinite(v), v, np.float32(0.0))
                               ).astype(np.int32)

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        return self.centroids[s]


class LSFSymbols:
    """``lpc_torch.LSFQuantizer`` at inference: a per-LSF step around a fixed mean."""

    def __init__(self, w: dict[str, np.ndarray], levels: int) -> None:
        self.mean = np.asarray(w["lsf.mean"], np.float32)
        self.log_step = np.asarray(w["lsf.log_step"], np.float32)
        self.q = NoiseSymbols(levels)

    @property
    def n_symbols(self) -> int:
        return self.q.n_symbols

    def to_symbols(self, lsf: np.ndarray) -> np.ndarray:
        """(N, order) LSFs → (N, order, 1) integer symbols."""
        v = (np.asarray(lsf, np.float32) - self.mean) / np.exp(self.log_step)
        return self.q.to_symbols(v[..., None])

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        """(N, order, 1) symbols → (N, order) stabilized LSFs (float64)."""
        from .lpc import stabilize

        step = np.exp(self.log_step.astype(np.float64))
        return stabilize(self.mean.astype(np.float64)
                         + step * self.q.from_symbols(s)[..., 0].astype(np.float64))


# --- the cascade ------------------------------------------------------------------------

class Stage:
    """One NWC module: network plus its quantizer's symbol mapping."""

    def __init__(self, cfg: NWCConfig, w: dict[str, np.ndarray]) -> None:
        self.net = Network(cfg, w)
        self.quantizer = NoiseSymbols(cfg.levels) if cfg.quantizer == "noise" \
            else CentroidSymbols(w["quantizer.centroids"])
        self.encode: Callable[[np.ndarray], np.ndarray] = self.net.encode
        self.decode: Callable[[np.ndarray], np.ndarray] = self.net.decode


class NpCascade:
    """``cascade.Cascade``'s coding interface (``encode_frames``/``decode_frames``) in NumPy."""

    def __init__(self, cfg: CascadeConfig, state: dict[str, np.ndarray]) -> None:
        if cfg.stages < 1:
            raise ValueError("a cascade needs at least one stage")
        self.cfg = cfg
        if not any(k.startswith("stages.") for k in state):  # format-1 tier: one module
            state = {f"stages.0.{k}": v for k, v in state.items()}
        self.stages = []
        used: set[str] = set()
        for k in range(cfg.stages):
            pre = f"stages.{k}."
            w = {key[len(pre):]: v for key, v in state.items() if key.startswith(pre)}
            stage = Stage(cfg.nwc, w)
            used |= {pre + key for key in stage.net.keys()}
            self.stages.append(stage)
        self.lsf = LSFSymbols(state, cfg.lsf_levels) if cfg.lpc else None
        # Strict, as torch's load_state_dict: nothing but the plan's tensors, the quantizers'
        # (training-only ones included) and the LSF quantizer's.
        missing = sorted(used - set(state))
        if missing:
            raise ValueError(f"missing tensors in the weights: {', '.join(missing[:4])}")
        extra = sorted(k for k in set(state) - used
                       if not (k.split(".")[2:3] == ["quantizer"] or
                               (cfg.lpc and k.startswith("lsf."))))
        if extra:
            raise ValueError(f"unexpected tensors in the weights: {', '.join(extra[:4])}")

    @property
    def code_steps(self) -> int:
        c = self.cfg.nwc
        return c.frame // (c.fb_stride * 2) if c.plan == "fast" else c.frame // 2

    @property
    def symbol_channels(self) -> int:
        return self.cfg.nwc.code_channels + self.cfg.nwc.harp

    def scale(self, k: int) -> float:
        return 1.0 if k == 0 else self.cfg.res_scale

    def encode_frames(self, frames: np.ndarray, n_stages: int) -> list[np.ndarray]:
        """(N, frame) normalised frames → symbols (N, C, T) of the first ``n_stages`` stages;
        the closed loop runs this engine's decoder, so every prefix is a valid encode."""
        x = np.ascontiguousarray(frames, dtype=np.float32)
        total: np.ndarray = np.zeros_like(x)
        symbols = []
        for k in range(n_stages):
            stage, s = self.stages[k], np.float32(self.scale(k))
            sym = stage.quantizer.to_symbols(stage.encode((x - total) * s))
            symbols.append(sym)
            if k + 1 < n_stages:
                total = total + stage.decode(stage.quantizer.from_symbols(sym)) / s
        return symbols

    def decode_frames(self, symbols: list[np.ndarray]) -> np.ndarray:
        """Symbols of the first len(symbols) stages → (N, frame) summed reconstruction."""
        total = None
        for k, sym in enumerate(symbols):
            stage = self.stages[k]
            y = stage.decode(stage.quantizer.from_symbols(sym)) / np.float32(self.scale(k))
            total = y if total is None else total + y
        assert total is not None
        return total
