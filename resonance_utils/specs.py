"""Typed specs: every parameter of an experiment once, with its type, default, meaning and allowed range.

A spec is a frozen dataclass. Its defaults are the quick profile's values (what a laptop runs); the profile files
`params/<notebook>/<profile>.yaml` hold only what differs from them, as nanoGPT's config files do. Building a
spec coerces and checks every field (`strength` in (0, 1], counts >= 1, known choices), so a bad value fails
here, before any data, model or classifier is loaded, with the parameter's own name.

Package functions take a spec (or explicit keywords), never a notebook's configuration. `build(Spec, params)` is
the only way a notebook's resolved parameters become a spec (`notebook_params` declares which notebook has
which parameters). A spec's `key()` is what enters a run key: every field but those marked `extend` (a longer
run extends a shorter one, as n_generations does) or `key=False` (the device, analysis thresholds).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}
_VECTORS = {"tuple[int, ...]": int, "tuple[float, ...]": float}


class ConfigError(ValueError):
    """A bad profile, parameter name or value: the message says which and lists what is valid."""


def param(default, doc: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
          choices: tuple | None = None, extend: bool = False, key: bool = True):
    """A spec field: its default, what it means, its range ([low, high], open ends on request) or choices.
    extend: a larger value continues a run (left out of the run key); key=False: never in the run key."""
    return field(default=default, metadata={"doc": doc, "low": low, "high": high, "low_open": low_open,
                                            "high_open": high_open, "choices": choices, "extend": extend,
                                            "key": key})


def parse_vector(name: str, text, length: int | None = None) -> tuple[float, ...]:
    """'6.0, 5.0, 3.2' (or a number, list or tuple) -> (6.0, 5.0, 3.2), with errors that name the parameter."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        parts = [float(text)]
    elif isinstance(text, (list, tuple)):
        parts = [float(p) for p in text]
    else:
        try:
            parts = [float(p) for p in str(text).replace(";", ",").split(",") if p.strip()]
        except ValueError:
            raise ConfigError(f"parameter {name!r} must be comma-separated numbers like \"6.0, 5.0, 3.2\", "
                              f"got {text!r}") from None
    if length is not None and len(parts) != length:
        raise ConfigError(f"parameter {name!r} needs {length} numbers, got {len(parts)} ({text!r})")
    return tuple(parts)


def coerce(name: str, value, kind: str, default=None):
    """`value` as the field type `kind` ('int', 'float', 'bool', 'str', 'tuple[int, ...]', ...), or a
    ConfigError naming the parameter. An int is accepted for a float; a vector may be written '1, 2, 2'."""
    like = f" (like {default!r})" if default is not None else ""
    if kind in _VECTORS:
        if isinstance(value, bool):
            raise ConfigError(f"parameter {name!r} must be numbers like \"1, 2, 2\", got {value!r}")
        parts = parse_vector(name, value)
        if _VECTORS[kind] is int:
            if any(p != int(p) for p in parts):
                raise ConfigError(f"parameter {name!r} must be whole numbers{like}, got {value!r}")
            return tuple(int(p) for p in parts)
        return parts
    want = _SCALARS[kind]
    if want is bool or isinstance(value, bool):
        if type(value) is want:
            return value
    elif want is float and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(value, want):
        return value
    raise ConfigError(f"parameter {name!r} must be {want.__name__}{like}, got {value!r} ({type(value).__name__})")


def _check_range(f: dataclasses.Field, value) -> None:
    m = f.metadata
    if m.get("choices") is not None and value not in m["choices"]:
        raise ConfigError(f"parameter {f.name!r} must be one of {', '.join(map(repr, m['choices']))}; got {value!r}")
    lo, hi = m.get("low"), m.get("high")
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, str) or (lo is None and hi is None):
            continue
        bad_lo = lo is not None and (v <= lo if m["low_open"] else v < lo)
        bad_hi = hi is not None and (v >= hi if m["high_open"] else v > hi)
        if bad_lo or bad_hi:
            left = "(" if m["low_open"] else "["
            right = ")" if m["high_open"] else "]"
            span = (f"{left}{lo}, {hi}{right}" if lo is not None and hi is not None else
                    f"{'>' if m['low_open'] else '>='} {lo}" if lo is not None else f"{'<' if m['high_open'] else '<='} {hi}")
            raise ConfigError(f"parameter {f.name!r} must be {span if ',' not in span else 'in ' + span}, got {value!r}"
                              f" ({m['doc']})")


