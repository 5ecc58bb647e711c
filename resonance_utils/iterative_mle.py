"""Iterative MLE with accumulating data: the Gaussian refit chain of `gaussian_refit` trained under
`chain.training_set`'s regimes replace and accumulate, its closed forms against simulation, and a fitting rule of
ours under which accumulating the data does not prevent collapse.

The chain. Generation 0 is n real samples from N(mu, S) (mu = 0, S = I in d dimensions). Model t + 1 is fitted
to the training set of generation t (replace: its n samples; accumulate: all n (t + 1) samples so far, the real
ones included, so the real share is 1 / (t + 1)) and draws generation t + 1's n samples. The fit is the weighted
ML Gaussian (mean, and covariance divided by the total weight, not N - 1): the newest generation carries the
share w_{t+1} of the weight and the older data keep their relative weights. The plain MLE weighs every sample the
same: w_{t+1} = 1 under replace, 1 / (t + 1) under accumulate. Our counterexample fixes w and lets the generator
sample at temperature tau: generation t >= 1 is drawn from N(mu_t, tau^2 S_t).

Closed forms (v_t = E tr S_t / tr S, e_t = E|mu_t - mu|^2 / tr S, tau_0 = 1 for the real generation, tau_t = tau
after it). Given the past, with the newest share w = w_{t+1},
    S_{t+1} = (1 - w) S_t + w C_t + w (1 - w) (xbar_t - mu_t)(xbar_t - mu_t)',
where C_t is the ML covariance of generation t's n samples (E C_t = tau_t^2 (1 - 1/n) S_t) and
E (xbar_t - mu_t)(...)' = tau_t^2 S_t / n; and mu_{t+1} - mu_t = w (xbar_t - mu_t), a martingale increment. So
    v_{t+1} = v_t [1 - w + w tau_t^2 (1 - w/n)],        e_{t+1} = e_t + w^2 tau_t^2 v_t / n.
- replace (w = 1, tau = 1): v_t = (1 - 1/n)^t (the variance collapses), e_t = 1 - (1 - 1/n)^t (about t/n while
  t << n: linear growth), and the typical chain's log-variance falls linearly,
  E log det(S_t S^-1) / d = t / d sum_{i=1..d} [psi((n - i)/2) + log(2/n)] (gaussian_refit.predicted_refit_log_drift).
- accumulate (w = 1/(t + 1), tau = 1): v_t = prod_{k=1..t} (1 - 1/(n k^2)), which converges to
  sin(pi/sqrt n) / (pi/sqrt n) > 0, and e_t = sum_{k=1..t} v_{k-1} / (n k^2) = 1 - v_t <= pi^2 / (6 n): the
  error's increments are summable, so it stays bounded as the real share goes to 0. (With tau = 1 both regimes
  keep E[tr S_t + |mu_t - mu|^2] = tr S: an ML fit matches the training set's second moment.)
- ours (accumulate, fixed w, tau <= 1): v_t = (1 - 1/n) kappa^(t - 1) for t >= 1 with
  kappa = 1 - w + w tau^2 (1 - w/n): geometric collapse at any speed one likes (kappa -> 0 as w -> 1, tau -> 0),
  although the real samples stay in every training set (their weight is (1 - w)^(t - 1), not 1/(t + 1)).

Nothing here imports torch: a generation is a few numpy operations on all replicates at once, driven by
chain.run_chain (one chain state holds every replicate). A generation's data enter the training set as their
sufficient statistics (sample mean and ML covariance), which determine the Gaussian fit exactly: accumulate
concatenates them generation by generation instead of n (t + 1) samples, so a step costs O(t) summaries, not O(n t).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.stats import norm

from . import runtime
from .chain import ChainResult, run_chain, training_set
from .coevolution import first_crossing, one_step_factor
from .gaussian_refit import predicted_refit_log_drift
from .recursive_diffusion import _check_count, _psd_sqrt

REGIMES = ("replace", "accumulate")  # chain.training_set's regimes this chain is run under
COUNTEREXAMPLE = "ours: newest share w, temperature tau"  # the case name of our counterexample
TABLE_COLUMNS = ("case", "regime", "quantity", "generation", "measured", "CI low", "CI high", "predicted", "agree")


# ----------------------------------------------------------------------------------------------- the chain
def _check_fit(newest_share, temperature) -> None:
    if newest_share is not None and not 0 < newest_share <= 1:
        raise ValueError(f"newest_share must be in (0, 1] or None (every sample weighs the same), got {newest_share}")
    if not 0 < temperature <= 1:
        raise ValueError(f"temperature must be in (0, 1], got {temperature}")


def _check_regime(regime, newest_share) -> None:
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    if regime == "replace" and newest_share is not None:  # replace trains on the newest generation alone
        raise ValueError(f"newest_share applies to regime='accumulate' only, got {newest_share} with 'replace'")


def batch_weights(n_batches: int, *, newest_share: float | None) -> np.ndarray:
    """Weights (summing to 1) of the generations in a training set, oldest first: equal for the plain MLE
    (newest_share None: every sample weighs the same, and every generation holds n samples), else
    w (1 - w)^i for the i-th newest and the rest, (1 - w)^(n_batches - 1), for the oldest."""
    if newest_share is None:
        return np.full(n_batches, 1 / n_batches)
    w = newest_share
    weights = w * (1 - w) ** np.arange(n_batches)[::-1]
    weights[0] = (1 - w) ** (n_batches - 1)
    return weights


def sample_moments(samples: np.ndarray) -> dict:
    """A generation's sufficient statistics, the training data of an ML Gaussian: samples (R, n, d) ->
    {"sample_mean": (1, R, d), "sample_cov": (1, R, d, d) (the ML covariance, divided by n)}; the leading axis is
    the one chain.training_set concatenates generations along."""
    mean = samples.mean(1)
    centred = samples - mean[:, None]
    return {"sample_mean": mean[None], "sample_cov": (centred.transpose(0, 2, 1) @ centred)[None] / samples.shape[1]}


def affine_moments(moments: dict, mean: np.ndarray, root: np.ndarray) -> dict:
    """The `sample_moments` of mean + root z from those of z (root (R, d, d)): exactly those of the samples,
    without forming them."""
    z_mean, z_cov = moments["sample_mean"][0], moments["sample_cov"][0]
    return {"sample_mean": (mean + np.einsum("rij,rj->ri", root, z_mean))[None],
            "sample_cov": (root @ z_cov @ root.transpose(0, 2, 1))[None]}


def pooled_gaussian_fit(train: dict, batch_weights_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weighted ML Gaussian of a training set of equal-sized generations given by their `sample_moments`
    (k generations), generation i weighing batch_weights_[i] (summing to 1), its samples alike: means (R, d) and
    covariances (R, d, d): sum_i w_i [C_i + (xbar_i - mean)(xbar_i - mean)'], exactly the fit to the samples."""
    mean = np.einsum("k,krd->rd", batch_weights_, train["sample_mean"])
    offset = train["sample_mean"] - mean[None]
    within = np.einsum("k,krij->rij", batch_weights_, train["sample_cov"])
    return mean, within + np.einsum("k,kri,krj->rij", batch_weights_, offset, offset)


