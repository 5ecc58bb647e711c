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
        mitigations.chain_setup("dropout", None, specs.MitigationSpec())
    with pytest.raises(specs.ConfigError, match="mitigation_list.*'dropout'"):
        specs.MitigationSpec(mitigation_list="none, dropout")
    with pytest.raises(specs.ConfigError, match="curation_focus.*'hard'"):
        specs.MitigationSpec(curation_focus="hard")
    with pytest.raises(specs.ConfigError, match="curator_accuracies"):
        specs.MitigationSpec(curator_accuracies="0.5, 1.2")
    probs = np.eye(3)[[0, 1, 2]]
    with pytest.raises(ValueError, match="accuracy"):
        mitigations.curate_weakly(labelled(3), probs, accuracy=1.5, budget=0.5, focus="random", rng=RNG())
    with pytest.raises(ValueError, match="budget"):
        mitigations.curate_weakly(labelled(3), probs, accuracy=0.5, budget=0, focus="random", rng=RNG())
    with pytest.raises(ValueError, match="unknown focus 'easiest'"):
        mitigations.curate_weakly(labelled(3), probs, accuracy=0.5, budget=0.5, focus="easiest", rng=RNG())
    with pytest.raises(ValueError, match="dropped every sample"):  # all wrong, all judged, a perfect curator
        mitigations.curate_weakly(labelled(3), np.eye(3)[[1, 1, 1]], accuracy=1, budget=1, focus="random",
                                  rng=RNG())


def RNG(seed=0):
    return np.random.default_rng(seed)


def curation_case(n=40, seed=1):
    """n samples of 3 classes, a third of them misclassified, margins all different."""
    rng = np.random.default_rng(seed)
    data = labelled(n)
    data["labels"] = np.arange(n) % 3
    pred = np.where(np.arange(n) % 3 == 0, (data["labels"] + 1) % 3, data["labels"])
    conf = np.linspace(0.4, 0.99, n)[rng.permutation(n)]
    return data, one_hot_probs(pred, conf), pred == data["labels"]


def counts(kept, n):
    return np.bincount(kept["images"][:, 0, 0].astype(int), minlength=n)


@pytest.mark.parametrize("focus", ["hardest", "random"])
def test_weak_curator_at_chance_changes_nothing_in_expectation_and_better_ones_move_weight(focus):
    n, draws = 40, 4000
    data, probs, correct = curation_case(n)
    for accuracy in (0.5, 0.75):
        mean = np.mean([counts(mitigations.curate_weakly(data, probs, accuracy=accuracy, budget=0.5, focus=focus,
                                                         rng=RNG(i)), n) for i in range(draws)], axis=0)
        # independent reference: a judged sample keeps weight 2 w.p. P(verdict good), else 0; judged w.p. 1
        # (hardest: the 20 lowest margins) or 1/2 (random)
        p_good = np.where(correct, accuracy, 1 - accuracy)
        if focus == "hardest":
            top2 = np.sort(probs, 1)[:, -2:]
            judged = np.zeros(n, bool)
            judged[np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:20]] = True
            want = np.where(judged, 2 * p_good, 1.0)
        else:
            want = 0.5 * 2 * p_good + 0.5
        # each mean count has sd <= 1 / sqrt(draws) = 0.016: 5 sd
        assert np.abs(mean - want).max() < 5 / np.sqrt(draws), (focus, accuracy)
        if accuracy == 0.5:
            assert np.abs(mean - 1).max() < 5 / np.sqrt(draws), "chance: every sample's expected weight stays 1"
        else:
            assert mean[correct].mean() > 1.05 and mean[~correct].mean() < 0.95


def test_perfect_curator_on_everything_doubles_the_correct_and_drops_the_wrong():
    data, probs, correct = curation_case(30)
    kept = mitigations.curate_weakly(data, probs, accuracy=1.0, budget=1.0, focus="random", rng=RNG())
    assert counts(kept, 30).tolist() == np.where(correct, 2, 0).tolist()
    assert np.array_equal(kept["labels"], np.repeat(data["labels"], np.where(correct, 2, 0)))


