"""Geometry of a feature cloud (n_samples, dim) and how it changes over generations.

Global measures read the covariance spectrum (size, effective dimension, shape); local measures read k-nearest
neighbourhoods (scale, intrinsic dimension, local shape, roughness). On top of them sits the eight-pattern
taxonomy: {coherent, wrinkled, oblate, prolate} x {expansion, contraction}. The paper names four of these
patterns but publishes no criteria, so the taxonomy below is OUR RECONSTRUCTION, with every threshold a
keyword argument.

Everything is invariant to rotations and translations of the cloud (it uses only distances and covariance
eigenvalues), and every measure except total variance, knn radius and centroid shift is also scale-free.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from .metrics import as_features, check_choice

LOCAL_SHAPES = ("coherent", "wrinkled", "oblate", "prolate")
GLOBAL_TRENDS = ("expansion", "contraction")
PATTERNS = tuple(f"{shape} {trend}" for trend in GLOBAL_TRENDS for shape in LOCAL_SHAPES)


def _check_k(k, n_samples: int, name: str = "k") -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k}")
    if k >= n_samples:
        raise ValueError(f"{name}={k} needs more than {k} samples, got {n_samples}")
    return int(k)


# ----------------------------------------------------------------------------------------------------------
# global measures


def total_variance(x) -> float:
    """Sum of per-dimension variances (ddof=1) = trace of the covariance = mean squared distance to the
    centroid * n / (n - 1). The cloud's size."""
    x = as_features(x)
    return float(x.var(axis=0, ddof=1).sum())


def principal_axes(x, n_components: int | None = None, *, mean=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA by SVD of the centred rows of x (n, dim), the one place that projects clouds on principal axes.

    Returns (centre, axes, singular_values): the centre is x's column mean, or `mean` when given (e.g. the mean
    of a larger set whose subset x sets the directions); axes (k, dim) are orthonormal rows, by descending
    variance about the centre, k = n_components (None: all min(n, dim)); the singular values (min(n, dim),) are
    all of them (variance shares: their squares over the sum of squares). Project with (y - centre) @ axes.T.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"principal_axes needs rows (n, dim), got shape {x.shape}")
    centre = x.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
    _, sv, vt = np.linalg.svd(x - centre, full_matrices=False)
    return centre, vt[:n_components], sv


def pca_spectrum(x) -> np.ndarray:
    """Covariance eigenvalues (ddof=1), descending, length dim (zeros beyond rank n - 1). From the dim x dim
    covariance when n > dim, else from the SVD of the centred data (cheap for wide features)."""
    x = as_features(x)
    n, dim = x.shape
    centred = x - x.mean(axis=0)
    if n > dim:
        eig = np.linalg.eigvalsh(centred.T @ centred / (n - 1))[::-1]
    else:
        eig = np.linalg.svd(centred, compute_uv=False) ** 2 / (n - 1)
    rank = min(n - 1, dim)  # centring removes one degree of freedom: the rest is round-off
    spectrum = np.zeros(dim)
    spectrum[:rank] = np.clip(eig[:rank], 0, None)
    return spectrum


def _spectrum_of(x_or_spectrum, name="x") -> np.ndarray:
    arr = np.asarray(x_or_spectrum, dtype=np.float64)
    if arr.ndim == 1:  # an already computed spectrum
        if np.any(~np.isfinite(arr)) or np.any(arr < -1e-12 * max(1.0, np.abs(arr).max(initial=0))):
            raise ValueError(f"{name}: a spectrum must be finite and non-negative")
        return np.sort(np.clip(arr, 0, None))[::-1]
    return pca_spectrum(arr)


def participation_ratio(x_or_spectrum) -> float:
    """(sum l)^2 / sum l^2 of the covariance eigenvalues l: the number of directions the variance is
    effectively spread over (dim for an isotropic cloud, 1 for a line). Accepts a cloud or a spectrum."""
    spec = _spectrum_of(x_or_spectrum)
    if spec.sum() == 0:
        raise ValueError("participation ratio of a cloud with zero variance is undefined")
    return float(spec.sum() ** 2 / (spec**2).sum())


