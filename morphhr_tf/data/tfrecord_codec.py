"""The tf.Example codec: one place that writes and reads the records.

Ingest calls :func:`encode_example` (written without TensorFlow, in
:mod:`morphhr_tf.data.example_writer`, and re-exported here); training, the
evaluator and the serving signatures call :func:`parse_example` then
:func:`decode_image`, so every stage sees the same pixels.

Multi-label records (ChestX-ray14) also carry :data:`features.LABELS`, one
0/1 per label name (the names are in the ingest's ``summary.json``,
``label_names``); binary records do not, and :func:`parse_example` reads
them only when asked (``num_labels``), so the binary readers are unchanged.
"""

from __future__ import annotations

import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.example_writer import encode_example, encode_png16

__all__ = [
    "FEATURE_SPEC",
    "decode_image",
    "encode_example",
    "encode_png16",
    "multi_label_spec",
    "parse_example",
]

FEATURE_SPEC = {
    **{
        k: tf.io.FixedLenFeature([], tf.string, default_value="")
        for k in F.STRING_FEATURES
    },
    **{
        k: tf.io.FixedLenFeature([], tf.int64, default_value=-1) for k in F.INT_FEATURES
    },
}
# The image is required: a record without one is an error, not a blank image.
FEATURE_SPEC[F.IMAGE] = tf.io.FixedLenFeature([], tf.string)


def multi_label_spec(num_labels: int) -> dict[str, tf.io.FixedLenFeature]:
    """:data:`FEATURE_SPEC` plus ``labels``, ``num_labels`` int64 values.

    A record without ``labels`` (a binary record) parses to ``num_labels``
    times -1; one with another number of labels fails to parse.

    Raises:
        ValueError: if ``num_labels`` is not a positive integer.
    """
    if not isinstance(num_labels, int) or isinstance(num_labels, bool):
        raise ValueError(f"num_labels must be an integer. Received: {num_labels!r}")
    if num_labels < 1:
        raise ValueError(f"num_labels must be positive. Received: {num_labels}")
    return {
        **FEATURE_SPEC,
        F.LABELS: tf.io.FixedLenFeature(
            [num_labels], tf.int64, default_value=[-1] * num_labels
        ),
    }


def parse_example(
    serialized: tf.Tensor, num_labels: int | None = None
) -> dict[str, tf.Tensor]:
    """Parses serialized tf.Examples (a scalar or a 1-D batch).

    Args:
        serialized: the records.
        num_labels: ``None`` (binary readers) parses :data:`FEATURE_SPEC`
            and ignores ``labels``; a number (``len`` of the summary's
            ``label_names``) also reads ``labels`` as ``[num_labels]`` (or
            ``[batch, num_labels]``) int64, -1s for a record without them
            (see :func:`multi_label_spec`).
    """
    spec = FEATURE_SPEC if num_labels is None else multi_label_spec(num_labels)
    serialized = tf.convert_to_tensor(serialized, dtype=tf.string)
    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, spec)
    return tf.io.parse_example(serialized, spec)


def decode_image(png: tf.Tensor) -> tf.Tensor:
    """Decodes one 16-bit (or 8-bit) grayscale PNG to float32 [H, W, 1] in [0, 1].

    8-bit PNGs are accepted and scaled by 1/255, so both bit depths map onto
    the same [0, 1] intensity range.
    """
    image = tf.io.decode_png(png, channels=1, dtype=tf.uint16)
    return tf.cast(image, tf.float32) / 65535.0
