"""Chain spaces (issue 15): the autoencoder spec, training and cache, LatentSpace and PixelSpace, diffusion in a
latent space end to end, and generation0_quality. Tiny models, one thread: seconds."""
import numpy as np
import pytest
import torch

from resonance_utils import diffusion, latent, store
from resonance_utils.data import load_mnist, stratified_subset
from resonance_utils.features import MnistClassifier, classify
from resonance_utils.latent import AutoencoderSpec, LatentSpace, PixelSpace

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_AE = dict(block_channels=(8, 8, 8), norm_groups=4, train_steps=20, batch_size=16, device="cpu")
TINY_UNET = dict(base_channels=8)


@pytest.fixture(scope="module")
def digits():
    return stratified_subset(load_mnist("test"), 200, seed=0)


@pytest.fixture(scope="module")
def trained_space(digits):
    space, info = latent.train_autoencoder(digits.images, AutoencoderSpec(**TINY_AE), progress=False)
    return space, info


# ------------------------------------------------------------------------------------------------------ the spec
def test_spec_defaults_and_key():
    spec = AutoencoderSpec()
    assert spec.latent_channels == 4 and spec.downsampling() == 4  # 28 -> 7
    assert "device" not in spec.key() and spec.key()["block_channels"] == list(spec.block_channels)
    assert AutoencoderSpec(lr=1).lr == 1.0  # coerced


@pytest.mark.parametrize("field, value", [("latent_channels", 0), ("lr", 0.0), ("train_steps", 0), ("batch_size", 0),
                                          ("kl_weight", -1.0), ("block_channels", (16, 0)), ("layers_per_block", 0)])
def test_spec_rejects_out_of_range_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        AutoencoderSpec(**{field: value})


def test_spec_rejects_groups_that_do_not_divide_the_widths():
    with pytest.raises(ValueError, match="norm_groups"):
        AutoencoderSpec(block_channels=(16, 30), norm_groups=8)
    with pytest.raises(ValueError, match="attention"):
        AutoencoderSpec(attention="yes")


# ------------------------------------------------------------------------------------------------ LatentSpace
def test_encode_decode_shapes_dtypes_and_scaling(trained_space, digits):
    space, info = trained_space
    assert space.latent_shape == (4, 7, 7) and space.image_shape == (28, 28)
    z = space.encode(digits.images)
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32 and tuple(z.shape) == (200, 4, 7, 7)
    # shift and scale are fitted on exactly these images (fewer than STATS_SIZE): mean 0, variance 1
    assert abs(float(z.mean())) < 1e-4 and float(z.double().std()) == pytest.approx(1.0, abs=1e-4)
    assert space.clip_range == pytest.approx(float(z.abs().max()), rel=1e-4)
    assert space.scale == pytest.approx(info["scale"]) and space.shift == pytest.approx(info["shift"])
    x = space.decode(z[:7])
    assert x.dtype == np.uint8 and x.shape == (7, 28, 28)
    assert np.array_equal(space.decode(z[:7].numpy()), x)  # numpy in, same out
    err = space.reconstruction_error(digits.images[:50])
    assert 0 < err < 0.5 and isinstance(err, float)
    assert 0 < info["rec_loss_last_100"] < 2 and info["train_reconstruction_rms"] == pytest.approx(
        space.reconstruction_error(digits.images[:200]))


def test_encode_and_decode_check_their_inputs(trained_space, digits):
    space, _ = trained_space
    with pytest.raises(TypeError, match="uint8"):
        space.encode(digits.images.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        space.encode(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="latents must have shape"):
        space.decode(torch.zeros(2, 4, 8, 8))


def test_training_is_deterministic_on_the_cpu(digits):
    spec = AutoencoderSpec(**(TINY_AE | {"train_steps": 3}))
    a, _ = latent.train_autoencoder(digits.images[:64], spec, progress=False)
    b, _ = latent.train_autoencoder(digits.images[:64], spec, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.vae.parameters(), b.vae.parameters()))
    assert a.scale == b.scale and a.shift == b.shift


def test_autoencoder_is_cached_and_read_back_without_training(digits, monkeypatch):
    spec = AutoencoderSpec(**(TINY_AE | {"train_steps": 3}))
    first = latent.autoencoder(spec, digits.images[:64], "fingerprint-a", progress=False)
    root = store.data_dir() / "models" / "autoencoder"
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(folders) == 1 and (folders[0] / "training.json").exists() and first.fingerprint == folders[0].name
    record = store.read_json(folders[0] / "training.json")
    assert record["data_fingerprint"] == "fingerprint-a" and record["params"]["n_images"] == 64

    def fail(*a, **k):
        raise AssertionError("retrained although the autoencoder is cached")

    monkeypatch.setattr(latent, "train_autoencoder", fail)
    again = latent.autoencoder(spec, digits.images[:64], "fingerprint-a", progress=False)
    assert isinstance(again, LatentSpace) and again.fingerprint == first.fingerprint
    assert again.clip_range == pytest.approx(first.clip_range) and again.scale == pytest.approx(first.scale)
    assert torch.equal(again.encode(digits.images[:8]), first.encode(digits.images[:8]))
    assert np.array_equal(again.decode(first.encode(digits.images[:8])), first.decode(first.encode(digits.images[:8])))
    with pytest.raises(AssertionError, match="retrained"):  # another data fingerprint is another autoencoder
        latent.autoencoder(spec, digits.images[:64], "fingerprint-b", progress=False)


