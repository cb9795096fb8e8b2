"""The API's pages in a real browser: uvicorn serves `app_from_env` (the `make api` entry) in a
subprocess configured through EMOTIONOPS_* only; headless Chromium uploads a photo and reads
the live camera page while new windows are ingested."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

import emotionops
from _browser import chromium, console_errors
from _factories import write_tiny_tflite
from emotionops.acquire.scrape.synthetic import make_face
from emotionops.edge.report import EmotionWindow
from emotionops.tracking import free_port
from emotionops.warehouse import connect, init_schema, load_emotion_events

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LABELS = ["happy", "sad", "neutral"]
TOKEN = "page-test-ingest-token-0123456789"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ACCENT_BGR = (255, 108, 10)  # --accent #0a6cff: the colour of a face box


@dataclass
class Api:
    url: str
    warehouse_url: str
    log: Path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-page")
    model = write_tiny_tflite(root / "model", LABELS, 48, 1.0, version="7")
    params = root / "params.yaml"
    # The rest: code defaults; the drawn face is Haar's kind of face, not BlazeFace's (photos).
    params.write_text("api: {live_refresh_s: 0.5}\nedge: {detection: {detector: haar}}\n")
    warehouse_url = f"sqlite:///{root / 'warehouse.db'}"
    port = free_port()
    # The child imports the same emotionops package as this test (installed or a worktree).
    package_root = str(Path(emotionops.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
        "EMOTIONOPS_API_MODEL_DIR": str(model),
        "EMOTIONOPS_DATA_DIR": str(root / "data"),
        "EMOTIONOPS_PARAMS_FILE": str(params),
        "EMOTIONOPS_WAREHOUSE_URL": warehouse_url,
        "EMOTIONOPS_INGEST_TOKEN": TOKEN,
        "EMOTIONOPS_MODEL_NAME": "emotion-classifier",
    }
    log = root / "uvicorn.log"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "emotionops.api.app:app_from_env"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not become healthy:\n{log.read_text()}")
            time.sleep(0.1)  # polling interval while the server starts
        yield Api(url, warehouse_url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def photo_file(path: Path) -> Path:
    """A 640x480 JPEG with one drawn face at (200, 100), 200 px (Haar finds it)."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[100:300, 200:400] = make_face("happy", np.random.default_rng(0), 200)[..., None]
    cv2.imwrite(str(path), canvas)
    return path


def upload_and_wait(driver: WebDriver, api: Api, photo: Path) -> list:
    driver.get(api.url + "/")
    driver.get_log("browser")  # start from a clean console
    assert "Art. 5(1)(f)" in driver.find_element(By.ID, "lawful-use").text
    driver.find_element(By.ID, "photo").send_keys(str(photo))
    wait = WebDriverWait(driver, 20, poll_frequency=0.05)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    wait.until(lambda d: d.execute_script("return document.getElementById('preview').complete"))
    return driver.find_elements(By.CSS_SELECTOR, "#boxes .face-box")


def test_upload_page_draws_boxes_and_labels(api: Api, browser: WebDriver, tmp_path: Path) -> None:
    boxes = upload_and_wait(browser, api, photo_file(tmp_path / "one-face.jpg"))
    assert len(boxes) == 1
    box = boxes[0]
    assert box.get_attribute("data-label") == "happy"
    assert box.find_element(By.CLASS_NAME, "face-label").text.startswith("1. happy")
    # The box sits on the face: image pixels scaled to the displayed image.
    img = browser.find_element(By.ID, "preview").rect
    scale = img["width"] / 640
    rect = box.rect
    assert abs((rect["x"] - img["x"]) / scale - 210) < 40
    assert abs((rect["y"] - img["y"]) / scale - 110) < 40
    assert 120 < rect["width"] / scale < 220
    probs = browser.find_elements(By.CSS_SELECTOR, "#faces li .prob")
    assert sorted(p.find_element(By.CLASS_NAME, "prob-label").text for p in probs) == sorted(LABELS)
    assert "model emotion-classifier v7" in browser.find_element(By.ID, "status").text
    assert console_errors(browser) == []
    shot = tmp_path / "upload-page.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    # The box really is painted: its left border has the accent colour in the screenshot.
    pixels = cv2.imread(str(shot))
    ratio = pixels.shape[1] / browser.execute_script("return window.innerWidth")
    x = round((rect["x"] + 1.5) * ratio)
    y = round((rect["y"] + rect["height"] / 2) * ratio)
    assert np.abs(pixels[y, x].astype(int) - ACCENT_BGR).max() < 40, pixels[y, x]


