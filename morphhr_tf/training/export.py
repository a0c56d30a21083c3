"""Export of the trained model as a float32 SavedModel with serving signatures.

Training may run under a mixed policy (``mixed_bfloat16`` on CPUs with bf16
instructions, ``mixed_float16`` on GPUs); serving should not pay for casts, so
the export rebuilds the same architecture under ``float32`` and copies the
(always float32) variables into it.

The SavedModel also carries TF Serving warm-up requests,
``assets.extra/tf_serving_warmup_requests`` (one per signature, see
:mod:`morphhr_tf.serving.warmup`), so a newly loaded version answers its first
real request without the one-off setup costs. With a calibration and
operating points, ``assets.extra/calibration.json``
(:meth:`~morphhr_tf.evaluation.calibration.Calibration.to_json`) and
``assets.extra/operating_points.json`` sit beside them. The Pusher copies the
whole directory, ``assets.extra`` included.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from morphhr_tf.evaluation.calibration import Calibration
from morphhr_tf.serving.signatures import ServingModule
from morphhr_tf.serving.warmup import WARMUP_DIR, write_warmup_requests

#: Written into ``<SavedModel>/assets.extra`` beside the warm-up requests.
CALIBRATION_FILE = "calibration.json"
OPERATING_POINTS_FILE = "operating_points.json"


def _force_float32(config: Any) -> Any:
    """Returns ``config`` with every layer dtype policy replaced by float32."""
    if isinstance(config, list):
        return [_force_float32(c) for c in config]
    if not isinstance(config, dict):
        return config
    out = {}
    for key, value in config.items():
        if key == "dtype" and (
            isinstance(value, str)
            or (isinstance(value, dict) and "Policy" in str(value.get("class_name")))
        ):
            out[key] = "float32"
        else:
            out[key] = _force_float32(value)
    return out


def float32_copy(model: keras.Model) -> keras.Model:
    """The same functional model computing in float32, with the same weights.

    Args:
        model: a functional Keras model (any dtype policy).

    Returns:
        A new model whose every layer has the ``float32`` policy.

    Raises:
        ValueError: if the rebuilt model's weights do not line up.
    """
    config = _force_float32(copy.deepcopy(model.get_config()))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clone = model.__class__.from_config(config)
    finally:
        keras.config.set_dtype_policy(previous)
    weights = model.get_weights()
    if len(clone.weights) != len(weights):
        raise ValueError(
            f"float32 rebuild of {model.name!r} has {len(clone.weights)} weights, "
            f"the trained model {len(weights)}."
        )
    clone.set_weights(weights)
    return clone


def write_model_assets(
    export_dir: str,
    calibration: Calibration | None = None,
    operating_points: Any = None,
) -> list[str]:
    """Writes ``calibration.json`` and ``operating_points.json`` into
    ``<export_dir>/assets.extra`` (each only when given).

    Args:
        export_dir: the SavedModel directory (any ``tf.io.gfile`` filesystem).
        calibration: written with :meth:`Calibration.to_json`.
        operating_points: JSON-serializable, e.g. the list of
            :func:`morphhr_tf.evaluation.calibration.operating_points`.

    Returns:
        The paths written.

    Raises:
        ValueError: if ``operating_points`` is not JSON-serializable (NaN and
            infinities included).
    """
    files = {}
    if calibration is not None:
        files[CALIBRATION_FILE] = calibration.to_json()
    if operating_points is not None:
        try:
            text = json.dumps(operating_points, indent=1, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"operating_points must be JSON-serializable without NaN or "
                f"infinity ({err}). Received: {operating_points!r}"[:400]
            ) from err
        files[OPERATING_POINTS_FILE] = text
    paths = []
    for name, text in files.items():
        path = os.path.join(export_dir, WARMUP_DIR, name)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text + "\n")
        paths.append(path)
    return paths


def export_serving_model(
    model: keras.Model,
    export_dir: str,
    *,
    label_names: Sequence[str] | None = None,
    calibration: Calibration | None = None,
    operating_points: Any = None,
) -> str:
    """Writes a float32 SavedModel with the three serving signatures.

    Also writes ``assets.extra/tf_serving_warmup_requests`` (one TF Serving
    warm-up request per signature, a mid-grey image of the model's
    resolution) and, when given, ``assets.extra/calibration.json`` and
    ``assets.extra/operating_points.json`` (:func:`write_model_assets`)
    before the SavedModel, so ``saved_model.pb``, which TF Serving and the
    Pusher take as the sign of a complete model, is the last file written.

    Args:
        model: the trained model, [N, S, S, 1] -> [N, 1] probabilities
            (binary) or [N, L] sigmoid probabilities (multi-label).
        export_dir: the SavedModel directory (``fn_args.serving_model_dir``).
        label_names: ``None`` (binary: outputs ``{"probability": [N, 1]}``)
            or the L label names of a multi-label model (outputs
            ``{"probabilities": [N, L]}`` and one ``[N, 1]`` per name; see
            :mod:`morphhr_tf.serving.signatures`).
        calibration: fitted on the eval split
            (:func:`morphhr_tf.evaluation.calibration.fit_calibration`); the
            signatures then serve calibrated probabilities, and the model's
            own under ``probability_uncalibrated`` /
            ``probabilities_uncalibrated``. ``None``: the model's output.
        operating_points: thresholds to store beside the model (on the
            served probability), e.g. from
            :func:`morphhr_tf.evaluation.calibration.operating_points`.

    Returns:
        ``export_dir``.

    Raises:
        ValueError: for a model, ``label_names`` or calibration that do not
            fit together (:class:`ServingModule`), or operating points that
            are not JSON.
    """
    model32 = float32_copy(model)
    module = ServingModule(model32, label_names=label_names, calibration=calibration)
    tf.io.gfile.makedirs(os.path.dirname(export_dir.rstrip("/")) or ".")
    write_model_assets(export_dir, calibration, operating_points)
    write_warmup_requests(export_dir, int(module.resolution.numpy()))
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir
