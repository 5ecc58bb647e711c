import time

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from resonance_utils import audio, config
from resonance_utils.chain import run_chain

SR = 8000


def passes(room, x0, n, **kw):
    return np.stack(run_chain(room.step, room.window(x0), n, progress=False, **kw).states).astype(np.float64)


def room_for(rir, n_voice, **kw):
    room = audio.LucierRoom.build(rir, n_voice, sample_rate=SR, **kw)
    room.target_level = 0.1
    return room


# ---------------------------------------------------------------------------------------------- the loop itself
@pytest.mark.parametrize("tail", ["circular", "truncate"])
@pytest.mark.parametrize("wet_mix", [1.0, 0.6])
def test_loop_matches_direct_time_domain_convolution(rng, tail, wet_mix):
    x0, h = rng.standard_normal(200), rng.standard_normal(37) * np.exp(-np.arange(37) / 8)
    room = room_for(h, x0.size, wet_mix=wet_mix, tail=tail, normalise="none")
    got = passes(room, x0, 5)
    L = room.length
    ref = [np.concatenate([x0, np.zeros(L - x0.size)])]
    for _ in range(5):
        y = (1 - wet_mix) * np.concatenate([ref[-1], np.zeros(h.size - 1)]) + wet_mix * np.convolve(ref[-1], h)
        if tail == "circular":  # wrap the part beyond the window back onto its start
            y = y[:L] + np.concatenate([y[L:], np.zeros(2 * L - y.size)])
        ref.append(y[:L])
    ref = np.stack(ref)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max(axis=1, keepdims=True).max())


def test_first_pass_equals_linear_convolution_exactly_in_both_modes(rng):
    x0, h = rng.standard_normal(300), rng.standard_normal(50)
    for tail in ("circular", "truncate"):
        room = room_for(h, x0.size, tail=tail, normalise="none")
        y1 = passes(room, x0, 1)[1]
        lin = np.convolve(x0, h)
        np.testing.assert_allclose(y1[: lin.size], lin, atol=1e-4)


def test_band_gain_matches_scipy_butterworth():
    f = np.linspace(1, 4000, 500)
    for order in (1, 2, 4):
        b, a = signal.butter(order, 2 * np.pi * 3000, btype="low", analog=True)
        _, lo = signal.freqs(b, a, worN=2 * np.pi * f)
        b, a = signal.butter(order, 2 * np.pi * 100, btype="high", analog=True)
        _, hi = signal.freqs(b, a, worN=2 * np.pi * f)
        np.testing.assert_allclose(audio.butterworth_gain(f, 100, 3000, order), np.abs(lo * hi), rtol=1e-9)
    assert np.all(audio.butterworth_gain(f, 0, 0) == 1)


@pytest.mark.parametrize("normalise", ["rms", "peak"])
def test_level_normalisation(rng, normalise):
    h = rng.standard_normal(64) * np.exp(-np.arange(64) / 10)
    room = room_for(h, 500, normalise=normalise)
    room.target_level = 0.25
    p = passes(room, rng.standard_normal(500) * 7, 6)
    level = np.sqrt(np.mean(p ** 2, axis=1)) if normalise == "rms" else np.max(np.abs(p), axis=1)
    np.testing.assert_allclose(level, 0.25, rtol=1e-5)


