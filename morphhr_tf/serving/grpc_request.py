"""TF Serving gRPC ``PredictRequest`` protos for a DICOM file.

Send with ``prediction_service_pb2_grpc.PredictionServiceStub(channel)
.Predict(request, timeout)`` from ``tensorflow_serving.apis``; docs/deploy.md
has a complete client.
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE
from morphhr_tf.serving import preprocess
from morphhr_tf.serving.signatures import (
    EXAMPLES_INPUT,
    IMAGES_INPUT,
    PNG_INPUT,
    PREDICT_PNG,
    SERVING_DEFAULT,
    check_signature_name,
)


def predict_request(
    dicom_path: str | os.PathLike,
    *,
    model_name: str = "morphhr",
    signature: str = PREDICT_PNG,
    version: int | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    resize_mode: str = "square",
) -> predict_pb2.PredictRequest:
    """Builds a ``PredictRequest`` for one DICOM file.

    Args:
        dicom_path: the DICOM mammogram.
        model_name: the name TF Serving serves the model under.
        signature: ``predict_png``, ``predict_image`` or ``serving_default``.
        version: a model version; ``None`` lets the server pick the latest.
        image_size, resize_mode: preprocessing, as for :func:`rest_request`.

    Returns:
        The request; the response's ``outputs["probability"]`` holds [1, 1]
        (a multi-label model's: ``outputs["probabilities"]`` [1, L] and one
        [1, 1] per label name; see :mod:`morphhr_tf.serving.signatures`).

    Raises:
        ValueError: for an unknown signature.
        morphhr_tf.data.DicomRejected: for a file ingestion would reject.
    """
    check_signature_name(signature)
    pixels = preprocess.preprocess_dicom(
        dicom_path, image_size=image_size, resize_mode=resize_mode
    )
    return pixels_request(
        pixels, signature=signature, model_name=model_name, version=version
    )


def pixels_request(
    pixels,
    *,
    signature: str = PREDICT_PNG,
    model_name: str = "",
    version: int | None = None,
) -> predict_pb2.PredictRequest:
    """Builds a ``PredictRequest`` for one preprocessed 16-bit image.

    Args:
        pixels: the uint16 image ingestion would store
            (:func:`morphhr_tf.serving.preprocess.preprocess_dicom`).
        signature: ``predict_png``, ``predict_image`` or ``serving_default``.
        model_name: the served model's name ('' leaves it unset, as TF
            Serving's warm-up requests do).
        version: a model version; ``None`` lets the server pick the latest.
    """
    check_signature_name(signature)
    request = predict_pb2.PredictRequest()
    if model_name:
        request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    if signature == PREDICT_PNG:
        tensor = tf.make_tensor_proto([preprocess.png_bytes(pixels)], dtype=tf.string)
        request.inputs[PNG_INPUT].CopyFrom(tensor)
    elif signature == SERVING_DEFAULT:
        tensor = tf.make_tensor_proto(
            [preprocess.example_bytes(pixels)], dtype=tf.string
        )
        request.inputs[EXAMPLES_INPUT].CopyFrom(tensor)
    else:
        tensor = tf.make_tensor_proto(preprocess.image_array(pixels), dtype=tf.float32)
        request.inputs[IMAGES_INPUT].CopyFrom(tensor)
    return request
