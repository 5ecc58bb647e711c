"""Official pytorch-CycleGAN-and-pix2pix generator checkpoints (e.g. horse2zebra's latest_net_G_A.pth) as
`cyclegan_networks.ResnetGenerator`s, with error messages that say what the checkpoint's keys suggest."""
from __future__ import annotations

from pathlib import Path

import torch

from .cyclegan_networks import ResnetGenerator
from .runtime import pick_device

__all__ = ["load_official_generator"]

_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def load_official_generator(path, *, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                            device: str = "cpu") -> ResnetGenerator:
    """A ResnetGenerator from an official checkpoint (e.g. horse2zebra's latest_net_G_A.pth), in eval mode.

    Handles what the official loader handles: a DataParallel 'module.' prefix, and InstanceNorm running
    statistics that checkpoints from PyTorch < 0.4 carry. Everything else must match exactly (strict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the path of an official generator checkpoint "
                                "such as checkpoints/<name>/latest_net_G_A.pth")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip or truncation errors all mean an unreadable file
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (got {type(state).__name__}); the official "
                         "code saves net.state_dict() with torch.save")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.endswith(_STAT_SUFFIXES)}  # instance norm keeps none

    net = ResnetGenerator(input_nc, output_nc, ngf, n_blocks)
    want = net.state_dict()
    missing = sorted(set(want) - set(state), key=_key_order)
    unexpected = sorted(set(state) - set(want), key=_key_order)
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(want[k].shape)})" for k in want
             if k in state and state[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not match ResnetGenerator(input_nc={input_nc}, output_nc={output_nc}, "
                         f"ngf={ngf}, n_blocks={n_blocks}): " + "; ".join(filter(None, [
                             _listing("missing keys", missing), _listing("unexpected keys", unexpected),
                             _listing("shape mismatches", wrong)])) + ". " + _suggest(state))
    net.load_state_dict(state, strict=True)
    return net.to(pick_device(device)).eval()


def _key_order(key: str):
    # model.10 after model.9; (0, n) and (1, name) keep numbers and names comparable in foreign keys
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def _listing(what: str, items: list, n: int = 6) -> str:
    if not items:
        return ""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return f"{what} {', '.join(items[:n])}{more}"


def _suggest(state: dict) -> str:
    """What the checkpoint's keys say its settings were, to put in the error message."""
    blocks = {k.split(".")[1] for k in state if ".conv_block." in k}
    w = state.get("model.1.weight")
    hints = [f"n_blocks={len(blocks)}"]
    if w is not None and w.ndim == 4:
        hints += [f"ngf={w.shape[0]}", f"input_nc={w.shape[1]}"]
    last = max((k for k in state if k.endswith(".weight") and k.startswith("model.") and ".conv_block." not in k),
               key=_key_order, default=None)
    if last is not None and state[last].ndim == 4:
        hints.append(f"output_nc={state[last].shape[0]}")
    note = " (conv_block.6 keys: it was trained with dropout, which this loader does not build)" if any(
        ".conv_block.6." in k for k in state) else ""
    return f"The checkpoint's keys suggest {', '.join(hints)}{note}; is it a resnet_9blocks/6blocks generator?"
