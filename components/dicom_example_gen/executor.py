"""The Beam executor of DicomExampleGen.

Lists the source with :func:`morphhr_tf.data.adapters.load_source`, runs
:class:`morphhr_tf.data.ingest_transform.IngestSplits` (the composite
:func:`morphhr_tf.data.ingest.run_ingest` runs too) over the records, writes
each split with TFX's ``WriteSplit`` (gzip TFRecords) and the rejects as CSV,
and records the counts in ``summary.json`` (the schema of
:meth:`~morphhr_tf.data.ingest_transform.IngestSplits.summarize`, where
``rejected`` is the row count of ``rejects.csv``) and on both output
artifacts.

Privacy (``docs/privacy.md``): file paths name patients (CBIS-DDSM case
folders hold the patient id), so the rejects artifact gets the redacted rows
(``image_key,path,reason``; :mod:`morphhr_tf.data.redaction`), never a real
path. The salt of the keys is read here, at run time, from
``$MORPHHR_SALT`` (:func:`morphhr_tf.data.deid.resolve_salt`): it is not an
execution property, because those are stored in ML Metadata. The map from the
redacted rejects back to the real files (``rejects_private.csv``) is written
only to the ``private_dir`` execution property, else ``$MORPHHR_PRIVATE_DIR``,
which must lie outside the pipeline root; with neither it is not written.
"""

from __future__ import annotations

import os
import time
from typing import Any

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import (
    BaseExampleGenExecutor,
)
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

import morphhr_tf  # noqa: F401  (runtime policy first)
from morphhr_tf import runtime
from morphhr_tf.data import fileio
from morphhr_tf.data.deid import resolve_salt
from morphhr_tf.data.ingest import (
    EXAMPLES,
    REJECTS,
    REJECTS_FILE,
    SUMMARY_FILE,
    IngestExamples,
    IngestSplits,
    check_private_dir,
    load_counts,
    redact_reject,
    save_counts,
    write_summary,
)
from morphhr_tf.data.record_order import SplitFiles, canonicalize_split
from morphhr_tf.data.redaction import WriteRejectFiles

EXAMPLES_KEY = "examples"
REJECTS_KEY = "rejects"
PRIVATE_DIR_ENV = "MORPHHR_PRIVATE_DIR"
_WORK_DIR = ".ingest_tmp"
__all__ = [
    "EXAMPLES_KEY",
    "PRIVATE_DIR_ENV",
    "REJECTS_FILE",
    "REJECTS_KEY",
    "SUMMARY_FILE",
    "Executor",
    "resolve_private_dir",
]


def _pipeline_root_of(uri: str) -> str:
    """The pipeline root of an output artifact ``<root>/<node>/<key>/<id>``,
    else the artifact folder itself."""
    uri = uri.rstrip("/")
    if os.path.basename(uri).isdigit():
        return os.path.dirname(os.path.dirname(os.path.dirname(uri)))
    return uri


def resolve_private_dir(exec_properties: dict[str, Any], artifact_uri: str) -> str:
    """The folder for ``rejects_private.csv``, or '' when none is configured.

    Args:
        exec_properties: the execution properties (``private_dir``).
        artifact_uri: an output artifact's URI; the private folder must lie
            outside its pipeline root.

    Returns:
        ``private_dir``, else ``$MORPHHR_PRIVATE_DIR``, else ''.

    Raises:
        ValueError: if the folder lies inside the pipeline root.
    """
    private = exec_properties.get("private_dir") or os.environ.get(PRIVATE_DIR_ENV, "")
    if not private:
        return ""
    return check_private_dir(private, _pipeline_root_of(artifact_uri), "pipeline root")


def _split_names(records: list[Any], test_fraction: float) -> list[str]:
    names = ["train", "eval"]
    if test_fraction > 0 or any(getattr(r, "split", "") == "test" for r in records):
        names.append("test")
    return names


def _listing_of(exec_properties: dict[str, Any], salt: bytes):
    """``(listing, base)`` of the configured source; raises ``ValueError``
    (with the first problem, redacted) when it lists no image."""
    from morphhr_tf.data.adapters import load_source

    source = exec_properties["source"]
    root = exec_properties["input_base"]
    base = root
    if source == "csv":
        root = exec_properties["manifest"]
        base = fileio.dirname(fileio.abspath(root))
    listing = load_source(source, root)
    if not listing.records:
        problems = listing.problems
        first = [
            redact_reject(p, f"listing: {r}", base=base, salt=salt)[1:]
            for p, r in problems[:1]
        ]
        raise ValueError(
            f"The {source} source at {root!r} lists no images "
            f"({len(problems)} problems, first (redacted): {first})."
        )
    return listing, base


