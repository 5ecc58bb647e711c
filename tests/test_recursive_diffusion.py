"""Tests for resonance_utils.recursive_diffusion: every simulation against its closed form, with stated tolerances.

Tolerances are in standard errors (SE) computed from the closed form or from the replicates; 4.5 SE leaves a
false-alarm rate below 1e-5 per comparison, while each closed form differs from the wrong alternative (ML vs
unbiased variance, no shrinkage, wrong rate) by many SE at these sample sizes.
"""
import numpy as np
import pytest
from scipy import stats

from resonance_utils import recursive_diffusion as RD

DATA_1D = RD.isotropic_mixture([0.5, 0.3, 0.2], [-1.0, 1.5, 3.0], [0.3, 0.4, 0.3])
DATA_2D = RD.GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.2, -0.3]],
                             [[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]]])


def mixture_cdf(model):
    comps = [(w, m[0], np.sqrt(c[0, 0])) for w, m, c in zip(model.weights, model.means, model.covs)]
    return lambda z: sum(w * stats.norm.cdf(z, m, s) for w, m, s in comps)


def assert_moments_match(x, model, max_order, n_se=4.5):
    """Sample Hermite moments of x agree with the model's closed form within n_se standard errors."""
    got = RD.sample_hermite_moments(x, max_order)
    want = RD.hermite_moments(model, max_order)
    se = RD.hermite_sampling_se(model, max_order, len(x))
    mask = se > 0
    z = np.abs(got - want)[mask] / se[mask]
    assert z.max() < n_se, f"Hermite moments off by {z.max():.1f} SE: {got} vs {want}"


# ------------------------------------------------------------------------------------------ the VP map


def test_early_stop_map_shrinks_and_smooths_and_composes():
    a, s2 = RD.vp_coefficients(0.3)
    assert a == pytest.approx(np.exp(-0.3)) and s2 == pytest.approx(1 - np.exp(-0.6))
    out = RD.early_stop_map(DATA_2D, 0.3)
    np.testing.assert_allclose(out.means, a * DATA_2D.means)
    np.testing.assert_allclose(out.covs, a * a * DATA_2D.covs + s2 * np.eye(2))
    resc = RD.early_stop_map(DATA_2D, 0.3, output="rescaled")
    np.testing.assert_allclose(resc.means, DATA_2D.means)
    np.testing.assert_allclose(resc.covs, DATA_2D.covs + np.expm1(0.6) * np.eye(2))
    # the OU semigroup: stopping at 0.1 twice is stopping at 0.2 once; delta = 0 is the identity
    twice = RD.early_stop_map(RD.early_stop_map(DATA_2D, 0.1), 0.1)
    np.testing.assert_allclose(twice.covs, RD.early_stop_map(DATA_2D, 0.2).covs, atol=1e-12)
    np.testing.assert_allclose(RD.early_stop_map(DATA_2D, 0.0).covs, DATA_2D.covs)


