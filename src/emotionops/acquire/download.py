"""Safe concurrent downloader: SSRF-guarded, size/time/format/pixel capped, content-addressed.

Scraped image URLs are attacker-controlled input. Each one is fetched under these rules:

- only http/https; every redirect hop is checked again (at most `MAX_REDIRECTS`);
- the connection goes only to an address that was vetted (`emotionops.acquire.guard`: one
  DNS lookup, non-public addresses refused, no rebinding gap); names in `allow_hosts` (the
  local stand-in, tests) skip the address check;
- caps on bytes (declared and streamed), on silence between reads, on the wall time of one
  URL (a trickling server ends), on pixels (read from the header before decoding); only
  JPEG, PNG and WEBP are opened;
- transient errors (timeouts, resets, 408/425/429/5xx) are retried with exponential backoff
  and jitter, honouring Retry-After up to a cap; other 4xx are final.

Every URL gets a record (ok | rejected | failed) with a reason; files are stored under the
sha256 of their bytes, so the same image is never stored twice.
"""

from __future__ import annotations

import hashlib
import io
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from emotionops.acquire.guard import (
    AllowList,
    DownloadRefused,
    GuardedBackend,
    GuardedTransport,
    OverBudget,
    Resolver,
    check_url,
    time_budget,
)
from emotionops.files import atomic_write
from emotionops.params import DownloadParams

# Pillow format id -> file extension. MPO is the multi-picture JPEG many phones write.
FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
PARSERS = ["JPEG", "PNG", "WEBP"]  # the only Pillow openers tried (the JPEG one yields MPO too)
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
USER_AGENT = "EmotionOps-downloader/0.2"


