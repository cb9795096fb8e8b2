"""Make a Great Expectations Data Docs site render offline: local copies of its CDN assets.

GX 1.24's templates load Bootstrap, jQuery, Popper, bootstrap-table (which fills the index
and result tables from inline JSON), bootstrap-datepicker, Font Awesome, bootstrap-dark and
Vega from public CDNs, and its logo from GX's S3 bucket. On an offline machine or venue
network the index's tables therefore stay empty. After every build, `make_offline` copies
the assets into `<site>/static/offline/` and points each page's `<script>`, `<link>`, `<img>`
and CSS `url()` at them with relative paths, so the site also works opened from disk.

Where the copies come from (installed by `make setup`, never at run time):
- Debian packages under `Settings.system_javascript_dir` (jQuery 3.6, Bootstrap 4.6,
  Popper 1.16, bootstrap-datepicker 1.3: the same major versions GX's templates name);
- `make data-docs-assets` (`Settings.data_docs_assets_dir`, default `<venv>/share/
  data-docs-assets`) for what Debian lacks: bootstrap-table 1.19.1, bootstrap-dark 1.1.0 and
  Vega 5 / Vega-Lite 5 / vega-embed 6 from the npm registry, Font Awesome 6.6.0 from the
  fontawesomefree wheel;
- the site itself for GX's logo (GX ships it in `static/images/`).

Idempotent: pages already pointing at local copies have nothing left to rewrite, and a file
is copied only when its bytes differ, so a re-run (or a GX rebuild followed by a run) ends in
the same site. Links a person clicks (`<a href>` to GX's documentation) are left alone: they
are not fetched when a page loads.
"""

from __future__ import annotations

import filecmp
import logging
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

#: Folder inside the site that holds the copies.
OFFLINE_DIR = "static/offline"

Root = Literal["debian", "bundled", "site"]

_MAKE = "`make data-docs-assets` (part of `make setup`)"


@dataclass(frozen=True)
class AssetSources:
    """Where the local copies are read from (see the module docstring)."""

    system_javascript: Path  # Debian's /usr/share/javascript
    bundled: Path  # make data-docs-assets


def asset_sources(
    system_javascript_dir: Path, data_docs_assets_dir: Path | None = None
) -> AssetSources:
    """Settings' folders; no bundled folder given: `<venv>/share/data-docs-assets`, where
    the Makefile puts it (the same venv this code runs in)."""
    bundled = data_docs_assets_dir or Path(sys.prefix) / "share" / "data-docs-assets"
    return AssetSources(system_javascript_dir, bundled)


@dataclass(frozen=True)
class Asset:
    """One file a GX page loads from a CDN, and its local copy."""

    url: str  # as GX's templates write it; `prefix`: any URL starting with it
    root: Root
    source: str  # path under the root
    local: str  # path under <site>/static/offline/ ("site": path under the site)
    install: str  # what puts the source there
    prefix: bool = False
    with_dir: str = ""  # a folder beside the source the file refers to (fonts), copied too


def _deb(url: str, source: str, package: str, local: str | None = None) -> Asset:
    return Asset(url, "debian", source, local or source, f"the Debian package {package}")


def _bundled(url: str, source: str, with_dir: str = "") -> Asset:
    return Asset(url, "bundled", source, source, _MAKE, with_dir=with_dir)


_UNPKG_BT = "https://unpkg.com/bootstrap-table@1.19.1/dist/"
_UNPKG_FC = "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
_DATEPICKER = "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/"
_GX_S3 = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
_FC = "extensions/filter-control/bootstrap-table-filter-control"

