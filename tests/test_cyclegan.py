"""CycleGAN: the official layout, training, saving, and the attractors of the iterated cycle x -> F(G(x)) (the
detector itself, on analytic maps: tests/test_attractors.py)."""

import numpy as np
import pytest
import torch

from resonance_utils import chain
from resonance_utils.attractors import pairs_apart
from resonance_utils.cyclegan import (  # find_attractors: re-exported from attractors (tests/test_attractors.py)
    CycleStep, cycle_map, find_attractors, iterate_map, load_cyclegan, quantize, save_cyclegan, train_cyclegan,
    translate,
)
from resonance_utils.cyclegan_checkpoints import load_official_generator
from resonance_utils.cyclegan_networks import NLayerDiscriminator, ResnetGenerator, make_cyclegan
from resonance_utils.data import to_uint8
from resonance_utils.store import CacheError

TINY = dict(ngf=8, n_blocks=1, ndf=8, n_layers=2)  # ~20k parameters per generator: a training step in ~50 ms


def blobs(n, *, bright, seed, size=16):
    """Domain A: a bright Gaussian blob on a dark ground; domain B: a dark blob on a bright ground."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size / 4, 3 * size / 4, (2, n, 1, 1))
    g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    img = 0.15 + 0.7 * g if bright else 0.85 - 0.7 * g
    return (img * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def domains():
    return blobs(64, bright=True, seed=0), blobs(64, bright=False, seed=1)


@pytest.fixture(scope="module")
def trained(domains, one_torch_thread):
    model = make_cyclegan(**TINY)
    return train_cyclegan(model, *domains, steps=40, batch_size=4, lr=1e-3, device="cpu", progress=False)


def conv_side(n, k, s, p):
    return (n + 2 * p - k) // s + 1


# ------------------------------------------------------------------------------------------------ the networks
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_generator_keeps_the_shape_and_discriminator_gives_a_patch_map(size, channels):
    torch.manual_seed(0)
    g = ResnetGenerator(channels, channels, ngf=8, n_blocks=2)
    x = torch.rand(2, channels, size, size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() < 1
    for n_layers in (2, 3):
        side = size
        for _ in range(n_layers):  # stride-2 convs, kernel 4, padding 1
            side = conv_side(side, 4, 2, 1)
        side = conv_side(conv_side(side, 4, 1, 1), 4, 1, 1)  # two stride-1 convs
        out = NLayerDiscriminator(channels, ndf=8, n_layers=n_layers)(x)
        assert out.shape == (2, 1, side, side)


def test_key_layout_matches_the_official_resnet_9blocks():
    g = ResnetGenerator(3, 3, ngf=64, n_blocks=9).state_dict()
    shapes = {k: tuple(v.shape) for k, v in g.items()}
    # official networks.py: 0 pad, 1 conv7, 2 norm, 3 relu, 4/7 downsampling convs, 10-18 the nine blocks,
    # 19/22 transposed convs (weight shape (in, out, k, k)), 25 pad, 26 conv7, 27 tanh
    assert shapes["model.1.weight"] == (64, 3, 7, 7)
    assert shapes["model.4.weight"] == (128, 64, 3, 3) and shapes["model.7.weight"] == (256, 128, 3, 3)
    for b in range(10, 19):
        assert shapes[f"model.{b}.conv_block.1.weight"] == (256, 256, 3, 3)
        assert shapes[f"model.{b}.conv_block.5.weight"] == (256, 256, 3, 3)
    assert shapes["model.19.weight"] == (256, 128, 3, 3) and shapes["model.22.weight"] == (128, 64, 3, 3)
    assert shapes["model.26.weight"] == (3, 64, 7, 7) and shapes["model.26.bias"] == (3,)
    assert len(g) == 2 * 24  # 24 convs with weight and bias; instance norm has no parameters or buffers
    # the official training log prints 11.378 M parameters for G and 2.765 M for D
    assert sum(v.numel() for v in g.values()) == 11_378_179
    d = NLayerDiscriminator(3, ndf=64, n_layers=3).state_dict()
    assert sorted({int(k.split(".")[1]) for k in d}) == [0, 2, 5, 8, 11]
    assert sum(v.numel() for v in d.values()) == 2_764_737
    assert [k for k in ResnetGenerator(1, 1, 8, 1, use_dropout=True).state_dict() if "conv_block" in k] == [
        "model.10.conv_block.1.weight", "model.10.conv_block.1.bias", "model.10.conv_block.6.weight",
        "model.10.conv_block.6.bias"]


@pytest.mark.usefixtures("one_torch_thread")
def test_official_checkpoint_loads_with_prefix_and_stale_norm_statistics(tmp_path):
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=64, n_blocks=9).eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    for i in (2, 5, 8, 20):  # what pre-0.4 checkpoints carry for InstanceNorm layers
        state[f"module.model.{i}.running_mean"] = torch.zeros(1)
        state[f"module.model.{i}.running_var"] = torch.ones(1)
        state[f"module.model.{i}.num_batches_tracked"] = torch.tensor(0)
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(state, path)
    loaded = load_official_generator(path)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert not loaded.training

    with pytest.raises(ValueError, match="latest_net_G_A.pth") as err:
        load_official_generator(path, n_blocks=6)
    msg = str(err.value)
    assert "unexpected keys model.16.conv_block.1.bias" in msg and "suggest n_blocks=9" in msg
    with pytest.raises(ValueError, match="missing keys") as err:
        load_official_generator(path, n_blocks=10)
    assert "model.19.conv_block" in str(err.value)
    with pytest.raises(ValueError, match="ngf=64"):
        load_official_generator(path, ngf=32)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official_generator(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_official_generator(tmp_path / "junk.pth")


def test_cyclegan_re_exports_the_networks_and_the_checkpoint_loader():
    from resonance_utils import cyclegan, cyclegan_checkpoints, cyclegan_networks
    for name in cyclegan_networks.__all__:
        assert getattr(cyclegan, name) is getattr(cyclegan_networks, name), name
    assert cyclegan.load_official_generator is cyclegan_checkpoints.load_official_generator
    # the modules a run executes are in the source hash of its cache key
    assert {"cyclegan", "cyclegan_networks", "cyclegan_checkpoints"} <= set(cyclegan.source_modules())


def test_make_cyclegan_is_seeded_with_the_official_init():
    a, b, c = make_cyclegan(**TINY, seed=3), make_cyclegan(**TINY, seed=3), make_cyclegan(**TINY, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.G_AB.model[1].weight, c.G_AB.model[1].weight)
    w = torch.cat([m.weight.flatten() for m in a.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    assert all(m.bias.abs().max() == 0 for m in a.modules() if isinstance(m, torch.nn.Conv2d))


# ---------------------------------------------------------------------------------------------------- training
def test_training_lowers_cycle_and_generator_losses(trained):
    _, losses = trained
    assert set(losses) == {"G", "D_A", "D_B", "cycle", "identity", "adv"}
    assert all(v.shape == (40,) and np.isfinite(v).all() for v in losses.values())
    for k in ("cycle", "G"):
        assert losses[k][-10:].mean() < 0.5 * losses[k][:10].mean(), k
    # G is the official weighting of its parts: adv + 10 cycle + 10 * 0.5 identity
    np.testing.assert_allclose(losses["G"], losses["adv"] + 10 * losses["cycle"] + 5 * losses["identity"],
                               rtol=1e-5)


@pytest.mark.usefixtures("one_torch_thread")
def test_training_is_seeded(domains):
    def run(seed):
        return train_cyclegan(make_cyclegan(**TINY), *domains, steps=4, batch_size=4, pool_size=2, seed=seed,
                              device="cpu", progress=False)
    (m0, l0), (m1, l1), (_, l2) = run(0), run(0), run(1)
    assert all(np.array_equal(l0[k], l1[k]) for k in l0)
    assert all(torch.equal(p, q) for p, q in zip(m0.parameters(), m1.parameters()))
    assert not np.array_equal(l0["G"], l2["G"])
    # no history pool and no identity term: the other branches of the recipe
    _, l3 = train_cyclegan(make_cyclegan(**TINY), *domains, steps=2, batch_size=4, pool_size=0, lambda_identity=0,
                           device="cpu", progress=False)
    assert (l3["identity"] == 0).all() and np.isfinite(l3["G"]).all()


@pytest.mark.usefixtures("one_torch_thread")
def test_training_rejects_bad_inputs(domains):
    a, b = domains
    model = make_cyclegan(**TINY)
    kw = dict(steps=1, batch_size=4, device="cpu", progress=False)
    with pytest.raises(TypeError, match="domain_a must be uint8"):
        train_cyclegan(model, a.astype(np.float32) / 127.5 - 1, b, **kw)
    with pytest.raises(ValueError, match="same image shape"):
        train_cyclegan(model, a, blobs(8, bright=False, seed=2, size=20), **kw)
    with pytest.raises(ValueError, match="domain_b has 3 images, fewer than batch_size=4"):
        train_cyclegan(model, a, b[:3], **kw)
    with pytest.raises(ValueError, match="channels=1"):
        train_cyclegan(model, np.repeat(a[..., None], 3, -1), np.repeat(b[..., None], 3, -1), **kw)
    with pytest.raises(ValueError, match="multiples of 4"):
        train_cyclegan(model, a[:, :14, :14], b[:, :14, :14], **kw)
    with pytest.raises(ValueError, match="too small for a PatchGAN"):
        train_cyclegan(make_cyclegan(**{**TINY, "n_layers": 4}), a, b, **kw)


# ------------------------------------------------------------------------------------------ save, load, translate
@pytest.mark.usefixtures("one_torch_thread")
def test_save_load_round_trip_and_corrupt_files(trained, domains, tmp_path):
    model, _ = trained
    folder = save_cyclegan(model, tmp_path / "cg")
    assert sorted(p.name for p in folder.iterdir()) == ["cyclegan.json", "cyclegan.safetensors"]
    again = load_cyclegan(folder)
    assert again.config == model.config and not again.training
    a = domains[0][:5]
    np.testing.assert_array_equal(translate(again.G_AB, a), translate(model.G_AB, a))
    sd = model.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in again.state_dict().items())  # the discriminators too
    (folder / "cyclegan.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CacheError, match="cyclegan.safetensors"):
        load_cyclegan(folder)
    with pytest.raises(FileNotFoundError, match="cyclegan.json"):
        load_cyclegan(tmp_path / "nothing")


@pytest.mark.usefixtures("one_torch_thread")
def test_translate_keeps_the_layout_and_accepts_floats(trained, domains):
    g = trained[0].G_AB
    a = domains[0][:6]
    y = translate(g, a, batch_size=4)
    assert y.shape == a.shape and y.dtype == np.float32 and np.abs(y).max() <= 1
    np.testing.assert_array_equal(translate(g, a.astype(np.float32) / 127.5 - 1), y)
    y4 = translate(g, a[..., None])
    assert y4.shape == (6, 16, 16, 1)
    np.testing.assert_array_equal(y4[..., 0], y)
    with torch.no_grad():
        ref = g(torch.from_numpy(a[:, None].astype(np.float32) / 127.5 - 1))[:, 0].numpy()
    np.testing.assert_allclose(y, ref, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        translate(g, a.astype(np.float32))  # 0..255 floats are a mistake, not images
    with pytest.raises(ValueError, match="3 channel"):
        translate(g, np.zeros((2, 16, 16, 3), np.uint8))


# ------------------------------------------------------------------------------------- the CycleGAN's own map
@pytest.mark.usefixtures("one_torch_thread")
def test_cycle_map_quantised_and_float(domains):
    model = make_cyclegan(**TINY, seed=1)
    x = domains[0][:8]
    fq, ff = cycle_map(model, quantize=True), cycle_map(model, quantize=False)
    yq, yf = fq(x), ff(x)
    assert yq.dtype == np.uint8 and yq.shape == x.shape
    assert yf.dtype == np.float32 and yf.shape == x.shape and np.abs(yf).max() <= 1
    np.testing.assert_array_equal(yq, quantize(yf))  # rounding only at the end of each step
    np.testing.assert_array_equal(yq, to_uint8(torch.from_numpy(yf[:, None])))  # the same rounding as data
    assert np.abs((yf + 1) * 127.5 - np.rint((yf + 1) * 127.5)).max() > 0.1  # the float map is off the grid
    with torch.no_grad():
        direct = model.G_BA(model.G_AB(torch.from_numpy(x[:, None].astype(np.float32) / 127.5 - 1)))[:, 0]
    np.testing.assert_allclose(yf, direct.numpy(), atol=1e-6)

    # quantised steps move whole levels; the report measures them on [0, 1] (an untrained map need not settle)
    traj = iterate_map(fq, x, 6)
    rep = find_attractors(traj, tol=0, max_period=2, window=2)
    levels = np.diff(traj.astype(np.int64), axis=0).reshape(6, 8, -1)
    np.testing.assert_allclose(rep.step_sizes, np.sqrt((levels ** 2).mean(-1)) / 255, rtol=1e-6)
    np.testing.assert_array_equal(iterate_map(fq, x, 6), traj)  # deterministic
    with pytest.raises(ValueError, match="start a quantised map from uint8"):
        iterate_map(fq, x / np.float32(127.5) - 1, 2)
    # a uint8 start under the float map joins the networks' scale
    tf = iterate_map(ff, x, 2)
    assert tf.dtype == np.float32 and np.allclose(tf[0], x / 127.5 - 1, atol=1e-6)


@pytest.mark.usefixtures("one_torch_thread")
def test_constant_generator_reaches_an_exact_fixed_point(domains):
    """With G_BA's last conv zeroed and a bias b, x -> F(G(x)) is the constant tanh(b): the quantised map is at
    its fixed point after one step and every start is in its basin."""
    model = make_cyclegan(**TINY)
    with torch.no_grad():
        model.G_BA.model[-2].weight.zero_()
        model.G_BA.model[-2].bias.fill_(0.3)
    x = np.concatenate(domains)[::8]
    traj = iterate_map(cycle_map(model), x, 10)
    rep = find_attractors(traj, tol=0)
    assert (traj[1:] == quantize(np.float32(np.tanh(np.float32(0.3))))).all()
    assert (rep.step_sizes[1:] == 0).all() and (rep.periods == 1).all()
    assert rep.n_attractors == 1 and list(rep.basin_sizes) == [len(x)]


@pytest.mark.usefixtures("one_torch_thread")
def test_cycle_step_runs_and_resumes_in_the_chain_runner(domains, tmp_path):
    model = make_cyclegan(**TINY, seed=2)
    initial = {"images": domains[0][:6], "labels": np.arange(6, dtype=np.int64)}
    step = CycleStep(model)
    mem = chain.run_chain(step, initial, 4, progress=False)
    part = chain.run_chain(step, initial, 2, run_dir=tmp_path / "run", progress=False)
    assert part.computed == [0, 1, 2]
    full = chain.run_chain(step, initial, 4, run_dir=tmp_path / "run", progress=False)
    assert full.computed == [3, 4]
    for a, b in zip(mem.states, full.states):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], initial["labels"])
    assert full.states[4]["images"].dtype == np.uint8
    float_step = CycleStep(model, quantize=False)
    assert float_step(initial)["images"].dtype == np.float32


# ------------------------------------------------------------------------------------ domains, cached model, runs
def test_parse_domain_forms_and_errors():
    from resonance_utils.cyclegan import parse_domain
    assert parse_domain("mnist:0-4") == ("mnist", [0, 1, 2, 3, 4])
    assert parse_domain("mnist:1,7, 3-4") == ("mnist", [1, 3, 4, 7])
    assert parse_domain("MNIST") == ("mnist", None)
    assert parse_domain("/data/horses") == ("/data/horses", None)
    for bad in ("", "mnist:a-b", "mnist:8-12"):
        with pytest.raises(ValueError, match="domain"):
            parse_domain(bad)


def test_mnist_domains_keep_their_digits_and_renumber_labels():
    from resonance_utils.cyclegan import load_domain
    from resonance_utils.data import load_mnist
    d = load_domain("mnist:5-9", n_train=50)
    test = load_mnist("test")
    assert d["train"].class_names == ("5", "6", "7", "8", "9") and d["train"].n_classes == 5
    assert len(d["train"]) == 50 and np.bincount(d["train"].labels).tolist() == [10] * 5
    # every held-out start is a test digit 5-9, with its label renumbered by 5
    assert len(d["test"]) == int(np.isin(test.labels, range(5, 10)).sum())
    assert np.array_equal(d["test"].labels + 5, test.labels[test.labels >= 5])


def smoke_cfg(**kw):
    """The smoke profile's CycleGAN spec, smaller."""
    from resonance_utils import config, specs
    base = dict(n_train=20, train_steps=3, batch_size=4, n_starts=10, n_cycles=9, device="cpu")
    return specs.build(specs.CycleGANSpec, config.load_config("04_cyclegan_attractors", "smoke", **{**base, **kw}))


