"""The DCT spread-spectrum watermark: its z-score's null distribution, its rates on real MNIST at the defaults,
what the embedding adds, key specificity, and the bookkeeping the watermark-and-filter mitigation will rely on."""
import json
import math
import pickle

import numpy as np
import pytest
from scipy.fft import dctn
from scipy.ndimage import gaussian_filter
from scipy.stats import binom, norm

from resonance_utils.watermark import (DetectorRates, SpreadSpectrumWatermark, band_mask, measure_rates, psnr_db,
                                       wilson_interval)


@pytest.fixture(scope="module")
def digits():
    from resonance_utils.data import load_mnist

    return load_mnist("test").images  # 10,000 (28,28) uint8


def generated_stand_ins(images, seed=0):
    """Smoother, noisier digits, as a small diffusion model draws them: blurred, with faint noise on the
    background (faint pixels are where the detector reads the mark, so these are harder than real digits)."""
    rng = np.random.default_rng(seed)
    blurred = gaussian_filter(images.astype(np.float64), (0, 1, 1))
    return np.clip(np.rint(blurred + np.abs(rng.normal(0, 2, images.shape))), 0, 255).astype(np.uint8)


def within_binomial(count, n, p, level=0.999):
    """count lies in the central `level` interval of Binomial(n, p)."""
    tail = (1 - level) / 2
    return binom.ppf(tail, n, p) <= count <= binom.isf(tail, n, p)


NULL_TAILS = (1.2816, 1.6449, 2.3263)  # the normal's 10 %, 5 % and 1 % upper quantiles


def assert_standard_normal(z, what):
    """Mean within 4 standard errors of 0, sd within 4 of 1 (se of an N(0,1) sample's sd: 1/sqrt(2n)), and the
    counts beyond the 10/5/1 % quantiles and the default threshold within their 99.9 % binomial intervals:
    a correct z fails one of the checks with probability < 1 %."""
    n = len(z)
    assert abs(z.mean()) < 4 / math.sqrt(n), (what, z.mean())
    assert abs(z.std() - 1) < 4 / math.sqrt(2 * n), (what, z.std())
    for t in (*NULL_TAILS, SpreadSpectrumWatermark().threshold):
        assert within_binomial(int((z > t).sum()), n, norm.sf(t)), (what, t, int((z > t).sum()))


# ------------------------------------------------------------------------------------------------ calibration


def test_z_is_standard_normal_on_unmarked_random_images():
    images = np.random.default_rng(5).integers(0, 256, size=(2000, 28, 28), dtype=np.uint8)
    assert_standard_normal(SpreadSpectrumWatermark().scores(images), "uniform random images")


def test_z_of_one_digit_over_keys_has_mean_0_and_variance_1(digits):
    # over keys, z = sum_k G_k w_k / |G| with independent signs w_k: mean 0 and variance 1 exactly, whatever
    # the image; 2,000 keys on one real digit
    z = np.array([SpreadSpectrumWatermark(key_seed=k).scores(digits[7:8])[0] for k in range(2000)])
    assert_standard_normal(z, "one digit over 2,000 keys")


def test_real_digits_at_the_defaults_reach_the_rates_and_stay_imperceptible(digits):
    wm = SpreadSpectrumWatermark()
    rates = measure_rates(wm, digits, digits)
    assert rates.n_marked == rates.n_unmarked == 10_000
    assert rates.false_positive_interval[1] <= 0.01, rates  # FPR <= 1 %: its upper 95 % Wilson bound
    assert rates.true_positive_interval[0] >= 0.95, rates  # TPR >= 95 %: its lower bound
    assert rates.psnr_db >= 35, rates
    z = wm.scores(digits)
    # on real digits with one key the images share structure, so z's spread is not a sampling question:
    # over 40 keys its sd ranged 0.92-1.06 and its mean -0.05-0.03 (10,000 digits); 0.1 bounds both
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1, (z.mean(), z.std())


# ------------------------------------------------------------------------------------------------ the mark


