"""`warehouse report`: a short text summary of what the warehouse holds.

The queries are SQLAlchemy Core selects (`report_queries`), so the same ones run on SQLite,
PostgreSQL and Oracle; tests compile each with the Oracle dialect.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Engine, Select, func, select
from sqlalchemy.exc import SQLAlchemyError

from emotionops.warehouse.db import WarehouseError, first_line
from emotionops.warehouse.loaders import table_counts
from emotionops.warehouse.migrations import LATEST, current_version
from emotionops.warehouse.schema import (
    dataset_version,
    emotion_event,
    image,
    image_url,
    model_promotion,
    training_run,
)

RECENT = 5  # rows shown per "latest ..." section


def report_queries(recent: int = RECENT) -> dict[str, Select[Any]]:
    """Every query the report runs, by section."""
    n = func.count().label("n")
    return {
        "urls": select(image_url.c.run_date, image_url.c.label, n)
        .group_by(image_url.c.run_date, image_url.c.label)
        .order_by(image_url.c.run_date.desc(), image_url.c.label),
        "image_status": select(image.c.status, n).group_by(image.c.status).order_by(image.c.status),
        "reject_reasons": select(image.c.reason, n)
        .where(image.c.status == "rejected")
        .group_by(image.c.reason),
        "dataset": select(dataset_version)
        .order_by(dataset_version.c.run_date.desc().nulls_last(), dataset_version.c.version_id)
        .limit(1),
        "runs": select(
            training_run.c.run_id,
            training_run.c.run_date,
            training_run.c.model_name,
            training_run.c.model_version,
            training_run.c.test_accuracy,
            training_run.c.promoted,
        )
        .order_by(
            training_run.c.started_at.desc().nulls_last(),
            training_run.c.run_date.desc().nulls_last(),
            training_run.c.run_id,
        )
        .limit(recent),
        "promotions": select(
            model_promotion.c.decided_at,
            model_promotion.c.model_name,
            model_promotion.c.model_version,
            model_promotion.c.alias,
            model_promotion.c.decision,
            model_promotion.c.previous_version,
            model_promotion.c.reason,
        )
        .order_by(model_promotion.c.decided_at.desc(), model_promotion.c.model_version.desc())
        .limit(recent),
        "cameras": select(
            emotion_event.c.camera_id,
            func.count().label("windows"),
            func.sum(emotion_event.c.face_count).label("faces"),
            func.min(emotion_event.c.window_start).label("first"),
            func.max(emotion_event.c.window_start).label("last"),
        )
        .group_by(emotion_event.c.camera_id)
        .order_by(emotion_event.c.camera_id),
        "camera_labels": select(
            emotion_event.c.camera_id,
            emotion_event.c.label,
            func.sum(emotion_event.c.face_count).label("faces"),
        )
        .group_by(emotion_event.c.camera_id, emotion_event.c.label)
        .order_by(emotion_event.c.camera_id, emotion_event.c.label),
    }


def reason_kind(reason: str | None) -> str:
    """'too small: 40x40 < 64' -> 'too small': group rejections by their rule."""
    return (reason or "no reason recorded").split(":", 1)[0].strip()


def build_report(engine: Engine, recent: int = RECENT) -> dict[str, Any]:
    """The report's data (plain Python values)."""
    version = current_version(engine)
    if version < LATEST:
        raise WarehouseError(
            f"the warehouse schema is at version {version}, this code needs {LATEST}: run "
            "`emotionops warehouse init`"
        )
    queries = report_queries(recent)
    try:
        with engine.connect() as conn:
            rows = {name: conn.execute(q).all() for name, q in queries.items()}
    except SQLAlchemyError as exc:
        raise WarehouseError(f"reading the warehouse failed: {first_line(exc)}") from exc
    reasons: Counter[str] = Counter()
    for reason, count in rows["reject_reasons"]:
        reasons[reason_kind(reason)] += count
    dataset = rows["dataset"][0]._asdict() if rows["dataset"] else None
    by_camera_label: dict[str, dict[str, int]] = {}
    for camera, label, faces in rows["camera_labels"]:
        by_camera_label.setdefault(camera, {})[label] = int(faces or 0)
    return {
        "schema_version": version,
        "counts": table_counts(engine),
        "urls": [(r.run_date, r.label, r.n) for r in rows["urls"]],
        "image_status": {r.status: r.n for r in rows["image_status"]},
        "reject_reasons": reasons.most_common(recent),
        "dataset": dataset,
        "runs": [r._asdict() for r in rows["runs"]],
        "promotions": [r._asdict() for r in rows["promotions"]],
        "cameras": [
            {**r._asdict(), "labels": by_camera_label.get(r.camera_id, {})} for r in rows["cameras"]
        ],
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_report(data: dict[str, Any], where: str = "", max_dates: int = 3) -> str:
    """The report as a few short, aligned text sections."""
    out = [f"EmotionOps warehouse {where}".rstrip() + f" (schema v{data['schema_version']})"]
    out.append("rows:  " + "  ".join(f"{k} {v}" for k, v in data["counts"].items()))

    dates = sorted({d for d, _, _ in data["urls"]}, reverse=True)
    out.append("URLs per run date and label:")
    if not dates:
        out.append("  none")
    for date in dates[:max_dates]:
        per_label = ", ".join(f"{lab} {n}" for d, lab, n in data["urls"] if d == date)
        out.append(f"  {date}: {per_label}")
    if len(dates) > max_dates:
        out.append(f"  ... and {len(dates) - max_dates} earlier run dates")

    status = data["image_status"]
    out.append(
        f"images: accepted {status.get('accepted', 0)}, rejected {status.get('rejected', 0)}"
    )
    for reason, count in data["reject_reasons"]:
        out.append(f"  rejected {count:>5}  {reason}")

    ds = data["dataset"]
    out.append(
        "latest dataset version: "
        + (
            f"{ds['version_id'][:16]} ({ds['n_images']} images: train {ds['n_train']}, "
            f"val {ds['n_val']}, test {ds['n_test']}; {ds['run_date'] or 'no date'})"
            if ds
            else "none"
        )
    )

    out.append("latest training runs:")
    if not data["runs"]:
        out.append("  none")
    for r in data["runs"]:
        version = f"v{r['model_version']}" if r["model_version"] else "unregistered"
        flag = " champion" if r["promoted"] else ""
        out.append(
            f"  {r['run_date'] or '-':10}  {r['run_id'][:12]}  {r['model_name']} {version}"
            f"  test accuracy {_pct(r['test_accuracy'])}{flag}"
        )

    out.append("recent promotions:")
    if not data["promotions"]:
        out.append("  none")
    for p in data["promotions"]:
        prev = f" (was v{p['previous_version']})" if p["previous_version"] else ""
        out.append(
            f"  {p['decided_at']:%Y-%m-%d %H:%M}  {p['model_name']} v{p['model_version']} "
            f"-> @{p['alias']}{prev}  {p['decision']}: {p['reason'] or ''}"
        )

    out.append("emotion events per camera:")
    if not data["cameras"]:
        out.append("  none")
    for c in data["cameras"]:
        labels = ", ".join(f"{k} {v}" for k, v in c["labels"].items())
        out.append(
            f"  {c['camera_id']}: {c['windows']} windows, {c['faces'] or 0} faces "
            f"({labels}); {c['first']:%Y-%m-%d %H:%M} .. {c['last']:%Y-%m-%d %H:%M} UTC"
        )
    return "\n".join(out)