def run_iterative_mle(*, regime: str = "accumulate", n_samples: int = 100, n_generations: int = 100, dim: int = 1,
                      n_replicates: int = 1000, newest_share: float | None = None, temperature: float = 1.0,
                      seed: int = 0, progress: bool = False) -> ChainResult:
    """R chains at once. states[t] = generation t's `sample_moments` and "batch": (1,) its index t (the data), and
    "means": (R, d), "covs": (R, d, d), model t's fit (model 0: the truth N(0, I), which drew the n real samples).
    Model t + 1 is `pooled_gaussian_fit` of `chain.training_set(history, regime=regime)` with
    `batch_weights(newest_share=...)`; generation t >= 1 is n samples from N(mean_t, temperature^2 cov_t)."""
    _check_regime(regime, newest_share)
    _check_fit(newest_share, temperature)
    n, dim = _check_count(n_samples, "n_samples", 2), _check_count(dim, "dim", 1)
    reps = _check_count(n_replicates, "n_replicates", 1)
    data_keys = ("sample_mean", "sample_cov", "batch")  # what the training set holds: the fits are not data

    def step(state, ctx):
        train = training_set([{k: s[k] for k in data_keys} for s in ctx.history], regime=regime)
        mean, cov = pooled_gaussian_fit(train, batch_weights(len(train["batch"]), newest_share=newest_share))
        z = sample_moments(ctx.rng.standard_normal((reps, n, dim)))  # n standard normal samples per replicate
        drawn = affine_moments(z, mean, temperature * _psd_sqrt(cov))  # ~ N(mean, temperature^2 cov)
        return {**drawn, "batch": np.array([ctx.generation]), "means": mean, "covs": cov}

    def initial():
        real = runtime.generation_rng(seed, 0).standard_normal((reps, n, dim))
        return {**sample_moments(real), "batch": np.array([0]), "means": np.zeros((reps, dim)),
                "covs": np.repeat(np.eye(dim)[None], reps, axis=0)}

    return run_chain(step, initial, _check_count(n_generations, "n_generations", 0), seed=seed, progress=progress,
                     desc=f"iterative MLE ({regime})")


