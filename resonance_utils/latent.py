"""Chain spaces (issue 15): a diffusion chain runs on pixels or on the latent grid of a fixed autoencoder.

A *space* turns uint8 images into the float tensors a UNet models and back:
  PixelSpace   encode = data.to_float (N,C,H,W) in [-1, 1]; decode = data.to_uint8. Exact; what space=None means.
  LatentSpace  a diffusers AutoencoderKL trained once on the real generation-0 data and then fixed (it plays the
               role the fixed feature network plays for FID): encode = the posterior mean, shifted and scaled to
               unit variance ((z - shift) * scale, both fitted once on the training latents); decode = the
               decoder of z / scale + shift, rounded to uint8. 28x28x1 -> 7x7x4 by default.
diffusion.train_diffusion / sample / feedback_step take `space=`: the UNet trains on space.encode(images), its
samples are space.decode(x), so the diffusion code does not know which space it runs in.

The latent UNet: diffusers' UNet2DModel halves the grid at every level but the last and doubles it back with a
nearest-neighbour x2, so an odd grid cannot have two levels (7 -> 4 -> 8 meets a 7x7 skip connection: measured,
a RuntimeError). A 7x7 latent therefore gets a one-level UNet (`latent_unet`, channel_mult (1,)): its ResNet
blocks' 3x3 convolutions (about ten in a row) see the whole 7x7 grid, so no down-sampling is needed for context.
Measured on this CPU (1 thread, batch 128, forward): the pixel UNet of the quick profile (0.26M parameters,
(1, 2, 2) x 16) ~490 img/s; the one-level latent UNet x 32 (0.16M) ~5,000 img/s, x 64 (0.63M) ~1,600 img/s; the
autoencoder (16, 32, 32) encodes ~2,800 img/s and decodes ~1,100 img/s, once per image and generation.

`generation0_quality` measures a generation-0 model against the issue's bars (label-guided samples classified as
their label, unguided samples confidently a digit, FID against held-out real digits over the real-against-real
floor at the same n), in the classifier's embedding.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import store
from .data import to_float, to_uint8
from .runtime import pick_device, torch_generator
from .specs import ConfigError, Spec, param

TRAIN_STREAM = 11  # the autoencoder's random stream (batches and posterior noise); diffusion uses 0 and 1
STATS_SIZE = 10_000  # training images encoded to fit the latent shift and scale (all of them when fewer)
RECONSTRUCTION_CHECK = 1000  # of those, encoded and decoded once more for the training reconstruction error
ENCODE_BATCH = 256  # encode/decode batch: measured on 2 CPU cores, larger batches gain nothing
CONFIDENT = 0.9  # an unguided sample is "confidently a digit" when the classifier's top probability is at least this
QUALITY_BARS = {"guided_accuracy": 0.98, "confident_share": 0.90, "fid_ratio": 3.0}  # issue 15's bars (MNIST)
# issue 15 sets ImageNet-5 one bar (at 64 px): the other measures are reported without a bar
IMAGENET_QUALITY_BARS = {"guided_accuracy": 0.90}
BAR_DIRECTIONS = {"guided_accuracy": "at least", "confident_share": "at least", "fid_ratio": "at most"}
LATENT_UNET = dict(base_channels=32, channel_mult=(1,), layers_per_block=1)  # see the module docstring
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


# ------------------------------------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class AutoencoderSpec(Spec):
    """The autoencoder of a latent chain space (diffusers AutoencoderKL): trained once on generation-0 data, cached.
    Fields are coerced and range-checked on construction (a ConfigError, a ValueError, names the field)."""
    seed: int = param(0, "seeds the autoencoder's initialisation, training batches and posterior noise")
    device: str = param("auto", "auto (cuda, mps, cpu) | cpu | cuda", key=False)
    latent_channels: int = param(4, "channels of the latent grid (28x28x1 -> 7x7xlatent_channels)", low=1)
    block_channels: tuple[int, ...] = param((16, 32, 32), "encoder widths per level (decoder mirrored); each level "
                                            "but the last halves the grid (28 -> 14 -> 7)", low=1)
    layers_per_block: int = param(1, "ResNet layers per encoder level (the decoder has one more)", low=1)
    norm_groups: int = param(8, "GroupNorm groups; must divide every width in block_channels", low=1)
    attention: bool = param(False, "self-attention in the encoder's and decoder's middle blocks (slow on a CPU)")
    train_steps: int = param(1500, "training steps", low=1)
    batch_size: int = param(64, "training batch size", low=1)
    lr: float = param(0.002, "AdamW peak learning rate (linear warm-up, cosine decay to lr/10)", low=0,
                      low_open=True)
    kl_weight: float = param(0.0001, "weight of the KL term (mean per latent element) beside the mean squared "
                             "reconstruction error on the [-1, 1] scale", low=0)

    def check(self) -> None:
        super().check()
        bad = [w for w in self.block_channels if w % self.norm_groups]
        if bad:
            raise ConfigError(f"parameter 'norm_groups' = {self.norm_groups} must divide every width in "
                              f"block_channels {self.block_channels} (not {bad})")

    def downsampling(self) -> int:
        """How many times smaller the latent grid is than the image: 2**(levels - 1)."""
        return 2 ** (len(self.block_channels) - 1)


def source_modules() -> tuple[str, ...]:
    """The package modules a cached autoencoder depends on: this module's import closure, computed."""
    return store.import_closure("latent")


