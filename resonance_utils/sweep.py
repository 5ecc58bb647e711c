"""Where does resonance stop? The sweep of notebook 10: a grid over what the literature says controls collapse,
the share of fresh real data each generation against the strength of the feedback, several seeded chains per
cell, every cell summarised with intervals, and the boundary where the chain stops collapsing.

Two grids, read the same way (rows: the fresh share; columns: the feedback's strength; a cell "collapses" by a
stated rule; `boundary` finds, per row, the column where the verdict changes, interpolated):
  image sweep              rows: the fresh share f of image_chains' regime "fresh"; columns: latent feedback's
                           strength s (`sweep_setting` latent_feedback: no training, the quick profile) or the
                           guidance scale w of label-guided retraining (label_guided: the paper profile). Each cell
                           runs n_starts class-skewed starts x n_replicates seeds (claim_runs.image_setting_plan: the
                           replicates are the seeds), all cells as one ensemble (ensemble.run_ensemble).
  recursive diffusion      rows: the same fresh shares as lam, the real fraction of recursive_diffusion's chain (on
                           notebook 06's data, `notebook06_data`); columns: its early-stopping time delta. The
                           chain's limit is known in closed form, so its measure is predicted exactly
                           (`hermite_gain_path`) and measured on memorising chains (recursive_diffusion.
                           run_empirical_diffusion_chain), and its boundary has a closed form (`limit_boundary`).
Everything here is our reconstruction: the paper runs no such sweep, and its protocol is not public; every rule
and threshold is a keyword argument (and a parameter of notebook 10).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np

from . import claim
from .specs import ConfigError, parse_vector

SETTINGS = ("latent_feedback", "label_guided")
COLLAPSE_VERDICTS = ("collapsing", "holding", "undetermined")
BOUNDARY_STATES = ("crosses", "collapsing throughout", "holding throughout", "falls back")


@dataclass(frozen=True)
class Axis:
    """The image sweep's column axis: the DiffusionChainSpec field it sets and how a figure names it."""
    field: str
    parameter: str  # notebook 10's parameter that holds its grid
    label: str  # an axis label, with its unit
    short: str  # in a cell's name
    low: float
    high: float | None
    low_open: bool


AXES = {"latent_feedback": Axis("strength", "strengths", "feedback strength s (share of diffusion time)", "s", 0.0,
                                1.0, True),
        "label_guided": Axis("guidance_scale", "guidance_scales", "guidance scale w (1 = unguided)", "w", 0.0, None,
                             False)}


def axis(setting: str) -> Axis:
    if setting not in AXES:
        raise ConfigError(f"the sweep runs one of {', '.join(SETTINGS)}; got {setting!r}")
    return AXES[setting]


