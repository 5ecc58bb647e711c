"""Fault injection: concurrent runs, damaged files, interrupts and degenerate inputs (issue 16).

Each test is one probe of the issue, with the behaviour it must have now:
- two runs of one chain and a reader: the first commit wins, the second run reads it, no partial folder is seen;
  a writer killed mid-generation is taken over, its temporary folder removed, finished generations untouched;
- commits are flushed (fsync) before the rename; every file of a generation is listed with size and sha256 and a
  damaged one (features, model, state) is a CacheError naming the file and the folders to delete;
- skip stamps are keyed by the figures and data folders (the Y/X/Y sequence reruns);
- a damaged manifest (truncated, random bytes) is moved aside and rebuilt from the per-notebook records;
- Ctrl-C (SIGINT) prints one line per notebook, exits 130, stops the kernels and leaves no temporary files;
  SIGKILL of the process group stops the kernel too;
- degenerate inputs (a 1-sample impulse response, one class, too few images per class, a chain too short to
  lock in) are named before any expensive work.
Tiny numpy chains and notebooks only: the module runs in well under two minutes on two cores.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from resonance_utils import chain, config, publish, run_notebooks, specs, store
from resonance_utils.store import repo_root


def lucier_spec(profile, **changes):
    return specs.build(specs.LucierSpec, config.load_config("01_lucier_room", profile, **changes))

PY = sys.executable


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([PY, "-c", "pass"])
    p.wait()
    return p.pid


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ------------------------------------------------------------------------------------ one writer per run folder
WRITER = textwrap.dedent('''
    import json, os, sys, time
    import numpy as np
    from resonance_utils import chain
    run_dir, tag, n, slow_gen = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    gate = sys.argv[5] if len(sys.argv) > 5 else ""

    def step(x, ctx):
        (ctx.out_dir / "model.bin").write_bytes(b"w" * 1000)   # a second file in every generation
        while gate and ctx.generation == 1 and not os.path.exists(gate):  # held here until the test says go
            time.sleep(0.02)
        time.sleep(30 if ctx.generation == slow_gen else 0.1)  # slow_gen: the generation it is killed in
        return 0.5 * x + ctx.rng.standard_normal(x.shape) + tag

    res = chain.run_chain(step, np.zeros(3), n, run_dir=run_dir, seed=1, progress=False)
    print(json.dumps({"computed": res.computed, "states": [s.tolist() for s in res.states]}))
''')

READER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    from resonance_utils import chain, store
    run_dir, stop = Path(sys.argv[1]), Path(sys.argv[2])
    reads = partial = 0
    while not stop.exists():
        for g in range(12):
            folder = chain.gen_dir(run_dir, g)
            if not (folder / "meta.json").exists():
                continue
            try:
                chain.read_generation(run_dir, g)   # every listed file present and intact
                reads += 1
            except Exception as e:
                if folder.exists():                  # gone between the listing and the read is not partial
                    partial += 1
                    print(repr(e), file=sys.stderr)
    print(json.dumps({"reads": reads, "partial": partial}))
''')


def reference_chain(n, tag=0.0):
    from resonance_utils.runtime import generation_rng

    xs = [np.zeros(3)]
    for g in range(1, n + 1):
        xs.append(0.5 * xs[-1] + generation_rng(1, g).standard_normal(3) + tag)
    return xs


def start(script: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([PY, str(script), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=repo_root())


def lock_held(run_dir: Path) -> bool:
    if not (run_dir / chain.LOCK).exists():
        return False
    with store.try_lock(run_dir / chain.LOCK) as got:
        return not got


def test_two_runs_of_one_chain_the_first_commit_wins_and_a_reader_never_sees_a_partial_folder(tmp_path):
    writer, reader = tmp_path / "writer.py", tmp_path / "reader.py"
    writer.write_text(WRITER)
    reader.write_text(READER)
    run_dir, stop, go = tmp_path / "run", tmp_path / "stop", tmp_path / "go"
    a = start(writer, run_dir, 0.0, 4, -1, go)  # the first run: generations 0-4, tagged 0, held in generation 1
    wait_for(lambda: list(run_dir.glob(".gen_001.tmp-*")), what="the first run to compute generation 1")
    b = start(writer, run_dir, 1000.0, 6, -1)  # the second run, longer; its own generations would carry +1000
    waiting = b.stderr.readline()  # it finds the lock held, says so, and waits
    r = start(reader, run_dir, stop)
    go.touch()
    out_a, err_a = a.communicate(timeout=60)
    out_b, err_b = b.communicate(timeout=60)
    err_b = waiting + err_b
    stop.touch()
    out_r, err_r = r.communicate(timeout=60)
    assert a.returncode == b.returncode == r.returncode == 0, err_a + err_b + err_r
    ra, rb, rr = json.loads(out_a), json.loads(out_b), json.loads(out_r)
    assert ra["computed"] == [0, 1, 2, 3, 4]
    assert "waiting for" in err_b and "another run is computing it" in err_b
    assert rb["computed"] == [5, 6], "the second run reads what the first committed and computes only the rest"
    assert rb["states"][:5] == ra["states"]
    np.testing.assert_allclose(np.array(ra["states"]), np.stack(reference_chain(4)))  # the first writer's values
    on_disk = [chain.read_generation(run_dir, g)[0].tolist() for g in range(7)]
    assert on_disk == rb["states"]
    assert rr["partial"] == 0 and rr["reads"] > 0, err_r
    writers = {chain.read_generation(run_dir, g)[1]["written_by"]["pid"] for g in range(5)}
    assert writers == {a.pid}


def test_a_writer_killed_mid_generation_is_taken_over_and_its_committed_generations_are_kept(tmp_path):
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    run_dir = tmp_path / "run"
    a = start(writer, run_dir, 0.0, 5, 3)  # hangs in generation 3
    tmp_gen = wait_for(lambda: list(run_dir.glob(".gen_003.tmp-*")), what="generation 3's temporary folder")
    assert tmp_gen[0].name.startswith(f".gen_003.tmp-{a.pid}-")
    mtimes = {g: (chain.gen_dir(run_dir, g) / "meta.json").stat().st_mtime_ns for g in range(3)}
    b = start(writer, run_dir, 0.0, 5, -1)
    time.sleep(1.0)
    assert b.poll() is None, "the second run waits while the first holds the lock"
    a.kill()
    a.wait()
    out_b, err_b = b.communicate(timeout=60)
    assert b.returncode == 0, err_b
    rb = json.loads(out_b)
    assert rb["computed"] == [3, 4, 5]
    np.testing.assert_array_equal(np.array(rb["states"]), np.stack(reference_chain(5)))  # bit-identical
    assert not list(run_dir.glob(".gen_*")), "the dead writer's temporary folder is removed"
    assert {g: (chain.gen_dir(run_dir, g) / "meta.json").stat().st_mtime_ns for g in range(3)} == mtimes


def test_a_killed_runs_temporary_generation_folder_is_removed_by_the_next_run_even_when_all_is_cached(tmp_path):
    chain.run_chain(lambda x, ctx: x + 1, np.zeros(2), 2, run_dir=tmp_path, progress=False)
    stale = tmp_path / f".gen_003.tmp-{dead_pid()}-0abc"
    stale.mkdir()
    (stale / "state.npz").write_bytes(b"half")
    res = chain.run_chain(lambda x, ctx: x + 1, np.zeros(2), 2, run_dir=tmp_path, progress=False)
    assert res.computed == [] and not stale.exists()


def test_two_writers_replacing_one_folder_never_collide(tmp_path):
    """The old atomic_path removed the folder, then renamed: two writers got ENOTEMPTY / FileNotFoundError. Now
    the replacement happens under a lock on the parent folder, and the name always holds one writer's whole
    folder. (Results that other runs read, chain generations, are never replaced: see the test above.)"""
    target, errors = tmp_path / "model", []

    def write(tag):
        try:
            for i in range(25):
                with store.atomic_path(target) as tmp:
                    tmp.mkdir()
                    for k in range(8):
                        (tmp / f"part{k}").write_text(f"{tag}{i}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no temporary or old folder is left"
    assert len({p.read_text() for p in target.iterdir()}) == 1 and len(list(target.iterdir())) == 8
    with pytest.raises(FileExistsError, match="already committed"):
        with store.atomic_path(target, replace=False) as tmp:
            tmp.mkdir()
    assert len(list(target.iterdir())) == 8 and [p.name for p in tmp_path.iterdir()] == ["model"]


# ------------------------------------------------------------------------------------------- durable commits
def test_every_file_of_a_generation_is_flushed_before_the_rename_that_commits_it(tmp_path, monkeypatch):
    events = []
    real_fsync, real_rename = store._fsync_fd, os.rename
    monkeypatch.setattr(store, "_fsync_fd", lambda path, flags: (events.append(("fsync", str(path))),
                                                                  real_fsync(path, flags))[1])
    monkeypatch.setattr(os, "rename", lambda a, b, **kw: (events.append(("rename", str(a), str(b))),
                                                          real_rename(a, b, **kw))[1])

    def step(x, ctx):
        (ctx.out_dir / "model").mkdir()
        (ctx.out_dir / "model" / "weights.bin").write_bytes(b"123")
        return x + 1

    chain.run_chain(step, np.zeros(2), 1, run_dir=tmp_path, progress=False)
    commit = next(i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(tmp_path / "gen_001"))
    tmp = events[commit][1]
    flushed = {e[1] for e in events[:commit] if e[0] == "fsync"}
    for rel in ("state.npz", "meta.json", "model/weights.bin", "model", ""):
        assert os.path.join(tmp, rel).rstrip("/") in flushed, f"{rel or 'the folder'} not flushed before the commit"
    assert ("fsync", str(tmp_path)) in events[commit:], "the run folder is flushed after the rename"


def metrics_writing_features(state, ctx):
    if ctx.out_dir is not None:
        np.save(ctx.out_dir / "features.npy", np.tile(state, (50, 1)))
        (ctx.out_dir / "model").mkdir(exist_ok=True)
        (ctx.out_dir / "model" / "weights.safetensors").write_bytes(b"x" * 4000)
    return {"mean": float(np.mean(state))}


def test_meta_lists_every_file_and_a_damaged_one_is_named_with_the_folder_to_delete(tmp_path):
    step = lambda x, ctx: x + 1  # noqa: E731
    chain.run_chain(step, np.zeros(4), 3, run_dir=tmp_path, metrics=metrics_writing_features, progress=False)
    files = store.read_json(tmp_path / "gen_002" / "meta.json")["files"]
    assert set(files) == {"state.npz", "features.npy", "model/weights.safetensors"}
    assert files["features.npy"]["size"] == (tmp_path / "gen_002" / "features.npy").stat().st_size
    assert len(files["features.npy"]["sha256"]) == 64

    feats = tmp_path / "gen_002" / "features.npy"
    feats.write_bytes(feats.read_bytes()[:100])  # truncated, as in the issue
    with pytest.raises(store.CacheError) as e:
        chain.run_chain(step, np.zeros(4), 3, run_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert "features.npy has 100 bytes" in msg and "truncated" in msg
    assert "Generations 0-1 are intact" in msg
    assert f"Fix: delete gen_002 and the later gen_003 (computed from it) in {tmp_path};" in msg
    # the one fix works: delete those folders, rerun, everything is back (no second error)
    shutil.rmtree(tmp_path / "gen_002"), shutil.rmtree(tmp_path / "gen_003")
    res = chain.run_chain(step, np.zeros(4), 3, run_dir=tmp_path, metrics=metrics_writing_features, progress=False)
    assert res.computed == [2, 3]

    model = tmp_path / "gen_001" / "model" / "weights.safetensors"
    model.write_bytes(b"y" * 4000)  # same size, other bytes
    with pytest.raises(store.CacheError, match=r"weights.safetensors has the right size but not the bytes.*"
                                               r"Generation 0 is intact.*"
                                               r"Fix: delete gen_001 and the later gen_002, gen_003"):
        chain.run_chain(step, np.zeros(4), 3, run_dir=tmp_path, progress=False)
    with pytest.raises(store.CacheError, match=r"generation 1 .*weights.safetensors"):
        chain.load_extra(tmp_path / "gen_001", "model/weights.safetensors", load=Path.read_bytes)


def test_an_old_meta_without_checksums_is_read_unverified(tmp_path):
    chain.run_chain(lambda x, ctx: x + 1, np.zeros(2), 2, run_dir=tmp_path, progress=False)
    for g in range(3):
        meta = store.read_json(tmp_path / f"gen_{g:03d}" / "meta.json")
        store.write_json(tmp_path / f"gen_{g:03d}" / "meta.json",
                         {k: meta[k] for k in ("generation", "seconds", "metrics")})
    res = chain.run_chain(lambda x, ctx: x + 1, np.zeros(2), 3, run_dir=tmp_path, progress=False)
    assert res.computed == [3] and res.states[2].tolist() == [2.0, 2.0]


def test_files_added_after_the_commit_are_recorded_and_checked(tmp_path):
    res = chain.run_chain(lambda x, ctx: x + 1, np.zeros(3), 1, run_dir=tmp_path, progress=False)
    folder = tmp_path / "gen_001"

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.arange(100.0))

    chain.save_extra(folder, "features_inception.npy", write)
    assert store.read_json(folder / "extras.json")["features_inception.npy"]["size"] > 800
    np.testing.assert_array_equal(chain.load_extra(folder, "features_inception.npy"), np.arange(100.0))
    path = folder / "features_inception.npy"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(store.CacheError, match=r"features_inception.npy has 200 bytes.*Fix: delete .*"
                                               r"features_inception.npy; it is recomputed"):
        chain.load_extra(folder, "features_inception.npy")
    # read back by the chain: a damaged extra is removed (it is derived, recomputed where it is needed) loudly
    with pytest.warns(chain.ChainWarning, match="features_inception.npy has 200 bytes.*removed"):
        again = chain.run_chain(lambda x, ctx: x + 1, np.zeros(3), 1, run_dir=tmp_path, progress=False)
    assert again.computed == [] and not path.exists() and "features_inception.npy" not in \
        store.read_json(folder / "extras.json")
    # a file without any record (older code) is read unverified; unreadable, it is reported with the fix
    (folder / "legacy.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(store.CacheError, match=r"legacy.npy cannot be read.*Fix: delete"):
        chain.load_extra(folder, "legacy.npy")
    assert res.run_dir == tmp_path


# --------------------------------------------------------------------------------------------------- manifest
def outputs_of(stem, figures):
    cfg = config.load_config("01_lucier_room", "smoke")
    out = publish.Outputs(cfg, data_source="test", stem=stem)
    out.numbers({"stem": stem})
    return out


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_manifest_is_moved_aside_and_rebuilt_from_the_notebooks_records(isolated_dirs, damage):
    figures = isolated_dirs / "figures"
    outputs_of("01_lucier_room", figures)
    outputs_of("07_coevolving_models", figures)
    manifest = figures / "MANIFEST.json"
    before = json.loads(manifest.read_text())
    assert set(before) == {"01_lucier_room.json", "07_coevolving_models.json"}
    raw = manifest.read_bytes()
    manifest.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else os.urandom(len(raw)))
    with pytest.warns(store.ManifestWarning, match=r"MANIFEST.json was damaged.*moved aside to "
                                                   r"MANIFEST.json.damaged-.*rebuilt"):
        out = publish.Outputs(config.load_config("01_lucier_room", "smoke"), data_source="test",
                            stem="02_mnist_chains")  # checked when a notebook starts, before its first figure
    assert json.loads(manifest.read_text()) == before, "repaired before any output is written"
    out.numbers({"stem": "02_mnist_chains"})
    after = json.loads(manifest.read_text())
    assert set(after) == {"01_lucier_room.json", "07_coevolving_models.json", "02_mnist_chains.json"}
    assert after["01_lucier_room.json"] == before["01_lucier_room.json"], "nothing that can be rebuilt is lost"
    assert len(list(figures.glob("MANIFEST.json.damaged-*"))) == 1
    assert out.run_id and after["02_mnist_chains.json"]["run_id"] == out.run_id


def test_the_driver_repairs_the_manifest_before_a_notebook_runs(isolated_dirs, capsys):
    figures = isolated_dirs / "figures"
    outputs_of("01_lucier_room", figures)
    (figures / "MANIFEST.json").write_bytes(b"\xff\xfe\x00garbage")
    run_notebooks.check_manifest_now("smoke")
    err = capsys.readouterr().err
    assert "warning:" in err and str(figures / "MANIFEST.json") in err
    assert "01_lucier_room.json" in json.loads((figures / "MANIFEST.json").read_text())


def test_a_legacy_manifest_is_copied_into_per_notebook_records(isolated_dirs):
    figures = isolated_dirs / "figures"
    figures.mkdir(parents=True)
    store.write_json(figures / "MANIFEST.json", {"old.png": {"notebook": "04_cyclegan_attractors", "created": "x"}})
    outputs_of("01_lucier_room", figures)
    assert "old.png" in store.read_json(figures / ".manifest" / "04_cyclegan_attractors.json")
    (figures / "MANIFEST.json").write_text("{")
    with pytest.warns(store.ManifestWarning):
        assert "old.png" in store.read_manifest(figures)


def test_a_long_failure_keeps_its_fix_on_the_console():
    msg = "CacheError: generation 1 in /x/gen_001 is damaged: " + "y" * 400 + ". Fix: delete /x/gen_001"
    e = RuntimeError("---\nTraceback (most recent call last):\n  ...\n\x1b[0;31m" + msg + "\x1b[0m\n")
    assert run_notebooks.failure_reason(e) == msg


# ------------------------------------------------------------------------------------ notebooks: a fake checkout
def fake_notebook(*bodies: str, params: str = "") -> dict:
    cell = lambda i, src, tags=(): {"cell_type": "code", "execution_count": None, "id": f"c{i}",  # noqa: E731
                                    "metadata": {"tags": list(tags)}, "outputs": [], "source": src}
    return {"cells": [cell(0, 'profile = ""\n' + params, ["parameters"])] + [cell(i + 1, b) for i, b in
                                                                            enumerate(bodies)],
            "metadata": {"kernelspec": {"name": "resonance", "display_name": "Python (resonance)",
                                        "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def fake_checkout(root: Path, notebooks: dict[str, tuple[str, str]]) -> Path:
    """root/notebooks/<stem>.ipynb and root/params/<stem>/smoke.yaml for {stem: (body, yaml)}."""
    for stem, (body, yaml) in notebooks.items():
        (root / "notebooks").mkdir(parents=True, exist_ok=True)
        params = "".join(f"{ln.split(':')[0]} = None\n" for ln in yaml.splitlines() if ":" in ln)
        (root / "notebooks" / f"{stem}.ipynb").write_text(json.dumps(fake_notebook(body, params=params)))
        (root / "params" / stem).mkdir(parents=True, exist_ok=True)
        (root / "params" / stem / "smoke.yaml").write_text(yaml)
    return root


PROBE = textwrap.dedent('''
    from resonance_utils import config, publish, store
    cfg = config.resolve("{stem}", globals())
    out = publish.Outputs(cfg, data_source="probe")
    out.numbers({{"n_iterations": cfg.n_iterations}})
''')


def test_skip_stamps_follow_the_figures_and_data_folders_y_x_y(tmp_path, monkeypatch):
    """The issue's sequence: -p n_iterations=30 into Y, plainly into X, plainly into Y: the third run must run
    (the stamp said 'unchanged' while Y held the n_iterations=30 outputs); a new data folder never skips."""
    stem = "01_lucier_room"  # its parameter class, a probe's body and YAML
    root = fake_checkout(tmp_path / "repo", {stem: (PROBE.format(stem=stem), "n_iterations: 60\n")})
    monkeypatch.setenv("RESONANCE_ROOT", str(root))
    run_notebooks.ensure_kernel()
    y, x = tmp_path / "Y", tmp_path / "X"
    thirty = config.check_overrides(stem, "smoke", ["n_iterations=30"])
    numbers = lambda d: json.loads((d / f"{stem}.json").read_text())["n_iterations"]  # noqa: E731

    monkeypatch.setenv("RESONANCE_FIGURES_DIR", str(y))
    assert run_notebooks.run_one(stem, "smoke", thirty, force=False)[0] == "ran" and numbers(y) == 30
    monkeypatch.setenv("RESONANCE_FIGURES_DIR", str(x))
    assert run_notebooks.run_one(stem, "smoke", {}, force=False)[0] == "ran" and numbers(x) == 60
    monkeypatch.setenv("RESONANCE_FIGURES_DIR", str(y))
    assert f"wrote to the figures folder {x}, not {y}" in run_notebooks.stale_reason(stem, "smoke", {})
    assert run_notebooks.run_one(stem, "smoke", {}, force=False)[0] == "ran" and numbers(y) == 60
    assert run_notebooks.run_one(stem, "smoke", {}, force=False)[0] == "skipped"
    # the same inputs and figures folder, but X's outputs were written by the run before: X is not skipped
    monkeypatch.setenv("RESONANCE_FIGURES_DIR", str(x))
    assert "not " + str(x) in run_notebooks.stale_reason(stem, "smoke", {})
    monkeypatch.setenv("RESONANCE_FIGURES_DIR", str(y))
    monkeypatch.setenv("RESONANCE_DATA_DIR", str(tmp_path / "new-empty-data"))
    assert "data folder" in run_notebooks.stale_reason(stem, "smoke", {})
    monkeypatch.setenv("RESONANCE_DATA_DIR", str(tmp_path / "data"))
    # outputs rewritten by another run (same bytes or not) since the stamp: rerun
    rec = json.loads((y / "MANIFEST.json").read_text())[f"{stem}.json"]
    assert rec["run_id"] == json.loads(run_notebooks.stamp_path(stem, "smoke").read_text())["run_id"]
    (y / f"{stem}.json").write_text('{"n_iterations": 30}')
    assert "rewritten" in run_notebooks.stale_reason(stem, "smoke", {})


SLEEPER = textwrap.dedent('''
    import os, time
    from pathlib import Path
    beat = Path(os.environ["PROBE_DIR"]) / "{stem}.beat"
    (Path(os.environ["PROBE_DIR"]) / "{stem}.pid").write_text(str(os.getpid()))
    for _ in range(1200):   # keeps writing, as a chain does, for two minutes
        beat.write_text(str(time.time()))
        time.sleep(0.1)
''')
QUICK = "x = 1\n"


def alive(pid: int) -> bool:
    return store.process_alive(pid)


def cli_in_own_group(root: Path, tmp_path: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "RESONANCE_ROOT": str(root), "RESONANCE_FIGURES_DIR": str(tmp_path / "figures"),
           "TMPDIR": str(tmp_path / "tmp"), "PROBE_DIR": str(tmp_path)}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen([PY, "-m", "resonance_utils.run_notebooks", "--profile", "smoke", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo_root(), env=env,
                            start_new_session=True)


def leftovers(root: Path, tmp_path: Path) -> list[str]:
    """Files left in the (private) system temp folder and in the run's private folders of build/."""
    found = [str(p) for p in (tmp_path / "tmp").rglob("*")]
    for kind in (".runtime", ".jobs"):
        found += [str(p) for p in (root / "build" / "smoke" / kind).rglob("*") if p.is_file()]
    return found


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_reports_every_notebook_exits_130_and_stops_the_kernels(tmp_path, jobs):
    """--jobs 1: 01 interrupted, 02 not started. --jobs 2: 01 finished, 02 interrupted in its kernel, 03
    interrupted (started after 01), 04 not started. No traceback, exit 130, no kernel left, no temp file."""
    if jobs == "1":
        stems = {"01_sleep": SLEEPER.format(stem="01_sleep"), "02_quick": QUICK}
        sleeper, want = "01_sleep", {"01_sleep": "interrupted", "02_quick": "not started"}
    else:
        stems = {"01_quick": QUICK, "02_sleep": SLEEPER.format(stem="02_sleep"),
                 "03_sleep": SLEEPER.format(stem="03_sleep"), "04_quick": QUICK}
        sleeper, want = "02_sleep", {"01_quick": "finished (ran", "02_sleep": "interrupted",
                                     "03_sleep": "interrupted", "04_quick": "not started"}
    root = fake_checkout(tmp_path / "repo", {s: (b, "seed: 0\n") for s, b in stems.items()})
    run_notebooks.ensure_kernel()
    proc = cli_in_own_group(root, tmp_path, "--jobs", jobs)
    seen = []
    if jobs == "2":  # 01 has finished and 03 has started in its place
        while not seen or "03_sleep ... started" not in seen[-1]:
            seen.append(proc.stdout.readline())
            assert seen[-1], "".join(seen)
    pid_file = tmp_path / f"{sleeper}.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60, what=f"{sleeper}'s kernel")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, err = proc.communicate(timeout=40)
    out = "".join(seen) + out
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  0") and "..." not in ln}
    for stem, status in want.items():
        assert status in lines[stem], out
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="the kernels to stop")
    assert leftovers(root, tmp_path) == []