def within_class(x, labels, *, min_count: int = 2) -> dict:
    """Diversity inside classes: for each label with at least min_count points, the mean Euclidean distance
    between two distinct points of the class and the class cloud's participation ratio; both averaged over those
    classes weighted by their counts. NaN when no class has min_count points (classes counts as 0)."""
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"x must be (n, dim) with one label per row, got {x.shape} and {labels.shape}")
    if min_count < 2:
        raise ValueError(f"min_count must be >= 2 (a distance needs two points), got {min_count}")
    dists, dims, weights = [], [], []
    for c in np.unique(labels):
        members = x[labels == c]
        m = len(members)
        if m < min_count:
            continue
        sq = (members ** 2).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * members @ members.T, 0)
        dists.append(np.sqrt(d2)[np.triu_indices(m, 1)].mean())
        spec = pca_spectrum(members)
        dims.append(participation_ratio(spec) if spec.sum() > 0 else 1.0)  # identical points: one "direction"
        weights.append(m)
    if not weights:
        return {"mean_pairwise_distance": float("nan"), "participation_ratio": float("nan"), "classes": 0}
    return {"mean_pairwise_distance": float(np.average(dists, weights=weights)),
            "participation_ratio": float(np.average(dims, weights=weights)), "classes": len(weights)}


def anisotropy(x_or_spectrum) -> float:
    """l_max / mean(l): 1 for an isotropic cloud, dim for a line (all variance in one direction)."""
    spec = _spectrum_of(x_or_spectrum)
    if spec.sum() == 0:
        raise ValueError("anisotropy of a cloud with zero variance is undefined")
    return float(spec[0] / spec.mean())


def _shape_of_spectrum(spec: np.ndarray, rank: int, floor: float = 1e-12) -> tuple[float, float]:
    """(elongation, flatness) of a descending spectrum whose first `rank` entries can be non-zero.

    elongation = log(l1 / l2): how much the first direction dominates the second (0 when equal).
    flatness   = log(l2 / geometric mean of the lower half of l_1..l_rank): how far the smallest directions are
                 squashed below the leading ones, measured from l2 so that stretching the first direction
                 alone does not count as flattening. Eigenvalues are floored at floor * l1.
    """
    spec = np.maximum(spec[:rank], floor * max(spec[0], np.finfo(float).tiny))
    if rank < 2:
        return 0.0, 0.0
    tail = spec[rank - max(1, rank // 2):]
    return float(np.log(spec[0] / spec[1])), float(np.log(spec[1]) - np.mean(np.log(tail)))


def spectrum_shape(x) -> dict:
    """Global shape of a cloud from its covariance spectrum: {"elongation", "flatness"} (see
    `_shape_of_spectrum`; both natural logs, 0 for an isotropic cloud). Prolate clouds have large elongation,
    oblate ones large flatness. Uses the first min(n - 1, dim) eigenvalues (the rest are zero by rank)."""
    x = as_features(x, min_samples=3)
    return _spectrum_shape(pca_spectrum(x), len(x))


def _spectrum_shape(spec: np.ndarray, n_samples: int) -> dict:
    elongation, flatness = _shape_of_spectrum(spec, min(n_samples - 1, len(spec)))
    return {"elongation": elongation, "flatness": flatness}


def centroid_shift(a, b) -> float:
    """Euclidean distance between the two clouds' means."""
    a, b = as_features(a, "a", min_samples=1), as_features(b, "b", min_samples=1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has dim {a.shape[1]} but b has dim {b.shape[1]}")
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))


# ----------------------------------------------------------------------------------------------------------
# local measures (k nearest neighbours)


def _neighbour_distances(x: np.ndarray, k: int) -> np.ndarray:
    """(n, k) distances to the k nearest other points (column 0 = nearest), self excluded."""
    return cKDTree(x).query(x, k=k + 1)[0][:, 1:]


def _distinct(x: np.ndarray) -> np.ndarray:
    # duplicate points sit at distance 0, where log-distance estimators break down: keep the first copy of
    # each, in the original order
    _, first = np.unique(x, axis=0, return_index=True)
    return x if len(first) == len(x) else x[np.sort(first)]


def knn_radius(x, k: int = 10) -> float:
    """Mean distance from a point to its k-th nearest neighbour: the local length scale."""
    x = as_features(x)
    k = _check_k(k, len(x))
    return float(_neighbour_distances(x, k)[:, -1].mean())


def lid_mle(x, k: int = 20, *, per_point: bool = False):
    """Local intrinsic dimension, Levina & Bickel (2005) maximum-likelihood estimator.

    Per point: m_i = [ (1/(k-1)) sum_{j<k} log(T_k / T_j) ]^(-1), T_j the distance to the j-th neighbour.
    Averaged as MacKay & Ghahramani (2005) suggest: the inverse of the mean of 1/m_i (averaging the m_i
    directly is biased upwards). Duplicate points are dropped first (keeping the first copy); per_point=True
    returns the m_i of the distinct points in their original order.
    """
    x = _distinct(as_features(x))
    k = _check_k(k, len(x))
    if k < 2:
        raise ValueError("lid_mle needs k >= 2")
    t = _neighbour_distances(x, k)
    inverse = np.log(t[:, -1:] / t[:, :-1]).mean(axis=1)  # 1 / m_i
    if per_point:
        with np.errstate(divide="ignore"):
            return 1.0 / inverse
    return float(1.0 / inverse.mean())


def twonn_dimension(x, *, discard_fraction: float = 0.1) -> float:
    """Intrinsic dimension by TwoNN (Facco et al. 2017).

    mu_i = r2 / r1 (second over first neighbour distance) is Pareto with exponent d, so
    -log(1 - F(mu)) = d log(mu); d is the least-squares slope through the origin over the empirical CDF,
    after discarding the largest `discard_fraction` of the mu (default 10%, as in the paper). Duplicate
    points are dropped first.
    """
    x = _distinct(as_features(x, min_samples=3))
    if len(x) < 3:
        raise ValueError("twonn_dimension needs at least 3 distinct points")
    if not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction}")
    r = _neighbour_distances(x, 2)
    mu = np.sort(r[:, 1] / r[:, 0])
    n = len(mu)
    keep = max(2, int(np.floor(n * (1 - discard_fraction))))
    log_mu = np.log(mu[:keep])
    y = -np.log(1 - np.arange(1, keep + 1) / n)  # empirical CDF F_i = i / n
    return float((log_mu @ y) / (log_mu @ log_mu))


