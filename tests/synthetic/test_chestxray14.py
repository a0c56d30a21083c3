"""Tests of the synthetic ChestX-ray14 generator: NIH layout, CSVs, split,
determinism, findings and their boxes."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from morphhr_tf.data.adapters import chestxray14 as adapter
from morphhr_tf.data.png_reader import read_radiograph
from morphhr_tf.synthetic import chestxray14_plan, chestxray14_render
from morphhr_tf.synthetic.chestxray14 import (
    BBOX_FINDINGS,
    BBOX_HEADER,
    DATA_ENTRY_HEADER,
    FINDINGS,
    generate,
    main,
    plan_images,
)
from morphhr_tf.synthetic.chestxray14_render import render_chest

SIZE = 64
NAME_RE = re.compile(r"^(\d{8})_(\d{3})\.png$")


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr_nested")
    return root, generate(root, patients=30, seed=3, size=SIZE)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr_flat")
    summary = generate(
        root,
        patients=5,
        seed=4,
        size=SIZE,
        layout="flat",
        csv_version="2020",
        bbox=False,
    )
    return root, summary


def _pngs(root):
    """``{name: path relative to root}`` of every PNG under root."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".png"):
                found[name] = os.path.relpath(os.path.join(dirpath, name), root)
    return found


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _lines(path):
    with open(path, newline="") as f:
        return f.read().split("\n")[:-1]


def test_nested_2017_tree_has_nih_layout(nested):
    root, summary = nested
    top = sorted(os.listdir(root))
    folders = [n for n in top if n.startswith("images_")]
    assert set(top) - set(folders) == {
        "BBox_List_2017.csv",
        "Data_Entry_2017.csv",
        "test_list.txt",
        "train_val_list.txt",
    }
    assert 2 <= len(folders) <= 12
    assert folders == [f"images_{i:03d}" for i in range(1, len(folders) + 1)]
    for folder in folders:
        assert os.listdir(root / folder) == ["images"]
    pngs = _pngs(root)
    assert len(pngs) == summary["images"] and all(NAME_RE.match(n) for n in pngs)
    # Consecutive runs of the sorted names, folder after folder.
    order = sorted(pngs)
    assert [pngs[n].split(os.sep)[0] for n in order] == sorted(
        pngs[n].split(os.sep)[0] for n in order
    )
    assert summary["images"] > summary["patients"]  # some follow-ups


def test_data_entry_2017_ends_every_row_with_an_empty_column(nested):
    root, summary = nested
    lines = _lines(root / "Data_Entry_2017.csv")
    assert lines[0] == DATA_ENTRY_HEADER + ","
    assert lines[0] == (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
        "Patient Gender,View Position,OriginalImage[Width,Height],"
        "OriginalImagePixelSpacing[x,y],"
    )
    assert all(line.endswith(",") for line in lines)
    rows = _rows(root / "Data_Entry_2017.csv")
    assert rows[0][7:] == [
        "OriginalImage[Width",
        "Height]",
        "OriginalImagePixelSpacing[x",
        "y]",
        "",
    ]
    assert {len(r) for r in rows} == {12} and {r[-1] for r in rows} == {""}
    assert len(rows) - 1 == summary["images"]


def test_data_entry_values_match_the_file_names(nested):
    root, summary = nested
    rows = _rows(root / "Data_Entry_2017.csv")[1:]
    assert {r[0] for r in rows} == set(_pngs(root))
    no_finding = 0
    for name, labels, follow, pid, age, sex, view, w, h, sx, sy, _ in rows:
        patient, follow_up = NAME_RE.match(name).groups()
        assert int(follow) == int(follow_up) and pid == str(int(patient))
        assert sex in ("M", "F") and view in ("PA", "AP") and int(age) > 0
        assert int(w) >= 2000 and int(h) >= 2000 and sx == sy and float(sx) > 0
        if labels == "No Finding":
            no_finding += 1
        else:
            parts = labels.split("|")
            assert parts == sorted(parts) and set(parts) <= set(FINDINGS)
    assert no_finding == summary["no_finding_images"] > 0


def test_flat_2020_tree_has_one_folder_and_no_trailing_column(flat):
    root, summary = flat
    assert sorted(os.listdir(root)) == [
        "Data_Entry_2017_v2020.csv",
        "images",
        "test_list.txt",
        "train_val_list.txt",
    ]
    assert len(os.listdir(root / "images")) == summary["images"]
    lines = _lines(root / "Data_Entry_2017_v2020.csv")
    assert lines[0] == DATA_ENTRY_HEADER and not lines[0].endswith(",")
    assert {len(r) for r in _rows(root / "Data_Entry_2017_v2020.csv")} == {11}
    assert summary["bbox_rows"] == 0 and summary["data_entry"].endswith("v2020.csv")


