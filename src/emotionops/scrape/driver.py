"""Collect full-size image URLs from an image-search engine with Selenium and headless Chromium.

WHY explicit waits everywhere: image-search pages are asynchronous. A click right after
loading hits the cookie overlay; the side panel shows the thumbnail before the full-size
URL; more results arrive only after a scroll. Every step therefore waits for the state it
needs (WebDriverWait), never for a fixed time, which keeps the scraper fast and stable.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from emotionops.errors import EmotionOpsError
from emotionops.scrape.engines import EngineConfig, get_engine

log = logging.getLogger(__name__)

CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
)
POLL_S = 0.025


class ScrapeError(EmotionOpsError):
    """The browser is missing or fails, or the search page does not look as configured."""


@dataclass
class ManifestRow:
    """One full-size image URL found for a label (a row of the URL manifest CSV)."""

    label: str
    query: str
    engine: str
    rank: int
    page_url: str
    image_url: str
    run_date: str


MANIFEST_COLUMNS = tuple(f.name for f in fields(ManifestRow))


# Browser -----------------------------------------------------------------------------------
class _Chrome(webdriver.Chrome):
    """Chrome that deletes its throw-away profile directory when it quits."""

    profile_dir: str | None = None

    def quit(self) -> None:
        try:
            super().quit()
        finally:
            if self.profile_dir:
                shutil.rmtree(self.profile_dir, ignore_errors=True)


def make_driver(chromium: Path, chromedriver: Path) -> WebDriver:
    """Headless Chromium with a fresh profile; the explicit Service skips Selenium Manager
    (which would try to download a driver)."""
    for path, what in ((Path(chromium), "Chromium"), (Path(chromedriver), "chromedriver")):
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ScrapeError(
                f"{what} not found at {path}: run `make setup` (or set "
                "EMOTIONOPS_CHROMIUM_BINARY / EMOTIONOPS_CHROMEDRIVER)"
            )
    profile = tempfile.mkdtemp(prefix="emotionops-chrome-")
    options = Options()
    options.binary_location = str(chromium)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    try:
        driver = _Chrome(service=Service(str(chromedriver)), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise ScrapeError(
            f"could not start Chromium ({chromium}) with chromedriver ({chromedriver}): "
            f"{(exc.msg or str(exc)).strip()}. Check that their versions match; "
            "`make setup` installs a matching pair."
        ) from exc
    driver.profile_dir = profile
    return driver


# One query ---------------------------------------------------------------------------------
def _wait(driver: WebDriver, timeout_s: float) -> WebDriverWait:
    return WebDriverWait(
        driver,
        timeout_s,
        poll_frequency=POLL_S,
        ignored_exceptions=(StaleElementReferenceException,),
    )


def _accept_consent(driver: WebDriver, engine: EngineConfig, timeout_s: float) -> None:
    if not engine.consent_button or not driver.find_elements(
        By.CSS_SELECTOR, engine.consent_button
    ):
        return
    locator = (By.CSS_SELECTOR, engine.consent_button)
    _wait(driver, timeout_s).until(ec.element_to_be_clickable(locator)).click()
    _wait(driver, timeout_s).until(ec.invisibility_of_element_located(locator))


def _wait_for_results(driver: WebDriver, engine: EngineConfig, url: str, timeout_s: float) -> None:
    selectors = [engine.thumbnail] + ([engine.end_marker] if engine.end_marker else [])

    def ready(d: WebDriver) -> bool:
        return any(d.find_elements(By.CSS_SELECTOR, s) for s in selectors)

    try:
        _wait(driver, timeout_s).until(ready)
    except TimeoutException:
        raise ScrapeError(
            f"{url} showed no results grid ({engine.thumbnail!r}) within {timeout_s:g}s: "
            f"is the {engine.name!r} search service reachable, and are its selectors current?"
        ) from None


def _try_click(element: WebElement) -> bool:
    """A real click; False while something (an overlay, an animation) intercepts it."""
    try:
        element.click()
        return True
    except (ElementClickInterceptedException, ElementNotInteractableException):
        return False


# One round trip per poll: the panel's URL candidates and its source link together.
_PANEL_JS = """
const [selector, attr, sourceSelector] = arguments;
const values = [];
for (const el of document.querySelectorAll(selector)) {
  const v = (attr in el && typeof el[attr] === "string") ? el[attr] : el.getAttribute(attr);
  if (v) values.push(v);
}
let page = null;
if (sourceSelector) {
  const a = document.querySelector(sourceSelector);
  if (a) page = a.href || a.getAttribute("href");
}
return [values, page];
"""
_PREPARE_JS = """
const el = arguments[0];
el.scrollIntoView({block: "center"});
return el.currentSrc || el.src || el.getAttribute("src") || "";
"""


def _panel_url(
    driver: WebDriver, engine: EngineConfig, previous: str | None
) -> tuple[str, str | None] | None:
    """(full-size URL, source page URL) once the panel shows a new full-size URL."""
    values, page = driver.execute_script(
        _PANEL_JS, engine.full_image, engine.full_url_attribute, engine.source_link
    )
    for value in values:
        if value != previous and engine.is_full_size(value):
            return value, page
    return None


def _open_full_size(
    driver: WebDriver,
    engine: EngineConfig,
    thumb: WebElement,
    previous: str | None,
    timeout_s: float,
) -> tuple[str, str | None]:
    """Click a thumbnail and wait until the panel shows a new full-size URL."""
    wait = _wait(driver, timeout_s)
    wait.until(lambda _d: _try_click(thumb))
    return wait.until(lambda d: _panel_url(d, engine, previous))


def _load_more(driver: WebDriver, engine: EngineConfig, count: int, timeout_s: float) -> bool:
    """Scroll to the bottom (and press "more" if shown) until more thumbnails appear.

    False at the end of the results (end marker shown, or nothing new within the timeout).
    """

    def end_shown(d: WebDriver) -> bool:
        return bool(engine.end_marker and d.find_elements(By.CSS_SELECTOR, engine.end_marker))

    if end_shown(driver):
        return False
    driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight);")

    def grown(d: WebDriver) -> str | None:
        if len(d.find_elements(By.CSS_SELECTOR, engine.thumbnail)) > count:
            return "more"
        if end_shown(d):
            # Items and the marker can arrive together: count again before giving up.
            more = len(d.find_elements(By.CSS_SELECTOR, engine.thumbnail)) > count
            return "more" if more else "end"
        if engine.more_results:
            for button in d.find_elements(By.CSS_SELECTOR, engine.more_results):
                if button.is_displayed() and button.is_enabled():
                    _try_click(button)
        return None

    try:
        return _wait(driver, timeout_s).until(grown) == "more"
    except TimeoutException:
        log.warning("%s: no more results appeared within %gs", engine.name, timeout_s)
        return False


def scrape_query(
    driver: WebDriver,
    engine: EngineConfig,
    base_url: str,
    label: str,
    query: str,
    limit: int,
    timeout_s: float,
    run_date: str,
    *,
    exclude: Collection[str] = (),
    known: dict[str, str] | None = None,
    on_row: Callable[[ManifestRow], None] | None = None,
) -> list[ManifestRow]:
    """Up to `limit` new full-size URLs for one query, in result order.

    `exclude`: full-size URLs already collected (skipped, not counted). `known`: a cache
    thumbnail URL -> full-size URL shared across queries, so a thumbnail already resolved
    under another phrasing is not clicked again.
    """
    url = engine.search_url(base_url, query)
    driver.set_page_load_timeout(timeout_s)
    try:
        driver.get(url)
    except TimeoutException:
        raise ScrapeError(f"{url} did not load within {timeout_s:g}s") from None
    except WebDriverException as exc:
        reason = (exc.msg or str(exc)).strip().splitlines()[0]
        raise ScrapeError(
            f"could not open {url} ({reason}): is the {engine.name!r} search service running?"
        ) from exc
    _accept_consent(driver, engine, timeout_s)
    _wait_for_results(driver, engine, url, timeout_s)

    known = {} if known is None else known
    taken = set(exclude)
    rows: list[ManifestRow] = []
    previous: str | None = None
    done = 0
    while len(rows) < limit:
        thumbs = driver.find_elements(By.CSS_SELECTOR, engine.thumbnail)
        if done >= len(thumbs):
            if not _load_more(driver, engine, done, timeout_s):
                break
            continue
        for thumb in thumbs[done:]:
            done += 1
            try:
                thumb_url = driver.execute_script(_PREPARE_JS, thumb)
                if known.get(thumb_url) in taken:
                    continue
                full, source = _open_full_size(driver, engine, thumb, previous, timeout_s)
            except StaleElementReferenceException:
                log.warning("%s %r: result %d vanished from the page; skipped", label, query, done)
                continue
            except TimeoutException:
                if not rows and previous is None:
                    raise ScrapeError(
                        f"{url}: the side panel never showed a full-size URL "
                        f"({engine.full_image!r} matching {engine.full_url_pattern!r}) "
                        f"within {timeout_s:g}s; the engine's selectors may be out of date"
                    ) from None
                log.warning("%s %r: result %d gave no full-size URL; skipped", label, query, done)
                continue
            previous = full
            if thumb_url:
                known[thumb_url] = full
            if full in taken:
                continue
            ok_source = source and source.startswith(("http://", "https://"))
            page_url = source if ok_source and not source.endswith("#") else url
            row = ManifestRow(label, query, engine.name, done, page_url, full, run_date)
            taken.add(full)
            rows.append(row)
            if on_row is not None:
                on_row(row)
            if len(rows) >= limit:
                break
    return rows


# Manifest ----------------------------------------------------------------------------------
def read_manifest(path: Path) -> list[ManifestRow]:
    """Rows of a manifest CSV; a file with other columns is refused rather than overwritten."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise ScrapeError(
                f"{path} exists but is not a URL manifest (columns {reader.fieldnames}, "
                f"expected {list(MANIFEST_COLUMNS)}); move it away or choose another path"
            )
        try:
            return [ManifestRow(**{**r, "rank": int(r["rank"])}) for r in reader]
        except (TypeError, ValueError) as exc:
            raise ScrapeError(f"{path}: malformed manifest row: {exc}") from exc


