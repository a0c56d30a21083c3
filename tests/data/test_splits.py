"""Tests of patient-level splits and salted keys."""

from __future__ import annotations

import numpy as np
import pytest

from morphhr_tf.data import (
    ImageRecord,
    assign_split,
    assign_splits,
    load_source,
    patient_key,
)
from morphhr_tf.data.deid import SALT_ENV, resolve_salt
from morphhr_tf.data.splits import combine_official


def _records(n_patients, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n_patients):
        for view in ("CC", "MLO"):
            for side in ("L", "R"):
                records.append(
                    ImageRecord(
                        path=f"/x/{p}_{side}_{view}.dcm",
                        label=int(rng.uniform() < 0.3),
                        patient_id=f"P_{p:05d}",
                        view=view,
                        laterality=side,
                        split=str(rng.choice(["train", "train", "test", ""])),
                    )
                )
    return records


def test_no_patient_in_two_splits():
    records = _records(500)
    splits = assign_splits(records, salt="s", eval_fraction=0.2, test_fraction=0.1)
    seen = {}
    for record, split in zip(records, splits, strict=True):
        assert seen.setdefault(record.patient_id, split) == split
    # Official test is kept: a patient with any test image is test.
    official = {}
    for r in records:
        official.setdefault(r.patient_id, []).append(r.split)
    for pid, split in seen.items():
        if "test" in official[pid]:
            assert split == "test"


def test_splits_are_deterministic_and_order_free():
    records = _records(200)
    a = dict(
        zip((r.path for r in records), assign_splits(records, salt="k"), strict=True)
    )
    shuffled = list(reversed(records))
    b = dict(
        zip((r.path for r in shuffled), assign_splits(shuffled, salt="k"), strict=True)
    )
    assert a == b
    c = dict(
        zip(
            (r.path for r in records), assign_splits(records, salt="other"), strict=True
        )
    )
    assert a != c  # the hash of the salted key decides


def test_eval_fraction_is_respected():
    keys = [patient_key(f"P_{i}", "salt") for i in range(4000)]
    share = np.mean(
        [assign_split(k, "train", eval_fraction=0.2) == "eval" for k in keys]
    )
    assert 0.18 < share < 0.22
    none = [assign_split(k, "", eval_fraction=0.2, test_fraction=0.1) for k in keys]
    assert 0.08 < none.count("test") / len(none) < 0.12
    assert 0.18 < none.count("eval") / len(none) < 0.22
    assert {assign_split(k, "test") for k in keys[:50]} == {"test"}


def test_cbis_patients_never_straddle_splits(small_tree):
    listing = load_source("cbis_ddsm", small_tree[0])
    splits = assign_splits(listing.records, salt="x", eval_fraction=0.3)
    per_patient = {}
    for record, split in zip(listing.records, splits, strict=True):
        per_patient.setdefault(record.patient_id, set()).add(split)
    assert all(len(s) == 1 for s in per_patient.values())
    # Each patient has images in both breasts and both views.
    assert all(
        len([r for r in listing.records if r.patient_id == p]) == 4 for p in per_patient
    )


def test_combine_official_and_validation():
    assert combine_official(["train", "", "test"]) == "test"
    assert combine_official(["train", "eval"]) == "eval"
    assert combine_official([]) == ""
    with pytest.raises(ValueError, match="official split must be one of"):
        combine_official(["validation"])
    with pytest.raises(ValueError, match="eval_fraction must lie in"):
        assign_split("k", "train", eval_fraction=1.5)
    with pytest.raises(ValueError, match="must be below 1"):
        assign_split("k", "", eval_fraction=0.6, test_fraction=0.5)


def test_salt_resolution(monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    default = patient_key("P_00001")
    monkeypatch.setenv(SALT_ENV, "from-env")
    assert resolve_salt() == b"from-env"
    env = patient_key("P_00001")
    assert env != default
    assert patient_key("P_00001", "arg") not in (env, default)
    assert patient_key("P_00001", "from-env") == env
    assert len(env) == 64 and int(env, 16) >= 0
    with pytest.raises(TypeError, match="salt must be str, bytes or None"):
        resolve_salt(42)
