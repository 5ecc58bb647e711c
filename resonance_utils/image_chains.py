"""The diffusion feedback settings on labelled image sets, as operators T for chain.run_chain.

A state is {"images": uint8 (N,H,W[,C]), "labels": int64 (N,)}; generation 0 is a class-balanced real subset.
  latent_feedback  a fixed model trained on generation 0; X_{n+1} = denoise(noise(X_n, strength)). No retraining;
                   regime fresh: a share of each generation is new real images instead.
  label_guided     X_{n+1} = samples of a class-conditional model trained on X_n (with its labels).
  unconditional    the same without labels; the labels kept in the state are the classifier's predictions.
All three share one generation-0 model: class-conditional, trained with label dropout, so that it also has an
unconditional mode (the null label). It is trained on `base_train_size` real digits (0 = the whole training
split), as a first model would be; X_0 itself is a class-balanced real subset of N digits (the reference that
drift is measured from). T(X_0) for the retraining chains is sampling that model; each later generation
fine-tunes the previous generation's model on its N-sample training set (or retrains from scratch); generation 1
fine-tunes the generation-0 model on X_0 itself, so T is the same operator at every step and the chain's start
matters (the ergodicity test of 09_claim runs chains from different starts).
The classifier (class retention, entropies, the features cached per generation) is any model that
`features.classify` and `features.embed` accept: the MNIST CNN, a CNN trained on generation-0 data, or MobileNetV2
restricted to the set's ImageNet synsets.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import chain, diffusion, store
from .specs import ConfigError, DiffusionChainSpec, DiffusionModelSpec, ImagenetDataSpec, build

SETTINGS = ("latent_feedback", "label_guided", "unconditional")


def parse_settings(text: str) -> list[str]:
    names = [s.strip() for s in str(text).split(",") if s.strip()]
    bad = [s for s in names if s not in SETTINGS]
    if bad or not names:
        raise ConfigError(f"settings must name some of {', '.join(SETTINGS)}; got {text!r}")
    return names


def source_modules() -> tuple[str, ...]:
    """The package modules a chain's numbers depend on: this module's import closure, computed."""
    return store.import_closure("image_chains")


def replicate_seed(seed: int, start: int, replicate: int) -> int:
    """The noise seed of replicate `replicate` of the chain from start `start`: independent streams for every
    (start, replicate), a function of the three numbers only."""
    from .runtime import generation_seed
    return generation_seed(seed, start, stream=1000 + replicate) % 2**31


def generation_zero(real, n: int, seed: int) -> dict:
    """A class-balanced real subset of n images: the chain's X_0."""
    from .data import stratified_subset

    sub = stratified_subset(real, n, seed=seed)
    return {"images": sub.images, "labels": sub.labels.astype(np.int64)}


def class_skewed_starts(real, n: int, n_starts: int, *, skew: float = 0.7, seed: int = 0) -> list[dict]:
    """n_starts different starting sets of n real images for the ergodicity test: the classes are split into
    n_starts groups and start k draws a share `skew` of its images from group k (the rest from all classes),
    so the starts differ in content, not only in which images were drawn. Seeded; labels kept."""
    if not 0 <= skew <= 1:
        raise ValueError(f"skew must lie in [0, 1], got {skew}")
    if n_starts < 1 or n_starts > real.n_classes:
        raise ValueError(f"n_starts must lie in 1..{real.n_classes} (one class group each), got {n_starts}")
    groups = np.array_split(np.arange(real.n_classes), n_starts)
    starts = []
    for k, group in enumerate(groups):
        rng = np.random.default_rng([seed, k, 17])
        n_skew = int(round(skew * n))
        pick = []
        for share, classes in ((n_skew, group), (n - n_skew, np.arange(real.n_classes))):
            per = np.array_split(np.arange(share), len(classes))  # as balanced as the count allows
            for c, part in zip(classes, per):
                pool = np.setdiff1d(np.flatnonzero(real.labels == c), pick, assume_unique=False)
                if len(pool) < len(part):
                    raise ValueError(f"class {c} has {len(pool)} unused images, {len(part)} needed for start {k}")
                pick.extend(rng.choice(pool, len(part), replace=False).tolist())
        idx = np.sort(np.asarray(pick, np.int64))
        starts.append({"images": real.images[idx], "labels": real.labels[idx].astype(np.int64)})
    return starts


