"""One look for every figure, and a stamp on each saying which profile, data and feature network made it.

Every saved figure is checked by layout_problems (publish.Outputs.figure): no two text elements collide and the
saved canvas holds no dead space. One colour per feedback setting across all figures: SETTING_COLORS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import seaborn as sns

from .diagnostics import class_retention

PALETTE = "colorblind"
LOCAL_COLOR, CUMULATIVE_COLOR = "#1f77b4", "#ff7f0e"  # the paper's blue (local) and orange (cumulative)
# Okabe-Ito (colour-blind safe), one colour per settings.SETTINGS name, the same in every figure
SETTING_COLORS = {"lucier": "#E69F00", "cyclegan": "#CC79A7", "latent_feedback": "#009E73",
                  "label_guided": "#0072B2", "unconditional": "#D55E00"}
# for series that are not settings (synthetic chains, ...): Okabe-Ito's remaining colours, then greys
OTHER_COLORS = ("#56B4E9", "#000000", "#999999", "#F0E442", "#555555", "#BBBBBB")
SAVE_BBOX = "tight"  # the canvas every figure is saved on (publish.Outputs.figure); layout_problems measures it
FONT_RC = {"pdf.fonttype": 42, "ps.fonttype": 42}  # TrueType fonts embedded in PDFs: text stays text
STAMP_GID = "resonance-stamp"
DEAD_SPACE_TOL = 0.03  # a canvas this much (share) wider or taller than its content has dead space
STAMP_MARGIN = 0.06  # the stamp is fitted to this much (share) less than the content's width


def set_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.95,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": SAVE_BBOX, "axes.titleweight": "bold",
                      **FONT_RC})


def setting_color(name: str, default=None):
    """The colour of the feedback setting `name` names: a settings.SETTINGS name ("label_guided") or a label
    that contains one, spaced or not, or its title ("MNIST label guided", "label_guided | MNIST", "Lucier room
    loop", "CycleGAN cycles"); `default` for anything else (a mitigation, the autoencoder alone)."""
    from .settings import SETTINGS

    text = name.lower().replace("_", " ")
    for s in SETTINGS:
        if s.name.replace("_", " ") in text or s.title.lower() in text:
            return SETTING_COLORS[s.name]
    return default


def series_colors(names) -> dict:
    """{name: colour} for series drawn together: a setting's own colour (setting_color) where a name holds one,
    else the next of OTHER_COLORS."""
    others = iter(OTHER_COLORS * (len(list(names)) // len(OTHER_COLORS) + 1))
    return {n: setting_color(n) or next(others) for n in names}


def data_style(name: str) -> dict:
    """Line style and marker of a series by its data set, so that one setting (one colour) on MNIST and on
    ImageNet-5 reads apart: ImageNet-5 dashed with squares, everything else solid with dots."""
    return {"ls": "--", "marker": "s"} if "imagenet" in name.lower() else {"ls": "-", "marker": "o"}


def _renderer(fig):
    """The figure drawn (layout engines run, tick labels placed) and its renderer."""
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _inches(fig, bbox):
    return bbox.transformed(fig.dpi_scale_trans.inverted())


def stamp(fig, text: str, *, fontsize: float = 6.5) -> None:
    """Write `text` (profile, data source, feature network) small under the figure's content, right-aligned to
    it, in a strip of its own: never wider than the content (wrapped at ' · ' and, if still too wide, set
    smaller), so that the saved canvas (SAVE_BBOX) does not grow sideways to hold it."""
    for t in list(fig.texts):
        if t.get_gid() == STAMP_GID:
            t.remove()
    renderer = _renderer(fig)
    content = fig.get_tightbbox(renderer)  # inches, without the stamp
    # the room it may take: a small text's width differs by a few percent between dpis and the PDF's metrics
    room, gap = content.width * (1 - STAMP_MARGIN), 0.06
    t = fig.text(content.x1, content.y0 - gap, text, ha="right", va="top", ma="right", fontsize=fontsize,
                 color="0.35", gid=STAMP_GID, transform=fig.dpi_scale_trans)

    def width(s: str) -> float:
        t.set_text(s)
        return _inches(fig, t.get_window_extent(renderer)).width

    if width(text) > room:
        # greedy lines, broken at ' · ' and, within a part wider than the content, between words
        tokens = []  # (separator before it, text)
        for part in text.split(" · "):
            words = [part] if width(part) <= room else part.split(" ")
            tokens += [(" · " if i == 0 else " ", w) for i, w in enumerate(words)]
        lines = [tokens[0][1]]
        for sep, token in tokens[1:]:
            if width(lines[-1] + sep + token) <= room:
                lines[-1] += sep + token
            else:
                lines.append(token)
        wrapped = "\n".join(lines)
        widest = width(wrapped)
        if widest > room:  # one word wider than a tiny figure: a smaller font
            t.set_fontsize(fontsize * room / widest)
        t.set_text(wrapped)


# ------------------------------------------------------------------------------------ the layout check
@dataclass(frozen=True)
class _Element:
    """One text element of a figure as drawn: its name in a report, its box (pixels), the axes it belongs to
    (None: the figure's), and, for a tick label, its axis and whether it is rotated."""
    name: str
    bbox: object
    owner: object = None
    tick_axis: object = None
    rotated: bool = False


def _snippet(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else text[: n - 1] + "…")


def _text_element(name: str, t, renderer, *, owner=None, tick_axis=None):
    """An _Element for a drawn, visible, non-empty Text, else None."""
    if t is None or not t.get_visible() or not t.get_text().strip():
        return None
    bbox = t.get_window_extent(renderer)
    if not (np.isfinite(bbox.width) and np.isfinite(bbox.height)) or bbox.width <= 0 or bbox.height <= 0:
        return None
    return _Element(f"{name} {_snippet(t.get_text())}", bbox, owner, tick_axis, rotated=t.get_rotation() % 90 != 0)


def _axes_name(fig, ax) -> str:
    i = fig.axes.index(ax) + 1
    if ax.get_label() == "<colorbar>":
        return f"colour bar (axes {i})"
    title = next((t.get_text() for t in (ax.title, ax._left_title, ax._right_title) if t.get_text().strip()), "")
    return f"panel {i}" + (f" {_snippet(title, 24)}" if title else "")


def _drawn_ticks(axis):
    """The ticks matplotlib draws on `axis` (those inside its view interval)."""
    try:
        return axis._update_ticks()
    except AttributeError:  # an older or newer matplotlib without it: every major and minor tick
        return axis.get_major_ticks() + axis.get_minor_ticks()


def _elements(fig, renderer) -> list:
    """Every drawn text element of `fig` (see layout_problems), each legend as one box."""
    out = []

    def add(name, t, **kw):
        e = _text_element(name, t, renderer, **kw)
        if e is not None:
            out.append(e)

    supers = {"_suptitle": "suptitle", "_supxlabel": "figure x label", "_supylabel": "figure y label"}
    named = {id(getattr(fig, attr, None)): what for attr, what in supers.items()}
    for t in fig.texts:  # the suptitle and super labels are figure texts too
        add(named.get(id(t)) or ("the stamp" if t.get_gid() == STAMP_GID else "figure text"), t)
    for leg in fig.legends:
        if leg.get_visible():
            out.append(_Element("figure legend", leg.get_window_extent(renderer)))
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        name = _axes_name(fig, ax)
        for t, what in ((ax.title, "title"), (ax._left_title, "left title"), (ax._right_title, "right title")):
            add(f"{name}: {what}", t, owner=ax)
        if ax.axison:
            for axis, xy in ((ax.xaxis, "x"), (ax.yaxis, "y")):
                add(f"{name}: {xy} label", axis.label, owner=ax)
                add(f"{name}: {xy} offset text", axis.offsetText, owner=ax)
                for tick in _drawn_ticks(axis):
                    for lab in (tick.label1, tick.label2):
                        add(f"{name}: {xy} tick label", lab, owner=ax, tick_axis=axis)
        for t in ax.texts:
            add(f"{name}: text", t, owner=ax)
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            out.append(_Element(f"{name}: legend", leg.get_window_extent(renderer), ax))
    return out


def _collide(a: _Element, b: _Element, *, min_px: float) -> bool:
    if a.tick_axis is not None and a.tick_axis is b.tick_axis and (a.rotated or b.rotated):
        return False  # rotated labels' upright boxes overlap although their glyphs do not
    inter = type(a.bbox).intersection(a.bbox, b.bbox)
    return inter is not None and inter.width > min_px and inter.height > min_px


def _nested(a, b, renderer) -> bool:
    """Does one of two axes lie inside the other (an inset)?"""
    fa, fb = a.get_window_extent(renderer), b.get_window_extent(renderer)
    inside = lambda p, q: p.x0 >= q.x0 and p.x1 <= q.x1 and p.y0 >= q.y0 and p.y1 <= q.y1  # noqa: E731
    return inside(fa, fb) or inside(fb, fa)


def _has_ink(ax) -> bool:
    """Does the axes draw anything (data, images, texts, a legend) rather than an empty frame?"""
    return ax.get_visible() and (ax.has_data() or bool(ax.images) or bool(ax.texts) or ax.get_legend() is not None)


def layout_problems(fig, *, bbox_inches=SAVE_BBOX, tolerance: float = DEAD_SPACE_TOL, min_px: float = 1.0) -> list:
    """What is wrong with `fig`'s layout as savefig(bbox_inches=...) would save it, one sentence each; [] when
    nothing is. Draws the figure first (layout engines, tick placement), so call it on the finished figure.

    Collisions: two text elements whose drawn boxes overlap by more than `min_px` pixels both ways. The
    elements: the figure's texts (the stamp included), suptitle and super labels, legends (each legend is one
    box: matplotlib lays out its own entries), and per visible axes (colour bars included) its titles, axis
    labels, offset texts, the tick labels it draws (inside the view interval) and its annotation texts. A text
    that runs into another panel's frame (a y label reaching into the panel on its left) is a collision too.
    Left out, by rule: invisible or empty texts; a legend's own entries against each other; two rotated tick
    labels of one axis (their upright boxes overlap while the glyphs do not). Annotations inside a panel
    (cell labels of a heat map, quadrant names) are checked like any other text: one over another is unreadable
    wherever it sits. Texts over lines, markers or images are not collisions (a legend over data is a choice).

    Dead space: the saved canvas (the tight box, or the whole figure for bbox_inches=None) more than
    `tolerance` wider or taller than the content, which is every element above but the stamp, and every axes
    that draws something (an empty, visible axes is dead space). The stamp counts for its height only (its
    strip under the content) and must be no wider than the content. Also reported: a visible axes that draws
    nothing."""
    from matplotlib.transforms import Bbox

    renderer = _renderer(fig)
    elements = _elements(fig, renderer)
    problems = []
    for i, a in enumerate(elements):
        for b in elements[i + 1:]:
            if _collide(a, b, min_px=min_px):
                problems.append(f"{a.name} overlaps {b.name}")
    frames = [(ax, ax.get_window_extent(renderer)) for ax in fig.axes if _has_ink(ax)]
    for e in elements:
        for ax, frame in frames:
            if ax is e.owner or (e.owner is not None and _nested(ax, e.owner, renderer)):
                continue
            if _collide(e, _Element("", frame), min_px=min_px):
                problems.append(f"{e.name} runs into {_axes_name(fig, ax)}")

    ink = [_inches(fig, e.bbox) for e in elements if not e.name.startswith("the stamp")]
    for ax in fig.axes:
        if _has_ink(ax):
            ink.append(_inches(fig, ax.get_window_extent(renderer)))
        elif ax.get_visible():
            problems.append(f"{_axes_name(fig, ax)} is empty (hide it with ax.set_visible(False))")
    for artist in list(fig.patches) + list(fig.lines) + list(fig.images):
        if artist.get_visible():
            ink.append(_inches(fig, artist.get_window_extent(renderer)))
    if not ink:
        return problems
    content = Bbox.union(ink)
    for e in elements:
        if e.name.startswith("the stamp"):
            s = _inches(fig, e.bbox)
            if s.width > content.width * (1 + tolerance):
                problems.append(f"the stamp ({s.width:.2f} in) is wider than the content ({content.width:.2f} in)")
            content = Bbox.union([content, Bbox.from_extents(content.x0, s.y0, content.x1, s.y1)])
    canvas = fig.get_tightbbox(renderer) if bbox_inches == "tight" else fig.bbox_inches
    for what, c, k, lo, hi in (("wider", canvas.width, content.width, content.x0 - canvas.x0, canvas.x1 - content.x1),
                               ("taller", canvas.height, content.height, content.y0 - canvas.y0,
                                canvas.y1 - content.y1)):
        if c > k * (1 + tolerance):
            sides = ("left", "right") if what == "wider" else ("bottom", "top")
            problems.append(f"dead space: the canvas is {c / k - 1:.0%} {what} than its content ({lo:.2f} in "
                            f"empty at the {sides[0]}, {hi:.2f} in at the {sides[1]})")
    return problems


def spectrogram(ax, wave: np.ndarray, sample_rate: int, *, n_fft: int = 1024, hop: int = 256,
                top_db: float = 80.0, fmax: float | None = None):
    """Log-power spectrogram in dB (relative to its own peak) drawn on `ax`; returns the image."""
    from scipy.signal import stft

    f, t, z = stft(wave, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - hop, boundary=None)
    power = np.abs(z) ** 2
    db = 10 * np.log10(np.maximum(power, power.max() * 10 ** (-top_db / 10)) / power.max())
    im = ax.pcolormesh(t, f, db, shading="auto", cmap="magma", vmin=-top_db, vmax=0, rasterized=True)
    ax.set_ylim(0, fmax or sample_rate / 2)
    return im


def image_grid(ax, images: np.ndarray, *, nrow: int, pad: int = 1, cmap="gray"):
    """Tile uint8 images (N,H,W) or (N,H,W,C) row-major into one picture on `ax`."""
    images = np.asarray(images)
    n = images.shape[0]
    ncol = int(np.ceil(n / nrow))
    h, w = images.shape[1:3]
    shape = (nrow * (h + pad) + pad, ncol * (w + pad) + pad) + images.shape[3:]
    canvas = np.full(shape, 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    ax.imshow(canvas, cmap=cmap if canvas.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    return canvas


PHASE_COLORS = {"active transient": "#fde0dd", "slow transient": "#fff7bc", "empirical stationarity": "#e5f5e0"}


def shade_phases(ax, x: np.ndarray, labels, *, legend: bool = True) -> None:
    """Shade the spans of x where each phase label holds (labels[i] belongs to x[i])."""
    x = np.asarray(x, float)
    edges = np.concatenate([[x[0]], (x[1:] + x[:-1]) / 2, [x[-1]]])
    seen = set()
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            lab = labels[start]
            ax.axvspan(edges[start], edges[i], color=PHASE_COLORS.get(lab, "0.9"), alpha=0.9, zorder=0, lw=0,
                       label=lab if legend and lab not in seen else None)
            seen.add(lab)
            start = i


def framework_diagram(settings, *, n_shown: int = 3):
    """The paper's Fig. 1a/4, drawn from a list of settings (settings.SETTINGS): the generational Markov chain
    X_0 -> T -> X_1 -> ... with diagnostics read off each state, above one box per feedback operator T.
    Returns the figure; adding a setting to the list adds its box."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    settings = list(settings)
    if not settings:
        raise ValueError("framework_diagram needs at least one setting")
    width = max(10.0, 2.6 * len(settings))
    fig, ax = plt.subplots(figsize=(width, 5.2))
    ax.set_xlim(0, width)
    ax.set_ylim(0, 5.2)
    ax.axis("off")

    def box(x, y, w, h, text, color, **kw):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04,rounding_size=0.12", fc=color,
                                    ec="0.25", lw=0.9))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", wrap=True, **kw)

    def arrow(x0, y0, x1, y1, text="", **kw):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12, lw=1.0,
                                     color="0.2", **kw))
        if text:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.14, text, ha="center", va="bottom", fontsize=10)

    # the chain: X_0 -T-> X_1 -T-> ... -T-> X_n, diagnostics below each state
    names = [f"$X_{g}$" for g in range(n_shown)] + ["$\\cdots$", "$X_n$"]
    step = (width - 1.0) / len(names)
    y = 4.1
    for i, name in enumerate(names):
        x = 0.5 + i * step + step / 2
        if name != "$\\cdots$":
            box(x - 0.35, y - 0.28, 0.7, 0.56, name, "#dbe9f6", fontsize=12)
            ax.text(x, y - 0.55, "FID drift, geometry", ha="center", va="top", fontsize=6.5, color="0.35")
        else:
            ax.text(x, y, name, ha="center", va="center", fontsize=14)
        if i + 1 < len(names):
            arrow(x + 0.4, y, x + step - 0.4, y, "$T$")
    ax.text(0.1, 4.9, "generational Markov chain  $X_{n+1} = T(X_n)$", fontsize=11, fontweight="bold", va="top")

    # one box per operator T
    ax.text(0.1, 3.05, "the feedback operators $T$", fontsize=11, fontweight="bold", va="top")
    bw = (width - 0.4) / len(settings)
    for i, s in enumerate(settings):
        x = 0.2 + i * bw
        kind = ("stochastic" if s.stochastic else "deterministic") + (", retrains a model" if s.retrains else "")
        text = f"{s.title}\n\nstate: {s.state}\n\n{_wrap(s.operator, 30)}\n\n[{kind}]\n{s.notebook}"
        box(x + 0.08, 0.15, bw - 0.16, 2.55, text, "#fdebd3" if s.stochastic else "#e3f1df", fontsize=7.2)
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width))


# ------------------------------------------------------------------------- panels shared by the chain notebooks
def exemplar_grid(ax, rows: np.ndarray, *, by: str, title: str, row_names=None) -> None:
    """The paper's Fig. 2 layout on `ax`: rows (R, G, H, W[,C]) from image_chains.exemplar_rows, one column per
    generation (0 = real data), one row per class (by="class") or per trajectory (by="trajectory")."""
    n_rows, n_gen = rows.shape[:2]
    image_grid(ax, rows.reshape((n_rows * n_gen,) + rows.shape[2:]), nrow=n_rows)
    step = rows.shape[2] + 1
    ax.set_xticks(np.arange(n_gen) * step + step / 2, [str(g) for g in range(n_gen)], fontsize=7)
    if row_names is not None and by == "class":
        ax.set_yticks(np.arange(n_rows) * step + step / 2, list(row_names)[:n_rows], fontsize=7)
    ax.set_title(f"{title}\n(rows: {'trajectories' if by == 'trajectory' else 'classes'})")
    ax.set_xlabel("generation →  (0 = real data)")


def retention_panels(ax_retention, ax_entropy, results: dict, n_classes: int) -> None:
    """Class retention (settings with an intended class) and predicted-class entropy per generation, from
    the per-generation metrics of image_chains.run_image_chain results {setting: ChainResult}."""
    colors = series_colors(results)
    for s, r in results.items():
        g = np.arange(len(r))
        if s != "unconditional":
            ax_retention.plot(g, class_retention(r.metrics), "o-", ms=4, color=colors[s],
                              label=s.replace("_", " "))
        ax_entropy.plot(g, [m["class_entropy_bits"] for m in r.metrics], "o-", ms=4, color=colors[s],
                        label=s.replace("_", " "))
    ax_retention.axhline(1 / n_classes, color="0.5", ls=":", lw=0.8)
    ax_retention.set_ylim(0, 1.02)
    ax_retention.set_xlabel("generation"), ax_retention.set_ylabel("class retention (share of samples)")
    ax_retention.legend(fontsize=8)
    ax_entropy.axhline(np.log2(n_classes), color="0.5", ls=":", lw=0.8)
    ax_entropy.set_xlabel("generation"), ax_entropy.set_ylabel("predicted-class entropy (bits)")
    ax_entropy.legend(fontsize=8)


def phenomena_figure(results: dict, drift: dict, *, autoencoder: tuple | None = None, suptitle: str):
    """Fig. 2's reading as numbers (issue 15), one line per chain: cumulative drift FID(n, 0) in the classifier's
    embedding (with the drift of the autoencoder alone, `autoencoder` = (its ChainResult, its DriftCurve), when the
    chains run in a latent space), within-class spread relative to generation 0 (templates: it falls while
    retention holds), the near-duplicate share against the previous generation, and the autoencoder's error per
    pass on each generation. results {setting: ChainResult}; drift {setting: cumulative DriftCurve}."""
    import matplotlib.pyplot as plt

    ae_result, ae_drift = autoencoder if autoencoder is not None else (None, None)
    latent = ae_result is not None
    # one generation axis: a panel with nothing finite to draw (a spread not measured) keeps the others' range
    fig, axes = plt.subplots(1, 4 if latent else 3, figsize=(15.5 if latent else 12, 3.6), sharex=True)
    series = dict(results) | ({"autoencoder alone": ae_result} if latent else {})
    colors = series_colors(results)
    for name, r in series.items():
        alone = r is ae_result
        style = dict(color="0.3", ls="--", marker="s", ms=3) if alone else dict(marker="o", ms=4, color=colors[name])
        label = name.replace("_", " ")
        g = np.arange(len(r))
        curve = ae_drift if alone else drift.get(name)
        if curve is not None:
            axes[0].plot(curve.generations, curve.values, label=label, **style)
        spread = np.array([m.get("within_class_spread", np.nan) for m in r.metrics], float)
        axes[1].plot(g, spread / spread[0], label=label, **style)
        axes[2].plot(g[1:], [m.get("near_duplicate_share", np.nan) for m in r.metrics[1:]], label=label, **style)
        if latent:
            axes[3].plot(g, [m.get("autoencoder_rms", np.nan) for m in r.metrics], label=label, **style)
    floor = next(iter(drift.values())).floor if drift else None
    if floor is not None:
        axes[0].plot(next(iter(drift.values())).generations, floor, ":", color=FLOOR_COLOR, lw=1,
                     label="floor (two halves of one generation)")
    axes[0].set_ylabel("cumulative FID(n, 0)\n(classifier embedding)")
    axes[1].set_ylabel("within-class spread / generation 0")
    axes[1].axhline(1, color="0.5", ls=":", lw=0.8)
    axes[2].set_ylabel("near-duplicate share\n(of the previous generation)")
    axes[2].set_ylim(-0.02, 1.02)
    if latent:
        axes[3].set_ylabel("autoencoder error per pass\n(RMS, 0-1 pixel scale)")
    from matplotlib.ticker import MaxNLocator
    for ax in axes:
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(suptitle)
    fig.tight_layout()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               frameon=False)  # beside the panels: no curve is hidden
    return fig


def generation_samples(result, *, n: int, seed: int, title: str):
    """Sample grids of generations 0, 1, the middle and the last of one chain: each a class-balanced random sample
    of n images ordered by label (image_chains.grid_indices)."""
    import matplotlib.pyplot as plt

    from .image_chains import grid_indices

    show = sorted({0, 1, len(result) // 2, len(result) - 1})
    fig, axes = plt.subplots(1, len(show), figsize=(3.2 * len(show), 3.4), squeeze=False)
    for ax, g in zip(axes[0], show):
        shown = grid_indices(result.states[g]["labels"], n, seed=seed)
        image_grid(ax, result.states[g]["images"][shown], nrow=int(np.ceil(np.sqrt(len(shown)))))
        ax.set_title(f"generation {g}")
    fig.suptitle(title)
    return fig


def class_rows(imageset, *, per_class: int, seed: int, title: str):
    """One row of `per_class` random images per class of a labelled ImageSet, the rows named by class."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    k = imageset.n_classes
    fig, ax = plt.subplots(figsize=(8, 0.9 * k + 0.6))
    grid = np.concatenate([imageset.images[rng.choice(np.flatnonzero(imageset.labels == c), per_class, replace=False)]
                           for c in range(k)])
    image_grid(ax, grid, nrow=k)
    ax.set_yticks((np.arange(k) + 0.5) * (imageset.images.shape[1] + 1), imageset.class_names, fontsize=8)
    ax.set_title(title)
    return fig


FLOOR_COLOR = "0.35"


def drift_curve(ax, curve, *, color=None, label: str | None = None, floor: bool = True, interval: bool = True,
                floor_label: str | None = "floor: two halves of one generation", floor_color: str | None = FLOOR_COLOR,
                ms: float = 3):
    """One metrics.DriftCurve on `ax`: its values (line), their interval low..high (a band of the same colour)
    and, with floor=True, its noise floor at the same n (dashed, with its own interval as a light band; in
    `floor_color`, None: the curve's colour), so that drift is read against what two samples of one law would
    give. Parts a curve lacks (no floor, no intervals) are left out. Returns the line."""
    g = curve.generations
    (line,) = ax.plot(g, curve.values, "o-", ms=ms, color=color, label=label)
    if interval and curve.low is not None and np.any(np.isfinite(curve.low)):
        ax.fill_between(g, curve.low, curve.high, color=line.get_color(), alpha=0.18, lw=0)
    if floor and curve.floor is not None:
        fc = line.get_color() if floor_color is None else floor_color
        low, high = curve.floor_interval()
        ax.plot(g, curve.floor, "--", lw=1.0, color=fc, label=floor_label)
        if np.any(np.isfinite(low)):
            ax.fill_between(g, low, high, color=fc, alpha=0.10, lw=0)
    return line


def drift_panel(ax, local, cumulative, phases, *, title: str, legend: bool = True,
                local_label: str = "local FID(n, n-1)", cumulative_label: str = "cumulative FID(n, 0)",
                floor_label: str | None = None, xlabel: str = "generation", legend_kw: dict | None = None) -> None:
    """Local and cumulative drift (metrics.DriftCurve) over the detected phases (metrics.Phases): Fig. 5. Each
    curve with its interval; their common floor (same halves, same n) once, dashed (floor_label None:
    "floor (n = ...)"). legend_kw: options of the legend (default fontsize 6)."""
    g = cumulative.generations
    shade_phases(ax, g, phases.labels, legend=legend)
    drift_curve(ax, local, color=LOCAL_COLOR, label=local_label, floor=False)
    drift_curve(ax, cumulative, color=CUMULATIVE_COLOR, label=cumulative_label,
                floor_label=f"floor (n = {cumulative.n})" if floor_label is None else floor_label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if legend:
        ax.legend(**{"fontsize": 6, **(legend_kw or {})})


GEOMETRY_COLUMNS = (("total_variance", "total variance"), ("participation_ratio", "participation ratio"),
                    ("lid_mle", "local intrinsic dim. (MLE)"), ("roughness", "roughness"))
GEOMETRY_UNITS = {"total_variance": "squared feature units", "participation_ratio": "dimensions",
                  "lid_mle": "dimensions", "roughness": "share of local variance, 0-1"}


def geometry_panels(axes, geo, *, columns=GEOMETRY_COLUMNS) -> None:
    """One panel per geometry measure, one line per setting, from a geometry.geometry_trajectory table with a
    'setting' column."""
    colors = series_colors([str(s) for s in geo["setting"].unique()])
    for ax, (col, label) in zip(axes, columns):
        for s, part in geo.groupby("setting", sort=False):
            ax.plot(part["generation"], part[col], "o-", ms=3, color=colors[str(s)], label=str(s).replace("_", " "))
        ax.set_xlabel("generation")
        ax.set_ylabel(GEOMETRY_UNITS.get(col, ""), fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)


def geometry_figure(geo, *, suptitle: str, columns=GEOMETRY_COLUMNS):
    """geometry_panels in a row of their own, under `suptitle`. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(3.75 * len(columns), 3.4))
    geometry_panels(axes, geo, columns=columns)
    fig.suptitle(suptitle)
    fig.tight_layout()  # the suptitle above the panels' titles
    return fig


def claim_quadrants(ax, assessments: dict, *, anisotropy_tol: float) -> None:
    """The paper's 2 x 2 (ergodic? x directionally contracting?), every setting placed by its measured values
    with intervals: x = per-generation decay rate of the between-start excess (left of 1: the starts are being
    forgotten), y = anisotropy of the contraction (log spread, above the threshold: directional).
    assessments: {label: claim.SettingAssessment}; markers say the observed outcome."""
    markers = {"resonance": "o", "wandering": "s", "separate basins": "D", "inconclusive": "x"}
    colors = series_colors(assessments)
    for label, a in assessments.items():
        color = colors[label]
        m, c = a.mixing, a.contraction
        x = m.rate if np.isfinite(m.rate) else 0.0
        xerr = [[max(x - m.rate_interval[0], 0)], [max(m.rate_interval[1] - x, 0)]]
        yerr = [[c.spread - c.spread_interval[0]], [c.spread_interval[1] - c.spread]]
        ax.errorbar(x, c.spread, xerr=xerr, yerr=yerr, fmt=markers[a.observed], color=color, ms=6, capsize=2,
                    mfc="white" if data_style(label)["ls"] == "--" else color, label=f"{label}: observed {a.observed}")
    ax.axvline(1.0, color="k", lw=0.9, ls=":")
    ax.axhline(anisotropy_tol, color="k", lw=0.9, ls=":")
    ax.set_xlabel("between-start excess: decay rate per generation (1 = not forgetting)")
    ax.set_ylabel("contraction anisotropy, log(least / most)")
    ax.text(0.01, 0.99, "ergodic, directional: resonance", transform=ax.transAxes, va="top", fontsize=7)
    ax.text(0.99, 0.99, "not ergodic: basins", transform=ax.transAxes, va="top", ha="right", fontsize=7)
    ax.text(0.01, 0.01, "ergodic, not directional: wandering", transform=ax.transAxes, fontsize=7)


def mixing_evidence(ax_excess, ax_directions, assessments: dict) -> None:
    """Left: each setting's between-start excess over generations, relative to its start, with its fitted
    decay (dashed) and the 'mixed' threshold (dotted). Right: the per-direction log-variance change of the
    first chain, sorted, with intervals."""
    colors = series_colors(assessments)
    for label, a in assessments.items():
        color, ls = colors[label], data_style(label)["ls"]
        m = a.mixing
        g = np.arange(len(m.excess))
        scale = m.start_distance if m.start_distance > 0 else 1.0
        ax_excess.errorbar(g, m.excess / scale, yerr=m.excess_se / scale, fmt="o", ls=ls, ms=3, color=color,
                           label=label)
        ax_excess.plot(g, m.fitted / scale, "--", color=color, lw=0.9)
        first = a.contraction.per_chain[0]
        order = np.argsort(first.direction_change)
        k = np.arange(len(order))
        ci = first.direction_change_interval[order]
        ax_directions.errorbar(k, first.direction_change[order], yerr=[first.direction_change[order] - ci[:, 0],
                               ci[:, 1] - first.direction_change[order]], fmt="o", ls=ls, ms=3, color=color)
    ax_excess.axhline(next(iter(assessments.values())).mixing.mixed_effect, color="k", ls=":", lw=0.9)
    ax_excess.set_yscale("symlog", linthresh=0.01)
    ax_excess.set_xlabel("generation")
    ax_excess.set_ylabel("between-start excess / its start")
    ax_directions.axhline(0, color="k", ls=":", lw=0.9)
    ax_directions.set_xlabel("direction (sorted by change)")
    ax_directions.set_ylabel("log variance change, end - start")


# ------------------------------------------------------------------------------------ 01: Lucier's room
def _need(items, what: str) -> list:
    """`items` as a list; a ValueError naming `what` when there is nothing to draw."""
    items = list(items)
    if not items:
        raise ValueError(f"{what}: nothing to draw")
    return items


def _db(a) -> np.ndarray:
    """Magnitude in dB relative to its own peak, floored at -240 dB."""
    a = np.asarray(a, float)
    return 20 * np.log10(np.maximum(a / a.max(), 1e-12))


def lucier_spectrograms(passes, show, sample_rate: int, *, f_star: float, band, max_cols: int = 3):
    """(a) The spectrogram of every pass in `show` (indices into passes), up to max_cols a row, with the
    predicted resonance f* dashed; frequencies up to 1.1 x the band's top (at most Nyquist). Returns the figure."""
    import matplotlib.pyplot as plt

    show = _need(show, "lucier_spectrograms")
    ncol = min(len(show), max_cols)
    nrow = int(np.ceil(len(show) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.6 * nrow), sharex=True, sharey=True, squeeze=False)
    for ax, p in zip(axes.flat, show):
        im = spectrogram(ax, passes[p], sample_rate, fmax=min(sample_rate / 2, band[1] * 1.1))
        ax.axhline(f_star, color="cyan", lw=0.6, ls="--")
        ax.set(title=f"pass {p}", xlabel="time (s)", ylabel="frequency (Hz)")
        ax.label_outer()  # axis labels on the left column and the bottom row only
    for ax in axes.flat[len(show):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes, shrink=0.8, label="dB (each pass to its own peak)")
    fig.suptitle("Lucier's loop: the voice dissolves into the room's resonance (dashed: predicted f*)")
    return fig


def lucier_spectrum(freqs, simulated, predicted, gain, *, n: int, f_star: float, band, modes_hz=()):
    """(b) Pass n's magnitude spectrum (simulated) against the prediction |X0| |G|^n and the one-pass gain |G|,
    each in dB re. its own peak, on a log frequency axis over the band, with f* and the room modes. Returns the
    figure."""
    import matplotlib.pyplot as plt

    freqs, modes_hz = np.asarray(freqs), list(modes_hz)
    for name, a in (("simulated", simulated), ("predicted", predicted), ("gain", gain)):
        if np.shape(a) != freqs.shape:
            raise ValueError(f"lucier_spectrum: {name} has shape {np.shape(a)}, freqs {freqs.shape}")
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(freqs, _db(gain), color="0.6", lw=0.6, label="|G(f)|: loudspeaker x room (one pass)")
    ax.plot(freqs, _db(simulated), color=CUMULATIVE_COLOR, lw=0.9, label=f"pass {n}, simulated")
    ax.plot(freqs, _db(predicted), color=LOCAL_COLOR, lw=0.9, ls="--", label=f"|X0| |G|^{n}, predicted")
    ax.axvline(f_star, color="k", lw=0.8, ls=":", label=f"f* = {f_star:.1f} Hz")
    ax.vlines(modes_hz, 0, 1, transform=ax.get_xaxis_transform(), color="tab:green", lw=0.5,
              alpha=0.6, label="lowest room modes" if modes_hz else None)
    ax.set_xscale("log"); ax.set_xlim(max(band[0] * 0.8, 20), band[1]); ax.set_ylim(-100, 3)
    ax.set_xlabel("frequency (Hz)"); ax.set_ylabel("dB re. peak"); ax.legend(fontsize=7, loc="lower left")
    ax.set_title("What is left after the last pass is the peak of |G|^n")
    return fig


def lucier_dominant_entropy(dominant, entropy, *, f_star: float, lock_in: int | None = None):
    """(c) Left: the dominant frequency per pass (log scale) against f*, with the lock-in pass when there is one.
    Right: the spectral entropy per pass. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.plot(dominant, ".-", ms=3, lw=0.8, label="dominant frequency")
    a1.axhline(f_star, color="k", ls=":", lw=0.8, label=f"predicted f* = {f_star:.1f} Hz")
    if lock_in is not None:
        a1.axvline(lock_in, color="tab:red", lw=0.8, label=f"locks in at pass {lock_in}")
    a1.set_yscale("log"); a1.set_xlabel("pass"); a1.set_ylabel("dominant frequency (Hz)"); a1.legend(fontsize=7)
    a2.plot(entropy, ".-", ms=3, lw=0.8, color=CUMULATIVE_COLOR)
    a2.set_xlabel("pass"); a2.set_ylabel("spectral entropy (bits)")
    a2.set_title("contraction: power gathers into few bins", fontsize=9)
    fig.suptitle("The chain forgets the voice and keeps the room")
    fig.tight_layout()
    return fig


def lucier_embedding(embedding: dict, show):
    """(d) audio.logmel_embedding of the passes in `show`: left, every pass's frames and their centroid on the
    shared two principal components (centroids joined in pass order); right, each pass's total variance.
    Returns the figure."""
    import matplotlib.pyplot as plt

    show = _need(show, "lucier_embedding")
    coords, spread = embedding["coords"], embedding["spread"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    colors = plt.cm.viridis(np.linspace(0, 1, len(show)))
    centroids = np.array([coords[p].mean(axis=0) for p in show])
    for c, p, centre in zip(colors, show, centroids):
        a1.scatter(*coords[p].T, s=3, color=c, alpha=0.35)
        a1.scatter(*centre, s=40, color=c, edgecolor="k", lw=0.5, label=f"pass {p}")
    a1.plot(centroids[:, 0], centroids[:, 1], color="k", lw=0.6)
    explained = embedding["explained"]
    a1.set_xlabel(f"PC1 of log-mel frames (dB; {explained[0]:.0%} of variance)")
    a1.set_ylabel(f"PC2 (dB; {explained[1]:.0%})")
    a1.legend(fontsize=6, ncol=2)
    a2.plot(show, [spread[p] for p in show], "o-", ms=4)
    a2.set_xlabel("pass"); a2.set_ylabel("total variance of log-mel frames (dB²)")
    a2.set_title("the cloud of frames contracts", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ 05: drift and geometry
def synthetic_phases(local, cumulative, phases, true_bounds: dict, *, ylabel: str = "FID (synthetic features)"):
    """Fig. 3: drift_panel of a chain with known phases (metrics.synthetic_phase_chain), its true boundaries
    (phase name -> first generation, or None) dotted, on a symlog axis. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    drift_panel(ax, local, cumulative, phases,
                title="Idealised phases, from a synthetic chain (dotted: true boundaries)",
                local_label="local drift FID(n, n-1)", cumulative_label="cumulative drift FID(n, 0)",
                floor_label=f"noise floor: two halves of one generation (n = {cumulative.n})", xlabel="generation n",
                legend_kw={"fontsize": 7, "loc": "center right"})
    for b in true_bounds.values():
        if b:
            ax.axvline(b - 0.5, color="k", ls=":", lw=0.9)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    return fig


def drift_all_chains(curves: dict):
    """Fig. 1b: {name: (local, cumulative) metrics.DriftCurve} on two shared axes (top local, bottom cumulative):
    each curve's excess over its own noise floor divided by its largest excess, with its interval as a band,
    over the fraction of its run's generations (chains of different lengths and feature spaces side by side).
    Returns the figure."""
    import matplotlib.pyplot as plt

    _need(curves, "drift_all_chains")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.2), sharex=True)
    colors = series_colors(curves)
    for name, (local, cumulative) in curves.items():
        x = np.arange(len(cumulative.values)) / max(len(cumulative.values) - 1, 1)
        for ax, curve, start in ((top, local, 1), (bottom, cumulative, 0)):
            scale = max(np.nanmax(curve.excess[start:]), 1e-12)
            low, high = curve.excess_interval()
            (line,) = ax.plot(x[start:], curve.excess[start:] / scale, ms=3, color=colors[name], label=name,
                              **data_style(name))
            ax.fill_between(x[start:], low[start:] / scale, high[start:] / scale, color=line.get_color(), alpha=0.12,
                            lw=0)
    for ax in (top, bottom):
        ax.axhline(0.0, color=FLOOR_COLOR, ls="--", lw=1.0)
    top.set_ylabel("local drift FID(n, n-1) − floor\n/ its maximum")
    bottom.set_ylabel("cumulative drift FID(n, 0) − floor\n/ its maximum")
    bottom.set_xlabel("fraction of the run's generations  (dashed: the noise floor)")
    fig.legend(*top.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    top.set_title("Single-step and cumulative change of every chain (each in its own feature space)")
    return fig


def drift_phases_row(drift: dict, *, ylabel: str, suptitle: str, panel_width: float = 4.3):
    """Fig. 5: one drift_panel per setting of diagnostics.drift_and_phases ({setting: {"local", "cumulative",
    "phases"}}), in a row, the legend and `ylabel` on the first. Returns the figure."""
    import matplotlib.pyplot as plt

    _need(drift, "drift_phases_row")
    fig, axes = plt.subplots(1, len(drift), figsize=(panel_width * len(drift), 3.6), squeeze=False)
    for ax, (s, d) in zip(axes[0], drift.items()):
        drift_panel(ax, d["local"], d["cumulative"], d["phases"], title=s.replace("_", " "), legend=ax is axes[0, 0])
        ax.title.set_color(setting_color(s, "black"))  # the setting's colour, as in Fig. 1b and 09
    axes[0, 0].set_ylabel(ylabel)
    fig.suptitle(suptitle)
    fig.tight_layout()  # the suptitle above the panels' titles, not on them (03's ImageNet-5 row)
    return fig


# ------------------------------------------------------------------------------------ 06: recursive diffusion
def diffusion_convergence(conv, *, show, n_samples: int):
    """(a) recursive_diffusion.convergence_study in 1-D. Left: the exact chain's densities at the generations in
    `show` (the first is the data, filled), the closed-form limit and N(0, 1). Right: L1 to the limit per
    generation of every exact chain (dotted: the predicted slope (1-lam) e^-delta from mid-run, x5 above), the
    exact chain from a far start and the EM-fitted chain (N = n_samples). Returns the figure."""
    import matplotlib.pyplot as plt

    show = _need(show, "diffusion_convergence")
    lam, delta, pts = conv.real_fraction, conv.delta, conv.points
    x, gens = pts[:, 0], np.arange(len(conv.distance[lam]))
    G = len(gens) - 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 3.9))
    ax1.fill_between(x, conv.data.pdf(pts), color="0.85", label="data (model 0)")
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, max(len(show) - 1, 1)))
    for c, g in zip(colors, show[1:]):
        ax1.plot(x, conv.exact[lam][g].pdf(pts), color=c, lw=1, label=f"generation {g}")
    ax1.plot(x, conv.limit.pdf(pts), "k--", lw=1.3, label="closed-form limit")
    ax1.plot(x, np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), ":", color="0.4", lw=1, label="N(0, 1): the limit for lam = 0")
    ax1.set(xlabel="x", ylabel="density"); ax1.legend(fontsize=7)
    ax1.set_title(f"exact chain, lam = {lam}, delta = {delta}", fontsize=9)
    for f, dist in conv.distance.items():
        line, = ax2.semilogy(gens, np.maximum(dist, 1e-16), lw=1.2, label=f"exact, lam = {f}")
        rate, n0 = (1 - f) * np.exp(-delta), max(G // 2, 1)
        ax2.semilogy(gens[n0:], 5 * dist[n0] * rate ** (gens[n0:] - n0), ls=":", color=line.get_color(), lw=1.2)
    if conv.distance_from_initial is not None:
        ax2.semilogy(gens, np.maximum(conv.distance_from_initial, 1e-16), "--", color="0.3", lw=1,
                     label=f"exact from a far start, lam = {lam}")
    ax2.semilogy(gens, conv.distance_fitted, "o", ms=3, color="tab:red",
                 label=f"EM-fitted (N = {n_samples}), lam = {lam}")
    ax2.plot([], [], ":", color="0.3", label="predicted slope (1-lam) e^-delta (x5 above)")
    ax2.set(ylim=(1e-12, 3), xlabel="generation", ylabel="L1 distance to the closed-form limit")
    ax2.legend(fontsize=6.5, loc="lower left")
    fig.suptitle("Early-stopped recursive diffusion converges geometrically to one limit")
    fig.tight_layout()
    return fig


def diffusion_2d(conv, outs: dict, limit_density, *, n_samples: int):
    """(b) recursive_diffusion.convergence_study in 2-D: one panel per generation of `outs` (generation -> its
    fitted model's sampler output, (n, 2)) over the contours of `limit_density` (the limit model's output density
    on conv.points, reshaped to the grid), all on one box; last, L1 to the limit per generation, exact and
    EM-fitted (N = n_samples). Returns the figure."""
    import matplotlib.pyplot as plt

    panels = _need(outs, "diffusion_2d")
    lam = conv.real_fraction
    gens = np.arange(len(conv.distance[lam]))
    limit_density = np.asarray(limit_density)
    if limit_density.size != len(conv.points):
        raise ValueError(f"diffusion_2d: limit_density has {limit_density.size} values, the grid {len(conv.points)}")
    gx, gy = (conv.points[:, i].reshape(limit_density.shape) for i in (0, 1))
    box = np.quantile(np.concatenate(list(outs.values())), [0.002, 0.998], axis=0)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.3 * (len(panels) + 1), 3.6),
                             gridspec_kw={"width_ratios": [1] * len(panels) + [1.3]})
    for ax, g in zip(axes, panels):
        ax.contour(gx, gy, limit_density, levels=6, colors="k", linewidths=0.6, alpha=0.6)
        ax.scatter(outs[g][:, 0], outs[g][:, 1], s=2, alpha=0.35, color="tab:blue")
        ax.set_title(f"generation {g}: sampler output", fontsize=9)
        ax.set_xlim(box[:, 0]); ax.set_ylim(box[:, 1]); ax.set_aspect("equal", adjustable="box")
    axes[-1].semilogy(gens, np.maximum(conv.distance[lam], 1e-16), label="exact")
    axes[-1].semilogy(gens, conv.distance_fitted, "o", ms=3, color="tab:red", label=f"EM fit, N = {n_samples}")
    axes[-1].set(xlabel="generation", ylabel="L1 to the limit"); axes[-1].legend(fontsize=7)
    fig.suptitle("2-D: the fitted chain settles on the closed-form limit (contours: the limit model's output)")
    fig.tight_layout()
    return fig


