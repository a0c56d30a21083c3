"""The tf.Example codec: one place that writes and reads the records.

Ingest calls :func:`encode_example`; training, the evaluator and the serving
signatures call :func:`parse_example` then :func:`decode_image`, so every
stage sees the same pixels.

Multi-label records (ChestX-ray14) also carry :data:`features.LABELS`, one
0/1 per label name (the names are in the ingest's ``summary.json``,
``label_names``); binary records do not, and :func:`parse_example` reads
them only when asked (``num_labels``), so the binary readers are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from morphhr_tf.data import features as F

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


def encode_png16(image: np.ndarray) -> bytes:
    """Encodes a 2-D image as a 16-bit grayscale PNG.

    Args:
        image: H x W array, either ``uint16`` or floating point in [0, 1]
            (scaled to 0..65535 and rounded).

    Returns:
        PNG bytes.

    Raises:
        ValueError: for another rank, dtype, an empty image, or non-finite or
            out-of-range floating point values.
    """
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"encode_png16 expects a non-empty 2-D image. Received: shape={arr.shape}"
        )
    if arr.dtype == np.uint16:
        pixels = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("encode_png16 received NaN or Inf pixel values.")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                "Floating point images must lie in [0, 1]. "
                f"Received: min={lo:.4g}, max={hi:.4g}"
            )
        pixels = np.round(arr * 65535.0).astype(np.uint16)
    else:
        raise ValueError(
            f"encode_png16 expects uint16 or float pixels. Received: dtype={arr.dtype}"
        )
    # Compression level 1: about 2x faster than the default (6) at 896 px for
    # a ~3% larger file; the TFRecords are gzip-compressed on top.
    return tf.io.encode_png(pixels[:, :, None], compression=1).numpy()


def _bytes(value: str | bytes) -> tf.train.Feature:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def encode_example(
    image: np.ndarray,
    *,
    label: int,
    patient_key: str,
    image_key: str,
    view: str = "",
    laterality: str = "",
    density: str = "",
    dataset: str = "",
    labels: Sequence[int] = (),
) -> bytes:
    """Serializes one image record as a tf.Example.

    Args:
        image: H x W ``uint16`` or float in [0, 1] (see :func:`encode_png16`).
        label: 0 or 1.
        patient_key: salted hash of the patient (never the identifier itself).
        image_key: salted hash identifying the source image.
        view, laterality, density, dataset: slicing metadata ('' if unknown).
        labels: the multi-hot labels of a multi-label data set (0/1 each),
            written as ``labels`` only when not empty: a binary record's bytes
            do not change.

    Returns:
        The serialized ``tf.train.Example``.

    Raises:
        ValueError: for a label other than 0/1, labels other than 0/1, or an
            invalid image.
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1. Received: label={label!r}")
    labels = list(labels)
    if any(v not in (0, 1) for v in labels):
        raise ValueError(f"labels must be 0 or 1 each. Received: labels={labels!r}")
    png = encode_png16(image)
    h, w = np.asarray(image).shape
    feats = {
        F.IMAGE: _bytes(png),
        F.HEIGHT: _int(h),
        F.WIDTH: _int(w),
        F.LABEL: _int(label),
        F.PATIENT_KEY: _bytes(patient_key),
        F.IMAGE_KEY: _bytes(image_key),
        F.VIEW: _bytes(view),
        F.LATERALITY: _bytes(laterality),
        F.DENSITY: _bytes(density),
        F.DATASET: _bytes(dataset),
    }
    if labels:
        feats[F.LABELS] = _ints(int(v) for v in labels)
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    # deterministic: the feature map in key order, so one image gives the same
    # bytes in every process (map order otherwise varies from run to run).
    return example.SerializeToString(deterministic=True)


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