@dataclass(frozen=True)
class Spec:
    """The base of every spec: fields coerced to their types and checked on construction (`check` holds the
    rules that involve several fields; subclasses extend it and call super().check())."""

    def __post_init__(self):
        for f in fields(self):
            value = coerce(f.name, getattr(self, f.name), str(f.type), f.default)
            object.__setattr__(self, f.name, value)
            _check_range(f, value)
        self.check()

    def check(self) -> None:
        """Cross-field rules (none here)."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def docs(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("doc", "") for f in fields(cls)}

    @classmethod
    def defaults(cls) -> dict:
        return {f.name: f.default for f in fields(cls)}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def key(self) -> dict:
        """The fields that enter a run key: all but `extend` ones and `key=False` ones (vectors as lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)
                if f.metadata.get("key", True) and not f.metadata.get("extend", False)}

    def replace(self, **changes):
        """A copy with some fields changed, checked again."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no parameter(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(self.names())}")
        return dataclasses.replace(self, **changes)


def build(spec_class: type, params, **changes):
    """The spec `spec_class` from a notebook's resolved parameters (a Config, a mapping or another spec): its
    fields are taken by name, `changes` applied on top. The one place parameters become specs."""
    values = params.to_dict() if hasattr(params, "to_dict") else dict(params)
    names = spec_class.names()
    missing = [n for n in names if n not in values and n not in changes]
    picked = {n: values[n] for n in names if n in values}
    unknown = sorted(set(changes) - set(names))
    if unknown:
        raise ConfigError(f"{spec_class.__name__} has no parameter(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    if missing:  # the spec's own defaults: what a notebook without these parameters runs
        picked |= {n: spec_class.defaults()[n] for n in missing}
    return spec_class(**(picked | changes))


# ----------------------------------------------------------------------------------------------- diffusion chains
@dataclass(frozen=True)
class DiffusionModelSpec(Spec):
    """The generation-0 diffusion model (a diffusers UNet2DModel, DDPM training): trained once, cached."""
    seed: int = param(0, "seeds data subsets, model init, training batches and sampling noise")
    device: str = param("auto", "auto (cuda, mps, cpu) | cpu | cuda", key=False)
    base_train_size: int = param(0, "real images the generation-0 model is trained on (0: the whole training split)",
                                 low=0)
    space: str = param("latent", "what the UNet models: latent (the grid of a fixed autoencoder trained once on the "
                       "real generation-0 data) | pixel", choices=("latent", "pixel"))
    base_channels: int = param(32, "UNet width at its first level", low=1)
    channel_mult: tuple[int, ...] = param((1,), "width multipliers per UNet level; each level but the last halves "
                                          "the grid (a 7x7 latent grid takes one level; pixels: 1, 2, 2)", low=1)
    layers_per_block: int = param(1, "ResNet layers per UNet level", low=1)
    attention: bool = param(False, "self-attention at the lowest level (slow on a CPU)")
    base_steps: int = param(3000, "training steps of the generation-0 model, from scratch on generation 0", low=1)
    batch_size: int = param(256, "training batch size (a 7x7 latent batch of 256 costs about 2x one of 64 on a "
                            "CPU: measured)", low=1)
    lr: float = param(0.003, "AdamW peak learning rate (warm-up, cosine decay)", low=0, low_open=True)
    ema_decay: float = param(0.0, "EMA of the weights; 0: off", low=0, high=1, high_open=True)
    cond_drop_prob: float = param(0.1, "label dropout: the conditional model also learns the unconditional score",
                                  low=0, high=1)
    autoencoder_channels: tuple[int, ...] = param((16, 32, 32), "space latent: the autoencoder's widths per level; "
                                                  "each level but the last halves the grid (28 -> 7)", low=1)
    autoencoder_latent_channels: int = param(4, "space latent: channels of the latent grid", low=1)
    autoencoder_steps: int = param(1500, "space latent: the autoencoder's training steps (batch 64)", low=1)
    autoencoder_kl_weight: float = param(0.0001, "space latent: weight of the KL term beside the reconstruction "
                                         "error", low=0)

    def key(self) -> dict:
        """A pixel-space model does not depend on the autoencoder's fields."""
        out = super().key()
        return out if self.space == "latent" else {k: v for k, v in out.items() if not k.startswith("autoencoder_")}

    def autoencoder_spec(self):
        """The latent.AutoencoderSpec of space latent (its seed and device are this spec's)."""
        from .latent import AutoencoderSpec
        return AutoencoderSpec(seed=self.seed, device=self.device, block_channels=self.autoencoder_channels,
                               latent_channels=self.autoencoder_latent_channels, train_steps=self.autoencoder_steps,
                               kl_weight=self.autoencoder_kl_weight)


