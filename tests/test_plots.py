"""The figure functions of plots.py on small synthetic inputs: what each one draws (axes, lines and collections
per series, labels, titles, scales, legend entries) and the inputs it refuses."""
from types import SimpleNamespace

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from resonance_utils import coevolution as coevo
from resonance_utils import gaussian_refit as refit
from resonance_utils import metrics, plots
from resonance_utils import recursive_diffusion as rd

plt.switch_backend("Agg")  # conftest asks for it too (MPLBACKEND); no window, whoever runs this module


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def legend_labels(ax_or_fig) -> list:
    """The entries of an axis' legend, or of a figure's (first) legend."""
    legend = ax_or_fig.legends[0] if isinstance(ax_or_fig, matplotlib.figure.Figure) else ax_or_fig.get_legend()
    return [t.get_text() for t in legend.get_texts()]


def panels(fig) -> list:
    """The figure's axes other than colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def data_lines(ax) -> list:
    """Lines with data (not the empty ones drawn only for a legend entry)."""
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def errorbar_containers(ax) -> list:
    return [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]


# ------------------------------------------------------------------------------------ 01: Lucier's room
SR = 8000


@pytest.fixture
def passes(rng):
    t = np.arange(4000) / SR
    return np.stack([np.sin(2 * np.pi * (300 + 50 * p) * t) + 0.1 * rng.standard_normal(t.size) for p in range(6)])


def test_lucier_spectrograms_one_panel_per_pass_and_the_rest_hidden(passes):
    fig = plots.lucier_spectrograms(passes, [0, 1, 2, 5], SR, f_star=342.0, band=(60.0, 3000.0))
    axes = panels(fig)
    assert len(axes) == 6  # 2 rows x 3 columns
    shown = [ax for ax in axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["pass 0", "pass 1", "pass 2", "pass 5"]
    for ax in shown:
        assert len(ax.collections) == 1  # the spectrogram
        (line,) = ax.get_lines()
        assert np.allclose(line.get_ydata(), 342.0) and line.get_linestyle() == "--"
        assert ax.get_ylim()[1] == pytest.approx(3300.0)  # 1.1 x the band's top, below Nyquist
    assert [ax.get_xlabel() for ax in shown] == ["", "", "", "time (s)"]  # the bottom row only
    assert [ax.get_ylabel() for ax in shown] == ["frequency (Hz)", "", "", "frequency (Hz)"]  # the left column only
    (colorbar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert colorbar.get_ylabel() == "dB (each pass to its own peak)"
    assert fig.get_suptitle().startswith("Lucier's loop")


def test_lucier_spectrograms_caps_at_nyquist_and_needs_a_pass(passes):
    fig = plots.lucier_spectrograms(passes, [3], SR, f_star=342.0, band=(60.0, 3900.0))
    (ax,) = panels(fig)
    assert ax.get_ylim()[1] == pytest.approx(SR / 2)
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.lucier_spectrograms(passes, [], SR, f_star=342.0, band=(60.0, 3000.0))


def spectra(n_freqs=400):
    freqs = np.linspace(10.0, 4000.0, n_freqs)
    peak = np.exp(-((freqs - 342.0) / 20) ** 2)
    return freqs, 5 * peak + 1e-3, 3 * peak ** 2 + 1e-4, 0.5 + peak


def test_lucier_spectrum_draws_three_spectra_in_db_and_the_modes():
    freqs, simulated, predicted, gain = spectra()
    fig = plots.lucier_spectrum(freqs, simulated, predicted, gain, n=60, f_star=342.0, band=(60.0, 3800.0),
                                modes_hz=[42.9, 57.2, 68.6])
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert ax.get_xlim() == pytest.approx((60.0 * 0.8, 3800.0))
    assert ax.get_ylim() == pytest.approx((-100, 3))
    lines = ax.get_lines()
    assert len(lines) == 4  # |G|, simulated, predicted, f*
    for line in lines[:3]:
        assert np.max(line.get_ydata()) == pytest.approx(0.0)  # each in dB re. its own peak
    assert np.allclose(lines[3].get_xdata(), 342.0)
    (modes,) = ax.collections
    assert len(modes.get_segments()) == 3
    assert legend_labels(ax) == ["|G(f)|: loudspeaker x room (one pass)", "pass 60, simulated",
                                 "|X0| |G|^60, predicted", "f* = 342.0 Hz", "lowest room modes"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("frequency (Hz)", "dB re. peak")


def test_lucier_spectrum_without_modes_and_with_mismatched_spectra():
    freqs, simulated, predicted, gain = spectra()
    fig = plots.lucier_spectrum(freqs, simulated, predicted, gain, n=5, f_star=342.0, band=(60.0, 3800.0))
    assert "lowest room modes" not in legend_labels(fig.axes[0])
    with pytest.raises(ValueError, match="predicted"):
        plots.lucier_spectrum(freqs, simulated, predicted[:-1], gain, n=5, f_star=342.0, band=(60.0, 3800.0))


@pytest.mark.parametrize("lock_in, n_entries", [(12, 3), (None, 2)])
def test_lucier_dominant_entropy(lock_in, n_entries):
    dominant = np.r_[np.full(12, 129.5), np.full(9, 342.0)]
    entropy = np.linspace(9.8, 2.1, 21)
    fig = plots.lucier_dominant_entropy(dominant, entropy, f_star=342.0, lock_in=lock_in)
    a1, a2 = fig.axes
    assert a1.get_yscale() == "log" and a2.get_yscale() == "linear"
    assert len(a1.get_lines()) == n_entries
    labels = legend_labels(a1)
    assert labels[:2] == ["dominant frequency", "predicted f* = 342.0 Hz"]
    assert len(labels) == n_entries and (lock_in is None or labels[2] == "locks in at pass 12")
    assert np.array_equal(a2.get_lines()[0].get_ydata(), entropy)
    assert (a2.get_xlabel(), a2.get_ylabel()) == ("pass", "spectral entropy (bits)")
    assert fig.get_suptitle() == "The chain forgets the voice and keeps the room"


def test_lucier_embedding_a_cloud_and_a_centroid_per_pass(rng):
    show = [0, 2, 5]
    coords = {p: rng.normal(size=(30, 2)) / (p + 1) + p for p in show}
    emb = {"coords": coords, "spread": {0: 9.0, 2: 4.0, 5: 1.0}, "explained": [0.6, 0.25]}
    fig = plots.lucier_embedding(emb, show)
    a1, a2 = fig.axes
    assert len(a1.collections) == 2 * len(show)
    assert legend_labels(a1) == ["pass 0", "pass 2", "pass 5"]
    (path,) = a1.get_lines()
    assert np.allclose(path.get_xdata(), [coords[p][:, 0].mean() for p in show])
    assert (a1.get_xlabel(), a1.get_ylabel()) == ("PC1 of log-mel frames (dB; 60% of variance)", "PC2 (dB; 25%)")
    (spread,) = a2.get_lines()
    assert np.array_equal(spread.get_xdata(), show) and np.array_equal(spread.get_ydata(), [9.0, 4.0, 1.0])
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.lucier_embedding(emb, [])


# ------------------------------------------------------------------------------------ 05: drift and geometry
def curve(values, kind, *, n=50, floor=0.5):
    values = np.asarray(values, float)
    se = np.full(values.size, 0.1)
    return metrics.DriftCurve(values=values, n=n, feature_network="synthetic", resize="none", metric="fid",
                              kind=kind, floor=np.full(values.size, floor), low=values - 0.2, high=values + 0.2,
                              se=se, floor_se=se, excess_se=se, trend_se=se, resplits=5)


def drift_pair(n_gen=10, scale=1.0):
    g = np.arange(n_gen)
    local = curve(scale * (0.5 + 4 * np.exp(-g)), "local")
    cumulative = curve(scale * (0.5 + 10 * (1 - np.exp(-g / 2))), "cumulative")
    labels = ["active transient"] * 3 + ["slow transient"] * 3 + ["empirical stationarity"] * (n_gen - 6)
    return local, cumulative, SimpleNamespace(labels=labels)


def test_drift_panel_defaults_are_those_of_fig5():
    fig, ax = plt.subplots()
    plots.drift_panel(ax, *drift_pair(), title="label guided")
    assert legend_labels(ax)[-3:] == ["local FID(n, n-1)", "cumulative FID(n, 0)", "floor (n = 50)"]
    assert ax.get_legend().get_texts()[0].get_fontsize() == 6
    assert (ax.get_title(), ax.get_xlabel()) == ("label guided", "generation")


def test_synthetic_phases_fig3():
    bounds = {"active transient": 0, "slow transient": 3, "empirical stationarity": 6}
    fig = plots.synthetic_phases(*drift_pair(), bounds)
    (ax,) = fig.axes
    assert ax.get_yscale() == "symlog" and ax.get_ylim()[0] == 0
    assert legend_labels(ax) == ["active transient", "slow transient", "empirical stationarity",
                                 "local drift FID(n, n-1)", "cumulative drift FID(n, 0)",
                                 "noise floor: two halves of one generation (n = 50)"]
    assert ax.get_legend().get_texts()[0].get_fontsize() == 7
    # local, cumulative, floor, then the true boundaries but the first (generation 0) dotted
    lines = ax.get_lines()
    assert len(lines) == 5
    assert [line.get_xdata()[0] for line in lines[3:]] == [2.5, 5.5]
    assert all(line.get_linestyle() == ":" for line in lines[3:])
    assert len(ax.patches) == 3  # one shaded span per phase
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("generation n", "FID (synthetic features)")
    assert ax.get_title() == "Idealised phases, from a synthetic chain (dotted: true boundaries)"


def test_drift_all_chains_fig1b():
    curves = {"MNIST unconditional": drift_pair(10)[:2], "Lucier room loop": drift_pair(7, scale=50.0)[:2]}
    fig = plots.drift_all_chains(curves)
    top, bottom = fig.axes
    for ax, start in ((top, 1), (bottom, 0)):
        lines = ax.get_lines()
        assert len(lines) == 3  # one per chain and the floor at 0
        for line, n_gen in zip(lines[:2], (10, 7)):
            assert np.nanmax(line.get_ydata()) == pytest.approx(1.0)  # each over its own maximum
            assert np.allclose(line.get_xdata(), np.arange(start, n_gen) / (n_gen - 1))  # fraction of its run
        assert np.allclose(lines[2].get_ydata(), 0.0) and lines[2].get_linestyle() == "--"
        assert len(ax.collections) == 2  # one interval band per chain
    assert legend_labels(fig) == list(curves)
    assert bottom.get_xlabel() == "fraction of the run's generations  (dashed: the noise floor)"
    assert top.get_ylabel().startswith("local drift") and bottom.get_ylabel().startswith("cumulative drift")
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.drift_all_chains({})


def test_drift_phases_row_fig5():
    drift = {s: dict(zip(("local", "cumulative", "phases"), drift_pair()))
             for s in ("label_guided", "latent_feedback", "unconditional")}
    fig = plots.drift_phases_row(drift, ylabel="FID (MNIST CNN)", suptitle="MNIST drift")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["label guided", "latent feedback", "unconditional"]
    assert [ax.get_legend() is not None for ax in axes] == [True, False, False]
    assert [ax.get_ylabel() for ax in axes] == ["FID (MNIST CNN)", "", ""]
    assert fig.get_figwidth() == pytest.approx(4.3 * 3) and fig.get_suptitle() == "MNIST drift"
    # 03's row: its long suptitle sat on the panels' titles
    fig = plots.drift_phases_row(drift, ylabel="FID (classifier features)", panel_width=4.6,
                                 suptitle="ImageNet-5 stand-in: local and cumulative drift with detected phases")
    assert plots.layout_problems(fig) == []


def test_geometry_figure_one_panel_per_measure_one_line_per_setting():
    rows = [{"setting": s, "generation": g, **{c: g + i for i, (c, _) in enumerate(plots.GEOMETRY_COLUMNS)}}
            for s in ("label_guided", "unconditional") for g in range(4)]
    fig = plots.geometry_figure(pd.DataFrame(rows), suptitle="Geometry")
    assert [ax.get_title() for ax in fig.axes] == [label for _, label in plots.GEOMETRY_COLUMNS]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
    assert legend_labels(fig.axes[0]) == ["label guided", "unconditional"]
    assert fig.get_figwidth() == pytest.approx(15) and fig.get_suptitle() == "Geometry"
    assert plots.layout_problems(plots.geometry_figure(pd.DataFrame(rows), suptitle="Geometry of the ImageNet-5 "
                                                       "chains' feature clouds")) == []


# ------------------------------------------------------------------------------------ 06: recursive diffusion
@pytest.fixture(scope="module")
def diffusion():
    data = rd.isotropic_mixture([0.5, 0.5], [-1.0, 1.5], [0.3, 0.4])
    small = dict(delta=0.1, real_fraction=0.2, n_samples=200, n_components=2, em_iterations=10, sampler="exact",
                 n_steps=10)
    conv = rd.convergence_study(data, n_generations=4, compare_fractions=[0.0], grid_points=120,
                                initial=rd.isotropic_mixture([1.0], [-3.0], [0.2]), **small)
    data2 = rd.isotropic_mixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.4])
    conv2 = rd.convergence_study(data2, n_generations=3, grid_points=20, **small)
    modes = rd.hermite_study(conv, max_order=3, memorising_chains=2, memorising_samples=300, seed=0)
    anneal = rd.annealing_study(data, delta0=0.2, n_generations=4, fractions=(0.0, 0.2), points=conv.points,
                                cell=conv.cell)
    return SimpleNamespace(conv=conv, conv2=conv2, modes=modes, anneal=anneal)


def test_diffusion_convergence(diffusion):
    fig = plots.diffusion_convergence(diffusion.conv, show=[0, 1, 2, 4], n_samples=200)
    ax1, ax2 = fig.axes
    assert len(ax1.get_lines()) == 3 + 2  # generations 1, 2, 4; the limit; N(0, 1)
    assert len(ax1.collections) == 1  # the data, filled
    assert legend_labels(ax1)[:4] == ["data (model 0)", "generation 1", "generation 2", "generation 4"]
    assert ax1.get_title() == "exact chain, lam = 0.2, delta = 0.1"
    assert ax2.get_yscale() == "log"
    assert len(data_lines(ax2)) == 2 * 2 + 2  # per fraction its curve and predicted slope; far start; EM
    assert legend_labels(ax2) == ["exact, lam = 0.0", "exact, lam = 0.2", "exact from a far start, lam = 0.2",
                                  "EM-fitted (N = 200), lam = 0.2", "predicted slope (1-lam) e^-delta (x5 above)"]
    assert ax2.get_ylabel() == "L1 distance to the closed-form limit"
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.diffusion_convergence(diffusion.conv, show=[], n_samples=200)


def test_diffusion_2d(diffusion):
    conv2 = diffusion.conv2
    outs = conv2.sampler_outputs([0, 3], n=100)
    density = rd.early_stop_map(conv2.limit, conv2.delta).pdf(conv2.points).reshape(20, 20)
    fig = plots.diffusion_2d(conv2, outs, density, n_samples=200)
    *clouds, last = fig.axes
    assert [ax.get_title() for ax in clouds] == ["generation 0: sampler output", "generation 3: sampler output"]
    for ax, g in zip(clouds, outs):
        scatter = [c for c in ax.collections if len(c.get_offsets()) == 100]
        assert len(scatter) == 1 and np.allclose(scatter[0].get_offsets(), outs[g])
        assert len(ax.collections) > 1  # and the limit's contours
    assert last.get_yscale() == "log" and legend_labels(last) == ["exact", "EM fit, N = 200"]
    with pytest.raises(ValueError, match="limit_density"):
        plots.diffusion_2d(conv2, outs, density[:-1], n_samples=200)


def test_diffusion_hermite(diffusion):
    fig = plots.diffusion_hermite(diffusion.modes, lam=0.2, delta=0.1)
    ax1, ax2, ax3 = fig.axes
    assert ax1.get_yscale() == "log"
    assert len(ax1.get_lines()) == 3 * 3  # per order: exact, memorising mean, noise floor
    assert legend_labels(ax1) == ["k = 1", "k = 2", "k = 3"]
    assert len(errorbar_containers(ax2)) == 2
    assert legend_labels(ax2) == ["predicted (1-lam) e^-k delta", "exact chain", "memorising chains (2 SE)",
                                  "EM-fitted chain (2 SE)"]
    assert len(ax3.patches) == len(diffusion.modes.table)  # a predicted-gain bar per order
    assert ax3.get_ylabel() == "c_k(limit) / c_k(data)"
    assert fig.get_suptitle() == "Hermite modes of N(0, 1): lam = 0.2, delta = 0.1"


def test_diffusion_annealing(diffusion):
    fig = plots.diffusion_annealing(diffusion.anneal, delta0=0.2)
    assert [ax.get_title() for ax in fig.axes] == ["lam = 0.0, delta_0 = 0.2", "lam = 0.2, delta_0 = 0.2"]
    schedules = [f"delta_n: {kind}" for kind in rd.SCHEDULES]
    assert legend_labels(fig.axes[0]) == schedules + ["L1(P_D data, data), D = delta_0 pi^2/6"]
    assert legend_labels(fig.axes[1]) == schedules + ["constant delta: its limit"]
    for ax in fig.axes:
        assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--", "-.", ":"]
        assert ax.get_ylim()[0] == 0


# ------------------------------------------------------------------------------------ 07: co-evolving models
@pytest.fixture(scope="module")
def refitted():
    part1 = refit.refit_rates(n_samples=10, n_generations=6, dim=3, n_replicates=20, seed=0)
    return part1, refit.refit_patterns(part1.chains, n_points=50, every=2, seed=0)


@pytest.fixture(scope="module")
def coevolved():
    original = coevo.coevolution_initial(6, 2, zipf=1.0, separation=3.0, spread=1.0, seed=0)
    return coevo.coevolution_rates(original, n_generations=4, n_samples=60, n_replicates=3, seed=0,
                                   error_samples=500)


def test_refit_variance(refitted):
    part1, _ = refitted
    g = part1.generations
    fig = plots.refit_variance(part1, mean_prediction=refit.predicted_refit_trace(10, g),
                               log_sd_prediction=refit.predicted_refit_log_sd(10, g))
    a1, a2, a3 = fig.axes
    assert a1.get_yscale() == "log" and a2.get_yscale() == "linear"
    assert len(a1.get_lines()) == 8 + 3 + 3  # eight grey chains; mean, prediction, median; the band's three
    assert legend_labels(a1) == ["mean over chains", "((N-1)/N)^n", "median chain", "5-95% of chains",
                                 "exp(n E log ratio +- 1.645 sd)"]
    assert a1.get_title() == "1-D, N = 10, 20 chains (grey: eight of them)"
    assert len(data_lines(a3)) == 2 * 3 + 2  # per direction its mean and Lyapunov slope; trace; prediction
    assert legend_labels(a3)[:3] == ["log eigenvalue 1", "log eigenvalue 2", "log eigenvalue 3"]
    assert a3.get_title() == "3-D: directions contract at different rates"


def test_refit_clouds(refitted):
    _, patterns = refitted
    variances = [float(np.trace(np.cov(c.T))) for c in patterns.clouds]
    fig = plots.refit_clouds(patterns, total_variances=variances, dim=3, n_samples=10)
    assert len(fig.axes) == len(patterns.clouds)
    for ax, g, v in zip(fig.axes, patterns.generations, variances):
        assert len(ax.collections) == 1
        assert ax.get_title() == f"generation {g}\ntotal variance {v:.2g}"
    assert all(p.pattern in fig.get_suptitle() for p in patterns.patterns)
    with pytest.raises(ValueError, match="total variances"):
        plots.refit_clouds(patterns, total_variances=variances[:-1], dim=3, n_samples=10)


def test_coevolve_text(coevolved):
    part2 = coevolved
    entropy = {n: coevo.entropy_bits(part2.results[n]["probs"]).mean(0) for n in part2.text_cases}
    fig = plots.coevolve_text(part2, entropy, n_samples=60, fresh_fraction=0.2)
    a1, a2, a3 = fig.axes
    cases = part2.text_cases
    assert [len(ax.get_lines()) for ax in (a1, a2, a3)] == [len(cases), len(cases) + 2, len(cases)]
    assert np.allclose(a1.get_lines()[0].get_ydata(), entropy[cases[0]])
    assert legend_labels(a2) == cases + ["Wright-Fisher (1 - 1/N)^n H_0", "with 20% fresh (sampled captions)"]
    assert [ax.get_xlabel() for ax in (a1, a2, a3)] == ["generation"] * 3
    assert a3.get_ylabel() == "captions alive" and a1.get_title() == "mean over 3 chains"
    assert fig.get_suptitle() == "Text diversity: K = 6 captions, N = 60 pairs per generation"


def test_coevolve_images(coevolved):
    part2 = coevolved
    fig = plots.coevolve_images(part2, dim=2)
    a1, a2 = fig.axes
    n = len(part2.image_cases)
    assert a1.get_yscale() == "log" and a2.get_yscale() == "linear"
    assert len(a1.get_lines()) == len(a2.get_lines()) == n + 2
    assert [line.get_color() for line in a1.get_lines()[:n]] == [line.get_color() for line in a2.get_lines()[:n]]
    assert legend_labels(a1) == part2.image_cases + ["frozen text, predicted", "frozen text + fresh, predicted"]
    assert fig.get_suptitle() == "Image diversity contracts, fidelity error stays bounded (d = 2, mean over 3 chains)"


def test_coevolve_matthew(coevolved):
    part2 = coevolved
    live = {n: part2.relative_live_diversity(n) for n in part2.image_cases}
    half_life = {n: coevo.first_crossing(d.mean(0).T, 0.5) for n, d in live.items()}
    fig = plots.coevolve_matthew(part2, live, half_life)
    a1, a2 = fig.axes
    assert (a1.get_xscale(), a2.get_xscale(), a2.get_yscale()) == ("log", "log", "log")
    assert len(errorbar_containers(a1)) == len(live)
    assert legend_labels(a1) == ["frozen text, predicted rho_k^G", "frozen text + fresh, predicted"] + list(live)
    assert len(a2.get_lines()) == len(live) + 1
    assert legend_labels(a2) == list(live) + ["frozen text, predicted log(1/2) / log rho_k"]
    assert a1.get_ylabel() == "image diversity at generation 4 / generation 0"
    assert a2.get_title() == "half-life (missing: not reached within 4 generations)"
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.coevolve_matthew(part2, {}, {})


def test_iterative_mle():
    from resonance_utils import iterative_mle as mle

    rates = mle.iterative_mle_rates(n_samples=10, n_generations=5, dim=2, n_replicates=30, seed=0)
    fig = plots.iterative_mle(rates)
    a1, a2, a3 = fig.axes
    assert len(a1.get_lines()) == 2 * 2 + 1 and len(a1.collections) == 2  # per regime mean and prediction; limit
    assert legend_labels(a1) == ["replace, measured", "replace, predicted", "accumulate, measured",
                                 "accumulate, predicted", "accumulate's limit sin(x)/x, x = pi/sqrt n"]
    assert legend_labels(a2)[-1] == "accumulate's bound pi^2 / (6 n)"
    assert a3.get_yscale() == "log" and len(a3.get_lines()) == 4
    np.testing.assert_allclose(a3.get_lines()[1].get_ydata(), rates.counterexample.predicted["variance"])
    assert a3.get_title() == f"ours: w = 0.5, tau = 0.7, kappa = {rates.collapse_factor:.3f}"


def test_generation_samples_draws_first_second_middle_and_last_class_balanced():
    from resonance_utils import chain
    labels = np.repeat(np.arange(4), 10)
    states = [{"images": np.full((40, 8, 8), g, np.uint8), "labels": labels} for g in range(9)]
    r = chain.ChainResult(states=states, metrics=[{}] * 9, seconds=[0.0] * 9)
    fig = plots.generation_samples(r, n=8, seed=0, title="t")
    assert [ax.get_title() for ax in fig.axes] == ["generation 0", "generation 1", "generation 4", "generation 8"]
    plt.close(fig)
