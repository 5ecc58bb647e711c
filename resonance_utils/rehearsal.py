"""The paper profile rehearsed at small counts, and the cost plan of the full run read off the rehearsal.

`./run_all.sh --profile paper --rehearse` runs every notebook with the paper profile's parameters and COUNTS on
top: counts only (generations, samples, steps, batch sizes, cycles, replicates, epochs, bootstrap draws), never a
width, resolution, feature network, space or switch, so the rehearsal takes the paper's code paths on the paper's
models (a test checks every name against COUNT_FIELDS). It writes to build/<profile>-rehearsal/ (figures/,
data/, the executed notebooks), never to figures/ or data/.

While it runs, costs.op records the time, FLOPs and saved activations of each hot operation per notebook. The plan
(`plan`) then takes, for each notebook and operation, the measured seconds and FLOPs per unit and multiplies them
by the operation's count at full scale, which FULL_COUNTS computes from the resolved parameters (the same
function applied to the rehearsal's parameters must give the counts the rehearsal recorded: a test checks it).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from . import config, store

# ------------------------------------------------------------------------------------------------- the counts
# The fields a rehearsal may change: how much work is done, never what kind. Plot settings that name
# generations or passes are included (they only pick what is drawn).
COUNT_FIELDS = frozenset({
    "n_iterations", "show_passes", "show_generations",
    "base_train_size", "base_steps", "finetune_steps", "autoencoder_steps", "batch_size", "n_generations", "samples_per_generation",
    "ddim_steps", "quality_samples", "grid_samples", "n_per_class", "classifier_epochs", "drift_resplits",
    "n_train", "train_steps", "n_starts", "n_cycles",
    "synthetic_generations", "synthetic_samples",
    "n_samples", "em_iterations", "sde_steps", "memorising_chains", "memorising_samples",
    "refit_generations", "refit_replicates", "refit_cloud_points", "refit_classify_every", "n_replicates",
    "mle_generations", "mle_replicates",
    # the claim's measures' directions: they set the least image_samples (n per set must exceed them), and every
    # code path is the same at 5 as at 20
    "pca_components",
    "held_out", "n_boot", "image_generations", "image_samples", "image_finetune_steps", "lucier_mixing_times",
    "lucier_generations", "cyclegan_cycles", "cyclegan_generations", "cyclegan_starts", "calibration_seeds",
    "diffusion_samples", "diffusion_generations", "diffusion_window", "diffusion_replicates",
    # the sweep's grid: fewer cells, never other values (a subset of the paper's with both ends, which take
    # every branch: no fresh data and some; no guidance and the strongest; tests/test_rehearsal.py)
    "fresh_fractions", "guidance_scales",
    # 08's weak curation grid likewise (a subset of the paper's), its chains' length and the watermark's sample
    "curator_accuracies", "curation_budgets", "curation_generations", "curation_seeds", "watermark_samples",
})
ALL_MEANS_ZERO = frozenset({"n_train", "n_per_class", "base_train_size", "fid_n"})  # 0 = all: any count is less

# The least that still takes every branch: at least 2 generations after generation 0 (drift needs 3 states),
# every class in every generation, one step of every training loop, one DDIM step of every trajectory.
COUNTS: dict[str, dict] = {
    "01_lucier_room": {"n_iterations": 40, "show_passes": "0, 1, 2, 4, 8, 16, 32, 40"},
    "02_mnist_chains": {"base_train_size": 1000, "base_steps": 2, "finetune_steps": 2, "autoencoder_steps": 2, "batch_size": 8,
                        "n_generations": 2, "samples_per_generation": 40, "ddim_steps": 4, "quality_samples": 40,
                        "grid_samples": 20, "drift_resplits": 3},
    "03_imagenet_chains": {"base_steps": 2, "finetune_steps": 2, "batch_size": 4, "n_generations": 3,
                           # one DDIM step: 64 px denoising is most of the rehearsal (09 reads this record)
                           "samples_per_generation": 20, "ddim_steps": 1, "quality_samples": 10, "grid_samples": 10,
                           "n_per_class": 24, "classifier_epochs": 1, "drift_resplits": 3},
    "04_cyclegan_attractors": {"n_train": 200, "train_steps": 2, "batch_size": 4, "n_starts": 25, "n_cycles": 16},
    "05_drift_geometry": {"synthetic_generations": 6, "synthetic_samples": 100, "drift_resplits": 3},
    "06_recursive_diffusion": {"n_generations": 4, "n_samples": 500, "em_iterations": 10, "sde_steps": 10,
                               "memorising_chains": 2, "memorising_samples": 1000, "show_generations": "0, 1, 2, 4"},
    "07_coevolving_models": {"refit_generations": 6, "refit_replicates": 200, "refit_cloud_points": 100,
                             "refit_classify_every": 3, "n_samples": 100, "n_generations": 6, "n_replicates": 3,
                             "mle_generations": 6, "mle_replicates": 200},
    # 08: two digits per class: its Inception features (0.2 s an image on an AVX2 CPU) were most of its time
    "08_mitigations": {"n_generations": 2, "samples_per_generation": 20, "finetune_steps": 2,
                       "curator_accuracies": "0.5, 1.0", "curation_budgets": "0.5", "curation_generations": 2,
                       "curation_seeds": 2,
                       "watermark_samples": 40},
    "09_claim": {"held_out": 2, "n_starts": 2, "n_replicates": 2, "image_generations": 5, "pca_components": 5,
                 "image_samples": 10, "image_finetune_steps": 1, "n_boot": 20, "lucier_mixing_times": 1.0, "lucier_generations": 5,
                 "cyclegan_cycles": 16, "cyclegan_generations": 5, "cyclegan_starts": 25, "calibration_seeds": 2,
                 "synthetic_generations": 6},
    "10_sweep": {"fresh_fractions": "0, 0.5", "guidance_scales": "1, 5", "n_starts": 2, "held_out": 2, "image_generations": 5,
                 "pca_components": 5, "image_samples": 10, "image_finetune_steps": 1, "n_boot": 20,
                 "drift_resplits": 2, "calibration_seeds": 1, "diffusion_samples": 200, "diffusion_generations": 20,
                 "diffusion_window": 5, "diffusion_replicates": 2},
}


def counts(notebook: str) -> dict:
    """The rehearsal's count overrides of a notebook (checked: count fields only)."""
    values = dict(COUNTS.get(notebook, {}))
    wrong = sorted(set(values) - COUNT_FIELDS)
    if wrong:
        raise config.ConfigError(f"the rehearsal of {notebook} may change counts only, not {', '.join(wrong)}")
    return values


