"""Tests for resonance_utils.metrics against independent references: scipy, closed forms, brute-force loops."""
import dataclasses

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from resonance_utils import metrics as M


def random_spd(rng, dim, scale=1.0):
    a = rng.standard_normal((dim, dim))
    return scale * (a @ a.T / dim + 0.1 * np.eye(dim))


def frechet_reference(mu1, s1, mu2, s2):
    # the textbook formula with scipy's general matrix square root (what pytorch-fid does)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


# ---------------------------------------------------------------------------------------------- Frechet


@pytest.mark.parametrize("dim", [1, 4, 20])
def test_frechet_matches_scipy_sqrtm(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    s1, s2 = random_spd(rng, dim), random_spd(rng, dim, scale=3.0)
    ours = M.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(frechet_reference(mu1, s1, mu2, s2), rel=1e-8, abs=1e-10)
    assert ours == pytest.approx(M.frechet_distance(mu2, s2, mu1, s1), rel=1e-10)  # symmetric


def test_frechet_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert M.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_of_identical_and_singular_gaussians():
    rng = np.random.default_rng(2)
    mu, s = rng.standard_normal(5), random_spd(rng, 5)
    assert M.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-10)
    # rank-1 covariances along the same axis: distance = (sqrt(a) - sqrt(b))^2
    e = np.zeros((3, 3))
    e[0, 0] = 1.0
    assert M.frechet_distance(np.zeros(3), 4 * e, np.zeros(3), 9 * e) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("bad, match", [
    (dict(sigma1=np.eye(3)), "sigma1 must have shape"),
    (dict(sigma2=np.array([[1.0, 0.5], [0.0, 1.0]])), "not symmetric"),
    (dict(mu1=np.array([np.nan, 0.0])), "NaN"),
    (dict(mu2=np.zeros(3), sigma2=np.eye(3)), "differ in dimension"),
])
def test_frechet_rejects_bad_inputs(bad, match):
    args = dict(mu1=np.zeros(2), sigma1=np.eye(2), mu2=np.ones(2), sigma2=np.eye(2))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        M.frechet_distance(**args)


# ---------------------------------------------------------------------------------------------- FID


