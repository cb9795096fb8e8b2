"""The inference API in-process (FastAPI's TestClient) against a real tiny TFLite model, the
real Haar detector and a real SQLite warehouse: predictions, every refusal, ingest, metrics.

The tiny model's preference is set by its weights (bright faces -> labels[0] with sign=+1,
labels[1] with sign=-1), so a label in an answer proves which model produced it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from _factories import write_tiny_tflite
from emotionops.acquire.scrape.synthetic import make_face
from emotionops.api.app import ApiConfigError, create_app
from emotionops.api.ingest import warehouse_key
from emotionops.api.models import LocalModelSource, RegistryModelSource
from emotionops.api.upload import sniff_type
from emotionops.clean.faces import FaceBox, HaarFaceDetector
from emotionops.params import Params
from emotionops.settings import Settings
from emotionops.tracking import free_port
from emotionops.warehouse import connect, init_schema
from emotionops.warehouse.schema import emotion_event

LABELS = ["happy", "sad", "neutral"]
SIZE = 48
TOKEN = "test-ingest-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FACE_AT = (200, 100, 200)  # x, y, side of the drawn face in the 640x480 photo
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def photo_with_face(seed: int = 0) -> np.ndarray:
    """640x480 BGR photo with one drawn face Haar finds (emotionops' synthetic faces)."""
    x, y, side = FACE_AT
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[y : y + side, x : x + side] = make_face("happy", np.random.default_rng(seed), side)[
        ..., None
    ]
    return canvas


def encode(image: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api-models")
    return {
        "happy": write_tiny_tflite(root / "happy", LABELS, SIZE, 1.0, version="7"),
        "sad": write_tiny_tflite(root / "sad", LABELS, SIZE, -1.0, version="8"),
    }


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    return encode(photo_with_face())


@pytest.fixture
def engine(tmp_path: Path):
    eng = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    init_schema(eng)
    yield eng
    eng.dispose()


def settings_for(tmp_path: Path, **kw) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", ingest_token=SecretStr(TOKEN), **kw)


@pytest.fixture
def make_client(tmp_path: Path, models: dict[str, Path], engine):
    """make_client(model="happy", api={...}, **create_app kwargs) -> a started TestClient."""
    clients = []

    def make(model: str = "happy", api: dict | None = None, **kw) -> TestClient:
        kw.setdefault("model_source", LocalModelSource(models[model], "emotion-classifier"))
        kw.setdefault("engine", engine)
        settings = kw.pop("settings", None) or settings_for(tmp_path)
        # The drawn test faces are Haar's kind of face, not BlazeFace's (photos).
        params = Params.model_validate(
            {"api": api or {}, "edge": {"detection": {"detector": "haar"}}}
        )
        client = TestClient(create_app(settings, params, **kw))
        client.__enter__()  # runs the lifespan: the model source starts
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def post_image(client: TestClient, data: bytes, name: str = "photo.jpg", ctype="image/jpeg"):
    return client.post("/predict", files={"file": (name, data, ctype)})


# /predict --------------------------------------------------------------------------------
def test_predict_returns_each_face_with_box_label_probabilities_and_version(
    make_client, face_jpeg: bytes
) -> None:
    answer = post_image(make_client(), face_jpeg)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == {"name": "emotion-classifier", "version": "7"}
    assert body["model_version"] == "7"
    assert body["image"] == {"width": 640, "height": 480, "type": "jpeg"}
    assert len(body["faces"]) == 1 and "message" not in body
    face = body["faces"][0]
    x, y, side = FACE_AT
    box = face["box"]
    assert x - 20 <= box["x"] <= x + 40 and y - 20 <= box["y"] <= y + 40  # on the drawn face
    assert side * 0.6 <= box["w"] <= side * 1.1
    assert face["label"] == "happy" and face["confidence"] > 0.9
    assert list(face["probabilities"]) == LABELS
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_the_label_comes_from_the_model_in_service(make_client, face_jpeg: bytes) -> None:
    """The same photo through the mirrored model: the other label, its version."""
    body = post_image(make_client("sad"), face_jpeg).json()
    assert [f["label"] for f in body["faces"]] == ["sad"] and body["model_version"] == "8"


def test_type_is_sniffed_from_the_bytes_not_the_name(make_client) -> None:
    client = make_client()
    png = encode(photo_with_face(), ".png")
    answer = post_image(client, png, name="notes.txt", ctype="text/plain")
    assert answer.status_code == 200 and answer.json()["image"]["type"] == "png"
    fake = post_image(client, b"just some text, honestly " * 40, name="photo.jpg")
    assert fake.status_code == 415 and fake.json()["error"] == "not_an_image"
    assert "not an image" in fake.json()["detail"]


def test_image_types_outside_allowed_types_are_415(make_client) -> None:
    bmp = encode(photo_with_face(), ".bmp")
    assert sniff_type(bmp) == "bmp"
    answer = post_image(make_client(), bmp, name="photo.bmp", ctype="image/bmp")
    assert answer.status_code == 415
    assert answer.json()["error"] == "unsupported_type" and "bmp" in answer.json()["detail"]
    allowed = post_image(make_client(api={"allowed_types": ["bmp"]}), bmp, name="photo.bmp")
    assert allowed.status_code == 200 and len(allowed.json()["faces"]) == 1


def test_too_large_is_413_before_decoding(make_client) -> None:
    noise = (np.random.default_rng(1).random((300, 300, 3)) * 255).astype(np.uint8)
    png = encode(noise, ".png")
    assert len(png) > 100_000
    client = make_client(api={"max_upload_bytes": 100_000})
    answer = post_image(client, png, name="big.png", ctype="image/png")
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large" and "limit" in answer.json()["detail"]
    # A body that lies about its size is cut off while streaming, too.
    lying = client.post(
        "/predict",
        content=b"x" * 400_000,
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert lying.status_code == 413


def test_too_many_pixels_is_422_from_the_header(make_client) -> None:
    bomb = encode(np.zeros((2000, 2000), np.uint8), ".png")  # 4 MP in ~12 kB
    assert len(bomb) < 50_000
    answer = post_image(make_client(api={"max_pixels": 1_000_000}), bomb, ctype="image/png")
    assert answer.status_code == 422
    assert answer.json()["error"] == "too_many_pixels" and "2000x2000" in answer.json()["detail"]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_corrupt_images_are_422(make_client, ext: str) -> None:
    good = encode(photo_with_face(), ext)
    client = make_client()
    for broken in (good[: len(good) // 2], good[:40] + bytes(4000)):
        answer = post_image(client, broken)
        assert answer.status_code == 422, (ext, answer.text)
        assert answer.json()["error"] == "corrupt" and "corrupt" in answer.json()["detail"]


def test_no_face_is_200_with_an_empty_list_and_a_message(make_client) -> None:
    answer = post_image(make_client(), encode(np.full((480, 640, 3), 128, np.uint8)))
    assert answer.status_code == 200
    body = answer.json()
    assert body["faces"] == [] and body["message"] == "no face found in the image"
    assert body["model_version"] == "7"


def test_requests_without_one_file_are_refused(make_client, face_jpeg: bytes) -> None:
    client = make_client()
    raw = client.post("/predict", content=face_jpeg, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 415 and raw.json()["error"] == "not_multipart"
    text_only = b'--zz\r\nContent-Disposition: form-data; name="comment"\r\n\r\nhi\r\n--zz--\r\n'
    no_file = client.post(
        "/predict", content=text_only, headers={"Content-Type": "multipart/form-data; boundary=zz"}
    )
    assert no_file.status_code == 422 and no_file.json()["error"] == "no_file"
    empty = post_image(client, b"")
    assert empty.status_code == 422 and empty.json()["error"] == "empty"


def test_max_faces_keeps_the_largest(make_client) -> None:
    two = np.full((480, 640, 3), 90, np.uint8)
    two[100:300, 20:220] = make_face("happy", np.random.default_rng(0), 200)[..., None]
    two[150:310, 400:560] = make_face("happy", np.random.default_rng(1), 160)[..., None]
    assert len(HaarFaceDetector().detect(two)) == 2
    body = post_image(make_client(api={"max_faces": 1}), encode(two)).json()
    assert body["faces_found"] == 2 and len(body["faces"]) == 1
    assert body["faces"][0]["box"]["x"] < 220 and "max_faces" in body["message"]


@dataclass(frozen=True)
class Detection:
    """The shape of emotionops.edge.detect's results: a box and a score."""

    box: FaceBox
    score: float


class ScoredHaar:
    """The real Haar detector, answering Detection(box, score) like the edge detector will."""

    def __init__(self) -> None:
        self.haar = HaarFaceDetector()

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [Detection(box, 0.75) for box in self.haar.detect(image)]


def test_the_detector_is_a_constructor_argument(make_client, face_jpeg: bytes) -> None:
    body = post_image(make_client(detector=ScoredHaar()), face_jpeg).json()
    assert [f["detector_score"] for f in body["faces"]] == [0.75]


# Model loading ---------------------------------------------------------------------------
def test_registry_down_at_start_without_cache_serves_503(make_client, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    source = RegistryModelSource(down, "emotion-classifier", tmp_path / "cache", 60, 1.0)
    client = make_client(model_source=source)  # the app starts anyway
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unhealthy" and body["model"]["loaded"] is False
    assert "unreachable" in body["model"]["error"] and body["warehouse"]["reachable"] is True
    predict = post_image(client, b"\xff\xd8\xff" + bytes(10))
    assert predict.status_code == 503 and predict.json()["error"] == "no_model"
    assert "no model loaded" in predict.json()["detail"]
    assert client.get("/model").status_code == 503
    assert "emotionops_api_model_loaded 0.0" in client.get("/metrics").text


def test_a_broken_local_model_is_unhealthy_not_a_crash(make_client, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.tflite").write_bytes(b"not a flatbuffer")
    (broken / "labels.json").write_text('{"labels": ["a", "b"], "image_size": 48}')
    client = make_client(model_source=LocalModelSource(broken))
    assert client.get("/healthz").json()["model"]["error"].startswith("local model")


def test_model_and_healthz_describe_the_model(make_client) -> None:
    client = make_client()
    model = client.get("/model").json()
    assert model["name"] == "emotion-classifier" and model["version"] == "7"
    assert model["labels"] == LABELS and model["input_size"] == [SIZE, SIZE, 1]
    assert model["metrics"] is None and "no registry run" in model["metrics_error"]
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["model"]["version"] == "7"


def test_unreachable_warehouse_is_unhealthy_and_ingest_503(make_client, tmp_path) -> None:
    settings = settings_for(
        tmp_path,
        warehouse_url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        warehouse_connect_timeout_s=2,
    )
    client = make_client(settings=settings, engine=None)
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["model"]["loaded"] is True
    assert health.json()["warehouse"]["reachable"] is False
    assert "127.0.0.1" in health.json()["warehouse"]["error"]
    answer = client.post("/ingest", json={"windows": [window()]}, headers=AUTH)
    assert answer.status_code == 503 and "nothing stored" in answer.json()["detail"]


# /ingest ---------------------------------------------------------------------------------
def window(**kw) -> dict:
    row = {
        "camera_id": "cam-1",
        "window_start": T0.isoformat(),
        "window_seconds": 5,
        "label": "happy",
        "count": 2,
        "mean_confidence": 0.81,
        "model_version": "7",
        "observations": 9,
        "distinct_tracks": 3,
    }
    return {**row, **kw}


def stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    emotion_event.c.camera_id,
                    emotion_event.c.window_start,
                    emotion_event.c.label,
                    emotion_event.c.face_count,
                )
                .where(emotion_event.c.camera_id == "cam-1")
                .order_by(emotion_event.c.window_start, emotion_event.c.label)
            )
        ]


def test_ingest_is_idempotent(make_client, engine) -> None:
    client = make_client()
    rows = [
        window(),
        window(label="sad", count=1),
        window(window_start=(T0 + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")),
    ]
    for _ in range(2):
        answer = client.post("/ingest", json={"windows": rows}, headers=AUTH)
        assert answer.status_code == 200 and answer.json() == {"accepted": 3}
    got = stored(engine)
    assert len(got) == 3 and len(set(got)) == 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(emotion_event)).scalar_one() == 3
    # A retry with a corrected count updates the row instead of adding one.
    client.post("/ingest", json={"windows": [window(count=5)]}, headers=AUTH)
    assert next(r[3] for r in stored(engine) if r[2] == "happy") == 5 and len(stored(engine)) == 3
    # Another offset, same instant: the same key.
    one_pm_cet = (T0 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S") + "+01:00"
    client.post("/ingest", json={"windows": [window(window_start=one_pm_cet)]}, headers=AUTH)
    assert len(stored(engine)) == 3


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer"}, "missing_token"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing_token"),
        ({"Authorization": "Bearer wrong-token"}, "bad_token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "bad_token"),
    ],
)
def test_ingest_refuses_a_missing_or_bad_token(make_client, engine, headers, code) -> None:
    answer = make_client().post("/ingest", json={"windows": [window()]}, headers=headers)
    assert answer.status_code == 401 and answer.json()["error"] == code
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert stored(engine) == []


def test_ingest_names_the_bad_rows_and_stores_nothing(make_client, engine) -> None:
    client = make_client()
    rows = [window(), window(label="sad", count=-1), window(label="x", window_start="noon")]
    answer = client.post("/ingest", json={"windows": rows}, headers=AUTH)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "bad_rows" and "windows[1].count" in body["detail"]
    assert "windows[2].window_start" in body["detail"]
    assert {(e["row"], e["field"]) for e in body["errors"]} == {(1, "count"), (2, "window_start")}
    assert stored(engine) == []  # one bad row: nothing of the request is stored
    naive = window(window_start="2026-01-01T12:00:00")
    answer = client.post("/ingest", json={"windows": [naive]}, headers=AUTH)
    assert answer.status_code == 422 and "windows[0].window_start" in answer.json()["detail"]
    smuggled = window(face_crop="aGVsbG8=")  # only aggregates may travel
    answer = client.post("/ingest", json={"windows": [smuggled]}, headers=AUTH)
    assert answer.status_code == 422 and "windows[0].face_crop" in answer.json()["detail"]
    dup = client.post("/ingest", json={"windows": [window(), window()]}, headers=AUTH)
    assert (
        dup.status_code == 422 and "windows[1] repeats the key (camera_id" in dup.json()["detail"]
    )
    for bad in ([window()], {"rows": []}, {"windows": "x"}):
        assert client.post("/ingest", json=bad, headers=AUTH).status_code == 422
    not_json = client.post("/ingest", content=b"{nope", headers=AUTH)
    assert not_json.status_code == 422 and not_json.json()["error"] == "bad_json"
    many = make_client(api={"max_ingest_windows": 2})
    answer = many.post("/ingest", json={"windows": [window()] * 3}, headers=AUTH)
    assert answer.status_code == 413 and "max_ingest_windows" in answer.json()["detail"]
    huge = many.post("/ingest", content=b" " * 4000, headers=AUTH)  # cap: 2 windows' worth
    assert huge.status_code == 413 and huge.json()["error"] == "too_large"
    assert stored(engine) == []


def test_ingest_without_a_configured_token(tmp_path: Path, models, engine) -> None:
    """Local mode without a token: open, as the edge sinks' contract says (they then send no
    header); production refuses to start without a real token."""
    local = Settings(_env_file=None, data_dir=tmp_path / "data")
    source = LocalModelSource(models["happy"])
    with TestClient(create_app(local, Params(), model_source=source, engine=engine)) as client:
        answer = client.post("/ingest", json={"windows": [window()]})
        assert answer.status_code == 200 and answer.json() == {"accepted": 1}
        assert len(stored(engine)) == 1
        assert client.get("/healthz").json()["ingest"].startswith("unauthenticated")
    production = {
        "environment": "production",
        "warehouse_url": "sqlite:///x.db",
        "mlflow_tracking_uri": "http://mlflow:5000",
        "dvc_remote_url": "s3://bucket/dvc",
    }
    with pytest.raises(ApiConfigError, match="needs EMOTIONOPS_INGEST_TOKEN"):
        create_app(Settings(_env_file=None, **production), Params(), model_source=source)
    with pytest.raises(ApiConfigError, match="at least 16"):
        create_app(
            Settings(_env_file=None, ingest_token=SecretStr("short"), **production),
            Params(),
            model_source=source,
        )
    with pytest.raises(ValueError, match="EMOTIONOPS_INGEST_TOKEN is empty"):
        Settings(_env_file=None, ingest_token=SecretStr("  "))


# Live counts, pages ----------------------------------------------------------------------
def test_camera_counts_show_the_latest_window(make_client) -> None:
    client = make_client(api={"live_windows": 2})
    t1 = (T0 + timedelta(seconds=5)).isoformat()
    rows = [
        window(window_start=T0.isoformat(), label="sad", count=4),
        window(window_start=t1, count=2),
        window(window_start=t1, label="neutral", count=3, model_version="8"),
        window(window_start=(T0 - timedelta(seconds=5)).isoformat(), count=9),
        window(camera_id="other", count=50),
    ]
    if "model_version" in warehouse_key():  # a hot swap mid-window: two rows, one label
        rows.append(window(window_start=t1, count=1, model_version="8"))
    assert client.post("/ingest", json={"windows": rows}, headers=AUTH).status_code == 200
    body = client.get("/api/cameras/cam-1/counts").json()
    happy = 3 if "model_version" in warehouse_key() else 2  # summed over model versions
    assert body["current"]["counts"] == {"happy": happy, "neutral": 3}
    assert body["current"]["model_versions"] == ["7", "8"]
    assert body["current"]["window_start"] == "2026-01-01T12:00:05+00:00"
    assert [w["counts"] for w in body["recent"]] == [{"happy": happy, "neutral": 3}, {"sad": 4}]
    assert body["serving_model_version"] == "7" and body["refresh_s"] == 5
    empty = client.get("/api/cameras/nobody/counts").json()
    assert empty["current"] is None and "no windows" in empty["message"]


def test_pages_carry_the_lawful_use_notice_and_no_external_resources(make_client) -> None:
    client = make_client()
    for path in ("/", "/cameras/cam-1"):
        page = client.get(path)
        assert page.status_code == 200
        assert "Art. 5(1)(f)" in page.text and "signage" in page.text
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', page.text)  # no CDN, no host
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200
    assert 'data-camera="cam-1"' in client.get("/cameras/cam-1").text
    assert client.get("/cameras/%3Cscript%3E").text.count("<script>") == 0  # escaped


# /metrics ---------------------------------------------------------------------------------
def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        got_name, _, got_labels = key.partition("{")
        parsed = ",".join(sorted(got_labels.rstrip("}").split(","))) if got_labels else ""
        if got_name == name and parsed == want:
            return float(value)
    return 0.0


def test_metrics_change_after_requests(make_client, face_jpeg: bytes) -> None:
    client = make_client()
    before = client.get("/metrics").text
    ok = {"endpoint": "/predict", "method": "POST", "status": "200"}
    assert metric(before, "emotionops_api_requests_total", **ok) == 0
    assert 'emotionops_api_model_info{name="emotion-classifier",source="local",version="7"}' in (
        before
    )
    for _ in range(2):
        post_image(client, face_jpeg)
    post_image(client, b"plain text")
    client.get("/cameras/a")
    client.get("/cameras/b")
    after = client.get("/metrics").text
    assert metric(after, "emotionops_api_requests_total", **ok) == 2
    assert metric(after, "emotionops_api_requests_total", **{**ok, "status": "415"}) == 1
    assert (
        metric(after, "emotionops_api_requests_total", endpoint="/cameras/{camera_id}",
               method="GET", status="200") == 2
    )  # fmt: skip
    assert metric(after, "emotionops_api_faces_per_image_count") == 2
    assert metric(after, "emotionops_api_faces_per_image_sum") == 2
    assert metric(after, "emotionops_api_request_duration_seconds_count", endpoint="/predict") == 3
    assert metric(after, "emotionops_api_model_loaded") == 1