@pytest.mark.usefixtures("one_torch_thread")
def test_trained_model_is_cached_and_runs_resume(monkeypatch):
    from resonance_utils import cyclegan as CG
    from resonance_utils.data import stratified_subset
    cfg = smoke_cfg()
    model, domains = CG.trained_model(cfg.model_spec(), progress=False)
    assert set(CG.training_losses(model)) >= {"G", "cycle", "D_A"}
    monkeypatch.setattr(CG, "train_cyclegan", lambda *a, **k: pytest.fail("a cached model was retrained"))
    again, _ = CG.trained_model(cfg.model_spec(), progress=False)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    starts = stratified_subset(domains["a_test"], 10, seed=0)
    short = CG.run_cycles(smoke_cfg(n_cycles=4), model, starts, quantize=True, progress=False)
    full = CG.run_cycles(cfg, model, starts, quantize=True, progress=False)
    assert full.computed == list(range(5, 10)) and full.run_dir == short.run_dir
    traj = CG.trajectory(full)
    assert traj.shape == (10, 10, 28, 28) and traj.dtype == np.uint8
    floats = CG.trajectory(CG.run_cycles(cfg, model, starts, quantize=False, progress=False))
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() <= 1
    # the float chain starts from the same images: its first state is the uint8 start on the 0-1 scale
    assert np.allclose(floats[0], traj[0] / 255, atol=1e-6)
    with pytest.raises(ValueError, match="official_g_ab and official_g_ba"):
        CG.trained_model(smoke_cfg(official_g_ab="/nowhere/latest_net_G_A.pth").model_spec(), progress=False)


