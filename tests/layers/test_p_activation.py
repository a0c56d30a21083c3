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


def _formula_gradients(x, alpha, upstream):
    """d/dx and d/da of `x + a * (relu(x) - x)` by automatic differentiation."""
    x, a = tf.constant(x), tf.constant(alpha)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, a])
        y = x + a * (tf.nn.relu(x) - x)
    return [np.asarray(g) for g in tape.gradient(y, [x, a], output_gradients=upstream)]


@pytest.mark.parametrize("alpha", [-0.5, 0.0, 0.37, 1.0, 1.6])
def test_relu_gradient_equals_automatic_differentiation(alpha):
    # The written-out gradient (which keeps only the input for the backward
    # pass) against the formula's: same values up to float rounding, at
    # alpha 0 (identity), between, 1 (plain relu) and beyond; x has exact zeros.
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 2.0, (3, 6, 6, 4)).astype(np.float32)
    x[0, 0, :, 0] = 0.0
    g = rng.normal(size=x.shape).astype(np.float32)
    layer = PActivation("relu")
    layer.build(x.shape)
    layer.set_weights([np.float32(alpha)])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt)
    dx, da = tape.gradient(y, [xt, layer.alpha.value], output_gradients=tf.constant(g))
    ref_dx, ref_da = _formula_gradients(x, np.float32(alpha), g)
    np.testing.assert_allclose(np.asarray(dx), ref_dx, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(da), float(ref_da), rtol=1e-5)
    # The relu form: where(x > 0, x, (1 - a) * x), exactly; within two units
    # in the last place of the textbook x + a * (relu(x) - x) (two at
    # a = 1.6, where each form rounds a term that the sum then cancels).
    a32 = np.float32(alpha)
    np.testing.assert_array_equal(np.asarray(y), np.where(x > 0, x, (1 - a32) * x))
    np.testing.assert_array_max_ulp(
        np.asarray(y), x + a32 * (np.maximum(x, 0) - x), maxulp=2
    )


def test_relu_gradient_in_a_compiled_training_step(mixed_bfloat16):
    # Inside tf.function and under mixed precision (bfloat16 compute, float32
    # alpha): the alpha gradient reaches the float32 variable, finite.
    layer = PActivation("relu", dtype="mixed_bfloat16")
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 8, 8, 3)), tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.cast(layer(tf.cast(x, tf.bfloat16)), tf.float32) * x)
        return tape.gradient(y, layer.alpha.value)

    da = float(step())
    ref = float(tf.reduce_sum((tf.nn.relu(x) - x) * x))
    assert np.isfinite(da) and abs(da - ref) < 0.02 * abs(ref)


def _fused_and_plain(layer, x, g):
    """`(y, dx, da)` of a training call (TensorFlow: the XLA kernels) and of
    an inference call (plain ops) of `layer` on `x` with upstream `g`."""
    out = []
    for training in (True, False):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=training)
        dx, da = tape.gradient(y, [xt, layer.alpha.value], output_gradients=g)
        out.append(
            (
                np.asarray(tf.cast(y, tf.float32)),
                np.asarray(tf.cast(dx, tf.float32)),
                float(da),
            )
        )
    return out


@pytest.mark.parametrize("alpha", [-0.5, 0.0, 0.37, 1.0, 1.6])
def test_training_call_runs_xla_kernels_with_the_plain_numbers(alpha, monkeypatch):
    from morphhr_tf.layers import p_activation

    calls = []
    kernels = p_activation._xla_p_relu

    def counted():
        calls.append(1)
        return kernels()

    monkeypatch.setattr(p_activation, "_xla_p_relu", counted)
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 2.0, (2, 9, 9, 4)).astype(np.float32)
    x[0, 0, :, 0] = 0.0
    g = tf.constant(rng.normal(size=x.shape).astype(np.float32))
    layer = PActivation("relu")
    layer.build(x.shape)
    layer.set_weights([np.float32(alpha)])
    (y, dx, da), (y0, dx0, da0) = _fused_and_plain(layer, x, g)
    assert len(calls) == 1  # the training call only
    # Selects and single multiplies: the same bits as the plain ops.
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(dx, dx0)
    assert da == da0
    if alpha == 0.0:
        np.testing.assert_array_equal(y, x)  # still the identity at the morph


def test_training_call_in_bfloat16_matches_the_plain_ops(mixed_bfloat16):
    rng = np.random.default_rng(6)
    x = rng.normal(0.0, 2.0, (2, 16, 16, 8)).astype(np.float32)
    g = tf.cast(rng.normal(size=x.shape), tf.bfloat16)
    layer = PActivation("relu", dtype="mixed_bfloat16")
    layer.build(x.shape)
    layer.set_weights([np.float32(0.3)])
    (y, dx, da), (y0, dx0, da0) = _fused_and_plain(layer, x.astype("bfloat16"), g)
    # The same bits in bfloat16 too (XLA rounds each product to bfloat16, as
    # TensorFlow's ops do); the alpha gradient is the same TensorFlow sum.
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(dx, dx0)
    assert da == da0


def test_only_training_traces_compile_with_xla():
    # The exported serving signatures call the model with training=False: no
    # XLA-compiled function may end up in them (TF Serving runs without XLA).
    layer = PActivation("relu")
    spec = tf.TensorSpec((None, 4, 4, 2), tf.float32)

    def xla_in(training):
        fn = tf.function(lambda x: layer(x, training=training))
        graph = fn.get_concrete_function(spec).graph.as_graph_def()
        nodes = list(graph.node) + [
            n for f in graph.library.function for n in f.node_def
        ]
        funcs = [f.attr for f in graph.library.function]
        return any("_XlaMustCompile" in a for a in funcs) or any(
            "_XlaMustCompile" in n.attr for n in nodes
        )

    assert xla_in(True)
    assert not xla_in(False)
    assert not xla_in(None)


def test_xla_kernels_false_keeps_tensorflows_ops(monkeypatch):
    from morphhr_tf.layers import p_activation

    calls = []
    monkeypatch.setattr(p_activation, "_xla_p_relu", lambda: calls.append(1))
    layer = PActivation("relu", xla_kernels=False)
    x = np.random.default_rng(7).normal(size=(2, 5)).astype(np.float32)
    layer(x, training=True)
    assert calls == []
    clone = PActivation.from_config(layer.get_config())
    assert clone.xla_kernels is False
    # An older config without the key gets the default.
    config = layer.get_config()
    del config["xla_kernels"]
    assert PActivation.from_config(config).xla_kernels is True
    with pytest.raises(ValueError, match="xla_kernels must be True or False"):
        PActivation("relu", xla_kernels="no")


def test_set_xla_kernels_sets_every_p_activation_of_a_model():
    from morphhr_tf.layers.p_activation import set_xla_kernels

    inputs = keras.Input((4,))
    x = PActivation("relu", name="a")(inputs)
    x = keras.layers.Dense(3)(x)
    x = PActivation("gelu", name="b")(x)
    model = keras.Model(inputs, x)
    assert set_xla_kernels(model, False) == 2
    assert [model.get_layer(n).xla_kernels for n in "ab"] == [False, False]
    assert set_xla_kernels(model, True) == 2
    assert [model.get_layer(n).xla_kernels for n in "ab"] == [True, True]
    with pytest.raises(ValueError, match="enabled must be True or False. Received: 1"):
        set_xla_kernels(model, 1)
