"""Tests for resonance_utils.claim: the two conditions measured on synthetic chains whose answers are known by
construction, closed forms for the contraction factors, a brute-force MMD, and clear errors on bad input."""
import functools
import itertools
import math

import numpy as np
import pytest

from resonance_utils import claim as C
from resonance_utils.chain import run_chain

SEEDS = (0, 1, 2)


@functools.lru_cache(maxsize=None)
def synthetic(name: str, seed: int):
    return C.SYNTHETIC[name][0](seed=seed)


# ---------------------------------------------------------------------------------------------- the kernel distance


def test_mmd2_rbf_matches_a_brute_force_double_loop():
    rng = np.random.default_rng(0)
    x, y, h = rng.standard_normal((5, 3)), rng.standard_normal((7, 3)) + 0.5, 1.3

    def k(a, b):
        return math.exp(-sum((a - b) ** 2) / (2 * h * h))

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    yy = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    xy = sum(k(a, b) for a in x for b in y) / (5 * 7)
    assert C.mmd2_rbf(x, y, bandwidth=h) == pytest.approx(xx + yy - 2 * xy, rel=1e-12, abs=1e-15)
    assert C.mmd2_rbf(x, y, bandwidth=h) == pytest.approx(C.mmd2_rbf(y, x, bandwidth=h), rel=1e-12)


def test_mmd2_rbf_is_unbiased_under_the_null_and_positive_for_a_shift():
    rng = np.random.default_rng(1)
    null = [C.mmd2_rbf(rng.standard_normal((60, 2)), rng.standard_normal((60, 2)), bandwidth=1.0) for _ in range(200)]
    assert abs(np.mean(null)) < 3 * np.std(null) / np.sqrt(len(null))  # mean 0 within its standard error
    assert min(null) < 0  # unbiased: single values go negative
    shifted = C.mmd2_rbf(rng.standard_normal((60, 2)), rng.standard_normal((60, 2)) + 2.0, bandwidth=1.0)
    assert shifted > 10 * np.std(null)


def test_median_bandwidth_is_the_median_pairwise_distance():
    x = np.random.default_rng(2).standard_normal((9, 2))
    brute = np.median([np.linalg.norm(x[i] - x[j]) for i, j in itertools.combinations(range(9), 2)])
    assert C.median_bandwidth(x) == pytest.approx(brute, rel=1e-12)
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        C.median_bandwidth(np.zeros((6, 2)))


# ---------------------------------------------------------------------------------------------- the four combinations


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(C.SYNTHETIC))
def test_synthetic_combinations_give_the_expected_verdicts(name, seed):
    _, ergodicity, contraction, outcome = C.SYNTHETIC[name]
    chains = synthetic(name, seed)
    result = C.assess_chains(chains, ergodicity={"seed": seed})
    assert result.ergodicity.verdict == ergodicity
    assert [r.verdict for r in result.contraction] == [contraction] * len(chains)
    assert result.outcome == outcome
    assert result.ergodicity.starts_distinguishable  # the starts were told apart, so the verdict means something


def test_verdicts_come_from_the_stated_numbers():
    mixing = C.measure_ergodicity(synthetic("noisy linear contraction", 0))
    assert mixing.separation_last <= mixing.noise_factor and mixing.shrink >= mixing.shrink_tol
    stuck = C.measure_ergodicity(synthetic("deterministic isometry", 0))
    assert stuck.separation_last > 100 * stuck.noise_factor and stuck.shrink < stuck.shrink_tol
    for chain in synthetic("noisy linear contraction", 0):
        r = C.measure_contraction(chain)
        assert r.most_contracted < 1 - r.contraction_tol and r.spread > r.anisotropy_tol and r.trend == "contracting"
    assert C.measure_contraction(synthetic("noisy rotation", 0)[0]).trend == "expanding"
    assert C.measure_contraction(synthetic("deterministic isometry", 0)[0]).trend == "isometric"


def test_one_stuck_chain_is_enough_to_not_mix():
    # five chains of one ergodic setting; the fifth is held 0.2 (0.3 stationary sds) off along x0 for ever
    chains = C.linear_contraction_chains(n_chains=5, seed=7)
    assert C.measure_ergodicity(chains).verdict == "mixes"
    stuck = chains[:4] + [[x + np.array([0.2, 0.0, 0.0, 0.0]) for x in chains[4]]]
    r = C.measure_ergodicity(stuck)
    per_pair = r.between_pairs[:, -r.window:].mean(axis=1)
    assert per_pair.mean() / r.noise_level < r.noise_factor  # on average over pairs it would pass ...
    assert r.separation_last == pytest.approx(per_pair.max() / r.noise_level)  # ... the worst pair decides
    assert r.between_last == pytest.approx(per_pair.max())
    assert r.separation_last > r.noise_factor and r.verdict == "does not mix"