# ------------------------------------------------------------------------------------------------------ spaces
@dataclass(frozen=True)
class PixelSpace:
    """Pixels as they are: encode = data.to_float, decode = data.to_uint8 (exact on uint8 images). diffusion's
    space=None runs this path; a PixelSpace passed explicitly gives bit-identical results."""
    kind = "pixel"
    clip_range = 1.0  # DDIM clips its predicted x0 to the data range [-1, 1]

    def encode(self, images) -> torch.Tensor:
        """uint8 (N,H,W[,C]) -> float32 (N,C,H,W) in [-1, 1] on the CPU."""
        return to_float(_check_uint8(images))

    def decode(self, x) -> np.ndarray:
        """float (N,C,H,W) in [-1, 1] -> uint8 (N,H,W), or (N,H,W,C) for colour."""
        return to_uint8(x)

    def reconstruction_error(self, images) -> float:
        """RMS of decode(encode(images)) - images on the 0-1 scale: 0 for uint8 images."""
        return _rms(images, self.decode(self.encode(images)))

    def key(self) -> dict:
        return {"space": "pixel"}

    def to(self, device):
        return self


class LatentSpace:
    """A fixed AutoencoderKL as a chain space. z = (posterior mean - shift) * scale, with shift and scale
    (vae.config.shift_factor, scaling_factor) fitted once on the training latents so that z has mean 0 and
    variance 1; decoding inverts the affine map and rounds to uint8.

    clip_range: DDIM clips its predicted z0 to [-clip_range, clip_range] (the largest |z| of the training latents:
    the analogue of the pixel range [-1, 1]); None = no clipping.
    fingerprint: names the autoencoder in run keys (its cache folder's key, or a hash of its weights)."""
    kind = "latent"

    def __init__(self, vae, *, clip_range: float | None = None, fingerprint: str | None = None,
                 device: str = "auto", batch_size: int = ENCODE_BATCH):
        self.vae = vae.to(pick_device(device) if isinstance(device, str) else device).eval()
        self.vae.requires_grad_(False)
        self.clip_range = None if clip_range is None else float(clip_range)
        self.batch_size = int(batch_size)
        self._fingerprint = fingerprint
        c = vae.config
        self.channels, self.resolution = int(c.in_channels), int(c.sample_size)
        self.factor = 2 ** (len(c.block_out_channels) - 1)
        self.latent_shape = (int(c.latent_channels), self.resolution // self.factor, self.resolution // self.factor)

    @property
    def scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def image_shape(self) -> tuple[int, ...]:
        r = self.resolution
        return (r, r) if self.channels == 1 else (r, r, self.channels)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from .features import model_fingerprint
            self._fingerprint = model_fingerprint(self.vae)
        return self._fingerprint

    def key(self) -> dict:
        """What enters a chain's run key: the space and the autoencoder (its weights and latent scaling)."""
        return {"space": "latent", "autoencoder": self.fingerprint, "scale": self.scale, "shift": self.shift,
                "clip_range": self.clip_range}

    def to(self, device):
        self.vae.to(pick_device(device) if isinstance(device, str) else device)
        return self

    def _check(self, images) -> np.ndarray:
        x = _check_uint8(images)
        shape = x.shape[1:-1] if (x.ndim == 4 and self.channels == 1 and x.shape[-1] == 1) else x.shape[1:]
        if tuple(shape) != self.image_shape or len(x) == 0:
            raise ValueError(f"this autoencoder takes images of shape (N,{','.join(map(str, self.image_shape))}) "
                             f"with N >= 1, got {x.shape}")
        return x

    @torch.inference_mode()
    def encode(self, images) -> torch.Tensor:
        """uint8 images (N,H,W[,C]) -> float32 latents (N,C,h,w) on the CPU: the posterior mean, shifted and
        scaled (batched, no gradients)."""
        x = to_float(self._check(images))
        dev = self.device
        out = [((self.vae.encode(x[i:i + self.batch_size].to(dev)).latent_dist.mean - self.shift) * self.scale)
               .float().cpu() for i in range(0, len(x), self.batch_size)]
        return torch.cat(out)

    @torch.inference_mode()
    def decode(self, latents) -> np.ndarray:
        """float latents (N,C,h,w) (torch on any device, or numpy) -> uint8 images (N,H,W[,C])."""
        z = torch.as_tensor(latents).detach().float()
        if z.ndim != 4 or tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"latents must have shape (N,{','.join(map(str, self.latent_shape))}), got "
                             f"{tuple(z.shape)}")
        dev = self.device
        out = [to_uint8(self.vae.decode(z[i:i + self.batch_size].to(dev) / self.scale + self.shift).sample)
               for i in range(0, len(z), self.batch_size)]
        return np.concatenate(out)

    def reconstruction_error(self, images) -> float:
        """RMS of decode(encode(images)) - images on the 0-1 scale: the error one pass through the autoencoder
        adds (shown beside a chain's drift)."""
        x = self._check(images)
        return _rms(x, self.decode(self.encode(x)))


