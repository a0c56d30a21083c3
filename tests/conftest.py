"""Shared pytest set-up: apply the runtime policy before any test imports
TensorFlow (Keras 3 on the TensorFlow backend, quiet logs), and fixtures used
across test folders."""

import morphhr_tf.runtime  # noqa: F401  (before TensorFlow loads)

import pytest


@pytest.fixture
def mixed_bfloat16():
    """Runs a test under the `mixed_bfloat16` global policy, then resets it."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory):
    """A synthetic CBIS-DDSM tree: 6 patients, 256-row images, uid layout
    (used by tests/data and tests/synthetic)."""
    from morphhr_tf.synthetic.cbis_ddsm import generate

    root = tmp_path_factory.mktemp("cbis_small")
    summary = generate(root, patients=6, seed=7, rows=256)
    return root, summary
