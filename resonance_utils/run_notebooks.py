"""Execute the notebooks with papermill: python -m resonance_utils.run_notebooks [--profile P] [--only NAME] ...

run_all.sh calls this after setting up the environment. A notebook is skipped only when its inputs (the
notebook, its profile's YAML, the overrides and the package's source) are unchanged since its last successful
run, that run wrote to the same figures and data folders as this one, and the outputs it recorded are still in the
figures folder, byte for byte, recorded in the manifest under that run's id (`stale_reason` says why not);
--force runs it anyway.

--jobs N runs up to N notebooks at once, each in its own process, never before the notebooks it reads
(notebook_params: reads=) have finished; several GPUs are shared out one per job, CPU threads split evenly.

Interrupts: Ctrl-C (SIGINT) or SIGTERM stops every kernel at once, prints one line per notebook (finished,
interrupted, not started) and exits 130 (143 for SIGTERM); chains keep every generation they committed. Each
kernel is started so that it dies with the process that started it (Linux: PR_SET_PDEATHSIG), so SIGKILL of the
whole process group stops the kernels too. Kernel connection files and worker results live in build/<profile>/
(.runtime/, .jobs/), never in the system's temporary folder, and are removed at the end (a killed run's, at the
next run).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from pathlib import Path

from . import config, results_page, store

KERNEL = "resonance"

def declared_dependencies() -> dict[str, dict[str, str | None]]:
    """notebook -> {producer it reads (records.read): the consumer's boolean parameter that switches the reading
    on, or None for always}, from each notebook's declaration (notebook_params, reads=). With --jobs N a consumer
    starts only after those have finished. Names that are not notebooks here (yet) are ignored."""
    from .notebook_params import NOTEBOOKS

    return {stem: dict(cls.reads) for stem, cls in NOTEBOOKS.items() if cls.reads}


def resolved_dependencies(profile: str, overrides: dict | None = None) -> dict[str, list[str]]:
    """The declared dependencies of one run: a dependency whose switch is off in the consumer's resolved
    parameters (its profile and this run's overrides) is dropped, so that (say) 09 in the quick profile, which has
    no ImageNet rows, does not wait for 03."""
    out = {}
    for stem, needs in declared_dependencies().items():
        cfg = None
        kept = []
        for dep, switch in needs.items():
            if switch is not None:
                if cfg is None:
                    cfg = config.load_config(stem, profile, **(overrides or {}).get(stem, {}))
                if not cfg[switch]:
                    continue
            kept.append(dep)
        out[stem] = kept
    return out


def notebooks_dir() -> Path:
    return store.repo_root() / "notebooks"


def list_notebooks() -> list[str]:
    """The project's notebooks, NN_name.ipynb (not a copy JupyterLab names 'NN_name-Copy1')."""
    return sorted(p.stem for p in notebooks_dir().glob("[0-9]*.ipynb") if re.fullmatch(r"\d\d_\w+", p.stem))


def build_dir(profile: str) -> Path:
    """build/<profile>/, or build/<profile>-rehearsal/ while a rehearsal runs (its stamps and logs are its own)."""
    from . import rehearsal

    return rehearsal.rehearsal_dir(profile) if rehearsal.active() else store.repo_root() / "build" / profile


def inputs_hash(stem: str, profile: str, overrides: dict) -> str:
    """The notebook, its resolved parameters (defaults, profile and overrides), the package's source and the
    records of the producers it reads (records.fingerprint): a producer that ran again with other parameters
    makes its consumers run again."""
    from . import records

    nb = (notebooks_dir() / f"{stem}.ipynb").read_bytes()
    try:
        params = config.load_config(stem, profile, **overrides).to_json()
    except config.ConfigError:  # not a notebook with parameters: its overrides stand for them
        params = overrides
    producers = [f"{dep}:{records.fingerprint(dep, profile)}"
                 for dep in resolved_dependencies(profile, {stem: overrides}).get(stem, [])]
    return store.hash_bytes(nb, json.dumps(params, sort_keys=True).encode(), "|".join(producers).encode(),
                            store.package_source_hash().encode())


def clone_kernel_name(root: Path | None = None) -> str:
    """The per-user Jupyter kernel of one clone: 'resonance-' and a hash of the clone's path."""
    root = Path(root or store.repo_root()).resolve()
    return f"{KERNEL}-{store.hash_bytes(str(root).encode())[:8]}"


def ensure_kernel(*, root: Path | None = None, executable: str | None = None, prefix: str | None = None) -> str:
    """Register a clone's interpreter as its Jupyter kernels; returns the per-user kernel's name.

    - 'resonance' inside the environment itself (prefix, default sys.prefix: .venv/share/jupyter/kernels), which
      is the name the notebooks carry: a JupyterLab started from .venv opens them with it, no dialog;
    - 'resonance-<hash of the clone's path>' per user, displayed as "Python (resonance: <path>)", for a JupyterLab
      started from elsewhere. Another clone has another name: neither re-points the other.
    A per-user 'resonance' (what set-up registered before, shared by every clone) is removed: it would hide the
    environment's own from every JupyterLab."""
    from jupyter_client.kernelspec import KernelSpecManager

    root = Path(root or store.repo_root()).resolve()
    ksm = KernelSpecManager()
    user_dir = Path(ksm.user_kernel_dir)
    if (user_dir / KERNEL / "kernel.json").exists():
        shutil.rmtree(user_dir / KERNEL)
        print(f"removed the per-user Jupyter kernel '{KERNEL}' (shared by every clone); this clone's is "
              f"'{clone_kernel_name(root)}'", file=sys.stderr)
    argv = [str(executable or sys.executable), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    name = clone_kernel_name(root)
    env_dir = Path(prefix or sys.prefix) / "share" / "jupyter" / "kernels"
    for folder, display in ((env_dir / KERNEL, "Python (resonance)"),
                            (user_dir / name, f"Python (resonance: {root})")):
        spec = {"argv": argv, "display_name": display, "language": "python",
                "metadata": {"resonance_clone": str(root)}}
        path = folder / "kernel.json"
        if path.exists() and json.loads(path.read_text()) == spec:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        with store.atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(spec, indent=1))
    return name


def this_interpreter_kernel_spec():
    """The kernel papermill runs: the interpreter that runs it (whatever a kernel registry says)."""
    from jupyter_client.kernelspec import KernelSpec

    return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                      display_name="Python (resonance, this run)", language="python")


