"""MPEG-1 psychoacoustic model 1 (ISO/IEC 11172-3 Annex D): the global masking threshold per frame.

The threshold is the level (dB SPL, per FFT bin) below which added noise is inaudible in the
presence of the frame's own signal. It drives the psychoacoustic loss terms of the SPL'20 codec
(prior-art §E, ``train/losses.py``). Per frame of ``N`` samples (``N`` = FFT size; 512 is
Annex D's Layer I, 1024 its Layer II), following the Annex's steps 1 and 3-7:

* **Spectrum.** ``X(k) = 10 log10 |1/N Σ h(n) x(n) e^{-j2πkn/N}|²`` with the Annex's
  power-preserving Hann window ``h = sqrt(8/3) · hann``, shifted so that a full-scale sine
  (amplitude 1.0) centred on a bin reads 96 dB SPL there ("the maximum value corresponds to
  96 dB"). The calibration is fixed, not per frame, so silence yields the threshold in quiet
  (the SPL'20 code normalised every frame to a 96-dB maximum instead); ``gain_db`` sets the
  assumed playback level.
* **Tonal maskers.** Local maxima ``X(k) > X(k-1)``, ``X(k) >= X(k+1)``, ``k > 2``, that stand
  ``>= 7 dB`` above the lines ``k ± j``, ``j = 2..r(k)``, with the Annex's neighbourhoods
  ``r = 2`` (k < 63), ``3`` (k < 127), ``6`` (k < 255), ``12`` (k < 501), and ``k + r < N/2``
  (Layer I: ``k < 250``; Layer II: ``k < 500``). Level = power sum of lines ``k-1..k+1``.
* **Non-tonal maskers.** Lines within ``±r(k)`` of a tonal masker are removed; the rest of each
  critical band (``floor`` of its Bark value) is power-summed into one masker at the bin
  nearest the geometric mean frequency of the band's bins.
* **Decimation.** Maskers below the threshold in quiet where they sit are dropped; of tonal
  maskers closer than 0.5 Bark only the stronger survives (greedy, strongest first, which is
  the Annex's sliding 0.5-Bark window; the Annex decimates tonal maskers only).
* **Individual thresholds** at the sub-sampled bins ``i`` for masker ``j`` of level ``X``,
  ``dz = z(i) - z(j)``, only for ``-3 <= dz < 8``: ``LT = X + av + vf`` with masking index
  ``av = -1.525 - 0.275 z(j) - 4.5`` (tonal) or ``-1.525 - 0.175 z(j) - 0.5`` (non-tonal) and
  spreading ``vf = 17(dz+1) - (0.4X+6)`` (-3..-1), ``(0.4X+6) dz`` (-1..0), ``-17 dz`` (0..1),
  ``-(dz-1)(17-0.15X) - 17`` (1..8): steep below the masker, level-dependent above it.
* **Global threshold** ``LTg = 10 log10(10^{LTq/10} + Σ 10^{LT_tonal/10} + Σ 10^{LT_noise/10})``
  on the sub-sampled grid, then linearly interpolated (in dB) back to every FFT bin, as the
  SPL'20 code does (prior-art §E.1 step 6).

**Tables are generated, not transcribed**, so any sample rate works (16, 32, 44.1, 48 kHz, ...):
critical-band rate ``z(f) = 13 atan(0.00076 f) + 3.5 atan((f/7500)²)`` (Zwicker & Terhardt
1980) and threshold in quiet ``LTq(f) = 3.64 (f/1k)^-0.8 - 6.5 e^{-0.6 (f/1k - 3.3)²} +
1e-3 (f/1k)^4`` (Terhardt 1979) capped at 68 dB. These reproduce the Annex's tables D.1 (e.g.
44.1 kHz Layer I: 86.13 Hz -> 0.850 Bark, 25.87 dB; 19982.81 Hz -> 24.573 Bark, 68.00 dB).
The sub-sampled grid follows the Annex's bin rule: every bin up to 48, then the step doubles
at bins 48, 96 (and 192 for N >= 1024), up to the last bin at or below min(20.25 kHz, Nyquist):
106 points at 44.1 kHz and 102 at 48 kHz (Layer I, as in D.1b/c), 112 at 16 kHz (to Nyquist).
The tonal neighbourhoods stay defined in bins, as in the Annex, which uses the same bin rules
for all of its sample rates. The bit-rate dependent offset of the threshold in quiet (-12 dB
at >= 96 kbit/s per channel) is ``ath_offset_db``, 0 by default.

As in the Annex, maskers are placed at the grid point nearest their bin (their Bark value,
masking index and threshold in quiet are the grid point's). Known approximations: critical
bands are integer Bark intervals of the formula above rather than the Annex's tables D.2, and
the threshold between grid points is interpolated.

One implementation serves both uses: ``masking_threshold`` works on a batch of frames as torch
tensors on any device (training: computed from the clean target, no gradient), and
``signal_masking_threshold`` frames a whole numpy signal and returns numpy (frames x bins).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SPL_FULL_SCALE = 96.0     # dB SPL of the bin under a full-scale sine (Annex D's reference)
FLOOR_DB = -200.0         # spectra are floored here so silence has a finite level
TONAL_DB = 7.0            # a tonal peak stands this far above its neighbourhood
DECIMATE_BARK = 0.5       # tonal maskers closer than this keep only the stronger
ATH_CEILING_DB = 68.0     # the Annex's tables cap the threshold in quiet here
GRID_TOP_HZ = 20250.0     # the Annex's grids end at 19982.81 Hz (44.1 kHz), 20250 Hz (48 kHz)
# Tonal neighbourhood (Annex D step 4): bins k < bound test j = ±2..±reach.
TONAL_REACH = ((63, 2), (127, 3), (255, 6), (501, 12))
# Spreading function support in Bark (Annex D step 6).
SPREAD_LO, SPREAD_HI = -3.0, 8.0

# Hann window of the Annex, scaled to preserve power: sqrt(8/3) * 0.5 (1 - cos 2πn/N). A
# full-scale sine centred on a bin then has |X|² = (8/3)/16 = 1/6 there (before the offset).
_CALIBRATION = 10.0 ** (SPL_FULL_SCALE / 10.0) * 6.0


def bark(f: np.ndarray) -> np.ndarray:
    """Critical-band rate (Bark) of frequencies in Hz (Zwicker & Terhardt 1980)."""
    f = np.asarray(f, dtype=np.float64)
    return 13.0 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2)


def threshold_in_quiet(f: np.ndarray) -> np.ndarray:
    """Absolute threshold of hearing in dB SPL (Terhardt 1979), capped as in Annex D tables."""
    k = np.asarray(f, dtype=np.float64) / 1000.0
    with np.errstate(divide="ignore"):
        ath = 3.64 * k ** -0.8 - 6.5 * np.exp(-0.6 * (k - 3.3) ** 2) + 1e-3 * k ** 4
    return np.minimum(ath, ATH_CEILING_DB)


def _grid(n_fft: int, sample_rate: int) -> np.ndarray:
    """Sub-sampled bins of Annex D tables D.1: step 1 to bin 48, doubling at 48, 96, 192, ..."""
    edges = [48 * 2 ** m for m in range(8) if 48 * 2 ** m < n_fft / 4]
    top = int(math.floor(min(GRID_TOP_HZ, sample_rate / 2) * n_fft / sample_rate + 1e-9))
    bins, k = [], 1
    while k <= min(top, n_fft // 2):
        bins.append(k)
        k += 2 ** sum(e <= k for e in edges)
    return np.array(bins, dtype=np.int64)


@dataclass(frozen=True)
class Tables:
    """Frequency tables of the model for one sample rate and FFT size (all per FFT bin).

    ``reach`` is the tonal neighbourhood of each bin (0 where no tonal masker may sit);
    ``band`` the critical band of each bin (-1 for DC, which takes part in nothing);
    ``centre`` the bin of each band's non-tonal masker; ``grid`` the sub-sampled bins on which
    the threshold is evaluated; ``slot`` the grid point nearest each bin (lower on ties), where
    a masker at that bin is placed, as in the Annex.
    """

    sample_rate: int
    n_fft: int
    freq: np.ndarray
    bark: np.ndarray
    ath: np.ndarray
    reach: np.ndarray
    band: np.ndarray
    centre: np.ndarray
    grid: np.ndarray
    slot: np.ndarray

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


@functools.lru_cache(maxsize=16)
def tables(sample_rate: int, n_fft: int = 512) -> Tables:
    """Generate the model's tables for ``sample_rate`` and an ``n_fft``-point FFT."""
    if n_fft < 64 or sample_rate < 4000:
        raise ValueError(f"psychoacoustic model needs n_fft >= 64 and >= 4 kHz, "
                         f"got n_fft={n_fft}, sample_rate={sample_rate}")
    half = n_fft // 2
    k = np.arange(half + 1)
    freq = k * sample_rate / n_fft
    z = bark(freq)
    reach = np.zeros(half + 1, dtype=np.int64)
    for i in range(3, half + 1):
        r = next((r for bound, r in TONAL_REACH if i < bound), TONAL_REACH[-1][1])
        if i + r < half:
            reach[i] = r
    band = np.floor(z).astype(np.int64)
    band[0] = -1
    present = np.unique(band[1:])
    band = np.where(band >= 0, np.searchsorted(present, band), -1)   # dense 0..B-1
    centre = np.empty(len(present), dtype=np.int64)
    for b in range(len(present)):
        members = np.flatnonzero(band == b)
        geometric = np.exp(np.mean(np.log(freq[members])))
        centre[b] = members[np.argmin(np.abs(freq[members] - geometric))]
    grid = _grid(n_fft, sample_rate)
    slot = np.argmin(np.abs(grid[None, :] - k[:, None]), axis=1)
    return Tables(sample_rate, n_fft, freq, z, threshold_in_quiet(freq), reach, band, centre,
                  grid, slot)


