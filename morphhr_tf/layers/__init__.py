"""Custom Keras layers used by the MorphHR morphs."""

from morphhr_tf.layers.p_activation import PActivation

__all__ = ["PActivation"]
