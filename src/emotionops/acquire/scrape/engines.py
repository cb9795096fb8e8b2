"""Image-search engines described as configuration, not code.

WHY: engines change their markup often; when they do, only a selector should change, never
the driver's logic. The built-in engines (`local`, `google`, `bing`) live in the shipped
`engines.yaml`; `scrape.engines:` in params.yaml overrides some of their keys or adds whole
new engines with the same keys. Every definition is validated up front with errors that
name the offending key, so a typo fails at load time, not an hour into a run.

google and bing cannot be tested offline (no internet in CI): their definitions follow the
public markup as of 2025, and `emotionops canary --engine NAME` is how a deployment finds
out that one went stale (it names the selector that no longer matches).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote_plus

from emotionops.errors import EmotionOpsError

#: Where params.yaml overrides live; used to name keys in error messages.
PARAMS_KEY = "scrape.engines"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class EngineError(EmotionOpsError, ValueError):
    """Unknown engine name, an invalid engine definition, or a missing base URL."""


@dataclass(frozen=True)
class EngineConfig:
    """Where to search and how to find thumbnails and full-size image URLs on one engine."""

    name: str
    #: e.g. "{base}/search?q={query}"; `query` is URL-encoded before substitution.
    search_url_template: str
    #: CSS selector of one result in the grid (clicked, or read with inline_url_attribute).
    thumbnail: str
    #: Regex matching a full-size URL (and not a thumbnail URL).
    full_url_pattern: str
    #: CSS selector of the side-panel image that eventually holds the full-size URL.
    full_image: str | None = None
    #: Attribute of `full_image` that holds the URL (`src`, `data-...`).
    full_url_attribute: str = "src"
    #: Attribute of the thumbnail element that already holds the full-size URL (no click).
    inline_url_attribute: str | None = None
    #: When `inline_url_attribute` holds JSON: the key of the full-size URL in it.
    inline_json_key: str | None = None
    #: When `inline_url_attribute` holds JSON: the key of the source page URL in it.
    inline_source_key: str | None = None
    #: The "Accept" button of a cookie-consent dialog, if the engine shows one.
    consent_button: str | None = None
    #: A "show more results" control, clicked when scrolling alone loads nothing more.
    more_results: str | None = None
    #: An element shown when there are no more results (or none at all).
    end_marker: str | None = None
    #: A link in the side panel to the page the image was found on (else the search URL).
    source_link: str | None = None
    #: True when `{base}` must come from the caller (a self-hosted engine such as `local`).
    needs_base_url: bool = False
    #: Polite minimum seconds between page loads and clicks (a rate limit, not a wait).
    delay_s: float = 0.0
    #: How a thumbnail is clicked: "native" (WebDriver mouse events, ~70 ms each) or
    #: "script" (a DOM click, sent only when a hit test shows the thumbnail on top, so an
    #: overlay still blocks it as it would block a person; ~10 ms).
    click: str = "native"

    @property
    def inline(self) -> bool:
        """True when the full-size URL is read from the thumbnail itself (no click)."""
        return self.inline_url_attribute is not None

    def selectors(self) -> dict[str, str]:
        """The configured CSS selectors by key (to check them and to name them in errors)."""
        keys = ("thumbnail", "full_image", "consent_button", "more_results", "end_marker")
        out = {k: getattr(self, k) for k in (*keys, "source_link")}
        return {k: v for k, v in out.items() if v}

    def search_url(self, base_url: str | None, query: str) -> str:
        if self.needs_base_url and not base_url:
            raise EngineError(
                f"engine {self.name!r} needs a base URL (set EMOTIONOPS_SEARCH_URL or start "
                "the local search stand-in)"
            )
        base = (base_url or "").rstrip("/")
        return self.search_url_template.format(base=base, query=quote_plus(query))

    def is_full_size(self, url: str | None) -> bool:
        """Whether `url` is a full-size image URL (not a thumbnail, not a data: URL)."""
        return bool(url) and re.search(self.full_url_pattern, url) is not None


_KEYS = {f.name: f for f in fields(EngineConfig) if f.name != "name"}
_REQUIRED = ("search_url_template", "thumbnail", "full_url_pattern")
_BOOL_KEYS = {"needs_base_url"}
_NUMBER_KEYS = {"delay_s"}
_CHOICES = {"click": ("native", "script")}


def _check_value(where: str, key: str, value: Any) -> Any:
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise EngineError(f"{where}.{key}: must be true or false, got {value!r}")
        return value
    if key in _NUMBER_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60:
            raise EngineError(f"{where}.{key}: must be a number of seconds in [0, 60]")
        return float(value)
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise EngineError(f"{where}.{key}: must be one of {list(_CHOICES[key])}, got {value!r}")
        return value
    if value is None:
        if key in _REQUIRED or key == "full_url_attribute":
            raise EngineError(f"{where}.{key}: is required and cannot be null")
        return None
    if not isinstance(value, str) or not value.strip():
        raise EngineError(f"{where}.{key}: must be a non-empty string, got {value!r}")
    return value.strip()


def build_engine(name: str, data: Mapping[str, Any], base: EngineConfig | None = None,
                 where: str | None = None) -> EngineConfig:  # fmt: skip
    """One validated engine: `data` alone (a new engine) or `data` over `base` (an override).

    Errors name the key as `where.key` (e.g. `scrape.engines.google.thumbnail`).
    """
    where = where or f"{PARAMS_KEY}.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise EngineError(f"{where}: engine names are lower-case words ([a-z0-9_-]), got {name!r}")
    if not isinstance(data, Mapping):
        raise EngineError(f"{where}: must be a mapping of engine keys, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise EngineError(
            f"{where}: unknown key(s) {unknown}; known keys: {', '.join(sorted(_KEYS))}"
        )
    values = {k: _check_value(where, k, v) for k, v in data.items()}
    if base is None:
        missing = [k for k in _REQUIRED if k not in values]
        if missing:
            raise EngineError(f"{where}: missing required key(s) {missing}")
        engine = EngineConfig(name=name, **values)
    else:
        engine = replace(base, name=name, **values)

    template = engine.search_url_template
    if "{query}" not in template:
        raise EngineError(f"{where}.search_url_template: must contain {{query}}, got {template!r}")
    try:
        template.format(base="http://x", query="q")
    except (KeyError, IndexError, ValueError) as exc:
        raise EngineError(
            f"{where}.search_url_template: only {{base}} and {{query}} may be used ({exc!r})"
        ) from None
    engine = replace(engine, needs_base_url=engine.needs_base_url or "{base}" in template)
    try:
        re.compile(engine.full_url_pattern)
    except re.error as exc:
        raise EngineError(f"{where}.full_url_pattern: not a valid regex: {exc}") from None
    if engine.full_image is None and engine.inline_url_attribute is None:
        raise EngineError(
            f"{where}: set full_image (click a thumbnail, read the side panel) or "
            "inline_url_attribute (read the full-size URL from the thumbnail itself)"
        )
    if engine.inline_source_key and not engine.inline_json_key:
        raise EngineError(f"{where}.inline_source_key: needs inline_json_key as well")
    return engine


@lru_cache(maxsize=1)
def _builtin_raw() -> dict[str, Any]:
    import yaml

    text = resources.files("emotionops.acquire.scrape").joinpath("engines.yaml").read_text()
    return yaml.safe_load(text) or {}


def builtin_engines() -> dict[str, EngineConfig]:
    """The engines shipped in `emotionops/acquire/scrape/engines.yaml` (read on first use)."""
    return {
        name: build_engine(name, data, where=f"engines.yaml: {name}")
        for name, data in _builtin_raw().items()
    }


def load_engines(overrides: Mapping[str, Any] | None = None) -> dict[str, EngineConfig]:
    """Built-in engines with `overrides` applied (params.yaml's `scrape.engines`).

    An override of a built-in engine changes only the keys it lists; any other name defines
    a new engine, which needs at least the required keys.
    """
    engines = builtin_engines()
    if overrides is None:
        return engines
    if not isinstance(overrides, Mapping):
        raise EngineError(f"{PARAMS_KEY}: must be a mapping of engine name -> keys")
    for name, data in overrides.items():
        engines[name] = build_engine(name, data, base=engines.get(name))
    return engines


def get_engine(name: str, overrides: Mapping[str, Any] | None = None) -> EngineConfig:
    engines = load_engines(overrides)
    try:
        return engines[name]
    except KeyError:
        raise EngineError(
            f"unknown search engine {name!r}; known engines: {', '.join(sorted(engines))} "
            f"(new ones go under {PARAMS_KEY} in params.yaml)"
        ) from None


def __getattr__(name: str) -> EngineConfig:
    # `LOCAL` stays importable without reading engines.yaml at import time.
    if name == "LOCAL":
        return builtin_engines()["local"]
    raise AttributeError(name)