def imagenet5_inputs(data_spec: ImagenetDataSpec, *, seed: int, samples_per_generation: int) -> tuple:
    """(real images, retention classifier, its name, a note) of an ImageNet-5 data spec: the one place that turns
    03_imagenet_chains' data parameters into its data and classifier (05 and 09 read its chains too)."""
    from .data import load_imagenet5
    from .features import retention_classifier

    real = load_imagenet5(data_spec.imagenet_root, resolution=data_spec.resolution, classes=data_spec.classes,
                          n_per_class=data_spec.n_per_class, seed=seed, samples_per_generation=samples_per_generation)
    classifier, name, note = retention_classifier(real, epochs=data_spec.classifier_epochs, seed=seed)
    return real, classifier, name, note


def base_data(spec: DiffusionModelSpec, real) -> dict:
    """The real images the generation-0 model (and a latent space's autoencoder) is trained on."""
    if spec.base_train_size == 0:
        return {"images": real.images, "labels": real.labels.astype(np.int64)}
    return generation_zero(real, spec.base_train_size, spec.seed)


def check_unet_grid(spec: DiffusionModelSpec, image_shape) -> int:
    """The side of the grid the UNet works on (the image, or the autoencoder's latent grid), checked against
    channel_mult before anything is trained: every level but the last halves the grid, and diffusers' UNet2DModel
    needs each halving to be exact."""
    side = int(image_shape[0])
    if spec.space == "latent":
        factor = 2 ** (len(spec.autoencoder_channels) - 1)
        if side % factor:
            raise ConfigError(f"parameter 'autoencoder_channels' = {spec.autoencoder_channels} halves the grid "
                              f"{len(spec.autoencoder_channels) - 1} times, which {side} px images do not allow")
        side //= factor
    halvings = len(spec.channel_mult) - 1
    if side % 2 ** halvings:
        raise ConfigError(f"parameter 'channel_mult' = {spec.channel_mult} halves the UNet's {side}x{side} "
                          f"{'latent ' if spec.space == 'latent' else ''}grid {halvings} times; it must be divisible "
                          f"by {2 ** halvings} (a 7x7 latent grid takes channel_mult \"1\")")
    return side


def chain_space(spec: DiffusionModelSpec, real, *, progress: bool = True):
    """The space a spec's chains run in: latent.PixelSpace, or the LatentSpace of an autoencoder trained once on
    the generation-0 model's real training images and cached (latent.autoencoder). It is fixed for every
    generation, as the feature network of FID is."""
    from . import latent

    if spec.space == "pixel":
        return latent.PixelSpace()
    data = base_data(spec, real)
    return latent.autoencoder(spec.autoencoder_spec(), data["images"],
                              store.array_fingerprint(data["images"]) if spec.base_train_size else real.fingerprint,
                              progress=progress)


def _diffusion_space(space):
    """What diffusion's space= takes: None for pixels (the pixel path exactly), else the latent space."""
    return None if space.kind == "pixel" else space


def base_model(spec: DiffusionModelSpec, x0: dict, n_classes: int, fingerprint: str, *, space=None,
               progress: bool = True):
    """The generation-0 model, trained once on the real set x0 (in `space`: None = pixels) and cached in
    data/models/diffusion/<key>/; the key holds the space (the autoencoder's fingerprint)."""
    from .latent import PixelSpace

    space = space or PixelSpace()
    params = spec.key() | {"space": space.key()}
    folder = store.data_dir() / "models" / "diffusion" / store.run_key(params, fingerprint,
                                                                        store.package_source_hash(source_modules()))
    return store.train_once(folder, what=f"the generation-0 model {folder.name}", load=diffusion.load_model,
                            train=lambda: _train_base_model(spec, x0, n_classes, fingerprint, params, folder, space,
                                                            progress))


