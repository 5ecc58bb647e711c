"""Profiles and parameters: a notebook's parameter class (notebook_params) holds every parameter with its type,
default and meaning; params/<notebook>/<profile>.yaml holds only what that profile changes; overrides on top.

An unknown name is an error that lists the valid ones; a value of the wrong type or out of range is an error that
names the parameter (the specs check them), before anything is loaded. Profile values and papermill parameters
are plain scalars (bool, int, float, str); vectors are written as strings such as "6.0, 5.0, 3.2".
"""
from __future__ import annotations

import ast
from pathlib import Path
from collections.abc import Mapping

import yaml

from .specs import ConfigError, EnsembleSpec, coerce, parse_vector  # noqa: F401 - re-exported: the names users know
from .store import repo_root

PROFILES = ("smoke", "quick", "paper")
_SCALARS = (bool, int, float, str)


def params_dir() -> Path:
    return repo_root() / "params"


def notebooks_with_params() -> list[str]:
    from .notebook_params import NOTEBOOKS
    return sorted(NOTEBOOKS)


def params_class(notebook: str) -> type:
    """The parameter class of a notebook (notebook_params.NOTEBOOKS)."""
    from .notebook_params import NOTEBOOKS
    try:
        return NOTEBOOKS[notebook]
    except KeyError:
        raise ConfigError(f"no parameters for notebook {notebook!r}; known: {', '.join(sorted(NOTEBOOKS))}") from None


class Config(Mapping):
    """A notebook's resolved parameters: read-only, cfg.n_iterations or cfg["n_iterations"]; `params` is the
    typed, checked instance of the notebook's parameter class (specs.build turns it into specs)."""

    def __init__(self, notebook: str, profile: str, params, overridden: tuple[str, ...] = (),
                 from_profile: tuple[str, ...] = ()):
        self.params = params
        self._values = params.to_dict()
        self.notebook, self.profile = notebook, profile
        self.overridden, self.from_profile = tuple(overridden), tuple(from_profile)

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self.notebook} has no parameter {name!r}; valid: {', '.join(self)}") from None

    def to_dict(self) -> dict:
        return dict(self)

    def to_json(self) -> dict:
        """The values as JSON would hold them (vectors as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.items()}

    def __repr__(self):
        width = max(map(len, self)) if self else 0
        lines = [f"{self.notebook} · profile {self.profile}"]
        for k, v in self.items():
            mark = ("  (override)" if k in self.overridden else f"  ({self.profile} profile)" if k in self.from_profile
                    else "")
            lines.append(f"  {k:<{width}} = {v!r}{mark}")
        return "\n".join(lines)


def load_profile(notebook: str, profile: str) -> dict:
    """What one profile of a notebook changes (its YAML), checked: known profile, known names, plain scalars."""
    cls = params_class(notebook)
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    path = params_dir() / notebook / f"{profile}.yaml"
    if not path.exists():
        return {}
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must be a mapping of parameter: value")
    unknown = sorted(set(values) - set(cls.names()))
    if unknown:
        raise ConfigError(f"{path}: {unknown_names(unknown, cls.names())}")
    for k, v in values.items():
        if not isinstance(v, _SCALARS):
            raise ConfigError(f"{path}: {k} = {v!r} is a {type(v).__name__}; parameters must be bool, int, float "
                              f"or str (write vectors as strings like \"6.0, 5.0, 3.2\")")
    return values


def profile_values(notebook: str, profile: str) -> dict:
    """Every parameter of a notebook in a profile: the defaults with the profile's changes (unchecked values)."""
    return params_class(notebook).defaults() | load_profile(notebook, profile)


def load_config(notebook: str, profile: str, **overrides) -> Config:
    """Defaults, the profile's changes, then overrides; every value checked by the notebook's specs."""
    cls = params_class(notebook)
    changes = load_profile(notebook, profile)
    unknown = sorted(set(overrides) - set(cls.names()))
    if unknown:
        raise ConfigError(f"{notebook}: {unknown_names(unknown, cls.names())}")
    try:
        params = cls(**(changes | overrides))
    except ConfigError as e:
        raise ConfigError(f"{notebook} ({profile} profile): {e}") from None
    return Config(notebook, profile, params, tuple(overrides), tuple(k for k in changes if k not in overrides))


