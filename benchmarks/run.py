"""How fast the project's paths are, measured beside plain baselines in the same run (issue #7).

    python -m benchmarks.run [--device cpu|cuda|auto] [--quick] [--readme]
    python -m benchmarks.run --runtimes-readme     (only README's table of measured run times; no benchmark)
    python -m benchmarks.run --parts latent        (issue 15: a latent-space generation at 2N beside the pixel one at N)
    python benchmarks/run.py ...

For the MNIST diffusion UNet (the configuration of params/02_mnist_chains: quick.yaml on the CPU, paper.yaml on a
GPU) and for the CycleGAN it measures training images/s, sampling images/s (CycleGAN: translation), the feature
networks' images/s (our MNIST classifier's embedding, the FID Inception) and the wall time of one whole generation
(MNIST: fine-tune finetune_steps and sample N, as image_chains.Retrain does; CycleGAN: one x -> F(G(x)) pass over
N images), each for

- the project's path: diffusion.train_diffusion / diffusion.sample with their settings (on CUDA: channels_last,
  bf16 autocast, fused AdamW, no host-device sync in the loop; few DDIM steps), cyclegan.train_cyclegan /
  translate / cycle_map, features.mnist_features / inception_features on uint8 arrays;
- a plain baseline written here, the way diffusers' train_unconditional example and the official CycleGAN and
  pytorch-fid scripts do it: fp32, default memory format, torch.optim.AdamW (Adam for the CycleGAN) with its
  defaults, a DataLoader, loss.item() every step, sampling with DDPMScheduler's 1000 steps in a plain denoising
  loop, CycleGAN inference one image at a time (the official test.py), FID features from PNG files.

The CPU is always measured; a GPU too when there is one (--device auto, the default). Each measurement is taken
after a short warm-up on the same device, and on CUDA between synchronisations; training and the classifier's
features are timed `repeats` times (3 at full scale) in turns with their baseline and the medians reported. The baseline's 1000-step sampling
is measured on a few images; its whole generation is then estimated from its measured rates (marked "estimated").

Writes benchmarks/results.json (machine, versions, every measurement: n, seconds, images/s, speed-up) and
benchmarks/results.md (a Markdown table); --readme puts that table into README.md between the markers
<!-- benchmarks:start --> and <!-- benchmarks:end -->, and changes nothing else there.

The run times of ./run_all.sh are not measured here: every finished run of the driver writes
build/<profile>/last_run.json (resonance_utils.run_notebooks.write_run_times), and --runtimes-readme turns those
records into the table between <!-- runtimes:start --> and <!-- runtimes:end --> in README.md (one row per profile
whose last finished run was of every notebook), without running any benchmark; --readme leaves that block alone.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/run.py` puts benchmarks/, not the checkout, on the path
    sys.path.insert(0, str(ROOT))

START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
RT_START, RT_END = "<!-- runtimes:start -->", "<!-- runtimes:end -->"
OUT_DIR = Path(__file__).resolve().parent

# Sizes per scale and device kind. full: what the README reports (CPU about 10 minutes on 2 cores, a GPU a few
# minutes); quick: a couple of minutes on a CPU, to try the script; tiny: seconds, for the tests (numbers
# meaningless: a toy UNet and CycleGAN, random images, a 20-step baseline sampler).
SIZES = {
    ("full", "cpu"): dict(profile="quick", warm_steps=3, train_steps=50, sample_n=256, base_sample_n=4,
                          ddpm_steps=1000, gen_n=None, gen_steps=None, mnist_feat_n=20000, inception_n=32,
                          cg_train_steps=30, cg_translate_n=1000, cg_base_translate_n=200, cg_gen_n=500, repeats=3),
    ("full", "cuda"): dict(profile="paper", warm_steps=20, train_steps=300, sample_n=5000, base_sample_n=64,
                           ddpm_steps=1000, gen_n=None, gen_steps=None, mnist_feat_n=50000, inception_n=1000,
                           cg_train_steps=300, cg_translate_n=10000, cg_base_translate_n=500, cg_gen_n=5000, repeats=3),
    ("quick", "cpu"): dict(profile="quick", warm_steps=2, train_steps=10, sample_n=32, base_sample_n=1,
                           ddpm_steps=1000, gen_n=64, gen_steps=10, mnist_feat_n=1000, inception_n=4,
                           cg_train_steps=5, cg_translate_n=200, cg_base_translate_n=50, cg_gen_n=100, repeats=1),
    ("quick", "cuda"): dict(profile="paper", warm_steps=10, train_steps=50, sample_n=1024, base_sample_n=16,
                            ddpm_steps=1000, gen_n=1024, gen_steps=200, mnist_feat_n=10000, inception_n=200,
                            cg_train_steps=50, cg_translate_n=2000, cg_base_translate_n=200, cg_gen_n=2000, repeats=1),
    ("tiny", "cpu"): dict(profile="quick", warm_steps=1, train_steps=2, sample_n=4, base_sample_n=1,
                          ddpm_steps=20, gen_n=4, gen_steps=2, mnist_feat_n=20, inception_n=1,
                          cg_train_steps=1, cg_translate_n=4, cg_base_translate_n=2, cg_gen_n=4, repeats=1),
}
SIZES[("tiny", "cuda")] = SIZES[("tiny", "cpu")]
TINY_UNET = dict(base_channels=8, channel_mult=(1, 2), layers_per_block=1, attention=False)
TINY_CYCLEGAN = dict(ngf=4, n_blocks=1, ndf=4, n_layers=1)
CYCLEGAN_BATCH = 8  # the CycleGAN's training batch when no profile says (cyclegan.train_cyclegan's default)


# ------------------------------------------------------------------------------------------------------ timing
def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device):
    """(fn(), seconds), the clock stopped only once the device has finished the work."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def paired(project, baseline, device, repeats: int) -> tuple[float, float]:
    """(project seconds, baseline seconds): the medians of `repeats` timings of each, taken in turns (project,
    baseline, project, ...), so that a drift in the machine's speed (clock boost, a busy neighbour) falls on both
    alike. Measured on 2 CPU cores: one pair in a fixed order can be 15% off either way."""
    p, b = [], []
    for _ in range(max(1, repeats)):
        p.append(timed(project, device)[1])
        b.append(timed(baseline, device)[1])
    return float(np.median(p)), float(np.median(b))


