"""Notebook 10's sweep: the boundary on grids with known boundaries, the recursive-diffusion counterpart's closed form
against direct iteration, latent feedback's fresh share, and bad parameters."""
import hashlib

import numpy as np
import pytest

from test_image_chains import classifier, mnist  # noqa: F401 - the fixtures (MNIST, an untrained classifier)
from test_image_chains import tiny as image_chains_tiny

from resonance_utils import chain, config, diffusion, ensemble, image_chains, specs, sweep
from resonance_utils import recursive_diffusion as rd

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = sweep.notebook06_data()  # 06's 1-D mixture: three components, asymmetric


# ------------------------------------------------------------------------------------------------- the boundary
def test_boundary_finds_a_linear_crossing_exactly():
    columns = np.array([0.1, 0.15, 0.2, 0.35, 0.5])
    known = np.array([0.12, 0.2, 0.3, 0.4])  # one boundary per row, between grid values and on one
    score = columns[None, :] - known[:, None]  # linear in the column: interpolation is exact
    b = sweep.boundary(rows=[0, 0.1, 0.25, 0.5], columns=columns, score=score)
    np.testing.assert_allclose(b.position, known, atol=1e-12)
    assert b.state == ("crosses",) * 4
    # a level other than 0 moves the boundary by as much
    shifted = sweep.boundary(rows=[0, 0.1, 0.25, 0.5], columns=columns, score=score, level=0.05)
    np.testing.assert_allclose(shifted.position, known + 0.05, atol=1e-12)


def test_boundary_interpolates_in_log_columns_on_a_log_axis():
    columns = np.array([0.01, 0.03, 0.1, 0.3, 1.0])
    known = np.array([0.02, 0.5])
    score = np.log(columns)[None, :] - np.log(known)[:, None]
    b = sweep.boundary(rows=[0.1, 0.3], columns=columns, score=score, log_columns=True)
    np.testing.assert_allclose(b.position, known, rtol=1e-12)
    linear = sweep.boundary(rows=[0.1, 0.3], columns=columns, score=score)
    assert not np.allclose(linear.position, known)  # the axis' scale matters


def test_boundary_names_rows_without_a_crossing():
    score = np.array([[1.0, 2.0, 3.0],  # collapsing everywhere
                      [-3.0, -2.0, -1.0],  # holding everywhere
                      [1.0, -1.0, -2.0],  # collapsing at the weakest feedback only
                      [-1.0, 1.0, -1.0]])  # the first upward crossing counts
    b = sweep.boundary(rows=[0, 1, 2, 3], columns=[1, 2, 3], score=score)
    assert b.state == ("collapsing throughout", "holding throughout", "falls back", "crosses")
    assert np.isnan(b.position[:3]).all() and b.position[3] == pytest.approx(1.5)
    assert b.to_dict()["position"][:3] == [None, None, None]


