"""Edge loop: window aggregation, camera sources, TFLite classifier, demo video, run_edge.

Everything is made in the test: a tiny Keras model converted to TFLite whose preference is
set by its weights (bright faces -> "happy", dark -> "sad"), and drawn faces Haar detects.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from _factories import write_light_dark_faces, write_tiny_tflite
from emotionops.clean.faces import FaceBox, HaarFaceDetector
from emotionops.edge.camera import CameraError, open_source
from emotionops.edge.classifier import ClassifierError, TfliteEmotionClassifier, load_model_dir
from emotionops.edge.demo_video import DemoVideoError, count_frames, demo_schedule, make_demo_video
from emotionops.edge.model import ModelRejected, smoke_test
from emotionops.edge.report import EmotionWindow, WindowAggregator
from emotionops.edge.service import EdgeStats, run_edge
from emotionops.edge.zones import ZoneError
from emotionops.params import EdgeParams
from emotionops.tracking import free_port

LABELS = ["happy", "sad", "neutral"]
SIZE = 48
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# Helpers ----------------------------------------------------------------------------------
def build_tflite(
    out_dir: Path, sign: float = 1.0, version: str | None = None, activation: str = "softmax"
) -> Path:
    return write_tiny_tflite(out_dir, LABELS, SIZE, sign, version, activation)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tflite(tmp_path_factory.mktemp("model"), version="1")


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> TfliteEmotionClassifier:
    return load_model_dir(model_dir, version="1")


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_light_dark_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, faces: dict[str, list[Path]]) -> Path:
    return make_demo_video(tmp_path_factory.mktemp("video") / "demo.avi", faces, 8, 10, seed=3)


# Aggregation ------------------------------------------------------------------------------
def row(start: datetime, label: str, count: int, conf: float, version=None, obs=0, tracks=0):
    return EmotionWindow("cam", start, 5.0, label, count, conf, version, obs, tracks)


def test_aggregator_counts_each_track_once_per_window() -> None:
    agg = WindowAggregator("cam", 5, T0)
    # Track 1 is seen three times (twice happy, once sad): one happy face, not three.
    assert agg.observe(0.0, 1, "happy", 0.75) == []
    assert agg.observe(1.0, 1, "happy", 0.25) == []
    assert agg.observe(2.0, 1, "sad", 0.9) == []
    assert agg.observe(4.99, 2, "sad", 0.5) == []
    first = agg.observe(5.0, 1, "happy", 0.625)  # opens window 1, closes window 0
    assert first == [
        row(T0, "happy", 1, 0.5, obs=2, tracks=2),
        row(T0, "sad", 1, 0.5, obs=1, tracks=2),
    ]
    # Window 2 (10-15 s) sees no faces: it yields no rows at all.
    second = agg.observe(17.0, 2, "sad", 0.25)
    assert second == [row(T0 + timedelta(seconds=5), "happy", 1, 0.625, obs=1, tracks=1)]
    assert agg.flush() == [row(T0 + timedelta(seconds=15), "sad", 1, 0.25, obs=1, tracks=1)]
    assert agg.flush() == []


def test_aggregator_tie_goes_to_the_surer_label() -> None:
    agg = WindowAggregator("cam", 5, T0)
    agg.observe(0.0, 7, "happy", 0.4)
    agg.observe(1.0, 7, "sad", 0.9)
    assert [(r.label, r.count) for r in agg.flush()] == [("sad", 1)]


def test_aggregator_splits_versions_and_advance_closes_empty_time() -> None:
    agg = WindowAggregator("cam", 2, datetime(2026, 1, 1, 12, 0))  # naive = UTC
    agg.observe(0.5, 1, "happy", 1.0, model_version="1")
    agg.observe(1.5, 1, "happy", 0.5, model_version="2")  # hot swap mid-window
    rows = agg.advance(2.0)  # a frame with no faces still closes the window
    assert [(r.label, r.count, r.mean_confidence, r.model_version) for r in rows] == [
        ("happy", 1, 1.0, "1"),
        ("happy", 1, 0.5, "2"),
    ]
    assert rows[0].window_start == T0
    assert agg.advance(3.9) == [] and agg.flush() == []
    with pytest.raises(ValueError, match="window_seconds"):
        WindowAggregator("cam", 0, T0)


def test_window_rows_carry_no_personal_data() -> None:
    names = {f.name for f in dataclasses.fields(EmotionWindow)}
    assert names == {
        "camera_id",
        "window_start",
        "window_seconds",
        "label",
        "count",
        "mean_confidence",
        "model_version",
        "observations",
        "distinct_tracks",
    }


# Classifier -------------------------------------------------------------------------------
def test_classifier_prefers_the_constructed_class(classifier: TfliteEmotionClassifier) -> None:
    bright = np.full((SIZE, SIZE), 230, np.uint8)
    dark = np.full((SIZE, SIZE), 30, np.uint8)
    labels, conf = classifier.classify(np.stack([bright, dark, bright]))
    assert labels == ["happy", "sad", "happy"]
    assert conf.shape == (3,) and np.all(conf > 0.9)
    probs = classifier.predict_proba(np.stack([bright, dark]))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # Batch sizes change frame to frame: the input tensor is resized each time.
    for n in (1, 5, 2, 1):
        labels, conf = classifier.classify(np.repeat(dark[None], n, axis=0))
        assert labels == ["sad"] * n and conf.shape == (n,)
    assert classifier.classify(np.zeros((0, SIZE, SIZE)))[0] == []
    assert classifier.classify(dark[..., None][None])[0] == ["sad"]  # [N,S,S,1] too


def test_classifier_rejects_bad_inputs_and_files(
    classifier: TfliteEmotionClassifier, model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ClassifierError, match=r"shape \[N,48,48\]"):
        classifier.classify(np.zeros((1, 32, 32)))
    with pytest.raises(ClassifierError, match="3 outputs but 2 labels"):
        TfliteEmotionClassifier(model_dir / "model.tflite", ["a", "b"], SIZE)
    with pytest.raises(ClassifierError, match="does not match image_size 64"):
        TfliteEmotionClassifier(model_dir / "model.tflite", LABELS, 64)
    with pytest.raises(ClassifierError, match="labels file not found"):
        load_model_dir(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"labels": LABELS, "image_size": SIZE}))
    (tmp_path / "model.tflite").write_bytes(b"this is not a flatbuffer")
    with pytest.raises(ClassifierError, match="not a loadable TFLite model"):
        load_model_dir(tmp_path)


def test_smoke_test_refuses_outputs_that_are_not_probabilities(
    classifier: TfliteEmotionClassifier, tmp_path: Path
) -> None:
    smoke_test(classifier)  # the real softmax model passes
    logits = load_model_dir(build_tflite(tmp_path, activation="linear"))
    with pytest.raises(ModelRejected, match=r"not probabilities|not 1"):
        smoke_test(logits)


def test_classifier_is_fast_per_face(classifier: TfliteEmotionClassifier) -> None:
    face = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE)).astype(np.float32)
    classifier.classify(face)
    began = time.perf_counter()
    for _ in range(200):
        classifier.classify(face)
    per_face_ms = (time.perf_counter() - began) / 200 * 1000
    # Keras model(x) costs ~36 ms per face here (PLATFORM-NOTES), the interpreter ~0.3 ms:
    # the bound tells them apart even on two busy cores (figures: bench/, not this test).
    assert per_face_ms < 15.0, f"{per_face_ms:.3f} ms per face"


# Camera -----------------------------------------------------------------------------------
def test_missing_file_and_unopenable_stream_name_the_source(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    with pytest.raises(CameraError, match=r"nope\.avi"):
        open_source(str(missing))
    (tmp_path / "junk.avi").write_bytes(b"not a video at all")
    with pytest.raises(CameraError, match=r"junk\.avi"):
        open_source(str(tmp_path / "junk.avi"))
    url = f"rtsp://127.0.0.1:{free_port()}/cam"  # nothing listens there
    with pytest.raises(CameraError, match=url):
        open_source(url)
    with pytest.raises(CameraError, match="empty camera source"):
        open_source("  ")


def test_file_timestamps_and_truncated_file_ends_cleanly(demo: Path, tmp_path: Path) -> None:
    with open_source(str(demo)) as src:
        stamps = [t for t, _ in src]
    assert len(stamps) == 80
    assert stamps[:3] == [0.0, 0.1, 0.2] and stamps[-1] == pytest.approx(7.9)
    data = demo.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with open_source(str(cut)) as src:
        frames = [frame.shape for _, frame in src]
    assert 0 < len(frames) < 80
    assert set(frames) == {(240, 320, 3)}


def _corrupt_frames(video: Path, out: Path, frames: range) -> Path:
    """A copy of an MJPEG AVI with the JPEG data of `frames` overwritten by noise."""
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    noise = np.random.default_rng(0)
    for k in frames:
        s = starts[k]
        data[s : s + 400] = noise.integers(0, 256, 400, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def test_corrupt_frames_are_skipped_and_counted(demo: Path, tmp_path: Path) -> None:
    bad = _corrupt_frames(demo, tmp_path / "bad.avi", range(20, 25))
    with open_source(str(bad)) as src:
        stamps = [t for t, _ in src]
        stats = src.stats
    assert stats.bad_frames == 5 and stats.frames == 75 == len(stamps)
    # Frames after the damage keep their own timestamps (the stream did not end or shift).
    assert stamps[-1] == pytest.approx(7.9) and 2.0 not in stamps
    with open_source(str(bad), max_bad_frames=3) as src:  # a long run of bad frames ends it
        assert len(list(src)) == 20 and src.stats.bad_frames == 3


class _Server:
    """A real HTTP server for one directory on a fixed port: stop it, start it again."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port

    def start(self) -> _Server:
        handler = functools.partial(
            http.server.SimpleHTTPRequestHandler, directory=str(self.directory)
        )
        handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_live_stream_keeps_reconnecting_until_the_camera_is_back(demo: Path) -> None:
    """A stream that ends or whose server goes away is reopened with backoff, for as long as
    it takes; frames flow again once the server is back."""
    server = _Server(demo.parent, free_port()).start()
    url = f"http://127.0.0.1:{server.port}/{demo.name}"
    src = open_source(url, reconnect_s=0.01, reconnect_max_s=0.05, stall_s=5)
    assert src.is_live
    n, restarted = 0, False
    try:
        for timestamp, _ in src:
            assert timestamp >= 0
            n += 1
            if n == 30 and not restarted:
                server.stop()  # the camera goes away mid-stream
                deadline = time.monotonic() + 20
                while src.stats.reconnect_attempts < 5 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert src.stats.reconnect_attempts >= 5  # still trying, never gave up
                server.start()
                restarted = True
            if restarted and n >= 120:  # beyond the file's 80 frames: reopened after it
                break
    finally:
        src.close()
        server.stop()
    assert n >= 120 and src.stats.reconnects >= 1