def test_trajectory_clouds_are_per_cycle_pixels_on_the_unit_scale():
    from resonance_utils.cyclegan import trajectory_clouds
    traj = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2) * 10
    clouds = trajectory_clouds(traj)
    assert len(clouds) == 2 and clouds[0].shape == (3, 4)
    assert np.allclose(clouds[1], traj[1].reshape(3, 4) / 255)
    floats = traj.astype(np.float32) / 255
    assert np.allclose(trajectory_clouds(floats)[1], clouds[1])


@pytest.mark.usefixtures("one_torch_thread")
def test_attractor_run_is_the_run_of_the_configuration():
    from resonance_utils import cyclegan as CG
    from resonance_utils.data import stratified_subset
    cfg = smoke_cfg()
    model, domains = CG.trained_model(cfg.model_spec(), progress=False)
    starts, run = CG.attractor_run(cfg, model, domains, progress=False)
    expected = stratified_subset(domains["a_test"], cfg.n_starts, seed=cfg.seed)
    assert np.array_equal(starts.images, expected.images)
    same = CG.run_cycles(cfg, model, expected, quantize=cfg.quantize, progress=False)
    assert same.run_dir == run.run_dir and same.computed == []  # read back, not recomputed
    other = CG.attractor_run(cfg, model, domains, quantize=not cfg.quantize, progress=False)[1]
    assert other.run_dir != run.run_dir


