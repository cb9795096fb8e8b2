"""Collect full-size image URLs from an image-search engine with Selenium and headless Chromium.

WHY explicit waits everywhere: image-search pages are asynchronous. A click right after
loading hits the cookie overlay; the side panel shows the thumbnail before the full-size
URL; more results arrive only after a scroll. Every step therefore waits for the state it
needs (WebDriverWait), never for a fixed time, which keeps the scraper fast and stable.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

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

from emotionops.acquire.scrape.engines import EngineConfig, get_engine
from emotionops.errors import EmotionOpsError
from emotionops.files import write_records
from emotionops.progress import progress_bar

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
class Throttle:
    """Polite pacing: at least `delay_s` between the starts of two requests to the engine.

    WHY: a rate limit, not synchronisation (explicit waits do that). Time already spent
    waiting for the page counts toward the gap, so pacing adds nothing when the engine is
    slower than the limit, and a delay of 0 costs nothing.
    """

    def __init__(
        self,
        delay_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if delay_s < 0:
            raise ScrapeError(f"delay_s must be >= 0, got {delay_s}")
        self.delay_s = float(delay_s)
        self._clock = clock
        self._sleep = sleep
        self._last: float | None = None
        self.paced = 0
        self.slept_s = 0.0

    def pace(self) -> None:
        """Block until `delay_s` has passed since the previous call, then mark this one."""
        now = self._clock()
        if self._last is not None and self.delay_s > 0:
            gap = self._last + self.delay_s - now
            if gap > 0:
                self._sleep(gap)
                self.slept_s += gap
                now = self._clock()
        self._last = now
        self.paced += 1


def _wait(driver: WebDriver, timeout_s: float) -> WebDriverWait:
    return WebDriverWait(
        driver,
        timeout_s,
        poll_frequency=POLL_S,
        ignored_exceptions=(StaleElementReferenceException,),
    )


def _key(engine: EngineConfig, key: str) -> str:
    """Where a selector is configured, for error messages."""
    return f"{engine.name}.{key}"


# One round trip after a page load: the HTTP status and which configured selectors are not
# valid CSS (a typo in a selector must be named, not reported as "nothing found").
_CHECK_JS = """
const selectors = arguments[0];
const invalid = [];
for (const [key, selector] of Object.entries(selectors)) {
  try { document.querySelector(selector); } catch (e) { invalid.push(key); }
}
const nav = performance.getEntriesByType("navigation")[0];
const status = nav && typeof nav.responseStatus === "number" ? nav.responseStatus : 0;
return [status, invalid];
"""


def _check_page(driver: WebDriver, engine: EngineConfig, url: str) -> None:
    status, invalid = driver.execute_script(_CHECK_JS, engine.selectors())
    if invalid:
        key = invalid[0]
        raise ScrapeError(
            f"engine {engine.name!r}: {key} selector {engine.selectors()[key]!r} is not valid "
            f"CSS; fix {_key(engine, key)} (engines.yaml or scrape.engines in params.yaml)"
        )
    if status >= 400:
        raise ScrapeError(
            f"{url} answered HTTP {status}: is the {engine.name!r} search service up?"
        )


def _accept_consent(driver: WebDriver, engine: EngineConfig, timeout_s: float) -> None:
    if not engine.consent_button or not driver.find_elements(
        By.CSS_SELECTOR, engine.consent_button
    ):
        return
    locator = (By.CSS_SELECTOR, engine.consent_button)
    try:
        _wait(driver, timeout_s).until(ec.element_to_be_clickable(locator)).click()
        _wait(driver, timeout_s).until(ec.invisibility_of_element_located(locator))
    except TimeoutException:
        raise ScrapeError(
            f"engine {engine.name!r}: the consent_button {engine.consent_button!r} did not "
            f"close the consent dialog within {timeout_s:g}s; check {_key(engine, 'consent_button')}"
        ) from None


def _wait_for_results(driver: WebDriver, engine: EngineConfig, url: str, timeout_s: float) -> None:
    selectors = [engine.thumbnail] + ([engine.end_marker] if engine.end_marker else [])

    def ready(d: WebDriver) -> bool:
        return any(d.find_elements(By.CSS_SELECTOR, s) for s in selectors)

    try:
        _wait(driver, timeout_s).until(ready)
    except TimeoutException:
        raise ScrapeError(
            f"{url} showed no results grid: thumbnail selector {engine.thumbnail!r} matched "
            f"nothing within {timeout_s:g}s; is the {engine.name!r} search service reachable, "
            f"and is {_key(engine, 'thumbnail')} current?"
        ) from None


def _try_click(element: WebElement) -> bool:
    """A real click; False while something (an overlay, an animation) intercepts it."""
    try:
        element.click()
        return True
    except (ElementClickInterceptedException, ElementNotInteractableException):
        return False


# An explicit wait that runs inside the browser: it resolves as soon as the panel holds a
# URL not seen before (matching the engine's pattern when JS can compile it), so there is
# one round trip per change instead of one per poll. Python re-checks with `re` anyway.
_PANEL_WAIT_JS = """
const [selector, attr, sourceSelector, ignore, pattern, timeoutMs] = arguments;
const done = arguments[arguments.length - 1];
let re = null;
try { re = pattern ? new RegExp(pattern) : null; } catch (e) { re = null; }
const skip = new Set(ignore);
const deadline = Date.now() + timeoutMs;
const absolute = (v) => { try { return new URL(v, document.baseURI).href; } catch (e) { return v; } };
function read() {
  for (const el of document.querySelectorAll(selector)) {
    let v = (attr in el && typeof el[attr] === "string") ? el[attr] : el.getAttribute(attr);
    if (!v) continue;
    v = absolute(v);
    if (skip.has(v) || (re && !re.test(v))) continue;
    let page = null;
    if (sourceSelector) {
      const a = document.querySelector(sourceSelector);
      if (a) page = a.href || a.getAttribute("href");
    }
    return [v, page];
  }
  return null;
}
(function poll() {
  const found = read();
  if (found) { done(found); return; }
  if (Date.now() >= deadline) { done(null); return; }
  setTimeout(poll, 5);
})();
"""
_PREPARE_JS = """
const el = arguments[0];
el.scrollIntoView({block: "center"});
return el.currentSrc || el.src || el.getAttribute("src") || "";
"""
# Engines that put the full-size URL on the result itself (Bing's `m` JSON): no click.
_INLINE_JS = """
const [el, attr, jsonKey, sourceKey] = arguments;
const absolute = (v) => { try { return new URL(v, document.baseURI).href; } catch (e) { return v; } };
const raw = el.getAttribute(attr);
if (!raw) return [null, null];
if (!jsonKey) return [absolute(raw), null];
let meta;
try { meta = JSON.parse(raw); } catch (e) { return [null, null]; }
const url = typeof meta[jsonKey] === "string" ? absolute(meta[jsonKey]) : null;
const page = sourceKey && typeof meta[sourceKey] === "string" ? absolute(meta[sourceKey]) : null;
return [url, page];
"""


# A DOM click that behaves like a person's: only sent when a hit test at the thumbnail's
# centre lands on it (an overlay on top blocks it, as it blocks a real click). It also
# returns the thumbnail's URL, and skips thumbnails resolved earlier: one round trip.
_SCRIPT_CLICK_JS = """
const [el, skipSrcs] = arguments;
el.scrollIntoView({block: "center"});
const src = el.currentSrc || el.src || el.getAttribute("src") || "";
if (src && skipSrcs.includes(src)) return [src, "known"];
const r = el.getBoundingClientRect();
if (r.width === 0 || r.height === 0) return [src, "hidden"];
const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
if (!hit || !(hit === el || el.contains(hit))) return [src, "covered"];
el.click();
return [src, "clicked"];
"""


def _click_thumbnail(
    driver: WebDriver,
    engine: EngineConfig,
    thumb: WebElement,
    skip_srcs: Collection[str],
    timeout_s: float,
    throttle: Throttle,
) -> str | None:
    """Click a thumbnail (natively or by script, as configured); its URL, or None when it
    was resolved under an earlier query (not clicked). Raises _NotClickable on timeout."""
    if engine.click == "script":
        skip = list(skip_srcs)
        throttle.pace()
        outcome: list[str] = []

        def clicked(d: WebDriver) -> bool:
            outcome[:] = d.execute_script(_SCRIPT_CLICK_JS, thumb, skip)
            return outcome[1] in ("clicked", "known")

        try:
            _wait(driver, timeout_s).until(clicked)
        except TimeoutException:
            raise _NotClickable() from None
        return None if outcome[1] == "known" else outcome[0]
    thumb_url = driver.execute_script(_PREPARE_JS, thumb)
    if thumb_url in skip_srcs:
        return None
    throttle.pace()
    try:
        _wait(driver, timeout_s).until(lambda _d: _try_click(thumb))
    except TimeoutException:
        raise _NotClickable() from None
    return thumb_url


def _await_panel(
    driver: WebDriver, engine: EngineConfig, previous: str | None, timeout_s: float
) -> tuple[str, str | None]:
    """Wait until the panel shows a new full-size URL; (URL, source page URL).

    Raises TimeoutException when it never does (the caller decides what that means)."""
    deadline = time.monotonic() + timeout_s
    ignore = [previous] if previous else []
    while (left := deadline - time.monotonic()) > 0:
        found = driver.execute_async_script(
            _PANEL_WAIT_JS, engine.full_image, engine.full_url_attribute, engine.source_link,
            ignore, engine.full_url_pattern, int(left * 1000),
        )  # fmt: skip
        if found is None:
            break
        value, page = found
        if engine.is_full_size(value):
            return value, page
        ignore.append(value)  # e.g. the thumbnail shown first: wait for the next change
    raise TimeoutException()


class _NotClickable(Exception):
    """A thumbnail stayed covered or hidden for the whole timeout."""


def _load_more(
    driver: WebDriver, engine: EngineConfig, count: int, timeout_s: float, throttle: Throttle
) -> bool:
    """Scroll to the bottom (and press "more" if shown) until more thumbnails appear.

    False at the end of the results (end marker shown, or nothing new within the timeout).
    """

    def end_shown(d: WebDriver) -> bool:
        return bool(engine.end_marker and d.find_elements(By.CSS_SELECTOR, engine.end_marker))

    if end_shown(driver):
        return False
    throttle.pace()
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


def open_search(
    driver: WebDriver,
    engine: EngineConfig,
    base_url: str | None,
    query: str,
    timeout_s: float,
    throttle: Throttle | None = None,
) -> str:
    """Load the results page for `query`, pass the consent dialog, wait for the grid."""
    url = engine.search_url(base_url, query)
    (throttle or Throttle(0)).pace()
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
    _check_page(driver, engine, url)
    _accept_consent(driver, engine, timeout_s)
    _wait_for_results(driver, engine, url, timeout_s)
    return url


def scrape_query(
    driver: WebDriver,
    engine: EngineConfig,
    base_url: str | None,
    label: str,
    query: str,
    limit: int,
    timeout_s: float,
    run_date: str,
    *,
    exclude: Collection[str] = (),
    known: dict[str, str] | None = None,
    on_row: Callable[[ManifestRow], None] | None = None,
    skip: int = 0,
    throttle: Throttle | None = None,
) -> list[ManifestRow]:
    """Up to `limit` new full-size URLs for one query, in result order.

    `exclude`: full-size URLs already collected (skipped, not counted). `known`: a cache
    thumbnail URL -> full-size URL shared across queries, so a thumbnail already resolved
    under another phrasing is not clicked again. `skip`: results (by rank) already handled
    by an earlier, interrupted run; they are passed over without a click.
    """
    throttle = throttle or Throttle(engine.delay_s)
    driver.set_script_timeout(timeout_s + 10)
    url = open_search(driver, engine, base_url, query, timeout_s, throttle)

    known = {} if known is None else known
    taken = set(exclude)
    rows: list[ManifestRow] = []
    previous: str | None = None
    done = 0
    resolved = 0  # results that gave a full-size URL (new or not)
    while len(rows) < limit:
        thumbs = driver.find_elements(By.CSS_SELECTOR, engine.thumbnail)
        if done >= len(thumbs):
            if not _load_more(driver, engine, done, timeout_s, throttle):
                break
            continue
        for thumb in thumbs[done:]:
            done += 1
            if done <= skip:
                continue
            try:
                if engine.inline:
                    full, source = driver.execute_script(
                        _INLINE_JS, thumb, engine.inline_url_attribute,
                        engine.inline_json_key, engine.inline_source_key,
                    )  # fmt: skip
                    if not engine.is_full_size(full):
                        log.debug("%s %r: result %d has no full-size URL", label, query, done)
                        continue
                    thumb_url = ""
                else:
                    skip_srcs = {t for t, f in known.items() if f in taken}
                    thumb_url = _click_thumbnail(
                        driver, engine, thumb, skip_srcs, timeout_s, throttle
                    )
                    if thumb_url is None:
                        continue
                    full, source = _await_panel(driver, engine, previous, timeout_s)
            except StaleElementReferenceException:
                log.warning("%s %r: result %d vanished from the page; skipped", label, query, done)
                continue
            except _NotClickable:
                if not rows and previous is None:
                    raise ScrapeError(
                        f"{url}: the thumbnail ({engine.thumbnail!r}) never became clickable "
                        f"within {timeout_s:g}s; check {_key(engine, 'thumbnail')}"
                    ) from None
                log.warning("%s %r: result %d not clickable; skipped", label, query, done)
                continue
            except TimeoutException:
                if not rows and previous is None:
                    raise ScrapeError(
                        f"{url}: the side panel never showed a full-size URL: full_image "
                        f"selector {engine.full_image!r} (attribute "
                        f"{engine.full_url_attribute!r}, pattern {engine.full_url_pattern!r}) "
                        f"within {timeout_s:g}s; check {_key(engine, 'full_image')}"
                    ) from None
                log.warning("%s %r: result %d gave no full-size URL; skipped", label, query, done)
                continue
            resolved += 1
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
    if engine.inline and resolved == 0 and done > skip:
        raise ScrapeError(
            f"{url}: none of {done - skip} results had a full-size URL in inline_url_attribute "
            f"{engine.inline_url_attribute!r}"
            + (f" (JSON key {engine.inline_json_key!r})" if engine.inline_json_key else "")
            + f" matching {engine.full_url_pattern!r}; check {_key(engine, 'inline_url_attribute')}"
        )
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
    write_records(rows, Path(path), fieldnames=MANIFEST_COLUMNS)


# All labels --------------------------------------------------------------------------------
@dataclass
class _Plan:
    """What one run still has to do, from the caps and what the manifest already holds."""

    per_label: int
    per_query: int | None
    max_per_run: int | None
    rows: dict[str, list[ManifestRow]]  # per label, in manifest order
    other: list[ManifestRow]  # rows of labels not asked for this time: kept, untouched

    def total(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def label_left(self, label: str) -> int:
        left = self.per_label - len(self.rows[label])
        if self.max_per_run is not None:
            left = min(left, self.max_per_run - self.total())
        return max(0, left)

    def from_query(self, label: str, query: str, engine: str) -> list[ManifestRow]:
        return [r for r in self.rows[label] if r.query == query and r.engine == engine]

    def ordered(self) -> list[ManifestRow]:
        return [row for rows in self.rows.values() for row in rows] + self.other


def _shares(per_label: int, n: int, per_query: int | None) -> list[int]:
    """An even first-pass split of a label's quota over its queries (earlier ones first)."""
    shares = [per_label // n + (1 if i < per_label % n else 0) for i in range(n)]
    return [min(s, per_query) for s in shares] if per_query else shares


def _load_previous(out_csv: Path, labels: Collection[str], run_date: str) -> _Plan:
    rows: dict[str, list[ManifestRow]] = {label: [] for label in labels}
    other: list[ManifestRow] = []
    if out_csv.exists():
        dropped = 0
        for row in read_manifest(out_csv):
            if row.run_date != run_date:
                dropped += 1
            elif row.label in rows:
                rows[row.label].append(row)
            else:
                other.append(row)
        if dropped:
            log.warning("%s: dropped %d rows of another run date", out_csv, dropped)
    return _Plan(0, None, None, rows, other)


@dataclass
class _Runner:
    """One scrape run: a browser started only when some query still has work."""

    engine: EngineConfig
    base_url: str | None
    run_date: str
    out_csv: Path
    chromium: Path
    chromedriver: Path
    timeout_s: float
    throttle: Throttle
    plan: _Plan
    driver: WebDriver | None = None

    def close(self) -> None:
        if self.driver is not None:
            self.driver.quit()
            self.driver = None

    def label(self, label: str, queries: list[str], advance: Callable[[str], None]) -> None:
        plan = self.plan
        seen = {r.image_url for r in plan.rows[label]}
        known: dict[str, str] = {}
        exhausted: set[str] = set()

        def on_row(row: ManifestRow) -> None:
            plan.rows[label].append(row)
            seen.add(row.image_url)
            advance(f"{label}: {row.query}")

        def run(query: str, cap: int | None) -> None:
            mine = plan.from_query(label, query, self.engine.name)
            limit = plan.label_left(label)
            if cap is not None:
                limit = min(limit, cap - len(mine))
            if limit <= 0:
                return
            if self.driver is None:
                self.driver = make_driver(self.chromium, self.chromedriver)
            got = scrape_query(
                self.driver, self.engine, self.base_url, label, query, limit, self.timeout_s,
                self.run_date, exclude=seen, known=known, on_row=on_row,
                skip=max((r.rank for r in mine), default=0), throttle=self.throttle,
            )  # fmt: skip
            if len(got) < limit:
                exhausted.add(query)
            write_manifest(self.out_csv, plan.ordered())

        shares = _shares(plan.per_label, len(queries), plan.per_query)
        for query, share in zip(queries, shares, strict=True):
            run(query, share)
        # Second pass: queries that still have results fill what the others could not.
        for query in queries:
            if query not in exhausted:
                run(query, plan.per_query)
        have = len(plan.rows[label])
        if have < plan.per_label:
            capped = plan.max_per_run is not None and plan.total() >= plan.max_per_run
            why = f"the run cap max_per_run={plan.max_per_run}" if capped else "results"
            log.warning("%s: %d of %d URLs (ran out of %s)", label, have, plan.per_label, why)


def scrape(
    labels_to_queries: dict[str, list[str]],
    engine: str | EngineConfig,
    base_url: str | None,
    per_label: int,
    run_date: str,
    out_csv: Path,
    chromium: Path,
    chromedriver: Path,
    timeout_s: float = 20,
    progress: bool = True,
    *,
    per_query: int | None = None,
    max_per_run: int | None = None,
    delay_s: float | None = None,
    engines: Mapping[str, Any] | None = None,
) -> list[ManifestRow]:
    """Scrape every label's queries into the manifest CSV; resumable per (label, query).

    Caps: `per_label` URLs per label, at most `per_query` from one query, at most
    `max_per_run` in the whole manifest. A label's quota is first split evenly over its
    queries (so every phrasing contributes); queries that still have results then fill
    what the others could not. `delay_s` (default: the engine's own) paces page loads and
    clicks. Rows already in `out_csv` for this run date are kept and count toward the caps;
    a (label, query) that has rows is resumed after its last rank without re-clicking
    them. The manifest is rewritten (atomically) after every query and when the run stops
    for any reason, so an interruption loses at most the row being clicked.
    """
    cfg = engine if isinstance(engine, EngineConfig) else get_engine(engine, engines)
    cfg.search_url(base_url, "probe")  # fails early when a needed base URL is missing
    for name, value in (("per_label", per_label), ("per_query", per_query),
                        ("max_per_run", max_per_run)):  # fmt: skip
        if value is not None and value < 1:
            raise ScrapeError(f"{name} must be >= 1, got {value}")
    empty = [label for label, queries in labels_to_queries.items() if not queries]
    if empty:
        raise ScrapeError(f"no search queries for labels {empty}")
    throttle = Throttle(cfg.delay_s if delay_s is None else delay_s)

    out_csv = Path(out_csv)
    plan = _load_previous(out_csv, list(labels_to_queries), run_date)
    plan.per_label, plan.per_query, plan.max_per_run = per_label, per_query, max_per_run
    if plan.total():
        log.info("resuming %s: %d rows already collected", out_csv, plan.total())

    runner = _Runner(cfg, base_url, run_date, out_csv, chromium, chromedriver, timeout_s,
                     throttle, plan)  # fmt: skip
    target = per_label * len(labels_to_queries)
    if max_per_run is not None:
        target = min(target, max_per_run)
    try:
        with progress_bar(
            "scrape", target, enabled=progress, completed=min(plan.total(), target)
        ) as advance:
            for label, queries in labels_to_queries.items():
                runner.label(label, list(dict.fromkeys(queries)), advance)
    finally:
        runner.close()
        if out_csv.exists() or plan.total() or plan.other:
            write_manifest(out_csv, plan.ordered())
    return plan.ordered()
