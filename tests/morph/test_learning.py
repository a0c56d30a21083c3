"""A morphed model keeps learning, and its new parameters get gradients."""

import keras
import numpy as np
import tensorflow as tf

from morphhr_tf.models import resnet18
from morphhr_tf.morph import deepen, enlarge_kernel, widen
from morphhr_tf.morph.testing import randomize_weights


def toy_task(n=32, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 1)).astype(np.float32)
    y = (x[:, : size // 2].mean(axis=(1, 2, 3)) > 0).astype(np.float32)[:, None]
    x[:, : size // 2] += 0.5 * (2 * y[:, None, None] - 1)
    return x, y


def test_morphed_resnet_trains_and_new_parameters_get_gradients():
    keras.utils.set_random_seed(0)
    model = randomize_weights(resnet18((32, 32, 1), width=8), seed=1)
    model = widen(model, "stack3_block1_1_conv", 80, method="netmorph", seed=0)
    model = deepen(model, "stack2_block1_1_bn", activation="tanh", batch_norm=True)
    model = enlarge_kernel(model, "stack0_block0_1_conv", 5)
    x, y = toy_task()

    new = {
        "deepen conv": model.get_layer("stack2_block1_1_bn_deepen_conv").kernel,
        "deepen bn gamma": model.get_layer("stack2_block1_1_bn_deepen_bn").gamma,
        "P-activation a": model.get_layer("stack2_block1_1_bn_deepen_act").alpha,
        "widened conv": model.get_layer("stack3_block1_1_conv").kernel,
        "consumer of new units": model.get_layer("stack3_block1_2_conv").kernel,
        "enlarged kernel": model.get_layer("stack0_block0_1_conv").kernel,
    }
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, [v.value for v in new.values()])
    for (name, _), grad in zip(new.items(), grads):
        assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, name
    # The new units' outgoing (zero) weights get a gradient too.
    consumer_grad = grads[list(new).index("consumer of new units")]
    assert float(tf.reduce_max(tf.abs(consumer_grad[:, :, 64:]))) > 0

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.9 * before, (before, after)
