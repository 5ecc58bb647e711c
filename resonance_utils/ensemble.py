"""Ensembles of chains: one call runs a list of chain jobs and returns their results, each chain in its own run
folder as chain.run_chain makes it (cached, resumable, keyed by what made it).

Executors (run_ensemble's `executor`, a notebook's `executor` parameter, specs.EnsembleSpec):
  inprocess  one chain after another in this process: the default, no start-up cost, the numbers of a plain call
  ray        each chain a Ray task that asks for one GPU when its device is CUDA, else for its CPU threads; on the
             cluster at `address`, else $RAY_ADDRESS, else a local cluster started here (no dashboard, no usage
             statistics unless RAY_USAGE_STATS_ENABLED says so). Each task writes its run folder under this
             process's store.data_dir() ($RESONANCE_DATA_DIR), so on a cluster that path must be shared storage
             that every node sees at the same place.
Under both, each job's torch threads are set to job.threads (runtime.set_threads), so that a CPU chain computes the
same numbers wherever it runs.

Faults: a worker that dies (killed, out of memory, its node lost) is a system failure, and Ray runs the task again,
up to max_retries times; the chain resumes from its last committed generation, because run_chain reads back what
its run folder holds and computes only the rest. An exception raised by a chain is not retried (it would fail the
same way): it is reported as a ChainFailure with the job's spec and traceback, and the other chains' results are
kept (EnsembleResult.raise_failures turns failures into one error).

Progress: one bar for the ensemble, chains done / running / failed and the generations done so far, which run_chain
reports through chain.listening while a chain runs (from a Ray task through a small actor).
"""
from __future__ import annotations

import copy
import os
import time
import traceback as _traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import chain, runtime, store
from .specs import EXECUTORS


@dataclass(frozen=True)
class ChainJob:
    """One chain of an ensemble: run(**kwargs) -> chain.ChainResult."""
    name: str  # unique within an ensemble; the key of the results
    run: Callable[..., chain.ChainResult]  # a module-level function (Ray pickles it by reference)
    kwargs: Mapping[str, Any]  # its keyword arguments (picklable): specs, data, classifier, x0, chain_seed ...
    device: str = "cpu"  # "cuda" asks Ray for one GPU; else the task asks for `threads` CPUs
    threads: int = 1  # torch threads of the chain, under every executor
    n_generations: int | None = None  # for the progress bar's generation count (None: unknown)


@dataclass
class ChainFailure:
    """A chain that did not finish: what it was and why."""
    name: str
    spec: dict  # a readable account of the job (job_spec)
    error: str
    traceback: str

    def __str__(self) -> str:
        return f"{self.name}: {self.error}\n    spec: {self.spec}"


@dataclass
class EnsembleResult:
    results: dict[str, chain.ChainResult]  # in job order, only the chains that finished
    failures: dict[str, ChainFailure]
    executor: str
    seconds: float

    def raise_failures(self) -> dict[str, chain.ChainResult]:
        """The results, or a RuntimeError naming every failed chain with its spec and error."""
        if self.failures:
            lines = "\n".join(f"  {f}" for f in self.failures.values())
            raise RuntimeError(f"{len(self.failures)} of {len(self.failures) + len(self.results)} chains failed "
                               f"(executor {self.executor}; the finished ones are kept in their run folders):\n{lines}")
        return self.results


# --------------------------------------------------------------------------------------------------- progress
class EnsembleProgress:
    """The counts the ensemble's bar shows: chains done, running and failed, and generations done (the feedback
    steps every chain has committed or read back, counted while it runs)."""

    def __init__(self, jobs):
        self.planned = {job.name: job.n_generations for job in jobs}
        self.status = {job.name: "waiting" for job in jobs}  # waiting | running | done | failed
        self.generations = {job.name: 0 for job in jobs}

    def started(self, name: str) -> None:
        self.status[name] = "running"

    def generation(self, name: str, generation: int) -> None:
        self.generations[name] = max(self.generations[name], int(generation))

    def finished(self, name: str, result: chain.ChainResult | None) -> None:
        """result None: the chain failed (its generations done so far still count)."""
        self.status[name] = "failed" if result is None else "done"
        if result is not None:
            self.generation(name, len(result) - 1)

    def counts(self) -> dict:
        states = list(self.status.values())
        return {"done": states.count("done"), "running": states.count("running"), "failed": states.count("failed"),
                "generations": sum(self.generations.values())}

    def planned_generations(self) -> int | None:
        return None if None in self.planned.values() else sum(self.planned.values())

    def postfix(self) -> str:
        c, total = self.counts(), self.planned_generations()
        return (f"done {c['done']} · running {c['running']} · failed {c['failed']} · generations {c['generations']}"
                + (f"/{total}" if total is not None else ""))


