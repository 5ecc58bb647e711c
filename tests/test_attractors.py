"""The attractor detector (resonance_utils.attractors) on maps whose attractors and basins are known by construction:
fixed points, cycles, basins per start set, the share of pairs in one basin, TV distances and the tolerance sweep,
each against an independent recomputation."""
import itertools
import json

import numpy as np
import pytest

from resonance_utils import attractors as A
from resonance_utils.attractors import (
    basin_assessment, cluster_basins, count_distinct, find_attractors, pairs_apart, tolerance_sweep,
)


def iterate(fn, x0, n_steps):
    """x_0, fn(x_0), ..., fn^n(x_0) as one (n_steps + 1, N, ...) array (numpy only: no torch import here)."""
    out = [np.asarray(x0)]
    for _ in range(n_steps):
        out.append(np.asarray(fn(out[-1])))
    return np.stack(out)


def sign_root(x):
    """Per coordinate x -> sign(x) |x|^0.5: two fixed points, all +1 and all -1 (for same-sign coordinates)."""
    return np.sign(x) * np.sqrt(np.abs(x))


def sign_starts(signs, rng, dim=4):
    return signs[:, None] * rng.uniform(0.05, 3, (len(signs), dim))


# ------------------------------------------------------------------------- brute-force references (numpy by hand)
def shares_by_hand(labels, ids):
    """Share of cross-start and within-start pairs of converged points that share a label: every pair visited."""
    cross = [0, 0]
    within = [0, 0]
    for i, j in itertools.combinations(range(len(labels)), 2):
        if labels[i] < 0 or labels[j] < 0:
            continue
        bucket = within if ids[i] == ids[j] else cross
        bucket[0] += labels[i] == labels[j]
        bucket[1] += 1
    return (cross[0] / cross[1] if cross[1] else np.nan), (within[0] / within[1] if within[1] else np.nan)


def tv_by_hand(labels, ids):
    """The largest TV distance between the start sets' basin distributions, from label lists."""
    sets = sorted(set(ids))
    basins = sorted(set(labels[labels >= 0]))
    dist = {}
    for s in sets:
        mine = labels[(ids == s) & (labels >= 0)]
        dist[s] = np.array([np.mean(mine == b) for b in basins])
    return max(0.5 * np.abs(dist[a] - dist[b]).sum() for a, b in itertools.combinations(sets, 2))


def groups_by_hand(points, tol):
    """Single-linkage groups of rows within RMS tol: union-find over every pair."""
    points = np.asarray(points, np.float64).reshape(len(points), -1)
    parent = list(range(len(points)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(points)), 2):
        if np.sqrt(np.mean((points[i] - points[j]) ** 2)) <= tol:
            parent[root(i)] = root(j)
    return len({root(i) for i in range(len(points))})


# ------------------------------------------------------------------------------------- attractors, analytic maps
def test_contraction_has_one_fixed_point_at_the_closed_form(rng):
    c = rng.normal(size=(3, 4))
    x0 = rng.normal(size=(10, 3, 4)) * 5
    traj = iterate(lambda x: 0.5 * x + c, x0, 60)
    assert traj.shape == (61, 10, 3, 4)
    rep = find_attractors(traj, tol=1e-9)
    assert rep.n_attractors == 1 and rep.fixed_points == 1 and rep.cycles == {} and rep.unconverged == 0
    assert (rep.periods == 1).all() and (rep.labels == 0).all()
    np.testing.assert_allclose(rep.representatives[0], 2 * c, atol=1e-12)  # x* = 0.5 x* + c
    # |x_{t+1} - x_t| halves every step: x_{t+1} - x_t = 0.5^t (x_1 - x_0)
    first = np.sqrt(((0.5 * x0 + c - x0) ** 2).reshape(10, -1).mean(1))
    np.testing.assert_allclose(rep.step_sizes[:20], 0.5 ** np.arange(20)[:, None] * first, rtol=1e-5)


def test_two_cycle_in_either_phase_is_one_attractor():
    a, b = np.full(5, 0.7), np.linspace(-1, 1, 5) + 0.05
    x0 = np.stack([a, -a, b, -b, a])  # a and -a are the same 2-cycle, entered in opposite phases
    for n_steps in (20, 21):  # the phase at the end must not matter
        rep = find_attractors(iterate(lambda x: -x, x0, n_steps), tol=1e-9)
        assert (rep.periods == 2).all()
        assert rep.n_attractors == 2 and rep.cycles == {2: 2} and rep.fixed_points == 0
        assert rep.labels[0] == rep.labels[1] == rep.labels[4] != rep.labels[2] == rep.labels[3]
        assert list(rep.basin_sizes) == [3, 2]


