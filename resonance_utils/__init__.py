"""resonance: feedback chains and collapse diagnostics, the companion to arXiv 2602.19033.

Modules (import what you need; heavy libraries load lazily):
  config   profiles from params/, typed overrides      runtime  device, seeding, threads
  store    atomic files, run folders, the manifest     plots    the seaborn theme and figure stamps
  chain    the generational Markov chain runner        audio    the Lucier room loop and its physics
  data, features, diffusion, image_chains              MNIST, feature networks, diffusers DDPM/DDIM, the chains
  metrics, geometry                                   drift, phases, FID/KID; latent geometry, the taxonomy
  claim, claim_runs                                   mixing and contraction with intervals, the rule, their
                                                      calibration; the claim's chains and table rows
  attractors                                          attractors and basins of deterministic maps
  recursive_diffusion, gaussian_refit, coevolution    the wider collapse literature
  run_notebooks  papermill driver behind run_all.sh
"""
__version__ = "0.1.0"
