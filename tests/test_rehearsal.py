"""The paper profile: its parameters checked for consistency, and rehearsed at small counts on its own models."""
import importlib
import json
import os
import subprocess
import sys

import pytest

from resonance_utils import config, costs, rehearsal
from resonance_utils.store import repo_root

NOTEBOOKS = config.notebooks_with_params()
# what decides the code path and the model: a rehearsal must never change these (the claim's pca_components is a
# size: the same projection at 5 directions as at 20, and it sets the least image_samples of 09 and 10)
STRUCTURE = {"base_channels", "channel_mult", "layers_per_block", "attention", "resolution", "space",
             "autoencoder_channels", "autoencoder_latent_channels", "feature_network", "ngf", "n_blocks", "ndf",
             "n_layers", "settings", "mitigation_list", "guidance_scale", "strength", "retrain", "regime",
             "include_imagenet", "include_mnist", "include_cyclegan", "include_lucier", "knn_k",
             "quantize", "add_noise", "official_g_ab", "official_g_ba", "n_captions", "image_dim", "refit_dim"}


def paper(stem):
    return config.load_config(stem, "paper")


# ------------------------------------------------------------------------------------- the paper profile
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_every_paper_profile_loads_with_types_and_ranges(stem):
    cfg = paper(stem)  # specs coerce and range-check every field
    assert cfg.profile == "paper" and set(config.load_profile(stem, "paper")) <= set(cfg)


def configs(rehearse: bool) -> dict:
    return {s: config.load_config(s, "paper", **(rehearsal.counts(s) if rehearse else {})) for s in NOTEBOOKS}


@pytest.mark.parametrize("rehearse", [False, True], ids=["paper", "rehearsal"])
def test_counts_are_consistent_with_each_other(rehearse):
    """What the code requires of the counts together, at full scale and at the rehearsal's."""
    cfgs = configs(rehearse)
    mnist, inet, cyc, drift, claim = (cfgs[s] for s in ("02_mnist_chains", "03_imagenet_chains",
                                                         "04_cyclegan_attractors", "05_drift_geometry", "09_claim"))
    # generation-0 quality: 2n real images (02: the 10,000 test digits; 03: half the real set)
    assert 2 * mnist.quality_samples <= 10000 and 2 * inet.quality_samples <= 5 * inet.n_per_class
    for c in (mnist, inet):
        assert c.n_generations + 1 >= c.taxonomy_window and c.batch_size <= c.samples_per_generation
        assert c.samples_per_generation % 10 == 0  # class-balanced generations (10 digits; 5 classes)
    # the claim: replicate chains exist, held-out generations leave some to predict from, clouds > PCA axes
    assert claim.n_replicates >= 2 and claim.n_starts >= 2 and claim.include_imagenet
    for gens in (claim.image_generations, claim.lucier_generations, claim.cyclegan_generations):
        assert gens >= claim.held_out + 3  # claim's windows (ClaimParams.check refuses less)
    assert min(claim.image_samples, claim.cyclegan_starts) > claim.pca_components
    # start sets are class-balanced (data.stratified_subset): multiples of the classes (5 digits; 10 and 5)
    assert cyc.n_starts % 5 == 0 and claim.cyclegan_starts % 5 == 0 and claim.image_samples % 10 == 0
    # 04's starts are held-out digits 0-4 of MNIST's test split (about 5,100); the attractor detector tests every
    # period up to max_period over a window of max_period cycles
    assert cyc.n_starts <= 5000 and claim.n_starts * claim.cyclegan_starts <= 5000
    assert min(cyc.n_cycles, claim.cyclegan_cycles) >= 2 * cyc.max_period
    assert claim.cyclegan_cycles >= claim.cyclegan_generations
    # 05 reads every lucier_stride-th pass of 01 as a generation: enough for a taxonomy window
    assert cfgs["01_lucier_room"].n_iterations // drift.lucier_stride + 1 >= drift.taxonomy_window


def test_paper_scale_is_what_the_paper_claims():
    cfgs = configs(False)
    mnist, inet, drift, mit = (cfgs[s] for s in ("02_mnist_chains", "03_imagenet_chains", "05_drift_geometry",
                                                 "08_mitigations"))
    inception_dim = 2048
    # equal-n FID in Inception features (fid_n = 0: half a generation per half) needs n >= the feature dimension
    assert drift.feature_network == "inception" and mnist.samples_per_generation // 2 >= inception_dim
    assert mit.feature_network == "inception" and mit.samples_per_generation // 2 >= inception_dim
    assert inet.resolution == 64 and inet.attention and mnist.n_generations >= 20 and inet.n_generations >= 20
    for c in (mnist, inet):
        assert c.n_generations + 1 >= max(c.phase_window, 2 * c.phase_min_generations)
        assert c.finetune_lr == pytest.approx(c.lr / 10)


