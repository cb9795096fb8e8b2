"""Property-based: whatever bytes or text a user or a web page hands in, the readers either
accept it or raise the one error type that becomes a clear line (never anything else)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emotionops.acquire.guard import AllowList, DownloadRefused, check_url, parse_allow_entry
from emotionops.acquire.urls import UrlPolicy, clean_manifest
from emotionops.dataset.importers import DatasetImportError, decode_gray, scan_fer_csv
from emotionops.files import RecordsError, read_records
from emotionops.params import ParamsError, load_params

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
#: Pieces hostile URLs are made of: schemes, credentials, odd hosts and ports, escapes,
#: control and bidi characters, IDNA labels, overlong parts.
URL_PIECES = st.sampled_from([
    "http://", "https://", "ftp://", "file:///", "gopher://", "javascript:", "//", "http:",
    "[", "]", "::1", "[::ffff:127.0.0.1]", "@", "user:pw@", ":", ":99999", ":-1", ":0", ":80",
    "%", "%zz", "%00", "xn--", "xn--zz", "..", ".", "/", "?", "#", "\x00", "\u202e", "\t",
    " ", "ü", "例え", "a" * 70, "127.0.0.1", "0x7f.1", "169.254.169.254", "localhost",
])  # fmt: skip
URLS = st.lists(st.one_of(URL_PIECES, st.text(max_size=6)), max_size=10).map("".join)
POLICY = UrlPolicy.from_params(None)


@SETTINGS
@given(URLS)
def test_url_cleanup_gives_a_verdict_for_any_text_and_kept_urls_are_fetchable(url: str) -> None:
    verdict = POLICY.check(url)
    if not verdict.ok:
        assert verdict.reason and verdict.rule
        return
    assert httpx.URL(verdict.url).host  # the downloader's client accepts what cleanup keeps
    try:
        check_url(verdict.url, AllowList(["localhost:8080"]))
    except DownloadRefused as exc:
        assert str(exc)
    kept, rejected = clean_manifest([{"image_url": url, "label": "happy"}] * 2, POLICY)
    assert len(kept) == 1 and rejected[0]["rule"] == "duplicate"


@SETTINGS
@given(st.text(max_size=40))
def test_an_allow_list_entry_parses_or_is_refused_by_name(entry: str) -> None:
    try:
        host, port = parse_allow_entry(entry)
    except ValueError as exc:
        assert repr(entry) in str(exc)
        return
    assert host and (port is None or 0 < port < 65536)
    assert AllowList([entry]).allows(host, port or 1234)


@SETTINGS
@given(st.binary(max_size=400))
def test_a_csv_table_reads_or_names_its_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "records.csv"
    path.write_bytes(data)
    try:
        rows = read_records(path, ["url"])
    except RecordsError as exc:
        assert str(path) in str(exc)
        return
    assert all("url" in row for row in rows)


@SETTINGS
@given(
    st.binary(max_size=400), st.sampled_from([b"", b"emotion,pixels,Usage\n", b"emotion,pixels\n"])
)
def test_a_fer_csv_imports_or_names_its_file(tmp_path: Path, body: bytes, header: bytes) -> None:
    path = tmp_path / "fer.csv"
    path.write_bytes(header + body)
    try:
        items = scan_fer_csv(path)
    except DatasetImportError as exc:
        assert "fer.csv" in str(exc)
        return
    assert items  # a CSV that reads holds at least one valid face


@SETTINGS
@given(st.binary(max_size=300))
def test_image_bytes_decode_or_name_the_file(data: bytes) -> None:
    try:
        gray, _ = decode_gray(data, "upload.png", 40_000_000)
    except DatasetImportError as exc:
        assert str(exc).startswith("upload.png: ")
        return
    assert gray.ndim == 2


@SETTINGS
@given(st.text(max_size=200))
def test_params_text_loads_or_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates: not UTF-8
    try:
        load_params(path)
    except ParamsError as exc:
        assert str(path) in str(exc)


@pytest.mark.parametrize(
    "yaml_text", ["train: {epochs: [1, 2]}", "labels: !!python/object:os.system ls", "&a [*a]"]
)
def test_hostile_yaml_is_refused_not_executed(tmp_path: Path, yaml_text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ParamsError, match=str(path)):
        load_params(path)