def test_thresholds_change_the_verdicts():
    chains = synthetic("noisy linear contraction", 2)
    separation = C.measure_ergodicity(chains).separation_last
    assert 0 < separation < 3
    assert C.measure_ergodicity(chains, noise_factor=0.9 * separation).verdict == "does not mix"
    assert C.measure_ergodicity(chains, noise_factor=1.1 * separation).verdict == "mixes"
    assert C.measure_ergodicity(chains, shrink_tol=0.9999999).verdict == "does not mix"
    assert C.measure_contraction(chains[0], anisotropy_tol=5.0).verdict == "uniform contraction"
    assert C.measure_contraction(chains[0], contraction_tol=0.99).verdict == "no contraction"


def test_uniform_contraction_is_not_directional():
    chains = C.linear_contraction_chains(factors=(0.5, 0.5, 0.5, 0.5), n_generations=20)
    results = [C.measure_contraction(c) for c in chains]
    assert [r.verdict for r in results] == ["uniform contraction"] * 3
    assert all(r.contracting and not r.directional for r in results)


def test_synthetic_chains_do_what_they_say():
    # double well: chain 0 starts at x0 = +2, chains 1 and 2 at x0 = -1: each settles on its own fixed point
    # (points that start near the saddle x0 = 0 arrive late, but never cross); the other axes are linear:
    # x_k -> (1 - step_size * stiffness_k) x_k, exactly
    shrink = (1 - 0.1 * np.linspace(1.0, 6.0, 3)) ** 30
    for chain, well in zip(synthetic("deterministic double well", 0), (1.0, -1.0, -1.0)):
        final = chain[-1]
        assert len(chain) == 31 and np.all(np.sign(final[:, 0]) == well)
        assert np.mean(np.abs(final[:, 0] - well) < 1e-2) > 0.99
        np.testing.assert_allclose(final[:, 1:], chain[0][:, 1:] * shrink, rtol=1e-9, atol=1e-300)
    # isometry: every pairwise distance is kept, generation after generation
    chain = synthetic("deterministic isometry", 0)[0]
    d0 = np.linalg.norm(chain[0][:50, None] - chain[0][None, :50], axis=-1)
    dG = np.linalg.norm(chain[-1][:50, None] - chain[-1][None, :50], axis=-1)
    np.testing.assert_allclose(dG, d0, atol=1e-10)
    # one independent noise stream per chain, reproducible from the seed
    a, b = C.noisy_rotation_chains(n_generations=2, seed=5), C.noisy_rotation_chains(n_generations=2, seed=5)
    np.testing.assert_array_equal(a[1][2], b[1][2])
    assert not np.allclose(a[0][1] - a[0][0] @ C.rotation_matrix(4).T, a[1][1] - a[1][0] @ C.rotation_matrix(4).T)


# ---------------------------------------------------------------------------------------------- closed forms


def test_noiseless_linear_map_gives_exactly_diag_a_squared():
    a = np.array([0.9, 0.7, 0.5, 0.3])
    chain = C.linear_contraction_chains(factors=a, noise=0.0, n_chains=1, n_generations=6)[0]
    exact = C.measure_contraction(chain, basis=np.eye(4))
    np.testing.assert_allclose(exact.log_factors, np.tile(2 * np.log(a), (6, 1)), atol=1e-10)
    np.testing.assert_allclose(exact.per_generation_factors, a**2, rtol=1e-10)
    # the default basis (PCA of the final clouds) finds the axes by itself, in order of final variance
    found = C.measure_contraction(chain)
    np.testing.assert_allclose(found.per_generation_factors, a**2, rtol=1e-2)
    np.testing.assert_allclose(np.abs(found.basis), np.eye(4), atol=0.03)