def test_two_fixed_points_split_by_the_sign_of_the_start(rng):
    signs = rng.choice([-1.0, 1.0], 40)
    x0 = signs[:, None, None] * rng.uniform(0.05, 3, (40, 4, 4))
    traj = iterate(sign_root, x0, 80)  # |x| shrinks (or grows) towards 1, the sign stays
    rep = find_attractors(traj, tol=1e-6)
    n_pos = int((signs > 0).sum())
    assert rep.n_attractors == 2 and rep.fixed_points == 2
    assert list(rep.basin_sizes) == sorted([n_pos, 40 - n_pos], reverse=True)
    for s in (-1, 1):
        lab = np.unique(rep.labels[signs == s])
        assert len(lab) == 1
        np.testing.assert_allclose(rep.representatives[lab[0]], np.full((4, 4), s), atol=1e-5)


def test_identity_map_makes_every_point_its_own_fixed_point(rng):
    x0 = rng.normal(size=(12, 8))
    x0[11] = x0[3]  # a repeated start is the same fixed point
    rep = find_attractors(iterate(lambda x: x, x0, 10), tol=1e-6)
    assert (rep.periods == 1).all() and (rep.step_sizes == 0).all()
    assert rep.n_attractors == 11 and rep.fixed_points == 11
    assert rep.labels[3] == rep.labels[11] == 0 and list(rep.basin_sizes) == [2] + [1] * 10


def test_slow_drift_is_not_converged():
    rep = find_attractors(iterate(lambda x: x + 0.01, np.zeros((5, 6)), 30), tol=1e-3)
    assert rep.unconverged == 5 and rep.n_attractors == 0 and (rep.labels == -1).all()
    assert rep.representatives.shape == (0, 6)
    np.testing.assert_allclose(rep.step_sizes, 0.01)
    out = rep.to_json()
    assert json.loads(json.dumps(out)) == out and out["unconverged"] == 5 and out["basin_sizes"] == []


def test_smallest_period_and_mixed_report():
    x0 = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 1.0]])
    traj = iterate(lambda x: np.roll(x, 1, axis=1), x0, 16)
    rep = find_attractors(traj, tol=1e-9)
    assert list(rep.periods) == [3, 1, 3]  # not 6: the smallest period
    assert rep.fixed_points == 1 and rep.cycles == {3: 2} and rep.n_attractors == 3
    out = rep.to_json()
    assert out["cycles"] == {"3": 2} and out["fixed_points"] == 1 and json.dumps(out)
    labels, _ = cluster_basins(traj, rep.periods, tol=1e-9)
    np.testing.assert_array_equal(labels, rep.labels)


def test_uint8_trajectories_are_measured_on_the_unit_scale():
    """Two images one level apart in one pixel of 64: RMS step (1/255)/8; a tolerance below it sees a 2-cycle."""
    x = np.zeros((2, 1, 8, 8), np.uint8)  # (T+1=2 states, N=1, 8, 8): alternate
    x[1, 0, 0, 0] = 1
    traj = np.concatenate([x] * 6)  # 12 states
    step = 1 / 255 / 8
    rep = find_attractors(traj, tol=0.9 * step)
    np.testing.assert_allclose(rep.step_sizes, step, rtol=1e-6)
    assert rep.periods[0] == 2
    assert find_attractors(traj, tol=1.1 * step).periods[0] == 1
    with pytest.raises(ValueError, match="too short"):
        find_attractors(traj[:5], max_period=8)


def test_pairs_apart_against_a_direct_computation():
    last = np.array([[0.0, 0.0], [0.0, 0.0], [0.6, 0.8], [0.3, 0.4]])
    traj = np.stack([last, last])
    out = pairs_apart(traj, np.array([0, 0, 1, 2]))
    # representatives: basin 0 -> (0,0), 1 -> (.6,.8), 2 -> (.3,.4); closest pair: (.3,.4) vs either, RMS
    expected = min(np.sqrt(np.mean((a - b) ** 2)) for a, b in [(last[0], last[3]), (last[2], last[3]),
                                                                 (last[0], last[2])])
    assert out["min_rms_between_basins"] == pytest.approx(expected)
    assert out["share_of_pairs_in_one_basin"] == pytest.approx(2 / 12)
    assert pairs_apart(traj, np.array([0, 0, 0, -1]))["min_rms_between_basins"] is None
    as_uint8 = np.round(traj * 255).astype(np.uint8)  # the same states on the uint8 grid: the 0-1 scale again
    assert pairs_apart(as_uint8, np.array([0, 0, 1, 2]))["min_rms_between_basins"] == pytest.approx(expected,
                                                                                                    abs=1e-3)