def diffusion_hermite(modes, *, lam: float, delta: float):
    """(c) recursive_diffusion.hermite_study: per Hermite order k, the deviation from the limit over generations
    (exact lines, memorising chains' mean dots, their noise floor dotted; log scale); the per-generation factors
    against the prediction (1-lam) e^-k delta; and the limit's gain per order. Returns the figure."""
    import matplotlib.pyplot as plt

    hermite, M = modes.table, modes.max_order
    k, gens = hermite["order k"], np.arange(modes.deviation_exact.shape[0])
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13.5, 3.9))
    for order, c in zip(range(1, M + 1), plt.cm.plasma(np.linspace(0, 0.85, M))):
        scale = abs(modes.deviation_exact[0, order])
        ax1.semilogy(gens, np.maximum(np.abs(modes.deviation_exact[:, order]) / scale, 1e-16), color=c, lw=1,
                     label=f"k = {order}")
        ax1.semilogy(gens, np.abs(modes.deviation_memorising[:, :, order].mean(0)) / scale, "o", ms=2.5, color=c)
        ax1.axhline(modes.noise_floor[order] / scale, color=c, lw=0.5, ls=":")
    ax1.set(ylim=(1e-4, 2), xlabel="generation", ylabel="|c_k(model_n) - c_k(limit)| / |...| at n = 0")
    ax1.set_title("lines: exact; dots: memorising chains (mean);\ndotted: their noise floor", fontsize=8)
    ax1.legend(fontsize=6.5, ncol=2)
    ax2.plot(k, hermite["predicted factor (1-lam) e^-k delta"], "k-", lw=1, label="predicted (1-lam) e^-k delta")
    ax2.plot(k, hermite["exact chain"], "kx", ms=7, label="exact chain")
    ax2.errorbar(k - 0.08, hermite["memorising chains"], 2 * hermite["memorising SE"], fmt="o", ms=4, capsize=2,
                 label="memorising chains (2 SE)")
    ax2.errorbar(k + 0.08, hermite["EM-fitted chain"], 2 * hermite["EM SE"], fmt="s", ms=4, capsize=2, color="tab:red",
                 alpha=0.7, label="EM-fitted chain (2 SE)")
    ax2.set(xlabel="Hermite order k", ylabel="per-generation factor"); ax2.legend(fontsize=6.5)
    ax2.set_title("higher orders die faster", fontsize=9)
    ax3.bar(k, hermite["predicted limit gain"], color="0.8", label="predicted lam / (1 - (1-lam) e^-k delta)")
    ax3.plot(k, hermite["closed-form limit gain"], "kx", ms=7, label="closed-form limit")
    ax3.plot(k, hermite["memorising gain (2nd half)"], "o", ms=4, label="memorising chains, 2nd half")
    ax3.set(xlabel="Hermite order k", ylabel="c_k(limit) / c_k(data)"); ax3.legend(fontsize=6.5)
    ax3.set_title("the limit keeps the data low-pass filtered", fontsize=9)
    fig.suptitle(f"Hermite modes of N(0, 1): lam = {lam}, delta = {delta}")
    fig.tight_layout()
    return fig