def _anchors(n: int, max_anchors: int | None, seed: int) -> np.ndarray:
    if max_anchors is None or n <= max_anchors:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_anchors, replace=False))


def local_spectra(x, k: int = 10, *, max_anchors: int | None = 2000, seed: int = 0) -> np.ndarray:
    """Local PCA: for each anchor point, the covariance eigenvalues (descending) of it and its k nearest
    neighbours, shape (anchors, min(k + 1, dim)). Computed from the (k+1) x (k+1) Gram matrix when that is
    smaller than dim x dim. At most `max_anchors` anchors, drawn with `seed`."""
    x = as_features(x)
    k = _check_k(k, len(x))
    anchors = _anchors(len(x), max_anchors, seed)
    idx = cKDTree(x).query(x[anchors], k=k + 1)[1]  # includes the anchor itself
    m = min(k + 1, x.shape[1])
    out = np.empty((len(anchors), m))
    for start in range(0, len(anchors), 256):  # blocks keep (block, k+1, dim) small for wide features
        nb = x[idx[start:start + 256]]
        nb = nb - nb.mean(axis=1, keepdims=True)
        gram = nb @ nb.transpose(0, 2, 1) if k + 1 <= x.shape[1] else nb.transpose(0, 2, 1) @ nb
        eig = np.linalg.eigvalsh(gram)[:, ::-1][:, :m] / k
        out[start:start + 256] = np.clip(eig, 0, None)
    return out


def local_pca_shape(x, k: int = 10, *, max_anchors: int | None = 2000, seed: int = 0) -> dict:
    """Shape of each k-neighbourhood, from `local_spectra`, with the same definitions as `spectrum_shape`:
    elongation = log(l1 / l2) (how much the first local direction dominates) and flatness =
    log(l2 / geometric mean of the lower half of the local eigenvalues) (how squashed the smallest local
    directions are). Returns per-anchor arrays and their means: {"elongation", "flatness",
    "mean_elongation", "mean_flatness"}."""
    spectra = local_spectra(x, k, max_anchors=max_anchors, seed=seed)
    rank = min(k, spectra.shape[1])  # k + 1 centred points span at most k directions
    shapes = np.array([_shape_of_spectrum(s, rank) for s in spectra]).reshape(-1, 2)
    return {"elongation": shapes[:, 0], "flatness": shapes[:, 1],
            "mean_elongation": float(shapes[:, 0].mean()), "mean_flatness": float(shapes[:, 1].mean())}


