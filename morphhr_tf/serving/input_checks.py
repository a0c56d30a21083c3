"""Checks the serving signatures run on their inputs before anything else
(:mod:`morphhr_tf.serving.signatures`): float images and PNG strings."""

from __future__ import annotations

import tensorflow as tf

# Input tensor names, as TF Serving's REST "instances"/"inputs" name them.
IMAGES_INPUT = "images"
PNG_INPUT = "png"

# Largest width x height a PNG may declare (8192 x 8192): a full-field
# mammogram at acquisition size is ~14 MP; more is refused before decoding.
MAX_PNG_PIXELS = 1 << 26
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_images(images: tf.Tensor, name: str = IMAGES_INPUT) -> tf.Tensor:
    """Float images [N, H, W, 1] -> the same, or ``InvalidArgument``.

    Refuses a zero height or width, NaN or Inf pixels and values outside
    [0, 1]; the error message starts with ``name``. The checks run before
    anything downstream of the returned tensor.
    """
    shape = tf.shape(images)
    checks = [
        tf.debugging.assert_positive(
            shape[1:3],
            message=f"{name}: empty image (height or width 0); expected [N, H, W, 1]",
        )
    ]
    with tf.control_dependencies(checks):
        images = tf.debugging.check_numerics(
            images,
            f"{name}: NaN or Inf pixel values; expected finite values in [0, 1]",
        )
    checks = [
        tf.debugging.assert_greater_equal(
            images,
            0.0,
            message=f"{name}: pixel values below 0; expected values in [0, 1]",
            summarize=1,
        ),
        tf.debugging.assert_less_equal(
            images,
            1.0,
            message=(
                f"{name}: pixel values above 1; expected values in [0, 1] "
                "(16-bit intensities / 65535)"
            ),
            summarize=1,
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def check_pngs(pngs: tf.Tensor, name: str = PNG_INPUT) -> tf.Tensor:
    """PNG strings [N] -> the same, or ``InvalidArgument`` before any decoding.

    Each string must start with the PNG signature and an IHDR chunk declaring
    a positive width and height of at most :data:`MAX_PNG_PIXELS` pixels in
    all; the error message starts with ``name`` and lists the bad indices.
    The checks run before anything downstream of the returned tensor.
    """
    # Padded, so that slicing a short string is never an error of its own.
    padded = tf.strings.join([pngs, tf.constant(b"\0" * 24)])
    signature_ok = tf.logical_and(
        tf.equal(tf.strings.substr(padded, 0, 8), _PNG_SIGNATURE),
        tf.equal(tf.strings.substr(padded, 12, 4), b"IHDR"),
    )
    size = tf.io.decode_raw(
        tf.strings.substr(padded, 16, 8), tf.int32, little_endian=False
    )
    size = tf.cast(tf.reshape(size, [-1, 2]), tf.int64)
    size_ok = tf.logical_and(
        tf.reduce_all(size > 0, axis=1),
        size[:, 0] * size[:, 1] <= MAX_PNG_PIXELS,
    )
    signature_check = tf.debugging.Assert(
        tf.reduce_all(signature_ok),
        [
            f"{name}: not a PNG image (no PNG signature and IHDR chunk) at indices",
            tf.where(tf.logical_not(signature_ok))[:, 0],
        ],
        summarize=8,
        name="check_png_signature",
    )
    with tf.control_dependencies([signature_check]):
        size_check = tf.debugging.Assert(
            tf.reduce_all(size_ok),
            [
                f"{name}: PNG width x height not in 1..{MAX_PNG_PIXELS} at indices",
                tf.where(tf.logical_not(size_ok))[:, 0],
                "declared [width, height]",
                tf.boolean_mask(size, tf.logical_not(size_ok)),
            ],
            summarize=8,
            name="check_png_size",
        )
    with tf.control_dependencies([signature_check, size_check]):
        return tf.identity(pngs)
