"""A tiny end-to-end train on vote distributions (train.targets and partners auto) with label
smoothing, mixup and class weights: the run finishes, logs what it dropped (train and val),
and scores the test split on its folder labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from _factories import VOTE_LABELS as LABELS
from _factories import tiny_train_params, votes_split

pytestmark = pytest.mark.integration


def test_a_tiny_train_on_vote_distributions_runs_end_to_end(
    mlflow_server: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from emotionops.training.train import train

    split_csv = votes_split(tmp_path, {"train": 48, "val": 9, "test": 12})
    params = tiny_train_params(
        targets="auto", partners="auto", epochs=3, batch_size=16, label_smoothing=0.1,
        augment={"flip": True, "mixup": 0.2},
    )  # fmt: skip
    result = train(
        split_csv, tmp_path, LABELS, params, tracking_uri=mlflow_server,
        experiment="it-train-votes", progress=False,
    )  # fmt: skip
    # train: 16 of 48 dropped; val is scored on the FER+ majority: 3 of its 9 images have one
    assert (result.n_train, result.n_val, result.n_test) == (32, 3, 12)
    assert result.epochs_run == 3 and 0.0 <= result.test_accuracy <= 1.0
    run = MlflowClient(tracking_uri=mlflow_server).get_run(result.run_id)
    # auto on a split with votes: vote targets, and the deployed model has no partners
    assert run.data.params["targets"] == "votes" and run.data.params["partners"] == "[]"
    assert run.data.params["targets_requested"] == run.data.params["partners_requested"] == "auto"
    assert run.data.params["n_train_dropped_no_votes"] == "8"
    assert run.data.params["n_train_dropped_no_target"] == "8"
    assert run.data.params["n_train"] == "32"
    assert run.data.params["n_val_dropped_no_votes"] == "1"
    assert run.data.params["n_val_dropped_no_target"] == "5"
