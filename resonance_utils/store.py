"""Files: atomic writes, fingerprints, run folders keyed by what made them, and the figures manifest.

Every file the project writes goes through `atomic_path`, so an interrupted run leaves either the old file or the
new one, never half of one.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout this package lives in ($RESONANCE_ROOT overrides, e.g. for an installed copy)."""
    env = os.environ.get("RESONANCE_ROOT")
    return Path(env).resolve() if env else PACKAGE_DIR.parent


def data_dir() -> Path:
    """Caches, prepared data and runs: data/ in the checkout, or $RESONANCE_DATA_DIR."""
    env = os.environ.get("RESONANCE_DATA_DIR")
    return Path(env).resolve() if env else repo_root() / "data"


def figures_dir(profile: str = "quick") -> Path:
    """Figures and tables. The smoke profile (CI, nbval) writes to build/smoke/figures so that it never
    overwrites a real run's figures; $RESONANCE_FIGURES_DIR overrides both."""
    env = os.environ.get("RESONANCE_FIGURES_DIR")
    if env:
        return Path(env).resolve()
    if profile == "smoke":
        return repo_root() / "build" / "smoke" / "figures"
    return repo_root() / "figures"


# ---------------------------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path next to `final`; rename it onto `final` only if the block succeeds.

    Works for files and folders alike (a folder is renamed whole, which is how a generation is committed).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            _remove(final)  # replacing a folder: rename cannot overwrite a non-empty one
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_json(path, obj) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def read_json(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"{path} is not valid JSON ({e}); delete it to recompute") from e


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


class CacheError(RuntimeError):
    """A cached file exists but cannot be read: the message names it and what to do."""


# ------------------------------------------------------------------------------------------------ fingerprints
def hash_bytes(*chunks: bytes, n: int = 16) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:n]


