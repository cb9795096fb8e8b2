"""Typed loader for `params.yaml`: one model per stage, validated with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
    per_query: int | None = Field(30, ge=1, le=10_000, description="None: only per_label caps")
    max_per_run: int | None = Field(1000, ge=1, le=1_000_000, description="None: no run cap")
    delay_s: float | None = Field(None, ge=0, le=60, description="None: the engine's own delay")
    timeout_s: float = Field(20, gt=0, le=300)
    queries: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "happy": ["happy face", "smiling person portrait"],
            "sad": ["sad face", "unhappy person portrait"],
            "surprise": ["surprised face", "astonished person portrait"],
            "neutral": ["neutral face", "expressionless person portrait"],
        },
        description="phrasings per label; a label without any is searched as '<label> face'",
    )
    engines: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("engines")
    @classmethod
    def _engines_valid(cls, engines: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from emotionops.acquire.scrape.engines import EngineError, load_engines

        try:
            load_engines(engines)
        except EngineError as exc:
            raise ValueError(str(exc)) from None
        return engines

    @model_validator(mode="after")
    def _engine_known(self) -> ScrapeParams:
        from emotionops.acquire.scrape.engines import EngineError, get_engine

        try:
            get_engine(self.engine, self.engines)
        except EngineError as exc:
            raise ValueError(f"scrape.engine: {exc}") from None
        return self


class UrlsParams(_Section):
    """The URL denylist. None: the starter lists of emotionops.acquire.urls (written once,
    there); a list replaces them ([] turns that kind of rule off)."""

    denylist_domains: list[str] | None = None
    denylist_path_patterns: list[str] | None = None

    @field_validator("denylist_domains", "denylist_path_patterns")
    @classmethod
    def _rules_compile(cls, rules: list[str] | None, info) -> list[str] | None:
        """A bad entry fails when params.yaml is loaded, naming the key, not mid-run."""
        if rules is None:
            return None
        from emotionops.acquire.urls import UrlRuleError, compile_domain_rules, compile_path_rules

        compile_rules = (
            compile_domain_rules if info.field_name == "denylist_domains" else compile_path_rules
        )
        try:
            compile_rules(rules)
        except UrlRuleError as exc:
            raise ValueError(str(exc)) from None
        return rules


class StandinParams(_Section):
    images_per_label: int = Field(40, ge=1, le=5_000)
    page_size: int = Field(12, ge=1, le=200)
    seed: int = 7


class DownloadParams(_Section):
    """Caps and concurrency of the safe downloader (see emotionops.acquire.download)."""

    workers: int = Field(16, ge=1, le=256, description="concurrent downloads overall")
    per_host: int = Field(12, ge=1, le=64, description="concurrent downloads per host name")
    connect_timeout_s: float = Field(5, gt=0, le=120, description="TCP connect timeout")
    timeout_s: float = Field(10, gt=0, le=300, description="silence allowed between two reads")
    max_seconds: float = Field(
        60, gt=0, le=3_600, description="wall-time budget for one URL: hops, retries, trickling"
    )
    max_bytes: int = Field(10_000_000, ge=1_000, description="declared or streamed body cap")
    max_pixels: int = Field(40_000_000, ge=1_000, description="width*height cap, from the header")
    retries: int = Field(2, ge=0, le=10, description="extra attempts, transient errors only")
    retry_base_s: float = Field(0.5, ge=0, le=60, description="first backoff; doubles per try")
    retry_max_s: float = Field(30, ge=0, le=600, description="cap on a backoff or Retry-After")


class ImagesParams(_Section):
    min_side: int = Field(32, ge=8)
    max_aspect: float = Field(3.0, ge=1)
    face_size: int = Field(48, ge=16, le=512)
    face_margin: float = Field(0.15, ge=0, le=1)
    min_face_side: int = Field(24, ge=8)
    detector: str = "haar_default"
    detector_model: str = ""
    detect_max_side: int = Field(640, ge=64)
    align: bool = False
    near_dup_distance: int = Field(6, ge=0, le=32)
    near_dup_dhash_distance: int = Field(6, ge=0, le=64)
    min_brightness: float = Field(30, ge=0, le=255)
    max_brightness: float = Field(235, ge=0, le=255)
    min_contrast: float = Field(12, ge=0)
    min_entropy: float = Field(3.0, ge=0, le=8)
    max_drawing_score: float = Field(0.5, ge=-1, le=1)
    min_sharpness: float = Field(100, ge=0)
    sharpness_size: int = Field(64, ge=16, le=512)

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        known = ("haar_default", "haar_alt", "haar_alt2", "yunet")
        if value not in known:
            raise ValueError(f"images.detector must be one of {list(known)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _brightness_range(self) -> ImagesParams:
        if self.min_brightness >= self.max_brightness:
            raise ValueError("images.min_brightness must be < images.max_brightness")
        if self.detector == "yunet" and not self.detector_model:
            raise ValueError("images.detector yunet needs images.detector_model (an .onnx path)")
        return self


class SplitParams(_Section):
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    salt: str = "emotionops-split-v1"

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitParams:
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("split.test_fraction + split.val_fraction must be < 0.9")
        return self


class ValidationParams(_Section):
    """Bounds of the Great Expectations suites (emotionops.validation). Image quality bounds
    are not repeated here: the image suite checks accepted rows against `images:` itself."""

    min_rows_per_label: int = Field(5, ge=0, description="cleaned URLs per label in a run")
    max_rows_per_label: int | None = Field(
        None, ge=1, description="None: scrape.per_label (more means the scraper's cap broke)"
    )
    min_images_per_label: int = Field(4, ge=0, description="accepted faces per label, all splits")
    min_images_per_split: int = Field(1, ge=0, description="faces per split, all labels")
    min_images_per_label_split: int = Field(0, ge=0, description="faces per label in each split")
    max_class_imbalance: float = Field(
        3.0, ge=1, description="largest label / smallest label (accepted faces in the split)"
    )
    examples: int = Field(3, ge=1, le=20, description="unexpected values quoted per failure")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ValidationParams:
        if (
            self.max_rows_per_label is not None
            and self.max_rows_per_label < self.min_rows_per_label
        ):
            raise ValueError("validation.max_rows_per_label must be >= min_rows_per_label")
        return self


class DatasetSource(_Section):
    """One labelled dataset that `emotionops import` (no arguments) brings in."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="short id, e.g. fer2013")
    path: str = Field(
        min_length=1,
        description="class folders, a split layout (train/, test/ of class folders) or a FER2013 "
        "CSV; relative to the project, $VARS expanded (e.g. ${EMOTIONOPS_REAL_DATA}/fer2013)",
    )
    split: str = Field(
        "auto",
        description="auto (the layout's own train/test, else by hash) | hash | train | val | "
        "test | trainval (train/val by hash, never test)",
    )

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str) -> str:
        if value not in SOURCE_SPLITS:
            raise ValueError(f"must be one of {list(SOURCE_SPLITS)}, got {value!r}")
        return value


