"""Tests for resonance_utils.coevolution: every simulation against its closed form, with stated tolerances.

Tolerances are in standard errors (SE) computed from the closed form or from the replicates; 4.5 SE leaves a
false-alarm rate below 1e-5 per comparison, while each closed form differs from the wrong alternative (ML vs
unbiased variance, no shrinkage, wrong rate) by many SE at these sample sizes.
"""
import numpy as np
import pytest
from scipy import stats

from resonance_utils import coevolution as CO


# ------------------------------------------------------------------------------- co-evolving text and image


ORIGINAL = CO.coevolution_initial(3, 2, zipf=1.0, separation=4.0, seed=0)


def test_frozen_text_images_contract_at_the_predicted_rate():
    n, gens = 60, 12
    res = CO.run_coevolution(ORIGINAL, gens, case="frozen_text", n_samples=n, n_replicates=150, seed=0)
    tr = res["traces"]
    ok = tr[:, :-1] > 0
    rho = CO.image_contraction_factor(ORIGINAL["probs"], n)
    for k in range(3):
        ratio = (tr[:, 1:, k] / np.where(ok[..., k], tr[:, :-1, k], 1))[ok[..., k]]
        assert abs(ratio.mean() - rho[k]) < 4.5 * ratio.std() / np.sqrt(ratio.size), (k, ratio.mean(), rho[k])
    assert rho[0] > rho[1] > rho[2]  # rarer captions contract faster
    # fidelity stays bounded: E[tr S_n + |mean_n - mean_0|^2] = tr S_0 (a martingale)
    total = tr[:, -1] + res["shift2"][:, -1]
    assert np.all(np.abs(total.mean(0) - 2.0) < 4.5 * total.std(0) / np.sqrt(len(total)))
    traces, shifts = CO.predicted_image_moments(ORIGINAL["probs"], n, gens, trace0=2.0)
    np.testing.assert_allclose(traces, 2.0 * rho ** np.arange(gens + 1)[:, None], rtol=1e-10)
    np.testing.assert_allclose(shifts, 2.0 - traces, rtol=1e-10, atol=1e-12)


def test_frozen_image_captions_drift_like_wright_fisher():
    n, gens = 50, 15
    res = CO.run_coevolution(ORIGINAL, gens, case="frozen_image", n_samples=n, captioner="sampled",
                             n_replicates=300, seed=1)
    h = CO.heterozygosity(res["probs"])
    ok = h[:, :-1] > 0
    ratio = (h[:, 1:] / np.where(ok, h[:, :-1], 1))[ok]
    assert abs(ratio.mean() - (1 - 1 / n)) < 4.5 * ratio.std() / np.sqrt(ratio.size)
    want = CO.predicted_heterozygosity(ORIGINAL["probs"], n, gens)
    np.testing.assert_allclose(want, want[0] * (1 - 1 / n) ** np.arange(gens + 1), rtol=1e-12)
    assert np.all(np.diff(CO.entropy_bits(res["probs"]).mean(0)) < 0.02)


def test_fresh_data_predictions_hold_and_stabilise():
    n, gens, lam = 60, 12, 0.3
    res = CO.run_coevolution(ORIGINAL, gens, case="frozen_text", n_samples=n, fresh_fraction=lam,
                             n_replicates=200, seed=2)
    traces, shifts = CO.predicted_image_moments(ORIGINAL["probs"], n, gens, trace0=2.0, fresh_fraction=lam)
    for key, want in (("traces", traces), ("shift2", shifts)):
        sim = res[key][:, -1]
        assert np.all(np.abs(sim.mean(0) - want[-1]) < 4.5 * sim.std(0) / np.sqrt(len(sim))), key
    assert np.all(traces[-1] > 0.6 * 2.0)  # stationary well above the no-fresh-data collapse
    # text side: small N and half fresh data, so that the sampling of the fresh captions matters; each chain's
    # average over generations 4-10 (independent across chains) against the prediction's
    text = CO.run_coevolution(ORIGINAL, 10, case="frozen_image", n_samples=20, captioner="sampled",
                              fresh_fraction=0.5, n_replicates=1500, seed=3)
    h = CO.heterozygosity(text["probs"])[:, 4:].mean(1)
    want_h = CO.predicted_heterozygosity(ORIGINAL["probs"], 20, 10, fresh_fraction=0.5)[4:].mean()
    assert abs(h.mean() - want_h) < 4.5 * h.std() / np.sqrt(len(h)), (h.mean(), want_h)