def test_hardest_focus_judges_the_lowest_margins():
    data = labelled(4)
    probs = np.array([[.5, .3, .2], [.9, .05, .05], [.34, .33, .33], [.65, .35, 0]])  # margins .2 .85 .01 .3
    data["labels"] = np.array([1, 0, 1, 0])  # 0 wrong, 1 right, 2 wrong, 3 right
    kept = mitigations.curate_weakly(data, probs, accuracy=1.0, budget=0.5, focus="hardest", rng=RNG())
    # the two lowest margins: 2 (0.01), then 0 (0.2); both wrong, both dropped
    assert counts(kept, 4).tolist() == [0, 1, 0, 1]


def test_hardest_focus_ranks_by_the_margin_not_the_top_probability_and_judges_a_rounded_budget():
    # 10 classes, each sample's label its top class: (top, second) probabilities, the rest spread evenly
    top_second = [(.50, .49), (.30, .10), (.26, .10), (.45, .40), (.60, .35), (.90, .05), (.55, .44), (.35, .12),
                  (.70, .20)]  # margins .01 .20 .16 .05 .25 .85 .11 .23 .50
    probs = np.array([[p, q] + [(1 - p - q) / 8] * 8 for p, q in top_second])
    data = labelled(9)  # labels 0: every sample correct, so a perfect curator doubles what it judges
    for budget, lowest_margins in ((0.4, [0, 2, 3, 6]), (0.6, [0, 1, 2, 3, 6])):  # round(3.6) = 4, round(5.4) = 5
        kept = mitigations.curate_weakly(data, probs, accuracy=1.0, budget=budget, focus="hardest", rng=RNG())
        assert np.flatnonzero(counts(kept, 9) == 2).tolist() == lowest_margins, budget
        assert (counts(kept, 9) >= 1).all()


def test_chain_setup_of_every_named_mitigation():
    from resonance_utils.data import load_mnist

    digits = load_mnist("test").images
    settings = specs.MitigationSpec(fresh_fraction=0.3, keep_fraction=0.7, verify_threshold=0.8)
    marks = mitigations.watermarks(settings, digits[:1000])
    clf = object()
    fresh = {"regime": "fresh", "fresh_fraction": 0.3}
    assert mitigations.chain_setup("none", clf, settings) == ({}, {})
    assert mitigations.chain_setup("fresh_data", clf, settings) == (fresh, {})
    assert mitigations.chain_setup("accumulate", clf, settings) == ({"regime": "accumulate"}, {})
    for name, key, value in (("entropy_selection", "keep_fraction", 0.7), ("self_verification", "threshold", 0.8)):
        changes, options = mitigations.chain_setup(name, clf, settings)
        hook = options["select"]
        assert changes == {} and set(options) == {"select", "select_params"}
        assert (hook.classifier, hook.rule, hook.value) == (clf, name, value)
        assert options["select_params"] == {"rule": name, key: value}
    real, rates = digits[1000:1400], {}
    for name in ("watermark_filter", "watermark_filter_weak"):
        changes, options = mitigations.chain_setup(name, clf, settings, marks=marks)
        assert changes == fresh, "the filters run on fresh data's mix"
        assert options["mark_params"] == marks[name].params()
        assert options["select_params"] == {"rule": "watermark_filter", **marks[name].params()}
        marked = options["mark"](real)
        assert np.abs(marked.astype(int) - real).max() > 0, "the chain's images get the mark"
        kept = options["select"]({"images": np.concatenate([marked, real]), "labels": np.arange(800)}, None)
        rates[name] = np.sum(kept["labels"] < 400) / 400  # the share of marked images that leaks through
        assert np.sum(kept["labels"] >= 400) / 400 > 0.99, "real digits pass"
    assert rates["watermark_filter"] < 0.01 and 0.35 < rates["watermark_filter_weak"] < 0.65


