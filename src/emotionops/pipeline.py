"""The pipeline's stages over the project's data folder: one function per stage.

The CLI, `dvc repro`, the Airflow DAG (through the CLI) and `make demo` all call these, so
there is one code path. Each stage reads and writes files under `settings.data_path`,
partitioned by the run date where the outside world is involved (scrape, download), and is
safe to re-run: outputs are content-addressed or rewritten atomically, loads are upserts.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from emotionops.dataset.split import SPLIT_COLUMNS
from emotionops.errors import EmotionOpsError
from emotionops.files import read_records, write_records
from emotionops.params import Params
from emotionops.paths import DataPaths
from emotionops.settings import Settings

log = logging.getLogger(__name__)


def today() -> str:
    """The run date used when none is given (CLI entry points only, never inside a stage)."""
    return datetime.now(UTC).date().isoformat()


def _warehouse(settings: Settings):
    from emotionops.warehouse import open_warehouse

    return open_warehouse(settings)  # connected (bounded) and migrated to the latest schema


def require_recorded(settings: Settings, reports: list, run_date: str, what: str):
    """`validation.require`, with every suite's result recorded in the warehouse first
    (validation_result, its own transaction) for the dashboard; returns the engine.

    A failed suite still raises ValidationFailed. When the warehouse cannot take the
    record, that is logged and noted on the ValidationFailed, never raised in its place:
    the failed data is the error to fix first."""
    from emotionops.validation import ValidationFailed, require
    from emotionops.warehouse import load_validation_results

    try:
        require(reports, what)
    except ValidationFailed as failure:
        try:
            load_validation_results(_warehouse(settings), reports, run_date)
        except Exception as exc:
            note = f"(the validation result was not recorded in the warehouse: {exc})"
            log.warning("%s %s", what, note)
            failure.add_note(note)
        raise
    engine = _warehouse(settings)
    load_validation_results(engine, reports, run_date)
    return engine


# Stages ---------------------------------------------------------------------------------


def stage_scrape(
    settings: Settings,
    params: Params,
    run_date: str,
    search_url: str | None,
    progress: bool = True,
    label: str | None = None,
) -> Path:
    """Scrape full-size image URLs per label into the run's manifest (resumable, capped).

    With `label`, only that label, into its own file (DataPaths.label_manifest): label runs
    can go in parallel (Airflow's mapped tasks) without racing on one manifest. The run cap
    `max_per_run` is then shared evenly between the labels."""
    from emotionops.acquire.scrape.driver import scrape

    paths = DataPaths(settings.data_path)
    knobs = params.scrape
    max_per_run = knobs.max_per_run
    if label is None:
        queries = {name: params.queries_for(name) for name in params.labels}
        out = paths.manifest(run_date)
    else:
        if label not in params.labels:
            raise EmotionOpsError(f"--label {label!r} is not one of the labels {params.labels}")
        queries = {label: params.queries_for(label)}
        out = paths.label_manifest(run_date, label)
        if max_per_run is not None:
            max_per_run = max(1, max_per_run // len(params.labels))
    scrape(
        queries,
        knobs.engine,
        search_url,
        knobs.per_label,
        run_date,
        out,
        settings.chromium_binary,
        settings.chromedriver,
        timeout_s=knobs.timeout_s,
        progress=progress,
        per_query=knobs.per_query,
        max_per_run=max_per_run,
        delay_s=knobs.delay_s,
        engines=knobs.engines,
    )
    return out


#: Columns a stage indexes in the tables other stages wrote (a person may have edited them).
MANIFEST_REQUIRED = ("label", "image_url")
DOWNLOAD_REQUIRED = ("url_sha256", "label", "status", "path", "sha256")
IMAGE_REQUIRED = ("sha256", "label", "status", "face_path", "phash", "dhash")
URL_CLEANUP_REJECTED = "rejected by url cleanup"  # download outcome of URLs cleanup dropped


def clean_run_urls(
    paths: DataPaths, params: Params, run_date: str
) -> tuple[list[dict], list[dict]]:
    """The run's manifest through URL cleanup: (kept, rejected with reason and rule). The
    callers write the rejected ones to the run's rejected.csv, so each input URL ends with
    exactly one record: there, or in the download records."""
    from emotionops.acquire.urls import clean_manifest

    rows = run_manifest_rows(paths, params.labels, run_date)
    if not rows:
        raise EmotionOpsError(
            f"no URL manifest for {run_date} at {paths.manifest(run_date)}: "
            "run `emotionops scrape` first"
        )
    return clean_manifest(rows, params.urls)


def run_manifest_rows(paths: DataPaths, labels: list[str], run_date: str) -> list[dict]:
    """The run's manifest rows: urls.csv (a whole-run scrape) with, for every label scraped on
    its own (`scrape --label`), that label's file instead of its urls.csv rows. Labels come in
    `labels` order, so cleanup (first URL wins a duplicate) gives the same result every time."""
    whole = read_records(paths.manifest(run_date), MANIFEST_REQUIRED)
    own = {
        label: read_records(paths.label_manifest(run_date, label), MANIFEST_REQUIRED)
        for label in labels
        if paths.label_manifest(run_date, label).is_file()
    }
    rows = [r for r in whole if r["label"] not in own]
    for label in labels:
        rows += own.get(label, [])
    return rows


def stage_load_urls(settings: Settings, params: Params, run_date: str) -> tuple[int, int]:
    """Clean the run's URLs (normalise, denylist, dedupe; a reason per rejection), validate
    the kept rows (GX; a failed suite raises ValidationFailed and loads nothing) and upsert
    them; returns (kept, rejected)."""
    from emotionops.validation import validate_urls
    from emotionops.warehouse import load_urls

    paths = DataPaths(settings.data_path)
    kept, rejected = clean_run_urls(paths, params, run_date)
    write_records(rejected, paths.url_rejects(run_date))  # kept for review, also on failure
    # A failed suite raises here (its result recorded): nothing of this batch is loaded.
    reports = [validate_urls(kept, params, settings, run_date)]
    engine = require_recorded(settings, reports, run_date, f"URL manifest {run_date}")
    load_urls(
        engine,
        [
            {
                "url_sha256": r["url_sha256"],
                "url": r["image_url"],
                "label": r["label"],
                "query": r.get("query"),
                "engine": r.get("engine"),
                "rank": int(r["rank"]) if r.get("rank") not in (None, "") else None,
                "page_url": r.get("page_url"),
                "run_date": r.get("run_date") or run_date,
            }
            for r in kept
        ],
        labels=params.labels,
    )
    return len(kept), len(rejected)


def _stored_file(paths: DataPaths, record: dict[str, str]) -> bool:
    return bool(record.get("path")) and (paths.root / record["path"]).is_file()


def stage_download(
    settings: Settings, params: Params, run_date: str, progress: bool = True
) -> Counter:
    """Download the run's cleaned URLs into content-addressed files; returns outcome counts,
    which add up to the manifest's rows (URLs that cleanup dropped count as
    URL_CLEANUP_REJECTED, their rules in rejected.csv).

    A re-run fetches nothing twice: a URL whose file is already stored (from this run date or
    an earlier one) is reused, and a URL refused in this run date (final: 404, not an image,
    SSRF...) is not asked again. Only `failed` (transient) outcomes are tried again. Delete the
    run's downloads CSV to force a full retry (e.g. after raising a cap).
    """
    from emotionops.acquire.download import (
        RECORD_FIELDS,
        Downloader,
        record_dicts,
        set_pillow_pixel_limit,
    )
    from emotionops.progress import progress_bar

    paths = DataPaths(settings.data_path)
    kept, dropped = clean_run_urls(paths, params, run_date)
    if not kept:
        write_records(dropped, paths.url_rejects(run_date))
        raise EmotionOpsError(
            f"no URLs to download for {run_date}: URL cleanup rejected all {len(dropped)} "
            f"(reasons in {paths.url_rejects(run_date)})"
        )
    this_run = {
        r["url_sha256"]: r for r in read_records(paths.downloads(run_date), DOWNLOAD_REQUIRED)
    }
    stored: dict[str, dict[str, str]] = {}  # url_sha256 -> an ok record whose file exists
    for f in sorted(paths.downloads_dir.glob("downloads_*.csv")):
        for r in read_records(f, DOWNLOAD_REQUIRED):
            if r.get("status") == "ok" and _stored_file(paths, r):
                stored.setdefault(r["url_sha256"], r)
    reused: dict[str, dict[str, object]] = {}
    for row in kept:
        key = row["url_sha256"]
        earlier = this_run.get(key) or {}
        final = earlier.get("status") == "rejected"
        if final or (earlier.get("status") == "ok" and _stored_file(paths, earlier)):
            reused[key] = dict(earlier)
        elif key in stored:  # fetched on an earlier run date: the file is already stored
            old = stored[key]
            reused[key] = {
                **old,
                "label": row["label"],
                "url": row["image_url"],
                "run_date": run_date,
                "attempts": 0,
                "reason": f"reused from run {old.get('run_date', '')}",
            }
    todo = [r for r in kept if r["url_sha256"] not in reused]
    set_pillow_pixel_limit(params.download.max_pixels)
    allow = list(settings.download_allow_hosts)
    with (
        Downloader(
            paths.raw, params.download, allow_hosts=allow, ca_bundle=settings.download_ca_bundle
        ) as downloader,
        progress_bar("download", total=len(todo), enabled=progress) as advance,
    ):
        records = downloader.fetch_all(todo, run_date, on_done=lambda _r: advance())
    fresh = {}
    for row in record_dicts(records):  # paths relative to the data folder: valid in any clone
        if row["path"]:
            row["path"] = Path(row["path"]).relative_to(paths.root).as_posix()
        fresh[row["url_sha256"]] = row
    rows = [
        {
            k: (reused.get(r["url_sha256"]) or fresh[r["url_sha256"]]).get(k, "")
            for k in RECORD_FIELDS
        }
        for r in kept
    ]
    write_records(rows, paths.downloads(run_date))
    write_records(dropped, paths.url_rejects(run_date))
    counts = Counter(r["status"] for r in rows)
    if dropped:
        counts[URL_CLEANUP_REJECTED] = len(dropped)
    return counts


def stage_clean(settings: Settings, params: Params) -> Counter:
    """Check every downloaded image (all run dates) and every imported dataset, and write
    face crops + images.csv.

    Download files are read in date order and rows in file order, then import manifests in
    name order: the first image seen wins a duplicate, so the outcome is stable when later
    runs add data. Imported images are face crops already (emotionops.dataset.importers)."""
    import shutil

    from emotionops.clean.faces import make_detector
    from emotionops.clean.images import clean_images
    from emotionops.dataset.importers import clean_imports, import_manifests

    paths = DataPaths(settings.data_path)
    # Build the detector first: a bad detector setting fails before any output is removed.
    ip = params.images
    detector = make_detector(ip.detector, ip.min_face_side, ip.detector_model)
    downloads = [
        {**r, "path": str(paths.root / r["path"])}
        for f in sorted(paths.downloads_dir.glob("downloads_*.csv"))
        for r in read_records(f, DOWNLOAD_REQUIRED)
    ]
    if not downloads and not import_manifests(paths.root):
        raise EmotionOpsError(
            f"no download records in {paths.downloads_dir} and no imported datasets in "
            f"{paths.imports}: run `emotionops download` or `emotionops import` first"
        )
    if paths.faces.exists():
        shutil.rmtree(paths.faces)  # rebuilt from the content-addressed raw files
    records = clean_images(downloads, paths.faces, ip, params.labels, detector)
    imported = clean_imports(
        paths.root, paths.faces, params.labels, params.dataset, ip.face_size, earlier=records
    )
    records += imported.records
    write_records(records, paths.images_csv)
    counts = Counter(r.status for r in records)
    if imported.ignored:
        counts["ignored (dataset.ignore)"] = imported.ignored
    return counts


def stage_split(settings: Settings, params: Params) -> str:
    """Write the deterministic split file and its statistics; returns the dataset version id."""
    from emotionops.dataset.importers import split_hints
    from emotionops.dataset.split import build_split, stats_summary, write_split, write_stats

    paths = DataPaths(settings.data_path)
    near_dup = (params.images.near_dup_distance, params.images.near_dup_dhash_distance)
    rows = build_split(
        read_records(paths.images_csv, IMAGE_REQUIRED),
        params.split,
        params.labels,
        near_dup,
        hints=split_hints(paths.root),
    )
    version = write_split(rows, paths.split_csv)
    write_stats(stats_summary(rows, params.labels), paths.dataset_stats)
    return version


def stage_version_data(settings: Settings) -> tuple[str, str]:
    """`dvc repro` the clean and split stages and push to the remote; returns (version, report)."""
    from emotionops.dataset import dvc
    from emotionops.dataset.split import dataset_version_id

    paths = DataPaths(settings.data_path)
    project = settings.project_dir.resolve()
    dvc.ensure_dvc_project(
        project,
        settings.dvc_remote_url,
        project / "dvc-remote",
        endpoint_url=settings.dvc_remote_endpoint_url,
    )
    for dep in (paths.downloads_dir, paths.raw, paths.imports):
        dep.mkdir(parents=True, exist_ok=True)  # dvc.yaml deps: scraped, imported or both
    report = dvc.reproduce(project, "split")
    report += dvc.push(project)
    return dataset_version_id(paths.split_csv), report


VALIDATIONS = ("urls", "images", "split", "data")


def stage_validate(settings: Settings, params: Params, what: str, run_date: str) -> list:
    """Run the Great Expectations suites on a stage's input and return the reports (Data
    Docs updated); does not raise on failed expectations: callers decide (`require`).

    urls: the run's manifest as cleaned for loading; images: images.csv; split: split.csv
    (with images.csv); data: images and split, what `warehouse load-images` checks."""
    from emotionops import validation

    if what not in VALIDATIONS:
        raise EmotionOpsError(f"nothing called {what!r} to validate: one of {list(VALIDATIONS)}")
    paths = DataPaths(settings.data_path)
    if what == "urls":
        kept, _ = clean_run_urls(paths, params, run_date)
        return [validation.validate_urls(kept, params, settings, run_date)]
    for need in (paths.images_csv, *((paths.split_csv,) if what != "images" else ())):
        if not need.is_file():
            raise EmotionOpsError(f"no {need.name} at {need}: run `emotionops version-data` first")
    images = read_records(paths.images_csv, IMAGE_REQUIRED)
    reports = []
    if what in ("images", "data"):
        reports.append(validation.validate_images(images, params, settings, run_date))
    if what in ("split", "data"):
        split_rows = read_records(paths.split_csv, SPLIT_COLUMNS)
        reports.append(validation.validate_split(split_rows, images, params, settings, run_date))
    return reports


def run_url_outcomes(paths: DataPaths, run_date: str) -> tuple[list[dict], list[dict]]:
    """The run's URL cleanup rejects (rejected.csv) and download records (downloads CSV),
    each with its url_sha256: ([], []) for a run that scraped nothing (imports only).
    rejected.csv files written before rejects carried url_sha256 get it computed the way
    cleanup computes it (the normalised URL's hash)."""
    from emotionops.acquire.urls import normalise, url_sha256

    rejected = read_records(paths.url_rejects(run_date), MANIFEST_REQUIRED)
    for row in rejected:
        if not row.get("url_sha256"):
            row["url_sha256"] = url_sha256(normalise(row["image_url"]).url)
    return rejected, read_records(paths.downloads(run_date), DOWNLOAD_REQUIRED)


def stage_load_images(settings: Settings, params: Params, run_date: str) -> dict[str, int]:
    """Validate images.csv and split.csv (GX; every suite's result recorded), then upsert the
    image metadata and the dataset version, and the run's URL outcomes (cleanup rejects and
    download records: url_outcome); a failed suite raises ValidationFailed and loads no data.

    The URL outcomes load here, not in `download` (which has no warehouse) nor in
    `load-urls` (before the downloads): this is the run's one stage after both files are
    final, so each URL of the run lands once, and a retry upserts the same rows."""
    from emotionops.dataset.split import dataset_version_id, stats
    from emotionops.warehouse import load_images, load_url_outcomes

    paths = DataPaths(settings.data_path)
    reports = stage_validate(settings, params, "data", run_date)
    engine = require_recorded(settings, reports, run_date, "images.csv + split.csv")
    rows = read_records(paths.images_csv, IMAGE_REQUIRED)
    for row in rows:
        for key in ("width", "height", "n_faces"):
            row[key] = int(row[key]) if row.get(key) else None
    split_rows = read_records(paths.split_csv, SPLIT_COLUMNS)
    st = stats(split_rows)
    dataset_row = {
        "version_id": dataset_version_id(paths.split_csv),
        "labels": ",".join(params.labels),
        "n_images": st.total,
        "n_train": st.count("train"),
        "n_val": st.count("val"),
        "n_test": st.count("test"),
        "run_date": run_date,
    }
    # One transaction: the images and the dataset version built from them land together.
    n_images = load_images(engine, rows, labels=params.labels, dataset=dataset_row)
    n_urls = load_url_outcomes(engine, run_date, *run_url_outcomes(paths, run_date))
    return {"images": n_images, "dataset_images": st.total, "url_outcomes": n_urls}


def stage_report(settings: Settings, params: Params, out: Path):
    """The dashboard's pages as a static report in `out` (emotionops.dashboard.bundle)."""
    from emotionops.dashboard.bundle import build_bundle
    from emotionops.validation import data_docs_index
    from emotionops.warehouse import open_warehouse

    engine = open_warehouse(settings, migrate_schema=False)
    try:
        return build_bundle(
            engine,
            params,
            settings.data_path,
            out,
            data_docs_index(settings).parent,
            f"({engine.dialect.name})",  # a shared report names no host
        )
    finally:
        engine.dispose()


def stage_train(
    settings: Settings,
    params: Params,
    tracking_uri: str,
    run_date: str,
    register: bool = True,
    export: bool = False,
    run_key: str | None = None,
):
    """Train on the current split, log to MLflow, register and gate; returns (result,
    promotion); promotion is None with `register=False` (DVC experiments never move the
    champion). `export` also writes data/model/ and data/metrics/train*.{json,csv} (the
    DVC train stage's outputs and metrics). `run_key` tags the run (see find_training_run)."""
    from emotionops.dataset.dvc import dvc_output_hashes
    from emotionops.dataset.split import dataset_version_id
    from emotionops.registry import register_and_promote
    from emotionops.training.train import RUN_KEY_TAG, train, write_history
    from emotionops.warehouse import load_run

    paths = DataPaths(settings.data_path)
    if not paths.split_csv.is_file():
        raise EmotionOpsError(
            f"no split file at {paths.split_csv}: run `emotionops version-data` first"
        )
    version = dataset_version_id(paths.split_csv)
    result = train(
        paths.split_csv,
        paths.faces,
        params.labels,
        params.train,
        tracking_uri,
        dataset_version=version,
        model_name=settings.model_name,
        dvc_hashes=dvc_output_hashes(settings.project_dir),
        export_dir=paths.model_dir if export else None,
        run_tags={RUN_KEY_TAG: run_key} if run_key else None,
    )
    if export:
        import json

        paths.metrics_dir.mkdir(parents=True, exist_ok=True)
        (paths.metrics_dir / "train.json").write_text(
            json.dumps({**result.metrics(), "run_id": result.run_id}, indent=2) + "\n"
        )
        history = write_history(result.history, paths.metrics_dir / "curves")
        (history / "history.csv").replace(paths.metrics_dir / "train_history.csv")
        import shutil

        shutil.rmtree(history)
    engine = _warehouse(settings)
    promotion = None
    if register:  # challenger, then the gate against the champion on the same test faces
        promotion = register_and_promote(
            tracking_uri, settings.model_name, result.run_id, paths.faces, params.registry,
            engine, params.evaluate.predict_batch,
        )  # fmt: skip
    # The run's metrics, per-epoch curves, per-class metrics, confusion cells and the alias
    # moves the registry audited: one transaction. Should it fail, `emotionops warehouse
    # load-run <run id>` loads the same rows later (they live in MLflow).
    load_run(engine, tracking_uri, result.run_id, run_date)
    return result, promotion


def find_training_run(settings: Settings, tracking_uri: str, run_key: str) -> str | None:
    """A finished training run tagged `run_key` on the current dataset version, else None
    (`emotionops train --run-key`: one training run per scheduler data interval)."""
    from emotionops.dataset.split import dataset_version_id
    from emotionops.training.train import find_finished_run

    paths = DataPaths(settings.data_path)
    if not paths.split_csv.is_file():
        return None
    return find_finished_run(tracking_uri, run_key, dataset_version_id(paths.split_csv))


def stage_promote(
    settings: Settings,
    params: Params,
    tracking_uri: str,
    version: int | None = None,
    once: bool = False,
):
    """Gate a registered version (default: the challenger) against the champion and move
    `champion` when it passes; the decision also lands in the warehouse's audit table.
    `once`: a version gated before keeps that decision (no new audit row, nothing moves)."""
    from emotionops.registry import promote
    from emotionops.warehouse import load_promotions

    engine = _warehouse(settings)
    promotion = promote(
        tracking_uri, settings.model_name, DataPaths(settings.data_path).faces, params.registry,
        engine, version, params.evaluate.predict_batch, once=once,
    )  # fmt: skip
    if promotion.moves:  # `once` on a version gated before: nothing moved, nothing to audit
        load_promotions(engine, promotion.moves)
    return promotion


def stage_rollback(settings: Settings, tracking_uri: str):
    """Move `champion` back to the version it replaced; audited in MLflow and the warehouse."""
    from emotionops.registry import rollback
    from emotionops.warehouse import load_promotions

    engine = _warehouse(settings)
    move = rollback(tracking_uri, settings.model_name)
    load_promotions(engine, [move])
    return move


def stage_evaluate(
    settings: Settings,
    params: Params,
    model_ref: str,
    tracking_uri: str | None,
    data: str = "test",
    out: Path | None = None,
    labels: list[str] | None = None,
    model_labels: list[str] | None = None,
    input_scale: str = "raw",
    limit_per_class: int | None = None,
):
    """Evaluate any model on the project's split (`data` test|val|train) or on an external
    folder of class folders; writes the evaluation folder (+ predictions.csv for DVC plots)
    when `out` is given. Returns the `training.evaluate.Evaluation`."""
    from emotionops.training.evaluate import (
        EvaluationError,
        evaluate_probs,
        folder_eval_set,
        load_model,
        split_eval_set,
        write_evaluation,
        write_predictions,
    )

    paths = DataPaths(settings.data_path)
    model = load_model(
        model_ref,
        tracking_uri,
        model_labels=model_labels,
        input_scale=input_scale,
        image_size=params.train.image_size,
        batch_size=params.evaluate.predict_batch,
    )
    eval_labels = labels or [lab for lab in params.labels if lab in model.labels] or model.labels
    if data in ("test", "val", "train"):
        if not paths.split_csv.is_file():
            raise EvaluationError(f"no split file at {paths.split_csv}: run `emotionops split`")
        dataset = split_eval_set(paths.split_csv, paths.faces, eval_labels, model.image_size, data)
    else:
        dataset = folder_eval_set(
            Path(data),
            eval_labels,
            model.image_size,
            params.dataset.label_map,
            params.dataset.ignore,
            limit_per_class,
            caps=params.dataset,
        )
    columns = model.columns_for(eval_labels)
    result = evaluate_probs(
        model.predict,
        dataset.images,
        dataset.labels,
        eval_labels,
        columns,
        flip_check=params.evaluate.flip_check,
        votes=dataset.votes,  # the ferplus ruler beside the original labels, when present
    )
    result.source = {"model": model.description, "data": dataset.description}
    if out is not None:
        write_evaluation(out, result, title=data if len(data) < 12 else "evaluation")
        write_predictions(out / "predictions.csv", dataset.labels, result.y_pred, eval_labels)
    return result


def stage_edge(
    settings: Settings,
    params: Params,
    tracking_uri: str,
    source: str | None,
    start_time: datetime | None = None,
    max_frames: int | None = None,
    display: bool = False,
    stop: threading.Event | None = None,
    health_port: int | None = None,
    on_started: Callable[[str | None], None] | None = None,
):
    """Run the edge service on `source` (or a generated demo video): pull the champion,
    classify, and send each window's aggregate counts through the outbox to the sink the
    settings name (the API's /ingest, else the warehouse). Returns the `EdgeRun`.
    `health_port` overrides the settings' (0: a free port)."""
    from emotionops.edge.detect import make_edge_detector
    from emotionops.edge.model import pull_champion
    from emotionops.edge.outbox import default_outbox_path
    from emotionops.edge.runner import ModelSource, serve
    from emotionops.edge.sinks import make_sink

    paths = DataPaths(settings.data_path)
    model = ModelSource(tracking_uri, settings.model_name, paths.edge_cache)
    # The model first: without one there is nothing to do (and no demo video to make).
    pulled = pull_champion(model.tracking_uri, model.model_name, model.cache_dir)
    if source is None:
        source = str(make_demo_video_from_faces(settings, params))
    if start_time is None:
        # A file's windows are anchored to its mtime, so re-running on it yields the same rows.
        is_file = Path(source).is_file()
        start_time = (
            datetime.fromtimestamp(Path(source).stat().st_mtime, UTC)
            if is_file
            else datetime.now(UTC)
        )
    return serve(
        source,
        model,
        params.edge,
        make_edge_detector(params.edge.detection),
        make_sink(settings, params=params.edge.outbox),
        default_outbox_path(settings.data_path),
        start_time,
        health_host=settings.edge_health_host,
        health_port=settings.edge_health_port if health_port is None else health_port,
        max_frames=max_frames,
        stop=stop,
        face_margin=params.images.face_margin,
        display=display,
        on_started=on_started,
        pulled=pulled,
    )


def make_demo_video_from_faces(settings: Settings, params: Params) -> Path:
    """A video cycling through accepted faces of each label (used when no video is given)."""
    from emotionops.edge.demo_video import make_demo_video

    paths = DataPaths(settings.data_path)
    rows = read_records(paths.split_csv, SPLIT_COLUMNS)
    by_label: dict[str, list[Path]] = {}
    for r in rows:
        if r["split"] == "test":
            by_label.setdefault(r["label"], []).append(paths.faces / r["path"])
    if not by_label:
        by_label = {r["label"]: [paths.faces / r["path"]] for r in rows}
    if paths.demo_video.is_file():
        return paths.demo_video
    return make_demo_video(
        paths.demo_video,
        by_label,
        params.edge.demo_video_seconds,
        params.edge.fps,
        seed=params.train.seed,
    )