SKIPPED = ("skipped", 0.0, "unchanged (use --force to rerun)")
STAMP_FORMAT = 2


def stamp_path(stem: str, profile: str) -> Path:
    """build/<profile>/<stem>.done: what the notebook's last successful run read and wrote (JSON)."""
    return build_dir(profile) / f"{stem}.done"


def recorded_outputs(stem: str, figures: Path, run: str) -> dict[str, dict]:
    """{file: {"size", "sha256"}} of the outputs that run `run` of notebook `stem` recorded in the manifest of
    `figures` (publish.Outputs records each with its run id), and the notebook's numbers file <stem>.json."""
    manifest = store.read_manifest(figures)
    files = {f for f, rec in manifest.items() if isinstance(rec, dict) and rec.get("run_id") == run
             and rec.get("notebook", stem) == stem}
    if (figures / f"{stem}.json").is_file():
        files.add(f"{stem}.json")
    return {f: store.file_record(figures / f) for f in sorted(files) if (figures / f).is_file()}


def write_stamp(stem: str, profile: str, key: str, run: str) -> Path:
    figures = store.figures_dir(profile)
    return store.write_json(stamp_path(stem, profile), {
        "format": STAMP_FORMAT, "inputs": key, "run_id": run, "figures_dir": str(figures),
        "data_dir": str(store.data_dir()), "outputs": recorded_outputs(stem, figures, run),
        "finished": store._now()})