def test_noisy_linear_variances_follow_the_recursion_and_the_stationary_law():
    a, sigma = np.array([0.9, 0.7, 0.5, 0.3]), 0.3
    chain = C.linear_contraction_chains(factors=a, noise=sigma, n_chains=1, n_samples=2000, n_generations=40)[0]
    r = C.measure_contraction(chain, basis=np.eye(4), window=10)
    v = r.variances
    # one step: E[v_{g+1}] = a^2 v_g + sigma^2 (sample variance of 2000 points: ~3% error)
    np.testing.assert_allclose(v[1:].mean(0), (a**2 * v[:-1] + sigma**2).mean(0), rtol=0.05)
    # stationary: v = sigma^2 / (1 - a^2); the start has variance 1 along every axis
    np.testing.assert_allclose(np.exp(r.total_log_factors), sigma**2 / (1 - a**2) / v[0], rtol=0.1)
    assert r.spread == pytest.approx(np.log((1 - a[-1] ** 2) / (1 - a[0] ** 2)), abs=0.2)


def test_paired_map_singular_values_recover_the_linear_map():
    a = np.array([0.9, 0.7, 0.5, 0.3])
    chain = C.linear_contraction_chains(factors=a, n_chains=1, n_samples=2000, n_generations=10)[0]
    sv = C.measure_contraction(chain, paired=True).map_singular_values
    assert sv.shape == (10, 4)
    np.testing.assert_allclose(sv.mean(0), a, atol=0.02)  # even at stationarity, where variance factors are 1
    rotation = C.paired_map_singular_values(C.noisy_rotation_chains(noise=0.3, n_chains=1, n_samples=2000,
                                                                    n_generations=5)[0])
    np.testing.assert_allclose(rotation, 1.0, atol=0.05)
    assert C.measure_contraction(chain).map_singular_values is None
    # an affine map x -> A x + b: the intercept is fitted, not folded into the singular values
    rng = np.random.default_rng(3)
    affine = run_chain(lambda x, ctx: x * a + 5.0 + 0.3 * ctx.rng.standard_normal(x.shape),
                       rng.standard_normal((2000, 4)), 6, progress=False).states
    np.testing.assert_allclose(C.paired_map_singular_values(affine).mean(0), a, atol=0.02)


# ---------------------------------------------------------------------------------------------- options and records


def test_fid_metric_and_consecutive_noise_agree_on_the_clear_cases():
    mixing, stuck = synthetic("noisy linear contraction", 1), synthetic("deterministic isometry", 1)
    for kw in ({"metric": "fid"}, {"noise": "consecutive"}):
        assert C.measure_ergodicity(mixing, **kw).verdict == "mixes"
        assert C.measure_ergodicity(stuck, **kw).verdict == "does not mix"
    r = C.measure_ergodicity(mixing, metric="fid", n=150)
    assert r.metric == "fid" and r.bandwidth is None and r.n == 150
    assert np.isnan(C.measure_ergodicity(mixing, noise="consecutive").within[0])


def test_ergodicity_record():
    chains = synthetic("noisy linear contraction", 2)
    r = C.measure_ergodicity(chains)
    G1 = len(chains[0])
    assert r.n == 200 and r.metric == "mmd" and r.noise == "halves" and r.window == 5
    assert r.bandwidth == pytest.approx(C.median_bandwidth(np.concatenate([c[0] for c in chains])))
    assert r.between.shape == r.within.shape == (G1,)
    assert r.between_pairs.shape == (3, G1) and r.pairs == ((0, 1), (0, 2), (1, 2))
    assert r.within_chains.shape == (3, G1)
    np.testing.assert_allclose(r.between, r.between_pairs.mean(0))
    assert r.between[0] > 100 * r.between[-5:].mean()  # the starts are forgotten
    # a given bandwidth is used as is; ChainResult objects are accepted as chains
    results = [run_chain(lambda x, ctx: x * 0.5, c[0], 3, progress=False) for c in chains]
    assert C.measure_ergodicity(results, bandwidth=2.0, window=2).bandwidth == 2.0


def test_starts_that_cannot_be_told_apart_warn():
    chains = C.linear_contraction_chains(offset=0.0, n_generations=5)  # same start law for every chain
    with pytest.warns(UserWarning, match="indistinguishable"):
        r = C.measure_ergodicity(chains)
    assert not r.starts_distinguishable


def test_predicted_outcome_is_the_papers_rule():
    assert C.predicted_outcome(True, True) == "resonance"
    assert C.predicted_outcome(True, False) == "wandering"
    assert C.predicted_outcome(False, True) == "separate basins (each contracting)"
    assert C.predicted_outcome(np.bool_(False), False) == "separate basins"
    with pytest.raises(ValueError, match="ergodic must be True or False"):
        C.predicted_outcome("yes", True)
    with pytest.raises(ValueError, match="directional must be True or False"):
        C.predicted_outcome(True, 1)


