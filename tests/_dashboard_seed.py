"""A small, fully known warehouse for the dashboard tests: three training runs (two
registered, one champion), promotions, two ingest runs with URL, download and image outcomes,
validation results, stored training images for thumbnails, and emotion windows from two
cameras. Every expected count in the tests follows from the constants here."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2

from _factories import draw_face
from emotionops.warehouse import connect, init_schema, load_emotion_events, load_table
from emotionops.warehouse.schema import (
    class_metric,
    confusion_cell,
    epoch_metric,
    image,
    model_promotion,
    training_run,
    url_outcome,
    validation_result,
)

LABELS = ["happy", "sad", "surprise", "neutral"]
RUNS = ["run-a" + "0" * 27, "run-b" + "0" * 27, "run-c" + "0" * 27]
EPOCHS = {RUNS[0]: 5, RUNS[1]: 8, RUNS[2]: 3}
TEST_ACCURACY = {RUNS[0]: 0.71, RUNS[1]: 0.78, RUNS[2]: 0.52}
CHAMPION_VERSION = "2"  # RUNS[1]
RUN_DATES = ["2026-11-30", "2026-12-01"]
# Per ingest run: URLs refused by URL cleanup, downloads ok / rejected / failed, images kept
# and rejected by image cleanup (the rejected ones are among the downloads ok).
URL_REJECTED = {RUN_DATES[0]: 3, RUN_DATES[1]: 1}
DOWNLOADED = {RUN_DATES[0]: 6, RUN_DATES[1]: 5}
DOWNLOAD_REFUSED = {RUN_DATES[0]: 2, RUN_DATES[1]: 0}
DOWNLOAD_FAILED = {RUN_DATES[0]: 1, RUN_DATES[1]: 2}
DUPLICATES = 2  # each run's first downloaded URL came twice more in its manifest
IMAGE_REJECTED = {RUN_DATES[0]: 2, RUN_DATES[1]: 1}  # "no face found"
CAMERAS = ["lobby", "bar"]
T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
WINDOW_S = 600.0
DAYS = 3
WINDOWS_PER_DAY = 6  # at 00:00, 04:00, ... 20:00 UTC


def sha(tag: str | bytes) -> str:
    return hashlib.sha256(tag if isinstance(tag, bytes) else tag.encode()).hexdigest()


def face_count(camera: str, day: int, slot: int, label: str) -> int:
    """The seeded count of one window row: varies with everything, so sums are telling."""
    return 1 + (CAMERAS.index(camera) + 2 * day + slot + 3 * LABELS.index(label)) % 5


def tracks_of(camera: str, day: int, slot: int) -> int:
    return 2 + (day + slot + CAMERAS.index(camera)) % 3


def _runs(engine) -> None:
    started = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    rows, epochs, classes, cells = [], [], [], []
    for i, run_id in enumerate(RUNS):
        n = EPOCHS[run_id]
        acc = TEST_ACCURACY[run_id]
        rows.append(
            {
                "run_id": run_id,
                "model_name": "emotion-classifier",
                "model_version": str(i + 1) if i < 2 else None,
                "dataset_version": sha(f"dataset{i}"),
                "test_accuracy": acc,
                "val_accuracy": acc + 0.01,
                "promoted": i == 1,
                "run_date": (started + timedelta(days=i)).date().isoformat(),
                "experiment_id": "1",
                "model_type": ["small_cnn", "vgg", "mobilenet"][i],
                "epochs_run": n,
                "n_train": 1000,
                "n_val": 100,
                "n_test": 400,
                "test_macro_f1": acc - 0.02,
                "git_commit": "a" * 40,
                "started_at": started + timedelta(days=i),
                "labels": json.dumps(LABELS),
                "train_accuracy": acc + 0.1,
                "train_loss": 0.5 - 0.1 * i,
                "val_loss": 0.6,
                "test_loss": 0.7 - 0.05 * i,
                "duration_s": 600.0 * (i + 1),
                "key_params": json.dumps(
                    {
                        "model": ["small_cnn", "vgg", "mobilenet"][i],
                        "batch_size": 32 * (i + 1),
                        "learning_rate": 0.001,
                    }
                ),
            }
        )
        for e in range(n):
            epochs.append(
                {
                    "run_id": run_id,
                    "epoch": e,
                    "train_accuracy": 0.3 + 0.05 * e,
                    "train_loss": 1.5 - 0.1 * e,
                    "val_accuracy": 0.28 + 0.05 * e,
                    "val_loss": 1.6 - 0.1 * e,
                }
            )
        for j, label in enumerate(LABELS):
            classes.append(
                {
                    "run_id": run_id,
                    "label": label,
                    "eval_split": "test",
                    "precision": acc,
                    "recall": acc - 0.05 * j,
                    "specificity": 0.9,
                    "f1": acc - 0.03 * j,
                    "support": 100,
                }
            )
            for k, pred in enumerate(LABELS):
                cells.append(
                    {
                        "run_id": run_id,
                        "eval_split": "test",
                        "true_label": label,
                        "pred_label": pred,
                        "n_images": 70 + i if j == k else 10 * (i + 1),
                    }
                )
    load_table(engine, training_run, rows)
    load_table(engine, epoch_metric, epochs)
    load_table(engine, class_metric, classes)
    load_table(engine, confusion_cell, cells)
    decided = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    moves = [
        ("1", "champion", "promoted", None, "first model: no champion to beat", 0),
        ("2", "challenger", "registered", None, "registered for the gate", 1),
        ("2", "champion", "promoted", "1", "test_accuracy 0.780 beats 0.710 by 0.070", 2),
    ]
    load_table(
        engine,
        model_promotion,
        [
            {
                "model_name": "emotion-classifier",
                "model_version": version,
                "alias": alias,
                "decided_at": decided + timedelta(hours=hours),
                "decision": decision,
                "previous_version": previous,
                "reason": reason,
                "metric_name": "test_accuracy",
                "new_value": TEST_ACCURACY[RUNS[int(version) - 1]],
                "old_value": None if previous is None else TEST_ACCURACY[RUNS[0]],
                "run_id": RUNS[int(version) - 1],
                "dataset_version": sha("dataset0"),
            }
            for version, alias, decision, previous, reason, hours in moves
        ],
    )


def _ingest(engine, data_root: Path) -> dict[str, list[str]]:
    """URL outcomes, images (their files written under data_root) and validation results;
    returns the sha256 of kept images per label and of rejected ones."""
    outcomes, images = [], []
    kept: dict[str, list[str]] = {}
    raw = data_root / "raw"
    faces = data_root / "faces"
    raw.mkdir(parents=True, exist_ok=True)
    n = 0
    for run_date in RUN_DATES:
        for k in range(URL_REJECTED[run_date]):
            outcomes.append(
                {
                    "run_date": run_date,
                    "url_sha256": sha(f"{run_date}-urlrej-{k}"),
                    "label": LABELS[k % 4],
                    "stage": "url_cleanup",
                    "status": "rejected",
                    "rule": "denylist" if k else "duplicate",
                    "reason": "denied host" if k else "duplicate url",
                }
            )
        for status, count, reason in (
            ("rejected", DOWNLOAD_REFUSED[run_date], "not an image: text/html"),
            ("failed", DOWNLOAD_FAILED[run_date], "timeout: read"),
        ):
            for k in range(count):
                outcomes.append(
                    {
                        "run_date": run_date,
                        "url_sha256": sha(f"{run_date}-{status}-{k}"),
                        "label": LABELS[k % 4],
                        "stage": "download",
                        "status": status,
                        "reason": reason,
                    }
                )
        for k in range(DOWNLOADED[run_date]):
            label = LABELS[k % 4]
            url_key = sha(f"{run_date}-ok-{k}")
            n += 1
            picture = draw_face(60 + 20 * (n % 8), 200 - 10 * (n % 5), 128)
            path = raw / f"{n:03d}.jpg"
            cv2.imwrite(str(path), picture)
            content = sha(path.read_bytes())
            rejected = k < IMAGE_REJECTED[run_date]
            face_rel = f"{label}/{content}.png"
            if not rejected:
                (faces / label).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(faces / face_rel), cv2.resize(picture, (48, 48)))
                kept.setdefault(label, []).append(content)
            outcomes.append(
                {
                    "run_date": run_date,
                    "url_sha256": url_key,
                    "label": label,
                    "stage": "download",
                    "status": "ok",
                    "sha256": content,
                    "path": f"raw/{path.name}",
                    "bytes": path.stat().st_size,
                    "duplicates": DUPLICATES if k == 0 else 0,
                }
            )
            images.append(
                {
                    "sha256": content,
                    "url_sha256": url_key,
                    "label": label,
                    "width": 128,
                    "height": 128,
                    "format": "JPEG",
                    "n_faces": 0 if rejected else 1,
                    "status": "rejected" if rejected else "accepted",
                    "reason": "no face found" if rejected else None,
                    "face_path": None if rejected else face_rel,
                    "run_date": run_date,
                }
            )
    load_table(engine, url_outcome, outcomes)
    load_table(engine, image, images)
    validated = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    load_table(
        engine,
        validation_result,
        [
            {
                "run_date": run_date,
                "suite": suite,
                "validated_at": validated,
                "success": not (run_date == RUN_DATES[0] and suite == "images"),
                "evaluated": 9,
                "failed": 1 if (run_date == RUN_DATES[0] and suite == "images") else 0,
                "n_rows": 10,
                "docs_path": f"validations/{suite}/{run_date}.html",
            }
            for run_date in RUN_DATES
            for suite in ("urls", "images")
        ],
    )
    return kept


def _events(engine) -> None:
    windows = []
    for camera in CAMERAS:
        for day in range(DAYS):
            for slot in range(WINDOWS_PER_DAY):
                start = T0 + timedelta(days=day, hours=4 * slot)
                for label in LABELS:
                    windows.append(
                        {
                            "camera_id": camera,
                            "window_start": start,
                            "label": label,
                            "window_seconds": WINDOW_S,
                            "count": face_count(camera, day, slot, label),
                            "mean_confidence": 0.8,
                            "model_version": CHAMPION_VERSION,
                            "observations": 10,
                            "distinct_tracks": tracks_of(camera, day, slot),
                        }
                    )
    load_emotion_events(engine, windows)


def seed_dashboard(url: str, data_root: Path) -> dict[str, list[str]]:
    """Migrate the warehouse at `url` and fill it; returns kept sha256s per label."""
    engine = connect(url)
    init_schema(engine)
    _runs(engine)
    kept = _ingest(engine, data_root)
    _events(engine)
    engine.dispose()
    return kept


def expected_faces(camera: str | None = None, label: str | None = None) -> int:
    return sum(
        face_count(c, d, s, lab)
        for c in CAMERAS
        for d in range(DAYS)
        for s in range(WINDOWS_PER_DAY)
        for lab in LABELS
        if (camera is None or c == camera) and (label is None or lab == label)
    )
