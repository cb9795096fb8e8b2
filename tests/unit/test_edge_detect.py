"""Edge face detectors: BlazeFace anchors, decoding through the letterbox, weighted NMS, the
downscaled Haar's coordinates, and the real models on made-up and (when present) real images."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotionops.clean.faces import FaceBox, FaceDetectorError
from emotionops.edge.detect import (
    BLAZEFACE_MODELS,
    BlazeFaceDetector,
    BlazeFaceModelMissing,
    Detection,
    HaarDetector,
    blazeface_boxes,
    blazeface_dir,
    blazeface_postprocess,
    downscale,
    letterbox,
    make_edge_detector,
    merge_detections,
    ssd_anchor_centres,
    tiles,
    uncut_by_tile,
    weighted_nms,
)
from emotionops.params import DetectionParams, EdgeParams

MODELS_PRESENT = all((blazeface_dir() / spec.file).is_file() for spec in BLAZEFACE_MODELS.values())
needs_models = pytest.mark.skipif(
    not MODELS_PRESENT, reason=f"BlazeFace files not installed in {blazeface_dir()} (make setup)"
)
GROUP_PHOTOS = {"fnp_multiface.jpg", "fr_obama_and_biden.jpg", "fr_two_people.jpg"}


def _anchors(name: str) -> np.ndarray:
    spec = BLAZEFACE_MODELS[name]
    return ssd_anchor_centres(spec.input_side, spec.strides, spec.interpolated_anchor)


def test_short_range_anchors_two_per_cell_then_six() -> None:
    anchors = _anchors("short")
    assert anchors.shape == (896, 2)
    # Stride 8: a 16x16 map, 2 anchors per cell (aspect 1 + interpolated), row-major.
    assert np.allclose(anchors[0], anchors[1])
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[2], [1.5 / 16, 0.5 / 16])  # next cell: x moves first
    assert np.allclose(anchors[32], [0.5 / 16, 1.5 / 16])  # 16 cells * 2 later: next row
    # Three stride-16 layers share one 8x8 map: 6 anchors per cell, from index 512.
    assert np.allclose(anchors[512:518], [0.5 / 8, 0.5 / 8])
    assert np.allclose(anchors[518], [1.5 / 8, 0.5 / 8])
    assert np.allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_full_range_anchors_one_per_cell_of_a_48_grid() -> None:
    anchors = _anchors("full")
    assert anchors.shape == (2304, 2)
    y, x = 17, 30
    assert np.allclose(anchors[y * 48 + x], [(x + 0.5) / 48, (y + 0.5) / 48])
    assert len(np.unique(anchors, axis=0)) == 2304


def _raw_for(box_in_input: tuple[float, float, float, float], anchor: int, name: str):
    """Raw model outputs with one confident box (x0, y0, x1, y1 in input pixels) on `anchor`."""
    spec = BLAZEFACE_MODELS[name]
    anchors = _anchors(name)
    raw = np.zeros((len(anchors), 16), np.float32)
    x0, y0, x1, y1 = box_in_input
    raw[anchor, 0] = (x0 + x1) / 2 - anchors[anchor, 0] * spec.input_side
    raw[anchor, 1] = (y0 + y1) / 2 - anchors[anchor, 1] * spec.input_side
    raw[anchor, 2], raw[anchor, 3] = x1 - x0, y1 - y0
    logits = np.full(len(anchors), -8.0, np.float32)
    logits[anchor] = 4.0
    return raw, logits, anchors, spec


@pytest.mark.parametrize("name", ["full", "short"])
def test_a_known_box_decodes_to_its_frame_position_through_letterbox_and_downscale(name) -> None:
    frame = np.zeros((540, 1280, 3), np.uint8)  # wide: letterboxed top and bottom
    small, factor = downscale(frame, 640)
    assert small.shape[:2] == (270, 640) and factor == 0.5
    tensor, fit = letterbox(small, BLAZEFACE_MODELS[name].input_side)
    assert tensor.shape[:2] == (BLAZEFACE_MODELS[name].input_side,) * 2
    assert fit.pad_x == 0 and fit.pad_y > 0
    face = FaceBox(800, 100, 160, 200)  # full-frame pixels
    to_input = fit.scale * factor
    box_in = (face.x * to_input + fit.pad_x, face.y * to_input + fit.pad_y,
              (face.x + face.w) * to_input + fit.pad_x, (face.y + face.h) * to_input + fit.pad_y)  # fmt: skip
    raw, logits, anchors, spec = _raw_for(box_in, anchor=300, name=name)
    found = blazeface_postprocess(raw, logits, anchors, spec.input_side, fit, factor,
                                  frame.shape[:2], min_score=0.5, nms_iou=0.3)  # fmt: skip
    assert len(found) == 1
    got = found[0].box
    assert abs(got.x - face.x) <= 1 and abs(got.y - face.y) <= 1
    assert abs(got.w - face.w) <= 2 and abs(got.h - face.h) <= 2
    assert found[0].score == pytest.approx(1 / (1 + np.exp(-4.0)), rel=1e-5)


def test_decoded_boxes_are_clipped_to_the_frame_and_low_scores_dropped() -> None:
    frame_shape = (300, 300)
    _, fit = letterbox(np.zeros((*frame_shape, 3), np.uint8), 192)
    # A box hanging over the top-left corner of the input.
    raw, logits, anchors, _spec = _raw_for((-40, -30, 60, 80), anchor=0, name="full")
    found = blazeface_postprocess(raw, logits, anchors, 192, fit, 1.0, frame_shape, 0.5, 0.3)
    assert [(d.box.x, d.box.y) for d in found] == [(0, 0)]
    assert found[0].box.w == round(60 / fit.scale) and found[0].box.h == round(80 / fit.scale)
    assert blazeface_postprocess(raw, logits, anchors, 192, fit, 1.0, frame_shape, 0.99, 0.3) == []
    # min_face_side drops faces that are too small in full-frame pixels.
    assert blazeface_postprocess(raw, logits, anchors, 192, fit, 1.0, frame_shape, 0.5, 0.3,
                                 min_face_side=200) == []  # fmt: skip


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.8], np.float32)
    merged, merged_scores = weighted_nms(boxes, scores, iou_threshold=0.3)
    assert len(merged) == 2
    assert merged_scores.tolist() == pytest.approx([0.9, 0.8])
    # The merged box is the score-weighted mean of the two overlapping ones.
    expected_x0 = (0.6 * 0 + 0.9 * 2) / 1.5
    assert merged[0].tolist() == pytest.approx([expected_x0, 0, expected_x0 + 10, 10])
    assert merged[1].tolist() == pytest.approx([50, 50, 60, 60])
    # Below the threshold nothing merges (IoU of the first two is 8/12 = 0.67).
    assert len(weighted_nms(boxes, scores, iou_threshold=0.7)[0]) == 3
    assert len(weighted_nms(np.zeros((0, 4), np.float32), np.zeros(0), 0.3)[0]) == 0


def test_downscaled_haar_maps_boxes_back_to_the_full_frame() -> None:
    """The cascade sees the small frame; its box comes back scaled up (and clipped)."""
    detector = HaarDetector(max_side=400, min_face_side=24)
    seen: list[tuple[int, ...]] = []

    class FixedCascade:
        min_face_side = 0

        def detect(self, image: np.ndarray) -> list[FaceBox]:
            seen.append(image.shape)
            return [FaceBox(100, 50, 40, 40), FaceBox(390, 200, 20, 20), FaceBox(1, 1, 5, 5)]

    detector._haar = FixedCascade()  # the cascade itself is tested in test_images.py
    frame = np.zeros((1000, 1600, 3), np.uint8)
    found = detector.detect(frame)
    assert seen == [(250, 400, 3)]
    assert detector._haar.min_face_side == 6  # 24 full-frame px at factor 0.25
    assert [d.box for d in found] == [FaceBox(400, 200, 160, 160), FaceBox(1560, 800, 40, 80)]
    assert {d.score for d in found} == {1.0}  # the 5 px one is 20 px in full: dropped


def test_haar_detector_on_a_real_cascade_finds_nothing_on_a_blank_frame() -> None:
    assert HaarDetector(max_side=320).detect(np.full((720, 1280, 3), 127, np.uint8)) == []


def test_detection_params_default_and_validation() -> None:
    assert EdgeParams().detection == DetectionParams()
    with pytest.raises(ValueError, match=r"edge\.detection\.detector"):
        DetectionParams(detector="yolo")
    assert isinstance(make_edge_detector(DetectionParams(detector="haar")), HaarDetector)


def test_missing_model_files_name_make_setup(tmp_path) -> None:
    params = DetectionParams(detector="blazeface_short", model_dir=str(tmp_path))
    with pytest.raises(BlazeFaceModelMissing, match="make setup") as info:
        make_edge_detector(params)
    assert str(tmp_path / "face_detection_short_range.tflite") in str(info.value)
    with pytest.raises(FaceDetectorError, match="unknown BlazeFace model"):
        BlazeFaceDetector(model="huge")  # type: ignore[arg-type]


@needs_models
@pytest.mark.parametrize("detector", ["blazeface_full", "blazeface_short"])
def test_real_blazeface_finds_no_face_in_blank_or_noise_frames(detector) -> None:
    found = make_edge_detector(DetectionParams(detector=detector))
    assert isinstance(found, BlazeFaceDetector)
    rng = np.random.default_rng(0)
    frames = [
        np.zeros((480, 640, 3), np.uint8),
        np.full((720, 1280, 3), 200, np.uint8),
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        cv2.GaussianBlur(rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8), (0, 0), 3),
        np.zeros((240, 320), np.uint8),  # gray frames are accepted too
    ]
    for frame in frames:
        assert found.detect(frame) == []


@needs_models
def test_real_blazeface_outputs_match_the_model_layout() -> None:
    detector = BlazeFaceDetector("full", num_threads=1)
    tensor, _ = letterbox(np.zeros((100, 100, 3), np.uint8), 192)
    boxes, logits = detector.raw(tensor)
    assert boxes.shape == (2304, 16) and logits.shape == (2304,)
    assert float(logits.max()) < 0  # nothing looks like a face in black


@needs_models
@pytest.mark.real_data
def test_real_photos_single_people_found_groups_several(real_data: Path) -> None:
    photos = sorted(glob.glob(str(real_data / "photos" / "*")))
    if not photos:
        pytest.skip(f"no photos in {real_data / 'photos'}")
    params = DetectionParams(detector="blazeface_full")
    detector = make_edge_detector(params)
    for path in photos:
        frame = cv2.imread(path)
        found: list[Detection] = detector.detect(frame)
        name = Path(path).name
        h, w = frame.shape[:2]
        assert len(found) >= (2 if name in GROUP_PHOTOS else 1), name
        for d in found:
            assert d.box.x >= 0 and d.box.x + d.box.w <= w, name
            assert d.box.y >= 0 and d.box.y + d.box.h <= h, name
            assert params.min_score <= d.score <= 1.0
        assert [d.box.area for d in found] == sorted((d.box.area for d in found), reverse=True)


def test_tiles_cover_a_large_frame_with_overlap_and_leave_small_ones_whole() -> None:
    assert tiles(480, 640, 960) == [(0, 0, 640, 480)]
    assert tiles(2000, 3000, None) == [(0, 0, 3000, 2000)]
    windows = tiles(1080, 1920, 960)
    assert windows[0] == (0, 0, 1920, 1080)  # the whole frame first: large faces
    grid = windows[1:]
    assert len(grid) == 6  # 3 across, 2 down
    assert all(x1 - x0 <= 960 and y1 - y0 <= 960 for x0, y0, x1, y1 in grid)
    assert max(x1 for _, _, x1, _ in grid) == 1920 and max(y1 for *_, y1 in grid) == 1080
    # Any face up to a quarter of the tile side lies whole inside some tile.
    rng = np.random.default_rng(1)
    for _ in range(300):
        size = 240
        fx, fy = rng.integers(0, 1920 - size), rng.integers(0, 1080 - size)
        assert any(
            x0 <= fx and y0 <= fy and fx + size <= x1 and fy + size <= y1 for x0, y0, x1, y1 in grid
        ), (fx, fy)


def test_a_box_found_in_a_tile_is_placed_by_the_tile_offset() -> None:
    crop = np.zeros((960, 960, 3), np.uint8)
    _, fit = letterbox(crop, 192)
    raw, logits, anchors, _spec = _raw_for((40, 60, 60, 80), anchor=1000, name="full")
    boxes, scores = blazeface_boxes(raw, logits, anchors, 192, fit, 0.5, offset=(480, 120))
    assert boxes[0].tolist() == pytest.approx([480 + 200, 120 + 300, 480 + 300, 120 + 400])
    found = merge_detections(boxes, scores, (1080, 1920), nms_iou=0.3)
    assert [d.box for d in found] == [FaceBox(680, 420, 100, 100)]


@needs_models
@pytest.mark.real_data
def test_tiles_find_the_small_faces_of_the_street_scene(real_data: Path) -> None:
    video = real_data / "videos" / "fnp_video.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    assert ok
    tiled = BlazeFaceDetector("full", min_score=0.5, max_side=960).detect(frame)
    whole = BlazeFaceDetector("full", min_score=0.5, max_side=None).detect(frame)
    assert len(tiled) >= 5 > len(whole)
    boxes = [d.box for d in tiled]
    for i, a in enumerate(boxes):  # no face is counted twice across tiles
        for b in boxes[i + 1 :]:
            ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
            iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
            assert ix * iy < 0.3 * (a.area + b.area - ix * iy), (a, b)


def test_boxes_cut_by_an_inner_tile_edge_are_left_to_the_neighbour_tile() -> None:
    boxes = np.array(
        [[500, 200, 560, 260], [470, 200, 530, 260], [900, 10, 959, 70], [0, 0, 40, 40]], float
    )
    # Tile (480, 0)-(960, 480) of a 1920x1080 frame: left, right and bottom edges are inner.
    mask = uncut_by_tile(boxes, (480, 0, 960, 480), (1080, 1920))
    assert mask.tolist() == [True, False, False, False]
    # At the frame's own border a box may touch the edge.
    edge_box = np.array([[0.0, 100, 50, 150]])
    assert uncut_by_tile(edge_box, (0, 0, 480, 480), (1080, 1920)).tolist() == [True]
