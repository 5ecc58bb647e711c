"""The paper's two conditions for neural resonance, measured on feedback chains: ergodicity and directional
contraction, plus the rule that turns them into a predicted outcome, and four synthetic chains whose answers are
known by construction.

The paper states the conditions (an ergodic feedback process + a directionally contracting latent
representation -> resonance; no contraction -> endless wandering; no ergodicity -> separate basins) but
publishes no way of measuring them on samples. Everything below, the estimators, the criteria and every
default threshold, is OUR RECONSTRUCTION, not the paper's published criteria; each threshold is a keyword
argument so a notebook can state and vary it.

Input format: a chain is a list of per-generation feature clouds, arrays (n_samples, dim), generation 0 first
(a `chain.ChainResult` is accepted too); ergodicity needs several chains of one setting started from different
initial sets.

1. Ergodicity (`measure_ergodicity`): does the chain forget its start? Between-chain distance per generation
   (unbiased MMD^2 with a Gaussian kernel whose bandwidth is fixed at generation 0, or FID) against the
   within-chain noise level (the same distance between two disjoint halves of one cloud). "mixes" when, for
   EVERY pair of chains, the last-window between-chain distance is <= noise_factor x the noise level AND, in
   units of the noise, has shrunk by at least shrink_tol relative to generation 0.
2. Directional contraction (`measure_contraction`): per-direction variance factors along a FIXED orthonormal
   basis, (generations - 1, directions) log ratios; optionally the singular values of the least-squares linear
   map between consecutive generations when samples are paired. "directional contraction" when the
   most-contracted directions lost more than contraction_tol of their variance over the run AND the spread of
   log factors (least- minus most-contracted) exceeds anisotropy_tol; "uniform contraction" when they shrink
   but evenly; "no contraction" otherwise.
3. `predicted_outcome(ergodic, directional)`: resonance / wandering / separate basins.
4. `linear_contraction_chains`, `noisy_rotation_chains`, `double_well_chains`, `isometry_chains`: the four
   combinations, run through `chain.run_chain` in memory.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import pdist

from .chain import run_chain
from .metrics import as_features, fid

METRICS = ("mmd", "fid")
NOISE_MODES = ("halves", "consecutive")
BASES = ("final", "pooled", "initial")
VERDICTS_ERGODICITY = ("mixes", "does not mix")
VERDICTS_CONTRACTION = ("directional contraction", "uniform contraction", "no contraction")
OUTCOMES = ("resonance", "wandering", "separate basins (each contracting)", "separate basins")


def _check_choice(value, allowed, name: str) -> None:
    if isinstance(value, str) and value in allowed:
        return
    raise ValueError(f"unknown {name} {value!r}; choose one of {list(allowed)}")


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


def _check_window(window, n_steps: int) -> int:
    if isinstance(window, bool) or int(window) != window or not 1 <= window <= n_steps:
        raise ValueError(f"window must be an integer between 1 and the number of steps ({n_steps}), got {window}")
    return int(window)


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


def mmd2_rbf(x, y, *, bandwidth: float) -> float:
    """Unbiased MMD^2 between the rows of x and y with k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2)): the
    diagonals k(x_i, x_i) are left out of the within-set means, so it is 0 on average for two samples of one
    distribution (single values can be negative)."""
    x, y = as_features(x, "x"), as_features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has dim {x.shape[1]} but y has dim {y.shape[1]}")
    h = _check_range(bandwidth, "bandwidth", 0, low_open=True)
    m, n = len(x), len(y)
    kxx, kyy, kxy = (np.exp(-_squared_distances(a, b) / (2 * h * h)) for a, b in ((x, x), (y, y), (x, y)))
    return float((kxx.sum() - m) / (m * (m - 1)) + (kyy.sum() - n) / (n * (n - 1)) - 2 * kxy.mean())


# ----------------------------------------------------------------------------------------------------------
# 1. ergodicity


@dataclass(frozen=True, eq=False)
class ErgodicityResult:
    """Between-chain vs within-chain distances per generation g = 0..G, and the verdict they give."""

    between: np.ndarray  # (G+1,) mean over chain pairs of the between-chain distance
    between_pairs: np.ndarray  # (n_pairs, G+1), one row per pair in `pairs`
    pairs: tuple  # ((i, j), ...) chain indices
    within: np.ndarray  # (G+1,) RMS over chains of the within-chain distance (NaN at g=0 for "consecutive")
    within_chains: np.ndarray  # (n_chains, G+1)
    n: int  # samples per set in every distance
    metric: str  # "mmd" (unbiased MMD^2, Gaussian kernel) or "fid"
    bandwidth: float | None  # the kernel bandwidth (fixed from generation 0); None for FID
    noise: str  # how the within-chain noise was measured: "halves" or "consecutive"
    window: int  # the last `window` generations are averaged
    noise_level: float  # RMS of the within distances over chains and the last window
    noise_start: float  # RMS over chains and `window` re-splits of the halves distance at generation 0
    between_last: float  # the largest over pairs of the mean between-chain distance over the last window
    end_over_start: float  # the largest over pairs of that last-window mean / its generation-0 value
    separation_start: float  # smallest over pairs of between(0) / noise_start
    separation_last: float  # largest over pairs of (last-window mean between) / noise_level
    shrink: float  # smallest over pairs of 1 - separation_last / separation_start; NaN if a start is at 0
    starts_distinguishable: bool  # every pair's separation at generation 0 exceeds noise_factor
    noise_factor: float
    shrink_tol: float
    verdict: str  # "mixes" or "does not mix"

    @property
    def mixes(self) -> bool:
        return self.verdict == "mixes"


def _split(x: np.ndarray, n: int, key) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random subsets of n rows each, shuffled by the seed sequence `key`."""
    perm = np.random.default_rng(key).permutation(len(x))
    return x[perm[:n]], x[perm[n:2 * n]]