def test_score_is_the_gradient_of_the_log_density():
    x = np.array([[0.3, -0.2], [1.0, 1.0]])
    eps = 1e-6
    numeric = np.stack([(DATA_2D.logpdf(x + eps * e) - DATA_2D.logpdf(x - eps * e)) / (2 * eps)
                        for e in np.eye(2)], axis=1)
    np.testing.assert_allclose(DATA_2D.score(x), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("data", [DATA_1D, DATA_2D], ids=["1d", "2d"])
def test_exact_reverse_process_returns_the_early_stop_map(data):
    rng = np.random.default_rng(0)
    x = RD.reverse_sample(data, 20000, 0.1, rng, n_steps=20, method="exact")
    assert_moments_match(x, RD.early_stop_map(data, 0.1), 4)
    # power: the unsmoothed data is many SE away
    with pytest.raises(AssertionError):
        assert_moments_match(x, data, 4)


def test_reverse_sde_matches_the_closed_form_within_sampling_error():
    rng = np.random.default_rng(1)
    # first-order integrator: at 300 steps its bias is well below the sampling error of 20000 draws
    x = RD.reverse_sample(DATA_1D, 20000, 0.1, rng, n_steps=300, method="sde")[:, 0]
    target = RD.early_stop_map(DATA_1D, 0.1)
    assert stats.kstest(x, mixture_cdf(target)).pvalue > 1e-4
    assert_moments_match(x[:, None], target, 3)
    assert stats.kstest(x, mixture_cdf(DATA_1D)).pvalue < 1e-6  # the test can tell the difference
    resc = RD.reverse_sample(DATA_1D, 20000, 0.1, rng, n_steps=300, output="rescaled")[:, 0]
    assert stats.kstest(resc, mixture_cdf(RD.early_stop_map(DATA_1D, 0.1, output="rescaled"))).pvalue > 1e-4


def test_memorising_model_sampler_is_resample_and_noise():
    """The shortcut of run_empirical_diffusion_chain equals the reverse process on a Dirac mixture."""
    rng = np.random.default_rng(2)
    points = DATA_1D.sample(40, rng)
    dirac = RD.GaussianMixture(np.full(40, 1 / 40), points, np.zeros((40, 1, 1)))
    reverse = RD.reverse_sample(dirac, 6000, 0.2, rng, n_steps=10, method="exact")[:, 0]
    a, s2 = RD.vp_coefficients(0.2)
    shortcut = a * points[rng.integers(40, size=6000), 0] + np.sqrt(s2) * rng.standard_normal(6000)
    assert stats.ks_2samp(reverse, shortcut).pvalue > 1e-4


# ---------------------------------------------------------------------------------- limit and Hermite modes


def test_limit_is_the_unique_fixed_point_and_the_chain_reaches_it_geometrically():
    lam, delta = 0.3, 0.15
    limit = RD.limit_mixture(DATA_1D, delta, real_fraction=lam)
    pts, cell = RD.density_grid([DATA_1D, limit], n_points=800)
    step = RD.recursion_step(limit, DATA_1D, delta, real_fraction=lam)
    assert RD.l1_distance(step, limit, pts, cell) < 1e-9
    other = RD.isotropic_mixture([1.0], [4.0], [0.2])
    for start in (None, other):
        chain = RD.run_exact_diffusion_chain(DATA_1D, RD.delta_schedule(delta, 60), real_fraction=lam, initial=start)
        dist = np.array([RD.l1_distance(s, limit, pts, cell) for s in chain.states])
        assert dist[-1] < 1e-7
        # asymptotically the slowest Hermite mode (k = 1) sets the rate (1 - lam) e^{-delta}
        assert dist[41] / dist[40] == pytest.approx((1 - lam) * np.exp(-delta), rel=0.02)
    # no fresh data: the data is forgotten, the limit is N(0, I)
    assert RD.limit_mixture(DATA_2D, delta, real_fraction=0.0).covs[0] == pytest.approx(np.eye(2))


def test_hermite_attenuation_factors_and_limit_gain_are_exact():
    lam, delta, order = 0.25, 0.2, 6
    limit = RD.limit_mixture(DATA_1D, delta, real_fraction=lam)
    chain = RD.run_exact_diffusion_chain(DATA_1D, RD.delta_schedule(delta, 6), real_fraction=lam)
    dev = np.array([RD.hermite_moments(s, order) for s in chain.states]) - RD.hermite_moments(limit, order)
    want = RD.hermite_deviation_factors(order, delta, real_fraction=lam)
    np.testing.assert_allclose(dev[4, 1:] / dev[3, 1:], want[1:], rtol=1e-7)
    gain = RD.hermite_limit_gain(order, delta, real_fraction=lam)
    np.testing.assert_allclose(RD.hermite_moments(limit, order)[1:] / RD.hermite_moments(DATA_1D, order)[1:], gain[1:],
                               rtol=1e-8)
    assert np.all(np.diff(gain[1:]) < 0)  # a low-pass filter
    # in 2-D every multi-index of total order n is scaled alike: energy per order scales by gain_n^2
    lim2 = RD.limit_mixture(DATA_2D, delta, real_fraction=lam)
    energy = (RD.hermite_order_energy(RD.hermite_moments(lim2, 5))
              / RD.hermite_order_energy(RD.hermite_moments(DATA_2D, 5)))
    np.testing.assert_allclose(energy[1:], gain[1:6] ** 2, rtol=1e-7)


def test_hermite_moments_of_a_correlated_mixture_match_samples():
    x = DATA_2D.sample(200000, np.random.default_rng(3))
    assert_moments_match(x, DATA_2D, 3)


def test_memorising_chain_shows_the_predicted_factor_per_order():
    lam, delta, order = 0.2, 0.1, 4
    limit = RD.hermite_moments(RD.limit_mixture(DATA_1D, delta, real_fraction=lam), order)
    devs = []
    for seed in range(3):
        chain = RD.run_empirical_diffusion_chain(DATA_1D, RD.delta_schedule(delta, 30), n_samples=20000,
                                                 real_fraction=lam, seed=seed)
        devs.append(np.array([RD.sample_hermite_moments(s, order) for s in chain.states]) - limit)
    devs = np.array(devs)
    want = RD.hermite_deviation_factors(order, delta, real_fraction=lam)
    sampling_se = RD.hermite_sampling_se(RD.limit_mixture(DATA_1D, delta, real_fraction=lam), order, 20000)
    for k in range(1, order + 1):
        f, se = RD.ar1_factor(devs[:, :, k])
        assert abs(f - want[k]) < 4.5 * se + 0.01, (k, f, se, want[k])
        # the chains fluctuate around the closed-form limit: an AR(1) with factor f averaged over the second half
        # has standard error about sampling_se / ((1 - f) sqrt(R T))
        late = devs[:, 15:, k]
        assert abs(late.mean()) < 4.5 * sampling_se[k] / ((1 - want[k]) * np.sqrt(late.size)), (k, late.mean())


def test_annealed_truncation_stops_the_compounding():
    delta0, gens = 0.02, 40
    pts, cell = RD.density_grid([DATA_1D, RD.limit_mixture(DATA_1D, delta0, real_fraction=0.0)], n_points=800)
    # no fresh data: the summable schedule ends at P_D data with D = sum delta_n (OU semigroup)
    deltas = RD.delta_schedule(delta0, gens, kind="inverse_square")
    end = RD.run_exact_diffusion_chain(DATA_1D, deltas).states[-1]
    assert RD.l1_distance(end, RD.early_stop_map(DATA_1D, deltas.sum()), pts, cell) < 1e-10
    constant = RD.run_exact_diffusion_chain(DATA_1D, RD.delta_schedule(delta0, gens)).states[-1]
    assert RD.l1_distance(constant, DATA_1D, pts, cell) > 3 * RD.l1_distance(end, DATA_1D, pts, cell)
    # with fresh data, delta_n -> 0 takes the chain to the data itself, a constant delta does not
    lam, delta0 = 0.3, 0.3
    annealed = RD.run_exact_diffusion_chain(DATA_1D, RD.delta_schedule(delta0, gens, kind="inverse_square"),
                                            real_fraction=lam).states[-1]
    fixed = RD.limit_mixture(DATA_1D, delta0, real_fraction=lam)
    assert RD.l1_distance(annealed, DATA_1D, pts, cell) < 0.05 * RD.l1_distance(fixed, DATA_1D, pts, cell)


def test_fitted_chain_tracks_the_exact_chain():
    deltas = RD.delta_schedule(0.2, 6)
    exact = RD.run_exact_diffusion_chain(DATA_1D, deltas, real_fraction=0.2).states
    fitted = RD.run_fitted_diffusion_chain(DATA_1D, deltas, n_samples=4000, real_fraction=0.2, n_components=4,
                                           n_steps=60, seed=0).states
    pts, cell = RD.density_grid([DATA_1D], n_points=600)
    dist = [RD.l1_distance(f, e, pts, cell) for f, e in zip(fitted, exact)]
    far = RD.l1_distance(DATA_1D, exact[-1], pts, cell)
    assert max(dist) < 0.12 and far > 2 * max(dist), (dist, far)


def test_fit_gmm_recovers_a_mixture():
    x = DATA_2D.sample(20000, np.random.default_rng(4))
    fit = RD.fit_gmm(x, 2, rng=np.random.default_rng(0))
    order = np.argsort(fit.means[:, 0])
    np.testing.assert_allclose(fit.weights[order], DATA_2D.weights, atol=0.02)
    np.testing.assert_allclose(fit.means[order], DATA_2D.means, atol=0.05)
    np.testing.assert_allclose(fit.covs[order], DATA_2D.covs, atol=0.05)


# ------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="delta"):
        RD.early_stop_map(DATA_1D, -0.1)
    with pytest.raises(ValueError, match="delta"):
        RD.reverse_sample(DATA_1D, 10, -1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="delta0"):
        RD.delta_schedule(-0.5, 3)
    with pytest.raises(ValueError, match="sum to 1"):
        RD.GaussianMixture([0.5, 0.6], np.zeros((2, 1)), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="means must have shape"):
        RD.GaussianMixture([0.5, 0.5], np.zeros(2), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="covs must have shape"):
        RD.GaussianMixture([0.5, 0.5], np.zeros((2, 2)), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="positive semi-definite"):
        RD.GaussianMixture([1.0], np.zeros((1, 1)), -np.ones((1, 1, 1)))
    with pytest.raises(ValueError, match="points must have shape"):
        DATA_2D.pdf(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n_samples"):
        RD.run_fitted_diffusion_chain(DATA_1D, [0.1], n_samples=1)
    with pytest.raises(ValueError, match="real_fraction"):
        RD.recursion_step(DATA_1D, DATA_1D, 0.1, real_fraction=1.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        RD.delta_schedule(0.1, 3, kind="cosine")
    with pytest.raises(ValueError, match="unknown output"):
        RD.early_stop_map(DATA_1D, 0.1, output="denoised")
    with pytest.raises(ValueError, match="no limit|only for"):
        RD.limit_mixture(DATA_1D, 0.1, real_fraction=0.0, output="rescaled")
    with pytest.raises(ValueError, match="parameter 'means'"):
        RD.parse_points("means", "1, 2; 3", 2)


# ------------------------------------------------------------------------- the tables notebook 06 shows


FINE = np.linspace(-9.0, 9.0, 12001)


def l1_on_fine_grid(p, q):
    """int |p - q| by the trapezoid rule on a fixed grid of its own (not density_grid's); p, q mixtures or their
    densities on FINE."""
    p, q = (m.pdf(FINE[:, None]) if isinstance(m, RD.GaussianMixture) else m for m in (p, q))
    return float(np.trapezoid(np.abs(p - q), FINE))


def model_after(n, lam, delta, data=DATA_1D):
    """model_n of the exact chain from the data, unrolled: sum_{j<n} lam (1-lam)^j P_{j delta} data + (1-lam)^n
    P_{n delta} data, every P_t written out as means e^-t m and covariances e^-2t S + (1 - e^-2t) I."""
    parts = [(lam * (1 - lam) ** j, j * delta) for j in range(n)] + [((1 - lam) ** n, n * delta)]
    w = np.concatenate([wt * data.weights for wt, _ in parts])
    m = np.concatenate([np.exp(-t) * data.means for _, t in parts])
    c = np.concatenate([np.exp(-2 * t) * data.covs + (1 - np.exp(-2 * t)) for _, t in parts])
    keep = w > 0
    return RD.GaussianMixture(w[keep] / w[keep].sum(), m[keep], c[keep])


@pytest.fixture(scope="module")
def small_study():
    far = RD.isotropic_mixture([1.0], [-3.0], [0.2])
    return RD.convergence_study(DATA_1D, delta=0.2, real_fraction=0.3, n_generations=12, compare_fractions=(0.0, 0.6),
                                initial=far, n_samples=400, n_components=3, em_iterations=20, n_steps=20,
                                grid_points=800, seed=1)


def test_convergence_study_rows_against_an_unrolled_chain_on_another_grid(small_study):
    s, t = small_study, small_study.table
    assert t["real fraction lam"].tolist() == [0.0, 0.3, 0.6] and s.fractions == [0.0, 0.3, 0.6]
    np.testing.assert_allclose(t["predicted factor (1-lam) e^-delta"], (1 - t["real fraction lam"]) * np.exp(-0.2))
    limit = model_after(150, 0.3, 0.2).pdf(FINE[:, None])  # 0.7^150 ~ 1e-23: the unrolled sum is the limit
    for lam, row in zip(s.fractions, t.itertuples(index=False)):
        if lam > 0:  # lam = 0: the limit is N(0, 1)
            assert l1_on_fine_grid(s.limits[lam], model_after(150, lam, 0.2)) < 1e-8
        end = l1_on_fine_grid(model_after(12, lam, 0.2), s.limits[lam])
        assert row[4] == pytest.approx(end, rel=1e-3, abs=1e-9), (lam, row[4], end)
        assert row[3] == pytest.approx(l1_on_fine_grid(s.limits[lam], DATA_1D), rel=1e-3)
    assert t.columns[4] == "L1(model_12, limit)"
    # the L1 factor is tail_factor of the distances, which decay geometrically: ratio of the last two, roughly
    d = np.array([l1_on_fine_grid(model_after(n, 0.3, 0.2), limit) for n in range(13)])
    assert t.iloc[1, 2] == pytest.approx(d[-1] / d[-2], rel=0.05)
    # the far start forgets where it began; the fitted chain ends near the limit, far below where it started
    assert s.distance_from_initial[0] > 1.5 and s.distance_from_initial[-1] < 0.05 * s.distance_from_initial[0]
    assert s.distance_fitted[-1] < 0.5 * s.distance_fitted[0]


def test_convergence_study_sampler_outputs_are_the_early_stopped_fitted_model(small_study):
    outs = small_study.sampler_outputs([0, 12], n=4000, seed=2)
    assert set(outs) == {0, 12} and outs[0].shape == (4000, 1)
    # generation 0 is the data, so its sampler returns the data shrunk by e^-delta and smoothed
    assert_moments_match(outs[0], RD.early_stop_map(DATA_1D, 0.2), 2)


def test_hermite_study_rows_against_numpy_hermite_polynomials(small_study):
    lam, delta, order, chains, n = 0.3, 0.2, 4, 2, 3000
    h = RD.hermite_study(small_study, max_order=order, memorising_chains=chains, memorising_samples=n, seed=3)
    t = h.table
    assert t["order k"].tolist() == [1, 2, 3, 4]
    k = np.arange(1, order + 1)
    np.testing.assert_allclose(t["predicted factor (1-lam) e^-k delta"], (1 - lam) * np.exp(-k * delta), rtol=1e-12)
    # the exact chain's deviation decays exactly at the predicted factor; the limit's gain is the filter's
    np.testing.assert_allclose(t["exact chain"], t["predicted factor (1-lam) e^-k delta"], rtol=1e-6)
    np.testing.assert_allclose(t["closed-form limit gain"], lam / (1 - (1 - lam) * np.exp(-k * delta)), rtol=1e-8)
    # the memorising columns by hand: numpy's He_k, deviations from the limit's moments, least squares through 0
    c_lim = RD.hermite_moments(small_study.limit, order)
    c_data = RD.hermite_moments(DATA_1D, order)
    moments = np.array([[np.polynomial.hermite_e.hermevander(x[:, 0], order).mean(0) for x in
                         RD.run_empirical_diffusion_chain(DATA_1D, RD.delta_schedule(delta, 12), n_samples=n,
                                                          real_fraction=lam, seed=3 + r).states]
                        for r in range(chains)])  # (R, G + 1, order + 1)
    dev = moments - c_lim
    for i, kk in enumerate(k):
        x, y = dev[:, :-1, kk].ravel(), dev[:, 1:, kk].ravel()
        assert t["memorising chains"].iloc[i] == pytest.approx(np.linalg.lstsq(x[:, None], y)[0][0], rel=1e-8)
        assert t["memorising gain (2nd half)"].iloc[i] == pytest.approx(moments[:, 6:, kk].mean() / c_data[kk],
                                                                         rel=1e-8)
    np.testing.assert_allclose(h.deviation_memorising, dev, rtol=1e-8, atol=1e-10)
    assert h.max_order == order and h.noise_floor.shape == (order + 1,)


def test_annealing_study_against_the_ou_semigroup_and_the_limit():
    delta0, gens = 0.1, 60
    a = RD.annealing_study(DATA_1D, delta0=delta0, n_generations=gens, fractions=(0.3, 0.0), grid_points=800)
    assert a.fractions == [0.0, 0.3] and set(a.final) == {f"lam={f}, {k}" for f in (0.0, 0.3) for k in RD.SCHEDULES}
    # lam = 0: the chain is the OU process run for sum delta_n, so its end is P_D data with D that sum
    for kind in RD.SCHEDULES:
        D = RD.delta_schedule(delta0, gens, kind=kind).sum()
        want = l1_on_fine_grid(RD.early_stop_map(DATA_1D, D), DATA_1D)
        assert a.final[f"lam=0.0, {kind}"] == pytest.approx(want, rel=2e-3), kind
    # the summable schedule's limit D = delta0 pi^2 / 6, which 60 generations nearly reach
    assert a.summable_limit == pytest.approx(a.final["lam=0.0, inverse_square"], rel=0.02)
    # lam > 0, constant delta: the chain reaches the closed-form limit (0.7^60 ~ 5e-10 left)
    assert a.constant_limit[0.3] == pytest.approx(a.final["lam=0.3, constant"], rel=1e-6)
    assert set(a.constant_limit) == {0.3}


def test_mixture_from_params_reads_the_notebook_parameters():
    params = {"data_1d_weights": "0.5, 0.3, 0.2", "data_1d_means": "-1.0, 1.5, 3.0", "data_1d_stds": "0.3, 0.4, 0.3",
              "d2_weights": "0.6, 0.4", "d2_means": "-1, 0.5; 1.2, -0.3", "d2_stds": "0.5, 0.2"}
    m = RD.mixture_from_params(params)
    for got, want in zip((m.weights, m.means, m.covs), (DATA_1D.weights, DATA_1D.means, DATA_1D.covs)):
        np.testing.assert_array_equal(got, want)
    m2 = RD.mixture_from_params(params, prefix="d2", dim=2)
    np.testing.assert_array_equal(m2.means, [[-1.0, 0.5], [1.2, -0.3]])
    np.testing.assert_allclose(m2.covs[1], 0.2**2 * np.eye(2), rtol=1e-15)


def test_notebook_tables_reject_bad_inputs_by_name(small_study):
    with pytest.raises(ValueError, match="real_fraction"):
        RD.convergence_study(DATA_1D, real_fraction=1.5, n_generations=2)
    with pytest.raises(ValueError, match="compare_fractions"):
        RD.convergence_study(DATA_1D, compare_fractions=(2.0,), n_generations=2)
    with pytest.raises(ValueError, match="grid_points"):
        RD.convergence_study(DATA_1D, n_generations=1, n_samples=20, n_steps=2, em_iterations=1, grid_points=1)
    with pytest.raises(ValueError, match="max_order"):
        RD.hermite_study(small_study, max_order=0)
    with pytest.raises(ValueError, match="memorising_chains"):
        RD.hermite_study(small_study, memorising_chains=0)
    with pytest.raises(ValueError, match="give both points and cell"):
        RD.annealing_study(DATA_1D, points=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="fractions"):
        RD.annealing_study(DATA_1D, fractions=(-0.1,), n_generations=2)
    with pytest.raises(ValueError, match="data_1d_stds"):
        RD.mixture_from_params({"data_1d_weights": "1", "data_1d_means": "0"})
    with pytest.raises(ValueError, match="'data_1d_means'"):
        RD.mixture_from_params({"data_1d_weights": "1", "data_1d_means": "zero", "data_1d_stds": "1"})
