import json
import os

import numpy as np
import pytest

from resonance_utils import config, publish, store


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"], "no temporary file may be left behind"


def test_atomic_path_replaces_folders_whole(tmp_path):
    target = tmp_path / "gen_001"
    with store.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("1")
    with store.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "y").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["y"]


def test_run_key_depends_on_params_input_and_source():
    base = store.run_key({"a": 1}, "fp", source_hash="s")
    assert base == store.run_key({"a": 1}, "fp", source_hash="s")
    assert base != store.run_key({"a": 2}, "fp", source_hash="s")
    assert base != store.run_key({"a": 1}, "fp2", source_hash="s")
    assert base != store.run_key({"a": 1}, "fp", source_hash="t")
    d = store.run_dir("lucier", {"a": 1}, "fp")
    assert d.parent.name == "lucier" and json.loads((d / "run.json").read_text())["params"] == {"a": 1}


def test_fingerprints(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    import hashlib
    assert store.file_fingerprint(p) == hashlib.sha256(b"abc").hexdigest()[:16]
    a = np.arange(6)
    assert store.array_fingerprint(a) != store.array_fingerprint(a.reshape(2, 3))
    assert store.array_fingerprint(a) != store.array_fingerprint(a.astype(np.int32))


def test_corrupt_json_is_a_cache_error_naming_the_file(tmp_path):
    p = tmp_path / "meta.json"
    p.write_text("{not json")
    with pytest.raises(store.CacheError, match="meta.json"):
        store.read_json(p)
    with pytest.raises(FileNotFoundError):
        store.read_json(tmp_path / "missing.json")


def test_outputs_write_files_and_the_manifest(isolated_dirs):
    import matplotlib.pyplot as plt
    import pandas as pd

    cfg = config.load_config("01_lucier_room", "smoke")
    out = publish.Outputs(cfg, data_source="synthetic test", feature_network="none")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    out.figure(fig, "demo", caption="A test line.")
    out.table(pd.DataFrame({"setting": ["a|b"], "value": [0.123456]}), "demo_table")
    out.numbers({"x": np.float64(1.5), "ys": np.arange(3)})
    out.audio(np.sin(np.arange(800) / 5), 8000, "tone")
    figs = isolated_dirs / "figures"
    for name in ["demo.png", "demo.pdf", "demo_table.csv", "demo_table.md", "01_lucier_room.json", "audio/tone.wav"]:
        assert (figs / name).exists(), name
    manifest = json.loads((figs / "MANIFEST.json").read_text())
    assert set(manifest) == {"demo.png", "demo.pdf", "demo_table.csv", "demo_table.md", "01_lucier_room.json",
                             "audio/tone.wav"}
    rec = manifest["demo.png"]
    assert rec["profile"] == "smoke" and rec["data_source"] == "synthetic test" and rec["params"]["n_iterations"]
    assert {"git_commit", "device", "wall_time_s", "feature_network", "notebook"} <= set(rec)
    assert rec["caption"] == "A test line." and rec["layout_problems"] == []
    assert json.loads((figs / "01_lucier_room.json").read_text())["ys"] == [0, 1, 2]
    md = (figs / "demo_table.md").read_text()
    assert "| a\\|b | 0.1235 |" in md
    assert any(t.get_gid() == "resonance-stamp" and "profile smoke" in t.get_text() for t in fig.texts)


def test_smoke_outputs_never_land_in_the_real_figures(monkeypatch):
    monkeypatch.delenv("RESONANCE_FIGURES_DIR")
    assert store.figures_dir("smoke") != store.figures_dir("quick") == store.repo_root() / "figures"


def test_source_hash_can_follow_only_named_modules():
    assert store.package_source_hash(("chain", "audio")) == store.package_source_hash(("chain", "audio"))
    assert store.package_source_hash(("chain", "audio")) != store.package_source_hash(("chain",))
    assert store.package_source_hash(("chain",)) != store.package_source_hash()
    with pytest.raises(ValueError, match="no module 'nothing'"):
        store.package_source_hash(("nothing",))


def test_stale_temporaries_of_dead_writers_go_and_live_ones_stay(tmp_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead = tmp_path / f".a.txt.tmp-{p.pid}-00ff"
    live = tmp_path / f".a.txt.tmp-{os.getppid()}-00ff"  # pytest's parent: alive while the test runs
    other = tmp_path / f".b.txt.tmp-{p.pid}-00ff"
    for f in (dead, live, other):
        f.write_text("half")
    with store.atomic_path(tmp_path / "a.txt") as tmp:  # a write of a.txt clears a.txt's dead leftovers only
        tmp.write_text("new")
    assert not dead.exists() and live.exists() and other.exists()
    assert store.remove_stale_temporaries(tmp_path) == [other]


def test_a_lock_held_elsewhere_is_waited_for_and_can_time_out(tmp_path):
    import subprocess
    import sys

    path = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from resonance_utils import store\n"
                               f"with store.lock({str(path)!r}):\n    print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True, cwd=store.repo_root())
    assert holder.stdout.readline().strip() == "held"
    said = []
    with pytest.raises(store.LockTimeout, match=r"still held by pid \d+"):
        with store.lock(path, what="the test chain", timeout=0.3, notify=said.append):
            pass
    assert said and said[0].startswith("waiting for the test chain: held by pid")
    holder.kill()  # a holder that dies releases its lock: the next one takes over at once
    holder.wait()
    with store.lock(path, timeout=5):
        assert f"pid {os.getpid()}" in path.read_text()
