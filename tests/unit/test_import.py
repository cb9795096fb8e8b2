"""Importers: class folders, FER2013's split layout and CSV, label mapping, bad input, and the
clean + split stages over imported data (tiny datasets made in the test)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotionops.dataset.importers import (
    DatasetImportError,
    clean_imports,
    import_source,
    map_label,
    resolve_source_path,
)
from emotionops.files import read_records
from emotionops.params import DatasetParams, Params

LABELS = ["happy", "sad", "surprise", "neutral"]
DATASET = DatasetParams()  # ignore: angry, disgust, fear, contempt


def face(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 200, (size, size), dtype=np.uint8)
    img[size // 3 : size // 2, :] = 240
    return img


def write_classes(root: Path, counts: dict[str, int], seed: int = 0, fmt: str = "png") -> Path:
    for k, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(face(seed + 100 * k + i)).save(root / cls / f"{cls}_{i}.{fmt}")
    return root


def fer_csv(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows(rows)
    return path


def pixels(seed: int) -> str:
    return " ".join(map(str, face(seed).ravel().tolist()))


def nothing_written(data: Path) -> bool:
    return not (data / "imports").exists() and not (data / "raw").exists()


# Reading sources -------------------------------------------------------------------------------
def test_class_folders_are_imported_content_addressed(tmp_path: Path) -> None:
    src = write_classes(tmp_path / "src", {"happy": 3, "sad": 2, "angry": 2})
    data = tmp_path / "data"
    report = import_source("mine", src, data, LABELS, DATASET, run_date="2026-01-02")
    rows = read_records(data / "imports" / "mine.csv")
    assert report.n_images == 7 and len(rows) == 7
    assert report.ignored == {"angry": 2}  # imported, left out while not in the label set
    for row in rows:
        stored = data / row["path"]
        assert stored.is_file() and stored.name.startswith(row["sha256"])
        assert row["split"] == "" and row["run_date"] == "2026-01-02"
    assert {r["source_label"] for r in rows} == {"happy", "sad", "angry"}
    # Idempotent: a second import writes the same manifest and stores nothing twice.
    before = sorted(p.name for p in (data / "raw").rglob("*.png"))
    import_source("mine", src, data, LABELS, DATASET, run_date="2026-01-02")
    assert read_records(data / "imports" / "mine.csv") == rows
    assert sorted(p.name for p in (data / "raw").rglob("*.png")) == before


def test_split_layout_becomes_split_hints(tmp_path: Path) -> None:
    src = tmp_path / "fer2013"
    write_classes(src / "train", {"happy": 3, "sad": 3})
    write_classes(src / "publictest", {"happy": 2, "sad": 1}, seed=50, fmt="jpg")
    report = import_source("fer", src, tmp_path / "data", LABELS, DATASET)
    rows = read_records(report.manifest)
    by_origin = {r["origin"]: r["split"] for r in rows}
    assert by_origin["train/happy/happy_0.png"] == "trainval"
    assert by_origin["publictest/sad/sad_0.jpg"] == "test"
    assert {r["format"] for r in rows} == {"PNG", "JPEG"}
    hashed = import_source("fer", src, tmp_path / "data", LABELS, DATASET, split="hash")
    assert {r["split"] for r in read_records(hashed.manifest)} == {""}


def test_fer_csv_rows_become_png_faces_with_usage_splits(tmp_path: Path) -> None:
    path = fer_csv(
        tmp_path / "fer2013.csv",
        [(3, pixels(1), "Training"), (4, pixels(2), "PublicTest"), (0, pixels(3), "PrivateTest")],
    )
    report = import_source("ferc", path, tmp_path / "data", LABELS, DATASET)
    rows = read_records(report.manifest)
    assert [(r["source_label"], r["split"], r["origin"]) for r in rows] == [
        ("happy", "trainval", "fer2013.csv:2"),
        ("sad", "test", "fer2013.csv:3"),
        ("angry", "test", "fer2013.csv:4"),
    ]
    stored = np.asarray(Image.open(tmp_path / "data" / rows[0]["path"]))
    np.testing.assert_array_equal(stored, face(1))  # lossless: the pixels of the row


# Label mapping ---------------------------------------------------------------------------------
def test_label_map_and_ignore() -> None:
    dataset = DatasetParams(label_map={"surprised": "surprise", "anger": "angry"})
    assert map_label("Surprised", LABELS, dataset, "x") == "surprise"
    assert map_label("HAPPY", LABELS, dataset, "x") == "happy"
    assert map_label("anger", LABELS, dataset, "x") is None  # -> angry, ignored with 4 labels
    seven = ["angry", "disgust", "fear", *LABELS]
    assert map_label("anger", seven, dataset, "x") == "angry"  # kept with 7 labels
    with pytest.raises(DatasetImportError, match=r"x: class 'bored' is not in labels .*label_map"):
        map_label("bored", LABELS, dataset, "x")


def test_params_refuse_a_mapping_to_an_unknown_label() -> None:
    with pytest.raises(ValueError, match=r"neither in 'labels' nor in dataset\.ignore"):
        Params.model_validate({"dataset": {"label_map": {"joy": "joyful"}}})


def test_unknown_class_folder_is_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    src = write_classes(tmp_path / "src", {"happy": 2, "bored": 2})
    with pytest.raises(DatasetImportError, match=r"class 'bored' is not in labels"):
        import_source("x", src, tmp_path / "data", LABELS, DATASET)
    assert nothing_written(tmp_path / "data")


# Bad input -------------------------------------------------------------------------------------
def test_corrupt_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    src = write_classes(tmp_path / "src", {"happy": 3, "sad": 2})
    bad = src / "sad" / "sad_1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    (src / "happy" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetImportError) as err:
        import_source("x", src, tmp_path / "data", LABELS, DATASET)
    message = str(err.value)
    assert "happy/notes.txt: not a readable image" in message
    assert "and 1 more unreadable file" in message and "--skip-bad" in message
    assert nothing_written(tmp_path / "data")

    report = import_source("x", src, tmp_path / "data", LABELS, DATASET, skip_bad=True)
    assert report.n_images == 4 and len(report.skipped) == 2
    assert "skipped 2 unreadable file(s)" in report.summary()


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    src = write_classes(tmp_path / "src", {"happy": 2})
    (src / "sad").mkdir()
    with pytest.raises(DatasetImportError, match=r"src/sad: class folder is empty"):
        import_source("x", src, tmp_path / "data", LABELS, DATASET)
    with pytest.raises(DatasetImportError, match="no class folders"):
        import_source("x", tmp_path / "src" / "sad", tmp_path / "data", LABELS, DATASET)
    with pytest.raises(DatasetImportError, match="neither a folder"):
        import_source("x", tmp_path / "missing", tmp_path / "data", LABELS, DATASET)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((3, "1 2 3", "Training"), r"bad\.csv:3: pixels has 3 values, expected 2304"),
        ((3, pixels(1).replace(" ", " x ", 1), "Training"), r"bad\.csv:3: pixels has 2305"),
        ((3, pixels(1).replace(" ", " 300 ", 1)[:-4] + " 12", "Training"), "bad.csv:3"),
        ((3, "a" + pixels(1)[1:], "Training"), r"bad\.csv:3: pixels are not integers"),
        ((9, pixels(1), "Training"), r"bad\.csv:3: emotion '9' is not 0-6"),
        ((3, pixels(1), "Holdout"), r"bad\.csv:3: Usage 'Holdout' is not one of"),
    ],
)
def test_malformed_csv_rows_name_the_line(tmp_path: Path, row: tuple, message: str) -> None:
    path = fer_csv(tmp_path / "bad.csv", [(4, pixels(0), "Training"), row])
    with pytest.raises(DatasetImportError, match=message):
        import_source("x", path, tmp_path / "data", LABELS, DATASET)
    assert nothing_written(tmp_path / "data")


def test_out_of_range_pixel_and_wrong_columns(tmp_path: Path) -> None:
    values = face(1).ravel().astype(int).tolist()
    values[5] = 256
    path = fer_csv(tmp_path / "bad.csv", [(3, " ".join(map(str, values)), "Training")])
    with pytest.raises(DatasetImportError, match=r"bad\.csv:2: pixel values must be 0-255"):
        import_source("x", path, tmp_path / "data", LABELS, DATASET)
    other = tmp_path / "other.csv"
    other.write_text("label,image\nhappy,1 2 3\n")
    with pytest.raises(DatasetImportError, match="not a FER2013 CSV: needs columns emotion,pixels"):
        import_source("x", other, tmp_path / "data", LABELS, DATASET)


def test_source_paths_expand_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTIONOPS_TEST_DATA", str(tmp_path))
    assert resolve_source_path("${EMOTIONOPS_TEST_DATA}/fer", Path("/p")) == tmp_path / "fer"
    assert resolve_source_path("rel/dir", Path("/p")) == Path("/p/rel/dir")
    monkeypatch.delenv("EMOTIONOPS_TEST_DATA")
    with pytest.raises(DatasetImportError, match="environment variable not set"):
        resolve_source_path("${EMOTIONOPS_TEST_DATA}/fer", Path("/p"))


# Clean + split over imports --------------------------------------------------------------------
def test_clean_imports_resizes_dedupes_and_rejects_blank_faces(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    src = write_classes(tmp_path / "src", {"happy": 2, "sad": 1, "angry": 1})
    info = PngInfo()
    info.add_text("Comment", "same pixels, other bytes")
    Image.fromarray(face(100)).save(src / "sad" / "copy_of_sad_0.png", pnginfo=info)
    # A BMP is stored as PNG: the same pixels as happy_1 give the same bytes -> one image.
    Image.fromarray(face(1)).save(src / "happy" / "again.bmp")
    Image.fromarray(np.full((60, 40), 90, np.uint8)).save(src / "sad" / "blank.png")
    data = tmp_path / "data"
    import_source("x", src, data, LABELS, DATASET)
    result = clean_imports(data, data / "faces", LABELS, DATASET, face_size=32)
    by_reason = {r.reason.split(" ")[0]: r for r in result.records if r.status == "rejected"}
    assert result.ignored == 1  # the angry face
    assert set(by_reason) == {"exact", "blank:"}
    accepted = [r for r in result.records if r.status == "accepted"]
    assert len(accepted) == 3 and all(r.n_faces == 1 and r.phash for r in accepted)
    for r in accepted:
        crop = np.asarray(Image.open(data / "faces" / r.face_path))
        assert crop.shape == (32, 32) and r.face_path == f"{r.label}/{r.sha256}.png"


def test_stage_clean_and_split_over_imports_keep_official_test_images_in_test(
    tmp_path: Path,
) -> None:
    from emotionops.pipeline import DataPaths, stage_clean, stage_split
    from emotionops.settings import Settings

    src = tmp_path / "fer2013"
    write_classes(src / "train", {"happy": 12, "sad": 12, "angry": 3})
    write_classes(src / "test", {"happy": 4, "sad": 4}, seed=900)
    settings = Settings(project_dir=tmp_path / "project")
    params = Params()
    paths = DataPaths(settings.data_path)
    import_source("fer", src, paths.root, params.labels, params.dataset)

    counts = stage_clean(settings, params)
    assert counts["accepted"] == 32 and counts["ignored (dataset.ignore)"] == 3
    stage_split(settings, params)
    split = {r["sha256"]: r for r in read_records(paths.split_csv)}
    manifest = read_records(paths.imports / "fer.csv")
    for row in manifest:
        if row["source_label"] == "angry":
            assert row["sha256"] not in split
            continue
        want = {"test"} if row["split"] == "test" else {"train", "val"}
        assert split[row["sha256"]]["split"] in want, row
    stats = (paths.dataset_stats).read_text()
    assert '"test": 8' in stats

    # Seven labels: the same imports, angry now kept; no re-import needed.
    seven = Params(labels=["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"])
    assert stage_clean(settings, seven)["accepted"] == 35
