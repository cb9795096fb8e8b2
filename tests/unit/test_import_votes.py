"""`import --votes`: a vote table carried from the import manifest through images.csv and
split.csv into the warehouse; bad tables named by row, or skipped and listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_import import write_classes
from test_import_cli import clear_error, run

from emotionops.dataset.importers import import_source
from emotionops.dataset.split import VOTES_COLUMN
from emotionops.dataset.votes import VoteTableError
from emotionops.files import read_records
from emotionops.params import Params

FERPLUS_HEADER = (
    "split,file,ferplus_name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,"
    "unknown,NF"
)


def fer_layout(root: Path) -> Path:
    """FER2013's image-folder layout: train/<class>/ and publictest/<class>/."""
    write_classes(root / "train", {"happy": 3, "sad": 3, "angry": 1})
    write_classes(root / "publictest", {"happy": 2, "sad": 2}, seed=900)
    return root


def ferplus(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([FERPLUS_HEADER, *rows]) + "\n")
    return path


#: votes for every image of fer_layout but publictest/sad/sad_1.png (which has none).
GOOD_ROWS = (
    "Training,train/happy/happy_0.png,a,1,8,0,0,0,0,0,0,1,0",
    "Training,train/happy/happy_1.png,a,0,10,0,0,0,0,0,0,0,0",
    "Training,train/happy/happy_2.png,a,4,4,0,0,0,0,0,0,2,0",
    "Training,train/sad/sad_0.png,a,2,0,0,7,0,0,0,1,0,0",
    "Training,train/sad/sad_1.png,a,0,0,0,6,0,0,0,4,0,0",
    "Training,train/sad/sad_2.png,a,0,0,0,0,0,0,0,0,0,10",
    "Training,train/angry/angry_0.png,a,0,0,0,0,9,0,1,0,0,0",
    "PublicTest,publictest/happy/happy_0.png,a,0,9,1,0,0,0,0,0,0,0",
    "PublicTest,publictest/happy/happy_1.png,a,3,7,0,0,0,0,0,0,0,0",
    "PublicTest,publictest/sad/sad_0.png,a,5,0,0,5,0,0,0,0,0,0",
)


def test_votes_go_from_the_manifest_to_images_and_split(tmp_path: Path) -> None:
    from emotionops.pipeline import DataPaths, stage_clean, stage_split
    from emotionops.settings import Settings

    src = fer_layout(tmp_path / "fer2013")
    settings = Settings(project_dir=tmp_path / "project")
    params = Params()
    paths = DataPaths(settings.data_path)
    table = ferplus(tmp_path / "ferplus.csv", *GOOD_ROWS)
    report = import_source("fer", src, paths.root, params.labels, params.dataset, votes=table)
    assert (report.n_with_votes, report.n_without_votes) == (10, 1)
    assert "votes for 10 images, 1 images have no votes" in report.summary()
    manifest = {r["origin"]: r for r in read_records(paths.imports / "fer.csv")}
    assert json.loads(manifest["train/happy/happy_0.png"]["votes"]) == {
        "-": 1, "happy": 8, "neutral": 1
    }  # fmt: skip
    assert json.loads(manifest["train/sad/sad_1.png"]["votes"]) == {"contempt": 4, "sad": 6}
    assert manifest["publictest/sad/sad_1.png"]["votes"] == ""

    stage_clean(settings, params)
    images = {r["sha256"]: r for r in read_records(paths.images_csv)}
    for row in manifest.values():  # angry is left out (dataset.ignore) with its votes
        assert row["source_label"] == "angry" or images[row["sha256"]]["votes"] == row["votes"]
    stage_split(settings, params)
    split = read_records(paths.split_csv)
    assert list(split[0]) == ["path", "label", "split", "sha256", VOTES_COLUMN]
    by_sha = {r["sha256"]: r for r in split}
    assert len(by_sha) == 10
    for row in manifest.values():
        if row["source_label"] != "angry":
            assert by_sha[row["sha256"]]["votes"] == row["votes"]
    test_rows = [r for r in split if r["split"] == "test"]
    assert len(test_rows) == 4 and sum(1 for r in test_rows if r["votes"]) == 3


def test_a_split_without_votes_keeps_its_four_columns(tmp_path: Path) -> None:
    from emotionops.pipeline import DataPaths, stage_clean, stage_split
    from emotionops.settings import Settings

    src = fer_layout(tmp_path / "fer2013")
    settings = Settings(project_dir=tmp_path / "project")
    params = Params()
    paths = DataPaths(settings.data_path)
    import_source("fer", src, paths.root, params.labels, params.dataset)
    assert "votes" not in read_records(paths.imports / "fer.csv")[0]
    stage_clean(settings, params)
    stage_split(settings, params)
    assert list(read_records(paths.split_csv)[0]) == ["path", "label", "split", "sha256"]


