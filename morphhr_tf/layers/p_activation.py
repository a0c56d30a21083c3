"""The parametric activation (P-activation) of Network Morphism (Wei et al.)."""

from __future__ import annotations

import keras
from keras import activations, constraints, initializers, ops, regularizers

_NOT_ELEMENTWISE = ("softmax", "log_softmax")


@ops.custom_gradient
def _p_relu(x, a):
    """`x + a * (relu(x) - x)` whose backward pass keeps only `x` (and `a`)."""

    def grad(*args, upstream=None):
        # TensorFlow and JAX pass the upstream gradient positionally, PyTorch
        # by keyword (see `keras.ops.custom_gradient`).
        g = args[0] if upstream is None else upstream
        dx = ops.where(x > 0, g, g * (1 - a))
        da = -ops.sum(g * ops.minimum(x, ops.zeros((), x.dtype)))
        return dx, da

    return x + a * (ops.relu(x) - x), grad


@keras.saving.register_keras_serializable(package="morphhr_tf")
class PActivation(keras.layers.Layer):
    """Parametric activation `y = (1 - a) * x + a * phi(x)` with a learned `a`.

    Wei et al. (ICML 2016) morph a network with any continuous non-linearity
    `phi` by inserting this layer with `a = 0`, where it is the identity, and
    letting training move `a` towards 1 (the plain activation). It is computed
    as `x + a * (phi(x) - x)`, so `a = 0` returns `x` bit for bit. `a` is one
    learned scalar per layer.

    Args:
        activation: a Keras activation name (`"relu"`, `"gelu"`, ...) or a
            registered callable. Must act element by element (not softmax).
        alpha_initializer: initializer of `a`. Defaults to `"zeros"`, the
            identity; use `"ones"` for the plain activation.
        alpha_regularizer: optional regularizer of `a`.
        alpha_constraint: optional constraint of `a`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Example:

    >>> import numpy as np
    >>> layer = PActivation("tanh")
    >>> x = np.linspace(-2.0, 2.0, 5, dtype="float32").reshape(1, 5)
    >>> bool(np.all(np.asarray(layer(x)) == x))
    True
    """

    def __init__(
        self,
        activation="relu",
        alpha_initializer="zeros",
        alpha_regularizer=None,
        alpha_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        if activation is None:
            raise ValueError(
                "PActivation needs an activation to interpolate towards. "
                "Received: activation=None. Pass a name such as 'relu'."
            )
        self.activation = activations.get(activation)
        name = getattr(self.activation, "__name__", "")
        if name in _NOT_ELEMENTWISE:
            raise ValueError(
                "PActivation needs an element-wise activation. "
                f"Received: activation={activation!r}. Use e.g. 'relu' or 'gelu'."
            )
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            shape=(),
            name="alpha",
            initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
        )

    def call(self, inputs):
        alpha = ops.cast(self.alpha, inputs.dtype)
        if self.activation is activations.relu:
            return _p_relu(inputs, alpha)
        return inputs + alpha * (self.activation(inputs) - inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": activations.serialize(self.activation),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": constraints.serialize(self.alpha_constraint),
            }
        )
        return config
