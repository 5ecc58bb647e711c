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


def test_split_halves_are_disjoint_seeded_and_n_rows_each():
    rng = np.random.default_rng(7)
    gens = [np.arange(2 * (50 + 5 * g) * 3, dtype=float).reshape(-1, 3) + 1000 * g for g in range(3)]
    halves = M.split_halves(gens, seed=1)
    for g, (a, b) in enumerate(halves):
        assert a.shape == b.shape == (50, 3)  # n=None: half the smallest generation
        rows = {tuple(r) for r in np.vstack([a, b])}
        assert len(rows) == 100 and rows <= {tuple(r) for r in gens[g]}  # disjoint, drawn from generation g
    again = M.split_halves(gens, seed=1)
    assert all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(halves, again))
    assert not np.array_equal(M.split_halves(gens, seed=2)[0][0], halves[0][0])
    assert M.split_halves(gens, n=20)[2][0].shape == (20, 3)
    with pytest.raises(ValueError, match="n=51 needs 2n=102 samples per generation"):
        M.split_halves(gens, n=51)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        M.split_halves(gens, n=1)
    del rng


def test_drift_curves_are_fid_between_disjoint_halves_at_one_n():
    rng = np.random.default_rng(7)
    gens = [rng.standard_normal((120 + 10 * g, 3)) + 0.5 * g for g in range(4)]
    cum = M.cumulative_drift(gens, feature_network="toy", resize="bilinear", resplits=5)
    loc = M.local_drift(gens, resplits=5)
    assert cum.n == loc.n == 60 and cum.kind == "cumulative" and loc.kind == "local"
    assert cum.feature_network == "toy" and cum.resize == "bilinear" and cum.metric == "fid"
    halves = M.split_halves(gens)
    for g, (a, b) in enumerate(halves):
        assert cum.floor[g] == loc.floor[g] == M.fid(a, b).value  # one floor: two halves of generation g
        assert cum.values[g] == M.fid(a, halves[0][1]).value
        if g:
            assert loc.values[g] == M.fid(a, halves[g - 1][1]).value
    # generation 0 against itself at the floor's n, not a hard 0: no jump at generation 1
    assert cum.values[0] == cum.floor[0] > 0 and cum.excess[0] == 0 and np.isnan(loc.values[0])
    assert np.all(np.diff(cum.excess) > 0)  # the mean walks away steadily
    np.testing.assert_allclose(cum.excess, cum.values - cum.floor)
    # intervals: values +- t(resplits - 1) se, and the excess and floor intervals likewise
    t = scipy.stats.t.ppf(0.975, 4)
    np.testing.assert_allclose(cum.high - cum.values, t * cum.se)
    np.testing.assert_allclose(cum.excess_interval()[0], cum.excess - t * cum.excess_se)
    np.testing.assert_allclose(cum.floor_interval()[1], cum.floor + t * cum.floor_se)
    assert np.all(cum.se[1:] > 0) and cum.excess_se[0] == 0 and np.all(np.isfinite(loc.se[1:]))
    d = loc.to_dict()
    assert d["values"][0] is None and d["n"] == 60 and list(cum.generations) == [0, 1, 2, 3]
    assert d["floor"] == [float(v) for v in loc.floor] and d["resplits"] == 5 and d["coverage"] == 0.95
    assert {"low", "high", "se", "floor_se", "excess", "excess_se", "trend_se"} <= set(d)
    # both at once: the same numbers
    both = M.drift_curves(gens, feature_network="toy", resize="bilinear", resplits=5)
    for one, joint in zip((loc, cum), both):
        for key in ("values", "floor", "se", "excess_se", "trend_se", "low", "high"):
            np.testing.assert_array_equal(getattr(one, key), getattr(joint, key))


