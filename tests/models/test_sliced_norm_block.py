"""SlicedNormBlock: the block's function, and gradients and moving statistics
equal to the layers' own (float32: to rounding; bfloat16: to its precision)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.layers import LeanBatchNormalization
from morphhr_tf.models.rematerialize import sliced_norm_blocks
from morphhr_tf.models.sliced_norm_block import SlicedNormBlock

L = keras.layers


def _model(
    bias=False,
    activation="relu",
    strides=None,
    norm=LeanBatchNormalization,
    pool_first=False,
    size=12,
    any_size=False,
    pool_size=2,
    padding="same",
    before=False,
):
    side = None if any_size else size
    inputs = keras.Input((side, side, 2))
    x = inputs
    if before:  # the block's input gradient then reaches a trained layer
        x = L.Conv2D(2, 1, name="before")(x)
    x = L.Conv2D(4, 3, padding=padding, use_bias=bias, name="conv")(x)
    x = norm(name="bn")(x)
    relu = L.Activation(activation, name="relu")
    pool = L.MaxPooling2D(pool_size, strides=strides, name="pool")
    x = relu(pool(x)) if pool_first else pool(relu(x))
    x = L.Conv2D(3, 3, padding="same", name="next")(x)
    if any_size:
        x = L.GlobalMaxPooling2D(name="flat")(x)
    else:
        x = L.Flatten(name="flat")(x)
    outputs = L.Dense(1, name="dense")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    bn = model.get_layer("bn")
    if isinstance(bn, LeanBatchNormalization):
        # Both signs of gamma (the window's maximum of -x), positive variance.
        bn.gamma.assign(np.array([1.3, -0.7, 0.4, -2.0], "float32"))
        bn.moving_variance.assign(np.full(4, 0.5, "float32"))
    return model


def _images(batch, seed=1, size=12):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(1.0, 2.0, size=(batch, size, size, 2)), tf.float32)


def _step(model, x):
    """Loss, and the gradients of every trainable variable, in training mode."""
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    return float(loss), tape.gradient(loss, model.trainable_variables)


def _assert_gradients_match(plain, view, x, step=_step):
    """The loss to 1e-6 (the block sums the batch statistics slice by
    slice); every gradient within 1e-5 of the largest."""
    loss_a, grads_a = step(plain, x)
    loss_b, grads_b = step(view, x)
    assert abs(float(loss_b) - float(loss_a)) <= 1e-6 * abs(float(loss_a))
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in grads_a)
    for var, a, b in zip(plain.trainable_variables, grads_a, grads_b, strict=True):
        assert float(tf.reduce_max(tf.abs(a - b))) < 1e-5 * scale, var.path


def _moving(model):
    bn = model.get_layer("bn")
    return np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)


@pytest.mark.parametrize("pool_first", [False, True])
@pytest.mark.parametrize("batch,chunks", [(8, 4), (5, 2), (3, 4)])
def test_gradients_and_moving_statistics_equal_the_layers(batch, chunks, pool_first):
    # Three models with the same weights: the plain layers, and the view
    # with a sliced block. Loss to 1e-6; every gradient within 1e-5 of
    # the largest; moving statistics updated once, to 1e-6. The block may
    # pool before its ReLU (as the detail branch does) or after it.
    x = _images(batch)
    plain, viewed = _model(pool_first=pool_first), _model(pool_first=pool_first)
    view = sliced_norm_blocks(viewed, ["conv"], chunks)
    assert isinstance(view.get_layer("sliced_conv"), SlicedNormBlock)
    _assert_gradients_match(plain, view, x)
    for a, b in zip(_moving(plain), _moving(viewed), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "shape",
    [
        # A layer before the block: its gradient is the block's input gradient.
        dict(before=True),
        # Rows and columns past the last whole window get no gradient.
        dict(size=13),
        dict(size=13, pool_size=3, before=True),
        dict(size=14, pool_size=(2, 3), padding="valid"),
    ],
)
def test_gradients_equal_the_layers_for_other_shapes(shape):
    x = _images(5, size=shape.get("size", 12))
    plain, viewed = _model(**shape), _model(**shape)
    _assert_gradients_match(plain, sliced_norm_blocks(viewed, ["conv"], 2), x)


def test_a_model_of_any_image_size_trains_at_several_sizes_in_one_graph():
    # Spatial sizes unknown when the model is built: one compiled training
    # step per size, each with the layers' gradients.
    plain, viewed = _model(any_size=True), _model(any_size=True)
    view = sliced_norm_blocks(viewed, ["conv"], 2)

    @tf.function
    def step(model, x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True) ** 2)
        return loss, tape.gradient(loss, model.trainable_variables)

    for size in (12, 13, 16):
        _assert_gradients_match(plain, view, _images(4, size=size), step)


def test_gradients_under_bfloat16_agree_to_its_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        x = _images(6)
        plain, viewed = _model(), _model()
        view = sliced_norm_blocks(viewed, ["conv"], 3)
        _, grads_a = _step(plain, x)
        _, grads_b = _step(view, x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for var, a, b in zip(plain.trainable_variables, grads_a, grads_b, strict=True):
        scale = float(tf.reduce_max(tf.abs(a)))
        assert float(tf.reduce_max(tf.abs(a - b))) <= 2**-5 * scale, var.path


@pytest.mark.parametrize("pool_first", [False, True])
def test_inference_calls_the_layers(pool_first):
    model = _model(pool_first=pool_first)
    view = sliced_norm_blocks(model, ["conv"], 2)
    x = _images(4)
    np.testing.assert_array_equal(np.asarray(view(x)), np.asarray(model(x)))


def test_a_compiled_fit_trains_the_models_layers_and_the_view_serialises():
    model = _model()
    view = sliced_norm_blocks(model, ["conv"], 2)
    view.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    before = np.asarray(model.get_layer("conv").kernel).copy()
    history = view.fit(_images(6), np.zeros((6, 1), "float32"), batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.abs(np.asarray(model.get_layer("conv").kernel) - before).max() > 0
    clone = keras.Model.from_config(view.get_config())
    assert clone.get_layer("sliced_conv").chunks == 2


@pytest.mark.parametrize(
    "kwargs,named",
    [
        (dict(bias=True), "Conv2D without bias"),
        (dict(activation="gelu"), "not a ReLU"),
        (dict(strides=1), "disjoint windows"),
        (dict(norm=L.BatchNormalization), "LeanBatchNormalization"),
    ],
)
def test_refuses_other_blocks(kwargs, named):
    with pytest.raises(ValueError, match=named):
        sliced_norm_blocks(_model(**kwargs), ["conv"], 2)


def test_refuses_windows_of_more_than_256_positions():
    # The block keeps each window's maximum position in 8 bits.
    conv = L.Conv2D(2, 3, padding="same", use_bias=False, name="conv")
    args = (conv, LeanBatchNormalization(name="bn"), L.Activation("relu"))
    SlicedNormBlock(*args, L.MaxPooling2D(16))  # 256 positions: taken
    with pytest.raises(ValueError, match="257 positions: at most 256"):
        SlicedNormBlock(*args, L.MaxPooling2D((1, 257)))


def test_refuses_a_block_whose_inner_tensor_is_read_elsewhere():
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2D(2, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = LeanBatchNormalization(name="bn")(h)
    x = L.Activation("relu", name="relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    outputs = L.Concatenate(name="both")([L.Flatten()(x), L.Flatten()(h)])
    with pytest.raises(ValueError, match="read by"):
        sliced_norm_blocks(keras.Model(inputs, outputs), ["conv"], 2)
