"""Calibrated serving: the SavedModel applies the eval-split calibration in
the graph (served == ``Calibration.apply`` of the Keras output), keeps the
uncalibrated output, and stores calibration and operating points beside it."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.evaluation.calibration import (
    Calibration,
    fit_calibration,
    operating_points,
)
from morphhr_tf.serving.signatures import (
    PROBABILITIES_UNCALIBRATED,
    PROBABILITY_UNCALIBRATED,
    ServingModule,
    calibrate,
)
from morphhr_tf.serving.warmup import WARMUP_DIR
from morphhr_tf.training.export import export_serving_model

SIZE = 32


def _binary_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    init = keras.initializers.RandomNormal(stddev=3.0)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init)(x)
    return keras.Model(inputs, outputs)


def _images(n, seed):
    rng = np.random.default_rng(seed)
    # Per-image brightness spreads the tiny model's outputs.
    scale = rng.uniform(0.1, 1.0, (n, 1, 1, 1))
    return (rng.random((n, SIZE, SIZE, 1)) * scale).astype(np.float32)


def _fit(model, method, seed=0):
    """A calibration fitted on the model's outputs for random images."""
    probs = np.asarray(model(_images(200, seed), training=False), np.float64)
    rng = np.random.default_rng(seed)
    labels = (rng.random(probs.shape) < probs**2).astype(int)
    return fit_calibration(labels, probs, method), labels, probs


def _served(loaded_or_module, images, signature="predict_image"):
    if signature == "predict_image":
        return loaded_or_module.signatures[signature](images=tf.constant(images))
    pngs = [tf.io.encode_png(np.round(img * 65535).astype(np.uint16)) for img in images]
    return loaded_or_module.signatures[signature](png=tf.stack(pngs))


def test_tf_calibration_equals_numpy_on_edge_values():
    rng = np.random.default_rng(2)
    p = np.concatenate([[0.0, 1.0, 1e-9, 1 - 1e-7, 0.5], rng.random(200)])
    p = p.astype(np.float32)[:, None]
    labels = (rng.random(p.shape) < p).astype(int)
    for method in ("platt", "isotonic"):
        cal = fit_calibration(labels, p, method)
        expected = cal.apply(p.astype(np.float64))
        got = calibrate(tf.constant(p), cal).numpy()
        assert np.max(np.abs(got - expected)) <= 1e-6, method
        knots = np.asarray(cal.params[0].get("x", [0.5]), np.float32)[:, None]
        got = calibrate(tf.constant(knots), cal).numpy()  # exactly on the knots
        assert np.max(np.abs(got - cal.apply(knots))) <= 1e-6, method


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_binary_export_serves_calibrated_probabilities(method, tmp_path):
    model = _binary_model()
    cal, labels, probs = _fit(model, method)
    points = operating_points(labels, cal.apply(probs))
    path = export_serving_model(
        model,
        str(tmp_path / "Format-Serving"),
        calibration=cal,
        operating_points=points,
    )
    loaded = tf.saved_model.load(path)
    assert loaded.calibration_method.numpy().decode() == method
    images = _images(6, seed=9)
    keras_probs = np.asarray(model(images, training=False))
    for signature in ("predict_image", "predict_png"):
        outputs = _served(loaded, images, signature)
        assert set(outputs) == {F.PROBABILITY, PROBABILITY_UNCALIBRATED}
        served = outputs[F.PROBABILITY].numpy()
        raw = outputs[PROBABILITY_UNCALIBRATED].numpy()
        assert served.shape == raw.shape == (6, 1)
        if signature == "predict_image":
            assert np.max(np.abs(raw - keras_probs)) <= 1e-5
        assert np.max(np.abs(served - cal.apply(raw))) <= 1e-5
        assert np.max(np.abs(served - raw)) > 1e-3  # the calibration does act
    # Stored beside the model, before saved_model.pb.
    extra = os.path.join(path, WARMUP_DIR)
    with open(os.path.join(extra, "calibration.json")) as f:
        assert Calibration.from_json(f.read()) == cal
    with open(os.path.join(extra, "operating_points.json")) as f:
        assert json.load(f) == points
    pb = os.stat(os.path.join(path, "saved_model.pb")).st_mtime_ns
    for name in ("calibration.json", "operating_points.json"):
        assert os.stat(os.path.join(extra, name)).st_mtime_ns <= pb


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_multilabel_export_serves_calibrated_named_probabilities(
    method, build_multilabel_model, chest_labels, tmp_path
):
    model = build_multilabel_model()
    cal, _, _ = _fit(model, method, seed=3)
    path = export_serving_model(
        model, str(tmp_path / "m"), label_names=chest_labels, calibration=cal
    )
    assert not os.path.exists(os.path.join(path, WARMUP_DIR, "operating_points.json"))
    loaded = tf.saved_model.load(path)
    images = _images(5, seed=4)
    keras_probs = np.asarray(model(images, training=False))
    outputs = _served(loaded, images)
    assert set(outputs) == {
        F.PROBABILITIES,
        PROBABILITIES_UNCALIBRATED,
        *chest_labels,
    }
    raw = outputs[PROBABILITIES_UNCALIBRATED].numpy()
    served = outputs[F.PROBABILITIES].numpy()
    assert np.max(np.abs(raw - keras_probs)) <= 1e-5
    assert np.max(np.abs(served - cal.apply(keras_probs))) <= 1e-5
    for i, name in enumerate(chest_labels):
        np.testing.assert_array_equal(outputs[name].numpy()[:, 0], served[:, i])
    empty = loaded.signatures["predict_png"](png=tf.constant([], tf.string))
    assert empty[F.PROBABILITIES].shape == (0, len(chest_labels))


def test_calibration_must_fit_the_model_outputs(build_multilabel_model, tmp_path):
    model = build_multilabel_model()
    one_column = Calibration("platt", ({"a": 1.0, "b": 0.0},))
    with pytest.raises(ValueError, match="Calibration of the model's 3 output"):
        ServingModule(model, label_names=["A", "B", "C"], calibration=one_column)
    with pytest.raises(ValueError, match="Calibration of the model's 1 output"):
        ServingModule(_binary_model(), calibration={"a": 1.0, "b": 0.0})
    with pytest.raises(ValueError, match="operating_points must be JSON"):
        export_serving_model(
            _binary_model(), str(tmp_path / "x"), operating_points={"t": float("nan")}
        )
    assert not os.path.exists(tmp_path / "x" / "saved_model.pb")