def test_chain_jobs_of_the_watermark_filters_carry_their_mark():
    from resonance_utils.data import load_mnist

    real = load_mnist("test")
    settings = specs.MitigationSpec(mitigation_list="none, watermark_filter_weak", fresh_fraction=0.25,
                                    curator_accuracies="", curation_budgets="0.5")
    jobs = mitigations.chain_jobs(specs.DiffusionChainSpec(device="cpu"), real, object(), settings)
    assert [j.name for j in jobs] == ["none", "watermark_filter_weak"]
    job = jobs[1].kwargs
    assert (job["spec"].regime, job["spec"].fresh_fraction) == ("fresh", 0.25)
    weak = mitigations.watermarks(settings, real.images)["watermark_filter_weak"]
    assert job["mark_params"] == weak.params() and job["select"].watermark.threshold == weak.threshold
    assert "mark" not in jobs[0].kwargs and "select" not in jobs[0].kwargs


def test_hook_runs_in_the_chain_and_changes_the_key(monkeypatch):
    from resonance_utils.data import load_mnist
    from resonance_utils.features import MnistClassifier

    real = load_mnist("test")
    clf = MnistClassifier().eval()
    cfg = specs.build(specs.DiffusionChainSpec, config.load_config(
        "02_mnist_chains", "smoke", n_generations=2, samples_per_generation=20, base_steps=4, finetune_steps=2,
        batch_size=10, ddim_steps=2, device="cpu"))
    seen, draws, selected, trained = [], [], [], []

    def hook(data, rng):
        seen.append(len(data["labels"]))
        draws.append(rng.random())
        selected.append({k: v[:10] for k, v in data.items()})
        return selected[-1]

    plain = image_chains.run_image_chain(cfg, "label_guided", real, clf, progress=False)
    train = image_chains.diffusion.train_diffusion

    def spy(model, images, labels=None, **kwargs):  # what each generation's model is trained on
        trained.append((images, labels))
        return train(model, images, labels, **kwargs)

    monkeypatch.setattr(image_chains.diffusion, "train_diffusion", spy)
    hooked = image_chains.run_image_chain(cfg, "label_guided", real, clf, select=hook,
                                          select_params={"rule": "first ten"}, progress=False)
    assert seen == [20, 20], "the hook sees each composed training set (generation g trains on generation g-1)"
    assert len(trained) == 2, "generation 0's model is the plain chain's, read back"
    for (images, labels), kept in zip(trained, selected):
        assert np.array_equal(images, kept["images"]) and np.array_equal(labels, kept["labels"]), \
            "each model trains on what the hook kept"
    assert draws[0] != draws[1], "the hook draws on each generation's own stream"
    assert plain.run_dir != hooked.run_dir
    with pytest.raises(ValueError, match="select_params"):
        image_chains.run_image_chain(cfg, "label_guided", real, clf, select=hook, progress=False)


class CornerMark:
    """A perfect detector by construction on MNIST, whose corner pixel is 0 in every real digit: the mark sets it
    to 1."""

    def embed(self, images):
        out = images.copy()
        out[:, 0, 0] = 1
        return out

    def detect(self, images):
        return images[:, 0, 0] == 1


def test_a_perfect_watermark_filter_leaves_only_real_digits_in_every_training_set():
    from resonance_utils.data import load_mnist
    from resonance_utils.features import MnistClassifier

    real = load_mnist("test")
    assert not (real.images[:, 0, 0] == 1).any()
    clf = MnistClassifier().eval()
    cfg = specs.build(specs.DiffusionChainSpec, config.load_config(
        "02_mnist_chains", "smoke", n_generations=3, samples_per_generation=20, base_steps=4, finetune_steps=2,
        batch_size=10, ddim_steps=2, device="cpu")).replace(regime="fresh", fresh_fraction=0.3)
    mark, seen = CornerMark(), []
    flt = mitigations.WatermarkFilter(mark)

    def hook(data, rng):
        kept = flt(data, rng)
        seen.append((len(data["labels"]), kept["images"]))
        return kept

    out = image_chains.run_image_chain(cfg, "label_guided", real, clf, select=hook, select_params={"rule": "corner"},
                                       mark=mark.embed, mark_params={"mark": "corner"}, progress=False)
    assert all(mark.detect(out.states[g]["images"]).all() for g in range(1, 4)), "every generated image is marked"
    assert not mark.detect(out.states[0]["images"]).any()
    real_rows = {img.tobytes() for img in real.images}
    for g, (n, kept) in enumerate(seen, start=1):
        assert n == 20
        assert all(img.tobytes() in real_rows for img in kept), f"generation {g} trained on a generated image"
        if g > 1:  # the fresh share (6 of 20) is all that is left of a generated generation
            assert len(kept) == 6
    unmarked = image_chains.run_image_chain(cfg, "label_guided", real, clf, select=hook,
                                            select_params={"rule": "corner"}, progress=False)
    assert unmarked.run_dir != out.run_dir, "the mark enters the run key"
    with pytest.raises(ValueError, match="mark_params"):
        image_chains.run_image_chain(cfg, "label_guided", real, clf, mark=mark.embed, progress=False)
    with pytest.raises(ValueError, match="flagged every training image"):
        flt({"images": mark.embed(real.images[:5]), "labels": real.labels[:5]}, None)


