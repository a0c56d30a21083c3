"""DicomExampleGen on a CBIS-DDSM tree carrying hostile files: through the
TFX executor, ingested + rejected == listed exactly, and every hostile file is
in the rejects artifact, redacted, with its reason."""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shutil

from morphhr_tf.runtime import beam_pipeline_args

import hostile_corpus as hc
import pytest
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.dicom_example_gen import IngestRejects
from components.dicom_example_gen import executor as executor_lib
from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram
from morphhr_tf.data.ingest import PRIVATE_REJECTS_FILE, redact_path

SALT = "example-gen-hostile-salt"


@pytest.fixture(scope="module")
def spoiled_tree(tmp_path_factory):
    """8 synthetic patients; one full image per hostile kind spoiled in place."""
    from morphhr_tf.synthetic.cbis_ddsm import generate

    root = tmp_path_factory.mktemp("eg_hostile") / "cbis"
    generate(str(root), patients=8, seed=5, rows=96, rois=False)
    full = sorted(
        glob.glob(str(root / "**" / "*_CC" / "**" / "*.dcm"), recursive=True)
        + glob.glob(str(root / "**" / "*_MLO" / "**" / "*.dcm"), recursive=True)
    )
    kinds = sorted(hc.SPOILS)
    assert len(full) >= 2 * len(kinds)
    spoiled = {}
    for i, kind in enumerate(kinds):
        path = full[2 * i]  # spread over patients
        spoiled[path] = (kind, hc.spoil(path, kind, seed=i))
    return str(root), spoiled


def _direct_reason(path):
    try:
        read_mammogram(path)
    except DicomRejected as err:
        return str(err)
    return None


@pytest.mark.slow
def test_every_hostile_file_is_ingested_or_rejected_with_its_reason(
    spoiled_tree, tmp_path, monkeypatch
):
    root, spoiled = spoiled_tree
    monkeypatch.setenv("MORPHHR_SALT", SALT)
    private = tmp_path / "private"
    node = tmp_path / "pipeline_root" / "DicomExampleGen"
    examples = standard_artifacts.Examples()
    examples.uri = str(node / "examples" / "1")
    rejects = IngestRejects()
    rejects.uri = str(node / "rejects" / "1")
    props = {
        "input_base": root,
        "input_config": proto_utils.proto_to_json(
            example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name="all", pattern="*")]
            )
        ),
        "output_config": proto_utils.proto_to_json(example_gen_pb2.Output()),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        "source": "cbis_ddsm",
        "manifest": None,
        "image_size": 32,
        "resize_mode": "square",
        "eval_fraction": 0.25,
        "test_fraction": 0.0,
        "private_dir": str(private),
    }
    executor = executor_lib.Executor(
        executor_lib.Executor.Context(
            beam_pipeline_args=beam_pipeline_args(1), tmp_dir=str(tmp_path / "tmp")
        )
    )
    executor.Do({}, {"examples": [examples], "rejects": [rejects]}, props)

    with open(os.path.join(rejects.uri, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(rejects.uri, "rejects.csv"), newline="") as f:
        text = f.read()
    rows = list(csv.DictReader(text.splitlines()))
    with open(private / PRIVATE_REJECTS_FILE, newline="") as f:
        mapping = list(csv.DictReader(f))
    print(
        f"\nExampleGen on {len(spoiled)} hostile files in a CBIS tree: "
        f"{summary['listed']} listed, {summary['ingested']} ingested, "
        f"{summary['rejected_images']} images rejected, "
        f"{summary['listing_problems']} listing problems"
    )
    # Nothing lost: every listed image is ingested or rejected, exactly.
    assert summary["ingested"] + summary["rejected_images"] == summary["listed"]
    assert summary["rejected"] == len(rows) == len(mapping)
    assert summary["rejected_images"] + summary["listing_problems"] == len(rows)
    assert examples.get_int_custom_property("num_ingested") == summary["ingested"]
    assert rejects.get_int_custom_property("num_rejected") == len(rows)
    assert all(r["reason"].strip() for r in rows)
    assert not [r for r in rows if "internal error" in r["reason"]]
    # No real path or patient id in the artifact.
    assert not re.search(r"P_\d+", text)
    assert root not in text and os.path.basename(root) not in text

    by_path = {r["path"]: r["reason"] for r in rows}
    real = {m["source_path"]: m["reason"] for m in mapping}
    outcomes = {}
    for path, (kind, expected) in spoiled.items():
        shown = redact_path(path, root, SALT)
        if expected == "either" and shown not in by_path:
            outcomes[kind] = "ingested"
            continue
        reason = by_path.get(shown)
        if reason is None:  # unusable at listing: the row names its case folder
            case = shown.split("/")[1]
            listing = [
                r
                for p, r in by_path.items()
                if f" {case}/" in p and r.startswith("listing: ")
            ]
            assert kind in ("directory", "symlink-loop") and listing, (kind, shown)
            reason = listing[0]
        else:  # the reader's own reason reached the report
            assert reason == _direct_reason(path), (kind, reason)
            assert real[path] == reason  # the private map names the real file
        outcomes[kind] = reason
    print("\n".join(f"  {k}: {v}" for k, v in sorted(outcomes.items())))
    shutil.rmtree(private)
