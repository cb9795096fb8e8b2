"""The downloader against hostile input, served by a real local HTTP server.

Every bad case runs inside a batch with good URLs: the bad URL must end with its exact
recorded reason, and the good ones must still be stored (nothing lost). Request counts are
taken on the server's side.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import re
import resource
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from emotionops.acquire.download import (
    Downloader,
    DownloadRecord,
    inspect_image,
    set_pillow_pixel_limit,
)
from emotionops.acquire.guard import (
    DownloadRefused,
    address_refusal,
    parse_allow_entry,
    system_resolver,
)
from emotionops.acquire.urls import url_sha256
from emotionops.files import read_records, write_records
from emotionops.params import DownloadParams, Params
from emotionops.pipeline import URL_CLEANUP_REJECTED, DataPaths, stage_download
from emotionops.settings import Settings

BIG = 200_000_000  # the "200 MB response"


def _jpeg(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, 120)).save(buf, "JPEG")
    return buf.getvalue()


def _png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A ~100-byte PNG whose header claims width x height grayscale pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = zlib.compress(b"\x00" * (width + 1) * 2)  # two rows of data; the header is the bomb
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


TRUNCATED = _jpeg(99, (300, 200))[:900]
BOMB = _png_bomb()


@dataclass
class ServerState:
    port: int = 0
    hits: Counter = field(default_factory=Counter)  # full request path -> requests
    sent: Counter = field(default_factory=Counter)  # full request path -> body bytes sent
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stall per reply
    state: ServerState

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)
        self._count(len(body))

    def _count(self, n: int) -> None:
        with self.state.lock:
            self.state.sent[self.path] += n

    def _stream_forever(self) -> None:
        """Zeros until the client hangs up (at most BIG bytes)."""
        block = b"\x00" * 65536
        try:
            for _ in range(BIG // len(block)):
                self.wfile.write(block)
                self._count(len(block))
        except OSError:
            pass
        self.close_connection = True

    def do_GET(self) -> None:
        with self.state.lock:
            self.state.hits[self.path] += 1
            hits = self.state.hits[self.path]
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if m := re.fullmatch(r"/img/(\d+)\.jpg", route):
            self._reply(200, _jpeg(int(m.group(1))), Content_Type="image/jpeg")
        elif route == "/redirect":
            self._reply(302, Location=query["to"])
        elif route == "/loop":
            self._reply(302, Location=self.path)
        elif route == "/html.jpg":
            self._reply(200, b"<html><body>not an image</body></html>", Content_Type="image/jpeg")
        elif route == "/truncated.jpg":
            self._reply(200, TRUNCATED, Content_Type="image/jpeg")
        elif route == "/bomb.png":
            self._reply(200, BOMB, Content_Type="image/png")
        elif route == "/wide.jpg":
            self._reply(200, _jpeg(5, (200, 100)), Content_Type="image/jpeg")
        elif route == "/gzip.jpg":
            self._reply(
                200, b"\x1f\x8b" + b"\x00" * 30, Content_Type="image/jpeg", Content_Encoding="gzip"
            )
        elif route == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            self._stream_forever()
        elif route == "/big-undeclared":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")  # body ends when the connection closes
            self.end_headers()
            self._stream_forever()
        elif route == "/silent":  # accepts, reads the request, never answers
            self.rfile.read(1)  # returns when the client gives up and closes
            self.close_connection = True
        elif route == "/trickle":  # a valid start, then one byte every 50 ms, forever
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while not self.state.stop.wait(0.05):
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
                    self._count(1)
            except OSError:
                pass
            self.close_connection = True
        elif route == "/missing":
            self._reply(404, b"nope")
        elif route == "/error":
            self._reply(500, b"boom")
        elif route == "/busy":  # 503 with Retry-After for the first `n` requests, then an image
            if hits <= int(query.get("n", "1")):
                self._reply(503, b"busy", Retry_After=query.get("after", "0"))
            else:
                self._reply(200, _jpeg(77), Content_Type="image/jpeg")
        else:
            self._reply(404)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops bursts of parallel connects
    daemon_threads = True


@pytest.fixture(scope="module")
def server() -> Iterator[ServerState]:
    state = ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = _Server(("127.0.0.1", 0), handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _restore_pillow_limit() -> Iterator[None]:
    before = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = before


FAKE_DNS = {
    "private.example": ["10.1.2.3"],
    "loopback.example": ["127.0.0.1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],
    "cgnat.example": ["100.64.0.7"],
    "images.test": ["127.0.0.1"],  # allow-listed in some tests: reaches the local server
}


def _resolver(host: str, port: int) -> list[str]:
    return FAKE_DNS[host] if host in FAKE_DNS else system_resolver(host, port)


PARAMS = {
    "max_bytes": 100_000,
    "connect_timeout_s": 1,
    "timeout_s": 0.5,
    "max_seconds": 5,
    "retries": 2,
    "retry_base_s": 0.01,
    "retry_max_s": 0.2,
    "workers": 8,
    "per_host": 8,
}


def _downloader(tmp_path: Path, allow: tuple[str, ...] = ("localhost",), **kw) -> Downloader:
    return Downloader(
        tmp_path / "raw", DownloadParams(**{**PARAMS, **kw}), allow_hosts=allow, resolver=_resolver
    )


def _row(url: str, label: str = "happy") -> dict:
    return {"image_url": url, "url_sha256": url_sha256(url), "label": label}


def _batch_with(
    tmp_path: Path, server: ServerState, bad_url: str, tag: str, **kw
) -> tuple[DownloadRecord, float]:
    """Run [good, bad, good] and check the good ones; return the bad record and its seconds."""
    base = f"http://localhost:{server.port}"
    goods = [f"{base}/img/{n}.jpg?t={tag}" for n in (1, 2)]
    started = time.monotonic()
    with _downloader(tmp_path, **kw) as dl:
        records = dl.fetch_all([_row(goods[0]), _row(bad_url), _row(goods[1])])
    elapsed = time.monotonic() - started
    assert [r.url for r in records] == [goods[0], bad_url, goods[1]]
    for record, n in zip((records[0], records[2]), (1, 2), strict=True):
        assert (record.status, record.reason) == ("ok", "")
        data = Path(record.path).read_bytes()
        assert data == _jpeg(n) and record.sha256 == hashlib.sha256(data).hexdigest()
    stored = sorted(p.name for p in (tmp_path / "raw").rglob("*.*"))
    assert stored == sorted(f"{r.sha256}.jpg" for r in (records[0], records[2]))
    return records[1], elapsed


@pytest.mark.parametrize(
    ("case", "url", "status", "reason"),
    [
        (
            "redirect-loopback",
            "/redirect?to=http://127.0.0.1:{port}/img/3.jpg",
            "rejected",
            "non-public address 127.0.0.1 (loopback)",
        ),
        (
            "redirect-metadata",
            "/redirect?to=http://169.254.169.254/latest/meta-data/",
            "rejected",
            "non-public address 169.254.169.254 (cloud metadata)",
        ),
        (
            "redirect-mapped",
            "/redirect?to=http://[::ffff:127.0.0.1]:{port}/img/3.jpg",
            "rejected",
            "non-public address ::ffff:127.0.0.1 (loopback, embedded in IPv6)",
        ),
        (
            "redirect-file",
            "/redirect?to=file:///etc/passwd",
            "rejected",
            "scheme 'file' not allowed (only http/https)",
        ),
        (
            "redirect-private-name",
            "/redirect?to=http://private.example/a.jpg",
            "rejected",
            "private.example resolves to non-public address 10.1.2.3 (private)",
        ),
        ("redirect-loop", "/loop", "rejected", "more than 5 redirects"),
        ("file", "file:///etc/passwd", "rejected", "scheme 'file' not allowed (only http/https)"),
        ("ftp", "ftp://localhost/a.jpg", "rejected", "scheme 'ftp' not allowed (only http/https)"),
        (
            "private-name",
            "http://private.example/a.jpg",
            "rejected",
            "private.example resolves to non-public address 10.1.2.3 (private)",
        ),
        (
            "loopback-name",
            "http://loopback.example:{port}/img/3.jpg",
            "rejected",
            "loopback.example resolves to non-public address 127.0.0.1 (loopback)",
        ),
        (
            "one-bad-answer",
            "http://mixed.example/a.jpg",
            "rejected",
            "mixed.example resolves to non-public address 127.0.0.1 (loopback)",
        ),
        (
            "cgnat-name",
            "http://cgnat.example/a.jpg",
            "rejected",
            "cgnat.example resolves to non-public address 100.64.0.7 (shared address space (CGNAT))",
        ),
        ("html", "/html.jpg", "rejected", "not an image (unrecognised content)"),
        (
            "truncated",
            "/truncated.jpg",
            "rejected",
            r"re:cannot decode image: image file is truncated \(\d+ bytes not processed\)",
        ),
        ("gzip", "/gzip.jpg", "rejected", "content-encoding 'gzip' not accepted"),
        ("404", "/missing", "rejected", "http 404"),
        ("500", "/error", "failed", "transient error after 3 attempts: http 500"),
        (
            "declared-200MB",
            "/big-declared",
            "rejected",
            "too large: declared 200000000 bytes > 100000",
        ),
        ("streamed-200MB", "/big-undeclared", "rejected", "too large: over 100000 bytes streamed"),
        ("silent", "/silent", "failed", "transient error after 3 attempts: ReadTimeout"),
    ],
)
def test_bad_url_gets_its_reason_and_the_batch_survives(
    tmp_path: Path, server: ServerState, case: str, url: str, status: str, reason: str
) -> None:
    port = server.port
    full = url.format(port=port)
    if full.startswith("/"):
        full = f"http://localhost:{port}{full}{'&' if '?' in full else '?'}t={case}"
    record, elapsed = _batch_with(tmp_path, server, full, case)
    assert record.status == status, record.reason
    if reason.startswith("re:"):  # only where the text holds a byte count
        assert re.fullmatch(reason[3:], record.reason), record.reason
    else:
        assert record.reason == reason
    assert not record.path and not record.sha256
    assert server.hits["/img/3.jpg"] == 0  # no refused hop ever reached the server
    if case.endswith("200MB"):  # cut at the cap, not read whole
        assert server.sent[urlsplit(full).path + "?" + urlsplit(full).query] < 20_000_000
        assert elapsed < 15  # a busy machine is slower; reading 200 MB would be far slower
    if case == "silent":  # 3 attempts x 0.5 s read timeout, then given up
        assert 1.4 < elapsed < 10  # not the 5 s budget per attempt, let alone forever


def test_status_storm_counts_attempts_on_the_server(tmp_path: Path, server: ServerState) -> None:
    base = f"http://localhost:{server.port}"
    missing = [f"{base}/missing?storm={i}" for i in range(20)]
    errors = [f"{base}/error?storm={i}" for i in range(10)]
    goods = [f"{base}/img/{n}.jpg?storm" for n in range(10, 20)]
    rows = [_row(u) for trio in zip(missing, errors, goods, strict=False) for u in trio]
    rows += [_row(u) for u in missing[10:]]
    with _downloader(tmp_path) as dl:
        records = {r.url: r for r in dl.fetch_all(rows)}
    for url in missing:
        assert (records[url].status, records[url].reason, records[url].attempts) == (
            "rejected",
            "http 404",
            1,
        )
        assert server.hits[url.removeprefix(base)] == 1  # 404 is final: never retried
    for url in errors:
        assert (records[url].status, records[url].attempts) == ("failed", 3), records[url]
        assert records[url].reason == "transient error after 3 attempts: http 500"
        assert server.hits[url.removeprefix(base)] == 3  # 1 try + 2 retries
    assert all(records[u].status == "ok" for u in goods)


def test_retry_after_is_honoured_then_succeeds(tmp_path: Path, server: ServerState) -> None:
    url = f"http://localhost:{server.port}/busy?n=2&after=0&t=ok"
    with _downloader(tmp_path) as dl:
        record = dl.fetch_one(_row(url))
    assert (record.status, record.attempts) == ("ok", 3)
    assert Path(record.path).read_bytes() == _jpeg(77)


def test_retry_after_is_capped(tmp_path: Path, server: ServerState) -> None:
    url = f"http://localhost:{server.port}/busy?n=9&after=3600&t=cap"
    started = time.monotonic()
    with _downloader(tmp_path, retry_max_s=0.1) as dl:
        record = dl.fetch_one(_row(url))
    assert record.reason == "transient error after 3 attempts: http 503"
    assert time.monotonic() - started < 10  # two waits of 0.1 s, not of an hour


def test_trickling_server_ends_at_the_wall_time_cap(tmp_path: Path, server: ServerState) -> None:
    url = f"http://localhost:{server.port}/trickle?t=cap"
    record, elapsed = _batch_with(tmp_path, server, url, "trickle", max_seconds=1)
    assert (record.status, record.reason) == ("failed", "time cap: no complete response within 1 s")
    assert record.attempts == 1  # bytes kept coming, so no read ever timed out
    assert 0.9 < elapsed < 8  # ended by the 1 s cap (a trickle never ends by itself)


def test_png_bomb_refused_from_its_header(tmp_path: Path, server: ServerState) -> None:
    set_pillow_pixel_limit(40_000_000)  # what stage_download does with the default params
    url = f"http://localhost:{server.port}/bomb.png"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record, _ = _batch_with(tmp_path, server, url, "bomb", max_pixels=40_000_000)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert len(BOMB) < 2_000
    assert record.status == "rejected"
    assert record.reason == (
        "too many pixels: Image size (400000000 pixels) exceeds limit of 40000000 pixels, "
        "could be decompression bomb DOS attack."
    )
    assert grown_mb < 100  # 400M pixels were never allocated


def test_pixel_cap_from_the_header(tmp_path: Path, server: ServerState) -> None:
    url = f"http://localhost:{server.port}/wide.jpg"
    record, _ = _batch_with(tmp_path, server, url, "wide", max_pixels=10_000)
    assert (record.status, record.reason) == (
        "rejected",
        "too many pixels: 200x100 (20000 pixels) > 10000",
    )


def test_stage_sets_pillow_limit_to_max_pixels() -> None:
    set_pillow_pixel_limit(1_000)
    small, big = Image.new("L", (40, 25)), Image.new("L", (40, 26))  # 1000 and 1040 pixels
    for img, ok in ((small, True), (big, False)):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        buf.seek(0)
        if ok:  # allowed; Pillow only warns above half the limit
            with pytest.warns(Image.DecompressionBombWarning):
                Image.open(buf).close()
        else:
            with pytest.raises(Image.DecompressionBombError):
                Image.open(buf)


def test_localhost_refused_unless_allow_listed(tmp_path: Path, server: ServerState) -> None:
    """`localhost` resolves to loopback: refused before connecting. The good URLs use a name
    only our resolver knows, which also proves the connection goes to the vetted address."""
    bad = f"http://localhost:{server.port}/img/4.jpg?t=nolist"
    good = f"http://images.test:{server.port}/img/5.jpg?t=nolist"
    with _downloader(tmp_path, allow=("images.test",)) as dl:
        records = dl.fetch_all([_row(bad), _row(good)])
    assert (records[0].status, records[0].reason) == (
        "rejected",
        "localhost resolves to non-public address 127.0.0.1 (loopback)",
    )
    assert server.hits["/img/4.jpg?t=nolist"] == 0
    assert records[1].status == "ok" and server.hits["/img/5.jpg?t=nolist"] == 1


def test_connection_goes_to_the_one_address_resolved(tmp_path: Path, server: ServerState) -> None:
    """DNS rebinding needs a second lookup between check and connect. The resolver here
    answers the local server first and an unreachable private address afterwards: the
    download works only if the connection uses the first (checked) answer, once."""
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.255.255.1"]

    url = f"http://images.test:{server.port}/img/6.jpg?t=rebind"
    params = DownloadParams(**{**PARAMS, "retries": 0, "connect_timeout_s": 0.5})
    with Downloader(tmp_path / "raw", params, ["images.test"], resolver=rebinding) as dl:
        record = dl.fetch_one(_row(url))
    assert (record.status, calls) == ("ok", ["images.test"])
    assert server.hits["/img/6.jpg?t=rebind"] == 1


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.2", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.10.10", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private, embedded in IPv6"),
        ("::ffff:169.254.169.254", "cloud metadata, embedded in IPv6"),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::a00:1", "private, embedded in IPv6"),
        ("2002:7f00:1::", "loopback, embedded in IPv6"),
        ("192.0.2.1", "private"),
    ],
)
def test_address_refusal(address: str, why: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == why


def test_stage_download_rerun_fetches_nothing_twice(tmp_path: Path, server: ServerState) -> None:
    base = f"http://localhost:{server.port}"
    urls = [f"{base}/img/{n}.jpg?stage" for n in (30, 31, 32)]
    urls += [f"{base}/missing?stage", f"{base}/error?stage"]
    settings = Settings(
        project_dir=tmp_path, data_dir=Path("data"), download_allow_hosts=["localhost"]
    )
    params = Params(download=DownloadParams(**PARAMS))
    paths = DataPaths(settings.data_path)
    for day in ("2024-01-01", "2024-01-02"):
        write_records(
            [{"image_url": u, "label": "happy", "run_date": day} for u in urls],
            paths.manifest(day),
        )

    def hits() -> dict[str, int]:
        return {u: server.hits[u.removeprefix(base)] for u in urls}

    first = stage_download(settings, params, "2024-01-01", progress=False)
    assert first == Counter(ok=3, rejected=1, failed=1)
    assert list(hits().values()) == [1, 1, 1, 1, 3]

    again = stage_download(settings, params, "2024-01-01", progress=False)
    assert again == first
    assert list(hits().values()) == [1, 1, 1, 1, 6]  # only the transient failure is retried

    next_day = stage_download(settings, params, "2024-01-02", progress=False)
    assert next_day == first
    assert list(hits().values()) == [1, 1, 1, 2, 9]  # stored files are reused across days
    rows = {r["url"]: r for r in read_records(paths.downloads("2024-01-02"))}
    assert rows[urls[0]]["reason"] == "reused from run 2024-01-01"
    assert rows[urls[0]]["run_date"] == "2024-01-02"
    assert (paths.root / rows[urls[0]]["path"]).read_bytes() == _jpeg(30)
    assert len(list(paths.raw.rglob("*.jpg"))) == 3


def test_exif_orientation_is_applied_to_the_recorded_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, "JPEG", exif=exif.tobytes())
    assert inspect_image(buf.getvalue(), 10_000) == (30, 40, "JPEG", 6)
    buf = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buf, "GIF")  # a real image, but not an allowed format
    with pytest.raises(DownloadRefused, match=r"^not an image \(unrecognised content\)$"):
        inspect_image(buf.getvalue(), 10_000)


def test_an_allow_listed_host_with_a_port_is_allowed_on_that_port_only(
    tmp_path: Path, server: ServerState
) -> None:
    """`host:port` lets the stand-in through on its port and nothing else of that host: the
    same loopback name on another port is vetted like any host (and refused)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other_port = other.getsockname()[1]
        good = f"http://localhost:{server.port}/img/6.jpg?t=port"
        bad = f"http://localhost:{other_port}/img/6.jpg?t=port"
        with _downloader(tmp_path, allow=(f"localhost:{server.port}",)) as dl:
            records = dl.fetch_all([_row(good), _row(bad)])
    assert records[0].status == "ok"
    assert (records[1].status, records[1].reason) == (
        "rejected",
        "localhost resolves to non-public address 127.0.0.1 (loopback)",
    )
    with _downloader(tmp_path, allow=("localhost:80",)) as dl:  # default port of http only
        assert dl.fetch_one(_row(good)).status == "rejected"


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("Images.Example.:8080", ("images.example", 8080)),
        ("127.0.0.1:9", ("127.0.0.1", 9)),
        ("[::1]:8443", ("::1", 8443)),
        ("::1", ("::1", None)),
    ],
)
def test_allow_entries_are_host_or_host_and_port(entry: str, parsed: tuple) -> None:
    assert parse_allow_entry(entry) == parsed


