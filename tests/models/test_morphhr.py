import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.layers import PActivation
from morphhr_tf.models import build_morphhr, resnet18
from morphhr_tf.models.morphhr import DOWNSAMPLER_NAME, FRONT_PREFIX
from morphhr_tf.morph import deepen
from morphhr_tf.morph.testing import (
    max_abs_difference,
    randomize_weights,
    relative_error,
)

S = 32


def base_model(channels=1, top=False):
    model = resnet18((S, S, channels), width=8, include_top=top, pooling="avg")
    return randomize_weights(model, seed=0)


@pytest.fixture(scope="module")
def base():
    return base_model()


def area_pool(x, k):
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))


def images(k, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, S * k, S * k, channels)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_morphhr_equals_base_on_area_downsampled_input(base, k):
    model = build_morphhr(base, S * k, front_channels=6, front_blocks=2, seed=0)
    assert tuple(model.input.shape) == (None, S * k, S * k, 1)
    x = images(k)
    ref = base(area_pool(x, k), training=False)
    assert float(np.max(np.abs(np.asarray(ref)))) > 0.05
    assert max_abs_difference(model(x, training=False), ref) <= 1e-5
    # Not the same as plain subsampling: the downsampler really averages.
    if k > 1:
        sub = base(np.ascontiguousarray(x[:, ::k, ::k]), training=False)
        assert max_abs_difference(model(x, training=False), sub) > 1e-3


def test_front_layers_are_named_for_per_group_learning_rates(base):
    model = build_morphhr(
        base, 2 * S, front_channels=5, front_blocks=3, front_batch_norm=True
    )
    front = [
        layer.name for layer in model.layers if layer.name.startswith(FRONT_PREFIX)
    ]
    assert front == [
        f"{FRONT_PREFIX}{i}_{kind}" for i in range(3) for kind in ("conv", "bn", "act")
    ]
    down = model.get_layer(DOWNSAMPLER_NAME)
    assert down.kernel.shape == (2, 2, 5, 1) and down.strides == (2, 2)
    assert isinstance(model.get_layer(f"{FRONT_PREFIX}0_act"), PActivation)
    # The trunk keeps the base's names and weights, in new layer objects.
    trunk = model.get_layer("stack2_block0_1_conv")
    assert trunk is not base.get_layer("stack2_block0_1_conv")
    np.testing.assert_array_equal(
        trunk.kernel, base.get_layer("stack2_block0_1_conv").kernel
    )
    x = images(2)
    ref = base(area_pool(x, 2), training=False)
    assert max_abs_difference(model(x, training=False), ref) <= 1e-5


def test_front_extra_channels_are_random_and_unused(base):
    model = build_morphhr(base, 2 * S, front_channels=4, seed=1)
    kernel = np.asarray(model.get_layer(f"{FRONT_PREFIX}0_conv").kernel)
    np.testing.assert_array_equal(kernel[:, :, 0, 0], [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert np.std(kernel[..., 1:]) > 0.1
    down = np.asarray(model.get_layer(DOWNSAMPLER_NAME).kernel)
    np.testing.assert_array_equal(down[:, :, 0, 0], 0.25)
    np.testing.assert_array_equal(down[:, :, 1:, :], 0.0)


def test_trunk_morphs_as_mappings_and_callables(base):
    model = build_morphhr(
        base,
        2 * S,
        activation="gelu",
        trunk_morphs=[
            {"op": "widen", "layer_name": "stack3_block1_1_conv", "new_width": 80},
            lambda m: deepen(m, "stack1_block1_out", activation="tanh"),
            {
                "op": "enlarge_kernel",
                "layer_name": "stack0_block0_2_conv",
                "kernel_size": 5,
            },
        ],
    )
    assert model.get_layer("stack3_block1_1_conv").filters == 80
    assert "stack1_block1_out_deepen_act" in [layer.name for layer in model.layers]
    x = images(2)
    ref = base(area_pool(x, 2), training=False)
    assert max_abs_difference(model(x, training=False), ref) <= 1e-5


def test_three_channel_base_and_no_front_blocks():
    base3 = base_model(channels=3)
    model = build_morphhr(base3, 4 * S, front_blocks=0)
    assert model.get_layer(DOWNSAMPLER_NAME).kernel.shape == (4, 4, 3, 3)
    x = images(4, channels=3)
    ref = base3(area_pool(x, 4), training=False)
    assert max_abs_difference(model(x, training=False), ref) <= 1e-5


def test_mixed_bfloat16(mixed_bfloat16):
    base16 = base_model(top=True)
    model = build_morphhr(base16, 2 * S, front_channels=8)
    assert model.get_layer(f"{FRONT_PREFIX}0_conv").compute_dtype == "bfloat16"
    x = images(2)
    y = model(x, training=False)
    assert y.dtype == "float32"
    ref = base16(area_pool(x, 2), training=False)
    assert relative_error(y, ref) <= 2e-2


def test_front_and_downsampler_learn(base):
    model = build_morphhr(base, 2 * S, front_channels=4, activation="elu")
    head = keras.layers.Dense(1, activation="sigmoid", name="head")(model.output)
    trainable = keras.Model(model.input, head)
    x = tf.constant(images(2))
    y = tf.constant([[0.0], [1.0]])
    watched = [
        trainable.get_layer(f"{FRONT_PREFIX}0_conv").kernel,
        trainable.get_layer(f"{FRONT_PREFIX}1_act").alpha,
        trainable.get_layer(DOWNSAMPLER_NAME).kernel,
    ]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            keras.losses.binary_crossentropy(y, trainable(x, training=True))
        )
    grads = tape.gradient(loss, [v.value for v in watched])
    for grad in grads:
        assert float(tf.reduce_max(tf.abs(grad))) > 0
    # Extra (zero-weighted) front channels get a gradient into the downsampler.
    assert float(tf.reduce_max(tf.abs(grads[2][:, :, 1:, :]))) > 0


def test_keras_round_trip_and_saved_model(base, tmp_path):
    model = build_morphhr(base, 2 * S, front_channels=4, front_batch_norm=True)
    model.get_layer(f"{FRONT_PREFIX}1_act").alpha.assign(0.5)  # must survive
    x = images(2)
    expected = model(x, training=False)

    model.save(tmp_path / "morphhr.keras")
    loaded = keras.models.load_model(tmp_path / "morphhr.keras")
    assert max_abs_difference(loaded(x, training=False), expected) == 0.0

    class Exported(tf.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        @tf.function(
            input_signature=[tf.TensorSpec((None, 2 * S, 2 * S, 1), tf.float32)]
        )
        def serve(self, images):
            return self.m(images, training=False)

    tf.saved_model.save(Exported(model), str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))  # keep a reference
    served = restored.serve(tf.constant(x))
    assert max_abs_difference(served, expected) <= 1e-6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resolution": 48}, "multiple"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": 64, "front_channels": 0}, "front_channels"),
        ({"resolution": 64, "front_blocks": -1}, "front_blocks"),
        ({"resolution": 64, "activation": "softmax"}, "softmax"),
        ({"resolution": 64, "trunk_morphs": [{"op": "shrink"}]}, "trunk morph"),
        (
            {
                "resolution": 64,
                "trunk_morphs": [
                    {"op": "widen", "layer_name": "avg_pool", "new_width": 9}
                ],
            },
            "'avg_pool'",
        ),
    ],
)
def test_validates_arguments(base, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_morphhr(base, **kwargs)
