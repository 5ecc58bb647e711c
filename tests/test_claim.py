"""Tests for resonance_utils.claim: the distances against brute-force references, the decay rate against closed
forms, the verdicts' error rates on chains with known answers at the sizes the claim table uses, the rule, the
table row, and clear errors on bad input."""
import functools
import itertools
import math

import numpy as np
import pytest

from resonance_utils import claim as C
from resonance_utils import config

SEEDS = (0, 1, 2)


@functools.lru_cache(maxsize=None)
def synthetic(name: str, seed: int):
    return C.SYNTHETIC[name][0](seed=seed)


def quick_sizes(row: str) -> dict:
    """The sizes of the claim table's rows in the quick profile: the calibration must hold there. Image rows:
    image_samples per set; the CycleGAN row: its deterministic chains are compared by halves of each start set."""
    cfg = config.load_config("09_claim", "quick")
    if row == "image":
        return dict(n=cfg.image_samples, dim=cfg.pca_components, generations=cfg.image_generations,
                    starts=cfg.n_starts, replicates=cfg.n_replicates, held_out=cfg.held_out)
    return dict(n=cfg.cyclegan_starts // 2, dim=cfg.pca_components, generations=cfg.cyclegan_generations,
                starts=cfg.n_starts, replicates=2, held_out=cfg.held_out)


# ---------------------------------------------------------------------------------------------- the distances


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
    assert abs(np.mean(null)) < 3 * np.std(null) / np.sqrt(len(null))
    assert min(null) < 0
    shifted = C.mmd2_rbf(rng.standard_normal((60, 2)), rng.standard_normal((60, 2)) + 2.0, bandwidth=1.0)
    assert shifted > 10 * np.std(null)


def test_median_bandwidth_is_the_median_pairwise_distance():
    x = np.random.default_rng(2).standard_normal((9, 2))
    brute = np.median([np.linalg.norm(x[i] - x[j]) for i, j in itertools.combinations(range(9), 2)])
    assert C.median_bandwidth(x) == pytest.approx(brute, rel=1e-12)
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        C.median_bandwidth(np.zeros((6, 2)))


def _linear_mmd2(x, y):
    """Unbiased squared distance of the means, from the textbook formula (an independent reference)."""
    return float(np.sum((x.mean(0) - y.mean(0)) ** 2) - np.trace(np.cov(x.T)) / len(x) - np.trace(np.cov(y.T)) / len(y))


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_between_and_replicate_levels_are_the_stated_means_of_pairwise_mmd2(kernel):
    chains = C.known_answer_chains("fast mixing", n=40, dim=3, generations=3, starts=2, replicates=2, seed=4)
    r = C.assess_mixing(chains, kernel=kernel, n_boot=20)
    ref = _linear_mmd2 if kernel == "linear" else functools.partial(
        lambda x, y, h: C.mmd2_rbf(x, y, bandwidth=h), h=r.bandwidth)
    for g in (1, 3):
        cross = [ref(chains[0][a][g], chains[1][b][g]) for a in range(2) for b in range(2)]
        same = [ref(chains[s][0][g], chains[s][1][g]) for s in range(2)]
        assert r.between[g] == pytest.approx(np.mean(cross), rel=1e-9, abs=1e-12)
        assert r.replicate_level[g] == pytest.approx(np.mean(same), rel=1e-9, abs=1e-12)
        assert r.excess[g] == pytest.approx(np.mean(cross) - np.mean(same), rel=1e-9, abs=1e-12)
    # generation 0: the replicates share the start set, so the replicate level is 0 and the excess is the
    # distance between the two start sets
    assert r.replicate_level[0] == 0
    assert r.start_distance == pytest.approx(ref(chains[0][0][0], chains[1][0][0]), rel=1e-9)


# ---------------------------------------------------------------------------------------------- the rate


def test_a_noiseless_linear_map_gives_the_closed_form_rate_and_mixing_time():
    # x -> a x, deterministic: replicates are identical, so halves serve; the squared distance of the means
    # (the linear kernel) decays exactly like a^(2g)
    a = 0.8
    starts = C.start_clouds(2, n_samples=200, dim=3, seed=1)
    chains = [[[x * a ** g for g in range(9)]] * 2 for x in starts]
    r = C.assess_mixing(chains, eps=0.05)
    assert r.replicates == "halves"
    assert r.rate == pytest.approx(a * a, abs=0.003)  # the fit's grid step is 0.0025
    assert r.mixing_time == pytest.approx(math.log(0.05) / math.log(r.rate))
    assert C.mixing_time(1.0, 0.05) == math.inf and C.mixing_time(0.5, 0.25) == pytest.approx(2.0)