class _Bar:
    """The ensemble's one tqdm bar (chains finished of all), its postfix the counts of EnsembleProgress."""

    def __init__(self, progress: EnsembleProgress, *, desc: str, show: bool):
        from tqdm.auto import tqdm

        self.progress = progress
        self.bar = tqdm(total=len(progress.status), desc=desc, disable=not show, unit="chain")
        self.show()

    def show(self) -> None:
        c = self.progress.counts()
        self.bar.n = c["done"] + c["failed"]
        self.bar.set_postfix_str(self.progress.postfix(), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.show()
        self.bar.close()


# ------------------------------------------------------------------------------------------------------- jobs
def job_spec(job: ChainJob) -> dict:
    """What a job is, readable: its function, device and threads, and each keyword argument (a spec as its
    to_dict(), plain values as they are, anything else as its type, shape or fingerprint)."""
    out = {"run": f"{getattr(job.run, '__module__', '?')}.{getattr(job.run, '__qualname__', repr(job.run))}",
           "device": job.device, "threads": job.threads}
    return out | {k: _readable(v) for k, v in job.kwargs.items()}


def _readable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype} array {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return {k: _readable(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    fingerprint = getattr(value, "fingerprint", None)
    return type(value).__name__ + (f" (fingerprint {fingerprint})" if isinstance(fingerprint, str) else "")


def _check_jobs(jobs: list, executor: str, max_retries: int) -> None:
    """Every reason the ensemble cannot run, before any work: unknown executor, a job that is not a ChainJob,
    duplicate names, a run that is not callable (or, for Ray, not importable by reference)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
    seen = set()
    for job in jobs:
        if not isinstance(job, ChainJob):
            raise TypeError(f"an ensemble takes ChainJob objects, got {type(job).__name__}: {job!r}")
        if job.name in seen:
            raise ValueError(f"two jobs are named {job.name!r}: job names must be unique (they key the results)")
        seen.add(job.name)
        if not callable(job.run):
            raise TypeError(f"job {job.name!r}: run must be a function, got {type(job.run).__name__}")
        if isinstance(job.threads, bool) or not isinstance(job.threads, int) or job.threads < 1:
            raise ValueError(f"job {job.name!r}: threads must be a whole number >= 1, got {job.threads!r}")
        qualname = getattr(job.run, "__qualname__", "")
        if executor == "ray" and ("<lambda>" in qualname or "<locals>" in qualname):
            raise ValueError(f"job {job.name!r}: run is {qualname}, which a Ray worker cannot import; executor "
                             "'ray' needs a module-level function (e.g. image_chains.run_image_chain)")


def _uses_gpu(job: ChainJob) -> bool:
    return str(job.device).startswith("cuda")


def image_chain_job(spec, setting: str, real, classifier, *, name: str | None = None, threads: int | None = None,
                    **run_options) -> ChainJob:
    """One image_chains.run_image_chain call as a job (named after the setting unless `name`), its own bar off
    (the ensemble's shows). run_options: select, select_params, mark, mark_params, x0, chain_seed. threads None: this process's torch
    threads now, what an in-process run computes with, so a Ray task computes the same numbers. Here rather than
    in image_chains, so that this module stays out of the image chains' run keys."""
    import torch

    from . import image_chains

    device = "cuda" if str(spec.device).startswith("cuda") or (spec.device == "auto" and runtime.cuda_available()) \
        else "cpu"
    return ChainJob(name=name or setting, run=image_chains.run_image_chain,
                    kwargs={"spec": spec, "setting": setting, "real": real, "classifier": classifier,
                            "progress": False, **run_options},
                    device=device, threads=threads or torch.get_num_threads(), n_generations=spec.n_generations)


def image_chain_jobs(spec, settings, real, classifier, *, threads: int | None = None) -> list[ChainJob]:
    """The chain of each setting of one spec on one real set (image_chain_job), named by setting."""
    return [image_chain_job(spec, s, real, classifier, threads=threads) for s in settings]


# ---------------------------------------------------------------------------------------------------- running
def run_ensemble(jobs, *, executor: str = "inprocess", address: str | None = None, max_retries: int = 3,
                 progress: bool = True, desc: str = "chains") -> EnsembleResult:
    """Run every job's chain and return their results (failures reported, not raised: see raise_failures).

    executor "inprocess" runs them here one after another; "ray" as Ray tasks on the cluster at `address` (""/None:
    $RAY_ADDRESS, else a local cluster; a Ray connection already made in this process is used as it is).
    max_retries: how often Ray runs a task again after its worker died (an exception is never retried).
    progress: the ensemble's one bar (chains done / running / failed, generations done)."""
    jobs = list(jobs)
    _check_jobs(jobs, executor, max_retries)
    t0 = time.perf_counter()
    state = EnsembleProgress(jobs)
    bar = _Bar(state, desc=desc, show=progress)
    try:
        if executor == "inprocess":
            results, failures = _run_inprocess(jobs, state, bar)
        else:
            results, failures = _run_ray(jobs, state, bar, address=address or None, max_retries=max_retries,
                                         report=progress)
    finally:
        bar.close()
    ordered = {job.name: results[job.name] for job in jobs if job.name in results}
    return EnsembleResult(results=ordered, failures={job.name: failures[job.name] for job in jobs
                                                     if job.name in failures},
                          executor=executor, seconds=time.perf_counter() - t0)


def _failure(job: ChainJob, error: BaseException) -> ChainFailure:
    return ChainFailure(name=job.name, spec=job_spec(job), error=f"{type(error).__name__}: {error}",
                        traceback="".join(_traceback.format_exception(type(error), error, error.__traceback__)))


def _with_threads(threads: int, run: Callable):
    """run() with torch on `threads` threads, the thread count restored afterwards."""
    import torch

    before = torch.get_num_threads()
    runtime.set_threads(threads)
    try:
        return run()
    finally:
        runtime.set_threads(before)


def _run_inprocess(jobs, state: EnsembleProgress, bar: _Bar):
    results, failures = {}, {}
    for job in jobs:
        state.started(job.name)
        bar.show()

        def heard(generation, run_dir, name=job.name):
            state.generation(name, generation)
            bar.show()

        try:
            with chain.listening(heard):
                results[job.name] = _with_threads(job.threads, lambda job=job: job.run(**job.kwargs))
        except Exception as e:  # noqa: BLE001 - reported with the job's spec; the other chains go on
            failures[job.name] = _failure(job, e)
        state.finished(job.name, results.get(job.name))
        bar.show()
    return results, failures


# ------------------------------------------------------------------------------------------------------- Ray
def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError("executor 'ray' needs the ray package, which pyproject.toml pins: pip install -e . in the "
                          "checkout (./run_all.sh sets it up), or use executor 'inprocess'") from e
    return ray


def connect_ray(address: str | None = None, *, num_cpus: int | None = None):
    """The ray module, connected: a connection this process already has; else the cluster at `address` or
    $RAY_ADDRESS; else a local cluster of num_cpus CPUs (None: every core) started here, without dashboard, worker
    logs kept in Ray's session folder rather than printed, and usage statistics off unless
    RAY_USAGE_STATS_ENABLED asks for them (nothing here contacts the network)."""
    import logging

    ray = _import_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address:
        ray.init(address=address, **quiet)
    else:  # "local": never join a cluster that someone else started on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    return ray


class _Reporter:
    """A Ray actor (made remote where used: ray is imported lazily) that gathers what the tasks report (a chain
    started, a generation done) until the driver drains it."""

    def __init__(self):
        self.events = []

    def started(self, name):
        self.events.append((name, None))

    def generation(self, name, generation):
        self.events.append((name, generation))

    def drain(self):
        out, self.events = self.events, []
        return out


def _ray_task(run, kwargs, shared_names, threads, env, reporter, name, *shared_values):
    """One chain in a Ray worker: the driver's RESONANCE_* settings (its data folder), the job's torch threads, the
    shared arguments (Ray resolves the object references passed as positional arguments), progress reports."""
    os.environ.update(env)
    kwargs = dict(kwargs) | dict(zip(shared_names, shared_values))
    if reporter is None:
        return _with_threads(threads, lambda: run(**kwargs))
    reporter.started.remote(name)
    with chain.listening(lambda generation, run_dir: reporter.generation.remote(name, generation)):
        return _with_threads(threads, lambda: run(**kwargs))


def _check_resources(ray, jobs) -> None:
    """A job that no node of the cluster can ever take would wait forever: say so before submitting."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    for job in jobs:
        if _uses_gpu(job) and most_gpus < 1:
            raise ValueError(f"job {job.name!r} runs on {job.device}, and no node of the Ray cluster has a GPU")
        if not _uses_gpu(job) and job.threads > most_cpus:
            raise ValueError(f"job {job.name!r} asks for {job.threads} CPUs (its threads); the largest node of the "
                             f"Ray cluster has {most_cpus:g}")


def _run_ray(jobs, state: EnsembleProgress, bar: _Bar, *, address, max_retries: int, report: bool):
    if not jobs:  # nothing to start a cluster for
        return {}, {}
    ray = connect_ray(address)
    _check_resources(ray, jobs)
    env = {k: v for k, v in os.environ.items() if k.startswith("RESONANCE_")}
    env["RESONANCE_DATA_DIR"] = str(store.data_dir())  # every chain's run folder where this process has it
    reporter = ray.remote(num_cpus=0)(_Reporter).remote() if report else None
    # an object that several jobs share (the real image set, the classifier) goes to the object store once
    uses: dict[int, int] = {}
    for job in jobs:
        for value in job.kwargs.values():
            uses[id(value)] = uses.get(id(value), 0) + 1
    refs: dict[int, Any] = {}
    task = ray.remote(_ray_task)
    pending = {}
    for job in jobs:
        shared = {k: v for k, v in job.kwargs.items() if uses[id(v)] > 1 and not isinstance(v, (str, int, float,
                                                                                                 bool, type(None)))}
        for v in shared.values():
            if id(v) not in refs:
                refs[id(v)] = ray.put(v)
        own = {k: v for k, v in job.kwargs.items() if k not in shared}
        resources = dict(num_gpus=1, num_cpus=1) if _uses_gpu(job) else dict(num_cpus=job.threads)
        ref = task.options(max_retries=max_retries, retry_exceptions=False, name=f"chain {job.name}",
                           **resources).remote(job.run, own, list(shared), job.threads, env, reporter, job.name,
                                               *[refs[id(v)] for v in shared.values()])
        pending[ref] = job
    results, failures = {}, {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            if reporter is not None:
                for name, generation in ray.get(reporter.drain.remote()):
                    if generation is None:
                        state.started(name)
                    else:
                        state.generation(name, generation)
            for ref in ready:
                job = pending.pop(ref)
                try:  # a copy: what ray.get returns is read-only and pins the object store's memory
                    results[job.name] = copy.deepcopy(ray.get(ref))
                except Exception as e:  # noqa: BLE001 - the chain's own error (or its worker's death, retried)
                    failures[job.name] = _ray_failure(job, e)
                state.finished(job.name, results.get(job.name))
            bar.show()
    except BaseException:  # an interrupt: stop every chain still running (each resumes from its run folder)
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if reporter is not None:
            ray.kill(reporter)
    return results, failures


def _ray_failure(job: ChainJob, error: BaseException) -> ChainFailure:
    """The chain's own exception as a ChainFailure (a RayTaskError carries it and the worker's traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return ChainFailure(name=job.name, spec=job_spec(job), error=f"{type(cause).__name__}: {cause}",
                            traceback=getattr(error, "traceback_str", "") or str(error))
    return _failure(job, error)