SOURCE_SPLITS = ("auto", "hash", "train", "val", "test", "trainval")


class DatasetParams(_Section):
    """Imported datasets and how their classes map onto `labels` (emotionops.dataset.importers)."""

    label_map: dict[str, str] = Field(
        default_factory=dict,
        description="source class -> label, applied first (e.g. {surprised: surprise})",
    )
    ignore: list[str] = Field(
        default_factory=lambda: ["angry", "disgust", "fear", "contempt"],
        description="source classes left out when they are not in `labels`; any other class "
        "outside the label set is an error",
    )
    min_std: float = Field(
        2.0, ge=0, le=128, description="imported faces flatter than this (std of pixels) are blank"
    )
    max_file_bytes: int = Field(
        20_000_000, ge=1_000, description="larger files are not read (a face crop is kilobytes)"
    )
    max_pixels: int = Field(
        40_000_000, ge=1_000, description="width*height cap, read from the header before decoding"
    )
    sources: list[DatasetSource] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> DatasetParams:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset.sources names must be unique, got {names}")
        return self


class AugmentParams(_Section):
    """Training-time augmentation (0 turns a transform off). A mirrored face keeps its emotion;
    the rest stay small so a face stays centred and recognisable."""

    flip: bool = True
    rotation: float = Field(
        0.028, ge=0, le=0.5, description="fraction of a full turn (0.028=10 deg)"
    )
    shift: float = Field(0.1, ge=0, le=0.5, description="fraction of the image side")
    zoom: float = Field(0.1, ge=0, le=0.5, description="+- fraction")
    brightness: float = Field(0.2, ge=0, le=1, description="+- fraction of the 0..255 range")
    contrast: float = Field(0.3, ge=0, le=1, description="+- factor")
    mixup: float = Field(
        0.0, ge=0, le=10, description="mixup Beta(alpha, alpha) parameter; 0 = off"
    )


