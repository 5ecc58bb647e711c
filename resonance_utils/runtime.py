"""Device choice, seeding, threads and mixed precision: the one place that decides where and how torch runs.

torch is imported lazily so that notebooks that never touch it (the Lucier room) stay light.
"""
from __future__ import annotations

import os
import random

import numpy as np

_THREADS_SET = False


def set_threads(n: int | None = None) -> int:
    """Pin torch's intra-op threads once. Default: every core, capped at 8.

    On a shared 2-core machine two busy torch pools slow each other 10x, so one process owns the cores.
    $RESONANCE_THREADS overrides the default.
    """
    global _THREADS_SET
    import torch

    if n is None:
        n = int(os.environ.get("RESONANCE_THREADS", "0")) or min(os.cpu_count() or 1, 8)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    if not _THREADS_SET:
        try:  # inter-op threads can only be set before the first parallel op
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        _THREADS_SET = True
    return n


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pick_device(prefer: str = "auto"):
    """'auto' picks cuda, then mps, then cpu; any other value is taken literally and checked."""
    import torch

    if prefer == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(prefer)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={prefer!r} asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"device={prefer!r} asked for, but MPS is not available here; use 'auto' or 'cpu'")
    return dev


def autocast(device):
    """The mixed-precision context of a training step on `device` (a torch.device): bf16 autocast on CUDA, where
    it pays; nothing on other devices (on this CPU bf16 is about 10x slower than fp32, measured), so they run
    plain fp32."""
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device):
    """The tensor layout convolutions run fastest in on `device`: channels_last on CUDA, contiguous elsewhere."""
    import torch

    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device=None) -> str:
    """A human-readable name for the manifest: the GPU model, or the CPU with its core count."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    if device is not None and str(device).startswith("mps"):
        return "mps"
    return f"cpu ({os.cpu_count()} cores)"


def default_profile() -> str:
    """The profile a notebook runs when none is given: $RESONANCE_PROFILE, else paper on CUDA, else quick."""
    env = os.environ.get("RESONANCE_PROFILE", "").strip()
    if env:
        return env
    return "paper" if cuda_available() else "quick"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (if imported) torch. Use generation_rng for per-generation streams."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def generation_seed(seed: int, generation: int, stream: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, generation, stream): a resumed chain draws the same numbers."""
    ss = np.random.SeedSequence([int(seed), int(generation), int(stream)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generation_rng(seed: int, generation: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng(generation_seed(seed, generation, stream))


def torch_generator(seed: int, generation: int = 0, stream: int = 0):
    """A CPU torch.Generator: samples drawn on the CPU and moved to the device are the same on every device."""
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(generation_seed(seed, generation, stream))
    return g
