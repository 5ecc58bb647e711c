"""The install files agree with each other, and with what run_all.sh installs."""
import re
import tomllib
from pathlib import Path

import yaml

from resonance_utils.store import repo_root


def _normalise(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    root = repo_root()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = {_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert {_normalise(r) for r in pip} == wanted


def test_nodeps_packages_are_pinned_and_installed_by_run_all():
    root = repo_root()
    lines = [ln.split("#")[0].strip() for ln in (root / "requirements-nodeps.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln]
    assert pins and all("==" in p for p in pins)
    script = (root / "run_all.sh").read_text()
    assert "--no-deps -r requirements-nodeps.txt" in script
    assert '"torch==2.14.1" "torchvision==0.29.1"' in script


def test_run_all_runs_the_package_of_its_own_checkout(tmp_path):
    """A .venv shared between checkouts (RESONANCE_VENV) has its editable install pointing at one of them; run keys
    hash the source that ran, so the kernels run_all.sh starts must import the package of the checkout it is in."""
    import hashlib
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    root, venv = repo_root(), Path(sys.prefix)
    for f in ("run_all.sh", "pyproject.toml", "requirements-nodeps.txt"):
        shutil.copy(root / f, tmp_path / f)
    want = hashlib.sha256((root / "pyproject.toml").read_bytes()
                          + (root / "requirements-nodeps.txt").read_bytes()).hexdigest()[:16]
    stamp = venv / ".resonance-env"
    if not stamp.exists() or stamp.read_text().strip() != want:
        pytest.skip(f"{venv} is not an environment run_all.sh set up (no matching {stamp}): it would reinstall")
    package = tmp_path / "resonance_utils"
    package.mkdir()
    (package / "__init__.py").write_text("")
    # the driver runs from the checkout (python -m puts it on sys.path); a notebook's kernel starts in notebooks/
    (tmp_path / "notebooks").mkdir()
    (package / "run_notebooks.py").write_text(
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import resonance_utils; print(resonance_utils.__file__)'], "
        "cwd='notebooks', check=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"RESONANCE_VENV": str(venv)}
    out = subprocess.run(["bash", str(tmp_path / "run_all.sh"), "--list"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve() == (package / "__init__.py").resolve()
