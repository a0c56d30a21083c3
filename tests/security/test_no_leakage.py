"""No patient in two splits, on the CBIS-DDSM layout, read back from the real
ingest output."""

from __future__ import annotations

import csv
import glob
import os

import pytest
import tensorflow as tf

from morphhr_tf.data import features as F
from morphhr_tf.data import load_source, patient_key
from morphhr_tf.data.ingest import run_ingest
from morphhr_tf.data.tfrecord_codec import parse_example

SALT = "leakage-test-salt-91c2"
CSVS = (
    "mass_case_description_train_set.csv",
    "mass_case_description_test_set.csv",
    "calc_case_description_train_set.csv",
    "calc_case_description_test_set.csv",
)


def _csv_images(root):
    """patient_id -> {(csv kind, side, view)} from the four CSVs."""
    seen = {}
    for name in CSVS:
        with open(os.path.join(root, name), newline="") as f:
            for row in csv.DictReader(f):
                seen.setdefault(row["patient_id"], set()).add(
                    (name.split("_")[0], row["left or right breast"], row["image view"])
                )
    return seen


@pytest.mark.slow
def test_no_patient_key_in_two_splits(cbis_tree, tmp_path):
    root, _ = cbis_tree
    images = _csv_images(root)
    # the generator gives every patient rows in both the mass and the calc
    # CSVs, covering both breasts and both views: the hard case for leakage
    spanning = [
        pid
        for pid, rows in images.items()
        if {k for k, _, _ in rows} == {"mass", "calc"}
        and {s for _, s, _ in rows} == {"LEFT", "RIGHT"}
        and {v for _, _, v in rows} == {"CC", "MLO"}
    ]
    assert spanning, images

    summary = run_ingest(
        "cbis_ddsm",
        root,
        tmp_path,
        image_size=32,
        salt=SALT,
        eval_fraction=0.4,
        progress=False,
    )
    assert summary["rejected"] == 0
    splits_of = {}
    images_of = {}
    for split in ("train", "eval", "test"):
        files = glob.glob(os.path.join(tmp_path, f"Split-{split}", "data-*.gz"))
        for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            ex = parse_example(raw)
            key = ex[F.PATIENT_KEY].numpy().decode()
            splits_of.setdefault(key, set()).add(split)
            images_of.setdefault(key, set()).add(
                (ex[F.LATERALITY].numpy().decode(), ex[F.VIEW].numpy().decode())
            )
    assert sum(len(v) for v in images_of.values()) == summary["ingested"]
    leaked = {k: s for k, s in splits_of.items() if len(s) > 1}
    assert not leaked
    assert len({s for v in splits_of.values() for s in v}) >= 2  # a real split
    for pid in spanning:  # all four images of a spanning patient, one split
        key = patient_key(pid, SALT)
        assert images_of[key] == {("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")}
        assert len(splits_of[key]) == 1
    listed = {
        patient_key(r.patient_id, SALT) for r in load_source("cbis_ddsm", root).records
    }
    assert set(splits_of) == listed
