"""How each Keras layer treats the channel (last) axis.

The morphs only trust layers listed here. Anything else (custom layers,
depthwise convolutions, normalizations over channels, softmax, ...) blocks a
morph that would have to pass channels through it, and the morph raises.
"""

from __future__ import annotations

import keras

from morphhr_tf.layers import PActivation

L = keras.layers

#: Linear layers whose input and output channels a morph can rewrite.
LINEAR = (L.Dense, L.Conv2D)

#: Layers that act on every channel separately (per-channel weights at most).
CHANNELWISE = (
    L.BatchNormalization,
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.ELU,
    L.PReLU,
    PActivation,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.Cropping1D,
    L.Cropping2D,
    L.UpSampling1D,
    L.UpSampling2D,
    L.Identity,
    L.Reshape,
)

#: Element-wise merges: all (non-broadcast) inputs share one channel space.
MERGE = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)

_NOT_ELEMENTWISE = {"softmax", "log_softmax"}


def is_linear(layer) -> bool:
    """An exact `Dense` or un-grouped channels-last `Conv2D`.

    Its own activation may be anything when it only *reads* morphed channels;
    a layer whose output is widened must also pass
    :func:`activation_is_elementwise`.
    """
    if type(layer) not in LINEAR:
        return False
    if isinstance(layer, L.Conv2D):
        return layer.groups == 1 and layer.data_format == "channels_last"
    return True


def activation_is_elementwise(layer) -> bool:
    """False when the layer applies softmax (which mixes channels)."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) not in _NOT_ELEMENTWISE


def is_channelwise(layer, input_tensor, output_tensor) -> bool:
    """Whether channel `c` of the output depends on channel `c` of the input only."""
    if type(layer) not in CHANNELWISE:
        return False
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    if isinstance(layer, L.BatchNormalization):
        return layer.axis in (-1, len(input_tensor.shape) - 1)
    if isinstance(layer, L.PReLU):
        return True
    if isinstance(layer, L.Reshape):
        return (
            input_tensor.shape[-1] is not None
            and output_tensor.shape[-1] == input_tensor.shape[-1]
        )
    return activation_is_elementwise(layer)


def is_merge(layer) -> bool:
    return type(layer) in MERGE


def is_concat(layer, output_tensor) -> bool:
    """A `Concatenate` along the channel (last) axis."""
    if type(layer) is not L.Concatenate:
        return False
    return layer.axis in (-1, len(output_tensor.shape) - 1)


def is_flatten(layer) -> bool:
    return type(layer) is L.Flatten and layer.data_format == "channels_last"


def width_key(layer) -> str:
    """The config key holding a linear layer's width."""
    return "units" if isinstance(layer, L.Dense) else "filters"