@dataclass(frozen=True)
class DiffusionChainSpec(DiffusionModelSpec):
    """A diffusion feedback chain (latent feedback, label-guided or unconditional retraining) and its model."""
    n_generations: int = param(12, "feedback steps after generation 0 (the real subset)", low=1, extend=True)
    samples_per_generation: int = param(1000, "N: size of every generation; generation 0 is class-balanced real data",
                                        low=1)
    # 30: one quick generation at N = 1,000 stays 5x cheaper than the pixel chain before issue 15 at N = 500
    # (python -m benchmarks.run --parts latent; 40 steps measured 4.8x)
    finetune_steps: int = param(30, "training steps of each later generation (fine-tuned from the previous model)",
                                low=1)
    finetune_lr: float = param(0.0003, "AdamW peak learning rate of that fine-tuning (a tenth of lr: the previous "
                               "model is adapted to the new data, not retrained)", low=0, low_open=True)
    retrain: str = param("finetune", "finetune (from the previous generation's model) | scratch (base_steps from "
                         "nothing)", choices=("finetune", "scratch"))
    regime: str = param("replace", "training data of the retraining chains (replace | accumulate | fresh); latent "
                        "feedback has no training set, so accumulate is replace there", choices=("replace", "accumulate", "fresh"))
    fresh_fraction: float = param(0.0, "with regime fresh: share of each training set (retraining) or of each "
                                  "generation (latent feedback) swapped for new real images", low=0, high=1)
    ddim_steps: int = param(10, "DDIM steps for a full sample (latent feedback takes strength x this many)", low=1)
    guidance_scale: float = param(2.0, "classifier-free guidance of label-guided sampling (1: none)", low=0)
    strength: float = param(0.35, "latent feedback: noise level each pass (0-1, a share of the diffusion time)",
                            low=0, high=1, low_open=True)
    latent_conditional: bool = param(False, "latent feedback: denoise with the trajectory's label (true) or "
                                     "unconditionally")

    def check(self) -> None:
        super().check()
        if self.regime == "fresh" and self.fresh_fraction == 0:
            raise ConfigError("regime 'fresh' needs fresh_fraction > 0 (the share of new real images per generation)")

    def model_spec(self) -> DiffusionModelSpec:
        return build(DiffusionModelSpec, self)


@dataclass(frozen=True)
class ImagenetDataSpec(Spec):
    """ImageNet-5 (a user's image folder, or the offline stand-in) and the classifier that scores its chains."""
    imagenet_root: str = param("", "\"\": the offline stand-in (crops of real registry photos); or a folder with "
                               "one sub-folder per class")
    classes: str = param("", "class sub-folders to use, comma-separated; \"\": the five proposed synsets when "
                         "present, else all")
    resolution: int = param(32, "images are resized (shorter side) and centre-cropped to resolution x resolution",
                            low=8)
    n_per_class: int = param(400, "stand-in: crops per class; image folder: at most this many images per class "
                             "(0: all)", low=0)
    classifier_epochs: int = param(15, "epochs of the classifier trained on generation-0 data (classes that are "
                                   "not synsets)", low=1)