def stale_reason(stem: str, profile: str, overrides: dict, *, key: str | None = None) -> str | None:
    """None when the notebook may be skipped; else why it must run: no stamp, other inputs, another figures or
    data folder than its last run's, or outputs that are gone, changed, or recorded by another run since."""
    stamp = stamp_path(stem, profile)
    if not stamp.exists():
        return "no successful run recorded"
    try:
        rec = json.loads(stamp.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        rec = None
    if not isinstance(rec, dict) or rec.get("format") != STAMP_FORMAT:
        return f"{stamp} is from an older version or damaged"
    if rec.get("inputs") != (key or inputs_hash(stem, profile, overrides)):
        return "its inputs changed"
    figures, data = store.figures_dir(profile), store.data_dir()
    if rec.get("figures_dir") != str(figures):
        return f"its last run wrote to the figures folder {rec.get('figures_dir')}, not {figures}"
    if rec.get("data_dir") != str(data):
        return f"its last run used the data folder {rec.get('data_dir')}, not {data}"
    outputs = rec.get("outputs") or {}
    if f"{stem}.json" not in outputs:
        return f"its numbers file {stem}.json was not written"
    manifest = store.read_manifest(figures)
    for f, want in outputs.items():
        path = figures / f
        if not path.is_file():
            return f"{path} is gone"
        if path.stat().st_size != want.get("size") or store.file_checksum(path) != want.get("sha256"):
            return f"{path} was rewritten since (by another run)"
        entry = manifest.get(f)
        if isinstance(entry, dict) and entry.get("run_id") not in (None, rec.get("run_id")):
            return f"{path} was recorded by another run since"
    return None


def up_to_date(stem: str, profile: str, overrides: dict, *, key: str | None = None) -> bool:
    """True when the notebook may be skipped (stale_reason is None)."""
    return stale_reason(stem, profile, overrides, key=key) is None


def check_manifest_now(profile: str) -> None:
    """Repair a damaged manifest of the figures folder before anything runs, saying so on the console."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", store.ManifestWarning)
        store.check_manifest(store.figures_dir(profile))
    for w in caught:
        print(f"  warning: {w.message}", file=sys.stderr, flush=True)


def run_one(stem: str, profile: str, overrides: dict, *, force: bool) -> tuple[str, float, str]:
    """Returns (status, seconds, message) with status 'ran', 'skipped' or 'failed'. An interrupt (Ctrl-C,
    SIGTERM) stops the kernel at once and is raised again (KeyboardInterrupt) after a line in the log."""
    import papermill as pm

    out_dir = build_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed, log, done = out_dir / f"{stem}.ipynb", out_dir / f"{stem}.log", stamp_path(stem, profile)
    key = inputs_hash(stem, profile, overrides)
    check_manifest_now(profile)
    if not force and up_to_date(stem, profile, overrides, key=key):
        return SKIPPED
    done.unlink(missing_ok=True)
    run = f"{stem}-{uuid.uuid4().hex[:12]}"
    t0 = time.perf_counter()
    try:
        with open(log, "w") as logf, _stderr_to(logf), _kernel_env(profile, run):
            pm.execute_notebook(str(notebooks_dir() / f"{stem}.ipynb"), str(executed),
                                parameters={"profile": profile, **overrides}, kernel_name=KERNEL,
                                cwd=str(notebooks_dir()), progress_bar=False, log_output=False,
                                stdout_file=logf, stderr_file=logf, kernel_manager_class=kernel_manager_class())
    except KeyboardInterrupt:
        stop_kernels()
        drop_unfinished_record(stem, profile, run)
        with open(log, "a") as logf:
            logf.write(f"\ninterrupted after {time.perf_counter() - t0:.1f} s\n")
        raise
    except Exception as e:  # papermill raises PapermillExecutionError with the failing cell's traceback
        drop_unfinished_record(stem, profile, run)
        with open(log, "a") as logf:
            logf.write("\n" + "".join(traceback.format_exception(e)))
        _rehearsal_outcome(stem, profile, "failed", time.perf_counter() - t0, failure_reason(e))
        return ("failed", time.perf_counter() - t0,
                f"{failure_reason(e)}\n    log: {log}\n    executed notebook: {executed}")
    write_stamp(stem, profile, key, run)
    _rehearsal_outcome(stem, profile, "ran", time.perf_counter() - t0)
    return "ran", time.perf_counter() - t0, f"executed notebook: {executed}"


def drop_unfinished_record(stem: str, profile: str, run: str) -> bool:
    """Remove the record a notebook wrote in the run `run` that then failed or was stopped (05 records its
    parameters before its last cells), so that a notebook reading it fails with MissingRecord instead of running
    on a producer that did not finish. A record of an earlier, finished run is left alone (its chains are whole)."""
    from .records import record_path

    path = record_path(stem, profile)
    try:
        written = json.loads(path.read_text()).get("run_id")
    except (OSError, ValueError):
        return False
    if written != run:
        return False
    path.unlink(missing_ok=True)
    return True


def _rehearsal_outcome(stem: str, profile: str, status: str, seconds: float, reason: str = "") -> None:
    """A rehearsal keeps each notebook's outcome and wall time beside its recorded costs (the plan reads both)."""
    from . import rehearsal

    if rehearsal.active():
        rehearsal.record_outcome(profile, stem, status=status, seconds=seconds, reason=reason)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_REASON = 2000


def failure_reason(e: BaseException) -> str:
    """The line of a notebook's failure the console shows: the exception's last line (papermill's message ends
    with 'ErrorName: message'), colour codes stripped, whole up to MAX_REASON characters (the errors of this
    project put the fix at the end of the line)."""
    lines = [ANSI.sub("", ln) for ln in str(e).strip().splitlines()]
    reason = next((ln.strip() for ln in reversed(lines) if ln.strip()), type(e).__name__)
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON] + " ... (the rest is in the log)"
    return reason


