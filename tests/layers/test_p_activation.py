import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.layers import PActivation

_NUMPY_PHI = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
}


@pytest.mark.parametrize("activation", sorted(_NUMPY_PHI))
def test_matches_numpy_reference(activation):
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 2.0, (2, 5, 3)).astype(np.float32)
    layer = PActivation(activation)
    layer.build(x.shape)
    alpha = 0.37
    layer.set_weights([np.float32(alpha)])
    expected = (1.0 - alpha) * x + alpha * _NUMPY_PHI[activation](x)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "gelu", "elu", "tanh", "sigmoid"])
def test_zero_alpha_is_exact_identity(activation):
    x = np.random.default_rng(1).normal(0.0, 3.0, (4, 7)).astype(np.float32)
    y = np.asarray(PActivation(activation)(x))
    np.testing.assert_array_equal(y, x)


def test_ones_initializer_is_the_plain_activation():
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    y = PActivation("gelu", alpha_initializer="ones")(x)
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(keras.activations.gelu(x)), atol=1e-6
    )


@keras.saving.register_keras_serializable(package="morphhr_tf_tests")
def doubled_tanh(x):
    return 2.0 * keras.ops.tanh(x)


@pytest.mark.parametrize("activation", ["relu", "gelu", doubled_tanh])
def test_config_round_trip(activation):
    layer = PActivation(
        activation, alpha_initializer="ones", alpha_regularizer="l2", name="pact"
    )
    clone = PActivation.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = np.linspace(-2.0, 2.0, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(layer(x)), atol=1e-6)
    assert np.abs(np.asarray(clone(x)) - x).max() > 0.1  # alpha = 1: not identity


def test_alpha_is_one_learned_scalar_with_gradient():
    layer = PActivation("relu")
    x = tf.constant([[-1.0, 2.0, -3.0]])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    (grad,) = tape.gradient(y, [layer.alpha.value])
    assert tuple(layer.alpha.shape) == ()
    # d/da sum(x + a (relu(x) - x)) = sum(relu(x) - x) = 1 + 3
    np.testing.assert_allclose(float(grad), 4.0)


@pytest.mark.parametrize("activation", [None, "softmax", "no_such_activation"])
def test_rejects_bad_activation(activation):
    with pytest.raises(ValueError):
        PActivation(activation)


def test_mixed_precision_computes_in_bfloat16(mixed_bfloat16):
    layer = PActivation("gelu", alpha_initializer="ones")
    x = np.random.default_rng(3).normal(size=(2, 6)).astype(np.float32)
    y = layer(x)
    assert y.dtype == "bfloat16"
    assert layer.alpha.dtype == "float32"
    expected = np.asarray(keras.activations.gelu(x))
    assert np.abs(np.asarray(tf.cast(y, tf.float32)) - expected).max() < 2e-2