@pytest.mark.parametrize("tree", ["nested", "flat"])
def test_split_is_patient_wise(tree, request):
    root, summary = request.getfixturevalue(tree)
    train = _lines(root / "train_val_list.txt")
    test = _lines(root / "test_list.txt")
    assert train == sorted(train) and test == sorted(test)
    assert set(train) | set(test) == set(_pngs(root)) and not set(train) & set(test)
    patients = [{n[:8] for n in names} for names in (train, test)]
    assert patients[0] and patients[1] and not patients[0] & patients[1]
    assert len(test) == summary["test_images"]


def test_images_are_grey_pngs_with_a_few_rgba(nested):
    root, summary = nested
    modes = {}
    for rel in _pngs(root).values():
        with Image.open(root / rel) as im:
            assert im.size == (SIZE, SIZE)
            modes[im.mode] = modes.get(im.mode, 0) + 1
            arr = np.asarray(im)
        image, meta = read_radiograph(root / rel)
        assert meta["converted_from"] == (None if arr.ndim == 2 else "RGBA")
        if arr.ndim == 3:
            assert meta["conversion"] == "equal channels" and meta["alpha_opaque"]
            arr = arr[..., 0]
        assert np.abs(np.round(image * 255.0) - arr).max() == 0
    assert set(modes) == {"L", "RGBA"}
    assert 1 <= modes["RGBA"] == summary["rgba_images"] < modes["L"]


