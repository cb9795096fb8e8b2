"""POST /ingest: the contract edge devices send their window rows by, and the live counts.

Body: `{"windows": [{camera_id, window_start (ISO-8601 with a UTC offset), window_seconds,
label, count, mean_confidence, model_version, observations, distinct_tracks}, ...]}` with
`Authorization: Bearer <EMOTIONOPS_INGEST_TOKEN>`. Only aggregate counts travel: the model
refuses unknown fields, so nothing else (a frame, a crop, an embedding) can ride along.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, select

from emotionops.errors import EmotionOpsError


class IngestRejected(EmotionOpsError):
    def __init__(self, status: int, code: str, message: str, errors: list | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors or []


class WindowIn(BaseModel):
    """One window row as `edge.report.EmotionWindow` carries it."""

    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(min_length=1, max_length=64)
    window_start: AwareDatetime
    window_seconds: float = Field(gt=0, le=86_400)
    label: str = Field(min_length=1, max_length=32)
    count: int = Field(ge=0)
    mean_confidence: float | None = Field(None, ge=0, le=1)
    model_version: str | None = Field(None, max_length=16)
    observations: int = Field(0, ge=0)
    distinct_tracks: int = Field(0, ge=0)

    def row(self) -> dict[str, Any]:
        return {**self.model_dump(), "window_start": self.window_start.astimezone(UTC)}


def check_token(header: str | None, expected: str | None) -> None:
    """401 unless `Authorization: Bearer <expected>`; compared in constant time. No token
    configured (local mode only: production refuses to start without one) lets any request
    in, as the edge sinks' contract says (they then send no header)."""
    if expected is None:
        return
    scheme, _, token = (header or "").partition(" ")
    if not header or scheme.lower() != "bearer" or not token.strip():
        raise IngestRejected(401, "missing_token", "send Authorization: Bearer <ingest token>")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise IngestRejected(401, "bad_token", "the ingest token is not valid")


def parse_windows(payload: Any, max_windows: int) -> list[dict[str, Any]]:
    """Checked rows, or a 422 naming every bad row and field (`windows[3].count: ...`)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("windows"), list):
        raise IngestRejected(422, "bad_body", 'the body must be {"windows": [ ... ]}')
    extra = sorted(set(payload) - {"windows"})
    if extra:
        raise IngestRejected(422, "bad_body", f"unknown top-level keys {extra}")
    items = payload["windows"]
    if len(items) > max_windows:
        raise IngestRejected(
            413,
            "too_many_windows",
            f"{len(items)} windows in one request; the limit is {max_windows} "
            "(api.max_ingest_windows): send them in batches",
        )
    rows, errors = [], []
    for i, item in enumerate(items):
        try:
            rows.append(WindowIn.model_validate(item).row())
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                errors.append({"row": i, "field": where or None, "message": err["msg"]})
    if errors:
        summary = "; ".join(
            f"windows[{e['row']}]{'.' + e['field'] if e['field'] else ''}: {e['message']}"
            for e in errors[:10]
        )
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise IngestRejected(422, "bad_rows", f"nothing stored: {summary}{more}", errors)
    from emotionops.warehouse.schema import UNKNOWN_MODEL_VERSION

    columns = warehouse_key()
    keys = [
        tuple((r[c] or UNKNOWN_MODEL_VERSION) if c == "model_version" else r[c] for c in columns)
        for r in rows
    ]  # as the loader stores them: no version and "" are one key
    if len(set(keys)) != len(keys):
        seen: dict = {}
        dup = next(i for i, k in enumerate(keys) if seen.setdefault(k, i) != i)
        raise IngestRejected(
            422,
            "duplicate_rows",
            f"nothing stored: windows[{dup}] repeats the key ({', '.join(columns)}) of "
            f"windows[{seen[keys[dup]]}]",
        )
    return rows


def warehouse_key() -> list[str]:
    """The row fields that make up emotion_event's primary key (read from the schema, so a
    key change there is followed here)."""
    from emotionops.warehouse.schema import emotion_event

    field = {"face_count": "count"}
    return [field.get(c.name, c.name) for c in emotion_event.primary_key.columns]


def live_counts(engine: Engine, camera_id: str, n_windows: int) -> dict[str, Any]:
    """The camera's latest window (counts per label, summed over model versions) and the
    `n_windows` most recent windows, newest first, from warehouse.emotion_event."""
    from emotionops.warehouse.schema import emotion_event as ev

    with engine.connect() as conn:
        starts = list(
            conn.execute(
                select(ev.c.window_start)
                .where(ev.c.camera_id == camera_id)
                .distinct()
                .order_by(ev.c.window_start.desc())
                .limit(n_windows)
            ).scalars()
        )
        rows = []
        if starts:
            rows = conn.execute(
                select(
                    ev.c.window_start,
                    ev.c.window_seconds,
                    ev.c.label,
                    ev.c.face_count,
                    ev.c.model_version,
                )
                .where(ev.c.camera_id == camera_id, ev.c.window_start >= min(starts))
                .order_by(ev.c.window_start.desc(), ev.c.label)
            ).all()
    windows: dict[datetime, dict[str, Any]] = {}
    for start, seconds, label, count, version in rows:
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        w = windows.setdefault(
            start, {"window_seconds": float(seconds), "counts": {}, "model_versions": set()}
        )
        w["counts"][label] = w["counts"].get(label, 0) + int(count)
        if version is not None:
            w["model_versions"].add(version)
    recent = [
        {
            "window_start": start.isoformat(),
            "window_end": (start + timedelta(seconds=w["window_seconds"])).isoformat(),
            "window_seconds": w["window_seconds"],
            "counts": dict(sorted(w["counts"].items())),
            "total": sum(w["counts"].values()),
            "model_versions": sorted(w["model_versions"]),
        }
        for start, w in sorted(windows.items(), reverse=True)
    ]
    return {"camera_id": camera_id, "current": recent[0] if recent else None, "recent": recent}
