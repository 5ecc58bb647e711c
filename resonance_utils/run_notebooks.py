"""Execute the notebooks with papermill: python -m resonance_utils.run_notebooks [--profile P] [--only NAME] ...

run_all.sh calls this after setting up the environment. A notebook is skipped when its inputs (the notebook,
its profile's YAML, the overrides and the package's source) are unchanged since its last successful run and its
outputs are still there; --force runs it anyway.

--jobs N runs up to N notebooks at once, each in its own process, never before the notebooks it reads
(DEPENDENCIES) have finished; several GPUs are shared out one per job, CPU threads split evenly.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import config, store

KERNEL = "resonance"

# notebook -> the notebooks whose outputs (chains, key numbers) it reads: with --jobs N it starts only after they
# have finished. Names that are not notebooks here (yet) are ignored.
DEPENDENCIES = {
    "05_drift_geometry": ["01_lucier_room", "02_mnist_chains", "03_imagenet_chains", "04_cyclegan_attractors"],
    "08_mitigations": ["02_mnist_chains"],
    "09_claim": ["01_lucier_room", "02_mnist_chains", "03_imagenet_chains", "04_cyclegan_attractors"],
}


def notebooks_dir() -> Path:
    return store.repo_root() / "notebooks"


def list_notebooks() -> list[str]:
    return sorted(p.stem for p in notebooks_dir().glob("[0-9]*.ipynb"))


def build_dir(profile: str) -> Path:
    return store.repo_root() / "build" / profile


def inputs_hash(stem: str, profile: str, overrides: dict) -> str:
    """The notebook, the overrides, the package's source and EVERY notebook's YAML of this profile: the
    diagnostics notebooks read other notebooks' chains (05 and 08 load 02's parameters), so a change there must
    rerun them too."""
    nb = (notebooks_dir() / f"{stem}.ipynb").read_bytes()
    ymls = [p.read_bytes() for p in sorted(config.params_dir().glob(f"*/{profile}.yaml"))]
    return store.hash_bytes(nb, *ymls, json.dumps(overrides, sort_keys=True).encode(),
                            store.package_source_hash().encode())


def ensure_kernel() -> None:
    """Register this interpreter as the 'resonance' Jupyter kernel (per user), so JupyterLab users get it too."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        if spec.argv and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(user=True, kernel_name=KERNEL, display_name="Python (resonance)")


SKIPPED = ("skipped", 0.0, "unchanged (use --force to rerun)")


def up_to_date(stem: str, profile: str, overrides: dict, *, key: str | None = None) -> bool:
    """True when the notebook's last successful run had these inputs and its numbers file is still there."""
    done = build_dir(profile) / f"{stem}.done"
    key = key or inputs_hash(stem, profile, overrides)
    return (done.exists() and done.read_text().strip() == key
            and (store.figures_dir(profile) / f"{stem}.json").exists())


def run_one(stem: str, profile: str, overrides: dict, *, force: bool) -> tuple[str, float, str]:
    """Returns (status, seconds, message) with status 'ran', 'skipped' or 'failed'."""
    import papermill as pm

    out_dir = build_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed, log, done = out_dir / f"{stem}.ipynb", out_dir / f"{stem}.log", out_dir / f"{stem}.done"
    key = inputs_hash(stem, profile, overrides)
    if not force and up_to_date(stem, profile, overrides, key=key):
        return SKIPPED
    done.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        with open(log, "w") as logf, _stderr_to(logf):
            pm.execute_notebook(str(notebooks_dir() / f"{stem}.ipynb"), str(executed),
                                parameters={"profile": profile, **overrides}, kernel_name=KERNEL,
                                cwd=str(notebooks_dir()), progress_bar=False, log_output=False,
                                stdout_file=logf, stderr_file=logf)
    except Exception as e:  # papermill raises PapermillExecutionError with the failing cell's traceback
        with open(log, "a") as logf:
            logf.write("\n" + "".join(traceback.format_exception(e)))
        first = str(e).strip().splitlines()
        reason = next((ln for ln in reversed(first) if ln.strip()), type(e).__name__)
        return "failed", time.perf_counter() - t0, f"{reason[:300]}\n    log: {log}\n    executed notebook: {executed}"
    done.write_text(key + "\n")
    return "ran", time.perf_counter() - t0, f"executed notebook: {executed}"