def _check_uint8(images) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (N,H,W[,C]), got {x.dtype}; use data.to_uint8 first")
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (N,H,W) or (N,H,W,C), got shape {x.shape}")
    return x


def _rms(a, b) -> float:
    a = np.asarray(a, np.float64).reshape(len(a), -1) / 255.0
    b = np.asarray(b, np.float64).reshape(len(b), -1) / 255.0
    return float(np.sqrt(np.mean((a - b) ** 2)))


# ---------------------------------------------------------------------------------------------- the autoencoder
def make_autoencoder(spec: AutoencoderSpec, *, channels: int = 1, resolution: int = 28):
    """An untrained diffusers AutoencoderKL of `spec`, seeded (the caller's global RNG is left alone)."""
    from diffusers import AutoencoderKL

    if resolution % spec.downsampling():
        raise ValueError(f"resolution {resolution} must be divisible by 2**(len(block_channels)-1) = "
                         f"{spec.downsampling()} for {len(spec.block_channels)} levels")
    levels = len(spec.block_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return AutoencoderKL(
            in_channels=channels, out_channels=channels, down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(spec.block_channels),
            layers_per_block=spec.layers_per_block, latent_channels=spec.latent_channels,
            norm_num_groups=spec.norm_groups, sample_size=resolution, scaling_factor=1.0, shift_factor=0.0,
            mid_block_add_attention=spec.attention,
        )


def train_autoencoder(images, spec: AutoencoderSpec | None = None, *, progress: bool = True
                      ) -> tuple[LatentSpace, dict]:
    """Train an AutoencoderKL on uint8 images: mean squared reconstruction error (on the [-1, 1] scale) of a
    posterior sample + kl_weight x KL(posterior || N(0, I)) per latent element, AdamW with linear warm-up and
    cosine decay to lr/10. Every random number comes from runtime.torch_generator(spec.seed, 0, TRAIN_STREAM) on
    the CPU, so on the CPU the result is deterministic. Then the latent shift and scale are fitted on the posterior
    means of (up to STATS_SIZE of) the training images and stored in the model's config.

    Returns (the LatentSpace, a record: seconds, losses, shift, scale, clip_range, training reconstruction RMS)."""
    spec = spec or AutoencoderSpec()
    x = _check_uint8(images)
    if len(x) < 2:
        raise ValueError(f"train_autoencoder needs at least 2 images, got {len(x)}")
    x_all = to_float(x)
    n, c, h, w = x_all.shape
    if h != w:
        raise ValueError(f"square images only, got {h}x{w}")
    device = pick_device(spec.device)
    vae = make_autoencoder(spec, channels=c, resolution=h).to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=spec.lr, weight_decay=0.0)
    steps = spec.train_steps
    warm = max(1, min(100, steps // 10))
    lr_at = lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch_generator(spec.seed, 0, TRAIN_STREAM)
    rec_losses, kls = np.zeros(steps), np.zeros(steps)
    order = torch.empty(0, dtype=torch.long)
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc="autoencoder training", disable=not progress)
    for step in bar:
        if len(order) < spec.batch_size:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:spec.batch_size], order[spec.batch_size:]
        xb = x_all[idx].to(device)
        post = vae.encode(xb).latent_dist
        eps = torch.randn(post.mean.shape, generator=gen).to(device)
        rec = vae.decode(post.mean + post.std * eps).sample
        loss_rec = F.mse_loss(rec, xb)
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = loss_rec + spec.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        rec_losses[step], kls[step] = loss_rec.item(), kl.item()
        if progress and (step % 50 == 0 or step == steps - 1):
            bar.set_postfix(rec=f"{rec_losses[max(0, step - 49):step + 1].mean():.4f}")
    train_s = time.perf_counter() - t0
    vae.eval()

    # the latent scaling: mean 0 and variance 1 over the posterior means of the training images
    stats_idx = (np.arange(n) if n <= STATS_SIZE else
                 np.sort(np.random.default_rng([spec.seed, 15]).choice(n, STATS_SIZE, replace=False)))
    space = LatentSpace(vae, clip_range=None, device=device)
    z = space.encode(x[stats_idx]).double()  # scale 1, shift 0 so far: the raw posterior means
    shift, std = float(z.mean()), float(z.std())
    if not std > 0:
        raise RuntimeError("the autoencoder's latents have zero variance: training failed")
    vae.register_to_config(scaling_factor=1.0 / std, shift_factor=shift)
    clip = float(((z - shift) / std).abs().max())
    space = LatentSpace(vae, clip_range=clip, device=device)
    info = {"seconds": round(train_s, 1), "steps": steps, "n_train": int(n),
            "rec_loss_first_100": float(rec_losses[:100].mean()), "rec_loss_last_100": float(rec_losses[-100:].mean()),
            "kl_last_100": float(kls[-100:].mean()), "shift": shift, "scale": 1.0 / std, "clip_range": clip,
            "train_reconstruction_rms": space.reconstruction_error(x[stats_idx[:RECONSTRUCTION_CHECK]])}
    return space, info


