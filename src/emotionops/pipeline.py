"""The pipeline's stages over the project's data folder: one function per stage.

The CLI, `dvc repro`, the Airflow DAG (through the CLI) and `make demo` all call these, so
there is one code path. Each stage reads and writes files under `settings.data_path`,
partitioned by the run date where the outside world is involved (scrape, download), and is
safe to re-run: outputs are content-addressed or rewritten atomically, loads are upserts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from emotionops.csvio import read_records, write_records
from emotionops.errors import EmotionOpsError
from emotionops.params import Params
from emotionops.settings import Settings


@dataclass(frozen=True)
class DataPaths:
    """Where each stage keeps its files (all under the data folder)."""

    root: Path

    @property
    def standin(self) -> Path:
        return self.root / "standin"

    def manifest(self, run_date: str) -> Path:
        return self.root / "manifests" / f"urls_{run_date}.csv"

    def url_rejects(self, run_date: str) -> Path:
        return self.root / "manifests" / f"rejected_{run_date}.csv"

    @property
    def downloads_dir(self) -> Path:
        return self.root / "downloads"

    def downloads(self, run_date: str) -> Path:
        return self.downloads_dir / f"downloads_{run_date}.csv"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def faces(self) -> Path:
        return self.root / "faces"

    @property
    def images_csv(self) -> Path:
        return self.root / "images.csv"

    @property
    def split_csv(self) -> Path:
        return self.root / "split.csv"

    @property
    def edge_cache(self) -> Path:
        return self.root / "edge-cache"

    @property
    def demo_video(self) -> Path:
        return self.root / "demo" / "demo.avi"


def today() -> str:
    """The run date used when none is given (CLI entry points only, never inside a stage)."""
    return datetime.now(UTC).date().isoformat()


def _warehouse(settings: Settings):
    from emotionops.warehouse import connect, init_schema

    engine = connect(settings.resolved_warehouse_url())
    init_schema(engine)
    return engine


# Stages ---------------------------------------------------------------------------------


def stage_scrape(settings: Settings, params: Params, run_date: str, search_url: str) -> Path:
    """Scrape full-size image URLs per label into the run's manifest."""
    from emotionops.scrape.driver import scrape

    paths = DataPaths(settings.data_path)
    queries = {label: params.queries_for(label) for label in params.labels}
    out = paths.manifest(run_date)
    scrape(
        queries,
        params.scrape.engine,
        search_url,
        params.scrape.per_label,
        run_date,
        out,
        settings.chromium_binary,
        settings.chromedriver,
        timeout_s=params.scrape.timeout_s,
    )
    return out


