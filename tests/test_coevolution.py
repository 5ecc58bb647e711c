"""Tests for resonance_utils.coevolution: every simulation against its closed form, with stated tolerances.

Tolerances are in standard errors (SE) computed from the closed form or from the replicates; 4.5 SE leaves a
false-alarm rate below 1e-5 per comparison, while each closed form differs from the wrong alternative (ML vs
unbiased variance, no shrinkage, wrong rate) by many SE at these sample sizes.
"""
import numpy as np
import pytest

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
