"""resonance_utils.runtime: the mixed-precision and layout choices per device (the seeding and thread helpers are
exercised by tests/test_chain.py and the training tests)."""
import contextlib
import warnings

import pytest

torch = pytest.importorskip("torch")

from resonance_utils import runtime  # noqa: E402


def test_autocast_is_bf16_on_cuda_and_nothing_elsewhere():
    assert isinstance(runtime.autocast(torch.device("cpu")), contextlib.nullcontext)
    with runtime.autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with warnings.catch_warnings():  # without a GPU torch warns that it disables the context; its settings stay
        warnings.simplefilter("ignore", UserWarning)
        ctx = runtime.autocast(torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16


def test_memory_format_is_channels_last_only_on_cuda():
    assert runtime.memory_format(torch.device("cpu")) == torch.contiguous_format
    assert runtime.memory_format(torch.device("cuda")) == torch.channels_last  # a device name needs no GPU
