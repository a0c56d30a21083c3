"""Unit tests of the reject redaction (what rejects.csv may contain)."""

from __future__ import annotations

import csv

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from morphhr_tf import runtime
from morphhr_tf.data import ImageRecord, patient_key
from morphhr_tf.data.ingest import (
    PRIVATE_REJECTS_FILE,
    REJECT_COLUMNS,
    RedactRejects,
    image_keys_of,
    redact_path,
    redact_reject,
    write_rejects,
)

SALT = "redaction-salt"
STUDY = "1.3.6.1.4.1.9590.100.1.2.1234567890"
SERIES = "1.3.6.1.4.1.9590.100.1.2.9876543210"
CASE = "Mass-Training_P_00042_LEFT_CC"


def test_cbis_path_keeps_structure_and_hides_ids():
    path = f"/data/cbis/CBIS-DDSM/{CASE}/{STUDY}/{SERIES}/1-1.dcm"
    shown = redact_path(path, "/data/cbis", SALT)
    parts = shown.split("/")
    assert parts[0] == "CBIS-DDSM" and parts[-1] == "1-1.dcm"
    assert parts[1] == f"Mass-Training_p{patient_key('P_00042', SALT)[:12]}_LEFT_CC"
    for secret in ("P_00042", STUDY, SERIES, "data", "cbis/"):
        assert secret not in shown
    assert redact_path(path, "/data/cbis", SALT) == shown  # deterministic
    assert redact_path(path, "/data/cbis", "other salt") != shown


@pytest.mark.parametrize(
    ("path", "secrets"),
    [
        ("/r/train_images/10006/462822612.dcm", ("10006", "462822612")),
        ("/r/images/a1b2c3d4e5/f6e7d8c9.dicom", ("a1b2c3d4e5", "f6e7d8c9")),
        ("/r/AllDICOMs/20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm", ("20586908",)),
        (
            "/r/10-04-2016-DDSM-30104/1-full mammogram images-14172/000000.dcm",
            ("2016", "30104", "14172"),
        ),
    ],
)
def test_other_layouts_hash_identifying_components(path, secrets):
    shown = redact_path(path, "/r", SALT)
    assert not any(s in shown for s in secrets), shown
    assert shown.endswith((".dcm", ".dicom"))


def test_reasons_and_listing_locations_are_scrubbed():
    where = f"calc_case_description_test_set.csv line 12: {CASE}/{STUDY}/{SERIES}/000000.dcm"
    reason = f"2 files in case folder {CASE} and none has SeriesInstanceUID {SERIES}"
    key, shown, clean = redact_reject(where, reason, base="/r", salt=SALT)
    assert key == ""
    assert shown.startswith(
        "calc_case_description_test_set.csv line 12: Mass-Training_p"
    )
    for secret in ("P_00042", STUDY, SERIES):
        assert secret not in shown and secret not in clean
    assert clean.startswith("2 files in case folder Mass-Training_p")


def test_rejected_images_get_their_image_key(tmp_path):
    path = str(tmp_path / CASE / "1-1.dcm")
    record = ImageRecord(path=path, label=1, patient_id="P_00042", image_id="x")
    keys = image_keys_of([record], SALT)
    key, _, clean = redact_reject(
        path,
        f"internal error: OSError: {path}",
        base=str(tmp_path),
        salt=SALT,
        image_keys=keys,
    )
    assert key == keys[path] and len(key) == 64
    assert "P_00042" not in clean and str(tmp_path) not in clean


def test_write_rejects_splits_public_and_private(tmp_path):
    path = str(tmp_path / "src" / CASE / "1-1.dcm")
    out, private = tmp_path / "out", tmp_path / "private"
    out.mkdir()
    count = write_rejects(
        out,
        [(path, "truncated file")],
        base=tmp_path / "src",
        salt=SALT,
        problems=[(f"x.csv line 2: {CASE}/a.dcm", "file not found")],
        private_dir=private,
    )
    assert count == 2
    text = (out / "rejects.csv").read_text()
    assert "P_00042" not in text and str(tmp_path) not in text
    rows = list(csv.DictReader(text.splitlines()))
    assert tuple(rows[0]) == REJECT_COLUMNS
    # One order for both files (reject_order): sorted by the public line.
    lines = text.splitlines()[1:]
    assert lines == sorted(lines)
    assert {r["reason"] for r in rows} == {"listing: file not found", "truncated file"}
    mapping = list(
        csv.DictReader((private / PRIVATE_REJECTS_FILE).read_text().splitlines())
    )
    assert [m["path"] for m in mapping] == [r["path"] for r in rows]
    (truncated,) = [m for m in mapping if m["reason"] == "truncated file"]
    assert truncated["source_path"] == path
    with pytest.raises(ValueError, match="private_dir"):
        write_rejects(out, [], private_dir=out / "inside")


def test_redact_rejects_transform_matches_the_function(tmp_path):
    path = str(tmp_path / CASE / "1-1.dcm")
    record = ImageRecord(path=path, label=0, patient_id="P_00042")
    rejects = [(path, "truncated file"), ("m.csv line 3: P_00042/x.dcm", "bad")]
    expected = [
        redact_reject(
            p,
            r,
            base=str(tmp_path),
            salt=SALT,
            image_keys=image_keys_of([record], SALT),
        )
        for p, r in rejects
    ]
    with beam.Pipeline(options=PipelineOptions(runtime.beam_pipeline_args(1))) as p:
        rows = (
            p
            | beam.Create(rejects)
            | RedactRejects(base=tmp_path, salt=SALT, records=[record])
        )
        assert_that(rows, equal_to(expected))
    assert all("P_00042" not in "".join(row) for row in expected)
