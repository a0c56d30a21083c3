"""The MorphHR TFX pipeline: DicomExampleGen -> Trainer -> Evaluator -> Pusher.

``create_pipeline`` is pure: it only wires components; the runners choose
paths, runner configs and the per-component resources
(:class:`ComponentResources`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.types import standard_artifacts

from components.dicom_example_gen import DicomExampleGen
from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE
from morphhr_tf.evaluation.eval_config import make_eval_config
from morphhr_tf.training.config import TrainingConfig

RUN_FN = "morphhr_tf.training.trainer.run_fn"

# Component ids, as they appear in ML Metadata and the Kubeflow spec.
EXAMPLE_GEN = "DicomExampleGen"
TRAINER = "Trainer"
WARM_START_RESOLVER = "latest_model_resolver"
BASELINE_RESOLVER = "latest_blessed_model_resolver"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"
# The components that run in a container of their own (resolvers do not).
CONTAINER_COMPONENTS = (EXAMPLE_GEN, TRAINER, EVALUATOR, PUSHER)

ResourceSpec = (
    pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
)

_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]i?)?$")
_QUANTITY_FACTORS = {
    None: 1.0,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def memory_gb(quantity: str) -> float:
    """A Kubernetes memory quantity (``"16G"``, ``"512Mi"``) in GB (1e9 bytes).

    Raises:
        ValueError: for anything but a number with an optional K/M/G/T(i) suffix.
    """
    match = _QUANTITY_RE.match(str(quantity).strip())
    if not match:
        raise ValueError(
            "memory must be a Kubernetes quantity such as '16G' or '512Mi'. "
            f"Received: {quantity!r}"
        )
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(2)] / 1e9


@dataclasses.dataclass(frozen=True)
class ComponentResources:
    """CPU, memory and GPU of one component's container.

    Requests are what the scheduler reserves; limits default to the requests.
    The spec carries each value twice, as Kubeflow Pipelines 2.x reads it
    (``resourceCpuRequest: "8"``, ``resourceMemoryLimit: "32G"``,
    ``accelerator.resourceType``/``resourceCount``) and as Vertex AI reads it
    (``cpuLimit`` vCPUs, ``memoryLimit`` GB, ``accelerator.type``/``count``).

    Args:
        cpu: vCPUs requested (``None``: the orchestrator's default).
        memory: memory requested, a Kubernetes quantity (``"32G"``).
        gpu: GPUs requested (0: none).
        gpu_type: the accelerator: a Vertex AI type (``NVIDIA_TESLA_T4``,
            ``NVIDIA_L4``, ``NVIDIA_TESLA_A100``) or, on Kubeflow, the
            Kubernetes resource name (``nvidia.com/gpu``).
        cpu_limit, memory_limit: limits (``None``: the requests).

    Raises:
        ValueError: for a negative or malformed value.

    Example:

    >>> ComponentResources(cpu=8, memory="32G", gpu=1).to_resource_spec().cpu_limit
    8.0
    """

    cpu: float | None = None
    memory: str | None = None
    gpu: int = 0
    gpu_type: str = "NVIDIA_TESLA_T4"
    cpu_limit: float | None = None
    memory_limit: str | None = None

    def __post_init__(self):
        for name in ("cpu", "cpu_limit"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value <= 0
            ):
                raise ValueError(
                    f"{name} must be a positive number of vCPUs. Received: "
                    f"{name}={value!r}"
                )
        for name in ("memory", "memory_limit"):
            value = getattr(self, name)
            if value is not None and memory_gb(value) <= 0:
                raise ValueError(f"{name} must be positive. Received: {value!r}")
        if isinstance(self.gpu, bool) or not isinstance(self.gpu, int) or self.gpu < 0:
            raise ValueError(
                f"gpu must be a non-negative integer. Received: gpu={self.gpu!r}"
            )
        if self.gpu and not self.gpu_type:
            raise ValueError("gpu_type must name the accelerator when gpu > 0.")

    def to_resource_spec(self) -> ResourceSpec:
        """The KFP ``PipelineContainerSpec.ResourceSpec`` proto."""
        spec = ResourceSpec()
        cpu_limit = self.cpu_limit or self.cpu
        memory_limit = self.memory_limit or self.memory
        if self.cpu:
            spec.cpu_request = float(self.cpu)
            spec.resource_cpu_request = f"{self.cpu:g}"
        if cpu_limit:
            spec.cpu_limit = float(cpu_limit)
            spec.resource_cpu_limit = f"{cpu_limit:g}"
        if self.memory:
            spec.memory_request = memory_gb(self.memory)
            spec.resource_memory_request = self.memory
        if memory_limit:
            spec.memory_limit = memory_gb(memory_limit)
            spec.resource_memory_limit = memory_limit
        if self.gpu:
            spec.accelerator.type = self.gpu_type
            spec.accelerator.count = self.gpu
            spec.accelerator.resource_type = self.gpu_type
            spec.accelerator.resource_count = str(self.gpu)
        return spec


def _custom_config(training_config: TrainingConfig | dict | None) -> dict:
    """The Trainer's ``custom_config``, validated (raises ``ValueError``)."""
    if isinstance(training_config, TrainingConfig):
        return training_config.to_custom_config()
    custom_config = dict(training_config or {})
    TrainingConfig.from_custom_config(custom_config)  # raises if invalid
    return custom_config


def _training(
    example_gen, custom_config: dict, *, train_steps: int, eval_steps: int,
    warm_start: bool,
) -> list[Any]:  # fmt: skip
    """The Trainer, after the warm-start Resolver when ``warm_start``."""
    components: list[Any] = []
    trainer_kwargs: dict[str, Any] = {}
    if warm_start:
        latest_model = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            model=tfx.dsl.Channel(type=standard_artifacts.Model),
        ).with_id(WARM_START_RESOLVER)
        components.append(latest_model)
        trainer_kwargs["base_model"] = latest_model.outputs["model"]
        custom_config = dict(custom_config, pretrained="base_model")
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=eval_steps),
        custom_config=custom_config,
        **trainer_kwargs,
    ).with_id(TRAINER)
    return [*components, trainer]