# --------------------------------------------------------------------------------------- the rehearsal's counts
def test_the_rehearsal_changes_counts_only_and_only_downwards():
    assert not STRUCTURE & rehearsal.COUNT_FIELDS
    assert set(rehearsal.COUNTS) == set(NOTEBOOKS)
    for stem in NOTEBOOKS:
        small, full = config.load_config(stem, "paper", **rehearsal.counts(stem)), paper(stem)
        changed = {k for k in full if small[k] != full[k]}
        assert changed <= rehearsal.COUNT_FIELDS, (stem, changed - rehearsal.COUNT_FIELDS)
        for k in changed:
            if isinstance(full[k], (int, float)) and not (k in rehearsal.ALL_MEANS_ZERO and full[k] == 0):
                assert 0 < small[k] < full[k], (stem, k, small[k], full[k])


def test_the_rehearsed_sweep_grid_is_the_paper_grid_cut_to_its_ends():
    from resonance_utils.sweep import grid_values

    small, full = config.load_config("10_sweep", "paper", **rehearsal.counts("10_sweep")), paper("10_sweep")
    for name in ("fresh_fractions", "guidance_scales"):
        cut, whole = grid_values(name, small[name]), grid_values(name, full[name])
        assert set(cut) <= set(whole) and {min(whole), max(whole)} <= set(cut) and len(cut) < len(whole), name
    small, full = (config.load_config("08_mitigations", "paper", **rehearsal.counts("08_mitigations")),
                   paper("08_mitigations"))
    assert set(small.curator_accuracies) == {min(full.curator_accuracies), max(full.curator_accuracies)}  # chance, perfect
    assert set(small.curation_budgets) < set(full.curation_budgets)


def test_a_structure_field_in_the_rehearsal_is_refused(monkeypatch):
    monkeypatch.setitem(rehearsal.COUNTS, "03_imagenet_chains", {"resolution": 32})
    with pytest.raises(config.ConfigError, match="counts only.*resolution"):
        rehearsal.counts("03_imagenet_chains")


def test_full_counts_follow_the_parameters():
    small = rehearsal.FULL_COUNTS["02_mnist_chains"](rehearsal.resolved("paper", "02_mnist_chains", rehearse=True))
    full = rehearsal.FULL_COUNTS["02_mnist_chains"](rehearsal.resolved("paper", "02_mnist_chains", rehearse=False))
    c = paper("02_mnist_chains")
    assert full["diffusion training"] == c.batch_size * (c.base_steps + 2 * c.n_generations * c.finetune_steps)
    assert full["DDIM denoising"] > 1000 * small["DDIM denoising"]


