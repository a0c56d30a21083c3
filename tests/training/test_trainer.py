import json
import os

import numpy as np
import pytest
import tensorflow as tf

from morphhr_tf.training import trainer


class FnArgs:
    def __init__(self, splits, out, custom_config, steps=3, base_model=None):
        self.custom_config = custom_config
        self.train_steps = steps
        self.train_files = [splits["train"]]
        self.eval_files = [splits["eval"]]
        self.serving_model_dir = os.path.join(out, "model", "Format-Serving")
        self.model_run_dir = os.path.join(out, "model_run")
        self.base_model = base_model


TINY = dict(base_resolution=32, resolution=64, width=4, epochs=1, batch_size=4)


def _summary(args):
    with open(os.path.join(args.model_run_dir, trainer.SUMMARY_FILE)) as f:
        return json.load(f)


@pytest.mark.slow
def test_morphhr_run_fn_trains_both_stages_and_exports(tiny_splits, tmp_path):
    args = FnArgs(tiny_splits, str(tmp_path), dict(TINY, model="morphhr", base_steps=3))
    trainer.run_fn(args)
    summary = _summary(args)
    assert summary["precision"] in ("mixed_bfloat16", "float32", "mixed_float16")
    assert summary["auc_before_morph"] == pytest.approx(summary["auc_after_morph"])
    assert summary["max_abs_diff_at_morph"] < 1e-5
    assert 0.0 <= summary["auc_final"] <= 1.0
    assert len(summary["stage1_history"]["loss"]) == 1
    assert os.path.exists(os.path.join(args.serving_model_dir, "saved_model.pb"))
    assert os.path.exists(trainer.keras_model_path(args.serving_model_dir))
    events = tf.io.gfile.glob(os.path.join(args.model_run_dir, "*", "*", "events*"))
    assert events, "no TensorBoard event files"
    loaded = tf.saved_model.load(args.serving_model_dir)
    probability = loaded.signatures["predict_image"](images=tf.zeros([2, 64, 64, 1]))
    assert probability["probability"].shape == (2, 1)
    # Calibrated on the eval split (Platt by default), with a model card.
    assert summary["calibration"]["method"] == "platt"
    assert probability["probability_uncalibrated"].shape == (2, 1)
    levels = summary["levels"]
    assert levels["image"]["n"] == 12 and levels["images_left_out"] == 0
    assert levels["breast"]["n"] == levels["exam"]["n"] == 12  # a patient per image
    extra = os.path.join(args.serving_model_dir, "assets.extra")
    with open(os.path.join(extra, "model_card.json")) as f:
        card = json.load(f)
    assert card["performance_eval_split"]["levels"]["exam"]["n"] == 12
    assert {r["slice"] for r in card["performance_eval_split"]["slices"]} >= {
        "view=CC",
        "view=MLO",
    }


@pytest.mark.slow
def test_baseline_and_warm_start(tiny_splits, tmp_path):
    first = FnArgs(tiny_splits, str(tmp_path / "a"), dict(TINY, model="resnet18"))
    trainer.run_fn(first)
    assert "auc_after_morph" not in _summary(first)
    second = FnArgs(
        tiny_splits,
        str(tmp_path / "b"),
        dict(TINY, model="resnet18", pretrained="base_model"),
        base_model=first.serving_model_dir,
    )
    trainer.run_fn(second)
    summary = _summary(second)
    assert "auc_warm_start" in summary
    x = np.random.default_rng(0).random((1, 64, 64, 1)).astype(np.float32)
    a = tf.saved_model.load(first.serving_model_dir).signatures["predict_image"]
    b = tf.saved_model.load(second.serving_model_dir).signatures["predict_image"]
    # Warm-started weights moved away from the first model's, but started there.
    assert a(images=x)["probability"].shape == b(images=x)["probability"].shape


def test_pretrained_path_of_unknown_kind_is_refused(tiny_splits, tmp_path):
    args = FnArgs(
        tiny_splits,
        str(tmp_path),
        dict(TINY, model="morphhr", pretrained="weights.bin"),
    )
    with pytest.raises(ValueError, match="weights.bin"):
        trainer.run_fn(args)