# --------------------------------------------------------------------------- the attractors of a configuration
def test_data_source_names_the_domains_and_the_kind():
    from types import SimpleNamespace

    from resonance_utils.cyclegan import data_source
    cfg = SimpleNamespace(domain_a="mnist:0-4", domain_b="mnist:5-9", official_g_ab="")
    assert data_source(cfg) == "mnist:0-4 -> mnist:5-9 (real MNIST)"
    assert data_source(SimpleNamespace(**{**vars(cfg), "official_g_ab": "g.pth"})).endswith("(official generators)")
    assert data_source(SimpleNamespace(**{**vars(cfg), "domain_a": "/data/horses"})) == \
        "/data/horses -> mnist:5-9 (image folders)"


def test_smoothed_losses_are_window_means_of_the_recorded_losses(tmp_path):
    from types import SimpleNamespace

    from resonance_utils.cyclegan import smoothed_losses
    rng = np.random.default_rng(0)
    losses = {"G": rng.random(230), "cycle": rng.random(230), "D_A": rng.random(40)}
    np.savez(tmp_path / "losses.npz", **losses)
    out = smoothed_losses(SimpleNamespace(folder=tmp_path), ("G", "D_A"))
    assert set(out) == {"G", "D_A"}
    steps, g = out["G"]  # windows of 230 // 50 = 4 steps
    assert steps.tolist() == list(range(227))
    np.testing.assert_allclose(g, [losses["G"][i:i + 4].mean() for i in range(227)], rtol=1e-12)
    steps, d = out["D_A"]  # 40 steps: windows of one step, the losses themselves
    assert steps.tolist() == list(range(40)) and np.allclose(d, losses["D_A"])
    with pytest.raises(FileNotFoundError, match="no recorded losses"):
        smoothed_losses(SimpleNamespace(folder=None))


