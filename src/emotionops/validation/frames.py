"""The tables the suites see, built with pandas from CSV rows (all strings) or DataFrames.

WHY a frame layer: CSV files carry every value as text, so types are restored here the same
way for the pipeline and for tests, keeping values that do not parse (a width of "abc")
as they are, so a type expectation can name them instead of the frame silently turning them
into nulls. Facts GX has no expectation for (rows per label including labels with none,
splits per near-duplicate group, class balance) become derived columns or small derived
tables, so that standard expectations check them and they show up in Data Docs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from emotionops.dataset.split import SPLIT_COLUMNS, SPLITS, near_duplicate_groups

#: Columns of a cleaned URL manifest: the scraper's manifest columns + the normalised URL's hash.
URL_COLUMNS = (
    "label",
    "query",
    "engine",
    "rank",
    "page_url",
    "image_url",
    "run_date",
    "url_sha256",
)
URL_INTS = ("rank",)
#: images.csv (emotionops.clean.images.ImageRecord).
IMAGE_COLUMNS = (
    "sha256", "url_sha256", "label", "width", "height", "format", "n_faces", "status", "reason",
    "face_path", "run_date", "pixel_sha256", "phash", "dhash", "duplicate_of", "brightness",
    "contrast", "entropy", "drawing_score", "sharpness", "align_angle", "votes",
)  # fmt: skip
#: images.csv columns a table may lack (files written before them): the schema does not require them.
IMAGE_OPTIONAL = ("votes",)
IMAGE_INTS = ("width", "height", "n_faces")
IMAGE_FLOATS = ("brightness", "contrast", "entropy", "drawing_score", "sharpness", "align_angle")

Rows = pd.DataFrame | Iterable[Mapping[str, Any]]


def to_frame(
    data: Rows, columns: Sequence[str], ints: Sequence[str] = (), floats: Sequence[str] = ()
) -> pd.DataFrame:
    """A copy of `data` with empty strings as nulls and numeric columns typed.

    An empty batch without a header gets the expected columns, so the suite reports "no
    rows" rather than a missing column per expectation."""
    df = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    if df.empty and len(df.columns) == 0:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    df = df.reset_index(drop=True)
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            df[col] = df[col].astype(object).where(df[col].notna() & (df[col] != ""), None)
    for col in ints:
        if col in df.columns:
            df[col] = _numeric(df[col], integer=True)
    for col in floats:
        if col in df.columns:
            df[col] = _numeric(df[col], integer=False)
    return df


def _numeric(values: pd.Series, integer: bool) -> pd.Series:
    """Numbers where the text parses; unparsable text (and, for an integer column,
    non-integral numbers) left as they are, in an object column, for a type expectation."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & parsed.isna()
    if integer:
        bad |= parsed.notna() & (parsed % 1 != 0)
    if not bad.any():
        if not integer:
            return parsed.astype(float)
        if parsed.notna().all():
            return parsed.astype("int64")
    out = []
    for raw, num, wrong in zip(values, parsed, bad, strict=True):
        if wrong:
            out.append(raw)
        elif pd.isna(num):
            out.append(None)
        else:
            out.append(int(num) if integer else float(num))
    return pd.Series(out, index=values.index, dtype=object)


def _is_hash64(value: Any) -> bool:
    """16 hex digits (a 64-bit pHash/dHash as images.py writes them)."""
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{16}", value) is not None


def _as_number(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def url_frames(rows: Rows, labels: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cleaned URL rows, rows per configured label: `label`, `rows`; zero when absent)."""
    df = to_frame(rows, URL_COLUMNS, ints=URL_INTS)
    counts = df["label"].value_counts() if "label" in df.columns else pd.Series(dtype=int)
    per_label = pd.DataFrame(
        {"label": list(labels), "rows": [int(counts.get(lab, 0)) for lab in labels]}
    )
    return df, per_label