def test_cyclegan_re_exports_the_same_objects():
    from resonance_utils import cyclegan
    for name in ("AttractorReport", "find_attractors", "cluster_basins", "pairs_apart", "_flat", "_rms",
                 "_close_pairs"):
        assert getattr(cyclegan, name) is getattr(A, name), name


# ------------------------------------------------------------------------------------------------ count_distinct
def test_count_distinct_1d_against_a_brute_force_grouping(rng):
    for _ in range(30):
        v = rng.integers(0, 40, rng.integers(1, 12)) / 4  # quarters: exact in binary, so ties are exact
        tol = float(rng.choice([0.0, 0.25, 0.5, 1.0, 3.0]))
        assert count_distinct(v, tol=tol) == groups_by_hand(v, tol)
        # the rule claim.count_distinct used: sorted, a new value where the gap exceeds tol
        s = np.sort(v)
        assert count_distinct(v, tol=tol) == 1 + int(np.sum(np.diff(s) > tol))
        assert count_distinct(v[:, None], tol=tol) == count_distinct(v, tol=tol)  # (N, 1) is 1-D
    assert count_distinct([], tol=1.0) == 0
    assert count_distinct(3.0, tol=0.0) == 1
    assert count_distinct([434.1, 434.3, 868.0], tol=0.5) == 2
    assert count_distinct([0.0, 0.4, 0.8, 1.2], tol=0.5) == 1  # chained: 0 and 1.2 are one value through the rest


def test_count_distinct_nd_is_single_linkage_by_rms_or_euclidean(rng):
    centres = rng.normal(size=(4, 6)) * 10
    pts = np.concatenate([c + rng.normal(size=(5, 6)) * 0.01 for c in centres])
    assert count_distinct(pts, tol=0.1) == 4
    assert count_distinct(pts, tol=0.0) == 20
    assert count_distinct(pts.reshape(20, 2, 3), tol=0.1) == 4  # (N, ...) rows are flattened
    for _ in range(10):
        x = rng.uniform(0, 1, (15, 3))
        tol = float(rng.uniform(0.05, 0.4))
        assert count_distinct(x, tol=tol) == groups_by_hand(x, tol)
        # Euclidean tol t is RMS tol t / sqrt(dim)
        assert count_distinct(x, tol=tol, metric="euclidean") == groups_by_hand(x, tol / np.sqrt(3))
    dup = np.repeat(rng.normal(size=(3, 5)), 2, axis=0)
    assert count_distinct(dup, tol=0.0) == 3  # exact repeats at tol 0