def test_live_stream_that_stalls_is_reopened(demo: Path) -> None:
    """A capture whose read blocks (a frozen camera) is abandoned after stall_s."""
    import emotionops.edge.camera as camera

    opened: list[str] = []

    class Frozen:
        def __init__(self) -> None:
            self.reads = 0

        def get(self, prop: int) -> float:
            return 25.0

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.reads += 1
            if self.reads > 3 and len(opened) == 1:
                time.sleep(2)  # the first capture hangs after three frames
            return True, np.zeros((8, 8, 3), np.uint8)

        def release(self) -> None:
            pass

    def opener(source: str) -> Frozen:
        opened.append(source)
        return Frozen()

    src = camera.LiveSource("frozen", reconnect_s=0.01, stall_s=0.3, opener=opener)
    for got, _ in enumerate(src, start=1):
        if len(opened) > 1 and got > 10:
            break
    src.close()
    assert src.stats.stalls >= 1 and len(opened) >= 2


# Demo video -------------------------------------------------------------------------------
def test_demo_video_round_trip(demo: Path, faces: dict[str, list[Path]], tmp_path: Path) -> None:
    assert count_frames(demo) == 80
    cap = cv2.VideoCapture(str(demo))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (240, 320, 3)
    assert len(HaarFaceDetector().detect(frame)) == 1
    again = make_demo_video(tmp_path / "again.avi", faces, 8, 10, seed=3)
    assert again.read_bytes() == demo.read_bytes()  # deterministic for a seed
    schedule = demo_schedule(faces, 8, 10, seed=3)
    assert [label for label, _ in schedule] == ["happy", "sad", "happy", "sad"]
    with pytest.raises(DemoVideoError, match="no face images"):
        make_demo_video(tmp_path / "x.avi", {"happy": []}, 2, 10, seed=0)
    with pytest.raises(DemoVideoError, match="cannot read face image"):
        make_demo_video(tmp_path / "x.avi", {"happy": [tmp_path / "missing.png"]}, 2, 10, seed=0)


