"""The results page: <figures dir>/index.html, one static page that shows what a run found.

In order: 09's claim table; every figure, grouped by notebook, with its caption and provenance (profile, data
source, feature network, git commit, time) from the figures folder's MANIFEST.json; every table; a link to each
executed notebook rendered as HTML (nbconvert, into <figures dir>/notebooks/); the run's timings
(build/<profile>/last_run.json). Self-contained: inline CSS, no script, relative links only, so the figures
folder can be copied or opened from disk (file://) with no server and no network. A piece that is not there yet
(a notebook not run, no claim table) is shown as missing, never an error.

./run_all.sh writes it at the end of every finished run; `python -m resonance_utils.results_page --profile quick`
rebuilds it alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

from . import config, store

PAGE = "index.html"
NOTEBOOK_PAGES = "notebooks"  # <figures dir>/notebooks/<stem>.html, the executed notebooks as HTML
CLAIM_NOTEBOOK, CLAIM_TABLE = "09_claim", "claim_table"
TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_TEMPLATE, NOTEBOOK_TEMPLATE = "results.html.j2", "notebook.html.j2"
PROVENANCE = (("profile", "profile"), ("data_source", "data"), ("feature_network", "feature network"),
              ("git_commit", "commit"), ("created", "created"), ("device", "device"))
TABLE_EXTS = (".md", ".csv")
OUTPUT_KINDS = ("figure", "table", "file")  # the order of a notebook's outputs on the page


def _provenance(rec: dict) -> list[tuple[str, str]]:
    """(label, value) of a manifest record's provenance fields that it holds."""
    return [(label, str(rec[key])) for key, label in PROVENANCE if rec.get(key) not in (None, "")]


def _table_html(figures: Path, files: dict[str, dict]) -> str | None:
    """A table as HTML: the Markdown the notebook wrote (its CSV when there is no Markdown), rendered by mistune
    with HTML escaped; None when neither file is on disk."""
    import mistune

    md, csv = (next((f for f in files if f.endswith(ext) and (figures / f).is_file()), None) for ext in TABLE_EXTS)
    if md:
        # the stamp comment (publish.Outputs.table) is shown as provenance, not as escaped text
        text = "\n".join(ln for ln in (figures / md).read_text().splitlines() if not ln.startswith("<!--"))
    elif csv:
        import pandas as pd

        from .publish import markdown_table

        text = markdown_table(pd.read_csv(figures / csv))
    else:
        return None
    return mistune.create_markdown(escape=True, plugins=["table"])(text)