def test_count_distinct_errors():
    with pytest.raises(ValueError, match="tol"):
        count_distinct([1.0], tol=-1)
    with pytest.raises(ValueError, match="tol"):
        count_distinct([1.0], tol=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        count_distinct([1.0, np.nan], tol=1)
    with pytest.raises(ValueError, match="metric"):
        count_distinct([[1.0, 2.0]], tol=1, metric="cosine")


# ---------------------------------------------------------------------------------------------- basin_assessment
def test_start_sets_in_different_basins_are_separate(rng):
    n = 30
    signs = np.r_[np.ones(n), -np.ones(n)]  # start set 0 all positive, start set 1 all negative
    ids = np.repeat([0, 1], n)
    ba = basin_assessment(iterate(sign_root, sign_starts(signs, rng), 80), ids, tol=1e-6)
    assert ba.verdict == "separate basins" and ba.n_attractors == 2
    assert ba.share_cross == 0 and ba.share_within == 1 and ba.tv == 1
    assert ba.tv_interval == (1.0, 1.0)
    np.testing.assert_array_equal(np.sort(ba.occupancy, axis=1), [[0, n], [0, n]])
    assert ba.occupancy[0].argmax() != ba.occupancy[1].argmax()
    assert ba.p_value < 0.01 and ba.tv_null < 0.3  # random splits of these points are far from TV 1
    assert json.loads(json.dumps(ba.to_json()))["verdict"] == "separate basins"


def test_start_sets_drawn_alike_share_basins(rng):
    n = 40
    signs = rng.choice([-1.0, 1.0], 2 * n)  # both start sets from one distribution over the two basins
    ids = np.repeat([3, 7], n)  # any integer ids
    traj = iterate(sign_root, sign_starts(signs, rng), 80)
    ba = basin_assessment(traj, ids, tol=1e-6)
    assert ba.verdict == "shared basins", ba.reason
    assert ba.start_sets == (3, 7) and list(ba.n_points) == [n, n] and list(ba.unconverged) == [0, 0]
    labels = ba.report.labels
    cross, within = shares_by_hand(labels, ids)
    assert ba.share_cross == pytest.approx(cross, abs=1e-12) and ba.share_within == pytest.approx(within, abs=1e-12)
    assert ba.tv == pytest.approx(tv_by_hand(labels, ids), abs=1e-12)
    assert ba.p_value >= 0.05
    # the occupancy is the label histogram of each start set
    for row, s in enumerate((3, 7)):
        np.testing.assert_array_equal(ba.occupancy[row], np.bincount(labels[ids == s], minlength=2))
    np.testing.assert_allclose(ba.occupancy_share.sum(1), 1)
    lo, hi = ba.share_cross_interval
    assert lo <= ba.share_cross <= hi and 0.3 < lo and hi < 0.7  # two basins near 50/50: about half the pairs
    assert ba.tv_interval[0] == 0.0  # the bias-corrected lower end reaches 0
    # the same assessment from an AttractorReport, and the same numbers for the same seed
    again = basin_assessment(ba.report, ids)
    assert again.verdict == ba.verdict and again.tv_interval == ba.tv_interval and again.p_value == ba.p_value


def test_one_start_set_in_both_basins_one_in_one_is_separate_by_tv(rng):
    n = 40
    signs = np.r_[np.ones(n), np.tile([1.0, -1.0], n // 2)]  # set 0: all +1; set 1: half and half
    ids = np.repeat([0, 1], n)
    ba = basin_assessment(iterate(sign_root, sign_starts(signs, rng), 80), ids, tol=1e-6)
    assert ba.verdict == "separate basins", ba.reason
    assert ba.tv == pytest.approx(0.5) and ba.tv_interval[0] > 0.1 and ba.p_value < 0.05
    cross, within = shares_by_hand(ba.report.labels, ids)
    assert ba.share_cross == pytest.approx(cross) == pytest.approx(0.5)
    # within: all of set 0's 780 pairs, and 2 x C(20, 2) = 380 of set 1's 780
    assert ba.share_within == pytest.approx(within) == pytest.approx((780 + 380) / 1560)
    # a margin larger than the TV's lower end leaves a real but small difference undecided
    wide = basin_assessment(ba.report, ids, tv_margin=0.6)
    assert wide.verdict == "inconclusive" and "tv_margin=0.6" in wide.reason


def test_global_contraction_is_one_basin(rng):
    traj = iterate(lambda x: 0.5 * x + 1.0, rng.normal(size=(24, 3)) * 10, 70)
    ba = basin_assessment(traj, np.repeat([0, 1, 2], 8), tol=1e-9)
    assert ba.verdict == "one basin" and ba.n_attractors == 1
    assert ba.share_cross == 1 and ba.share_within == 1 and ba.tv == 0
    np.testing.assert_array_equal(ba.occupancy, [[8], [8], [8]])


def test_rotation_cycles_entered_in_any_phase(rng):
    """x -> roll(x): [1, 2, 3] and [0, 0, 1] are two 3-cycles; a start set placed on one cycle in every phase
    is one basin for that set, whatever the phase."""
    cyc_a = np.stack([np.roll([1.0, 2.0, 3.0], k) for k in range(3)])
    cyc_b = np.stack([np.roll([0.0, 0.0, 1.0], k) for k in range(3)])
    x0 = np.concatenate([np.tile(cyc_a, (3, 1)), np.tile(cyc_b, (3, 1))])  # 9 on each cycle
    traj = iterate(lambda x: np.roll(x, 1, axis=1), x0, 20)
    sep = basin_assessment(traj, np.repeat([0, 1], 9), tol=1e-9, min_points=3)
    assert sep.verdict == "separate basins" and sep.report.cycles == {3: 2} and sep.share_cross == 0
    # now each start set holds both cycles, in all phases: the same occupancy in both, TV exactly 0
    mixed_ids = np.tile([0, 1], 9)
    shared = basin_assessment(traj, mixed_ids, tol=1e-9, min_points=3)
    assert shared.verdict == "shared basins" and shared.tv == pytest.approx(tv_by_hand(shared.report.labels,
                                                                                        mixed_ids))
    cross, within = shares_by_hand(shared.report.labels, mixed_ids)
    assert shared.share_cross == pytest.approx(cross) and shared.share_within == pytest.approx(within)


def test_every_point_its_own_fixed_point_is_separate_not_shared(rng):
    """The identity map: random re-splits are as disjoint as the real one (permutation p = 1), yet no two
    trajectories meet: share_cross == 0 decides."""
    traj = iterate(lambda x: x, rng.normal(size=(20, 3)), 10)
    ba = basin_assessment(traj, np.repeat([0, 1], 10), tol=1e-9)
    assert ba.n_attractors == 20 and ba.share_cross == 0 and ba.share_within == 0
    assert ba.p_value == 1.0 and ba.verdict == "separate basins"


def test_three_start_sets_take_the_largest_pairwise_tv(rng):
    n = 30
    signs = np.r_[np.ones(n), np.tile([1.0, -1.0], n // 2), -np.ones(n)]
    ids = np.repeat([0, 1, 2], n)
    ba = basin_assessment(iterate(sign_root, sign_starts(signs, rng), 80), ids, tol=1e-6, n_boot=500, n_perm=500)
    assert ba.tv == pytest.approx(1.0) == pytest.approx(tv_by_hand(ba.report.labels, ids))
    np.testing.assert_allclose(ba.tv_pairs, [[0, 0.5, 1], [0.5, 0, 0.5], [1, 0.5, 0]], atol=1e-12)
    cross, within = shares_by_hand(ba.report.labels, ids)
    assert ba.share_cross == pytest.approx(cross) and ba.share_within == pytest.approx(within)
    assert ba.verdict == "separate basins"


def test_unconverged_or_too_few_points_are_inconclusive(rng):
    x0 = rng.normal(size=(20, 3))
    x0[:10] *= 0  # start set 0 sits at the fixed point of x -> x + 0.01 * x (0), start set 1 drifts away
    traj = iterate(lambda x: 1.01 * x, x0, 30)
    ba = basin_assessment(traj, np.repeat([0, 1], 10), tol=1e-3)
    assert ba.verdict == "inconclusive" and "start set 1" in ba.reason and "no attractor" in ba.reason
    assert list(ba.unconverged) == [0, 10]
    assert np.isnan(ba.share_cross) and np.isnan(ba.tv)
    # raising max_unconverged to 1 lets the check pass; then start set 1 has no converged point at all
    loose = basin_assessment(traj, np.repeat([0, 1], 10), tol=1e-3, max_unconverged=1.0)
    assert loose.verdict == "inconclusive" and "min_points" in loose.reason
    json.dumps(loose.to_json())  # nan becomes None


def test_basin_assessment_errors(rng):
    traj = iterate(lambda x: 0.5 * x, rng.normal(size=(6, 2)), 20)
    with pytest.raises(ValueError, match="needs tol"):
        basin_assessment(traj, np.repeat([0, 1], 3))
    with pytest.raises(ValueError, match="start_ids"):
        basin_assessment(traj, np.zeros(5, int), tol=1e-3)
    with pytest.raises(ValueError, match="start_ids"):
        basin_assessment(traj, np.zeros(6), tol=1e-3)  # floats are not ids
    with pytest.raises(ValueError, match="at least two"):
        basin_assessment(traj, np.zeros(6, int), tol=1e-3)
    rep = find_attractors(traj, tol=1e-3)
    with pytest.raises(ValueError, match="differs from the report"):
        basin_assessment(rep, np.repeat([0, 1], 3), tol=1e-2)
    for kw, name in (({"level": 1.0}, "level"), ({"tv_margin": 1.0}, "tv_margin"),
                     ({"max_unconverged": 2.0}, "max_unconverged"), ({"n_boot": 0}, "n_boot")):
        with pytest.raises(ValueError, match=name):
            basin_assessment(rep, np.repeat([0, 1], 3), **kw)


# ------------------------------------------------------------------------------------------------ tolerance sweep
def test_tolerance_sweep_on_fixed_images_grey_levels_apart():
    """Four constant uint8 images 0, 1, 3 and 10 levels above 100, each a fixed point: their RMS distances are
    the level differences / 255, so the count at each tolerance is known."""
    x0 = np.stack([np.full((4, 4), 100 + d, np.uint8) for d in (0, 1, 3, 10)])
    traj = np.repeat(x0[None], 10, axis=0)
    sweep = tolerance_sweep(traj)  # the default grid: 0, 1/4, 1/2, 1, 2, 4, 8 grey levels
    np.testing.assert_allclose(sweep.tolerances * 255, [0, 0.25, 0.5, 1, 2, 4, 8])
    assert list(sweep.n_attractors) == [4, 4, 4, 3, 2, 2, 1]
    assert list(sweep.unconverged) == [0] * 7 and list(sweep.fixed_points) == list(sweep.n_attractors)
    np.testing.assert_allclose(sweep.largest_basin_share, [0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 1.0])
    # the same counts as count_distinct on the levels (1-D), and as the brute-force grouping
    for t, k in zip(sweep.tolerances, sweep.n_attractors):
        assert k == count_distinct(np.array([0, 1, 3, 10]) / 255, tol=t * (1 + 1e-9))
    rows = sweep.rows()
    assert rows[3]["tol_grey_levels"] == pytest.approx(1.0) and rows[3]["n_attractors"] == 3
    assert json.loads(json.dumps(sweep.to_json()))["rows"][-1]["n_attractors"] == 1


def test_tolerance_sweep_is_monotone_where_it_must_be(rng):
    """x -> x / 2 + noise-free contraction: the last step size of a point decides at which tol it converges, so
    the unconverged count is known at every tol and can only fall; with every point converged at one period the
    basins only merge: the count falls and the largest basin grows."""
    x0 = rng.normal(size=(30, 5)) * rng.uniform(0.1, 10, (30, 1))
    traj = iterate(lambda x: 0.5 * x, x0, 12)
    tols = np.geomspace(1e-5, 1e-1, 9)
    sweep = tolerance_sweep(traj, tols[::-1], max_period=1, window=1)  # given in any order: sorted
    np.testing.assert_allclose(sweep.tolerances, tols)
    last_step = np.sqrt(np.mean((traj[-1] - traj[-2]) ** 2, axis=1))  # period 1, window 1: this alone decides
    np.testing.assert_array_equal(sweep.unconverged, [(last_step > t).sum() for t in tols])
    assert (np.diff(sweep.unconverged) <= 0).all()
    # identity map on points along a line, 0.1 .. 0.4 apart: merging one gap after the other
    line = np.array([0.0, 0.1, 0.3, 0.6, 1.0])[:, None] * np.ones((1, 4))
    s2 = tolerance_sweep(iterate(lambda x: x, line, 3), [0.05, 0.15, 0.25, 0.35, 0.45], max_period=1)
    assert list(s2.n_attractors) == [5, 4, 3, 2, 1] and (np.diff(s2.largest_basin_share) > 0).all()
    with pytest.raises(ValueError, match="tolerances"):
        tolerance_sweep(traj, [-1.0])
    with pytest.raises(ValueError, match="tolerances"):
        tolerance_sweep(traj, [])


# ------------------------------------------------------------------------------------ read-outs for figures and tables
def by_hand_order(labels):
    """Basins by size, largest first, ties by the smaller label: a plain Python sort of the counts."""
    counts = {}
    for b in labels:
        if b >= 0:
            counts[int(b)] = counts.get(int(b), 0) + 1
    return sorted(counts, key=lambda b: (-counts[b], b))


def test_basin_order_and_exemplar_starts_against_a_plain_sort(rng):
    for _ in range(20):
        labels = rng.integers(-1, 6, size=int(rng.integers(1, 30)))
        order = by_hand_order(labels)
        assert A.basin_order(labels) == order
        for n in (0, 1, 3, 8, 40):
            picked = A.exemplar_starts(labels, n)
            firsts = [int(np.flatnonzero(labels == b)[0]) for b in order[:n]]
            rest = [i for i in range(len(labels)) if i not in firsts]
            assert picked == (firsts + rest)[:max(n, len(firsts))]
            assert len(picked) == min(max(n, 0), len(labels)) and len(set(picked)) == len(picked)
    assert A.basin_order(np.array([-1, -1])) == [] and A.exemplar_starts(np.array([-1, -1]), 1) == [0]
    # find_attractors numbers its basins by size: their reading order is 0, 1, 2, ...
    x0 = rng.normal(size=(25, 1)) * 3
    rep = find_attractors(iterate(lambda x: np.round(x), x0, 10), tol=0)
    assert A.basin_order(rep.labels) == list(range(rep.n_attractors))


def test_as_uint8_rounds_the_unit_scale_and_keeps_uint8():
    u = np.array([[0, 7, 255]], dtype=np.uint8)
    assert A.as_uint8(u) is u
    f = np.array([0.0, 0.5 / 255, 1.49 / 255, 0.5, 1.0], dtype=np.float32)
    assert A.as_uint8(f).tolist() == [0, 0, 1, 128, 255] and A.as_uint8(f).dtype == np.uint8


def test_trajectory_plane_is_the_end_states_principal_plane(rng):
    """Against an independent recomputation: the top two eigenvectors of the end states' scatter about the mean of
    all states (eigh, not an SVD); equal up to the sign of each axis."""
    traj = rng.integers(0, 256, size=(5, 12, 3, 4)).astype(np.uint8)
    xy = A.trajectory_plane(traj)
    assert xy.shape == (5, 12, 2)
    flat = traj.reshape(5, 12, -1) / 255.0
    mean = flat.reshape(-1, 12).mean(0)
    w, v = np.linalg.eigh((flat[-1] - mean).T @ (flat[-1] - mean))
    axes = v[:, np.argsort(w)[::-1][:2]]
    ref = (flat - mean) @ axes
    signs = np.sign((xy * ref).sum((0, 1)))
    np.testing.assert_allclose(xy * signs, ref, atol=1e-9)
    # a float trajectory on the 0-1 scale is read as it is: the same plane as its uint8 levels / 255
    np.testing.assert_allclose(np.abs(A.trajectory_plane(traj / 255.0)), np.abs(xy), atol=1e-9)


def test_class_by_basin_against_a_count():
    labels = np.array([0, 0, 1, -1, 0, 2, 1, 1, 0, 3])
    classes = np.array([2, 2, 2, 2, 5, 5, 5, 5, 5, 5])
    t = A.class_by_basin(labels, classes, n_basins=3, class_names={2: "two", 5: "five"})
    assert list(t.columns) == ["basin 0", "basin 1", "basin 2"]  # basin 3 is the fourth largest: left out
    assert list(t.index) == ["start class two", "start class five"]
    for k, row in zip((2, 5), t.values):
        mine = labels[classes == k]
        expected = [sum(1 for b in mine if b == basin) / len(mine) for basin in (0, 1, 2)]
        assert row.tolist() == pytest.approx(expected, abs=0)
    assert list(A.class_by_basin(labels, classes).index) == ["start class 2", "start class 5"]
    empty = A.class_by_basin(np.full(4, -1), np.array([0, 0, 1, 1]))
    assert empty.shape == (2, 0) and empty.round(4).to_dict() == {}
    with pytest.raises(ValueError, match="same shape"):
        A.class_by_basin(labels, classes[:-1])


def test_reports_table_rows(rng):
    x0 = np.r_[np.full(3, -2.0), np.full(2, 5.0), [0.3]][:, None]
    fixed = find_attractors(iterate(lambda x: np.round(x), x0, 10), tol=0)  # three fixed points: 3, 2 and 1 starts
    flip = find_attractors(iterate(lambda x: -x, x0[:2] * 0 + 1, 8), tol=0, max_period=2)  # a 2-cycle
    t = A.reports_table({True: fixed, False: flip}, n_basins=2)
    assert list(t.columns) == ["quantize", "attractors", "fixed points", "cycles (period: count)", "unconverged",
                               "largest basins"]
    assert t["quantize"].tolist() == [True, False] and t["attractors"].tolist() == [3, 1]
    assert t["fixed points"].tolist() == [3, 0] and t["cycles (period: count)"].tolist() == ["{}", "{2: 1}"]
    assert t["unconverged"].tolist() == [0, 0] and t["largest basins"].tolist() == ["[3, 2]", "[2]"]
    assert list(A.reports_table({"x": fixed}, key="setting").columns)[0] == "setting"
