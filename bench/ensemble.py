"""What the deployed model's extras are worth, after a training run: partners and
test-time views (issue 20), on both rulers, with no retraining.

    .venv/bin/python bench/ensemble.py --project DIR [--partners fer,human] [--shift 2]

DIR is a project a training run left (a `bench/training.py --work W` run leaves W/labels4
and W/labels7): its data/split.csv (with votes for the FER+ ruler), data/faces/ and
data/model/ (model.keras, labels.json); its params.yaml, else the repo's. The trained model
is scored on the frozen test split as it was exported, then averaged with each subset of
the partners (equal weights, as models.inference_model deploys them) and over more views
of each face (the mirror, and shifts of +-`shift` pixels with edge padding, on each
member). Every probability is computed once per member and view, and the table's rows are
averages of those, so the rows differ only in what they average.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def views(images: np.ndarray, shift: int) -> dict[str, np.ndarray]:
    """The test faces as the deployed model sees them, their mirror, and (shift > 0) the
    four shifts of both by `shift` pixels (edges repeated, so no black border appears)."""
    out = {"face": images, "mirror": images[:, :, ::-1, :]}
    if shift:
        s = shift
        padded = {
            k: np.pad(v, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge") for k, v in out.items()
        }
        side = images.shape[1]
        for (name, pad), (dy, dx) in itertools.product(
            padded.items(), ((0, s), (2 * s, s), (s, 0), (s, 2 * s))
        ):
            out[f"{name}+({dy - s},{dx - s})"] = pad[:, dy : dy + side, dx : dx + side, :]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--project",
        type=Path,
        help="a trained project folder (bench/training.py --work W: W/labels4)",
    )
    parser.add_argument("--quick", action="store_true", help="accepted for `make bench`; no effect")
    parser.add_argument("--partners", default="fer,human", help="partner networks to try")
    parser.add_argument(
        "--shift", type=int, default=2, help="pixels of the shifted views (0: none)"
    )
    args = parser.parse_args()
    if args.project is None:  # `make bench` runs every script: this one needs a trained project
        print("skipped: no --project (train one first: bench/training.py --work W, then W/labels4)")
        return 0

    import keras
    from rich.console import Console
    from rich.table import Table

    from emotionops.params import load_params
    from emotionops.paths import DataPaths
    from emotionops.training.evaluate import evaluate_probs, split_eval_set
    from emotionops.training.models import build_partners

    sys.path.insert(0, str(Path(__file__).parent))
    from training import cpu_line

    project = args.project.resolve()
    own = project / "params.yaml"  # a bench project has none: it ran on the repo's
    params = load_params(own if own.is_file() else Path(__file__).parents[1] / "params.yaml")
    paths = DataPaths(project / "data")
    labels = json.loads((paths.model_dir / "labels.json").read_text())["labels"]
    test = split_eval_set(paths.split_csv, paths.faces, labels, params.train.image_size)
    x = test.images.astype(np.float32)
    trained = keras.models.load_model(paths.model_dir / "model.keras", compile=False)
    members: dict[str, Any] = {"trained (as exported)": trained}
    names = [p for p in args.partners.split(",") if p]
    for name, model in zip(names, build_partners(params.train, labels, names), strict=True):
        members[name] = model
    probs = {
        (member, view): np.asarray(model.predict(v, batch_size=256, verbose=0))
        for member, model in members.items()
        for view, v in views(x, args.shift).items()
    }
    all_views = sorted({view for _, view in probs})
    rows = []
    for k in range(len(names) + 1):
        for extra in itertools.combinations(names, k):
            group = ["trained (as exported)", *extra]
            for view_set in (["face"], all_views) if args.shift else (["face"],):
                mean = np.mean([probs[m, v] for m in group for v in view_set], axis=0)
                ev = evaluate_probs(
                    lambda _x, p=mean: p, x, test.labels, labels, flip_check=False, votes=test.votes
                )
                rows.append((" + ".join(group), len(view_set), ev))
    table = Table(title=f"{project.name}: test split, {len(x)} faces; CPU {cpu_line()}")
    for column in ("members", "views", "original acc", "original F1", "FER+ acc", "FER+ F1"):
        table.add_column(column, justify="right")
    for group, n_views, ev in rows:
        fp = ev.ferplus
        table.add_row(
            group, str(n_views), f"{ev.accuracy:.3f}", f"{ev.macro_f1:.3f}",
            f"{fp.accuracy:.3f}" if fp else "-", f"{fp.macro_f1:.3f}" if fp else "-",
        )  # fmt: skip
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
