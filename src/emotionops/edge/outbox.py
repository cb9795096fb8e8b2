"""The edge's outbox: window rows wait in a local SQLite file until their sink confirmed them.

Why: a database or API that is down (or a process that dies) must not cost aggregates. Each
closed window is committed to disk first (WAL journal, synchronous=FULL: a committed row
survives a kill and a power cut); a background sender drains the file in order, in batches,
and deletes rows only after the sink confirmed them. Delivery is at-least-once (a crash
between the sink's commit and our delete re-sends that batch); every sink is an upsert on
the window's key, so a re-delivery changes nothing and end to end each window is stored
exactly once. stdlib sqlite3 only: a local queue needs no ORM.

The key is (camera_id, window_start, label, model_version), the warehouse's. Enqueueing a
key again (a retried call, or the same source processed again) keeps ONE row:
- identical values: nothing changes (the row keeps its place and revision);
- different values: the later ones win. The aggregator only ever emits a window's absolute
  totals (never increments) once the window closed, so a second emission of a key is a
  recount of the same window (a file re-processed, a longer run over it) and the latest is
  the truth. The warehouse's upsert applies the same rule, so the outcome is the same
  whether the first emission had already been sent or not. A row changed while its batch
  was in flight is not deleted by that batch's confirmation (the revision differs): it is
  sent again with the new values. The one case this rule gets wrong is two processes
  emitting the same camera_id at once, a configuration error.
Rows are checked when enqueued (types, ranges, the warehouse's column lengths), so a bad
row fails its producer at once instead of blocking the queue at the sink.

A corrupt file is never emptied or overwritten: it is moved aside (with its -wal/-shm) and
OutboxCorrupt names where it is; the next open starts a new, empty outbox.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from emotionops.edge.report import EmotionWindow, as_utc
from emotionops.errors import EmotionOpsError

if TYPE_CHECKING:
    from emotionops.params import OutboxParams

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: The warehouse's column lengths (emotion_event; a test keeps them equal).
MAX_LENGTHS = {"camera_id": 64, "label": 32, "model_version": 16}
#: A row's fields: exactly the window's (the privacy contract lives in `EmotionWindow`).
ROW_FIELDS = tuple(f.name for f in dataclasses.fields(EmotionWindow))
_VALUE_COLUMNS = (
    "window_seconds",
    "count",
    "mean_confidence",
    "observations",
    "distinct_tracks",
)
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,      -- send order: first enqueue
    revision INTEGER NOT NULL DEFAULT 0,        -- +1 whenever the values change
    camera_id TEXT NOT NULL,
    window_start TEXT NOT NULL,                 -- ISO-8601 UTC, fixed width
    label TEXT NOT NULL,
    model_version TEXT NOT NULL,                -- '' when unknown (NULLs would not dedupe)
    window_seconds REAL NOT NULL,
    count INTEGER NOT NULL,
    mean_confidence REAL,
    observations INTEGER NOT NULL,
    distinct_tracks INTEGER NOT NULL,
    enqueued_at TEXT NOT NULL,
    UNIQUE (camera_id, window_start, label, model_version)
);
"""

_UPSERT = f"""
INSERT INTO outbox (camera_id, window_start, label, model_version, window_seconds, count,
                    mean_confidence, observations, distinct_tracks, enqueued_at)
VALUES (:camera_id, :window_start, :label, :model_version, :window_seconds, :count,
        :mean_confidence, :observations, :distinct_tracks, :enqueued_at)
ON CONFLICT (camera_id, window_start, label, model_version) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in _VALUE_COLUMNS)},
    revision = revision + 1, enqueued_at = excluded.enqueued_at
WHERE {" OR ".join(f"outbox.{c} IS NOT excluded.{c}" for c in _VALUE_COLUMNS)}
"""


class OutboxError(EmotionOpsError):
    """The outbox file cannot be used (unreadable, not an outbox, a newer format...)."""


class InvalidWindow(OutboxError, ValueError):
    """A window row that no sink would accept; refused before it reaches the queue."""


class OutboxCorrupt(OutboxError):
    """The outbox file is damaged; it was moved aside to `kept`, its rows not delivered."""

    def __init__(self, message: str, kept: Path) -> None:
        super().__init__(message)
        self.kept = kept


class SinkError(EmotionOpsError):
    """A sink did not take a batch; its rows stay in the outbox."""


class SinkUnavailable(SinkError):
    """The sink is down or overloaded (connection refused, timeout, 5xx): retry with backoff."""