def test_the_rate_interval_covers_the_true_rate_at_close_to_its_nominal_level():
    # per-sample AR(1) x -> a x + sqrt(1 - a^2) e from two starts: the excess decays like a^(2g)
    hits, estimates = 0, []
    for seed in range(20):
        chains = C.known_answer_chains("slow geometric mixing", n=200, dim=10, generations=7, seed=seed)
        r = C.assess_mixing(chains, seed=seed)
        lo, hi = r.rate_interval
        hits += lo <= 0.93 ** 2 <= hi
        estimates.append(r.rate)
    assert abs(np.mean(estimates) - 0.93 ** 2) < 0.02  # unbiased to within the grid and the shared noise
    assert hits >= 16  # nominal 95 %: at least 80 % of 20


# ---------------------------------------------------------------------------------------------- calibration


@pytest.fixture(scope="module", params=["image", "cyclegan"])
def calibration(request):
    return C.calibrate(seeds=20, **quick_sizes(request.param))


def test_every_verdict_errs_in_at_most_a_tenth_of_draws_at_the_claim_tables_sizes(calibration):
    assert {r["case"] for r in calibration} == set(C.KNOWN_ANSWERS)
    for row in calibration:
        assert row["draws"] == 20
        assert row["error"] <= 0.10, row
        assert row["correct"] + row["inconclusive"] + row["error"] == pytest.approx(1.0)


def test_the_measures_decide_most_known_cases_rather_than_saying_inconclusive(calibration):
    # "inconclusive" is never an error, but a measure that says it everywhere is useless: at these sizes every
    # case is decided in at least half the draws, and the cases on average in most
    for row in calibration:
        assert row["correct"] >= 0.5, row
    assert np.mean([row["correct"] for row in calibration]) >= 0.85


def test_noise_is_not_called_contraction_or_mixing():
    # the reviewer's probes: nothing changing, 20 dimensions, n = 120, a short run: no directional contraction,
    # no mixing
    verdicts = {"mixing": [], "contraction": []}
    for seed in range(20):
        chains = C.known_answer_chains("nothing changes", n=120, dim=20, generations=6, seed=seed)
        a = C.assess_setting(chains, held_out=2, seed=seed)
        verdicts["mixing"].append(a.mixing.verdict)
        verdicts["contraction"].append(a.contraction.verdict)
    assert verdicts["contraction"].count("directional") <= 2
    assert sum(v in ("mixed", "mixing") for v in verdicts["mixing"]) <= 2


def test_a_random_walk_is_never_observed_as_resonance_nor_its_starts_as_mixed():
    for seed in range(20):
        a = C.assess_setting(C.known_answer_chains("random walk", seed=seed), seed=seed)
        assert a.observed != "resonance"
        assert a.mixing.verdict != "mixed"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(C.SYNTHETIC))
def test_synthetic_combinations_give_the_expected_verdicts(name, seed):
    _, mixing, contraction, outcome = C.SYNTHETIC[name]
    a = C.assess_setting(synthetic(name, seed), seed=seed)
    assert (a.mixing.verdict, a.contraction.verdict, a.predicted) == (mixing, contraction, outcome)


def test_synthetic_chains_do_what_they_say():
    # double well: start 0 at x0 = +2, starts 1 and 2 at x0 = -1: each settles on its own fixed point; the other
    # axes are linear, x_k -> (1 - step_size * stiffness_k) x_k exactly; replicates are identical (no noise)
    shrink = (1 - 0.1 * np.linspace(1.0, 6.0, 3)) ** 30
    for reps, well in zip(synthetic("deterministic double well", 0), (1.0, -1.0, -1.0)):
        np.testing.assert_array_equal(reps[0][-1], reps[1][-1])
        final = reps[0][-1]
        assert len(reps[0]) == 31 and np.all(np.sign(final[:, 0]) == well)
        np.testing.assert_allclose(final[:, 1:], reps[0][0][:, 1:] * shrink, rtol=1e-9, atol=1e-300)
    # noisy chains: replicates of a start share the start set, then draw their own noise
    rot = synthetic("noisy rotation", 0)
    np.testing.assert_array_equal(rot[0][0][0], rot[0][1][0])
    assert not np.allclose(rot[0][0][1], rot[0][1][1])
    a, b = C.noisy_rotation_chains(n_generations=2, seed=5), C.noisy_rotation_chains(n_generations=2, seed=5)
    np.testing.assert_array_equal(a[1][1][2], b[1][1][2])


