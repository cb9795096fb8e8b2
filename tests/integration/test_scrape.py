"""Scrape the local search stand-in with real headless Chromium."""

from __future__ import annotations

import csv
import dataclasses
import socket
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from emotionops.scrape.driver import (
    MANIFEST_COLUMNS,
    ScrapeError,
    make_driver,
    read_manifest,
    scrape,
    scrape_query,
)
from emotionops.scrape.engines import LOCAL, EngineError
from emotionops.scrape.standin import SearchStandin
from emotionops.scrape.synthetic import generate_labelled_set

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
RUN_DATE = "2026-11-22"
PER_FOLDER = 8


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_labelled_set(
        tmp_path_factory.mktemp("faces"), ["happy", "sad", "surprise"], PER_FOLDER, seed=5
    )


@pytest.fixture(scope="module")
def standin(image_root: Path) -> Iterator[str]:
    # page_size 4 < 8 images per label: every full scrape goes through infinite scroll.
    with SearchStandin(image_root, page_size=4) as server:
        yield server.url


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium/chromedriver not installed (run `make setup`)")


def _run(base: str, queries: dict[str, list[str]], per_label: int, out: Path, **kw) -> list:
    return scrape(
        queries, "local", base, per_label, RUN_DATE, out,
        kw.pop("chromium", CHROMIUM), kw.pop("chromedriver", CHROMEDRIVER),
        timeout_s=kw.pop("timeout_s", 15), progress=False, **kw,
    )  # fmt: skip


def test_scrape_collects_full_size_urls(standin: str, image_root: Path, tmp_path: Path) -> None:
    queries = {
        "happy": ["happy face", "smiling person portrait"],
        "sad": ["sad face", "unhappy person portrait"],
        "surprise": ["surprised face"],
    }
    out = tmp_path / "urls" / "manifest.csv"
    rows = _run(standin, queries, PER_FOLDER, out)

    assert Counter(r.label for r in rows) == {label: PER_FOLDER for label in queries}
    urls = [r.image_url for r in rows]
    assert len(set(urls)) == len(urls)
    for row in rows:
        assert LOCAL.is_full_size(row.image_url), row.image_url
        assert row.image_url.startswith(f"{standin}/image/{row.label}/")
        assert "/thumb/" not in row.image_url
        assert row.page_url.startswith(f"{standin}/page/{row.label}/")
        assert row.query in queries[row.label] and row.engine == "local"
        assert row.rank >= 1 and row.run_date == RUN_DATE
    # Both phrasings contributed, and results past the first page (scroll) were reached.
    assert {r.query for r in rows if r.label == "happy"} == set(queries["happy"])
    assert max(r.rank for r in rows) > 4

    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        assert len(list(reader)) == len(rows)
    assert read_manifest(out) == rows
    assert not list(out.parent.glob("*.tmp"))

    for row in rows:
        with urllib.request.urlopen(row.image_url, timeout=10) as response:
            body = response.read()
            assert response.headers["Content-Type"] == "image/png"
        name = row.image_url.rsplit("/", 1)[1]
        assert body == (image_root / row.label / name).read_bytes()


def test_resume_keeps_complete_labels(standin: str, tmp_path: Path) -> None:
    queries = {"happy": ["happy face"], "sad": ["sad face"]}
    out = tmp_path / "manifest.csv"
    first = _run(standin, queries, 3, out)
    happy = [r for r in first if r.label == "happy"]
    # Simulate a run interrupted in "sad": only one of its rows made it to disk.
    partial = [*happy, next(r for r in first if r.label == "sad")]
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        for r in partial:
            writer.writerow([getattr(r, c) for c in MANIFEST_COLUMNS])

    second = _run(standin, queries, 3, out)
    assert [r for r in second if r.label == "happy"] == happy
    assert Counter(r.label for r in second) == {"happy": 3, "sad": 3}
    assert read_manifest(out) == second

    # Everything complete: no browser is needed at all (a bad driver path is never used).
    third = _run(standin, queries, 3, out, chromedriver=tmp_path / "no-such-driver")
    assert third == second


