"""The expectation suites, as code: one function per table, thresholds from params.yaml.

WHY these checks: each one guards a way bad data has reached (or could reach) training or
the warehouse. Image-quality expectations apply to ACCEPTED rows only (rejected rows fail
thresholds by design: that is why they were rejected, and their reason says so), and they
reuse the `images:` thresholds of the cleanup itself, so an images.csv made with other
settings, edited by hand or left stale after a params change is caught before loading.
"""

from __future__ import annotations

from collections.abc import Sequence

import great_expectations as gx
from great_expectations.expectations.row_conditions import Column

from emotionops.dataset.split import SPLITS
from emotionops.params import Params
from emotionops.validation.frames import (
    IMAGE_COLUMNS,
    IMAGE_OPTIONAL,
    SPLIT_COLUMNS,
    URL_COLUMNS,
)

E = gx.expectations
SHA256 = r"^[0-9a-f]{64}$"
HASH64 = r"^[0-9a-f]{16}$"
INT_TYPES = ["int", "int64", "int32"]
NUMBER_TYPES = ["float", "float64", "float32", *INT_TYPES]
ACCEPTED = Column("status") == "accepted"
REJECTED = Column("status") == "rejected"

Expectations = list[gx.expectations.Expectation]


def _schema(columns: Sequence[str]) -> Expectations:
    return [
        E.ExpectTableColumnsToMatchSet(column_set=list(columns), exact_match=False),
        E.ExpectTableRowCountToBeBetween(min_value=1),
    ]


def url_manifest(params: Params) -> Expectations:
    """Cleaned URL rows: schema, http(s) URLs, labels in the label set, no duplicates."""
    return [
        *_schema(URL_COLUMNS),
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("label", "image_url", "url_sha256")),
        E.ExpectColumnValuesToMatchRegex(column="image_url", regex=r"^https?://[^/\s?#]+"),
        E.ExpectColumnValuesToMatchRegex(column="page_url", regex=r"^https?://"),
        E.ExpectColumnValuesToBeInSet(column="label", value_set=list(params.labels)),
        E.ExpectColumnValuesToBeUnique(column="image_url"),
        E.ExpectColumnValuesToBeUnique(column="url_sha256"),
        E.ExpectColumnValuesToMatchRegex(column="url_sha256", regex=SHA256),
        E.ExpectColumnValuesToBeInTypeList(column="rank", type_list=INT_TYPES),
        E.ExpectColumnValuesToBeBetween(column="rank", min_value=1),
        E.ExpectColumnValuesToMatchRegex(column="run_date", regex=r"^\d{4}-\d{2}-\d{2}$"),
    ]


def url_manifest_per_label(params: Params) -> Expectations:
    """Rows per configured label (zero when a label has none) within the bounds."""
    v = params.validation
    most = v.max_rows_per_label if v.max_rows_per_label is not None else params.scrape.per_label
    return [
        E.ExpectColumnValuesToBeBetween(
            column="rows", min_value=v.min_rows_per_label, max_value=max(most, v.min_rows_per_label)
        ),
    ]


def image_metadata(params: Params) -> Expectations:
    """images.csv: shape of every row; quality thresholds and exactly one face on accepted rows."""
    from emotionops.acquire.download import FORMATS

    p = params.images
    return [
        *_schema([c for c in IMAGE_COLUMNS if c not in IMAGE_OPTIONAL]),
        E.ExpectColumnValuesToNotBeNull(column="sha256"),
        E.ExpectColumnValuesToMatchRegex(column="sha256", regex=SHA256),
        E.ExpectColumnValuesToBeUnique(column="sha256"),
        E.ExpectColumnValuesToMatchRegex(column="url_sha256", regex=SHA256),
        E.ExpectColumnValuesToBeInSet(column="status", value_set=["accepted", "rejected"]),
        E.ExpectColumnDistinctValuesToContainSet(column="status", value_set=["accepted"]),
        *(E.ExpectColumnValuesToBeInTypeList(column=c, type_list=INT_TYPES) for c in ("width", "height", "n_faces")),
        *(
            E.ExpectColumnValuesToBeInTypeList(column=c, type_list=NUMBER_TYPES)
            for c in ("brightness", "contrast", "entropy", "drawing_score", "sharpness")
        ),
        E.ExpectColumnValuesToNotBeNull(column="reason", row_condition=REJECTED),
        # Accepted rows: what cleanup promised, against today's thresholds.
        E.ExpectColumnValuesToBeInSet(column="label", value_set=list(params.labels), row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeInSet(column="format", value_set=sorted(FORMATS), row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="width", min_value=p.min_side, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="height", min_value=p.min_side, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="aspect_ratio", max_value=p.max_aspect, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="pixels", max_value=params.download.max_pixels, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="n_faces", min_value=1, max_value=1, row_condition=ACCEPTED),
        E.ExpectColumnValuesToMatchRegex(column="pixel_sha256", regex=SHA256, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeUnique(column="pixel_sha256", row_condition=ACCEPTED),
        E.ExpectColumnValuesToMatchRegex(column="phash", regex=HASH64, row_condition=ACCEPTED),
        E.ExpectColumnValuesToMatchRegex(column="dhash", regex=HASH64, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="brightness", min_value=p.min_brightness, max_value=p.max_brightness, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="contrast", min_value=p.min_contrast, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="entropy", min_value=p.min_entropy, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="drawing_score", max_value=p.max_drawing_score, row_condition=ACCEPTED),
        E.ExpectColumnValuesToBeBetween(column="sharpness", min_value=p.min_sharpness, row_condition=ACCEPTED),
        E.ExpectColumnValuesToNotBeNull(column="face_path", row_condition=ACCEPTED),
        E.ExpectColumnPairValuesToBeEqual(column_A="face_path", column_B="expected_face_path", row_condition=ACCEPTED),
    ]  # fmt: skip


def dataset_split(params: Params) -> Expectations:
    """split.csv: one row per accepted image, known labels and splits, no leak between splits."""
    return [
        *_schema(SPLIT_COLUMNS),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnValuesToBeInSet(column="label", value_set=list(params.labels)),
        E.ExpectColumnValuesToMatchRegex(column="sha256", regex=SHA256),
        E.ExpectColumnValuesToBeUnique(column="path"),
        E.ExpectColumnPairValuesToBeEqual(column_A="path", column_B="expected_path"),
        E.ExpectColumnValuesToBeInSet(column="image_accepted", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="sha256_splits", max_value=1),
        E.ExpectColumnValuesToBeBetween(column="near_dup_splits", max_value=1),
    ]


def dataset_split_per_label(params: Params) -> Expectations:
    """Faces per label and per split, and the class balance."""
    v = params.validation
    splits = [s for s in SPLITS if s != "val" or params.split.val_fraction > 0]
    out: Expectations = [
        E.ExpectColumnValuesToBeBetween(column="images", min_value=v.min_images_per_label),
        *(E.ExpectColumnSumToBeBetween(column=s, min_value=v.min_images_per_split) for s in splits),
        E.ExpectColumnMaxToBeBetween(column="ratio_to_smallest", max_value=v.max_class_imbalance),
    ]
    if v.min_images_per_label_split > 0:
        out += [
            E.ExpectColumnValuesToBeBetween(column=s, min_value=v.min_images_per_label_split)
            for s in splits
        ]
    return out