def test_chain_jobs_name_every_mitigation_and_curation_cell():
    from resonance_utils.features import MnistClassifier

    settings = specs.MitigationSpec(mitigation_list="none, accumulate", curator_accuracies="0.5, 1",
                                    curation_budgets="0.25", curation_generations=3)
    spec = specs.DiffusionChainSpec(device="cpu", n_generations=6)
    jobs = mitigations.chain_jobs(spec, None, MnistClassifier().eval(), settings)
    assert [j.name for j in jobs] == ["none", "accumulate", "weak curation hardest a=0.5 b=0.25",
                                      "weak curation hardest a=1 b=0.25", "weak curation random a=0.5 b=0.25",
                                      "weak curation random a=1 b=0.25"]
    assert [j.n_generations for j in jobs] == [6, 6, 3, 3, 3, 3]
    longer = mitigations.chain_jobs(spec, None, MnistClassifier().eval(), settings.replace(curation_generations=10))
    assert [j.n_generations for j in longer] == [6] * 6, "curation chains are never longer than the others"
    assert jobs[1].kwargs["spec"].regime == "accumulate"
    assert jobs[3].kwargs["select_params"] == {"rule": "weak_curation", "accuracy": 1.0, "budget": 0.25,
                                               "focus": "hardest"}


def test_the_watermarks_of_the_two_filters():
    """The full detector flags every marked digit and almost no real one; the weakened one, by default at the
    median score of marked digits, misses about half of them on digits it was not set on."""
    from resonance_utils.data import load_mnist

    digits = load_mnist("test").images
    marks = mitigations.watermarks(specs.MitigationSpec(), digits)
    full, weak = marks["watermark_filter"], marks["watermark_filter_weak"]
    assert mitigations.WEAK_THRESHOLD_DIGITS == 1000
    # the median of the first 1,000 marked digits' scores: exactly half of them score above it
    assert weak.detect(weak.embed(digits[:1000])).sum() == 500
    assert weak.strength == full.strength and weak.key_seed == full.key_seed and weak.threshold > full.threshold
    other = digits[1000:3000]
    assert full.detect(full.embed(other)).mean() > 0.99 and full.detect(other).mean() < 0.01
    # 2,000 digits: a binomial share of 0.5 has sd 0.011; the median of 1,000 others sets it: 5 sd
    assert abs(weak.detect(weak.embed(other)).mean() - 0.5) < 0.06
    given = mitigations.watermarks(specs.MitigationSpec(watermark_strength=1.5, watermark_threshold=5,
                                                        weak_detector_threshold=9), digits[:10])
    assert (given["watermark_filter"].strength, given["watermark_filter"].threshold) == (1.5, 5.0)
    assert given["watermark_filter_weak"].threshold == 9.0
    with pytest.raises(ValueError, match="needs marks"):
        mitigations.chain_setup("watermark_filter", None, specs.MitigationSpec())


