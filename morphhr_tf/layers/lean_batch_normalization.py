"""Batch normalization whose training step keeps only its input for backward.

Keras' ``BatchNormalization`` computes in float32 under a mixed-precision
policy: it casts its input to float32, and automatic differentiation keeps
float32 intermediates of the same size for the backward pass. At full
resolution (the detail branch's first blocks: 896 x 896 x 16 per image;
ResNet18's stem at 896 px: 448 x 448 x 64) those are the largest tensors of
the whole model. :class:`LeanBatchNormalization` computes the same function
with the per-channel statistics and coefficients in float32 and the full-size
arithmetic in the input's dtype, and writes out its gradient, so the backward
pass keeps only the input.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import ops


def channel_sum(t):
    """Per-channel (last axis) float32 sum of `t`, without a full-size float32
    copy: for rank >= 3 the second-to-last axis is summed first in `t`'s dtype
    (the backends accumulate bfloat16 reductions in float32 and round each
    partial sum once), then the partial sums in float32."""
    axes = tuple(range(len(t.shape) - 1))
    if len(t.shape) >= 3:
        t = ops.sum(t, axis=-2)
        axes = axes[:-1]
    return ops.sum(ops.cast(t, "float32"), axis=axes)


@keras.saving.register_keras_serializable(package="morphhr_tf")
class LeanBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a lean training step.

    In training mode (batch statistics), for the default channels-last layout
    without renorm, synchronisation or mask, it normalizes as Keras does but:

    - the batch mean and variance are float32 sums of partial sums taken in
      the input's dtype, around a first mean rounded to that dtype (two
      passes), so no full-size float32 tensor is made and their error scales
      with the spread of the values, not with their mean;
    - the output is ``(x - m) * scale + offset`` in the input's dtype, with
      ``m`` the mean in that dtype and ``scale``, ``offset`` per-channel
      coefficients computed in float32;
    - its gradient is written out (the textbook batch-norm gradient), so the
      backward pass keeps only ``x`` and per-channel vectors.

    In float32 it agrees with Keras' layer to rounding; in bfloat16 to a few
    units in the last place of the output. The moving statistics are updated
    once per call, exactly as Keras does. Inference, a float16 policy (whose
    partial sums could overflow) and every other case run Keras' own code,
    unchanged.

    Args:
        **kwargs: those of ``keras.layers.BatchNormalization``.
    """

    def _lean_applies(self, inputs, mask) -> bool:
        # float16's range would overflow the partial sums (bfloat16 has
        # float32's exponent range): Keras' float32 code runs for it.
        return (
            self.compute_dtype != "float16"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) >= 2
            and self.axis in (-1, len(inputs.shape) - 1)
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._lean_applies(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, self.compute_dtype)
        moments = batch_moments(x, self.epsilon)
        self.update_moving_statistics(moments.mean, moments.variance)
        gamma, beta = self.coefficients()

        @ops.custom_gradient
        def normalize(x, gamma, beta):
            y = normalized(x, gamma, beta, moments)

            def grad(*args, upstream=None):
                # TensorFlow and JAX pass the upstream gradient positionally,
                # PyTorch by keyword (see `keras.ops.custom_gradient`).
                g = args[0] if upstream is None else upstream
                d = x - moments.shift
                sums = gradient_sums(g, d)
                d_gamma, d_beta = parameter_gradients(sums, moments)
                dx = input_gradient(g, d, gamma, moments, d_gamma, d_beta)
                return dx, d_gamma, d_beta

            return y, grad

        return normalize(x, gamma, beta)

    def update_moving_statistics(self, mean, variance) -> None:
        """Moves the moving mean and variance towards a batch's (once per
        training call, as Keras' layer does)."""
        momentum = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, "float32") * momentum + mean * (1.0 - momentum)
        )
        self.moving_variance.assign(
            ops.cast(self.moving_variance, "float32") * momentum
            + variance * (1.0 - momentum)
        )

    def coefficients(self):
        """`(gamma, beta)` as float32 vectors (ones / zeros when the layer
        has no scale / no center)."""
        channels = ops.shape(self.moving_mean)
        gamma = ops.cast(self.gamma, "float32") if self.scale else ops.ones(channels)
        beta = ops.cast(self.beta, "float32") if self.center else ops.zeros(channels)
        return gamma, beta


