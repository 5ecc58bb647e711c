"""Mitigations of collapse on the label-guided retraining chain: what the next model is allowed to train on.

  none               the pure loop (regime replace)
  fresh_data         a share of every training set swapped for new real digits (regime fresh)
  accumulate         every generation so far, real data included, is kept (regime accumulate)
  entropy_selection  keep `keep_fraction` of the samples, chosen so that the classifier's predicted-class
                     histogram of what is kept has maximal entropy (equal counts per predicted class), the most
                     confident samples of each class first
  self_verification  keep only samples the classifier assigns to their own label with probability >= threshold
The two selection rules are our reading of "entropy-based data selection" and "self-verification filtering";
their parameters are notebook parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MITIGATIONS = ("none", "fresh_data", "accumulate", "entropy_selection", "self_verification")


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


def chain_setup(name: str, classifier, *, fresh_fraction: float, keep_fraction: float,
                verify_threshold: float) -> tuple[dict, object, dict | None]:
    """(changes to the chain's DiffusionChainSpec, select hook or None, select_params for the run key)."""
    if name not in MITIGATIONS:
        raise ValueError(f"unknown mitigation {name!r}; valid: {', '.join(MITIGATIONS)}")
    if name == "fresh_data":
        return {"regime": "fresh", "fresh_fraction": fresh_fraction}, None, None
    if name == "accumulate":
        return {"regime": "accumulate"}, None, None
    if name == "entropy_selection":
        return {}, ClassifierSelection(classifier, name, keep_fraction), {"rule": name, "keep_fraction": keep_fraction}
    if name == "self_verification":
        hook = ClassifierSelection(classifier, name, verify_threshold)
        return {}, hook, {"rule": name, "threshold": verify_threshold}
    return {}, None, None


def chain_jobs(spec, names, real, classifier, *, fresh_fraction: float, keep_fraction: float,
               verify_threshold: float) -> list:
    """The label-guided chain of `spec` under each mitigation in `names`, as ensemble jobs named by mitigation."""
    from .ensemble import image_chain_job

    jobs = []
    for name in names:
        changes, hook, hook_params = chain_setup(name, classifier, fresh_fraction=fresh_fraction,
                                                 keep_fraction=keep_fraction, verify_threshold=verify_threshold)
        jobs.append(image_chain_job(spec.replace(**changes), "label_guided", real, classifier, name=name,
                                    select=hook, select_params=hook_params))
    return jobs
