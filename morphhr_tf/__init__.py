"""morphhr_tf: high-resolution mammogram classification with MorphHR.

Importing the package applies the runtime policy (Keras 3 on TensorFlow, quiet
logs, TensorFlow's C++ start-up lines hidden, offline Beam options) before
TensorFlow is loaded; see :mod:`morphhr_tf.runtime`.
"""

from morphhr_tf import runtime as _runtime

_runtime.configure()

__version__ = "0.1.0"

__all__ = ["__version__"]
