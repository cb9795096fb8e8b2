"""Data Docs offline: a site built by the project's own validation code (a passing and a
failing run) opens in a real headless Chromium with its network switched off (DevTools
offline emulation): the index's tables are filled, nothing is fetched from outside the
site, the console stays clean and a result page renders its expectations table."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from _browser import screenshot
from emotionops.acquire.scrape.driver import CHROME_ARGS
from emotionops.acquire.urls import url_sha256
from emotionops.params import Params
from emotionops.settings import Settings
from emotionops.validation import (
    ValidationReport,
    data_docs_index,
    data_docs_site,
    docs_assets,
    validate_urls,
)
from emotionops.validation.docs_offline import ASSETS, OFFLINE_DIR

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LABELS = ["happy", "sad"]
INDEX_TABLE = "#section-1-content-block-2-1-body-table"  # the index's validation results


def url_rows(bad: bool = False) -> list[dict[str, str]]:
    rows = []
    for label in LABELS:
        for rank in range(1, 4):
            url = f"https://images.example.com/{label}/{rank}.jpg"
            if bad and rank == 1:
                url = f"ftp://images.example.com/{label}/{rank}.jpg"  # not http(s): fails
            rows.append(
                {"label": label, "query": f"{label} face", "engine": "google", "rank": str(rank),
                 "page_url": f"https://example.com/{label}/{rank}", "image_url": url,
                 "run_date": "2026-11-20", "url_sha256": url_sha256(url)}
            )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[ValidationReport]]:
    """Two validation runs (2 suites each) through the project's code: 4 results."""
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("EMOTIONOPS_")]}
    try:
        settings = Settings(_env_file=None, project_dir=tmp_path_factory.mktemp("docs"))
    finally:
        os.environ.update(saved)
    sources = docs_assets(settings)
    missing = [
        str(root / a.source)
        for a in ASSETS
        if a.root != "site"
        for root in [sources.system_javascript if a.root == "debian" else sources.bundled]
        if not (root / a.source).is_file()
    ]
    assert not missing, f"Data Docs assets missing (run `make setup`): {missing}"
    params = Params.model_validate(
        {"labels": LABELS, "validation": {"min_rows_per_label": 2, "max_rows_per_label": 10}}
    )
    passed = validate_urls(url_rows(), params, settings, "2026-11-20")
    failed = validate_urls(url_rows(bad=True), params, settings, "2026-11-21")
    assert passed.success and not failed.success, failed.summary()
    return settings, [passed, failed]


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("chromium/chromedriver not installed (run `make setup`)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        yield driver
    finally:
        driver.quit()


def open_page(driver: WebDriver, page: Path) -> tuple[list[str], list[str]]:
    """Load a page; its SEVERE console messages and every URL the browser requested."""
    driver.get_log("browser")
    driver.get_log("performance")  # start from clean logs
    driver.get(page.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    requested = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    return errors, requested


class _Resources(HTMLParser):
    """Every URL a page loads by itself: script/img src, link href, CSS url()."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "source", "iframe") and found.get("src"):
            self.urls.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"] or "")
        self._style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._style:
            self.urls += re.findall(r"url\(\s*['\"]?([^'\")]+)", data)


def external_resources(site: Path) -> dict[str, list[str]]:
    out = {}
    for page in site.rglob("*.html"):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        bad = [u for u in parser.urls if u.startswith(("http:", "https:", "//"))]
        if bad:
            out[str(page.relative_to(site))] = bad
    return out


def test_rewritten_site_loads_nothing_from_outside(site) -> None:
    settings, _ = site
    root = data_docs_site(settings)
    assert external_resources(root) == {}
    assert (root / OFFLINE_DIR / "bootstrap-table" / "bootstrap-table.min.js").is_file()


def test_index_fills_its_tables_offline(site, browser: WebDriver, tmp_path: Path) -> None:
    settings, reports = site
    start = time.monotonic()
    errors, requested = open_page(browser, data_docs_index(settings))
    rows = browser.find_elements(By.CSS_SELECTOR, f"{INDEX_TABLE} tbody tr")
    elapsed = time.monotonic() - start
    screenshot(browser, "data-docs-index-offline")
    print(f"index loaded and filled in {elapsed:.2f} s")
    assert errors == []
    assert [u for u in requested if not u.startswith(("file:", "data:"))] == []
    results = sum(len(r.suites) for r in reports)
    assert len(rows) == results == 4
    runs = sorted(r.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text for r in rows)
    assert runs == ["urls-2026-11-20"] * 2 + ["urls-2026-11-21"] * 2
    # Font Awesome's icons are drawn by its webfont (copied beside its CSS).
    failed_icon = browser.find_element(By.CSS_SELECTOR, f"{INDEX_TABLE} .ge-failed-icon")
    assert "Font Awesome 6" in failed_icon.value_of_css_property("font-family")
    assert browser.execute_script("return document.fonts.check('900 1em \"Font Awesome 6 Free\"')")
    # The filter row works: typing a run name filters the rows (bootstrap-table filter-control).
    box = browser.find_element(
        By.CSS_SELECTOR, f"{INDEX_TABLE} .bootstrap-table-filter-control-run_name"
    )
    box.send_keys("urls-2026-11-21")
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, f"{INDEX_TABLE} tbody tr")) == 2
    )
    # Run Time's filter is a date picker (Debian's bootstrap-datepicker).
    browser.find_element(
        By.CSS_SELECTOR, f"{INDEX_TABLE} .bootstrap-table-filter-control-run_time"
    ).click()
    WebDriverWait(browser, 10).until(
        lambda d: any(p.is_displayed() for p in d.find_elements(By.CSS_SELECTOR, ".datepicker"))
    )
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_failed_result_page_renders_its_expectations_offline(
    site, browser: WebDriver, tmp_path: Path
) -> None:
    settings, reports = site
    failed = reports[1]
    stats = next(s for s in failed.suites if s.failed)
    assert stats.page is not None and stats.page.is_relative_to(data_docs_site(settings))
    errors, requested = open_page(browser, stats.page)
    screenshot(browser, "data-docs-result-offline")
    assert errors == []
    assert [u for u in requested if not u.startswith(("file:", "data:"))] == []
    tables = browser.find_elements(By.CSS_SELECTOR, ".bootstrap-table table[data-toggle=table]")
    assert tables, "bootstrap-table did not set up the expectation tables"
    rows = [r for t in tables for r in t.find_elements(By.CSS_SELECTOR, "tbody tr")]
    status = [r.find_elements(By.CSS_SELECTOR, "td:first-child i") for r in rows]
    icons = [i[0].get_attribute("class") for i in status if i]
    assert len(icons) == stats.evaluated
    assert sum("fa-times" in c for c in icons) == stats.failed >= 1
    regex_row = next(r for r in rows if "regular expression" in r.text)
    assert "ftp://" in regex_row.text  # the unexpected values are shown
