"""Shared fixtures: every test writes into a temporary data and figures folder, never the checkout's."""
import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    config.addinivalue_line("markers", "rehearsal: runs notebooks of the paper profile at rehearsal counts (minutes; "
                            "deselect with -m 'not rehearsal')")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("RESONANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RESONANCE_FIGURES_DIR", str(tmp_path / "figures"))
    yield tmp_path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two busy pools are 5-10x
    slower than one: run a module's tests on one thread, then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
