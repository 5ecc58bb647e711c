"""iterative_mle: the sufficient-statistics chain against a brute-force simulation on explicit sample arrays (the
same draws), its closed forms against other modules' and against their own limits, the simulation against the
closed forms at many replicates (intervals whose error rate is counted), the counterexample's geometric collapse
against plain accumulate's bounded variance, and the errors for bad input."""
import numpy as np
import pytest
from scipy.stats import binom, norm

from resonance_utils import gaussian_refit as refit
from resonance_utils import iterative_mle as mle
from resonance_utils.coevolution import first_crossing
from resonance_utils.recursive_diffusion import _psd_sqrt
from resonance_utils.runtime import generation_rng


def brute_force_chain(*, regime, n, gens, dim, reps, newest_share=None, temperature=1.0, seed=0):
    """The chain on explicit samples: accumulate concatenates every generation's (R, n, d) array and fits each
    replicate with np.average / np.cov under per-sample weights kept recursively (the older samples scaled by
    1 - w, the n newest given w / n; plain MLE: all equal). The fits [(means (R, d), covs (R, d, d))], t = 1..G."""
    samples = [generation_rng(seed, 0).standard_normal((reps, n, dim))]
    weights = np.full(n, 1 / n)
    fits = []
    for g in range(1, gens + 1):
        if regime == "replace":
            data, w = samples[-1], np.full(n, 1 / n)
        else:
            data, w = np.concatenate(samples, axis=1), weights
        mean = np.average(data, axis=1, weights=w)
        cov = np.stack([np.atleast_2d(np.cov(data[r], rowvar=False, aweights=w, bias=True)) for r in range(reps)])
        fits.append((mean, cov))
        z = generation_rng(seed, g).standard_normal((reps, n, dim))
        samples.append(mean[:, None, :] + temperature * z @ _psd_sqrt(cov).transpose(0, 2, 1))
        share = 1 / (g + 1) if newest_share is None else newest_share
        weights = np.concatenate([weights * (1 - share), np.full(n, share / n)])
    return fits


@pytest.mark.parametrize("regime, share, tau", [("replace", None, 1.0), ("accumulate", None, 1.0),
                                                ("accumulate", 0.4, 0.8)])
@pytest.mark.parametrize("dim", [1, 3])
def test_the_sufficient_statistics_chain_is_the_fit_to_the_samples(regime, share, tau, dim):
    chain = mle.run_iterative_mle(regime=regime, n_samples=7, n_generations=6, dim=dim, n_replicates=4,
                                  newest_share=share, temperature=tau, seed=3)
    fits = brute_force_chain(regime=regime, n=7, gens=6, dim=dim, reps=4, newest_share=share, temperature=tau, seed=3)
    assert len(chain) == 7 and [int(s["batch"][0]) for s in chain.states] == list(range(7))
    for state, (mean, cov) in zip(chain.states[1:], fits):
        np.testing.assert_allclose(state["means"], mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state["covs"], cov, rtol=1e-9, atol=1e-12)


def test_batch_weights_are_the_recursive_per_sample_weights():
    for share in (None, 0.3):
        weights = np.ones(1)
        for k in range(2, 8):
            w = 1 / k if share is None else share
            weights = np.concatenate([weights * (1 - w), [w]])
            np.testing.assert_allclose(mle.batch_weights(k, newest_share=share), weights, rtol=1e-12)


def test_the_closed_forms_match_the_refit_modules_and_their_limits():
    n, gens = 25, 60
    t = np.arange(gens + 1)
    replace = mle.predicted_iterative_mle(n_samples=n, n_generations=gens, regime="replace")
    np.testing.assert_allclose(replace["variance"], refit.predicted_refit_trace(n, t), rtol=1e-12)
    np.testing.assert_allclose(replace["mean_error"], refit.predicted_refit_mean_shift(n, t), rtol=1e-12, atol=1e-15)
    plain = mle.predicted_iterative_mle(n_samples=n, n_generations=gens)
    # an ML fit matches its training set's second moment: tr S_t + |mu_t - mu|^2 is a martingale
    np.testing.assert_allclose(plain["variance"] + plain["mean_error"], 1, rtol=1e-12)
    assert plain["mean_error"].max() <= np.pi**2 / (6 * n)
    far = mle.predicted_iterative_mle(n_samples=n, n_generations=100_000)["variance"][-1]
    limit = mle.accumulate_variance_limit(n)
    assert limit < far < limit + 1.1 / (n * 100_000)  # the product's tail: prod_{k>G} (1 - 1/(n k^2)) ~ 1 - 1/(nG)
    ours = mle.predicted_iterative_mle(n_samples=n, n_generations=gens, newest_share=0.6, temperature=0.5)
    lam = mle.collapse_factor(n, newest_share=0.6, temperature=0.5)
    np.testing.assert_allclose(ours["variance"][1:], (1 - 1 / n) * lam ** (t[1:] - 1), rtol=1e-10)
    assert lam == pytest.approx(1 - 0.6 + 0.6 * 0.25 * (1 - 0.6 / n))


@pytest.fixture(scope="module")
def rates():
    # 10 batches of 500 chains: each batch a table's worth of intervals at the smoke profile's replicate count
    return mle.iterative_mle_rates(n_samples=30, n_generations=30, dim=2, n_replicates=5000, newest_share=0.5,
                                   temperature=0.7, level=0.99, seed=0)


