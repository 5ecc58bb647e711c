"""Known-answer tests, with error rates, for the drift curves' floor and intervals and for the phase detector,
at the sizes the project uses: 200 samples per generation (two halves of 100) in 20 dimensions over 12
generations, and 500 samples in 128 dimensions over 7 generations (notebook 05's quick profile).

Each rate is measured over independent seeds and compared with its target (>= 90% right); each test also
runs a deliberately broken variant (the standard errors ignored, the floor left out, the old slope-only
reading of raw FID, intervals without the first-order term) and checks that it misses the target, so the test
can fail. Measured rates: python tests/test_phases.py prints them.
"""
import functools

import numpy as np
import scipy.linalg

from resonance_utils import metrics as M
from resonance_utils import plots

SEEDS = range(20)
TARGET = 0.9


# ---------------------------------------------------------------------------------------------- chains


def random_walk(seed, *, n=200, dim=20, generations=11, step=0.3):
    """The law itself wanders: every generation its mean takes a Gaussian step (sd `step` per coordinate,
    shared by all samples), and the generation is a fresh sample of n points around it."""
    rng = np.random.default_rng([seed, 1])
    mean, clouds = np.zeros(dim), []
    for g in range(generations + 1):
        if g:
            mean = mean + step * rng.standard_normal(dim)
        clouds.append(mean + rng.standard_normal((n, dim)))
    return clouds


def still_chain(seed, *, n=200, dim=20, generations=11):
    """Nothing changes: every generation is a fresh sample of one fixed law."""
    rng = np.random.default_rng([seed, 2])
    scales = np.linspace(0.5, 1.5, dim)
    return [rng.standard_normal((n, dim)) * scales for _ in range(generations + 1)]


@functools.lru_cache(maxsize=None)
def curves(kind, seed, resplits=20):
    """(local, cumulative) drift of one chain, computed once per test session."""
    clouds = {"walk": lambda: random_walk(seed), "still": lambda: still_chain(seed),
              "walk128": lambda: random_walk(seed, n=500, dim=128, generations=6),
              "still128": lambda: still_chain(seed, n=500, dim=128, generations=6),
              "synthetic": lambda: M.synthetic_phase_chain(seed=seed)[0]}[kind]()
    return M.drift_curves(clouds, seed=seed, resplits=resplits)


def rate(kind, seeds, label, read=lambda local, cum: M.detect_phases(local, cum), resplits=20):
    """Share of seeds whose last generation is labelled `label`."""
    return np.mean([read(*curves(kind, s, resplits)).labels[-1] == label for s in seeds])


def old_detector(local, cum):
    """The detector as it was: slopes of the raw curves (floor included) normalised by their maxima, no error."""
    return M.detect_phases(local.values, np.r_[0.0, cum.values[1:]], z=1e-12, min_generations=1)


def ignore_errors(local, cum):
    return M.detect_phases(local, cum, z=1e-12)


# ---------------------------------------------------------------------------------------------- (a), (b)


def test_a_random_walk_is_active_not_settled():
    walk = rate("walk", SEEDS, "active transient")
    assert walk >= TARGET, f"random walks labelled active at their last generation: {walk:.0%}"
    # the old reading (raw curves, slopes only) calls most of them slow or settled
    assert rate("walk", SEEDS, "active transient", old_detector) < TARGET
    # without the local curve's level above its floor (arrays: no floor known) a walk is not seen either
    assert rate("walk", SEEDS, "active transient", lambda l, c: M.detect_phases(l.excess, c.excess)) < TARGET


def test_b_a_chain_that_does_not_move_is_stationary():
    still = rate("still", SEEDS, "empirical stationarity")
    assert still >= TARGET, f"still chains labelled stationary at their last generation: {still:.0%}"
    # a detector that ignores the standard errors sees movement in the noise
    assert rate("still", SEEDS, "empirical stationarity", ignore_errors) < TARGET