def grid_values(name: str, text, *, low: float = 0.0, high: float | None = None, low_open: bool = False,
                high_open: bool = False) -> tuple[float, ...]:
    """A grid axis from its parameter ('0, 0.1, 0.25'): at least one value, strictly increasing, inside
    [low, high] (open ends on request); a ConfigError naming the parameter otherwise."""
    values = parse_vector(name, text)
    if not values:
        raise ConfigError(f"parameter {name!r} needs at least one value, got {text!r}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"parameter {name!r} must be strictly increasing (a grid axis), got {text!r}")
    for v in values:
        if not math.isfinite(v) or (v <= low if low_open else v < low) or \
                (high is not None and (v >= high if high_open else v > high)):
            span = f"{'(' if low_open else '['}{low:g}, {'inf' if high is None else f'{high:g}'}" \
                   f"{')' if high_open or high is None else ']'}"
            raise ConfigError(f"parameter {name!r}: every value must lie in {span}, got {v:g} in {text!r}")
    return values


def fresh_grid(text, name: str = "fresh_fractions") -> tuple[float, ...]:
    """The rows: fresh shares in [0, 1) (a share of 1 would replace the whole chain by real data)."""
    return grid_values(name, text, low=0.0, high=1.0, high_open=True)


def column_grid(setting: str, text, name: str) -> tuple[float, ...]:
    """The image sweep's columns for `setting`, in the range of the spec field its axis sets."""
    a = axis(setting)
    return grid_values(name, text, low=a.low, high=a.high, low_open=a.low_open)


def grid_of(params) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(rows, columns) of the image sweep from notebook 10's parameters: fresh_fractions, and the grid of the swept
    setting's axis (strengths or guidance_scales), each checked."""
    a = axis(params.sweep_setting)
    return fresh_grid(params.fresh_fractions), column_grid(params.sweep_setting, getattr(params, a.parameter),
                                                           a.parameter)


# ------------------------------------------------------------------------------------------------ the image sweep
@dataclass(frozen=True)
class Cell:
    """One cell of the image sweep: its grid position and values."""
    row: int
    col: int
    fresh_fraction: float
    value: float  # the column axis' value (strength or guidance scale)

    def name(self, setting: str) -> str:
        return f"fresh {self.fresh_fraction:g} {axis(setting).short} {self.value:g}"


def cells(*, fresh_fractions, values) -> list[Cell]:
    """Every (fresh share, column value), row by row."""
    return [Cell(i, j, float(f), float(v)) for i, f in enumerate(fresh_fractions) for j, v in enumerate(values)]


def cell_spec(spec, *, setting: str, cell: Cell):
    """The chain spec of a cell: the column's field set, regime "fresh" with the cell's share (replace at 0: the
    chain of notebook 02, numbers and run key alike)."""
    changes = {axis(setting).field: cell.value, "fresh_fraction": cell.fresh_fraction,
               "regime": "fresh" if cell.fresh_fraction > 0 else "replace"}
    return spec.replace(**changes)


@dataclass
class SweepPlan:
    """The image sweep's chains: one claim_runs.ImageSettingPlan per cell (its starts x replicates as ensemble
    jobs), and the grid they fill."""
    setting: str
    fresh_fractions: tuple
    values: tuple
    cells: list  # Cell, row by row
    plans: list  # claim_runs.ImageSettingPlan, one per cell

    @property
    def axis(self) -> Axis:
        return axis(self.setting)

    @property
    def jobs(self) -> list:
        return [job for plan in self.plans for job in plan.jobs]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.fresh_fractions), len(self.values)


def sweep_plan(spec, *, setting: str, real, classifier, fresh_fractions, values, n_starts: int, n_replicates: int,
               skew: float, seed: int, data_name: str = "MNIST", feature_space: str = "classifier embedding"
               ) -> SweepPlan:
    """The chains of every cell: `spec` (a DiffusionChainSpec: the generation-0 model and chain sizes) with the
    cell's share and column value (`cell_spec`), from n_starts class-skewed starts (share `skew` of each start's
    images from its own classes) with n_replicates seeds each (image_chains.replicate_seed: the replicates the
    claim's mixing measure needs). Every chain is its own cached run folder; the generation-0 model is shared."""
    from . import claim_runs

    if setting not in SETTINGS:
        raise ConfigError(f"the sweep runs one of {', '.join(SETTINGS)}; got {setting!r}")
    fresh_fractions, values = tuple(map(float, fresh_fractions)), tuple(map(float, values))
    grid = cells(fresh_fractions=fresh_fractions, values=values)
    plans = [claim_runs.image_setting_plan(cell_spec(spec, setting=setting, cell=c), setting, real, classifier,
                                           title=c.name(setting), data_name=f"{data_name} sweep {c.name(setting)}",
                                           feature_space=feature_space, n_starts=n_starts, n_replicates=n_replicates,
                                           skew=skew, seed=seed)
             for c in grid]
    for p in plans:  # nothing here reads the autoencoder's own error: its extra pass per generation is left out
        p.jobs = [dataclasses.replace(job, kwargs={**job.kwargs, "autoencoder_rms": False}) for job in p.jobs]
    return SweepPlan(setting=setting, fresh_fractions=fresh_fractions, values=values, cells=grid, plans=plans)