def _evaluation_and_push(
    example_gen, trainer, eval_config, serving_model_dir: str
) -> list[Any]:
    """The baseline Resolver, the Evaluator and the Pusher."""
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER)
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config,
    ).with_id(EVALUATOR)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=serving_model_dir
            )
        ),
    ).with_id(PUSHER)
    return [baseline, evaluator, pusher]


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    serving_model_dir: str,
    source: str = "cbis_ddsm",
    manifest: str | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    eval_fraction: float = 0.2,
    train_steps: int = 1000,
    eval_steps: int = 0,
    training_config: TrainingConfig | dict[str, Any] | None = None,
    auc_lower_bound: float = 0.6,
    max_auc_regression: float = 1e-10,
    warm_start: bool = False,
    enable_cache: bool = True,
    metadata_connection_config: Any = None,
    beam_pipeline_args: list[str] | None = None,
    ingest_beam_args: list[str] | None = None,
    resources: dict[str, ComponentResources] | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline.

    Args:
        pipeline_name: the pipeline's name (an MLMD context).
        pipeline_root: where the components write their artifacts.
        data_root: the data set root (``csv``: may be '' with ``manifest``).
        serving_model_dir: the Pusher's filesystem destination; models land
            in ``<serving_model_dir>/<version>/`` (TF Serving's layout).
        source: ``cbis_ddsm``, ``csv``, ``rsna``, ``vindr`` or
            ``chestxray14`` (multi-label: train with ``task="multilabel"``).
        manifest: the CSV manifest for ``source="csv"``.
        image_size: the stored image size of the ingested examples.
        eval_fraction: fraction of training patients held out for eval.
            (The de-identification salt is deliberately not a parameter:
            parameters are stored in ML Metadata. The ExampleGen reads
            ``$MORPHHR_SALT`` from its environment.)
        train_steps: optimizer steps of the final training stage.
        eval_steps: ``eval_args.num_steps`` (0: the whole eval split).
        training_config: the Trainer's options: a ``TrainingConfig``
            (passed as ``to_custom_config()``) or a ``custom_config`` dict,
            validated here and passed as given
            (:mod:`morphhr_tf.training.config`).
        auc_lower_bound: overall eval AUC needed for the blessing (the
            multilabel task: the mean AUC over the labels).
        max_auc_regression: allowed AUC drop versus the last blessed model.
        warm_start: feed the latest trained model to the Trainer's
            ``base_model`` (and set ``pretrained="base_model"``).
        enable_cache: reuse finished component runs with identical inputs.
        metadata_connection_config: MLMD connection (local runs: sqlite);
            ``None`` for orchestrators that bring their own.
        beam_pipeline_args: Beam options of every Beam component (ExampleGen,
            Evaluator).
        ingest_beam_args: extra Beam options for the ExampleGen only (they
            override ``beam_pipeline_args``), e.g. several worker processes
            for DICOM decoding. The Evaluator stays in process: TFMA's coders
            do not unpickle in fresh worker processes with this lock
            (``tfx_bsl.arrow.sql_util`` is missing from tfx-bsl 1.21).
        resources: ``{component id: ComponentResources}`` for the container
            components (:data:`CONTAINER_COMPONENTS`), set as each
            component's platform config (read by the Kubeflow v2 compiler).

    Returns:
        The ``tfx.dsl.Pipeline``.

    Raises:
        ValueError: for resources of an unknown component or invalid
            training options.
    """
    resources = dict(resources or {})
    unknown = sorted(set(resources) - set(CONTAINER_COMPONENTS))
    if unknown:
        raise ValueError(
            f"resources name unknown component(s) {unknown}. Known: "
            f"{list(CONTAINER_COMPONENTS)}"
        )
    example_gen = DicomExampleGen(
        input_base=data_root or None,
        source=source,
        manifest=manifest,
        image_size=image_size,
        eval_fraction=eval_fraction,
    ).with_id(EXAMPLE_GEN)
    if ingest_beam_args:
        example_gen = example_gen.with_beam_pipeline_args(ingest_beam_args)
    components: list[Any] = [example_gen]

    custom_config = _custom_config(training_config)
    # The multilabel task's label names, for the Evaluator's per-label AUCs.
    label_names = TrainingConfig.from_custom_config(custom_config).label_list
    components += _training(
        example_gen,
        custom_config,
        train_steps=train_steps,
        eval_steps=eval_steps,
        warm_start=warm_start,
    )
    trainer = components[-1]
    components += _evaluation_and_push(
        example_gen,
        trainer,
        make_eval_config(
            auc_lower_bound,
            max_auc_regression=max_auc_regression,
            label_names=label_names or None,
        ),
        serving_model_dir,
    )

    for component in components:
        if component.id in resources:
            component.with_platform_config(resources[component.id].to_resource_spec())

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
