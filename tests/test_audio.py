import json
import time

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from resonance_utils import audio, config, specs
from resonance_utils.chain import run_chain


def lucier_spec(profile, **changes):
    return specs.build(specs.LucierSpec, config.load_config("01_lucier_room", profile, **changes))

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
    cfg = lucier_spec("smoke", n_iterations=5, voice_seconds=0.5)
    setup, first = audio.run_lucier(cfg, progress=False)
    assert first.computed == [0, 1, 2, 3, 4, 5]
    _, again = audio.run_lucier(cfg, progress=False)
    assert again.computed == []
    np.testing.assert_array_equal(np.stack(first.states), np.stack(again.states))
    longer = lucier_spec("smoke", n_iterations=7, voice_seconds=0.5)
    _, ext = audio.run_lucier(longer, progress=False)
    assert ext.computed == [6, 7], "n_iterations is not part of the key: a longer chain extends the cached one"
    missing = lucier_spec("smoke", voice_path="/no/such/voice.wav")
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


# ------------------------------------------------------------------------------ mixing: spectral gap, several starts
def designed_room(gains: dict, *, length=512, base=0.5, **kw):
    """A circular room whose transfer on the window's grid is chosen: |G| = base everywhere except the given
    bins (the impulse response is the inverse DFT of the real, zero-phase gains, so H equals them exactly)."""
    g = np.full(length // 2 + 1, base)
    for k, v in gains.items():
        g[k] = v
    room = audio.LucierRoom(rir=np.fft.irfft(g, length), length=length, sample_rate=SR, **kw)
    room.target_level = 0.1
    return room


GAINS = {40: 1.0, 80: 0.9, 100: 0.7}  # top bin 40 (625 Hz), runner-up 80 (1250 Hz): r = 0.9
FULL = (0.0, SR / 2)


def noise_starts(n, seed=0, length=400):
    rng = np.random.default_rng(seed)
    return {f"noise {i}": rng.standard_normal(length) for i in range(n)}


def test_spectral_gap_reads_the_rooms_own_transfer(rng):
    room = designed_room(GAINS)
    np.testing.assert_allclose(np.abs(room.G)[[40, 80, 100]], [1.0, 0.9, 0.7], atol=1e-12)
    gap = audio.spectral_gap(room, FULL)
    assert (gap.f1, gap.f2) == (40 * SR / 512, 80 * SR / 512) and gap.bin_hz == SR / 512 and gap.exact
    assert gap.g1 == pytest.approx(1.0) and gap.g2 == pytest.approx(0.9) and gap.ratio == pytest.approx(0.9)
    assert audio.predicted_mixing_time(room, FULL) == pytest.approx(np.log(0.05) / np.log(0.9))
    assert audio.predicted_mixing_time(room, FULL, eps=0.01) == pytest.approx(np.log(0.01) / np.log(0.9))
    # a band that leaves the top bin out: the next two lead, and the bin outside is reported
    low = audio.spectral_gap(room, (700.0, 4000.0))
    assert low.f1 == 80 * SR / 512 and low.ratio == pytest.approx(0.7 / 0.9)
    assert low.outside_ratio == pytest.approx(1.0 / 0.9)
    # a real shoebox: the two largest |G| in the band, sorted by hand, and f1 is the predicted resonance
    rir, _ = random_room(rng)
    real = room_for(rir, 2000, band_low_hz=60, band_high_hz=3500)
    band = audio.analysis_band(SR, 60, 3500)
    f = np.fft.rfftfreq(real.length, 1 / SR)
    inside = np.sort(np.abs(real.G)[(f >= band[0]) & (f <= band[1])])[::-1]
    gap = audio.spectral_gap(real, band)
    assert (gap.g1, gap.g2) == (inside[0], inside[1])
    assert gap.f1 == audio.predicted_resonance(real, band)
    assert json.loads(json.dumps(gap.to_json()))["ratio"] == gap.ratio
    flat = designed_room({40: 1.0, 80: 1.0})
    assert audio.predicted_mixing_time(flat, FULL) == np.inf
    with pytest.raises(ValueError, match="eps"):
        gap.mixing_time(1.5)
    with pytest.raises(ValueError, match="holds 1 frequency bin"):
        audio.spectral_gap(room, (620.0, 630.0))


def test_default_room_predicts_a_mixing_time_of_hundreds_of_passes():
    """The reviewer's numbers: the default room's runner-up bin is at 0.9966 of the peak, 0.17 Hz away."""
    setup = audio.lucier_setup(lucier_spec("quick"))
    gap = audio.spectral_gap(setup.room, setup.band)
    assert gap.ratio == pytest.approx(0.9966, abs=1e-4)
    assert abs(gap.f2 - gap.f1) == pytest.approx(setup.room.sample_rate / setup.room.length)  # neighbours
    assert gap.bin_hz == pytest.approx(0.1732, abs=1e-4)
    assert 100 < audio.predicted_mixing_time(setup.room, setup.band) < 1000  # 878 passes


def mode_distance_by_hand(room, starts, n):
    """The top-bin-relative distance in closed form: bin k of start A reads a_k r_k^n, a_k = |X0(k)| / |X0(f1)|."""
    x0 = np.stack([room.window(s) for s in starts.values()]).astype(np.float64)
    mag = np.abs(np.fft.rfft(x0, axis=1))
    a = mag / mag[:, [40]]
    v = a * (np.abs(room.G) / np.abs(room.G)[40]) ** n
    d2 = [np.sum((v[i] - v[j]) ** 2) for i in range(len(v)) for j in range(i + 1, len(v))]
    return np.sqrt(np.mean(d2))


def test_multistart_mixing_fits_the_closed_form_rate():
    room = designed_room(GAINS)
    starts = noise_starts(3)
    rep = audio.multistart_mixing(room, starts, FULL, n_passes=150, stride=2)
    assert rep.verdict == "mixed", rep.reason
    assert rep.rate_interval[0] <= 0.9 <= rep.rate_interval[1] and rep.rate == pytest.approx(0.9, abs=1e-3)
    assert rep.predicted_rate == pytest.approx(0.9)
    assert rep.mixing_time == pytest.approx(np.log(0.05) / np.log(0.9), rel=0.01)
    assert rep.predicted_mixing_time == pytest.approx(np.log(0.05) / np.log(0.9))
    # the simulated distances are the closed form's: unit-norm (|X0| |G|^n) and top-bin-relative
    np.testing.assert_allclose(rep.distance, rep.predicted_distance, atol=1e-5)
    for n in (0, 10, 40):
        i = int(np.flatnonzero(rep.passes == n)[0])
        assert rep.mode_distance[i] == pytest.approx(mode_distance_by_hand(room, starts, n), rel=1e-4)
    assert list(rep.passes[:3]) == [0, 2, 4] and rep.passes[-1] == 150
    assert rep.noise_distance is None and rep.floor is None and np.array_equal(rep.excess, rep.distance)
    assert set(rep.final_frequencies.values()) == {40 * SR / 512}
    # passes_to_eps: from there on the relative distance stays below eps, and not before
    i = int(np.flatnonzero(rep.passes == rep.passes_to_eps)[0])
    assert (rep.relative[i:] <= 0.05).all() and rep.relative[i - 1] > 0.05
    assert json.loads(json.dumps(rep.to_json()))["verdict"] == "mixed"


def test_multistart_mixing_verdicts_follow_the_rate():
    # r = 0.97 for 60 passes (0.6 of a mixing time): still apart, but the fitted rate says it is mixing
    slow = audio.multistart_mixing(designed_room({40: 1.0, 80: 0.97, 100: 0.7}), noise_starts(3), FULL,
                                   n_passes=60, stride=2)
    assert slow.verdict == "mixing", slow.reason
    assert slow.relative[-1] > 0.05 and slow.rate_interval[0] <= 0.97 <= slow.rate_interval[1] < 1
    assert slow.mixing_time == pytest.approx(np.log(0.05) / np.log(0.97), rel=0.01)
    # two equal top bins (r = 1): the starts keep whatever mix of the two they began with
    flat = audio.multistart_mixing(designed_room({40: 1.0, 80: 1.0, 100: 0.7}), noise_starts(3), FULL,
                                   n_passes=100, stride=2)
    assert flat.verdict == "separated", flat.reason
    assert flat.rate_interval[0] <= 1.0 <= flat.rate_interval[1] and flat.relative[-1] > 0.1
    assert flat.predicted_mixing_time == np.inf and flat.mixing_time == np.inf
    # a slow room run briefly: no decay resolved, but too short to say "separated"
    brief = audio.multistart_mixing(designed_room({40: 1.0, 80: 0.995}), noise_starts(2), FULL, n_passes=20,
                                    stride=2)
    assert brief.verdict == "inconclusive" and "shorter than two predicted mixing times" in brief.reason
    assert brief.rate_interval[0] < 1 <= brief.rate_interval[1]
    # too few recorded passes to fit
    few = audio.multistart_mixing(designed_room({40: 1.0, 80: 0.99}), noise_starts(2), FULL, n_passes=6,
                                  stride=3)
    assert few.verdict == "inconclusive" and "4 needed" in few.reason and np.isnan(few.rate)


def test_noisy_loop_decays_to_its_noise_floor_at_the_predicted_rate():
    room = designed_room(GAINS, add_noise=True, snr_db=30.0)
    starts = noise_starts(3)
    rep = audio.multistart_mixing(room, starts, FULL, n_passes=150, stride=2, seed=0)
    assert rep.verdict == "mixed", rep.reason
    assert rep.rate_interval[0] <= 0.9 <= rep.rate_interval[1]
    # the distance ends at the floor: as far apart as one start from its own noise twin
    assert rep.floor > 0.01 and rep.noise_distance[0] == 0
    assert rep.distance[-1] == pytest.approx(rep.noise_distance[-1], rel=0.3)
    assert rep.distance[-1] > 0.5 * rep.floor * rep.excess[0]  # not 0: noise keeps them apart
    # start i is the chain run_chain(seed=seed + i) runs: the recorded distances agree with those chains
    band = np.ones(room.length // 2 + 1, bool)
    ends = []
    for i, s in enumerate(starts.values()):
        last = run_chain(room.step, room.window(s), 150, seed=0 + i, progress=False).states[-1]
        m = np.abs(np.fft.rfft(np.asarray(last, np.float64)))[band]
        ends.append(m / np.linalg.norm(m))
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert rep.pair_distance[-1, i, j] == pytest.approx(np.linalg.norm(ends[i] - ends[j]), rel=1e-6)
    again = audio.multistart_mixing(room, starts, FULL, n_passes=150, stride=2, seed=0)
    np.testing.assert_array_equal(again.distance, rep.distance)
    other = audio.multistart_mixing(room, starts, FULL, n_passes=150, stride=2, seed=1)
    assert not np.array_equal(other.distance, rep.distance)


def test_multistart_mixing_reads_passes_already_run():
    """A noiseless loop's passes handed in (chain.run_chain's states, as claim_runs.lucier_run keeps them) give
    the report that running them again gives, bit for bit; with noise, or with the wrong passes, a clear error."""
    room, starts = designed_room(GAINS), noise_starts(3)
    run = audio.multistart_mixing(room, starts, FULL, n_passes=60, stride=4, seed=0)
    paths = [run_chain(room.step, room.window(s), 60, seed=9, progress=False).states[::4] for s in starts.values()]
    read = audio.multistart_mixing(room, starts, FULL, n_passes=60, stride=4, seed=0, trajectories=paths)
    for field in ("passes", "pair_distance", "distance", "mode_distance", "relative"):
        np.testing.assert_array_equal(getattr(read, field), getattr(run, field))
    assert (read.rate, read.rate_interval, read.verdict) == (run.rate, run.rate_interval, run.verdict)
    with pytest.raises(ValueError, match="recorded passes"):
        audio.multistart_mixing(room, starts, FULL, n_passes=60, stride=4, trajectories=[p[:-1] for p in paths])
    with pytest.raises(ValueError, match="noiseless"):
        audio.multistart_mixing(designed_room(GAINS, add_noise=True, snr_db=30.0), starts, FULL, n_passes=60,
                                stride=4, trajectories=paths)


def test_default_room_mixes_at_its_predicted_rate():
    """The real default room, two very different starts (the voice and white noise), run for two predicted
    mixing times (1760 passes, ~5 s): the fitted rate is the spectral gap's r, so the verdict does not depend on
    where the run stops."""
    setup = audio.lucier_setup(lucier_spec("quick"))
    starts = {"voice": setup.voice, "white noise": np.random.default_rng(23).standard_normal(setup.voice.size)}
    predicted = audio.predicted_mixing_time(setup.room, setup.band)
    rep = audio.multistart_mixing(setup.room, starts, setup.band, n_passes=int(2 * predicted), stride=40)
    assert rep.verdict in ("mixed", "mixing"), rep.reason
    assert rep.rate_interval[0] <= rep.predicted_rate <= rep.rate_interval[1]
    assert rep.mixing_time == pytest.approx(predicted, rel=0.01)
    assert set(rep.final_frequencies.values()) == {rep.gap.f1}


def test_multistart_mixing_errors():
    room = designed_room(GAINS)
    two = noise_starts(2)
    cases = [
        (dict(starts={"one": np.ones(100)}), "at least two"), (dict(n_passes=0), "n_passes"),
        (dict(stride=20, n_passes=10), "stride"), (dict(eps=1.0), "eps"), (dict(fit_from=10), "fit_from"),
        (dict(level=0.0), "level"), (dict(floor_factor=0.5), "floor_factor"),
        (dict(starts={"a": np.ones(100), "b": np.zeros(100)}), "start 'b'"),
        (dict(starts={"a": np.ones((2, 50)), "b": np.ones(100)}), "start 'a'"),
    ]
    for kw, match in cases:
        args = {"starts": two, "n_passes": 10, "stride": 2} | kw
        with pytest.raises(ValueError, match=match):
            audio.multistart_mixing(room, args.pop("starts"), FULL, **args)
    noisy = designed_room(GAINS, add_noise=True)
    with pytest.raises(ValueError, match="noise_reference"):
        audio.multistart_mixing(noisy, two, FULL, n_passes=4, stride=2, noise_reference="nobody")
    x = np.random.default_rng(0).standard_normal(400)
    with pytest.raises(ValueError, match="one magnitude spectrum"):  # one sound, twice as loud
        audio.multistart_mixing(room, {"x": x, "2x": 2 * x}, FULL, n_passes=4, stride=2)
    with pytest.raises(TypeError, match="LucierRoom"):
        audio.multistart_mixing("room", two, FULL, n_passes=4)