class _Transient(Exception):
    """An error worth retrying (timeouts, resets, 408/425/429/5xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
    width: int = 0  # after the EXIF orientation is applied
    height: int = 0
    format: str = ""
    orientation: int = 1  # EXIF orientation tag of the stored bytes (1 = upright)
    attempts: int = 0  # requests made for this URL in this run (0: reused or refused up front)
    run_date: str = ""


RECORD_FIELDS = tuple(f.name for f in fields(DownloadRecord))


# --- images and storage --------------------------------------------------------------------
def set_pillow_pixel_limit(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb check agree with `max_pixels`: Pillow raises above
    2 x MAX_IMAGE_PIXELS. Process-wide, so it is called by the stage (the process entry
    point), not by every Downloader."""
    Image.MAX_IMAGE_PIXELS = max(1, (max_pixels + 1) // 2)


def inspect_image(data: bytes, max_pixels: int) -> tuple[int, int, str, int]:
    """(width, height, format, EXIF orientation) of an image that is allowed and decodes
    completely. Only JPEG/PNG/WEBP parsers are tried; the pixel cap is checked on the header
    before any decoding; width/height are as displayed (EXIF orientation applied)."""
    try:
        with Image.open(io.BytesIO(data), formats=PARSERS) as probe:
            fmt = probe.format or ""
            if fmt not in FORMATS:
                raise DownloadRefused(f"not an allowed image format ({fmt or 'unknown'})")
            width, height = probe.size
            if width * height > max_pixels:
                raise DownloadRefused(
                    f"too many pixels: {width}x{height} ({width * height} pixels) > {max_pixels}"
                )
            orientation = int(probe.getexif().get(0x0112, 1) or 1)
            probe.load()  # a truncated or corrupt file fails here
    except DownloadRefused:
        raise
    except Image.DecompressionBombError as exc:
        raise DownloadRefused(f"too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DownloadRefused("not an image (unrecognised content)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DownloadRefused(f"cannot decode image: {exc}") from exc
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    return width, height, fmt, orientation if 1 <= orientation <= 8 else 1


def store_bytes(data: bytes, fmt: str, raw_dir: Path) -> tuple[str, Path]:
    """Write `data` under its sha256 (atomic rename); existing files are left as they are."""
    digest = hashlib.sha256(data).hexdigest()
    path = raw_dir / digest[:2] / f"{digest}.{FORMATS[fmt]}"
    if not path.exists():
        atomic_write(path, data)
    return digest, path


def tls_refusal(exc: BaseException) -> str | None:
    """The reason a TLS handshake was refused (expired, self-signed, wrong host...), from
    the ssl error somewhere in `exc`'s chain; None when the error is not about TLS."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate refused: {seen.verify_message or seen.reason}"
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed: {seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    return None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _retry_after(value: str | None, cap: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), cap)


# --- the downloader ------------------------------------------------------------------------
class Downloader:
    """Fetch many URLs concurrently, bounded overall (`workers`) and per host (`per_host`).

    Use as a context manager or call `close()`. Thread-safe: `fetch_one` may be called from
    many threads; connections are pooled and kept alive per host.
    """

    def __init__(
        self,
        raw_dir: Path,
        params: DownloadParams,
        allow_hosts: Iterable[str] = (),
        resolver: Resolver | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        self.raw_dir = raw_dir
        self.params = params
        self.allow_hosts = AllowList(allow_hosts)  # host, or host:port for that port only
        limits = httpx.Limits(
            max_connections=params.workers, max_keepalive_connections=params.workers
        )
        self._client = httpx.Client(
            transport=GuardedTransport(
                GuardedBackend(self.allow_hosts, resolver), limits, ca_bundle
            ),
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )
        self._host_slots: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _slot(self, url: str) -> threading.Semaphore:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            return self._host_slots.setdefault(host, threading.Semaphore(self.params.per_host))

    def _timeout(self) -> httpx.Timeout:
        p = self.params
        return httpx.Timeout(
            connect=p.connect_timeout_s, read=p.timeout_s, write=p.timeout_s, pool=p.max_seconds
        )

    def _fetch(self, url: str) -> bytes:
        """One attempt: GET with manual redirects (each hop re-checked) and the byte cap."""
        current, cap = url, self.params.max_bytes
        for _ in range(MAX_REDIRECTS + 1):
            check_url(current, self.allow_hosts)
            try:
                with self._client.stream("GET", current, timeout=self._timeout()) as resp:
                    status = resp.status_code
                    if status in REDIRECT_STATUS:
                        location = resp.headers.get("location")
                        if not location:
                            raise DownloadRefused(f"http {status} redirect without location")
                        current = urljoin(current, location)
                        continue
                    if status in TRANSIENT_STATUS:
                        wait = _retry_after(
                            resp.headers.get("retry-after"), self.params.retry_max_s
                        )
                        raise _Transient(f"http {status}", retry_after=wait)
                    if status != 200:
                        raise DownloadRefused(f"http {status}")
                    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
                    if encoding not in ("", "identity"):  # compressed bodies could be bombs
                        raise DownloadRefused(f"content-encoding {encoding!r} not accepted")
                    declared = resp.headers.get("content-length", "").strip()
                    if declared.isdigit() and int(declared) > cap:
                        raise DownloadRefused(f"too large: declared {declared} bytes > {cap}")
                    buf = bytearray()
                    for chunk in resp.iter_raw():
                        buf.extend(chunk)
                        if len(buf) > cap:
                            raise DownloadRefused(f"too large: over {cap} bytes streamed")
                    return bytes(buf)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if (why := tls_refusal(exc)) is not None:  # a bad certificate never heals
                    raise DownloadRefused(why) from exc
                raise _Transient(type(exc).__name__) from exc
            except httpx.HTTPError as exc:  # local protocol errors: final
                raise DownloadRefused(f"{type(exc).__name__}: {exc}") from exc
            except (httpx.InvalidURL, UnicodeError, ValueError) as exc:  # e.g. a bad IDNA host
                raise DownloadRefused(f"malformed url: {exc}") from exc
        raise DownloadRefused(f"more than {MAX_REDIRECTS} redirects")

    def _backoff(self, attempt: int, error: _Transient) -> float:
        p = self.params
        if error.retry_after is not None:
            return error.retry_after
        return min(p.retry_max_s, p.retry_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    def fetch_one(self, row: Mapping[str, Any], run_date: str = "") -> DownloadRecord:
        """Download, check and store one URL; never raises for anything the URL can cause."""
        record = DownloadRecord(
            url_sha256=str(row["url_sha256"]),
            url=str(row["image_url"]),
            label=str(row["label"]),
            status="failed",
            run_date=run_date,
        )
        budget = self.params.max_seconds
        deadline: float | None = None
        data: bytes | None = None
        try:
            check_url(record.url, self.allow_hosts)
            for attempt in range(1, self.params.retries + 2):
                with self._slot(record.url):
                    # The budget starts when the URL first gets a connection slot: waiting
                    # behind other URLs of the same host is not this URL's fault.
                    deadline = deadline or time.monotonic() + budget
                    record.attempts = attempt
                    try:
                        with time_budget(deadline):
                            data = self._fetch(record.url)
                        break
                    except _Transient as exc:
                        error = exc
                record.reason = f"transient error after {_n(attempt, 'attempt')}: {error}"
                if attempt > self.params.retries:
                    return record
                pause = self._backoff(attempt, error)
                if time.monotonic() + pause >= deadline:
                    record.reason += f" (no retry: the {budget:g} s budget would run out)"
                    return record
                time.sleep(pause)
        except OverBudget:
            record.reason = f"time cap: no complete response within {budget:g} s"
            return record
        except DownloadRefused as exc:
            record.status, record.reason = "rejected", str(exc)
            return record
        assert data is not None
        try:
            width, height, fmt, orientation = inspect_image(data, self.params.max_pixels)
        except DownloadRefused as exc:
            record.status, record.reason = "rejected", str(exc)
            return record
        digest, path = store_bytes(data, fmt, self.raw_dir)
        record.status, record.reason = "ok", ""
        record.sha256, record.path, record.bytes = digest, str(path), len(data)
        record.width, record.height, record.format = width, height, fmt
        record.orientation = orientation
        return record

    def fetch_all(
        self,
        rows: list[Mapping[str, Any]],
        run_date: str = "",
        on_done: Callable[[DownloadRecord], None] | None = None,
    ) -> list[DownloadRecord]:
        """Fetch every row concurrently; results come back in input order. An unexpected
        error in one URL is recorded as `failed` for that URL; the batch goes on."""
        results: list[DownloadRecord | None] = [None] * len(rows)
        with ThreadPoolExecutor(max_workers=self.params.workers) as pool:
            futures = {pool.submit(self.fetch_one, row, run_date): i for i, row in enumerate(rows)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    record = future.result()
                except Exception as exc:  # a bug must not lose the rest of the batch
                    row = rows[i]
                    record = DownloadRecord(
                        url_sha256=str(row.get("url_sha256", "")),
                        url=str(row.get("image_url", "")),
                        label=str(row.get("label", "")),
                        status="failed",
                        reason=f"unexpected error: {type(exc).__name__}: {exc}",
                        run_date=run_date,
                    )
                results[i] = record
                if on_done:
                    on_done(record)
        return [r for r in results if r is not None]


def record_dicts(records: Iterable[DownloadRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