# ---------------------------------------------------------------------------------------------- contraction


def test_contraction_on_a_noiseless_map_measures_the_closed_form_log_variance_change():
    a = np.array([0.9, 0.7, 0.5, 0.3])
    x0 = np.random.default_rng(0).standard_normal((400, 4))
    chain = [x0 * a ** g for g in range(7)]
    r = C.assess_contraction(chain, window=2, paired=True)
    # along the axes (the basis is the axes, up to sign, since the final cloud is diagonal)
    order = np.argmax(np.abs(r.basis), axis=0)
    expected = 2 * np.log(a[order]) * np.mean([5, 6])
    np.testing.assert_allclose(r.direction_change, expected, rtol=0.01)  # the basis is half A's, nearly the axes
    np.testing.assert_allclose(r.direction_rate, 2 * np.log(a[order]), rtol=0.01)
    np.testing.assert_allclose(np.sort(r.map_singular_values), np.sort(a), atol=1e-6)
    assert r.verdict == "directional"
    # the effective dimension of the start and the end, against numpy
    pr = lambda x: np.trace(np.cov(x.T)) ** 2 / np.trace(np.cov(x.T) @ np.cov(x.T))  # noqa: E731
    assert r.effective_dimension_start == pytest.approx(pr(x0), rel=1e-9)
    assert r.effective_dimension_end == pytest.approx(np.mean([pr(chain[5]), pr(chain[6])]), rel=1e-9)


def test_selection_is_kept_apart_from_measurement():
    # the most-contracted directions are picked on half A and measured on half B: under the null their change
    # averages 0 (picking and measuring on one half makes it negative by selection)
    changes = []
    for seed in range(20):
        chain = C.known_answer_chains("nothing changes", n=120, dim=20, generations=4, starts=2, replicates=2,
                                      seed=seed)[0][0]
        changes.append(C.assess_contraction(chain, seed=seed).most_contracted)
    assert abs(np.mean(changes)) < 3 * np.std(changes) / np.sqrt(len(changes))


def test_pooling_chains_averages_their_statistics():
    chains = [c for reps in C.known_answer_chains("uniform contraction", seed=3) for c in reps]
    results = [C.assess_contraction(c, seed=i) for i, c in enumerate(chains)]
    pooled = C.pool_contraction(results)
    assert pooled.most_contracted == pytest.approx(np.mean([r.most_contracted for r in results]))
    assert pooled.spread == pytest.approx(np.mean([r.spread for r in results]))
    assert pooled.verdict == "uniform" and pooled.n_chains == 4
    lo, hi = pooled.spread_interval
    assert hi - lo < np.mean([r.spread_interval[1] - r.spread_interval[0] for r in results])  # more power


# ---------------------------------------------------------------------------------------------- the rule and the row


def test_predicted_outcome_is_the_papers_rule():
    assert C.predicted_outcome("mixed", "directional") == "resonance"
    assert C.predicted_outcome("mixing", "directional") == "resonance"
    assert C.predicted_outcome("mixing", "uniform") == "wandering"
    assert C.predicted_outcome("mixed", "none") == "wandering"
    assert C.predicted_outcome("separated", "directional") == "separate basins (each contracting)"
    assert C.predicted_outcome("separated", "inconclusive") == "separate basins"
    assert C.predicted_outcome("inconclusive", "directional") == "inconclusive"
    assert C.predicted_outcome("mixed", "inconclusive") == "inconclusive"
    with pytest.raises(ValueError, match="unknown mixing verdict 'mixes'"):
        C.predicted_outcome("mixes", "none")
    assert C.outcomes_agree("separate basins (each contracting)", "separate basins") is True
    assert C.outcomes_agree("resonance", "wandering") is False
    assert C.outcomes_agree("inconclusive", "wandering") is None


