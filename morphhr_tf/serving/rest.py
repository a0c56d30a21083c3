"""TF Serving REST request bodies for a DICOM file.

TF Serving's REST API (``POST /v1/models/<name>[/versions/<v>]:predict``)
takes JSON; binary strings travel as ``{"b64": "<base64>"}`` and are decoded
back to bytes before they reach the signature.
"""

from __future__ import annotations

import base64
import os
from typing import Any

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


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def rest_request(
    dicom_path: str | os.PathLike,
    signature: str = PREDICT_PNG,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    resize_mode: str = "square",
) -> dict[str, Any]:
    """Builds the exact TF Serving REST ``:predict`` JSON body for one file.

    Args:
        dicom_path: the DICOM mammogram.
        signature: ``predict_png`` (16-bit PNG as ``b64``, the compact one),
            ``predict_image`` (float pixels as nested lists) or
            ``serving_default`` (a serialized tf.Example as ``b64``).
        image_size: preprocessing size (use the model's resolution, the
            ``resolution`` variable of the SavedModel).
        resize_mode: ``square`` or ``pad``, as at ingestion.

    Returns:
        The body as a dict; ``json.dumps`` it and POST it.

    Raises:
        ValueError: for an unknown signature.
        morphhr_tf.data.DicomRejected: for a file ingestion would reject.

    Example:

    >>> body = rest_request("1-1.dcm", image_size=896)
    >>> requests.post(".../v1/models/morphhr:predict", json=body)
    """
    check_signature_name(signature)
    pixels = preprocess.preprocess_dicom(
        dicom_path, image_size=image_size, resize_mode=resize_mode
    )
    if signature == PREDICT_PNG:
        instance = {PNG_INPUT: _b64(preprocess.png_bytes(pixels))}
    elif signature == SERVING_DEFAULT:
        instance = {EXAMPLES_INPUT: _b64(preprocess.example_bytes(pixels))}
    else:
        instance = {IMAGES_INPUT: preprocess.image_array(pixels)[0].tolist()}
    return {"signature_name": signature, "instances": [instance]}


def decode_rest_instances(body: dict[str, Any]) -> dict[str, list[Any]]:
    """Decodes a body's ``instances`` the way TF Serving does (tests, debugging).

    ``{"b64": s}`` becomes ``base64.b64decode(s)``; other values stay as they
    are. Returns ``{input name: [value per instance]}``.
    """

    def decode(value):
        if isinstance(value, dict) and set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return value

    columns: dict[str, list[Any]] = {}
    for instance in body["instances"]:
        for name, value in instance.items():
            columns.setdefault(name, []).append(decode(value))
    return columns


__all__ = ["decode_rest_instances", "rest_request"]
