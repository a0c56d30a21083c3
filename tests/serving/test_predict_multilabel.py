"""The predict CLI on a multi-label (ChestX-ray14) SavedModel: PNG inputs read
like ingestion reads chest radiographs, one probability column per label."""

import csv
import os
import shutil

import numpy as np
import tensorflow as tf

from morphhr_tf.data.png_reader import read_radiograph
from morphhr_tf.data.preprocessing import MammogramPreprocessor
from morphhr_tf.serving import predict


def _png(array):
    return tf.io.encode_png(array).numpy()


def _expected(model, path, size):
    """Ingestion's reading of a chest PNG (resize only), through the model."""
    image, _ = read_radiograph(path)
    pixels = MammogramPreprocessor(size, crop=False, orient=False)(image)
    x = pixels.astype(np.float32)[None, :, :, None] / 65535.0
    return np.asarray(model(x, training=False))[0]


def test_predict_cli_writes_one_column_per_label(
    multilabel_model_dir,
    multilabel_model,
    chest_labels,
    dicom_files,
    tmp_path,
    capsys,
):
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    gray8 = rng.integers(0, 256, (50, 40, 1), dtype=np.uint8)
    (inputs / "a_gray8.png").write_bytes(_png(gray8))
    rgba = np.concatenate([np.repeat(gray8, 3, -1), np.full_like(gray8, 255)], -1)
    (inputs / "b_rgba.png").write_bytes(_png(rgba))
    gray16 = rng.integers(0, 65536, (64, 64, 1), dtype=np.uint16)
    (inputs / "c_gray16.png").write_bytes(_png(gray16))
    (inputs / "d_truncated.png").write_bytes(_png(gray16)[:120])
    shutil.copy(dicom_files[0], inputs / "e.dcm")
    out = tmp_path / "chest.csv"

    code = predict.main(
        ["--model", multilabel_model_dir, "--input", str(inputs), "--out", str(out)]
        + ["--no-progress"]
    )

    assert code == 0
    with open(out) as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        rows = {os.path.basename(r["path"]): r for r in reader}
    assert header == list(predict.csv_fields(chest_labels))
    assert header[:5] == ["path", *chest_labels, "status"]
    assert "probability" not in header
    for name in ("a_gray8.png", "b_rgba.png", "c_gray16.png"):
        assert rows[name]["status"] == "ok", rows[name]
        expected = _expected(multilabel_model, str(inputs / name), 32)
        got = np.array([float(rows[name][label]) for label in chest_labels])
        assert np.max(np.abs(got - expected)) <= 1e-5, name
    # RGBA with equal channels reads as the same gray image.
    for label in chest_labels:
        assert rows["a_gray8.png"][label] == rows["b_rgba.png"][label]
    bad = rows["d_truncated.png"]
    assert bad["status"] == "rejected" and bad[chest_labels[0]] == ""
    assert "truncated" in bad["reason"] or "ends early" in bad["reason"], bad
    dicom = rows["e.dcm"]  # a DICOM is resized only, and keeps its header keys
    assert dicom["status"] == "ok" and dicom["patient_key"] and dicom["laterality"]
    printed = capsys.readouterr().out
    assert "4 predicted, 1 rejected" in printed
    assert "levels: skipped (multi-label model" in printed
    assert not os.path.exists(tmp_path / "chest_breast.csv")
    assert not os.path.exists(tmp_path / "chest_exam.csv")


def test_label_names_that_clash_with_csv_columns_are_refused():
    import pytest

    assert predict.csv_fields(None) == predict.FIELDS
    with pytest.raises(ValueError, match=r"\['status'\] clash with the CSV columns"):
        predict.csv_fields(["Mass", "status"])
