"""Distribution diagnostics on feature arrays of shape (n_samples, dim): FID and KID at a fixed sample count,
drift curves across generations, the three phases, precision/recall/density/coverage, memorisation, entropy.

Pure numpy/scipy. Every FID/KID value comes back as a `Score` stamped with the sample count n, the feature
network and the resize mode, because FID depends on all three (its bias alone scales like dim/n) and two
numbers are only comparable when those agree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

PHASES = ("active transient", "slow transient", "empirical stationarity")


# ----------------------------------------------------------------------------------------------------------
# input checks shared by metrics and geometry


def as_features(x, name: str = "features", *, min_samples: int = 2) -> np.ndarray:
    """x as a float64 array of shape (n_samples, dim), with at least `min_samples` rows and no NaN/inf."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, dim), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no feature dimensions (shape {arr.shape})")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} has dim {a.shape[1]} but {name_b} has dim {b.shape[1]}")


def _check_choice(value, allowed, name: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(allowed)}")


def _equal_count(n, sizes, min_n: int = 2) -> int:
    """The common sample count: n itself (checked), or the smallest set when n is None."""
    available = min(sizes)
    if n is None:
        n = available
    if int(n) != n or n < min_n:
        raise ValueError(f"n must be an integer >= {min_n}, got {n}")
    if n > available:
        raise ValueError(f"n={n} is larger than the smallest feature set ({available} samples)")
    return int(n)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows without replacement (all rows, untouched, when n == len(x): statistics ignore order)."""
    if n == len(x):
        return x
    return x[rng.choice(len(x), size=n, replace=False)]


# ----------------------------------------------------------------------------------------------------------
# Frechet distance, FID, KID


def mean_and_covariance(features) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and unbiased covariance (ddof=1), the Gaussian that FID fits to a feature set."""
    x = as_features(features)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sym_sqrt_psd(s: np.ndarray) -> np.ndarray:
    # symmetric eigen-decomposition; tiny negative eigenvalues are round-off of a PSD matrix
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2):

        |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1^1/2 S2 S1^1/2)

    tr sqrt(S1 S2) equals the trace of the square root of the symmetric PSD matrix S1^1/2 S2 S1^1/2, so two
    symmetric eigen-decompositions replace scipy's general `sqrtm` (whose `disp=False` pytorch-fid relies on and
    SciPy 1.18 removes), and there is no complex round-off to discard. Negative round-off is clipped to 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, float)), np.atleast_1d(np.asarray(mu2, float))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, float)), np.atleast_2d(np.asarray(sigma2, float))
    for name, mu, s in (("1", mu1, s1), ("2", mu2, s2)):
        if mu.ndim != 1:
            raise ValueError(f"mu{name} must be a vector, got shape {mu.shape}")
        if s.shape != (len(mu), len(mu)):
            raise ValueError(f"sigma{name} must have shape {(len(mu), len(mu))} to match mu{name}, got {s.shape}")
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(s))):
            raise ValueError(f"mu{name} or sigma{name} contains NaN or infinite values")
        if not np.allclose(s, s.T, rtol=1e-6, atol=1e-9 * max(1.0, np.abs(s).max())):
            raise ValueError(f"sigma{name} is not symmetric")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 differ in dimension: {mu1.shape} vs {mu2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    root1 = _sym_sqrt_psd(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


@dataclass(frozen=True)
class Score:
    """A FID/KID value stamped with what it depends on: sample count, feature network, resize mode."""

    value: float
    n: int
    feature_network: str
    resize: str
    std: float | None = None  # KID: std over subsets; FID: None
    metric: str = "fid"

    def to_dict(self) -> dict:
        return asdict(self)

    def __float__(self) -> float:
        return float(self.value)


def fid(features_a, features_b, *, n: int | None = None, seed: int = 0, feature_network: str = "unknown",
        resize: str = "none") -> Score:
    """FID between two feature sets at an equal sample count n.

    Both sets are subsampled without replacement to n rows with `np.random.default_rng(seed)` (n=None: the
    size of the smaller set; n larger than a set is an error). FID is biased upwards by roughly dim/n, so only
    compare values at the same n (and with n well above dim, or the covariances are singular).
    """
    a, b = as_features(features_a, "features_a"), as_features(features_b, "features_b")
    _same_dim(a, b, "features_a", "features_b")
    n = _equal_count(n, (len(a), len(b)))
    rng = np.random.default_rng(seed)
    a, b = _subsample(a, n, rng), _subsample(b, n, rng)
    value = frechet_distance(*mean_and_covariance(a), *mean_and_covariance(b))
    return Score(value, n, feature_network, resize, metric="fid")


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The KID kernel k(x, y) = (x.y / dim + 1)^3 (Binkowski et al. 2018), as a matrix over rows."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the polynomial kernel: the diagonals k(x_i, x_i) are left out of the within-set
    means, so two samples of one distribution give 0 on average (and single values can be negative)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid(features_a, features_b, *, n: int | None = None, subsets: int = 10, subset_size: int | None = None,
        seed: int = 0, feature_network: str = "unknown", resize: str = "none") -> Score:
    """KID: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets.

    Both sets are first subsampled to an equal n (as in `fid`); then `subsets` times, `subset_size` rows
    (default min(1000, n)) are drawn without replacement from each and MMD^2 computed. value = mean, std =
    population std (ddof=0, as torch-fidelity) over the subsets. Score.n is the equal count n.
    """
    a, b = as_features(features_a, "features_a"), as_features(features_b, "features_b")
    _same_dim(a, b, "features_a", "features_b")
    n = _equal_count(n, (len(a), len(b)))
    if int(subsets) != subsets or subsets < 1:
        raise ValueError(f"subsets must be a positive integer, got {subsets}")
    subset_size = min(1000, n) if subset_size is None else subset_size
    if int(subset_size) != subset_size or not 2 <= subset_size <= n:
        raise ValueError(f"subset_size must be an integer between 2 and n={n}, got {subset_size}")
    rng = np.random.default_rng(seed)
    a, b = _subsample(a, n, rng), _subsample(b, n, rng)
    values = []
    for _ in range(int(subsets)):
        ia = rng.choice(n, size=int(subset_size), replace=False)
        ib = rng.choice(n, size=int(subset_size), replace=False)
        values.append(mmd2_unbiased(a[ia], b[ib]))
    return Score(float(np.mean(values)), n, feature_network, resize, std=float(np.std(values)), metric="kid")


# ----------------------------------------------------------------------------------------------------------
# drift across generations


@dataclass(frozen=True, eq=False)
class DriftCurve:
    """A drift curve over generations g = 0..G and what it was measured with."""

    values: np.ndarray
    n: int
    feature_network: str
    resize: str
    metric: str
    kind: str  # "cumulative" (gen g vs gen 0) or "local" (gen g vs gen g-1)
    std: np.ndarray | None = field(default=None)  # KID only

    @property
    def generations(self) -> np.ndarray:
        return np.arange(len(self.values))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["values"] = [None if np.isnan(v) else float(v) for v in self.values]
        if self.std is not None:
            d["std"] = [None if np.isnan(v) else float(v) for v in self.std]
        return d


def _drift(pairs, kind, features_per_generation, n, seed, metric, subsets, subset_size, feature_network,
           resize) -> DriftCurve:
    _check_choice(metric, ("fid", "kid"), "metric")
    gens = [as_features(f, f"generation {g}") for g, f in enumerate(features_per_generation)]
    if len(gens) < 2:
        raise ValueError(f"need features for at least 2 generations, got {len(gens)}")
    for g, f in enumerate(gens[1:], start=1):
        _same_dim(gens[0], f, "generation 0", f"generation {g}")
    n = _equal_count(n, [len(f) for f in gens])  # one n for the whole curve
    values, stds = np.full(len(gens), np.nan), np.full(len(gens), np.nan)
    for g, ref in pairs(len(gens)):
        if metric == "fid":
            s = fid(gens[ref], gens[g], n=n, seed=seed)
        else:
            s = kid(gens[ref], gens[g], n=n, seed=seed, subsets=subsets, subset_size=subset_size)
        values[g], stds[g] = s.value, np.nan if s.std is None else s.std
    if kind == "cumulative":
        values[0], stds[0] = 0.0, 0.0
    return DriftCurve(values, n, feature_network, resize, metric, kind, stds if metric == "kid" else None)


def cumulative_drift(features_per_generation, *, n: int | None = None, seed: int = 0, metric: str = "fid",
                     subsets: int = 10, subset_size: int | None = None, feature_network: str = "unknown",
                     resize: str = "none") -> DriftCurve:
    """FID_{g,0} (or KID) between generation g and generation 0, for g = 0..G, all at one equal n.

    Convention: the value at g = 0 is reported as exactly 0 (a set against itself). Later values include the
    finite-sample bias of FID (> 0 even for two samples of one distribution), so the curve jumps from 0 to that
    noise floor at g = 1; `local_drift` of a still chain shows the floor's size. n=None: the smallest
    generation's size. subsets/subset_size are used by metric="kid" only.
    """
    return _drift(lambda G: ((g, 0) for g in range(1, G)), "cumulative", features_per_generation, n, seed,
                  metric, subsets, subset_size, feature_network, resize)


def local_drift(features_per_generation, *, n: int | None = None, seed: int = 0, metric: str = "fid",
                subsets: int = 10, subset_size: int | None = None, feature_network: str = "unknown",
                resize: str = "none") -> DriftCurve:
    """FID_{g,g-1} (or KID) between consecutive generations, for g = 1..G (NaN at g = 0), all at one n."""
    return _drift(lambda G: ((g, g - 1) for g in range(1, G)), "local", features_per_generation, n, seed,
                  metric, subsets, subset_size, feature_network, resize)


# ----------------------------------------------------------------------------------------------------------
# phases of the drift curves (our reconstruction of the paper's three phases)


@dataclass(frozen=True, eq=False)
class Phases:
    """Per-generation phase labels and the first generation of each phase (None when it never occurs)."""

    labels: list  # after the monotone fit (when monotone=True), one of PHASES per generation
    raw_labels: list  # straight from the thresholds
    boundaries: dict  # phase name -> first generation, or None
    local_slope: np.ndarray  # normalised |slope| of the local curve
    cumulative_slope: np.ndarray  # normalised |slope| of the cumulative curve
    flat_tol: float
    slow_tol: float
    window: int


def _curve_values(curve, name) -> np.ndarray:
    values = np.asarray(getattr(curve, "values", curve), dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D curve over generations, got shape {values.shape}")
    return values


def normalised_slope(values, *, window: int = 3) -> np.ndarray:
    """|least-squares slope| of a curve over `window` generations centred on each g (cut at the ends, NaNs
    skipped), in units of the curve's largest |value| per whole run: |dy/dg| * G / max|y|. A curve that climbs
    steadily from 0 to its maximum over the whole run has slope 1, whatever the run's length and units."""
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window}")
    y = np.asarray(values, dtype=np.float64)
    slopes = np.full(len(y), np.nan)
    if not np.any(np.isfinite(y)):
        return slopes
    scale, G = np.nanmax(np.abs(y)), len(y) - 1
    for g in range(len(y)):
        lo = max(0, g - (window - 1) // 2)
        xs, ys = np.arange(lo, min(len(y), lo + window), dtype=float), y[lo:lo + window]
        ok = np.isfinite(ys)
        if ok.sum() >= 2:
            slope = np.polyfit(xs[ok], ys[ok], 1)[0]
            slopes[g] = 0.0 if scale == 0 else abs(slope) * G / scale
    return slopes


def _monotone_fit(codes: np.ndarray) -> np.ndarray:
    """The labelling 0..0 1..1 2..2 (any part may be empty) that disagrees with `codes` the fewest times."""
    G1 = len(codes)
    best, best_cut = None, (G1, G1)
    for b1 in range(G1 + 1):
        for b2 in range(b1, G1 + 1):
            fitted = np.r_[np.zeros(b1), np.ones(b2 - b1), np.full(G1 - b2, 2)]
            cost = int(np.sum(fitted != codes))
            if best is None or cost < best:
                best, best_cut = cost, (b1, b2)
    b1, b2 = best_cut
    return np.r_[np.zeros(b1, int), np.ones(b2 - b1, int), np.full(G1 - b2, 2, int)]


def detect_phases(local, cumulative, *, flat_tol: float = 0.3, slow_tol: float = 1.0, window: int = 3,
                  monotone: bool = True) -> Phases:
    """Label each generation with one of the three phases read off the local and cumulative drift curves.

    Our reconstruction (the paper gives no thresholds). Each curve's slope is `normalised_slope` (|dy/dg| over
    a centred `window`, times G / max|y|: 1 = climbing steadily from 0 to the maximum over the whole run).
    With m = the larger of the two curves' slopes at generation g, flat_tol = 0.3 and slow_tol = 1.0:
      - m > slow_tol:             "active transient"       (a curve is still steep; ideally both are)
      - flat_tol < m <= slow_tol: "slow transient"         (one curve flat, the other moving slowly)
      - m <= flat_tol:            "empirical stationarity" (both plateau)
    With monotone=True (default) the labels are then replaced by the ordering active -> slow -> stationary
    that disagrees with them least (noise cannot send a chain back to an earlier phase); boundaries are the
    first generation of each phase in the final labels, None for a phase that does not occur.
    Accepts arrays or `DriftCurve`s; the local curve may be NaN at g = 0.
    """
    loc, cum = _curve_values(local, "local"), _curve_values(cumulative, "cumulative")
    if loc.shape != cum.shape:
        raise ValueError(f"local and cumulative curves differ in length: {len(loc)} vs {len(cum)}")
    if len(cum) < 3:
        raise ValueError(f"need at least 3 generations to read phases, got {len(cum)}")
    if not 0 <= flat_tol < slow_tol:
        raise ValueError(f"need 0 <= flat_tol < slow_tol, got flat_tol={flat_tol}, slow_tol={slow_tol}")
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window}")
    if np.all(np.isnan(loc)) or np.all(np.isnan(cum)):
        raise ValueError("a drift curve is all NaN")
    s_loc, s_cum = normalised_slope(loc, window=window), normalised_slope(cum, window=window)
    m = np.nan_to_num(np.fmax(s_loc, s_cum), nan=0.0)  # NaN only where neither curve has 2 finite points
    codes = np.where(m > slow_tol, 0, np.where(m > flat_tol, 1, 2))
    fitted = _monotone_fit(codes) if monotone else codes
    boundaries = {}
    for code, phase in enumerate(PHASES):
        hits = np.flatnonzero(fitted == code)
        boundaries[phase] = int(hits[0]) if len(hits) else None
    return Phases([PHASES[c] for c in fitted], [PHASES[c] for c in codes], boundaries, s_loc, s_cum,
                  flat_tol, slow_tol, int(window))


def synthetic_phase_chain(n_generations: int = 30, dim: int = 8, n_samples: int = 2000, seed: int = 0, *,
                          slow_start: int | None = None, stationary_start: int | None = None,
                          shift: float = 6.0, decay: float = 0.3, slow_speed: float = 0.05,
                          contraction: float = 0.5) -> tuple[list, dict]:
    """Gaussian feature clouds with known phases, for tests and the idealised drift picture (Fig. 3).

      - active transient, generations 0..slow_start-1: the mean moves `shift` along a random direction, with
        |shift|^2 (the cumulative FID above its noise floor) growing like 1 - r^g, where r is chosen so that
        its rate has fallen to `decay` of the initial rate at slow_start: cumulative drift rises steeply and
        saturates, local drift starts high and falls fast;
      - slow transient, slow_start..stationary_start-1: the mean creeps on by `slow_speed` per generation and
        the spread across the direction of travel contracts steadily to `contraction` of its std (local drift
        low and flat, cumulative drift still rising slowly);
      - empirical stationarity, from stationary_start: the distribution stops moving (both curves flat).
    Every generation is a fresh sample of n_samples points from its Gaussian (as a real chain resamples).
    Defaults: slow_start = round(0.3 G), stationary_start = round(0.65 G).
    Returns (clouds, boundaries) with boundaries = {phase name: first generation}.
    """
    G = int(n_generations)
    if G < 6:
        raise ValueError(f"n_generations must be >= 6 to hold three phases, got {n_generations}")
    if dim < 2 or n_samples < 2:
        raise ValueError(f"need dim >= 2 and n_samples >= 2, got dim={dim}, n_samples={n_samples}")
    b1 = round(0.3 * G) if slow_start is None else int(slow_start)
    b2 = round(0.65 * G) if stationary_start is None else int(stationary_start)
    if not 1 < b1 < b2 <= G:
        raise ValueError(f"need 1 < slow_start < stationary_start <= n_generations, got {b1}, {b2}, {G}")
    if not (shift > 0 and 0 < decay < 1 and slow_speed >= 0 and 0 < contraction <= 1):
        raise ValueError("need shift > 0, 0 < decay < 1, slow_speed >= 0 and 0 < contraction <= 1")
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))  # random orthonormal frame
    direction = basis[:, 0]
    # still clearly moving when the phase ends (decay not too small), so the phase change is a visible kink
    rate = decay ** (1 / b1)
    shift_at = shift * np.sqrt((1 - rate ** np.arange(b1 + 1)) / (1 - rate**b1))
    position, spread, clouds = 0.0, 1.0, []
    for g in range(G + 1):
        if g <= b1:
            position = shift_at[g]
        elif g <= b2:  # creep on, and contract the spread across the direction of travel
            position += slow_speed
            spread = 1.0 - (1.0 - contraction) * (g - b1) / (b2 - b1)
        stds = np.r_[1.0, np.full(dim - 1, spread)]  # in the basis frame
        clouds.append(position * direction + (rng.standard_normal((n_samples, dim)) * stds) @ basis.T)
    return clouds, {PHASES[0]: 0, PHASES[1]: b1, PHASES[2]: b2}


# ----------------------------------------------------------------------------------------------------------
# fidelity and diversity: precision, recall, density, coverage


def _kth_neighbour_distance(x: np.ndarray, k: int) -> np.ndarray:
    # k + 1 because every point is its own nearest neighbour
    return cKDTree(x).query(x, k=k + 1)[0][:, k]


def _chunked_distances(a: np.ndarray, b: np.ndarray, max_entries: int = 4_000_000):
    """Yield (row slice, distance block) over rows of a, keeping each block below max_entries floats."""
    rows = max(1, max_entries // max(1, len(b)))
    for start in range(0, len(a), rows):
        yield slice(start, start + rows), cdist(a[start:start + rows], b)


def precision_recall_density_coverage(real, fake, *, k: int = 5) -> dict:
    """Fidelity and diversity of `fake` with respect to `real` from k-nearest-neighbour balls.

    r_k(x) is the distance from x to its k-th nearest neighbour within its own set.
      precision (Kynkaenniemi et al. 2019): share of fake points inside some real ball B(r_i, r_k(r_i)).
      recall    (same): share of real points inside some fake ball B(f_j, r_k(f_j)).
      density   (Naeem et al. 2020): (1 / kM) sum_j #{i : f_j in B(r_i, r_k(r_i))}; about 1 for equal
                distributions, above 1 where fakes crowd dense real regions.
      coverage  (same): share of real balls B(r_i, r_k(r_i)) holding at least one fake point.
    Distances are Euclidean, balls closed (<=). Cost O(N M dim), in blocks.
    """
    r = as_features(real, "real", min_samples=2)
    f = as_features(fake, "fake", min_samples=2)
    _same_dim(r, f, "real", "fake")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    if k >= min(len(r), len(f)):
        raise ValueError(f"k={k} needs more than k samples in each set (real {len(r)}, fake {len(f)})")
    radius_real, radius_fake = _kth_neighbour_distance(r, k), _kth_neighbour_distance(f, k)
    balls_holding = np.zeros(len(f))  # per fake: how many real balls contain it
    real_covered = np.zeros(len(r), bool)
    real_recalled = np.zeros(len(r), bool)
    for rows, d in _chunked_distances(f, r):  # d[j, i] = |f_j - r_i|
        inside_real = d <= radius_real[None, :]
        balls_holding[rows] = inside_real.sum(axis=1)
        real_covered |= inside_real.any(axis=0)
        real_recalled |= (d <= radius_fake[rows, None]).any(axis=0)
    return {
        "precision": float(np.mean(balls_holding > 0)),
        "recall": float(np.mean(real_recalled)),
        "density": float(balls_holding.sum() / (k * len(f))),
        "coverage": float(np.mean(real_covered)),
    }


# ----------------------------------------------------------------------------------------------------------
# memorisation and entropy


def memorisation_rate(samples, training, *, threshold: float | None = None, ratio: float | None = None) -> float:
    """Share of samples that look like copies of a training point. Give exactly one criterion:
      threshold: the nearest training point is closer than `threshold` (absolute, in feature units);
      ratio:     the nearest training point is closer than `ratio` times the second nearest (a relative test
                 that needs no feature scale; e.g. 1/3 as in Meehan et al. / Yoon et al.).
    """
    if (threshold is None) == (ratio is None):
        raise ValueError("give exactly one of threshold= or ratio=")
    s = as_features(samples, "samples", min_samples=1)
    t = as_features(training, "training", min_samples=1 if ratio is None else 2)
    _same_dim(s, t, "samples", "training")
    if threshold is not None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        nearest = cKDTree(t).query(s, k=1)[0]
        return float(np.mean(nearest < threshold))
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    d = cKDTree(t).query(s, k=2)[0]
    return float(np.mean(d[:, 0] < ratio * d[:, 1]))


def class_histogram_entropy(labels_or_probs, n_classes: int) -> float:
    """Entropy in bits of the predicted-class histogram: log2(n_classes) when the classes are used evenly,
    0 when every sample is one class. Accepts integer labels (n,) or class probabilities (n, n_classes), whose
    argmax is the predicted class."""
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes}")
    x = np.asarray(labels_or_probs)
    if x.ndim == 2:
        if x.shape[1] != n_classes:
            raise ValueError(f"probabilities have {x.shape[1]} columns but n_classes={n_classes}")
        if not np.all(np.isfinite(x)):
            raise ValueError("probabilities contain NaN or infinite values")
        labels = np.argmax(x, axis=1)
    elif x.ndim == 1:
        if not np.all(np.isfinite(x.astype(float))) or np.any(x != np.round(x)):
            raise ValueError("labels must be integers (got NaN, inf or fractions)")
        labels = x.astype(np.int64)
    else:
        raise ValueError(f"expected labels (n,) or probabilities (n, n_classes), got shape {x.shape}")
    if len(labels) == 0:
        raise ValueError("no labels given")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got range [{labels.min()}, {labels.max()}]")
    p = np.bincount(labels, minlength=int(n_classes)) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum() + 0.0)


def gaussian_entropy(features, *, ridge: float = 1e-6) -> float:
    """Differential entropy in nats of the Gaussian fitted to the features:
    0.5 * (dim * log(2 pi e) + log det S), S the sample covariance plus ridge * mean variance * I.

    It is the largest entropy any distribution with this covariance can have, so it tracks spread and its
    collapse (log det falls as directions are squashed) rather than the samples' true entropy. The ridge
    keeps a singular covariance (n <= dim, a collapsed direction) finite: read values only relative to each
    other at one dim, n and ridge.
    """
    x = as_features(features)
    s = np.atleast_2d(np.cov(x, rowvar=False))
    dim = s.shape[0]
    s = s + ridge * max(np.trace(s) / dim, np.finfo(float).tiny) * np.eye(dim)
    sign, logdet = np.linalg.slogdet(s)
    if sign <= 0:
        raise ValueError("covariance is not positive definite even with the ridge; raise ridge")
    return float(0.5 * (dim * np.log(2 * np.pi * np.e) + logdet))
