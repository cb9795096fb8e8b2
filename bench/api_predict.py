"""Latency of POST /predict on a 640x480 photo with one face: p50/p95 and requests/s.

Three ways, side by side in one run: the core (decode + detect + classify, no HTTP), the app
in-process (FastAPI's TestClient), and a real uvicorn server on loopback (sequential, then
concurrent clients). Client and server share the machine's cores, so the uvicorn figures are
a floor, not a capacity plan.

    .venv/bin/python bench/api_predict.py [--quick] [--model-dir DIR] [--photo FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def photo_bytes(path: Path | None) -> bytes:
    """The given photo as a 640x480 JPEG, or a drawn face (emotionops' synthetic faces)."""
    import cv2
    import numpy as np

    if path is not None:
        image = cv2.imread(str(path))
        if image is None:
            raise SystemExit(f"cannot read photo {path}")
        image = cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)
    else:
        from emotionops.acquire.scrape.synthetic import make_face

        image = np.full((480, 640, 3), 90, np.uint8)
        image[100:300, 200:400] = make_face("happy", np.random.default_rng(0), 200)[..., None]
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def timed(call: Callable[[], None], n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        out.append((time.perf_counter() - began) * 1000)
    return out


def summary(ms: list[float], wall_s: float | None = None) -> tuple[str, str, str, str]:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    rate = len(ms) / wall_s if wall_s else 1000 / statistics.mean(ms)
    return str(len(ms)), f"{statistics.median(ms):.1f}", f"{p95:.1f}", f"{rate:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few requests: a smoke run")
    parser.add_argument("--model-dir", type=Path, help="model.tflite + labels.json (default: tiny)")
    parser.add_argument("--photo", type=Path, help="photo to resize to 640x480 (default: drawn)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients in the last row")
    args = parser.parse_args(argv)
    n = 20 if args.quick else 200
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # _factories: test/bench code

    import httpx
    import uvicorn
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from rich.console import Console
    from rich.table import Table

    from emotionops.api.app import create_app
    from emotionops.api.models import LocalModelSource
    from emotionops.api.upload import decode_image
    from emotionops.params import Params
    from emotionops.settings import Settings
    from emotionops.tracking import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    model_dir = args.model_dir
    if model_dir is None:
        from _factories import write_tiny_tflite

        print("converting a tiny TFLite model ...", file=sys.stderr, flush=True)
        model_dir = write_tiny_tflite(tmp / "model", ["happy", "sad", "neutral"], 48, version="1")
    data = photo_bytes(args.photo)
    files = {"file": ("photo.jpg", data, "image/jpeg")}
    params = Params()
    settings = Settings(_env_file=None, data_dir=tmp / "data", ingest_token=SecretStr("x" * 32))
    app = create_app(settings, params, model_source=LocalModelSource(model_dir))
    rows: list[tuple[str, ...]] = []

    with TestClient(app) as client:
        first = client.post("/predict", files=files).json()
        faces = len(first["faces"])
        core = app.state.predictor  # what the endpoint runs after reading the body
        ap = params.api

        def run_core() -> None:
            core(decode_image(data, ap.max_upload_bytes, ap.max_pixels, ap.allowed_types))

        def run_client() -> None:
            client.post("/predict", files=files).raise_for_status()

        rows.append(("core: decode + detect + classify", *summary(timed(run_core, n))))
        rows.append(("in-process TestClient", *summary(timed(run_client, n))))

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/predict"
    try:
        with httpx.Client() as http:

            def run_http() -> None:
                http.post(url, files=files, timeout=60).raise_for_status()

            rows.append(("uvicorn, 1 client", *summary(timed(run_http, n))))
        k = max(1, args.concurrency)
        local = threading.local()

        def one() -> float:
            if not hasattr(local, "client"):
                local.client = httpx.Client()
            began = time.perf_counter()
            local.client.post(url, files=files, timeout=60).raise_for_status()
            return (time.perf_counter() - began) * 1000

        with ThreadPoolExecutor(k) as pool:
            list(pool.map(lambda _: one(), range(k * 2)))  # warm-up
            began = time.perf_counter()
            ms = list(pool.map(lambda _: one(), range(n * 2)))
            wall = time.perf_counter() - began
        rows.append((f"uvicorn, {k} concurrent clients", *summary(ms, wall)))
    finally:
        server.should_exit = True
        thread.join(10)

    table = Table(
        title=f"POST /predict, 640x480 JPEG ({len(data) // 1024} KiB), {faces} face(s)"
        + (" (quick)" if args.quick else "")
    )
    for column in ("path", "requests", "p50 ms", "p95 ms", "requests/s"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    model = "tiny test model" if args.model_dir is None else str(args.model_dir)
    console.print(f"CPU: {cpu_name()}; model: {model}; detector: {params.images.detector}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
