import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.models import build_morphhr, resnet18
from morphhr_tf.models.morphhr import DOWNSAMPLER_NAME, FIRST_FRONT_BLOCK_END
from morphhr_tf.models.rematerialize import recompute_front, rematerialized
from morphhr_tf.morph.testing import randomize_weights


def _morphhr(**kwargs):
    # Width 16: the odd batches below (3, 5) would meet TensorFlow 2.21's
    # oneDNN heap corruption in the gradient of a shortcut with fewer than 16
    # input channels (morphhr_tf/training/onednn_fault.py).
    base = randomize_weights(resnet18((32, 32, 1), width=16), seed=0)
    return build_morphhr(base, 64, seed=0, **kwargs)


def _gradients(model, variables, x):
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(model(x, training=True))
    return tape.gradient(y, variables)


@pytest.mark.parametrize("branch", [None, "antithetic"])
def test_view_computes_the_same_values_and_gradients(branch):
    # Same function, same variables: outputs and every gradient bit for bit
    # (max |diff| == 0), with the detail branch reading the input beside the
    # recomputed segment.
    model = _morphhr(detail_branch=branch)
    view = rematerialized(model, FIRST_FRONT_BLOCK_END)
    x = tf.constant(np.random.default_rng(0).uniform(size=(3, 64, 64, 1)), tf.float32)
    assert float(tf.reduce_max(tf.abs(model(x) - view(x)))) == 0.0
    assert {id(v) for v in view.trainable_variables} == {
        id(v) for v in model.trainable_variables
    }
    variables = model.trainable_variables
    for a, b in zip(
        _gradients(model, variables, x), _gradients(view, variables, x), strict=True
    ):
        assert b is not None
        assert float(tf.reduce_max(tf.abs(a - b))) == 0.0
    assert view.input.name == model.input.name
    assert tuple(view.input.shape) == tuple(model.input.shape)
    # Serialisable (TensorBoard writes the fitted model's graph as JSON).
    clone = keras.Model.from_config(view.get_config())
    np.testing.assert_array_equal(np.asarray(clone(x)).shape, np.asarray(view(x)).shape)


def test_fitting_the_view_trains_the_model():
    model = _morphhr()
    view = rematerialized(model, FIRST_FRONT_BLOCK_END)
    view.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    before = model.get_layer("morphhr_front_0_conv").get_weights()[0].copy()
    rng = np.random.default_rng(1)
    view.fit(
        rng.uniform(size=(4, 64, 64, 1)).astype("float32"),
        np.array([[0], [1], [0], [1]], "float32"),
        epochs=1,
        verbose=0,
    )
    after = model.get_layer("morphhr_front_0_conv").get_weights()[0]
    assert np.abs(after - before).max() > 0


def test_refuses_a_layer_that_is_not_there():
    with pytest.raises(ValueError, match="No layer named 'nope'"):
        rematerialized(_morphhr(), "nope")


def test_refuses_a_segment_whose_recomputation_would_differ():
    # Batch norm updates its moving statistics on every training forward
    # pass; dropout draws new numbers: recomputing either changes the result.
    model = _morphhr(front_batch_norm=True)
    with pytest.raises(ValueError, match="morphhr_front_0_bn"):
        rematerialized(model, FIRST_FRONT_BLOCK_END)
    inputs = keras.Input((8,))
    x = keras.layers.Dropout(0.5, name="drop")(inputs)
    outputs = keras.layers.Dense(1, name="dense")(x)
    with pytest.raises(ValueError, match="random draws.*drop"):
        rematerialized(keras.Model(inputs, outputs), "drop")


def test_refuses_a_segment_whose_inner_tensor_is_used_after_it():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(a)
    outputs = keras.layers.Add(name="skip")([a, b])
    with pytest.raises(ValueError, match="also used by.*skip"):
        rematerialized(keras.Model(inputs, outputs), "b")


def test_the_model_still_saves_and_loads_after_the_view_trained(tmp_path):
    # The view calls the model's layers as shared layers: the model's own
    # graph, config and saved file are unchanged (the detail branch reads
    # the input beside the segment).
    model = _morphhr(detail_branch="antithetic")
    view = rematerialized(model, FIRST_FRONT_BLOCK_END)
    view.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(2).uniform(size=(4, 64, 64, 1)).astype("float32")
    view.fit(x, np.array([[0], [1], [0], [1]], "float32"), verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in model.layers
    ]
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def _relative_gradient_difference(model, view, x):
    variables = model.trainable_variables
    ref = _gradients(model, variables, x)
    got = _gradients(view, variables, x)
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in ref)
    assert all(g is not None for g in got)
    return max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(ref, got)) / scale


