"""The dashboard in the API app: /dashboard pages, their assets, thumbnails, Data Docs and the
analytics JSON the filters query.

Every page reads the warehouse when it is asked for (no cache: the numbers are as fresh as
the warehouse); a warehouse that is down gives a 503 page saying so, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from emotionops.dashboard.analytics import AnalyticsError, analytics_data
from emotionops.dashboard.pages import (
    PAGES,
    Links,
    asset_files,
    page_data,
    render_error,
    render_page,
)
from emotionops.dashboard.quality import ThumbnailError, make_thumbnail, thumbnail_source
from emotionops.errors import EmotionOpsError
from emotionops.params import Params

LIVE = Links(static=False)
_ONE_DAY = timedelta(days=1)


def parse_day(text: str | None, name: str) -> datetime | None:
    """'2026-12-03' -> that midnight UTC (a date input's value)."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise AnalyticsError(f"{name} must be a date like 2026-12-03, got {text[:40]!r}") from exc


def dashboard_router(
    engine: Callable[[], Engine],
    params: Params,
    data_root: Path,
    secure: Callable[[Response], Response],
    where: str = "",
) -> APIRouter:
    """The routes. `engine` opens the warehouse on first use; `secure` adds the app's
    security headers (CSP...) to a page."""
    router = APIRouter(include_in_schema=False)
    assets = asset_files()
    dp = params.dashboard

    def now() -> str:
        return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def error_page(status: int, message: str) -> HTMLResponse:
        body = render_error(message, LIVE, now(), where)
        return secure(HTMLResponse(body, status_code=status))

    @router.get("/dashboard")
    def dashboard_index() -> Response:
        return RedirectResponse("/dashboard/models", status_code=307)

    @router.get("/dashboard/assets/{name}")
    def dashboard_asset(name: str) -> Response:
        path = assets.get(name)
        if path is None:
            return JSONResponse({"error": "not_found", "detail": name}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})

    @router.get("/dashboard/thumbs/{sha256}.jpg")
    async def dashboard_thumbnail(sha256: str) -> Response:
        def work() -> bytes:
            path = thumbnail_source(engine(), data_root, sha256)
            return make_thumbnail(path, dp.thumbnail_side, params.api.max_pixels)

        try:
            body = await run_in_threadpool(work)
        except ThumbnailError as exc:
            return JSONResponse({"error": "no_thumbnail", "detail": str(exc)}, status_code=404)
        except (EmotionOpsError, SQLAlchemyError) as exc:
            return JSONResponse(
                {"error": "warehouse_unavailable", "detail": str(exc).splitlines()[0]},
                status_code=503,
            )
        return Response(body, media_type="image/jpeg", headers={"Cache-Control": "max-age=600"})

    @router.get("/api/dashboard/analytics", include_in_schema=True)
    async def dashboard_analytics(
        bucket: str = Query(default=None, description="hour | day"),
        camera: str | None = None,
        start: str | None = Query(default=None, description="first day, YYYY-MM-DD (UTC)"),
        end: str | None = Query(default=None, description="last day, YYYY-MM-DD, included"),
    ) -> Response:
        """Faces per camera, label and hour or day, and tracks per camera and bucket."""
        try:
            first, last = parse_day(start, "start"), parse_day(end, "end")
            if last is not None:
                last = last.replace(hour=0) + _ONE_DAY  # the end day is included
            data = await run_in_threadpool(
                analytics_data, engine(), camera or None, first, last, bucket or None, dp
            )
        except AnalyticsError as exc:
            return JSONResponse({"error": "bad_filter", "detail": str(exc)}, status_code=422)
        except (EmotionOpsError, SQLAlchemyError) as exc:
            return JSONResponse(
                {"error": "warehouse_unavailable", "detail": str(exc).splitlines()[0]},
                status_code=503,
            )
        return JSONResponse(data)

    @router.get("/dashboard/{name}", response_class=HTMLResponse)
    async def dashboard_page(name: str) -> Response:
        if name not in PAGES:
            return error_page(404, f"no dashboard page {name!r}: {', '.join(PAGES)}")
        try:
            data: Any = await run_in_threadpool(page_data, name, engine(), params)
        except (EmotionOpsError, SQLAlchemyError) as exc:
            return error_page(503, f"the warehouse cannot be read: {str(exc).splitlines()[0]}")
        return secure(HTMLResponse(render_page(name, data, LIVE, now(), where)))

    return router
