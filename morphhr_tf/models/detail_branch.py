"""A full-resolution detail branch added to a classifier without changing it.

Small, sparse structures (microcalcification-like specks a pixel wide) vanish
in a stride-4 stem and are diluted by a global *average* pool over a large
image. :func:`add_detail_branch` adds beside the trunk a detector that looks
at full resolution and pools with a global *maximum*: three blocks of 3x3
conv + BN, 2x2 max-pool and ReLU (at full resolution, /2 and /4; the ReLU
after the pool gives the same values and gradients as before it, on a
quarter of the pixels), a 3x3 conv at /8 and a global max pool, then a dense
layer whose logits are **added** to the trunk's logits before the final
activation.

The batch norms are :class:`~morphhr_tf.layers.LeanBatchNormalization`: at
full resolution, Keras' layer would keep float32 copies of its input for the
backward pass, larger than anything else in the model.

The first conv sees every full-resolution pixel and the max-pool after it
keeps a one-pixel speck's response, so pooling early loses no speck; the
receptive field is 38 px (a whole cluster of specks, not only two neighbours)
and the branch costs about 1,150 multiply-accumulates per full-resolution
pixel at the default widths. An earlier layout, two convs at full resolution
before the first pool, saw 20 px at 3.6x the cost (``docs/results.md``
compares the two).

The morph is exact: at construction the branch's contribution is exactly zero,
so ``new_model(x) == model(x)`` (in inference and in training mode). Two ways
to get there (``init``):

- ``"zeros"``: the branch's dense kernel and bias are zero. The detector's
  weights then get no gradient until the dense kernel has moved away from
  zero (one optimizer step later).
- ``"antithetic"``: the detector is built twice with identical weights and
  identical non-zero dense layers, and the branch outputs their difference,
  ``d_a(f_a(x)) - d_b(f_b(x))``. The two halves compute bit-identical values,
  so the difference is exactly zero, while each half gets a non-zero gradient
  from the first step (of opposite sign, so the halves move apart). Twice the
  branch's compute.

Layers are named ``morphhr_detail_*`` (:data:`DETAIL_PREFIX`), so a trainer
gives them the front's learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from morphhr_tf.layers import LeanBatchNormalization

#: Prefix of every layer :func:`add_detail_branch` adds.
DETAIL_PREFIX = "morphhr_detail_"
#: Initialisations that keep the branch's output exactly zero.
INITS = ("zeros", "antithetic")

L = keras.layers


def _detector(x, channels: Sequence[int], prefix: str, seed: int | None = None):
    """The detector's layers; returns the globally max-pooled features."""

    def conv(x, i, bias=False):
        init = "glorot_uniform"
        if seed is not None:
            init = keras.initializers.GlorotUniform(seed=seed * 16 + i)
        return L.Conv2D(
            channels[i],
            3,
            padding="same",
            use_bias=bias,
            kernel_initializer=init,
            name=f"{prefix}{i}_conv",
        )(x)

    for i in range(3):  # at full resolution, /2 and /4
        x = conv(x, i)
        x = LeanBatchNormalization(name=f"{prefix}{i}_bn")(x)
        # ReLU after the max pool: the same values and gradients (a maximum
        # commutes with a non-decreasing function), on a quarter of the pixels.
        x = L.MaxPooling2D(2, name=f"{prefix}{i}_pool")(x)
        x = L.Activation("relu", name=f"{prefix}{i}_relu")(x)
    x = conv(x, 3, bias=True)
    return L.GlobalMaxPooling2D(name=f"{prefix}max_pool")(x)


