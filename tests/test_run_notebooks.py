"""run_all.sh's driver: selection, parameter checks before anything runs, and skipping unchanged notebooks."""
import json
import os
import subprocess
import sys
import time

import pytest

from resonance_utils import run_notebooks
from resonance_utils.store import repo_root


def cli(*args):
    return subprocess.run([sys.executable, "-m", "resonance_utils.run_notebooks", *args], capture_output=True,
                          text=True, cwd=repo_root(), timeout=120)


def test_list_names_every_notebook():
    out = cli("--list")
    assert out.returncode == 0
    assert out.stdout.split() == run_notebooks.list_notebooks() and "01_lucier_room" in out.stdout


def test_unknown_notebook_and_parameter_fail_before_running(tmp_path):
    out = cli("--profile", "smoke", "--only", "42_nothing")
    assert out.returncode == 2 and "no notebook matches" in out.stderr
    out = cli("--profile", "smoke", "--only", "01", "-p", "n_iteratons=3")
    assert out.returncode == 2 and "n_iteratons" in out.stderr and "n_iterations" in out.stderr
    out = cli("--profile", "smoke", "--only", "01", "-p", "n_iterations=lots")
    assert out.returncode == 2 and "must be int" in out.stderr
    out = cli("--profile", "fast")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_inputs_hash_follows_notebook_params_and_overrides():
    a = run_notebooks.inputs_hash("01_lucier_room", "smoke", {})
    assert a == run_notebooks.inputs_hash("01_lucier_room", "smoke", {})
    assert a != run_notebooks.inputs_hash("01_lucier_room", "quick", {})
    assert a != run_notebooks.inputs_hash("01_lucier_room", "smoke", {"n_iterations": 3})


def test_second_run_skips_and_force_reruns(tmp_path, monkeypatch):
    """One real papermill execution (smoke, a few passes), then a skip, then a failure that names its log."""
    # this tests the runner, at counts below any profile's: the layout check is nbval's, at the smoke profile
    monkeypatch.delenv("RESONANCE_STRICT_FIGURES", raising=False)
    monkeypatch.setenv("RESONANCE_FIGURES_DIR", str(tmp_path / "figures"))
    run_notebooks.ensure_kernel()
    over = {"n_iterations": 3, "voice_seconds": 0.3, "show_passes": "0, 3"}
    status, _, _ = run_notebooks.run_one("01_lucier_room", "smoke", over, force=False)
    assert status == "ran" and (tmp_path / "figures" / "01_lucier_room.json").exists()
    status, secs, msg = run_notebooks.run_one("01_lucier_room", "smoke", over, force=False)
    assert status == "skipped" and secs < 5 and "unchanged" in msg
    status, _, msg = run_notebooks.run_one("01_lucier_room", "smoke", {**over, "voice_path": "/no/voice.wav"},
                                           force=False)
    assert status == "failed" and "voice_path" in msg and ".log" in msg


# ------------------------------------------------------------------------------------------------ --jobs N
def test_ready_waits_only_for_selected_dependencies():
    deps = {"05": ["02"], "09": ["01", "02", "03"]}
    sel = ["01", "02", "05", "09"]
    assert run_notebooks.ready(["01", "02", "05", "09"], set(), sel, deps) == ["01", "02"]
    assert run_notebooks.ready(["05", "09"], {"02"}, sel, deps) == ["05"]
    assert run_notebooks.ready(["09"], {"01", "02"}, sel, deps) == ["09"]  # 03 is not selected (or absent)
    assert run_notebooks.ready(["05"], set(), ["05"], deps) == ["05"]  # --only 05: read 02's cached chains


