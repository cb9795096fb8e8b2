"""Edge benchmark (issue 15): our edge loop vs the seed scripts' naive loop, per shared video.

Naive (the seeds): the Haar cascade on every full frame, one Keras `model.predict` per face.
Ours: `emotionops.edge.service.run_edge` with the params.yaml detector, tracker and TFLite
classifier, on the same frames and the same model: the one params.yaml deploys (its network,
mirror averaging and partner networks). Each is run pinned to 1 core and to 2
cores (`taskset`, in a child process each), so every figure is a ratio measured side by side
in one run. Also `/predict` of the inference API on a 640x480 photo with one face.

    .venv/bin/python bench/edge_fps.py [--data ../shared/data] [--quick] [--cores 1,2]

Columns: frames/s (decode included), per-frame latency p50/p95 (decode excluded; ours
detects on every k-th frame only, so its median frame is tracker work), faces found per
frame the detector ran on, faces in view per frame (naive: its detections; ours: confirmed
tracks, which start after `tracking.min_hits` detections), and the share of frames with
faces in which every face carried a label. The CPU and its vector extensions come first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
TARGETS = (
    "ours >= 10x naive frames/s on every video; every tracked face labelled; no fewer faces "
    "than naive on the close-ups (fei_*); >= 25 fps on fnp_video.mp4 (1080p) on 2 cores, "
    ">= 10 on 1 core; /predict p95 < 100 ms on 2 cores"
)


def cpu_line() -> str:
    from emotionops.training.hardware import cpu_flags, cpu_model

    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    flags = cpu_flags()
    return f"{cpu_model()} ({', '.join(f for f in wanted if f in flags) or 'no AVX'})"


def build_models(out: Path, image_size: int, labels: list[str]) -> tuple[Any, Path]:
    """The model params.yaml deploys (network + mirror + partner networks; the network
    untrained: speed does not depend on weights), as Keras and as TFLite."""
    from emotionops.params import load_params
    from emotionops.training.export import export_tflite
    from emotionops.training.models import build_model, build_partners, inference_model

    train = load_params(ROOT / "params.yaml").train
    network = build_model(train.model, image_size, len(labels), seed=0, dropout=train.dropout)
    partners = build_partners(train, labels)
    model = inference_model(network, image_size, train.flip_average, partners)
    export_tflite(model, out / "tflite", labels, image_size)
    return model, out / "tflite"


def percentiles(values: list[float]) -> tuple[float, float]:
    import numpy as np

    if not values:
        return float("nan"), float("nan")
    p50, p95 = np.percentile(np.asarray(values) * 1000, [50, 95])
    return float(p50), float(p95)


def run_naive(video: Path, model: Any, image_size: int, max_frames: int) -> dict[str, Any]:
    import cv2
    import numpy as np

    from emotionops.clean.faces import FaceBox, crop_face

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    cap = cv2.VideoCapture(str(video))
    latencies, faces, labelled, with_faces, n = [], [], 0, 0, 0
    began = time.perf_counter()
    while n < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        for x, y, w, h in found:
            crop = crop_face(gray, FaceBox(int(x), int(y), int(w), int(h)), image_size, 0.15)
            model.predict(crop[None, ..., None].astype(np.float32), verbose=0)
        latencies.append(time.perf_counter() - t0)
        faces.append(len(found))
        if len(found):
            with_faces += 1
            labelled += 1  # every face it found got a prediction
        n += 1
    seconds = time.perf_counter() - began
    cap.release()
    return summary(n, seconds, latencies, faces, labelled, with_faces)


def run_ours(video: Path, tflite_dir: Path, max_frames: int, threads: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    from emotionops.edge.classifier import load_model_dir
    from emotionops.edge.detect import make_edge_detector
    from emotionops.edge.service import run_edge
    from emotionops.params import load_params

    params = load_params(ROOT / "params.yaml")
    edge = params.edge
    detection = edge.detection.model_copy(update={"num_threads": threads})
    classifier = load_model_dir(tflite_dir, version="bench", num_threads=threads)
    latencies: list[float] = []
    faces: list[int] = []
    found: list[int] = []  # detector faces on the frames it ran on
    counts = {"labelled": 0, "with_faces": 0}

    def on_frame(frame, tracks, seconds, detected) -> None:
        latencies.append(seconds)
        faces.append(len(tracks))
        if detected is not None:
            found.append(detected)
        if tracks:
            counts["with_faces"] += 1
            counts["labelled"] += all(t.label is not None for t in tracks)

    began = time.perf_counter()
    run_edge(
        str(video),
        classifier,
        make_edge_detector(detection),
        edge,
        datetime(2026, 1, 1, tzinfo=UTC),
        max_frames=max_frames,
        on_frame=on_frame,
        face_margin=params.images.face_margin,
    )
    seconds = time.perf_counter() - began
    result = summary(
        len(latencies), seconds, latencies, faces, counts["labelled"], counts["with_faces"]
    )
    result["found_per_frame"] = sum(found) / max(len(found), 1)
    return result


def summary(n, seconds, latencies, faces, labelled, with_faces) -> dict[str, Any]:
    p50, p95 = percentiles(latencies)
    return {
        "found_per_frame": sum(faces) / max(n, 1),  # the naive loop detects on every frame
        "frames": n,
        "fps": n / seconds if seconds else 0.0,
        "p50_ms": p50,
        "p95_ms": p95,
        "faces_per_frame": sum(faces) / max(n, 1),
        "labelled_share": labelled / with_faces if with_faces else float("nan"),
    }


def run_predict(threads: int, requests: int) -> dict[str, Any]:
    """/predict latency through the real app (in-process ASGI client), one-face photo."""
    import cv2

    photo = _one_face_photo()
    if photo is None:
        return {"skipped": "no one-face photo in the data folder"}
    ok, jpeg = cv2.imencode(".jpg", photo)
    assert ok
    from fastapi.testclient import TestClient

    from emotionops.api.app import create_app
    from emotionops.params import load_params
    from emotionops.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        _, tflite_dir = build_models(Path(tmp), 48, ["happy", "sad", "surprise", "neutral"])
        settings = Settings(data_dir=Path(tmp) / "data", api_model_dir=tflite_dir)
        app = create_app(settings, load_params(ROOT / "params.yaml"))
        latencies = []
        with TestClient(app) as client:
            for i in range(requests + 5):
                t0 = time.perf_counter()
                r = client.post("/predict", files={"file": ("p.jpg", jpeg.tobytes(), "image/jpeg")})
                if i >= 5:  # warm-up excluded
                    latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
        p50, p95 = percentiles(latencies)
        return {"p50_ms": p50, "p95_ms": p95, "rps": len(latencies) / sum(latencies),
                "faces": len(r.json()["faces"])}  # fmt: skip


def _one_face_photo():
    import cv2

    data = Path(os.environ.get("BENCH_DATA", ROOT.parent / "shared" / "data"))
    path = data / "photos" / "fr_obama.jpg"
    image = cv2.imread(str(path))
    return None if image is None else cv2.resize(image, (640, 480))


def child(args: argparse.Namespace) -> None:
    """One configuration, pinned by the parent; prints JSON."""
    threads = int(args.threads)
    import cv2

    cv2.setNumThreads(threads)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model, tflite_dir = build_models(Path(tmp), 48, ["happy", "sad", "surprise", "neutral"])
        for video in args.videos:
            v = Path(video)
            run_ours(v, tflite_dir, 5, threads)  # warm-up: imports, interpreters, first calls
            run_naive(v, model, 48, 5)
            out[v.name] = {
                "ours": run_ours(v, tflite_dir, args.max_frames, threads),
                "naive": run_naive(v, model, 48, args.max_frames),
            }
    if args.predict:
        out["/predict"] = run_predict(threads, args.predict)
    print("BENCH-JSON " + json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.environ.get("EMOTIONOPS_REAL_DATA", str(ROOT.parent / "shared" / "data")),
    )
    parser.add_argument("--quick", action="store_true", help="30 frames per video, 1 and 2 cores")
    parser.add_argument("--cores", default="1,2", help="comma-separated core counts to pin to")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", default="2", help=argparse.SUPPRESS)
    parser.add_argument("--videos", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--max-frames", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.add_argument("--predict", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    if args.child:
        child(args)
        return 0
    videos = sorted((Path(args.data) / "videos").glob("*"))
    if not videos:
        print(f"no videos in {args.data}/videos: give --data (the shared data folder)")
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    console.print(f"CPU: {cpu_line()}; {os.cpu_count()} cores visible")
    results = {}
    for cores in [int(c) for c in args.cores.split(",")]:
        cpus = ",".join(str(i) for i in range(cores))
        cmd = ["taskset", "-c", cpus, sys.executable, __file__, "--child", "--threads", str(cores),
               "--max-frames", "30" if args.quick else "10000",
               "--predict", "20" if args.quick else "200", "--videos", *map(str, videos)]  # fmt: skip
        env = {**os.environ, "BENCH_DATA": args.data, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH-JSON ")), None)
        if line is None:
            console.print(done.stdout[-3000:], done.stderr[-3000:])
            return 1
        results[cores] = json.loads(line.removeprefix("BENCH-JSON "))

    table = Table(
        title="EmotionOps edge: ours vs the naive loop" + (" (quick)" if args.quick else "")
    )
    for col in (
        "video",
        "cores",
        "who",
        "fps",
        "x naive",
        "p50 ms",
        "p95 ms",
        "found",
        "in view",
        "labelled",
    ):
        table.add_column(col, justify="right" if col not in ("video", "who") else "left")
    for cores, per_video in results.items():
        for name, r in per_video.items():
            if name == "/predict":
                continue
            for who in ("ours", "naive"):
                m = r[who]
                ratio = m["fps"] / r["naive"]["fps"] if r["naive"]["fps"] else float("nan")
                table.add_row(name, str(cores), who, f"{m['fps']:.1f}",
                              f"{ratio:.1f}x" if who == "ours" else "", f"{m['p50_ms']:.2f}",
                              f"{m['p95_ms']:.1f}", f"{m['found_per_frame']:.2f}",
                              f"{m['faces_per_frame']:.2f}",
                              f"{m['labelled_share']:.0%}" if m["labelled_share"] == m["labelled_share"] else "-")  # fmt: skip
    console.print(table)
    for cores, per_video in results.items():
        p = per_video.get("/predict", {})
        if "p95_ms" in p:
            console.print(f"/predict, {cores} core(s): p50 {p['p50_ms']:.1f} ms, p95 "
                          f"{p['p95_ms']:.1f} ms, {p['rps']:.1f} requests/s, {p['faces']} face(s)")  # fmt: skip
        elif p:
            console.print(f"/predict, {cores} core(s): {p.get('skipped')}")
    console.print(f"targets: {TARGETS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
