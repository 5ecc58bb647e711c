"""Co-evolving text (multinomial over captions) and image (Gaussian per caption) models trained on each other's
outputs: Wright-Fisher drift of the captions, per-caption contraction of the images, and fresh data; every
simulation here has an exact prediction.

Nothing here imports torch: every chain is a few numpy operations per generation, driven by chain.run_chain.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .chain import run_chain
from .recursive_diffusion import _check_count, _check_fraction, _component_logpdf, _precisions, _psd_sqrt


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


# ----------------------------------------------------------------------------------------------------------
# what notebook 07 shows: predicted against simulated, one row per rate

RATE_COLUMNS = ("quantity", "case", "predicted", "simulated", "SE", "prediction")


def _rate_row(quantity: str, case: str, predicted, simulated, se, prediction: str) -> dict:
    """One row of a rate table (RATE_COLUMNS): `prediction` says how exact the predicted value is."""
    return dict(zip(RATE_COLUMNS, (quantity, case, float(predicted), float(simulated), float(se), prediction)))


def _mean_se(values) -> tuple[float, float]:
    """Mean over replicates and its standard error (population sd / sqrt(R))."""
    v = np.asarray(values, dtype=np.float64)
    return v.mean(), v.std() / np.sqrt(len(v))


def caption_weighted(per_caption, probs0, trace0) -> np.ndarray:
    """sum_k p0_k x_k / sum_k p0_k tr S_k,0 over the last axis (K): a per-caption diversity or fidelity error,
    weighted by the original caption frequencies and relative to the original weighted diversity."""
    p0 = np.asarray(probs0, dtype=np.float64)
    return np.asarray(per_caption, dtype=np.float64) @ p0 / (np.asarray(trace0, dtype=np.float64) @ p0)


@dataclass(frozen=True, eq=False)
class CoevolutionRates:
    """Every case of `coevolution_rates`, its closed forms and `table` (RATE_COLUMNS). Per case name: `results`
    (`run_coevolution`), and (R, G + 1) curves relative to generation 0: `heterozygosity` (text cases),
    `diversity` and `fidelity` (image cases, caption-weighted; a dead caption counts 0). Predictions are
    per caption, (G + 1, K), under a frozen text model (`predicted_image_moments`), without and with fresh data."""

    table: pd.DataFrame
    original: dict
    cases: dict  # name -> (case, captioner, fresh_fraction)
    results: dict
    heterozygosity: dict
    diversity: dict
    fidelity: dict
    caption_error: float  # share of the MAP captioner's errors on the original joint model
    rho: np.ndarray  # (K,) per-caption image contraction factor, frozen text
    picks: dict  # "most frequent", "median", "rarest" -> caption index
    predicted_heterozygosity: np.ndarray  # (G + 1,) Wright-Fisher, and with fresh data (next)
    predicted_heterozygosity_fresh: np.ndarray
    predicted_traces: np.ndarray
    predicted_shifts: np.ndarray
    predicted_traces_fresh: np.ndarray
    predicted_shifts_fresh: np.ndarray

    @property
    def text_cases(self) -> list:
        """The cases whose text model learns (frozen image, coupled), in order."""
        return list(self.heterozygosity)

    @property
    def image_cases(self) -> list:
        """The cases whose image model learns (frozen text, coupled), in order."""
        return list(self.diversity)

    @property
    def trace0(self) -> np.ndarray:
        return np.trace(self.original["covs"], axis1=1, axis2=2)

    def weighted(self, per_caption) -> np.ndarray:
        """`caption_weighted` with this run's original probabilities and traces."""
        return caption_weighted(per_caption, self.original["probs"], self.trace0)

    def relative_live_diversity(self, name: str) -> np.ndarray:
        """(R, G + 1, K): case `name`'s `live_diversity` per caption over its generation-0 trace."""
        return live_diversity(self.results[name]) / self.trace0

    @property
    def final_diversity(self) -> dict:
        return {n: float(self.diversity[n][:, -1].mean()) for n in self.image_cases}

    @property
    def final_heterozygosity(self) -> dict:
        return {n: float(self.heterozygosity[n][:, -1].mean()) for n in self.text_cases}


