"""The diagnostics block that 03 and 05 (and 08, for its mitigations) apply to a set of chains: drift curves with
their phases, the geometry of the feature clouds per generation, and the taxonomy of patterns, all with one set
of thresholds (specs.DiagnosticThresholds). Our reconstruction: the paper publishes no criteria.
"""
from __future__ import annotations

import numpy as np

from .specs import DiagnosticThresholds

GEOMETRY_COLUMNS = ["setting", "generation", "total_variance", "participation_ratio", "lid_mle", "twonn_dimension",
                    "roughness", "knn_radius", "centroid_shift"]
TAXONOMY_COLUMNS = ["setting", "feature space", "start", "end", "pattern", "log_variance_ratio", "wrinkling",
                    "flattening", "elongating"]


def _check_chains(clouds_by_chain: dict) -> None:
    if not clouds_by_chain:
        raise ValueError("no chains given: clouds_by_chain maps a chain's name to its per-generation feature arrays")
    for name, clouds in clouds_by_chain.items():
        if len(clouds) < 2:
            raise ValueError(f"chain {name!r} has {len(clouds)} generation(s); the diagnostics need at least 2")


def drift_and_phases(clouds_by_chain: dict, thresholds: DiagnosticThresholds, *, seed: int,
                     feature_network: str = "unknown", resize: str = "none") -> dict:
    """{chain: {"local", "cumulative" (metrics.DriftCurve), "phases" (metrics.Phases)}}: each chain's drift at
    one n per half (thresholds.fid_n, 0 = half the smallest generation) and its detected phases."""
    from . import metrics

    _check_chains(clouds_by_chain)
    out = {}
    for name, clouds in clouds_by_chain.items():
        local, cum = metrics.drift_curves(clouds, n=thresholds.fid_n or None, seed=seed,
                                          resplits=thresholds.drift_resplits, feature_network=feature_network,
                                          resize=resize)
        out[name] = {"local": local, "cumulative": cum,
                     "phases": metrics.detect_phases(local, cum, **thresholds.phase_options())}
    return out


def drift_numbers(drift: dict) -> dict:
    """drift_and_phases' result as the JSON of a notebook's numbers."""
    return {name: {"local": d["local"].to_dict(), "cumulative": d["cumulative"].to_dict(),
                   "phases": d["phases"].labels, "phase_boundaries": d["phases"].boundaries}
            for name, d in drift.items()}


def geometry_table(clouds_by_chain: dict, thresholds: DiagnosticThresholds, *, seed: int):
    """One row per chain and generation: geometry.geometry_trajectory's measures (GEOMETRY_COLUMNS)."""
    import pandas as pd

    from . import geometry

    _check_chains(clouds_by_chain)
    frames = [geometry.geometry_trajectory(clouds, k=thresholds.knn_k, seed=seed).assign(setting=name)
              for name, clouds in clouds_by_chain.items()]
    return pd.concat(frames, ignore_index=True)[GEOMETRY_COLUMNS]


def taxonomy_table(clouds_by_chain: dict, thresholds: DiagnosticThresholds, *, feature_spaces: dict | str,
                   generation_labels: dict | None = None):
    """One row per chain and window of thresholds.taxonomy_window generations (fewer when a chain is shorter):
    geometry.classify_trajectory's pattern and its numbers (TAXONOMY_COLUMNS). feature_spaces: one name, or
    one per chain; generation_labels: {chain: what each generation index is called} (the Lucier loop's
    generations are every k-th pass)."""
    import pandas as pd

    from . import geometry

    _check_chains(clouds_by_chain)
    rows = []
    for name, clouds in clouds_by_chain.items():
        labels = (generation_labels or {}).get(name)
        space = feature_spaces if isinstance(feature_spaces, str) else feature_spaces[name]
        for p in geometry.classify_trajectory(clouds, window=min(thresholds.taxonomy_window, len(clouds)),
                                              **thresholds.taxonomy_options()):
            d = p.to_dict()
            if labels is not None:
                d["start"], d["end"] = labels[d["start"]], labels[d["end"]]
            rows.append({"setting": name, "feature space": space, **d})
    table = pd.DataFrame(rows)
    return table[TAXONOMY_COLUMNS + [c for c in table.columns if c not in TAXONOMY_COLUMNS]]


def end_pattern(clouds, thresholds: DiagnosticThresholds, *, seed: int = 0):
    """geometry.classify_pattern from the first to the last cloud, with the thresholds' options (the
    neighbourhood no larger than the smallest cloud allows)."""
    from . import geometry

    options = thresholds.taxonomy_options()
    options["k"] = int(min(options["k"], min(len(c) for c in clouds) - 1))
    return geometry.classify_pattern(clouds, seed=seed, **options)


def class_retention(metrics_per_generation) -> np.ndarray:
    """Each generation's stored class retention (NaN where a chain does not record it)."""
    return np.array([m.get("class_retention", np.nan) for m in metrics_per_generation], float)
