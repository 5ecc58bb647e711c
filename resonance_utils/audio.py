"""Alvin Lucier's "I Am Sitting in a Room", simulated: a voice re-recorded in a room again and again.

One pass (the feedback operator T on a waveform): the loudspeaker band-limits the sound, the room convolves it
with its impulse response h, the recording optionally keeps some dry signal, the microphone adds noise, and the
level is normalised. In the frequency domain a noiseless pass multiplies the spectrum by
    G(f) = B(f) * ((1 - w) + w * H(f))            (w = wet_mix, B = loudspeaker band, H = room)
so after n passes X_n = X_0 * G^n / scale: the frequency where |G| peaks wins. That predicted resonance f* is
compared with the dominant frequency the simulation actually reaches.

The state lives on a fixed window of L samples (L >= voice + impulse response - 1). tail="circular" makes each
pass a circular convolution on that window: pass 1 equals the linear convolution exactly, later reverberation
tails wrap around instead of growing without bound, and the DFT-domain prediction is exact. tail="truncate"
convolves linearly and keeps the first L samples (the tape runs as long as the first recording).

Because the loop is linear, how fast it forgets its start is known in closed form: the runner-up bin of |G| in
the band loses a factor r = |G2| / |G1| per pass on the top one (`spectral_gap`, `predicted_mixing_time`);
`multistart_mixing` runs several starts side by side and fits that rate from their spectra's distance.
"""
from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import fft as sfft

from .specs import LucierSpec, parse_vector
from .store import file_fingerprint

SPEED_OF_SOUND = 343.0  # m/s at about 20 °C


# ---------------------------------------------------------------------------------------------------- inputs
def default_voice_path() -> Path:
    """The real CMU ARCTIC recording (a0007, 4 s, 16 kHz) shipped inside the pysptk package."""
    spec = importlib.util.find_spec("pysptk")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default voice ships with the pysptk package, which is not installed: "
                                "`pip install pysptk`, or give your own recording as voice_path")
    path = Path(spec.submodule_search_locations[0]) / "example_audio_data" / "arctic_a0007.wav"
    if not path.exists():
        raise FileNotFoundError(f"pysptk is installed but {path} is missing; give your own voice_path")
    return path


def load_audio(path, *, sample_rate: int, what: str = "voice_path", max_seconds: float = 0.0) -> np.ndarray:
    """Read WAV/FLAC/OGG, mix to mono, resample to sample_rate; float64 in [-1, 1].

    Errors name the parameter and file: missing, not audio, empty, silent, or non-finite.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a folder, not an audio file")
    try:
        data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError for non-audio
        raise ValueError(f"{what}: {path} is not a readable audio file (WAV, FLAC or OGG): {e}") from None
    if data.size == 0:
        raise ValueError(f"{what}: {path} is empty (0 samples)")
    wave = data.mean(axis=1)
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{what}: {path} contains NaN or infinite samples")
    if np.max(np.abs(wave)) < 1e-6:
        raise ValueError(f"{what}: {path} is silent (peak below -120 dBFS)")
    if sr != sample_rate:
        import soxr  # librosa's own resampler backend, called directly (no numba warm-up)

        wave = soxr.resample(wave, sr, sample_rate, quality="HQ")
    if max_seconds and max_seconds > 0:
        wave = wave[: int(round(max_seconds * sample_rate))]
    return np.asarray(wave, dtype=np.float64)


def shoebox_rir(room_dims, rt60: float, source_pos, mic_pos, *, sample_rate: int, highpass: bool = True,
                max_order: int = -1) -> np.ndarray:
    """Impulse response of a shoebox room by the image-source method (pyroomacoustics, no ray tracing, so
    deterministic). Wall absorption from Sabine's formula for the requested RT60."""
    import pyroomacoustics as pra

    dims = np.array(parse_vector("room_dims", room_dims, 3))
    src = np.array(parse_vector("source_pos", source_pos, 3))
    mic = np.array(parse_vector("mic_pos", mic_pos, 3))
    if np.any(dims <= 0):
        raise ValueError(f"room_dims must be positive lengths in metres, got {tuple(dims)}")
    for name, p in (("source_pos", src), ("mic_pos", mic)):
        if np.any(p <= 0) or np.any(p >= dims):
            raise ValueError(f"{name} {tuple(p)} is not inside the room {tuple(dims)}")
    if not rt60 > 0:
        raise ValueError(f"rt60 must be > 0 seconds, got {rt60}")
    try:
        absorption, order = pra.inverse_sabine(rt60, dims)
    except ValueError as e:
        raise ValueError(f"rt60={rt60} s is not reachable in a {tuple(dims)} m room ({e})") from None
    if max_order >= 0:
        order = max_order
    before = pra.constants.get("rir_hpf_enable")
    pra.constants.set("rir_hpf_enable", bool(highpass))  # a global switch in pyroomacoustics: set and restore
    try:
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=order,
                           ray_tracing=False, air_absorption=False)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
    finally:
        pra.constants.set("rir_hpf_enable", before)
    return h


def room_modes(room_dims, *, n: int = 10, c: float = SPEED_OF_SOUND) -> list[dict]:
    """The n lowest rigid-wall modes f = c/2 * sqrt((nx/Lx)^2 + (ny/Ly)^2 + (nz/Lz)^2), for reference."""
    lx, ly, lz = parse_vector("room_dims", room_dims, 3)
    top = n + 2
    modes = []
    for nx in range(top):
        for ny in range(top):
            for nz in range(top):
                if nx == ny == nz == 0:
                    continue
                f = c / 2 * np.sqrt((nx / lx) ** 2 + (ny / ly) ** 2 + (nz / lz) ** 2)
                modes.append({"freq_hz": float(f), "mode": (nx, ny, nz)})
    modes.sort(key=lambda m: m["freq_hz"])
    return modes[:n]


# ---------------------------------------------------------------------------------------------------- the loop
def butterworth_gain(freqs: np.ndarray, low_hz: float, high_hz: float, order: int = 2) -> np.ndarray:
    """Zero-phase magnitude of a Butterworth band-pass (the loudspeaker's range); 0 turns an edge off."""
    g = np.ones_like(freqs, dtype=np.float64)
    if high_hz > 0:
        g /= np.sqrt(1 + (freqs / high_hz) ** (2 * order))
    if low_hz > 0:
        with np.errstate(divide="ignore"):
            g /= np.sqrt(1 + (low_hz / np.maximum(freqs, 1e-12)) ** (2 * order))
        g[freqs == 0] = 0.0
    return g


