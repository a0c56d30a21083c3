"""A training view of a model that recomputes its first layers in the backward pass.

A full-resolution front keeps, for the backward pass, tensors the size of the
image times its channels: at 896 x 896 x 8 in bfloat16 each is 12.8 MB per
image, more than the whole 224 px trunk keeps. :func:`rematerialized`
returns a model that computes the same function with the same layers (so the
same variables: training the view trains the model) but keeps only the input
of a leading segment of the graph and recomputes the segment when the
backward pass reaches it (`keras.remat`: `tf.recompute_grad` on TensorFlow,
`jax.checkpoint` on JAX), for the whole batch at once or one slice of the
batch at a time (:func:`~morphhr_tf.models.chunked_remat.chunked_remat`).
:func:`recompute_front` is the view of a MorphHR model that the trainer's
stage 2 fits.

The view is for training only; save, export and evaluate the model itself.
"""

from __future__ import annotations

import keras

from morphhr_tf.models.chunked_remat import check_chunks, chunked_remat
from morphhr_tf.models.detail_branch import DETAIL_PREFIX
from morphhr_tf.models.morphhr import DOWNSAMPLER_NAME, FIRST_FRONT_BLOCK_END
from morphhr_tf.models.sliced_norm_block import SlicedNormBlock, check_block
from morphhr_tf.morph.graph import Call, Graph, input_name, new_inputs

#: Slices of the batch :func:`recompute_front` recomputes the front in.
DEFAULT_FRONT_CHUNKS = 4


@keras.saving.register_keras_serializable(package="morphhr_tf")
class Rematerialized(keras.layers.Layer):
    """Calls `inner` (a functional model) under `keras.remat`, or
    :func:`~morphhr_tf.models.chunked_remat.chunked_remat` with `chunks > 1`.

    Args:
        inner: the model whose activations are recomputed, not kept.
        chunks: slices of the batch the recomputation runs on, one at a
            time (1: the whole batch at once).
        **kwargs: base layer keyword arguments, such as `name`.
    """

    def __init__(self, inner: keras.Model, chunks: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.chunks = check_chunks(chunks)

    def call(self, inputs, training=None):
        def forward(*tensors):
            return self.inner(list(tensors), training=training)

        return chunked_remat(forward, self.chunks)(*inputs)

    def compute_output_spec(self, inputs, training=None):
        return self.inner.compute_output_spec(list(inputs))

    def get_config(self):
        config = super().get_config()
        config["inner"] = keras.saving.serialize_keras_object(self.inner)
        config["chunks"] = self.chunks
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["inner"] = keras.saving.deserialize_keras_object(config["inner"])
        return cls(**config)


def _state_changing(layer) -> bool:
    """True for layers a second forward pass would change: moving statistics
    (any non-trainable variable, as batch norm's) or random draws (dropout,
    noise, random augmentation: a seed generator)."""
    return bool(layer.non_trainable_weights) or hasattr(layer, "seed_generator")


def _segment(graph: Graph, end: Call) -> list[Call]:
    """The calls `end`'s output depends on (`end` included), in graph order."""
    needed, stack = {id(end.layer)}, [end]
    while stack:
        for tensor in stack.pop().inputs:
            producer = graph.producer(tensor)
            if producer is not None and id(producer.layer) not in needed:
                needed.add(id(producer.layer))
                stack.append(producer)
    return [call for call in graph.calls if id(call.layer) in needed]


def _apply(call: Call, tensors: dict) -> None:
    """Calls `call`'s own layer on the stand-ins in `tensors` (a shared-layer
    call: the layer, its variables and `model` are not changed) and records
    its outputs' stand-ins."""
    args, kwargs = call.node.arguments.fill_in(tensors)
    outputs = keras.tree.flatten(call.layer(*args, **kwargs))
    for old, new in zip(call.outputs, outputs, strict=True):
        tensors[id(old)] = new


def _rebuilt(model: keras.Model, inputs: list, tensors: dict, name: str):
    """The model from `inputs` to the stand-ins of `model`'s outputs."""
    outputs = keras.tree.pack_sequence_as(
        model.output, [tensors[id(t)] for t in model.outputs]
    )
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=name)


