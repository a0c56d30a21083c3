import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.layers import PActivation
from morphhr_tf.models import resnet18
from morphhr_tf.morph import deepen
from morphhr_tf.morph import depth as depth_module
from morphhr_tf.morph.testing import (
    max_abs_difference,
    randomize_weights,
    relative_error,
)

L = keras.layers
TOL = 1e-5
ACTIVATIONS = ["relu", "relu6", "elu", "gelu", "swish", "tanh", "sigmoid"]


def conv_and_dense_net():
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(5, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation("relu", name="r1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(6, name="d1")(x)
    outputs = L.Dense(1, activation="sigmoid", name="out")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=1)


def inputs_for(model, seed=0):
    shape = (2,) + tuple(model.input.shape[1:])
    return np.random.default_rng(seed).normal(0.0, 2.0, shape).astype(np.float32)


@pytest.fixture(scope="module")
def net():
    return conv_and_dense_net()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(
    "after, batch_norm, kernel_size",
    [("bn1", False, 3), ("c1", True, 5), ("d1", False, 3), ("d1", True, 3)],
)
def test_deepen_preserves_function(net, after, batch_norm, kernel_size, activation):
    student = deepen(
        net,
        after,
        activation=activation,
        batch_norm=batch_norm,
        kernel_size=kernel_size,
    )
    kind = "conv" if after.startswith("c") or after.startswith("bn") else "dense"
    names = [layer.name for layer in student.layers]
    assert f"{after}_deepen_{kind}" in names and f"{after}_deepen_act" in names
    assert (f"{after}_deepen_bn" in names) == batch_norm
    assert len(student.layers) == len(net.layers) + 2 + batch_norm
    x = inputs_for(net)
    teacher_out = net(x, training=False)
    assert max_abs_difference(student(x, training=False), teacher_out) <= TOL
    # The logits in between differ from zero: outputs are of order 1.
    assert 0.05 < float(np.max(np.asarray(teacher_out))) < 0.95


def test_deepen_on_resnet_and_twice_after_the_same_layer():
    model = randomize_weights(
        resnet18((32, 32, 3), width=8, include_top=False, pooling="avg"), seed=2
    )
    once = deepen(model, "stack1_block0_out", activation="gelu", batch_norm=True)
    twice = deepen(once, "stack1_block0_out", activation="tanh")
    names = [layer.name for layer in twice.layers]
    assert "stack1_block0_out_deepen_conv" in names
    assert "stack1_block0_out_deepen_2_conv" in names
    x = inputs_for(model)
    ref = model(x, training=False)
    assert max_abs_difference(twice(x, training=False), ref) <= TOL


def test_deepen_after_input_and_after_output():
    inputs = keras.Input((6,), name="features")
    outputs = L.Dense(2, name="out")(inputs)
    model = randomize_weights(keras.Model(inputs, outputs))
    x = inputs_for(model)
    for after in ("features", "out"):
        student = deepen(model, after, activation="elu")
        assert max_abs_difference(student(x), model(x)) <= TOL


def test_batch_norm_in_training_mode_is_not_preserved(net):
    """Documented limit: a new BN uses batch statistics when training."""
    student = deepen(net, "d1", batch_norm=True)
    x = inputs_for(net)
    assert max_abs_difference(student(x, training=False), net(x, training=False)) <= TOL
    assert max_abs_difference(student(x, training=True), net(x, training=True)) > 1e-3


def test_new_layers_learn(net):
    student = deepen(net, "c1", activation="tanh")
    x = tf.constant(inputs_for(net))
    conv = student.get_layer("c1_deepen_conv")
    act = student.get_layer("c1_deepen_act")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(student(x, training=True) - 1.0))
    grads = tape.gradient(loss, [conv.kernel.value, act.alpha.value])
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_deepen_under_mixed_bfloat16(mixed_bfloat16):
    model = randomize_weights(resnet18((32, 32, 3), width=8), seed=3)
    student = deepen(model, "stack2_block1_out", activation="gelu", batch_norm=True)
    new = student.get_layer("stack2_block1_out_deepen_conv")
    assert new.dtype_policy.name == "mixed_bfloat16"
    x = inputs_for(model)
    assert relative_error(student(x, training=False), model(x, training=False)) <= 2e-2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"after_layer_name": "c1", "kernel_size": 2}, "kernel_size=2"),
        ({"after_layer_name": "c1", "kernel_size": 0}, "kernel_size=0"),
        ({"after_layer_name": "c1", "activation": "softmax"}, "softmax"),
        ({"after_layer_name": "missing"}, "No layer named 'missing'"),
    ],
)
def test_validates_arguments(net, kwargs, message):
    with pytest.raises(ValueError, match=message):
        deepen(net, **kwargs)


def test_refuses_conv_on_a_3d_tensor_before_building(monkeypatch):
    inputs = keras.Input((5, 4))
    x = L.Dense(3, name="seq")(inputs)
    model = keras.Model(inputs, L.Dense(1)(x))
    monkeypatch.setattr(depth_module, "rebuild", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(ValueError, match="'seq'"):
        deepen(model, "seq", kind="conv")


def test_p_activation_stays_exact_with_large_inputs():
    """`x + a (phi(x) - x)` at a = 0 never produces 0 * inf."""
    inputs = keras.Input((3,))
    outputs = PActivation("elu", name="p")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.array([[-1e30, 0.0, 1e30]], np.float32)
    np.testing.assert_array_equal(np.asarray(model(x)), x)
