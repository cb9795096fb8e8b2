"""Where each stage keeps its files under the data folder: one place, no dependencies, so
every package (the pipeline, the dashboard, the CLI) can name a path without importing the
stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataPaths:
    """Where each stage keeps its files (all under the data folder)."""

    root: Path

    @property
    def standin(self) -> Path:
        return self.root / "standin"

    def manifest_dir(self, run_date: str) -> Path:
        """One folder per logical run date (Hive-style `run_date=YYYY-MM-DD` partition)."""
        return self.root / "manifests" / f"run_date={run_date}"

    def manifest(self, run_date: str) -> Path:
        return self.manifest_dir(run_date) / "urls.csv"

    def label_manifest(self, run_date: str, label: str) -> Path:
        """One label's manifest for the run (`emotionops scrape --label`): parallel label
        scrapes each own a file, so none rewrites another's rows."""
        return self.manifest_dir(run_date) / "labels" / f"{label}.csv"

    def url_rejects(self, run_date: str) -> Path:
        return self.manifest_dir(run_date) / "rejected.csv"

    @property
    def downloads_dir(self) -> Path:
        return self.root / "downloads"

    def downloads(self, run_date: str) -> Path:
        return self.downloads_dir / f"downloads_{run_date}.csv"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def imports(self) -> Path:
        """One manifest per imported dataset (emotionops.dataset.importers); files live in raw/."""
        return self.root / "imports"

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
    def dataset_stats(self) -> Path:
        """Images per label and split: DVC metrics of the split stage."""
        return self.root / "dataset_stats.json"

    @property
    def model_dir(self) -> Path:
        """The DVC train stage's model (Keras + TFLite + labels.json)."""
        return self.root / "model"

    @property
    def metrics_dir(self) -> Path:
        """DVC metrics and plots of the train and evaluate stages."""
        return self.root / "metrics"

    @property
    def edge_cache(self) -> Path:
        return self.root / "edge-cache"

    @property
    def report(self) -> Path:
        """The static dashboard `make demo` writes (`emotionops report build`)."""
        return self.root / "report"

    @property
    def demo_video(self) -> Path:
        return self.root / "demo" / "demo.avi"
