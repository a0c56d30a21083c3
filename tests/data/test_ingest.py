"""Tests of the Beam ingest: counts, outputs, leakage, and no PHI anywhere."""

from __future__ import annotations

import csv
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from morphhr_tf import runtime
from morphhr_tf.data import ImageRecord, load_source, patient_key
from morphhr_tf.data import features as F
from morphhr_tf.data.ingest import (
    IngestExamples,
    image_keys_of,
    redact_path,
    run_ingest,
)
from morphhr_tf.data.tfrecord_codec import decode_image, parse_example

SALT = "test-salt-7f3a9c"


def _read_split(out_dir, split):
    files = sorted(glob.glob(os.path.join(out_dir, f"Split-{split}", "data-*.gz")))
    assert files, split
    return [
        parse_example(x)
        for x in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


@pytest.fixture(scope="module")
def ingested(small_tree, tmp_path_factory):
    """The small tree plus a broken full image, ingested at 64 px."""
    root = tmp_path_factory.mktemp("ingest_src") / "tree"
    shutil.copytree(small_tree[0], root)
    listing = load_source("cbis_ddsm", root)
    broken = listing.records[3].path
    with open(broken, "r+b") as f:  # truncate inside the pixel data
        f.truncate(os.path.getsize(broken) // 2)
    out = tmp_path_factory.mktemp("ingest_out")
    summary = run_ingest(
        "cbis_ddsm",
        root,
        out,
        image_size=64,
        salt=SALT,
        eval_fraction=0.3,
        progress=False,
    )
    return root, out, summary, listing, broken


def test_counts_add_up_and_rejects_have_reasons(ingested):
    root, out, summary, listing, broken = ingested
    assert summary["records"] == len(listing.records)
    assert summary["ingested"] + summary["rejected_images"] == summary["records"]
    assert summary["rejected"] == summary["rejected_images"] == 1
    assert summary["listing_problems"] == 0
    assert sum(summary["per_split"].values()) == summary["ingested"]
    assert sum(summary["per_label"].values()) == summary["ingested"]
    with open(os.path.join(out, "rejects.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [
        redact_path(os.path.relpath(broken, root), None, SALT)
    ]
    assert rows[0]["image_key"] == image_keys_of(listing.records, SALT)[broken]
    assert rows[0]["reason"].startswith("truncated")
    assert json.load(open(os.path.join(out, "summary.json"))) == summary


def test_examples_decode_and_match_the_records(ingested):
    root, out, summary, listing, _ = ingested
    by_key = {patient_key(r.patient_id, SALT): r for r in listing.records}
    labels = {}
    patients_per_split = {}
    for split in ("train", "eval", "test"):
        examples = _read_split(out, split)
        assert len(examples) == summary["per_split"][split]
        for ex in examples:
            image = decode_image(ex[F.IMAGE])
            assert image.shape == (64, 64, 1) and int(ex[F.HEIGHT]) == 64
            assert (
                0.0 <= float(tf.reduce_min(image))
                and float(tf.reduce_max(image)) <= 1.0
            )
            key = ex[F.PATIENT_KEY].numpy().decode()
            record = by_key[key]
            assert ex[F.DATASET].numpy() == b"cbis_ddsm"
            assert ex[F.VIEW].numpy().decode() in ("CC", "MLO")
            assert ex[F.LATERALITY].numpy().decode() in ("L", "R")
            labels.setdefault(key, []).append(int(ex[F.LABEL]))
            patients_per_split.setdefault(split, set()).add(key)
            if split == "test":
                assert record.split == "test"
    # zero leakage: no patient key in two splits
    splits = list(patients_per_split.values())
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not a & b
    assert sum(map(len, labels.values())) == summary["ingested"]
    assert sum(sum(v) for v in labels.values()) == summary["per_label"]["1"]


def test_no_phi_and_no_salt_in_any_output_byte(ingested, phi_of):
    root, out, _, _, _ = ingested
    secrets = phi_of(root)
    assert len(secrets) >= 6 * 5  # names, IDs, dates, accessions, institutions
    secrets = {s.encode() for s in secrets} | {SALT.encode()}
    scanned = 0
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            data = open(os.path.join(dirpath, name), "rb").read()
            blobs = [data]
            if name.endswith(".gz"):
                blobs.append(gzip.decompress(data))
            for blob in blobs:
                scanned += len(blob)
                hits = [s for s in secrets if s in blob]
                assert not hits, (name, hits)
    assert scanned > 10_000


def test_transform_sends_every_input_somewhere(tmp_path, small_tree, make_dicom):
    listing = load_source("cbis_ddsm", small_tree[0])
    good = listing.records[:3]
    (tmp_path / "text.dcm").write_text("not dicom")
    ct = make_dicom(tmp_path / "ct.dcm", np.zeros((8, 8), np.uint16), modality="CT")
    bad = [
        ImageRecord(path=str(tmp_path / "missing.dcm"), label=0, patient_id="X1"),
        ImageRecord(path=str(tmp_path / "text.dcm"), label=1, patient_id="X2"),
        ImageRecord(path=ct, label=0, patient_id="X3"),
        ImageRecord(path=good[0].path, label=7, patient_id="X4"),
    ]
    out = {}
    with beam.Pipeline(options=PipelineOptions(runtime.beam_pipeline_args(1))) as p:
        result = (
            p | beam.Create(good + bad) | IngestExamples(32, SALT, eval_fraction=0.0)
        )
        for tag in ("examples", "rejects"):
            path = str(tmp_path / tag)
            (
                result[tag]
                | f"Pickle{tag}"
                >> beam.Map(
                    lambda kv: json.dumps(
                        [kv[0], kv[1].hex() if isinstance(kv[1], bytes) else kv[1]]
                    )
                )
                | f"Write{tag}" >> beam.io.WriteToText(path)
            )
            out[tag] = path
    rows = {
        tag: [json.loads(line) for f in glob.glob(path + "*") for line in open(f)]
        for tag, path in out.items()
    }
    assert len(rows["examples"]) == 3 and len(rows["rejects"]) == 4
    assert {split for split, _ in rows["examples"]} <= {"train", "test"}
    reasons = dict(rows["rejects"])
    assert reasons[str(tmp_path / "missing.dcm")].startswith("unreadable file")
    assert reasons[str(tmp_path / "text.dcm")].startswith("not a DICOM file")
    assert reasons[ct].startswith("Modality=CT")
    assert reasons[good[0].path] == "label 7 is not 0 or 1"


def test_rerun_replaces_outputs_and_is_deterministic(ingested, tmp_path):
    root, out, summary, _, _ = ingested
    again = run_ingest(
        "cbis_ddsm",
        root,
        tmp_path,
        image_size=64,
        salt=SALT,
        eval_fraction=0.3,
        progress=False,
    )
    assert again["per_split_label"] == summary["per_split_label"]
    # Beam's Reshuffle orders the records at random; the split files do not
    # depend on it (morphhr_tf.data.record_order): the same bytes.
    assert _split_files(tmp_path) == _split_files(out)


def _split_files(out) -> dict[str, bytes]:
    """Every ``Split-*/`` file's bytes, by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(Path(out).glob("Split-*/*"))
    }


@pytest.mark.slow
def test_cli_with_two_workers(small_tree, tmp_path):
    env = dict(os.environ, MORPHHR_SALT=SALT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "morphhr_tf.data.ingest",
            "--source",
            "cbis_ddsm",
            "--root",
            str(small_tree[0]),
            "--out",
            str(tmp_path),
            "--image-size",
            "48",
            "--workers",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert summary["ingested"] == summary["records"] == 24
    assert summary["salt"] == "environment" and summary["num_workers"] == 2
    assert summary["worker_mode"] == "processes"
    assert SALT not in proc.stdout + proc.stderr
    total = sum(len(_read_split(tmp_path, s)) for s in ("train", "eval", "test"))
    assert total == 24
    # Two worker processes write the same files as one worker in process.
    one = tmp_path / "one"
    run_ingest(
        "cbis_ddsm",
        small_tree[0],
        one,
        image_size=48,
        salt=SALT,
        progress=False,
    )
    assert _split_files(one) == _split_files(tmp_path)


def test_cli_refuses_an_unknown_worker_mode_naming_the_choices(capsys):
    from morphhr_tf.data.ingest_cli import main

    args = ["--source", "cbis_ddsm", "--root", "r", "--out", "o"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--workers", "2", "--worker-mode", "fibers"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--worker-mode" in err and "'fibers'" in err
    assert "'processes'" in err and "'threads'" in err