class SinkRejected(SinkError):
    """The sink refused the batch (bad token, invalid rows, missing schema): a person must fix
    configuration or data; the rows are kept and retried at the longest backoff."""


class Sink(Protocol):
    def send(self, rows: list[dict[str, Any]]) -> None:
        """Store every row (an idempotent upsert on the key) or raise; returning confirms."""


# Rows ---------------------------------------------------------------------------------------


def _text(name: str, value: Any, empty_ok: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidWindow(f"window {name}: {value!r} is not text")
    text = str(value)
    if not text and not empty_ok:
        raise InvalidWindow(f"window {name} is empty")
    if len(text) > MAX_LENGTHS[name]:
        raise InvalidWindow(
            f"window {name} {text[:80]!r} is {len(text)} characters, the warehouse holds "
            f"{MAX_LENGTHS[name]}"
        )
    return text


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidWindow(f"window {name}: {value!r} is not a count (an integer >= 0)")
    return value


def utc_iso(moment: datetime | str) -> str:
    """Canonical ISO-8601 UTC text (fixed width, so text order is time order and one instant
    has one spelling); a naive datetime is UTC already (the pipeline's convention)."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise InvalidWindow(f"window window_start: {moment!r} is not ISO-8601") from None
    if not isinstance(moment, datetime):
        raise InvalidWindow(f"window window_start: {moment!r} is not a date-time")
    return as_utc(moment).isoformat(timespec="microseconds")


def window_row(window: Any) -> dict[str, Any]:
    """An `EmotionWindow` (or a mapping with its fields) as the JSON row every sink takes:
    window_start ISO-8601 UTC text, model_version text or None, no NaN (it is not JSON)."""
    get = window.get if isinstance(window, Mapping) else lambda k: getattr(window, k, None)
    seconds = get("window_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidWindow(f"window window_seconds: {seconds!r} is not a number")
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidWindow(f"window window_seconds: {seconds!r} is not a positive number")
    confidence = get("mean_confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise InvalidWindow(f"window mean_confidence: {confidence!r} is not a number")
        confidence = float(confidence) if math.isfinite(confidence) else None
    version = get("model_version")
    version = None if version is None else _text("model_version", version, empty_ok=True)
    return {
        "camera_id": _text("camera_id", get("camera_id")),
        "window_start": utc_iso(get("window_start")),
        "window_seconds": float(seconds),
        "label": _text("label", get("label")),
        "count": _count("count", get("count")),
        "mean_confidence": confidence,
        "model_version": version or None,
        "observations": _count("observations", get("observations") or 0),
        "distinct_tracks": _count("distinct_tracks", get("distinct_tracks") or 0),
    }


@dataclass(frozen=True)
class Pending:
    """One queued row as read for sending: `seq` and `revision` identify what was sent."""

    seq: int
    revision: int
    row: dict[str, Any]


# The outbox file ----------------------------------------------------------------------------


def default_outbox_path(data_dir: Path) -> Path:
    """Where the edge keeps its outbox: under its data folder, beside the model cache."""
    return Path(data_dir) / "edge-outbox" / "outbox.sqlite3"


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError  # not Operational (locked, unopenable)


class Outbox:
    """A durable, idempotent queue of window rows in one SQLite file.

    Safe to use from several threads of a process (one connection behind a lock) and from
    several processes (SQLite's locking: a restarted edge drains what a dead one left).
    """

    def __init__(
        self, path: Path, params: OutboxParams | None = None, busy_timeout_s: float = 10.0
    ) -> None:
        from emotionops.params import OutboxParams

        self.path = Path(path)
        self.params = params or OutboxParams()
        self._lock = threading.Lock()
        self._listeners: list[threading.Event] = []
        self._conn = self._open(busy_timeout_s)

    # opening ------------------------------------------------------------------------------
    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"cannot create the outbox folder {self.path.parent}: {exc}") from exc
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("outbox %s: journal mode %s, not WAL", self.path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA journal_size_limit=4194304")  # WAL kept to 4 MB
            check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(map(str, check[:3])))
            self._check_schema(conn)
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if _is_corruption(exc):
                kept = self._move_aside()
                raise OutboxCorrupt(
                    f"the edge outbox {self.path} is corrupt ({exc}): moved it aside to {kept} "
                    "(kept, NOT delivered: recover its rows with `sqlite3 <file> .recover`); "
                    "the next start begins a new, empty outbox",
                    kept,
                ) from exc
            raise OutboxError(f"cannot open the edge outbox {self.path}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        tables.discard("sqlite_sequence")
        if tables and "outbox_meta" not in tables:
            raise OutboxError(
                f"{self.path} is an SQLite database but not an edge outbox (tables: "
                f"{', '.join(sorted(tables))}); point the edge at its own file"
            )
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO outbox_meta (name, value) VALUES ('format', ?)",
            (str(FORMAT_VERSION),),
        )
        found = int(
            conn.execute("SELECT value FROM outbox_meta WHERE name = 'format'").fetchone()[0]
        )
        if found > FORMAT_VERSION:
            raise OutboxError(
                f"the edge outbox {self.path} has format {found}, newer than this code "
                f"({FORMAT_VERSION}): upgrade emotionops (the rows are kept)"
            )

    def _move_aside(self) -> Path:
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
        kept = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm", "-journal"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(Path(f"{kept}{suffix}"))
        log.error("edge outbox %s is corrupt: moved aside to %s", self.path, kept)
        return kept

    # queue --------------------------------------------------------------------------------
    def _run(self, what: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                hint = (
                    " (the file is damaged: restart to move it aside)"
                    if _is_corruption(exc)
                    else ""
                )
                raise OutboxError(f"edge outbox {self.path}: {what} failed: {exc}{hint}") from exc

    def enqueue(self, windows: Iterable[Any]) -> int:
        """Commit window rows to disk in one transaction (all or none); returns how many were
        new or changed (an identical repeat counts 0). Raises InvalidWindow before writing."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        rows = []
        for w in windows:
            row = window_row(w)
            rows.append({**row, "model_version": row["model_version"] or "", "enqueued_at": now})
        if not rows:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_UPSERT, rows)
            conn.execute("COMMIT")
            return conn.total_changes - before

        changed = self._run("enqueue", work)
        for event in list(self._listeners):
            event.set()
        return changed

    def pending(self, limit: int) -> list[Pending]:
        """The oldest `limit` rows, in send order."""
        cols = ", ".join(ROW_FIELDS)

        def work(conn: sqlite3.Connection) -> list[Pending]:
            cur = conn.execute(
                f"SELECT seq, revision, {cols} FROM outbox ORDER BY seq LIMIT ?", (limit,)
            )
            out = []
            for seq, revision, *values in cur.fetchall():
                row = dict(zip(ROW_FIELDS, values, strict=True))
                row["model_version"] = row["model_version"] or None
                out.append(Pending(seq, revision, row))
            return out

        return self._run("read", work)

    def confirm(self, sent: Iterable[Pending]) -> int:
        """Delete rows the sink confirmed, unless they changed since they were read."""
        pairs = [(p.seq, p.revision) for p in sent]

        def work(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM outbox WHERE seq = ? AND revision = ?", pairs)
            conn.execute("COMMIT")
            return conn.total_changes - before

        return self._run("confirm", work) if pairs else 0

    def depth(self) -> int:
        """Rows waiting for their sink (a gauge for metrics)."""
        return self._run("count", lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def subscribe(self, event: threading.Event) -> None:
        """`event` is set after every enqueue (wakes an idle sender at once)."""
        self._listeners.append(event)

    def sender(self, sink: Sink, params: OutboxParams | None = None) -> OutboxSender:
        """A sender draining this outbox into `sink` (with this outbox's params by default)."""
        return OutboxSender(self, sink, params or self.params)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_outbox(path: Path, params: OutboxParams | None = None) -> Outbox:
    """The edge loop's entry point: the outbox at `path` (created if missing).

    Raises OutboxCorrupt after moving a damaged file aside (calling again starts afresh)."""
    return Outbox(path, params)


# The sender ---------------------------------------------------------------------------------


def backoff_delay(
    failures: int, base_s: float, cap_s: float, jitter: float, u: float, rejected: bool = False
) -> float:
    """Wait before retry number `failures` (>= 1): base doubled per failure, capped, then cut
    by a random share (`u` in [0, 1) times `jitter`) so many edges do not retry in step. A
    refused batch waits the cap: retrying fast cannot fix a token or a schema."""
    full = cap_s if rejected else min(cap_s, base_s * 2 ** min(max(failures - 1, 0), 60))
    return full * (1 - jitter * u)


@dataclass(frozen=True)
class SenderStats:
    sent: int  # rows confirmed by the sink and deleted
    batches: int
    send_failures: int  # failed attempts, all time
    consecutive_failures: int  # since the last success (0: healthy)
    last_error: str | None  # the latest failure, kept after a recovery (see consecutive)
    last_sent_at: datetime | None
    depth: int  # rows waiting


class OutboxSender:
    """Drains an outbox into a sink from a background thread (`start`, then `stop`).

    In order, `windows_per_send` rows at a time; a failed send is retried after `backoff_delay`;
    rows are deleted only once the sink returned. `stop` keeps sending for up to
    `stop_timeout_s` (what is left stays on disk for the next start).
    """

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        params: OutboxParams | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self.sink = sink
        self.params = params or outbox.params
        self._rand = rand
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._sent = self._batches = self._failures = self._consecutive = 0
        self._last_error: str | None = None
        self._last_sent_at: datetime | None = None
        outbox.subscribe(self._wake)

    # one attempt --------------------------------------------------------------------------
    def send_batch(self) -> int:
        """Send the oldest batch once; returns the rows confirmed (0: nothing waiting).
        Raises what the sink raised; the rows then stay queued."""
        batch = self.outbox.pending(self.params.windows_per_send)
        if not batch:
            return 0
        self.sink.send([dict(p.row) for p in batch])
        self.outbox.confirm(batch)
        with self._changed:
            self._sent += len(batch)
            self._batches += 1
            if self._consecutive:
                log.info("edge sink is back after %d failed sends", self._consecutive)
            self._consecutive = 0
            self._last_sent_at = datetime.now(UTC)
            self._changed.notify_all()
        return len(batch)

    def _failed(self, exc: Exception) -> float:
        rejected = isinstance(exc, SinkRejected)
        with self._changed:
            self._failures += 1
            self._consecutive += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            n = self._consecutive
            self._changed.notify_all()
        p = self.params
        delay = backoff_delay(n, p.backoff_s, p.backoff_max_s, p.jitter, self._rand(), rejected)
        level = logging.ERROR if rejected else logging.WARNING
        log.log(
            level,
            "edge sink %s (failure %d; rows kept, retry in %.1f s): %s",
            "REFUSED the batch, fix the configuration or data" if rejected else "unavailable",
            n,
            delay,
            exc,
        )
        return delay

    # background thread --------------------------------------------------------------------
    def start(self) -> OutboxSender:
        if self._thread is not None:
            raise RuntimeError("the outbox sender is already started")
        self._stop.clear()  # a sender stopped before may start again
        self._thread = threading.Thread(target=self._loop, name="edge-outbox-sender", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                sent = self.send_batch()
            except Exception as exc:  # a sink may raise anything: never kill the thread
                self._stop.wait(self._failed(exc))  # a stop cuts the wait short
                continue
            if not sent:
                self._wake.wait(self.params.idle_poll_s)

    def stop(self, timeout_s: float | None = None) -> int:
        """Stop the thread, sending what is queued for up to `timeout_s` (default
        stop_timeout_s) first; returns the rows left on disk for the next start (-1: the
        outbox could not be read). A send already under way may add send_timeout_s."""
        budget = self.params.stop_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(max(0.0, deadline - time.monotonic()) + self.params.send_timeout_s)
            if thread.is_alive():
                log.warning("edge outbox sender still busy in a send; its rows stay queued")
                return self._depth_or_unknown()
        self.flush(max(0.0, deadline - time.monotonic()))
        return self._depth_or_unknown()

    def flush(self, timeout_s: float) -> int:
        """Send in the calling thread until the outbox is empty or `timeout_s` has passed;
        returns the rows confirmed. Failures back off (within the budget) like the thread."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while time.monotonic() < deadline:
            try:
                sent = self.send_batch()
            except Exception as exc:
                delay = self._failed(exc)
                remaining = deadline - time.monotonic()
                if delay >= remaining:
                    break
                time.sleep(delay)
                continue
            if not sent:
                break
            total += sent
        return total

    def _depth_or_unknown(self) -> int:
        try:
            return self.outbox.depth()
        except OutboxError:
            return -1

    # metrics ------------------------------------------------------------------------------
    def stats(self) -> SenderStats:
        with self._changed:
            counters = (self._sent, self._batches, self._failures, self._consecutive)
            last = (self._last_error, self._last_sent_at)
        return SenderStats(*counters, *last, depth=self._depth_or_unknown())

    def depth(self) -> int:
        return self.outbox.depth()

    def wait_until(self, done: Callable[[SenderStats], bool], timeout_s: float) -> bool:
        """Block until `done(stats)` after some attempt, or `timeout_s`; True if it held."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                if done(self.stats()):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)

    def __enter__(self) -> OutboxSender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
