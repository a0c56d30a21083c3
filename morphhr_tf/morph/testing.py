"""Helpers for checking function preservation (used by the tests and docs)."""

from __future__ import annotations

import keras
import numpy as np


def randomize_weights(model: keras.Model, seed: int = 0) -> keras.Model:
    """Gives every weight a non-trivial random value, in place.

    Kernels are He-normal, biases and BN shifts small normals, BN scales and
    moving statistics random (so a morph that forgets them fails a test),
    P-activation `a` uniform in [0.2, 0.8]. Scales are kept moderate so that
    ResNet outputs stay of order 1.

    Returns:
        `model`, for chaining.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape, name = tuple(variable.shape), variable.name
            if name == "gamma":
                value = rng.uniform(0.5, 1.0, shape)
            elif name == "moving_variance":
                value = rng.uniform(0.5, 1.5, shape)
            elif name in ("moving_mean", "beta", "bias"):
                value = rng.normal(0.0, 0.1, shape)
            elif name == "alpha":
                value = rng.uniform(0.2, 0.8, shape)
            else:
                fan_in = max(int(np.prod(shape[:-1])), 1)
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            values.append(np.asarray(value, np.float32))
        if values:
            layer.set_weights(values)
    return model


def max_abs_difference(a, b) -> float:
    """`max |a - b|` over all elements, in float64."""
    a = np.asarray(keras.ops.convert_to_numpy(a), np.float64)
    b = np.asarray(keras.ops.convert_to_numpy(b), np.float64)
    if a.shape != b.shape:
        raise ValueError(f"Shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b)))


def relative_error(a, b) -> float:
    """`max |a - b| / max |b|` (`b` is the reference)."""
    scale = float(np.max(np.abs(np.asarray(keras.ops.convert_to_numpy(b), np.float64))))
    return max_abs_difference(a, b) / max(scale, 1e-12)


def randomize_normalization(model: keras.Model, rng: np.random.Generator) -> None:
    """Random BatchNormalization / LayerNormalization scales, shifts and
    moving statistics, nested sub-models included (in place): a freshly built
    model's identity statistics would hide a morph that mishandles them."""
    from morphhr_tf.morph.graph import all_layers

    for layer in all_layers(model):
        if not isinstance(
            layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
        ):
            continue
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if variable.name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape))
            else:
                values.append(rng.normal(0.0, 0.2, shape))
        layer.set_weights([np.asarray(v, np.float32) for v in values])
