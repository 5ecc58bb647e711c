"""Distribution diagnostics on feature arrays of shape (n_samples, dim): FID and KID at a fixed sample count,
drift curves across generations with their noise floor and intervals, the three phases (tested against those
errors), precision/recall/density/coverage, memorisation, entropy.

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
# input checks shared by metrics, geometry and claim


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


def check_choice(value, allowed, name: str) -> None:
    """ValueError naming the choices unless `value` is one of the strings in `allowed` (a non-string never is)."""
    if isinstance(value, str) and value in allowed:
        return
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


# FID's cost at 2,048 dimensions is its dim x dim factorisations. On a GPU machine they run there, in torch at
# float64 (seconds each in numpy on the host CPU, which the paper profile would spend hours on); below this size,
# and on a CPU-only machine, numpy's LAPACK, so CPU numbers stay what they were.
GPU_LINALG_MIN_DIM = 256


def _torch_device(m: np.ndarray) -> str | None:
    """Where torch factorises m: "cuda" for a large matrix on a GPU machine, else None (numpy)."""
    from .runtime import cuda_available

    return "cuda" if m.shape[-1] >= GPU_LINALG_MIN_DIM and cuda_available() else None


def _via_torch(fn, m: np.ndarray, device: str):
    import torch

    out = fn(torch.as_tensor(np.ascontiguousarray(m), dtype=torch.float64, device=device))
    return tuple(o.cpu().numpy() for o in out) if isinstance(out, tuple) else out.cpu().numpy()


def _eigvalsh(m: np.ndarray) -> np.ndarray:
    if device := _torch_device(m):
        import torch
        return _via_torch(torch.linalg.eigvalsh, m, device)
    return np.linalg.eigvalsh(m)


def _eigh(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if device := _torch_device(m):
        import torch
        return _via_torch(torch.linalg.eigh, m, device)
    return np.linalg.eigh(m)


def _cholesky(m: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor; np.linalg.LinAlgError when m is not positive definite (either backend)."""
    if device := _torch_device(m):
        import torch
        factor, info = _via_torch(torch.linalg.cholesky_ex, m, device)
        if int(info) != 0:
            raise np.linalg.LinAlgError("matrix is not positive definite")
        return factor
    return np.linalg.cholesky(m)


def _singular_values(m: np.ndarray) -> np.ndarray:
    if device := _torch_device(m):
        import torch
        return _via_torch(torch.linalg.svdvals, m, device)
    return np.linalg.svd(m, compute_uv=False)


def _thin_svd(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if device := _torch_device(m):
        import torch
        return _via_torch(lambda t: torch.linalg.svd(t, full_matrices=False), m, device)
    return np.linalg.svd(m, full_matrices=False)


def _sym_sqrt_psd(s: np.ndarray) -> np.ndarray:
    # symmetric eigen-decomposition; tiny negative eigenvalues are round-off of a PSD matrix
    w, v = _eigh(s)
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
    eig = _eigvalsh((middle + middle.T) / 2)
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
    if n <= a.shape[1]:  # fewer rows than dimensions: the n x n route of _fd_halves (seconds less at 2048-d)
        value = _fd_halves(_FidHalf(a), _FidHalf(b))
    else:
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
# drift across generations, against the noise floor
#
# FID between two samples of ONE law is not 0 (20 dimensions, unit variances: about 1.3 +- 0.2 for two samples
# of 200 rows, 2.5 +- 0.25 for 100), and KID's is 0 only on average. A drift curve is therefore only read
# against the same distance between two samples of one law at the same n, its floor. Every generation's cloud
# is split into two disjoint halves A_g, B_g of n rows each:
#   floor[g]        = d(A_g, B_g)       two samples of generation g's law
#   local[g]        = d(A_g, B_{g-1})   g >= 1 (NaN at g = 0)
#   cumulative[g]   = d(A_g, B_0)       at g = 0 this is d(A_0, B_0) = floor[0]: no artificial 0 at the start
# so values and floor are distances between disjoint samples of n rows each, and excess = values - floor is the
# drift above the floor (0 on average for a chain that does not move).


def _generations(features_per_generation) -> list:
    gens = [as_features(f, f"generation {g}") for g, f in enumerate(features_per_generation)]
    if len(gens) < 2:
        raise ValueError(f"need features for at least 2 generations, got {len(gens)}")
    for g, f in enumerate(gens[1:], start=1):
        _same_dim(gens[0], f, "generation 0", f"generation {g}")
    return gens


def _half_count(n, gens) -> int:
    """The rows per half: n itself (checked: two disjoint halves must fit in every generation), or half the
    smallest generation when n is None."""
    available = min(len(f) for f in gens)
    if n is None:
        n = available // 2
        if n < 2:
            raise ValueError(f"the smallest generation has {available} samples; two disjoint halves of at least "
                             f"2 need 4")
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n}")
    if 2 * n > available:
        raise ValueError(f"n={n} needs 2n={2 * int(n)} samples per generation (two disjoint halves, for the "
                         f"floor), but the smallest generation has {available}")
    return int(n)


