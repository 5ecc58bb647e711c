"""Profiles and parameters: params/<notebook>/<profile>.yaml, typed overrides, unknown names rejected.

The profile YAML defines which parameters exist and their types (the value's type); an override must have
the same type (an int is accepted for a float). Values are plain scalars (bool, int, float, str) so that
papermill can pass every one of them; vectors are written as strings such as "6.0, 5.0, 3.2".
"""
from __future__ import annotations

import ast
from pathlib import Path
from collections.abc import Mapping

import yaml

from .store import repo_root

PROFILES = ("smoke", "quick", "paper")
_SCALARS = (bool, int, float, str)


class ConfigError(ValueError):
    """A bad profile, parameter name or value: the message says which and lists what is valid."""


def params_dir() -> Path:
    return repo_root() / "params"


def notebooks_with_params() -> list[str]:
    return sorted(p.name for p in params_dir().iterdir() if p.is_dir())


class Config(Mapping):
    """A read-only mapping with attribute access: cfg.n_iterations or cfg["n_iterations"]."""

    def __init__(self, notebook: str, profile: str, values: dict, overridden: tuple[str, ...] = ()):
        self._values = dict(values)
        self.notebook, self.profile, self.overridden = notebook, profile, tuple(overridden)

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

    def __repr__(self):
        width = max(map(len, self)) if self else 0
        lines = [f"{self.notebook} · profile {self.profile}"]
        for k, v in self.items():
            mark = "  (override)" if k in self.overridden else ""
            lines.append(f"  {k:<{width}} = {v!r}{mark}")
        return "\n".join(lines)


def load_profile(notebook: str, profile: str) -> dict:
    """The YAML of one notebook's profile, checked: known profile, plain scalar values."""
    nb_dir = params_dir() / notebook
    if not nb_dir.is_dir():
        raise ConfigError(f"no parameters for notebook {notebook!r} (looked in {nb_dir}); "
                          f"known: {', '.join(notebooks_with_params())}")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    path = nb_dir / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(f"{path} is missing: notebook {notebook!r} has no {profile!r} profile")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must be a mapping of parameter: value")
    for k, v in values.items():
        if not isinstance(v, _SCALARS):
            raise ConfigError(f"{path}: {k} = {v!r} is a {type(v).__name__}; parameters must be bool, int, float "
                              f"or str (write vectors as strings like \"6.0, 5.0, 3.2\")")
    return values


def coerce(name: str, value, default):
    """`value` converted to the type of `default`, or a ConfigError naming the parameter."""
    kind = type(default)
    if isinstance(value, bool) or kind is bool:
        if type(value) is kind:
            return value
    elif kind is float and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(value, kind):
        return value
    raise ConfigError(f"parameter {name!r} must be {kind.__name__} (like {default!r}), got {value!r} "
                      f"({type(value).__name__})")


def load_config(notebook: str, profile: str, **overrides) -> Config:
    """Profile values with overrides applied; an unknown name is an error that lists the valid ones."""
    values = load_profile(notebook, profile)
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} for {notebook}; valid: {', '.join(values)}")
    for k, v in overrides.items():
        values[k] = coerce(k, v, values[k])
    return Config(notebook, profile, values, tuple(overrides))


def resolve(notebook: str, namespace: dict) -> Config:
    """The notebook's configuration from its own globals (the parameters cell and papermill's injection).

    `profile` "" means $RESONANCE_PROFILE, else paper on CUDA, else quick. Every other parameter of the
    profile that is not None in the namespace is an override. A name papermill injected that the profile does
    not know is an error (papermill itself only warns).
    """
    from .runtime import default_profile

    profile = namespace.get("profile") or default_profile()
    known = load_profile(notebook, profile)
    injected = _papermill_injected_names(namespace)
    unknown = sorted(injected - set(known) - {"profile"})
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} for {notebook}; valid: profile, "
                          f"{', '.join(known)}")
    overrides = {k: namespace[k] for k in known if namespace.get(k) is not None}
    return load_config(notebook, profile, **overrides)


def _papermill_injected_names(namespace: dict) -> set[str]:
    """Names assigned in papermill's injected cell (it starts with '# Parameters'), read from IPython's history."""
    names: set[str] = set()
    for src in namespace.get("In", []) or []:
        if isinstance(src, str) and src.lstrip().startswith("# Parameters"):
            names = set()
            try:
                tree = ast.parse(src)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, ast.Assign):
                    names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def parse_vector(name: str, text, length: int | None = None) -> tuple[float, ...]:
    """'6.0, 5.0, 3.2' -> (6.0, 5.0, 3.2), with errors that name the parameter."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        parts = [float(text)]
    else:
        try:
            parts = [float(p) for p in str(text).replace(";", ",").split(",") if p.strip()]
        except ValueError:
            raise ConfigError(f"parameter {name!r} must be comma-separated numbers like \"6.0, 5.0, 3.2\", "
                              f"got {text!r}") from None
    if length is not None and len(parts) != length:
        raise ConfigError(f"parameter {name!r} needs {length} numbers, got {len(parts)} ({text!r})")
    return tuple(parts)


def check_overrides(notebook: str, profile: str, pairs: list[str]) -> dict:
    """key=value strings from the command line -> typed overrides, checked against the profile."""
    values = load_profile(notebook, profile)
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"-p expects key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        if k == "profile":
            raise ConfigError("set the profile with --profile, not -p profile=...")
        overrides[k] = _parse_cli_value(v, values[k]) if k in values else v
    cfg = load_config(notebook, profile, **overrides)
    return {k: cfg[k] for k in overrides}


def _parse_cli_value(text: str, default):
    """A -p value as YAML would read it, so '0.5' is a float and 'true' a bool; strings stay strings."""
    if isinstance(default, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text