def test_watermark_rates_count_what_each_detector_flags():
    from resonance_utils.data import load_mnist

    digits = load_mnist("test").images
    marks = mitigations.watermarks(specs.MitigationSpec(), digits[:500])
    generated, real = digits[500:900], digits[900:1200]  # real digits standing in for generated ones
    rates = mitigations.watermark_rates(marks, generated, real).set_index("detector")
    for name, wm in marks.items():  # against an independent count
        row = rates.loc[name]
        assert row["TPR, marked generated"] == wm.detect(wm.embed(generated)).mean()
        assert row["FPR, real"] == wm.detect(real).mean()
        assert row["FPR, unmarked generated"] == wm.detect(generated).mean()
        assert row["TPR low"] <= row["TPR, marked generated"] <= row["TPR high"]
        assert (row["n marked"], row["n real"]) == (400, 300) and row["mark PSNR (dB)"] > 35
    assert rates.loc["watermark_filter", "TPR, marked generated"] > 0.99
    assert rates.loc["watermark_filter_weak", "TPR, marked generated"] < 0.7


def test_summarise_reads_each_chains_last_generation():
    from resonance_utils import chain

    rng = np.random.default_rng(3)

    def cloud(shift=0.0, scale=1.0):
        return rng.normal(size=(200, 8)) * scale + shift * np.eye(8)[0]

    features = {"still": [cloud() for _ in range(3)],
                "drifting": [cloud(shift=2.0 * g) for g in range(4)],  # the last mean 6 away: FID(3, 0) about 36
                "shrinking": [cloud(scale=0.5 ** g) for g in range(3)]}  # total variance / 16: log ratio -2.77

    def result(retention):
        states = [{"labels": np.zeros(10 * (g + 1), np.int64)} for g in range(len(retention))]
        return chain.ChainResult(states=states, seconds=[0.0] * len(retention),
                                 metrics=[{"class_retention": r, "class_entropy_bits": 3 + r} for r in retention])

    results = {"still": result([1, .9, .8]), "drifting": result([1, .6, .5, .4]), "shrinking": result([1, .7, .2])}
    table, curves = mitigations.summarise(results, features, specs.DiagnosticThresholds(), seed=0,
                                          feature_network="test")
    rows = table.set_index("mitigation")
    assert list(rows.index) == ["still", "drifting", "shrinking"] and set(curves) == set(features)
    assert rows["generations"].tolist() == [2, 3, 2]
    assert rows["samples"].tolist() == [30, 40, 30], "the last generation's size"
    assert rows["final class retention"].tolist() == [.8, .4, .2]
    assert rows["final class entropy (bits)"].tolist() == [3.8, 3.4, 3.2]
    for name, row in rows.iterrows():
        assert row["final cumulative FID"] == curves[name].values[-1] and row["its floor"] == curves[name].floor[-1]
        assert row["its floor"] < 3, "two halves of one law"
    assert 30 < rows.loc["drifting", "final cumulative FID"] < 44
    assert rows.loc["still", "final cumulative FID"] < 3
    assert abs(rows.loc["shrinking", "log variance ratio"] + 2 * np.log(4)) < 0.3
    assert abs(rows.loc["still", "log variance ratio"]) < 0.3


