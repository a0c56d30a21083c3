"""Conv, batch norm, ReLU and max pool, recomputed one slice of the batch at a time.

The detail branch's first block runs a 3x3 conv and batch norm on 16
channels at full resolution, then its first max pool and a ReLU (the ReLU
may also come before the pool: the same function). Trained as it is, the
backward pass keeps the conv's output (for the batch norm) and the max
pool's full-resolution input: at 896 px, batch 16, bfloat16, 0.4 GB each per
detector, the largest tensors of MorphHR. Batch norm's statistics span the whole
batch, so :func:`~morphhr_tf.models.chunked_remat.chunked_remat` cannot
recompute the block slice by slice. :class:`SlicedNormBlock` can. It keeps
its input, its output (which the next layer keeps anyway), the batch's
per-channel statistics and, per pooling window, the centred conv output at
the window's maximum (a quarter of the conv output's size). Its backward
pass then:

1. sums, over the whole batch, the two per-channel sums the batch norm's
   gradient needs (the gradient of the upstream gradient's sum and of its
   product with the centred input), from those pooled tensors alone: the
   max pool sends each window's gradient to its maximum, and the ReLU passes
   it where that maximum is positive;
2. per slice of the batch, in turn: recomputes the conv, batch norm and ReLU,
   routes the upstream gradient through the max pool and the ReLU, and takes
   the batch norm's input gradient (from the whole batch's sums), then the
   conv's input and kernel gradients; the kernel gradient is summed over the
   slices in float32.

The forward pass is the layers' own arithmetic
(:mod:`morphhr_tf.layers.lean_batch_normalization`'s functions) for the
whole batch, and updates the moving statistics once. It is a training view
of existing layers, whose variables it shares:
:func:`~morphhr_tf.models.rematerialize.recompute_front` builds it.
TensorFlow only; on other backends, in inference, or with one slice, it
calls the four layers as they are.
"""

from __future__ import annotations

import keras
from keras import ops

from morphhr_tf.layers.lean_batch_normalization import (
    LeanBatchNormalization,
    batch_moments,
    channel_sum,
    input_gradient,
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
    if problems:
        raise ValueError(
            "SlicedNormBlock needs conv -> LeanBatchNormalization -> ReLU -> "
            f"max pool. Received: {'; '.join(problems)}."
        )


@keras.saving.register_keras_serializable(package="morphhr_tf")
class SlicedNormBlock(keras.layers.Layer):
    """`pool(relu(norm(conv(x))))` with a backward pass in slices of the batch.

    Args:
        conv, norm, relu, pool: the block's layers (see :func:`check_block`),
            called as shared layers: their variables are the view's.
        chunks: slices of the batch the backward pass recomputes the block in.
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
    variance)` with the sliced backward pass (the statistics get no
    gradient)."""
    import tensorflow as tf

    dtype = conv.compute_dtype
    window = [1, *pool.pool_size, 1]
    step = [1, *pool.strides, 1]

    def convolve(x, kernel):
        return ops.conv(
            x, ops.cast(kernel, dtype), strides=1, padding=conv.padding,
            data_format="channels_last", dilation_rate=conv.dilation_rate,
        )  # fmt: skip

    @tf.custom_gradient
    def block(x, kernel, gamma, beta):
        h = convolve(x, kernel)
        moments = batch_moments(h, norm.epsilon)
        outputs = pool(ops.relu(normalized(h, gamma, beta, moments)))
        # Each window's gradient goes to its maximum, where the batch norm's
        # output is largest, i.e. where sign(scale) * (h - shift) is: keep
        # that (h - shift) per window, a quarter of h's size, for the sums.
        sign = ops.cast(ops.where(gamma * moments.inv >= 0, 1.0, -1.0), dtype)
        at_max = sign * pool(sign * (h - moments.shift))

        def grad(dp, *unused, variables=None):
            del unused  # the statistics' upstream gradients: none flows back
            # 1. The batch-wide sums, over the windows whose maximum is
            #    positive (elsewhere the ReLU stops the gradient).
            passed = dp * ops.cast(outputs > 0, dp.dtype)
            sums = (channel_sum(passed), channel_sum(passed * at_max))
            d_gamma, d_beta = parameter_gradients(sums, moments)
            # 2. Per slice: the block recomputed, the batch norm's input
            #    gradient, then the conv's input and kernel gradients.
            # Padded rows are zero images: the bias-free conv's kernel
            # gradient gets nothing from them, and their rows are dropped.
            batch, size, (xs, dps, ps) = padded_slices([x, dp, outputs], chunks)
            d_x, d_kernel, previous = [], None, [d_gamma, d_beta]
            for i in range(chunks):
                with tf.control_dependencies(previous):
                    x_i, dp_i, p_i = (
                        tf.identity(t[i * size : (i + 1) * size]) for t in (xs, dps, ps)
                    )
                with tf.GradientTape() as tape:
                    tape.watch([x_i, kernel])
                    h_i = convolve(x_i, kernel)
                z_i = ops.relu(normalized(h_i, gamma, beta, moments))
                g_i = tf.raw_ops.ReluGrad(
                    gradients=tf.raw_ops.MaxPoolGrad(
                        orig_input=z_i, orig_output=p_i, grad=dp_i, ksize=window,
                        strides=step, padding=pool.padding.upper(),
                    ),
                    features=z_i,
                )  # fmt: skip
                d_i = h_i - moments.shift
                dh_i = input_gradient(g_i, d_i, gamma, moments, d_gamma, d_beta)
                dx_i, dk_i = tape.gradient(h_i, [x_i, kernel], output_gradients=dh_i)
                d_x.append(dx_i)
                d_kernel = dk_i if d_kernel is None else d_kernel + dk_i
                # Chained on the kernel gradient: the input gradient, which
                # nothing reads when the input is the image, is pruned.
                previous = [d_kernel]
            grads = [tf.concat(d_x, 0)[:batch], d_kernel, d_gamma, d_beta]
            if variables:  # none is read inside; TensorFlow may still list some
                return grads, [tf.zeros_like(v) for v in variables]
            return grads

        return (outputs, moments.mean, moments.variance), grad

    return block
