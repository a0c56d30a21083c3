import keras
import numpy as np
import pytest

from morphhr_tf.morph.graph import Graph, rebuild
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

L = keras.layers


def two_branch():
    inputs = keras.Input((6,), name="x")
    a = L.Dense(4, name="a")(inputs)
    b = L.Dense(4, name="b")(inputs)
    outputs = L.Dense(1, name="out")(L.Add(name="add")([a, b]))
    return randomize_weights(keras.Model(inputs, outputs, name="two_branch"))


def test_graph_producers_and_consumers():
    model = two_branch()
    graph = Graph(model)
    a = graph.call_of("a")
    assert graph.producer(a.outputs[0]) is a
    assert [c.name for c in graph.consumers(a.outputs[0])] == ["add"]
    assert sorted(c.name for c in graph.consumers(model.inputs[0])) == ["a", "b"]
    assert graph.producer(model.inputs[0]) is None


def test_rebuild_copies_layers_and_weights_without_sharing():
    model = two_branch()
    clone = rebuild(
        model,
        insert_after={"add": [L.Dense(4, name="extra")]},
        weights={"extra": [np.eye(4, dtype=np.float32), np.zeros(4, np.float32)]},
    )
    assert clone.name == "two_branch" and clone.input.name == model.input.name
    assert clone.get_layer("a") is not model.get_layer("a")
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    assert max_abs_difference(clone(x), model(x)) <= 1e-6
    clone.get_layer("a").kernel.assign(np.zeros((6, 4), np.float32))
    assert max_abs_difference(clone(x), model(x)) > 1e-3  # no shared weights


def test_graph_refuses_shared_layers():
    inputs = keras.Input((4,))
    shared = L.Dense(4, name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.raises(
        ValueError, match="'shared' \\(Dense\\) is called more than once"
    ):
        Graph(model)