class BatchMoments(NamedTuple):
    """A batch's per-channel statistics, as :func:`batch_moments` takes them.

    ``shift``: a first mean in the input's dtype; ``delta``: the float32
    mean of ``x - shift``; ``mean``, ``variance``: float32; ``inv``:
    ``rsqrt(variance + epsilon)``; ``count``: values per channel (float32).
    """

    shift: Any
    delta: Any
    mean: Any
    variance: Any
    inv: Any
    count: Any


def batch_moments(x, epsilon: float) -> BatchMoments:
    """Per-channel (last axis) statistics of `x`, in two passes around a first
    mean rounded to `x`'s dtype, with sums of partial sums (no full-size
    float32 tensor); no gradient flows through them."""
    held = ops.stop_gradient(x)
    count = ops.cast(ops.size(held) // ops.shape(held)[-1], "float32")
    # A first mean, in x's dtype; the sums around it are small, so the
    # mean and variance are accurate to the spread, not to the mean.
    shift = ops.cast(channel_sum(held) / count, held.dtype)
    centred = held - shift
    delta = channel_sum(centred) / count
    variance = ops.maximum(
        channel_sum(centred * centred) / count - ops.square(delta), 0.0
    )
    mean = ops.cast(shift, "float32") + delta
    return BatchMoments(
        shift, delta, mean, variance, ops.rsqrt(variance + epsilon), count
    )


def normalized(x, gamma, beta, moments: BatchMoments):
    """``(x - shift) * scale + offset`` in `x`'s dtype: batch norm's output."""
    scale = gamma * moments.inv
    offset = beta - moments.delta * scale
    dtype = x.dtype
    return (x - moments.shift) * ops.cast(scale, dtype) + ops.cast(offset, dtype)


def gradient_sums(g, d):
    """``(sum(g), sum(g * d))`` per channel, float32, with `d` the centred
    input ``x - shift``: the batch-wide sums the input gradient needs (add
    them up over slices of a batch)."""
    g = ops.cast(g, d.dtype)
    return channel_sum(g), channel_sum(g * d)


def parameter_gradients(sums, moments: BatchMoments):
    """``(d_gamma, d_beta)`` from :func:`gradient_sums` over the whole batch."""
    d_beta, g_d = sums
    # sum(g * xhat), xhat = (d - delta) * inv.
    return moments.inv * (g_d - moments.delta * d_beta), d_beta


def input_gradient_coefficients(gamma, moments: BatchMoments, d_gamma, d_beta):
    """Per-channel float32 `(scale, k, c)` of the input gradient
    ``g * scale - d * k + c`` (see :func:`input_gradient`): it is affine in
    the upstream gradient `g` and the centred input `d`."""
    scale = gamma * moments.inv
    count, delta, inv = moments.count, moments.delta, moments.inv
    # dx = scale * (g - d_beta / n - xhat * d_gamma / n).
    k = scale * inv * d_gamma / count
    c = scale * (delta * inv * d_gamma - d_beta) / count
    return scale, k, c


def input_gradient(g, d, gamma, moments: BatchMoments, d_gamma, d_beta):
    """The gradient with respect to the input `x`, from `d = x - shift` (any
    slice of the batch, given the whole batch's `d_gamma`, `d_beta`), in
    `x`'s dtype."""
    dtype = d.dtype
    g = ops.cast(g, dtype)
    scale, k, c = input_gradient_coefficients(gamma, moments, d_gamma, d_beta)
    dx = g * ops.cast(scale, dtype) - d * ops.cast(k, dtype)
    return dx + ops.cast(c, dtype)
