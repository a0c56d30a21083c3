"""The multilabel task through training: multi-hot labels in, one sigmoid per
label out, a loss weighted per label, per-label AUCs in the summary and a
morph that preserves every output."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.data.tfrecord_codec import encode_example
from morphhr_tf.training import trainer
from morphhr_tf.training.config import TrainingConfig
from morphhr_tf.training.input_pipeline import count_label_matrix, make_dataset
from morphhr_tf.training.losses import (
    LabelWeightedBinaryCrossentropy,
    balancing_weights,
)
from morphhr_tf.training.strategy import select_strategy

NAMES = ("Big", "Small", "Rare")


def _write(path: str, n: int, size: int, seed: int) -> np.ndarray:
    """n examples: label 0 a large bright disc, 1 a small bright dot, 2 both
    rarely; returns the multi-hot labels written."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    labels = np.zeros((n, 3), np.int64)
    yy, xx = np.mgrid[:size, :size]
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(n):
            y = [int(i % 2 == 0), int(i % 3 == 0), int(i % 5 == 0)]
            image = rng.uniform(0.0, 0.3, (size, size)).astype(np.float32)
            if y[0]:
                image[
                    (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
                ] += 0.4
            if y[1]:
                r, c = rng.integers(4, size - 4, 2)
                image[r : r + 2, c : c + 2] = 1.0
            labels[i] = y
            writer.write(
                encode_example(
                    np.clip(image, 0.0, 1.0),
                    label=int(any(y)),
                    patient_key=f"p{seed}-{i}",
                    image_key=f"i{seed}-{i}",
                    view="PA",
                    dataset="chestxray14",
                    labels=y,
                )
            )
    return labels


@pytest.fixture
def multi_splits(tmp_path):
    root = tmp_path / "examples"
    train = _write(str(root / "Split-train" / "data-00000.gz"), 30, 64, seed=1)
    _write(str(root / "Split-eval" / "data-00000.gz"), 20, 64, seed=2)
    return {
        "train": str(root / "Split-train" / "*"),
        "eval": str(root / "Split-eval" / "*"),
        "train_labels": train,
    }


def _config(**kwargs) -> TrainingConfig:
    base = dict(
        task="multilabel",
        label_names=",".join(NAMES),
        balance="class_weight",
        base_resolution=32,
        resolution=64,
        width=4,
        epochs=1,
        batch_size=4,
        base_steps=2,
    )
    return TrainingConfig(**{**base, **kwargs})


def test_counts_and_batches_are_multi_hot(multi_splits):
    n, positives = count_label_matrix(multi_splits["train"], 3)
    assert n == 30
    assert positives == multi_splits["train_labels"].sum(axis=0).tolist()
    ds = make_dataset(
        multi_splits["train"], resolution=32, batch_size=5, training=False, num_labels=3
    )
    images, labels = next(iter(ds))
    assert images.shape == (5, 32, 32, 1) and labels.shape == (5, 3)
    np.testing.assert_array_equal(labels.numpy(), multi_splits["train_labels"][:5])


def test_binary_records_are_refused_with_a_reason(tiny_splits):
    with pytest.raises(ValueError, match="no 'labels' feature"):
        count_label_matrix(tiny_splits["train"], 3)
    ds = make_dataset(
        tiny_splits["train"], resolution=32, batch_size=4, training=False, num_labels=3
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="multi-label source"):
        next(iter(ds))


def test_weighted_loss_equals_bce_with_unit_weights_and_weights_per_label():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=(8, 3)) < 0.4).astype("float32")
    p = rng.uniform(0.05, 0.95, size=(8, 3)).astype("float32")
    unit = LabelWeightedBinaryCrossentropy([1.0] * 3, [1.0] * 3)
    bce = keras.losses.BinaryCrossentropy()
    assert abs(float(unit(y, p)) - float(bce(y, p))) < 1e-6
    pos_w, neg_w = balancing_weights(8, y.sum(axis=0).astype(int).tolist())
    weighted = LabelWeightedBinaryCrossentropy(pos_w, neg_w)
    eps = 1e-7
    elem = -(y * np.log(np.clip(p, eps, 1)) + (1 - y) * np.log(np.clip(1 - p, eps, 1)))
    w = y * np.array(pos_w) + (1 - y) * np.array(neg_w)
    assert abs(float(weighted(y, p)) - float((w * elem).mean())) < 1e-5
    # Each label's positives and negatives weigh the same in all.
    for j in range(3):
        col = y[:, j]
        assert (col * pos_w[j]).sum() == pytest.approx(((1 - col) * neg_w[j]).sum())
    again = LabelWeightedBinaryCrossentropy.from_config(weighted.get_config())
    assert float(again(y, p)) == pytest.approx(float(weighted(y, p)))