def rate(n: int, seconds: float, **settings) -> dict:
    return {"n": int(n), "seconds": round(float(seconds), 4), "images_per_s": round(n / max(seconds, 1e-9), 3),
            "settings": settings}


def estimate(seconds: float, n: int, **settings) -> dict:
    return {**rate(n, seconds, **settings), "estimated": True}


# ---------------------------------------------------------------------------------------------------- the data
def mnist_data(n: int, *, synthetic: bool, seed: int = 0):
    """(uint8 images (n,28,28), labels): real MNIST test digits, or random ones (tiny scale: speed only)."""
    if not synthetic:
        try:
            from resonance_utils.data import load_mnist

            test = load_mnist("test")
            reps = -(-n // len(test.images))
            return np.tile(test.images, (reps, 1, 1))[:n], np.tile(test.labels, reps)[:n].astype(np.int64)
        except Exception as e:  # noqa: BLE001 - the speed does not depend on the digits
            print(f"  (MNIST not readable: {type(e).__name__}: {e}; random images instead)")
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


# The pixel-space MNIST UNet and N of the quick profile before issue 15 made latent space its default: the pixel
# parts measure this model when a profile runs its chains in a latent space, and bench_latent compares against it.
PIXEL_UNET = dict(base_channels=16, channel_mult=(1, 2, 2), layers_per_block=1, attention=False)
PIXEL_N = 500
PIXEL_GENERATION = dict(batch_size=64, steps=100, guidance_scale=3.0)  # that chain's fine-tuning and guidance


def unet_config(profile: str, tiny: bool) -> dict:
    """The MNIST chains' settings of a profile (02_mnist_chains' parameters): "unet" is the pixel UNet (the
    profile's own when it runs in pixels, else PIXEL_UNET), "latent_unet" the profile's UNet on the latent grid."""
    from resonance_utils import config
    from resonance_utils.specs import DiffusionChainSpec, build

    cfg = config.load_config("02_mnist_chains", profile)
    own = dict(base_channels=cfg.base_channels, layers_per_block=cfg.layers_per_block, attention=cfg.attention,
               channel_mult=cfg.channel_mult)
    unet = own if cfg.space == "pixel" else dict(PIXEL_UNET)
    if tiny:
        unet = own = dict(TINY_UNET)
    keys = ("batch_size", "lr", "ema_decay", "cond_drop_prob", "ddim_steps", "guidance_scale", "finetune_steps",
            "samples_per_generation", "space")
    return {"profile": profile, "unet": unet, "latent_unet": own | ({"channel_mult": (1,)} if tiny else {}),
            "autoencoder": build(DiffusionChainSpec, cfg).autoencoder_spec(), **{k: cfg[k] for k in keys}}


# ----------------------------------------------------------------------------------- MNIST diffusion: baseline
def baseline_train_unet(model, images, labels, *, steps, batch_size, lr, ema_decay, cond_drop_prob, seed, device):
    """diffusers' train_unconditional example, class-conditional: fp32, default memory format, AdamW defaults,
    a shuffling DataLoader, DDPMScheduler(1000).add_noise, gradient clipping, EMAModel, loss.item() per step."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = model.to(device).train()
    null = model.config.num_class_embeds - 1
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    lr_sched = get_scheduler("cosine", optimizer=opt, num_warmup_steps=max(1, steps // 10),
                             num_training_steps=steps)
    ema = EMAModel(model.parameters(), decay=ema_decay) if ema_decay else None
    x = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)
    loader = DataLoader(TensorDataset(x, torch.from_numpy(labels)), batch_size=batch_size, shuffle=True,
                        drop_last=True)
    losses, step = [], 0
    while step < steps:
        for x0, y in loader:
            x0, y = x0.to(device), y.to(device)
            y = torch.where(torch.rand(len(y), device=device) < cond_drop_prob, null, y)
            noise = torch.randn_like(x0)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), device=device)
            pred = model(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample
            loss = F.mse_loss(pred, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            lr_sched.step()
            opt.zero_grad()
            if ema is not None:
                ema.step(model.parameters())
            losses.append(loss.detach().item())
            step += 1
            if step >= steps:
                break
    return model.eval(), np.array(losses)


def baseline_sample_unet(model, n, *, guidance_scale, steps, batch_size, seed, device):
    """A plain DDPM denoising loop (DDPMPipeline's) over DDPMScheduler's `steps` timesteps, with classifier-free
    guidance as the project samples; fp32, default memory format."""
    import torch
    from diffusers import DDPMScheduler

    from resonance_utils.data import to_uint8

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    null = model.config.num_class_embeds - 1
    model = model.to(device).eval()
    out = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            y = (torch.arange(i, i + b) % 10).to(device)
            x = torch.randn((b, 1, 28, 28), generator=gen).to(device)
            for t in scheduler.timesteps:
                eps = model(torch.cat([x, x]), t, class_labels=torch.cat([y, torch.full_like(y, null)])).sample
                eps_label, eps_null = eps.chunk(2)
                x = scheduler.step(eps_null + guidance_scale * (eps_label - eps_null), t, x,
                                   generator=gen).prev_sample
            out.append(to_uint8(x.cpu()))
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------- MNIST diffusion
def bench_mnist_unet(device: str, sz: dict, tiny: bool, seed: int = 0) -> list[dict]:
    from resonance_utils import diffusion

    cfg = unet_config(sz["profile"], tiny)
    batch, lr, ema = cfg["batch_size"], cfg["lr"], cfg["ema_decay"] or None
    if tiny:
        batch = 8
    gen_n, gen_steps = sz["gen_n"] or cfg["samples_per_generation"], sz["gen_steps"] or cfg["finetune_steps"]
    images, labels = mnist_data(max(batch * (sz["train_steps"] + 1), gen_n), synthetic=tiny, seed=seed)
    base = diffusion.make_unet(num_classes=10, seed=seed, **cfg["unet"])
    n_params = sum(p.numel() for p in base.parameters())
    common = dict(model=f"MNIST UNet ({n_params / 1e6:.2f}M parameters, {cfg['profile']}.yaml)", device=device)
    train_kw = dict(batch_size=batch, lr=lr, ema_decay=ema, cond_drop_prob=cfg["cond_drop_prob"], seed=seed,
                    device=device)
    rows = []

    # training: a warm-up call, then the measured one, each on a fresh copy (the speed does not depend on weights)
    diffusion.train_diffusion(copy.deepcopy(base), images, labels, steps=sz["warm_steps"], progress=False, **train_kw)
    steps = sz["train_steps"]
    baseline_train_unet(copy.deepcopy(base), images, labels, steps=sz["warm_steps"], **train_kw)
    s, bs = paired(lambda: diffusion.train_diffusion(copy.deepcopy(base), images, labels, steps=steps,
                                                     progress=False, **train_kw),
                   lambda: baseline_train_unet(copy.deepcopy(base), images, labels, steps=steps, **train_kw),
                   device, sz["repeats"])
    project = rate(steps * batch, s, steps=steps, batch_size=batch, ema=ema is not None, repeats=sz["repeats"],
                   path="diffusion.train_diffusion")
    baseline = rate(steps * batch, bs, steps=steps, batch_size=batch, ema=ema is not None, repeats=sz["repeats"],
                    path="diffusers train_unconditional-style loop, fp32, AdamW defaults")
    rows.append(dict(common, what="training", project=project, baseline=baseline))

    # sampling: DDIM with the profile's steps and guidance, against 1000-step DDPM on a few images
    w, ddim = cfg["guidance_scale"], cfg["ddim_steps"]
    if tiny:
        ddim = 2
    trained = copy.deepcopy(base)
    diffusion.sample(trained, min(4, sz["sample_n"]), labels=0, guidance_scale=w, ddim_steps=ddim, seed=seed,
                     device=device, progress=False)
    n = sz["sample_n"]
    _, s = timed(lambda: diffusion.sample(trained, n, labels=np.arange(n) % 10, guidance_scale=w, ddim_steps=ddim,
                                          seed=seed, device=device, progress=False), device)
    project = rate(n, s, denoising_steps=ddim, guidance_scale=w, path="diffusion.sample (DDIM)")
    bn = sz["base_sample_n"]
    base_kw = dict(guidance_scale=w, steps=sz["ddpm_steps"], batch_size=bn, seed=seed, device=device)
    baseline_sample_unet(trained, 1, **{**base_kw, "steps": 2})  # warm-up
    _, bs = timed(lambda: baseline_sample_unet(trained, bn, **base_kw), device)
    baseline = rate(bn, bs, denoising_steps=sz["ddpm_steps"], guidance_scale=w,
                    path="plain DDPMScheduler loop (fp32)")
    rows.append(dict(common, what="sampling", project=project, baseline=baseline,
                     notes=f"DDIM {ddim} steps vs DDPM {sz['ddpm_steps']} steps"))

    # one generation as image_chains.Retrain makes it: fine-tune gen_steps on the previous data, sample gen_n
    def generation():
        model, _ = diffusion.train_diffusion(copy.deepcopy(trained), images[:gen_n], labels[:gen_n], steps=gen_steps,
                                             progress=False, **train_kw)
        return diffusion.sample(model, gen_n, labels=np.arange(gen_n) % 10, guidance_scale=w, ddim_steps=ddim,
                                seed=seed, generation=1, device=device, progress=False)

    _, s = timed(generation, device)
    project = rate(gen_n, s, finetune_steps=gen_steps, samples=gen_n, path="train_diffusion + sample")
    b_train = rows[0]["baseline"]["seconds"] / steps * gen_steps
    b_sample = gen_n / rows[1]["baseline"]["images_per_s"]
    baseline = estimate(b_train + b_sample, gen_n, finetune_steps=gen_steps, samples=gen_n,
                        from_measured=f"{b_train:.1f} s training + {b_sample:.1f} s sampling")
    rows.append(dict(common, what="one generation", project=project, baseline=baseline,
                     notes=f"fine-tune {gen_steps} steps + sample {gen_n}; baseline estimated from its rates"))
    return rows


# ------------------------------------------------------------------------------------------------ feature nets
def bench_features(device: str, sz: dict, tiny: bool, seed: int = 0) -> list[dict]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from resonance_utils import features
    from resonance_utils.data import to_float

    rows = []
    # our MNIST classifier's embedding; untrained weights when none is cached (the speed is the same)
    try:
        clf = features.load_mnist_classifier(train_if_missing=False, device=device, progress=False)
        weights = "cached"
    except FileNotFoundError:
        clf = features.MnistClassifier().to(device).eval()
        weights = "untrained (no cached classifier; same speed)"
    n = sz["mnist_feat_n"]
    images, _ = mnist_data(n, synthetic=tiny, seed=seed)

    def plain():
        out = []
        with torch.no_grad():
            for (x,) in DataLoader(TensorDataset(to_float(images)), batch_size=64):
                out.append(clf.embed(x.to(device)).cpu())
        return torch.cat(out).numpy()

    features.mnist_features(clf, images[:16])
    plain()
    s, bs = paired(lambda: features.mnist_features(clf, images), plain, device, sz["repeats"])
    project = rate(n, s, batch_size=features.FEATURE_BATCH, repeats=sz["repeats"], path="features.mnist_features",
                   weights=weights)
    baseline = rate(n, bs, batch_size=64, repeats=sz["repeats"], path="plain DataLoader loop (fp32, no_grad)")
    rows.append(dict(model="MNIST classifier features (128-d)", device=device, what="feature extraction",
                     project=project, baseline=baseline))

    # the FID Inception (pytorch-fid's network; weights converted offline)
    inc = features.load_fid_inception(device=device)
    n = sz["inception_n"]
    small, _ = mnist_data(n, synthetic=tiny, seed=seed + 1)
    features.inception_features(inc, small[:1])
    _, s = timed(lambda: features.inception_features(inc, small), device)
    project = rate(n, s, batch_size=50, path="features.inception_features (uint8 arrays)")
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image
        from pytorch_fid import fid_score

        files = []
        for i, im in enumerate(small):
            files.append(str(Path(tmp) / f"{i:05d}.png"))
            Image.fromarray(im).save(files[-1])
        with _quiet_tqdm(fid_score):
            fid_score.get_activations(files[:1], inc, batch_size=1, device=device, num_workers=0)
            _, bs = timed(lambda: fid_score.get_activations(files, inc, batch_size=min(50, n), device=device,
                                                            num_workers=0), device)
    baseline = rate(n, bs, batch_size=50, path="pytorch-fid get_activations on PNG files")
    rows.append(dict(model="FID Inception (pool3, 2048-d)", device=device, what="feature extraction",
                     project=project, baseline=baseline, notes="299x299 bilinear resize inside the network"))
    return rows


@contextlib.contextmanager
def _quiet_tqdm(module):
    """pytorch-fid draws a progress bar for every call; not in a benchmark's output."""
    saved = module.tqdm
    module.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        module.tqdm = saved


# ------------------------------------------------------------------------------------------------------ CycleGAN
def cyclegan_module():
    """resonance_utils.cyclegan with the API this benchmark uses, or None (and why)."""
    try:
        from resonance_utils import cyclegan
    except ImportError as e:
        return None, f"resonance_utils.cyclegan is not importable ({e})"
    missing = [f for f in ("make_cyclegan", "train_cyclegan", "cycle_map", "translate") if not hasattr(cyclegan, f)]
    if missing:
        return None, f"resonance_utils.cyclegan lacks {', '.join(missing)}"
    return cyclegan, ""


def cyclegan_config(profile: str, tiny: bool) -> tuple[dict, int]:
    """(make_cyclegan's settings, training batch size) from the CycleGAN notebook's profile
    (params/04_*/<profile>.yaml) where it exists, else make_cyclegan's and train_cyclegan's defaults."""
    if tiny:
        return dict(TINY_CYCLEGAN), 2
    from resonance_utils import config

    keys = ("ngf", "n_blocks", "ndf", "n_layers")
    for stem in sorted(p.name for p in config.params_dir().glob("04_*")):
        try:
            values = config.profile_values(stem, profile)
        except config.ConfigError:
            continue
        return {k: values[k] for k in keys if k in values}, int(values.get("batch_size", CYCLEGAN_BATCH))
    return {}, CYCLEGAN_BATCH


def baseline_train_cyclegan(model, a, b, *, steps, batch_size, lr, seed, device):
    """The official CycleGAN step in fp32 without its extras: LSGAN + cycle (x10) + identity (x5) losses, one Adam
    step for the generators and one for the discriminators per batch, default memory format, no history pool,
    no autocast, loss.item() every step."""
    import itertools

    import torch
    import torch.nn.functional as F

    from resonance_utils.data import to_float

    torch.manual_seed(seed)
    model = model.to(device).train()
    opt_g = torch.optim.Adam(itertools.chain(model.G_AB.parameters(), model.G_BA.parameters()), lr=lr,
                             betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(itertools.chain(model.D_A.parameters(), model.D_B.parameters()), lr=lr,
                             betas=(0.5, 0.999))
    xa, xb = to_float(a), to_float(b)
    if xa.ndim == 3:
        xa, xb = xa[:, None], xb[:, None]
    mse = lambda pred, real: F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))
    losses = []
    for _ in range(steps):
        real_a = xa[torch.randint(0, len(xa), (batch_size,))].to(device)
        real_b = xb[torch.randint(0, len(xb), (batch_size,))].to(device)
        for d in (model.D_A, model.D_B):
            d.requires_grad_(False)
        fake_b, fake_a = model.G_AB(real_a), model.G_BA(real_b)
        loss_g = (mse(model.D_B(fake_b), True) + mse(model.D_A(fake_a), True)
                  + 10 * (F.l1_loss(model.G_BA(fake_b), real_a) + F.l1_loss(model.G_AB(fake_a), real_b))
                  + 5 * (F.l1_loss(model.G_AB(real_b), real_b) + F.l1_loss(model.G_BA(real_a), real_a)))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for d in (model.D_A, model.D_B):
            d.requires_grad_(True)
        loss_d = 0.5 * (mse(model.D_A(real_a), True) + mse(model.D_A(fake_a.detach()), False)
                        + mse(model.D_B(real_b), True) + mse(model.D_B(fake_b.detach()), False))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        losses.append(loss_g.item())
    return model.eval(), np.array(losses)


def baseline_apply(generators, images, device):
    """The official test.py: one image at a time, fp32, no_grad, default memory format; uint8 out."""
    import torch

    from resonance_utils.data import to_float, to_uint8

    x_all = to_float(images)
    if x_all.ndim == 3:
        x_all = x_all[:, None]
    out = []
    with torch.no_grad():
        for i in range(len(x_all)):
            x = x_all[i:i + 1].to(device)
            for g in generators:
                x = g(x)
            out.append(to_uint8(x.cpu()))
    return np.concatenate(out)


def bench_cyclegan(device: str, sz: dict, tiny: bool, seed: int = 0) -> list[dict]:
    cyclegan, why = cyclegan_module()
    if cyclegan is None:
        raise SkipPart(why)
    kw, batch = cyclegan_config(sz["profile"], tiny)
    base = cyclegan.make_cyclegan(channels=1, seed=seed, **kw)
    base.to("cpu")
    n_g = sum(p.numel() for p in base.G_AB.parameters())
    arch = ", ".join(f"{k}={v}" for k, v in kw.items())
    common = dict(model=f"CycleGAN (generator {n_g / 1e6:.2f}M parameters{', ' + arch if arch else ''})",
                  device=device)
    images, labels = mnist_data(max(16 * batch, sz["cg_translate_n"], sz["cg_gen_n"]), synthetic=tiny, seed=seed)
    a, b = images[labels < 5], images[labels >= 5]
    rows = []

    steps = sz["cg_train_steps"]
    tkw = dict(batch_size=batch, lr=2e-4, seed=seed, device=device)
    cyclegan.train_cyclegan(copy.deepcopy(base), a, b, steps=1, progress=False, **tkw)
    baseline_train_cyclegan(copy.deepcopy(base), a, b, steps=1, **tkw)
    out = {}

    def project_run():
        out["trained"], _ = cyclegan.train_cyclegan(copy.deepcopy(base), a, b, steps=steps, progress=False, **tkw)

    s, bs = paired(project_run, lambda: baseline_train_cyclegan(copy.deepcopy(base), a, b, steps=steps, **tkw),
                   device, sz["repeats"])
    trained = out["trained"]
    project = rate(steps * batch, s, steps=steps, batch_size=batch, repeats=sz["repeats"],
                   path="cyclegan.train_cyclegan")
    baseline = rate(steps * batch, bs, steps=steps, batch_size=batch, repeats=sz["repeats"],
                    path="plain fp32 loop (Adam, no pool)")
    rows.append(dict(common, what="training", project=project, baseline=baseline,
                     notes="images/s counts image pairs (one of A and one of B)"))

    n, bn = sz["cg_translate_n"], sz["cg_base_translate_n"]
    x = images[:n]
    cyclegan.translate(trained.G_AB, x[:4], batch_size=256, device=device)
    _, s = timed(lambda: cyclegan.translate(trained.G_AB, x, batch_size=256, device=device), device)
    project = rate(n, s, batch_size=256, path="cyclegan.translate (G_AB)")
    baseline_apply([trained.G_AB], x[:2], device)
    _, bs = timed(lambda: baseline_apply([trained.G_AB], x[:bn], device), device)
    baseline = rate(bn, bs, batch_size=1, path="one image at a time (official test.py)")
    rows.append(dict(common, what="translation", project=project, baseline=baseline))

    n = sz["cg_gen_n"]
    f = cyclegan.cycle_map(trained, quantize=True, batch_size=256, device=device)
    f(images[:4])
    _, s = timed(lambda: f(images[:n]), device)
    project = rate(n, s, batch_size=256, path="cyclegan.cycle_map (uint8 out)")
    _, bs = timed(lambda: baseline_apply([trained.G_AB, trained.G_BA], images[:n], device), device)
    baseline = rate(n, bs, batch_size=1, path="G_BA(G_AB(x)) one image at a time")
    rows.append(dict(common, what="one generation", project=project, baseline=baseline,
                     notes=f"x -> F(G(x)) over {n} images"))
    return rows


def bench_compile(device: str, sz: dict, tiny: bool, seed: int = 0) -> list[dict]:
    """The MNIST UNet's training and sampling with compile=True against the same calls without it (so here the
    'baseline' is the project's own uncompiled path). GPU only; the compile itself is a warm-up, not timed."""
    if device != "cuda":
        raise SkipPart("torch.compile is measured on a GPU only (on a CPU: a minute of warm-up for a few per cent)")
    from resonance_utils import diffusion

    cfg = unet_config(sz["profile"], tiny)
    batch, steps, n = cfg["batch_size"], sz["train_steps"], sz["sample_n"]
    images, labels = mnist_data(batch * (steps + 1), synthetic=tiny, seed=seed)
    kw = dict(batch_size=batch, lr=cfg["lr"], ema_decay=cfg["ema_decay"] or None,
              cond_drop_prob=cfg["cond_drop_prob"], seed=seed, device=device, progress=False)
    model = diffusion.make_unet(num_classes=10, seed=seed, **cfg["unet"])
    common = dict(model=f"MNIST UNet ({cfg['profile']}.yaml), torch.compile", device=device,
                  notes="baseline = the project's path without compile")
    rows, measured = [], {}
    for comp in (False, True):  # the same model object twice: the second call finds the compiled code cached
        diffusion.train_diffusion(model, images, labels, steps=sz["warm_steps"], compile=comp, **kw)
        _, measured[comp] = timed(lambda: diffusion.train_diffusion(model, images, labels, steps=steps,
                                                                    compile=comp, **kw), device)
    rows.append(dict(common, what="training", project=rate(steps * batch, measured[True], compile=True),
                     baseline=rate(steps * batch, measured[False], compile=False)))
    skw = dict(labels=np.arange(n) % 10, guidance_scale=cfg["guidance_scale"], ddim_steps=cfg["ddim_steps"],
               seed=seed, device=device, progress=False)
    for comp in (False, True):
        diffusion.sample(model, n, compile=comp, **skw)
        _, measured[comp] = timed(lambda: diffusion.sample(model, n, compile=comp, **skw), device)
    rows.append(dict(common, what="sampling", project=rate(n, measured[True], compile=True),
                     baseline=rate(n, measured[False], compile=False)))
    return rows


TINY_AUTOENCODER = dict(block_channels=(8, 8, 8), norm_groups=4)


def bench_latent(device: str, sz: dict, tiny: bool, seed: int = 0) -> list[dict]:
    """Issue 15's cost bar, side by side in one run: the MNIST retraining chain's generation in the latent space of
    an autoencoder (latent.AutoencoderSpec's defaults, 28x28 -> 7x7x4; the one-level latent.LATENT_UNET) at twice
    the profile's N, against today's pixel generation at N (the profile's UNet), with the profile's fine-tuning
    steps, batch, DDIM steps and guidance for both. Here 'project' is the latent path and 'baseline' the pixel
    one. The latent path's numbers include what it adds: encoding the training set (train_diffusion encodes it
    up front) and decoding every sample. The weights are untrained (the speed does not depend on them)."""
    from resonance_utils import diffusion, latent

    cfg = unet_config(sz["profile"], tiny)
    batch, lr, ema = cfg["batch_size"], cfg["lr"], cfg["ema_decay"] or None
    if tiny:
        batch = 8
    gen_steps = sz["gen_steps"] or cfg["finetune_steps"]
    # the profile's latent N against the pixel chain's N before issue 15 (half of it at reduced sizes)
    lat_n = 2 * sz["gen_n"] if sz["gen_n"] else cfg["samples_per_generation"]
    gen_n = sz["gen_n"] or PIXEL_N
    images, labels = mnist_data(lat_n, synthetic=tiny, seed=seed)
    ae_spec = cfg["autoencoder"].replace(device=device, seed=seed, **(TINY_AUTOENCODER if tiny else {}))
    space = latent.LatentSpace(latent.make_autoencoder(ae_spec), clip_range=3.0, device=device)
    lat = latent.latent_unet(space, num_classes=10, seed=seed, **cfg["latent_unet"])
    pix = diffusion.make_unet(num_classes=10, seed=seed, **cfg["unet"])
    n_lat, n_pix = (sum(p.numel() for p in m.parameters()) / 1e6 for m in (lat, pix))
    n_ae = sum(p.numel() for p in space.vae.parameters()) / 1e6
    c, h, _ = space.latent_shape
    common = dict(model=f"MNIST latent UNet ({n_lat:.2f}M parameters on {h}x{h}x{c} latents, autoencoder "
                        f"{n_ae:.2f}M, widths {'/'.join(map(str, ae_spec.block_channels))}) vs pixel UNet ({n_pix:.2f}M, "
                        f"{cfg['profile']}.yaml)", device=device)
    train_kw = dict(batch_size=batch, lr=lr, ema_decay=ema, cond_drop_prob=cfg["cond_drop_prob"], seed=seed,
                    device=device, progress=False)
    w, ddim = cfg["guidance_scale"], (2 if tiny else cfg["ddim_steps"])
    rows = []

    # training on one generation's data (latent: 2N images, encoded first; pixel: N)
    def train(model, n, space=None, steps=gen_steps, batch_size=batch):
        return diffusion.train_diffusion(copy.deepcopy(model), images[:n], labels[:n], steps=steps, space=space,
                                         **(train_kw | {"batch_size": batch_size}))

    train(lat, lat_n, space, sz["warm_steps"])
    train(pix, gen_n, None, sz["warm_steps"])
    s, bs = paired(lambda: train(lat, lat_n, space), lambda: train(pix, gen_n), device, sz["repeats"])
    rows.append(dict(common, what="training",
                     project=rate(gen_steps * batch, s, steps=gen_steps, batch_size=batch, repeats=sz["repeats"],
                                  encoded_images=lat_n, path="diffusion.train_diffusion(space=LatentSpace)"),
                     baseline=rate(gen_steps * batch, bs, steps=gen_steps, batch_size=batch, repeats=sz["repeats"],
                                   path="diffusion.train_diffusion (pixels)"),
                     notes=f"{gen_steps} steps; the latent time includes encoding its {lat_n} training images"))

    # sampling the same number of images (latent: decoded)
    n = sz["sample_n"]
    skw = dict(guidance_scale=w, ddim_steps=ddim, seed=seed, device=device, progress=False)
    diffusion.sample(lat, min(4, n), labels=0, space=space, **skw)
    _, s = timed(lambda: diffusion.sample(lat, n, labels=np.arange(n) % 10, space=space, **skw), device)
    _, bs = timed(lambda: diffusion.sample(pix, n, labels=np.arange(n) % 10, **skw), device)
    rows.append(dict(common, what="sampling",
                     project=rate(n, s, denoising_steps=ddim, guidance_scale=w, path="diffusion.sample(space=...)"),
                     baseline=rate(n, bs, denoising_steps=ddim, guidance_scale=w, path="diffusion.sample (pixels)"),
                     notes=f"DDIM {ddim} steps, guidance {w:g}; the latent time includes decoding"))

    # one generation as image_chains.Retrain makes it: fine-tune on the current data, sample N. The pixel path is
    # the chain as it was before issue 15 (PIXEL_GENERATION), the latent one the profile's (reduced sizes: both alike)
    old = dict(PIXEL_GENERATION) if not (tiny or sz["gen_steps"]) else dict(batch_size=batch, steps=gen_steps,
                                                                           guidance_scale=w)

    def generation(model, n, space=None, steps=gen_steps, batch_size=batch, guidance_scale=w):
        m, _ = train(model, n, space, steps, batch_size)
        return diffusion.sample(m, n, labels=np.arange(n) % 10, generation=1, space=space,
                                **(skw | {"guidance_scale": guidance_scale}))

    s, bs = paired(lambda: generation(lat, lat_n, space), lambda: generation(pix, gen_n, **old), device,
                   sz["repeats"])
    ratio = bs / s
    rows.append(dict(common, what="one generation",
                     project=rate(lat_n, s, finetune_steps=gen_steps, batch_size=batch, samples=lat_n,
                                  repeats=sz["repeats"],
                                  path="train_diffusion + sample in latent space (encode + decode included)"),
                     baseline=rate(gen_n, bs, finetune_steps=old["steps"], batch_size=old["batch_size"],
                                   samples=gen_n, repeats=sz["repeats"], path="train_diffusion + sample in pixels"),
                     wall_time_ratio=round(ratio, 2),
                     notes=f"latent N={lat_n} ({gen_steps} steps x {batch}) vs the pixel chain before issue 15, "
                           f"N={gen_n} ({old['steps']} steps x {old['batch_size']}, guidance {old['guidance_scale']:g}): "
                           f"{ratio:.2f}x less wall time (issue 15's bar: >= 5x); speed-up counts images/s"))
    return rows


class SkipPart(Exception):
    """A part that cannot run here (a missing module): recorded with its reason, not an error."""


PARTS = {"mnist": bench_mnist_unet, "features": bench_features, "cyclegan": bench_cyclegan,
         "compile": bench_compile, "latent": bench_latent}
DEFAULT_PARTS = ("mnist", "features", "cyclegan")  # compile: opt-in (minutes of compiling on a GPU)
# latent: opt-in (--parts latent, or --parts mnist,features,cyclegan,latent): issue 15's latent generation at
# 2N beside the pixel one at N, a few minutes on 2 CPU cores at full scale


# ------------------------------------------------------------------------------------------------------- output
def cpu_name() -> str:
    from resonance_utils.runtime import cpu_name as name
    return name()


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"{cpu_name()}, {os.cpu_count()} cores"


def finish_row(row: dict) -> dict:
    p, b = row["project"], row.get("baseline")
    row["speedup"] = round(p["images_per_s"] / b["images_per_s"], 2) if b and b["images_per_s"] > 0 else None
    row.setdefault("notes", "")
    return row


def markdown(results: dict) -> str:
    """The table of results.md and of README's Performance block."""
    lines = ["| model | measurement | device | project | baseline | speed-up | notes |",
             "|---|---|---|---|---|---|---|"]

    def cell(m, wall: bool):  # a generation is read as its wall time, everything else as a rate
        if m is None:
            return "-"
        if wall:
            return f"~{m['seconds']:.3g} s (estimated)" if m.get("estimated") else f"{m['seconds']:.3g} s"
        return f"{m['images_per_s']:.4g} img/s"

    for r in results["measurements"]:
        wall = r["what"] == "one generation"
        speed = f"{r['speedup']:.3g}x" if r.get("speedup") else "-"
        lines.append(f"| {r['model']} | {r['what']} | {r['device']} | {cell(r['project'], wall)} | "
                     f"{cell(r.get('baseline'), wall)} | {speed} | {r.get('notes', '')} |")
    for s in results["skipped"]:
        lines.append(f"| {s['part']} | skipped | {s['device']} | - | - | - | {s['reason']} |")
    for e in results["errors"]:
        lines.append(f"| {e['part']} | error | {e['device']} | - | - | - | {e['error'][:120]} |")
    return "\n".join(lines) + "\n"


def machine_line(results: dict) -> str:
    devs = "; ".join(f"{k}: {v}" for k, v in results["devices"].items())
    return (f"Measured {results['date'][:10]} ({results['scale']} scale) on {devs}; torch {results['torch']}, "
            f"{results['threads']} CPU thread(s), commit {results['git_commit'][:12]}.")


def update_readme(readme: Path, results: dict) -> Path:
    """Replace what lies between the benchmark markers in `readme` with the table; nothing else changes."""
    text = readme.read_text()
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"{readme} has no '{START}' ... '{END}' block to fill")
    block = (f"{START}\n{machine_line(results)} `python -m benchmarks.run --readme` regenerates this table.\n\n"
             f"{markdown(results)}{END}")
    readme.write_text(text[:i] + block + text[j + len(END):])
    return readme


