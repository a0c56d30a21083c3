"""Width morph: more units in a Dense or Conv2D layer, same function."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from morphhr_tf.morph import layer_kinds, weight_maps
from morphhr_tf.morph.graph import Call, Graph, describe, producing_layer, rebuild
from morphhr_tf.morph.width_weights import new_weights

_METHODS = ("net2net", "netmorph")


@dataclass
class _Plan:
    """What a widening changes, worked out before any layer is built."""

    index_map: np.ndarray
    sources: list[tuple[Call, np.ndarray]] = field(default_factory=list)
    consumers: dict[str, tuple] = field(default_factory=dict)
    channelwise: dict[str, tuple] = field(default_factory=dict)
    normalizations: dict[str, tuple] = field(default_factory=dict)
    config_updates: dict[str, dict] = field(default_factory=dict)


def widen(
    model: keras.Model,
    layer_name: str,
    new_width: int,
    *,
    method: str = "net2net",
    noise_stddev: float = 0.0,
    seed: int | None = None,
) -> keras.Model:
    """Returns a copy of `model` where `layer_name` has `new_width` units.

    Works on `Dense` layers and channels-last, un-grouped `Conv2D` and
    `SeparableConv2D` layers (in a nested sub-model too: the result is then
    flat, see :func:`morphhr_tf.morph.graph.flatten_nested`). The new units
    flow through what the layer feeds: `BatchNormalization`, activations
    (including `PActivation` and `PReLU`), `DepthwiseConv2D`
    (`depth_multiplier=1`: its filters are copied for the new channels),
    ConvNeXt's `LayerScale`, pooling, padding, dropout, `Reshape` keeping the
    last axis, `Flatten` (static spatial shape), `Concatenate` on the channel
    axis and element-wise merges, until they reach the next `Dense` / `Conv2D`
    / `SeparableConv2D` layers, whose input weights absorb them.

    A depthwise layer (`DepthwiseConv2D` or a `Conv2D` with one group per
    channel) has as many channels as its input, so widening it widens the
    channels it reads: the layers producing them become the widened sources.

    **LayerNormalization** over the channel axis normalises with the mean and
    variance of all channels, so new channels change them unless every old
    unit is copied equally often. On such a path only `"net2net"` with
    `new_width` a multiple of the old width is exact: the mapping then copies
    every unit `new_width // old` times (not at random). Anything else is
    refused, naming the normalisation layer.

    **Coupled groups.** When the layer's output meets other tensors in an
    element-wise merge (`Add`, `Multiply`, ...: residual stages, squeeze-excite
    gates), those tensors must have the same channels. The whole coupled group
    is widened consistently, automatically: every `Dense` / `Conv2D` producing
    a tensor of the group (e.g. all convs that write into a ResNet stage's
    residual stream, including the shortcut projection) gets the same new
    width and the same unit mapping.

    Methods (Chen et al. 2016, "Net2Net"; Wei et al. 2016, "Network
    Morphism"):

    - `"net2net"`: unit `j >= old` copies a random old unit `g(j)`;
      consumers divide the rows of each copied unit by its number of copies.
    - `"netmorph"`: new units get random incoming weights (scaled like the
      existing ones) and zero outgoing weights.

    Both are exact in inference mode (`training=False`); with
    `noise_stddev > 0`, Gaussian noise is added to the consumers' rows of the
    copied / new units to break symmetry, and the morph is then approximate.

    Args:
        model: a flat functional model (left untouched).
        layer_name: the `Dense` or `Conv2D` layer to widen.
        new_width: units after the morph, above the current width.
        method: `"net2net"` or `"netmorph"`.
        noise_stddev: standard deviation of the symmetry-breaking noise;
            `0.0` (default) keeps the function exactly.
        seed: seed of the random mapping, new weights and noise.

    Returns:
        A new `keras.Model` with the teacher's layer names and weights.

    Raises:
        ValueError: on bad arguments, or, before anything is built, when a
            layer on the widened channels' path cannot be adapted exactly
            (e.g. a grouped `Conv2D`, a `LayerNormalization` the mapping cannot
            keep, softmax, an unknown custom layer, a model input or output);
            the message names it.

    Example:

    >>> import keras
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    >>> x = keras.layers.ReLU()(x)
    >>> outputs = keras.layers.Conv2D(2, 1, name="head")(x)
    >>> wider = widen(keras.Model(inputs, outputs), "conv", 6, seed=0)
    >>> wider.get_layer("conv").filters
    6
    """
    if method not in _METHODS:
        raise ValueError(
            f"method must be one of {_METHODS}. Received: method={method!r}"
        )
    if not isinstance(noise_stddev, (int, float)) or noise_stddev < 0:
        raise ValueError(
            "noise_stddev must be a non-negative number. "
            f"Received: noise_stddev={noise_stddev!r}"
        )
    if isinstance(new_width, bool) or not isinstance(new_width, (int, np.integer)):
        raise ValueError(
            f"new_width must be an integer. Received: new_width={new_width!r}"
        )
    graph = Graph(model)
    call = graph.call_of(layer_name)
    if not (
        (layer_kinds.is_linear(call.layer) or layer_kinds.is_depthwise(call.layer))
        and layer_kinds.activation_is_elementwise(call.layer)
    ):
        raise ValueError(
            "widen supports Dense and channels-last Conv2D (un-grouped or "
            "depthwise), SeparableConv2D and DepthwiseConv2D layers without "
            "softmax. Received: layer_name={layer_name!r}, which is "
            f"{describe(call.layer)}."
        )
    old_width = call.outputs[0].shape[-1]
    if new_width <= old_width:
        raise ValueError(
            f"new_width must exceed the current width {old_width} of "
            f"'{layer_name}'. Received: new_width={new_width}"
        )
    rng = np.random.default_rng(seed)
    if method == "net2net":
        index_map = weight_maps.net2net_index_map(old_width, int(new_width), rng)
    else:
        index_map = weight_maps.netmorph_index_map(old_width, int(new_width))
    plan = _plan(graph, call, index_map, layer_name)
    if plan.normalizations and method == "net2net" and new_width % old_width == 0:
        index_map = weight_maps.uniform_index_map(old_width, int(new_width))
        plan = _plan(graph, call, index_map, layer_name)
    _check_normalizations(plan, layer_name, method, new_width)
    weights = new_weights(plan, rng, method, noise_stddev)
    return rebuild(
        model, config_updates=plan.config_updates, weights=weights, graph=graph
    )


def _plan(graph: Graph, call: Call, index_map: np.ndarray, layer_name: str) -> _Plan:
    """Propagates the unit mapping through the graph, forwards and backwards.

    Every tensor reached gets an index map. Channel-wise layers pass it on
    both ways; element-wise merges tie all their (non-broadcast) inputs and
    their output to it, which pulls in the other layers feeding the merge; a
    `Dense` / `Conv2D` producing a mapped tensor is widened (a *source*), one
    consuming a mapped tensor absorbs the mapping in its input weights.
    Concatenations and `Flatten` derive their output's map from their inputs'.
    """
    propagation = _Propagation(graph, layer_name)
    propagation.assign(call.outputs[0], index_map, call.layer)
    deriving = [c for c in graph.calls if _derives(c)]
    propagation.drain()
    while propagation.derive_next(deriving):
        propagation.drain()
    propagation.refuse_model_outputs()
    return _assemble(graph, index_map, propagation.maps, propagation.sources)


def _check_normalizations(
    plan: _Plan, layer_name: str, method: str, new_width: int
) -> None:
    """Refuses when a `LayerNormalization`'s statistics would change."""
    for layer, in_map, old in plan.normalizations.values():
        if weight_maps.is_uniform_replication(in_map, old):
            continue
        raise ValueError(
            f"Cannot widen '{layer_name}': the widened channels reach "
            f"{describe(layer)}, which normalises over the channel axis with "
            "the mean and variance of all its channels. New channels change "
            "those statistics unless every old channel is copied equally "
            "often, so the morph would not be exact. Use method='net2net' with "
            "a new_width that makes the normalised tensor an exact multiple of "
            f"its {old} channels. Received: method={method!r}, "
            f"new_width={new_width}"
        )


def _merge(c: Call) -> bool:
    """An element-wise merge of symbolic tensors only.

    `x + y` operations count when both operands are graph tensors (an operand
    that is a constant array could not follow a widening).
    """
    if not layer_kinds.is_merge(c.layer):
        return False
    return isinstance(c.layer, keras.layers.Layer) or len(c.inputs) == 2


def _tied(c: Call) -> list:
    """The inputs of merge `c` tied to its output (those not broadcast)."""
    width = c.outputs[0].shape[-1]
    return [t for t in c.inputs if t.shape[-1] == width or width == 1]


def _channelwise(c: Call) -> bool:
    """Whether `c` is a one-input layer that acts on each channel alone.

    A channel `LayerNormalization` counts (its statistics are checked later).
    """
    if len(c.inputs) != 1:
        return False
    return layer_kinds.is_channelwise(
        c.layer, c.inputs[0], c.outputs[0]
    ) or layer_kinds.normalizes_channels(c.layer, c.inputs[0])


def _derives(c: Call) -> bool:
    """Whether `c`'s output map is derived from its inputs' (concat, Flatten)."""
    return (
        layer_kinds.is_flatten(c.layer) and len(c.inputs) == 1
    ) or layer_kinds.is_concat(c.layer, c.outputs[0])


class _Propagation:
    """The index maps of the tensors the widened channels reach (see `_plan`).

    Attributes:
        maps: `id(tensor)` -> index map of every tensor reached.
        sources: name -> (call, index map) of every layer to widen.
    """

    def __init__(self, graph: Graph, layer_name: str):
        self.graph = graph
        self.layer_name = layer_name
        self.maps: dict[int, np.ndarray] = {}
        self.sources: dict[str, tuple[Call, np.ndarray]] = {}
        self._work: list = []

    def refuse(self, layer, why: str):
        raise ValueError(
            f"Cannot widen '{self.layer_name}': the widened channels reach "
            f"{describe(layer)}, {why}"
        )

    def assign(self, tensor, index_map: np.ndarray, via) -> None:
        """Gives `tensor` `index_map` (reached through layer `via`)."""
        known = self.maps.get(id(tensor))
        if known is None:
            self.maps[id(tensor)] = index_map
            self._work.append(tensor)
        elif not np.array_equal(known, index_map):
            self.refuse(
                via,
                "which ties together channels that would need two different widenings.",
            )

    def drain(self) -> None:
        """Propagates every newly assigned map to its producer and consumers."""
        while self._work:
            tensor = self._work.pop()
            index_map = self.maps[id(tensor)]
            self._backward(tensor, index_map)
            self._forward(tensor, index_map)

    def _backward(self, tensor, index_map: np.ndarray) -> None:
        producer = self.graph.producer(tensor)
        if producer is None:
            raise ValueError(
                f"Cannot widen '{self.layer_name}': its channels are tied, through "
                "an element-wise merge, to a model input, which cannot be "
                "widened."
            )
        if layer_kinds.is_linear(producer.layer):
            self._add_source(producer, index_map)
        elif _channelwise(producer):
            self.assign(producer.inputs[0], index_map, producer.layer)
        elif _merge(producer):
            for t in _tied(producer):
                self.assign(t, index_map, producer.layer)
        elif not _derives(producer):
            self.refuse(
                producer.layer,
                "whose output is tied to them but cannot be widened exactly: "
                + layer_kinds.why_not_adaptable(producer.layer),
            )

    def _add_source(self, producer: Call, index_map: np.ndarray) -> None:
        if not layer_kinds.activation_is_elementwise(producer.layer):
            self.refuse(producer.layer, "whose softmax would mix the new units.")
        known = self.sources.get(producer.name)
        if known is not None and not np.array_equal(known[1], index_map):
            self.refuse(producer.layer, "which would need two different widenings.")
        self.sources[producer.name] = (producer, index_map)

    def _forward(self, tensor, index_map: np.ndarray) -> None:
        for c in self.graph.consumers(tensor):
            if layer_kinds.is_linear(c.layer) and len(c.inputs) == 1:
                continue
            if _channelwise(c):
                self.assign(c.outputs[0], index_map, c.layer)
            elif _merge(c):
                for t in [*_tied(c), c.outputs[0]]:
                    self.assign(t, index_map, c.layer)
            elif not _derives(c):
                self.refuse(c.layer, layer_kinds.why_not_adaptable(c.layer))

    def derive_next(self, deriving: list[Call]) -> bool:
        """Assigns the first derivable, unmapped output of `deriving`.

        Checks the already mapped outputs met before it against their
        derivation. Returns whether an output was assigned (then `drain`).
        """
        for c in deriving:
            out = c.outputs[0]
            if id(out) not in self.maps and all(
                id(t) not in self.maps for t in c.inputs
            ):
                continue
            out_map = self._derived_map(c)
            if id(out) not in self.maps:
                self.assign(out, out_map, c.layer)
                return True
            if not np.array_equal(self.maps[id(out)], out_map):
                self.refuse(
                    c.layer,
                    "whose output would need channels its inputs do not provide.",
                )
        return False

    def _derived_map(self, c: Call) -> np.ndarray:
        if layer_kinds.is_flatten(c.layer):
            spatial = tuple(c.inputs[0].shape[1:-1])
            in_map = self.maps.get(id(c.inputs[0]))
            if not spatial or any(d is None for d in spatial):
                self.refuse(c.layer, "whose input has no static spatial shape.")
            if in_map is None:
                in_map = np.arange(c.inputs[0].shape[-1])
            return weight_maps.flatten_index_map(in_map, spatial, c.inputs[0].shape[-1])
        return weight_maps.concat_index_maps(
            [self.maps.get(id(t)) for t in c.inputs], [t.shape[-1] for t in c.inputs]
        )

    def refuse_model_outputs(self) -> None:
        """Refuses when the widened channels reach a model output."""
        for t in self.graph.model.outputs:
            if id(t) in self.maps:
                self.refuse(
                    producing_layer(t),
                    "which is a model output: widening would change its shape.",
                )


def _assemble(
    graph: Graph,
    index_map: np.ndarray,
    maps: dict[int, np.ndarray],
    sources: dict[str, tuple[Call, np.ndarray]],
) -> _Plan:
    """The plan: sources to widen, consumers and channel-wise layers to adapt."""
    plan = _Plan(index_map=index_map)
    for producer, source_map in sources.values():
        plan.sources.append((producer, source_map))
        key = layer_kinds.width_key(producer.layer)
        plan.config_updates[producer.name] = {key: len(source_map)}
    for c in graph.calls:
        if not c.inputs or id(c.inputs[0]) not in maps:
            continue
        in_map = maps[id(c.inputs[0])]
        if layer_kinds.is_linear(c.layer):
            plan.consumers[c.name] = (c.layer, in_map)
        elif _channelwise(c):
            old_in = c.inputs[0].shape[-1]
            plan.channelwise[c.name] = (c.layer, in_map, old_in)
            update = layer_kinds.channel_config(c.layer, len(in_map))
            if update:
                plan.config_updates[c.name] = update
            if layer_kinds.normalizes_channels(c.layer, c.inputs[0]):
                plan.normalizations[c.name] = (c.layer, in_map, old_in)
    return plan
