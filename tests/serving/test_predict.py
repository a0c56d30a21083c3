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
    printed = capsys.readouterr().out
    assert "2 predicted, 1 rejected" in printed
    assert "broken.dcm" in printed