def test_fid_uses_all_samples_at_full_n_and_stamps_the_score():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((300, 4)), rng.standard_normal((200, 4)) + 0.5
    score = M.fid(a, b, n=200, feature_network="mnist-net", resize="none")
    b_stats = (b.mean(0), np.cov(b, rowvar=False))
    # n = 200 subsamples a (so it differs from the full-a FID) but keeps all of b
    assert score.value != pytest.approx(M.frechet_distance(a.mean(0), np.cov(a, rowvar=False), *b_stats))
    assert score.n == 200 and score.feature_network == "mnist-net" and score.resize == "none"
    assert score.std is None and score.metric == "fid"
    assert M.fid(a, b).n == 200  # n=None: the smaller set
    full = M.fid(a[:200], b)
    assert full.value == pytest.approx(frechet_reference(a[:200].mean(0), np.cov(a[:200], rowvar=False), *b_stats))
    assert score.to_dict() == {"value": score.value, "n": 200, "feature_network": "mnist-net", "resize": "none",
                               "std": None, "metric": "fid"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        score.value = 0.0


def test_fid_subsampling_is_seeded_and_without_replacement():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((500, 3)), rng.standard_normal((500, 3))
    assert M.fid(a, b, n=100, seed=7).value == M.fid(a, b, n=100, seed=7).value
    assert M.fid(a, b, n=100, seed=7).value != M.fid(a, b, n=100, seed=8).value
    # without replacement: subsampling a set of 100 distinct points to n=100 reproduces it exactly
    c = a[:100]
    assert M.fid(c, c[::-1], n=100).value == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("a, b, kwargs, match", [
    (np.zeros(10), np.zeros((10, 2)), {}, "shape \\(n_samples, dim\\)"),
    (np.zeros((10, 2)), np.zeros((10, 3)), {}, "dim 2 but features_b has dim 3"),
    (np.full((10, 2), np.nan), np.zeros((10, 2)), {}, "NaN"),
    (np.zeros((10, 2)), np.zeros((8, 2)), dict(n=9), "larger than the smallest"),
    (np.zeros((10, 2)), np.zeros((8, 2)), dict(n=1), "n must be an integer >= 2"),
    (np.zeros((1, 2)), np.zeros((8, 2)), {}, "at least 2 samples"),
])
def test_fid_rejects_bad_inputs(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.fid(a, b, **kwargs)


# ---------------------------------------------------------------------------------------------- KID


def kid_bruteforce(x, y):
    d = x.shape[1]
    k = lambda u, v: (sum(ui * vi for ui, vi in zip(u, v)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_bruteforce_double_loop():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((15, 3)), rng.standard_normal((15, 3)) * 1.5 + 0.3
    expected = kid_bruteforce(x, y)
    # one subset holding every sample: the subset draw only permutes rows, which MMD ignores
    score = M.kid(x, y, subsets=1, subset_size=15)
    assert score.value == pytest.approx(expected, rel=1e-10)
    assert score.metric == "kid" and score.std == 0.0 and score.n == 15


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((400, 5)), rng.standard_normal((400, 5))
    same = M.kid(a, b, subsets=20, subset_size=100)
    shifted = M.kid(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same.value) < 3 * same.std + 1e-3
    assert shifted.value > 3 * shifted.std > 0 and shifted.value > 50 * abs(same.value)
    assert same.n == 400


@pytest.mark.parametrize("kwargs, match", [
    (dict(subset_size=50), "subset_size must be"),
    (dict(subset_size=1), "subset_size must be"),
    (dict(subsets=0), "subsets must be"),
])
def test_kid_rejects_bad_options(kwargs, match):
    a = np.zeros((20, 2)) + np.arange(20)[:, None]
    with pytest.raises(ValueError, match=match):
        M.kid(a, a, **kwargs)


# ---------------------------------------------------------------------------------------------- drift


def test_drift_curves_are_pairwise_fid_at_one_n():
    rng = np.random.default_rng(7)
    gens = [rng.standard_normal((120 + 10 * g, 3)) + 0.5 * g for g in range(4)]
    cum = M.cumulative_drift(gens, feature_network="toy", resize="bilinear")
    loc = M.local_drift(gens)
    assert cum.n == loc.n == 120 and cum.kind == "cumulative" and loc.kind == "local"
    assert cum.feature_network == "toy" and cum.resize == "bilinear" and cum.metric == "fid"
    assert cum.values[0] == 0.0 and np.isnan(loc.values[0])
    for g in range(1, 4):
        assert cum.values[g] == M.fid(gens[0], gens[g], n=120).value
        assert loc.values[g] == M.fid(gens[g - 1], gens[g], n=120).value
    assert np.all(np.diff(cum.values) > 0)  # the mean walks away steadily
    d = loc.to_dict()
    assert d["values"][0] is None and d["n"] == 120 and list(cum.generations) == [0, 1, 2, 3]


def test_drift_with_kid_and_bad_options():
    rng = np.random.default_rng(8)
    gens = [rng.standard_normal((60, 3)) + g for g in range(3)]
    curve = M.cumulative_drift(gens, metric="kid", subsets=3, subset_size=30)
    assert curve.metric == "kid" and curve.std.shape == (3,) and curve.values[2] > curve.values[1] > 0
    with pytest.raises(ValueError, match="unknown metric 'fld'"):
        M.local_drift(gens, metric="fld")
    with pytest.raises(ValueError, match="at least 2 generations"):
        M.cumulative_drift(gens[:1])
    with pytest.raises(ValueError, match="generation 2 has dim 2"):
        M.local_drift(gens[:2] + [np.zeros((60, 2))])


# ---------------------------------------------------------------------------------------------- phases


def test_detect_phases_on_piecewise_linear_curves():
    # closed form: cumulative climbs 8/gen to g=6, then 1/gen to g=14, then stays; local = its increments
    g = np.arange(25)
    cum = np.where(g <= 6, 8.0 * g, np.where(g <= 14, 48 + (g - 6.0), 56.0))
    loc = np.r_[np.nan, np.diff(cum)]
    loc[1:7] = [20, 16, 12, 8, 6, 4]  # a falling local curve in the active phase
    ph = M.detect_phases(loc, cum)
    # one generation later than the kinks at 6 and 14: the centred window at g = 7 still sees the local
    # drift fall from 4 to 1, and the one at g = 15 its fall from 1 to 0
    assert ph.boundaries == {"active transient": 0, "slow transient": 8, "empirical stationarity": 16}
    assert ph.labels[3] == "active transient" and ph.labels[10] == "slow transient"
    assert ph.labels[-1] == "empirical stationarity"
    # slopes in units of max per whole run: 1 / gen on a max of 56 over 24 generations
    assert ph.cumulative_slope[10] == pytest.approx(24 / 56)


def test_monotone_fit_removes_a_noisy_blip_but_raw_labels_keep_it():
    cum = np.r_[np.linspace(0, 50, 6), np.full(20, 50.0)]
    cum[17] += 5.0  # one bump in the stationary part
    loc = np.r_[np.nan, np.abs(np.diff(cum))]
    ph = M.detect_phases(loc, cum)
    assert "active transient" in ph.raw_labels[8:]  # the bump looks steep on its own
    assert set(ph.labels[8:]) == {"empirical stationarity"}
    assert ph.boundaries == {"active transient": 0, "slow transient": None, "empirical stationarity": 7}
    unsmoothed = M.detect_phases(loc, cum, monotone=False)
    assert unsmoothed.labels == unsmoothed.raw_labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_chain_phases_are_recovered(seed):
    clouds, truth = M.synthetic_phase_chain(seed=seed)
    assert len(clouds) == 31 and clouds[0].shape == (2000, 8)
    ph = M.detect_phases(M.local_drift(clouds), M.cumulative_drift(clouds))
    for phase, first in truth.items():
        assert ph.boundaries[phase] is not None and abs(ph.boundaries[phase] - first) <= 2, (phase, ph.boundaries)


def test_synthetic_chain_with_fewer_generations():
    clouds, truth = M.synthetic_phase_chain(n_generations=20, n_samples=1000, seed=3)
    ph = M.detect_phases(M.local_drift(clouds), M.cumulative_drift(clouds))
    assert truth == {"active transient": 0, "slow transient": 6, "empirical stationarity": 13}
    assert all(abs(ph.boundaries[p] - truth[p]) <= 2 for p in truth), ph.boundaries


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones(5), np.ones(6)), {}, "differ in length"),
    ((np.ones(2), np.ones(2)), {}, "at least 3 generations"),
    ((np.ones(5), np.ones(5)), dict(flat_tol=1.0, slow_tol=0.5), "flat_tol < slow_tol"),
    ((np.ones(5), np.ones(5)), dict(window=1), "window must be"),
    ((np.full(5, np.nan), np.ones(5)), {}, "all NaN"),
    ((np.ones((5, 2)), np.ones(5)), {}, "1-D curve"),
])
def test_detect_phases_rejects_bad_inputs(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.detect_phases(*args, **kwargs)


def test_synthetic_phase_chain_rejects_bad_boundaries():
    with pytest.raises(ValueError, match="slow_start < stationary_start"):
        M.synthetic_phase_chain(n_generations=10, slow_start=6, stationary_start=4)
    with pytest.raises(ValueError, match="n_generations must be >= 6"):
        M.synthetic_phase_chain(n_generations=3)
    with pytest.raises(ValueError, match="0 < decay < 1"):
        M.synthetic_phase_chain(decay=1.0)


# ---------------------------------------------------------------------------------------------- PRDC


def prdc_bruteforce(real, fake, k):
    def kth(x):
        return [sorted(np.linalg.norm(x - p, axis=1))[k] for p in x]  # index 0 is the point itself

    rr, rf = kth(real), kth(fake)
    d = lambda u, v: float(np.linalg.norm(u - v))  # noqa: E731
    precision = np.mean([any(d(f, r) <= rr[i] for i, r in enumerate(real)) for f in fake])
    recall = np.mean([any(d(r, f) <= rf[j] for j, f in enumerate(fake)) for r in real])
    density = sum(d(f, r) <= rr[i] for f in fake for i, r in enumerate(real)) / (k * len(fake))
    coverage = np.mean([any(d(r, f) <= rr[i] for f in fake) for i, r in enumerate(real)])
    return dict(precision=precision, recall=recall, density=density, coverage=coverage)


def test_prdc_matches_bruteforce(monkeypatch):
    rng = np.random.default_rng(9)
    real, fake = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) * 1.3 + 0.4
    ref = prdc_bruteforce(real, fake, 4)
    ours = M.precision_recall_density_coverage(real, fake, k=4)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    # tiny blocks (3 fake rows at a time) must give the same answer
    blockwise = M._chunked_distances
    monkeypatch.setattr(M, "_chunked_distances", lambda a, b: blockwise(a, b, max_entries=100))
    assert M.precision_recall_density_coverage(real, fake, k=4) == ours


