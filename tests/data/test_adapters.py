"""Tests of the data set adapters: every row resolved, nothing dropped silently."""

from __future__ import annotations

import csv
import os
import shutil
from collections import defaultdict

import numpy as np
import pydicom
import pytest

from morphhr_tf.data import load_source
from morphhr_tf.synthetic.cbis_ddsm import generate


def _csv_truth(root):
    """Per image (patient, side, view): label and CSV rows, read independently."""
    truth = defaultdict(list)
    for name in os.listdir(root):
        if "case_description" in name:
            with open(os.path.join(root, name), newline="") as f:
                for row in csv.DictReader(f):
                    key = (
                        row["patient_id"],
                        row["left or right breast"],
                        row["image view"],
                    )
                    truth[key].append(row["pathology"])
    return {k: int("MALIGNANT" in v) for k, v in truth.items()}, sum(
        map(len, truth.values())
    )


@pytest.mark.parametrize("layout", ["uid", "date", "date_v2"])
@pytest.mark.parametrize("metadata", [True, False])
def test_every_layout_resolves_every_row(tmp_path, layout, metadata):
    generate(tmp_path, patients=3, seed=11, rows=96, layout=layout, metadata=metadata)
    listing = load_source("cbis_ddsm", tmp_path)
    assert listing.problems == []
    labels, _ = _csv_truth(tmp_path)
    assert len(listing.records) == len(labels) == 12
    for record in listing.records:
        key = (
            record.patient_id,
            {"L": "LEFT", "R": "RIGHT"}[record.laterality],
            record.view,
        )
        assert record.label == labels[key]
        ds = pydicom.dcmread(record.path, stop_before_pixels=True)
        assert ds.SeriesDescription == "full mammogram images"  # never a crop/ROI
        assert (
            ds.ViewPosition == record.view and ds.ImageLaterality == record.laterality
        )
        assert record.split in ("train", "test") and record.dataset == "cbis_ddsm"


def test_mass_and_calc_rows_merge_per_image(tmp_path):
    # seed chosen so that some image is listed in both the mass and calc CSVs
    for seed in range(40):
        generate(tmp_path / str(seed), patients=4, seed=seed, rows=64, rois=False)
        listing = load_source("cbis_ddsm", tmp_path / str(seed))
        both = [
            r
            for r in listing.records
            if "mass:" in r.abnormality and "calcification:" in r.abnormality
        ]
        if both:
            break
    assert both, "no seed produced an image in both CSVs"
    record = both[0]
    assert record.label == int("MALIGNANT" in record.abnormality)
    paths = {r.path for r in listing.records}
    assert len(paths) == len(listing.records)  # one record per image
    assert listing.problems == []