def test_claim_row_carries_every_verdict_with_its_interval():
    a = C.assess_setting(C.known_answer_chains("directional contraction", seed=0), seed=0)
    row = C.claim_row("toy", "synthetic", a, feature_space="R^10")
    assert row["mixing verdict"] == "mixed" and row["contraction verdict"] == "directional"
    assert row["predicted"] == "resonance" and row["observed (held-out generations)"] == a.observed
    for key in ("excess decay rate per generation", "most-contracted log variance change", "anisotropy (log spread)",
                "late effective dimension / start"):
        assert "[" in row[key] and "]" in row[key]
    assert row["starts x replicates"] == "2 x 2" and row["generations (measured + held out)"] == "7 + 3"
    overridden = C.claim_row("toy", "synthetic", a, ergodicity="separated", ergodicity_note="2 basins")
    assert overridden["predicted"] == "separate basins (each contracting)"
    assert overridden["mixing verdict"] == "separated (2 basins)"


def test_pca_project_uses_one_pooled_basis_at_any_nesting():
    rng = np.random.default_rng(0)
    first = rng.standard_normal((200, 3)) * [5.0, 1.0, 0.1]
    last = rng.standard_normal((200, 3)) * [0.01, 1.0, 0.1]
    ((p0, p1),), = C.pca_project([[[first, last]]], 2)
    assert p0.shape == (200, 2) and np.var(p0[:, 0]) > 10 * np.var(p1[:, 0])
    w, v = np.linalg.eigh(np.cov(np.concatenate([first, last]).T))
    assert abs(v[:, np.argmax(w)][0]) > 0.99


# ---------------------------------------------------------------------------------------------- pinned details
# (each catches a planted bug that the tests above let through)


def _stationary_chains(seed, *, jitter=0.0, start_spread=1.0, n=150, dim=10, generations=10, starts=2,
                       replicates=2, offset=2.0):
    """chains[start][replicate][generation], STATIONARY from generation 1 on: every generation a fresh sample of
    N(w_s + jitter * eta, I), eta ~ N(0, I) drawn afresh per (chain, generation) (a retrained model's mean that
    jitters without accumulating); generation 0 is N(w_s, start_spread^2 I), shared by the replicates."""
    out = []
    for s in range(starts):
        w = np.zeros(dim)
        w[:2] = offset * np.cos(2 * np.pi * s / starts), offset * np.sin(2 * np.pi * s / starts)
        x0 = w + start_spread * np.random.default_rng([seed, s]).standard_normal((n, dim))
        out.append([[x0] + [w + jitter * np.random.default_rng([seed, s, r, g, 1]).standard_normal(dim)
                            + np.random.default_rng([seed, s, r, g]).standard_normal((n, dim))
                            for g in range(1, generations + 1)] for r in range(replicates)])
    return out


def test_lack_of_fit_is_the_residual_chi2_per_degree_of_freedom():
    # phi = sqrt(max(1, chi^2 / (G - 1))): G + 1 points, 2 fitted parameters (A, rho); chi^2 with the bootstrap
    # SEs before inflation. Two fixed basins in the Gaussian kernel is not geometric (phi ~ 2.4)
    r = C.assess_mixing(C.known_answer_chains("two fixed basins", n=150, dim=10, generations=7, seed=0),
                        kernel="gaussian", seed=0)
    se = r.excess_se / r.lack_of_fit
    chi2 = float(np.sum(((r.excess - r.fitted) / se) ** 2))
    G = len(r.excess) - 1
    assert r.lack_of_fit > 1.5
    assert r.lack_of_fit == pytest.approx(math.sqrt(max(1.0, chi2 / (G - 1))), rel=1e-6)


def test_late_excess_is_the_mean_over_the_last_window_generations():
    chains = C.known_answer_chains("slow geometric mixing", n=100, dim=5, generations=8, seed=1)
    for window in (1, 2, 3):
        r = C.assess_mixing(chains, window=window, seed=1)
        assert r.late_excess == pytest.approx(np.mean(r.excess[-window:]), rel=1e-12, abs=1e-15)
        assert np.mean(r.late_interval) == pytest.approx(r.late_excess, rel=1e-9, abs=1e-12)