def test_prdc_identical_and_disjoint_distributions():
    rng = np.random.default_rng(10)
    real, fake = rng.standard_normal((1000, 2)), rng.standard_normal((1000, 2))
    same = M.precision_recall_density_coverage(real, fake, k=5)
    assert same["precision"] > 0.9 and same["recall"] > 0.9
    assert same["coverage"] > 0.9 and abs(same["density"] - 1) < 0.1
    apart = M.precision_recall_density_coverage(real, fake + 100.0, k=5)
    assert apart == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_rejects_bad_k():
    x = np.random.default_rng(0).standard_normal((5, 2))
    with pytest.raises(ValueError, match="more than k samples"):
        M.precision_recall_density_coverage(x, x, k=5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        M.precision_recall_density_coverage(x, x, k=0)


# ---------------------------------------------------------------------------------------------- memorisation


def test_memorisation_finds_planted_copies():
    rng = np.random.default_rng(11)
    training = rng.standard_normal((300, 8))
    copies = training[rng.choice(300, 30, replace=False)] + 1e-6 * rng.standard_normal((30, 8))
    samples = np.vstack([copies, rng.standard_normal((70, 8))])
    assert M.memorisation_rate(samples, training, threshold=1e-3) == pytest.approx(0.3)
    assert M.memorisation_rate(samples, training, ratio=1 / 3) == pytest.approx(0.3)
    # brute force for a threshold that also catches some fresh samples
    nearest = np.min(np.linalg.norm(samples[:, None] - training[None], axis=2), axis=1)
    assert M.memorisation_rate(samples, training, threshold=1.5) == pytest.approx(np.mean(nearest < 1.5))


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one of"),
    (dict(threshold=1.0, ratio=0.5), "exactly one of"),
    (dict(ratio=1.5), "ratio must be in"),
    (dict(threshold=-1.0), "threshold must be > 0"),
])
def test_memorisation_rejects_bad_options(kwargs, match):
    x = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match=match):
        M.memorisation_rate(x, x, **kwargs)


