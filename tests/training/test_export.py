import os

import keras
import numpy as np
import tensorflow as tf

from morphhr_tf.models import build_morphhr, resnet18
from morphhr_tf.serving.signatures import SIGNATURE_NAMES
from morphhr_tf.serving.warmup import read_warmup_requests
from morphhr_tf.training.export import export_serving_model, float32_copy


def _mixed_morphhr():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        base = resnet18((32, 32, 1), width=4)
        return build_morphhr(base, 64, front_channels=4)
    finally:
        keras.config.set_dtype_policy(previous)


def test_float32_copy_computes_in_float32_with_the_same_weights():
    model = _mixed_morphhr()
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
    copy = float32_copy(model)
    assert {layer.compute_dtype for layer in copy.layers} == {"float32"}
    for a, b in zip(model.weights, copy.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)
    y_mixed = np.asarray(model(x, training=False), np.float32)
    y_32 = np.asarray(copy(x, training=False))
    assert y_32.dtype == np.float32
    np.testing.assert_allclose(y_32, y_mixed, atol=3e-2)


def test_exported_saved_model_is_float32_with_three_signatures(tmp_path):
    model = _mixed_morphhr()
    path = export_serving_model(model, str(tmp_path / "Format-Serving"))
    loaded = tf.saved_model.load(path)
    assert set(SIGNATURE_NAMES) <= set(loaded.signatures)
    assert int(loaded.resolution.numpy()) == 64
    # TF Serving warm-up: one request per signature (tests/serving/test_warmup.py).
    warmup = read_warmup_requests(path)
    assert sorted(r.predict_log.request.model_spec.signature_name for r in warmup) == (
        sorted(SIGNATURE_NAMES)
    )
    graph = loaded.signatures["predict_image"].graph.as_graph_def()
    ops = [n for n in graph.node] + [
        n for f in graph.library.function for n in f.node_def
    ]
    dtypes = {n.attr["T"].type for n in ops if "T" in n.attr}
    assert tf.bfloat16.as_datatype_enum not in dtypes
    # Binary, no calibration: the outputs and files of before multi-label.
    assert not hasattr(loaded, "label_names")
    assert not hasattr(loaded, "calibration_method")
    assert os.listdir(os.path.join(path, "assets.extra")) == [
        "tf_serving_warmup_requests"
    ]
    outputs = loaded.signatures["predict_image"].structured_outputs
    assert set(outputs) == {"probability"}


def test_mixed_precision_multilabel_model_exports_float32_named_outputs(tmp_path):
    names = ["Effusion", "Mass"]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        inputs = keras.Input((32, 32, 1))
        x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(2, activation="sigmoid", dtype="float32")(x)
        model = keras.Model(inputs, x)
    finally:
        keras.config.set_dtype_policy(previous)
    path = export_serving_model(model, str(tmp_path / "m"), label_names=names)
    loaded = tf.saved_model.load(path)
    assert [n.decode() for n in loaded.label_names.numpy()] == names
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    outputs = loaded.signatures["predict_image"](images=tf.constant(x))
    assert set(outputs) == {"probabilities", *names}
    assert outputs["probabilities"].dtype == tf.float32
    expected = np.asarray(float32_copy(model)(x, training=False))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
