"""Mitigations of collapse on the label-guided retraining chain: what the next model is allowed to train on.

  none                   the pure loop (regime replace)
  fresh_data             a share of every training set swapped for new real digits (regime fresh)
  accumulate             every generation so far, real data included, is kept (regime accumulate)
  entropy_selection      keep `keep_fraction` of the samples, chosen so that the classifier's predicted-class
                         histogram of what is kept has maximal entropy (equal counts per predicted class), the most
                         confident samples of each class first
  self_verification      keep only samples the classifier assigns to their own label with probability >= threshold
  watermark_filter       every generated image carries an invisible spread-spectrum mark (watermark.py); each
                         training set, fresh_data's mix of generated and new real digits, loses what the detector
                         flags (after BitMark: the filter is only as good as the detector's true/false-positive rates)
  watermark_filter_weak  the same with a weakened detector (a higher threshold: it misses more marked images)
  weak curation          a curator right only `accuracy` of the time judges a `budget` of each training set, the
                         hardest (lowest classifier margin) or a random share; judged good counts twice, judged bad
                         is dropped (after "Escaping Collapse: The Strength of Weak Data", where a curator slightly
                         better than chance, focused on the hardest examples, keeps a self-training loop improving)
The selection, filter and curation rules are our readings of the literature; their parameters are notebook
parameters (specs.MitigationSpec).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .specs import CURATION_FOCUS, MITIGATIONS, MitigationSpec


def select_max_class_entropy(data: dict, probs: np.ndarray, keep_fraction: float) -> dict:
    """Equal numbers per predicted class (as far as each class has samples), most confident first."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    n, k = probs.shape
    if len(data["labels"]) != n:
        raise ValueError(f"probs has {n} rows for {len(data['labels'])} samples")
    budget = max(1, int(round(keep_fraction * n)))
    pred, conf = probs.argmax(1), probs.max(1)
    by_class = [list(np.flatnonzero(pred == c)[np.argsort(-conf[pred == c], kind="stable")]) for c in range(k)]
    chosen = []
    while len(chosen) < budget and any(by_class):  # round robin: the histogram stays as flat as it can
        for members in by_class:
            if members and len(chosen) < budget:
                chosen.append(members.pop(0))
    idx = np.sort(np.array(chosen, dtype=np.int64))
    return {key: v[idx] for key, v in data.items()}


