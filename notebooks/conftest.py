"""nbval settings for the notebooks (the README's test command runs them in the smoke profile).

nbval waits at most 5 seconds (a constant, `output_timeout`) for each output message after a cell has finished;
on a loaded 2-core machine a long cell's last messages can take longer, and the cell then fails with "Timeout of 5
seconds exceeded waiting for output" although it ran. A minute is still short of a hang."""
OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
