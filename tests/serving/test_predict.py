import csv
import os
import shutil

from morphhr_tf.serving import predict


def test_predict_cli_writes_probabilities_and_lists_rejects(
    saved_model_dir, dicom_files, tmp_path, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, path in enumerate(dicom_files[:2]):
        shutil.copy(path, inputs / f"{i}.dcm")
    (inputs / "broken.dcm").write_bytes(b"not a dicom file at all")
    # A TF Serving base dir: the newest numeric version is used.
    serving = tmp_path / "serving"
    shutil.copytree(saved_model_dir, serving / "17")
    out = tmp_path / "predictions.csv"

    assert (
        predict.main(
            ["--model", str(serving), "--input", str(inputs), "--out", str(out)]
        )
        == 0
    )

    with open(out) as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}
    assert set(rows) == {"0.dcm", "1.dcm", "broken.dcm"}
    for name in ("0.dcm", "1.dcm"):
        assert rows[name]["status"] == "ok"
        assert 0.0 <= float(rows[name]["probability"]) <= 1.0
    assert rows["broken.dcm"]["status"] == "rejected"
    assert rows["broken.dcm"]["probability"] == ""
    assert rows["broken.dcm"]["reason"]
    captured = capsys.readouterr()
    assert "2 predicted, 1 rejected" in captured.out
    assert "broken.dcm" in captured.out
    # Progress on stderr, never mixed into the summary on stdout.
    assert "predict: 100%" in captured.err and "3/3" in captured.err
    assert "predict:" not in captured.out

    predict.main(["--model", str(serving), "--input", str(inputs), "--out",
                  str(out), "--no-progress"])  # fmt: skip
    assert "predict:" not in capsys.readouterr().err


def _png16(image):
    import numpy as np
    import tensorflow as tf

    return tf.io.encode_png(
        np.round(image * 65535).astype(np.uint16)[..., None]
    ).numpy()


def test_predict_cli_scores_what_it_can_and_lists_every_reject(
    saved_model_dir, dicom_files, tmp_path, capsys
):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    image = rng.random((64, 64)).astype(np.float32)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(dicom_files[0], inputs / "a_good.dcm")
    (inputs / "b_good.png").write_bytes(_png16(image))
    img8 = np.round(image * 255).astype(np.uint8)[..., None]
    (inputs / "c_8bit.png").write_bytes(tf.io.encode_png(img8).numpy())
    (inputs / "d_wrong_size.png").write_bytes(_png16(rng.random((100, 70))))
    (inputs / "e_not_png.png").write_bytes(b"GIF89a, not a PNG")
    (inputs / "f_truncated.png").write_bytes(_png16(image)[:90])
    (inputs / "g_empty.dcm").write_bytes(b"")
    out = tmp_path / "predictions.csv"

    code = predict.main(
        ["--model", saved_model_dir, "--input", str(inputs), "--out", str(out)]
        + ["--batch-size", "8"]  # good and bad files share one signature call
    )

    assert code == 0  # partial success
    with open(out) as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}
    assert len(rows) == 7
    for name in ("a_good.dcm", "b_good.png", "c_8bit.png", "d_wrong_size.png"):
        assert rows[name]["status"] == "ok", rows[name]
        assert 0.0 <= float(rows[name]["probability"]) <= 1.0
    reasons = {
        "e_not_png.png": "png: not a PNG image",
        "f_truncated.png": "Invalid PNG data",
        "g_empty.dcm": "empty file",
    }
    for name, reason in reasons.items():
        assert rows[name]["status"] == "rejected" and rows[name]["probability"] == ""
        assert reason in rows[name]["reason"], rows[name]
        assert "[[{{node" not in rows[name]["reason"]
    assert "4 predicted, 3 rejected" in capsys.readouterr().out


def test_predict_cli_fails_clearly_when_nothing_could_be_scored(
    saved_model_dir, nan_model_dir, dicom_files, tmp_path, capsys
):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "junk.png").write_bytes(b"junk")
    (bad / "junk.dcm").write_bytes(b"junk")
    out = tmp_path / "p.csv"
    assert predict.main(["--model", saved_model_dir, "--input", str(bad)]
                        + ["--out", str(out)]) == 1  # fmt: skip
    assert "none of the 2 files could be scored" in capsys.readouterr().err
    with open(out) as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["rejected"] * 2

    # A model that outputs NaN: every file refused, never a NaN "probability".
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(dicom_files[0], good / "x.dcm")
    assert predict.main(["--model", nan_model_dir, "--input", str(good)]
                        + ["--out", str(out)]) == 1  # fmt: skip
    with open(out) as f:
        (row,) = csv.DictReader(f)
    assert row["probability"] == "" and "produced NaN or Inf" in row["reason"]

    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert predict.main(["--model", saved_model_dir, "--input", str(empty)]) == 2
    assert "no DICOM or PNG file" in capsys.readouterr().err
    assert predict.main(["--model", str(empty), "--input", str(good)]) == 2
    assert "No SavedModel" in capsys.readouterr().err
