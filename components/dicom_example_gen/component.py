"""DicomExampleGen: a file-based ExampleGen that ingests DICOM mammograms.

It is a real ``FileBasedExampleGen`` (so the file-based driver fingerprints
its input and the Kubeflow v2 compiler runs that driver as a pre-cache hook),
with its own Beam executor (:mod:`components.dicom_example_gen.executor`) that
runs :class:`morphhr_tf.data.ingest.IngestExamples` over the records a data set
adapter lists:

- ``examples`` (``Examples``): ``Split-train/``, ``Split-eval/`` and, when the
  source has an official test split, ``Split-test/``, as gzip TFRecords of
  serialized ``tf.Example``; ``split_names`` and ``file_format`` are set, and
  custom properties hold the counts (``num_examples_<split>``,
  ``num_positive_<split>``, ``num_rejected``).
- ``rejects`` (``IngestRejects``): ``rejects.csv`` (``image_key,path,reason``,
  redacted: no real path, no patient id; see ``docs/privacy.md``) and
  ``summary.json``; the same counts as custom properties.

Splits are patient-level and deterministic (a hash of the salted patient
key); official test splits are kept and eval is carved from train by patient.
The salt is read by the executor from ``$MORPHHR_SALT`` and is deliberately
not a parameter: execution properties are stored in ML Metadata.
"""

from __future__ import annotations

import os

from tfx import types
from tfx.components.example_gen import driver
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.standard_component_specs import FileBasedExampleGenSpec

from components.dicom_example_gen import executor
from morphhr_tf.data.adapters import SOURCES
from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE

RESIZE_MODES = ("square", "pad")


class IngestRejects(artifact.Artifact):
    """The files ingestion rejected, with a one-line reason each, and counts."""

    TYPE_NAME = "morphhr.IngestRejects"


class DicomExampleGenSpec(FileBasedExampleGenSpec):
    """FileBasedExampleGen's spec plus the DICOM options and the rejects."""

    PARAMETERS = {
        **FileBasedExampleGenSpec.PARAMETERS,
        "source": ExecutionParameter(type=str),
        "manifest": ExecutionParameter(type=str, optional=True),
        "image_size": ExecutionParameter(type=int),
        "resize_mode": ExecutionParameter(type=str),
        "eval_fraction": ExecutionParameter(type=float),
        "test_fraction": ExecutionParameter(type=float),
        "private_dir": ExecutionParameter(type=str, optional=True),
    }
    OUTPUTS = {
        **FileBasedExampleGenSpec.OUTPUTS,
        "rejects": ChannelParameter(type=IngestRejects),
    }


class DicomExampleGen(FileBasedExampleGen):
    """Ingests DICOM mammograms into patient-split TFRecords.

    Args:
        input_base: the data set root (for ``csv``: the folder of the
            manifest, which is derived from ``manifest`` when omitted).
        source: ``cbis_ddsm``, ``chestxray14`` (PNG chest radiographs,
            multi-hot ``labels`` in the examples), ``csv``, ``rsna`` or
            ``vindr`` (:data:`morphhr_tf.data.adapters.SOURCES`).
        manifest: the CSV manifest (``source="csv"`` only).
        image_size: stored image size in pixels (``square``: size x size).
        resize_mode: ``square`` (like the paper) or ``pad`` (aspect kept).
        eval_fraction: fraction of the training patients moved to eval.
        test_fraction: fraction of the patients without an official split
            sent to test (``Split-test/`` exists when this is > 0 or the
            source has an official test split).
        salt: must stay ``None``. The de-identification salt is read by the
            executor from ``$MORPHHR_SALT`` (else the development salt, see
            :func:`morphhr_tf.data.deid.resolve_salt`), never passed here:
            component parameters are stored in ML Metadata. Changing it
            changes the keys and so the patient split.
        private_dir: a folder outside the pipeline root for
            ``rejects_private.csv``, the map from the redacted rejects back to
            the real files (``None``: ``$MORPHHR_PRIVATE_DIR``, else not
            written). The executor refuses one inside the pipeline root.
        fingerprint_pattern: glob under ``input_base`` whose files' sizes and
            modification times decide whether a cached run is reused (default:
            the manifest for ``csv``, else every top-level entry).

    Raises:
        ValueError: for an unknown source or resize mode, a missing
            manifest, or a salt given as a parameter.

    Example:

    >>> gen = DicomExampleGen(input_base="/data/cbis", source="cbis_ddsm",
    ...                       image_size=896)
    """

    SPEC_CLASS = DicomExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(
        self,
        input_base: str | None = None,
        *,
        source: str = "cbis_ddsm",
        manifest: str | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        resize_mode: str = "square",
        eval_fraction: float = 0.2,
        test_fraction: float = 0.0,
        salt: str | None = None,
        private_dir: str | None = None,
        fingerprint_pattern: str | None = None,
    ):
        if salt:
            raise ValueError(
                "The de-identification salt must not be a component parameter "
                "(execution properties are stored in ML Metadata); set "
                "$MORPHHR_SALT in the executor's environment instead. Received: "
                "salt=<a value, not shown>"
            )
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}. Received: {source!r}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"resize_mode must be one of {RESIZE_MODES}. Received: {resize_mode!r}"
            )
        if source == "csv":
            if not manifest:
                raise ValueError("source='csv' needs manifest=PATH_TO_CSV.")
            input_base = input_base or os.path.dirname(os.path.abspath(manifest))
            fingerprint_pattern = fingerprint_pattern or os.path.relpath(
                os.path.abspath(manifest), input_base
            )
        if not input_base:
            raise ValueError(f"input_base is required. Received: {input_base!r}")
        if not 0.0 <= eval_fraction < 1.0:
            raise ValueError(
                f"eval_fraction must lie in [0, 1). Received: {eval_fraction!r}"
            )
        input_config = example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(
                    name="all", pattern=fingerprint_pattern or "*"
                )
            ]
        )
        spec = DicomExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=example_gen_pb2.Output(),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            source=source,
            manifest=manifest,
            image_size=int(image_size),
            resize_mode=resize_mode,
            eval_fraction=float(eval_fraction),
            test_fraction=float(test_fraction),
            private_dir=private_dir,
            examples=types.Channel(type=standard_artifacts.Examples),
            rejects=types.Channel(type=IngestRejects),
        )
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
