"""Copy pretrained keras-hub ResNet weights into :func:`resnet18` models."""

from __future__ import annotations

import keras
import numpy as np

from morphhr_tf.morph import weight_maps

_STEM = "conv1_conv"


def import_keras_hub_resnet(model: keras.Model, backbone: keras.Model) -> keras.Model:
    """Copies a keras-hub `ResNetBackbone`'s weights into `model`, in place.

    `model` comes from :func:`morphhr_tf.models.resnet18` / `resnet34` (same
    layer names and padding as keras-hub); `backbone` is a basic-block v1
    `keras_hub.models.ResNetBackbone` with one stem conv, e.g.
    `keras_hub.models.ResNetBackbone.from_preset("resnet_18_imagenet")` for
    users who have the preset. Every weighted backbone layer is copied to the
    model layer of the same name; the model's head (`logits`) keeps its own
    weights. Inputs must be preprocessed as the preset expects (keras-hub's
    image converter is not part of the backbone).

    Grayscale models: when `model` takes 1-channel images and the backbone 3,
    the stem kernel is summed over its input channels (the channel-collapse
    morph), so `model(x)` equals the backbone on `x` repeated three times.

    Args:
        model: the target model; its weights are overwritten.
        backbone: the keras-hub backbone (left untouched).

    Returns:
        `model`, for chaining.

    Raises:
        ValueError: if the backbone is not a basic-block v1 ResNet with one
            stem conv, or a layer is missing or has another shape. Nothing is
            written in that case.

    Example:

    ```python
    backbone = keras_hub.models.ResNetBackbone.from_preset("resnet_18_imagenet")
    model = import_keras_hub_resnet(resnet18((512, 512, 1)), backbone)
    ```
    """
    block_type = getattr(backbone, "block_type", None)
    if block_type != "basic_block" or getattr(backbone, "use_pre_activation", True):
        raise ValueError(
            "import_keras_hub_resnet needs a keras-hub ResNetBackbone with "
            "block_type='basic_block' and use_pre_activation=False (ResNet18/34 "
            f"v1). Received: {type(backbone).__name__} with block_type="
            f"{block_type!r}, use_pre_activation="
            f"{getattr(backbone, 'use_pre_activation', None)!r}."
        )
    if len(getattr(backbone, "input_conv_filters", ())) != 1:
        raise ValueError(
            "import_keras_hub_resnet needs a backbone with a single stem conv. "
            f"Received: input_conv_filters={backbone.input_conv_filters!r}"
        )
    targets = {layer.name: layer for layer in model.layers}
    planned = []
    for layer in backbone.layers:
        values = layer.get_weights()
        if not values:
            continue
        target = targets.get(layer.name)
        if target is None:
            raise ValueError(
                f"The model has no layer named '{layer.name}' to receive the "
                f"backbone's {type(layer).__name__} weights. Build it with "
                "morphhr_tf.models.resnet18/resnet34 and the same depth."
            )
        shapes = [tuple(w.shape) for w in target.weights]
        if layer.name == _STEM and shapes and shapes[0][2] == 1 != values[0].shape[2]:
            values[0] = weight_maps.collapse_kernel(values[0], axis=-2)
        if [v.shape for v in values] != shapes:
            raise ValueError(
                f"Layer '{layer.name}' has weight shapes {shapes} in the model but "
                f"{[v.shape for v in values]} in the backbone. Match the "
                "model's width and depth to the backbone."
            )
        planned.append((target, [np.asarray(v) for v in values]))
    for target, values in planned:
        target.set_weights(values)
    return model