def _set_properties(
    examples, rejects, summary: dict[str, Any], split_names, exec_properties
) -> None:
    """The counts on both artifacts; the formats on ``examples``."""
    for art in (examples, rejects):
        art.set_int_custom_property("num_ingested", summary["ingested"])
        art.set_int_custom_property("num_rejected", summary["rejected"])
        art.set_int_custom_property("num_listing_problems", summary["listing_problems"])
        for name in split_names:
            art.set_int_custom_property(
                f"num_examples_{name}", summary["per_split"][name]
            )
            art.set_int_custom_property(
                f"num_positive_{name}", summary["per_split_label"][name]["1"]
            )
    examples_utils.set_payload_format(
        examples,
        exec_properties.get("output_data_format", example_gen_pb2.FORMAT_TF_EXAMPLE),
    )
    examples_utils.set_file_format(
        examples, write_split.to_file_format_str(_file_format(exec_properties))
    )


def _file_format(exec_properties: dict[str, Any]) -> int:
    """The examples' file format (gzip TFRecords unless configured)."""
    return exec_properties.get(
        "output_file_format", example_gen_pb2.FORMAT_TFRECORDS_GZIP
    )


#: The artifacts' file system as TFX reaches it (``gs://`` without gcsfs).
_GFILE = SplitFiles(
    names=lambda folder: (
        tf.io.gfile.listdir(folder) if tf.io.gfile.isdir(folder) else []
    ),
    open=tf.io.gfile.GFile,
    remove=tf.io.gfile.remove,
)


def _canonical_order(examples, split_names, exec_properties: dict[str, Any]) -> None:
    """Each split's records in the order their bytes alone decide
    (:mod:`morphhr_tf.data.record_order`), so that the same data give the
    Trainer the same input order whatever Beam's workers did. Gzip TFRecords
    (TFX's only TFRecord format) are rewritten; Parquet keeps the runner's
    order, which a warning says."""
    payload = exec_properties.get("output_data_format")
    if payload == example_gen_pb2.PayloadFormat.FORMAT_PARQUET:
        logging.warning(
            "DicomExampleGen: Parquet output keeps the runner's record order, "
            "which can differ from run to run"
        )
        return
    for name in split_names:
        canonicalize_split(
            artifact_utils.get_split_uri([examples], name),
            prefix=f"{write_split.DEFAULT_FILE_NAME}-",
            files=_GFILE,
        )


class Executor(BaseExampleGenExecutor):
    """DicomExampleGen's executor (``BeamExecutorSpec``)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError(
            "DicomExampleGen splits by patient inside the ingest transform; "
            "see Executor.Do."
        )

    def Do(
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Ingests the configured source into the output artifacts.

        Raises:
            ValueError: if the source lists no image, or ``private_dir`` lies
                inside the pipeline root.
            RuntimeError: if ingested + rejected differs from the records
                listed (a lost record).
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        rejects = artifact_utils.get_single_instance(output_dict[REJECTS_KEY])
        private_dir = resolve_private_dir(exec_properties, rejects.uri)
        # Read at run time, never stored: not an execution property.
        listing, base = _listing_of(exec_properties, resolve_salt(None))
        records = list(listing.records)
        test_fraction = float(exec_properties.get("test_fraction") or 0.0)
        split_names = _split_names(records, test_fraction)
        examples.split_names = artifact_utils.encode_split_names(split_names)
        file_format = _file_format(exec_properties)
        tf.io.gfile.makedirs(rejects.uri)
        if private_dir:
            tf.io.gfile.makedirs(private_dir)
        work = os.path.join(rejects.uri, _WORK_DIR)

        start = time.perf_counter()
        ingest = IngestSplits(
            records,
            listing.problems,
            IngestExamples(
                image_size=int(exec_properties["image_size"]),
                salt=None,  # $MORPHHR_SALT, resolved when the pipeline is built
                eval_fraction=float(exec_properties["eval_fraction"]),
                resize_mode=exec_properties["resize_mode"],
                test_fraction=test_fraction,
            ),
            split_names=split_names,
            base=base,
        )
        pipeline = self._make_beam_pipeline()
        outputs = pipeline | "Ingest" >> ingest
        for name in split_names:
            uri = artifact_utils.get_split_uri([examples], name)
            _ = outputs[EXAMPLES][name] | f"WriteSplit[{name}]" >> (
                write_split.WriteSplit(uri, file_format, exec_properties)
            )
        _ = outputs[REJECTS] | "WriteRejects" >> WriteRejectFiles(
            rejects.uri, private_dir
        )
        save_counts(outputs, work)
        pipeline.run().wait_until_finish()
        _canonical_order(examples, split_names, exec_properties)

        counts = load_counts(work)
        tf.io.gfile.rmtree(work)
        num_workers, worker_mode = self._workers()
        summary = ingest.summarize(
            counts,
            source=exec_properties["source"],
            num_workers=num_workers,
            worker_mode=worker_mode,
            start=start,
        )
        write_summary(rejects.uri, summary)
        _set_properties(examples, rejects, summary, split_names, exec_properties)

    def _workers(self) -> tuple[int, str]:
        """The direct runner's worker count and mode of this executor's Beam
        options (:func:`morphhr_tf.runtime.beam_workers_of`)."""
        return runtime.beam_workers_of(self._beam_pipeline_args or [])