def diffusion_annealing(anneal, *, delta0: float):
    """(d) recursive_diffusion.annealing_study: one panel per fresh-data share, L1 to the data per generation
    under each truncation schedule (solid, dashed, dash-dotted), with the summable schedule's limit (lam = 0) or
    the constant schedule's limit dotted. Returns the figure."""
    import matplotlib.pyplot as plt

    fractions = _need(anneal.fractions, "diffusion_annealing")
    schedules = list(dict.fromkeys(kind for _, kind in anneal.distances))  # in the study's order
    gens = np.arange(len(next(iter(anneal.distances.values()))))
    fig, axes = plt.subplots(1, len(fractions), figsize=(5.5 * len(fractions), 3.6), squeeze=False)
    for ax, f in zip(axes[0], fractions):
        for kind, style in zip(schedules, ("-", "--", "-.")):
            ax.plot(gens, anneal.distances[f, kind], style, lw=1.3, label=f"delta_n: {kind}")
        if f == 0:
            ax.axhline(anneal.summable_limit, color="k", ls=":", lw=0.8, label="L1(P_D data, data), D = delta_0 pi^2/6")
        else:
            ax.axhline(anneal.constant_limit[f], color="k", ls=":", lw=0.8, label="constant delta: its limit")
        ax.set(xlabel="generation", ylabel="L1 distance to the data"); ax.set_ylim(bottom=0)
        ax.set_title(f"lam = {f}, delta_0 = {delta0}", fontsize=9); ax.legend(fontsize=7)
    fig.suptitle("Annealed truncation stops the compounding")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ 07: co-evolving models
