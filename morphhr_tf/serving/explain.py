"""The ``explain_png`` signature: where in the image the model looked.

``explain_png(png: string [N], class_index: int32 [])`` returns
``{"saliency": float32 [N, S, S]}``: ``|d logit(p_c) / d x * x|`` (gradient
x input) of output column ``class_index`` (0 for a binary model; the label's
index in ``label_names`` for a multi-label one), at the model's resolution,
on the same decoded and resized pixels the ``predict_png`` signature scores.
``p_c`` is the model's own (uncalibrated) probability: calibration is
monotone per output and changes no explanation. The raw map is unnormalised;
:func:`finish_maps` smooths and scales it to [0, 1] as
:func:`morphhr_tf.evaluation.saliency.gradient_x_input` does, which is what
the predict CLI's ``--heatmaps`` writes. A ``class_index`` outside
``[0, L)`` fails the request with ``InvalidArgument``.

Gradient x input rather than Grad-CAM: a SavedModel signature sees the model
as one function, and the trunk's last feature map of the CPU demo's networks
is 2 x 2 cells, too coarse to point at anything (``docs/pointing_game.md``).
The gradient is taken inside the signature's graph: eager tape gradients
through oneDNN convolutions crash this TensorFlow CPU build for some batch
sizes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

EXPLAIN_PNG = "explain_png"
SALIENCY = "saliency"
CLASS_INPUT = "class_index"
#: Gaussian smoothing of :func:`finish_maps`, in model-input pixels.
DEFAULT_SIGMA = 2.0
_EPS = 1e-7


def input_saliency(model, images: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
    """Raw ``|gradient x input|`` of ``logit(p[:, class_index])``, ``[N, S, S]``."""
    num_outputs = int(model.output_shape[-1])
    check = tf.debugging.assert_less(
        class_index,
        num_outputs,
        message=f"{CLASS_INPUT}: must lie in [0, {num_outputs})",
    )
    check_low = tf.debugging.assert_non_negative(
        class_index, message=f"{CLASS_INPUT}: must lie in [0, {num_outputs})"
    )
    with tf.control_dependencies([check, check_low]):
        images = tf.identity(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        probs = tf.cast(model(images, training=False), tf.float32)
        p = tf.clip_by_value(tf.gather(probs, class_index, axis=1), _EPS, 1 - _EPS)
        score = tf.math.log(p) - tf.math.log1p(-p)
    grads = tape.gradient(score, images)
    return tf.abs(grads * images)[..., 0]


def make_explain_png(module) -> tf.types.experimental.GenericFunction:
    """The ``explain_png`` tf.function of a
    :class:`~morphhr_tf.serving.signatures.ServingModule`."""
    from morphhr_tf.serving.signatures import PNG_INPUT

    def explain(png, class_index):
        png = tf.ensure_shape(png, [None])
        images = module._decode_pngs(png, PNG_INPUT, "explain_png")
        side = module._side

        def saliency():
            return input_saliency(module.model, images, class_index)

        maps = tf.cond(
            tf.shape(images)[0] > 0, saliency, lambda: tf.zeros([0, side, side])
        )
        return {SALIENCY: tf.ensure_shape(maps, [None, side, side])}

    return tf.function(
        explain,
        input_signature=[
            tf.TensorSpec([None], tf.string, name=PNG_INPUT),
            tf.TensorSpec([], tf.int32, name=CLASS_INPUT),
        ],
    )


def finish_maps(raw: np.ndarray, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Smoothed (Gaussian, ``sigma`` pixels) and scaled to [0, 1] per map;
    NaN or Inf become 0 and a constant map stays 0."""
    from scipy import ndimage

    from morphhr_tf.evaluation.saliency import normalize_maps

    maps = np.nan_to_num(np.asarray(raw, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if sigma > 0:
        maps = np.stack(
            [ndimage.gaussian_filter(m, sigma, mode="nearest") for m in maps]
        )
    return normalize_maps(maps)