def test_the_intervals_cover_the_closed_forms_at_their_level(rates):
    """Over 10 independent batches of 500 chains, every (case, quantity, checkpoint) interval at level 0.99: the
    misses are counted against Binomial(trials, 0.01) (a normal interval on a skewed mean would miss more)."""
    z, misses, trials = rates.z, 0, 0
    for key, case in rates.cases.items():
        for quantity, predicted in case.predicted.items():
            values = getattr(case, quantity)[rates.checkpoints]  # (checkpoints, R)
            for batch in np.split(values, 10, axis=1):
                mean, se = batch.mean(1), batch.std(1) / np.sqrt(batch.shape[1])
                misses += int(np.sum(np.abs(mean - predicted[rates.checkpoints]) > z * se))
                trials += len(mean)
    assert trials == 10 * len(rates.checkpoints) * 7
    assert misses <= binom.ppf(0.999, trials, 0.01), (misses, trials)


def test_the_table_agrees_and_tells_replace_from_accumulate(rates):
    table = rates.table
    assert list(table.columns) == list(mle.TABLE_COLUMNS)
    # 5000 chains, level 0.99 per row: a row disagrees by chance with probability 0.01; allow the 99.9% count
    assert (~table.agree.astype(bool)).sum() <= binom.ppf(0.999, len(table), 0.01)
    # power: at generation G the replace band excludes accumulate's prediction and the reverse
    last = lambda regime: table[(table.case == "MLE") & (table.regime == regime) & (table.generation == 30)  # noqa
                                & (table.quantity == mle.QUANTITIES["variance"])].iloc[0]
    rep, acc = last("replace"), last("accumulate")
    assert not rep["CI low"] <= acc.predicted <= rep["CI high"]
    assert not acc["CI low"] <= rep.predicted <= acc["CI high"]


def test_the_counterexample_collapses_geometrically_while_plain_accumulate_stays_bounded(rates):
    table = rates.table
    factor = table[table.quantity.str.startswith("variance factor")].iloc[0]
    lam = mle.collapse_factor(30, newest_share=0.5, temperature=0.7)
    assert factor.predicted == pytest.approx(lam) and factor.agree
    assert factor["CI high"] - factor["CI low"] < 0.01  # a sharp measurement, not a wide interval that agrees
    ours = rates.band(f"{mle.COUNTEREXAMPLE} (accumulate)", "variance")[0]
    assert ours[-1] < 1e-3 * ours[1]  # kappa^29 ~ 2e-4: collapsed
    # the typical chain falls at the same rate: the log-variance's slope over generations 1..G is about log kappa
    slope = np.polyfit(rates.generations[1:], np.log(rates.cases[f"{mle.COUNTEREXAMPLE} (accumulate)"]
                                                     .variance[1:]).mean(1), 1)[0]
    assert abs(slope - np.log(lam)) < 0.02  # less a small Jensen term
    plain_low = rates.band("MLE (accumulate)", "variance")[1]
    assert plain_low[-1] > 0.9 * rates.accumulate_limit  # bounded away from 0 while the real share is 1/31
    bound = np.pi**2 / (6 * 30)  # accumulate's mean error, against replace's 1 - (1 - 1/n)^G = 0.64
    assert rates.band("MLE (accumulate)", "mean_error")[2][-1] < 1.1 * bound
    assert rates.band("MLE (replace)", "mean_error")[1][-1] > 10 * bound
    crossing = table[table.quantity.str.startswith("first generation")].iloc[0]
    assert crossing.agree and crossing.predicted == first_crossing(
        mle.predicted_iterative_mle(n_samples=30, n_generations=30, newest_share=0.5, temperature=0.7)["variance"],
        rates.collapse_level)


def test_the_counterexample_is_fast_at_strong_settings_and_slow_at_weak_ones():
    assert mle.collapse_factor(100, newest_share=0.95, temperature=0.1) < 0.07  # arbitrarily fast
    assert mle.collapse_factor(100, newest_share=0.05, temperature=1.0) == pytest.approx(1 - 0.05**2 / 100)


@pytest.mark.parametrize("call, message", [
    (lambda: mle.run_iterative_mle(regime="fresh"), "regime must be one of replace, accumulate"),
    (lambda: mle.run_iterative_mle(regime="replace", newest_share=0.5), "newest_share applies to regime='accumulate'"),
    (lambda: mle.run_iterative_mle(newest_share=1.5), r"newest_share must be in \(0, 1\]"),
    (lambda: mle.run_iterative_mle(temperature=0), r"temperature must be in \(0, 1\]"),
    (lambda: mle.run_iterative_mle(n_samples=1), "n_samples must be an integer >= 2"),
    (lambda: mle.run_iterative_mle(n_generations=2.5), "n_generations must be an integer >= 0"),
    (lambda: mle.predicted_iterative_mle(n_samples=10, n_generations=5, regime="fresh"), "regime must be one of"),
    (lambda: mle.iterative_mle_rates(n_samples=3, dim=3), r"singular \(needs n > dim\)"),
    (lambda: mle.iterative_mle_rates(level=1.0), r"level \(1.0\) and collapse_level"),
    (lambda: mle.iterative_mle_rates(newest_share=1.0), r"newest_share of the counterexample must be in \(0, 1\)"),
    (lambda: mle.iterative_mle_rates(temperature=1.2), r"temperature must be in \(0, 1\]"),
    (lambda: mle.iterative_mle_rates(n_replicates=1), "n_replicates must be an integer >= 2"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_interval_level_is_the_normal_quantile():
    quick = mle.iterative_mle_rates(n_samples=10, n_generations=3, dim=1, n_replicates=50, level=0.95, seed=1)
    assert quick.z == pytest.approx(norm.ppf(0.975)) and quick.checkpoints == [1, 2, 3]
