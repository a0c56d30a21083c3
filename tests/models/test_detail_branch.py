"""The detail branch is an exact morph, with or without MorphHR's front."""

import keras
import numpy as np
import pytest

from morphhr_tf.models import build_morphhr, resnet18
from morphhr_tf.models.detail_branch import DETAIL_PREFIX, add_detail_branch
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

S = 16
#: float32, inference and training mode: the branch adds an exact zero.
TOL = 1e-6


@pytest.fixture(scope="module")
def base():
    return randomize_weights(resnet18((S, S, 1), width=4), seed=0)


def images(size, seed=0):
    # Non-negative, as preprocessed images are. An even batch: a gradient at
    # an odd one through width 4's shortcuts meets TensorFlow 2.21's oneDNN
    # heap corruption (morphhr_tf/training/onednn_fault.py).
    return (
        np.random.default_rng(seed).uniform(0, 1, (4, size, size, 1)).astype(np.float32)
    )


@pytest.mark.parametrize("init", ["zeros", "antithetic"])
@pytest.mark.parametrize("training", [False, True])
def test_branch_preserves_the_function(base, init, training):
    model = add_detail_branch(base, init=init, seed=1)
    x = images(S)
    diff = max_abs_difference(
        np.asarray(base(x, training=training)), np.asarray(model(x, training=training))
    )
    assert diff <= TOL, diff
    assert any(layer.name.startswith(DETAIL_PREFIX) for layer in model.layers)


@pytest.mark.parametrize("init", ["zeros", "antithetic"])
def test_build_morphhr_with_branch_equals_base_on_pooled_input(base, init):
    model = build_morphhr(base, 4 * S, front_channels=4, detail_branch=init, seed=0)
    x = images(4 * S)
    pooled = x.reshape(len(x), S, 4, S, 4, 1).mean(axis=(2, 4))
    diff = max_abs_difference(np.asarray(base(pooled)), np.asarray(model(x)))
    assert diff <= TOL, diff


def test_new_model_shares_no_layer_with_the_source(base):
    model = add_detail_branch(base, seed=0)
    before = base.get_layer("logits").get_weights()[0].copy()
    model.get_layer("logits").set_weights(
        [w + 1.0 for w in model.get_layer("logits").get_weights()]
    )
    np.testing.assert_array_equal(base.get_layer("logits").get_weights()[0], before)
    assert not {id(v) for v in base.weights} & {id(v) for v in model.weights}


def _detector_gradient_norm(model, x, y):
    import tensorflow as tf

    detector = [
        v
        for v in model.trainable_weights
        if v.path.startswith(DETAIL_PREFIX) and "conv" in v.path
    ]
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, detector)
    return max(float(tf.reduce_max(tf.abs(g))) for g in grads)


def test_antithetic_detector_gets_gradient_at_the_morph_zeros_does_not(base):
    x, y = images(S), np.array([[1.0], [0.0], [1.0], [0.0]], np.float32)
    assert _detector_gradient_norm(add_detail_branch(base, init="zeros"), x, y) == 0
    assert _detector_gradient_norm(add_detail_branch(base, init="antithetic"), x, y) > 0


def test_seed_makes_the_branch_reproducible(base):
    a = add_detail_branch(base, seed=3).get_layer(f"{DETAIL_PREFIX}0_conv")
    b = add_detail_branch(base, seed=3).get_layer(f"{DETAIL_PREFIX}0_conv")
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])


def test_refusals(base):
    with pytest.raises(ValueError, match="init must be one of"):
        add_detail_branch(base, init="ones")
    with pytest.raises(ValueError, match="channels must be 4 positive"):
        add_detail_branch(base, channels=(8, 8, 0, 8))
    with pytest.raises(ValueError, match="add it once"):
        add_detail_branch(add_detail_branch(base))
    with pytest.raises(ValueError, match="No layer named 'head'"):
        add_detail_branch(base, logits_layer="head")
    with pytest.raises(ValueError, match="not a Dense layer"):
        add_detail_branch(base, logits_layer="avg_pool")
    headless = resnet18((S, S, 1), width=4, include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="No layer named 'logits'"):
        add_detail_branch(headless)
    with pytest.raises(ValueError, match="detail_branch must be None or one of"):
        build_morphhr(base, 2 * S, detail_branch="yes")


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_relu_after_the_pool_gives_the_values_and_gradients_of_relu_before_it(policy):
    # The branch's blocks pool before their ReLU; the same block with the
    # ReLU first must give the same bits, forward and backward, ties and
    # all-negative windows included (values on a coarse grid make ties).
    import tensorflow as tf

    from morphhr_tf.layers import LeanBatchNormalization

    def block(relu_first):
        inputs = keras.Input((8, 8, 2))
        x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(
            inputs
        )
        x = LeanBatchNormalization(name="bn")(x)
        relu = keras.layers.Activation("relu", name="relu")
        pool = keras.layers.MaxPooling2D(2, name="pool")
        x = pool(relu(x)) if relu_first else relu(pool(x))
        return keras.Model(inputs, keras.layers.Flatten()(x))

    keras.mixed_precision.set_global_policy(policy)
    try:
        before, after = block(True), block(False)
        rng = np.random.default_rng(3)
        for a, b in zip(before.weights, after.weights, strict=True):
            value = rng.normal(size=a.shape).astype("float32")
            a.assign(value)
            b.assign(value)
        before.get_layer("bn").gamma.assign(np.array([1.5, -0.5, 0.0], "float32"))
        after.get_layer("bn").gamma.assign(np.array([1.5, -0.5, 0.0], "float32"))
        x = tf.constant(np.round(rng.normal(size=(4, 8, 8, 2)) * 2) / 2, tf.float32)
        upstream = tf.constant(rng.normal(size=(4, 48)), tf.float32)
        results = []
        for model in (before, after):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = model(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
            grads = tape.gradient(loss, [x, *model.trainable_variables])
            results.append([np.asarray(y), *(np.asarray(g) for g in grads)])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_branch_pools_before_its_relu(base):
    model = add_detail_branch(base, seed=1)
    names = [
        layer.name for layer in model.layers if layer.name.startswith(DETAIL_PREFIX)
    ]
    for i in range(3):
        assert names.index(f"{DETAIL_PREFIX}{i}_pool") < names.index(
            f"{DETAIL_PREFIX}{i}_relu"
        )
