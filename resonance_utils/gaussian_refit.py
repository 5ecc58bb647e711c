"""The simplest resonance, solvable in closed form: a Gaussian refitted by maximum likelihood to N of its own
samples. E[S_{n+1} | S_n] = (N - 1)/N S_n, so E[S_n] = ((N - 1)/N)^n S_0.

Nothing here imports torch: every chain is a few numpy operations per generation, driven by chain.run_chain.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import digamma, polygamma

from .chain import ChainResult, run_chain
from .coevolution import _mean_se, _rate_row, one_step_factor
from .geometry import classify_pattern, classify_trajectory
from .recursive_diffusion import GaussianMixture, _check_count, _psd_sqrt


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
# what notebook 07 shows of the refitted Gaussian: the rate table, the curves it plots, the taxonomy


@dataclass(frozen=True, eq=False)
class RefitRates:
    """R chains in 1-D and R in d dimensions, and `table`: every closed form of this module against the
    simulation, one row each (columns of `coevolution.RATE_COLUMNS`). Arrays are (G + 1, R) unless said."""

    table: pd.DataFrame
    variance: np.ndarray  # 1-D: sigma^2_n (sigma^2_0 = 1)
    trace: np.ndarray  # d-D: tr S_n / d
    log_eigenvalues: np.ndarray  # d-D: (G + 1, R, d) log eigenvalues of S_n, largest first (NaN where 0)
    chains: ChainResult  # the d-D chains, for `refit_clouds` and `refit_patterns`
    n_samples: int
    dim: int

    @property
    def generations(self) -> np.ndarray:
        return np.arange(len(self.variance))

    @property
    def lyapunov(self) -> np.ndarray:
        return predicted_refit_lyapunov(self.n_samples, dim=self.dim)

    @property
    def log_drift(self) -> float:
        """The 1-D chains' predicted E log-variance drift per generation."""
        return predicted_refit_log_drift(self.n_samples)


def refit_rates(*, n_samples: int = 20, n_generations: int = 100, dim: int = 4, n_replicates: int = 10000,
                seed: int = 0) -> RefitRates:
    """Run `n_replicates` refit chains in 1-D (seed) and in `dim` dimensions (seed + 1) and compare: the
    one-step variance and trace factors with (N - 1)/N; the mean and spread over chains of sigma^2_n at
    n = min(N, G) and of log sigma^2_G; the log-variance drift; the Lyapunov exponents, read as slopes of the
    sorted log-eigenvalues over the second half (asymptotic: O(1/window) bias); the mean's wander at G.
    SE: the standard error over replicates (of the mean at n from the closed-form spread); NaN for spreads."""
    n_samples, dim = _check_count(n_samples, "n_samples", 2), _check_count(dim, "dim", 1)
    gens = _check_count(n_generations, "n_generations", 1)
    reps = _check_count(n_replicates, "n_replicates", 2)
    if n_samples - 1 < dim:
        raise ValueError(f"the ML covariance of n_samples={n_samples} points in dim={dim} is singular "
                         "(needs n_samples > dim)")
    one_d = run_gaussian_refit(n_samples, gens, dim=1, n_replicates=reps, seed=seed)
    many_d = run_gaussian_refit(n_samples, gens, dim=dim, n_replicates=reps, seed=seed + 1)
    var = np.array([s["covs"][:, 0, 0] for s in one_d.states])
    trace = np.array([np.trace(s["covs"], axis1=1, axis2=2) for s in many_d.states]) / dim
    eig = np.linalg.eigvalsh(np.stack([s["covs"] for s in many_d.states]))[..., ::-1]
    logeig = np.log(np.where(eig > 0, eig, np.nan))
    shift = np.array([(s["means"] ** 2).sum(1) for s in many_d.states]) / dim

    n = np.arange(gens + 1)
    factor, n_mid, half = refit_factor(n_samples), min(n_samples, gens), gens // 2
    sd_pred = predicted_refit_variance_sd(n_samples, n)
    per_gen = (np.log(var[-1]) - np.log(var[0])) / gens
    rows = [_rate_row("variance factor per generation", "1-D", factor, *one_step_factor(var.T), "exact"),
            _rate_row(f"E sigma^2_n / sigma^2_0 at n = {n_mid}", "1-D", predicted_refit_trace(n_samples, n)[n_mid],
                      var[n_mid].mean(), sd_pred[n_mid] / np.sqrt(reps), "exact"),
            _rate_row(f"sd over chains of sigma^2_n at n = {n_mid}", "1-D", sd_pred[n_mid], var[n_mid].std(),
                      np.nan, "exact"),
            _rate_row("E log-variance drift per generation", "1-D", predicted_refit_log_drift(n_samples),
                      *_mean_se(per_gen), "exact"),
            _rate_row(f"sd over chains of log sigma^2_n at n = {gens}", "1-D",
                      predicted_refit_log_sd(n_samples, n)[-1], np.log(var[-1]).std(), np.nan, "exact"),
            _rate_row("trace factor per generation", f"{dim}-D", factor, *one_step_factor(trace.T), "exact")]
    slopes = (logeig[-1] - logeig[half]) / (gens - half)  # second half: past the transient of the eigenvectors
    for i, exponent in enumerate(predicted_refit_lyapunov(n_samples, dim=dim)):
        slope = slopes[:, i]  # NaN where an eigenvalue reached 0
        rows.append(_rate_row(f"Lyapunov exponent {i + 1} (log-eigenvalue drift)", f"{dim}-D", exponent,
                              np.nanmean(slope), np.nanstd(slope) / np.sqrt(np.sum(np.isfinite(slope))),
                              "asymptotic: finite-window bias O(1/window)"))
    rows.append(_rate_row("E|mean_G - mean_0|^2 / tr S_0", f"{dim}-D", predicted_refit_mean_shift(n_samples, gens),
                          *_mean_se(shift[-1]), "exact"))
    return RefitRates(pd.DataFrame(rows), var, trace, logeig, many_d, n_samples, dim)


@dataclass(frozen=True, eq=False)
class RefitPatterns:
    """The eight-pattern taxonomy on one chain's clouds: `patterns` over sliding windows, `whole` from the first
    cloud to the last, and `table` (one row each, the whole run last)."""

    table: pd.DataFrame
    patterns: list
    whole: object  # geometry.Pattern
    clouds: list  # (n_points, d) per classified generation
    generations: list  # the classified generations


def refit_patterns(chains: ChainResult, *, replicate: int = 0, n_points: int = 500, every: int = 20, window: int = 3,
                   seed: int = 0) -> RefitPatterns:
    """Clouds of n_points drawn from one replicate's fitted Gaussian every `every` generations (`refit_clouds`),
    classified by `geometry.classify_trajectory` over windows of `window` clouds and as a whole."""
    every = _check_count(every, "every", 1)
    generations = list(range(0, len(chains.states), every))
    clouds = refit_clouds(chains, replicate=replicate, n_points=n_points, generations=generations, seed=seed)
    patterns = classify_trajectory(clouds, window=window)
    whole = classify_pattern(clouds)
    table = pd.DataFrame([{"from generation": generations[p.start], "to generation": generations[p.end],
                           "pattern": p.pattern, "log variance ratio": p.log_variance_ratio,
                           "flattening": p.flattening, "elongating": p.elongating, "wrinkling": p.wrinkling}
                          for p in patterns + [whole]])
    return RefitPatterns(table, patterns, whole, clouds, generations)
