"""The project's list of feedback settings: one generational Markov chain X_{n+1} = T(X_n) each.

The framework figure (09_claim) is drawn from this list and the claim table has one row group per entry, so a
setting added here appears in both. `module` and `notebook` say where its operator T lives and runs.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeedbackSetting:
    name: str  # the key used in run folders, configs and tables
    title: str  # for figures
    state: str  # what X_n is
    operator: str  # what T does, in one line
    stochastic: bool  # does T draw fresh randomness each step (a necessary condition for ergodicity)?
    retrains: bool  # does T train a model on X_n?
    module: str  # resonance_utils module holding T
    notebook: str  # notebook that runs it

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"setting names are identifiers, got {self.name!r}")


SETTINGS = (
    FeedbackSetting("lucier", "Lucier room loop", "a waveform",
                    "play in a room, record: convolve with the room's impulse response, normalise (+ mic noise)",
                    stochastic=False, retrains=False, module="audio", notebook="01_lucier_room"),
    FeedbackSetting("cyclegan", "CycleGAN cycles", "a batch of images",
                    "translate there and back: x -> F(G(x)), optionally quantised to uint8",
                    stochastic=False, retrains=False, module="cyclegan", notebook="04_cyclegan_attractors"),
    FeedbackSetting("latent_feedback", "latent-feedback diffusion", "a batch of images",
                    "noise to strength s with a fixed diffusion model, denoise",
                    stochastic=True, retrains=False, module="image_chains", notebook="02_mnist_chains"),
    FeedbackSetting("label_guided", "label-guided retraining", "a labelled data set",
                    "train a class-conditional diffusion model on X_n, sample a balanced labelled set",
                    stochastic=True, retrains=True, module="image_chains", notebook="02_mnist_chains"),
    FeedbackSetting("unconditional", "unconditional retraining", "a data set",
                    "train an unconditional diffusion model on X_n, sample a new set",
                    stochastic=True, retrains=True, module="image_chains", notebook="02_mnist_chains"),
)

BY_NAME = {s.name: s for s in SETTINGS}


def get(name: str) -> FeedbackSetting:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown feedback setting {name!r}; valid: {', '.join(BY_NAME)}") from None