# The loop ---------------------------------------------------------------------------------
PARAMS = EdgeParams(camera_id="cam-1", window_seconds=2, detect_every=2, classify_every=2, fps=10)


@dataclasses.dataclass(frozen=True)
class Found:
    box: FaceBox
    score: float = 0.9


class Haar:
    """The Haar cascade as an edge detector (boxes + scores)."""

    def __init__(self) -> None:
        self._haar = HaarFaceDetector()

    def detect(self, frame: np.ndarray) -> list[Found]:
        return [Found(b) for b in self._haar.detect(frame)]


@pytest.fixture(scope="module")
def baseline(
    demo: Path, classifier: TfliteEmotionClassifier
) -> tuple[list[EmotionWindow], EdgeStats, list[EmotionWindow]]:
    """One plain run over the demo video (windows, stats, windows sent to on_window)."""
    stats = EdgeStats()
    seen: list[EmotionWindow] = []
    windows = run_edge(
        str(demo), classifier, Haar(), PARAMS, T0, on_window=seen.append, stats=stats
    )
    return windows, stats, seen


def test_run_edge_windows_follow_the_video(
    demo: Path, classifier: TfliteEmotionClassifier, baseline: tuple
) -> None:
    windows, stats, seen = baseline
    assert seen == windows
    assert stats.frames_read == 80 and stats.frames_detected == 40
    # The face stays in place: one track for the whole video, one face per window, whose
    # label follows the drawings shown in each 2 s segment.
    assert stats.tracks_seen == 1
    assert [(w.window_start, w.label, w.count, w.distinct_tracks) for w in windows] == [
        (T0 + timedelta(seconds=2 * k), label, 1, 1)
        for k, label in enumerate(["happy", "sad", "happy", "sad"])
    ]
    assert all(w.mean_confidence > 0.6 for w in windows)
    # Classified every 2nd detection frame (classify_every=2 frames, detect_every=2) ...
    assert stats.faces_classified == stats.frames_detected - (PARAMS.tracking.min_hits - 1)
    assert {(w.model_version, w.camera_id) for w in windows} == {("1", "cam-1")}
    # Same file, same start time: identical windows.
    assert run_edge(str(demo), classifier, Haar(), PARAMS, T0) == windows


