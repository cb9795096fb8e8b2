"""HTTPS, which every real image host uses: a local TLS server with a throw-away certificate
authority (trustme). A certificate the downloader can verify is fetched; a self-signed, an
expired, a wrong-host or an unknown-CA certificate is refused with a clear reason, at once
(never retried, never silently unverified)."""

from __future__ import annotations

import io
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from PIL import Image

from emotionops.acquire.download import Downloader
from emotionops.acquire.guard import TlsConfigError
from emotionops.acquire.urls import url_sha256
from emotionops.params import DownloadParams

PARAMS = DownloadParams(retries=2, retry_base_s=0.01, connect_timeout_s=5, timeout_s=5)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 120, 40)).save(buf, "JPEG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    hits = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hits += 1
        body = _jpeg()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def tls_server(configure: Callable[[ssl.SSLContext], None]) -> Iterator[tuple[int, type[_Handler]]]:
    """An HTTPS server on loopback whose certificate `configure(context)` installs."""
    handler = type("Handler", (_Handler,), {"hits": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    configure(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], handler
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture()
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _fetch(tmp_path: Path, port: int, ca_bundle: Path | None):
    url = f"https://localhost:{port}/face.jpg"
    row = {"image_url": url, "url_sha256": url_sha256(url), "label": "happy"}
    allow = [f"localhost:{port}"]  # loopback: the SSRF guard lets only this port through
    with Downloader(tmp_path / "raw", PARAMS, allow_hosts=allow, ca_bundle=ca_bundle) as dl:
        return dl.fetch_one(row)


def test_a_certificate_from_a_trusted_ca_is_fetched(
    ca: trustme.CA, ca_file: Path, tmp_path
) -> None:
    with tls_server(ca.issue_cert("localhost").configure_cert) as (port, handler):
        record = _fetch(tmp_path, port, ca_file)
    assert (record.status, record.reason) == ("ok", "")
    assert Path(record.path).read_bytes() == _jpeg() and handler.hits == 1


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown CA", "TLS certificate refused: unable to get local issuer certificate"),
        ("self-signed", "TLS certificate refused: self-signed certificate"),
        ("expired", "TLS certificate refused: certificate has expired"),
        ("wrong host", "TLS certificate refused: Hostname mismatch"),
    ],
)
def test_an_unverifiable_certificate_is_refused_once_with_its_reason(
    case: str, reason: str, ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    if case == "unknown CA":  # valid for the name, but signed by a CA nobody told us about
        configure, bundle = trustme.CA().issue_cert("localhost").configure_cert, ca_file
    elif case == "self-signed":  # the server presents a CA certificate of its own making
        rogue, bundle = trustme.CA(), None

        def configure(context: ssl.SSLContext, rogue: trustme.CA = rogue) -> None:
            with rogue.cert_pem.tempfile() as cert, rogue.private_key_pem.tempfile() as key:
                context.load_cert_chain(cert, key)
    elif case == "expired":
        past = datetime.now(UTC) - timedelta(days=30)
        leaf = ca.issue_cert("localhost", not_before=past, not_after=past + timedelta(days=1))
        configure, bundle = leaf.configure_cert, ca_file
    else:
        configure, bundle = ca.issue_cert("images.example").configure_cert, ca_file
    with tls_server(configure) as (port, handler):
        record = _fetch(tmp_path, port, bundle)
    assert record.status == "rejected"  # final: a bad certificate does not heal on retry
    assert record.reason.startswith(reason), record.reason
    assert record.attempts == 1 and handler.hits == 0


def test_an_unreadable_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    for bundle in (junk, tmp_path / "missing.pem"):
        with pytest.raises(TlsConfigError, match=f"EMOTIONOPS_DOWNLOAD_CA_BUNDLE={bundle}"):
            Downloader(tmp_path / "raw", PARAMS, ca_bundle=bundle)
