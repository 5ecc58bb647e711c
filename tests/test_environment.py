"""The install files agree with each other, and with what run_all.sh installs."""
import re
import tomllib

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
