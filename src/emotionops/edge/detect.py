"""Pluggable face detectors for the edge service: Haar on a downscaled frame, or BlazeFace.

Every detector returns `Detection`s in full-frame pixel coordinates, largest first, so the
tracker and the classifier never see the detector's working resolution.

BlazeFace is MediaPipe's face detector (Apache-2.0): two TFLite files taken from the official
`mediapipe==0.10.21` wheel by `make setup` (hash-pinned, into `<venv>/share/blazeface`) and run
in ai-edge-litert, so MediaPipe itself is never installed and nothing is fetched at run time.
The pre- and post-processing below re-implements what MediaPipe's face-detection graph does
around the network, with the option values of its graphs:

- the frame is letterboxed (aspect kept, zero border) to the model's square input, RGB in
  [-1, 1];
- SSD anchors: one anchor centre per feature-map cell and per anchor of the cell, anchor size
  fixed at 1 (the regressors are offsets in input pixels, not multiples of an anchor size);
- a box is (x_centre, y_centre, w, h) in input pixels relative to its anchor centre, followed by
  six key points that are not used here; the score is a logit, clipped to +-100 and squashed;
- overlapping boxes are merged by weighted non-max suppression (score-weighted mean of the
  cluster, the best score kept) rather than dropped: steadier boxes from frame to frame.

Beyond MediaPipe: a frame larger than `max_side` is also looked at in overlapping tiles, since
a 192 px input leaves the faces of a 1080p street scene a few pixels wide.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import cv2
import numpy as np

from emotionops.clean.faces import FaceBox, FaceDetectorError, HaarFaceDetector

if TYPE_CHECKING:
    from emotionops.params import DetectionParams

#: `edge.detection.detector` values accepted by `make_edge_detector`.
EDGE_DETECTORS = ("blazeface_full", "blazeface_short", "haar")


class BlazeFaceModelMissing(FaceDetectorError):
    """A BlazeFace model file is not where the detector looks for it."""


@dataclass(frozen=True)
class Detection:
    """One face: its box in full-frame pixels and the detector's confidence in [0, 1]."""

    box: FaceBox
    score: float


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray) -> list[Detection]: ...


def downscale(frame: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """The frame shrunk so its longer side is at most `max_side`, and the factor used
    (small = full * factor); never enlarged. Detection cost grows with pixels, faces that
    matter at the edge are rarely tiny, so a cap keeps 1080p frames real-time."""
    h, w = frame.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return frame, 1.0
    factor = max_side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), factor


def _largest_first(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: (d.box.area, d.score), reverse=True)


def _clip_box(x0: float, y0: float, x1: float, y1: float, w: int, h: int) -> FaceBox | None:
    """Integer box clipped to a w x h frame; None when nothing of it is left inside."""
    ix0, iy0 = max(0, round(x0)), max(0, round(y0))
    ix1, iy1 = min(w, round(x1)), min(h, round(y1))
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return FaceBox(ix0, iy0, ix1 - ix0, iy1 - iy0)


class HaarDetector:
    """OpenCV's Haar cascade run on a frame downscaled to `max_side`; score 1.0 (the cascade
    gives no calibrated confidence)."""

    def __init__(
        self, max_side: int | None = 640, min_face_side: int = 24, pad_fraction: float = 0.0
    ) -> None:
        self.max_side = max_side
        self.min_face_side = min_face_side
        # The cascade's own minimum is set per frame (it depends on the downscale factor). No
        # padding by default: camera frames are scenes, not the tight crops padding is for,
        # and a 25% pad costs the cascade 2.25 times the pixels.
        self._haar = HaarFaceDetector(min_face_side=min_face_side, pad_fraction=pad_fraction)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        small, factor = downscale(frame, self.max_side)
        self._haar.min_face_side = max(1, math.floor(self.min_face_side * factor))
        found = []
        for b in self._haar.detect(small):
            box = _clip_box(b.x / factor, b.y / factor, (b.x + b.w) / factor,
                            (b.y + b.h) / factor, w, h)  # fmt: skip
            if box is not None and min(box.w, box.h) >= self.min_face_side:
                found.append(Detection(box, 1.0))
        return _largest_first(found)


