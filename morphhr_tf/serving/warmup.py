"""TF Serving warm-up requests, written into every exported SavedModel.

TF Serving replays ``<SavedModel>/assets.extra/tf_serving_warmup_requests``
when it loads a model version, before it marks the version available: a
TFRecord file of ``tensorflow_serving.apis.prediction_log_pb2.PredictionLog``
records, each holding a request it runs against the new version. Without
it, the first real request of each signature pays for the one-off costs
(graph optimization, kernel selection, memory allocation, cuDNN autotuning).

One ``PredictRequest`` per serving signature (TF Serving reads at most 1000
records), each of batch size 1 and built from a synthetic mid-grey image of
the model's input size with the gRPC client's request builder
(:func:`morphhr_tf.serving.grpc_request.pixels_request`). A warm-up request that fails makes
TF Serving refuse to load the version, so ``tests/serving/test_warmup.py``
runs every record through the SavedModel's signature.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from morphhr_tf.serving.grpc_request import pixels_request
from morphhr_tf.serving.signatures import SIGNATURE_NAMES

# Where TF Serving looks for warm-up data, relative to the SavedModel.
WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
# TF Serving stops reading warm-up records after this many.
MAX_WARMUP_RECORDS = 1000


def warmup_path(export_dir: str) -> str:
    """``<export_dir>/assets.extra/tf_serving_warmup_requests``."""
    return os.path.join(export_dir, WARMUP_DIR, WARMUP_FILE)


def warmup_requests(resolution: int) -> list[predict_pb2.PredictRequest]:
    """One ``predict_pb2.PredictRequest`` per serving signature.

    Args:
        resolution: the model's input size S; each request carries one
            synthetic mid-grey S x S image.

    Returns:
        The requests, in :data:`SIGNATURE_NAMES` order; ``model_spec`` names
        only the signature (TF Serving runs warm-up on the version it loads).
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(
            f"resolution must be a positive integer. Received: {resolution!r}"
        )
    pixels = np.full((resolution, resolution), 32768, np.uint16)
    return [pixels_request(pixels, signature=name) for name in SIGNATURE_NAMES]


def write_warmup_requests(export_dir: str, resolution: int) -> str:
    """Writes the warm-up file of a SavedModel directory.

    Args:
        export_dir: the SavedModel directory (local or any ``tf.io.gfile``
            filesystem).
        resolution: the model's input size.

    Returns:
        The file's path, :func:`warmup_path` of ``export_dir``.
    """
    path = warmup_path(export_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for request in warmup_requests(resolution):
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    """The ``PredictionLog`` records of a SavedModel's warm-up file, in order."""
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(warmup_path(export_dir))
    ]


__all__ = [
    "MAX_WARMUP_RECORDS",
    "WARMUP_DIR",
    "WARMUP_FILE",
    "read_warmup_requests",
    "warmup_path",
    "warmup_requests",
    "write_warmup_requests",
]
