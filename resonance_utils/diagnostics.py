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


def drift_report(drift: dict) -> str:
    """One line per chain of drift_and_phases' result: the cumulative FID per generation, its floor, the n it was
    measured at and where the phases change."""
    return "\n".join(f"{s:16s} FID at n={d['cumulative'].n} per half: cumulative {np.round(d['cumulative'].values, 2)}, "
                     f"floor {np.round(d['cumulative'].floor, 2)}; phases from {d['phases'].boundaries}"
                     for s, d in drift.items())


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


# ------------------------------------------------------------------------------- Fig. 2's captions as numbers
KEPT_RETENTION = 0.9  # "keeps class identity": the last generation's class retention is at least this
LOST_RETENTION = 0.15  # "loses semantic coherence": retention falls at least this far below generation 0's
TEMPLATE_SPREAD = 0.85  # "repetitive templates": within-class spread falls to at most this share of generation 0's
SETTLED_Z = 2.0  # a generation has settled when its local drift is within SETTLED_Z standard errors of its floor


def settled_generation(local) -> int | None:
    """The first generation g >= 1 from which every local drift FID(h, h-1), h >= g, is within SETTLED_Z standard
    errors of its floor (what two samples of one law give); None when the chain never settles."""
    excess, se = np.asarray(local.excess, float), np.asarray(local.excess_se, float)
    quiet = excess[1:] <= SETTLED_Z * np.where(np.isfinite(se[1:]), se[1:], 0)
    for g in range(1, len(excess)):
        if quiet[g - 1:].all():
            return g
    return None


def fig2_readings(results: dict, drift: dict):
    """The paper's MNIST captions of Fig. 2 (PAPER.md, settings 3-5) checked on our chains: one row per caption
    with the measure, its value, the rule and whether the reconstruction reproduces it (yes / no; inconclusive
    where the chains cannot decide, n/a where the setting did not run). results {setting: ChainResult};
    drift = drift_and_phases' result for the same settings (its local curves decide "stabilises")."""
    import pandas as pd

    def retention(s):
        return class_retention(results[s].metrics)

    def spread(s):
        v = np.array([m.get("within_class_spread", np.nan) for m in results[s].metrics], float)
        return v[-1] / v[0]

    def row(caption, setting, measure, value, rule, ok):
        return {"caption": caption, "setting": setting, "measure": measure,
                "value": None if value is None else round(float(value), 3), "rule": rule,
                "reproduced": "n/a" if ok is None else ok if isinstance(ok, str) else ("yes" if ok else "no")}

    rows = []
    cap = "latent feedback progressively loses semantic coherence"
    if "latent_feedback" in results:
        r = retention("latent_feedback")
        rows.append(row(cap, "latent_feedback", "class retention: generation 0 - last", r[0] - r[-1],
                        f">= {LOST_RETENTION}", r[0] - r[-1] >= LOST_RETENTION))
    else:
        rows.append(row(cap, "latent_feedback", "class retention", None, "", None))
    if "label_guided" in results:
        r = retention("label_guided")
        rows.append(row("label-guided retraining keeps class identity", "label_guided",
                        "class retention, last generation", r[-1], f">= {KEPT_RETENTION}", r[-1] >= KEPT_RETENTION))
        ratio = spread("label_guided")
        rows.append(row("label-guided retraining converges to repetitive templates", "label_guided",
                        "within-class spread, last / generation 0", ratio, f"<= {TEMPLATE_SPREAD}",
                        "inconclusive" if not np.isfinite(ratio) else ratio <= TEMPLATE_SPREAD))
    cap = "label-guided stabilises fast; unconditional keeps evolving longer"
    if {"label_guided", "unconditional"} <= set(results) and {"label_guided", "unconditional"} <= set(drift):
        g_lab = settled_generation(drift["label_guided"]["local"])
        g_unc = settled_generation(drift["unconditional"]["local"])
        last = len(results["label_guided"]) - 1
        value = f"label-guided {g_lab if g_lab else 'never'}, unconditional {g_unc if g_unc else 'never'}"
        if g_lab is None and g_unc is None:
            ok = "inconclusive"  # neither settles within the run: longer chains would decide
        else:
            ok = (g_lab or last + 1) < (g_unc or last + 1)
        rows.append({**row(cap, "label_guided, unconditional", "first settled generation (local drift within "
                           f"{SETTLED_Z:g} se of its floor from there on)", None, "label-guided earlier", ok),
                     "value": value})
    else:
        rows.append(row(cap, "label_guided, unconditional", "first settled generation", None, "", None))
    return pd.DataFrame(rows)