def image_frame(rows: Rows) -> pd.DataFrame:
    """images.csv rows plus derived columns: `aspect_ratio` (long/short side), `pixels`, and
    `expected_face_path` (`<label>/<sha256>.png`, where cleanup writes the crop)."""
    df = to_frame(rows, IMAGE_COLUMNS, ints=IMAGE_INTS, floats=IMAGE_FLOATS)
    if {"width", "height"} <= set(df.columns):
        w, h = _as_number(df["width"]), _as_number(df["height"])
        short, long = pd.concat([w, h], axis=1).min(axis=1), pd.concat([w, h], axis=1).max(axis=1)
        df["aspect_ratio"] = (long / short.where(short > 0)).astype(float)
        df["pixels"] = (w * h).astype(float)
    if {"label", "sha256"} <= set(df.columns):
        df["expected_face_path"] = _expected_path(df)
    return df


def _expected_path(df: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            f"{lab}/{sha}.png" if lab is not None and sha is not None else None
            for lab, sha in zip(df["label"], df["sha256"], strict=True)
        ],
        index=df.index,
        dtype=object,
    )


def split_frames(
    rows: Rows,
    image_rows: Rows,
    labels: Sequence[str],
    near_dup: tuple[int, int],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(split rows with derived leak checks, faces per label and split).

    Derived columns of the split rows:
      - `expected_path`: `<label>/<sha256>.png`;
      - `image_accepted`: the sha256 is an accepted row of images.csv;
      - `sha256_splits`: how many splits hold this sha256 (a leak when > 1);
      - `near_dup_group`: smallest sha256 of the row's near-duplicate group (pHash + dHash
        from images.csv, thresholds `near_dup`), null for a row with no near duplicate;
      - `near_dup_splits`: how many splits its near-duplicate group spans (a leak when > 1).
    Per label: `images` and one column per split, and `ratio_to_smallest` (images / images
    of the smallest label; its maximum is the class imbalance)."""
    df = to_frame(rows, SPLIT_COLUMNS)
    images = to_frame(image_rows, IMAGE_COLUMNS)
    accepted = (
        images[images["status"] == "accepted"]
        if {"status", "sha256"} <= set(images.columns)
        else images.iloc[0:0]
    )
    # Malformed hashes are left out here (the image suite reports them), never a crash.
    hashes = {
        str(r["sha256"]): tuple(
            h if _is_hash64(h) else None for h in (r.get("phash"), r.get("dhash"))
        )
        for r in accepted.to_dict("records")
    }
    has_cols = {"label", "sha256", "split"} <= set(df.columns)
    if has_cols:
        df["expected_path"] = _expected_path(df)
        df["image_accepted"] = df["sha256"].map(lambda s: s in hashes).astype(bool)
        df["sha256_splits"] = df.groupby("sha256", dropna=False)["split"].transform("nunique")
        pairs = [hashes.get(str(s), (None, None)) for s in df["sha256"]]
        with_hashes = [{"phash": ph, "dhash": dh} for ph, dh in pairs]
        group = pd.Series([None] * len(df), index=df.index, dtype=object)
        spans = pd.Series([1] * len(df), index=df.index, dtype="int64")
        for members in near_duplicate_groups(with_hashes, *near_dup):
            anchor = min(str(df.at[i, "sha256"]) for i in members)
            n_splits = df.loc[members, "split"].nunique()
            for i in members:
                group.at[i], spans.at[i] = anchor, n_splits
        df["near_dup_group"], df["near_dup_splits"] = group, spans

    cells = (
        df.groupby(["label", "split"]).size()
        if has_cols
        else pd.Series(dtype="int64", index=pd.MultiIndex.from_tuples([], names=["label", "split"]))
    )
    per_label = pd.DataFrame({"label": list(labels)})
    for split in SPLITS:
        per_label[split] = [int(cells.get((lab, split), 0)) for lab in labels]
    per_label["images"] = per_label[list(SPLITS)].sum(axis=1).astype("int64")
    smallest = int(per_label["images"].min()) if len(per_label) else 0
    if smallest > 0:
        ratio = per_label["images"] / smallest
    else:  # a label with no faces: infinitely unbalanced, unless there are no faces at all
        ratio = per_label["images"].map(lambda n: float("inf") if n else 1.0)
    per_label["ratio_to_smallest"] = ratio.astype(float)
    return df, per_label