@dataclass
class LucierRoom:
    """The operator T of the Lucier chain on a window of `length` samples.

    Build it with LucierRoom.build(rir, voice_length, ...); call .step(x, ctx) through chain.run_chain.
    """
    rir: np.ndarray
    length: int
    sample_rate: int
    wet_mix: float = 1.0
    band_low_hz: float = 0.0
    band_high_hz: float = 0.0
    band_order: int = 2
    add_noise: bool = False
    snr_db: float = 30.0
    normalise: str = "rms"
    tail: str = "circular"
    target_level: float = 0.1  # rms (or peak) every pass is scaled to; set from the voice

    def __post_init__(self):
        if self.tail not in ("circular", "truncate"):
            raise ValueError(f"tail must be 'circular' or 'truncate', got {self.tail!r}")
        if self.normalise not in ("rms", "peak", "none"):
            raise ValueError(f"normalise must be 'rms', 'peak' or 'none', got {self.normalise!r}")
        if not 0.0 < self.wet_mix <= 1.0:
            raise ValueError(f"wet_mix must be in (0, 1] (1 = only the room's recording), got {self.wet_mix}")
        if self.band_high_hz and not 0 < self.band_high_hz <= self.sample_rate / 2:
            raise ValueError(f"band_high_hz must be in (0, {self.sample_rate / 2}] or 0 (off), got {self.band_high_hz}")
        if self.band_low_hz < 0 or (self.band_high_hz and self.band_low_hz >= self.band_high_hz):
            raise ValueError(f"band_low_hz must be >= 0 and below band_high_hz, got {self.band_low_hz}")
        self.rir = np.asarray(self.rir, dtype=np.float64)
        if self.rir.ndim != 1 or self.rir.size == 0 or not np.all(np.isfinite(self.rir)) or not np.any(self.rir):
            raise ValueError("the impulse response must be a non-empty, finite, non-zero 1-D array")
        # circular: transfer on the window's own DFT grid; truncate: on a grid long enough for linear convolution
        self.n_fft = self.length if self.tail == "circular" else sfft.next_fast_len(self.length + self.rir.size - 1)
        self.freqs = sfft.rfftfreq(self.n_fft, 1 / self.sample_rate)
        self.H = sfft.rfft(self.rir, self.n_fft)
        self.B = butterworth_gain(self.freqs, self.band_low_hz, self.band_high_hz, self.band_order)
        self.G = self.B * ((1 - self.wet_mix) + self.wet_mix * self.H)

    @classmethod
    def build(cls, rir, voice_length: int, **kw) -> "LucierRoom":
        """The window holds the voice plus one full reverberation tail, rounded up to a fast FFT size."""
        length = sfft.next_fast_len(int(voice_length) + len(rir) - 1)
        return cls(rir=rir, length=length, **kw)

    def window(self, voice: np.ndarray) -> np.ndarray:
        """Gen 0: the voice, zero-padded to the window and normalised like every later pass."""
        x = np.zeros(self.length)
        x[: voice.size] = voice[: self.length]
        return self._normalise(x).astype(np.float32)

    def step(self, x: np.ndarray, ctx=None) -> np.ndarray:
        """One pass through loudspeaker, room and microphone. ctx.rng supplies the noise (chain.StepContext).

        Computed in float64, stored as float32 (a recording's precision): a cached state is then exactly the
        computed one, so a resumed chain continues bit for bit."""
        y = sfft.irfft(sfft.rfft(np.asarray(x, np.float64), self.n_fft) * self.G, self.n_fft)[: self.length]
        if self.add_noise:
            rng = ctx.rng if ctx is not None else np.random.default_rng(0)
            rms = np.sqrt(np.mean(y ** 2))
            y = y + rng.standard_normal(y.size) * rms * 10 ** (-self.snr_db / 20)
        return self._normalise(y).astype(np.float32)

    def _normalise(self, y: np.ndarray) -> np.ndarray:
        if self.normalise == "none":
            return y
        level = np.sqrt(np.mean(y ** 2)) if self.normalise == "rms" else np.max(np.abs(y))
        if level == 0 or not np.isfinite(level):
            raise FloatingPointError("a pass came out silent or non-finite; the room or band removes everything")
        return y * (self.target_level / level)

    def gain_on(self, freqs: np.ndarray) -> np.ndarray:
        """|G| interpolated onto another frequency grid (the analysis grid of the window)."""
        return np.interp(freqs, self.freqs, np.abs(self.G))


# ------------------------------------------------------------------------------------------------ the physics
def spectrum(passes: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectra of one pass (L,) or many (P, L): (freqs, |X|)."""
    passes = np.atleast_2d(passes)
    return sfft.rfftfreq(passes.shape[-1], 1 / sample_rate), np.abs(sfft.rfft(passes, axis=-1))


def analysis_band(sample_rate: int, band_low_hz: float = 0.0, band_high_hz: float = 0.0) -> tuple[float, float]:
    """Where dominant frequencies are looked for: the loudspeaker's band (an edge of 0 is open: 0 Hz or Nyquist).

    Not the voice's own band: float32 rounding and microphone noise put energy in every bin, so after enough
    passes the peak of |G| wins wherever it is, even where the voice itself was 60 dB down.
    """
    return float(band_low_hz or 0.0), float(band_high_hz or sample_rate / 2)


def voice_band(voice: np.ndarray, sample_rate: int, *, within_db: float = 40.0) -> tuple[float, float]:
    """The frequency range where the voice's long-term spectrum (Welch) is within `within_db` of its peak:
    reported beside f*, to say whether the room's resonance lies inside the voice's main band."""
    from scipy.signal import welch

    f, p = welch(voice, fs=sample_rate, nperseg=min(2048, voice.size))
    db = 10 * np.log10(np.maximum(p, 1e-30) / p.max())
    inside = f[db >= -within_db]
    return float(inside.min()), float(inside.max())


def _in_band(freqs, band):
    mask = (freqs >= band[0]) & (freqs <= band[1])
    if not mask.any():
        raise ValueError(f"no frequency bin inside the analysis band {band}")
    return mask


def dominant_frequency(passes: np.ndarray, sample_rate: int, band: tuple[float, float]) -> np.ndarray:
    """The frequency of the largest spectral peak of each pass, within `band`."""
    freqs, mag = spectrum(passes, sample_rate)
    mask = _in_band(freqs, band)
    return freqs[mask][np.argmax(mag[:, mask], axis=1)]


def spectral_entropy(passes: np.ndarray, sample_rate: int, band: tuple[float, float]) -> np.ndarray:
    """Shannon entropy (bits) of each pass's normalised power spectrum within `band`: contraction lowers it."""
    freqs, mag = spectrum(passes, sample_rate)
    power = mag[:, _in_band(freqs, band)] ** 2
    p = power / power.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)


