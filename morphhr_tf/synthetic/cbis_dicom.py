"""The DICOM files of a synthetic CBIS-DDSM download.

Maps rendered intensities ([0, 1], bright = dense) to 12-bit-in-16 stored
values, draws the photometric interpretation (MONOCHROME1 or MONOCHROME2) and
the VOI window (LINEAR, SIGMOID or none) of a full mammogram, and writes one
MG or Secondary Capture file with the patient's fake identifiers.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

MG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography - For Presentation
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture (crops, masks)


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    """Stored pixels and the tags that say how to display them."""

    pixels: np.ndarray
    photometric: str
    bits_stored: int
    window: tuple[float, float] | None = None
    voi_function: str = "LINEAR"


def dicom_uid(seed: int, *parts: Any) -> str:
    """A UID derived from ``seed`` and ``parts`` (the same every run)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(seed), *map(str, parts)])


def to_stored(image: np.ndarray, monochrome1: bool) -> np.ndarray:
    """12-bit stored values of an image in [0, 1] (inverted for MONOCHROME1)."""
    stored = np.round(40.0 + image * 4000.0).astype(np.uint16)
    if monochrome1:
        stored = np.uint16(4095) - stored
    return stored


def voi_window(
    stored_m2: np.ndarray, function: str, monochrome1: bool
) -> tuple[float, float]:
    """``(center, width)`` of a VOI window over MONOCHROME2 stored values."""
    sample = stored_m2[::8, ::8]
    lo = float(np.percentile(sample, 1))
    hi = float(np.percentile(sample, 99.9))
    center = round((lo + hi) / 2.0)
    width = round(max(hi - lo, 64.0) * (1.1 if function == "LINEAR" else 0.8))
    if monochrome1:  # mirror the window so both photometrics decode alike
        center = (4096 - center) if function == "LINEAR" else (4095 - center)
    return float(center), float(width)


def encode_mammogram(rng: np.random.Generator, image: np.ndarray) -> EncodedImage:
    """A full mammogram as stored, with a photometric and VOI drawn from ``rng``."""
    monochrome1 = bool(rng.uniform() < 0.5)
    voi = str(rng.choice(["LINEAR", "SIGMOID", "NONE"], p=[0.6, 0.25, 0.15]))
    stored = to_stored(image, monochrome1)
    window = None
    if voi != "NONE":
        m2 = np.uint16(4095) - stored if monochrome1 else stored
        window = voi_window(m2, voi, monochrome1)
    photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    return EncodedImage(stored, photometric, 12, window, voi)


def write_dicom(
    path: str,
    encoded: EncodedImage,
    *,
    person: dict[str, str],
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    sop_class: str,
    series_description: str,
    laterality: str,
    view: str,
    spacing: float,
) -> int:
    """Writes one DICOM file (creating its folder); returns its size in bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MG"
    _set_identity(ds, person)
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = series_description
    ds.Manufacturer = "MORPHHR SYNTHETIC"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.ViewPosition = view
    ds.PatientOrientation = ["A", "R"] if laterality == "L" else ["P", "L"]
    ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
    ds.ImagerPixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
    _set_pixels(ds, encoded)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return os.path.getsize(path)


def _set_identity(ds: Any, person: dict[str, str]) -> None:
    """The patient's and the study's identifying tags."""
    ds.PatientName = person["PatientName"]
    ds.PatientID = person["PatientID"]
    ds.PatientBirthDate = person["PatientBirthDate"]
    ds.PatientSex = "F"
    ds.AccessionNumber = person["AccessionNumber"]
    ds.InstitutionName = person["InstitutionName"]
    ds.StudyDate = person["StudyDate"]
    ds.SeriesDate = person["StudyDate"]
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = person["ReferringPhysicianName"]


def _set_pixels(ds: Any, encoded: EncodedImage) -> None:
    """The image pixel module, rescale, VOI window and pixel data."""
    pixels = encoded.pixels
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = encoded.photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = encoded.bits_stored
    ds.HighBit = encoded.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    if encoded.window is not None:
        ds.WindowCenter = f"{encoded.window[0]:g}"
        ds.WindowWidth = f"{encoded.window[1]:g}"
        ds.VOILUTFunction = encoded.voi_function
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
