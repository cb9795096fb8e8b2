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


# The dashboard's rows (migration 5) -------------------------------------------------------


def test_key_params_are_the_recipe_as_json_under_the_column_limit() -> None:
    import json

    from emotionops.params import TrainParams
    from emotionops.training.train import flat_params
    from emotionops.warehouse.runs import KEY_PARAMS_LIMIT, key_params

    logged = {k: str(v) for k, v in flat_params(TrainParams(model="vgg", partners=[])).items()}
    recipe = json.loads(key_params(logged))
    assert (recipe["model"], recipe["image_size"], recipe["partners"]) == ("vgg", 48, [])
    assert recipe["flip_average"] is True and recipe["init_from"] is None  # "" logged
    assert recipe["augment.rotation"] == pytest.approx(0.028)
    assert all(not isinstance(v, dict) for v in recipe.values())  # flat: one row per param
    assert list(recipe)[:3] == ["model", "image_size", "width"]
    # Long values (a partners list of paths): augment goes first, then the last params.
    long = {**logged, "partners": json.dumps([f"/models/{'x' * 80}/{i}.keras" for i in range(30)])}
    text = key_params(long)
    assert text is not None and len(text) <= KEY_PARAMS_LIMIT
    trimmed = json.loads(text)
    assert not any(k.startswith("augment.") for k in trimmed) and trimmed["model"] == "vgg"
    assert key_params({"n_train": "3"}) is None  # none of the recipe's params logged


def test_url_outcomes_one_row_per_url_download_records_first() -> None:
    from emotionops.warehouse.loaders import url_outcome_rows

    h = [f"{i:064x}" for i in range(4)]
    downloads = [
        {"url_sha256": h[0], "label": "happy", "status": "ok", "reason": "", "sha256": "b" * 64,
         "path": "raw/bb/bbbb.jpg", "bytes": "1234"},
        {"url_sha256": h[1], "label": "sad", "status": "failed", "reason": "timeout " * 100,
         "sha256": "", "path": "", "bytes": "0"},
    ]  # fmt: skip
    rejected = [
        {"url_sha256": h[0], "label": "sad", "reason": "duplicate url", "rule": "duplicate"},
        {"url_sha256": h[2], "label": "happy", "reason": "scheme 'ftp' not allowed",
         "rule": "scheme"},
        {"url_sha256": h[2], "label": "sad", "reason": "scheme 'ftp' not allowed",
         "rule": "scheme"},
    ]  # fmt: skip
    rows = {r["url_sha256"]: r for r in url_outcome_rows("2026-11-20", rejected, downloads)}
    assert set(rows) == {h[0], h[1], h[2]}
    assert (rows[h[0]]["stage"], rows[h[0]]["status"], rows[h[0]]["label"]) == (
        "download", "ok", "happy",
    )  # fmt: skip  # the duplicate's URL is the downloaded one
    assert rows[h[0]]["path"] == "raw/bb/bbbb.jpg" and rows[h[0]]["bytes"] == "1234"
    assert rows[h[0]]["duplicates"] == 1 and rows[h[2]]["duplicates"] == 0  # counted once
    assert rows[h[1]]["path"] is None and rows[h[1]]["bytes"] is None
    assert len(rows[h[1]]["reason"]) == 512 and rows[h[1]]["reason"].endswith("...")
    assert (rows[h[2]]["stage"], rows[h[2]]["rule"], rows[h[2]]["label"]) == (
        "url_cleanup", "scheme", "happy",
    )  # fmt: skip
    assert all(r["run_date"] == "2026-11-20" for r in rows.values())
    with pytest.raises(WarehouseError, match="no url_sha256"):
        url_outcome_rows("2026-11-20", [{"label": "happy", "reason": "x", "rule": "y"}], [])


def test_validation_rows_link_each_suite_page_relative_to_the_site(tmp_path) -> None:
    from emotionops.validation import SuiteStats, ValidationReport
    from emotionops.validation.report import FailedExpectation
    from emotionops.warehouse.loaders import validation_rows

    site = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site"
    when = datetime(2026, 11, 20, 3, tzinfo=UTC)
    page = site / "validations" / "url_manifest" / "urls-2026-11-20" / "x.html"
    report = ValidationReport(
        name="urls",
        success=False,
        suites=(
            SuiteStats("url_manifest", 5, 5, page, 12, when),
            SuiteStats("url_manifest_per_label", 2, 1, None, 2, when),
        ),
        failures=(FailedExpectation("url_manifest_per_label", "e", "rows", "", "", "1"),),
        rows=12,
        data_docs=site / "index.html",
    )
    rows = {r["suite"]: r for r in validation_rows([report], "2026-11-20")}
    assert rows["url_manifest"] == {
        "run_date": "2026-11-20", "suite": "url_manifest", "validated_at": when,
        "success": True, "evaluated": 5, "failed": 0, "n_rows": 12,
        "docs_path": "validations/url_manifest/urls-2026-11-20/x.html",
    }  # fmt: skip
    bad = rows["url_manifest_per_label"]
    assert (bad["success"], bad["failed"], bad["docs_path"]) == (False, 1, "index.html")
