"""A member of the feedback family that is solvable in closed form (every simulation here has an exact prediction):
recursive diffusion with early stopping on Gaussian mixtures (after Khelifa, Turner & Venkataramanan 2026,
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

Also home to the Gaussian-mixture helpers and the argument checks that gaussian_refit and coevolution import.

Nothing here imports torch: every chain is a few numpy operations per generation, driven by chain.run_chain.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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


def mixture_from_params(params, *, prefix: str = "data_1d", dim: int = 1) -> GaussianMixture:
    """The isotropic mixture written as the parameters `<prefix>_weights`, `<prefix>_means` and `<prefix>_stds`
    of `params` (a Config or dict of strings: "0.5, 0.5"; 2-D means "x1, y1; x2, y2"). Errors name the parameter."""
    from .config import parse_vector

    names = [f"{prefix}_{key}" for key in ("weights", "means", "stds")]
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"params has no {', '.join(missing)} (prefix={prefix!r})")
    if _check_count(dim, "dim", 1) == 1:
        means = parse_vector(names[1], params[names[1]])
    else:
        means = parse_points(names[1], params[names[1]], dim)
    return isotropic_mixture(parse_vector(names[0], params[names[0]]), means, parse_vector(names[2], params[names[2]]))


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
# what notebook 06 shows: convergence to the limit, Hermite modes, annealed truncation


@dataclass(frozen=True, eq=False)
class ConvergenceStudy:
    """Exact chains for every real fraction in `fractions`, an EM-fitted chain (and optionally an exact chain
    from `initial`) at `real_fraction`, with their L1 distances to the closed-form limit on one grid.
    `table`: per fraction, the predicted factor (1 - lam) e^-delta against the exact chain's (`tail_factor`
    of its L1 distances), L1(limit, data) and L1(model_G, limit)."""

    table: pd.DataFrame
    data: GaussianMixture
    delta: float
    real_fraction: float
    exact: dict  # lam -> [model_0, .., model_G]
    limits: dict  # lam -> limit mixture
    distance: dict  # lam -> (G + 1,) L1(model_n, limit)
    fitted: list  # the EM-fitted chain's models, at real_fraction
    distance_fitted: np.ndarray
    initial: GaussianMixture | None
    from_initial: list | None  # the exact chain from `initial`, at real_fraction
    distance_from_initial: np.ndarray | None
    points: np.ndarray  # the grid (P, d) and its cell volume
    cell: float
    sampler_options: dict  # t_start, n_steps, method of the fitted chain's reverse sampler

    @property
    def fractions(self) -> list:
        return list(self.exact)

    @property
    def limit(self) -> GaussianMixture:
        return self.limits[self.real_fraction]

    def sampler_outputs(self, generations, *, n: int = 1500, seed: int = 0) -> dict:
        """generation -> n samples (n, d) of the fitted model's early-stopped reverse sampler, one stream (seed)."""
        rng = np.random.default_rng(seed)
        return {g: reverse_sample(self.fitted[g], n, self.delta, rng, **self.sampler_options) for g in generations}


