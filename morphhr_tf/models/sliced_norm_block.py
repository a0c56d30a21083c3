"""Conv, batch norm, ReLU and max pool, trained keeping only pooled tensors.

The detail branch's first block runs a 3x3 conv and batch norm on 16
channels at full resolution, then its first max pool and a ReLU (the ReLU
may also come before the pool: the same function). Trained as it is, the
backward pass keeps the conv's output (for the batch norm) and the max
pool's full-resolution input: at 896 px, batch 16, bfloat16, 0.4 GB each per
detector, the largest tensors of MorphHR. Batch norm's statistics span the whole
batch, so :func:`~morphhr_tf.models.chunked_remat.chunked_remat` cannot
recompute the block slice by slice. :class:`SlicedNormBlock` needs no
recomputation for the kernel gradient. It keeps its input, its output (which
the next layer keeps anyway), the batch's per-channel statistics and, per
pooling window, which position holds the maximum (8 bits) and the centred
conv output ``d = h - shift`` there (each a quarter of the conv output's
size), plus two kernel-sized sums taken in the forward pass. Its backward
pass then:

1. sums, over the whole batch, the two per-channel sums the batch norm's
   gradient needs (of the upstream gradient, and of its product with `d`),
   from those pooled tensors alone: the max pool sends each window's
   gradient to its maximum, and the ReLU passes it where that maximum is
   positive;
2. writes the batch norm's input gradient as ``g * scale - d * k + c``
   (per-channel `scale`, `k`, `c`; `g` the upstream gradient at each
   window's maximum, zero elsewhere), so the conv's kernel gradient, a sum
   over positions of input patch times gradient, is ``scale`` times the
   patches' sum against `g` (made full-size and summed one slice of the
   batch at a time), minus ``k`` times their sum against `d` (taken in the
   forward pass), plus ``c`` times their plain sum;
3. for the input gradient, which needs `d` everywhere, recomputes the conv
   one slice at a time. Nothing reads it when the block's input is the
   image (the detail branch), and the graph then prunes it.

Which position holds a window's maximum is found by one XLA-compiled pass
(TensorFlow's strided slices of a quarter of the tensor cost as much as the
whole block). The forward pass is the layers' own arithmetic
(:mod:`morphhr_tf.layers.lean_batch_normalization`'s functions) for the
whole batch, and updates the moving statistics once. It is a training view
of existing layers, whose variables it shares:
:func:`~morphhr_tf.models.rematerialize.recompute_front` builds it.
TensorFlow only; on other backends, in inference, or with one slice, it
calls the four layers as they are.
"""

from __future__ import annotations

import functools

import keras
from keras import ops

from morphhr_tf.layers.lean_batch_normalization import (
    LeanBatchNormalization,
    batch_moments,
    channel_sum,
    input_gradient,
    input_gradient_coefficients,
    normalized,
    parameter_gradients,
)
from morphhr_tf.models.chunked_remat import check_chunks, padded_slices


def check_block(conv, norm, relu, pool) -> None:
    """A ValueError naming what differs unless the four layers are a
    bias-free stride-1 `Conv2D`, a channels-last `LeanBatchNormalization`
    with the lean training step, a ReLU `Activation` and a `MaxPooling2D`
    whose windows do not overlap."""
    problems = []
    if not isinstance(conv, keras.layers.Conv2D) or conv.use_bias:
        problems.append(f"{conv.name!r} is not a Conv2D without bias")
    elif tuple(conv.strides) != (1, 1) or conv.data_format != "channels_last":
        problems.append(f"{conv.name!r} is not stride 1, channels last")
    if not isinstance(norm, LeanBatchNormalization) or norm.axis not in (-1, 3):
        problems.append(f"{norm.name!r} is not a channels-last LeanBatchNormalization")
    elif norm.renorm or norm.synchronized or norm.compute_dtype == "float16":
        problems.append(f"{norm.name!r} runs Keras' own training step")
    if not isinstance(relu, keras.layers.Activation) or (
        keras.activations.serialize(relu.activation) != "relu"
    ):
        problems.append(f"{relu.name!r} is not a ReLU Activation")
    if not isinstance(pool, keras.layers.MaxPooling2D) or (
        tuple(pool.strides) != tuple(pool.pool_size) or pool.padding != "valid"
    ):
        problems.append(
            f"{pool.name!r} is not a MaxPooling2D with disjoint windows "
            "(strides = pool_size, valid padding)"
        )
    elif pool.pool_size[0] * pool.pool_size[1] > 256:
        problems.append(
            f"{pool.name!r} has windows of {pool.pool_size[0] * pool.pool_size[1]} "
            "positions: at most 256 (the block keeps each window's maximum "
            "position in 8 bits)"
        )
    if problems:
        raise ValueError(
            "SlicedNormBlock needs conv -> LeanBatchNormalization -> ReLU -> "
            f"max pool. Received: {'; '.join(problems)}."
        )