def _in_noise_units(distance: float, noise: float) -> float:
    if noise > 0:
        return distance / noise
    return 0.0 if distance <= 0 else math.inf  # a noiseless (deterministic, collapsed) cloud


def measure_ergodicity(chains, *, metric: str = "mmd", n: int | None = None, bandwidth: float | None = None,
                       noise: str = "halves", window: int = 5, noise_factor: float = 3.0, shrink_tol: float = 0.5,
                       collapse_tol: float = 0.01, seed: int = 0) -> ErgodicityResult:
    """Do chains of one setting, started from different initial sets, forget their start?

    Each cloud is shuffled (with `seed`) and split into two disjoint halves A and B of n samples each
    (default n = half the smallest cloud), so every distance compares two sets of n:
      between_ij(g) = d(chain_i[g].A, chain_j[g].B) for each pair i < j;
      within_i(g)   = d(chain_i[g].A, chain_i[g].B)            (noise="halves", default: pure sampling noise),
                    = d(chain_i[g].A, chain_i[g-1].B)          (noise="consecutive": only meaningful once the
                                                                chains are stationary, drift counts as noise).
    d is the unbiased MMD^2 with a Gaussian kernel (metric="mmd", default) whose bandwidth is fixed from
    generation 0 (median heuristic over the pooled generation-0 clouds, or `bandwidth`), so every generation
    is measured in one unit (a bandwidth re-fitted per generation would shrink with the cloud and hide the
    contraction), or FID (metric="fid", via metrics.fid; biased by ~dim/n, so keep n well above dim).

    Criterion (ours), in units of the within-chain noise (so it reads the same for MMD, whose values fade as a
    cloud outgrows the fixed kernel, and for FID, whose floor grows with the cloud): noise_level = RMS of
    within_i(g) over chains and the last `window` generations, noise_start = RMS over chains and `window`
    re-splits of generation 0 into halves (RMS because unbiased MMD^2 of two samples of one law scatters
    around 0: its RMS is the null's spread); for each pair, separation_last = (mean of between_ij over the
    last `window` generations) / noise_level and separation_start = between_ij(0) / noise_start;
      "mixes" iff for every pair: separation_last <= noise_factor  (indistinguishable from sampling noise)
                             and 1 - separation_last / separation_start >= shrink_tol  (it got there by
                                 shrinking: the starts were told apart and no longer are),
      or, for chains whose sampling noise has vanished (noise_level <= sqrt(collapse_tol) x noise_start: a
      deterministic chain collapsing onto one state, where "noise units" lose their meaning), when the pair's
      last-window between-chain distance fell below collapse_tol x its generation-0 distance (0: off);
      otherwise "does not mix" (separate basins, or not yet mixed within the run).
    Defaults: window=5, noise_factor=3 (about three standard deviations of the null MMD^2), shrink_tol=0.5.
    Warns when the starts are not distinguishable at generation 0 (then nothing can be forgotten).
    Cost: (pairs + chains) x (G + 1) distances between sets of n; an MMD^2 costs O(n^2 dim) (BLAS), a FID
    two dim x dim eigendecompositions, so subsample wide features (pass n) on a busy CPU.
    """
    _check_choice(metric, METRICS, "metric")
    _check_choice(noise, NOISE_MODES, "noise")
    noise_factor = _check_range(noise_factor, "noise_factor", 0, low_open=True)
    shrink_tol = _check_range(shrink_tol, "shrink_tol", 0, 1, high_open=True)
    collapse_tol = _check_range(collapse_tol, "collapse_tol", 0, 1, high_open=True)
    if hasattr(chains, "states") or isinstance(chains, np.ndarray) or (
            len(chains) and isinstance(chains[0], np.ndarray) and np.ndim(chains[0]) == 2):
        raise ValueError("measure_ergodicity needs a list of chains (each a list of per-generation clouds); got a "
                         "list of clouds, i.e. a single chain")
    chains = [_as_chain(c, f"chain {i}") for i, c in enumerate(chains)]
    if len(chains) < 2:
        raise ValueError(f"ergodicity needs at least 2 chains started from different initial sets, got {len(chains)}")
    lengths = [len(c) for c in chains]
    if len(set(lengths)) > 1:
        raise ValueError(f"chains have different lengths (generations incl. 0): {lengths}")
    dims = [c[0].shape[1] for c in chains]
    if len(set(dims)) > 1:
        raise ValueError(f"chains have mismatched dims: {dims}")
    n_steps = lengths[0] - 1
    if n_steps < 1:
        raise ValueError("ergodicity needs at least one generation after generation 0")
    window = _check_window(window, n_steps)
    smallest = min(len(x) for c in chains for x in c)
    if n is None:
        n = smallest // 2
    if isinstance(n, bool) or int(n) != n or not 2 <= n <= smallest // 2:
        raise ValueError(f"n must be an integer between 2 and half the smallest cloud ({smallest // 2}), got {n}")
    n = int(n)

    if metric == "mmd":
        h = median_bandwidth(np.concatenate([c[0] for c in chains]), seed=seed) if bandwidth is None else \
            _check_range(bandwidth, "bandwidth", 0, low_open=True)

        def distance(a, b):
            return mmd2_rbf(a, b, bandwidth=h)
    else:
        h = None

        def distance(a, b):
            return fid(a, b, n=n).value

    # the disjoint halves: one shuffle per (chain, generation), so A and B never share a sample
    halves = [[_split(x, n, [seed, i, g]) for g, x in enumerate(chain)] for i, chain in enumerate(chains)]
    G1 = n_steps + 1
    pairs = tuple(itertools.combinations(range(len(chains)), 2))
    between_pairs = np.array([[distance(halves[i][g][0], halves[j][g][1]) for g in range(G1)] for i, j in pairs])
    within_chains = np.full((len(chains), G1), np.nan)
    for i in range(len(chains)):
        for g in range(G1):
            if noise == "halves":
                within_chains[i, g] = distance(halves[i][g][0], halves[i][g][1])
            elif g > 0:
                within_chains[i, g] = distance(halves[i][g][0], halves[i][g - 1][1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column at g=0 for "consecutive"
        within = np.sqrt(np.nanmean(within_chains**2, axis=0))

    last = slice(G1 - window, G1)
    # RMS: unbiased MMD^2 of two samples of one law scatters around 0, so its RMS is the null's spread
    noise_level = float(np.sqrt(np.mean(within_chains[:, last] ** 2)))
    # the noise at the start from `window` re-splits of generation 0 (as many values per chain as the window
    # has), always by halves: there is no earlier generation to compare with
    start_values = [distance(*_split(chain[0], n, [seed, i, 0, r])) for i, chain in enumerate(chains)
                    for r in range(window)]
    noise_start = float(np.sqrt(np.mean(np.square(start_values))))
    last_per_pair = between_pairs[:, last].mean(axis=1)
    # separations in units of the noise: scale-free, so FID (whose floor grows with the cloud) and a fixed-
    # bandwidth MMD (whose values fade as the cloud outgrows the kernel) read the same way
    sep_start = np.array([_in_noise_units(b, noise_start) for b in between_pairs[:, 0]])
    sep_last = np.array([_in_noise_units(b, noise_level) for b in last_per_pair])
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink_per_pair = np.where(sep_start > 0, 1 - sep_last / sep_start, np.nan)
    close = sep_last <= noise_factor
    shrunk = shrink_per_pair >= shrink_tol  # NaN compares False: nothing to shrink from
    start_per_pair = between_pairs[:, 0]
    noise_vanished = noise_level <= math.sqrt(collapse_tol) * noise_start  # the clouds themselves collapsed
    with np.errstate(divide="ignore", invalid="ignore"):
        end_over_start = np.where(start_per_pair > 0, last_per_pair / start_per_pair, np.inf)
    collapsed = noise_vanished & (end_over_start <= collapse_tol)
    verdict = "mixes" if bool(np.all((close & shrunk) | collapsed)) else "does not mix"
    distinguishable = bool(np.all(sep_start > noise_factor))
    if not distinguishable:
        warnings.warn("some chains start from initial sets that are indistinguishable at generation 0 (between-"
                      "chain distance within noise_factor x noise): ergodicity cannot be read from them; start "
                      "the chains from clearly different sets", UserWarning, stacklevel=2)
    return ErgodicityResult(
        between=between_pairs.mean(axis=0), between_pairs=between_pairs, pairs=pairs, within=within,
        within_chains=within_chains, n=n, metric=metric, bandwidth=h, noise=noise, window=window,
        noise_level=noise_level, noise_start=noise_start, between_last=float(last_per_pair.max()),
        end_over_start=float(end_over_start.max()),
        separation_start=float(sep_start.min()), separation_last=float(sep_last.max()),
        shrink=float("nan") if np.any(np.isnan(shrink_per_pair)) else float(shrink_per_pair.min()),
        starts_distinguishable=distinguishable, noise_factor=noise_factor, shrink_tol=shrink_tol, verdict=verdict)


# ----------------------------------------------------------------------------------------------------------
# 2. directional contraction


@dataclass(frozen=True, eq=False)
class ContractionResult:
    """Per-direction variance factors of one chain along a fixed basis, and the verdict they give."""

    variances: np.ndarray  # (G+1, k) variance of each generation (about its own mean) along each basis direction
    log_factors: np.ndarray  # (G, k) log(variance[g+1] / variance[g]): the per-generation log variance factors
    basis: np.ndarray  # (dim, k) orthonormal columns, the fixed directions
    basis_kind: str  # "final", "pooled", "initial" or "given"
    total_log_factors: np.ndarray  # (k,) log(variance over the last window / variance at generation 0)
    per_generation_factors: np.ndarray  # (k,) exp(mean over generations of log_factors): geometric-mean factor
    most_contracted: float  # total variance factor of the most-contracted `quantile` of directions (geom. mean)
    least_contracted: float  # same for the least-contracted quantile
    spread: float  # log(least_contracted / most_contracted)
    overall: float  # geometric mean total variance factor over all k directions
    trend: str  # overall "contracting", "expanding" or "isometric"
    verdict: str  # "directional contraction", "uniform contraction" or "no contraction"
    map_singular_values: np.ndarray | None  # (G, dim) descending, paired=True only
    contraction_tol: float
    anisotropy_tol: float
    quantile: float
    window: int

    @property
    def directional(self) -> bool:
        return self.verdict == "directional contraction"

    @property
    def contracting(self) -> bool:
        return self.verdict != "no contraction"


def _pca_basis(x: np.ndarray) -> np.ndarray:
    """Eigenvectors of the covariance of x, columns sorted by descending variance."""
    w, v = np.linalg.eigh(np.atleast_2d(np.cov(x, rowvar=False)))
    return v[:, np.argsort(w)[::-1]]


def paired_map_singular_values(chain) -> np.ndarray:
    """(G, dim): singular values (descending) of the least-squares affine map x_{g+1} ~ M x_g + c fitted
    between consecutive generations whose rows are paired (row i = trajectory i in every generation). For
    x -> A x + noise they estimate the singular values of A, stationary or not, which is the sharper measure
    of directional contraction when trajectories exist (CycleGAN, latent feedback)."""
    clouds = _as_chain(chain, "chain")
    sizes = {len(c) for c in clouds}
    if len(sizes) > 1:
        raise ValueError(f"paired samples need the same number of rows in every generation, got sizes {sorted(sizes)}")
    n, dim = clouds[0].shape
    if n <= dim + 1:
        raise ValueError(f"fitting a {dim}-dim linear map needs more than dim + 1 = {dim + 1} paired samples, got {n}")
    out = []
    for prev, cur in zip(clouds[:-1], clouds[1:]):
        m = np.linalg.lstsq(prev - prev.mean(0), cur - cur.mean(0), rcond=None)[0]  # cur ~ prev @ m
        out.append(np.linalg.svd(m, compute_uv=False))
    return np.array(out).reshape(len(clouds) - 1, dim)


def measure_contraction(chain, *, basis="final", n_components: int | None = None, window: int = 3,
                        contraction_tol: float = 0.3, anisotropy_tol: float = math.log(2), quantile: float = 0.25,
                        paired: bool = False, variance_floor: float = 1e-12) -> ContractionResult:
    """How one chain's cloud shrinks, direction by direction, along a FIXED orthonormal basis.

    basis: "final" (default; PCA of the last `window` generations pooled: at the end the cloud's principal
    axes are the directions that contracted at different rates, so they separate them best), "pooled" (PCA
    of all generations pooled), "initial" (PCA of generation 0; arbitrary when generation 0 is isotropic), or
    an explicit (dim, k) array with orthonormal columns. n_components keeps the k leading directions
    (default: all, at most n_samples - 1 of the basis cloud). A fixed basis does not follow a rotating cloud:
    an anisotropic cloud under a pure rotation shows factors above and below 1 (use paired=True then).

    variances[g, k] = variance (ddof=1, about generation g's own mean) along direction k, floored at
    variance_floor x the mean variance of generation 0 (a deterministic chain can reach exactly 0);
    log_factors = diff(log variances), shape (G, k).

    Criterion (ours), read on the CUMULATIVE factors total_k = log(geometric mean variance over the last
    `window` generations / variance at generation 0): a per-generation factor tends to 1 once the chain is
    stationary, so averaging per-generation factors would dilute the contraction by however long the chain
    sat at stationarity. With most/least = geometric means of the total factors over the `quantile` share of
    directions that shrank most / least (at least one direction each):
      "directional contraction"  most < 1 - contraction_tol and log(least / most) > anisotropy_tol,
      "uniform contraction"      most < 1 - contraction_tol and log(least / most) <= anisotropy_tol,
      "no contraction"           otherwise.
    trend (all directions): "contracting" when the geometric mean total factor < 1 - contraction_tol,
    "expanding" when > 1 / (1 - contraction_tol), else "isometric".
    Defaults: window=3, contraction_tol=0.3, anisotropy_tol=log 2 (the least-contracted directions keep at
    least twice the variance share of the most-contracted ones), quantile=0.25.
    paired=True adds `map_singular_values` (see `paired_map_singular_values`); it does not change the verdict.
    """
    clouds = _as_chain(chain, "chain")
    n_steps = len(clouds) - 1
    if n_steps < 1:
        raise ValueError("contraction needs at least one generation after generation 0")
    window = _check_window(window, n_steps)
    contraction_tol = _check_range(contraction_tol, "contraction_tol", 0, 1, low_open=True, high_open=True)
    anisotropy_tol = _check_range(anisotropy_tol, "anisotropy_tol", 0)
    quantile = _check_range(quantile, "quantile", 0, 0.5, low_open=True)
    variance_floor = _check_range(variance_floor, "variance_floor", 0)
    if not isinstance(paired, (bool, np.bool_)):
        raise ValueError(f"paired must be True or False, got {paired!r}")
    dim = clouds[0].shape[1]

    if isinstance(basis, str):
        _check_choice(basis, BASES, "basis")
        centred = {"final": [c - c.mean(0) for c in clouds[-window:]],
                   "pooled": [c - c.mean(0) for c in clouds],  # each about its own mean: drift is not shape
                   "initial": [clouds[0] - clouds[0].mean(0)]}[basis]
        basis_cloud = np.concatenate(centred)
        vectors = _pca_basis(basis_cloud)[:, :max(1, min(dim, len(basis_cloud) - 1))]
        basis_kind = basis
    else:
        vectors = np.asarray(basis, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != dim or not 1 <= vectors.shape[1] <= dim:
            raise ValueError(f"basis array must have shape (dim={dim}, k) with 1 <= k <= dim, got {vectors.shape}")
        if not np.allclose(vectors.T @ vectors, np.eye(vectors.shape[1]), atol=1e-8):
            raise ValueError("basis array must have orthonormal columns")
        basis_kind = "given"
    if n_components is not None:
        if isinstance(n_components, bool) or int(n_components) != n_components or \
                not 1 <= n_components <= vectors.shape[1]:
            raise ValueError(f"n_components must be an integer between 1 and {vectors.shape[1]}, got {n_components}")
        vectors = vectors[:, :int(n_components)]

    variances = np.array([np.var(c @ vectors, axis=0, ddof=1) for c in clouds])
    floor = variance_floor * max(variances[0].mean(), np.finfo(float).tiny)
    log_var = np.log(np.maximum(variances, floor))
    log_factors = np.diff(log_var, axis=0)
    total = log_var[-window:].mean(axis=0) - log_var[0]
    ordered = np.sort(total)
    q = max(1, int(math.ceil(quantile * len(total))))
    most, least = float(np.exp(ordered[:q].mean())), float(np.exp(ordered[-q:].mean()))
    spread = float(np.log(least / most))
    overall = float(np.exp(total.mean()))
    shrink_limit = 1 - contraction_tol
    trend = "contracting" if overall < shrink_limit else "expanding" if overall > 1 / shrink_limit else "isometric"
    if most < shrink_limit:
        verdict = "directional contraction" if spread > anisotropy_tol else "uniform contraction"
    else:
        verdict = "no contraction"
    return ContractionResult(
        variances=variances, log_factors=log_factors, basis=vectors, basis_kind=basis_kind, total_log_factors=total,
        per_generation_factors=np.exp(log_factors.mean(axis=0)), most_contracted=most, least_contracted=least,
        spread=spread, overall=overall, trend=trend, verdict=verdict,
        map_singular_values=paired_map_singular_values(clouds) if paired else None,
        contraction_tol=contraction_tol, anisotropy_tol=anisotropy_tol, quantile=quantile, window=window)


# ----------------------------------------------------------------------------------------------------------
# 3. the paper's rule


def predicted_outcome(ergodic: bool, directional: bool) -> str:
    """The paper's rule: ergodic + directionally contracting -> "resonance"; ergodic without (directional)
    contraction -> "wandering"; not ergodic -> "separate basins", reported as "separate basins (each
    contracting)" when each basin contracts (the CycleGAN case: every trajectory settles on its own
    attractor). Note: an ergodic chain that contracts UNIFORMLY settles on a full-dimensional stationary cloud;
    the paper's dichotomy has no name for it and this rule (directional=False) calls it "wandering"."""
    for name, value in (("ergodic", ergodic), ("directional", directional)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if ergodic:
        return "resonance" if directional else "wandering"
    return "separate basins (each contracting)" if directional else "separate basins"


OBSERVED_OUTCOMES = ("resonance", "wandering", "separate basins")
CONTRACTING_PATTERNS = tuple(f"{shape} contraction" for shape in ("coherent", "wrinkled", "oblate", "prolate"))
SETTLED_PHASES = ("slow transient", "empirical stationarity")


def observed_outcome(*, phase: str, pattern: str | None, n_attractors: int | None = None) -> str:
    """What the diagnostics saw, in the rule's vocabulary (OUR criterion, independent of the two measures):
    more than one attractor (CycleGAN basins, Lucier end frequencies) -> "separate basins"; otherwise a chain
    whose drift has settled (phase reached: slow transient or empirical stationarity) with a contracting
    taxonomy pattern over the run -> "resonance"; anything else (still in active transient, or an
    expanding cloud) -> "wandering". n_attractors None = not measured for this setting."""
    if n_attractors is not None:
        if isinstance(n_attractors, bool) or int(n_attractors) != n_attractors or n_attractors < 0:
            raise ValueError(f"n_attractors must be a count >= 0 or None, got {n_attractors!r}")
        if n_attractors > 1:
            return "separate basins"
    if phase not in ("active transient",) + SETTLED_PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: active transient, {', '.join(SETTLED_PHASES)}")
    if phase in SETTLED_PHASES and pattern in CONTRACTING_PATTERNS:
        return "resonance"
    return "wandering"


def count_distinct(values, *, tol: float) -> int:
    """How many distinct values (e.g. the frequencies several starts of the Lucier loop end on): sorted, a new
    one starts wherever the gap to the previous exceeds tol."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        return 0
    if not np.all(np.isfinite(v)) or not tol >= 0:
        raise ValueError(f"count_distinct needs finite values and tol >= 0, got tol={tol}")
    return int(1 + np.sum(np.diff(v) > tol))


def pca_project(chains, n_components: int | None) -> list[list[np.ndarray]]:
    """Every cloud of several chains on the leading n_components PCA axes of ALL their clouds pooled (every
    chain, every generation), so that directions which collapse late are kept and one fixed basis serves every
    measure of a setting. None or 0: the clouds unchanged."""
    chains = [_as_chain(c, f"chain {i}") for i, c in enumerate(chains)]
    if not n_components:
        return chains
    pooled = np.concatenate([x for c in chains for x in c])
    mean = pooled.mean(0)
    k = int(min(n_components, pooled.shape[1], len(pooled) - 1))
    _, _, vt = np.linalg.svd(pooled - mean, full_matrices=False)
    return [[(x - mean) @ vt[:k].T for x in c] for c in chains]


def observe_chain(clouds, *, fid_n: int | None = None, seed: int = 0, phase: dict | None = None,
                  taxonomy: dict | None = None) -> dict:
    """The diagnostics' view of one chain, for observed_outcome: the phase its drift reached (metrics.detect_phases
    on local and cumulative FID) and the taxonomy pattern of the whole run (generation 0 against the last: a
    chain that has settled shows no change within its last few generations, whatever it did before)."""
    from .geometry import classify_pattern
    from .metrics import cumulative_drift, detect_phases, local_drift

    clouds = _as_chain(clouds, "clouds")
    local = local_drift(clouds, n=fid_n, seed=seed)
    cumulative = cumulative_drift(clouds, n=fid_n, seed=seed)
    phases = detect_phases(local.values, cumulative.values, **(phase or {}))
    if len(clouds) < 2:
        raise ValueError("observe_chain needs at least two generations")
    pattern = classify_pattern([clouds[0], clouds[-1]], seed=seed, **(taxonomy or {})).pattern
    return {"phase": phases.labels[-1], "pattern": pattern, "local": local.values, "cumulative": cumulative.values}


def outcomes_agree(predicted: str, observed: str) -> bool:
    """Prediction and observation agree when they name the same outcome ("separate basins (each contracting)"
    is a kind of "separate basins")."""
    _check_choice(predicted, OUTCOMES, "predicted outcome")
    _check_choice(observed, OBSERVED_OUTCOMES, "observed outcome")
    return predicted.split(" (")[0] == observed


def claim_row(setting: str, data: str, assessment: "ClaimAssessment", *, phase: str, pattern: str | None,
              n_attractors: int | None = None, feature_space: str = "") -> dict:
    """One row of the claim table (the paper's Table 1 style): both measures with their verdicts, the rule's
    prediction, the diagnostics' observation and whether they agree."""
    e, cs = assessment.ergodicity, assessment.contraction
    observed = observed_outcome(phase=phase, pattern=pattern, n_attractors=n_attractors)
    return {
        "setting": setting, "data": data, "feature space": feature_space, "chains": len(e.within_chains),
        "n per set": e.n,
        "ergodicity: separation start -> end (noise units)": f"{e.separation_start:.3g} -> {e.separation_last:.3g}",
        "between-chain distance, end / start": f"{e.end_over_start:.3g}",
        "ergodic": e.verdict,
        "contraction: most / least contracted variance factor": (
            f"{np.median([c.most_contracted for c in cs]):.3g} / {np.median([c.least_contracted for c in cs]):.3g}"),
        "directional contraction": ", ".join(sorted({c.verdict for c in cs})),
        "predicted": assessment.outcome, "phase reached": phase, "taxonomy (generation 0 -> last)": pattern or "n/a",
        "attractors": "n/a" if n_attractors is None else int(n_attractors), "observed": observed,
        "agree": outcomes_agree(assessment.outcome, observed),
    }


@dataclass(frozen=True, eq=False)
class ClaimAssessment:
    ergodicity: ErgodicityResult
    contraction: list  # one ContractionResult per chain
    directional: bool  # every chain contracts directionally
    outcome: str  # predicted_outcome(ergodicity.mixes, directional)


def assess_chains(chains, *, ergodicity: dict | None = None, contraction: dict | None = None) -> ClaimAssessment:
    """Both measures on several chains of one setting and the outcome they predict. `ergodicity` and
    `contraction` are keyword arguments for measure_ergodicity / measure_contraction. Directional contraction
    is required of every chain (a chain is one realisation of the same operator T)."""
    ergo = measure_ergodicity(chains, **(ergodicity or {}))
    per_chain = [measure_contraction(c, **(contraction or {})) for c in chains]
    directional = all(r.directional for r in per_chain)
    return ClaimAssessment(ergo, per_chain, directional, predicted_outcome(ergo.mixes, directional))


# ----------------------------------------------------------------------------------------------------------
# 4. synthetic chains with known answers


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


def _run(step, starts, n_generations, seed) -> list[list[np.ndarray]]:
    # one independent noise stream per chain: run_chain draws from (chain seed, generation)
    return [run_chain(step, x0, n_generations, seed=1000 * seed + c, progress=False).states
            for c, x0 in enumerate(starts)]


def rotation_matrix(dim: int, angles=(0.5, 1.1)) -> np.ndarray:
    """Block-diagonal rotation: the k-th 2x2 block (axes 2k, 2k+1) turns by angles[k % len(angles)]; an odd
    last axis is left fixed."""
    r = np.eye(dim)
    for k in range(dim // 2):
        a = angles[k % len(angles)]
        r[2 * k:2 * k + 2, 2 * k:2 * k + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return r


def linear_contraction_chains(factors=(0.9, 0.7, 0.5, 0.3), *, noise: float = 0.3, n_chains: int = 3,
                              n_generations: int = 50, n_samples: int = 400, offset: float = 2.0,
                              spread: float = 1.0, seed: int = 0) -> list[list[np.ndarray]]:
    """(i) x -> A x + noise * N(0, I), A = diag(factors): ergodic (positive noise density everywhere) and
    contracting along each axis at its own rate -> resonance. Stationary law N(0, diag(noise^2 / (1 - a^2)));
    the starts are forgotten like max|a|^g (0.9^50 ~ 0.005 by default). Equal factors give a uniform
    contraction."""
    a = np.asarray(factors, dtype=np.float64)
    if a.ndim != 1 or np.any(np.abs(a) >= 1):
        raise ValueError(f"factors must be a vector with |a| < 1, got {factors}")

    def step(x, ctx):
        return x * a + noise * ctx.rng.standard_normal(x.shape)
    return _run(step, start_clouds(n_chains, n_samples=n_samples, dim=len(a), offset=offset, spread=spread,
                                   seed=seed), n_generations, seed)


def noisy_rotation_chains(*, dim: int = 4, noise: float = 2.0, angles=(0.5, 1.1), n_chains: int = 3,
                          n_generations: int = 40, n_samples: int = 400, offset: float = 2.0, spread: float = 1.0,
                          seed: int = 0) -> list[list[np.ndarray]]:
    """(ii) x -> R x + noise * N(0, I): the noise reaches everywhere and the starts are forgotten, slowly (their
    offset shrinks against a spread growing like noise * sqrt(g): to ~0.25 spreads after 40 generations by
    default), but nothing contracts: a rotating random walk -> wandering."""
    r = rotation_matrix(dim, angles)

    def step(x, ctx):
        return x @ r.T + noise * ctx.rng.standard_normal(x.shape)
    return _run(step, start_clouds(n_chains, n_samples=n_samples, dim=dim, offset=offset, spread=spread, seed=seed),
                n_generations, seed)


def double_well_chains(*, dim: int = 4, step_size: float = 0.1, stiffness=None, n_chains: int = 3,
                       n_generations: int = 30, n_samples: int = 400, offset: float = 2.0, spread: float = 0.25,
                       seed: int = 0) -> list[list[np.ndarray]]:
    """(iii) deterministic gradient descent x -> x - step_size * grad V on
    V(x) = (x_0^2 - 1)^2 / 4 + sum_k stiffness_k x_k^2 / 2 (k >= 1), fixed points (+-1, 0, ..., 0).
    No noise: a point stays in the basin of its sign of x_0, so chains started on different sides settle at
    different fixed points (not ergodic), each contracting at per-axis rates 1 - step_size * curvature
    (curvature 2 along x_0, stiffness_k along x_k; default stiffness linspace(1, 6, dim - 1)) -> separate
    basins, each contracting. The default small `spread` keeps each start on one side."""
    k = np.linspace(1.0, 6.0, dim - 1) if stiffness is None else np.asarray(stiffness, dtype=np.float64)
    if k.shape != (dim - 1,):
        raise ValueError(f"stiffness needs dim - 1 = {dim - 1} values, got shape {k.shape}")

    def step(x, ctx):
        grad = np.concatenate([x[:, :1] ** 3 - x[:, :1], x[:, 1:] * k], axis=1)
        return x - step_size * grad
    return _run(step, start_clouds(n_chains, n_samples=n_samples, dim=dim, offset=offset, spread=spread, seed=seed),
                n_generations, seed)


def isometry_chains(*, dim: int = 4, angles=(0.5, 1.1), n_chains: int = 3, n_generations: int = 30,
                    n_samples: int = 400, offset: float = 2.0, spread: float = 1.0,
                    seed: int = 0) -> list[list[np.ndarray]]:
    """(iv) deterministic rotation x -> R x: every distance is kept, so chains never forget their start (not
    ergodic) and nothing contracts -> separate basins (here: separate orbits)."""
    r = rotation_matrix(dim, angles)
    return _run(lambda x, ctx: x @ r.T,
                start_clouds(n_chains, n_samples=n_samples, dim=dim, offset=offset, spread=spread, seed=seed),
                n_generations, seed)


SYNTHETIC = {  # name -> (builder, expected ergodicity verdict, expected contraction verdict, expected outcome)
    "noisy linear contraction": (linear_contraction_chains, "mixes", "directional contraction", "resonance"),
    "noisy rotation": (noisy_rotation_chains, "mixes", "no contraction", "wandering"),
    "deterministic double well": (double_well_chains, "does not mix", "directional contraction",
                                  "separate basins (each contracting)"),
    "deterministic isometry": (isometry_chains, "does not mix", "no contraction", "separate basins"),
}
