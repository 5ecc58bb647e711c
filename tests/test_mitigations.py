"""Mitigation rules against hand-computed selections, and the hook through the chain runner."""
import numpy as np
import pytest

from resonance_utils import config, image_chains, mitigations, specs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_hot_probs(pred, conf):
    probs = np.full((len(pred), 3), 0.0)
    for i, (p, c) in enumerate(zip(pred, conf)):
        probs[i] = (1 - c) / 2
        probs[i, p] = c
    return probs


def labelled(n):
    return {"images": np.arange(n, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2),
            "labels": np.zeros(n, np.int64)}


def test_entropy_selection_flattens_the_predicted_histogram_most_confident_first():
    pred = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 0])
    conf = np.array([.9, .8, .99, .7, .6, .95, .9, .5, .8, .85])
    data = labelled(10)
    kept = mitigations.select_max_class_entropy(data, one_hot_probs(pred, conf), keep_fraction=0.5)
    # round robin over classes 0, 1, 2 (most confident first): 2 (0.99), 6, 8, then 5 (0.95), 7 (0.5)
    assert sorted(kept["images"][:, 0, 0].tolist()) == [2, 5, 6, 7, 8]
    assert np.bincount(pred[kept["images"][:, 0, 0]], minlength=3).tolist() == [2, 2, 1]


def test_self_verification_keeps_only_confident_own_labels():
    data = labelled(6)
    data["labels"] = np.array([0, 1, 2, 0, 1, 2])
    probs = one_hot_probs([0, 0, 2, 0, 1, 1], [.95, .9, .92, .5, .99, .97])
    kept = mitigations.select_self_verified(data, probs, 0.9, min_keep=1)
    assert kept["images"][:, 0, 0].tolist() == [0, 2, 4]  # sample 1 is confident but in the wrong class
    few = mitigations.select_self_verified(data, probs, 0.999, min_keep=2)
    assert few["images"][:, 0, 0].tolist() == [0, 4], "below the threshold for all: the min_keep most confident"


def test_bad_mitigation_inputs():
    with pytest.raises(ValueError, match="keep_fraction"):
        mitigations.select_max_class_entropy(labelled(3), np.eye(3), keep_fraction=0)
    with pytest.raises(ValueError, match="rows"):
        mitigations.select_self_verified(labelled(3), np.eye(2), 0.5)
    with pytest.raises(ValueError, match="unknown mitigation 'dropout'"):
        mitigations.chain_setup("dropout", None, fresh_fraction=0.2, keep_fraction=0.5, verify_threshold=0.9)


def test_hook_runs_in_the_chain_and_changes_the_key():
    from resonance_utils.data import load_mnist
    from resonance_utils.features import MnistClassifier

    real = load_mnist("test")
    clf = MnistClassifier().eval()
    cfg = specs.build(specs.DiffusionChainSpec, config.load_config(
        "02_mnist_chains", "smoke", n_generations=2, samples_per_generation=20, base_steps=4, finetune_steps=2,
        batch_size=10, ddim_steps=2, device="cpu"))
    seen = []

    def hook(data, rng):
        seen.append(len(data["labels"]))
        return {k: v[:10] for k, v in data.items()}

    plain = image_chains.run_image_chain(cfg, "label_guided", real, clf, progress=False)
    hooked = image_chains.run_image_chain(cfg, "label_guided", real, clf, select=hook,
                                          select_params={"rule": "first ten"}, progress=False)
    assert seen == [20, 20], "the hook sees each composed training set (generation g trains on generation g-1)"
    assert plain.run_dir != hooked.run_dir
    with pytest.raises(ValueError, match="select_params"):
        image_chains.run_image_chain(cfg, "label_guided", real, clf, select=hook, progress=False)