# ------------------------------------------------------------------------------- run times of ./run_all.sh
def duration(seconds: float) -> str:
    """12.3 s, 18 s, 15 min 44 s, 2 h 5 min."""
    s = float(seconds)
    if s < 10:
        return f"{s:.1f} s"
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def run_time_records() -> tuple[dict[str, dict], list[str]]:
    """{profile: build/<profile>/last_run.json} for the profiles whose last finished run was of every notebook,
    and a note for each profile whose record is left out (partial run, damaged file)."""
    from resonance_utils import config, run_notebooks

    records, notes = {}, []
    for profile in config.PROFILES:
        path = run_notebooks.build_dir(profile) / "last_full_run.json"  # kept when a partial run follows
        if not path.exists():
            path = run_notebooks.build_dir(profile) / "last_run.json"
        if not path.exists():
            continue
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict) or not isinstance(rec.get("notebooks"), dict):
                raise ValueError("not a run record")
        except (OSError, ValueError) as e:
            notes.append(f"{profile}, build/{profile}/{path.name} is unreadable ({e}).")
            continue
        if rec.get("all_notebooks"):
            records[profile] = rec
        else:
            notes.append(f"{profile}, whose last run (build/{profile}/last_run.json) was of "
                         f"{', '.join(rec.get('selected') or []) or 'some notebooks'} only.")
    return records, notes