# ------------------------------------------------------------------------------------------- closed forms
def newest_shares(n_generations: int, *, regime: str, newest_share: float | None = None) -> np.ndarray:
    """w_1..w_G: the newest generation's share of the weight in models 1..G (model 1 sees the real data only)."""
    _check_regime(regime, newest_share)
    t = np.arange(1, _check_count(n_generations, "n_generations", 1) + 1, dtype=np.float64)
    if regime == "replace":
        return np.ones_like(t)
    return np.where(t == 1, 1.0, 1 / t if newest_share is None else newest_share)


def predicted_iterative_mle(*, n_samples: int, n_generations: int, regime: str = "accumulate",
                            newest_share: float | None = None, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """(G + 1,) curves of the module's recursions: "variance" v_t = E tr S_t / tr S and "mean_error"
    e_t = E|mu_t - mu|^2 / tr S, exact for every n, d, regime, share and temperature."""
    _check_fit(newest_share, temperature)
    n = _check_count(n_samples, "n_samples", 2)
    shares = newest_shares(n_generations, regime=regime, newest_share=newest_share)
    tau2 = np.where(np.arange(len(shares)) == 0, 1.0, temperature**2)  # generation 0 is real: no temperature
    factors = 1 - shares + shares * tau2 * (1 - shares / n)
    variance = np.concatenate([[1.0], np.cumprod(factors)])
    mean_error = np.concatenate([[0.0], np.cumsum(shares**2 * tau2 * variance[:-1] / n)])
    return {"variance": variance, "mean_error": mean_error}


def accumulate_variance_limit(n_samples: int) -> float:
    """lim v_t under accumulate (plain MLE): prod_{k>=1} (1 - 1/(n k^2)) = sin(pi/sqrt n) / (pi/sqrt n)."""
    x = np.pi / np.sqrt(_check_count(n_samples, "n_samples", 2))
    return float(np.sin(x) / x)


def collapse_factor(n_samples: int, *, newest_share: float, temperature: float) -> float:
    """Our counterexample's E[tr S_{t+1} | past] / tr S_t for t >= 1: 1 - w + w tau^2 (1 - w/n)."""
    _check_fit(newest_share, temperature)
    n, w = _check_count(n_samples, "n_samples", 2), newest_share
    return 1 - w + w * temperature**2 * (1 - w / n)


# ------------------------------------------------------------------------------ what notebook 07 shows
@dataclass(frozen=True, eq=False)
class MLECase:
    """One case's measured curves, (G + 1, R) over replicates, and its predicted ones, (G + 1,)."""
    name: str
    regime: str
    variance: np.ndarray  # tr S_t / tr S
    mean_error: np.ndarray  # |mu_t - mu|^2 / tr S
    log_variance: np.ndarray  # log det(S_t S^-1) / d
    predicted: dict  # "variance", "mean_error" (predicted_iterative_mle), and "log_variance" where exact


def measured_curves(result: ChainResult) -> dict[str, np.ndarray]:
    """(G + 1, R) arrays of a run_iterative_mle chain (truth N(0, I)): variance, mean_error, log_variance."""
    covs = np.stack([s["covs"] for s in result.states])
    dim = covs.shape[-1]
    return {"variance": np.trace(covs, axis1=2, axis2=3) / dim,
            "mean_error": np.stack([(s["means"] ** 2).sum(1) for s in result.states]) / dim,
            "log_variance": np.linalg.slogdet(covs)[1] / dim}


def _interval(values, z: float):
    v = np.asarray(values, dtype=np.float64)
    mean, se = v.mean(-1), v.std(-1) / np.sqrt(v.shape[-1])
    return mean, mean - z * se, mean + z * se


@dataclass(frozen=True, eq=False)
class IterativeMLE:
    """The plain MLE under replace and accumulate and our counterexample under accumulate (`cases`), and
    `table` (TABLE_COLUMNS): measured mean over replicates with its interval at `level` against the prediction,
    at `checkpoints`; agree: the prediction inside the interval."""
    cases: dict  # "<name> (<regime>)" -> MLECase
    checkpoints: list
    level: float
    n_samples: int
    dim: int
    newest_share: float
    temperature: float
    collapse_level: float

    @property
    def generations(self) -> np.ndarray:
        return np.arange(len(next(iter(self.cases.values())).variance))

    @property
    def n_replicates(self) -> int:
        return next(iter(self.cases.values())).variance.shape[1]

    @property
    def accumulate_limit(self) -> float:
        """lim E tr S_t / tr S of the plain MLE under accumulate (`accumulate_variance_limit`)."""
        return accumulate_variance_limit(self.n_samples)

    @property
    def counterexample(self) -> MLECase:
        return self.cases[f"{COUNTEREXAMPLE} (accumulate)"]

    @property
    def collapse_factor(self) -> float:
        return collapse_factor(self.n_samples, newest_share=self.newest_share, temperature=self.temperature)

    @cached_property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(_rows(self), columns=TABLE_COLUMNS)

    @property
    def z(self) -> float:
        return float(norm.ppf(0.5 + self.level / 2))

    def band(self, case: str, quantity: str):
        """(mean, low, high) over replicates of a case's curve, (G + 1,) each, at the interval's level."""
        return _interval(getattr(self.cases[case], quantity), self.z)


def iterative_mle_rates(*, n_samples: int = 100, n_generations: int = 100, dim: int = 1, n_replicates: int = 1000,
                        newest_share: float = 0.5, temperature: float = 0.7, collapse_level: float = 0.01,
                        n_checkpoints: int = 4, level: float = 0.99, seed: int = 0) -> IterativeMLE:
    """Run the three cases (seeds seed, seed + 1, seed + 2) and build the table: at `n_checkpoints` generations
    log-spaced from 1 to G, the measured mean of every predicted curve with its `level` interval (mean +- z SE
    over replicates) against the prediction; for our counterexample also the one-step variance factor against
    kappa (`coevolution.one_step_factor` from generation 1 on) and the first generation at which the mean
    variance is below collapse_level (interval: where the band's ends cross it)."""
    n, dim = _check_count(n_samples, "n_samples", 2), _check_count(dim, "dim", 1)
    gens, reps = _check_count(n_generations, "n_generations", 1), _check_count(n_replicates, "n_replicates", 2)
    if n <= dim:
        raise ValueError(f"the ML covariance of n_samples={n} points in dim={dim} is singular (needs n > dim)")
    if not 0 < level < 1 or not 0 < collapse_level < 1:
        raise ValueError(f"level ({level}) and collapse_level ({collapse_level}) must be in (0, 1)")
    if not 0 < newest_share < 1:  # 1 would be replace: the real data would weigh nothing, not be kept
        raise ValueError(f"newest_share of the counterexample must be in (0, 1), got {newest_share}")
    _check_fit(newest_share, temperature)
    specs = [("MLE", "replace", None, 1.0), ("MLE", "accumulate", None, 1.0),
             (COUNTEREXAMPLE, "accumulate", newest_share, temperature)]
    cases = {}
    for i, (name, regime, share, tau) in enumerate(specs):
        result = run_iterative_mle(regime=regime, n_samples=n, n_generations=gens, dim=dim, n_replicates=reps,
                                   newest_share=share, temperature=tau, seed=seed + i)
        predicted = predicted_iterative_mle(n_samples=n, n_generations=gens, regime=regime, newest_share=share,
                                            temperature=tau)
        if regime == "replace":  # the typical chain's log-variance: exact only here (i.i.d. Wishart steps)
            predicted["log_variance"] = np.arange(gens + 1) * predicted_refit_log_drift(n, dim=dim) / dim
        cases[f"{name} ({regime})"] = MLECase(name, regime, **measured_curves(result), predicted=predicted)
    checkpoints = sorted({int(round(g)) for g in np.geomspace(1, gens, _check_count(n_checkpoints, "n_checkpoints",
                                                                                     1))})
    return IterativeMLE(cases, checkpoints, level, n, dim, newest_share, temperature, collapse_level)


QUANTITIES = {"variance": "E tr S_t / tr S", "mean_error": "E|mu_t - mu|^2 / tr S",
              "log_variance": "E log det(S_t S^-1) / d"}


def _row(case: MLECase, quantity: str, generation, measured, low, high, predicted) -> dict:
    agree = bool(low <= predicted <= high) if np.isfinite(predicted) else None
    return dict(zip(TABLE_COLUMNS, (case.name, case.regime, quantity, generation, float(measured), float(low),
                                    float(high), float(predicted), agree)))


def _rows(rates: IterativeMLE) -> list:
    rows = []
    for key, case in rates.cases.items():
        for quantity, label in QUANTITIES.items():
            if quantity not in case.predicted:
                continue
            mean, low, high = rates.band(key, quantity)
            rows += [_row(case, label, t, mean[t], low[t], high[t], case.predicted[quantity][t])
                     for t in rates.checkpoints]
    ours = rates.counterexample
    factor, se = one_step_factor(ours.variance[1:].T)  # from generation 1: every step has the fixed share w
    rows.append(_row(ours, f"variance factor per generation from 1 to {len(ours.variance) - 1} (kappa)", None,
                     factor, factor - rates.z * se, factor + rates.z * se, rates.collapse_factor))
    # the band's lower end crosses first, its upper end last: the crossing generation's interval
    crossings = [first_crossing(c, rates.collapse_level) for c in rates.band(f"{COUNTEREXAMPLE} (accumulate)",
                                                                           "variance")]
    rows.append(_row(ours, f"first generation with E tr S_t / tr S < {rates.collapse_level:g}", None, *crossings,
                     first_crossing(ours.predicted["variance"], rates.collapse_level)))
    return rows
