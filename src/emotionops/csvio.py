"""CSV tables written atomically: a crash never leaves a half-written manifest or record file."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


def write_records(records: Iterable[Any], path: Path) -> Path:
    """Write dataclass records as CSV atomically (write a temp file, then rename)."""
    rows = [asdict(r) if is_dataclass(r) else dict(r) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    tmp.replace(path)
    return path


def read_records(path: Path) -> list[dict[str, str]]:
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))
