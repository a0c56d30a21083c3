"""DICOM file -> the 16-bit image ingestion would store, for serving clients.

The same reader and preprocessing as :mod:`morphhr_tf.data.ingest` (crop to
the breast, canonical orientation, resize, 16-bit quantization), so a file sent
to the served model is seen exactly as the pipeline saw its training data.
Other radiographs (ChestX-ray14 PNGs) are only resized and quantized, as
ingestion does (:func:`read_and_preprocess_radiograph`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data.dicom_reader import DEFAULT_MODALITIES, read_mammogram
from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE, MammogramPreprocessor
from morphhr_tf.data.tfrecord_codec import encode_png16


def read_and_preprocess(
    path: str | os.PathLike,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    resize_mode: str = "square",
    modalities: Iterable[str] | None = DEFAULT_MODALITIES,
    salt: str | bytes | None = None,
) -> tuple[np.ndarray, dict]:
    """:func:`preprocess_dicom`, also returning the reader's safe metadata
    (laterality, view, ...; with ``salt``, the salted ``patient_key`` and
    ``study_key``: see :func:`morphhr_tf.data.dicom_reader.read_mammogram`)."""
    image, meta = read_mammogram(path, modalities=modalities, salt=salt)
    pixels = MammogramPreprocessor(image_size=image_size, resize_mode=resize_mode)(
        image, meta.get("laterality", "")
    )
    return pixels, meta


def preprocess_dicom(
    path: str | os.PathLike,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    resize_mode: str = "square",
    modalities: Iterable[str] | None = DEFAULT_MODALITIES,
) -> np.ndarray:
    """Reads and preprocesses one DICOM mammogram.

    Args:
        path: the DICOM file.
        image_size: output side in pixels: the stored image size of the
            training data, or the model's resolution (the model
            area-resizes whatever it receives).
        resize_mode: ``square`` or ``pad``, as at ingestion.
        modalities: accepted DICOM Modality values.

    Returns:
        ``uint16`` array of shape (image_size, image_size).

    Raises:
        morphhr_tf.data.DicomRejected: for a file ingestion would reject.
    """
    return read_and_preprocess(
        path, image_size=image_size, resize_mode=resize_mode, modalities=modalities
    )[0]


def png_bytes(pixels: np.ndarray) -> bytes:
    """16-bit PNG of a preprocessed image (what ``predict_png`` takes)."""
    return encode_png16(pixels)


def image_array(pixels: np.ndarray) -> np.ndarray:
    """float32 [1, H, W, 1] in [0, 1] (what ``predict_image`` takes).

    Decoded from the PNG exactly as the signatures decode it, so
    ``predict_image`` and ``predict_png`` see identical pixels.
    """
    png = tf.io.decode_png(png_bytes(pixels), channels=1, dtype=tf.uint16)
    return (tf.cast(png, tf.float32) / 65535.0).numpy()[None]


def example_bytes(pixels: np.ndarray) -> bytes:
    """A serialized ``tf.Example`` holding only the image (``serving_default``)."""
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[png_bytes(pixels)]))
    example = tf.train.Example(features=tf.train.Features(feature={F.IMAGE: feature}))
    return example.SerializeToString(deterministic=True)


def read_and_preprocess_radiograph(
    path: str | os.PathLike,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    resize_mode: str = "square",
    modalities: Iterable[str] | None = DEFAULT_MODALITIES,
    salt: str | bytes | None = None,
) -> tuple[np.ndarray, dict]:
    """Reads a radiograph other than a mammogram (ChestX-ray14) as ingestion
    does: resize and 16-bit quantization only, no crop, no flip.

    Args:
        path: a ``.png`` (read with the defensive
            :func:`morphhr_tf.data.png_reader.read_radiograph`) or a DICOM
            file (:func:`morphhr_tf.data.dicom_reader.read_mammogram`).
        image_size: output side in pixels (the model's resolution).
        resize_mode: ``square`` or ``pad``, as at ingestion.
        modalities: accepted DICOM Modality values (DICOM only).
        salt: salt of the DICOM's ``patient_key`` and ``study_key``.

    Returns:
        ``(uint16 [image_size, image_size], meta)``; a PNG's meta has no
        keys, laterality or view.

    Raises:
        morphhr_tf.data.png_reader.PngRejected: an unusable PNG.
        morphhr_tf.data.DicomRejected: a DICOM file ingestion would reject.
    """
    from morphhr_tf.data.png_reader import read_radiograph

    # By extension, as the ingest does (morphhr_tf.data.ingest_encode.is_png).
    if os.fspath(path).lower().endswith(".png"):
        image, meta = read_radiograph(path)
    else:
        image, meta = read_mammogram(path, modalities=modalities, salt=salt)
    pre = MammogramPreprocessor(
        image_size=image_size, resize_mode=resize_mode, crop=False, orient=False
    )
    return pre(image), meta