def test_sigkill_of_the_process_group_stops_the_kernel_too(tmp_path, monkeypatch):
    root = fake_checkout(tmp_path / "repo", {"01_sleep": (SLEEPER.format(stem="01_sleep"), "seed: 0\n")})
    run_notebooks.ensure_kernel()
    proc = cli_in_own_group(root, tmp_path, "--jobs", "1")
    pid = int(wait_for(lambda: (tmp_path / "01_sleep.pid").exists() and (tmp_path / "01_sleep.pid").read_text(),
                       timeout=60, what="the kernel"))
    os.killpg(proc.pid, signal.SIGKILL)  # the kernel is in its own session: only its parent's death reaches it
    proc.communicate(timeout=20)
    wait_for(lambda: not alive(pid), timeout=5, what="the kernel to die with its parent")
    beat = tmp_path / "01_sleep.beat"
    last = beat.read_text()
    time.sleep(0.5)
    assert beat.read_text() == last, "nothing writes after the kill"
    assert leftovers(root, tmp_path), "a killed driver cannot clean up its kernel's connection file ..."
    monkeypatch.setenv("RESONANCE_ROOT", str(root))
    for kind in (".runtime", ".jobs"):
        run_notebooks._private_dir("smoke", kind).rmdir()  # what the next run does first
    assert leftovers(root, tmp_path) == [], "... the next run removes it"