@pytest.mark.parametrize("shape", [(28, 28), (20, 24, 3)])
def test_embedding_adds_plus_or_minus_strength_on_the_band_and_nothing_elsewhere(shape):
    # on mid-grey nothing clips, so marked - grey = strength * IDCT(w) + rounding (|.| <= 0.5 per pixel); by
    # Parseval the DCT of the difference is strength * w to within a squared error of pixels / 4
    grey = np.full((1, *shape), 128, np.uint8)
    mask = band_mask(shape, (0.3, 1.0))
    mask = mask if len(shape) == 2 else np.repeat(mask[:, :, None], shape[2], axis=2)
    diffs = []
    for seed in (1, 2):
        wm = SpreadSpectrumWatermark(key_seed=seed)
        d = dctn(wm.embed(grey)[0].astype(np.float64) - 128, axes=(0, 1), norm="ortho")
        error = np.sum((np.abs(d[mask]) - wm.strength) ** 2) + np.sum(d[~mask] ** 2)
        assert error <= grey[0].size / 4, (seed, error)
        diffs.append(d[mask])
    # two keys' signs agree on about half the band's coefficients
    same = int((np.sign(diffs[0]) == np.sign(diffs[1])).sum())
    assert within_binomial(same, mask.sum(), 0.5), (same, mask.sum())


def test_embed_is_deterministic_and_keeps_shape_and_dtype_grey_and_colour(digits):
    wm = SpreadSpectrumWatermark()
    grey = digits[:5000]  # past one DCT batch (4096): batches must not change a thing
    marked = wm.embed(grey)
    assert marked.shape == grey.shape and marked.dtype == np.uint8
    assert np.array_equal(marked, SpreadSpectrumWatermark().embed(grey))
    assert np.array_equal(marked[4090:4100], wm.embed(grey[4090:4100]))  # the pattern depends on no other image
    assert np.array_equal(wm.scores(marked)[4090:4100], wm.scores(marked[4090:4100]))
    assert not np.array_equal(marked, grey)

    tints = np.array([1.0, 0.6, 0.3])  # digits drawn in orange on black
    colour = np.rint(digits[:1000, :, :, None] * tints).astype(np.uint8)
    marked = wm.embed(colour)
    assert marked.shape == colour.shape == (1000, 28, 28, 3) and marked.dtype == np.uint8
    assert np.array_equal(marked, wm.embed(colour))
    rates = measure_rates(wm, colour, colour)
    assert rates.true_positive_rate >= 0.99 and rates.false_positive_rate <= 0.01, rates
    assert rates.psnr_db >= 35, rates


def test_another_key_does_not_detect_the_mark(digits):
    wm = SpreadSpectrumWatermark()
    marked = wm.embed(digits[:2000])
    assert wm.detect(marked).mean() >= 0.99
    for seed in range(1, 11):
        other = SpreadSpectrumWatermark(key_seed=seed)
        flagged = int(other.detect(marked).sum())
        # another key reads the mark, which every marked image shares, as one N(0,1) draw: at most the null's
        # rate, FPR <= 1 % by its upper Wilson bound (of keys 1-200 the worst flagged 1 image in 2,000)
        assert wilson_interval(flagged, len(marked))[1] <= 0.01, (seed, flagged)


def test_a_weaker_mark_is_detected_less_often(digits):
    wm = SpreadSpectrumWatermark()
    strengths = [wm.strength / f for f in (1, 2, 4, 8)]
    marks = [wm.weakened(strength=s) for s in strengths]
    assert all(m.key_seed == wm.key_seed and m.band == wm.band and m.threshold == wm.threshold for m in marks)
    rates = [measure_rates(m, digits[:2000], digits[:10]) for m in marks]
    tpr = [r.true_positive_rate for r in rates]
    z = [m.scores(m.embed(digits[:2000])).mean() for m in marks]
    psnr = [r.psnr_db for r in rates]
    assert tpr == sorted(tpr, reverse=True) and tpr[-1] < tpr[0] - 0.5, tpr  # measured 1, 1, 0.985, 0.365
    assert all(a > b for a, b in zip(z, z[1:])), z
    assert all(a < b for a, b in zip(psnr, psnr[1:])), psnr


# ------------------------------------------------------------------------------------------------ the filter


def test_the_filter_separates_marked_stand_ins_from_real_digits_and_measure_rates_counts_them(digits):
    wm = SpreadSpectrumWatermark()
    generated, real = generated_stand_ins(digits[:1000]), digits[5000:6000]
    marked = wm.embed(generated)
    order = np.random.default_rng(3).permutation(2000)
    pool = np.concatenate([marked, real])[order]
    is_marked = (order < 1000)
    flagged = wm.detect(pool)
    kept = pool[~flagged]
    # an independent count: flags among the marked and among the real, found through the shuffle
    hits, false_alarms = int((flagged & is_marked).sum()), int((flagged & ~is_marked).sum())
    assert hits >= 990, hits  # nearly all generated images leave the training set
    assert false_alarms <= 10, false_alarms  # and nearly all real ones stay
    assert len(kept) == 2000 - hits - false_alarms
    rates = measure_rates(wm, generated, real)
    assert rates.true_positive_rate == hits / 1000 and rates.false_positive_rate == false_alarms / 1000
    assert rates.true_positive_interval == wilson_interval(hits, 1000)
    assert rates.false_positive_interval == wilson_interval(false_alarms, 1000)
    assert rates.psnr_db == pytest.approx(psnr_db(marked, generated).mean())