def add_detail_branch(
    model: keras.Model,
    *,
    channels: Sequence[int] = (16, 16, 32, 32),
    init: str = "zeros",
    logits_layer: str = "logits",
    seed: int | None = None,
) -> keras.Model:
    """Adds a full-resolution, max-pooled detail branch to `model`'s logits.

    Args:
        model: a functional model with one image input, a `Dense` layer named
            `logits_layer` and, after it, one `Activation` (the output), as
            :func:`morphhr_tf.models.resnet18` and
            :func:`morphhr_tf.models.build_morphhr` build them.
        channels: the detector's four conv widths.
        init: ``"zeros"`` or ``"antithetic"`` (see the module docstring).
        logits_layer: the name of the trunk's logits layer.
        seed: seed of the detector's initial weights.

    Returns:
        A new model, named like `model`, that computes exactly `model`'s
        function at construction; `model` is left untouched.

    Raises:
        ValueError: on a bad argument or a model of another shape.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}. Received: init={init!r}")
    channels = tuple(channels)
    if len(channels) != 4 or any(
        isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1
        for c in channels
    ):
        raise ValueError(
            f"channels must be 4 positive integers. Received: channels={channels!r}"
        )
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            "add_detail_branch needs a model with one (H, W, C) image input. "
            f"Received: inputs {[tuple(t.shape) for t in model.inputs]}."
        )
    names = [layer.name for layer in model.layers]
    clashes = [n for n in names if n.startswith(DETAIL_PREFIX)]
    if clashes:
        raise ValueError(
            f"The model already has a detail branch ({clashes[0]!r}); add it once."
        )
    if logits_layer not in names:
        raise ValueError(
            f"No layer named {logits_layer!r} in model {model.name!r}. Pass "
            "logits_layer= the name of the Dense layer that makes the logits."
        )
    logits = model.get_layer(logits_layer)
    if not isinstance(logits, L.Dense):
        raise ValueError(
            f"Layer {logits_layer!r} is a {type(logits).__name__}, not a Dense layer."
        )
    head = model.layers[-1]
    if not isinstance(head, L.Activation) or model.output is not head.output:
        raise ValueError(
            "add_detail_branch needs the model's output to be one Activation "
            f"after {logits_layer!r}. Received: last layer {head.name!r} "
            f"({type(head).__name__})."
        )
    units = logits.units
    # Fresh layers: the new model shares no layer (and no weight) with `model`.
    trunk = keras.models.clone_model(model)
    trunk.set_weights(model.get_weights())
    logits = trunk.get_layer(logits_layer)
    image = trunk.inputs[0]
    dense_kw = {
        "dtype": "float32",
        "kernel_initializer": (
            "glorot_uniform"
            if seed is None
            else keras.initializers.GlorotUniform(seed=seed * 16 + 4)
        ),
    }
    if init == "zeros":
        features = _detector(image, channels, f"{DETAIL_PREFIX}", seed)
        branch = L.Dense(units, name=f"{DETAIL_PREFIX}logits", **dense_kw)(features)
    else:
        fa = _detector(image, channels, f"{DETAIL_PREFIX}a_", seed)
        fb = _detector(image, channels, f"{DETAIL_PREFIX}b_", seed)
        la = L.Dense(units, name=f"{DETAIL_PREFIX}a_logits", **dense_kw)(fa)
        lb = L.Dense(units, name=f"{DETAIL_PREFIX}b_logits", **dense_kw)(fb)
        branch = L.Subtract(name=f"{DETAIL_PREFIX}logits", dtype="float32")([la, lb])
    total = L.Add(name=f"{DETAIL_PREFIX}add", dtype="float32")([logits.output, branch])
    output = L.Activation(
        head.get_config()["activation"], dtype="float32", name=head.name
    )(total)
    new = keras.Model(image, output, name=model.name)
    if init == "zeros":
        dense = new.get_layer(f"{DETAIL_PREFIX}logits")
        dense.set_weights([np.zeros(w.shape, np.float32) for w in dense.get_weights()])
    else:
        for layer in new.layers:
            if layer.name.startswith(f"{DETAIL_PREFIX}a_") and layer.weights:
                twin = layer.name.replace(f"{DETAIL_PREFIX}a_", f"{DETAIL_PREFIX}b_", 1)
                new.get_layer(twin).set_weights(layer.get_weights())
    return new
