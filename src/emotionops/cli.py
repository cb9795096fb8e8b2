"""`emotionops`: one command per pipeline stage, used by people, `dvc repro` and Airflow.

Every command reads endpoints from the environment (EMOTIONOPS_*; see .env.example) and
knobs from params.yaml. Errors a user can cause print one clear line and exit with code 2.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from emotionops.errors import EmotionOpsError

app = typer.Typer(
    help="EmotionOps: scrape, clean, version, train, promote and ship a facial-emotion classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
warehouse_app = typer.Typer(
    help="Create the warehouse schema, load batches, report.", no_args_is_help=True
)
standin_app = typer.Typer(
    help="The local image-search stand-in (for the demo and tests).", no_args_is_help=True
)
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(standin_app, name="standin")

console = Console(stderr=True)

RunDate = Annotated[
    str | None,
    typer.Option(
        help="Logical date of the run (YYYY-MM-DD), partitions outputs. Default: today (UTC)."
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI. Default: EMOTIONOPS_MLFLOW_TRACKING_URI."),
]


def _context(run_date: str | None = None):
    from emotionops.params import load_params
    from emotionops.pipeline import today
    from emotionops.settings import get_settings

    settings = get_settings()
    params = load_params(settings.params_path)
    if run_date is not None:
        try:
            datetime.strptime(run_date, "%Y-%m-%d")
        except ValueError as exc:
            raise EmotionOpsError(f"--run-date must be YYYY-MM-DD, got {run_date!r}") from exc
    return settings, params, run_date or today()


def _tracking_uri(settings, override: str | None) -> str:
    uri = override or settings.mlflow_tracking_uri
    if not uri:
        raise EmotionOpsError(
            "no MLflow tracking URI: set EMOTIONOPS_MLFLOW_TRACKING_URI or pass --tracking-uri "
            "(`make mlflow-ui` serves the demo's local store)"
        )
    return uri


# Stand-in ---------------------------------------------------------------------------------


@standin_app.command("serve")
def standin_serve(
    root: Annotated[
        Path | None,
        typer.Option(help="Folder of <label>/ image folders to serve. Default: a generated set."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).")] = 8765,
) -> None:
    """Serve a labelled image folder behind a search page (consent overlay, infinite scroll,
    side panel) so the Selenium scraper can be run and tested offline."""
    from emotionops.pipeline import DataPaths
    from emotionops.scrape.standin import SearchStandin
    from emotionops.scrape.synthetic import generate_labelled_set

    settings, params, _ = _context()
    if root is None:
        root = generate_labelled_set(
            DataPaths(settings.data_path).standin,
            params.labels,
            params.standin.images_per_label,
            params.standin.seed,
        )
    server = SearchStandin(root, host=host, port=port, page_size=params.standin.page_size)
    server.serve_forever(
        on_ready=lambda url: console.print(
            f"search stand-in serving {root} at {url} (Ctrl-C to stop)"
        )
    )


# Stages -----------------------------------------------------------------------------------


@app.command()
def scrape(
    run_date: RunDate = None,
    search_url: Annotated[
        str | None,
        typer.Option(help="Base URL of the search engine. Default: EMOTIONOPS_SEARCH_URL."),
    ] = None,
) -> None:
    """Scrape full-size face image URLs per label (Selenium, headless Chromium) into the run's manifest."""
    from emotionops.pipeline import stage_scrape

    settings, params, run_date = _context(run_date)
    url = search_url or settings.search_url
    if not url:
        raise EmotionOpsError("no search URL: pass --search-url or set EMOTIONOPS_SEARCH_URL")
    out = stage_scrape(settings, params, run_date, url)
    console.print(f"manifest: {out}")


@app.command()
def download(run_date: RunDate = None) -> None:
    """Download the run's URLs concurrently and safely into content-addressed files."""
    from emotionops.pipeline import stage_download

    settings, params, run_date = _context(run_date)
    counts = stage_download(settings, params, run_date, progress=sys.stderr.isatty())
    console.print(f"download outcomes: {dict(counts)}")


@app.command()
def clean() -> None:
    """Check every downloaded image (decode, size, exactly one face) and write face crops."""
    from emotionops.pipeline import stage_clean

    settings, params, _ = _context()
    console.print(f"images: {dict(stage_clean(settings, params))}")


@app.command()
def split() -> None:
    """Write the deterministic train/val/test split file (by content hash)."""
    from emotionops.pipeline import stage_split

    settings, params, _ = _context()
    console.print(f"dataset version: {stage_split(settings, params)}")