def refit_variance(part1, *, mean_prediction, log_sd_prediction):
    """Part 1 of 07, gaussian_refit.refit_rates: (left) the 1-D variance per generation, eight chains in grey,
    the mean, median and 5-95% band over chains against the predicted mean ((N-1)/N)^n and the
    median's band from the log drift; (middle) the spread over chains of log sigma^2 against its prediction;
    (right) the d-D log eigenvalues with their Lyapunov slopes from mid-run. Returns the figure."""
    import matplotlib.pyplot as plt

    gens, var, logeig = part1.generations, part1.variance, part1.log_eigenvalues
    half, logvar = (len(gens) - 1) // 2, np.log(var)
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 3.9))
    a1.semilogy(gens, var[:, :8], color="0.75", lw=0.6)
    a1.semilogy(gens, var.mean(1), color="tab:blue", lw=1.6, label="mean over chains")
    a1.semilogy(gens, mean_prediction, "k--", lw=1, label="((N-1)/N)^n")
    a1.semilogy(gens, np.exp(np.median(logvar, axis=1)), color="tab:orange", lw=1.4, label="median chain")
    a1.fill_between(gens, *np.exp(np.quantile(logvar, [0.05, 0.95], axis=1)), color="tab:orange", alpha=0.2,
                    label="5-95% of chains")
    for z in (0.0, -1.645, 1.645):
        a1.semilogy(gens, np.exp(part1.log_drift * gens + z * log_sd_prediction), "k:", lw=1,
                    label="exp(n E log ratio +- 1.645 sd)" if z == 0 else None)
    a1.set(ylim=(np.exp(np.quantile(logvar[-1], 0.01)), 3), xlabel="generation", ylabel="sigma^2_n / sigma^2_0")
    a1.legend(fontsize=6.5, loc="lower left")
    a1.set_title(f"1-D, N = {part1.n_samples}, {var.shape[1]} chains (grey: eight of them)", fontsize=9)
    a2.plot(gens, logvar.std(1), color="tab:blue", lw=1.4, label="sd over chains of log sigma^2_n")
    a2.plot(gens, log_sd_prediction, "k--", lw=1, label="sqrt(n psi'((N-1)/2))")
    a2.set(xlabel="generation", ylabel="sd of log sigma^2_n"); a2.legend(fontsize=7)
    a2.set_title("spread over chains grows like sqrt(n)", fontsize=9)
    for i, c in enumerate(plt.cm.viridis(np.linspace(0, 0.85, part1.dim))):
        a3.plot(gens, np.nanmean(logeig[:, :, i], axis=1), color=c, lw=1.4, label=f"log eigenvalue {i + 1}")
        a3.plot(gens, np.nanmean(logeig[half, :, i]) + part1.lyapunov[i] * (gens - half), ":", color=c, lw=1)
    a3.plot(gens, np.log(part1.trace.mean(1)), color="tab:red", lw=1.2, label="log mean trace / d")
    a3.plot(gens, np.log(mean_prediction), "k--", lw=1, label="log ((N-1)/N)^n")
    a3.plot([], [], "k:", label="Lyapunov slopes psi((N-i)/2) + log(2/N)")
    a3.set(xlabel="generation", ylabel="log"); a3.legend(fontsize=6.5)
    a3.set_title(f"{part1.dim}-D: directions contract at different rates", fontsize=9)
    fig.suptitle("The simplest resonance: an ML-refitted Gaussian contracts")
    fig.tight_layout()
    return fig


