"""DicomExampleGen: the executor run directly with artifacts in a temp dir."""

import csv
import glob
import json
import os
from pathlib import Path

from morphhr_tf.runtime import beam_pipeline_args

import pytest
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.dicom_example_gen import DicomExampleGen, IngestRejects
from components.dicom_example_gen import executor as executor_lib
from morphhr_tf.data.ingest import PRIVATE_REJECTS_FILE, REJECT_COLUMNS, redact_path
from morphhr_tf.synthetic.cbis_ddsm import generate

SIZE = 32
SALT = "component-test-salt"


@pytest.fixture(autouse=True)
def _salt(monkeypatch):
    """The executor reads the salt from the environment, never a property."""
    monkeypatch.setenv("MORPHHR_SALT", SALT)
    monkeypatch.delenv(executor_lib.PRIVATE_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def cbis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cbis")
    generate(str(root), patients=10, seed=3, rows=96, rois=False)
    # One unreadable image: rejected with a reason, not dropped silently.
    victim = sorted(glob.glob(str(root / "**" / "*.dcm"), recursive=True))[0]
    with open(victim, "wb") as f:
        f.write(b"\0" * 200)
    return str(root), victim


def _exec_properties(root, **overrides):
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
        "image_size": SIZE,
        "resize_mode": "square",
        "eval_fraction": 0.3,
        "test_fraction": 0.0,
        "private_dir": None,
    }
    props.update(overrides)
    return props


def _run(tmp_path, props):
    """Runs the executor with outputs in TFX's layout <root>/<node>/<key>/<id>."""
    node = tmp_path / "pipeline_root" / "DicomExampleGen"
    examples = standard_artifacts.Examples()
    examples.uri = str(node / "examples" / "1")
    rejects = IngestRejects()
    rejects.uri = str(node / "rejects" / "1")
    executor = executor_lib.Executor(
        executor_lib.Executor.Context(
            beam_pipeline_args=beam_pipeline_args(1), tmp_dir=str(tmp_path / "tmp")
        )
    )
    executor.Do({}, {"examples": [examples], "rejects": [rejects]}, props)
    return examples, rejects


def _count(pattern):
    files = glob.glob(pattern)
    assert files, pattern
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_executor_writes_patient_splits_rejects_and_counts(cbis_root, tmp_path):
    root, victim = cbis_root
    examples, rejects = _run(tmp_path, _exec_properties(root))

    names = artifact_utils.decode_split_names(examples.split_names)
    assert names == ["train", "eval", "test"]  # CBIS has an official test split
    assert examples.get_string_custom_property("file_format") == "tfrecords_gzip"
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    total = 0
    patients = {}
    for name in names:
        pattern = os.path.join(examples.uri, f"Split-{name}", "*.gz")
        n = _count(pattern)
        assert n == examples.get_int_custom_property(f"num_examples_{name}")
        assert n > 0
        total += n
        for record in tf.data.TFRecordDataset(
            glob.glob(pattern), compression_type="GZIP"
        ):
            ex = tf.train.Example.FromString(record.numpy())
            key = ex.features.feature["patient_key"].bytes_list.value[0]
            patients.setdefault(key, set()).add(name)
            assert ex.features.feature["height"].int64_list.value[0] == SIZE
    assert all(len(s) == 1 for s in patients.values()), "a patient in two splits"
    assert examples.get_int_custom_property("num_ingested") == total
    assert examples.get_int_custom_property("num_rejected") >= 1
    assert rejects.get_int_custom_property("num_rejected") == (
        examples.get_int_custom_property("num_rejected")
    )

    with open(os.path.join(rejects.uri, "rejects.csv"), newline="") as f:
        text = f.read()
    rows = list(csv.DictReader(text.splitlines()))
    assert text.splitlines()[0] == ",".join(REJECT_COLUMNS)
    # The victim is reported by its redacted path, never its real one.
    by_path = {r["path"]: r for r in rows}
    assert redact_path(victim, root, SALT) in by_path
    assert by_path[redact_path(victim, root, SALT)]["reason"]
    assert os.path.relpath(victim, root) not in text and "P_0" not in text
    assert all(r["reason"] for r in rows)
    with open(os.path.join(rejects.uri, "summary.json")) as f:
        summary = json.load(f)
    assert summary["ingested"] == total
    assert summary["rejected"] == len(rows)
    assert summary["ingested"] + summary["rejected_images"] == summary["listed"]
    assert not os.path.exists(os.path.join(rejects.uri, PRIVATE_REJECTS_FILE))