def test_curation_summary_compares_with_the_reference_at_the_curation_length():
    from types import SimpleNamespace

    import pandas as pd
    from resonance_utils import chain

    settings = specs.MitigationSpec(curator_accuracies="0.5, 1", curation_budgets="0.25", curation_focus="hardest")
    cells = ["weak curation hardest a=0.5 b=0.25", "weak curation hardest a=1 b=0.25"]
    table = pd.DataFrame({"mitigation": ["none", cells[1], "accumulate", cells[0]], "generations": [5, 3, 5, 2],
                          "final cumulative FID": [50.0, 7.0, 20.0, 8.0]})

    def reference(n_generations):
        return (chain.ChainResult(states=[None] * (n_generations + 1), seconds=[0.0] * (n_generations + 1),
                                  metrics=[{"class_retention": 1 - g / 10} for g in range(n_generations + 1)]),
                SimpleNamespace(values=10.0 * np.arange(n_generations + 1)))

    none, curve = reference(5)
    grid, ref = mitigations.curation_summary(table, {"none": curve}, {"none": none}, settings)
    assert grid["mitigation"].tolist() == cells, "the curation rows only, in the grid's order"
    assert grid["curator accuracy"].tolist() == [0.5, 1.0] and grid["budget"].tolist() == [0.25, 0.25]
    assert grid["focus"].tolist() == ["hardest"] * 2 and grid["final cumulative FID"].tolist() == [8.0, 7.0]
    assert ref == {"name": "none", "generation": 3, "final class retention": 0.7, "final cumulative FID": 30.0}
    none, curve = reference(3)  # exactly as long as the curation chains
    assert mitigations.curation_summary(table, {"none": curve}, {"none": none}, settings)[1]["generation"] == 3
    none, curve = reference(2)
    assert mitigations.curation_summary(table, {"none": curve}, {"none": none}, settings)[1] is None, "too short"
    assert mitigations.curation_summary(table, {}, {}, settings)[1] is None, "the reference did not run"


def test_curation_seeds_are_paired_across_cells_and_seed_0_is_the_chains_own():
    from resonance_utils.features import MnistClassifier

    settings = specs.MitigationSpec(mitigation_list="none", curator_accuracies="0.5, 1", curation_budgets="0.5",
                                    curation_focus="hardest", curation_seeds=3)
    spec = specs.DiffusionChainSpec(device="cpu", n_generations=4, seed=7)
    jobs = mitigations.chain_jobs(spec, None, MnistClassifier().eval(), settings)
    curated = jobs[1:]
    assert len(curated) == 2 * 3 and len({j.name for j in jobs}) == len(jobs), "one uniquely named chain per seed"
    seeds = {j.name: j.kwargs["chain_seed"] for j in curated}
    assert seeds["weak curation hardest a=0.5 b=0.5"] is None and seeds["weak curation hardest a=1 b=0.5"] is None
    for r in (1, 2):
        expected = image_chains.replicate_seed(7, 0, r)
        assert seeds[f"weak curation hardest a=0.5 b=0.5 seed {r}"] == expected
        assert seeds[f"weak curation hardest a=1 b=0.5 seed {r}"] == expected, "replicate r: the same noise in every cell"
    assert len({image_chains.replicate_seed(7, 0, r) for r in (1, 2)} | {7}) == 3


def _curation_grid(rng, *, seeds: int, effect: float, accuracies=(0.5, 0.65), seed_sd=0.08, cell_sd=0.03):
    """A curation_summary-like grid with a known answer: every seed's chain shares a seed effect across cells (the
    pairing), each cell adds its own noise, and the curators above chance shift retention by `effect` and the
    cumulative FID by -100 * effect."""
    import pandas as pd

    rows = []
    base = rng.normal(0.8, seed_sd, seeds)
    for a in accuracies:
        for r in range(seeds):
            shift = 0.0 if a == mitigations.CHANCE else effect
            rows.append({"focus": "hardest", "budget": 0.5, "curator accuracy": a, "replicate": r,
                         "final class retention": base[r] + shift + rng.normal(0, cell_sd),
                         "final cumulative FID": 100 * (1 - base[r]) - 100 * shift + rng.normal(0, 100 * cell_sd)})
    return pd.DataFrame(rows)


def test_curation_verdicts_match_an_independent_paired_t_interval():
    from scipy import stats

    grid = _curation_grid(np.random.default_rng(0), seeds=4, effect=0.05)
    out = mitigations.curation_verdicts(grid, alpha=0.1).iloc[0]
    cell = grid[grid["curator accuracy"] == 0.65].sort_values("replicate")
    chance = grid[grid["curator accuracy"] == 0.5].sort_values("replicate")
    for measure in mitigations.CURATION_MEASURES:
        a, b = cell[measure].to_numpy(), chance[measure].to_numpy()
        ci = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.9)
        assert out[f"{measure} vs chance"] == pytest.approx((a - b).mean())
        assert (out[f"{measure} low"], out[f"{measure} high"]) == pytest.approx((ci.low, ci.high))
    assert out["paired seeds"] == 4