MODEL_NAMES = ("small_cnn", "vgg", "mobilenet_v2", "resnet50", "pretrained")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")


#: train.targets: what the train split learns from (emotionops.training.data.apply_targets).
TARGETS = ("auto", "hard", "majority", "votes")


class TrainParams(_Section):
    model: str = "vgg"
    image_size: int = Field(48, ge=16, le=512, description="side of the stored face crops fed in")
    width: float = Field(1.0, gt=0, le=8, description="vgg/small_cnn channel multiplier")
    dropout: float = Field(0.4, ge=0, lt=1)
    backbone_size: int = Field(
        96, ge=32, le=512, description="side the pretrained backbones see (resized in the model)"
    )
    weights: str = Field(
        "imagenet", description="backbones: imagenet | none | <local weights file>"
    )
    weights_fallback: bool = Field(
        False, description="imagenet weights unavailable (offline): warn and start from random"
    )
    init_from: str = Field(
        "", description="model pretrained: a FER model file (.keras/.h5) to fine-tune from"
    )
    init_labels: list[str] = Field(
        default_factory=lambda: list(FER2013_LABELS),
        description="output classes of the init_from model and of the partners",
    )
    init_input: str = Field(
        "symmetric",
        description="pixels the init_from/partner models expect: unit (x/255) | symmetric (-1..1)",
    )
    partners: list[str] | str = Field(
        "auto",
        description="frozen FER models averaged with the trained network in the deployed model: "
        "'fer', 'human' (installed by make setup) or model file paths; auto: [fer, human] with "
        "hard targets, none with targets from votes (both learned FER2013's original labels: "
        "with vote targets they cost 4.6 pt on the FER+ ruler, docs/fer-accuracy-research.md)",
    )
    flip_average: bool = Field(
        True, description="the deployed model averages each face with its mirror (test-time flip)"
    )
    distill_from: list[str] = Field(
        default_factory=list,
        description="teacher FER models (named like partners): each train target mixes the "
        "true label with their softened predictions (offline distillation)",
    )
    distill_weight: float = Field(
        0.5, ge=0, le=1, description="share of the teachers' soft labels in each train target"
    )
    distill_temperature: float = Field(
        2.0, ge=1, le=20, description="softens the teachers' probabilities: p**(1/T), renormalised"
    )
    epochs: int = Field(
        60, ge=1, le=1_000, description="most epochs (max_minutes may end the run sooner)"
    )
    batch_size: int = Field(128, ge=2, le=4_096)
    learning_rate: float = Field(0.05, gt=0, lt=1)
    optimizer: str = Field("sgd", description="adam | adamw | sgd (Nesterov, momentum 0.9)")
    lr_schedule: str = Field("cosine", description="constant | cosine | plateau")
    warmup_epochs: int = Field(2, ge=0, le=100)
    weight_decay: float = Field(
        0.0005, ge=0, lt=1, description="decoupled weight decay (adamw, sgd); 0 with adam"
    )
    label_smoothing: float = Field(0.1, ge=0, lt=0.5)
    monitor: str = Field(
        "val_accuracy", description="val_loss | val_accuracy: early stopping and best-epoch restore"
    )
    patience: int = Field(15, ge=1, le=1_000, description="early stopping patience (epochs)")
    balance: str = Field("none", description="none | class_weight | sample")
    targets: str = Field(
        "auto",
        description="auto (votes when the train split carries annotator votes, else hard) | "
        "hard (the folder label) | majority (FER+ majority of the image's votes; "
        "no majority in the labels: dropped) | votes (the vote distribution over the labels, "
        "soft targets): the train split's targets; with majority or votes, val is scored on "
        "the FER+ majority too; test keeps its folder labels (evaluation reads both rulers)",
    )
    augment: AugmentParams = AugmentParams()
    precision: str = Field(
        "auto",
        description="auto (mixed_bfloat16 where the CPU has native bfloat16, AVX512-BF16 or "
        "AMX; float32 elsewhere, where bfloat16 is emulated and ~7x slower) | float32 | "
        "mixed_bfloat16",
    )
    max_minutes: float | None = Field(
        60,
        gt=0,
        description="training budget: the cosine decay follows the clock to its floor at the "
        "budget's end and the run stops at the last epoch that fits (`epochs` stays a cap)",
    )
    seed: int = 42

    @field_validator("batch_size")
    @classmethod
    def _even(cls, value: int) -> int:
        # TF 2.21 + oneDNN crashes on odd batch sizes in strided 1x1 convolutions.
        if value % 2:
            raise ValueError("train.batch_size must be even (see PLATFORM-NOTES: odd-batch crash)")
        return value

    @model_validator(mode="after")
    def _choices(self) -> TrainParams:
        choices = {
            "model": MODEL_NAMES,
            "lr_schedule": ("constant", "cosine", "plateau"),
            "optimizer": ("adam", "adamw", "sgd"),
            "monitor": ("val_loss", "val_accuracy"),
            "balance": ("none", "class_weight", "sample"),
            "targets": TARGETS,
            "precision": PRECISIONS,
            "init_input": ("unit", "symmetric"),
        }
        if isinstance(self.partners, str) and self.partners != "auto":
            raise ValueError(f"train.partners must be a list or auto, got {self.partners!r}")
        for key, known in choices.items():
            if getattr(self, key) not in known:
                raise ValueError(
                    f"train.{key} must be one of {list(known)}, got {getattr(self, key)!r}"
                )
        if self.warmup_epochs >= self.epochs:
            raise ValueError("train.warmup_epochs must be < train.epochs")
        if self.optimizer == "adam" and self.weight_decay:
            raise ValueError("train.weight_decay needs train.optimizer adamw or sgd (not adam)")
        if (self.model == "pretrained") != bool(self.init_from):
            raise ValueError("train.model pretrained and train.init_from go together (a file)")
        return self


