"""The three MNIST feedback settings through the runner: caching, resuming, regimes and exemplar grids."""
import shutil

import numpy as np
import pytest

from resonance_utils import config, image_chains, specs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mnist():
    from resonance_utils.data import load_mnist
    return load_mnist("train")


@pytest.fixture(scope="module")
def classifier():
    # an untrained classifier is enough to exercise the code paths (the trained one is tested in test_features)
    from resonance_utils.features import MnistClassifier
    import torch
    torch.manual_seed(0)
    return MnistClassifier().eval()


def tiny(**kw):
    base = dict(n_generations=2, samples_per_generation=20, base_steps=6, finetune_steps=2, batch_size=10,
                ddim_steps=3, device="cpu")
    return specs.build(specs.DiffusionChainSpec, config.load_config("02_mnist_chains", "smoke", **{**base, **kw}))


@pytest.mark.parametrize("setting", image_chains.SETTINGS)
def test_chain_caches_resumes_and_reproduces(setting, mnist, classifier):
    cfg = tiny()
    first = image_chains.run_image_chain(cfg, setting, mnist, classifier, progress=False)
    assert first.computed == [0, 1, 2] and len(first) == 3
    assert first.states[2]["images"].shape == (20, 28, 28) and first.states[2]["images"].dtype == np.uint8
    again = image_chains.run_image_chain(cfg, setting, mnist, classifier, progress=False)
    assert again.computed == [], "a rerun with the same key must compute nothing"
    shutil.rmtree(first.run_dir / "gen_002")  # a crash during generation 2
    resumed = image_chains.run_image_chain(cfg, setting, mnist, classifier, progress=False)
    assert resumed.computed == [2]
    for a, b in zip(first.states, resumed.states):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    assert (first.run_dir / "gen_002" / "features.npy").exists()
    if setting != "latent_feedback":
        assert (first.run_dir / "gen_002" / "model" / "config.json").exists()


def test_label_guided_samples_are_class_balanced_and_keep_their_labels(mnist, classifier):
    res = image_chains.run_image_chain(tiny(), "label_guided", mnist, classifier, progress=False)
    for s in res.states:
        assert np.array_equal(np.bincount(s["labels"], minlength=10), np.full(10, 2))
    assert "class_retention" in res.metrics[2]


def test_unconditional_chain_labels_are_classifier_predictions(mnist, classifier):
    from resonance_utils.features import classify
    res = image_chains.run_image_chain(tiny(), "unconditional", mnist, classifier, progress=False)
    s = res.states[2]
    np.testing.assert_array_equal(s["labels"], classify(classifier, s["images"]).argmax(1))
    assert "class_retention" not in res.metrics[2] and "class_entropy_bits" in res.metrics[2]


def test_latent_feedback_keeps_trajectory_labels(mnist, classifier):
    res = image_chains.run_image_chain(tiny(), "latent_feedback", mnist, classifier, progress=False)
    assert all(np.array_equal(s["labels"], res.states[0]["labels"]) for s in res.states)


def test_regime_and_retrain_change_the_run_key(mnist, classifier):
    a = image_chains.run_image_chain(tiny(n_generations=1), "label_guided", mnist, classifier, progress=False)
    b = image_chains.run_image_chain(tiny(n_generations=1, regime="accumulate"), "label_guided", mnist, classifier,
                                     progress=False)
    assert a.run_dir != b.run_dir


def test_bad_settings(mnist, classifier):
    with pytest.raises(config.ConfigError, match="settings must name"):
        image_chains.parse_settings("latent, label_guided")
    with pytest.raises(ValueError, match="unknown setting"):
        image_chains.run_image_chain(tiny(), "cyclegan", mnist, classifier, progress=False)
    with pytest.raises(config.ConfigError, match="retrain"):
        image_chains.run_image_chain(tiny(retrain="warm"), "label_guided", mnist, classifier, progress=False)
    with pytest.raises(config.ConfigError, match="'regime' must be one of"):
        image_chains.run_image_chain(tiny(regime="keep"), "label_guided", mnist, classifier, progress=False)


