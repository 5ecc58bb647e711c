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