def test_contraction_intervals_are_the_two_sided_percentiles_of_the_bootstrap():
    chain = C.known_answer_chains("directional contraction", n=150, dim=10, generations=7, seed=0)[0][0]
    for alpha in (0.05, 0.2):
        r = C.assess_contraction(chain, alpha=alpha, seed=0)
        q = [alpha / 2, 1 - alpha / 2]
        np.testing.assert_allclose(r.most_contracted_interval, np.quantile(r.most_boot[1:], q), rtol=1e-12)
        np.testing.assert_allclose(r.spread_interval, np.quantile(r.spread_boot[1:], q), rtol=1e-12)
        pooled = C.pool_contraction([r])
        np.testing.assert_allclose(pooled.spread_interval, np.quantile(r.spread_boot[1:], q), rtol=1e-12)


def test_mixed_uses_the_one_sided_bound_and_the_late_interval_the_two_sided_one():
    # the late interval is late +- z(1 - alpha/2) SE; "mixed" needs late + z(1 - alpha) SE < mixed_effect x start.
    # Put the threshold at late + 1.80 SE (between z(0.95) = 1.645 and z(0.975) = 1.96): mixed; at late + 1.50 SE:
    # not mixed. Everything but the verdict is unchanged by mixed_effect (same seed).
    from scipy.stats import norm
    chains = C.known_answer_chains("slow geometric mixing", n=200, dim=10, generations=7, seed=0)
    r = C.assess_mixing(chains, seed=0)
    late_se = (r.late_interval[1] - r.late_interval[0]) / (2 * norm.ppf(0.975))
    assert r.late_excess > 2 * late_se  # a clearly positive late excess, so both thresholds below are > 0
    inside = C.assess_mixing(chains, seed=0, mixed_effect=(r.late_excess + 1.80 * late_se) / r.start_distance)
    outside = C.assess_mixing(chains, seed=0, mixed_effect=(r.late_excess + 1.50 * late_se) / r.start_distance)
    assert inside.late_interval == pytest.approx(r.late_interval)
    assert inside.verdict == "mixed", inside.reason
    assert outside.verdict != "mixed", outside.reason


def test_a_one_off_change_of_spread_after_generation_0_is_not_diffusion():
    # generation 0 is tight (spread 0.25), the chains' own law from generation 1 on has unit spread and never
    # leaves its start's basin: separated. The spread gate compares generations 1..window with the last window,
    # so the jump from generation 0 does not read as clouds that keep spreading.
    verdicts = [C.assess_mixing(_stationary_chains(seed, start_spread=0.25, generations=7), seed=seed).verdict
                for seed in range(5)]
    assert verdicts.count("separated") >= 4, verdicts


def test_the_drift_slope_interval_sees_chain_level_noise():
    # stationary chains whose cloud mean jitters (fresh N(0, I) per generation, not accumulating): the true slope
    # of the cumulative drift is 0. The row bootstrap cannot see the jitter (every row shares it); the scatter
    # between chains can. Pristine: 17 of 20 intervals cover 0 (row bootstrap alone: 2 of 20).
    hits = 0
    for seed in range(20):
        o = C.observe_outcome(_stationary_chains(seed, jitter=1.0), held_out=3, seed=seed)
        lo, hi = o.drift_slope_interval
        hits += lo <= 0 <= hi
    assert hits >= 14


def test_each_start_set_is_resampled_with_its_own_weights():
    # two starts built from ONE set of rows (start 1 = start 0 shifted by d, a paired design): the documented
    # bootstrap draws one weight vector per start, so the generation-0 distance keeps its two-sample sampling
    # error, Var |m0 - m1|^2 ~ 4 d' (S0 + S1) d / n; one weight vector shared by both starts would make the
    # difference of the resampled means exactly d (SE ~ 0)
    rng = np.random.default_rng(0)
    n, dim = 200, 5
    base = rng.standard_normal((n, dim))
    d = np.r_[4.0, np.zeros(dim - 1)]
    chains = [[[x0] + [w + rng.standard_normal((n, dim)) for _ in range(6)] for _ in range(2)]
              for x0, w in ((base, np.zeros(dim)), (base + d, d))]
    r = C.assess_mixing(chains, seed=0)
    expected = math.sqrt(4 * d @ (2 * np.cov(base.T)) @ d / n)
    assert r.start_distance_se / r.lack_of_fit == pytest.approx(expected, rel=0.3)


# ---------------------------------------------------------------------------------------------- bad input


