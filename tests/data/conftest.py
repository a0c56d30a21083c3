"""Fixtures of the data tests: a DICOM factory and a PHI collector (the small
synthetic tree, ``small_tree``, is in tests/conftest.py, shared with
tests/synthetic)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import morphhr_tf  # noqa: F401  (runtime policy first)

PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "StudyDate",
    "ReferringPhysicianName",
)


def write_dicom(
    path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    rescale: tuple[float, float] | None = None,
    voi_lut: tuple[list[int], list[int]] | None = None,
    modality: str = "MG",
    frames: int | None = None,
    samples: int = 1,
    transfer_syntax=None,
    extra: dict | None = None,
) -> str:
    """Writes a small, valid DICOM file with the given pixel attributes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "TESTPERSON^SECRET"
    ds.PatientID = "SECRETID123"
    ds.ViewPosition = "CC"
    ds.ImageLaterality = "L"
    ds.PixelSpacing = ["0.1", "0.1"]
    shape = pixels.shape
    if samples == 1:
        ds.Rows, ds.Columns = shape[-2], shape[-1]
    else:
        ds.Rows, ds.Columns = shape[-3], shape[-2]
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if rescale is not None:
        ds.RescaleSlope = f"{rescale[0]:g}"
        ds.RescaleIntercept = f"{rescale[1]:g}"
    if window is not None:
        ds.WindowCenter = f"{window[0]:g}"
        ds.WindowWidth = f"{window[1]:g}"
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        descriptor, data = voi_lut
        item = Dataset()
        item.add_new(0x00283002, "US", list(descriptor))  # LUTDescriptor
        item.add_new(0x00283006, "US", [int(v) for v in data])  # LUTData
        ds.VOILUTSequence = Sequence([item])
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if transfer_syntax is not None:
        kwargs = (
            {"j2k_cr": [10]} if str(transfer_syntax) == "1.2.840.10008.1.2.4.91" else {}
        )
        ds.compress(transfer_syntax, **kwargs)
    ds.save_as(os.fspath(path), enforce_file_format=True)
    return os.fspath(path)


@pytest.fixture(scope="session")
def make_dicom():
    """The :func:`write_dicom` factory."""
    return write_dicom


@pytest.fixture(scope="session")
def phi_of():
    """The :func:`header_phi` collector."""
    return header_phi


def header_phi(root) -> set[str]:
    """Every fake identifier written into the DICOM headers under ``root``."""
    import pydicom

    values: set[str] = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".dcm"):
                ds = pydicom.dcmread(
                    os.path.join(dirpath, name), stop_before_pixels=True
                )
                for keyword in PHI_KEYWORDS:
                    value = str(ds.get(keyword, "") or "")
                    if value:
                        values.add(value)
                        if keyword.endswith("Name"):  # the parts of a name
                            values.update(p for p in value.split("^") if len(p) >= 5)
    return values
