"""Image decode and resize shared by training and serving.

:func:`resize_image` uses area interpolation: each output pixel is the mean of
the input area it covers, which is anti-aliased and, for an integer factor k,
exactly k x k average pooling, the downsampling MorphHR is defined with (the
base model sees the full-resolution image average-pooled by k). The training
input pipeline (:mod:`morphhr_tf.training.input_pipeline`) and the serving
signatures (:mod:`morphhr_tf.serving.signatures`) both decode and resize
through this module, so a served image gives the model the same pixels as the
same image in training.

Ingest (:class:`morphhr_tf.data.preprocessing.Resize`) resizes differently,
with its own numpy / scipy box filter (``area_resize``): it shrinks the large
decoded DICOM once per image, on the CPU of a Beam worker with no TensorFlow
graph, at arbitrary non-integer ratios (and optionally keeping the aspect
ratio), before quantizing to the stored 16-bit PNG; the functions here run
inside ``tf.data`` and the exported SavedModel, on that stored PNG.
"""

from __future__ import annotations

import tensorflow as tf

from morphhr_tf.data.tfrecord_codec import decode_image

__all__ = ["decode_and_resize", "resize_image"]


def resize_image(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes a float32 [H, W, 1] (or [N, H, W, 1]) image to size x size.

    Area interpolation (anti-aliased; for an integer factor k it is exactly
    k x k average pooling, the downsampling MorphHR is defined with). An image
    already at the target size passes through unchanged.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    shape = tf.shape(image)
    h, w = shape[-3], shape[-2]
    same = tf.logical_and(tf.equal(h, size), tf.equal(w, size))
    return tf.cond(
        same,
        lambda: image,
        lambda: tf.image.resize(image, [size, size], method="area"),
    )


def decode_and_resize(png: tf.Tensor, size: int) -> tf.Tensor:
    """One PNG string -> float32 [size, size, 1] in [0, 1]."""
    image = resize_image(decode_image(png), size)
    return tf.ensure_shape(image, [size, size, 1])