def resolve(notebook: str, namespace: dict) -> Config:
    """The notebook's configuration from its own globals (the parameters cell and papermill's injection).

    `profile` "" means $RESONANCE_PROFILE, else paper on CUDA, else quick. Every other parameter of the
    profile that is not None in the namespace is an override. In a kernel (IPython's history `In`), only the names
    assigned by the last run of the parameters cell and by papermill's injected cell count: a name deleted from the
    cell falls back to the profile's value instead of keeping the value an earlier run left in the kernel, and a
    name assigned there that the notebook does not know is an error that suggests the nearest valid one (papermill
    itself only warns).
    """
    from . import costs
    from .runtime import default_profile

    costs.install()  # a rehearsal (run_notebooks --rehearse) records the hot operations' costs; else nothing
    cell, injected = parameter_cell_names(namespace)
    live = None if cell is None else cell | injected  # None: no history (a script), every global counts
    profile = (namespace.get("profile") if live is None or "profile" in live else None) or default_profile()
    load_profile(notebook, profile)  # the profile itself is checked first
    known = params_class(notebook).names()
    unknown = sorted((live or injected) - set(known) - {"profile"})
    if unknown:
        raise ConfigError(f"{notebook}: the parameters cell sets {unknown_names(unknown, ['profile', *known])}")
    overrides = {k: namespace[k] for k in known if (live is None or k in live) and namespace.get(k) is not None}
    return load_config(notebook, profile, **overrides)


# the second line of every notebook's parameters cell (notebook_params.parameters_cell): how the history finds it
PARAMETERS_CELL_MARK = "# None = the profile's value."


def parameter_cell_names(namespace: dict) -> tuple[set[str] | None, set[str]]:
    """From IPython's input history `In`: the names assigned by the last run of the parameters cell (None when the
    history holds no run of it) and those of papermill's injected cell (it starts with '# Parameters') after it."""
    cell, injected = None, set()
    for src in namespace.get("In", []) or []:
        names = _assigned_names(src) if isinstance(src, str) else None
        if names is None:  # a cell that does not parse did not run: what held before holds
            continue
        if PARAMETERS_CELL_MARK in src:
            cell, injected = names, set()
        elif src.lstrip().startswith("# Parameters"):
            injected = names
    return cell, injected


def _assigned_names(src: str) -> set[str] | None:
    """Names a cell assigns at top level; None when it does not parse."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return None
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def unknown_names(unknown, valid) -> str:
    """'unknown parameter(s) a (did you mean b?), c; valid: ...' for an error message."""
    from difflib import get_close_matches

    named = []
    for name in unknown:
        near = get_close_matches(name, list(valid), n=1, cutoff=0.6)
        named.append(f"{name} (did you mean {near[0]}?)" if near else name)
    return f"unknown parameter(s) {', '.join(named)}; valid: {', '.join(valid)}"


def check_overrides(notebook: str, profile: str, pairs: list[str]) -> dict:
    """key=value strings from the command line -> typed overrides, checked against the profile (a notebook
    without a parameter class takes none). The ensemble parameters (specs.EnsembleSpec: how chains run, not what)
    go only to the notebooks that declare them, so that `-p executor=ray` applies to a whole run."""
    if not pairs:
        return {}
    values = profile_values(notebook, profile)
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"-p expects key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        if k == "profile":
            raise ConfigError("set the profile with --profile, not -p profile=...")
        if k in EnsembleSpec.names() and k not in values:
            continue
        overrides[k] = _parse_cli_value(v, values[k]) if k in values else v
    cfg = load_config(notebook, profile, **overrides)
    # vectors stay as written ("1, 2, 2"): papermill passes plain scalars
    return {k: overrides[k] if isinstance(cfg[k], tuple) else cfg[k] for k in overrides}


def _parse_cli_value(text: str, default):
    """A -p value as YAML would read it, so '0.5' is a float and 'true' a bool; strings and vectors stay text."""
    if isinstance(default, (str, tuple)):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text

