"""widen through depthwise, separable, grouped, LayerNorm and nested layers."""

import keras
import numpy as np
import pytest
from keras.src.applications.convnext import LayerScale

from morphhr_tf.morph import deepen, widen
from morphhr_tf.morph.graph import flatten_nested
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

L = keras.layers
TOL = 1e-5
METHODS = ["net2net", "netmorph"]


def inputs_for(model, seed=0):
    shape = (2,) + tuple(model.input.shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_preserved(teacher, student, tol=TOL):
    x = inputs_for(teacher)
    reference = teacher(x, training=False)
    assert 0.05 < float(np.max(np.abs(np.asarray(reference)))) < 50
    diff = max_abs_difference(student(x, training=False), reference)
    assert diff <= tol, diff
    return diff


def width(model, name):
    config = model.get_layer(name).get_config()
    return config.get("filters", config.get("units"))


def mobile_block():
    """MobileNetV2-like: expand, depthwise, project, with a residual."""
    inputs = keras.Input((12, 12, 4))
    x = L.Conv2D(6, 1, name="expand")(inputs)
    x = L.BatchNormalization(name="expand_bn")(x)
    x = L.ReLU(6.0, name="expand_relu")(x)
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.DepthwiseConv2D(3, name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu")(x)
    x = L.Conv2D(4, 1, name="project")(x)
    x = L.BatchNormalization(name="project_bn")(x)
    x = L.Add(name="add")([inputs, x])
    x = L.Conv2D(5, 1, name="head_conv")(x)
    outputs = L.Dense(2, name="out")(L.GlobalAveragePooling2D(name="gap")(x))
    return randomize_weights(keras.Model(inputs, outputs), seed=11)


def separable_net():
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(5, 3, padding="same", name="stem")(inputs)
    x = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep1")(x)
    x = L.BatchNormalization(name="sep1_bn")(x)
    x = L.Activation("swish", name="sep1_act")(x)
    x = L.SeparableConv2D(4, 3, padding="same", name="sep2")(x)
    outputs = L.Dense(2, name="out")(L.GlobalAveragePooling2D(name="gap")(x))
    return randomize_weights(keras.Model(inputs, outputs), seed=12)


def squeeze_excite_net():
    """EfficientNet-like: expand, depthwise, squeeze-excite gate, project."""
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(6, 1, name="expand")(inputs)
    x = L.BatchNormalization(name="expand_bn")(x)
    x = L.Activation("swish", name="expand_act")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.Activation("swish", name="dw_act")(x)
    s = L.GlobalAveragePooling2D(name="se_squeeze")(x)
    s = L.Reshape((1, 1, 6), name="se_reshape")(s)
    s = L.Conv2D(2, 1, activation="swish", name="se_reduce")(s)
    s = L.Conv2D(6, 1, activation="sigmoid", name="se_expand")(s)
    x = L.Multiply(name="se_excite")([x, s])
    x = L.Conv2D(4, 1, name="project")(x)
    outputs = L.Dense(2, name="out")(L.GlobalAveragePooling2D(name="gap")(x))
    return randomize_weights(keras.Model(inputs, outputs), seed=13)


def convnext_net(stem_as_sequential=False):
    """ConvNeXt-like: LayerNorm stem, grouped depthwise conv, LayerScale."""
    inputs = keras.Input((16, 16, 3))
    stem_layers = [
        L.Conv2D(4, 4, strides=4, name="stem_conv"),
        L.LayerNormalization(epsilon=1e-6, name="stem_ln"),
    ]
    if stem_as_sequential:
        x = keras.Sequential(stem_layers, name="stem")(inputs)
    else:
        x = stem_layers[1](stem_layers[0](inputs))
    shortcut = x
    y = L.Conv2D(4, 7, padding="same", groups=4, name="dwconv")(x)
    y = L.LayerNormalization(epsilon=1e-6, name="block_ln")(y)
    y = L.Dense(16, name="pw1")(y)
    y = L.Activation("gelu", name="gelu")(y)
    y = L.Dense(4, name="pw2")(y)
    y = LayerScale(0.5, 4, name="layer_scale")(y)
    x = L.Add(name="add")([shortcut, y])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.LayerNormalization(epsilon=1e-6, name="head_ln")(x)
    outputs = L.Dense(3, name="out")(x)
    return randomize_weights(keras.Model(inputs, outputs), seed=14)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "build, name, new_width, widened",
    [
        (mobile_block, "expand", 9, ["expand"]),
        (mobile_block, "dw", 10, ["expand"]),
        (mobile_block, "head_conv", 7, ["head_conv"]),
        (separable_net, "stem", 8, ["stem"]),
        (separable_net, "sep1", 9, ["sep1"]),
        (squeeze_excite_net, "expand", 9, ["expand", "se_expand"]),
        (squeeze_excite_net, "se_expand", 8, ["expand", "se_expand"]),
        (squeeze_excite_net, "se_reduce", 5, ["se_reduce"]),
    ],
)
def test_widen_through_depthwise_and_separable(build, name, new_width, widened, method):
    teacher = build()
    student = widen(teacher, name, new_width, method=method, seed=0)
    for other in widened:
        assert width(student, other) == new_width
    assert_preserved(teacher, student)


def test_depthwise_filters_and_bn_entries_are_copied():
    teacher = mobile_block()
    student = widen(teacher, "expand", 9, seed=3)
    kernel = student.get_layer("dw").get_weights()[0]
    old = teacher.get_layer("dw").get_weights()[0]
    assert kernel.shape == (3, 3, 9, 1)
    copies = kernel[:, :, 6:, 0]
    assert all(
        any(np.array_equal(copies[..., j], old[:, :, i, 0]) for i in range(6))
        for j in range(3)
    )
    gamma = student.get_layer("dw_bn").get_weights()[0]
    assert set(gamma[6:].tolist()) <= set(gamma[:6].tolist())


def test_separable_consumer_with_depth_multiplier_keeps_shapes():
    student = widen(separable_net(), "stem", 8, seed=1)
    depthwise, pointwise, _ = student.get_layer("sep1").get_weights()
    assert depthwise.shape == (3, 3, 8, 2) and pointwise.shape == (1, 1, 16, 6)


@pytest.mark.parametrize(
    "blocker, message",
    [
        (L.Conv2D(6, 3, padding="same", groups=2, name="blocker"), "groups=2"),
        (
            L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="blocker"),
            "depth_multiplier=2",
        ),
        (L.LayerNormalization(axis=(1, 2, 3), name="blocker"), "LayerNormalization"),
    ],
)
def test_refuses_grouped_and_multiplied_convs_by_name(blocker, message):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="target")(inputs)
    x = blocker(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match=f"'blocker'.*{message}"):
        widen(model, "target", 8)