def runtimes_table(records: dict[str, dict], notes: list[str] = ()) -> str:
    """The Markdown of the README's run-time block, every number formatted from the records."""
    if not records:
        lines = ["Not measured yet: run `./run_all.sh` (every notebook), then `python -m benchmarks.run "
                 "--runtimes-readme`."]
    else:
        lines = ["| profile | total | notebooks | jobs | per notebook | finished | machine | commit |",
                 "|---|---|---|---|---|---|---|---|"]
        for profile, rec in records.items():
            nbs = rec["notebooks"]
            statuses = [v.get("status") for v in nbs.values()]
            ran = statuses.count("ran")
            if rec.get("force") and ran == len(statuses):
                what = f"all {ran} ran (`--force`)"
            else:
                what = ", ".join(f"{statuses.count(k)} {k}" for k in ("ran", "skipped", "failed")
                                 if statuses.count(k))
            per = ", ".join(f"{stem.split('_')[0]} {duration(v.get('seconds', 0))}"
                            + ("" if v.get("status") == "ran" else f" ({v.get('status')})")
                            for stem, v in nbs.items())
            machine = rec.get("cpu", "?") + (f"; {rec['gpu']}" if rec.get("gpu") else "")
            commit = str(rec.get("git_commit", "?"))
            commit = commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")
            lines.append(f"| {profile} | {duration(rec.get('wall_s', 0))} | {what} | {rec.get('jobs', '?')} | "
                         f"{per} | {str(rec.get('finished', '?'))[:10]} | {machine} | "
                         f"{commit} |")
    if notes:
        lines.append(f"(Left out: {' '.join(notes)})")
    return "\n".join(lines) + "\n"


