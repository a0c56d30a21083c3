"""The MorphHR TFX pipeline: DicomExampleGen -> Trainer -> Evaluator -> Pusher.

``create_pipeline`` is pure: it only wires components; the runners choose
paths and runner configs.
"""

from __future__ import annotations

from typing import Any

from tfx import v1 as tfx
from tfx.types import standard_artifacts

from components.dicom_example_gen import DicomExampleGen
from morphhr_tf.evaluation.eval_config import make_eval_config

RUN_FN = "morphhr_tf.training.trainer.run_fn"

# Component ids, as they appear in ML Metadata and the Kubeflow spec.
EXAMPLE_GEN = "DicomExampleGen"
TRAINER = "Trainer"
WARM_START_RESOLVER = "latest_model_resolver"
BASELINE_RESOLVER = "latest_blessed_model_resolver"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    serving_model_dir: str,
    source: str = "cbis_ddsm",
    manifest: str | None = None,
    image_size: int = 896,
    eval_fraction: float = 0.2,
    salt: str | None = None,
    train_steps: int = 1000,
    eval_steps: int = 0,
    training_config: dict[str, Any] | None = None,
    auc_lower_bound: float = 0.6,
    max_auc_regression: float = 1e-10,
    warm_start: bool = False,
    enable_cache: bool = True,
    metadata_connection_config: Any = None,
    beam_pipeline_args: list[str] | None = None,
    ingest_beam_args: list[str] | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline.

    Args:
        pipeline_name: the pipeline's name (an MLMD context).
        pipeline_root: where the components write their artifacts.
        data_root: the data set root (``csv``: may be '' with ``manifest``).
        serving_model_dir: the Pusher's filesystem destination; models land
            in ``<serving_model_dir>/<version>/`` (TF Serving's layout).
        source: ``cbis_ddsm``, ``csv``, ``rsna`` or ``vindr``.
        manifest: the CSV manifest for ``source="csv"``.
        image_size: the stored image size of the ingested examples.
        eval_fraction: fraction of training patients held out for eval.
        salt: de-identification salt (``None``: ``$MORPHHR_SALT`` or the
            development salt).
        train_steps: optimizer steps of the final training stage.
        eval_steps: ``eval_args.num_steps`` (0: the whole eval split).
        training_config: the Trainer's ``custom_config``
            (:mod:`morphhr_tf.training.config`).
        auc_lower_bound: overall eval AUC needed for the blessing.
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

    Returns:
        The ``tfx.dsl.Pipeline``.
    """
    example_gen = DicomExampleGen(
        input_base=data_root or None,
        source=source,
        manifest=manifest,
        image_size=image_size,
        eval_fraction=eval_fraction,
        salt=salt,
    ).with_id(EXAMPLE_GEN)
    if ingest_beam_args:
        example_gen = example_gen.with_beam_pipeline_args(ingest_beam_args)
    components: list[Any] = [example_gen]

    custom_config = dict(training_config or {})
    trainer_kwargs: dict[str, Any] = {}
    if warm_start:
        latest_model = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            model=tfx.dsl.Channel(type=standard_artifacts.Model),
        ).with_id(WARM_START_RESOLVER)
        components.append(latest_model)
        trainer_kwargs["base_model"] = latest_model.outputs["model"]
        custom_config["pretrained"] = "base_model"
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=eval_steps),
        custom_config=custom_config,
        **trainer_kwargs,
    ).with_id(TRAINER)
    components.append(trainer)

    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER)
    components.append(baseline)

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=make_eval_config(
            auc_lower_bound, max_auc_regression=max_auc_regression
        ),
    ).with_id(EVALUATOR)
    components.append(evaluator)

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=serving_model_dir
            )
        ),
    ).with_id(PUSHER)
    components.append(pusher)

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
