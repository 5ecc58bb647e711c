"""The project's list of feedback settings and the framework figure drawn from it."""
import dataclasses

import matplotlib
import pytest

from resonance_utils import image_chains, plots, settings
from resonance_utils.run_notebooks import notebooks_dir as settings_notebooks

matplotlib.use("Agg")


def test_every_setting_is_listed_once_with_its_module_and_notebook():
    names = [s.name for s in settings.SETTINGS]
    assert names == ["lucier", "cyclegan", "latent_feedback", "label_guided", "unconditional"]
    assert set(image_chains.SETTINGS) <= set(names)
    for s in settings.SETTINGS:
        __import__(f"resonance_utils.{s.module}")
        assert (settings_notebooks() / f"{s.notebook}.ipynb").exists(), s.notebook
    assert settings.get("cyclegan").stochastic is False
    with pytest.raises(ValueError, match="unknown feedback setting"):
        settings.get("gan")


def test_framework_figure_has_one_box_per_setting_and_follows_the_list():
    fig = plots.framework_diagram(settings.SETTINGS)
    texts = [t.get_text() for t in fig.axes[0].texts]
    for s in settings.SETTINGS:
        assert sum(s.title in t for t in texts) == 1
    extra = dataclasses.replace(settings.SETTINGS[0], name="new_loop", title="a new loop")
    fig2 = plots.framework_diagram(list(settings.SETTINGS) + [extra])
    assert any("a new loop" in t.get_text() for t in fig2.axes[0].texts)
    with pytest.raises(ValueError, match="at least one"):
        plots.framework_diagram([])
