"""Fixtures shared by this test folder."""

import pytest

import morphhr_tf  # noqa: F401  (Keras 3 on TensorFlow before Keras loads)


@pytest.fixture
def mixed_bfloat16():
    """Runs a test under the `mixed_bfloat16` global policy, then resets it."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")
