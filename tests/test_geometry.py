"""Tests for resonance_utils.geometry: closed forms, brute-force references, and the synthetic taxonomy."""
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import special_ortho_group

from resonance_utils import geometry as G


def line_in(dim, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return np.outer(rng.uniform(0, 5, n), rng.standard_normal(dim)) + rng.standard_normal(dim)


# ---------------------------------------------------------------------------------------------- global


def test_spectrum_and_total_variance_match_numpy_covariance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    cov = np.cov(x, rowvar=False)
    assert G.total_variance(x) == pytest.approx(np.trace(cov), rel=1e-12)
    np.testing.assert_allclose(G.pca_spectrum(x), np.sort(np.linalg.eigvalsh(cov))[::-1], rtol=1e-9)
    # fewer samples than dimensions: the spectrum is padded with the zeros the rank implies
    few = G.pca_spectrum(x[:4] @ rng.standard_normal((6, 10)))
    assert few.shape == (10,) and np.all(few[3:] == 0) and np.all(few[:3] > 0)


def test_principal_axes_match_the_covariance_eigenvectors():
    """Against eigh of the covariance: the same axes up to sign, variances = singular values^2 / (n - 1)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 5)) @ np.diag([5.0, 3.0, 2.0, 1.0, 0.5]) @ special_ortho_group.rvs(5, random_state=4)
    mean, axes, sv = G.principal_axes(x, 3)
    w, v = np.linalg.eigh(np.cov(x, rowvar=False))
    ref = v[:, np.argsort(w)[::-1]].T
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    assert axes.shape == (3, 5) and sv.shape == (5,)
    np.testing.assert_allclose(np.abs(np.sum(axes * ref[:3], axis=1)), 1.0, atol=1e-9)  # same axes, any sign
    np.testing.assert_allclose(sv ** 2 / (len(x) - 1), np.sort(w)[::-1], rtol=1e-9)
    assert G.principal_axes(x)[1].shape == (5, 5) and G.principal_axes(x[:3])[1].shape == (3, 5)
    # a given centre: the directions of x's scatter about that point, not about x's own mean
    centre = x.mean(0) + np.array([10.0, 0, 0, 0, 0])
    c, axes_c, _ = G.principal_axes(x, 1, mean=centre)
    assert np.array_equal(c, centre)
    scatter = (x - centre).T @ (x - centre)
    top = np.linalg.eigh(scatter)[1][:, -1]
    assert abs(axes_c[0] @ top) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="rows"):
        G.principal_axes(x[0])


def test_participation_ratio_and_anisotropy_closed_forms():
    rng = np.random.default_rng(1)
    iso = rng.standard_normal((4000, 10))
    assert G.participation_ratio(iso) == pytest.approx(10, rel=0.03)
    assert G.anisotropy(iso) == pytest.approx(1, abs=0.15)
    assert G.participation_ratio(np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(2.0)
    assert G.participation_ratio(np.array([3.0, 1.0])) == pytest.approx(16 / 10)
    assert G.anisotropy(np.array([4.0, 0.0, 0.0, 0.0])) == pytest.approx(4.0)
    line = line_in(10)
    assert G.participation_ratio(line) == pytest.approx(1, abs=1e-6)
    assert G.anisotropy(line) == pytest.approx(10, rel=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        G.participation_ratio(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="zero variance"):
        G.anisotropy(np.ones((5, 3)))


def test_spectrum_shape_closed_forms():
    # log(l1/l2) and log(l2 / geometric mean of the lower half): stds 3, 1, 1, 0.5, 0.5, 0.5 along axes
    rng = np.random.default_rng(2)
    z = rng.standard_normal((20000, 6))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # exactly white
    x = z * np.array([3, 1, 1, 0.5, 0.5, 0.5])
    shape = G.spectrum_shape(x)
    assert shape["elongation"] == pytest.approx(np.log(9), rel=1e-6)
    assert shape["flatness"] == pytest.approx(np.log(1 / 0.25), rel=1e-6)


def test_centroid_shift():
    a = np.random.default_rng(3).standard_normal((50, 4))
    assert G.centroid_shift(a, a + np.array([3.0, 4.0, 0, 0])) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="dim 4 but b has dim 2"):
        G.centroid_shift(a, a[:, :2])


# ---------------------------------------------------------------------------------------------- local


def test_knn_radius_matches_bruteforce():
    x = np.random.default_rng(4).standard_normal((80, 3))
    d = np.sort(cdist(x, x), axis=1)  # column 0 is the point itself
    assert G.knn_radius(x, 5) == pytest.approx(d[:, 5].mean(), rel=1e-12)


def test_lid_mle_matches_its_formula_by_bruteforce():
    x = np.random.default_rng(5).standard_normal((60, 4))
    k = 6
    t = np.sort(cdist(x, x), axis=1)[:, 1:k + 1]
    per_point = [1 / np.mean([np.log(t[i, k - 1] / t[i, j]) for j in range(k - 1)]) for i in range(len(x))]
    np.testing.assert_allclose(G.lid_mle(x, k, per_point=True), per_point, rtol=1e-10)
    # MacKay-Ghahramani: the inverse of the mean inverse, not the mean
    assert G.lid_mle(x, k) == pytest.approx(1 / np.mean(1 / np.array(per_point)), rel=1e-10)


def test_twonn_matches_its_formula_by_bruteforce():
    x = np.random.default_rng(6).standard_normal((100, 3))
    d = np.sort(cdist(x, x), axis=1)
    mu = np.sort(d[:, 2] / d[:, 1])
    keep = 90  # drop the largest 10%
    xs, ys = np.log(mu[:keep]), -np.log(1 - np.arange(1, keep + 1) / 100)
    assert G.twonn_dimension(x) == pytest.approx(np.sum(xs * ys) / np.sum(xs * xs), rel=1e-10)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_intrinsic_dimension_of_a_uniform_cube(d):
    x = np.random.default_rng(d).random((2000, d))
    # boundary effects bias both estimators down a little as d grows
    assert G.lid_mle(x, 20) == pytest.approx(d, rel=0.15)
    assert G.twonn_dimension(x) == pytest.approx(d, rel=0.1)


def test_intrinsic_dimension_of_a_line_and_a_plane_in_10d():
    assert G.lid_mle(line_in(10), 20) == pytest.approx(1, abs=0.05)
    assert G.twonn_dimension(line_in(10)) == pytest.approx(1, abs=0.1)
    rng = np.random.default_rng(7)
    plane = rng.random((2000, 2)) @ rng.standard_normal((2, 10))
    assert G.lid_mle(plane, 20) == pytest.approx(2, rel=0.1)
    assert G.twonn_dimension(plane) == pytest.approx(2, rel=0.1)


def test_duplicates_do_not_break_log_distance_estimators():
    x = np.random.default_rng(8).random((500, 2))
    doubled = np.vstack([x, x[:100]])
    assert G.lid_mle(doubled, 10) == pytest.approx(G.lid_mle(x, 10))
    assert G.twonn_dimension(doubled) == pytest.approx(G.twonn_dimension(x))


@pytest.mark.parametrize("dim", [3, 12])  # covariance branch (k + 1 > dim) and Gram branch (k + 1 <= dim)
def test_local_spectra_match_bruteforce_local_covariances(dim):
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((50, dim))
    k = 5
    nearest = np.argsort(cdist(x, x), axis=1)[:, :k + 1]
    ours = G.local_spectra(x, k)
    for i in (0, 17, 49):
        ref = np.sort(np.linalg.eigvalsh(np.cov(x[nearest[i]], rowvar=False)))[::-1][:ours.shape[1]]
        np.testing.assert_allclose(ours[i], np.clip(ref, 0, None), atol=1e-10)


def test_local_pca_shape_sees_flat_and_elongated_neighbourhoods():
    rng = np.random.default_rng(9)
    ball = rng.standard_normal((600, 3))
    disk = ball * np.array([1, 1, 0.05])
    needle = ball * np.array([1, 0.002, 0.002])  # thin even at the 10-neighbour scale
    b, d, n = (G.local_pca_shape(c, 10) for c in (ball, disk, needle))
    assert d["mean_flatness"] > b["mean_flatness"] + 1  # log(l2 / l3): squashed third axis
    assert n["mean_elongation"] > b["mean_elongation"] + 1  # log(l1 / l2): one dominant axis
    assert n["mean_flatness"] < d["mean_flatness"] - 1 and d["mean_elongation"] < n["mean_elongation"] - 1
    assert d["mean_elongation"] < 1 and b["elongation"].shape == (600,)
    assert len(G.local_pca_shape(ball, 10, max_anchors=50)["flatness"]) == 50


def test_roughness_of_smooth_crumpled_and_noisy_clouds():
    rng = np.random.default_rng(10)
    u = rng.uniform(-1, 1, (1000, 2))
    plane = np.c_[u, np.zeros((1000, 3))]
    crumpled = plane.copy()
    crumpled[:, 2:] = 0.05 * np.sin(60 * u @ rng.standard_normal((2, 3)))
    noise = rng.standard_normal((1000, 5))
    assert G.roughness(plane, 10, fit_dim=2) == pytest.approx(0, abs=1e-12)
    assert G.roughness(crumpled, 10, fit_dim=2) > 0.15
    # isotropic: 3 of 5 directions left over in the population, fewer in 11-point samples
    assert G.roughness(noise, 10, fit_dim=2) > 0.25
    assert G.roughness(noise, 10, fit_dim=5) == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="fit_dim must be a positive integer"):
        G.roughness(plane, 10, fit_dim=0)


def test_scale_free_measures_ignore_scale():
    x = np.random.default_rng(11).standard_normal((300, 5)) * np.array([3, 2, 1, 1, 0.5])
    a, b = G.geometry_summary(x), G.geometry_summary(7 * x)
    for key, value in a.items():
        factor = {"total_variance": 49, "knn_radius": 7}.get(key, 1)
        assert b[key] == pytest.approx(factor * value, rel=1e-8), key


def test_geometry_summary_and_trajectory():
    rng = np.random.default_rng(12)
    clouds = [rng.standard_normal((200, 4)) * (1 + g) + g for g in range(3)]
    s = G.geometry_summary(clouds[0], k=8)
    assert s["lid_mle"] == pytest.approx(G.lid_mle(clouds[0], 8))
    assert s["participation_ratio"] == pytest.approx(G.participation_ratio(clouds[0]))
    assert s["knn_radius"] == pytest.approx(G.knn_radius(clouds[0], 8))
    df = G.geometry_trajectory(clouds, k=8)
    assert isinstance(df, pd.DataFrame) and list(df["generation"]) == [0, 1, 2]
    assert df["total_variance"].is_monotonic_increasing
    assert df["centroid_shift"].iloc[2] == pytest.approx(G.centroid_shift(clouds[0], clouds[2]))


@pytest.mark.parametrize("fn, args, match", [
    (G.total_variance, (np.zeros(5),), "shape \\(n_samples, dim\\)"),
    (G.knn_radius, (np.zeros((5, 2)), 5), "k=5 needs more than 5 samples"),
    (G.lid_mle, (np.random.default_rng(0).random((20, 2)), 1), "k >= 2"),
    (G.lid_mle, (np.full((10, 2), np.nan),), "NaN"),
    (G.twonn_dimension, (np.ones((10, 2)),), "3 distinct points"),
    (G.local_spectra, (np.zeros((5, 2)), 0), "k must be a positive integer"),
])
def test_local_measures_reject_bad_inputs(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


# ---------------------------------------------------------------------------------------------- taxonomy


@pytest.mark.parametrize("pattern", G.PATTERNS)
def test_classifier_recovers_every_constructed_pattern(pattern):
    for seed in (0, 1, 2):
        result = G.classify_pattern(G.synthetic_pattern_sequence(pattern, seed=seed))
        assert result.pattern == pattern, (seed, result)
        assert (result.log_variance_ratio > 0) == (result.global_axis == "expansion")
        assert result.log_variance_ratio == pytest.approx(np.log(2) * (1 if "expansion" in pattern else -1))


def test_classifier_at_other_sizes():
    for pattern in ("wrinkled expansion", "oblate contraction", "prolate expansion", "coherent contraction"):
        clouds = G.synthetic_pattern_sequence(pattern, n_points=1200, dim=16, n_generations=4, seed=5)
        assert len(clouds) == 4 and clouds[0].shape == (1200, 16)
        assert G.classify_pattern(clouds).pattern == pattern


@pytest.mark.parametrize("pattern", ["wrinkled contraction", "oblate expansion", "prolate contraction"])
def test_classifier_is_invariant_to_rotation_and_translation(pattern):
    clouds = G.synthetic_pattern_sequence(pattern, seed=3)
    rotation = special_ortho_group.rvs(8, random_state=4)
    moved = [c @ rotation.T + 100.0 for c in clouds]
    a, b = G.classify_pattern(clouds).to_dict(), G.classify_pattern(moved).to_dict()
    assert a["pattern"] == b["pattern"] == pattern
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_thresholds_decide_the_local_axis():
    clouds = G.synthetic_pattern_sequence("oblate expansion", seed=0)
    result = G.classify_pattern(clouds)
    assert result.local_axis == "oblate"
    # a tolerance above the measured flattening turns the same clouds coherent
    assert G.classify_pattern(clouds, flattening_tol=result.flattening * 1.01).local_axis == "coherent"
    assert G.classify_pattern(clouds, flattening_tol=result.flattening * 0.99).local_axis == "oblate"


def test_global_thickening_is_not_wrinkling():
    # a flat sheet whose off-plane spread grows until the whole cloud is thick: the neighbourhoods get rough,
    # but so does the global spectrum, so the local detail is "followed" by the global shape
    rng = np.random.default_rng(0)
    u, z = rng.uniform(-1, 1, (600, 2)), rng.standard_normal((600, 6))
    result = G.classify_pattern([np.c_[u, 0.01 * z], np.c_[u, 0.3 * z]])
    assert result.roughness_last - result.roughness_first > 0.3  # locally rough ...
    assert result.local_axis == "coherent" and result.wrinkling < 0.05  # ... but not wrinkled


def test_classify_trajectory_windows():
    clouds = G.synthetic_pattern_sequence("prolate expansion", n_generations=6, seed=1)
    patterns = G.classify_trajectory(clouds, window=3)
    assert [(p.start, p.end) for p in patterns] == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert all(p.global_axis == "expansion" for p in patterns)
    assert all(p.local_axis in ("prolate", "coherent") for p in patterns)
    assert patterns[0].local_axis == "prolate"  # the first window holds most of the stretch in log terms
    with pytest.raises(ValueError, match="longer than the 6 clouds"):
        G.classify_trajectory(clouds, window=7)


@pytest.mark.parametrize("call, match", [
    (lambda: G.synthetic_pattern_sequence("crumpled expansion"), "unknown pattern 'crumpled expansion'"),
    (lambda: G.classify_pattern([np.zeros((50, 3))]), "at least 2 clouds"),
    (lambda: G.classify_pattern([np.ones((50, 3)), np.ones((50, 4))]), "dim 3 but last cloud has dim 4"),
    (lambda: G.classify_pattern(G.synthetic_pattern_sequence("coherent expansion"), wrinkling_tol=0),
     "wrinkling_tol must be > 0"),
    (lambda: G.classify_trajectory([np.zeros((5, 2))] * 3, window=1), "window must be"),
    (lambda: G.synthetic_pattern_sequence("oblate expansion", dim=3), "dim >= 4"),
])
def test_taxonomy_rejects_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
