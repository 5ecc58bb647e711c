"""The data-parallel training run the DDP tests launch with torchrun (python ddp_worker.py OUT_DIR [DEVICE]), and
the same training in one process (`train`) that they compare it with. Not a test module (no test_ prefix)."""
import sys

import numpy as np
import torch

from resonance_utils import diffusion as D


def train(device: str = "cpu"):
    """(model, per-step losses): a tiny conditional UNet, 4 steps of 16 random digits-sized images, EMA on."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64)
    model = D.make_unet(num_classes=10, base_channels=8, channel_mult=(1, 2))
    return D.train_diffusion(model, images, labels, steps=4, batch_size=16, lr=1e-3, ema_decay=0.9, device=device,
                             progress=False)


def weights(model) -> np.ndarray:
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()]).numpy()


if __name__ == "__main__":
    out, device = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "cpu")
    if device == "cpu":
        torch.set_num_threads(1)
    model, losses = train(device)
    D.save_model(model, out + "/unet")  # every rank calls it; only rank 0 writes
    if D.is_main_process():
        np.savez(out + "/result.npz", losses=losses, weights=weights(model))