def refit_clouds(patterns, *, total_variances, dim: int, n_samples: int):
    """gaussian_refit.refit_patterns: one panel per classified cloud, centred and projected on the last cloud's
    two main directions, titled with its generation and total variance (total_variances, one per cloud); the
    window verdicts in the title. Returns the figure."""
    import matplotlib.pyplot as plt

    clouds = _need(patterns.clouds, "refit_clouds")
    if len(total_variances) != len(clouds):
        raise ValueError(f"refit_clouds: {len(total_variances)} total variances for {len(clouds)} clouds")
    last = clouds[-1] - clouds[-1].mean(0)
    basis = np.linalg.svd(last, full_matrices=False)[2][:2].T  # the last cloud's two main directions
    fig, axes = plt.subplots(1, len(clouds), figsize=(2.6 * len(clouds), 3.0))
    for ax, g, c, v in zip(np.atleast_1d(axes), patterns.generations, clouds, total_variances):
        xy = (c - c.mean(0)) @ basis
        ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.4)
        ax.set_title(f"generation {g}\ntotal variance {v:.2g}", fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
    classified = patterns.generations
    labels = "; ".join(f"{classified[p.start]}-{classified[p.end]}: {p.pattern}" for p in patterns.patterns)
    fig.suptitle(f"one chain (d = {dim}, N = {n_samples}), centred, in the last cloud's two main directions (own scale "
                 f"per panel)\n{labels}", fontsize=9)
    fig.tight_layout()
    return fig


def _generation_axes(fig, axes, suptitle: str) -> None:
    """x label 'generation' on every axis; the figure's title; tight layout."""
    for ax in axes:
        ax.set_xlabel("generation")
    fig.suptitle(suptitle)
    fig.tight_layout()


def coevolve_text(part2, entropy: dict, *, n_samples: int, fresh_fraction: float):
    """Part 2 of 07, coevolution.coevolution_rates, the text cases: mean over chains of the caption entropy
    (entropy: case -> (G + 1,) bits, already averaged), the heterozygosity against Wright-Fisher (without and
    with fresh data) and the captions alive. Returns the figure."""
    import matplotlib.pyplot as plt

    cases = _need(part2.text_cases, "coevolve_text")
    n_chains, n_gens = part2.heterozygosity[cases[0]].shape
    gens = np.arange(n_gens)
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 3.8))
    for name in cases:
        a1.plot(gens, entropy[name], lw=1.3, label=name)
        a2.plot(gens, part2.heterozygosity[name].mean(0), lw=1.3, label=name)
        a3.plot(gens, (part2.results[name]["probs"] > 0).sum(-1).mean(0), lw=1.3, label=name)
    a2.plot(gens, part2.predicted_heterozygosity, "k--", lw=1, label="Wright-Fisher (1 - 1/N)^n H_0")
    a2.plot(gens, part2.predicted_heterozygosity_fresh, "k:", lw=1,
            label=f"with {fresh_fraction:.0%} fresh (sampled captions)")
    a1.set_ylabel("caption entropy (bits)"); a2.set_ylabel("heterozygosity 1 - sum p^2")
    a3.set_ylabel("captions alive")
    a2.legend(fontsize=6.5); a1.set_title(f"mean over {n_chains} chains", fontsize=9)
    _generation_axes(fig, (a1, a2, a3), f"Text diversity: K = {len(part2.original['probs'])} captions, N = {n_samples} "
                     "pairs per generation")
    return fig


