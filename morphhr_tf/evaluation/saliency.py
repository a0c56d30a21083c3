"""Saliency maps at the model's input resolution: Grad-CAM and gradient x input.

Two maps answer "where did the model look?" for one output of a sigmoid
classifier (the binary task's ``[N, 1]`` or a multi-label ``[N, L]`` head,
``class_index`` picking the column):

- :func:`grad_cam` (Selvaraju et al., 2017): the feature maps of one layer,
  weighted by the spatial mean of the score's gradient, rectified and
  bilinearly upsampled to the input size. By default the layer is the trunk's
  last convolutional feature map (:func:`trunk_feature_layer`, in ResNet18
  the last block's output ``stack3_block1_out``, the rectified maps the
  global pool reads), which for a small input is a few pixels across: coarse.
  Any other layer can be named, e.g. MorphHR's full-resolution front
  (:func:`front_feature_layer`).
- :func:`gradient_x_input`: ``|d score / d x * x|`` per input pixel, summed
  over channels and Gaussian-smoothed: a map at the full input resolution that
  sees every path, MorphHR's front and detail branch included.

The score is the pre-activation logit when the model ends in one
``Activation`` layer (as :func:`morphhr_tf.models.resnet18` and
:func:`morphhr_tf.models.build_morphhr` build them), so a saturated sigmoid
does not flatten the gradient; otherwise the output itself. Gradients run on
TensorFlow (``tf.GradientTape`` inside a ``tf.function``), as the rest of the
evaluation side does.

Every map is ``[N, H, W]`` float32 in [0, 1] (divided by its maximum), finite;
a map with no positive value (zero gradient, e.g. a constant image) is all
zeros, never NaN.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage

from morphhr_tf.models.morphhr import FRONT_PREFIX, MORPHHR_PREFIX

__all__ = [
    "front_feature_layer",
    "grad_cam",
    "gradient_x_input",
    "normalize_maps",
    "trunk_feature_layer",
]


def trunk_feature_layer(model: keras.Model) -> str:
    """The name of the trunk's last layer with a 4-D (feature map) output.

    Layers added by MorphHR (named ``morphhr_*``: the front, the downsampler
    and the detail branch) are skipped, so for ResNet18 and for MorphHR on it
    this is the last block's output, ``stack3_block1_out``.

    Args:
        model: a functional Keras model.

    Returns:
        The layer name.

    Raises:
        ValueError: when no such layer exists.
    """
    for layer in reversed(model.layers):
        if layer.name.startswith(MORPHHR_PREFIX) or isinstance(
            layer, keras.layers.InputLayer
        ):
            continue
        if len(_output_shape(layer)) == 4:
            return layer.name
    raise ValueError(
        f"Model {model.name!r} has no layer with a 4-D feature-map output outside "
        f"the {MORPHHR_PREFIX!r} layers. Pass layer_name= explicitly."
    )


def front_feature_layer(model: keras.Model) -> str:
    """The name of the last full-resolution front layer of a MorphHR model.

    Args:
        model: a model from :func:`morphhr_tf.models.build_morphhr` with at
            least one front block.

    Returns:
        The layer name, e.g. ``morphhr_front_1_act``.

    Raises:
        ValueError: when the model has no front layer.
    """
    names = [
        layer.name for layer in model.layers if layer.name.startswith(FRONT_PREFIX)
    ]
    if not names:
        raise ValueError(
            f"Model {model.name!r} has no layer named {FRONT_PREFIX!r}*: not a "
            "MorphHR model with a front (front_blocks >= 1)."
        )
    return names[-1]


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Rectifies each map and divides it by its maximum.

    Args:
        maps: ``[N, H, W]`` raw maps (non-finite values count as 0).

    Returns:
        float32 ``[N, H, W]`` in [0, 1]; a map with no positive value is all 0.
    """
    maps = np.nan_to_num(np.asarray(maps, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    maps = np.maximum(maps, 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1) if maps.size else np.zeros(0)
    scale = np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 0.0)
    return (maps * scale[:, None, None].astype(np.float32)).astype(np.float32)


def grad_cam(
    model: keras.Model,
    images: np.ndarray,
    *,
    layer_name: str | None = None,
    class_index: int = 0,
    batch_size: int = 8,
) -> np.ndarray:
    """Grad-CAM of one output, upsampled to the input resolution.

    Args:
        model: a functional model with one image input ``(S, S, C)`` and a
            ``[N, L]`` output (``L = 1`` for the binary task).
        images: ``[N, S, S]`` or ``[N, S, S, C]`` float images, as the model
            takes them (in [0, 1]).
        layer_name: the layer whose feature maps are weighted; ``None``:
            :func:`trunk_feature_layer`.
        class_index: which output column to explain, ``0 <= class_index < L``.
        batch_size: images per gradient pass.

    Returns:
        float32 ``[N, S, S]`` maps in [0, 1].

    Raises:
        ValueError: on images of the wrong shape, an unknown layer, a layer
            without a 4-D output or a class index out of range.

    Example:

    >>> from morphhr_tf.models import resnet18
    >>> model = resnet18((32, 32, 1), width=4)
    >>> grad_cam(model, np.zeros((2, 32, 32), np.float32)).shape
    (2, 32, 32)
    """
    x = _check_images(model, images)
    _check_batch_size(batch_size)
    layer_name = trunk_feature_layer(model) if layer_name is None else layer_name
    try:
        layer = model.get_layer(layer_name)
    except ValueError as error:
        raise ValueError(
            f"No layer named {layer_name!r} in model {model.name!r}. "
            f"Received: layer_name={layer_name!r}"
        ) from error
    if len(_output_shape(layer)) != 4:
        raise ValueError(
            f"Grad-CAM needs a layer with a 4-D (N, H, W, C) output; {layer_name!r} "
            f"outputs {_output_shape(layer)}. Received: layer_name={layer_name!r}"
        )
    score = _score_tensor(model)
    _check_class_index(class_index, int(score.shape[-1]))
    step = _cam_step(keras.Model(model.inputs, [layer.output, score]), class_index)
    side = tf.constant(x.shape[1:3], tf.int32)
    maps = [
        step(tf.constant(x[start : start + batch_size]), side).numpy()
        for start in range(0, len(x), batch_size)
    ]
    return normalize_maps(np.concatenate(maps))


def gradient_x_input(
    model: keras.Model,
    images: np.ndarray,
    class_index: int = 0,
    *,
    sigma: float = 2.0,
    batch_size: int = 8,
) -> np.ndarray:
    """Smoothed ``|gradient x input|`` of one output, at the input resolution.

    Args:
        model: a functional model with one image input and a ``[N, L]`` output.
        images: ``[N, S, S]`` or ``[N, S, S, C]`` float images.
        class_index: which output column to explain.
        sigma: Gaussian smoothing in input pixels (0: none).
        batch_size: images per gradient pass.

    Returns:
        float32 ``[N, S, S]`` maps in [0, 1].

    Raises:
        ValueError: on images of the wrong shape, a class index out of range
            or a negative ``sigma``.
    """
    x = _check_images(model, images)
    _check_batch_size(batch_size)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(
            f"sigma must be a finite number >= 0. Received: sigma={sigma!r}"
        )
    score = _score_tensor(model)
    _check_class_index(class_index, int(score.shape[-1]))
    step = _input_gradient_step(keras.Model(model.inputs, score), class_index)
    maps = [
        step(tf.constant(x[start : start + batch_size])).numpy()
        for start in range(0, len(x), batch_size)
    ]
    maps = np.nan_to_num(np.concatenate(maps), nan=0.0, posinf=0.0, neginf=0.0)
    if sigma > 0:
        maps = np.stack(
            [ndimage.gaussian_filter(m, sigma, mode="nearest") for m in maps]
        )
    return normalize_maps(maps)


# The gradient steps run as tf.functions: eager tape gradients through
# oneDNN convolutions crash the process (double free / segfault) for some
# batch sizes (1 and 3 here) on TensorFlow 2.21 CPU builds; graph mode does not.
def _cam_step(probe: keras.Model, class_index: int):
    """A tf.function: images, output side -> rectified Grad-CAM maps."""

    @tf.function(reduce_retracing=True)
    def step(batch, side):
        with tf.GradientTape() as tape:
            features, scores = probe(batch, training=False)
            target = tf.cast(scores[:, class_index], tf.float32)
        grads = tf.cast(tape.gradient(target, features), tf.float32)
        features = tf.cast(features, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
        return tf.image.resize(cam, side, method="bilinear")[..., 0]

    return step


def _input_gradient_step(probe: keras.Model, class_index: int):
    """A tf.function: images -> ``|sum over channels of gradient x input|``."""

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            target = tf.cast(probe(batch, training=False)[:, class_index], tf.float32)
        grads = tf.cast(tape.gradient(target, batch), tf.float32)
        return tf.abs(tf.reduce_sum(grads * batch, axis=-1))

    return step


def _output_shape(layer) -> tuple:
    """A layer's output shape (one output), or ``()`` when it has several."""
    output = layer.output
    return tuple(output.shape) if hasattr(output, "shape") else ()


def _score_tensor(model: keras.Model):
    """The pre-activation logits when the output is one Activation layer."""
    head = model.layers[-1]
    if isinstance(head, keras.layers.Activation) and model.output is head.output:
        try:
            return head.input
        except (AttributeError, ValueError):  # shared layer: several inputs
            pass
    return model.output


def _check_images(model: keras.Model, images) -> np.ndarray:
    """``images`` as float32 ``[N, H, W, C]`` that fit the model's input."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            "Saliency needs a model with one (H, W, C) image input. "
            f"Received: inputs {[tuple(t.shape) for t in model.inputs]}."
        )
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    want = tuple(model.inputs[0].shape[1:])
    fits = x.ndim == 4 and len(x) > 0
    fits = fits and all(w is None or w == g for w, g in zip(want, x.shape[1:]))
    if not fits:
        raise ValueError(
            f"images must be [N, H, W] or [N, H, W, C] matching the model input "
            f"{want}, with N >= 1. Received: shape={np.shape(images)}"
        )
    return x


def _check_class_index(class_index, outputs: int) -> None:
    if (
        isinstance(class_index, bool)
        or not isinstance(class_index, (int, np.integer))
        or not 0 <= class_index < outputs
    ):
        raise ValueError(
            f"class_index must be an integer in [0, {outputs}) for a model with "
            f"{outputs} output(s). Received: class_index={class_index!r}"
        )


def _check_batch_size(batch_size) -> None:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )
