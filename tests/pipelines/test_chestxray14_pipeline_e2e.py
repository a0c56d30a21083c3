"""End to end: the local pipeline on a tiny synthetic ChestX-ray14 tree (the
multilabel task): ingest, train, TFMA with an AUC per finding, the blessing
on the mean AUC, the push; the pushed signatures return 14 named
probabilities equal to the Keras model's (calibrated) to 1e-5."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data.adapters.chestxray14 import FINDINGS
from morphhr_tf.evaluation.calibration import Calibration
from morphhr_tf.training.export import float32_copy
from morphhr_tf.training.trainer import keras_model_path
from pipelines import local_runner
from pipelines import pipeline as pipeline_lib
from pipelines.summary import latest_outputs, open_store

ARGS = [
    "--source", "chestxray14",
    "--patients", "60",
    "--synthetic-rows", "64",
    "--image-size", "64",
    "--base-resolution", "32",
    "--resolution", "64",
    "--width", "4",
    "--base-steps", "6",
    "--train-steps", "6",
    "--auc-lower-bound", "0.0",
    "--beam-workers", "1",
]  # fmt: skip


@pytest.mark.e2e
def test_chestxray14_pipeline_serves_fourteen_named_probabilities(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MORPHHR_SALT", "e2e-cxr14-salt")
    work = tmp_path / "work"
    args = local_runner.parse_args(["--work-dir", str(work), *ARGS])
    summary = local_runner.run(args)
    for node in local_runner.NODE_IDS.values():
        assert summary["states"][node] == "COMPLETE", summary["states"]
    assert summary["rejected"] == 0
    assert summary["training"]["config"]["task"] == "multilabel"

    # TFMA: an AUC per finding and the blessed mean AUC.
    assert list(summary["label_aucs"]) == list(FINDINGS)
    assert 0.0 <= summary["aucs"]["overall"] <= 1.0
    assert summary["blessed"] is True and summary["pushed"] is True
    store = open_store(str(work / "metadata.sqlite"))
    _, outputs = latest_outputs(store, args.pipeline_name, pipeline_lib.EVALUATOR)
    (blessing,) = outputs["blessing"]
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))

    # The pushed model: 14 named probabilities, equal to the Keras model's.
    version_dir = summary["pushed_path"]
    served = tf.saved_model.load(version_dir)
    names = [n.decode() for n in served.label_names.numpy()]
    assert names == list(FINDINGS)
    extra = os.path.join(version_dir, "assets.extra")
    with open(os.path.join(extra, "calibration.json")) as f:
        calibration = Calibration.from_json(f.read())
    with open(os.path.join(extra, "model_card.json")) as f:
        card = json.load(f)
    assert card["model"]["task"] == "multilabel"
    _, outputs = latest_outputs(store, args.pipeline_name, pipeline_lib.TRAINER)
    (model_artifact,) = outputs["model"]
    model = float32_copy(
        keras.saving.load_model(
            keras_model_path(os.path.join(model_artifact.uri, "Format-Serving")),
            compile=False,
        )
    )
    images = tf.random.stateless_uniform([4, 64, 64, 1], seed=[3, 4])
    out = served.signatures["predict_image"](images=images)
    expected = calibration.apply(np.asarray(model(images, training=False), np.float64))
    assert out["probabilities"].shape == (4, 14)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    for j, name in enumerate(FINDINGS):
        np.testing.assert_allclose(out[name][:, 0], expected[:, j], atol=1e-5)