@pytest.mark.parametrize(
    "branch,chunks,batch",
    [
        (None, 2, 4),  # even slices
        (None, 4, 5),  # 5 rows padded to 8: two zero rows in the last slice
        ("antithetic", 3, 2),  # fewer rows than slices: slices of one row
        ("antithetic", 2, 5),
    ],
)
def test_recomputing_the_front_in_slices_gives_the_models_values_and_gradients(
    branch, chunks, batch
):
    # The forward pass is the model's (max |diff| == 0); the gradients are
    # sums over slices, equal up to float32 rounding: max |diff| < 1e-5 of
    # the largest gradient (each slice's gradient alone, or a dropped slice,
    # differs by a whole slice's share).
    model = randomize_weights(_morphhr(detail_branch=branch), seed=3)
    view = recompute_front(model, chunks, detail_blocks=True)
    assert view.get_layer(f"rematerialized_{DOWNSAMPLER_NAME}").chunks == chunks
    sliced = [layer.name for layer in view.layers if layer.name.startswith("sliced_")]
    # The detectors' full-resolution blocks, sliced too (SlicedNormBlock).
    assert sliced == (
        ["sliced_morphhr_detail_a_0_conv", "sliced_morphhr_detail_b_0_conv"]
        if branch
        else []
    )
    # detail_blocks=False: the detectors train as their layers.
    layers = recompute_front(model, chunks, detail_blocks=False)
    assert not [layer for layer in layers.layers if "sliced_" in layer.name]
    x = tf.constant(
        np.random.default_rng(5).uniform(size=(batch, 64, 64, 1)), tf.float32
    )
    assert float(tf.reduce_max(tf.abs(model(x) - view(x)))) == 0.0
    assert _relative_gradient_difference(model, view, x) < 1e-5
    assert {id(v) for v in view.trainable_variables} == {
        id(v) for v in model.trainable_variables
    }


def test_the_slices_cover_every_row():
    # A per-sample function whose gradient differs per row: every row's
    # input gradient, and the weight gradient's sum over all rows, exact.
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="dense")(inputs)
    model = randomize_weights(keras.Model(inputs, outputs), seed=1)
    view = rematerialized(model, "dense", chunks=3)
    x = tf.constant(np.arange(21, dtype="float32").reshape(7, 3))
    weights = tf.constant(np.arange(14, dtype="float32").reshape(7, 2))
    grads = []
    for m in (model, view):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(m(x, training=True) * weights)
        grads.append(tape.gradient(y, [x] + model.trainable_variables))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6)


def test_the_sliced_view_trains_under_a_compiled_step_and_serialises():
    model = _morphhr(detail_branch="antithetic")
    view = recompute_front(model, chunks=2)
    view.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    before = model.get_layer("morphhr_front_1_conv").get_weights()[0].copy()
    rng = np.random.default_rng(1)
    history = view.fit(
        rng.uniform(size=(6, 64, 64, 1)).astype("float32"),
        np.array([[0], [1], [0], [1], [1], [0]], "float32"),
        batch_size=3, epochs=1, verbose=0,
    )  # fmt: skip
    assert np.isfinite(history.history["loss"]).all()
    after = model.get_layer("morphhr_front_1_conv").get_weights()[0]
    assert np.abs(after - before).max() > 0
    clone = keras.Model.from_config(view.get_config())
    assert clone.get_layer(f"rematerialized_{DOWNSAMPLER_NAME}").chunks == 2


@pytest.mark.parametrize("chunks", [0, -1, 2.5, True, "4"])
def test_refuses_a_number_of_slices_that_is_not_a_positive_integer(chunks):
    with pytest.raises(ValueError, match="chunks must be a positive integer"):
        recompute_front(_morphhr(), chunks)


def test_slices_refuse_a_front_with_batch_norm():
    # The sliced recomputation ends at the downsampler: a front batch norm
    # inside it is refused by name, as with the whole-batch view.
    with pytest.raises(ValueError, match="morphhr_front_0_bn"):
        recompute_front(_morphhr(front_batch_norm=True), chunks=2)
