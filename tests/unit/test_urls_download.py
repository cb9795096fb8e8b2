"""URL cleanup and the safe downloader against a real local HTTP server."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from emotionops.download import Downloader, DownloadRefused, check_host
from emotionops.params import DownloadParams
from emotionops.urls import clean_manifest, normalise, url_sha256


def _jpeg(size=(64, 48), color=(200, 120, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()
ROUTES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/ok.jpg": (200, {"Content-Type": "image/jpeg"}, JPEG),
    "/html.jpg": (200, {"Content-Type": "image/jpeg"}, b"<html>not an image</html>"),
    "/truncated.jpg": (200, {"Content-Type": "image/jpeg"}, JPEG[: len(JPEG) // 2]),
    "/missing": (404, {}, b"nope"),
    "/error": (500, {}, b"boom"),
    "/big.jpg": (200, {"Content-Type": "image/jpeg"}, b"\xff" * 50_000),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        status, headers, body = ROUTES.get(self.path, (404, {}, b""))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def _row(url: str, label: str = "happy") -> dict:
    return {"image_url": url, "url_sha256": url_sha256(url), "label": label}


def _downloader(tmp_path: Path, **kw) -> Downloader:
    params = DownloadParams(max_bytes=20_000, timeout_s=2, retries=1, **kw)
    # "localhost" is allowed, 127.0.0.1 is not: redirects to the raw address must be refused.
    return Downloader(tmp_path / "raw", params, allow_hosts=["localhost"])


def test_normalise_rejects_what_cannot_be_fetched() -> None:
    assert normalise("HTTP://Example.COM:80/a.jpg#x").url == "http://example.com/a.jpg"
    for bad in ("file:///etc/passwd", "ftp://example.com/a.jpg", "", "http://", "http://a b.com/"):
        assert not normalise(bad).ok, bad
    assert "credentials" in normalise("http://user:pw@example.com/a.jpg").reason


def test_clean_manifest_dedupes_and_gives_reasons() -> None:
    rows = [
        {"image_url": "http://example.com/a.jpg", "label": "happy"},
        {"image_url": "http://EXAMPLE.com/a.jpg#frag", "label": "happy"},
        {"image_url": "javascript:alert(1)", "label": "sad"},
    ]
    kept, rejected = clean_manifest(rows)
    assert [r["image_url"] for r in kept] == ["http://example.com/a.jpg"]
    assert sorted(r["reason"] for r in rejected) == [
        "duplicate url",
        "scheme 'javascript' not allowed",
    ]


def test_check_host_refuses_private_and_metadata_addresses() -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/",
        "http://[::1]/",
    ):
        with pytest.raises(DownloadRefused, match="non-public"):
            check_host(url)
    check_host("http://127.0.0.1/x", allow_hosts=["127.0.0.1"])  # explicit allowlist


def test_download_ok_is_content_addressed_and_idempotent(tmp_path, server) -> None:
    dl = _downloader(tmp_path)
    url = f"http://localhost:{server}/ok.jpg"
    first = dl.fetch_one(_row(url))
    second = dl.fetch_one(_row(url))
    assert (
        first.status == "ok" and first.format == "JPEG" and (first.width, first.height) == (64, 48)
    )
    assert Path(first.path).name == f"{first.sha256}.jpg" and Path(first.path).read_bytes() == JPEG
    assert second.path == first.path
    assert len(list((tmp_path / "raw").rglob("*.jpg"))) == 1


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/html.jpg", "rejected", "not an image"),
        ("/truncated.jpg", "rejected", "cannot decode"),
        ("/missing", "rejected", "http 404"),
        ("/big.jpg", "rejected", "too large"),
        ("/error", "failed", "transient error after 2 attempts: http 500"),
    ],
)
def test_bad_responses_get_a_reason_and_store_nothing(tmp_path, server, path, status, reason):
    record = _downloader(tmp_path).fetch_one(_row(f"http://localhost:{server}{path}"))
    assert (record.status, reason in record.reason) == (status, True), record.reason
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").rglob("*.*"))


def test_redirect_to_loopback_is_refused(tmp_path, server) -> None:
    url = f"http://localhost:{server}/redirect?to=http://127.0.0.1:{server}/ok.jpg"
    record = _downloader(tmp_path).fetch_one(_row(url))
    assert record.status == "rejected" and "non-public address 127.0.0.1" in record.reason


def test_pixel_cap(tmp_path, server) -> None:
    record = _downloader(tmp_path, max_pixels=1_000).fetch_one(
        _row(f"http://localhost:{server}/ok.jpg")
    )
    assert record.status == "rejected" and "too many pixels" in record.reason


def test_fetch_all_keeps_input_order(tmp_path, server) -> None:
    urls = [f"http://localhost:{server}/{p}" for p in ("ok.jpg", "missing", "html.jpg")]
    records = _downloader(tmp_path).fetch_all([_row(u) for u in urls])
    assert [r.url for r in records] == urls
    assert [r.status for r in records] == ["ok", "rejected", "rejected"]
