"""`keras.remat` that recomputes one slice of the batch at a time.

`keras.remat(fn)` keeps only `fn`'s inputs for the backward pass and
recomputes `fn` when the backward pass reaches it, but the recomputation
holds all of `fn`'s activations for the whole batch at once: for a segment at
full resolution that is as much memory as not recomputing at all, only later.
:func:`chunked_remat` recomputes `fn` and takes its gradient on `chunks`
slices of the batch, one after the other, so only one slice's activations are
alive at a time; the weight gradients are the sums over the slices.

This is exact only for a per-sample `fn`: output row `i` depends on input row
`i` alone, and a second call gives the same values (no batch statistics, no
random draws, no state updates). Convolutions, activations and pooling are;
batch norm in training mode is not. The gradients equal `fn`'s up to the
order in which the weight gradients are summed (float rounding).

Backends: TensorFlow (a custom gradient whose slices run in sequence under
control dependencies) and JAX (`jax.lax.map` over `jax.checkpoint`).
Elsewhere it is `keras.remat(fn)`, the whole batch at once.
"""

from __future__ import annotations

import keras


def chunked_remat(fn, chunks: int):
    """`fn` (tensors batched along axis 0 -> one tensor) recomputed in
    `chunks` slices of the batch in the backward pass.

    Args:
        fn: a per-sample function of one or more tensors with the same batch
            size, returning one tensor with that batch size.
        chunks: the number of slices (1: `keras.remat(fn)`). A batch that
            `chunks` does not divide is padded with zero rows for the
            recomputation (their gradients are exactly zero); a batch smaller
            than `chunks` gives slices of one row.

    Returns:
        A function with `fn`'s signature and values.
    """
    check_chunks(chunks)
    backend = keras.config.backend()
    if chunks == 1 or backend not in ("tensorflow", "jax"):
        return keras.remat(fn)
    if backend == "tensorflow":
        return _tensorflow(fn, chunks)
    return _jax(fn, chunks)


def check_chunks(chunks) -> int:
    """`chunks` if it is a positive integer, else a ValueError saying so."""
    if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1:
        raise ValueError(
            f"chunks must be a positive integer. Received: chunks={chunks!r}"
        )
    return chunks


def padded_slices(tensors, chunks: int):
    """``(batch, size, padded)`` for TensorFlow tensors with the same batch
    size: ``size`` rows per slice (at least 1) and the tensors padded with
    zero rows to ``size * chunks`` rows."""
    import tensorflow as tf

    batch = tf.shape(tensors[0])[0]
    size = tf.maximum((batch + chunks - 1) // chunks, 1)
    padded = [
        tf.pad(t, [[0, size * chunks - batch]] + [[0, 0]] * (t.shape.rank - 1))
        for t in tensors
    ]
    return batch, size, padded


def _tensorflow(fn, chunks: int):
    import tensorflow as tf

    @tf.custom_gradient
    def wrapped(*inputs):
        output = fn(*inputs)

        def grad(upstream, variables=None):
            variables = list(variables or [])
            batch, size, (dys, *xs) = padded_slices([upstream, *inputs], chunks)
            d_inputs = [[] for _ in inputs]
            d_vars = [None] * len(variables)
            previous = []
            for i in range(chunks):
                # Slice i starts after slice i-1's gradients exist, so that
                # only one slice's activations are alive at a time.
                with tf.control_dependencies(previous):
                    rows = slice(i * size, (i + 1) * size)
                    part = [tf.identity(t[rows]) for t in xs]
                    dy = tf.identity(dys[rows])
                with tf.GradientTape() as tape:
                    tape.watch(part)
                    y = fn(*part)
                grads = tape.gradient(
                    y, part + variables, output_gradients=dy,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )  # fmt: skip
                for acc, g in zip(d_inputs, grads[: len(part)]):
                    acc.append(g)
                d_vars = [
                    g if total is None else total + g
                    for total, g in zip(d_vars, grads[len(part) :])
                ]
                # Chained on the weight gradients: an input gradient that
                # nothing reads (an image's) is then pruned, not computed.
                previous = [g for g in d_vars if g is not None] or [
                    g for g in grads if g is not None
                ]
            d_inputs = [tf.concat(parts, 0)[:batch] for parts in d_inputs]
            return d_inputs, d_vars

        return output, grad

    return wrapped


def _jax(fn, chunks: int):
    """`keras.ops.map` over `keras.remat`: on JAX `jax.lax.map` over
    `jax.checkpoint`, whose backward pass is a sequential loop."""
    body = keras.remat(lambda part: fn(*part))

    def call(*inputs):
        batch = inputs[0].shape[0]  # static under JAX's tracing
        size = max(-(-batch // chunks), 1)
        rows = size * chunks
        xs = [
            keras.ops.reshape(
                keras.ops.pad(t, [(0, rows - batch)] + [(0, 0)] * (len(t.shape) - 1)),
                (chunks, size, *t.shape[1:]),
            )
            for t in inputs
        ]
        ys = keras.ops.map(body, xs)
        return keras.ops.reshape(ys, (rows, *ys.shape[2:]))[:batch]

    return call
