"""Edge face-detector benchmark: Haar vs BlazeFace short / full range on the shared photos and
videos, each detector as `make_edge_detector` builds it from the params.yaml defaults.

For every photo and video (its first --frames frames) and every detector: the median time per
frame of `detect` (decoding the video is not timed), the faces found per frame, and the
frames with at least one face. The figures choose `edge.detection.detector` in params.yaml.
Timings are of this machine (its CPU is printed): compare detectors within one run.

    .venv/bin/python bench/edge_detectors.py [--quick] [--data DIR] [--frames N]
        [--detectors haar,blazeface_short,blazeface_full] [--threads N]

Data: --data, else $EMOTIONOPS_REAL_DATA, else ../shared/data beside the repository (the
tests' convention); it must hold photos/ and videos/. Nothing is downloaded, nothing written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DETECTORS = ("haar", "blazeface_short", "blazeface_full")
PHOTO_REPEATS = 5  # a photo is one frame: time it a few times for a steady median


@dataclass
class Run:
    """One detector on one source."""

    ms: list[float] = field(default_factory=list)
    faces: list[int] = field(default_factory=list)

    def cell(self) -> str:
        if not self.ms:
            return "-"
        hit = sum(1 for n in self.faces if n)
        mean = sum(self.faces) / len(self.faces)
        return f"{statistics.median(self.ms):6.1f} ms  {mean:4.2f}  {hit:>3}/{len(self.faces)}"


def data_root(option: str | None) -> Path:
    default = REPO.parent / "shared" / "data"
    return Path(option or os.environ.get("EMOTIONOPS_REAL_DATA") or default).resolve()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def frames_of(path: Path, limit: int):
    """Frames of a photo (one) or of a video (its first `limit`), decoded one at a time."""
    import cv2

    if path.parent.name == "photos":
        image = cv2.imread(str(path))
        if image is not None:
            yield image
        return
    capture = cv2.VideoCapture(str(path))
    try:
        for _ in range(limit):
            ok, frame = capture.read()
            if not ok:
                break
            yield frame
    finally:
        capture.release()


def measure(detectors: dict, path: Path, limit: int) -> tuple[str, dict[str, Run]]:
    runs = {name: Run() for name in detectors}
    shape = "?"
    repeats = PHOTO_REPEATS if path.parent.name == "photos" else 1
    for frame in frames_of(path, limit):
        shape = f"{frame.shape[1]}x{frame.shape[0]}"
        for name, detector in detectors.items():
            for _ in range(repeats):
                started = time.perf_counter()
                found = detector.detect(frame)
                runs[name].ms.append((time.perf_counter() - started) * 1e3)
            runs[name].faces.append(len(found))
    return shape, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 frames per video, 3 photos")
    parser.add_argument("--data", help="folder with photos/ and videos/")
    parser.add_argument("--frames", type=int, default=150, help="frames per video")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--threads", type=int, help="BlazeFace threads (default: params.yaml)")
    args = parser.parse_args(argv)
    root = data_root(args.data)
    photos = sorted((root / "photos").glob("*"))
    videos = sorted((root / "videos").glob("*"))
    if not photos and not videos:
        print(
            f"no photos/ or videos/ in {root}: set EMOTIONOPS_REAL_DATA or --data", file=sys.stderr
        )
        return 2
    if args.quick:
        photos, args.frames = photos[:3], min(args.frames, 20)

    from rich.console import Console
    from rich.table import Table

    from emotionops.edge.detect import make_edge_detector
    from emotionops.params import load_params

    base = load_params(REPO / "params.yaml").edge.detection
    if args.threads:
        base = base.model_copy(update={"num_threads": args.threads})
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector(s) {unknown}; choose from {', '.join(DETECTORS)}")
    detectors = {n: make_edge_detector(base.model_copy(update={"detector": n})) for n in names}

    console = Console(width=160)  # wide enough when piped to a log
    console.print(
        f"CPU: {cpu_model()} ({os.cpu_count()} cores); params.yaml edge.detection: "
        f"max_side={base.max_side} min_score={base.min_score} min_face_side={base.min_face_side} "
        f"num_threads={base.num_threads} nms_iou={base.nms_iou}; default detector: {base.detector}"
    )
    table = Table(
        title="Edge face detectors: p50 ms/frame, faces per frame, frames with >=1 face"
        + (" (quick)" if args.quick else "")
    )
    table.add_column("source")
    table.add_column("size")
    for name in names:
        table.add_column(name, justify="right")
    totals = {kind: {n: Run() for n in names} for kind in ("photos", "videos")}
    for path in [*photos, *videos]:
        print(f"measuring {path.name} ...", file=sys.stderr, flush=True)
        shape, runs = measure(detectors, path, args.frames)
        table.add_row(path.name, shape, *(runs[n].cell() for n in names))
        for n in names:
            totals[path.parent.name][n].ms += runs[n].ms
            totals[path.parent.name][n].faces += runs[n].faces
        if photos and path == photos[-1]:
            table.add_section()
    table.add_section()
    for kind, runs in totals.items():
        table.add_row(f"all {kind}", "", *(runs[n].cell() for n in names))
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
