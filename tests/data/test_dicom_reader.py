"""Tests of morphhr_tf.data.dicom_reader: LUT numbers, variants, rejections."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import JPEG2000, JPEG2000Lossless, RLELossless

from morphhr_tf.data import DicomRejected, read_mammogram
from morphhr_tf.synthetic.render import render_mammogram

TEST_FILES = os.path.dirname(
    pydicom.data.get_testdata_file("CT_small.dcm", download=False)
)
RAMP = np.arange(0, 4096, 4, dtype=np.uint16).reshape(32, 32)  # every 4th 12-bit value


# ---------------------------------------------------------------- numpy reference
def reference(
    stored,
    *,
    bits=12,
    signed=False,
    photometric="MONOCHROME2",
    window=None,
    function="LINEAR",
    rescale=None,
    lut=None,
):
    """The LUT pipeline written out from PS3.3 C.11 (independent of pydicom)."""
    x = stored.astype(np.float64)
    slope, intercept = rescale if rescale else (1.0, 0.0)
    x = x * slope + intercept
    lo_s, hi_s = (
        (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    )
    if lut is not None:
        (count, first, nbits), data = lut
        idx = np.clip(np.round(x).astype(np.int64) - first, 0, count - 1)
        y = np.asarray(data, dtype=np.float64)[idx] / (2**nbits - 1)
    elif window is not None:
        c, w = window
        y_min, y_max = lo_s * slope + intercept, hi_s * slope + intercept
        if function == "SIGMOID":
            y = (y_max - y_min) / (1 + np.exp(-4 * (x - c) / w)) + y_min
        elif function == "LINEAR_EXACT":
            y = np.clip((x - c) / w + 0.5, 0, 1) * (y_max - y_min) + y_min
        else:
            y = np.where(
                x <= c - 0.5 - (w - 1) / 2,
                y_min,
                np.where(
                    x > c - 0.5 + (w - 1) / 2,
                    y_max,
                    ((x - (c - 0.5)) / (w - 1) + 0.5) * (y_max - y_min) + y_min,
                ),
            )
        y = (y - y_min) / (y_max - y_min)
    else:
        ends = np.array([lo_s, hi_s]) * slope + intercept
        y = (x - ends.min()) / (ends.max() - ends.min())
    y = np.clip(y, 0, 1)
    return 1 - y if photometric == "MONOCHROME1" else y


VARIANTS = {
    "bit range": {},
    "linear": {"window": (2000, 1500)},
    "linear exact": {"window": (1800, 900), "function": "LINEAR_EXACT"},
    "sigmoid": {"window": (2100, 1200), "function": "SIGMOID"},
    "rescale + window": {"window": (900, 1000), "rescale": (0.5, -100)},
    "negative slope": {"rescale": (-1.0, 4095)},
    "monochrome1 linear": {"window": (2000, 1500), "photometric": "MONOCHROME1"},
    "monochrome1 sigmoid": {
        "window": (2000, 1500),
        "function": "SIGMOID",
        "photometric": "MONOCHROME1",
    },
    "monochrome1 bit range": {"photometric": "MONOCHROME1"},
    "voi lut sequence": {
        "lut": (
            [4096, 0, 16],
            list(np.round(65535 * (np.arange(4096) / 4095) ** 0.5).astype(int)),
        )
    },
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_lut_pipeline_matches_numpy_reference(tmp_path, name, make_dicom):
    spec = dict(VARIANTS[name])
    photometric = spec.pop("photometric", "MONOCHROME2")
    function = spec.get("function")
    path = make_dicom(
        tmp_path / "v.dcm",
        RAMP,
        photometric=photometric,
        bits_stored=12,
        window=spec.get("window"),
        voi_function=function,
        rescale=spec.get("rescale"),
        voi_lut=spec.get("lut"),
    )
    image, meta = read_mammogram(path)
    expected = reference(RAMP, photometric=photometric, **spec)
    assert image.dtype == np.float32 and image.shape == RAMP.shape
    assert float(np.max(np.abs(image - expected))) < 2e-6, name
    assert meta["photometric_interpretation"] == photometric


def test_signed_pixels_match_reference(tmp_path, make_dicom):
    stored = (np.arange(1024, dtype=np.int16).reshape(32, 32) - 512) * 3
    path = make_dicom(tmp_path / "s.dcm", stored, bits_stored=12, window=(100, 800))
    image, _ = read_mammogram(path)
    expected = reference(stored, signed=True, window=(100, 800))
    assert float(np.max(np.abs(image - expected))) < 2e-6


def test_lut_table_equals_pydicom_applied_to_the_image(tmp_path, make_dicom):
    from morphhr_tf.data.dicom_reader import apply_lut_pipeline

    path = make_dicom(
        tmp_path / "p.dcm",
        RAMP,
        bits_stored=12,
        window=(1500, 2000),
        voi_function="SIGMOID",
        rescale=(2.0, -50),
    )
    image, _ = read_mammogram(path)
    ds = pydicom.dcmread(path)
    direct, voi = apply_lut_pipeline(ds.pixel_array, ds)
    assert voi == "window SIGMOID"
    assert float(np.max(np.abs(image - direct))) < 1e-6


@pytest.mark.parametrize("function", ["LINEAR", "SIGMOID", None])
def test_monochrome1_and_monochrome2_decode_alike(tmp_path, function, make_dicom):
    from morphhr_tf.synthetic.cbis_ddsm import _to_stored, _window

    image, _, _ = render_mammogram(3, rows=128)
    m2 = _to_stored(image, False)
    m1 = _to_stored(image, True)
    assert not np.array_equal(m1, m2)
    w2 = _window(m2, function, False) if function else None
    w1 = _window(m2, function, True) if function else None
    p2 = make_dicom(
        tmp_path / "m2.dcm", m2, bits_stored=12, window=w2, voi_function=function
    )
    p1 = make_dicom(
        tmp_path / "m1.dcm",
        m1,
        photometric="MONOCHROME1",
        bits_stored=12,
        window=w1,
        voi_function=function,
    )
    a, _ = read_mammogram(p2)
    b, _ = read_mammogram(p1)
    assert float(np.max(np.abs(a - b))) < 1e-5
    assert float(a.std()) > 0.05  # a real image, not a constant


@pytest.mark.parametrize(
    ("syntax", "tolerance"),
    [(RLELossless, 0.0), (JPEG2000Lossless, 0.0), (JPEG2000, 0.02)],
)
def test_compressed_variants_decode_to_the_uncompressed_pixels(
    tmp_path, syntax, tolerance, make_dicom
):
    image, _, _ = render_mammogram(5, rows=128)
    stored = np.round(image * 4095).astype(np.uint16)
    plain = make_dicom(
        tmp_path / "plain.dcm", stored, bits_stored=12, window=(2048, 4096)
    )
    packed = make_dicom(
        tmp_path / "packed.dcm",
        stored,
        bits_stored=12,
        window=(2048, 4096),
        transfer_syntax=syntax,
    )
    a, _ = read_mammogram(plain)
    b, meta = read_mammogram(packed)
    assert meta["transfer_syntax"] == syntax.name
    assert os.path.getsize(packed) != os.path.getsize(plain)
    if tolerance == 0.0:
        np.testing.assert_array_equal(a, b)
    else:
        assert float(np.mean(np.abs(a - b))) < tolerance


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_bundled_lossless_variants_equal_the_original(name):
    ref, _ = read_mammogram(os.path.join(TEST_FILES, "MR_small.dcm"), modalities=None)
    out, _ = read_mammogram(os.path.join(TEST_FILES, name), modalities=None)
    np.testing.assert_array_equal(ref, out)


def test_every_bundled_file_decodes_or_is_rejected_with_a_reason():
    decoded, rejected = [], {}
    for name in sorted(os.listdir(TEST_FILES)):
        try:
            image, meta = read_mammogram(
                os.path.join(TEST_FILES, name), modalities=None
            )
        except DicomRejected as err:
            reason = str(err)
            assert reason and "\n" not in reason and len(reason) <= 240
            rejected[name] = reason
            continue
        assert image.ndim == 2 and image.dtype == np.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert (meta["rows"], meta["columns"]) == image.shape
        decoded.append(name)
    # The monochrome 2-D ones decode, in every transfer syntax...
    for name in (
        "CT_small.dcm",
        "MR_small.dcm",
        "JPEG2000.dcm",
        "JPGExtended.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEGLSNearLossless_16.dcm",
        "image_dfl.dcm",
    ):
        assert name in decoded, rejected.get(name)
    # ...the others are rejected, each for its own reason.
    assert (
        "colour"
        in rejected["SC_rgb.dcm" if "SC_rgb.dcm" in rejected else "SC_rgb_rle.dcm"]
    )
    assert rejected["rtdose.dcm"].startswith("multi-frame (NumberOfFrames=15)")
    assert "truncated" in rejected["MR_truncated.dcm"]
    assert rejected["rtplan.dcm"] == "no PixelData"
    assert rejected["dicomdirtests"] == "is a directory, not a file"
    assert "PALETTE COLOR" in rejected["examples_palette.dcm"]


def test_default_modality_is_mg(tmp_path, make_dicom):
    path = make_dicom(tmp_path / "ct.dcm", RAMP, bits_stored=12, modality="CT")
    with pytest.raises(DicomRejected, match=r"^Modality=CT is not one of MG"):
        read_mammogram(path)
    image, meta = read_mammogram(path, modalities=("CT",))
    assert meta["modality"] == "CT" and image.shape == RAMP.shape
    read_mammogram(path, modalities=None)


def test_rejections_have_one_line_reasons(tmp_path, make_dicom):
    cases = {
        "multi": (
            dict(pixels=np.zeros((3, 8, 8), np.uint16), frames=3),
            r"^multi-frame \(NumberOfFrames=3\): tomosynthesis is not supported$",
        ),
        "rgb": (
            dict(pixels=np.zeros((8, 8, 3), np.uint8), samples=3, photometric="RGB"),
            r"^SamplesPerPixel=3: colour images are not mammograms$",
        ),
    }
    for name, (kwargs, pattern) in cases.items():
        path = make_dicom(tmp_path / f"{name}.dcm", **kwargs)
        with pytest.raises(DicomRejected, match=pattern):
            read_mammogram(path)
    nopix = pydicom.dcmread(make_dicom(tmp_path / "n.dcm", RAMP))
    del nopix.PixelData
    nopix.save_as(tmp_path / "n.dcm")
    with pytest.raises(DicomRejected, match="^no PixelData$"):
        read_mammogram(tmp_path / "n.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(DicomRejected, match="^empty file$"):
        read_mammogram(tmp_path / "empty.dcm")
    (tmp_path / "text.dcm").write_bytes(b"hello, I am not a DICOM file" * 10)
    with pytest.raises(DicomRejected, match="not a DICOM file"):
        read_mammogram(tmp_path / "text.dcm")
    with pytest.raises(DicomRejected, match="unreadable file"):
        read_mammogram(tmp_path / "missing.dcm")


def test_size_limit_is_checked_before_decoding(tmp_path, monkeypatch, make_dicom):
    path = make_dicom(tmp_path / "bomb.dcm", RAMP, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 60000, 60000  # 3.6 GP declared, 2 KB of pixel data
    ds.save_as(path)

    def explode(self):
        raise AssertionError("pixel data decoded before the size check")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(explode))
    with pytest.raises(DicomRejected) as err:
        read_mammogram(path)
    assert str(err.value) == "declared 60000x60000 pixels exceeds the 200 MP limit"
    with pytest.raises(DicomRejected, match="exceeds the 0.001 MP limit"):
        read_mammogram(make_dicom(tmp_path / "small.dcm", RAMP), max_pixels=1000)


def test_truncations_are_rejected_never_raised(tmp_path, make_dicom):
    image, _, _ = render_mammogram(1, rows=64)
    path = make_dicom(
        tmp_path / "t.dcm",
        np.round(image * 4095).astype(np.uint16),
        bits_stored=12,
        window=(2048, 4096),
    )
    data = open(path, "rb").read()
    outcomes = set()
    for cut in np.linspace(1, len(data) - 1, 40).astype(int):
        (tmp_path / "cut.dcm").write_bytes(data[:cut])
        try:
            read_mammogram(tmp_path / "cut.dcm")
            outcomes.add("decoded")
        except DicomRejected:
            outcomes.add("rejected")
    assert outcomes == {"rejected"}


def test_metadata_is_safe_and_useful(tmp_path, make_dicom):
    path = make_dicom(
        tmp_path / "m.dcm",
        RAMP,
        bits_stored=12,
        extra={"Manufacturer": "ACME", "InstitutionName": "SECRET HOSPITAL"},
    )
    _, meta = read_mammogram(path)
    assert meta["view"] == "CC" and meta["laterality"] == "L"
    assert meta["pixel_spacing"] == (0.1, 0.1) and meta["manufacturer"] == "ACME"
    assert meta["bits_stored"] == 12
    text = repr(meta)
    for secret in ("TESTPERSON", "SECRETID123", "SECRET HOSPITAL"):
        assert secret not in text


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_bytes_decode_or_reject(tmp_path, data, make_dicom):
    path = tmp_path / "fuzz.dcm"
    if not (tmp_path / "seed.dcm").exists():
        make_dicom(tmp_path / "seed.dcm", RAMP, bits_stored=12, window=(2000, 1500))
    raw = bytearray((tmp_path / "seed.dcm").read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    path.write_bytes(bytes(raw[:cut]))
    try:
        image, _ = read_mammogram(path)
    except DicomRejected as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert image.ndim == 2 and np.all(np.isfinite(image))
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