@app.command("version-data")
def version_data() -> None:
    """Run the DVC stages (clean, split) that changed and push the data to the DVC remote."""
    from emotionops.pipeline import stage_version_data

    settings, _, _ = _context()
    version, report = stage_version_data(settings)
    console.print(report.strip())
    console.print(f"dataset version: {version}")


@app.command()
def train(run_date: RunDate = None, tracking_uri: TrackingUri = None) -> None:
    """Train on the current split, log everything to MLflow, register, and promote when better."""
    from emotionops.pipeline import stage_train

    settings, params, run_date = _context(run_date)
    result, promotion = stage_train(
        settings, params, _tracking_uri(settings, tracking_uri), run_date
    )
    console.print(
        f"run {result.run_id}: test accuracy {result.test_accuracy:.3f}; "
        f"{settings.model_name} v{promotion.version} "
        + ("is the new champion" if promotion.promoted else f"not promoted ({promotion.reason})")
    )


@app.command()
def edge(
    source: Annotated[
        str | None,
        typer.Option(
            help="Webcam index ('0'), rtsp:// URL or video file. Default: a generated demo video."
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
) -> None:
    """Pull the champion model, classify faces in a stream, and store aggregate counts only."""
    from emotionops.pipeline import stage_edge

    settings, params, _ = _context()
    windows, version, used = stage_edge(
        settings, params, _tracking_uri(settings, tracking_uri), source, max_frames=max_frames
    )
    console.print(f"model v{version} on {used}: {len(windows)} aggregate rows written")


# Warehouse --------------------------------------------------------------------------------


@warehouse_app.command("init")
def warehouse_init() -> None:
    """Create missing warehouse tables (idempotent)."""
    from emotionops.warehouse import connect, init_schema

    settings, _, _ = _context()
    created = init_schema(connect(settings.resolved_warehouse_url()))
    console.print(f"created: {created or 'nothing (all tables exist)'}")


@warehouse_app.command("load-urls")
def warehouse_load_urls(run_date: RunDate = None) -> None:
    """Clean the run's URL manifest and upsert it into image_url."""
    from emotionops.pipeline import stage_load_urls

    settings, params, run_date = _context(run_date)
    kept, rejected = stage_load_urls(settings, params, run_date)
    console.print(f"urls loaded: {kept}, rejected: {rejected}")


@warehouse_app.command("load-images")
def warehouse_load_images(run_date: RunDate = None) -> None:
    """Upsert image metadata and the current dataset version."""
    from emotionops.pipeline import stage_load_images

    settings, params, run_date = _context(run_date)
    console.print(f"loaded: {stage_load_images(settings, params, run_date)}")


@warehouse_app.command("report")
def warehouse_report() -> None:
    """Row counts per table."""
    from emotionops.warehouse import connect, table_counts

    settings, _, _ = _context()
    for table, count in table_counts(connect(settings.resolved_warehouse_url())).items():
        console.print(f"{table:16s} {count}")


# Demo and tools ---------------------------------------------------------------------------


@app.command()
def demo(
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of <label>/ images for the search stand-in (e.g. ../shared/data/fer2013/train). Default: a generated set."
        ),
    ] = None,
    video: Annotated[
        Path | None, typer.Option(help="Video for the edge step. Default: generated.")
    ] = None,
    run_date: RunDate = None,
) -> None:
    """Run the whole pipeline end to end on embedded defaults and print a summary."""
    from emotionops.demo import run_demo

    settings, params, run_date = _context(run_date)
    run_demo(settings, params, run_date, images=images, video=video)


@app.command("mlflow-server")
def mlflow_server(
    port: Annotated[int, typer.Option(help="Port for the UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Serve the embedded MLflow store (the demo's runs and registered models) in the MLflow UI."""
    import os

    from emotionops.mlflow_server import MlflowServerError, port_in_use, server_command

    settings, _, _ = _context()
    store = settings.mlflow_store
    if not (store / "mlflow.db").is_file():
        raise EmotionOpsError(f"no MLflow store at {store}: run `make demo` first")
    if port_in_use(host, port):
        raise MlflowServerError(f"port {port} is in use: pass --port (make mlflow-ui PORT=...)")
    console.print(f"MLflow UI at http://{host}:{port} (Ctrl-C to stop)")
    cmd = server_command(store, host, port)
    os.execve(cmd[0], cmd, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def main() -> None:
    import os

    # A registry that dies mid-call must not stall a stage for minutes in MLflow's retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # TensorFlow's C++ INFO/WARNING lines drown the pipeline's own output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        app()
    except EmotionOpsError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
