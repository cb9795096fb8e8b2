"""Typed loader for `params.yaml`: one model per stage, validated with clear errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emotionops.errors import EmotionOpsError

FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DEFAULT_LABELS = ("happy", "sad", "surprise", "neutral")


class ParamsError(EmotionOpsError, ValueError):
    """params.yaml is missing, malformed, or has a value out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScrapeParams(_Section):
    engine: str = "local"
    per_label: int = Field(40, ge=1, le=10_000)
    timeout_s: float = Field(20, gt=0, le=300)
    queries: dict[str, list[str]] = Field(default_factory=dict)


class StandinParams(_Section):
    images_per_label: int = Field(40, ge=1, le=5_000)
    page_size: int = Field(12, ge=1, le=200)
    seed: int = 7


class DownloadParams(_Section):
    workers: int = Field(8, ge=1, le=256)
    per_host: int = Field(4, ge=1, le=64)
    timeout_s: float = Field(10, gt=0, le=300)
    max_bytes: int = Field(10_000_000, ge=1_000)
    max_pixels: int = Field(40_000_000, ge=1_000)
    retries: int = Field(2, ge=0, le=10)


class ImagesParams(_Section):
    min_side: int = Field(32, ge=8)
    face_size: int = Field(48, ge=16, le=512)
    face_margin: float = Field(0.15, ge=0, le=1)
    min_face_side: int = Field(24, ge=8)


class SplitParams(_Section):
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    salt: str = "emotionops-split-v1"

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitParams:
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("split.test_fraction + split.val_fraction must be < 0.9")
        return self


class TrainParams(_Section):
    model: str = "small_cnn"
    image_size: int = Field(48, ge=16, le=512)
    epochs: int = Field(8, ge=1, le=1_000)
    batch_size: int = Field(32, ge=2, le=4_096)
    learning_rate: float = Field(0.002, gt=0, lt=1)
    seed: int = 42

    @field_validator("batch_size")
    @classmethod
    def _even(cls, value: int) -> int:
        # TF 2.21 + oneDNN crashes on odd batch sizes in strided 1x1 convolutions.
        if value % 2:
            raise ValueError("train.batch_size must be even (see PLATFORM-NOTES: odd-batch crash)")
        return value


class EdgeParams(_Section):
    camera_id: str = "demo-cam"
    window_seconds: float = Field(5, gt=0, le=86_400)
    frame_stride: int = Field(2, ge=1, le=1_000)
    demo_video_seconds: float = Field(12, gt=0, le=3_600)
    fps: float = Field(10, gt=0, le=120)
    poll_s: float = Field(30, gt=0, le=86_400)
    exclusion_zones: list[tuple[int, int, int, int]] = Field(
        default_factory=list, description="(x, y, w, h) frame regions where no face is classified"
    )


class Params(_Section):
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS))
    scrape: ScrapeParams = ScrapeParams()
    standin: StandinParams = StandinParams()
    download: DownloadParams = DownloadParams()
    images: ImagesParams = ImagesParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    edge: EdgeParams = EdgeParams()

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, labels: list[str]) -> list[str]:
        if len(labels) < 2:
            raise ValueError("labels needs at least two classes")
        if len(set(labels)) != len(labels):
            raise ValueError("labels has duplicates")
        bad = [lab for lab in labels if not lab.isidentifier() or lab != lab.lower()]
        if bad:
            raise ValueError(f"labels must be lower-case identifiers, got {bad}")
        return labels

    @model_validator(mode="after")
    def _queries_for_known_labels(self) -> Params:
        unknown = sorted(set(self.scrape.queries) - set(self.labels))
        if unknown:
            raise ValueError(f"scrape.queries has labels not in 'labels': {unknown}")
        return self

    def queries_for(self, label: str) -> list[str]:
        return self.scrape.queries.get(label) or [f"{label} face"]


def load_params(path: Path | str) -> Params:
    """Read and validate params.yaml; errors name the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ParamsError(f"{path}: {problems}") from exc
