"""Tests for resonance_utils.claim_runs: one place for the measures' thresholds, a setting's row, the sizes the
calibration must cover, and the synthetic checks. (The chains themselves run in notebook 09 under nbval.)"""
import numpy as np
import pytest

from resonance_utils import claim, claim_runs, config, specs


@pytest.fixture(scope="module")
def options():
    return specs.build(specs.ClaimMeasures, config.load_config("09_claim", "smoke"))


def test_options_come_from_the_profile_and_reach_every_measure(options):
    cfg = config.load_config("09_claim", "smoke")
    assert options.mixed_effect == cfg.mixed_effect and options.held_out == cfg.held_out
    kw = options.setting_options()
    assert kw["held_out"] == cfg.held_out
    assert kw["mixing"]["mixed_effect"] == kw["observation"]["mixed_effect"] == cfg.mixed_effect
    assert kw["contraction"]["anisotropy_tol"] == cfg.anisotropy_tol
    assert {kw[m]["n_boot"] for m in ("mixing", "contraction", "observation")} == {cfg.n_boot}


def test_assess_run_projects_measures_and_overrides_a_deterministic_maps_verdict(options):
    chains = claim.known_answer_chains("directional contraction", n=60, dim=8, generations=6, seed=1)
    run = claim_runs.SettingRun(setting="toy", data="synthetic", feature_space="R^8", clouds=chains, paired=True)
    a, row = claim_runs.assess_run(run, options)
    assert a.mixing.n == 60 and a.contraction.per_chain[0].basis.shape[0] == min(options.pca_components, 8)
    assert row["setting"] == "toy" and row["mixing verdict"] == a.mixing.verdict
    # a per-trajectory verdict replaces the set-level one and the prediction follows from it
    run.trajectory_verdict, run.trajectory_note = "separated", "3 attractors"
    _, row = claim_runs.assess_run(run, options)
    assert row["mixing verdict"] == "separated (3 attractors)"
    assert row["predicted"].startswith("separate basins")


def test_calibration_sizes_are_the_rows_own(options):
    given = claim.known_answer_chains("fast mixing", n=50, dim=12, generations=6, replicates=3, seed=0)
    deterministic = [[reps[0], reps[0]] for reps in given]  # identical replicates: compared by halves
    runs = [claim_runs.SettingRun("a", "d", "f", given, paired=True),
            claim_runs.SettingRun("b", "d", "f", deterministic, paired=True),
            claim_runs.SettingRun("c", "d", "f", given, paired=True)]
    sizes = claim_runs.calibration_sizes(runs, options)
    k = min(options.pca_components, 12)
    assert sizes == [dict(n=50, dim=k, generations=6, starts=2, replicates=3, held_out=options.held_out),
                     dict(n=25, dim=k, generations=6, starts=2, replicates=2, held_out=options.held_out)]


def test_synthetic_checks_report_each_combination(options):
    rows = claim_runs.synthetic_checks(n_generations=20, seed=0, options=options)
    assert [r["chain"] for r in rows] == list(claim.SYNTHETIC)
    for r in rows:
        assert r["all as built"] == ((r["mixing"], r["contraction"], r["predicted"]) ==
                                     (r["expected mixing"], r["expected contraction"], r["expected prediction"]))
    assert rows[0]["expected prediction"] == "resonance"


def test_basin_verdicts_map_onto_the_mixing_vocabulary():
    from resonance_utils import attractors

    assert set(claim_runs.BASIN_TO_MIXING.values()) <= set(claim.MIXING_VERDICTS)
    assert set(claim_runs.BASIN_TO_MIXING) == set(attractors.BASIN_VERDICTS)
    assert np.all([claim_runs.BASIN_TO_MIXING[v] == "separated" for v in ("shared basins", "separate basins")])
