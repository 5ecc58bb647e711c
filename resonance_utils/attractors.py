"""Attractors of a deterministic feedback map, and whether trajectories from different starts reach the same one.

A deterministic map x -> T(x) (the CycleGAN cycle x -> F(G(x)); the noiseless Lucier loop read through its end
states) drives a chain that is not ergodic in the Markov sense: every trajectory runs into an attractor, a
fixed point or a cycle. Ergodicity then becomes a question about trajectories: do trajectories from different
starts reach the same attractor? This module answers it in three steps, each usable on its own:

1. `find_attractors` reads the attractors off a trajectory (T+1, N, ...): per point its period (the smallest p
   with RMS(x_t - x_{t-p}) <= tol over the last `window` states) and its basin (points whose final cycles come
   within tol of each other share an attractor; `cluster_basins`). `pairs_apart` says how far apart the basins
   end; `count_distinct` is the same single-linkage grouping for plain values (the frequencies several Lucier
   starts end on, or points in N dimensions).
2. `basin_assessment` compares start sets: which basins each start set fills (occupancy), the share of point
   pairs from different start sets that end in one basin against the same share within a start set, the
   total-variation distance between the start sets' occupancy distributions (bootstrap interval, permutation
   test), and a verdict: "one basin", "shared basins", "separate basins" or "inconclusive".
3. `tolerance_sweep`: how the attractor count depends on tol. With a tolerance below one grey level the count is
   roughly the number of distinct final images; the sweep shows where it stops depending on the choice.
4. Read-outs for figures and tables: `basin_order`, `exemplar_starts`, `class_by_basin` (the share of each start
   class in each basin), `reports_table`, `trajectory_plane` (trajectories on the end states' principal plane)
   and `as_uint8` (states as grey levels for pictures).

Every criterion and default threshold of 2 and 3 is OUR RECONSTRUCTION (the paper states that a deterministic
map settles into separate basins, not how to measure it); each is a keyword argument.

Scale: uint8 trajectories are measured on [0, 1] (one grey level = 1/255), float ones as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["AttractorReport", "find_attractors", "cluster_basins", "pairs_apart", "count_distinct",
           "BasinAssessment", "basin_assessment", "ToleranceSweep", "tolerance_sweep", "DEFAULT_TOLERANCES",
           "GREY_LEVEL", "basin_order", "exemplar_starts", "as_uint8", "trajectory_plane", "class_by_basin",
           "reports_table"]

GREY_LEVEL = 1.0 / 255.0  # one uint8 level on the 0-1 scale


# ------------------------------------------------------------------------------------------------- attractors
@dataclass
class AttractorReport:
    """Attractors of a trajectory: per point its period (0 = not converged) and basin label (-1 = none)."""

    periods: np.ndarray  # (N,) int
    converged: np.ndarray  # (N,) bool
    step_sizes: np.ndarray  # (T, N) RMS of x_{t+1} - x_t (uint8 on the [0, 1] scale)
    labels: np.ndarray  # (N,) basin label, 0 = the largest basin; -1 for unconverged points
    representatives: np.ndarray  # (n_attractors, ...) the final state of one point of each basin
    tol: float
    max_period: int
    window: int
    attractor_periods: np.ndarray = field(default=None)  # (n_attractors,) the smallest period seen in each basin

    def __post_init__(self):
        if self.attractor_periods is None:
            self.attractor_periods = np.array([self.periods[self.labels == k].min() for k in
                                               range(self.n_attractors)], dtype=np.int64)

    @property
    def n_attractors(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size and self.labels.max() >= 0 else 0

    @property
    def basin_sizes(self) -> np.ndarray:
        """Points per attractor, largest first (label k has the k-th largest basin)."""
        sizes = np.bincount(self.labels[self.labels >= 0], minlength=self.n_attractors)
        return np.sort(sizes)[::-1]

    @property
    def fixed_points(self) -> int:
        return int((self.attractor_periods == 1).sum())

    @property
    def cycles(self) -> dict[int, int]:
        """{period: number of attractors} for periods >= 2 (fixed points are counted in fixed_points)."""
        p, n = np.unique(self.attractor_periods[self.attractor_periods >= 2], return_counts=True)
        return {int(a): int(b) for a, b in zip(p, n)}

    @property
    def unconverged(self) -> int:
        return int((~self.converged).sum())

    def to_json(self) -> dict:
        final = self.step_sizes[-1] if len(self.step_sizes) else np.zeros(0)
        return {"n_points": int(len(self.periods)), "n_attractors": self.n_attractors,
                "basin_sizes": [int(s) for s in self.basin_sizes], "fixed_points": self.fixed_points,
                "cycles": {str(k): v for k, v in self.cycles.items()}, "unconverged": self.unconverged,
                "tol": float(self.tol), "max_period": int(self.max_period), "window": int(self.window),
                "n_steps": int(len(self.step_sizes)),
                "final_step_size_median": float(np.median(final)) if final.size else 0.0}


def _flat(trajectory) -> tuple[np.ndarray, float]:
    """(T+1, N, D) view and the scale that maps its values onto the RMS scale (1/255 for uint8)."""
    x = np.asarray(trajectory)
    if x.ndim < 2 or len(x) < 1:
        raise ValueError(f"a trajectory is (T+1, N, ...), got shape {x.shape}")
    if x.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        scale = 1.0
    else:
        raise TypeError(f"a trajectory must be uint8 or float, got {x.dtype}")
    return x.reshape(x.shape[0], x.shape[1], -1), scale


def _rms(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Row-wise RMS of a - b; uint8 differences in a signed type (no wrap-around), floats in their precision."""
    dt = np.float32 if a.dtype == np.uint8 or a.dtype.itemsize <= 4 else np.float64
    d = np.subtract(a, b, dtype=dt)  # casts before subtracting, so no copies and no uint8 wrap-around
    return np.sqrt(np.einsum("ij,ij->i", d, d) / max(d.shape[1], 1)) * scale


