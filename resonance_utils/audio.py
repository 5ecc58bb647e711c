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
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import fft as sfft

from .config import parse_vector
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


SOURCES = ("audio", "chain", "runtime")  # the code a Lucier chain's numbers depend on
CHAIN_KEYS = ("seed", "voice_path", "voice_seconds", "sample_rate", "rir_path", "room_dims", "rt60", "source_pos",
              "mic_pos", "rir_highpass", "wet_mix", "add_noise", "snr_db", "band_low_hz", "band_high_hz",
              "band_order", "normalise", "tail")  # n_iterations is left out: a longer chain extends a shorter one


def setup_from_config(cfg) -> LucierSetup:
    voice_path = Path(cfg.voice_path).expanduser() if cfg.voice_path else default_voice_path()
    voice = load_audio(voice_path, sample_rate=cfg.sample_rate, what="voice_path", max_seconds=cfg.voice_seconds)
    voice_source = ("real: CMU ARCTIC a0007 (pysptk)" if not cfg.voice_path else f"user voice: {voice_path.name}")
    if cfg.rir_path:
        rir_path = Path(cfg.rir_path).expanduser()
        rir = load_audio(rir_path, sample_rate=cfg.sample_rate, what="rir_path")
        rir_source, rir_fp = f"measured IR: {rir_path.name}", file_fingerprint(rir_path)
    else:
        rir = shoebox_rir(cfg.room_dims, cfg.rt60, cfg.source_pos, cfg.mic_pos, sample_rate=cfg.sample_rate,
                          highpass=cfg.rir_highpass)
        rir_source, rir_fp = f"shoebox {cfg.room_dims} m, RT60 {cfg.rt60} s (pyroomacoustics)", "shoebox"
    room = LucierRoom.build(rir, voice.size, sample_rate=cfg.sample_rate, wet_mix=cfg.wet_mix,
                            band_low_hz=cfg.band_low_hz, band_high_hz=cfg.band_high_hz, band_order=cfg.band_order,
                            add_noise=cfg.add_noise, snr_db=cfg.snr_db, normalise=cfg.normalise, tail=cfg.tail)
    level = np.sqrt(np.mean(voice ** 2)) if cfg.normalise == "rms" else np.max(np.abs(voice))
    room.target_level = float(level)
    return LucierSetup(voice=voice, rir=rir, room=room,
                       band=analysis_band(cfg.sample_rate, cfg.band_low_hz, cfg.band_high_hz),
                       voice_band=voice_band(voice, cfg.sample_rate, within_db=cfg.voice_band_db),
                       voice_source=voice_source, rir_source=rir_source,
                       fingerprint=f"{file_fingerprint(voice_path)}:{rir_fp}")


def run_lucier(cfg, *, progress: bool = True, cache: bool = True):
    """Run (or read back) the Lucier chain for a configuration: (setup, chain.ChainResult)."""
    from . import store
    from .chain import run_chain

    setup = setup_from_config(cfg)
    run_dir = None
    if cache:
        run_dir = store.run_dir("lucier", {k: cfg[k] for k in CHAIN_KEYS}, setup.fingerprint, modules=SOURCES)
    save = lambda x, folder: np.save(folder / "pass.npy", x)  # noqa: E731
    load = lambda folder: np.load(folder / "pass.npy")  # noqa: E731
    result = run_chain(setup.room.step, lambda: setup.room.window(setup.voice), cfg.n_iterations, run_dir=run_dir,
                       seed=cfg.seed, save=save, load=load, desc="Lucier passes", progress=progress)
    return setup, result