def _pools(gens, n, rng) -> list:
    """2n rows of every generation, drawn without replacement, in a random order (first n: A_g, last n: B_g)."""
    return [f[rng.permutation(len(f))[:2 * n]] for f in gens]


def split_halves(features_per_generation, *, n: int | None = None, seed: int = 0) -> list:
    """The disjoint halves (A_g, B_g), n rows each, that the drift curves of this `seed` compare; one pair per
    generation.

    From each generation, 2n rows are drawn without replacement with np.random.default_rng(seed), generation by
    generation; A_g is the first n of them, B_g the other n. n=None: half the smallest generation (rounded
    down); an n whose 2n rows do not fit in every generation is an error. The local and cumulative curves of one
    seed use the same halves, so they share one floor.
    """
    gens = _generations(features_per_generation)
    n = _half_count(n, gens)
    return [(p[:n], p[n:]) for p in _pools(gens, n, np.random.default_rng(seed))]


class _FidHalf:
    """What the Frechet distance needs of one sample: mean, trace of the covariance and either the covariance
    (with its square root, computed once) or, with fewer rows than dimensions, the centred rows."""

    def __init__(self, x: np.ndarray):
        self.n, dim = x.shape
        self.mean = x.mean(axis=0)
        self.xc = x - self.mean
        self.gram = self.n <= dim
        self.trace = float(np.einsum("ij,ij->", self.xc, self.xc)) / (self.n - 1)
        self.cov = None if self.gram else self.xc.T @ self.xc / (self.n - 1)
        self._root = None

    @property
    def root(self) -> np.ndarray:
        """A factor L with L L^T = cov: Cholesky (fast), or the symmetric square root when cov is singular."""
        if self._root is None:
            try:
                self._root = _cholesky(self.cov)
            except np.linalg.LinAlgError:
                self._root = _sym_sqrt_psd(self.cov)
        return self._root


