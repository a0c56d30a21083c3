"""Property-based fuzzing of the reader over mutated bytes of real files.

A fixed, derandomized example budget keeps it deterministic and fast in CI;
``tests/fuzz/fuzz_dicom_reader.py`` (atheris) runs the same property for
longer. The property: ``read_mammogram`` returns a finite float32 2-D image
in [0, 1] or raises ``DicomRejected`` with a non-empty one-line reason, within
a few seconds. ``max_pixels`` is lowered to 16 MP so that a mutated header
cannot make one example allocate gigabytes in the pytest process (the hostile
corpus covers the default limit in guarded child processes).
"""

from __future__ import annotations

import os
import time

import hostile_corpus as hc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram

MAX_PIXELS = 16_000_000
PYDICOM_SEEDS = (
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "JPGExtended.dcm",
    "image_dfl.dcm",
)
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0)


def _seeds() -> list[bytes]:
    import tempfile

    import pydicom.data
    from pydicom import uid

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 4096, (48, 40)).astype(np.uint16)
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in (
            ("plain", {}),
            ("mono1", {"photometric": "MONOCHROME1", "bits_stored": 12}),
            ("window", {"extra": {"WindowCenter": "2000", "WindowWidth": "3000"}}),
            ("j2k", {"transfer_syntax": uid.JPEG2000Lossless}),
            ("rle", {"transfer_syntax": uid.RLELossless}),
        ):
            path = hc.write_mg(os.path.join(tmp, f"{name}.dcm"), pixels, **kwargs)
            with open(path, "rb") as f:
                found.append(f.read())
    for name in PYDICOM_SEEDS:
        path = pydicom.data.get_testdata_file(name, download=False)
        if path:
            with open(path, "rb") as f:
                found.append(f.read())
    return found


SEEDS = _seeds()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    pix = hc.pixel_data_offset(bytes(data)) or len(data)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        if size == 0:
            break
        # most mutations hit the header, where the parsing happens
        at = draw(
            st.one_of(
                st.integers(0, max(min(pix, size) - 1, 0)), st.integers(0, size - 1)
            )
        )
        op = draw(
            st.sampled_from(("flip", "set", "word", "truncate", "insert", "delete"))
        )
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "word":
            value = draw(st.sampled_from(INTERESTING))
            width = draw(st.sampled_from((2, 4)))
            data[at : at + width] = (value & ((1 << 8 * width) - 1)).to_bytes(
                width, draw(st.sampled_from(("little", "big")))
            )
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz") / "case.dcm")


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=mutated())
def test_reader_on_mutated_bytes_returns_an_image_or_rejects(scratch, data):
    with open(scratch, "wb") as f:
        f.write(data)
    start = time.perf_counter()
    try:
        image, _meta = read_mammogram(scratch, modalities=None, max_pixels=MAX_PIXELS)
    except DicomRejected as err:
        assert str(err).strip() and "\n" not in str(err)
    else:
        assert isinstance(image, np.ndarray)
        assert image.ndim == 2 and image.dtype == np.float32 and image.size > 0
        assert np.all(np.isfinite(image))
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert time.perf_counter() - start < hc.PER_FILE_SECONDS


def test_seeds_are_valid_images(tmp_path):
    """Every seed reads as an image: the fuzzing starts from the valid path."""
    for index, data in enumerate(SEEDS):
        path = tmp_path / f"seed{index}.dcm"
        path.write_bytes(data)
        image, _ = read_mammogram(path, modalities=None, max_pixels=MAX_PIXELS)
        assert image.ndim == 2 and image.dtype == np.float32
    assert len(SEEDS) == 5 + len(PYDICOM_SEEDS)
