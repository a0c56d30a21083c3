"""The ``explain_png`` signature and the predict CLI's ``--heatmaps``: maps of
the model's resolution in [0, 1] whose peak follows a lesion moved by hand."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from morphhr_tf.serving import predict
from morphhr_tf.serving.explain import CLASS_INPUT, EXPLAIN_PNG, SALIENCY
from morphhr_tf.training.export import export_serving_model

SIDE = 48


def _spot_model(num_outputs=1) -> keras.Model:
    """p = sigmoid(max over the image of a 3 x 3 box filter - 0.5) for output
    0 (and of minus it for a second output): the score depends on the
    brightest spot only, so the gradient sits there."""
    inputs = keras.Input((SIDE, SIDE, 1), name="image")
    box = keras.layers.Conv2D(
        1, 3, padding="same", use_bias=False, kernel_initializer="ones", name="box"
    )(inputs)
    x = keras.layers.GlobalMaxPooling2D(name="peak")(box)
    x = keras.layers.Dense(
        num_outputs,
        activation="sigmoid",
        kernel_initializer=keras.initializers.Constant([[1.0, -1.0][:num_outputs]]),
        bias_initializer=keras.initializers.Constant(-0.5),
        name="head",
    )(x)
    return keras.Model(inputs, x)


def _png(path, center) -> np.ndarray:
    image = np.full((SIDE, SIDE), 0.1, np.float32)
    r, c = center
    image[r - 1 : r + 2, c - 1 : c + 2] = 0.9
    Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(path)
    return image


@pytest.fixture(scope="module")
def spot_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("spot") / "Format-Serving")
    return export_serving_model(_spot_model(), path)


def test_explain_png_peaks_at_the_spot_and_follows_it(spot_dir, tmp_path):
    loaded = tf.saved_model.load(spot_dir)
    explain = loaded.signatures[EXPLAIN_PNG]
    peaks = []
    for center in ((10, 12), (35, 30)):
        path = tmp_path / f"{center[0]}.png"
        _png(path, center)
        out = explain(
            png=tf.constant([path.read_bytes()]),
            **{CLASS_INPUT: tf.constant(0, tf.int32)},
        )[SALIENCY].numpy()
        assert out.shape == (1, SIDE, SIDE) and np.isfinite(out).all()
        peaks.append(np.unravel_index(np.argmax(out[0]), out[0].shape))
    for (r, c), center in zip(peaks, ((10, 12), (35, 30))):
        assert abs(r - center[0]) <= 1 and abs(c - center[1]) <= 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="class_index"):
        explain(png=tf.constant([path.read_bytes()]), class_index=tf.constant(1))
    empty = explain(png=tf.zeros([0], tf.string), class_index=tf.constant(0))
    assert empty[SALIENCY].shape == (0, SIDE, SIDE)


def test_predict_cli_writes_overlays_and_maps_named_by_row(spot_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    centers = {"a_P_00001_LEFT.png": (10, 12), "b_P_00002_RIGHT.png": (35, 30)}
    for name, center in centers.items():
        _png(inputs / name, center)
    out, maps = tmp_path / "p.csv", tmp_path / "maps"
    argv = ["--model", spot_dir, "--input", str(inputs), "--out", str(out)]
    assert predict.main([*argv, "--heatmaps", str(maps), "--no-levels"]) == 0
    with open(out) as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}
    assert sorted(os.listdir(maps)) == [
        "00000.npy",
        "00000.png",
        "00001.npy",
        "00001.png",
    ]
    for name, center in centers.items():
        stem = rows[name]["heatmap"][: -len(".png")]
        saliency = np.load(maps / f"{stem}.npy")
        assert saliency.shape == (SIDE, SIDE)
        assert saliency.min() >= 0.0 and saliency.max() == pytest.approx(1.0)
        r, c = np.unravel_index(np.argmax(saliency), saliency.shape)
        assert abs(r - center[0]) <= 1 and abs(c - center[1]) <= 1
        with open(maps / rows[name]["heatmap"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # Named by row, never by the input's file name (it may name a patient).
    assert not any("P_0000" in n for n in os.listdir(maps))


def test_multilabel_maps_explain_the_chosen_or_the_top_label(tmp_path):
    path = str(tmp_path / "model" / "Format-Serving")
    export_serving_model(_spot_model(2), path, label_names=["Bright", "Dark"])
    inputs = tmp_path / "in"
    inputs.mkdir()
    _png(inputs / "x.png", (20, 20))
    out = tmp_path / "p.csv"
    argv = ["--model", path, "--input", str(inputs), "--out", str(out), "--no-levels"]
    assert predict.main([*argv, "--heatmaps", str(tmp_path / "m1")]) == 0
    with open(out) as f:
        (row,) = list(csv.DictReader(f))
    assert row["heatmap_label"] == "Bright"  # the most probable label
    assert (
        predict.main(
            [*argv, "--heatmaps", str(tmp_path / "m2"), "--heatmap-label", "Dark"]
        )
        == 0
    )
    with open(out) as f:
        (row,) = list(csv.DictReader(f))
    assert row["heatmap_label"] == "Dark"
    assert predict.main([*argv, "--heatmaps", str(tmp_path / "m3"),
                         "--heatmap-label", "Nope"]) == 2  # fmt: skip


def test_a_folder_of_dicoms_gives_image_breast_exam_csvs_and_heatmaps(
    saved_model_dir, dicom_files, tmp_path
):
    import shutil

    inputs = tmp_path / "dicoms"
    inputs.mkdir()
    for i, path in enumerate(dicom_files):
        shutil.copy(path, inputs / f"{i}.dcm")
    out, maps = tmp_path / "pred.csv", tmp_path / "maps"
    argv = ["--model", saved_model_dir, "--input", str(inputs), "--out", str(out)]
    assert predict.main([*argv, "--heatmaps", str(maps), "--exam-by", "patient"]) == 0
    for path in (out, tmp_path / "pred_breast.csv", tmp_path / "pred_exam.csv"):
        with open(path) as f:
            assert len(list(csv.DictReader(f))) >= 1, path
    with open(out) as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    assert len(rows) == len(dicom_files)
    side = int(tf.saved_model.load(saved_model_dir).resolution.numpy())
    for row in rows:
        saliency = np.load(maps / row["heatmap"].replace(".png", ".npy"))
        assert saliency.shape == (side, side)
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
