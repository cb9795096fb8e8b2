"""TFLite export for the edge service, and a parity check against the Keras model.

The edge pulls `runs:/<run_id>/tflite` (model.tflite + labels.json) and runs it with
ai-edge-litert: 0.2-0.35 ms per face vs 36+ ms for Keras (PLATFORM-NOTES). The float model is
what the edge runs; a dynamic-range quantised copy (int8 weights, ~4x smaller, not faster
here) is exported beside it with its own measured parity, for devices short of storage.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotionops.errors import EmotionOpsError

if TYPE_CHECKING:
    import keras

TFLITE_FILE = "model.tflite"
LABELS_FILE = "labels.json"


class ExportError(EmotionOpsError):
    """The model could not be converted to TFLite or the export cannot be run."""


def export_tflite(
    model: keras.Model,
    out_dir: Path,
    labels: list[str],
    image_size: int,
    quantize: str = "none",
) -> Path:
    """Write `model.tflite` and `labels.json` into out_dir; return the model path.

    `quantize`: none (float32) | dynamic (dynamic-range: int8 weights, float activations)."""
    import tensorflow as tf

    n_out = model.output_shape[-1]
    if n_out != len(labels):
        raise ExportError(f"model has {n_out} outputs but {len(labels)} labels were given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Keras 3 prints a page of endpoint/capture listings while converting: keep logs concise.
        with contextlib.redirect_stdout(io.StringIO()):
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            if quantize == "dynamic":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            elif quantize != "none":
                raise ExportError(f"unknown quantisation {quantize!r} (none | dynamic)")
            flat = converter.convert()
    except Exception as exc:  # the converter raises many unrelated types
        raise ExportError(f"TFLite conversion failed: {exc}") from exc
    path = out_dir / TFLITE_FILE
    path.write_bytes(flat)
    meta = {
        "labels": list(labels),
        "image_size": image_size,
        "input": f"float32 [N,{image_size},{image_size},1] raw pixel values 0..255",
    }
    if quantize != "none":
        meta["quantization"] = quantize
    (out_dir / LABELS_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def _interpreter(tflite_path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the maintained runtime is missing: tf.lite's deprecated copy still works
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    try:
        return Interpreter(model_path=str(tflite_path))
    except (ValueError, RuntimeError) as exc:  # not a flatbuffer, unsupported ops
        raise ExportError(f"{tflite_path}: not a loadable TFLite model ({exc})") from exc


def tflite_predict(tflite_path: Path, x: np.ndarray) -> np.ndarray:
    """Probabilities for a batch, one image per invoke (as the edge runs it)."""
    interp = _interpreter(Path(tflite_path))
    try:
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"{tflite_path}: not a loadable TFLite model ({exc})") from exc
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    expected = tuple(inp["shape"][1:])
    if tuple(x.shape[1:]) != expected:
        raise ExportError(f"input shape {x.shape[1:]} does not match the TFLite model's {expected}")
    probs = []
    for image in x:
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        probs.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(probs)


def tflite_input_size(tflite_path: Path) -> int:
    """Side S of the model's [1, S, S, 1] input."""
    interp = _interpreter(Path(tflite_path))
    return int(interp.get_input_details()[0]["shape"][1])


def tflite_parity(model: keras.Model, tflite_path: Path, x: np.ndarray) -> float:
    """Max absolute difference between Keras and TFLite class probabilities on x."""
    return parity_report(model, tflite_path, x)["max_abs_diff"]


def parity_report(model: keras.Model, tflite_path: Path, x: np.ndarray) -> dict[str, float]:
    """Keras vs TFLite on x: max and mean absolute probability difference, and the share of
    images where both pick the same class (what matters to the edge's counts)."""
    if len(x) == 0:
        raise ExportError("parity check needs at least one image")
    x = np.asarray(x, dtype=np.float32)
    keras_probs = np.asarray(model(x, training=False), dtype=np.float32)
    lite_probs = tflite_predict(tflite_path, x)
    diff = np.abs(keras_probs - lite_probs)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float(np.mean(keras_probs.argmax(1) == lite_probs.argmax(1))),
        "n_images": float(len(x)),
    }
