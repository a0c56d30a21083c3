"""How each Keras layer treats the channel (last) axis.

The morphs only trust layers listed here. Anything else (custom layers,
grouped convolutions, depthwise convolutions with a depth multiplier above 1,
normalizations over more than the channel axis, softmax, ...) blocks a morph
that would have to pass channels through it, and the morph raises; see
:func:`why_not_adaptable` for the reason given.

Depthwise convolutions (multiplier 1) are channel-wise: channel `c` of the
output reads channel `c` of the input only. `LayerNormalization` over the
channel axis is listed apart (:func:`normalizes_channels`): it is channel-wise
in its weights, but its statistics mix all channels.
"""

from __future__ import annotations

import keras

from morphhr_tf.layers import LeanBatchNormalization, PActivation
from morphhr_tf.morph.graph import application_layer_types, elementwise_op_types

L = keras.layers

#: Linear layers whose input and output channels a morph can rewrite.
LINEAR = (L.Dense, L.Conv2D, L.SeparableConv2D)

#: Layers that act on every channel separately (per-channel weights at most).
CHANNELWISE = (
    L.BatchNormalization,
    LeanBatchNormalization,
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
    *application_layer_types(),
)

#: Element-wise merges: all (non-broadcast) inputs share one channel space.
#: `x + y` etc. on symbolic tensors are operations, listed too.
MERGE = (
    L.Add,
    L.Subtract,
    L.Multiply,
    L.Average,
    L.Maximum,
    L.Minimum,
    *elementwise_op_types(),
)

_NOT_ELEMENTWISE = {"softmax", "log_softmax"}


def is_linear(layer) -> bool:
    """An exact `Dense`, or an un-grouped channels-last `Conv2D` or
    `SeparableConv2D`.

    Its own activation may be anything when it only *reads* morphed channels;
    a layer whose output is widened must also pass
    :func:`activation_is_elementwise`.
    """
    if type(layer) not in LINEAR:
        return False
    if isinstance(layer, L.Conv2D):
        return layer.groups == 1 and layer.data_format == "channels_last"
    if isinstance(layer, L.SeparableConv2D):
        return layer.data_format == "channels_last"
    return True


def is_separable(layer) -> bool:
    return type(layer) is L.SeparableConv2D


def is_depthwise(layer) -> bool:
    """A per-channel convolution: `DepthwiseConv2D(depth_multiplier=1)`, or a
    `Conv2D` with `groups == filters ==` its input channels (ConvNeXt's)."""
    if type(layer) is L.DepthwiseConv2D:
        return layer.depth_multiplier == 1
    if type(layer) is L.Conv2D and layer.groups > 1 and layer.built:
        return layer.filters == layer.groups and layer.kernel.shape[-2] == 1
    return False


def depthwise_axis(layer) -> int:
    """The kernel axis holding the channels of a :func:`is_depthwise` layer."""
    return -2 if type(layer) is L.DepthwiseConv2D else -1


def normalizes_channels(layer, input_tensor) -> bool:
    """A `LayerNormalization` over the channel (last) axis only."""
    if type(layer) is not L.LayerNormalization:
        return False
    axes = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(input_tensor.shape)
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def why_not_adaptable(layer) -> str:
    """Why a morph cannot pass channels through `layer` (for error messages)."""
    if isinstance(layer, L.Conv2D) and layer.groups > 1 and not is_depthwise(layer):
        return (
            f"a grouped convolution (groups={layer.groups}): each group reads a "
            "fixed slice of the channels, so added channels would land in the "
            "wrong group. Grouped convolutions are not supported."
        )
    if type(layer) is L.DepthwiseConv2D and layer.depth_multiplier != 1:
        return (
            f"a depthwise convolution with depth_multiplier="
            f"{layer.depth_multiplier}; only depth_multiplier=1 is supported."
        )
    if type(layer) is L.LayerNormalization:
        return (
            f"a LayerNormalization over axes {layer.axis}, which mixes the "
            "channels with other axes in its statistics."
        )
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "which is channels-first; morphs need channels-last layers."
    if not activation_is_elementwise(layer):
        return "whose softmax mixes the channels."
    return (
        "which morphhr_tf cannot adapt exactly (not a known channel-wise layer, "
        "element-wise merge, channel concatenation, Flatten, Dense or "
        "convolution)."
    )


def activation_is_elementwise(layer) -> bool:
    """False when the layer applies softmax (which mixes channels)."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) not in _NOT_ELEMENTWISE


def is_channelwise(layer, input_tensor, output_tensor) -> bool:
    """Whether channel `c` of the output depends on channel `c` of the input only."""
    if is_depthwise(layer):
        return layer.data_format == "channels_last" and activation_is_elementwise(layer)
    if type(layer) not in CHANNELWISE:
        return False
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    if isinstance(layer, L.BatchNormalization):
        return layer.axis in (-1, len(input_tensor.shape) - 1)
    if isinstance(layer, L.PReLU):
        return True
    if type(layer) is L.DepthwiseConv2D and layer.depth_multiplier != 1:
        return False
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


def channel_config(layer, channels: int) -> dict:
    """Config keys a channel-wise layer needs to handle `channels` channels."""
    if isinstance(layer, L.Reshape):
        return {"target_shape": tuple(layer.target_shape[:-1]) + (channels,)}
    if is_depthwise(layer) and type(layer) is L.Conv2D:
        return {"filters": channels, "groups": channels}
    if "projection_dim" in layer.get_config():  # ConvNeXt's LayerScale
        return {"projection_dim": channels}
    return {}


def width_key(layer) -> str:
    """The config key holding a linear layer's width."""
    return "units" if isinstance(layer, L.Dense) else "filters"
