"""Typed specs and the notebooks' parameter classes: one place per default, checks up front in the user's terms."""
import dataclasses
import json

import pytest
import yaml

from resonance_utils import config, notebook_params, specs
from resonance_utils.notebook_params import NOTEBOOKS


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_every_profile_loads_and_holds_only_what_it_changes(stem):
    defaults = NOTEBOOKS[stem]()
    for profile in config.PROFILES:
        changes = config.load_profile(stem, profile)
        cfg = config.load_config(stem, profile)
        for name, value in changes.items():
            assert getattr(cfg.params, name) != getattr(defaults, name), \
                f"params/{stem}/{profile}.yaml sets {name} to its default: remove the line"
    assert config.load_profile(stem, "quick") == {}, "the defaults are the quick profile"


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS))
def test_every_parameter_has_a_meaning_and_a_plain_type(stem):
    cls = NOTEBOOKS[stem]
    for f in dataclasses.fields(cls):
        assert f.metadata.get("doc"), f"{stem}: {f.name} has no meaning"
        assert str(f.type) in ("bool", "int", "float", "str", "tuple[int, ...]", "tuple[float, ...]"), (stem, f.name)


def test_the_parameters_cells_are_written_from_the_classes():
    for stem in NOTEBOOKS:
        nb = json.loads((config.params_dir().parent / "notebooks" / f"{stem}.ipynb").read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        assert "".join(cell["source"]) == notebook_params.parameters_cell(stem), \
            f"{stem}: run python -m resonance_utils.notebook_params"
        names = [line.split(" =")[0] for line in cell["source"] if " = None" in line]
        assert names == NOTEBOOKS[stem].names()


@pytest.mark.parametrize("stem, override, message", [
    ("02_mnist_chains", {"strength": 1.5}, r"'strength' must be in \(0, 1\]"),
    ("02_mnist_chains", {"n_generations": -1}, r"'n_generations' must be >= 1"),
    ("02_mnist_chains", {"samples_per_generation": -5}, r"'samples_per_generation' must be >= 1"),
    ("02_mnist_chains", {"regime": "keep"}, r"'regime' must be one of 'replace', 'accumulate', 'fresh'"),
    ("02_mnist_chains", {"regime": "fresh"}, r"regime 'fresh' needs fresh_fraction > 0"),
    ("02_mnist_chains", {"channel_mult": "1, 2.5"}, r"'channel_mult' must be whole numbers"),
    ("02_mnist_chains", {"strength": "high"}, r"'strength' must be float"),
    ("01_lucier_room", {"room_dims": "6, 5"}, r"'room_dims' needs 3 numbers"),
    ("01_lucier_room", {"mic_pos": "9, 1, 1"}, r"'mic_pos' .* lies outside the room"),
    ("01_lucier_room", {"band_high_hz": 9000.0}, r"Nyquist"),
    ("04_cyclegan_attractors", {"official_g_ab": "a.pth"}, r"give both official_g_ab and official_g_ba"),
    ("04_cyclegan_attractors", {"resolution": 30}, r"multiple of 4"),
    ("09_claim", {"held_out": 10}, r"held_out \(10\) must be smaller than image_generations"),
    ("05_drift_geometry", {"feature_network": "clip"}, r"'feature_network' must be one of"),
    ("06_recursive_diffusion", {"t_start": 0.05}, r"t_start .* later than delta"),
])
def test_bad_values_fail_when_the_configuration_is_built(stem, override, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load_config(stem, "quick", **override)
    pairs = [f"{k}={v}" for k, v in override.items()]  # the command line is checked the same way
    with pytest.raises(config.ConfigError, match=message):
        config.check_overrides(stem, "quick", pairs)


def test_an_unknown_name_lists_the_valid_ones(tmp_path, monkeypatch):
    with pytest.raises(config.ConfigError, match="unknown parameter.*strenght.*valid: .*strength"):
        config.load_config("02_mnist_chains", "quick", strenght=0.5)
    (tmp_path / "02_mnist_chains").mkdir()
    (tmp_path / "02_mnist_chains" / "quick.yaml").write_text("strenght: 0.5\n")
    monkeypatch.setattr(config, "params_dir", lambda: tmp_path)
    with pytest.raises(config.ConfigError, match="quick.yaml: unknown parameter.*strenght.*valid: .*strength"):
        config.load_config("02_mnist_chains", "quick")


def test_a_redeclared_default_keeps_the_specs_meaning_and_range():
    imagenet = NOTEBOOKS["03_imagenet_chains"]
    assert imagenet().strength == 0.4 and specs.DiffusionChainSpec().strength == 0.35
    assert imagenet.docs()["strength"] == specs.DiffusionChainSpec.docs()["strength"]
    with pytest.raises(config.ConfigError, match="'strength' must be in"):
        imagenet(strength=0.0)


def test_the_key_leaves_out_what_extends_a_run_and_what_is_not_the_experiments():
    spec = specs.DiffusionChainSpec()
    key = spec.key()
    assert "n_generations" not in key and "device" not in key
    assert set(key) == set(spec.names()) - {"n_generations", "device"}
    assert spec.replace(n_generations=50).key() == key
    assert spec.replace(strength=0.5).key() != key
    assert key["channel_mult"] == [1] and key["autoencoder_channels"] == [16, 32, 32]  # vectors as JSON lists
    pixel = spec.replace(space="pixel")
    assert not any(k.startswith("autoencoder_") for k in pixel.key()), "a pixel model has no autoencoder"
    assert pixel.replace(autoencoder_steps=7).key() == pixel.key()
    assert spec.replace(autoencoder_steps=7).key() != key
    cfg = config.load_config("02_mnist_chains", "quick", grid_samples=4)
    assert specs.build(specs.DiffusionChainSpec, cfg).key() == key, "a plot setting never enters the key"
    assert set(specs.LucierSpec().key()) == set(specs.LucierSpec.names()) - {"n_iterations", "voice_band_db"}


def test_build_takes_fields_by_name_and_checks_changes():
    cfg = config.load_config("02_mnist_chains", "smoke", strength=0.5)
    spec = specs.build(specs.DiffusionChainSpec, cfg, n_generations=7)
    assert type(spec) is specs.DiffusionChainSpec and spec.strength == 0.5 and spec.n_generations == 7
    assert spec.model_spec() == specs.build(specs.DiffusionModelSpec, cfg)
    with pytest.raises(config.ConfigError, match="no parameter.*strenght"):
        specs.build(specs.DiffusionChainSpec, cfg, strenght=1)
    with pytest.raises(config.ConfigError, match="'strength' must be in"):
        spec.replace(strength=2.0)
    # a spec the notebook lacks fields of takes the spec's defaults (08 builds 05's thresholds from its record)
    assert specs.build(specs.DiagnosticThresholds, {}) == specs.DiagnosticThresholds()


def test_package_functions_refuse_a_notebooks_parameters():
    from resonance_utils import audio, image_chains

    cfg = config.load_config("02_mnist_chains", "smoke")
    with pytest.raises(TypeError, match="takes a DiffusionChainSpec"):
        image_chains.run_image_chain(cfg.params, "label_guided", None, None)
    with pytest.raises(TypeError, match="takes a LucierSpec"):
        audio.run_lucier(config.load_config("01_lucier_room", "smoke").params)


def test_vectors_parse_from_text_and_lists():
    assert specs.coerce("room_dims", "6, 5.5,3.2", "tuple[float, ...]") == (6.0, 5.5, 3.2)
    assert specs.coerce("channel_mult", [1, 2], "tuple[int, ...]") == (1, 2)
    with pytest.raises(config.ConfigError, match="'mic_pos' must be comma-separated numbers"):
        specs.coerce("mic_pos", "a, b, c", "tuple[float, ...]")
    assert specs.coerce("lr", 1, "float") == 1.0 and isinstance(specs.coerce("lr", 1, "float"), float)
    with pytest.raises(config.ConfigError, match="'attention' must be bool"):
        specs.coerce("attention", 1, "bool")
    with pytest.raises(config.ConfigError, match="'n' must be int"):
        specs.coerce("n", True, "int")
    with pytest.raises(config.ConfigError, match="'n' must be int"):
        specs.coerce("n", 2.0, "int")


def test_profile_yaml_values_are_plain_scalars():
    for stem in NOTEBOOKS:
        for profile in config.PROFILES:
            path = config.params_dir() / stem / f"{profile}.yaml"
            values = yaml.safe_load(path.read_text()) or {}
            assert all(isinstance(v, (bool, int, float, str)) for v in values.values()), path


def test_the_package_exports_every_module_the_notebooks_import():
    import re
    from pathlib import Path

    import resonance_utils

    modules = sorted(p.stem for p in Path(resonance_utils.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert sorted(resonance_utils.__all__) == modules
    used = set()
    for nb in (config.params_dir().parent / "notebooks").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            for m in re.finditer(r"from resonance_utils import \(?([\w\s,]+?)\)?\n(?!\s)", "".join(cell["source"])):
                used |= {n.strip().split(" as ")[0] for n in m.group(1).split(",") if n.strip()}
    assert used and used <= set(resonance_utils.__all__), sorted(used - set(resonance_utils.__all__))
    assert resonance_utils.specs.DiffusionChainSpec is specs.DiffusionChainSpec
