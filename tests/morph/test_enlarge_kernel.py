import keras
import numpy as np
import pytest

from morphhr_tf.models import resnet18
from morphhr_tf.morph import enlarge_kernel
from morphhr_tf.morph.testing import (
    max_abs_difference,
    randomize_weights,
    relative_error,
)

L = keras.layers
TOL = 1e-5


def one_conv(size=12, **conv_kwargs):
    inputs = keras.Input((size, size, 3))
    layer_cls = conv_kwargs.pop("layer_cls", L.Conv2D)
    x = layer_cls(name="conv", **conv_kwargs)(inputs)
    x = L.ReLU(name="relu")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=1)


def check(model, new_size):
    student = enlarge_kernel(model, "conv", new_size)
    x = np.random.default_rng(0).normal(size=(2,) + tuple(model.input.shape[1:]))
    x = x.astype(np.float32)
    ref = model(x, training=False)
    assert float(np.max(np.abs(np.asarray(ref)))) > 0.05
    assert max_abs_difference(student(x, training=False), ref) <= TOL
    return student


@pytest.mark.parametrize(
    "size, conv_kwargs, new_size",
    [
        (12, {"filters": 4, "kernel_size": 3, "padding": "same"}, 5),
        (12, {"filters": 4, "kernel_size": 1, "padding": "same"}, (3, 5)),
        (12, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, 7),
        (13, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, 5),
        (
            12,
            {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
            5,
        ),
        # 1x1 stride 2 is exact only where TF's "same" padding stays centred.
        (13, {"filters": 4, "kernel_size": 1, "strides": 2, "padding": "same"}, 3),
        (
            12,
            {"layer_cls": L.DepthwiseConv2D, "kernel_size": 3, "padding": "same"},
            5,
        ),
    ],
)
def test_enlarge_kernel_preserves_function(size, conv_kwargs, new_size):
    student = check(one_conv(size, **conv_kwargs), new_size)
    expected = (new_size, new_size) if isinstance(new_size, int) else new_size
    assert student.get_layer("conv").kernel_size == expected


def test_enlarge_kernel_on_resnet18():
    model = randomize_weights(
        resnet18((32, 32, 3), width=8, include_top=False, pooling="avg"), seed=2
    )
    student = enlarge_kernel(model, "stack1_block1_1_conv", 5)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert (
        max_abs_difference(student(x, training=False), model(x, training=False)) <= TOL
    )


def test_enlarge_kernel_under_mixed_bfloat16(mixed_bfloat16):
    model = randomize_weights(resnet18((32, 32, 3), width=8), seed=3)
    student = enlarge_kernel(model, "stack0_block0_2_conv", 7)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert relative_error(student(x, training=False), model(x, training=False)) <= 2e-2


@pytest.mark.parametrize(
    "size, conv_kwargs, new_size, message",
    [
        (
            12,
            {"filters": 4, "kernel_size": 3, "padding": "valid"},
            5,
            "padding='valid'",
        ),
        (
            12,
            {"filters": 4, "kernel_size": 1, "strides": 2, "padding": "same"},
            3,
            "shift",
        ),
        (12, {"filters": 4, "kernel_size": 3, "padding": "same"}, 4, "even amount"),
        (12, {"filters": 4, "kernel_size": 3, "padding": "same"}, 3, "must exceed"),
        (12, {"filters": 4, "kernel_size": 3, "padding": "same"}, 1, "must exceed"),
        (12, {"filters": 4, "kernel_size": 3, "padding": "same"}, "5", "kernel_size="),
    ],
)
def test_refuses(size, conv_kwargs, new_size, message):
    with pytest.raises(ValueError, match=message):
        enlarge_kernel(one_conv(size, **conv_kwargs), "conv", new_size)


def test_refuses_non_conv_layer_by_name():
    with pytest.raises(ValueError, match="'relu' \\(ReLU\\)"):
        enlarge_kernel(one_conv(filters=4, kernel_size=3, padding="same"), "relu", 5)
