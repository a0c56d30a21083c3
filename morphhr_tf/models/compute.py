"""The compute of a model, counted from its layers' shapes."""

from __future__ import annotations

import keras


def forward_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass per image.

    Counts the `Conv2D` and `Dense` layers (the rest is negligible for the
    convolutional networks here); training is about 3x this.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            total += h * w * c_out * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            c_in, c_out = layer.kernel.shape
            total += c_in * c_out
    return int(total)
