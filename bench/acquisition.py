"""Data-acquisition benchmark (issue 3): downloader vs a naive loop, scraping, cleanup.

Prints one table. Targets are checked here, never in unit tests: machines are noisy, so
every speed figure is a ratio or a rate measured side by side in the same run.

    .venv/bin/python bench/acquisition.py [--quick] [--only download,scrape,cleanup]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

PARTS = {
    "download": "(a) 500 images, 50-200 ms latency: our downloader vs a sequential loop",
    "scrape": "(b) 200 full-size URLs from the local search stand-in",
    "cleanup": "(c) image cleanup throughput and cartoon-heuristic precision",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    # The drawing generator (tests/_drawings.py) is test and bench code, not the product's.
    sys.path.insert(1, str(Path(__file__).parents[1] / "tests"))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="EmotionOps data acquisition" + (" (quick)" if args.quick else ""))
    for column in ("part", "measure", "value", "target / note"):
        table.add_column(column)
    for part in [p.strip() for p in args.only.split(",") if p.strip()]:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
        print(f"running {PARTS[part]} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        rows = importlib.import_module(f"_{part}").run(quick=args.quick)
        for i, (measure, value, note) in enumerate(rows):
            table.add_row(part if i == 0 else "", measure, value, note)
        table.add_row("", "(bench wall time)", f"{time.perf_counter() - started:.1f} s", "")
        table.add_section()
    Console(width=140).print(table)  # wide enough when piped to a log
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
