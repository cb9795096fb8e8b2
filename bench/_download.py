"""Bench part (a): our downloader vs a naive sequential loop, on a slow local server.

A threaded local HTTP server serves N distinct small JPEGs and waits 50-200 ms before each
answer (the wait is a fixed function of the path, so both contenders face the same
latencies). The naive loop is what a script would do: one httpx client (keep-alive), one URL
at a time, three tries with a pause on error, each file saved under its sha256. Our
`Downloader` runs with the default params from `DownloadParams`. Both must end with the
same set of files.

    .venv/bin/python bench/_download.py [--quick]
"""

from __future__ import annotations

import hashlib
import io
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from emotionops.acquire.download import Downloader
from emotionops.acquire.urls import url_sha256
from emotionops.params import DownloadParams

LATENCY_MS = (50, 200)


def make_images(n: int, seed: int = 3) -> list[bytes]:
    """n distinct 64x64 JPEGs (noise over a colour gradient)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    out = []
    for i in range(n):
        base = np.stack(
            [np.add.outer(ramp, ramp) / 2, np.full((64, 64), i % 256), ramp[None].repeat(64, 0)], -1
        )
        pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    assert len({hashlib.sha256(b).digest() for b in out}) == n
    return out


def latency_s(path: str) -> float:
    """50-200 ms, fixed per path (the same for both contenders)."""
    lo, hi = LATENCY_MS
    return (
        lo + int.from_bytes(hashlib.sha256(path.encode()).digest()[:4], "big") % (hi - lo + 1)
    ) / 1000


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops bursts of parallel connects
    daemon_threads = True


def start_server(images: list[bytes]) -> tuple[_Server, int]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stall per reply

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            index = int(name.split(".")[0]) if name.endswith(".jpg") else -1
            time.sleep(latency_s(self.path))  # the simulated network/server latency
            if not 0 <= index < len(images):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = images[index]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_address[1]


def naive_loop(urls: list[str], out: Path) -> set[str]:
    """The sequential script: one URL at a time, 3 tries, 1 s pause after an error."""
    digests = set()
    with httpx.Client(timeout=10) as client:
        for url in urls:
            for attempt in range(3):
                try:
                    resp = client.get(url)
                    resp.raise_for_status()
                except httpx.HTTPError:
                    if attempt == 2:
                        break
                    time.sleep(1)
                    continue
                digest = hashlib.sha256(resp.content).hexdigest()
                (out / f"{digest}.jpg").write_bytes(resp.content)
                digests.add(digest)
                break
    return digests


def ours(urls: list[str], out: Path, params: DownloadParams) -> tuple[set[str], int]:
    rows = [{"image_url": u, "url_sha256": url_sha256(u), "label": "happy"} for u in urls]
    with Downloader(out, params, allow_hosts=["localhost"]) as downloader:
        records = downloader.fetch_all(rows)
    ok = {r.sha256 for r in records if r.status == "ok"}
    return ok, sum(r.status != "ok" for r in records)


def _files(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.jpg")}


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    n = 60 if quick else 500
    images = make_images(n)
    expected = {hashlib.sha256(b).hexdigest() for b in images}
    httpd, port = start_server(images)
    urls = [f"http://localhost:{port}/img/{i}.jpg" for i in range(n)]
    params = DownloadParams()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            naive_dir, ours_dir = Path(tmp, "naive"), Path(tmp, "ours")
            naive_dir.mkdir()
            started = time.perf_counter()
            naive_set = naive_loop(urls, naive_dir)
            naive_s = time.perf_counter() - started
            started = time.perf_counter()
            ours_set, not_ok = ours(urls, ours_dir, params)
            ours_s = time.perf_counter() - started
            identical = naive_set == ours_set == expected == _files(naive_dir) == _files(ours_dir)
    finally:
        httpd.shutdown()
        httpd.server_close()
    mean_ms = sum(latency_s(u.split(f":{port}", 1)[1]) for u in urls) / n * 1000
    return [
        (
            "images served",
            f"{n}",
            f"latency {LATENCY_MS[0]}-{LATENCY_MS[1]} ms, mean {mean_ms:.0f}",
        ),
        ("sequential loop (httpx, 3 tries)", f"{naive_s:.1f} s", f"{n / naive_s:.1f} img/s"),
        (
            "our downloader (defaults)",
            f"{ours_s:.1f} s",
            f"{n / ours_s:.1f} img/s; workers {params.workers}, per_host {params.per_host}",
        ),
        ("speed-up", f"{naive_s / ours_s:.1f}x", "target >= 8x"),
        ("identical files (sha256 set)", "yes" if identical else "no", f"{not_ok} not ok"),
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
