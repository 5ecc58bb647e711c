"""The results page (<figures dir>/index.html): its content from a small real run's outputs, and the page opened
in headless Chromium (Debian's chromium + chromium-driver, which run_all.sh's set-up installs)."""
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest

from resonance_utils import config, publish, results_page, run_notebooks, store

CHECKOUT = Path(__file__).resolve().parents[1]
SCREENSHOT = CHECKOUT / "build" / "results_page.png"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PROFILE = "smoke"
FIGURE_CAPTION = "A test line over three points; the line is ours."
# what headless Chromium needs on a machine with no display and no network, and a profile of its own
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--disable-dev-shm-usage", "--window-size=1280,1000")
BROWSER_TIMEOUT_S = 600  # seconds for the browser to start or a page to load: seconds on an idle machine


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout in tmp_path with the real notebooks and profiles, so that build/<profile>/ (executed notebooks,
    run times) is the test's own; the figures folder is conftest's tmp_path/figures."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("notebooks", "params"):
        (root / name).symlink_to(CHECKOUT / name)
    monkeypatch.setenv("RESONANCE_ROOT", str(root))
    return root


def small_run(*, with_claim: bool = True) -> None:
    """What a short run leaves: 01 wrote a figure (with its caption) and a table and was executed (a two-cell
    notebook with its output in build/smoke/01_lucier_room.ipynb), 09 wrote its claim table, and the run's times
    were recorded. Every other notebook has not run."""
    out = publish.Outputs(config.load_config("01_lucier_room", PROFILE), data_source="synthetic test",
                          feature_network="none (test)")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [1, 0, 2])
    ax.set(xlabel="pass", ylabel="value (a.u.)")
    out.figure(fig, "test_line", caption=FIGURE_CAPTION)
    plt.close(fig)
    out.table(pd.DataFrame({"pass": [0, 1], "entropy (bits)": [9.5, 2.25]}), "test_entropy")
    if with_claim:
        claim = publish.Outputs(config.load_config("09_claim", PROFILE), data_source="synthetic test")
        claim.table(pd.DataFrame({"setting": ["lucier", "gaussian refit"], "verdict": ["resonance", "mixing"]}),
                    results_page.CLAIM_TABLE)
    # an executed notebook as papermill leaves it: a code cell with its output (written here, no kernel started)
    cell = nbformat.v4.new_code_cell("print('forty-two', 6 * 7)", execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text="forty-two 42\n")])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · a tiny executed notebook"), cell])
    executed = run_notebooks.build_dir(PROFILE) / "01_lucier_room.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, executed)
    run_notebooks.write_run_times(PROFILE, ["01_lucier_room", "09_claim"],
                                  {"01_lucier_room": ("ran", 12.5, ""), "09_claim": ("ran", 1.5, "")}, 5.0,
                                  jobs=1, force=False)


# ------------------------------------------------------------------------------------------ content, no browser
def test_page_shows_the_claim_first_then_each_figure_with_caption_and_provenance(checkout):
    small_run()
    assert results_page.main(["--profile", PROFILE]) == 0  # python -m resonance_utils.results_page
    figures = store.figures_dir(PROFILE)
    html = (figures / results_page.PAGE).read_text()
    claim, first_figure = html.index('<section id="claim">'), html.index("<figure")
    assert claim < first_figure and "gaussian refit" in html[claim:first_figure]
    record = store.read_manifest(figures)["test_line.png"]
    for value in (FIGURE_CAPTION, record["data_source"], record["feature_network"], record["git_commit"],
                  record["created"], "profile</dt><dd>smoke"):
        assert value in html[first_figure:], value
    assert "entropy (bits)" in html and "2.25" in html  # 01's table rendered
    assert 'href="notebooks/01_lucier_room.html"' in html
    assert "forty-two 42" in (figures / results_page.NOTEBOOK_PAGES / "01_lucier_room.html").read_text()
    assert "12.5" in html[html.index('id="timings"'):]  # the run's times
    # a notebook that has not run is shown as such, with the command that runs it
    section = html[html.index('id="nb-02_mnist_chains"'):html.index('id="nb-03_imagenet_chains"')]
    assert "notebook-missing" in section and "./run_all.sh --profile smoke --only 02_mnist_chains" in section
    # nothing that a closed network or a copied folder would break: no absolute or remote reference
    assert "http://" not in html and "https://" not in html and 'src="/' not in html and "<script" not in html