def _ens(starts=2, replicates=2, generations=6, n=20, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    return [[[rng.standard_normal((n, dim)) + s for _ in range(generations)] for _ in range(replicates)]
            for s in range(starts)]


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda: _ens(starts=1), {}, "at least 2 different starts"),
    (lambda: _ens()[0], {}, "is a single chain"),
    (lambda: np.zeros((3, 4)), {}, r"chains\[start\]\[replicate\]\[generation\]"),
    (lambda: [_ens()[0], _ens(generations=4)[1]], {}, r"different lengths .*\[4, 6\]"),
    (lambda: [_ens()[0], _ens(dim=2)[1]], {}, r"mismatched dims: \[2, 3\]"),
    (lambda: _ens(generations=2), {}, "at least 2 generations after generation 0"),
    (lambda: _ens(replicates=1), {}, "at least 2 replicate chains per start"),
    (lambda: _ens(), {"kernel": "poly"}, "unknown kernel 'poly'"),
    (lambda: _ens(), {"replicates": "pairs"}, "unknown replicates 'pairs'"),
    (lambda: _ens(), {"window": 6}, "window must be between 1 and"),
    (lambda: _ens(), {"eps": 0}, "eps"),
    (lambda: _ens(), {"mixed_effect": 1.5}, "mixed_effect"),
    (lambda: _ens(), {"n_boot": 5}, "n_boot must be a whole number >= 20"),
    (lambda: [[[np.full((20, 3), np.nan)] * 6] * 2] * 2, {}, "NaN"),
])
def test_mixing_rejects_bad_input(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        C.assess_mixing(make(), **kwargs)


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda: _ens()[0][0][0], {}, "is a single cloud"),
    (lambda: _ens(generations=1)[0][0], {}, "at least one generation after"),
    (lambda: _ens()[0][0], {"window": 9}, "window must be between 1 and"),
    (lambda: _ens()[0][0], {"basis": "initial"}, "unknown basis 'initial'"),
    (lambda: _ens()[0][0], {"contraction_tol": 1.0}, "contraction_tol"),
    (lambda: _ens()[0][0], {"quantile": 0.9}, "quantile"),
    (lambda: _ens()[0][0], {"paired": "yes"}, "paired must be True or False"),
    (lambda: _ens(n=6)[0][0], {}, "at least 8 samples per generation"),
    (lambda: _ens()[0][0], {"n_components": 7}, "n_components must be an integer between 1 and 3"),
])
def test_contraction_rejects_bad_input(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        C.assess_contraction(make(), **kwargs)


def test_setting_and_observation_reject_bad_hold_outs():
    with pytest.raises(ValueError, match="held_out=4 leaves 1 generations"):
        C.assess_setting(_ens(), held_out=4)
    with pytest.raises(ValueError, match="held_out must be a whole number >= 2"):
        C.observe_outcome(_ens(), held_out=1)
    with pytest.raises(ValueError, match="unknown case 'zigzag'"):
        C.known_answer_chains("zigzag")


def test_starts_that_cannot_be_told_apart_are_inconclusive_with_a_warning():
    same = C.known_answer_chains("fast mixing", offset=0.0, seed=2)
    with pytest.warns(UserWarning, match="indistinguishable"):
        r = C.assess_mixing(same)
    assert r.verdict == "inconclusive" and "not told apart" in r.reason


def test_synthetic_builders_reject_bad_parameters():
    with pytest.raises(ValueError, match=r"\|a\| < 1"):
        C.linear_contraction_chains(factors=(1.0, 0.5))
    with pytest.raises(ValueError, match="stiffness needs dim - 1 = 3"):
        C.double_well_chains(stiffness=(1.0, 2.0))
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        C.isometry_chains(dim=1)


def test_weighted_covariances_equal_numpy_cov_of_the_resampled_rows():
    """Bootstrap covariances from resampling counts against np.cov of the rows repeated by those counts."""
    from resonance_utils.claim import _weighted_covariances

    r = np.random.default_rng(7)
    x = r.normal(size=(40, 5)) @ r.normal(size=(5, 5))
    counts = r.multinomial(40, np.full(40, 1 / 40), size=6).astype(float)
    got = _weighted_covariances(x, counts)
    for c, cov in zip(counts, got):
        np.testing.assert_allclose(cov, np.cov(np.repeat(x, c.astype(int), axis=0), rowvar=False), rtol=1e-10,
                                   atol=1e-12)