def test_upload_page_shows_refusals(api: Api, browser: WebDriver, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo at all\n" * 20)
    browser.get(api.url + "/")
    browser.find_element(By.ID, "photo").send_keys(str(text))
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 20, poll_frequency=0.05).until(lambda d: error.is_displayed())
    assert "not an image" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "#boxes .face-box") == []


def test_upload_page_on_real_photos(
    api: Api, browser: WebDriver, real_data: Path, tmp_path: Path
) -> None:
    photo = real_data / "photos" / "fr_obama.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    boxes = upload_and_wait(browser, api, photo)
    assert len(boxes) >= 1
    assert all(b.get_attribute("data-label") in LABELS for b in boxes)
    assert console_errors(browser) == []
    shot = tmp_path / "upload-real-photo.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


def counts_on_page(driver: WebDriver) -> dict[str, str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#counts tbody tr")
    return {
        r.get_attribute("data-label"): r.find_element(By.CLASS_NAME, "count").text for r in rows
    }


def test_camera_page_shows_seeded_counts_and_refreshes(
    api: Api, browser: WebDriver, tmp_path: Path
) -> None:
    engine = connect(api.warehouse_url)
    init_schema(engine)
    seeded = [
        EmotionWindow("cam-7", T0, 5.0, "happy", 4, 0.9, "7", 12, 6),
        EmotionWindow("cam-7", T0, 5.0, "sad", 2, 0.7, "7", 5, 6),
        EmotionWindow("cam-7", T0 - timedelta(seconds=5), 5.0, "neutral", 9, 0.6, "7", 20, 9),
    ]
    load_emotion_events(engine, seeded)
    engine.dispose()

    browser.get(api.url + "/cameras/cam-7")
    browser.get_log("browser")
    # The page re-renders itself every live_refresh_s: read it in one script call, and let
    # the waits retry a read that raced a re-render.
    wait = WebDriverWait(
        browser, 20, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    )
    wait.until(lambda d: counts_on_page(d) == {"happy": "4", "sad": "2"})
    assert browser.find_element(By.ID, "model-version").text == "7"
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#counts tbody .bar span')]"
        ".map(bar => bar.getBoundingClientRect().width)"
    )
    assert len(widths) == 2 and widths[0] > widths[1] > 0  # happy 4 draws longer than sad 2
    assert "2026-01-01 12:00:00" in browser.find_element(By.ID, "window").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#recent tbody tr")) == 2
    assert "Art. 5(1)(f)" in browser.find_element(By.ID, "lawful-use").text

    # A new window arrives through /ingest: the page picks it up by itself.
    later = {
        "camera_id": "cam-7",
        "window_start": (T0 + timedelta(seconds=5)).isoformat(),
        "window_seconds": 5,
        "label": "surprise",
        "count": 3,
        "mean_confidence": 0.8,
        "model_version": "8",
        "observations": 7,
        "distinct_tracks": 3,
    }
    answer = httpx.post(
        api.url + "/ingest",
        json={"windows": [later]},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert answer.json() == {"accepted": 1}
    wait.until(lambda d: counts_on_page(d) == {"surprise": "3"})
    assert browser.find_element(By.ID, "model-version").text == "8"
    assert console_errors(browser) == []
    shot = tmp_path / "camera-page.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


def test_the_edge_http_sink_delivers_through_ingest(api: Api) -> None:
    """The edge's real HttpSink (emotionops.edge.sinks) against this API: the contract holds
    both ways, a re-sent batch changes nothing, a wrong token is a rejection, not a retry."""
    from sqlalchemy import func, select

    from emotionops.edge.outbox import SinkRejected, window_row
    from emotionops.edge.sinks import HttpSink
    from emotionops.warehouse.schema import emotion_event

    start = T0 + timedelta(minutes=5)
    rows = [
        window_row(EmotionWindow("cam-sink", start, 5.0, "happy", 2, 0.9, "7", 6, 3)),
        window_row(EmotionWindow("cam-sink", start, 5.0, "sad", 1, 0.6, None, 2, 3)),
    ]
    sink = HttpSink(api.url + "/ingest", TOKEN)
    try:
        sink.send(rows)
        sink.send(rows)  # the edge re-sends a batch whose reply it lost
    finally:
        sink.close()
    engine = connect(api.warehouse_url)
    try:
        with engine.connect() as conn:
            got = conn.execute(
                select(emotion_event.c.label, emotion_event.c.model_version, func.count())
                .where(emotion_event.c.camera_id == "cam-sink")
                .group_by(emotion_event.c.label, emotion_event.c.model_version)
                .order_by(emotion_event.c.label)
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in got] == [("happy", "7", 1), ("sad", "unknown", 1)]
    wrong = HttpSink(api.url + "/ingest", "not-the-token")
    try:
        with pytest.raises(SinkRejected, match="refused the token"):
            wrong.send(rows)
    finally:
        wrong.close()