@keras.saving.register_keras_serializable(package="morphhr_tf")
class SlicedNormBlock(keras.layers.Layer):
    """`pool(relu(norm(conv(x))))` trained keeping only pooled tensors.

    Args:
        conv, norm, relu, pool: the block's layers (see :func:`check_block`),
            called as shared layers: their variables are the view's.
        chunks: slices of the batch the backward pass makes the full-size
            gradient in (and recomputes the conv in, for an input gradient).
        **kwargs: base layer keyword arguments, such as `name`.
    """

    def __init__(self, conv, norm, relu, pool, chunks: int = 4, **kwargs):
        super().__init__(**kwargs)
        check_block(conv, norm, relu, pool)
        self.conv, self.norm, self.relu, self.pool = conv, norm, relu, pool
        self.chunks = check_chunks(chunks)

    def call(self, inputs, training=None):
        sliced = (
            training
            and self.chunks > 1
            and self.norm.trainable
            and keras.config.backend() == "tensorflow"
        )
        if not sliced:
            x = self.norm(self.conv(inputs), training=training)
            return self.pool(self.relu(x))
        outputs, mean, variance = _tensorflow_block(
            self.conv, self.norm, self.pool, self.chunks
        )(
            ops.cast(inputs, self.conv.compute_dtype),
            ops.cast(self.conv.kernel, "float32"),
            *self.norm.coefficients(),
        )
        self.norm.update_moving_statistics(mean, variance)
        return outputs

    def compute_output_spec(self, inputs, training=None):
        return self.pool.compute_output_spec(self.conv.compute_output_spec(inputs))

    def get_config(self):
        config = super().get_config()
        for key in ("conv", "norm", "relu", "pool"):
            config[key] = keras.saving.serialize_keras_object(getattr(self, key))
        config["chunks"] = self.chunks
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("conv", "norm", "relu", "pool"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _tensorflow_block(conv, norm, pool, chunks: int):
    """`f(x, kernel, gamma, beta) -> (pool output, batch mean, batch
    variance)` with the pooled backward pass (the statistics get no
    gradient)."""
    import tensorflow as tf

    dtype = conv.compute_dtype
    window = tuple(pool.pool_size)
    padding = conv.padding.upper()
    dilations = [1, *conv.dilation_rate, 1]

    def convolve(x, kernel):
        return ops.conv(
            x, ops.cast(kernel, dtype), strides=1, padding=conv.padding,
            data_format="channels_last", dilation_rate=conv.dilation_rate,
        )  # fmt: skip

    def kernel_sum(x, out_backprop, channels):
        """Sum over output positions of the conv's input patch times
        `out_backprop`: the kernel gradient for that upstream gradient."""
        return tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=[*conv.kernel_size, x.shape[-1], channels],
            out_backprop=out_backprop, strides=[1, 1, 1, 1], padding=padding,
            dilations=dilations,
        )  # fmt: skip

    @tf.custom_gradient
    def block(x, kernel, gamma, beta):
        h = convolve(x, kernel)
        moments = batch_moments(h, norm.epsilon)
        z = normalized(h, gamma, beta, moments)
        outputs = pool(ops.relu(z))
        # Per window: which position the max pool sends its gradient to
        # (8 bits) and the centred conv output there; a quarter of h each.
        where_max, at_max = _window_maxima(window)(z, outputs, h, moments.shift)
        # The kernel gradient's terms that do not depend on the upstream
        # gradient: the patches' sums against d = h - shift and against 1
        # (d made once z is gone: two full-size tensors at a time).
        with tf.control_dependencies([where_max, at_max]):
            d = h - moments.shift
        with_d = tf.cast(kernel_sum(x, d, d.shape[-1]), "float32")
        ones = tf.ones_like(h[..., :1], "float32")  # one per output position
        patch_sum = kernel_sum(tf.cast(x, "float32"), ones, 1)
        full_size = tf.shape(h)[1:3]  # (the backward pass must not read h)

        def grad(dp, *unused, variables=None):
            del unused  # the statistics' upstream gradients: none flows back
            # 1. The batch-wide sums, over the windows whose maximum is
            #    positive (elsewhere the ReLU stops the gradient).
            passed = dp * ops.cast(outputs > 0, dp.dtype)
            sums = (channel_sum(passed), channel_sum(passed * at_max))
            d_gamma, d_beta = parameter_gradients(sums, moments)
            # 2. The batch norm's input gradient is g * scale - d * k + c,
            #    with g the pooled gradient at each window's maximum, so the
            #    conv's kernel gradient is that sum's three terms.
            scale, k, c = input_gradient_coefficients(gamma, moments, d_gamma, d_beta)
            # The routed gradient is full-size: made and summed a slice of
            # the batch at a time (padded rows route nothing). The input
            # gradient needs d everywhere: the conv is recomputed per slice.
            # Nothing reads it when the input is the image, and the graph
            # then prunes it.
            batch, size, (xs, ps, ws) = padded_slices([x, passed, where_max], chunks)
            with_g, d_x = None, []
            for i in range(chunks):
                with tf.control_dependencies([] if with_g is None else [with_g]):
                    x_i, p_i, w_i = (
                        tf.identity(t[i * size : (i + 1) * size]) for t in (xs, ps, ws)
                    )
                g_i = _unpool(p_i, w_i, window, full_size)
                part = tf.cast(kernel_sum(x_i, g_i, g_i.shape[-1]), "float32")
                with_g = part if with_g is None else with_g + part
                with tf.GradientTape() as tape:
                    tape.watch(x_i)
                    h_i = convolve(x_i, kernel)
                dh_i = input_gradient(
                    g_i, h_i - moments.shift, gamma, moments, d_gamma, d_beta
                )
                d_x.append(tape.gradient(h_i, x_i, output_gradients=dh_i))
            d_kernel = with_g * scale - with_d * k + patch_sum * c
            grads = [tf.concat(d_x, 0)[:batch], d_kernel, d_gamma, d_beta]
            if variables:  # none is read inside; TensorFlow may still list some
                return grads, [tf.zeros_like(v) for v in variables]
            return grads

        return (outputs, moments.mean, moments.variance), grad

    return block


@functools.cache
def _window_maxima(window: tuple[int, int]):
    """An XLA-compiled `f(z, pooled, h, shift) -> (index, at)`: per pooling
    window (disjoint `window`s), the row-major index (uint8) of the first
    position where `z` equals `pooled`, and `h - shift` there. The max
    pool's gradient goes to that position. Where `pooled` is no value of the
    window (ReLU-clipped zeros of an all-negative window) the index is the
    last; the ReLU stops the gradient there anyway. One fused pass, where TensorFlow's strided
    slices of a quarter cost as much as the whole block."""
    import tensorflow as tf

    ph, pw = window

    def maxima(z, pooled, h, shift):
        _, rows, cols, channels = tf.unstack(tf.shape(pooled))
        shape = [-1, rows, ph, cols, pw, channels]
        z = tf.reshape(z[:, : rows * ph, : cols * pw], shape)
        d = tf.reshape(h[:, : rows * ph, : cols * pw], shape) - shift
        index = tf.fill(tf.shape(pooled), tf.constant(ph * pw - 1, tf.uint8))
        at = d[:, :, ph - 1, :, pw - 1, :]
        for n in range(ph * pw - 2, -1, -1):
            i, j = divmod(n, pw)
            first = z[:, :, i, :, j, :] == pooled
            index = tf.where(first, tf.constant(n, tf.uint8), index)
            at = tf.where(first, d[:, :, i, :, j, :], at)
        return index, at

    return tf.function(maxima, jit_compile=True)


def _unpool(pooled, index, window, full_size):
    """The full-size tensor (`full_size` rows and columns) holding each
    window's value of `pooled` at the position `index` names
    (:func:`_window_maxima`'s), zero elsewhere (rows and columns past the
    last whole window included)."""
    import tensorflow as tf

    ph, pw = window
    zero = tf.zeros([], pooled.dtype)
    parts = [tf.where(index == n, pooled, zero) for n in range(ph * pw)]
    n, rows, cols, channels = tf.unstack(tf.shape(pooled))
    # [n, rows, cols, ph * pw, channels] -> [n, rows, ph, cols, pw, channels]
    stacked = tf.reshape(tf.stack(parts, axis=3), [n, rows, cols, ph, pw, channels])
    full = tf.reshape(
        tf.transpose(stacked, [0, 1, 3, 2, 4, 5]), [n, rows * ph, cols * pw, channels]
    )
    missing = full_size - [rows * ph, cols * pw]
    return tf.pad(full, [[0, 0], [0, missing[0]], [0, missing[1]], [0, 0]])