def convergence_study(data: GaussianMixture, *, delta: float = 0.1, real_fraction: float = 0.2,
                      n_generations: int = 40, compare_fractions=(), initial: GaussianMixture | None = None,
                      n_samples: int = 4000, n_components: int | None = None, em_iterations: int = 100,
                      sampler: str = "sde", n_steps: int = 200, t_start: float = 3.0, seed: int = 0,
                      grid_points: int = 400) -> ConvergenceStudy:
    """(a, b) The chains with a constant truncation `delta` for `n_generations`: exact for real_fraction and
    every compare_fraction, EM-fitted (`run_fitted_diffusion_chain` with these options) and, given `initial`,
    exact from that start. The grid covers the data, the limit and `initial` (`density_grid`, grid_points per
    axis); L1 distances are `l1_distance` on it."""
    lam = _check_fraction(real_fraction)
    fractions = sorted({_check_fraction(f, "compare_fractions") for f in compare_fractions} | {lam})
    deltas = delta_schedule(delta, n_generations)
    exact = {f: run_exact_diffusion_chain(data, deltas, real_fraction=f).states for f in fractions}
    limits = {f: limit_mixture(data, delta, real_fraction=f) for f in fractions}
    from_initial = None if initial is None else \
        run_exact_diffusion_chain(data, deltas, real_fraction=lam, initial=initial).states
    options = {"t_start": t_start, "n_steps": n_steps, "method": sampler}
    fitted = run_fitted_diffusion_chain(data, deltas, n_samples=n_samples, real_fraction=lam,
                                        n_components=n_components, em_iterations=em_iterations, seed=seed,
                                        t_start=t_start, n_steps=n_steps, sampler=sampler).states

    points, cell = density_grid([data, limits[lam]] + ([] if initial is None else [initial]),
                                n_points=_check_count(grid_points, "grid_points", 2))
    limit_pdf = {f: m.pdf(points) for f, m in limits.items()}

    def distances(models, f):
        return np.array([l1_distance(m, limit_pdf[f], points, cell) for m in models])

    dist = {f: distances(exact[f], f) for f in fractions}
    table = pd.DataFrame([{
        "real fraction lam": f,
        "predicted factor (1-lam) e^-delta": (1 - f) * np.exp(-delta),
        "exact chain, L1 factor (last generations)": tail_factor(dist[f]),
        "L1(limit, data)": l1_distance(limits[f], data, points, cell),
        f"L1(model_{len(deltas)}, limit)": dist[f][-1],
    } for f in fractions])
    return ConvergenceStudy(
        table=table, data=data, delta=float(delta), real_fraction=lam, exact=exact, limits=limits, distance=dist,
        fitted=fitted, distance_fitted=distances(fitted, lam), initial=initial, from_initial=from_initial,
        distance_from_initial=None if initial is None else distances(from_initial, lam), points=points, cell=cell,
        sampler_options=options)


@dataclass(frozen=True, eq=False)
class HermiteStudy:
    """(c) Hermite modes c_k of model_n - limit, k = 0..max_order: the exact chain, `memorising` chains and the
    EM-fitted chain of a `ConvergenceStudy`. `table`, per order k >= 1: the predicted factor (1 - lam) e^-k delta
    against the `ar1_factor` of each learner (SE where sampled), and the limit's gain c_k(limit) / c_k(data):
    predicted, from the closed-form limit, and from the memorising chains' second half."""

    table: pd.DataFrame
    deviation_exact: np.ndarray  # (G + 1, M + 1)
    deviation_memorising: np.ndarray  # (R, G + 1, M + 1)
    deviation_fitted: np.ndarray  # (G + 1, M + 1)
    noise_floor: np.ndarray  # (M + 1,) SE of the memorising chains' mean moment around the limit

    @property
    def max_order(self) -> int:
        return self.deviation_exact.shape[1] - 1