def find_attractors(trajectory, *, tol: float = 1e-3, max_period: int = 8, window: int | None = None
                    ) -> AttractorReport:
    """Periods, convergence, step sizes and basins of each point of a trajectory (T+1, N, ...).

    A point has period p (the smallest in 1..max_period) when RMS(x_t - x_{t-p}) <= tol for the last `window`
    states t = T, T-1, ..., T-window+1 (default window = max_period, so a cycle must repeat, not just come
    close once); periods that the trajectory is too short to test that way are not tried. uint8 trajectories
    are measured on [0, 1], float ones as they are. tol=0 asks for exact repeats.
    """
    x, scale = _flat(trajectory)
    T = len(x) - 1
    max_period = int(max_period)
    window = max_period if window is None else int(window)
    if max_period < 1 or window < 1 or tol < 0:
        raise ValueError(f"max_period and window must be >= 1 and tol >= 0, got {max_period}, {window}, {tol}")
    if T < window:
        raise ValueError(f"the trajectory is too short: it has {T} steps, and testing even period 1 over "
                         f"window={window} states needs at least {window} (iterate longer or pass a smaller window)")
    n = x.shape[1]
    step_sizes = np.stack([_rms(x[t + 1], x[t], scale) for t in range(T)]) if T else np.zeros((0, n))
    periods = np.zeros(n, dtype=np.int64)
    for p in range(1, max_period + 1):
        if T < window - 1 + p:
            break
        cand = np.flatnonzero(periods == 0)
        for k in range(window):  # most points fail at k = 0: test the rest only as long as they pass
            if not cand.size:
                break
            if p == 1:  # already computed
                ok = step_sizes[T - k - 1, cand] <= tol
            else:
                ok = _rms(x[T - k, cand], x[T - k - p, cand], scale) <= tol
            cand = cand[ok]
        periods[cand] = p
    labels, reps = cluster_basins(trajectory, periods, tol=tol)
    return AttractorReport(periods=periods, converged=periods > 0, step_sizes=step_sizes.astype(np.float32),
                           labels=labels, representatives=reps, tol=float(tol), max_period=max_period,
                           window=window)


def cluster_basins(trajectory, periods, *, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Basins: converged points whose final cycles (their last p states) come within tol (RMS) of each other
    share an attractor (connected components), so a cycle reached in different phases is one attractor.

    Returns labels (N,) numbered by basin size, largest first (ties: the earlier first point), -1 for points
    with period 0, and representatives (n_attractors, ...): the final state of each basin's first point.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    x, scale = _flat(trajectory)
    traj = np.asarray(trajectory)
    T, n = len(x) - 1, x.shape[1]
    periods = np.asarray(periods, dtype=np.int64)
    if periods.shape != (n,):
        raise ValueError(f"periods must have shape ({n},) for a trajectory of {n} points, got {periods.shape}")
    if periods.max(initial=0) > T + 1 or periods.min(initial=0) < 0:
        raise ValueError(f"periods must lie in [0, {T + 1}] for a trajectory of {T} steps")
    labels = np.full(n, -1, dtype=np.int64)
    points = np.flatnonzero(periods > 0)
    if not points.size:
        return labels, traj[-1][:0].copy()

    # every state of every final cycle: owner point and time index
    owner = np.repeat(points, periods[points])
    lag = np.concatenate([np.arange(p) for p in periods[points]])
    states = x[T - lag, owner]  # (M, D)

    # identical states (common under uint8 rounding) collapse to one node before any distance is computed
    index: dict[bytes, int] = {}
    node = np.fromiter((index.setdefault(s.tobytes(), len(index)) for s in states), dtype=np.int64,
                       count=len(states))
    unique = states[np.unique(node, return_index=True)[1]]

    edges = [_close_pairs(unique, tol, scale)]
    # the states of one point's cycle belong together
    same_owner = np.flatnonzero(owner[1:] == owner[:-1])
    edges.append(np.stack([node[same_owner], node[same_owner + 1]], axis=1))
    e = np.concatenate(edges)
    k = len(unique)
    graph = coo_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])), shape=(k, k))
    _, comp = connected_components(graph, directed=False)
    point_comp = np.full(n, -1, dtype=np.int64)
    point_comp[owner] = comp[node]

    # number the basins by size, largest first, ties by their first point
    found = point_comp[points]
    ids, first_point, sizes = np.unique(found, return_index=True, return_counts=True)
    order = np.lexsort((first_point, -sizes))
    relabel = np.empty(ids.max() + 1, dtype=np.int64)
    relabel[ids[order]] = np.arange(len(ids))
    labels[points] = relabel[found]
    reps = traj[-1][points[first_point[order]]].copy()
    return labels, reps