def roughness(x, k: int = 10, *, fit_dim: int | None = None, max_anchors: int | None = 2000,
              seed: int = 0) -> float:
    """How crumpled the cloud is at the neighbourhood scale: the mean share of local variance that a
    `fit_dim`-dimensional local linear fit (local PCA plane) leaves unexplained,
    mean_i sum_{j > fit_dim} l_ij / sum_j l_ij, in [0, 1]. 0: every neighbourhood is flat (a smooth
    fit_dim-manifold); near 1 - fit_dim/dim: no local plane fits (noise, crumpling). fit_dim defaults to the
    rounded `lid_mle` of x; pass it explicitly to compare clouds against one another."""
    x = as_features(x)
    k = _check_k(k, len(x))
    if fit_dim is None:
        fit_dim = max(1, int(round(lid_mle(x, k=max(k, 2)))))
    if int(fit_dim) != fit_dim or not 1 <= fit_dim:
        raise ValueError(f"fit_dim must be a positive integer, got {fit_dim}")
    spectra = local_spectra(x, k, max_anchors=max_anchors, seed=seed)
    totals = spectra.sum(axis=1)
    residual = spectra[:, int(fit_dim):].sum(axis=1)
    ok = totals > 0
    if not np.any(ok):
        raise ValueError("every neighbourhood has zero spread (all points duplicated?)")
    return float(np.mean(residual[ok] / totals[ok]))


# ----------------------------------------------------------------------------------------------------------
# summaries over one cloud and over generations


def geometry_summary(x, *, k: int = 10, seed: int = 0, max_anchors: int | None = 2000,
                     fit_dim: int | None = None) -> dict:
    """All scalar measures of one cloud, in a flat dict (one row of `geometry_trajectory`). One neighbourhood
    size k for knn_radius, lid_mle, local_pca_shape and roughness; roughness fits planes of fit_dim
    dimensions (default: the rounded lid_mle). elongation/flatness are the global `spectrum_shape`,
    local_elongation/local_flatness the means of `local_pca_shape`. `seed` picks the local-PCA anchors when
    there are more than max_anchors points."""
    x = as_features(x, min_samples=3)
    spec = pca_spectrum(x)
    shape = _spectrum_shape(spec, len(x))
    local = local_pca_shape(x, k, max_anchors=max_anchors, seed=seed)
    lid = lid_mle(x, k=max(k, 2))
    return {
        "n": len(x),
        "dim": x.shape[1],
        "total_variance": float(spec.sum()),
        "participation_ratio": participation_ratio(spec),
        "anisotropy": anisotropy(spec),
        "elongation": shape["elongation"],
        "flatness": shape["flatness"],
        "knn_radius": knn_radius(x, k),
        "lid_mle": lid,
        "twonn_dimension": twonn_dimension(x),
        "local_elongation": local["mean_elongation"],
        "local_flatness": local["mean_flatness"],
        "roughness": roughness(x, k, fit_dim=fit_dim or max(1, int(round(lid))), max_anchors=max_anchors,
                               seed=seed),
    }


def geometry_trajectory(clouds, *, k: int = 10, seed: int = 0, max_anchors: int | None = 2000,
                        fit_dim: int | None = None):
    """A pandas DataFrame, one row of `geometry_summary` per generation, plus centroid_shift from
    generation 0. Roughness uses one fit_dim for every row (default: the rounded LID of generation 0)."""
    import pandas as pd

    clouds = [as_features(c, f"generation {g}", min_samples=3) for g, c in enumerate(clouds)]
    if not clouds:
        raise ValueError("no clouds given")
    if fit_dim is None:
        fit_dim = max(1, int(round(lid_mle(clouds[0], k=max(k, 2)))))
    rows = []
    for g, c in enumerate(clouds):
        row = {"generation": g, **geometry_summary(c, k=k, seed=seed, max_anchors=max_anchors, fit_dim=fit_dim)}
        row["centroid_shift"] = centroid_shift(clouds[0], c)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# the eight-pattern taxonomy (our reconstruction)


@dataclass(frozen=True)
class Pattern:
    """The pattern of a window of generations and the measurements that decided it."""

    pattern: str  # e.g. "oblate contraction"
    global_axis: str  # "expansion" or "contraction"
    local_axis: str  # "coherent", "wrinkled", "oblate" or "prolate"
    start: int  # first generation of the window
    end: int  # last generation of the window
    log_variance_ratio: float  # log(total variance last / first): > 0 expansion
    wrinkling: float  # roughness change minus global residual change (see classify_pattern)
    flattening: float  # flatness last - first
    elongating: float  # elongation last - first
    roughness_first: float
    roughness_last: float
    lid_first: float
    lid_last: float
    participation_first: float
    participation_last: float
    fit_dim: int

    def to_dict(self) -> dict:
        return asdict(self)