def coevolve_images(part2, *, dim: int):
    """Part 2 of 07, the image cases: caption-weighted image diversity (log scale) and fidelity error per
    generation, mean over chains, against the frozen-text predictions without and with fresh data. Returns the
    figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, StrMethodFormatter

    cases = _need(part2.image_cases, "coevolve_images")
    n_chains, n_gens = part2.diversity[cases[0]].shape
    gens, w = np.arange(n_gens), part2.weighted
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name in cases:
        line, = a1.semilogy(gens, part2.diversity[name].mean(0), lw=1.3, label=name)
        a2.plot(gens, part2.fidelity[name].mean(0), lw=1.3, color=line.get_color(), label=name)
    a1.semilogy(gens, w(part2.predicted_traces), "k--", lw=1, label="frozen text, predicted")
    a1.semilogy(gens, w(part2.predicted_traces_fresh), "k:", lw=1, label="frozen text + fresh, predicted")
    a2.plot(gens, w(part2.predicted_shifts), "k--", lw=1, label="frozen text, predicted (bounded by 1)")
    a2.plot(gens, w(part2.predicted_shifts_fresh), "k:", lw=1, label="frozen text + fresh, predicted")
    a1.set_ylabel("image diversity / generation 0"); a1.legend(fontsize=6.5)
    a1.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    a1.yaxis.set_minor_formatter(NullFormatter())
    a1.set_title("sum_k p0_k tr S_k (a dead caption counts 0)", fontsize=9)
    a2.set_ylabel("fidelity error / tr S_0"); a2.legend(fontsize=6.5)
    a2.set_title("sum_k p0_k |mean_k - mean_k,0|^2 / sum_k p0_k tr S_k,0", fontsize=9)
    _generation_axes(fig, (a1, a2), f"Image diversity contracts, fidelity error stays bounded (d = {dim}, mean over "
                     f"{n_chains} chains)")
    return fig


def coevolve_matthew(part2, live: dict, half_life: dict):
    """The Matthew effect, per caption against its initial frequency (log axes): (left) the image diversity left
    at the last generation (live: case -> part2.relative_live_diversity, (R, G + 1, K); mean +- 1 SE over
    chains) against the frozen-text predictions; (right) the generation where the mean diversity falls below
    1/2 (half_life: case -> (K,)) against log(1/2) / log rho_k. Returns the figure."""
    import matplotlib.pyplot as plt

    cases = _need(live, "coevolve_matthew")
    p0, rho = part2.original["probs"], part2.rho
    n_chains, n_gens = live[cases[0]].shape[:2]
    G = n_gens - 1
    order = np.argsort(p0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12.5, 4.2))
    a1.plot(p0[order], (part2.predicted_traces[-1] / part2.trace0)[order], "k--", lw=1,
            label="frozen text, predicted rho_k^G")
    a1.plot(p0[order], (part2.predicted_traces_fresh[-1] / part2.trace0)[order], "k:", lw=1,
            label="frozen text + fresh, predicted")
    for name, marker in zip(cases, "osD^v"):
        end = live[name][:, -1]
        a1.errorbar(p0, end.mean(0), end.std(0) / np.sqrt(n_chains), fmt=marker, ms=4, capsize=1.5, alpha=0.85,
                    label=name)
        a2.plot(p0, half_life[name], marker, ms=4, alpha=0.85, label=name)
    a2.plot(p0[order], (np.log(0.5) / np.log(rho))[order], "k--", lw=1,
            label="frozen text, predicted log(1/2) / log rho_k")
    a1.set(xscale="log", xlabel="initial caption frequency p0_k",
           ylabel=f"image diversity at generation {G} / generation 0")
    a1.legend(fontsize=6.5, loc="center right")
    a1.set_title(f"mean over {n_chains} chains (+- 1 SE); a dead caption counts 0", fontsize=9)
    a2.set(xscale="log", yscale="log", xlabel="initial caption frequency p0_k",
           ylabel="generation where mean diversity < 1/2")
    a2.set_title(f"half-life (missing: not reached within {G} generations)", fontsize=9); a2.legend(fontsize=6.5)
    freq_ticks = [t for t in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5) if p0.min() / 1.5 <= t <= p0.max() * 1.5]
    for ax in (a1, a2):
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xticks(freq_ticks, [f"{t:g}" for t in freq_ticks])
    a2.yaxis.set_minor_formatter(plt.NullFormatter())
    a2.set_yticks([1, 2, 5, 10, 20, 50, 100, 200], ["1", "2", "5", "10", "20", "50", "100", "200"])
    fig.suptitle("Matthew effect: frequent captions keep diverse images, rare ones collapse first")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ 10: the sweep
SWEEP_VERDICT_COLORS = {"collapsing": "#d6604d", "holding": "#4393c3", "undetermined": "#e0e0e0"}
MIXING_COLORS = {"mixed": "#1b7837", "mixing": "#a6dba0", "separated": "#762a83", "inconclusive": "#e0e0e0"}
CONTRACTION_COLORS = {"directional": "#b35806", "uniform": "#fdb863", "none": "#8073ac", "inconclusive": "#e0e0e0"}


def iterative_mle(rates):
    """Part 3 of 07, iterative_mle.iterative_mle_rates: (left) E tr S_t / tr S and (middle) E|mu_t - mu|^2 / tr S
    of the plain MLE under replace and accumulate, the mean over replicates with its interval against the closed
    forms (accumulate: its limit sin(pi/sqrt n) / (pi/sqrt n) and the bound pi^2 / (6 n)); (right, log scale)
    our counterexample's variance against (1 - 1/n) kappa^(t - 1), plain accumulate beside it. Returns the
    figure."""
    import matplotlib.pyplot as plt

    gens, n = rates.generations, rates.n_samples
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 3.9))
    mle = {key: case for key, case in rates.cases.items() if case.name == "MLE"}
    for key, case in mle.items():
        for ax, quantity in ((a1, "variance"), (a2, "mean_error")):
            mean, low, high = rates.band(key, quantity)
            line, = ax.plot(gens, mean, lw=1.4, label=f"{case.regime}, measured")
            ax.fill_between(gens, low, high, color=line.get_color(), alpha=0.25)
            ax.plot(gens, case.predicted[quantity], "k--" if case.regime == "replace" else "k:", lw=1,
                    label=f"{case.regime}, predicted")
    a1.axhline(rates.accumulate_limit, color="0.5", lw=0.8, label="accumulate's limit sin(x)/x, x = pi/sqrt n")
    a2.axhline(np.pi**2 / (6 * n), color="0.5", lw=0.8, label="accumulate's bound pi^2 / (6 n)")
    a1.set(ylabel="E tr S_t / tr S"); a2.set(ylabel="E|mu_t - mu|^2 / tr S")
    a1.set_title(f"variance (n = {n}, d = {rates.dim})", fontsize=9)
    a2.set_title("mean error: grows under replace, bounded under accumulate", fontsize=9)
    ours = rates.counterexample
    mean, low, high = rates.band(f"{ours.name} ({ours.regime})", "variance")
    line, = a3.semilogy(gens, mean, lw=1.4, label="ours, measured")
    a3.fill_between(gens, np.clip(low, np.finfo(float).tiny, None), high, color=line.get_color(), alpha=0.25)
    a3.semilogy(gens, ours.predicted["variance"], "k--", lw=1, label="(1 - 1/n) kappa^(t-1)")
    a3.semilogy(gens, rates.band("MLE (accumulate)", "variance")[0], color="tab:orange", lw=1.2,
                label="plain accumulate, measured")
    a3.axhline(rates.collapse_level, color="0.5", lw=0.8, ls=":", label=f"collapse level {rates.collapse_level:g}")
    a3.set(ylabel="E tr S_t / tr S")
    a3.set_title(f"ours: w = {rates.newest_share:g}, tau = {rates.temperature:g}, kappa = "
                 f"{rates.collapse_factor:.3f}", fontsize=9)
    for ax in (a1, a2, a3):
        ax.legend(fontsize=6.5)
    _generation_axes(fig, (a1, a2, a3), f"Iterative MLE: replace collapses, accumulate does not (real share "
                     f"1/(t+1)), ours does (mean over {rates.n_replicates} chains, {rates.level:.0%} intervals)")
    return fig


def weak_curation(grid, reference: dict | None, *, feature_network: str, confidence: float = 0.95):
    """Weak curation (mitigations.curation_summary): (left) final class retention and (right) final cumulative
    FID(g, 0) against the curator's accuracy, one colour per budget, hardest-first solid and random dashed; the
    uncurated chain at the same generation dotted. With several seeds per cell, the mean over seeds and its
    Student-t interval at `confidence` (between chains: the chain's own noise); with one, retention's Wilson
    interval (within the chain's last generation only). Returns the figure."""
    import matplotlib.pyplot as plt

    from .mitigations import CHANCE
    from .sweep import mean_interval
    from .watermark import wilson_interval

    seeds = int(grid["replicate"].nunique()) if "replicate" in grid else 1
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    budgets = sorted(grid["budget"].unique())
    colors = dict(zip(budgets, OTHER_COLORS))
    for ax, column in zip(axes, ("final class retention", "final cumulative FID")):
        for (focus, budget), cell in grid.groupby(["focus", "budget"], sort=True):
            by_accuracy = cell.sort_values("curator accuracy").groupby("curator accuracy", sort=True)
            x = np.array(list(by_accuracy.groups), float)
            if seeds >= 2:  # the mean over seeds and its Student-t interval (sweep.mean_interval, as the verdicts)
                ends = np.array([mean_interval(v[column], alpha=1 - confidence) for _, v in by_accuracy])
            elif "retention" in column:  # a share of the last generation's samples (the watermark's Wilson interval)
                ends = np.array([(v[column].iloc[0], *wilson_interval(int(round(v[column].iloc[0] * v["samples"].iloc[0])),
                                                                       int(v["samples"].iloc[0]), confidence=confidence))
                                 for _, v in by_accuracy])
            else:  # one seed's drift: no interval between chains
                ends = np.array([(v[column].iloc[0],) * 3 for _, v in by_accuracy])
            p = ends[:, 0]
            err = np.vstack([p - ends[:, 1], ends[:, 2] - p]) if seeds >= 2 or "retention" in column else None
            ax.errorbar(x, p, yerr=err, ls="-" if focus == "hardest" else "--", marker="o", ms=4, capsize=2,
                        color=colors[budget], label=f"{focus}, budget {budget:g}")
        if reference is not None:
            ax.axhline(reference[column], color=FLOOR_COLOR, ls=":", lw=1,
                       label=f"no curation (generation {reference['generation']})")
        ax.axvline(CHANCE, color="0.75", lw=0.8)
        ax.set_xlabel(f"curator accuracy ({CHANCE:g}: chance)")
    spread = (f"mean of {seeds} seeds, t {confidence:.0%} interval" if seeds >= 2
              else f"one seed, Wilson {confidence:.0%} interval")
    axes[0].set_ylabel(f"final class retention\n({spread})")
    axes[1].set_ylabel(f"final cumulative FID(g, 0)\n{feature_network}")
    axes[0].legend(fontsize=7)
    g = int(grid["generations"].max())
    fig.suptitle(f"Weak curation of the label-guided MNIST chain (after {g} generations, "
                 + (f"{seeds} seeds per cell, paired)" if seeds >= 2 else "one seed per cell)"))
    fig.tight_layout()
    return fig


def _cell_edges(values, *, log: bool = False) -> np.ndarray:
    """Edges of the cells centred on increasing grid values (midpoints; the outer cells as wide as their
    neighbours' gap, or 10% of the value for a single one), geometric midpoints on a log axis."""
    v = np.log(np.asarray(values, float)) if log else np.asarray(values, float)
    if len(v) == 1:
        half = np.array([0.1 if log else max(abs(v[0]) * 0.1, 0.05)])
    else:
        half = np.diff(v) / 2
    mid = (v[:-1] + v[1:]) / 2 if len(v) > 1 else np.zeros(0)
    edges = np.r_[v[0] - half[0], mid, v[-1] + half[-1]]
    return np.exp(edges) if log else edges


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"


def _label_height(rows, i: int) -> float:
    """Where a cell's label goes: above the row's centre, where a boundary's markers sit."""
    edges = _cell_edges(rows)
    return rows[i] + 0.55 * (edges[i + 1] - rows[i])


def _label_box(rgba) -> dict:
    """A cell label in front of a boundary drawn across it: a box of the cell's own colour, above the line."""
    return {"zorder": 4, "bbox": {"boxstyle": "square,pad=0.15", "facecolor": rgba, "edgecolor": "none"}}


def _grid_axes(ax, columns, rows, *, xlabel: str, ylabel: str, title: str, log_x: bool) -> None:
    ax.set_xscale("log" if log_x else "linear")
    ax.set_xticks(list(columns), [f"{c:g}" for c in columns])
    ax.set_yticks(list(rows), [f"{r:g}" for r in rows])
    ax.minorticks_off()
    ax.grid(False)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=9)


def phase_map(ax, grid, *, columns, rows, xlabel: str, ylabel: str, title: str, cbar_label: str, cmap="viridis",
              log_x: bool = False, fmt: str = ".2g", vmin=None, vmax=None):
    """A measure over the sweep's grid as a heat map in the axes' own units (cells centred on the grid values),
    each cell annotated with its value; a colour bar labelled `cbar_label`. Returns the mesh."""
    grid = np.asarray(grid, float)
    mesh = ax.pcolormesh(_cell_edges(columns, log=log_x), _cell_edges(rows), grid, cmap=cmap, vmin=vmin, vmax=vmax,
                         shading="flat")
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            if np.isfinite(grid[i, j]):
                text = format(grid[i, j] + 0.0, fmt).replace("-0.00", "0.00")  # no signed zeros
                rgba = mesh.cmap(mesh.norm(grid[i, j]))
                ax.text(c, _label_height(rows, i), text, ha="center", va="center", fontsize=6.5,
                        color=_text_color(rgba), **_label_box(rgba))
    _grid_axes(ax, columns, rows, xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x)
    ax.figure.colorbar(mesh, ax=ax, label=cbar_label, fraction=0.046, pad=0.03)
    return mesh


def verdict_map(ax, grid, *, columns, rows, colors: dict, xlabel: str, ylabel: str, title: str,
                log_x: bool = False) -> list:
    """Verdicts over the grid, one colour each (`colors`: verdict -> colour), each cell labelled with the
    verdict. Returns legend handles of the verdicts that occur."""
    from matplotlib.colors import ListedColormap, to_rgba
    from matplotlib.patches import Patch

    names = list(colors)
    unknown = sorted({str(v) for v in np.ravel(grid)} - set(names))
    if unknown:
        raise ValueError(f"verdicts {unknown} have no colour; known: {names}")
    codes = np.vectorize(names.index)(np.asarray(grid, dtype=object)).astype(float)
    ax.pcolormesh(_cell_edges(columns, log=log_x), _cell_edges(rows), codes, shading="flat",
                  cmap=ListedColormap([colors[n] for n in names]), vmin=-0.5, vmax=len(names) - 0.5)
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            name = names[int(codes[i, j])]
            ax.text(c, _label_height(rows, i), name, ha="center", va="center", fontsize=6,
                    color=_text_color(to_rgba(colors[name])), **_label_box(to_rgba(colors[name])))
    _grid_axes(ax, columns, rows, xlabel=xlabel, ylabel=ylabel, title=title, log_x=log_x)
    seen = {str(v) for v in np.ravel(grid)}
    return [Patch(facecolor=colors[n], edgecolor="0.5", label=n) for n in names if n in seen]


def _outlined(color: str = "black") -> list:
    """A dark outline around a line or marker, so that it shows on light and dark cells (and in a legend) alike."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=3.2, foreground=color)]


def draw_boundary(ax, bound, *, columns, color="white", ls="--", marker="o", ms: float = 4.5, hollow: bool = False,
                  label: str | None = None, log_x: bool = False):
    """A sweep.Boundary on a grid's axes, outlined: the crossing positions joined row to row; a row that
    collapses throughout gets a '<' at the grid's left edge, one that holds throughout a '>' at its right edge
    (inside the outer cells)."""
    rows = np.asarray(bound.rows, float)
    pos = np.asarray(bound.position, float)
    ok = np.isfinite(pos)
    ax.plot(pos[ok], rows[ok], ls=ls, marker=marker, ms=ms, color=color, lw=1.6, label=label,
            markerfacecolor="none" if hollow else color, path_effects=_outlined())
    e = _cell_edges(columns, log=log_x)
    e = np.log(e) if log_x else e
    inside = (e[0] + 0.12 * (e[1] - e[0]), e[-1] - 0.12 * (e[-1] - e[-2]))  # in the outer cells, clear of the ticks
    left, right = (np.exp(inside) if log_x else inside)
    for r, state in zip(rows, bound.state):
        if state == "collapsing throughout":
            ax.plot(left, r, marker="<", ms=7, color=color, path_effects=_outlined())
        elif state == "holding throughout":
            ax.plot(right, r, marker=">", ms=7, color=color, path_effects=_outlined())


def sweep_phase_diagrams(summary, *, suptitle: str):
    """The image sweep (sweep.SweepSummary) as six phase diagrams over (column axis x fresh share), each with the
    collapsing boundary: effective dimension at the end / at the start, cumulative drift above its floor, class
    retention at the end; the collapse verdict, the claim's mixing and contraction verdicts. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    plan = summary.plan
    cols, rows, bound = plan.values, plan.fresh_fractions, summary.boundary()
    xlabel, ylabel = plan.axis.label, "fresh real share f per generation"
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.6))
    common = dict(columns=cols, rows=rows, xlabel=xlabel, ylabel=ylabel)
    phase_map(axes[0, 0], summary.grid("effective dimension / start"), cmap="mako",
              title="effective dimension, end / generation 0", cbar_label="participation ratio, end / start",
              fmt=".2f", **common)
    phase_map(axes[0, 1], summary.grid("drift excess (end)"), cmap="rocket_r", fmt=".3g",
              title="cumulative drift at the end, above its floor", cbar_label="FID(end, gen 0) - floor", **common)
    phase_map(axes[0, 2], summary.grid("retention (end)"), cmap="crest_r", vmin=0, vmax=1, fmt=".2f",
              title="class retention at the end", cbar_label="share classified as its own label", **common)
    for ax, column, colors, title in ((axes[1, 0], "collapse", SWEEP_VERDICT_COLORS, "collapse verdict (our rule)"),
                                      (axes[1, 1], "mixing", MIXING_COLORS, "claim: mixing verdict"),
                                      (axes[1, 2], "contraction", CONTRACTION_COLORS, "claim: contraction verdict")):
        handles = verdict_map(ax, summary.grid(column), colors=colors, title=title, **common)
        handles.append(Line2D([], [], ls="--", marker="o", ms=4.5, color="white", path_effects=_outlined(),
                              label="collapsing boundary"))
        ax.legend(handles=handles, fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4,
                  frameon=False)
    for ax in axes.ravel():
        draw_boundary(ax, bound, columns=cols)
    for ax in axes[0]:  # one x label per column of panels, one y label per row
        ax.set_xlabel("")
    for ax in axes[:, 1:].ravel():
        ax.set_ylabel("")
    fig.suptitle(suptitle, color=setting_color(plan.setting, "black"))  # the swept setting's colour
    fig.tight_layout(h_pad=2.5)
    return fig