def autoencoder(spec: AutoencoderSpec, images, fingerprint: str, *, progress: bool = True) -> LatentSpace:
    """The latent space of `spec` trained on `images` (uint8, the real generation-0 data), trained once and cached
    in data/models/autoencoder/<key>/ (save_pretrained, then training.json, written last: a folder without it is
    incomplete). The key is the spec (less the device), the images' count and shape, `fingerprint` (of exactly
    these images, e.g. ImageSet.fingerprint) and the source of this module's imports. A second process waits for
    the first's lock, then reads what it saved."""
    x = _check_uint8(images)
    params = spec.key() | {"n_images": int(len(x)), "image_shape": list(x.shape[1:])}
    key = store.run_key(params, fingerprint, store.package_source_hash(source_modules()))
    folder = store.data_dir() / "models" / "autoencoder" / key
    def train():
        space, info = train_autoencoder(x, spec, progress=progress)
        save_space(space, folder)
        store.write_json(folder / "training.json", {"params": params, "data_fingerprint": fingerprint, **info})
        space._fingerprint = key
        return space
    return store.train_once(folder, what=f"the autoencoder {folder.name}", train=train,
                            load=lambda f: load_space(f, device=spec.device))


def save_space(space: LatentSpace, folder: str | Path) -> Path:
    """The autoencoder by save_pretrained (config.json with the latent scaling, safetensors), written to a
    temporary folder and renamed; the clip range goes into training.json (autoencoder() writes it)."""
    folder = Path(folder)
    with store.atomic_path(folder) as tmp:
        space.vae.save_pretrained(str(tmp), safe_serialization=True)
    return folder