def _close_pairs(u: np.ndarray, tol: float, scale: float, block: int = 512, cols: int = 4096) -> np.ndarray:
    """Pairs (i, j), i < j, of rows with RMS(u_i - u_j) * scale <= tol, without the full M x M matrix.

    Rows are sorted along a random direction: |<a - b, v>| <= |a - b|, so only rows whose projections lie within
    the L2 radius of each other can be close (separate attractors prune each other). Squared distances come from
    float64 matrix products of the raw values (uint8 levels are integers, so these are exact there); the rare
    pair within float64 rounding of the threshold is decided by the same RMS that find_attractors uses.
    """
    m, d = u.shape
    if m < 2:
        return np.zeros((0, 2), dtype=np.int64)
    radius2 = (tol / scale) ** 2 * d  # the L2 radius, squared, in the raw units (uint8 levels or floats)
    radius = math.sqrt(radius2)
    v = np.random.default_rng(0).standard_normal(d)
    v /= np.linalg.norm(v)
    f64 = lambda a: a.astype(np.float64, copy=False)
    proj, sq = np.empty(m), np.empty(m)
    for i in range(0, m, cols):
        c = f64(u[i:i + cols])
        proj[i:i + cols], sq[i:i + cols] = c @ v, np.einsum("ij,ij->i", c, c)
    order = np.argsort(proj, kind="stable")
    proj, sq, us = proj[order], sq[order], u[order]
    out = []
    for i0 in range(0, m, block):
        i1 = min(i0 + block, m)
        hi = int(np.searchsorted(proj, proj[i1 - 1] + radius * (1 + 1e-9) + 1e-9 * (1 + abs(proj[i1 - 1])),
                                 side="right"))
        rows = f64(us[i0:i1])
        for j0 in range(i0, hi, cols):
            j1 = min(j0 + cols, hi)
            d2 = sq[i0:i1, None] + sq[None, j0:j1] - 2.0 * (rows @ f64(us[j0:j1]).T)
            margin = 1e-15 * (d + 16) * (sq[i0:i1, None] + sq[None, j0:j1])  # float64 rounding, worst case
            upper = np.arange(j0, j1)[None, :] > np.arange(i0, i1)[:, None]
            a, b = np.nonzero(upper & (d2 <= radius2 - margin))  # certainly within the radius
            out.append(np.stack([order[a + i0], order[b + j0]], axis=1))
            a, b = np.nonzero(upper & (np.abs(d2 - radius2) < margin))  # too close to call: compute directly
            if a.size:
                ia, ib = order[a + i0], order[b + j0]
                ok = _rms(u[ia], u[ib], scale) <= tol
                out.append(np.stack([ia[ok], ib[ok]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def pairs_apart(trajectory, labels) -> dict:
    """How far apart different basins end, and how often two starts share one.

    labels: (N,) basin labels (find_attractors' report.labels; -1 = unconverged, left out). Returns the smallest
    RMS distance (uint8 on the 0-1 scale) between the last states of two basins' representatives (each basin's
    first point; within a basin the last states agree to about tol), None with fewer than two basins, and the
    share of pairs of distinct converged starts that share a basin (basin_assessment splits that share
    into cross-start and within-start pairs)."""
    last, scale = _flat(np.asarray(trajectory)[-1:])
    last = last[0].astype(np.float64) * scale
    labels = np.asarray(labels)
    ok = labels >= 0
    same = (labels[ok, None] == labels[None, ok])
    n = int(ok.sum())
    share_same = float((same.sum() - n) / max(n * (n - 1), 1))
    reps = [last[np.flatnonzero(labels == b)[0]] for b in np.unique(labels[ok])]
    if len(reps) < 2:
        return {"min_rms_between_basins": None, "share_of_pairs_in_one_basin": share_same}
    r = np.stack(reps)
    d = np.sqrt(np.maximum(((r[:, None] - r[None]) ** 2).mean(-1), 0))
    return {"min_rms_between_basins": float(d[~np.eye(len(r), dtype=bool)].min()),
            "share_of_pairs_in_one_basin": share_same}


def count_distinct(values, *, tol: float, metric: str = "rms") -> int:
    """How many distinct values there are, when values within `tol` of each other count as one (chained, single
    linkage: a and c are one value when a ~ b and b ~ c, as basins are joined in cluster_basins).

    values: (N,) numbers (e.g. the dominant frequencies several Lucier starts end on), or (N, ...) points, one
    per row (flattened). 1-D (and (N, 1)): sorted, a new value starts wherever the gap to the previous one
    exceeds tol, which is the rule claim.count_distinct used (that one flattened any input to 1-D). N-D:
    connected components of the graph "distance <= tol", with the distance the RMS over coordinates
    (metric="rms", how find_attractors measures states; |a - b| in 1-D) or the Euclidean norm ("euclidean").
    Values are taken as given, without the uint8 -> [0, 1] rescaling of trajectories. An empty input has 0.
    """
    if metric not in ("rms", "euclidean"):
        raise ValueError(f"metric must be 'rms' or 'euclidean', got {metric!r}")
    if not (isinstance(tol, (int, float, np.integer, np.floating)) and tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"count_distinct needs tol >= 0 (finite), got tol={tol!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return 0
    if not np.all(np.isfinite(v)):
        raise ValueError("count_distinct needs finite values (got NaN or inf)")
    rows = v.reshape(1, 1) if v.ndim == 0 else v.reshape(len(v), -1) if v.ndim >= 2 else v[:, None]
    if rows.shape[1] == 1:
        s = np.sort(rows[:, 0])
        return int(1 + np.sum(np.diff(s) > tol))
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rms_tol = tol if metric == "rms" else tol / math.sqrt(rows.shape[1])
    e = _close_pairs(rows, rms_tol, 1.0)
    m = len(rows)
    graph = coo_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])), shape=(m, m))
    return int(connected_components(graph, directed=False)[0])