def coevolution_rates(original: dict, *, n_generations: int = 60, n_samples: int = 300, n_replicates: int = 50,
                      captioner: str = "map", fresh_fraction: float = 0.2, seed: int = 0,
                      error_samples: int = 20000) -> CoevolutionRates:
    """Six cases, `n_replicates` chains each (common random numbers: every case uses the seeds (seed, r)):
    frozen image with sampled captions and with `captioner`, frozen text, coupled, and the last two with
    `fresh_fraction` fresh pairs. The table compares: the text heterozygosity factor with 1 - 1/N; the image
    diversity factor of the most frequent, median and rarest caption with rho_k; the diversity at G and its
    mean over generations 1..G, the fidelity error at G and the fresh coupled heterozygosity at G with their
    closed forms (exact where the case is the closed form's, otherwise a reference, as the row says).
    The captioner error is measured on `error_samples` pairs of the original model (seed)."""
    original = _check_joint(original, "original")
    if captioner not in CAPTIONERS:
        raise ValueError(f"unknown captioner {captioner!r}; choose one of {list(CAPTIONERS)}")
    lam = _check_fraction(fresh_fraction, "fresh_fraction")
    big_n, gens = _check_count(n_samples, "n_samples", 2), _check_count(n_generations, "n_generations", 1)
    reps = _check_count(n_replicates, "n_replicates", 2)
    fresh_text, fresh_coupled = f"frozen text + {lam:.0%} fresh", f"coupled + {lam:.0%} fresh"
    cases = {"frozen image, sampled captions": ("frozen_image", "sampled", 0.0),
             f"frozen image, {captioner} captioner": ("frozen_image", captioner, 0.0),
             "frozen text": ("frozen_text", captioner, 0.0), "coupled": ("coupled", captioner, 0.0),
             fresh_text: ("frozen_text", captioner, lam), fresh_coupled: ("coupled", captioner, lam)}
    results = {name: run_coevolution(original, gens, case=case, n_samples=big_n, captioner=cap, fresh_fraction=f,
                                     n_replicates=reps, seed=seed) for name, (case, cap, f) in cases.items()}
    caps, imgs = sample_joint(original, _check_count(error_samples, "error_samples", 1), np.random.default_rng(seed))
    caption_error = float(np.mean(caption_map(imgs, original) != caps))

    p0, tr0 = original["probs"], np.trace(original["covs"], axis1=1, axis2=2)
    tr_pred, shift_pred = predicted_image_moments(p0, big_n, gens, trace0=tr0)
    tr_fresh, shift_fresh = predicted_image_moments(p0, big_n, gens, trace0=tr0, fresh_fraction=lam)
    text = [n for n, (case, _, _) in cases.items() if case != "frozen_text"]
    image = [n for n, (case, _, _) in cases.items() if case != "frozen_image"]
    rates = CoevolutionRates(
        table=pd.DataFrame(columns=RATE_COLUMNS), original=original, cases=cases, results=results,
        heterozygosity={n: heterozygosity(results[n]["probs"]) for n in text},
        diversity={n: caption_weighted(live_diversity(results[n]), p0, tr0) for n in image},
        fidelity={n: caption_weighted(results[n]["shift2"], p0, tr0) for n in image},
        caption_error=caption_error, rho=image_contraction_factor(p0, big_n),
        picks={"most frequent": 0, "median": len(p0) // 2, "rarest": len(p0) - 1},
        predicted_heterozygosity=predicted_heterozygosity(p0, big_n, gens),
        predicted_heterozygosity_fresh=predicted_heterozygosity(p0, big_n, gens, fresh_fraction=lam),
        predicted_traces=tr_pred, predicted_shifts=shift_pred, predicted_traces_fresh=tr_fresh,
        predicted_shifts_fresh=shift_fresh)
    return replace(rates, table=pd.DataFrame(_coevolution_rows(rates, big_n, gens, fresh_text, fresh_coupled)))


def _coevolution_rows(rates: CoevolutionRates, big_n: int, gens: int, fresh_text: str, fresh_coupled: str) -> list:
    div, fid, het, w = rates.diversity, rates.fidelity, rates.heterozygosity, rates.weighted
    rows = []
    for name in rates.text_cases[:3]:
        kind = "exact" if name.endswith("sampled captions") else "Wright-Fisher, no captioner error"
        rows.append(_rate_row("text heterozygosity factor per generation", name, 1 - 1 / big_n,
                              *one_step_factor(het[name]), kind))
    for name in ("frozen text", "coupled"):
        f_k, se_k = one_step_factor(live_diversity(rates.results[name]))
        for label, k in rates.picks.items():
            rows.append(_rate_row(f"image diversity factor per generation, {label} caption "
                                  f"(p0 = {rates.original['probs'][k]:.3f})", name, rates.rho[k], f_k[k], se_k[k],
                                  "exact" if name == "frozen text" else "frozen-text rate, for reference"))
    end, end_fresh = w(rates.predicted_traces)[-1], w(rates.predicted_traces_fresh)[-1]
    for name, pred, kind in (("frozen text", end, "exact"), ("coupled", end, "frozen-text value, for reference"),
                             (fresh_text, end_fresh, "exact"),
                             (fresh_coupled, end_fresh, "frozen-text + fresh value, approximate")):
        rows.append(_rate_row(f"image diversity at generation {gens} / generation 0", name, pred,
                              *_mean_se(div[name][:, -1]), kind))
    for name in ("frozen text", "coupled"):
        rows.append(_rate_row(f"mean image diversity over generations 1-{gens}", name,
                              w(rates.predicted_traces)[1:].mean(), *_mean_se(div[name][:, 1:].mean(1)),
                              "exact" if name == "frozen text" else "frozen-text value, for reference"))
    for name, shifts in (("frozen text", rates.predicted_shifts), (fresh_text, rates.predicted_shifts_fresh)):
        rows.append(_rate_row(f"fidelity E|mean - mean_0|^2 / tr S_0 at generation {gens}", name, w(shifts)[-1],
                              *_mean_se(fid[name][:, -1]), "exact"))
    rows.append(_rate_row(f"text heterozygosity at generation {gens}", fresh_coupled,
                          rates.predicted_heterozygosity_fresh[-1], *_mean_se(het[fresh_coupled][:, -1]),
                          "sampled-captioner formula, approximate"))
    return rows
