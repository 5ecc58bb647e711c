"""resonance: feedback chains and collapse diagnostics, the companion to arXiv 2602.19033.

Modules (import what you need; heavy libraries load lazily):
  specs    typed experiment specs: types, defaults, ranges   notebook_params  each notebook's parameters
  config   profiles (what each changes), overrides, checks   records  what a notebook ran, for its readers
  runtime  device, seeding, threads, AMP                     store    atomic files, run folders, the manifest
  publish  a notebook's figures, tables and numbers          plots    the seaborn theme, figures, stamps
  chain    the generational Markov chain runner              audio    the Lucier room loop and its physics
  ensemble many chains at once: in process, or as Ray tasks
  data, features, diffusion, image_chains                    MNIST, feature networks, DDPM/DDIM, the chains
  latent                                                     chain spaces: a fixed autoencoder's latents, pixels
  metrics, geometry, diagnostics                             drift, phases, FID/KID; geometry, the taxonomy;
                                                             the block 03, 05 and 08 apply to their chains
  claim, claim_runs                                          mixing and contraction with intervals, the rule,
                                                             their calibration; the claim's chains and rows
  cyclegan, cyclegan_networks, cyclegan_checkpoints          CycleGAN training and its cycle; the official
                                                             networks; official checkpoints
  attractors                                                 attractors and basins of deterministic maps
  mitigations, settings                                      what a retraining chain may train on; the settings
  watermark                                                  an invisible DCT spread-spectrum mark, its detector
  recursive_diffusion, gaussian_refit, coevolution           the wider collapse literature
  iterative_mle                                              refitting on accumulated data, and when it collapses
  sweep                                                      where resonance stops: notebook 10's grid, its cells'
                                                             verdicts and boundaries, the closed-form counterpart
  run_notebooks, results_page                                the papermill driver behind run_all.sh; the page
                                                             (figures/index.html) that shows what runs found
  rehearsal, costs                                           the paper profile at small counts, its cost plan;
                                                             the hot operations' recorder
"""
__version__ = "0.1.0"

# the modules, as `from resonance_utils import *` and the notebooks see them (submodules load on first use)
__all__ = ["attractors", "audio", "chain", "claim", "claim_runs", "coevolution", "config", "costs", "cyclegan",
           "cyclegan_checkpoints", "cyclegan_networks", "data", "diagnostics", "diffusion", "ensemble", "features",
           "gaussian_refit", "geometry", "image_chains", "iterative_mle", "latent", "metrics", "mitigations",
           "notebook_params", "plots", "publish", "records", "recursive_diffusion", "rehearsal", "results_page",
           "run_notebooks", "runtime", "settings", "specs", "store", "sweep", "watermark"]


def __getattr__(name):
    """`resonance_utils.audio` without an import of its own: each module is imported when first used."""
    if name in __all__:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
