"""benchmarks/run.py in its tiny mode: every measurement present with positive rates, and --readme rewrites only
the marked block of the README."""
import importlib.util
import json

import pytest
import torch

from resonance_utils.store import repo_root


@pytest.fixture(scope="module")
def bench():
    path = repo_root() / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("benchmarks_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(bench, tmp_path_factory):
    """One tiny CPU run on one thread (seconds), its README a copy of the real one."""
    out = tmp_path_factory.mktemp("bench")
    readme = out / "README.md"
    original = (repo_root() / "README.md").read_text()
    readme.write_text(original)
    threads = torch.get_num_threads()
    try:
        rc = bench.main(["--tiny", "--device", "cpu", "--threads", "1", "--out", str(out), "--readme", str(readme)])
    finally:
        torch.set_num_threads(threads)
    return rc, json.loads((out / "results.json").read_text()), out, original


def test_tiny_run_records_every_measurement(tiny_run, bench):
    rc, res, out, _ = tiny_run
    assert rc == 0 and res["errors"] == []
    for key in ("date", "scale", "git_commit", "torch", "python", "cpu_count", "threads", "devices", "measurements",
                "skipped", "total_seconds"):
        assert key in res, key
    assert res["scale"] == "tiny" and res["threads"] == 1 and list(res["devices"]) == ["cpu"]
    assert res["cpu_count"] >= 1 and "cores" in res["devices"]["cpu"]
    for m in res["measurements"]:
        assert m["device"] == "cpu" and m["model"] and m["what"]
        for path in ("project", "baseline"):
            r = m[path]
            assert r["n"] > 0 and r["seconds"] > 0 and r["images_per_s"] > 0 and isinstance(r["settings"], dict)
        assert m["speedup"] > 0
        assert m["speedup"] == pytest.approx(m["project"]["images_per_s"] / m["baseline"]["images_per_s"], rel=0.01)
    whats = [(m["model"].split(" (")[0], m["what"]) for m in res["measurements"]]
    assert whats[:5] == [("MNIST UNet", "training"), ("MNIST UNet", "sampling"), ("MNIST UNet", "one generation"),
                         ("MNIST classifier features", "feature extraction"),
                         ("FID Inception", "feature extraction")]
    if bench.cyclegan_module()[0] is None:
        assert [s["part"] for s in res["skipped"]] == ["cyclegan"] and res["skipped"][0]["reason"]
    else:
        assert whats[5:] == [("CycleGAN", "training"), ("CycleGAN", "translation"), ("CycleGAN", "one generation")]
    gen = res["measurements"][2]
    assert gen["baseline"]["estimated"] and "estimated" not in gen["project"]
    table = (out / "results.md").read_text()
    assert "| model | measurement | device |" in table and table.count("\n| ") == len(res["measurements"]) + 1


def test_readme_flag_rewrites_only_the_marked_block(tiny_run, bench):
    _, res, out, original = tiny_run
    text = (out / "README.md").read_text()
    i, j = original.index(bench.START), original.index(bench.END)
    assert text.startswith(original[:i]) and text.endswith(original[j + len(bench.END):])
    block = text[len(original[:i]):len(text) - len(original[j + len(bench.END):])]
    assert block.startswith(bench.START) and block.endswith(bench.END)
    assert "| model | measurement |" in block and "tiny scale" in block and "cores" in block
    # a second run replaces the block instead of adding another
    bench.update_readme(out / "README.md", res)
    assert (out / "README.md").read_text().count(bench.START) == 1


def test_readme_without_markers_is_an_error(bench, tmp_path, tiny_run):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(ValueError, match="benchmarks:start"):
        bench.update_readme(readme, tiny_run[1])
    assert readme.read_text() == "# no markers here\n"


def test_unknown_part_is_rejected(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--parts", "mnist,gpt"])
    assert "unknown part(s) gpt" in capsys.readouterr().err