def test_noise_is_seeded_and_at_the_requested_snr(rng):
    h = np.zeros(16)
    h[0] = 1.0  # an identity room: all change comes from the noise
    room = room_for(h, 4000, add_noise=True, snr_db=20.0, normalise="none")
    x0 = rng.standard_normal(4000)
    a, b, c = passes(room, x0, 2, seed=1), passes(room, x0, 2, seed=1), passes(room, x0, 2, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    noise = a[1] - a[0]
    snr = 10 * np.log10(np.mean(a[0] ** 2) / np.mean(noise ** 2))
    assert abs(snr - 20.0) < 0.5


# ------------------------------------------------------------------------------------------------- the physics
def random_room(rng):
    dims = rng.uniform([2.5, 2.0, 2.0], [5.0, 4.0, 3.0])
    src, mic = rng.uniform(0.3, 0.7, 3) * dims, rng.uniform(0.3, 0.7, 3) * dims
    fmt = lambda v: ", ".join(f"{x:.3f}" for x in v)  # noqa: E731
    return audio.shoebox_rir(fmt(dims), float(rng.uniform(0.15, 0.3)), fmt(src), fmt(mic), sample_rate=SR), dims


def inputs(kind, rng, n):
    t = np.arange(n) / SR
    if kind == "noise":
        return rng.standard_normal(n)
    if kind == "chirp":
        return signal.chirp(t, 80, t[-1], 3500, method="logarithmic")
    return audio.load_audio(audio.default_voice_path(), sample_rate=SR)[4000: 4000 + n]  # real speech


@pytest.mark.parametrize("kind", ["noise", "chirp", "speech"])
@pytest.mark.parametrize("wet_mix", [1.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dominant_frequency_converges_to_predicted_resonance(kind, wet_mix, seed):
    rng = np.random.default_rng(100 * seed + 7)
    rir, _ = random_room(rng)
    x0 = inputs(kind, rng, 2400)
    room = room_for(rir, x0.size, wet_mix=wet_mix, band_low_hz=60, band_high_hz=3500)
    band = audio.analysis_band(SR, 60, 3500)
    f_star = audio.predicted_resonance(room, band)
    n = 400 if wet_mix == 1.0 else 1500  # a dry share flattens |G|: the contraction is slower
    p = passes(room, x0, n)
    dom = audio.dominant_frequency(p, SR, band)
    bin_hz = SR / room.length
    assert abs(dom[-1] - f_star) <= bin_hz + 1e-9
    # and at every pass the simulated peak is where |X0| |G|^n puts it
    for k in (1, 5, 50):
        freqs, pred = audio.predicted_spectrum(room, p[0], k)
        mask = (freqs >= band[0]) & (freqs <= band[1])
        assert abs(freqs[mask][np.argmax(pred[mask])] - dom[k]) <= bin_hz + 1e-9
    ent = audio.spectral_entropy(p, SR, band)
    assert ent[-1] < ent[0] - 2, "the chain must contract onto few frequencies"


def test_lock_in_pass():
    assert audio.lock_in_pass(np.array([100, 200, 300, 300, 300.]), 300.0, 1.0) == 2
    assert audio.lock_in_pass(np.array([300, 200, 300, 300.]), 300.0, 1.0) == 2
    assert audio.lock_in_pass(np.array([300, 300.]), 300.0, 1.0) == 0
    assert audio.lock_in_pass(np.array([300, 250.]), 300.0, 1.0) is None


def test_room_modes_closed_form():
    modes = audio.room_modes("6, 5, 3.2", n=3)
    assert modes[0]["mode"] == (1, 0, 0) and modes[0]["freq_hz"] == pytest.approx(343 / 12)
    assert modes[1]["freq_hz"] == pytest.approx(343 / 10)
    assert modes[2]["freq_hz"] == pytest.approx(343 / 2 * np.hypot(1 / 6, 1 / 5))


def test_shoebox_is_deterministic_and_restores_the_global_highpass():
    import pyroomacoustics as pra

    before = pra.constants.get("rir_hpf_enable")
    a = audio.shoebox_rir("3, 3, 2.5", 0.2, "1, 1, 1", "2, 2, 1.2", sample_rate=SR, highpass=not before)
    b = audio.shoebox_rir("3, 3, 2.5", 0.2, "1, 1, 1", "2, 2, 1.2", sample_rate=SR, highpass=not before)
    np.testing.assert_array_equal(a, b)
    assert pra.constants.get("rir_hpf_enable") == before


def test_logmel_embedding_contracts_for_a_converging_chain(rng):
    rir, _ = random_room(np.random.default_rng(3))
    x0 = inputs("speech", rng, 6000)
    room = room_for(rir, x0.size, band_low_hz=60, band_high_hz=3500)
    p = passes(room, x0, 200)
    lo, hi = audio.voice_band(x0, SR, within_db=40)
    assert 0 <= lo < 300 and 1500 < hi <= SR / 2  # speech spans the telephone band
    emb = audio.logmel_embedding({0: p[0], 200: p[200]}, SR, n_mels=20)
    assert emb["spread"][200] < 0.2 * emb["spread"][0]
    assert emb["coords"][0].shape[1] == 2


def test_speed_100_passes_of_5_seconds_at_16k():
    """The issue's benchmark, with a generous bound for a loaded CI machine (measured ~0.3 s on 2 cores)."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal(16000) * np.exp(-np.arange(16000) / 2000)
    room = audio.LucierRoom.build(h, 80000, sample_rate=16000)
    t0 = time.perf_counter()
    run_chain(room.step, room.window(rng.standard_normal(80000)), 100, progress=False)
    assert time.perf_counter() - t0 < 10.0


# -------------------------------------------------------------------------------------------------- bad inputs
def test_bad_audio_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="voice_path.*does not exist"):
        audio.load_audio(tmp_path / "nope.wav", sample_rate=SR)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), SR)
    with pytest.raises(ValueError, match="empty"):
        audio.load_audio(empty, sample_rate=SR)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(800), SR)
    with pytest.raises(ValueError, match="silent"):
        audio.load_audio(silent, sample_rate=SR)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(ValueError, match="not a readable audio file"):
        audio.load_audio(text, sample_rate=SR)
    with pytest.raises(ValueError, match="is a folder"):
        audio.load_audio(tmp_path, sample_rate=SR, what="rir_path")


def test_stereo_is_mixed_and_resampled(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)], axis=1) * 0.5
    path = tmp_path / "tone.flac"
    sf.write(path, stereo, 44100)
    wave = audio.load_audio(path, sample_rate=16000)
    assert abs(wave.size - 16000) <= 2
    assert audio.dominant_frequency(wave, 16000, (50, 7000))[0] == pytest.approx(1000, abs=2)
    assert np.max(np.abs(wave)) == pytest.approx(0.375, rel=0.02)


@pytest.mark.parametrize("kwargs, match", [
    ({"wet_mix": 0.0}, "wet_mix"), ({"wet_mix": 1.5}, "wet_mix"), ({"tail": "grow"}, "tail"),
    ({"normalise": "loud"}, "normalise"), ({"band_high_hz": 9000.0}, "band_high_hz"),
    ({"band_low_hz": 3000.0, "band_high_hz": 2000.0}, "band_low_hz"),
])
def test_bad_loop_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        audio.LucierRoom.build(np.ones(8), 100, sample_rate=SR, **kwargs)


def test_bad_impulse_responses():
    for bad in (np.zeros(10), np.ones((3, 3)), np.array([]), np.array([1.0, np.nan])):
        with pytest.raises(ValueError, match="impulse response"):
            audio.LucierRoom(rir=bad, length=100, sample_rate=SR)


def test_bad_rooms():
    with pytest.raises(ValueError, match="mic_pos.*not inside"):
        audio.shoebox_rir("3, 3, 2.5", 0.3, "1, 1, 1", "4, 1, 1", sample_rate=SR)
    with pytest.raises(config.ConfigError, match="room_dims.*needs 3 numbers"):
        audio.shoebox_rir("3, 3", 0.3, "1, 1, 1", "2, 1, 1", sample_rate=SR)
    with pytest.raises(ValueError, match="rt60"):
        audio.shoebox_rir("3, 3, 2.5", -1.0, "1, 1, 1", "2, 1, 1", sample_rate=SR)


def test_run_lucier_caches_and_reads_back():
    cfg = config.load_config("01_lucier_room", "smoke", n_iterations=5, voice_seconds=0.5)
    setup, first = audio.run_lucier(cfg, progress=False)
    assert first.computed == [0, 1, 2, 3, 4, 5]
    _, again = audio.run_lucier(cfg, progress=False)
    assert again.computed == []
    np.testing.assert_array_equal(np.stack(first.states), np.stack(again.states))
    longer = config.load_config("01_lucier_room", "smoke", n_iterations=7, voice_seconds=0.5)
    _, ext = audio.run_lucier(longer, progress=False)
    assert ext.computed == [6, 7], "n_iterations is not part of the key: a longer chain extends the cached one"
    missing = config.load_config("01_lucier_room", "smoke", voice_path="/no/such/voice.wav")
    with pytest.raises(FileNotFoundError, match="voice_path"):
        audio.run_lucier(missing, progress=False)


def test_start_signals_share_length_and_level_but_not_content():
    from resonance_utils.audio import start_signals

    voice = np.sin(np.linspace(0, 300, 16000)) * np.hanning(16000)
    starts = start_signals(voice, 16000, seed=0)
    assert list(starts) == ["voice", "voice +7 semitones", "white noise", "chirp 100 Hz-4 kHz"]
    rms = np.sqrt(np.mean(voice ** 2))
    for name, s in starts.items():
        assert s.shape == voice.shape
        assert np.sqrt(np.mean(s ** 2)) == pytest.approx(rms, rel=1e-9), name
    # a pure tone moved up 7 semitones: its peak frequency rises by 2^(7/12), measured independently by the FFT
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    shifted = start_signals(tone, 16000)["voice +7 semitones"]
    peak = np.argmax(np.abs(np.fft.rfft(shifted))) * 16000 / len(shifted)
    assert peak == pytest.approx(440 * 2 ** (7 / 12), rel=0.01)
    assert np.array_equal(starts["white noise"], start_signals(voice, 16000, seed=0)["white noise"])
    assert not np.array_equal(starts["white noise"], start_signals(voice, 16000, seed=1)["white noise"])
    with pytest.raises(ValueError, match="1-D"):
        start_signals(np.zeros((2, 100)), 16000)
