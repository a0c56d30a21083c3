"""The ingest's fast path gives the pixels of the plain one, bit for bit.

- ``open_mammogram`` (a :class:`MappedImage`: stored values plus the LUT
  table, unused high bits folded into the table) against ``read_mammogram``
  and against pydicom's corrected ``pixel_array`` through the LUT pipeline;
- :class:`MammogramPreprocessor` on a lazily mapped image against the same
  on the mapped array, and :class:`CropToBreast` against a reference copy of
  its earlier implementation (``ndimage.binary_dilation``, ``np.ix_``
  blanking, holes filled over the whole grid);
- the helpers that replaced library calls against those calls.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from morphhr_tf.data.dicom_reader import (
    MappedImage,
    apply_lut_pipeline,
    open_mammogram,
    read_mammogram,
)
from morphhr_tf.data.preprocessing import (
    BreastMask,
    CropToBreast,
    MammogramPreprocessor,
    ToUint16,
    _dilate_cross,
    _expand,
    _fill_holes,
)
from morphhr_tf.synthetic.render import render_mammogram


def _stored_mammogram(seed, rows=256, marker=True, bits=12):
    image, _, _ = render_mammogram(seed, rows=rows, marker=marker)
    return np.round(image * (2**bits - 1)).astype(np.uint16)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"window": (1500, 2000), "voi_function": "SIGMOID"},
        {"window": (2000, 3000), "rescale": (2.0, -50.0)},
        {"photometric": "MONOCHROME1", "window": (1800, 2500)},
    ],
)
def test_unused_high_bits_are_ignored_as_pydicom_does(tmp_path, make_dicom, attrs):
    stored = _stored_mammogram(1, rows=64)
    noisy = stored | (np.arange(stored.size).reshape(stored.shape) % 16 << 12)
    path = make_dicom(
        tmp_path / "a.dcm", noisy.astype(np.uint16), bits_stored=12, **attrs
    )
    ds = pydicom.dcmread(path)
    expected, _ = apply_lut_pipeline(ds.pixel_array, ds)  # corrected by pydicom
    lazy, meta = open_mammogram(path)
    image, meta2 = read_mammogram(path)
    assert isinstance(lazy, MappedImage) and meta == meta2
    assert lazy.stored.max() > 4095  # the garbage bits are still there
    np.testing.assert_array_equal(image, expected.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(lazy), image)
    np.testing.assert_array_equal(lazy[3:40:2, 5:], image[3:40:2, 5:])


def test_signed_pixels_are_sign_extended_from_the_stored_bits(tmp_path, make_dicom):
    values = np.arange(-2048, 2048, dtype=np.int16).reshape(64, 64)
    garbage = (np.arange(values.size).reshape(values.shape) % 16).astype(np.int16)
    noisy = ((values.view(np.uint16) & 0x0FFF) | (garbage.view(np.uint16) << 12)).view(
        np.int16
    )
    path = make_dicom(tmp_path / "s.dcm", noisy, bits_stored=12, window=(0, 3000))
    ds = pydicom.dcmread(path)
    expected, _ = apply_lut_pipeline(ds.pixel_array, ds)
    lazy, _ = open_mammogram(path)
    np.testing.assert_array_equal(np.asarray(lazy), expected.astype(np.float32))
    np.testing.assert_array_equal(lazy[::3, 7:9], expected[::3, 7:9].astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("resize_mode", ["square", "pad"])
def test_preprocessing_a_lazy_image_gives_the_same_pixels(
    tmp_path, make_dicom, seed, resize_mode
):
    stored = _stored_mammogram(seed, marker=seed % 2 == 0)
    path = make_dicom(tmp_path / "m.dcm", stored, bits_stored=12, window=(1800, 3000))
    lazy, _ = open_mammogram(path)
    image, _ = read_mammogram(path)
    pre = MammogramPreprocessor(image_size=64, resize_mode=resize_mode)
    for laterality in ("L", "R", ""):
        np.testing.assert_array_equal(pre(lazy, laterality), pre(image, laterality))
    np.testing.assert_array_equal(CropToBreast()(lazy), CropToBreast()(image))
    mask, step = BreastMask()(lazy)
    expected_mask, expected_step = BreastMask()(image)
    assert step == expected_step
    np.testing.assert_array_equal(mask, expected_mask)


def _reference_fill_holes(mask):
    labels, count = ndimage.label(~mask)
    border = np.unique(
        np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    )
    keep = np.zeros(count + 1, dtype=bool)
    keep[border] = True
    keep[0] = True
    return mask | ~keep[labels]


def _reference_crop(image, margin=0.02):
    """CropToBreast as it was before the fast path (default segmenter)."""
    seg = BreastMask()
    mask, step = seg(image)
    mask = ndimage.binary_dilation(mask, iterations=2)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = image.shape
    pad_r = int(margin * (rows[-1] - rows[0] + 1) * step)
    pad_c = int(margin * (cols[-1] - cols[0] + 1) * step)
    r0, r1 = max(0, rows[0] * step - pad_r), min(h, (rows[-1] + 1) * step + pad_r)
    c0, c1 = max(0, cols[0] * step - pad_c), min(w, (cols[-1] + 1) * step + pad_c)
    crop = np.array(image[r0:r1, c0:c1], dtype=np.float32)
    ri = np.minimum(np.arange(r0, r1) // step, mask.shape[0] - 1)
    ci = np.minimum(np.arange(c0, c1) // step, mask.shape[1] - 1)
    box = (slice(ri[0], ri[-1] + 1), slice(ci[0], ci[-1] + 1))
    small = np.asarray(image[::step, ::step])[box]
    outside, inside = small[~mask[box]], small[mask[box]]
    level = float(np.percentile(inside, 5)) if inside.size else 0.0
    if outside.size and (outside > 0.5 * level).any():
        crop[~mask[np.ix_(ri, ci)]] = 0.0
    return crop


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_crop_equals_the_earlier_implementation(seed):
    image, _, _ = render_mammogram(seed, rows=512, marker=True)
    image = image.astype(np.float32)
    expected = _reference_crop(image)
    np.testing.assert_array_equal(CropToBreast()(image), expected)
    flipped = np.ascontiguousarray(image[:, ::-1])
    np.testing.assert_array_equal(CropToBreast()(flipped), _reference_crop(flipped))


def _random_masks():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (5, 7), (40, 33), (64, 64)):
        for density in (0.0, 0.3, 0.6, 0.9, 1.0):
            yield rng.random(shape) < density
    ring = np.zeros((20, 20), bool)
    ring[2:18, 2:18] = True
    ring[6:12, 6:12] = False  # a hole
    yield ring
    edge = ring.copy()
    edge[:, :3] = True  # touching the border
    edge[8, 0:8] = False  # a channel from the hole to the border
    yield edge


def test_mask_helpers_equal_the_library_calls():
    for mask in _random_masks():
        np.testing.assert_array_equal(
            _dilate_cross(mask, 2), ndimage.binary_dilation(mask, iterations=2)
        )
        np.testing.assert_array_equal(_fill_holes(mask), _reference_fill_holes(mask))
        np.testing.assert_array_equal(
            _fill_holes(mask), ndimage.binary_fill_holes(mask)
        )


@pytest.mark.parametrize(("start", "stop", "step"), [(0, 37, 4), (3, 29, 3), (5, 6, 2)])
def test_expand_equals_a_fancy_index(start, stop, step):
    mask = np.random.default_rng(1).random((12, 14)) < 0.5
    ri = np.minimum(np.arange(start, stop) // step, mask.shape[0] - 1)
    ci = np.minimum(np.arange(start + 1, stop + 4) // step, mask.shape[1] - 1)
    sub = mask[ri[0] : ri[-1] + 1, ci[0] : ci[-1] + 1]
    np.testing.assert_array_equal(
        _expand(sub, ri - ri[0], ci - ci[0]), mask[np.ix_(ri, ci)]
    )


def test_uint16_quantization_of_strided_inputs():
    x = np.random.default_rng(2).uniform(-0.2, 1.2, (31, 17)).astype(np.float32)
    x[0, :4] = [0.5 / 65535, 1.5 / 65535, 2.5 / 65535, np.nan_to_num(1.0)]
    for view in (x, x.T, x[:, ::-1], x[::2]):
        expected = np.round(np.clip(view, 0.0, 1.0) * 65535.0).astype(np.uint16)
        out = ToUint16()(view)
        assert out.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(out, expected)


def test_mapped_image_rejects_what_it_cannot_map():
    with pytest.raises(ValueError, match="2-D"):
        MappedImage(np.zeros((2, 2, 2), np.uint16), np.zeros(65536, np.float32))
    with pytest.raises(ValueError, match="8/16-bit"):
        MappedImage(np.zeros((2, 2), np.int32), np.zeros(65536, np.float32))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        MammogramPreprocessor(image_size=8)(MappedImage(np.zeros((0, 4), np.float32)))
    with pytest.raises(ValueError, match=r"65536 for uint16. Received: .*\(4096,\)"):
        MappedImage(np.zeros((2, 2), np.uint16), np.zeros(4096, np.float32))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
def test_large_slices_are_mapped_in_blocks_to_the_same_values(dtype, monkeypatch):
    from morphhr_tf.data import dicom_reader

    monkeypatch.setattr(dicom_reader, "GATHER_BLOCK", 1000)  # blocks of 3 rows
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    stored = rng.integers(info.min, info.max, (100, 300), endpoint=True).astype(dtype)
    table = rng.random(2 ** (8 * stored.itemsize)).astype(np.float32)
    lazy = MappedImage(stored, table)
    unsigned = stored.view(f"u{stored.itemsize}")
    for key in (
        (slice(None), slice(None)),
        (slice(7, 95, 3), slice(10, 290)),  # rows not a multiple of a block
        (slice(None, None, -1), slice(299, 0, -2)),
        (slice(0, 2), slice(None)),  # below one block: a single take
        (5, slice(None)),  # one row
    ):
        np.testing.assert_array_equal(lazy[key], table[unsigned[key].astype(np.int64)])


def test_blanking_never_writes_into_the_callers_image():
    image, _, _ = render_mammogram(2, rows=256, marker=True)
    image = image.astype(np.float32)
    kept = image.copy()
    for source in (image, MappedImage(image)):
        crop = CropToBreast()(source)
        np.testing.assert_array_equal(image, kept)
        np.testing.assert_array_equal(crop, _reference_crop(kept))


def _phantom_with_a_label_in_the_box():
    """A breast on the left edge and a bright label inside its bounding box."""
    r, c = np.arange(200)[:, None], np.arange(160)[None, :]
    breast = ((r - 100) / 80.0) ** 2 + (c / 100.0) ** 2 < 1
    image = np.where(breast, 0.5, 0.01)
    image[25:35, 80:92] = 0.95  # outside the breast, inside its box
    stored = np.round(image * 4095).astype(np.uint16)
    table = np.minimum(np.arange(65536) / 4095.0, 1.0).astype(np.float32)
    return MappedImage(stored, table)


def test_labels_inside_the_box_are_blanked_alike():
    lazy = _phantom_with_a_label_in_the_box()
    image = np.asarray(lazy)
    kept = image.copy()
    expected = _reference_crop(image)
    assert (expected == 0).any() and not (image == 0).any()  # blanking happened
    np.testing.assert_array_equal(CropToBreast()(lazy), expected)
    np.testing.assert_array_equal(CropToBreast()(image), expected)
    np.testing.assert_array_equal(image, kept)
    pre = MammogramPreprocessor(image_size=32)
    np.testing.assert_array_equal(pre(lazy, "L"), pre(image, "L"))