# ------------------------------------------------------------------------------------------- the recorder
def test_recorder_is_silent_off_a_rehearsal_and_counts_flops_in_one(tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv(costs.ENV, raising=False)
    with costs.op("x", unit="images", units=3) as call:
        pass
    assert call["units"] == 3 and not costs._OPS
    monkeypatch.setenv(costs.ENV, str(tmp_path / "c.json"))
    monkeypatch.setattr(costs, "_OPS", {})
    a, b = torch.ones(8, 16), torch.ones(16, 4)
    with costs.op("matmul", unit="products", units=2, model="m"):
        a @ b
        a @ b
    costs.flush()
    rec = json.loads((tmp_path / "c.json").read_text())
    (op,) = rec["ops"]
    assert op["flops"] == 2 * 2 * 8 * 16 * 4 and op["units"] == 2 and op["calls"] == 1
    assert op["saved_bytes_per_unit_max"] == 0 and rec["peak_rss_bytes"] > 0  # nothing needs a backward pass
    w = torch.ones(16, 4, requires_grad=True)
    with costs.op("train", unit="steps", units=1, model="m"):
        (a @ w).sum().backward()
    costs.flush()
    (train,) = [o for o in json.loads((tmp_path / "c.json").read_text())["ops"] if o["op"] == "train"]
    assert train["saved_bytes_per_unit_max"] == a.nbytes  # the matmul keeps its input for the weight's gradient


def test_a_nested_operation_is_left_out_of_the_outer_one(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv(costs.ENV, str(tmp_path / "c.json"))
    monkeypatch.setattr(costs, "_OPS", {})
    a = torch.ones(8, 8)
    with costs.op("outer", unit="calls", units=1):
        a @ a
        with costs.op("inner", unit="calls", units=1):
            a @ a
            a @ a
    costs.flush()
    ops = {o["op"]: o for o in json.loads((tmp_path / "c.json").read_text())["ops"]}
    assert ops["outer"]["flops"] == 2 * 8 ** 3 and ops["inner"]["flops"] == 2 * 2 * 8 ** 3


def test_install_wraps_the_hot_functions_only_when_recording(monkeypatch):
    from resonance_utils import diffusion, latent

    monkeypatch.delenv(costs.ENV, raising=False)
    assert costs.install() is False and not getattr(diffusion._ddim, "_recorded", False)
    monkeypatch.setenv(costs.ENV, "/nonexistent/c.json")
    for module, func, *_ in costs.HOT:  # restored after the test: other tests must see the plain functions
        owner = importlib.import_module(f"resonance_utils.{module}")
        *path, attr = func.split(".")
        for part in path:
            owner = getattr(owner, part)
        monkeypatch.setattr(owner, attr, getattr(owner, attr))
    assert costs.install() is True
    assert diffusion._ddim._recorded and latent.LatentSpace.decode._recorded


# --------------------------------------------------------------------------------------------- the rehearsal
# CI rehearses the notebooks whose paper models exist nowhere else at small counts (03: the 64 px UNet with
# attention on four levels; 04: the official-width CycleGAN) and 01, in about 3 minutes on 2 cores. 02, 05, 08 and
# 09 need the MNIST classifier, which a clean clone trains first (2 minutes), and together take about 10 more:
# ./run_all.sh --profile paper --rehearse runs them all.
CI_REHEARSAL = ["01_lucier_room", "03_imagenet_chains", "04_cyclegan_attractors"]


@pytest.mark.rehearsal
def test_paper_rehearsal_runs_and_plans(tmp_path):
    env = {**os.environ, "RESONANCE_REHEARSAL_DIR": str(tmp_path / "rehearsal"), "RESONANCE_THREADS": "1",
           "RESONANCE_DATA_DIR": str(tmp_path / "data"), "RESONANCE_FIGURES_DIR": str(tmp_path / "figures")}
    env.pop("RESONANCE_PROFILE", None)
    # rehearsal counts draw near-empty panels; the layout check is nbval's, at the smoke profile (issue 19)
    env.pop("RESONANCE_STRICT_FIGURES", None)
    only = [a for stem in CI_REHEARSAL for a in ("--only", stem)]
    out = subprocess.run([sys.executable, "-m", "resonance_utils.run_notebooks", "--profile", "paper", "--rehearse",
                          "--jobs", "1", *only], capture_output=True, text=True, cwd=repo_root(), env=env,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "figures" / "03_imagenet_chains.json").exists()  # the rehearsal's own figures folder
    plan = json.loads((tmp_path / "rehearsal" / "plan.json").read_text())
    assert "| 03_imagenet_chains |" in (tmp_path / "rehearsal" / "plan.md").read_text()
    for stem in CI_REHEARSAL:
        row = plan["notebooks"][stem]
        assert row["status"] == "ran"
        assert row["projected_seconds"] is None if not row["ops"] else row["projected_seconds"] > row["rehearsal_seconds"]
        for op in row["ops"]:  # the count formulas reproduce what the rehearsal did
            if op["count"] == "from parameters":
                assert op["rehearsal_units_predicted"] == pytest.approx(op["rehearsal_units"]), (stem, op)
                assert op["full_units"] > op["rehearsal_units"] and op["flops_per_unit"] > 0
    inet = plan["notebooks"]["03_imagenet_chains"]
    assert inet["memory"]["projected_peak_bytes"] > inet["peak_rss_bytes"] > 0
    assert {"diffusion training", "DDIM denoising"} <= {o["op"] for o in inet["ops"]}


def test_what_the_claims_calibration_needs_fails_before_anything_runs():
    """Found by the rehearsal: claim.calibrate needs held_out >= 2 and 3 generations before the held-out ones, and
    09 reached it after all its chains."""
    with pytest.raises(config.ConfigError, match="held_out"):
        config.load_config("09_claim", "paper", held_out=1)
    with pytest.raises(config.ConfigError, match="by at least 3"):
        config.load_config("09_claim", "paper", held_out=2, image_generations=4)


def test_the_plan_flags_operations_read_from_a_cache(tmp_path, monkeypatch):
    """A rehearsal whose chains were cached records no training or sampling: the plan must say it undercounts."""
    monkeypatch.setenv("RESONANCE_REHEARSAL_DIR", str(tmp_path / "rehearsal"))
    monkeypatch.setenv("RESONANCE_DATA_DIR", str(tmp_path / "data"))
    path = rehearsal.costs_path("paper", "08_mitigations")
    path.parent.mkdir(parents=True)
    op = {"op": "classifier features", "model": "MnistClassifier 0.42M", "unit": "images", "calls": 1, "units": 100,
          "seconds": 0.1, "flops": 10 ** 9, "saved_bytes_per_unit_max": 0.0, "batch_max": 0}
    path.write_text(json.dumps({"ops": [op], "peak_rss_bytes": 2 ** 30,
                                "outcome": {"status": "ran", "seconds": 5.0, "reason": ""}}))
    plan = rehearsal.plan("paper", ["08_mitigations"])
    assert {"diffusion training", "DDIM denoising"} <= set(plan["notebooks"]["08_mitigations"]["unrecorded"])
    assert "classifier features" not in plan["notebooks"]["08_mitigations"]["unrecorded"]
    assert "Undercounted (read from a cache" in rehearsal.plan_markdown(plan | {"device": "cpu"})


def test_fids_linear_algebra_is_projected_onto_the_gpu_by_its_flops(tmp_path, monkeypatch):
    """FID's factorisations run in torch on a GPU machine (metrics._torch_device): the plan's GPU time for them is
    their leading-order FLOPs at the full rows and dimensions over GPU_LINALG_FLOPS, not their CPU time here."""
    monkeypatch.setenv("RESONANCE_REHEARSAL_DIR", str(tmp_path / "rehearsal"))
    monkeypatch.setenv("RESONANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(rehearsal, "_resplit_seconds", lambda rows, dim: 3.0)  # CPU time per distance, here
    path = rehearsal.costs_path("paper", "08_mitigations")
    path.parent.mkdir(parents=True)
    op = {"op": "FID re-split distance", "model": "2048-d features", "unit": "distances", "calls": 10, "units": 10,
          "seconds": 0.5, "flops": 0, "saved_bytes_per_unit_max": 0.0, "batch_max": 0}
    path.write_text(json.dumps({"ops": [op], "peak_rss_bytes": 2 ** 30,
                                "outcome": {"status": "ran", "seconds": 5.0, "reason": ""}}))
    row = rehearsal.plan("paper", ["08_mitigations"])["notebooks"]["08_mitigations"]
    (o,) = row["ops"]
    rows = paper("08_mitigations").samples_per_generation // 2
    assert rows > 2048 and o["count"] == "scaled; timed at the full n" and o["seconds_per_unit"] == 3.0
    assert o["flops_per_unit"] == 6.0 * 2048 ** 3  # Cholesky, two d x d products, eigenvalues
    assert row["fid_linalg_gpu_seconds"] == pytest.approx(o["full_units"] * 6.0 * 2048 ** 3 / rehearsal.GPU_LINALG_FLOPS)
    assert row["projected_gpu_seconds"] == pytest.approx(row["fid_linalg_gpu_seconds"])
    assert row["projected_gpu_seconds"] < o["projected_seconds"] / 10, "the GPU, not the host CPU, does the algebra"
    assert rehearsal.fid_linalg_flops("FID re-split distance", 100, 2048) == 2 * 100 ** 2 * 2048 + 4 * 100 ** 3
    with pytest.raises(ValueError, match="not an FID operation"):
        rehearsal.fid_linalg_flops("DDIM denoising", 100, 2048)


def test_the_path_the_data_did_not_take_is_not_an_undercount(tmp_path, monkeypatch):
    """03's retention classifier is MobileNetV2 on ImageNet synsets, else a CNN trained on the set (offline): a
    rehearsal that trained the CNN never runs MobileNetV2, and must not call that a cache read; the other way too."""
    monkeypatch.setenv("RESONANCE_REHEARSAL_DIR", str(tmp_path / "rehearsal"))
    monkeypatch.setenv("RESONANCE_DATA_DIR", str(tmp_path / "data"))
    path = rehearsal.costs_path("paper", "03_imagenet_chains")
    path.parent.mkdir(parents=True)

    def plan_with(*ops):
        rows = [{"op": op, "model": "m", "unit": "images", "calls": 1, "units": 100, "seconds": 0.1, "flops": 10 ** 9,
                 "saved_bytes_per_unit_max": 0.0, "batch_max": 0} for op in ops]
        path.write_text(json.dumps({"ops": rows, "peak_rss_bytes": 2 ** 30,
                                    "outcome": {"status": "ran", "seconds": 5.0, "reason": ""}}))
        return rehearsal.plan("paper", ["03_imagenet_chains"])["notebooks"]["03_imagenet_chains"]

    cnn = plan_with("classifier training", "classifier features", "diffusion training", "DDIM denoising")
    assert cnn["not_taken"] == ["MobileNetV2 features"] and "MobileNetV2 features" not in cnn["unrecorded"]
    synsets = plan_with("MobileNetV2 features", "diffusion training", "DDIM denoising")
    assert synsets["not_taken"] == ["classifier features", "classifier training"] and not synsets["unrecorded"]
    cached = plan_with("classifier features")  # the chains read back: an undercount, whichever path
    assert {"diffusion training", "DDIM denoising"} <= set(cached["unrecorded"])
    assert cached["not_taken"] == ["MobileNetV2 features"]
    md = rehearsal.plan_markdown(rehearsal.plan("paper", ["03_imagenet_chains"]) | {"device": "cpu"})
    assert "Not on this data" in md and "MobileNetV2 features" in md.split("Not on this data")[1]
