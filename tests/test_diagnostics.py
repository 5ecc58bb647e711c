"""diagnostics.fig2_readings and settled_generation on constructed chains whose answers are known."""
import numpy as np
import pytest

from resonance_utils import chain, diagnostics


def _result(retention, spread, n=None):
    metrics = [{"class_retention": r, "within_class_spread": s, "class_entropy_bits": 3.3}
               for r, s in zip(retention, spread)]
    return chain.ChainResult(states=[{}] * len(metrics), metrics=metrics, seconds=[0.0] * len(metrics))


class _Curve:  # the two fields settled_generation reads
    def __init__(self, excess, se):
        self.excess, self.excess_se = np.asarray(excess, float), np.asarray(se, float)


def test_settled_generation_is_the_first_from_which_drift_stays_at_its_floor():
    se = np.ones(7)
    assert diagnostics.settled_generation(_Curve([0, 9, 5, 1, 0.5, 1.9, 0], se)) == 3
    assert diagnostics.settled_generation(_Curve([0, 1, 1, 5, 0, 0, 0], se)) == 4, "a later jump resets it"
    assert diagnostics.settled_generation(_Curve([0, 9, 9, 9, 9, 9, 3], se)) is None


def test_fig2_readings_decide_each_caption_from_the_numbers():
    g = 6
    results = {"latent_feedback": _result(np.linspace(0.99, 0.4, g), np.ones(g)),
               "label_guided": _result(np.full(g, 0.97), np.linspace(1, 0.6, g)),
               "unconditional": _result([0.99] + [np.nan] * (g - 1), np.ones(g))}
    fast = _Curve([0, 9, 0, 0, 0, 0], np.ones(g))
    slow = _Curve([0, 9, 9, 9, 0, 0], np.ones(g))
    drift = {"label_guided": {"local": fast}, "unconditional": {"local": slow}}
    t = diagnostics.fig2_readings(results, drift).set_index("caption")["reproduced"]
    assert t.tolist() == ["yes", "yes", "yes", "yes"]
    # the opposite chains: every caption refuted
    results = {"latent_feedback": _result(np.full(g, 0.95), np.ones(g)),
               "label_guided": _result(np.linspace(0.97, 0.3, g), np.ones(g)),
               "unconditional": results["unconditional"]}
    drift = {"label_guided": {"local": slow}, "unconditional": {"local": fast}}
    assert diagnostics.fig2_readings(results, drift)["reproduced"].tolist() == ["no", "no", "no", "no"]
    # neither settles: the run cannot decide; a missing setting is n/a
    never = _Curve([0, 9, 9, 9, 9, 9], np.ones(g))
    t = diagnostics.fig2_readings({"label_guided": results["label_guided"], "unconditional": results["unconditional"]},
                                  {"label_guided": {"local": never}, "unconditional": {"local": never}})
    assert t["reproduced"].tolist() == ["n/a", "no", "no", "inconclusive"]