def test_map_captioner_uses_likelihood_and_prior():
    state = {"probs": np.array([0.9, 0.1]), "means": np.array([[-1.0], [1.0]]), "covs": np.ones((2, 1, 1))}
    np.testing.assert_array_equal(CO.caption_map(np.array([[-3.0], [3.0], [0.0], [0.5]]), state), [0, 1, 0, 0])
    # equal priors: the midpoint's right side goes to caption 1
    np.testing.assert_array_equal(CO.caption_map(np.array([[0.5]]), {**state, "probs": np.array([0.5, 0.5])}), [1])


def test_map_captioner_on_overlapping_images_adds_selection():
    """Frozen, overlapping image model: the MAP captioner favours frequent captions, so text diversity falls faster
    than Wright-Fisher's (1 - 1/N); with sampled captions it is Wright-Fisher."""
    overlapping = CO.coevolution_initial(3, 2, zipf=1.0, separation=0.7, seed=0)
    n = 200
    kw = dict(case="frozen_image", n_samples=n, n_replicates=60, seed=6)
    for captioner in ("map", "sampled"):
        h = CO.heterozygosity(CO.run_coevolution(overlapping, 10, captioner=captioner, **kw)["probs"])
        f, se = CO.one_step_factor(h)
        if captioner == "map":
            assert f < (1 - 1 / n) - 8 * se, (f, se)
        else:
            assert abs(f - (1 - 1 / n)) < 4.5 * se


def test_coupled_chain_shows_a_matthew_effect():
    original = CO.coevolution_initial(8, 3, zipf=1.2, separation=3.0, seed=1)
    res = CO.run_coevolution(original, 30, case="coupled", n_samples=300, n_replicates=20, seed=4)
    live = res["traces"][:, -1] * (res["probs"][:, -1] > 0) / res["traces"][:, 0]
    frequent, rare = np.median(live[:, :3]), np.median(live[:, -3:])
    assert frequent > 2 * rare, (frequent, rare)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n_samples"):
        CO.run_coevolution(ORIGINAL, 2, case="coupled", n_samples=1)
    with pytest.raises(ValueError, match="unknown case"):
        CO.run_coevolution(ORIGINAL, 2, case="frozen", n_samples=10)
    with pytest.raises(ValueError, match="unknown captioner"):
        CO.run_coevolution(ORIGINAL, 2, case="coupled", n_samples=10, captioner="clip")
    with pytest.raises(ValueError, match="sum to 1"):
        CO.run_coevolution({**ORIGINAL, "probs": np.array([0.5, 0.2, 0.2])}, 2, case="coupled", n_samples=10)


# ------------------------------------------------------------------- the tables notebook 07 shows (part 2)


def test_caption_weighted_is_the_frequency_weighted_ratio():
    x = np.arange(12.0).reshape(2, 2, 3)  # (R, G + 1, K)
    p, tr = np.array([0.5, 0.3, 0.2]), np.array([2.0, 1.0, 4.0])
    want = np.array([[sum(p[k] * x[r, g, k] for k in range(3)) for g in range(2)] for r in range(2)]) / 2.1
    np.testing.assert_allclose(CO.caption_weighted(x, p, tr), want, rtol=1e-12)


