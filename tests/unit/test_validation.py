"""Great Expectations suites: each passes on good data made here and fails, naming the right
expectation, for each kind of bad input; Data Docs are built; a failed suite loads nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from emotionops.acquire.urls import url_sha256
from emotionops.files import write_records
from emotionops.params import Params, ParamsError, load_params
from emotionops.settings import Settings
from emotionops.validation import (
    ValidationFailed,
    ValidationReport,
    data_docs_index,
    require,
    validate_images,
    validate_split,
    validate_urls,
)
from emotionops.validation.frames import IMAGE_COLUMNS, URL_COLUMNS, to_frame

LABELS = ["happy", "sad"]
RUN_DATE = "2026-11-20"


def sha(i: object, salt: str = "img") -> str:
    return hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()


@pytest.fixture()
def params() -> Params:
    return Params.model_validate(
        {
            "labels": LABELS,
            "validation": {
                "min_rows_per_label": 2,
                "max_rows_per_label": 10,
                "min_images_per_label": 3,
                "min_images_per_split": 1,
                "max_class_imbalance": 2.0,
            },
        }
    )


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("EMOTIONOPS_")]:
        monkeypatch.delenv(key)
    return Settings(_env_file=None, project_dir=tmp_path)


def failed(report: ValidationReport) -> set[tuple[str, str, str]]:
    return {(f.suite, f.expectation, f.column) for f in report.failures}


# Good data, as the pipeline writes it (CSV: every value a string) -------------------------


def url_rows(per_label: int = 3) -> list[dict[str, str]]:
    rows = []
    for label in LABELS:
        for rank in range(1, per_label + 1):
            url = f"https://images.example.com/{label}/{rank}.jpg"
            rows.append(
                {
                    "label": label,
                    "query": f"{label} face",
                    "engine": "google",
                    "rank": str(rank),
                    "page_url": f"https://example.com/{label}/{rank}",
                    "image_url": url,
                    "run_date": RUN_DATE,
                    "url_sha256": url_sha256(url),
                }
            )
    return rows


def image_row(i: int, label: str, **changes: str) -> dict[str, str]:
    row = {
        "sha256": sha(i),
        "url_sha256": sha(i, "url"),
        "label": label,
        "width": "320",
        "height": "240",
        "format": "JPEG",
        "n_faces": "1",
        "status": "accepted",
        "reason": "",
        "face_path": f"{label}/{sha(i)}.png",
        "run_date": RUN_DATE,
        "pixel_sha256": sha(i, "pixels"),
        "phash": sha(i, "phash")[:16],  # random 64-bit hashes: ~32 bits apart, never near
        "dhash": sha(i, "dhash")[:16],
        "duplicate_of": "",
        "brightness": "120.5",
        "contrast": "45.1",
        "entropy": "6.8",
        "drawing_score": "-0.71",
        "sharpness": "310.2",
        "align_angle": "",
    }
    return {**row, **changes}


#: 6 accepted faces per label: 4 train, 1 val, 1 test.
SPLIT_OF = ["train", "train", "train", "train", "val", "test"]


def image_rows() -> list[dict[str, str]]:
    rows = [image_row(k * 10 + j, label) for k, label in enumerate(LABELS) for j in range(6)]
    # A rejected image fails thresholds by design: the suite must not hold that against it.
    rows.append(
        image_row(
            99, "happy", status="rejected", reason="too dark: mean luminance 5.0 < 30",
            brightness="5.0", n_faces="0", face_path="", sharpness="", drawing_score="",
        )
    )  # fmt: skip
    return rows


def split_rows() -> list[dict[str, str]]:
    return [
        {"path": f"{label}/{sha(k * 10 + j)}.png", "label": label, "split": SPLIT_OF[j],
         "sha256": sha(k * 10 + j)}
        for k, label in enumerate(LABELS)
        for j in range(6)
    ]  # fmt: skip


# Schemas stay in step with the code that writes the files ------------------------------


def test_frame_columns_match_the_files_the_pipeline_writes() -> None:
    from emotionops.acquire.scrape.driver import MANIFEST_COLUMNS
    from emotionops.clean.images import ImageRecord

    assert (*MANIFEST_COLUMNS, "url_sha256") == URL_COLUMNS
    assert tuple(f.name for f in fields(ImageRecord)) == IMAGE_COLUMNS


def test_to_frame_types_csv_text_and_keeps_what_does_not_parse() -> None:
    df = to_frame(
        [{"w": "12", "x": "1.5", "s": ""}, {"w": "abc", "x": "", "s": "a"}],
        ["w", "x", "s"],
        ints=["w"],
        floats=["x"],
    )
    assert df["w"].tolist() == [12, "abc"]  # the bad value survives for a type expectation
    assert df["x"].dtype == float and pd.isna(df["x"][1])
    assert df["s"].tolist() == [None, "a"]
    assert to_frame([{"w": "3"}], ["w"], ints=["w"])["w"].dtype == "int64"
    assert list(to_frame([], ["a", "b"]).columns) == ["a", "b"]


def test_params_refuse_a_max_below_the_min(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("validation: {min_rows_per_label: 5, max_rows_per_label: 2}\n")
    with pytest.raises(ParamsError, match="max_rows_per_label"):
        load_params(path)


# URL manifest ------------------------------------------------------------------------------


def test_url_suite_passes_on_a_good_manifest_and_builds_data_docs(params, settings) -> None:
    report = validate_urls(url_rows(), params, settings, RUN_DATE)
    assert report.success, report.summary()
    assert report.rows == 6 and not report.failures
    assert [s.suite for s in report.suites] == ["url_manifest", "url_manifest_per_label"]
    assert report.summary().startswith("validation urls: passed")
    assert report.data_docs == data_docs_index(settings)
    assert report.data_docs.is_relative_to(settings.data_path / "gx")
    html = report.data_docs.read_text()
    assert "url_manifest" in html and "url_manifest_per_label" in html
    # DataFrames work as well as CSV rows.
    frame = pd.DataFrame(url_rows()).assign(rank=lambda d: d["rank"].astype(int))
    assert validate_urls(frame, params, settings).success


def _set(i: int, key: str, value: str) -> Callable[[list[dict]], list[dict]]:
    def change(rows: list[dict]) -> list[dict]:
        rows[i][key] = value
        return rows

    return change


@pytest.mark.parametrize(
    ("change", "expected", "example"),
    [
        pytest.param(_set(0, "label", "angry"),
                     ("url_manifest", "expect_column_values_to_be_in_set", "label"), "'angry'",
                     id="unknown-label"),
        pytest.param(_set(1, "image_url", ""),
                     ("url_manifest", "expect_column_values_to_not_be_null", "image_url"), "null",
                     id="null-url"),
        pytest.param(_set(2, "image_url", "ftp://files.example.com/a.jpg"),
                     ("url_manifest", "expect_column_values_to_match_regex", "image_url"), "ftp://",
                     id="ftp-url"),
        pytest.param(lambda rows: [*rows, dict(rows[0])],
                     ("url_manifest", "expect_column_values_to_be_unique", "image_url"),
                     "images.example.com/happy/1.jpg", id="duplicate-rows"),
        pytest.param(_set(0, "rank", "abc"),
                     ("url_manifest", "expect_column_values_to_be_in_type_list", "rank"), "'abc'",
                     id="wrong-type"),
        pytest.param(lambda rows: [{k: v for k, v in r.items() if k != "url_sha256"} for r in rows],
                     ("url_manifest", "expect_table_columns_to_match_set", ""), "",
                     id="missing-column"),
        pytest.param(lambda rows: [],
                     ("url_manifest", "expect_table_row_count_to_be_between", ""), "",
                     id="empty-batch"),
        pytest.param(lambda rows: [r for r in rows if r["label"] == "happy" or r["rank"] == "1"],
                     ("url_manifest_per_label", "expect_column_values_to_be_between", "rows"),
                     "1 (label=sad)", id="too-few-for-a-label"),
        pytest.param(lambda rows: rows + [
                         {**rows[0], "rank": str(n), "image_url": f"https://x.example.com/{n}.jpg",
                          "url_sha256": url_sha256(f"https://x.example.com/{n}.jpg")}
                         for n in range(4, 12)],
                     ("url_manifest_per_label", "expect_column_values_to_be_between", "rows"),
                     "11 (label=happy)", id="too-many-for-a-label"),
    ],
)  # fmt: skip
def test_url_suite_names_the_failing_expectation(params, settings, change, expected, example):
    report = validate_urls(change(url_rows()), params, settings, RUN_DATE)
    assert not report.success
    assert expected in failed(report), report.summary()
    line = next(f.line() for f in report.failures if (f.suite, f.expectation, f.column) == expected)
    assert example in line, line


def test_a_failed_suite_raises_one_line_per_failing_expectation(params, settings) -> None:
    rows = url_rows()
    rows[0]["label"] = "angry"
    rows[1]["rank"] = "abc"
    report = validate_urls(rows, params, settings, RUN_DATE)
    with pytest.raises(ValidationFailed) as err:
        require([report], f"URL manifest {RUN_DATE}")
    head, *lines = str(err.value).splitlines()
    assert head.startswith(f"URL manifest {RUN_DATE}: validation failed")
    assert "nothing was loaded" in head
    page = report.pages[0]  # the failed run's own page, inside the Data Docs site
    assert f"Data Docs: {page}" in head and page.is_file()
    assert page.is_relative_to(data_docs_index(settings).parent)
    assert "angry" in page.read_text()  # the unexpected value is shown there too
    assert len(lines) == len(report.failures) >= 2
    assert any(
        "expect_column_values_to_be_in_set(label)" in line and "'angry'" in line for line in lines
    )
    assert any("in_type_list(rank)" in line and "'abc'" in line for line in lines)
    assert err.value.exit_code == 1
    require([validate_urls(url_rows(), params, settings)])  # passing reports raise nothing


def test_suites_follow_params_and_reruns_do_not_duplicate_definitions(params, settings) -> None:
    assert validate_urls(url_rows(), params, settings).success
    tight = params.model_copy(
        update={"validation": params.validation.model_copy(update={"max_rows_per_label": 2})}
    )
    report = validate_urls(url_rows(), tight, settings)  # same data, stricter bound
    assert ("url_manifest_per_label", "expect_column_values_to_be_between", "rows") in failed(
        report
    )
    gx_dir = settings.data_path / "gx"
    assert sorted(p.name for p in (gx_dir / "expectations").glob("*.json")) == [
        "url_manifest.json",
        "url_manifest_per_label.json",
    ]
    assert len(list((gx_dir / "checkpoints").glob("*.json"))) == 2
    results = list((gx_dir / "uncommitted" / "validations" / "url_manifest").rglob("*.json"))
    assert len(results) == 2  # both runs are kept for Data Docs


# Image metadata ----------------------------------------------------------------------------


def test_image_suite_passes_and_leaves_rejected_rows_alone(params, settings) -> None:
    report = validate_images(image_rows(), params, settings, RUN_DATE)
    assert report.success, report.summary()
    assert "image_metadata" in report.data_docs.read_text()


#: One defect per accepted row: (change, the expectation that must name it, value quoted).
IMAGE_DEFECTS = [
    ({"width": "abc"}, ("expect_column_values_to_be_in_type_list", "width"), "'abc'"),
    ({"n_faces": "2"}, ("expect_column_values_to_be_between", "n_faces"), "2"),
    ({"sharpness": "12.5"}, ("expect_column_values_to_be_between", "sharpness"), "12.5"),
    ({"brightness": "250"}, ("expect_column_values_to_be_between", "brightness"), "250"),
    ({"sha256": "not-a-hash"}, ("expect_column_values_to_match_regex", "sha256"), "'not-a-hash'"),
    ({"format": "GIF"}, ("expect_column_values_to_be_in_set", "format"), "'GIF'"),
    ({"height": "20"}, ("expect_column_values_to_be_between", "height"), "20"),
    ({"width": "1000", "height": "100"}, ("expect_column_values_to_be_between", "aspect_ratio"), "10"),
    ({"label": "angry"}, ("expect_column_values_to_be_in_set", "label"), "'angry'"),
    ({"status": "maybe"}, ("expect_column_values_to_be_in_set", "status"), "'maybe'"),
    ({"face_path": "sad/other.png"},
     ("expect_column_pair_values_to_be_equal", "face_path,expected_face_path"), "sad/other.png"),
]  # fmt: skip


def test_image_suite_names_the_failing_expectation_and_row_for_each_defect(
    params, settings
) -> None:
    # One run for all defects (GX takes ~2 s per image-suite run): each defect sits in its
    # own row, and each failing expectation must quote that row's value and name its sha256.
    rows = image_rows()
    for row, (change, _, _) in zip(rows, IMAGE_DEFECTS, strict=False):
        row.update(change)
    report = validate_images(rows, params, settings)
    lines = {(f.expectation, f.column): f.line() for f in report.failures}
    for row, (change, expected, example) in zip(rows, IMAGE_DEFECTS, strict=False):
        assert expected in lines, (change, report.summary())
        assert example in lines[expected], lines[expected]
        if "sha256" not in change:
            assert f"sha256={row['sha256'][:16]}" in lines[expected], lines[expected]
    # The defects, and nothing the good rows (or the rejected row) could have caused.
    expected_columns = {col for _, (_, col), _ in IMAGE_DEFECTS}
    assert {f.column for f in report.failures} <= expected_columns | {"expected_face_path"}, (
        report.summary()
    )


def test_image_suite_catches_duplicates_missing_reasons_and_an_empty_batch(
    params, settings
) -> None:
    rows = image_rows()
    rows.append(dict(rows[0]))
    rows[-2]["reason"] = ""  # the rejected row, now without its reason
    report = validate_images(rows, params, settings)
    found = failed(report)
    assert ("image_metadata", "expect_column_values_to_be_unique", "sha256") in found
    assert ("image_metadata", "expect_column_values_to_not_be_null", "reason") in found
    line = next(f.line() for f in report.failures if f.column == "reason")
    assert "where status == rejected" in line

    empty = validate_images([], params, settings)
    assert ("image_metadata", "expect_table_row_count_to_be_between", "") in failed(empty)


# Dataset split -------------------------------------------------------------------------------


def test_split_suite_passes_on_a_good_split(params, settings) -> None:
    report = validate_split(split_rows(), image_rows(), params, settings, RUN_DATE)
    assert report.success, report.summary()
    assert [s.suite for s in report.suites] == ["dataset_split", "dataset_split_per_label"]
    html = report.data_docs.read_text()
    assert "dataset_split" in html and "dataset_split_per_label" in html


def _near_copy(images: list[dict], of: int, to: int) -> None:
    """Give image `to` the hashes of image `of`, one pHash bit flipped: a near duplicate."""
    images[to]["phash"] = f"{int(images[of]['phash'], 16) ^ 1:016x}"
    images[to]["dhash"] = images[of]["dhash"]


def test_split_suite_catches_a_near_duplicate_across_splits_only(params, settings) -> None:
    images = image_rows()
    _near_copy(images, of=0, to=1)  # both train: allowed
    assert validate_split(split_rows(), images, params, settings).success

    _near_copy(images, of=0, to=5)  # train and test: a leak
    report = validate_split(split_rows(), images, params, settings)
    assert failed(report) == {
        ("dataset_split", "expect_column_values_to_be_between", "near_dup_splits")
    }, report.summary()
    assert "near_dup_group" in report.failures[0].line()

    images[3]["phash"] = "not-hex!"  # a hand-edited images.csv: reported, never a crash
    assert validate_split(split_rows(), images, params, settings).failures


def _move(rows: list[dict], label: str, src: str, dst: str) -> list[dict]:
    for r in rows:
        if r["label"] == label and r["split"] == src:
            r["split"] = dst
    return rows


@pytest.mark.parametrize(
    ("change", "expected", "example"),
    [
        pytest.param(lambda rows: [*rows, {**rows[0], "split": "test"}],
                     ("dataset_split", "expect_column_values_to_be_between", "sha256_splits"),
                     "2", id="sha256-in-two-splits"),
        pytest.param(lambda rows: _move(_move(rows, "happy", "val", "train"), "sad", "val", "train"),
                     ("dataset_split_per_label", "expect_column_sum_to_be_between", "val"),
                     "observed 0", id="too-few-in-a-split"),
        pytest.param(lambda rows: [r for r in rows if r["label"] == "sad" or r["split"] != "train"],
                     ("dataset_split_per_label", "expect_column_values_to_be_between", "images"),
                     "2 (label=happy)", id="too-few-for-a-label"),
        pytest.param(lambda rows: [r for r in rows if r["label"] == "sad"
                                   or r["sha256"] not in (sha(0), sha(1))],
                     ("dataset_split_per_label", "expect_column_max_to_be_between",
                      "ratio_to_smallest"), "observed 1.5", id="imbalance"),
        pytest.param(lambda rows: [{**rows[0], "split": "holdout"}, *rows[1:]],
                     ("dataset_split", "expect_column_values_to_be_in_set", "split"), "'holdout'",
                     id="unknown-split"),
        pytest.param(lambda rows: [*rows, {"path": f"sad/{sha(77)}.png", "label": "sad",
                                           "split": "train", "sha256": sha(77)}],
                     ("dataset_split", "expect_column_values_to_be_in_set", "image_accepted"),
                     "False", id="not-an-accepted-image"),
        pytest.param(lambda rows: [],
                     ("dataset_split", "expect_table_row_count_to_be_between", ""), "",
                     id="empty-batch"),
    ],
)  # fmt: skip
def test_split_suite_names_the_failing_expectation(params, settings, change, expected, example):
    if expected[2] == "ratio_to_smallest":  # 4 happy vs 6 sad = 1.5: fails a 1.2 bound
        params = params.model_copy(
            update={"validation": params.validation.model_copy(update={"max_class_imbalance": 1.2})}
        )
    report = validate_split(change(split_rows()), image_rows(), params, settings)
    assert expected in failed(report), report.summary()
    line = next(f.line() for f in report.failures if (f.suite, f.expectation, f.column) == expected)
    assert example in line, line


# Wiring: the pipeline loads nothing when a suite fails; the CLI -----------------------------


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: Params) -> Settings:
    """A project folder whose warehouse is a SQLite file in tmp (Settings from env vars)."""
    from emotionops.settings import get_settings

    for key in [k for k in os.environ if k.startswith("EMOTIONOPS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("EMOTIONOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("EMOTIONOPS_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    (tmp_path / "params.yaml").write_text(params.model_dump_json())  # JSON is YAML
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _counts(settings: Settings) -> dict[str, int]:
    from emotionops.warehouse import connect, table_counts

    return table_counts(connect(settings.resolved_warehouse_url()))


def test_stage_load_urls_loads_nothing_when_the_manifest_fails(project, params) -> None:
    from emotionops.pipeline import DataPaths, stage_load_urls

    paths = DataPaths(project.data_path)
    write_records(url_rows(), paths.manifest(RUN_DATE))
    assert stage_load_urls(project, params, RUN_DATE) == (6, 0)
    assert _counts(project)["image_url"] == 6  # the good batch did load

    bad = url_rows(4)  # two new good URLs per label ...
    for r in bad:
        r["run_date"] = "2026-11-21"
    bad[0]["label"] = "angry"  # ... and one bad row
    write_records(bad, paths.manifest("2026-11-21"))
    with pytest.raises(ValidationFailed, match=r"in_set\(label\).*'angry'"):
        stage_load_urls(project, params, "2026-11-21")
    assert _counts(project)["image_url"] == 6  # not one row of the failed batch
    # Both results are recorded, one row per (run date, suite), the failed one too.
    results = _validation_results(project)
    assert {k: v["success"] for k, v in results.items()} == {
        (RUN_DATE, "url_manifest"): True, (RUN_DATE, "url_manifest_per_label"): True,
        ("2026-11-21", "url_manifest"): False, ("2026-11-21", "url_manifest_per_label"): True,
    }  # fmt: skip
    bad_result = results[("2026-11-21", "url_manifest")]
    assert bad_result["failed"] >= 1 and bad_result["n_rows"] == 8
    assert results[(RUN_DATE, "url_manifest_per_label")]["n_rows"] == len(LABELS)
    site = data_docs_index(project).parent
    assert (site / bad_result["docs_path"]).is_file()  # the failed result's own page
    assert bad_result["docs_path"].startswith("validations/url_manifest/")
    assert bad_result["validated_at"].tzinfo is not None


def test_a_warehouse_failure_never_hides_the_validation_failure(
    project, params, monkeypatch
) -> None:
    from emotionops.pipeline import DataPaths, stage_load_urls
    from emotionops.settings import get_settings

    rows = url_rows()
    rows[0]["label"] = "angry"
    write_records(rows, DataPaths(project.data_path).manifest(RUN_DATE))
    blocker = project.project_dir / "not-a-folder"
    blocker.write_text("")  # the warehouse file's folder cannot be made
    monkeypatch.setenv("EMOTIONOPS_WAREHOUSE_URL", f"sqlite:///{blocker / 'wh.db'}")
    get_settings.cache_clear()
    with pytest.raises(ValidationFailed, match=r"in_set\(label\).*'angry'") as failure:
        stage_load_urls(get_settings(), params, RUN_DATE)
    (note,) = failure.value.__notes__
    assert note.startswith("(the validation result was not recorded in the warehouse:")


def _validation_results(settings: Settings) -> dict[tuple[str, str], dict]:
    from sqlalchemy import select

    from emotionops.warehouse import connect
    from emotionops.warehouse.schema import validation_result

    with connect(settings.resolved_warehouse_url()).connect() as conn:
        return {(r.run_date, r.suite): r._asdict() for r in conn.execute(select(validation_result))}


def test_stage_load_images_loads_nothing_when_the_split_leaks(project, params) -> None:
    from emotionops.pipeline import DataPaths, stage_load_images

    paths = DataPaths(project.data_path)
    images = image_rows()
    write_records(images, paths.images_csv)
    write_records(split_rows(), paths.split_csv)
    stage_load_images(project, params, RUN_DATE)
    before = _counts(project)
    assert before["image"] == len(images) and before["dataset_version"] == 1

    suites = {"image_metadata", "dataset_split", "dataset_split_per_label"}
    assert {k: v["success"] for k, v in _validation_results(project).items()} == {
        (RUN_DATE, suite): True for suite in suites
    }

    _near_copy(images, of=0, to=5)  # a near duplicate of a train image in test
    images.append(image_row(50, "sad"))  # and a new image that would be loaded
    write_records(images, paths.images_csv)
    with pytest.raises(ValidationFailed, match="near_dup_splits"):
        stage_load_images(project, params, RUN_DATE)
    assert _counts(project) == before  # no data; the same run date's results replaced:
    results = _validation_results(project)
    assert {k: v["success"] for k, v in results.items()} == {
        (RUN_DATE, suite): suite != "dataset_split" for suite in suites
    }
    assert results[(RUN_DATE, "image_metadata")]["n_rows"] == len(images)


def test_stage_load_images_loads_the_runs_url_outcomes_once(project, params) -> None:
    from sqlalchemy import select

    from emotionops.pipeline import DataPaths, stage_load_images, stage_load_urls
    from emotionops.warehouse import connect
    from emotionops.warehouse.schema import url_outcome

    paths = DataPaths(project.data_path)
    manifest = url_rows()
    manifest.append({**manifest[0], "label": "sad"})  # the same URL found for another label
    manifest.append({**manifest[1], "image_url": "ftp://files.example.com/x.jpg"})
    write_records(manifest, paths.manifest(RUN_DATE))
    assert stage_load_urls(project, params, RUN_DATE) == (6, 2)  # writes rejected.csv
    kept = [r for r in manifest[:6]]
    downloads = [
        {"url_sha256": url_sha256(r["image_url"]), "url": r["image_url"], "label": r["label"],
         "status": "ok" if i else "failed", "reason": "" if i else "timed out",
         "sha256": sha(i) if i else "", "path": f"raw/{sha(i)[:2]}/{sha(i)}.jpg" if i else "",
         "bytes": "2048" if i else "0", "run_date": RUN_DATE}
        for i, r in enumerate(kept)
    ]  # fmt: skip
    write_records(downloads, paths.downloads(RUN_DATE))
    write_records(image_rows(), paths.images_csv)
    write_records(split_rows(), paths.split_csv)
    assert stage_load_images(project, params, RUN_DATE)["url_outcomes"] == 7  # 8 rows, 7 URLs
    assert stage_load_images(project, params, RUN_DATE)["url_outcomes"] == 7  # a retry
    with connect(project.resolved_warehouse_url()).connect() as conn:
        rows = {r.url_sha256: r for r in conn.execute(select(url_outcome))}
    assert len(rows) == 7 and _counts(project)["url_outcome"] == 7
    first = rows[url_sha256(manifest[0]["image_url"])]
    assert (first.stage, first.status, first.label, first.reason) == (
        "download", "failed", "happy", "timed out",
    )  # fmt: skip  # its duplicate (label sad) is the same URL: no second row
    ok = rows[url_sha256(manifest[1]["image_url"])]
    assert (ok.status, ok.sha256, ok.bytes) == ("ok", sha(1), 2048)
    assert ok.path == downloads[1]["path"]  # as the download record has it: data-relative
    (ftp,) = [r for r in rows.values() if r.stage == "url_cleanup"]
    assert (ftp.status, ftp.rule, ftp.path) == ("rejected", "scheme", None)


def test_cli_validate_prints_the_summary_and_exits_1_on_failure(project, params) -> None:
    from typer.testing import CliRunner

    from emotionops.cli import app
    from emotionops.pipeline import DataPaths

    paths = DataPaths(project.data_path)
    write_records(image_rows(), paths.images_csv)
    write_records(split_rows(), paths.split_csv)
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", "data", "--run-date", RUN_DATE])
    assert ok.exit_code == 0, ok.output
    assert "validation images: passed" in ok.output and "validation split: passed" in ok.output
    assert f"Data Docs: {data_docs_index(project)}" in ok.output

    rows = url_rows()
    rows[0]["image_url"] = "ftp://files.example.com/a.jpg"  # cleaning rejects it (a reason) ...
    rows[1]["label"] = "angry"  # ... but the label set is the suite's job
    write_records(rows, paths.manifest(RUN_DATE))
    bad = runner.invoke(app, ["validate", "urls", "--run-date", RUN_DATE])
    assert bad.exit_code == 1, bad.output
    assert "validation urls: FAILED" in bad.output
    assert "expect_column_values_to_be_in_set(label)" in bad.output and "'angry'" in bad.output


def test_cli_load_urls_fails_cleanly_with_exit_1(project, monkeypatch, capsys) -> None:
    from emotionops import cli
    from emotionops.pipeline import DataPaths

    rows = url_rows()
    rows[0]["rank"] = "abc"
    rows[1]["label"] = "angry"
    write_records(rows, DataPaths(project.data_path).manifest(RUN_DATE))
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setattr(
        sys, "argv", ["emotionops", "warehouse", "load-urls", "--run-date", RUN_DATE]
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main()  # the entry point: turns EmotionOpsError into a message and an exit code
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    flat = " ".join(err.split())
    assert "nothing was loaded" in flat and "in_type_list(rank)" in flat and "'abc'" in flat
    assert "'angry'" in flat
    assert "(rank) [min_value=1]" in flat  # brackets are not taken for rich markup
    assert _counts(project)["image_url"] == 0


def test_importing_the_pipeline_and_cli_does_not_import_great_expectations() -> None:
    code = (
        "import sys, emotionops.pipeline, emotionops.cli, emotionops.validation\n"
        "print(sorted(m for m in ('great_expectations', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
