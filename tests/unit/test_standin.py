"""The search stand-in over plain HTTP (no browser): routing, paging, safety, errors."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from emotionops.acquire.scrape.standin import SearchStandin, StandinError, label_for_query
from emotionops.acquire.scrape.synthetic import generate_labelled_set


def _get(base: str, path: str, headers: dict[str, str] | None = None):
    """Raw GET: the path goes on the wire exactly as given (no client-side normalising)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = generate_labelled_set(
        tmp_path_factory.mktemp("set"), ["happy", "sad", "surprise"], 5, seed=1
    )
    # A JPEG too, to check content types, and a stray non-image that must not be listed.
    image = cv2.imread(str(root / "sad" / "sad_0.png"))
    cv2.imwrite(str(root / "sad" / "extra.jpg"), image)
    (root / "sad" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    (root / "secret.txt").write_text("top secret")
    return root


@pytest.fixture(scope="module")
def standin(image_root: Path) -> Iterator[SearchStandin]:
    with SearchStandin(image_root, page_size=2) as server:
        yield server


def test_labels_are_folders_with_images(standin: SearchStandin) -> None:
    assert standin.labels == ["happy", "sad", "surprise"]


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ("happy face", "happy"),
        ("smiling person portrait", "happy"),
        ("unhappy person portrait", "sad"),  # whole words: not "happy"
        ("Astonished person", "surprise"),
        ("surprised face", "surprise"),
        ("expressionless person", None),  # neutral folder not served here
        ("cars", None),
    ],
)
def test_query_to_label(query: str, label: str | None) -> None:
    assert label_for_query(query, {"happy", "sad", "surprise"}) == label


def test_synonyms_cover_all_seven_labels() -> None:
    seven = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    for query, label in [
        ("angry man", "angry"),
        ("disgusted face", "disgust"),
        ("fearful face", "fear"),
        ("scared child", "fear"),
        ("expressionless face", "neutral"),
    ]:
        assert label_for_query(query, seven) == label


def test_home_and_results_pages(standin: SearchStandin) -> None:
    status, headers, body = _get(standin.url, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="search-form"' in body and b'id="consent-overlay"' in body

    status, _, body = _get(standin.url, "/search?q=sad+face")
    page = body.decode()
    assert status == 200
    assert page.count('class="result"') == 2  # page_size
    assert "/thumb/sad/" in page and "/image/" not in page  # full URLs only via the panel
    assert 'data-has-more="true"' in page and 'id="end-of-results"' not in page
    assert 'id="consent-overlay"' in page

    # Once consent is given (cookie), the overlay is gone.
    _, _, body = _get(standin.url, "/search?q=sad+face", {"Cookie": "consent=yes"})
    assert b'id="consent-overlay"' not in body


def test_unknown_query_gives_empty_page_not_error(standin: SearchStandin) -> None:
    status, _, body = _get(standin.url, "/search?q=red+sports+car")
    assert status == 200
    assert b'class="result"' not in body and b'id="end-of-results"' in body
    status, _, body = _get(standin.url, "/api/results?q=red+sports+car&page=0")
    data = json.loads(body)
    assert status == 200 and data["results"] == [] and data["has_more"] is False


def test_api_pages_cover_each_image_once(standin: SearchStandin) -> None:
    ids, page = [], 0
    while True:
        status, headers, body = _get(standin.url, f"/api/results?q=sad+face&page={page}")
        assert status == 200 and headers["Content-Type"] == "application/json"
        data = json.loads(body)
        assert len(data["results"]) <= 2
        ids += [item["id"] for item in data["results"]]
        if not data["has_more"]:
            break
        page += 1
    assert sorted(ids) == sorted([f"sad/sad_{n}.png" for n in range(5)] + ["sad/extra.jpg"])
    assert page == 2  # 6 images, 2 per page

    # Another phrasing of the same emotion: same images, different order.
    other = json.loads(_get(standin.url, "/api/results?q=unhappy+person&page=0")[2])
    first = json.loads(_get(standin.url, "/api/results?q=sad+face&page=0")[2])
    assert other["total"] == first["total"] == 6
    assert _get(standin.url, "/api/results?q=sad&page=-1")[0] == 400
    assert _get(standin.url, "/api/results?q=sad&page=x")[0] == 400


def test_item_thumb_and_image(standin: SearchStandin, image_root: Path) -> None:
    status, _, body = _get(standin.url, "/api/item?id=sad/extra.jpg")
    item = json.loads(body)
    assert status == 200 and item["image"] == "/image/sad/extra.jpg"
    assert _get(standin.url, "/api/item?id=sad/../happy/happy_0.png")[0] == 404

    status, headers, body = _get(standin.url, "/image/happy/happy_1.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == (image_root / "happy" / "happy_1.png").read_bytes()
    status, headers, body = _get(standin.url, "/image/sad/extra.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert body == (image_root / "sad" / "extra.jpg").read_bytes()

    status, headers, body = _get(standin.url, "/thumb/happy/happy_1.png")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert thumb is not None and max(thumb.shape[:2]) == standin.thumb_side < 128

    status, _, body = _get(standin.url, "/page/happy/happy_1.png")
    assert status == 200 and b"/image/happy/happy_1.png" in body
    status, headers, _ = _get(standin.url, "/static/standin.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize(
    "path",
    [
        "/image/../secret.txt",
        "/image/happy/../../secret.txt",
        "/image/%2e%2e/secret.txt",
        "/image/happy/..%2f..%2fsecret.txt",
        "/image/happy/%2e%2e%2fsad%2fsad_0.png",
        "/image/happy/%2Fetc%2Fpasswd",
        "/image//etc/passwd",
        "/thumb/sad/notes.txt",
        "/image/sad/notes.txt",
        "/image/empty/x.png",
        "/image/happy/.hidden.png",
        "/static/../standin.py",
        "/static/%2e%2e%2fstandin.py",
        "/page/..%2fsecret.txt/x",
    ],
)
def test_path_traversal_is_impossible(standin: SearchStandin, path: str) -> None:
    status, _, body = _get(standin.url, path)
    assert status == 404
    assert b"top secret" not in body and b"not an image" not in body and b"root:" not in body


def test_port_in_use_is_a_clear_error(image_root: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StandinError, match=f"port {port}.*already in use"):
            SearchStandin(image_root, port=port).start()


def test_missing_or_empty_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StandinError, match="does not exist"):
        SearchStandin(tmp_path / "nope")
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "readme.txt").write_text("no images here")
    with pytest.raises(StandinError, match=f"{tmp_path}.*no images"):
        SearchStandin(tmp_path)


def test_stop_releases_the_port(image_root: Path) -> None:
    server = SearchStandin(image_root)
    base = server.start()
    assert _get(base, "/healthz")[0] == 200
    server.stop()
    with pytest.raises(OSError):
        _get(base, "/healthz")


def test_serve_forever_runs_in_the_foreground_until_stopped(image_root: Path) -> None:
    server = SearchStandin(image_root)
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(target=server.serve_forever, args=(on_ready,), daemon=True)
    thread.start()
    assert ready.wait(10)
    assert _get(urls[0], "/healthz")[0] == 200
    server.stop()
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.real_data
def test_serves_fer2013_quickly(real_data: Path) -> None:
    start = time.perf_counter()
    with SearchStandin(real_data / "fer2013" / "train") as server:
        status, _, body = _get(server.url, "/search?q=happy+face")
        elapsed = time.perf_counter() - start
        assert status == 200 and body.count(b'class="result"') == server.page_size
        assert len(server.labels) == 7
    assert elapsed < 10.0  # an index of 27k files, not a decode of each (minutes)
