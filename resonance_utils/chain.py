"""The generational Markov chain: X_{n+1} = T(X_n), the only loop over generations in the project.

A run folder holds gen_000/ (the initial state), gen_001/, ... Each generation is written into a temporary
folder and renamed when complete, so an interrupted run resumes from the last complete generation and a rerun
with the same run folder computes nothing. Randomness comes from (seed, generation) alone, so a resumed chain
draws exactly what an uninterrupted one would.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import runtime, store

GEN_RE = re.compile(r"^gen_(\d{3,})$")


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
            if m and (p / "meta.json").exists():
                found.add(int(m.group(1)))
    done = []
    while len(done) in found:
        done.append(len(done))
    return done


def run_chain(step: Callable[[Any, StepContext], Any], initial, n_generations: int, *, run_dir=None,
              seed: int = 0, save: Callable = save_arrays, load: Callable = load_arrays,
              metrics: Callable[[Any, StepContext], dict] | None = None, desc: str = "generations",
              progress: bool = True) -> ChainResult:
    """Run (or resume, or read back) a chain of n_generations steps after the initial state.

    step(state, ctx) -> next state; metrics(state, ctx) -> dict stored with each generation (also gen 0).
    With run_dir=None the chain lives in memory only. `initial` may be a callable, so that an expensive
    initial state is only built when gen_000 is not cached yet.
    """
    from tqdm.auto import tqdm

    if not isinstance(n_generations, (int, np.integer)) or isinstance(n_generations, bool) or n_generations < 0:
        raise ValueError(f"n_generations must be a whole number >= 0, got {n_generations!r}")
    run_dir = Path(run_dir) if run_dir is not None else None
    states, mets, secs, computed = [], [], [], []

    done = complete_generations(run_dir) if run_dir is not None else []
    for g in done[: n_generations + 1]:  # read back what is cached
        folder = gen_dir(run_dir, g)
        try:
            states.append(load(folder))
            meta = store.read_json(folder / "meta.json")
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
            raise store.CacheError(
                f"generation {g} in {folder} is unreadable ({type(e).__name__}: {e}). Generations 0-{g - 1} are "
                f"intact; delete {folder} (and later gen_* folders) to recompute from there.") from e
        mets.append(meta.get("metrics", {}))
        secs.append(meta.get("seconds", 0.0))

    bar = tqdm(total=n_generations, initial=max(len(states) - 1, 0), desc=desc, disable=not progress,
               leave=False)
    try:
        while len(states) <= n_generations:
            g = len(states)
            ctx = StepContext(generation=g, seed=seed, history=states,
                              out_dir=None, prev_dir=gen_dir(run_dir, g - 1) if run_dir is not None and g else None)
            t0 = time.perf_counter()
            if run_dir is None:
                state = _make(step, initial, states, ctx)
                met = metrics(state, ctx) if metrics else {}
            else:
                with store.atomic_path(gen_dir(run_dir, g)) as tmp:
                    tmp.mkdir(parents=True)
                    ctx.out_dir = tmp
                    state = _make(step, initial, states, ctx)
                    save(state, tmp)
                    met = metrics(state, ctx) if metrics else {}
                    seconds = time.perf_counter() - t0
                    store.write_json(tmp / "meta.json", {"generation": g, "seconds": round(seconds, 4),
                                                         "metrics": met})
            states.append(state)
            mets.append(met)
            secs.append(time.perf_counter() - t0)
            computed.append(g)
            if g:
                bar.update(1)
    finally:
        bar.close()
    return ChainResult(states=states, metrics=mets, seconds=secs, computed=computed, run_dir=run_dir)


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
    if not 0.0 <= fresh_fraction <= 1.0:
        raise ValueError(f"fresh_fraction must be in [0, 1], got {fresh_fraction}")
    pool = real if real is not None else history[0]
    rng = rng if rng is not None else np.random.default_rng(0)
    n = len(last["labels"])
    k = int(round(fresh_fraction * n))
    if k > len(pool["labels"]):
        raise ValueError(f"fresh_fraction={fresh_fraction} needs {k} real samples, the pool has {len(pool['labels'])}")
    keep = rng.choice(n, n - k, replace=False)
    new = rng.choice(len(pool["labels"]), k, replace=False)
    return {key: np.concatenate([last[key][keep], pool[key][new]]) for key in last}