class EvaluateParams(_Section):
    predict_batch: int = Field(256, ge=1, le=8_192, description="images per forward pass")
    flip_check: bool = Field(True, description="behavioural test: a mirrored face keeps its label")


class RegistryParams(_Section):
    """The promotion gate (emotionops.gate): what a challenger must show, on the same test
    faces as the champion, to become champion."""

    min_improvement: float = Field(
        0.005, ge=-1, le=1, description="macro-F1 gain over the champion needed to promote"
    )
    max_recall_drop: float = Field(
        0.05, ge=0, le=1, description="largest fall of any label's recall vs the champion"
    )
    min_tflite_agreement: float = Field(
        0.99, ge=0, le=1, description="share of test faces where TFLite and Keras agree (top-1)"
    )
    max_latency_ms: float = Field(
        50, gt=0, le=10_000, description="median TFLite time per face on the gate's machine"
    )
    floor_macro_f1: float = Field(
        0.3, ge=0, le=1, description="macro-F1 the first champion needs (no champion to beat)"
    )
    lease_s: float = Field(
        600, gt=0, le=86_400, description="a promotion's lease; a crashed holder frees it then"
    )
    ruler: Literal["auto", "original", "ferplus"] = Field(
        "auto",
        description="labels the gate's metrics are measured on: the original (folder) labels, "
        "the FER+ majority of annotator votes, or auto (ferplus when the test split has votes)",
    )


class TrackingParams(_Section):
    lost_s: float = Field(1.0, ge=0, le=60, description="a face unseen this long loses its track")
    min_hits: int = Field(2, ge=1, le=30, description="detections before a face gets a track")
    min_iou: float = Field(0.2, gt=0, lt=1, description="box overlap to match a track")
    activation_score: float = Field(0.5, ge=0, le=1, description="detector score to start one")


class DetectionParams(_Section):
    """The edge's face detector (`emotionops.edge.detect.make_edge_detector`)."""

    detector: str = "blazeface_full"
    min_score: float = Field(0.6, ge=0, le=1, description="BlazeFace: lowest face score kept")
    max_side: int = Field(
        960,
        ge=0,
        le=8192,
        description="pixels one detector pass sees: Haar downscales a larger frame to it, "
        "BlazeFace adds overlapping tiles of this side; 0: the whole frame as it is",
    )
    min_face_side: int = Field(24, ge=1, description="smaller faces (full-frame px) are dropped")
    num_threads: int = Field(1, ge=1, le=64, description="BlazeFace interpreter threads")
    nms_iou: float = Field(0.3, gt=0, lt=1, description="BlazeFace: boxes overlapping more merge")
    model_dir: str = Field(
        "", description="BlazeFace .tflite folder; empty: <venv>/share/blazeface"
    )

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        known = ("blazeface_full", "blazeface_short", "haar")
        if value not in known:
            raise ValueError(f"edge.detection.detector must be one of {list(known)}, got {value!r}")
        return value