def test_boundary_refuses_bad_grids():
    with pytest.raises(ValueError, match="shape"):
        sweep.boundary(rows=[0, 1], columns=[1, 2, 3], score=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        sweep.boundary(rows=[0], columns=[1, 2], score=[[0.0, np.nan]])
    with pytest.raises(ValueError, match="increasing"):
        sweep.boundary(rows=[0], columns=[2, 1], score=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="positive"):
        sweep.boundary(rows=[0], columns=[0, 1], score=[[0.0, 1.0]], log_columns=True)


# ------------------------------------------------------------------------------- the recursive-diffusion counterpart
def iterated_gain(lam: float, delta: float, *, order: int, generations: int) -> np.ndarray:
    """c_k(model_n) / c_k(data) of the exact chain, iterated mixture by mixture (no closed form)."""
    result = rd.run_exact_diffusion_chain(DATA, np.full(generations, delta), real_fraction=lam)
    c_data = rd.hermite_moments(DATA, order)[order]
    return np.array([rd.hermite_moments(m, order)[order] for m in result.states]) / c_data


@pytest.mark.parametrize("order", [1, 2])
def test_the_closed_form_boundary_is_where_the_iterated_chain_keeps_the_threshold(order):
    lams = np.array([0.1, 0.2, 0.35])
    deltas = sweep.limit_boundary(fresh_fractions=lams, order=order, gain_tol=0.5)
    for lam, delta in zip(lams, deltas):
        # iterate the exact chain at the closed-form delta until the transient is gone: it keeps exactly half
        factor = (1 - lam) * np.exp(-order * delta)
        gens = int(np.ceil(np.log(1e-12) / np.log(factor)))
        assert iterated_gain(lam, delta, order=order, generations=gens)[-1] == pytest.approx(0.5, abs=1e-9)
        # and a little either side of it the chain collapses (more delta) or holds (less)
        assert iterated_gain(lam, delta * 1.2, order=order, generations=gens)[-1] < 0.5
        assert iterated_gain(lam, delta / 1.2, order=order, generations=gens)[-1] > 0.5
    # no fresh data: the limit is N(0, 1) at any delta > 0; at or above the threshold share: never collapses
    edge = sweep.limit_boundary(fresh_fractions=[0.0, 0.5, 0.7], order=order, gain_tol=0.5)
    assert edge[0] == 0 and np.isnan(edge[1:]).all()


def test_the_gain_path_matches_the_iterated_chain_at_every_generation():
    got = sweep.hermite_gain_path(order=3, delta=0.2, real_fraction=0.15, generations=np.arange(16))
    np.testing.assert_allclose(got, iterated_gain(0.15, 0.2, order=3, generations=15), atol=1e-10)


def test_the_boundary_at_the_chains_length_is_where_the_iterated_window_mean_keeps_the_threshold():
    gens = np.arange(6, 11)  # a short chain: the transient is still there, so the boundary lies further out
    lams = [0.0, 0.2]
    short = sweep.chain_boundary(fresh_fractions=lams, order=2, gain_tol=0.5, generations=gens, delta_range=(1e-3, 5))
    limit = sweep.limit_boundary(fresh_fractions=lams, order=2, gain_tol=0.5)
    assert np.all(short > limit)
    for lam, delta in zip(lams, short):
        assert iterated_gain(lam, delta, order=2, generations=10)[gens].mean() == pytest.approx(0.5, abs=1e-8)
    long = sweep.chain_boundary(fresh_fractions=[0.2], order=2, gain_tol=0.5, generations=[500],
                                delta_range=(1e-3, 5))
    np.testing.assert_allclose(long, limit[1:], rtol=1e-8)
    assert np.isnan(sweep.chain_boundary(fresh_fractions=[0.6], order=2, gain_tol=0.5, generations=gens,
                                         delta_range=(1e-3, 5))[0])


def test_diffusion_sweep_measures_what_the_closed_form_predicts():
    out = sweep.diffusion_sweep(DATA, fresh_fractions="0, 0.2, 0.6", deltas="0.05, 0.2, 1.0", order=2,
                                gain_tol=0.5, n_samples=2000, n_generations=30, window=8, replicates=3, seed=1)
    assert out.measured.shape == (3, 3) and len(out.table) == 9
    t = out.table
    inside = (t["gain low"] <= t["gain predicted"]) & (t["gain predicted"] <= t["gain high"])
    assert inside.mean() >= 7 / 9  # 95% intervals from 3 replicates
    assert np.abs(t["gain measured"] - t["gain predicted"]).max() < 0.1
    assert out.measured_boundary.state[0] == "collapsing throughout"  # lam = 0 forgets the data
    assert out.measured_boundary.state[2] == "holding throughout"  # lam = 0.6 > gain_tol never collapses
    assert abs(np.log(out.measured_boundary.position[1] / out.limit_boundary[1])) < 0.3
    assert out.numbers()["limit_boundary"][2] is None
    again = sweep.diffusion_sweep(DATA, fresh_fractions="0, 0.2, 0.6", deltas="0.05, 0.2, 1.0", order=2,
                                  gain_tol=0.5, n_samples=2000, n_generations=30, window=8, replicates=3, seed=1)
    np.testing.assert_array_equal(again.measured, out.measured)  # seeded


def test_diffusion_sweep_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="1-D"):
        sweep.diffusion_sweep(rd.isotropic_mixture([1.0], [[0.0, 1.0]], [1.0]), fresh_fractions="0", deltas="0.1")
    symmetric = rd.isotropic_mixture([0.5, 0.5], [-1.0, 1.0], [0.5, 0.5])  # odd Hermite moments vanish
    with pytest.raises(ValueError, match="too close to 0"):
        sweep.diffusion_sweep(symmetric, fresh_fractions="0", deltas="0.1", order=1)
    with pytest.raises(ValueError, match="window"):
        sweep.diffusion_sweep(DATA, fresh_fractions="0", deltas="0.1", n_generations=5, window=6)
    with pytest.raises(ValueError, match="gain_tol"):
        sweep.limit_boundary(fresh_fractions=[0.1], order=1, gain_tol=1.0)


# ------------------------------------------------------------------------------------ latent feedback's fresh share
def tiny(**kw):
    """test_image_chains' tiny chain, a generation longer and with a strength that moves the images."""
    return image_chains_tiny(**{"n_generations": 3, "strength": 0.5, **kw})


