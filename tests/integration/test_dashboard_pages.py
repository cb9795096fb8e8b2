"""The dashboard in a real headless Chromium, live (uvicorn serving `app_from_env`, as `make
api` does) and as the static bundle of `emotionops report build` opened from disk with the
network off. Charts are checked by what Plotly drew (series and points per chart) on the
seeded warehouse of tests/_dashboard_seed.py; each page leaves a screenshot in
test-output/screenshots/."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

import emotionops
from _browser import chromium, console_errors, screenshot
from _dashboard_seed import (
    CAMERAS,
    DOWNLOADED,
    EPOCHS,
    LABELS,
    RUN_DATES,
    RUNS,
    T0,
    WINDOWS_PER_DAY,
    expected_faces,
    face_count,
    seed_dashboard,
)
from emotionops.notice import LAWFUL_USE
from emotionops.tracking import free_port

pytestmark = pytest.mark.integration
NOTICE_START = LAWFUL_USE.split(".")[0]


@dataclass
class Site:
    url: str
    root: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("dashboard-site")
    warehouse_url = f"sqlite:///{root / 'warehouse.db'}"
    seed_dashboard(warehouse_url, root / "data")
    params = root / "params.yaml"
    params.write_text("edge: {detection: {detector: haar}}\n")  # no BlazeFace files needed
    package_root = str(Path(emotionops.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
        "EMOTIONOPS_DATA_DIR": str(root / "data"),
        "EMOTIONOPS_PARAMS_FILE": str(params),
        "EMOTIONOPS_WAREHOUSE_URL": warehouse_url,
    }
    for key in ("EMOTIONOPS_MLFLOW_TRACKING_URI", "EMOTIONOPS_API_MODEL_DIR"):
        env.pop(key, None)
    port = free_port()
    log = root / "uvicorn.log"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "emotionops.api.app:app_from_env"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/dashboard/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the dashboard did not answer:\n{log.read_text()}")
            time.sleep(0.1)  # polling interval while the server starts
        yield Site(url, root, env)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[object]:
    with chromium(downloads) as driver:
        yield driver


def drawn(driver, chart: str) -> list[int]:
    """Points per series Plotly drew in #chart (cells for a heatmap); waits for the draw."""
    script = """
      const el = document.getElementById(arguments[0]);
      if (!el || !el.data || !el.querySelector('.main-svg')) return null;
      return el.data.map(t => t.type === 'heatmap' ? t.z.flat().length : t.x.length);
    """
    WebDriverWait(driver, 20, poll_frequency=0.05).until(
        lambda d: d.execute_script(script, chart) is not None
    )
    return driver.execute_script(script, chart)


def trace_values(driver, chart: str, axis: str = "y") -> list[list]:
    return driver.execute_script(
        f"return document.getElementById(arguments[0]).data.map(t => Array.from(t.{axis}))",
        chart,
    )


def open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 20, poll_frequency=0.05).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    assert NOTICE_START in driver.find_element(By.ID, "lawful-use").text