def sweep_counterpart(summary, counterpart, *, suptitle: str):
    """Beside the image sweep's collapse diagram, the recursive-diffusion counterpart (sweep.DiffusionSweep):
    its measured end-of-chain gain over (delta x lam) with the measured boundary, the closed-form boundary at the
    chains' length and the limit's; and measured against predicted gain per cell. Returns the figure."""
    import matplotlib.pyplot as plt

    plan = summary.plan
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16.5, 4.6), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    phase_map(a1, summary.grid("retention fall"), columns=plan.values, rows=plan.fresh_fractions, cmap="rocket_r",
              xlabel=plan.axis.label, ylabel="fresh real share f per generation", fmt=".2f", vmin=0,
              title=f"image sweep ({plan.setting}): class retention fall", cbar_label="retention, generation 0 - end")
    a1.title.set_color(setting_color(plan.setting, "black"))  # the swept setting's colour, as in 05 and 09
    draw_boundary(a1, summary.boundary(), columns=plan.values, label="collapsing boundary")
    a1.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    c = counterpart
    phase_map(a2, c.measured, columns=c.deltas, rows=c.fresh_fractions, cmap="crest", log_x=True, vmin=0, vmax=1,
              fmt=".2f", xlabel="early-stopping time delta (OU clock, log scale)",
              ylabel="fresh real share lam per generation",
              title=f"recursive diffusion: kept share of Hermite order {c.order}",
              cbar_label=f"c_{c.order}(end) / c_{c.order}(data), measured")
    lam = np.asarray(c.fresh_fractions, float)
    for values, ls, label in ((c.predicted_boundary, "-", "closed form at the chains' length"),
                              (c.limit_boundary, ":", "closed form of the limit (lam = 0: delta 0, off the axis)")):
        ok = np.isfinite(values) & (values > 0)  # a limit boundary at delta 0 (lam = 0) lies off a log axis
        a2.plot(values[ok], lam[ok], ls=ls, color="#fdae61", lw=1.8, marker="s", ms=3, label=label,
                path_effects=_outlined())
    # over the closed form, hollow, so that both show where they coincide
    draw_boundary(a2, c.measured_boundary, columns=c.deltas, label="measured (from the cells)", log_x=True, ms=8,
                  hollow=True)
    a2.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    t = c.table
    a3.errorbar(t["gain predicted"], t["gain measured"], yerr=[t["gain measured"] - t["gain low"],
                t["gain high"] - t["gain measured"]], fmt="o", ms=3, capsize=2, color="0.2")
    a3.plot([0, 1], [0, 1], "k:", lw=1)
    a3.axhline(c.gain_tol, color="tab:red", lw=0.9, ls="--", label=f"collapse threshold {c.gain_tol:g}")
    a3.set(xlabel=f"predicted gain (closed form, mean of generations {c.generations[0]}-{c.generations[-1]})",
           ylabel="measured gain (memorising chains)")
    a3.set_title("each cell: measured against the closed form", fontsize=9)
    a3.legend(fontsize=7, loc="upper left")
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig

