"""`emotionops scrape --label`: one file per label in the run's partition, read back together
with urls.csv in label order, so parallel label scrapes share no file and cleanup is stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotionops.errors import EmotionOpsError
from emotionops.files import write_records
from emotionops.params import Params
from emotionops.pipeline import DataPaths, clean_run_urls, run_manifest_rows, stage_scrape
from emotionops.settings import Settings

DAY = "2026-11-22"


def _row(label: str, url: str, rank: int = 1) -> dict:
    return {"label": label, "query": f"{label} face", "engine": "local", "rank": rank,
            "page_url": "https://p.example/", "image_url": url, "run_date": DAY}  # fmt: skip


def test_label_files_replace_that_labels_rows_of_the_whole_run_manifest(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    labels = ["happy", "sad", "neutral"]
    assert paths.label_manifest(DAY, "sad") == paths.manifest_dir(DAY) / "labels" / "sad.csv"
    write_records(
        [_row("happy", "https://a.example/old.jpg"), _row("sad", "https://a.example/stale.jpg")],
        paths.manifest(DAY),
    )
    write_records([_row("sad", "https://a.example/s.jpg")], paths.label_manifest(DAY, "sad"))
    write_records([_row("neutral", "https://a.example/n.jpg")],
                  paths.label_manifest(DAY, "neutral"))  # fmt: skip
    rows = run_manifest_rows(paths, labels, DAY)
    assert [(r["label"], r["image_url"]) for r in rows] == [
        ("happy", "https://a.example/old.jpg"),  # no label file: urls.csv's rows
        ("sad", "https://a.example/s.jpg"),  # the label's own file wins over urls.csv
        ("neutral", "https://a.example/n.jpg"),
    ]


def test_cleanup_dedupes_across_label_files_in_label_order(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path)
    params = Params(labels=["happy", "sad"])
    paths = DataPaths(settings.data_path)
    same = "https://a.example/same.jpg"
    write_records([_row("sad", same)], paths.label_manifest(DAY, "sad"))  # written first
    write_records([_row("happy", same), _row("happy", "https://a.example/h.jpg", 2)],
                  paths.label_manifest(DAY, "happy"))  # fmt: skip
    kept, rejected = clean_run_urls(paths, params, DAY)
    assert [(r["label"], r["image_url"]) for r in kept] == [
        ("happy", same), ("happy", "https://a.example/h.jpg")
    ]  # fmt: skip
    assert [r["label"] for r in rejected] == ["sad"]  # the duplicate, whatever finished first


def test_an_unknown_label_is_refused_before_any_browser_starts(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path)
    with pytest.raises(EmotionOpsError, match="--label 'angry' is not one of the labels"):
        stage_scrape(settings, Params(), DAY, "http://127.0.0.1:9", label="angry")
    assert not DataPaths(settings.data_path).manifest_dir(DAY).exists()