# --- BlazeFace -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlazeFaceSpec:
    """What decoding one BlazeFace model needs (MediaPipe's face_detection_*_range graphs)."""

    file: str
    input_side: int
    strides: tuple[int, ...]
    #: >0 adds one extra anchor per layer (MediaPipe's interpolated_scale_aspect_ratio).
    interpolated_anchor: bool
    num_anchors: int
    #: MediaPipe's own threshold for this model (min_score_thresh of its graph).
    default_min_score: float


BLAZEFACE_MODELS = {
    "short": BlazeFaceSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 896, 0.5),
    "full": BlazeFaceSpec("face_detection_full_range_sparse.tflite", 192, (4,), False, 2304, 0.6),
}  # fmt: skip
SCORE_CLIP = 100.0


def ssd_anchor_centres(input_side: int, strides: tuple[int, ...], interpolated: bool) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in [0, 1], in the model's output order.

    Consecutive layers with the same stride share one feature map: each of its cells holds
    one anchor per layer (aspect ratio 1) plus one interpolated anchor per layer when enabled.
    Rows run over y, then x, then the anchors of a cell."""
    centres = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        layers = 0
        while i < len(strides) and strides[i] == stride:
            layers += 1
            i += 1
        per_cell = layers * (2 if interpolated else 1)
        side = math.ceil(input_side / stride)
        coords = (np.arange(side, dtype=np.float32) + 0.5) / side
        ys, xs = np.meshgrid(coords, coords, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the square input: input = frame * scale + (pad_x, pad_y)."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(frame: np.ndarray, side: int) -> tuple[np.ndarray, Letterbox]:
    """The frame resized into a side x side RGB float32 tensor in [-1, 1], aspect kept, centred
    with a zero (black) border, as MediaPipe's ImageToTensorCalculator does for BlazeFace."""
    h, w = frame.shape[:2]
    scale = side / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (nw, nh), interpolation=interp)
    if resized.ndim == 2:
        rgb = cv2.cvtColor(resized, cv2.COLOR_GRAY2RGB)
    elif resized.shape[2] == 4:
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    pad_x, pad_y = (side - nw) // 2, (side - nh) // 2
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = rgb
    tensor = canvas.astype(np.float32) * (2.0 / 255.0) - 1.0
    return tensor, Letterbox(scale, float(pad_x), float(pad_y))


def decode_boxes(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) as x0, y0, x1, y1 in input pixels, and sigmoid scores (N,), from the raw
    regressors (N, >=4: x_centre, y_centre, w, h offsets in input pixels) and logits."""
    raw_boxes = raw_boxes.reshape(len(anchors), -1)
    cx = raw_boxes[:, 0] + anchors[:, 0] * input_side
    cy = raw_boxes[:, 1] + anchors[:, 1] * input_side
    half_w, half_h = raw_boxes[:, 2] / 2, raw_boxes[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    return boxes, 1.0 / (1.0 + np.exp(-logits))


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ix0 = np.maximum(box[0], others[:, 0])
    iy0 = np.maximum(box[1], others[:, 1])
    ix1 = np.minimum(box[2], others[:, 2])
    iy1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted non-max suppression: the best remaining box and every box overlapping it by
    more than `iou_threshold` become one box, their score-weighted mean, with the best score.
    BlazeFace fires on many neighbouring anchors per face: averaging them (instead of keeping
    one) gives a steadier box."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    kept_boxes, kept_scores = [], []
    remaining = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        cluster = remaining & (_iou(boxes[i], boxes) > iou_threshold)
        cluster[i] = True
        weights = scores[cluster]
        kept_boxes.append((boxes[cluster] * weights[:, None]).sum(axis=0) / weights.sum())
        kept_scores.append(scores[i])
        remaining &= ~cluster
    if not kept_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.array(kept_boxes, np.float32), np.array(kept_scores, np.float32)


def blazeface_dir(model_dir: str | Path | None = None) -> Path:
    """Where the BlazeFace files are: `model_dir` when given, else `<venv>/share/blazeface`
    (what `make setup` installs)."""
    return Path(model_dir) if model_dir else Path(sys.prefix) / "share" / "blazeface"


class BlazeFaceDetector:
    """MediaPipe's BlazeFace (short range: faces within ~2 m; full range: within ~5 m) in
    ai-edge-litert. A frame larger than `max_side` is also looked at in overlapping tiles of
    that side (`tiles`), so small faces in a wide scene reach the model big enough; None: one
    pass on the whole frame."""

    def __init__(
        self,
        model: Literal["short", "full"] = "full",
        min_score: float | None = None,
        max_side: int | None = None,
        min_face_side: int = 0,
        nms_iou: float = 0.3,
        num_threads: int = 1,
        model_dir: str | Path | None = None,
    ) -> None:
        if model not in BLAZEFACE_MODELS:
            raise FaceDetectorError(
                f"unknown BlazeFace model {model!r}; known: {list(BLAZEFACE_MODELS)}"
            )
        self.spec = BLAZEFACE_MODELS[model]
        self.min_score = self.spec.default_min_score if min_score is None else min_score
        self.max_side = max_side
        self.min_face_side = min_face_side
        self.nms_iou = nms_iou
        path = blazeface_dir(model_dir) / self.spec.file
        if not path.is_file():
            raise BlazeFaceModelMissing(
                f"BlazeFace model file not found: {path}. Run `make setup` (it installs the "
                "hash-pinned files from the mediapipe 0.10.21 wheel into <venv>/share/blazeface)"
                " or set edge.detection.model_dir to a folder holding them"
            )
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise FaceDetectorError(f"cannot load BlazeFace model {path}: {exc}") from exc
        self._input = self._interpreter.get_input_details()[0]
        side = self.spec.input_side
        if tuple(self._input["shape"]) != (1, side, side, 3):
            raise FaceDetectorError(
                f"{path} takes input {tuple(self._input['shape'])}, expected (1, {side}, {side}, 3)"
            )
        outputs = self._interpreter.get_output_details()
        # Regressors are (1, N, 16), scores (1, N, 1): tell them apart by their last dimension.
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        self._boxes_index, self._scores_index = by_width[16], by_width[1]
        self.anchors = ssd_anchor_centres(side, self.spec.strides, self.spec.interpolated_anchor)
        if len(self.anchors) != self.spec.num_anchors:
            raise FaceDetectorError(
                f"{path}: {len(self.anchors)} anchors, expected {self.spec.num_anchors}"
            )

    def raw(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's raw outputs (regressors (N, 16), logits (N,)) for one input tensor."""
        self._interpreter.set_tensor(self._input["index"], tensor[None])
        self._interpreter.invoke()
        boxes = self._interpreter.get_tensor(self._boxes_index)[0]
        return boxes, self._interpreter.get_tensor(self._scores_index)[0, :, 0]

    def detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        side = self.spec.input_side
        all_boxes, all_scores = [], []
        for x0, y0, x1, y1 in tiles(h, w, self.max_side):
            tensor, fit = letterbox(frame[y0:y1, x0:x1], side)
            raw_boxes, raw_scores = self.raw(tensor)
            boxes, scores = blazeface_boxes(raw_boxes, raw_scores, self.anchors, side, fit,
                                            self.min_score, offset=(x0, y0))  # fmt: skip
            if (x0, y0, x1, y1) != (0, 0, w, h):
                whole = uncut_by_tile(boxes, (x0, y0, x1, y1), (h, w))
                boxes, scores = boxes[whole], scores[whole]
            all_boxes.append(boxes)
            all_scores.append(scores)
        return merge_detections(np.concatenate(all_boxes), np.concatenate(all_scores), (h, w),
                                self.nms_iou, self.min_face_side)  # fmt: skip


