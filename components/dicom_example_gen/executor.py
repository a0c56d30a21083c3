"""The Beam executor of DicomExampleGen.

Lists the source with :func:`morphhr_tf.data.adapters.load_source`, runs
:class:`morphhr_tf.data.ingest.IngestExamples` over the records, writes each
split with TFX's ``WriteSplit`` (gzip TFRecords) and the rejects as CSV, and
records the counts on both output artifacts.
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


class _RejectLine(beam.DoFn):
    """(path, reason) -> one CSV line; counts the rejects."""

    def __init__(self):
        self._rejected = Metrics.counter(_NAMESPACE, "rejected")

    def process(self, row: tuple[str, str]):
        self._rejected.inc()
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([str(row[0]), str(row[1])])
        yield buf.getvalue()


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
        """Ingests the configured source into the output artifacts."""
        from morphhr_tf.data.adapters import load_source
        from morphhr_tf.data.ingest import IngestExamples

        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        rejects = artifact_utils.get_single_instance(output_dict[REJECTS_KEY])

        source = exec_properties["source"]
        root = exec_properties["input_base"]
        kwargs = {}
        if source == "csv":
            root = exec_properties["manifest"]
        listing = load_source(source, root, **kwargs)
        records = list(listing.records)
        problems = [(str(p), str(r)) for p, r in listing.problems]
        if not records:
            raise ValueError(
                f"The {source} source at {root!r} lists no images "
                f"({len(problems)} problems, first: {problems[:1]})."
            )
        test_fraction = float(exec_properties.get("test_fraction") or 0.0)
        split_names = _split_names(records, test_fraction)
        examples.split_names = artifact_utils.encode_split_names(split_names)
        ingest_kwargs = {
            "size": int(exec_properties["image_size"]),
            "eval_fraction": float(exec_properties["eval_fraction"]),
            "resize_mode": exec_properties["resize_mode"],
            "test_fraction": test_fraction,
        }
        ingest_kwargs["salt"] = exec_properties.get("salt") or None
        file_format = exec_properties.get(
            "output_file_format", example_gen_pb2.FORMAT_TFRECORDS_GZIP
        )
        tf.io.gfile.makedirs(rejects.uri)

        pipeline = self._make_beam_pipeline()
        outputs = (
            pipeline
            | "Records" >> beam.Create(records, reshuffle=False)
            | "Ingest" >> IngestExamples(**ingest_kwargs)
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
        listed = pipeline | "ListingProblems" >> beam.Create(problems)
        _ = (
            (outputs[REJECTS_KEY], listed)
            | "AllRejects" >> beam.Flatten()
            | "RejectLines" >> beam.ParDo(_RejectLine())
            | "WriteRejects"
            >> beam.io.WriteToText(
                os.path.join(rejects.uri, REJECTS_FILE),
                shard_name_template="",
                header="path,reason",
            )
        )
        result = pipeline.run()
        result.wait_until_finish()

        counters = {
            c.key.metric.name: c.committed
            for c in result.metrics().query(MetricsFilter().with_namespace(_NAMESPACE))[
                "counters"
            ]
        }
        summary = {
            "source": source,
            "listed": len(records),
            "rejected": int(counters.get("rejected", 0)),
            "splits": {
                name: {
                    "examples": int(counters.get(f"examples_{name}", 0)),
                    "positive": int(counters.get(f"positive_{name}", 0)),
                }
                for name in split_names
            },
        }
        summary["ingested"] = sum(s["examples"] for s in summary["splits"].values())
        with tf.io.gfile.GFile(os.path.join(rejects.uri, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)

        for art in (examples, rejects):
            art.set_int_custom_property("num_ingested", summary["ingested"])
            art.set_int_custom_property("num_rejected", summary["rejected"])
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