def test_resplit_distance_matches_frechet_distance_in_both_paths():
    rng = np.random.default_rng(8)
    for rows, dim in ((40, 5), (10, 30)):  # more rows than dimensions: eigen path; fewer: Gram path
        a, b = rng.standard_normal((rows, dim)), rng.standard_normal((rows, dim)) * 1.5 + 0.3
        ha, hb = M._FidHalf(a), M._FidHalf(b)
        assert ha.gram == (rows <= dim)
        (ma, ca), (mb, cb) = M.mean_and_covariance(a), M.mean_and_covariance(b)
        # reference: symmetric square roots by eigh, rounding-level eigenvalues set to 0 (the Gram case's covariances
        # have rank 9 of 30: the square roots of 21 eigenvalues of ~1e-15 add ~7e-7, which is what scipy's sqrtm in
        # frechet_distance gets wrong; checked against 50-digit mpmath)
        w, v = np.linalg.eigh(ca)
        root = (v * np.sqrt(np.where(w > 1e-10 * w.max(), w, 0))) @ v.T
        inner = np.linalg.eigvalsh(root @ cb @ root)
        trace_root = np.sqrt(np.where(inner > 1e-10 * inner.max(), inner, 0)).sum()
        expected = float((ma - mb) @ (ma - mb) + np.trace(ca) + np.trace(cb) - 2 * trace_root)
        assert M._fd_halves(ha, hb) == pytest.approx(expected, rel=1e-8, abs=1e-10)
        assert M.frechet_distance(ma, ca, mb, cb) == pytest.approx(expected, rel=1e-6)
    # a constant feature: a singular covariance, no Cholesky factor (the symmetric square root instead)
    a, b = rng.standard_normal((40, 5)), rng.standard_normal((40, 5)) + 0.2
    a[:, 0] = 1.0
    ha = M._FidHalf(a)
    expected = M.frechet_distance(*M.mean_and_covariance(a), *M.mean_and_covariance(b))
    assert M._fd_halves(ha, M._FidHalf(b)) == pytest.approx(expected, rel=1e-8, abs=1e-10)
    assert not np.allclose(np.triu(ha.root, 1), 0)  # not a triangular factor


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_torch_linear_algebra_route_gives_numpys_numbers(monkeypatch, device):
    """On a GPU machine FID's large factorisations run in torch (metrics._torch_device); torch on `device` stands
    in here, so the route's bookkeeping (dtypes, the factor's triangle, the singular case's error) is checked on the
    CPU too. Against the numpy route: the same distances, the same variance, the same fallback."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    rng = np.random.default_rng(31)
    cases = [(rng.standard_normal((60, 12)), rng.standard_normal((70, 12)) * 1.3 + 0.2),  # covariance path
             (rng.standard_normal((9, 20)), rng.standard_normal((9, 20)) + 0.5)]  # Gram path
    singular = rng.standard_normal((60, 12))
    singular[:, 0] = 1.0  # no Cholesky factor: the symmetric square root
    cases.append((singular, cases[0][1]))

    def numbers():
        out = []
        for a, b in cases:
            n = min(len(a), len(b))
            out += [M._fd_halves(M._FidHalf(a[:n]), M._FidHalf(b[:n])), M._fid_first_order_variance(a, b),
                    M.frechet_distance(*M.mean_and_covariance(a), *M.mean_and_covariance(b))]
        return np.array(out)

    by_numpy = numbers()
    used = []
    monkeypatch.setattr(M, "_torch_device", lambda m: used.append(m.shape) or device)
    by_torch = numbers()
    assert used, "the torch route was taken"
    np.testing.assert_allclose(by_torch, by_numpy, rtol=1e-9, atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        M._cholesky(np.cov(singular, rowvar=False))


def test_first_order_variance_of_a_mean_shift():
    # N(0, I) against N(delta, I): the first-order term of FID is 2 delta.(mean_p - mean_q), of variance
    # 4 |delta|^2 (1/Np + 1/Nq); the Bures part has no first-order term for equal covariances
    rng = np.random.default_rng(9)
    dim, size = 4, 4000
    delta = np.r_[2.0, np.zeros(dim - 1)]
    p, q = rng.standard_normal((size, dim)), rng.standard_normal((size, dim)) + delta
    assert M._fid_first_order_variance(p, q) == pytest.approx(4 * 4.0 * 2 / size, rel=0.1)
    assert M._fid_first_order_variance(p, q, own_only=True) == pytest.approx(4 * 4.0 / size, rel=0.1)
    assert M._fid_first_order_variance(p, rng.standard_normal((size, dim))) < 1e-4  # same law: ~0


def _dense_first_order_variance(p, q, own_only=False):
    """The delta-method variance as its docstring writes it, with d x d matrices (scipy's sqrtm and pinv): the
    reference for the n x n route metrics takes with fewer rows than dimensions."""
    from scipy.linalg import pinvh, sqrtm

    def transport(sa, sb):
        root = np.real(sqrtm(sa))
        inv_root = pinvh(root, atol=1e-8 * np.abs(root).max())
        return inv_root @ np.real(sqrtm(root @ sb @ root)) @ inv_root

    mp, mq = p.mean(0), q.mean(0)
    x, y = p - mp, q - mq
    sp, sq = np.cov(p, rowvar=False), np.cov(q, rowvar=False)
    cp, cq, eye, diff = sp / len(p), sq / len(q), np.eye(p.shape[1]), mp - mq
    var = (2 * x @ diff + np.einsum("ij,jk,ik->i", x, eye - transport(sp, sq), x)).var(ddof=1) / len(p)
    var -= 4 * np.trace(cp @ (cp + cq))
    if not own_only:
        var += (-2 * y @ diff + np.einsum("ij,jk,ik->i", y, eye - transport(sq, sp), y)).var(ddof=1) / len(q)
        var -= 4 * np.trace(cq @ (cp + cq))
    return max(var, 0.0)


@pytest.mark.parametrize("rows, dim", [(500, 6), (30, 64), (40, 300)])
def test_first_order_variance_and_fid_match_the_dense_formulas(rows, dim):
    """More rows than dimensions and fewer (the rehearsal's 20-40 rows of 2048-d Inception features): the same
    numbers as the d x d formulas (frechet_distance; the transport map through sqrtm and a pseudo-inverse)."""
    rng = np.random.default_rng(rows + dim)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    p = rng.standard_normal((rows, dim)) @ mix
    q = 1.3 * rng.standard_normal((rows + 7, dim)) @ mix + 0.2
    for own_only in (False, True):
        assert M._fid_first_order_variance(p, q, own_only=own_only) == pytest.approx(
            _dense_first_order_variance(p, q, own_only), rel=1e-6)
    n = min(len(p), len(q))
    dense = M.frechet_distance(*M.mean_and_covariance(p[:n]), *M.mean_and_covariance(q[:n]))
    assert M.fid(p[:n], q[:n], n=n).value == pytest.approx(dense, rel=1e-7)


def test_drift_without_resplits_has_a_floor_but_no_errors():
    rng = np.random.default_rng(10)
    gens = [rng.standard_normal((40, 2)) + g for g in range(4)]
    cum = M.cumulative_drift(gens, resplits=0)
    assert np.all(np.isfinite(cum.floor)) and np.all(np.isnan(cum.se)) and np.all(np.isnan(cum.low))
    ph = M.detect_phases(M.local_drift(gens, resplits=0), cum)  # errors then come from the curves' scatter
    assert ph.floor_known and len(ph.labels) == 4


def test_drift_with_kid_and_bad_options():
    rng = np.random.default_rng(8)
    gens = [rng.standard_normal((60, 3)) + g for g in range(3)]
    curve = M.cumulative_drift(gens, metric="kid", subsets=3, subset_size=30, resplits=4)
    assert curve.metric == "kid" and curve.n == 30 and curve.std.shape == (3,)
    assert curve.values[2] > curve.values[1] > 0 and np.all(curve.se[1:] > 0)
    assert abs(curve.floor[1]) < 3 * curve.floor_se[1]  # unbiased: the floor of KID is 0 on average
    with pytest.raises(ValueError, match="unknown metric 'fld'"):
        M.local_drift(gens, metric="fld")
    with pytest.raises(ValueError, match="at least 2 generations"):
        M.cumulative_drift(gens[:1])
    with pytest.raises(ValueError, match="generation 2 has dim 2"):
        M.local_drift(gens[:2] + [np.zeros((60, 2))])
    with pytest.raises(ValueError, match="resplits must be 0"):
        M.local_drift(gens, resplits=1)
    with pytest.raises(ValueError, match="coverage must lie in"):
        M.cumulative_drift(gens, coverage=1.0)
    with pytest.raises(ValueError, match="two disjoint halves of at least 2 need 4"):
        M.cumulative_drift([np.zeros((3, 2)), np.ones((3, 2))])


# ---------------------------------------------------------------------------------------------- phases


def test_detect_phases_on_piecewise_linear_curves():
    # closed form: cumulative climbs 8/gen to g=6, then 1/gen to g=14, then stays; local = its increments.
    # Arrays: no floor, and noiseless curves (their scatter is 0), so every nonzero slope is significant
    g = np.arange(25)
    cum = np.where(g <= 6, 8.0 * g, np.where(g <= 14, 48 + (g - 6.0), 56.0))
    loc = np.r_[np.nan, np.diff(cum)]
    loc[1:7] = [20, 16, 12, 8, 6, 4]  # a falling local curve in the active phase
    ph = M.detect_phases(loc, cum)
    # one generation later than the kinks at 6 and 14: the centred window at g = 7 still sees the local
    # drift fall from 4 to 1, and the one at g = 15 its fall from 1 to 0
    assert ph.boundaries == {"active transient": 0, "slow transient": 8, "empirical stationarity": 16}
    assert ph.labels[3] == "active transient" and ph.labels[10] == "slow transient"
    assert ph.labels[-1] == "empirical stationarity" and not ph.floor_known
    # slopes in units of max per whole run: 1 / gen on a max of 56 over 24 generations
    assert ph.cumulative_slope[10] == pytest.approx(24 / 56)
    assert np.all(np.isnan(ph.local_level))  # no floor: the local level is not tested


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


def test_monotone_fit_merges_phases_shorter_than_min_generations():
    codes = np.array([0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2])
    assert list(M._monotone_fit(codes, 1)) == list(codes)
    # a one-generation slow phase cannot stand: it joins a neighbour (ties: the earlier boundary)
    assert list(M._monotone_fit(codes, 3)) == [0] * 5 + [2] * 6
    assert list(M._monotone_fit(np.array([0, 0, 1, 1, 1, 2, 2, 2]), 3)) == [1] * 5 + [2] * 3
    assert list(M._monotone_fit(np.array([2, 0]), 3)) in ([0, 0], [2, 2])  # a run shorter than min: one phase


def test_level_above_the_floor_is_what_makes_a_walk_active():
    # a curve whose local drift is constant well above its floor and whose cumulative drift rises steadily:
    # a random walk's expected curves; with their floor and errors it is active, as arrays (no floor) it is not
    G1 = 12
    floor = np.full(G1, 2.0)
    loc = M.DriftCurve(np.r_[np.nan, np.full(G1 - 1, 4.0)], 100, "toy", "none", "fid", "local", floor=floor,
                       excess_se=np.full(G1, 0.5), trend_se=np.full(G1, 0.5))
    cum = M.DriftCurve(2.0 + 2.0 * np.arange(G1), 100, "toy", "none", "fid", "cumulative", floor=floor,
                       excess_se=np.r_[0.0, np.full(G1 - 1, 1.0)], trend_se=np.full(G1, 1.0))
    ph = M.detect_phases(loc, cum)
    assert ph.floor_known and set(ph.labels) == {"active transient"}
    assert np.all(ph.local_level[1:] == 1.0) and np.all(ph.local_level_z[1:] > 2)
    assert M.detect_phases(loc.values, cum.values).labels[-1] != "active transient"
    # the same local level within its errors of the floor (se 5) is not movement
    quiet = M.DriftCurve(loc.values, 100, "toy", "none", "fid", "local", floor=floor, excess_se=np.full(G1, 5.0))
    still_cum = M.DriftCurve(np.full(G1, 2.0), 100, "toy", "none", "fid", "cumulative", floor=floor,
                             excess_se=np.full(G1, 1.0))
    assert set(M.detect_phases(quiet, still_cum).labels) == {"empirical stationarity"}


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones(5), np.ones(6)), {}, "differ in length"),
    ((np.ones(2), np.ones(2)), {}, "at least 3 generations"),
    ((np.ones(5), np.ones(5)), dict(flat_tol=1.0, slow_tol=0.5), "flat_tol < slow_tol"),
    ((np.ones(5), np.ones(5)), dict(window=1), "window must be"),
    ((np.ones(5), np.ones(5)), dict(z=0), "z must be > 0"),
    ((np.ones(5), np.ones(5)), dict(min_generations=0), "min_generations must be"),
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


# ---------------------------------------------------------------------------------------------- input checks
def test_check_choice_accepts_only_the_listed_strings():
    M.check_choice("kid", ("fid", "kid"), "metric")
    M.check_choice("a", {"a": 1, "b": 2}, "case")  # a mapping: its keys
    for bad in ("fld", None, 1, ("fid",), ["fid"]):
        with pytest.raises(ValueError, match=r"unknown metric .*; choose one of \['fid', 'kid'\]"):
            M.check_choice(bad, ("fid", "kid"), "metric")