def update_runtimes_readme(readme: Path) -> Path:
    """Replace what lies between the run-time markers in `readme` with runtimes_table; nothing else changes."""
    text = readme.read_text()
    i, j = text.find(RT_START), text.find(RT_END)
    if i < 0 or j < i:
        raise ValueError(f"{readme} has no '{RT_START}' ... '{RT_END}' block to fill")
    block = (f"{RT_START}\n**Measured run times** of `./run_all.sh`, from `build/<profile>/last_run.json` (written by "
             f"every finished run); `python -m benchmarks.run --runtimes-readme` regenerates this table. `--force` "
             f"reruns every notebook but reads cached chains back: for a time from empty caches, run with a new "
             f"`RESONANCE_DATA_DIR`.\n\n"
             f"{runtimes_table(*run_time_records())}{RT_END}")
    readme.write_text(text[:i] + block + text[j + len(RT_END):])
    return readme


# ---------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: the CPU and, when there is one, the GPU; cpu or cuda: only that one")
    scale = ap.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="small sizes: a couple of minutes on a CPU")
    scale.add_argument("--tiny", action="store_true", help="toy sizes for the tests (seconds; numbers meaningless)")
    ap.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                    help=f"comma-separated subset of {', '.join(PARTS)} (default: {','.join(DEFAULT_PARTS)})")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: $RESONANCE_THREADS, else every core up to 8)")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="folder for results.json and results.md")
    ap.add_argument("--readme", nargs="?", type=Path, const=ROOT / "README.md", default=None, metavar="PATH",
                    help="also put the table into README.md (or PATH) between the benchmark markers")
    ap.add_argument("--runtimes-readme", nargs="?", type=Path, const=ROOT / "README.md", default=None,
                    metavar="PATH", help="only rewrite README.md's (or PATH's) table of measured run times from "
                                         "build/<profile>/last_run.json, and exit (no benchmark runs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.runtimes_readme is not None:
        try:
            print(f"updated the run-time block in {update_runtimes_readme(args.runtimes_readme)}")
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        ap.error(f"unknown part(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(PARTS)}")

    import torch

    from resonance_utils import runtime, store

    threads = runtime.set_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but CUDA is not available here; use --device cpu or auto", file=sys.stderr)
        return 2
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    scale_name = "tiny" if args.tiny else "quick" if args.quick else "full"
    results = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "scale": scale_name,
        "git_commit": store.git_commit(), "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "threads": threads,
        "devices": {d: device_name(d) for d in devices[args.device]},
        "measurements": [], "skipped": [], "errors": [],
    }
    try:
        import diffusers

        results["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    t_all = time.perf_counter()
    for device in devices[args.device]:
        sz = SIZES[(scale_name, device)]
        for part in parts:
            print(f"== {part} on {device} ({scale_name})", flush=True)
            t0 = time.perf_counter()
            try:
                rows = PARTS[part](device, sz, args.tiny, args.seed)
            except SkipPart as e:
                print(f"   skipped: {e}", flush=True)
                results["skipped"].append({"part": part, "device": device, "reason": str(e)})
                continue
            except Exception as e:  # noqa: BLE001 - record it, measure the rest, exit 1 at the end
                traceback.print_exc()
                results["errors"].append({"part": part, "device": device, "error": f"{type(e).__name__}: {e}"})
                continue
            for r in rows:
                results["measurements"].append(finish_row(r))
                b = r.get("baseline")
                print(f"   {r['what']:<20} project {r['project']['images_per_s']:>10.4g} img/s "
                      f"({r['project']['seconds']:.3g} s)   baseline "
                      f"{b['images_per_s'] if b else float('nan'):>10.4g} img/s   speed-up {r['speedup']}",
                      flush=True)
            print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    results["total_seconds"] = round(time.perf_counter() - t_all, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    store.write_json(args.out / "results.json", results)
    table = f"{machine_line(results)}\n\n{markdown(results)}"
    with store.atomic_path(args.out / "results.md") as tmp:
        Path(tmp).write_text(f"# Benchmarks\n\n{table}")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'} ({results['total_seconds']} s)")
    if args.readme is not None:
        print(f"updated the benchmark block in {update_readme(args.readme, results)}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
