"""Files: atomic, durable writes; locks; checksums; fingerprints; run folders keyed by what made them; the
figures manifest.

Every file the project writes goes through `atomic_path`: it is written under a temporary name next to its final
one, flushed to disk (fsync), and renamed into place, and the folder holding it is flushed too. An interrupted
run, or a power loss, leaves either the old file or the new one, never half of one. A folder is committed the
same way (a generation, a model), and with replace=False a committed one is never replaced.

Locks are the operating system's (`fcntl.flock`): a lock is released when its holder exits or dies, even by
SIGKILL, so a process waiting for it takes over from a dead one. `lock` guards a run folder while a chain's
generations are computed (chain.run_chain); the figures manifest is updated under one too.

Leftovers of a writer that died (`.NAME.tmp-PID-x`, `.NAME.old-PID-x`) are removed by the next write of NAME
once process PID is gone.
"""
from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
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


# ---------------------------------------------------------------------------------------------- errors
class CacheError(RuntimeError):
    """A cached file exists but cannot be read, or fails its checksum: the message names it and what to do."""


class LockTimeout(TimeoutError):
    """A lock stayed held by another process longer than the caller would wait."""


# ------------------------------------------------------------------------------------------------------ locks
def _notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def lock(path: str | os.PathLike, *, what: str = "", timeout: float | None = None, notify=None):
    """Hold an exclusive lock on the file `path` (created if missing) for the duration of the block.

    The lock is the OS's (flock): it is released when the block ends, or when this process exits or is killed,
    so a process that waits for it takes over from a holder that died. While another process holds it,
    notify(message) is called once (default: a line on stderr naming `what` and the holder) and the call waits;
    after `timeout` seconds (None: no limit) it raises LockTimeout. The holder writes its pid, host and start time
    into the file, for that message. Not re-entrant: a process must not take a lock it already holds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_flock(fd):
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            (notify or _notify)(f"waiting for {what or path}: held by {holder}")
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                while not _try_flock(fd):
                    if time.monotonic() > deadline:
                        raise LockTimeout(f"{what or path} is still held by {holder} after {timeout:g} s ({path})")
                    time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def try_lock(path: str | os.PathLike):
    """lock(path) without waiting: a context manager that yields True when it got the lock, False when another
    process holds it (then the block runs without it)."""
    @contextlib.contextmanager
    def _cm():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            yield _try_flock(fd)
        finally:
            os.close(fd)
    return _cm()


_DIR_LOCKS: dict[str, list] = {}  # folder -> [in-process RLock, fd, depth]
_DIR_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _dir_lock(folder: Path):
    """An exclusive flock on the folder itself (its directory fd): serialises renames into one folder across
    processes. Re-entrant within a process (threads take turns)."""
    key = os.path.realpath(folder)
    with _DIR_LOCKS_GUARD:
        entry = _DIR_LOCKS.setdefault(key, [threading.RLock(), None, 0])
    with entry[0]:
        if entry[2] == 0:
            fd = os.open(key, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            entry[1] = fd
        entry[2] += 1
        try:
            yield
        finally:
            entry[2] -= 1
            if entry[2] == 0:
                os.close(entry[1])
                entry[1] = None


# ----------------------------------------------------------------------------------------------- atomic writes
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-[0-9a-f]+)?$")


def temporary_name(final: Path, kind: str = "tmp") -> Path:
    """.NAME.tmp-PID-RANDOM next to final (kind "old": where a replaced folder is moved before it is deleted)."""
    return final.with_name(f".{final.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (on this machine's process table)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None, *, pattern: str | None = None,
                             force: bool = False) -> list[Path]:
    """Delete the temporaries that writers which died left in `folder` (.NAME.tmp-PID-x and .NAME.old-PID-x)
    and return them. Only those of NAME when given, only names matching the regular expression `pattern` when
    given. A temporary whose process still runs is a write in progress and is kept, unless force=True (for a
    caller that holds the lock every writer of these names takes, so that no other writer can be alive)."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = TEMP_RE.match(e.name)
        if not m or (name is not None and m["name"] != name) or (pattern and not re.fullmatch(pattern, m["name"])):
            continue
        pid = int(m["pid"])
        if not force and process_alive(pid):
            continue
        if force and pid == os.getpid() and m["kind"] == "tmp" and _open_here(Path(e.path)):
            continue
        with contextlib.suppress(OSError):
            _remove(Path(e.path))
            removed.append(Path(e.path))
    return removed