def test_classify_every_throttles_and_smoothing_holds_the_label(
    demo: Path, classifier: TfliteEmotionClassifier
) -> None:
    stats = EdgeStats()
    sparse = PARAMS.model_copy(update={"classify_every": 8})
    windows = run_edge(str(demo), classifier, Haar(), sparse, T0, stats=stats)
    assert stats.faces_classified == pytest.approx(stats.frames_detected / 4, abs=1)
    assert len({w.window_start for w in windows}) == 4  # still a label in every window
    uncertain = PARAMS.model_copy(update={"min_confidence": 0.999})
    rows = run_edge(str(demo), classifier, Haar(), uncertain, T0)
    assert {w.label for w in rows} == {"uncertain"}


def test_exclusion_polygons_skip_faces(
    demo: Path, classifier: TfliteEmotionClassifier, baseline: tuple
) -> None:
    detector = Haar()
    stats = EdgeStats()
    around = PARAMS.model_copy(  # a triangle around the face centre (160, 120)
        update={"exclusion_zones": [[(100.0, 40.0), (260.0, 120.0), (100.0, 200.0)]]}
    )
    assert run_edge(str(demo), classifier, detector, around, T0, stats=stats) == []
    assert stats.faces_detected > 30 and stats.faces_excluded == stats.faces_detected
    assert stats.faces_classified == 0
    # A triangle whose bounding box holds the centre, but not the triangle itself.
    beside = PARAMS.model_copy(
        update={"exclusion_zones": [[(100.0, 40.0), (150.0, 40.0), (100.0, 200.0)]]}
    )
    assert run_edge(str(demo), classifier, detector, beside, T0) == baseline[0]
    bad = PARAMS.model_copy(update={"exclusion_zones": [[(0.0, 0.0), (5.0, 5.0)]]})
    with pytest.raises(ZoneError, match="at least three"):
        run_edge(str(demo), classifier, detector, bad, T0)


def test_run_edge_max_frames_and_swap_between_frames(
    demo: Path, model_dir: Path, baseline: tuple
) -> None:
    stats = EdgeStats()
    one = load_model_dir(model_dir, version="1")
    two = load_model_dir(model_dir, version="2")
    run_edge(str(demo), one, Haar(), PARAMS, T0, max_frames=10, stats=stats)
    assert stats.frames_read == 10 and stats.frames_detected == 5

    calls = {"n": 0}

    def provider() -> TfliteEmotionClassifier:
        calls["n"] += 1
        return one if calls["n"] <= 15 else two  # swap after 15 detection frames

    windows = run_edge(str(demo), provider, Haar(), PARAMS, T0)
    assert calls["n"] == 40  # asked once per detection frame
    assert {w.model_version for w in windows} == {"1", "2"}
    # The swap re-labels the track at once; the window it happened in has a row per version.
    mid = [w for w in windows if w.window_start == T0 + timedelta(seconds=2)]
    assert {w.model_version for w in mid} == {"1", "2"}
    assert sum(w.count for w in windows if w.model_version == "2") == 3


