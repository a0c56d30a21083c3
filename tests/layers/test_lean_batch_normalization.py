import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.layers import LeanBatchNormalization

_SHAPE = (4, 32, 24, 8)
# One unit in the last place of a bfloat16 value v is at most 2**-7 * |v|.
_BF16_ULP = 2.0**-7


def _training_step(cls, x, g, dtype, **kwargs):
    """Output, d(sum(y * g))/dx, /dgamma, /dbeta and the moving statistics
    after one training call of a layer of class `cls` with fixed weights."""
    layer = cls(momentum=0.9, dtype=dtype, **kwargs)
    layer.build(x.shape)
    channels = layer.gamma.shape[0]
    layer.gamma.assign(np.linspace(0.5, 1.5, channels).astype("float32"))
    layer.beta.assign(np.linspace(-0.2, 0.3, channels).astype("float32"))
    xt = tf.cast(tf.constant(x), layer.compute_dtype)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * g)
    dx, d_gamma, d_beta = tape.gradient(loss, [xt, layer.gamma, layer.beta])
    values = (y, dx, d_gamma, d_beta, layer.moving_mean, layer.moving_variance)
    return [np.asarray(tf.cast(v, "float32")) for v in values]


def _inputs(loc, scale, shape=_SHAPE):
    rng = np.random.default_rng(0)
    x = (loc + scale * rng.standard_normal(shape)).astype("float32")
    return x, rng.standard_normal(shape).astype("float32")


def _relative_errors(cls_a, cls_b, x, g, dtype, **kwargs):
    a = _training_step(cls_a, x, g, dtype, **kwargs)
    b = _training_step(cls_b, x, g, dtype, **kwargs)
    names = ("y", "dx", "dgamma", "dbeta", "moving_mean", "moving_variance")
    err = {n: np.max(np.abs(u - v)) / np.max(np.abs(u)) for n, u, v in zip(names, a, b)}
    # The moving mean moved by 0.1 x the batch mean, which may be near 0: its
    # error relative to what the batch's root mean square moved it by.
    err["moving_mean"] = np.max(np.abs(a[4] - b[4])) / (0.1 * np.sqrt(np.mean(x**2)))
    return err


@pytest.mark.parametrize("loc,scale", [(0.0, 1.0), (3.0, 10.0), (100.0, 1.0)])
def test_float32_training_step_matches_keras(loc, scale):
    x, g = _inputs(loc, scale)
    err = _relative_errors(
        keras.layers.BatchNormalization, LeanBatchNormalization, x, g, "float32"
    )
    for name in ("y", "dx", "moving_mean", "moving_variance"):
        assert err[name] < 1e-5, err
    # Keras' own float32 sums differ by this much at mean/std = 100.
    assert err["dgamma"] < 1e-4 and err["dbeta"] < 1e-5, err


# (100, 1): the output is (x - m) * scale + offset with m the mean in
# bfloat16, not x * scale + shift, which would cancel to a few bits there.
@pytest.mark.parametrize(
    "loc,scale", [(0.0, 1.0), (3.0, 10.0), (0.01, 0.001), (100.0, 1.0)]
)
def test_bfloat16_training_step_matches_keras_to_one_unit_in_the_last_place(loc, scale):
    x, g = _inputs(loc, scale)
    err = _relative_errors(
        keras.layers.BatchNormalization,
        LeanBatchNormalization,
        x,
        g,
        "mixed_bfloat16",
    )
    for name in ("y", "dx", "dgamma", "dbeta"):
        assert err[name] <= _BF16_ULP, err
    assert err["moving_mean"] < 1e-3 and err["moving_variance"] < 1e-3, err


def test_inference_is_keras_bit_for_bit():
    x, _ = _inputs(0.5, 2.0)
    keras_bn = keras.layers.BatchNormalization(dtype="mixed_bfloat16")
    lean = LeanBatchNormalization(dtype="mixed_bfloat16")
    keras_bn.build(x.shape)
    lean.build(x.shape)
    rng = np.random.default_rng(5)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in lean.weights]
    keras_bn.set_weights(weights)
    lean.set_weights(weights)
    np.testing.assert_array_equal(
        np.asarray(tf.cast(lean(x, training=False), "float32")),
        np.asarray(tf.cast(keras_bn(x, training=False), "float32")),
    )


@pytest.mark.parametrize(
    "kwargs,shape",
    [({"axis": 1}, (4, 8, 6, 5)), ({"renorm": True}, _SHAPE)],
)
def test_other_layouts_run_keras_own_code(kwargs, shape):
    x, g = _inputs(1.0, 2.0, shape)
    a = _training_step(keras.layers.BatchNormalization, x, g, "float32", **kwargs)
    b = _training_step(LeanBatchNormalization, x, g, "float32", **kwargs)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_float16_runs_keras_own_code():
    # Values whose per-row sums overflow float16 (max 65504).
    x, g = _inputs(300.0, 50.0)
    a = _training_step(keras.layers.BatchNormalization, x, g, "mixed_float16")
    b = _training_step(LeanBatchNormalization, x, g, "mixed_float16")
    for u, v in zip(a, b):
        assert np.all(np.isfinite(v))
        np.testing.assert_array_equal(u, v)


def test_a_masked_call_runs_keras_own_code():
    x, _ = _inputs(1.0, 2.0, (2, 7, 3))
    mask = np.arange(7)[None, :].repeat(2, axis=0) < np.array([[4], [7]])
    keras_bn, lean = keras.layers.BatchNormalization(), LeanBatchNormalization()
    np.testing.assert_array_equal(
        np.asarray(lean(x, training=True, mask=mask)),
        np.asarray(keras_bn(x, training=True, mask=mask)),
    )


def test_saves_and_loads_in_a_model(tmp_path):
    inputs = keras.Input((6, 5, 3))
    outputs = LeanBatchNormalization(name="bn")(inputs)
    model = keras.Model(inputs, outputs)
    x, _ = _inputs(2.0, 3.0, (4, 6, 5, 3))
    model(x, training=True)  # moves the moving statistics
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("bn")) is LeanBatchNormalization
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_a_compiled_fit_lowers_the_loss():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = LeanBatchNormalization()(x)
    x = keras.layers.GlobalMaxPooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(32, 8, 8, 1)).astype("float32")
    targets = images.max(axis=(1, 2))
    history = model.fit(images, targets, epochs=20, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