class OutboxParams(_Section):
    """The edge's on-disk outbox and its sender (emotionops.edge.outbox)."""

    windows_per_send: int = Field(100, ge=1, le=10_000, description="windows per send")
    backoff_s: float = Field(1, gt=0, le=3_600, description="first wait after a failed send")
    backoff_max_s: float = Field(
        60, gt=0, le=86_400, description="cap of the doubling wait; also the wait after a refusal"
    )
    jitter: float = Field(0.5, ge=0, le=1, description="each wait is cut by up to this share")
    idle_poll_s: float = Field(5, gt=0, le=3_600, description="look for rows when idle")
    send_timeout_s: float = Field(10, gt=0, le=600, description="one HTTP send")
    stop_timeout_s: float = Field(10, ge=0, le=3_600, description="flush budget at a stop")

    @model_validator(mode="after")
    def _cap_above_base(self) -> OutboxParams:
        if self.backoff_max_s < self.backoff_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s:g}) is below backoff_s ({self.backoff_s:g})"
            )
        return self


class EdgeParams(_Section):
    camera_id: str = "demo-cam"
    window_seconds: float = Field(5, gt=0, le=86_400)
    detect_every: int = Field(3, ge=1, le=100, description="detect on every k-th frame")
    classify_every: int = Field(6, ge=1, le=1_000, description="classify a track every m frames")
    smoothing: float = Field(0.5, gt=0, le=1, description="weight of a track's newest prediction")
    min_confidence: float = Field(0.4, ge=0, le=1, description="below it a face is 'uncertain'")
    tracking: TrackingParams = TrackingParams()
    demo_video_seconds: float = Field(12, gt=0, le=3_600)
    fps: float = Field(10, gt=0, le=120)
    poll_s: float = Field(30, gt=0, le=86_400)
    retry_s: float = Field(2, gt=0, le=3_600, description="first registry retry; doubles")
    reconnect_s: float = Field(0.5, gt=0, le=60, description="first camera reopen delay; doubles")
    reconnect_max_s: float = Field(30, gt=0, le=3_600)
    stall_s: float = Field(10, gt=0, le=3_600, description="no frame this long: reopen")
    max_bad_frames: int = Field(
        250, ge=1, le=1_000_000, description="consecutive unreadable frames that end a file"
    )
    exclusion_zones: list[list[tuple[float, float]]] = Field(
        default_factory=list,
        description="polygons [[x, y], ...] in frame pixels where no face is classified",
    )
    detection: DetectionParams = DetectionParams()
    outbox: OutboxParams = Field(default_factory=OutboxParams)


API_IMAGE_TYPES = ("jpeg", "png", "webp", "bmp", "tiff")


