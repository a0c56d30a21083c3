"""Prints max |teacher(x) - student(x)| per morph (float32, training=False).

Run from the repository root: `python docs/measure_preservation.py`. The
figures are quoted in docs/method.md ("Measured differences").
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# isort: off
import morphhr_tf  # noqa: E402, F401  (Keras 3 on TensorFlow first)
# isort: on

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from morphhr_tf.models import (  # noqa: E402
    build_morphhr,
    import_keras_hub_resnet,
    resnet18,
)
from morphhr_tf.morph import (  # noqa: E402
    collapse_input_channels,
    deepen,
    enlarge_kernel,
    widen,
)
from morphhr_tf.morph.testing import (  # noqa: E402
    max_abs_difference,
    randomize_weights,
    relative_error,
)

ACTIVATIONS = ["relu", "relu6", "elu", "gelu", "swish", "tanh", "sigmoid"]


def area_pool(x, k):
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))


def teacher(seed=0):
    base = resnet18((32, 32, 3), width=8, include_top=False, pooling="avg")
    head = keras.layers.Dense(6, name="head")(base.output)
    return randomize_weights(keras.Model(base.input, head), seed=seed)


def chain(model, rng):
    for step in range(5):
        convs = [
            layer
            for layer in model.layers
            if type(layer) is keras.layers.Conv2D and layer.name != "conv1_conv"
        ]
        conv = convs[rng.integers(len(convs))]
        if step % 3 == 0:
            method = ("net2net", "netmorph")[step % 2]
            model = widen(model, conv.name, conv.filters + 4, method=method, seed=step)
        elif step % 3 == 1 or conv.padding != "same":
            model = deepen(model, conv.name, activation="gelu", batch_norm=True)
        else:
            model = enlarge_kernel(model, conv.name, conv.kernel_size[0] + 2)
    return model


def float32_rows(rng):
    x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    m = teacher()
    ref = m(x, training=False)
    print(f"reference max|y| = {np.abs(np.asarray(ref)).max():.3f}")

    def diff(student, inputs=x, reference=ref):
        return max_abs_difference(student(inputs, training=False), reference)

    for method in ("net2net", "netmorph"):
        for name, new in [
            ("stack0_block1_1_conv", 16),
            ("stack1_block0_2_conv", 24),
            ("conv1_conv", 16),
        ]:
            yield (
                f"widen {method} {name} -> {new}",
                diff(widen(m, name, new, method=method, seed=0)),
            )
    for act in ACTIVATIONS:
        student = deepen(m, "stack1_block1_out", activation=act, batch_norm=True)
        yield f"deepen {act} + BN after stack1_block1_out", diff(student)
    yield (
        "deepen gelu after avg_pool (Dense)",
        diff(deepen(m, "avg_pool", activation="gelu")),
    )
    yield (
        "enlarge_kernel stack1_block1_1_conv 3->5",
        diff(enlarge_kernel(m, "stack1_block1_1_conv", 5)),
    )
    yield (
        "enlarge_kernel stack2_block0_2_conv 3->7",
        diff(enlarge_kernel(m, "stack2_block0_2_conv", 7)),
    )
    gray = x[..., :1]
    yield (
        "collapse_input_channels",
        diff(
            collapse_input_channels(m), gray, m(np.repeat(gray, 3, -1), training=False)
        ),
    )
    for k in (1, 2, 4):
        xh = rng.normal(size=(4, 32 * k, 32 * k, 3)).astype(np.float32)
        model = build_morphhr(m, 32 * k, front_channels=8, seed=0)
        yield (
            f"build_morphhr k={k}",
            diff(model, xh, m(area_pool(xh, k), training=False)),
        )
    yield "chain of 5 morphs", diff(chain(m, np.random.default_rng(1)))
    hub = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    randomize_weights(hub, seed=0)
    ours = resnet18((32, 32, 3), stage_filters=[64, 16, 16, 16], include_top=False)
    import_keras_hub_resnet(ours, hub)
    yield "import_keras_hub_resnet", diff(ours, x, hub(x, training=False))


def bfloat16_rows(rng):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = randomize_weights(resnet18((32, 32, 3), width=8), seed=0)
        x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
        ref = m(x, training=False)
        for name, student in [
            ("widen", widen(m, "stack1_block0_2_conv", 24, seed=0)),
            (
                "deepen",
                deepen(m, "stack1_block1_out", activation="gelu", batch_norm=True),
            ),
            ("enlarge_kernel", enlarge_kernel(m, "stack1_block1_1_conv", 5)),
        ]:
            yield (
                f"mixed_bfloat16 {name} (relative)",
                relative_error(student(x, training=False), ref),
            )
        xh = rng.normal(size=(4, 64, 64, 3)).astype(np.float32)
        out = build_morphhr(m, 64)(xh, training=False)
        ref = m(area_pool(xh, 2), training=False)
        yield "mixed_bfloat16 build_morphhr k=2 (relative)", relative_error(out, ref)
    finally:
        keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for name, value in [*float32_rows(rng), *bfloat16_rows(rng)]:
        print(f"| {name} | {value:.2e} |")
