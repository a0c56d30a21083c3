import keras
import numpy as np
import pytest

from morphhr_tf.training.schedule import LayerwiseAdamW, make_learning_rate


def test_cosine_schedule_warms_up_then_decays():
    schedule = make_learning_rate(1e-3, 100, kind="cosine", warmup_fraction=0.1)
    lrs = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert lrs[0] == pytest.approx(0.0)
    assert lrs[1] == pytest.approx(5e-4, rel=1e-3)
    assert lrs[2] == pytest.approx(1e-3, rel=1e-3)
    assert lrs[2] > lrs[3] > lrs[4]
    assert lrs[4] == pytest.approx(1e-5, rel=1e-2)
    assert make_learning_rate(3e-4, 10, kind="constant") == 3e-4
    with pytest.raises(ValueError, match="linear"):
        make_learning_rate(1e-3, 10, kind="linear")


def _model():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="front")(inputs)
    outputs = keras.layers.Dense(1, name="trunk")(x)
    return keras.Model(inputs, outputs)


def test_layerwise_multipliers_scale_each_layers_step():
    model = _model()
    before = {w.path: np.array(w) for w in model.weights}
    optimizer = LayerwiseAdamW(
        learning_rate=0.1,
        weight_decay=0.0,
        lr_multipliers={"front": 1.0},
        default_multiplier=0.0,
    )
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, np.ones((16, 1), "float32"), epochs=1, batch_size=16, verbose=0)
    after = {w.path: np.array(w) for w in model.weights}
    assert np.max(np.abs(after["front/kernel"] - before["front/kernel"])) > 1e-3
    np.testing.assert_array_equal(after["trunk/kernel"], before["trunk/kernel"])
    np.testing.assert_array_equal(after["trunk/bias"], before["trunk/bias"])


def test_layerwise_adamw_config_round_trip():
    optimizer = LayerwiseAdamW(
        learning_rate=1e-3, lr_multipliers={"a": 1.0}, default_multiplier=0.1
    )
    clone = LayerwiseAdamW.from_config(optimizer.get_config())
    assert clone.lr_multipliers == {"a": 1.0}
    assert clone.default_multiplier == 0.1
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, LayerwiseAdamW)
