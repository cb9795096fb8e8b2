"""URL cleanup: normalisation, syntax and scheme checks, the denylist, dedupe, reasons."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from emotionops.acquire.urls import (
    DEFAULT_DENYLIST_DOMAINS,
    DEFAULT_DENYLIST_PATH_PATTERNS,
    UrlPolicy,
    UrlRuleError,
    clean_manifest,
    normalise,
    url_sha256,
)
from emotionops.files import read_records, write_records
from emotionops.params import Params, ParamsError, UrlsParams, load_params
from emotionops.pipeline import DataPaths, stage_load_urls
from emotionops.settings import Settings

STARTERS = UrlPolicy.from_params(None)


def test_normalise_rejects_what_cannot_be_fetched() -> None:
    assert normalise("HTTP://Example.COM:80/a.jpg#x").url == "http://example.com/a.jpg"
    assert normalise("https://example.com:8443").url == "https://example.com:8443/"
    for bad, rule in (
        ("file:///etc/passwd", "scheme"),
        ("ftp://example.com/a.jpg", "scheme"),
        ("", "empty"),
        ("http://", "no_host"),
        ("http://a b.com/", "malformed"),
        ("http://example.com:99999/", "malformed"),
        ("http://" + "a" * 2050 + ".com/", "malformed"),
        ("http://user:pw@example.com/a.jpg", "credentials"),
    ):
        verdict = normalise(bad)
        assert not verdict.ok and verdict.rule == rule, (bad, verdict)
    assert "credentials" in normalise("http://user:pw@example.com/a.jpg").reason


def test_clean_manifest_dedupes_and_gives_reasons() -> None:
    rows = [
        {"image_url": "http://example.com/a.jpg", "label": "happy"},
        {"image_url": "http://EXAMPLE.com/a.jpg#frag", "label": "happy"},
        {"image_url": "javascript:alert(1)", "label": "sad"},
    ]
    kept, rejected = clean_manifest(rows)
    assert [r["image_url"] for r in kept] == ["http://example.com/a.jpg"]
    assert kept[0]["url_sha256"] == url_sha256("http://example.com/a.jpg")
    assert sorted((r["reason"], r["rule"]) for r in rejected) == [
        ("duplicate url", "duplicate"),
        ("scheme 'javascript' not allowed", "scheme"),
    ]


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("https://emojipedia.org/smiling-face", "*emoji*"),
        ("https://em-content.zobj.net.emojiterra.com/a.png", "*emoji*"),
        ("https://www.clipart-library.com/img/123.png", "*clipart*"),
        ("https://clipartmax.com/png/middle/1.png", "*clipart*"),
        ("https://www.supercoloring.com/sites/default/files/a.png", "*coloring*"),
        ("https://image.shutterstock.com/image-photo/a-260nw.jpg", "shutterstock.com"),
        ("https://media.istockphoto.com/id/1/photo/a.jpg", "istockphoto.com"),
        ("https://media.gettyimages.com/id/1/photo/a.jpg", "gettyimages.*"),
        ("https://www.gettyimages.co.uk/detail/a.jpg", "gettyimages.*"),
        ("https://thumbs.dreamstime.com/b/a.jpg", "dreamstime.com"),
        ("https://c8.alamy.com/comp/a.jpg", "alamy.com"),
        ("https://previews.123rf.com/images/a.jpg", "123rf.com"),
        ("https://st.depositphotos.com/1/a.jpg", "depositphotos.com"),
        ("https://as1.ftcdn.net.stock.adobe.com/a.jpg", "stock.adobe.com"),
    ],
)
def test_denylisted_domains_match_subdomains_and_globs(url: str, entry: str) -> None:
    verdict = STARTERS.check(url)
    assert not verdict.ok and verdict.rule == "denylist_domain"
    assert f"matches {entry!r} (urls.denylist_domains)" in verdict.reason


@pytest.mark.parametrize(
    "url",
    [
        "https://photos.example.org/people/smiling-woman.jpg",
        "https://notshutterstock.com/a.jpg",  # a suffix, not a subdomain
        "https://shutterstock.com.evil.example/a.jpg",  # the entry elsewhere in the host
        "https://upload.wikimedia.org/wikipedia/commons/a/ab/Smiling_man.jpg",
        "http://127.0.0.1:8765/image/happy/happy_3.png",  # the local stand-in
    ],
)
def test_ordinary_photo_urls_pass(url: str) -> None:
    assert STARTERS.check(url).ok, STARTERS.check(url)


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("https://img.example.com/free-clip-art/happy.png", "clip[-_ ]?art"),
        ("https://img.example.com/ClipArt/happy.png", "clip[-_ ]?art"),
        ("https://x.example/printable-coloring-pages/sad-face.jpg", "colou?r(ing)?[-_ ]?(page|sheet|book)"),
        ("https://x.example/colouring_sheet_1.jpg", "colou?r(ing)?[-_ ]?(page|sheet|book)"),
        ("https://x.example/img.php?name=emoji_smile.png", "emoji"),
        ("https://x.example/cartoons/angry-man.png", "cartoon"),
        ("https://x.example/stock-photo-sad-woman-123.jpg", "stock[-_ ]?(photo|image|vector|illustration)"),
        ("https://x.example/face.svg", r"\.svg$"),
    ],
)  # fmt: skip
def test_denylisted_path_patterns_name_the_pattern(url: str, pattern: str) -> None:
    verdict = STARTERS.check(url)
    assert not verdict.ok and verdict.rule == "denylist_path"
    assert f"matches {pattern!r} (urls.denylist_path_patterns)" in verdict.reason


def test_policy_comes_from_params_and_an_empty_denylist_allows_everything() -> None:
    custom = UrlPolicy.from_params(UrlsParams(denylist_domains=["example.net"],
                                              denylist_path_patterns=["/thumbs/"]))  # fmt: skip
    assert custom.check("https://cdn.example.net/a.jpg").rule == "denylist_domain"
    assert custom.check("https://a.example/thumbs/a.jpg").rule == "denylist_path"
    assert custom.check("https://emojipedia.org/a.png").ok  # starters replaced, not merged
    empty = UrlPolicy.from_lists()
    assert empty.check("https://emojipedia.org/a.png").ok
    # clean_manifest accepts params.urls directly (what stage_load_urls/stage_download pass).
    kept, rejected = clean_manifest(
        [{"image_url": "https://cdn.example.net/a.jpg"}, {"image_url": "https://b.example/x.jpg"}],
        UrlsParams(denylist_domains=["example.net"], denylist_path_patterns=[]),
    )
    assert [r["image_url"] for r in kept] == ["https://b.example/x.jpg"]
    assert rejected[0]["rule"] == "denylist_domain"


def test_bad_denylist_entries_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(
        UrlRuleError, match=r"urls\.denylist_domains\[1\]: 'https://x\.com/' is not"
    ):
        UrlPolicy.from_lists(["ok.com", "https://x.com/"])
    with pytest.raises(
        UrlRuleError, match=r"urls\.denylist_path_patterns\[0\]: '\(oops' is not a valid regex"
    ):
        UrlPolicy.from_lists([], ["(oops"])
    params = tmp_path / "params.yaml"
    params.write_text("labels: [happy, sad]\nurls:\n  denylist_path_patterns: ['[a-']\n")
    with pytest.raises(
        ParamsError, match=r"urls\.denylist_path_patterns\[0\]: '\[a-' is not a valid regex"
    ):
        load_params(params)
    starter = UrlPolicy.from_params(Params().urls)  # null in params.yaml: the starter lists
    assert [rule.entry for rule in starter.domains] == list(DEFAULT_DENYLIST_DOMAINS)
    assert [rule.pattern for rule in starter.paths] == list(DEFAULT_DENYLIST_PATH_PATTERNS)


def test_stage_load_urls_uses_the_denylist_and_the_date_partition(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path)
    params = Params(labels=["happy", "sad"], validation={"min_rows_per_label": 0})
    run_date = "2026-11-22"
    paths = DataPaths(settings.data_path)
    manifest = paths.manifest(run_date)
    assert manifest == settings.data_path / "manifests" / f"run_date={run_date}" / "urls.csv"
    base = {
        "query": "happy face",
        "engine": "local",
        "page_url": "https://p.example/",
        "run_date": run_date,
    }
    write_records(
        [
            {**base, "label": "happy", "rank": 1, "image_url": "https://photos.example/a.jpg"},
            {**base, "label": "happy", "rank": 2, "image_url": "https://emojipedia.org/a.png"},
            {**base, "label": "sad", "rank": 3, "image_url": "https://x.example/clipart/b.png"},
            {**base, "label": "sad", "rank": 4, "image_url": "https://PHOTOS.example/a.jpg"},
        ],
        manifest,
    )  # fmt: skip
    assert stage_load_urls(settings, params, run_date) == (1, 3)
    rejects = read_records(paths.url_rejects(run_date))
    assert paths.url_rejects(run_date).parent == manifest.parent
    assert [(r["rank"], r["rule"]) for r in rejects] == [
        ("2", "denylist_domain"), ("3", "denylist_path"), ("4", "duplicate"),
    ]  # fmt: skip
    with sqlite3.connect(settings.data_path / "warehouse.db") as db:
        assert db.execute("select url, run_date from image_url").fetchall() == [
            ("https://photos.example/a.jpg", run_date)
        ]