# ---------------------------------------------------------------------------------------------- entropy


def test_class_histogram_entropy_against_scipy():
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 7, 500)
    counts = np.bincount(labels, minlength=10)
    assert M.class_histogram_entropy(labels, 10) == pytest.approx(scipy.stats.entropy(counts, base=2))
    assert M.class_histogram_entropy(np.arange(8).repeat(5), 8) == pytest.approx(3.0)
    assert M.class_histogram_entropy(np.zeros(20, int), 10) == 0.0
    probs = np.eye(4)[labels % 4] * 0.7 + 0.075  # argmax = labels % 4
    counts4 = np.bincount(labels % 4, minlength=4)
    assert M.class_histogram_entropy(probs, 4) == pytest.approx(scipy.stats.entropy(counts4, base=2))


@pytest.mark.parametrize("x, n_classes, match", [
    (np.array([0, 1, 10]), 10, "must lie in"),
    (np.array([0.5, 1.0]), 3, "must be integers"),
    (np.ones((4, 3)), 5, "3 columns but n_classes=5"),
    (np.ones((2, 2, 2)), 2, "expected labels"),
    (np.array([], int), 3, "no labels"),
])
def test_class_histogram_entropy_rejects_bad_inputs(x, n_classes, match):
    with pytest.raises(ValueError, match=match):
        M.class_histogram_entropy(x, n_classes)


def test_gaussian_entropy_against_scipy():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 4))
    cov = np.cov(x, rowvar=False)
    expected = scipy.stats.multivariate_normal(np.zeros(4), cov).entropy()
    assert M.gaussian_entropy(x, ridge=0.0) == pytest.approx(expected, rel=1e-10)
    # collapsing a direction lowers it; the ridge keeps a singular covariance finite
    flat = x.copy()
    flat[:, 0] = 0.0
    assert np.isfinite(M.gaussian_entropy(flat)) and M.gaussian_entropy(flat) < M.gaussian_entropy(x)


# ---------------------------------------------------------------------------------------------- helpers


def test_equal_count():
    assert M._equal_count(None, (5, 9)) == 5
    with pytest.raises(ValueError, match="n must be an integer"):
        M._equal_count(2.5, (5, 9))