# ----------------------------------------------------------------------------------------------------- Lucier
@dataclass(frozen=True)
class LucierSpec(Spec):
    """The Lucier room loop: a voice played into a room and recorded, again and again."""
    seed: int = param(0, "seeds the microphone noise when add_noise is true")
    voice_path: str = param("", "\"\": CMU ARCTIC a0007 shipped in pysptk; or any WAV/FLAC/OGG (mixed to mono, "
                            "resampled)")
    voice_seconds: float = param(0.0, "keep only the first seconds of the voice; 0: all of it", low=0)
    sample_rate: int = param(16000, "Hz, for voice, room and analysis", low=1000)
    rir_path: str = param("", "\"\": simulate the shoebox below; or a measured impulse response (audio file)")
    room_dims: tuple[float, ...] = param((6.0, 5.0, 3.2), "shoebox length, width, height in metres", low=0,
                                         low_open=True)
    rt60: float = param(0.8, "reverberation time in seconds (wall absorption by Sabine's formula)", low=0,
                        low_open=True)
    source_pos: tuple[float, ...] = param((2.0, 3.0, 1.6), "loudspeaker position, metres", low=0)
    mic_pos: tuple[float, ...] = param((4.0, 2.0, 1.5), "microphone position, metres", low=0)
    rir_highpass: bool = param(True, "pyroomacoustics' DC-removing high-pass on the impulse response")
    n_iterations: int = param(100, "passes through the room (Lucier used 32)", low=1, extend=True)
    wet_mix: float = param(1.0, "share of the room's recording in each pass; < 1 keeps (1 - wet_mix) dry signal",
                           low=0, high=1, low_open=True)
    add_noise: bool = param(False, "add microphone noise each pass")
    snr_db: float = param(30.0, "its signal-to-noise ratio when add_noise is true")
    band_low_hz: float = param(60.0, "loudspeaker low cut-off (Butterworth, zero phase); 0: none", low=0)
    band_high_hz: float = param(7000.0, "loudspeaker high cut-off; 0: none", low=0)
    band_order: int = param(2, "Butterworth order of both edges", low=1)
    normalise: str = param("rms", "level after each pass: rms | peak | none (both scale to the voice's own level)",
                           choices=("rms", "peak", "none"))
    tail: str = param("circular", "circular: fixed window, tails wrap; truncate: linear convolution cut to the "
                      "window", choices=("circular", "truncate"))
    voice_band_db: float = param(40.0, "report the voice's band: where its long-term spectrum is within this many dB "
                                 "of its peak", low=0, low_open=True, key=False)

    def check(self) -> None:
        super().check()
        for name in ("room_dims", "source_pos", "mic_pos"):
            if len(getattr(self, name)) != 3:
                raise ConfigError(f"parameter {name!r} needs 3 numbers, got {getattr(self, name)}")
        for name in ("source_pos", "mic_pos"):
            if any(p > d for p, d in zip(getattr(self, name), self.room_dims)):
                raise ConfigError(f"parameter {name!r} = {getattr(self, name)} lies outside the room {self.room_dims}")
        nyquist = self.sample_rate / 2
        if self.band_high_hz >= nyquist:
            raise ConfigError(f"parameter 'band_high_hz' = {self.band_high_hz} must lie below the Nyquist frequency "
                              f"{nyquist:g} Hz of sample_rate {self.sample_rate} (0 = no high cut-off)")
        if self.band_high_hz and self.band_low_hz >= self.band_high_hz:
            raise ConfigError(f"band_low_hz ({self.band_low_hz}) must lie below band_high_hz ({self.band_high_hz})")