def hermite_study(study: ConvergenceStudy, *, max_order: int = 6, memorising_chains: int = 4,
                  memorising_samples: int = 20000, seed: int = 0) -> HermiteStudy:
    """`memorising_chains` runs of `run_empirical_diffusion_chain` (N = memorising_samples, seeds seed + r) on the
    study's data, delta and real fraction, their Hermite moments and those of the study's exact and fitted
    chains, against `hermite_deviation_factors` and `hermite_limit_gain` (1-D data)."""
    if study.data.dim != 1:
        raise ValueError(f"hermite_study reads 1-D Hermite modes; the study's data has dim {study.data.dim}")
    m_ord = _check_count(max_order, "max_order", 1)
    lam, delta, limit = study.real_fraction, study.delta, study.limit
    gens = len(study.fitted) - 1
    c_data, c_lim = hermite_moments(study.data, m_ord), hermite_moments(limit, m_ord)
    dev_exact = np.array([hermite_moments(s, m_ord) for s in study.exact[lam]]) - c_lim
    deltas = delta_schedule(delta, gens)
    memorising = [run_empirical_diffusion_chain(study.data, deltas, n_samples=memorising_samples, real_fraction=lam,
                                                seed=seed + r).states
                  for r in range(_check_count(memorising_chains, "memorising_chains", 1))]
    moments_memo = np.array([[sample_hermite_moments(s, m_ord) for s in ch] for ch in memorising])
    dev_memo = moments_memo - c_lim
    dev_fit = np.array([hermite_moments(s, m_ord) for s in study.fitted]) - c_lim
    predicted = hermite_deviation_factors(m_ord, delta, real_fraction=lam)
    gain = hermite_limit_gain(m_ord, delta, real_fraction=lam)
    rows = []
    for k in range(1, m_ord + 1):
        f_memo, se_memo = ar1_factor(dev_memo[:, :, k])
        f_fit, se_fit = ar1_factor(dev_fit[:, k])
        rows.append({"order k": k, "predicted factor (1-lam) e^-k delta": predicted[k],
                     "exact chain": ar1_factor(dev_exact[:, k])[0],
                     "memorising chains": f_memo, "memorising SE": se_memo, "EM-fitted chain": f_fit, "EM SE": se_fit,
                     "predicted limit gain": gain[k], "closed-form limit gain": c_lim[k] / c_data[k],
                     "memorising gain (2nd half)": moments_memo[:, gens // 2:, k].mean() / c_data[k]})
    noise = hermite_sampling_se(limit, m_ord, memorising_samples) / np.sqrt(len(memorising))
    return HermiteStudy(pd.DataFrame(rows), dev_exact, dev_memo, dev_fit, noise)


@dataclass(frozen=True, eq=False)
class AnnealingStudy:
    """(d) Exact chains under the `SCHEDULES` of delta_n (same delta0) for each real fraction: `distances`
    (lam, schedule) -> (G + 1,) L1(model_n, data); `summable_limit` = L1(P_D data, data) with D = delta0 pi^2/6,
    where the lam = 0, delta0 / n^2 chain ends; `constant_limit` lam -> L1(limit, data) of the constant-delta
    chain for lam > 0."""

    distances: dict
    summable_limit: float
    constant_limit: dict

    @property
    def fractions(self) -> list:
        return sorted({f for f, _ in self.distances})

    @property
    def final(self) -> dict:
        """"lam=<lam>, <schedule>" -> L1 to the data at the last generation."""
        return {f"lam={f}, {kind}": v[-1] for (f, kind), v in self.distances.items()}


def annealing_study(data: GaussianMixture, *, delta0: float = 0.1, n_generations: int = 40, fractions=(0.0,),
                    points=None, cell: float | None = None, grid_points: int = 400) -> AnnealingStudy:
    """Run the exact chain for every fraction and schedule and measure L1 to the data on `points` (with `cell`;
    default: `density_grid` of the data with grid_points per axis)."""
    if (points is None) != (cell is None):
        raise ValueError("give both points and cell (a grid from density_grid), or neither")
    if points is None:
        points, cell = density_grid([data], n_points=_check_count(grid_points, "grid_points", 2))
    fractions = sorted({_check_fraction(f, "fractions") for f in fractions})
    data_pdf = data.pdf(points)
    distances = {}
    for f in fractions:
        for kind in SCHEDULES:
            states = run_exact_diffusion_chain(data, delta_schedule(delta0, n_generations, kind=kind),
                                               real_fraction=f).states
            distances[f, kind] = np.array([l1_distance(s, data_pdf, points, cell) for s in states])
    summable = l1_distance(early_stop_map(data, delta0 * np.pi**2 / 6), data_pdf, points, cell)
    constant = {f: l1_distance(limit_mixture(data, delta0, real_fraction=f), data_pdf, points, cell)
                for f in fractions if f > 0}
    return AnnealingStudy(distances, summable, constant)