def test_fresh_share_brings_exactly_that_many_class_balanced_real_images_into_each_generation(mnist, classifier):
    spec = tiny(regime="fresh", fresh_fraction=0.25)
    res = image_chains.run_image_chain(spec, "latent_feedback", mnist, classifier, progress=False)
    real = {hashlib.sha1(x.tobytes()).hexdigest(): int(y) for x, y in zip(mnist.images, mnist.labels)}
    for prev, state in zip(res.states, res.states[1:]):
        hits = [i for i, x in enumerate(state["images"]) if hashlib.sha1(x.tobytes()).hexdigest() in real]
        assert len(hits) == 5  # round(0.25 x 20) new real digits, the other 15 fed back (never exactly real)
        labels = state["labels"][hits]
        assert all(real[hashlib.sha1(state["images"][i].tobytes()).hexdigest()] == state["labels"][i] for i in hits)
        assert len(set(labels.tolist())) == 5  # 5 of 10 classes: one each
        kept = np.setdiff1d(np.arange(20), hits)
        np.testing.assert_array_equal(state["labels"][kept], prev["labels"][kept])  # trajectories keep their rows
    again = image_chains.run_image_chain(spec, "latent_feedback", mnist, classifier, progress=False)
    assert again.computed == []  # cached under its own key
    other = image_chains.run_image_chain(tiny(regime="fresh", fresh_fraction=0.5), "latent_feedback", mnist,
                                         classifier, progress=False)
    assert other.run_dir != res.run_dir


def test_without_fresh_data_latent_feedback_is_todays_chain_bit_for_bit(mnist, classifier):
    spec = tiny()
    res = image_chains.run_image_chain(spec, "latent_feedback", mnist, classifier, progress=False)
    model, space = image_chains.generation0_model(spec, mnist, progress=False)
    x = image_chains.generation_zero(mnist, spec.samples_per_generation, spec.seed)["images"]
    for g in range(1, spec.n_generations + 1):  # the operator as it was: every row fed back, no other draw
        x = diffusion.feedback_step(model, x, strength=spec.strength, ddim_steps=spec.ddim_steps, seed=spec.seed,
                                    generation=g, device="cpu", progress=False,
                                    space=None if space.kind == "pixel" else space)
        np.testing.assert_array_equal(res.states[g]["images"], x)
    # regime replace ignores a fresh share, as the retraining chains do
    ignored = image_chains.run_image_chain(tiny(fresh_fraction=0.3), "latent_feedback", mnist, classifier,
                                           progress=False)
    np.testing.assert_array_equal(ignored.states[-1]["images"], res.states[-1]["images"])


def test_fresh_real_indices_are_balanced_distinct_and_seeded():
    labels = np.repeat(np.arange(10), 30)
    idx = image_chains.fresh_real_indices(labels, 23, np.random.default_rng(3))
    counts = np.bincount(labels[idx], minlength=10)
    assert len(idx) == len(set(idx.tolist())) == 23 and counts.min() == 2 and counts.max() == 3
    np.testing.assert_array_equal(idx, image_chains.fresh_real_indices(labels, 23, np.random.default_rng(3)))
    assert len(image_chains.fresh_real_indices(labels, 0, np.random.default_rng(3))) == 0
    with pytest.raises(ValueError, match="class 0 of the real pool has 1 images"):
        image_chains.fresh_real_indices(np.array([0, 1, 1, 1]), 4, np.random.default_rng(0))
    assert [chain.fresh_count(20, f) for f in (0, 0.1, 0.25, 0.5)] == [0, 2, 5, 10]
    with pytest.raises(ValueError, match="fresh_fraction"):
        chain.fresh_count(20, 1.5)


def test_fresh_latent_feedback_needs_its_real_pool():
    with pytest.raises(ValueError, match="real_pool"):
        image_chains.LatentFeedback(model=None, spec=tiny(regime="fresh", fresh_fraction=0.2), seed=0)


# --------------------------------------------------------------------------------------------- the image sweep
def test_cell_specs_set_the_column_and_the_fresh_regime():
    spec = tiny()
    zero, some = sweep.cells(fresh_fractions=[0.0, 0.25], values=[0.3])
    assert sweep.cell_spec(spec, setting="latent_feedback", cell=zero) == spec.replace(strength=0.3)
    fresh = sweep.cell_spec(spec, setting="label_guided", cell=sweep.Cell(1, 0, 0.25, 3.0))
    assert (fresh.regime, fresh.fresh_fraction, fresh.guidance_scale) == ("fresh", 0.25, 3.0)
    assert some.name("latent_feedback") == "fresh 0.25 s 0.3"