def test_a_label_lacking_a_class_keeps_unit_weights():
    pos_w, neg_w = balancing_weights(10, [2, 0, 10])
    assert (pos_w, neg_w) == ([2.5, 1.0, 1.0], [0.625, 1.0, 1.0])
    with pytest.raises(ValueError, match="positives must lie in"):
        balancing_weights(10, [11])


def test_config_refuses_sample_balance_and_missing_names():
    with pytest.raises(ValueError, match="balance='class_weight'"):
        _config(balance="sample")
    with pytest.raises(ValueError, match="needs label_names"):
        _config(label_names="")


@pytest.mark.slow
def test_morphhr_trains_every_label_and_the_morph_preserves_each(
    multi_splits, tmp_path
):
    config = _config()
    keras.utils.set_random_seed(0)
    model, summary, _ = trainer.train(
        config,
        train_files=[multi_splits["train"]],
        eval_files=[multi_splits["eval"]],
        steps=3,
        log_dir=str(tmp_path / "logs"),
        strategy=select_strategy("one_device"),
    )
    assert model.output.shape[-1] == 3
    assert model.get_layer("predictions").get_config()["activation"] == "sigmoid"
    assert summary["max_abs_diff_at_morph"] < 1e-5
    assert summary["auc_before_morph"] == pytest.approx(summary["auc_after_morph"])
    assert set(summary["per_label_auc"]) == set(NAMES)
    assert set(summary["train_label_positives"]) == set(NAMES)
    aucs = [v for v in summary["per_label_auc"].values() if not np.isnan(v)]
    assert summary["auc_final"] == pytest.approx(np.mean(aucs))
    assert len(summary["resolution_gain"]["per_label"]) == 3


@pytest.mark.slow
def test_run_fn_exports_named_calibrated_probabilities_and_a_model_card(
    multi_splits, tmp_path
):
    import json

    from test_trainer import FnArgs

    from morphhr_tf.evaluation.calibration import Calibration
    from morphhr_tf.training.export import float32_copy

    config = _config(model="resnet18", resolution=32, base_resolution=32)
    args = FnArgs(multi_splits, str(tmp_path), config.to_custom_config(), steps=4)
    trainer.run_fn(args)
    serving = args.serving_model_dir
    extra = os.path.join(serving, "assets.extra")
    with open(os.path.join(extra, "calibration.json")) as f:
        calibration = Calibration.from_json(f.read())
    with open(os.path.join(extra, "model_card.json")) as f:
        card = json.load(f)
    assert card["model"]["label_names"] == list(NAMES)
    assert [
        row["label"] for row in card["performance_eval_split"]["per_label"]
    ] == list(NAMES)
    assert os.path.getsize(os.path.join(extra, "model_card.md")) > 500
    # The served model computes in float32, whatever the training policy.
    model = float32_copy(
        keras.saving.load_model(trainer.keras_model_path(serving), compile=False)
    )
    loaded = tf.saved_model.load(serving)
    images = tf.random.stateless_uniform([3, 32, 32, 1], seed=[1, 2])
    out = loaded.signatures["predict_image"](images=images)
    keras_p = np.asarray(model(images, training=False), np.float64)
    served = out["probabilities"].numpy()
    assert served.shape == (3, 3)
    np.testing.assert_allclose(served, calibration.apply(keras_p), atol=1e-5)
    np.testing.assert_allclose(out["probabilities_uncalibrated"], keras_p, atol=1e-5)
    for j, name in enumerate(NAMES):
        np.testing.assert_allclose(out[name].numpy()[:, 0], served[:, j], atol=1e-6)
    with open(os.path.join(args.model_run_dir, trainer.SUMMARY_FILE)) as f:
        summary = json.load(f)
    assert len(summary["calibration"]["ece_before"]) == 3


def test_chest_images_are_never_flipped_by_augmentation():
    from morphhr_tf.training.input_pipeline import augment_image

    image = np.zeros((32, 32, 1), np.float32)
    image[:8] = 1.0  # bright top rows: the lung apices are up
    flipped = {True: 0, False: 0}
    for i in range(40):
        for flip in (True, False):
            out = augment_image(tf.constant(image), tf.constant([7, i]), flip=flip)
            top, bottom = (
                float(out[:12].numpy().mean()),
                float(out[-12:].numpy().mean()),
            )
            flipped[flip] += bottom > top
    assert flipped[False] == 0
    assert 10 <= flipped[True] <= 30  # mammograms: about half
