"""Tests of morphhr_tf.evaluation.saliency and .overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from morphhr_tf.evaluation.overlays import write_heatmaps
from morphhr_tf.evaluation.saliency import (
    front_feature_layer,
    grad_cam,
    gradient_x_input,
    normalize_maps,
    trunk_feature_layer,
)
from morphhr_tf.models import build_morphhr, resnet18

SIDE = 32


def _spot_model(stride: int = 1) -> keras.Model:
    """Output rises with local brightness: a fixed box filter, ReLU, GAP, sigmoid.

    With ``stride`` 4 the feature map is 8 x 8, so Grad-CAM must upsample.
    """
    k = 3 if stride == 1 else 4
    image = keras.Input((SIDE, SIDE, 1), name="image")
    conv = keras.layers.Conv2D(
        1, k, strides=stride, padding="same", use_bias=False, name="features_conv"
    )
    x = keras.layers.Activation("relu", name="features")(conv(image))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(1, name="logits")(x)
    out = keras.layers.Activation("sigmoid", name="predictions")(x)
    model = keras.Model(image, out)
    conv.set_weights([np.full((k, k, 1, 1), 1.0 / k**2, np.float32)])
    model.get_layer("logits").set_weights([np.ones((1, 1), np.float32), np.zeros(1)])
    return model


def _two_label_model() -> keras.Model:
    """Output 0 reads the left half of the image, output 1 the right half."""
    image = keras.Input((SIDE, SIDE, 1), name="image")
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="features")(image)
    halves = np.zeros((1, SIDE, SIDE, 2), np.float32)
    halves[..., : SIDE // 2, 0] = 1.0
    halves[..., SIDE // 2 :, 1] = 1.0
    x = keras.layers.Multiply(name="halves")([x, keras.ops.convert_to_tensor(halves)])
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = keras.layers.Activation("sigmoid", name="predictions")(x)
    model = keras.Model(image, out)
    model.get_layer("features").set_weights([np.ones((1, 1, 1, 2), np.float32)])
    return model


def _spot_images(centres) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = 0.05 * rng.random((len(centres), SIDE, SIDE)).astype(np.float32)
    for image, (r, c) in zip(images, centres):
        image[r - 1 : r + 2, c - 1 : c + 2] = 1.0
    return images


def _argmax(m: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(int(np.argmax(m)), m.shape))


@pytest.mark.parametrize("method", ["grad_cam", "gradient_x_input"])
def test_maps_have_input_shape_and_lie_in_unit_range(method):
    model = resnet18((64, 64, 1), width=4)
    x = np.random.default_rng(1).random((3, 64, 64, 1)).astype(np.float32)
    fn = grad_cam if method == "grad_cam" else gradient_x_input
    maps = fn(model, x, batch_size=2)
    assert maps.shape == (3, 64, 64)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0


def test_morphhr_maps_are_at_the_full_resolution():
    base = resnet18((32, 32, 1), width=4)
    model = build_morphhr(base, 64, front_channels=4, detail_branch="zeros", seed=0)
    x = np.random.default_rng(2).random((2, 64, 64)).astype(np.float32)
    assert trunk_feature_layer(model) == "stack3_block1_out"
    assert front_feature_layer(model) == "morphhr_front_1_act"
    for maps in (
        grad_cam(model, x),
        grad_cam(model, x, layer_name=front_feature_layer(model)),
        gradient_x_input(model, x),
    ):
        assert maps.shape == (2, 64, 64)
        assert np.isfinite(maps).all() and 0.0 <= maps.min() <= maps.max() <= 1.0


@pytest.mark.parametrize(
    "method,layer,tolerance",
    [
        ("grad_cam", None, 2),
        ("grad_cam", "features", 4),  # 8 x 8 feature map, upsampled
        ("gradient_x_input", None, 2),
    ],
)
def test_peak_follows_a_moved_bright_spot(method, layer, tolerance):
    model = _spot_model(stride=1 if layer is None else 4)
    centres = [(6, 6), (6, 25), (24, 12), (16, 16)]
    images = _spot_images(centres)
    if method == "grad_cam":
        maps = grad_cam(model, images, layer_name=layer)
    else:
        maps = gradient_x_input(model, images, sigma=1.0)
    for m, centre in zip(maps, centres):
        assert np.abs(_argmax(m) - np.array(centre)).max() <= tolerance, (
            centre,
            _argmax(m),
        )


def test_class_index_picks_the_output_explained():
    model = _two_label_model()
    images = _spot_images([(16, 5)])
    images[0, 15:18, 25:28] = 1.0  # a second spot in the right half
    left = gradient_x_input(model, images, class_index=0, sigma=0.0)[0]
    right = gradient_x_input(model, images, class_index=1, sigma=0.0)[0]
    assert _argmax(left)[1] < SIDE // 2 <= _argmax(right)[1]
    assert left[:, SIDE // 2 :].max() == 0.0
    assert grad_cam(model, images, class_index=1).shape == (1, SIDE, SIDE)


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_constant_image_gives_finite_maps(value):
    model = resnet18((64, 64, 1), width=4)
    x = np.full((2, 64, 64), value, np.float32)
    for maps in (grad_cam(model, x), gradient_x_input(model, x)):
        assert np.isfinite(maps).all()
        assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert gradient_x_input(model, np.zeros((1, 64, 64), np.float32)).max() == 0.0


def test_normalize_maps_handles_zero_and_non_finite_maps():
    raw = np.zeros((3, 4, 4), np.float32)
    raw[1, 0, 0] = np.nan
    raw[2, 1, 1], raw[2, 2, 2], raw[2, 3, 3] = 2.0, -5.0, np.inf
    out = normalize_maps(raw)
    assert np.array_equal(out[0], np.zeros((4, 4)))
    assert np.array_equal(out[1], np.zeros((4, 4)))
    expected = np.zeros((4, 4), np.float32)
    expected[1, 1] = 1.0
    np.testing.assert_array_equal(out[2], expected)


def test_bad_arguments_raise_value_errors_that_echo_them():
    model = resnet18((32, 32, 1), width=4)
    x = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r"shape=\(1, 16, 16\)"):
        grad_cam(model, np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="layer_name='nope'"):
        grad_cam(model, x, layer_name="nope")
    with pytest.raises(ValueError, match="4-D"):
        grad_cam(model, x, layer_name="logits")
    with pytest.raises(ValueError, match="class_index=1"):
        gradient_x_input(model, x, class_index=1)
    with pytest.raises(ValueError, match="sigma=-1"):
        gradient_x_input(model, x, sigma=-1.0)
    with pytest.raises(ValueError, match="no layer named 'morphhr_front_'"):
        front_feature_layer(model)


def test_write_heatmaps_writes_png_and_raw_map(tmp_path):
    rng = np.random.default_rng(3)
    maps = rng.random((2, 16, 16)).astype(np.float32)
    images = rng.random((2, 16, 16, 1)).astype(np.float32)
    outlines = np.zeros((2, 16, 16), bool)
    outlines[:, 4:8, 4:8] = True
    paths = write_heatmaps(maps, images, ["a", "b-1"], tmp_path, outlines=outlines)
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "a.png",
        "a.npy",
        "b-1.png",
        "b-1.npy",
    ]
    with open(paths[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.load(paths[3]), maps[1])
    with pytest.raises(ValueError, match="../x"):
        write_heatmaps(maps, images, ["../x", "y"], tmp_path)
    with pytest.raises(ValueError, match="1 names"):
        write_heatmaps(maps, images, ["a"], tmp_path)
