import json

import pytest
from tfx import v1 as tfx

from morphhr_tf.training.config import TrainingConfig
from pipelines import pipeline as pipeline_lib


def _pipeline(tmp_path, **kwargs):
    return pipeline_lib.create_pipeline(
        pipeline_name="t",
        pipeline_root=str(tmp_path / "root"),
        data_root=str(tmp_path / "data"),
        serving_model_dir=str(tmp_path / "serving"),
        **kwargs,
    )


def test_create_pipeline_wires_the_components(tmp_path):
    p = _pipeline(tmp_path, training_config={"model": "morphhr"}, auc_lower_bound=0.55)
    assert isinstance(p, tfx.dsl.Pipeline)
    ids = {c.id for c in p.components}
    assert ids == {
        pipeline_lib.EXAMPLE_GEN,
        pipeline_lib.TRAINER,
        pipeline_lib.BASELINE_RESOLVER,
        pipeline_lib.EVALUATOR,
        pipeline_lib.PUSHER,
    }
    comps = {c.id: c for c in p.components}
    trainer = comps[pipeline_lib.TRAINER]
    assert trainer.exec_properties["run_fn"] == pipeline_lib.RUN_FN
    assert '"model": "morphhr"' in trainer.exec_properties["custom_config"]
    evaluator = comps[pipeline_lib.EVALUATOR]
    assert "baseline_model" in evaluator.inputs
    config = json.loads(evaluator.exec_properties["eval_config"])
    assert config["model_specs"][0]["signature_name"] == "serving_default"
    (auc,) = [
        m for m in config["metrics_specs"][0]["metrics"] if m["class_name"] == "AUC"
    ]
    (gate,) = auc["per_slice_thresholds"]
    assert gate["slicing_specs"] == [{}]  # the overall slice only
    assert gate["threshold"]["value_threshold"]["lower_bound"] == 0.55
    assert gate["threshold"]["change_threshold"]["direction"] == "HIGHER_IS_BETTER"
    assert [s.get("feature_keys") for s in config["slicing_specs"]] == [
        None,
        ["view"],
        ["laterality"],
        ["density"],
    ]
    pusher = comps[pipeline_lib.PUSHER]
    assert str(tmp_path / "serving") in pusher.exec_properties["push_destination"]
    assert p.enable_cache


def test_warm_start_feeds_the_latest_model_to_the_trainer(tmp_path):
    p = _pipeline(tmp_path, warm_start=True)
    comps = {c.id: c for c in p.components}
    assert pipeline_lib.WARM_START_RESOLVER in comps
    trainer = comps[pipeline_lib.TRAINER]
    assert "base_model" in trainer.inputs
    assert '"pretrained": "base_model"' in trainer.exec_properties["custom_config"]


def test_a_training_config_is_passed_whole_and_dicts_are_validated(tmp_path):
    config = TrainingConfig(resolution=256, base_resolution=128, augment=False)
    p = _pipeline(tmp_path, training_config=config)
    (trainer,) = [c for c in p.components if c.id == pipeline_lib.TRAINER]
    custom_config = json.loads(trainer.exec_properties["custom_config"])
    assert custom_config == config.to_custom_config()
    assert TrainingConfig.from_custom_config(custom_config) == config
    with pytest.raises(ValueError, match="augment must be a boolean"):
        _pipeline(tmp_path, training_config={"augment": "maybe"})


def test_a_multilabel_config_gates_the_mean_auc_over_its_labels(tmp_path):
    names = ["Effusion", "Mass", "Nodule"]
    p = _pipeline(
        tmp_path,
        source="chestxray14",
        training_config=TrainingConfig(
            task="multilabel", label_names=",".join(names), balance="class_weight"
        ),
        auc_lower_bound=0.55,
    )
    comps = {c.id: c for c in p.components}
    config = json.loads(comps[pipeline_lib.EVALUATOR].exec_properties["eval_config"])
    (spec,) = config["model_specs"]
    assert (spec["label_key"], spec["prediction_key"]) == ("labels", "probabilities")
    per_label, mean = config["metrics_specs"][1:]
    assert per_label["binarize"]["class_ids"]["values"] == [0, 1, 2]
    assert not any("per_slice_thresholds" in m for m in per_label["metrics"])
    assert mean["aggregate"]["macro_average"]
    assert sorted(int(k) for k in mean["aggregate"]["class_weights"]) == [0, 1, 2]
    (auc,) = mean["metrics"]
    (gate,) = auc["per_slice_thresholds"]
    assert gate["threshold"]["value_threshold"]["lower_bound"] == 0.55
