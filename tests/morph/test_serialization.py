"""Morphed models survive `.keras` files and SavedModel export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.models import resnet18
from morphhr_tf.morph import collapse_input_channels, deepen, enlarge_kernel, widen
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights


@pytest.fixture(scope="module")
def morphed():
    model = randomize_weights(resnet18((32, 32, 3), width=8), seed=0)
    model = widen(model, "stack1_block0_2_conv", 20, seed=0)
    model = deepen(model, "stack2_block0_out", activation="gelu", batch_norm=True)
    model = enlarge_kernel(model, "stack0_block1_1_conv", 5)
    model = collapse_input_channels(model)
    # Non-zero P-activation `a` so the round trip must carry it.
    model.get_layer("stack2_block0_out_deepen_act").alpha.assign(0.3)
    return model


def gray(seed=0):
    return np.random.default_rng(seed).normal(size=(2, 32, 32, 1)).astype(np.float32)


def test_keras_file_round_trip(morphed, tmp_path):
    path = tmp_path / "morphed.keras"
    morphed.save(path)
    loaded = keras.models.load_model(path)
    x = gray()
    assert (
        max_abs_difference(loaded(x, training=False), morphed(x, training=False)) == 0.0
    )
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in morphed.layers
    ]


def test_saved_model_export(morphed, tmp_path):
    class Exported(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec((None, 32, 32, 1), tf.float32)])
        def serve(self, images):
            return self.model(images, training=False)

    path = str(tmp_path / "saved")
    tf.saved_model.save(Exported(morphed), path)
    loaded = tf.saved_model.load(path)
    x = gray(1)
    diff = max_abs_difference(loaded.serve(tf.constant(x)), morphed(x, training=False))
    assert diff <= 1e-6
