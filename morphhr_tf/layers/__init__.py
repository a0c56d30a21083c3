"""Custom Keras layers used by the MorphHR morphs."""

from morphhr_tf.layers.lean_batch_normalization import LeanBatchNormalization
from morphhr_tf.layers.p_activation import PActivation

__all__ = ["LeanBatchNormalization", "PActivation"]
