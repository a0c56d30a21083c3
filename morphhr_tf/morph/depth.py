"""Depth morph: an identity-initialized block after a layer."""

from __future__ import annotations

import keras
import numpy as np

from morphhr_tf.layers import PActivation
from morphhr_tf.morph import weight_maps
from morphhr_tf.morph.graph import Graph, describe, input_name, rebuild, unique_name

_KINDS = ("auto", "conv", "dense", "depthwise")


def deepen(
    model: keras.Model,
    after_layer_name: str,
    *,
    activation: str = "relu",
    kernel_size: int = 3,
    batch_norm: bool = False,
    kind: str = "auto",
    residual: bool = False,
) -> keras.Model:
    """Returns a copy of `model` with a new identity block after a layer.

    The block's linear layer is set to the identity on the layer's output:

    - `kind="conv"`: a same-padded `Conv2D(C, kernel_size)` with a delta
      kernel (4-D `(N, H, W, C)` outputs);
    - `kind="depthwise"`: a same-padded `DepthwiseConv2D(kernel_size)` with
      a delta filter per channel (4-D outputs; `C * k * k` weights instead of
      `C * C * k * k`);
    - `kind="dense"`: a `Dense(C)` with an identity kernel, on the last axis of
      an output of any rank >= 2 (a 1x1 conv on images);
    - `kind="auto"` (default): `"conv"` on 4-D outputs, `"dense"` otherwise.

    Optionally a `BatchNormalization` follows, set to the identity at
    inference (`gamma = 1, beta = 0, mean = 0, variance = 1 - epsilon`). Last
    comes `PActivation(activation)` with `a = 0`, the identity, so the morph
    is exact for every activation, not only idempotent ones such as ReLU (Wei
    et al. 2016; Net2DeeperNet of Chen et al. 2016 needs ReLU).

    With `residual=True` the block is a residual branch instead: `x +
    linear2(act(bn(linear(x))))`, where `act` is the plain activation and
    `linear2` (same kind) starts at zero, so the block is the identity for
    any activation and `linear2` learns from the first step.

    Every consumer of the layer's output (and the model output, if it is one)
    then reads the new block. New layers are named
    `{after_layer_name}_deepen_{conv|dwconv|dense}`, `_bn`, `_act` (and
    `_{kind}2`, `_add` for a residual block), with a `_2`, `_3`, ... suffix
    after `_deepen` if taken, in the dtype policy of `after_layer_name`.

    The morph is exact in inference mode. In training mode the new
    `BatchNormalization` uses batch statistics, so outputs differ.

    Args:
        model: a functional model (left untouched; nested sub-models are
            flattened).
        after_layer_name: the layer (or input layer) after which to insert.
        activation: the P-activation's target activation: a Keras activation
            name or registered element-wise callable.
        kernel_size: odd size of a new conv (ignored for `"dense"`).
        batch_norm: whether to add an identity `BatchNormalization`.
        kind: `"auto"`, `"conv"`, `"dense"` or `"depthwise"`.
        residual: insert a zero-initialised residual branch instead.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: on bad arguments, or if the layer's output is not a
            single tensor with a known channel count and a rank that `kind`
            fits.

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> x = keras.layers.Dense(3, name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="out")(x))
    >>> deeper = deepen(model, "hidden", activation="tanh")
    >>> [layer.name for layer in deeper.layers][2:4]
    ['hidden_deepen_dense', 'hidden_deepen_act']
    """
    _check_arguments(kernel_size, kind, activation)
    graph = Graph(model)
    tensor, policy = _output_of(graph, after_layer_name)
    rank, channels = len(tensor.shape), tensor.shape[-1]
    kind = ("conv" if rank == 4 else "dense") if kind == "auto" else kind
    if channels is None or rank < 2 or (kind != "dense" and rank != 4):
        needed = "a rank >= 2" if kind == "dense" else "a 4-D (N, H, W, C)"
        raise ValueError(
            f"deepen with kind={kind!r} needs {needed} output with a known "
            f"channel count. Received: after_layer_name={after_layer_name!r} "
            f"with output shape {tuple(tensor.shape)}."
        )
    names = {layer.name for layer in graph.model.layers}
    base = unique_name(
        lambda n: any(name.startswith(f"{n}_") for name in names),
        f"{after_layer_name}_deepen",
    )
    spec = _Spec(kind, channels, kernel_size, policy, base)
    weights: dict[str, list[np.ndarray]] = {}
    layers = [spec.linear("", identity=True, use_bias=not batch_norm, weights=weights)]
    if batch_norm:
        bn = keras.layers.BatchNormalization(dtype=policy, name=f"{base}_bn")
        layers.append(bn)
        weights[bn.name] = weight_maps.identity_batch_norm(channels, bn.epsilon)
    if residual:
        act = keras.layers.Activation(activation, dtype=policy, name=f"{base}_act")
        last = spec.linear("2", identity=False, use_bias=True, weights=weights)
        add = keras.layers.Add(dtype=policy, name=f"{base}_add")
        branch = [*layers, act, last]
        block = [_ResidualBlock(branch, add)]
    else:
        act = PActivation(activation, dtype=policy, name=f"{base}_act")
        weights[act.name] = [np.zeros((), np.float32)]
        block = [*layers, act]
    return rebuild(
        model, insert_after={after_layer_name: block}, weights=weights, graph=graph
    )


