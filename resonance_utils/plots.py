"""One look for every figure, and a stamp on each saying which profile, data and feature network made it."""
from __future__ import annotations

import numpy as np
import seaborn as sns

PALETTE = "colorblind"
LOCAL_COLOR, CUMULATIVE_COLOR = "#1f77b4", "#ff7f0e"  # the paper's blue (local) and orange (cumulative)


def set_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.95,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def stamp(fig, text: str) -> None:
    """Write `text` (profile, data source, feature network) small in the figure's bottom-right corner."""
    for t in list(fig.texts):
        if t.get_gid() == "resonance-stamp":
            t.remove()
    # below the axes' labels; savefig's tight bounding box grows to include it
    fig.text(0.995, -0.01, text, ha="right", va="top", fontsize=6.5, color="0.35", gid="resonance-stamp")


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
    for s, r in results.items():
        g = np.arange(len(r))
        if s != "unconditional":
            ax_retention.plot(g, [m.get("class_retention", np.nan) for m in r.metrics], "o-", ms=4,
                              label=s.replace("_", " "))
        ax_entropy.plot(g, [m["class_entropy_bits"] for m in r.metrics], "o-", ms=4, label=s.replace("_", " "))
    ax_retention.axhline(1 / n_classes, color="0.5", ls=":", lw=0.8)
    ax_retention.set_ylim(0, 1.02)
    ax_retention.set_xlabel("generation"), ax_retention.set_ylabel("class retention")
    ax_retention.legend(fontsize=8)
    ax_entropy.axhline(np.log2(n_classes), color="0.5", ls=":", lw=0.8)
    ax_entropy.set_xlabel("generation"), ax_entropy.set_ylabel("predicted-class entropy (bits)")
    ax_entropy.legend(fontsize=8)


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


def drift_panel(ax, local, cumulative, phases, *, title: str, legend: bool = True) -> None:
    """Local and cumulative drift (metrics.DriftCurve) over the detected phases (metrics.Phases): Fig. 5. Each
    curve with its interval; their common floor (same halves, same n) once, dashed."""
    g = cumulative.generations
    shade_phases(ax, g, phases.labels, legend=legend)
    drift_curve(ax, local, color=LOCAL_COLOR, label="local FID(n, n-1)", floor=False)
    drift_curve(ax, cumulative, color=CUMULATIVE_COLOR, label="cumulative FID(n, 0)",
                floor_label=f"floor (n = {cumulative.n})")
    ax.set_title(title)
    ax.set_xlabel("generation")
    if legend:
        ax.legend(fontsize=6)


GEOMETRY_COLUMNS = (("total_variance", "total variance"), ("participation_ratio", "participation ratio"),
                    ("lid_mle", "local intrinsic dim. (MLE)"), ("roughness", "roughness"))


def geometry_panels(axes, geo, *, columns=GEOMETRY_COLUMNS) -> None:
    """One panel per geometry measure, one line per setting, from a geometry.geometry_trajectory table with a
    'setting' column."""
    for ax, (col, label) in zip(axes, columns):
        for s, part in geo.groupby("setting", sort=False):
            ax.plot(part["generation"], part[col], "o-", ms=3, label=str(s).replace("_", " "))
        ax.set_xlabel("generation")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)


def claim_quadrants(ax, assessments: dict, *, anisotropy_tol: float) -> None:
    """The paper's 2 x 2 (ergodic? x directionally contracting?), every setting placed by its measured values
    with intervals: x = per-generation decay rate of the between-start excess (left of 1: the starts are being
    forgotten), y = anisotropy of the contraction (log spread, above the threshold: directional).
    assessments: {label: claim.SettingAssessment}; markers say the observed outcome."""
    markers = {"resonance": "o", "wandering": "s", "separate basins": "D", "inconclusive": "x"}
    colors = sns.color_palette(PALETTE, len(assessments))
    for (label, a), color in zip(assessments.items(), colors):
        m, c = a.mixing, a.contraction
        x = m.rate if np.isfinite(m.rate) else 0.0
        xerr = [[max(x - m.rate_interval[0], 0)], [max(m.rate_interval[1] - x, 0)]]
        yerr = [[c.spread - c.spread_interval[0]], [c.spread_interval[1] - c.spread]]
        ax.errorbar(x, c.spread, xerr=xerr, yerr=yerr, fmt=markers[a.observed], color=color, ms=6, capsize=2,
                    label=f"{label}: observed {a.observed}")
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
    colors = sns.color_palette(PALETTE, len(assessments))
    for (label, a), color in zip(assessments.items(), colors):
        m = a.mixing
        g = np.arange(len(m.excess))
        scale = m.start_distance if m.start_distance > 0 else 1.0
        ax_excess.errorbar(g, m.excess / scale, yerr=m.excess_se / scale, fmt="o-", ms=3, color=color, label=label)
        ax_excess.plot(g, m.fitted / scale, "--", color=color, lw=0.9)
        first = a.contraction.per_chain[0]
        order = np.argsort(first.direction_change)
        k = np.arange(len(order))
        ci = first.direction_change_interval[order]
        ax_directions.errorbar(k, first.direction_change[order], yerr=[first.direction_change[order] - ci[:, 0],
                               ci[:, 1] - first.direction_change[order]], fmt="o-", ms=3, color=color)
    ax_excess.axhline(next(iter(assessments.values())).mixing.mixed_effect, color="k", ls=":", lw=0.9)
    ax_excess.set_yscale("symlog", linthresh=0.01)
    ax_excess.set_xlabel("generation")
    ax_excess.set_ylabel("between-start excess / its start")
    ax_directions.axhline(0, color="k", ls=":", lw=0.9)
    ax_directions.set_xlabel("direction (sorted by change)")
    ax_directions.set_ylabel("log variance change, end - start")
