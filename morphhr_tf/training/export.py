"""Export of the trained model as a float32 SavedModel with serving signatures.

Training may run under a mixed policy (``mixed_bfloat16`` on CPUs with bf16
instructions, ``mixed_float16`` on GPUs); serving should not pay for casts, so
the export rebuilds the same architecture under ``float32`` and copies the
(always float32) variables into it.

The SavedModel also carries TF Serving warm-up requests,
``assets.extra/tf_serving_warmup_requests`` (one per signature, see
:mod:`morphhr_tf.serving.warmup`), so a newly loaded version answers its first
real request without the one-off setup costs. The Pusher copies the whole
directory, ``assets.extra`` included.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import keras
import tensorflow as tf

from morphhr_tf.serving.signatures import ServingModule
from morphhr_tf.serving.warmup import write_warmup_requests


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


def export_serving_model(model: keras.Model, export_dir: str) -> str:
    """Writes a float32 SavedModel with the three serving signatures.

    Also writes ``assets.extra/tf_serving_warmup_requests`` (one TF Serving
    warm-up request per signature, a mid-grey image of the model's resolution)
    before
    the SavedModel, so ``saved_model.pb``, which TF Serving and the Pusher
    take as the sign of a complete model, is the last file written.

    Args:
        model: the trained model, [N, S, S, 1] -> [N, 1] probabilities.
        export_dir: the SavedModel directory (``fn_args.serving_model_dir``).

    Returns:
        ``export_dir``.
    """
    model32 = float32_copy(model)
    module = ServingModule(model32)
    tf.io.gfile.makedirs(os.path.dirname(export_dir.rstrip("/")) or ".")
    write_warmup_requests(export_dir, int(module.resolution.numpy()))
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir
