"""Scrape the local search stand-in with real headless Chromium."""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from _project import make_tiny_project
from emotionops.acquire.scrape.driver import (
    MANIFEST_COLUMNS,
    ScrapeError,
    make_driver,
    read_manifest,
    scrape,
    scrape_query,
)
from emotionops.acquire.scrape.engines import LOCAL, EngineError
from emotionops.acquire.scrape.standin import SearchStandin
from emotionops.acquire.scrape.synthetic import generate_labelled_set

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


# Markup changes are configuration ------------------------------------------------------------
# The stand-in's "mosaic" markup: other ids and classes, the full-size URL in a data-
# attribute of the panel image (src keeps the thumbnail), and JSON metadata on each result.
MOSAIC_OVERRIDE = {
    "consent_button": "button.cookie-ok",
    "thumbnail": ".mosaic a.tile img.tile-img",
    "full_image": ".viewer img.viewer-img",
    "full_url_attribute": "data-full-url",
    "more_results": "button.load-more",
    "end_marker": ".hits-end",
    "source_link": ".viewer a.viewer-link",
    "click": "native",
}
# A new engine, Bing-style: the full-size URL is read from each result's JSON; no clicks.
MOSAIC_INLINE = {
    "search_url_template": "{base}/search?q={query}",
    "consent_button": "button.cookie-ok",
    "thumbnail": ".mosaic a.tile",
    "inline_url_attribute": "data-meta",
    "inline_json_key": "murl",
    "inline_source_key": "purl",
    "full_url_pattern": r"^https?://[^/]+/image/[^/?#]+/[^/?#]+$",
    "more_results": "button.load-more",
    "end_marker": ".hits-end",
}


@pytest.fixture(scope="module")
def mosaic(image_root: Path) -> Iterator[SearchStandin]:
    with SearchStandin(image_root, page_size=4, skin="mosaic") as server:
        yield server


def test_a_markup_change_is_a_config_edit(mosaic: SearchStandin, tmp_path: Path) -> None:
    queries = {"happy": ["happy face"], "sad": ["sad face"]}
    # The built-in definition no longer matches the new markup, and says which key to fix.
    with pytest.raises(
        ScrapeError, match=r"thumbnail selector .* matched nothing.*local\.thumbnail"
    ):
        _run(mosaic.url, queries, 2, tmp_path / "old.csv", timeout_s=8)

    # The same engine with only its selectors edited (as `scrape.engines:` in params.yaml).
    rows = _run(mosaic.url, queries, PER_FOLDER, tmp_path / "new.csv",
                engines={"local": MOSAIC_OVERRIDE})  # fmt: skip
    assert Counter(r.label for r in rows) == {"happy": PER_FOLDER, "sad": PER_FOLDER}
    assert len({r.image_url for r in rows}) == len(rows)
    for row in rows:
        assert row.image_url.startswith(f"{mosaic.url}/image/{row.label}/"), row.image_url
        assert row.page_url.startswith(f"{mosaic.url}/page/{row.label}/"), row.page_url
    assert max(r.rank for r in rows) > 4  # "more" control and end marker renamed too

    # A new engine defined only in configuration, reading the JSON on each result.
    before = mosaic.hits["api/item"]
    inline = scrape(
        {"happy": ["happy face"]}, "mosaic-json", mosaic.url, PER_FOLDER, RUN_DATE,
        tmp_path / "inline.csv", CHROMIUM, CHROMEDRIVER, timeout_s=15, progress=False,
        engines={"mosaic-json": MOSAIC_INLINE},
    )  # fmt: skip
    assert {r.image_url for r in inline} == {r.image_url for r in rows if r.label == "happy"}
    assert all(r.engine == "mosaic-json" and "/page/happy/" in r.page_url for r in inline)
    assert mosaic.hits["api/item"] == before  # nothing was clicked


# Caps and resume -------------------------------------------------------------------------------
def test_caps_per_query_and_per_run(standin: str, tmp_path: Path) -> None:
    queries = {"happy": ["happy face", "smiling person portrait"], "sad": ["sad face"]}
    rows = _run(standin, queries, PER_FOLDER, tmp_path / "q.csv", per_query=3)
    per_query = Counter((r.label, r.query) for r in rows)
    assert per_query == {("happy", "happy face"): 3, ("happy", "smiling person portrait"): 3,
                         ("sad", "sad face"): 3}  # fmt: skip

    capped = _run(standin, queries, 4, tmp_path / "r.csv", max_per_run=5)
    assert Counter(r.label for r in capped) == {"happy": 4, "sad": 1}


