"""Importers: labelled face datasets from outside the scraper, into the pipeline's data world.

An import is the offline twin of `download`: files go into the same content-addressed store
(`data/raw/<sha256[:2]>/<sha256>.<ext>`) and one manifest per source records what came in
(`data/imports/<source>.csv`: sha256, source class, split hint, origin). The `clean` stage
then turns scraped downloads AND imports into `faces/<label>/<sha256>.png` + `images.csv`,
and `split` writes one split file over both, so imported and scraped faces are versioned,
validated and trained on together.

Layouts read:
- class folders: `<root>/<class>/*.png|jpg|...` (any labelled folder dataset);
- a split layout: `<root>/{train,val,test,publictest,...}/<class>/*` (FER2013's image-folder
  form): the folder names become split hints (train -> train/val by hash, test -> test);
- the original FER2013 CSV (`emotion,pixels[,Usage]`, 48x48 pixels as 2304 integers).

Imported images are already face crops, so clean does not run the face detector or the photo
quality checks on them: it decodes, drops exact duplicates and blank images, and resizes.
Classes map onto `labels` through `dataset.label_map` and `dataset.ignore` (params.yaml); a
class that is neither in the label set, nor mapped, nor ignored is an error. Every source
image is decoded before anything is written: a corrupt file, an empty class folder or a
malformed CSV row stops the import with an error naming it, and nothing is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotionops.dataset import votes as vt
from emotionops.dataset.split import DatasetError
from emotionops.files import atomic_write, read_records, write_records
from emotionops.params import FER2013_LABELS, DatasetParams

IMPORTS_DIR = "imports"
SKIPPED_DIR = "skipped"  # imports/skipped/<name>.csv: what --skip-bad left out, and why
#: Folder names of a split layout -> split hint ("trainval": train or val by hash, never test).
SPLIT_DIRS = {
    "train": "trainval",
    "training": "trainval",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "publictest": "test",
    "privatetest": "test",
}
#: FER2013 CSV `Usage` -> split hint. PublicTest is this project's clean test set.
FER_CSV_USAGE = {"Training": "trainval", "PublicTest": "test", "PrivateTest": "test"}
FER_CSV_SIDE = 48
STORED_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
MANIFEST_FIELDS = (
    "sha256",
    "source",
    "source_label",
    "split",
    "path",
    "origin",
    "format",
    "width",
    "height",
    "run_date",
)
#: Optional manifest column: the image's annotator votes (dataset.votes.encode_votes), written
#: only by an import with a vote table (`--votes`); '' for an image the table has no row for.
VOTES_COLUMN = "votes"
MAX_NAMED = 3  # bad files quoted in one error message


class DatasetImportError(DatasetError):
    """A source cannot be imported: unreadable file, empty class, unknown label, bad CSV row."""


def map_label(
    source_label: str, labels: Sequence[str], dataset: DatasetParams, where: str
) -> str | None:
    """The label a source class becomes, None when it is left out (dataset.ignore)."""
    name = source_label.strip().lower()
    target = dataset.label_map.get(name, name)
    if target in labels:
        return target
    if target in dataset.ignore or name in dataset.ignore:
        return None
    raise DatasetImportError(
        f"{where}: class {source_label!r} is not in labels {list(labels)}: map it "
        "(params dataset.label_map) or leave it out (params dataset.ignore)"
    )


@dataclass
class _Item:
    source_label: str
    split: str  # "" = by hash
    origin: str  # relative path in the source, or `file.csv:line`
    file: Path | None = None
    data: bytes | None = None


@dataclass
class ImportReport:
    source: str
    manifest: Path
    n_images: int
    per_class: Counter = field(default_factory=Counter)  # (source class, split hint) -> n
    ignored: Counter = field(default_factory=Counter)  # source class -> n (not in labels)
    #: files left out with --skip-bad, each with its reason (also in `skipped_list`)
    skipped: list[str] = field(default_factory=list)
    skipped_list: Path | None = None
    #: with a vote table: images carrying votes, and images the table has no row for
    n_with_votes: int | None = None
    n_without_votes: int = 0

    def summary(self) -> str:
        classes = Counter()
        for (cls, _), n in self.per_class.items():
            classes[cls] += n
        parts = ", ".join(f"{c} {n}" for c, n in sorted(classes.items()))
        text = f"{self.source}: {self.n_images} images ({parts}) -> {self.manifest}"
        if self.ignored:
            text += f"; left out for now (dataset.ignore): {dict(sorted(self.ignored.items()))}"
        if self.n_with_votes is not None:
            text += f"; votes for {self.n_with_votes} images"
            if self.n_without_votes:
                text += f", {self.n_without_votes} images have no votes (no row in the table)"
        if self.skipped:
            text += (
                f"; skipped {len(self.skipped)} unreadable file(s) or vote row(s), listed in "
                f"{self.skipped_list}:"
            )
            text += "".join(f"\n  {line}" for line in self.skipped)
        return text


# Reading sources --------------------------------------------------------------------------
def resolve_source_path(path: str, project_dir: Path) -> Path:
    """Expand $VARS, resolve relative paths against the project; clear error when unset."""
    expanded = os.path.expandvars(os.path.expanduser(path))
    if "$" in expanded:
        raise DatasetImportError(
            f"dataset source path {path!r}: environment variable not set ({expanded!r})"
        )
    p = Path(expanded)
    return p if p.is_absolute() else (project_dir / p)


def _visible(entries: Iterable[Path]) -> list[Path]:
    return sorted(e for e in entries if not e.name.startswith(".") and e.name != "Thumbs.db")


def _scan_classes(folder: Path, hint: str, base: Path) -> list[_Item]:
    classes = [d for d in _visible(folder.iterdir()) if d.is_dir()]
    if not classes:
        raise DatasetImportError(f"{folder}: no class folders (<class>/<image files>) found")
    items = []
    for cls in classes:
        files = _visible(cls.iterdir())
        nested = [f for f in files if f.is_dir()]
        if nested:
            raise DatasetImportError(
                f"{nested[0]}: unexpected folder inside class folder {cls.name!r} "
                "(expected image files only)"
            )
        if not files:
            raise DatasetImportError(f"{cls}: class folder is empty")
        items += [_Item(cls.name, hint, f.relative_to(base).as_posix(), file=f) for f in files]
    return items


def scan_folder(root: Path, split: str = "auto") -> list[_Item]:
    """Items of a class-folder dataset or of a split layout (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetImportError(f"{root}: folder not found")
    subdirs = [d for d in _visible(root.iterdir()) if d.is_dir()]
    if not subdirs:
        raise DatasetImportError(f"{root}: no class folders (<class>/<image files>) found")
    if split in ("auto", "hash") and all(d.name.lower() in SPLIT_DIRS for d in subdirs):
        items = []
        for d in subdirs:
            items += _scan_classes(d, SPLIT_DIRS[d.name.lower()] if split == "auto" else "", root)
        return items
    return _scan_classes(root, "" if split in ("auto", "hash") else split, root)


def _png_bytes(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def scan_fer_csv(path: Path, split: str = "auto") -> list[_Item]:
    """Items of the original FER2013 CSV; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetImportError(f"{path}: file not found")
    try:
        return _fer_csv_items(path, split)
    except (csv.Error, UnicodeDecodeError) as exc:  # NUL bytes, huge fields, not UTF-8
        raise DatasetImportError(f"{path}: not a readable CSV file ({exc})") from None


def _fer_csv_items(path: Path, split: str) -> list[_Item]:
    items = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if not {"emotion", "pixels"} <= set(columns):
            raise DatasetImportError(
                f"{path}: not a FER2013 CSV: needs columns emotion,pixels[,Usage], found {columns}"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{path.name}:{line}"
            try:
                emotion = int(str(row["emotion"]).strip())
            except ValueError:
                emotion = -1
            if not 0 <= emotion < len(FER2013_LABELS):
                raise DatasetImportError(
                    f"{where}: emotion {row['emotion']!r} is not 0-6 "
                    f"({', '.join(f'{i}={n}' for i, n in enumerate(FER2013_LABELS))})"
                )
            values = str(row["pixels"] or "").split()
            if len(values) != FER_CSV_SIDE * FER_CSV_SIDE:
                raise DatasetImportError(
                    f"{where}: pixels has {len(values)} values, expected "
                    f"{FER_CSV_SIDE * FER_CSV_SIDE} ({FER_CSV_SIDE}x{FER_CSV_SIDE})"
                )
            try:
                pixels = np.array([int(v) for v in values], dtype=np.int64)
            except ValueError as exc:
                raise DatasetImportError(f"{where}: pixels are not integers ({exc})") from None
            if pixels.min() < 0 or pixels.max() > 255:
                raise DatasetImportError(f"{where}: pixel values must be 0-255")
            hint = "" if split in ("auto", "hash") else split
            usage = str(row.get("Usage") or "").strip()
            if split == "auto" and usage:
                if usage not in FER_CSV_USAGE:
                    raise DatasetImportError(
                        f"{where}: Usage {usage!r} is not one of {list(FER_CSV_USAGE)}"
                    )
                hint = FER_CSV_USAGE[usage]
            gray = pixels.astype(np.uint8).reshape(FER_CSV_SIDE, FER_CSV_SIDE)
            items.append(_Item(FER2013_LABELS[emotion], hint, where, data=_png_bytes(gray)))
    if not items:
        raise DatasetImportError(f"{path}: no rows")
    return items


def read_item(
    item: _Item, where: str, root: Path, max_bytes: int, follow_links: bool = False
) -> bytes:
    """The bytes of one source item, refusing what must not be read: special files (a FIFO
    would block forever), links out of the dataset folder (unless `follow_links`: a subset
    built of links), oversized and unreadable files."""
    if item.data is not None:
        return item.data
    path = item.file
    assert path is not None
    try:
        info = path.stat()  # follows links: what would be read
        if not stat.S_ISREG(info.st_mode):
            raise DatasetImportError(f"{where}: not a regular file ({_file_kind(info.st_mode)})")
        if not follow_links and not path.resolve().is_relative_to(root.resolve()):
            raise DatasetImportError(
                f"{where}: a link to {path.resolve()}, outside the dataset folder {root} "
                "(pass --follow-links if the folder is meant to be made of links)"
            )
        if info.st_size > max_bytes:
            raise DatasetImportError(
                f"{where}: {info.st_size} bytes, larger than dataset.max_file_bytes {max_bytes}"
            )
        return path.read_bytes()
    except OSError as exc:
        raise DatasetImportError(f"{where}: cannot read ({exc.strerror or exc})") from None


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}  # fmt: skip
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def decode_gray(data: bytes, where: str, max_pixels: int) -> tuple[np.ndarray, str]:
    """Grayscale uint8 pixels and Pillow's format name; errors name the file. The pixel cap
    is checked on the header, before anything is decoded (decompression bombs)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise DatasetImportError(
                    f"{where}: {width}x{height} pixels, more than dataset.max_pixels {max_pixels}"
                )
            img.load()
            fmt = str(img.format or "")
            gray = ImageOps.exif_transpose(img).convert("L")
            return np.asarray(gray, dtype=np.uint8), fmt
    except Image.DecompressionBombError as exc:  # Pillow's own limit, met before our check
        raise DatasetImportError(
            f"{where}: more pixels than dataset.max_pixels {max_pixels} (a decompression "
            f"bomb: {exc})"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DatasetImportError(f"{where}: not a readable image ({exc})") from None


# Import -----------------------------------------------------------------------------------
def _raw_path(data_root: Path, sha: str, ext: str) -> Path:
    return data_root / "raw" / sha[:2] / f"{sha}.{ext}"


def import_source(
    name: str,
    source: Path,
    data_root: Path,
    labels: Sequence[str],
    dataset: DatasetParams,
    split: str = "auto",
    run_date: str = "",
    skip_bad: bool = False,
    follow_links: bool = False,
    votes: Path | None = None,
    vote_map: dict[str, str | None] | None = None,
) -> ImportReport:
    """Import a folder dataset or a FER2013 CSV as source `name` (replacing its manifest).

    Two passes: read, decode and check every image, then write. With `skip_bad`, unreadable
    files are left out and listed in the report instead of stopping the import.

    `votes`: a per-image vote table (dataset.votes.read_vote_table; `vote_map` maps its
    columns onto labels, over dataset.label_map) whose files are paths in `source`. Each
    image's counts go into the manifest's `votes` column, and from there into images.csv,
    split.csv and the warehouse. A bad row or a voted file that is not in the folder stops
    the import (naming it), or with `skip_bad` is left out and listed."""
    source = Path(source)
    table = None
    if votes is not None:  # read first: a bad table fails before any image is decoded
        known = list(dict.fromkeys([*labels, *FER2013_LABELS, *dataset.ignore]))
        table = vt.read_vote_table(
            Path(votes), known, {**dataset.label_map, **(vote_map or {})}, skip_bad
        )
    if source.is_file() and source.suffix.lower() == ".csv":
        items = scan_fer_csv(source, split)
    elif source.is_dir():
        items = scan_folder(source, split)
    else:
        raise DatasetImportError(
            f"{source}: neither a folder of class folders nor a FER2013 .csv file"
        )
    for cls in sorted({i.source_label for i in items}):
        map_label(cls, labels, dataset, f"{source} ({name})")  # unknown classes fail up front

    rows: list[dict[str, object]] = []
    payloads: list[tuple[Path, Path | bytes]] = []  # files are re-read when writing: big
    # datasets are never held in memory whole
    skipped: list[str] = []
    if table is not None:
        skipped += table.skipped
        unknown = vt.check_files(table, (i.origin for i in items), skip_bad)
        skipped += [f"{Path(str(votes)).name}: {f}: not an image of {source}" for f in unknown]
    bad: list[str] = []
    for item in items:
        where = f"{source / item.origin}" if item.file else f"{source.name} ({item.origin})"
        try:
            data = read_item(item, where, source, dataset.max_file_bytes, follow_links)
            gray, fmt = decode_gray(data, where, dataset.max_pixels)
        except DatasetImportError as exc:
            (skipped if skip_bad else bad).append(str(exc))
            continue
        source_bytes: Path | bytes = data if item.file is None else item.file
        if fmt not in STORED_FORMATS:  # BMP, GIF, TIFF...: store a lossless PNG instead
            data, fmt = _png_bytes(gray), "PNG"
            source_bytes = data
        sha = hashlib.sha256(data).hexdigest()
        path = _raw_path(data_root, sha, STORED_FORMATS[fmt])
        payloads.append((path, source_bytes))
        rows.append(
            {
                "sha256": sha,
                "source": name,
                "source_label": item.source_label.strip().lower(),
                "split": item.split,
                "path": path.relative_to(data_root).as_posix(),
                "origin": item.origin,
                "format": "JPEG" if fmt == "MPO" else fmt,
                "width": gray.shape[1],
                "height": gray.shape[0],
                "run_date": run_date,
                **(
                    {VOTES_COLUMN: vt.encode_votes(table.counts(item.origin))}
                    if table is not None
                    else {}
                ),
            }
        )
    if bad:
        more = f" (and {len(bad) - 1} more unreadable file(s))" if len(bad) > 1 else ""
        raise DatasetImportError(
            f"{bad[0]}{more}; nothing imported (fix or remove them, or pass --skip-bad)"
        )
    if not rows:
        raise DatasetImportError(f"{source}: no readable images")

    for path, payload in payloads:  # content-addressed: an image already stored is kept
        if not path.exists():
            data = payload.read_bytes() if isinstance(payload, Path) else payload
            if hashlib.sha256(data).hexdigest() != path.name.split(".")[0]:
                raise DatasetImportError(f"{payload}: changed while being imported; run again")
            atomic_write(path, data)
    manifest = data_root / IMPORTS_DIR / f"{name}.csv"
    write_records(rows, manifest)
    skipped_list = data_root / IMPORTS_DIR / SKIPPED_DIR / f"{name}.csv"
    if skipped:  # beside the manifest, replaced by every import of the source
        write_records([{"reason": line} for line in skipped], skipped_list)
    else:
        skipped_list.unlink(missing_ok=True)
    report = ImportReport(
        name, manifest, len(rows), skipped=skipped, skipped_list=skipped_list if skipped else None
    )
    if table is not None:
        report.n_with_votes = sum(1 for row in rows if row[VOTES_COLUMN])
        report.n_without_votes = len(rows) - report.n_with_votes
    for row in rows:
        report.per_class[(str(row["source_label"]), str(row["split"]))] += 1
        if map_label(str(row["source_label"]), labels, dataset, name) is None:
            report.ignored[str(row["source_label"])] += 1
    return report


# Used by the clean and split stages -------------------------------------------------------
def import_manifests(data_root: Path) -> list[Path]:
    folder = Path(data_root) / IMPORTS_DIR
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def split_hints(data_root: Path) -> dict[str, str]:
    """sha256 -> split hint of every imported image that has one (first source wins)."""
    hints: dict[str, str] = {}
    for manifest in import_manifests(data_root):
        for row in read_records(manifest, MANIFEST_FIELDS):
            if row.get("split"):
                hints.setdefault(row["sha256"], row["split"])
    return hints


@dataclass
class ImportCleanResult:
    records: list  # images.ImageRecord, in manifest order
    ignored: int = 0  # images of classes left out by dataset.ignore


def square_resize(gray: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = gray.shape
    if h != w:  # centre square: face crops are near-square; never stretch a face
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        gray = gray[top : top + side, left : left + side]
    if gray.shape[0] == size:
        return gray
    interp = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def clean_imports(
    data_root: Path,
    faces_root: Path,
    labels: Sequence[str],
    dataset: DatasetParams,
    face_size: int,
    earlier: Sequence = (),
) -> ImportCleanResult:
    """Face crops + image records for every imported image (all manifests, name order).

    `earlier` are the records cleanup already made (scraped images): an imported image
    whose bytes or pixels match one of them is a duplicate. The first image seen wins."""
    import cv2

    from emotionops.clean import quality as iq
    from emotionops.clean.images import ImageRecord, reject_if_relabelled

    by_sha = {r.sha256: r for r in earlier}
    pixels = {r.pixel_sha256: r.sha256 for r in earlier if r.status == "accepted"}
    result = ImportCleanResult(records=[])
    for manifest in import_manifests(data_root):
        for row in read_records(manifest, MANIFEST_FIELDS):
            where = f"{manifest} ({row.get('origin', '')})"
            label = map_label(row["source_label"], labels, dataset, where)
            if label is None:
                result.ignored += 1
                continue
            sha = row["sha256"]
            if sha in by_sha:
                reject_if_relabelled(by_sha[sha], label, faces_root)
                continue
            record = ImageRecord(
                sha,
                "",
                label,
                width=int(row["width"]),
                height=int(row["height"]),
                format=row["format"],
                n_faces=1,  # an imported image is a face crop
                run_date=row.get("run_date", ""),
                votes=row.get(VOTES_COLUMN) or "",
            )
            by_sha[sha] = record
            result.records.append(record)
            raw = data_root / row["path"]
            if not raw.is_file():
                raise DatasetImportError(f"{where}: stored file {raw} is missing (re-import)")
            gray, _ = decode_gray(raw.read_bytes(), str(raw), dataset.max_pixels)
            record.pixel_sha256 = iq.pixel_hash(gray)
            first_sha = pixels.setdefault(record.pixel_sha256, sha)
            if first_sha != sha:
                record.duplicate_of = first_sha
                record.reason = f"exact duplicate (same pixels) of {first_sha}"
                continue
            std = float(gray.std())
            if std < dataset.min_std:
                record.reason = (
                    f"blank: pixel std {std:.2f} < {dataset.min_std:g} (dataset.min_std)"
                )
                del pixels[record.pixel_sha256]
                continue
            small = iq.shrink(gray)
            record.phash, record.dhash = iq.phash(small), iq.dhash(small)
            face = square_resize(gray, face_size)
            rel = Path(label) / f"{sha}.png"
            out = faces_root / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), face)
            record.face_path, record.status = rel.as_posix(), "accepted"
    return result