def test_load_space_names_a_damaged_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        latent.load_space(tmp_path)


# ------------------------------------------------------------------------------------------------- PixelSpace
def test_pixel_space_round_trip_is_exact():
    space = PixelSpace()
    x = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    assert np.array_equal(space.decode(space.encode(x)), x) and space.reconstruction_error(x) == 0.0
    rgb = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(space.decode(space.encode(rgb)), rgb)
    assert space.key() == {"space": "pixel"} and space.clip_range == 1.0


def test_pixel_space_gives_the_results_of_space_none(digits):
    model = diffusion.make_unet(num_classes=10, base_channels=8, channel_mult=(1, 2))
    kw = dict(steps=3, batch_size=8, device="cpu", progress=False)
    a, la = diffusion.train_diffusion(diffusion.make_unet(num_classes=10, base_channels=8, channel_mult=(1, 2)),
                                      digits.images[:32], digits.labels[:32], **kw)
    b, lb = diffusion.train_diffusion(model, digits.images[:32], digits.labels[:32], space=PixelSpace(), **kw)
    assert np.array_equal(la, lb) and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    skw = dict(labels=np.arange(6) % 10, guidance_scale=2.0, ddim_steps=3, device="cpu", progress=False)
    assert np.array_equal(diffusion.sample(a, 6, **skw), diffusion.sample(a, 6, space=PixelSpace(), **skw))
    fkw = dict(strength=0.5, ddim_steps=4, device="cpu", progress=False)
    assert np.array_equal(diffusion.feedback_step(a, digits.images[:6], **fkw),
                          diffusion.feedback_step(a, digits.images[:6], space=PixelSpace(), **fkw))


# -------------------------------------------------------------------------------------- diffusion in latent space
@pytest.fixture(scope="module")
def latent_model(trained_space, digits):
    space, _ = trained_space
    model = latent.latent_unet(space, num_classes=10, **TINY_UNET)
    assert model.config.sample_size == 7 and model.config.in_channels == 4
    model, losses = diffusion.train_diffusion(model, digits.images, digits.labels, steps=4, batch_size=16,
                                              device="cpu", progress=False, space=space)
    assert losses.shape == (4,) and np.isfinite(losses).all()
    return model


def test_latent_diffusion_trains_samples_and_feeds_back(latent_model, trained_space, digits):
    space, _ = trained_space
    kw = dict(ddim_steps=3, device="cpu", progress=False, space=space)
    x = diffusion.sample(latent_model, 5, labels=np.arange(5), guidance_scale=2.0, **kw)
    assert x.dtype == np.uint8 and x.shape == (5, 28, 28)
    assert np.array_equal(x, diffusion.sample(latent_model, 5, labels=np.arange(5), guidance_scale=2.0, **kw))
    # the noise is drawn up front: the batch size (256 by default on a CPU in a latent space) changes nothing
    assert np.array_equal(x, diffusion.sample(latent_model, 5, labels=np.arange(5), guidance_scale=2.0, batch_size=2,
                                              **kw))
    y = diffusion.feedback_step(latent_model, digits.images[:5], strength=0.4, **kw)
    assert y.dtype == np.uint8 and y.shape == (5, 28, 28)
    # strength 1 starts from pure noise: the same images as sample with the same seeds
    assert np.array_equal(diffusion.feedback_step(latent_model, digits.images[:5], strength=1.0, **kw),
                          diffusion.sample(latent_model, 5, **kw))


def test_a_model_of_another_space_is_refused(latent_model, trained_space, digits):
    space, _ = trained_space
    pixel_model = diffusion.make_unet(num_classes=10, base_channels=8, channel_mult=(1, 2))
    with pytest.raises(ValueError, match="latent_unet"):
        diffusion.train_diffusion(pixel_model, digits.images[:8], digits.labels[:8], steps=1, device="cpu",
                                  progress=False, space=space)
    with pytest.raises(ValueError, match="shape"):  # the latent model without its space
        diffusion.feedback_step(latent_model, digits.images[:2], device="cpu", progress=False)


def test_odd_latent_grids_get_one_level_and_the_scheduler_clips_to_the_space():
    spec = AutoencoderSpec(**TINY_AE)
    space = LatentSpace(latent.make_autoencoder(spec), clip_range=None, device="cpu")
    assert latent.latent_unet(space).config.block_out_channels == (32,)
    with pytest.raises(ValueError, match="divisible"):
        diffusion.make_unet(resolution=7, channels=4, channel_mult=(1, 2))
    assert diffusion.noise_scheduler(latent.latent_unet(space), "ddim", clip_range=None).config.clip_sample is False
    s = diffusion.noise_scheduler(latent.latent_unet(space), "ddim", clip_range=4.5)
    assert s.config.clip_sample and s.config.clip_sample_range == 4.5
    assert diffusion.noise_scheduler(latent.latent_unet(space)).config.clip_sample_range == 1.0


