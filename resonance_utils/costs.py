"""Operation costs of a rehearsal: the time, floating-point work and memory of each hot operation, as it runs.

The package's hot operations (diffusion training and DDIM sampling, autoencoder and classifier training, feature
extraction, CycleGAN training and translation) run inside `op(...)`. Off a rehearsal this is one environment
lookup and nothing else. When $RESONANCE_COSTS names a file (run_notebooks --rehearse sets it for each notebook's
kernel), each call is timed, its FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on the real model
(measured: no measurable slowdown on the paper-width UNet), the bytes of the tensors autograd saves for the
backward pass are summed (per image-step: the activations a training batch holds, which is what grows with the
batch), and the totals per (operation, model) are written to that file after every call, with the process's peak
memory, so a notebook that fails half-way still leaves them.

A call inside another recorded call is recorded as its own operation and left out of the outer one (sampling
decodes through the autoencoder: the decoding is counted as autoencoder passes, the rest as denoising), as a
profiler's self time is.

The hot functions are listed once, in HOT, and wrapped by `install()` (config.resolve calls it in a notebook when
$RESONANCE_COSTS is set) rather than edited: their modules' source enters the chains' run keys, and a rehearsal
must neither change those keys nor the code paths it rehearses. Every call reaches them through their module's
namespace (the package imports them inside functions, at call time), so the wrapped function is the one called.
"""
from __future__ import annotations

import contextlib
import os
import resource
import time

ENV = "RESONANCE_COSTS"
_OPS: dict[str, dict] = {}
_STACK: list[dict] = []  # the recorded calls in progress, innermost last
_LAST_WRITE = [-1e9, False]  # when the file was last written; whether flush runs at exit


def recording() -> bool:
    return bool(os.environ.get(ENV))


def model_tag(*modules) -> str:
    """What tells two models apart in the plan: class names and parameter count (the paper widths differ)."""
    names = "+".join(sorted({type(m).__name__ for m in modules}))
    n = sum(p.numel() for m in modules for p in m.parameters())
    return f"{names} {n / 1e6:.2f}M"


class _SavedBytes:
    """Counts the bytes of the tensors autograd saves for backward (torch.autograd.graph.saved_tensors_hooks);
    parameters saved again and again count once per save, a small overstatement next to the activations."""

    def __init__(self):
        import torch

        self.total = 0
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def pack(self, t):
        self.total += t.nbytes
        return t

    def __enter__(self):
        self.hooks.__enter__()

    def __exit__(self, *exc):
        return self.hooks.__exit__(*exc)


@contextlib.contextmanager
def op(name: str, *, unit: str, units: float = 0, model: str = "", batch: int = 0):
    """Record one call of the operation `name` on `model` (model_tag) doing `units` of work (in `unit`, e.g.
    "image-steps"), in batches of `batch` images; the block may set them later in the dict it is given
    (rec["units"] = ...). A no-op unless $RESONANCE_COSTS is set."""
    call = {"units": units, "model": model, "batch": batch}
    path = os.environ.get(ENV)
    if not path:
        yield call
        return
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    children = {"seconds": 0.0, "flops": 0, "bytes": 0}  # what the recorded calls inside this one cost
    _STACK.append(children)
    flops, saved = FlopCounterMode(display=False), _SavedBytes()
    try:
        t0 = time.perf_counter()
        with flops, saved:
            yield call
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # kernels are asynchronous: the time is the GPU's, not the launch's
        inclusive = {"seconds": time.perf_counter() - t0, "flops": int(flops.get_total_flops()),
                     "bytes": saved.total}
    finally:
        _STACK.pop()
    if _STACK:
        for k, v in inclusive.items():
            _STACK[-1][k] += v
    seconds, n_flops, n_bytes = (inclusive[k] - children[k] for k in ("seconds", "flops", "bytes"))
    units, model, batch = call["units"], call["model"], call["batch"]
    rec = _OPS.setdefault(f"{name} | {model}", {"op": name, "model": model, "unit": unit, "calls": 0, "units": 0,
                                                "seconds": 0.0, "flops": 0, "saved_bytes_per_unit_max": 0.0,
                                                "batch_max": 0})
    rec["calls"] += 1
    rec["units"] += units
    rec["seconds"] += seconds
    rec["flops"] += n_flops
    rec["batch_max"] = max(rec["batch_max"], int(batch))
    if units:
        rec["saved_bytes_per_unit_max"] = max(rec["saved_bytes_per_unit_max"], n_bytes / units)
    now = time.monotonic()
    if now - _LAST_WRITE[0] > 1.0:  # many small calls (FID distances): at most one write a second, and at exit
        _write(path)
        _LAST_WRITE[0] = now