def test_a_missing_claim_table_and_run_times_are_shown_not_raised(checkout):
    small_run(with_claim=False)
    (run_notebooks.build_dir(PROFILE) / "last_run.json").unlink()
    html = results_page.write_results_page(profile=PROFILE).read_text()
    assert 'id="claim-missing"' in html and "./run_all.sh --profile smoke --only 09_claim" in html
    assert "No finished run recorded" in html


def test_an_empty_figures_folder_gives_a_page_of_missing_pieces(checkout):
    html = results_page.write_results_page(profile=PROFILE).read_text()
    assert html.count("notebook-missing") == len(run_notebooks.list_notebooks())


# ------------------------------------------------------------------------------------------------- the browser
def _browser():
    """A headless Chromium under chromedriver (Debian's; Selenium Manager never asked to download one), or a
    skip naming what is missing. Returns (driver, its chromedriver service, the profile folder)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
        from selenium.webdriver.remote.client_config import ClientConfig
    except ImportError:
        missing.append("the Python package selenium (the test extra: pip install -e '.[test]')")
    if missing:
        pytest.skip("the results page's browser test needs " + ", ".join(missing) + " (Debian: apt-get install "
                    "chromium chromium-driver; ./run_all.sh's set-up does so as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile_dir = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    service.start()
    # webdriver.Chrome waits 120 s for the browser to start; a loaded machine can take longer than that
    connection = ChromiumRemoteConnection(service.service_url, vendor_prefix="goog", browser_name="chrome",
                                          client_config=ClientConfig(service.service_url, timeout=BROWSER_TIMEOUT_S))
    try:
        driver = webdriver.Remote(command_executor=connection, options=options)
    except Exception:
        service.stop()
        shutil.rmtree(profile_dir, ignore_errors=True)
        raise
    driver.set_page_load_timeout(BROWSER_TIMEOUT_S)
    return driver, service, profile_dir


def _console_errors(driver) -> list[str]:
    from selenium.webdriver.remote.command import Command

    # ChromiumDriver.get_log's own call (a Remote driver, as _browser makes, lacks the method)
    log = driver.execute(Command.GET_LOG, {"type": "browser"})["value"]
    return [e["message"] for e in log if e.get("level") == "SEVERE"]


def test_the_page_loads_in_chromium_with_every_image_and_notebook_link(checkout):
    small_run()
    page = results_page.write_results_page(profile=PROFILE)
    driver, service, profile_dir = _browser()
    try:
        driver.get(page.as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        assert driver.title.startswith("resonance: results")
        assert _console_errors(driver) == []
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert images and all(done and width > 0 for _, done, width in images), images
        links = driver.execute_script(
            "return [...document.querySelectorAll('a.notebook-link')].map(a => a.href)")
        assert links == [(page.parent / results_page.NOTEBOOK_PAGES / "01_lucier_room.html").as_uri()]
        # full-page screenshot, kept in build/ of the checkout for a person to look at
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(height, 600), 8000))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT)) and SCREENSHOT.stat().st_size > 0
        for href in links:  # each notebook page exists and loads cleanly, offline
            assert Path(unquote(urlparse(href).path)).is_file()
            driver.get(href)
            assert "forty-two 42" in driver.find_element("tag name", "body").text
            assert _console_errors(driver) == []
    finally:
        driver.quit()
        service.stop()
        shutil.rmtree(profile_dir, ignore_errors=True)
    assert os.path.getsize(SCREENSHOT) > 10_000