def test_boxes_lie_in_the_image_and_the_bbox_list_is_a_subset(nested):
    root, summary = nested
    boxes = summary["boxes"]
    assert boxes
    for box in boxes:
        x, y, w, h = box["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= SIZE and y + h <= SIZE
    lines = _lines(root / "BBox_List_2017.csv")
    assert lines[0] == BBOX_HEADER == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    rows = _rows(root / "BBox_List_2017.csv")
    assert rows[0][2:] == ["Bbox [x", "y", "w", "h]", "", "", ""]
    listed = [b for b in boxes if b["listed"]]
    assert 0 < len(listed) == len(rows) - 1 == summary["bbox_rows"] < len(boxes)
    test = set(_lines(root / "test_list.txt"))
    spelled = {"Infiltration": "Infiltrate"}
    for row, box in zip(rows[1:], listed, strict=True):
        assert len(row) == 9 and row[6:] == ["", "", ""]
        assert row[0] == box["image"] and row[0] in test
        assert row[1] == spelled.get(box["finding"], box["finding"])
        assert [float(v) for v in row[2:6]] == box["bbox"]
        assert box["finding"] in BBOX_FINDINGS


def test_same_seed_writes_the_same_bytes(tmp_path):
    def digest(root):
        out = {}
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(
                        f.read()
                    ).hexdigest()
        return out

    a = generate(tmp_path / "a", patients=4, seed=11, size=SIZE)
    b = generate(tmp_path / "b", patients=4, seed=11, size=SIZE)
    generate(tmp_path / "c", patients=4, seed=12, size=SIZE)
    assert a["boxes"] == b["boxes"]
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def _mean_area(finding, seeds=range(6), size=256):
    areas = []
    for seed in seeds:
        _, drawn = render_chest(seed, size=size, findings=(finding,))
        areas += [d.bbox[2] * d.bbox[3] for d in drawn if d.finding == finding]
    return float(np.mean(areas))


def test_findings_differ_in_scale():
    nodule, mass = _mean_area("Nodule"), _mean_area("Mass")
    assert _mean_area("Cardiomegaly") > mass and _mean_area("Effusion") > mass
    assert mass > 4 * nodule
    for seed in range(4):  # a nodule is a few pixels wide at 256 px
        _, drawn = render_chest(seed, size=256, findings=("Nodule",))
        assert 2 <= drawn[0].bbox[2] <= 8 and 2 <= drawn[0].bbox[3] <= 8


@pytest.mark.parametrize(
    "finding", [f for f in FINDINGS if f not in ("Emphysema", "Cardiomegaly")]
)
def test_a_finding_changes_the_image_only_near_its_box(finding):
    plain, _ = render_chest(5, size=128)
    image, drawn = render_chest(5, size=128, findings=(finding,))
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    assert drawn and {d.finding for d in drawn} == {finding}
    diff = np.abs(image - plain)
    near = np.zeros(diff.shape, bool)  # the boxes, 4 px wider all round
    for box in drawn:
        x, y, w, h = (int(v) for v in box.bbox)
        near[max(y - 4, 0) : y + h + 4, max(x - 4, 0) : x + w + 4] = True
    assert diff[~near].max() < 0.03 and diff[near].max() > 0.05


def test_ap_view_magnifies_the_heart():
    for seed in range(3):
        _, pa = render_chest(seed, size=128, view="PA", findings=("Cardiomegaly",))
        _, ap = render_chest(seed, size=128, view="AP", findings=("Cardiomegaly",))
        assert ap[0].bbox[2] > pa[0].bbox[2]


def test_label_prevalence_and_co_occurrence_follow_the_real_data():
    plan = plan_images(np.random.default_rng(0), 300)
    counts = {f: sum(f in p.findings for p in plan) for f in FINDINGS}
    assert max(counts, key=counts.get) == "Infiltration"
    assert counts["Hernia"] == min(counts.values())
    assert counts["Effusion"] > counts["Cardiomegaly"] > counts["Hernia"]
    assert 0.4 <= sum(not p.findings for p in plan) / len(plan) <= 0.65
    with_eff = [p for p in plan if "Effusion" in p.findings]
    without = [p for p in plan if p.findings and "Effusion" not in p.findings]
    rate = [
        np.mean(["Atelectasis" in p.findings for p in g]) for g in (with_eff, without)
    ]
    assert rate[0] > rate[1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patients": 0}, "patients must be a positive integer. Received: 0"),
        ({"patients": "3"}, "patients must be a positive integer"),
        ({"patients": True}, "patients must be a positive integer"),
        ({"patients": 2, "size": 32}, "size must be an integer >= 64"),
        ({"patients": 2, "seed": -1}, "seed must be a non-negative integer"),
        ({"patients": 2, "layout": "tree"}, "layout must be one of"),
        ({"patients": 2, "csv_version": 2017}, "csv_version must be '2017' or '2020'"),
        ({"patients": 2, "bbox": "yes"}, "bbox must be True or False"),
        (
            {"patients": 2, "frequencies": "flat"},
            "frequencies must be one of ('nih', 'uniform'). "
            "Received: frequencies='flat'",
        ),
        ({"patients": 2, "frequencies": None}, "Received: frequencies=None"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        generate(tmp_path, **kwargs)
    assert not os.listdir(tmp_path)


def test_render_refuses_unknown_findings():
    with pytest.raises(ValueError, match="findings must be among FINDINGS"):
        render_chest(0, size=64, findings=("Tumour",))


def test_cli_writes_a_tree_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "cxr"
    assert main([str(out), "--patients", "2", "--size", "64", "--layout", "flat"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["patients"] == 2 and isinstance(summary["boxes"], int)
    assert len(os.listdir(out / "images")) == summary["images"]


# Label counts of generate(patients=150, size=64, seed=0) before the
# ``frequencies`` argument existed: "nih" must reproduce them.
NIH_COUNTS_150 = {
    "Atelectasis": 29,
    "Cardiomegaly": 3,
    "Effusion": 41,
    "Infiltration": 52,
    "Mass": 24,
    "Nodule": 19,
    "Pneumonia": 2,
    "Pneumothorax": 19,
    "Consolidation": 18,
    "Edema": 5,
    "Emphysema": 15,
    "Fibrosis": 7,
    "Pleural_Thickening": 3,
    "Hernia": 0,
}


def test_uniform_frequencies_give_every_finding_positives(tmp_path):
    summary = generate(tmp_path, patients=150, size=SIZE, frequencies="uniform")
    assert summary["frequencies"] == "uniform"
    assert set(summary["label_counts"]) == set(FINDINGS)
    assert min(summary["label_counts"].values()) >= 5, summary["label_counts"]
    with open(tmp_path / "Data_Entry_2017.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    for finding in FINDINGS:
        n = sum(finding in row[1].split("|") for row in rows)
        assert n == summary["label_counts"][finding]


def test_nih_frequencies_keep_the_label_counts(tmp_path):
    summary = generate(tmp_path, patients=150, size=SIZE, seed=0)
    assert summary["frequencies"] == "nih"
    assert summary["label_counts"] == NIH_COUNTS_150
    plan = plan_images(np.random.default_rng([0, 1]), 150, "nih")
    assert {f: sum(f in p.findings for p in plan) for f in FINDINGS} == NIH_COUNTS_150


def test_uniform_keeps_co_occurrence_and_chronic_follow_ups():
    plan = plan_images(np.random.default_rng(0), 600, frequencies="uniform")
    pairs = [
        frozenset(pair)
        for p in plan
        if p.follow_up == 0  # no chronic finding carried over
        for pair in itertools.combinations(p.findings, 2)
    ]
    chance = len(chestxray14_plan.LINKED) / (len(FINDINGS) * 13 / 2)
    assert np.mean([pair in chestxray14_plan.LINKED for pair in pairs]) > 2 * chance
    kept = [
        "Hernia" in b.findings
        for a, b in zip(plan, plan[1:])
        if a.patient_id == b.patient_id and "Hernia" in a.findings
    ]
    assert kept and np.mean(kept) >= 0.5


def test_plan_images_refuses_unknown_frequencies():
    with pytest.raises(ValueError, match=re.escape("Received: frequencies='real'")):
        plan_images(np.random.default_rng(0), 3, frequencies="real")


def test_cli_takes_frequencies(tmp_path, capsys):
    argv = [str(tmp_path / "cxr"), "--patients", "2", "--size", "64"]
    assert main([*argv, "--frequencies", "uniform"]) == 0
    assert json.loads(capsys.readouterr().out)["frequencies"] == "uniform"
    with pytest.raises(SystemExit):
        main([*argv, "--frequencies", "even"])


def test_findings_are_the_adapters():
    assert FINDINGS is adapter.FINDINGS
    assert chestxray14_render.FINDINGS is adapter.FINDINGS
    assert chestxray14_plan.FINDINGS is adapter.FINDINGS
