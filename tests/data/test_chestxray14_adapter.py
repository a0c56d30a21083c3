"""Tests of the ChestX-ray14 adapter on synthetic NIH-shaped trees.

Each damage test edits a copy of a clean tree and checks that the damage comes
back as a problem at its location, and that nothing else does.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pickle
import shutil
from collections import defaultdict

import pytest
from url_trees import memory_root, upload

from morphhr_tf.data.adapters.chestxray14 import (
    FINDINGS,
    Box,
    chestxray14,
    read_boxes,
)
from morphhr_tf.synthetic import chestxray14 as synthetic

PATIENTS, SEED, SIZE = 16, 0, 64
CSV_2017, CSV_2020 = (
    synthetic.DATA_ENTRY_FILES["2017"],
    synthetic.DATA_ENTRY_FILES["2020"],
)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean nested tree with the 2017 CSV (copy it before damaging it)."""
    root = tmp_path_factory.mktemp("cxr14") / "clean"
    summary = synthetic.generate(root, patients=PATIENTS, seed=SEED, size=SIZE)
    return root, summary


@pytest.fixture
def tree(clean, tmp_path):
    """A private copy of the clean tree."""
    root = tmp_path / "tree"
    shutil.copytree(clean[0], root)
    return root


def _entries(root, name=CSV_2017) -> dict[str, list[str]]:
    """Image name -> its data-entry row, read independently of the adapter."""
    with open(root / name, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return {r[0]: r for r in rows}


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


def _write_lines(path, lines) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _list(root, split: str) -> list[str]:
    return _lines(root / ("test_list.txt" if split == "test" else "train_val_list.txt"))


def _png(root, name: str) -> str:
    found = [os.path.join(d, name) for d, _, files in os.walk(root) if name in files]
    assert len(found) == 1
    return found[0]


def _train_patient(root, images: int = 2) -> list[str]:
    """The images of the first train patient with at least ``images`` images."""
    by_patient = defaultdict(list)
    for name in _list(root, "train"):
        by_patient[name[:8]].append(name)
    return next(v for _, v in sorted(by_patient.items()) if len(v) >= images)


# --- clean trees -------------------------------------------------------------


def test_findings_are_the_official_fourteen_in_order():
    assert FINDINGS == synthetic.FINDINGS
    assert len(FINDINGS) == 14 and FINDINGS[3] == "Infiltration"


@pytest.mark.parametrize("layout", ["nested", "flat"])
@pytest.mark.parametrize("version", ["2017", "2020"])
def test_clean_tree_lists_every_image(tmp_path, layout, version):
    summary = synthetic.generate(
        tmp_path,
        patients=PATIENTS,
        seed=SEED,
        size=SIZE,
        layout=layout,
        csv_version=version,
    )
    listing = chestxray14(str(tmp_path))
    assert listing.problems == []
    entries = _entries(tmp_path, summary["data_entry"])
    assert sorted(r.image_id for r in listing.records) == sorted(entries)
    test = set(_list(tmp_path, "test"))
    for r in listing.records:
        text = entries[r.image_id][1]
        named = [] if text == "No Finding" else text.split("|")
        assert r.labels == tuple(int(f in named) for f in FINDINGS)
        assert r.label == int(bool(named)) and r.abnormality == "|".join(named)
        assert r.patient_id == entries[r.image_id][3] == str(int(r.image_id[:8]))
        assert r.view == entries[r.image_id][6] and r.view in ("PA", "AP")
        assert r.split == ("test" if r.image_id in test else "train")
        assert r.dataset == "chestxray14" and os.path.basename(r.path) == r.image_id
        folder = os.path.relpath(os.path.dirname(r.path), tmp_path).split(os.sep)
        if layout == "flat":
            assert folder == ["images"]
        else:
            assert folder[0].startswith("images_") and folder[1:] == ["images"]
    assert sum(sum(r.labels) >= 2 for r in listing.records) > 0  # multi-label rows
    assert any(r.labels == (0,) * 14 for r in listing.records)
    assert pickle.loads(pickle.dumps(listing.records)) == listing.records  # Beam
    by_split = defaultdict(set)
    for r in listing.records:
        by_split[r.split].add(r.patient_id)
    assert by_split["train"] and by_split["test"]
    assert not by_split["train"] & by_split["test"]


def test_boxes_are_the_listed_ones_with_infiltrate_renamed(clean):
    root, summary = clean
    expected = defaultdict(list)
    for b in summary["boxes"]:
        if b["listed"]:
            expected[b["image"]].append(Box(b["finding"], *map(float, b["bbox"])))
    assert "Infiltrate" in (root / "BBox_List_2017.csv").read_text()
    assert any(b.finding == "Infiltration" for v in expected.values() for b in v)
    assert chestxray14(str(root)).boxes == dict(expected)
    assert read_boxes(str(root)) == (dict(expected), [])
    assert chestxray14(str(root), bbox=False).boxes == {}


def test_both_csv_versions_prefer_v2020_unless_csv_name(tree):
    shutil.copy(tree / CSV_2017, tree / CSV_2020)
    lines = _lines(tree / CSV_2020)
    _write_lines(tree / CSV_2020, lines[:-1])  # the 2020 copy lacks one row
    dropped = lines[-1].split(",")[0]
    split_list = (
        "test_list.txt" if dropped in _list(tree, "test") else "train_val_list.txt"
    )
    line = _lines(tree / split_list).index(dropped) + 1
    listing = chestxray14(str(tree))
    assert listing.problems == [
        (str(tree / CSV_2017), f"ignored: {CSV_2020} is read (csv_name chooses)"),
        (_png(tree, dropped), f"PNG that no {CSV_2020} row lists"),
        (f"{split_list} line {line}: {dropped}", f"in no {CSV_2020} row"),
    ]
    chosen = chestxray14(str(tree), csv_name=CSV_2017)
    assert chosen.problems == [] and len(chosen.records) == len(lines) - 1


def test_missing_or_headless_csv_raises(tree):
    with pytest.raises(ValueError, match="data-entry file not found"):
        chestxray14(str(tree), csv_name="nope.csv")
    os.remove(tree / CSV_2017)
    with pytest.raises(ValueError, match="no ChestX-ray14 data-entry file"):
        chestxray14(str(tree))
    _write_lines(tree / CSV_2020, ["Image Index,Labels", "00000001_000.png,Mass"])
    with pytest.raises(ValueError, match="lacks the columns"):
        chestxray14(str(tree))


# --- damaged rows ------------------------------------------------------------


def test_bad_rows_are_rejected_with_their_line(tree):
    lines = _lines(tree / CSV_2017)
    names = [line.split(",")[0] for line in lines]
    edits = {  # line index -> (new Finding Labels, expected reason)
        1: ("Effusion|Pneumonitis", "unknown finding 'Pneumonitis'"),
        2: ("No Finding|Mass", "'No Finding' combined with findings"),
        3: ("Mass||Nodule", "malformed Finding Labels"),
    }
    for i, (labels, _) in edits.items():
        fields = lines[i].split(",")
        lines[i] = ",".join([fields[0], labels, *fields[2:]])
    short = ",".join(lines[4].split(",")[:5])  # too few fields
    wrong_pid = lines[5].split(",")
    wrong_pid[3] = str(int(wrong_pid[3]) + 1)
    bad_view = lines[6].split(",")
    bad_view[6] = "LL"
    lines[4:7] = [short, ",".join(wrong_pid), ",".join(bad_view)]
    where = [f"{CSV_2017} line {i + 1}: {names[i]}" for i in range(len(lines))]
    _write_lines(tree / CSV_2017, lines)
    listing = chestxray14(str(tree))
    expected = [(where[i], reason) for i, (_, reason) in edits.items()] + [
        (where[4], "malformed row: 5 fields, the header names 11"),
        (where[5], f"Patient ID {wrong_pid[3]} disagrees with the file name's"),
        (where[6], "View Position 'LL' is not PA or AP"),
    ]
    expected += [  # the boxes of the rejected images
        (
            f"BBox_List_2017.csv line {i}: {box.split(',')[0]}",
            "box of an image without a record",
        )
        for i, box in enumerate(_lines(tree / "BBox_List_2017.csv"), start=1)
        if box.split(",")[0] in names[1:7]
    ]
    assert len(listing.problems) == len(expected)
    for (got_where, got), (want_where, want) in zip(listing.problems, expected):
        assert got_where == want_where and got.startswith(want), (got, want)
    assert len(listing.records) == len(lines) - 1 - 6
    assert not {r.image_id for r in listing.records} & set(names[1:7])


def test_duplicate_rows(tree):
    lines = _lines(tree / CSV_2017)
    same = lines[1]
    fields = lines[2].split(",")
    assert fields[1] != "Hernia"
    other = ",".join([fields[0], "Hernia", *fields[2:]])  # contradicts line 3
    _write_lines(tree / CSV_2017, lines + [same, other])
    listing = chestxray14(str(tree))
    n = len(lines)
    assert listing.problems == [
        (f"{CSV_2017} line {n + 1}: {same.split(',')[0]}", "duplicate of line 2"),
        (f"{CSV_2017} line {n + 2}: {fields[0]}", "contradicts line 3; both rejected"),
    ]
    ids = [r.image_id for r in listing.records]
    assert ids.count(same.split(",")[0]) == 1 and fields[0] not in ids


# --- damaged files -----------------------------------------------------------


def test_missing_stray_and_doubled_files(tree):
    entries = list(_entries(tree))
    line = {name: i + 2 for i, name in enumerate(entries)}
    boxed = (tree / "BBox_List_2017.csv").read_text()
    gone, doubled = [n for n in entries if n not in boxed][:2]
    os.remove(_png(tree, gone))
    last = os.path.dirname(_png(tree, entries[-1]))  # another images_NNN/images
    source = _png(tree, doubled)
    shutil.copy(source, os.path.join(last, doubled))
    paths = sorted([source, os.path.join(last, doubled)])
    stray = tree / "images_001" / "images" / "99999999_000.png"
    shutil.copy(source, stray)
    listing = chestxray14(str(tree))
    assert listing.problems == [
        (f"{CSV_2017} line {line[gone]}: {gone}", "file not found"),
        (
            f"{CSV_2017} line {line[doubled]}: {doubled}",
            f"found 2 times: {', '.join(paths)}",
        ),
        (str(stray), f"PNG that no {CSV_2017} row lists"),
    ]
    assert len(listing.records) == len(entries) - 2


# --- damaged split lists -----------------------------------------------------


def test_split_list_damage(tree):
    entries = list(_entries(tree))
    line = {name: i + 2 for i, name in enumerate(entries)}
    train, test = _list(tree, "train"), _list(tree, "test")
    moved = _train_patient(tree)[-1]  # its patient then straddles the splits
    both = test[0]  # a test image also put in train_val_list.txt
    lone = next(n for n in train if n not in _train_patient(tree) and n != moved)
    kept_train = [n for n in train if n not in (moved, lone)] + [both]
    _write_lines(tree / "train_val_list.txt", kept_train)
    _write_lines(tree / "test_list.txt", test + [moved, "99999998_000.png"])
    listing = chestxray14(str(tree))
    split = {r.image_id: r.split for r in listing.records}
    assert split[both] == "test" and split[moved] == "test" and split[lone] == ""
    siblings = [n for n in train if n[:8] == moved[:8] and n != moved]
    expected = {
        (
            f"{CSV_2017} line {line[both]}: {both}",
            f"in both train_val_list.txt line {len(kept_train)} and "
            "test_list.txt line 1; kept as test",
        ),
        (
            f"{CSV_2017} line {line[lone]}: {lone}",
            "in neither train_val_list.txt nor test_list.txt: official split ''",
        ),
        (
            f"test_list.txt line {len(test) + 2}: 99999998_000.png",
            f"in no {CSV_2017} row",
        ),
        (
            f"patient {int(moved[:8])}",
            f"images in both train_val_list.txt ({', '.join(siblings)}) and "
            f"test_list.txt ({moved}); the official split is patient-wise, the "
            "splitter keeps the whole patient in test",
        ),
    }
    assert set(listing.problems) == expected and len(listing.problems) == 4


def test_missing_split_list_is_one_problem(tree):
    os.remove(tree / "test_list.txt")
    listing = chestxray14(str(tree))
    assert listing.problems == [
        (str(tree / "test_list.txt"), "split list not found: its images get split ''")
    ]
    assert {r.split for r in listing.records} == {"train", ""}


# --- damaged boxes -----------------------------------------------------------


def test_bad_boxes(tree):
    path = tree / "BBox_List_2017.csv"
    lines = _lines(path)
    name = lines[1].split(",")[0]
    records = {r.image_id: r for r in chestxray14(str(tree)).records}
    healthy = next(n for n, r in records.items() if not r.label)
    n = len(lines)
    _write_lines(
        path,
        lines
        + [
            f"{name},Blob,1.0,2.0,3.0,4.0,,,",
            f"{name},Mass,1.0,2.0,-3.0,4.0,,,",
            f"{name},Mass,1.0,two,3.0,4.0,,,",
            f"{name},Mass,1.0,2.0",
            "99999999_000.png,Mass,1.0,2.0,3.0,4.0,,,",
            f"{healthy},Infiltrate,1.0,2.0,3.0,4.0,,,",
        ],
    )
    listing = chestxray14(str(tree))
    box_where = [f"BBox_List_2017.csv line {n + i}: " for i in range(1, 7)]
    assert listing.problems == [
        (box_where[0] + name, "unknown finding 'Blob'"),
        (
            box_where[1] + name,
            "malformed box ['1.0', '2.0', '-3.0', '4.0']: needs x, y >= 0 and w, h > 0",
        ),
        (box_where[2] + name, "malformed box ['1.0', 'two', '3.0', '4.0']"),
        (box_where[3] + name, "malformed row: 4 fields, expected 6 and empty ones"),
        (
            box_where[4] + "99999999_000.png",
            "box of an image without a record; left out",
        ),
        (
            box_where[5] + healthy,
            "box of Infiltration, not in the image's labels (No Finding)",
        ),
    ]
    assert listing.boxes[healthy] == [Box("Infiltration", 1.0, 2.0, 3.0, 4.0)]
    assert "99999999_000.png" not in listing.boxes


def test_missing_box_file_is_a_problem_unless_bbox_false(tree):
    os.remove(tree / "BBox_List_2017.csv")
    assert chestxray14(str(tree)).problems == [
        (
            str(tree / "BBox_List_2017.csv"),
            "box file not found: no boxes (bbox=False skips it)",
        )
    ]
    assert chestxray14(str(tree), bbox=False).problems == []
    with pytest.raises(ValueError, match="box file not found"):
        read_boxes(str(tree))


# --- URLs --------------------------------------------------------------------


def test_memory_url_listing_equals_local(tree):
    os.remove(_png(tree, list(_entries(tree))[0]))
    stray = tree / "images_001" / "images" / "stray.png"
    shutil.copy(_png(tree, list(_entries(tree))[1]), stray)
    local = chestxray14(str(tree))
    assert len(local.problems) == 3 and local.boxes  # file, stray, box
    with memory_root() as url:
        upload(tree, url)
        remote = chestxray14(url)

    def as_url(text: str) -> str:
        return text.replace(str(tree), url)

    assert remote.records == [
        dataclasses.replace(r, path=as_url(r.path)) for r in local.records
    ]
    assert remote.problems == [(as_url(w), as_url(p)) for w, p in local.problems]
    assert remote.boxes == local.boxes