# --------------------------------------------------------------------------------------------------- CycleGAN
@dataclass(frozen=True)
class CycleGANModelSpec(Spec):
    """A CycleGAN between two image domains: trained once and cached, or the official generators."""
    seed: int = param(0, "seeds data subsets, initialisation, batches, the image pool and the start images")
    domain_a: str = param("mnist:0-4", "domain A: mnist[:classes] (e.g. mnist:0-4, mnist:1,7) or an image folder "
                          "(one sub-folder per class)")
    domain_b: str = param("mnist:5-9", "domain B, the same forms")
    resolution: int = param(28, "image folders only: resized and centre-cropped to this size (a multiple of 4)",
                            low=4)
    n_train: int = param(3000, "training images per domain (class-balanced subset; 0: all)", low=0)
    official_g_ab: str = param("", "path to an official pytorch-CycleGAN-and-pix2pix generator A->B "
                               "(latest_net_G_A.pth); \"\": train ours")
    official_g_ba: str = param("", "... and B->A (latest_net_G_B.pth); give both or neither")
    official_ngf: int = param(64, "the official generators' width", low=1)
    official_n_blocks: int = param(9, "... and ResNet blocks (9 for 256 px models, 6 for 128 px)", low=1)
    device: str = param("auto", "auto (cuda, mps, cpu) | cpu | cuda", key=False)
    ngf: int = param(16, "generator width (the official 64 is slow on a CPU)", low=1)
    n_blocks: int = param(3, "ResNet blocks of the generator (official: 9)", low=1)
    ndf: int = param(16, "discriminator width", low=1)
    n_layers: int = param(2, "PatchGAN depth (official: 3; 2 suits 28 px images)", low=1)
    train_steps: int = param(1000, "training steps (one batch from each domain per step)", low=1)
    batch_size: int = param(8, "images per domain per step", low=1)
    lr: float = param(0.0002, "Adam learning rate, decayed linearly to 0 over the second half", low=0, low_open=True)
    lambda_cycle: float = param(10.0, "weight of the cycle-consistency L1 loss", low=0)
    lambda_identity: float = param(0.5, "identity loss weight, as a share of lambda_cycle (official default)", low=0)
    pool_size: int = param(50, "history of generated images shown to the discriminators", low=0)

    def check(self) -> None:
        super().check()
        if bool(self.official_g_ab) != bool(self.official_g_ba):
            raise ConfigError("give both official_g_ab and official_g_ba (the A->B and B->A generators), or neither")
        if self.resolution % 4:
            raise ConfigError(f"parameter 'resolution' must be a multiple of 4, got {self.resolution}")


@dataclass(frozen=True)
class CycleGANSpec(CycleGANModelSpec):
    """The CycleGAN's cycle x -> F(G(x)) iterated from held-out images, and the attractor detector's settings."""
    n_starts: int = param(200, "held-out domain-A images iterated (class-balanced)", low=1)
    n_cycles: int = param(250, "iterations of x -> F(G(x))", low=1, extend=True)
    quantize: bool = param(True, "round to the uint8 grid after every cycle (as saving an image would)")
    tol: float = param(0.002, "attractor detector: RMS distance (pixel scale 0-1) below which two states are equal",
                       low=0, low_open=True, key=False)
    max_period: int = param(8, "longest cycle looked for", low=1, key=False)

    def model_spec(self) -> CycleGANModelSpec:
        return build(CycleGANModelSpec, self)


