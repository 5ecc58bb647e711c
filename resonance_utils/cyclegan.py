"""CycleGAN training and the iterated cycle x -> F(G(x)) as a chain operator, with the cached model and cycle runs
of a 04_cyclegan_attractors configuration.

The networks (the official ResNet generator and PatchGAN discriminator, the model pair) live in
`resonance_utils.cyclegan_networks`, the loader of official pytorch-CycleGAN-and-pix2pix checkpoints in
`resonance_utils.cyclegan_checkpoints`; both are re-exported here. Names follow the domains: G_AB maps domain A
to B, G_BA maps B to A, D_A judges images of domain A.

The cycle map is deterministic, so the chain it drives is not ergodic: every start runs into an attractor (a
fixed point or a cycle). The detector lives in `resonance_utils.attractors` (find_attractors, cluster_basins,
pairs_apart, basin_assessment, tolerance_sweep); the names below are re-exported from there so that
`cyclegan.find_attractors` keeps working.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attractors import (  # noqa: F401 - re-exported: the detector moved to attractors.py
    AttractorReport, _close_pairs, _flat, _rms, cluster_basins, find_attractors, pairs_apart,
)
from .cyclegan_checkpoints import load_official_generator  # noqa: F401 - re-exported
from .cyclegan_networks import (  # noqa: F401 - re-exported: the networks moved to cyclegan_networks.py
    CycleGAN, NLayerDiscriminator, ResnetBlock, ResnetGenerator, init_weights, make_cyclegan, patch_size,
)
from .data import to_float
from .runtime import autocast, generation_rng, memory_format, pick_device, torch_generator
from .specs import CycleGANModelSpec, CycleGANSpec
from .store import CacheError, atomic_path, read_json, write_json

WEIGHTS_FILE, CONFIG_FILE = "cyclegan.safetensors", "cyclegan.json"
BATCH_A_STREAM, BATCH_B_STREAM, POOL_STREAM = 0, 1, 2  # independent random streams of one training run
LOSS_KEYS = ("G", "D_A", "D_B", "cycle", "identity", "adv")


# -------------------------------------------------------------------------------------------------- image data
def _image_shape(x: np.ndarray, what: str) -> tuple[int, int, int]:
    """(H, W, C) of an (N,H,W) or (N,H,W,C) array."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{what} must be (N,H,W) or (N,H,W,C), got shape {x.shape}")
    return (*x.shape[1:3], 1) if x.ndim == 3 else tuple(x.shape[1:])


def _check_size(h: int, w: int, what: str) -> None:
    # two stride-2 convs and two transposed convs give back the size only for multiples of 4; the reflection
    # padding at 1/4 resolution needs at least 2 pixels there
    if h % 4 or w % 4 or min(h, w) < 8:
        raise ValueError(f"{what} are {h}x{w}: the ResNet generator needs height and width that are multiples of "
                         "4 and at least 8 (e.g. 28x28 or 32x32); pad or crop the images")