# ------------------------------------------------------------------------------------------------ intervals


def test_wilson_interval_matches_newcombes_published_values_and_inverts_the_score_test():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score)
    for (k, n), expected in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                             (1, 29): (0.0061, 0.1718)}.items():
        assert wilson_interval(k, n) == pytest.approx(expected, abs=5e-5), (k, n)
    # each end is a p at which the score test of k / n sits exactly on its critical value
    k, n, z = 37, 500, norm.isf(0.005)
    for p in wilson_interval(k, n, confidence=0.99):
        assert abs(k / n - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n))
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(0, 20)[0] == 0.0


# ------------------------------------------------------------------------------------------------ the object


def test_params_round_trip_through_json_and_the_object_pickles(digits):
    wm = SpreadSpectrumWatermark(key_seed=7, strength=2, band=[0.25, 0.9], threshold=3.5)
    params = wm.params()
    assert SpreadSpectrumWatermark(**params) == wm
    assert SpreadSpectrumWatermark(**json.loads(json.dumps(params))) == wm
    assert params["band"] == [0.25, 0.9] and isinstance(params["strength"], float)
    assert set(params) == {"key_seed", "strength", "band", "threshold", "bright_level", "bright_weight"}
    back = pickle.loads(pickle.dumps(wm))
    assert back == wm and hash(back) == hash(wm)
    assert np.array_equal(back.scores(digits[:50]), wm.scores(digits[:50]))
    rates = measure_rates(wm, digits[:20], digits[:20])
    assert isinstance(rates, DetectorRates) and json.loads(json.dumps(rates.to_dict()))["n_marked"] == 20


@pytest.mark.parametrize("fields, message", [
    ({"strength": 0}, "strength must be > 0"), ({"strength": -1.0}, "strength must be > 0"),
    ({"strength": math.nan}, "strength must be a finite number"), ({"band": (0.5, 0.5)}, "band must satisfy"),
    ({"band": (-0.1, 0.5)}, "band must satisfy"), ({"band": (0.2, 1.1)}, "band must satisfy"),
    ({"band": (0.2,)}, "band must be a pair"), ({"band": "ab"}, "band must be a pair"),
    ({"threshold": math.inf}, "threshold must be a finite number"), ({"key_seed": -1}, "key_seed"),
    ({"key_seed": 1.5}, "key_seed"), ({"key_seed": True}, "key_seed"), ({"bright_level": 0}, "bright_level"),
    ({"bright_weight": 2.0}, "bright_weight must be in"),
])
def test_bad_fields_raise_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        SpreadSpectrumWatermark(**fields)


def test_bad_inputs_raise_naming_the_problem(digits):
    wm = SpreadSpectrumWatermark()
    with pytest.raises(TypeError):
        SpreadSpectrumWatermark(1234)  # keyword-only
    with pytest.raises(TypeError, match="uint8.*float64"):
        wm.embed(digits[:3].astype(np.float64))
    with pytest.raises(TypeError, match="numpy array"):
        wm.scores(digits[:3].tolist())
    with pytest.raises(ValueError, match="ndim 2"):
        wm.detect(digits[0])
    with pytest.raises(ValueError, match="no DCT coefficient"):
        SpreadSpectrumWatermark(band=(0.1, 0.4)).embed(np.zeros((1, 2, 2), np.uint8))  # (u+v)/2 is 0, .5 or 1
    with pytest.raises(ValueError, match="strength must be > 0"):
        wm.weakened(strength=0)
    with pytest.raises(ValueError, match="images_unmarked is empty"):
        measure_rates(wm, digits[:3], digits[:0])
    with pytest.raises(TypeError, match="SpreadSpectrumWatermark"):
        measure_rates(wm.params(), digits[:3], digits[:3])
    with pytest.raises(ValueError, match="confidence"):
        measure_rates(wm, digits[:3], digits[:3], confidence=1.5)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_db(digits[:3], digits[:4])
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)