class ApiParams(_Section):
    """Limits and refresh rates of the inference API (emotionops.api). Face crops follow
    `images.face_margin` and detection `images.detect_max_side`: what the model was trained on."""

    max_upload_bytes: int = Field(10_000_000, ge=1_000, le=200_000_000)
    max_pixels: int = Field(25_000_000, ge=1_000, le=500_000_000)
    allowed_types: list[str] = Field(default_factory=lambda: ["jpeg", "png", "webp"])
    max_faces: int = Field(20, ge=1, le=1_000)
    max_ingest_windows: int = Field(5_000, ge=1, le=1_000_000)
    model_poll_s: float = Field(30, gt=0, le=86_400)
    registry_timeout_s: float = Field(5, gt=0, le=300)
    live_refresh_s: float = Field(5, ge=0.2, le=3_600)
    live_windows: int = Field(12, ge=1, le=1_000)

    @field_validator("allowed_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in API_IMAGE_TYPES]
        if unknown or not value:
            raise ValueError(
                f"api.allowed_types must be a non-empty subset of {list(API_IMAGE_TYPES)}"
                + (f", got unknown {unknown}" if unknown else "")
            )
        return value


class DashboardParams(_Section):
    """The reporting dashboard (emotionops.dashboard): the API's /dashboard pages and the
    static report of `emotionops report build`."""

    max_runs: int = Field(200, ge=1, le=1_000)  # newest runs on the Models page (Oracle IN cap)
    samples_per_group: int = Field(12, ge=0, le=200)
    thumbnail_side: int = Field(96, ge=16, le=512)
    default_bucket: Literal["hour", "day"] = "hour"
    # The analytics page (emotionops.dashboard.analytics): no range asked -> the last this
    # many UTC days of data (a week of all cameras stays well under a second at 1M rows);
    # `max_rows` caps its (camera, bucket, label) rows: 20 cameras x 4 labels x 7 days of
    # hours is 13,440; past the cap the page asks for a shorter range or day buckets.
    default_range_days: int = Field(7, ge=1, le=3_660)
    max_rows: int = Field(50_000, ge=1, le=5_000_000)


DEMO_TRAIN = {
    "model": "small_cnn",
    "epochs": 15,
    "batch_size": 16,
    "optimizer": "adam",
    "learning_rate": 0.003,
    "weight_decay": 0.0,
    "warmup_epochs": 0,
    "partners": [],
    "patience": 5,
    "monitor": "val_loss",
    "max_minutes": 2,
}


DEMO_REGISTRY = {"floor_macro_f1": 0.0}


class DemoParams(_Section):
    """`make demo`: a short recipe for the few drawn faces of the embedded defaults, so the
    front door takes minutes on any CPU. Keys override `train` and `registry` for the demo
    only: ~90 drawings teach a network little, so the demo holds its first model to no floor
    (the rest of the gate applies as always)."""

    train: dict[str, Any] = Field(
        default_factory=lambda: dict(DEMO_TRAIN), description="train keys the demo overrides"
    )
    registry: dict[str, Any] = Field(
        default_factory=lambda: dict(DEMO_REGISTRY), description="registry keys it overrides"
    )


class Params(_Section):
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS))
    scrape: ScrapeParams = ScrapeParams()
    urls: UrlsParams = UrlsParams()
    standin: StandinParams = StandinParams()
    download: DownloadParams = DownloadParams()
    images: ImagesParams = ImagesParams()
    split: SplitParams = SplitParams()
    validation: ValidationParams = ValidationParams()
    dataset: DatasetParams = DatasetParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    registry: RegistryParams = RegistryParams()
    edge: EdgeParams = EdgeParams()
    api: ApiParams = ApiParams()
    dashboard: DashboardParams = DashboardParams()
    demo: DemoParams = DemoParams()

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
        if "queries" not in self.scrape.model_fields_set:  # the defaults: only labels in use
            self.scrape.queries = {
                k: v for k, v in self.scrape.queries.items() if k in set(self.labels)
            }
            return self
        unknown = sorted(set(self.scrape.queries) - set(self.labels))
        if unknown:
            raise ValueError(f"scrape.queries has labels not in 'labels': {unknown}")
        return self

    @model_validator(mode="after")
    def _label_mapping_targets(self) -> Params:
        known = set(self.labels) | set(self.dataset.ignore)
        bad = {k: v for k, v in self.dataset.label_map.items() if v not in known}
        if bad:
            raise ValueError(
                f"dataset.label_map maps to classes that are neither in 'labels' nor in "
                f"dataset.ignore: {bad}"
            )
        if self.train.model == "pretrained":
            missing = [lab for lab in self.labels if lab not in self.train.init_labels]
            if missing:
                raise ValueError(
                    f"labels {missing} are not outputs of the pretrained model "
                    f"(train.init_labels {self.train.init_labels})"
                )
        return self

    @model_validator(mode="after")
    def _demo_recipe_valid(self) -> Params:
        try:
            self.demo_params()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"demo: {where}: {first['msg']}") from None
        return self

    def demo_params(self) -> Params:
        """These params with `demo.train` and `demo.registry` applied: what `emotionops demo`
        runs."""
        train = TrainParams.model_validate({**self.train.model_dump(), **self.demo.train})
        registry = RegistryParams.model_validate(
            {**self.registry.model_dump(), **self.demo.registry}
        )
        return self.model_copy(update={"train": train, "registry": registry})

    def queries_for(self, label: str) -> list[str]:
        return self.scrape.queries.get(label) or [f"{label} face"]


def load_params(path: Path | str) -> Params:
    """Read and validate params.yaml; errors name the file and the offending key."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: params file not found")
    if not path.is_file():  # a folder, or a FIFO that would block the read forever
        raise ParamsError(f"{path}: not a regular file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc})") from None
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
