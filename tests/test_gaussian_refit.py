"""Tests for resonance_utils.gaussian_refit: every simulation against its closed form, with stated tolerances.

Tolerances are in standard errors (SE) computed from the closed form or from the replicates; 4.5 SE leaves a
false-alarm rate below 1e-5 per comparison, while each closed form differs from the wrong alternative (ML vs
unbiased variance, no shrinkage, wrong rate) by many SE at these sample sizes.
"""
import numpy as np
import pytest

from resonance_utils import gaussian_refit as GR
from resonance_utils import geometry


# ------------------------------------------------------------------------------------- Gaussian refitting


def test_gaussian_refit_variance_decays_like_the_closed_form():
    n, gens, reps = 20, 20, 20000
    res = GR.run_gaussian_refit(n, gens, n_replicates=reps, seed=0)
    var = np.array([s["covs"][:, 0, 0] for s in res.states])  # (G + 1, R)
    g = np.arange(gens + 1)
    want, sd = GR.predicted_refit_trace(n, g), GR.predicted_refit_variance_sd(n, g)
    z = np.abs(var.mean(1) - want)[1:] / (sd[1:] / np.sqrt(reps))
    assert z.max() < 4.5, z
    np.testing.assert_allclose(var.std(1)[1:11], sd[1:11], rtol=0.1)
    drift = (np.log(var[-1]) - np.log(var[0])) / gens
    assert abs(drift.mean() - GR.predicted_refit_log_drift(n)) < 4.5 * drift.std() / np.sqrt(reps)
    np.testing.assert_allclose(np.log(var[1:]).std(1), GR.predicted_refit_log_sd(n, g[1:]), rtol=0.03)
    # the unbiased estimator (divide by N - 1) would keep the mean at 1: far outside these bands
    assert abs(1 - want[-1]) > 20 * sd[-1] / np.sqrt(reps)


def test_gaussian_refit_trace_and_mean_in_several_dimensions():
    n, gens, reps, dim = 12, 15, 4000, 3
    res = GR.run_gaussian_refit(n, gens, dim=dim, n_replicates=reps, seed=1)
    tr = np.array([np.trace(s["covs"], axis1=1, axis2=2) for s in res.states])
    ratio = tr[1:] / tr[:-1]  # E[ratio | past] = (N - 1) / N exactly
    assert abs(ratio.mean() - GR.refit_factor(n)) < 4.5 * ratio.std() / np.sqrt(ratio.size)
    shift = np.array([(s["means"] ** 2).sum(1) for s in res.states])
    want = GR.predicted_refit_mean_shift(n, gens, trace0=dim)
    assert abs(shift[-1].mean() - want) < 4.5 * shift[-1].std() / np.sqrt(reps)
    logdet = np.linalg.slogdet(res.states[-1]["covs"])[1] / gens
    assert abs(logdet.mean() - GR.predicted_refit_log_drift(n, dim=dim)) < 4.5 * logdet.std() / np.sqrt(reps)


def test_refit_contracts_directionally_at_the_lyapunov_rates():
    n, dim, gens, reps = 10, 3, 40, 400
    res = GR.run_gaussian_refit(n, gens, dim=dim, n_replicates=reps, seed=3)
    logeig = np.log(np.linalg.eigvalsh(np.stack([res.states[g]["covs"] for g in (20, 40)]))[..., ::-1])
    slope = (logeig[1] - logeig[0]) / 20  # (R, d), after the first 20 generations' transient
    want = GR.predicted_refit_lyapunov(n, dim=dim)
    assert np.all(np.abs(slope.mean(0) - want) < 4.5 * slope.std(0) / np.sqrt(reps) + 0.01), (slope.mean(0), want)
    assert want.sum() == pytest.approx(GR.predicted_refit_log_drift(n, dim=dim))


def test_refit_clouds_classify_as_contraction():
    res = GR.run_gaussian_refit(10, 60, dim=4, n_replicates=1, seed=2)
    clouds = GR.refit_clouds(res, generations=range(0, 61, 15), n_points=400)
    patterns = geometry.classify_trajectory(clouds, window=3)
    assert all(p.global_axis == "contraction" for p in patterns), [p.pattern for p in patterns]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n_samples"):
        GR.run_gaussian_refit(1, 3)
    with pytest.raises(ValueError, match="cov0 must have shape"):
        GR.run_gaussian_refit(5, 2, dim=2, cov0=np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        GR.predicted_refit_log_drift(3, dim=3)


# ------------------------------------------------------------------- the tables notebook 07 shows (part 1)


def rate(table, quantity_start):
    rows = table[table["quantity"].str.startswith(quantity_start)]
    assert len(rows) >= 1, f"no row {quantity_start!r} in {table['quantity'].tolist()}"
    return rows.iloc[0]


def test_refit_rates_rows_recomputed_from_the_chains_and_the_closed_forms():
    n, gens, dim, reps = 10, 30, 3, 3000
    rates = GR.refit_rates(n_samples=n, n_generations=gens, dim=dim, n_replicates=reps, seed=5)
    t = rates.table
    assert list(t.columns) == ["quantity", "case", "predicted", "simulated", "SE", "prediction"]
    assert len(t) == 7 + dim
    # the same chains by hand: seed for 1-D, seed + 1 for d-D
    var = np.array([s["covs"][:, 0, 0] for s in GR.run_gaussian_refit(n, gens, n_replicates=reps, seed=5).states])
    covs = np.stack([s["covs"] for s in GR.run_gaussian_refit(n, gens, dim=dim, n_replicates=reps, seed=6).states])
    np.testing.assert_array_equal(rates.variance, var)
    ratio = var[1:] / var[:-1]
    row = rate(t, "variance factor")
    assert row.predicted == (n - 1) / n
    assert row.simulated == pytest.approx(ratio.mean(), rel=1e-12)
    assert row.SE == pytest.approx(ratio.std() / np.sqrt(ratio.size), rel=1e-12)
    # E sigma^2_n at n = min(N, G) = 10: ((N - 1)/N)^n, and the simulation within 4.5 SE of it
    row = rate(t, "E sigma^2_n")
    assert row.quantity.endswith("n = 10") and row.predicted == pytest.approx(0.9**10, rel=1e-12)
    assert row.simulated == pytest.approx(var[10].mean(), rel=1e-12)
    assert abs(row.simulated - row.predicted) < 4.5 * row.SE
    # the mean's wander at G, from the d-D means: tr S_0 (1 - ((N-1)/N)^G) / tr S_0
    means = np.stack([s["means"] for s in GR.run_gaussian_refit(n, gens, dim=dim, n_replicates=reps,
                                                                  seed=6).states])
    wander = (means[-1] ** 2).sum(1) / dim
    row = rate(t, "E|mean_G")
    assert row.predicted == pytest.approx(1 - 0.9**gens, rel=1e-12)
    assert row.simulated == pytest.approx(wander.mean(), rel=1e-12)
    assert abs(row.simulated - row.predicted) < 4.5 * row.SE
    # Lyapunov exponent 1: slope of the largest log-eigenvalue over the second half, replicate by replicate
    top = np.array([[np.linalg.eigvalsh(c)[-1] for c in covs[g]] for g in (gens // 2, gens)])
    row = rate(t, "Lyapunov exponent 1")
    assert row.simulated == pytest.approx(np.mean(np.log(top[1] / top[0]) / (gens - gens // 2)), rel=1e-9)
    # the exact rows agree with their closed forms (the spreads carry no SE)
    exact = t[(t.prediction == "exact") & t.SE.notna()]
    assert np.all(np.abs(exact.simulated - exact.predicted) < 4.5 * exact.SE), exact
    assert rates.lyapunov == pytest.approx(GR.predicted_refit_lyapunov(n, dim=dim))


def test_refit_patterns_table_is_the_taxonomy_of_the_chosen_clouds():
    res = GR.run_gaussian_refit(10, 60, dim=4, n_replicates=2, seed=2)
    out = GR.refit_patterns(res, replicate=1, n_points=300, every=15, seed=3)
    assert out.generations == [0, 15, 30, 45, 60]
    clouds = GR.refit_clouds(res, replicate=1, n_points=300, generations=[0, 15, 30, 45, 60], seed=3)
    np.testing.assert_array_equal(out.clouds[-1], clouds[-1])
    want = geometry.classify_trajectory(clouds, window=3)
    assert out.table["pattern"].tolist() == [p.pattern for p in want] + [out.whole.pattern]
    assert out.table["from generation"].tolist() == [0, 15, 30, 0] and out.table["to generation"].tolist()[-1] == 60
    # the whole run's log variance ratio, straight from the first and last cloud
    ratio = np.log(geometry.total_variance(clouds[-1]) / geometry.total_variance(clouds[0]))
    assert out.table["log variance ratio"].iloc[-1] == pytest.approx(ratio, rel=1e-9)
    assert ratio < 0 and out.whole.global_axis == "contraction"


def test_refit_tables_reject_bad_inputs_by_name():
    with pytest.raises(ValueError, match="n_samples=4 points in dim=4"):
        GR.refit_rates(n_samples=4, dim=4, n_generations=3, n_replicates=10)
    with pytest.raises(ValueError, match="n_generations"):
        GR.refit_rates(n_samples=5, dim=1, n_generations=0, n_replicates=10)
    with pytest.raises(ValueError, match="n_replicates"):
        GR.refit_rates(n_samples=5, dim=1, n_generations=3, n_replicates=1)
    with pytest.raises(ValueError, match="every"):
        GR.refit_patterns(GR.run_gaussian_refit(5, 4, dim=2, n_replicates=1), every=0)
