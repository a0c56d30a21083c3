"""ResNet v1 with basic blocks (ResNet18 / ResNet34), functional and named.

Layer names and padding follow keras-hub's `ResNetBackbone` (`conv1_conv`,
`stack{i}_block{j}_{k}_conv`, ...) so that
:func:`morphhr_tf.models.import_keras_hub_resnet` can copy its weights. Its
batch norms are :class:`~morphhr_tf.layers.LeanBatchNormalization` (Keras'
function; the training step keeps only each norm's input, which at 896 px
saves about 30 % of ResNet18's training memory).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from morphhr_tf.layers import LeanBatchNormalization

L = keras.layers

_BN = {"epsilon": 1e-5, "momentum": 0.9}
_STAGE_MULTIPLIERS = (1, 2, 4, 8)
_STAGE_STRIDES = (1, 2, 2, 2)


def apply_basic_block(
    x, filters: int, *, stride: int = 1, conv_shortcut: bool = False, name: str
):
    """Applies a ResNet v1 basic block: two 3x3 convs and a residual add.

    Args:
        x: the input tensor `(N, H, W, C)`.
        filters: the block's width.
        stride: stride of the first conv (and of the shortcut projection).
        conv_shortcut: whether the shortcut is a 1x1 conv + BN projection.
        name: the layer-name prefix, e.g. `"stack1_block0"`.

    Returns:
        The block's output tensor.
    """
    shortcut = x
    if conv_shortcut:
        shortcut = L.Conv2D(
            filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv"
        )(x)
        shortcut = LeanBatchNormalization(**_BN, name=f"{name}_0_bn")(shortcut)
    if stride > 1:
        x = L.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
    x = L.Conv2D(
        filters,
        3,
        strides=stride,
        padding="valid" if stride > 1 else "same",
        use_bias=False,
        name=f"{name}_1_conv",
    )(x)
    x = LeanBatchNormalization(**_BN, name=f"{name}_1_bn")(x)
    x = L.Activation("relu", name=f"{name}_1_relu")(x)
    x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = LeanBatchNormalization(**_BN, name=f"{name}_2_bn")(x)
    x = L.Add(name=f"{name}_add")([shortcut, x])
    return L.Activation("relu", name=f"{name}_out")(x)


def apply_stack(
    x, filters: int, blocks: int, *, stride: int, conv_shortcut: bool, name: str
):
    """Applies `blocks` basic blocks; only the first strides / projects."""
    for i in range(blocks):
        x = apply_basic_block(
            x,
            filters,
            stride=stride if i == 0 else 1,
            conv_shortcut=conv_shortcut and i == 0,
            name=f"{name}_block{i}",
        )
    return x


def resnet(
    blocks_per_stage: Sequence[int],
    input_shape: Sequence[int | None] = (224, 224, 3),
    *,
    width: int = 64,
    stage_filters: Sequence[int] | None = None,
    include_top: bool = True,
    num_classes: int = 1,
    multi_label: bool = False,
    pooling: str | None = None,
    name: str = "resnet",
) -> keras.Model:
    """A ResNet v1 with basic blocks; see :func:`resnet18` for the arguments."""
    if len(blocks_per_stage) != 4 or any(
        not isinstance(b, int) or b < 1 for b in blocks_per_stage
    ):
        raise ValueError(
            "blocks_per_stage must be 4 positive ints. "
            f"Received: blocks_per_stage={blocks_per_stage!r}"
        )
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive integer. Received: width={width!r}")
    if stage_filters is None:
        stage_filters = [width * m for m in _STAGE_MULTIPLIERS]
    stage_filters = list(stage_filters)
    if len(stage_filters) != 4 or any(
        not isinstance(f, int) or f < 1 for f in stage_filters
    ):
        raise ValueError(
            "stage_filters must be 4 positive ints. "
            f"Received: stage_filters={stage_filters!r}"
        )
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            "input_shape must be (height, width, channels) with known channels. "
            f"Received: input_shape={input_shape!r}"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive integer. Received: num_classes={num_classes!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}"
        )

    inputs = keras.Input(shape=input_shape, name="image")
    x = L.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = L.Conv2D(stage_filters[0], 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = LeanBatchNormalization(**_BN, name="conv1_bn")(x)
    x = L.Activation("relu", name="conv1_relu")(x)
    x = L.ZeroPadding2D(1, name="pool1_pad")(x)
    x = L.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for i, (filters, blocks) in enumerate(zip(stage_filters, blocks_per_stage)):
        x = apply_stack(
            x,
            filters,
            blocks,
            stride=_STAGE_STRIDES[i],
            conv_shortcut=i > 0,
            name=f"stack{i}",
        )
    if include_top:
        x = L.GlobalAveragePooling2D(name="avg_pool")(x)
        x = L.Dense(num_classes, dtype="float32", name="logits")(x)
        activation = "sigmoid" if num_classes == 1 or multi_label else "softmax"
        x = L.Activation(activation, dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = L.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def resnet18(
    input_shape: Sequence[int | None] = (224, 224, 3),
    *,
    width: int = 64,
    include_top: bool = True,
    num_classes: int = 1,
    multi_label: bool = False,
    pooling: str | None = None,
    stage_filters: Sequence[int] | None = None,
    name: str = "resnet18",
) -> keras.Model:
    """ResNet18 (v1, basic blocks [2, 2, 2, 2]) as a functional model.

    Layers are named like keras-hub's `ResNetBackbone`: stem `conv1_pad`,
    `conv1_conv`, `conv1_bn`, `conv1_relu`, `pool1_pad`, `pool1_pool`; blocks
    `stack{i}_block{j}_{0,1,2}_{conv,bn}`, `_1_pad`, `_1_relu`, `_add`,
    `_out`; head `avg_pool`, `logits`, `predictions`.

    Args:
        input_shape: `(height, width, channels)`; 1-channel inputs work.
        width: stem width; stage `i` has `width * 2**i` filters (64 is the
            standard ResNet18; the CPU demo uses narrow nets such as 8).
        include_top: add global average pooling, a `Dense(num_classes)`
            (`logits`) and a sigmoid (1 class) or softmax (`predictions`),
            both float32 so that mixed precision keeps a float32 output.
        num_classes: output units of the head.
        multi_label: one sigmoid per class (independent labels, such as
            ChestX-ray14's 14 findings) instead of a softmax over them.
        pooling: without the top: `None` (feature map), `"avg"` or `"max"`.
        stage_filters: explicit widths of the 4 stages (overrides `width`).
        name: the model name.

    Returns:
        A `keras.Model`; with the top and `num_classes=1` its output is the
        `(N, 1)` float32 probability.

    Raises:
        ValueError: on a bad argument.

    Example:

    >>> model = resnet18((32, 32, 1), width=8)
    >>> tuple(model.output.shape)
    (None, 1)
    """
    return resnet(
        (2, 2, 2, 2),
        input_shape,
        width=width,
        stage_filters=stage_filters,
        include_top=include_top,
        num_classes=num_classes,
        multi_label=multi_label,
        pooling=pooling,
        name=name,
    )


def resnet34(
    input_shape: Sequence[int | None] = (224, 224, 3),
    *,
    width: int = 64,
    include_top: bool = True,
    num_classes: int = 1,
    multi_label: bool = False,
    pooling: str | None = None,
    stage_filters: Sequence[int] | None = None,
    name: str = "resnet34",
) -> keras.Model:
    """ResNet34 (v1, basic blocks [3, 4, 6, 3]); arguments as :func:`resnet18`.

    Example:

    >>> model = resnet34((32, 32, 3), width=8, include_top=False, pooling="avg")
    >>> tuple(model.output.shape)
    (None, 64)
    """
    return resnet(
        (3, 4, 6, 3),
        input_shape,
        width=width,
        stage_filters=stage_filters,
        include_top=include_top,
        num_classes=num_classes,
        multi_label=multi_label,
        pooling=pooling,
        name=name,
    )
