"""Measured run times: the driver's record build/<profile>/last_run.json (run_notebooks.write_run_times, written by
every finished run, sequential or parallel, success or failure, never by an interrupted one), and the README block
that benchmarks/run.py --runtimes-readme renders from it (only that block changes)."""
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from resonance_utils import run_notebooks
from resonance_utils.store import repo_root

FIELDS = {"profile", "finished", "wall_s", "jobs", "cpu", "gpu", "git_commit", "selected", "all_notebooks", "force",
          "notebooks"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_run_times", repo_root() / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """A checkout with two notebooks (01_fake_ok, 02_fake_fail) and no GPU, as RESONANCE_ROOT."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for stem in ("01_fake_ok", "02_fake_fail"):
        (root / "notebooks" / f"{stem}.ipynb").write_text("{}")
    monkeypatch.setenv("RESONANCE_ROOT", str(root))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return root


def fake_notebook(body: str) -> dict:
    cell = lambda src, tags=(): {"cell_type": "code", "execution_count": None, "id": f"c{len(src)}{len(tags)}",
                                 "metadata": {"tags": list(tags)}, "outputs": [], "source": src}
    return {"cells": [cell('profile = ""', ["parameters"]), cell(body)], "metadata": {
        "kernelspec": {"name": "resonance", "display_name": "Python (resonance)", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}


# ------------------------------------------------------------------------------------------------ the record
def test_write_run_times_records_every_field(fake_root):
    results = {"01_fake_ok": ("ran", 12.345, "executed notebook: x"), "02_fake_fail": ("failed", 3.0, "boom")}
    path = run_notebooks.write_run_times("quick", ["01_fake_ok", "02_fake_fail"], results, 15.55, jobs=2,
                                         force=True)
    assert path == fake_root / "build" / "quick" / "last_run.json"
    # atomic: no temporary left; a run of every notebook is kept apart too
    assert sorted(p.name for p in path.parent.iterdir()) == ["last_full_run.json", "last_run.json"]
    rec = json.loads(path.read_text())
    assert set(rec) == FIELDS
    assert rec["profile"] == "quick" and rec["wall_s"] == 15.6 and rec["jobs"] == 2 and rec["force"] is True
    assert rec["selected"] == ["01_fake_ok", "02_fake_fail"] and rec["all_notebooks"] is True
    assert rec["notebooks"] == {"01_fake_ok": {"status": "ran", "seconds": 12.3},
                                "02_fake_fail": {"status": "failed", "seconds": 3.0}}
    assert dt.datetime.fromisoformat(rec["finished"]).tzinfo is not None
    assert rec["cpu"].endswith(f", {os.cpu_count()} cores") and rec["gpu"] is None
    assert rec["git_commit"]

    # a run of some notebooks only replaces the record, marked as not of every notebook
    rec = json.loads(run_notebooks.write_run_times("quick", ["01_fake_ok"], {"01_fake_ok": run_notebooks.SKIPPED},
                                                   0.4, jobs=1, force=False).read_text())
    assert rec["all_notebooks"] is False and rec["notebooks"] == {"01_fake_ok": {"status": "skipped", "seconds": 0.0}}
    full = json.loads((path.parent / "last_full_run.json").read_text())
    assert full["all_notebooks"] is True and full["wall_s"] == 15.6, "the partial run left the full run's record"


def cli(root, *args):
    env = {**os.environ, "RESONANCE_ROOT": str(root), "RESONANCE_FIGURES_DIR": str(root / "figures"),
           "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "resonance_utils.run_notebooks", "--profile", "smoke", *args],
                          capture_output=True, text=True, cwd=repo_root(), timeout=180, env=env)


def test_the_driver_writes_the_record_when_a_run_finishes_not_when_interrupted(tmp_path):
    """Through the real CLI with tiny notebooks: an interrupted run writes nothing; a sequential run with a failure
    and a parallel run (one skipped, one failed) each write the record; --only marks it partial."""
    root = tmp_path / "repo"
    nbs = root / "notebooks"
    nbs.mkdir(parents=True)
    writes = ('import json, os\nfrom pathlib import Path\nfig = Path(os.environ["RESONANCE_FIGURES_DIR"])\n'
              'fig.mkdir(parents=True, exist_ok=True)\n(fig / "01_fake_ok.json").write_text(json.dumps({"ok": 1}))\n')
    (nbs / "01_fake_ok.ipynb").write_text(json.dumps(fake_notebook(writes)))
    (nbs / "02_fake_fail.ipynb").write_text(json.dumps(fake_notebook(
        "import os, signal, time\nos.kill(os.getppid(), signal.SIGINT)\ntime.sleep(60)\n")))
    run_notebooks.ensure_kernel()
    record = root / "build" / "smoke" / "last_run.json"

    out = cli(root, "--jobs", "1", "--force")  # 02's kernel interrupts the driver, its parent
    assert out.returncode == 130, out.stdout + out.stderr
    assert "interrupted" in out.stdout and not record.exists()

    (nbs / "02_fake_fail.ipynb").write_text(json.dumps(fake_notebook("raise RuntimeError('boom in 02')\n")))
    out = cli(root, "--jobs", "1", "--force")
    assert out.returncode == 1 and "FAILED: 02_fake_fail" in out.stderr, out.stdout + out.stderr
    rec = json.loads(record.read_text())
    assert set(rec) == FIELDS and rec["profile"] == "smoke" and rec["jobs"] == 1 and rec["force"] is True
    assert rec["all_notebooks"] is True and rec["selected"] == ["01_fake_ok", "02_fake_fail"]
    assert {s: v["status"] for s, v in rec["notebooks"].items()} == {"01_fake_ok": "ran", "02_fake_fail": "failed"}
    assert rec["notebooks"]["01_fake_ok"]["seconds"] > 0
    assert rec["wall_s"] >= rec["notebooks"]["01_fake_ok"]["seconds"] + rec["notebooks"]["02_fake_fail"]["seconds"]
    first = rec["finished"]

    out = cli(root, "--jobs", "2")  # the parallel path: 01 is skipped, 02 runs (and fails) in a worker
    assert out.returncode == 1 and "01_fake_ok skipped" in out.stdout, out.stdout + out.stderr
    rec = json.loads(record.read_text())
    assert {s: v["status"] for s, v in rec["notebooks"].items()} == {"01_fake_ok": "skipped",
                                                                      "02_fake_fail": "failed"}
    assert rec["jobs"] == 1 and rec["force"] is False and rec["all_notebooks"] is True and rec["finished"] >= first

    out = cli(root, "--only", "01")
    assert out.returncode == 0, out.stdout + out.stderr
    rec = json.loads(record.read_text())
    assert rec["all_notebooks"] is False and rec["selected"] == ["01_fake_ok"]


# ------------------------------------------------------------------------------------------------ the README block
def record(**kw) -> dict:
    rec = {"profile": "quick", "finished": "2026-12-02T10:11:12+00:00", "wall_s": 1922.4, "jobs": 2,
           "cpu": "Intel(R) Xeon(R) Processor, 2 cores", "gpu": None, "git_commit": "0123456789abcdef0123+dirty",
           "selected": ["01_a", "02_b"], "all_notebooks": True, "force": True,
           "notebooks": {"01_a": {"status": "ran", "seconds": 18.2}, "02_b": {"status": "ran", "seconds": 944.0}}}
    return rec | kw


def put(root, profile, rec):
    path = root / "build" / profile / "last_run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rec if isinstance(rec, str) else json.dumps(rec))


def test_duration_format(bench):
    assert [bench.duration(s) for s in (0.42, 18.2, 59.6, 944, 1922.4, 7500)] == [
        "0.4 s", "18 s", "1 min 0 s", "15 min 44 s", "32 min 2 s", "2 h 5 min"]


def test_the_block_says_not_measured_without_a_full_run(bench, fake_root):
    assert bench.run_time_records() == ({}, [])
    text = bench.runtimes_table(*bench.run_time_records())
    assert text.startswith("Not measured yet: run `./run_all.sh`") and "--runtimes-readme" in text
    put(fake_root, "quick", record(all_notebooks=False, selected=["02_b"]))
    put(fake_root, "paper", "{not json")
    records, notes = bench.run_time_records()
    assert records == {} and len(notes) == 2
    text = bench.runtimes_table(records, notes)
    assert "Not measured yet" in text and "(Left out: quick, whose last run" in text and "02_b only." in text
    assert "paper, build/paper/last_run.json is unreadable" in text and "|" not in text
    assert len(text.splitlines()) == 2  # the message and one line of notes


def test_the_block_has_one_row_per_profile_formatted_from_the_records(bench, fake_root):
    put(fake_root, "quick", record())
    put(fake_root, "smoke", record(profile="smoke", force=False, jobs=1, wall_s=2.04, gpu="cuda:NVIDIA H200",
                                   notebooks={"01_a": {"status": "skipped", "seconds": 0.0},
                                              "02_b": {"status": "failed", "seconds": 3.25}}))
    records, notes = bench.run_time_records()
    assert list(records) == ["smoke", "quick"] and notes == []
    lines = bench.runtimes_table(records, notes).splitlines()
    assert lines[0].startswith("| profile | total |") and len(lines) == 4
    assert lines[2] == ("| smoke | 2.0 s | 1 skipped, 1 failed | 1 | 01 0.0 s (skipped), 02 3.2 s (failed) | "
                        "2026-12-02 | Intel(R) Xeon(R) Processor, 2 cores; cuda:NVIDIA H200 | 0123456789ab+dirty |")
    assert lines[3] == ("| quick | 32 min 2 s | all 2 ran (`--force`) | 2 | 01 18 s, 02 15 min 44 s | 2026-12-02 | "
                        "Intel(R) Xeon(R) Processor, 2 cores | 0123456789ab+dirty |")


def test_a_record_written_by_the_driver_renders(bench, fake_root):
    results = {"01_fake_ok": ("ran", 65.0, ""), "02_fake_fail": ("ran", 5.0, "")}
    run_notebooks.write_run_times("paper", list(results), results, 71.0, jobs=2, force=True)
    records, _ = bench.run_time_records()
    row = bench.runtimes_table(records).splitlines()[2]
    assert row.startswith("| paper | 1 min 11 s | all 2 ran (`--force`) | 2 | 01 1 min 5 s, 02 5.0 s | ")


README = """# title

intro
<!-- runtimes:start -->
old run times, typed by hand
<!-- runtimes:end -->
middle
<!-- benchmarks:start -->
benchmark table
<!-- benchmarks:end -->
tail
"""


def test_runtimes_readme_rewrites_only_its_block(bench, fake_root, tmp_path):
    put(fake_root, "quick", record())
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert bench.main(["--runtimes-readme", str(readme)]) == 0  # no benchmark runs: seconds
    text = readme.read_text()
    head, tail = README.split("<!-- runtimes:start -->")[0], README.split("<!-- runtimes:end -->")[1]
    assert text.startswith(head) and text.endswith(tail) and "typed by hand" not in text
    block = text[len(head):len(text) - len(tail)]
    assert block.startswith(bench.RT_START) and block.endswith(bench.RT_END)
    assert "| quick | 32 min 2 s |" in block and "`python -m benchmarks.run --runtimes-readme`" in block
    bench.update_runtimes_readme(readme)
    assert readme.read_text() == text  # again: the same block, not a second one
    assert not (tmp_path / "results.json").exists()


def test_runtimes_readme_without_markers_is_an_error(bench, fake_root, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="runtimes:start"):
        bench.update_runtimes_readme(readme)
    assert bench.main(["--runtimes-readme", str(readme)]) == 2 and readme.read_text() == "# no markers\n"


def test_the_readme_has_both_generated_blocks_once(bench):
    text = (repo_root() / "README.md").read_text()
    for marker in (bench.START, bench.END, bench.RT_START, bench.RT_END):
        assert text.count(marker) == 1, marker
    assert text.index(bench.RT_START) < text.index(bench.RT_END)
    block = text[text.index(bench.RT_START):text.index(bench.RT_END)]
    assert "python -m benchmarks.run --runtimes-readme" in block
