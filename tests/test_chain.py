import numpy as np
import pytest

from resonance_utils import chain, store


def noisy_contraction(x, ctx):
    """x -> 0.5 x + noise: a step whose randomness comes from (seed, generation) only."""
    return 0.5 * x + ctx.rng.standard_normal(x.shape)


def reference(n, seed, x0):
    """The same chain as a plain loop, drawing from runtime.generation_rng directly."""
    from resonance_utils.runtime import generation_rng

    xs = [x0]
    for g in range(1, n + 1):
        xs.append(0.5 * xs[-1] + generation_rng(seed, g).standard_normal(x0.shape))
    return xs


def test_in_memory_chain_matches_a_plain_loop():
    x0 = np.ones(5)
    res = chain.run_chain(noisy_contraction, x0, 6, seed=3, progress=False)
    assert len(res) == 7 and res.computed == list(range(7))
    np.testing.assert_array_equal(np.stack(res.states), np.stack(reference(6, 3, x0)))


def test_cached_rerun_computes_nothing_and_longer_runs_extend(tmp_path):
    calls = []

    def step(x, ctx):
        calls.append(ctx.generation)
        return noisy_contraction(x, ctx)

    first = chain.run_chain(step, np.zeros(4), 3, run_dir=tmp_path, seed=1, progress=False)
    assert calls == [1, 2, 3]
    again = chain.run_chain(step, np.zeros(4), 3, run_dir=tmp_path, seed=1, progress=False)
    assert calls == [1, 2, 3] and again.computed == []
    np.testing.assert_array_equal(np.stack(first.states), np.stack(again.states))
    longer = chain.run_chain(step, np.zeros(4), 5, run_dir=tmp_path, seed=1, progress=False)
    assert calls == [1, 2, 3, 4, 5] and longer.computed == [4, 5]
    shorter = chain.run_chain(step, np.zeros(4), 2, run_dir=tmp_path, seed=1, progress=False)
    assert len(shorter) == 3 and shorter.computed == []


def test_resume_after_a_crash_gives_identical_results(tmp_path):
    x0 = np.arange(3.0)

    def crashing(x, ctx):
        if ctx.generation == 4:
            (ctx.out_dir / "half_written").write_text("model weights...")
            raise KeyboardInterrupt("simulated crash in generation 4")
        return noisy_contraction(x, ctx)

    with pytest.raises(KeyboardInterrupt):
        chain.run_chain(crashing, x0, 6, run_dir=tmp_path, seed=9, progress=False)
    assert chain.complete_generations(tmp_path) == [0, 1, 2, 3]
    # the committed generations and the run folder's lock file, no temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "gen_000", "gen_001", "gen_002", "gen_003"]
    resumed = chain.run_chain(noisy_contraction, x0, 6, run_dir=tmp_path, seed=9, progress=False)
    assert resumed.computed == [4, 5, 6]
    np.testing.assert_array_equal(np.stack(resumed.states), np.stack(reference(6, 9, x0)))


def test_corrupt_generation_is_reported_and_earlier_ones_kept(tmp_path):
    chain.run_chain(noisy_contraction, np.ones(2), 3, run_dir=tmp_path, progress=False)
    (tmp_path / "gen_002" / "state.npz").write_bytes(b"garbage")
    with pytest.raises(store.CacheError, match=r"gen_002.*state.npz.*Generations 0-1 are intact.*Fix: delete "
                                               r"gen_002 and the later gen_003 \(computed from it\)"):
        chain.run_chain(noisy_contraction, np.ones(2), 3, run_dir=tmp_path, progress=False)
    assert (tmp_path / "gen_001" / "state.npz").exists()
    (tmp_path / "gen_001" / "state.npz").write_bytes(b"garbage")
    with pytest.raises(store.CacheError, match=r"generation 1 .*Generation 0 is intact"):
        chain.run_chain(noisy_contraction, np.ones(2), 3, run_dir=tmp_path, progress=False)


def test_gap_in_generations_resumes_from_before_the_gap(tmp_path):
    chain.run_chain(noisy_contraction, np.ones(2), 3, run_dir=tmp_path, progress=False)
    (tmp_path / "gen_001" / "meta.json").unlink()  # gen_001 incomplete: 2 and 3 cannot be trusted as a chain
    assert chain.complete_generations(tmp_path) == [0]


def test_dict_states_metrics_and_lazy_initial(tmp_path):
    built = []

    def initial():
        built.append(1)
        return {"images": np.zeros((2, 3), np.uint8), "labels": np.array([0, 1])}

    def step(s, ctx):
        return {"images": s["images"] + 1, "labels": s["labels"]}

    res = chain.run_chain(step, initial, 2, run_dir=tmp_path, metrics=lambda s, ctx: {"mean": float(s["images"].mean())},
                          progress=False)
    assert [m["mean"] for m in res.metrics] == [0.0, 1.0, 2.0]
    again = chain.run_chain(step, initial, 2, run_dir=tmp_path, progress=False)
    assert built == [1], "a cached gen_000 must not rebuild the initial state"
    assert again.metrics[2] == {"mean": 2.0} and again.states[2]["images"].dtype == np.uint8


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True])
def test_bad_generation_count(bad):
    with pytest.raises(ValueError, match="n_generations"):
        chain.run_chain(noisy_contraction, np.ones(1), bad, progress=False)


def labelled(value, n=10):
    return {"images": np.full((n, 2, 2), value, np.uint8), "labels": np.full(n, value % 10, np.int64)}


def test_regimes_compose_the_right_training_set():
    history = [labelled(0), labelled(1), labelled(2)]
    assert chain.training_set(history, regime="replace") is history[-1]
    acc = chain.training_set(history, regime="accumulate")
    assert acc["images"].shape == (30, 2, 2) and sorted(set(acc["labels"])) == [0, 1, 2]
    real = labelled(7, n=50)
    fresh = chain.training_set(history, regime="fresh", fresh_fraction=0.3, real=real, rng=np.random.default_rng(0))
    assert fresh["images"].shape == (10, 2, 2)
    assert (fresh["labels"] == 7).sum() == 3 and (fresh["labels"] == 2).sum() == 7
    assert np.all(fresh["images"][fresh["labels"] == 7] == 7), "images and labels must stay paired"
    default_pool = chain.training_set(history, regime="fresh", fresh_fraction=1.0)
    assert np.all(default_pool["labels"] == 0), "without a pool, fresh data come from generation 0 (the real data)"


def test_regime_errors():
    with pytest.raises(ValueError, match="unknown regime 'keep'.*replace, accumulate, fresh"):
        chain.training_set([labelled(0)], regime="keep")
    with pytest.raises(ValueError, match="fresh_fraction"):
        chain.training_set([labelled(0)], regime="fresh", fresh_fraction=1.5)
    with pytest.raises(ValueError, match="pool has 5"):
        chain.training_set([labelled(0)], regime="fresh", fresh_fraction=1.0, real=labelled(3, n=5))
