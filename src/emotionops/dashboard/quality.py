"""The Data quality page's data: what each ingest run scraped, refused, downloaded and kept,
its validation results, and sample thumbnails of kept and refused training images.

Counts come from url_outcome (one row per manifest URL: refused by URL cleanup, or tried by
the downloader) and image (one row per downloaded or imported image: accepted, or rejected
by image cleanup with a reason). Thumbnails are made from the training images only: the
face crops of accepted images and the downloaded files of rejected ones. Camera frames are
never stored anywhere, so they cannot appear here.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, and_, func, select

from emotionops.dashboard.common import iso, read_all
from emotionops.errors import EmotionOpsError
from emotionops.paths import DataPaths
from emotionops.warehouse.report import reason_kind
from emotionops.warehouse.schema import image, url_outcome, validation_result

#: Samples are read from the newest rejected rows only: enough to fill every reason's row.
REJECTED_SAMPLE_SCAN = 2000
THUMBNAIL_QUALITY = 80


class ThumbnailError(EmotionOpsError):
    """No thumbnail for this image (unknown, file gone, or not a readable image)."""


def quality_queries(samples_per_group: int) -> dict[str, Select[Any]]:
    n = func.count().label("n")
    accepted = (
        select(
            image.c.sha256,
            image.c.label,
            image.c.run_date,
            func.row_number()
            .over(
                partition_by=image.c.label,
                order_by=(image.c.run_date.desc().nulls_last(), image.c.sha256),
            )
            .label("rank_in_label"),
        )
        .where(image.c.status == "accepted", image.c.face_path.is_not(None))
        .subquery()
    )
    return {
        "urls": select(
            url_outcome.c.run_date,
            url_outcome.c.stage,
            url_outcome.c.status,
            url_outcome.c.rule,
            url_outcome.c.reason,
            n,
            func.sum(url_outcome.c.duplicates).label("duplicates"),
        ).group_by(
            url_outcome.c.run_date,
            url_outcome.c.stage,
            url_outcome.c.status,
            url_outcome.c.rule,
            url_outcome.c.reason,
        ),
        "images": select(image.c.run_date, image.c.status, image.c.reason, n).group_by(
            image.c.run_date, image.c.status, image.c.reason
        ),
        "validations": select(validation_result).order_by(
            validation_result.c.run_date.desc(), validation_result.c.suite
        ),
        "accepted_samples": select(accepted.c.sha256, accepted.c.label, accepted.c.run_date)
        .where(accepted.c.rank_in_label <= samples_per_group)
        .order_by(accepted.c.label, accepted.c.rank_in_label),
        "rejected_samples": select(image.c.sha256, image.c.label, image.c.reason, image.c.run_date)
        .select_from(
            image.join(
                url_outcome,
                and_(
                    url_outcome.c.url_sha256 == image.c.url_sha256,
                    url_outcome.c.sha256 == image.c.sha256,
                ),
            )
        )
        .where(image.c.status == "rejected", url_outcome.c.path.is_not(None))
        .distinct()
        .order_by(image.c.run_date.desc().nulls_last(), image.c.sha256)
        .limit(REJECTED_SAMPLE_SCAN),
    }


def _run(runs: dict[str, dict[str, Any]], run_date: str | None) -> dict[str, Any]:
    key = run_date or "no date"
    if key not in runs:
        runs[key] = {
            "run_date": key,
            "scraped": 0,
            "url_rejected": 0,
            "downloaded": 0,
            "download_refused": 0,
            "download_failed": 0,
            "kept": 0,
            "image_rejected": 0,
            "reasons": defaultdict(int),
        }
    return runs[key]


def quality_data(engine: Engine, samples_per_group: int = 12) -> dict[str, Any]:
    """Everything the Data quality page draws, as JSON-ready values. A rejection reason is
    grouped by its rule ('too small: 40x40 < 64' counts as 'too small')."""
    rows = read_all(engine, quality_queries(samples_per_group))
    runs: dict[str, dict[str, Any]] = {}
    for r in rows["urls"]:
        run = _run(runs, r["run_date"])
        duplicates = int(r["duplicates"] or 0)  # later copies of these URLs in the manifest
        run["scraped"] += r["n"] + duplicates
        run["url_rejected"] += duplicates
        if duplicates:
            run["reasons"]["url: duplicate"] += duplicates
        if r["stage"] == "url_cleanup":
            run["url_rejected"] += r["n"]
            run["reasons"][f"url: {r['rule'] or reason_kind(r['reason'])}"] += r["n"]
        elif r["status"] == "ok":
            run["downloaded"] += r["n"]
        else:
            run["download_refused" if r["status"] == "rejected" else "download_failed"] += r["n"]
            run["reasons"][f"download: {reason_kind(r['reason'])}"] += r["n"]
    for r in rows["images"]:
        run = _run(runs, r["run_date"])
        if r["status"] == "accepted":
            run["kept"] += r["n"]
        else:
            run["image_rejected"] += r["n"]
            run["reasons"][f"image: {reason_kind(r['reason'])}"] += r["n"]
    ordered = [
        {**run, "reasons": dict(sorted(run["reasons"].items(), key=lambda kv: -kv[1]))}
        for _, run in sorted(runs.items(), reverse=True)
    ]
    samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows["accepted_samples"]:
        samples[f"kept: {r['label']}"].append({"sha256": r["sha256"], "label": r["label"]})
    for r in rows["rejected_samples"]:
        group = samples[f"rejected: {reason_kind(r['reason'])}"]
        if len(group) < samples_per_group:
            group.append({"sha256": r["sha256"], "label": r["label"], "reason": r["reason"]})
    return {
        "runs": ordered,
        "validations": [
            {**v, "validated_at": iso(v["validated_at"]), "success": bool(v["success"])}
            for v in rows["validations"]
        ],
        "samples": dict(samples),
        "samples_per_group": samples_per_group,
    }


def thumbnail_source(engine: Engine, data_root: Path, sha256: str) -> Path:
    """The stored training image behind `sha256`: its face crop if accepted, else its
    downloaded file; always inside `data_root` (a path in the warehouse cannot point out)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ThumbnailError(f"not a sha256: {sha256[:80]!r}")
    rows = read_all(
        engine,
        {
            "image": select(image.c.status, image.c.face_path).where(image.c.sha256 == sha256),
            "file": select(url_outcome.c.path)
            .where(url_outcome.c.sha256 == sha256, url_outcome.c.path.is_not(None))
            .limit(1),
        },
    )
    if not rows["image"]:
        raise ThumbnailError(f"no training image {sha256[:12]} in the warehouse")
    paths = DataPaths(data_root.resolve())
    found = rows["image"][0]
    if found["status"] == "accepted" and found["face_path"]:
        candidate = paths.faces / found["face_path"]
    elif rows["file"]:
        candidate = paths.root / rows["file"][0]["path"]
    else:
        raise ThumbnailError(f"image {sha256[:12]} has no stored file")
    resolved = candidate.resolve()
    if not resolved.is_relative_to(paths.root):
        raise ThumbnailError(f"image {sha256[:12]}: its path leaves the data folder")
    if not resolved.is_file():
        raise ThumbnailError(f"image {sha256[:12]}: {resolved.name} is not on disk any more")
    return resolved


def make_thumbnail(path: Path, side: int, max_pixels: int) -> bytes:
    """A JPEG at most `side` px on its long edge. Refuses images above `max_pixels` before
    decoding them (the downloaded file of a rejected image may be the bomb that was refused)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ThumbnailError(
                    f"{path.name}: {im.width}x{im.height} is above the {max_pixels} pixel limit"
                )
            im.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, much faster
            im = im.convert("RGB")
            im.thumbnail((side, side))
            out = io.BytesIO()
            im.save(out, "JPEG", quality=THUMBNAIL_QUALITY)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"{path.name}: not a readable image ({exc})") from exc
    return out.getvalue()
