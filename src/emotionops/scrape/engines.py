"""Image-search engines described as configuration, not code.

WHY: engines change their markup often; when they do, only a selector here should change,
never the driver's logic. Selectors are CSS selectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote_plus

from emotionops.errors import EmotionOpsError


class EngineError(EmotionOpsError, ValueError):
    """Unknown engine name, or an engine that needs a base URL that was not given."""


@dataclass(frozen=True)
class EngineConfig:
    """Where to search and how to find thumbnails and full-size image URLs on one engine."""

    name: str
    #: e.g. "{base}/search?q={query}"; `query` is URL-encoded before substitution.
    search_url_template: str
    #: CSS selector of a thumbnail to click in the results grid.
    thumbnail: str
    #: CSS selector of the image in the side panel that eventually holds the full-size URL.
    full_image: str
    #: Regex matching a full-size URL (and not a thumbnail URL).
    full_url_pattern: str
    #: Attribute of `full_image` that holds the URL.
    full_url_attribute: str = "src"
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


LOCAL = EngineConfig(
    name="local",
    search_url_template="{base}/search?q={query}",
    thumbnail="#grid a.result img.thumb",
    full_image="#side-panel #panel-image",
    full_url_pattern=r"^https?://[^/]+/image/[^/?#]+/[^/?#]+$",
    full_url_attribute="src",
    consent_button="#consent-accept",
    more_results="#more-results",
    end_marker="#end-of-results",
    source_link="#side-panel #panel-source",
    needs_base_url=True,
)

# Google and Bing come in a later change, written against their live markup.
ENGINES: dict[str, EngineConfig] = {LOCAL.name: LOCAL}


def get_engine(name: str) -> EngineConfig:
    try:
        return ENGINES[name]
    except KeyError:
        raise EngineError(
            f"unknown search engine {name!r}; known engines: {', '.join(sorted(ENGINES))}"
        ) from None