# Real video, privacy of the view, display --------------------------------------------------
@pytest.mark.real_data
@pytest.mark.parametrize("name", ["fei_1543684773.avi", "fei_1543684810.avi"])
def test_tracking_keeps_one_id_per_face_on_a_real_video(
    real_data: Path, classifier: TfliteEmotionClassifier, name: str
) -> None:
    """One person in front of the camera for the whole clip: one track, labelled throughout,
    counted once per window although the detector saw the face on ~20 frames."""
    from emotionops.edge.detect import make_edge_detector

    video = real_data / "videos" / name
    if not video.is_file():
        pytest.skip(f"{video} not found")
    edge = EdgeParams(window_seconds=60)
    stats = EdgeStats()
    tracked: list[int] = []
    windows = run_edge(
        str(video), classifier, make_edge_detector(edge.detection), edge, T0, stats=stats,
        on_frame=lambda frame, tracks, s, n: tracked.extend(t.track_id for t in tracks),
    )  # fmt: skip
    assert stats.tracks_seen == 1 and len(set(tracked)) == 1
    assert len(tracked) >= stats.frames_read - 2 * edge.detect_every  # in view once confirmed
    assert sum(w.count for w in windows) == 1 and windows[0].distinct_tracks == 1
    assert windows[0].observations == stats.frames_detected - (edge.tracking.min_hits - 1)


def test_display_view_pixelates_every_face() -> None:
    from emotionops.edge.service import blurred_view
    from emotionops.edge.track import Track

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    track = Track(3, FaceBox(40, 20, 60, 60), 0.9, label="happy", confidence=0.8)
    view = blurred_view(frame, [track])
    inner = view[25:75, 45:95].astype(float)  # inside the box, off its outline and text
    original = frame[25:75, 45:95].astype(float)
    # Pixelated to 6x6 blocks: the detail (pixel-to-pixel change) is gone inside the face...
    assert np.abs(np.diff(inner, axis=1)).mean() < 0.2 * np.abs(np.diff(original, axis=1)).mean()
    # ...and nothing outside it changed; the caller's frame is untouched.
    assert np.array_equal(view[100:, :], frame[100:, :])
    assert not np.shares_memory(view, frame)


def test_display_needs_a_gui_build_and_says_so() -> None:
    from emotionops.edge.runner import DisplayUnavailable, display_hook

    if not re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        pytest.skip("this OpenCV has a GUI backend")
    with pytest.raises(DisplayUnavailable, match="opencv-python"):
        display_hook()


def test_health_server_serves_healthz_and_metrics() -> None:
    import urllib.error
    import urllib.request

    from emotionops.edge.metrics import EdgeMetrics, HealthServer

    state = {"ok": False, "model_version": "3"}
    metrics = EdgeMetrics("door")
    stats = EdgeStats(tracks_in_view=2, tracks_seen=5)
    stats.source.reconnects = 1
    for _ in range(3):
        metrics.frame(0.004, 2, stats)
    metrics.frame(0.001, None, stats)  # a frame the detector skipped
    metrics.model_version("emotion-classifier", "3", 1)
    with HealthServer(metrics, lambda: dict(state)) as server:
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(server.url + "/healthz", timeout=5)
        assert unhealthy.value.code == 503
        assert json.loads(unhealthy.value.read())["model_version"] == "3"
        state["ok"] = True
        with urllib.request.urlopen(server.url + "/healthz", timeout=5) as answer:
            assert answer.status == 200 and json.loads(answer.read())["ok"] is True
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as answer:
            text = answer.read().decode()
    assert "edge_frames_total 4.0" in text
    assert "edge_faces_per_detection_count 3.0" in text  # skipped frames are not detections
    assert "edge_tracks_in_view 2.0" in text and "edge_source_reconnects 1.0" in text
    assert 'edge_model_info{name="emotion-classifier",version="3"} 1.0' in text
    assert 'edge_camera_info{camera_id="door"} 1.0' in text
