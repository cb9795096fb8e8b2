"""Great Expectations suites, as code, for the URL manifest, the image metadata and the split.

Each `validate_*` function builds the table the suite sees (frames.py), runs its suites
through a file-backed GX context in `<data>/gx/` (runner.py), updates the Data Docs site
there, and returns a ValidationReport. `require()` turns failed reports into one
ValidationFailed listing every failing expectation, one line each.

Great Expectations takes seconds to import, so it is imported here only when a validation
runs: importing this package (e.g. to catch ValidationFailed) stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotionops.validation.report import (
    FailedExpectation,
    SuiteStats,
    ValidationFailed,
    ValidationReport,
    require,
)

if TYPE_CHECKING:
    import pandas as pd

    from emotionops.params import Params
    from emotionops.settings import Settings
    from emotionops.validation.docs_offline import AssetSources

    Rows = pd.DataFrame | Iterable[Mapping[str, Any]]

__all__ = [
    "FailedExpectation",
    "SuiteStats",
    "ValidationFailed",
    "ValidationReport",
    "data_docs_index",
    "data_docs_site",
    "docs_assets",
    "gx_project_root",
    "require",
    "validate_images",
    "validate_split",
    "validate_urls",
]


def gx_project_root(settings: Settings) -> Path:
    """The folder holding the GX project (`gx/`): the data folder, so `<data>/gx/`."""
    return settings.data_path


def data_docs_index(settings: Settings) -> Path:
    """Where the Data Docs site's index.html is (it exists once a validation has run)."""
    return (
        gx_project_root(settings) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    )


def data_docs_site(settings: Settings) -> Path:
    """The Data Docs site's root folder; a validation result's `docs_path` (warehouse table
    validation_result, site-relative) is `data_docs_site(settings) / docs_path`."""
    return data_docs_index(settings).parent


def docs_assets(settings: Settings) -> AssetSources:
    """Where the local copies of the Data Docs' CDN assets are read from (docs_offline);
    relative folders are taken from the project directory, like data_dir."""
    from emotionops.validation.docs_offline import asset_sources

    bundled = settings.data_docs_assets_dir
    return asset_sources(
        settings.project_dir / settings.system_javascript_dir,
        settings.project_dir / bundled if bundled else None,
    )


def _run_name(name: str, run_date: str | None) -> str:
    return f"{name}-{run_date}" if run_date else name


def validate_urls(
    rows: Rows, params: Params, settings: Settings, run_date: str | None = None
) -> ValidationReport:
    """Cleaned URL manifest rows (urls.clean_manifest's kept rows) against `url_manifest`
    and `url_manifest_per_label`."""
    from emotionops.validation import frames, suites
    from emotionops.validation.runner import Part, run_parts

    table, per_label = frames.url_frames(rows, params.labels)
    parts = [
        Part("url_manifest", table, suites.url_manifest(params), ("image_url",),
             "Cleaned URL manifest of one run: schema, http(s) URLs, labels, no duplicates."),
        Part("url_manifest_per_label", per_label, suites.url_manifest_per_label(params), ("label",),
             "Rows per configured label (0 when absent) within validation.min/max_rows_per_label."),
    ]  # fmt: skip
    return run_parts(
        gx_project_root(settings),
        "urls",
        parts,
        _run_name("urls", run_date),
        params.validation.examples,
        docs_assets(settings),
    )


def validate_images(
    rows: Rows, params: Params, settings: Settings, run_date: str | None = None
) -> ValidationReport:
    """images.csv rows against `image_metadata` (quality bounds on accepted rows)."""
    from emotionops.validation import frames, suites
    from emotionops.validation.runner import Part, run_parts

    parts = [
        Part("image_metadata", frames.image_frame(rows), suites.image_metadata(params), ("sha256",),
             "Every row: hashes, status, types, a reason when rejected. Accepted rows: label, "
             "format, size, exactly one face, quality scores within `images:` thresholds."),
    ]  # fmt: skip
    return run_parts(
        gx_project_root(settings),
        "images",
        parts,
        _run_name("images", run_date),
        params.validation.examples,
        docs_assets(settings),
    )


def validate_split(
    rows: Rows,
    image_rows: Rows,
    params: Params,
    settings: Settings,
    run_date: str | None = None,
) -> ValidationReport:
    """split.csv rows (with images.csv rows for acceptance and near-duplicate hashes) against
    `dataset_split` and `dataset_split_per_label`."""
    from emotionops.validation import frames, suites
    from emotionops.validation.runner import Part, run_parts

    near_dup = (params.images.near_dup_distance, params.images.near_dup_dhash_distance)
    table, per_label = frames.split_frames(rows, image_rows, params.labels, near_dup)
    parts = [
        Part("dataset_split", table, suites.dataset_split(params), ("path", "near_dup_group"),
             "One row per accepted image; no sha256 and no near-duplicate group (pHash + dHash "
             "within `images:` distances) spans two splits."),
        Part("dataset_split_per_label", per_label, suites.dataset_split_per_label(params), ("label",),
             "Faces per label and per split, and largest/smallest label (class balance)."),
    ]  # fmt: skip
    return run_parts(
        gx_project_root(settings),
        "split",
        parts,
        _run_name("split", run_date),
        params.validation.examples,
        docs_assets(settings),
    )
