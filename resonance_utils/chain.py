"""The generational Markov chain: X_{n+1} = T(X_n), the only loop over generations in the project.

A run folder holds gen_000/ (the initial state), gen_001/, ... Each generation is written into a temporary
folder, flushed to disk and renamed when complete (store.atomic_path), so an interrupted run resumes from the
last complete generation and a rerun with the same run folder computes nothing. Randomness comes from (seed,
generation) alone, so a resumed chain draws exactly what an uninterrupted one would.

One writer per run folder: generations are computed under a lock on run_folder/.lock (the OS's, released when
its holder exits or dies). A second run of the same chain waits for the first and reads what it committed; if
the first died, the second takes over from its last committed generation (and removes its temporary folder). A
committed generation is never replaced, so the first run to compute a chain is the one every later run reads.

Every file of a generation is listed in its meta.json with its size and sha256, and checked when the generation
is read back: a damaged state.npz, features.npy or model is a CacheError naming the file and the folder to
delete. Files added to a committed generation later (derived features) go through `save_extra` and are recorded
in its extras.json; `load_extra` checks them the same way. A meta.json written before checksums existed is read
without them (unverified).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import runtime, store

GEN_RE = re.compile(r"^gen_(\d{3,})$")
META = "meta.json"
EXTRAS = "extras.json"  # files added to a committed generation: name -> {"size", "sha256"}
LOCK = ".lock"  # in the run folder: held while generations are computed
META_FORMAT = 2  # 2: meta.json lists every file with its size and sha256


# who hears of each generation a chain has (committed or read back): listener(generation, run_dir), set with
# `listening`; the ensemble's progress bar counts generations of chains that are still running with it
_generation_listener: contextvars.ContextVar[Callable[[int, Path | None], None] | None] = \
    contextvars.ContextVar("generation_listener", default=None)


@contextlib.contextmanager
def listening(listener: Callable[[int, Path | None], None]):
    """Within the block, every run_chain calls listener(generation, run_dir) after each generation it reads back
    or commits (generation 0 included)."""
    token = _generation_listener.set(listener)
    try:
        yield
    finally:
        _generation_listener.reset(token)


def _heard(generation: int, run_dir: Path | None) -> None:
    listener = _generation_listener.get()
    if listener is not None:
        listener(generation, run_dir)


class ChainWarning(UserWarning):
    """Something in a run folder was repaired (a damaged derived file removed, to be recomputed)."""


@dataclass
class StepContext:
    """What the operator T may use besides the current state."""
    generation: int  # the index of the state being made (1 for the first step)
    seed: int  # the chain's seed; derive streams with runtime.generation_seed(seed, generation, stream)
    history: list  # all earlier states, history[-1] is the current one (for the accumulate regime)
    out_dir: Path | None  # where this generation is being written (models and extras go here)
    prev_dir: Path | None  # the previous generation's folder (its model, for fine-tuning)

    @property
    def rng(self) -> np.random.Generator:
        return runtime.generation_rng(self.seed, self.generation)


@dataclass
class ChainResult:
    states: list
    metrics: list[dict]
    seconds: list[float]
    computed: list[int] = field(default_factory=list)  # generations computed in this call (not read back)
    run_dir: Path | None = None

    def __len__(self):
        return len(self.states)


def save_arrays(state, folder: Path) -> None:
    """Default state format: an array, or a dict of arrays, as folder/state.npz."""
    arrays = state if isinstance(state, dict) else {"state": state}
    np.savez(folder / "state.npz", **arrays)


def load_arrays(folder: Path):
    with np.load(folder / "state.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays["state"] if list(arrays) == ["state"] else arrays


def gen_dir(run_dir: Path, generation: int) -> Path:
    return Path(run_dir) / f"gen_{generation:03d}"


def complete_generations(run_dir: Path) -> list[int]:
    """Generations 0..k that are complete (meta.json written last), stopping at the first gap."""
    run_dir = Path(run_dir)
    found = set()
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            m = GEN_RE.match(p.name)
            if m and (p / META).exists():
                found.add(int(m.group(1)))
    done = []
    while len(done) in found:
        done.append(len(done))
    return done


# ------------------------------------------------------------------------------------------- damaged generations
def damaged_generation_error(run_dir: Path, generation: int, problem: str) -> store.CacheError:
    """The CacheError for a damaged generation: what is wrong, what is intact, and the one fix (delete this
    generation's folder and every later one, which were computed from it)."""
    run_dir, g = Path(run_dir), int(generation)
    folder = gen_dir(run_dir, g)
    later = sorted((int(m.group(1)), p.name) for p in run_dir.iterdir() if (m := GEN_RE.match(p.name))
                   and int(m.group(1)) > g) if run_dir.is_dir() else []
    intact = ("It is the chain's first generation" if g == 0 else "Generation 0 is intact" if g == 1
              else f"Generations 0-{g - 1} are intact")
    src = "the initial state" if g == 0 else f"generation {g - 1}"
    if not later:
        fix = f"delete {folder}; the next run recomputes it from {src}"
    else:
        names = [n for _, n in later]
        shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} ... {names[-1]} ({len(names)} folders)"
        fix = (f"delete {folder.name} and the later {shown} (computed from it) in {run_dir}; the next run "
               f"recomputes them from {src}")
    return store.CacheError(f"generation {g} in {folder} is damaged: {problem}. {intact}. Fix: {fix}.")


