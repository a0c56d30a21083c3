"""Kernel-size morph: zero-pad a convolution kernel, same function."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from morphhr_tf.morph import weight_maps
from morphhr_tf.morph.graph import Graph, describe, rebuild

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(
        f"{what} must be an int or a pair of ints. Received: {what}={value!r}"
    )


def enlarge_kernel(
    model: keras.Model, layer_name: str, kernel_size: int | Sequence[int]
) -> keras.Model:
    """Returns a copy of `model` whose conv `layer_name` has a larger kernel.

    The old kernel is zero-padded, centred (e.g. 3x3 -> 5x5 adds a ring of
    zeros). With `padding="same"`, the extra padding the larger kernel brings
    is split evenly around the input, so every output sees the same inputs
    through the same non-zero taps: the function is unchanged.

    Exact when the layer is a channels-last `Conv2D` or `DepthwiseConv2D`
    with `padding="same"`, each kernel dimension grows by an even amount, and
    for strides above 1 the old effective kernel `(k - 1) * dilation + 1` is
    at least the stride (otherwise TensorFlow's "same" padding would shift;
    then the op checks the static input size). `padding="valid"` layers are
    refused: their output size would shrink.

    Args:
        model: a flat functional model (left untouched).
        layer_name: the convolution to enlarge.
        kernel_size: the new kernel size, an int or `(kh, kw)`.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: on bad arguments or when the morph would not be exact.

    Example:

    >>> import keras
    >>> inputs = keras.Input((8, 8, 2))
    >>> outputs = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    >>> bigger = enlarge_kernel(keras.Model(inputs, outputs), "conv", 5)
    >>> bigger.get_layer("conv").kernel_size
    (5, 5)
    """
    new_size = _pair(kernel_size, "kernel_size")
    graph = Graph(model)
    call = graph.call_of(layer_name)
    layer = call.layer
    if type(layer) not in _CONVS or layer.data_format != "channels_last":
        raise ValueError(
            "enlarge_kernel supports channels-last Conv2D and DepthwiseConv2D "
            f"layers. Received: layer_name={layer_name!r}, {describe(layer)}."
        )
    old_size = tuple(layer.kernel_size)
    if any(n < o or (n - o) % 2 for n, o in zip(new_size, old_size)) or (
        new_size == old_size
    ):
        raise ValueError(
            f"kernel_size must exceed the current {old_size} of '{layer_name}' "
            "and differ from it by an even amount in each dimension. "
            f"Received: kernel_size={kernel_size!r}"
        )
    if layer.padding != "same":
        raise ValueError(
            f"enlarge_kernel needs padding='same' to keep the output size; "
            f"{describe(layer)} uses padding={layer.padding!r}."
        )
    spatial = call.inputs[0].shape[1:3]
    for axis in range(2):
        stride, dilation = layer.strides[axis], layer.dilation_rate[axis]
        effective = (old_size[axis] - 1) * dilation + 1
        if effective >= stride:
            continue
        size = spatial[axis]
        out = None if size is None else -(-size // stride)
        if size is None or (out - 1) * stride + effective - size < 0:
            raise ValueError(
                f"Cannot enlarge {describe(layer)} exactly: with strides "
                f"{layer.strides} and kernel {old_size}, 'same' padding would "
                f"shift the window for input size {size}. Pick a conv whose "
                "kernel is at least its stride."
            )
    values = layer.get_weights()
    values[0] = weight_maps.pad_kernel(values[0], new_size)
    return rebuild(
        model,
        config_updates={layer_name: {"kernel_size": new_size}},
        weights={layer_name: values},
        graph=graph,
    )