# ---------------------------------------------------------------------------------------------- bad input


def _tiny_chains(n_chains=2, generations=6, n=20, dim=3):
    rng = np.random.default_rng(0)
    return [[rng.standard_normal((n, dim)) + c for _ in range(generations)] for c in range(n_chains)]


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda: _tiny_chains(1), {}, "at least 2 chains"),
    (lambda: _tiny_chains(2)[0], {}, "single chain"),
    (lambda: run_chain(lambda x, ctx: x, np.zeros((20, 3)), 5, progress=False), {}, "single chain"),
    (lambda: [_tiny_chains()[0], _tiny_chains(generations=4)[1]], {}, r"different lengths .*\[6, 4\]"),
    (lambda: [_tiny_chains()[0], _tiny_chains(dim=2)[1]], {}, r"mismatched dims: \[3, 2\]"),
    (lambda: [_tiny_chains()[0], _tiny_chains()[1][:5] + [np.zeros((20, 4))]], {}, "generation 5 has dim 4"),
    (lambda: _tiny_chains(generations=1), {}, "at least one generation after"),
    (lambda: _tiny_chains(), {"metric": "kid"}, "unknown metric 'kid'"),
    (lambda: _tiny_chains(), {"noise": "pairs"}, "unknown noise 'pairs'"),
    (lambda: _tiny_chains(), {"window": 6}, "window must be an integer between 1 and the number of steps"),
    (lambda: _tiny_chains(), {"n": 11}, "n must be an integer between 2 and half the smallest cloud"),
    (lambda: _tiny_chains(), {"noise_factor": 0}, "noise_factor"),
    (lambda: _tiny_chains(), {"shrink_tol": 1.0}, "shrink_tol"),
    (lambda: _tiny_chains(), {"bandwidth": -1.0}, "bandwidth"),
    (lambda: [[np.full((20, 3), np.nan)] * 6] * 2, {}, "NaN"),
])
def test_ergodicity_rejects_bad_input(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        C.measure_ergodicity(make(), **kwargs)


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda: _tiny_chains()[0][:1], {}, "at least one generation after"),
    (lambda: _tiny_chains()[0] + [np.zeros((20, 2))], {}, "generation 6 has dim 2"),
    (lambda: _tiny_chains()[0][0], {}, "single cloud"),
    (lambda: _tiny_chains()[0], {"basis": "average"}, "unknown basis 'average'"),
    (lambda: _tiny_chains()[0], {"basis": np.ones((3, 2))}, "orthonormal"),
    (lambda: _tiny_chains()[0], {"basis": np.eye(4)}, r"shape \(dim=3, k\)"),
    (lambda: _tiny_chains()[0], {"n_components": 4}, "n_components"),
    (lambda: _tiny_chains()[0], {"window": 0}, "window"),
    (lambda: _tiny_chains()[0], {"contraction_tol": 1.5}, "contraction_tol"),
    (lambda: _tiny_chains()[0], {"quantile": 0.9}, "quantile"),
    (lambda: _tiny_chains()[0], {"paired": "yes"}, "paired must be True or False"),
    (lambda: _tiny_chains()[0][:4] + [np.zeros((19, 3))], {"paired": True}, "same number of rows"),
    (lambda: _tiny_chains(n=4)[0], {"paired": True}, "more than dim"),
])
def test_contraction_rejects_bad_input(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        C.measure_contraction(make(), **kwargs)


def test_synthetic_builders_reject_bad_parameters():
    with pytest.raises(ValueError, match=r"\|a\| < 1"):
        C.linear_contraction_chains(factors=(1.0, 0.5))
    with pytest.raises(ValueError, match="stiffness needs dim - 1 = 3"):
        C.double_well_chains(stiffness=(1.0, 2.0))
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        C.isometry_chains(dim=1)


# ---------------------------------------------------------------------------------------------- observation and table


def test_observed_outcome_follows_its_stated_criterion():
    assert C.observed_outcome(phase="empirical stationarity", pattern="oblate contraction") == "resonance"
    assert C.observed_outcome(phase="slow transient", pattern="coherent contraction") == "resonance"
    assert C.observed_outcome(phase="active transient", pattern="coherent contraction") == "wandering"
    assert C.observed_outcome(phase="empirical stationarity", pattern="wrinkled expansion") == "wandering"
    # attractors decide first: several basins are seen whatever the drift does
    assert C.observed_outcome(phase="empirical stationarity", pattern="oblate contraction",
                              n_attractors=3) == "separate basins"
    assert C.observed_outcome(phase="empirical stationarity", pattern="oblate contraction",
                              n_attractors=1) == "resonance"
    with pytest.raises(ValueError, match="unknown phase"):
        C.observed_outcome(phase="stationary", pattern=None)
    with pytest.raises(ValueError, match="n_attractors"):
        C.observed_outcome(phase="slow transient", pattern=None, n_attractors=-1)


def test_outcomes_agree_treats_each_contracting_basins_as_basins():
    assert C.outcomes_agree("separate basins (each contracting)", "separate basins")
    assert C.outcomes_agree("resonance", "resonance")
    assert not C.outcomes_agree("resonance", "wandering")
    with pytest.raises(ValueError, match="observed outcome"):
        C.outcomes_agree("resonance", "collapse")


def test_count_distinct_against_a_brute_force_grouping():
    rng = np.random.default_rng(3)
    for _ in range(50):
        v = np.round(rng.uniform(0, 10, rng.integers(1, 12)), 1)
        tol = float(rng.uniform(0, 2))
        # independent: union-find over pairs within tol, chained (single linkage) on the sorted line
        s = sorted(v)
        groups = 1 + sum(1 for a, b in zip(s, s[1:]) if b - a > tol)
        assert C.count_distinct(v, tol=tol) == groups
    assert C.count_distinct([], tol=1.0) == 0
    assert C.count_distinct([434.1, 434.3, 868.0], tol=0.5) == 2


def test_pca_project_uses_one_pooled_basis_and_keeps_late_collapsing_directions():
    rng = np.random.default_rng(0)
    # axis 0 has variance at the start only: a final-cloud basis would drop it, the pooled basis keeps it
    first = rng.standard_normal((200, 3)) * [5.0, 1.0, 0.1]
    last = rng.standard_normal((200, 3)) * [0.01, 1.0, 0.1]
    (p0, p1), = C.pca_project([[first, last]], 2)
    assert p0.shape == (200, 2) and p1.shape == (200, 2)
    # the pooled covariance's leading eigenvector, computed independently, is axis 0
    pooled = np.concatenate([first, last])
    w, v = np.linalg.eigh(np.cov(pooled.T))
    top = v[:, np.argmax(w)]
    assert abs(top[0]) > 0.99
    assert np.var(p0[:, 0]) > 10 * np.var(p1[:, 0])
    assert C.pca_project([[first, last]], 0)[0][0] is not None


def test_observe_chain_and_claim_row_on_a_resonating_synthetic_chain():
    chains = synthetic("noisy linear contraction", 0)
    a = C.assess_chains(chains)
    seen = C.observe_chain(chains[0])
    assert seen["phase"] in ("slow transient", "empirical stationarity")
    assert seen["pattern"].endswith("contraction")
    row = C.claim_row("noisy linear contraction", "synthetic", a, phase=seen["phase"], pattern=seen["pattern"])
    assert row["predicted"] == "resonance" and row["observed"] == "resonance" and row["agree"]
    assert row["chains"] == 3 and row["attractors"] == "n/a"
    basins = C.assess_chains(C.double_well_chains(seed=0))
    row = C.claim_row("double well", "synthetic", basins, phase="empirical stationarity",
                      pattern="coherent contraction", n_attractors=2)
    assert row["observed"] == "separate basins" and row["agree"]


def test_a_deterministic_collapse_onto_one_state_mixes_by_the_collapse_criterion():
    # noiseless x -> 0.8 x: every start collapses towards the origin and the within-chain noise vanishes with
    # it (0.8^30 ~ 1e-3), so a tiny leftover offset is many "noise units"; the absolute collapse of the
    # between-chain distance, relative to its start, is what says the starts were forgotten
    chains = [run_chain(lambda x, ctx: 0.8 * x, x0, 30, progress=False).states for x0 in C.start_clouds(3, seed=0)]
    e = C.measure_ergodicity(chains, collapse_tol=0.01)
    assert e.verdict == "mixes"
    # the ratio the criterion reads: each pair's last-window mean over its generation-0 distance, the worst pair
    ratios = [row[-e.window:].mean() / row[0] for row in e.between_pairs]
    assert e.end_over_start == pytest.approx(max(ratios)) and e.end_over_start <= 0.01
    assert C.measure_ergodicity(chains, collapse_tol=0.0).verdict == "does not mix"
    with pytest.raises(ValueError, match="collapse_tol"):
        C.measure_ergodicity(chains, collapse_tol=1.5)