def _to_nchw(images, channels: int | None, what: str = "images") -> tuple[torch.Tensor, bool]:
    """uint8, or float in [-1, 1], (N,H,W[,C]) -> float32 (N,C,H,W) in [-1, 1], and whether the input was 3-D."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    h, w, c = _image_shape(x, what)
    if channels is not None and c != channels:
        raise ValueError(f"{what} have {c} channel(s) (shape {x.shape}), the generator takes {channels}")
    _check_size(h, w, what)
    if x.dtype == np.uint8:
        return to_float(x), x.ndim == 3
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{what} must be uint8 or float in [-1, 1], got {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.size and not (np.isfinite(x).all() and x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6):
        raise ValueError(f"float {what} must lie in [-1, 1] (the networks' scale), got range "
                         f"[{np.nanmin(x):.4g}, {np.nanmax(x):.4g}]; pass uint8 images, or x / 127.5 - 1")
    x4 = x[..., None] if x.ndim == 3 else x
    return torch.from_numpy(np.ascontiguousarray(x4.transpose(0, 3, 1, 2))), x.ndim == 3


def _from_nchw(t: torch.Tensor, squeeze: bool) -> np.ndarray:
    x = t.permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(x[..., 0] if squeeze and x.shape[-1] == 1 else x, dtype=np.float32)


def quantize(x: np.ndarray) -> np.ndarray:
    """Float images in [-1, 1] -> the nearest uint8 level, with exactly the arithmetic of data.to_uint8."""
    x = np.asarray(x, dtype=np.float32)
    return np.clip(np.rint((x + np.float32(1.0)) * np.float32(127.5)), 0, 255).astype(np.uint8)


def _module_device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ------------------------------------------------------------------------------------------------------ training
class _ImagePool:
    """The official image history: once full, each new fake is swapped (with probability 1/2) for a stored one,
    so the discriminators also see older generator outputs. Seeded, on the training device."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng, self.images, self.count = size, rng, None, 0

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        fakes = fakes.detach()  # the discriminator step must not reach back into the generators
        if self.size == 0:
            return fakes
        if self.images is None:
            self.images = torch.empty((self.size, *fakes.shape[1:]), dtype=fakes.dtype, device=fakes.device)
        out = []
        for img in fakes:
            if self.count < self.size:
                self.images[self.count] = img
                self.count += 1
                out.append(img)
            elif self.rng.random() > 0.5:
                j = int(self.rng.integers(self.size))
                out.append(self.images[j].clone())
                self.images[j] = img
            else:
                out.append(img)
        return torch.stack(out)


