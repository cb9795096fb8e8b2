"""Every input a user can cause ends in one clear line and exit code 2: never a traceback,
never a hang, and nothing written. Table-driven over the CLI entries that read user input
(import, download, clean, split, validate, warehouse, train, evaluate, edge, params and
settings); each case builds its hostile input in a fresh project, runs the real CLI in a
subprocess with a time bound, and compares the project's files before and after."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

EMOTIONOPS = Path(sys.executable).with_name("emotionops")
REPO = Path(__file__).resolve().parents[2]
BOUND_S = 90  # a case that has not ended by then hangs (a FIFO read, a silent server)
DAY = "2026-01-01"


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A ~100-byte PNG whose header claims width x height pixels (400 Mpx by default)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1) * 2))
        + chunk(b"IEND", b"")
    )


def face(path: Path, shade: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.effect_noise((48, 48), 40).point(lambda v: (v + shade) % 256)
    img.save(path)
    return path


def dataset(root: Path) -> Path:
    """A valid class-folder dataset, so each case differs from it by one bad input."""
    for label, shade in (("happy", 60), ("sad", 140)):
        face(root / "faces" / label / "a.png", shade)
    return root / "faces"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below `root` (links and special files included) with its size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            out[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return out


@dataclass
class Case:
    id: str
    args: list[str] | Callable[[Path], list[str]]
    needles: list[str]
    make: Callable[[Path], object] = lambda root: None
    env: dict[str, str] = field(default_factory=dict)


def _fer_csv(body: bytes) -> Callable[[Path], object]:
    return lambda root: write(root / "fer.csv", b"emotion,pixels,Usage\n" + body)


def _manifest(text: bytes | str) -> Callable[[Path], object]:
    return lambda root: write(root / f"data/manifests/run_date={DAY}/urls.csv", text)


def _downloads(text: str) -> Callable[[Path], object]:
    return lambda root: write(root / f"data/downloads/downloads_{DAY}.csv", text)


def _fifo(rel: str) -> Callable[[Path], object]:
    def make(root: Path) -> None:
        dataset(root)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(root / rel)

    return make


def _link(rel: str, target: Callable[[Path], Path]) -> Callable[[Path], object]:
    def make(root: Path) -> None:
        dataset(root)
        (root / rel).symlink_to(target(root))

    return make


def _with(rel: str, data: bytes) -> Callable[[Path], object]:
    def make(root: Path) -> None:
        dataset(root)
        write(root / rel, data)

    return make


def _sparse(rel: str, size: int) -> Callable[[Path], object]:
    def make(root: Path) -> None:
        dataset(root)
        with (root / rel).open("wb") as fh:
            fh.truncate(size)

    return make


def _bad_tflite(root: Path) -> None:
    dataset(root)
    write(root / "model/model.tflite", b"not a flatbuffer")
    write(root / "model/labels.json", '{"labels": ["happy", "sad"], "image_size": 48}')


GOOD_URL = "http://images.example/a.jpg"
CASES = [
    # import: folders with files that are no images, or no files at all
    Case("import-bomb", ["import", "faces"], ["faces/happy/big.png", "dataset.max_pixels"],
         _with("faces/happy/big.png", png_bomb())),
    Case("import-fifo", ["import", "faces"], ["faces/sad/pipe.png", "not a regular file (a FIFO)"],
         _fifo("faces/sad/pipe.png")),
    Case("import-device", ["import", "faces"], ["zero.png", "a character device"],
         _link("faces/happy/zero.png", lambda root: Path("/dev/zero"))),
    Case("import-link-out", ["import", "faces"], ["out.png", "outside the dataset folder"],
         _link("faces/happy/out.png", lambda root: face(root / "elsewhere" / "x.png"))),
    Case("import-huge-file", ["import", "faces"], ["huge.png", "dataset.max_file_bytes"],
         _sparse("faces/happy/huge.png", 30_000_000)),
    Case("import-empty-file", ["import", "faces"], ["empty.png", "not a readable image"],
         _with("faces/sad/empty.png", b"")),
    Case("import-corrupt", ["import", "faces"], ["half.png", "not a readable image"],
         _with("faces/sad/half.png", png_bomb(48, 48)[:40])),
    Case("import-missing", ["import", "nowhere"], ["nowhere", "neither a folder"]),
    Case("import-csv-latin1", ["import", "fer.csv"], ["fer.csv", "not a readable CSV"],
         _fer_csv(b"0,\xe9\xe8 1 2,Training\n")),
    Case("import-csv-nul", ["import", "fer.csv"], ["fer.csv:2", "pixels has 3 values"],
         _fer_csv(b"0,1 2\x00 3,Training\n")),
    Case("import-csv-huge-field", ["import", "fer.csv"], ["fer.csv", "field larger than field limit"],
         _fer_csv(b"0," + b"1 " * 100_000 + b",Training\n")),
    Case("import-csv-bad-row", ["import", "fer.csv"], ["fer.csv:2", "emotion 'x' is not 0-6"],
         _fer_csv(b"x," + b"1 " * 2304 + b",Training\n")),
    # download and clean: manifests and records a person broke
    Case("download-manifest-binary", ["download", "--run-date", DAY],
         ["urls.csv", "not a readable CSV"], _manifest(b"\xff\xfe\x00garbage\n")),
    Case("download-manifest-columns", ["download", "--run-date", DAY],
         ["urls.csv", "missing column(s) ['image_url']"], _manifest("label,query\nhappy,x\n")),
    Case("download-allow-hosts-json", ["download", "--run-date", DAY],
         ["EMOTIONOPS_DOWNLOAD_ALLOW_HOSTS", "not a JSON list"],
         env={"EMOTIONOPS_DOWNLOAD_ALLOW_HOSTS": '["unclosed'}),
    Case("download-allow-hosts-port", ["download", "--run-date", DAY],
         ["EMOTIONOPS_DOWNLOAD_ALLOW_HOSTS", "'stand-in:99999'", "port must be"],
         env={"EMOTIONOPS_DOWNLOAD_ALLOW_HOSTS": "localhost,stand-in:99999"}),
    Case("download-ca-bundle", ["download", "--run-date", DAY],
         ["EMOTIONOPS_DOWNLOAD_CA_BUNDLE=/nonexistent/ca.pem"],
         _manifest(f"label,image_url\nhappy,{GOOD_URL}\n"),
         env={"EMOTIONOPS_DOWNLOAD_CA_BUNDLE": "/nonexistent/ca.pem"}),
    Case("clean-records-columns", ["clean"], [f"downloads_{DAY}.csv", "missing column(s)"],
         _downloads("url,label\nhttp://a.example/x.jpg,happy\n")),
    Case("split-images-csv", ["split"], ["images.csv", "missing column(s)"],
         lambda root: write(root / "data/images.csv", "sha256,label\nab,happy\n")),
    Case("validate-images-csv", ["validate", "data"], ["images.csv", "not a readable CSV"],
         lambda root: (write(root / "data/images.csv", b"sha256\n\x00\xff\n"),
                       write(root / "data/split.csv", "path,label,split,sha256\n"))),
    # the warehouse: URLs and settings
    Case("warehouse-port", ["warehouse", "init"], ["EMOTIONOPS_WAREHOUSE_URL", "abc"],
         env={"EMOTIONOPS_WAREHOUSE_URL": "postgresql+psycopg://u@db-host:abc/emotions"}),
    Case("warehouse-backend", ["warehouse", "init"], ["unsupported warehouse backend 'mysql'"],
         env={"EMOTIONOPS_WAREHOUSE_URL": "mysql://u@db-host/emotions"}),
    Case("warehouse-timeout", ["warehouse", "init"], ["EMOTIONOPS_WAREHOUSE_CONNECT_TIMEOUT_S"],
         env={"EMOTIONOPS_WAREHOUSE_CONNECT_TIMEOUT_S": "soon"}),
    Case("warehouse-down", ["warehouse", "init"], ["cannot connect to the warehouse"],
         env={"EMOTIONOPS_WAREHOUSE_URL": "postgresql+psycopg://u@127.0.0.1:9/emotions"}),
    # training and evaluation
    Case("train-no-split", ["train"], ["split.csv", "emotionops version-data"],
         env={"EMOTIONOPS_MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    Case("evaluate-tracking-down", ["evaluate", "--data", "faces"],
         ["http://127.0.0.1:9", "not reachable"], dataset,
         env={"EMOTIONOPS_MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    Case("evaluate-not-tflite", ["evaluate", "--model", "model/model.tflite", "--data", "faces"],
         ["model.tflite", "not a loadable TFLite model"], _bad_tflite),
    Case("evaluate-missing-model", ["evaluate", "--model", "nope.keras", "--data", "faces"],
         ["nope.keras", "no such model file"], dataset),
    # the edge: a registry that is down and nothing cached
    Case("edge-registry-down", ["edge", "run", "--tracking-uri", "http://127.0.0.1:9"],
         ["http://127.0.0.1:9", "unreachable", "no cached model"]),
    # params.yaml and settings, read by every command
    Case("params-not-utf8", ["split"], ["params.yaml", "not UTF-8"],
         lambda root: write(root / "params.yaml", b"labels: [\xff\xfe]\n")),
    Case("params-fifo", ["split"], ["params.yaml", "not a regular file"],
         lambda root: ((root / "params.yaml").unlink(), os.mkfifo(root / "params.yaml"))),
    Case("params-not-yaml", ["split"], ["params.yaml", "not valid YAML"],
         lambda root: write(root / "params.yaml", "labels: [happy, sad\n")),
    Case("params-bad-key", ["split"], ["params.yaml", "dataset.max_pixels"],
         lambda root: write(root / "params.yaml", "dataset: {max_pixels: 3}\n")),
    Case("settings-environment", ["split"], ["EMOTIONOPS_ENVIRONMENT"],
         env={"EMOTIONOPS_ENVIRONMENT": "staging"}),
]  # fmt: skip


def run_cli(project: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONOPS_")}
    base.update({"EMOTIONOPS_PROJECT_DIR": str(project), "COLUMNS": "250", **env})
    try:
        return subprocess.run(
            [str(EMOTIONOPS), *args], cwd=project, env=base, capture_output=True, text=True,
            timeout=BOUND_S, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"`emotionops {' '.join(args)}` hung for {BOUND_S} s")


def assert_one_clear_line(result: subprocess.CompletedProcess, needles: list[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_in_bounded_time_and_writes_nothing(
    case: Case, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    case.make(project)
    before = snapshot(project)
    args = case.args(project) if callable(case.args) else case.args
    result = run_cli(project, args, case.env)
    assert_one_clear_line(result, case.needles)
    assert snapshot(project) == before, "a refused input must not write anything"


def test_skip_bad_lists_every_skipped_file_with_its_reason(tmp_path: Path) -> None:
    """--skip-bad imports what is readable, names every file it left out and why, and writes
    the list beside the import manifest."""
    project = tmp_path / "project"
    _fifo("faces/sad/pipe.png")(project)
    write(project / "faces/happy/big.png", png_bomb())
    write(project / "faces/sad/empty.png", b"")
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    started = time.monotonic()
    result = run_cli(project, ["import", "faces", "--skip-bad"], {})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < BOUND_S
    out = " ".join(result.stderr.split())
    assert "2 images" in out and "skipped 3 unreadable file(s)" in out
    for name, reason in (
        ("happy/big.png", "dataset.max_pixels"),
        ("sad/pipe.png", "a FIFO"),
        ("sad/empty.png", "not a readable image"),
    ):
        assert name in out and reason in out
    listed = (project / "data/imports/skipped/faces.csv").read_text()
    assert listed.count("\n") == 4 and "pipe.png" in listed and "big.png" in listed
    # a clean re-import of the same source drops the stale list
    (project / "faces/sad/pipe.png").unlink()
    (project / "faces/happy/big.png").unlink()
    (project / "faces/sad/empty.png").unlink()
    assert run_cli(project, ["import", "faces"], {}).returncode == 0
    assert not (project / "data/imports/skipped/faces.csv").exists()


def test_a_folder_made_of_links_imports_with_follow_links(tmp_path: Path) -> None:
    """A subset built of links into a bigger dataset: refused by default, read with the flag;
    a link to a device stays refused either way."""
    project = tmp_path / "project"
    elsewhere = dataset(tmp_path / "shared")
    for label in ("happy", "sad"):
        (project / "subset" / label).mkdir(parents=True)
        (project / "subset" / label / "a.png").symlink_to(elsewhere / label / "a.png")
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert_one_clear_line(run_cli(project, ["import", "subset"], {}), ["--follow-links"])
    linked = run_cli(project, ["import", "subset", "--follow-links"], {})
    assert linked.returncode == 0 and "2 images" in linked.stderr, linked.stderr
    (project / "subset" / "sad" / "zero.png").symlink_to("/dev/zero")
    refused = run_cli(project, ["import", "subset", "--follow-links"], {})
    assert_one_clear_line(refused, ["zero.png", "a character device"])


def test_debug_shows_the_full_traceback_of_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    for args, env in (
        (["--debug", "import", "nowhere"], {}),
        (["import", "nowhere"], {"EMOTIONOPS_DEBUG": "1"}),
    ):
        result = run_cli(tmp_path, args, env)
        assert result.returncode == 1
        assert "Traceback" in result.stderr and "DatasetImportError:" in result.stderr
        assert "nowhere: neither a folder" in result.stderr


def test_a_genuine_bug_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only errors a user can cause become one line: a bug in a stage propagates."""
    from emotionops import cli, pipeline
    from emotionops.settings import get_settings

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.setenv("EMOTIONOPS_PROJECT_DIR", str(tmp_path))
    get_settings.cache_clear()

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "stage_split", broken)
    monkeypatch.setattr(sys, "argv", ["emotionops", "split"])
    with pytest.raises(ZeroDivisionError, match="a bug"):
        cli.main()
    get_settings.cache_clear()

    def unreadable() -> None:  # what a stage meets on a file it may not read
        raise PermissionError(13, "Permission denied", "/data/x.csv")

    monkeypatch.setattr(cli, "app", unreadable)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "error: /data/x.csv: Permission denied" in capsys.readouterr().err
