"""The paper's two conditions for neural resonance, measured on feedback chains with intervals: ergodicity (does
the chain forget its start?) and directional contraction (does its latent cloud shrink more in some directions
than in others?), the rule that turns them into a predicted outcome, an observation of the outcome read from
other numbers, and chains with known answers that calibrate every verdict at the sizes it is used at.

The paper states the conditions (ergodic + directionally contracting -> resonance; not contracting -> endless
wandering; not ergodic -> separate basins) but publishes no way of measuring them on samples. Everything below,
the estimators, the criteria and every default, is OUR RECONSTRUCTION; each choice is a keyword argument.

Input: a chain is a list of per-generation clouds, arrays (n, dim), generation 0 first (a `chain.ChainResult`
is accepted). The mixing measure takes `chains[start][replicate][generation]`: several starts (different
initial sets) and, per start, at least two replicate chains with independent randomness (their distance is
the null for "mixed": what two runs of one chain from one start look like).

1. `assess_mixing`: the between-start distance in excess of the same-start replicate level (unbiased MMD^2,
   Gaussian kernel fixed at generation 0), fitted as a geometric decay rho^g, with a bootstrap interval and a
   mixing time; verdicts "mixed" / "mixing" / "separated" / "inconclusive".
2. `assess_contraction`: directions chosen on one half of each cloud, variances measured on the other; per-
   direction log-variance rates with intervals, the effective dimension with an interval, for paired chains the
   singular values of the fitted map; verdicts "directional" / "uniform" / "none" / "inconclusive".
3. `observe_outcome`: on held-out late generations, from numbers the prediction does not use (stationarity of
   the cumulative drift, agreement of the starts' late clouds, effective dimension against the start):
   "resonance" / "wandering" / "separate basins" / "inconclusive".
4. `predicted_outcome`, `assess_setting`, `claim_row`: the rule, one setting's whole assessment, one table row.
5. `SYNTHETIC` (the four combinations the rule names) and `KNOWN_ANSWERS` + `calibrate` (error rates of every
   verdict over seeds at given sizes).
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import pdist

from .chain import run_chain
from .geometry import principal_axes
from .metrics import as_features, check_choice

MIXING_VERDICTS = ("mixed", "mixing", "separated", "inconclusive")
CONTRACTION_VERDICTS = ("directional", "uniform", "none", "inconclusive")
OUTCOMES = ("resonance", "wandering", "separate basins (each contracting)", "separate basins", "inconclusive")
OBSERVED_OUTCOMES = ("resonance", "wandering", "separate basins", "inconclusive")
REPLICATE_MODES = ("auto", "given", "halves")
KERNELS = ("linear", "gaussian")
BASES = ("final", "pooled")


def _check_range(value, name: str, low=None, high=None, *, low_open=False, high_open=False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad = (not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low if low is not None else '-inf'}, "
                         f"{high if high is not None else 'inf'}{hi}, got {value}")
    return value


def _check_count(value, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _as_chain(chain, name: str) -> list[np.ndarray]:
    """A chain as a list of float64 clouds of one dim (ChainResult accepted)."""
    states = getattr(chain, "states", chain)
    if isinstance(states, np.ndarray) and states.ndim == 2:
        raise ValueError(f"{name} is a single cloud of shape {states.shape}; a chain is a list of per-generation "
                         "clouds")
    clouds = [as_features(c, f"{name} generation {g}") for g, c in enumerate(states)]
    if not clouds:
        raise ValueError(f"{name} has no generations")
    for g, c in enumerate(clouds[1:], start=1):
        if c.shape[1] != clouds[0].shape[1]:
            raise ValueError(f"{name} generation {g} has dim {c.shape[1]} but generation 0 has dim "
                             f"{clouds[0].shape[1]}")
    return clouds


def _as_ensemble(chains) -> list[list[list[np.ndarray]]]:
    """chains[start][replicate][generation] -> nested lists of float64 clouds, all of one length and dim."""
    if hasattr(chains, "states") or isinstance(chains, np.ndarray) or not len(chains):
        raise ValueError("chains must be chains[start][replicate][generation]: a list (starts) of lists "
                         "(replicates) of chains")
    out = []
    for s, reps in enumerate(chains):
        if hasattr(reps, "states") or (len(reps) and isinstance(reps[0], np.ndarray) and np.ndim(reps[0]) == 2):
            raise ValueError(f"start {s} is a single chain; chains must be chains[start][replicate][generation] "
                             "(wrap it: [[chain]])")
        out.append([_as_chain(c, f"start {s} replicate {r}") for r, c in enumerate(reps)])
        if not out[-1]:
            raise ValueError(f"start {s} has no replicate chains")
    lengths = sorted({len(c) for reps in out for c in reps})
    dims = sorted({c[0].shape[1] for reps in out for c in reps})
    if len(lengths) > 1:
        raise ValueError(f"chains have different lengths (generations incl. 0): {lengths}")
    if len(dims) > 1:
        raise ValueError(f"chains have mismatched dims: {dims}")
    return out


# ----------------------------------------------------------------------------------------------------------
# the kernel distance


def median_bandwidth(x, *, max_points: int = 1000, seed: int = 0) -> float:
    """Median heuristic: the median Euclidean distance between distinct points of x (at most `max_points`
    rows, drawn with `seed`)."""
    x = as_features(x)
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    h = float(np.median(pdist(x)))
    if not h > 0:
        raise ValueError("median pairwise distance is 0 (more than half the points coincide); pass bandwidth=")
    return h


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # |a|^2 + |b|^2 - 2 a.b runs on BLAS (cdist does not: 10-100x slower for wide features); clip round-off
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _kernel(a: np.ndarray, b: np.ndarray, h: float | None) -> np.ndarray:
    """Gaussian kernel matrix with bandwidth h; the linear kernel a.b when h is None."""
    if h is None:
        return a @ b.T
    return np.exp(-_squared_distances(a, b) / (2 * h * h))


def mmd2_rbf(x, y, *, bandwidth: float) -> float:
    """Unbiased MMD^2 between the rows of x and y with k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2)): the
    diagonals k(x_i, x_i) are left out of the within-set means, so it is 0 on average for two samples of one
    distribution (single values can be negative)."""
    x, y = as_features(x, "x"), as_features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dim {x.shape[1]} but y has dim {y.shape[1]}")
    h = _check_range(bandwidth, "bandwidth", 0, low_open=True)
    m, n = len(x), len(y)
    kxx, kyy, kxy = (_kernel(a, b, h) for a, b in ((x, x), (y, y), (x, y)))
    return float((kxx.sum() - m) / (m * (m - 1)) + (kyy.sum() - n) / (n * (n - 1)) - 2 * kxy.mean())


def _weights(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot + 1, n) resampling counts (n rows drawn with replacement); row 0 is all ones (the observed
    sample)."""
    w = np.ones((n_boot + 1, n))
    if n_boot:
        idx = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
        w[1:] = np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n)
    return w


class _WeightCache(dict):
    """Resampling counts drawn once per key (a trajectory set and its size) and reused."""

    def __init__(self, rng: np.random.Generator, n_boot: int):
        super().__init__()
        self.rng, self.n_boot = rng, n_boot

    def get_for(self, key, n: int) -> np.ndarray:
        if (key, n) not in self:
            self[(key, n)] = _weights(self.rng, n, self.n_boot)
        return self[(key, n)]


def _within(x: np.ndarray, u: np.ndarray, h: float | None) -> np.ndarray:
    """Mean kernel value over pairs of DISTINCT original rows of x under resampling counts u (n_boot + 1, n):
    the unbiased within-set term of MMD^2, so a duplicated row never pairs with itself. The linear kernel
    runs in O(n dim) per resample: sum_ab u_a u_b x_a.x_b = |u X|^2."""
    pairs = u.sum(1) ** 2 - (u * u).sum(1)
    if h is None:
        s = u @ x
        total = np.einsum("bd,bd->b", s, s) - (u * u) @ np.einsum("nd,nd->n", x, x)
    else:
        total = np.einsum("bi,bi->b", u @ _kernel(x, x, h), u) - (u * u).sum(1)  # k(x, x) = 1
    return total / pairs


def _cross(x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, h: float | None) -> np.ndarray:
    """Mean kernel value between the rows of x and y under resampling counts u and v."""
    if h is None:
        total = np.einsum("bd,bd->b", u @ x, v @ y)
    else:
        total = np.einsum("bi,bi->b", u @ _kernel(x, y, h), v)
    return total / (u.sum(1) * v.sum(1))


def _pair_levels(units: list[np.ndarray], groups: list[int], h: float | None, weights: list[np.ndarray]):
    """Bootstrap replicates (row 0 observed) of the mean MMD^2 over pairs of units in DIFFERENT groups
    (between) and in the SAME group (replicate level; 0 when no group has two units)."""
    within = [_within(x, w, h) for x, w in zip(units, weights)]
    between, same = [], []
    for i, j in itertools.combinations(range(len(units)), 2):
        d = within[i] + within[j] - 2 * _cross(units[i], units[j], weights[i], weights[j], h)
        (between if groups[i] != groups[j] else same).append(d)
    zero = np.zeros_like(within[0])
    return (np.mean(between, axis=0) if between else zero), (np.mean(same, axis=0) if same else zero)