def stage_load_urls(settings: Settings, params: Params, run_date: str) -> tuple[int, int]:
    """Clean the run's URLs (normalise, dedupe, reasons) and upsert them; returns (kept, rejected)."""
    from emotionops.urls import clean_manifest
    from emotionops.warehouse import load_urls

    paths = DataPaths(settings.data_path)
    rows = read_records(paths.manifest(run_date))
    if not rows:
        raise EmotionOpsError(
            f"no URL manifest for {run_date} at {paths.manifest(run_date)}: run `emotionops scrape` first"
        )
    kept, rejected = clean_manifest(rows)
    write_records(rejected, paths.url_rejects(run_date))
    load_urls(
        _warehouse(settings),
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


def stage_download(
    settings: Settings, params: Params, run_date: str, progress: bool = True
) -> Counter:
    """Download the run's cleaned URLs into content-addressed files; returns outcome counts."""
    from emotionops.download import Downloader, record_dicts
    from emotionops.progress import progress_bar
    from emotionops.urls import clean_manifest

    paths = DataPaths(settings.data_path)
    kept, _ = clean_manifest(read_records(paths.manifest(run_date)))
    if not kept:
        raise EmotionOpsError(f"no URLs to download for {run_date}: run `emotionops scrape` first")
    # Reuse earlier outcomes for URLs already fetched successfully (a retry fetches nothing twice).
    previous = {
        r["url_sha256"]: r
        for r in read_records(paths.downloads(run_date))
        if r.get("status") == "ok" and (paths.root / r.get("path", "")).is_file()
    }
    todo = [r for r in kept if r["url_sha256"] not in previous]
    allow = list(settings.download_allow_hosts)
    downloader = Downloader(paths.raw, params.download, allow_hosts=allow)
    try:
        with progress_bar("download", total=len(todo), enabled=progress) as advance:
            records = downloader.fetch_all(todo, run_date, on_done=lambda _r: advance())
    finally:
        downloader.close()
    fresh = record_dicts(records)
    for row in fresh:  # paths relative to the data folder: records stay valid in any clone
        if row["path"]:
            row["path"] = Path(row["path"]).relative_to(paths.root).as_posix()
    rows = list(previous.values()) + fresh
    write_records(rows, paths.downloads(run_date))
    return Counter(r["status"] for r in rows)


def stage_clean(settings: Settings, params: Params) -> Counter:
    """Check every downloaded image (all run dates) and write face crops + images.csv."""
    import shutil

    from emotionops.images import clean_images

    paths = DataPaths(settings.data_path)
    downloads = [
        {**r, "path": str(paths.root / r["path"])}
        for f in sorted(paths.downloads_dir.glob("downloads_*.csv"))
        for r in read_records(f)
    ]
    if not downloads:
        raise EmotionOpsError(
            f"no download records in {paths.downloads_dir}: run `emotionops download` first"
        )
    if paths.faces.exists():
        shutil.rmtree(paths.faces)  # rebuilt from the content-addressed raw files
    records = clean_images(downloads, paths.faces, params.images, params.labels)
    write_records(records, paths.images_csv)
    return Counter(r.status for r in records)


def stage_split(settings: Settings, params: Params) -> str:
    """Write the deterministic split file; returns the dataset version id."""
    from emotionops.dataset import build_split, write_split

    paths = DataPaths(settings.data_path)
    rows = build_split(read_records(paths.images_csv), params.split, params.labels)
    return write_split(rows, paths.split_csv)


def stage_version_data(settings: Settings) -> tuple[str, str]:
    """`dvc repro` the clean and split stages and push to the remote; returns (version, report)."""
    from emotionops import dataset

    project = settings.project_dir.resolve()
    dataset.ensure_dvc_project(project, settings.dvc_remote_url, project / "dvc-remote")
    report = dataset.reproduce(project, "split")
    report += dataset.push(project)
    return dataset.dataset_version_id(DataPaths(settings.data_path).split_csv), report


def stage_load_images(settings: Settings, params: Params, run_date: str) -> dict[str, int]:
    """Upsert image metadata and the dataset version into the warehouse."""
    from emotionops.dataset import dataset_version_id, stats
    from emotionops.warehouse import load_dataset_version, load_images

    paths = DataPaths(settings.data_path)
    engine = _warehouse(settings)
    rows = read_records(paths.images_csv)
    for row in rows:
        for key in ("width", "height", "n_faces"):
            row[key] = int(row[key]) if row.get(key) else None
    n_images = load_images(engine, rows)
    split_rows = read_records(paths.split_csv)
    st = stats(split_rows)
    load_dataset_version(
        engine,
        {
            "version_id": dataset_version_id(paths.split_csv),
            "labels": ",".join(params.labels),
            "n_images": st.total,
            "n_train": st.count("train"),
            "n_val": st.count("val"),
            "n_test": st.count("test"),
            "run_date": run_date,
        },
    )
    return {"images": n_images, "dataset_images": st.total}


def stage_train(settings: Settings, params: Params, tracking_uri: str, run_date: str):
    """Train on the current split, log to MLflow, register and gate; returns (result, promotion)."""
    from emotionops.dataset import dataset_version_id
    from emotionops.registry import register_and_promote
    from emotionops.training.train import train
    from emotionops.warehouse import load_training_run

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
    )
    promotion = register_and_promote(tracking_uri, settings.model_name, result)
    load_training_run(
        _warehouse(settings),
        {
            "run_id": result.run_id,
            "model_name": settings.model_name,
            "model_version": str(promotion.version),
            "dataset_version": version,
            "test_accuracy": result.test_accuracy,
            "val_accuracy": result.val_accuracy,
            "promoted": promotion.promoted,
            "run_date": run_date,
        },
    )
    return result, promotion


def stage_edge(
    settings: Settings,
    params: Params,
    tracking_uri: str,
    source: str | None,
    start_time: datetime | None = None,
    max_frames: int | None = None,
):
    """Pull the champion, classify faces in `source` (or a generated demo video) while
    watching the registry for a new champion, and load each window's aggregate counts as
    soon as it closes; returns (windows, model version at the end, source used)."""
    from emotionops.edge.service import ModelWatcher, pull_champion, run_edge
    from emotionops.faces import HaarFaceDetector
    from emotionops.warehouse import load_emotion_events

    paths = DataPaths(settings.data_path)
    engine = _warehouse(settings)
    pulled = pull_champion(tracking_uri, settings.model_name, paths.edge_cache)
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
    with ModelWatcher(
        tracking_uri, settings.model_name, paths.edge_cache, pulled, poll_s=params.edge.poll_s
    ) as watcher:
        windows = run_edge(
            source,
            watcher,
            HaarFaceDetector(min_face_side=params.images.min_face_side),
            params.edge,
            start_time,
            max_frames=max_frames,
            exclusion_zones=[tuple(z) for z in params.edge.exclusion_zones],
            on_window=lambda w: load_emotion_events(engine, [w]),
            face_margin=params.images.face_margin,
        )
        version = watcher.current.version
    return windows, version, source


def make_demo_video_from_faces(settings: Settings, params: Params) -> Path:
    """A video cycling through accepted faces of each label (used when no video is given)."""
    from emotionops.edge.demo_video import make_demo_video

    paths = DataPaths(settings.data_path)
    rows = read_records(paths.split_csv)
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