def rehearsal_dir(profile: str) -> Path:
    """build/<profile>-rehearsal/ ($RESONANCE_REHEARSAL_DIR overrides: the tests' temporary folder)."""
    env = os.environ.get("RESONANCE_REHEARSAL_DIR")
    return Path(env).resolve() if env else store.repo_root() / "build" / f"{profile}-rehearsal"


ENV = "RESONANCE_REHEARSAL"  # set (to the profile) while a rehearsal runs: run_notebooks' build folder moves


def enter(profile: str) -> Path:
    """Point this process (and the kernels it starts) at the rehearsal's own folders, unless the user set them."""
    root = rehearsal_dir(profile)
    os.environ[ENV] = profile
    os.environ.setdefault("RESONANCE_FIGURES_DIR", str(root / "figures"))
    os.environ.setdefault("RESONANCE_DATA_DIR", str(root / "data"))
    return root


def active() -> bool:
    return bool(os.environ.get(ENV))


def costs_path(profile: str, notebook: str) -> Path:
    return rehearsal_dir(profile) / "costs" / f"{notebook}.json"


# ------------------------------------------------------------------------------------ counts at any scale
# Each function gives a notebook's operation counts (costs.HOT's units) from its resolved parameters and its
# producers' (`cfgs`: {notebook: Config}); None for an operation whose count does not depend on any parameter a
# rehearsal changes (the MNIST classifier, 3 epochs of the 60,000 training digits): its measured count stands.
FIXED = None
MNIST_TRAIN = 60000  # data.load_mnist("train")


def _timesteps(strength: float, ddim_steps: int) -> int:
    """Denoising steps of one DDIM trajectory (diffusion.ddim_timesteps, for the 1,000-step schedule)."""
    from types import SimpleNamespace

    from .diffusion import ddim_timesteps

    return len(ddim_timesteps(SimpleNamespace(config={"num_train_timesteps": 1000}), strength, ddim_steps))