@pytest.mark.parametrize(
    "name, widened",
    [
        ("stem_conv", ["stem_conv", "pw2", "dwconv"]),
        ("pw2", ["stem_conv", "pw2"]),
        ("dwconv", ["stem_conv", "pw2", "dwconv"]),
        ("pw1", ["pw1"]),
    ],
)
def test_widen_convnext_block_through_layer_norm(name, widened):
    teacher = convnext_net()
    new_width = 2 * width(teacher, name)
    student = widen(teacher, name, new_width, method="net2net", seed=0)
    for other in widened:
        assert width(student, other) == new_width
    assert student.get_layer("layer_scale").get_weights()[0].shape[-1] == width(
        student, "pw2"
    )
    assert_preserved(teacher, student)


@pytest.mark.parametrize(
    "method, new_width", [("net2net", 6), ("netmorph", 8), ("netmorph", 6)]
)
def test_layer_norm_refuses_what_changes_its_statistics(method, new_width):
    with pytest.raises(ValueError, match="'stem_ln'.*mean and variance"):
        widen(convnext_net(), "stem_conv", new_width, method=method)


def test_layer_norm_not_on_the_channels_is_no_obstacle_for_netmorph():
    student = widen(convnext_net(), "pw1", 19, method="netmorph", seed=2)
    assert width(student, "pw1") == 19


