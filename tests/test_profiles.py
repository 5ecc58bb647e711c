"""The profiles hold the chain sizes issue 15 asks for: long enough for drift to flatten and the claim to decide."""
import pytest

from resonance_utils import config


def test_quick_chains_are_long_and_large_enough():
    mnist = config.load_config("02_mnist_chains", "quick")
    assert mnist.n_generations >= 12 and mnist.samples_per_generation >= 1000 and mnist.space == "latent"
    imagenet = config.load_config("03_imagenet_chains", "quick")
    assert imagenet.n_generations >= 10 and imagenet.resolution == 32
    assert config.load_config("09_claim", "quick").image_generations >= 10


@pytest.mark.parametrize("stem", ["02_mnist_chains", "03_imagenet_chains"])
def test_paper_chains_keep_twenty_generations(stem):
    assert config.load_config(stem, "paper").n_generations >= 20
    assert config.load_config("09_claim", "paper").image_generations >= 20


def test_fine_tuning_adapts_at_a_tenth_of_the_first_models_rate_in_every_profile():
    for stem in ("02_mnist_chains", "03_imagenet_chains"):
        for profile in ("smoke", "quick", "paper"):
            cfg = config.load_config(stem, profile)
            assert cfg.finetune_lr == pytest.approx(cfg.lr / 10), (stem, profile)
