"""Compiles the MorphHR pipeline to a Kubeflow Pipelines v2 / Vertex AI spec.

    python pipelines/kubeflow_v2_runner.py --image gcr.io/PROJECT/morphhr:0.1.0 \\
        --pipeline-root gs://BUCKET/morphhr --data-root gs://BUCKET/cbis-ddsm \\
        --serving-model-dir gs://BUCKET/serving/morphhr --output morphhr.json

Writes the pipeline spec (``.json`` or ``.yaml``); docs/deploy.md says how to
submit it. The image is built from the repository's ``Dockerfile``.
"""

from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # python pipelines/kubeflow_v2_runner.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from morphhr_tf.runtime import beam_pipeline_args  # noqa: E402

from tfx import v1 as tfx  # noqa: E402

import morphhr_tf  # noqa: E402,F401  (runtime policy first)
from pipelines import configs  # noqa: E402
from pipelines.pipeline import create_pipeline  # noqa: E402

DEFAULT_IMAGE = "gcr.io/my-project/morphhr:0.1.0"


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

    Returns:
        ``output_path``.

    Raises:
        ValueError: for an unknown profile or output extension.
    """
    if profile not in configs.PROFILES:
        raise ValueError(
            f"profile must be one of {sorted(configs.PROFILES)}. Received: {profile!r}"
        )
    if not output_path.endswith((".json", ".yaml", ".yml")):
        raise ValueError(
            f"output_path must end in .json or .yaml. Received: {output_path!r}"
        )
    p = configs.PROFILES[profile]
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=pipeline_root,
        data_root=data_root,
        serving_model_dir=serving_model_dir,
        source=source,
        manifest=manifest,
        image_size=p.image_size,
        train_steps=p.train_steps,
        training_config=p.training_config(model),
        auc_lower_bound=p.auc_lower_bound,
        beam_pipeline_args=beam_pipeline_args(1),
        ingest_beam_args=beam_pipeline_args(p.beam_workers),
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image
        ),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
        output_filename=os.path.basename(output_path),
    )
    runner.run(pipeline)
    return output_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="morphhr_pipeline.json")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--pipeline-root", default="gs://my-bucket/morphhr/root")
    parser.add_argument("--data-root", default="gs://my-bucket/data/cbis-ddsm")
    parser.add_argument("--serving-model-dir", default="gs://my-bucket/morphhr/serving")
    parser.add_argument("--source", default="cbis_ddsm")
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--profile", default="gpu", choices=sorted(configs.PROFILES))
    parser.add_argument("--model", default="morphhr", choices=("morphhr", "resnet18"))
    args = parser.parse_args(argv)
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
    )
    print(f"Wrote the Kubeflow v2 pipeline spec to {path}")


if __name__ == "__main__":
    main()
