"""The layout check every saved figure passes (plots.layout_problems, publish.Outputs.figure): colliding text,
dead space on the canvas, the stamp kept inside the content's width, and strict mode (RESONANCE_STRICT_FIGURES=1)
refusing a figure with a collision."""
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from resonance_utils import config, plots, publish

plt.switch_backend("Agg")

LONG_STAMP = ("resonance · 05_drift_geometry · profile quick · data: synthetic Gaussian chain (Fig. 3); real MNIST, "
              "Lucier (CMU ARCTIC voice), ImageNet-5 STAND-IN (registry photos) · features: MNIST CNN (ours) · our "
              "reconstruction, not the paper's numbers")


@pytest.fixture(autouse=True)
def themed():
    plots.set_theme()
    yield
    plt.close("all")


def clean_figure():
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
    for ax in (a1, a2):
        ax.plot(np.arange(10), np.arange(10) ** 2, label="squares")
        ax.set(xlabel="generation", ylabel="value (a.u.)", title="a panel")
        ax.legend(fontsize=7)
    fig.suptitle("A clean figure")
    fig.tight_layout()
    return fig


def test_a_clean_figure_passes_and_so_does_it_stamped():
    fig = clean_figure()
    assert plots.layout_problems(fig) == []
    plots.stamp(fig, LONG_STAMP)
    assert plots.layout_problems(fig) == []


def test_overlapping_labels_are_found():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1])
    ax.text(0.5, 0.5, "annotation one", transform=ax.transAxes)
    ax.text(0.52, 0.51, "annotation two", transform=ax.transAxes)
    problems = plots.layout_problems(fig)
    assert any("'annotation one'" in p and "'annotation two'" in p for p in problems), problems


def test_a_y_label_running_into_the_left_panel_is_found():
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6, 3))
    a1.plot([0, 1000], [0, 1]); a2.plot([0, 1], [0, 1e6])
    a2.set_ylabel("a long y label on the right panel")
    fig.subplots_adjust(wspace=0.02)
    problems = plots.layout_problems(fig)
    assert any("y label 'a long y label" in p and "panel 1" in p for p in problems), problems


def test_a_suptitle_on_the_panel_titles_is_found():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax in axes:
        ax.plot([0, 1]); ax.set_title("panel title")
    fig.subplots_adjust(top=0.85)
    fig.suptitle("A suptitle low enough to sit on the titles", y=0.9)
    problems = plots.layout_problems(fig)
    assert any(p.startswith("suptitle") and "title 'panel title'" in p for p in problems), problems


def test_dead_space_is_found():
    # the case: a stamp wider than the axes, placed the old way, widens the tight canvas
    fig, ax = plt.subplots(figsize=(3, 2.5))
    ax.plot([0, 1])
    fig.text(0.995, -0.01, LONG_STAMP, ha="right", va="top", fontsize=6.5, gid=plots.STAMP_GID)
    problems = plots.layout_problems(fig)
    assert any(p.startswith("dead space") and "wider" in p for p in problems), problems
    assert any(p.startswith("the stamp") for p in problems), problems
    # a whole figure (no tight box) with its content in one corner
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([0, 1])
    fig.subplots_adjust(left=0.1, right=0.45, bottom=0.1, top=0.45)
    problems = plots.layout_problems(fig, bbox_inches=None)
    assert any("wider" in p for p in problems) and any("taller" in p for p in problems), problems
    # an empty panel left visible
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6, 3))
    a1.plot([0, 1])
    problems = plots.layout_problems(fig)
    assert any("panel 2 is empty" in p for p in problems), problems


@pytest.mark.parametrize("width", [2.5, 4.0, 7.5, 16.0])
def test_the_stamp_never_widens_the_canvas(width):
    fig, ax = plt.subplots(figsize=(width, 2.5))
    ax.plot([0, 1]); ax.set_xlabel("generation")
    renderer = plots._renderer(fig)
    before = fig.get_tightbbox(renderer)
    plots.stamp(fig, LONG_STAMP)
    after = fig.get_tightbbox(plots._renderer(fig))
    assert after.x0 >= before.x0 - 1e-6 and after.x1 <= before.x1 + 1e-6
    assert after.y0 < before.y0  # its own strip under the content
    assert plots.layout_problems(fig) == []
    plots.stamp(fig, "short")  # restamping replaces the stamp
    assert sum(t.get_gid() == plots.STAMP_GID for t in fig.texts) == 1


def test_setting_colours_are_one_per_setting_and_found_from_labels():
    from resonance_utils.settings import SETTINGS

    assert set(plots.SETTING_COLORS) == {s.name for s in SETTINGS}
    assert len(set(plots.SETTING_COLORS.values())) == len(SETTINGS)
    assert plots.setting_color("MNIST label guided") == plots.SETTING_COLORS["label_guided"]
    assert plots.setting_color("ImageNet-5 stand-in latent feedback") == plots.SETTING_COLORS["latent_feedback"]
    assert plots.setting_color("Lucier room loop") == plots.SETTING_COLORS["lucier"]
    assert plots.setting_color("CycleGAN cycles") == plots.SETTING_COLORS["cyclegan"]
    assert plots.setting_color("autoencoder alone", "0.3") == "0.3"


