"""VinDr-Mammo: ``breast-level_annotations.csv`` + ``images/<study>/<image>.dicom``.

VinDr has no pathology; the label is the common proxy BI-RADS >= 4
(``positive_birads``). The study id stands in for the patient id (VinDr
publishes no patient id; one study per patient). The ``split`` column
(training/test) is the official split.
"""

from __future__ import annotations

import csv
import re

from morphhr_tf.data import fileio
from morphhr_tf.data.adapters.listing import SourceListing, find_files, normalize_row
from morphhr_tf.data.records import (
    ImageRecord,
    normalize_laterality,
    normalize_split,
    normalize_view,
)

DATASET = "vindr"
CSV_NAME = "breast-level_annotations.csv"


def vindr(root: str, *, positive_birads: int = 4) -> SourceListing:
    """Lists the VinDr-Mammo images under ``root``.

    Args:
        root: the data set folder (a local path or a URL).
        positive_birads: BI-RADS category from which an image is positive.

    Returns:
        A :class:`SourceListing`.

    Raises:
        ValueError: when the annotations CSV is missing or
            ``positive_birads`` is not in 1-6.
    """
    if not 1 <= positive_birads <= 6:
        raise ValueError(
            f"positive_birads must lie in 1-6. Received: {positive_birads}"
        )
    root = fileio.abspath(root)
    csv_path = fileio.join(root, CSV_NAME)
    if not fileio.isfile(csv_path):
        raise ValueError(f"VinDr annotations not found: {csv_path!r}")
    image_root = fileio.join(root, "images")
    records, problems, seen = [], [], set()
    with fileio.open_file(csv_path, "r", newline="", encoding="utf-8-sig") as f:
        for line, raw in enumerate(csv.DictReader(f), start=2):
            row = normalize_row(raw)
            study, iid = row.get("study_id", ""), row.get("image_id", "")
            where = f"{CSV_NAME} line {line}"
            if not study or not iid:
                problems.append((where, "row lacks study_id or image_id"))
                continue
            digits = re.findall(r"\d", row.get("breast_birads", ""))
            if not digits:
                problems.append((f"{where}: {study}/{iid}", "no BI-RADS category"))
                continue
            birads = int(digits[0])
            path = fileio.join(image_root, study, f"{iid}.dicom")
            if not fileio.isfile(path):
                problems.append((f"{where}: {study}/{iid}", "file not found"))
                continue
            seen.add(path)
            density = (
                row.get("breast_density", "").upper().replace("DENSITY", "").strip()
            )
            records.append(
                ImageRecord(
                    path=path,
                    label=int(birads >= positive_birads),
                    patient_id=study,
                    view=normalize_view(row.get("view_position", "")),
                    laterality=normalize_laterality(row.get("laterality", "")),
                    density=density,
                    split=normalize_split(row.get("split", "")),
                    dataset=DATASET,
                    abnormality=f"birads:{birads}",
                    image_id=iid,
                )
            )
    if fileio.isdir(image_root):
        for orphan in find_files(image_root, (".dicom", ".dcm")):
            if orphan not in seen:
                problems.append((orphan, f"image file that no {CSV_NAME} row lists"))
    records.sort(key=lambda r: r.path)
    return SourceListing(records=records, problems=problems)