def table_rows(driver, table_id: str) -> list[list[str]]:
    """The table's body cells, read in one script (the page may redraw it meanwhile)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]"
        ".map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent))",
        table_id,
    )


def totals(driver) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in table_rows(driver, "totals-table")}


# Models ---------------------------------------------------------------------------------
def check_models_page(driver) -> None:
    assert drawn(driver, "chart-runs") == [3, 3, 3]  # train acc, test acc, macro-F1 x 3 runs
    assert drawn(driver, "chart-confusion-a") == [16]
    # Run A is the newest run, run B the champion (the newest is not the champion).
    assert drawn(driver, "chart-curves-a") == [EPOCHS[RUNS[2]]] * 4
    assert drawn(driver, "chart-curves-b") == [EPOCHS[RUNS[1]]] * 4
    assert drawn(driver, "chart-classes") == [len(LABELS)] * 6
    champion = driver.find_element(By.ID, "champion").text
    assert "version 2 holds @champion" in champion
    assert len(table_rows(driver, "promotions-table")) == 3
    compare = driver.find_element(By.ID, "compare-table").text
    assert RUNS[2] in compare and RUNS[1] in compare
    # Choosing another run B redraws its curves and the comparison.
    Select(driver.find_element(By.ID, "run-b")).select_by_value(RUNS[0])
    WebDriverWait(driver, 10, poll_frequency=0.05).until(
        lambda d: drawn(d, "chart-curves-b") == [EPOCHS[RUNS[0]]] * 4
    )
    assert RUNS[0] in driver.find_element(By.ID, "compare-table").text
    assert RUNS[1] not in driver.find_element(By.ID, "compare-table").text


def test_models_page(site: Site, browser) -> None:
    open_page(browser, site.url + "/dashboard/models")
    check_models_page(browser)
    assert console_errors(browser) == []
    screenshot(browser, "dashboard-models")


# Data quality -------------------------------------------------------------------------
def check_quality_page(driver) -> None:
    assert drawn(driver, "chart-runs-quality") == [len(RUN_DATES)] * 5
    kept = trace_values(driver, "chart-runs-quality")[0]
    assert kept == [DOWNLOADED[d] - (2 if d == RUN_DATES[0] else 1) for d in RUN_DATES]
    reasons_newest = drawn(driver, "chart-reasons")
    Select(driver.find_element(By.ID, "reasons-run")).select_by_value(RUN_DATES[0])
    WebDriverWait(driver, 10, poll_frequency=0.05).until(
        lambda d: drawn(d, "chart-reasons") != reasons_newest
    )
    assert "image: no face found" in trace_values(driver, "chart-reasons", "y")[0]
    failed = driver.find_elements(By.CSS_SELECTOR, "#validation-table tr.failed")
    assert len(failed) == 1 and "FAILED" in failed[0].text
    # Every thumbnail decoded (lazy images: scroll them into view first).
    driver.execute_script("document.getElementById('samples').scrollIntoView()")
    WebDriverWait(driver, 20, poll_frequency=0.1).until(
        lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('.thumbs img')];"
            "imgs.forEach(i => i.loading = 'eager');"
            "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);"
        )
    )


def test_quality_page(site: Site, browser) -> None:
    open_page(browser, site.url + "/dashboard/quality")
    check_quality_page(browser)
    link = browser.find_element(By.CSS_SELECTOR, "#validation-table a.docs-link")
    href = link.get_attribute("href")
    assert href.startswith(site.url + "/dashboard/data-docs/validations/")
    # The app serves the Data Docs site itself, so the links work on an offline network.
    docs_site = site.root / "data" / "gx" / "uncommitted" / "data_docs" / "local_site"
    page = docs_site / href.split("/dashboard/data-docs/", 1)[1]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<html><body>validation result</body></html>")
    assert "validation result" in httpx.get(href, timeout=5).text
    assert console_errors(browser) == []
    screenshot(browser, "dashboard-quality")


# Emotion analytics ----------------------------------------------------------------------
def day_faces(day: int, camera: str | None = None) -> int:
    return sum(
        face_count(c, day, s, label)
        for c in CAMERAS
        if camera is None or c == camera
        for s in range(WINDOWS_PER_DAY)
        for label in LABELS
    )


def set_date(driver, element_id: str, value: str) -> None:
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('change'));",
        element_id,
        value,
    )


def wait_total(driver, expected: int) -> None:
    WebDriverWait(driver, 10, poll_frequency=0.05).until(lambda d: totals(d).get("all") == expected)


def check_analytics_filters(driver) -> None:
    wait_total(driver, expected_faces())
    for label in LABELS:
        assert totals(driver)[label] == expected_faces(label=label)
    Select(driver.find_element(By.ID, "f-camera")).select_by_value("lobby")
    wait_total(driver, expected_faces("lobby"))
    day1 = (T0.replace(day=T0.day + 1)).date().isoformat()
    set_date(driver, "f-start", day1)
    set_date(driver, "f-end", day1)
    wait_total(driver, day_faces(1, "lobby"))


def test_analytics_page(site: Site, browser, downloads: Path) -> None:
    open_page(browser, site.url + "/dashboard/analytics")
    # Default view: hour buckets, all cameras, the last days of data (all three seeded).
    points = 3 * WINDOWS_PER_DAY
    assert drawn(browser, "chart-timeline") == [points] * len(LABELS)
    assert drawn(browser, "chart-shares") == [len(LABELS)]
    assert drawn(browser, "chart-cameras") == [len(CAMERAS)] * len(LABELS)
    assert drawn(browser, "chart-tracks") == [points]
    check_analytics_filters(browser)
    Select(browser.find_element(By.ID, "f-bucket")).select_by_value("day")
    WebDriverWait(browser, 10, poll_frequency=0.05).until(
        lambda d: drawn(d, "chart-timeline") == [1] * len(LABELS)
    )
    # CSV of what is shown: one camera, one day.
    for old in downloads.glob("*.csv"):
        old.unlink()
    browser.find_element(By.ID, "csv-download").click()
    target = downloads / "emotion-analytics.csv"
    WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda d: target.is_file())
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert {r["camera_id"] for r in rows} == {"lobby"}
    assert sum(int(r["faces"]) for r in rows) == day_faces(1, "lobby")
    assert console_errors(browser) == []
    screenshot(browser, "dashboard-analytics")


def test_analytics_filter_errors_are_shown(site: Site, browser) -> None:
    open_page(browser, site.url + "/dashboard/analytics")
    set_date(browser, "f-start", "2026-11-30")
    set_date(browser, "f-end", "2026-11-20")
    message = browser.find_element(By.ID, "analytics-message")
    WebDriverWait(browser, 10, poll_frequency=0.05).until(lambda d: message.text)
    assert "range is empty" in message.text
    console_errors(browser)  # the 422 is logged by the browser as a failed resource


# The static bundle ----------------------------------------------------------------------
def test_static_bundle_opens_from_disk_offline(site: Site, browser, tmp_path: Path) -> None:
    out = tmp_path / "report"
    cli = Path(sys.executable).parent / "emotionops"
    done = subprocess.run(
        [str(cli), "report", "build", "--out", str(out)],
        env=site.env,
        cwd=site.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "4 pages" in done.stderr  # the CLI's console is stderr
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    try:
        for page, check in (
            ("models", check_models_page),
            ("quality", check_quality_page),
            ("analytics", check_analytics_filters),
        ):
            open_page(browser, (out / f"{page}.html").as_uri())
            check(browser)
            # Every script, style sheet, image and link resolves to a file of the bundle.
            refs = browser.execute_script(
                "return [...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href)"
            )
            inside = [u for u in refs if u != "data:,"]  # the empty favicon
            assert inside and all(u.startswith(out.as_uri() + "/") for u in inside), refs
            assert console_errors(browser) == []
            screenshot(browser, f"report-{page}")
    finally:
        browser.execute_cdp_cmd("Network.disable", {})
