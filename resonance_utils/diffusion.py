"""DDPM on diffusers: a small UNet, epsilon-prediction training, DDIM sampling and the feedback step.

Chain spaces (issue 15): train_diffusion, sample and feedback_step take `space=`. None (the default) is pixel
space, bit for bit the code of earlier versions; otherwise the UNet models space.encode(images) (a
latent.LatentSpace: a fixed autoencoder's latents, or a latent.PixelSpace) and samples come back as
space.decode(x), uint8 images in either case. DDIM clips its predicted x0 to [-space.clip_range, space.clip_range]
(pixels: the data range [-1, 1]; None: no clipping).

One noise schedule serves training and sampling (DDPM's linear betas, `BETA_SCHEDULE`), and every random number
is drawn on the CPU from runtime.torch_generator(seed, generation, stream), so a sample depends only on the model
and the seeds, not on the device or the batch size. Class-conditional models reserve one extra class id, the
last, as the "null" label of classifier-free guidance.

Speed (issue #7, benchmarks/run.py measures it): on CUDA the UNet runs in channels_last with bf16 autocast, AdamW
is fused, the training loop never waits for the GPU (losses stay on the device until the end, batches go over
from pinned memory without blocking), and `compile=True` adds torch.compile. The CPU runs plain fp32, contiguous,
with the same code as before, so its results are bit-identical to earlier versions.

Data-parallel training: under `torchrun --nproc_per_node K` or `accelerate launch --multi_gpu --num_processes K`
(WORLD_SIZE > 1 in the environment), train_diffusion wraps the UNet in DistributedDataParallel; every rank draws
the same seeded global batch and trains on its 1/K share of it, and DDP averages the gradients, so the result is
that of one process with the same batch (up to float rounding). Only rank 0 writes files (save_model).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import to_float, to_uint8
from .runtime import autocast, pick_device, torch_generator
from .store import CacheError, atomic_path

BETA_SCHEDULE = "linear"  # DDPM's; measured: cleaner, better-classified MNIST digits than cosine after short training
NOISE_STREAM, TRAIN_STREAM = 0, 1  # independent random streams for sampling noise and for training batches
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


# --------------------------------------------------------------------------------------------------- the model
def make_unet(*, resolution: int = 28, channels: int = 1, base_channels: int = 32,
              channel_mult: tuple[int, ...] = (1, 2, 2), layers_per_block: int = 1, num_classes: int | None = None,
              attention: bool = False, norm_groups: int | None = None, num_train_timesteps: int = 1000,
              seed: int = 0):
    """A diffusers UNet2DModel; len(channel_mult) levels, each halving the resolution (28 -> 14 -> 7).

    num_classes: None for unconditional; else class ids 0..num_classes-1 plus the null id num_classes.
    attention: self-attention at the lowest resolution and in the middle block (costly on a CPU).
    """
    from diffusers import UNet2DModel

    levels = len(channel_mult)
    if levels < 1 or resolution % 2 ** (levels - 1):
        raise ValueError(f"resolution {resolution} must be divisible by 2**(len(channel_mult)-1) = "
                         f"{2 ** (levels - 1)} for {levels} levels")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be None or >= 1, got {num_classes}")
    widths = tuple(base_channels * m for m in channel_mult)
    groups = norm_groups or max(1, min(32, base_channels // 4))  # 8 channels per group at the first level
    if any(w % groups for w in widths):
        raise ValueError(f"norm_groups={groups} must divide every level's channels {widths}")
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=resolution, in_channels=channels, out_channels=channels, block_out_channels=widths,
            layers_per_block=layers_per_block, down_block_types=tuple(down), up_block_types=tuple(up),
            add_attention=attention, norm_num_groups=groups, attention_head_dim=8,
            num_class_embeds=None if num_classes is None else num_classes + 1,
            num_train_timesteps=num_train_timesteps,
        )


def num_classes(model) -> int | None:
    """Real classes of a conditional model (its null id is this number); None for an unconditional one."""
    k = model.config.num_class_embeds
    return None if k is None else k - 1


def _train_timesteps(model) -> int:
    return int(model.config.get("num_train_timesteps") or 1000)


def noise_scheduler(model, kind: str = "ddim", *, clip_range: float | None = 1.0):
    """The DDPM (training) or DDIM (sampling, eta=0) scheduler that matches `model`'s noise schedule.
    clip_range: the predicted x0 is clipped to [-clip_range, clip_range] (1.0: pixels); None = no clipping."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}.get(kind)
    if cls is None:
        raise ValueError(f"unknown scheduler kind {kind!r}; choose 'ddpm' or 'ddim'")
    if clip_range is None:
        clip = {"clip_sample": False}
    elif clip_range == 1.0:  # the pixel path: the same scheduler as before spaces existed
        clip = {"clip_sample": True}
    else:
        clip = {"clip_sample": True, "clip_sample_range": float(clip_range)}
    return cls(num_train_timesteps=_train_timesteps(model), beta_schedule=BETA_SCHEDULE,
               prediction_type="epsilon", **clip)