def load_space(folder: str | Path, *, device: str = "auto") -> LatentSpace:
    """The LatentSpace cached in `folder` by autoencoder(); a missing or unreadable folder says which."""
    from diffusers import AutoencoderKL

    folder = Path(folder)
    for f in (folder / "config.json", folder / WEIGHTS_FILE, folder / "training.json"):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: {folder} is not an autoencoder saved by latent.autoencoder")
    try:
        info = store.read_json(folder / "training.json")
        vae = AutoencoderKL.from_pretrained(str(folder), use_safetensors=True, low_cpu_mem_usage=False)
    except Exception as e:  # bad JSON, truncated safetensors, shape mismatch: an unusable folder either way
        raise store.CacheError(f"{folder} holds no readable autoencoder ({type(e).__name__}: {e}); delete it and "
                               "train it again") from e
    return LatentSpace(vae, clip_range=info.get("clip_range"), fingerprint=folder.name, device=device)


def latent_unet(space: LatentSpace, *, num_classes: int | None = None, base_channels: int = 32,
                layers_per_block: int = 1, attention: bool = False, seed: int = 0, **kwargs):
    """A UNet on `space`'s latent grid: one level (channel_mult (1,)) when the grid is odd (7x7), as
    diffusers' UNet2DModel cannot run two levels there (see the module docstring); kwargs go to make_unet."""
    from .diffusion import make_unet

    c, h, _ = space.latent_shape
    kwargs.setdefault("channel_mult", LATENT_UNET["channel_mult"] if h % 2 else (1, 2))
    return make_unet(resolution=h, channels=c, base_channels=base_channels, layers_per_block=layers_per_block,
                     num_classes=num_classes, attention=attention, seed=seed, **kwargs)