def _fd_halves(a: _FidHalf, b: _FidHalf) -> float:
    """frechet_distance of the Gaussians fitted to two samples, faster for repeated use: tr sqrt(S_a S_b) is the
    sum of sqrt(eig(L^T S_b L)) for any L with L L^T = S_a (computed once per sample; L^T S_b L has the
    eigenvalues of S_a S_b), or, when a sample has no more rows than dimensions, the sum of the singular values
    of Xa Xb^T / sqrt((n_a - 1)(n_b - 1)) (centred rows: the nonzero eigenvalues of S_a S_b are those of that
    n_a x n_b product times its transpose)."""
    diff = a.mean - b.mean
    if a.gram or b.gram:
        trace_sqrt = _singular_values(a.xc @ b.xc.T).sum() / np.sqrt((a.n - 1) * (b.n - 1))
    else:
        middle = a.root.T @ b.cov @ a.root
        trace_sqrt = np.sqrt(np.clip(_eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    return float(max(diff @ diff + a.trace + b.trace - 2.0 * trace_sqrt, 0.0))


def _psd_power(s: np.ndarray, *powers: float) -> np.ndarray | list[np.ndarray]:
    """s^power for a symmetric PSD matrix, on its range (eigenvalues below 1e-10 of the largest count as 0);
    several powers: a list of them, from one eigendecomposition (at 2048 dimensions it costs seconds)."""
    w, v = _eigh((s + s.T) / 2)
    keep = w > 1e-10 * max(float(w.max()), np.finfo(float).tiny)
    out = []
    for power in powers:
        wp = np.zeros_like(w)
        wp[keep] = w[keep] ** power
        out.append((v * wp) @ v.T)
    return out[0] if len(powers) == 1 else out


def _fid_first_order_variance(p: np.ndarray, q: np.ndarray, *, own_only: bool = False) -> float:
    """Delta-method variance of FID(p, q) from the sampling of the two samples p and q themselves.

    First-order change of the Frechet distance: 2 (mu_p - mu_q).(d mu_p - d mu_q) + tr((I - T) dS_p)
    + tr((I - T^-1) dS_q), T the map with T S_p T = S_q (the optimal transport map between the Gaussians), so
    a row x of p contributes 2 (mu_p - mu_q).(x - mu_p) + (x - mu_p)^T (I - T)(x - mu_p). The plug-in mean
    difference carries noise of its own that would add 4 tr(C (C_p + C_q)) (C = S/N) on average: subtracted.
    own_only: only p's part (q held fixed)."""
    mp, mq = p.mean(axis=0), q.mean(axis=0)
    x, y = p - mp, q - mq
    diff, n_p, n_q = mp - mq, len(p), len(q)
    # tr(C_a (C_p + C_q)) with C = S / N, from the rows: tr(S_a S_b) = |X_a X_b^T|_F^2 / ((n_a - 1)(n_b - 1))
    def tr(a, b):  # tr(S_a S_b) through the smaller products: d x d, or n_a x n_b (fewer rows than dimensions)
        if a.shape[1] ** 2 <= len(a) * len(b):
            total = float(np.sum((a.T @ a) * (b.T @ b)))
        else:
            total = float(np.sum((a @ b.T) ** 2))
        return total / ((len(a) - 1) * (len(b) - 1))

    t_pp, t_pq, t_qq = tr(x, x), tr(x, y), tr(y, y)
    influence = 2.0 * x @ diff + np.einsum("ij,ij->i", x, x) - _transport_quadratic(x, y)
    var = influence.var(ddof=1) / n_p - 4.0 * (t_pp / n_p + t_pq / n_q) / n_p
    if not own_only:
        influence = -2.0 * y @ diff + np.einsum("ij,ij->i", y, y) - _transport_quadratic(y, x)
        var += influence.var(ddof=1) / n_q - 4.0 * (t_pq / n_p + t_qq / n_q) / n_q
    return max(float(var), 0.0)


def _transport_quadratic(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """x^T T x for each centred row x of sample a, T the optimal transport map from N(., S_a) to N(., S_b)
    (T S_a T = S_b; S_a^-1/2 (S_a^1/2 S_b S_a^1/2)^1/2 S_a^-1/2 on the range of S_a, eigenvalues below 1e-10 of
    the largest counting as 0). The rows lie in the range of S_a, so everything is computed in its basis V (from
    the SVD of the rows): with S_a = V L V^T and M = L^1/2 (V^T S_b V) L^1/2, T = V L^-1/2 M^1/2 L^-1/2 V^T; an
    r x r problem (r <= n_a - 1) instead of two d x d eigendecompositions when the sample has fewer rows than
    dimensions (seconds each at 2048-d)."""
    _, sv, vt = _thin_svd(xa)
    lam = sv ** 2 / (len(xa) - 1)
    keep = lam > 1e-10 * max(float(lam.max()), np.finfo(float).tiny)
    v, lam = vt[keep].T, lam[keep]
    yb = xb @ v  # sample b's rows in that basis: V^T S_b V = yb^T yb / (n_b - 1)
    root = np.sqrt(lam)
    middle = root[:, None] * (yb.T @ yb / (len(xb) - 1)) * root[None, :]
    t = _psd_power(middle, 0.5) / root[:, None] / root[None, :]
    z = xa @ v
    return np.einsum("ij,ij->i", z @ t, z)


def _kid_first_order_variance(p: np.ndarray, q: np.ndarray, *, own_only: bool = False) -> float:
    """Delta-method (Hoeffding projection) variance of the unbiased MMD^2 with the KID kernel: a row x of p
    contributes 2 (mean_x' k(x, x') - mean_y k(x, y)), a row y of q likewise."""
    kpp, kpq = polynomial_kernel(p, p), polynomial_kernel(p, q)
    h = 2.0 * ((kpp.sum(axis=1) - np.diag(kpp)) / (len(p) - 1) - kpq.mean(axis=1))
    var = h.var(ddof=1) / len(p)
    if not own_only:
        kqq = polynomial_kernel(q, q)
        h = 2.0 * ((kqq.sum(axis=1) - np.diag(kqq)) / (len(q) - 1) - kpq.mean(axis=0))
        var += h.var(ddof=1) / len(q)
    return float(var)


@dataclass(frozen=True, eq=False)
class DriftCurve:
    """A drift curve over generations g = 0..G, its noise floor, its intervals and what it was measured with.

    Every value, floor and interval is a distance between two disjoint samples of `n` rows each (the two
    halves of `split_halves`), so all are comparable with each other and with a `Score` at that n.
      values[g]    the distance of generation g to its reference (g - 1: kind "local", 0: "cumulative")
      floor[g]     the distance between generation g's two halves: two samples of ONE law at the same n, what
                   values[g] would be on average if nothing had changed since the reference
      excess       values - floor (a property): the drift above the floor
      se, low, high    standard error of values[g] and its normal interval values +- z se at `coverage`
      floor_se     standard error of floor[g]
      excess_se    standard error of excess[g]
      trend_se     the error to use for slopes along the curve: for a cumulative curve, generation 0's own
                   sampling noise shifts every point g >= 1 alike and cancels in a slope, so it is left out of
                   trend_se[1:] and put at g = 0 instead (whose excess is 0 exactly); for a local curve it is
                   excess_se
    Standard errors come from `resplits` fresh random splits of each generation's 2n rows (the spread that a
    different split would give) plus the delta-method variance of the distance due to the sampling of those
    rows themselves (which no re-split can see); intervals use Student's t with resplits - 1 degrees of
    freedom; measured coverage in `cumulative_drift`'s options. resplits = 0: no errors (NaN).
    """

    values: np.ndarray
    n: int
    feature_network: str
    resize: str
    metric: str
    kind: str  # "cumulative" (gen g vs gen 0) or "local" (gen g vs gen g-1)
    std: np.ndarray | None = field(default=None)  # KID only: std over subsets
    floor: np.ndarray | None = field(default=None)
    low: np.ndarray | None = field(default=None)
    high: np.ndarray | None = field(default=None)
    se: np.ndarray | None = field(default=None)
    floor_se: np.ndarray | None = field(default=None)
    excess_se: np.ndarray | None = field(default=None)
    trend_se: np.ndarray | None = field(default=None)
    coverage: float = 0.95
    resplits: int = 0

    @property
    def generations(self) -> np.ndarray:
        return np.arange(len(self.values))

    @property
    def excess(self) -> np.ndarray:
        """values - floor: the drift above the noise floor (the values themselves when the curve has no floor)."""
        values = np.asarray(self.values, dtype=np.float64)
        return values.copy() if self.floor is None else values - np.asarray(self.floor, dtype=np.float64)

    def _interval(self, centre, se):
        if se is None:
            nan = np.full(len(self.values), np.nan)
            return nan, nan.copy()
        half = _interval_quantile(self.coverage, self.resplits) * np.asarray(se, dtype=np.float64)
        return centre - half, centre + half

    def excess_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the excess at `coverage`: excess +- z excess_se."""
        return self._interval(self.excess, self.excess_se)

    def floor_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the floor at `coverage`: floor +- z floor_se (NaN without a floor)."""
        if self.floor is None:
            return self._interval(np.full(len(self.values), np.nan), None)
        return self._interval(np.asarray(self.floor, dtype=np.float64), self.floor_se)

    def to_dict(self) -> dict:
        """Every field as plain Python (NaN -> None), plus `excess`."""
        d = asdict(self)
        for key in ("values", "std", "floor", "low", "high", "se", "floor_se", "excess_se", "trend_se"):
            if d[key] is not None:
                d[key] = _json_floats(d[key])
        d["excess"] = _json_floats(self.excess)
        return d


def _json_floats(x) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, dtype=np.float64)]


def _interval_quantile(coverage: float, resplits: int) -> float:
    """The multiplier of se for a two-sided interval at `coverage`: Student's t with resplits - 1 degrees of
    freedom (the standard error is estimated from that many re-splits), the normal quantile without."""
    from scipy.stats import norm, t

    q = (1.0 + coverage) / 2.0
    return float(t.ppf(q, resplits - 1) if resplits >= 2 else norm.ppf(q))


_DRIFT_KINDS = ("local", "cumulative")


def _drift(features_per_generation, kinds, *, n, seed, metric, subsets, subset_size, resplits, coverage,
           feature_network, resize) -> dict:
    """The curves of `kinds` with their common floor; the random draws do not depend on `kinds`."""
    check_choice(metric, ("fid", "kid"), "metric")
    if int(resplits) != resplits or resplits < 0 or resplits == 1:
        raise ValueError(f"resplits must be 0 (no standard errors) or an integer >= 2, got {resplits}")
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    resplits = int(resplits)
    gens = _generations(features_per_generation)
    n = _half_count(n, gens)
    rng = np.random.default_rng(seed)
    pools = _pools(gens, n, rng)
    halves = [(p[:n], p[n:]) for p in pools]
    G1 = len(gens)
    ref = {"local": lambda g: g - 1, "cumulative": lambda g: 0}

    if metric == "fid":
        def score(a, b, s=seed):
            return fid(a, b, n=n, seed=s)

        first_order = _fid_first_order_variance
    else:
        def score(a, b, s=seed):
            return kid(a, b, n=n, seed=s, subsets=subsets, subset_size=subset_size)

        first_order = _kid_first_order_variance

    floor_scores = [score(a, b) for a, b in halves]
    floor = np.array([s.value for s in floor_scores])
    point = {}
    for kind in kinds:
        scores = [floor_scores[0] if kind == "cumulative" else None] + [
            score(halves[g][0], halves[ref[kind](g)][1]) for g in range(1, G1)]
        point[kind] = (np.array([np.nan if s is None else s.value for s in scores]),
                       np.array([np.nan if s is None or s.std is None else s.std for s in scores]))

    # re-splits: every generation's 2n rows split again at random; the same draws whatever `kinds` is
    rep_floor = np.full((resplits, G1), np.nan)
    rep = {k: np.full((resplits, G1), np.nan) for k in _DRIFT_KINDS}
    rep_own = np.full((resplits, G1), np.nan)  # cumulative with the original B_0 held fixed
    fixed_b0 = _FidHalf(halves[0][1]) if metric == "fid" else halves[0][1]
    for r in range(resplits):
        orders = [rng.permutation(2 * n) for _ in range(G1)]
        split = [(p[o[:n]], p[o[n:]]) for p, o in zip(pools, orders)]
        if metric == "fid":
            split = [(_FidHalf(a), _FidHalf(b)) for a, b in split]
            dist = _fd_halves
        else:
            def dist(a, b, s=seed + 1 + r):
                return score(a, b, s).value
        for g in range(G1):
            a, b = split[g]
            rep_floor[r, g] = dist(a, b)
            if g == 0:
                continue
            if "local" in kinds:
                rep["local"][r, g] = dist(a, split[g - 1][1])
            if "cumulative" in kinds:
                rep["cumulative"][r, g] = dist(a, split[0][1])
                rep_own[r, g] = dist(a, fixed_b0)

    def spread(x):
        return x.var(axis=0, ddof=1)

    nan = np.full(G1, np.nan)
    floor_se = np.sqrt(spread(rep_floor)) if resplits else nan.copy()
    curves = {}
    for kind in kinds:
        values, std = point[kind]
        se, excess_se, trend_se = nan.copy(), nan.copy(), nan.copy()
        if resplits:
            lin = np.r_[np.nan, [first_order(pools[g], pools[ref[kind](g)]) for g in range(1, G1)]]
            se = np.sqrt(spread(rep[kind]) + lin)
            excess_se = np.sqrt(spread(rep[kind] - rep_floor) + lin)
            trend_se = excess_se.copy()
            if kind == "cumulative":
                own = np.r_[np.nan, [first_order(pools[g], pools[0], own_only=True) for g in range(1, G1)]]
                trend_se = np.sqrt(spread(rep_own - rep_floor) + own)
                # values[0] is the floor itself, so excess[0] = 0 exactly; generation 0's noise, common to the
                # later points, is not in it: trend_se[0] carries that common part, which a slope through g = 0
                # keeps (w_0 * common, since its weights sum to 0)
                common = np.sqrt(max(excess_se[1] ** 2 - trend_se[1] ** 2, 0.0))
                se[0], excess_se[0], trend_se[0] = floor_se[0], 0.0, common
        half = _interval_quantile(coverage, resplits) * se
        curves[kind] = DriftCurve(values, n, feature_network, resize, metric, kind,
                                  std if metric == "kid" else None, floor=floor.copy(), low=values - half,
                                  high=values + half, se=se, floor_se=floor_se.copy(), excess_se=excess_se,
                                  trend_se=trend_se, coverage=float(coverage), resplits=resplits)
    return curves


_DRIFT_OPTIONS_DOC = """
    n: rows per half (each distance compares two samples of n rows); None (default): half the smallest
       generation. 2n rows must fit in every generation.
    seed: the halves (`split_halves`) and the re-splits; same seed, same halves and floor for both curves.
    metric: "fid" (default) or "kid" (then `std` is the std over KID subsets, subsets/subset_size as in `kid`).
    resplits: random re-splits of each generation's 2n rows for the standard errors (default 20; 0: none).
       The error of a distance has two parts, whose variances add up to se^2: the split of the 2n rows into
       halves (measured: the spread over re-splits) and the sampling of the 2n rows themselves (first-order
       delta method, `_fid_first_order_variance`; 0 for the floor and for a chain that does not move, where
       the re-splits alone are right). KID: the same with its kernel's projection (not calibrated by the
       tests). Cost: resplits x 3-4 distances per generation.
    coverage: nominal coverage of low/high (default 0.95): values +- t se, t Student's quantile with
       resplits - 1 degrees of freedom. Measured (tests/test_phases.py, 20 re-splits, 100 rows per half in 20
       dimensions, 300-600 chains): values 0.95-0.96, floor 0.94-0.96, excess 0.96-0.97 at 95% nominal. Less
       where n is comparable to dim (about 0.90 for 250 rows in 128 dimensions) and much less for n < dim (0.8
       for 20 rows in 128): there the floor's level moves with the sampled spread of the 2n rows, which the
       first-order term leaves out.
    feature_network, resize: stamped on the curve (FID depends on both)."""


def drift_curves(features_per_generation, *, n: int | None = None, seed: int = 0, metric: str = "fid",
                 subsets: int = 10, subset_size: int | None = None, resplits: int = 20, coverage: float = 0.95,
                 feature_network: str = "unknown", resize: str = "none") -> tuple[DriftCurve, DriftCurve]:
    """(local, cumulative) drift in one pass (halves, floor and re-splits computed once); each is identical to
    what `local_drift` / `cumulative_drift` return for the same arguments."""
    c = _drift(features_per_generation, _DRIFT_KINDS, n=n, seed=seed, metric=metric, subsets=subsets,
               subset_size=subset_size, resplits=resplits, coverage=coverage, feature_network=feature_network,
               resize=resize)
    return c["local"], c["cumulative"]


def cumulative_drift(features_per_generation, *, n: int | None = None, seed: int = 0, metric: str = "fid",
                     subsets: int = 10, subset_size: int | None = None, resplits: int = 20,
                     coverage: float = 0.95, feature_network: str = "unknown", resize: str = "none") -> DriftCurve:
    """Cumulative drift FID(g, 0) (or KID) for g = 0..G with its floor and intervals, at one n per half.

    values[g] = d(A_g, B_0), the distance between half A of generation g and half B of generation 0, and
    floor[g] = d(A_g, B_g) (`split_halves`). At g = 0 the value is the
    floor-level comparison d(A_0, B_0) of generation 0 with itself, not a hard 0, so a still chain shows no jump
    at generation 1; its excess is 0 there by construction.
    """
    return _drift(features_per_generation, ("cumulative",), n=n, seed=seed, metric=metric, subsets=subsets,
                  subset_size=subset_size, resplits=resplits, coverage=coverage, feature_network=feature_network,
                  resize=resize)["cumulative"]


def local_drift(features_per_generation, *, n: int | None = None, seed: int = 0, metric: str = "fid",
                subsets: int = 10, subset_size: int | None = None, resplits: int = 20, coverage: float = 0.95,
                feature_network: str = "unknown", resize: str = "none") -> DriftCurve:
    """Local drift FID(g, g-1) (or KID) for g = 1..G (NaN at g = 0) with its floor and intervals, at one n per
    half: values[g] = d(A_g, B_{g-1}), floor[g] = d(A_g, B_g) (`split_halves`)."""
    return _drift(features_per_generation, ("local",), n=n, seed=seed, metric=metric, subsets=subsets,
                  subset_size=subset_size, resplits=resplits, coverage=coverage, feature_network=feature_network,
                  resize=resize)["local"]


for _f in (drift_curves, cumulative_drift, local_drift):
    _f.__doc__ += "\n    Options:" + _DRIFT_OPTIONS_DOC + "\n    "
del _f


# ----------------------------------------------------------------------------------------------------------
# phases of the drift curves (our reconstruction of the paper's three phases)


@dataclass(frozen=True, eq=False)
class Phases:
    """Per-generation phase labels, the first generation of each phase (None when it never occurs) and the
    statistics the labels were read from (per generation, over the slope window)."""

    labels: list  # after the monotone fit (when monotone=True), one of PHASES per generation
    raw_labels: list  # straight from the tests
    boundaries: dict  # phase name -> first generation, or None
    local_slope: np.ndarray  # |slope| of the local excess, in units of its largest value per whole run
    cumulative_slope: np.ndarray  # |slope| of the cumulative excess, in units of its largest |value| per run
    local_level: np.ndarray  # window mean of the local excess over its largest value (NaN without a floor)
    local_slope_z: np.ndarray  # |slope| / its standard error (inf: no error known and slope != 0)
    cumulative_slope_z: np.ndarray
    local_level_z: np.ndarray  # window mean of the local excess / its standard error
    flat_tol: float
    slow_tol: float
    window: int
    z: float = 2.0
    min_generations: int = 1
    floor_known: bool = False  # True: the local curve came with its floor (and the level test was used)


def _curve_values(curve, name) -> np.ndarray:
    values = np.asarray(getattr(curve, "values", curve), dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D curve over generations, got shape {values.shape}")
    return values


def _scatter_se(y: np.ndarray) -> float:
    """Noise sd of a curve from its own scatter: a robust (MAD) sd of its second differences / sqrt(6), which
    a straight stretch does not inflate. 0 for a piecewise-linear curve."""
    finite = y[np.isfinite(y)]
    if len(finite) < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(np.diff(finite, 2))) / np.sqrt(6.0))


