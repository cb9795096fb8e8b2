"""The dashboard's Models and Data quality data, thumbnails, pages and static bundle, on a
seeded SQLite warehouse (PostgreSQL: tests/integration/test_dashboard_backends.py; the
browser: tests/integration/test_dashboard_pages.py)."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image
from sqlalchemy.dialects import oracle

from _dashboard_seed import (
    CHAMPION_VERSION,
    DOWNLOAD_FAILED,
    DOWNLOAD_REFUSED,
    DOWNLOADED,
    DUPLICATES,
    EPOCHS,
    IMAGE_REJECTED,
    LABELS,
    RUN_DATES,
    RUNS,
    URL_REJECTED,
    seed_dashboard,
)
from emotionops.dashboard.bundle import MARKER, BundleError, build_bundle
from emotionops.dashboard.models import models_data, models_queries
from emotionops.dashboard.pages import PAGES, Links, json_block, render_page
from emotionops.dashboard.quality import (
    ThumbnailError,
    make_thumbnail,
    quality_data,
    quality_queries,
    thumbnail_source,
)
from emotionops.notice import LAWFUL_USE
from emotionops.params import Params
from emotionops.warehouse import WarehouseError, connect, load_table
from emotionops.warehouse.schema import image

NOTICE_START = LAWFUL_USE.split(".")[0]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{root / 'warehouse.db'}"
    kept = seed_dashboard(url, root / "data")
    engine = connect(url)
    yield engine, root / "data", kept
    engine.dispose()


def test_models_data_has_every_run_with_its_reports(seeded) -> None:
    engine, _, _ = seeded
    data = models_data(engine)
    runs = {r["run_id"]: r for r in data["runs"]}
    assert list(runs) == list(reversed(RUNS))  # newest first
    assert data["champions"] == {"emotion-classifier": CHAMPION_VERSION}
    assert [r["champion"] for r in data["runs"]] == [False, True, False]
    for run_id, run in runs.items():
        assert run["labels"] == LABELS
        assert len(run["curves"]["train_accuracy"]) == EPOCHS[run_id]
        assert [c["label"] for c in run["classes"]] == LABELS
        assert len(run["confusion"]) == 4 and all(len(row) == 4 for row in run["confusion"])
    b = runs[RUNS[1]]
    assert b["confusion"][0] == [71, 20, 20, 20]  # true happy: diagonal 70 + run index
    assert b["key_params"] == {"model": "vgg", "batch_size": 64, "learning_rate": 0.001}
    assert b["duration_s"] == 1200.0 and b["test_loss"] == pytest.approx(0.65)
    assert runs[RUNS[2]]["model_version"] is None
    decisions = [(p["model_version"], p["alias"], p["decision"]) for p in data["promotions"]]
    assert decisions == [
        ("2", "champion", "promoted"),
        ("2", "challenger", "registered"),
        ("1", "champion", "promoted"),
    ]
    assert "beats" in data["promotions"][0]["reason"]
    json.dumps(data, allow_nan=False)  # JSON-ready


def test_models_data_caps_the_runs(seeded) -> None:
    engine, _, _ = seeded
    data = models_data(engine, max_runs=2)
    assert [r["run_id"] for r in data["runs"]] == [RUNS[2], RUNS[1]]
    assert data["truncated"] is True


def test_quality_data_counts_each_run(seeded) -> None:
    engine, _, kept = seeded
    data = quality_data(engine, samples_per_group=2)
    runs = {r["run_date"]: r for r in data["runs"]}
    assert list(runs) == list(reversed(RUN_DATES))
    for d in RUN_DATES:
        run = runs[d]
        scraped = URL_REJECTED[d] + DOWNLOADED[d] + DOWNLOAD_REFUSED[d] + DOWNLOAD_FAILED[d]
        assert run["scraped"] == scraped + DUPLICATES
        assert run["url_rejected"] == URL_REJECTED[d] + DUPLICATES
        assert run["downloaded"] == DOWNLOADED[d]
        assert run["download_refused"] == DOWNLOAD_REFUSED[d]
        assert run["download_failed"] == DOWNLOAD_FAILED[d]
        assert run["image_rejected"] == IMAGE_REJECTED[d]
        assert run["kept"] == DOWNLOADED[d] - IMAGE_REJECTED[d]
        assert run["reasons"]["image: no face found"] == IMAGE_REJECTED[d]
    assert runs[RUN_DATES[0]]["reasons"]["url: duplicate"] == 1 + DUPLICATES
    assert runs[RUN_DATES[0]]["reasons"]["url: denylist"] == 2
    assert runs[RUN_DATES[0]]["reasons"]["download: not an image"] == 2
    failed = [v for v in data["validations"] if not v["success"]]
    assert [(v["run_date"], v["suite"]) for v in failed] == [(RUN_DATES[0], "images")]
    samples = data["samples"]
    for label, shas in kept.items():
        assert len(samples[f"kept: {label}"]) == min(2, len(shas))
    assert len(samples["rejected: no face found"]) == 2


def test_thumbnails_come_from_training_images_inside_the_data_folder(seeded, tmp_path) -> None:
    engine, data_root, kept = seeded
    path = thumbnail_source(engine, data_root, kept["happy"][0])
    assert path.is_relative_to(data_root.resolve() / "faces")
    body = make_thumbnail(path, 32, 10_000_000)
    from io import BytesIO

    assert Image.open(BytesIO(body)).size == (32, 32)
    with pytest.raises(ThumbnailError, match="not a sha256"):
        thumbnail_source(engine, data_root, "../../etc/passwd")
    with pytest.raises(ThumbnailError, match="no training image"):
        thumbnail_source(engine, data_root, "0" * 64)
    # A warehouse row whose path points out of the data folder is refused.
    hostile = "f" * 64
    load_table(
        engine,
        image,
        [{"sha256": hostile, "label": "happy", "status": "accepted",
          "face_path": "../../../etc/hostname"}],
    )  # fmt: skip
    try:
        with pytest.raises(ThumbnailError, match="leaves the data folder"):
            thumbnail_source(engine, data_root, hostile)
    finally:
        with engine.begin() as conn:  # the module's other tests read this warehouse
            conn.execute(image.delete().where(image.c.sha256 == hostile))
    # A decompression bomb is refused from its header, before decoding.
    bomb = tmp_path / "bomb.png"
    Image.new("L", (5000, 5000)).save(bomb)
    with pytest.raises(ThumbnailError, match="pixel limit"):
        make_thumbnail(bomb, 32, 1_000_000)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(ThumbnailError, match="not a readable image"):
        make_thumbnail(junk, 32, 1_000_000)


def test_queries_compile_for_oracle() -> None:
    dialect = oracle.dialect()
    queries = {**models_queries(["r1", "r2"]), **quality_queries(12)}
    sql = {name: str(q.compile(dialect=dialect)) for name, q in queries.items()}
    for name, text in sql.items():
        assert " LIMIT " not in text and '"' not in text, (name, text)  # no quoted identifier
    assert "FETCH FIRST" in sql["runs"] and "FETCH FIRST" in sql["rejected_samples"]
    assert "row_number() OVER (PARTITION BY image.label" in sql["accepted_samples"]
    with pytest.raises(ValueError, match="1000"):
        models_queries([str(i) for i in range(1001)])


def test_json_block_cannot_close_its_script_tag() -> None:
    text = str(json_block({"reason": "</script><script>alert(1)</script> & more"}))
    assert "</script" not in text and "<" not in text
    assert json.loads(text)["reason"].startswith("</script>")


def test_pages_carry_the_notice_and_empty_states_name_the_command(tmp_path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'empty.db'}")
    from emotionops.dashboard.pages import page_data
    from emotionops.warehouse import init_schema

    init_schema(engine)
    params = Params()
    commands = {
        "models": "emotionops warehouse load-run",
        "quality": "emotionops download",
        "analytics": "emotionops edge run",
    }
    for name in PAGES:
        html = render_page(name, page_data(name, engine, params), Links(False), "now")
        assert LAWFUL_USE.split(".")[0] in html
        assert 'id="empty-state"' in html
        assert commands[name] in html


def test_an_old_warehouse_gets_the_init_hint(tmp_path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'old.db'}")
    with pytest.raises(WarehouseError, match="warehouse init"):
        models_data(engine)


def test_bundle_is_self_contained(seeded, tmp_path) -> None:
    engine, data_root, _ = seeded
    docs = tmp_path / "site"
    (docs / "validations" / "urls").mkdir(parents=True)
    (docs / "index.html").write_text("<html>docs</html>")
    (docs / "validations" / "urls" / f"{RUN_DATES[0]}.html").write_text("<html>result</html>")
    out = tmp_path / "report"
    report = build_bundle(engine, Params(), data_root, out, docs)
    assert sorted(report.pages) == sorted(["index.html", *(f"{p}.html" for p in PAGES)])
    assert report.data_docs and (out / "data-docs" / "index.html").is_file()
    assert report.thumbnails > 0 and report.thumbnails_missing == []
    for page in report.pages:
        html = (out / page).read_text()
        assert LAWFUL_USE.split(".")[0] in html
        # Every src/href is relative and resolves inside the bundle: nothing is fetched.
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            if ref.startswith("data:"):
                continue
            assert "://" not in ref and not ref.startswith("/"), (page, ref)
            assert (out / ref.split("#")[0]).exists(), (page, ref)
    # Results link to their Data Docs page when the copy has it (only one page was made).
    quality = (out / "quality.html").read_text()
    assert quality.count('class="docs-link"') == 1
    assert f'href="data-docs/validations/urls/{RUN_DATES[0]}.html"' in quality
    # Rebuilding in place works; a folder holding someone else's files is refused.
    build_bundle(engine, Params(), data_root, out, docs)
    assert (out / MARKER).is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not empty"):
        build_bundle(engine, Params(), data_root, foreign, docs)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_dashboard_routes_say_when_the_warehouse_is_down(tmp_path) -> None:
    """A warehouse that cannot be read gives a 503 page with the reason and the notice."""
    from fastapi.testclient import TestClient

    from emotionops.api.app import create_app
    from emotionops.api.models import NoModelSource
    from emotionops.settings import Settings

    settings = Settings(
        project_dir=tmp_path, warehouse_url="postgresql+psycopg://u:p@127.0.0.1:9/x"
    )
    app = create_app(settings, Params(), NoModelSource("m"), detector=object())
    with TestClient(app) as client:
        for name in PAGES:
            answer = client.get(f"/dashboard/{name}")
            assert answer.status_code == 503, name
            assert "cannot be read" in answer.text and NOTICE_START in answer.text
            assert answer.headers["content-security-policy"].startswith("default-src 'self'")
        assert client.get("/dashboard/nope").status_code == 404
        assert client.get("/dashboard/assets/../../settings.py").status_code == 404
        plotly_js = client.get("/dashboard/assets/plotly.min.js")
        assert plotly_js.status_code == 200 and b"plotly.js v" in plotly_js.content[:600]
        api = client.get("/api/dashboard/analytics", params={"start": "yesterday"})
        assert api.status_code == 422 and "2026-12-03" in api.json()["detail"]
