"""Atomic writes: a failure while writing leaves the old content and no temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotionops.files import atomic_dir, atomic_open, atomic_write, read_records, write_records


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "urls.csv"
    write_records([{"url": "http://a.example/1.jpg"}], target)
    with pytest.raises(RuntimeError), atomic_open(target, "w") as fh:
        fh.write("half a row")
        raise RuntimeError("disk full")
    assert read_records(target) == [{"url": "http://a.example/1.jpg"}]
    assert [p.name for p in tmp_path.iterdir()] == ["urls.csv"]


def test_records_with_no_rows_keep_their_header_when_given(tmp_path: Path) -> None:
    target = tmp_path / "empty.csv"
    write_records([], target, fieldnames=["url", "label"])
    assert target.read_text().strip() == "url,label"
    write_records([], target)
    assert target.read_text() == ""


def test_atomic_dir_replaces_a_folder_as_a_whole(tmp_path: Path) -> None:
    out = tmp_path / "model"
    with atomic_dir(out) as staging:
        (staging / "old.txt").write_text("v1")
    with atomic_dir(out) as staging:
        (staging / "new.txt").write_text("v2")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    with pytest.raises(RuntimeError), atomic_dir(out) as staging:
        (staging / "broken.txt").write_text("v3")
        raise RuntimeError("export failed")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
