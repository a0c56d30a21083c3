"""The parametric activation (P-activation) of Network Morphism (Wei et al.)."""

from __future__ import annotations

import functools

import keras
from keras import activations, constraints, initializers, ops, regularizers

_NOT_ELEMENTWISE = ("softmax", "log_softmax")


def _p_relu_formula(x, a):
    """`(1 - a) * x + a * relu(x)` as `where(x > 0, x, (1 - a) * x)`: one
    multiply and a select, both exactly rounded, so an XLA kernel gives the
    same bits as the ops (`x - a * min(x, 0)` would let XLA fuse a
    multiply-add and round once where TensorFlow rounds twice); `a = 0`
    returns `x` bit for bit. The XLA kernel's form."""
    return ops.where(x > 0, x, (1 - a) * x)


def _p_relu_ops(x, a):
    """:func:`_p_relu_formula`'s bits in two element-wise ops instead of
    three (a select is slow as a separate op): with `s = 1 - a`, `s * x` is
    the larger of `x` and `s * x` exactly where `x <= 0` when `s <= 1`, and
    the smaller when `s > 1`."""
    s = 1 - a
    sx = s * x
    return ops.cond(s <= 1, lambda: ops.maximum(x, sx), lambda: ops.minimum(x, sx))


def _p_relu_backward(x, a, g):
    """The backward pass's element-wise work for upstream gradient `g`:
    `dx`, and the products whose sum, negated, is `a`'s gradient."""
    dx = ops.where(x > 0, g, g * (1 - a))
    return dx, g * ops.minimum(x, ops.zeros((), x.dtype))


@ops.custom_gradient
def _p_relu(x, a):
    """`(1 - a) * x + a * relu(x)` whose backward pass keeps only `x` (and `a`)."""

    def grad(*args, upstream=None):
        # TensorFlow and JAX pass the upstream gradient positionally, PyTorch
        # by keyword (see `keras.ops.custom_gradient`).
        dx, products = _p_relu_backward(x, a, args[0] if upstream is None else upstream)
        return dx, -ops.sum(products)

    return _p_relu_ops(x, a), grad


@functools.cache
def _xla_p_relu():
    """`_p_relu` for TensorFlow with its element-wise work XLA-compiled, the
    same numbers bit for bit: the forward pass is one kernel (one pass over
    `x`, where TensorFlow's ops make two), the backward pass one kernel for
    `dx` and the products `alpha`'s gradient sums, which TensorFlow then sums.
    (XLA on the CPU materializes a reduction's input, in float32 for bfloat16
    inputs, so the sum stays outside.) Built on first use, so importing the
    layer imports no TensorFlow."""
    import tensorflow as tf

    forward = tf.function(_p_relu_formula, jit_compile=True, reduce_retracing=True)
    backward = tf.function(_p_relu_backward, jit_compile=True, reduce_retracing=True)

    @tf.custom_gradient
    def p_relu(x, a):
        def grad(g):
            dx, products = backward(x, a, g)
            return dx, -tf.reduce_sum(products)

        return forward(x, a), grad

    return p_relu


@keras.saving.register_keras_serializable(package="morphhr_tf")
class PActivation(keras.layers.Layer):
    """Parametric activation `y = (1 - a) * x + a * phi(x)` with a learned `a`.

    Wei et al. (ICML 2016) morph a network with any continuous non-linearity
    `phi` by inserting this layer with `a = 0`, where it is the identity, and
    letting training move `a` towards 1 (the plain activation). It is computed
    as `x + a * (phi(x) - x)`, so `a = 0` returns `x` bit for bit. `a` is one
    learned scalar per layer.

    With `relu` it is computed as `where(x > 0, x, (1 - a) * x)` (still `x`
    bit for bit at `a = 0`), and the backward pass keeps only the input. On
    the TensorFlow backend a training call (`training=True`, as in `fit`)
    runs the forward pass, and the backward pass's element-wise work, each as
    one XLA-compiled kernel, with the same bits as TensorFlow's ops and fewer
    full-size passes (`a`'s gradient is summed by a TensorFlow op). Inference
    and the exported serving signatures use plain ops, so a served model
    needs no XLA.

    Args:
        activation: a Keras activation name (`"relu"`, `"gelu"`, ...) or a
            registered callable. Must act element by element (not softmax).
        alpha_initializer: initializer of `a`. Defaults to `"zeros"`, the
            identity; use `"ones"` for the plain activation.
        alpha_regularizer: optional regularizer of `a`.
        alpha_constraint: optional constraint of `a`.
        xla_kernels: with `relu` on the TensorFlow backend, run a training
            call's arithmetic as XLA kernels (default). `False` keeps
            TensorFlow's ops: the same numbers, slower, and in this
            project's CPU benchmark a little less peak memory
            (`docs/performance.md`). Other backends ignore it.
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
        xla_kernels=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(xla_kernels, bool):
            raise ValueError(
                f"xla_kernels must be True or False. Received: {xla_kernels!r}"
            )
        self.xla_kernels = xla_kernels
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

    def call(self, inputs, training=None):
        alpha = ops.cast(self.alpha, inputs.dtype)
        if self.activation is activations.relu:
            if training and self.xla_kernels and keras.config.backend() == "tensorflow":
                return _xla_p_relu()(inputs, alpha)
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
                "xla_kernels": self.xla_kernels,
            }
        )
        return config


def set_xla_kernels(model: keras.Model, enabled: bool) -> int:
    """Sets :class:`PActivation`'s `xla_kernels` on every P-activation among
    `model.layers` (the morphs and `build_morphhr` build flat models);
    returns how many it set."""
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False. Received: {enabled!r}")
    layers = [la for la in model.layers if isinstance(la, PActivation)]
    for layer in layers:
        layer.xla_kernels = enabled
    return len(layers)