def _group(manifest: dict[str, dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """{notebook: {output name without extension: {file: record}}}, in the manifest's order."""
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for f, rec in manifest.items():
        if isinstance(rec, dict):
            out.setdefault(str(rec.get("notebook") or "_unknown"), {}).setdefault(
                f.rsplit(".", 1)[0] if "." in Path(f).name else f, {})[f] = rec
    return out


def _output_item(figures: Path, name: str, files: dict[str, dict], last_run_id: str | None) -> dict:
    """One output (a figure, a table or another file) of a notebook for the template."""
    exts = {Path(f).suffix: f for f in files}
    first = next(iter(files.values()))
    rec = files.get(exts.get(".png", ""), first)
    item = {"name": name, "anchor": f"out-{name.replace('/', '-')}",
            "files": [{"name": f, "href": quote(f), "exists": (figures / f).is_file()} for f in files],
            "caption": next((r["caption"] for r in files.values() if r.get("caption")), None),
            "provenance": _provenance(rec),
            # an output the notebook's latest run did not rewrite: from an earlier run, maybe of other parameters
            "earlier_run": bool(last_run_id and rec.get("run_id") not in (None, last_run_id))}
    if ".png" in exts:
        item["kind"] = "figure"
        item["image"] = quote(exts[".png"]) if (figures / exts[".png"]).is_file() else None
    elif any(e in exts for e in TABLE_EXTS):
        item["kind"] = "table"
        item["html"] = _table_html(figures, files)
    else:
        item["kind"] = "file"
    return item


def notebook_title(stem: str) -> str:
    """The first Markdown heading of notebooks/<stem>.ipynb ('01 · Lucier's room: ...'), else the stem."""
    from .run_notebooks import notebooks_dir

    try:
        cells = json.loads((notebooks_dir() / f"{stem}.ipynb").read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return stem
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return stem


def render_notebook(executed: Path, target: Path) -> Path:
    """An executed notebook as a static HTML page (nbconvert's lab template without its CDN scripts); skipped
    when `target` is newer than the notebook."""
    if target.is_file() and target.stat().st_mtime >= executed.stat().st_mtime:
        return target
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", template_file=str(TEMPLATES / NOTEBOOK_TEMPLATE))
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    with store.atomic_path(target) as tmp:
        Path(tmp).write_text(body, encoding="utf-8")
    return target


def _run_times(profile: str) -> list[dict]:
    """The run times of the last run, and of the last run of every notebook when that was another one
    (run_notebooks.write_run_times)."""
    from .run_notebooks import build_dir

    runs = []
    for name, label in (("last_run.json", "last run"), ("last_full_run.json", "last run of every notebook")):
        rec = store.read_json(build_dir(profile) / name) if (build_dir(profile) / name).is_file() else None
        if isinstance(rec, dict) and not any(r["record"].get("finished") == rec.get("finished") for r in runs):
            runs.append({"label": label, "file": str(build_dir(profile) / name), "record": rec})
    return runs


def page_context(*, profile: str) -> dict:
    """What the template shows, from the figures folder, its manifest and build/<profile>/."""
    from .run_notebooks import build_dir, list_notebooks, stamp_path

    figures = store.figures_dir(profile)
    grouped = _group(store.read_manifest(figures))
    runs = _run_times(profile)
    last = runs[0]["record"].get("notebooks", {}) if runs else {}
    notebooks = []
    for stem in list_notebooks() + sorted(s for s in grouped if s not in list_notebooks()):
        stamp = store.read_json(stamp_path(stem, profile)) if stamp_path(stem, profile).is_file() else {}
        if not isinstance(stamp, dict) or stamp.get("figures_dir") != str(figures):
            stamp = {}  # a run of this profile that wrote to another figures folder says nothing about this one
        outputs = sorted((_output_item(figures, name, files, stamp.get("run_id"))
                          for name, files in grouped.get(stem, {}).items()), key=lambda o: OUTPUT_KINDS.index(o["kind"]))
        executed = build_dir(profile) / f"{stem}.ipynb"
        html = None
        if executed.is_file():
            html = render_notebook(executed, figures / NOTEBOOK_PAGES / f"{stem}.html")
        if stem in last:
            status = last[stem].get("status", "?")
        elif stamp:
            status = "ran"
        else:
            status = "no finished run" if executed.is_file() else "not run"
        notebooks.append({
            "stem": stem, "title": notebook_title(stem), "status": status, "outputs": outputs,
            "seconds": last.get(stem, {}).get("seconds"), "finished": stamp.get("finished"),
            "html": quote(html.relative_to(figures).as_posix()) if html else None,
            "executed": str(executed)})
    claim = next((o for nb in notebooks if nb["stem"] == CLAIM_NOTEBOOK for o in nb["outputs"]
                  if o["name"] == CLAIM_TABLE and o["kind"] == "table" and o["html"]), None)
    return {"profile": profile, "figures_dir": str(figures), "generated": store._now(),
            "git_commit": store.git_commit(), "claim": claim, "claim_notebook": CLAIM_NOTEBOOK,
            "notebooks": notebooks, "runs": runs}


def write_results_page(*, profile: str) -> Path:
    """Render <figures dir>/index.html (and the executed notebooks' HTML beside it); returns its path."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template(PAGE_TEMPLATE).render(**page_context(profile=profile))
    path = store.figures_dir(profile) / PAGE
    with store.atomic_path(path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return path


def write_after_run(*, profile: str) -> Path | None:
    """The end of ./run_all.sh: write the page and say where it is. A page that cannot be written is a warning,
    not a failed run: the notebooks' outputs are all there."""
    try:
        path = write_results_page(profile=profile)
    except Exception as e:  # noqa: BLE001 - reported, and the run's own status stands
        print(f"warning: the results page was not written ({type(e).__name__}: {e}); rebuild it with "
              f"python -m resonance_utils.results_page --profile {profile}", file=sys.stderr, flush=True)
        return None
    print(f"results page: {path}", flush=True)
    return path


def main(argv=None) -> int:
    from .runtime import default_profile

    ap = argparse.ArgumentParser(prog="python -m resonance_utils.results_page",
                                 description="Rebuild <figures dir>/index.html from what the runs left.")
    ap.add_argument("--profile", choices=config.PROFILES, help="default: paper on CUDA, else quick")
    args = ap.parse_args(argv)
    print(write_results_page(profile=args.profile or default_profile()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
