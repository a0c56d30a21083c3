"""deepen with dense, depthwise and residual identity blocks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.morph import deepen, widen
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

L = keras.layers
TOL = 1e-5


def mixed_net():
    inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(5, 3, padding="same", name="c1")(inputs)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)
    shortcut = L.Activation("swish", name="act")(x)
    y = L.Conv2D(5, 3, padding="same", name="branch_conv")(shortcut)
    x = L.Add(name="add")([shortcut, y])
    x = L.Reshape((100, 5), name="tokens")(x)
    x = L.Dense(4, name="token_dense")(x)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    outputs = L.Dense(2, name="out")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=21)


def check(teacher, student):
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 3)).astype(np.float32)
    reference = teacher(x, training=False)
    assert 0.05 < float(np.max(np.abs(np.asarray(reference)))) < 50
    diff = max_abs_difference(student(x, training=False), reference)
    assert diff <= TOL, diff


@pytest.mark.parametrize(
    "after, kind, new",
    [
        ("dw", "depthwise", "dw_deepen_dwconv"),
        ("c1", "dense", "c1_deepen_dense"),
        ("token_dense", "auto", "token_dense_deepen_dense"),
        ("branch_conv", "conv", "branch_conv_deepen_conv"),
        ("branch_conv", "depthwise", "branch_conv_deepen_dwconv"),
    ],
)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_identity_blocks_of_each_kind(after, kind, new, batch_norm):
    teacher = mixed_net()
    student = deepen(
        teacher, after, kind=kind, batch_norm=batch_norm, activation="gelu"
    )
    assert new in [layer.name for layer in student.layers]
    check(teacher, student)


@pytest.mark.parametrize("kind", ["conv", "depthwise", "dense"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_residual_block_is_exact_and_learns(kind, activation):
    teacher = mixed_net()
    student = deepen(teacher, "act", kind=kind, residual=True, activation=activation)
    suffix = {"conv": "conv", "depthwise": "dwconv", "dense": "dense"}[kind]
    names = [layer.name for layer in student.layers]
    assert {f"act_deepen_{suffix}", f"act_deepen_{suffix}2", "act_deepen_add"} <= set(
        names
    )
    check(teacher, student)
    last = student.get_layer(f"act_deepen_{suffix}2")
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 10, 10, 3)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(student(x, training=True) - 1.0))
    grad = tape.gradient(loss, last.trainable_weights[0].value)
    assert float(tf.reduce_max(tf.abs(grad))) > 0


def test_deepened_depthwise_block_can_then_be_widened():
    teacher = mixed_net()
    deeper = deepen(teacher, "dw", kind="depthwise", batch_norm=True)
    wider = widen(deeper, "c1", 10, seed=0)
    assert wider.get_layer("dw_deepen_dwconv").get_weights()[0].shape == (3, 3, 10, 1)
    check(teacher, wider)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"after_layer_name": "pool", "kind": "conv"}, "kind='conv' needs a 4-D"),
        ({"after_layer_name": "token_dense", "kind": "depthwise"}, "'token_dense'"),
        ({"after_layer_name": "dw", "kind": "grouped"}, "kind='grouped'"),
    ],
)
def test_refuses_kinds_that_do_not_fit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        deepen(mixed_net(), **kwargs)