@pytest.mark.parametrize(
    "entry", ["", "host:", "host:0", "host:65536", "host:http", "a b", "http://host", "[::1", "u@h"]
)
def test_malformed_allow_entries_are_refused_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(entry))):
        parse_allow_entry(entry)


def test_every_manifest_url_ends_with_exactly_one_record(
    tmp_path: Path, server: ServerState
) -> None:
    """URLs cleanup drops (file://, gopher://, credentials, over-long, duplicates) are in
    rejected.csv with their rule, the rest in the download records: the summary adds up."""
    base = f"http://localhost:{server.port}"
    dropped = [
        "file:///etc/passwd",
        "gopher://localhost:70/x",
        f"http://user:pw@localhost:{server.port}/img/40.jpg",
        f"{base}/img/41.jpg?" + "q" * 2100,
        "javascript:alert(1)",
        "",
        f"{base}/img/42.jpg?all",  # a duplicate of the kept one below
    ]
    kept = [f"{base}/img/42.jpg?all", f"{base}/missing?all", f"{base}/error?all"]
    manifest = [kept[0], *dropped, *kept[1:]]
    settings = Settings(project_dir=tmp_path, download_allow_hosts=[f"localhost:{server.port}"])
    params = Params(download=DownloadParams(**PARAMS), validation={"min_rows_per_label": 0})
    paths = DataPaths(settings.data_path)
    write_records(
        [{"image_url": u, "label": "happy", "run_date": "2024-02-01"} for u in manifest],
        paths.manifest("2024-02-01"),
    )
    counts = stage_download(settings, params, "2024-02-01", progress=False)
    assert sum(counts.values()) == len(manifest)
    assert counts == Counter(
        {"ok": 1, "rejected": 1, "failed": 1, URL_CLEANUP_REJECTED: len(dropped)}
    )
    rejects = read_records(paths.url_rejects("2024-02-01"))
    assert [r["image_url"] for r in rejects] == dropped
    assert [r["rule"] for r in rejects] == [
        "scheme", "scheme", "credentials", "malformed", "scheme", "empty", "duplicate",
    ]  # fmt: skip
    records = read_records(paths.downloads("2024-02-01"))
    assert sorted(r["url"] for r in records) == sorted(kept)
