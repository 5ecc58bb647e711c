"""The chains behind the claim table: every setting run from several starts, with independent replicates, as
the clouds the measures of `claim` read (`chains[start][replicate][generation]`), and one assessed table row per
setting.

Each start is a different initial set (image chains: class-skewed real subsets; CycleGAN: class-skewed held-out
images; Lucier: four different sounds). Each replicate of a start draws its own noise (`image_chains.
replicate_seed`): training batches, sampling and feedback noise, microphone noise. Deterministic maps (CycleGAN,
the noiseless Lucier loop) have no replicates to draw: their chains are judged per trajectory as well
(`attractors.basin_assessment`, `audio.multistart_mixing`), and that judgement is their mixing verdict.
Everything here is our reconstruction of the paper's protocol, which is not public.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import claim
from .specs import ClaimMeasures, CycleGANSpec, DiffusionChainSpec, LucierSpec


@dataclass
class SettingRun:
    """One setting's chains from several starts, ready for the measures."""

    setting: str  # the setting's title (resonance_utils.settings)
    data: str  # the data it ran on
    feature_space: str  # what the clouds are (classifier embedding, pixels, log-mel frames)
    clouds: list  # [start][replicate][generation] (n, dim) arrays, before the PCA every measure shares
    paired: bool  # rows are trajectories (row i of generation g descends from row i of generation g - 1)
    trajectory_verdict: str | None = None  # per-trajectory mixing verdict of a deterministic map, or None
    trajectory_note: str = ""  # what decided it
    details: dict = field(default_factory=dict)  # numbers behind the per-trajectory verdict, for the record


def assess_run(run: SettingRun, options: ClaimMeasures) -> tuple[claim.SettingAssessment, dict]:
    """The row of one setting: its clouds on one pooled PCA basis, claim.assess_setting, and the table row (a
    deterministic map's mixing verdict is the per-trajectory one)."""
    clouds = claim.pca_project(run.clouds, options.pca_components)
    assessment = claim.assess_setting(clouds, seed=options.seed, paired=run.paired, **options.setting_options())
    row = claim.claim_row(run.setting, run.data, assessment, feature_space=run.feature_space,
                          ergodicity=run.trajectory_verdict, ergodicity_note=run.trajectory_note)
    return assessment, row


def calibration_sizes(runs, options: ClaimMeasures) -> list[dict]:
    """The distinct sizes (samples per set, dimension, generations, starts, replicates) the rows use, for
    claim.calibrate: a verdict is only as good as its error rate at its own sizes."""
    sizes = []
    for run in runs:
        c = run.clouds
        n = min(len(x) for reps in c for chain in reps for x in chain)
        dim = min(options.pca_components, c[0][0][0].shape[1])
        # deterministic maps are compared by halves of their samples
        halves = all(np.array_equal(a, b) for reps in c for chain in reps[1:] for a, b in zip(reps[0], chain))
        size = dict(n=n // 2 if halves else n, dim=dim, generations=len(c[0][0]) - 1, starts=len(c),
                    replicates=2 if halves else min(len(r) for r in c), held_out=options.held_out)
        if size not in sizes:
            sizes.append(size)
    return sizes


def calibration_table(runs, options: ClaimMeasures, *, seeds: int) -> list[dict]:
    """claim.calibrate at every size the rows use, with the rows' own thresholds."""
    settings = options.setting_options()
    held_out = settings.pop("held_out")
    rows = []
    for size in calibration_sizes(runs, options):
        size = {k: v for k, v in size.items() if k != "held_out"}
        rows += claim.calibrate(seeds=seeds, seed=options.seed, held_out=held_out, **size, **settings)
    return rows


# ------------------------------------------------------------------------------------------------ image chains


@dataclass
class ImageSettingPlan:
    """One diffusion setting's chains for its claim row, as ensemble jobs (ensemble.image_chain_job), and what
    the row says about them; image_setting_runs makes the row's SettingRun from the ensemble's results."""

    setting: str  # the image_chains setting
    title: str
    data: str
    feature_space: str
    classifier: object  # its embedding is the row's clouds
    jobs: list  # every start's replicates, start by start
    names: list  # [start][replicate] job names


