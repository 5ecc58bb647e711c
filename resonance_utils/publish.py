"""What a notebook writes: figures (PNG and PDF, stamped), tables (CSV and Markdown), key numbers (JSON) and
audio, each recorded in the figures folder's manifest with the run's id (store: the manifest and atomic files).

Kept apart from store so that the chains' code, which uses store's run folders, does not import the plotting
code: editing a figure never changes a chain's run key.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import _now, atomic_path, check_manifest, figures_dir, git_commit, run_id, update_manifest, write_json


STRICT_FIGURES_ENV = "RESONANCE_STRICT_FIGURES"  # "1": a figure with layout problems is an error


class FigureLayoutError(RuntimeError):
    """A figure saved with colliding text or dead space while RESONANCE_STRICT_FIGURES=1."""


class Outputs:
    """Everything one notebook run writes, each file recorded in figures/MANIFEST.json (with the run's id,
    `run_id`, which run_all.sh compares before it skips a notebook).

    outputs = Outputs(cfg, data_source="real: CMU ARCTIC a0007 (pysptk)", feature_network="none")
    outputs.figure(fig, "lucier_spectrograms", caption="..."); outputs.table(df, "taxonomy"); outputs.numbers({...})
    """

    def __init__(self, cfg, *, data_source: str, feature_network: str = "none", device: str | None = None,
                 stem: str | None = None):
        import time

        from .runtime import describe_device

        self.cfg, self.stem = cfg, stem or cfg.notebook
        self.data_source, self.feature_network = data_source, feature_network
        self.device = device or describe_device()
        self.dir = figures_dir(cfg.profile)
        self.dir.mkdir(parents=True, exist_ok=True)
        check_manifest(self.dir)  # a damaged manifest is repaired now, not at the first figure
        self.run_id = run_id()
        self._t0 = time.perf_counter()
        self.commit = git_commit()
        self.written: list[Path] = []

    @property
    def stamp_text(self) -> str:
        return (f"resonance · {self.stem} · profile {self.cfg.profile} · data: {self.data_source} · "
                f"features: {self.feature_network} · our reconstruction, not the paper's numbers")

    def _record(self, paths: list[Path], **extra) -> None:
        import time

        from .records import read_by

        rec = {"notebook": self.stem, "profile": self.cfg.profile, "params": self.cfg.to_json(),
               "read": read_by(self.stem),  # {producer: its run id}: which runs of other notebooks made this
               "git_commit": self.commit, "device": self.device,
               "wall_time_s": round(time.perf_counter() - self._t0, 2), "data_source": self.data_source,
               "feature_network": self.feature_network, "created": _now(), "run_id": self.run_id, **extra}
        self.written += paths
        update_manifest(self.dir, {p.relative_to(self.dir).as_posix(): rec for p in paths})

    def figure(self, fig, name: str, *, caption: str) -> list[Path]:
        """Stamp, check the layout (plots.layout_problems) and save as name.png and name.pdf (fonts embedded),
        recording `caption` (what the figure shows and what in it is our reconstruction, 1-2 sentences) and the
        layout problems in both files' manifest entries. With RESONANCE_STRICT_FIGURES=1 a figure with layout
        problems is an error (after saving, so that it can be looked at)."""
        import os

        import matplotlib

        from .plots import FONT_RC, SAVE_BBOX, layout_problems, stamp

        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"figure {name!r}: a caption is required (what it shows, what in it is ours)")
        # measured as the PNG is drawn: small text's width changes by a few percent with the dpi (hinting)
        shown_dpi, save_dpi = fig.dpi, matplotlib.rcParams["savefig.dpi"]
        fig.set_dpi(shown_dpi if save_dpi == "figure" else float(save_dpi))
        try:
            stamp(fig, self.stamp_text)
            problems = layout_problems(fig, bbox_inches=SAVE_BBOX)
            paths = []
            with matplotlib.rc_context(FONT_RC):
                for ext in ("png", "pdf"):
                    final = self.dir / f"{name}.{ext}"
                    with atomic_path(final) as tmp:
                        fig.savefig(tmp, format=ext, bbox_inches=SAVE_BBOX, dpi=fig.dpi)
                    paths.append(final)
        finally:
            fig.set_dpi(shown_dpi)  # the notebook shows it as before
        self._record(paths, caption=" ".join(caption.split()), layout_problems=problems)
        if problems and os.environ.get(STRICT_FIGURES_ENV) == "1":
            raise FigureLayoutError(f"figure {name!r} ({paths[0]}) has {len(problems)} layout problem(s) "
                                    f"({STRICT_FIGURES_ENV}=1):\n  - " + "\n  - ".join(problems))
        return paths

    def table(self, df, name: str, *, floatfmt: str = ".4g") -> list[Path]:
        """Save a pandas DataFrame as name.csv and name.md (a header line says what made it)."""
        csv, md = self.dir / f"{name}.csv", self.dir / f"{name}.md"
        with atomic_path(csv) as tmp:
            df.to_csv(tmp, index=False)
        with atomic_path(md) as tmp:
            tmp.write_text(f"<!-- {self.stamp_text} -->\n\n" + markdown_table(df, floatfmt=floatfmt) + "\n")
        self._record([csv, md])
        return [csv, md]

    def numbers(self, values: dict) -> Path:
        """The notebook's key numbers as figures/<stem>.json (with the profile and data source)."""
        path = self.dir / f"{self.stem}.json"
        write_json(path, {"profile": self.cfg.profile, "data_source": self.data_source,
                          "feature_network": self.feature_network, **values})
        self._record([path])
        return path

    def audio(self, wave, sample_rate: int, name: str) -> Path:
        """A 16-bit WAV under figures/audio/, peak-normalised to -1 dBFS for listening."""
        import soundfile as sf

        wave = np.asarray(wave, dtype=np.float64)
        peak = np.max(np.abs(wave)) or 1.0
        path = self.dir / "audio" / f"{name}.wav"
        with atomic_path(path) as tmp:
            sf.write(tmp, (wave / peak * 10 ** (-1 / 20)).astype(np.float32), int(sample_rate), subtype="PCM_16",
                     format="WAV")
        self._record([path])
        return path


def markdown_table(df, *, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
