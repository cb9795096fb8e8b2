"""docs_offline: CDN references become relative local paths, once; unknown CDN URLs and
missing asset sources are reported; the asset table covers every URL GX's templates load."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from emotionops.settings import Settings
from emotionops.validation import docs_assets
from emotionops.validation.docs_offline import (
    ASSETS,
    OFFLINE_DIR,
    AssetSources,
    make_offline,
    rewrite_page,
)

JQ = "https://code.jquery.com/jquery-3.7.1.min.js"
LOGO = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png"
PAGE = f"""<html><head>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<link rel="shortcut icon" href="../../static/images/favicon.ico" type="image/x-icon"/>
<style>.x {{ background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png') 0 0; }}</style>
<script src="{JQ}"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js" integrity="sha384-abc" crossorigin="anonymous"></script>
<script src="https://cdn.example.net/unknown.js"></script>
</head><body>
<img
  class="NO-CACHE"
  src="{LOGO}?d=20261203T185016Z&dataContextId=8a7c"
/>
<a href="https://docs.greatexpectations.io/docs/">GX docs</a>
</body></html>"""  # fmt: skip


def local_paths() -> tuple[dict[str, str], dict[str, str]]:
    local = {a.url: f"{OFFLINE_DIR}/{a.local}" for a in ASSETS if a.root != "site"}
    local |= {a.url: a.local for a in ASSETS if a.root == "site" and not a.prefix}
    return local, {a.url: a.local for a in ASSETS if a.prefix}


def test_rewrite_points_cdn_resources_at_relative_copies_and_reports_unknown_ones() -> None:
    local, prefixes = local_paths()
    html, unknown = rewrite_page(PAGE, 3, local, prefixes)
    assert unknown == ["https://cdn.example.net/unknown.js"]
    assert 'src="../../../static/offline/jquery/jquery.min.js"' in html
    assert 'href="../../../static/offline/fontawesome/css/all.min.css"' in html
    assert "url('../../../static/images/logo-long.png')" in html  # CSS url() too
    assert 'src="../../../static/images/logo-long.png"' in html  # query string dropped
    # A local copy of another version fails GX's SRI hash; crossorigin breaks file:// pages.
    assert '<script src="../../../static/offline/popper.js/umd/popper.min.js"></script>' in html
    assert 'href="../../../static/images/favicon.ico"' in html  # GX's favicon depth fixed
    assert '<a href="https://docs.greatexpectations.io/docs/">' in html  # links stay
    assert "https://cdn.example.net/unknown.js" in html  # unknown: left, reported
    assert not re.search(r"(src|href)=\"https://(?!cdn\.example|docs\.great)", html)
    again, unknown_again = rewrite_page(html, 3, local, prefixes)
    assert again == html and unknown_again == ["https://cdn.example.net/unknown.js"]


def fake_sources(tmp_path: Path) -> AssetSources:
    sources = AssetSources(tmp_path / "debian", tmp_path / "bundled")
    for asset in ASSETS:
        if asset.root == "site":
            continue
        root = sources.system_javascript if asset.root == "debian" else sources.bundled
        (root / asset.source).parent.mkdir(parents=True, exist_ok=True)
        (root / asset.source).write_text(f"/* {asset.source} */")
        if asset.with_dir:
            (root / asset.with_dir).mkdir(parents=True, exist_ok=True)
            (root / asset.with_dir / "fa-solid-900.woff2").write_bytes(b"font")
    return sources


def fake_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "static" / "images").mkdir(parents=True)
    (site / "static" / "images" / "logo-long.png").write_bytes(b"png")
    (site / "index.html").write_text(PAGE.replace("../../static", "./static"))
    page = site / "validations" / "suite" / "run" / "20261203T185016Z" / "batch.html"
    page.parent.mkdir(parents=True)
    page.write_text(PAGE)
    return site


def test_make_offline_copies_and_rewrites_once(tmp_path: Path) -> None:
    sources, site = fake_sources(tmp_path), fake_site(tmp_path)
    first = make_offline(site, sources)
    assert first.pages_rewritten == 2 and first.missing == ()
    assert first.files_copied == len([a for a in ASSETS if a.root != "site"]) + 1  # + the font
    assert first.unknown_urls == ("https://cdn.example.net/unknown.js",)
    assert (site / OFFLINE_DIR / "fontawesome" / "webfonts" / "fa-solid-900.woff2").is_file()
    index = (site / "index.html").read_text()
    assert 'src="static/offline/jquery/jquery.min.js"' in index
    page = next(site.glob("validations/*/*/*/*.html")).read_text()
    assert 'src="../../../../static/offline/jquery/jquery.min.js"' in page
    snapshot = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    second = make_offline(site, sources)
    assert (second.pages_rewritten, second.files_copied) == (0, 0)
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == snapshot
    # A changed source (a Debian update) is copied again, nothing else.
    (sources.system_javascript / "jquery" / "jquery.min.js").write_text("/* 3.6.2 */")
    assert make_offline(site, sources).files_copied == 1


def test_a_missing_source_warns_with_its_installer_and_keeps_the_cdn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sources, site = fake_sources(tmp_path), fake_site(tmp_path)
    (sources.system_javascript / "jquery" / "jquery.min.js").unlink()
    with caplog.at_level(logging.WARNING, "emotionops.validation.docs_offline"):
        result = make_offline(site, sources)
    assert len(result.missing) == 1 and "libjs-jquery" in result.missing[0]
    assert "the Debian package libjs-jquery" in caplog.text
    assert f'src="{JQ}"' in (site / "index.html").read_text()  # still works online
    assert JQ in result.unknown_urls


def test_the_asset_table_covers_every_resource_gx_templates_load() -> None:
    """A GX upgrade that adds or moves a CDN URL fails here, not on a reviewer's screen."""
    spec = importlib.util.find_spec("great_expectations")
    assert spec is not None and spec.origin is not None
    templates = Path(spec.origin).parent / "render" / "view" / "templates"
    loaded = set()
    for template in templates.glob("*.j2"):
        text = template.read_text()
        for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", text, re.I):
            loaded.update(re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", tag))
        loaded.update(re.findall(r"""url\(['"]?(https?://[^'")]+)""", text))
    assert loaded, f"no CDN URL found in {templates}: did GX move its templates?"
    # The navbar's logo is built from a variable: its URL is the bucket plus logo-long.png.
    navbar = (templates / "top_navbar.j2").read_text()
    assert re.search(r'static_images_dir = "https://great-expectations-web-assets', navbar)
    known = {a.url for a in ASSETS}
    assert sorted(loaded - known) == []


def test_asset_folders_come_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("EMOTIONOPS_")]:
        monkeypatch.delenv(key)
    default = docs_assets(Settings(_env_file=None, project_dir=tmp_path))
    assert default.system_javascript == Path("/usr/share/javascript")
    assert default.bundled == Path(sys.prefix) / "share" / "data-docs-assets"  # the Makefile's
    monkeypatch.setenv("EMOTIONOPS_DATA_DOCS_ASSETS_DIR", "assets")
    monkeypatch.setenv("EMOTIONOPS_SYSTEM_JAVASCRIPT_DIR", "/opt/js")
    chosen = docs_assets(Settings(_env_file=None, project_dir=tmp_path))
    assert chosen == AssetSources(Path("/opt/js"), tmp_path / "assets")
