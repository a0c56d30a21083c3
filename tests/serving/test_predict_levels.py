"""The predict CLI's salted keys, breast and exam CSVs, and the absence of PHI."""

import csv
import glob
import importlib.util
import os

import numpy as np
import pytest

from morphhr_tf.data import deid
from morphhr_tf.data.records import normalize_laterality, normalize_view
from morphhr_tf.serving import predict

SALT = "predict-levels-salt-5d21"
PATIENTS = 4


def _phi_values():
    """tests/security/phi_values.py (the project's identifier list and scanner)."""
    path = os.path.join(os.path.dirname(__file__), "..", "security", "phi_values.py")
    spec = importlib.util.spec_from_file_location("phi_values", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(saved_model_dir, tmp_path_factory):
    """The CLI (twice: exams by study, then by patient) on a synthetic CBIS
    tree plus a PNG and a broken file; outputs, stdout and stderr."""
    import pydicom

    from morphhr_tf.synthetic.cbis_ddsm import generate

    phi = _phi_values()
    root = tmp_path_factory.mktemp("levels") / "tree"
    generate(str(root), patients=PATIENTS, seed=0, rows=128, rois=False)
    secrets = phi.identifiers(root)  # before any non-DICOM file is added
    headers = {
        os.path.normpath(p): pydicom.dcmread(p, stop_before_pixels=True)
        for p in glob.glob(str(root / "**" / "*.dcm"), recursive=True)
    }
    rng = np.random.default_rng(0)
    import tensorflow as tf

    img = (rng.random((64, 64, 1)) * 65535).astype(np.uint16)
    (root / "extra.png").write_bytes(tf.io.encode_png(img).numpy())
    (root / "broken.dcm").write_bytes(b"not a DICOM file")
    out = root.parent / "out"
    out.mkdir()
    runs = {}
    mp = pytest.MonkeyPatch()
    mp.setenv(deid.SALT_ENV, SALT)
    try:
        for exam_by in ("study", "patient"):
            csv_path = str(out / f"{exam_by}.csv")
            args = ["--model", saved_model_dir, "--input", str(root)]
            args += ["--out", csv_path, "--exam-by", exam_by, "--no-progress"]
            runs[exam_by] = (csv_path, *_run_captured(args))
    finally:
        mp.undo()
    return {"root": root, "out": out, "secrets": secrets, "headers": headers} | runs


def _run_captured(args):
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = predict.main(args)
    assert code == 0, stderr.getvalue()[-2000:]
    return stdout.getvalue(), stderr.getvalue()


def test_image_csv_carries_salted_keys_laterality_and_view(run):
    images = _read(run["patient"][0])
    assert len(images) == len(run["headers"]) + 2  # + the PNG and broken file
    assert list(images[0]) == list(predict.FIELDS)
    for row in images:
        ds = run["headers"].get(os.path.normpath(row["path"]))
        if ds is None:  # the PNG and the broken file: no header fields
            assert [row[k] for k in predict.HEADER_FIELDS] == [""] * 4
            continue
        assert row["status"] == "ok", row
        assert row["patient_key"] == deid.patient_key(str(ds.PatientID), SALT)
        assert row["study_key"] == deid.salted_hash(
            "study:" + str(ds.StudyInstanceUID), SALT
        )
        assert row["laterality"] == normalize_laterality(ds.ImageLaterality)
        assert row["view"] == normalize_view(ds.ViewPosition)
        assert row["laterality"] in ("L", "R") and row["view"] in ("CC", "MLO")
    assert len({r["patient_key"] for r in images if r["patient_key"]}) == PATIENTS
    # The study run writes the same image rows.
    assert _read(run["study"][0]) == images


def test_breast_and_exam_csvs_have_consistent_counts(run):
    csv_path, stdout, _ = run["patient"]
    images = [r for r in _read(csv_path) if r["patient_key"]]
    paths = predict.level_paths(csv_path)
    breasts, exams = _read(paths["breast"]), _read(paths["exam"])
    # Every patient has CC and MLO of both breasts; an image with two findings
    # is written once per case folder (so a breast may hold 3 or 4 images).
    assert len(breasts) == 2 * PATIENTS and len(exams) == PATIENTS
    assert len(images) == len(run["headers"]) >= 4 * PATIENTS
    assert {b["views"] for b in breasts} == {"CC+MLO"}
    assert sum(int(b["n_images"]) for b in breasts) == len(images)
    assert sum(int(e["n_images"]) for e in exams) == len(images)
    assert {e["n_breasts"] for e in exams} == {"2"}
    for b in breasts:
        probs = [
            float(r["probability"])
            for r in images
            if (r["patient_key"], r["laterality"])
            == (b["patient_key"], b["laterality"])
        ]
        assert float(b["mean_probability"]) == pytest.approx(np.mean(probs), abs=2e-6)
        assert float(b["max_probability"]) == pytest.approx(max(probs), abs=2e-6)
    for e in exams:
        means = [float(b["mean_probability"]) for b in breasts
                 if b["patient_key"] == e["patient_key"]]  # fmt: skip
        assert float(e["max_breast_mean_probability"]) == pytest.approx(max(means))
        assert e["study_key"] == ""
    summary = f"{2 * PATIENTS} breasts, {PATIENTS} exams from {len(images)} images"
    assert summary in stdout
    assert "2 left out: 1 no patient key, 1 not scored" in stdout

    # By study: CBIS-DDSM gives each image its own study, and the CLI says so.
    csv_path, stdout, _ = run["study"]
    exams = _read(predict.level_paths(csv_path)["exam"])
    studies = {str(ds.StudyInstanceUID) for ds in run["headers"].values()}
    assert len(exams) == len(studies) and all(e["study_key"] for e in exams)
    assert "every exam has a single image" in stdout and "--exam-by patient" in stdout


def test_no_identifier_in_any_output_or_log(run):
    phi = _phi_values()
    secrets = run["secrets"]
    assert len(secrets) >= 7 * PATIENTS
    needles = secrets | {SALT}
    blobs = phi.read_blobs([run["out"]])
    for exam_by in ("study", "patient"):
        _, stdout, stderr = run[exam_by]
        blobs |= {
            f"{exam_by} stdout": stdout.encode(),
            f"{exam_by} stderr": stderr.encode(),
        }
    # The image CSV names the user's files by their paths (a local report):
    # scan it without its path column; the level CSVs and logs as they are.
    image_csvs = [k for k in blobs if k.endswith(("study.csv", "patient.csv"))]
    assert len(image_csvs) == 2 and len(blobs) == 10
    for key in image_csvs:
        assert phi.scan({key: blobs[key]}, needles)  # the scan does see paths
        rows = _read(key)
        blobs[key] = "\n".join(
            ",".join(v for k, v in r.items() if k != "path") for r in rows
        ).encode()
    assert phi.scan(blobs, needles) == []
