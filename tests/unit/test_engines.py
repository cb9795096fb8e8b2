"""Engines as configuration: the shipped definitions, overrides, validation; pacing and caps."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from emotionops.acquire.scrape.driver import Throttle, _shares
from emotionops.acquire.scrape.engines import (
    EngineError,
    build_engine,
    builtin_engines,
    get_engine,
    load_engines,
)
from emotionops.params import ParamsError, load_params

MINIMAL = {
    "search_url_template": "https://img.example/search?q={query}",
    "thumbnail": "div.hit img",
    "full_image": "img.big",
    "full_url_pattern": "^https://",
}


def test_builtin_engines_are_complete_and_valid() -> None:
    engines = builtin_engines()
    assert {"local", "google", "bing"} <= set(engines)
    local, google, bing = engines["local"], engines["google"], engines["bing"]
    assert local.needs_base_url and local.click == "script" and local.delay_s == 0
    assert local.search_url("http://127.0.0.1:9/", "happy face") == (
        "http://127.0.0.1:9/search?q=happy+face"
    )
    # Real engines: no base URL needed, polite by default, selectors for every step.
    for engine in (google, bing):
        assert not engine.needs_base_url and engine.delay_s >= 1
        assert engine.thumbnail and engine.consent_button and engine.more_results
        assert engine.search_url(None, "sad face").startswith("https://www.")
    assert "q=sad+face" in google.search_url(None, "sad face")
    assert google.full_image and not google.inline
    assert bing.inline and bing.inline_json_key == "murl" and bing.inline_source_key == "purl"


@pytest.mark.parametrize(
    ("name", "url", "full"),
    [
        ("google", "https://encrypted-tbn0.gstatic.com/images?q=tbn:abc", False),
        ("google", "data:image/jpeg;base64,AAAA", False),
        ("google", "https://www.google.com/imgres?x=1", False),
        ("google", "https://photos.example.org/a/face.jpg", True),
        ("bing", "https://tse1.mm.bing.net/th?id=OIP.x", False),
        ("bing", "https://photos.example.org/a/face.jpg", True),
        ("local", "http://127.0.0.1:8765/thumb/happy/a.png", False),
        ("local", "http://127.0.0.1:8765/image/happy/a.png", True),
    ],
)
def test_full_size_patterns_tell_originals_from_thumbnails(name: str, url: str, full: bool) -> None:
    assert get_engine(name).is_full_size(url) is full


def test_override_changes_only_the_listed_keys() -> None:
    engines = load_engines({"google": {"thumbnail": "div.tile-v2 img", "delay_s": 3}})
    google, original = engines["google"], builtin_engines()["google"]
    assert google.thumbnail == "div.tile-v2 img" and google.delay_s == 3.0
    assert google.full_image == original.full_image
    assert google.search_url_template == original.search_url_template


def test_a_new_engine_is_pure_configuration() -> None:
    engine = get_engine("myimages", {"myimages": MINIMAL})
    assert engine.name == "myimages" and engine.full_image == "img.big"
    assert engine.search_url(None, "a b") == "https://img.example/search?q=a+b"
    # `{base}` in the template makes the engine self-hosted.
    hosted = build_engine("hosted", {**MINIMAL, "search_url_template": "{base}/s?q={query}"})
    assert hosted.needs_base_url
    with pytest.raises(EngineError, match="needs a base URL"):
        hosted.search_url(None, "x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "thumbnial": "x"}, r"scrape\.engines\.e: unknown key\(s\) \['thumbnial'\]"),
        ({k: v for k, v in MINIMAL.items() if k != "thumbnail"}, r"missing required key\(s\) \['thumbnail'\]"),
        ({**MINIMAL, "thumbnail": ""}, r"scrape\.engines\.e\.thumbnail: must be a non-empty string"),
        ({**MINIMAL, "full_url_pattern": "(unclosed"}, r"scrape\.engines\.e\.full_url_pattern: not a valid regex"),
        ({**MINIMAL, "search_url_template": "https://x/?q=1"}, r"search_url_template: must contain \{query\}"),
        ({**MINIMAL, "search_url_template": "https://{host}/?q={query}"}, r"search_url_template: only \{base\} and \{query\}"),
        ({**MINIMAL, "delay_s": -1}, r"scrape\.engines\.e\.delay_s: must be a number of seconds"),
        ({**MINIMAL, "needs_base_url": "yes"}, r"needs_base_url: must be true or false"),
        ({**MINIMAL, "click": "mouse"}, r"scrape\.engines\.e\.click: must be one of \['native', 'script'\]"),
        ({**MINIMAL, "full_image": None}, r"set full_image .* or inline_url_attribute"),
        ({**MINIMAL, "inline_source_key": "purl"}, r"inline_source_key: needs inline_json_key"),
        ("div.x", r"scrape\.engines\.e: must be a mapping"),
    ],
)  # fmt: skip
def test_invalid_definitions_name_the_key(data: object, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        load_engines({"e": data})


def test_unknown_engine_lists_the_known_ones() -> None:
    with pytest.raises(
        EngineError, match=r"unknown search engine 'altavista'.*bing, google, local"
    ):
        get_engine("altavista")
    with pytest.raises(EngineError, match="engine names are lower-case"):
        load_engines({"My Engine": MINIMAL})


def _params(tmp_path: Path, scrape_yaml: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("labels: [happy, sad]\nscrape:\n" + scrape_yaml)
    return path


def test_params_validate_engine_overrides_with_the_key_path(tmp_path: Path) -> None:
    good = _params(
        tmp_path,
        "  engine: myimages\n  per_query: 5\n  max_per_run: 50\n  delay_s: 0.5\n"
        "  engines:\n    myimages:\n" + "".join(f"      {k}: '{v}'\n" for k, v in MINIMAL.items()),
    )
    params = load_params(good)
    assert params.scrape.engine == "myimages" and params.scrape.per_query == 5
    assert params.scrape.engines["myimages"]["thumbnail"] == "div.hit img"

    bad = _params(tmp_path, "  engines:\n    google:\n      thumbnial: 'img'\n")
    with pytest.raises(
        ParamsError, match=r"scrape\.engines\.google: unknown key\(s\) \['thumbnial'\]"
    ):
        load_params(bad)
    unknown = _params(tmp_path, "  engine: altavista\n")
    with pytest.raises(ParamsError, match=r"scrape\.engine: unknown search engine 'altavista'"):
        load_params(unknown)
    zero = _params(tmp_path, "  per_query: 0\n")
    with pytest.raises(ParamsError, match=r"scrape\.per_query"):
        load_params(zero)


def test_repository_params_are_valid() -> None:
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    assert get_engine(params.scrape.engine, params.scrape.engines).name == params.scrape.engine


def test_shares_split_a_label_evenly_and_respect_the_query_cap() -> None:
    assert _shares(8, 2, None) == [4, 4]
    assert _shares(7, 3, None) == [3, 2, 2]
    assert _shares(40, 2, 15) == [15, 15]
    assert sum(_shares(5, 8, None)) == 5


def test_throttle_spaces_calls_by_at_least_the_delay() -> None:
    throttle = Throttle(0.05)
    stamps = []
    for _ in range(4):
        throttle.pace()
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.045, gaps
    assert throttle.paced == 4 and throttle.slept_s > 0.1


def test_throttle_counts_time_already_spent_and_zero_never_sleeps() -> None:
    now = [100.0]
    slept: list[float] = []
    throttle = Throttle(1.0, clock=lambda: now[0], sleep=lambda s: slept.append(s))
    throttle.pace()
    now[0] += 0.4  # the page took 0.4 s on its own
    throttle.pace()
    assert slept == [pytest.approx(0.6)]
    now[0] += 2.0  # slower than the limit: no extra wait
    throttle.pace()
    assert len(slept) == 1

    free = Throttle(0, sleep=lambda s: pytest.fail("delay 0 must not sleep"))
    free.pace()
    free.pace()
    with pytest.raises(Exception, match="delay_s must be >= 0"):
        Throttle(-1)