_OPEN_TEMPS: set[str] = set()  # temporaries of atomic_path blocks running in this process


def _open_here(p: Path) -> bool:
    return str(p) in _OPEN_TEMPS


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file, or a folder and everything in it, to disk (fsync on every file and every folder)."""
    path = Path(path)
    if path.is_symlink():
        return
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for f in files:
                if not os.path.islink(os.path.join(root, f)):
                    _fsync_fd(os.path.join(root, f), os.O_RDONLY)
            _fsync_fd(root, os.O_RDONLY)
    elif path.exists():
        _fsync_fd(path, os.O_RDONLY)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it is durable only after this)."""
    _fsync_fd(folder, os.O_RDONLY)


def _fsync_fd(path, flags) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and /dev files) refuse fsync on a read-only or directory fd
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, replace: bool = True, durable: bool = True):
    """Yield a temporary path next to `final`; commit it onto `final` only if the block succeeds.

    Works for files and folders alike (a folder is renamed whole, which is how a generation is committed).
    durable (default): every file and folder under the temporary is flushed (fsync) before the rename, and the
    parent folder after it, so a committed name never points at data still in the page cache.
    replace=True: an existing `final` is replaced (a file by an atomic rename; a folder is moved aside, the new
    one renamed in, the old one deleted, all under a lock on the parent folder, so two writers never collide; the
    name always points at a complete folder, or for an instant at none, but a reader already inside the old one
    sees it deleted under it). replace=False: an existing `final` is kept and FileExistsError raised (the new one
    is discarded): a committed result is never replaced, which is how results that other runs read (chain
    generations) are committed.
    A failed block, or an interrupt, removes the temporary; leftovers of dead writers go at the next write.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, final.name)
    tmp = temporary_name(final)
    _OPEN_TEMPS.add(str(tmp))
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise FileNotFoundError(f"nothing was written to {tmp}, the temporary name of {final}")
        if durable:
            fsync_path(tmp)
        _commit(tmp, final, replace=replace)
        if durable:
            fsync_dir(final.parent)
    finally:
        _OPEN_TEMPS.discard(str(tmp))
        _remove(tmp)


def _commit(tmp: Path, final: Path, *, replace: bool) -> None:
    if replace and not tmp.is_dir():
        os.replace(tmp, final)  # atomic for files, even when final exists
        return
    with _dir_lock(final.parent):
        if final.exists() or final.is_symlink():
            if not replace:
                raise FileExistsError(f"{final} is already committed; it is kept and the new copy discarded")
            aside = temporary_name(final, "old")
            os.rename(final, aside)
            try:
                os.rename(tmp, final)
            except BaseException:
                os.rename(aside, final)
                raise
            _remove(aside)
        else:
            os.rename(tmp, final)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)  # a concurrent cleaner may remove parts of it first
    elif p.exists() or p.is_symlink():
        p.unlink(missing_ok=True)


def write_json(path, obj, *, replace: bool = True) -> Path:
    """obj as indented JSON, written atomically and durably. replace=False keeps an existing file (and raises
    FileExistsError)."""
    with atomic_path(path, replace=replace) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def read_json(path):
    """The JSON in `path`; a missing file raises FileNotFoundError, an unreadable one CacheError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"{path} is not valid JSON ({type(e).__name__}: {e}); delete it to recompute") from e


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