def _window_measures(first, last, k, fit_dim, max_anchors, seed) -> dict:
    spec0, spec1 = pca_spectrum(first), pca_spectrum(last)
    lid0, lid1 = lid_mle(first, k=max(k, 2)), lid_mle(last, k=max(k, 2))
    if fit_dim is None:
        fit_dim = max(1, int(round(lid0)))
    r0 = roughness(first, k, fit_dim=fit_dim, max_anchors=max_anchors, seed=seed)
    r1 = roughness(last, k, fit_dim=fit_dim, max_anchors=max_anchors, seed=seed)
    # the same residual share for the global spectrum: does the cloud as a whole thicken out of its plane?
    g0 = spec0[fit_dim:].sum() / spec0.sum()
    g1 = spec1[fit_dim:].sum() / spec1.sum()
    s0, s1 = _spectrum_shape(spec0, len(first)), _spectrum_shape(spec1, len(last))
    return {
        "log_variance_ratio": float(np.log(spec1.sum() / spec0.sum())),
        "wrinkling": float((r1 - r0) - max(g1 - g0, 0.0)),
        "flattening": s1["flatness"] - s0["flatness"],
        "elongating": s1["elongation"] - s0["elongation"],
        "roughness_first": r0, "roughness_last": r1, "lid_first": lid0, "lid_last": lid1,
        "participation_first": participation_ratio(spec0), "participation_last": participation_ratio(spec1),
        "fit_dim": int(fit_dim),
    }


def classify_pattern(clouds, *, k: int = 10, wrinkling_tol: float = 0.05, flattening_tol: float = 0.5,
                     elongation_tol: float = 0.5, fit_dim: int | None = None, max_anchors: int | None = 2000,
                     seed: int = 0, start: int = 0) -> Pattern:
    """Which of the eight patterns a sequence of clouds follows, from its first and last cloud.

    OUR RECONSTRUCTION of the paper's taxonomy (it names coherent expansion, wrinkled expansion, oblate
    contraction and coherent contraction, but publishes no criteria). Two independent axes:

    global axis: log_variance_ratio = log(total variance last / first); > 0 "expansion", else "contraction".

    local (shape) axis, three scale-free scores comparing last with first:
      wrinkling  = [roughness(last) - roughness(first)] - max(0, change of the global residual share), both
                   residuals beyond the same fit_dim (default round(lid_mle(first))): the neighbourhoods stop
                   lying on fit_dim-planes more than the cloud as a whole thickens ("crumpled paper": local
                   detail that the global size does not follow).                 "wrinkled" if > wrinkling_tol
                   (default 0.05, a share of local variance).
      flattening = flatness(last) - flatness(first), flatness = log(l2 / geometric mean of the lower half of
                   the covariance spectrum): the spectrum's tail collapses, some directions are squashed much
                   more than others.                                  "oblate" if > flattening_tol (0.5 nats).
      elongating = elongation(last) - elongation(first), elongation = log(l1 / l2): one direction comes to
                   dominate.                                          "prolate" if > elongation_tol (0.5 nats).
    Where several scores pass, the largest score / tolerance wins; where none does, "coherent" (the shape is
    preserved while the size changes). Invariant to rotating and translating all clouds together.
    """
    clouds = list(clouds)
    if len(clouds) < 2:
        raise ValueError(f"need at least 2 clouds (first and last of a window), got {len(clouds)}")
    first = as_features(clouds[0], "first cloud", min_samples=3)
    last = as_features(clouds[-1], "last cloud", min_samples=3)
    if first.shape[1] != last.shape[1]:
        raise ValueError(f"first cloud has dim {first.shape[1]} but last cloud has dim {last.shape[1]}")
    for name, tol in (("wrinkling_tol", wrinkling_tol), ("flattening_tol", flattening_tol),
                      ("elongation_tol", elongation_tol)):
        if not tol > 0:
            raise ValueError(f"{name} must be > 0, got {tol}")
    m = _window_measures(first, last, k, fit_dim, max_anchors, seed)
    ratios = {"wrinkled": m["wrinkling"] / wrinkling_tol, "oblate": m["flattening"] / flattening_tol,
              "prolate": m["elongating"] / elongation_tol}
    shape = max(ratios, key=ratios.get)
    local_axis = shape if ratios[shape] > 1 else "coherent"
    global_axis = "expansion" if m["log_variance_ratio"] > 0 else "contraction"
    return Pattern(f"{local_axis} {global_axis}", global_axis, local_axis, start, start + len(clouds) - 1, **m)