# --------------------------------------------------------------------------------- basins per start set
BASIN_VERDICTS = ("one basin", "shared basins", "separate basins", "inconclusive")


@dataclass(frozen=True)
class BasinAssessment:
    """Where the trajectories of several start sets end: the result of basin_assessment (our reconstruction).

    Pair shares are over CONVERGED points (a point that reached no attractor ends in no basin); pairs are
    unordered pairs of distinct points. Intervals are at `settings["level"]`.
    """

    verdict: str  # one of BASIN_VERDICTS
    reason: str  # the numbers behind the verdict, in words
    start_sets: tuple  # the start-set ids, in the order of the rows below
    n_points: np.ndarray  # (S,) points per start set
    occupancy: np.ndarray  # (S, K) converged points of each start set per basin label (0 = the largest basin)
    unconverged: np.ndarray  # (S,) points per start set that reached no attractor
    n_attractors: int  # K
    share_cross: float  # share of pairs from DIFFERENT start sets that end in one basin (nan: no such pair)
    share_cross_interval: tuple  # bootstrap percentile interval over points (resampled within each start set)
    share_within: float  # the same share for pairs from the SAME start set: the reference
    share_within_interval: tuple
    tv: float  # the largest total-variation distance between two start sets' occupancy distributions
    tv_interval: tuple  # (2 tv - q_hi, q_hi) of the bootstrap tv, clipped to [0, 1]: the cautious end of each
    tv_pairs: np.ndarray  # (S, S) every pair's TV distance
    tv_null: float  # mean tv of random re-splits of the same converged points into sets of the same sizes
    p_value: float  # permutation p-value of tv under "the basin does not depend on the start set"
    report: AttractorReport = field(repr=False)  # the attractors the assessment was read from
    settings: dict = field(default_factory=dict)  # tol, max_period, window, level, thresholds, n_boot, n_perm, seed

    @property
    def occupancy_share(self) -> np.ndarray:
        """(S, K) each start set's occupancy as a distribution over basins (its converged points sum to 1)."""
        n = self.occupancy.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, self.occupancy / np.maximum(n, 1), np.nan)

    def to_json(self) -> dict:
        f = lambda x: None if x is None or not np.isfinite(x) else float(x)  # noqa: E731
        return {"verdict": self.verdict, "reason": self.reason,
                "start_sets": [s.item() if hasattr(s, "item") else s for s in self.start_sets],
                "n_points": self.n_points.tolist(), "unconverged": self.unconverged.tolist(),
                "n_attractors": int(self.n_attractors), "occupancy": self.occupancy.tolist(),
                "share_cross": f(self.share_cross), "share_cross_interval": [f(x) for x in self.share_cross_interval],
                "share_within": f(self.share_within),
                "share_within_interval": [f(x) for x in self.share_within_interval],
                "tv": f(self.tv), "tv_interval": [f(x) for x in self.tv_interval], "tv_null": f(self.tv_null),
                "p_value": f(self.p_value), "settings": dict(self.settings)}