# ----------------------------------------------------------------------------------------------------------
# 1. mixing: does the chain forget its start?


def _z(p: float) -> float:
    from scipy.stats import norm
    return float(norm.ppf(p))


def larger_error(*, within: float, scatter: float, dof: int, alpha: float) -> tuple[float, float]:
    """(se, q) of an estimate pooled over chains: the larger of its within-chain error (bootstrap or sampling
    noise: the normal quantile) and the chains' scatter (Student's t with dof degrees of freedom), and the
    two-sided quantile at level 1 - alpha that goes with it."""
    from scipy.stats import t as student_t

    if scatter > within:
        return scatter, float(student_t.ppf(1 - alpha / 2, max(dof, 1)))
    return within, _z(1 - alpha / 2)


def _fit_decay(curves: np.ndarray, weights: np.ndarray, grid: np.ndarray):
    """Weighted least squares of each row of curves (m, G+1) on A rho^g with A >= 0, rho on `grid`:
    (rho (m,), A (m,), residual sum of squares (m,)). A grid search: robust to noisy, partly negative curves
    (an excess at the replicate level scatters around 0) and vectorised over bootstrap replicates."""
    g = np.arange(curves.shape[1], dtype=np.float64)
    f = grid[:, None] ** g[None, :]  # (grid, G+1)
    num = (curves * weights) @ f.T  # (m, grid)
    den = (f * f) @ weights  # (grid,)
    a = np.maximum(num / den, 0.0)
    sse = ((curves ** 2) * weights).sum(1, keepdims=True) - 2 * a * num + a * a * den
    best = np.argmin(sse, axis=1)
    rows = np.arange(len(curves))
    return grid[best], a[rows, best], sse[rows, best]


def mixing_time(rate: float, eps: float) -> float:
    """Generations for a geometric decay rate^g to fall to eps: log(eps) / log(rate); inf when rate >= 1."""
    if not np.isfinite(rate) or rate >= 1:
        return math.inf
    if rate <= 0:
        return 0.0
    return math.log(eps) / math.log(rate)


@dataclass(frozen=True, eq=False)
class MixingResult:
    """Between-start distance in excess of the replicate level, its geometric decay rate and the verdict."""

    verdict: str  # one of MIXING_VERDICTS
    reason: str  # the numbers that decided it, in words
    rate: float  # rho: per-generation factor of the excess MMD^2 (a squared distance); NaN if no excess
    rate_interval: tuple  # (low, high), bootstrap percentile interval at level 1 - alpha
    mixing_time: float  # generations for the fitted excess to fall to eps of its generation-0 size (inf: never)
    mixing_time_interval: tuple
    excess: np.ndarray  # (G+1,) between - replicate level per generation
    excess_se: np.ndarray  # (G+1,) its bootstrap standard error (sampling noise within the clouds)
    between: np.ndarray  # (G+1,) mean MMD^2 over pairs of chains from different starts
    replicate_level: np.ndarray  # (G+1,) mean MMD^2 over pairs of replicate chains of one start (0 at g=0)
    fitted: np.ndarray  # (G+1,) A rate^g
    start_distance: float  # the excess at generation 0: how far apart the starts were
    start_distance_se: float
    late_excess: float  # mean excess over the last `window` generations
    late_interval: tuple  # its two-sided interval
    replicate_growth: float  # growth of the replicate level over the run (a random walk's replicates drift apart)
    replicate_growth_interval: tuple
    lack_of_fit: float  # phi >= 1: residual scatter beyond the sampling noise; every SE is multiplied by it
    n: int  # samples per set in every distance
    kernel: str  # "linear" (squared distance of the means) or "gaussian"
    bandwidth: float | None  # the Gaussian kernel's, fixed from generation 0; None for the linear kernel
    replicates: str  # "given" (independent replicate chains) or "halves" (two halves of each chain's samples)
    n_starts: int
    n_replicates: int
    window: int
    eps: float
    mixed_effect: float
    alpha: float

    @property
    def ergodic(self) -> bool | None:
        """True (mixed or mixing), False (separated) or None (inconclusive)."""
        return {"mixed": True, "mixing": True, "separated": False}.get(self.verdict)

    def summary(self) -> dict:
        lo, hi = self.rate_interval
        tlo, thi = self.mixing_time_interval
        return {"verdict": self.verdict, "rate": self.rate, "rate_low": lo, "rate_high": hi,
                "mixing_time": self.mixing_time, "mixing_time_low": tlo, "mixing_time_high": thi,
                "start_distance": self.start_distance, "late_excess": self.late_excess,
                "late_low": self.late_interval[0], "late_high": self.late_interval[1],
                "lack_of_fit": self.lack_of_fit, "n": self.n, "replicates": self.replicates,
                "reason": self.reason}


def _identical_replicates(reps: list[list[np.ndarray]]) -> bool:
    return all(np.array_equal(a, b) for c in reps[1:] for a, b in zip(reps[0], c))


def _halves(chain: list[np.ndarray], key) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The rows of every generation split into two disjoint halves by ONE permutation (per size), so a paired
    chain's trajectories stay in their half: two independent sub-chains when samples evolve independently."""
    perms = {}
    a, b = [], []
    for x in chain:
        p = perms.setdefault(len(x), np.random.default_rng(key + [len(x)]).permutation(len(x)))
        m = len(x) // 2
        a.append(x[p[:m]])
        b.append(x[p[m:2 * m]])
    return a, b


def _units(ens, mode: str, seed: int):
    """Per generation: the clouds compared ("units"), the start each belongs to, and the key of its bootstrap
    weights. Keys follow trajectories: row i of a chain descends from row i of its start set (latent feedback,
    a deterministic map), so one weight vector per start (given mode) or per half (halves mode) is reused in
    every generation, and the bootstrap keeps each trajectory's correlation across generations."""
    G1 = len(ens[0][0])
    per_gen = [([], [], []) for _ in range(G1)]
    for s, reps in enumerate(ens):
        if mode == "halves":
            used = [reps[0]] if _identical_replicates(reps) else reps
            for r, c in enumerate(used):
                for k, half in enumerate(_halves(c, [seed, s, r])):
                    for g in range(G1):
                        for part, value in zip(per_gen[g], (half[g], s, (s, r, k))):
                            part.append(value)
        else:
            for part, value in zip(per_gen[0], (reps[0][0], s, (s,))):  # the replicates share their start set
                part.append(value)
            for c in reps:
                for g in range(1, G1):
                    for part, value in zip(per_gen[g], (c[g], s, (s,))):
                        part.append(value)
    return per_gen


def _spread_growth(ens, window: int) -> tuple[float, float]:
    """Mean over chains of log total variance (last `window` generations) - (generations 1..window), and its
    standard error (the scatter between chains, or the Gaussian sampling error of a log variance when the
    chains agree more closely than that)."""
    growth, n_eff = [], []
    for reps in ens:
        for c in (reps[:1] if _identical_replicates(reps) else reps):
            tv = np.array([max(float(np.trace(np.atleast_2d(np.cov(x, rowvar=False)))), 1e-300) for x in c])
            growth.append(np.log(tv[-window:]).mean() - np.log(tv[1:1 + window]).mean())
            n_eff.append(len(c[-1]))
    growth = np.asarray(growth)
    sampling = math.sqrt(2 * 2.0 / (window * min(n_eff)) / len(growth))
    scatter = growth.std(ddof=1) / math.sqrt(len(growth)) if len(growth) > 1 else 0.0
    return float(growth.mean()), float(max(sampling, scatter))


def _excess_levels(per_gen, h, n_boot: int, rng, mode: str):
    """(n_boot + 1, G+1) between-start and replicate levels (row 0 observed, rows 1: bootstrap)."""
    G1 = len(per_gen)
    between = np.empty((n_boot + 1, G1))
    level = np.empty((n_boot + 1, G1))
    drawn = _WeightCache(rng, n_boot)
    for g, (units, groups, keys) in enumerate(per_gen):
        weights = [drawn.get_for(key, len(u)) for u, key in zip(units, keys)]
        between[:, g], level[:, g] = _pair_levels(units, groups, h, weights)
    if mode == "given":
        level[:, 0] = 0.0  # the replicates of a start share its start set
    return between, level