def test_a_b_at_notebook_05_quick_size():
    # 500 samples (halves of 250) in 128 dimensions, 7 generations; 10 seeds and 10 re-splits to stay fast
    seeds = range(10)
    assert rate("walk128", seeds, "active transient", resplits=10) >= TARGET
    assert rate("still128", seeds, "empirical stationarity", resplits=10) >= TARGET
    assert rate("still128", seeds, "empirical stationarity", ignore_errors, resplits=10) < TARGET


def test_no_artificial_jump_at_generation_1():
    # a still chain's cumulative curve starts at its floor: generation 1 is on average where generation 0 is
    cums = [curves("still", s)[1] for s in SEEDS]
    jumps = np.array([c.values[1] - c.values[0] for c in cums])
    assert abs(jumps.mean()) < 3 * jumps.std(ddof=1) / np.sqrt(len(jumps))
    assert all(c.values[0] == c.floor[0] and c.excess[0] == 0 for c in cums)
    # ... and the first generations are no more often read as movement than later ones (raw labels, before
    # the monotone fit: about 8% per generation, the z = 2 tests' false alarms), where the old curve's jump
    # from 0 to the floor made generation 0 "active" in every still chain
    def moving(read):
        return np.array([[lab != "empirical stationarity" for lab in read(*curves("still", s)).raw_labels]
                         for s in SEEDS])

    new, old = moving(M.detect_phases), moving(old_detector)
    assert new[:, :2].mean() <= 0.2 and new[:, :2].mean() <= new[:, 2:].mean() + 0.1
    assert old[:, 0].mean() > 0.5


# ---------------------------------------------------------------------------------------------- (c)


def test_c_synthetic_chain_boundaries_are_recovered():
    def recovered(read, seed):
        _, truth = M.synthetic_phase_chain(seed=seed)
        found = read(*curves("synthetic", seed)).boundaries
        return all(found[p] is not None and abs(found[p] - truth[p]) <= 2 for p in truth)

    hits = np.mean([recovered(lambda l, c: M.detect_phases(l, c), s) for s in SEEDS])
    assert hits >= TARGET, f"synthetic phase boundaries recovered within 2 generations: {hits:.0%}"
    assert np.mean([recovered(ignore_errors, s) for s in SEEDS]) < TARGET


# ---------------------------------------------------------------------------------------------- (d)


def frechet_reference(a, b):
    # independent of metrics: the textbook formula with scipy's general matrix square root
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


