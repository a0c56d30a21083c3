"""Compiles the MorphHR pipeline to a Kubeflow Pipelines v2 / Vertex AI spec.

    python pipelines/kubeflow_v2_runner.py --image gcr.io/PROJECT/morphhr:0.1.0 \\
        --pipeline-root gs://BUCKET/morphhr --data-root gs://BUCKET/cbis-ddsm \\
        --serving-model-dir gs://BUCKET/serving/morphhr --output morphhr.json \\
        --resources Trainer:cpu=8,memory=32G,gpu=1,gpu_type=NVIDIA_L4

Writes the pipeline spec (``.json`` or ``.yaml``), then loads it back with the
KFP pipeline-spec protos and checks it (:func:`load_pipeline_spec`,
:func:`check_pipeline_spec`); docs/deploy.md says how to submit it. The image
is built from the repository's ``Dockerfile``.

Resources: ``--resources COMPONENT:key=value,...`` (repeatable) sets a
component's container requests, keys ``cpu``, ``memory``, ``gpu``,
``gpu_type``, ``cpu_limit``, ``memory_limit`` (see
:class:`pipelines.pipeline.ComponentResources`); they replace the profile's
defaults (:data:`DEFAULT_RESOURCES`) for that component.

Beam: the ExampleGen and the Evaluator run Beam in their container with the
local multi-process runner by default. ``--ingest-beam-args`` hands the
ExampleGen's DICOM decoding to a distributed engine instead (Dataflow, Flink
or Spark through Beam's portable runners; docs/deploy.md lists the flags),
``--beam-args`` sets the options of every Beam component.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from typing import Any

if __package__ in (None, ""):  # python pipelines/kubeflow_v2_runner.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from morphhr_tf.runtime import beam_pipeline_args  # noqa: E402

from google.protobuf import json_format  # noqa: E402
from kfp.pipeline_spec import pipeline_spec_pb2 as pipeline_pb2  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

import morphhr_tf  # noqa: E402,F401  (runtime policy first)
from morphhr_tf.data.adapters import SOURCES  # noqa: E402
from pipelines import configs  # noqa: E402
from pipelines.pipeline import (  # noqa: E402
    CONTAINER_COMPONENTS,
    EVALUATOR,
    EXAMPLE_GEN,
    PUSHER,
    TRAINER,
    ComponentResources,
    create_pipeline,
)

DEFAULT_IMAGE = "gcr.io/my-project/morphhr:0.1.0"

# Container resources per profile and component (override with --resources).
DEFAULT_RESOURCES: dict[str, dict[str, ComponentResources]] = {
    "cpu": {
        EXAMPLE_GEN: ComponentResources(cpu=2, memory="8G"),
        TRAINER: ComponentResources(cpu=2, memory="8G"),
        EVALUATOR: ComponentResources(cpu=2, memory="8G"),
        PUSHER: ComponentResources(cpu=1, memory="2G"),
    },
    "gpu": {
        EXAMPLE_GEN: ComponentResources(cpu=8, memory="32G"),
        TRAINER: ComponentResources(cpu=8, memory="32G", gpu=1),
        EVALUATOR: ComponentResources(cpu=8, memory="32G"),
        PUSHER: ComponentResources(cpu=1, memory="4G"),
    },
}

_RESOURCE_KEYS = {
    "cpu": float,
    "memory": str,
    "gpu": int,
    "gpu_type": str,
    "cpu_limit": float,
    "memory_limit": str,
}


def parse_resources(text: str) -> tuple[str, ComponentResources]:
    """``"Trainer:cpu=8,memory=32G,gpu=1"`` -> ``("Trainer", ComponentResources)``.

    Raises:
        ValueError: for an unknown component or key, or a malformed value.
    """
    component, sep, body = text.partition(":")
    if not sep or component not in CONTAINER_COMPONENTS:
        raise ValueError(
            "resources must read COMPONENT:key=value,... with COMPONENT one of "
            f"{list(CONTAINER_COMPONENTS)}. Received: {text!r}"
        )
    kwargs = {}
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in _RESOURCE_KEYS:
            raise ValueError(
                f"Unknown resource setting {item!r} in {text!r}. Known keys: "
                f"{sorted(_RESOURCE_KEYS)}"
            )
        try:
            kwargs[key] = _RESOURCE_KEYS[key](value)
        except ValueError as err:
            raise ValueError(f"Bad value for {key} in {text!r}: {value!r}") from err
    return component, ComponentResources(**kwargs)


def load_pipeline_spec(path: str) -> tuple[pipeline_pb2.PipelineSpec, Any]:
    """Loads a compiled spec with the KFP pipeline-spec protos.

    Args:
        path: a ``.json`` file (a ``PipelineJob`` whose ``pipelineSpec`` is
            the spec) or a ``.yaml`` file (the bare ``PipelineSpec``).

    Returns:
        ``(PipelineSpec, PipelineDeploymentConfig)``; ``PipelineSpec`` keeps
        its deployment config as a ``Struct``, parsed here into the second.

    Raises:
        google.protobuf.json_format.ParseError: for a field the protos do not
            define (the parse is strict).
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        job = json_format.Parse(text, pipeline_pb2.PipelineJob())
        spec_dict = json_format.MessageToDict(job.pipeline_spec)
    else:
        import yaml

        spec_dict = yaml.safe_load(text)
        spec_dict = spec_dict.get("pipelineSpec", spec_dict)
    spec = json_format.ParseDict(spec_dict, pipeline_pb2.PipelineSpec())
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec),
        pipeline_pb2.PipelineDeploymentConfig(),
    )
    return spec, deployment


