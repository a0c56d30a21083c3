"""The serving input contract, through the loaded SavedModel's signatures (what
TF Serving calls): bad input fails the request with InvalidArgument naming the
input, documented conversions give the same probability as the canonical
input, and a NaN is never returned as a probability."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.serving.signatures import MAX_PNG_PIXELS

SIZE = 64


@pytest.fixture(scope="module")
def loaded(saved_model_dir):
    return tf.saved_model.load(saved_model_dir)


def _image(seed=0, shape=(SIZE, SIZE)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _png16(image):
    return tf.io.encode_png(np.round(image * 65535).astype(np.uint16)[..., None])


def _example(png):
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))
    return tf.train.Example(
        features=tf.train.Features(feature={"image": feature})
    ).SerializeToString()


def _call(loaded, signature, **inputs):
    return loaded.signatures[signature](**inputs)["probability"].numpy()


def _bomb():
    data = bytearray(_png16(_image()).numpy())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width, height
    return bytes(data)


IMG = _image()
GOOD_PNG = _png16(IMG).numpy()
NAN_IMAGES = np.stack([IMG, IMG])[..., None].copy()
NAN_IMAGES[1, 5, 5, 0] = np.nan
INF_IMAGES = IMG[None, ..., None].copy()
INF_IMAGES[0, 0, 0, 0] = np.inf
JPEG = tf.io.encode_jpeg(np.uint8(IMG[..., None] * 255)).numpy()

# (signature, input name, value, message the InvalidArgument error must carry)
REFUSED = [
    ("predict_image", "images", IMG[None, ..., None].astype(np.int32), "float"),
    ("predict_image", "images", IMG[None, ..., None].astype(np.float64), "float"),
    ("predict_image", "images", IMG[..., None], "Shape of tensor images [64,64,1]"),
    ("predict_image", "images", np.stack([IMG] * 3, -1)[None], "tensor images"),
    ("predict_image", "images", np.zeros([1, 0, SIZE, 1], np.float32), "images: empty"),
    ("predict_image", "images", NAN_IMAGES, "images: NaN or Inf pixel values"),
    ("predict_image", "images", INF_IMAGES, "images: NaN or Inf pixel values"),
    ("predict_image", "images", IMG[None, ..., None] * 65535, "images: pixel values above 1"),
    ("predict_image", "images", IMG[None, ..., None] - 0.5, "images: pixel values below 0"),
    ("predict_png", "png", [GOOD_PNG, b"not a PNG at all"], "png: not a PNG image"),
    ("predict_png", "png", [b""], "png: not a PNG image"),
    ("predict_png", "png", [JPEG], "png: not a PNG image"),
    ("predict_png", "png", [GOOD_PNG[:100]], "png_decode"),
    ("predict_png", "png", [_bomb()], f"png: PNG width x height not in 1..{MAX_PNG_PIXELS}"),
    ("predict_png", "png", GOOD_PNG, "Shape of tensor png []"),
    ("predict_png", "png", [[GOOD_PNG]], "Shape of tensor png [1,1]"),
    ("predict_png", "png", np.array([1.0], np.float32), "string"),
    ("serving_default", "examples", [b"junk"], "Feature: image"),
    ("serving_default", "examples", [_example(b"no png")], "examples[image]: not a PNG"),
    ("serving_default", "examples", [_example(_bomb())], "examples[image]: PNG width x height"),
]  # fmt: skip


@pytest.mark.parametrize(
    "signature,name,value,message",
    REFUSED,
    ids=[f"{s}-{m[:24]}-{i}" for i, (s, _, _, m) in enumerate(REFUSED)],
)
def test_bad_input_fails_with_invalid_argument_naming_it(
    loaded, signature, name, value, message
):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _call(loaded, signature, **{name: tf.constant(value)})
    assert message in info.value.message, info.value.message
    if "float" not in message and "string" not in message:  # dtype: input #0
        assert name in info.value.message


def test_the_model_still_serves_after_refused_requests(loaded):
    before = _call(loaded, "predict_png", png=tf.constant([GOOD_PNG]))
    for signature, name, value, _ in REFUSED:
        with pytest.raises(tf.errors.InvalidArgumentError):
            _call(loaded, signature, **{name: tf.constant(value)})
    after = _call(loaded, "predict_png", png=tf.constant([GOOD_PNG]))
    np.testing.assert_array_equal(before, after)
    assert np.isfinite(after).all()


@pytest.mark.parametrize(
    "signature,name,dtype",
    [
        ("predict_image", "images", None),
        ("predict_png", "png", tf.string),
        ("serving_default", "examples", tf.string),
    ],
)
def test_an_empty_batch_gives_an_empty_answer(loaded, signature, name, dtype):
    value = (
        tf.zeros([0, SIZE, SIZE, 1], tf.float32)
        if dtype is None
        else tf.constant([], dtype)
    )
    out = _call(loaded, signature, **{name: value})
    assert out.shape == (0, 1) and out.dtype == np.float32


def test_documented_conversions_match_the_canonical_input(loaded):
    canonical = _call(loaded, "predict_image", images=tf.constant(IMG[None, ..., None]))
    # 8-bit PNG: scaled by 1/255, exactly like the same values sent as floats.
    img8 = np.round(IMG * 255).astype(np.uint8)
    png8 = tf.io.encode_png(img8[..., None])
    as_float = tf.constant((img8 / 255.0).astype(np.float32)[None, ..., None])
    by_png8 = _call(loaded, "predict_png", png=tf.reshape(png8, [1]))
    np.testing.assert_allclose(
        by_png8, _call(loaded, "predict_image", images=as_float), atol=1e-5
    )
    # RGB PNG with equal channels: converted to the same gray image.
    rgb = tf.io.encode_png(np.repeat(img8[..., None], 3, axis=-1))
    np.testing.assert_allclose(
        _call(loaded, "predict_png", png=tf.reshape(rgb, [1])), by_png8, atol=1e-5
    )
    # 16-bit PNG at the model size: the same as the float image (quantized).
    by_png16 = _call(loaded, "predict_png", png=tf.constant([GOOD_PNG]))
    np.testing.assert_allclose(by_png16, canonical, atol=1e-4)
    # Another size (non-square too): area-resized to S x S, as if the client
    # had resized it.
    other = _image(seed=3, shape=(150, 90))
    resized = tf.image.resize(other[None, ..., None], [SIZE, SIZE], method="area")
    expected = _call(loaded, "predict_image", images=resized)
    by_image = _call(
        loaded, "predict_image", images=tf.constant(other[None, ..., None])
    )
    by_png = _call(loaded, "predict_png", png=tf.reshape(_png16(other), [1]))
    np.testing.assert_allclose(by_image, expected, atol=1e-5)
    np.testing.assert_allclose(by_png, expected, atol=1e-4)
    for out in (canonical, by_png8, by_png16, by_image, by_png):
        assert out.shape == (1, 1) and 0.0 <= float(out[0, 0]) <= 1.0


def test_a_nan_probability_is_an_error_not_an_answer(nan_model_dir):
    loaded = tf.saved_model.load(nan_model_dir)
    for signature, name, value in (
        ("predict_image", "images", IMG[None, ..., None]),
        ("predict_png", "png", [GOOD_PNG]),
        ("serving_default", "examples", [_example(GOOD_PNG)]),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match="probability: the"):
            _call(loaded, signature, **{name: tf.constant(value)})