def _path_deviations(per_gen, n_boot: int, rng) -> np.ndarray:
    """(n_boot, G) bootstrap deviations of the linear-kernel excess that carry the chains' own noise.

    A chain's cloud mean is its start's mean path plus a noise path eta(g) (the model it retrained, the noise it
    drew), correlated over generations. The row bootstrap cannot see eta, since every row shares it; the
    replicates can: the deviation of each replicate's mean path from its start's average (scaled to unit
    variance) is a draw of a whole eta path, autocorrelation included. A Gaussian wild bootstrap recombines these
    paths (each resampled chain gets sum_p xi_p path_p / sqrt(P), xi ~ N(0, 1)), adds them to the start
    averages and recomputes between - replicate level on the means. The paths also hold the sampling noise of
    the means, so adding them to the row bootstrap's deviations counts that part twice: conservative."""
    units, groups = per_gen[0][0], np.asarray(per_gen[0][1])
    means = np.stack([np.stack([u.mean(0) for u in gen[0]]) for gen in per_gen], axis=1)  # (U, G, d)
    U, G, d = means.shape
    centres = np.empty_like(means)
    paths = []
    for s in np.unique(groups):
        idx = np.flatnonzero(groups == s)
        centres[idx] = means[idx].mean(0)
        if len(idx) > 1:
            paths.append((means[idx] - centres[idx]) * math.sqrt(len(idx) / (len(idx) - 1)))
    paths = np.concatenate(paths).reshape(-1, G * d)
    xi = rng.standard_normal((n_boot, U, len(paths)))
    drawn = centres.reshape(1, U, G, d) + (xi @ paths).reshape(n_boot, U, G, d) / math.sqrt(len(paths))
    cross, same = [], []
    for i, j in itertools.combinations(range(U), 2):
        sq = np.sum((drawn[:, i] - drawn[:, j]) ** 2, axis=-1)  # (n_boot, G)
        (cross if groups[i] != groups[j] else same).append(sq)
    stat = np.mean(cross, axis=0) - (np.mean(same, axis=0) if same else 0.0)
    return stat - stat.mean(0)


def _resolve_replicates(ens, replicates: str) -> str:
    check_choice(replicates, REPLICATE_MODES, "replicates")
    R = min(len(reps) for reps in ens)
    deterministic = R > 1 and all(_identical_replicates(reps) for reps in ens)
    mode = ("halves" if deterministic else "given") if replicates == "auto" else replicates
    if mode == "given" and (R < 2 or deterministic):
        raise ValueError("replicates='given' needs at least 2 replicate chains per start with independent "
                         f"randomness (got {R} per start{', all identical' if deterministic and R > 1 else ''}); "
                         "run replicates with their own seeds, or pass replicates='halves' when the samples "
                         "evolve independently of each other")
    return mode


def _bandwidth(ens, kernel: str, bandwidth, seed: int):
    check_choice(kernel, KERNELS, "kernel")
    if kernel == "linear":
        return None
    if bandwidth is not None:
        return _check_range(bandwidth, "bandwidth", 0, low_open=True)
    return median_bandwidth(np.concatenate([reps[0][0] for reps in ens]), seed=seed)


def assess_mixing(chains, *, seed: int = 0, kernel: str = "linear", bandwidth: float | None = None,
                  replicates: str = "auto",
                  window: int = 3, eps: float = 0.05, mixed_effect: float = 0.1, divergence_tol: float = 0.1,
                  alpha: float = 0.05, n_boot: int = 200) -> MixingResult:
    """Does a chain forget its start? `chains[start][replicate][generation]` are (n, dim) clouds.

    Distances: unbiased MMD^2. kernel="linear" (default): k(a, b) = a.b, so MMD^2 is the squared distance
    between the cloud means, unbiased; it decays exactly geometrically for a linear chain and never saturates
    (a fixed Gaussian kernel saturates as clouds move apart, so a random walk's excess shrinks in it and reads
    as mixing), but it is blind to differences of shape at equal means. kernel="gaussian": the Gaussian kernel
    with a bandwidth fixed from generation 0 (median heuristic over the pooled start sets, or `bandwidth`),
    characteristic (it sees every difference) but saturating. Per generation g:
      between(g)         = mean MMD^2 over pairs of chains from different starts,
      replicate level(g) = mean MMD^2 over pairs of replicate chains from the same start (0 at g = 0, where they
                           share the start set): what "no memory of the start" looks like, including the
                           chain's own randomness (a retrained model differs from run to run),
      excess(g)          = between - replicate level (0 on average once the start is forgotten).
    replicates: "given" (the replicate chains, at least 2 per start, with independent seeds), "halves" (each
    chain's samples split into two halves that keep their trajectories: valid only when samples evolve
    independently given the start, as in latent feedback, a deterministic map or a per-sample noisy map; NOT
    for a retrained model, whose samples share the model), "auto" (given; halves when every replicate of a start
    is identical, i.e. a deterministic chain).
    Noise: a bootstrap of the rows of every cloud (the within-set terms skip pairs of one original row, so the
    resampled statistic stays unbiased), by trajectory: row i keeps its weight in every generation (`_units`);
    for the linear kernel plus a wild bootstrap of the replicates' mean paths (`_path_deviations`: the chains'
    own noise, model randomness included, with its autocorrelation over generations).
    Rate: excess(g) ~ A rho^g by weighted least squares (weights 1 / SE^2); the residual scatter beyond the
    sampling noise, phi = sqrt(max(1, chi^2 / (G - 1))), inflates every SE (chain-level noise the row bootstrap
    cannot see); the rate's interval is the percentile interval of fits to the excess perturbed by phi x the
    bootstrap deviations. Mixing time = log(eps) / log(rho) generations (the excess MMD^2 falls to eps of its
    start), its interval from the rate's.
    Verdicts (ours), with z the normal quantile at 1 - alpha (one-sided) or 1 - alpha/2 (two-sided intervals):
      "inconclusive"  the starts are not told apart at generation 0 (excess(0) - z SE <= 0): nothing to forget;
      "inconclusive"  the replicate level grows from the first `window` generations to the last by more than
                      divergence_tol x excess(0) (replicates of one start drift apart: no stationary law in
                      sight over this run, as in a random walk);
      "mixed"         the late excess (mean over the last `window` generations) is below mixed_effect x
                      excess(0) with confidence 1 - alpha: the starts are forgotten, and the data had the power
                      to see an excess of that size;
      "mixing"        the rate's interval lies below 1: the excess shrinks geometrically (not yet gone);
      "inconclusive"  the rate's interval reaches 1 but the clouds keep spreading (log total variance grows
                      from the first to the last `window` generations by more than log(1 + divergence_tol)
                      with confidence): a diffusing walk, not a stationary chain;
      "separated"     the rate's interval reaches 1 (and its lower end is above 0.5: a fast decay is ruled
                      out, so the interval says something) and the late excess is above the replicate level
                      (lower bound > 0): the starts stay apart;
      "inconclusive"  otherwise (said as such, with the reason).
    """
    ens = _as_ensemble(chains)
    window = _check_count(window, "window")
    n_boot = _check_count(n_boot, "n_boot", 20)
    eps = _check_range(eps, "eps", 0, 1, low_open=True, high_open=True)
    mixed_effect = _check_range(mixed_effect, "mixed_effect", 0, 1, low_open=True, high_open=True)
    divergence_tol = _check_range(divergence_tol, "divergence_tol", 0)
    alpha = _check_range(alpha, "alpha", 0, 0.5, low_open=True, high_open=True)
    S, G1 = len(ens), len(ens[0][0])
    if S < 2:
        raise ValueError(f"mixing needs chains from at least 2 different starts, got {S}")
    if G1 < 3:
        raise ValueError(f"fitting a decay rate needs at least 2 generations after generation 0, got {G1 - 1}")
    if window > G1 - 1:
        raise ValueError(f"window must be between 1 and the number of generations after 0 ({G1 - 1}), got {window}")
    R = min(len(reps) for reps in ens)
    mode = _resolve_replicates(ens, replicates)
    per_gen = _units(ens, mode, seed)
    h = _bandwidth(ens, kernel, bandwidth, seed)
    between, level = _excess_levels(per_gen, h, n_boot, np.random.default_rng([seed, 5]), mode)
    excess = between - level
    obs, boot = excess[0], excess[1:]
    if h is None:  # the linear kernel: chain-level noise, with its autocorrelation, from the replicates' paths
        boot = boot.copy()
        first = 1 if mode == "given" else 0
        boot[:, first:] += _path_deviations(per_gen[first:], n_boot, np.random.default_rng([seed, 6]))
    se = boot.std(0, ddof=1)
    se = np.maximum(se, 1e-3 * se.max() + 1e-15)
    zs, zt = _z(1 - alpha), _z(1 - alpha / 2)

    grid = np.linspace(0.0, 1.5, 601)[1:]
    w = 1 / se ** 2
    rate, amp, sse = _fit_decay(obs[None], w, grid)
    phi = float(math.sqrt(max(1.0, sse[0] / (G1 - 2))))
    perturbed = obs + phi * (boot - boot.mean(0))
    rates = _fit_decay(perturbed, w, grid)[0]
    rate = float(rate[0]) if amp[0] > 0 else math.nan
    rate_lo, rate_hi = (float(np.quantile(rates, alpha / 2)), float(np.quantile(rates, 1 - alpha / 2)))
    fitted = amp[0] * grid[np.searchsorted(grid, rate)] ** np.arange(G1) if np.isfinite(rate) else np.zeros(G1)

    start, start_se = float(obs[0]), float(phi * se[0])
    late = float(obs[-window:].mean())
    late_se = float(phi * boot[:, -window:].mean(1).std(ddof=1))
    late_lo, late_hi = late - zt * late_se, late + zt * late_se
    lv = level[:, -window:].mean(1) - level[:, 1:1 + window].mean(1)  # replicates drifting apart over the run
    growth, growth_se = float(lv[0]), float(phi * lv[1:].std(ddof=1))
    spread, spread_se = _spread_growth(ens, window)

    if start - zs * start_se <= 0:
        verdict = "inconclusive"
        reason = (f"the starts are not told apart at generation 0 (excess {start:.3g} +- {start_se:.2g}); start "
                  "the chains from clearly different sets")
        warnings.warn("starts indistinguishable at generation 0: mixing cannot be read from them", UserWarning,
                      stacklevel=2)
    elif mode == "given" and growth - zs * growth_se > divergence_tol * start:
        verdict = "inconclusive"
        reason = (f"replicates of one start drift apart (replicate level +{growth:.3g} +- {growth_se:.2g}, "
                  f"> {divergence_tol:g} x starting excess): no stationary law in sight")
    elif late + zs * late_se < mixed_effect * start:
        verdict = "mixed"
        reason = (f"late excess {late:.3g} (upper bound {late + zs * late_se:.3g}) below {mixed_effect:g} x the "
                  f"starting excess {start:.3g}")
    elif rate_hi < 1:
        verdict = "mixing"
        reason = f"excess shrinks by {rate:.3g} [{rate_lo:.3g}, {rate_hi:.3g}] per generation"
    elif spread - zs * spread_se > math.log(1 + divergence_tol):
        verdict = "inconclusive"
        reason = (f"the clouds keep spreading (log total variance +{spread:.3g} +- {spread_se:.2g} from the first "
                  f"to the last {window} generations): no stationary law in sight, so 'separated' cannot be said")
    elif late_lo > 0 and rate_lo > 0.5:
        verdict = "separated"
        reason = (f"rate interval [{rate_lo:.3g}, {rate_hi:.3g}] reaches 1 and the late excess {late:.3g} "
                  f"[{late_lo:.3g}, {late_hi:.3g}] stays above the replicate level")
    else:
        verdict = "inconclusive"
        reason = (f"rate [{rate_lo:.3g}, {rate_hi:.3g}] and late excess [{late_lo:.3g}, {late_hi:.3g}] decide "
                  "nothing at these sizes")
    return MixingResult(
        verdict=verdict, reason=reason, rate=rate, rate_interval=(rate_lo, rate_hi),
        mixing_time=mixing_time(rate, eps), mixing_time_interval=(mixing_time(rate_lo, eps),
                                                                   mixing_time(rate_hi, eps)),
        excess=obs, excess_se=phi * se, between=between[0], replicate_level=level[0], fitted=fitted,
        start_distance=start, start_distance_se=start_se, late_excess=late, late_interval=(late_lo, late_hi),
        replicate_growth=growth, replicate_growth_interval=(growth - zt * growth_se, growth + zt * growth_se),
        lack_of_fit=phi, n=min(len(u) for units, _, _ in per_gen for u in units), kernel=kernel,
        bandwidth=None if h is None else float(h),
        replicates=mode, n_starts=S, n_replicates=R if mode == "given" else 2, window=window, eps=eps,
        mixed_effect=mixed_effect, alpha=alpha)