def check_pipeline_spec(
    path: str,
    *,
    image: str,
    resources: dict[str, ComponentResources] | None = None,
    enable_cache: bool = True,
) -> dict[str, Any]:
    """Checks a compiled spec: every component, its image, caching, resources.

    Every container component must be a task of the root DAG, with caching
    set as asked and an executor running ``image`` with the component's
    resources; every task's parameters must be defined by its component.

    Returns:
        ``{component id: executor label}``.

    Raises:
        ValueError: naming the first problem found.
    """
    spec, deployment = load_pipeline_spec(path)
    tasks = spec.root.dag.tasks
    labels = {}
    for name in CONTAINER_COMPONENTS:
        if name not in tasks:
            raise ValueError(f"{path}: no task {name!r} in the root DAG")
        task = tasks[name]
        if task.caching_options.enable_cache != enable_cache:
            raise ValueError(
                f"{path}: task {name!r} has enable_cache="
                f"{task.caching_options.enable_cache}, expected {enable_cache}"
            )
        component = spec.components[task.component_ref.name]
        undefined = set(task.inputs.parameters) - set(
            component.input_definitions.parameters
        )
        if undefined:
            raise ValueError(f"{path}: task {name!r} sets undefined {undefined}")
        label = component.executor_label
        if label not in deployment.executors:
            raise ValueError(f"{path}: task {name!r} has no executor {label!r}")
        container = deployment.executors[label].container
        if container.image != image:
            raise ValueError(
                f"{path}: executor {label!r} runs {container.image!r}, not {image!r}"
            )
        wanted = (resources or {}).get(name)
        if wanted is not None and container.resources != wanted.to_resource_spec():
            raise ValueError(
                f"{path}: executor {label!r} has resources "
                f"{json_format.MessageToDict(container.resources)}, expected "
                f"{json_format.MessageToDict(wanted.to_resource_spec())}"
            )
        labels[name] = label
    return labels


def _set_missing_resources(path: str, resources: dict[str, ComponentResources]) -> None:
    """Writes resources the compiler dropped into the spec file.

    TFX 1.21's Kubeflow v2 compiler applies a component's platform config to
    its container, except for file-based ExampleGens (``DicomExampleGen``):
    their executor is built on another path that ignores it.
    """
    if not resources:
        return
    yaml_out = not path.endswith(".json")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if yaml_out:
        import yaml

        document = yaml.safe_load(text)
    else:
        document = json.loads(text)
    spec = document.get("pipelineSpec", document)
    executors = spec["deploymentSpec"]["executors"]
    tasks = spec["root"]["dag"]["tasks"]
    changed = False
    for name, wanted in resources.items():
        label = spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        container = executors[label]["container"]
        if "resources" not in container:
            container["resources"] = json_format.MessageToDict(
                wanted.to_resource_spec()
            )
            changed = True
    if not changed:
        return
    with open(path, "w", encoding="utf-8") as f:
        if yaml_out:
            yaml.safe_dump(document, f, sort_keys=True)
        else:
            json.dump(document, f, indent=2, sort_keys=True)