def test_collapse_verdict_follows_its_rule():
    rule = dict(retention_tol=0.15)
    assert sweep.collapse_verdict(drift_low=1, drift_high=5, drop_low=0.2, drop_high=0.4, **rule) == "collapsing"
    assert sweep.collapse_verdict(drift_low=-1, drift_high=5, drop_low=0.2, drop_high=0.4, **rule) == "undetermined"
    assert sweep.collapse_verdict(drift_low=1, drift_high=5, drop_low=0.0, drop_high=0.1, **rule) == "holding"
    assert sweep.collapse_verdict(drift_low=-3, drift_high=-1, drop_low=0.2, drop_high=0.4, **rule) == "holding"
    assert sweep.collapse_verdict(drift_low=1, drift_high=5, drop_low=0.1, drop_high=0.2, **rule) == "undetermined"


def test_mean_interval_takes_the_larger_of_the_chains_errors_and_their_scatter():
    mean, low, high = sweep.mean_interval([1.0, 1.0, 1.0, 1.0], ses=[0.2] * 4)
    assert mean == 1 and high - mean == pytest.approx(1.959964 * 0.1, rel=1e-5)  # sqrt(4 x 0.04) / 4
    mean, low, high = sweep.mean_interval([0.0, 2.0], ses=[0.01, 0.01])
    assert mean == 1 and high - mean == pytest.approx(12.7062 * 1.0, rel=1e-4)  # t with 1 dof, sd / sqrt(2) = 1
    assert np.isnan(sweep.mean_interval([])[0])


@pytest.mark.parametrize("setting, value", [("latent_feedback", 0.3), ("label_guided", 2.0)])
def test_a_small_sweep_runs_as_one_ensemble_and_fills_its_grid(setting, value, mnist, classifier):
    spec = tiny(n_generations=5)
    plan = sweep.sweep_plan(spec, setting=setting, real=mnist, classifier=classifier, fresh_fractions=[0.0, 0.5],
                            values=[value], n_starts=2, n_replicates=2, skew=0.7, seed=0)
    assert plan.shape == (2, 1) and len(plan.jobs) == 8 and len({j.name for j in plan.jobs}) == 8
    assert all(j.kwargs["autoencoder_rms"] is False for j in plan.jobs)
    results = ensemble.run_ensemble(plan.jobs, progress=False).raise_failures()
    options = specs.ClaimMeasures(held_out=2, pca_components=5, n_boot=20)
    summary = sweep.summarise(plan, results=results, options=options, retention_tol=0.15, drift_resplits=2)
    t = summary.table
    assert len(t) == 2 and list(t["fresh share"]) == [0.0, 0.5] and set(t["chains"]) == {4}
    assert set(t["collapse"]) <= set(sweep.COLLAPSE_VERDICTS)
    assert (t["fall low"] <= t["retention fall"]).all() and (t["retention fall"] <= t["fall high"]).all()
    assert "autoencoder_rms" not in results[plan.jobs[0].name].metrics[1]
    assert summary.grid("collapse").shape == (2, 1) and summary.grid("retention fall").dtype == float
    assert summary.boundary().rows == (0.0, 0.5)


# ------------------------------------------------------------------------------------------ bad parameters
@pytest.mark.parametrize("override, message", [
    ({"strengths": "0.3, 0.1"}, "strictly increasing"),
    ({"strengths": "0, 0.2"}, "must lie in \\(0, 1\\]"),
    ({"fresh_fractions": "0, 1"}, "must lie in \\[0, 1\\)"),
    ({"fresh_fractions": "none"}, "comma-separated numbers"),
    ({"sweep_setting": "label_guided", "guidance_scales": "-1, 2"}, "guidance_scales"),
    ({"image_generations": 4}, "by at least 3"),
    ({"image_samples": 12, "pca_components": 12}, "pca_components"),
    ({"diffusion_window": 30}, "diffusion_window"),
    ({"diffusion_deltas": "0, 0.1"}, "diffusion_deltas"),
    ({"sweep_setting": "unconditional"}, "sweep_setting"),
])
def test_bad_sweep_parameters_are_refused_before_anything_runs(override, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load_config("10_sweep", "smoke", **override)


def test_the_counterpart_runs_on_the_data_of_every_profile_of_06():
    """notebook06_data reads 06's parameter defaults (10 does not wait for 06): no profile of 06 may change them."""
    for profile in ("smoke", "quick", "paper"):
        cfg = config.load_config("06_recursive_diffusion", profile)
        mixture = rd.mixture_from_params(cfg, prefix="data_1d")
        ours = sweep.notebook06_data()
        for a, b in ((mixture.weights, ours.weights), (mixture.means, ours.means), (mixture.covs, ours.covs)):
            np.testing.assert_array_equal(a, b)