#: Every external resource GX 1.24's Data Docs templates load (render/view/templates/*.j2).
ASSETS: tuple[Asset, ...] = (
    _deb("https://code.jquery.com/jquery-3.7.1.min.js", "jquery/jquery.min.js", "libjs-jquery"),
    _deb("https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css",
         "bootstrap4/css/bootstrap.min.css", "libjs-bootstrap4"),
    _deb("https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js",
         "bootstrap4/js/bootstrap.min.js", "libjs-bootstrap4"),
    _deb("https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js",
         "popper.js/umd/popper.min.js", "libjs-popper.js"),
    _deb(_DATEPICKER + "css/bootstrap-datepicker.min.css", "bootstrap/files/css/datepicker3.css",
         "libjs-twitter-bootstrap-datepicker", "bootstrap-datepicker/datepicker3.css"),
    _deb(_DATEPICKER + "js/bootstrap-datepicker.min.js",
         "bootstrap/files/js/bootstrap-datepicker.js", "libjs-twitter-bootstrap-datepicker",
         "bootstrap-datepicker/bootstrap-datepicker.js"),
    _bundled(_UNPKG_BT + "bootstrap-table.min.css", "bootstrap-table/bootstrap-table.min.css"),
    _bundled(_UNPKG_BT + "bootstrap-table.min.js", "bootstrap-table/bootstrap-table.min.js"),
    _bundled(_UNPKG_BT + _FC + ".min.js", f"bootstrap-table/{_FC}.min.js"),
    _bundled(_UNPKG_FC + "bootstrap-table-filter-control.min.css", f"bootstrap-table/{_FC}.min.css"),
    _bundled(_UNPKG_FC + "bootstrap-table-filter-control.css", f"bootstrap-table/{_FC}.css"),
    _bundled("https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
             "bootstrap-prefers-dark.css", "bootstrap-dark/bootstrap-prefers-dark.min.css"),
    _bundled("https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css",
             "fontawesome/css/all.min.css", with_dir="fontawesome/webfonts"),
    _bundled("https://cdn.jsdelivr.net/npm/vega@5", "vega/vega.min.js"),
    _bundled("https://cdn.jsdelivr.net/npm/vega-lite@5", "vega/vega-lite.min.js"),
    _bundled("https://cdn.jsdelivr.net/npm/vega-embed@6", "vega/vega-embed.min.js"),
    # GX's logo: the navbar's copy carries a cache-busting query and the context id.
    Asset(_GX_S3 + "logo-long.png", "site", "static/images/logo-long.png",
          "static/images/logo-long.png", "the site (GX writes it)", prefix=True),
    Asset(_GX_S3 + "full_logo_dark.png", "site", "static/images/logo-long.png",
          "static/images/logo-long.png", "the site (GX writes it)"),
)  # fmt: skip