# ------------------------------------------------------------------------------------------ kernels, interrupts
_KERNELS: set = set()  # kernel managers of this process whose kernel may be running
_INTERRUPTED = threading.Event()
_SIGNAL = [0]  # the signal that interrupted this process
_KM_CLASS = []


def _die_with_parent_preexec():
    """preexec_fn of a kernel: on Linux it gets SIGKILL when the process that started it dies (even by
    SIGKILL), so an orphaned kernel never keeps computing and writing."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec():
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: go now
            os._exit(1)
    return preexec


def kernel_manager_class():
    """jupyter_client's AsyncKernelManager, with kernels that die with their parent (Linux), that are
    registered for stop_kernels, that are shut down at once (no grace period) after an interrupt, and whose
    connection file lives in $JUPYTER_RUNTIME_DIR (run_one's private folder), not in the system's temp folder."""
    if _KM_CLASS:
        return _KM_CLASS[0]
    from jupyter_client.manager import AsyncKernelManager

    class GuardedKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self):  # never another clone's interpreter, whatever the registered kernel points at
            if self._kernel_spec is None:
                self._kernel_spec = this_interpreter_kernel_spec()
            return self._kernel_spec

        async def _async_pre_start_kernel(self, **kw):
            if not self.connection_file:  # jupyter_client's default is a mkstemp file in the system's temp folder
                folder = os.environ.get("JUPYTER_RUNTIME_DIR") or tempfile.gettempdir()
                self.connection_file = os.path.join(folder, f"kernel-{uuid.uuid4().hex[:12]}.json")
            return await super()._async_pre_start_kernel(**kw)

        pre_start_kernel = _async_pre_start_kernel

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if sys.platform.startswith("linux") and "preexec_fn" not in kw:
                kw["preexec_fn"] = _die_with_parent_preexec()
            await super()._async_launch_kernel(kernel_cmd, **kw)
            _KERNELS.add(self)

        _launch_kernel = _async_launch_kernel

        async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False):
            try:
                await super()._async_shutdown_kernel(now=now or _INTERRUPTED.is_set(), restart=restart)
            finally:
                _KERNELS.discard(self)

        shutdown_kernel = _async_shutdown_kernel

    _KM_CLASS.append(GuardedKernelManager)
    return GuardedKernelManager


def stop_kernels() -> None:
    """Kill every kernel this process started that still runs (its whole process group) and remove its
    connection file: what an interrupt does before it reports."""
    for km in list(_KERNELS):
        prov = getattr(km, "provisioner", None)
        pid, pgid = getattr(prov, "pid", None), getattr(prov, "pgid", None)
        with contextlib.suppress(OSError, TypeError):
            if pgid:
                os.killpg(pgid, signal.SIGKILL)
            elif pid:
                os.kill(pid, signal.SIGKILL)
        proc = getattr(prov, "process", None)
        with contextlib.suppress(Exception):
            if proc is not None:
                proc.wait(timeout=5)
        with contextlib.suppress(Exception):
            km.cleanup_connection_file()
        _KERNELS.discard(km)


def _private_dir(profile: str, kind: str) -> Path:
    """build/<profile>/<kind>/<pid>/ for this process (kernel connection files, worker results); the folders of
    processes that no longer run are removed first."""
    base = build_dir(profile) / kind
    if base.is_dir():
        for p in base.iterdir():
            if p.name.isdigit() and not store.process_alive(int(p.name)):
                shutil.rmtree(p, ignore_errors=True)
    d = base / str(os.getpid())
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _kernel_env(profile: str, run: str):
    """The kernel's environment for one notebook: its run id (recorded with every output), and a private
    folder for its connection file, removed afterwards."""
    from . import costs, rehearsal

    runtime_dir = _private_dir(profile, ".runtime")
    saved = {k: os.environ.get(k) for k in ("RESONANCE_RUN_ID", "JUPYTER_RUNTIME_DIR", costs.ENV)}
    os.environ["RESONANCE_RUN_ID"], os.environ["JUPYTER_RUNTIME_DIR"] = run, str(runtime_dir)
    if rehearsal.active():  # the kernel records its hot operations' costs (costs.op) in this file
        path = rehearsal.costs_path(profile, run.rsplit("-", 1)[0])
        path.unlink(missing_ok=True)
        os.environ[costs.ENV] = str(path)
    try:
        yield
    except BaseException:
        stop_kernels()  # an interrupt: no grace period for the kernel (a failed cell: it is already stopped)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if not _KERNELS:
            shutil.rmtree(runtime_dir, ignore_errors=True)


def _install_interrupt_handlers() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt once; while the interrupt is handled, further ones are
    ignored (so that stopping the kernels and reporting is not cut short)."""
    def handler(signum, frame):
        if _INTERRUPTED.is_set():
            return
        _INTERRUPTED.set()
        _SIGNAL[0] = signum
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def interrupted_exit_code() -> int:
    return 128 + (_SIGNAL[0] or signal.SIGINT)


def report_interrupt(selected: list[str], results: dict, running: list[str]) -> None:
    """One line per notebook after an interrupt: finished (with its status), interrupted, or not started."""
    name = signal.Signals(_SIGNAL[0] or signal.SIGINT).name
    print(f"interrupted ({name}): the kernels are stopped; chains keep every generation they committed, so a "
          "rerun resumes", flush=True)
    width = max(len(s) for s in selected)
    for stem in selected:
        if stem in results:
            status, secs, _ = results[stem]
            line = f"finished ({status}, {secs:.1f} s)"
        elif stem in running:
            line = "interrupted (rerun to resume)"
        else:
            line = "not started"
        print(f"  {stem:<{width}}  {line}", flush=True)


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


# ------------------------------------------------------------------------------- notebooks saved from a kernel
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"  # the first line of a cell whose outputs nbval compares


def saved_tweaks(stem: str, *, outputs: bool = True) -> list[str]:
    """What a tracked notebook saved from JupyterLab (autosave) changed, as sentences: values set in its
    parameters cell (papermill would run them as standing overrides in every profile) and, with outputs, a kernel
    run's outputs saved over the stored ones (nbval compares the '# NBVAL_CHECK_OUTPUT' cells' outputs, which
    --refresh-checks stores alone, execution count 1). Empty when the notebook is as the repository keeps it (a
    cell that differs from the generated one but sets nothing is tests/test_specs.py's concern, not a user's)."""
    import nbformat
    from .notebook_params import NOTEBOOKS, parameters_cell

    path = notebooks_dir() / f"{stem}.ipynb"
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - a damaged file is reported, whatever the reader raised
        return [f"{path} cannot be read as a notebook ({type(e).__name__}: {e})"]
    problems = []
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if stem in NOTEBOOKS and cell is not None and cell.source != parameters_cell(stem):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as e:
            return [f"notebooks/{stem}.ipynb: its parameters cell does not parse ({e.msg}, line {e.lineno})"]
        # what the user set: every assignment other than the generated 'name = None' and 'profile = ""'
        values = {t.id: ast.get_source_segment(cell.source, node.value) for node in tree.body
                  if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
                  and not (isinstance(node.value, ast.Constant) and node.value.value in (None, ""))}
        if values:
            fix = " ".join(f"--profile {v.strip(chr(34) + chr(39))}" if k == "profile" else f"-p {k}={v}"
                           for k, v in values.items())
            problems.append(f"notebooks/{stem}.ipynb: its saved parameters cell sets "
                            f"{', '.join(f'{k} = {v}' for k, v in values.items())}, a standing override in every "
                            f"profile; pass `{fix}` instead")
    if outputs:
        ran = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.source.lstrip().startswith(
            CHECK_MARK) and (c.get("outputs") or c.get("execution_count"))]
        checks = [c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith(CHECK_MARK)]
        if ran or any(c.get("execution_count") != 1 or not c.get("outputs") for c in checks):
            problems.append(f"notebooks/{stem}.ipynb: saved after a run in a kernel (outputs in "
                            f"{len(ran)} cell(s)); its check outputs are no longer the stored smoke-profile ones "
                            "that nbval compares")
    if problems:
        problems.append(f"  restore it with `git checkout notebooks/{stem}.ipynb` (to keep a tweak, save a copy "
                        "outside notebooks/, or pass the value with -p)")
    return problems