def test_exemplar_rows():
    states = [{"images": np.stack([np.full((2, 2), 10 * g + i, np.uint8) for i in range(6)]),
               "labels": np.array([0, 1, 2, 0, 1, 2])} for g in range(3)]
    by_class = image_chains.exemplar_rows(states, rows=4, by="class")
    assert by_class.shape == (4, 3, 2, 2)
    for g in range(3):
        for r in range(3):
            assert by_class[r, g, 0, 0] % 10 in (r, r + 3)  # a sample of class r
        assert np.all(by_class[3, g] == 255)  # no class 3: blank
    traj = image_chains.exemplar_rows(states, rows=3, by="trajectory")
    assert np.all(traj[:, 1, 0, 0] - traj[:, 0, 0, 0] == 10), "a row follows one sample index"
    with pytest.raises(ValueError, match="by must be"):
        image_chains.exemplar_rows(states, by="random")


def test_class_skewed_starts_draw_their_share_from_their_own_classes(mnist):
    starts = image_chains.class_skewed_starts(mnist, 100, 2, skew=0.7, seed=0)
    groups = np.array_split(np.arange(10), 2)
    for k, s in enumerate(starts):
        assert s["images"].shape == (100, 28, 28) and s["images"].dtype == np.uint8
        own = np.isin(s["labels"], groups[k]).mean()
        # 70 from the own group + half of the 30 balanced ones
        assert own == pytest.approx(0.7 + 0.3 * len(groups[k]) / 10)
        # the labels are the real labels of those images: each image occurs in the real set with that label
        first = np.flatnonzero((mnist.images == s["images"][0]).all(axis=(1, 2)))
        assert s["labels"][0] in mnist.labels[first]
    again = image_chains.class_skewed_starts(mnist, 100, 2, skew=0.7, seed=0)
    assert all(np.array_equal(a["images"], b["images"]) for a, b in zip(starts, again))
    other = image_chains.class_skewed_starts(mnist, 100, 2, skew=0.7, seed=1)
    assert not np.array_equal(starts[0]["images"], other[0]["images"])
    with pytest.raises(ValueError, match="skew"):
        image_chains.class_skewed_starts(mnist, 100, 2, skew=1.5)
    with pytest.raises(ValueError, match="n_starts"):
        image_chains.class_skewed_starts(mnist, 100, 11)


def test_a_given_start_enters_the_key_and_generation_one_trains_on_it(mnist, classifier):
    cfg = tiny(n_generations=1)
    a, b = image_chains.class_skewed_starts(mnist, 20, 2, skew=1.0, seed=0)
    ra = image_chains.run_image_chain(cfg, "unconditional", mnist, classifier, x0=a, progress=False)
    rb = image_chains.run_image_chain(cfg, "unconditional", mnist, classifier, x0=b, progress=False)
    assert np.array_equal(ra.states[0]["images"], a["images"])
    assert ra.run_dir != rb.run_dir
    # same seeds and base model: generation 1 differs only because it was fine-tuned on a different X_0
    assert not np.array_equal(ra.states[1]["images"], rb.states[1]["images"])
    with pytest.raises(ValueError, match="x0 images"):
        image_chains.run_image_chain(cfg, "unconditional", mnist, classifier,
                                     x0={"images": a["images"][:, :14], "labels": a["labels"]}, progress=False)


def test_imagenet5_inputs_follow_the_configuration():
    cfg = config.load_config("03_imagenet_chains", "smoke", classifier_epochs=1)
    real, classifier, name, note = image_chains.imagenet5_inputs(specs.build(specs.ImagenetDataSpec, cfg), seed=cfg.seed,
                                                                 samples_per_generation=cfg.samples_per_generation)
    assert "stand-in" in real.source and real.images.shape[1:] == (cfg.resolution, cfg.resolution, 3)
    assert np.bincount(real.labels).tolist() == [cfg.n_per_class] * 5
    assert classifier.resolution == cfg.resolution and "generation-0" in name and note.startswith("held-out")


