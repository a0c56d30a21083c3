import json

import pytest
import yaml

from pipelines import pipeline as pipeline_lib
from pipelines.kubeflow_v2_runner import compile_pipeline, main

COMPONENTS = (
    pipeline_lib.EXAMPLE_GEN,
    pipeline_lib.TRAINER,
    pipeline_lib.EVALUATOR,
    pipeline_lib.PUSHER,
)


def test_compiles_a_json_spec_naming_every_component(tmp_path):
    path = compile_pipeline(
        str(tmp_path / "morphhr.json"), image="registry.example/morphhr:test"
    )
    with open(path) as f:
        spec = json.load(f)
    pipeline_spec = spec["pipelineSpec"]
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    for name in COMPONENTS:
        assert name in tasks, name
    assert any(t.startswith(pipeline_lib.BASELINE_RESOLVER) for t in tasks)
    executors = pipeline_spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {"registry.example/morphhr:test"}
    gen = executors[f"{pipeline_lib.EXAMPLE_GEN}_executor"]["container"]
    assert "components.dicom_example_gen.executor.Executor" in gen["args"]
    assert "preCacheCheck" in gen["lifecycle"]  # the file-based driver runs first
    assert pipeline_spec["pipelineInfo"]["name"] == "morphhr"


def test_cli_writes_yaml(tmp_path, capsys):
    out = tmp_path / "spec.yaml"
    main(["--output", str(out), "--image", "img:1", "--profile", "cpu"])
    spec = yaml.safe_load(out.read_text())
    spec = spec.get("pipelineSpec", spec)  # YAML holds the bare PipelineSpec
    tasks = spec["root"]["dag"]["tasks"]
    assert set(COMPONENTS) <= set(tasks)
    assert str(out) in capsys.readouterr().out


def test_bad_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="spec.txt"):
        compile_pipeline(str(tmp_path / "spec.txt"))