# ------------------------------------------------------------------------------------------------ parallel runs
def ready(pending: list[str], finished: set[str], selected: list[str], deps: dict | None = None) -> list[str]:
    """The pending notebooks, in order, whose dependencies among `selected` have all finished (ran, skipped or
    failed: as in a sequential run, a failed dependency does not stop the notebooks that read it). A dependency
    that is not selected in this run, or not a notebook at all, is not waited for."""
    deps = declared_dependencies() if deps is None else deps
    return [s for s in pending if all(d in finished or d not in selected for d in deps.get(s, ()))]


def _waiting_on(stem: str, pending: list[str], deps: dict) -> int:
    """How many pending notebooks wait on `stem`, directly or through others."""
    seen, todo = set(), [stem]
    while todo:
        cur = todo.pop()
        for other in pending:
            if other not in seen and cur in deps.get(other, ()):
                seen.add(other)
                todo.append(other)
    return len(seen)


def schedule(stems: list[str], jobs: int, start, wait, *, deps: dict | None = None) -> dict[str, object]:
    """Run `stems` at most `jobs` at a time, dependencies first. start(stem, slot) launches one (slot: 0..jobs-1,
    free while it runs) and returns a handle; wait(handles: dict stem -> handle) blocks until at least one has
    finished and returns {stem: result} for those. Returns {stem: result} for all. With jobs > 1 the ready
    notebooks that others wait on go first (most waiting first), then those that read the most other notebooks,
    then in order, so that a long consumer is not held up behind independent work; jobs = 1
    keeps the listed order. Pure: no processes here, so the order can
    be tested with fakes."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    deps = declared_dependencies() if deps is None else deps
    pending, running, slots, results = list(stems), {}, {}, {}
    while pending or running:
        candidates = ready(pending, set(results), stems, deps)
        if jobs > 1:
            # producers first; then the consumers that read the most notebooks (they run the long analyses at the
            # end) before independent notebooks; ties keep the listed order
            candidates.sort(key=lambda s: (-_waiting_on(s, pending, deps), -len(deps.get(s, ()))))
        for stem in candidates[:jobs - len(running)]:
            slot = min(set(range(jobs)) - set(slots.values()))
            pending.remove(stem)
            slots[stem] = slot
            running[stem] = start(stem, slot)
        if not running:  # cannot happen with acyclic declarations; fail loudly rather than spin
            raise RuntimeError(f"notebooks {pending} wait on each other: check reads= in notebook_params")
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
                 on_start=None, on_finish=None, results: dict | None = None) -> dict[str, tuple[str, float, str]]:
    """Each notebook in its own process (`--worker`), `jobs` at a time; {stem: (status, seconds, message)}.

    `results` (optional) is filled as notebooks finish, so that a caller interrupted half-way knows which did.
    On an interrupt (KeyboardInterrupt here) the workers still running are sent SIGINT, given 15 s to stop their
    kernels, then killed; the exception is raised again, with `running` (the stems that were running) set on
    it. Worker results live in build/<profile>/.jobs/<pid>/, removed at the end."""
    gpus, cpus = gpu_ids(), os.cpu_count() or 1
    procs = {}
    finished = {} if results is None else results
    jobs_dir = _private_dir(profile, ".jobs")

    def start(stem, slot):
        env = job_env(slot, jobs, gpus=gpus, cpu_count=cpus)
        result = jobs_dir / f"{stem}.json"
        result.unlink(missing_ok=True)
        out = tempfile.TemporaryFile(dir=jobs_dir)  # the worker's own output: only read if it dies before reporting
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
                done[stem] = finished[stem] = _worker_result(stem, proc.returncode, result, out,
                                                             time.perf_counter() - t0)
                if on_finish:
                    on_finish(stem, *done[stem])
            if done:
                return done
            time.sleep(0.2)

    try:
        return schedule(stems, jobs, start, wait, deps=resolved_dependencies(profile, overrides))
    except KeyboardInterrupt as e:
        running = [s for s in procs if s not in finished]
        _stop_workers(procs)
        for stem in running:  # a worker that finished just as the interrupt came has reported
            with contextlib.suppress(OSError, ValueError):
                status, secs, msg = json.loads((jobs_dir / f"{stem}.json").read_text())
                if status != "interrupted":
                    finished[stem] = (status, secs, msg)
        e.running = [s for s in running if s not in finished]
        raise
    finally:  # an error here: stop the notebooks this process started
        _stop_workers(procs)
        shutil.rmtree(jobs_dir, ignore_errors=True)
        # a worker interrupted while its kernel was starting can leave that kernel's connection file behind
        with contextlib.suppress(OSError):  # _private_dir sweeps the folders of the (now stopped) workers
            _private_dir(profile, ".runtime").rmdir()


def _stop_workers(procs: dict, grace: float = 15.0) -> None:
    """SIGINT to every worker still running (each then stops its kernel and exits), SIGKILL after `grace` s."""
    live = [p for p in procs.values() if p.poll() is None]
    for p in live:
        with contextlib.suppress(OSError):
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
    """One notebook in this process (what --jobs N starts): run_one, its result written as JSON to `result`.
    Interrupted, it stops its kernel and reports 'interrupted'."""
    t0 = time.perf_counter()
    try:
        outcome = run_one(stem, profile, json.loads(overrides_json), force=force)
    except KeyboardInterrupt:
        stop_kernels()
        Path(result).write_text(json.dumps(["interrupted", time.perf_counter() - t0, "interrupted"]))
        return interrupted_exit_code()
    Path(result).write_text(json.dumps(outcome))
    return 0


def write_run_times(profile: str, selected: list[str], results: dict, wall_s: float, *, jobs: int,
                    force: bool) -> Path:
    """build/<profile>/last_run.json: what a finished run (not an interrupted one) measured, and, for a run of every
    notebook, last_full_run.json too, for README's table of run times (python -m benchmarks.run
    --runtimes-readme). results: {stem: (status, seconds, message)}."""
    from .runtime import cpu_name, describe_device

    gpus = gpu_ids()
    record = {
        "profile": profile, "finished": store._now(), "wall_s": round(wall_s, 1), "jobs": jobs,
        "cpu": f"{cpu_name()}, {os.cpu_count()} cores", "gpu": describe_device("cuda") if gpus else None,
        "git_commit": store.git_commit(), "selected": list(selected),
        "all_notebooks": set(selected) == set(list_notebooks()), "force": bool(force),
        "notebooks": {s: {"status": results[s][0], "seconds": round(float(results[s][1]), 1)}
                      for s in selected if s in results}}
    if record["all_notebooks"]:  # a later --only run replaces last_run.json, not the last run of everything
        store.write_json(build_dir(profile) / "last_full_run.json", record)
    return store.write_json(build_dir(profile) / "last_run.json", record)


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
    ap.add_argument("--rehearse", action="store_true",
                    help="the paper profile's parameters with the counts of rehearsal.COUNTS (a few generations, "
                         "samples, steps), into build/paper-rehearsal/; ends with the full run's cost plan")
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
    _install_interrupt_handlers()
    if args.worker:
        return _worker(args.worker, args.profile, args.worker_overrides or "{}", args.force, args.worker_result)

    from .runtime import default_profile

    profile = args.profile or default_profile()
    if args.rehearse:  # rehearsal.COUNTS are cuts of the paper profile's counts
        from . import rehearsal

        if args.profile not in (None, "paper"):
            ap.error(f"--rehearse rehearses the paper profile, not {args.profile}")
        profile = "paper"
        rehearsal.enter(profile)
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
    # a tweak JupyterLab autosaved into a tracked notebook would be a standing override: said before anything runs
    tweaks = [line for stem in selected for line in saved_tweaks(stem, outputs=False)]
    if tweaks:
        print("error: " + "\n".join(tweaks), file=sys.stderr)
        return 2
    overrides = {}
    try:
        for stem in selected:
            overrides[stem] = config.check_overrides(stem, profile, args.params)
            if args.rehearse:  # the user's -p wins over the rehearsal's counts
                overrides[stem] = rehearsal.counts(stem) | overrides[stem]
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
    check_manifest_now(profile)  # a damaged manifest is repaired (and said so) before anything runs
    results, current = {}, None
    try:
        for stem in selected:
            current = stem
            print(f"  {stem} ... ", end="", flush=True)
            status, secs, msg = run_one(stem, profile, overrides[stem], force=args.force)
            results[stem], current = (status, secs, msg), None
            print(f"{status} ({secs:.1f} s) {msg if status != 'ran' else ''}".rstrip(), flush=True)
            if status == "failed":
                failed.append(stem)
            elif args.refresh_checks and profile == "smoke":
                print(f"    stored {refresh_checks(stem)} check output(s) in notebooks/{stem}.ipynb")
    except KeyboardInterrupt:
        stop_kernels()
        print(flush=True)
        report_interrupt(selected, results, [current] if current else [])
        return interrupted_exit_code()
    write_run_times(profile, selected, results, time.perf_counter() - total, jobs=1, force=args.force)
    results_page.write_after_run(profile=profile)  # <figures dir>/index.html: what every run so far found
    print(f"done in {time.perf_counter() - total:.1f} s", flush=True)
    if args.rehearse:
        _print_plan(profile, selected, overrides)
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

    check_manifest_now(profile)  # a damaged manifest is repaired (and said so) before anything runs
    # unchanged notebooks are skipped here, not in a worker: a worker process costs seconds to start
    current = [] if args.force else [s for s in selected if up_to_date(s, profile, overrides[s])]
    for stem in current:
        on_finish(stem, *SKIPPED)
    todo = [s for s in selected if s not in current]
    jobs = min(args.jobs, len(todo))
    if jobs:
        print(f"  {jobs} job(s) at a time", flush=True)
    results = {s: SKIPPED for s in current}
    try:
        if jobs:
            run_parallel(todo, profile, overrides, force=args.force, jobs=jobs, on_start=on_start,
                         on_finish=on_finish, results=results)
    except KeyboardInterrupt as e:
        stop_kernels()
        done = {s: r for s, r in results.items() if r[0] != "interrupted"}
        report_interrupt(selected, done, [s for s in todo if s not in done and (s in getattr(e, "running", [])
                                                                              or s in results)])
        return interrupted_exit_code()
    failed = [s for s in todo if results[s][0] == "failed"]
    write_run_times(profile, selected, results, time.perf_counter() - total, jobs=max(jobs, 1), force=args.force)
    results_page.write_after_run(profile=profile)  # <figures dir>/index.html: what every run so far found
    print(f"done in {time.perf_counter() - total:.1f} s", flush=True)
    if args.rehearse:
        _print_plan(profile, selected, overrides)
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the logs above)", file=sys.stderr)
        return 1
    return 0


def _print_plan(profile: str, selected: list[str], overrides: dict) -> None:
    """The full run's cost plan from this rehearsal (rehearsal.write_plan), printed and written."""
    from . import rehearsal

    md, paths = rehearsal.write_plan(profile, selected, overrides)
    print("\n" + md, flush=True)
    print("plan written to " + ", ".join(str(p) for p in paths), flush=True)


if __name__ == "__main__":
    sys.exit(main())
