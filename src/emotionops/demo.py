"""`make demo`: the whole pipeline end to end on embedded defaults.

It starts what a production stack would run as services (the search stand-in, an MLflow
server with a SQLite store), runs every stage through the same functions the CLI and the
DAG use, and prints where to look afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from emotionops import pipeline
from emotionops.errors import EmotionOpsError
from emotionops.params import Params
from emotionops.settings import Settings
from emotionops.tracking import tracking_server

console = Console(stderr=True)


@dataclass
class DemoSummary:
    rows: list[tuple[str, str, float]] = field(default_factory=list)
    model_name: str = ""
    model_version: str = ""
    promoted: bool = False
    test_accuracy: float = 0.0
    dataset_version: str = ""
    run_id: str = ""
    tracking_uri: str = ""
    camera_id: str = ""

    def step(self, name: str, fn: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        console.rule(f"[bold]{name}")
        start = time.monotonic()
        result = fn()
        self.rows.append((name, describe(result), time.monotonic() - start))
        return result


@contextmanager
def _search_standin(root: Path, params: Params) -> Iterator[str]:
    from emotionops.acquire.scrape.standin import SearchStandin

    server = SearchStandin(root, page_size=params.standin.page_size)
    try:
        yield server.start()
    finally:
        server.stop()


def run_demo(
    settings: Settings,
    params: Params,
    run_date: str,
    images: Path | None = None,
    video: Path | None = None,
) -> DemoSummary:
    """Run scrape -> URLs -> download -> clean/split (DVC) -> warehouse -> train/register ->
    edge, and print a summary. Safe to run again: nothing is duplicated. Trains with
    params.yaml's short demo recipe (`demo.train`), sized for the few drawn faces."""
    from emotionops.acquire.scrape.synthetic import generate_labelled_set

    params = params.demo_params()
    paths = pipeline.DataPaths(settings.data_path)
    paths.root.mkdir(parents=True, exist_ok=True)
    if images is not None and not images.is_dir():
        raise EmotionOpsError(f"--images {images} is not a folder of <label>/ image folders")
    if video is not None and not video.is_file():
        raise EmotionOpsError(f"--video {video} does not exist")
    root = images or generate_labelled_set(
        paths.standin, params.labels, params.standin.images_per_label, params.standin.seed
    )
    # The stand-in runs on loopback, which the downloader refuses unless allowed explicitly.
    settings = settings.model_copy(
        update={"download_allow_hosts": [*settings.download_allow_hosts, "127.0.0.1"]}
    )
    s = DemoSummary(model_name=settings.model_name, camera_id=params.edge.camera_id)
    with (
        _search_standin(root, params) as search_url,
        tracking_server(settings.mlflow_tracking_uri, settings.mlflow_store) as tracking_uri,
    ):
        s.tracking_uri = tracking_uri
        s.step(
            "scrape",
            lambda: pipeline.stage_scrape(settings, params, run_date, search_url),
            lambda out: f"{len(pipeline.read_records(out))} URLs -> {out.name}",
        )
        s.step(
            "clean + load URLs",
            lambda: pipeline.stage_load_urls(settings, params, run_date),
            lambda r: f"{r[0]} kept, {r[1]} rejected",
        )
        s.step(
            "download",
            lambda: pipeline.stage_download(settings, params, run_date, progress=True),
            lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items())),
        )
        version, _ = s.step(
            "clean images + split (dvc repro, dvc push)",
            lambda: pipeline.stage_version_data(settings),
            lambda r: f"dataset version {r[0]}",
        )
        s.dataset_version = version
        s.step(
            "load images",
            lambda: pipeline.stage_load_images(settings, params, run_date),
            lambda r: f"{r['images']} image rows, {r['dataset_images']} faces in the dataset",
        )
        result, promotion = s.step(
            "train + register",
            lambda: pipeline.stage_train(settings, params, tracking_uri, run_date),
            lambda r: (
                f"test accuracy {r[0].test_accuracy:.3f}, v{r[1].version}"
                + (" -> champion" if r[1].promoted else " (not promoted)")
            ),
        )
        s.run_id, s.test_accuracy = result.run_id, result.test_accuracy
        s.model_version, s.promoted = str(promotion.version), promotion.promoted
        s.step(
            "edge",
            lambda: pipeline.stage_edge(
                settings, params, tracking_uri, str(video) if video else None, health_port=0
            ),
            lambda r: (
                f"model v{r.model_version}: {r.stats.tracks_seen} faces tracked, "
                f"{sum(w.count for w in r.windows)} counted in {len(r.windows)} window rows"
            ),
        )
        s.step(
            "dashboard report",
            lambda: pipeline.stage_report(settings, params, paths.report),
            lambda r: f"{len(r.pages)} pages, {r.thumbnails} thumbnails -> {paths.report.name}/",
        )
    print_summary(s, settings)
    return s


def print_summary(s: DemoSummary, settings: Settings) -> None:
    from emotionops.warehouse import connect, table_counts

    table = Table(title="EmotionOps demo")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for name, text, secs in s.rows:
        table.add_row(name, text, f"{secs:.1f}")
    console.print(table)
    counts = table_counts(connect(settings.resolved_warehouse_url()))
    console.print("warehouse rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    console.print(
        f"model {s.model_name} v{s.model_version} "
        f"({'alias champion' if s.promoted else 'champion unchanged'}), "
        f"test accuracy {s.test_accuracy:.3f}, dataset {s.dataset_version}"
    )
    console.print(f"warehouse: {settings.resolved_warehouse_url()}")
    console.print(
        f"MLflow: `make mlflow-ui` then open http://127.0.0.1:5000 (store {settings.mlflow_store})"
    )
    model_dir = Path(settings.data_path) / "edge-cache" / s.model_name / f"v{s.model_version}"
    console.print(
        f"API and pages: `EMOTIONOPS_API_MODEL_DIR={model_dir} make api PORT=8000`, then open "
        f"http://127.0.0.1:8000/ (upload a photo) and http://127.0.0.1:8000/cameras/"
        f"{s.camera_id} (the demo camera's counts), http://127.0.0.1:8000/dashboard (the "
        "dashboard)"
    )
    report = Path(settings.data_path) / "report" / "index.html"
    console.print(f"dashboard report (static, opens offline): {report}")