def test_generic_table_with_a_mapping(tmp_path: Path) -> None:
    src = write_classes(tmp_path / "src", {"happy": 2, "sad": 1})
    table = tmp_path / "votes.csv"
    table.write_text(
        "file,happy,sad,joy,unsure\nhappy/happy_0.png,3,0,2,1\nhappy/happy_1.png,0,1,4,0\n"
        "sad/sad_0.png,0,5,0,0\n"
    )
    params = Params()
    with pytest.raises(VoteTableError, match=r"\['joy', 'unsure'\] are neither labels"):
        import_source("s", src, tmp_path / "data", params.labels, params.dataset, votes=table)
    import_source(
        "s", src, tmp_path / "data", params.labels, params.dataset,
        votes=table, vote_map={"joy": "happy", "unsure": None},
    )  # fmt: skip
    rows = {r["origin"]: r["votes"] for r in read_records(tmp_path / "data/imports/s.csv")}
    assert json.loads(rows["happy/happy_0.png"]) == {"happy": 5, "-": 1}
    assert json.loads(rows["happy/happy_1.png"]) == {"happy": 4, "sad": 1}


BAD_ROWS = [
    ("Training,train/happy/happy_0.png,a,1,x,0,0,0,0,0,0,1,0", r"row 2 \(train/happy/happy_0.png\): 'x' is not a vote count"),
    ("Training,train/happy/happy_0.png,a,1,-3,0,0,0,0,0,0,1,0", r"row 2 \(train/happy/happy_0.png\): '-3' is not a vote count"),
    ("Training,train/happy/happy_0.png,a,0,0,0,0,0,0,0,0,0,0", r"row 2 \(train/happy/happy_0.png\): no votes"),
    ("Training,,a,0,10,0,0,0,0,0,0,0,0", r"row 2: no file name"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_a_bad_row_is_named_and_nothing_is_written(tmp_path: Path, row: str, message: str) -> None:
    src = fer_layout(tmp_path / "fer2013")
    table = ferplus(tmp_path / "ferplus.csv", row, *GOOD_ROWS[1:])
    params = Params()
    with pytest.raises(VoteTableError, match=message):
        import_source("fer", src, tmp_path / "data", params.labels, params.dataset, votes=table)
    assert not (tmp_path / "data").exists()


def test_an_unmapped_class_and_an_unknown_file_are_errors(tmp_path: Path) -> None:
    src = fer_layout(tmp_path / "fer2013")
    params = Params()
    generic = tmp_path / "generic.csv"
    generic.write_text("file,happy,meh\ntrain/happy/happy_0.png,3,1\n")
    with pytest.raises(VoteTableError, match=r"\['meh'\] are neither labels.*--vote-map"):
        import_source("fer", src, tmp_path / "data", params.labels, params.dataset, votes=generic)
    table = ferplus(
        tmp_path / "ferplus.csv", *GOOD_ROWS, "Training,train/happy/nope.png,a,0,10,0,0,0,0,0,0,0,0"
    )
    with pytest.raises(VoteTableError, match=r"1 voted files are not in the imported folder.*nope"):
        import_source("fer", src, tmp_path / "data", params.labels, params.dataset, votes=table)
    assert not (tmp_path / "data").exists()
    with pytest.raises(VoteTableError, match="cannot read the vote table"):
        import_source(
            "fer", src, tmp_path / "data", params.labels, params.dataset, votes=tmp_path / "x.csv"
        )


def test_skip_bad_leaves_bad_rows_and_unknown_files_out_and_lists_them(tmp_path: Path) -> None:
    src = fer_layout(tmp_path / "fer2013")
    table = ferplus(
        tmp_path / "ferplus.csv",
        "Training,train/happy/happy_0.png,a,1,x,0,0,0,0,0,0,1,0",
        *GOOD_ROWS[1:],
        "Training,train/happy/nope.png,a,0,10,0,0,0,0,0,0,0,0",
    )
    params = Params()
    report = import_source(
        "fer", src, tmp_path / "data", params.labels, params.dataset, votes=table, skip_bad=True
    )
    assert report.n_images == 11 and (report.n_with_votes, report.n_without_votes) == (9, 2)
    assert len(report.skipped) == 2
    assert "row 2 (train/happy/happy_0.png): 'x' is not a vote count" in report.skipped[0]
    assert "train/happy/nope.png: not an image of" in report.skipped[1]
    listed = [r["reason"] for r in read_records(report.skipped_list)]
    assert listed == report.skipped
    summary = report.summary()
    assert "skipped 2" in summary and "nope.png" in summary


def test_the_cli_imports_votes_and_names_a_bad_row(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "params.yaml").read_text()
    )
    src = write_classes(tmp_path / "src", {"happy": 2, "sad": 1})
    table = tmp_path / "votes.csv"
    table.write_text("file,happy,sad,unsure\nhappy/happy_0.png,3,0,1\nsad/sad_0.png,0,-1,0\n")
    clear_error(
        run(project, "import", str(src), "--votes", str(table), "--vote-map", "unsure="),
        "votes.csv row 3 (sad/sad_0.png): '-1' is not a vote count",
        "--skip-bad",
    )
    ok = run(project, "import", str(src), "--votes", str(table), "--vote-map", "unsure=",
             "--skip-bad")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    flat = " ".join(ok.stderr.split())
    assert "votes for 1 images, 2 images have no votes" in flat
    assert "votes.csv row 3 (sad/sad_0.png): '-1' is not a vote count" in flat
    clear_error(run(project, "import", str(src), "--vote-map", "a=b"), "--vote-map needs --votes")
    clear_error(
        run(project, "import", str(src), "--votes", str(table), "--vote-map", "unsure"),
        "--vote-map entry 'unsure' is not column=label",
    )
