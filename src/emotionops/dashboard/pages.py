"""The dashboard's pages as HTML, the same for the live app and the static bundle.

A page is a Jinja template that renders the tables, plus the page's data as a JSON block
that static/dashboard.js draws with Plotly. Only the links differ between the two modes
(`Links`): the app serves assets, thumbnails and Data Docs under /dashboard/, the bundle
keeps them next to the pages in relative folders, so it opens from disk with no network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Engine

from emotionops.notice import LAWFUL_USE
from emotionops.params import Params

HERE = Path(__file__).parent
PAGES = {"models": "Models", "quality": "Data quality", "analytics": "Emotion analytics"}


def asset_files() -> dict[str, Path]:
    """Every file a page loads, by the name it is linked as. Plotly's JavaScript comes from
    the plotly wheel itself (plotly/package_data), so the app never needs a CDN."""
    import plotly

    return {
        "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
        "dashboard.js": HERE / "static" / "dashboard.js",
        "dashboard.css": HERE / "static" / "dashboard.css",
        "app.css": HERE.parent / "api" / "static" / "app.css",
    }


@dataclass(frozen=True)
class Links:
    """Where a page's links point: the live app (`static=False`) or a bundle folder."""

    static: bool

    def page(self, name: str) -> str:
        return f"{name}.html" if self.static else f"/dashboard/{name}"

    def asset(self, name: str) -> str:
        return f"assets/{name}" if self.static else f"/dashboard/assets/{name}"

    @property
    def thumbs(self) -> str:
        return "thumbs/" if self.static else "/dashboard/thumbs/"

    @property
    def docs(self) -> str:
        return "data-docs/" if self.static else "/dashboard/data-docs/"

    @property
    def analytics_api(self) -> str | None:
        """The JSON endpoint the analytics filters query; a bundle filters its own data."""
        return None if self.static else "/api/dashboard/analytics"


def json_block(value: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no '</script>' can end it early."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return Markup(text)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, digits=3: "–" if v is None else f"{v:.{digits}f}"
    return env


_ENV = _environment()


def render_page(
    name: str, data: dict[str, Any], links: Links, generated_at: str, where: str = ""
) -> str:
    """One page's HTML. `data` is the page's data function's result (models_data, ...)."""
    if name not in PAGES:
        raise KeyError(f"no dashboard page {name!r}; pages: {', '.join(PAGES)}")
    config = {
        "page": name,
        "static": links.static,
        "thumbs": links.thumbs,
        "docs": links.docs,
        "analytics_api": links.analytics_api,
    }
    return _ENV.get_template(f"{name}.html").render(
        page=name,
        title=PAGES[name],
        pages=PAGES,
        links=links,
        data=data,
        data_json=json_block(data),
        config_json=json_block(config),
        notice=LAWFUL_USE,
        generated_at=generated_at,
        where=where,
    )


def _render_plain(template: str, title: str, links: Links, generated_at: str, where: str, **extra):
    return _ENV.get_template(template).render(
        page=template.removesuffix(".html"),
        title=title,
        pages=PAGES,
        links=links,
        notice=LAWFUL_USE,
        generated_at=generated_at,
        where=where,
        **extra,
    )


def render_index(links: Links, generated_at: str, where: str = "") -> str:
    """The bundle's front page: what each page shows."""
    return _render_plain("index.html", "Dashboard", links, generated_at, where)


def render_error(message: str, links: Links, generated_at: str, where: str = "") -> str:
    """A page that says what went wrong (e.g. the warehouse is down), with the notice."""
    return _render_plain(
        "error.html", "Dashboard unavailable", links, generated_at, where, message=message
    )


def page_data(name: str, engine: Engine, params: Params) -> dict[str, Any]:
    """The data of page `name`, read from the warehouse with the dashboard's params."""
    from emotionops.dashboard.analytics import analytics_data
    from emotionops.dashboard.models import models_data
    from emotionops.dashboard.quality import quality_data

    dp = params.dashboard
    if name == "models":
        return models_data(engine, dp.max_runs)
    if name == "quality":
        return quality_data(engine, dp.samples_per_group)
    if name == "analytics":
        return analytics_data(engine, params=dp)
    raise KeyError(f"no dashboard page {name!r}; pages: {', '.join(PAGES)}")