def _drift_input(curve, name):
    """(excess, se for levels, se for slopes, floor known) of a DriftCurve with floor and errors, else of the
    values with their scatter as error."""
    values = _curve_values(curve, name)
    floor = getattr(curve, "floor", None)
    excess_se = getattr(curve, "excess_se", None)
    if floor is not None and excess_se is not None and np.any(np.isfinite(excess_se)):
        trend_se = getattr(curve, "trend_se", None)
        trend_se = excess_se if trend_se is None else trend_se
        return (values - np.asarray(floor, float), np.asarray(excess_se, float), np.asarray(trend_se, float), True)
    if floor is not None:  # a floor without errors (resplits=0): errors from the excess's scatter
        excess = values - np.asarray(floor, float)
        se = np.full(len(values), _scatter_se(excess))
        return excess, se, se, True
    se = np.full(len(values), _scatter_se(values))
    return values, se, se, False


def _window_fits(y: np.ndarray, se: np.ndarray, window: int):
    """Per generation g, over the generations lo..lo+window-1 with lo = max(0, g - (window-1)//2) (cut at the
    end), finite points only: least-squares slope and its standard error, and the mean and its standard error
    (errors propagated from `se`, taken as independent between generations)."""
    G1 = len(y)
    slope, slope_se, level, level_se = (np.full(G1, np.nan) for _ in range(4))
    x = np.arange(G1, dtype=float)
    for g in range(G1):
        lo = max(0, g - (window - 1) // 2)
        part = slice(lo, min(G1, lo + window))
        ys, ss, xs = y[part], se[part], x[part]
        ok = np.isfinite(ys)
        if ok.sum() >= 1:
            level[g] = ys[ok].mean()
            level_se[g] = np.sqrt(np.nansum(ss[ok] ** 2)) / ok.sum()
        if ok.sum() >= 2:
            xc = xs[ok] - xs[ok].mean()
            w = xc / (xc @ xc)
            slope[g] = w @ ys[ok]
            slope_se[g] = np.sqrt(np.nansum(w**2 * ss[ok] ** 2))
    return slope, slope_se, level, level_se


def _z_score(estimate: np.ndarray, se: np.ndarray) -> np.ndarray:
    """|estimate| / se; inf where se == 0 < |estimate|, 0 where both are 0, 0 where the estimate is NaN."""
    est = np.nan_to_num(np.abs(estimate), nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(est == 0, 0.0, est / np.nan_to_num(se, nan=0.0))
    return zs


def normalised_slope(values, *, window: int = 3) -> np.ndarray:
    """|least-squares slope| of a curve over `window` generations centred on each g (cut at the ends, NaNs
    skipped), in units of the curve's largest |value| per whole run: |dy/dg| * G / max|y|. A curve that climbs
    steadily from 0 to its maximum over the whole run has slope 1, whatever the run's length and units.
    (The scale of `detect_phases`; pass an excess over the floor, not raw FID, or the floor counts as signal.)"""
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window}")
    y = np.asarray(values, dtype=np.float64)
    slopes = np.full(len(y), np.nan)
    if not np.any(np.isfinite(y)):
        return slopes
    slope = _window_fits(y, np.zeros(len(y)), int(window))[0]
    scale, G = np.nanmax(np.abs(y)), len(y) - 1
    return np.where(np.isfinite(slope), 0.0 if scale == 0 else np.abs(slope) * G / max(scale, 1e-300), np.nan)


def _monotone_fit(codes: np.ndarray, min_generations: int = 1) -> np.ndarray:
    """The labelling 0..0 1..1 2..2 that disagrees with `codes` the fewest times, among those whose every
    phase that occurs spans at least `min_generations` generations (any part may be empty; a run shorter than
    min_generations is one phase). Ties: the earliest boundaries."""
    codes = np.asarray(codes)
    G1 = len(codes)
    miss = [np.r_[0, np.cumsum(codes != c)] for c in range(3)]  # miss[c][k]: disagreements of code c in [0, k)
    best, best_cut = None, (G1, G1)
    for b1 in range(G1 + 1):
        for b2 in range(b1, G1 + 1):
            lengths = (b1, b2 - b1, G1 - b2)
            if max(lengths) < G1 and any(0 < m < min_generations for m in lengths):
                continue
            cost = miss[0][b1] + miss[1][b2] - miss[1][b1] + miss[2][G1] - miss[2][b2]
            if best is None or cost < best:
                best, best_cut = cost, (b1, b2)
    b1, b2 = best_cut
    return np.r_[np.zeros(b1, int), np.ones(b2 - b1, int), np.full(G1 - b2, 2, int)]


def detect_phases(local, cumulative, *, window: int = 3, z: float = 2.0, flat_tol: float = 0.3,
                  slow_tol: float = 1.0, min_generations: int = 3, monotone: bool = True) -> Phases:
    """Label each generation with one of the three phases, from the local and cumulative drift above their
    noise floor, with statistical tests. Our reconstruction: the paper publishes no criterion or threshold.

    Inputs: `DriftCurve`s (from `local_drift` / `cumulative_drift` / `drift_curves`): their excess over the
    floor and its standard errors are used. Plain arrays: no floor is known, so the values are read as they are
    (pass an excess, e.g. `curve.excess`, or an unbiased distance), their noise is estimated from their own
    scatter (robust sd of second differences; 0 for a noiseless curve) and the local curve's level cannot be
    tested (it is judged by its slope only), so arrays cannot tell a random walk from a settled chain.

    Per generation g, over a window of `window` generations (lo = max(0, g - (window-1)//2), cut at the end):
      - the cumulative excess's least-squares slope b_c with its standard error (propagated from `trend_se`,
        errors taken as independent between generations), in units of its largest |value| per whole run,
        s_c = |b_c| G / max|excess|;
      - the local excess's slope b_l likewise (s_l, units of its largest value), and its window mean m_l, the
        drift of one generation above the floor, as a share of its largest value, l = m_l / max excess.
    A slope is *significant* when |b| > z se(b); the local level when m_l > z se(m_l) (one-sided). Then:
      - "active transient": the local drift is significantly above its floor by more than flat_tol of its
        largest value (the chain still takes visible steps every generation: a random walk stays here), or a
        significant slope steeper than slow_tol (a curve still climbs or falls steeply);
      - "slow transient": otherwise, a significant slope steeper than flat_tol, or the local drift
        significantly above its floor but by less than flat_tol of its largest value (small steps that still
        add up: the local drift has plateaued low, the cumulative drift still creeps);
      - "empirical stationarity": neither (both curves flat within their errors, the local drift at its floor).
    Defaults: window 3, z = 2 (a two-sided 5% test per slope), flat_tol 0.3, slow_tol 1.0 (a cumulative curve
    climbing steadily to its maximum over the whole run has s_c = 1), min_generations 3.
    monotone=True (default): the labels are then replaced by the ordering active -> slow -> stationary that
    disagrees with them least and in which every phase that occurs lasts at least `min_generations`
    generations (noise cannot send a chain back to an earlier phase, and a shorter phase is merged into its
    neighbours); monotone=False: the raw labels. Boundaries: the first generation of each phase in the final
    labels, None for a phase that does not occur.
    Measured (tests/test_phases.py; curves with 20 re-splits, 200 samples per generation in 20 dimensions, 12
    generations, 40 seeds): a random walk of the law (0.3 sd steps) is "active transient" at its last
    generation in 40/40 (the old slope-only reading of raw FID: 13/40); a chain that does not move is
    "empirical stationarity" at its last generation in 40/40 (from generation 0: 36/40; raw labels flag
    about 8% of its generations); `synthetic_phase_chain`'s boundaries are found within 2 generations in
    39/40 at its defaults. A DriftCurve without errors (resplits=0) is read with errors from the scatter of
    its excess.
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
    if not z > 0:
        raise ValueError(f"z must be > 0, got {z}")
    if int(min_generations) != min_generations or min_generations < 1:
        raise ValueError(f"min_generations must be a positive integer, got {min_generations}")
    if np.all(np.isnan(loc)) or np.all(np.isnan(cum)):
        raise ValueError("a drift curve is all NaN")
    window, min_generations = int(window), int(min_generations)
    l_excess, l_se, _, floor_known = _drift_input(local, "local")
    c_excess, _, c_trend_se, _ = _drift_input(cumulative, "cumulative")
    G = len(cum) - 1

    l_slope, l_slope_se, l_level, l_level_se = _window_fits(l_excess, l_se, window)
    c_slope, c_slope_se = _window_fits(c_excess, c_trend_se, window)[:2]

    def units(x, scale):
        return np.where(np.isfinite(x), 0.0, np.nan) if scale <= 0 else x / scale

    l_scale = float(np.nanmax(l_excess)) if np.any(np.isfinite(l_excess)) else 0.0
    c_scale = float(np.nanmax(np.abs(c_excess)))
    s_l, s_c = units(np.abs(l_slope) * G, l_scale), units(np.abs(c_slope) * G, c_scale)
    z_l, z_c = _z_score(l_slope, l_slope_se), _z_score(c_slope, c_slope_se)
    level = units(l_level, l_scale) if floor_known else np.full(len(cum), np.nan)
    z_level = np.where(np.nan_to_num(l_level) > 0, _z_score(l_level, l_level_se), 0.0)

    def above(zs, size, tol):
        return (zs > z) & (np.nan_to_num(size, nan=0.0) > tol)

    level_moving = above(z_level, level, flat_tol) if floor_known else np.zeros(len(cum), bool)
    active = level_moving | above(z_c, s_c, slow_tol) | above(z_l, s_l, slow_tol)
    level_above = (z_level > z) if floor_known else np.zeros(len(cum), bool)
    slow = level_above | above(z_c, s_c, flat_tol) | above(z_l, s_l, flat_tol)
    codes = np.where(active, 0, np.where(slow, 1, 2))
    fitted = _monotone_fit(codes, min_generations) if monotone else codes
    boundaries = {}
    for code, phase in enumerate(PHASES):
        hits = np.flatnonzero(fitted == code)
        boundaries[phase] = int(hits[0]) if len(hits) else None
    return Phases([PHASES[c] for c in fitted], [PHASES[c] for c in codes], boundaries, s_l, s_c, level, z_l, z_c,
                  z_level if floor_known else np.full(len(cum), np.nan), float(flat_tol), float(slow_tol), window,
                  float(z), min_generations, floor_known)


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
