"""The CSV files of a synthetic CBIS-DDSM download.

The four case-description CSVs (mass and calc, train and test) with
CBIS-DDSM's real column names, one row per finding, or one row with
assessment 1 for a normal image; and TCIA's ``metadata.csv``, one row per
series.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from morphhr_tf.synthetic.cbis_dicom import MG_SOP_CLASS, SC_SOP_CLASS
from morphhr_tf.synthetic.cbis_plan import Case
from morphhr_tf.synthetic.render import Finding

#: The last columns of both case-description CSVs, in order.
_FINDING_COLUMNS = [
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]
MASS_COLUMNS = [
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    *_FINDING_COLUMNS,
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
    *_FINDING_COLUMNS,
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
#: Case-description file of each (kind, split).
CASE_FILES = {
    ("Mass", "Training"): "mass_case_description_train_set.csv",
    ("Mass", "Test"): "mass_case_description_test_set.csv",
    ("Calc", "Training"): "calc_case_description_train_set.csv",
    ("Calc", "Test"): "calc_case_description_test_set.csv",
}
FULL_IMAGE_DESCRIPTION = "full mammogram images"

_MASS_SHAPES_MAL = ["IRREGULAR", "LOBULATED", "ARCHITECTURAL_DISTORTION"]
_MASS_MARGINS_MAL = ["SPICULATED", "ILL_DEFINED", "MICROLOBULATED"]
_CALC_TYPES_MAL = ["PLEOMORPHIC", "FINE_LINEAR_BRANCHING", "AMORPHOUS"]
_CALC_TYPES_BEN = ["COARSE", "ROUND_AND_REGULAR", "LARGE_RODLIKE", "PUNCTATE"]


def case_row(
    kind: str,
    case: Case,
    finding: Finding | None,
    abn: int,
    image_path: str,
    crop_path: str,
    roi_path: str,
    rng: np.random.Generator,
) -> dict[str, str]:
    """The case-description row of one finding (``None``: a normal image).

    Assessment, pathology, subtlety and the lesion descriptors are drawn from
    ``rng`` to suit the finding's kind and malignancy.
    """
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
        row.update(_mass_descriptors(rng, finding))
    else:
        row["breast density"] = case.density
        row["abnormality type"] = "calcification"
        row.update(_calc_descriptors(rng, finding))
    return row


def _mass_descriptors(
    rng: np.random.Generator, finding: Finding | None
) -> dict[str, str]:
    """``mass shape`` and ``mass margins`` of a mass (or of a normal image)."""
    mal = finding is not None and finding.malignant
    shape = (
        str(rng.choice(_MASS_SHAPES_MAL)) if mal else str(rng.choice(["ROUND", "OVAL"]))
    )
    margins = str(rng.choice(_MASS_MARGINS_MAL)) if mal else "CIRCUMSCRIBED"
    return {"mass shape": shape, "mass margins": margins}


def _calc_descriptors(
    rng: np.random.Generator, finding: Finding | None
) -> dict[str, str]:
    """``calc type`` and ``calc distribution`` (empty for a normal image)."""
    if finding is None:
        return {"calc type": "", "calc distribution": ""}
    if finding.malignant:
        return {
            "calc type": str(rng.choice(_CALC_TYPES_MAL)),
            "calc distribution": "CLUSTERED",
        }
    calc_type = str(rng.choice(_CALC_TYPES_BEN))
    distribution = str(rng.choice(["SCATTERED", "DIFFUSELY_SCATTERED"]))
    return {"calc type": calc_type, "calc distribution": distribution}


def metadata_row(
    folder: str,
    study_uid: str,
    series_uid: str,
    description: str,
    series_rel: str,
    size: int,
) -> dict[str, str]:
    """TCIA's ``metadata.csv`` row of one series of one file."""
    full = description == FULL_IMAGE_DESCRIPTION
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
        "SOP Class Name": "Digital Mammography X-Ray Image Storage - For Presentation"
        if full
        else "Secondary Capture Image Storage",
        "SOP Class UID": MG_SOP_CLASS if full else SC_SOP_CLASS,
        "Number of Images": "1",
        "File Size": str(size),
        "File Location": ".\\" + series_rel.replace("/", "\\"),
        "Download Timestamp": "2024-01-01T00:00:00.000",
    }


def write_csvs(
    out_dir: str,
    case_rows: dict[tuple[str, str], list[dict[str, str]]],
    metadata_rows: list[dict[str, str]] | None,
) -> None:
    """Writes the four case-description CSVs and, unless ``metadata_rows`` is
    ``None``, ``metadata.csv``."""
    for key, name in CASE_FILES.items():
        columns = MASS_COLUMNS if key[0] == "Mass" else CALC_COLUMNS
        _write_csv(os.path.join(out_dir, name), columns, case_rows[key])
    if metadata_rows is not None:
        path = os.path.join(out_dir, "metadata.csv")
        _write_csv(path, METADATA_COLUMNS, metadata_rows)


def _write_csv(path: str, columns: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
