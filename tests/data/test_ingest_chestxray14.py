"""The ChestX-ray14 ingest: PNG chest radiographs -> tf.Examples with multi-hot
labels, on a small synthetic NIH-shaped tree (with RGBA PNGs, a truncated PNG,
a non-PNG file named .png and a left-right asymmetric non-square image)."""

from __future__ import annotations

import csv
import glob
import gzip
import json
import os
import re
import types
from collections import defaultdict

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from morphhr_tf.data import features as F
from morphhr_tf.data.adapters import label_names
from morphhr_tf.data.adapters.chestxray14 import FINDINGS, chestxray14
from morphhr_tf.data.ingest import image_keys_of, run_ingest
from morphhr_tf.data.ingest_encode import RecordRejected, check_labels
from morphhr_tf.data.preprocessing import MammogramPreprocessor, area_resize
from morphhr_tf.data.records import ImageRecord
from morphhr_tf.data.splits import SPLITS
from morphhr_tf.data.tfrecord_codec import (
    decode_image,
    encode_example,
    parse_example,
)
from morphhr_tf.synthetic import chestxray14 as synthetic

PATIENTS, SEED, SIZE, IMAGE_SIZE = 10, 0, 64, 64
SALT = "cxr14-ingest-test-salt"
# The stored pixels are the area resize of the source rounded to 16 bits:
# at most half a 16-bit step off, plus float32 rounding of the resize.
TOLERANCE = 0.5 / 65535 + 1e-6
ASYMMETRIC_SHAPE = (100, 80)  # rows, columns: a real (non-square) resize


def _write_grey(path, image: np.ndarray, rgba: bool = False) -> None:
    grey = np.round(np.asarray(image) * 255.0).astype(np.uint8)
    if rgba:  # opaque, equal channels, as the real RGBA ones
        grey = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    Image.fromarray(grey).save(path, format="PNG")


def _source_pixels(path) -> np.ndarray:
    """The source image as grey in [0, 1], read with Pillow alone (for equal
    channels, Pillow's L conversion is exact)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def _mode(path) -> str:
    with Image.open(path) as im:
        return im.mode


def _asymmetric() -> np.ndarray:
    """Dark background, a bright body on the right half only: cropping to it,
    or flipping it to a chest-wall side, would change the image."""
    image = np.full(ASYMMETRIC_SHAPE, 0.05, dtype=np.float32)
    image[20:85, 48:76] = 0.9
    image[30:40, 4:12] = 0.5  # a small marker on the left
    return image


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The synthetic tree, damaged as the module docstring says, ingested."""
    root = tmp_path_factory.mktemp("cxr14_ingest") / "tree"
    made = synthetic.generate(root, patients=PATIENTS, seed=SEED, size=SIZE)
    assert made["rgba_images"] >= 1
    records = chestxray14(root).records
    by_name = {r.image_id: r for r in records}
    with_alpha = {n for n, r in by_name.items() if _mode(r.path) == "RGBA"}
    plain = [n for n in sorted(by_name) if n not in with_alpha]
    truncated, not_png, asymmetric, to_rgba = plain[1], plain[5], plain[9], plain[13]
    path = by_name[truncated].path
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with open(by_name[not_png].path, "wb") as f:
        f.write(b"GIF89a: this file is not a PNG at all")
    _write_grey(by_name[asymmetric].path, _asymmetric())
    _write_grey(by_name[to_rgba].path, _source_pixels(by_name[to_rgba].path), True)
    with_alpha.add(to_rgba)
    out = tmp_path_factory.mktemp("cxr14_out")
    summary = run_ingest(
        "chestxray14",
        root,
        out,
        image_size=IMAGE_SIZE,
        salt=SALT,
        eval_fraction=0.4,
        progress=False,
    )
    return types.SimpleNamespace(
        root=root,
        out=out,
        summary=summary,
        records=records,
        keys=image_keys_of(records, SALT),
        examples=_read_examples(out),
        rejects=_read_rejects(out),
        truncated=by_name[truncated],
        not_png=by_name[not_png],
        asymmetric=by_name[asymmetric],
        rgba={by_name[n].path for n in with_alpha},
    )


def _read_examples(out) -> dict[str, list[dict]]:
    """``{split: [parsed example as numpy values]}``, labels included."""
    examples = {}
    for split in SPLITS:
        files = sorted(glob.glob(os.path.join(out, f"Split-{split}", "data-*.gz")))
        data = tf.data.TFRecordDataset(files, compression_type="GZIP")
        examples[split] = [
            {k: v.numpy() for k, v in parse_example(x, len(FINDINGS)).items()}
            for x in data
        ]
    return examples


