"""Ensembles of chains (resonance_utils.ensemble): in process and as Ray tasks, with the same numbers; a worker
killed mid-chain resumes from its last committed generation; a failing chain is reported, the others kept.

The chains are tiny: a (32, 64) float32 state, each step a torch matmul (so thread settings matter) plus numpy noise
from the generation's own stream. The Ray tests share one local cluster of 2 CPUs per module."""
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from resonance_utils import chain, config, ensemble, specs

try:
    import ray
except ImportError:  # the in-process executor needs no ray
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pyproject.toml pins it: pip install -e .)")
TEST_PROCESS = os.getpid()  # a step never kills this one (pickled by value into the Ray workers, it stays the same)


@dataclass
class ToyStep:
    """X_{n+1} = tanh(X_n W_n / 8) + noise, W_n and the noise from the generation's stream. Optionally: log each
    generation computed to `log`, SIGKILL the worker at generation `kill_at` once (a marker file says it happened),
    raise at generation `fail_at`."""
    log: str | None = None
    kill_at: int | None = None
    marker: str | None = None
    fail_at: int | None = None

    def __call__(self, state, ctx):
        import torch

        if ctx.generation == self.kill_at and not Path(self.marker).exists():
            if os.getpid() == TEST_PROCESS:
                raise RuntimeError("ToyStep would kill the test process itself: kill_at is for Ray workers")
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if ctx.generation == self.fail_at:
            raise ValueError(f"toy failure at generation {ctx.generation}")
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(f"{ctx.generation}\n")
        rng = ctx.rng
        w = torch.from_numpy(rng.standard_normal((64, 64)).astype(np.float32))
        x = torch.tanh(torch.from_numpy(state) @ w / 8).numpy()
        return (x + 0.01 * rng.standard_normal(x.shape).astype(np.float32)).astype(np.float32)


def toy_metrics(state, ctx):
    return {"mean": float(state.mean()), "std": float(state.std())}


def toy_chain(*, run_dir, n_generations: int, seed: int, step: ToyStep = ToyStep()) -> chain.ChainResult:
    initial = np.random.default_rng(seed).standard_normal((32, 64)).astype(np.float32)
    return chain.run_chain(step, initial, n_generations, run_dir=run_dir, seed=seed, metrics=toy_metrics,
                           progress=False)


def toy_jobs(root: Path, seeds=(1, 2, 3), n_generations: int = 3, **steps) -> list[ensemble.ChainJob]:
    """One job per seed, its run folder root/<name>; steps: name -> ToyStep for some of them."""
    names = [f"seed{s}" for s in seeds]
    return [ensemble.ChainJob(name=n, run=toy_chain, n_generations=n_generations,
                              kwargs={"run_dir": root / n, "n_generations": n_generations, "seed": s,
                                      "step": steps.get(n, ToyStep())})
            for n, s in zip(names, seeds)]


