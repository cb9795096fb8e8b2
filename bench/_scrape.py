"""Bench part (b): scrape full-size URLs from the local search stand-in with real Chromium.

4 labels x 50 generated images (quick: 4 x 10), two phrasings per label as in params.yaml,
the stand-in's default obstacles (consent overlay, infinite scroll, a side panel that swaps
in the full-size URL after 50-150 ms). Target: 200 URLs in under 60 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

LABELS = ("happy", "sad", "surprise", "neutral")
QUERIES = {
    "happy": ["happy face", "smiling person portrait"],
    "sad": ["sad face", "unhappy person portrait"],
    "surprise": ["surprised face", "astonished person portrait"],
    "neutral": ["neutral face", "expressionless person portrait"],
}
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    from emotionops.acquire.scrape.driver import make_driver, scrape
    from emotionops.acquire.scrape.engines import get_engine
    from emotionops.acquire.scrape.standin import SearchStandin
    from emotionops.acquire.scrape.synthetic import generate_labelled_set

    per_label = 10 if quick else 50
    total = per_label * len(LABELS)
    engine = get_engine("local")
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        root = generate_labelled_set(Path(tmp) / "images", LABELS, per_label, seed=3)
        started = time.perf_counter()
        make_driver(CHROMIUM, CHROMEDRIVER).quit()
        browser_s = time.perf_counter() - started
        with SearchStandin(root) as standin:
            started = time.perf_counter()
            rows = scrape(
                QUERIES, "local", standin.url, per_label, "2026-11-22",
                Path(tmp) / "urls.csv", CHROMIUM, CHROMEDRIVER, progress=False,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            clicks = standin.hits["api/item"]
            low, high = standin.panel_delay_ms
    urls = {r.image_url for r in rows}
    full = sum(engine.is_full_size(u) and "/image/" in u for u in urls)
    target = (
        "smoke run (full: 200 in < 60 s)"
        if quick
        else ("< 60 s" + ("" if seconds < 60 else "  MISSED"))
    )
    floor = clicks * (low + high) / 2000
    return [
        (f"scrape {total} full-size URLs ({len(LABELS)} labels x {per_label})",
         f"{seconds:.1f} s", target),
        ("throughput", f"{len(rows) / seconds:.2f} URLs/s", "incl. browser start"),
        ("unique full-size URLs", f"{full}/{total}", "must equal"),
        ("thumbnails clicked", str(clicks),
         "= URLs: none clicked twice" if clicks == len(rows)
         else f"{clicks - len(rows)} clicks gave no new URL"),
        ("of which: stand-in's simulated panel latency", f"~{floor:.1f} s",
         f"{low}-{high} ms per click, the obstacle itself"),
        ("browser start + quit (alone)", f"{browser_s:.1f} s", "part of the time above"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
