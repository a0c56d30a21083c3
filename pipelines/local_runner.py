"""Runs the MorphHR pipeline locally: LocalDagRunner, sqlite ML Metadata.

    python pipelines/local_runner.py

with no arguments generates the embedded synthetic CBIS-DDSM-like data set (if
absent) under ``./morphhr_work/``, runs DicomExampleGen -> Trainer (MorphHR) ->
Evaluator -> Pusher on the ``cpu`` profile (about 8 minutes on 2 CPU cores
with ``avx512_bf16``, about 27 with AVX2 only) and prints a summary.
Component caching is on: a rerun reuses finished work. Real data:
``--data-root DIR --source cbis_ddsm|rsna|vindr`` or ``--source csv
--manifest FILE``; ``--profile gpu`` for GPU-sized runs.

``--source chestxray14`` runs the multi-label task (ChestX-ray14's 14
findings, one sigmoid each; the blessing gates the mean AUC): on the NIH
download with ``--data-root DIR``, or without it on a generated synthetic
tree in the NIH layout (every finding equally frequent, so a small set holds
positives of each; the real frequencies are ``morphhr-synthetic-cxr14
--frequencies nih``).

Layout of ``--work-dir``: ``pipeline_root/<pipeline>/`` (the artifacts),
``metadata.sqlite`` (ML Metadata), ``serving_model/<pipeline>/`` (pushed
models) and ``private/`` (``rejects_private.csv``: the map from the redacted
rejects back to the real files, which names patients; it lies outside the
pipeline root and is never an artifact, see ``docs/privacy.md``). The salt
of the patient keys is read from ``$MORPHHR_SALT``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ""):  # python pipelines/local_runner.py
    sys.path.insert(0, _ROOT)
    # Beam worker processes (multi-processing mode) import the package too.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p
    )

from morphhr_tf.runtime import WORKER_MODES, beam_pipeline_args  # noqa: E402

from tfx import v1 as tfx  # noqa: E402

import morphhr_tf  # noqa: E402,F401  (runtime policy first)
from components.dicom_example_gen.executor import PRIVATE_DIR_ENV  # noqa: E402
from morphhr_tf.data.adapters import SOURCES  # noqa: E402
from pipelines import configs  # noqa: E402
from pipelines import pipeline as pipeline_lib  # noqa: E402
from pipelines.summary import format_summary, summarize  # noqa: E402

SYNTHETIC_SEED = 0
# The sources with a synthetic default (no --data-root).
SYNTHETIC_SOURCES = ("cbis_ddsm", "chestxray14")
PRIVATE_DIR = "private"  # under --work-dir, outside the pipeline root
_SYNTHETIC_DONE = ".morphhr_synthetic.json"

NODE_IDS = {
    "example_gen": pipeline_lib.EXAMPLE_GEN,
    "trainer": pipeline_lib.TRAINER,
    "evaluator": pipeline_lib.EVALUATOR,
    "pusher": pipeline_lib.PUSHER,
}


def ensure_synthetic_data(
    data_root: str,
    *,
    patients: int,
    rows: int,
    seed: int = SYNTHETIC_SEED,
    fine_detail: bool = True,
    source: str = "cbis_ddsm",
) -> dict:
    """Generates the synthetic data set into ``data_root`` unless it is there.

    ``source`` is ``cbis_ddsm`` (mammograms ``rows`` px tall) or
    ``chestxray14`` (chest radiographs ``rows`` px square, every finding
    equally frequent). A marker file records the generation arguments; a
    data set made with other arguments is regenerated.
    """
    marker = os.path.join(data_root, _SYNTHETIC_DONE)
    wanted = {"patients": patients, "rows": rows, "seed": seed, "source": source}
    if source == "cbis_ddsm":
        wanted["fine_detail"] = fine_detail
    if os.path.exists(marker):
        with open(marker) as f:
            done = json.load(f)
        if {
            k: done.get(k, "cbis_ddsm" if k == "source" else None) for k in wanted
        } == wanted:
            return done
    if source == "chestxray14":
        from morphhr_tf.synthetic.chestxray14 import generate as generate_chests

        info = generate_chests(
            data_root,
            patients=patients,
            seed=seed,
            size=rows,
            frequencies="uniform",
            progress=True,
        )
        info.pop("boxes", None)  # long; BBox_List_2017.csv has them
        what = f"chest radiographs ({rows} px square)"
    else:
        from morphhr_tf.synthetic.cbis_ddsm import generate

        info = generate(
            data_root,
            patients=patients,
            seed=seed,
            rows=rows,
            fine_detail=fine_detail,
            progress=True,
        )
        what = f"mammograms ({rows} px tall)"
    info.update(wanted)
    with open(marker, "w") as f:
        json.dump(info, f, indent=2)
    print(
        f"Generated {info.get('images')} synthetic {what} of {patients} patients "
        f"in {info.get('seconds')} s under {data_root}"
    )
    return info


@contextlib.contextmanager
def _environ(name: str, value: str):
    """Sets one environment variable for the duration of the block."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def resolve_profile(args: argparse.Namespace) -> configs.Profile:
    """The ``--profile`` with the command line's overrides applied.

    Pure: nothing is generated or run. ``--resolution``, ``--base-resolution``,
    ``--width``, ``--image-size``, ``--train-steps``, ``--patients``,
    ``--synthetic-rows`` and ``--beam-workers`` apply when non-zero,
    ``--base-steps``, ``--eval-fraction``, ``--auc-lower-bound`` and
    ``--beam-worker-mode`` when given. ``resnet18`` trains at ``resolution``
    (its ``base_resolution`` is set to it); the stored image size is at least
    ``resolution``.

    Raises:
        ValueError: for a value the profile's configs refuse (e.g. a
            ``--resolution`` that is no multiple of ``--base-resolution``).
    """
    profile = configs.for_source(configs.PROFILES[args.profile], args.source)
    training = profile.training
    resolution = args.resolution or training.resolution
    overrides = {
        "model": args.model,
        "resolution": resolution,
        "base_resolution": (
            resolution
            if args.model == "resnet18"
            else args.base_resolution or training.base_resolution
        ),
    }
    if args.base_steps is not None:
        overrides["base_steps"] = args.base_steps
    if args.width:
        overrides["width"] = args.width
    ingest = dataclasses.replace(
        profile.ingest,
        image_size=max(resolution, args.image_size or 0),
        beam_workers=args.beam_workers or profile.ingest.beam_workers,
        beam_worker_mode=args.beam_worker_mode or profile.ingest.beam_worker_mode,
    )
    if args.eval_fraction is not None:
        ingest = dataclasses.replace(ingest, eval_fraction=args.eval_fraction)
    profile = dataclasses.replace(
        profile,
        training=dataclasses.replace(training, **overrides),
        ingest=ingest,
        train_steps=args.train_steps or profile.train_steps,
        synthetic_patients=args.patients or profile.synthetic_patients,
        synthetic_rows=args.synthetic_rows or profile.synthetic_rows,
    )
    if args.auc_lower_bound is not None:
        profile = dataclasses.replace(profile, auc_lower_bound=args.auc_lower_bound)
    return profile