def _check_arguments(kernel_size, kind, activation) -> None:
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
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}. Received: kind={kind!r}")
    # Validates the activation (an error names it) before touching the graph.
    PActivation(activation)


def _output_of(graph: Graph, after_layer_name: str):
    """The single output tensor of a layer or model input, and its policy."""
    inputs_by_name = {input_name(t): t for t in graph.model.inputs}
    if after_layer_name in inputs_by_name:
        return inputs_by_name[after_layer_name], keras.config.dtype_policy()
    call = graph.call_of(after_layer_name)
    if len(call.outputs) != 1:
        raise ValueError(
            f"deepen needs a layer with one output. Received: "
            f"after_layer_name={after_layer_name!r}, {describe(call.layer)} "
            f"with {len(call.outputs)} outputs."
        )
    return call.outputs[0], call.layer.dtype_policy


class _Spec:
    """Builds the block's linear layers of one kind and plans their weights."""

    def __init__(self, kind, channels, kernel_size, policy, base):
        self.kind, self.channels, self.k = kind, channels, kernel_size
        self.policy, self.base = policy, base

    def linear(self, suffix: str, *, identity: bool, use_bias: bool, weights: dict):
        c, k, policy = self.channels, self.k, self.policy
        if self.kind == "conv":
            kernel = weight_maps.identity_conv_kernel((k, k), c)
            layer = keras.layers.Conv2D(
                c,
                k,
                padding="same",
                use_bias=use_bias,
                dtype=policy,
                name=f"{self.base}_conv{suffix}",
            )
        elif self.kind == "depthwise":
            kernel = weight_maps.identity_depthwise_kernel((k, k), c)
            layer = keras.layers.DepthwiseConv2D(
                k,
                padding="same",
                use_bias=use_bias,
                dtype=policy,
                name=f"{self.base}_dwconv{suffix}",
            )
        else:
            kernel = np.eye(c, dtype=np.float32)
            layer = keras.layers.Dense(
                c, use_bias=use_bias, dtype=policy, name=f"{self.base}_dense{suffix}"
            )
        if not identity:
            kernel = np.zeros_like(kernel)
        bias = [np.zeros(c, np.float32)] if use_bias else []
        weights[layer.name] = [kernel, *bias]
        return layer


class _ResidualBlock:
    """Applies `x + branch(x)` inside a graph replay (not a layer itself)."""

    def __init__(self, branch, add):
        self.branch, self.add = branch, add

    def __call__(self, tensor):
        y = tensor
        for layer in self.branch:
            y = layer(y)
        return self.add([tensor, y])