# ----------------------------------------------------------------------------------------------------------
# 2. directional contraction


def participation_ratio_of_covariance(c: np.ndarray) -> np.ndarray:
    """Effective dimension (trace C)^2 / trace(C^2) of covariance matrices (..., d, d): d for an isotropic
    cloud, 1 for a cloud on a line."""
    tr = np.trace(c, axis1=-2, axis2=-1)
    tr2 = np.einsum("...ij,...ji->...", c, c)
    return tr * tr / np.maximum(tr2, 1e-300)


def _weighted_covariances(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(n_boot + 1, d, d) covariances of x (n, d) under resampling counts w (n_boot + 1, n)."""
    tot = w.sum(1)
    n, d = x.shape
    mean = w @ x / tot[:, None]
    # one (n_boot + 1, n) x (n, d*d) product of the counts with every sample's outer product: 3x faster than a
    # batched (n_boot + 1) x (d, n) x (n, d) matmul at the claim's sizes
    second = (w @ (x[:, :, None] * x[:, None, :]).reshape(n, d * d)).reshape(-1, d, d) / tot[:, None, None]
    return (second - mean[:, :, None] * mean[:, None, :]) * (tot / (tot - 1))[:, None, None]


def _interval(boot: np.ndarray, alpha: float) -> np.ndarray:
    """Percentile interval over the first axis: (..., 2)."""
    return np.stack([np.quantile(boot, alpha / 2, axis=0), np.quantile(boot, 1 - alpha / 2, axis=0)], axis=-1)


@dataclass(frozen=True, eq=False)
class ContractionResult:
    """Per-direction log-variance changes of one chain, measured on held-apart samples, and the verdict."""

    verdict: str  # one of CONTRACTION_VERDICTS
    reason: str
    basis: np.ndarray  # (dim, k) orthonormal directions, chosen on half A
    log_variance: np.ndarray  # (G+1, k) log variance along each direction, measured on half B
    direction_change: np.ndarray  # (k,) mean log variance over the last `window` generations - at generation 0
    direction_change_interval: np.ndarray  # (k, 2)
    direction_rate: np.ndarray  # (k,) least-squares slope of log variance per generation
    direction_rate_interval: np.ndarray  # (k, 2)
    most_contracted: float  # mean change over the `quantile` of directions that shrank most ON HALF A
    most_contracted_interval: tuple
    least_contracted: float  # the same for the directions that shrank least on half A
    least_contracted_interval: tuple
    spread: float  # least - most: anisotropy of the contraction (log scale)
    spread_interval: tuple
    effective_dimension_start: float  # participation ratio of generation 0 (all samples)
    effective_dimension_end: float  # mean participation ratio of the last `window` generations
    effective_dimension_ratio: float  # end / start
    effective_dimension_ratio_interval: tuple
    map_singular_values: np.ndarray | None  # (k,) median over generations of the fitted map's singular values
    map_singular_values_interval: np.ndarray | None  # (k, 2)
    n: int  # samples per half
    window: int
    quantile: float
    contraction_tol: float
    anisotropy_tol: float
    alpha: float
    most_boot: np.ndarray = field(repr=False)  # (n_boot + 1,) observed then bootstrap: for pool_contraction
    spread_boot: np.ndarray = field(repr=False)

    @property
    def directional(self) -> bool:
        return self.verdict == "directional"

    def summary(self) -> dict:
        return {"verdict": self.verdict, "most_contracted": self.most_contracted,
                "most_low": self.most_contracted_interval[0], "most_high": self.most_contracted_interval[1],
                "spread": self.spread, "spread_low": self.spread_interval[0], "spread_high": self.spread_interval[1],
                "effective_dimension_ratio": self.effective_dimension_ratio,
                "effective_dimension_ratio_low": self.effective_dimension_ratio_interval[0],
                "effective_dimension_ratio_high": self.effective_dimension_ratio_interval[1],
                "reason": self.reason}


def _pca_basis(x: np.ndarray) -> np.ndarray:
    """Eigenvectors of the covariance of x, columns sorted by descending variance."""
    w, v = np.linalg.eigh(np.atleast_2d(np.cov(x, rowvar=False)))
    return v[:, np.argsort(w)[::-1]]


def _paired_maps(clouds: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """(n_boot + 1, G, d) singular values of the weighted least-squares map x_{g+1} ~ M x_g + c between
    consecutive generations whose rows are paired (row i = trajectory i)."""
    out = []
    for prev, cur in zip(clouds[:-1], clouds[1:]):
        tot = weights.sum(1)[:, None]
        mp, mc = weights @ prev / tot, weights @ cur / tot
        wp = (weights[:, :, None] * prev).transpose(0, 2, 1)
        sxx = np.matmul(wp, prev) / tot[:, :, None] - mp[:, :, None] * mp[:, None, :]
        sxy = np.matmul(wp, cur) / tot[:, :, None] - mp[:, :, None] * mc[:, None, :]
        m = np.linalg.solve(sxx + 1e-12 * np.eye(prev.shape[1]), sxy)
        out.append(np.linalg.svd(m, compute_uv=False))
    return np.stack(out, axis=1)


def assess_contraction(chain, *, seed: int = 0, basis: str = "final", n_components: int | None = None,
                       window: int = 3, quantile: float = 0.25, contraction_tol: float = 0.2,
                       anisotropy_tol: float = math.log(1.5), paired: bool = False, alpha: float = 0.05,
                       n_boot: int = 200, variance_floor: float = 1e-12) -> ContractionResult:
    """Does one chain's cloud shrink, and more in some directions than in others? `chain[generation]` is (n, dim).

    Selection is kept apart from measurement: every generation's rows are split into halves A and B (one seeded
    permutation, so a paired chain's trajectories stay in their half). Directions are the principal axes of half
    A (basis="final": the last `window` generations pooled, each about its own mean, where directions that
    contracted at different rates are best told apart; "pooled": all generations), and the most- and least-
    contracted `quantile` of them are picked on half A as well; every number below is then measured on half B,
    so the smallest directions are not small by selection (the bias that made sampling noise look like
    contraction). Per direction k, on half B: log variance per generation, its change `direction_change`
    (mean over the last `window` generations - generation 0) and its least-squares rate per generation; the
    effective dimension (participation ratio of the covariance) at the start and the end, on all rows. Intervals:
    percentile bootstrap over rows (by trajectory), level 1 - alpha.
    Verdicts (ours), with log_tol = log(1 - contraction_tol):
      "directional"  the most-contracted directions shrink (upper bound of their change < log_tol) and the
                     spread least - most has lower bound > anisotropy_tol;
      "uniform"      they shrink and the spread's upper bound < anisotropy_tol;
      "none"         the most-contracted directions' change has lower bound > log_tol;
      "inconclusive" otherwise.
    Defaults: contraction_tol = 0.2 (a fifth of the variance), anisotropy_tol = log 1.5 (the least-contracted
    directions keep 1.5 x the variance share of the most-contracted), quantile = 0.25, window = 3.
    paired=True (rows are trajectories, as in latent feedback, CycleGAN, Lucier frames) adds the singular values
    of the fitted linear map between consecutive generations (median over generations, with intervals).
    """
    clouds = _as_chain(chain, "chain")
    G1 = len(clouds)
    if G1 < 2:
        raise ValueError("contraction needs at least one generation after generation 0")
    window = _check_count(window, "window")
    if window > G1 - 1:
        raise ValueError(f"window must be between 1 and the number of generations after 0 ({G1 - 1}), got {window}")
    check_choice(basis, BASES, "basis")
    contraction_tol = _check_range(contraction_tol, "contraction_tol", 0, 1, low_open=True, high_open=True)
    anisotropy_tol = _check_range(anisotropy_tol, "anisotropy_tol", 0)
    quantile = _check_range(quantile, "quantile", 0, 0.5, low_open=True)
    alpha = _check_range(alpha, "alpha", 0, 0.5, low_open=True, high_open=True)
    n_boot = _check_count(n_boot, "n_boot", 20)
    if not isinstance(paired, (bool, np.bool_)):
        raise ValueError(f"paired must be True or False, got {paired!r}")
    if paired and len({len(c) for c in clouds}) > 1:
        raise ValueError("paired=True needs the same number of rows (trajectories) in every generation")
    if min(len(c) for c in clouds) < 8:
        raise ValueError(f"contraction needs at least 8 samples per generation (4 per half), got "
                         f"{min(len(c) for c in clouds)}")
    halves = _halves(clouds, [seed, 11])
    a_half, b_half = halves
    dim = clouds[0].shape[1]
    pool = a_half[-window:] if basis == "final" else a_half
    basis_cloud = np.concatenate([c - c.mean(0) for c in pool])
    vectors = _pca_basis(basis_cloud)[:, :max(1, min(dim, len(basis_cloud) - 1))]
    if n_components is not None:
        if isinstance(n_components, bool) or int(n_components) != n_components or \
                not 1 <= n_components <= vectors.shape[1]:
            raise ValueError(f"n_components must be an integer between 1 and {vectors.shape[1]}, got {n_components}")
        vectors = vectors[:, :int(n_components)]
    k = vectors.shape[1]

    def log_var(parts, weights):
        v = np.stack([np.diagonal(_weighted_covariances(p @ vectors, w), axis1=1, axis2=2)
                      for p, w in zip(parts, weights)], axis=1)  # (n_boot + 1, G+1, k)
        floor = variance_floor * max(float(v[0, 0].mean()), np.finfo(float).tiny)
        return np.log(np.maximum(v, floor))

    rng = np.random.default_rng([seed, 13])
    drawn = _WeightCache(rng, n_boot)
    weights_b = [drawn.get_for("b", len(c)) for c in b_half]
    lv_a = log_var(a_half, [np.ones((1, len(c))) for c in a_half])[0]
    lv_b = log_var(b_half, weights_b)
    change_a = lv_a[-window:].mean(0) - lv_a[0]
    order = np.argsort(change_a)
    q = max(1, int(math.ceil(quantile * k)))
    most_dirs, least_dirs = order[:q], order[-q:]
    change_b = lv_b[:, -window:].mean(1) - lv_b[:, 0]  # (n_boot + 1, k)
    gens = np.arange(G1) - (G1 - 1) / 2
    rates = (lv_b * gens[None, :, None]).sum(1) / (gens * gens).sum()
    most = change_b[:, most_dirs].mean(1)
    least = change_b[:, least_dirs].mean(1)
    spread = least - most
    ci = {name: tuple(float(v) for v in _interval(arr[1:], alpha)) for name, arr in
          (("most", most), ("least", least), ("spread", spread))}

    full_weights = [drawn.get_for("all", len(c)) for c in clouds]
    pr = np.stack([participation_ratio_of_covariance(_weighted_covariances(c, w)) for c, w in
                   zip(clouds, full_weights)], axis=1)  # (n_boot + 1, G+1)
    pr_end = pr[:, -window:].mean(1)
    ratio = pr_end / pr[:, 0]
    sv = sv_ci = None
    if paired:
        maps = np.median(_paired_maps(clouds, full_weights[0]), axis=1)  # (n_boot + 1, d)
        sv, sv_ci = maps[0], _interval(maps[1:], alpha)

    verdict, reason = _contraction_verdict(most, spread, contraction_tol, anisotropy_tol, alpha)
    return ContractionResult(
        verdict=verdict, reason=reason, basis=vectors, log_variance=lv_b[0], direction_change=change_b[0],
        direction_change_interval=_interval(change_b[1:], alpha), direction_rate=rates[0],
        direction_rate_interval=_interval(rates[1:], alpha), most_contracted=float(most[0]),
        most_contracted_interval=ci["most"], least_contracted=float(least[0]),
        least_contracted_interval=ci["least"], spread=float(spread[0]), spread_interval=ci["spread"],
        effective_dimension_start=float(pr[0, 0]), effective_dimension_end=float(pr_end[0]),
        effective_dimension_ratio=float(ratio[0]),
        effective_dimension_ratio_interval=tuple(float(v) for v in _interval(ratio[1:], alpha)),
        map_singular_values=sv, map_singular_values_interval=sv_ci, n=min(len(c) for c in b_half), window=window,
        quantile=quantile, contraction_tol=contraction_tol, anisotropy_tol=anisotropy_tol, alpha=alpha,
        most_boot=most, spread_boot=spread)


def _contraction_verdict(most: np.ndarray, spread: np.ndarray, contraction_tol: float, anisotropy_tol: float,
                         alpha: float) -> tuple[str, str]:
    """The verdict from the observed (row 0) and bootstrap (rows 1:) most-contracted change and spread."""
    log_tol = math.log(1 - contraction_tol)
    m_lo, m_hi = _interval(most[1:], alpha)
    s_lo, s_hi = _interval(spread[1:], alpha)
    if m_hi < log_tol:
        verdict = "directional" if s_lo > anisotropy_tol else "uniform" if s_hi < anisotropy_tol else "inconclusive"
    else:
        verdict = "none" if m_lo > log_tol else "inconclusive"
    reason = (f"most-contracted directions: log variance change {most[0]:.3g} [{m_lo:.3g}, {m_hi:.3g}] "
              f"(threshold {log_tol:.3g}); spread {spread[0]:.3g} [{s_lo:.3g}, {s_hi:.3g}] "
              f"(threshold {anisotropy_tol:.3g})")
    return verdict, reason


@dataclass(frozen=True, eq=False)
class PooledContraction:
    """The contraction verdict of several chains of one setting: each chain's statistics (measured on its own
    held-apart half) averaged over chains, with the bootstrap replicates averaged alike (chains independent)."""

    verdict: str
    reason: str
    most_contracted: float
    most_contracted_interval: tuple
    spread: float
    spread_interval: tuple
    effective_dimension_ratio: float
    per_chain: list  # the ContractionResult of each chain
    n_chains: int

    def summary(self) -> dict:
        return {"verdict": self.verdict, "most_contracted": self.most_contracted,
                "most_low": self.most_contracted_interval[0], "most_high": self.most_contracted_interval[1],
                "spread": self.spread, "spread_low": self.spread_interval[0], "spread_high": self.spread_interval[1],
                "chains": self.n_chains, "per_chain": [r.verdict for r in self.per_chain], "reason": self.reason}


def pool_contraction(results) -> PooledContraction:
    """Pool `assess_contraction` results of several chains of one setting (same n_boot and thresholds): one
    verdict with the power of all chains (a chain is one realisation of the same operator T)."""
    results = list(results)
    if not results:
        raise ValueError("pool_contraction needs at least one ContractionResult")
    if len({len(r.most_boot) for r in results}) > 1:
        raise ValueError("pooled results must share n_boot")
    first = results[0]
    most = np.mean([r.most_boot for r in results], axis=0)
    spread = np.mean([r.spread_boot for r in results], axis=0)
    verdict, reason = _contraction_verdict(most, spread, first.contraction_tol, first.anisotropy_tol, first.alpha)
    return PooledContraction(
        verdict=verdict, reason=reason, most_contracted=float(most[0]),
        most_contracted_interval=tuple(float(v) for v in _interval(most[1:], first.alpha)), spread=float(spread[0]),
        spread_interval=tuple(float(v) for v in _interval(spread[1:], first.alpha)),
        effective_dimension_ratio=float(np.mean([r.effective_dimension_ratio for r in results])),
        per_chain=results, n_chains=len(results))


# ----------------------------------------------------------------------------------------------------------
# 3. the outcome, observed on held-out generations


@dataclass(frozen=True, eq=False)
class ObservationResult:
    """What the late, held-out generations show, from numbers the prediction does not use."""

    outcome: str  # one of OBSERVED_OUTCOMES
    reason: str
    agreement: str  # "agree", "disagree" or "undetermined": do the late clouds of different starts coincide?
    late_excess: float  # between-start excess over the held-out generations (the start's yardstick: start_distance)
    late_excess_interval: tuple
    start_distance: float
    stationarity: str  # "stationary", "moving" or "undetermined"
    drift_slope: float  # per-generation slope of each chain's cumulative drift (distance to its generation 0)
    drift_slope_interval: tuple
    dimension: str  # "low", "full" or "undetermined"
    effective_dimension_ratio: float  # late effective dimension / generation 0's, mean over chains
    effective_dimension_ratio_interval: tuple
    generations: tuple  # the held-out generations read

    def summary(self) -> dict:
        return {"outcome": self.outcome, "agreement": self.agreement, "late_excess": self.late_excess,
                "late_low": self.late_excess_interval[0], "late_high": self.late_excess_interval[1],
                "stationarity": self.stationarity, "drift_slope": self.drift_slope,
                "drift_slope_low": self.drift_slope_interval[0], "drift_slope_high": self.drift_slope_interval[1],
                "dimension": self.dimension, "effective_dimension_ratio": self.effective_dimension_ratio,
                "effective_dimension_ratio_low": self.effective_dimension_ratio_interval[0],
                "effective_dimension_ratio_high": self.effective_dimension_ratio_interval[1],
                "reason": self.reason}


def _cumulative_drift(chain: list[np.ndarray], gens, h, weights) -> np.ndarray:
    """(n_boot + 1, len(gens)) MMD^2 between each listed generation and generation 0 of one chain."""
    w0 = weights[0]
    k00 = _within(chain[0], w0, h)
    return np.stack([k00 + _within(chain[g], weights[g], h) - 2 * _cross(chain[g], chain[0], weights[g], w0, h)
                     for g in gens], axis=1)


def observe_outcome(chains, *, held_out: int = 3, seed: int = 0, kernel: str = "linear",
                    bandwidth: float | None = None, replicates: str = "auto", mixed_effect: float = 0.1,
                    move_tol: float = 0.02, dim_tol: float = 0.25, alpha: float = 0.05,
                    n_boot: int = 200) -> ObservationResult:
    """The outcome the late generations show, read from quantities the prediction does not use.

    `chains[start][replicate][generation]` as for `assess_mixing`; only generation 0 (the yardstick) and the last
    `held_out` generations are read (`assess_setting` predicts from the others). Three readings, each with an
    interval at level 1 - alpha (row bootstrap by trajectory, and for the slope the scatter between chains):
      agreement    the between-start excess over the held-out generations (as in `assess_mixing`) against
                   mixed_effect x its generation-0 value: "agree" (upper bound below), "disagree" (lower bound
                   above) or "undetermined";
      stationarity each chain's cumulative drift (MMD^2 to its own generation 0) regressed on the generation over
                   the held-out window (one intercept per chain): "stationary" (slope's upper bound below
                   move_tol x the starting excess per generation), "moving" (lower bound above it), else
                   "undetermined";
      dimension    late effective dimension (participation ratio, mean over the held-out generations) / that of
                   generation 0, averaged over chains: "low" (upper bound < 1 - dim_tol), "full" (lower bound >
                   1 - dim_tol), else "undetermined".
    Outcome (ours): stationary + disagree -> "separate basins"; agree + stationary + low -> "resonance" (low-
    dimensional and stationary is resonance whatever the total variance did); agree + full, or moving + full ->
    "wandering"; anything else -> "inconclusive".
    """
    ens = _as_ensemble(chains)
    held_out = _check_count(held_out, "held_out", 2)
    G1 = len(ens[0][0])
    if held_out > G1 - 2:
        raise ValueError(f"held_out must leave at least one generation after 0 to predict from: at most {G1 - 2} "
                         f"for {G1 - 1} generations, got {held_out}")
    mixed_effect = _check_range(mixed_effect, "mixed_effect", 0, 1, low_open=True, high_open=True)
    move_tol = _check_range(move_tol, "move_tol", 0)
    dim_tol = _check_range(dim_tol, "dim_tol", 0, 1, low_open=True, high_open=True)
    alpha = _check_range(alpha, "alpha", 0, 0.5, low_open=True, high_open=True)
    n_boot = _check_count(n_boot, "n_boot", 20)
    mode = _resolve_replicates(ens, replicates)
    h = _bandwidth(ens, kernel, bandwidth, seed)
    gens = list(range(G1 - held_out, G1))
    per_gen = _units(ens, mode, seed)
    rng = np.random.default_rng([seed, 17])
    read = [per_gen[0]] + [per_gen[g] for g in gens]
    between, level = _excess_levels(read, h, n_boot, rng, mode)
    excess = between - level
    start = float(excess[0, 0])
    late = excess[:, 1:].mean(1)
    lo, hi = (float(v) for v in _interval(late[1:], alpha))
    threshold = mixed_effect * start
    agreement = "agree" if hi < threshold else "disagree" if lo > threshold else "undetermined"

    distinct = [reps[:1] if _identical_replicates(reps) else reps for reps in ens]
    slopes_boot, resid, n_chains = [], [], 0
    ratios = []
    x = np.asarray(gens, dtype=np.float64) - np.mean(gens)
    for reps in distinct:
        for c in reps:
            drawn = _WeightCache(rng, n_boot)
            weights = {g: drawn.get_for("chain", len(c[g])) for g in [0] + gens}
            drift = _cumulative_drift(c, gens, h, weights)  # (n_boot + 1, held_out)
            slopes_boot.append(drift @ x / (x @ x))
            centred = drift[0] - drift[0].mean()
            resid.append(centred - slopes_boot[-1][0] * x)
            pr = np.stack([participation_ratio_of_covariance(_weighted_covariances(c[g], weights[g]))
                           for g in [0] + gens], axis=1)
            ratios.append(pr[:, 1:].mean(1) / pr[:, 0])
            n_chains += 1
    slope = np.mean(slopes_boot, axis=0)
    dof = n_chains * (held_out - 1) - 1
    scatter = math.sqrt(np.sum(np.square(resid)) / dof / (n_chains * (x @ x))) if dof > 0 else 0.0
    slope_se, q = larger_error(within=float(slope[1:].std(ddof=1)), scatter=scatter, dof=dof, alpha=alpha)
    s_lo, s_hi = float(slope[0]) - q * slope_se, float(slope[0]) + q * slope_se
    tol = move_tol * start
    stationarity = "stationary" if s_hi < tol else "moving" if s_lo > tol else "undetermined"
    ratio = np.mean(ratios, axis=0)
    r_lo, r_hi = (float(v) for v in _interval(ratio[1:], alpha))
    dimension = "low" if r_hi < 1 - dim_tol else "full" if r_lo > 1 - dim_tol else "undetermined"

    if stationarity == "stationary" and agreement == "disagree":
        outcome = "separate basins"
    elif agreement == "agree" and stationarity == "stationary" and dimension == "low":
        outcome = "resonance"
    elif dimension == "full" and (agreement == "agree" or stationarity == "moving"):
        outcome = "wandering"
    else:
        outcome = "inconclusive"
    reason = (f"late clouds {agreement} (excess {late[0]:.3g} [{lo:.3g}, {hi:.3g}] vs {threshold:.3g}); "
              f"{stationarity} (drift slope {slope[0]:.3g} [{s_lo:.3g}, {s_hi:.3g}] vs {tol:.3g}); "
              f"dimension {dimension} (ratio {ratio[0]:.3g} [{r_lo:.3g}, {r_hi:.3g}])")
    return ObservationResult(
        outcome=outcome, reason=reason, agreement=agreement, late_excess=float(late[0]), late_excess_interval=(lo, hi),
        start_distance=start, stationarity=stationarity, drift_slope=float(slope[0]), drift_slope_interval=(s_lo, s_hi),
        dimension=dimension, effective_dimension_ratio=float(ratio[0]), effective_dimension_ratio_interval=(r_lo, r_hi),
        generations=tuple(gens))


# ----------------------------------------------------------------------------------------------------------
# 4. the paper's rule, one setting, one row


def predicted_outcome(mixing: str, contraction: str) -> str:
    """The paper's rule on the two verdicts: ergodic (mixed or mixing) + directional -> "resonance"; ergodic
    without directional contraction (uniform or none) -> "wandering" (an ergodic chain that contracts uniformly
    settles on a full-dimensional cloud: the paper's dichotomy has no other name for it); separated -> "separate
    basins" ("... (each contracting)" when the chains contract directionally, the CycleGAN picture); an
    inconclusive mixing verdict, or an inconclusive contraction of an ergodic chain -> "inconclusive"."""
    check_choice(mixing, MIXING_VERDICTS, "mixing verdict")
    check_choice(contraction, CONTRACTION_VERDICTS, "contraction verdict")
    if mixing == "inconclusive":
        return "inconclusive"
    if mixing == "separated":
        return "separate basins (each contracting)" if contraction == "directional" else "separate basins"
    if contraction == "inconclusive":
        return "inconclusive"
    return "resonance" if contraction == "directional" else "wandering"


def outcomes_agree(predicted: str, observed: str) -> bool | None:
    """Prediction and observation name the same outcome ("separate basins (each contracting)" is a kind of
    "separate basins"); None when either is inconclusive (nothing to compare)."""
    check_choice(predicted, OUTCOMES, "predicted outcome")
    check_choice(observed, OBSERVED_OUTCOMES, "observed outcome")
    if "inconclusive" in (predicted, observed):
        return None
    return predicted.split(" (")[0] == observed


@dataclass(frozen=True, eq=False)
class SettingAssessment:
    """Both measures on the predicting generations, the observation on the held-out ones, and the rule."""

    mixing: MixingResult
    contraction: PooledContraction
    observation: ObservationResult
    predicted: str
    observed: str
    agree: bool | None
    prediction_generations: int  # generations after 0 that the measures read
    held_out: int  # the last generations the observation reads


def assess_setting(chains, *, held_out: int = 3, seed: int = 0, paired: bool = False, mixing: dict | None = None,
                   contraction: dict | None = None, observation: dict | None = None) -> SettingAssessment:
    """One setting: `assess_mixing` and `assess_contraction` (pooled over every chain) on generations
    0 .. G - held_out, `observe_outcome` on the last `held_out`, and the rule's prediction against the
    observation. mixing / contraction / observation: keyword options of those functions."""
    ens = _as_ensemble(chains)
    held_out = _check_count(held_out, "held_out", 2)
    G1 = len(ens[0][0])
    if G1 - held_out < 3:
        raise ValueError(f"held_out={held_out} leaves {G1 - held_out - 1} generations after 0 to predict from; "
                         "the measures need at least 2: run longer chains or hold out fewer")
    early = [[c[:G1 - held_out] for c in reps] for reps in ens]
    mix = assess_mixing(early, seed=seed, **(mixing or {}))
    distinct = [c for reps in early for c in (reps[:1] if _identical_replicates(reps) else reps)]
    options = dict(contraction or {})
    options.setdefault("window", min(3, G1 - held_out - 1))
    per_chain = [assess_contraction(c, seed=seed + i, paired=paired, **options) for i, c in enumerate(distinct)]
    pooled = pool_contraction(per_chain)
    seen = observe_outcome(ens, held_out=held_out, seed=seed, **(observation or {}))
    predicted = predicted_outcome(mix.verdict, pooled.verdict)
    return SettingAssessment(mixing=mix, contraction=pooled, observation=seen, predicted=predicted,
                             observed=seen.outcome, agree=outcomes_agree(predicted, seen.outcome),
                             prediction_generations=G1 - held_out - 1, held_out=held_out)


def _with_interval(value: float, interval, fmt: str = ".3g") -> str:
    lo, hi = interval
    return f"{value:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def claim_row(setting: str, data: str, assessment: SettingAssessment, *, feature_space: str = "",
              ergodicity: str | None = None, ergodicity_note: str = "") -> dict:
    """One row of the claim table: every verdict with the numbers and intervals behind it. `ergodicity`
    overrides the set-level mixing verdict for a deterministic map judged per trajectory (attractors), with
    `ergodicity_note` saying what decided it; the prediction then follows from it."""
    m, c, o = assessment.mixing, assessment.contraction, assessment.observation
    verdict = m.verdict if ergodicity is None else ergodicity
    predicted = assessment.predicted if ergodicity is None else predicted_outcome(verdict, c.verdict)
    run = assessment.prediction_generations
    return {
        "setting": setting, "data": data, "feature space": feature_space,
        "starts x replicates": f"{m.n_starts} x {m.n_replicates}" + (" (halves)" if m.replicates == "halves" else ""),
        "n per set": m.n, "generations (measured + held out)": f"{run} + {assessment.held_out}",
        "mixing verdict": verdict + (f" ({ergodicity_note})" if ergodicity_note else ""),
        "excess decay rate per generation": _with_interval(m.rate, m.rate_interval),
        "mixing time (generations)": (f"{m.mixing_time:.3g} [{m.mixing_time_interval[0]:.3g}, "
                                      f"{m.mixing_time_interval[1]:.3g}] vs run {run}"),
        "contraction verdict": c.verdict,
        "most-contracted log variance change": _with_interval(c.most_contracted, c.most_contracted_interval),
        "anisotropy (log spread)": _with_interval(c.spread, c.spread_interval),
        "predicted": predicted,
        "observed (held-out generations)": o.outcome,
        "late clouds of the starts": o.agreement, "late drift": o.stationarity,
        "late effective dimension / start": _with_interval(o.effective_dimension_ratio,
                                                           o.effective_dimension_ratio_interval),
        "agree": "n/a (inconclusive)" if outcomes_agree(predicted, o.outcome) is None else
                 ("yes" if outcomes_agree(predicted, o.outcome) else "no"),
    }


def pca_project(chains, n_components: int | None) -> list:
    """Every cloud of a nested list of chains (any depth: chains[start][replicate][generation] or a list of
    chains) on the leading n_components PCA axes of ALL their clouds pooled, so that directions which collapse
    late are kept and one fixed basis serves every measure of a setting. None or 0: the clouds unchanged."""
    def leaves(node):
        if isinstance(node, np.ndarray) and node.ndim == 2:
            return [node]
        return [x for child in getattr(node, "states", node) for x in leaves(child)]

    def mapped(node, f):
        if isinstance(node, np.ndarray) and node.ndim == 2:
            return f(node)
        return [mapped(child, f) for child in getattr(node, "states", node)]

    if not n_components:
        return mapped(chains, lambda x: np.asarray(x, dtype=np.float64))
    pooled = np.concatenate([np.asarray(x, dtype=np.float64) for x in leaves(chains)])
    k = int(min(n_components, pooled.shape[1], len(pooled) - 1))
    mean, axes, _ = principal_axes(pooled, k)
    return mapped(chains, lambda x: (np.asarray(x, dtype=np.float64) - mean) @ axes.T)


# ----------------------------------------------------------------------------------------------------------
# 5. chains with known answers


def start_clouds(n_chains: int = 3, *, n_samples: int = 400, dim: int = 4, offset: float = 2.0,
                 spread: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    """Initial sets that differ by position: chain c is N(centre_c, spread^2 I), centre_c at distance `offset`
    from the origin, at angle 2 pi c / n_chains in the plane of the first two axes."""
    if isinstance(n_chains, bool) or int(n_chains) != n_chains or n_chains < 1:
        raise ValueError(f"n_chains must be a positive integer, got {n_chains}")
    if isinstance(dim, bool) or int(dim) != dim or dim < 2:
        raise ValueError(f"dim must be an integer >= 2 (the starts are placed in a plane), got {dim}")
    out = []
    for c in range(int(n_chains)):
        centre = np.zeros(int(dim))
        angle = 2 * np.pi * c / n_chains
        centre[:2] = offset * np.cos(angle), offset * np.sin(angle)
        out.append(centre + spread * np.random.default_rng([seed, c]).standard_normal((int(n_samples), int(dim))))
    return out


def _run(step, starts, n_generations, seed, replicates: int = 2) -> list[list[list[np.ndarray]]]:
    """chains[start][replicate]: every (start, replicate) its own noise stream (run_chain draws from the chain
    seed and the generation), the replicates of a start from the same start set."""
    replicates = _check_count(replicates, "replicates")
    return [[run_chain(step, x0, n_generations, seed=int(np.random.SeedSequence([seed, c, r]).generate_state(1)[0]),
                       progress=False).states for r in range(replicates)] for c, x0 in enumerate(starts)]


def rotation_matrix(dim: int, angles=(0.5, 1.1)) -> np.ndarray:
    """Block-diagonal rotation: the k-th 2x2 block (axes 2k, 2k+1) turns by angles[k % len(angles)]; an odd
    last axis is left fixed."""
    r = np.eye(dim)
    for k in range(dim // 2):
        a = angles[k % len(angles)]
        r[2 * k:2 * k + 2, 2 * k:2 * k + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return r


def linear_contraction_chains(factors=(0.9, 0.7, 0.5, 0.3), *, noise: float = 0.3, n_chains: int = 3,
                              replicates: int = 2, n_generations: int = 50, n_samples: int = 400,
                              offset: float = 2.0, spread: float = 1.0, seed: int = 0) -> list:
    """(i) x -> A x + noise * N(0, I), A = diag(factors): ergodic (positive noise density everywhere) and
    contracting along each axis at its own rate -> resonance. Stationary law N(0, diag(noise^2 / (1 - a^2)));
    the starts are forgotten like max|a|^g (0.9^50 ~ 0.005 by default). Equal factors give a uniform
    contraction. Returns chains[start][replicate][generation]."""
    a = np.asarray(factors, dtype=np.float64)
    if a.ndim != 1 or np.any(np.abs(a) >= 1):
        raise ValueError(f"factors must be a vector with |a| < 1, got {factors}")

    def step(x, ctx):
        return x * a + noise * ctx.rng.standard_normal(x.shape)
    return _run(step, start_clouds(n_chains, n_samples=n_samples, dim=len(a), offset=offset, spread=spread,
                                   seed=seed), n_generations, seed, replicates)


def noisy_rotation_chains(*, dim: int = 4, noise: float = 2.0, angles=(0.5, 1.1), n_chains: int = 3,
                          replicates: int = 2, n_generations: int = 40, n_samples: int = 400, offset: float = 2.0,
                          spread: float = 1.0, seed: int = 0) -> list:
    """(ii) x -> R x + noise * N(0, I): a rotating random walk of every sample. Nothing contracts and there is
    no stationary law: the cloud spreads like noise * sqrt(g) while each start's mean turns on its circle for
    ever (the means never forget the start, the spreading clouds overlap more and more), so neither "mixing"
    nor "separated" can be said: inconclusive."""
    r = rotation_matrix(dim, angles)

    def step(x, ctx):
        return x @ r.T + noise * ctx.rng.standard_normal(x.shape)
    return _run(step, start_clouds(n_chains, n_samples=n_samples, dim=dim, offset=offset, spread=spread, seed=seed),
                n_generations, seed, replicates)


def double_well_chains(*, dim: int = 4, step_size: float = 0.1, stiffness=None, n_chains: int = 3,
                       replicates: int = 2, n_generations: int = 30, n_samples: int = 400, offset: float = 2.0,
                       spread: float = 0.25, seed: int = 0) -> list:
    """(iii) deterministic gradient descent x -> x - step_size * grad V on
    V(x) = (x_0^2 - 1)^2 / 4 + sum_k stiffness_k x_k^2 / 2 (k >= 1), fixed points (+-1, 0, ..., 0).
    No noise: a point stays in the basin of its sign of x_0, so chains started on different sides settle at
    different fixed points (not ergodic), each contracting at per-axis rates 1 - step_size * curvature
    (curvature 2 along x_0, stiffness_k along x_k; default stiffness linspace(1, 6, dim - 1)) -> separate
    basins, each contracting. The default small `spread` keeps each start on one side. Replicates are
    identical (deterministic)."""
    k = np.linspace(1.0, 6.0, dim - 1) if stiffness is None else np.asarray(stiffness, dtype=np.float64)
    if k.shape != (dim - 1,):
        raise ValueError(f"stiffness needs dim - 1 = {dim - 1} values, got shape {k.shape}")

    def step(x, ctx):
        grad = np.concatenate([x[:, :1] ** 3 - x[:, :1], x[:, 1:] * k], axis=1)
        return x - step_size * grad
    return _run(step, start_clouds(n_chains, n_samples=n_samples, dim=dim, offset=offset, spread=spread, seed=seed),
                n_generations, seed, replicates)


def isometry_chains(*, dim: int = 4, angles=(0.5, 1.1), n_chains: int = 3, replicates: int = 2,
                    n_generations: int = 30, n_samples: int = 400, offset: float = 2.0, spread: float = 1.0,
                    seed: int = 0) -> list:
    """(iv) deterministic rotation x -> R x: every distance is kept, so chains never forget their start (not
    ergodic) and nothing contracts -> separate basins (here: separate orbits)."""
    r = rotation_matrix(dim, angles)
    return _run(lambda x, ctx: x @ r.T,
                start_clouds(n_chains, n_samples=n_samples, dim=dim, offset=offset, spread=spread, seed=seed),
                n_generations, seed, replicates)


SYNTHETIC = {  # name -> (builder, expected mixing verdict, expected contraction verdict, predicted outcome)
    "noisy linear contraction": (linear_contraction_chains, "mixed", "directional", "resonance"),
    "noisy rotation": (noisy_rotation_chains, "inconclusive", "none", "inconclusive"),
    "deterministic double well": (double_well_chains, "separated", "directional",
                                  "separate basins (each contracting)"),
    "deterministic isometry": (isometry_chains, "separated", "none", "separate basins"),
}


def known_answer_chains(case: str, *, n: int = 200, dim: int = 10, generations: int = 10, starts: int = 2,
                        replicates: int = 2, offset: float = 2.0, seed: int = 0) -> list:
    """chains[start][replicate][generation] of one KNOWN_ANSWERS case, at the sizes a real row uses. Starts:
    N(centre_s, I) with the centres `offset` from the origin at angles 2 pi s / starts (start_clouds); every
    (start, replicate) has its own noise stream; "shared" noise moves a whole cloud (as a retrained model does).
      nothing changes         every generation a fresh sample of the start's own law
      slow geometric mixing   x -> 0.93 x + sqrt(1 - 0.93^2) e + 0.05 shared: mean offset decays 0.93^g
      fast mixing             the same with 0.5
      two fixed basins        x -> w_s + 0.5 (x - w_s) + sqrt(0.75) 0.5 e: each start's own basin (w_s its
                              centre), spread 1 -> 0.5 uniformly; never leaves it
      random walk             the cloud's mean takes a shared N(0, 0.3^2 I) step per generation, fresh samples
      directional contraction x_k -> 0.5 x_k + sqrt(0.75) s_k e, s = 1 on half the axes, 0.3 on the rest
      uniform contraction     the same with s = 0.3 on every axis
    """
    check_choice(case, KNOWN_ANSWERS, "case")
    dim = _check_count(dim, "dim", 2)
    scales = {"directional contraction": np.r_[np.ones(dim // 2), np.full(dim - dim // 2, 0.3)],
              "uniform contraction": np.full(dim, 0.3)}
    x0s = start_clouds(starts, n_samples=n, dim=dim, offset=offset, seed=seed)
    centres = [x.mean(0) * 0 + np.r_[offset * np.cos(2 * np.pi * s / starts), offset * np.sin(2 * np.pi * s / starts),
                                       np.zeros(dim - 2)] for s, x in enumerate(x0s)]

    def make_step(s):
        w = centres[s]

        def step(x, ctx):
            rng = ctx.rng
            if case == "nothing changes":
                return w + rng.standard_normal(x.shape)
            if case in ("slow geometric mixing", "fast mixing"):
                a = 0.93 if case == "slow geometric mixing" else 0.5
                return a * x + math.sqrt(1 - a * a) * rng.standard_normal(x.shape) + 0.05 * rng.standard_normal(dim)
            if case == "two fixed basins":
                return w + 0.5 * (x - w) + math.sqrt(0.75) * 0.5 * rng.standard_normal(x.shape)
            if case == "random walk":
                mean = ctx.history[-1].mean(0) if ctx.generation > 1 else w
                return mean + 0.3 * rng.standard_normal(dim) + rng.standard_normal(x.shape)
            return 0.5 * x + math.sqrt(0.75) * scales[case] * rng.standard_normal(x.shape)
        return step

    return [[run_chain(make_step(s), x0, generations, progress=False,
                       seed=int(np.random.SeedSequence([seed, s, r, 3]).generate_state(1)[0])).states
             for r in range(replicates)] for s, x0 in enumerate(x0s)]


KNOWN_ANSWERS = {  # case -> expected (mixing, contraction, observed); None: not scored (no single right answer)
    "nothing changes": ("separated", "none", "separate basins"),
    "slow geometric mixing": ("mixing", "none", None),
    "fast mixing": ("mixed", "none", "wandering"),
    "two fixed basins": ("separated", "uniform", "separate basins"),
    "random walk": ("inconclusive", "none", "wandering"),
    "directional contraction": ("mixed", "directional", "resonance"),
    "uniform contraction": ("mixed", "uniform", "wandering"),
}


def calibrate(*, n: int = 200, dim: int = 10, generations: int = 10, starts: int = 2, replicates: int = 2,
              held_out: int = 3, seeds: int = 20, seed: int = 0, cases=None, progress: bool = False,
              **options) -> list[dict]:
    """Error rates of every verdict of `assess_setting` on the KNOWN_ANSWERS chains at the given sizes (use the
    sizes of the real rows), over `seeds` independent draws. One row per case and measure: the expected verdict,
    the share of draws that gave it ("correct"), gave "inconclusive" (no answer: not an error, but reported), or
    gave another verdict ("error"), and the counts. options: keyword options of assess_setting."""
    from tqdm.auto import tqdm

    seeds = _check_count(seeds, "seeds")
    names = list(KNOWN_ANSWERS) if cases is None else list(cases)
    rows = []
    for case in tqdm(names, desc="calibration", disable=not progress, leave=False):
        expected = dict(zip(("mixing", "contraction", "observed"), KNOWN_ANSWERS[case]))
        got = {k: [] for k in expected}
        for i in range(seeds):
            chains = known_answer_chains(case, n=n, dim=dim, generations=generations, starts=starts,
                                         replicates=replicates, seed=seed + i)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                a = assess_setting(chains, held_out=held_out, seed=seed + i, **options)
            got["mixing"].append(a.mixing.verdict)
            got["contraction"].append(a.contraction.verdict)
            got["observed"].append(a.observed)
        for measure, want in expected.items():
            if want is None:
                continue
            v = got[measure]
            right = sum(x == want for x in v)
            unsure = sum(x == "inconclusive" for x in v) if want != "inconclusive" else 0
            rows.append({"case": case, "measure": measure, "expected": want, "draws": seeds,
                         "correct": right / seeds, "inconclusive": unsure / seeds,
                         "error": (seeds - right - unsure) / seeds,
                         "verdicts": ", ".join(f"{k} {v.count(k)}" for k in sorted(set(v))),
                         "sizes": f"n={n}, dim={dim}, G={generations} ({held_out} held out), "
                                  f"{starts} starts x {replicates} replicates"})
    return rows
