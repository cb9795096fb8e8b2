"""Files written atomically, and CSV record tables.

Every file the platform writes (manifests, records, content-addressed images, JSON state,
videos) goes through `atomic_path`: a temporary file in the same folder, flushed to disk and
renamed over the target only when writing succeeded. A crash or a retry therefore never
leaves a half-written file behind, and concurrent writers (threads, processes) never share
a temporary name.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import IO, Any

from emotionops.errors import EmotionOpsError


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; on success it replaces `path`, on an
    error it is removed. `suffix` lets writers that pick a format by extension (OpenCV's
    VideoWriter) see the right one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as fh:  # durable before it becomes visible under its real name
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `path`; on success it replaces `path` as a whole
    (no file of an earlier version stays behind), on an error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield staging
        shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open(path, mode)` whose content appears at `path` only when the block succeeds."""
    with atomic_path(path) as tmp, tmp.open(mode, **kwargs) as fh:
        yield fh


def atomic_write(path: Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write `data` (bytes, or text in `encoding`) to `path` atomically."""
    if isinstance(data, str):
        data = data.encode(encoding)
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_records(
    records: Iterable[Any], path: Path, fieldnames: Iterable[str] | None = None
) -> Path:
    """Write dataclass or mapping records as CSV atomically. With no records the file is
    empty unless `fieldnames` give its header."""
    rows = [asdict(r) if is_dataclass(r) else dict(r) for r in records]
    columns = list(fieldnames) if fieldnames is not None else list(rows[0]) if rows else []
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        if columns:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return Path(path)


class RecordsError(EmotionOpsError):
    """A CSV table that cannot be read (not UTF-8, NUL bytes, a field over the size limit)."""


def read_records(path: Path, columns: Iterable[str] = ()) -> list[dict[str, str]]:
    """Rows of a CSV table written by `write_records`, which must have `columns`. A file a
    person broke (not UTF-8, NUL bytes, huge fields, columns missing) is a RecordsError that
    names the file and line, never a traceback."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        try:
            rows = list(reader)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise RecordsError(
                f"{path}:{reader.line_num + 1}: not a readable CSV table ({exc})"
            ) from None
    missing = [c for c in columns if c not in (reader.fieldnames or ())]
    if missing:
        raise RecordsError(
            f"{path}: missing column(s) {missing} (has {list(reader.fieldnames or ())}); "
            "not a file this stage wrote: move it away and re-run the stage that makes it"
        )
    return rows
