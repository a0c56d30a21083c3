"""Function-preserving network morphs on Keras functional models.

Each op returns a new model computing the same function as its input (in
inference mode) and leaves the input model untouched:

- :func:`widen`: more units in a `Dense` / `Conv2D` (Net2WiderNet or the
  network-morphism width morph), coupled residual groups included.
- :func:`deepen`: an identity-initialized layer plus a `PActivation`.
- :func:`enlarge_kernel`: a zero-padded, larger conv kernel.
- :func:`collapse_input_channels`: a 3-channel stem as a 1-channel stem.

The weight arithmetic lives in :mod:`morphhr_tf.morph.weight_maps` (pure numpy)
and the graph rebuilding in :mod:`morphhr_tf.morph.graph`.
"""

from morphhr_tf.morph.collapse import collapse_input_channels
from morphhr_tf.morph.depth import deepen
from morphhr_tf.morph.kernel_size import enlarge_kernel
from morphhr_tf.morph.width import widen

__all__ = ["collapse_input_channels", "deepen", "enlarge_kernel", "widen"]
