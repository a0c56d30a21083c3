"""End to end: the local pipeline on a tiny synthetic set, read back from MLMD."""

import glob
import os

import pytest
import tensorflow as tf

from pipelines import local_runner
from pipelines import pipeline as pipeline_lib
from pipelines.summary import latest_outputs, node_executions, open_store

ARGS = [
    "--patients", "20",
    "--eval-fraction", "0.4",
    "--synthetic-rows", "128",
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
def test_local_pipeline_runs_blesses_pushes_and_reruns_from_cache(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MORPHHR_SALT", "e2e-test-salt")  # a fixed patient split
    work = tmp_path / "work"
    args = local_runner.parse_args(["--work-dir", str(work), *ARGS])
    summary = local_runner.run(args)
    name = args.pipeline_name
    store = open_store(str(work / "metadata.sqlite"))

    # Every component ran once and completed.
    for node in (*local_runner.NODE_IDS.values(), pipeline_lib.BASELINE_RESOLVER):
        executions = node_executions(store, name, node)
        assert len(executions) == 1, node
    for node in local_runner.NODE_IDS.values():
        assert summary["states"][node] == "COMPLETE", summary["states"]

    # Examples: the CBIS splits, counts on the artifact matching the files.
    _, outputs = latest_outputs(store, name, pipeline_lib.EXAMPLE_GEN)
    (examples,) = outputs["examples"]
    assert (
        examples.properties["split_names"].string_value == '["train", "eval", "test"]'
    )
    listed = 0
    for split in ("train", "eval", "test"):
        files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
        n = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
        assert n == examples.custom_properties[f"num_examples_{split}"].int_value > 0
        assert n == summary["counts"][split]["examples"]
        listed += n
    assert summary["rejected"] == 0  # every synthetic file is a valid mammogram

    # Evaluation: an AUC and a blessing decision; the model was blessed.
    _, outputs = latest_outputs(store, name, pipeline_lib.EVALUATOR)
    (blessing,) = outputs["blessing"]
    assert blessing.custom_properties["blessed"].int_value == 1
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert 0.0 <= summary["aucs"]["overall"] <= 1.0
    assert {"view=CC", "view=MLO"} <= set(summary["aucs"])
    assert summary["blessed"] is True
    assert os.path.exists(summary["roc_png"])

    # Pushed in TF Serving's layout: <serving_model_dir>/<integer version>/.
    assert summary["pushed"] is True
    version_dir = summary["pushed_path"]
    assert os.path.basename(version_dir).isdigit()
    assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
    served = tf.saved_model.load(version_dir)
    assert {"serving_default", "predict_image", "predict_png"} <= set(served.signatures)

    # The Trainer logged TensorBoard events and the morph check.
    assert glob.glob(os.path.join(summary["tensorboard_dir"], "*", "*", "events*"))
    assert summary["training"]["max_abs_diff_at_morph"] < 1e-5

    # A rerun is served from cache: no new ingestion or training.
    rerun = local_runner.run(args)
    assert rerun["states"][pipeline_lib.EXAMPLE_GEN] == "CACHED"
    assert rerun["states"][pipeline_lib.TRAINER] == "CACHED"
    trainer_runs = node_executions(store, name, pipeline_lib.TRAINER)
    assert [e.last_known_state for e in trainer_runs].count(
        trainer_runs[0].last_known_state
    ) == 1
    assert rerun["counts"] == summary["counts"]
