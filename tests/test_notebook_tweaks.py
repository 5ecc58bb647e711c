"""A notebook saved from JupyterLab is caught and said plainly (run_notebooks.saved_tweaks), in run_all.sh and
before nbval; the committed notebooks are as the repository keeps them."""
import shutil
import subprocess
import sys

import nbformat
import pytest

from resonance_utils import run_notebooks


def test_the_committed_notebooks_carry_no_tweak():
    assert [line for stem in run_notebooks.list_notebooks() for line in run_notebooks.saved_tweaks(stem)] == []


@pytest.fixture
def notebook_copy(tmp_path, monkeypatch):
    """01's notebook in a folder of its own, where run_notebooks looks for notebooks."""
    shutil.copy(run_notebooks.notebooks_dir() / "01_lucier_room.ipynb", tmp_path)
    monkeypatch.setattr(run_notebooks, "notebooks_dir", lambda: tmp_path)
    path = tmp_path / "01_lucier_room.ipynb"
    nb = nbformat.read(path, as_version=4)

    def save(edit):
        edit(nb)
        nbformat.write(nb, path)
        return run_notebooks.saved_tweaks("01_lucier_room")

    return nb, save


def _parameters(nb):
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def test_a_parameter_saved_in_the_cell_is_named_with_its_command_line_spelling(notebook_copy):
    nb, save = notebook_copy
    assert save(lambda nb: None) == []

    def tweak(nb):
        cell = _parameters(nb)
        cell.source = cell.source.replace("n_iterations = None", "n_iterations = 20").replace(
            'profile = ""', 'profile = "quick"')
    problems = save(tweak)
    assert "n_iterations = 20" in problems[0] and "-p n_iterations=20" in problems[0]
    assert "--profile quick" in problems[0]
    assert "git checkout notebooks/01_lucier_room.ipynb" in problems[-1]


def test_a_kernel_run_saved_over_the_check_outputs_is_named(notebook_copy):
    nb, save = notebook_copy

    def ran(nb):
        code = [c for c in nb.cells if c.cell_type == "code"]
        code[1].execution_count = 2
        code[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="cfg\n")]
    problems = save(ran)
    assert len(problems) == 2 and "saved after a run in a kernel (outputs in 1 cell(s))" in problems[0]
    # outputs are nbval's concern only: run_all.sh asks for parameters alone
    assert run_notebooks.saved_tweaks("01_lucier_room", outputs=False) == []

    def cleared(nb):
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs, c.execution_count = [], None
    assert "saved after a run in a kernel" in save(cleared)[0]


def test_a_cell_that_sets_nothing_is_no_tweak_and_one_that_does_not_parse_is_named(notebook_copy):
    nb, save = notebook_copy

    def comment(nb):
        _parameters(nb).source += "\n# a note"
    assert save(comment) == []

    def broken(nb):
        _parameters(nb).source += "\nn_iterations = ("
    assert "does not parse" in save(broken)[0]


def test_run_all_refuses_a_tweaked_notebook_before_anything_runs(notebook_copy, capsys):
    nb, save = notebook_copy
    save(lambda nb: setattr(_parameters(nb), "source",
                            _parameters(nb).source.replace("rt60 = None", "rt60 = 0.9")))
    assert run_notebooks.main(["--profile", "smoke", "--only", "01"]) == 2
    err = capsys.readouterr().err
    assert "rt60 = 0.9" in err and "-p rt60=0.9" in err


def test_the_test_command_stops_before_nbval_on_a_tweaked_notebook(tmp_path):
    """notebooks/conftest.py, in a copy of the checkout's notebooks: pytest exits 2 with the sentence."""
    repo = run_notebooks.notebooks_dir().parent
    work = tmp_path / "repo"
    shutil.copytree(repo / "notebooks", work / "notebooks", ignore=shutil.ignore_patterns("__pycache__"))
    # a copy, not a link: the package finds the notebooks beside itself
    shutil.copytree(repo / "resonance_utils", work / "resonance_utils", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "params").symlink_to(repo / "params")
    path = work / "notebooks" / "01_lucier_room.ipynb"
    nb = nbformat.read(path, as_version=4)
    _parameters(nb).source = _parameters(nb).source.replace("n_iterations = None", "n_iterations = 5")
    nbformat.write(nb, path)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "notebooks", "--collect-only",
                          "-q"], cwd=work, capture_output=True, text=True, env={"PYTHONPATH": str(work),
                                                                               "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "n_iterations = 5" in out.stdout + out.stderr
