"""Headless Chromium for the page tests (Debian's chromium + chromedriver, `make setup`), and
where their screenshots go for review."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Screenshots of every page test land here (EMOTIONOPS_SCREENSHOTS overrides), kept after
#: the run for a person to look at; the folder is git-ignored.
SCREENSHOTS = Path(
    os.environ.get("EMOTIONOPS_SCREENSHOTS")
    or Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
)


@contextmanager
def chromium(downloads: Path | None = None) -> Iterator[object]:
    """A headless Chromium WebDriver with the browser console log on; skips when absent."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from emotionops.acquire.scrape.driver import CHROME_ARGS

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("chromium/chromedriver not installed (run `make setup`)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    if downloads is not None:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    """SEVERE browser console entries since the last call (the log is drained)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    """Save a full-height screenshot as SCREENSHOTS/<name>.png (printed for the run's log)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height), 800), 6000))
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(1280, 1024)
    print(f"screenshot: {path}")
    return path