def _keras_weights(args):
    import keras

    model = keras.saving.load_model(
        trainer.keras_model_path(args.serving_model_dir), compile=False
    )
    return model.get_weights()


def _max_weight_difference(first, second) -> float:
    """max |a - b| over two models' weight lists (0 for empty weights)."""
    assert len(first) == len(second)
    return max(
        (float(np.max(np.abs(a - b))) for a, b in zip(first, second) if a.size),
        default=0.0,
    )


@pytest.mark.slow
def test_the_same_seed_trains_the_same_weights_twice(tiny_splits, tmp_path):
    """Two runs in one process from one seed: every weight equal (max |diff| == 0),
    both stages of MorphHR, balanced sampling and augmentation on."""
    config = dict(TINY, model="morphhr", base_steps=4, balance="sample", seed=3)
    runs = [FnArgs(tiny_splits, str(tmp_path / name), config, steps=4) for name in "ab"]
    for args in runs:
        trainer.run_fn(args)
    first, second = (_keras_weights(args) for args in runs)
    assert _max_weight_difference(first, second) == 0.0
    assert _summary(runs[0])["auc_final"] == _summary(runs[1])["auc_final"]


@pytest.mark.slow
def test_recomputing_the_front_trains_the_same_weights(tiny_splits, tmp_path):
    """Stage 2 fitted through the rematerialized views or the model itself.
    The first front block recomputed for the whole batch
    (``front_recompute_chunks=1``): every weight equal (max |diff| == 0).
    The whole front recomputed in 4 slices of the batch (the default), and
    with the detail branch's full-resolution blocks as well (whose view
    lists the variables in another order: the saved optimizer state must
    still load): every weight within 1e-5 of the plain run's after 3 steps (the weight
    gradients are summed in another order). In float32: under bfloat16 each
    slice's weight gradient is rounded to 8 bits before the sum, as the whole
    batch's is once, and Adam's first steps (about the sign of each
    gradient) turn that rounding into differences of up to the learning
    rate. The saved Keras model keeps its optimizer and its state either
    way."""
    import keras

    config = dict(TINY, model="morphhr", base_steps=2, seed=5, precision="float32")
    variants = {
        "plain": dict(rematerialize_front=False),
        "first_block": dict(front_recompute_chunks=1),
        "sliced": {},
        "layers_detail": dict(slice_detail_blocks=False),
    }
    runs = {
        name: FnArgs(tiny_splits, str(tmp_path / name), dict(config, **extra), steps=3)
        for name, extra in variants.items()
    }
    for args in runs.values():
        trainer.run_fn(args)
    weights = {name: _keras_weights(args) for name, args in runs.items()}
    assert _max_weight_difference(weights["first_block"], weights["plain"]) == 0.0
    for name in ("sliced", "layers_detail"):
        difference = _max_weight_difference(weights[name], weights["plain"])
        assert difference < 1e-5, (name, difference)
    for args in runs.values():
        saved = keras.saving.load_model(
            trainer.keras_model_path(args.serving_model_dir)
        )
        assert int(saved.optimizer.iterations.numpy()) == 3


def test_tensorboard_gets_about_fifty_points_per_stage():
    from morphhr_tf.training.stages import tensorboard_every

    assert tensorboard_every(600) == 12
    assert tensorboard_every(10) == 1
    assert 600 // tensorboard_every(600) == 50


@pytest.mark.parametrize("enabled", [True, False])
def test_stage_two_gives_the_p_activations_the_xla_setting(enabled):
    from morphhr_tf.layers import PActivation
    from morphhr_tf.models import build_morphhr, resnet18
    from morphhr_tf.training.config import TrainingConfig

    model = build_morphhr(resnet18((16, 16, 1), width=4), 32, front_channels=2)
    layers = [la for la in model.layers if isinstance(la, PActivation)]
    assert layers and all(la.xla_kernels for la in layers)
    config = TrainingConfig(
        base_resolution=16, resolution=32, width=4, xla_activations=enabled
    )
    trainer._training_view(model, config, tf.distribute.get_strategy())
    assert [la.xla_kernels for la in layers] == [enabled] * len(layers)