@pytest.mark.usefixtures("one_torch_thread")
def test_attractor_reports_and_numbers_against_a_recomputation():
    from resonance_utils import cyclegan as CG
    cfg = smoke_cfg(n_starts=10, n_cycles=8, max_period=2, tol=0.5)  # a coarse tol: some basins even untrained
    model, domains = CG.trained_model(cfg.model_spec(), progress=False)
    starts, runs, reports = CG.attractor_reports(cfg, model, domains, progress=False)
    assert list(runs) == list(reports) == [cfg.quantize, not cfg.quantize]
    for q in reports:
        expected_starts, run = CG.attractor_run(cfg, model, domains, quantize=q, progress=False)
        assert np.array_equal(starts.images, expected_starts.images) and run.run_dir == runs[q].run_dir
        again = find_attractors(CG.trajectory(run), tol=cfg.tol, max_period=cfg.max_period)
        assert np.array_equal(again.labels, reports[q].labels) and again.to_json() == reports[q].to_json()

    traj = CG.trajectory(runs[cfg.quantize])
    numbers = CG.attractor_numbers(cfg, model, starts, reports, traj)
    labels = reports[cfg.quantize].labels
    assert labels.max() >= 0, "the test wants at least one basin"
    assert numbers["attractors"] == {f"quantize={q}": r.to_json() for q, r in reports.items()}
    assert numbers["domains"] == [cfg.domain_a, cfg.domain_b] and numbers["official_generators"] is False
    assert (numbers["n_starts"], numbers["n_cycles"], numbers["tol"]) == (10, 8, 0.5)
    assert numbers["min_distance_between_basins_last_cycle"] == pairs_apart(traj, labels)
    assert numbers["training"] == {k: model.info[k] for k in ("seconds", "loss_first", "loss_last")}
    # the class-by-basin shares, counted start by start
    sizes = np.bincount(labels[labels >= 0])
    top = sorted(range(len(sizes)), key=lambda b: (-sizes[b], b))[:10]
    table = numbers["start_class_by_basin"]
    assert list(table) == [f"basin {b}" for b in top]
    for b in top:
        for k in np.unique(starts.labels):
            mine = [lab for lab, cls in zip(labels, starts.labels) if cls == k]
            share = round(sum(lab == b for lab in mine) / len(mine), 4)
            assert table[f"basin {b}"][f"start class {starts.class_names[k]}"] == share

