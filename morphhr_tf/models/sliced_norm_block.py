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
whole block). The forward pass, too, runs one slice of the batch at a time,
in two passes, so that no full-size tensor of the whole batch exists: the
first computes the conv and each slice's statistics (two passes around the
slice's rounded mean, as
:func:`~morphhr_tf.layers.lean_batch_normalization.batch_moments` takes
them, merged across slices as Chan et al. merge partial variances) and the
two kernel-sized sums; the second computes the conv again, normalizes,
pools and finds the windows' maxima. Its statistics are summed in another
order than the layers', so the outputs agree to float32 rounding (1e-6
relative), not bit for bit. It updates the moving statistics once.

It is a training view of existing layers, whose variables it shares:
:func:`~morphhr_tf.models.rematerialize.recompute_front` builds it.
TensorFlow only; on other backends, in inference, or with one slice, it
calls the four layers as they are.
"""

from __future__ import annotations

import functools

import keras
from keras import ops

from morphhr_tf.layers.lean_batch_normalization import (
    BatchMoments,
    LeanBatchNormalization,
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
        chunks: slices of the batch the forward pass computes the conv, batch
            norm and pool in (twice: statistics, then outputs), and the
            backward pass makes the full-size gradient in (and recomputes
            the conv in, for an input gradient).
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

    def slices(x):
        """``(batch, [(x_i, rows_i)])``: ``chunks`` equal slices of `x`,
        padded with zero rows, and how many rows of each are real.
        (Equal and never empty: TensorFlow's CPU conv returns its input
        unchanged for an empty batch.)"""
        batch, size, (xs,) = padded_slices([x], chunks)
        return batch, [
            (xs[i * size : (i + 1) * size], tf.clip_by_value(batch - i * size, 0, size))
            for i in range(chunks)
        ]

    def in_turn(tensors, previous):
        """`tensors` once `previous` is done: the slices run one at a time,
        so only one slice's full-size tensors are alive."""
        with tf.control_dependencies(previous):
            return [tf.identity(t) for t in tensors]

    def statistics(kernel, ranges):
        """Pass 1, slice by slice: the batch's moments (each slice's, in two
        passes around its own rounded mean as `batch_moments` takes them,
        merged as Chan et al. merge partial variances) and the kernel
        gradient's two sums that need no upstream gradient: the patches'
        sums against ``d = h - shift`` and against 1."""
        parts, done = [], []
        for x_i, rows_i in ranges:
            (x_i,) = in_turn([x_i], done)
            h_i = convolve(x_i, kernel)
            # The padded rows' conv output is 0 (no bias): no sum counts them.
            real = tf.reshape(tf.range(tf.shape(h_i)[0]) < rows_i, [-1, 1, 1, 1])
            count_i = ops.cast(rows_i * tf.reduce_prod(tf.shape(h_i)[1:3]), "float32")
            safe = ops.maximum(count_i, 1.0)
            shift_i = ops.cast(channel_sum(h_i) / safe, h_i.dtype)
            centred = tf.where(real, h_i - shift_i, tf.zeros([], h_i.dtype))
            total_i = channel_sum(centred)
            squares_i = channel_sum(centred * centred)
            with_d_i = tf.cast(kernel_sum(x_i, centred, centred.shape[-1]), "float32")
            ones = tf.ones_like(h_i[..., :1], "float32")  # one per position
            patches_i = kernel_sum(tf.cast(x_i, "float32"), ones, 1)
            mean_i = ops.cast(shift_i, "float32") + total_i / safe
            m2_i = ops.maximum(squares_i - total_i * total_i / safe, 0.0)
            parts.append((count_i, mean_i, m2_i, shift_i, with_d_i, patches_i))
            done = [with_d_i, patches_i, m2_i]
        count = sum(p[0] for p in parts)
        mean = sum(p[0] * p[1] for p in parts) / count
        m2 = sum(p[2] + p[0] * ops.square(p[1] - mean) for p in parts)
        variance = m2 / count
        shift = ops.cast(mean, dtype)
        delta = mean - ops.cast(shift, "float32")
        moments = BatchMoments(
            shift, delta, mean, variance, ops.rsqrt(variance + norm.epsilon), count
        )
        patch_sum = sum(p[5] for p in parts)
        # sum(patch * (h - shift)) = sum(patch * (h - shift_i))
        #                            + (shift_i - shift) * sum(patch)
        with_d = sum(
            p[4] + p[5] * (ops.cast(p[3], "float32") - ops.cast(shift, "float32"))
            for p in parts
        )
        return moments, with_d, patch_sum

    @tf.custom_gradient
    def block(x, kernel, gamma, beta):
        batch, ranges = slices(x)
        moments, with_d, patch_sum = statistics(kernel, ranges)
        # Pass 2, slice by slice: the conv again, batch norm, ReLU and max
        # pool, and per window which position the max pool sends its
        # gradient to (8 bits) and the centred conv output there (a quarter
        # of the conv output each).
        outputs, where_max, at_max, done = [], [], [], [with_d, patch_sum]
        for x_i, _ in ranges:
            (x_i,) = in_turn([x_i], done)
            h_i = convolve(x_i, kernel)
            z_i = normalized(h_i, gamma, beta, moments)
            out_i = pool(ops.relu(z_i))
            index_i, at_i = _window_maxima(window)(z_i, out_i, h_i, moments.shift)
            outputs.append(out_i)
            where_max.append(index_i)
            at_max.append(at_i)
            done = [out_i, index_i, at_i]
        outputs, where_max, at_max = (
            tf.concat(t, 0)[:batch] for t in (outputs, where_max, at_max)
        )
        full_size = tf.shape(h_i)[1:3]  # (the backward pass must not read h)

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
                x_i, p_i, w_i = in_turn(
                    [t[i * size : (i + 1) * size] for t in (xs, ps, ws)],
                    [] if with_g is None else [with_g],
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
    last; the ReLU stops the gradient there anyway. One fused pass, where
    TensorFlow's strided slices of a quarter cost as much as the whole
    block."""
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