# ------------------------------------------------------------------------------------------ generation-0 quality
def generation0_quality(model, classifier, real_test, *, space=None, n: int = 1000, guidance_scale: float = 3.0,
                        ddim_steps: int = 10, seed: int = 0, device: str = "auto", progress: bool = False,
                        return_samples: bool = False, bars: dict | None = None,
                        feature_network: str | None = None) -> dict:
    """How good a generation-0 model is, by the classifier (features.classify / features.embed), at n samples:

    guided_accuracy   share of label-guided samples (labels 0..k-1 in turn, guidance_scale) classified as their
                      label (conditional models; None otherwise)
    confident_share   share of unguided samples (the null label, no guidance) whose top probability >= CONFIDENT
    fid               FID (metrics.fid, in the classifier's embedding, at n) of the generation-0 samples (the
                      guided ones for a conditional model, else the unguided) against n held-out real images
    fid_floor         FID of two disjoint sets of n real images (the same n: FID's bias is ~dim/n)
    fid_ratio         fid / fid_floor; also fid_unguided, the unguided samples' FID
    passes            each of `bars` (default QUALITY_BARS; kept in the result as "bars") met or not (None where a
                      measure does not apply); seconds
    real_test: an ImageSet (or uint8 array) of held-out real images, at least 2n of them. The guided samples use
    noise stream (seed, generation 0), the unguided (seed, generation 1). feature_network: the classifier's name in
    the result (default: its class name)."""
    from . import diffusion, features, metrics

    real = np.asarray(real_test.images if hasattr(real_test, "images") else real_test)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if len(real) < 2 * n:
        raise ValueError(f"real_test has {len(real)} images; the FID and its floor need 2n = {2 * n}")
    bars = dict(QUALITY_BARS if bars is None else bars)
    unknown = set(bars) - set(BAR_DIRECTIONS)
    if unknown:  # checked before anything is sampled
        raise ValueError(f"unknown quality bars {sorted(unknown)}; valid: {', '.join(BAR_DIRECTIONS)}")
    t0 = time.perf_counter()
    perm = np.random.default_rng([seed, 16]).permutation(len(real))
    f_ref, f_other = features.embed(classifier, real[perm[:n]]), features.embed(classifier, real[perm[n:2 * n]])
    name = feature_network or type(classifier).__name__
    fid = lambda f: metrics.fid(f, f_ref, n=n, feature_network=name).value
    floor = fid(f_other)
    k = diffusion.num_classes(model)
    kw = dict(ddim_steps=ddim_steps, seed=seed, device=device, progress=progress, space=space)
    out = {"n": n, "guidance_scale": guidance_scale, "ddim_steps": ddim_steps,
           "space": (space or PixelSpace()).key(), "feature_network": name}
    samples = {}
    if k is not None:
        labels = np.arange(n) % k
        samples["guided"] = diffusion.sample(model, n, labels=labels, guidance_scale=guidance_scale, generation=0,
                                             **kw)
        out["guided_accuracy"] = float((features.classify(classifier, samples["guided"]).argmax(1) == labels).mean())
        out["fid_guided"] = fid(features.embed(classifier, samples["guided"]))
    else:
        out["guided_accuracy"] = out["fid_guided"] = None
    samples["unguided"] = diffusion.sample(model, n, labels=None, guidance_scale=1.0, generation=1, **kw)
    probs = features.classify(classifier, samples["unguided"])
    out["confident_share"] = float((probs.max(1) >= CONFIDENT).mean())
    out["fid_unguided"] = fid(features.embed(classifier, samples["unguided"]))
    out["fid"] = out["fid_guided"] if k is not None else out["fid_unguided"]
    out["fid_floor"] = floor
    out["fid_ratio"] = out["fid"] / floor if floor > 0 else float("inf")
    out["bars"] = bars
    out["passes"] = {name: None if out[name] is None else
                     bool(out[name] >= bar if BAR_DIRECTIONS[name] == "at least" else out[name] <= bar)
                     for name, bar in bars.items()}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if return_samples:
        out["samples"] = samples
    return out


def quality_table(quality: dict):
    """generation0_quality's result as a table: measure, value, bar, met."""
    import pandas as pd

    return pd.DataFrame([{"measure": k, "value": quality[k], "bar": bar, "met": quality["passes"][k]}
                         for k, bar in quality["bars"].items()])