# -------------------------------------------------------------------------------------------------- checksums
def file_checksum(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (the full hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | os.PathLike) -> dict:
    """{"size": bytes, "sha256": hex}: what `check_files` compares a file with."""
    return {"size": Path(path).stat().st_size, "sha256": file_checksum(path)}


def folder_records(folder: str | os.PathLike, *, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """{relative path: file_record} for every file under `folder` (hidden files such as locks, and the names in
    `skip`, left out), in sorted order."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not p.is_symlink() and rel not in skip \
                and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            out[rel] = file_record(p)
    return out


def check_files(folder: str | os.PathLike, records: dict[str, dict]) -> list[tuple[str, str]]:
    """[(relative path, what is wrong)] for the files of `records` (folder_records) that are missing, have
    another size, or fail their checksum: [] when every one is intact."""
    folder = Path(folder)
    problems = []
    for rel, want in records.items():
        p = folder / rel
        if not p.is_file():
            problems.append((rel, "is missing"))
            continue
        size = p.stat().st_size
        if size != want.get("size", size):
            problems.append((rel, f"has {size:,} bytes, {want['size']:,} were written (truncated or damaged)"))
        elif want.get("sha256") and file_checksum(p) != want["sha256"]:
            problems.append((rel, "has the right size but not the bytes that were written (its sha256 differs)"))
    return problems


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


PACKAGE = __name__.rpartition(".")[0] or PACKAGE_DIR.name  # "resonance_utils": absolute imports start with it


def package_modules() -> tuple[str, ...]:
    """The names of the package's modules (the .py stems in PACKAGE_DIR, less __init__), sorted."""
    return tuple(sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__"))


def imported_modules(module: str) -> tuple[str, ...]:
    """The package modules that `module`'s source imports itself (not transitively), sorted: every import
    statement anywhere in the file, those inside functions (lazy imports) included, found by parsing it (ast).

    `from . import a, b` counts a and b (where they are modules), `from .x import y` and `from .x.y import z`
    count x, `import resonance_utils.x` and `from resonance_utils import x` count x; relative imports that reach
    above the package (`from .. import`) name no module of it. Imports by computed name (importlib) are not seen.
    """
    name = _module_name(module)
    return tuple(sorted(set(_imports_in(PACKAGE_DIR / f"{name}.py")) - {name}))


_IMPORTS_SEEN: dict[bytes, tuple[str, ...]] = {}  # sha256 of a source -> the names it imports from the package


def _imports_in(path: Path) -> tuple[str, ...]:
    """The package modules the file `path` imports (parsed once per distinct content: an edited file is parsed
    again, so the answer is never stale)."""
    source = path.read_bytes()
    digest = hashlib.sha256(source).digest()
    if digest not in _IMPORTS_SEEN:
        targets = []
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (base := _absolute_base(node)):
                targets += [base] + [f"{base}.{a.name}" for a in node.names]
        _IMPORTS_SEEN[digest] = tuple(sorted({t.split(".")[1] for t in targets
                                              if t.startswith(PACKAGE + ".")}))
    known = set(package_modules())
    return tuple(m for m in _IMPORTS_SEEN[digest] if m in known)


def _absolute_base(node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom in a top-level module of the package imports from ("" when a relative
    import reaches above the package)."""
    if not node.level:
        return node.module or ""
    parts = PACKAGE.split(".")  # a module's own package; each dot beyond the first goes one package up
    if node.level - 1 >= len(parts):
        return ""
    base = ".".join(parts[:len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def _module_name(module: str) -> str:
    """`module` as a stem of package_modules() ("image_chains" or "resonance_utils.image_chains"); ValueError
    naming it and the valid ones otherwise."""
    name = module[len(PACKAGE) + 1:] if module.startswith(PACKAGE + ".") else module
    valid = package_modules()
    if name not in valid:
        raise ValueError(f"no module {module!r} in the package {PACKAGE} ({PACKAGE_DIR}); valid: {', '.join(valid)}")
    return name


def import_closure(module: str) -> tuple[str, ...]:
    """The package modules that `module` can run: itself and every module it imports, transitively, sorted
    (imported_modules, so imports inside functions count; the modules the package's __init__ imports, which run
    first, count too). Read from the files as they are now."""
    init = PACKAGE_DIR / "__init__.py"  # runs before any module of the package: what it imports is reached too
    todo, seen = [_module_name(module), *(_imports_in(init) if init.exists() else ())], set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imports_in(PACKAGE_DIR / f"{m}.py"))
    return tuple(sorted(seen))


def source_hash_of(module: str) -> str:
    """package_source_hash of import_closure(module): a run key's source part that covers exactly the code the
    setting can run, so that an edit to any module it reaches, directly or not, makes new keys and an edit to any
    other module does not. The package's __init__ is left out (it holds no code a run depends on)."""
    return package_source_hash(import_closure(module))


def params_hash(params: dict) -> str:
    return hash_bytes(json.dumps(params, sort_keys=True, default=_json_default).encode())


def train_once(folder: Path, *, what: str, load, train, done: str = "training.json"):
    """A model cached in `folder`: load(folder) when folder/done exists (written last: a folder without it is
    incomplete), else train() (which saves the model and writes `done`). One trainer per folder: a second
    process waits for the first's lock, then loads what it saved."""
    folder = Path(folder)
    with lock(folder.parent / f".{folder.name}.lock", what=what):
        if (folder / done).exists():
            return load(folder)
        return train()


def run_key(params: dict, input_fingerprint: str, source_hash: str | None = None) -> str:
    """The name of a run folder: parameters that change the chain + package source + input data."""
    src = package_source_hash() if source_hash is None else source_hash
    return hash_bytes(
        json.dumps({"params": params, "input": input_fingerprint, "source": src}, sort_keys=True,
                   default=_json_default).encode()
    )


def run_dir(setting: str, params: dict, input_fingerprint: str, *, modules: tuple[str, ...] | None = None) -> Path:
    """data/runs/<setting>/<key>/, created with a run.json that says what made it (the first writer's copy is
    kept). `modules`: see package_source_hash."""
    source = package_source_hash(modules)
    key = run_key(params, input_fingerprint, source)
    d = data_dir() / "runs" / setting / key
    info = d / "run.json"
    if not info.exists():
        with contextlib.suppress(FileExistsError):
            write_json(info, {"setting": setting, "params": params, "input_fingerprint": input_fingerprint,
                              "source_hash": source, "source_modules": modules or "all", "created": _now()},
                       replace=False)
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


MANIFEST = "MANIFEST.json"
RECORDS_DIR = ".manifest"  # figures/.manifest/<notebook>.json: each notebook's own records, MANIFEST.json's source


class ManifestWarning(UserWarning):
    """A damaged manifest (or per-notebook record) was moved aside and rebuilt."""


def run_id() -> str:
    """The id of the run that writes outputs: $RESONANCE_RUN_ID (set by run_all.sh for each notebook it
    executes), else one per process. Recorded with every output, so a later run can tell whether the files in a
    figures folder are the ones a given run wrote."""
    return os.environ.get("RESONANCE_RUN_ID") or _PROCESS_RUN_ID


_PROCESS_RUN_ID = f"process-{uuid.uuid4().hex[:12]}"


def _manifest_lock(figures: Path):
    return lock(figures / ".MANIFEST.lock", what=f"the manifest of {figures}", notify=lambda message: None)


def _read_json_or_none(path: Path):
    """(value, None) for a readable JSON object, (None, reason) for a damaged one, (None, None) when absent."""
    if not path.exists():
        return None, None
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{type(e).__name__}: {e}"
    if not isinstance(value, dict):
        return None, f"holds a JSON {type(value).__name__}, not an object"
    return value, None


def _move_aside(path: Path, reason: str) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}-{secrets.token_hex(2)}")
    os.replace(path, aside)
    return aside


def _records(figures: Path) -> dict[str, dict]:
    """{notebook: {output: record}} from figures/.manifest/, a damaged record file moved aside with a warning."""
    out = {}
    folder = figures / RECORDS_DIR
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.json")):
        value, bad = _read_json_or_none(p)
        if bad:
            aside = _move_aside(p, bad)
            warnings.warn(f"the manifest record {p} was damaged ({bad}); moved aside to {aside.name}. Its entries "
                          f"stay in {figures / MANIFEST} if that is intact; rerun notebook {p.stem} to record them "
                          "again", ManifestWarning, stacklevel=3)
            continue
        out[p.stem] = value
    return out


def _load_manifest(figures: Path) -> dict[str, dict]:
    """MANIFEST.json merged with the per-notebook records (call under the manifest lock). A damaged manifest is
    moved aside with a warning naming it and rebuilt from the records; entries of a legacy manifest that no
    record holds yet are copied into the records (so that they survive a later damage)."""
    manifest = figures / MANIFEST
    records = _records(figures)
    current, bad = _read_json_or_none(manifest)
    if bad:
        aside = _move_aside(manifest, bad)
        n = sum(len(r) for r in records.values())
        warnings.warn(f"{manifest} was damaged ({bad}); moved aside to {aside.name} and rebuilt from the "
                      f"per-notebook records in {figures / RECORDS_DIR}/ ({n} entries of {len(records)} "
                      "notebook(s)); outputs of notebooks without a record are listed again when those notebooks "
                      "run next", ManifestWarning, stacklevel=3)
        current = {}
    current = current or {}
    known = {f for r in records.values() for f in r}
    legacy: dict[str, dict] = {}
    for f, rec in current.items():
        if f not in known and isinstance(rec, dict):
            legacy.setdefault(str(rec.get("notebook") or "_unknown"), {})[f] = rec
    for stem, entries in legacy.items():
        records[stem] = {**records.get(stem, {}), **entries}
        write_json(figures / RECORDS_DIR / f"{stem}.json", records[stem])
    merged = {}
    for stem in sorted(records, key=lambda s: max((str(r.get("created", "")) for r in records[s].values()),
                                                  default="")):
        merged.update(records[stem])
    return merged


def read_manifest(figures: str | os.PathLike) -> dict[str, dict]:
    """{output file: record} of a figures folder (empty when there is none); a damaged manifest is repaired
    first (check_manifest)."""
    figures = Path(figures)
    if not figures.is_dir():
        return {}
    with _manifest_lock(figures):
        return _load_manifest(figures)


def check_manifest(figures: str | os.PathLike) -> dict[str, dict]:
    """Check figures/MANIFEST.json before a notebook computes anything: a damaged one is moved aside (with a
    ManifestWarning naming both files) and rebuilt from figures/.manifest/, and written back; returns it."""
    figures = Path(figures)
    if not (figures / MANIFEST).exists() and not (figures / RECORDS_DIR).is_dir():
        return {}
    with _manifest_lock(figures):
        before, bad = _read_json_or_none(figures / MANIFEST)
        merged = _load_manifest(figures)
        if bad or merged != before:
            write_json(figures / MANIFEST, merged)
        return merged


def update_manifest(figures: Path, entries: dict[str, dict]) -> Path:
    """Record entries (output file name -> record, whose "notebook" names its notebook) under the manifest lock:
    first in that notebook's own record, figures/.manifest/<notebook>.json, then in figures/MANIFEST.json, the
    merge of every notebook's records (rebuilt, not trusted, when damaged)."""
    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    manifest = figures / MANIFEST
    with _manifest_lock(figures):
        current = _load_manifest(figures)
        by_stem: dict[str, dict] = {}
        for f, rec in entries.items():
            by_stem.setdefault(str(rec.get("notebook") or "_unknown"), {})[f] = rec
        for stem, new in by_stem.items():
            path = figures / RECORDS_DIR / f"{stem}.json"
            old, _ = _read_json_or_none(path)
            write_json(path, {**(old or {}), **new})
        current.update(entries)
        write_json(manifest, current)
    return manifest