# ------------------------------------------------------------------------------------------------ diagnostics
@dataclass(frozen=True)
class DiagnosticThresholds(Spec):
    """Drift curves, their phases and the geometry taxonomy: our reconstruction (the paper publishes no criteria)."""
    fid_n: int = param(0, "rows per half in every FID (2 disjoint halves per generation); 0: half the smallest",
                       low=0)
    phase_flat_tol: float = param(0.3, "practical size: excess slope (per run / largest) or local level (/ largest) "
                                  "below it is flat", low=0)
    phase_slow_tol: float = param(1.0, "a significant slope steeper than this (same units) is active transient",
                                  low=0)
    phase_window: int = param(3, "generations in the least-squares slope window", low=2)
    phase_z: float = param(2.0, "a slope or the local level above the floor counts only beyond phase_z standard "
                           "errors", low=0)
    phase_min_generations: int = param(3, "shortest phase; a shorter one is merged into its neighbours (monotone "
                                       "fit)", low=1)
    drift_resplits: int = param(20, "random re-splits of each generation into halves, for the drift curves' "
                                "standard errors", low=1)
    knn_k: int = param(10, "neighbourhood size of the local geometry measures and the taxonomy", low=1)
    taxonomy_window: int = param(3, "generations compared by one taxonomy verdict (first vs last of the window)",
                                 low=2)
    wrinkling_tol: float = param(0.05, "taxonomy: rise in local roughness beyond the global one that counts as "
                                 "wrinkled", low=0)
    flattening_tol: float = param(0.5, "taxonomy: rise in flatness (nats) that counts as oblate", low=0)
    elongation_tol: float = param(0.5, "taxonomy: rise in elongation (nats) that counts as prolate", low=0)

    def check(self) -> None:
        super().check()
        if self.phase_slow_tol < self.phase_flat_tol:
            raise ConfigError(f"phase_slow_tol ({self.phase_slow_tol}) must be >= phase_flat_tol "
                              f"({self.phase_flat_tol})")

    def phase_options(self) -> dict:
        """Keyword options of metrics.detect_phases."""
        return dict(flat_tol=self.phase_flat_tol, slow_tol=self.phase_slow_tol, window=self.phase_window,
                    z=self.phase_z, min_generations=self.phase_min_generations)

    def taxonomy_options(self) -> dict:
        """Keyword options of geometry.classify_trajectory and classify_pattern (the window is separate)."""
        return dict(k=self.knn_k, wrinkling_tol=self.wrinkling_tol, flattening_tol=self.flattening_tol,
                    elongation_tol=self.elongation_tol)


# ---------------------------------------------------------------------------------------------------- the claim
@dataclass(frozen=True)
class ClaimMeasures(Spec):
    """The thresholds of the claim's measures, one set for every row and the calibration: our reconstruction."""
    seed: int = param(0, "seeds the starting sets, every chain's own noise stream and the bootstraps")
    held_out: int = param(3, "last generations held out of the prediction and read by the observation", low=2)
    pca_components: int = param(10, "directions every measure of a row works in (leading PCA axes of all its "
                                "clouds)", low=1)
    mixing_eps: float = param(0.05, "mixing time: generations for the between-start excess to fall to this share",
                              low=0, high=1, low_open=True, high_open=True)
    mixed_effect: float = param(0.1, "\"mixed\": the late excess is below this share of the starting excess, with "
                                "confidence", low=0, high=1, low_open=True)
    divergence_tol: float = param(0.1, "replicates drifting apart by more than this share: no stationary law in "
                                  "sight", low=0)
    contraction_tol: float = param(0.2, "contracting: the most-contracted directions lose more than this share of "
                                   "variance", low=0, high=1)
    anisotropy_tol: float = param(0.405, "directional: log(least / most contracted) above this with confidence "
                                  "(log 1.5)", low=0)
    move_tol: float = param(0.02, "observation: late drift per generation below this share of the starting excess",
                            low=0)
    dim_tol: float = param(0.25, "observation: low-dimensional when the effective dimension falls by more than this",
                           low=0, high=1)
    alpha: float = param(0.05, "every interval is at level 1 - alpha", low=0, high=0.5, low_open=True,
                         high_open=True)
    n_boot: int = param(200, "bootstrap resamples behind every interval", low=20)

    def setting_options(self) -> dict:
        """Keyword options of claim.assess_setting (and claim.calibrate)."""
        shared = dict(alpha=self.alpha, n_boot=self.n_boot)
        return dict(held_out=self.held_out,
                    mixing=dict(eps=self.mixing_eps, mixed_effect=self.mixed_effect,
                                divergence_tol=self.divergence_tol, **shared),
                    contraction=dict(contraction_tol=self.contraction_tol, anisotropy_tol=self.anisotropy_tol,
                                     **shared),
                    observation=dict(mixed_effect=self.mixed_effect, move_tol=self.move_tol, dim_tol=self.dim_tol,
                                     **shared))


# ----------------------------------------------------------------------------------------------- mitigations
MITIGATIONS = ("none", "fresh_data", "accumulate", "entropy_selection", "self_verification", "watermark_filter",
               "watermark_filter_weak")  # what mitigations.chain_jobs runs by name; weak curation is a grid