DIM, HALF = 20, 100
SHIFT = np.r_[np.full(4, 0.5), np.zeros(DIM - 4)]  # |shift|^2 = 1
SCALE = np.r_[np.full(DIM // 2, 0.8), np.ones(DIM - DIM // 2)]


def law_p(rng, m):
    return rng.standard_normal((m, DIM))


def law_q(rng, m, shift=1.0):
    return rng.standard_normal((m, DIM)) * SCALE + shift * SHIFT


@functools.lru_cache(maxsize=None)
def monte_carlo(shift=1.0, reps=1000):
    """E[FID] at n = HALF per set for P vs Q, P vs P and Q vs Q, from independent samples, and their SEs."""
    rng = np.random.default_rng(99)
    out = {}
    q = functools.partial(law_q, shift=shift)
    for name, (x, y) in {"pq": (law_p, q), "pp": (law_p, law_p), "qq": (q, q)}.items():
        v = np.array([frechet_reference(x(rng, HALF), y(rng, HALF)) for _ in range(reps)])
        out[name] = (v.mean(), v.std(ddof=1) / np.sqrt(reps))
    return out


def two_generation_curves(seeds, shift=1.0):
    # generation 0 from P, generation 1 from Q, 2 x HALF samples each
    out = []
    for s in seeds:
        rng = np.random.default_rng([s, 3])
        out.append(M.cumulative_drift([law_p(rng, 2 * HALF), law_q(rng, 2 * HALF, shift)], seed=s))
    return out


def coverage_rates(cums, mc):
    cover = {"value": [], "floor 0": [], "floor 1": [], "excess": []}
    for c in cums:
        f_lo, f_hi = c.floor_interval()
        e_lo, e_hi = c.excess_interval()
        cover["value"].append(c.low[1] <= mc["pq"][0] <= c.high[1])
        cover["floor 0"].append(f_lo[0] <= mc["pp"][0] <= f_hi[0])
        cover["floor 1"].append(f_lo[1] <= mc["qq"][0] <= f_hi[1])
        cover["excess"].append(e_lo[1] <= mc["pq"][0] - mc["qq"][0] <= e_hi[1])
    return {k: float(np.mean(v)) for k, v in cover.items()}


def test_d_floor_is_the_same_law_distance_at_that_n_and_intervals_cover():
    mc = monte_carlo()
    cums = two_generation_curves(range(300))
    assert all(c.n == HALF for c in cums)
    for g, key in ((0, "pp"), (1, "qq")):
        floors = np.array([c.floor[g] for c in cums])
        se = np.hypot(floors.std(ddof=1) / np.sqrt(len(floors)), mc[key][1])
        assert abs(floors.mean() - mc[key][0]) < 3 * se, (g, floors.mean(), mc[key])
    values = np.array([c.values[1] for c in cums])
    assert abs(values.mean() - mc["pq"][0]) < 3 * np.hypot(values.std(ddof=1) / np.sqrt(len(values)), mc["pq"][1])
    cover = coverage_rates(cums, mc)
    for key, share in cover.items():  # nominal 0.95; 300 seeds give +- 0.013
        assert 0.9 <= share <= 0.99, (key, share)


def test_d_intervals_without_the_first_order_term_undercover(monkeypatch):
    # the re-splits alone miss the sampling noise of the rows themselves, which dominates once the chain has
    # drifted well above its floor (here |shift|^2 = 4): this is what the first-order term is for
    seeds, mc = range(150), monte_carlo(shift=2.0)
    assert min(coverage_rates(two_generation_curves(seeds, shift=2.0), mc).values()) >= 0.9
    monkeypatch.setattr(M, "_fid_first_order_variance", lambda p, q, own_only=False: 0.0)
    broken = coverage_rates(two_generation_curves(seeds, shift=2.0), mc)
    assert broken["value"] < 0.9 and broken["excess"] < 0.9


# ---------------------------------------------------------------------------------------------- the figure


def test_drift_panel_draws_the_floor_and_the_intervals():
    import matplotlib.pyplot as plt

    local, cum = curves("walk", 0)
    fig, ax = plt.subplots()
    plots.drift_panel(ax, local, cum, M.detect_phases(local, cum), title="walk")
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), cum.floor)  # one floor, the curves' own
    assert len(ax.collections) >= 3  # the bands: local, cumulative and floor intervals
    assert "floor (n = 100)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


if __name__ == "__main__":  # the measured rates, over more seeds than the tests use (about 2 minutes)
    many = range(40)
    print("(a) random walk, last generation active:", rate("walk", many, "active transient"),
          "| old detector:", rate("walk", many, "active transient", old_detector))
    print("(b) still chain, last generation stationary:", rate("still", many, "empirical stationarity"),
          "| errors ignored:", rate("still", many, "empirical stationarity", ignore_errors),
          "| old detector:", rate("still", many, "empirical stationarity", old_detector))
    print("    still chain, stationary from generation 0:",
          np.mean([M.detect_phases(*curves("still", s)).labels[0] == "empirical stationarity" for s in many]))
    print("(a, b) 128-d, 10 re-splits: walk", rate("walk128", range(20), "active transient", resplits=10),
          "still", rate("still128", range(20), "empirical stationarity", resplits=10))
    truth = M.synthetic_phase_chain()[1]
    found = [M.detect_phases(*curves("synthetic", s)).boundaries for s in many]
    print("(c) synthetic boundaries within 2:",
          np.mean([all(f[p] is not None and abs(f[p] - truth[p]) <= 2 for p in truth) for f in found]))
    print("(d) coverage at 0.95, |shift|^2 = 1:", coverage_rates(two_generation_curves(range(600)), monte_carlo()))
    print("    |shift|^2 = 4:", coverage_rates(two_generation_curves(range(300), 2.0), monte_carlo(2.0)))
