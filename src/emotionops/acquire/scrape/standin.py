"""A local image-search engine: the scraper's target in tests and in the offline demo.

WHY: scraping Google or Bing in CI is neither reproducible nor allowed, but the scraper
must still be tested against the obstacles a real engine puts up. This stand-in serves a
folder of labelled images (`<root>/<label>/*.png|jpg|jpeg|webp`) behind a search page
with a cookie-consent overlay, infinite scroll and a side panel that shows the thumbnail
first and swaps in the full-size URL asynchronously. It uses only the standard library's
`ThreadingHTTPServer`, so it adds no dependency and starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import html
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from string import Template
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import cv2
import numpy as np

from emotionops.errors import EmotionOpsError

log = logging.getLogger(__name__)

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
STATIC_TYPES = {"standin.js": "text/javascript", "standin.css": "text/css"}

#: Words that name an emotion without being the label itself.
SYNONYMS = {
    "smiling": "happy",
    "smile": "happy",
    "smiles": "happy",
    "joyful": "happy",
    "unhappy": "sad",
    "crying": "sad",
    "sorrowful": "sad",
    "astonished": "surprise",
    "surprised": "surprise",
    "amazed": "surprise",
    "shocked": "surprise",
    "expressionless": "neutral",
    "blank": "neutral",
    "calm": "neutral",
    "angry": "angry",
    "anger": "angry",
    "furious": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "afraid": "fear",
    "frightened": "fear",
}


class StandinError(EmotionOpsError):
    """The stand-in cannot serve: no images in the folder, or the port is taken."""


def query_words(query: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", query.lower())


def label_for_query(query: str, labels: set[str] | frozenset[str]) -> str | None:
    """The label a query asks for: the first word that is a label or a synonym of one.

    Whole words only, so "unhappy person" means sad, not happy.
    """
    for word in query_words(query):
        label = word if word in labels else SYNONYMS.get(word)
        if label in labels:
            return label
    return None


def _has_image(folder: Path) -> bool:
    """True as soon as one image file is seen: startup stays fast on 30k-file folders."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if Path(entry.name).suffix.lower() in IMAGE_TYPES and entry.is_file():
                    return True
    except OSError:
        return False
    return False


@lru_cache(maxsize=8)
def _template(name: str) -> Template:
    return Template(
        resources.files("emotionops.acquire.scrape").joinpath("static", name).read_text()
    )


@lru_cache(maxsize=4)
def _static_bytes(name: str) -> bytes:
    return resources.files("emotionops.acquire.scrape").joinpath("static", name).read_bytes()


class _Index:
    """Files per label, listed on first use (lazily) and ordered per query."""

    def __init__(self, root: Path, labels: list[str]) -> None:
        self.root = root
        self.labels = labels
        self._label_set = frozenset(labels)
        self._files: dict[str, tuple[list[str], frozenset[str]]] = {}
        self._lock = threading.Lock()
        self._ranked: dict[tuple[str, str], list[str]] = {}

    def files(self, label: str) -> tuple[list[str], frozenset[str]]:
        with self._lock:
            if label not in self._files:
                names = sorted(
                    entry.name
                    for entry in os.scandir(self.root / label)
                    if not entry.name.startswith(".")
                    and Path(entry.name).suffix.lower() in IMAGE_TYPES
                    and entry.is_file()
                )
                self._files[label] = (names, frozenset(names))
            return self._files[label]

    def lookup(self, label: str, name: str) -> Path | None:
        """The file for (label, name) if and only if the index lists it: no path tricks."""
        if label not in self._label_set:
            return None
        if name not in self.files(label)[1]:
            return None
        return self.root / label / name

    def ranked(self, query: str) -> tuple[str | None, list[str]]:
        """Results for a query: a stable, query-dependent order (different phrasings of one
        emotion overlap but differ, as on a real engine)."""
        label = label_for_query(query, self._label_set)
        if label is None:
            return None, []
        key = (label, " ".join(query_words(query)))
        with self._lock:
            cached = self._ranked.get(key)
        if cached is not None:
            return label, cached
        names = self.files(label)[0]
        salt = key[1].encode()
        ranked = sorted(names, key=lambda n: hashlib.blake2b(salt + b"\0" + n.encode()).digest())
        with self._lock:
            if len(self._ranked) > 64:
                self._ranked.clear()
            self._ranked[key] = ranked
        return label, ranked