class _Batches:
    """Seeded batches of indices: each image once per epoch, in a fresh random order each epoch."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.order = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        if len(self.order) < self.batch_size:
            self.order = torch.cat([self.order, torch.randperm(self.n, generator=self.gen)])
        idx, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        return idx


def _check_domains(model: CycleGAN, domain_a, domain_b, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(domain_a), np.asarray(domain_b)
    for x, name in ((a, "domain_a"), (b, "domain_b")):
        if x.dtype != np.uint8:
            raise TypeError(f"{name} must be uint8 images (N,H,W) or (N,H,W,C), got {x.dtype}; convert floats in "
                            "[-1, 1] with cyclegan.quantize or data.to_uint8")
        _image_shape(x, name)
    sa, sb = _image_shape(a, "domain_a"), _image_shape(b, "domain_b")
    if sa != sb:
        raise ValueError(f"domain_a and domain_b must have the same image shape (H,W,C): got {sa} and {sb}")
    channels = model.config["channels"]
    if sa[2] != channels:
        raise ValueError(f"the images have {sa[2]} channel(s), the model was made with channels={channels}")
    _check_size(sa[0], sa[1], "the images")
    side = patch_size(min(sa[:2]), model.config["n_layers"])
    if side < 1:
        raise ValueError(f"{sa[0]}x{sa[1]} images are too small for a PatchGAN with n_layers="
                         f"{model.config['n_layers']} (its patch map would be empty); use fewer n_layers")
    for x, name in ((a, "domain_a"), (b, "domain_b")):
        if len(x) < batch_size:
            raise ValueError(f"{name} has {len(x)} images, fewer than batch_size={batch_size}; give more images "
                             "or a smaller batch_size")
    return a, b


def train_cyclegan(model: CycleGAN, domain_a, domain_b, *, steps: int = 1000, batch_size: int = 8,
                   lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), lambda_cycle: float = 10.0,
                   lambda_identity: float = 0.5, pool_size: int = 50, seed: int = 0, device: str = "auto",
                   progress: bool = True) -> tuple[CycleGAN, dict[str, np.ndarray]]:
    """Train (or keep training) a CycleGAN on two unpaired uint8 image sets, as the official recipe does.

    Least-squares GAN losses, cycle L1 weighted lambda_cycle, identity L1 weighted lambda_cycle * lambda_identity,
    a history pool of pool_size fakes per discriminator, Adam, the learning rate constant for the first half of
    the steps and decaying linearly over the second. Batches of A and B are drawn independently (unpaired).

    Returns (model in eval mode, losses): per step 'adv' (the two generator LSGAN terms), 'cycle' and 'identity'
    (the plain L1 sums of both directions, unweighted), 'G' (adv + the weighted cycle and identity terms) and
    'D_A', 'D_B' (each half the sum of its real and fake MSE, as in the official code).
    """
    steps, batch_size = int(steps), int(batch_size)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    if lambda_cycle < 0 or lambda_identity < 0 or pool_size < 0 or lr <= 0:
        raise ValueError(f"lambda_cycle, lambda_identity and pool_size must be >= 0 and lr > 0, got {lambda_cycle}, "
                         f"{lambda_identity}, {pool_size}, {lr}")
    a_np, b_np = _check_domains(model, domain_a, domain_b, batch_size)
    a_all, b_all = to_float(a_np), to_float(b_np)  # kept on the CPU; batches move to the device

    device = pick_device(device)
    memory = memory_format(device)
    model = model.to(device, memory_format=memory).train()
    opt_g = torch.optim.Adam(itertools.chain(model.G_AB.parameters(), model.G_BA.parameters()), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(itertools.chain(model.D_A.parameters(), model.D_B.parameters()), lr=lr, betas=betas)
    half = steps // 2
    # the official 'linear' policy, per step: constant, then linearly towards (not quite) zero
    decay = lambda s: 1.0 - max(0, s - half + 1) / (steps - half + 1)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_g, opt_d)]
    batches_a = _Batches(len(a_all), batch_size, torch_generator(seed, 0, BATCH_A_STREAM))
    batches_b = _Batches(len(b_all), batch_size, torch_generator(seed, 0, BATCH_B_STREAM))
    pool_a = _ImagePool(pool_size, generation_rng(seed, 0, POOL_STREAM))
    pool_b = _ImagePool(pool_size, generation_rng(seed, 1, POOL_STREAM))
    w_idt = lambda_cycle * lambda_identity
    history = torch.zeros((steps, len(LOSS_KEYS)), dtype=torch.float32, device=device)  # read back once, at the end
    dis = (model.D_A, model.D_B)

    def lsgan(pred, real: bool):
        return F.mse_loss(pred.float(), torch.full_like(pred, 1.0 if real else 0.0, dtype=torch.float32))

    bar = tqdm(range(steps), desc="cyclegan training", disable=not progress)
    for step in bar:
        real_a = a_all[batches_a.next()].to(device, memory_format=memory)
        real_b = b_all[batches_b.next()].to(device, memory_format=memory)

        # generators, with the discriminators frozen (their gradients would be thrown away)
        for d in dis:
            d.requires_grad_(False)
        with autocast(device):
            fake_b = model.G_AB(real_a)
            fake_a = model.G_BA(real_b)
            rec_a, rec_b = model.G_BA(fake_b), model.G_AB(fake_a)
            adv = lsgan(model.D_B(fake_b), True) + lsgan(model.D_A(fake_a), True)
            cycle = F.l1_loss(rec_a.float(), real_a) + F.l1_loss(rec_b.float(), real_b)
            if w_idt > 0:  # G_AB should leave images of B alone, G_BA those of A
                identity = (F.l1_loss(model.G_AB(real_b).float(), real_b) +
                            F.l1_loss(model.G_BA(real_a).float(), real_a))
            else:
                identity = torch.zeros((), device=device)
        loss_g = adv + lambda_cycle * cycle + w_idt * identity
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        # discriminators: real vs a fake from the history pool
        for d in dis:
            d.requires_grad_(True)
        with autocast(device):
            old_a, old_b = pool_a.query(fake_a), pool_b.query(fake_b)
            loss_da = 0.5 * (lsgan(model.D_A(real_a), True) + lsgan(model.D_A(old_a), False))
            loss_db = 0.5 * (lsgan(model.D_B(real_b), True) + lsgan(model.D_B(old_b), False))
        opt_d.zero_grad(set_to_none=True)
        (loss_da + loss_db).backward()
        opt_d.step()
        for s in scheds:
            s.step()

        history[step] = torch.stack([loss_g, loss_da, loss_db, cycle, identity, adv]).detach().float()
        if step % 20 == 0 or step == steps - 1:
            g, c = history[max(0, step - 19):step + 1, [0, 3]].mean(0).tolist()
            bar.set_postfix(G=f"{g:.3f}", cycle=f"{c:.3f}")
    h = history.cpu().numpy()
    return model.eval(), {k: h[:, i].copy() for i, k in enumerate(LOSS_KEYS)}


# --------------------------------------------------------------------------------------------------- save, load
def save_cyclegan(model: CycleGAN, folder) -> Path:
    """folder/cyclegan.safetensors (all four networks) and folder/cyclegan.json (make_cyclegan's settings),
    written to a temporary folder and renamed, so a folder is either complete or absent."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        save_file(state, str(tmp / WEIGHTS_FILE))
        write_json(tmp / CONFIG_FILE, {"kind": "cyclegan", **model.config})
    return folder


def load_cyclegan(folder, device: str = "cpu") -> CycleGAN:
    """A CycleGAN saved by save_cyclegan, in eval mode; a missing or unreadable file says which and what to do."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for f in (folder / CONFIG_FILE, folder / WEIGHTS_FILE):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: {folder} is not a model saved by cyclegan.save_cyclegan")
    cfg = read_json(folder / CONFIG_FILE)
    keys = set(CycleGAN().config)
    if not isinstance(cfg, dict) or cfg.get("kind") != "cyclegan" or set(cfg) - {"kind"} != keys:
        raise CacheError(f"{folder / CONFIG_FILE} is not a CycleGAN configuration (want kind='cyclegan' and "
                         f"{sorted(keys)}); delete {folder} and save the model again")
    model = CycleGAN(**{k: cfg[k] for k in keys})
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    except Exception as e:  # noqa: BLE001 - a truncated file, a foreign file or a shape mismatch: all unusable
        raise CacheError(f"{folder / WEIGHTS_FILE} holds no readable weights for this CycleGAN "
                         f"({type(e).__name__}: {e}); delete {folder} and train or save the model again") from e
    return model.to(pick_device(device)).eval()


# ------------------------------------------------------------------------------------------------- translating
@torch.inference_mode()
def _run_generators(generators: list[nn.Module], images, batch_size: int, device) -> np.ndarray:
    """Apply generators one after another to (N,H,W[,C]) images, batch by batch, in fp32 and eval mode."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _module_device(generators[0]) if device is None else pick_device(str(device))
    x_all, squeeze = _to_nchw(images, getattr(generators[0], "input_nc", None))
    memory = memory_format(device)
    modes = [g.training for g in generators]
    try:
        for g in generators:
            g.to(device, memory_format=memory).eval()
        # fp32 also on CUDA: the iterated map's attractors should not depend on bf16 rounding
        out = [_apply(generators, x_all[i:i + batch_size].to(device, memory_format=memory)).float().cpu()
               for i in range(0, len(x_all), batch_size)]
    finally:
        for g, m in zip(generators, modes):
            g.train(m)
    y = torch.cat(out) if out else torch.empty((0, getattr(generators[-1], "output_nc", x_all.shape[1]),
                                                *x_all.shape[2:]))
    return _from_nchw(y, squeeze)


def _apply(generators, x):
    for g in generators:
        x = g(x)
    return x


def translate(generator: nn.Module, images, *, batch_size: int = 256, device=None) -> np.ndarray:
    """generator(images) as float32 in [-1, 1], in the input's layout ((N,H,W) stays (N,H,W)).

    images: uint8, or float in [-1, 1]; device None runs where the generator is.
    """
    return _run_generators([generator], images, batch_size, device)


# ---------------------------------------------------------------------------------------- the iterated cycle
def cycle_map(model: CycleGAN, *, quantize: bool = True, batch_size: int = 256, device=None):
    """f(x) = G_BA(G_AB(x)) on image arrays. quantize=True rounds each result to the uint8 grid (returns uint8,
    as if every step were saved as an image file); False returns float32 in [-1, 1] and never rounds.
    The intermediate G_AB(x) is not rounded."""
    do_round = quantize
    generators = [model.G_AB, model.G_BA]

    def f(x):
        y = _run_generators(generators, x, batch_size, device)
        return _quantize(y) if do_round else y

    return f


_quantize = quantize  # cycle_map's argument shadows the function's name


class CycleStep:
    """The CycleGAN operator T for chain.run_chain: state {"images", "labels"} -> the cycle of the images, the
    labels carried along unchanged (they name the start, so basins can be read per class)."""

    def __init__(self, model: CycleGAN, quantize: bool = True, *, batch_size: int = 256, device=None):
        self.model, self.quantize = model, quantize
        self.fn = cycle_map(model, quantize=quantize, batch_size=batch_size, device=device)

    def __call__(self, state: dict, ctx=None) -> dict:
        if not isinstance(state, dict) or "images" not in state or "labels" not in state:
            raise ValueError("CycleStep's state must be a dict with 'images' and 'labels'")
        return {"images": self.fn(state["images"]), "labels": np.asarray(state["labels"], dtype=np.int64)}


def iterate_map(fn, x0, n_steps: int) -> np.ndarray:
    """The trajectory x_0, fn(x_0), ..., fn^n(x_0) as one array (n_steps+1, N, ...).

    The trajectory takes fn's output dtype; a uint8 start under a float map is put on the networks' [-1, 1]
    scale first, so that every row of the trajectory is on one scale.
    """
    if int(n_steps) != n_steps or n_steps < 0:
        raise ValueError(f"n_steps must be a whole number >= 0, got {n_steps!r}")
    x0 = np.asarray(x0)
    n_steps = int(n_steps)
    if n_steps == 0:
        return x0[None].copy()
    x = np.asarray(fn(x0))
    dtype = x.dtype
    if dtype == np.uint8 and x0.dtype != np.uint8:
        raise ValueError(f"the map returns uint8 but x0 is {x0.dtype}: a trajectory holds one scale, so start a "
                         "quantised map from uint8 images (cyclegan.quantize(x0))")
    out = np.empty((n_steps + 1, *x0.shape), dtype=dtype)  # one allocation: trajectories can be large
    out[0] = x0.astype(dtype) / dtype.type(127.5) - dtype.type(1.0) if (
        x0.dtype == np.uint8 and dtype != np.uint8) else x0
    for t in range(1, n_steps + 1):
        if x.shape != x0.shape:
            raise ValueError(f"the map changed the shape at step {t}: {x0.shape} -> {x.shape}")
        out[t] = x
        if t < n_steps:
            x = np.asarray(fn(out[t]))
    return out


# ------------------------------------------------------------------------------------ domains and a cached model
def source_modules() -> tuple[str, ...]:
    """The package modules a CycleGAN run's numbers depend on: this module's import closure, computed."""
    from .store import import_closure
    return import_closure("cyclegan")


def parse_domain(spec: str) -> tuple[str, list[int] | None]:
    """'mnist:0-4' -> ('mnist', [0..4]); 'mnist:1,7' -> ('mnist', [1, 7]); 'mnist' -> ('mnist', None);
    anything else is a folder path (one sub-folder per class) -> (path, None)."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("a domain must be 'mnist[:classes]' or an image folder, got ''")
    name, _, classes = spec.partition(":")
    if name.lower() != "mnist":
        return spec, None
    if not classes:
        return "mnist", None
    out: list[int] = []
    try:
        for part in classes.split(","):
            lo, _, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"domain {spec!r}: classes must look like 0-4 or 1,7,9") from None
    if not out or min(out) < 0 or max(out) > 9:
        raise ValueError(f"domain {spec!r}: MNIST classes lie in 0-9")
    return "mnist", sorted(set(out))


def load_domain(spec: str, *, resolution: int = 28, n_train: int = 0, seed: int = 0) -> dict:
    """One domain as {"train": ImageSet, "test": ImageSet}: MNIST's own split for 'mnist[:classes]' (28x28 grey,
    labels kept), or a seeded 20% of each class held out of an image folder (resized to `resolution`, RGB).
    n_train > 0 keeps a class-balanced subset of that many training images."""
    from .data import ImageSet, load_image_folder, load_mnist, stratified_subset

    source, classes = parse_domain(spec)
    if source == "mnist":
        parts = {}
        digits = classes if classes is not None else list(range(10))
        for split in ("train", "test"):
            full = load_mnist(split)
            keep = np.isin(full.labels, digits)
            # labels renumbered 0..k-1 within the domain; class_names keep the digits
            labels = np.searchsorted(np.asarray(digits), full.labels[keep]).astype(np.int64)
            parts[split] = ImageSet(full.images[keep], labels, source=f"MNIST {split} ({spec})",
                                    fingerprint=f"{full.fingerprint}:{spec}", n_classes=len(digits),
                                    class_names=tuple(str(d) for d in digits))
    else:
        from .features import holdout_split
        train, test = holdout_split(load_image_folder(source, resolution=resolution), 0.2, seed=seed)
        parts = {"train": train, "test": test}
    if n_train and n_train < len(parts["train"]):
        parts["train"] = stratified_subset(parts["train"], n_train, seed=seed)
    return parts


def trained_model(spec: CycleGANModelSpec, *, progress: bool = True) -> tuple[CycleGAN, dict]:
    """The CycleGAN of a model spec and its domains {"a_train", "b_train", "a_test",
    "b_test"}: the official generators when `official_g_ab` and `official_g_ba` are given, else trained on the
    two domains once and cached in data/models/cyclegan/<key>/ (training.json records losses and time)."""
    import time

    from .store import data_dir, package_source_hash, run_key

    if type(spec) is not CycleGANModelSpec:  # a chain's or notebook's fields would enter the model's key
        raise TypeError(f"trained_model takes a CycleGANModelSpec (spec.model_spec()), got {type(spec).__name__}")
    a = load_domain(spec.domain_a, resolution=spec.resolution, n_train=spec.n_train, seed=spec.seed)
    b = load_domain(spec.domain_b, resolution=spec.resolution, n_train=spec.n_train, seed=spec.seed)
    domains = {"a_train": a["train"], "b_train": b["train"], "a_test": a["test"], "b_test": b["test"]}
    channels = 1 if a["train"].images.ndim == 3 else a["train"].images.shape[-1]
    if spec.official_g_ab:
        model = CycleGAN(channels=channels, ngf=spec.official_ngf, n_blocks=spec.official_n_blocks, ndf=spec.ndf,
                         n_layers=spec.n_layers)
        for name, path in (("G_AB", spec.official_g_ab), ("G_BA", spec.official_g_ba)):
            setattr(model, name, load_official_generator(path, input_nc=channels, output_nc=channels,
                                                         ngf=spec.official_ngf, n_blocks=spec.official_n_blocks))
        model.info = {"official": [str(spec.official_g_ab), str(spec.official_g_ba)]}
        return model.eval(), domains
    params = {k: v for k, v in spec.key().items() if not k.startswith("official_")}
    fingerprint = f"{a['train'].fingerprint}|{b['train'].fingerprint}"
    folder = data_dir() / "models" / "cyclegan" / run_key(params, fingerprint, package_source_hash(source_modules()))
    if (folder / "training.json").exists():
        model = load_cyclegan(folder)
        model.info, model.folder = read_json(folder / "training.json"), folder
        return model, domains
    model = make_cyclegan(channels=channels, ngf=spec.ngf, n_blocks=spec.n_blocks, ndf=spec.ndf, n_layers=spec.n_layers,
                          seed=spec.seed)
    t0 = time.perf_counter()
    model, losses = train_cyclegan(model, a["train"].images, b["train"].images, steps=spec.train_steps,
                                   batch_size=spec.batch_size, lr=spec.lr, lambda_cycle=spec.lambda_cycle,
                                   lambda_identity=spec.lambda_identity, pool_size=spec.pool_size, seed=spec.seed,
                                   device=spec.device, progress=progress)
    save_cyclegan(model, folder)
    head = max(1, min(100, spec.train_steps // 10))
    info = {"params": params, "data_fingerprint": fingerprint, "seconds": round(time.perf_counter() - t0, 1),
            "loss_first": {k: float(v[:head].mean()) for k, v in losses.items()},
            "loss_last": {k: float(v[-head:].mean()) for k, v in losses.items()}}
    np.savez(folder / "losses.npz", **losses)
    write_json(folder / "training.json", info)  # written last: its presence marks a complete model
    model.info, model.folder = info, folder
    return model.cpu().eval(), domains


def training_losses(model: CycleGAN) -> dict:
    """The per-step losses of a model made by trained_model (read from its folder)."""
    folder = getattr(model, "folder", None)
    if folder is None or not (Path(folder) / "losses.npz").exists():
        raise FileNotFoundError("this model has no recorded losses (official generators, or not made by "
                                "trained_model)")
    with np.load(Path(folder) / "losses.npz") as z:
        return {k: z[k] for k in z.files}


def smoothed_losses(model: CycleGAN, keys=("G", "cycle", "D_A", "D_B"), *, n_windows: int = 50) -> dict:
    """{loss: (steps, moving average)} of a model made by trained_model, for a training-curve plot: each recorded
    per-step loss averaged over windows of len // n_windows steps (at least 1), at the window's first step."""
    losses = training_losses(model)
    out = {}
    for k in keys:
        w = max(1, len(losses[k]) // n_windows)
        out[k] = (np.arange(len(losses[k]) - w + 1), np.convolve(losses[k], np.ones(w) / w, mode="valid"))
    return out


def run_cycles(spec: CycleGANSpec, model: CycleGAN, starts, *, quantize: bool, progress: bool = True):
    """spec.n_cycles of x -> F(G(x)) from starts (an ImageSet, or a dict with uint8 "images" and "labels"),
    through chain.run_chain (cached per cycle in data/runs/cyclegan/<key>/; n_cycles is not in the key, so a
    longer run extends a shorter one). The key: the model spec, the number of starts, quantize, the model's
    weights, the starts' content and the source of every module this one imports."""
    from types import SimpleNamespace

    from .chain import run_chain
    from .store import array_fingerprint, run_dir

    if type(spec) is not CycleGANSpec:
        raise TypeError(f"run_cycles takes a CycleGANSpec (specs.build(CycleGANSpec, cfg)), got {type(spec).__name__}")
    if isinstance(starts, dict):
        starts = SimpleNamespace(images=np.asarray(starts["images"]), labels=np.asarray(starts["labels"]))
    if starts.images.dtype != np.uint8:
        raise TypeError(f"starts must be uint8 images, got {starts.images.dtype}")

    params = spec.model_spec().key() | {"n_starts": len(starts.images), "quantize": bool(quantize)}
    weights = array_fingerprint(*[p.detach().cpu().numpy() for p in model.parameters()])
    fingerprint = f"{weights}|{array_fingerprint(starts.images, starts.labels)}"
    initial = {"images": starts.images, "labels": starts.labels.astype(np.int64)}
    if not quantize:  # a float chain starts from the same images on the [-1, 1] scale
        initial["images"] = to_float(starts.images).numpy().reshape(starts.images.shape).astype(np.float32)
    step = CycleStep(model, quantize=quantize, device=spec.device)
    return run_chain(step, initial, spec.n_cycles, run_dir=run_dir("cyclegan", params, fingerprint,
                                                                   modules=source_modules()),
                     seed=spec.seed, desc=f"cycles (quantize={quantize})", progress=progress)


def attractor_run(spec: CycleGANSpec, model: CycleGAN, domains: dict, *, quantize: bool | None = None,
                  progress: bool = True):
    """(starts, run): spec.n_starts class-balanced held-out domain-A images iterated spec.n_cycles times
    (quantize: the spec's by default). 04 makes it and records it; 05 reads it from 04's record."""
    from .data import stratified_subset

    starts = stratified_subset(domains["a_test"], spec.n_starts, seed=spec.seed)
    q = spec.quantize if quantize is None else quantize
    return starts, run_cycles(spec, model, starts, quantize=q, progress=progress)


def trajectory(result) -> np.ndarray:
    """(cycles + 1, N, ...) states of a run_cycles result, for find_attractors: uint8 as stored (read on the 0-1
    scale), float states moved from [-1, 1] to [0, 1] so that one tol means the same in both modes."""
    x = np.stack([s["images"] for s in result.states])
    return x if x.dtype == np.uint8 else ((x.astype(np.float32) + 1) / 2)


def trajectory_clouds(trajectory) -> list[np.ndarray]:
    """A trajectory (cycles + 1, N, ...) as one (N, pixels) float cloud per cycle on the 0-1 scale, for the
    diagnostics (drift, geometry, the claim's measures)."""
    flat, scale = _flat(trajectory)
    return [c.astype(np.float64) * scale for c in flat]


# -------------------------------------------------------------------------- the attractors of a configuration
def data_source(spec: CycleGANModelSpec) -> str:
    """The data-source line of a CycleGAN's outputs (figure stamps, JSON)."""
    kind = ("official generators" if spec.official_g_ab else "real MNIST" if str(spec.domain_a).startswith("mnist")
            else "image folders")
    return f"{spec.domain_a} -> {spec.domain_b} ({kind})"


def attractor_reports(spec: CycleGANSpec, model: CycleGAN, domains: dict, *, progress: bool = True) -> tuple:
    """(starts, runs, reports) of a CycleGAN spec in both quantisation modes, the spec's own first: attractor_run's starts (the same in both modes) and {quantize: run} and
    {quantize: find_attractors report at the configuration's tol and max_period}."""
    runs, reports = {}, {}
    for q in (spec.quantize, not spec.quantize):
        starts, runs[q] = attractor_run(spec, model, domains, quantize=q, progress=progress)
        reports[q] = find_attractors(trajectory(runs[q]), tol=spec.tol, max_period=spec.max_period)
    return starts, runs, reports


def attractor_numbers(spec: CycleGANSpec, model: CycleGAN, starts, reports: dict, trajectory) -> dict:
    """The key numbers of a CycleGAN spec's attractors (figures/04_cyclegan_attractors.json): both
    modes' attractor reports, the share of each start class in each of the 10 largest basins (rounded to 4
    places) and how far apart the basins end, of the configuration's own mode (`trajectory`: its states, as
    trajectory() gives them); the training record of a trained (not official) model."""
    from .attractors import class_by_basin

    labels = reports[spec.quantize].labels
    official = bool(spec.official_g_ab)
    numbers = {"domains": [spec.domain_a, spec.domain_b], "official_generators": official, "n_starts": spec.n_starts,
               "n_cycles": spec.n_cycles, "tol": spec.tol,
               "attractors": {f"quantize={q}": r.to_json() for q, r in reports.items()},
               "start_class_by_basin": class_by_basin(labels, starts.labels,
                                                      class_names=starts.class_names).round(4).to_dict(),
               "min_distance_between_basins_last_cycle": pairs_apart(trajectory, labels)}
    if not official:
        numbers["training"] = {k: model.info[k] for k in ("seconds", "loss_first", "loss_last")}
    return numbers
