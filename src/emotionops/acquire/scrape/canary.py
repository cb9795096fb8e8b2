"""Canary: does an engine still yield full-size image URLs for a query?

WHY: image-search markup changes without notice, and a scraper that silently returns
nothing poisons every later stage. A daily canary scrapes a handful of results and fails
loudly, with one line that says what broke: the service, a named selector, or the yield.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotionops.acquire.scrape.driver import ScrapeError, Throttle, make_driver, scrape_query
from emotionops.acquire.scrape.engines import EngineConfig, get_engine


@dataclass(frozen=True)
class CanaryResult:
    """The verdict of one canary run; `line()` is what the CLI and the DAG log show."""

    engine: str
    query: str
    needed: int
    found: int
    seconds: float
    reason: str = ""
    urls: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return not self.reason

    def line(self) -> str:
        head = f"canary {self.engine!r} query {self.query!r}"
        if self.ok:
            return (
                f"{head}: OK, {self.found} full-size URLs (needed {self.needed}) "
                f"in {self.seconds:.1f}s"
            )
        return f"{head}: FAILED: {self.reason}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_canary(
    engine: str | EngineConfig,
    base_url: str | None,
    query: str,
    min_results: int,
    chromium: Path,
    chromedriver: Path,
    timeout_s: float = 20,
    *,
    engines: Mapping[str, Any] | None = None,
    delay_s: float | None = None,
) -> CanaryResult:
    """Scrape up to `min_results` full-size URLs for `query`; healthy when all were found.

    Configuration mistakes (unknown engine, missing base URL) raise EngineError: they are
    the caller's to fix, not an engine outage. Everything the engine does wrong becomes a
    failed result with a one-line reason.
    """
    cfg = engine if isinstance(engine, EngineConfig) else get_engine(engine, engines)
    cfg.search_url(base_url, query)
    if min_results < 1:
        raise ScrapeError(f"min_results must be >= 1, got {min_results}")
    started = time.monotonic()
    rows = []
    reason = ""
    try:
        driver = make_driver(chromium, chromedriver)
        try:
            throttle = Throttle(cfg.delay_s if delay_s is None else delay_s)
            rows = scrape_query(
                driver, cfg, base_url, "canary", query, min_results, timeout_s, "canary",
                throttle=throttle,
            )  # fmt: skip
        finally:
            driver.quit()
    except ScrapeError as exc:
        reason = _one_line(str(exc))
    if not reason and len(rows) < min_results:
        reason = (
            f"too few results: {len(rows)} full-size URLs, needed {min_results} (the results "
            "ran out; try a broader query or check the engine's end_marker/more_results)"
        )
    return CanaryResult(
        cfg.name, query, min_results, len(rows), time.monotonic() - started, reason,
        tuple(r.image_url for r in rows),
    )  # fmt: skip