def _to_device(model, device: torch.device):
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def _to(x: torch.Tensor, device: torch.device, memory=torch.contiguous_format) -> torch.Tensor:
    """A CPU tensor onto `device`. To CUDA it goes from pinned memory without blocking: a plain copy from pageable
    memory waits for the GPU to finish its queue, which would stall the loop once per tensor and step."""
    if device.type != "cuda":
        return x.to(device, memory_format=memory)
    return x.contiguous(memory_format=memory).pin_memory().to(device, non_blocking=True)


# ------------------------------------------------------------------------------------------------ distributed
def distributed_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment (torchrun, accelerate launch); (0, 0, 1)
    when run as one process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 0, 1
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single-process run): the one process that writes files."""
    return distributed_world()[0] == 0


def _device(prefer: str) -> torch.device:
    """pick_device, except that each rank of a multi-GPU launch takes its own GPU (LOCAL_RANK)."""
    device = pick_device(prefer)
    _, local, world = distributed_world()
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local % torch.cuda.device_count())
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # NCCL and the default stream follow the current device
    return device


def _process_group(device: torch.device):
    """Join (once) the process group the launcher describes: NCCL between GPUs, gloo between CPU processes."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist


# ------------------------------------------------------------------------------------------------ input checks
def _check_images(model, images) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (N,H,W[,C]), got {x.dtype}; use data.to_uint8 first")
    c, r = model.config.in_channels, model.config.sample_size
    want = (r, r) if c == 1 else (r, r, c)
    shape = x.shape[1:-1] if (x.ndim == 4 and c == 1 and x.shape[-1] == 1) else x.shape[1:]
    if x.ndim not in (3, 4) or tuple(shape) != want or len(x) == 0:
        raise ValueError(f"this model takes images of shape (N,{','.join(map(str, want))}) with N >= 1, "
                         f"got {x.shape}")
    return x


def _encode(model, images, space) -> torch.Tensor:
    """uint8 images -> the float (N,C,r,r) tensor the model works on: to_float in pixel space (space=None),
    space.encode otherwise, checked against the model's channels and sample size."""
    if space is None:
        return to_float(_check_images(model, images))
    x = space.encode(images)
    want = (model.config.in_channels, model.config.sample_size, model.config.sample_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want or len(x) == 0:
        raise ValueError(f"space {getattr(space, 'kind', type(space).__name__)!r} encodes these images to shape "
                         f"{tuple(x.shape)}, but the model works on (N,{','.join(map(str, want))}): make the UNet "
                         "for the space (latent.latent_unet) or pass the space it was trained in")
    return x


def _decode(x: torch.Tensor, space) -> np.ndarray:
    return to_uint8(x) if space is None else space.decode(x)


def _clip_range(space) -> float | None:
    return 1.0 if space is None else space.clip_range


def _check_labels(model, labels, n: int, *, required: bool) -> torch.Tensor | None:
    k = num_classes(model)
    if labels is None:
        if required and k is not None:
            raise ValueError(f"this model is class-conditional ({k} classes): pass labels for training")
        return None if k is None else torch.full((n,), k, dtype=torch.long)  # null label: unconditional
    if k is None:
        raise ValueError("this model is unconditional (made with num_classes=None): pass labels=None")
    y = np.asarray(labels)
    if y.ndim == 0:
        y = np.full(n, y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k - 1}] for a {k}-class model, got range [{y.min()}, {y.max()}]")
    return torch.from_numpy(y.astype(np.int64))