@contextlib.contextmanager
def _stderr_to(f):
    """Send this process's stderr (papermill's logging, the kernel's warnings) to the notebook's log file."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def refresh_checks(stem: str) -> int:
    """Copy the outputs of '# NBVAL_CHECK_OUTPUT' cells from the executed smoke notebook into the source one."""
    import nbformat

    src_path, run_path = notebooks_dir() / f"{stem}.ipynb", build_dir("smoke") / f"{stem}.ipynb"
    src, run = nbformat.read(src_path, as_version=4), nbformat.read(run_path, as_version=4)
    ran = {c.source: c for c in run.cells if c.cell_type == "code"}
    n = 0
    for cell in src.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith("# NBVAL_CHECK_OUTPUT"):
            outs = [o for o in ran[cell.source].outputs if o.get("output_type") == "stream"]
            cell.outputs, cell.execution_count = outs, 1
            n += 1
    with store.atomic_path(src_path) as tmp:
        nbformat.write(src, str(tmp))
    return n


# ------------------------------------------------------------------------------------------------ parallel runs
def ready(pending: list[str], finished: set[str], selected: list[str], deps: dict | None = None) -> list[str]:
    """The pending notebooks, in order, whose dependencies among `selected` have all finished (ran, skipped or
    failed: as in a sequential run, a failed dependency does not stop the notebooks that read it). A dependency
    that is not selected in this run, or not a notebook at all, is not waited for."""
    deps = DEPENDENCIES if deps is None else deps
    return [s for s in pending if all(d in finished or d not in selected for d in deps.get(s, ()))]


def schedule(stems: list[str], jobs: int, start, wait, *, deps: dict | None = None) -> dict[str, object]:
    """Run `stems` at most `jobs` at a time, dependencies first. start(stem, slot) launches one (slot: 0..jobs-1,
    free while it runs) and returns a handle; wait(handles: dict stem -> handle) blocks until at least one has
    finished and returns {stem: result} for those. Returns {stem: result} for all. Pure: no processes here, so
    the order can be tested with fakes."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    pending, running, slots, results = list(stems), {}, {}, {}
    while pending or running:
        for stem in ready(pending, set(results), stems, deps)[:jobs - len(running)]:
            slot = min(set(range(jobs)) - set(slots.values()))
            pending.remove(stem)
            slots[stem] = slot
            running[stem] = start(stem, slot)
        if not running:  # cannot happen with an acyclic DEPENDENCIES; fail loudly rather than spin
            raise RuntimeError(f"notebooks {pending} wait on each other: check DEPENDENCIES")
        for stem, result in wait(dict(running)).items():
            results[stem] = result
            del running[stem], slots[stem]
    return results