def select_self_verified(data: dict, probs: np.ndarray, threshold: float, *, min_keep: int = 10) -> dict:
    """Samples whose own label gets probability >= threshold (at least the min_keep most confident)."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    labels = np.asarray(data["labels"])
    if probs.shape[0] != len(labels):
        raise ValueError(f"probs has {probs.shape[0]} rows for {len(labels)} samples")
    own = probs[np.arange(len(labels)), labels]
    keep = own >= threshold
    if keep.sum() < min_keep:
        keep = np.zeros(len(labels), bool)
        keep[np.argsort(-own, kind="stable")[:min_keep]] = True
    return {key: v[keep] for key, v in data.items()}


@dataclass
class ClassifierSelection:
    """The select hook of a selection rule (image_chains.Retrain calls hook(data, rng)): the classifier's
    probabilities of a training set decide what is kept. A class rather than a closure, so that a chain job holding
    it can be sent to a Ray worker."""
    classifier: object
    rule: str  # entropy_selection (value: keep_fraction) | self_verification (value: threshold)
    value: float

    def __call__(self, data: dict, rng) -> dict:
        from .features import classify

        probs = classify(self.classifier, data["images"])
        if self.rule == "entropy_selection":
            return select_max_class_entropy(data, probs, self.value)
        return select_self_verified(data, probs, self.value)


def curate_weakly(data: dict, probs: np.ndarray, *, accuracy: float, budget: float, focus: str,
                  rng: np.random.Generator) -> dict:
    """A weak curator's training set. It judges round(budget * n) samples, the hardest first (lowest margin between
    the classifier's two most probable classes) or a random share, and says whether each shows its label; it is
    right with probability `accuracy` (the truth: the classifier's top class is the label). Its verdicts reweight
    what it judged, as boosting does: judged good counts twice, judged bad is dropped, the unjudged count once. At
    chance (0.5) every sample keeps an expected weight of 1, for either focus, so the expected training set is the
    one it was given; only a curator better than chance moves weight towards correct samples."""
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be in [0, 1] (0.5: chance), got {accuracy}")
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    if focus not in CURATION_FOCUS:
        raise ValueError(f"unknown focus {focus!r}; valid: {', '.join(CURATION_FOCUS)}")
    labels = np.asarray(data["labels"])
    n = len(labels)
    if probs.shape[0] != n:
        raise ValueError(f"probs has {probs.shape[0]} rows for {n} samples")
    k = max(1, int(round(budget * n)))
    if focus == "hardest":
        top2 = np.sort(probs, axis=1)[:, -2:]
        judged = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:k]
    else:
        judged = rng.choice(n, k, replace=False)
    correct = probs.argmax(1) == labels
    says_good = np.where(rng.random(k) < accuracy, correct[judged], ~correct[judged])
    weight = np.ones(n, np.int64)
    weight[judged] = np.where(says_good, 2, 0)
    if not weight.any():
        raise ValueError("the curator dropped every sample: nothing is left to train on (raise the budget's "
                         "unjudged share or the accuracy)")
    idx = np.repeat(np.arange(n), weight)
    return {key: np.asarray(v)[idx] for key, v in data.items()}


@dataclass
class WeakCurator:
    """The select hook of weak curation: the classifier's probabilities decide what is hardest and what is
    correct; the curator's noisy verdicts draw on the chain's generation stream (ctx.rng)."""
    classifier: object
    accuracy: float
    budget: float
    focus: str

    def __call__(self, data: dict, rng) -> dict:
        from .features import classify

        return curate_weakly(data, classify(self.classifier, data["images"]), accuracy=self.accuracy,
                             budget=self.budget, focus=self.focus, rng=rng)

    def params(self) -> dict:
        return {"rule": "weak_curation", "accuracy": self.accuracy, "budget": self.budget, "focus": self.focus}


@dataclass
class WatermarkFilter:
    """The select hook of watermark filtering: each training set loses the images the detector flags."""
    watermark: object

    def __call__(self, data: dict, rng) -> dict:
        keep = ~self.watermark.detect(data["images"])
        if not keep.any():
            raise ValueError("the watermark filter flagged every training image: nothing is left to train on (the "
                             "filter needs real digits in the mix: fresh_fraction > 0)")
        return {key: np.asarray(v)[keep] for key, v in data.items()}


def watermarks(settings: MitigationSpec, real_images: np.ndarray) -> dict:
    """{mitigation: its SpreadSpectrumWatermark}: the scheme's defaults unless the settings give strength or
    threshold; the weakened detector's threshold, if not given, is the median score of the first
    WEAK_THRESHOLD_DIGITS real images marked (it misses about half of such images)."""
    from . import watermark

    changes = {k: v for k, v in (("strength", settings.watermark_strength),
                                 ("threshold", settings.watermark_threshold)) if v > 0}
    full = watermark.SpreadSpectrumWatermark(**changes)
    weak_threshold = settings.weak_detector_threshold
    if weak_threshold == 0:
        digits = np.asarray(real_images[:WEAK_THRESHOLD_DIGITS])
        weak_threshold = float(np.median(full.scores(full.embed(digits))))
    return {"watermark_filter": full, "watermark_filter_weak": dataclasses.replace(full, threshold=weak_threshold)}


WEAK_THRESHOLD_DIGITS = 1000  # the first real digits given: they set the weakened detector's default threshold


def chain_setup(name: str, classifier, settings: MitigationSpec, *, marks: dict | None = None) -> tuple[dict, dict]:
    """(changes to the chain's DiffusionChainSpec, run options of run_image_chain) of one named mitigation.
    marks: watermarks(settings, ...), needed for the watermark filters."""
    if name not in MITIGATIONS:
        raise ValueError(f"unknown mitigation {name!r}; valid: {', '.join(MITIGATIONS)}")
    fresh = {"regime": "fresh", "fresh_fraction": settings.fresh_fraction}
    if name == "fresh_data":
        return fresh, {}
    if name == "accumulate":
        return {"regime": "accumulate"}, {}
    if name == "entropy_selection":
        hook = ClassifierSelection(classifier, name, settings.keep_fraction)
        return {}, {"select": hook, "select_params": {"rule": name, "keep_fraction": settings.keep_fraction}}
    if name == "self_verification":
        hook = ClassifierSelection(classifier, name, settings.verify_threshold)
        return {}, {"select": hook, "select_params": {"rule": name, "threshold": settings.verify_threshold}}
    if name.startswith("watermark_filter"):
        if not marks:
            raise ValueError(f"{name} needs marks=watermarks(settings, real_images)")
        wm = marks[name]
        return fresh, {"mark": wm.embed, "mark_params": wm.params(), "select": WatermarkFilter(wm),
                       "select_params": {"rule": "watermark_filter", **wm.params()}}
    return {}, {}


CHANCE = 0.5  # a curator right half the time: its verdicts are noise, so its cell is the control of its row


def curation_name(accuracy: float, budget: float, focus: str, replicate: int = 0) -> str:
    """A weak curation chain's name; replicate 0 runs on the chain's own seed (the other mitigations' seed)."""
    return f"weak curation {focus} a={accuracy:g} b={budget:g}" + (f" seed {replicate}" if replicate else "")


def chain_jobs(spec, real, classifier, settings: MitigationSpec) -> list:
    """The label-guided chain of `spec` under each named mitigation of `settings`, and under weak curation at every
    accuracy x budget x focus of its grid (curation_generations long, at most the chain's), as ensemble jobs
    named by mitigation."""
    from .ensemble import image_chain_job

    names = settings.mitigations()
    marks = watermarks(settings, real.images) if any(n.startswith("watermark_filter") for n in names) else None
    jobs = []
    for name in names:
        changes, options = chain_setup(name, classifier, settings, marks=marks)
        jobs.append(image_chain_job(spec.replace(**changes), "label_guided", real, classifier, name=name, **options))
    curated = spec.replace(n_generations=min(settings.curation_generations or spec.n_generations, spec.n_generations))
    for name, accuracy, budget, focus, replicate in curation_cells(settings):
        hook = WeakCurator(classifier, accuracy, budget, focus)
        jobs.append(image_chain_job(curated, "label_guided", real, classifier, name=name, select=hook,
                                    select_params=hook.params(), chain_seed=curation_seed(spec.seed, replicate)))
    return jobs


def curation_seed(seed: int, replicate: int) -> int | None:
    """The noise seed of a curation chain's replicate: the chain's own (None: spec.seed) for replicate 0, so that
    it shares the other mitigations' noise; independent streams (image_chains.replicate_seed) for the others.
    Every cell's replicate r draws the same seed: cells are compared pairwise, seed by seed."""
    from .image_chains import replicate_seed

    return None if replicate == 0 else replicate_seed(seed, 0, replicate)


def curation_cells(settings: MitigationSpec) -> list[tuple[str, float, float, str, int]]:
    """(chain name, accuracy, budget, focus, replicate) of every chain of the weak curation grid."""
    return [(curation_name(a, b, f, r), a, b, f, r) for r in range(settings.curation_seeds)
            for f in settings.focus_list() for b in settings.curation_budgets for a in settings.curator_accuracies]


def summarise(results: dict, features: dict, thresholds, *, seed: int, feature_network: str):
    """(one row per chain: its length and last generation's size, that generation's cumulative drift FID(g, 0) with
    its floor, class retention and entropy, and the geometry pattern from generation 0 to the last; {chain: its
    cumulative DriftCurve})."""
    import pandas as pd

    from . import diagnostics, metrics

    rows, curves = [], {}
    for name, f in features.items():
        cum = metrics.cumulative_drift(f, seed=seed, feature_network=feature_network,
                                       resplits=thresholds.drift_resplits)
        curves[name] = cum
        pattern = diagnostics.end_pattern(f, thresholds)
        per_generation = results[name].metrics
        rows.append({"mitigation": name, "generations": len(per_generation) - 1,
                     "samples": len(results[name].states[-1]["labels"]),
                     "final cumulative FID": cum.values[-1], "its floor": cum.floor[-1], "FID n": cum.n,
                     "final class retention": diagnostics.class_retention(per_generation)[-1],
                     "final class entropy (bits)": per_generation[-1]["class_entropy_bits"],
                     "pattern (gen 0 to last)": pattern.pattern, "log variance ratio": pattern.log_variance_ratio})
    return pd.DataFrame(rows), curves


def curation_summary(table, curves: dict, results: dict, settings: MitigationSpec, *, reference: str = "none"):
    """(the weak curation rows of a summarise table with their accuracy, budget and focus; the `reference` chain's
    class retention and cumulative FID at the curation chains' last generation, or None if it did not run)."""
    import pandas as pd

    cells = pd.DataFrame(curation_cells(settings),
                         columns=["mitigation", "curator accuracy", "budget", "focus", "replicate"])
    grid = cells.merge(table, on="mitigation", how="inner")
    if reference not in results or grid.empty:
        return grid, None
    g = int(grid["generations"].max())
    if g > len(results[reference]) - 1:
        return grid, None
    from .diagnostics import class_retention

    return grid, {"name": reference, "generation": g, "final class retention": class_retention(
        results[reference].metrics)[g], "final cumulative FID": float(curves[reference].values[g])}


CURATION_MEASURES = {"final class retention": 1, "final cumulative FID": -1}  # measure: +1 higher is better, -1 lower


def curation_verdicts(grid, *, alpha: float = 0.05):
    """Each weak curator against chance: for every cell of a curation_summary grid whose accuracy is not CHANCE,
    the paired differences (cell minus the chance cell of the same focus and budget, seed by seed) of each
    CURATION_MEASURES column, their mean and Student-t interval at level 1 - alpha, and a verdict: "helps" or
    "hurts" where the interval excludes 0 (by the measure's better direction), else "inconclusive". Fewer than two
    paired seeds: "inconclusive (one seed)", since one chain cannot separate a curator's effect from the chain's
    own noise; no chance cell in the row: "no chance control". The level holds per cell, not for the whole grid."""
    import pandas as pd

    from .sweep import mean_interval

    rows = []
    for (focus, budget), row in grid.groupby(["focus", "budget"], sort=True):
        control = row[row["curator accuracy"] == CHANCE].set_index("replicate")
        for accuracy, cell in row[row["curator accuracy"] != CHANCE].groupby("curator accuracy", sort=True):
            cell = cell.set_index("replicate")
            paired = cell.index.intersection(control.index)
            out = {"focus": focus, "budget": budget, "curator accuracy": accuracy, "paired seeds": len(paired)}
            for measure, better in CURATION_MEASURES.items():
                d = (cell.loc[paired, measure] - control.loc[paired, measure]).to_numpy(float)
                mean, low, high = mean_interval(d, alpha=alpha)  # the seeds' scatter, Student's t
                if len(d) < 2:
                    low = high = float("nan")
                if control.empty:
                    verdict = "no chance control"
                elif len(d) < 2:
                    verdict = "inconclusive (one seed)"
                elif low > 0 or high < 0:  # the interval excludes 0
                    verdict = "helps" if better * mean > 0 else "hurts"
                else:
                    verdict = "inconclusive"
                out.update({f"{measure} vs chance": mean, f"{measure} low": low, f"{measure} high": high,
                            f"{measure} verdict": verdict})
            rows.append(out)
    return pd.DataFrame(rows)


def watermark_rates(marks: dict, generated: np.ndarray, real: np.ndarray, *, confidence: float = 0.95):
    """One row per detector: its true-positive rate (TPR) on marked generated images, its false-positive rates
    (FPR) on real digits and on the generated images unmarked, Wilson intervals at `confidence` (low, high), the
    mark's mean PSNR; at the chain's resolution."""
    import pandas as pd

    from .watermark import measure_rates

    rows = []
    for name, wm in marks.items():
        on_real = measure_rates(wm, generated, real, confidence=confidence)
        on_generated = measure_rates(wm, generated, generated, confidence=confidence)
        (tpr_low, tpr_high), (fpr_low, fpr_high) = on_real.true_positive_interval, on_real.false_positive_interval
        rows.append({"detector": name, "strength (grey levels)": wm.strength, "threshold (z)": wm.threshold,
                     "TPR, marked generated": on_real.true_positive_rate, "TPR low": tpr_low, "TPR high": tpr_high,
                     "FPR, real": on_real.false_positive_rate, "FPR low": fpr_low, "FPR high": fpr_high,
                     "FPR, unmarked generated": on_generated.false_positive_rate, "n marked": on_real.n_marked,
                     "n real": on_real.n_unmarked,
                     "mark PSNR (dB)": on_real.psnr_db})
    return pd.DataFrame(rows)