# ------------------------------------------------------------------------------------------------------ training
def train_diffusion(model, images, labels=None, *, steps: int | None = None, epochs: float | None = None,
                    batch_size: int = 128, lr: float = 2e-3, warmup_steps: int = 100, ema_decay: float | None = None,
                    cond_drop_prob: float = 0.1, seed: int = 0, device: str = "auto", compile: bool = False,
                    progress: bool = True, space=None) -> tuple[object, np.ndarray]:
    """DDPM training with epsilon-prediction and AdamW (linear warm-up, cosine decay to lr/10).

    Give steps or epochs (default: 1 epoch). Fine-tuning is calling this again on a trained model.
    Returns (model, per-step losses); with ema_decay the model holds the EMA weights on return.
    compile: torch.compile the UNet first (pays on a GPU for long runs; a minute of warm-up; off by default).
    Under a distributed launcher (WORLD_SIZE > 1) each rank trains on its share of every batch_size batch
    (batch_size must divide by the number of processes); the returned losses are those of the whole batch.
    space: None = pixels; else the model trains on space.encode(images) (encoded once, up front; the space's
    autoencoder stays fixed).
    """
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")
    x_all = _encode(model, images, space)
    n = len(x_all)
    # labels=None on a conditional model trains its unconditional (null-label) mode only: the unconditional
    # retraining chain keeps the architecture of the shared generation-0 model
    y_all = _check_labels(model, labels, n, required=False)
    if not 0 <= cond_drop_prob < 1:
        raise ValueError(f"cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
    if ema_decay is not None and not 0 < ema_decay < 1:
        raise ValueError(f"ema_decay must be None or in (0, 1), got {ema_decay}")
    steps = int(steps) if steps is not None else max(1, math.ceil((1.0 if epochs is None else epochs) * n /
                                                                   batch_size))
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    rank, _, world = distributed_world()
    if world > 1 and (batch_size % world or n < batch_size):
        raise ValueError(f"data-parallel training over {world} processes needs batch_size divisible by {world} "
                         f"and at least batch_size images; got batch_size={batch_size}, {n} images")
    share = slice(rank * (batch_size // world), (rank + 1) * (batch_size // world))

    device = _device(device)
    model = _to_device(model, device).train()
    net = model
    if world > 1:
        _process_group(device)
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    scheduler = noise_scheduler(model, "ddpm")
    T = scheduler.config.num_train_timesteps
    null = num_classes(model)
    # fused AdamW: one kernel for all parameters instead of a dozen per tensor; CUDA only (the CPU keeps the
    # reference implementation, and with it bit-identical results)
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, **fused)
    warm = max(1, min(warmup_steps, steps // 10))
    lr_at = lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema = [p.detach().clone() for p in model.parameters()] if ema_decay is not None else None
    gen = torch_generator(seed, 0, TRAIN_STREAM)
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    # the losses stay on the device until the end: loss.item() every step would make the CPU wait for the GPU
    losses = torch.zeros(steps, dtype=torch.float32, device=device)
    order = torch.empty(0, dtype=torch.long)
    bar = tqdm(range(steps), desc="diffusion training", disable=not progress)
    for step in bar:
        if len(order) < batch_size:  # append a fresh permutation: every image is seen once per epoch
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        # every rank draws the whole batch from the same generator, then keeps its share
        x0 = x_all[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, T, (len(idx),), generator=gen)
        y = None
        if y_all is not None:
            y = y_all[idx].clone()
            y[torch.rand(len(idx), generator=gen) < cond_drop_prob] = null  # learn the unconditional score too
        if world > 1:
            x0, noise, t, y = x0[share], noise[share], t[share], None if y is None else y[share]
        if y is not None:
            y = _to(y, device)
        noisy = _to(scheduler.add_noise(x0, noise, t), device, memory)
        with autocast(device):
            pred = net(noisy, _to(t, device), class_labels=y).sample
        loss = F.mse_loss(pred.float(), _to(noise, device))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP: gradients averaged over the ranks = the gradient of the whole batch
        opt.step()
        sched.step()
        if ema is not None:
            decay = min(ema_decay, (1 + step) / (10 + step))  # short runs: the EMA must not lag the start
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - decay)
        losses[step] = loss.detach()
        if progress and (step % 50 == 0 or step == steps - 1):  # the only wait for the GPU inside the loop
            bar.set_postfix(loss=f"{losses[max(0, step - 49):step + 1].mean().item():.4f}")
    if world > 1:  # each rank holds the loss of its share: their mean is the loss of the whole batch
        dist = _process_group(device)
        dist.all_reduce(losses, op=dist.ReduceOp.SUM)
        losses /= world
    losses = losses.cpu().numpy()
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(model.parameters(), ema):
                p.copy_(e)
    return model.eval(), losses


# ------------------------------------------------------------------------------------------------------ sampling
def sample(model, n: int, *, labels=None, guidance_scale: float = 1.0, ddim_steps: int = 25, seed: int = 0,
           generation: int = 0, batch_size: int | None = None, device: str = "auto", compile: bool = False,
           progress: bool = True, space=None) -> np.ndarray:
    """n images from pure noise with DDIM (eta=0): uint8 (N,H,W), or (N,H,W,C) for colour models.

    labels: None, one int for all, or (n,) ints (conditional models; None there means unconditional).
    guidance_scale: classifier-free guidance weight w (eps = eps_null + w (eps_label - eps_null)); 1 = none.
    batch_size: None = 64 on a CPU (small batches stay in cache: measured fastest; 256 in a latent space), 1024 on
    a GPU.
    compile: torch.compile the UNet first (GPU; pays only for many images).
    space: None = pixels; else the model runs in the space and each batch is returned as space.decode(x).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return _ddim(model, n, None, 1.0, labels, guidance_scale, ddim_steps, seed, generation, batch_size, device,
                 compile, progress, "sampling", space)


def feedback_step(model, images, *, strength: float = 0.5, labels=None, guidance_scale: float = 1.0,
                  ddim_steps: int = 25, seed: int = 0, generation: int = 0, batch_size: int | None = None,
                  device: str = "auto", compile: bool = False, progress: bool = True, space=None) -> np.ndarray:
    """The latent-feedback operator (SDEdit): noise `images` to timestep strength*T, then denoise with DDIM.

    strength in (0, 1]; the trajectory takes about strength*ddim_steps steps. strength=1 starts from pure
    noise and equals sample(model, len(images), ...) with the same seeds.
    space: None = pixels; else the images are encoded (space.encode), noised and denoised there, and decoded.
    """
    if not 0 < strength <= 1:
        raise ValueError(f"strength must lie in (0, 1], got {strength}")
    x = _encode(model, images, space)
    return _ddim(model, len(x), x, strength, labels, guidance_scale, ddim_steps, seed, generation, batch_size,
                 device, compile, progress, f"feedback s={strength:g}", space)


def ddim_timesteps(model, strength: float, ddim_steps: int) -> list[int]:
    """The DDIM grid from round(strength*T)-1 down in steps of T // ddim_steps (strength=1: the 'trailing'
    grid T-1, T-1-Δ, ...). A fixed step Δ lets DDIMScheduler.step find each previous timestep itself."""
    T = _train_timesteps(model)
    if not 1 <= ddim_steps <= T:
        raise ValueError(f"ddim_steps must lie in [1, {T}], got {ddim_steps}")
    start = max(0, int(round(strength * T)) - 1)
    return list(range(start, -1, -(T // ddim_steps)))


@torch.inference_mode()
def _ddim(model, n, x0, strength, labels, guidance_scale, ddim_steps, seed, generation, batch_size, device,
          compile, progress, desc, space=None) -> np.ndarray:
    y_all = _check_labels(model, labels, n, required=False)
    guided = guidance_scale != 1.0
    if guided and (labels is None or num_classes(model) is None):
        raise ValueError("guidance_scale != 1 needs a class-conditional model and labels")
    timesteps = ddim_timesteps(model, strength, ddim_steps)
    scheduler = noise_scheduler(model, "ddim", clip_range=_clip_range(space))
    scheduler.set_timesteps(ddim_steps)  # sets the step size T // ddim_steps that step() uses

    c, r = model.config.in_channels, model.config.sample_size
    # all noise drawn up front on the CPU: results do not depend on the device or the batch size
    noise = torch.randn((n, c, r, r), generator=torch_generator(seed, generation, NOISE_STREAM))
    if x0 is None or strength == 1.0:  # x0: the encoded start images of a feedback step (float (N,C,r,r))
        x_all = noise
    else:
        x_all = scheduler.add_noise(x0, noise, torch.full((n,), timesteps[0], dtype=torch.long))

    device = _device(device)
    # CPU: 64 pixel images stay in cache (measured fastest); latents are 16x smaller (7x7): 256 measured fastest
    batch_size = batch_size or (1024 if device.type != "cpu" else 64 if space is None else 256)
    model = _to_device(model, device).eval()
    net = torch.compile(model) if compile else model
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    null = num_classes(model)
    t_dev = {t: torch.tensor(t, device=device) for t in timesteps}  # copied to the device once, not every step
    out = []
    bar = tqdm(total=math.ceil(n / batch_size) * len(timesteps), desc=desc, disable=not progress)
    for i in range(0, n, batch_size):
        x = _to(x_all[i:i + batch_size], device)
        y = None if y_all is None else _to(y_all[i:i + batch_size], device)
        if guided:
            y = torch.cat([y, torch.full_like(y, null)])
        for t in timesteps:
            inp = torch.cat([x, x]) if guided else x
            with autocast(device):
                eps = net(inp.contiguous(memory_format=memory), t_dev[t], class_labels=y).sample.float()
            if guided:
                eps_label, eps_null = eps.chunk(2)
                eps = eps_null + guidance_scale * (eps_label - eps_null)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            bar.update(1)
        out.append(_decode(x, space))
    bar.close()
    return np.concatenate(out)


# --------------------------------------------------------------------------------------------------- save, load
def save_model(model, folder: str | Path) -> Path:
    """diffusers save_pretrained (config.json + safetensors), written to a temporary folder, then renamed.

    Under a distributed launcher only rank 0 writes, and every rank waits for it (so a rank that loads the folder
    next finds it complete): call it on every rank."""
    folder = Path(folder)
    if is_main_process():
        with atomic_path(folder) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
    if distributed_world()[2] > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    return folder


def load_model(folder: str | Path, *, device: str = "cpu"):
    """A UNet2DModel saved by save_model; a missing folder or file, or an unreadable one, says which."""
    from diffusers import UNet2DModel

    folder = Path(folder)
    for f in (folder / "config.json", folder / WEIGHTS_FILE):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: {folder} is not a model saved by diffusion.save_model")
    try:
        model = UNet2DModel.from_pretrained(str(folder), use_safetensors=True, low_cpu_mem_usage=False)
    except Exception as e:  # bad JSON, truncated safetensors, shape mismatch: all mean an unusable folder
        raise CacheError(f"{folder} holds no readable diffusion model ({type(e).__name__}: {e}); delete it and "
                         "train or save the model again") from e
    return model.to(pick_device(device)).eval()