def _pair_shares(occ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares of cross-start and within-start pairs in one basin, from occupancy counts (..., S, K)."""
    occ = occ.astype(np.float64)
    n = occ.sum(-1)
    total = n.sum(-1)
    cross_same = ((occ.sum(-2) ** 2).sum(-1) - (occ ** 2).sum((-2, -1))) / 2
    cross_all = (total ** 2 - (n ** 2).sum(-1)) / 2
    within_same = (occ * (occ - 1)).sum((-2, -1)) / 2
    within_all = (n * (n - 1)).sum(-1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(cross_all > 0, cross_same / np.maximum(cross_all, 1), np.nan),
                np.where(within_all > 0, within_same / np.maximum(within_all, 1), np.nan))


def _tv_pairs(occ: np.ndarray) -> np.ndarray:
    """(..., S, S) total-variation distances between the rows' distributions (nan for an empty row)."""
    occ = occ.astype(np.float64)
    n = occ.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, occ / np.maximum(n, 1), np.nan)
    return 0.5 * np.abs(p[..., :, None, :] - p[..., None, :, :]).sum(-1)


def _tv_max(occ: np.ndarray) -> np.ndarray:
    tv = _tv_pairs(occ)
    s = tv.shape[-1]
    iu = np.triu_indices(s, 1)
    return tv[..., iu[0], iu[1]].max(-1)


