"""Tests for resonance_utils.family: every simulation against its closed form, with stated tolerances.

Tolerances are in standard errors (SE) computed from the closed form or from the replicates; 4.5 SE leaves a
false-alarm rate below 1e-5 per comparison, while each closed form differs from the wrong alternative (ML vs
unbiased variance, no shrinkage, wrong rate) by many SE at these sample sizes.
"""
import numpy as np
import pytest
from scipy import stats

from resonance_utils import family as F
from resonance_utils import geometry

DATA_1D = F.isotropic_mixture([0.5, 0.3, 0.2], [-1.0, 1.5, 3.0], [0.3, 0.4, 0.3])
DATA_2D = F.GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.2, -0.3]],
                            [[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]]])


def mixture_cdf(model):
    comps = [(w, m[0], np.sqrt(c[0, 0])) for w, m, c in zip(model.weights, model.means, model.covs)]
    return lambda z: sum(w * stats.norm.cdf(z, m, s) for w, m, s in comps)


def assert_moments_match(x, model, max_order, n_se=4.5):
    """Sample Hermite moments of x agree with the model's closed form within n_se standard errors."""
    got = F.sample_hermite_moments(x, max_order)
    want = F.hermite_moments(model, max_order)
    se = F.hermite_sampling_se(model, max_order, len(x))
    mask = se > 0
    z = np.abs(got - want)[mask] / se[mask]
    assert z.max() < n_se, f"Hermite moments off by {z.max():.1f} SE: {got} vs {want}"


# ------------------------------------------------------------------------------------------ the VP map


def test_early_stop_map_shrinks_and_smooths_and_composes():
    a, s2 = F.vp_coefficients(0.3)
    assert a == pytest.approx(np.exp(-0.3)) and s2 == pytest.approx(1 - np.exp(-0.6))
    out = F.early_stop_map(DATA_2D, 0.3)
    np.testing.assert_allclose(out.means, a * DATA_2D.means)
    np.testing.assert_allclose(out.covs, a * a * DATA_2D.covs + s2 * np.eye(2))
    resc = F.early_stop_map(DATA_2D, 0.3, output="rescaled")
    np.testing.assert_allclose(resc.means, DATA_2D.means)
    np.testing.assert_allclose(resc.covs, DATA_2D.covs + np.expm1(0.6) * np.eye(2))
    # the OU semigroup: stopping at 0.1 twice is stopping at 0.2 once; delta = 0 is the identity
    twice = F.early_stop_map(F.early_stop_map(DATA_2D, 0.1), 0.1)
    np.testing.assert_allclose(twice.covs, F.early_stop_map(DATA_2D, 0.2).covs, atol=1e-12)
    np.testing.assert_allclose(F.early_stop_map(DATA_2D, 0.0).covs, DATA_2D.covs)