# ---------------------------------------------------------------------------------------- generation-0 quality
def test_generation0_quality_fields_and_a_direct_recomputation(latent_model, trained_space, digits):
    space, _ = trained_space
    torch.manual_seed(0)
    clf = MnistClassifier().eval()  # untrained: the numbers mean nothing, the bookkeeping is what is tested
    n = 20
    q = latent.generation0_quality(latent_model, clf, digits, space=space, n=n, guidance_scale=2.0, ddim_steps=2,
                                   seed=3, device="cpu", return_samples=True)
    for key in ("guided_accuracy", "confident_share", "fid", "fid_guided", "fid_unguided", "fid_floor", "fid_ratio"):
        assert np.isfinite(q[key]) and q[key] >= 0, key
    assert 0 <= q["guided_accuracy"] <= 1 and 0 <= q["confident_share"] <= 1 and q["fid_floor"] > 0
    assert q["fid"] == q["fid_guided"] and q["fid_ratio"] == pytest.approx(q["fid"] / q["fid_floor"])
    assert set(q["passes"]) == set(latent.QUALITY_BARS) and q["space"]["space"] == "latent" and q["n"] == n
    # the guided accuracy from samples drawn here directly, with the same seeds
    labels = np.arange(n) % 10
    direct = diffusion.sample(latent_model, n, labels=labels, guidance_scale=2.0, ddim_steps=2, seed=3, device="cpu",
                              progress=False, space=space)
    assert np.array_equal(direct, q["samples"]["guided"])
    assert q["guided_accuracy"] == float((classify(clf, direct).argmax(1) == labels).mean())
    probs = classify(clf, q["samples"]["unguided"])
    assert q["confident_share"] == float((probs.max(1) >= latent.CONFIDENT).mean())
    with pytest.raises(ValueError, match="2n"):
        latent.generation0_quality(latent_model, clf, digits, space=space, n=150, device="cpu")
    # other bars decide "passes" by the same values; the table shows each bar with its verdict
    strict = latent.generation0_quality(latent_model, clf, digits, space=space, n=n, guidance_scale=2.0, ddim_steps=2,
                                        seed=3, device="cpu", bars={"guided_accuracy": 0.0, "confident_share": 1.01,
                                                                    "fid_ratio": 1e9})
    assert strict["guided_accuracy"] == q["guided_accuracy"]
    assert strict["passes"] == {"guided_accuracy": True, "confident_share": False, "fid_ratio": True}
    table = latent.quality_table(strict)
    assert table["bar"].tolist() == [0.0, 1.01, 1e9] and table["met"].tolist() == [True, False, True]
    # a subset of bars (ImageNet-5's one bar) judges only those; a misspelt bar is an error, not a silent pass
    one = latent.generation0_quality(latent_model, clf, digits, space=space, n=n, guidance_scale=2.0, ddim_steps=2,
                                     seed=3, device="cpu", bars=latent.IMAGENET_QUALITY_BARS, feature_network="ours")
    assert one["passes"] == {"guided_accuracy": q["guided_accuracy"] >= 0.9} and one["feature_network"] == "ours"
    assert latent.quality_table(one)["measure"].tolist() == ["guided_accuracy"]
    with pytest.raises(ValueError, match="fid_ration"):
        latent.generation0_quality(latent_model, clf, digits, space=space, n=n, ddim_steps=2, device="cpu",
                                   bars={"fid_ration": 3.0})


def test_generation0_quality_of_an_unconditional_pixel_model(digits):
    torch.manual_seed(0)
    clf = MnistClassifier().eval()
    model = diffusion.make_unet(base_channels=8, channel_mult=(1, 2))
    q = latent.generation0_quality(model, clf, digits.images, n=10, ddim_steps=2, device="cpu")
    assert q["guided_accuracy"] is None and q["passes"]["guided_accuracy"] is None
    assert q["fid"] == q["fid_unguided"] and q["space"] == {"space": "pixel"}


# ------------------------------------------------------------------------------------------------ the benchmark
def test_benchmark_part_latent_measures_both_paths(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("benchmarks_run_latent", store.repo_root() / "benchmarks" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        rc = bench.main(["--tiny", "--device", "cpu", "--threads", "1", "--parts", "latent", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    res = json.loads((tmp_path / "results.json").read_text())
    assert rc == 0 and res["errors"] == []
    rows = res["measurements"]
    assert [r["what"] for r in rows] == ["training", "sampling", "one generation"]
    for r in rows:
        assert r["project"]["seconds"] > 0 and r["baseline"]["seconds"] > 0 and r["model"].startswith("MNIST latent")
    gen = rows[-1]
    assert gen["project"]["n"] == 2 * gen["baseline"]["n"]
    assert gen["wall_time_ratio"] == pytest.approx(gen["baseline"]["seconds"] / gen["project"]["seconds"], rel=0.02)