def basin_assessment(trajectory, start_ids, *, tol: float | None = None, max_period: int = 8,
                     window: int | None = None, level: float = 0.95, tv_margin: float = 0.1,
                     max_unconverged: float = 0.2, min_points: int = 5, n_boot: int = 2000, n_perm: int = 2000,
                     seed: int = 0) -> BasinAssessment:
    """Do trajectories from different start sets reach the same attractors? (Ergodicity of a deterministic map,
    judged per trajectory; our reconstruction.)

    trajectory: (T+1, N, ...) states of N points iterated together (uint8 on [0, 1], or float), or an
    AttractorReport of such a trajectory already made by find_attractors (then tol, max_period and window are
    its own; a different tol is an error). start_ids: (N,) which start set each point came from (any integers,
    at least two different ones). tol, max_period, window: find_attractors' (tol has no default: it is the
    question's scale; see tolerance_sweep).

    Measured, from the occupancy counts C[s, k] (converged points of start set s in basin k):
      * share_cross: of all pairs of converged points from different start sets, the share in one basin;
        share_within: the same within start sets, its reference. A map that forgets its start has
        share_cross == share_within; separate start sets in separate basins have share_cross near 0.
      * tv: the largest total-variation distance 1/2 sum_k |p_s(k) - p_t(k)| between two start sets' basin
        distributions p_s = C[s] / sum C[s].
      * intervals: a stratified bootstrap over points (each start set's converged points resampled, n_boot
        times): percentile intervals for the shares; for tv [2 tv - q_hi, q_hi], clipped to [0, 1]: sample TV is
        biased upward, so the lower end is the basic interval's (bias corrected to first order) and the upper
        the percentile interval's (the basic one's upper end 2 tv - q_lo collapses to 0 when tv = 0).
      * p_value: permutation test of "the basin does not depend on the start set": the converged points' basin
        labels shuffled across start sets n_perm times; p = (1 + #{tv_perm >= tv}) / (1 + n_perm); tv_null is
        the mean tv_perm, what start sets of these sizes show by chance alone.

    Verdict (the first that applies; alpha = 1 - level):
      1. "inconclusive" when a start set has more than max_unconverged of its points unconverged, or fewer than
         min_points converged points: its basins are not known well enough (iterate longer, or raise tol or
         max_period).
      2. "one basin": every converged point is in one attractor: the map forgets its start.
      3. "separate basins" when no pair of points from different start sets ends in one attractor
         (share_cross == 0; e.g. every point its own fixed point: the permutation test cannot see this, since
         random re-splits are as disjoint).
      4. "shared basins" when p_value >= alpha: the start sets spread over the same basins, their occupancy
         distributions indistinguishable from random splits of the same points. Not "the TV interval includes
         0": with many small basins even identical start sets have a sample TV far above 0 (tv_null says how
         far); the permutation test is calibrated for that.
      5. "separate basins" when p_value < alpha and the lower end of the tv interval exceeds tv_margin: the
         start sets' occupancies differ, by at least that margin.
      6. "inconclusive" otherwise: the occupancies differ significantly, but possibly by less than tv_margin.
    Note "shared basins" is not ergodicity: the start sets may fill several basins alike, and share_cross (equal
    to share_within then) says how often two trajectories actually meet.
    """
    if isinstance(trajectory, AttractorReport):
        report = trajectory
        if tol is not None and float(tol) != report.tol:
            raise ValueError(f"tol={tol} differs from the report's tol={report.tol}: pass the trajectory to "
                             "recompute the attractors at another tol")
        tol, max_period, window = report.tol, report.max_period, report.window
    else:
        if tol is None:
            raise ValueError("basin_assessment needs tol (the RMS distance at which two states are one; on the "
                             "0-1 scale one grey level is 1/255): see tolerance_sweep for its effect")
        report = find_attractors(trajectory, tol=tol, max_period=max_period, window=window)
    ids_in = np.asarray(start_ids)
    n = len(report.labels)
    if ids_in.shape != (n,) or not (np.issubdtype(ids_in.dtype, np.integer) or ids_in.dtype == bool):
        raise ValueError(f"start_ids must be ({n},) integers (the start set of each point), got shape "
                         f"{ids_in.shape} and dtype {ids_in.dtype}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not 0 <= tv_margin < 1:
        raise ValueError(f"tv_margin must be in [0, 1), got {tv_margin}")
    if not 0 <= max_unconverged <= 1:
        raise ValueError(f"max_unconverged must be a share in [0, 1], got {max_unconverged}")
    for name, v in (("min_points", min_points), ("n_boot", n_boot), ("n_perm", n_perm)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
    ids, inv = np.unique(ids_in, return_inverse=True)
    if len(ids) < 2:
        raise ValueError(f"start_ids name {len(ids)} start set: comparing basins needs at least two")
    s_count, k_count = len(ids), report.n_attractors
    labels = report.labels
    conv = labels >= 0
    occ = np.zeros((s_count, k_count), dtype=np.int64)
    np.add.at(occ, (inv[conv], labels[conv]), 1)
    n_points = np.bincount(inv, minlength=s_count)
    unconverged = np.bincount(inv[~conv], minlength=s_count)
    n_conv = occ.sum(1)
    alpha = 1 - level
    q = (alpha / 2, 1 - alpha / 2)
    rng = np.random.default_rng(seed)

    share_cross, share_within = (float(x) for x in _pair_shares(occ))
    nan2 = (math.nan, math.nan)
    if k_count and (n_conv > 0).all():
        tv_pairs = _tv_pairs(occ)
        tv = float(_tv_max(occ))
        boot = np.stack([rng.multinomial(n_conv[s], occ[s] / n_conv[s], size=int(n_boot)) for s in
                         range(s_count)], axis=1)  # (n_boot, S, K)
        bc, bw = _pair_shares(boot)
        share_cross_iv = tuple(float(x) for x in np.nanquantile(bc, q)) if np.isfinite(bc).any() else nan2
        share_within_iv = tuple(float(x) for x in np.nanquantile(bw, q)) if np.isfinite(bw).any() else nan2
        hi = np.quantile(_tv_max(boot), q[1])
        tv_iv = (float(np.clip(2 * tv - hi, 0, 1)), float(np.clip(hi, 0, 1)))
        lab, grp = labels[conv], inv[conv]
        perm_tv = []
        chunk = max(1, min(int(n_perm), 4_000_000 // max(len(lab), 1)))
        for start in range(0, int(n_perm), chunk):
            b = min(chunk, int(n_perm) - start)
            shuffled = rng.permuted(np.broadcast_to(lab, (b, len(lab))), axis=1)
            flat = (np.arange(b)[:, None] * s_count + grp[None]) * k_count + shuffled
            perm_occ = np.bincount(flat.ravel(), minlength=b * s_count * k_count).reshape(b, s_count, k_count)
            perm_tv.append(_tv_max(perm_occ))
        perm_tv = np.concatenate(perm_tv)
        p_value = float((1 + np.sum(perm_tv >= tv - 1e-12)) / (1 + len(perm_tv)))
        tv_null = float(perm_tv.mean())
    else:
        tv_pairs = np.full((s_count, s_count), np.nan)
        tv, tv_iv, p_value, tv_null = math.nan, nan2, math.nan, math.nan
        share_cross_iv = share_within_iv = nan2

    name = lambda s: f"start set {ids[s].item()!r}"  # noqa: E731
    un_share = unconverged / np.maximum(n_points, 1)
    worst = int(np.argmax(un_share))
    few = np.flatnonzero(n_conv < int(min_points))
    numbers = (f"{k_count} attractors; share of cross-start pairs in one basin {share_cross:.3g} (within start "
               f"sets {share_within:.3g}); TV {tv:.3g} [{tv_iv[0]:.3g}, {tv_iv[1]:.3g}], chance level "
               f"{tv_null:.3g}, permutation p = {p_value:.3g}")
    if un_share[worst] > max_unconverged:
        verdict = "inconclusive"
        reason = (f"{name(worst)}: {unconverged[worst]} of {n_points[worst]} points ({un_share[worst]:.0%}) reached "
                  f"no attractor of period <= {max_period} within tol={tol:g} (more than max_unconverged="
                  f"{max_unconverged:g}): iterate longer, or raise tol or max_period")
    elif few.size:
        verdict = "inconclusive"
        reason = (f"{name(few[0])} has {n_conv[few[0]]} converged points (fewer than min_points={min_points}): "
                  "too few to compare its basins")
    elif k_count == 1:
        verdict, reason = "one basin", "every converged point ends in one attractor: the map forgets its start"
    elif share_cross == 0:
        verdict = "separate basins"
        reason = f"no pair of points from different start sets ends in one attractor; {numbers}"
    elif p_value >= alpha:
        verdict = "shared basins"
        reason = (f"the start sets' basin occupancies are indistinguishable from random splits (p >= "
                  f"{alpha:g}); {numbers}")
    elif tv_iv[0] > tv_margin:
        verdict = "separate basins"
        reason = (f"the start sets fill different basins (p < {alpha:g}, TV lower bound {tv_iv[0]:.3g} > "
                  f"tv_margin={tv_margin:g}); {numbers}")
    else:
        verdict = "inconclusive"
        reason = (f"the start sets' occupancies differ (p < {alpha:g}) but the TV lower bound {tv_iv[0]:.3g} is "
                  f"not above tv_margin={tv_margin:g}; {numbers}")
    settings = {"tol": float(tol), "max_period": int(max_period), "window": int(report.window), "level": level,
                "tv_margin": tv_margin, "max_unconverged": max_unconverged, "min_points": int(min_points),
                "n_boot": int(n_boot), "n_perm": int(n_perm), "seed": seed}
    return BasinAssessment(verdict=verdict, reason=reason, start_sets=tuple(ids.tolist()), n_points=n_points,
                           occupancy=occ, unconverged=unconverged, n_attractors=int(k_count),
                           share_cross=share_cross, share_cross_interval=share_cross_iv, share_within=share_within,
                           share_within_interval=share_within_iv, tv=tv, tv_interval=tv_iv, tv_pairs=tv_pairs,
                           tv_null=tv_null, p_value=p_value, report=report, settings=settings)


# ---------------------------------------------------------------------------------------- tolerance sweep
#: The default tolerances of tolerance_sweep, on the 0-1 scale (RMS over all pixels): 0 (exact repeats, common
#: on the uint8 grid), a quarter and half a grey level, one grey level, then 2, 4 and 8. An RMS of k/255 is k
#: levels in every pixel, or 2k levels in a quarter of them: with tol below one level the attractor count is
#: roughly the number of distinct final images; several levels merge images that differ by rounding.
DEFAULT_TOLERANCES = GREY_LEVEL * np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])


@dataclass(frozen=True)
class ToleranceSweep:
    """find_attractors at each tolerance of a sweep (ascending)."""

    tolerances: np.ndarray  # (M,) ascending
    n_attractors: np.ndarray  # (M,) attractors found at each tol
    unconverged: np.ndarray  # (M,) points with no period <= max_period at each tol (non-increasing in tol)
    largest_basin_share: np.ndarray  # (M,) the largest basin's points / ALL points (unconverged included)
    fixed_points: np.ndarray  # (M,) attractors of period 1
    n_points: int
    max_period: int
    window: int

    def rows(self) -> list[dict]:
        """One dict per tolerance (for a table); tol also in grey levels (tol * 255)."""
        return [{"tol": float(t), "tol_grey_levels": float(t / GREY_LEVEL), "n_attractors": int(a),
                 "fixed_points": int(f), "unconverged": int(u), "largest_basin_share": float(s)}
                for t, a, f, u, s in zip(self.tolerances, self.n_attractors, self.fixed_points, self.unconverged,
                                         self.largest_basin_share)]

    def to_json(self) -> dict:
        return {"n_points": int(self.n_points), "max_period": int(self.max_period), "window": int(self.window),
                "rows": self.rows()}


def tolerance_sweep(trajectory, tolerances=None, *, max_period: int = 8, window: int | None = None
                    ) -> ToleranceSweep:
    """How the attractor count depends on the tolerance: find_attractors at each tol of `tolerances` (default
    DEFAULT_TOLERANCES: 0 to 8 grey levels on the 0-1 scale; sorted ascending, duplicates dropped).

    The unconverged count can only fall as tol grows (a period that passes at one tol passes at every larger
    one). The attractor count usually falls too (basins merge), but need not: points that converge only at the
    larger tol can bring new attractors. A count that is flat over a range of tol is a property of the map; one
    that follows tol is a property of the choice.
    """
    tols = DEFAULT_TOLERANCES if tolerances is None else np.asarray(tolerances, dtype=np.float64)
    if tols.ndim != 1 or tols.size == 0 or not np.all(np.isfinite(tols)) or (tols < 0).any():
        raise ValueError(f"tolerances must be a non-empty 1-D list of finite values >= 0, got {tolerances!r}")
    tols = np.unique(tols)
    reports = [find_attractors(trajectory, tol=float(t), max_period=max_period, window=window) for t in tols]
    n = len(reports[0].labels)
    return ToleranceSweep(
        tolerances=tols, n_attractors=np.array([r.n_attractors for r in reports], dtype=np.int64),
        unconverged=np.array([r.unconverged for r in reports], dtype=np.int64),
        largest_basin_share=np.array([r.basin_sizes[0] / n if r.n_attractors else 0.0 for r in reports]),
        fixed_points=np.array([r.fixed_points for r in reports], dtype=np.int64), n_points=n,
        max_period=reports[0].max_period, window=reports[0].window)


# ---------------------------------------------------------------------------------- read-outs for figures and tables
def basin_order(labels) -> list[int]:
    """The basin labels (-1, unconverged, left out), largest basin first; ties: the smaller label first. For
    find_attractors' labels this is 0, 1, ..., n_attractors - 1 (they are numbered by size); for other labels it
    gives the same reading order."""
    labels = np.asarray(labels)
    ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
    return [int(b) for b in ids[np.argsort(-sizes, kind="stable")]]


def exemplar_starts(labels, n: int) -> list[int]:
    """n start indices to show: the first start of each of the n largest basins (basin_order), then, if there
    are fewer basins, the first other starts (unconverged ones included) to make n."""
    labels = np.asarray(labels)
    picked = [int(np.flatnonzero(labels == b)[0]) for b in basin_order(labels)[:n]]
    return picked + [i for i in range(len(labels)) if i not in picked][:max(0, n - len(picked))]


def as_uint8(states) -> np.ndarray:
    """States (a trajectory, or one step of it) as uint8 grey levels, for pictures: uint8 as they are, float
    states on the 0-1 scale rounded to the nearest level."""
    states = np.asarray(states)
    return states if states.dtype == np.uint8 else np.round(states * 255).astype(np.uint8)


def trajectory_plane(trajectory) -> np.ndarray:
    """(T+1, N, 2): every state of a trajectory on the two principal axes of its last states (centred at the mean
    of ALL states, so that the starts lie where they came from). uint8 states are read on the 0-1 scale."""
    from .geometry import principal_axes

    x = np.asarray(trajectory)
    flat = x.reshape(x.shape[0], x.shape[1], -1).astype(np.float64)
    if x.dtype == np.uint8:
        flat /= 255
    mean, axes, _ = principal_axes(flat[-1], 2, mean=flat.reshape(-1, flat.shape[-1]).mean(0))
    return (flat - mean) @ axes.T


def class_by_basin(labels, start_labels, *, n_basins: int = 10, class_names=None):
    """The share of each start class's starts that ends in each of the n_basins largest basins (basin_order), as
    a pandas DataFrame: rows 'start class <name>' (class_names[k], else k) for each class present, columns
    'basin <b>'. A map that mixed would give every class the same row; a deterministic one keeps classes apart
    where their starts lie in different basins."""
    import pandas as pd

    labels, start_labels = np.asarray(labels), np.asarray(start_labels)
    if labels.shape != start_labels.shape:
        raise ValueError(f"labels and start_labels must have the same shape, got {labels.shape} and "
                         f"{start_labels.shape}")
    top = basin_order(labels)[:n_basins]
    classes = np.unique(start_labels)
    return pd.DataFrame([[np.mean(labels[start_labels == k] == b) for b in top] for k in classes],
                        index=[f"start class {class_names[k] if class_names else k}" for k in classes],
                        columns=[f"basin {b}" for b in top])


def reports_table(reports: dict, *, key: str = "quantize", n_basins: int = 6):
    """One row per AttractorReport of {setting: report} as a pandas DataFrame: the setting (column `key`), the
    attractor count, fixed points, cycles ({period: count}), unconverged points and the n_basins largest
    basin sizes."""
    import pandas as pd

    return pd.DataFrame({key: list(reports), "attractors": [r.n_attractors for r in reports.values()],
                         "fixed points": [r.fixed_points for r in reports.values()],
                         "cycles (period: count)": [str(r.cycles) for r in reports.values()],
                         "unconverged": [r.unconverged for r in reports.values()],
                         "largest basins": [str([int(s) for s in r.basin_sizes[:n_basins]])
                                            for r in reports.values()]})
