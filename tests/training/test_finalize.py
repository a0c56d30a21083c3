"""finalize(): the calibration, operating points and model card of a trained
model, from the trainer's eval pass or from its own."""

import json
import os

import keras
import numpy as np
import pytest

from morphhr_tf.models import resnet18
from morphhr_tf.training import finalize as finalize_module
from morphhr_tf.training import trainer
from morphhr_tf.training.checks import predict
from morphhr_tf.training.config import TrainingConfig
from morphhr_tf.training.finalize import finalize
from morphhr_tf.training.input_pipeline import make_dataset


def _model_and_config():
    keras.utils.set_random_seed(0)
    model = resnet18((64, 64, 1), width=4)
    config = TrainingConfig(model="resnet18", resolution=64, width=4, batch_size=4)
    return model, config


def test_the_trainers_eval_pass_gives_the_card_finalize_computes_itself(
    tiny_splits,
):
    model, config = _model_and_config()
    eval_files = [tiny_splits["eval"]]
    own = finalize(model, {}, config, eval_files)
    # The trainer's pass: its eval dataset, batched at the training batch size.
    dataset = make_dataset(eval_files, resolution=64, batch_size=4, training=False)
    eval_pass = predict(model, dataset)
    given = finalize(model, {}, config, eval_files, eval_pass=eval_pass)
    # The same records in the same order (finalize's own pass batches 32).
    own_pass = predict(
        model, make_dataset(eval_files, resolution=64, batch_size=32, training=False)
    )
    np.testing.assert_array_equal(own_pass[1], eval_pass[1])
    assert np.max(np.abs(own_pass[0] - eval_pass[0])) < 1e-6
    # Platt's fit moves with the probabilities' last digits, no further.
    a, b = own["calibration"].params[0], given["calibration"].params[0]
    assert a["a"] == pytest.approx(b["a"], rel=1e-3)
    assert a["b"] == pytest.approx(b["b"], rel=1e-3, abs=1e-4)
    card_a, card_b = own["model_card"], given["model_card"]
    perf_a, perf_b = card_a["performance_eval_split"], card_b["performance_eval_split"]
    assert perf_a["levels"]["image"]["n"] == perf_b["levels"]["image"]["n"] == 12
    assert perf_a["levels"]["image"]["auc"] == pytest.approx(
        perf_b["levels"]["image"]["auc"], abs=1e-9
    )
    assert [s["slice"] for s in perf_a["slices"]] == [
        s["slice"] for s in perf_b["slices"]
    ]


def test_an_eval_pass_of_other_records_is_refused(tiny_splits):
    model, config = _model_and_config()
    probs = np.full(5, 0.5)
    labels = np.array([0, 1, 0, 1, 0])
    with pytest.raises(
        ValueError, match="eval_pass holds 5 records, the eval files 12"
    ):
        finalize(model, {}, config, [tiny_splits["eval"]], eval_pass=(probs, labels))
    with pytest.raises(ValueError, match="4 probabilities and 5 labels"):
        finalize(
            model, {}, config, [tiny_splits["eval"]], eval_pass=(probs[:4], labels)
        )


@pytest.mark.slow
def test_run_fn_predicts_the_eval_split_once_after_training(
    tiny_splits, tmp_path, monkeypatch
):
    from test_trainer import TINY, FnArgs

    def refuse(*args, **kwargs):
        raise AssertionError("finalize predicted the eval split again")

    monkeypatch.setattr(finalize_module, "predict", refuse)
    args = FnArgs(tiny_splits, str(tmp_path), dict(TINY, model="resnet18"))
    trainer.run_fn(args)
    with open(os.path.join(args.model_run_dir, trainer.SUMMARY_FILE)) as f:
        summary = json.load(f)
    # The card's image-level AUC is the trainer's final eval AUC.
    assert summary["levels"]["image"]["n"] == 12
    assert summary["calibration"]["method"] == "platt"