def test_coevolution_rates_rows_recomputed_from_the_chains_and_the_binomial():
    n, gens, reps = 40, 8, 40
    original = CO.coevolution_initial(4, 2, zipf=1.0, separation=4.0, seed=1)
    rates = CO.coevolution_rates(original, n_generations=gens, n_samples=n, n_replicates=reps, captioner="map",
                                 fresh_fraction=0.25, seed=7, error_samples=5000)
    t = rates.table
    assert list(t.columns) == list(CO.RATE_COLUMNS) and len(t) == 18
    assert list(rates.cases) == ["frozen image, sampled captions", "frozen image, map captioner", "frozen text",
                                 "coupled", "frozen text + 25% fresh", "coupled + 25% fresh"]
    p0, tr0 = original["probs"], np.trace(original["covs"], axis1=1, axis2=2)
    # rho_k = 1 - E[1 / n_k; n_k >= 1], n_k ~ Bin(N, p_k), summed directly over the binomial
    m = np.arange(1, n + 1)
    rho = np.array([1 - (stats.binom.pmf(m, n, pk) / m).sum() for pk in p0])
    np.testing.assert_allclose(rates.rho, rho, rtol=1e-10)
    # frozen text, diversity at G: the same chains by hand, against sum_k p0_k rho_k^G tr0_k / sum_k p0_k tr0_k
    res = CO.run_coevolution(original, gens, case="frozen_text", n_samples=n, n_replicates=reps, seed=7)
    live = (res["traces"] * (res["probs"] > 0))[:, -1]  # (R, K)
    sim = (live * p0).sum(1) / (tr0 * p0).sum()
    row = t[(t.quantity == f"image diversity at generation {gens} / generation 0") & (t.case == "frozen text")].iloc[0]
    assert row.predicted == pytest.approx((p0 * rho**gens * tr0).sum() / (p0 * tr0).sum(), rel=1e-9)
    assert row.simulated == pytest.approx(sim.mean(), rel=1e-12)
    assert row.SE == pytest.approx(sim.std() / np.sqrt(reps), rel=1e-9)
    # frozen image with sampled captions: Wright-Fisher's 1 - 1/N, from the pooled one-step ratios by hand
    h = 1 - (CO.run_coevolution(original, gens, case="frozen_image", n_samples=n, captioner="sampled",
                                n_replicates=reps, seed=7)["probs"] ** 2).sum(-1)
    ratio = (h[:, 1:] / h[:, :-1])[h[:, :-1] > 0]
    row = t[t.case == "frozen image, sampled captions"].iloc[0]
    assert row.predicted == 1 - 1 / n and row.simulated == pytest.approx(ratio.mean(), rel=1e-12)
    # every exact row agrees with its closed form
    exact = t[t.prediction == "exact"]
    assert np.all(np.abs(exact.simulated - exact.predicted) < 4.5 * exact.SE), exact
    captions, images = CO.sample_joint(original, 5000, np.random.default_rng(7))
    assert rates.caption_error == np.mean(CO.caption_map(images, original) != captions)
    assert rates.final_diversity["frozen text"] == pytest.approx(sim.mean(), rel=1e-12)


def test_coevolution_rates_reject_bad_inputs_by_name():
    kw = dict(n_generations=2, n_samples=10, n_replicates=2)
    with pytest.raises(ValueError, match="unknown captioner"):
        CO.coevolution_rates(ORIGINAL, captioner="clip", **kw)
    with pytest.raises(ValueError, match="fresh_fraction"):
        CO.coevolution_rates(ORIGINAL, fresh_fraction=1.5, **kw)
    with pytest.raises(ValueError, match="n_replicates"):
        CO.coevolution_rates(ORIGINAL, **{**kw, "n_replicates": 1})
    with pytest.raises(ValueError, match="n_generations"):
        CO.coevolution_rates(ORIGINAL, **{**kw, "n_generations": 0})
    with pytest.raises(ValueError, match="original needs keys"):
        CO.coevolution_rates({"probs": ORIGINAL["probs"]}, **kw)