def recorded(name: str, *, unit: str, units, model=None, batch=None):
    """Decorate a hot function so that each call is one `op`: units(args, result), model(args, result) and
    batch(args, result) read the call's bound arguments (defaults applied) and its result."""
    import functools
    import inspect

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*a, **kw):
            if not os.environ.get(ENV):
                return fn(*a, **kw)
            bound = signature.bind(*a, **kw)
            bound.apply_defaults()
            args = bound.arguments
            with op(name, unit=unit) as rec:
                out = fn(*a, **kw)
                rec.update(units=units(args, out), model=model(args, out) if model else "",
                           batch=batch(args, out) if batch else 0)
            return out
        return call
    return wrap


def _ddim_units(a, out) -> int:
    from .diffusion import ddim_timesteps

    guided = 2 if a["guidance_scale"] != 1.0 else 1  # guidance: the conditional and the null label, one batch
    return a["n"] * len(ddim_timesteps(a["model"], a["strength"], a["ddim_steps"])) * guided


def _n(key):
    return lambda a, out: len(a[key])


# module, function, operation, unit, units(args, result), model(args, result), batch(args, result)
HOT = (
    ("diffusion", "train_diffusion", "diffusion training", "image-steps",
     lambda a, out: len(out[1]) * a["batch_size"], lambda a, out: model_tag(a["model"]),
     lambda a, out: a["batch_size"]),
    ("diffusion", "_ddim", "DDIM denoising", "UNet image-evaluations", _ddim_units,
     lambda a, out: model_tag(a["model"]), lambda a, out: a["batch_size"] or 0),
    ("latent", "train_autoencoder", "autoencoder training", "image-steps",
     lambda a, out: out[1]["steps"] * a["spec"].batch_size, lambda a, out: model_tag(out[0].vae),
     lambda a, out: a["spec"].batch_size),
    ("latent", "LatentSpace.encode", "autoencoder passes", "images (encoded or decoded)", _n("images"),
     lambda a, out: model_tag(a["self"].vae), lambda a, out: 0),
    ("latent", "LatentSpace.decode", "autoencoder passes", "images (encoded or decoded)", _n("latents"),
     lambda a, out: model_tag(a["self"].vae), lambda a, out: 0),
    ("features", "_fit", "classifier training", "image-steps (epochs x images)",
     lambda a, out: round(a["epochs"] * len(a["train"].images)), lambda a, out: model_tag(out),
     lambda a, out: a["batch_size"]),
    ("features", "_batched", "classifier features", "images", _n("images"), lambda a, out: model_tag(a["model"]),
     lambda a, out: a["batch_size"]),
    ("features", "inception_features", "Inception features", "images", _n("images"),
     lambda a, out: model_tag(a["model"]), lambda a, out: a["batch_size"]),
    ("features", "mobilenet_outputs", "MobileNetV2 features", "images", _n("images"),
     lambda a, out: model_tag(a["model"]), lambda a, out: a["batch_size"]),
    # FID's linear algebra runs on the CPU (numpy) even on a GPU machine: eigendecompositions of dim x dim matrices
    ("metrics", "frechet_distance", "FID distance", "distances", lambda a, out: 1,
     lambda a, out: f"{len(a['mu1'])}-d features", None),
    ("metrics", "_fd_halves", "FID re-split distance", "distances", lambda a, out: 1,
     lambda a, out: f"{a['a'].mean.shape[0]}-d features", None),
    ("metrics", "_fid_first_order_variance", "FID first-order variance", "evaluations", lambda a, out: 1,
     lambda a, out: f"{a['p'].shape[1]}-d features", None),
    ("cyclegan", "train_cyclegan", "CycleGAN training", "image-pair-steps",
     lambda a, out: a["steps"] * a["batch_size"], lambda a, out: model_tag(a["model"]),
     lambda a, out: a["batch_size"]),
    ("cyclegan", "_run_generators", "CycleGAN translation", "generator image-passes",
     lambda a, out: len(a["images"]) * len(a["generators"]), lambda a, out: model_tag(*a["generators"]),
     lambda a, out: a["batch_size"]),
)


def install() -> bool:
    """Wrap the HOT functions so that each call is recorded (once per process; only when recording)."""
    import importlib

    if not recording():
        return False
    if not _LAST_WRITE[1]:
        import atexit

        atexit.register(flush)
        _LAST_WRITE[1] = True
    for module, func, name, unit, units, model, batch in HOT:
        owner = importlib.import_module(f"{__package__}.{module}")
        *path, attr = func.split(".")  # a method: Class.method
        for part in path:
            owner = getattr(owner, part)
        fn = getattr(owner, attr)
        if not getattr(fn, "_recorded", False):
            wrapped = recorded(name, unit=unit, units=units, model=model, batch=batch)(fn)
            wrapped._recorded = True
            setattr(owner, attr, wrapped)
    return True


def flush() -> None:
    """Write what was recorded now (op() writes at most once a second; this runs at exit too)."""
    if _OPS and os.environ.get(ENV):
        _write(os.environ[ENV])


def peak_memory() -> dict:
    """This process's peak resident memory (and the GPU's peak allocation, with CUDA), in bytes."""
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # Linux: KiB
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


def _write(path: str) -> None:
    from . import store

    store.write_json(path, {"ops": list(_OPS.values()), **peak_memory()})
