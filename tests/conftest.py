"""Shared pytest set-up: apply the runtime policy before any test imports
TensorFlow (Keras 3 on the TensorFlow backend, quiet logs)."""

import morphhr_tf.runtime  # noqa: F401
