import keras
import numpy as np
import pytest

from morphhr_tf.models import resnet18, resnet34


def count(model, cls):
    return sum(type(layer) is cls for layer in model.layers)


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_head_and_shapes(channels):
    model = resnet18((32, 32, channels), width=8)
    assert tuple(model.output.shape) == (None, 1)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, channels)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 1) and np.all((y > 0) & (y < 1))
    assert model.get_layer("predictions").get_config()["activation"] == "sigmoid"
    # 1 stem conv + 8 blocks x 2 convs + 3 projections.
    assert count(model, keras.layers.Conv2D) == 20
    assert model.get_layer("stack3_block1_2_conv").filters == 64


def test_resnet34_depth_and_widths():
    model = resnet34((32, 32, 3), width=4, include_top=False, pooling="avg")
    assert count(model, keras.layers.Conv2D) == 1 + 2 * 16 + 3
    assert tuple(model.output.shape) == (None, 32)
    assert model.get_layer("stack2_block5_2_conv").filters == 16


def test_feature_map_and_stage_filters():
    model = resnet18((64, 64, 3), stage_filters=[8, 8, 16, 16], include_top=False)
    assert tuple(model.output.shape) == (None, 2, 2, 16)


def test_multiclass_softmax_head():
    model = resnet18((32, 32, 3), width=4, num_classes=3)
    y = np.asarray(model(np.ones((2, 32, 32, 3), np.float32)))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_mixed_precision_output_is_float32(mixed_bfloat16):
    model = resnet18((32, 32, 1), width=8)
    assert model.get_layer("stack0_block0_1_conv").compute_dtype == "bfloat16"
    y = model(np.zeros((2, 32, 32, 1), np.float32))
    assert y.dtype == "float32"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 0}, "width"),
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"num_classes": 0}, "num_classes"),
        ({"include_top": False, "pooling": "sum"}, "pooling"),
        ({"stage_filters": [8, 8]}, "stage_filters"),
    ],
)
def test_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resnet18(**{"input_shape": (32, 32, 3), **kwargs})
