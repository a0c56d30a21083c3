import keras
import numpy as np
import pytest

from morphhr_tf.models import resnet18
from morphhr_tf.morph import collapse_input_channels
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

L = keras.layers
TOL = 1e-5


def gray(n=2, size=32, seed=0):
    return (
        np.random.default_rng(seed).normal(size=(n, size, size, 1)).astype(np.float32)
    )


def test_collapse_resnet18_stem():
    model = randomize_weights(
        resnet18((32, 32, 3), width=8, include_top=False, pooling="avg"), seed=1
    )
    student = collapse_input_channels(model)
    assert tuple(student.input.shape) == (None, 32, 32, 1)
    assert student.get_layer("conv1_conv").kernel.shape == (7, 7, 1, 8)
    x = gray()
    ref = model(np.concatenate([x] * 3, axis=-1), training=False)
    assert max_abs_difference(student(x, training=False), ref) <= TOL
    assert tuple(model.input.shape) == (None, 32, 32, 3)  # teacher untouched


def test_collapse_through_parameter_free_layers_to_several_convs():
    inputs = keras.Input((16, 16, 3), name="image")
    x = L.ZeroPadding2D(1, name="pad")(inputs)
    x = L.AveragePooling2D(2, name="pool")(x)
    a = L.Conv2D(4, 3, name="a")(x)
    b = L.Conv2D(4, 3, name="b")(L.Activation("tanh", name="t")(x))
    outputs = L.GlobalAveragePooling2D()(L.Add()([a, b]))
    model = randomize_weights(keras.Model(inputs, outputs), seed=2)
    student = collapse_input_channels(model)
    assert student.layers[0].name == "image"
    x1 = gray(size=16)
    ref = model(np.repeat(x1, 3, axis=-1), training=False)
    assert max_abs_difference(student(x1, training=False), ref) <= TOL


def test_refuses_per_channel_layer():
    inputs = keras.Input((8, 8, 3))
    x = L.BatchNormalization(name="input_bn")(inputs)
    model = keras.Model(inputs, L.Conv2D(2, 3)(x))
    with pytest.raises(ValueError, match="'input_bn' \\(BatchNormalization\\)"):
        collapse_input_channels(model)


def test_refuses_single_channel_and_multi_input():
    inputs = keras.Input((8, 8, 1))
    with pytest.raises(ValueError, match="C >= 2"):
        collapse_input_channels(keras.Model(inputs, L.Conv2D(2, 3)(inputs)))
    a, b = keras.Input((4,)), keras.Input((4,))
    with pytest.raises(ValueError, match="2 inputs"):
        collapse_input_channels(keras.Model([a, b], L.Add()([a, b])))
