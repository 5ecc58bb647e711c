import pytest

from resonance_utils import config
from resonance_utils.config import ConfigError


def all_notebooks():
    return config.notebooks_with_params()


@pytest.mark.parametrize("notebook", all_notebooks())
def test_every_profile_changes_only_known_parameters_and_keeps_their_types(notebook):
    defaults = config.params_class(notebook).defaults()
    for profile in config.PROFILES:
        for name, value in config.load_profile(notebook, profile).items():
            assert name in defaults
            want = type(defaults[name])
            if want is tuple:
                assert isinstance(value, str), f"{notebook}/{profile}: vectors are written as text, like \"1, 2\""
            else:
                assert type(value) is want or (want is float and type(value) is int), (notebook, profile, name)


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        config.load_config("01_lucier_room", "smoke", n_iteration=5)
    assert "n_iteration" in str(e.value) and "n_iterations" in str(e.value)


def test_unknown_profile_and_notebook():
    with pytest.raises(ConfigError, match="unknown profile 'fast'.*smoke, quick, paper"):
        config.load_config("01_lucier_room", "fast")
    with pytest.raises(ConfigError, match="no parameters for notebook"):
        config.load_config("99_nothing", "smoke")


def test_typed_overrides():
    cfg = config.load_config("01_lucier_room", "smoke", n_iterations=7, rt60=1, add_noise=True)
    assert cfg.n_iterations == 7 and cfg["rt60"] == 1.0 and isinstance(cfg.rt60, float) and cfg.add_noise is True
    assert cfg.overridden == ("n_iterations", "rt60", "add_noise")
    with pytest.raises(ConfigError, match="'n_iterations' must be int"):
        config.load_config("01_lucier_room", "smoke", n_iterations=7.5)
    with pytest.raises(ConfigError, match="'add_noise' must be bool"):
        config.load_config("01_lucier_room", "smoke", add_noise=1)
    with pytest.raises(ConfigError, match="'n_iterations' must be int"):
        config.load_config("01_lucier_room", "smoke", n_iterations=True)
    with pytest.raises(ConfigError, match="'voice_path' must be str"):
        config.load_config("01_lucier_room", "smoke", voice_path=3)
    with pytest.raises(AttributeError, match="no parameter 'nope'"):
        config.load_config("01_lucier_room", "smoke").nope


def test_resolve_reads_the_namespace_and_rejects_what_papermill_injected_unknown(monkeypatch):
    monkeypatch.delenv("RESONANCE_PROFILE", raising=False)
    ns = {"profile": "smoke", "n_iterations": 3, "rt60": None}
    cfg = config.resolve("01_lucier_room", ns)
    assert cfg.profile == "smoke" and cfg.n_iterations == 3 and cfg.overridden == ("n_iterations",)
    ns["In"] = ["", "profile = ''\nn_iterations = None", "# Parameters\nprofile = \"smoke\"\nn_iteratons = 3\n"]
    with pytest.raises(ConfigError, match="n_iteratons"):
        config.resolve("01_lucier_room", ns)
    monkeypatch.setenv("RESONANCE_PROFILE", "smoke")
    assert config.resolve("01_lucier_room", {"profile": ""}).profile == "smoke"


def _kernel_namespace(cell_source: str, *history: str) -> dict:
    """What a kernel's globals hold after running the history, then the parameters cell (IPython's `In` too)."""
    ns = {}
    for src in (*history, cell_source):
        exec(src, ns)
    ns.pop("__builtins__")
    ns["In"] = ["", *history, cell_source]
    return ns


