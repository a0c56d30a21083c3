import keras
import numpy as np
import pytest

from morphhr_tf.layers import PActivation
from morphhr_tf.models import resnet18
from morphhr_tf.morph import widen
from morphhr_tf.morph import width as widen_module
from morphhr_tf.morph.testing import (
    max_abs_difference,
    randomize_weights,
    relative_error,
)

L = keras.layers
TOL = 1e-5


def small_convnet():
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(6, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = PActivation("elu", name="pa1")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(5, 3, padding="same", name="c2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(6, activation="tanh", name="d1")(x)
    x = L.Dropout(0.5, name="drop")(x)
    outputs = L.Dense(2, name="out")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=1)


def concat_net():
    inputs = keras.Input((12, 12, 2))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="ca")(inputs)
    b = L.Conv2D(3, 1, name="cb")(inputs)
    b = L.BatchNormalization(name="bnb")(b)
    x = L.Concatenate(name="cat")([a, b])
    x = L.BatchNormalization(name="bncat")(x)
    x = L.Conv2D(4, 3, padding="same", name="cc")(x)
    outputs = L.GlobalAveragePooling2D(name="gap")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=2)


def se_net():
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Activation("swish", name="act")(x)
    s = L.GlobalAveragePooling2D(name="squeeze")(x)
    s = L.Dense(3, activation="relu", name="se_reduce")(s)
    s = L.Dense(6, activation="sigmoid", name="se_expand")(s)
    s = L.Reshape((1, 1, 6), name="se_reshape")(s)
    x = L.Multiply(name="excite")([x, s])
    x = L.Conv2D(4, 1, name="proj")(x)
    outputs = L.GlobalAveragePooling2D(name="gap")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=3)


def dense_head():
    inputs = keras.Input((10,))
    x = L.Dense(8, activation="relu", name="h1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Dense(6, activation="gelu", name="h2")(x)
    outputs = L.Dense(1, activation="sigmoid", name="out")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=4)


@pytest.fixture(scope="module")
def resnet():
    model = resnet18((32, 32, 3), width=8, include_top=False, pooling="avg")
    return randomize_weights(model, seed=5)


