import json
import math

import numpy as np
import pytest
import torch

from resonance_utils.data import load_mnist, stratified_subset, to_float, to_uint8
from resonance_utils.diffusion import (
    BETA_SCHEDULE, ddim_timesteps, feedback_step, load_model, make_unet, num_classes, sample, save_model,
    train_diffusion,
)
from resonance_utils.runtime import torch_generator
from resonance_utils.store import CacheError

TINY = dict(base_channels=8, channel_mult=(1, 2))  # ~20k parameters: seconds on a CPU


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return stratified_subset(load_mnist("test"), 500, seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    """A tiny class-conditional UNet after 60 steps, and its loss history."""
    model = make_unet(num_classes=10, **TINY)
    model, losses = train_diffusion(model, digits.images, digits.labels, steps=60, batch_size=32, lr=3e-3,
                                    device="cpu", progress=False)
    return model, losses


def linear_alphas_cumprod(T):
    """DDPM's schedule from Ho et al.: betas linear from 1e-4 to 0.02 (for T=1000), independent of diffusers."""
    return np.cumprod(1 - np.linspace(1e-4, 0.02, T))


# ------------------------------------------------------------------------------------------------ the model
def test_make_unet_shapes_and_null_label():
    model = make_unet(num_classes=10, **TINY)
    assert num_classes(model) == 10 and model.config.num_class_embeds == 11  # id 10 is the null label
    out = model(torch.zeros(2, 1, 28, 28), 5, class_labels=torch.tensor([3, 10])).sample
    assert out.shape == (2, 1, 28, 28)
    assert num_classes(make_unet(**TINY)) is None
    a, b = make_unet(**TINY, seed=1), make_unet(**TINY, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_make_unet_rejects_bad_configs():
    with pytest.raises(ValueError, match="divisible by 2"):
        make_unet(resolution=30, channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="norm_groups"):
        make_unet(base_channels=12, norm_groups=8)


# ------------------------------------------------------------------------------------------------ training
def test_training_lowers_the_loss(trained):
    _, losses = trained
    assert losses.shape == (60,) and np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.6 * losses[:10].mean()


def test_training_is_seeded_and_ema_changes_the_result(digits):
    runs = [train_diffusion(make_unet(**TINY), digits.images[:64], steps=3, batch_size=16, seed=s,
                            ema_decay=ema, device="cpu", progress=False) for s, ema in ((0, None), (0, None),
                                                                                          (1, None), (0, 0.9))]
    (m0, l0), (m1, l1), (m2, l2), (m3, _) = runs
    assert np.array_equal(l0, l1) and not np.array_equal(l0, l2)
    assert all(torch.equal(p, q) for p, q in zip(m0.parameters(), m1.parameters()))
    assert not torch.equal(m0.conv_out.weight, m3.conv_out.weight)


def test_conditional_model_without_labels_trains_its_null_label(digits):
    """labels=None on a conditional model trains only the null (unconditional) mode: the class embeddings of
    real labels stay as they were, the null one moves."""
    model = make_unet(num_classes=10, **TINY)
    before = model.class_embedding.weight.detach().clone()
    train_diffusion(model, digits.images[:32], steps=2, batch_size=16, device="cpu", progress=False)
    after = model.class_embedding.weight.detach()
    assert torch.equal(before[:10], after[:10]) and not torch.equal(before[10], after[10])


def test_training_input_errors(digits):
    cond, uncond = make_unet(num_classes=10, **TINY), make_unet(**TINY)
    x, y = digits.images[:16], digits.labels[:16]
    with pytest.raises(ValueError, match="unconditional"):
        train_diffusion(uncond, x, y, steps=1, progress=False)
    with pytest.raises(ValueError, match="steps or epochs"):
        train_diffusion(uncond, x, steps=1, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"shape \(N,28,28\)"):
        train_diffusion(uncond, np.zeros((4, 32, 32), np.uint8), steps=1, progress=False)
    with pytest.raises(TypeError, match="uint8"):
        train_diffusion(uncond, x.astype(np.float32), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        train_diffusion(cond, x, np.full(16, 10), steps=1, progress=False)  # 10 is the null id, not a class


# ------------------------------------------------------------------------------------------------ sampling
def test_sampling_is_reproducible(trained):
    model, _ = trained
    kw = dict(labels=np.arange(6) % 10, ddim_steps=4, device="cpu", progress=False)
    a, b = sample(model, 6, seed=0, **kw), sample(model, 6, seed=0, **kw)
    assert a.shape == (6, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, sample(model, 6, seed=1, **kw))
    assert not np.array_equal(a, sample(model, 6, seed=0, generation=1, **kw))
    # the noise is drawn up front, so the batch size does not matter (up to float rounding)
    c = sample(model, 6, seed=0, batch_size=4, **kw)
    assert np.abs(a.astype(int) - c).max() <= 1


@pytest.mark.parametrize("w", [1.0, 2.5])
def test_ddim_matches_the_update_rule_by_hand(trained, digits, w):
    """feedback_step against x_{t'} = sqrt(a')clip(x0_hat) + sqrt(1-a')eps with DDPM's linear schedule."""
    model, _ = trained
    x0_u8, y = digits.images[:4], digits.labels[:4]
    strength, steps = 0.3, 10
    grid = ddim_timesteps(model, strength, steps)
    assert grid == [299, 199, 99]  # from round(0.3*1000)-1 down in steps of 1000 // 10
    assert BETA_SCHEDULE == "linear"  # the reference below is written for it
    abar = linear_alphas_cumprod(1000)
    noise = torch.randn((4, 1, 28, 28), generator=torch_generator(7, 2, 0)).double()
    x = math.sqrt(abar[grid[0]]) * to_float(x0_u8).double() + math.sqrt(1 - abar[grid[0]]) * noise
    with torch.no_grad():
        for t in grid:
            eps = model(x.float(), t, class_labels=torch.from_numpy(y)).sample.double()
            if w != 1.0:  # classifier-free guidance: eps_null + w (eps_label - eps_null), null id = 10
                eps_null = model(x.float(), t, class_labels=torch.full((4,), 10)).sample.double()
                eps = eps_null + w * (eps - eps_null)
            a, a_prev = abar[t], (abar[t - 100] if t >= 100 else 1.0)
            x0_hat = ((x - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
            x = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps
    ours = feedback_step(model, x0_u8, strength=strength, labels=y, guidance_scale=w, ddim_steps=steps, seed=7,
                         generation=2, device="cpu", progress=False)
    assert np.abs(ours.astype(int) - to_uint8(x)).max() <= 1


def test_feedback_at_full_strength_is_sampling(trained, digits):
    model, _ = trained
    x, y = digits.images[:5], digits.labels[:5]
    kw = dict(labels=y, ddim_steps=5, seed=3, device="cpu", progress=False)
    assert np.array_equal(feedback_step(model, x, strength=1.0, **kw), sample(model, 5, **kw))


def test_feedback_strength_controls_how_far_images_move(trained, digits):
    model, _ = trained
    x, y = digits.images[:20], digits.labels[:20]
    moved = {s: np.abs(feedback_step(model, x, strength=s, labels=y, ddim_steps=20, device="cpu",
                                     progress=False).astype(float) - x).mean() for s in (0.05, 0.9)}
    assert moved[0.05] < 0.5 * moved[0.9]


def test_guidance_runs_and_changes_samples(trained):
    model, _ = trained
    kw = dict(labels=np.arange(4), ddim_steps=3, device="cpu", progress=False)
    guided = sample(model, 4, guidance_scale=3.0, **kw)
    assert guided.shape == (4, 28, 28)
    assert not np.array_equal(guided, sample(model, 4, **kw))
    assert sample(model, 4, ddim_steps=3, device="cpu", progress=False).shape == (4, 28, 28)  # null label


def test_label_and_strength_errors(trained, digits):
    model, _ = trained
    kw = dict(ddim_steps=2, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        sample(model, 4, labels=np.arange(3), **kw)
    with pytest.raises(ValueError, match=r"lie in \[0, 9\]"):
        sample(model, 2, labels=[3, 10], **kw)
    with pytest.raises(ValueError, match=r"lie in \[0, 9\]"):
        sample(model, 2, labels=[-1, 0], **kw)
    with pytest.raises(TypeError, match="integers"):
        sample(model, 2, labels=[0.5, 1.0], **kw)
    with pytest.raises(ValueError, match="guidance_scale"):
        sample(make_unet(**TINY), 2, guidance_scale=2.0, **kw)
    with pytest.raises(ValueError, match="unconditional"):
        sample(make_unet(**TINY), 2, labels=[0, 1], **kw)
    for bad in (0.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="strength must lie in"):
            feedback_step(model, digits.images[:2], strength=bad, labels=[0, 1], **kw)
    with pytest.raises(ValueError, match="ddim_steps"):
        sample(model, 2, labels=0, ddim_steps=0, device="cpu", progress=False)


def test_colour_model_returns_channels_last_images():
    model = make_unet(resolution=8, channels=3, **TINY)
    out = sample(model, 2, ddim_steps=2, device="cpu", progress=False)
    assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
    assert feedback_step(model, out, strength=0.5, ddim_steps=2, device="cpu", progress=False).shape == out.shape


# ------------------------------------------------------------------------------------------------ save, load
def test_save_load_round_trip(trained, tmp_path):
    model, _ = trained
    folder = save_model(model, tmp_path / "unet")
    loaded = load_model(folder)
    kw = dict(labels=[1, 7, 7], guidance_scale=2.0, ddim_steps=3, device="cpu", progress=False)
    assert np.array_equal(sample(model, 3, **kw), sample(loaded, 3, **kw))
    assert not list(tmp_path.glob(".unet.tmp-*"))  # the temporary folder is gone


def test_load_missing_and_corrupt_folders(trained, tmp_path):
    model, _ = trained
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_model(tmp_path / "nothing")
    folder = save_model(model, tmp_path / "unet")
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CacheError, match="holds no readable diffusion model"):
        load_model(folder)
    folder = save_model(model, tmp_path / "unet")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CacheError, match="unet"):
        load_model(folder)
    folder = save_model(model, tmp_path / "unet")
    config = json.loads((folder / "config.json").read_text())
    config["block_out_channels"] = [16, 32]  # weights no longer fit the architecture
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CacheError):
        load_model(folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="safetensors is missing"):
        load_model(folder)


# ------------------------------------------------------------------------------------------- speed, distributed
def test_compile_wraps_the_unet_and_returns_the_plain_model(digits, monkeypatch):
    """compile=True goes through torch.compile (stubbed here: a real compile costs a minute on a CPU); the model
    returned and saved is the plain UNet, not the compiled wrapper."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m: compiled.append(m) or m)
    model = make_unet(**TINY)
    out, _ = train_diffusion(model, digits.images[:16], steps=1, batch_size=8, device="cpu", compile=True,
                             progress=False)
    assert out is model and compiled == [model]
    sample(model, 2, ddim_steps=2, device="cpu", compile=True, progress=False)
    assert compiled == [model, model]
    sample(model, 2, ddim_steps=2, device="cpu", progress=False)
    assert len(compiled) == 2  # off by default


def test_distributed_environment_and_errors(digits, monkeypatch, tmp_path):
    from resonance_utils.diffusion import distributed_world, is_main_process

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed_world() == (0, 0, 1) and is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed_world() == (1, 1, 3) and not is_main_process()
    with pytest.raises(ValueError, match="batch_size divisible by 3"):
        train_diffusion(make_unet(**TINY), digits.images[:32], steps=1, batch_size=16, device="cpu",
                        progress=False)
    # only rank 0 writes files (no process group here, so no barrier either)
    save_model(make_unet(**TINY), tmp_path / "unet")
    assert not (tmp_path / "unet").exists()


def test_two_process_data_parallel_training_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo): each trains on half of every batch and DDP averages the gradients,
    so losses and weights equal one process's on the whole batch up to float rounding. Skipped when the launch
    alone takes too long on a busy machine."""
    import os
    import subprocess
    import sys

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    from pathlib import Path

    import ddp_worker

    script = Path(ddp_worker.__file__)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", RESONANCE_THREADS="1")
    try:
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=45)
    except subprocess.TimeoutExpired:
        pytest.skip("2-process launch took over 45 s on this (busy) machine")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    two = np.load(tmp_path / "result.npz")
    assert (tmp_path / "unet" / "config.json").exists()

    model, losses = ddp_worker.train("cpu")
    np.testing.assert_allclose(two["losses"], losses, rtol=1e-5)
    np.testing.assert_allclose(two["weights"], ddp_worker.weights(model), atol=1e-4)