def file_fingerprint(path) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def array_fingerprint(*arrays) -> str:
    """Content hash of numpy arrays (dtype and shape included)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def package_source_hash(modules: tuple[str, ...] | None = None) -> str:
    """Hash of the package's source: a code change makes new run keys, so no stale cache is read.

    modules: the names (e.g. ("chain", "audio")) whose code a result depends on; None hashes every .py file.
    Naming them keeps a chain's cache valid across changes to, say, plotting code.
    """
    files = sorted(PACKAGE_DIR.rglob("*.py")) if modules is None else [PACKAGE_DIR / f"{m}.py" for m in modules]
    h = hashlib.sha256()
    for p in files:
        if not p.exists():
            raise ValueError(f"package_source_hash: no module {p.stem!r} in {PACKAGE_DIR}")
        h.update(p.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def params_hash(params: dict) -> str:
    return hash_bytes(json.dumps(params, sort_keys=True, default=_json_default).encode())


def run_key(params: dict, input_fingerprint: str, source_hash: str | None = None) -> str:
    """The name of a run folder: parameters that change the chain + package source + input data."""
    src = package_source_hash() if source_hash is None else source_hash
    return hash_bytes(
        json.dumps({"params": params, "input": input_fingerprint, "source": src}, sort_keys=True,
                   default=_json_default).encode()
    )


def run_dir(setting: str, params: dict, input_fingerprint: str, *, modules: tuple[str, ...] | None = None) -> Path:
    """data/runs/<setting>/<key>/, created with a run.json that says what made it. `modules`: see
    package_source_hash."""
    source = package_source_hash(modules)
    key = run_key(params, input_fingerprint, source)
    d = data_dir() / "runs" / setting / key
    info = d / "run.json"
    if not info.exists():
        write_json(info, {"setting": setting, "params": params, "input_fingerprint": input_fingerprint,
                          "source_hash": source, "source_modules": modules or "all", "created": _now()})
    return d


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------- manifest
def git_commit() -> str:
    """HEAD's commit, with '+dirty' when the package or notebooks have uncommitted changes."""
    root = repo_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        if not head:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "resonance_utils",
                                "notebooks", "params"], capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def update_manifest(figures: Path, entries: dict[str, dict]) -> Path:
    """Merge entries (output file name -> record) into figures/MANIFEST.json under a lock."""
    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    manifest = figures / "MANIFEST.json"
    with open(figures / ".MANIFEST.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = {}
        if manifest.exists():
            try:
                current = json.loads(manifest.read_text())
            except json.JSONDecodeError:
                # a damaged manifest is rebuilt from what the notebooks write next, not a reason to stop
                current = {}
        current.update(entries)
        write_json(manifest, current)
    return manifest


# ----------------------------------------------------------------------------------------------------- outputs
class Outputs:
    """Everything one notebook run writes, each file recorded in figures/MANIFEST.json.

    outputs = Outputs(cfg, data_source="real: CMU ARCTIC a0007 (pysptk)", feature_network="none")
    outputs.figure(fig, "lucier_spectrograms"); outputs.table(df, "taxonomy"); outputs.numbers({...})
    """

    def __init__(self, cfg, *, data_source: str, feature_network: str = "none", device: str | None = None,
                 stem: str | None = None):
        import time

        from .runtime import describe_device

        self.cfg, self.stem = cfg, stem or cfg.notebook
        self.data_source, self.feature_network = data_source, feature_network
        self.device = device or describe_device()
        self.dir = figures_dir(cfg.profile)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.perf_counter()
        self._commit = git_commit()
        self.written: list[Path] = []

    @property
    def stamp_text(self) -> str:
        return (f"resonance · {self.stem} · profile {self.cfg.profile} · data: {self.data_source} · "
                f"features: {self.feature_network} · our reconstruction, not the paper's numbers")

    def _record(self, paths: list[Path]) -> None:
        import time

        rec = {"notebook": self.stem, "profile": self.cfg.profile, "params": self.cfg.to_dict(),
               "git_commit": self._commit, "device": self.device,
               "wall_time_s": round(time.perf_counter() - self._t0, 2), "data_source": self.data_source,
               "feature_network": self.feature_network, "created": _now()}
        self.written += paths
        update_manifest(self.dir, {p.relative_to(self.dir).as_posix(): rec for p in paths})

    def figure(self, fig, name: str) -> list[Path]:
        """Stamp and save as name.png and name.pdf."""
        from .plots import stamp

        stamp(fig, self.stamp_text)
        paths = []
        for ext in ("png", "pdf"):
            final = self.dir / f"{name}.{ext}"
            with atomic_path(final) as tmp:
                fig.savefig(tmp, format=ext)
            paths.append(final)
        self._record(paths)
        return paths

    def table(self, df, name: str, *, floatfmt: str = ".4g") -> list[Path]:
        """Save a pandas DataFrame as name.csv and name.md (a header line says what made it)."""
        csv, md = self.dir / f"{name}.csv", self.dir / f"{name}.md"
        with atomic_path(csv) as tmp:
            df.to_csv(tmp, index=False)
        with atomic_path(md) as tmp:
            tmp.write_text(f"<!-- {self.stamp_text} -->\n\n" + markdown_table(df, floatfmt=floatfmt) + "\n")
        self._record([csv, md])
        return [csv, md]

    def numbers(self, values: dict) -> Path:
        """The notebook's key numbers as figures/<stem>.json (with the profile and data source)."""
        path = self.dir / f"{self.stem}.json"
        write_json(path, {"profile": self.cfg.profile, "data_source": self.data_source,
                          "feature_network": self.feature_network, **values})
        self._record([path])
        return path

    def audio(self, wave, sample_rate: int, name: str) -> Path:
        """A 16-bit WAV under figures/audio/, peak-normalised to -1 dBFS for listening."""
        import soundfile as sf

        wave = np.asarray(wave, dtype=np.float64)
        peak = np.max(np.abs(wave)) or 1.0
        path = self.dir / "audio" / f"{name}.wav"
        with atomic_path(path) as tmp:
            sf.write(tmp, (wave / peak * 10 ** (-1 / 20)).astype(np.float32), int(sample_rate), subtype="PCM_16",
                     format="WAV")
        self._record([path])
        return path


def markdown_table(df, *, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