def run(args: argparse.Namespace) -> dict:
    """Runs the pipeline for parsed arguments; returns the summary dict.

    Raises:
        ValueError: for invalid options (see :func:`resolve_profile`), before
            any data is generated or any component runs.
    """
    profile = resolve_profile(args)
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    start = time.time()

    source, manifest, data_root = args.source, args.manifest, args.data_root
    if manifest:
        source = "csv"
    if not data_root and not manifest:
        source = source if source in SYNTHETIC_SOURCES else "cbis_ddsm"
        data_root = os.path.join(work_dir, "data", f"synthetic_{source}")
        ensure_synthetic_data(
            data_root,
            patients=profile.synthetic_patients,
            rows=profile.synthetic_rows,
            source=source,
        )

    pipeline_name = args.pipeline_name
    metadata_path = os.path.join(work_dir, "metadata.sqlite")
    serving_model_dir = os.path.join(work_dir, "serving_model", pipeline_name)
    pipeline = pipeline_lib.create_pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=os.path.join(work_dir, "pipeline_root", pipeline_name),
        data_root=data_root or "",
        serving_model_dir=serving_model_dir,
        source=source,
        manifest=manifest,
        image_size=profile.ingest.image_size,
        eval_fraction=profile.ingest.eval_fraction,
        train_steps=profile.train_steps,
        training_config=profile.training,
        auc_lower_bound=profile.auc_lower_bound,
        warm_start=args.warm_start,
        enable_cache=not args.no_cache,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
        ),
        beam_pipeline_args=beam_pipeline_args(1),
        ingest_beam_args=beam_pipeline_args(
            profile.ingest.beam_workers, profile.ingest.beam_worker_mode
        ),
    )
    # Read by the DicomExampleGen executor (which refuses a folder inside the
    # pipeline root); not a component parameter, so the cache key and the
    # pipeline definition do not depend on it.
    private_dir = os.environ.get(PRIVATE_DIR_ENV) or os.path.join(work_dir, PRIVATE_DIR)
    with _environ(PRIVATE_DIR_ENV, private_dir):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    summary = summarize(
        metadata_path,
        pipeline_name,
        node_ids=NODE_IDS,
        roc_png=os.path.join(work_dir, "roc.png"),
    )
    summary["seconds"] = round(time.time() - start, 1)
    print(format_summary(summary, seconds=summary["seconds"]))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--work-dir", default=os.path.join(os.getcwd(), "morphhr_work"))
    parser.add_argument("--data-root", default=None, help="real data set root")
    parser.add_argument("--source", default="cbis_ddsm", choices=SOURCES)
    parser.add_argument("--manifest", default=None, help="CSV manifest (source csv)")
    parser.add_argument("--profile", default="cpu", choices=sorted(configs.PROFILES))
    parser.add_argument("--model", default="morphhr", choices=("morphhr", "resnet18"))
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--base-resolution", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None, help="stored size")
    parser.add_argument("--width", type=int, default=None, help="ResNet18 width")
    parser.add_argument("--base-steps", type=int, default=None)
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--patients", type=int, default=None, help="synthetic set")
    parser.add_argument(
        "--synthetic-rows", type=int, default=None, help="synthetic set"
    )
    parser.add_argument("--auc-lower-bound", type=float, default=None)
    parser.add_argument("--eval-fraction", type=float, default=None)
    parser.add_argument("--beam-workers", type=int, default=None)
    parser.add_argument(
        "--beam-worker-mode",
        choices=WORKER_MODES,
        default=None,
        help="the ingest's workers as processes or threads (default: the profile's)",
    )
    parser.add_argument("--warm-start", action="store_true")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    args = parser.parse_args(argv)
    try:
        resolve_profile(args)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    summary = run(parse_args(argv))
    ok = summary.get("blessed") and summary.get("pushed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