def classify_trajectory(clouds, *, window: int = 3, **options) -> list:
    """`classify_pattern` over sliding windows of `window` consecutive generations (g .. g + window - 1, for
    every g), so one Pattern per window start. Options (k, tolerances, ...) pass to classify_pattern."""
    clouds = list(clouds)
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window}")
    if len(clouds) < window:
        raise ValueError(f"window={window} is longer than the {len(clouds)} clouds given")
    return [classify_pattern(clouds[g:g + window], start=g, **options) for g in range(len(clouds) - window + 1)]


def synthetic_pattern_sequence(pattern: str, *, n_generations: int = 6, n_points: int = 600, dim: int = 8,
                               seed: int = 0, size_factor: float = 2.0, squash: float = 0.25,
                               stretch: float = 4.0, wrinkle_amplitude: float = 0.1) -> list:
    """A sequence of n_generations point clouds that follows `pattern` (one of PATTERNS) by construction.

    The same base points are deformed progressively (t = g / (G - 1) from 0 to 1), then the whole cloud is
    rescaled so that its total variance goes from V to V * size_factor^t (expansion) or V / size_factor^t
    (contraction), and finally rotated and shifted by one random rigid motion.
      coherent: a standard Gaussian in dim, shape untouched (only the size changes);
      oblate:   the same Gaussian with its last dim // 2 axes squashed to squash^t of their std;
      prolate:  the same Gaussian with its first axis stretched by stretch^t;
      wrinkled: a smooth, gently curved 2-D sheet in dim (plus 0.005 noise) on which high-frequency waves of
                amplitude wrinkle_amplitude * t grow along the other dim - 3 axes, with a wavelength of about
                1.5 neighbourhood radii (k = 10) so that they crumple the sheet locally, not globally.
    """
    check_choice(pattern, PATTERNS, "pattern")
    if n_generations < 2 or n_points < 20 or dim < 4:
        raise ValueError(f"need n_generations >= 2, n_points >= 20 and dim >= 4, got {n_generations}, "
                         f"{n_points}, {dim}")
    if not (size_factor > 1 and 0 < squash < 1 and stretch > 1 and wrinkle_amplitude > 0):
        raise ValueError("need size_factor > 1, 0 < squash < 1, stretch > 1 and wrinkle_amplitude > 0")
    shape, trend = pattern.split()
    rng = np.random.default_rng(seed)
    if shape == "wrinkled":
        u = rng.uniform(-1, 1, (n_points, 2))
        base = np.zeros((n_points, dim))
        base[:, :2], base[:, 2] = u, 0.3 * (u[:, 0] ** 2 - u[:, 1] ** 2)
        base += 0.005 * rng.standard_normal(base.shape)
        # wavelength tied to the 10-NN radius sqrt(40 / (pi n)) of n points on the square [-1, 1]^2
        frequency = 2 * np.pi / (1.5 * np.sqrt(40 / (np.pi * n_points)))
        directions = rng.standard_normal((2, dim - 3))
        directions /= np.linalg.norm(directions, axis=0)
        waves = np.sin(frequency * u @ directions + rng.uniform(0, 2 * np.pi, dim - 3))
        amplitude = wrinkle_amplitude * np.sqrt(600 / n_points)  # keep the amplitude / wavelength ratio
    else:
        base = rng.standard_normal((n_points, dim))
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    offset = rng.standard_normal(dim)
    clouds, v0 = [], None
    for g in range(n_generations):
        t = g / (n_generations - 1)
        y = base.copy()
        if shape == "oblate":
            y[:, dim // 2:] *= squash**t
        elif shape == "prolate":
            y[:, 0] *= stretch**t
        elif shape == "wrinkled":
            y[:, 3:] += amplitude * t * waves
        v = y.var(axis=0, ddof=1).sum()
        v0 = v if v0 is None else v0
        target = v0 * (size_factor if trend == "expansion" else 1 / size_factor) ** t
        y = (y - y.mean(axis=0)) * np.sqrt(target / v)
        clouds.append(y @ rotation.T + offset)
    return clouds