def rematerialized(
    model: keras.Model, segment_end: str, chunks: int = 1
) -> keras.Model:
    """The same function as `model`, recomputing its inputs-to-`segment_end` part.

    The segment is the layer `segment_end` and every layer its output
    depends on; in the backward pass only the segment's inputs and its
    output are kept, and its inner activations are recomputed. The cost is
    one more forward pass of the segment per step.

    With `chunks == 1` the recomputation runs on the whole batch at once and
    the gradients are bit for bit the model's; its peak memory is then that
    of the segment's activations for the whole batch, only later in the
    step. With `chunks > 1` it runs on that many slices of the batch in turn,
    so one slice's activations are alive at a time; the segment must then
    treat samples independently (its layers are checked for batch
    statistics, as below) and the weight gradients equal the model's up to
    the order of their sums.

    Args:
        model: a flat functional model, each layer called once (left
            untouched: the view calls its layers as shared layers).
        segment_end: the name of the segment's last layer (one output).
        chunks: slices of the batch the segment is recomputed in.

    Returns:
        A `keras.Model` with the same inputs (names, shapes, dtypes) and
        outputs, sharing `model`'s layers and variables, named
        `{model.name}_rematerialized`.

    Raises:
        ValueError: if `segment_end` is not a layer of `model` or has several
            outputs; if a tensor inside the segment is also used outside it;
            or if the segment holds a layer whose second forward pass would
            change state or draw new random numbers (batch norm, dropout):
            recomputing it would not give the values of the first.
    """
    graph = Graph(model)
    if graph.model is not model:
        raise ValueError(
            f"rematerialized needs a flat functional model; {model.name!r} holds "
            "nested models. Flatten it first (morphhr_tf.morph.graph.flatten_nested)."
        )
    end = graph.call_of(segment_end)
    if len(end.outputs) != 1:
        raise ValueError(
            f"The layer {segment_end!r} has {len(end.outputs)} outputs; end the "
            "segment at a layer with one output."
        )
    segment = _segment(graph, end)
    unsafe = [call.name for call in segment if _state_changing(call.layer)]
    if unsafe:
        raise ValueError(
            f"The segment up to {segment_end!r} holds layers that a recomputation "
            f"would not repeat exactly (moving statistics or random draws): "
            f"{unsafe}. End the segment before them."
        )
    inner = {id(t) for call in segment for t in call.outputs} - {id(end.outputs[0])}
    rest = [call for call in graph.calls if call not in segment]
    leaks = [call.name for call in rest if any(id(t) in inner for t in call.inputs)] + [
        input_name(t) for t in model.outputs if id(t) in inner
    ]
    if leaks:
        raise ValueError(
            f"Tensors inside the segment up to {segment_end!r} are also used by "
            f"{leaks}; end the segment where every later layer reads only its output."
        )

    head_inputs = new_inputs(model)
    tensors = {id(old): new for old, new in zip(model.inputs, head_inputs)}
    for call in segment:
        _apply(call, tensors)
    head = keras.Model(
        head_inputs, tensors[id(end.outputs[0])], name=f"{model.name}_segment"
    )

    inputs = new_inputs(model)
    tensors = {id(old): new for old, new in zip(model.inputs, inputs)}
    tensors[id(end.outputs[0])] = Rematerialized(
        head, chunks=chunks, name=f"rematerialized_{segment_end}"
    )(inputs)
    for call in rest:
        _apply(call, tensors)
    return _rebuilt(model, inputs, tensors, f"{model.name}_rematerialized")