def test_score_is_the_gradient_of_the_log_density():
    x = np.array([[0.3, -0.2], [1.0, 1.0]])
    eps = 1e-6
    numeric = np.stack([(DATA_2D.logpdf(x + eps * e) - DATA_2D.logpdf(x - eps * e)) / (2 * eps)
                        for e in np.eye(2)], axis=1)
    np.testing.assert_allclose(DATA_2D.score(x), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("data", [DATA_1D, DATA_2D], ids=["1d", "2d"])
def test_exact_reverse_process_returns_the_early_stop_map(data):
    rng = np.random.default_rng(0)
    x = F.reverse_sample(data, 20000, 0.1, rng, n_steps=20, method="exact")
    assert_moments_match(x, F.early_stop_map(data, 0.1), 4)
    # power: the unsmoothed data is many SE away
    with pytest.raises(AssertionError):
        assert_moments_match(x, data, 4)


def test_reverse_sde_matches_the_closed_form_within_sampling_error():
    rng = np.random.default_rng(1)
    # first-order integrator: at 300 steps its bias is well below the sampling error of 20000 draws
    x = F.reverse_sample(DATA_1D, 20000, 0.1, rng, n_steps=300, method="sde")[:, 0]
    target = F.early_stop_map(DATA_1D, 0.1)
    assert stats.kstest(x, mixture_cdf(target)).pvalue > 1e-4
    assert_moments_match(x[:, None], target, 3)
    assert stats.kstest(x, mixture_cdf(DATA_1D)).pvalue < 1e-6  # the test can tell the difference
    resc = F.reverse_sample(DATA_1D, 20000, 0.1, rng, n_steps=300, output="rescaled")[:, 0]
    assert stats.kstest(resc, mixture_cdf(F.early_stop_map(DATA_1D, 0.1, output="rescaled"))).pvalue > 1e-4


def test_memorising_model_sampler_is_resample_and_noise():
    """The shortcut of run_empirical_diffusion_chain equals the reverse process on a Dirac mixture."""
    rng = np.random.default_rng(2)
    points = DATA_1D.sample(40, rng)
    dirac = F.GaussianMixture(np.full(40, 1 / 40), points, np.zeros((40, 1, 1)))
    reverse = F.reverse_sample(dirac, 6000, 0.2, rng, n_steps=10, method="exact")[:, 0]
    a, s2 = F.vp_coefficients(0.2)
    shortcut = a * points[rng.integers(40, size=6000), 0] + np.sqrt(s2) * rng.standard_normal(6000)
    assert stats.ks_2samp(reverse, shortcut).pvalue > 1e-4


# ---------------------------------------------------------------------------------- limit and Hermite modes


def test_limit_is_the_unique_fixed_point_and_the_chain_reaches_it_geometrically():
    lam, delta = 0.3, 0.15
    limit = F.limit_mixture(DATA_1D, delta, real_fraction=lam)
    pts, cell = F.density_grid([DATA_1D, limit], n_points=800)
    step = F.recursion_step(limit, DATA_1D, delta, real_fraction=lam)
    assert F.l1_distance(step, limit, pts, cell) < 1e-9
    other = F.isotropic_mixture([1.0], [4.0], [0.2])
    for start in (None, other):
        chain = F.run_exact_diffusion_chain(DATA_1D, F.delta_schedule(delta, 60), real_fraction=lam, initial=start)
        dist = np.array([F.l1_distance(s, limit, pts, cell) for s in chain.states])
        assert dist[-1] < 1e-7
        # asymptotically the slowest Hermite mode (k = 1) sets the rate (1 - lam) e^{-delta}
        assert dist[41] / dist[40] == pytest.approx((1 - lam) * np.exp(-delta), rel=0.02)
    # no fresh data: the data is forgotten, the limit is N(0, I)
    assert F.limit_mixture(DATA_2D, delta, real_fraction=0.0).covs[0] == pytest.approx(np.eye(2))


def test_hermite_attenuation_factors_and_limit_gain_are_exact():
    lam, delta, order = 0.25, 0.2, 6
    limit = F.limit_mixture(DATA_1D, delta, real_fraction=lam)
    chain = F.run_exact_diffusion_chain(DATA_1D, F.delta_schedule(delta, 6), real_fraction=lam)
    dev = np.array([F.hermite_moments(s, order) for s in chain.states]) - F.hermite_moments(limit, order)
    want = F.hermite_deviation_factors(order, delta, real_fraction=lam)
    np.testing.assert_allclose(dev[4, 1:] / dev[3, 1:], want[1:], rtol=1e-7)
    gain = F.hermite_limit_gain(order, delta, real_fraction=lam)
    np.testing.assert_allclose(F.hermite_moments(limit, order)[1:] / F.hermite_moments(DATA_1D, order)[1:], gain[1:],
                               rtol=1e-8)
    assert np.all(np.diff(gain[1:]) < 0)  # a low-pass filter
    # in 2-D every multi-index of total order n is scaled alike: energy per order scales by gain_n^2
    lim2 = F.limit_mixture(DATA_2D, delta, real_fraction=lam)
    energy = F.hermite_order_energy(F.hermite_moments(lim2, 5)) / F.hermite_order_energy(F.hermite_moments(DATA_2D, 5))
    np.testing.assert_allclose(energy[1:], gain[1:6] ** 2, rtol=1e-7)


def test_hermite_moments_of_a_correlated_mixture_match_samples():
    x = DATA_2D.sample(200000, np.random.default_rng(3))
    assert_moments_match(x, DATA_2D, 3)


def test_memorising_chain_shows_the_predicted_factor_per_order():
    lam, delta, order = 0.2, 0.1, 4
    limit = F.hermite_moments(F.limit_mixture(DATA_1D, delta, real_fraction=lam), order)
    devs = []
    for seed in range(3):
        chain = F.run_empirical_diffusion_chain(DATA_1D, F.delta_schedule(delta, 30), n_samples=20000,
                                                real_fraction=lam, seed=seed)
        devs.append(np.array([F.sample_hermite_moments(s, order) for s in chain.states]) - limit)
    devs = np.array(devs)
    want = F.hermite_deviation_factors(order, delta, real_fraction=lam)
    sampling_se = F.hermite_sampling_se(F.limit_mixture(DATA_1D, delta, real_fraction=lam), order, 20000)
    for k in range(1, order + 1):
        f, se = F.ar1_factor(devs[:, :, k])
        assert abs(f - want[k]) < 4.5 * se + 0.01, (k, f, se, want[k])
        # the chains fluctuate around the closed-form limit: an AR(1) with factor f averaged over the second half
        # has standard error about sampling_se / ((1 - f) sqrt(R T))
        late = devs[:, 15:, k]
        assert abs(late.mean()) < 4.5 * sampling_se[k] / ((1 - want[k]) * np.sqrt(late.size)), (k, late.mean())


def test_annealed_truncation_stops_the_compounding():
    delta0, gens = 0.02, 40
    pts, cell = F.density_grid([DATA_1D, F.limit_mixture(DATA_1D, delta0, real_fraction=0.0)], n_points=800)
    # no fresh data: the summable schedule ends at P_D data with D = sum delta_n (OU semigroup)
    deltas = F.delta_schedule(delta0, gens, kind="inverse_square")
    end = F.run_exact_diffusion_chain(DATA_1D, deltas).states[-1]
    assert F.l1_distance(end, F.early_stop_map(DATA_1D, deltas.sum()), pts, cell) < 1e-10
    constant = F.run_exact_diffusion_chain(DATA_1D, F.delta_schedule(delta0, gens)).states[-1]
    assert F.l1_distance(constant, DATA_1D, pts, cell) > 3 * F.l1_distance(end, DATA_1D, pts, cell)
    # with fresh data, delta_n -> 0 takes the chain to the data itself, a constant delta does not
    lam, delta0 = 0.3, 0.3
    annealed = F.run_exact_diffusion_chain(DATA_1D, F.delta_schedule(delta0, gens, kind="inverse_square"),
                                           real_fraction=lam).states[-1]
    fixed = F.limit_mixture(DATA_1D, delta0, real_fraction=lam)
    assert F.l1_distance(annealed, DATA_1D, pts, cell) < 0.05 * F.l1_distance(fixed, DATA_1D, pts, cell)


def test_fitted_chain_tracks_the_exact_chain():
    deltas = F.delta_schedule(0.2, 6)
    exact = F.run_exact_diffusion_chain(DATA_1D, deltas, real_fraction=0.2).states
    fitted = F.run_fitted_diffusion_chain(DATA_1D, deltas, n_samples=4000, real_fraction=0.2, n_components=4,
                                          n_steps=60, seed=0).states
    pts, cell = F.density_grid([DATA_1D], n_points=600)
    dist = [F.l1_distance(f, e, pts, cell) for f, e in zip(fitted, exact)]
    far = F.l1_distance(DATA_1D, exact[-1], pts, cell)
    assert max(dist) < 0.12 and far > 2 * max(dist), (dist, far)


def test_fit_gmm_recovers_a_mixture():
    x = DATA_2D.sample(20000, np.random.default_rng(4))
    fit = F.fit_gmm(x, 2, rng=np.random.default_rng(0))
    order = np.argsort(fit.means[:, 0])
    np.testing.assert_allclose(fit.weights[order], DATA_2D.weights, atol=0.02)
    np.testing.assert_allclose(fit.means[order], DATA_2D.means, atol=0.05)
    np.testing.assert_allclose(fit.covs[order], DATA_2D.covs, atol=0.05)


# ------------------------------------------------------------------------------------- Gaussian refitting


def test_gaussian_refit_variance_decays_like_the_closed_form():
    n, gens, reps = 20, 20, 20000
    res = F.run_gaussian_refit(n, gens, n_replicates=reps, seed=0)
    var = np.array([s["covs"][:, 0, 0] for s in res.states])  # (G + 1, R)
    g = np.arange(gens + 1)
    want, sd = F.predicted_refit_trace(n, g), F.predicted_refit_variance_sd(n, g)
    z = np.abs(var.mean(1) - want)[1:] / (sd[1:] / np.sqrt(reps))
    assert z.max() < 4.5, z
    np.testing.assert_allclose(var.std(1)[1:11], sd[1:11], rtol=0.1)
    drift = (np.log(var[-1]) - np.log(var[0])) / gens
    assert abs(drift.mean() - F.predicted_refit_log_drift(n)) < 4.5 * drift.std() / np.sqrt(reps)
    np.testing.assert_allclose(np.log(var[1:]).std(1), F.predicted_refit_log_sd(n, g[1:]), rtol=0.03)
    # the unbiased estimator (divide by N - 1) would keep the mean at 1: far outside these bands
    assert abs(1 - want[-1]) > 20 * sd[-1] / np.sqrt(reps)


def test_gaussian_refit_trace_and_mean_in_several_dimensions():
    n, gens, reps, dim = 12, 15, 4000, 3
    res = F.run_gaussian_refit(n, gens, dim=dim, n_replicates=reps, seed=1)
    tr = np.array([np.trace(s["covs"], axis1=1, axis2=2) for s in res.states])
    ratio = tr[1:] / tr[:-1]  # E[ratio | past] = (N - 1) / N exactly
    assert abs(ratio.mean() - F.refit_factor(n)) < 4.5 * ratio.std() / np.sqrt(ratio.size)
    shift = np.array([(s["means"] ** 2).sum(1) for s in res.states])
    want = F.predicted_refit_mean_shift(n, gens, trace0=dim)
    assert abs(shift[-1].mean() - want) < 4.5 * shift[-1].std() / np.sqrt(reps)
    logdet = np.linalg.slogdet(res.states[-1]["covs"])[1] / gens
    assert abs(logdet.mean() - F.predicted_refit_log_drift(n, dim=dim)) < 4.5 * logdet.std() / np.sqrt(reps)


def test_refit_contracts_directionally_at_the_lyapunov_rates():
    n, dim, gens, reps = 10, 3, 40, 400
    res = F.run_gaussian_refit(n, gens, dim=dim, n_replicates=reps, seed=3)
    logeig = np.log(np.linalg.eigvalsh(np.stack([res.states[g]["covs"] for g in (20, 40)]))[..., ::-1])
    slope = (logeig[1] - logeig[0]) / 20  # (R, d), after the first 20 generations' transient
    want = F.predicted_refit_lyapunov(n, dim=dim)
    assert np.all(np.abs(slope.mean(0) - want) < 4.5 * slope.std(0) / np.sqrt(reps) + 0.01), (slope.mean(0), want)
    assert want.sum() == pytest.approx(F.predicted_refit_log_drift(n, dim=dim))


def test_refit_clouds_classify_as_contraction():
    res = F.run_gaussian_refit(10, 60, dim=4, n_replicates=1, seed=2)
    clouds = F.refit_clouds(res, generations=range(0, 61, 15), n_points=400)
    patterns = geometry.classify_trajectory(clouds, window=3)
    assert all(p.global_axis == "contraction" for p in patterns), [p.pattern for p in patterns]


# ------------------------------------------------------------------------------- co-evolving text and image


ORIGINAL = F.coevolution_initial(3, 2, zipf=1.0, separation=4.0, seed=0)


def test_frozen_text_images_contract_at_the_predicted_rate():
    n, gens = 60, 12
    res = F.run_coevolution(ORIGINAL, gens, case="frozen_text", n_samples=n, n_replicates=150, seed=0)
    tr = res["traces"]
    ok = tr[:, :-1] > 0
    rho = F.image_contraction_factor(ORIGINAL["probs"], n)
    for k in range(3):
        ratio = (tr[:, 1:, k] / np.where(ok[..., k], tr[:, :-1, k], 1))[ok[..., k]]
        assert abs(ratio.mean() - rho[k]) < 4.5 * ratio.std() / np.sqrt(ratio.size), (k, ratio.mean(), rho[k])
    assert rho[0] > rho[1] > rho[2]  # rarer captions contract faster
    # fidelity stays bounded: E[tr S_n + |mean_n - mean_0|^2] = tr S_0 (a martingale)
    total = tr[:, -1] + res["shift2"][:, -1]
    assert np.all(np.abs(total.mean(0) - 2.0) < 4.5 * total.std(0) / np.sqrt(len(total)))
    traces, shifts = F.predicted_image_moments(ORIGINAL["probs"], n, gens, trace0=2.0)
    np.testing.assert_allclose(traces, 2.0 * rho ** np.arange(gens + 1)[:, None], rtol=1e-10)
    np.testing.assert_allclose(shifts, 2.0 - traces, rtol=1e-10, atol=1e-12)


def test_frozen_image_captions_drift_like_wright_fisher():
    n, gens = 50, 15
    res = F.run_coevolution(ORIGINAL, gens, case="frozen_image", n_samples=n, captioner="sampled",
                            n_replicates=300, seed=1)
    h = F.heterozygosity(res["probs"])
    ok = h[:, :-1] > 0
    ratio = (h[:, 1:] / np.where(ok, h[:, :-1], 1))[ok]
    assert abs(ratio.mean() - (1 - 1 / n)) < 4.5 * ratio.std() / np.sqrt(ratio.size)
    want = F.predicted_heterozygosity(ORIGINAL["probs"], n, gens)
    np.testing.assert_allclose(want, want[0] * (1 - 1 / n) ** np.arange(gens + 1), rtol=1e-12)
    assert np.all(np.diff(F.entropy_bits(res["probs"]).mean(0)) < 0.02)


def test_fresh_data_predictions_hold_and_stabilise():
    n, gens, lam = 60, 12, 0.3
    res = F.run_coevolution(ORIGINAL, gens, case="frozen_text", n_samples=n, fresh_fraction=lam,
                            n_replicates=200, seed=2)
    traces, shifts = F.predicted_image_moments(ORIGINAL["probs"], n, gens, trace0=2.0, fresh_fraction=lam)
    for key, want in (("traces", traces), ("shift2", shifts)):
        sim = res[key][:, -1]
        assert np.all(np.abs(sim.mean(0) - want[-1]) < 4.5 * sim.std(0) / np.sqrt(len(sim))), key
    assert np.all(traces[-1] > 0.6 * 2.0)  # stationary well above the no-fresh-data collapse
    # text side: small N and half fresh data, so that the sampling of the fresh captions matters; each chain's
    # average over generations 4-10 (independent across chains) against the prediction's
    text = F.run_coevolution(ORIGINAL, 10, case="frozen_image", n_samples=20, captioner="sampled",
                             fresh_fraction=0.5, n_replicates=1500, seed=3)
    h = F.heterozygosity(text["probs"])[:, 4:].mean(1)
    want_h = F.predicted_heterozygosity(ORIGINAL["probs"], 20, 10, fresh_fraction=0.5)[4:].mean()
    assert abs(h.mean() - want_h) < 4.5 * h.std() / np.sqrt(len(h)), (h.mean(), want_h)


def test_map_captioner_uses_likelihood_and_prior():
    state = {"probs": np.array([0.9, 0.1]), "means": np.array([[-1.0], [1.0]]), "covs": np.ones((2, 1, 1))}
    np.testing.assert_array_equal(F.caption_map(np.array([[-3.0], [3.0], [0.0], [0.5]]), state), [0, 1, 0, 0])
    # equal priors: the midpoint's right side goes to caption 1
    np.testing.assert_array_equal(F.caption_map(np.array([[0.5]]), {**state, "probs": np.array([0.5, 0.5])}), [1])


def test_map_captioner_on_overlapping_images_adds_selection():
    """Frozen, overlapping image model: the MAP captioner favours frequent captions, so text diversity falls faster
    than Wright-Fisher's (1 - 1/N); with sampled captions it is Wright-Fisher."""
    overlapping = F.coevolution_initial(3, 2, zipf=1.0, separation=0.7, seed=0)
    n = 200
    kw = dict(case="frozen_image", n_samples=n, n_replicates=60, seed=6)
    for captioner in ("map", "sampled"):
        h = F.heterozygosity(F.run_coevolution(overlapping, 10, captioner=captioner, **kw)["probs"])
        f, se = F.one_step_factor(h)
        if captioner == "map":
            assert f < (1 - 1 / n) - 8 * se, (f, se)
        else:
            assert abs(f - (1 - 1 / n)) < 4.5 * se


def test_coupled_chain_shows_a_matthew_effect():
    original = F.coevolution_initial(8, 3, zipf=1.2, separation=3.0, seed=1)
    res = F.run_coevolution(original, 30, case="coupled", n_samples=300, n_replicates=20, seed=4)
    live = res["traces"][:, -1] * (res["probs"][:, -1] > 0) / res["traces"][:, 0]
    frequent, rare = np.median(live[:, :3]), np.median(live[:, -3:])
    assert frequent > 2 * rare, (frequent, rare)


# ------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="delta"):
        F.early_stop_map(DATA_1D, -0.1)
    with pytest.raises(ValueError, match="delta"):
        F.reverse_sample(DATA_1D, 10, -1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="delta0"):
        F.delta_schedule(-0.5, 3)
    with pytest.raises(ValueError, match="sum to 1"):
        F.GaussianMixture([0.5, 0.6], np.zeros((2, 1)), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="means must have shape"):
        F.GaussianMixture([0.5, 0.5], np.zeros(2), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="covs must have shape"):
        F.GaussianMixture([0.5, 0.5], np.zeros((2, 2)), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="positive semi-definite"):
        F.GaussianMixture([1.0], np.zeros((1, 1)), -np.ones((1, 1, 1)))
    with pytest.raises(ValueError, match="points must have shape"):
        DATA_2D.pdf(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n_samples"):
        F.run_gaussian_refit(1, 3)
    with pytest.raises(ValueError, match="n_samples"):
        F.run_fitted_diffusion_chain(DATA_1D, [0.1], n_samples=1)
    with pytest.raises(ValueError, match="n_samples"):
        F.run_coevolution(ORIGINAL, 2, case="coupled", n_samples=1)
    with pytest.raises(ValueError, match="real_fraction"):
        F.recursion_step(DATA_1D, DATA_1D, 0.1, real_fraction=1.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        F.delta_schedule(0.1, 3, kind="cosine")
    with pytest.raises(ValueError, match="unknown output"):
        F.early_stop_map(DATA_1D, 0.1, output="denoised")
    with pytest.raises(ValueError, match="unknown case"):
        F.run_coevolution(ORIGINAL, 2, case="frozen", n_samples=10)
    with pytest.raises(ValueError, match="unknown captioner"):
        F.run_coevolution(ORIGINAL, 2, case="coupled", n_samples=10, captioner="clip")
    with pytest.raises(ValueError, match="sum to 1"):
        F.run_coevolution({**ORIGINAL, "probs": np.array([0.5, 0.2, 0.2])}, 2, case="coupled", n_samples=10)
    with pytest.raises(ValueError, match="cov0 must have shape"):
        F.run_gaussian_refit(5, 2, dim=2, cov0=np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        F.predicted_refit_log_drift(3, dim=3)
    with pytest.raises(ValueError, match="no limit|only for"):
        F.limit_mixture(DATA_1D, 0.1, real_fraction=0.0, output="rescaled")
    with pytest.raises(ValueError, match="parameter 'means'"):
        F.parse_points("means", "1, 2; 3", 2)
