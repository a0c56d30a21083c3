import json
import os
import re

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pipeline_pb2

from pipelines import configs
from pipelines import pipeline as pipeline_lib
from pipelines.kubeflow_v2_runner import (
    DEFAULT_RESOURCES,
    compile_pipeline,
    load_pipeline_spec,
    main,
    parse_resources,
)
from pipelines.pipeline import ComponentResources, memory_gb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


def _load_job(path):
    """Parses the JSON spec strictly with the KFP protos (unknown field: error)."""
    with open(path) as f:
        job = json_format.Parse(f.read(), pipeline_pb2.PipelineJob())
    spec = json_format.ParseDict(
        json_format.MessageToDict(job.pipeline_spec), pipeline_pb2.PipelineSpec()
    )
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec),
        pipeline_pb2.PipelineDeploymentConfig(),
    )
    return job, spec, deployment


def _parameter(task, name):
    """A task's constant parameter (either of the spec's two encodings)."""
    value = task.inputs.parameters[name].runtime_value
    if value.HasField("constant"):
        return json_format.MessageToDict(value.constant)
    which = value.constant_value.WhichOneof("value")
    return getattr(value.constant_value, which)


TRAINER_GPUS = ComponentResources(
    cpu=16, memory="64G", gpu=2, gpu_type="NVIDIA_L4", memory_limit="96G"
)


@pytest.fixture(scope="module")
def gpu_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("kfp") / "morphhr.json"
    compile_pipeline(
        str(path),
        image="registry.example/morphhr:7",
        profile="gpu",
        resources={pipeline_lib.TRAINER: TRAINER_GPUS},
    )
    return str(path)


def test_spec_loads_with_the_kfp_protos_with_every_component(gpu_spec):
    _, spec, deployment = _load_job(gpu_spec)
    assert spec.pipeline_info.name == "morphhr"
    tasks = spec.root.dag.tasks
    assert set(COMPONENTS) <= set(tasks)
    for name, task in tasks.items():
        component = spec.components[task.component_ref.name]
        assert component.executor_label in deployment.executors, name
        # every parameter a task sets is one its component declares
        assert set(task.inputs.parameters) <= set(
            component.input_definitions.parameters
        ), name
    images = {
        e.container.image
        for e in deployment.executors.values()
        if e.WhichOneof("spec") == "container"
    }
    assert images == {"registry.example/morphhr:7"}
    for name in COMPONENTS:
        assert tasks[name].caching_options.enable_cache, name
    # The loader the runner itself uses agrees.
    loaded, loaded_deployment = load_pipeline_spec(gpu_spec)
    assert loaded == spec and loaded_deployment == deployment


def test_spec_carries_the_profile_parameters(gpu_spec):
    _, spec, _ = _load_job(gpu_spec)
    tasks = spec.root.dag.tasks
    gpu = configs.PROFILES["gpu"]
    trainer = tasks[pipeline_lib.TRAINER]
    assert json.loads(_parameter(trainer, "custom_config")) == (
        gpu.training.to_custom_config()
    )
    assert json.loads(_parameter(trainer, "train_args"))["num_steps"] == (
        gpu.train_steps
    )
    assert _parameter(trainer, "run_fn") == pipeline_lib.RUN_FN
    gen = tasks[pipeline_lib.EXAMPLE_GEN]
    assert _parameter(gen, "image_size") == gpu.ingest.image_size
    assert _parameter(gen, "source") == "cbis_ddsm"
    pusher = tasks[pipeline_lib.PUSHER]
    assert "gs://my-bucket/morphhr/serving_model" in _parameter(
        pusher, "push_destination"
    )


def test_resources_are_set_per_component(gpu_spec):
    _, spec, deployment = _load_job(gpu_spec)

    def resources(name):
        task = spec.root.dag.tasks[name]
        label = spec.components[task.component_ref.name].executor_label
        return deployment.executors[label].container.resources

    trainer = resources(pipeline_lib.TRAINER)
    assert trainer == TRAINER_GPUS.to_resource_spec()
    assert (trainer.cpu_request, trainer.resource_cpu_request) == (16.0, "16")
    assert (trainer.memory_request, trainer.memory_limit) == (64.0, 96.0)
    assert trainer.resource_memory_limit == "96G"
    assert (trainer.accelerator.type, trainer.accelerator.count) == ("NVIDIA_L4", 2)
    assert trainer.accelerator.resource_count == "2"
    defaults = DEFAULT_RESOURCES["gpu"]
    # The ExampleGen too, which TFX 1.21's compiler leaves without resources.
    for name in (pipeline_lib.EXAMPLE_GEN, pipeline_lib.EVALUATOR, pipeline_lib.PUSHER):
        assert resources(name) == defaults[name].to_resource_spec(), name
        assert not resources(name).accelerator.count


def test_cli_sets_resources_and_turns_caching_off(tmp_path):
    out = tmp_path / "spec.json"
    main(
        [
            "--output",
            str(out),
            "--image",
            "img:2",
            "--profile",
            "cpu",
            "--disable-cache",
            "--resources",
            "Evaluator:cpu=3,memory=12Gi",
            "--resources",
            "Trainer:gpu=1,gpu_type=nvidia.com/gpu",
        ]
    )
    _, spec, deployment = _load_job(out)
    tasks = spec.root.dag.tasks
    for name in COMPONENTS:
        assert not tasks[name].caching_options.enable_cache, name
    label = spec.components[
        tasks[pipeline_lib.EVALUATOR].component_ref.name
    ].executor_label
    evaluator = deployment.executors[label].container.resources
    assert evaluator.resource_memory_request == "12Gi"
    assert evaluator.memory_request == pytest.approx(12 * 2**30 / 1e9)
    assert evaluator.cpu_limit == 3.0
    label = spec.components[
        tasks[pipeline_lib.TRAINER].component_ref.name
    ].executor_label
    accelerator = deployment.executors[label].container.resources.accelerator
    assert (accelerator.resource_type, accelerator.resource_count) == (
        "nvidia.com/gpu",
        "1",
    )