def mean_interval(values, *, ses=None, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high) of per-chain estimates: the mean over chains, its standard error the larger of the chains'
    own errors (sqrt(sum se^2) / m, sampling noise within each chain) and their scatter (sd / sqrt(m), everything
    that differs between chains, Student's t with m - 1 degrees of freedom): claim.larger_error, as the claim's
    observation uses it."""
    v = np.asarray(values, np.float64)
    m = len(v)
    if m == 0 or not np.all(np.isfinite(v)):
        return math.nan, math.nan, math.nan
    within = math.sqrt(np.sum(np.square(ses))) / m if ses is not None else 0.0
    scatter = float(v.std(ddof=1) / math.sqrt(m)) if m > 1 else 0.0
    se, q = claim.larger_error(within=within, scatter=scatter, dof=m - 1, alpha=alpha)
    mean = float(v.mean())
    return mean, mean - q * se, mean + q * se


def collapse_verdict(*, drift_low: float, drift_high: float, drop_low: float, drop_high: float,
                     retention_tol: float) -> str:
    """The image sweep's rule (ours), on intervals at the end of the chains:
      "collapsing"    the cumulative drift lies above its noise floor (its excess's lower bound > 0) AND class
                      retention has fallen below generation 0's by more than retention_tol (the fall's lower
                      bound > retention_tol): the chain moved away from the data and lost what the digits were;
      "holding"       the fall's upper bound < retention_tol, or the drift's upper bound <= 0 (the chain is
                      where it started, within the floor);
      "undetermined"  otherwise (the intervals straddle a threshold at these sizes)."""
    if not retention_tol >= 0:
        raise ValueError(f"retention_tol must be >= 0, got {retention_tol}")
    if drift_low > 0 and drop_low > retention_tol:
        return "collapsing"
    if drop_high < retention_tol or drift_high <= 0:
        return "holding"
    return "undetermined"


@dataclass
class SweepSummary:
    """The image sweep read off its chains: `table` (one row per cell, `cell_summary`'s columns), the claim's assessment
    of each cell (`assessments`, cell name -> claim.SettingAssessment), the cells' SettingRuns (for the
    calibration at their sizes), and the grids the figures draw."""
    plan: SweepPlan
    table: object  # pandas.DataFrame
    assessments: dict
    runs: list

    def grid(self, column: str) -> np.ndarray:
        """(rows, columns) of one column of the table (verdicts as strings)."""
        from pandas.api.types import is_numeric_dtype

        out = np.empty(self.plan.shape, dtype=object)
        for c, value in zip(self.plan.cells, self.table[column]):
            out[c.row, c.col] = value
        return out.astype(np.float64) if is_numeric_dtype(self.table[column]) else out

    def boundary(self) -> "Boundary":
        """Where the retention margin (fall - retention_tol) crosses 0 in each row (`boundary`)."""
        return boundary(rows=self.plan.fresh_fractions, columns=self.plan.values, score=self.grid("collapse score"))


def cell_summary(plan, *, cell: Cell, results: dict, options, retention_tol: float, drift_resplits: int,
                 setting: str) -> tuple[dict, object, object]:
    """(table row, claim assessment, SettingRun) of one cell from the ensemble's results. Every measure of a
    cell works in the classifier embedding of its chains (generation_metrics' cached features):
      effective dimension  participation ratio (geometry) of the last generation's cloud, and its ratio to
                           generation 0's, mean over the cell's chains with its interval;
      cumulative drift     FID(last generation, generation 0) above its noise floor (metrics.cumulative_drift,
                           `drift_resplits` re-splits), in the leading options.pca_components PCA directions of the
                           cell's clouds (the basis every claim measure of the cell uses; FID needs n >> dim);
      class retention      the share the classifier assigns to a digit's own label, at generation 0 and at the
                           end, and its fall, with intervals (binomial within chains, scatter between them);
      claim verdicts       claim.assess_setting as claim_runs.assess_run calls it: mixing (starts x seeds),
                           contraction, the rule's prediction and the outcome observed on the held-out generations
                           ("inconclusive" where they cannot say);
      collapse             `collapse_verdict`, and its score: the fall minus retention_tol (>= 0: the retention
                           half of the rule says collapsing), which `boundary` reads.
    A cell with fresh data is not paired: a replaced row starts a new trajectory."""
    from . import claim, claim_runs, geometry, metrics

    run = claim_runs.image_setting_runs([plan], results)[0]
    run = dataclasses.replace(run, paired=run.paired and cell.fresh_fraction == 0)
    paired = run.paired
    # one PCA basis for the claim's measures and the drift (claim_runs.assess_run's, computed once: the SVD of
    # every cloud of the cell is the slow part)
    projected = claim.pca_project(run.clouds, options.pca_components)
    with warnings.catch_warnings():  # starts that look alike make mixing "inconclusive", with its reason
        warnings.simplefilter("ignore", UserWarning)
        assessment = claim.assess_setting(projected, seed=options.seed, paired=paired, **options.setting_options())
    chains = [results[name] for reps in plan.names for name in reps]
    clouds = [c for reps in run.clouds for c in reps]
    projected = [c for reps in projected for c in reps]
    alpha = options.alpha
    drift = [metrics.cumulative_drift(c, seed=options.seed + i, resplits=drift_resplits,
                                      feature_network=run.feature_space) for i, c in enumerate(projected)]
    excess = mean_interval([d.excess[-1] for d in drift], ses=[d.excess_se[-1] for d in drift], alpha=alpha)
    floor = float(np.mean([d.floor[-1] for d in drift]))
    dims = [geometry.participation_ratio(c[-1]) for c in clouds]
    dim_ratio = [d / geometry.participation_ratio(c[0]) for d, c in zip(dims, clouds)]
    r0 = np.array([ch.metrics[0]["class_retention"] for ch in chains])
    r_end = np.array([ch.metrics[-1]["class_retention"] for ch in chains])
    n0, n_end = len(chains[0].states[0]["labels"]), len(chains[0].states[-1]["labels"])
    drop_se = np.sqrt(r0 * (1 - r0) / n0 + r_end * (1 - r_end) / n_end)
    drop = mean_interval(r0 - r_end, ses=drop_se, alpha=alpha)
    end = mean_interval(r_end, ses=np.sqrt(r_end * (1 - r_end) / n_end), alpha=alpha)
    dim = mean_interval(dims, alpha=alpha)
    ratio = mean_interval(dim_ratio, alpha=alpha)
    row = {"fresh share": cell.fresh_fraction, axis(setting).field: cell.value, "chains": len(chains),
           "generations": len(chains[0]) - 1, "n per generation": n_end,
           "effective dimension (end)": dim[0], "effective dimension low": dim[1], "effective dimension high": dim[2],
           "effective dimension / start": ratio[0], "ratio low": ratio[1], "ratio high": ratio[2],
           "drift excess (end)": excess[0], "drift low": excess[1], "drift high": excess[2], "drift floor": floor,
           "retention (start)": float(r0.mean()), "retention (end)": end[0], "retention low": end[1],
           "retention high": end[2], "retention fall": drop[0], "fall low": drop[1], "fall high": drop[2],
           "mixing": assessment.mixing.verdict, "contraction": assessment.contraction.verdict,
           "predicted": assessment.predicted, "observed": assessment.observed,
           "collapse": collapse_verdict(drift_low=excess[1], drift_high=excess[2], drop_low=drop[1],
                                        drop_high=drop[2], retention_tol=retention_tol),
           "collapse score": drop[0] - retention_tol}
    return row, assessment, run


def summarise(plan: SweepPlan, *, results: dict, options, retention_tol: float, drift_resplits: int = 8,
              progress: bool = False) -> SweepSummary:
    """`cell_summary` of every cell (options: specs.ClaimMeasures, the claim's thresholds)."""
    import pandas as pd
    from tqdm.auto import tqdm

    rows, assessments, runs = [], {}, []
    for cell, cell_plan in tqdm(list(zip(plan.cells, plan.plans)), desc="cells", disable=not progress, leave=False):
        row, assessment, run = cell_summary(cell_plan, cell=cell, results=results, options=options,
                                            retention_tol=retention_tol, drift_resplits=drift_resplits,
                                            setting=plan.setting)
        rows.append(row)
        assessments[cell.name(plan.setting)] = assessment
        runs.append(run)
    return SweepSummary(plan=plan, table=pd.DataFrame(rows), assessments=assessments, runs=runs)


# ------------------------------------------------------------------------------------------------- the boundary
@dataclass(frozen=True, eq=False)
class Boundary:
    """Per row, the column value where a score grid first crosses its level going up (holding below, collapsing
    at or above), interpolated between the two cells; NaN where the row does not cross (see `state`)."""
    rows: tuple
    position: np.ndarray  # (R,)
    state: tuple  # per row, one of BOUNDARY_STATES

    def to_dict(self) -> dict:
        return {"rows": list(self.rows), "state": list(self.state),
                "position": [None if not np.isfinite(p) else float(p) for p in self.position]}


def boundary(*, rows, columns, score, level: float = 0.0, log_columns: bool = False) -> Boundary:
    """Where, in each row of `score` (R, C) over the increasing column values `columns`, the verdict changes from
    holding (score < level) to collapsing (score >= level): the first such pair of neighbouring cells, the
    position linearly interpolated between them (in log(column) with log_columns, for a log-spaced axis).
    States: "crosses" (a position), "collapsing throughout" / "holding throughout" (no change in the row: no
    position), "falls back" (collapsing at the smallest column and holding later, never the other way: no
    position). NaN scores are refused (a missing cell would move the boundary)."""
    cols = np.asarray(columns, np.float64)
    s = np.asarray(score, np.float64)
    if s.ndim != 2 or s.shape != (len(rows), len(cols)):
        raise ValueError(f"score must have shape (rows, columns) = ({len(rows)}, {len(cols)}), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("score has NaN or infinite cells: every cell needs a score")
    if len(cols) > 1 and np.any(np.diff(cols) <= 0):
        raise ValueError(f"columns must be strictly increasing, got {cols.tolist()}")
    if log_columns and np.any(cols <= 0):
        raise ValueError("log_columns needs positive column values")
    x = np.log(cols) if log_columns else cols
    position, state = np.full(len(rows), np.nan), []
    for i, row in enumerate(s):
        up = np.flatnonzero((row[:-1] < level) & (row[1:] >= level))
        if len(up):
            j = up[0]
            t = (level - row[j]) / (row[j + 1] - row[j])
            p = x[j] + t * (x[j + 1] - x[j])
            position[i] = math.exp(p) if log_columns else p
            state.append("crosses")
        elif np.all(row >= level):
            state.append("collapsing throughout")
        elif np.all(row < level):
            state.append("holding throughout")
        else:
            state.append("falls back")
    return Boundary(rows=tuple(float(r) for r in rows), position=position, state=tuple(state))


# ----------------------------------------------------------------------------- the recursive-diffusion counterpart
def notebook06_data():
    """The 1-D data mixture of notebook 06's parameters (data_1d_*: their defaults, which every profile of 06 keeps,
    a test checks it): the counterpart is 06's chain on 06's data. Read from 06's parameter class, not from its
    record, so that 10 need not wait for 06 to run (in the quick profile that wait would sit on the critical path)."""
    from .config import params_class
    from .recursive_diffusion import mixture_from_params

    return mixture_from_params(params_class("06_recursive_diffusion")().to_dict(), prefix="data_1d")


def hermite_gain_path(*, order: int, delta: float, real_fraction: float, generations) -> np.ndarray:
    """c_k(model_n) / c_k(data) at the given generations n of the recursive-diffusion chain started from the data
    (exact in expectation for the exact and the memorising learners): g_inf + r^n (1 - g_inf), with the limit's
    gain g_inf (recursive_diffusion.hermite_limit_gain) and the per-generation factor r = (1 - lam) e^(-k delta)
    (hermite_deviation_factors) of order k."""
    from .recursive_diffusion import hermite_deviation_factors, hermite_limit_gain

    g_inf = hermite_limit_gain(order, delta, real_fraction=real_fraction)[order]
    r = hermite_deviation_factors(order, delta, real_fraction=real_fraction)[order]
    n = np.asarray(generations, np.float64)
    return g_inf + r ** n * (1 - g_inf)


def limit_boundary(*, fresh_fractions, order: int, gain_tol: float) -> np.ndarray:
    """The delta where the limit's order-k gain lam / (1 - (1 - lam) e^(-k delta)) equals gain_tol, per lam:
    delta* = ln((1 - lam) / (1 - lam / gain_tol)) / k for lam < gain_tol (0 at lam = 0: without fresh data the limit
    is N(0, I) at any delta > 0); NaN for lam >= gain_tol (the gain never falls below lam: no delta collapses it)."""
    if not 0 < gain_tol < 1:
        raise ValueError(f"gain_tol must lie in (0, 1), got {gain_tol}")
    lam = np.asarray(fresh_fractions, np.float64)
    out = np.full(lam.shape, np.nan)
    ok = lam < gain_tol
    out[ok] = np.log((1 - lam[ok]) / (1 - lam[ok] / gain_tol)) / int(order)
    return out


def chain_boundary(*, fresh_fractions, order: int, gain_tol: float, generations, delta_range) -> np.ndarray:
    """The delta where the predicted mean gain over `generations` (hermite_gain_path) equals gain_tol, per lam,
    found by root-finding inside delta_range = (low, high): the closed form at the measured chains' own length
    (the gain falls with delta, so the root is unique); NaN where the gain stays on one side inside the range."""
    from scipy.optimize import brentq

    lo, hi = map(float, delta_range)
    if not 0 < lo < hi:
        raise ValueError(f"delta_range must be (low, high) with 0 < low < high, got {delta_range}")
    out = []
    for lam in np.asarray(fresh_fractions, np.float64):
        def gap(d, lam=lam):
            return float(hermite_gain_path(order=order, delta=d, real_fraction=lam, generations=generations).mean()
                         - gain_tol)
        out.append(brentq(gap, lo, hi, xtol=1e-10) if gap(lo) * gap(hi) < 0 else math.nan)
    return np.asarray(out)


@dataclass(frozen=True, eq=False)
class DiffusionSweep:
    """The recursive-diffusion counterpart: per cell (lam, delta) the measured end-of-chain gain of Hermite order
    k (mean over the last `window` generations and the replicates, with its interval) against the closed form at
    the same generations, verdicts from both, and three boundaries: measured (from the cells), predicted at the
    chains' length (`chain_boundary`) and of the limit (`limit_boundary`)."""
    table: object  # pandas.DataFrame, one row per cell
    fresh_fractions: tuple
    deltas: tuple
    measured: np.ndarray  # (R, C) measured gain
    predicted: np.ndarray  # (R, C) predicted gain at the same generations
    measured_boundary: Boundary
    predicted_boundary: np.ndarray  # (R,) delta, NaN where none inside the grid's range
    limit_boundary: np.ndarray  # (R,)
    order: int
    gain_tol: float
    generations: tuple  # the generations averaged

    def numbers(self) -> dict:
        return {"order": self.order, "gain_tol": self.gain_tol, "generations averaged": list(self.generations),
                "fresh_fractions": list(self.fresh_fractions), "deltas": list(self.deltas),
                "measured_boundary": self.measured_boundary.to_dict(),
                "predicted_boundary": [None if not np.isfinite(v) else float(v) for v in self.predicted_boundary],
                "limit_boundary": [None if not np.isfinite(v) else float(v) for v in self.limit_boundary],
                "cells": self.table.to_dict(orient="records")}


def diffusion_sweep(data, *, fresh_fractions, deltas, order: int = 2, gain_tol: float = 0.5, n_samples: int = 1000,
                    n_generations: int = 60, window: int = 10, replicates: int = 4, seed: int = 0,
                    alpha: float = 0.05) -> DiffusionSweep:
    """The counterpart's grid on a 1-D data mixture (recursive_diffusion.GaussianMixture): for each (lam, delta),
    `replicates` memorising chains (run_empirical_diffusion_chain: N = n_samples, constant delta, each its own seed)
    of n_generations; the measure is the gain c_k / c_k(data) of Hermite order k = `order` (the share of the data's
    order-k structure the chain keeps; 0 = forgotten, the chain's collapse onto N(0, 1)), averaged over the last
    `window` generations. lam is the share the chain actually draws fresh, 1 - round((1 - lam) N) / N.
    Verdicts: "collapsing" when the gain lies below gain_tol (measured: its interval's upper bound; predicted: the
    closed form), "holding" above, "undetermined" where the measured interval holds gain_tol. The measured boundary
    reads gain_tol - gain (>= 0: collapsing) along delta, interpolated in log delta."""
    import pandas as pd

    from .recursive_diffusion import (_check_count, delta_schedule, hermite_limit_gain, hermite_moments,
                                      run_empirical_diffusion_chain, sample_hermite_moments)

    if data.dim != 1:
        raise ValueError(f"the counterpart reads 1-D Hermite moments; the data mixture has dim {data.dim}")
    order = _check_count(order, "order", 1)
    n_samples = _check_count(n_samples, "n_samples", 2)
    n_generations = _check_count(n_generations, "n_generations", 1)
    window = _check_count(window, "window", 1)
    replicates = _check_count(replicates, "replicates", 2)
    if window > n_generations:
        raise ValueError(f"window ({window}) must not exceed n_generations ({n_generations})")
    if not 0 < gain_tol < 1:
        raise ValueError(f"gain_tol must lie in (0, 1), got {gain_tol}")
    lams = fresh_grid(fresh_fractions, "fresh_fractions")
    deltas = grid_values("deltas", deltas, low=0.0, low_open=True)
    c_data = hermite_moments(data, order)[order]
    if abs(c_data) < 1e-3:
        raise ValueError(f"the data's Hermite moment of order {order} is {c_data:.2g}: too close to 0 to measure a "
                         "share of it; choose another order")
    gens = np.arange(n_generations - window + 1, n_generations + 1)
    measured, predicted, rows = np.empty((len(lams), len(deltas))), np.empty((len(lams), len(deltas))), []
    for i, lam in enumerate(lams):
        lam_drawn = 1 - int(round((1 - lam) * n_samples)) / n_samples
        for j, delta in enumerate(deltas):
            gains = []
            for r in range(replicates):
                chain_seed = int(np.random.SeedSequence([seed, i, j, r, 29]).generate_state(1)[0])
                states = run_empirical_diffusion_chain(data, delta_schedule(delta, n_generations), n_samples=n_samples,
                                                       real_fraction=lam, seed=chain_seed).states
                gains.append(np.mean([sample_hermite_moments(states[g], order)[order] for g in gens]) / c_data)
            gain, low, high = mean_interval(gains, alpha=alpha)
            pred = float(hermite_gain_path(order=order, delta=delta, real_fraction=lam_drawn, generations=gens).mean())
            measured[i, j], predicted[i, j] = gain, pred
            rows.append({"fresh share lam": lam, "delta": delta, "replicates": replicates, "gain measured": gain,
                         "gain low": low, "gain high": high, "gain predicted": pred,
                         "limit gain": float(hermite_limit_gain(order, delta, real_fraction=lam_drawn)[order]),
                         "measured": ("collapsing" if high < gain_tol else "holding" if low > gain_tol
                                      else "undetermined"),
                         "predicted": "collapsing" if pred < gain_tol else "holding"})
    return DiffusionSweep(
        table=pd.DataFrame(rows), fresh_fractions=lams, deltas=deltas, measured=measured, predicted=predicted,
        measured_boundary=boundary(rows=lams, columns=deltas, score=gain_tol - measured, log_columns=True),
        predicted_boundary=chain_boundary(fresh_fractions=lams, order=order, gain_tol=gain_tol, generations=gens,
                                          delta_range=(deltas[0], deltas[-1])),
        limit_boundary=limit_boundary(fresh_fractions=lams, order=order, gain_tol=gain_tol), order=order,
        gain_tol=gain_tol, generations=tuple(int(g) for g in gens))