def test_missing_files_and_unlisted_files_are_reported(small_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(small_tree[0], root)
    listing = load_source("cbis_ddsm", root)
    victim = listing.records[0]
    os.remove(victim.path)
    stray_dir = (
        root / "CBIS-DDSM" / "Mass-Training_P_09999_LEFT_CC" / "1.2.3" / "1.2.3.4"
    )
    stray_dir.mkdir(parents=True)
    shutil.copy(listing.records[1].path, stray_dir / "1-1.dcm")
    after = load_source("cbis_ddsm", root)
    reasons = {where: reason for where, reason in after.problems}
    assert len(after.records) == len(listing.records) - 1
    assert any("no case folder" in r or "no .dcm" in r for r in reasons.values())
    case_folder = next(
        p for p in victim.path.split(os.sep) if p.startswith(("Mass-", "Calc-"))
    )
    assert any(case_folder in w and " line " in w for w in reasons)
    assert (
        reasons[str(stray_dir / "1-1.dcm")] == "full-image file that no CSV row lists"
    )


def test_metadata_pointing_at_a_crop_is_not_a_full_image(tmp_path):
    generate(tmp_path, patients=1, seed=5, rows=64)
    meta_path = tmp_path / "metadata.csv"
    rows = list(csv.DictReader(open(meta_path, newline="")))
    full = next(r for r in rows if r["Series Description"] == "full mammogram images")
    for r in rows:
        if r["Series UID"] == full["Series UID"]:
            r["Series Description"] = "cropped images"
    with open(meta_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    listing = load_source("cbis_ddsm", tmp_path)
    assert any("not a full image" in reason for _, reason in listing.problems)


def _tiny_dicom(make_dicom, path, modality="MG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_dicom(path, np.zeros((8, 8), np.uint16), modality=modality)


def test_csv_manifest(tmp_path, make_dicom):
    images = tmp_path / "img"
    for name in ("a", "b", "orphan"):
        _tiny_dicom(make_dicom, images / f"{name}.dcm")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,label,patient_id,view,laterality,density,split\n"
        "img/a.dcm,1,p1,cc,LEFT,B,training\n"
        "img/b.dcm,0,,MLO,R,,\n"
        "img/gone.dcm,0,p3,CC,L,,test\n"
        "img/a.dcm,2,p1,CC,L,,\n"
    )
    listing = load_source("csv", manifest, images_dir=images)
    assert [r.label for r in listing.records] == [1, 0]
    a, b = listing.records
    assert (a.patient_id, a.view, a.laterality, a.density, a.split) == (
        "p1",
        "CC",
        "L",
        "B",
        "train",
    )
    assert b.patient_id == b.path and b.split == ""
    reasons = sorted(reason for _, reason in listing.problems)
    assert reasons == [
        "file not found",
        "image file that no manifest row lists",
        "label '2' is not 0 or 1",
    ]
    with pytest.raises(ValueError, match="needs 'path' and 'label'"):
        bad = tmp_path / "bad.csv"
        bad.write_text("file,y\n")
        load_source("csv", bad)


def test_rsna_layout(tmp_path, make_dicom):
    for pid, iid in (("10", "111"), ("10", "112"), ("20", "211"), ("30", "999")):
        _tiny_dicom(make_dicom, tmp_path / "train_images" / pid / f"{iid}.dcm")
    (tmp_path / "train.csv").write_text(
        "site_id,patient_id,image_id,laterality,view,age,cancer,biopsy,invasive,BIRADS,"
        "implant,density,machine_id\n"
        "1,10,111,L,CC,61,0,0,0,1,0,B,49\n"
        "1,10,112,L,MLO,61,1,1,1,,0,B,49\n"
        "2,20,211,R,CC,55,0,0,0,,0,,21\n"
        "2,20,212,R,MLO,55,0,0,0,,0,,21\n"
    )
    listing = load_source("rsna", tmp_path)
    assert [(r.patient_id, r.image_id, r.label) for r in listing.records] == [
        ("10", "111", 0),
        ("10", "112", 1),
        ("20", "211", 0),
    ]
    assert listing.records[1].view == "MLO" and listing.records[0].density == "B"
    reasons = sorted(r for _, r in listing.problems)
    assert reasons == ["file not found", "image file that no train.csv row lists"]


def test_vindr_layout(tmp_path, make_dicom):
    for study, iid in (("s1", "i1"), ("s1", "i2"), ("s2", "i3")):
        _tiny_dicom(make_dicom, tmp_path / "images" / study / f"{iid}.dicom")
    (tmp_path / "breast-level_annotations.csv").write_text(
        "study_id,series_id,image_id,laterality,view_position,height,width,"
        "breast_birads,breast_density,split\n"
        "s1,x,i1,L,CC,8,8,BI-RADS 1,DENSITY C,training\n"
        "s1,x,i2,L,MLO,8,8,BI-RADS 4,DENSITY C,training\n"
        "s2,x,i3,R,CC,8,8,BI-RADS 5,DENSITY A,test\n"
        "s3,x,i4,R,CC,8,8,BI-RADS 2,DENSITY A,test\n"
    )
    listing = load_source("vindr", tmp_path)
    assert [(r.image_id, r.label, r.density, r.split) for r in listing.records] == [
        ("i1", 0, "C", "train"),
        ("i2", 1, "C", "train"),
        ("i3", 1, "A", "test"),
    ]
    assert [r for _, r in listing.problems] == ["file not found"]
    assert load_source("vindr", tmp_path, positive_birads=5).records[1].label == 0


def test_load_source_validates(tmp_path):
    with pytest.raises(ValueError, match="source must be one of"):
        load_source("inbreast", tmp_path)
    with pytest.raises(ValueError, match="root does not exist"):
        load_source("rsna", tmp_path / "nope")
    with pytest.raises(ValueError, match="no CBIS-DDSM case-description CSVs"):
        load_source("cbis_ddsm", tmp_path)