def image_setting_plan(spec: DiffusionChainSpec, setting: str, real, classifier, *, title: str, data_name: str,
                       feature_space: str, n_starts: int, n_replicates: int, skew: float, seed: int
                       ) -> ImageSettingPlan:
    """One diffusion setting of image_chains from n_starts class-skewed starts, n_replicates chains each with
    its own noise (image_chains.replicate_seed); each chain a run folder (cached and resumable). The jobs are
    named "<data> <setting> start s replicate r", unique across the plans of one notebook."""
    from . import ensemble, image_chains

    starts = image_chains.class_skewed_starts(real, spec.samples_per_generation, n_starts, skew=skew, seed=seed)
    names = [[f"{data_name} {setting} start {s} replicate {r}" for r in range(n_replicates)]
             for s in range(len(starts))]
    jobs = [ensemble.image_chain_job(spec, setting, real, classifier, name=names[s][r], x0=x0,
                                     chain_seed=image_chains.replicate_seed(seed, s, r))
            for s, x0 in enumerate(starts) for r in range(n_replicates)]
    return ImageSettingPlan(setting=setting, title=title, data=data_name, feature_space=feature_space,
                            classifier=classifier, jobs=jobs, names=names)


def image_setting_runs(plans: list[ImageSettingPlan], results: dict) -> list[SettingRun]:
    """The SettingRun of each plan from the ensemble's results (job name -> ChainResult): clouds = the
    classifier's embedding of every generation, cached in the generation folders."""
    from . import image_chains

    return [SettingRun(setting=plan.title, data=plan.data, feature_space=plan.feature_space,
                       clouds=[[image_chains.cached_features(results[name], network="classifier", model=plan.classifier)
                                for name in replicates] for replicates in plan.names],
                       paired=plan.setting == "latent_feedback")
            for plan in plans]


# ------------------------------------------------------------------------------------------------ CycleGAN


BASIN_TO_MIXING = {"one basin": "mixed", "shared basins": "separated", "separate basins": "separated",
                   "inconclusive": "inconclusive"}