def inputs_for(model, seed=0):
    shape = (2,) + tuple(model.input.shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_preserved(teacher, student, tol=TOL):
    x = inputs_for(teacher)
    reference = teacher(x, training=False)
    assert 0.05 < float(np.max(np.abs(np.asarray(reference)))) < 20  # order 1
    diff = max_abs_difference(student(x, training=False), reference)
    assert diff <= tol, diff
    return diff


def width(model, name):
    config = model.get_layer(name).get_config()
    return config.get("filters", config.get("units"))


CASES = [
    (small_convnet, "c1", 9),
    (small_convnet, "c2", 8),
    (small_convnet, "d1", 11),
    (concat_net, "ca", 7),
    (concat_net, "cb", 5),
    (se_net, "conv", 9),
    (se_net, "se_reduce", 5),
    (dense_head, "h1", 12),
    (dense_head, "h2", 9),
]


@pytest.mark.parametrize("method", ["net2net", "netmorph"])
@pytest.mark.parametrize("build, name, new_width", CASES)
def test_widen_preserves_function(build, name, new_width, method):
    teacher = build()
    before = [w.copy() for w in teacher.get_weights()]
    student = widen(teacher, name, new_width, method=method, seed=0)
    assert width(student, name) == new_width
    assert_preserved(teacher, student)
    # The teacher is untouched and still usable.
    assert width(teacher, name) < new_width
    for old, now in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(old, now)


def test_squeeze_excite_gate_is_widened_with_the_conv():
    teacher = se_net()
    student = widen(teacher, "conv", 10, seed=1)
    assert width(student, "se_expand") == 10
    assert student.get_layer("se_reshape").target_shape == (1, 1, 10)
    assert width(student, "se_reduce") == 3


@pytest.mark.parametrize("method", ["net2net", "netmorph"])
@pytest.mark.parametrize(
    "name, new_width, coupled",
    [
        ("stack0_block1_1_conv", 13, []),
        ("stack1_block0_2_conv", 20, ["stack1_block0_0_conv", "stack1_block1_2_conv"]),
        ("conv1_conv", 12, ["stack0_block0_2_conv", "stack0_block1_2_conv"]),
    ],
)
def test_widen_resnet18(resnet, name, new_width, coupled, method):
    student = widen(resnet, name, new_width, method=method, seed=2)
    assert_preserved(resnet, student)
    for other in [name, *coupled]:
        assert width(student, other) == new_width
    # Convs reading the group keep their width.
    assert width(student, "stack3_block1_2_conv") == width(
        resnet, "stack3_block1_2_conv"
    )


def test_noise_breaks_symmetry_and_is_reported_inexact():
    teacher = small_convnet()
    exact = widen(teacher, "c1", 9, seed=0)
    noisy = widen(teacher, "c1", 9, seed=0, noise_stddev=1e-3)
    x = inputs_for(teacher)
    diff = max_abs_difference(noisy(x, training=False), exact(x, training=False))
    assert 0 < diff < 0.1


def test_widen_under_mixed_bfloat16(mixed_bfloat16):
    model = resnet18((32, 32, 3), width=8, include_top=True)
    randomize_weights(model, seed=6)
    student = widen(model, "stack2_block0_2_conv", 40, seed=3)
    assert (
        student.get_layer("stack2_block0_2_conv").dtype_policy.name == "mixed_bfloat16"
    )
    assert student.output.dtype == "float32"
    x = inputs_for(model)
    assert relative_error(student(x, training=False), model(x, training=False)) <= 2e-2


class Scale(L.Layer):
    def call(self, x):
        return 2.0 * x


def blocked(kind):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="target")(inputs)
    if kind == "grouped":
        x = L.Conv2D(4, 3, padding="same", groups=2, name="blocker")(x)
    elif kind == "depth_multiplier":
        x = L.DepthwiseConv2D(3, depth_multiplier=2, name="blocker")(x)
    elif kind == "custom":
        x = Scale(name="blocker")(x)
    elif kind == "layernorm":
        x = L.LayerNormalization(name="blocker")(x)
    elif kind == "softmax":
        x = L.Activation("softmax", name="blocker")(x)
    elif kind == "output":
        return keras.Model(inputs, L.ReLU(name="blocker")(x))
    x = L.Conv2D(2, 1, name="head")(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize(
    "kind",
    ["grouped", "depth_multiplier", "custom", "layernorm", "softmax", "output"],
)
def test_refuses_unsupported_consumer(kind, monkeypatch):
    model = blocked(kind)

    def must_not_build(*args, **kwargs):
        raise AssertionError("widen built a model before refusing")

    monkeypatch.setattr(widen_module, "rebuild", must_not_build)
    with pytest.raises(ValueError, match="blocker"):
        widen(model, "target", 6)


def test_softmax_consumer_is_fine_but_softmax_source_is_refused():
    inputs = keras.Input((5,))
    x = L.Dense(4, activation="relu", name="hidden")(inputs)
    probs = L.Dense(3, activation="softmax", name="probs")(x)
    model = randomize_weights(keras.Model(inputs, L.Dense(2, name="out")(probs)))
    student = widen(model, "hidden", 7, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    assert max_abs_difference(student(x), model(x)) <= TOL
    with pytest.raises(ValueError, match="'probs' \\(Dense\\)"):
        widen(model, "probs", 5)


def test_refuses_residual_with_model_input():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(3, 3, padding="same", name="target")(inputs)
    x = L.Add(name="add")([inputs, x])
    model = keras.Model(inputs, L.Conv2D(2, 1)(x))
    with pytest.raises(ValueError, match="model input"):
        widen(model, "target", 6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"layer_name": "c1", "new_width": 6},
            "new_width must exceed the current width 6",
        ),
        ({"layer_name": "c1", "new_width": 8.5}, "new_width must be an integer"),
        ({"layer_name": "pool", "new_width": 9}, "'pool' \\(MaxPooling2D\\)"),
        ({"layer_name": "nope", "new_width": 9}, "No layer named 'nope'"),
        ({"layer_name": "c1", "new_width": 9, "method": "magic"}, "method="),
        ({"layer_name": "c1", "new_width": 9, "noise_stddev": -1.0}, "noise_stddev"),
    ],
)
def test_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        widen(small_convnet(), **kwargs)


def test_refuses_top_level_sequential_and_nested_model_names():
    seq = keras.Sequential([keras.Input((4,)), L.Dense(3, name="d"), L.Dense(1)])
    with pytest.raises(ValueError, match="Sequential"):
        widen(seq, "d", 5)
    inputs = keras.Input((4,))
    inner = keras.Model(inputs, L.Dense(3)(inputs), name="inner")
    outer_in = keras.Input((4,))
    outer = keras.Model(outer_in, L.Dense(1)(inner(outer_in)))
    # The sub-model is flattened: its name is no longer a layer to widen.
    with pytest.raises(ValueError, match="No layer named 'inner'"):
        widen(outer, "inner", 5)
