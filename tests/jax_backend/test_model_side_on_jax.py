"""The model side (`layers`, `morph`, `models`) on the JAX backend, on the CPU:
function preservation, the P-activation's and the lean batch norm's
gradients, the rematerialized views (whole batch and slices) and a compiled training step. No TensorFlow is imported."""

import sys

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from morphhr_tf.layers import LeanBatchNormalization, PActivation
from morphhr_tf.models import build_morphhr, resnet18
from morphhr_tf.models.rematerialize import recompute_front
from morphhr_tf.morph import deepen, enlarge_kernel, widen
from morphhr_tf.morph.testing import max_abs_difference, randomize_weights

TOLERANCE = 1e-5


def _images(n, side, seed=0):
    return (
        np.random.default_rng(seed).uniform(size=(n, side, side, 1)).astype("float32")
    )


def _base():
    return randomize_weights(resnet18((32, 32, 1), width=8), seed=0)


def test_runs_on_jax_without_tensorflow():
    assert keras.backend.backend() == "jax"
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("branch", [None, "antithetic"])
def test_build_morphhr_is_exact_at_the_morph(branch):
    # model(x) == base(area_pool_2(x)), in inference mode, max |diff| < 1e-5.
    base = _base()
    model = build_morphhr(base, 64, detail_branch=branch, seed=0)
    x = _images(3, 64)
    pooled = x.reshape(3, 32, 2, 32, 2, 1).mean(axis=(2, 4))
    diff = max_abs_difference(
        model.predict(x, verbose=0), base.predict(pooled, verbose=0)
    )
    assert diff < TOLERANCE, diff


def test_trunk_morphs_preserve_the_function():
    base = _base()
    x = _images(2, 32, seed=1)
    expected = base.predict(x, verbose=0)
    for morphed in (
        widen(base, "stack1_block0_1_conv", 24, seed=0),
        deepen(base, "stack2_block0_out"),
        enlarge_kernel(base, "stack0_block0_1_conv", 5),
    ):
        diff = max_abs_difference(morphed.predict(x, verbose=0), expected)
        assert diff < TOLERANCE, diff


@pytest.mark.parametrize("alpha", [0.0, 0.37, 1.0, 1.6])
def test_p_relu_gradient_equals_automatic_differentiation(alpha):
    layer = PActivation("relu")
    layer.build((2, 5, 5, 3))
    layer.set_weights([np.float32(alpha)])
    x = np.random.default_rng(2).normal(0.0, 2.0, (2, 5, 5, 3)).astype("float32")
    x[0, 0, 0, :] = 0.0
    g = np.random.default_rng(3).normal(size=x.shape).astype("float32")

    def through_layer(x, a):
        (out, _) = layer.stateless_call([a], [], x)
        return jnp.sum(out * g)

    def formula(x, a):
        return jnp.sum((x + a * (jax.nn.relu(x) - x)) * g)

    a = jnp.float32(alpha)
    got = jax.grad(through_layer, argnums=(0, 1))(x, a)
    want = jax.grad(formula, argnums=(0, 1))(x, a)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), atol=1e-6)
    np.testing.assert_allclose(float(got[1]), float(want[1]), rtol=1e-5)


def _batch_norm_step(cls, x, g):
    """d(sum(y * g)) / d(x, gamma, beta) and the moving statistics after one
    training call of a batch norm of class `cls`."""
    layer = cls(momentum=0.9)
    layer.build(x.shape)
    layer.gamma.assign(np.linspace(0.5, 1.5, x.shape[-1]).astype("float32"))
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(x, trainable):
        out, moved = layer.stateless_call(trainable, non_trainable, x, training=True)
        return jnp.sum(out * g), moved

    (_, moved), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        x, trainable
    )
    return [np.asarray(t) for t in (grads[0], *grads[1], *moved)]


def test_lean_batch_norm_equals_keras_batch_norm():
    rng = np.random.default_rng(4)
    x = (2.0 + 3.0 * rng.standard_normal((4, 6, 5, 3))).astype("float32")
    g = rng.standard_normal(x.shape).astype("float32")
    want = _batch_norm_step(keras.layers.BatchNormalization, x, g)
    got = _batch_norm_step(LeanBatchNormalization, x, g)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _loss_and_gradients(model, trainable, non_trainable, x):
    def loss(trainable):
        out, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return jnp.sum(out)

    return jax.value_and_grad(loss)(trainable)


@pytest.mark.parametrize("chunks", [1, 3])
def test_rematerialized_view_gives_the_same_values_and_gradients(chunks):
    # jax.checkpoint under the view (chunks=1: the first front block; 3: the
    # whole front, jax.lax.map over 3 slices of a batch of 5, padded to 6):
    # loss and every gradient as the model's.
    model = build_morphhr(_base(), 64, detail_branch="antithetic", seed=0)
    # detail_blocks: on JAX the sliced detector blocks call their layers.
    view = recompute_front(model, chunks, detail_blocks=True)
    x = _images(5, 64, seed=4)
    values = {}
    for name, m in (("model", model), ("view", view)):
        trainable = [v.value for v in m.trainable_variables]
        non_trainable = [v.value for v in m.non_trainable_variables]
        loss, grads = _loss_and_gradients(m, trainable, non_trainable, x)
        paths = [v.path for v in m.trainable_variables]
        values[name] = (float(loss), dict(zip(paths, grads, strict=True)))
    assert values["model"][0] == pytest.approx(values["view"][0], abs=1e-6)
    assert values["model"][1].keys() == values["view"][1].keys()
    worst = max(
        max_abs_difference(values["model"][1][p], values["view"][1][p])
        for p in values["model"][1]
    )
    # Slices sum the weight gradients in another order: float32 rounding,
    # relative to the largest gradient.
    scale = max(float(np.abs(g).max()) for g in values["model"][1].values())
    assert worst < (1e-6 if chunks == 1 else 1e-5 * scale), (worst, scale)


@pytest.mark.parametrize("chunks", [1, 3])
def test_the_view_trains_with_a_compiled_step(chunks):
    model = build_morphhr(_base(), 64, seed=0)
    view = recompute_front(model, chunks)
    view.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    before = np.asarray(model.get_layer("morphhr_front_0_conv").kernel).copy()
    history = view.fit(
        _images(4, 64, seed=5), np.array([[0], [1], [0], [1]], "float32"),
        epochs=2, verbose=0,
    )  # fmt: skip
    assert all(np.isfinite(history.history["loss"]))
    after = np.asarray(model.get_layer("morphhr_front_0_conv").kernel)
    assert np.abs(after - before).max() > 0
