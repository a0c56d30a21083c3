"""Tests of morphhr_tf.data.preprocessing: resize, crop, orientation, 16 bits."""

from __future__ import annotations

import numpy as np
import pytest

from morphhr_tf.data.preprocessing import (
    BreastMask,
    CanonicalOrientation,
    CropToBreast,
    MammogramPreprocessor,
    Resize,
    ToUint16,
    area_matrix,
    area_resize,
)
from morphhr_tf.synthetic.render import render_mammogram


def reference_area_resize(image, height, width):
    """Box-filter resampling written as explicit overlap integrals."""

    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        scale = n_in / n_out
        for i in range(n_out):
            a, b = i * scale, (i + 1) * scale
            for j in range(n_in):
                m[i, j] = max(0.0, min(b, j + 1) - max(a, j)) / scale
        return m

    return weights(image.shape[0], height) @ image @ weights(image.shape[1], width).T


@pytest.mark.parametrize(
    ("shape", "out"),
    [
        ((40, 30), (16, 12)),
        ((37, 53), (10, 19)),
        ((12, 9), (20, 25)),
        ((64, 64), (64, 32)),
    ],
)
def test_area_resize_matches_reference(shape, out):
    rng = np.random.default_rng(0)
    image = rng.uniform(size=shape).astype(np.float32)
    got = area_resize(image, *out)
    want = reference_area_resize(image.astype(np.float64), *out)
    assert got.shape == out and got.dtype == np.float32
    assert float(np.max(np.abs(got - want))) < 1e-5


def test_area_resize_integer_factor_is_block_mean():
    image = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    blocks = image.reshape(16, 4, 12, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(area_resize(image, 16, 12), blocks, rtol=1e-6)
    rows = area_matrix(100, 7).sum(axis=1)
    np.testing.assert_allclose(np.asarray(rows).ravel(), 1.0, rtol=1e-6)


def _phantom(marker=True):
    """An elliptic 'breast' on the left edge plus a bright label top right."""
    h, w = 200, 160
    r = np.arange(h)[:, None]
    c = np.arange(w)[None, :]
    breast = ((r - 100) / 80.0) ** 2 + (c / 100.0) ** 2 < 1
    image = np.where(breast, 0.5, 0.01).astype(np.float32)
    if marker:
        image[10:22, 140:152] = 0.95
    return image, breast


def test_crop_drops_labels_and_keeps_the_breast():
    image, breast = _phantom()
    crop = CropToBreast(margin=0.0)(image)
    assert float(crop.max()) <= 0.5 + 1e-6  # the label is gone
    rows, cols = np.flatnonzero(breast.any(1)), np.flatnonzero(breast.any(0))
    assert abs(crop.shape[0] - (rows[-1] - rows[0] + 1)) <= 6
    assert abs(crop.shape[1] - (cols[-1] - cols[0] + 1)) <= 6
    assert float((crop >= 0.5).sum()) >= 0.97 * breast.sum()


def test_crop_on_a_synthetic_mammogram_with_a_marker():
    clean, _, _ = render_mammogram(4, rows=256, marker=False)
    marked, _, _ = render_mammogram(4, rows=256, marker=True)
    assert not np.array_equal(clean, marked)
    a, b = CropToBreast()(clean), CropToBreast()(marked)
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) < 0.05  # the marker left no trace


def test_blank_image_is_not_a_breast():
    with pytest.raises(ValueError, match="no breast found"):
        CropToBreast()(np.zeros((64, 64), np.float32))
    mask, step = BreastMask(threshold=0.5)(np.full((64, 64), 0.2, np.float32))
    assert step == 1 and not mask.any()


def test_orientation_uses_laterality_then_mass():
    image, _ = _phantom(marker=False)  # chest wall on the left
    orient = CanonicalOrientation("left")
    np.testing.assert_array_equal(orient(image, "L"), image)
    np.testing.assert_array_equal(orient(image[:, ::-1], "R"), image)
    np.testing.assert_array_equal(orient(image[:, ::-1], ""), image)  # by mass
    # A header contradicted by the image: the image wins.
    np.testing.assert_array_equal(orient(image[:, ::-1], "L"), image)
    assert CanonicalOrientation("right").chest_wall_side(image, "") == "left"
    assert orient.chest_wall_side(np.ones((8, 8)), "R") == "right"  # no evidence


def test_resize_modes():
    image = np.ones((100, 50), np.float32)
    square = Resize(32, "square")(image)
    assert square.shape == (32, 32) and np.allclose(square, 1.0)
    pad = Resize(32, "pad")(image)
    assert pad.shape == (32, 32)
    assert np.allclose(pad[:, :16], 1.0) and np.allclose(pad[:, 16:], 0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        Resize(32, "crop")


def test_to_uint16():
    out = ToUint16()(np.array([[-0.5, 0.0, 0.5, 1.0, 2.0]], np.float32))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[0, 0, 32768, 65535, 65535]])


def test_left_and_right_breasts_look_alike_after_preprocessing():
    image, _, _ = render_mammogram(8, rows=256, laterality="L")
    pre = MammogramPreprocessor(image_size=64)
    left = pre(image, "L").astype(np.float64) / 65535
    right = pre(np.ascontiguousarray(image[:, ::-1]), "R").astype(np.float64) / 65535
    assert left.shape == (64, 64)
    assert float(np.mean(np.abs(left - right))) < 0.01
    # The chest wall ends up on the left: more tissue in the left half.
    assert left[:, :32].sum() > 1.5 * left[:, 32:].sum()