def test_a_swapped_classifier_recomputes_the_chains_stored_retention(mnist, classifier):
    """The chain stores the classifier's verdicts (class retention, entropies, features) with every generation, so
    the classifier is part of its key: another classifier gets another run folder, scored by that classifier,
    not the first one's numbers read back."""
    import torch

    from resonance_utils.features import MnistClassifier, classify

    spec = tiny(n_generations=1)
    first = image_chains.run_image_chain(spec, "label_guided", mnist, classifier, progress=False)
    torch.manual_seed(1)
    other = MnistClassifier().eval()
    second = image_chains.run_image_chain(spec, "label_guided", mnist, other, progress=False)
    assert second.run_dir != first.run_dir and second.computed == [0, 1]
    for result, clf in ((first, classifier), (second, other)):
        for g, state in enumerate(result.states):
            own = float((classify(clf, state["images"]).argmax(1) == state["labels"]).mean())
            assert result.metrics[g]["class_retention"] == pytest.approx(own)
    again = image_chains.run_image_chain(spec, "label_guided", mnist, classifier, progress=False)
    assert again.run_dir == first.run_dir and again.computed == []


# ----------------------------------------------------------------------------------------- spaces (issue 15)
def test_pixel_and_latent_chains_differ_in_key_and_only_latent_measures_its_autoencoder(mnist, classifier):
    latent = image_chains.run_image_chain(tiny(n_generations=1), "label_guided", mnist, classifier, progress=False)
    pixel = image_chains.run_image_chain(tiny(n_generations=1, space="pixel", channel_mult=(1, 2)), "label_guided",
                                         mnist, classifier, progress=False)
    assert latent.run_dir != pixel.run_dir
    assert all("autoencoder_rms" in m for m in latent.metrics) and 0 < latent.metrics[0]["autoencoder_rms"] < 1
    assert not any("autoencoder_rms" in m for m in pixel.metrics)
    for r in (latent, pixel):
        assert r.states[1]["images"].shape == (20, 28, 28) and r.states[1]["images"].dtype == np.uint8
        assert "near_duplicate_share" not in r.metrics[0] and 0 <= r.metrics[1]["near_duplicate_share"] <= 1