@pytest.mark.parametrize(
    "text, match",
    [
        ("Trainer", "COMPONENT:key=value"),
        ("Transform:cpu=2", "Transform"),
        ("Trainer:tpu=1", "tpu"),
        ("Trainer:cpu=many", "many"),
        ("Trainer:memory=lots", "lots"),
        ("Trainer:gpu=-1", "-1"),
    ],
)
def test_bad_resources_are_refused(text, match):
    with pytest.raises(ValueError, match=match):
        parse_resources(text)


def test_resources_parse():
    name, resources = parse_resources("Trainer:cpu=4,memory=16G,gpu=1")
    assert name == pipeline_lib.TRAINER
    assert resources == ComponentResources(cpu=4.0, memory="16G", gpu=1)
    assert memory_gb("512Mi") == pytest.approx(0.536870912)


def test_pipeline_refuses_resources_of_an_unknown_component(tmp_path):
    with pytest.raises(ValueError, match="Transform"):
        pipeline_lib.create_pipeline(
            pipeline_name="p",
            pipeline_root=str(tmp_path),
            data_root=str(tmp_path),
            serving_model_dir=str(tmp_path / "serving"),
            resources={"Transform": ComponentResources(cpu=1)},
        )


def _documented_beam_flags() -> dict[str, list[str]]:
    """The ```text beam-flags blocks of docs/deploy.md, keyed by runner."""
    with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```text beam-flags\n(.*?)```", text, re.DOTALL)
    flags = {}
    for block in blocks:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        runner = [line for line in lines if line.startswith("--runner=")]
        assert len(runner) == 1, block
        flags[runner[0].split("=", 1)[1]] = lines
    return flags


def _unknown_beam_flags(flags: list[str]) -> list[str]:
    import apache_beam.runners.portability.flink_runner  # noqa: F401
    import apache_beam.runners.portability.spark_runner  # noqa: F401
    from apache_beam.options.pipeline_options import PipelineOptions

    known = PipelineOptions([]).get_all_options()
    return [
        flag
        for flag in flags
        if not flag.startswith("--") or flag[2:].split("=")[0] not in known
    ]


def test_documented_beam_flags_are_beam_options_of_each_portable_runner():
    flags = _documented_beam_flags()
    assert set(flags) == {"DataflowRunner", "FlinkRunner", "SparkRunner"}
    for runner, lines in flags.items():
        assert _unknown_beam_flags(lines) == [], runner
    assert _unknown_beam_flags(["--flink_masterr=x"]) == ["--flink_masterr=x"]
    from apache_beam.options.pipeline_options import PipelineOptions

    dataflow = PipelineOptions(flags["DataflowRunner"]).get_all_options()
    assert dataflow["sdk_container_image"] == "REGISTRY/morphhr:0.1.0"
    flink = PipelineOptions(flags["FlinkRunner"]).get_all_options()
    assert flink["flink_submit_uber_jar"] is True
    assert flink["environment_type"] == "EXTERNAL"
    spark = PipelineOptions(flags["SparkRunner"]).get_all_options()
    assert spark["spark_version"] == "3" and spark["spark_rest_url"]


def test_ingest_beam_args_reach_only_the_example_gen(tmp_path):
    flags = _documented_beam_flags()["DataflowRunner"]
    out = tmp_path / "spec.json"
    main(
        [
            "--output",
            str(out),
            "--image",
            "img:3",
            "--profile",
            "cpu",
            "--ingest-beam-args",
            " ".join(flags),
        ]
    )
    _, spec, deployment = _load_job(out)

    def args(name):
        task = spec.root.dag.tasks[name]
        label = spec.components[task.component_ref.name].executor_label
        return list(deployment.executors[label].container.args)

    from apache_beam.options.pipeline_options import PipelineOptions

    def effective(name):
        # TFX puts the pipeline's Beam args first and the component's after
        # them; Beam keeps the last value of a flag.
        beam = [a for a in args(name) if a.startswith("--") and "=" in a]
        return PipelineOptions(beam).get_all_options()

    gen = args(pipeline_lib.EXAMPLE_GEN)
    assert all(flag in gen for flag in flags)
    assert effective(pipeline_lib.EXAMPLE_GEN)["runner"] == "DataflowRunner"
    assert effective(pipeline_lib.EXAMPLE_GEN)["project"] == "PROJECT"
    assert effective(pipeline_lib.EVALUATOR)["runner"] == "FnApiRunner"
    assert "--runner=DataflowRunner" not in args(pipeline_lib.EVALUATOR)


def test_chestxray14_compiles_the_multilabel_task(tmp_path):
    out = tmp_path / "cxr14.yaml"
    main(["--output", str(out), "--image", "img:1", "--source", "chestxray14"])
    text = out.read_text()
    assert '\\"task\\": \\"multilabel\\"' in text or '"task": "multilabel"' in text
    assert "Pleural_Thickening" in text  # the label names reach the Trainer
    assert "macro_average" in text  # and the Evaluator gates the mean AUC