def sliced_norm_blocks(
    model: keras.Model, conv_names: list[str], chunks: int
) -> keras.Model:
    """The same function as `model`, each block `conv -> batch norm -> ReLU
    -> max pool` (or `... -> max pool -> ReLU`, the same function) that starts
    at a conv of `conv_names` trained as one
    :class:`~morphhr_tf.models.sliced_norm_block.SlicedNormBlock` (it keeps
    only pooled tensors; its backward pass makes the full-size gradient in
    `chunks` slices of the batch).

    Args:
        model: a flat functional model (left untouched: the view calls its
            layers as shared layers).
        conv_names: the blocks' first layers.
        chunks: slices of the batch.

    Raises:
        ValueError: if a named layer is missing, is not followed by batch
            norm, ReLU and max pool (or max pool and ReLU) each reading only
            the previous one's output, or the four layers are not of the
            kinds the block takes.
    """
    graph = Graph(model)
    blocks, skipped = {}, set()
    for name in conv_names:
        calls = [graph.call_of(name)]
        for _ in range(3):
            readers = graph.consumers(calls[-1].outputs[0])
            if len(readers) != 1 or any(
                id(t) in graph.output_ids for t in calls[-1].outputs
            ):
                raise ValueError(
                    f"The block at {name!r}: the output of {calls[-1].name!r} is "
                    f"read by {[c.name for c in readers]}; a sliced block needs "
                    "conv -> batch norm -> ReLU -> max pool (or max pool -> "
                    "ReLU), each read only by the next."
                )
            calls.append(readers[0])
        layers = [call.layer for call in calls]
        if isinstance(layers[2], keras.layers.MaxPooling2D):
            layers[2], layers[3] = (
                layers[3],
                layers[2],
            )  # pool(relu(.)) == relu(pool(.))
        check_block(*layers)
        blocks[id(layers[0])] = (layers, calls[-1])
        skipped.update(id(layer) for layer in layers[1:])
    inputs = new_inputs(model)
    tensors = {id(old): new for old, new in zip(model.inputs, inputs)}
    for call in graph.calls:
        if id(call.layer) in skipped:
            continue
        if id(call.layer) not in blocks:
            _apply(call, tensors)
            continue
        (conv, norm, relu, pool), last = blocks[id(call.layer)]
        block = SlicedNormBlock(
            conv, norm, relu, pool, chunks=chunks, name=f"sliced_{conv.name}"
        )
        tensors[id(last.outputs[0])] = block(tensors[id(call.inputs[0])])
    return _rebuilt(model, inputs, tensors, model.name)


def recompute_front(
    model: keras.Model,
    chunks: int = DEFAULT_FRONT_CHUNKS,
    *,
    detail_blocks: bool = True,
) -> keras.Model:
    """The view of a MorphHR model (:func:`~morphhr_tf.models.build_morphhr`)
    that the trainer's stage 2 fits.

    With `chunks > 1` the whole front and the downsampler (up to
    `morphhr_downsample`) are recomputed, `chunks` slices of the batch in
    turn: none of the front's full-resolution activations is kept for the
    whole batch. With `chunks == 1` only the first front block is
    recomputed, for the whole batch at once (recomputing the whole front at
    once would hold all of it again), and the gradients are bit for bit the
    model's.

    With `detail_blocks` (and `chunks > 1`) each detail-branch detector's
    full-resolution block (conv, batch norm, ReLU, max pool) trains as a
    :class:`~morphhr_tf.models.sliced_norm_block.SlicedNormBlock` too, which
    keeps only pooled tensors and runs forward and backward in slices of
    the batch: about 1.4-2 GB less than the layers at 896 px, batch 16, at the
    same throughput on the CPU (``docs/performance.md``, section 4). On by
    default, as in the trainer.

    Args:
        model: a flat MorphHR model with at least one front block and no
            front batch norm (its moving statistics cannot be recomputed).
        chunks: slices of the batch (default :data:`DEFAULT_FRONT_CHUNKS`).
        detail_blocks: train the detectors' full-resolution blocks as
            `SlicedNormBlock`s (false: as their layers).

    Returns:
        :func:`rematerialized`'s view (and :func:`sliced_norm_blocks`').
    """
    if check_chunks(chunks) == 1:
        return rematerialized(model, FIRST_FRONT_BLOCK_END)
    view = rematerialized(model, DOWNSAMPLER_NAME, chunks=chunks)
    detectors = [
        layer.name
        for layer in model.layers
        if layer.name.startswith(DETAIL_PREFIX) and layer.name.endswith("0_conv")
    ]
    if not (detail_blocks and detectors):
        return view
    return sliced_norm_blocks(view, detectors, chunks)
