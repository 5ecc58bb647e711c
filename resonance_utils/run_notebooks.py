"""Execute the notebooks with papermill: python -m resonance_utils.run_notebooks [--profile P] [--only NAME] ...

run_all.sh calls this after setting up the environment. A notebook is skipped when its inputs (the notebook,
its profile's YAML, the overrides and the package's source) are unchanged since its last successful run and its
outputs are still there; --force runs it anyway.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import config, store

KERNEL = "resonance"


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


def run_one(stem: str, profile: str, overrides: dict, *, force: bool) -> tuple[str, float, str]:
    """Returns (status, seconds, message) with status 'ran', 'skipped' or 'failed'."""
    import papermill as pm

    out_dir = build_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed, log, done = out_dir / f"{stem}.ipynb", out_dir / f"{stem}.log", out_dir / f"{stem}.done"
    key = inputs_hash(stem, profile, overrides)
    numbers = store.figures_dir(profile) / f"{stem}.json"
    if not force and done.exists() and done.read_text().strip() == key and numbers.exists():
        return "skipped", 0.0, "unchanged (use --force to rerun)"
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="run_all.sh", description="Execute the notebooks with papermill.")
    ap.add_argument("--profile", choices=config.PROFILES, help="default: paper on CUDA, else quick")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only these notebooks (a stem like 01_lucier_room or its number prefix; repeatable)")
    ap.add_argument("--force", action="store_true", help="rerun notebooks whose inputs are unchanged")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    ap.add_argument("-p", dest="params", action="append", default=[], metavar="KEY=VALUE",
                    help="a parameter override passed to papermill (repeatable)")
    ap.add_argument("--refresh-checks", action="store_true",
                    help="(developers) after a smoke run, store its NBVAL_CHECK_OUTPUT outputs in notebooks/")
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