def test_nested_sequential_stem_is_flattened_with_names_kept():
    teacher = convnext_net(stem_as_sequential=True)
    student = widen(teacher, "stem_conv", 8, seed=0)
    names = [layer.name for layer in student.layers]
    assert "stem" not in names and {"stem_conv", "stem_ln"} <= set(names)
    assert width(student, "stem_conv") == 8
    assert_preserved(teacher, student)
    deeper = deepen(teacher, "stem_ln")
    assert "stem_ln_deepen_conv" in [layer.name for layer in deeper.layers]
    assert_preserved(teacher, deeper)


def test_functional_backbone_inside_a_task_model():
    backbone = squeeze_excite_net()
    backbone = keras.Model(backbone.input, backbone.get_layer("project").output)
    inputs = keras.Input((12, 12, 3), name="images")
    inner = keras.Model(inputs, backbone(inputs), name="inner_wrapper")
    outer_in = keras.Input((12, 12, 3), name="images_outer")
    x = L.GlobalAveragePooling2D(name="task_gap")(inner(outer_in))
    task = keras.Model(outer_in, L.Dense(2, name="task_head")(x))
    flat = flatten_nested(task)
    assert max_abs_difference(flat(inputs_for(task)), task(inputs_for(task))) <= 1e-6
    student = widen(task, "expand", 9, seed=0)
    assert width(student, "se_expand") == 9
    assert student.input.name == task.input.name
    assert_preserved(task, student)


def test_flatten_refuses_name_clashes_and_subclassed_models():
    inputs = keras.Input((4,))
    inner = keras.Model(inputs, L.Dense(3, name="dup")(inputs), name="inner")
    outer_in = keras.Input((4,))
    clash = keras.Model(outer_in, L.Dense(1, name="dup")(inner(outer_in)))
    with pytest.raises(ValueError, match="named 'dup'"):
        widen(clash, "dup", 5)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.d = L.Dense(3)

        def call(self, x):
            return self.d(x)

    outer_in = keras.Input((4,))
    model = keras.Model(outer_in, L.Dense(1)(Sub()(outer_in)))
    with pytest.raises(ValueError, match="'sub'.*subclassed"):
        widen(model, "x", 5)


def nested_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from nested_layers(layer)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, layer_name",
    [
        ("MobileNetV2", "block_3_expand"),
        ("MobileNetV2", "block_5_depthwise"),
        ("ConvNeXtTiny", "convnext_tiny_stem_conv"),
        ("ConvNeXtTiny", "convnext_tiny_stage_1_block_0_pointwise_conv_2"),
    ],
)
def test_widen_application_backbones(name, layer_name):
    keras.utils.set_random_seed(0)
    teacher = getattr(keras.applications, name)(
        weights=None, input_shape=(64, 64, 3), classes=4, classifier_activation=None
    )
    rng = np.random.default_rng(0)
    layers = {layer.name: layer for layer in nested_layers(teacher)}
    for layer in layers.values():
        if isinstance(layer, (L.BatchNormalization, L.LayerNormalization)):
            values = [rng.uniform(0.5, 1.5, w.shape) for w in layer.weights]
            layer.set_weights([v.astype(np.float32) for v in values])
    old = layers[layer_name].output.shape[-1]
    student = widen(teacher, layer_name, 2 * old, seed=0)
    assert student.get_layer(layer_name).output.shape[-1] == 2 * old
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    reference = np.asarray(teacher(x, training=False))
    diff = max_abs_difference(student(x, training=False), reference)
    assert diff <= 1e-4 * float(np.max(np.abs(reference))), diff