def _train_base_model(spec: DiffusionModelSpec, x0, n_classes, fingerprint, params, folder, space, progress):
    from .latent import latent_unet

    unet = dict(base_channels=spec.base_channels, channel_mult=spec.channel_mult,
                layers_per_block=spec.layers_per_block, num_classes=n_classes, attention=spec.attention,
                seed=spec.seed)
    if space.kind == "latent":
        model = latent_unet(space, **unet)
    else:
        model = diffusion.make_unet(resolution=x0["images"].shape[1], channels=1 if x0["images"].ndim == 3 else
                                    x0["images"].shape[-1], **unet)
    t0 = time.perf_counter()
    model, losses = diffusion.train_diffusion(model, x0["images"], x0["labels"], steps=spec.base_steps,
                                              batch_size=spec.batch_size, lr=spec.lr,
                                              ema_decay=spec.ema_decay or None, cond_drop_prob=spec.cond_drop_prob,
                                              seed=spec.seed, device=spec.device, progress=progress,
                                              space=_diffusion_space(space))
    diffusion.save_model(model, folder)
    store.write_json(folder / "training.json", {"params": params, "data_fingerprint": fingerprint,
                                                "seconds": round(time.perf_counter() - t0, 1),
                                                "loss_first_100": float(losses[:100].mean()),
                                                "loss_last_100": float(losses[-100:].mean())})
    return model


@dataclass
class LatentFeedback:
    """T(X) = the fixed model's SDEdit step: noise X to `strength`, denoise. Labels follow their trajectories.
    `seed` draws the chain's noise (the model is T itself and shared by every chain of a setting).

    Regime "fresh": a share `fresh_fraction` of each generation, round(fresh_fraction N) rows drawn at random each
    generation (from the step context's stream), is replaced by new real images of `real_pool` with their labels,
    drawn as class-balanced as the count allows (`fresh_real_indices`); only the other rows are fed back, and each
    keeps its row, so row i still descends from row i wherever it was not replaced. Any other regime feeds every row
    back, exactly as without one (latent feedback has no training set: replace and accumulate are one chain)."""
    model: object
    spec: DiffusionChainSpec
    seed: int
    space: object = None  # None: pixels; else the latent space (encode, noise, denoise, decode)
    progress: bool = True
    real_pool: dict | None = None  # {"images", "labels"}: where regime "fresh" draws its new real images

    def __post_init__(self):
        if self.spec.regime == "fresh" and self.real_pool is None:
            raise ValueError("latent feedback with regime 'fresh' needs real_pool, the real images its fresh share "
                             "is drawn from")

    def _feed_back(self, state, ctx):
        spec = self.spec
        labels = state["labels"] if spec.latent_conditional else None
        return diffusion.feedback_step(self.model, state["images"], strength=spec.strength, labels=labels,
                                       guidance_scale=spec.guidance_scale if labels is not None else 1.0,
                                       ddim_steps=spec.ddim_steps, seed=self.seed,
                                       generation=ctx.generation, device=spec.device, progress=self.progress,
                                       space=self.space)

    def __call__(self, state, ctx):
        if self.spec.regime != "fresh":
            return {"images": self._feed_back(state, ctx), "labels": state["labels"]}
        n = len(state["labels"])
        rng = ctx.rng  # one generator: each ctx.rng is a new one on the same stream
        fresh = np.sort(rng.choice(n, chain.fresh_count(n, self.spec.fresh_fraction), replace=False))
        kept = np.setdiff1d(np.arange(n), fresh)
        images, labels = np.empty_like(state["images"]), np.array(state["labels"], np.int64)
        if len(kept):
            images[kept] = self._feed_back({"images": state["images"][kept], "labels": labels[kept]}, ctx)
        new = fresh_real_indices(self.real_pool["labels"], len(fresh), rng)
        images[fresh], labels[fresh] = self.real_pool["images"][new], self.real_pool["labels"][new]
        return {"images": images, "labels": labels}