def tiles(h: int, w: int, side: int | None, overlap: float = 0.25) -> list[tuple[int, ...]]:
    """Windows (x0, y0, x1, y1) one BlazeFace pass each looks at: the whole frame, then, when
    the frame is larger than `side`, a grid of `side` x `side` tiles overlapping by `overlap`
    (a face smaller than overlap * side lies whole in some tile). BlazeFace squeezes whatever
    it is given into 128 or 192 px: a 1080p street scene in one pass leaves a face 10 px."""
    windows = [(0, 0, w, h)]
    if not side or max(h, w) <= side:
        return windows

    def starts(n: int) -> list[int]:
        if n <= side:
            return [0]
        count = math.ceil((n - side) / (side * (1 - overlap))) + 1
        return [round(i * (n - side) / (count - 1)) for i in range(count)]

    windows += [(x, y, min(w, x + side), min(h, y + side)) for y in starts(h) for x in starts(w)]
    return windows


def uncut_by_tile(
    boxes: np.ndarray, window: tuple[int, ...], frame_shape: tuple[int, int], margin: float = 2.0
) -> np.ndarray:
    """Mask of the boxes that do not reach an edge of the tile lying inside the frame: a face
    cut by the tile is seen whole by a neighbouring tile or by the whole-frame pass, and its
    half box would only drag the merged box off the face."""
    x0, y0, x1, y1 = window
    h, w = frame_shape
    keep = np.ones(len(boxes), bool)
    if x0 > 0:
        keep &= boxes[:, 0] > x0 + margin
    if y0 > 0:
        keep &= boxes[:, 1] > y0 + margin
    if x1 < w:
        keep &= boxes[:, 2] < x1 - margin
    if y1 < h:
        keep &= boxes[:, 3] < y1 - margin
    return keep


def blazeface_boxes(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_side: int,
    fit: Letterbox,
    min_score: float,
    factor: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x0, y0, x1, y1, float, full-frame px) scoring at least `min_score`, and their
    scores: the letterbox undone, then the downscale (`factor`), then the tile's `offset`."""
    boxes, scores = decode_boxes(raw_boxes, raw_scores, anchors, input_side)
    keep = scores >= min_score
    boxes, scores = boxes[keep], scores[keep]
    pad = np.array([fit.pad_x, fit.pad_y] * 2, np.float64)
    shift = np.array([*offset, *offset], np.float64)
    return (boxes - pad) / (fit.scale * factor) + shift, scores


def merge_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    frame_shape: tuple[int, int],
    nms_iou: float,
    min_face_side: int = 0,
) -> list[Detection]:
    """Full-frame boxes -> detections: weighted NMS, clipped to the frame, faces under
    `min_face_side` dropped, largest first."""
    boxes, scores = weighted_nms(boxes, scores, nms_iou)
    h, w = frame_shape
    found = []
    for (x0, y0, x1, y1), score in zip(boxes, scores, strict=True):
        box = _clip_box(x0, y0, x1, y1, w, h)
        if box is not None and min(box.w, box.h) >= min_face_side:
            found.append(Detection(box, float(score)))
    return _largest_first(found)


def blazeface_postprocess(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_side: int,
    fit: Letterbox,
    factor: float,
    frame_shape: tuple[int, int],
    min_score: float,
    nms_iou: float,
    min_face_side: int = 0,
) -> list[Detection]:
    """One pass's raw outputs -> detections in full-frame pixels (threshold, undo letterbox
    and downscale, merge, clip, size filter)."""
    boxes, scores = blazeface_boxes(raw_boxes, raw_scores, anchors, input_side, fit, min_score,
                                    factor)  # fmt: skip
    return merge_detections(boxes, scores, frame_shape, nms_iou, min_face_side)


def make_edge_detector(params: DetectionParams) -> FaceDetector:
    """The detector named in `edge.detection.detector`."""
    name = params.detector
    if name == "haar":
        return HaarDetector(max_side=params.max_side or None, min_face_side=params.min_face_side)
    if name in ("blazeface_short", "blazeface_full"):
        return BlazeFaceDetector(
            model="short" if name == "blazeface_short" else "full",
            min_score=params.min_score,
            max_side=params.max_side or None,
            min_face_side=params.min_face_side,
            nms_iou=params.nms_iou,
            num_threads=params.num_threads,
            model_dir=params.model_dir or None,
        )
    raise FaceDetectorError(f"unknown edge face detector {name!r}; known: {list(EDGE_DETECTORS)}")