def test_executor_writes_the_same_split_files_every_run(cbis_root, tmp_path):
    """Beam's Reshuffle orders the records at random; the files written do
    not depend on it (morphhr_tf.data.record_order)."""

    def files(run):
        examples, _ = _run(tmp_path / run, _exec_properties(cbis_root[0]))
        base = Path(examples.uri)
        return {str(p.relative_to(base)): p.read_bytes() for p in base.glob("*/*")}

    first = files("a")
    assert sorted(first) == [
        f"Split-{name}/data_tfrecord-00000-of-00001.gz"
        for name in ("eval", "test", "train")
    ]
    assert files("b") == first


def test_private_map_goes_outside_the_pipeline_root_only(cbis_root, tmp_path):
    root, victim = cbis_root
    private = tmp_path / "private"
    _, rejects = _run(tmp_path, _exec_properties(root, private_dir=str(private)))
    with open(os.path.join(rejects.uri, "rejects.csv"), newline="") as f:
        public = list(csv.DictReader(f))
    with open(private / PRIVATE_REJECTS_FILE, newline="") as f:
        mapping = list(csv.DictReader(f))
    # Same rows, same order; the private one leads back to the real file.
    assert [(m["image_key"], m["path"]) for m in mapping] == [
        (r["image_key"], r["path"]) for r in public
    ]
    assert victim in {m["source_path"] for m in mapping}

    inside = tmp_path / "again" / "pipeline_root" / "private"
    with pytest.raises(ValueError, match="outside the pipeline root"):
        _run(tmp_path / "again", _exec_properties(root, private_dir=str(inside)))
    assert not inside.exists()


def test_source_without_test_split_has_train_and_eval_only(cbis_root, tmp_path):
    root, victim = cbis_root
    manifest = tmp_path / "manifest.csv"
    files = sorted(glob.glob(os.path.join(root, "**", "*.dcm"), recursive=True))
    files = [
        f
        for f in files
        if f != victim and "_1" not in os.path.basename(os.path.dirname(f))
    ]
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "patient_id"])
        for i, path in enumerate(files[:12]):
            writer.writerow([path, i % 2, f"patient{i // 2}"])
    examples, _ = _run(
        tmp_path,
        _exec_properties(
            str(tmp_path), source="csv", manifest=str(manifest), eval_fraction=0.4
        ),
    )
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    assert examples.get_int_custom_property("num_ingested") == 12


def test_component_spec_and_argument_checks(tmp_path):
    gen = DicomExampleGen(input_base=str(tmp_path), source="rsna", image_size=64)
    assert gen.exec_properties["source"] == "rsna"
    # The salt is read by the executor, never stored as an (MLMD) property.
    assert "salt" not in gen.exec_properties
    with pytest.raises(ValueError, match="MORPHHR_SALT"):
        DicomExampleGen(input_base=str(tmp_path), salt="s3cret")
    private = DicomExampleGen(input_base=str(tmp_path), private_dir="/secure/x")
    assert private.exec_properties["private_dir"] == "/secure/x"
    assert gen.exec_properties["image_size"] == 64
    assert set(gen.outputs) == {"examples", "rejects"}
    manifest = tmp_path / "m.csv"
    csv_gen = DicomExampleGen(source="csv", manifest=str(manifest))
    assert csv_gen.exec_properties["input_base"] == str(tmp_path)
    assert '"pattern": "m.csv"' in csv_gen.exec_properties["input_config"]
    with pytest.raises(ValueError, match="dicomdir"):
        DicomExampleGen(input_base=str(tmp_path), source="dicomdir")
    with pytest.raises(ValueError, match="manifest"):
        DicomExampleGen(source="csv")
    with pytest.raises(ValueError, match="stretch"):
        DicomExampleGen(input_base=str(tmp_path), resize_mode="stretch")


@pytest.mark.parametrize(
    "args, expected",
    [
        (beam_pipeline_args(1), (1, "in_process")),
        (beam_pipeline_args(2), (2, "processes")),
        (beam_pipeline_args(2, "threads"), (2, "threads")),
    ],
)
def test_executor_reports_its_beam_workers_and_how_they_run(args, expected, tmp_path):
    executor = executor_lib.Executor(
        executor_lib.Executor.Context(beam_pipeline_args=args, tmp_dir=str(tmp_path))
    )
    assert executor._workers() == expected