def gpu_ids() -> list[str]:
    """The GPUs this process may use ($CUDA_VISIBLE_DEVICES when set, else every CUDA device); [] without CUDA."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    from .runtime import cuda_available

    if not cuda_available():
        return []
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def auto_jobs(gpus: list[str], cpu_count: int) -> int:
    """--jobs auto: one notebook per GPU; on a CPU two at once when there are 2 or more cores (each with half the
    threads). Measured on 2 cores: two 1-thread processes train the MNIST UNet 1.15x faster in all than one
    2-thread process, and each notebook's single-threaded parts (imports, plots, Python loops) overlap the other's
    work. Not more: every notebook holds its data and models in memory."""
    if gpus:
        return len(gpus)
    return 2 if cpu_count >= 2 else 1


def job_env(slot: int, jobs: int, *, gpus: list[str], cpu_count: int, environ: dict | None = None) -> dict:
    """Environment variables for the job in `slot`: one GPU each when there are several (round-robin over the
    slots), and an even share of the CPU threads, since N torch pools of every core each would fight over them
    (a thread count the user set is kept)."""
    environ = os.environ if environ is None else environ
    env = {}
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    share = str(max(1, cpu_count // jobs))
    for var in ("RESONANCE_THREADS", "OMP_NUM_THREADS"):
        if not environ.get(var):
            env[var] = share
    return env


def run_parallel(stems: list[str], profile: str, overrides: dict, *, force: bool, jobs: int,
                 on_start=None, on_finish=None) -> dict[str, tuple[str, float, str]]:
    """Each notebook in its own process (`--worker`), `jobs` at a time; {stem: (status, seconds, message)}."""
    gpus, cpus = gpu_ids(), os.cpu_count() or 1
    procs = {}

    def start(stem, slot):
        env = job_env(slot, jobs, gpus=gpus, cpu_count=cpus)
        fd, result = tempfile.mkstemp(prefix=f"{stem}.", suffix=".json")
        os.close(fd)
        result = Path(result)
        out = tempfile.TemporaryFile()  # the worker's own output: only read if it dies before reporting
        cmd = [sys.executable, "-m", "resonance_utils.run_notebooks", "--worker", stem, "--profile", profile,
               "--worker-overrides", json.dumps(overrides[stem]), "--worker-result", str(result)]
        proc = subprocess.Popen(cmd + (["--force"] if force else []), env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, cwd=store.repo_root())
        procs[stem] = proc
        if on_start:
            on_start(stem, env)
        return proc, result, out, time.perf_counter()

    def wait(handles):
        while True:
            done = {}
            for stem, (proc, result, out, t0) in handles.items():
                if proc.poll() is None:
                    continue
                done[stem] = _worker_result(stem, proc.returncode, result, out, time.perf_counter() - t0)
                if on_finish:
                    on_finish(stem, *done[stem])
            if done:
                return done
            time.sleep(0.2)

    try:
        return schedule(stems, jobs, start, wait)
    finally:  # Ctrl-C or an error here: stop the notebooks this process started
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()


def _worker_result(stem, returncode, result: Path, out, secs) -> tuple[str, float, str]:
    try:
        status, w_secs, msg = json.loads(result.read_text())
        return status, w_secs, msg
    except (OSError, ValueError):  # the worker died before reporting: show the end of what it printed
        out.seek(0)
        tail = out.read().decode(errors="replace").strip().splitlines()[-5:]
        return "failed", secs, f"worker exited with code {returncode}:\n    " + "\n    ".join(tail)
    finally:
        out.close()
        result.unlink(missing_ok=True)


def _worker(stem: str, profile: str, overrides_json: str, force: bool, result: str) -> int:
    """One notebook in this process (what --jobs N starts): run_one, its result written as JSON to `result`."""
    outcome = run_one(stem, profile, json.loads(overrides_json), force=force)
    Path(result).write_text(json.dumps(outcome))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="run_all.sh", description="Execute the notebooks with papermill.")
    ap.add_argument("--profile", choices=config.PROFILES, help="default: paper on CUDA, else quick")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only these notebooks (a stem like 01_lucier_room or its number prefix; repeatable)")
    ap.add_argument("--force", action="store_true", help="rerun notebooks whose inputs are unchanged")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    ap.add_argument("-p", dest="params", action="append", default=[], metavar="KEY=VALUE",
                    help="a parameter override passed to papermill (repeatable)")
    ap.add_argument("--jobs", default="auto", metavar="N",
                    help="run up to N notebooks at once, each in its own process, after the notebooks they read; "
                         "1: one after the other in this process; auto (default): one per GPU, or 2 on a CPU "
                         "with 2 or more cores")
    ap.add_argument("--refresh-checks", action="store_true",
                    help="(developers) after a smoke run, store its NBVAL_CHECK_OUTPUT outputs in notebooks/")
    for hidden in ("--worker", "--worker-overrides", "--worker-result"):  # one notebook of a --jobs N run
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.jobs != "auto":
        try:
            args.jobs = int(args.jobs)
        except ValueError:
            ap.error(f"--jobs must be a number or auto, got {args.jobs!r}")
        if args.jobs < 1:
            ap.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.worker:
        return _worker(args.worker, args.profile, args.worker_overrides or "{}", args.force, args.worker_result)

    from .runtime import default_profile

    profile = args.profile or default_profile()
    names = list_notebooks()
    if args.list:
        for n in names:
            print(n)
        return 0
    selected = names
    if args.only:
        wanted = [w.strip() for o in args.only for w in o.split(",") if w.strip()]
        selected = []
        for w in wanted:
            hits = [n for n in names if n == w or n.startswith(w + "_") or n == Path(w).stem]
            if not hits:
                print(f"error: no notebook matches --only {w!r}; notebooks: {', '.join(names)}", file=sys.stderr)
                return 2
            selected += [h for h in hits if h not in selected]
    overrides = {}
    try:
        for stem in selected:
            overrides[stem] = config.check_overrides(stem, profile, args.params)
    except config.ConfigError as e:
        hint = " (use --only to pick the notebook it belongs to)" if len(selected) > 1 else ""
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2

    ensure_kernel()
    print(f"profile {profile}: {len(selected)} notebook(s); figures -> {store.figures_dir(profile)}", flush=True)
    total, failed = time.perf_counter(), []
    if args.jobs == "auto":
        args.jobs = auto_jobs(gpu_ids(), os.cpu_count() or 1)
    if min(args.jobs, len(selected)) > 1:
        return _main_parallel(selected, profile, overrides, args, total)
    for stem in selected:
        print(f"  {stem} ... ", end="", flush=True)
        status, secs, msg = run_one(stem, profile, overrides[stem], force=args.force)
        print(f"{status} ({secs:.1f} s) {msg if status != 'ran' else ''}".rstrip(), flush=True)
        if status == "failed":
            failed.append(stem)
        elif args.refresh_checks and profile == "smoke":
            print(f"    stored {refresh_checks(stem)} check output(s) in notebooks/{stem}.ipynb")
    print(f"done in {time.perf_counter() - total:.1f} s", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the logs above)", file=sys.stderr)
        return 1
    return 0


def _main_parallel(selected, profile, overrides, args, total) -> int:
    def on_start(stem, env):
        where = [f"GPU {env['CUDA_VISIBLE_DEVICES']}"] if "CUDA_VISIBLE_DEVICES" in env else []
        where += [f"{env['RESONANCE_THREADS']} thread(s)"] if "RESONANCE_THREADS" in env else []
        print(f"  {stem} ... started{' (' + ', '.join(where) + ')' if where else ''}", flush=True)

    def on_finish(stem, status, secs, msg):
        print(f"  {stem} {status} ({secs:.1f} s) {msg if status != 'ran' else ''}".rstrip(), flush=True)
        if status != "failed" and args.refresh_checks and profile == "smoke":
            print(f"    stored {refresh_checks(stem)} check output(s) in notebooks/{stem}.ipynb", flush=True)

    # unchanged notebooks are skipped here, not in a worker: a worker process costs seconds to start
    current = [] if args.force else [s for s in selected if up_to_date(s, profile, overrides[s])]
    for stem in current:
        on_finish(stem, *SKIPPED)
    todo = [s for s in selected if s not in current]
    jobs = min(args.jobs, len(todo))
    if jobs:
        print(f"  {jobs} job(s) at a time", flush=True)
    results = run_parallel(todo, profile, overrides, force=args.force, jobs=jobs, on_start=on_start,
                           on_finish=on_finish) if jobs else {}
    failed = [s for s in todo if results[s][0] == "failed"]
    print(f"done in {time.perf_counter() - total:.1f} s", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the logs above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