@dataclass(frozen=True)
class _DeviceTables:
    """Tables as tensors on one device, plus the static matrices of the vectorised model."""

    ath: torch.Tensor            # (K,) threshold in quiet where a masker at each bin sits
    reach: torch.Tensor          # (K,)
    reaches: tuple[int, ...]     # distinct non-zero neighbourhoods, ascending
    bands: torch.Tensor          # (K, B) one-hot band membership (DC in none)
    centre: torch.Tensor         # (B,)
    near: torch.Tensor           # (K, 2W+1) neighbour at offset d-W within 0.5 Bark (not self)
    lower: torch.Tensor          # (2W+1,) offset < 0: wins ties (the lower bin is kept)
    bark: torch.Tensor           # (K,) Bark value of a masker at each bin (its grid slot)
    grid_bark: torch.Tensor      # (G,)
    grid_ath: torch.Tensor       # (G,)
    interp: torch.Tensor         # (G, K) linear interpolation from grid to bins


@functools.lru_cache(maxsize=16)
def _device_tables(sample_rate: int, n_fft: int, device: torch.device,
                   dtype: torch.dtype) -> _DeviceTables:
    t = tables(sample_rate, n_fft)
    z = t.bark[t.grid[t.slot]]   # maskers sit at their grid slot
    n = t.n_bins
    tonal_bins = np.flatnonzero(t.reach > 0)
    # Widest 0.5-Bark neighbourhood (in bins) around any bin that may hold a tonal masker.
    width = 1
    for k in tonal_bins:
        while k + width + 1 < n and z[k + width + 1] - z[k] < DECIMATE_BARK:
            width += 1
    offsets = np.arange(-width, width + 1)
    idx = np.arange(n)[:, None] + offsets[None, :]
    inside = (idx >= 0) & (idx < n) & (offsets[None, :] != 0)
    near = inside & (np.abs(z[np.clip(idx, 0, n - 1)] - z[:, None]) < DECIMATE_BARK)
    bands = np.zeros((n, len(t.centre)))
    bands[np.arange(1, n), t.band[1:]] = 1.0
    interp = np.zeros((len(t.grid), n))
    pos = np.interp(np.arange(n), t.grid, np.arange(len(t.grid)))   # fractional grid index
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(t.grid) - 1)
    frac = pos - lo
    np.add.at(interp, (lo, np.arange(n)), 1.0 - frac)
    np.add.at(interp, (hi, np.arange(n)), frac)

    def as_t(a: np.ndarray, dt: torch.dtype = dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dt, device=device)

    return _DeviceTables(
        ath=as_t(t.ath[t.grid[t.slot]]), reach=as_t(t.reach, torch.int64),
        reaches=tuple(int(r) for r in np.unique(t.reach[t.reach > 0])), bands=as_t(bands),
        centre=as_t(t.centre, torch.int64), near=as_t(near, torch.bool),
        lower=as_t(offsets < 0, torch.bool), bark=as_t(z), grid_bark=as_t(t.bark[t.grid]),
        grid_ath=as_t(t.ath[t.grid]), interp=as_t(interp))


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@functools.lru_cache(maxsize=16)
def _window(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    w = torch.hann_window(n, periodic=True, dtype=torch.float64) * math.sqrt(8.0 / 3.0)
    return (w * math.sqrt(_CALIBRATION) / n).to(device=device, dtype=dtype)


def spectrum_power(frames: torch.Tensor) -> torch.Tensor:
    """Calibrated power spectrum (..., N//2+1) of frames (..., N): ``10 log10`` of it is dB SPL.

    Hann-windowed as in Annex D; a full-scale sine centred on a bin reads 96 dB there.
    Differentiable, so the loss terms use it on the reconstruction too.
    """
    x = frames.to(_work_dtype(frames))
    spec = torch.fft.rfft(x * _window(x.shape[-1], x.device, x.dtype))
    return spec.real.square() + spec.imag.square()


def frame_spl(frames: torch.Tensor) -> torch.Tensor:
    """Sound pressure level (dB) per bin of frames (..., N), floored at ``FLOOR_DB``."""
    return 10.0 * torch.log10(spectrum_power(frames).clamp_min(10.0 ** (FLOOR_DB / 10.0)))


@dataclass
class Maskers:
    """Maskers that survive decimation: level in dB SPL at their bin, ``-inf`` at other bins."""

    tonal: torch.Tensor      # (..., N//2+1)
    nontonal: torch.Tensor   # (..., N//2+1)


def _shift(x: torch.Tensor, d: int, fill: float) -> torch.Tensor:
    """``out[..., k] = x[..., k + d]`` with ``fill`` past the ends."""
    out = torch.full_like(x, fill)
    if d > 0:
        out[..., :-d] = x[..., d:]
    elif d < 0:
        out[..., -d:] = x[..., :d]
    else:
        out.copy_(x)
    return out


def _neighbours(x: torch.Tensor, width: int, fill: float) -> torch.Tensor:
    """(F, K) -> (F, K, 2W+1): ``out[f, k, W + d] = x[f, k + d]``."""
    if x.dtype == torch.bool:   # constant padding has no bool kernel
        return _neighbours(x.to(torch.uint8), width, float(fill)).bool()
    return F.pad(x, (width, width), value=fill).unfold(-1, 2 * width + 1, 1)


def _find_maskers(spl: torch.Tensor, tb: _DeviceTables, ath_offset_db: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Annex D steps 4-5 on (F, K) levels: tonal levels and mask (F, K), non-tonal levels (F, B).

    Absent non-tonal maskers are ``-inf``; tonal levels are meaningful only where the mask is set.
    """
    power = 10.0 ** (spl / 10.0)
    reach = tb.reach
    tonal = (spl > _shift(spl, -1, -math.inf)) & (spl >= _shift(spl, 1, -math.inf)) & (reach > 0)
    for j in range(2, tb.reaches[-1] + 1):
        clear = ((spl - _shift(spl, j, -math.inf) >= TONAL_DB)
                 & (spl - _shift(spl, -j, -math.inf) >= TONAL_DB))
        tonal &= clear | (reach < j)
    level = 10.0 * torch.log10(power + _shift(power, -1, 0.0) + _shift(power, 1, 0.0))

    # Non-tonal: what the tonal neighbourhoods leave of each critical band.
    removed = torch.zeros_like(tonal)
    for r in tb.reaches:
        hit = (tonal & (reach == r)).to(spl.dtype).unsqueeze(1)
        removed |= F.max_pool1d(hit, 2 * r + 1, stride=1, padding=r).squeeze(1) > 0
    band_power = torch.where(removed, 0.0, power) @ tb.bands
    noise = 10.0 * torch.log10(band_power.clamp_min(10.0 ** (FLOOR_DB / 10.0)))

    # Decimation: below the threshold in quiet, then the 0.5-Bark rule among tonal maskers.
    ath = tb.ath + ath_offset_db
    noise = torch.where(noise >= ath[tb.centre], noise, -math.inf)
    tonal &= level >= ath
    width = (tb.near.shape[1] - 1) // 2
    level_nb = _neighbours(torch.where(tonal, level, -math.inf), width, -math.inf)
    mine = level.unsqueeze(-1)
    # Neighbour beats me if louder, or equally loud and lower in frequency.
    beats = tb.near & ((level_nb > mine) | ((level_nb == mine) & tb.lower))
    undecided, kept = tonal, torch.zeros_like(tonal)
    # Greedy strongest-first: a masker is kept once no undecided or kept masker within 0.5 Bark
    # beats it, and dropped once a kept one does. Terminates: the strongest undecided is kept.
    while bool(undecided.any()):
        alive = _neighbours(undecided | kept, width, False)
        new = undecided & ~(beats & alive).any(-1)
        kept |= new
        lost = (beats & _neighbours(kept, width, False)).any(-1)
        undecided = undecided & ~new & ~lost
    return level, kept, noise


def _spread_power(level: torch.Tensor, present: torch.Tensor, z: torch.Tensor, tonal: bool,
                  grid_bark: torch.Tensor) -> torch.Tensor:
    """Σ over maskers (F, M) at Bark ``z`` of ``10^{(X + av + vf)/10}`` on the grid: (F, G)."""
    x = torch.where(present, level, 0.0).unsqueeze(-1)          # (F, M, 1), finite everywhere
    # Masking index: -1.525 - 0.275 z - 4.5 (tonal) or -1.525 - 0.175 z - 0.5 (non-tonal).
    av = (-6.025 - 0.275 * z) if tonal else (-2.025 - 0.175 * z)
    d = grid_bark - z.unsqueeze(-1)                              # (F or 1, M, G)
    vf = torch.where(
        d < -1.0, 17.0 * (d + 1.0) - (0.4 * x + 6.0),
        torch.where(d < 0.0, (0.4 * x + 6.0) * d,
                    torch.where(d < 1.0, -17.0 * d, -(d - 1.0) * (17.0 - 0.15 * x) - 17.0)))
    valid = present.unsqueeze(-1) & (d >= SPREAD_LO) & (d < SPREAD_HI)
    return torch.where(valid, 10.0 ** ((x + av.unsqueeze(-1) + vf) / 10.0), 0.0).sum(1)


def _threshold_from_spl(spl: torch.Tensor, tb: _DeviceTables, ath_offset_db: float
                        ) -> torch.Tensor:
    level, tonal, noise = _find_maskers(spl, tb, ath_offset_db)
    total = 10.0 ** ((tb.grid_ath + ath_offset_db) / 10.0)
    total = total + _spread_power(noise, torch.isfinite(noise), tb.bark[tb.centre][None],
                                  False, tb.grid_bark)
    # Tonal maskers are few (tens per frame at most): spread only the loudest ``count`` slots.
    count = int(tonal.sum(-1).max())
    if count:
        top, at = torch.where(tonal, level, -math.inf).topk(count, dim=-1)
        total = total + _spread_power(top, torch.isfinite(top), tb.bark[at], True, tb.grid_bark)
    return (10.0 * torch.log10(total)) @ tb.interp


def _prepare(frames: torch.Tensor, sample_rate: int, gain_db: float | torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, _DeviceTables]:
    """Flatten to (F, N), compute the playback level (dB SPL) and fetch the tables."""
    if frames.dim() < 1 or frames.shape[-1] < 64:
        raise ValueError(f"frames must be (..., N) with N >= 64, got {tuple(frames.shape)}")
    x = frames.detach().reshape(-1, frames.shape[-1])
    dt = _work_dtype(x)
    gain = torch.as_tensor(gain_db, dtype=dt, device=x.device)
    gain = gain.expand(frames.shape[:-1]).reshape(-1, 1)
    spl = frame_spl(x) + gain
    return spl, gain, _device_tables(sample_rate, x.shape[-1], x.device, dt)


@torch.no_grad()
def masking_threshold(frames: torch.Tensor, sample_rate: int, *,
                      gain_db: float | torch.Tensor = 0.0,
                      ath_offset_db: float = 0.0) -> torch.Tensor:
    """Global masking threshold (..., N//2+1) in dB SPL of a batch of frames (..., N).

    Same device as ``frames``; float32 (float64 for float64 input); never carries a gradient.
    The FFT size is the frame length. ``gain_db`` (scalar or shaped like ``frames[..., 0]``)
    is the playback gain the model assumes: the threshold is computed for ``frames`` played that
    much louder, then referred back to the frames' own scale, so it always compares directly
    with ``frame_spl(frames)`` / ``spectrum_power(frames)``. ``ath_offset_db`` shifts the
    threshold in quiet (Annex D: -12 dB at >= 96 kbit/s per channel).
    """
    spl, gain, tb = _prepare(frames, sample_rate, gain_db)
    thr = _threshold_from_spl(spl, tb, ath_offset_db) - gain
    return thr.reshape(*frames.shape[:-1], thr.shape[-1])


@torch.no_grad()
def find_maskers(frames: torch.Tensor, sample_rate: int, *, gain_db: float | torch.Tensor = 0.0,
                 ath_offset_db: float = 0.0) -> Maskers:
    """Tonal and non-tonal maskers of frames (..., N) after decimation (dB SPL at playback)."""
    spl, _, tb = _prepare(frames, sample_rate, gain_db)
    level, tonal, noise = _find_maskers(spl, tb, ath_offset_db)
    tonal_db = torch.where(tonal, level, -math.inf)
    nontonal_db = torch.full_like(level, -math.inf)
    nontonal_db[:, tb.centre] = noise
    shape = (*frames.shape[:-1], level.shape[-1])
    return Maskers(tonal_db.reshape(shape), nontonal_db.reshape(shape))


def signal_masking_threshold(x: np.ndarray, sample_rate: int, *, n_fft: int = 512,
                             hop: int | None = None, gain_db: float = 0.0,
                             ath_offset_db: float = 0.0, chunk: int = 256) -> np.ndarray:
    """Masking threshold (frames, n_fft//2+1) in dB SPL of a whole mono signal, for precomputing.

    Frames start every ``hop`` samples (default ``n_fft``); the last one is zero-padded. Runs
    the same vectorised model in float64 on the CPU, ``chunk`` frames at a time.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    hop = hop or n_fft
    count = max(1, -(-max(x.shape[0] - n_fft, 0) // hop) + 1)
    padded = np.zeros((count - 1) * hop + n_fft)
    padded[: x.shape[0]] = x
    frames = torch.from_numpy(padded).unfold(0, n_fft, hop)
    out = [masking_threshold(frames[i: i + chunk], sample_rate, gain_db=gain_db,
                             ath_offset_db=ath_offset_db) for i in range(0, count, chunk)]
    return torch.cat(out).numpy().astype(np.float32)