def test_an_interrupted_run_resumes_without_clicking_again(
    image_root: Path, tmp_path: Path
) -> None:
    queries = {"happy": ["happy face"], "sad": ["sad face"]}
    out = tmp_path / "run_date=2026-11-22" / "urls.csv"
    with SearchStandin(image_root, page_size=4) as server:
        # The run stops after 3 rows (here: the run cap), like a run killed mid-label.
        first = _run(server.url, queries, 4, out, max_per_run=3)
        assert [r.label for r in first] == ["happy"] * 3
        clicks = server.hits["api/item"]
        assert clicks == 3

        second = _run(server.url, queries, 4, out)
        assert second[:3] == first  # kept as they were, in order
        assert Counter(r.label for r in second) == {"happy": 4, "sad": 4}
        assert server.hits["api/item"] - clicks == 5  # only the 5 missing results were clicked
        assert read_manifest(out) == second
        assert len({r.image_url for r in second}) == 8


# Canary ----------------------------------------------------------------------------------------
def _canary(base: str, **kw):
    from emotionops.acquire.scrape.canary import run_canary

    return run_canary(
        kw.pop("engine", "local"), base, kw.pop("query", "happy face"), kw.pop("min_results", 3),
        CHROMIUM, CHROMEDRIVER, timeout_s=kw.pop("timeout_s", 20), **kw,
    )  # fmt: skip


def test_canary_passes_on_a_healthy_engine(standin: str) -> None:
    result = _canary(standin, min_results=5)
    assert result.ok and result.found == 5 and len(set(result.urls)) == 5
    assert result.line().startswith("canary 'local' query 'happy face': OK, 5 full-size URLs")


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"thumbnail": "#grid .renamed-thumb"},
         r"thumbnail selector '#grid \.renamed-thumb' matched nothing .*local\.thumbnail"),
        ({"full_image": "#side-panel img.renamed"},
         r"full_image selector '#side-panel img\.renamed' .*local\.full_image"),
        ({"thumbnail": "#grid img:no-such-pseudo"},
         r"thumbnail selector '#grid img:no-such-pseudo' is not valid CSS; fix local\.thumbnail"),
    ],
)  # fmt: skip
def test_canary_names_the_broken_selector(standin: str, override: dict, reason: str) -> None:
    # Long enough for a page load on two busy cores: a shorter wait expired first there and
    # named the page load instead of the selector (the invalid-CSS case fails at once anyway).
    result = _canary(standin, engines={"local": override}, timeout_s=8)
    assert not result.ok and result.found == 0
    assert re.search(reason, result.reason), result.reason
    assert "\n" not in result.line() and "FAILED" in result.line()


def test_canary_reports_too_few_results(standin: str) -> None:
    result = _canary(standin, query="astonished person", min_results=PER_FOLDER + 2)
    assert not result.ok and result.found == PER_FOLDER
    assert result.reason.startswith(f"too few results: {PER_FOLDER} full-size URLs, needed 10")


class _Unavailable(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>down for maintenance</body></html>"
        self.send_response(503)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_canary_reports_a_service_that_is_down() -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = _canary(f"http://127.0.0.1:{port}")
    assert not refused.ok and "CONNECTION_REFUSED" in refused.reason
    assert "is the 'local' search service running?" in refused.reason

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        down = _canary(f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not down.ok and "answered HTTP 503" in down.reason


def test_canary_command_exit_codes(standin: str, tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path / "project")
    env = {**os.environ, "EMOTIONOPS_PROJECT_DIR": str(project), "EMOTIONOPS_SEARCH_URL": standin}
    cli = Path(sys.executable).with_name("emotionops")

    ok = subprocess.run([cli, "canary", "--min-results", "2"], env=env, capture_output=True,
                        text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("canary 'local' query 'happy face': OK, 2 full-size URLs")

    few = subprocess.run([cli, "canary", "--query", "sad face", "--min-results", "50"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert few.returncode == 1
    assert few.stderr.strip().splitlines() == [
        f"canary 'local' query 'sad face': FAILED: too few results: {PER_FOLDER} full-size "
        "URLs, needed 50 (the results ran out; try a broader query or check the engine's "
        "end_marker/more_results)"
    ]

    bad = subprocess.run([cli, "canary", "--engine", "altavista"], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "unknown search engine 'altavista'" in bad.stderr
