"""The GPU paths of issue #7: bf16 autocast, channels_last, fused AdamW, pinned non-blocking copies, the benchmark
on CUDA and NCCL data parallelism, each checked against the CPU's fp32 result at bf16 tolerances.

Skipped without CUDA (CI has no GPU). On a GPU machine: `.venv/bin/python -m pytest tests/test_gpu.py`.
RESONANCE_TEST_GPU=cpu runs the same tests with the CPU standing in for the GPU, which checks the tests' own logic
(every comparison is then exact) on a machine without one.
"""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from resonance_utils.data import load_mnist, stratified_subset
from resonance_utils.diffusion import feedback_step, make_unet, sample, train_diffusion

GPU = os.environ.get("RESONANCE_TEST_GPU", "cuda")
pytestmark = pytest.mark.skipif(GPU == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")
TINY = dict(base_channels=8, channel_mult=(1, 2))


@pytest.fixture(scope="module")
def digits():
    return stratified_subset(load_mnist("test"), 250, seed=0)


@pytest.fixture(scope="module")
def trained_pair(digits):
    """The same tiny UNet trained 40 steps on the CPU (fp32) and on the GPU (bf16 autocast, fused AdamW): the
    batches and the noise come from the same CPU generators, so only the arithmetic differs."""
    base = make_unet(num_classes=10, **TINY)
    kw = dict(steps=40, batch_size=32, lr=3e-3, seed=0, progress=False)
    cpu, cpu_losses = train_diffusion(copy.deepcopy(base), digits.images, digits.labels, device="cpu", **kw)
    gpu, gpu_losses = train_diffusion(copy.deepcopy(base), digits.images, digits.labels, device=GPU, **kw)
    return cpu, cpu_losses, gpu, gpu_losses


def test_training_on_the_gpu_follows_the_cpu(trained_pair):
    cpu, cpu_losses, gpu, gpu_losses = trained_pair
    assert next(gpu.parameters()).device.type == torch.device(GPU).type
    assert all(p.dtype == torch.float32 for p in gpu.parameters())  # autocast: bf16 math, fp32 weights
    assert gpu_losses.shape == cpu_losses.shape == (40,) and np.isfinite(gpu_losses).all()
    assert gpu_losses[-10:].mean() < gpu_losses[:5].mean()  # it learns
    # same batches, same noise: the loss curves agree to bf16 precision, step by step
    np.testing.assert_allclose(gpu_losses[:5], cpu_losses[:5], rtol=0.05)
    assert abs(gpu_losses[-10:].mean() - cpu_losses[-10:].mean()) < 0.15 * cpu_losses[-10:].mean()


def test_sampling_and_feedback_on_the_gpu_match_the_cpu(trained_pair, digits):
    cpu, _, _, _ = trained_pair
    model = copy.deepcopy(cpu)  # one model, two devices: only the arithmetic differs
    labels = np.arange(32) % 10
    a = sample(model, 32, labels=labels, guidance_scale=2.0, ddim_steps=10, seed=3, device="cpu", progress=False)
    b = sample(copy.deepcopy(cpu), 32, labels=labels, guidance_scale=2.0, ddim_steps=10, seed=3, device=GPU,
               progress=False)
    assert a.shape == b.shape == (32, 28, 28) and b.dtype == np.uint8
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 6 and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    # the GPU's default batch (1024) and the CPU's (64) give the same images: noise is drawn per image up front
    c = sample(copy.deepcopy(cpu), 32, labels=labels, guidance_scale=2.0, ddim_steps=10, seed=3, device=GPU,
               batch_size=8, progress=False)
    assert np.abs(c.astype(int) - b.astype(int)).mean() < 1
    x = digits.images[:32]
    f_cpu = feedback_step(copy.deepcopy(cpu), x, strength=0.4, ddim_steps=10, seed=1, device="cpu", progress=False)
    f_gpu = feedback_step(copy.deepcopy(cpu), x, strength=0.4, ddim_steps=10, seed=1, device=GPU, progress=False)
    assert np.abs(f_cpu.astype(int) - f_gpu.astype(int)).mean() < 6


def test_colour_model_runs_channels_last_on_the_gpu():
    model = make_unet(resolution=16, channels=3, base_channels=8, channel_mult=(1, 2))
    out = sample(model, 4, ddim_steps=2, device=GPU, progress=False)
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.uint8
    if torch.device(GPU).type == "cuda":
        assert model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_cyclegan_trains_and_translates_on_the_gpu(digits):
    from resonance_utils import cyclegan

    a, b = digits.images[digits.labels < 5], digits.images[digits.labels >= 5]
    base = cyclegan.make_cyclegan(channels=1, ngf=4, n_blocks=1, ndf=4, n_layers=1, seed=0)
    model, _ = cyclegan.train_cyclegan(copy.deepcopy(base), a, b, steps=3, batch_size=4, device=GPU,
                                       progress=False)
    out = cyclegan.translate(model.G_AB, a[:16], device=GPU)
    assert out.shape == (16, 28, 28) and out.dtype == np.float32 and np.isfinite(out).all()
    ref = cyclegan.translate(copy.deepcopy(model.G_AB).cpu(), a[:16], device="cpu")
    assert np.abs(out - ref).mean() < 0.05  # on the [-1, 1] scale: bf16 against fp32


def test_benchmark_measures_the_gpu(tmp_path):
    from benchmarks import run as bench

    assert bench.main(["--tiny", "--device", GPU, "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert not res["errors"]
    rows = [m for m in res["measurements"] if m["device"] == GPU]
    assert {m["what"] for m in rows} >= {"training", "sampling", "one generation", "feature extraction"}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_nccl_follow_one_gpu(tmp_path):
    """torchrun on 2 GPUs (NCCL): each rank trains on half of every batch; the losses follow one GPU's on the
    whole batch (bf16: not bit for bit)."""
    import ddp_worker

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          ddp_worker.__file__, str(tmp_path), "cuda"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    two = np.load(tmp_path / "result.npz")
    _, one = ddp_worker.train("cuda")
    np.testing.assert_allclose(two["losses"], one, rtol=0.05)
