"""Chains of random morphs stay function-preserving."""

import keras
import numpy as np
import pytest

from morphhr_tf.models import resnet18
from morphhr_tf.morph import deepen, enlarge_kernel, widen
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

ACTIVATIONS = ["relu", "gelu", "tanh", "elu", "swish"]


def random_morph(model, rng):
    convs = [
        layer
        for layer in model.layers
        if type(layer) is keras.layers.Conv2D and layer.name != "conv1_conv"
    ]
    layer = convs[rng.integers(len(convs))]
    op = rng.choice(["widen_net2net", "widen_netmorph", "deepen", "enlarge_kernel"])
    if op.startswith("widen"):
        method = op.split("_")[1]
        new_width = layer.filters + int(rng.integers(1, 9))
        return widen(
            model, layer.name, new_width, method=method, seed=int(rng.integers(99))
        )
    if op == "deepen":
        activation = ACTIVATIONS[rng.integers(len(ACTIVATIONS))]
        return deepen(
            model, layer.name, activation=activation, batch_norm=bool(rng.integers(2))
        )
    if layer.padding == "same":
        return enlarge_kernel(model, layer.name, layer.kernel_size[0] + 2)
    return deepen(model, layer.name, activation="relu")


@pytest.mark.parametrize("seed", [0, 1])
def test_five_random_morphs_on_resnet18(seed):
    rng = np.random.default_rng(seed)
    backbone = resnet18((32, 32, 3), width=8, include_top=False, pooling="avg")
    head = keras.layers.Dense(6, name="head")(backbone.output)
    teacher = randomize_weights(keras.Model(backbone.input, head), seed=seed)
    x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    reference = teacher(x, training=False)
    student = teacher
    for _ in range(5):
        student = random_morph(student, rng)
    assert len(student.layers) >= len(teacher.layers)
    assert student.count_params() > teacher.count_params()
    assert max_abs_difference(student(x, training=False), reference) <= 1e-4