def read_generation(run_dir: Path, generation: int, load: Callable = load_arrays) -> tuple[Any, dict]:
    """(state, meta) of a committed generation, every file first checked against the size and sha256 its
    meta.json lists (a meta.json without that list is read unverified). Any damage raises the CacheError of
    damaged_generation_error; a damaged extra (save_extra) is removed with a ChainWarning instead, to be
    recomputed where it is needed."""
    folder = gen_dir(run_dir, generation)
    try:
        meta = store.read_json(folder / META)
        if not isinstance(meta, dict):
            raise store.CacheError(f"{folder / META} holds no JSON object")
    except (store.CacheError, OSError) as e:
        raise damaged_generation_error(run_dir, generation, f"{folder / META} is unreadable ({e})") from e
    files = meta.get("files")
    if isinstance(files, dict) and files:
        problems = store.check_files(folder, files)
        if problems:
            raise damaged_generation_error(run_dir, generation,
                                           "; ".join(f"{folder / rel} {why}" for rel, why in problems))
    _drop_damaged_extras(folder)
    try:
        state = load(folder)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise damaged_generation_error(run_dir, generation,
                                       f"its state cannot be read ({type(e).__name__}: {e})") from e
    return state, meta


# ---------------------------------------------------------------------------------- files added after the commit
def _read_extras(folder: Path) -> dict:
    try:
        value = store.read_json(Path(folder) / EXTRAS)
    except (FileNotFoundError, store.CacheError):
        return {}
    return value if isinstance(value, dict) else {}


def _drop_damaged_extras(folder: Path) -> None:
    extras = _read_extras(folder)
    bad = store.check_files(folder, extras) if extras else []
    if not bad:
        return
    with store._dir_lock(folder):
        extras = _read_extras(folder)
        for rel, why in store.check_files(folder, extras):
            (Path(folder) / rel).unlink(missing_ok=True)
            extras.pop(rel, None)
            warnings.warn(f"{Path(folder) / rel} {why}: removed it; it is recomputed from the generation's own "
                          "files where it is needed next", ChainWarning, stacklevel=4)
        store.write_json(Path(folder) / EXTRAS, extras)


def save_extra(folder: str | os.PathLike, name: str, write: Callable[[Path], Any]) -> Path:
    """Add the file `name` to a committed generation folder (derived data, e.g. features computed later):
    write(path) writes it to a temporary path; it is committed atomically and durably, and its size and sha256
    are recorded in the folder's extras.json, so that read_generation and load_extra check it."""
    folder = Path(folder)
    if Path(name).name != name or name in (META, EXTRAS) or name.startswith("."):
        raise ValueError(f"save_extra: {name!r} must be a plain file name other than {META} and {EXTRAS}")
    path = folder / name
    with store._dir_lock(folder):
        with store.atomic_path(path) as tmp:
            write(tmp)
        extras = _read_extras(folder)
        extras[name] = store.file_record(path)
        store.write_json(folder / EXTRAS, extras)
    return path


