"""Each clone runs in its own environment: papermill's kernel is the interpreter that runs it, and the Jupyter
kernels set-up registers are the clone's own (run_notebooks.ensure_kernel)."""
import json
import sys

from jupyter_client.kernelspec import KernelSpecManager

from resonance_utils import run_notebooks


def _argv0(path):
    return json.loads(path.read_text())["argv"][0]


def test_two_clones_register_two_kernels_and_neither_repoints_the_other(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user"))
    shared = tmp_path / "user" / "kernels" / "resonance"  # what set-up registered before: one for every clone
    shared.mkdir(parents=True)
    (shared / "kernel.json").write_text(json.dumps({"argv": ["/elsewhere/python"], "display_name": "x",
                                                    "language": "python"}))
    clones = {c: dict(root=tmp_path / c, executable=f"/{c}/.venv/bin/python", prefix=tmp_path / c / ".venv")
              for c in ("clone_a", "clone_b")}
    names = {c: run_notebooks.ensure_kernel(**kw) for c, kw in clones.items()}
    assert names["clone_a"] != names["clone_b"] and not shared.exists()

    def registered():
        user = KernelSpecManager()  # the per-user folder ($JUPYTER_DATA_DIR here)
        specs = {n: user.get_kernel_spec(n) for n in names.values()}
        env = {c: _argv0(kw["prefix"] / "share/jupyter/kernels/resonance/kernel.json") for c, kw in clones.items()}
        return {n: (s.argv[0], s.display_name) for n, s in specs.items()}, env

    users, envs = registered()
    for c, kw in clones.items():
        assert users[names[c]] == (kw["executable"], f"Python (resonance: {kw['root'].resolve()})")
        assert envs[c] == kw["executable"]
    # set-up run again in either clone (a new interpreter there): the other clone's kernels are untouched
    run_notebooks.ensure_kernel(**(clones["clone_a"] | {"executable": "/clone_a/new/python"}))
    run_notebooks.ensure_kernel(**clones["clone_b"])
    users2, envs2 = registered()
    assert users2[names["clone_b"]] == users[names["clone_b"]] and envs2["clone_b"] == envs["clone_b"]
    assert users2[names["clone_a"]][0] == envs2["clone_a"] == "/clone_a/new/python"


def test_papermill_runs_the_interpreter_that_runs_it_whatever_is_registered(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user"))
    other = tmp_path / "user" / "kernels" / run_notebooks.KERNEL
    other.mkdir(parents=True)
    (other / "kernel.json").write_text(json.dumps({"argv": ["/another/clone/python", "-m", "ipykernel_launcher",
                                                            "-f", "{connection_file}"],
                                                   "display_name": "x", "language": "python"}))
    km = run_notebooks.kernel_manager_class()(kernel_name=run_notebooks.KERNEL)
    assert km.kernel_spec.argv[0] == sys.executable
