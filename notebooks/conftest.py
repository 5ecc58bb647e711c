"""nbval settings for the notebooks (the README's test command runs them in the smoke profile).

nbval waits at most 5 seconds (a constant, `output_timeout`) for each output message after a cell has finished;
on a loaded 2-core machine a long cell's last messages can take longer, and the cell then fails with "Timeout of 5
seconds exceeded waiting for output" although it ran. A minute is still short of a hang."""
import pytest

OUTPUT_TIMEOUT_S = 60


def pytest_sessionstart(session):
    """A notebook saved from JupyterLab (a parameter set in its parameters cell, a kernel run's outputs over the
    stored check outputs) is said plainly here, naming it and how to restore it, instead of failing inside nbval."""
    from resonance_utils.run_notebooks import list_notebooks, saved_tweaks

    problems = [line for stem in list_notebooks() for line in saved_tweaks(stem)]
    if problems:
        pytest.exit("tracked notebooks differ from what the repository keeps:\n" + "\n".join(problems), returncode=2)


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