def test_short_supply_stops_at_the_end_of_results(standin: str, tmp_path: Path) -> None:
    rows = _run(standin, {"surprise": ["astonished person"]}, PER_FOLDER + 4, tmp_path / "m.csv")
    assert len(rows) == PER_FOLDER
    assert len({r.image_url for r in rows}) == PER_FOLDER


def test_clear_errors(standin: str, tmp_path: Path) -> None:
    queries = {"happy": ["happy face"]}
    with pytest.raises(EngineError, match=r"unknown search engine 'altavista'.*local"):
        scrape(
            queries, "altavista", standin, 2, RUN_DATE, tmp_path / "m.csv", CHROMIUM, CHROMEDRIVER
        )
    with pytest.raises(ScrapeError, match=r"chromedriver not found.*run `make setup`"):
        _run(standin, queries, 2, tmp_path / "m.csv", chromedriver=tmp_path / "missing")
    with pytest.raises(ScrapeError, match=r"Chromium not found.*run `make setup`"):
        _run(standin, queries, 2, tmp_path / "m.csv", chromium=tmp_path / "missing")
    with pytest.raises(EngineError, match="needs a base URL"):
        _run("", queries, 2, tmp_path / "m.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ScrapeError, match="not a URL manifest"):
        _run(standin, queries, 2, tmp_path / "other.csv")
    assert (tmp_path / "other.csv").read_text() == "a,b\n1,2\n"  # never overwritten


def test_unreachable_search_service_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ScrapeError, match=r"could not open .*CONNECTION_REFUSED.*running\?"):
        _run(f"http://127.0.0.1:{port}", {"happy": ["happy face"]}, 2, tmp_path / "m.csv",
             timeout_s=3)  # fmt: skip
    assert not (tmp_path / "m.csv").exists()


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    browser = make_driver(CHROMIUM, CHROMEDRIVER)
    profile = Path(browser.profile_dir)  # type: ignore[attr-defined]
    assert profile.is_dir()
    yield browser
    browser.quit()
    assert not profile.exists()  # the throw-away profile is cleaned up


def test_standin_puts_up_the_obstacles_a_scraper_must_handle(
    image_root: Path, driver: WebDriver
) -> None:
    """Overlay blocks clicks, the panel shows the thumbnail first, scrolling loads more."""
    with SearchStandin(image_root, page_size=4, panel_delay_ms=(1000, 1000)) as server:
        driver.get(f"{server.url}/healthz")
        driver.delete_all_cookies()  # cookies ignore ports: forget earlier consent
        driver.get(f"{server.url}/search?q=happy+face")
        wait = WebDriverWait(driver, 10, poll_frequency=0.05)
        thumbs = driver.find_elements(By.CSS_SELECTOR, LOCAL.thumbnail)
        assert len(thumbs) == 4
        with pytest.raises(ElementClickInterceptedException):
            thumbs[0].click()
        driver.find_element(By.CSS_SELECTOR, LOCAL.consent_button).click()

        thumbs[0].click()
        panel = driver.find_element(By.CSS_SELECTOR, LOCAL.full_image)
        assert "/thumb/" in panel.get_attribute("src")  # not the full-size URL yet
        wait.until(lambda d: "/image/happy/" in panel.get_attribute("src"))

        driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight);")
        more = driver.find_elements(By.CSS_SELECTOR, LOCAL.more_results)
        if more and more[0].is_displayed():  # the page may not be tall enough to scroll
            more[0].click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, LOCAL.thumbnail)) == 8)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, LOCAL.end_marker))


def test_out_of_date_selectors_are_clear_errors(standin: str, driver: WebDriver) -> None:
    no_grid = dataclasses.replace(LOCAL, thumbnail="#grid .no-such-class", end_marker=None)
    with pytest.raises(ScrapeError, match="no results grid"):
        scrape_query(driver, no_grid, standin, "happy", "happy face", 2, 1.5, RUN_DATE)
    no_panel = dataclasses.replace(LOCAL, full_image="#no-such-panel img")
    with pytest.raises(ScrapeError, match="side panel never showed a full-size URL"):
        scrape_query(driver, no_panel, standin, "happy", "happy face", 2, 1.5, RUN_DATE)
