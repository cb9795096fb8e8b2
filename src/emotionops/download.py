"""Safe concurrent downloader: SSRF-guarded, size/format/pixel capped, content-addressed.

Every URL gets a record with its outcome and reason; files are stored under their sha256,
so a re-run never fetches or stores the same image twice.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError

from emotionops.errors import EmotionOpsError
from emotionops.params import DownloadParams

FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_REDIRECTS = 5


class DownloadRefused(EmotionOpsError):
    """A URL that must not or cannot be fetched; `str(exc)` is the recorded reason."""


class _Transient(Exception):
    """An error worth retrying (timeouts, resets, 429/5xx)."""


@dataclass
class DownloadRecord:
    url_sha256: str
    url: str
    label: str
    status: str  # ok | rejected | failed
    reason: str = ""
    sha256: str = ""
    path: str = ""
    bytes: int = 0
    width: int = 0
    height: int = 0
    format: str = ""
    run_date: str = ""


def check_host(url: str, allow_hosts: Iterable[str] = ()) -> None:
    """Refuse non-http(s) URLs and hosts resolving to loopback, private, link-local, metadata
    or other non-public addresses, unless the host is explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DownloadRefused(f"scheme {parts.scheme!r} not allowed")
    host = parts.hostname or ""
    if not host:
        raise DownloadRefused("no host")
    if host in set(allow_hosts):
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise DownloadRefused(f"cannot resolve {host}: {exc.strerror}") from exc
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if not addr.is_global or addr.is_multicast:
            raise DownloadRefused(f"{host} resolves to non-public address {addr}")


def _fetch(
    client: httpx.Client, url: str, params: DownloadParams, allow_hosts: Iterable[str]
) -> bytes:
    """GET with manual redirects (each hop re-checked) and a byte cap."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_host(current, allow_hosts)
        try:
            with client.stream("GET", current) as resp:
                if resp.is_redirect:
                    location = resp.headers.get("location")
                    if not location:
                        raise DownloadRefused("redirect without location")
                    current = urljoin(current, location)
                    continue
                if resp.status_code in TRANSIENT_STATUS:
                    raise _Transient(f"http {resp.status_code}")
                if resp.status_code != 200:
                    raise DownloadRefused(f"http {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > params.max_bytes:
                    raise DownloadRefused(f"too large: {declared} bytes > {params.max_bytes}")
                buf = bytearray()
                for chunk in resp.iter_bytes():
                    buf.extend(chunk)
                    if len(buf) > params.max_bytes:
                        raise DownloadRefused(f"too large: over {params.max_bytes} bytes")
                return bytes(buf)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(f"{exc.__class__.__name__}") from exc
    raise DownloadRefused(f"more than {MAX_REDIRECTS} redirects")


def inspect_image(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Decode fully (truncated files fail), refuse formats other than JPEG/PNG/WEBP and images
    over `max_pixels`, and apply the EXIF orientation."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or ""
            if fmt not in FORMATS:
                raise DownloadRefused(f"not an allowed image format ({fmt or 'unknown'})")
            if probe.width * probe.height > max_pixels:
                raise DownloadRefused(
                    f"too many pixels: {probe.width}x{probe.height} > {max_pixels}"
                )
            probe.load()
            return ImageOps.exif_transpose(probe), fmt
    except DownloadRefused:
        raise
    except UnidentifiedImageError as exc:
        raise DownloadRefused("not an image (unrecognised content)") from exc
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DownloadRefused(f"cannot decode image: {exc}") from exc


def store_bytes(data: bytes, fmt: str, raw_dir: Path) -> tuple[str, Path]:
    """Write `data` under its sha256 (atomic rename); existing files are left as they are."""
    digest = hashlib.sha256(data).hexdigest()
    path = raw_dir / digest[:2] / f"{digest}.{FORMATS[fmt]}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".tmp{threading.get_ident()}")
        tmp.write_bytes(data)
        tmp.replace(path)
    return digest, path


class Downloader:
    """Fetch many URLs with a bound on connections overall and per host."""

    def __init__(
        self,
        raw_dir: Path,
        params: DownloadParams,
        allow_hosts: Iterable[str] = (),
        client: httpx.Client | None = None,
    ) -> None:
        self.raw_dir = raw_dir
        self.params = params
        self.allow_hosts = tuple(allow_hosts)
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(params.timeout_s),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=params.workers),
            headers={"User-Agent": "EmotionOps-downloader/0.1"},
        )
        self._host_slots: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def _slot(self, url: str) -> threading.Semaphore:
        host = urlsplit(url).hostname or ""
        with self._lock:
            return self._host_slots.setdefault(host, threading.Semaphore(self.params.per_host))

    def fetch_one(self, row: Mapping[str, Any], run_date: str = "") -> DownloadRecord:
        record = DownloadRecord(
            url_sha256=str(row["url_sha256"]),
            url=str(row["image_url"]),
            label=str(row["label"]),
            status="failed",
            run_date=run_date,
        )
        for attempt in range(self.params.retries + 1):
            try:
                with self._slot(record.url):
                    data = _fetch(self._client, record.url, self.params, self.allow_hosts)
                img, fmt = inspect_image(data, self.params.max_pixels)
                digest, path = store_bytes(data, fmt, self.raw_dir)
                record.status, record.reason = "ok", ""
                record.sha256, record.path, record.bytes = digest, str(path), len(data)
                record.width, record.height, record.format = img.width, img.height, fmt
                return record
            except DownloadRefused as exc:
                record.status, record.reason = "rejected", str(exc)
                return record
            except _Transient as exc:
                record.reason = f"transient error after {attempt + 1} attempts: {exc}"
                if attempt < self.params.retries:
                    time.sleep(min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5))
        return record

    def fetch_all(
        self,
        rows: list[Mapping[str, Any]],
        run_date: str = "",
        on_done: Callable[[DownloadRecord], None] | None = None,
    ) -> list[DownloadRecord]:
        """Fetch every row concurrently; results come back in input order."""
        with ThreadPoolExecutor(max_workers=self.params.workers) as pool:
            futures = [pool.submit(self.fetch_one, row, run_date) for row in rows]
            results = []
            for future in futures:
                record = future.result()
                if on_done:
                    on_done(record)
                results.append(record)
        return results

    def close(self) -> None:
        self._client.close()


def record_dicts(records: Iterable[DownloadRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