def load_extra(folder: str | os.PathLike, name: str, load: Callable[[Path], Any] = np.load):
    """load(folder/name), after checking the file against its record: extras.json (save_extra) or the
    generation's meta.json. A missing file raises FileNotFoundError; a damaged one a CacheError naming it and
    the fix (an extra: delete the file, it is recomputed; a file of the generation itself: delete the
    generation's folder, see damaged_generation_error). A file with no record (written by older code) is read
    unverified, and a failure to read it is reported the same way."""
    folder, name = Path(folder), str(name)
    path = folder / name
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    own = {}
    try:
        meta = store.read_json(folder / META)
        own = meta.get("files") or {} if isinstance(meta, dict) else {}
    except (FileNotFoundError, store.CacheError):
        pass
    rec = _read_extras(folder).get(name)

    def fail(problem, cause=None):
        if name in own:
            m = GEN_RE.match(folder.name)
            if m:
                raise damaged_generation_error(folder.parent, int(m.group(1)), f"{path} {problem}") from cause
        raise store.CacheError(f"{path} {problem}. Fix: delete {path}; it is recomputed from the generation's "
                               "own files the next time it is needed.") from cause

    want = rec or own.get(name)
    if want:
        problems = store.check_files(folder, {name: want})
        if problems:
            fail(problems[0][1])
    try:
        return load(path)
    except Exception as e:  # noqa: BLE001
        fail(f"cannot be read ({type(e).__name__}: {e})", e)


def read_chain(run_dir, n_generations: int, *, load: Callable = load_arrays) -> ChainResult:
    """Generations 0..n_generations of a committed chain, read back and checked (read_generation), without its
    operator: what a notebook reads of another's chain. Fewer complete generations is a FileNotFoundError."""
    run_dir = Path(run_dir)
    done = complete_generations(run_dir)
    if len(done) <= n_generations:
        raise FileNotFoundError(f"{run_dir} holds generations 0-{len(done) - 1}, not 0-{n_generations}"
                                if done else f"{run_dir} holds no complete generation")
    states, mets, secs = [], [], []
    for g in range(n_generations + 1):
        state, meta = read_generation(run_dir, g, load)
        states.append(state)
        mets.append(meta.get("metrics", {}))
        secs.append(meta.get("seconds", 0.0))
    return ChainResult(states=states, metrics=mets, seconds=secs, run_dir=run_dir)


# -------------------------------------------------------------------------------------------------------- runner
def run_chain(step: Callable[[Any, StepContext], Any], initial, n_generations: int, *, run_dir=None,
              seed: int = 0, save: Callable = save_arrays, load: Callable = load_arrays,
              metrics: Callable[[Any, StepContext], dict] | None = None, desc: str = "generations",
              progress: bool = True) -> ChainResult:
    """Run (or resume, or read back) a chain of n_generations steps after the initial state.

    step(state, ctx) -> next state; metrics(state, ctx) -> dict stored with each generation (also gen 0).
    With run_dir=None the chain lives in memory only. `initial` may be a callable, so that an expensive
    initial state is only built when gen_000 is not cached yet.

    With a run_dir: the committed generations are read back (checked, see read_generation); the missing ones are
    computed under the run folder's lock. A run that finds the lock held waits (saying so on stderr), then
    reads what the holder committed and computes only what is still missing; if the holder died, its temporary
    folders are removed and this run takes over. Each generation is committed with replace=False: nothing
    committed is ever replaced.
    """
    from tqdm.auto import tqdm

    if not isinstance(n_generations, (int, np.integer)) or isinstance(n_generations, bool) or n_generations < 0:
        raise ValueError(f"n_generations must be a whole number >= 0, got {n_generations!r}")
    run_dir = Path(run_dir) if run_dir is not None else None
    states, mets, secs, computed = [], [], [], []

    def read_back():
        for g in complete_generations(run_dir)[len(states): n_generations + 1]:
            state, meta = read_generation(run_dir, g, load)
            states.append(state)
            mets.append(meta.get("metrics", {}))
            secs.append(meta.get("seconds", 0.0))
            _heard(g, run_dir)

    if run_dir is not None:
        read_back()
        _sweep_temporaries(run_dir)
    if len(states) > n_generations:
        return ChainResult(states=states, metrics=mets, seconds=secs, computed=computed, run_dir=run_dir)

    with _writer(run_dir, desc):
        if run_dir is not None:
            read_back()  # what a run we waited for committed meanwhile
        bar = tqdm(total=n_generations, initial=max(len(states) - 1, 0), desc=desc, disable=not progress,
                   leave=False)
        try:
            while len(states) <= n_generations:
                g = len(states)
                ctx = StepContext(generation=g, seed=seed, history=states, out_dir=None,
                                  prev_dir=gen_dir(run_dir, g - 1) if run_dir is not None and g else None)
                t0 = time.perf_counter()
                if run_dir is None:
                    state = _make(step, initial, states, ctx)
                    met = metrics(state, ctx) if metrics else {}
                else:
                    state, met = _compute_and_commit(step, initial, states, ctx, run_dir, save, load, metrics, t0)
                states.append(state)
                mets.append(met)
                secs.append(time.perf_counter() - t0)
                computed.append(g)
                _heard(g, run_dir)
                if g:
                    bar.update(1)
        finally:
            bar.close()
    return ChainResult(states=states, metrics=mets, seconds=secs, computed=computed, run_dir=run_dir)