CURATION_FOCUS = ("hardest", "random")  # which samples a weak curator judges


@dataclass(frozen=True)
class MitigationSpec(Spec):
    """The mitigations of the label-guided retraining chain (mitigations.py) and their settings: our readings of
    the literature, every one a parameter."""
    mitigation_list: str = param("none, fresh_data, accumulate, entropy_selection, self_verification, "
                                 "watermark_filter, watermark_filter_weak", "which to run (besides the weak "
                                 "curation grid)")
    fresh_fraction: float = param(0.2, "fresh_data and both watermark filters: share of every training set replaced "
                                  "by new real digits", low=0, high=1, low_open=True)
    keep_fraction: float = param(0.6, "entropy_selection: share of the samples kept", low=0, high=1, low_open=True)
    verify_threshold: float = param(0.9, "self_verification: classifier probability of the own label needed to be "
                                    "kept", low=0, high=1)
    watermark_strength: float = param(0.0, "watermark: amplitude of the spread-spectrum pattern per DCT "
                                      "coefficient, in grey levels; 0: the scheme's default", low=0)
    watermark_threshold: float = param(0.0, "watermark_filter: detector z-score above which a training image is "
                                       "dropped; 0: the scheme's default", low=0)
    weak_detector_threshold: float = param(0.0, "watermark_filter_weak: the weakened detector's higher z "
                                           "threshold (it misses more marked images); 0: the marked images' "
                                           "median score", low=0)
    curator_accuracies: tuple[float, ...] = param((0.5, 1.0), "weak curation: how often the curator's "
                                                  "good/bad verdict is right (0.5: chance, 1: perfect); empty: none",
                                                  low=0, high=1)
    curation_budgets: tuple[float, ...] = param((0.5,), "weak curation: share of each training set the "
                                                "curator judges", low=0, high=1, low_open=True)
    curation_focus: str = param("hardest, random", "weak curation: which samples it judges (hardest: lowest "
                                "classifier margin first | random)")
    curation_generations: int = param(0, "weak curation chains' length, at most n_generations (0: n_generations); "
                                      "fewer keeps the grid cheap", low=0)
    curation_seeds: int = param(1, "weak curation: chains per cell, each with its own noise, paired across cells "
                                "by seed; with one, every cell's difference from chance is inconclusive", low=1)
    curation_alpha: float = param(0.05, "weak curation: a cell's verdict against the chance cell is read from its "
                                  "paired t interval at level 1 - alpha", low=0, high=0.5, low_open=True,
                                  high_open=True)

    def check(self) -> None:
        super().check()
        unknown = [m for m in self.mitigations() if m not in MITIGATIONS]
        if unknown:
            raise ConfigError(f"parameter 'mitigation_list': unknown mitigation(s) {', '.join(map(repr, unknown))}; "
                              f"valid: {', '.join(MITIGATIONS)}")
        bad = [f for f in self.focus_list() if f not in CURATION_FOCUS]
        if bad:
            raise ConfigError(f"parameter 'curation_focus': unknown focus {', '.join(map(repr, bad))}; valid: "
                              f"{', '.join(CURATION_FOCUS)}")

    def mitigations(self) -> list[str]:
        return [m.strip() for m in self.mitigation_list.split(",") if m.strip()]

    def focus_list(self) -> list[str]:
        return [f.strip() for f in self.curation_focus.split(",") if f.strip()]


# ------------------------------------------------------------------------------------------------- ensembles
EXECUTORS = ("inprocess", "ray")  # how ensemble.run_ensemble runs a list of chains


@dataclass(frozen=True)
class EnsembleSpec(Spec):
    """How a notebook's many chains run (ensemble.run_ensemble): where, never what, so no run key holds it."""
    executor: str = param("inprocess", "inprocess (one chain after another here) | ray (each chain a Ray task: one "
                          "GPU, or its CPU threads; results equal inprocess)", choices=EXECUTORS, key=False)
    ray_address: str = param("", "executor ray: the cluster to join; \"\": $RAY_ADDRESS, else a local cluster",
                             key=False)