def test_the_run_order_follows_what_each_notebook_reads():
    """A notebook reads another's results only through records.read, which refuses an undeclared producer; the
    run order is derived from the same declarations. Every notebook that reads another declares it, and no
    notebook reaches another through its parameters (config.load_config of another notebook)."""
    import re

    import nbformat

    deps = run_notebooks.declared_dependencies()
    stems = run_notebooks.list_notebooks()
    for stem in stems:
        nb = nbformat.read(run_notebooks.notebooks_dir() / f"{stem}.ipynb", 4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        reads = set(re.findall(r'records\.read\(\s*cfg,\s*"([0-9]{2}_[a-z_]+)"', code))
        assert reads == set(deps.get(stem, {})), f"{stem} reads {sorted(reads)} but declares {deps.get(stem)}"
        assert "load_config(" not in code, f"{stem} loads a notebook's parameters: read its record instead"
    assert all(d in stems for ds in deps.values() for d in ds)


def simulate(stems, jobs, durations, deps):
    """schedule() on a fake clock: each notebook takes durations[stem]; returns {stem: (start, end, slot)}."""
    clock, log = [0.0], {}

    def start(stem, slot):
        log[stem] = (clock[0], clock[0] + durations[stem], slot)
        return log[stem][1]

    def wait(handles):
        clock[0] = min(handles.values())
        return {s: "ok" for s, end in handles.items() if end == clock[0]}

    results = run_notebooks.schedule(stems, jobs, start, wait, deps=deps)
    assert results == {s: "ok" for s in stems}
    return log


def test_schedule_runs_n_at_a_time_and_dependencies_first():
    deps = {"05": ["02"], "08": ["02"], "09": ["01", "02", "03", "04"]}
    stems = ["01", "02", "05", "06", "07", "08", "09"]
    durations = {"01": 1, "02": 10, "05": 2, "06": 3, "07": 3, "08": 4, "09": 1}
    log = simulate(stems, 2, durations, deps)
    events = sorted([(t0, +1) for t0, _, _ in log.values()] + [(t1, -1) for _, t1, _ in log.values()],
                    key=lambda e: (e[0], e[1]))
    running = [sum(d for _, d in events[:i + 1]) for i in range(len(events))]
    assert max(running) == 2  # never more than N at once
    for stem, needs in deps.items():
        assert all(log[stem][0] >= log[d][1] for d in needs if d in log)
    assert log["06"][0] == 1 and log["07"][0] == 4  # independent notebooks fill the slot while 02 runs
    assert all(slot in (0, 1) for *_, slot in log.values())
    # one job: the listed order, one after the other (what --jobs 1 does)
    log1 = simulate(stems, 1, durations, deps)
    assert sorted(stems, key=lambda s: log1[s][0]) == stems
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_notebooks.schedule(stems, 0, None, None)
    with pytest.raises(RuntimeError, match="wait on each other"):
        simulate(["a", "b"], 2, {"a": 1, "b": 1}, {"a": ["b"], "b": ["a"]})


def test_job_env_shares_gpus_and_threads():
    env = run_notebooks.job_env
    assert env(0, 4, gpus=[], cpu_count=16, environ={}) == {"RESONANCE_THREADS": "4", "OMP_NUM_THREADS": "4"}
    assert env(0, 3, gpus=[], cpu_count=2, environ={})["RESONANCE_THREADS"] == "1"  # never 0
    assert "RESONANCE_THREADS" not in env(0, 2, gpus=[], cpu_count=8, environ={"RESONANCE_THREADS": "1"})
    assert [env(s, 4, gpus=["0", "1"], cpu_count=8, environ={})["CUDA_VISIBLE_DEVICES"] for s in range(4)] == \
        ["0", "1", "0", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in env(1, 2, gpus=["0"], cpu_count=8, environ={})  # one GPU: shared


def fake_notebook(body: str) -> dict:
    cell = lambda src, tags=(): {"cell_type": "code", "execution_count": None, "id": f"c{abs(hash(src)) % 10**8}",
                                 "metadata": {"tags": list(tags)}, "outputs": [], "source": src}
    return {"cells": [cell('profile = ""', ["parameters"]), cell(body)], "metadata": {
        "kernelspec": {"name": "resonance", "display_name": "Python (resonance)", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}


def test_parallel_run_respects_dependencies_and_reports_a_failure(tmp_path):
    """Three tiny notebooks through the real CLI with --jobs 2: 02 fails, 05 (which reads 02) starts only after
    02 has finished, 01 runs beside 02 with half the threads, and the run exits 1 after all have finished."""
    root = tmp_path / "repo"
    writes = ('import json, os, time\nfrom pathlib import Path\nfig = Path(os.environ["RESONANCE_FIGURES_DIR"])\n'
              'fig.mkdir(parents=True, exist_ok=True)\n(fig / "{stem}.json").write_text(json.dumps('
              '{{"threads": os.environ.get("RESONANCE_THREADS"), "t": time.time()}}))\n')
    bodies = {"01_lucier_room": writes.format(stem="01_lucier_room"),
              # 02 writes its record (as 05 does, before its last cells), then fails: the runner removes it
              "02_mnist_chains": "import json, os, time\nfrom pathlib import Path\n"
                                 "rec = Path(os.environ['RESONANCE_DATA_DIR']) / 'records' / 'smoke'\n"
                                 "rec.mkdir(parents=True, exist_ok=True)\n(rec / '02_mnist_chains.json').write_text("
                                 "json.dumps({'run_id': os.environ['RESONANCE_RUN_ID']}))\n"
                                 "time.sleep(1)\nraise RuntimeError('boom in 02')\n",
              "05_drift_geometry": writes.format(stem="05_drift_geometry")}
    for stem, body in bodies.items():
        (root / "notebooks").mkdir(parents=True, exist_ok=True)
        (root / "notebooks" / f"{stem}.ipynb").write_text(json.dumps(fake_notebook(body)))
        (root / "params" / stem).mkdir(parents=True)
        (root / "params" / stem / "smoke.yaml").write_text("seed: 0\n")
    run_notebooks.ensure_kernel()
    env = {**os.environ, "RESONANCE_ROOT": str(root), "RESONANCE_FIGURES_DIR": str(tmp_path / "figures"),
           "RESONANCE_DATA_DIR": str(tmp_path / "data")}
    env.pop("RESONANCE_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "resonance_utils.run_notebooks", "--profile", "smoke", "--jobs", "2"],
                         capture_output=True, text=True, cwd=repo_root(), timeout=120, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED: 02_mnist_chains" in out.stderr and "boom in 02" in out.stdout
    lines = out.stdout.splitlines()
    at = lambda text: next(i for i, ln in enumerate(lines) if text in ln)
    assert at("02_mnist_chains failed") < at("05_drift_geometry ... started")
    assert at("01_lucier_room ... started") < at("02_mnist_chains failed")  # 01 ran beside 02
    figures = {s: json.loads((tmp_path / "figures" / f"{s}.json").read_text())
               for s in ("01_lucier_room", "05_drift_geometry")}
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert figures["01_lucier_room"]["threads"] == share and figures["05_drift_geometry"]["threads"] == share
    assert all(f["t"] > t0 for f in figures.values())
    assert (root / "build" / "smoke" / "02_mnist_chains.log").exists()
    assert not (tmp_path / "data" / "records" / "smoke" / "02_mnist_chains.json").exists(), \
        "a failed notebook's record of this run is removed: nothing reads a producer that did not finish"
    # the run ends by writing the results page, a failed notebook shown as such
    assert f"results page: {tmp_path / 'figures' / 'index.html'}" in out.stdout
    page = (tmp_path / "figures" / "index.html").read_text()
    assert 'href="notebooks/01_lucier_room.html"' in page and 'status failed">failed' in page

    # again: the two that ran are skipped without starting a process; only the failed one runs (and fails) again
    out = subprocess.run([sys.executable, "-m", "resonance_utils.run_notebooks", "--profile", "smoke", "--jobs", "2"],
                         capture_output=True, text=True, cwd=repo_root(), timeout=120, env=env)
    assert out.returncode == 1 and "FAILED: 02_mnist_chains" in out.stderr
    assert "01_lucier_room skipped" in out.stdout and "05_drift_geometry skipped" in out.stdout
    assert "01_lucier_room ... started" not in out.stdout and "05_drift_geometry ... started" not in out.stdout
    assert "02_mnist_chains ... started" in out.stdout


def test_jobs_must_be_positive():
    out = cli("--jobs", "0", "--list")
    assert out.returncode == 2 and "--jobs must be >= 1" in out.stderr
    out = cli("--jobs", "many", "--list")
    assert out.returncode == 2 and "--jobs must be a number or auto" in out.stderr and "'many'" in out.stderr


def test_auto_jobs_one_per_gpu_else_two_on_a_multicore_cpu():
    assert run_notebooks.auto_jobs(["0", "1", "2"], cpu_count=16) == 3
    assert run_notebooks.auto_jobs(["0"], cpu_count=16) == 1  # one GPU: the notebooks one after the other
    assert run_notebooks.auto_jobs([], cpu_count=2) == 2
    assert run_notebooks.auto_jobs([], cpu_count=64) == 2  # memory, not cores, bounds it: each holds its data
    assert run_notebooks.auto_jobs([], cpu_count=1) == 1
    # and two jobs on 2 cores get one thread each, so they do not fight over the cores
    assert all(run_notebooks.job_env(s, 2, gpus=[], cpu_count=2, environ={})["RESONANCE_THREADS"] == "1"
               for s in (0, 1))


def test_every_notebook_stores_the_outputs_its_check_cell_is_compared_with():
    """nbval compares a NBVAL_CHECK_OUTPUT cell with the outputs stored in the notebook: a notebook rebuilt or
    edited without `--refresh-checks` would have nothing to compare with."""
    import nbformat

    for stem in run_notebooks.list_notebooks():
        nb = nbformat.read(run_notebooks.notebooks_dir() / f"{stem}.ipynb", 4)
        checks = [c for c in nb.cells if c.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in c.source]
        assert checks, f"{stem} has no NBVAL_CHECK_OUTPUT cell"
        for c in checks:
            assert any(o.get("text") for o in c.outputs), f"{stem}: a check cell has no stored output"


def test_dependencies_follow_the_consumers_switches():
    quick = run_notebooks.resolved_dependencies("quick")
    assert "03_imagenet_chains" not in quick["09_claim"]  # quick has no ImageNet rows in the claim
    assert {"02_mnist_chains", "04_cyclegan_attractors"} <= set(quick["09_claim"])
    on = run_notebooks.resolved_dependencies("quick", {"09_claim": {"include_imagenet": True}})
    assert "03_imagenet_chains" in on["09_claim"]
    assert quick["08_mitigations"] == ["02_mnist_chains", "05_drift_geometry"]  # 05: its thresholds


def test_schedule_starts_what_others_wait_on_first():
    # 09 waits on 02 and 04, 05 on 03 and 04: with two slots, 04 (waited on by two) goes before 03 (by one), so
    # that 09 is not held up behind 03
    deps = {"05": ["03", "04"], "09": ["02", "04"]}
    stems = ["02", "03", "04", "05", "09"]
    durations = {"02": 10, "03": 6, "04": 4, "05": 1, "09": 8}
    log = simulate(stems, 2, durations, deps)
    assert log["04"][0] < log["03"][0]
    assert log["09"][0] == 10  # right after 02
    assert max(end for _, end, _ in log.values()) == 18


def test_measured_quick_durations_schedule_within_the_budget():
    # the per-notebook wall times of a measured quick run from empty caches (2 cores, one thread each):
    # with producers first and the widest consumers next, the two slots finish within 30 minutes
    durations = {"01_lucier_room": 18, "02_mnist_chains": 944, "03_imagenet_chains": 619,
                 "04_cyclegan_attractors": 383, "05_drift_geometry": 43, "06_recursive_diffusion": 49,
                 "07_coevolving_models": 44, "08_mitigations": 520, "09_claim": 839, "10_sweep": 121}
    log = simulate(list(durations), 2, durations, run_notebooks.resolved_dependencies("quick"))
    assert log["09_claim"][0] == log["02_mnist_chains"][1]  # the claim starts as soon as 02 is done
    assert max(end for _, end, _ in log.values()) < 30 * 60


def test_only_the_failed_runs_own_record_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("RESONANCE_DATA_DIR", str(tmp_path))
    from resonance_utils.records import record_path

    path = record_path("05_drift_geometry", "quick")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run_id": "05_drift_geometry-earlier"}))
    assert not run_notebooks.drop_unfinished_record("05_drift_geometry", "quick", "05_drift_geometry-now")
    assert path.exists(), "a finished earlier run's record stays"
    assert run_notebooks.drop_unfinished_record("05_drift_geometry", "quick", "05_drift_geometry-earlier")
    assert not path.exists()
    assert not run_notebooks.drop_unfinished_record("05_drift_geometry", "quick", "05_drift_geometry-earlier")