def test_a_unet_that_does_not_fit_the_latent_grid_is_refused_before_training(mnist, classifier, monkeypatch):
    from resonance_utils import latent
    monkeypatch.setattr(latent, "train_autoencoder", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(specs.ConfigError, match="channel_mult"):
        image_chains.run_image_chain(tiny(channel_mult=(1, 2), autoencoder_steps=3), "label_guided", mnist,
                                     classifier, progress=False)
    with pytest.raises(specs.ConfigError, match="autoencoder_channels"):
        image_chains.run_image_chain(tiny(autoencoder_channels=(8, 8, 8, 8)), "label_guided", mnist, classifier,
                                     progress=False)


class _Ctx:
    def __init__(self, generation, history):
        self.generation, self.history, self.out_dir = generation, history, None


def test_near_duplicates_count_copies_of_the_previous_generation(mnist, classifier):
    metrics = image_chains.generation_metrics(classifier, intended=True)
    prev = {"images": mnist.images[:200], "labels": mnist.labels[:200].astype(np.int64)}
    copies = {"images": prev["images"][np.r_[0:60, 0:0]], "labels": prev["labels"][:60]}
    others = {"images": mnist.images[1000:1140], "labels": mnist.labels[1000:1140].astype(np.int64)}
    mixed = {k: np.concatenate([copies[k], others[k]]) for k in prev}
    share = metrics(mixed, _Ctx(1, [prev]))["near_duplicate_share"]
    assert share == pytest.approx(60 / 200, abs=0.02), "exact copies count, distinct real digits do not"
    assert metrics(prev, _Ctx(1, [prev]))["near_duplicate_share"] == 1.0


def test_within_class_measures_match_a_direct_computation(mnist, classifier):
    from scipy.spatial.distance import pdist
    from resonance_utils.features import classify, embed
    from resonance_utils.geometry import within_class
    state = {"images": mnist.images[:300], "labels": mnist.labels[:300].astype(np.int64)}
    m = image_chains.generation_metrics(classifier, intended=True)(state, _Ctx(0, []))
    feats, pred = embed(classifier, state["images"]), classify(classifier, state["images"]).argmax(1)
    keep = [c for c in np.unique(pred) if (pred == c).sum() >= image_chains.MIN_CLASS_COUNT]
    w = np.array([(pred == c).sum() for c in keep])
    ref = np.average([pdist(feats[pred == c]).mean() for c in keep], weights=w)
    assert m["within_class_spread"] == pytest.approx(ref, rel=1e-6)
    assert within_class(feats, pred, min_count=10)["classes"] == len(keep)
    # a class of one repeated point has no spread and one direction; an isotropic cloud spreads over all
    rng = np.random.default_rng(0)
    iso = within_class(rng.normal(size=(4000, 5)), np.zeros(4000, int))
    assert iso["participation_ratio"] == pytest.approx(5, rel=0.05)
    from scipy.special import gamma  # x - y ~ N(0, 2 I): |x - y| = sqrt(2) chi_5, E chi_k = sqrt(2) G((k+1)/2) / G(k/2)
    assert iso["mean_pairwise_distance"] == pytest.approx(np.sqrt(2) * np.sqrt(2) * gamma(3) / gamma(2.5), rel=0.01)
    same = within_class(np.ones((20, 3)), np.zeros(20, int))
    assert same["mean_pairwise_distance"] == 0 and same["participation_ratio"] == 1


def test_grid_indices_are_class_balanced_random_and_sorted_by_label():
    labels = np.repeat(np.arange(10), 100)  # a label-sorted generation: the first 100 are all 0s
    idx = image_chains.grid_indices(labels, 100, seed=0)
    assert len(set(idx)) == 100 and np.all(np.bincount(labels[idx], minlength=10) == 10)
    assert np.all(np.diff(labels[idx]) >= 0)
    assert not np.array_equal(idx, image_chains.grid_indices(labels, 100, seed=1))
    skewed = np.r_[np.zeros(95, int), np.ones(5, int)]
    assert np.bincount(skewed[image_chains.grid_indices(skewed, 20)]).tolist() == [15, 5]


def test_autoencoder_passes_is_the_autoencoder_alone(mnist, classifier):
    spec = tiny()
    _, space = image_chains.generation0_model(spec, mnist, progress=False)
    x0 = image_chains.generation_zero(mnist, 20, 0)
    result, feats = image_chains.autoencoder_passes(space, x0, 2, classifier)
    assert np.array_equal(result.states[1]["images"], space.decode(space.encode(x0["images"])))
    assert len(feats) == 3 and feats[0].shape[0] == 20
    assert result.metrics[0]["autoencoder_rms"] == pytest.approx(space.reconstruction_error(x0["images"]))


def test_finetuning_uses_finetune_lr_and_scratch_retraining_lr(mnist, classifier, monkeypatch):
    from resonance_utils import diffusion
    seen = []
    real_train = diffusion.train_diffusion

    def spy(model, *a, **kw):
        seen.append((kw["steps"], kw["lr"]))
        return real_train(model, *a, **kw)
    spec = tiny(n_generations=1, finetune_lr=0.0004, lr=0.004)
    image_chains.generation0_model(spec, mnist, progress=False)  # trained (and cached) before the spy
    monkeypatch.setattr(diffusion, "train_diffusion", spy)
    image_chains.run_image_chain(spec, "label_guided", mnist, classifier, progress=False)
    assert seen == [(spec.finetune_steps, 0.0004)]
    image_chains.run_image_chain(spec.replace(retrain="scratch"), "label_guided", mnist, classifier, progress=False)
    assert seen[-1] == (spec.base_steps, 0.004)
    assert spec.key() != spec.replace(finetune_lr=0.001).key()


def test_chains_numbers_and_report_read_every_chain():
    """The numbers 02 and 03 write of their chains, and the cache report they print, from the chains themselves."""
    from types import SimpleNamespace

    from resonance_utils import chain, image_chains

    def result(n, computed):
        states = [{"images": np.zeros((n, 4, 4), np.uint8)} for _ in range(3)]
        return chain.ChainResult(states=states, metrics=[{"class_retention": 1.0 - g / 10} for g in range(3)],
                                 seconds=[0.0, 1.5, 2.5], computed=computed)

    results = {"label_guided": result(6, [2]), "unconditional": result(6, [])}
    space = SimpleNamespace(key=lambda: {"space": "pixel"})
    numbers = image_chains.chains_numbers(results, drift={}, quality={"guided_accuracy": 1.0}, space=space)
    assert numbers["settings"] == ["label_guided", "unconditional"] and numbers["samples_per_generation"] == 6
    assert numbers["label_guided"]["class_retention"] == [1.0, 0.9, 0.8] and numbers["space"] == {"space": "pixel"}
    lines = image_chains.chains_report(results).splitlines()
    assert "computed now [2], 2 s" in lines[0] and "computed now none, 0 s" in lines[1]
