"""`emotionops report build --out DIR`: the dashboard as a folder of static pages.

DIR/index.html links the three pages; DIR/assets/ holds Plotly's JavaScript and the styles,
DIR/thumbs/ the sample thumbnails, DIR/data-docs/ a copy of the Data Docs site, so the folder
opens from disk (or any file share, or a zip) with no server and no network, like the
published report it replaces. A snapshot: the analytics filters work on the data it holds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from emotionops.dashboard.pages import (
    PAGES,
    Links,
    asset_files,
    page_data,
    render_index,
    render_page,
)
from emotionops.dashboard.quality import ThumbnailError, make_thumbnail, thumbnail_source
from emotionops.errors import EmotionOpsError
from emotionops.params import Params

BUNDLE = Links(static=True)
#: Written by this command: a folder holding it may be rebuilt in place.
MARKER = ".emotionops-report"


class BundleError(EmotionOpsError):
    """The report folder cannot be written."""


@dataclass
class BundleReport:
    out: Path
    pages: list[str] = field(default_factory=list)
    thumbnails: int = 0
    thumbnails_missing: list[str] = field(default_factory=list)  # "sha: why"
    data_docs: bool = False
    bytes: int = 0


def _prepare(out: Path) -> None:
    """An empty folder, or one this command wrote before (never someone else's files)."""
    if out.exists():
        if not out.is_dir():
            raise BundleError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise BundleError(
                f"{out} is not empty and was not written by `emotionops report build`: "
                "choose an empty or new folder"
            )
        for child in ("assets", "thumbs", "data-docs"):
            shutil.rmtree(out / child, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `emotionops report build`; safe to rebuild\n")


def whole_range_analytics(engine: Engine, params: Params, opened: dict) -> dict:
    """A report has no server to ask: it holds day buckets over all the data (the page's
    filters narrow them down), instead of the live page's opening view."""
    from emotionops.dashboard.analytics import analytics_data

    first = opened["range"]["first"]
    if first is None:
        return opened
    start = datetime.fromisoformat(first).astimezone(UTC)
    return analytics_data(engine, start=start, bucket="day", params=params.dashboard)


def build_bundle(
    engine: Engine,
    params: Params,
    data_root: Path,
    out: Path,
    data_docs_site: Path | None = None,
    where: str = "",
) -> BundleReport:
    """Write every page, its assets and thumbnails, and a Data Docs copy, into `out`."""
    data = {name: page_data(name, engine, params) for name in PAGES}  # read all, then write
    data["analytics"] = whole_range_analytics(engine, params, data["analytics"])
    _prepare(out)
    report = BundleReport(out=out)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (out / "assets").mkdir()
    for name, path in asset_files().items():
        shutil.copyfile(path, out / "assets" / name)
    thumbs = out / "thumbs"
    thumbs.mkdir()
    dp = params.dashboard
    for group in data["quality"]["samples"].values():
        for sample in group:
            sha = sample["sha256"]
            if (thumbs / f"{sha}.jpg").exists():
                continue
            try:
                source = thumbnail_source(engine, data_root, sha)
                body = make_thumbnail(source, dp.thumbnail_side, params.api.max_pixels)
            except ThumbnailError as exc:
                report.thumbnails_missing.append(f"{sha[:12]}: {exc}")
                continue
            (thumbs / f"{sha}.jpg").write_bytes(body)
            report.thumbnails += 1
    if data_docs_site is not None and data_docs_site.is_dir():
        shutil.copytree(data_docs_site, out / "data-docs")
        report.data_docs = True
    for result in data["quality"]["validations"]:  # no link to a page the copy lacks
        if result["docs_path"] and not (out / "data-docs" / result["docs_path"]).is_file():
            result["docs_path"] = None
    (out / "index.html").write_text(render_index(BUNDLE, generated, where), encoding="utf-8")
    report.pages.append("index.html")
    for name in PAGES:
        html = render_page(name, data[name], BUNDLE, generated, where)
        (out / f"{name}.html").write_text(html, encoding="utf-8")
        report.pages.append(f"{name}.html")
    report.bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return report