def fresh_real_indices(labels, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k images of a labelled pool, without replacement and as class-balanced as k allows (every class
    k // C images, k % C classes drawn at random one more), in random order (so which row gets which class is
    random too)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if not len(classes):
        raise ValueError("the real pool is empty: the fresh share has nothing to draw from")
    per_class = np.full(len(classes), k // len(classes))
    per_class[rng.choice(len(classes), k % len(classes), replace=False)] += 1
    picked = []
    for c, m in zip(classes, per_class):
        pool = np.flatnonzero(labels == c)
        if len(pool) < m:
            raise ValueError(f"class {c} of the real pool has {len(pool)} images; the fresh share needs {m}")
        picked.append(rng.choice(pool, m, replace=False))
    return rng.permutation(np.concatenate(picked))


@dataclass
class Retrain:
    """T(X) = samples of a model trained on X (after the regime composes the training set).

    The model that made generation g is saved in gen_g/model, so a resumed chain fine-tunes from it. `seed`
    draws the chain's training batches and sampling noise."""
    base: object
    spec: DiffusionChainSpec
    conditional: bool
    seed: int
    classifier: object = None  # labels the unconditional chain's samples
    real_pool: dict | None = None
    select: object = None  # select(data, rng) -> data: a mitigation hook applied to each training set
    mark: object = None  # mark(images) -> images: applied to every generated image (a watermark)
    space: object = None  # None: pixels; else the latent space, fixed: training encodes, sampling decodes
    progress: bool = True

    def __post_init__(self):
        self._model, self._model_gen = None, None

    def previous_model(self, ctx):
        if ctx.generation == 1:
            return self.base
        if self._model_gen == ctx.generation - 1:
            return self._model
        if ctx.prev_dir is None or not (ctx.prev_dir / "model").exists():
            raise store.CacheError(f"generation {ctx.generation - 1}'s model is missing ({ctx.prev_dir}/model); "
                                   "delete that generation folder to recompute it")
        return diffusion.load_model(ctx.prev_dir / "model")

    def __call__(self, state, ctx):
        spec = self.spec
        # every generation, the first included, trains on the chain's current data (T is one operator)
        data = chain.training_set(ctx.history, regime=spec.regime, real=self.real_pool,
                                  fresh_fraction=spec.fresh_fraction, rng=ctx.rng)
        if self.select is not None:
            data = self.select(data, ctx.rng)
        if spec.retrain == "finetune":
            model, steps, lr = copy.deepcopy(self.previous_model(ctx)), spec.finetune_steps, spec.finetune_lr
        else:
            model, steps, lr = diffusion.make_unet(**_unet_kwargs(self.base)), spec.base_steps, spec.lr
        model, _ = diffusion.train_diffusion(
            model, data["images"], data["labels"] if self.conditional else None, steps=steps,
            batch_size=spec.batch_size, lr=lr, ema_decay=spec.ema_decay or None,
            cond_drop_prob=spec.cond_drop_prob if self.conditional else 0.0,
            seed=training_seed(self.seed, ctx.generation), device=spec.device, progress=self.progress,
            space=self.space)
        n = spec.samples_per_generation
        n_classes = diffusion.num_classes(self.base)
        labels = np.arange(n) % n_classes if self.conditional else None  # balanced, same order every generation
        images = diffusion.sample(model, n, labels=labels, guidance_scale=spec.guidance_scale if self.conditional
                                  else 1.0, ddim_steps=spec.ddim_steps, seed=self.seed, generation=ctx.generation,
                                  device=spec.device, progress=self.progress, space=self.space)
        if self.mark is not None:
            images = self.mark(images)
        if labels is None:
            from .features import classify
            labels = classify(self.classifier, images).argmax(1)
        if ctx.out_dir is not None:
            diffusion.save_model(model, ctx.out_dir / "model")
        self._model, self._model_gen = model, ctx.generation
        return {"images": images, "labels": np.asarray(labels, np.int64)}


def training_seed(seed: int, generation: int) -> int:
    """Each generation's training draws its own batches and noise (a function of seed and generation only)."""
    from .runtime import generation_seed
    return generation_seed(seed, generation, stream=7) % 2**31


def _unet_kwargs(model) -> dict:
    c = model.config
    return dict(resolution=c.sample_size, channels=c.in_channels, base_channels=c.block_out_channels[0],
                channel_mult=tuple(w // c.block_out_channels[0] for w in c.block_out_channels),
                layers_per_block=c.layers_per_block, num_classes=diffusion.num_classes(model),
                attention="AttnDownBlock2D" in c.down_block_types, norm_groups=c.norm_num_groups)


NEAR_DUPLICATE_RATIO = 1 / 3  # a sample copies its nearest training image when it is 3x closer than the 2nd nearest
MIN_CLASS_COUNT = 10  # classes with fewer samples in a generation are left out of the within-class measures


def generation_metrics(classifier, *, intended: bool, space=None):
    """Per-generation numbers, and the classifier's features cached in the generation folder (features.npy):

    class_retention        share assigned to the intended class (intended chains, and generation 0)
    class_entropy_bits     entropy of the predicted-class histogram; mean_confidence its mean top probability
    within_class_spread    mean pairwise distance between samples of one predicted class, in the classifier's
                           embedding (geometry.within_class); within_class_dimension their participation ratio
    near_duplicate_share   share of samples that copy an image of the chain's previous generation (its training
                           set under regime replace; the input of latent feedback) by the relative nearest-
                           neighbour test in pixels (metrics.memorisation_rate, ratio NEAR_DUPLICATE_RATIO)
    autoencoder_rms        latent space: the RMS error (0-1 scale) of one autoencoder pass on this generation's
                           images, the share of each step that the fixed autoencoder alone adds"""
    from .features import classify, embed
    from .geometry import within_class
    from .metrics import class_histogram_entropy, memorisation_rate

    def metrics(state, ctx):
        images = state["images"]
        probs = classify(classifier, images)
        pred = probs.argmax(1)
        feats = embed(classifier, images)
        if ctx.out_dir is not None:
            np.save(ctx.out_dir / "features.npy", feats)
            np.save(ctx.out_dir / "predicted.npy", pred.astype(np.int64))
        out = {"class_entropy_bits": class_histogram_entropy(pred, probs.shape[1]),
               "mean_confidence": float(probs.max(1).mean())}
        if intended or ctx.generation == 0:
            out["class_retention"] = float((pred == state["labels"]).mean())
        spread = within_class(feats, pred, min_count=MIN_CLASS_COUNT)
        out["within_class_spread"] = spread["mean_pairwise_distance"]
        out["within_class_dimension"] = spread["participation_ratio"]
        if ctx.generation > 0:
            flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1) / 255.0  # noqa: E731
            out["near_duplicate_share"] = memorisation_rate(flat(images), flat(ctx.history[-1]["images"]),
                                                            ratio=NEAR_DUPLICATE_RATIO)
        if space is not None and space.kind == "latent":
            out["autoencoder_rms"] = space.reconstruction_error(images)
        return out
    return metrics


def autoencoder_passes(space, x0: dict, n_generations: int, classifier, *, progress: bool = False
                       ) -> tuple[chain.ChainResult, list[np.ndarray]]:
    """The autoencoder alone as a chain, X_{n+1} = decode(encode(X_n)) from x0 (in memory: about a second a
    generation), with the chains' per-generation numbers, and its features per generation: its drift is the share
    of a latent chain's drift that the fixed autoencoder causes by itself."""
    from .features import embed

    step = lambda state, ctx: {"images": space.decode(space.encode(state["images"])),  # noqa: E731
                               "labels": state["labels"]}
    result = chain.run_chain(step, x0, n_generations, seed=0, desc="autoencoder passes", progress=progress,
                             metrics=generation_metrics(classifier, intended=True, space=space))
    return result, [embed(classifier, s["images"]) for s in result.states]


def grid_indices(labels, n: int, *, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced random sample of n images (as equal per label as the counts allow), ordered
    by label: what a sample grid shows, never the first images of a label-sorted array."""
    labels = np.asarray(labels)
    n = min(int(n), len(labels))
    rng = np.random.default_rng([seed, 23])
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen = []
    while len(chosen) < n:  # round robin over the labels
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(pool.pop())
    chosen = np.asarray(chosen, np.int64)
    return chosen[np.lexsort((chosen, labels[chosen]))]


def run_image_chain(spec: DiffusionChainSpec, setting: str, real, classifier, *, select=None,
                    select_params: dict | None = None, mark=None, mark_params: dict | None = None, x0: dict | None = None, chain_seed: int | None = None,
                    autoencoder_rms: bool = True, progress: bool = True) -> chain.ChainResult:
    """Run (or read back) one setting's chain of a diffusion chain spec on the real image set `real`.

    select(data, rng) -> data filters or selects each training set of a retraining chain (a mitigation);
    select_params names it in the run key (required with select).
    mark(images) -> images changes every image a retraining chain generates (a watermark); mark_params names it in
    the run key (required with mark).
    x0: another starting set {"images", "labels"} (default: a class-balanced real subset of
    samples_per_generation images); its content hash enters the run key.
    chain_seed: the seed of this chain's own randomness (training batches, sampling and feedback noise; default
    spec.seed), so that chains from different starts, and replicates from one start, draw independent noise
    (`replicate_seed`); it enters the run key. The generation-0 model is T itself: shared, seeded by spec.seed.
    autoencoder_rms: a latent chain records the fixed autoencoder's own error with every generation (one more
    encode-decode pass: about a third of a latent-feedback generation's time on a CPU); False leaves it out (and
    says so in the run key), for sweeps of many chains that do not read it.
    The run key is the spec (less n_generations: a longer chain extends a shorter one), the data's fingerprint,
    the classifier's (its verdicts are stored with every generation) and the source of every module the chain's
    code imports."""
    from .features import model_fingerprint

    if type(spec) is not DiffusionChainSpec:  # a notebook's parameters would put its plot settings in the key
        raise TypeError(f"run_image_chain takes a DiffusionChainSpec (specs.build(DiffusionChainSpec, cfg)), "
                        f"got {type(spec).__name__}")
    if select is not None and not select_params:
        raise ValueError("a select hook needs select_params that name it (they enter the run key)")
    if mark is not None and not mark_params:
        raise ValueError("a mark hook needs mark_params that name it (they enter the run key)")
    if mark is not None and setting == "latent_feedback":
        raise ValueError("a mark hook applies to the retraining chains' generated images, not to latent feedback")
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; valid: {', '.join(SETTINGS)}")
    start = None
    if x0 is None:
        x0 = generation_zero(real, spec.samples_per_generation, spec.seed)
    else:
        x0 = {"images": np.asarray(x0["images"]), "labels": np.asarray(x0["labels"], np.int64)}
        if x0["images"].shape[1:] != real.images.shape[1:] or x0["images"].dtype != np.uint8:
            raise ValueError(f"x0 images must be uint8 of shape (N,){real.images.shape[1:]} like the real set, got "
                             f"{x0['images'].dtype} {x0['images'].shape}")
        start = store.array_fingerprint(x0["images"], x0["labels"])
    fingerprint = real.fingerprint
    base, space = generation0_model(spec, real, progress=progress)
    seed = spec.seed if chain_seed is None else int(chain_seed)
    pool = {"images": real.images, "labels": real.labels.astype(np.int64)}  # the fresh share's real images
    if setting == "latent_feedback":
        step = LatentFeedback(base, spec, seed, space=_diffusion_space(space), progress=progress, real_pool=pool)
    else:
        step = Retrain(base, spec, conditional=setting == "label_guided", seed=seed, classifier=classifier,
                       real_pool=pool, select=select, mark=mark, space=_diffusion_space(space), progress=progress)
    params = spec.key() | {"classifier": model_fingerprint(classifier), "space": space.key()}
    if chain_seed is not None:
        params["chain_seed"] = seed
    if select_params:
        params["selection"] = select_params
    if mark_params:
        params["mark"] = mark_params
    if start is not None:
        params["start"] = start
    if not autoencoder_rms:
        params["autoencoder_rms"] = False
    run_dir = store.run_dir(setting, params, fingerprint, modules=source_modules())
    return chain.run_chain(step, x0, spec.n_generations, run_dir=run_dir, seed=seed,
                           metrics=generation_metrics(classifier, intended=setting != "unconditional",
                                                      space=space if autoencoder_rms else None),
                           desc=setting, progress=progress)


def generation0_model(spec: DiffusionModelSpec, real, *, progress: bool = True) -> tuple:
    """(the generation-0 model, its space) of a spec on the real set: trained once and cached (the space's
    autoencoder first, on the same real images), checked against the UNet's grid before any training."""
    check_unet_grid(spec, real.images.shape[1:])
    space = chain_space(spec, real, progress=progress)
    model = base_model(build(DiffusionModelSpec, spec), base_data(spec, real), real.n_classes, real.fingerprint,
                       space=space, progress=progress)
    return model, space


# "classifier": the chain's own classifier's embedding, written with every generation ("mnist" is its name on
# MNIST chains); "inception": FID Inception pool3, computed on demand and stored beside it
FEATURE_FILES = {"classifier": "features.npy", "mnist": "features.npy", "inception": "features_inception.npy"}


def cached_features(result: chain.ChainResult, *, network: str = "mnist", model=None,
                    progress: bool = False) -> list[np.ndarray]:
    """Every generation's features under `network` (see FEATURE_FILES), read from the generation folders or
    computed with `model` and stored there."""
    from . import features

    if network not in FEATURE_FILES:
        raise ValueError(f"unknown feature network {network!r}; valid: {', '.join(FEATURE_FILES)}")
    compute = features.inception_features if network == "inception" else features.embed
    out = []
    for g, state in enumerate(result.states):
        folder = None if result.run_dir is None else chain.gen_dir(result.run_dir, g)
        name = FEATURE_FILES[network]
        if folder is not None and (folder / name).exists():
            out.append(chain.load_extra(folder, name))  # checked against the generation's record
            continue
        if model is None:
            raise ValueError(f"generation {g} has no cached {network} features: pass the feature model")
        f = compute(model, state["images"])
        if folder is not None:
            chain.save_extra(folder, name, _npy_writer(f))
        out.append(f)
    return out


def _npy_writer(array: np.ndarray):
    def write(path):
        with open(path, "wb") as fh:
            np.save(fh, array)
    return write


def exemplar_rows(states: list[dict], *, rows: int = 10, by: str = "class", seed: int = 0) -> np.ndarray:
    """(rows, generations, H, W[,C]) images for an exemplar grid (the paper's Fig. 2).

    by="class": row r shows a random sample labelled r in each generation (blank if none);
    by="trajectory": row r follows the same sample index through every generation (latent feedback).
    """
    if by not in ("class", "trajectory"):
        raise ValueError(f"by must be 'class' or 'trajectory', got {by!r}")
    shape = states[0]["images"].shape[1:]
    out = np.full((rows, len(states)) + shape, 255, np.uint8)
    rng = np.random.default_rng(seed)
    if by == "trajectory":
        idx = rng.choice(len(states[0]["images"]), rows, replace=False)
        idx = idx[np.argsort(states[0]["labels"][idx], kind="stable")]
        for g, s in enumerate(states):
            out[:, g] = s["images"][idx]
        return out
    for g, s in enumerate(states):
        for r in range(rows):
            hits = np.flatnonzero(s["labels"] == r)
            if hits.size:
                out[r, g] = s["images"][rng.choice(hits)]
    return out


def summary_json(result: chain.ChainResult) -> dict:
    """Per-generation numbers for figures/<notebook>.json."""
    keys = sorted({k for m in result.metrics for k in m})
    return {k: [m.get(k) for m in result.metrics] for k in keys} | {"seconds": [round(s, 2) for s in result.seconds]}


def chains_numbers(results: dict, *, drift: dict, quality: dict, space) -> dict:
    """What 02 and 03 write of their chains into figures/<notebook>.json: the settings, N, the chain space, the
    generation-0 quality, the drift curves and phases, and each chain's per-generation numbers (summary_json)."""
    from .diagnostics import drift_numbers

    first = next(iter(results.values()))
    return {"settings": list(results), "samples_per_generation": len(first.states[0]["images"]),
            "space": space.key(), "generation0_quality": quality, "drift": drift_numbers(drift),
            **{s: summary_json(r) for s, r in results.items()}}


def chains_report(results: dict) -> str:
    """One line per chain: its generations, those computed in this run (the rest were read from the cache), and
    the seconds they took."""
    return "\n".join(f"{s:16s} generations 0-{len(r) - 1}: computed now {r.computed or 'none'}, "
                     f"{sum(r.seconds[g] for g in r.computed):.0f} s" for s, r in results.items())

