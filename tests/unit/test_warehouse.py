"""Warehouse units on SQLite: row checks and conversions, settings, audit records, report
errors. The full load/crash/migration suite runs on SQLite and PostgreSQL in
tests/integration/test_warehouse_backends.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from emotionops.registry import AliasMove
from emotionops.settings import Settings, SettingsError
from emotionops.warehouse import WarehouseError, check_rows, connect, init_schema, table_counts
from emotionops.warehouse.report import build_report
from emotionops.warehouse.schema import (
    DATA_TABLES,
    emotion_event,
    image,
    model_promotion,
    training_run,
)


def test_rows_are_converted_to_column_types() -> None:
    (row,) = check_rows(
        image,
        [{"sha256": "a" * 64, "label": "happy", "status": "accepted", "width": "48",
          "height": 48.0, "n_faces": "", "reason": "", "extra": "ignored"}],
    )  # fmt: skip
    assert (row["width"], row["height"], row["n_faces"], row["reason"]) == (48, 48, None, None)
    assert "extra" not in row
    (run,) = check_rows(
        training_run,
        [{"run_id": "r", "model_name": "m", "promoted": "true", "test_accuracy": "0.5",
          "started_at": "2026-11-20T14:00:00+02:00", "val_accuracy": float("inf")}],
    )  # fmt: skip
    assert run["promoted"] is True and run["test_accuracy"] == 0.5
    assert run["started_at"] == datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert run["val_accuracy"] is None  # not finite -> NULL on every backend


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"promoted": "maybe"}, "column promoted: 'maybe' is not a boolean"),
        ({"promoted": 2}, "column promoted: 2 is not a boolean"),
        ({"started_at": "yesterday"}, "column started_at: 'yesterday' is not an ISO date-time"),
        ({"epochs_run": True}, "column epochs_run: True is not an integer"),
        ({"test_accuracy": "high"}, "column test_accuracy: 'high' is not a number"),
        ({"model_name": ["m"]}, r"column model_name: \['m'\] \(list\) is not text"),
        ({"model_name": None}, r"row 0 lacks required \['model_name'\]"),
    ],
)
def test_wrong_values_are_named(row: dict, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        check_rows(training_run, [{"run_id": "r", "model_name": "m", **row}])


def test_label_columns_and_non_mapping_rows() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    event = {"camera_id": "c", "window_start": start, "label": "angry", "window_seconds": 1,
             "face_count": 1, "model_version": "1"}  # fmt: skip
    with pytest.raises(WarehouseError, match="label 'angry', not in the label set"):
        check_rows(emotion_event, [event], labels=["happy"])
    with pytest.raises(WarehouseError, match="row 1 is not a mapping"):
        check_rows(emotion_event, [event, ("c", start)])


def test_audit_records_round_trip_through_json() -> None:
    move = AliasMove(
        model_name="m", model_version=3, alias="champion", decision="promoted",
        previous_version=None, reason="no champion yet",
        decided_at=datetime(2026, 11, 20, 14, tzinfo=timezone(timedelta(hours=2))),
        new_value=0.8, run_id="r",
    )  # fmt: skip
    assert AliasMove.from_json(move.to_json()) == move
    row = move.as_row()
    assert (row["model_version"], row["previous_version"]) == ("3", None)
    (checked,) = check_rows(model_promotion, [row])
    assert checked["decided_at"] == datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_table_counts_on_a_fresh_file_and_report_needs_init(tmp_path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'new' / 'wh.db'}")
    assert table_counts(engine) == {t.name: 0 for t in DATA_TABLES}  # the demo summary
    with pytest.raises(WarehouseError, match=r"schema is at version 0.*warehouse init"):
        build_report(engine)
    init_schema(engine)
    assert build_report(engine)["counts"]["image_url"] == 0


def test_airflow_connection_id_is_resolved_on_the_airflow_side(tmp_path) -> None:
    settings = Settings(project_dir=tmp_path, warehouse_conn_id="oracle_default")
    with pytest.raises(SettingsError, match="oracle_default is an Airflow connection id"):
        settings.resolved_warehouse_url()
    url = "oracle+oracledb://u:p@db:1521/?service_name=FREEPDB1"
    given = Settings(project_dir=tmp_path, warehouse_conn_id="oracle_default", warehouse_url=url)
    assert given.resolved_warehouse_url() == url  # what the DAG injects wins
    assert Settings(project_dir=tmp_path).warehouse_connect_timeout_s == 10.0
