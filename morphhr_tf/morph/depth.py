"""Depth morph: an identity-initialized layer plus a P-activation."""

from __future__ import annotations

import keras
import numpy as np

from morphhr_tf.layers import PActivation
from morphhr_tf.morph import weight_maps
from morphhr_tf.morph.graph import Graph, describe, input_name, rebuild, unique_name


def deepen(
    model: keras.Model,
    after_layer_name: str,
    *,
    activation: str = "relu",
    kernel_size: int = 3,
    batch_norm: bool = False,
) -> keras.Model:
    """Returns a copy of `model` with a new identity block after a layer.

    On a 4-D (`(N, H, W, C)`) output the block is a same-padded
    `Conv2D(C, kernel_size)` with a delta kernel; on a 2-D `(N, C)` output it
    is a `Dense(C)` with an identity kernel. Optionally a
    `BatchNormalization` follows, set to the identity at inference
    (`gamma = 1, beta = 0, mean = 0, variance = 1 - epsilon`). Last comes
    `PActivation(activation)` with `a = 0`, the identity, so the morph is
    exact for every activation, not only idempotent ones such as ReLU (Wei et
    al. 2016; Net2DeeperNet of Chen et al. 2016 needs ReLU). Every consumer of
    the layer's output (and the model output, if it is one) then reads the new
    block.

    New layers are named `{after_layer_name}_deepen_conv` (or `_dense`),
    `_bn` and `_act` (with a `_2`, `_3`, ... suffix if taken), and use the
    dtype policy of `after_layer_name`.

    The morph is exact in inference mode. In training mode the new
    `BatchNormalization` uses batch statistics, so outputs differ.

    Args:
        model: a flat functional model (left untouched).
        after_layer_name: the layer (or input layer) after which to insert.
        activation: the P-activation's target activation: a Keras activation
            name or registered element-wise callable.
        kernel_size: odd size of the new conv (ignored for 2-D tensors).
        batch_norm: whether to add an identity `BatchNormalization`.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: on bad arguments, or if the layer's output is not a
            single 2-D or 4-D tensor with a known channel count.

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> x = keras.layers.Dense(3, name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="out")(x))
    >>> deeper = deepen(model, "hidden", activation="tanh")
    >>> [layer.name for layer in deeper.layers][2:4]
    ['hidden_deepen_dense', 'hidden_deepen_act']
    """
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, (int, np.integer))
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(
            "kernel_size must be a positive odd integer (an identity conv needs "
            f"a centre tap). Received: kernel_size={kernel_size!r}"
        )
    # Validates the activation (an error names it) before touching the graph.
    PActivation(activation)
    graph = Graph(model)
    inputs_by_name = {input_name(t): t for t in model.inputs}
    if after_layer_name in inputs_by_name:
        tensor = inputs_by_name[after_layer_name]
        policy = keras.config.dtype_policy()
    else:
        call = graph.call_of(after_layer_name)
        if len(call.outputs) != 1:
            raise ValueError(
                f"deepen needs a layer with one output. Received: "
                f"after_layer_name={after_layer_name!r}, {describe(call.layer)} "
                f"with {len(call.outputs)} outputs."
            )
        tensor = call.outputs[0]
        policy = call.layer.dtype_policy
    rank, channels = len(tensor.shape), tensor.shape[-1]
    if rank not in (2, 4) or channels is None:
        raise ValueError(
            f"deepen supports 2-D (N, C) and 4-D (N, H, W, C) outputs with a "
            f"known channel count. Received: after_layer_name={after_layer_name!r}"
            f" with output shape {tuple(tensor.shape)}."
        )

    names = {layer.name for layer in model.layers}
    base = unique_name(
        lambda n: any(name.startswith(f"{n}_") for name in names),
        f"{after_layer_name}_deepen",
    )
    new_layers, weights = [], {}
    if rank == 4:
        kernel = weight_maps.identity_conv_kernel((kernel_size, kernel_size), channels)
        linear = keras.layers.Conv2D(
            channels,
            kernel_size,
            padding="same",
            use_bias=not batch_norm,
            dtype=policy,
            name=f"{base}_conv",
        )
    else:
        kernel = np.eye(channels, dtype=np.float32)
        linear = keras.layers.Dense(
            channels, use_bias=not batch_norm, dtype=policy, name=f"{base}_dense"
        )
    new_layers.append(linear)
    weights[linear.name] = [kernel] + (
        [] if batch_norm else [np.zeros(channels, np.float32)]
    )
    if batch_norm:
        bn = keras.layers.BatchNormalization(dtype=policy, name=f"{base}_bn")
        new_layers.append(bn)
        weights[bn.name] = weight_maps.identity_batch_norm(channels, bn.epsilon)
    act = PActivation(activation, dtype=policy, name=f"{base}_act")
    new_layers.append(act)
    weights[act.name] = [np.zeros((), np.float32)]
    return rebuild(
        model,
        insert_after={after_layer_name: new_layers},
        weights=weights,
        graph=graph,
    )