def _chain_counts(c, setting: str, *, n: int, N: int, finetune: int, select_classify: bool = False) -> dict:
    """One image chain of `setting` (image_chains.run_image_chain) of n generations of N images."""
    guided = 2 if c.guidance_scale != 1.0 else 1
    out = {"classifier features": 2 * N * (n + 1)}  # generation_metrics: classify + embed, every generation
    if c.space == "latent":  # every generation: its images in (encoded) and out (decoded), and the metrics' pass
        trained = N * n * (n + 1) // 2 if c.regime == "accumulate" else N * n
        out["autoencoder passes"] = trained + N * n + 2 * N * (n + 1)
    if setting == "latent_feedback":
        lg = guided if c.latent_conditional else 1
        out["DDIM denoising"] = n * N * _timesteps(c.strength, c.ddim_steps) * lg
        return out
    steps = finetune if c.retrain == "finetune" else c.base_steps
    out["diffusion training"] = n * steps * c.batch_size
    out["DDIM denoising"] = n * N * c.ddim_steps * (guided if setting == "label_guided" else 1)
    if setting == "unconditional":  # its samples are labelled by the classifier
        out["classifier features"] += n * N
    if select_classify:  # a mitigation that classifies each generation's training set
        out["classifier features"] += n * N
    return out


def _add(*parts: dict) -> dict:
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            fixed = v is FIXED or (k in out and out[k] is FIXED)
            out[k] = FIXED if fixed else out.get(k, 0) + v
    return out


def _base_counts(c, quality_n: int) -> dict:
    """The generation-0 model (and autoencoder) trained once, and generation0_quality at quality_n."""
    guided = 2 if c.guidance_scale != 1.0 else 1
    out = {"diffusion training": c.base_steps * c.batch_size,
           "DDIM denoising": quality_n * c.ddim_steps * (guided + 1),  # guided samples, then unguided
           "classifier features": 6 * quality_n}  # 2n real, then classify + embed of both sample sets
    if c.space == "latent":
        real = c.base_train_size or MNIST_TRAIN
        from .latent import RECONSTRUCTION_CHECK, STATS_SIZE
        from .specs import DiffusionChainSpec, build

        out["autoencoder training"] = c.autoencoder_steps * build(DiffusionChainSpec, c).autoencoder_spec().batch_size
        # the latent statistics and a reconstruction check after training; the generation-0 model's training set
        # encoded once; the quality samples decoded
        out["autoencoder passes"] = (min(real, STATS_SIZE) + 2 * min(real, RECONSTRUCTION_CHECK) + real +
                                     2 * quality_n)
    return out


def _settings(c) -> list[str]:
    from .image_chains import parse_settings

    return parse_settings(c.settings)


def _mnist_counts(cfgs) -> dict:
    c = cfgs["02_mnist_chains"]
    n, N = c.n_generations, c.samples_per_generation
    # the classifier trained from an empty cache (its test accuracy measured there, and again by the notebook)
    parts = [_base_counts(c, c.quality_samples), {"classifier features": 20000, "classifier training": FIXED}]
    parts += [_chain_counts(c, s, n=n, N=N, finetune=c.finetune_steps) for s in _settings(c)]
    if c.space == "latent":  # the autoencoder alone as a chain: its metrics and its embedding per generation
        parts.append({"classifier features": 3 * N * (n + 1), "autoencoder passes": 2 * N * n + 2 * N * (n + 1)})
    return _add(*parts)


