"""build_morphhr on keras.applications bases (random weights, no download)."""

import keras
import numpy as np
import pytest

from morphhr_tf.models import build_morphhr
from morphhr_tf.morph.testing import randomize_normalization, relative_error

BASES = ["MobileNetV2", "EfficientNetB0", "ConvNeXtTiny"]


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", BASES)
def test_morphhr_on_application_base_is_exact(name, channels):
    keras.utils.set_random_seed(0)
    base = getattr(keras.applications, name)(
        weights=None,
        input_shape=(32, 32, channels),
        classes=3,
        classifier_activation=None,
    )
    randomize_normalization(base, np.random.default_rng(0))
    model = build_morphhr(base, 64, front_channels=4, seed=0)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, channels))
    x = x.astype(np.float32)
    pooled = x.reshape(2, 32, 2, 32, 2, channels).mean(axis=(2, 4))
    reference = base(pooled, training=False)
    assert float(np.max(np.abs(np.asarray(reference)))) > 1e-3
    assert relative_error(model(x, training=False), reference) <= 1e-4
