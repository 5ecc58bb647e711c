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
