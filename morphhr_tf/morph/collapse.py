"""Channel-collapse morph: a C-channel stem becomes a 1-channel stem."""

from __future__ import annotations

import keras
import numpy as np

from morphhr_tf.morph import layer_kinds, weight_maps
from morphhr_tf.morph.graph import Graph, describe, input_name, rebuild

L = keras.layers

#: Parameter-free layers that keep equal channels equal.
_PASSTHROUGH = (
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.ELU,
    L.Dropout,
    L.GaussianNoise,
    L.MaxPooling2D,
    L.AveragePooling2D,
    L.ZeroPadding2D,
    L.Cropping2D,
    L.UpSampling2D,
    L.Identity,
)


def collapse_input_channels(model: keras.Model) -> keras.Model:
    """Returns a 1-channel copy of a model with a C-channel image input.

    Grayscale mammograms fed to an RGB-pretrained network are usually
    replicated to three channels. Every convolution `W` reading the input
    computes `sum_c W[..., c, :] * x` on the replicated image, which equals a
    convolution of the single-channel `x` with `sum_c W[..., c, :]`. The
    returned model has that summed kernel, so exactly (up to float rounding)
    `collapsed(x) == model(concat([x] * C, axis=-1))`.

    The input may reach the `Conv2D` / `Dense` layers through parameter-free
    layers (padding, pooling, element-wise activations, dropout); anything
    else on the way (e.g. a `BatchNormalization` or `Normalization` with
    per-channel statistics) is refused, because it would tell the replicated
    channels apart.

    Args:
        model: a flat functional model with one `(N, H, W, C)` input (left
            untouched).

    Returns:
        A new `keras.Model` with input shape `(H, W, 1)` and the same names.

    Raises:
        ValueError: if the model has several inputs, a non-image input, one
            channel already, or a layer that separates the input channels.

    Example:

    >>> import keras
    >>> inputs = keras.Input((8, 8, 3), name="image")
    >>> outputs = keras.layers.Conv2D(4, 3, name="stem")(inputs)
    >>> gray = collapse_input_channels(keras.Model(inputs, outputs))
    >>> tuple(gray.input.shape)
    (None, 8, 8, 1)
    """
    graph = Graph(model)
    if len(model.inputs) != 1:
        raise ValueError(
            "collapse_input_channels needs a model with one image input. "
            f"Received: {len(model.inputs)} inputs."
        )
    image = model.inputs[0]
    if len(image.shape) != 4 or image.shape[-1] is None or image.shape[-1] < 2:
        raise ValueError(
            "collapse_input_channels needs an (N, H, W, C) input with C >= 2. "
            f"Received: input shape {tuple(image.shape)}."
        )
    weights: dict[str, list[np.ndarray]] = {}
    work = [image]
    while work:
        tensor = work.pop()
        if id(tensor) in graph.output_ids:
            raise ValueError(
                "collapse_input_channels cannot collapse a model whose output is "
                "its (passed-through) input channels."
            )
        for c in graph.consumers(tensor):
            layer = c.layer
            if layer_kinds.is_linear(layer):
                values = layer.get_weights()
                values[0] = weight_maps.collapse_kernel(values[0], axis=-2)
                weights[layer.name] = values
            elif type(layer) in _PASSTHROUGH and layer_kinds.activation_is_elementwise(
                layer
            ):
                work.extend(c.outputs)
            else:
                raise ValueError(
                    f"Cannot collapse the input channels: they reach "
                    f"{describe(layer)}, which may treat them differently. Only "
                    "parameter-free spatial / element-wise layers may sit "
                    "between the input and its Conv2D / Dense layers."
                )
    name = input_name(image)
    shape = tuple(image.shape[1:-1]) + (1,)
    return rebuild(model, input_shapes={name: shape}, weights=weights, graph=graph)
