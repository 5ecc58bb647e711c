"""What a notebook ran, for the notebooks that read it: its resolved parameters and its chains' run folders.

A producing notebook writes one record per profile, data/records/<profile>/<notebook>.json, next to the chains
it points to (so another RESONANCE_DATA_DIR is another consistent world). A consuming notebook reads it with
`read(cfg, producer)`: the producer's parameters exactly as it ran them (its overrides included) and its chains
read back from their run folders, never re-derived from the producer's YAML. A consumer may only read producers
it declares (`notebook_params`, `reads=`), and run_notebooks orders the runs by those declarations.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from . import store
from .specs import ConfigError, build

FORMAT = 1
_READ: dict[str, dict[str, str]] = {}  # consumer -> {producer: run id} of the records read in this process


class MissingRecord(ConfigError):
    """A consumer's producer has not run (in this profile and data folder), or its chains are gone."""


def record_path(notebook: str, profile: str) -> Path:
    return store.data_dir() / "records" / profile / f"{notebook}.json"


def _loader_name(load) -> str:
    name = f"{load.__module__.rsplit('.', 1)[-1]}.{load.__qualname__}"
    if "<" in name:
        raise ValueError(f"a chain's loader must be a module-level function of the package, got {name}")
    return name


def write(outputs, chains: dict | None = None, *, load=None) -> Path:
    """Record what the notebook of `outputs` (publish.Outputs) ran: its resolved parameters and, for each named
    chain (a chain.ChainResult with a run folder), the folder and its generation count. `load` is the chain's
    state loader (default chain.load_arrays). A second call in the same run adds chains to the record."""
    from .chain import load_arrays

    cfg = outputs.cfg
    path = record_path(cfg.notebook, cfg.profile)
    old = store.read_json(path) if path.exists() else None
    entries = dict(old["chains"]) if isinstance(old, dict) and old.get("run_id") == outputs.run_id else {}
    for name, result in (chains or {}).items():
        if result.run_dir is None:
            raise ValueError(f"chain {name!r} has no run folder: only cached chains can be recorded")
        entries[name] = {"run_dir": Path(result.run_dir).resolve().relative_to(store.data_dir().resolve()).as_posix(),
                         "generations": len(result) - 1, "load": _loader_name(load or load_arrays)}
    # JSON files are written with sorted keys: the order of the chains (the notebook's settings) is kept apart
    return store.write_json(path, {"format": FORMAT, "notebook": cfg.notebook, "profile": cfg.profile,
                                   "params": cfg.to_json(), "chains": entries, "chain_order": list(entries),
                                   "run_id": outputs.run_id,
                                   "git_commit": outputs.commit, "created": store._now()})


@dataclass
class Record:
    """A producer's record: `params` (its Config, checked again), `chains` {name: entry}; `chain(name)` reads one
    back, `spec(Spec, **changes)` builds a spec from its parameters."""
    notebook: str
    profile: str
    params: object
    chains: dict
    path: Path
    run_id: str

    def spec(self, spec_class: type, **changes):
        return build(spec_class, self.params, **changes)

    def run_dir(self, name: str) -> Path:
        return store.data_dir() / self._entry(name)["run_dir"]

    def _entry(self, name: str) -> dict:
        try:
            return self.chains[name]
        except KeyError:
            raise MissingRecord(f"{self.notebook} recorded no chain {name!r} ({self.path}); it recorded: "
                                f"{', '.join(self.chains) or 'none'}") from None

    def chain(self, name: str):
        """The recorded chain, every generation it had, read back and checked (chain.read_chain)."""
        from .chain import read_chain

        entry = self._entry(name)
        module, func = entry["load"].split(".", 1)
        load = getattr(importlib.import_module(f"{__package__}.{module}"), func)
        try:
            return read_chain(self.run_dir(name), entry["generations"], load=load)
        except FileNotFoundError as e:
            raise MissingRecord(f"{self.notebook}'s chain {name!r} is not in {self.run_dir(name)} any more ({e}): "
                                f"rerun {self.notebook} (./run_all.sh --only {self.notebook} --profile "
                                f"{self.profile} --force)") from None


def read(cfg, producer: str) -> Record:
    """The record of `producer` in the consumer's profile. The consumer (cfg.notebook) must declare that it reads
    it; a producer that has not run is an error that says which notebook to run."""
    from .config import Config, params_class

    consumer = params_class(cfg.notebook)
    if producer not in consumer.reads:
        raise ConfigError(f"{cfg.notebook} does not declare that it reads {producer}: add it to reads= of "
                          f"{consumer.__name__} in resonance_utils/notebook_params.py (the run order follows it)")
    path = record_path(producer, cfg.profile)
    if not path.exists():
        raise MissingRecord(f"{cfg.notebook} reads what {producer} ran (profile {cfg.profile}), and there is no record "
                            f"of it in {path.parent}: run {producer} first (./run_all.sh --only {producer} --profile "
                            f"{cfg.profile}, or ./run_all.sh, which runs producers first)")
    rec = store.read_json(path)
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise MissingRecord(f"{path} is from another version or damaged: rerun {producer} (./run_all.sh --only "
                            f"{producer} --profile {cfg.profile} --force)")
    try:
        params = params_class(producer)(**rec["params"])
    except (ConfigError, TypeError) as e:
        raise MissingRecord(f"{path} holds parameters this version of {producer} does not accept ({e}): rerun "
                            f"{producer} (./run_all.sh --only {producer} --profile {cfg.profile} --force)") from None
    _READ.setdefault(cfg.notebook, {})[producer] = str(rec.get("run_id"))
    chains = rec.get("chains") or {}
    order = [n for n in rec.get("chain_order", []) if n in chains] + sorted(set(chains) - set(rec.get("chain_order", [])))
    return Record(notebook=producer, profile=cfg.profile, params=Config(producer, cfg.profile, params),
                  chains={n: chains[n] for n in order}, path=path, run_id=str(rec.get("run_id")))


def read_by(consumer: str) -> dict[str, str]:
    """{producer: run id} of the records `consumer` has read in this process (the manifest keeps it with every
    output, so a figure says which runs of other notebooks it was made from)."""
    return dict(_READ.get(consumer, {}))


def fingerprint(notebook: str, profile: str) -> str:
    """A short hash of a notebook's record (or 'none'): run_notebooks reruns a consumer when it changes."""
    path = record_path(notebook, profile)
    return store.hash_bytes(path.read_bytes()) if path.exists() else "none"
