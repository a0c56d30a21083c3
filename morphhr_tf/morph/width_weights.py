"""Student weights of a widening plan (see :mod:`morphhr_tf.morph.width`).

Thin glue between the plan's layers and the pure numpy maps of
:mod:`morphhr_tf.morph.weight_maps`: which array of which layer kind holds
the units, and along which axis.
"""

from __future__ import annotations

import numpy as np

from morphhr_tf.morph import layer_kinds, weight_maps

_ONE_FILLED = ("gamma", "moving_variance")


def new_weights(
    plan, rng: np.random.Generator, method: str, noise_stddev: float
) -> dict[str, list[np.ndarray]]:
    """Student weights of every layer `plan` touches, in `get_weights` order.

    Args:
        plan: a widening plan with `consumers`, `sources` and `channelwise`.
        rng: random generator of netmorph's new weights and of the noise.
        method: `"net2net"` or `"netmorph"`.
        noise_stddev: symmetry-breaking noise on the consumers' copied rows.

    Returns:
        Per layer name, the new weights.
    """
    weights: dict[str, list[np.ndarray]] = {}

    def arrays(layer):
        if layer.name not in weights:
            weights[layer.name] = [np.asarray(w) for w in layer.get_weights()]
        return weights[layer.name]

    for layer, in_map in plan.consumers.values():
        _consumer(layer, arrays(layer), in_map, rng, noise_stddev)
    for source, index_map in plan.sources:
        _source(source.layer, arrays(source.layer), index_map, rng, method)
    for layer, index_map, old_in in plan.channelwise.values():
        if layer.weights:
            _channelwise(layer, arrays(layer), index_map, old_in, rng)
    return weights


def _noisy_rows(kernel, in_map, old_in, rng, noise_stddev):
    """Adds noise to the input rows (axis -2) of new or copied units."""
    if noise_stddev <= 0:
        return kernel
    counts = weight_maps.replication_counts(in_map, old_in)
    touched = (in_map == weight_maps.NEW_UNIT) | (counts[np.maximum(in_map, 0)] > 1)
    noise = rng.normal(0.0, noise_stddev, size=kernel.shape)
    return kernel + noise * touched.reshape(-1, 1)


def _random_like(kernel: np.ndarray, shape, rng: np.random.Generator) -> np.ndarray:
    """Random values scaled like `kernel` (netmorph's free new weights)."""
    std = float(np.std(kernel)) or 0.05
    return rng.normal(0.0, std, size=shape)


def _consumer(layer, values, in_map, rng, noise_stddev) -> None:
    """Input weights of a linear layer reading widened channels (in place)."""
    if layer_kinds.is_separable(layer):
        depthwise = values[0]
        old_in, multiplier = depthwise.shape[-2], depthwise.shape[-1]
        n_new = int(np.sum(in_map == weight_maps.NEW_UNIT))
        fill = _random_like(depthwise, depthwise.shape[:2] + (n_new, multiplier), rng)
        values[0] = weight_maps.take_units(
            depthwise, in_map, axis=-2, fill=fill
        ).astype(depthwise.dtype)
        in_map = weight_maps.multiplier_index_map(in_map, multiplier)
        old_in *= multiplier
        kernel_index = 1
    else:
        old_in = int(values[0].shape[-2])
        kernel_index = 0
    kernel = values[kernel_index]
    new_kernel = weight_maps.widen_incoming(kernel, in_map, old_in, axis=-2)
    new_kernel = _noisy_rows(new_kernel, in_map, old_in, rng, noise_stddev)
    values[kernel_index] = new_kernel.astype(kernel.dtype)


def _source(layer, values, index_map, rng, method) -> None:
    """Output units (kernel's last axis, bias) of a widened layer (in place)."""
    kernel_index = 1 if layer_kinds.is_separable(layer) else 0
    kernel = values[kernel_index]
    bias = values[kernel_index + 1] if layer.use_bias else None
    new_kernel = None
    n_new = int(np.sum(index_map == weight_maps.NEW_UNIT))
    if method == "netmorph" and n_new:
        new_kernel = _random_like(kernel, kernel.shape[:-1] + (n_new,), rng)
    kernel, bias = weight_maps.widen_outgoing(kernel, bias, index_map, new_kernel)
    values[kernel_index] = kernel.astype(np.float32)
    if bias is not None:
        values[kernel_index + 1] = bias.astype(np.float32)


def _channelwise(layer, values, index_map, old_in, rng) -> None:
    """Per-channel weights of a layer on the path (in place).

    A depthwise kernel (`(kh, kw, C, 1)`, or `(kh, kw, 1, C)` for a grouped
    `Conv2D`) copies its filters (random filters
    for new units); per-channel vectors copy their entries, new units get the
    identity (1 for scales and variances, 0 otherwise).
    """
    for i, variable in enumerate(layer.weights):
        value = values[i]
        if layer_kinds.is_depthwise(layer) and value.ndim == 4:
            axis = layer_kinds.depthwise_axis(layer)
            n_new = int(np.sum(index_map == weight_maps.NEW_UNIT))
            shape = list(value.shape)
            shape[axis] = n_new
            fill = _random_like(value, tuple(shape), rng)
            new = weight_maps.take_units(value, index_map, axis=axis, fill=fill)
            values[i] = new.astype(value.dtype)
        elif value.ndim and value.shape[-1] == old_in:
            fill = 1.0 if variable.name in _ONE_FILLED else 0.0
            values[i] = weight_maps.take_units(value, index_map, fill=fill)