def assert_same(a: chain.ChainResult, b: chain.ChainResult) -> None:
    assert len(a) == len(b)
    for x, y in zip(a.states, b.states):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert a.metrics == b.metrics


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for the module; this module's chains pickled by value (the workers cannot
    import a test module by name)."""
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    ensemble.connect_ray(num_cpus=2)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(module)


# ----------------------------------------------------------------------------------------------- in process
def test_inprocess_equals_direct_calls(tmp_path, one_torch_thread):
    out = ensemble.run_ensemble(toy_jobs(tmp_path / "ens", seeds=(1, 2)), progress=False)
    assert out.executor == "inprocess" and not out.failures and list(out.results) == ["seed1", "seed2"]
    for name, seed in (("seed1", 1), ("seed2", 2)):
        assert out.results[name].computed == [0, 1, 2, 3]
        assert_same(out.results[name], toy_chain(run_dir=tmp_path / "direct" / name, n_generations=3, seed=seed))
    again = ensemble.run_ensemble(toy_jobs(tmp_path / "ens", seeds=(1, 2)), progress=False)  # read back
    assert all(r.computed == [] for r in again.results.values())
    assert_same(again.results["seed1"], out.results["seed1"])


def test_listener_hears_every_generation_computed_or_read_back(tmp_path):
    heard = []
    with chain.listening(lambda g, run_dir: heard.append((g, run_dir))):
        toy_chain(run_dir=tmp_path / "run", n_generations=2, seed=0)
        toy_chain(run_dir=tmp_path / "run", n_generations=3, seed=0)  # 0-2 read back, 3 computed
    assert heard == [(g, tmp_path / "run") for g in (0, 1, 2, 0, 1, 2, 3)]
    toy_chain(run_dir=None, n_generations=1, seed=0)  # outside the block: nobody listens
    assert len(heard) == 7


@pytest.mark.parametrize("executor", ["inprocess", pytest.param("ray", marks=needs_ray)])
def test_failing_chain_is_reported_and_the_others_kept(executor, tmp_path, request):
    if executor == "ray":
        request.getfixturevalue("ray_cluster")
    log = tmp_path / "attempts.log"
    jobs = toy_jobs(tmp_path, seeds=(1, 2), seed2=ToyStep(fail_at=2, log=str(log)))
    out = ensemble.run_ensemble(jobs, executor=executor, progress=False)
    assert list(out.results) == ["seed1"] and len(out.results["seed1"]) == 4
    failure = out.failures["seed2"]
    assert failure.error == "ValueError: toy failure at generation 2"
    assert "toy failure" in failure.traceback
    assert failure.spec["seed"] == 2 and failure.spec["n_generations"] == 3
    assert failure.spec["run"].endswith("toy_chain")
    assert log.read_text().split() == ["1"]  # an exception is not retried: generation 2 was tried once
    assert chain.complete_generations(tmp_path / "seed2") == [0, 1]  # what it committed stays
    with pytest.raises(RuntimeError, match=r"1 of 2 chains failed(.|\n)*seed2: ValueError: toy failure"):
        out.raise_failures()


def test_bad_input_fails_before_any_work(tmp_path):
    jobs = toy_jobs(tmp_path, seeds=(1,))
    with pytest.raises(ValueError, match="unknown executor 'dask'; valid: inprocess, ray"):
        ensemble.run_ensemble(jobs, executor="dask", progress=False)
    with pytest.raises(ValueError, match="two jobs are named 'seed1'"):
        ensemble.run_ensemble(jobs + toy_jobs(tmp_path / "other", seeds=(1,)), progress=False)
    with pytest.raises(TypeError, match="job 'x': run must be a function"):
        ensemble.run_ensemble(jobs + [ensemble.ChainJob(name="x", run="toy_chain", kwargs={})], progress=False)
    lam = ensemble.ChainJob(name="lam", run=lambda **kw: toy_chain(**kw), kwargs=jobs[0].kwargs)
    with pytest.raises(ValueError, match="job 'lam': run is .*<lambda>.*module-level function"):
        ensemble.run_ensemble(jobs + [lam], executor="ray", progress=False)
    with pytest.raises(ValueError, match="threads must be"):
        ensemble.run_ensemble([ensemble.ChainJob(name="t", run=toy_chain, kwargs={}, threads=0)], progress=False)
    assert not (tmp_path / "seed1").exists()  # nothing ran


def test_progress_counts():
    jobs = toy_jobs(Path("/nowhere"), seeds=(1, 2, 3))
    p = ensemble.EnsembleProgress(jobs)
    assert p.counts() == {"done": 0, "running": 0, "failed": 0, "generations": 0}
    for name in ("seed1", "seed2", "seed3"):
        p.started(name)
    p.generation("seed1", 1)
    p.generation("seed1", 2)
    p.generation("seed2", 1)
    p.generation("seed1", 1)  # a chain read back from the start again (a retried task) does not count twice
    assert p.counts() == {"done": 0, "running": 3, "failed": 0, "generations": 3}
    p.finished("seed1", chain.ChainResult(states=[0] * 4, metrics=[{}] * 4, seconds=[0.0] * 4))
    p.finished("seed2", None)
    assert p.counts() == {"done": 1, "running": 1, "failed": 1, "generations": 4}
    assert p.postfix() == "done 1 · running 1 · failed 1 · generations 4/9"
    unknown = ensemble.EnsembleProgress([ensemble.ChainJob(name="a", run=toy_chain, kwargs={})])
    assert unknown.postfix() == "done 0 · running 0 · failed 0 · generations 0"


def test_ensemble_parameters_go_only_to_the_notebooks_that_declare_them():
    # ./run_all.sh -p executor=ray: the notebooks without ensembles run as they are
    assert config.check_overrides("01_lucier_room", "smoke", ["executor=ray", "n_iterations=9"]) == {"n_iterations": 9}
    assert config.check_overrides("02_mnist_chains", "smoke", ["executor=ray", "ray_address=h:6379"]) == \
        {"executor": "ray", "ray_address": "h:6379"}
    with pytest.raises(specs.ConfigError, match="'executor' must be one of 'inprocess', 'ray'"):
        config.check_overrides("09_claim", "smoke", ["executor=dask"])
    assert "executor" not in specs.EnsembleSpec().key()  # how chains run never enters a run key


def test_mitigation_jobs_pickle_and_select_as_before(one_torch_thread):
    import pickle

    import torch

    from resonance_utils import features, mitigations

    classifier = features.MnistClassifier().eval()
    spec = specs.DiffusionChainSpec(device="cpu", n_generations=2)
    settings = specs.MitigationSpec(mitigation_list="none, entropy_selection, self_verification", keep_fraction=0.5,
                                    verify_threshold=0.1, curator_accuracies="")
    jobs = mitigations.chain_jobs(spec, None, classifier, settings)
    assert [j.name for j in jobs] == ["none", "entropy_selection", "self_verification"]
    assert all(j.kwargs["progress"] is False and j.n_generations == 2 and j.device == "cpu" and
               j.threads == torch.get_num_threads() for j in jobs)
    travelled = pickle.loads(pickle.dumps(jobs))  # what Ray does to a job's arguments
    data = {"images": np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8),
            "labels": np.arange(40) % 10}
    probs = features.classify(classifier, data["images"])
    want = mitigations.select_max_class_entropy(data, probs, 0.5)
    got = travelled[1].kwargs["select"](data, None)
    assert all(np.array_equal(got[k], want[k]) for k in data)
    assert ensemble.job_spec(jobs[1])["select_params"] == {"rule": "entropy_selection", "keep_fraction": 0.5}
    assert ensemble.job_spec(jobs[1])["spec"]["n_generations"] == 2


# ------------------------------------------------------------------------------------------------------ Ray
@needs_ray
def test_ray_equals_inprocess_bit_for_bit(tmp_path, ray_cluster, one_torch_thread):
    here = ensemble.run_ensemble(toy_jobs(tmp_path / "here"), progress=False)
    there = ensemble.run_ensemble(toy_jobs(tmp_path / "ray"), executor="ray", progress=True, desc="toy chains")
    assert there.executor == "ray" and not there.failures and list(there.results) == list(here.results)
    for name in here.results:
        assert there.results[name].computed == [0, 1, 2, 3]
        assert there.results[name].run_dir == tmp_path / "ray" / name
        assert_same(there.results[name], here.results[name])


@needs_ray
def test_killed_worker_resumes_from_its_last_generation(tmp_path, ray_cluster, one_torch_thread):
    log, marker = tmp_path / "computed.log", tmp_path / "killed"
    jobs = toy_jobs(tmp_path / "ray", seeds=(5,), n_generations=6,
                    seed5=ToyStep(log=str(log), kill_at=4, marker=str(marker)))
    out = ensemble.run_ensemble(jobs, executor="ray", max_retries=2, progress=False)
    assert marker.exists(), "the worker was never killed"
    result = out.raise_failures()["seed5"]
    assert len(result) == 7 and result.computed == [4, 5, 6]  # the retry read generations 0-3 back
    assert log.read_text().split() == [str(g) for g in range(1, 7)]  # none computed twice
    assert not [p for p in (tmp_path / "ray" / "seed5").iterdir() if ".tmp-" in p.name]  # the dead one's removed
    assert_same(result, toy_chain(run_dir=tmp_path / "whole", n_generations=6, seed=5))