#: A tag that loads something, and the URL attribute inside it.
_TAG = re.compile(r"<(?:script|link|img|source|iframe)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(https?://[^"']*|//[^"']*)\2""", re.I)
#: Subresource integrity and CORS mode: a local copy of another version has another hash,
#: and `crossorigin` on a file:// page makes Chromium refuse the script.
_SRI = re.compile(r"""\s+(?:integrity|crossorigin)(?:\s*=\s*(["'])[^"']*\1)?""", re.I)
#: A reference to the site's own static/ folder, at whatever depth GX wrote it.
_STATIC = re.compile(r"""\b(src|href)\s*=\s*(["'])(?:\./|(?:\.\./)+)?static/""", re.I)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(https?://[^"')\s]+|//[^"')\s]+)\1\s*\)""", re.I)


@dataclass(frozen=True)
class OfflineResult:
    site: Path
    pages_rewritten: int  # HTML files changed by this run
    files_copied: int  # asset files copied (new or changed) by this run
    missing: tuple[str, ...] = ()  # one message per asset whose source is absent
    unknown_urls: tuple[str, ...] = ()  # external resources still loaded by some page


def _root(asset: Asset, sources: AssetSources, site: Path) -> Path:
    return {"debian": sources.system_javascript, "bundled": sources.bundled, "site": site}[
        asset.root
    ]


def _copy(src: Path, dest: Path) -> bool:
    """Copy when absent or different (copies a symlink's target: Debian links into nodejs/)."""
    if dest.is_file() and filecmp.cmp(src, dest, shallow=False):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return True


def _place(asset: Asset, sources: AssetSources, site: Path) -> tuple[str | None, int, str]:
    """Copy one asset into the site: (its site-relative path or None, files copied, problem)."""
    root = _root(asset, sources, site)
    src = root / asset.source
    if asset.root == "site":
        return (asset.local, 0, "") if src.is_file() else (None, 0, f"{src} is missing")
    if not src.is_file():
        return None, 0, f"{src} is missing: install {asset.install}"
    copied = _copy(src, site / OFFLINE_DIR / asset.local)
    if asset.with_dir:
        folder = root / asset.with_dir
        if not folder.is_dir():
            return None, 0, f"{folder} is missing: install {asset.install}"
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            copied += _copy(file, site / OFFLINE_DIR / asset.with_dir / file.relative_to(folder))
    return f"{OFFLINE_DIR}/{asset.local}", copied, ""


def _lookup(url: str, local: dict[str, str], prefixes: dict[str, str]) -> str | None:
    if url in local:
        return local[url]
    return next((path for p, path in prefixes.items() if url.startswith(p)), None)


def rewrite_page(
    html: str, depth: int, local: dict[str, str], prefixes: dict[str, str] | None = None
) -> tuple[str, list[str]]:
    """One page's HTML with known CDN resources pointed at site-relative paths (`depth`
    folders below the site root), and the external resource URLs it still loads."""
    prefixes = prefixes or {}
    up = "../" * depth
    unknown: list[str] = []

    def tag(match: re.Match[str]) -> str:
        text = match.group(0)
        attr = _URL_ATTR.search(text)
        if attr is None:  # GX's favicon on result pages is one folder short: fix the depth
            return _STATIC.sub(lambda m: f"{m.group(1)}={m.group(2)}{up}static/", text)
        path = _lookup(attr.group(3), local, prefixes)
        if path is None:
            unknown.append(attr.group(3))
            return text
        quote = attr.group(2)
        text = (
            text[: attr.start()] + f"{attr.group(1)}={quote}{up}{path}{quote}" + text[attr.end() :]
        )
        return _SRI.sub("", text)

    def css(match: re.Match[str]) -> str:
        path = _lookup(match.group(2), local, prefixes)
        if path is None:
            unknown.append(match.group(2))
            return match.group(0)
        return f"url('{up}{path}')"

    return _CSS_URL.sub(css, _TAG.sub(tag, html)), unknown


def make_offline(site: Path, sources: AssetSources) -> OfflineResult:
    """Copy the assets into `site` and rewrite every page of it (see the module docstring).

    WHY a warning and not an error when a source is missing: Data Docs are a review aid
    and a validation run is a gate on data. Failing the run (and so the ingest or the
    training it guards) because a CSS package is not installed would block data for a
    cosmetic reason; the pages keep their CDN references then (they still work online) and
    the warning names the Debian package or make target that installs the missing files.
    """
    local: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    missing: list[str] = []
    absent: list[str] = []  # their URLs (prefixes included)
    copied = 0
    for asset in ASSETS:
        path, n, problem = _place(asset, sources, site)
        copied += n
        if path is None:
            missing.append(f"{asset.url}: {problem}")
            absent.append(asset.url)
        else:
            (prefixes if asset.prefix else local)[asset.url] = path
    rewritten = 0
    unknown: set[str] = set()
    offline = site / OFFLINE_DIR
    for page in sorted(site.rglob("*.html")):
        if page.is_relative_to(offline):
            continue
        before = page.read_text(encoding="utf-8")
        depth = len(page.relative_to(site).parts) - 1
        after, left = rewrite_page(before, depth, local, prefixes)
        unknown.update(left)
        if after != before:  # replaced whole: a reader never sees half a page
            partial = page.with_name(page.name + ".offline-tmp")
            partial.write_text(after, encoding="utf-8")
            partial.replace(page)
            rewritten += 1
    if missing:
        log.warning(
            "Data Docs at %s still load %d asset(s) from the internet:\n  %s",
            site, len(missing), "\n  ".join(missing),
        )  # fmt: skip
    unexpected = sorted(u for u in unknown if not u.startswith(tuple(absent)))
    if unexpected:
        log.warning(
            "Data Docs at %s load external resources no local copy is known for (a GX upgrade "
            "changed its templates? add them to emotionops.validation.docs_offline.ASSETS): %s",
            site, ", ".join(unexpected),
        )  # fmt: skip
    return OfflineResult(site, rewritten, copied, tuple(missing), tuple(sorted(unknown)))
