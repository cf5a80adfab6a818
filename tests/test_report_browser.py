"""The HTML report opened in a real headless browser (Debian's chromium, driven by selenium
through /usr/bin/chromedriver): every plot has loaded and every table is there with its rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.report.build import write_report
from bench.report.loading import load_results

CHROMEDRIVER = Path("/usr/bin/chromedriver")
# headless, as root, and none of chromium's background connections (this machine's network is closed)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None or not CHROMEDRIVER.is_file(),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_report_renders_in_chromium_with_every_plot_and_table(report_results, tmp_path, browser):
    written = write_report(load_results(report_results), tmp_path / "report")
    browser.get(written.html.resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(img => ({src: img.src.slice(0, 22), complete: img.complete, width: img.naturalWidth}));")
    assert len(images) == len(written.figures) > 0
    for image in images:
        assert image["src"] == "data:image/png;base64," and image["complete"] and image["width"] > 0, image
    rows = browser.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('table')).map(t => [t.id, t.tBodies[0].rows.length]));")
    assert set(rows) == {path.stem for path in written.tables}
    for path in written.tables:
        assert rows[path.stem] == len(pd.read_csv(path)), path.stem
    assert browser.title == "alexnet-bench report"
