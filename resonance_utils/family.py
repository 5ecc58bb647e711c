"""Members of the feedback family that are solvable in closed form: every simulation here has an exact prediction.

1. Recursive diffusion with early stopping on Gaussian mixtures (after Khelifa, Turner & Venkataramanan 2026,
   "Recursively trained diffusion models"; our implementation and derivation). Forward process: the
   Ornstein-Uhlenbeck (VP) SDE dX = -X dt + sqrt(2) dW, so X_t = a_t X_0 + s_t Z with a_t = exp(-t),
   s_t^2 = 1 - exp(-2 t). (A DDPM schedule dX = -b(t)/2 X dt + sqrt(b(t)) dW is the same process in the clock
   t = (1/2) int b.) The reverse SDE driven by the exact score of p_t and started from p_T returns, when stopped
   at time delta, exact samples of p_delta = law(a X_0 + s Z): the early-stopped sampler SHRINKS the data by a
   and SMOOTHS it with N(0, s^2 I). Optionally the sampler divides by a ("rescaled"): law(X_0 + (s/a) Z).
   For a Gaussian mixture both are Gaussian mixtures again (means a m, covariances a^2 S + s^2 I).
   Generation n+1 learns q = lam * data + (1 - lam) * p_delta(model_n) (lam: share of fresh real data), so
       model_{n+1} = lam * data + (1 - lam) * P_delta model_n,
   P_t the OU semigroup. Fixed point (unique; the distance to it in total variation shrinks at least by (1 - lam)
   per generation, asymptotically by (1 - lam) exp(-delta), the factor of Hermite mode 1):
       model_inf = sum_{k>=0} lam (1 - lam)^k P_{k delta} data,
   an infinite mixture of increasingly shrunk-and-smoothed copies of the data (lam = 0: N(0, I), the data is
   forgotten). Hermite modes of the reference N(0, I): P_t He_k = exp(-k t) He_k, so the coefficient c_k = E He_k(X)
   of the deviation from the limit shrinks by (1 - lam) exp(-k delta) per generation and the limit holds
   c_k(inf) = lam / (1 - (1 - lam) exp(-k delta)) c_k(data): a low-pass filter.
2. The simplest resonance: a Gaussian refitted by maximum likelihood to N of its own samples.
   E[S_{n+1} | S_n] = (N - 1)/N S_n, so E[S_n] = ((N - 1)/N)^n S_0.
3. Co-evolving text (multinomial over captions) and image (Gaussian per caption) models trained on each other's
   outputs: Wright-Fisher drift of the captions, per-caption contraction of the images, and fresh data.

Nothing here imports torch: every chain is a few numpy operations per generation, driven by chain.run_chain.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, polygamma

from .chain import ChainResult, run_chain

OUTPUTS = ("raw", "rescaled")
SCHEDULES = ("constant", "inverse", "inverse_square")


# ----------------------------------------------------------------------------------------------------------
# Gaussian mixtures


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """sum_k weights[k] N(means[k], covs[k]); shapes (K,), (K, d), (K, d, d). Checked on construction."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __post_init__(self):
        w = np.asarray(self.weights, dtype=np.float64)
        m = np.asarray(self.means, dtype=np.float64)
        c = np.asarray(self.covs, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0:
            raise ValueError(f"weights must be a non-empty vector (K,), got shape {w.shape}")
        if m.ndim != 2 or m.shape[0] != len(w):
            raise ValueError(f"means must have shape (K, d) = ({len(w)}, d), got {m.shape}")
        if c.shape != (len(w), m.shape[1], m.shape[1]):
            raise ValueError(f"covs must have shape (K, d, d) = {(len(w), m.shape[1], m.shape[1])}, got {c.shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(m)) and np.all(np.isfinite(c))):
            raise ValueError("weights, means and covs must be finite")
        if np.any(w < 0) or abs(w.sum() - 1) > 1e-6:
            raise ValueError(f"weights must be >= 0 and sum to 1, got {np.round(w, 6).tolist()} (sum {w.sum():.6g})")
        if not np.allclose(c, np.swapaxes(c, 1, 2), atol=1e-10 * max(1.0, np.abs(c).max())):
            raise ValueError("covs must be symmetric matrices")
        if np.any(np.linalg.eigvalsh(c)[:, 0] < -1e-10 * max(1.0, np.abs(c).max())):
            raise ValueError("covs must be positive semi-definite")
        for name, value in (("weights", w / w.sum()), ("means", m), ("covs", c)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> np.ndarray:
        return self.weights @ self.means

    def cov(self) -> np.ndarray:
        """The mixture's overall covariance: within-component plus between-component spread."""
        centred = self.means - self.mean()
        return np.einsum("k,kij->ij", self.weights, self.covs) + (self.weights * centred.T) @ centred

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = _check_count(n, "n", minimum=1)
        comp = rng.choice(self.n_components, size=n, p=self.weights)
        roots = _psd_sqrt(self.covs)
        z = rng.standard_normal((n, self.dim))
        return self.means[comp] + np.einsum("nij,nj->ni", roots[comp], z)

    def _check_points(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and self.dim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"points must have shape (n, {self.dim}), got {x.shape}")
        return x

    def component_logpdf(self, x) -> np.ndarray:
        """(n, K) log N(x_i; means[k], covs[k]) + log weights[k]."""
        x = self._check_points(x)
        prec, logdet = _precisions(self.covs)
        return _component_logpdf(x, self.weights, self.means, prec, logdet)

    def logpdf(self, x) -> np.ndarray:
        return _logsumexp(self.component_logpdf(x), axis=1)

    def pdf(self, x) -> np.ndarray:
        return np.exp(self.logpdf(x))

    def score(self, x) -> np.ndarray:
        """grad_x log p(x), shape (n, d)."""
        x = self._check_points(x)
        prec, logdet = _precisions(self.covs)
        return _score(x, self.weights, self.means, prec, logdet)


def _psd_sqrt(covs: np.ndarray) -> np.ndarray:
    # symmetric square roots: work for singular (collapsed) covariances where Cholesky fails
    w, v = np.linalg.eigh(covs)
    return np.einsum("...ij,...j,...kj->...ik", v, np.sqrt(np.clip(w, 0, None)), v)


def _precisions(covs: np.ndarray):
    try:
        chol = np.linalg.cholesky(covs)
    except np.linalg.LinAlgError:
        raise ValueError("a component covariance is singular: its density and score are undefined") from None
    logdet = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    return np.linalg.inv(covs), logdet


def _mahalanobis(x, means, prec):
    diff = x[:, None, :] - means[None]  # (n, K, d)
    scaled = np.einsum("kij,nkj->nki", prec, diff)  # prec_k (x - m_k)
    return np.einsum("nki,nki->nk", diff, scaled), scaled


def _rowmax(a):
    # numpy reduces a short last axis slowly (15x here); a loop over the K columns is fast
    top = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(top, a[:, j], out=top)
    return top[:, None]


def _rowsum(a):
    return a @ np.ones((a.shape[1], 1))


def _logsumexp(a, axis=1, keepdims=False):
    """log sum exp over the rows of a (n, K): runs in every reverse-sampler step and EM iteration."""
    if axis != 1 or a.ndim != 2:
        raise ValueError("_logsumexp reduces the rows of a 2-D array")
    top = _rowmax(a)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(_rowsum(np.exp(a - top))) + top
    return out if keepdims else out[:, 0]


def _responsibilities(logp):
    resp = np.exp(logp - _rowmax(logp))
    return resp / _rowsum(resp)


def _component_logpdf(x, weights, means, prec, logdet):
    maha, _ = _mahalanobis(x, means, prec)
    with np.errstate(divide="ignore"):
        logw = np.log(weights)
    return logw - 0.5 * (maha + logdet + x.shape[1] * np.log(2 * np.pi))


def _score(x, weights, means, prec, logdet):
    maha, scaled = _mahalanobis(x, means, prec)
    with np.errstate(divide="ignore"):
        logp = np.log(weights) - 0.5 * (maha + logdet)
    resp = _responsibilities(logp)
    return -np.einsum("nk,nki->ni", resp, scaled)


def isotropic_mixture(weights, means, stds) -> GaussianMixture:
    """A mixture whose component k is N(means[k], stds[k]^2 I). means (K,) for 1-D data or (K, d)."""
    w = np.asarray(weights, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    s = np.asarray(stds, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if not (len(w) == len(m) == len(s)) or s.ndim != 1:
        raise ValueError(f"weights, means and stds need one entry per component, got {len(w)}, {len(m)}, {s.shape}")
    if np.any(s <= 0):
        raise ValueError(f"stds must be > 0, got {s.tolist()}")
    return GaussianMixture(w, m, s[:, None, None] ** 2 * np.eye(m.shape[1]))


def parse_points(name: str, text: str, dim: int) -> np.ndarray:
    """'x1, y1; x2, y2' -> array (K, dim), with errors that name the parameter."""
    rows = [r for r in str(text).split(";") if r.strip()]
    try:
        pts = np.array([[float(v) for v in r.split(",")] for r in rows], dtype=np.float64)
    except ValueError:
        raise ValueError(f"parameter {name!r} must look like '1.0, 2.0; 3.0, 4.0', got {text!r}") from None
    if pts.ndim != 2 or pts.shape[1] != dim:
        raise ValueError(f"parameter {name!r} needs points of {dim} numbers separated by ';', got {text!r}")
    return pts


def mix(first: GaussianMixture, second: GaussianMixture, weight_first: float) -> GaussianMixture:
    """weight_first * first + (1 - weight_first) * second, as one mixture (components concatenated)."""
    if not 0 <= weight_first <= 1:
        raise ValueError(f"weight_first must be in [0, 1], got {weight_first}")
    if first.dim != second.dim:
        raise ValueError(f"mixtures differ in dimension: {first.dim} vs {second.dim}")
    if weight_first == 0:
        return second
    if weight_first == 1:
        return first
    return GaussianMixture(np.r_[weight_first * first.weights, (1 - weight_first) * second.weights],
                           np.r_[first.means, second.means], np.r_[first.covs, second.covs])


# ----------------------------------------------------------------------------------------------------------
# the VP (Ornstein-Uhlenbeck) process and its early-stopped reverse sampler


def _check_delta(delta, name="delta") -> float:
    if not np.isfinite(delta) or delta < 0:
        raise ValueError(f"{name} must be a finite time >= 0, got {delta}")
    return float(delta)


def _check_count(n, name, minimum) -> int:
    if isinstance(n, bool) or int(n) != n or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _check_fraction(lam, name="real_fraction") -> float:
    if not 0 <= lam <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {lam}")
    return float(lam)


def vp_coefficients(t: float) -> tuple[float, float]:
    """(a_t, s_t^2) of X_t = a_t X_0 + s_t Z: (exp(-t), 1 - exp(-2t))."""
    t = _check_delta(t, "t")
    return float(np.exp(-t)), float(-np.expm1(-2 * t))


def noised(model: GaussianMixture, t: float) -> GaussianMixture:
    """p_t, the law of X_t when X_0 ~ model: means a_t m, covariances a_t^2 S + s_t^2 I."""
    a, s2 = vp_coefficients(t)
    return GaussianMixture(model.weights, a * model.means, a * a * model.covs + s2 * np.eye(model.dim))


def early_stop_map(model: GaussianMixture, delta: float, *, output: str = "raw") -> GaussianMixture:
    """What a perfect sampler stopped at time delta returns, as a mixture.

    raw:      x_delta itself ~ p_delta (means shrunk by a = exp(-delta), covariances a^2 S + (1 - a^2) I);
    rescaled: x_delta / a (means kept, covariances S + (exp(2 delta) - 1) I): a pure Gaussian blur.
    """
    delta = _check_delta(delta)
    if output == "raw":
        return noised(model, delta)
    if output == "rescaled":
        return GaussianMixture(model.weights, model.means, model.covs + np.expm1(2 * delta) * np.eye(model.dim))
    raise ValueError(f"unknown output {output!r}; choose one of {list(OUTPUTS)}")


SAMPLERS = ("sde", "exact")


def reverse_sample(model: GaussianMixture, n: int, delta: float, rng: np.random.Generator, *,
                   t_start: float = 3.0, n_steps: int = 200, output: str = "raw", method: str = "sde") -> np.ndarray:
    """n samples of the reverse process from t_start down to delta (early stopping), with the exact score of the
    noised mixture p_t. The start x_{t_start} is drawn from p_{t_start} itself (a mixture: no initialisation
    error). The step sizes shrink quadratically towards delta, where the score changes fastest.

    method="sde": the reverse SDE dx = [x + 2 grad log p_t(x)] d(-t) + sqrt(2) dW by the exponential integrator
        x <- e^h x + 2 (e^h - 1) score + sqrt(e^{2h} - 1) xi (exact for the linear part; first order in h for the
        score: at 200 steps the bias is a few per cent of the 4th Hermite moment, below sampling error at N ~ 1e4).
    method="exact": the reverse process's exact transition p(x_t' | x_t), a mixture over components j with the
        posterior weights r_j(x_t) that the score is made of (grad log p_t = sum_j r_j grad log N_j): no
        discretisation error at any step size, so it checks the closed form to sampling precision.
    """
    delta = _check_delta(delta)
    n = _check_count(n, "n", 1)
    n_steps = _check_count(n_steps, "n_steps", 1)
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose one of {list(OUTPUTS)}")
    if method not in SAMPLERS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(SAMPLERS)}")
    if not t_start > delta:
        raise ValueError(f"t_start must be later than delta, got t_start={t_start}, delta={delta}")
    x = noised(model, t_start).sample(n, rng)
    times = delta + (t_start - delta) * np.linspace(1, 0, n_steps + 1) ** 2
    eye = np.eye(model.dim)
    for t, t_next in zip(times[:-1], times[1:]):
        a, s2 = vp_coefficients(t)
        prec, logdet = _precisions(a * a * model.covs + s2 * eye)
        h = t - t_next
        if method == "sde":
            score = _score(x, model.weights, a * model.means, prec, logdet)
            x = np.exp(h) * x + 2 * np.expm1(h) * score + np.sqrt(np.expm1(2 * h)) * rng.standard_normal(x.shape)
        else:
            x = _exact_reverse_step(x, model, t_next, h, prec, logdet, a, rng)
    return x / np.exp(-delta) if output == "rescaled" else x


def _exact_reverse_step(x, model, t_next, h, prec_t, logdet_t, a_t, rng):
    """x_{t_next} ~ p(. | x_t) = sum_j r_j(x_t) N(mean_j(x_t), C_j): per component j the pair (x_t', x_t) is
    Gaussian (x_t' ~ N(a' m_j, V_j), x_t = a_h x_t' + s_h Z), so the posterior is Gaussian with precision
    V_j^-1 + (a_h^2 / s_h^2) I and mean C_j (V_j^-1 a' m_j + (a_h / s_h^2) x_t)."""
    logp = _component_logpdf(x, model.weights, a_t * model.means, prec_t, logdet_t)
    resp = _responsibilities(logp)
    comp = _rowsum(rng.random((len(x), 1)) > np.cumsum(resp, axis=1))[:, 0].astype(int)  # a draw per row
    comp = np.minimum(comp, model.n_components - 1)
    a_next, s2_next = vp_coefficients(t_next)
    a_h, s2_h = float(np.exp(-h)), float(-np.expm1(-2 * h))
    eye = np.eye(model.dim)
    v_inv = np.linalg.inv(a_next**2 * model.covs + s2_next * eye)
    post_cov = np.linalg.inv(v_inv + (a_h**2 / s2_h) * eye)
    prior_term = np.einsum("kij,kj->ki", v_inv, a_next * model.means)
    mean = np.einsum("nij,nj->ni", post_cov[comp], prior_term[comp] + (a_h / s2_h) * x)
    return mean + np.einsum("nij,nj->ni", _psd_sqrt(post_cov)[comp], rng.standard_normal(x.shape))


def delta_schedule(delta0: float, n_generations: int, *, kind: str = "constant") -> np.ndarray:
    """Truncation times delta_1..delta_G: constant delta0, delta0 / n (not summable) or delta0 / n^2 (summable)."""
    delta0 = _check_delta(delta0, "delta0")
    n = np.arange(1, _check_count(n_generations, "n_generations", 0) + 1, dtype=np.float64)
    if kind == "constant":
        return np.full(len(n), delta0)
    if kind == "inverse":
        return delta0 / n
    if kind == "inverse_square":
        return delta0 / n**2
    raise ValueError(f"unknown schedule {kind!r}; choose one of {list(SCHEDULES)}")


def recursion_step(model: GaussianMixture, data: GaussianMixture, delta: float, *, real_fraction: float = 0.0,
                   output: str = "raw") -> GaussianMixture:
    """The exact next model: lam * data + (1 - lam) * (what the early-stopped sampler of `model` returns)."""
    lam = _check_fraction(real_fraction)
    return mix(data, early_stop_map(model, delta, output=output), lam)


def _deltas(deltas) -> np.ndarray:
    d = np.atleast_1d(np.asarray(deltas, dtype=np.float64))
    if d.ndim != 1 or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"deltas must be a vector of finite times >= 0 (one per generation), got {deltas!r}")
    return d


def run_exact_diffusion_chain(data: GaussianMixture, deltas, *, real_fraction: float = 0.0, output: str = "raw",
                              initial: GaussianMixture | None = None, progress: bool = False) -> ChainResult:
    """(a) Every generation learns its training distribution exactly: states[n] is model_n as a mixture (its
    components grow by K per generation when real_fraction > 0). deltas[n - 1] is generation n's truncation.
    `initial` (default: the data) is model_0: any start converges to the same limit."""
    deltas = _deltas(deltas)
    _check_fraction(real_fraction)
    start = data if initial is None else initial
    if start.dim != data.dim:
        raise ValueError(f"initial has dim {start.dim} but data has dim {data.dim}")

    def step(model, ctx):
        return recursion_step(model, data, deltas[ctx.generation - 1], real_fraction=real_fraction, output=output)

    return run_chain(step, start, len(deltas), seed=0, progress=progress, desc="exact diffusion chain")


def run_empirical_diffusion_chain(data: GaussianMixture, deltas, *, n_samples: int, real_fraction: float = 0.0,
                                  output: str = "raw", seed: int = 0, progress: bool = False) -> ChainResult:
    """(b, non-parametric) Every generation's model is the exact score of its own training set, i.e. of the
    empirical distribution of N points (a diffusion model that memorises). Its noised law is a mixture of
    N(a_t x_i, s_t^2 I), so the early-stopped reverse process returns a training point drawn at random, shrunk
    by a and noised by s (the tests check this against `reverse_sample` on that mixture). states[n] is
    generation n's training set (N, d): round((1 - lam) N) such samples plus fresh draws of the data; states[0]
    is N draws of the data. Its Hermite moments follow E[c_{n+1} | c_n] = lam c_data + (1 - lam) e^{-k delta} c_n
    exactly: the closed form's dynamics plus sampling noise."""
    deltas = _deltas(deltas)
    lam = _check_fraction(real_fraction)
    n_samples = _check_count(n_samples, "n_samples", 2)
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose one of {list(OUTPUTS)}")
    n_synthetic = int(round((1 - lam) * n_samples))

    def step(points, ctx):
        rng = ctx.rng
        a, s2 = vp_coefficients(deltas[ctx.generation - 1])
        picked = points[rng.integers(len(points), size=n_synthetic)]
        synthetic = a * picked + np.sqrt(s2) * rng.standard_normal(picked.shape)
        if output == "rescaled":
            synthetic = synthetic / a
        return np.concatenate([synthetic, data.sample(n_samples - n_synthetic, rng)]) if n_synthetic < n_samples \
            else synthetic

    return run_chain(step, lambda: data.sample(n_samples, np.random.default_rng([seed, 0])), len(deltas),
                     seed=seed, progress=progress, desc="empirical diffusion chain")


def run_fitted_diffusion_chain(data: GaussianMixture, deltas, *, n_samples: int, real_fraction: float = 0.0,
                               n_components: int | None = None, output: str = "raw", t_start: float = 3.0,
                               n_steps: int = 200, sampler: str = "sde", em_iterations: int = 100, seed: int = 0,
                               progress: bool = False) -> ChainResult:
    """(b) Every generation draws round((1 - lam) N) samples from the previous model with the early-stopped
    reverse sampler, adds N minus that many fresh samples of the data, and fits an n_components mixture by EM
    (warm-started at the previous model). states[0] is the data mixture itself."""
    deltas = _deltas(deltas)
    lam = _check_fraction(real_fraction)
    n_samples = _check_count(n_samples, "n_samples", 2)
    k = data.n_components if n_components is None else _check_count(n_components, "n_components", 1)
    n_synthetic = int(round((1 - lam) * n_samples))

    def step(model, ctx):
        rng = ctx.rng
        parts = [data.sample(n_samples - n_synthetic, rng)] if n_synthetic < n_samples else []
        if n_synthetic:
            parts.append(reverse_sample(model, n_synthetic, deltas[ctx.generation - 1], rng, t_start=t_start,
                                        n_steps=n_steps, output=output, method=sampler))
        init = model if model.n_components == k else None
        return fit_gmm(np.concatenate(parts), k, init=init, rng=rng, n_iterations=em_iterations)

    return run_chain(step, data, len(deltas), seed=seed, progress=progress, desc="fitted diffusion chain")


def limit_mixture(data: GaussianMixture, delta: float, *, real_fraction: float, output: str = "raw",
                  tol: float = 1e-12) -> GaussianMixture:
    """The fixed point sum_{k>=0} lam (1 - lam)^k P_{k delta} data of `recursion_step` with a constant delta.

    Truncated where the remaining mass (1 - lam)^(k+1) falls below tol; for raw output that remainder goes to
    N(0, I), the limit of P_{k delta} data, so the truncation error is far below tol. lam = 0: N(0, I) (raw);
    rescaled output with lam = 0 has no limit (the blur grows for ever).
    """
    lam, delta = _check_fraction(real_fraction), _check_delta(delta)
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose one of {list(OUTPUTS)}")
    standard = GaussianMixture(np.ones(1), np.zeros((1, data.dim)), np.eye(data.dim)[None])
    if lam == 0:
        if output == "rescaled" or delta == 0:
            raise ValueError("with real_fraction=0 the chain has a limit only for output='raw' and delta > 0")
        return standard
    if lam == 1 or delta == 0:
        return data
    n_terms = int(np.ceil(np.log(tol) / np.log1p(-lam)))
    parts, weights = [], []
    for k in range(n_terms):
        parts.append(early_stop_map(data, k * delta, output=output))
        weights.append(lam * (1 - lam) ** k * parts[-1].weights)
    rest = (1 - lam) ** n_terms
    if output == "raw":
        parts.append(standard)
        weights.append(np.array([rest]))
    w = np.concatenate(weights)
    return GaussianMixture(w / w.sum(), np.concatenate([p.means for p in parts]),
                           np.concatenate([p.covs for p in parts]))


# ----------------------------------------------------------------------------------------------------------
# fitting a mixture to samples (EM)


def fit_gmm(x, n_components: int, *, init: GaussianMixture | None = None, rng: np.random.Generator | None = None,
            n_iterations: int = 100, tol: float = 1e-7, reg: float = 1e-6) -> GaussianMixture:
    """Maximum-likelihood mixture by EM. Starts from `init` (same K and d) or from k-means++-style seeds drawn
    with rng; stops when the mean log-likelihood gains less than tol. reg * I keeps covariances invertible.
    n_components=1 is the moment fit (sample mean, ML covariance + reg)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be a finite array (n, d), got shape {x.shape}")
    k = _check_count(n_components, "n_components", 1)
    if len(x) < 2 * k:
        raise ValueError(f"need at least 2 samples per component, got {len(x)} samples for {k} components")
    n, d = x.shape
    eye = np.eye(d)
    if init is not None and init.n_components == k and init.dim == d:
        weights, means, covs = init.weights.copy(), init.means.copy(), init.covs + reg * eye
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        means = [x[rng.integers(n)]]
        for _ in range(1, k):  # k-means++ seeding: far points are likelier seeds
            dist = np.min([((x - m) ** 2).sum(1) for m in means], axis=0)
            means.append(x[rng.choice(n, p=dist / dist.sum())] if dist.sum() > 0 else x[rng.integers(n)])
        weights, means = np.full(k, 1 / k), np.array(means)
        covs = np.repeat((np.atleast_2d(np.cov(x, rowvar=False)) + reg * eye)[None], k, axis=0)
    previous = -np.inf
    for _ in range(max(1, int(n_iterations))):
        prec, logdet = _precisions(covs)
        logp = _component_logpdf(x, weights, means, prec, logdet)
        norm = _logsumexp(logp, axis=1, keepdims=True)
        resp = np.exp(logp - norm)
        counts = resp.sum(0) + 1e-12
        weights = counts / n
        means = (resp.T @ x) / counts[:, None]
        diff = x[:, None, :] - means[None]
        covs = np.einsum("nk,nki,nkj->kij", resp, diff, diff) / counts[:, None, None] + reg * eye
        loglik = float(norm.mean())
        if loglik - previous < tol:
            break
        previous = loglik
    return GaussianMixture(weights / weights.sum(), means, covs)


# ----------------------------------------------------------------------------------------------------------
# Hermite modes of the reference Gaussian N(0, I)


def _check_order(max_order) -> int:
    return _check_count(max_order, "max_order", 0)


def hermite_moments(model: GaussianMixture, max_order: int) -> np.ndarray:
    """c[k_1, .., k_d] = E prod_i He_{k_i}(X_i) (probabilists' Hermite polynomials), X ~ model, every index
    0..max_order: an array of shape (max_order + 1,) * d. Exact, from the generating function
    E exp(t.X - |t|^2 / 2) = exp(t.m + t'(S - I)t / 2) of each component N(m, S):
    c_{k + e_r} = m_r c_k + sum_s (S - I)_{rs} k_s c_{k - e_s}."""
    m_ord = _check_order(max_order)
    d = model.dim
    shape = (m_ord + 1,) * d
    v = model.covs - np.eye(d)
    c = np.zeros((model.n_components,) + shape)
    c[(slice(None),) + (0,) * d] = 1.0
    for idx in sorted(np.ndindex(*shape), key=sum):
        if sum(idx) == 0:
            continue
        r = next(i for i, ki in enumerate(idx) if ki > 0)
        prev = list(idx)
        prev[r] -= 1
        value = model.means[:, r] * c[(slice(None),) + tuple(prev)]
        for s in range(d):
            if prev[s] > 0:
                lower = list(prev)
                lower[s] -= 1
                value = value + v[:, r, s] * prev[s] * c[(slice(None),) + tuple(lower)]
        c[(slice(None),) + idx] = value
    return np.tensordot(model.weights, c, axes=1)


def hermite_polynomials(x, max_order: int) -> np.ndarray:
    """He_0..He_max_order at every entry of x: shape x.shape + (max_order + 1,), by He_{k+1} = x He_k - k He_{k-1}."""
    m_ord = _check_order(max_order)
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape + (m_ord + 1,))
    out[..., 0] = 1.0
    if m_ord >= 1:
        out[..., 1] = x
    for k in range(1, m_ord):
        out[..., k + 1] = x * out[..., k] - k * out[..., k - 1]
    return out


def sample_hermite_moments(x, max_order: int) -> np.ndarray:
    """The sample version of `hermite_moments`: mean over rows of x (n, d) of prod_i He_{k_i}(x_i)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be samples (n, d), got shape {x.shape}")
    h = hermite_polynomials(x, max_order)  # (n, d, M + 1)
    prod = h[:, 0, :]
    for i in range(1, x.shape[1]):
        prod = (prod[:, :, None] * h[:, i, None, :]).reshape(len(x), -1)
    return prod.mean(0).reshape((h.shape[-1],) * x.shape[1])


def hermite_sampling_se(model: GaussianMixture, max_order: int, n_samples: int) -> np.ndarray:
    """Standard error of `sample_hermite_moments` from n_samples draws of `model`, same shape: sqrt of
    (E[prod He_k_i(X_i)^2] - c_k^2) / n, the square linearised by He_k^2 = sum_j C(k, j)^2 j! He_{2k - 2j}."""
    from math import comb, factorial

    m_ord = _check_order(max_order)
    n_samples = _check_count(n_samples, "n_samples", 1)
    c2 = hermite_moments(model, 2 * m_ord)
    c = c2[(slice(0, m_ord + 1),) * model.dim]
    second = np.zeros_like(c)
    for idx in np.ndindex(*c.shape):
        total = 0.0
        for j in np.ndindex(*(k + 1 for k in idx)):
            coef = np.prod([comb(k, i) ** 2 * factorial(i) for k, i in zip(idx, j)])
            total += coef * c2[tuple(2 * k - 2 * i for k, i in zip(idx, j))]
        second[idx] = total
    return np.sqrt(np.clip(second - c**2, 0, None) / n_samples)


def hermite_order_energy(moments) -> np.ndarray:
    """sum over |k| = n of c_k^2 / k! (squared coefficients in the orthonormal basis), for n = 0..max_order."""
    c = np.asarray(moments, dtype=np.float64)
    m_ord = c.shape[0] - 1
    energy = np.zeros(m_ord + 1)
    from math import factorial

    for idx in np.ndindex(*c.shape):
        if sum(idx) <= m_ord:
            energy[sum(idx)] += c[idx] ** 2 / np.prod([factorial(i) for i in idx])
    return energy


def hermite_deviation_factors(max_order: int, delta: float, *, real_fraction: float = 0.0) -> np.ndarray:
    """Predicted per-generation factor of Hermite order k of (model_n - limit): (1 - lam) exp(-k delta)."""
    k = np.arange(_check_order(max_order) + 1)
    return (1 - _check_fraction(real_fraction)) * np.exp(-k * _check_delta(delta))


def hermite_limit_gain(max_order: int, delta: float, *, real_fraction: float) -> np.ndarray:
    """c_k(limit) / c_k(data) = lam / (1 - (1 - lam) exp(-k delta)) for k >= 1 (1 for k = 0): the low-pass
    filter that the recursion applies to the data, decreasing in k (0 for every k >= 1 when lam = 0)."""
    lam = _check_fraction(real_fraction)
    k = np.arange(_check_order(max_order) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = lam / (1 - (1 - lam) * np.exp(-k * _check_delta(delta)))
    gain[0] = 1.0
    return np.nan_to_num(gain, nan=1.0)


# ----------------------------------------------------------------------------------------------------------
# densities on a grid


def density_grid(models, *, n_points: int = 400, pad: float = 4.0):
    """(points (P, d), cell volume) of a regular grid covering every model's mean +- pad overall sds (d <= 2)."""
    models = list(models)
    d = models[0].dim
    if d > 2:
        raise ValueError(f"density grids are for d <= 2, got d={d}")
    lo = np.min([m.mean() - pad * np.sqrt(np.diag(m.cov())) for m in models], axis=0)
    hi = np.max([m.mean() + pad * np.sqrt(np.diag(m.cov())) for m in models], axis=0)
    axes = [np.linspace(lo[i], hi[i], n_points) for i in range(d)]
    mesh = np.meshgrid(*axes, indexing="ij")
    cell = np.prod([a[1] - a[0] for a in axes])
    return np.stack([g.ravel() for g in mesh], axis=1), float(cell)


def l1_distance(p, q, points, cell: float) -> float:
    """int |p - q| on the grid (twice the total-variation distance), by the midpoint rule. p and q are mixtures
    or their densities already evaluated at `points` (to reuse an expensive one)."""
    values = [m.pdf(points) if isinstance(m, GaussianMixture) else np.asarray(m, dtype=np.float64) for m in (p, q)]
    if values[0].shape != values[1].shape or values[0].shape != (len(points),):
        raise ValueError(f"densities must have one value per grid point ({len(points)})")
    return float(np.abs(values[0] - values[1]).sum() * cell)


def ar1_factor(deviations) -> tuple[float, float]:
    """Least-squares f and its standard error in dev_{n+1} = f dev_n + noise, pooled over the rows of
    `deviations` (R, G + 1) (or one series (G + 1,)): the per-generation factor of a linear chain read from the
    transient and the stationary fluctuations alike."""
    dev = np.atleast_2d(np.asarray(deviations, dtype=np.float64))
    x, y = dev[:, :-1].ravel(), dev[:, 1:].ravel()
    if len(x) < 3 or not np.any(x):
        raise ValueError("need at least 3 transitions with a non-zero deviation")
    f = float(x @ y / (x @ x))
    resid = y - f * x
    return f, float(np.sqrt(resid @ resid / (len(x) - 1) / (x @ x)))


def tail_factor(values, *, floor: float = 1e-10, points: int = 5) -> float:
    """exp of the least-squares slope of log(values) over the last `points` values above `floor`: the
    asymptotic per-generation factor of a geometric decay (NaN with fewer than 2 such values)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    idx = np.flatnonzero(v > floor)
    if len(idx) == 0:
        return float("nan")
    gaps = np.flatnonzero(np.diff(idx) != 1)  # stay inside the first run above the floor
    run = (idx[: gaps[0] + 1] if len(gaps) else idx)[-points:]
    if len(run) < 2:
        return float("nan")
    return float(np.exp(np.polyfit(run, np.log(v[run]), 1)[0]))


# ----------------------------------------------------------------------------------------------------------
# the simplest resonance: a Gaussian refitted by maximum likelihood to N of its own samples


def run_gaussian_refit(n_samples: int, n_generations: int, *, dim: int = 1, n_replicates: int = 1000,
                       cov0=None, seed: int = 0, progress: bool = False) -> ChainResult:
    """R independent chains at once: each generation draws N samples from N(mean, cov) and refits mean and
    covariance by maximum likelihood (divide by N). states[n] = {"means": (R, d), "covs": (R, d, d)}; all start
    at N(0, cov0) (default I)."""
    n_samples = _check_count(n_samples, "n_samples", 2)
    dim = _check_count(dim, "dim", 1)
    reps = _check_count(n_replicates, "n_replicates", 1)
    cov0 = np.eye(dim) if cov0 is None else np.atleast_2d(np.asarray(cov0, dtype=np.float64))
    if cov0.shape != (dim, dim):
        raise ValueError(f"cov0 must have shape ({dim}, {dim}), got {cov0.shape}")
    GaussianMixture(np.ones(1), np.zeros((1, dim)), cov0[None])  # checks symmetry and PSD

    def step(state, ctx):
        z = ctx.rng.standard_normal((reps, n_samples, dim))
        x = state["means"][:, None, :] + np.einsum("rij,rnj->rni", _psd_sqrt(state["covs"]), z)
        mean = x.mean(axis=1)
        centred = x - mean[:, None, :]
        return {"means": mean, "covs": np.einsum("rni,rnj->rij", centred, centred) / n_samples}

    initial = {"means": np.zeros((reps, dim)), "covs": np.repeat(cov0[None], reps, axis=0)}
    return run_chain(step, initial, _check_count(n_generations, "n_generations", 0), seed=seed, progress=progress,
                     desc="Gaussian refit")


def refit_factor(n_samples: int) -> float:
    """E[S_{n+1} | S_n] = (N - 1) / N S_n for the ML covariance of N samples."""
    n_samples = _check_count(n_samples, "n_samples", 2)
    return (n_samples - 1) / n_samples


def predicted_refit_trace(n_samples: int, generations, *, trace0: float = 1.0) -> np.ndarray:
    """E[tr S_n] = ((N - 1) / N)^n tr S_0 (per dimension and for the trace alike)."""
    return trace0 * refit_factor(n_samples) ** np.asarray(generations, dtype=np.float64)


def predicted_refit_variance_sd(n_samples: int, generations, *, var0: float = 1.0) -> np.ndarray:
    """1-D: the standard deviation over chains of sigma^2_n. sigma^2_{n+1} = sigma^2_n chi^2_{N-1} / N, so
    E sigma^4_n = var0^2 ((N^2 - 1) / N^2)^n and sd = var0 sqrt(((N^2-1)/N^2)^n - ((N-1)/N)^(2n))."""
    n = np.asarray(generations, dtype=np.float64)
    big_n = _check_count(n_samples, "n_samples", 2)
    return var0 * np.sqrt(np.clip(((big_n**2 - 1) / big_n**2) ** n - refit_factor(big_n) ** (2 * n), 0, None))


def predicted_refit_log_drift(n_samples: int, *, dim: int = 1) -> float:
    """E[log det S_{n+1} - log det S_n] = sum_{i=1..d} psi((N - i) / 2) + d log(2 / N) (N S_{n+1} is Wishart
    with N - 1 degrees of freedom around S_n), about -d (d + 3) / (2N): the typical chain shrinks faster than
    the mean ((N - 1)/N)^n ~ exp(-n/N) per dimension suggests; rare chains that stay large hold the mean up."""
    big_n, dim = _check_count(n_samples, "n_samples", 2), _check_count(dim, "dim", 1)
    if big_n - 1 < dim:
        raise ValueError(f"the ML covariance of N={big_n} samples in dim={dim} is singular (needs N > dim)")
    return float(sum(digamma((big_n - i) / 2) for i in range(1, dim + 1)) + dim * np.log(2 / big_n))


def predicted_refit_log_sd(n_samples: int, generations) -> np.ndarray:
    """1-D: the standard deviation over chains of log sigma^2_n, sqrt(n psi'((N - 1) / 2)): log sigma^2_n is a
    sum of n independent log(chi^2_{N-1} / N) terms (so its quantiles are about normal, unlike sigma^2_n's)."""
    big_n = _check_count(n_samples, "n_samples", 2)
    return np.sqrt(np.asarray(generations, dtype=np.float64) * float(polygamma(1, (big_n - 1) / 2)))


def predicted_refit_lyapunov(n_samples: int, *, dim: int = 1) -> np.ndarray:
    """Per-generation drift of the sorted log-eigenvalues of S_n (largest first): psi((N - i) / 2) + log(2 / N),
    i = 1..d, the Lyapunov spectrum of a product of Gaussian matrices (S_n = M_n M_n' with M_{n+1} = M_n G / sqrt(N),
    G a d x (N - 1) standard Gaussian). The exponents differ, so refitting contracts some directions faster than
    others: directional contraction, and a cloud that turns oblate or prolate as it shrinks."""
    big_n, dim = _check_count(n_samples, "n_samples", 2), _check_count(dim, "dim", 1)
    if big_n - 1 < dim:
        raise ValueError(f"the ML covariance of N={big_n} samples in dim={dim} is singular (needs N > dim)")
    return np.array([digamma((big_n - i) / 2) + np.log(2 / big_n) for i in range(1, dim + 1)])


def predicted_refit_mean_shift(n_samples: int, generations, *, trace0: float = 1.0) -> np.ndarray:
    """E|mean_n - mean_0|^2 = tr S_0 (1 - ((N-1)/N)^n): the mean wanders, but the second moment about the
    original mean, tr S_n + |mean_n - mean_0|^2, is a martingale, so the wander stays below tr S_0."""
    return trace0 * (1 - refit_factor(n_samples) ** np.asarray(generations, dtype=np.float64))


def refit_clouds(result: ChainResult, *, replicate: int = 0, n_points: int = 500, generations=None,
                 seed: int = 0) -> list:
    """Point clouds (n_points, d) drawn from one replicate's fitted Gaussian at each chosen generation, for the
    geometry measures and the taxonomy."""
    gens = range(len(result.states)) if generations is None else generations
    rng = np.random.default_rng(seed)
    clouds = []
    for g in gens:
        mean, cov = result.states[g]["means"][replicate], result.states[g]["covs"][replicate]
        clouds.append(mean + rng.standard_normal((n_points, len(mean))) @ _psd_sqrt(cov).T)
    return clouds


# ----------------------------------------------------------------------------------------------------------
# co-evolving text and image models

CASES = {"frozen_image": (True, False), "frozen_text": (False, True), "coupled": (True, True)}
CAPTIONERS = ("sampled", "map")


def coevolution_initial(n_captions: int, dim: int, *, zipf: float = 1.0, separation: float = 3.0,
                        spread: float = 1.0, seed: int = 0) -> dict:
    """The original joint model: caption probabilities proportional to 1 / rank^zipf, per-caption image means
    drawn from N(0, separation^2 I) (with seed) and isotropic covariances spread^2 I.
    {"probs": (K,), "means": (K, d), "covs": (K, d, d)}."""
    k = _check_count(n_captions, "n_captions", 2)
    dim = _check_count(dim, "dim", 1)
    if not (zipf >= 0 and separation >= 0 and spread > 0):
        raise ValueError(f"need zipf >= 0, separation >= 0 and spread > 0, got {zipf}, {separation}, {spread}")
    probs = np.arange(1, k + 1, dtype=np.float64) ** -zipf
    means = separation * np.random.default_rng(seed).standard_normal((k, dim))
    return {"probs": probs / probs.sum(), "means": means, "covs": np.repeat(spread**2 * np.eye(dim)[None], k, 0)}


def _check_joint(state: dict, name: str = "state") -> dict:
    try:
        probs, means, covs = (np.asarray(state[key], dtype=np.float64) for key in ("probs", "means", "covs"))
    except KeyError as e:
        raise ValueError(f"{name} needs keys probs, means and covs; missing {e}") from None
    k = len(probs)
    if probs.ndim != 1 or means.ndim != 2 or means.shape[0] != k or covs.shape != (k,) + means.shape[1:] * 2:
        raise ValueError(f"{name}: probs (K,), means (K, d) and covs (K, d, d) disagree: {probs.shape}, "
                         f"{means.shape}, {covs.shape}")
    if np.any(probs < 0) or abs(probs.sum() - 1) > 1e-6:
        raise ValueError(f"{name}: caption probabilities must be >= 0 and sum to 1 (sum {probs.sum():.6g})")
    return {"probs": probs, "means": means, "covs": covs}


def caption_map(x, state: dict) -> np.ndarray:
    """The captioner: the most probable caption of each image under the joint model,
    argmax_k log probs_k + log N(x; means_k, covs_k) (a tiny ridge keeps collapsed covariances usable)."""
    state = _check_joint(state)
    covs = state["covs"]
    ridge = 1e-10 * max(1.0, float(np.abs(covs).max()))
    prec, logdet = _precisions(covs + ridge * np.eye(covs.shape[1]))
    return np.argmax(_component_logpdf(np.asarray(x, dtype=np.float64), state["probs"], state["means"], prec,
                                       logdet), axis=1)


def sample_joint(state: dict, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n (caption, image) pairs from a joint model: captions (n,) from probs, images (n, d) from their Gaussians."""
    return _sample_joint(_check_joint(state), _check_count(n, "n", 0), rng)


def _sample_joint(state, n, rng):
    captions = rng.choice(len(state["probs"]), size=n, p=state["probs"])
    z = rng.standard_normal((n, state["means"].shape[1]))
    return captions, state["means"][captions] + np.einsum("nij,nj->ni", _psd_sqrt(state["covs"])[captions], z)


def coevolve_step(state: dict, rng: np.random.Generator, *, original: dict, n_samples: int, refit_text: bool,
                  refit_images: bool, captioner: str = "map", fresh_fraction: float = 0.0) -> dict:
    """One generation. N - round(lam N) (caption, image) pairs come from the current models (caption from the
    text model, image from that caption's Gaussian), round(lam N) fresh pairs from the original. A refitted
    text model learns caption frequencies from the labels: for generated images the captioner's ("map": the
    most probable caption under the current joint model; "sampled": the prompt itself), for fresh pairs their
    own. A refitted image model learns, per caption, the ML mean and covariance of the images carrying that
    label (the same labels); a caption with no image keeps its Gaussian."""
    if captioner not in CAPTIONERS:
        raise ValueError(f"unknown captioner {captioner!r}; choose one of {list(CAPTIONERS)}")
    lam = _check_fraction(fresh_fraction, "fresh_fraction")
    n_samples = _check_count(n_samples, "n_samples", 2)
    n_fresh = int(round(lam * n_samples))
    captions, images = _sample_joint(state, n_samples - n_fresh, rng)
    if refit_text and captioner == "map" and len(images):
        captions = caption_map(images, state)
    if n_fresh:
        real_captions, real_images = _sample_joint(original, n_fresh, rng)
        captions, images = np.r_[captions, real_captions], np.r_[images, real_images]
    k = len(state["probs"])
    counts = np.bincount(captions, minlength=k)
    new = {key: np.array(value, copy=True) for key, value in state.items()}
    if refit_text:
        new["probs"] = counts / counts.sum()
    if refit_images:
        for c in np.flatnonzero(counts):
            new["means"][c], new["covs"][c] = _ml_moments(images[captions == c])
    return new


def _ml_moments(xs: np.ndarray):
    """ML mean and covariance (divide by n) of xs (n, d), centred on its first row before averaging, so that
    identical points give exactly zero covariance: otherwise the rounding of the mean leaves ~1e-31 of fake
    spread, which a collapsed caption would then multiply up at random."""
    shifted = xs - xs[0]
    mean = shifted.mean(axis=0)
    centred = shifted - mean
    return xs[0] + mean, centred.T @ centred / len(xs)


def run_coevolution(original: dict, n_generations: int, *, case: str, n_samples: int, captioner: str = "map",
                    fresh_fraction: float = 0.0, n_replicates: int = 1, seed: int = 0) -> dict:
    """n_replicates chains of one case (frozen_image, frozen_text or coupled), each through chain.run_chain with
    its own seed. Returns arrays (R, G + 1, K): "probs", "traces" (per-caption covariance trace, the image
    diversity) and "shift2" (|mean_k - original mean_k|^2, the fidelity error)."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; choose one of {list(CASES)}")
    original = _check_joint(original, "original")
    refit_text, refit_images = CASES[case]
    out = {"probs": [], "traces": [], "shift2": []}
    for r in range(_check_count(n_replicates, "n_replicates", 1)):
        def step(state, ctx):
            return coevolve_step(state, ctx.rng, original=original, n_samples=n_samples, refit_text=refit_text,
                                 refit_images=refit_images, captioner=captioner, fresh_fraction=fresh_fraction)

        chain_seed = int(np.random.SeedSequence([int(seed), r]).generate_state(1)[0])
        states = run_chain(step, original, _check_count(n_generations, "n_generations", 0), seed=chain_seed,
                           progress=False).states
        out["probs"].append([s["probs"] for s in states])
        out["traces"].append([np.trace(s["covs"], axis1=1, axis2=2) for s in states])
        out["shift2"].append([((s["means"] - original["means"]) ** 2).sum(1) for s in states])
    return {key: np.array(value) for key, value in out.items()}


def live_diversity(result: dict) -> np.ndarray:
    """Per-caption image diversity that the system can still produce: the covariance trace where the caption is
    alive (probability > 0), else 0. Shape (R, G + 1, K), from a `run_coevolution` result."""
    return result["traces"] * (result["probs"] > 0)


def one_step_factor(series, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of x_{n+1} / x_n along `axis` (generations), pooled over every other axis but
    the last when series is 3-D (R, G + 1, K: one value per K), over all when 2-D. Where E[x_{n+1} | past] =
    f x_n exactly (Wright-Fisher heterozygosity, an ML refit's variance) the mean is an unbiased estimate of f.
    Steps from x_n = 0 are left out."""
    x = np.moveaxis(np.asarray(series, dtype=np.float64), axis, 1)
    if x.ndim not in (2, 3) or x.shape[1] < 2:
        raise ValueError(f"series must be (R, G + 1) or (R, G + 1, K) with G >= 1, got shape {x.shape}")
    before, after = x[:, :-1], x[:, 1:]
    ok = before > 0
    ratio = np.where(ok, after / np.where(ok, before, 1.0), np.nan)
    flat = ratio.reshape(-1, ratio.shape[2]) if ratio.ndim == 3 else ratio.reshape(-1, 1)
    count = np.sum(~np.isnan(flat), axis=0)
    with warnings.catch_warnings():  # a caption with no usable step gives NaN, which is the right answer
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, se = np.nanmean(flat, axis=0), np.nanstd(flat, axis=0) / np.sqrt(count)
    return (mean, se) if x.ndim == 3 else (mean[0], se[0])


def first_crossing(curves, level: float) -> np.ndarray:
    """Index of the first entry below `level` along the last axis of `curves` (NaN where none falls below): e.g.
    the generation at which a caption's mean diversity first drops under half of its start."""
    c = np.asarray(curves, dtype=np.float64)
    below = c < level
    return np.where(below.any(axis=-1), np.argmax(below, axis=-1), np.nan)


def entropy_bits(probs, axis: int = -1) -> np.ndarray:
    """Shannon entropy in bits of caption probabilities along `axis` (0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=axis)


def heterozygosity(probs, axis: int = -1) -> np.ndarray:
    """1 - sum p_k^2: the chance that two captions drawn at random differ (Wright-Fisher's diversity)."""
    p = np.asarray(probs, dtype=np.float64)
    return 1 - (p**2).sum(axis=axis)


def predicted_heterozygosity(probs0, n_samples: int, generations: int, *, fresh_fraction: float = 0.0) -> np.ndarray:
    """E[1 - sum p_n^2] for n = 0..generations when the text model is refitted on N - N0 captions sampled from
    itself plus N0 = round(lam N) fresh captions from probs0 (exact for the "sampled" captioner). With
    S = E sum p^2, P = E sum p p0, Q = sum p0^2 and N1 = N - N0:
        S' = [N1 (1 - S) + N0 (1 - Q) + N1^2 S + 2 N1 N0 P + N0^2 Q] / N^2,   P' = (N1 P + N0 Q) / N.
    lam = 0: 1 - S' = (1 - 1/N)(1 - S), Wright-Fisher's loss of diversity; lam > 0: a stationary level."""
    p0 = np.asarray(probs0, dtype=np.float64)
    big_n = _check_count(n_samples, "n_samples", 2)
    n0 = int(round(_check_fraction(fresh_fraction, "fresh_fraction") * big_n))
    n1 = big_n - n0
    q = s = p = float((p0**2).sum())
    out = [1 - s]
    for _ in range(_check_count(generations, "generations", 0)):
        s, p = (n1 * (1 - s) + n0 * (1 - q) + n1**2 * s + 2 * n1 * n0 * p + n0**2 * q) / big_n**2, \
            (n1 * p + n0 * q) / big_n
        out.append(1 - s)
    return np.array(out)


def _binomial_support(n, p, tail=1e-13):
    from scipy.stats import binom

    if n == 0 or p == 0:
        return np.zeros(1, dtype=int), np.ones(1)
    lo, hi = binom.ppf(tail, n, p), binom.isf(tail, n, p)
    k = np.arange(int(max(lo - 1, 0)), int(min(hi + 1, n)) + 1)
    pmf = binom.pmf(k, n, p)
    return k, pmf / pmf.sum()


def image_contraction_factor(probs, n_samples: int) -> np.ndarray:
    """Per caption, E[tr S_{n+1}] / E[tr S_n] under a frozen text model: n_k ~ Binomial(N, p_k) images, ML refit
    (factor (n_k - 1) / n_k, and 1 when n_k = 0 leaves the Gaussian untouched): rho_k = 1 - E[1 / n_k; n_k >= 1]."""
    traces, _ = predicted_image_moments(probs, n_samples, 1, trace0=1.0)
    return traces[1]


def predicted_image_moments(probs, n_samples: int, generations: int, *, trace0=1.0,
                            fresh_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact E[tr S_k,n] and E|mean_k,n - mean_k,0|^2, (generations + 1, K) each, under a frozen text model
    (captions sampled from probs) with N0 = round(lam N) fresh pairs. Given the counts n_s (generated) and n_f
    (fresh) of caption k, n = n_s + n_f, w = counts / n, the ML refit gives
        E tr S' = (1 - 1/n)(w_s v + w_f v0) + w_s w_f m,    E m' = w_s^2 m + (w_s v + w_f v0) / n,
    (v = tr S, m = |mean - mean_0|^2; n = 0 leaves both unchanged); the counts are independent of the state,
    so averaging these coefficients over the two binomials gives a linear recursion, iterated here.
    lam = 0: E tr S_n = rho^n v0 and E m_n = v0 (1 - rho^n) with rho = 1 - E[1/n; n >= 1]."""
    p = np.asarray(probs, dtype=np.float64)
    big_n = _check_count(n_samples, "n_samples", 2)
    n0 = int(round(_check_fraction(fresh_fraction, "fresh_fraction") * big_n))
    n1 = big_n - n0
    v0 = np.broadcast_to(np.asarray(trace0, dtype=np.float64), p.shape).astype(np.float64)
    gens = _check_count(generations, "generations", 0)
    traces, shifts = np.empty((gens + 1, len(p))), np.empty((gens + 1, len(p)))
    for k, pk in enumerate(p):
        ks, ps = _binomial_support(n1, pk)
        kf, pf = _binomial_support(n0, pk)
        ns, nf = np.meshgrid(ks, kf, indexing="ij")
        weight = np.outer(ps, pf)
        n = ns + nf
        empty = n == 0
        n_safe = np.where(empty, 1, n)
        ws, wf = np.where(empty, 0, ns / n_safe), np.where(empty, 0, nf / n_safe)
        shrink = np.where(empty, 0, 1 - 1 / n_safe)
        a1 = (weight * (shrink * ws + empty)).sum()
        a2 = (weight * shrink * wf).sum()
        a3 = (weight * ws * wf).sum()
        b1 = (weight * (ws**2 + empty)).sum()
        b2 = (weight * ws / n_safe).sum()
        b3 = (weight * wf / n_safe).sum()
        v, m = v0[k], 0.0
        traces[0, k], shifts[0, k] = v, m
        for g in range(1, gens + 1):
            v, m = a1 * v + a2 * v0[k] + a3 * m, b1 * m + b2 * v + b3 * v0[k]
            traces[g, k], shifts[g, k] = v, m
    return traces, shifts