def test_resolve_reads_only_the_last_run_of_the_parameters_cell(monkeypatch):
    from resonance_utils.notebook_params import parameters_cell

    monkeypatch.delenv("RESONANCE_PROFILE", raising=False)
    cell = parameters_cell("01_lucier_room").replace('profile = ""', 'profile = "smoke"')
    tweaked = cell.replace("n_iterations = None", "n_iterations = 7")
    assert tweaked != cell
    assert config.resolve("01_lucier_room", _kernel_namespace(tweaked)).n_iterations == 7
    # the tweak's line deleted and the cell rerun: the kernel still holds 7, the profile's value counts
    deleted = "\n".join(line for line in cell.splitlines() if not line.startswith("n_iterations"))
    ns = _kernel_namespace(deleted, tweaked)
    assert ns["n_iterations"] == 7
    smoke = config.load_config("01_lucier_room", "smoke")
    assert config.resolve("01_lucier_room", ns).n_iterations == smoke.n_iterations != 7
    # a misspelling in the cell is an error naming it and the nearest valid name, before anything runs
    with pytest.raises(ConfigError, match=r"n_iteration \(did you mean n_iterations\?\)"):
        config.resolve("01_lucier_room", _kernel_namespace(cell + "\nn_iteration = 20"))
    # papermill's injected cell after the parameters cell counts; a parameters cell that does not parse did not run
    ns = _kernel_namespace(cell)
    ns["n_iterations"] = 9
    ns["In"] += ["# Parameters\nn_iterations = 9\n", cell + "\nn_iterations = ("]
    assert config.resolve("01_lucier_room", ns).n_iterations == 9
    # a range is checked in the notebook's own name
    with pytest.raises(ConfigError, match="'n_iterations' must be >= 1"):
        config.resolve("01_lucier_room", _kernel_namespace(cell.replace("n_iterations = None", "n_iterations = -5")))


def test_parameter_cells_carry_the_mark_resolve_finds_them_by():
    from resonance_utils.notebook_params import NOTEBOOKS, parameters_cell

    for stem in NOTEBOOKS:
        cell = parameters_cell(stem)
        names, injected = config.parameter_cell_names({"In": [cell]})
        assert names == {"profile", *NOTEBOOKS[stem].names()} and injected == set()


def test_papermill_reads_every_line_of_the_parameters_cells():
    """papermill parses a parameters cell to warn about unknown -p names; a comment holding "=" makes it skip the
    line with "Unable to parse line" (in every run's log). Its own parser, on the committed cells, finds them all."""
    import json
    from pathlib import Path

    from papermill.translators import PythonTranslator

    from resonance_utils.notebook_params import NOTEBOOKS

    for stem in NOTEBOOKS:
        nb = json.loads((Path(__file__).parents[1] / "notebooks" / f"{stem}.ipynb").read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
        found = {p.name for p in PythonTranslator.inspect({"source": "".join(cell["source"])})}
        assert found == {"profile", *NOTEBOOKS[stem].names()}, stem


def test_parse_vector():
    assert config.parse_vector("room_dims", "6, 5.5,3.2", 3) == (6.0, 5.5, 3.2)
    with pytest.raises(ConfigError, match="room_dims.*needs 3 numbers"):
        config.parse_vector("room_dims", "6, 5", 3)
    with pytest.raises(ConfigError, match="mic_pos.*comma-separated"):
        config.parse_vector("mic_pos", "a, b, c", 3)


def test_check_overrides_from_the_command_line():
    assert config.check_overrides("01_lucier_room", "smoke", ["n_iterations=9", "rt60=0.5", "add_noise=true",
                                                              "voice_path=/tmp/x.wav"]) == {
        "n_iterations": 9, "rt60": 0.5, "add_noise": True, "voice_path": "/tmp/x.wav"}
    with pytest.raises(ConfigError, match="unknown parameter"):
        config.check_overrides("01_lucier_room", "smoke", ["bogus=1"])
    with pytest.raises(ConfigError, match="key=value"):
        config.check_overrides("01_lucier_room", "smoke", ["n_iterations"])
    with pytest.raises(ConfigError, match="must be int"):
        config.check_overrides("01_lucier_room", "smoke", ["n_iterations=many"])
    with pytest.raises(ConfigError, match="--profile"):
        config.check_overrides("01_lucier_room", "smoke", ["profile=quick"])