class SearchStandin:
    """The stand-in server. `start()` runs it in a background thread and returns its URL."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 12,
        thumb_side: int = 64,
        panel_delay_ms: tuple[int, int] = (50, 150),
        skin: str = "classic",
    ) -> None:
        self.root = Path(root)
        if skin not in SKINS:
            raise StandinError(f"unknown skin {skin!r}; known skins: {', '.join(SKINS)}")
        #: Markup variant: "classic", or "mosaic" (other ids/classes, the full-size URL in a
        #: data- attribute and in JSON on each result), to prove markup changes are config.
        self.skin = skin
        self.host = host
        self.port = port
        if page_size < 1:
            raise StandinError(f"page_size must be >= 1, got {page_size}")
        self.page_size = page_size
        self.thumb_side = thumb_side
        self.panel_delay_ms = panel_delay_ms
        self._labels = self._discover_labels()
        self.index = _Index(self.root, self._labels)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._thumbs: dict[tuple[str, str], bytes] = {}
        self._thumb_lock = threading.Lock()
        #: Requests served per route ("search", "api/item", "image", ...): lets a test or a
        #: benchmark see how much work a scrape caused (e.g. that a resume clicks nothing twice).
        self.hits: Counter[str] = Counter()
        self._hits_lock = threading.Lock()

    def count(self, route: str) -> None:
        with self._hits_lock:
            self.hits[route] += 1

    # Setup -----------------------------------------------------------------------------
    def _discover_labels(self) -> list[str]:
        if not self.root.is_dir():
            raise StandinError(
                f"image folder {self.root} does not exist (expected <root>/<label>/)"
            )
        labels = sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.is_dir() and not entry.name.startswith(".") and _has_image(Path(entry.path))
        )
        if not labels:
            raise StandinError(
                f"image folder {self.root} has no images in any label folder "
                f"(expected <root>/<label>/*.png|jpg|jpeg|webp)"
            )
        return labels

    @property
    def labels(self) -> list[str]:
        """Label folders that hold at least one image."""
        return list(self._labels)

    @property
    def url(self) -> str:
        if self._server is None:
            raise StandinError("the stand-in is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _bind(self) -> ThreadingHTTPServer:
        try:
            server = ThreadingHTTPServer((self.host, self.port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StandinError(
                    f"port {self.port} on {self.host} is already in use: stop the other "
                    "process or choose another port (0 picks a free one)"
                ) from exc
            raise StandinError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        return server

    # Lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        """Serve in a daemon thread; returns the base URL (http://host:port)."""
        if self._server is not None:
            return self.url
        self._server = self._bind()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="search-standin",
            daemon=True,
        )
        self._thread.start()
        log.info("search stand-in serving %s at %s", self.root, self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving (also ends a `serve_forever` running in another thread)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the foreground until Ctrl-C or `stop()` (for the CLI command)."""
        if self._server is not None:
            raise StandinError(f"the stand-in is already running at {self.url}")
        server = self._server = self._bind()
        try:
            if on_ready is not None:
                on_ready(self.url)
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            if self._server is server:
                self._server = None

    def __enter__(self) -> SearchStandin:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Content ---------------------------------------------------------------------------
    def result_page(self, query: str, page: int) -> dict[str, Any]:
        """One page of results as JSON-ready data (page 0 is the first)."""
        label, names = self.index.ranked(query)
        start = page * self.page_size
        chunk = names[start : start + self.page_size] if label else []
        return {
            "query": query,
            "label": label,
            "page": page,
            "page_size": self.page_size,
            "total": len(names),
            "has_more": start + self.page_size < len(names),
            "results": [self.item(label, name) for name in chunk] if label else [],
        }

    @staticmethod
    def item(label: str, name: str) -> dict[str, str]:
        ref = f"{quote(label)}/{quote(name)}"
        return {
            "id": f"{label}/{name}",
            "title": name,
            "thumb": f"/thumb/{ref}",
            "image": f"/image/{ref}",
            "page": f"/page/{ref}",
        }

    def thumbnail(self, label: str, name: str, path: Path) -> bytes:
        """A JPEG no larger than thumb_side, cached (a results page asks for it repeatedly)."""
        key = (label, name)
        with self._thumb_lock:
            cached = self._thumbs.get(key)
        if cached is not None:
            return cached
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise StandinError(f"{path}: not a decodable image")
        h, w = image.shape[:2]
        scale = min(1.0, self.thumb_side / max(h, w))
        if scale < 1.0:
            image = cv2.resize(
                image, (max(1, round(w * scale)), max(1, round(h * scale))), cv2.INTER_AREA
            )
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:  # pragma: no cover
            raise StandinError(f"{path}: could not encode a thumbnail")
        data = buf.tobytes()
        with self._thumb_lock:
            if len(self._thumbs) > 4096:
                self._thumbs.clear()
            self._thumbs[key] = data
        return data


def _item_html(item: dict[str, str], skin: str = "classic") -> str:
    e = html.escape
    if skin == "mosaic":
        meta = json.dumps({"murl": item["image"], "purl": item["page"]})
        return (
            f'<a class="tile" data-role="result" href="{e(item["page"])}" '
            f'data-id="{e(item["id"])}" data-meta="{e(meta)}">'
            f'<img class="tile-img" src="{e(item["thumb"])}" alt="{e(item["title"])}">'
            f'<span class="tile-caption">{e(item["title"])}</span></a>'
        )
    return (
        f'<a class="result" data-role="result" href="{e(item["page"])}" '
        f'data-id="{e(item["id"])}">'
        f'<img class="thumb" src="{e(item["thumb"])}" alt="{e(item["title"])}">'
        f'<span class="title">{e(item["title"])}</span></a>'
    )


_CONSENT_HTML = {
    "classic": """<div id="consent-overlay" data-role="consent-overlay" role="dialog" aria-modal="true">
  <div id="consent-dialog">
    <h2>Before you continue</h2>
    <p>This search page uses cookies to remember your choice.</p>
    <button id="consent-reject" type="button">Reject all</button>
    <button id="consent-accept" data-role="consent-accept" type="button">Accept all</button>
  </div>
</div>""",
    "mosaic": """<div class="cookie-wall" data-role="consent-overlay" role="dialog" aria-modal="true">
  <div class="cookie-box">
    <p>We use cookies. Is that fine?</p>
    <button class="cookie-no" type="button">No thanks</button>
    <button class="cookie-ok" data-role="consent-accept" type="button">I agree</button>
  </div>
</div>""",
}
#: Per skin: results template and the end-of-results element (no results / no more).
SKINS = {
    "classic": (
        "results.html",
        '<p id="end-of-results" data-role="end" class="empty">No results for this search</p>',
        '<p id="end-of-results" data-role="end">No more results</p>',
    ),
    "mosaic": (
        "results_mosaic.html",
        '<div class="hits-end" data-role="end">Nothing found</div>',
        '<div class="hits-end" data-role="end">No more results</div>',
    ),
}


class _Handler(BaseHTTPRequestHandler):
    server_version = "EmotionOpsSearchStandin/1.0"
    # Headers and body go out in separate writes: with Nagle on, a keep-alive client waits
    # for a delayed ACK (~40 ms) on every response (measured: ~50 ms more per side-panel update).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    @property
    def standin(self) -> SearchStandin:
        return self.server.standin  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    # Responses ---------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str, send_body: bool, cache: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _html(self, body: str, send_body: bool, status: int = 200) -> None:
        self._send(status, body.encode(), "text/html; charset=utf-8", send_body)

    def _json(self, data: Any, send_body: bool, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", send_body)

    def _not_found(self, send_body: bool) -> None:
        self._send(404, b"not found\n", "text/plain; charset=utf-8", send_body)

    def _consent_html(self) -> str:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            cookie = SimpleCookie()
        accepted = "consent" in cookie and cookie["consent"].value == "yes"
        return "" if accepted else _CONSENT_HTML[self.standin.skin]

    # Routing ---------------------------------------------------------------------------
    def _dispatch(self, send_body: bool) -> None:
        try:
            self._route(send_body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("stand-in error on %s", self.path)
            with contextlib.suppress(OSError):
                self._send(500, b"internal error\n", "text/plain", send_body)

    def _route(self, send_body: bool) -> None:
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        query = params.get("q", [""])[0]
        # Split before decoding: an encoded "/" or ".." stays inside one segment.
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        standin = self.standin
        standin.count("/".join(segments[:2]) if segments[:1] == ["api"] else segments[0])
        if parts.path in ("", "/"):
            self._html(self._search_html(query), send_body)
        elif parts.path == "/search":
            self._html(self._results_html(query), send_body)
        elif parts.path == "/healthz":
            self._send(200, b"ok\n", "text/plain", send_body)
        elif parts.path == "/api/results":
            try:
                page = int(params.get("page", ["0"])[0])
            except ValueError:
                page = -1
            if page < 0:
                self._json({"error": "page must be a non-negative integer"}, send_body, 400)
                return
            self._json(standin.result_page(query, page), send_body)
        elif parts.path == "/api/item":
            label, _, name = params.get("id", [""])[0].partition("/")
            if standin.index.lookup(label, name) is None:
                self._json({"error": "unknown id"}, send_body, 404)
                return
            self._json(standin.item(label, name), send_body)
        elif len(segments) == 2 and segments[0] == "static" and segments[1] in STATIC_TYPES:
            ctype = STATIC_TYPES[segments[1]] + "; charset=utf-8"
            self._send(200, _static_bytes(segments[1]), ctype, send_body, cache=True)
        elif len(segments) == 3 and segments[0] in ("thumb", "image", "page"):
            self._serve_file(segments[0], segments[1], segments[2], send_body)
        else:
            self._not_found(send_body)

    def _serve_file(self, kind: str, label: str, name: str, send_body: bool) -> None:
        standin = self.standin
        path = standin.index.lookup(label, name)
        if path is None:
            self._not_found(send_body)
            return
        if kind == "image":
            ctype = IMAGE_TYPES[path.suffix.lower()]
            self._send(200, path.read_bytes(), ctype, send_body, cache=True)
        elif kind == "thumb":
            data = standin.thumbnail(label, name, path)
            self._send(200, data, "image/jpeg", send_body, cache=True)
        else:
            item = standin.item(label, name)
            body = _template("page.html").substitute(
                title=html.escape(f"{label}: {name}"), image_url=html.escape(item["image"])
            )
            self._html(body, send_body)

    def _search_html(self, query: str) -> str:
        return _template("search.html").substitute(
            consent=self._consent_html(),
            query_attr=html.escape(query),
            labels=html.escape(", ".join(self.standin.labels)),
        )

    def _results_html(self, query: str) -> str:
        standin = self.standin
        first = standin.result_page(query, 0)
        template, no_results, no_more = SKINS[standin.skin]
        items = "\n".join(_item_html(item, standin.skin) for item in first["results"])
        if not first["results"]:
            end = no_results
        elif not first["has_more"]:
            end = no_more
        else:
            end = ""
        low, high = standin.panel_delay_ms
        return _template(template).substitute(
            consent=self._consent_html(),
            query_attr=html.escape(query),
            query_text=html.escape(query),
            total=first["total"],
            has_more="true" if first["has_more"] else "false",
            more_hidden="" if first["has_more"] else "hidden",
            items=items,
            end_marker=end,
            delay_min=int(low),
            delay_max=int(high),
        )