# ---------------------------------------------------------------------------------------- degenerate inputs
def test_an_impulse_response_shorter_than_the_minimum_is_an_error_before_any_pass(tmp_path):
    import soundfile as sf

    from resonance_utils import audio

    rir = tmp_path / "ir.wav"
    sf.write(rir, np.array([0.9], np.float32), 8000)
    cfg = lucier_spec("smoke", rir_path=str(rir))
    with pytest.raises(ValueError, match=r"rir_path: .*ir.wav holds 1 sample.*at least 10 ms \(80 samples\)"):
        audio.run_lucier(cfg, progress=False)
    assert not (store.data_dir() / "runs").exists(), "stopped before a run folder was made"


def test_a_chain_too_short_to_lock_in_is_a_loud_warning_before_it_runs(monkeypatch):
    from resonance_utils import audio

    cfg = lucier_spec("smoke", n_iterations=10, voice_seconds=0.5)
    calls = []
    monkeypatch.setattr(chain, "run_chain", lambda *a, **k: calls.append(1))
    with pytest.warns(audio.LockInWarning, match=r"n_iterations=10 .*not to lock .*Raise n_iterations to at least"):
        audio.run_lucier(cfg, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", audio.LockInWarning)  # the smoke profile's own length does lock in
        audio.run_lucier(lucier_spec("smoke"), progress=False)


def image_folder(root: Path, classes: dict[str, int], *, garbage: bool = False) -> Path:
    from PIL import Image

    for name, n in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            if garbage:  # undecodable: only an error that comes before decoding can be raised
                (root / name / f"{i}.png").write_bytes(b"not an image")
            else:
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


def test_one_class_and_too_few_images_per_class_are_named_before_any_image_is_decoded(tmp_path):
    from resonance_utils import data

    one = image_folder(tmp_path / "one", {"dogs": 12}, garbage=True)
    with pytest.raises(ValueError, match=r"has only one class \(dogs\).*need at least two classes"):
        data.load_imagenet5(one, resolution=8, n_per_class=0)
    few = image_folder(tmp_path / "few", {"cats": 2, "dogs": 9}, garbage=True)
    with pytest.raises(ValueError, match=r"samples_per_generation=10 needs 5 images of every class.*cats has 2"):
        data.load_imagenet5(few, resolution=8, n_per_class=0, samples_per_generation=10)
    with pytest.raises(ValueError, match=r"does not split evenly over the 2 classes"):
        data.load_imagenet5(few, resolution=8, n_per_class=0, samples_per_generation=7)
    with pytest.raises(ValueError, match=r"needs 5 images.*n_per_class=3 caps each class"):
        data.load_imagenet5(few, resolution=8, n_per_class=3, samples_per_generation=10)
    ok = image_folder(tmp_path / "ok", {"cats": 5, "dogs": 5})
    assert len(data.load_imagenet5(ok, resolution=8, n_per_class=0, samples_per_generation=10)) == 10
    with pytest.raises(ValueError, match="needs 7 images of every class of the ImageNet-5 stand-in"):
        data.load_imagenet5("", resolution=8, n_per_class=6, samples_per_generation=35)
