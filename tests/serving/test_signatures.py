import numpy as np
import tensorflow as tf

from morphhr_tf.data.tfrecord_codec import decode_image, encode_example
from morphhr_tf.serving.signatures import SIGNATURE_NAMES


def _images(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((size, size)).astype(np.float32) for _ in range(n)]


def _call_all(loaded, images):
    examples = [
        encode_example(img, label=0, patient_key="p", image_key=f"i{i}")
        for i, img in enumerate(images)
    ]
    pngs = tf.io.parse_example(
        tf.constant(examples), {"image": tf.io.FixedLenFeature([], tf.string)}
    )["image"]
    decoded = tf.stack([decode_image(p) for p in pngs])
    sig = loaded.signatures
    return (
        sig["serving_default"](examples=tf.constant(examples))["probability"].numpy(),
        sig["predict_png"](png=pngs)["probability"].numpy(),
        sig["predict_image"](images=decoded)["probability"].numpy(),
    )


def test_three_signatures_agree(saved_model_dir):
    loaded = tf.saved_model.load(saved_model_dir)
    assert set(SIGNATURE_NAMES) <= set(loaded.signatures)
    by_example, by_png, by_image = _call_all(loaded, _images(3, 64))
    assert by_example.shape == (3, 1) and by_example.dtype == np.float32
    assert np.all((by_example >= 0) & (by_example <= 1))
    assert np.max(np.abs(by_example - by_png)) <= 1e-5
    assert np.max(np.abs(by_example - by_image)) <= 1e-5
    assert np.ptp(by_example) > 0  # different images, different outputs


def test_other_stored_sizes_are_area_resized_consistently(saved_model_dir):
    loaded = tf.saved_model.load(saved_model_dir)
    by_example, by_png, by_image = _call_all(loaded, _images(2, 128, seed=1))
    assert np.max(np.abs(by_example - by_png)) <= 1e-5
    assert np.max(np.abs(by_example - by_image)) <= 1e-5
    # 128 -> 64 area resize is 2x2 averaging: same answer as sending it pooled.
    img = _images(1, 128, seed=1)[0]
    pooled = img.reshape(64, 2, 64, 2).mean(axis=(1, 3))[None, :, :, None]
    direct = loaded.signatures["predict_image"](images=tf.constant(pooled))
    full = loaded.signatures["predict_image"](images=tf.constant(img[None, :, :, None]))
    np.testing.assert_allclose(
        direct["probability"].numpy(), full["probability"].numpy(), atol=1e-5
    )


def test_the_module_reads_the_resolution_from_the_model():
    import keras
    import pytest

    from morphhr_tf.models import resnet18
    from morphhr_tf.serving.signatures import ServingModule, model_resolution

    assert model_resolution(resnet18((48, 48, 1), width=4)) == 48
    assert int(ServingModule(resnet18((32, 32, 1), width=4)).resolution.numpy()) == 32
    for shape in [(48, 32, 1), (None, None, 1), (48, 48, 3)]:
        inputs = keras.Input(shape)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
        with pytest.raises(
            ValueError, match=r"\[None, S, S, 1\]\. Received input shape"
        ):
            model_resolution(model)