def cyclegan_run(spec: CycleGANSpec, model, domains, *, n_starts: int, start_size: int, skew: float, seed: int, title: str,
                 generations: int, tol: float | None = None, progress: bool = True) -> SettingRun:
    """The CycleGAN map x -> F(G(x)) iterated from class-skewed start sets; the pixels of every cycle as clouds
    (one replicate: deterministic), and the per-trajectory verdict: do trajectories from different start sets
    reach the same attractor (attractors.basin_assessment on one trajectory holding every start's points)?
    The set-level measures read `generations` + 1 evenly spaced cycles."""
    from . import attractors, cyclegan, image_chains

    starts = image_chains.class_skewed_starts(domains["a_test"], start_size, n_starts, skew=skew, seed=seed)
    joined = {"images": np.concatenate([s["images"] for s in starts]),
              "labels": np.concatenate([s["labels"] for s in starts])}
    result = cyclegan.run_cycles(spec, model, joined, quantize=spec.quantize, progress=progress)
    trajectory = cyclegan.trajectory(result)
    start_ids = np.repeat(np.arange(n_starts), [len(s["images"]) for s in starts])
    basins = attractors.basin_assessment(trajectory, start_ids, tol=spec.tol if tol is None else tol,
                                         max_period=spec.max_period, seed=seed)
    sweep = attractors.tolerance_sweep(trajectory, max_period=spec.max_period)
    stride = max(1, (len(trajectory) - 1) // int(generations))
    per_cycle = cyclegan.trajectory_clouds(trajectory[::stride][:int(generations) + 1])
    clouds = [[[c[start_ids == s] for c in per_cycle]] * 2 for s in range(n_starts)]  # identical: deterministic
    note = (f"per trajectory: {basins.verdict}, {basins.n_attractors} attractors, "
            f"{basins.share_cross:.2f} of cross-start pairs share a basin")
    return SettingRun(setting=title, data=f"{spec.domain_a} -> {spec.domain_b}", feature_space="pixels",
                      clouds=clouds, paired=True, trajectory_verdict=BASIN_TO_MIXING[basins.verdict],
                      trajectory_note=note, details={"basins": basins, "tolerance_sweep": sweep})


# ------------------------------------------------------------------------------------------------ Lucier


def lucier_run(spec: LucierSpec, *, n_mels: int, mixing_times: float, generations: int, replicates: int, seed: int, title: str,
               eps: float = 0.05) -> SettingRun:
    """The Lucier loop from four different sounds (audio.start_signals), run for `mixing_times` predicted
    mixing times of the room (log eps / log(|G2| / |G1|) passes, audio.spectral_gap): passes are cheap, so the
    verdict comes from a run long enough to see the rate, not from where a short run stops. Clouds: log-mel
    frames of `generations` + 1 evenly spaced passes. Noiseless: one trajectory per start (identical
    replicates), judged per trajectory by audio.multistart_mixing's fitted rate; with microphone noise:
    `replicates` chains per start with their own noise."""
    from . import audio, chain, runtime

    setup = audio.lucier_setup(spec)
    starts = audio.start_signals(setup.voice, spec.sample_rate, seed=seed)
    gap = audio.spectral_gap(setup.room, setup.band)
    t_mix = gap.mixing_time(eps)
    passes = max(int(generations), int(math.ceil(mixing_times * t_mix)) if math.isfinite(t_mix) else 0)
    stride = max(1, passes // int(generations))
    passes = stride * int(generations)
    noisy = bool(spec.add_noise)
    n_reps = int(replicates) if noisy else 1
    clouds, trajectories = [], []
    for s, sound in enumerate(starts.values()):
        reps = []
        for r in range(n_reps):
            res = chain.run_chain(setup.room.step, setup.room.window(sound), passes, progress=False,
                                  seed=runtime.generation_seed(seed, s, stream=2000 + r) % 2**31)
            reps.append([audio.logmel_frames(p, spec.sample_rate, n_mels=n_mels) for p in res.states[::stride]])
        clouds.append(reps if noisy else reps * 2)
        trajectories.append(res.states[::stride])  # noiseless: multistart_mixing reads these passes
    n_frames = min(len(x) for reps in clouds for c in reps for x in c)
    clouds = [[[x[:n_frames] for x in c] for c in reps] for reps in clouds]  # frames paired across passes
    details = {"spectral_gap": gap, "passes": passes, "stride": stride, "predicted_mixing_time": t_mix}
    verdict, note = None, ""
    if not noisy:
        report = audio.multistart_mixing(setup.room, starts, setup.band, n_passes=passes, stride=stride, eps=eps,
                                         seed=seed, trajectories=trajectories)
        verdict = report.verdict
        note = (f"per trajectory: spectral rate {report.rate:.4g} [{report.rate_interval[0]:.4g}, "
                f"{report.rate_interval[1]:.4g}] per pass, predicted {gap.ratio:.4g}; mixing time "
                f"{report.mixing_time:.3g} passes (predicted {t_mix:.3g}), run {passes}")
        details["multistart"] = report
    data = f"{setup.voice_source.split(': ')[-1]} + 3 other sounds"
    return SettingRun(setting=title, data=data, feature_space=f"log-mel frames ({n_mels} bands)", clouds=clouds,
                      paired=True, trajectory_verdict=verdict, trajectory_note=note, details=details)


# ------------------------------------------------------------------------------------------------ known answers


def synthetic_checks(*, n_generations: int, seed: int, options: ClaimMeasures) -> list[dict]:
    """The four combinations of claim.SYNTHETIC through claim.assess_setting: what the measures say against
    what each chain is built to be."""
    rows = []
    for name, (build, want_mixing, want_contraction, want_outcome) in claim.SYNTHETIC.items():
        a = claim.assess_setting(build(n_generations=n_generations, seed=seed), seed=seed,
                                 **options.setting_options())
        rows.append({"chain": name, "mixing": a.mixing.verdict, "expected mixing": want_mixing,
                     "contraction": a.contraction.verdict, "expected contraction": want_contraction,
                     "predicted": a.predicted, "expected prediction": want_outcome,
                     "all as built": (a.mixing.verdict, a.contraction.verdict, a.predicted) ==
                                     (want_mixing, want_contraction, want_outcome)})
    return rows