def _imagenet_counts(cfgs) -> dict:
    c = cfgs["03_imagenet_chains"]
    n, N = c.n_generations, c.samples_per_generation
    quality = min(c.quality_samples, 5 * c.n_per_class // 2)
    # the retention classifier: a CNN trained on the five classes less a 20% hold-out it is scored on (the
    # stand-in; its count of crops per class is n_per_class), or MobileNetV2 on a folder of synsets (the same
    # images, so the same count under that name)
    held = 5 * round(0.2 * c.n_per_class)
    parts = [_base_counts(c, quality), {"classifier training": c.classifier_epochs * (5 * c.n_per_class - held),
                                        "classifier features": held}]
    parts += [_chain_counts(c, s, n=n, N=N, finetune=c.finetune_steps) for s in _settings(c)]
    out = _add(*parts)
    return out | {"MobileNetV2 features": out["classifier features"]}


def _cyclegan_counts(cfgs) -> dict:
    c = cfgs["04_cyclegan_attractors"]
    return {"CycleGAN training": c.train_steps * c.batch_size,
            # the example figure (x, G(x), F(G(x)) of 10 images), then both quantisation modes' cycles
            "CycleGAN translation": 2 * 10 + 2 * c.n_starts * c.n_cycles * 2}


def _drift_counts(cfgs) -> dict:
    c, m = cfgs["05_drift_geometry"], cfgs["02_mnist_chains"]
    chains = len(_settings(m)) * (m.n_generations + 1) * m.samples_per_generation
    return {"Inception features" if c.feature_network == "inception" else "classifier features": chains}


def _mitigation_chains(c) -> int:
    """08's chains: one per named mitigation and one per weak curation cell."""
    from .mitigations import curation_cells
    from .specs import MitigationSpec, build

    settings = build(MitigationSpec, c)
    return len(settings.mitigations()) + len(curation_cells(settings))


def _mitigation_counts(cfgs) -> dict:
    from .mitigations import curation_cells
    from .specs import MitigationSpec, build

    c, m = cfgs["08_mitigations"], cfgs["02_mnist_chains"]
    settings = build(MitigationSpec, c)
    names, cells = settings.mitigations(), curation_cells(settings)
    n, N = c.n_generations, c.samples_per_generation
    n_curated = settings.curation_generations or n
    parts = [_chain_counts(m, "label_guided", n=n, N=N, finetune=c.finetune_steps,
                           select_classify=x in ("entropy_selection", "self_verification")) for x in names]
    parts += [_chain_counts(m, "label_guided", n=n_curated, N=N, finetune=c.finetune_steps, select_classify=True)
              for _ in cells]
    feature = "Inception features" if c.feature_network == "inception" else "classifier features"
    return _add(*parts, {feature: len(names) * (n + 1) * N + len(cells) * (n_curated + 1) * N})


def _claim_counts(cfgs) -> dict:
    c = cfgs["09_claim"]
    chains = c.n_starts * c.n_replicates
    parts = []
    for producer, switch in (("02_mnist_chains", "include_mnist"), ("03_imagenet_chains", "include_imagenet")):
        if c[switch]:
            p = cfgs[producer]
            parts += [{k: chains * v for k, v in _chain_counts(p, s, n=c.image_generations, N=c.image_samples,
                                                               finetune=c.image_finetune_steps).items()}
                      for s in _settings(p)]
    if c.include_cyclegan:
        parts.append({"CycleGAN translation": c.n_starts * c.cyclegan_starts * c.cyclegan_cycles * 2})
    return _add(*parts)


def _sweep_counts(cfgs) -> dict:
    """10's image chains: every cell's starts x replicates (image_chains.run_image_chain without the autoencoder's
    own pass per generation); a latent-feedback cell feeds back only the rows its fresh share does not replace."""
    from .chain import fresh_count
    from .specs import DiffusionChainSpec, build
    from .sweep import cell_spec, cells, grid_of

    c = cfgs["10_sweep"]
    n, N, setting = c.image_generations, c.image_samples, c.sweep_setting
    spec = build(DiffusionChainSpec, cfgs["02_mnist_chains"], n_generations=n, samples_per_generation=N,
                 finetune_steps=c.image_finetune_steps)
    rows, columns = grid_of(c)
    parts = []
    for cell in cells(fresh_fractions=rows, values=columns):
        s = cell_spec(spec, setting=setting, cell=cell)
        one = _chain_counts(s, setting, n=n, N=N, finetune=c.image_finetune_steps)
        if s.space == "latent":
            one["autoencoder passes"] -= 2 * N * (n + 1)  # autoencoder_rms off
        if setting == "latent_feedback" and s.regime == "fresh":
            fed = N - fresh_count(N, s.fresh_fraction)
            one["DDIM denoising"] = n * fed * _timesteps(s.strength, s.ddim_steps)
            if s.space == "latent":
                one["autoencoder passes"] = 2 * fed * n
        parts.append({k: c.n_starts * c.n_replicates * v for k, v in one.items()})
    return _add(*parts)


# FID's linear algebra (costs.HOT, "FID ..."): per drift curve, a point distance and a first-order variance per
# generation and resplits re-split distances per generation, each costing eigendecompositions of the features'
# dimension whatever n is. Counted by scaling the rehearsal's count: (generations after 0, re-splits, rows per
# half) of the chains whose features the notebook's largest FIDs compare, an estimate.
FID_SCALE = {
    "02_mnist_chains": lambda k: (k["02_mnist_chains"].n_generations, k["02_mnist_chains"].drift_resplits,
                                  k["02_mnist_chains"].samples_per_generation // 2),
    "03_imagenet_chains": lambda k: (k["03_imagenet_chains"].n_generations, k["03_imagenet_chains"].drift_resplits,
                                     k["03_imagenet_chains"].samples_per_generation // 2),
    "05_drift_geometry": lambda k: (k["02_mnist_chains"].n_generations, k["05_drift_geometry"].drift_resplits,
                                    k["02_mnist_chains"].samples_per_generation // 2),
    "08_mitigations": lambda k: (k["08_mitigations"].n_generations, k["05_drift_geometry"].drift_resplits,  # 05's
                                 k["08_mitigations"].samples_per_generation // 2),
}
FID_RESPLIT_POWER = {"FID distance": 0, "FID re-split distance": 1, "FID first-order variance": 0}


def _fid_units(nb: str, op: str, units: float, small: dict, full: dict) -> float | None:
    if nb not in FID_SCALE or op not in FID_RESPLIT_POWER:
        return None
    (g0, r0, _), (g1, r1, _) = FID_SCALE[nb](small), FID_SCALE[nb](full)
    return units * g1 / g0 * (r1 / r0) ** FID_RESPLIT_POWER[op]


# operations of which the data take one path: 03's retention classifier is MobileNetV2 on a folder of ImageNet
# synsets, else a CNN trained on the set (the offline stand-in). The path not taken is not an undercount.
EITHER_OR = {"03_imagenet_chains": (frozenset({"MobileNetV2 features"}),
                                    frozenset({"classifier training", "classifier features"}))}

FULL_COUNTS = {"02_mnist_chains": _mnist_counts, "03_imagenet_chains": _imagenet_counts,
               "04_cyclegan_attractors": _cyclegan_counts, "05_drift_geometry": _drift_counts,
               "08_mitigations": _mitigation_counts, "09_claim": _claim_counts, "10_sweep": _sweep_counts}


def resolved(profile: str, notebook: str, *, rehearse: bool, overrides: dict | None = None) -> dict:
    """{notebook and each producer it reads: Config} as a run of `profile` resolves them (with the rehearsal's
    counts when rehearse=True, and this run's overrides)."""
    from .notebook_params import NOTEBOOKS

    overrides = overrides or {}
    out = {}
    for stem in [notebook, *NOTEBOOKS[notebook].reads]:
        values = (counts(stem) if rehearse else {}) | overrides.get(stem, {})
        out[stem] = config.load_config(stem, profile, **values)
    return out


# One H100-class GPU: the assumption every GPU-hours figure rests on (see GPU_NOTE).
GPU_FLOPS = 100e12
# FID's float64 factorisations on that GPU: about 10% of an H100's 67 TFLOP/s FP64 tensor peak, since
# eigensolvers' tridiagonal reductions are bound by memory and launches, not by arithmetic
GPU_LINALG_FLOPS = 5e12
GPU_NOTE = ("GPU time = the FLOPs at full scale / 100 TFLOP/s, i.e. 10% of an H100's dense bf16 peak (989 TFLOP/s): "
            "an estimate for small convolutional UNets at batch 128 (no GPU benchmark is recorded in "
            "benchmarks/results.json yet; benchmarks/gpu_check.sh measures it). Launch-bound small models "
            "(the 7x7 latent UNet, the MNIST CNN) will run below it. FID's linear algebra runs there too (torch, "
            "float64, metrics.GPU_LINALG_MIN_DIM dimensions and up): its leading-order FLOPs (a re-split distance "
            "about 6 d^3 with more rows than dimensions) / 5 TFLOP/s, i.e. 10% of the H100's FP64 tensor peak.")
CPU_NOTE = ("CPU time = measured seconds per unit in this rehearsal x the unit count at full scale (an estimate: "
            "time taken as linear in images x steps, which holds for a compute-bound CPU; a notebook's other time - "
            "imports, data, plots - is taken as fixed). Notebooks without a recorded hot operation (numpy only: 01, "
            "06, 07) are not projected.")


def read_costs(profile: str, notebook: str) -> dict:
    """What the rehearsal recorded of a notebook: {"ops": [...], peak memory, "outcome": {status, seconds}}."""
    path = costs_path(profile, notebook)
    return json.loads(path.read_text()) if path.exists() else {"ops": []}


def record_outcome(profile: str, notebook: str, *, status: str, seconds: float, reason: str = "") -> None:
    """Add the notebook's outcome and wall time (run_notebooks measures it) to its costs file."""
    rec = read_costs(profile, notebook)
    rec["outcome"] = {"status": status, "seconds": round(seconds, 1), "reason": reason}
    store.write_json(costs_path(profile, notebook), rec)


def _disk(profile: str) -> dict:
    """Bytes on disk of the rehearsal's run folders: per setting, the generations' folders (model files apart)."""
    runs = Path(os.environ.get("RESONANCE_DATA_DIR", rehearsal_dir(profile) / "data")) / "runs"
    out = {}
    for setting in sorted(runs.iterdir()) if runs.is_dir() else []:
        gens = [g for run in setting.iterdir() if run.is_dir() for g in run.glob("gen_*") if g.is_dir()]
        model = sum(f.stat().st_size for g in gens for f in (g / "model").rglob("*") if f.is_file())
        total = sum(f.stat().st_size for g in gens for f in g.rglob("*") if f.is_file())
        out[setting.name] = {"generation_folders": len(gens), "bytes": total, "model_bytes": model}
    return out


def plan(profile: str, notebooks: list[str], overrides: dict | None = None) -> dict:
    """The full run's cost plan from the rehearsal's recorded costs (see the module's docstring)."""
    out = {"profile": profile, "device": None, "cpu_note": CPU_NOTE, "gpu_note": GPU_NOTE,
           "gpu_flops_assumed": GPU_FLOPS, "notebooks": {}, "disk": _disk(profile)}
    for nb in notebooks:
        rec = read_costs(profile, nb)
        outcome = rec.get("outcome") or {"status": "not run", "seconds": None}
        wall = outcome["seconds"]
        row = {"status": outcome["status"], "rehearsal_seconds": wall, "peak_rss_bytes": rec.get("peak_rss_bytes"),
               "peak_cuda_bytes": rec.get("peak_cuda_bytes"), "ops": []}
        small = full = {}
        cfgs_small = resolved(profile, nb, rehearse=True, overrides=overrides)
        cfgs_full = resolved(profile, nb, rehearse=False, overrides=_structure(overrides))
        if nb in FULL_COUNTS:
            small, full = FULL_COUNTS[nb](cfgs_small), FULL_COUNTS[nb](cfgs_full)
        by_op: dict[str, float] = {}
        for o in rec["ops"]:
            by_op[o["op"]] = by_op.get(o["op"], 0) + o["units"]
        for o in rec["ops"]:
            name, units = o["op"], o["units"]
            counted = full.get(name)
            # several models behind one operation (09: MNIST and ImageNet rows): shared as in the rehearsal
            share = units / by_op[name] if by_op[name] else 0
            full_units = units if counted is None else counted * share
            per_unit = o["seconds"] / units if units else 0.0
            scaled = _fid_units(nb, name, units, cfgs_small, cfgs_full)
            flops_per_unit = o["flops"] / units if units else 0.0
            if scaled is not None:
                full_units, counted = scaled, "scaled"
                dim = int(o["model"].split("-")[0])
                rows = FID_SCALE[nb](cfgs_full)[2]
                flops_per_unit = fid_linalg_flops(name, rows, dim)
                if name == "FID re-split distance" and rows > dim >= FID_SCALE[nb](cfgs_small)[2]:
                    # rows > dim at full scale: the covariance path (the rehearsal, with fewer rows than
                    # dimensions, took the Gram path), timed here once on random rows of the full size
                    per_unit, counted = _resplit_seconds(rows, dim), "scaled; timed at the full n"
            row["ops"].append({"op": name, "model": o["model"], "unit": o["unit"], "rehearsal_units": units,
                               "rehearsal_units_predicted": None if small.get(name) is None else small[name] * share,
                               "seconds_per_unit": per_unit, "full_units": full_units,
                               "projected_seconds": per_unit * full_units,
                               "flops_per_unit": flops_per_unit, "full_flops": flops_per_unit * full_units,
                               "count": "fixed" if counted is None else counted if isinstance(counted, str)
                               else "from parameters",
                               "batch_rehearsal": o["batch_max"],
                               "saved_bytes_per_unit": o["saved_bytes_per_unit_max"]})
        op_s = sum(o["seconds"] for o in rec["ops"])
        other = max(0.0, (wall or 0.0) - op_s)
        row["other_seconds_projected"] = other
        # a notebook with no hot operation (01, 06, 07: numpy) is not projected: its work has no recorded unit
        row["projected_seconds"] = other + sum(o["projected_seconds"] for o in row["ops"]) if row["ops"] else None
        row["full_flops"] = sum(o["full_flops"] for o in row["ops"])
        fid_flops = sum(o["full_flops"] for o in row["ops"] if o["op"] in FID_RESPLIT_POWER)
        row["fid_linalg_gpu_seconds"] = fid_flops / GPU_LINALG_FLOPS
        row["projected_gpu_seconds"] = (row["full_flops"] - fid_flops) / GPU_FLOPS + row["fid_linalg_gpu_seconds"]
        # an operation the parameters call for that the rehearsal never ran: read from a cache (a chain or model
        # of an earlier rehearsal), so this row undercounts it
        unrecorded = {k for k, v in full.items() if v is not FIXED and v > 0 and k not in by_op}
        not_taken = set()
        if nb in EITHER_OR:
            one, other = EITHER_OR[nb]
            not_taken = (other if one & set(by_op) else one if other & set(by_op) else set()) & unrecorded
        row["not_taken"], row["unrecorded"] = sorted(not_taken), sorted(unrecorded - not_taken)
        row["memory"] = (_memory(nb, row, resolved(profile, nb, rehearse=False, overrides=_structure(overrides)))
                         if row["ops"] else {})
        out["notebooks"][nb] = row
    return out


def fid_linalg_flops(op: str, rows: int, dim: int) -> float:
    """Leading-order floating-point work of one FID operation at `rows` per half in `dim` dimensions: a re-split
    distance factors and multiplies d x d matrices (Cholesky d^3/3, two products 4 d^3, eigenvalues ~4/3 d^3) or,
    with no more rows than dimensions, the n x n Gram route (2 n^2 d, singular values ~4 n^3); a full distance adds
    a symmetric square root (~9 d^3); the first-order variance two d x d Gram products, a thin SVD and an r x r
    eigendecomposition (r = min(rows, dim))."""
    r = min(rows, dim)
    if op == "FID re-split distance":
        return 6.0 * dim**3 if rows > dim else 2.0 * rows**2 * dim + 4.0 * rows**3
    if op == "FID distance":
        return 15.0 * dim**3
    if op == "FID first-order variance":
        return 8.0 * rows * dim**2 + 4.0 * rows * r**2 + 9.0 * r**3
    raise ValueError(f"not an FID operation: {op!r}; valid: {', '.join(FID_RESPLIT_POWER)}")


def _resplit_seconds(rows: int, dim: int) -> float:
    """Seconds of one re-split FID distance between two fresh halves of `rows` x `dim` features, with its share
    of the halves' covariances and factors (each re-split makes 2 halves a generation, used by about 4 distances:
    half a covariance per distance; the factor is in _fd_halves)."""
    import time

    import numpy as np

    from .metrics import _fd_halves, _FidHalf

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((rows, dim)), rng.standard_normal((rows, dim))
    t0 = time.perf_counter()
    a = _FidHalf(x)
    half = (time.perf_counter() - t0) / 2
    b = _FidHalf(y)
    t0 = time.perf_counter()
    _fd_halves(a, b)
    return time.perf_counter() - t0 + half


def _structure(overrides: dict | None) -> dict:
    """A run's overrides less its counts: what the full run of the plan keeps (-p settings=... stays)."""
    return {stem: {k: v for k, v in o.items() if k not in COUNT_FIELDS} for stem, o in (overrides or {}).items()}


def _memory(nb: str, row: dict, cfgs: dict) -> dict:
    """The projected peak: the rehearsal's peak plus the largest training batch's growth (the activations saved
    for backward per image-step, times the images the full batch adds) and the sample arrays a notebook holds
    (every generation of every chain, uint8)."""
    c = cfgs[nb]
    batch = c.get("batch_size")
    growth = 0.0
    for o in row["ops"]:
        if "training" in o["op"] and batch and o["batch_rehearsal"]:
            growth = max(growth, (batch - o["batch_rehearsal"]) * o["saved_bytes_per_unit"])
    held = 0
    if "samples_per_generation" in c and "n_generations" in c:
        side = c.get("resolution", 28) if nb == "03_imagenet_chains" else 28
        channels = 3 if nb == "03_imagenet_chains" else 1
        chains = len(_settings(c)) if "settings" in c else _mitigation_chains(c)
        held = chains * (c.n_generations + 1) * c.samples_per_generation * side * side * channels
    peak = row["peak_rss_bytes"] or 0
    return {"rehearsal_peak_bytes": peak, "largest_batch_growth_bytes": growth, "held_images_bytes": held,
            "projected_peak_bytes": peak + growth + held}


def _fmt_s(s) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _fmt_b(b) -> str:
    return "-" if not b else f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def plan_markdown(p: dict) -> str:
    lines = [f"# Cost plan of the {p['profile']} profile, from its rehearsal on {p['device']}", "",
             "**Estimates.** " + p["cpu_note"], "", p["gpu_note"], "",
             "| notebook | operation | model | unit | rehearsal count | s / unit (here) | full count | "
             "projected here | GFLOP / unit | full PFLOP |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for nb, row in p["notebooks"].items():
        for o in row["ops"]:
            lines.append(f"| {nb} | {o['op']} | {o['model']} | {o['unit']} | {o['rehearsal_units']:,.0f} | "
                         f"{o['seconds_per_unit']:.3g} | {o['full_units']:,.0f} ({o['count']}) | "
                         f"{_fmt_s(o['projected_seconds'])} | {o['flops_per_unit'] / 1e9:.3g} | "
                         f"{o['full_flops'] / 1e15:.3g} |")
    lines += ["", f"| notebook | rehearsal | projected full run here ({p['device']}) | projected on one H100 (estimate) | "
              "of it FID's linear algebra | peak memory (rehearsal) | projected peak | over 2 h on the GPU? |",
              "|---|---|---|---|---|---|---|---|"]
    failed = [nb for nb, row in p["notebooks"].items() if row["status"] != "ran"]
    for nb, row in p["notebooks"].items():
        gpu = row["projected_gpu_seconds"] if row["ops"] else 0.0
        m = row.get("memory") or {}
        status = "" if row["status"] == "ran" else f" ({row['status'].upper()})"
        lines.append(f"| {nb} | {_fmt_s(row['rehearsal_seconds'])}{status} | {_fmt_s(row['projected_seconds'])} | "
                     f"{_fmt_s(gpu) if row['ops'] else 'CPU-only'} | {_fmt_s(row['fid_linalg_gpu_seconds'])} | "
                     f"{_fmt_b(row['peak_rss_bytes'])} | "
                     f"{_fmt_b(m.get('projected_peak_bytes'))} | {'YES' if gpu > 7200 else 'no'} |")
    cached = {nb: row["unrecorded"] for nb, row in p["notebooks"].items() if row.get("unrecorded")}
    if cached:
        lines += ["", "**Undercounted (read from a cache, not run): " + "; ".join(
            f"{nb}: {', '.join(ops)}" for nb, ops in cached.items()) + "**. Delete build/paper-rehearsal/data/ "
            "(or point RESONANCE_DATA_DIR at an empty folder) and rehearse again for a full plan."]
    skipped = {nb: row["not_taken"] for nb, row in p["notebooks"].items() if row.get("not_taken")}
    if skipped:
        lines += ["", "Not on this data (its other path ran, and is what the row projects): " + "; ".join(
            f"{nb}: {', '.join(ops)}" for nb, ops in skipped.items()) + "."]
    if failed:
        lines += ["", f"**Not rehearsed to the end: {', '.join(failed)}**; their rows hold what ran before the failure."]
    if p["disk"]:
        lines += ["", "| run folders (rehearsal) | generation folders | on disk | of it model files |", "|---|---|---|---|"]
        for k, d in p["disk"].items():
            lines.append(f"| {k} | {d['generation_folders']} | {_fmt_b(d['bytes'])} | {_fmt_b(d['model_bytes'])} |")
    return "\n".join(lines) + "\n"


def write_plan(profile: str, notebooks: list[str], overrides: dict | None = None) -> tuple[str, list[Path]]:
    """build/<profile>-rehearsal/plan.json and plan.md; returns (the Markdown, the paths)."""
    from .runtime import describe_device, pick_device

    p = plan(profile, notebooks, overrides)
    p["device"] = describe_device(pick_device("auto"))
    md = plan_markdown(p)
    root = rehearsal_dir(profile)
    paths = [store.write_json(root / "plan.json", p)]
    path = root / "plan.md"
    with store.atomic_path(path) as tmp:
        Path(tmp).write_text(md)
    return md, paths + [path]