def outputs(isolated_dirs):
    return publish.Outputs(config.load_config("01_lucier_room", "smoke"), data_source="synthetic test")


def colliding_figure():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1])
    ax.text(0.4, 0.5, "planted", transform=ax.transAxes)
    ax.text(0.42, 0.5, "collision", transform=ax.transAxes)
    return fig


def test_problems_go_into_the_manifest_and_strict_mode_raises(isolated_dirs, monkeypatch):
    out = outputs(isolated_dirs)
    monkeypatch.delenv(publish.STRICT_FIGURES_ENV, raising=False)
    out.figure(colliding_figure(), "planted", caption="A planted collision.")
    manifest = json.loads((isolated_dirs / "figures" / "MANIFEST.json").read_text())
    assert manifest["planted.png"]["caption"] == "A planted collision."
    assert any("'planted'" in p and "'collision'" in p for p in manifest["planted.pdf"]["layout_problems"])
    monkeypatch.setenv(publish.STRICT_FIGURES_ENV, "1")
    with pytest.raises(publish.FigureLayoutError, match=r"(?s)figure 'planted_strict'.*'planted'.*'collision'"):
        out.figure(colliding_figure(), "planted_strict", caption="A planted collision.")
    out.figure(clean_figure(), "clean", caption="A clean figure.")  # a clean one passes in strict mode


def test_a_figure_needs_a_caption_and_its_pdf_embeds_truetype_fonts(isolated_dirs):
    out = outputs(isolated_dirs)
    with pytest.raises(TypeError):
        out.figure(clean_figure(), "no_caption")
    with pytest.raises(ValueError, match="caption"):
        out.figure(clean_figure(), "blank", caption="  ")
    (pdf,) = [p for p in out.figure(clean_figure(), "fonts", caption="Fonts.") if p.suffix == ".pdf"]
    data = pdf.read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # TrueType embedded, no Type 3 fonts


@pytest.mark.parametrize("width", [9.8, 10.2])
def test_the_stamp_fits_as_the_png_and_the_pdf_draw_it(isolated_dirs, width):
    # a small text's width changes with the dpi (hinting): fitted at the figure's 110 dpi, 01's stamp overran a
    # 10-inch figure's content in the 150-dpi PNG and was cut at the left edge
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(width, 3.8))
    for ax in (a1, a2):
        ax.plot([0, 1]); ax.set_xlabel("generation")
    fig.tight_layout()
    shown_dpi = fig.dpi
    out = publish.Outputs(config.load_config("01_lucier_room", "smoke"), feature_network="none (spectra)",
                          data_source="real: CMU ARCTIC a0007 (pysptk); shoebox 4.0, 3.0, 2.5 m, RT60 0.4 s "
                                      "(pyroomacoustics)")  # 01's stamp, as long as such a figure's content
    out.figure(fig, "wide", caption="Two lines.")
    assert fig.dpi == shown_dpi  # the notebook shows it as before
    (st,) = [t for t in fig.texts if t.get_gid() == plots.STAMP_GID]
    for dpi in (72, float(plt.rcParams["savefig.dpi"])):  # the PDF's and the PNG's
        fig.set_dpi(dpi)
        renderer = plots._renderer(fig)
        box = plots._inches(fig, st.get_window_extent(renderer))
        panels = [plots._inches(fig, ax.get_tightbbox(renderer)) for ax in (a1, a2)]
        assert box.x0 >= min(p.x0 for p in panels) - 1e-6 and box.x1 <= max(p.x1 for p in panels) + 1e-6, dpi


def test_a_panel_with_nothing_finite_keeps_the_generation_axis():
    # smoke's MNIST chains measure no within-class spread (all NaN): that panel's x axis fell back to -0.05..0.05
    # with seven crowded tick labels (02's mnist_phenomena under strict figures)
    from types import SimpleNamespace

    class Chain(list):
        metrics = property(list)

    results = {s: Chain([{"within_class_spread": np.nan, "near_duplicate_share": 0.1, "autoencoder_rms": 0.05}] * 3)
               for s in ("latent_feedback", "label_guided", "unconditional")}
    drift = {s: SimpleNamespace(generations=np.arange(3), values=np.arange(3.0), floor=np.full(3, 0.1)) for s in results}
    fig = plots.phenomena_figure(results, drift, autoencoder=(results["latent_feedback"], drift["latent_feedback"]),
                                 suptitle="MNIST chains")
    assert plots.layout_problems(fig) == []
    assert fig.axes[1].get_xlim() == fig.axes[0].get_xlim()
