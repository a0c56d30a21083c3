"""MorphHR: a thin full-resolution front and a learnable downsampler on a base net.

See `docs/method.md` for the method and its exactness argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np

from morphhr_tf.layers import PActivation
from morphhr_tf.models.detail_branch import INITS as DETAIL_INITS
from morphhr_tf.models.detail_branch import add_detail_branch
from morphhr_tf.morph import deepen, enlarge_kernel, weight_maps, widen
from morphhr_tf.morph.graph import Graph, copy_weights, input_name, replay

#: Prefix of every layer :func:`build_morphhr` adds (front and downsampler).
MORPHHR_PREFIX = "morphhr_"
#: Prefix of the full-resolution front layers (`morphhr_front_{i}_conv`, ...).
FRONT_PREFIX = "morphhr_front_"
#: The first front block's last layer: the end of the segment recomputed for
#: the whole batch at once (:func:`morphhr_tf.models.rematerialize.recompute_front`
#: with one slice; with several it ends at :data:`DOWNSAMPLER_NAME`).
FIRST_FRONT_BLOCK_END = f"{FRONT_PREFIX}0_act"
#: Name of the learnable stride-k downsampling conv.
DOWNSAMPLER_NAME = "morphhr_downsample"

_TRUNK_OPS: dict[str, Callable[..., keras.Model]] = {
    "widen": widen,
    "deepen": deepen,
    "enlarge_kernel": enlarge_kernel,
}

TrunkMorph = Callable[[keras.Model], keras.Model] | Mapping[str, object]


def added_layers(
    model: keras.Model, prefixes: Sequence[str] = (MORPHHR_PREFIX,)
) -> set[str]:
    """Names of the layers of `model` named with `prefixes` that have trainable weights.

    With the default prefix, for a model from :func:`build_morphhr` (with or
    without its detail branch, whose `morphhr_detail_` layers share the
    prefix), these are the layers it added to the base: the front, the
    downsampler and the detail branch, i.e. the layers a trainer gives the
    new layers' learning rate. Weightless layers (adds, pools) are left out.

    Args:
        model: a flat Keras model.
        prefixes: the name prefixes of the new layers.

    Returns:
        The set of layer names.
    """
    prefixes = tuple(prefixes)
    return {
        layer.name
        for layer in model.layers
        if layer.name.startswith(prefixes) and layer.trainable_weights
    }


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"{name} must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def _trunk_op(morph: TrunkMorph) -> Callable[[keras.Model], keras.Model]:
    if callable(morph):
        return morph
    if isinstance(morph, Mapping) and morph.get("op") in _TRUNK_OPS:
        kwargs = {k: v for k, v in morph.items() if k != "op"}
        op = _TRUNK_OPS[morph["op"]]
        return lambda model: op(model, **kwargs)
    raise ValueError(
        "Each trunk morph must be a callable Model -> Model or a mapping with "
        f"'op' in {sorted(_TRUNK_OPS)} plus that op's arguments, e.g. "
        "{'op': 'widen', 'layer_name': 'stack3_block1_1_conv', 'new_width': 64}. "
        f"Received: {morph!r}"
    )


def _base_input(base: keras.Model):
    """``(input tensor, S, C)`` of a base with one static square image input."""
    if len(base.inputs) != 1 or len(base.inputs[0].shape) != 4:
        raise ValueError(
            "build_morphhr needs a base model with one (S, S, C) image input. "
            f"Received: inputs {[tuple(t.shape) for t in base.inputs]}."
        )
    image = base.inputs[0]
    side, side_w, channels = image.shape[1:]
    if side is None or side != side_w or channels is None:
        raise ValueError(
            "build_morphhr needs a square base input with static size and "
            f"channels. Received: input shape {tuple(image.shape)}."
        )
    return image, side, channels


def _front(
    x,
    front_channels: int,
    front_blocks: int,
    activation: str,
    front_batch_norm: bool,
    rng: np.random.Generator,
):
    """The full-resolution front blocks on `x`: ``(output, {layer: weights})``.

    Each block starts as the identity: a 3x3 conv with an identity kernel on
    the input's channels (the first block's extra channels drawn He-normal),
    an identity batch norm if asked for, and a P-activation at 0.
    """
    channels = in_channels = int(x.shape[-1])
    weights = {}
    for i in range(front_blocks):
        name = f"{FRONT_PREFIX}{i}"
        conv = keras.layers.Conv2D(
            front_channels,
            3,
            padding="same",
            use_bias=not front_batch_norm,
            name=f"{name}_conv",
        )
        x = conv(x)
        if i == 0:
            kernel = rng.normal(
                0.0,
                np.sqrt(2.0 / (9 * in_channels)),
                (3, 3, in_channels, front_channels),
            ).astype(np.float32)
            kernel[:, :, :, :channels] = weight_maps.identity_conv_kernel(
                (3, 3), channels
            )
        else:
            kernel = weight_maps.identity_conv_kernel((3, 3), front_channels)
        weights[conv.name] = [kernel] + (
            [] if front_batch_norm else [np.zeros(front_channels, np.float32)]
        )
        if front_batch_norm:
            bn = keras.layers.BatchNormalization(name=f"{name}_bn")
            x = bn(x)
            weights[bn.name] = weight_maps.identity_batch_norm(
                front_channels, bn.epsilon
            )
        act = PActivation(activation, name=f"{name}_act")
        x = act(x)
        weights[act.name] = [np.zeros((), np.float32)]
        in_channels = front_channels
    return x, weights


def build_morphhr(
    base: keras.Model,
    resolution: int,
    *,
    front_channels: int = 8,
    front_blocks: int = 2,
    activation: str = "relu",
    trunk_morphs: Sequence[TrunkMorph] = (),
    front_batch_norm: bool = False,
    detail_branch: str | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Morphs `base` (S x S inputs) into a MorphHR model for `k * S` inputs.

    The new model is, in order:

    1. the **front**: `front_blocks` blocks at full resolution, each a 3x3
       same-padded `Conv2D(front_channels)`, an optional identity
       `BatchNormalization` and a `PActivation(activation)` at `a = 0`. The
       first conv maps the `C` input channels to `front_channels`: its first
       `C` output channels are an exact copy of the input (delta kernel), the
       rest are random (He normal) features; later convs are identities.
       Layers: `morphhr_front_{i}_conv`, `morphhr_front_{i}_bn`,
       `morphhr_front_{i}_act`.
    2. the **learnable downsampler** `morphhr_downsample`: a k x k, stride-k
       `Conv2D(front_channels -> C)` that averages each identity channel
       over its k x k cell and gives the extra channels zero weight.
    3. the **trunk**: `base`'s layers (same names, copied weights), after the
       `trunk_morphs`, which preserve its function.
    4. optionally (`detail_branch`), a full-resolution detector with a global
       max pool whose logits are added to the trunk's, starting at exactly
       zero (:func:`morphhr_tf.models.detail_branch.add_detail_branch`). The
       front and downsampler alone do not learn structures a pixel or two
       wide (they must survive the trunk's stride-4 stem and its global
       average pool); the branch does (`docs/results.md`).

    At construction, in inference mode, `model(x) == base(avg_pool_k(x))`
    where `avg_pool_k` is k x k area averaging (k = 1: the identity, "MorphHR
    at the base resolution"). Every added layer's name starts with
    `MORPHHR_PREFIX` (`"morphhr_"`), front layers with `FRONT_PREFIX`, so a
    trainer can give the front its own learning rate. Only the thin front
    runs at full resolution, which keeps memory low.

    Args:
        base: a flat functional model with one `(S, S, C)` input (left
            untouched), e.g. :func:`morphhr_tf.models.resnet18`.
        resolution: the full-resolution side, an integer multiple of `S`.
        front_channels: channels of the front, at least `C`.
        front_blocks: number of front blocks (0: only the downsampler).
        activation: the front P-activations' target activation.
        trunk_morphs: function-preserving morphs applied to `base` first;
            each a callable `Model -> Model` or a mapping such as
            `{"op": "widen", "layer_name": "stack3_block1_1_conv",
            "new_width": 128}` (`op` in `widen`, `deepen`, `enlarge_kernel`).
        front_batch_norm: add an identity `BatchNormalization` per block.
        detail_branch: `None` (no branch), `"zeros"` or `"antithetic"`: add
            the detail branch with that exact initialisation. Needs a base
            with a `Dense` layer named `logits` before its output activation.
        seed: seed of the front's random extra channels.

    Returns:
        A `keras.Model` taking `(resolution, resolution, C)` images, named
        `morphhr_{base.name}`, with `base`'s input name.

    Raises:
        ValueError: on bad arguments (before anything is built), or when a
            trunk morph refuses.

    Example:

    >>> from morphhr_tf.models import resnet18
    >>> base = resnet18((32, 32, 1), width=8)
    >>> model = build_morphhr(base, 64, front_channels=4)
    >>> tuple(model.input.shape)
    (None, 64, 64, 1)
    """
    image, side, channels = _base_input(base)
    resolution = _positive_int(resolution, "resolution")
    if resolution % side:
        raise ValueError(
            f"resolution must be an integer multiple k * S of the base input size "
            f"S={side}. Received: resolution={resolution}"
        )
    front_channels = _positive_int(front_channels, "front_channels", channels)
    front_blocks = _positive_int(front_blocks, "front_blocks", 0)
    PActivation(activation)  # validates the activation
    if detail_branch is not None and detail_branch not in DETAIL_INITS:
        raise ValueError(
            f"detail_branch must be None or one of {DETAIL_INITS}. "
            f"Received: detail_branch={detail_branch!r}"
        )
    ops = [_trunk_op(m) for m in trunk_morphs]
    clashes = [c.name for c in Graph(base).calls if c.name.startswith(MORPHHR_PREFIX)]
    if clashes:
        raise ValueError(
            f"The base model already has layers named with {MORPHHR_PREFIX!r}: "
            f"{clashes[:5]}. Rename them or pass the un-morphed base."
        )

    trunk = base
    for op in ops:
        trunk = op(trunk)
    inputs = keras.Input(
        shape=(resolution, resolution, channels),
        dtype=image.dtype,
        name=input_name(image),
    )
    x, weights = _front(
        inputs,
        front_channels,
        front_blocks,
        activation,
        front_batch_norm,
        np.random.default_rng(seed),
    )
    k = resolution // side
    down = keras.layers.Conv2D(
        channels, k, strides=k, padding="valid", name=DOWNSAMPLER_NAME
    )
    weights[down.name] = [
        weight_maps.average_pool_kernel(k, int(x.shape[-1]), channels),
        np.zeros(channels, np.float32),
    ]
    x = down(x)
    outputs = replay(Graph(trunk), [x])
    model = keras.Model(inputs, outputs, name=f"morphhr_{base.name}")
    copy_weights(model, [trunk], weights)
    if detail_branch is not None:
        model = add_detail_branch(model, init=detail_branch, seed=seed)
    return model
