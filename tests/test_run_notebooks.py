"""run_all.sh's driver: selection, parameter checks before anything runs, and skipping unchanged notebooks."""
import subprocess
import sys

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


def test_inputs_hash_follows_the_parameters_of_chains_a_notebook_reads(tmp_path, monkeypatch):
    """05 reads 02's chains: editing 02's YAML must rerun 05, not skip it with stale figures."""
    import shutil

    from resonance_utils import config

    root = tmp_path / "repo"
    shutil.copytree(config.params_dir(), root / "params")
    shutil.copytree(run_notebooks.notebooks_dir(), root / "notebooks")
    monkeypatch.setenv("RESONANCE_ROOT", str(root))
    before = run_notebooks.inputs_hash("05_drift_geometry", "quick", {})
    yml = root / "params" / "02_mnist_chains" / "quick.yaml"
    yml.write_text(yml.read_text().replace("n_generations: 5", "n_generations: 6"))
    assert run_notebooks.inputs_hash("05_drift_geometry", "quick", {}) != before


def test_second_run_skips_and_force_reruns(tmp_path, monkeypatch):
    """One real papermill execution (smoke, a few passes), then a skip, then a failure that names its log."""
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