@pytest.mark.parametrize("seeds", [3, 5])  # the paper profile's 3, and more
def test_curation_verdicts_are_wrong_at_most_alpha_of_the_time_under_the_null_and_find_a_real_effect(seeds):
    """Known answers at the sizes used: with no effect a verdict other than "inconclusive" is an error, and its
    rate is the level (per cell); with an effect about six times the paired differences' own noise the verdict finds it, in the right
    direction for both measures (retention up and FID down are both "helps")."""
    rng = np.random.default_rng(seeds)
    draws, alpha = 400, 0.05
    null = [mitigations.curation_verdicts(_curation_grid(rng, seeds=seeds, effect=0.0), alpha=alpha).iloc[0]
            for _ in range(draws)]
    for measure in mitigations.CURATION_MEASURES:
        wrong = np.mean([row[f"{measure} verdict"] != "inconclusive" for row in null])
        assert wrong <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / draws), (measure, wrong)
        assert wrong >= 0.01, (measure, wrong, "not a vacuous test that never decides")
    for effect, verdict in ((0.25, "helps"), (-0.25, "hurts")):
        found = [mitigations.curation_verdicts(_curation_grid(rng, seeds=seeds, effect=effect), alpha=alpha).iloc[0]
                 for _ in range(100)]
        for measure in mitigations.CURATION_MEASURES:
            assert np.mean([row[f"{measure} verdict"] == verdict for row in found]) >= 0.9, (measure, effect)


def test_one_seed_or_no_chance_cell_is_never_a_verdict():
    rng = np.random.default_rng(1)
    one = mitigations.curation_verdicts(_curation_grid(rng, seeds=1, effect=0.5), alpha=0.05)
    assert set(one[[c for c in one if c.endswith("verdict")]].to_numpy().ravel()) == {"inconclusive (one seed)"}
    no_control = mitigations.curation_verdicts(_curation_grid(rng, seeds=3, effect=0.5, accuracies=(0.65, 1.0)))
    assert len(no_control) == 2 and set(no_control["final class retention verdict"]) == {"no chance control"}
    assert mitigations.curation_verdicts(_curation_grid(rng, seeds=3, effect=0.5, accuracies=(0.5,))).empty


@pytest.mark.parametrize("seeds", [1, 3])
def test_the_curation_figure_draws_the_seed_mean_and_its_interval(seeds):
    """Several seeds: each point is the mean over seeds with its Student-t 95% interval; one seed: retention's
    Wilson interval on the last generation's samples. No layout problem either way."""
    import matplotlib.pyplot as plt
    from scipy import stats

    from resonance_utils import plots
    from resonance_utils.watermark import wilson_interval

    plt.switch_backend("Agg")
    grid = _curation_grid(np.random.default_rng(2), seeds=seeds, effect=0.1, accuracies=(0.5, 1.0))
    grid["samples"], grid["generations"] = 400, 8
    fig = plots.weak_curation(grid, None, feature_network="MNIST CNN embedding (ours)")
    try:
        assert plots.layout_problems(fig) == []
        bars = fig.axes[0].containers[0]
        ys = bars.lines[0].get_ydata()
        cell = grid.groupby("curator accuracy")["final class retention"]
        np.testing.assert_allclose(ys, cell.mean().to_numpy())
        segments = bars.lines[2][0].get_segments()
        half = np.array([(s[1, 1] - s[0, 1]) / 2 for s in segments])
        if seeds > 1:
            expected = stats.t.ppf(0.975, seeds - 1) * cell.std(ddof=1).to_numpy() / np.sqrt(seeds)
            np.testing.assert_allclose(half, expected)
            assert f"mean of {seeds} seeds" in fig.axes[0].get_ylabel()
        else:
            ends = np.array([wilson_interval(int(round(p * 400)), 400) for p in cell.mean()])
            np.testing.assert_allclose(half, (ends[:, 1] - ends[:, 0]) / 2)
            assert "one seed" in fig.axes[0].get_ylabel()
    finally:
        plt.close(fig)