def predicted_resonance(room: LucierRoom, band: tuple[float, float]) -> float:
    """f* = argmax over the band of |G(f)| on the window's frequency grid: |B H| pure, |B ((1-w) + wH)| with a
    dry share, i.e. the argmax of |1 + a H| with a = w / (1 - w)."""
    freqs = sfft.rfftfreq(room.length, 1 / room.sample_rate)
    mask = _in_band(freqs, band)
    return float(freqs[mask][np.argmax(room.gain_on(freqs)[mask])])


def predicted_spectrum(room: LucierRoom, voice_window: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """|X_0| |G|^n on the window's grid, computed in logs so that large n does not overflow."""
    freqs, mag0 = spectrum(voice_window, room.sample_rate)
    with np.errstate(divide="ignore"):
        log_mag = np.log(mag0[0]) + n * np.log(room.gain_on(freqs))
    return freqs, np.exp(log_mag - np.max(log_mag[np.isfinite(log_mag)]))


def lock_in_pass(dominant_hz: np.ndarray, f_star: float, tolerance_hz: float) -> int | None:
    """The first pass from which the dominant frequency stays within tolerance of f* to the end (None if never)."""
    off = np.abs(np.asarray(dominant_hz) - f_star) > tolerance_hz
    if off[-1]:
        return None
    idx = np.flatnonzero(off)
    return int(idx[-1] + 1) if idx.size else 0


# ------------------------------------------------------------------------------ mixing: the spectral gap
@dataclass(frozen=True)
class SpectralGap:
    """The top two |G| bins of the loop in an analysis band, and what they imply for mixing.

    Each pass multiplies the spectrum by G on the window's DFT grid and rescales it (normalisation changes every
    bin by the same factor), so after n passes the runner-up bin's amplitude relative to the top bin's is its
    start value times ratio**n: ratio is the loop's per-pass rate of forgetting its start.
    """

    band: tuple  # (low, high) Hz, the analysis band
    f1: float  # Hz, the top bin (predicted_resonance)
    g1: float  # its |G|
    f2: float  # Hz, the runner-up bin
    g2: float  # its |G|
    ratio: float  # r = g2 / g1, in [0, 1]
    bin_hz: float  # the grid's spacing, sample_rate / length
    exact: bool  # True for tail="circular" (G is exactly the loop's eigenvalues); "truncate": an approximation
    outside_ratio: float  # the largest |G| outside the band / g1 (> 1: a mode outside the band leads the full
    #                       spectrum; the band's own spectrum still mixes at ratio)

    def mixing_time(self, eps: float = 0.05) -> float:
        """Passes after which the runner-up mode has lost a factor eps on the top one: log(eps) / log(ratio)
        (inf when ratio == 1: two equal top modes never sort out; 1 when ratio == 0)."""
        if not 0 < eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        if self.ratio >= 1:
            return math.inf
        if self.ratio <= 0:
            return 1.0
        return float(np.log(eps) / np.log(self.ratio))

    def to_json(self) -> dict:
        return {"band": list(self.band), "f1_hz": self.f1, "g1": self.g1, "f2_hz": self.f2, "g2": self.g2,
                "ratio": self.ratio, "bin_hz": self.bin_hz, "exact": self.exact,
                "outside_ratio": self.outside_ratio}


def _window_gain(room: LucierRoom) -> tuple[np.ndarray, np.ndarray]:
    """(freqs, |G|) on the window's own DFT grid (the grid spectra are analysed on)."""
    freqs = sfft.rfftfreq(room.length, 1 / room.sample_rate)
    gain = np.abs(room.G) if room.tail == "circular" else room.gain_on(freqs)  # circular: the same grid, exactly
    return freqs, gain


def spectral_gap(room: LucierRoom, band: tuple[float, float]) -> SpectralGap:
    """The top two |G| values inside `band` on the window's DFT grid, their frequencies and r = |G2| / |G1|.

    With the default room of 01_lucier_room (quick profile) the two are neighbouring bins of one resonance,
    0.17 Hz apart, r = 0.9966: the loop locks onto the resonance's frequency within a few passes, but sorts out
    which of the two bins wins only over hundreds (predicted_mixing_time). For tail="circular" the loop is
    diagonal on this grid and r is exact; for tail="truncate" (a truncated linear convolution) it is the
    approximation of a window much longer than the impulse response (`exact` says which)."""
    freqs, gain = _window_gain(room)
    mask = _in_band(freqs, band)
    if mask.sum() < 2:
        raise ValueError(f"the analysis band {band} holds {int(mask.sum())} frequency bin(s): the spectral gap "
                         "needs two")
    idx = np.flatnonzero(mask)
    order = idx[np.argsort(gain[idx], kind="stable")[::-1][:2]]
    g1, g2 = float(gain[order[0]]), float(gain[order[1]])
    if g1 <= 0:
        raise ValueError(f"|G| is zero everywhere in the analysis band {band}: the room passes nothing there")
    outside = float(gain[~mask].max() / g1) if (~mask).any() else 0.0
    return SpectralGap(band=(float(band[0]), float(band[1])), f1=float(freqs[order[0]]), g1=g1,
                       f2=float(freqs[order[1]]), g2=g2, ratio=g2 / g1, bin_hz=room.sample_rate / room.length,
                       exact=room.tail == "circular", outside_ratio=outside)


def predicted_mixing_time(room: LucierRoom, band: tuple[float, float], *, eps: float = 0.05) -> float:
    """log(eps) / log(|G2| / |G1|): the passes after which the runner-up mode's amplitude relative to the top
    mode has fallen by a factor eps, for any start with energy in both bins (spectral_gap; inf when the two top
    bins have equal gain). It counts from a start whose two bins are comparable: a start dominated by the
    runner-up bin (a2 = |X0(f2)| / |X0(f1)| >> 1) needs log(a2) / -log(r) passes more to reach that point."""
    return spectral_gap(room, band).mixing_time(eps)


MIXING_VERDICTS = ("mixed", "mixing", "separated", "inconclusive")


@dataclass(frozen=True)
class MixingReport:
    """Several starts of the Lucier loop run side by side: how fast their spectra forget where they started.

    Arrays are per recorded pass (every stride-th, and the last). Two distances between starts, both from their
    magnitude spectra inside the band (see multistart_mixing): `distance` (unit-norm spectra, bounded: how far
    apart) and `mode_distance` (spectra relative to their own top-bin amplitude: what the rate is fitted on).
    Our reconstruction, like the verdict.
    """

    names: tuple  # the starts, in the order of pair_distance's rows
    passes: np.ndarray  # (P,) recorded pass indices, 0 first
    pair_distance: np.ndarray  # (P, S, S) unit-norm distance between every two starts, in [0, sqrt(2)]
    distance: np.ndarray  # (P,) its root mean square over pairs
    noise_distance: np.ndarray | None  # (P,) noisy loop: the reference start against its noise twin; else None
    excess: np.ndarray  # (P,) sqrt(max(distance^2 - noise_distance^2, 0)); = distance without noise
    relative: np.ndarray  # (P,) excess / excess[0]: the "mixed" criterion reads it
    predicted_distance: np.ndarray  # (P,) `distance` of the closed form |X0| |G|^n (what a noiseless loop gives)
    mode_distance: np.ndarray  # (P,) RMS over pairs of the top-bin-relative distance
    mode_noise_distance: np.ndarray | None  # (P,) the same for the reference start and its noise twin
    mode_excess: np.ndarray  # (P,) sqrt(max(mode_distance^2 - mode_noise_distance^2, 0)): the fitted curve
    rate: float  # fitted per-pass geometric rate of mode_excess (nan: no fit)
    rate_interval: tuple  # its interval (see multistart_mixing)
    rate_se: float  # the regression's standard error of log(rate)
    fit_passes: tuple  # (first, last) pass of the points fitted; (None, None) without a fit
    n_fit: int  # points in the fit
    predicted_rate: float  # r = |G2| / |G1| (spectral_gap)
    mixing_time: float  # log(eps) / log(rate): passes per factor eps at the fitted rate (inf: rate >= 1)
    mixing_time_interval: tuple  # from rate_interval
    predicted_mixing_time: float  # log(eps) / log(r)
    passes_to_eps: int | None  # the first recorded pass from which relative stays <= eps to the end (None: never)
    floor: float | None  # noisy loop: the median noise distance over the last quarter / excess[0]; else None
    final_frequencies: dict  # start -> its dominant frequency (Hz, in the band) at the last pass
    gap: SpectralGap
    verdict: str  # one of MIXING_VERDICTS
    reason: str
    settings: dict  # eps, n_passes, stride, seed, fit_from (the one used), level, noisy, noise_reference, ...

    def to_json(self) -> dict:
        f = lambda x: None if x is None or not np.isfinite(x) else float(x)  # noqa: E731
        return {"verdict": self.verdict, "reason": self.reason, "names": list(self.names),
                "rate": f(self.rate), "rate_interval": [f(x) for x in self.rate_interval],
                "rate_se": f(self.rate_se), "predicted_rate": self.predicted_rate,
                "mixing_time": f(self.mixing_time), "mixing_time_interval": [f(x) for x in self.mixing_time_interval],
                "predicted_mixing_time": f(self.predicted_mixing_time), "passes_to_eps": self.passes_to_eps,
                "fit_passes": list(self.fit_passes), "n_fit": self.n_fit, "floor": f(self.floor),
                "final_relative_distance": float(self.relative[-1]),
                "final_frequencies": {k: float(v) for k, v in self.final_frequencies.items()},
                "gap": self.gap.to_json(), "settings": dict(self.settings)}


def _pair_matrix(u: np.ndarray) -> np.ndarray:
    """(S, S) L2 distances between the rows of u."""
    return np.sqrt(np.maximum(((u[:, None, :] - u[None, :, :]) ** 2).sum(-1), 0.0)) if len(u) <= 8 else \
        np.sqrt(np.maximum((u ** 2).sum(1)[:, None] + (u ** 2).sum(1)[None] - 2 * u @ u.T, 0.0))


def _fit_rate(n: np.ndarray, d: np.ndarray, level: float) -> tuple[float, float, float]:
    """Least squares of log d against n: (slope, its SE corrected for serial correlation, the interval's
    half-width), in log-rate units."""
    from scipy import stats

    y = np.log(d)
    slope, icpt = np.polyfit(n, y, 1)
    dof = len(n) - 2
    resid = y - icpt - slope * n
    se = float(np.sqrt(np.sum(resid ** 2) / dof / np.sum((n - n.mean()) ** 2)))
    # serially correlated residuals (noise remembered over ~1 / (1 - r) passes) carry fewer independent points:
    # the AR(1) variance inflation (1 + rho) / (1 - rho), rho the residuals' lag-1 autocorrelation
    rho = float(np.clip(np.sum(resid[1:] * resid[:-1]) / max(np.sum(resid ** 2), 1e-300), 0.0, 0.99))
    se *= math.sqrt((1 + rho) / (1 - rho))
    half = len(n) // 2
    drift = abs(np.polyfit(n[half:], y[half:], 1)[0] - np.polyfit(n[:half], y[:half], 1)[0])
    resolution = 1e-6 / float(n[-1] - n[0])  # float32 states resolve changes of log distance of about 1e-6
    return float(slope), se, max(float(stats.t.ppf(0.5 + level / 2, dof) * se + drift), resolution)


def multistart_mixing(room: LucierRoom, starts: dict, band: tuple[float, float], *, n_passes: int,
                      stride: int = 10, eps: float = 0.05, seed: int = 0, fit_from: int | None = None,
                      level: float = 0.95, floor_factor: float = 2.0, noise_reference: str | None = None,
                      trajectories: list | None = None) -> MixingReport:
    """Run several starts through the loop side by side and measure how fast they forget where they started.

    room: a LucierRoom (its add_noise and snr_db decide whether the loop is noisy). starts: {name: waveform}, at
    least two, each put into the room's window (room.window: zero-padded, normalised) as pass 0. band: the
    analysis band (setup.band). n_passes: passes of room.step per start (cheap: 100 passes of a 5 s window take
    about 0.3 s, so run several predicted mixing times: predicted_mixing_time). Every stride-th pass (and the
    last) is recorded. Noise: start i draws pass n's noise from runtime.generation_rng(seed + i, n), the stream
    chain.run_chain(seed=seed + i) gives it, so start i here is the chain that call would run.

    Two distances between starts, both from magnitude spectra inside the band (phase is ignored, so a sound and
    its time reversal are at 0), both summarised by the root mean square over pairs of starts (every pair decays
    at the same asymptotic rate, and a mean of squares, unlike the largest pair, stays unbiased when the noise
    floor is subtracted):
      distance: spectra scaled to unit L2 norm, so in [0, sqrt(2)] (= sqrt(2 (1 - cos))). How far apart the
        starts are; the "mixed" criterion reads it. For a linear loop it decays like r^n only once every start's
        top bin leads: a start led by the runner-up bin keeps it flat, or drives it up, for a while (saturation).
      mode_distance: spectra divided by their own amplitude in the top bin f1. After n passes start A's bin k
        then reads exactly a_k (|G_k| / |G_1|)^n (a_k = |X0_A(k)| / |X0_A(f1)|: normalisation cancels), so the
        distance between two starts is exactly sqrt(sum_k (a_k^A - a_k^B)^2 r_k^(2n)), a sum of geometric terms
        whose slowest is r^n with r = |G2| / |G1|: it decays like r^n from the first pass, its local rate
        rising to r as the faster bins die out. The rate is fitted on it. (1 - cos would go like r^(2n).)
    predicted_distance is `distance` for the closed form |X0| |G|^n: a noiseless circular loop must match it.
    trajectories: for a noiseless room only, the passes already run, one list per start (in starts' order) of its
    states at the recorded passes (chain.run_chain(room.step, room.window(start), n_passes).states[::stride] when
    stride divides n_passes): read instead of running the passes again. A noiseless pass ignores its noise stream,
    so this is the report the passes here would give (tested bit for bit).

    A noisy loop (room.add_noise) decays to a floor, not to 0: two runs of one start with independent noise end
    apart too. The reference start (noise_reference, default the first) is run a second time with noise from
    stream 1 (generation_rng(seed + i, n, 1)); its distance to itself is the noise distance, and the excess
    sqrt(max(d^2 - noise^2, 0)) (independent noise adds in squares, and every pair holds the twin's noise part in
    expectation) is what decays. Without noise the excess is the distance itself.

    The rate: log(mode excess) fitted by least squares against the pass, over the recorded passes from fit_from
    to the last one above the floor, skipping any below it (noisy: above = mode_distance > floor_factor x its
    noise distance; noiseless: relative > 1e-6, float32's resolution): the whole run for a noiseless run of a
    few mixing times (early passes can fall below too: a start with little energy at f1 has a noisy top bin).
    fit_from=None (default): a third of the way to that end, once the faster bins have died out.
    Interval: exp(slope +- (t_level SE + |slope of the second half - slope of the first half|)), with SE
    inflated by the AR(1) factor sqrt((1 + rho) / (1 - rho)) of the residuals' lag-1 autocorrelation rho (a
    noisy loop remembers its noise for ~1 / (1 - r) passes), and the half-window difference covering a local
    rate still drifting towards r (a deterministic loop's residuals are smooth curvature, not noise). With
    noise the half-width also holds how far the slope moves when only the points at least 2 x floor_factor
    above the floor are kept. At least 1e-6 of log distance across the window (float32 resolution).
    mixing_time = log(eps) / log(rate), to compare with predicted_mixing_time = log(eps) / log(r).
    Known limit: noise that enters the runner-up bin slows the measured decay a little, a bias the interval
    does not cover when the noise is faint and the fit therefore tight (measured: 0.902 for r = 0.9 at 40 dB in
    a 257-bin test room, outside its interval; 0.9966008 [0.996594, 0.996608] for r = 0.9965956 at 30 dB in the
    default room, inside).

    Verdict (our reconstruction; the first that applies):
      "mixed": relative (the unit-norm excess over its pass-0 value) <= eps at every recorded pass of the last
        quarter of the run: the starts' distance above the noise floor fell to eps of where it began and stays.
      "mixing": the rate's interval lies below 1: the starts are forgetting, at the fitted rate (the verdict
        comes from the rate, not from where the run stops).
      "separated": the rate's interval reaches 1 (no decay resolved), relative stays above eps, and the run
        covered at least two predicted mixing times (or r == 1): the starts keep apart.
      "inconclusive": otherwise (fewer than 4 recorded passes to fit, or a run too short to call a flat distance
        separated); the reason says which.
    """
    from types import SimpleNamespace

    from .runtime import generation_rng

    if not isinstance(room, LucierRoom):
        raise TypeError(f"room must be a LucierRoom, got {type(room).__name__}")
    if not isinstance(starts, dict) or len(starts) < 2:
        raise ValueError("starts must be a dict {name: waveform} with at least two starts")
    for name, v in (("n_passes", n_passes), ("stride", stride)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
    n_passes, stride = int(n_passes), int(stride)
    if stride > n_passes:
        raise ValueError(f"stride={stride} exceeds n_passes={n_passes}: nothing is recorded between pass 0 and "
                         "the last")
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not floor_factor >= 1:
        raise ValueError(f"floor_factor must be >= 1, got {floor_factor}")
    if fit_from is not None and (isinstance(fit_from, bool) or int(fit_from) != fit_from
                                 or not 0 <= fit_from < n_passes):
        raise ValueError(f"fit_from must be a pass in [0, n_passes={n_passes}) or None, got {fit_from!r}")
    names = tuple(starts)
    waves = []
    for name in names:
        w = np.asarray(starts[name], dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or not np.any(w):
            raise ValueError(f"start {name!r} must be a non-empty, finite, non-silent 1-D waveform, got shape "
                             f"{w.shape}")
        waves.append(w)
    noisy = bool(room.add_noise)
    ref = names[0] if noise_reference is None else noise_reference
    if ref not in names:
        raise ValueError(f"noise_reference={noise_reference!r} is not one of the starts {list(names)}")
    i_ref = names.index(ref)
    recorded = sorted(set(range(0, n_passes + 1, stride)) | {n_passes})
    if trajectories is not None:
        if noisy:
            raise ValueError("trajectories are for a noiseless room: with noise the reference start's twin needs "
                             "its own passes, so let multistart_mixing run them")
        if len(trajectories) != len(names) or any(len(t) != len(recorded) for t in trajectories):
            raise ValueError(f"trajectories must hold, for each of the {len(names)} starts, its states at the "
                             f"{len(recorded)} recorded passes (0 to {n_passes} every {stride}), got lengths "
                             f"{[len(t) for t in trajectories]}")

    gap = spectral_gap(room, band)
    freqs, gain = _window_gain(room)
    mask = _in_band(freqs, band)
    top = int(np.argmin(np.abs(freqs[mask] - gap.f1)))  # f1's index among the band's bins
    x = np.stack([room.window(w) for w in waves])  # (S, L) float32, as the chain stores it
    twin = x[i_ref].copy() if noisy else None
    with np.errstate(divide="ignore"):
        log_mag0 = np.log(np.abs(sfft.rfft(x.astype(np.float64), axis=-1))[:, mask])
        log_gain = np.log(gain[mask])
    log_mag0, log_gain = np.maximum(log_mag0, -745.0), np.maximum(log_gain, -745.0)  # log(0): a dead bin

    iu = np.triu_indices(len(names), 1)
    rms = lambda m: float(np.sqrt(np.mean(m[iu] ** 2)))  # noqa: E731 - RMS over pairs of starts
    passes, pair, mode, noise, mode_noise, pred = [], [], [], [], [], []
    at = {n: k for k, n in enumerate(recorded)}  # recorded pass -> its index in a trajectory
    for n in (recorded if trajectories is not None else range(n_passes + 1)):
        if trajectories is not None:
            x = np.stack([np.asarray(t[at[n]]) for t in trajectories])
        elif n:
            x = np.stack([room.step(x[i], SimpleNamespace(rng=generation_rng(seed + i, n)))
                          for i in range(len(names))])
            if noisy:
                twin = room.step(twin, SimpleNamespace(rng=generation_rng(seed + i_ref, n, 1)))
        if n not in at:
            continue
        rows = x if not noisy else np.concatenate([x, twin[None]])
        mag = np.abs(sfft.rfft(rows.astype(np.float64), axis=-1))[:, mask]
        u = mag / np.linalg.norm(mag, axis=1, keepdims=True)
        v = mag / np.maximum(mag[:, top:top + 1], np.finfo(np.float64).tiny)
        passes.append(n)
        pair.append(_pair_matrix(u[: len(names)]))
        mode.append(rms(_pair_matrix(v[: len(names)])))
        if noisy:
            noise.append(float(np.linalg.norm(u[i_ref] - u[-1])))
            mode_noise.append(float(np.linalg.norm(v[i_ref] - v[-1])))
        lp = log_mag0 + n * log_gain
        up = np.exp(lp - lp.max(axis=1, keepdims=True))
        pred.append(rms(_pair_matrix(up / np.linalg.norm(up, axis=1, keepdims=True))))
    recorded = np.asarray(passes)
    pair, mode = np.stack(pair), np.asarray(mode)
    distance = np.sqrt(np.mean(pair[:, iu[0], iu[1]] ** 2, axis=1))
    noise_distance = np.asarray(noise) if noisy else None
    mode_noise_distance = np.asarray(mode_noise) if noisy else None
    sub = lambda d, w: np.sqrt(np.maximum(d ** 2 - w ** 2, 0.0)) if noisy else d.copy()  # noqa: E731
    excess, mode_excess = sub(distance, noise_distance), sub(mode, mode_noise_distance)
    if not excess[0] > 0:
        raise ValueError("the starts have one magnitude spectrum in the band at pass 0 (distance 0): give starts "
                         "that differ (a sound and its time reversal look the same to this distance)")
    relative = excess / excess[0]
    last_q = recorded >= recorded[-1] - max(n_passes // 4, stride)
    last_q[-2:] = True  # at least two points
    floor = float(np.median(noise_distance[last_q]) / excess[0]) if noisy else None

    above = (mode > floor_factor * mode_noise_distance if noisy else relative > 1e-6) & (mode_excess > 0)
    end = int(recorded[np.flatnonzero(above)[-1]]) if above.any() else 0
    fit_from = end // 3 if fit_from is None else int(fit_from)
    use = (recorded >= fit_from) & (recorded <= end) & above
    fit_n, fit_d = recorded[use].astype(np.float64), mode_excess[use]
    nan2 = (math.nan, math.nan)
    if len(fit_n) >= 4:
        slope, se, width = _fit_rate(fit_n, fit_d, level)
        if noisy:  # how far the slope moves when only points twice as far above the floor are kept
            strict = use & (mode > 2 * floor_factor * mode_noise_distance)
            if strict.sum() >= 4:
                width += abs(_fit_rate(recorded[strict].astype(np.float64), mode_excess[strict], level)[0] - slope)
        rate, rate_iv = math.exp(slope), (math.exp(slope - width), math.exp(slope + width))
        fit_passes = (int(fit_n[0]), int(fit_n[-1]))
    else:
        rate, rate_iv, se, fit_passes = math.nan, nan2, math.nan, (None, None)
    mt = lambda r: math.inf if not r < 1 else float(np.log(eps) / np.log(r)) if r > 0 else 1.0  # noqa: E731
    mixing_time = mt(rate) if np.isfinite(rate) else math.nan
    mixing_iv = (mt(rate_iv[0]), mt(rate_iv[1])) if np.isfinite(rate) else nan2
    predicted_time = gap.mixing_time(eps)
    off = relative > eps
    passes_to_eps = None if off[-1] else int(recorded[np.flatnonzero(off)[-1] + 1]) if off.any() else 0

    last_rel = relative[last_q]
    fit_text = (f"rate {rate:.6g} [{rate_iv[0]:.6g}, {rate_iv[1]:.6g}] over passes {fit_passes[0]}-"
                f"{fit_passes[1]} (predicted r = {gap.ratio:.6g})" if np.isfinite(rate) else "no rate fitted")
    if (last_rel <= eps).all():
        verdict = "mixed"
        reason = (f"the distance between starts{' above the noise floor' if noisy else ''} is <= eps={eps:g} of its "
                  f"start over the last quarter (at most {last_rel.max():.3g}; from pass {passes_to_eps}); "
                  f"{fit_text}")
    elif np.isfinite(rate) and rate_iv[1] < 1:
        verdict = "mixing"
        reason = (f"{fit_text}: the starts forget at this rate, a factor eps={eps:g} every {mixing_time:.0f} passes "
                  f"(predicted {predicted_time:.0f}); now at {relative[-1]:.3g} of the start")
    elif np.isfinite(rate) and (n_passes >= 2 * predicted_time or not math.isfinite(predicted_time)):
        verdict = "separated"
        reason = (f"{fit_text}: no decay resolved, and the distance stays at {relative[-1]:.3g} of its start "
                  f"(> eps={eps:g}) after {n_passes} passes")
    elif np.isfinite(rate):
        verdict = "inconclusive"
        reason = (f"{fit_text}: no decay resolved yet, but the run ({n_passes} passes) is shorter than two "
                  f"predicted mixing times ({predicted_time:.0f} each): run longer")
    else:
        verdict = "inconclusive"
        reason = (f"only {len(fit_n)} recorded passes from fit_from={fit_from} to pass {end} lie above the floor "
                  "(4 needed): record more often (smaller stride) or start the fit earlier")
    finals = {name: float(freqs[mask][np.argmax(np.abs(sfft.rfft(x[i].astype(np.float64)))[mask])])
              for i, name in enumerate(names)}
    settings = {"eps": eps, "n_passes": n_passes, "stride": stride, "seed": seed, "fit_from": int(fit_from),
                "level": level, "noisy": noisy, "noise_reference": ref if noisy else None,
                "floor_factor": floor_factor, "snr_db": float(room.snr_db) if noisy else None}
    return MixingReport(names=names, passes=recorded, pair_distance=pair, distance=distance,
                        noise_distance=noise_distance, excess=excess, relative=relative,
                        predicted_distance=np.asarray(pred), mode_distance=mode,
                        mode_noise_distance=mode_noise_distance, mode_excess=mode_excess, rate=rate,
                        rate_interval=rate_iv, rate_se=se, fit_passes=fit_passes, n_fit=int(len(fit_n)),
                        predicted_rate=gap.ratio, mixing_time=mixing_time, mixing_time_interval=mixing_iv,
                        predicted_mixing_time=predicted_time, passes_to_eps=passes_to_eps, floor=floor,
                        final_frequencies=finals, gap=gap, verdict=verdict, reason=reason, settings=settings)


def logmel_frames(wave: np.ndarray, sample_rate: int, *, n_mels: int = 40, n_fft: int = 1024,
                  hop: int = 256, top_db: float = 80.0) -> np.ndarray:
    """(frames, n_mels) log-mel energies in dB relative to the loudest frame's peak, silent frames dropped."""
    import librosa
    from scipy.signal import stft

    _, _, z = stft(wave, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - hop, boundary=None)
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels) @ (np.abs(z) ** 2)
    db = 10 * np.log10(np.maximum(mel, 1e-20))
    db = np.maximum(db - db.max(), -top_db).T
    return db[db.max(axis=1) > -top_db + 1]  # frames that are all floor carry no shape


def logmel_embedding(passes: dict, sample_rate: int, *, n_mels: int = 40, n_components: int = 2) -> dict:
    """Log-mel frames of several passes projected on one shared PCA basis (fitted on all their frames).

    passes: {pass index: waveform}. Returns {"coords": {pass: (frames, n_components)}, "spread": {pass: total
    variance of that pass's frames in the full n_mels space}, "explained": variance ratio of the components}.
    A contracting chain shows clouds that shrink and settle onto one point: the resonance.
    """
    frames = {p: logmel_frames(w, sample_rate, n_mels=n_mels) for p, w in passes.items()}
    stacked = np.concatenate(list(frames.values()))
    mean = stacked.mean(axis=0)
    _, sv, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    basis = vt[:n_components].T
    return {"coords": {p: (f - mean) @ basis for p, f in frames.items()},
            "spread": {p: float(np.trace(np.cov(f.T))) if len(f) > 1 else 0.0 for p, f in frames.items()},
            "explained": (sv[:n_components] ** 2 / np.sum(sv ** 2)).tolist()}


# ---------------------------------------------------------------------------------------------- whole setting
@dataclass
class LucierSetup:
    """Everything the Lucier chain needs, resolved from a configuration."""
    voice: np.ndarray
    rir: np.ndarray
    room: LucierRoom
    band: tuple[float, float]  # the analysis band (the loudspeaker's)
    voice_band: tuple[float, float]  # where the voice itself is within voice_band_db of its peak
    voice_source: str
    rir_source: str
    fingerprint: str


def start_signals(voice: np.ndarray, sample_rate: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Different starting sounds of the same length and RMS as `voice`, for the ergodicity test: the voice, the
    voice a fifth higher (another "speaker"; a reversed voice would have the same spectral frames), white noise
    and a logarithmic chirp from 100 Hz to 4 kHz. Seeded."""
    import librosa
    from scipy.signal import chirp

    voice = np.asarray(voice, np.float64)
    if voice.ndim != 1 or len(voice) < 2:
        raise ValueError(f"voice must be a 1-D waveform, got shape {voice.shape}")
    t = np.arange(len(voice)) / sample_rate
    higher = librosa.effects.pitch_shift(voice, sr=sample_rate, n_steps=7)
    out = {"voice": voice, "voice +7 semitones": higher,
           "white noise": np.random.default_rng([seed, 23]).standard_normal(len(voice)),
           "chirp 100 Hz-4 kHz": chirp(t, 100.0, t[-1], min(4000.0, 0.45 * sample_rate), method="logarithmic")}
    rms = np.sqrt(np.mean(voice ** 2))
    return {k: v * rms / np.sqrt(np.mean(v ** 2)) for k, v in out.items()}


MIN_RIR_SECONDS = 0.01  # a room's impulse response shorter than 10 ms holds no reverberation to resonate with


class LockInWarning(UserWarning):
    """The Lucier chain, as configured, is predicted not to lock onto its resonance within its passes."""


def check_rir_length(rir: np.ndarray, sample_rate: int, path) -> None:
    """A measured impulse response must last at least MIN_RIR_SECONDS (and 16 samples): a shorter one is a
    filter, not a room, and the loop would run to the end with no resonance to find (lock_in_pass null)."""
    need = max(16, int(math.ceil(MIN_RIR_SECONDS * sample_rate)))
    if len(rir) < need:
        raise ValueError(f"rir_path: {path} holds {len(rir)} sample(s) ({len(rir) / sample_rate * 1000:.2f} ms at "
                         f"{sample_rate} Hz); an impulse response must last at least {MIN_RIR_SECONDS * 1000:g} ms "
                         f"({need} samples) to describe a room: record or export a longer one (the whole "
                         "reverberation tail), or leave rir_path empty for the simulated shoebox")


def predicted_lock_in(room: LucierRoom, voice_window: np.ndarray, band: tuple[float, float], n_passes: int,
                      *, tolerance_hz: float | None = None, horizon: int = 5000) -> tuple[int | None, float]:
    """(the lock_in_pass the closed form predicts within n_passes, or None; the pass from which it stays locked
    for ever, inf when never or not within `horizon` passes). The closed form is the noiseless |X0| |G|^n on the
    window's grid (float32 rounding, or the microphone noise, floors |X0| in every bin); lock_in_pass's rule:
    the dominant frequency stays within tolerance_hz (default one bin) of f* to the last pass. Cheap: no pass is
    simulated (exact for tail="circular" without noise)."""
    freqs, mag0 = spectrum(np.asarray(voice_window, np.float64), room.sample_rate)
    mag0 = mag0[0]
    floor = (np.sqrt(np.mean(mag0 ** 2)) * 10 ** (-room.snr_db / 20) if room.add_noise else mag0.max() * 1e-7)
    mask = _in_band(freqs, band)
    f_band = freqs[mask]
    a = np.log(np.maximum(mag0[mask], floor))
    b = np.log(np.maximum(room.gain_on(freqs)[mask], 1e-300))
    f_star = predicted_resonance(room, band)
    tol = room.sample_rate / room.length if tolerance_hz is None else tolerance_hz
    # past `bound` the bin of f* itself leads every bin outside the tolerance for ever (lines a + n b)
    top = int(np.argmin(np.abs(f_band - f_star)))
    off = np.abs(f_band - f_star) > tol
    lead, gap = a[off] - a[top], b[top] - b[off]
    if np.any((gap <= 0) & (lead >= 0)):
        bound = math.inf
    else:
        bound = float(np.max(np.where(lead > 0, lead / np.maximum(gap, 1e-300), 0.0), initial=0.0))
    last = int(max(n_passes, min(math.ceil(bound) if math.isfinite(bound) else horizon, horizon)))
    dominant = np.empty(last + 1)
    for lo in range(0, last + 1, 64):
        n = np.arange(lo, min(lo + 64, last + 1))[:, None]
        dominant[lo:lo + len(n)] = f_band[np.argmax(a + n * b, axis=1)]
    within = lock_in_pass(dominant[: n_passes + 1], f_star, tol)
    forever = lock_in_pass(dominant, f_star, tol) if bound <= last else None
    return within, math.inf if forever is None else float(forever)


def warn_if_no_lock_in(setup: "LucierSetup", n_passes: int) -> int | None:
    """A LockInWarning, before the chain runs, when the closed form says the dominant frequency does not settle
    on the predicted resonance within n_passes (so lock_in_pass would be null); returns the predicted pass."""
    within, needed = predicted_lock_in(setup.room, setup.room.window(setup.voice), setup.band, n_passes)
    if within is None:
        how = ("not within 5,000 passes, or never (two frequencies of the analysis band may have the same gain "
               "|G|)" if not math.isfinite(needed) else f"only from pass {needed:.0f} on")
        warnings.warn(f"01_lucier_room: with n_iterations={n_passes} the loop is predicted not to lock onto its "
                      f"resonance f* = {predicted_resonance(setup.room, setup.band):.1f} Hz (lock_in_pass will be "
                      f"null): the closed form |X0| |G|^n settles there {how}. "
                      + (f"Raise n_iterations to at least {needed:.0f}." if math.isfinite(needed) else
                         "Change the room or the loudspeaker band."), LockInWarning, stacklevel=3)
    return within


def lucier_setup(spec: LucierSpec) -> LucierSetup:
    """The voice, the impulse response and the room operator of a Lucier spec."""
    voice_path = Path(spec.voice_path).expanduser() if spec.voice_path else default_voice_path()
    voice = load_audio(voice_path, sample_rate=spec.sample_rate, what="voice_path", max_seconds=spec.voice_seconds)
    voice_source = ("real: CMU ARCTIC a0007 (pysptk)" if not spec.voice_path else f"user voice: {voice_path.name}")
    if spec.rir_path:
        rir_path = Path(spec.rir_path).expanduser()
        rir = load_audio(rir_path, sample_rate=spec.sample_rate, what="rir_path")
        check_rir_length(rir, spec.sample_rate, rir_path)
        rir_source, rir_fp = f"measured IR: {rir_path.name}", file_fingerprint(rir_path)
    else:
        rir = shoebox_rir(spec.room_dims, spec.rt60, spec.source_pos, spec.mic_pos, sample_rate=spec.sample_rate,
                          highpass=spec.rir_highpass)
        rir_source, rir_fp = f"shoebox {', '.join(map(str, spec.room_dims))} m, RT60 {spec.rt60} s (pyroomacoustics)", "shoebox"
    room = LucierRoom.build(rir, voice.size, sample_rate=spec.sample_rate, wet_mix=spec.wet_mix,
                            band_low_hz=spec.band_low_hz, band_high_hz=spec.band_high_hz, band_order=spec.band_order,
                            add_noise=spec.add_noise, snr_db=spec.snr_db, normalise=spec.normalise, tail=spec.tail)
    level = np.sqrt(np.mean(voice ** 2)) if spec.normalise == "rms" else np.max(np.abs(voice))
    room.target_level = float(level)
    return LucierSetup(voice=voice, rir=rir, room=room,
                       band=analysis_band(spec.sample_rate, spec.band_low_hz, spec.band_high_hz),
                       voice_band=voice_band(voice, spec.sample_rate, within_db=spec.voice_band_db),
                       voice_source=voice_source, rir_source=rir_source,
                       fingerprint=f"{file_fingerprint(voice_path)}:{rir_fp}")


def save_pass(wave, folder: Path) -> None:
    np.save(folder / "pass.npy", wave)


def load_pass(folder: Path) -> np.ndarray:
    """One stored pass of a Lucier chain (its state loader, for chain.read_chain)."""
    return np.load(folder / "pass.npy")


def run_lucier(spec: LucierSpec, *, progress: bool = True, cache: bool = True):
    """Run (or read back) the Lucier chain of a spec: (setup, chain.ChainResult). The run key is the spec (less
    n_iterations: a longer chain extends a shorter one), the voice's and impulse response's fingerprints and the
    source of every module this one imports."""
    from . import store
    from .chain import run_chain

    if type(spec) is not LucierSpec:  # a notebook's parameters would put its plot settings in the key
        raise TypeError(f"run_lucier takes a LucierSpec (specs.build(LucierSpec, cfg)), got {type(spec).__name__}")
    setup = lucier_setup(spec)
    warn_if_no_lock_in(setup, spec.n_iterations)  # before any pass is computed
    run_dir = None
    if cache:
        run_dir = store.run_dir("lucier", spec.key(), setup.fingerprint, modules=store.import_closure("audio"))
    result = run_chain(setup.room.step, lambda: setup.room.window(setup.voice), spec.n_iterations, run_dir=run_dir,
                       seed=spec.seed, save=save_pass, load=load_pass, desc="Lucier passes", progress=progress)
    return setup, result
