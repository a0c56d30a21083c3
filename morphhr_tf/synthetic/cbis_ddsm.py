"""Synthetic CBIS-DDSM: a download-shaped tree of valid MG DICOM files.

``python -m morphhr_tf.synthetic.cbis_ddsm --out DIR --patients N --seed S`` writes

- full mammograms (CC and MLO of both breasts per patient: the breast with
  the findings and a normal contralateral breast) as 12-bit-in-16 MG DICOM
  files, a mix of MONOCHROME1/MONOCHROME2, window center/width with LINEAR
  or SIGMOID functions (or none), pixel spacing, laterality, view, and
  realistic-looking fake identifiers (patient name, ID, birth date,
  accession number, institution, study date, referring physician) so
  de-identification is tested for real;
- cropped images and full-size ROI masks in ``<case>_<n>`` sibling folders,
  as TCIA ships them (never to be ingested as full images);
- the four case-description CSVs with CBIS-DDSM's real column names, and the
  TCIA ``metadata.csv``.

Layouts (``layout=``), as seen in real downloads (see DATASETS.md):
``uid`` (``CBIS-DDSM/<case>/<StudyUID>/<SeriesUID>/1-1.dcm``), ``date``
(``<case>/10-04-2016-DDSM-30104/1-full mammogram images-14172/000000.dcm``)
and ``date_v2`` (``CBIS-DDSM/<case>/07-20-2016-DDSM-94258/1.000000-full
mammogram images-07312/1-1.dcm``).

Labels follow CBIS-DDSM: an image is positive when any of its findings is
MALIGNANT. CBIS-DDSM lists only images with a finding; the normal
contralateral images are listed in the calc CSV with assessment 1 and
pathology BENIGN_WITHOUT_CALLBACK, no crop and no ROI mask.

Sizes: ``rows`` sets the matrix (columns ``0.8125 * rows``, spacing
``204.8 mm / rows``). The default 2048 (0.1 mm pixels) keeps 0.1-0.5 mm
calcifications resolvable, so resolution matters between 224 and 896 px;
small values (e.g. 384) make quick demo data.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import sys
import time
from typing import Any

import numpy as np

from morphhr_tf.synthetic.render import Finding, RenderedFinding, render_mammogram

LAYOUTS = ("uid", "date", "date_v2")
MG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography - For Presentation
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture (crops, masks)

MASS_COLUMNS = [
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]
CALC_COLUMNS = [
    "patient_id",
    "breast density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "calc type",
    "calc distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]
METADATA_COLUMNS = [
    "Series UID",
    "Collection",
    "3rd Party Analysis",
    "Data Description URI",
    "Subject ID",
    "Study UID",
    "Study Description",
    "Study Date",
    "Series Description",
    "Manufacturer",
    "Modality",
    "SOP Class Name",
    "SOP Class UID",
    "Number of Images",
    "File Size",
    "File Location",
    "Download Timestamp",
]

_FIRST = [
    "MARGARET",
    "LINDA",
    "SUSAN",
    "PATRICIA",
    "DOROTHY",
    "EVELYN",
    "JOAN",
    "BARBARA",
    "CAROL",
    "JUDITH",
    "ROSALIND",
    "HENRIETTA",
    "GLORIA",
    "NADINE",
]
_LAST = [
    "HOLLOWAY",
    "FITZGERALD",
    "KOWALCZYK",
    "ABERNATHY",
    "DELACROIX",
    "PEMBERTON",
    "OKONKWO",
    "VANTERPOOL",
    "MCALLISTER",
    "STRZELECKI",
    "THORNBURY",
    "QUINTANILLA",
]
_INSTITUTIONS = [
    "Saint Brigid Regional Medical Center",
    "Lakeshore Womens Imaging Clinic",
    "Harrowgate County Hospital",
    "Mount Calloway Breast Centre",
]
_PHYSICIANS = ["WHITFIELD^ALAN", "BRANDVOLD^ESTHER", "OYELARAN^TUNDE", "KASPRZAK^IRENA"]
_MASS_SHAPES_MAL = ["IRREGULAR", "LOBULATED", "ARCHITECTURAL_DISTORTION"]
_MASS_MARGINS_MAL = ["SPICULATED", "ILL_DEFINED", "MICROLOBULATED"]
_CALC_TYPES_MAL = ["PLEOMORPHIC", "FINE_LINEAR_BRANCHING", "AMORPHOUS"]
_CALC_TYPES_BEN = ["COARSE", "ROUND_AND_REGULAR", "LARGE_RODLIKE", "PUNCTATE"]


@dataclasses.dataclass
class _Case:
    """One image of one patient, with the CSV rows that describe it."""

    patient_id: str
    laterality: str
    view: str
    density: str
    split: str  # "Training" or "Test"
    findings: tuple[Finding, ...]
    kinds: tuple[str, ...]  # which CSVs list it: "Mass", "Calc"


def _uid(seed: int, *parts: Any) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(seed), *map(str, parts)])


def _plan(
    rng: np.random.Generator,
    patients: int,
    malignant_fraction: float,
    test_fraction: float,
) -> tuple[list[_Case], list[dict[str, str]]]:
    cases: list[_Case] = []
    people: list[dict[str, str]] = []
    number = 0
    for _ in range(patients):
        number += int(rng.integers(1, 4))
        pid = f"P_{number:05d}"
        split = "Test" if rng.uniform() < test_fraction else "Training"
        density = str(int(rng.choice([1, 2, 3, 4], p=[0.12, 0.4, 0.33, 0.15])))
        side = str(rng.choice(["LEFT", "RIGHT"]))
        other = "RIGHT" if side == "LEFT" else "LEFT"
        if rng.uniform() < malignant_fraction:
            kind = str(rng.choice(["mass", "calc", "both"], p=[0.4, 0.4, 0.2]))
            findings = {
                "mass": (Finding("mass", True),),
                "calc": (Finding("calcification", True),),
                "both": (Finding("mass", True), Finding("calcification", False)),
            }[kind]
        else:
            kind = str(rng.choice(["mass", "calc"]))
            findings = (
                (Finding("mass", False),)
                if kind == "mass"
                else (Finding("calcification", False),)
            )
        kinds = {"mass": ("Mass",), "calc": ("Calc",), "both": ("Mass", "Calc")}[kind]
        for view in ("CC", "MLO"):
            cases.append(_Case(pid, side, view, density, split, findings, kinds))
        for view in ("CC", "MLO"):
            cases.append(_Case(pid, other, view, density, split, (), ("Calc",)))
        birth = datetime.date(1935, 1, 1) + datetime.timedelta(
            days=int(rng.integers(0, 40 * 365))
        )
        study = datetime.date(2004, 1, 1) + datetime.timedelta(
            days=int(rng.integers(0, 12 * 365))
        )
        people.append(
            {
                "patient_id": pid,
                "PatientName": f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}^{chr(65 + int(rng.integers(0, 26)))}",
                "PatientID": f"MRN{int(rng.integers(10**7, 10**8))}",
                "PatientBirthDate": birth.strftime("%Y%m%d"),
                "AccessionNumber": f"ACC{int(rng.integers(10**9, 10**10))}",
                "InstitutionName": str(rng.choice(_INSTITUTIONS)),
                "StudyDate": study.strftime("%Y%m%d"),
                "ReferringPhysicianName": str(rng.choice(_PHYSICIANS)),
            }
        )
    return cases, people


def _to_stored(image: np.ndarray, monochrome1: bool) -> np.ndarray:
    stored = np.round(40.0 + image * 4000.0).astype(np.uint16)
    if monochrome1:
        stored = np.uint16(4095) - stored
    return stored


def _window(
    stored_m2: np.ndarray, function: str, monochrome1: bool
) -> tuple[float, float]:
    sample = stored_m2[::8, ::8]
    lo = float(np.percentile(sample, 1))
    hi = float(np.percentile(sample, 99.9))
    center = round((lo + hi) / 2.0)
    width = round(max(hi - lo, 64.0) * (1.1 if function == "LINEAR" else 0.8))
    if monochrome1:  # mirror the window so both photometrics decode alike
        center = (4096 - center) if function == "LINEAR" else (4095 - center)
    return float(center), float(width)


#: Fine-detail mode: speck sigma, cluster radius (mm) and speck brightness,
#: and white noise of this standard deviation in a 0.8 mm pixel (it scales as
#: 1 / pixel side, like quantum noise), as in `morphhr_tf.synthetic.fine_detail`
#: at 256 px over the 204.8 mm field.
FINE_DETAIL_SPECK_MM = 0.48
FINE_DETAIL_CLUSTER_MM = 9.0
FINE_DETAIL_AMPLITUDE = 0.45
FINE_DETAIL_NOISE = 0.03


def _add_fine_detail(
    rng: np.random.Generator, image: np.ndarray, spacing: float, *, malignant: bool
) -> None:
    from scipy import ndimage

    from morphhr_tf.synthetic.fine_detail import SPECKS, draw_specks

    breast = ndimage.binary_erosion(image > 0.1, iterations=max(int(3 / spacing), 1))
    draw_specks(
        rng,
        image,
        inside=breast,
        clustered=malignant,
        n=int(rng.integers(SPECKS[0], SPECKS[1] + 1)),
        sigma=FINE_DETAIL_SPECK_MM / spacing,
        amplitude=FINE_DETAIL_AMPLITUDE,
        cluster_radius=FINE_DETAIL_CLUSTER_MM / spacing,
        center_inside=ndimage.binary_erosion(
            breast, iterations=max(int(FINE_DETAIL_CLUSTER_MM / spacing), 1)
        ),
    )
    noise = FINE_DETAIL_NOISE * 0.8 / spacing
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise)
    np.clip(image, 0.0, 1.0, out=image)


def _write_dicom(
    path: str,
    pixels: np.ndarray,
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
    photometric: str,
    bits_stored: int,
    window: tuple[float, float] | None,
    voi_function: str,
) -> int:
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
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter = f"{window[0]:g}"
        ds.WindowWidth = f"{window[1]:g}"
        ds.VOILUTFunction = voi_function
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return os.path.getsize(path)


class _Layout:
    def __init__(self, layout: str, rng: np.random.Generator):
        self.layout = layout
        self.rng = rng

    def series_dir(
        self, case_folder: str, study_uid: str, series_uid: str, description: str
    ) -> str:
        """Series folder relative to the output root."""
        if self.layout == "uid":
            return os.path.join("CBIS-DDSM", case_folder, study_uid, series_uid)
        date = f"{int(self.rng.integers(1, 13)):02d}-{int(self.rng.integers(1, 29)):02d}-2016"
        study = f"{date}-DDSM-{int(self.rng.integers(0, 10**5)):05d}"
        number = f"{int(self.rng.integers(0, 10**5)):05d}"
        if self.layout == "date":
            return os.path.join(case_folder, study, f"1-{description}-{number}")
        return os.path.join(
            "CBIS-DDSM", case_folder, study, f"1.000000-{description}-{number}"
        )

    def file_name(self, index: int) -> str:
        return f"{index:06d}.dcm" if self.layout == "date" else f"1-{index + 1}.dcm"


def generate(
    out_dir: str | os.PathLike,
    *,
    patients: int = 20,
    seed: int = 0,
    rows: int = 2048,
    layout: str = "uid",
    metadata: bool = True,
    rois: bool = True,
    malignant_fraction: float = 0.5,
    test_fraction: float = 0.2,
    markers: float = 0.5,
    fine_detail: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Writes a synthetic CBIS-DDSM download to ``out_dir``.

    Args:
        out_dir: output folder (created; existing files are overwritten).
        patients: number of patients; each gets 4 full images (CC and MLO of
            the breast with findings and of the normal contralateral breast).
        seed: everything is deterministic given the seed and the arguments.
        rows: image height in pixels (width ``0.8125 * rows``, pixel spacing
            ``204.8 mm / rows``). 2048 (0.1 mm) by default; 256-512 for demos.
        layout: ``uid``, ``date`` or ``date_v2`` (see the module docstring).
        metadata: write TCIA's ``metadata.csv``.
        rois: write cropped images and ROI masks in ``<case>_<n>`` folders.
        malignant_fraction: fraction of patients whose findings are malignant.
        test_fraction: fraction of patients in the official Test split.
        markers: fraction of images with a burned-in laterality marker.
        fine_detail: also draw the fine-detail signal in every image: the same
            number of sub-millimetre specks (:data:`FINE_DETAIL_SPECK_MM`),
            one tight cluster in an image with a malignant finding and
            scattered over the breast otherwise, so that resolution carries
            information (see :mod:`morphhr_tf.synthetic.fine_detail`).
        progress: show a tqdm progress bar.

    Returns:
        A summary: ``patients``, ``images`` (full mammograms written, counting
        an image listed in both CSVs once per file), ``malignant_images``,
        ``rows``, ``columns``, ``pixel_spacing_mm``, ``layout``, ``seconds``,
        ``images_per_second``, ``csv_rows``.

    Raises:
        ValueError: for invalid arguments.

    Example:
        >>> generate("/tmp/cbis", patients=2, seed=0, rows=256)  # doctest: +SKIP
    """
    if not isinstance(patients, int) or patients < 1:
        raise ValueError(f"patients must be a positive integer. Received: {patients!r}")
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout must be one of {LAYOUTS}. Received: layout={layout!r}"
        )
    for name, value in (
        ("malignant_fraction", malignant_fraction),
        ("test_fraction", test_fraction),
        ("markers", markers),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]. Received: {name}={value}")
    from morphhr_tf.synthetic.render import matrix_for_rows

    rows, cols, spacing = matrix_for_rows(rows)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    cases, people = _plan(rng, patients, malignant_fraction, test_fraction)
    person_of = {p["patient_id"]: p for p in people}
    lay = _Layout(layout, np.random.default_rng([seed, 1]))
    csv_rows: dict[tuple[str, str], list[dict[str, str]]] = {
        (k, s): [] for k in ("Mass", "Calc") for s in ("Training", "Test")
    }
    meta_rows: list[dict[str, str]] = []
    abnormality_ids: dict[str, int] = {}
    start = time.perf_counter()
    written = malignant = 0
    iterator = enumerate(cases)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(cases), desc="synthetic", unit="img")
    for index, case in iterator:
        person = person_of[case.patient_id]
        crng = np.random.default_rng([seed, 2, index])
        image, drawn, _ = render_mammogram(
            np.random.SeedSequence([seed, 3, index]),
            rows=rows,
            view=case.view,
            laterality=case.laterality[0],
            density=case.density,
            findings=case.findings,
            marker=bool(crng.uniform() < markers),
        )
        if fine_detail:
            _add_fine_detail(
                np.random.default_rng([seed, 4, index]),
                image,
                spacing,
                malignant=any(f.malignant for f in case.findings),
            )
        monochrome1 = bool(crng.uniform() < 0.5)
        voi = str(crng.choice(["LINEAR", "SIGMOID", "NONE"], p=[0.6, 0.25, 0.15]))
        stored = _to_stored(image, monochrome1)
        window = None
        if voi != "NONE":
            m2 = np.uint16(4095) - stored if monochrome1 else stored
            window = _window(m2, voi, monochrome1)
        photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
        malignant += any(f.malignant for f in case.findings)
        for kind in case.kinds:
            folder = (
                f"{kind}-{case.split}_{case.patient_id}_{case.laterality}_{case.view}"
            )
            study_uid = _uid(seed, folder, "study")
            series_uid = _uid(seed, folder, "series")
            series = lay.series_dir(
                folder, study_uid, series_uid, "full mammogram images"
            )
            rel = os.path.join(series, lay.file_name(0))
            size = _write_dicom(
                os.path.join(out_dir, rel),
                stored,
                person=person,
                study_uid=study_uid,
                series_uid=series_uid,
                sop_uid=_uid(seed, folder, "sop"),
                sop_class=MG_SOP_CLASS,
                series_description="full mammogram images",
                laterality=case.laterality[0],
                view=case.view,
                spacing=spacing,
                photometric=photometric,
                bits_stored=12,
                window=window,
                voi_function=voi,
            )
            written += 1
            meta_rows.append(
                _meta_row(
                    folder, study_uid, series_uid, "full mammogram images", series, size
                )
            )
            csv_path = f"{folder}/{study_uid}/{series_uid}/000000.dcm"
            mine = [
                f
                for f, d in zip(case.findings, drawn, strict=True)
                if (f.kind == "mass") == (kind == "Mass")
            ]
            mine_drawn = [
                d
                for f, d in zip(case.findings, drawn, strict=True)
                if (f.kind == "mass") == (kind == "Mass")
            ]
            if not mine:  # a normal image, listed with assessment 1
                csv_rows[(kind, case.split)].append(
                    _csv_row(kind, case, None, 1, csv_path, "", "", crng)
                )
                continue
            for finding, where in zip(mine, mine_drawn, strict=True):
                key = folder
                abnormality_ids[key] = abnormality_ids.get(key, 0) + 1
                abn = abnormality_ids[key]
                crop_path = roi_path = ""
                if rois:
                    crop_path, roi_path = _write_rois(
                        out_dir,
                        lay,
                        seed,
                        f"{folder}_{abn}",
                        image,
                        where,
                        person,
                        case,
                        spacing,
                        meta_rows,
                    )
                    if crng.uniform() < 0.2:  # seen in the wild: swapped columns
                        crop_path, roi_path = roi_path, crop_path
                csv_rows[(kind, case.split)].append(
                    _csv_row(
                        kind, case, finding, abn, csv_path, crop_path, roi_path, crng
                    )
                )
    names = {
        ("Mass", "Training"): "mass_case_description_train_set.csv",
        ("Mass", "Test"): "mass_case_description_test_set.csv",
        ("Calc", "Training"): "calc_case_description_train_set.csv",
        ("Calc", "Test"): "calc_case_description_test_set.csv",
    }
    for key, name in names.items():
        columns = MASS_COLUMNS if key[0] == "Mass" else CALC_COLUMNS
        with open(os.path.join(out_dir, name), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(csv_rows[key])
    if metadata:
        with open(os.path.join(out_dir, "metadata.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
            writer.writeheader()
            writer.writerows(meta_rows)
    seconds = time.perf_counter() - start
    return {
        "patients": patients,
        "images": written,
        "distinct_images": len(cases),
        "malignant_images": int(malignant),
        "rows": rows,
        "columns": cols,
        "pixel_spacing_mm": spacing,
        "layout": layout,
        "csv_rows": sum(len(v) for v in csv_rows.values()),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(cases) / max(seconds, 1e-9), 2),
    }


def _meta_row(folder, study_uid, series_uid, description, series_rel, size):
    location = ".\\" + series_rel.replace("/", "\\")
    return {
        "Series UID": series_uid,
        "Collection": "CBIS-DDSM",
        "3rd Party Analysis": "NO",
        "Data Description URI": "https://doi.org/10.7937/K9/TCIA.2016.7O02S9CY",
        "Subject ID": folder,
        "Study UID": study_uid,
        "Study Description": "",
        "Study Date": "",
        "Series Description": description,
        "Manufacturer": "",
        "Modality": "MG",
        "SOP Class Name": "Secondary Capture Image Storage"
        if description != "full mammogram images"
        else "Digital Mammography X-Ray Image Storage - For Presentation",
        "SOP Class UID": SC_SOP_CLASS
        if description != "full mammogram images"
        else MG_SOP_CLASS,
        "Number of Images": "1",
        "File Size": str(size),
        "File Location": location,
        "Download Timestamp": "2024-01-01T00:00:00.000",
    }


def _write_rois(
    out_dir,
    lay,
    seed,
    folder,
    image,
    where: RenderedFinding,
    person,
    case,
    spacing,
    meta_rows,
) -> tuple[str, str]:
    study_uid = _uid(seed, folder, "study")
    rows, cols = image.shape
    r0, r1, c0, c1 = where.bbox(margin_px=max(2.0, 3.0 / spacing))
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(max(r1, r0 + 8), rows), min(max(c1, c0 + 8), cols)
    crop = _to_stored(image[r0:r1, c0:c1], False)
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[r0:r1, c0:c1] = 255
    paths = []
    for index, (pixels, description, bits) in enumerate(
        ((crop, "cropped images", 12), (mask, "ROI mask images", 8))
    ):
        series_uid = _uid(seed, folder, description)
        series = lay.series_dir(folder, study_uid, series_uid, description)
        rel = os.path.join(series, lay.file_name(index))
        size = _write_dicom(
            os.path.join(out_dir, rel),
            pixels,
            person=person,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=_uid(seed, folder, description, "sop"),
            sop_class=SC_SOP_CLASS,
            series_description=description,
            laterality=case.laterality[0],
            view=case.view,
            spacing=spacing,
            photometric="MONOCHROME2",
            bits_stored=bits,
            window=None,
            voi_function="LINEAR",
        )
        meta_rows.append(
            _meta_row(folder, study_uid, series_uid, description, series, size)
        )
        paths.append(f"{folder}/{study_uid}/{series_uid}/{index:06d}.dcm")
    return paths[0], paths[1]


def _csv_row(kind, case, finding, abn, image_path, crop_path, roi_path, rng):
    row = {
        "patient_id": case.patient_id,
        "left or right breast": case.laterality,
        "image view": case.view,
        "abnormality id": str(abn),
        "image file path": image_path,
        "cropped image file path": crop_path,
        "ROI mask file path": roi_path,
    }
    if finding is None:
        pathology, assessment, subtlety = "BENIGN_WITHOUT_CALLBACK", 1, 5
    elif finding.malignant:
        pathology = "MALIGNANT"
        assessment, subtlety = int(rng.choice([4, 5])), int(rng.integers(2, 6))
    else:
        pathology = str(rng.choice(["BENIGN", "BENIGN_WITHOUT_CALLBACK"]))
        assessment, subtlety = int(rng.choice([2, 3, 4])), int(rng.integers(2, 6))
    row.update(assessment=str(assessment), pathology=pathology, subtlety=str(subtlety))
    if kind == "Mass":
        row["breast_density"] = case.density
        row["abnormality type"] = "mass"
        mal = finding is not None and finding.malignant
        row["mass shape"] = (
            str(rng.choice(_MASS_SHAPES_MAL))
            if mal
            else str(rng.choice(["ROUND", "OVAL"]))
        )
        row["mass margins"] = (
            str(rng.choice(_MASS_MARGINS_MAL)) if mal else "CIRCUMSCRIBED"
        )
    else:
        row["breast density"] = case.density
        row["abnormality type"] = "calcification"
        if finding is None:
            row["calc type"], row["calc distribution"] = "", ""
        elif finding.malignant:
            row["calc type"] = str(rng.choice(_CALC_TYPES_MAL))
            row["calc distribution"] = "CLUSTERED"
        else:
            row["calc type"] = str(rng.choice(_CALC_TYPES_BEN))
            row["calc distribution"] = str(
                rng.choice(["SCATTERED", "DIFFUSELY_SCATTERED"])
            )
    return row


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m morphhr_tf.synthetic.cbis_ddsm --out DIR --patients N
    --seed S``."""
    parser = argparse.ArgumentParser(
        prog="python -m morphhr_tf.synthetic.cbis_ddsm",
        description="Write a synthetic CBIS-DDSM-shaped tree of MG DICOM files.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rows",
        type=int,
        default=2048,
        help="image height in pixels (default 2048 = 0.1 mm pixels)",
    )
    parser.add_argument("--layout", choices=LAYOUTS, default="uid")
    parser.add_argument(
        "--no-metadata", action="store_true", help="do not write TCIA's metadata.csv"
    )
    parser.add_argument(
        "--no-rois",
        action="store_true",
        help="do not write cropped images and ROI masks",
    )
    parser.add_argument("--malignant-fraction", type=float, default=0.5)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument(
        "--fine-detail",
        action="store_true",
        help="add the fine-detail signal (sub-millimetre speck clusters in "
        "malignant images, scattered specks elsewhere)",
    )
    args = parser.parse_args(argv)
    summary = generate(
        args.out,
        patients=args.patients,
        seed=args.seed,
        rows=args.rows,
        layout=args.layout,
        metadata=not args.no_metadata,
        rois=not args.no_rois,
        malignant_fraction=args.malignant_fraction,
        test_fraction=args.test_fraction,
        fine_detail=args.fine_detail,
        progress=sys.stderr.isatty(),
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    import morphhr_tf  # noqa: F401  (runtime policy first)

    sys.exit(main())