def _writer(run_dir: Path | None, desc: str):
    """The run folder's lock (nothing for an in-memory chain), with the temporaries of dead writers removed."""
    if run_dir is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def held():
        with store.lock(run_dir / LOCK, what=f"{desc} in {run_dir} (another run is computing it; what it commits "
                                             "is read, not recomputed)"):
            store.remove_stale_temporaries(run_dir, pattern=r"gen_\d+", force=True)
            yield
    return held()


def _sweep_temporaries(run_dir: Path) -> None:
    """Remove temporary generation folders of runs that died, when no run is computing in this folder now."""
    if not run_dir.is_dir() or not any(store.TEMP_RE.match(p.name) for p in run_dir.iterdir()):
        return
    with store.try_lock(run_dir / LOCK) as got:
        if got:
            store.remove_stale_temporaries(run_dir, pattern=r"gen_\d+", force=True)


def _compute_and_commit(step, initial, states, ctx, run_dir, save, load, metrics, t0):
    g = ctx.generation
    try:
        with store.atomic_path(gen_dir(run_dir, g), replace=False) as tmp:
            tmp.mkdir(parents=True)
            ctx.out_dir = tmp
            state = _make(step, initial, states, ctx)
            save(state, tmp)
            met = metrics(state, ctx) if metrics else {}
            store.write_json(tmp / META, {
                "generation": g, "seconds": round(time.perf_counter() - t0, 4), "metrics": met,
                "format": META_FORMAT, "files": store.folder_records(tmp, skip=(META,)),
                "written_by": {"pid": os.getpid(), "host": socket.gethostname(), "run_id": store.run_id(),
                               "at": store._now()}})
    except FileExistsError:  # committed by a writer that did not take the lock (older code): the first one wins
        warnings.warn(f"{gen_dir(run_dir, g)} was committed by another run meanwhile; reading that one",
                      ChainWarning, stacklevel=3)
        state, meta = read_generation(run_dir, g, load)
        return state, meta.get("metrics", {})
    finally:
        ctx.out_dir = None
    return state, met


def _make(step, initial, states, ctx):
    if ctx.generation == 0:
        return initial() if callable(initial) else initial
    return step(states[-1], ctx)


# ------------------------------------------------------------------------------------------ retraining regimes
REGIMES = ("replace", "accumulate", "fresh")


def concat_states(states: list[dict]) -> dict:
    """Concatenate labelled sets {"images": (N,...), "labels": (N,)} along the sample axis."""
    keys = states[0].keys()
    return {k: np.concatenate([s[k] for s in states]) for k in keys}


def fresh_count(n: int, fresh_fraction: float) -> int:
    """How many of n samples a fresh share replaces, round(fresh_fraction n): the retraining chains' training sets
    (training_set) and latent feedback's generations (image_chains.LatentFeedback) count it alike."""
    if not 0.0 <= fresh_fraction <= 1.0:
        raise ValueError(f"fresh_fraction must be in [0, 1], got {fresh_fraction}")
    return int(round(fresh_fraction * n))


def training_set(history: list[dict], *, regime: str = "replace", real: dict | None = None,
                 fresh_fraction: float = 0.0, rng: np.random.Generator | None = None) -> dict:
    """The data the next model is trained on, from the chain so far (history[0] is the real data).

    replace:    only the last generation (the pure feedback loop);
    accumulate: every generation so far, the real data included (data accumulates, nothing is thrown away);
    fresh:      the last generation with a `fresh_fraction` of its samples swapped for new draws from `real`
                (a pool of real data, default history[0]).
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; valid: {', '.join(REGIMES)}")
    if not history:
        raise ValueError("the chain has no state yet")
    last = history[-1]
    if regime == "replace":
        return last
    if regime == "accumulate":
        return concat_states(history)
    pool = real if real is not None else history[0]
    rng = rng if rng is not None else np.random.default_rng(0)
    n = len(last["labels"])
    k = fresh_count(n, fresh_fraction)
    if k > len(pool["labels"]):
        raise ValueError(f"fresh_fraction={fresh_fraction} needs {k} real samples, the pool has {len(pool['labels'])}")
    keep = rng.choice(n, n - k, replace=False)
    new = rng.choice(len(pool["labels"]), k, replace=False)
    return {key: np.concatenate([last[key][keep], pool[key][new]]) for key in last}