def compile_pipeline(
    output_path: str,
    *,
    image: str = DEFAULT_IMAGE,
    pipeline_root: str = "gs://my-bucket/morphhr/pipeline_root",
    data_root: str = "gs://my-bucket/data/cbis-ddsm",
    serving_model_dir: str = "gs://my-bucket/morphhr/serving_model",
    source: str = "cbis_ddsm",
    manifest: str | None = None,
    profile: str = "gpu",
    model: str = "morphhr",
    resources: dict[str, ComponentResources] | None = None,
    enable_cache: bool = True,
    beam_args: list[str] | None = None,
    ingest_beam_args: list[str] | None = None,
) -> str:
    """Compiles the pipeline for ``image`` and writes the spec to ``output_path``.

    Args:
        output_path: the spec file, ``.json`` or ``.yaml``.
        image: the container image every component runs in.
        pipeline_root, data_root, serving_model_dir: storage locations (GCS
            or another filesystem the image can reach).
        source, manifest: the data source (see ``create_pipeline``).
        profile: a :data:`pipelines.configs.PROFILES` key.
        model: ``morphhr`` or ``resnet18``.
        resources: ``{component id: ComponentResources}``; each entry
            replaces the profile's default (:data:`DEFAULT_RESOURCES`) for
            that component.
        enable_cache: the tasks' caching option.
        beam_args: Beam options of every Beam component (``None``: the
            in-container ``FnApiRunner``, see
            :func:`morphhr_tf.runtime.beam_pipeline_args`).
        ingest_beam_args: Beam options of the ExampleGen, e.g.
            ``["--runner=DataflowRunner", "--project=...", ...]`` (``None``:
            ``beam_args`` if given, else the profile's local worker processes).

    Returns:
        ``output_path``.

    Raises:
        ValueError: for an unknown profile, model or output extension,
            resources of an unknown component, or a spec that fails
            :func:`check_pipeline_spec`.
    """
    if profile not in configs.PROFILES:
        raise ValueError(
            f"profile must be one of {sorted(configs.PROFILES)}. Received: {profile!r}"
        )
    if not output_path.endswith((".json", ".yaml", ".yml")):
        raise ValueError(
            f"output_path must end in .json or .yaml. Received: {output_path!r}"
        )
    # The task follows the source (ChestX-ray14: multilabel), as locally.
    p = configs.for_source(configs.PROFILES[profile], source)
    p = dataclasses.replace(p, training=dataclasses.replace(p.training, model=model))
    resources = {**DEFAULT_RESOURCES.get(profile, {}), **(resources or {})}
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=pipeline_root,
        data_root=data_root,
        serving_model_dir=serving_model_dir,
        source=source,
        manifest=manifest,
        image_size=p.ingest.image_size,
        eval_fraction=p.ingest.eval_fraction,
        train_steps=p.train_steps,
        training_config=p.training,
        auc_lower_bound=p.auc_lower_bound,
        beam_pipeline_args=beam_args or beam_pipeline_args(1),
        ingest_beam_args=(
            ingest_beam_args
            or beam_args
            or beam_pipeline_args(p.ingest.beam_workers, p.ingest.beam_worker_mode)
        ),
        enable_cache=enable_cache,
        resources=resources,
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image
        ),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
        output_filename=os.path.basename(output_path),
    )
    runner.run(pipeline)
    _set_missing_resources(output_path, resources)
    check_pipeline_spec(
        output_path, image=image, resources=resources, enable_cache=enable_cache
    )
    return output_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="morphhr_pipeline.json")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--pipeline-root", default="gs://my-bucket/morphhr/root")
    parser.add_argument("--data-root", default="gs://my-bucket/data/cbis-ddsm")
    parser.add_argument("--serving-model-dir", default="gs://my-bucket/morphhr/serving")
    parser.add_argument("--source", default="cbis_ddsm", choices=SOURCES)
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--profile", default="gpu", choices=sorted(configs.PROFILES))
    parser.add_argument("--model", default="morphhr", choices=("morphhr", "resnet18"))
    parser.add_argument(
        "--resources",
        action="append",
        default=[],
        metavar="COMPONENT:key=value,...",
        help=(
            "container resources of one component (repeatable), keys cpu, "
            "memory, gpu, gpu_type, cpu_limit, memory_limit, e.g. "
            "Trainer:cpu=8,memory=32G,gpu=2,gpu_type=NVIDIA_L4"
        ),
    )
    parser.add_argument(
        "--disable-cache", action="store_true", help="turn task caching off"
    )
    parser.add_argument(
        "--beam-args",
        default="",
        help="Beam options of every Beam component, one quoted string",
    )
    parser.add_argument(
        "--ingest-beam-args",
        default="",
        help=(
            "Beam options of the ExampleGen, one quoted string, e.g. "
            "'--runner=DataflowRunner --project=P --region=R ...'"
        ),
    )
    args = parser.parse_args(argv)
    try:
        resources = dict(parse_resources(text) for text in args.resources)
    except ValueError as err:
        parser.error(str(err))
    path = compile_pipeline(
        args.output,
        image=args.image,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_model_dir=args.serving_model_dir,
        source=args.source,
        manifest=args.manifest,
        profile=args.profile,
        model=args.model,
        resources=resources,
        enable_cache=not args.disable_cache,
        beam_args=shlex.split(args.beam_args) or None,
        ingest_beam_args=shlex.split(args.ingest_beam_args) or None,
    )
    print(f"Wrote the Kubeflow v2 pipeline spec to {path}")


if __name__ == "__main__":
    main()
