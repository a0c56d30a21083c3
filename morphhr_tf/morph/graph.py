"""Read and rebuild flat Keras functional graphs.

The morphs never edit a model in place. They read the teacher's graph through
:class:`Graph` (which layer produces and which layers consume each tensor),
plan the new weights in numpy, then call :func:`rebuild`, which replays the
graph with fresh copies of every layer (optionally with edited configs and
extra layers inserted after some of them) and copies the weights.

Morphs work on flat functional graphs: every layer is called once and no
layer is itself a model. A functional model holding nested sub-models
(Sequential or functional, e.g. ConvNeXt's stem or a keras-hub backbone inside
a task model) is first flattened by :func:`flatten_nested`: the sub-models'
layers are called directly, with their names and weights kept, so the morphed
model is flat. This module is the only place that touches Keras' private graph structures
(``Functional._nodes_by_depth``, ``Node`` and a symbolic tensor's
``_keras_history``); other modules go through :class:`Graph`,
:func:`producing_layer` and :func:`input_name`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras.src.models.functional import Functional


@dataclass(frozen=True)
class Call:
    """One call of a layer in a functional graph.

    Attributes:
        layer: the layer (or stateless Keras operation) that was called.
        node: the Keras node of this call (holds the call arguments).
        inputs: the symbolic tensors it consumed, flattened.
        outputs: the symbolic tensors it produced, flattened.
    """

    layer: keras.Operation
    node: object
    inputs: tuple
    outputs: tuple

    @property
    def name(self) -> str:
        return self.layer.name


def application_layer_types() -> tuple[type, ...]:
    """Channel-wise helper layers private to `keras.applications`.

    ConvNeXt's `LayerScale` (a per-channel scale) and `StochasticDepth` (the
    identity at inference, a per-sample scalar in training). Empty if a Keras
    upgrade moved them.
    """
    try:
        from keras.src.applications import convnext
    except ImportError:  # pragma: no cover - depends on the Keras version
        return ()
    return tuple(
        getattr(convnext, name)
        for name in ("LayerScale", "StochasticDepth")
        if hasattr(convnext, name)
    )


def elementwise_op_types() -> tuple[type, ...]:
    """Keras operations behind `x + y`, `x * y`, ... on symbolic tensors.

    A functional graph records `inputs + x` (ConvNeXt's residual) as a
    stateless `keras.src.ops.numpy.Add` operation rather than an `Add` layer.
    """
    from keras.src.ops import numpy as ops_numpy

    names = ("Add", "Subtract", "Multiply", "Maximum", "Minimum")
    return tuple(getattr(ops_numpy, n) for n in names if hasattr(ops_numpy, n))


def describe(layer: keras.Operation) -> str:
    """`'name' (ClassName)`, how error messages name a layer."""
    return f"'{layer.name}' ({type(layer).__name__})"


def producing_layer(tensor) -> keras.Operation:
    """The layer (or Keras operation) that produced the symbolic `tensor`.

    For a model input this is its `InputLayer`. Works on any symbolic Keras
    tensor of a functional graph, with no :class:`Graph` needed.
    """
    return tensor._keras_history.operation


def input_name(tensor) -> str:
    """The name of the `InputLayer` that makes the model input `tensor`.

    This is the name given to `keras.Input(..., name=...)`, the key models use
    for that input.
    """
    return producing_layer(tensor).name


class Graph:
    """Producer / consumer view of a flat functional model.

    Args:
        model: a functional `keras.Model` (built with `keras.Input`).

    Raises:
        ValueError: if `model` is not functional, calls a layer more than
            once, or holds a sub-model that cannot be flattened.

    `model` may hold nested sub-models; :attr:`model` is then the flattened
    copy (see :func:`flatten_nested`), which the morphs rebuild from.
    """

    def __init__(self, model: keras.Model):
        if not isinstance(model, Functional):
            raise ValueError(
                "Morphs need a functional model built as keras.Model(inputs, "
                f"outputs). Received: a {type(model).__name__}. Rebuild a "
                "Sequential or subclassed model with the functional API first."
            )
        if has_nested_models(model):
            model = flatten_nested(model)
        self.model = model
        self.calls: list[Call] = []
        self._producer: dict[int, Call] = {}
        self._consumers: dict[int, list[Call]] = {}
        self._by_name: dict[str, Call] = {}
        seen: set[int] = set()
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                layer = node.operation
                if id(layer) in seen:
                    raise ValueError(
                        f"Layer {describe(layer)} is called more than once (a "
                        "shared layer); morphs need every layer called once."
                    )
                seen.add(id(layer))
                call = Call(
                    layer=layer,
                    node=node,
                    inputs=tuple(node.input_tensors),
                    outputs=tuple(node.outputs),
                )
                self.calls.append(call)
                self._by_name[layer.name] = call
                for t in call.outputs:
                    self._producer[id(t)] = call
                for t in call.inputs:
                    self._consumers.setdefault(id(t), []).append(call)
        self.input_ids = {id(t) for t in model.inputs}
        self.output_ids = {id(t) for t in model.outputs}

    def call_of(self, layer_name: str) -> Call:
        """The call of the layer named `layer_name`.

        Raises:
            ValueError: if no layer has that name (the message lists a few).
        """
        if not isinstance(layer_name, str) or layer_name not in self._by_name:
            names = [c.name for c in self.calls]
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(
                f"No layer named {layer_name!r} in model '{self.model.name}'. "
                f"Pass one of its layer names: {shown}"
            )
        return self._by_name[layer_name]

    def has_layer(self, layer_name: str) -> bool:
        return layer_name in self._by_name

    def producer(self, tensor) -> Call | None:
        """The call that produced `tensor`, or `None` for a model input."""
        return self._producer.get(id(tensor))

    def consumers(self, tensor) -> list[Call]:
        """The calls that consume `tensor`, in topological order."""
        return list(self._consumers.get(id(tensor), ()))


def clone_layer(layer: keras.Operation, config_update: Mapping | None = None):
    """A new, unbuilt layer from `layer`'s config with `config_update` applied.

    Stateless Keras operations (no config round trip needed) are reused.
    """
    if not isinstance(layer, keras.layers.Layer):
        return layer
    config = layer.get_config()
    config.update(config_update or {})
    return type(layer).from_config(config)


def replay(
    graph: Graph,
    inputs: Sequence,
    *,
    config_updates: Mapping[str, Mapping] | None = None,
    insert_after: Mapping[str, Sequence[keras.layers.Layer]] | None = None,
):
    """Re-applies the graph's layers (as fresh clones) to new input tensors.

    Args:
        graph: the teacher graph.
        inputs: symbolic tensors standing in for `graph.model.inputs`, in order.
        config_updates: per layer name, config keys to override in the clone.
        insert_after: per layer name, new layers (or callables applying
            several layers, e.g. a residual block) applied in sequence to that
            layer's (single) output; every former consumer and model output
            then uses the last new layer's output. An input layer's name
            inserts after that model input.

    Returns:
        The new outputs, in the structure of `graph.model.output`.
    """
    config_updates = config_updates or {}
    insert_after = insert_after or {}
    model = graph.model

    def chain(name, tensor):
        for new_layer in insert_after.get(name, ()):
            tensor = new_layer(tensor)
        return tensor

    tensor_dict = {}
    for old, new in zip(model.inputs, inputs):
        tensor_dict[id(old)] = chain(input_name(old), new)
    for call in graph.calls:
        new_layer = clone_layer(call.layer, config_updates.get(call.name))
        args, kwargs = call.node.arguments.fill_in(tensor_dict)
        outputs = keras.tree.flatten(new_layer(*args, **kwargs))
        if call.name in insert_after:
            if len(outputs) != 1:
                raise ValueError(
                    f"Cannot insert layers after {describe(call.layer)}: it has "
                    f"{len(outputs)} outputs. Pick a layer with one output."
                )
            outputs = [chain(call.name, outputs[0])]
        for old, new in zip(call.outputs, outputs):
            tensor_dict[id(old)] = new
    flat = [tensor_dict[id(t)] for t in model.outputs]
    return keras.tree.pack_sequence_as(model.output, flat)


def new_inputs(model: keras.Model, shapes: Mapping[str, tuple] | None = None):
    """Fresh `keras.Input`s like `model.inputs` (same names and dtypes).

    Args:
        model: the model whose inputs are copied.
        shapes: optional per input name, a replacement shape without the batch
            dimension.
    """
    shapes = shapes or {}
    result = []
    for t in model.inputs:
        name = input_name(t)
        shape = shapes.get(name, tuple(t.shape[1:]))
        result.append(keras.Input(shape=shape, dtype=t.dtype, name=name))
    return result


def copy_weights(
    new_model: keras.Model,
    sources: Sequence[keras.Model],
    weights: Mapping[str, Sequence[np.ndarray]] | None = None,
) -> None:
    """Sets every weighted layer of `new_model` by name.

    `weights[name]` wins; otherwise the first model in `sources` with a layer
    of that name (nested sub-models' layers included) gives its weights.

    Raises:
        ValueError: if a weighted layer has no source (a bug in a morph plan).
    """
    weights = weights or {}
    lookup: dict[str, keras.layers.Layer] = {}
    for source in reversed(list(sources)):
        for layer in all_layers(source):
            lookup[layer.name] = layer
    for layer in new_model.layers:
        if not layer.weights:
            continue
        if layer.name in weights:
            layer.set_weights(list(weights[layer.name]))
        elif layer.name in lookup:
            layer.set_weights(lookup[layer.name].get_weights())
        else:
            raise ValueError(
                f"No weights planned for new layer {describe(layer)}. This is "
                "a bug in morphhr_tf; please report it."
            )


def all_layers(model: keras.Model) -> list:
    """`model.layers`, each nested sub-model followed by its own layers."""
    result = []
    for layer in model.layers:
        result.append(layer)
        if isinstance(layer, keras.Model):
            result.extend(all_layers(layer))
    return result


def rebuild(
    model: keras.Model,
    *,
    config_updates: Mapping[str, Mapping] | None = None,
    insert_after: Mapping[str, Sequence[keras.layers.Layer]] | None = None,
    input_shapes: Mapping[str, tuple] | None = None,
    weights: Mapping[str, Sequence[np.ndarray]] | None = None,
    graph: Graph | None = None,
) -> keras.Model:
    """A new functional model replaying `model` with edits, weights copied.

    Args:
        model: the teacher (left untouched); nested sub-models are flattened.
        config_updates: see :func:`replay`.
        insert_after: see :func:`replay`.
        input_shapes: per input name, a new shape (no batch dimension).
        weights: per layer name, the new layer's weights; other layers get the
            teacher's weights.
        graph: the teacher's :class:`Graph`, if already built.

    Returns:
        The new `keras.Model`, with the teacher's name.
    """
    graph = graph or Graph(model)
    model = graph.model
    inputs = new_inputs(model, input_shapes)
    outputs = replay(
        graph, inputs, config_updates=config_updates, insert_after=insert_after
    )
    inputs_struct = keras.tree.pack_sequence_as(model.input, inputs)
    new_model = keras.Model(inputs_struct, outputs, name=model.name)
    copy_weights(new_model, [model], weights)
    return new_model


def unique_name(taken: Callable[[str], bool], base: str) -> str:
    """`base`, or `base_2`, `base_3`, ... whichever is not `taken`."""
    if not taken(base):
        return base
    i = 2
    while taken(f"{base}_{i}"):
        i += 1
    return f"{base}_{i}"


def has_nested_models(model: keras.Model) -> bool:
    """Whether any layer of `model` is itself a `keras.Model`."""
    return any(isinstance(layer, keras.Model) for layer in model.layers)


def flatten_nested(model: keras.Model) -> keras.Model:
    """A flat copy of a functional `model` whose nested sub-models are inlined.

    Every layer of a nested `Sequential` or functional sub-model (at any depth)
    is cloned and called directly in the outer graph, keeping its name and
    weights; the sub-model's own `InputLayer` disappears. The result computes
    the same function.

    Args:
        model: a functional model, possibly holding nested sub-models.

    Returns:
        A new flat functional `keras.Model` with `model`'s name and inputs.

    Raises:
        ValueError: if a nested model is subclassed (its graph is unknown), a
            (sub-)model layer is called more than once, or two flattened
            layers would share a name; the message names the layer.
    """
    inputs = new_inputs(model)
    clones: dict[int, tuple] = {}
    outputs = _inline(model, inputs, clones)
    names: dict[str, keras.Operation] = {}
    for new, old in clones.values():
        if new.name in names:
            raise ValueError(
                f"Cannot flatten model '{model.name}': two of its (nested) layers "
                f"are named {new.name!r} ({describe(names[new.name])} and "
                f"{describe(old)}). Give the sub-models' layers unique names."
            )
        names[new.name] = old
    inputs_struct = keras.tree.pack_sequence_as(model.input, inputs)
    outputs_struct = keras.tree.pack_sequence_as(model.output, outputs)
    flat = keras.Model(inputs_struct, outputs_struct, name=model.name)
    for new, old in clones.values():
        if old.weights:
            new.set_weights(old.get_weights())
    return flat


def _inline(model: keras.Model, inputs: Sequence, clones: dict) -> list:
    """Applies clones of `model`'s layers to `inputs`; returns flat outputs."""
    if isinstance(model, keras.Sequential):
        if len(inputs) != 1:
            raise ValueError(
                f"Cannot flatten Sequential sub-model {describe(model)}: it "
                f"receives {len(inputs)} tensors instead of one."
            )
        tensor = inputs[0]
        for layer in model.layers:
            tensor = _apply(layer, (tensor,), {}, clones)[0]
        return [tensor]
    if not isinstance(model, Functional):
        raise ValueError(
            f"Cannot flatten nested model {describe(model)}: it is subclassed, "
            "so its graph is unknown. Only Sequential and functional sub-models "
            "can be morphed."
        )
    tensor_dict = {id(old): new for old, new in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            args, kwargs = node.arguments.fill_in(tensor_dict)
            outputs = _apply(node.operation, args, kwargs, clones)
            for old, new in zip(node.outputs, outputs):
                tensor_dict[id(old)] = new
    return [tensor_dict[id(t)] for t in model.outputs]


def _apply(layer, args, kwargs, clones: dict) -> list:
    """Calls a clone of `layer` (or inlines it, if a model); flat outputs."""
    if isinstance(layer, keras.Model):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
        if kwargs or len(args) != 1:
            raise ValueError(
                f"Cannot flatten nested model {describe(layer)}: it is called "
                "with more than one positional input structure or with keyword "
                f"tensors ({sorted(kwargs)})."
            )
        return _inline(layer, keras.tree.flatten(args[0]), clones)
    if id(layer) in clones:
        raise ValueError(
            f"Layer {describe(layer)} is called more than once (a shared layer or "
            "sub-model); morphs need every layer called once."
        )
    new_layer = clone_layer(layer)
    if isinstance(layer, keras.layers.Layer):  # not a stateless operation
        clones[id(layer)] = (new_layer, layer)
    return keras.tree.flatten(new_layer(*args, **kwargs))
