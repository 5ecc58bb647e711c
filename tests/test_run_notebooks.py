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
