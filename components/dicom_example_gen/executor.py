"""The Beam executor of DicomExampleGen.

Lists the source with :func:`morphhr_tf.data.adapters.load_source`, runs
:class:`morphhr_tf.data.ingest.IngestExamples` over the records, writes each
split with TFX's ``WriteSplit`` (gzip TFRecords) and the rejects as CSV, and
records the counts on both output artifacts.

Privacy (``docs/privacy.md``): file paths name patients (CBIS-DDSM case
folders hold the patient id), so the rejects artifact gets the redacted rows
of :class:`morphhr_tf.data.ingest.RedactRejects` (``image_key,path,reason``),
never a real path. The salt of the keys is read here, at run time, from
``$MORPHHR_SALT`` (:func:`morphhr_tf.data.deid.resolve_salt`): it is not an
execution property, because those are stored in ML Metadata. The map from the
redacted rejects back to the real files (``rejects_private.csv``) is written
only to the ``private_dir`` execution property, else ``$MORPHHR_PRIVATE_DIR``,
which must lie outside the pipeline root; with neither it is not written.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import (
    BaseExampleGenExecutor,
)
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

import morphhr_tf  # noqa: F401  (runtime policy first)
from morphhr_tf.data import features as F

EXAMPLES_KEY = "examples"
REJECTS_KEY = "rejects"
REJECTS_FILE = "rejects.csv"
SUMMARY_FILE = "summary.json"
PRIVATE_DIR_ENV = "MORPHHR_PRIVATE_DIR"
_NAMESPACE = "morphhr_dicom_example_gen"


class _CountExamples(beam.DoFn):
    """Counts examples and positives per split (Beam metrics); passes through."""

    def __init__(self, split: str):
        self._split = split
        self._examples = Metrics.counter(_NAMESPACE, f"examples_{split}")
        self._positives = Metrics.counter(_NAMESPACE, f"positive_{split}")

    def process(self, serialized: bytes):
        example = tf.train.Example.FromString(serialized)
        self._examples.inc()
        if example.features.feature[F.LABEL].int64_list.value[:1] == [1]:
            self._positives.inc()
        yield serialized


def _csv_line(row: tuple[str, ...]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([str(v) for v in row])
    return buf.getvalue()


class _CountRejects(beam.DoFn):
    """Counts ``(path, reason)`` rejects under one counter; passes through."""

    def __init__(self, counter: str):
        self._counter = Metrics.counter(_NAMESPACE, counter)

    def process(self, row: tuple[str, str]):
        self._counter.inc()
        yield row


def _private_row(
    row: tuple[str, str], base: str, salt: bytes, keys: dict[str, str]
) -> tuple[str, str, str, str]:
    """``(path, reason)`` -> the ``rejects_private.csv`` row (real path kept)."""
    from morphhr_tf.data.ingest import redact_reject

    path, reason = row
    ikey, shown, _ = redact_reject(path, reason, base=base, salt=salt, image_keys=keys)
    return ikey, shown, path, reason


def _sorted_lines(pcoll: beam.PCollection, label: str) -> beam.PCollection:
    """Rows -> CSV lines in sorted order (a deterministic file)."""
    return (
        pcoll
        | f"{label}Lines" >> beam.Map(_csv_line)
        | f"{label}Gather" >> beam.combiners.ToList()
        | f"{label}Sort" >> beam.FlatMap(sorted)
    )


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
    root = _pipeline_root_of(artifact_uri)
    local = "://" not in private and "://" not in root
    norm = os.path.realpath if local else (lambda p: p.rstrip("/"))
    inside = (norm(private) + "/").startswith(norm(root) + "/")
    if inside:
        raise ValueError(
            "private_dir holds re-identification data and must lie outside the "
            f"pipeline root {root!r}. Received: private_dir={private!r}"
        )
    return norm(private)


def _split_names(records: list[Any], test_fraction: float) -> list[str]:
    names = ["train", "eval"]
    if test_fraction > 0 or any(getattr(r, "split", "") == "test" for r in records):
        names.append("test")
    return names


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
        from morphhr_tf.data.adapters import load_source
        from morphhr_tf.data.deid import resolve_salt
        from morphhr_tf.data.ingest import (
            PRIVATE_REJECT_COLUMNS,
            PRIVATE_REJECTS_FILE,
            REJECT_COLUMNS,
            IngestExamples,
            RedactRejects,
            image_keys_of,
            redact_reject,
        )

        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        rejects = artifact_utils.get_single_instance(output_dict[REJECTS_KEY])
        private_dir = resolve_private_dir(exec_properties, rejects.uri)
        # Read at run time, never stored: not an execution property.
        salt = resolve_salt(None)

        source = exec_properties["source"]
        root = exec_properties["input_base"]
        base = root
        if source == "csv":
            root = exec_properties["manifest"]
            base = os.path.dirname(os.path.abspath(root))
        listing = load_source(source, root)
        records = list(listing.records)
        problems = [(str(p), f"listing: {r}") for p, r in listing.problems]
        if not records:
            first = [
                redact_reject(p, r, base=base, salt=salt)[1:] for p, r in problems[:1]
            ]
            raise ValueError(
                f"The {source} source at {root!r} lists no images "
                f"({len(problems)} problems, first (redacted): {first})."
            )
        test_fraction = float(exec_properties.get("test_fraction") or 0.0)
        split_names = _split_names(records, test_fraction)
        examples.split_names = artifact_utils.encode_split_names(split_names)
        file_format = exec_properties.get(
            "output_file_format", example_gen_pb2.FORMAT_TFRECORDS_GZIP
        )
        tf.io.gfile.makedirs(rejects.uri)

        pipeline = self._make_beam_pipeline()
        outputs = (
            pipeline
            | "Records" >> beam.Create(records, reshuffle=False)
            | "Ingest"
            >> IngestExamples(
                size=int(exec_properties["image_size"]),
                salt=salt,
                eval_fraction=float(exec_properties["eval_fraction"]),
                resize_mode=exec_properties["resize_mode"],
                test_fraction=test_fraction,
            )
        )
        by_split = outputs[EXAMPLES_KEY] | "BySplit" >> beam.Partition(
            lambda kv, n: split_names.index(kv[0]) if kv[0] in split_names else 0,
            len(split_names),
        )
        for name, pcoll in zip(split_names, by_split):
            _ = (
                pcoll
                | f"Values[{name}]" >> beam.Values()
                | f"Count[{name}]" >> beam.ParDo(_CountExamples(name))
                | f"WriteSplit[{name}]"
                >> write_split.WriteSplit(
                    artifact_utils.get_split_uri([examples], name),
                    file_format,
                    exec_properties,
                )
            )
        image_rejects = outputs[REJECTS_KEY] | "CountImageRejects" >> beam.ParDo(
            _CountRejects("rejected_images")
        )
        listed = (
            pipeline
            | "ListingProblems" >> beam.Create(problems)
            | "CountListingProblems" >> beam.ParDo(_CountRejects("listing_problems"))
        )
        all_rejects = (image_rejects, listed) | "AllRejects" >> beam.Flatten()
        redacted = all_rejects | "Redact" >> RedactRejects(
            base=base, salt=salt, records=records
        )
        _ = _sorted_lines(redacted, "Rejects") | "WriteRejects" >> beam.io.WriteToText(
            os.path.join(rejects.uri, REJECTS_FILE),
            shard_name_template="",
            header=",".join(REJECT_COLUMNS),
        )
        if private_dir:
            tf.io.gfile.makedirs(private_dir)
            keys = image_keys_of(records, salt)
            private_rows = all_rejects | "PrivateRows" >> beam.Map(
                _private_row, base, salt, keys
            )
            _ = _sorted_lines(
                private_rows, "Private"
            ) | "WritePrivate" >> beam.io.WriteToText(
                os.path.join(private_dir, PRIVATE_REJECTS_FILE),
                shard_name_template="",
                header=",".join(PRIVATE_REJECT_COLUMNS),
            )
        result = pipeline.run()
        result.wait_until_finish()

        counters = {
            c.key.metric.name: c.committed
            for c in result.metrics().query(MetricsFilter().with_namespace(_NAMESPACE))[
                "counters"
            ]
        }
        rejected_images = int(counters.get("rejected_images", 0))
        listing_problems = int(counters.get("listing_problems", 0))
        summary = {
            "source": source,
            "listed": len(records),
            "rejected_images": rejected_images,
            "listing_problems": listing_problems,
            "rejected": rejected_images + listing_problems,
            "splits": {
                name: {
                    "examples": int(counters.get(f"examples_{name}", 0)),
                    "positive": int(counters.get(f"positive_{name}", 0)),
                }
                for name in split_names
            },
        }
        summary["ingested"] = sum(s["examples"] for s in summary["splits"].values())
        if summary["ingested"] + rejected_images != len(records):
            raise RuntimeError(
                f"DicomExampleGen lost records: {summary['ingested']} ingested + "
                f"{rejected_images} rejected != {len(records)} listed."
            )
        with tf.io.gfile.GFile(os.path.join(rejects.uri, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)

        for art in (examples, rejects):
            art.set_int_custom_property("num_ingested", summary["ingested"])
            art.set_int_custom_property("num_rejected", summary["rejected"])
            art.set_int_custom_property("num_listing_problems", listing_problems)
            for name, counts in summary["splits"].items():
                art.set_int_custom_property(f"num_examples_{name}", counts["examples"])
                art.set_int_custom_property(f"num_positive_{name}", counts["positive"])
        examples_utils.set_payload_format(
            examples,
            exec_properties.get(
                "output_data_format", example_gen_pb2.FORMAT_TF_EXAMPLE
            ),
        )
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(file_format)
        )