def write_manifest(path: Path, rows: list[ManifestRow]) -> None:
    """Write tmp + rename: a crash never leaves a half-written manifest behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# All labels --------------------------------------------------------------------------------
@contextmanager
def _progress_bar(enabled: bool, total: int, completed: int) -> Iterator[Callable[[str], None]]:
    """Yields advance(description); a rich bar on stderr when enabled, else a no-op."""
    if not enabled:
        yield lambda _description: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]scrape[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("", total=total, completed=completed)
        yield lambda description: bar.update(task, advance=1, description=description)


def _scrape_label(
    driver: WebDriver,
    engine: EngineConfig,
    base_url: str,
    label: str,
    queries: list[str],
    per_label: int,
    timeout_s: float,
    run_date: str,
    advance: Callable[[str], None],
) -> list[ManifestRow]:
    """Spread `per_label` over the queries; a query that runs dry passes its share on."""
    rows: list[ManifestRow] = []
    seen: set[str] = set()
    known: dict[str, str] = {}
    exhausted: set[str] = set()

    def run(query: str, limit: int) -> None:
        got = scrape_query(
            driver, engine, base_url, label, query, limit, timeout_s, run_date,
            exclude=seen, known=known, on_row=lambda r: advance(f"{label}: {r.query}"),
        )  # fmt: skip
        if len(got) < limit:
            exhausted.add(query)
        rows.extend(got)
        seen.update(r.image_url for r in got)

    for i, query in enumerate(queries):
        remaining = per_label - len(rows)
        if remaining <= 0:
            break
        run(query, math.ceil(remaining / (len(queries) - i)))
    # Second pass: early queries stopped at their share; later ones may have run dry.
    for query in queries:
        remaining = per_label - len(rows)
        if remaining <= 0:
            break
        if query not in exhausted:
            run(query, remaining)
    if len(rows) < per_label:
        log.warning("%s: only %d of %d unique URLs found", label, len(rows), per_label)
    return rows


def scrape(
    labels_to_queries: dict[str, list[str]],
    engine_name: str,
    base_url: str,
    per_label: int,
    run_date: str,
    out_csv: Path,
    chromium: Path,
    chromedriver: Path,
    timeout_s: float = 20,
    progress: bool = True,
) -> list[ManifestRow]:
    """Scrape every label and write the manifest CSV; resumable.

    Rows already in `out_csv` for a label are kept when that label is complete (at least
    `per_label` rows from the same engine and run date); other labels are scraped again.
    The manifest is rewritten after each label, so an interrupted run loses at most one.
    """
    engine = get_engine(engine_name)
    engine.search_url(base_url, "probe")  # fails early when a needed base URL is missing
    if per_label < 1:
        raise ScrapeError(f"per_label must be >= 1, got {per_label}")
    empty = [label for label, queries in labels_to_queries.items() if not queries]
    if empty:
        raise ScrapeError(f"no search queries for labels {empty}")

    out_csv = Path(out_csv)
    by_label: dict[str, list[ManifestRow]] = {}
    if out_csv.exists():
        old: dict[str, list[ManifestRow]] = {}
        for row in read_manifest(out_csv):
            old.setdefault(row.label, []).append(row)
        for label, rows in old.items():
            same_run = all(r.engine == engine.name and r.run_date == run_date for r in rows)
            if label in labels_to_queries and same_run and len(rows) >= per_label:
                by_label[label] = rows
        if by_label:
            log.info("resuming %s: labels already complete: %s", out_csv, sorted(by_label))

    def ordered() -> list[ManifestRow]:
        return [row for label in labels_to_queries for row in by_label.get(label, [])]

    todo = [label for label in labels_to_queries if label not in by_label]
    if todo:
        driver = make_driver(chromium, chromedriver)
        try:
            total = per_label * len(labels_to_queries)
            done = per_label * (len(labels_to_queries) - len(todo))
            with _progress_bar(progress, total, done) as advance:
                for label in todo:
                    by_label[label] = _scrape_label(
                        driver, engine, base_url, label, list(labels_to_queries[label]),
                        per_label, timeout_s, run_date, advance,
                    )  # fmt: skip
                    write_manifest(out_csv, ordered())
        finally:
            driver.quit()
    rows = ordered()
    write_manifest(out_csv, rows)
    return rows
