"""The TF.js graph-model loader: a graph written here op by op (random weights) must give what
TensorFlow computes for the same ops; unknown ops and broken files are named; the installed
human-models network keeps its published accuracy on real faces (skips without the data)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from emotionops.training.tfjs import TfjsGraphError, load_tfjs_graph_model


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(values: list[int]) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


def write_graph(folder: Path, extra_op: str | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    """input 12x12x1 -> conv 3x3/2 SAME + bias + relu (4 ch) -> depthwise 3x3 SAME ->
    conv 1x1 + bias (4 ch) -> maxpool 3x3/2 SAME, added to a strided 1x1 conv of the first
    activation -> relu -> conv 3x3 + bias (3 ch) -> mean over H, W -> softmax."""
    rng = np.random.default_rng(7)
    w = {
        "k1": rng.normal(size=(3, 3, 1, 4)).astype(np.float32),
        "b1": rng.normal(size=(4,)).astype(np.float32),
        "dw": rng.normal(size=(3, 3, 4, 1)).astype(np.float32),
        "pw": rng.normal(size=(1, 1, 4, 4)).astype(np.float32),
        "pb": rng.normal(size=(4,)).astype(np.float32),
        "sk": rng.normal(size=(1, 1, 4, 4)).astype(np.float32),
        "sb": rng.normal(size=(4,)).astype(np.float32),
        "k2": rng.normal(size=(3, 3, 4, 3)).astype(np.float32),
        "b2": rng.normal(size=(3,)).astype(np.float32),
        "axes": np.array([1, 2], dtype=np.int32),
    }

    def conv(name, src, k, b, strides, padding, fused):
        return {
            "name": name, "op": "_FusedConv2D", "input": [src, k, b],
            "attr": {"strides": _ints(strides), "padding": _s(padding),
                     "fused_ops": {"list": {"s": [_s(f)["s"] for f in fused]}}},
        }  # fmt: skip

    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [
            {"size": "-1"}, {"size": "12"}, {"size": "12"}, {"size": "1"}]}}}},
        *({"name": k, "op": "Const"} for k in w),
        conv("c1", "x", "k1", "b1", [1, 2, 2, 1], "SAME", ["BiasAdd", "Relu"]),
        {"name": "d", "op": "DepthwiseConv2dNative", "input": ["c1", "dw"],
         "attr": {"strides": _ints([1, 1, 1, 1]), "padding": _s("SAME")}},
        conv("p", "d", "pw", "pb", [1, 1, 1, 1], "VALID", ["BiasAdd"]),
        {"name": "m", "op": "MaxPool", "input": ["p"],
         "attr": {"ksize": _ints([1, 3, 3, 1]), "strides": _ints([1, 2, 2, 1]), "padding": _s("SAME")}},
        conv("s", "c1", "sk", "sb", [1, 2, 2, 1], "SAME", ["BiasAdd"]),
        {"name": "a", "op": "AddV2", "input": ["m", "s"]},
        {"name": "r", "op": "Relu", "input": ["a"]},
        conv("c2", "r", "k2", "b2", [1, 1, 1, 1], "SAME", ["BiasAdd"]),
        {"name": "g", "op": "Mean", "input": ["c2", "axes"], "attr": {"keep_dims": {"b": False}}},
        {"name": "sm", "op": extra_op or "Softmax", "input": ["g"]},
        {"name": "Identity", "op": "Identity", "input": ["sm"]},
    ]  # fmt: skip
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": k, "shape": list(v.shape), "dtype": "int32" if v.dtype == np.int32 else "float32"}
        for k, v in w.items()]}]  # fmt: skip
    (folder / "w.bin").write_bytes(b"".join(v.tobytes() for v in w.values()))
    spec = {"format": "graph-model", "modelTopology": {"node": nodes}, "weightsManifest": manifest}
    (folder / "model.json").write_text(json.dumps(spec))
    return folder / "model.json", w


def reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    import tensorflow as tf

    c1 = tf.nn.relu(tf.nn.conv2d(x, w["k1"], 2, "SAME") + w["b1"])
    d = tf.nn.depthwise_conv2d(c1, w["dw"], [1, 1, 1, 1], "SAME")
    p = tf.nn.conv2d(d, w["pw"], 1, "VALID") + w["pb"]
    m = tf.nn.max_pool2d(p, 3, 2, "SAME")
    s = tf.nn.conv2d(c1, w["sk"], 2, "SAME") + w["sb"]
    c2 = tf.nn.conv2d(tf.nn.relu(m + s), w["k2"], 1, "SAME") + w["b2"]
    return tf.nn.softmax(tf.reduce_mean(c2, axis=[1, 2])).numpy()


def test_rebuilt_graph_computes_what_tensorflow_computes(tmp_path: Path) -> None:
    model_json, weights = write_graph(tmp_path)
    model = load_tfjs_graph_model(model_json, name="tiny")
    assert model.input_shape == (None, 12, 12, 1) and model.output_shape == (None, 3)
    x = np.random.default_rng(1).normal(size=(5, 12, 12, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), reference(x, weights), atol=1e-5)


def test_unknown_op_and_broken_files_are_named(tmp_path: Path) -> None:
    model_json, _ = write_graph(tmp_path, extra_op="Sigmoid")
    with pytest.raises(TfjsGraphError, match=r"op Sigmoid \(node sm\) is not supported"):
        load_tfjs_graph_model(model_json)
    (tmp_path / "w.bin").write_bytes(b"\0" * 16)  # shard cut short
    with pytest.raises(TfjsGraphError, match="weight shards end before"):
        load_tfjs_graph_model(model_json)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(TfjsGraphError, match=r"not a readable TF\.js graph model"):
        load_tfjs_graph_model(model_json)


def test_partners_on_real_faces(real_data: Path) -> None:
    """Both installed partners on the first 100 FER2013 PublicTest faces of each of the four
    default labels: their published 4-label accuracy is ~0.78, so 0.6 catches a wrong input
    scale, a wrong label order or a broken rebuild (each measured at or below chance)."""
    from PIL import Image

    from emotionops.params import TrainParams
    from emotionops.training.models import build_partners

    labels = ["happy", "sad", "surprise", "neutral"]
    images, truth = [], []
    for i, label in enumerate(labels):
        for path in sorted((real_data / "fer2013" / "publictest" / label).iterdir())[:100]:
            images.append(np.asarray(Image.open(path).convert("L"), dtype=np.float32))
            truth.append(i)
    x = np.stack(images)[..., None]
    for model in build_partners(TrainParams(partners=["fer", "human"]), labels):
        accuracy = float(np.mean(np.asarray(model.predict(x, verbose=0)).argmax(1) == truth))
        assert accuracy > 0.6, (model.name, accuracy)