def _read_rejects(out) -> list[dict]:
    with open(os.path.join(out, "rejects.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _all_examples(run) -> list[tuple[str, dict]]:
    return [(s, ex) for s, exs in run.examples.items() for ex in exs]


def test_every_listed_image_is_ingested_or_rejected_with_a_reason(run):
    summary = run.summary
    assert summary["records"] == len(run.records) >= 20
    assert summary["ingested"] + summary["rejected_images"] == summary["records"]
    assert summary["rejected_images"] == summary["rejected"] == 2
    assert summary["listing_problems"] == 0
    ingested = {ex[F.IMAGE_KEY].decode() for _, ex in _all_examples(run)}
    rejected = {r["image_key"] for r in run.rejects}
    assert len(ingested) == summary["ingested"] == len(_all_examples(run))
    assert ingested | rejected == set(run.keys.values())
    assert not ingested & rejected
    reasons = {r["image_key"]: r["reason"] for r in run.rejects}
    assert "truncated" in reasons[run.keys[run.truncated.path]]
    assert reasons[run.keys[run.not_png.path]].startswith("not a PNG file")
    with open(os.path.join(run.out, "summary.json")) as f:
        assert json.load(f) == summary


def test_examples_carry_the_adapters_multi_hot_labels(run):
    by_key = {run.keys[r.path]: r for r in run.records}
    for _split, ex in _all_examples(run):
        record = by_key[ex[F.IMAGE_KEY].decode()]
        assert ex[F.LABELS].tolist() == list(record.labels)
        assert len(record.labels) == len(FINDINGS)
        assert ex[F.LABEL] == record.label == int(any(record.labels))
        assert ex[F.VIEW].decode() == record.view in ("PA", "AP")
        assert ex[F.DATASET].decode() == "chestxray14"
        assert ex[F.LATERALITY] == b"" and ex[F.DENSITY] == b""
        assert (ex[F.HEIGHT], ex[F.WIDTH]) == (IMAGE_SIZE, IMAGE_SIZE)
    assert any(ex[F.LABELS].sum() > 1 for _, ex in _all_examples(run))
    assert any(ex[F.LABELS].sum() == 0 for _, ex in _all_examples(run))


def test_summary_counts_each_finding_per_split(run):
    summary = run.summary
    assert summary["label_names"] == list(FINDINGS) == list(label_names("chestxray14"))
    expected = {s: dict.fromkeys(FINDINGS, 0) for s in SPLITS}
    for split, ex in _all_examples(run):
        for name, value in zip(FINDINGS, ex[F.LABELS]):
            expected[split][name] += int(value)
    assert summary["per_split_finding"] == expected
    assert summary["per_finding"] == {
        n: sum(v[n] for v in expected.values()) for n in FINDINGS
    }
    assert sum(summary["per_finding"].values()) > 0
    per_split = {s: len(run.examples[s]) for s in SPLITS}
    assert summary["per_split"] == per_split


def test_pixels_are_the_area_resize_of_the_source_png(run):
    by_key = {run.keys[r.path]: r for r in run.records}
    checked = set()
    for _, ex in _all_examples(run):
        record = by_key[ex[F.IMAGE_KEY].decode()]
        stored = decode_image(ex[F.IMAGE]).numpy()[..., 0]
        expected = area_resize(_source_pixels(record.path), IMAGE_SIZE, IMAGE_SIZE)
        assert np.abs(stored - expected).max() <= TOLERANCE, record.image_id
        checked.add(record.path)
    assert len(run.rgba) >= 2 and run.rgba <= checked  # RGBA PNGs ingested
    assert run.asymmetric.path in checked


def test_no_crop_and_no_flip(run):
    key = run.keys[run.asymmetric.path]
    (ex,) = [e for _, e in _all_examples(run) if e[F.IMAGE_KEY].decode() == key]
    stored = decode_image(ex[F.IMAGE]).numpy()[..., 0]
    half = IMAGE_SIZE // 2
    assert stored[:, half:].mean() > 3 * stored[:, :half].mean()  # not flipped
    background = _source_pixels(run.asymmetric.path).min()
    assert abs(stored.min() - background) <= TOLERANCE  # not cropped away
    # The mammogram steps would have changed it: the check above can fail.
    mammogram = MammogramPreprocessor(IMAGE_SIZE)(_asymmetric()) / 65535.0
    assert np.abs(mammogram - stored).max() > 0.5


def test_splits_are_patient_level(run):
    by_key = {run.keys[r.path]: r for r in run.records}
    splits_of_key, splits_of_patient = defaultdict(set), defaultdict(set)
    for split, ex in _all_examples(run):
        record = by_key[ex[F.IMAGE_KEY].decode()]
        splits_of_key[ex[F.PATIENT_KEY]].add(split)
        splits_of_patient[record.patient_id].add(split)
        if record.split == "test":  # the official test list is kept
            assert split == "test"
    assert all(len(s) == 1 for s in splits_of_key.values())
    assert all(len(s) == 1 for s in splits_of_patient.values())
    assert len(splits_of_key) == len(splits_of_patient)
    assert all(run.examples[s] for s in SPLITS)


def _blobs(folder) -> dict[str, bytes]:
    """Every file's bytes under ``folder``, plus gzip files gunzipped."""
    blobs = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                blobs[path] = f.read()
            if blobs[path].startswith(b"\x1f\x8b"):
                blobs[path + " (gunzipped)"] = gzip.decompress(blobs[path])
    return blobs


def test_no_patient_id_or_file_name_in_any_output(run):
    with open(run.root / synthetic.DATA_ENTRY_FILES["2017"], newline="") as f:
        names = [row[0] for row in list(csv.reader(f))[1:]]
    needles = set()
    for name in names:  # PPPPPPPP_FFF.png
        needles |= {name, name[: -len(".png")], name[:8]}
    blobs = _blobs(run.out)
    blobs["summary"] = json.dumps(run.summary).encode()
    assert any(k.endswith("(gunzipped)") for k in blobs)
    assert len(needles) >= 2 * len(names)
    hits = sorted(
        (where, n)
        for where, blob in blobs.items()
        for n in needles
        if n.encode() in blob
    )
    assert not hits, hits[:10]
    assert all(
        r["path"].endswith(".png") and "/images/" in r["path"] for r in run.rejects
    )


def test_binary_readers_ignore_the_labels(run):
    files = glob.glob(os.path.join(run.out, "Split-train", "data-*.gz"))
    serialized = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP")))
    parsed = parse_example(serialized)
    assert F.LABELS not in parsed and int(parsed[F.LABEL]) in (0, 1)
    from morphhr_tf.training.input_pipeline import make_dataset

    images, labels = next(
        iter(make_dataset(files, resolution=32, batch_size=4, training=False))
    )
    assert images.shape[1:] == (32, 32, 1) and labels.shape[1:] == (1,)


def test_binary_records_have_no_labels_and_parse_as_minus_one():
    image = np.zeros((8, 8), np.uint16)
    binary = encode_example(image, label=1, patient_key="p", image_key="i")
    assert F.LABELS.encode() not in binary
    parsed = parse_example(tf.constant([binary, binary]), num_labels=3)
    assert parsed[F.LABELS].numpy().tolist() == [[-1, -1, -1]] * 2
    multi = encode_example(
        image, label=1, patient_key="p", image_key="i", labels=[0, 1]
    )
    assert parse_example(multi, num_labels=2)[F.LABELS].numpy().tolist() == [0, 1]
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        encode_example(image, label=1, patient_key="p", image_key="i", labels=[2])
    with pytest.raises(ValueError, match="num_labels"):
        parse_example(multi, num_labels=0)


@pytest.mark.parametrize(
    ("label", "labels", "dataset", "reason"),
    [
        (1, (1, 0), "chestxray14", "2 labels; data set 'chestxray14' names 14"),
        (1, (1,) * 14, "cbis_ddsm", "14 labels; data set 'cbis_ddsm' names 0"),
        (1, (2,) + (0,) * 13, "chestxray14", "are not 0 or 1 each"),
        (0, (1,) + (0,) * 13, "chestxray14", "disagrees with the labels"),
        (2, (), "cbis_ddsm", "label 2 is not 0 or 1"),
    ],
)
def test_inconsistent_labels_are_rejected(label, labels, dataset, reason):
    record = ImageRecord("x.png", label, "1", dataset=dataset, labels=labels)
    with pytest.raises(RecordRejected, match=reason):
        check_labels(record)
    check_labels(ImageRecord("x.png", 1, "1", dataset="chestxray14", labels=(1,) * 14))


def test_dicom_example_gen_accepts_chestxray14(tmp_path):
    from components.dicom_example_gen import DicomExampleGen

    gen = DicomExampleGen(
        input_base=str(tmp_path), source="chestxray14", image_size=IMAGE_SIZE
    )
    assert gen.exec_properties["source"] == "chestxray14"
    assert gen.exec_properties["image_size"] == IMAGE_SIZE


def test_listing_problems_name_no_patient_or_file_once_redacted(tmp_path):
    from morphhr_tf.data.redaction import redact_reject

    root = tmp_path / "tree"
    synthetic.generate(root, patients=3, seed=2, size=SIZE)
    train = (root / "train_val_list.txt").read_text().splitlines()
    moved = next(n for n in train if sum(t[:8] == n[:8] for t in train) > 1)
    (root / "test_list.txt").write_text(
        (root / "test_list.txt").read_text() + moved + "\n"
    )  # an image in both lists: its patient in both splits
    with open(root / synthetic.DATA_ENTRY_FILES["2017"], "a") as f:
        f.write("00000009_000.png,Effusion,0,8,40,M,PA,2500,2500,0.143,0.143,\n")
    problems = chestxray14(root).problems
    assert len(problems) == 3
    text = "\n".join(
        ",".join(redact_reject(w, r, base=root, salt=SALT)) for w, r in problems
    )
    assert not re.findall(r"(?<![0-9A-Za-z])\d{8}(?![0-9A-Za-z])", text), text
    assert not re.findall(r"[Pp]atient(?: ID)? \d+\b", text), text
