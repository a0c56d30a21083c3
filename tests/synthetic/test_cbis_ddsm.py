"""Tests of the synthetic CBIS-DDSM generator and its images."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from morphhr_tf.data import read_mammogram
from morphhr_tf.data.preprocessing import area_resize
from morphhr_tf.synthetic.cbis_ddsm import (
    CALC_COLUMNS,
    MASS_COLUMNS,
    METADATA_COLUMNS,
    generate,
)
from morphhr_tf.synthetic.render import Finding, power_law_noise, render_mammogram


def _dicoms(root):
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".dcm"):
                yield os.path.join(dirpath, name)


def test_tree_has_cbis_shape(small_tree):
    root, summary = small_tree
    names = sorted(n for n in os.listdir(root) if n.endswith(".csv"))
    assert names == [
        "calc_case_description_test_set.csv",
        "calc_case_description_train_set.csv",
        "mass_case_description_test_set.csv",
        "mass_case_description_train_set.csv",
        "metadata.csv",
    ]
    for name in names:
        with open(os.path.join(root, name), newline="") as f:
            header = next(csv.reader(f))
        expected = (
            METADATA_COLUMNS
            if name == "metadata.csv"
            else MASS_COLUMNS
            if name.startswith("mass")
            else CALC_COLUMNS
        )
        assert header == expected
    assert "breast_density" in MASS_COLUMNS and "breast density" in CALC_COLUMNS
    assert summary["distinct_images"] == 4 * 6


def test_files_are_valid_mammograms_with_every_variant(small_tree):
    root, _ = small_tree
    seen = {"photometric": set(), "voi": set(), "series": set()}
    full = 0
    for path in _dicoms(root):
        ds = pydicom.dcmread(path)
        seen["series"].add(str(ds.SeriesDescription))
        if ds.SeriesDescription != "full mammogram images":
            continue
        full += 1
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"
        assert ds.Modality == "MG" and ds.BitsAllocated == 16 and ds.BitsStored == 12
        assert int(ds.pixel_array.max()) <= 4095
        assert ds.ImageLaterality in ("L", "R") and ds.ViewPosition in ("CC", "MLO")
        assert str(ds.PatientName) and str(ds.PatientBirthDate) and ds.AccessionNumber
        seen["photometric"].add(ds.PhotometricInterpretation)
        seen["voi"].add(
            str(ds.get("VOILUTFunction", "none")) if "WindowCenter" in ds else "none"
        )
        image, meta = read_mammogram(path)
        assert meta["pixel_spacing"] == pytest.approx((0.8, 0.8))
        assert meta["laterality"] == ds.ImageLaterality
    assert full >= 24
    assert seen["photometric"] == {"MONOCHROME1", "MONOCHROME2"}
    assert seen["voi"] == {"LINEAR", "SIGMOID", "none"}
    assert seen["series"] == {
        "full mammogram images",
        "cropped images",
        "ROI mask images",
    }


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(_dicoms(root)) + sorted(
        os.path.join(root, n) for n in os.listdir(root) if n.endswith(".csv")
    ):
        h.update(os.path.relpath(path, root).encode())
        h.update(open(path, "rb").read())
    return h.hexdigest()


def test_deterministic_per_seed(tmp_path):
    a = generate(tmp_path / "a", patients=2, seed=3, rows=128, layout="date")
    b = generate(tmp_path / "b", patients=2, seed=3, rows=128, layout="date")
    c = generate(tmp_path / "c", patients=2, seed=4, rows=128, layout="date")
    assert a["images"] == b["images"]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert c["images"] >= 8


def test_power_law_spectrum_slope():
    rng = np.random.default_rng(0)
    field = power_law_noise(rng, (256, 256), beta=2.8, spacing_mm=1.0)
    spec = np.abs(np.fft.fft2(field)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    band = (f > 0.05) & (f < 0.4)  # above the low-frequency flattening
    slope = np.polyfit(np.log(f[band]), np.log(spec[band]), 1)[0]
    assert -3.2 < slope < -2.4
    assert abs(float(field.mean())) < 1e-4 and abs(float(field.std()) - 1) < 1e-3


def _cluster_signal(seed):
    """Peak added intensity of a malignant calc cluster at 2048, 896, 224 px."""
    kw = dict(
        rows=2048,
        view="CC",
        laterality="L",
        density="2",
        findings=(Finding("calcification", True),),
    )
    with_calcs, drawn, spacing = render_mammogram(seed, **kw)
    without, _, _ = render_mammogram(seed, draw_findings=False, **kw)
    assert spacing == pytest.approx(0.1)
    h, w = with_calcs.shape
    r0, r1, c0, c1 = drawn[0].bbox(0)
    out = {}
    for size in (None, 896, 224):
        sy, sx = (1.0, 1.0) if size is None else (size / h, size / w)
        a = with_calcs if size is None else area_resize(with_calcs, size, size)
        b = without if size is None else area_resize(without, size, size)
        win = (
            slice(int(r0 * sy) - 1, int(np.ceil(r1 * sy)) + 1),
            slice(int(c0 * sx) - 1, int(np.ceil(c1 * sx)) + 1),
        )
        # peak local contrast the calcifications add over the parenchyma
        peak = float((a - b)[win].max())
        local = float(a[win].max() - np.median(a[win])) - float(
            b[win].max() - np.median(b[win])
        )
        out[size] = (peak, local)
    return out


def test_resolution_matters_for_malignant_calcifications():
    retained_896, retained_224, local_896, local_224 = [], [], [], []
    for seed in range(3):
        s = _cluster_signal(seed)
        full = s[None][0]
        assert full > 0.25  # specks are bright at the detector resolution
        retained_896.append(s[896][0] / full)
        retained_224.append(s[224][0] / full)
        local_896.append(s[896][1] / s[None][1])
        local_224.append(s[224][1] / s[None][1])
    # At 896 px (~0.23 mm) the clusters keep most of their contrast...
    assert min(retained_896) > 0.6 and np.mean(local_896) > 0.6
    # ...at 224 px (~0.9 mm) most of it is averaged away.
    assert max(retained_224) < 0.4 and np.mean(local_224) < 0.4


def test_cli_writes_a_tree(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "morphhr_tf.synthetic.cbis_ddsm",
            "--out",
            str(out),
            "--patients",
            "1",
            "--seed",
            "2",
            "--rows",
            "128",
            "--no-rois",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"images":' in proc.stdout
    assert len(list(_dicoms(out))) >= 4
    assert not any("_1" in p.split(os.sep)[-4] for p in _dicoms(out))


def test_generate_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="layout must be one of"):
        generate(tmp_path, patients=1, layout="zip")
    with pytest.raises(ValueError, match="patients must be a positive integer"):
        generate(tmp_path, patients=0)
    with pytest.raises(ValueError, match="rows must be an integer >= 64"):
        generate(tmp_path, patients=1, rows=10)
